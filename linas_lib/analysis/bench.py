"""The standalone benchmark table: ground-truth accuracy of architectures (``linas bench``).

The table answers "how good is this decoder when trained on its own?" for a fixed sample of
architectures, so ranking studies (weight sharing, zero-cost proxies, multi-fidelity) have
something to be scored against. Everything is deterministic from the profile's ``bench``
section and the seed:

* **Selection** (:func:`stratified_selection`): a large uniform sample of the space, ordered by
  the reference target's predicted latency (committed LUT model), cut into ``n_archs``
  equal-count strata, one architecture drawn per stratum; plus the named includes (largest,
  smallest = the reference target's exact fastest, reference decoder); duplicates removed.
* **Data**: the profile's own dataset and split (``data`` section: the same images, split and
  encoder as the notebooks, so weight-sharing accuracy is read against it), stored with the table (``split.json``: image names of train/val/test).
* **Items**: one item is one ``(architecture, seed)`` -- a fresh decoder (initialisation and
  batch order from :func:`linas_lib.keys.rng_for` streams of the seed) trained on the cached
  taps of the train split (:func:`linas_lib.supernet.standalone.train_decoder`), scored on
  val and test (mIoU and crack-class IoU). Each writes its own JSON file
  ``results/<profile>/bench/items/<arch>__s<seed>.json`` atomically, carrying its item key
  (:func:`item_key`: architecture, seed, training settings, data, encoder weights); a file
  with the current key is never recomputed (per-item resume), one with another key is.
* **Driver** (:func:`build`): items not done run on Dask -- a ``LocalCluster`` of worker
  processes by default, ``Client(address)`` for a cluster; each task loads the cached features
  itself (only the item spec and the profile name travel), sets its torch threads and writes
  its own file; the driver then assembles ``table.csv`` (``pilot_table.csv`` for ``--pilot``),
  ``split.json``, ``selection.csv`` and the seed agreement
  (:func:`linas_lib.analysis.bench_stats.seed_agreement`).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import numerics
from ..config import BenchConfig, Profile, load_profile, profile_path
from ..data import SPLIT_NAMES, load_splits, resolve_source
from ..keys import content_hash, key_fields, load_json, rng_for, torch_generator
from ..paths import project_root
from ..provenance import provenance, recorded_machine, write_csv, write_json
from ..space import LINAS_SPACE, N_LAYERS, arch_string, choice_index, parse_arch
from .bench_stats import METRICS, pair_contrasts, projected_agreement, seed_agreement, seed_matrix, split_taus

log = logging.getLogger(__name__)

# Random streams of rng_for(seed, stream).
SELECT_STREAM = 0xBE5E  # selection (driver seed)
INIT_STREAM = 0xBE17  # decoder initialisation (item seed)
SHUFFLE_STREAM = 0xBE5F  # batch order (item seed)
PROJECTION_STREAM = 0xBE54  # projected_agreement of a seed extension (driver seed)
ITEM_SCHEMA = 1  # bump when an item's computation changes in a way its key does not see
NAMED = ("largest", "smallest", "reference")
EVAL_BATCH = 16  # eval-mode BN: scores do not depend on it
TABLE_COLUMNS = ("arch", "name", "stratum", "predicted_ms", "seed", "val_miou", "test_miou", "val_crack_iou",
                 "test_crack_iou", "final_train_loss", "epochs", "seconds", "train_seconds", "params", "item_key")

# (profile, data seed) -> (splits {train, val, test: FeatureSplit}, encoder weights id)
FeaturesFn = Callable[[Profile, int], tuple[dict, str]]


class BenchError(ValueError):
    """A bench setting, item or run is wrong; the message names the field or the item."""


# ------------------------------------------------------------------ settings


def as_profile(profile: Profile | str | Path) -> Profile:
    """A loaded profile (a :class:`Profile` is returned as is)."""
    return profile if isinstance(profile, Profile) else load_profile(profile)


def check_bench(profile: Profile) -> BenchConfig:
    """The profile's ``bench`` section, with the checks the loader cannot make alone.

    The section's own fields are checked when the profile loads (:class:`BenchConfig`); this
    checks what needs the latency section and the search space.

    Raises:
        BenchError: an include that is no architecture, or a reference target that is not one,
            naming ``bench.<field>`` and the profile.
    """
    _check_include(profile.bench.include, f"profile {profile.name!r}: bench.")
    reference_target(profile)
    return profile.bench


def _check_include(include, where: str) -> None:
    """Each include is a name of :data:`NAMED` or a canonical architecture string."""
    for entry in include:
        if entry not in NAMED:
            try:
                parse_arch(entry)
            except ValueError as err:
                raise BenchError(f"{where}include: {entry!r} is neither one of {', '.join(NAMED)} "
                                 f"nor an architecture string ({err})") from err


def reference_target(profile: Profile) -> str:
    """The target whose predicted latency stratifies the sample (default: the first local one).

    Raises:
        BenchError: the named target is not in the profile, or no local target exists.
    """
    names = [t.name for t in profile.latency.targets]
    name = profile.bench.reference_target
    if name:
        if name not in names:
            raise BenchError(f"profile {profile.name!r}: bench.reference_target {name!r} is not a latency target "
                             f"(targets: {', '.join(names) or 'none'})")
        return name
    local = [t.name for t in profile.latency.targets if t.kind == "local"]
    if not local:
        raise BenchError(f"profile {profile.name!r}: bench.reference_target is empty and there is no local target")
    return local[0]


def bench_profile(profile: Profile) -> Profile:
    """The profile the table is trained under: the profile itself, so the table shares the
    notebooks' data, split and encoder (the weight-sharing oracle is read against it)."""
    return profile


def bench_dir(profile: Profile) -> Path:
    """``results/<profile>/bench/`` (not created)."""
    return project_root() / "results" / profile.name / "bench"


def pilot_seed_list(bench: BenchConfig) -> tuple[int, ...]:
    """``pilot_seeds`` seeds: the table's seeds first, then the smallest unused integers."""
    seeds = list(bench.seeds[: bench.pilot_seeds])
    candidate = 0
    while len(seeds) < bench.pilot_seeds:
        if candidate not in seeds and candidate not in bench.seeds:
            seeds.append(candidate)
        candidate += 1
    return tuple(seeds)


# ------------------------------------------------------------------ selection


def uniform_architecture(op: str, width: int) -> np.ndarray:
    """Every layer the same (op, width) choice."""
    return np.full(N_LAYERS, choice_index(op, width), dtype=np.int64)


def named_architectures(model, target: str) -> dict[str, np.ndarray]:
    """``largest`` (every layer Conv7x7_w100), ``smallest`` (the target's exact fastest,
    :meth:`~linas_lib.latency.predict.LatencyModel.fastest`), ``reference`` (every layer DWSep3x3_w100)."""
    fastest, _ = model.subset([target]).fastest()
    return {"largest": uniform_architecture("Conv7x7", 100), "smallest": np.asarray(fastest[0], dtype=np.int64),
            "reference": uniform_architecture("DWSep3x3", 100)}


def stratified_selection(predict: Callable[[np.ndarray], np.ndarray], n: int, rng: np.random.Generator,
                         includes: dict[str, np.ndarray] | None = None, sample: int = 100000) -> list[dict]:
    """Architectures stratified over predicted latency, plus named includes (pure function).

    ``sample`` architectures are drawn uniformly (duplicates dropped), ordered by predicted
    latency and cut into ``n`` strata of equal count (quantiles); one architecture is drawn
    uniformly from each stratum with ``rng``. Named includes come first; an architecture met
    twice is kept once (its first name).

    Args:
        predict: choices ``(m, 5)`` -> predicted latency ``(m,)`` (ms).
        n: strata (one architecture each).
        rng: the only randomness (same state, same selection).
        includes: ``{name: choices (5,)}`` added as they are.
        sample: size of the uniform sample that is stratified.

    Returns:
        Rows ``{"name", "arch", "stratum", "predicted_ms", "stratum_lo_ms", "stratum_hi_ms"}``;
        includes have stratum -1 and NaN bounds. Strata rows are in increasing latency order.

    Raises:
        BenchError: fewer distinct sampled architectures than strata.
    """
    codes = np.unique(LINAS_SPACE.encode(LINAS_SPACE.sample(rng, sample)))
    if len(codes) < n:
        raise BenchError(f"latency sample has {len(codes)} distinct architectures, fewer than {n} strata")
    pool = LINAS_SPACE.decode(codes)
    latency = np.asarray(predict(pool), dtype=float)
    order = np.argsort(latency, kind="stable")
    rows = [_row(name, c, -1, float(np.asarray(predict(np.asarray(c)[None]))[0]), math.nan, math.nan)
            for name, c in (includes or {}).items()]
    for s, members in enumerate(np.array_split(order, n)):
        pick = members[int(rng.integers(len(members)))]
        lo, hi = latency[members[0]], latency[members[-1]]
        rows.append(_row(f"stratum_{s:03d}", pool[pick], s, float(latency[pick]), float(lo), float(hi)))
    return _dedupe(rows)


def _row(name: str, choices, stratum: int, ms: float, lo: float, hi: float) -> dict:
    return {"name": name, "arch": arch_string(choices), "stratum": int(stratum), "predicted_ms": ms,
            "stratum_lo_ms": lo, "stratum_hi_ms": hi}


def _dedupe(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for row in rows:
        if row["arch"] not in seen:
            seen.add(row["arch"])
            out.append(row)
    return out


def reference_model(profile: Profile):
    """:class:`~linas_lib.latency.predict.LatencyModel` of the reference target alone (its committed LUT only).

    Raises:
        BenchError: the target has no committed LUT file (it would be measured here) or it is
            optional and absent.
    """
    from ..latency.predict import model_from_luts
    from ..latency.targets import load_target_lut, measures_here

    name = reference_target(profile)
    target = next(t for t in profile.latency.targets if t.name == name)
    if measures_here(target):
        raise BenchError(f"profile {profile.name!r}: bench.reference_target {name!r} has no committed LUT (no "
                         "'lut:' path), so the selection would depend on this machine; name a target with one")
    lut = load_target_lut(profile, target)
    if lut is None:
        raise BenchError(f"profile {profile.name!r}: bench.reference_target {name!r} has no LUT (optional, absent)")
    return model_from_luts({name: lut}, {name: 0.0}, "interaction")


def select_architectures(profile: Profile, seed: int, model=None) -> list[dict]:
    """The table's architectures (see :func:`stratified_selection`), deterministic from ``seed``.

    Args:
        profile: supplies ``bench`` and the reference target.
        seed: selection seed (stream :data:`SELECT_STREAM`).
        model: a latency model with the reference target (default: its committed LUT).
    """
    bench, target = check_bench(profile), reference_target(profile)
    model = model if model is not None else reference_model(profile)
    column = model.target_names.index(target)
    named = named_architectures(model, target)
    includes = {e: (named[e] if e in named else parse_arch(e)) for e in bench.include}
    return stratified_selection(lambda c: model.predict(c)[:, column], bench.n_archs, rng_for(seed, SELECT_STREAM),
                                includes, bench.latency_sample)


def pilot_subset(selection: list[dict], k: int) -> list[dict]:
    """``k`` rows evenly spaced over the selection's predicted-latency order (extremes included)."""
    ordered = sorted(selection, key=lambda r: (r["predicted_ms"], r["arch"]))
    idx = sorted(set(np.linspace(0, len(ordered) - 1, min(k, len(ordered))).round().astype(int).tolist()))
    return [ordered[i] for i in idx]


# ------------------------------------------------------------------ items and keys


@dataclass(frozen=True)
class BenchData:
    """What an item's data is: split image names, their masks' digest, encoder weights id."""

    names: dict
    digest: str
    weights_id: str
    source: str = ""

    @classmethod
    def of(cls, splits: dict, weights_id: str, source: str = "") -> BenchData:
        """From splits (``SegDataset`` or ``FeatureSplit``: anything with ``names`` and ``masks``)."""
        return cls({s: tuple(splits[s].names) for s in SPLIT_NAMES}, data_digest(splits), weights_id, source)


def data_digest(splits: dict) -> str:
    """Content key of the three splits: image names and masks (masks carry resolution and aspect)."""
    return content_hash({s: {"names": list(splits[s].names), "masks": splits[s].masks} for s in SPLIT_NAMES})


def item_key(arch: str, seed: int, bench: BenchConfig, data: BenchData) -> str:
    """Key of one item: architecture, seed, training settings (:func:`key_fields` of ``bench``),
    split names, data digest and encoder weights id."""
    return content_hash({"schema": ITEM_SCHEMA, "arch": arch, "seed": int(seed), "train": key_fields(bench),
                         "split": {s: list(v) for s, v in data.names.items()}, "data": data.digest,
                         "weights": data.weights_id})


@dataclass(frozen=True)
class ItemSpec:
    """One (architecture, seed) to train: all a worker is sent besides the profile's name."""

    arch: str
    seed: int
    key: str
    path: str
    data_seed: int
    data_digest: str
    weights_id: str
    name: str = ""
    stratum: int = -1
    predicted_ms: float = math.nan
    numerics: str = "native"  # the driver's LINAS_NUMERICS: a worker in the other mode has other taps


def item_path(folder: Path, arch: str, seed: int) -> Path:
    """``<folder>/items/<arch>__s<seed>.json``."""
    return Path(folder) / "items" / f"{arch}__s{int(seed)}.json"


def plan_items(selection: list[dict], seeds: Iterable[int], bench: BenchConfig, data: BenchData, data_seed: int,
               folder: Path) -> list[ItemSpec]:
    """Every (architecture, seed) item of a selection, architecture-major (an arch's seeds adjacent)."""
    return [ItemSpec(row["arch"], int(s), item_key(row["arch"], s, bench, data), str(item_path(folder, row["arch"], s)),
                     int(data_seed), data.digest, data.weights_id, row["name"], int(row["stratum"]),
                     float(row["predicted_ms"]), numerics.mode())
            for row in selection for s in seeds]


def read_item(spec: ItemSpec) -> dict | None:
    """The item's result when its file exists with the same key, else None (unreadable: logged)."""
    try:
        record = load_json(spec.path)
    except ValueError as err:
        log.warning("bench item %s unreadable (%s); it is re-run", spec.path, err)
        return None
    if not isinstance(record, dict) or record.get("item_key") != spec.key:
        return None
    problem = _item_problem(record)
    if problem:
        log.warning("bench item %s: %s; it is re-run", spec.path, problem)
        return None
    return record


ITEM_METRICS = ("val_miou", "test_miou", "val_crack_iou", "test_crack_iou")  # each a fraction in [0, 1]


def _item_problem(record: dict) -> str:
    """Why a finished item's record cannot enter the table ("" when it can)."""
    for name in (*ITEM_METRICS, "final_train_loss", "seconds"):
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} = {value!r} is not a finite number"
        if name in ITEM_METRICS and not 0 <= value <= 1:
            return f"{name} = {value!r} lies outside [0, 1]"
    return ""


def pending_items(items: list[ItemSpec]) -> list[ItemSpec]:
    """Items without a finished file of the same key."""
    return [s for s in items if read_item(s) is None]


def spread_order(n: int) -> list[int]:
    """``range(n)`` in van der Corput (bit-reversed) order: every prefix spreads over the range.

    A build stopped part-way (``--limit``, a session's end) then leaves a table that covers the
    whole latency range at a coarser step, not only its fast end.
    """
    bits = max(1, (n - 1).bit_length())
    return sorted(range(n), key=lambda i: (int(format(i, f"0{bits}b")[::-1], 2), i))


def run_order(items: list[ItemSpec]) -> list[ItemSpec]:
    """Items with architectures in :func:`spread_order` (an architecture's seeds kept adjacent)."""
    archs = list(dict.fromkeys(s.arch for s in items))
    rank = {archs[i]: r for r, i in enumerate(spread_order(len(archs)))}
    return sorted(items, key=lambda s: rank[s.arch])


# ------------------------------------------------------------------ one item


@contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch intra-op threads, restoring the previous count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_item(choices, seed: int, bench: BenchConfig, splits: dict, device: str = "cpu") -> dict:
    """Train and score one fresh decoder on cached taps.

    Raises:
        linas_lib.losses.NonFiniteLossError: a NaN/inf loss; the message names the
            architecture and the seed.
    """
    from ..supernet.standalone import evaluate_scores, new_decoder, train_decoder

    arch = arch_string(choices)
    decoder = new_decoder(choices, torch_generator(rng_for(seed, INIT_STREAM))).to(device)
    start = time.perf_counter()
    history = train_decoder(decoder, splits["train"].to(device), bench.epochs, bench.lr, bench.batch_size,
                            rng_for(seed, SHUFFLE_STREAM), label=f"bench item {arch} seed {seed}",
                            schedule=bench.schedule, warmup_epochs=bench.warmup_epochs)
    train_s = time.perf_counter() - start
    scores = {f"{s}_{k}": v for s in ("val", "test")
              for k, v in evaluate_scores(decoder, splits[s].to(device), EVAL_BATCH).items()}
    return {"val_miou": scores["val_miou"], "test_miou": scores["test_miou"],
            "val_crack_iou": scores["val_crack_iou"], "test_crack_iou": scores["test_crack_iou"],
            "final_train_loss": history[-1]["loss"], "epochs": len(history),
            "seconds": time.perf_counter() - start, "train_seconds": train_s,
            "params": int(sum(p.numel() for p in decoder.parameters())),
            "loss_history": [h["loss"] for h in history]}


_FEATURES: dict[str, tuple[dict, str]] = {}


def cached_features(profile: Profile, data_seed: int) -> tuple[dict, str]:
    """The table's cached taps (built on a miss) and encoder weights id: the default features source.

    Memoised per process by the data and encoder settings, so a worker reads the dataset and
    the tap cache once, not once per item.
    """
    from ..encoder.features import run_features

    bp = bench_profile(profile)
    memo = content_hash({"data": bp.data, "encoder": bp.encoder, "seed": int(data_seed)})
    if memo not in _FEATURES:
        features = run_features(bp, data_seed)
        _FEATURES[memo] = (dict(features.splits), features.weights.weights_id)
    return _FEATURES[memo]


def run_item(spec: ItemSpec, profile_ref, features_fn: FeaturesFn | None = None) -> dict:
    """A Dask task: train one item and write its JSON file atomically; returns its table row.

    Loads the profile and the cached features itself (memoised per worker process), checks
    that they are the data the driver planned with, and skips the work when the file is
    already there with the same key.

    Args:
        spec: the item.
        profile_ref: profile name, YAML path or a :class:`Profile`.
        features_fn: ``(profile, data_seed) -> (splits, weights_id)`` (default :func:`cached_features`).

    Raises:
        BenchError: the worker's data, encoder or numerics mode differ from the driver's, or an
            item is missing in portable numerics (which trains no bench item).
        linas_lib.losses.NonFiniteLossError: NaN/inf loss (names architecture and seed).
    """
    if spec.numerics != numerics.mode():
        raise BenchError(f"bench item {spec.arch} seed {spec.seed}: the driver runs {spec.numerics} numerics and this "
                         f"worker {numerics.mode()} (set {numerics.ENV_VAR} alike on every worker's machine)")
    done = read_item(spec)
    if done is not None:
        return table_row(done)
    if spec.numerics != "native":
        raise BenchError(f"bench item {spec.arch} seed {spec.seed}: not trained; {numerics.ENV_VAR}={spec.numerics} "
                         "reads the committed items but does not train new ones (their keys and files are the "
                         "native items'; a portable table would need its own): run `linas bench` natively")
    profile = as_profile(profile_ref)
    bench = check_bench(profile)
    splits, weights_id = (features_fn or cached_features)(profile, spec.data_seed)
    if data_digest(splits) != spec.data_digest or weights_id != spec.weights_id:
        raise BenchError(f"bench item {spec.arch} seed {spec.seed}: this worker's data or encoder weights differ "
                         "from the driver's (another dataset, split or encoder on this machine?)")
    with torch_threads(bench.threads_per_worker):
        result = train_item(parse_arch(spec.arch), spec.seed, bench, splits, _device(profile))
    record = {"item_key": spec.key, "arch": spec.arch, "seed": spec.seed, "name": spec.name,
              "stratum": spec.stratum, "predicted_ms": spec.predicted_ms, **result,
              "settings": key_fields(bench), "data_digest": spec.data_digest, "weights_id": spec.weights_id,
              "threads": bench.threads_per_worker}
    write_json(spec.path, record, provenance(profile.name, profile.to_dict(), item_key=spec.key))
    return table_row(record)


def _device(profile: Profile) -> str:
    """``profile.device``, with a clear error when CUDA is asked for but absent."""
    import torch

    if profile.device == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"profile {profile.name!r}: device cuda, but torch sees no GPU on this worker")
    return profile.device


def table_row(record: dict) -> dict:
    """The table columns of an item record."""
    return {c: record.get(c) for c in TABLE_COLUMNS}


# ------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Plan:
    """What a build or status call works on."""

    profile: Profile
    selection: list[dict]
    items: list[ItemSpec]
    data: BenchData
    data_seed: int
    folder: Path
    pilot: bool


def make_plan(profile: Profile, seed: int = 0, pilot: bool = False, folder: Path | None = None,
              features_fn: FeaturesFn | None = None, model=None, build_features: bool = False) -> Plan:
    """Selection, data identity and item list of a build (``pilot``: the pilot's subset and seeds).

    Args:
        profile: the profile.
        seed: selection and data-split seed.
        pilot: ``pilot_archs`` of the selection x ``pilot_seeds`` seeds.
        folder: output folder (default ``results/<profile>/bench``).
        features_fn: features source (tests); default: splits loaded here, taps cached.
        model: latency model with the reference target (default: its committed LUT).
        build_features: make sure the tap cache exists (the driver, before fanning out).
    """
    bench = check_bench(profile)
    selection = select_architectures(profile, seed, model)
    chosen = pilot_subset(selection, bench.pilot_archs) if pilot else selection
    seeds = pilot_seed_list(bench) if pilot else bench.seeds
    return plan_for(profile, chosen, seeds, seed, folder, features_fn, build_features, pilot)


def plan_for(profile: Profile, selection: list[dict], seeds, seed: int = 0, folder: Path | None = None,
             features_fn: FeaturesFn | None = None, build_features: bool = False, pilot: bool = False) -> Plan:
    """The items of ``selection`` x ``seeds`` with the table's recipe, data and folder
    (:func:`make_plan`'s selection, or another one: 05's final networks)."""
    bench = check_bench(profile)
    data = _plan_data(profile, seed, features_fn, build_features)
    folder = Path(folder) if folder is not None else bench_dir(profile)
    return Plan(profile, selection, plan_items(selection, seeds, bench, data, seed, folder), data, seed, folder, pilot)


def finished_records(plan: Plan) -> list[dict]:
    """The item records of the plan that exist (and match their keys)."""
    return [r for r in (read_item(s) for s in plan.items) if r is not None]


def _plan_data(profile: Profile, seed: int, features_fn: FeaturesFn | None, build_features: bool) -> BenchData:
    """The table's data identity; with ``build_features`` the tap cache is built here first."""
    if features_fn is not None:
        splits, weights_id = features_fn(profile, seed)
        return BenchData.of(splits, weights_id, "injected")
    from ..encoder.features import encoder_identity, run_features

    bp = bench_profile(profile)
    source = resolve_source(bp.data)
    if source == "synthetic" and bp.data.source == "auto":
        log.warning("profile %s: CrackForest not found at %s; the bench table uses the synthetic dataset",
                    profile.name, bp.data.crackforest_dir)
    splits = load_splits(bp, seed)
    if build_features:
        weights_id = run_features(bp, seed, splits).weights.weights_id
    else:
        weights_id = encoder_identity(bp, seed, splits).weights_id
    return BenchData.of(splits, weights_id, source)


# ------------------------------------------------------------------ driver


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2, processes: bool = True):
    """A Dask client: ``Client(scheduler)``, or a fresh ``LocalCluster`` of single-threaded workers.

    Workers of a remote cluster need this project installed, the profile under the same name
    or absolute path, and the dataset; each machine builds its tap cache on first use (and
    :func:`run_item` refuses data that differ from the driver's).
    """
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _is_dask(executor) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed"


def submit_items(executor, items: list[ItemSpec], profile_ref, features_fn: FeaturesFn | None = None) -> dict:
    """Submit one :func:`run_item` task per item; ``{future: spec}``.

    ``executor`` is a Dask ``Client`` or any ``concurrent.futures`` executor.
    """
    futures = {}
    for spec in items:
        if _is_dask(executor):
            key = f"bench-{spec.arch}-s{spec.seed}-{uuid.uuid4().hex[:8]}"
            future = executor.submit(run_item, spec, profile_ref, features_fn, pure=False, key=key)
        else:
            future = executor.submit(run_item, spec, profile_ref, features_fn)
        futures[future] = spec
    return futures


def gather_items(executor, futures: dict, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Wait for the tasks as they complete (a tqdm bar); ``(rows, failures)``.

    A failed item is logged and recorded (architecture, seed, error); the others go on.
    """
    from tqdm.auto import tqdm

    if _is_dask(executor):
        from distributed import as_completed
    else:
        as_completed = concurrent.futures.as_completed
    rows, failures = [], []
    bar = tqdm(as_completed(list(futures)), total=len(futures), desc="bench items", unit="item", disable=not progress)
    for future in bar:
        spec = futures[future]
        try:
            rows.append(future.result())
            bar.set_postfix_str(f"{spec.name} s{spec.seed} test mIoU {rows[-1]['test_miou']:.3f}")
        except Exception as err:  # noqa: BLE001 -- one item's failure must not stop hours of others
            log.error("bench item %s seed %s failed: %s", spec.arch, spec.seed, err)
            failures.append({"arch": spec.arch, "seed": spec.seed, "error": f"{type(err).__name__}: {err}"})
    return rows, failures


def build(profile_ref, seed: int = 0, pilot: bool = False, scheduler: str | None = None, workers: int | None = None,
          limit: int | None = None, folder: Path | None = None, executor=None, features_fn: FeaturesFn | None = None,
          model=None, progress: bool = True) -> dict:
    """Build (or resume) the table: run the pending items on Dask, then assemble the files.

    Args:
        profile_ref: profile name or YAML path (sent to the workers), or a :class:`Profile`.
        seed: selection and data-split seed.
        pilot: the pilot (``pilot_archs`` x ``pilot_seeds``) instead of the table.
        scheduler: address of a Dask scheduler (default: a fresh ``LocalCluster``).
        workers: LocalCluster worker processes (default ``bench.workers``).
        limit: run at most this many pending items (None: all).
        folder: output folder (default ``results/<profile>/bench``).
        executor: an executor to use instead of Dask (tests).
        features_fn, model: injected data and latency model (tests).
        progress: show the tqdm bar.

    Returns:
        ``{"items", "done", "ran", "failed", "pending", "files": {...}, "agreement": {...}}``.

    Raises:
        BenchError: invalid settings, or items failed (after the files were written).
    """
    profile = as_profile(profile_ref)
    plan = make_plan(profile, seed, pilot, folder, features_fn, model, build_features=features_fn is None)
    ran, failures = run_pending(plan, _profile_ref(profile_ref), scheduler, workers, limit, executor, features_fn,
                                progress)
    summary = assemble(plan)
    summary.update(ran=ran, failed=len(failures))
    raise_failures(failures, "table written without them")
    return summary


def extend(profile_ref, seeds: Iterable[int], seed: int = 0, scheduler: str | None = None,
           workers: int | None = None, limit: int | None = None, folder: Path | None = None, executor=None,
           features_fn: FeaturesFn | None = None, model=None, progress: bool = True) -> dict:
    """Train more seeds of the table's architectures without touching the table.

    The notebooks read ``table.csv``, the mean over ``bench.seeds``; adding seeds to it one
    item at a time would mix means over different seed counts. So the new seeds' items are
    trained (resuming per item, on Dask as in :func:`build`) into the same ``items/`` folder,
    and only ``extension.json`` is written (:func:`extension_record`). When every item is
    done, list the seeds in the profile's ``bench.seeds`` and ``linas bench build`` assembles
    the table from the items without training anything. Items of the added seeds already in
    the folder with the same key (the pilot's seeds) are reused.

    Args:
        profile_ref: profile name or YAML path, or a :class:`Profile`.
        seeds: the seeds to add (those already in ``bench.seeds`` are rejected).
        seed, scheduler, workers, limit, folder, executor, features_fn, model, progress: as :func:`build`.

    Returns:
        ``{"items", "done", "ran", "failed", "pending", "seeds", "files", "agreement"}``.

    Raises:
        BenchError: no new seed, a negative or repeated one; the table's own items are not all
            finished (build the table first); or items failed (after the file was written).
    """
    profile = as_profile(profile_ref)
    added = _new_seeds(profile, seeds)
    base = make_plan(profile, seed, False, folder, features_fn, model, build_features=features_fn is None)
    missing = len(base.items) - len(finished_records(base))
    if missing:
        raise BenchError(f"bench extension: {missing} of the table's {len(base.items)} items are not finished in "
                         f"{base.folder} (or were made with other settings); run linas bench build first")
    plan = replace(base, items=plan_items(base.selection, added, profile.bench, base.data, seed, base.folder))
    ran, failures = run_pending(plan, _profile_ref(profile_ref), scheduler, workers, limit, executor, features_fn,
                                progress)
    path = plan.folder / "extension.json"
    record = extension_record(profile, base, plan, added, _earlier_forecast(path, added))
    write_json(path, record, provenance(profile.name, profile.to_dict(), data_seed=seed, extension_seeds=list(added),
                                        weights_id=plan.data.weights_id, data_digest=plan.data.digest))
    raise_failures(failures, "extension.json written without them")
    return {"items": record["items"], "done": record["done"], "ran": ran, "failed": len(failures),
            "pending": record["items"] - record["done"], "seeds": record["seeds"], "files": {"extension": str(path)},
            "agreement": record["agreement"]}


def extension_record(profile: Profile, base: Plan, plan: Plan, added: tuple[int, ...],
                     forecast: dict | None = None) -> dict:
    """What ``extension.json`` holds for the table (``base``) and the items of its ``added`` seeds (``plan``).

    * ``agreement``: the seed agreement over every seed, on the architectures that have them
      all so far (its own ``n_archs``), with the split-half tau from 4 seeds on;
    * ``split_taus``: per metric the tau of each split of the seeds into halves, the split
      ``bench.seeds | added seeds`` first: the table as it stands against a rerun, while the
      other splits mix seeds trained at other times (a batch effect would count as signal there);
    * ``agreement_table_seeds``: ``bench.seeds`` alone on the same architectures (is the
      finished subset like the whole table?);
    * ``seed_gap``: per metric, two contrasts of seed-pair taus with paired bootstrap CIs over
      architectures (:func:`~linas_lib.analysis.bench_stats.pair_contrasts`): ``gap_cross``,
      within-batch pairs minus pairs of a table seed and an added one (a batch effect), and
      ``gap_added``, the table's pairs minus the added seeds' pairs (are the added seeds noisier?);
      only on the ``seed_gap_archs`` architectures whose added items all came after the table's
      last item (:func:`_later_batch`), so that the seeds' two groups are two batches;
    * ``forecast``: :func:`_projected` from the table's seeds over all its architectures,
      kept from the first write (``forecast`` given) so that it stays a forecast.
    """
    table_seeds = set(profile.bench.seeds)
    all_seeds = tuple(profile.bench.seeds) + tuple(added)
    added_records, base_records = finished_records(plan), finished_records(base)
    added_rows, base_rows = [table_row(r) for r in added_records], [table_row(r) for r in base_records]
    complete = _complete_archs(base_rows + added_rows, all_seeds)
    later = _later_batch(base_records, added_records)
    batched = [r for r in complete if r["arch"] in later]
    return {"seeds": list(all_seeds), "added_seeds": list(added), "items": len(plan.items), "done": len(added_rows),
            "agreement": _agreement(complete), "split_taus": _split_taus(complete, all_seeds),
            "agreement_table_seeds": _agreement([r for r in complete if int(r["seed"]) in table_seeds]),
            "seed_gap": _seed_gap(batched, all_seeds, len(table_seeds)),
            "seed_gap_archs": len({r["arch"] for r in batched}),
            "forecast": forecast or {"made_at": _stamp(), **_projected(base_rows, len(all_seeds), base.data_seed)}}


def extension_rows(profile_ref, seed: int = 0, folder: Path | None = None, features_fn: FeaturesFn | None = None,
                   model=None) -> list[dict]:
    """Table rows (:func:`table_row`) of the seed extension's finished items: the seeds that
    ``extension.json`` added and the profile's ``bench.seeds`` does not list, on the table's
    architectures, each read only with its item key (the table's recipe, data and encoder).

    Returns:
        The rows; ``[]`` without an ``extension.json``.

    Raises:
        BenchError: ``extension.json`` has no list of integer ``added_seeds`` (the file named).
    """
    profile = as_profile(profile_ref)
    base = make_plan(profile, seed, False, folder, features_fn, model)
    path = base.folder / "extension.json"
    if not path.is_file():
        return []
    record = load_json(path)
    added = record.get("added_seeds") if isinstance(record, dict) else None
    if not isinstance(added, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in added):
        raise BenchError(f"{path}: added_seeds must be a list of integer seeds, got {added!r}")
    seeds = [s for s in added if s not in set(profile.bench.seeds)]
    plan = replace(base, items=plan_items(base.selection, seeds, profile.bench, base.data, seed, base.folder))
    return [table_row(r) for r in finished_records(plan)]


def _earlier_forecast(path: Path, added: tuple[int, ...]) -> dict | None:
    """The forecast of an earlier ``extension.json`` for the same added seeds (None: none)."""
    try:
        earlier = load_json(path)
    except (FileNotFoundError, ValueError):
        return None
    same = isinstance(earlier, dict) and earlier.get("added_seeds") == list(added)
    return earlier.get("forecast") if same else None


def _stamp() -> dict:
    """The commit and time a forecast was made at."""
    from ..provenance import git_sha

    return {"git_sha": git_sha(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _later_batch(base_records: list[dict], added_records: list[dict]) -> set[str]:
    """Architectures whose added-seed items all started once every item of the table had finished.

    Items of an added seed can predate the extension (the pilot's seeds, reused by key): those
    were trained in the table's batch, and comparing "table seeds" with "added seeds" there
    would not compare two batches. An item's finish is its provenance timestamp (to the
    second), its start that minus its ``seconds``. Without a time for every table item the
    batches cannot be told apart: the set is empty; an added item without one leaves its
    architecture out."""
    finished = [_finished_at(r) for r in base_records]
    if not finished or None in finished:
        return set()
    cut = max(finished) - dt.timedelta(seconds=1)  # stamps are to the second
    starts: dict[str, list] = {}
    for r in added_records:
        end = _finished_at(r)
        start = None if end is None else end - dt.timedelta(seconds=float(r["seconds"]))
        starts.setdefault(r["arch"], []).append(start)
    return {arch for arch, times in starts.items() if None not in times and min(times) >= cut}


def _finished_at(record: dict) -> dt.datetime | None:
    """An item's provenance timestamp as an aware datetime (None: absent or not ISO 8601 with an offset)."""
    prov = record.get("provenance")
    try:
        stamp = dt.datetime.fromisoformat(str(prov["timestamp"]))
    except (TypeError, KeyError, ValueError):
        return None
    return stamp if stamp.tzinfo is not None else None


def _seed_gap(rows: list[dict], seeds: tuple[int, ...], n_table: int) -> dict:
    """:func:`~linas_lib.analysis.bench_stats.pair_contrasts` of every metric the rows have, the
    columns in the order of ``seeds`` (the table's ``n_table`` first); ``{}`` below 2 table
    seeds, an added one or 3 architectures."""
    if n_table < 2 or len(seeds) <= n_table or len({r["arch"] for r in rows}) < 3:
        return {}
    out = {}
    for metric in (m for m in METRICS if all(m in r for r in rows)):
        matrix, _, columns = seed_matrix(rows, metric)
        out.update(pair_contrasts(matrix[:, [columns.index(s) for s in seeds]], n_table, metric))
    return out


def _split_taus(rows: list[dict], seeds: tuple[int, ...]) -> dict:
    """``{metric: {"0,1|2,3": tau, ...}}`` (:func:`~linas_lib.analysis.bench_stats.split_taus`)
    with the columns in the order of ``seeds``; ``{}`` below 4 seeds or 3 architectures."""
    if len(seeds) < 4 or len({r["arch"] for r in rows}) < 3:
        return {}
    out = {}
    for metric in METRICS:
        matrix, _, columns = seed_matrix(rows, metric)
        out[metric] = split_taus(matrix[:, [columns.index(s) for s in seeds]], seeds)
    return out


def recheck(profile_ref, n: int, seed: int = 0, folder: Path | None = None, scratch: Path | None = None,
            features_fn: FeaturesFn | None = None, model=None, arch: str = "") -> list[dict]:
    """Train ``n`` finished table items again on this machine and compare with their records.

    Training is deterministic on one machine but not across CPUs (kernels dispatch by vector
    ISA, and 15 epochs amplify the last bits): this measures by how much, for the benchmark
    table. The items are the ``n`` with the shortest recorded training (the check is about
    the machine, not the architecture). They are trained in this process into ``scratch`` (a
    temporary folder by default), never into ``items/``; ``bench/recheck.csv`` gets one row
    per item: each metric as recorded and as trained here, their difference, and the commit
    and CPU of both. With ``arch``: that architecture's finished items instead (the table's
    seeds and 05's ``search.final_seeds``), the ``n`` lowest seeds, into ``bench/recheck_arch.csv``.

    Raises:
        BenchError: ``n`` < 1, or no finished item (of the table, or of ``arch``).
    """
    import tempfile

    if n < 1:
        raise BenchError(f"bench recheck: n must be >= 1, got {n}")
    profile = as_profile(profile_ref)
    if arch:
        specs = _arch_items(profile, arch, seed, folder, features_fn)
    else:
        specs = make_plan(profile, seed, False, folder, features_fn, model, build_features=features_fn is None).items
    done = [(spec, record) for spec in specs if (record := read_item(spec)) is not None]
    where_from = f"of {arch}" if arch else "of the table"
    if not done:
        raise BenchError(f"bench recheck: no finished item {where_from} in {folder or bench_dir(profile)}")
    if arch:
        chosen = sorted(done, key=lambda pair: pair[0].seed)[:n]
    else:
        chosen = sorted(done, key=lambda pair: float(pair[1].get("train_seconds", math.inf)))[:n]
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(scratch) if scratch is not None else Path(tmp)
        rows = [_recheck_row(record, run_item(replace(spec, path=str(where / Path(spec.path).name)),
                                              profile, features_fn)) for spec, record in chosen]
    out = Path(folder or bench_dir(profile)) / ("recheck_arch.csv" if arch else "recheck.csv")
    write_csv(out, rows, provenance(profile.name, profile.to_dict(), data_seed=seed))
    return rows


def _arch_items(profile: Profile, arch: str, seed: int, folder: Path | None, features_fn) -> list[ItemSpec]:
    """One architecture's items at the table's seeds and 05's final seeds (each seed once).

    Raises:
        BenchError: ``arch`` is not an architecture string (saying why).
    """
    try:
        parse_arch(arch)
    except ValueError as err:
        raise BenchError(f"bench recheck --arch: {err}") from None
    selection = [{"arch": arch, "name": "recheck", "stratum": -1, "predicted_ms": math.nan}]
    seeds = sorted(set(profile.bench.seeds) | set(profile.search.final_seeds))
    return plan_for(profile, selection, seeds, seed, folder, features_fn, build_features=features_fn is None).items


def _recheck_row(record: dict, here: dict) -> dict:
    from ..provenance import machine

    was = record.get("provenance", {})
    row = {"arch": record["arch"], "seed": record["seed"], "recorded_sha": str(was.get("git_sha", ""))[:12],
           "recorded_cpu": _cpu_label(was.get("machine", {})), "here_cpu": _cpu_label(machine())}
    for metric in METRICS:
        row |= {f"{metric}_recorded": record[metric], f"{metric}_here": here[metric],
                f"{metric}_diff": here[metric] - record[metric]}
    row["identical"] = all(here[m] == record[m] for m in METRICS)
    return row


def _cpu_label(info: dict) -> str:
    """``cpu_id`` of a provenance machine block, or what it has when older runs did not record it."""
    return info.get("cpu_id") or f"{info.get('processor', '?')} (cpu_id not recorded)"


def _new_seeds(profile: Profile, seeds: Iterable[int]) -> tuple[int, ...]:
    """The seeds to add, checked against ``bench.seeds``."""
    added = tuple(int(s) for s in seeds)
    have = set(profile.bench.seeds)
    if not added or len(set(added)) != len(added) or min(added) < 0:
        raise BenchError(f"bench extension: seeds must be distinct non-negative integers, got {list(added)}")
    if have & set(added):
        raise BenchError(f"bench extension: seed(s) {sorted(have & set(added))} are already in profile "
                         f"{profile.name!r}'s bench.seeds {list(profile.bench.seeds)}")
    return added


def _projected(rows: list[dict], n_seeds: int, seed: int) -> dict:
    """Per metric, :func:`~linas_lib.analysis.bench_stats.projected_agreement` of ``n_seeds``
    from the table's own seeds (``{}`` while it has too few architectures)."""
    out = {}
    for metric in METRICS:
        try:
            matrix, _, _ = seed_matrix(rows, metric)
            out[metric] = projected_agreement(matrix, n_seeds, rng_for(seed, PROJECTION_STREAM))
        except ValueError:
            continue
    return out


def _complete_archs(rows: list[dict], seeds: tuple[int, ...]) -> list[dict]:
    """The rows of the architectures that have every one of ``seeds``."""
    have: dict[str, set] = {}
    for r in rows:
        have.setdefault(r["arch"], set()).add(int(r["seed"]))
    return [r for r in rows if have[r["arch"]] >= set(seeds)]


def run_pending(plan: Plan, ref, scheduler: str | None = None, workers: int | None = None, limit: int | None = None,
                executor=None, features_fn: FeaturesFn | None = None, progress: bool = True) -> tuple[int, list[dict]]:
    """Run a plan's pending items (at most ``limit``) on Dask or ``executor``; ``(ran, failures)``."""
    todo = run_order(pending_items(plan.items))
    if limit is not None:
        if limit < 0:
            raise BenchError(f"--limit must be >= 0, got {limit}")
        todo = todo[:limit]
    failures: list[dict] = []
    if todo:
        n_workers = workers or plan.profile.bench.workers
        with (nullcontext(executor) if executor is not None else dask_client(scheduler, n_workers)) as ex:
            _, failures = gather_items(ex, submit_items(ex, todo, ref, features_fn), progress)
    return len(todo), failures


def raise_failures(failures: list[dict], what: str) -> None:
    """Raise :class:`BenchError` listing up to five failed items (nothing when none failed)."""
    if failures:
        listed = "; ".join(f"{f['arch']} seed {f['seed']}: {f['error']}" for f in failures[:5])
        raise BenchError(f"{len(failures)} bench item(s) failed ({what}): {listed}")


def build_plan(plan: Plan, profile_ref, what: str, scheduler: str | None = None, workers: int | None = None,
               limit: int | None = None, executor=None, features_fn: FeaturesFn | None = None,
               progress: bool = True) -> dict:
    """Train a plan's pending items (:func:`run_pending`) and count them; ``{"items", "done",
    "ran", "pending"}``.

    Raises:
        BenchError: items failed, named with ``what`` (the others are kept).
    """
    ran, failures = run_pending(plan, _profile_ref(profile_ref), scheduler, workers, limit, executor, features_fn,
                                progress)
    raise_failures(failures, what)
    done = len(finished_records(plan))
    return {"items": len(plan.items), "done": done, "ran": ran, "pending": len(plan.items) - done}


def _profile_ref(profile_ref):
    """What travels to the workers: the profile's name, an absolute YAML path, or the object."""
    if isinstance(profile_ref, Profile):
        return profile_ref
    text = str(profile_ref)
    return str(profile_path(text).resolve()) if text.endswith((".yaml", ".yml")) or "/" in text else text


# ------------------------------------------------------------------ assembling the files


def assemble(plan: Plan) -> dict:
    """Write the table of every finished item, the split, the selection and the seed agreement."""
    rows = [table_row(r) for r in finished_records(plan)]
    prefix = "pilot_" if plan.pilot else ""
    prov = provenance(plan.profile.name, plan.profile.to_dict(), data_seed=plan.data_seed, pilot=plan.pilot,
                      weights_id=plan.data.weights_id, data_digest=plan.data.digest)
    files = {"split": str(write_json(plan.folder / "split.json", split_record(plan), prov)),
             "selection": str(write_csv(plan.folder / f"{prefix}selection.csv", plan.selection, prov))}
    if rows:
        files["table"] = str(write_csv(plan.folder / f"{prefix}table.csv", rows, prov))
    agreement = _agreement(rows)
    if agreement:
        files["agreement"] = str(write_json(plan.folder / f"{prefix}agreement.json", agreement, prov))
    return {"items": len(plan.items), "done": len(rows), "pending": len(plan.items) - len(rows), "files": files,
            "agreement": agreement}


def _agreement(rows: list[dict]) -> dict:
    """Seed agreement of the finished rows, or ``{}`` while fewer than 3 architectures have 2 seeds."""
    try:
        return seed_agreement(rows)
    except ValueError:
        return {}


def split_record(plan: Plan) -> dict:
    """The table's fixed split: image names per split, with the data identity."""
    b = plan.profile.bench
    return {"data_seed": plan.data_seed, "source": plan.data.source, "data_max_images": plan.profile.data.max_images,
            "fractions": list(plan.profile.data.split), "data_digest": plan.data.digest, "weights_id": plan.data.weights_id,
            **{s: list(plan.data.names[s]) for s in SPLIT_NAMES}}


def status(profile_ref, seed: int = 0, pilot: bool = False, folder: Path | None = None,
           features_fn: FeaturesFn | None = None, model=None, seeds: Iterable[int] | None = None) -> dict:
    """``{"items", "done", "pending", "stale"}`` without training anything (stale: a file of other settings).

    ``seeds``: count the items of these seeds of the table's architectures (an :func:`extend`)."""
    profile = as_profile(profile_ref)
    if pilot and seeds is not None:
        raise BenchError("bench status: added seeds extend the table, not the pilot; pass one of pilot, seeds")
    plan = make_plan(profile, seed, pilot, folder, features_fn, model)
    if seeds is not None:
        plan = replace(plan, items=plan_items(plan.selection, _new_seeds(profile, seeds), profile.bench, plan.data,
                                              seed, plan.folder))
    records = finished_records(plan)
    stale = sum(Path(s.path).is_file() and read_item(s) is None for s in plan.items)
    return {"items": len(plan.items), "done": len(records), "pending": len(plan.items) - len(records), "stale": stale,
            "folder": str(plan.folder), "weights_id": plan.data.weights_id, "source": plan.data.source,
            "train_hours_by_cpu": train_hours_by_cpu(records)}


def train_hours_by_cpu(records: Iterable[dict]) -> dict[str, dict]:
    """Training time of finished items per CPU their provenance records: ``{cpu: {items, hours}}``.

    A table's items can be trained on several machines (and a CPU trains 2-3x faster than
    another), so a sum of ``train_seconds`` over them is worker time, not one machine's.
    Items from before the CPU was recorded count as ``unrecorded``."""
    out: dict[str, dict] = {}
    for record in records:
        cpu = recorded_machine(record.get("provenance"))[0]
        entry = out.setdefault(cpu, {"items": 0, "hours": 0.0})
        entry["items"] += 1
        entry["hours"] += float(record.get("train_seconds") or 0.0) / 3600
    return dict(sorted(out.items()))
