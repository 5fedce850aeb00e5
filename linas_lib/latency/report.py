"""What notebooks 01_luts and 02_latency_accuracy compute: LUT summaries, feasible shares and
the end-to-end validation of the predictors (the C3 throughput check is :mod:`.c3`).

Everything here is a few calls over :mod:`~linas_lib.latency.predict` and
:mod:`~linas_lib.latency.e2e`; end-to-end measurements checkpoint to the cache after every
architecture, so an interrupted notebook resumes.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import replace

import numpy as np

from ..paths import cache_dir, display_path
from ..keys import atomic_write_text, load_cache_json
from ..space import N_ARCHS, N_CHOICES, N_LAYERS, all_archs, arch_string, choice_key, decode
from ..stats import CI_STREAM, mean_ci
from . import e2e
from .measure import spec_for_target, summarise
from . import lut as L
from . import predict as P
from . import quiet
from . import targets as T

log = logging.getLogger(__name__)

VARIANT_LABELS = {"op_only": "op-only sum (baseline)", "projected": "+ projection & fixed costs",
                  "interaction": "+ pair interaction (I4)",
                  "calibrated": "affine calibration of the best sum on K anchors (held-out archs)",
                  "test_retest": "single-pass repeatability: each pass against each earlier one (not the floor of "
                                 "the pooled truth: that is pooled_noise_est_pct)"}
STATISTIC = "median_ms"  # LUT entries, end-to-end ground truth, budgets and C3's per-image column
WITHIN = 0.05  # the "within +-5 %"


def local_targets(profile) -> list:
    """The profile's local (measured here, end-to-end) targets."""
    return [t for t in profile.latency.targets if t.kind == "local"]


def target_rows(profile, here: bool = False) -> list[dict]:
    """One row per target: kind, scope, LUT path and status (``not measured`` GPU LUTs included)."""
    return [{"target": t.name, "kind": t.kind, "scope": t.scope, "budget_ms": t.budget_ms,
             "lut": display_path(T.target_lut_path(profile, t, here)),
             "status": T.target_status(profile, t, here)} for t in profile.latency.targets]


def feasible_share(model: P.LatencyModel, chunk: int = 1 << 20) -> dict[str, dict]:
    """Min/max predicted latency and share of all 4,084,101 archs within budget, per target."""
    archs = all_archs()
    lo = np.full(len(model.target_names), np.inf)
    hi = np.full(len(model.target_names), -np.inf)
    ok = np.zeros(len(model.target_names))
    for start in range(0, N_ARCHS, chunk):
        pred = model.predict(archs[start:start + chunk])
        lo, hi = np.minimum(lo, pred.min(0)), np.maximum(hi, pred.max(0))
        ok += (pred <= model.budgets_ms).sum(0)
    return {n: {"min_ms": lo[i], "max_ms": hi[i], "feasible_share": ok[i] / N_ARCHS}
            for i, n in enumerate(model.target_names)}


def latency_quantiles(model: P.LatencyModel, quantiles=(0.2, 0.5, 0.8), stride: int = 7) -> np.ndarray:
    """``(n_quantiles, n_targets)`` predicted-latency quantiles over every ``stride``-th arch
    (a deterministic 1/7 sample of the space; what a budget must sit between to bind)."""
    return np.quantile(model.predict(all_archs()[::stride]), quantiles, axis=0)


def lut_summary_rows(profile, luts: dict[str, dict], model: P.LatencyModel) -> list[dict]:
    """The LUT summary table: runtime, scope, entries, latency range and quantiles, budget,
    feasible share, median CV."""
    shares = feasible_share(model)
    q20, q50, q80 = latency_quantiles(model)
    rows = []
    for name, lut in luts.items():
        info = L.lut_summary(lut)
        rows.append({"target": name, "runtime": lut["runtime"], "scope": lut["scope"],
                     "n_entries": info["n_entries"], "min_arch_ms": shares[name]["min_ms"],
                     "max_arch_ms": shares[name]["max_ms"], "p20_arch_ms": q20[model.target_names.index(name)],
                     "p50_arch_ms": q50[model.target_names.index(name)], "p80_arch_ms": q80[model.target_names.index(name)],
                     "budget_ms": float(model.budgets_ms[model.target_names.index(name)]),
                     "budget_rule": _budget_rule(profile, name),
                     "feasible_pct": 100 * shares[name]["feasible_share"], "median_cv": info["median_cv"],
                     "variant": model.variant if lut["scope"] != "decoder-only" else "op_only"})
    return rows


def _budget_rule(profile, name: str) -> str:
    target = next(t for t in profile.latency.targets if t.name == name)
    return f"quantile {target.budget_quantile:g}" if target.budget_quantile > 0 else "fixed"


def heatmap_matrix(lut: dict) -> tuple[np.ndarray, list[str]]:
    """``(5, 21)`` ms of the LUT's main variant (projected, else op-only) and the column keys."""
    variant = "op_only" if lut["scope"] == "decoder-only" else "projected"
    return L.entry_table(lut, variant), [choice_key(c) for c in range(N_CHOICES)]


def heatmap_panels(luts: dict[str, dict]) -> tuple[dict[str, np.ndarray], list[str]]:
    """``({"<target> (<runtime>, <variant>)": (5, 21) ms}, keys)`` for :func:`plots.lut_heatmaps`."""
    panels, keys = {}, []
    for name, lut in luts.items():
        matrix, keys = heatmap_matrix(lut)
        variant = "op-only" if lut["scope"] == "decoder-only" else "projection-inclusive"
        panels[f"{name} ({lut['runtime']}, {variant})"] = matrix
    return panels, keys


# ---------------------------------------------------------------- validation (02)


def validation_archs(rng: np.random.Generator, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """``n`` distinct uniformly random architectures ``(n, 5)``, none of them in ``exclude``."""
    taken = set() if exclude is None else {arch_string(a) for a in exclude}
    drawn = decode(rng.choice(N_ARCHS, size=n + len(taken), replace=False))
    return np.array([a for a in drawn if arch_string(a) not in taken][:n]).reshape(-1, drawn.shape[1])


def anchor_archs(model: P.LatencyModel, rng: np.random.Generator, k: int, sample: int = 10_000) -> np.ndarray:
    """``k`` calibration anchors spread over the predicted latency range, chosen once.

    From ``sample`` random architectures, ranked by their predicted latency relative to each
    target's median (averaged over the model's targets), the ones at ranks ``(i + 1/2) / k``.
    """
    if k == 0:
        return np.zeros((0, 5), dtype=np.int64)
    candidates = decode(rng.choice(N_ARCHS, size=sample, replace=False))
    pred = model.predict(candidates)
    score = (pred / np.median(pred, axis=0)).mean(axis=1)
    ranks = ((np.arange(k) + 0.5) / k * sample).astype(int)
    return candidates[np.argsort(score, kind="stable")[ranks]]


def measure_validation(profile, archs: np.ndarray, image: np.ndarray, orders: list[np.ndarray],
                       progress: bool = True) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Raw end-to-end latencies (ms) of every arch on every local target, checkpointed.

    Independent passes, one per order of ``orders`` (:func:`measurement_orders`: one
    shuffled order per pass), time every local target of an architecture in rounds
    (:func:`~.e2e.time_interleaved`: ``e2e_warmup`` untimed, ``e2e_repeats`` timed rounds),
    so slow drifts of the machine spread over targets and architectures instead of
    following the list. Each
    architecture's timings are judged by the quiet-machine guard (:mod:`~.quiet`) before they
    are kept; every (pass, architecture) is checkpointed, so an interrupted run resumes.

    Returns:
        ``({target: ms (n_archs, passes, repeats)}, load records)``: one record per run that
        measured anything (a resumed pass adds one).
    """
    targets = [t.name for t in local_targets(profile)]
    lat = profile.latency
    for shortfall in lat.protocol_shortfalls():
        log.warning("profile %s: %s; its accuracy figures are not read as the issue's", profile.name, shortfall)
    key = e2e.dumps_key("samples-v3", targets, archs.tolist(), profile.data.resolution, lat.e2e_warmup,
                        lat.e2e_repeats, [o.tolist() for o in orders])
    path = cache_dir("e2e") / f"validation_{profile.name}_{key}.json"
    done = load_cache_json(path, "end-to-end timing checkpoint",
                           lambda d: _timing_problem(d, targets, lat.e2e_repeats)) or {}
    loads = done.setdefault(LOAD_KEY, [])
    todo = [(p, archs[i]) for p, order in enumerate(orders) for i in order if _item(p, archs[i]) not in done]
    if todo:
        encoder = e2e.shared_encoder()
        with quiet.watch("end-to-end validation", max_threads(profile), lat.quiet) as load:
            for p, arch in _progress(todo, progress, "end-to-end"):
                since = load.mark()
                done[_item(p, arch)] = _samples(profile, targets, arch, image, encoder)
                load.check(since, f"pass {p} {arch_string(arch)}")
                atomic_write_text(path, json.dumps(done))
        loads.append(load.record)
        atomic_write_text(path, json.dumps(done))
    return {t: np.array([[done[_item(p, a)][t] for p in range(len(orders))] for a in archs])
            for t in targets}, loads


def measurement_orders(rng: np.random.Generator, n_archs: int, passes: int) -> list[np.ndarray]:
    """The order :func:`measure_validation` times the architectures in, one permutation per
    pass (a generator in the same state gives the same orders)."""
    return [rng.permutation(n_archs) for _ in range(passes)]


def drift_rows(samples: dict[str, np.ndarray], orders: list[np.ndarray], blocks: int = 10) -> list[dict]:
    """How the machine's speed moved while 02 measured: the planned measurement sequence
    (pass by pass, each in its order) cut into ``blocks`` consecutive blocks; per block and
    target the median of ``pass value / the architecture's pooled ground truth``.

    Dividing by each architecture's own pooled value takes the architecture out, so a
    ratio away from 1 is the machine running slower or faster than on average at that
    time, which a steal or load reading need not show. ``drift_range_pct`` (in
    :func:`drift_figures`) is the spread of the block medians.
    """
    passes, truth = pass_values(samples), ground_truth(samples)
    sequence = [(p, int(i)) for p, order in enumerate(orders) for i in order]
    rows = []
    for target, values in passes.items():
        ratios = np.array([values[i, p] / truth[target][i] for p, i in sequence])
        for b, chunk in enumerate(np.array_split(np.arange(len(sequence)), blocks)):
            if len(chunk):
                rows.append({"target": target, "block": b, "first_item": int(chunk[0]), "last_item": int(chunk[-1]),
                             "n": len(chunk), "median_ratio": float(np.median(ratios[chunk]))})
    return rows


def drift_figures(rows: list[dict]) -> dict:
    """``{drift_range_pct: {target: 100 x (max - min) of the block medians}}`` for ``flatten``."""
    out: dict[str, float] = {}
    for target in dict.fromkeys(r["target"] for r in rows):
        medians = [r["median_ratio"] for r in rows if r["target"] == target]
        out[target] = 100 * (max(medians) - min(medians))
    return {"drift_range_pct": out} if out else {}


def _item(pass_: int, arch) -> str:
    return f"{pass_}|{arch_string(arch)}"


LOAD_KEY = "_machine_load"  # the validation checkpoint's load records (no item key starts with "_")


def _timing_problem(data, targets: list[str], repeats: int | None = None) -> str:
    """Why an end-to-end timing checkpoint is unusable ("" when every item holds a list of
    ``repeats`` finite numbers, or any non-empty list without ``repeats``, per target of ``targets``)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if not isinstance(data.get(LOAD_KEY, []), list):
        return f"{LOAD_KEY} is not a list"
    for item, per_target in data.items():
        if item == LOAD_KEY:
            continue
        if not isinstance(per_target, dict) or sorted(per_target) != sorted(targets) or not all(
                isinstance(v, list) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
                for v in per_target.values()):
            return f"item {item!r} is not {{target: [finite ms, ...]}} for the targets {targets}"
        lengths = {len(v) for v in per_target.values()}
        if 0 in lengths or (repeats is not None and lengths != {repeats}):
            want = f"{repeats} runs" if repeats is not None else "at least one run"
            return f"item {item!r} holds {sorted(lengths)} runs per target, not {want}"
    return ""


def _samples(profile, targets: list[str], arch, image: np.ndarray, encoder) -> dict[str, list[float]]:
    lat = profile.latency
    pipelines = {t: e2e.pipeline(t, arch, profile.data.resolution, e2e.onnx_folder(), encoder) for t in targets}
    return e2e.time_interleaved(pipelines, image, lat.e2e_warmup, lat.e2e_repeats)


def ground_truth(samples: dict[str, np.ndarray], statistic: str = STATISTIC) -> dict[str, np.ndarray]:
    """Per target, each architecture's latency: :data:`STATISTIC` of all its passes' runs pooled."""
    return {t: pooled(arr, statistic) for t, arr in samples.items()}


def pooled(runs: np.ndarray, statistic: str = STATISTIC) -> np.ndarray:
    """Each architecture's ``statistic`` of every run in ``runs`` (archs x passes x repeats) pooled."""
    return np.array([getattr(summarise(s.ravel()), statistic) for s in runs])


def pass_values(samples: dict[str, np.ndarray], statistic: str = STATISTIC) -> dict[str, np.ndarray]:
    """Per target ``(n_archs, passes)``: the statistic of each pass on its own."""
    return {t: np.array([[getattr(summarise(p), statistic) for p in s] for s in arr]) for t, arr in samples.items()}


def speed_factors(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per target ``(n_archs, passes)``: how fast the machine ran while one pass timed one
    architecture, read from the *other* targets timed in the same rounds.

    Each other target's pass value over its pooled value (the architecture divided out)
    measures the machine's speed at that moment; their geometric mean is the factor. The
    target itself is left out, so its own measurement noise is not divided away with the
    drift. Empty with fewer than two targets (nothing else was timed alongside).
    """
    if len(samples) < 2:
        return {}
    passes, truth = pass_values(samples), ground_truth(samples)
    logs = {t: np.log(v / truth[t][:, None]) for t, v in passes.items()}
    return {t: np.exp(np.mean([v for u, v in logs.items() if u != t], axis=0)) for t in samples}


def drift_corrected(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The raw runs with the machine's shared speed changes divided out (:func:`speed_factors`):
    what the measurement would read if the machine had kept its average speed. Assumes a
    drift slows every co-timed target by the same factor; empty with fewer than two targets."""
    return {t: samples[t] / f[:, :, None] for t, f in speed_factors(samples).items()}


def floor_rows(samples: dict[str, np.ndarray]) -> list[dict]:
    """The measurement floor per target: each later pass scored as a predictor of each earlier one.

    The metrics are the mean over every pair of passes (``n_pairs``), the MAPE's spread over
    the pairs beside it (``mape_pct_min``, ``mape_pct_max``): a machine whose speed changed
    between two passes shows as a wide range. The split half (:func:`split_half_mape`)
    measures the noise of pooled values; scaled to all passes pooled, it estimates the ground
    truth's own error (``pooled_noise_est_pct``; assuming passes with independent noise of one
    size), including any speed change between the halves that every architecture shared.

    **The floor** a calibrated predictor is read against (:func:`floor_figures`): the same
    estimate with each split's shared speed change divided out (its relative differences
    centred on their median, as a calibration's slope and intercept absorb it):
    ``floor_mape_pct`` (what a perfect predictor calibrated to the pooled truth would score)
    and ``floor_within5_pct`` (its share within +-5 %), each with a 95 % bootstrap CI over the
    architectures. The pairs' own metrics (variant ``test_retest``) are single passes against
    each other: noisier than the pooled truth, so they are a pass's repeatability, not its floor.
    """
    rows = []
    for target, values in pass_values(samples).items():
        n_passes = values.shape[1]
        if n_passes < 2:
            continue
        pairs = [accuracy_metrics(values[:, j], values[:, i]) for i, j in itertools.combinations(range(n_passes), 2)]
        metrics = {key: float(np.mean([m[key] for m in pairs])) for key in pairs[0]}
        metrics["n"] = pairs[0]["n"]
        mapes = [m["mape_pct"] for m in pairs]
        split = split_half_mape(samples[target])
        rows.append({"target": target, "variant": "test_retest", "label": VARIANT_LABELS["test_retest"], **metrics,
                     "n_pairs": len(pairs), "mape_pct_min": min(mapes), "mape_pct_max": max(mapes),
                     "split_half_mape_pct": split,
                     "pooled_noise_est_pct": split * pooled_share((n_passes + 1) // 2, n_passes // 2),
                     **floor_figures(samples[target])})
    return rows


def floor_figures(runs: np.ndarray, n_resamples: int = 2000, seed: int = 0) -> dict:
    """The floor of one target (``runs``: archs x passes x repeats; see :func:`floor_rows`):
    ``floor_mape_pct`` and ``floor_within5_pct`` with ``_ci95_low``/``_ci95_high`` (a percentile
    bootstrap over the architectures; NaN below two architectures)."""
    from scipy.stats import bootstrap

    n_passes = runs.shape[1]
    share = pooled_share((n_passes + 1) // 2, n_passes // 2)
    ratios = np.stack([e + 1 for e in split_half_errors(runs)])  # (splits, archs)
    error = np.abs(ratios / np.median(ratios, axis=1, keepdims=True) - 1) * share  # a perfect predictor's, per split
    statistics = {"floor_mape_pct": lambda i: 100 * error[:, i].mean(),
                  "floor_within5_pct": lambda i: 100 * (error[:, i] <= WITHIN).mean()}
    index = np.arange(error.shape[1])
    out = {}
    for name, statistic in statistics.items():
        value = float(statistic(index))
        low = high = math.nan
        if len(index) > 1:
            res = bootstrap((index,), statistic, n_resamples=n_resamples, confidence_level=0.95, method="percentile",
                            vectorized=False, rng=np.random.default_rng([seed, CI_STREAM]))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if not (math.isfinite(low) and math.isfinite(high)):  # every resample alike (e.g. all within)
                low = high = value
        out.update({name: value, f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    return out


def split_half_mape(runs: np.ndarray, statistic: str = STATISTIC) -> float:
    """Half the passes pooled against the other half pooled: the MAPE, averaged over every way
    to split the passes so (``runs``: archs x passes x repeats; the half without the first
    pass predicts the half with it, a later pass predicting an earlier one as in the pairs).

    Every split, not one: with a step in the machine's speed, one split can put the step
    between the halves or inside both.
    """
    return float(np.mean([100 * np.mean(np.abs(e)) for e in split_half_errors(runs, statistic)]))


def split_half_errors(runs: np.ndarray, statistic: str = STATISTIC) -> list[np.ndarray]:
    """Per split of :func:`split_half_mape`: each architecture's relative error ``later / earlier - 1``."""
    n_passes = runs.shape[1]
    errors = []
    for half in itertools.combinations(range(n_passes), (n_passes + 1) // 2):
        if 0 not in half and 2 * len(half) == n_passes:
            continue  # the mirror image of a split already scored
        rest = [p for p in range(n_passes) if p not in half]
        first, second = (half, rest) if 0 in half else (rest, half)
        earlier, later = (pooled(runs[:, list(h)], statistic) for h in (first, second))
        errors.append(later / earlier - 1)
    return errors


def pooled_share(a: int, b: int) -> float:
    """The noise of ``a + b`` passes pooled over that of ``a`` pooled minus ``b`` pooled,
    for passes with independent noise of one size: ``1 / sqrt((a + b)(1/a + 1/b))``."""
    return 1.0 / math.sqrt((a + b) * (1.0 / a + 1.0 / b))


def calibrate_luts(luts: dict[str, dict], bases: dict[str, P.LatencyModel], anchors: np.ndarray,
                   truth: dict[str, np.ndarray]) -> dict[str, dict]:
    """The LUTs with each measured target's affine calibration on the anchors (:func:`~.lut.calibrate`).

    Each target's calibration corrects the variant of ``bases`` whose fit errs least on an
    anchor left out (:func:`~.lut.calibration_spread`; ties, and fewer than 3 anchors, go to
    the last variant given). Chosen on the anchors alone: on 02's Intel runs the measured pair
    interactions (I4) made cpu-ort-2t's leave-one-out error 2-3x the projected sum's.

    Args:
        luts: LUT dicts by target.
        bases: the variants a calibration may correct, by name, over (at least) the measured targets.
        anchors: ``(k, 5)`` anchor architectures.
        truth: per measured target, the anchors' measured latency ``(k,)``.
    """
    if len(anchors) == 0:
        return dict(luts)
    names = [arch_string(a) for a in anchors]
    preds = {v: model.predict(anchors) for v, model in bases.items()}

    def calibrated(name: str, lut: dict) -> dict:
        base_ms = {v: preds[v][:, bases[v].target_names.index(name)] for v in bases}
        base = L.best_calibration_base(base_ms, truth[name])
        return L.calibrate(lut, names, base_ms[base], truth[name], base)

    return {n: calibrated(n, lut) if n in truth else lut for n, lut in luts.items()}


def pair_holdout_rows(luts: dict[str, dict]) -> list[dict]:
    """I4 checked on held-out pairs: per (local target, slot), how well the slot mean of the
    *other* measured pairs predicts each measured pair's interaction (leave-one-out), against
    predicting zero, beside the interactions' spread and their own measurement noise.

    If the leave-one-out error is about the spread and the spread about the noise, the
    measured pairs carry a per-slot constant and nothing op-specific that more sampled pairs
    could learn.
    """
    rows = []
    for name, lut in luts.items():
        if lut["scope"] == "decoder-only":
            continue
        for slot in range(N_LAYERS - 1):
            mine = [e for e in lut["pairs"]["entries"] if e["layer"] == slot]
            if len(mine) < 2:
                continue
            x = np.array([e["interaction_ms"] for e in mine])
            loo = (x.sum() - x) / (len(x) - 1)
            noise = [np.sqrt(sum(e[k]["std_ms"] ** 2 / e[k]["n"] for k in ("pair", "single_a", "single_b")))
                     for e in mine if all(k in e for k in ("single_a", "single_b"))]
            rows.append({"target": name, "slot": slot, "n_pairs": len(x), "mean_interaction_ms": float(x.mean()),
                         "sd_interaction_ms": float(x.std(ddof=1)),
                         "noise_se_ms": float(np.sqrt(np.mean(np.square(noise)))) if noise else float("nan"),
                         "loo_rmse_slot_mean_ms": float(np.sqrt(np.mean((x - loo) ** 2))),
                         "rmse_zero_ms": float(np.sqrt(np.mean(x ** 2)))})
    return rows


GUARD_Z = 1.645  # the guarded budget check's margin in calibration spreads (one-sided 95 % of a normal error)


def budget_guards(luts: dict[str, dict]) -> dict[str, float]:
    """Per LUT with a calibration block: the guarded budget check's margin, a fraction
    (``GUARD_Z`` times :func:`~.lut.calibration_spread`; NaN with fewer than 3 anchors or a
    margin of 100 % or more, which no prediction could hold)."""
    margins = {name: GUARD_Z * L.calibration_spread(lut["calibration"]) for name, lut in luts.items()
               if "calibration" in lut}
    return {name: m if m < 1 else math.nan for name, m in margins.items()}


def budget_rows(models: dict[str, P.LatencyModel], archs: np.ndarray, truth: dict[str, np.ndarray],
                guards: dict[str, float] | None = None) -> list[dict]:
    """Do budgets hold? Per (target, variant): architectures predicted within the budget and
    the share of them that measure over it; ``near_*``: the same for those predicted within
    10 % under the budget, where a search with that predictor would choose.

    With ``guards`` (per target, a fraction: :func:`budget_guards`), the calibrated variant
    again as ``calibrated_guarded``: an architecture counts as within only when its prediction
    divided by ``1 - guard`` is (the error is relative to the measurement, ``predicted /
    measured - 1``), so that one the calibration under-predicts by the margin still meets the
    budget (``guard_pct``: the margin; 0 for the other rows).
    """
    rows = []
    for variant, model in models.items():
        pred = model.predict(archs)
        for target, meas in truth.items():
            j = model.target_names.index(target)
            budget = float(model.budgets_ms[j])
            rows.append(_budget_row(target, variant, pred[:, j], meas, budget, 0.0))
            guard = (guards or {}).get(target, math.nan)
            if variant == "calibrated" and math.isfinite(guard):
                rows.append(_budget_row(target, "calibrated_guarded", pred[:, j] / (1 - guard), meas, budget, guard))
    return rows


def _budget_row(target: str, variant: str, pred: np.ndarray, measured: np.ndarray, budget: float,
                guard: float) -> dict:
    ok = pred <= budget
    near = ok & (pred >= 0.9 * budget)
    return {"target": target, "variant": variant, "budget_ms": budget, "guard_pct": 100 * guard,
            **_over(measured, ok, budget, ""), **_over(measured, near, budget, "near_")}


def _over(measured: np.ndarray, chosen: np.ndarray, budget: float, prefix: str) -> dict:
    """Counts and share over the budget, with its exact (Clopper-Pearson) 95 % CI; NaN when none was chosen."""
    from scipy.stats import binomtest

    over = measured[chosen] > budget
    n, k = int(chosen.sum()), int(over.sum())
    low, high = (binomtest(k, n).proportion_ci(0.95, method="exact") if n else (math.nan, math.nan))
    return {f"{prefix}n_predicted_within": n, f"{prefix}n_measured_over": k,
            f"{prefix}measured_over_pct": 100 * k / n if n else math.nan,
            f"{prefix}measured_over_ci95_low": 100 * low, f"{prefix}measured_over_ci95_high": 100 * high}


def max_threads(profile) -> int:
    """The most threads any local target of the profile times with."""
    return max((spec_for_target(t.name).threads for t in local_targets(profile)), default=1)


def accuracy_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """MAPE and MAE, share within +-5 % and +-10 %, mean signed error (%)."""
    rel = (predicted - measured) / measured
    return {"n": int(len(measured)), "mape_pct": 100 * float(np.mean(np.abs(rel))),
            "mae_ms": float(np.mean(np.abs(predicted - measured))),
            "within5_pct": 100 * float(np.mean(np.abs(rel) <= 0.05)),
            "within10_pct": 100 * float(np.mean(np.abs(rel) <= 0.10)),
            "bias_pct": 100 * float(np.mean(rel))}


def accuracy_ci(predicted: np.ndarray, measured: np.ndarray, n_resamples: int = 2000, seed: int = 0) -> dict:
    """95 % CIs over the architectures: of the MAPE a percentile bootstrap (``scipy.stats.bootstrap``),
    of the share within +-5 % the exact (Clopper-Pearson) binomial interval, which stays honest
    at 100 of 100 (``mape_pct_ci95_low/high``, ``within5_pct_ci95_low/high``; NaN below two
    architectures). They cover which architectures were drawn, not the measurement's own noise
    (read against the floor, :func:`floor_rows`)."""
    from scipy.stats import binomtest

    error = np.abs(np.asarray(predicted, float) / np.asarray(measured, float) - 1)
    if len(error) < 2:
        return {f"{name}_ci95_{end}": math.nan for name in ("mape_pct", "within5_pct") for end in ("low", "high")}
    low, high = mean_ci(100 * error, n_resamples=n_resamples, seed=seed)
    within = binomtest(int((error <= WITHIN).sum()), len(error)).proportion_ci(0.95, method="exact")
    return {"mape_pct_ci95_low": low, "mape_pct_ci95_high": high,
            "within5_pct_ci95_low": 100 * within.low, "within5_pct_ci95_high": 100 * within.high}


def accuracy_rows(models: dict[str, P.LatencyModel], archs: np.ndarray, measured: dict[str, np.ndarray]):
    """One row per (local target, variant) and the predictions used, for the table and scatter;
    each row with :func:`accuracy_ci`'s intervals."""
    rows, preds = [], {}
    for variant, model in models.items():
        pred = model.predict(archs)
        for target, meas in measured.items():
            p = pred[:, model.target_names.index(target)]
            preds[(target, variant)] = p
            metrics = accuracy_metrics(p, meas)
            rows.append({"target": target, "variant": variant, "label": VARIANT_LABELS[variant],
                         **metrics, **accuracy_ci(p, meas), **goal_columns(target, metrics)})
    return rows, preds


def goal_columns(target: str, metrics: dict) -> dict:
    """Issue 9's goals for a local target: MAPE <= 2 % and >= 99 % within +-5 % with one
    thread, MAPE <= 5 % with more; and whether ``metrics`` meet them."""
    try:
        one_thread = spec_for_target(target).threads == 1
    except ValueError:  # not a built-in target name: the issue sets no goal for it
        return {}
    goal_mape, goal_within5 = (2.0, 99.0) if one_thread else (5.0, 0.0)
    return {"goal_mape_pct": goal_mape, "goal_within5_pct": goal_within5,
            "meets_goal": bool(metrics["mape_pct"] <= goal_mape and metrics["within5_pct"] >= goal_within5)}


def summary_figures(rows: list[dict]) -> dict:
    """Nested ``{mape_pct: {target: {variant: x}}, within5_pct: ..., ...}`` for ``flatten``."""
    out = {}
    for metric in ("mape_pct", "within5_pct", "within10_pct", "mae_ms"):
        out[metric] = {}
        for r in rows:
            out[metric].setdefault(r["target"], {})[r["variant"]] = r[metric]
    for metric in ("mape_pct_ci95_low", "mape_pct_ci95_high", "within5_pct_ci95_low", "within5_pct_ci95_high"):
        for r in rows:
            if metric in r:
                out.setdefault(metric, {}).setdefault(r["target"], {})[r["variant"]] = r[metric]
    floor = [r for r in rows if "pooled_noise_est_pct" in r]
    for r in floor:
        for key in ("mape_pct_min", "mape_pct_max"):
            out.setdefault(key, {})[r["target"]] = {r["variant"]: r[key]}
        for key in ("split_half_mape_pct", "pooled_noise_est_pct", *(f"floor_{m}_pct{end}" for m in ("mape", "within5")
                                                                     for end in ("", "_ci95_low", "_ci95_high"))):
            if key in r:
                out.setdefault(key, {})[r["target"]] = r[key]
    return out


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, leave=False)


def models_for(profile, luts: dict[str, dict], targets=None) -> dict[str, P.LatencyModel]:
    """One :class:`LatencyModel` per variant over the given LUTs (optionally some targets);
    ``calibrated`` only where every end-to-end LUT has a calibration block."""
    chosen = {n: lut for n, lut in luts.items() if targets is None or n in targets}
    budgets = T.profile_budgets(profile, chosen)
    calibrated = T.budget_variant(chosen) == "calibrated"
    return {v: P.model_from_luts(chosen, budgets, v) for v in P.PREDICT_VARIANTS
            if v != "calibrated" or calibrated}


def save_local_luts(luts: dict[str, dict], folder) -> list:
    """Copy the LUTs measured by this project (with provenance) into a results folder."""
    from pathlib import Path

    paths = []
    for name, lut in luts.items():
        if lut["runtime"] != "external":
            path = Path(folder) / L.lut_filename(name, lut["resolution"])
            paths.append(atomic_write_text(path, json.dumps(lut, indent=1) + "\n"))
    return paths


def lut_summary_figures(rows: list[dict], target_rows_: list[dict]) -> dict:
    """Headline numbers of 01: feasible share, latency range per target, counts."""
    out = {"n_targets_with_lut": len(rows),
           "n_targets_not_measured": sum(r["status"] in ("not measured", "absent") for r in target_rows_)}
    for r in rows:
        out[r["target"]] = {"feasible_pct": r["feasible_pct"], "min_arch_ms": r["min_arch_ms"],
                            "max_arch_ms": r["max_arch_ms"], "budget_ms": r["budget_ms"]}
        if r["median_cv"] is not None:
            out[r["target"]]["median_cv"] = r["median_cv"]
    return out


def eval_images(profile, seed: int) -> np.ndarray:
    """The test split's uint8 images (what the throughput check and validation feed)."""
    from ..data import load_splits

    images = load_splits(profile, seed)["test"].images
    if images.shape[1] != profile.data.resolution:
        raise ValueError(f"test images are {images.shape[1]} px but the profile's LUT resolution is "
                         f"{profile.data.resolution}")
    return images


def measurement_rows(archs: np.ndarray, measured: dict, predicted: dict, passes: dict | None = None,
                     roles=None) -> list[dict]:
    """Per (arch, target): measured ms, each pass's own value, role (anchor / held_out) and
    every variant's prediction (the scatter's data)."""
    rows = []
    for i, arch in enumerate(archs):
        for target, meas in measured.items():
            row = {"arch": arch_string(arch), "target": target, "role": roles[i] if roles is not None else "held_out",
                   "measured_ms": float(meas[i])}
            if passes is not None:
                row.update({f"measured_pass{p}_ms": float(v) for p, v in enumerate(passes[target][i])})
            row.update({f"pred_{v}_ms": float(p[i]) for (t, v), p in predicted.items() if t == target})
            rows.append(row)
    return rows


def median_index(archs: np.ndarray, model: P.LatencyModel) -> int:
    """Index of the arch whose mean predicted latency (over targets) is the median of ``archs``."""
    score = model.predict(archs).mean(axis=1)
    return int(np.argsort(score)[len(score) // 2])


def validation_tables(models: dict[str, P.LatencyModel], anchors: np.ndarray, archs: np.ndarray,
                      samples: dict[str, np.ndarray], guards: dict[str, float] | None = None) -> dict[str, list[dict]]:
    """02's tables from the measured runs of ``anchors`` followed by ``archs``.

    Args:
        guards: per target, the guarded budget check's margin (:func:`budget_rows`).

    Returns:
        ``{accuracy, budgets, measurements}``: every variant and the test-retest floor scored
        on the held-out ``archs`` only (the anchors fitted the calibration); whether budgets
        hold on them; one row per (arch, target) with role, pooled and per-pass values and
        every variant's prediction.
    """
    k = len(anchors)
    truth, passes = ground_truth(samples), pass_values(samples)
    held_out = {t: v[k:] for t, v in truth.items()}
    rows, _ = accuracy_rows(models, archs, held_out)
    rows += floor_rows({t: s[k:] for t, s in samples.items()})
    every = np.concatenate([anchors, archs])
    _, predicted = accuracy_rows(models, every, truth)
    roles = ["anchor"] * k + ["held_out"] * len(archs)
    return {"accuracy": rows, "budgets": budget_rows(models, archs, held_out, guards),
            "measurements": measurement_rows(every, truth, predicted, passes, roles)}


def score_predictors(profile, luts: dict[str, dict], anchors: np.ndarray, archs: np.ndarray,
                     samples: dict[str, np.ndarray]) -> tuple[dict[str, dict], dict[str, P.LatencyModel], dict]:
    """Calibrate this machine's LUTs on the anchors and score every variant on the held-out architectures.

    Args:
        luts: this machine's LUT dicts by target (without calibration).
        samples: raw runs of ``anchors`` then ``archs`` per local target (:func:`measure_validation`
            or :func:`drift_corrected`).

    Returns:
        ``(calibrated LUTs, models by variant, tables)``: :func:`calibrate_luts` over the
        variants a calibration may correct (:data:`~.lut.CALIBRATION_BASES`), :func:`models_for`,
        :func:`validation_tables`.
    """
    local = list(samples)
    truth = ground_truth(samples)
    uncalibrated = models_for(profile, luts, targets=local)
    bases = {v: uncalibrated[v] for v in L.CALIBRATION_BASES}
    calibrated = calibrate_luts(luts, bases, anchors, {t: v[:len(anchors)] for t, v in truth.items()})
    models = models_for(profile, calibrated, targets=local)
    return calibrated, models, validation_tables(models, anchors, archs, samples, budget_guards(calibrated))


def drift_corrected_accuracy(profile, luts: dict[str, dict], anchors: np.ndarray, archs: np.ndarray,
                             samples: dict[str, np.ndarray]) -> list[dict]:
    """:func:`score_predictors`'s accuracy table (calibration refitted, its base chosen again) against the
    :func:`drift_corrected` runs: how far each predictor and the floor sit from a measurement
    without the machine's shared speed changes. Empty with fewer than two local targets."""
    corrected = drift_corrected(samples)
    return score_predictors(profile, luts, anchors, archs, corrected)[2]["accuracy"] if corrected else []


def warm_lut_figures(accuracy: list[dict], effect: list[dict]) -> dict:
    """The control arm's summary: :func:`summary_figures` of its predictors' accuracy rows (not the
    floor: the arm is scored on the headline's runs, so its floor would be the headline's copied)
    and, per target, ``mape_pct_warm_minus_evicted`` (:func:`lut_timing_effect`)."""
    return {**summary_figures([r for r in accuracy if r["variant"] != "test_retest"]),
            "mape_pct_warm_minus_evicted": {r["target"]: r["mape_pct_warm_minus_evicted"] for r in effect}}


def lut_timing(profile) -> str:
    """How the profile times LUT entries: ``warm`` (back to back) or ``evicted_<N>mib``."""
    mib = profile.latency.measure.evict_mib
    return f"evicted_{mib}mib" if mib else "warm"


def warm_profile(profile):
    """``profile`` with LUT entries timed warm (``latency.measure.evict_mib`` 0), all else kept."""
    latency = profile.latency
    return replace(profile, latency=replace(latency, measure=replace(latency.measure, evict_mib=0)))


def warm_lut_scores(profile, anchors: np.ndarray, archs: np.ndarray,
                    samples: dict[str, np.ndarray]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The control arm of ``latency.measure.evict_mib``: this machine's LUTs with every entry
    timed warm (back to back, ``evict_mib`` 0), calibrated and scored as
    :func:`score_predictors` does on the same end-to-end runs. LUTs are cached by their
    settings, so an arm is built when its file is missing; :func:`calibration_rows` says when.

    Args:
        profile: the run's profile (its ``evict_mib`` > 0 for a control arm to exist).
        anchors, archs, samples: as :func:`score_predictors` takes them.

    Returns:
        ``(calibrated LUTs, {"accuracy": rows, "measurements": rows})``; no LUTs and empty
        tables when the profile times entries warm already.
    """
    if profile.latency.measure.evict_mib == 0:
        return {}, {"accuracy": [], "measurements": []}
    warm = warm_profile(profile)
    calibrated, _, tables = score_predictors(warm, T.load_luts(warm, here=True), anchors, archs, samples)
    return calibrated, {"accuracy": tables["accuracy"], "measurements": tables["measurements"]}


def calibration_rows(profile, calibrated: dict[str, dict], warm: dict[str, dict]) -> list[dict]:
    """Per LUT timing (the profile's, then the warm control arm's) and measured target: the
    calibration's base and fit, and when and at which commit the LUT was built. A slope near 1
    says the LUT sum grows as the pipeline does; a far one, that the calibration rescales
    what the entries miss in context.

    Args:
        profile: the run's profile (names its LUT timing, :func:`lut_timing`).
        calibrated: :func:`score_predictors`' calibrated LUTs.
        warm: :func:`warm_lut_scores`' calibrated LUTs (empty: no control arm).
    """
    arms = {lut_timing(profile): calibrated, **({"warm": warm} if warm else {})}
    return [{"lut_timing": timing, "target": target,
             **{key: lut["calibration"][key] for key in ("base", "fit", "slope", "intercept")},
             "built": lut.get("provenance", {}).get("timestamp"), "git_sha": lut.get("provenance", {}).get("git_sha")}
            for timing, luts in arms.items() for target, lut in luts.items() if "calibration" in lut]


def paired_mape_effect(measurements: list[dict], control_measurements: list[dict], arms: tuple[str, str],
                       n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Per measured target, the calibrated MAPE of a control arm minus the headline's on the
    same held-out architectures, with a paired percentile bootstrap 95 % CI over the
    architectures (it covers which architectures were drawn, not a second measurement).

    Args:
        measurements, control_measurements: ``measurements`` tables of :func:`score_predictors`
            (the headline) and of the control arm, scored on the same runs.
        arms: the two arms' names ``(headline, control)``, used in the column names.

    Returns:
        Rows ``target, n, mape_pct_<headline>, mape_pct_<control>,
        mape_pct_<control>_minus_<headline>, ci95_low, ci95_high``; empty without a control arm.
    """
    from scipy.stats import bootstrap  # only where the comparison is made

    def errors(rows):
        return {(r["target"], r["arch"]): 100 * abs(r["pred_calibrated_ms"] / r["measured_ms"] - 1)
                for r in rows if r["role"] == "held_out"}

    (head, control), (a, b) = (errors(measurements), errors(control_measurements)), arms
    out = []
    for target in dict.fromkeys(t for t, _ in control):
        keys = [k for k in control if k[0] == target and k in head]
        h, c = np.array([head[k] for k in keys]), np.array([control[k] for k in keys])
        low = high = math.nan
        if len(keys) > 1:  # paired: resampling architectures resamples their differences
            ci = bootstrap((c - h,), np.mean, n_resamples=n_resamples, method="percentile",
                           rng=np.random.default_rng(seed)).confidence_interval
            low, high = float(ci.low), float(ci.high)
        out.append({"target": target, "n": len(keys), f"mape_pct_{a}": float(h.mean()), f"mape_pct_{b}": float(c.mean()),
                    f"mape_pct_{b}_minus_{a}": float(np.mean(c - h)), "ci95_low": low, "ci95_high": high})
    return out


def i4_calibrated_effect(profile, luts: dict[str, dict], anchors: np.ndarray, archs: np.ndarray,
                         samples: dict[str, np.ndarray]) -> list[dict]:
    """I4 read where it would be used: the calibrated MAPE with the pair interactions (base
    ``interaction``) minus without them (base ``projected``), each calibrated on the same anchors
    and scored on the same held-out architectures (:func:`paired_mape_effect`: columns
    ``mape_pct_projected``, ``mape_pct_interaction``, ``mape_pct_interaction_minus_projected``,
    a paired CI over architectures). Uncalibrated, I4's gain is mostly its near-constant
    per-slot mean, which a calibration's intercept absorbs; this says what is left."""
    truth = ground_truth(samples)
    uncalibrated = models_for(profile, luts, targets=list(samples))
    anchor_truth = {t: v[:len(anchors)] for t, v in truth.items()}
    tables = {}
    for base in ("projected", "interaction"):
        calibrated = calibrate_luts(luts, {base: uncalibrated[base]}, anchors, anchor_truth)
        model = models_for(profile, calibrated, targets=list(samples))["calibrated"]
        tables[base] = validation_tables({"calibrated": model}, anchors, archs, samples)["measurements"]
    return paired_mape_effect(tables["projected"], tables["interaction"], ("projected", "interaction"))


def paired_effect_figures(rows: list[dict]) -> dict:
    """A :func:`paired_mape_effect` table for ``flatten``: ``{<difference column>: {target: x},
    <difference column>_ci95_low: ..., <difference column>_ci95_high: ...}``.

    Raises:
        ValueError: a row without a ``..._minus_...`` difference column.
    """
    out: dict[str, dict] = {}
    for r in rows:
        columns = [k for k in r if "_minus_" in k and not k.startswith("ci95")]
        if len(columns) != 1:
            raise ValueError(f"a paired-effect row needs one '<a>_minus_<b>' column; got {sorted(r)}")
        column = columns[0]
        for key, value in ((column, r[column]), (f"{column}_ci95_low", r["ci95_low"]),
                           (f"{column}_ci95_high", r["ci95_high"])):
            out.setdefault(key, {})[r["target"]] = value
    return out


def lut_timing_effect(measurements: list[dict], warm_measurements: list[dict], n_resamples: int = 2000,
                      seed: int = 0) -> list[dict]:
    """:func:`paired_mape_effect` of the warm LUT entries (:func:`warm_lut_scores`) against the
    profile's evicted ones: columns ``mape_pct_evicted``, ``mape_pct_warm``,
    ``mape_pct_warm_minus_evicted``. Each arm is one LUT build, which the CI does not cover."""
    return paired_mape_effect(measurements, warm_measurements, ("evicted", "warm"), n_resamples, seed)


MAX_ANCHOR_DESIGNS = 4096  # beyond this many half designs, a seeded sample of them


def anchor_design_rows(measurements: list[dict], rng: np.random.Generator) -> list[dict]:
    """The anchor count's control: every design of half the K anchors that keeps one anchor of
    each adjacent pair (ranks 2i or 2i + 1 in :func:`anchor_archs`' order, the committed LUTs'
    predicted latency averaged over targets: one per 2/K band of it; with K odd the last anchor
    is in every design; 2 ** (K // 2) designs, a sample of :data:`MAX_ANCHOR_DESIGNS` beyond that), each
    calibrated as :func:`calibrate_luts` does (per target, the base sum whose fit errs least on
    an anchor left out, ties to the later base) and scored on the held-out architectures of the
    same runs, beside the calibration on all K.

    It covers which anchors a half-size design happens to draw, within this run; not the
    anchors' own measurement noise, another run, or another LUT build.

    Args:
        measurements: :func:`validation_tables`' ``measurements`` rows (anchors in their order).
        rng: draws the sample of designs when there are more than :data:`MAX_ANCHOR_DESIGNS`.

    Returns:
        Per measured target: ``n_anchors``, ``n_designs``, the all-anchor calibration's
        ``base``, ``slope``, ``mape_pct`` and ``within5_pct``; over the half designs the median,
        2.5 and 97.5 percentiles of MAPE, within-5 % share and slope, the two interleaved
        designs (``even``: ranks 0, 2, ..., ``odd``: 1, 3, ...) and the share of designs whose MAPE
        is below the all-anchor one. Empty below 4 anchors.
    """
    out = []
    for target in dict.fromkeys(r["target"] for r in measurements):
        rows = [r for r in measurements if r["target"] == target]
        anchors, held = [r for r in rows if r["role"] == "anchor"], [r for r in rows if r["role"] == "held_out"]
        k = len(anchors) - len(anchors) % 2
        if k < 4 or not held:
            continue
        unpaired = np.arange(k, len(anchors))  # the last anchor when K is odd: in every design
        x = {b: np.array([r[f"pred_{b}_ms"] for r in anchors]) for b in L.CALIBRATION_BASES}
        xh = {b: np.array([r[f"pred_{b}_ms"] for r in held]) for b in L.CALIBRATION_BASES}
        y, yh = np.array([r["measured_ms"] for r in anchors]), np.array([r["measured_ms"] for r in held])

        def score(index):
            base = L.best_calibration_base({b: v[index] for b, v in x.items()}, y[index])
            slope, intercept, _ = L._affine_fit(x[base][index], y[index])
            error = np.abs((slope * xh[base] + intercept) / yh - 1) * 100
            return base, slope, float(error.mean()), float((error <= 5).mean() * 100)

        pairs = k // 2
        if 2**pairs <= MAX_ANCHOR_DESIGNS:
            picks = np.array(list(itertools.product((0, 1), repeat=pairs)))
        else:
            picks = rng.integers(0, 2, size=(MAX_ANCHOR_DESIGNS, pairs))
        designs = [score(np.r_[2 * np.arange(pairs) + pick, unpaired]) for pick in picks]
        base, slope, mape, within5 = score(np.arange(len(anchors)))
        mapes, shares, slopes = (np.array([d[i] for d in designs]) for i in (2, 3, 1))
        out.append({"target": target, "n_anchors": len(anchors), "n_designs": len(designs), "base": base,
                    "slope": slope, "mape_pct": mape, "within5_pct": within5,
                    **{f"half_{name}_{q}": float(np.percentile(v, p)) for name, v in
                       (("mape_pct", mapes), ("within5_pct", shares), ("slope", slopes))
                       for q, p in (("median", 50), ("p2_5", 2.5), ("p97_5", 97.5))},
                    "half_even_mape_pct": score(np.r_[2 * np.arange(pairs), unpaired])[2],
                    "half_odd_mape_pct": score(np.r_[2 * np.arange(pairs) + 1, unpaired])[2],
                    "half_share_below_all": float((mapes < mape).mean())})
    return out


def anchor_design_figures(rows: list[dict]) -> dict:
    """:func:`anchor_design_rows` per target, for ``flatten``: ``{<column>: {target: x}}``."""
    keys = [k for k in (rows[0] if rows else {}) if k not in ("target", "base")]
    return {key: {r["target"]: r[key] for r in rows} for key in keys}


def budget_figures(rows: list[dict]) -> dict:
    """From :func:`budget_rows`, per target and variant: ``measured_over_budget_n`` (architectures
    predicted within; 0 says the share is undefined, not 0 %), and where it is defined
    ``measured_over_budget_pct`` with its exact 95 % CI (``_ci95_low``/``_ci95_high``)."""
    out = {key: {} for key in ("measured_over_budget_n", "measured_over_budget_pct", "measured_over_budget_pct_ci95_low",
                               "measured_over_budget_pct_ci95_high")}
    for r in rows:
        out["measured_over_budget_n"].setdefault(r["target"], {})[r["variant"]] = r["n_predicted_within"]
        if r["n_predicted_within"]:
            for key, column in (("measured_over_budget_pct", "measured_over_pct"),
                                ("measured_over_budget_pct_ci95_low", "measured_over_ci95_low"),
                                ("measured_over_budget_pct_ci95_high", "measured_over_ci95_high")):
                out[key].setdefault(r["target"], {})[r["variant"]] = r[column]
    return out
