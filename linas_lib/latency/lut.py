"""Latency lookup tables (LUTs): one versioned JSON schema, builder, loader and checker.

Schema ``linas-lut`` version 2 (one JSON object per target and resolution)::

    {
      "schema": "linas-lut", "schema_version": 2,
      "target": "cpu-torch-1t",            # target name (file name: <target>_<res>px.json)
      "runtime": "torch",                   # torch | ort | external
      "device": "cpu", "precision": "fp32", "threads": 1, "graph": false,
      "scope": "end-to-end",                # or decoder-only (only op_only entries)
      "resolution": 128,                    # input side; must equal the run's resolution
      "space": {"ops": [...], "widths": [...], "channels": [[1024, 512], ...],
                "fingerprint": "<sha256[:16] of ops, widths, channels>"},
      "measure": {"warmup": 10, "repeats": 30, "max_cv": 0.1, "max_retries": 2,
                  "max_time_ms": 250.0, "min_repeats": 5},
      "restricted": false,                  # true: a test build of a few choices only
      "layers": {"layer_0": {"c_in": 1024, "c_out": 512, "h_out": 8, "w_out": 8,
                             "op_only":   {"Conv3x3_w50": STATS, ...},    # (a)
                             "projected": {"Conv3x3_w50": STATS, ...}},   # (b)
                 ...},
      "fixed": {"preprocess": STATS, "encoder": STATS, "bottleneck": STATS,
                "head": STATS, "postprocess": STATS},                      # (c)
      "pairs": {"method": "sampled", "per_slot": 6, "seed": 0,            # (d)
                "entries": [{"layer": 0, "a": "Conv3x3_w50", "b": "EdgeConv_w75",
                             "pair": STATS, "single_a": STATS, "single_b": STATS,
                             "interaction_ms": -0.12}, ...]},
      "provenance": {...}
    }

``STATS`` = ``{mean_ms, std_ms, median_ms, min_ms, max_ms, n, n_raw, cv, retries}`` of the
IQR-filtered samples (:class:`linas_lib.latency.measure.Stats`); predictors use
``median_ms`` (``mean_ms`` where a file has no median, as the external ones). Keys of ``op_only`` and
``projected`` are :func:`linas_lib.space.op_key` strings; ``projected`` entries time op ->
ReLU -> BN [-> 1x1 projection] plus the skip-add of layers 0..3.

Pair interactions (I4): ``interaction = pair - single_a - single_b``, where the pair
(layers l and l+1 with their skip-adds) and the two projection-inclusive singles are timed
*interleaved* in the same rounds, so a drifting machine load cancels in the difference
(version 1 subtracted the separately timed LUT entries; on a shared CPU the drift between
those measurements swamped the interaction).
Timing all 4 x 21 x 21 = 1,764 pairs per CPU target is too slow, so the builder times
``per_slot`` pairs per adjacent-layer slot, drawn uniformly without replacement from a
generator seeded by ``seed`` (the same pairs for every target). The predictor uses a
measured pair's own interaction and, for every unmeasured pair of the slot, the mean of
the slot's measured interactions (``per_slot = 441`` measures the full table). This is a
per-slot constant model with measured exceptions -- it captures the systematic cost of
chaining layers (cache reuse, allocator, call overhead), not op-specific interactions.

How entries are timed (:mod:`linas_lib.latency.measure`): batch 1, one probing call, then
``warmup`` and ``repeats`` runs -- with ``max_time_ms > 0`` big entries get proportionally
fewer repeats (at least ``min_repeats``), small noisy ones the full count -- IQR filter,
re-measured while ``cv > max_cv`` (at most ``max_retries`` times). Torch targets run the
entry module eagerly (CUDA: events; ``-graph`` targets replay a captured CUDA graph); ORT
targets export each entry to a small ONNX model (in memory) and run it in an ONNX Runtime
session with pinned intra-op threads, as the whole network runs there. Pre- and
post-processing are host code timed by the wall clock.

External files (``data/external-luts/seg-nas-128px``, another schema) are read by
:func:`read_external` into this schema in memory (scope decoder-only, op_only only).
Builds checkpoint to ``<out>.partial.json`` after every entry group and resume from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..ops import layer_input_shape
from ..keys import atomic_write_text
from ..provenance import provenance
from ..space import CHANNELS, N_CHOICES, N_LAYERS, OPS, WIDTHS, choice_index, choice_key, parse_op_key
from . import entries as E
from .measure import (
    MeasureSettings, RuntimeSpec, Stats, measure_interleaved, measure_robust, spec_for_target, torch_threads, wall_timer,
)

SCHEMA = "linas-lut"
SCHEMA_VERSION = 2
VARIANTS = ("op_only", "projected")
STATS_FIELDS = tuple(Stats.__dataclass_fields__)


class LUTError(ValueError):
    """A LUT file is malformed or does not fit the run; the message names the file."""


def space_block() -> dict:
    """The search-space description stored in (and checked against) every LUT."""
    ops, widths, channels = list(OPS), list(WIDTHS), [list(c) for c in CHANNELS]
    text = json.dumps([ops, widths, channels])
    return {"ops": ops, "widths": widths, "channels": channels,
            "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16]}


def lut_filename(target: str, resolution: int) -> str:
    """Conventional file name of a LUT: ``<target>_<resolution>px.json``."""
    return f"{target}_{resolution}px.json"


# ----------------------------------------------------------------------------- loading


def load_lut(path, resolution: int | None = None) -> dict:
    """Read and validate a LUT file (ours or an external one, detected by its keys).

    Args:
        path: the JSON file.
        resolution: the run's input side; a LUT of another resolution is an error.

    Raises:
        LUTError: unreadable JSON, wrong schema, other search space, missing entries,
            other resolution -- the message names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise LUTError(f"{path}: LUT file not found") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LUTError(f"{path}: not valid JSON: {err}") from err
    if isinstance(data, dict) and data.get("schema") != SCHEMA and "hardware" in data:
        data = _external_to_schema(data, path)
    check_lut_data(data, path)
    if resolution is not None and data["resolution"] != resolution:
        raise LUTError(
            f"{path}: LUT measured at resolution {data['resolution']} but the run uses {resolution}; "
            "measure a LUT at the run's resolution (linas lut build --resolution ...)"
        )
    return data


def check_lut_data(data, path) -> None:
    """Validate a LUT dict against the schema (see module docstring).

    Raises:
        LUTError: naming ``path`` and the first problem found.
    """
    if not isinstance(data, dict):
        raise LUTError(f"{path}: a LUT must be a JSON object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA or data.get("schema_version") != SCHEMA_VERSION:
        raise LUTError(f"{path}: not a {SCHEMA} v{SCHEMA_VERSION} file (schema={data.get('schema')!r}, "
                       f"schema_version={data.get('schema_version')!r})")
    for key in ("target", "runtime", "scope", "resolution", "space", "layers"):
        if key not in data:
            raise LUTError(f"{path}: missing header field {key!r}")
    if not isinstance(data["resolution"], int) or data["resolution"] <= 0:
        raise LUTError(f"{path}: resolution must be a positive integer, got {data['resolution']!r}")
    _check_space(data["space"], path)
    variants = ("op_only",) if data["scope"] == "decoder-only" else VARIANTS
    for layer in range(N_LAYERS):
        _check_layer(data["layers"], layer, variants, path)
    if data["scope"] != "decoder-only":
        _check_fixed(data.get("fixed"), path)
        _check_pairs(data.get("pairs"), path)


def _check_space(space, path) -> None:
    expected = space_block()
    if not isinstance(space, dict):
        raise LUTError(f"{path}: 'space' must be an object")
    for key in ("ops", "widths", "channels"):
        if space.get(key) != expected[key]:
            raise LUTError(f"{path}: LUT measured for another search space: {key} = {space.get(key)!r}, "
                           f"this project has {expected[key]!r}")


def _check_layer(layers, layer: int, variants, path) -> None:
    name = f"layer_{layer}"
    if not isinstance(layers, dict) or name not in layers:
        raise LUTError(f"{path}: missing layer {name!r}")
    for variant in variants:
        table = layers[name].get(variant)
        if not isinstance(table, dict):
            raise LUTError(f"{path}: {name} has no {variant!r} entries")
        for choice in range(N_CHOICES):
            key = choice_key(choice)
            if key not in table:
                raise LUTError(f"{path}: {name}.{variant} is missing op {key!r}")
            _check_stats(table[key], f"{name}.{variant}.{key}", path)


def _check_stats(stats, where: str, path) -> None:
    if not isinstance(stats, dict) or not isinstance(stats.get("mean_ms"), (int, float)):
        raise LUTError(f"{path}: {where} needs a numeric mean_ms")
    if not np.isfinite(stats["mean_ms"]) or stats["mean_ms"] < 0:
        raise LUTError(f"{path}: {where}.mean_ms = {stats['mean_ms']!r} is not a finite latency")


def _check_fixed(fixed, path) -> None:
    if not isinstance(fixed, dict):
        raise LUTError(f"{path}: an end-to-end LUT needs a 'fixed' object ({', '.join(E.FIXED_STAGES)})")
    for stage in E.FIXED_STAGES:
        if stage not in fixed:
            raise LUTError(f"{path}: fixed cost {stage!r} missing")
        _check_stats(fixed[stage], f"fixed.{stage}", path)


def _check_pairs(pairs, path) -> None:
    if not isinstance(pairs, dict) or not isinstance(pairs.get("entries"), list):
        raise LUTError(f"{path}: an end-to-end LUT needs 'pairs' with a list of 'entries'")
    for i, entry in enumerate(pairs["entries"]):
        try:
            if not 0 <= entry["layer"] < N_LAYERS - 1:
                raise ValueError(f"layer {entry['layer']} is not an adjacent-layer slot 0..{N_LAYERS - 2}")
            parse_op_key(entry["a"]), parse_op_key(entry["b"])
            float(entry["interaction_ms"])
        except (KeyError, TypeError, ValueError) as err:
            raise LUTError(f"{path}: pairs.entries[{i}] malformed: {err}") from err


# ----------------------------------------------------------------------------- external


def read_external(path, resolution: int | None = None) -> dict:
    """Read a Seg-NAS device LUT (``lut_<device>.json``) into this schema (decoder-only).

    Raises:
        LUTError: as :func:`load_lut`.
    """
    return load_lut(path, resolution)


def _external_to_schema(raw: dict, path) -> dict:
    """Map the Seg-NAS schema (hardware, input_size, layers.layer_i.ops) onto ours."""
    try:
        layers = {}
        for name, layer in raw["layers"].items():
            ops = {key: _external_stats(value) for key, value in layer["ops"].items()}
            layers[name] = {"c_in": layer["C_in"], "c_out": layer["C_out"], "h_out": layer["H_out"],
                            "w_out": layer["W_out"], "op_only": ops}
        channels = [[layers[f"layer_{i}"]["c_in"], layers[f"layer_{i}"]["c_out"]] for i in range(len(layers))]
        keys = [parse_op_key(k) for k in layers["layer_0"]["op_only"]]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise LUTError(f"{path}: malformed external LUT (Seg-NAS schema): {err}") from err
    space = {"ops": [op for op in OPS if any(k[0] == op for k in keys)],
             "widths": sorted({w for _, w in keys}), "channels": channels}
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "target": str(raw["hardware"]),
        "runtime": "external", "device": str(raw["hardware"]), "precision": "fp32", "threads": None,
        "graph": False, "scope": "decoder-only", "resolution": raw.get("input_size"), "space": space,
        "measure": {"warmup": raw.get("warmup"), "repeats": raw.get("repeat")},
        "layers": layers, "source": str(path),
    }


def _external_stats(value: dict) -> dict:
    return {"mean_ms": float(value["mean_ms"]), "std_ms": float(value.get("std_ms", 0.0))}


# ----------------------------------------------------------------------------- tables


def latency_ms(stats: dict) -> float:
    """The latency a predictor uses for one entry: the median of the kept samples when the
    entry has one (robust to a busy machine), else ``mean_ms`` (external files)."""
    return float(stats["median_ms"] if stats.get("median_ms") is not None else stats["mean_ms"])


def entry_table(lut: dict, variant: str) -> np.ndarray:
    """``(5, 21)`` mean latency (ms) of every (layer, choice) of one variant."""
    table = np.empty((N_LAYERS, N_CHOICES))
    for layer in range(N_LAYERS):
        entries = lut["layers"][f"layer_{layer}"][variant]
        table[layer] = [latency_ms(entries[choice_key(c)]) for c in range(N_CHOICES)]
    return table


def fixed_total(lut: dict, stages=E.FIXED_STAGES) -> float:
    """Sum of the named fixed costs (ms); 0 for decoder-only LUTs."""
    if lut["scope"] == "decoder-only":
        return 0.0
    return float(sum(latency_ms(lut["fixed"][s]) for s in stages))


def pair_table(lut: dict) -> np.ndarray:
    """``(4, 21, 21)`` interaction (ms) of adjacent layers: measured, else the slot mean."""
    table = np.zeros((N_LAYERS - 1, N_CHOICES, N_CHOICES))
    if lut["scope"] == "decoder-only":
        return table
    entries = lut["pairs"]["entries"]
    for slot in range(N_LAYERS - 1):
        mine = [e for e in entries if e["layer"] == slot]
        table[slot] = np.mean([e["interaction_ms"] for e in mine]) if mine else 0.0
        for e in mine:
            table[slot, choice_index(*parse_op_key(e["a"])), choice_index(*parse_op_key(e["b"]))] = e["interaction_ms"]
    return table


def sampled_pairs(per_slot: int, seed: int) -> list[tuple[int, int, int]]:
    """The ``(slot, choice_a, choice_b)`` pairs a build times: ``per_slot`` per slot, seeded."""
    rng = np.random.default_rng([seed, 0x9A125])
    per_slot = min(int(per_slot), N_CHOICES * N_CHOICES)
    pairs = []
    for slot in range(N_LAYERS - 1):
        flat = rng.choice(N_CHOICES * N_CHOICES, size=per_slot, replace=False)
        pairs += [(slot, int(f // N_CHOICES), int(f % N_CHOICES)) for f in sorted(flat)]
    return pairs


# ----------------------------------------------------------------------------- building


def build_lut(target: str, resolution: int, settings: MeasureSettings, out, *, pairs_per_slot: int = 6,
              pair_seed: int = 0, choices=None, progress: bool = True) -> dict:
    """Measure a LUT for a local/gpu target on this machine and write it to ``out``.

    Args:
        target: a target name understood by :func:`spec_for_target` (``cpu-ort-1t`` ...).
        resolution: input side (multiple of 32).
        settings: warm-up, repeats, CV limit and retries of every entry.
        out: the JSON file to write (``<out>.partial.json`` holds progress; a rerun resumes).
        pairs_per_slot: pairs timed per adjacent-layer slot (see module docstring).
        pair_seed: seed of the pair sample.
        choices: restrict the measured choices (tests, smoke profile); each unmeasured
            choice then takes the entry of a measured choice of the same op (else the first
            measured one) so the file stays complete -- such a LUT is marked
            ``"restricted": true`` and is not a measurement of those entries.
        progress: show a tqdm bar when tqdm is installed.

    Returns:
        The LUT dict (as written).
    """
    spec = spec_for_target(target)
    out = Path(out)
    partial = out.with_name(out.stem + ".partial.json")
    header = _header(target, spec, resolution, settings, pairs_per_slot, pair_seed, choices)
    lut = _resume(partial, header)
    gen = torch.Generator().manual_seed(0)
    measured = sorted(set(range(N_CHOICES) if choices is None else (int(c) for c in choices)))
    groups = _groups(resolution, measured, pairs_per_slot, pair_seed)
    for group, jobs in _progress(groups, progress, target):
        if group in lut["done"]:
            continue
        for where, (module_fn) in jobs:
            _store(lut, where, _time_job(module_fn, spec, settings, gen))
        lut["done"].append(group)
        atomic_write_text(partial, json.dumps(lut, indent=1))
    final = _finish(lut, measured)
    atomic_write_text(out, json.dumps(final, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    check_lut_data(final, out)
    return final


def _header(target, spec: RuntimeSpec, resolution, settings, pairs_per_slot, pair_seed, choices) -> dict:
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "target": target, "runtime": spec.runtime,
        "device": spec.device, "precision": spec.precision, "threads": spec.threads, "graph": spec.graph,
        "scope": "end-to-end", "resolution": int(resolution), "space": space_block(),
        "measure": {"warmup": settings.warmup, "repeats": settings.repeats, "max_cv": settings.max_cv,
                    "max_retries": settings.max_retries, "max_time_ms": settings.max_time_ms,
                    "min_repeats": settings.min_repeats},
        "restricted": choices is not None,
        "pairs_config": {"method": "sampled", "per_slot": int(pairs_per_slot), "seed": int(pair_seed)},
    }


def _resume(partial: Path, header: dict) -> dict:
    """The partial build at ``partial`` if it was made with the same header, else a new one."""
    if partial.is_file():
        try:
            lut = json.loads(partial.read_text())
            if {k: lut.get(k) for k in header} == header:
                return lut
        except json.JSONDecodeError:
            pass
    layers = {}
    for layer in range(N_LAYERS):
        c_in, side, _ = layer_input_shape(layer, header["resolution"])
        layers[f"layer_{layer}"] = {"c_in": c_in, "c_out": CHANNELS[layer][1], "h_out": 2 * side,
                                    "w_out": 2 * side, "op_only": {}, "projected": {}}
    return {**header, "layers": layers, "fixed": {}, "pair_entries": [], "done": []}


def _groups(resolution: int, measured, pairs_per_slot: int, pair_seed: int):
    """Checkpoint groups: ``(name, [(where, factory)])``, factory(gen) -> module+inputs or host fn."""
    groups = [("fixed", [(("fixed", s), _fixed_factory(s, resolution)) for s in E.FIXED_STAGES])]
    for layer in range(N_LAYERS):
        for variant, make in (("op_only", E.op_only_entry), ("projected", E.projected_entry)):
            jobs = [((variant, layer, c), _entry_factory(make, layer, c, resolution)) for c in measured]
            groups.append((f"{variant}/layer_{layer}", jobs))
    # restricted builds time the sampled pairs' donors (see _donor), so pairs still get timed
    pairs = dict.fromkeys((s, _donor(a, measured), _donor(b, measured)) for s, a, b in sampled_pairs(pairs_per_slot, pair_seed))
    pair_jobs = [(("pair", s, a, b), _pair_factory(s, a, b, resolution)) for s, a, b in pairs]
    groups.append(("pairs", pair_jobs))
    return groups


def _fixed_factory(stage, resolution):
    if stage in ("preprocess", "postprocess"):
        return HostStage(stage, resolution)
    return lambda gen: E.fixed_module(stage, resolution, gen)


class HostStage:
    """Factory of a host stage (pre/post-processing): timed by the wall clock on every target."""

    def __init__(self, stage: str, resolution: int):
        self.stage, self.resolution = stage, resolution

    def __call__(self, gen, spec: RuntimeSpec):
        return E.host_stage(self.stage, self.resolution, gen, spec)


def _entry_factory(make, layer, choice, resolution):
    return lambda gen: make(layer, choice, resolution, gen)


def _pair_factory(slot, a, b, resolution):
    return PairJob(slot, a, b, resolution)


class PairJob:
    """Factory of one pair measurement: the pair and its two singles, timed interleaved."""

    def __init__(self, slot: int, a: int, b: int, resolution: int):
        self.slot, self.a, self.b, self.resolution = slot, a, b, resolution

    def __call__(self, gen):
        return [E.pair_entry(self.slot, self.a, self.b, self.resolution, gen),
                E.projected_entry(self.slot, self.a, self.resolution, gen),
                E.projected_entry(self.slot + 1, self.b, self.resolution, gen)]


def _time_job(factory, spec: RuntimeSpec, settings: MeasureSettings, gen) -> Stats:
    with torch_threads(spec.threads):
        if isinstance(factory, HostStage):
            return measure_robust(factory(gen, spec), settings, wall_timer)
        if isinstance(factory, PairJob):
            runners = [E.entry_runner(*made, spec) for made in factory(gen)]
            return measure_interleaved(runners, settings, spec.timer)
        return measure_robust(E.entry_runner(*factory(gen), spec), settings, spec.timer)


def _store(lut: dict, where: tuple, stats: Stats) -> None:
    if where[0] == "fixed":
        lut["fixed"][where[1]] = stats.to_dict()
    elif where[0] == "pair":
        pair, single_a, single_b = stats
        lut["pair_entries"].append({"layer": where[1], "a": choice_key(where[2]), "b": choice_key(where[3]),
                                    "pair": pair.to_dict(), "single_a": single_a.to_dict(),
                                    "single_b": single_b.to_dict()})
    else:
        variant, layer, choice = where
        lut["layers"][f"layer_{layer}"][variant][choice_key(choice)] = stats.to_dict()


def _finish(lut: dict, measured) -> dict:
    """Fill restricted entries, compute pair interactions, add provenance."""
    final = {k: v for k, v in lut.items() if k not in ("done", "pair_entries", "pairs_config")}
    donor = {c: _donor(c, measured) for c in range(N_CHOICES)}
    for layer in final["layers"].values():
        for variant in VARIANTS:
            layer[variant] = {choice_key(c): layer[variant][choice_key(donor[c])] for c in range(N_CHOICES)}
    entries = [{**e, "interaction_ms": latency_ms(e["pair"]) - latency_ms(e["single_a"]) - latency_ms(e["single_b"])}
               for e in lut["pair_entries"]]
    final["pairs"] = {**lut["pairs_config"], "entries": entries}
    final["provenance"] = provenance(lut_target=lut["target"], command="linas_lib.latency.lut.build_lut")
    return final


def _donor(choice: int, measured) -> int:
    """The measured choice whose entry an unmeasured one takes: itself, same op, else the first."""
    if choice in measured:
        return choice
    same_op = [c for c in measured if c // len(WIDTHS) == choice // len(WIDTHS)]
    return same_op[0] if same_op else measured[0]


def _progress(groups, enabled: bool, target: str):
    if not enabled:
        return groups
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return groups
    return tqdm(groups, desc=f"LUT {target}", leave=False)


def lut_summary(lut: dict) -> dict:
    """Counts and medians of a LUT (for ``linas lut check`` and the summary table)."""
    variants = ("op_only",) if lut["scope"] == "decoder-only" else VARIANTS
    cvs = [e["cv"] for layer in lut["layers"].values() for v in variants for e in layer[v].values() if "cv" in e]
    n = sum(len(layer[v]) for layer in lut["layers"].values() for v in variants)
    n += len(lut.get("fixed", {})) + len(lut.get("pairs", {}).get("entries", []))
    return {"target": lut["target"], "runtime": lut["runtime"], "scope": lut["scope"],
            "resolution": lut["resolution"], "n_entries": n,
            "median_cv": float(np.median(cvs)) if cvs else None,
            "retries": int(sum(e.get("retries", 0) for layer in lut["layers"].values() for v in variants
                               for e in layer[v].values()))}
