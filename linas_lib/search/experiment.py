"""A Pareto-search experiment: fixed reference points, many methods and seeds, one verdict.

:class:`ParetoExperiment` fixes, once, for every hardware target ``t`` the HV reference point
in the normalised objective space ``(1 - mIoU, latency_t / budget_t)``:
``(ref_miou_loss, ref_latency)`` = ``(1.0, 1.0)`` by default, i.e. the worst possible
accuracy and *exactly the budget*. HV therefore counts only architectures that meet the
target's budget (a constrained HV), and per-target HVs share one scale and are averaged
into the experiment's headline HV. A front with no point inside the reference box scores
HV 0 (explicitly: :meth:`ParetoExperiment.target_hv`). The reference point is recorded
(:meth:`ParetoExperiment.reference`) with the results.

IGD's reference front for target ``t`` is the non-dominated union of every method's and
every seed's evaluated points that meet the budget (:meth:`ParetoExperiment.igd_fronts`).

Methods are compared over paired seeds (:func:`method_table`): the mean final HV with a 95 %
bootstrap CI, and the paired difference to random search with its CI. Efficiency is the
number of evaluations to a target a single run can reach, random search's median final HV
(:func:`target_level`); runs that never reach it are right-censored at the budget and
summarised by the Kaplan-Meier median with the censored share (:func:`time_to_target`),
never averaged as if they had reached it.

Method runs are checkpointed: :func:`run_all` writes one JSON per (method, seed) into a
cache folder and reloads it on a rerun.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..keys import atomic_write_text, load_cache_json
from ..stats import CI_STREAM, mean_ci, mean_t_ci  # noqa: F401  (mean_ci: also imported from here)
from .indicators import Hypervolume, InvertedGenerationalDistance, inside_reference, nondominated
from .methods import METHODS, SearchSetup, check_method_names, method_settings, run_method
from .objectives import check_accuracy, joint_objectives, target_objectives

RUNS_SCHEMA = 2  # bump when what a (method, seed) run draws changes: cached runs of another schema are not reused
# paired seeds: a control draws from the stream of the method it controls; the surrogates from
# random's, as their control random_feasible does
PAIRED_STREAM = {"random_feasible": "random", "zero_cost_random_proxy": "zero_cost", "epr_feasible": "epr",
                 "surrogate": "random", "surrogate_local": "random", "surrogate_grow": "random",
                 "surrogate_pairs": "random", "surrogate_fingerprint": "random",
                 "surrogate_fingerprint_random": "random", "surrogate_fingerprint_shuffled": "random",
                 "surrogate_fingerprint_hinge": "random", "surrogate_fingerprint_space": "random",
                 "surrogate_fingerprint_space_mean": "random", "surrogate_fingerprint_mean": "random"}  # first evaluations: random_feasible's


@dataclass
class MethodRun:
    """The evaluations of one method with one seed, in evaluation order."""

    method: str
    seed: int
    choices: np.ndarray  # (n, L)
    miou: np.ndarray  # (n,)
    latency_ms: np.ndarray  # (n, T)
    seconds: float = 0.0
    facts: dict = field(default_factory=dict)

    @property
    def n_evals(self) -> int:
        """Number of weight-sharing evaluations made."""
        return len(self.miou)

    def to_json(self) -> dict:
        """Plain JSON-able form."""
        return {
            "method": self.method,
            "seed": self.seed,
            "choices": self.choices.tolist(),
            "miou": self.miou.tolist(),
            "latency_ms": self.latency_ms.tolist(),
            "seconds": self.seconds,
            "facts": self.facts,
        }

    @classmethod
    def from_json(cls, data: dict) -> MethodRun:
        """Inverse of :meth:`to_json`."""
        return cls(
            method=data["method"],
            seed=int(data["seed"]),
            choices=np.asarray(data["choices"], dtype=np.int64),
            miou=np.asarray(data["miou"], dtype=float),
            latency_ms=np.asarray(data["latency_ms"], dtype=float),
            seconds=float(data["seconds"]),
            facts=data.get("facts", {}),
        )


def _run_problem(data) -> str:
    """Why a run checkpoint's content cannot be a :class:`MethodRun` ("" when it can)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    try:
        run = MethodRun.from_json(data)
    except (KeyError, TypeError, ValueError) as err:
        return f"not a run record: {type(err).__name__} {err}"
    n = len(run.choices)
    if run.choices.ndim != 2 or len(run.miou) != n or len(run.latency_ms) != n:
        return (f"mismatched shapes: choices {run.choices.shape}, miou {run.miou.shape}, "
                f"latency_ms {run.latency_ms.shape}")
    if not (np.isfinite(run.miou).all() and np.isfinite(run.latency_ms).all()):
        return "non-finite mIoU or latency values"
    return ""


class ParetoExperiment:
    """Targets, budgets and fixed HV reference points shared by every method and seed.

    Args:
        target_names: hardware targets, in the latency model's column order.
        budgets_ms: latency budget per target.
        ref_miou_loss: reference value of ``1 - mIoU`` (1.0 = worst possible).
        ref_latency: reference value of ``latency / budget`` (1.0 = the budget itself).
        hv_targets: indices of the targets averaged into the headline HV (default: all);
            targets whose budget no architecture can meet score 0 for every method and are
            best left out (see :func:`~linas_lib.search.methods.screen_attainable`).
    """

    def __init__(self, target_names, budgets_ms, ref_miou_loss: float = 1.0, ref_latency: float = 1.0,
                 hv_targets=None):
        self.target_names = tuple(target_names)
        self.budgets_ms = np.asarray(budgets_ms, dtype=float)
        if self.budgets_ms.shape != (len(self.target_names),) or (self.budgets_ms <= 0).any():
            raise ValueError("need one positive budget per target")
        if ref_miou_loss <= 0 or ref_latency <= 0:
            raise ValueError("reference point entries must be positive")
        self.ref = np.array([ref_miou_loss, ref_latency], dtype=float)
        all_targets = np.arange(len(self.target_names))
        self.hv_targets = all_targets if hv_targets is None else np.asarray(hv_targets, dtype=int)
        if self.hv_targets.size == 0 or not np.isin(self.hv_targets, all_targets).all():
            raise ValueError(f"hv_targets must be a non-empty subset of 0..{len(self.target_names) - 1}")
        self._hv = Hypervolume(self.ref)  # one indicator, one reference: every target, method, seed

    def reference(self) -> dict:
        """The reference points as recorded with the results (normalised and in ms)."""
        return {
            "objectives": ["1 - mIoU", "latency / budget"],
            "normalised": self.ref.tolist(),
            "hv_targets": [self.target_names[t] for t in self.hv_targets],
            "per_target_ms": {
                name: [float(self.ref[0]), float(self.ref[1] * b)]
                for name, b in zip(self.target_names, self.budgets_ms)
            },
        }

    def objectives(self, miou, latency_ms, target: int) -> np.ndarray:
        """``(n, 2)`` normalised objectives on one target."""
        return target_objectives(miou, latency_ms, self.budgets_ms, target)

    def target_hv(self, miou, latency_ms, target: int) -> float:
        """HV on one target; points outside the reference box do not count (0 if none inside)."""
        F = self.objectives(miou, latency_ms, target)
        inside = inside_reference(F, self.ref)
        return self._hv(F[inside]) if inside.any() else 0.0

    def hv(self, miou, latency_ms) -> float:
        """Headline HV: the mean of the per-target HVs over :attr:`hv_targets`."""
        return float(np.mean([self.target_hv(miou, latency_ms, t) for t in self.hv_targets]))

    def hv_curve(self, run: MethodRun) -> np.ndarray:
        """Headline HV after each of the run's evaluations, ``(n_evals,)``."""
        return np.array([self.hv(run.miou[: n + 1], run.latency_ms[: n + 1]) for n in range(run.n_evals)])

    def feasible_front(self, miou, latency_ms, target: int) -> np.ndarray:
        """Non-dominated points inside the reference box on one target, ``(k, 2)`` (k may be 0)."""
        F = self.objectives(miou, latency_ms, target)
        F = F[inside_reference(F, self.ref)]
        return F[nondominated(F)] if len(F) else F

    def igd_fronts(self, runs: list[MethodRun]) -> list[InvertedGenerationalDistance | None]:
        """Per target, IGD against the non-dominated union of all runs (None: nothing feasible)."""
        miou = np.concatenate([r.miou for r in runs])
        lat = np.concatenate([r.latency_ms for r in runs])
        fronts = [self.feasible_front(miou, lat, t) for t in range(len(self.target_names))]
        return [InvertedGenerationalDistance(f) if len(f) else None for f in fronts]


def evals_to_reach(curve, level: float) -> int | None:
    """First number of evaluations at which ``curve`` reaches ``level`` (None: never)."""
    hit = np.flatnonzero(np.asarray(curve) >= level)
    return int(hit[0]) + 1 if len(hit) else None


def run_key(method: str, seed: int) -> str:
    """File stem of one run's checkpoint."""
    return f"{method}_seed{seed}"


def method_rng(method: str, seed: int) -> np.random.Generator:
    """The generator of a (method, seed) run, ``default_rng([seed, METHODS.index(stream)])``: a
    method paired with another draws from that one's stream (:data:`PAIRED_STREAM`)."""
    return np.random.default_rng([int(seed), METHODS.index(PAIRED_STREAM.get(method, method))])


def run_all(setup: SearchSetup, methods, seeds, folder: Path | None = None, progress=None) -> list[MethodRun]:
    """Run every method with every seed, resuming from per-run checkpoints in ``folder``.

    Each (method, seed) gets the generator ``default_rng([seed, METHODS.index(stream)])``,
    so a run's numbers do not depend on which other methods run with it; a method paired with
    another shares its stream (:data:`PAIRED_STREAM`: the same seed draws the same zero-cost
    pool with and without NEAR). A cached run is reused only when the
    :func:`~linas_lib.search.methods.method_settings` it was made with are the setup's.

    Args:
        setup: the shared search setup.
        methods: method names (see :data:`linas_lib.search.methods.METHODS`).
        seeds: search seeds.
        folder: checkpoint folder (``None``: no checkpoints).
        progress: optional callable ``(message) -> None``.
    """
    check_method_names(methods)
    runs = []
    for seed in seeds:
        for method in methods:
            path = folder / f"{run_key(method, seed)}.json" if folder is not None else None
            settings = method_settings(setup, method)
            cached = load_cache_json(path, "search run checkpoint", _run_problem) if path is not None else None
            if cached is not None and cached.get("settings", {}) == settings:
                runs.append(MethodRun.from_json(cached))
                continue
            start = time.perf_counter()
            archive, facts = run_method(setup, method, method_rng(method, seed))
            run = MethodRun(method, int(seed), archive.choices(), archive.miou(), archive.latency_ms(),
                            time.perf_counter() - start, facts)
            if path is not None:
                atomic_write_text(path, json.dumps({**run.to_json(), "settings": settings}))
                setup.accuracy.save()
            if progress is not None:
                progress(f"{method} seed {seed}: {run.n_evals} evaluations in {run.seconds:.1f} s")
            runs.append(run)
    return runs


def union(runs: list[MethodRun]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct architectures over runs: ``(choices, miou, latency_ms)``."""
    choices = np.concatenate([r.choices for r in runs])
    _, first = np.unique(choices, axis=0, return_index=True)
    first = np.sort(first)
    return (choices[first], np.concatenate([r.miou for r in runs])[first],
            np.concatenate([r.latency_ms for r in runs])[first])


def reference_hv(experiment: ParetoExperiment, runs: list[MethodRun]) -> float:
    """HV of the union of every run's evaluated points (the 100 % mark)."""
    _, miou, lat = union(runs)
    return experiment.hv(miou, lat)


def run_rows(experiment: ParetoExperiment, runs: list[MethodRun], reference_runs: list[MethodRun] = ()) -> list[dict]:
    """Per (method, seed, target in the headline HV): HV, IGD, front size. IGD reads the front of
    ``runs`` and ``reference_runs`` together (the oracle's, so that IGD and the HV reference share
    one best front)."""
    igds = experiment.igd_fronts(list(runs) + list(reference_runs))
    rows = []
    for run in runs:
        for t in experiment.hv_targets:
            name = experiment.target_names[t]
            front = experiment.feasible_front(run.miou, run.latency_ms, t)
            igd = igds[t](front) if igds[t] is not None and len(front) else float("nan")
            rows.append({"method": run.method, "seed": run.seed, "target": name,
                         "hv": experiment.target_hv(run.miou, run.latency_ms, t),
                         "igd": igd, "front_size": len(front)})
    return rows


def curve_rows(experiment: ParetoExperiment, runs: list[MethodRun]) -> tuple[list[dict], dict]:
    """HV-vs-evaluations rows ``(method, seed, n_evals, hv)`` and the curves by run key."""
    rows, curves = [], {}
    for run in runs:
        curve = experiment.hv_curve(run)
        curves[run_key(run.method, run.seed)] = curve
        rows += [{"method": run.method, "seed": run.seed, "n_evals": n + 1, "hv": float(v)}
                 for n, v in enumerate(curve)]
    return rows, curves


def clairvoyant_curve(experiment: ParetoExperiment, runs: list[MethodRun], k_max: int,
                      rng: np.random.Generator) -> list[dict]:
    """The greedy clairvoyant curve: headline HV of ``k = 1 .. k_max`` architectures picked
    greedily *knowing* every accuracy.

    What prior knowledge could buy. The candidates are the distinct architectures of ``runs``
    (every method's and the oracle's evaluations) within some headline target's budget that
    no other one dominates on (1 - mIoU, every headline target's latency / budget capped at
    the reference): replacing a dominated point by its dominator never lowers any target's HV.
    Each pick raises the headline HV most (ties at random). A greedy ``k``-subset is a real
    one, so the first ``k`` at which the curve reaches a level is an upper bound on the
    evaluations a picker that knew every accuracy of this pool would need (it is not a floor
    for a real method, which may also find architectures outside the pool). Once no pick adds
    anything (the pool's HV is reached) the curve stays flat to ``k_max``. Rows ``{k, hv}``;
    none without a candidate.
    """
    _, miou, lat = union(runs)
    candidates = _joint_candidates(experiment, miou, lat).tolist()
    picked: list[int] = []
    rows: list[dict] = []
    while candidates and len(rows) < k_max:
        gains = np.array([experiment.hv(miou[picked + [i]], lat[picked + [i]]) for i in candidates])
        if rows and gains.max() <= rows[-1]["hv"]:
            break
        picked.append(candidates.pop(int(rng.choice(np.flatnonzero(gains == gains.max())))))
        rows.append({"k": len(rows) + 1, "hv": float(gains.max())})
    return rows + [{"k": k, "hv": rows[-1]["hv"]} for k in range(len(rows) + 1, k_max + 1)] if rows else rows


def _joint_candidates(experiment: ParetoExperiment, miou, latency_ms) -> np.ndarray:
    """Indices of the points within some headline target's budget that are non-dominated on
    (1 - mIoU, each headline target's latency / budget capped at the reference)."""
    F = joint_front(experiment, miou, latency_ms)
    useful = np.flatnonzero((F[:, 1:] < experiment.ref[1]).any(axis=1) & (F[:, 0] < experiment.ref[0]))
    if not len(useful):
        return useful
    F = np.column_stack([F[useful, 0], np.minimum(F[useful, 1:], experiment.ref[1])])
    return useful[nondominated(F)]


def first_reaching(rows: list[dict], level: float) -> int | None:
    """The first ``k`` of :func:`clairvoyant_curve` rows whose HV reaches ``level`` (None: none)."""
    return next((r["k"] for r in rows if r["hv"] >= level), None)


def target_level(curves: dict, method: str = "random") -> float:
    """The efficiency target: the median final HV of ``method``'s runs.

    Reachable by a single run by construction (half of that method's runs end at or above
    it), unlike a share of the union of all runs, which no single run need reach.
    """
    finals = [c[-1] for key, c in curves.items() if key.startswith(f"{method}_seed")]
    if not finals:
        raise ValueError(f"no {method} runs: the efficiency target is the median final HV of {method} search")
    return float(np.median(finals))


def time_to_target(hits: list[int | None], budget: int) -> dict:
    """Kaplan-Meier summary of evaluations to a target; a run that never reaches it is censored.

    A run that has not reached the target after ``budget`` evaluations is right-censored
    there (``scipy.stats.CensoredData``), never counted as if it had reached it. The median
    comes from the Kaplan-Meier survival function (``scipy.stats.ecdf``): the first number
    of evaluations at which at most half of the runs are still short of the target (where
    S(t) sits at exactly 1/2 over an interval, the interval's start). It is NaN (censored)
    when more than half never reach it.

    Returns:
        ``{"km_median", "censored_share", "n_runs", "n_reached"}``.
    """
    from scipy.stats import CensoredData, ecdf

    reached = [int(h) for h in hits if h is not None]
    out = {"censored_share": 1 - len(reached) / len(hits) if hits else math.nan, "n_runs": len(hits),
           "n_reached": len(reached), "km_median": math.nan}
    if reached:
        sf = ecdf(CensoredData(uncensored=reached, right=[budget] * (len(hits) - len(reached)))).sf
        below = np.flatnonzero(sf.probabilities <= 0.5 + 1e-9)  # S(t) = 0.5 exactly, up to rounding
        if below.size:
            out["km_median"] = float(sf.quantiles[below[0]])
    return out


def run_hits(runs: list[MethodRun], curves: dict, level: float) -> dict[str, dict[int, int | None]]:
    """Per method and seed: the first number of evaluations reaching ``level`` (None: never)."""
    hits: dict[str, dict] = {}
    for run in runs:
        hits.setdefault(run.method, {})[run.seed] = evals_to_reach(curves[run_key(run.method, run.seed)], level)
    return hits


def reach_table(runs: list[MethodRun], curves: dict, level: float, budget: int) -> dict[str, dict]:
    """Per method: :func:`time_to_target` of its runs' first evaluations reaching ``level``.

    A level of 0 (random search never got a point inside the reference box) is reached by
    every run at its first evaluation: no efficiency measure, so every entry is NaN.
    """
    if level <= 0:
        return {r.method: {"censored_share": math.nan, "n_runs": 0, "n_reached": 0, "km_median": math.nan}
                for r in runs}
    return {m: time_to_target(list(h.values()), budget) for m, h in run_hits(runs, curves, level).items()}


def reach_ratio_cis(runs: list[MethodRun], curves: dict, level: float, budget: int, base: str = "random",
                    n_resamples: int = 2000) -> dict[str, dict]:
    """Per method: :func:`evals_ratio_ci` of its evaluations to ``level`` over ``base``'s (NaN
    for a level of 0, as in :func:`reach_table`, and without ``base`` runs)."""
    hits = run_hits(runs, curves, level)
    if level <= 0 or base not in hits:
        return {m: dict(UNDEFINED_CI) for m in hits}
    return {m: evals_ratio_ci(h, hits[base], budget, n_resamples) for m, h in hits.items()}


UNDEFINED_CI = {"low": math.nan, "high": math.nan, "undefined_share": math.nan}


def evals_ratio_ci(hits: dict[int, int | None], base_hits: dict[int, int | None], budget: int,
                   n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Paired bootstrap CI of a method's Kaplan-Meier median evaluations-to-target over the base's.

    Seeds are resampled together (``scipy.stats.bootstrap``, ``paired=True``, percentile), the
    :func:`time_to_target` median recomputed for both arms on every resample. Where more than
    half of a resample's runs are censored its median is undefined: the method's then counts
    as infinite and the base's as the budget (its true median lies beyond it), so both
    substitutions make the ratio larger, never smaller than it is. With the target at the
    median final HV of random's calibration runs, the base's median is undefined in a sizeable share of resamples,
    and those resamples pull the lower bound towards (method's median / budget): read the
    upper bound, and ``undefined_share`` beside it.

    Returns:
        ``{"low", "high", "undefined_share"}``: the bounds (a bound that falls on resamples
        with an undefined method median is NaN, censored) and the share of resamples in
        which either median is undefined. All NaN below 2 paired seeds or when either point
        median is undefined; a method whose hits equal the base's on every paired seed (the
        base itself) is ``(1, 1, 0)``.
    """
    from scipy.stats import bootstrap

    seeds = sorted(set(hits) & set(base_hits))
    method, base = (_as_evals([h[s] for s in seeds]) for h in (hits, base_hits))
    if len(seeds) < 2 or not all(math.isfinite(_km_median(e, budget)) for e in (method, base)):
        return dict(UNDEFINED_CI)
    if np.array_equal(method, base):  # every resample: x / x
        return {"low": 1.0, "high": 1.0, "undefined_share": 0.0}

    def statistic(m: np.ndarray, b: np.ndarray) -> np.ndarray:
        m_median, b_median = _km_median(m, budget), _km_median(b, budget)
        ratio = (math.inf if math.isnan(m_median) else m_median) / (budget if math.isnan(b_median) else b_median)
        return np.array([ratio, float(math.isnan(m_median) or math.isnan(b_median))])

    with np.errstate(invalid="ignore"):  # the standard error of a distribution holding inf
        res = bootstrap((method, base), statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile", rng=np.random.default_rng([seed, CI_STREAM]))
    low, high = float(res.confidence_interval.low[0]), float(res.confidence_interval.high[0])
    return {"low": low if math.isfinite(low) else math.nan, "high": high if math.isfinite(high) else math.nan,
            "undefined_share": float(res.bootstrap_distribution[1].mean())}


def _as_evals(hits) -> np.ndarray:
    """Evaluations to the target as floats, a run that never reached it as inf."""
    return np.array([math.inf if h is None else float(h) for h in hits])


def _km_median(evals: np.ndarray, budget: int) -> float:
    """:func:`time_to_target`'s median of :func:`_as_evals` values (NaN: undefined)."""
    return time_to_target([int(e) if math.isfinite(e) else None for e in evals], budget)["km_median"]


def curve_ci(curve_rows: list[dict], n_resamples: int = 2000, confidence: float = 0.95) -> list[dict]:
    """Anytime HV per method: mean over seeds after each evaluation, with a 95 % bootstrap CI.

    Returns:
        Rows ``{method, n_evals, n_seeds, hv_mean, hv_ci95_low, hv_ci95_high}``.
    """
    from scipy.stats import bootstrap

    import pandas as pd

    frame = pd.DataFrame(curve_rows)
    rows = []
    for method, group in frame.groupby("method", sort=False):
        table = group.pivot(index="seed", columns="n_evals", values="hv").to_numpy(dtype=float)  # (seeds, evals)
        mean = table.mean(axis=0)
        low, high = mean.copy(), mean.copy()
        if table.shape[0] >= 2:
            with np.errstate(invalid="ignore"):
                res = bootstrap((table,), np.mean, axis=0, vectorized=True, n_resamples=n_resamples,
                                confidence_level=confidence, method="percentile",
                                rng=np.random.default_rng([len(rows), CI_STREAM]))
            low, high = np.fmin(res.confidence_interval.low, mean), np.fmax(res.confidence_interval.high, mean)
        rows += [{"method": method, "n_evals": n + 1, "n_seeds": table.shape[0], "hv_mean": float(m),
                  "hv_ci95_low": float(lo), "hv_ci95_high": float(hi)}
                 for n, (m, lo, hi) in enumerate(zip(mean, low, high))]
    return rows


LONG_LEVELS = (0.90, 0.95, 0.99)  # shares of the reference HV the long-budget study times


def long_budget(experiment: ParetoExperiment, long_runs: list[MethodRun], runs: list[MethodRun], reference: float,
                budget: int, levels=LONG_LEVELS, n_resamples: int = 2000, design_seeds=(),
                best_known: float | None = None) -> dict:
    """Long runs read against the experiment's fixed ``reference`` HV (they do not join it).

    Args:
        experiment: the experiment (its HV).
        long_runs: runs with more evaluations than the method budget.
        runs: the compared runs (for the prefix check).
        reference: the 100 % mark, fixed before the long runs.
        budget: the compared runs' evaluations.
        levels: shares of ``reference`` timed per run (censored at the long runs' length).
        n_resamples: bootstrap resamples of the CIs over seeds.
        design_seeds: seeds looked at while a method was designed; the final shares
            (``final_held_out[method]``) and effects (``<cause>_held_out``) are also given on the other seeds.
        best_known: HV of the best known front (the reference's points with the long runs'):
            the reference is a union of short runs, which long runs can pass, so each method's mean
            final share of this one is given too (``final_best_known[method]``: ``{mean, ci95}``
            over the seeds; ``final_best_known_held_out``: the same on the seeds not in
            ``design_seeds``).

    Returns:
        ``{evals, levels, curve, reach, final, prefix_share}`` (empty without long runs): ``curve`` rows
        ``{method, n_evals, n_seeds, frac_mean, frac_ci95_low, frac_ci95_high}`` (the anytime HV
        as a share of ``reference``); ``reach[method][pct]`` the :func:`time_to_target` of the
        runs' first evaluations at ``pct`` % of ``reference`` (one per level); ``final[method]`` ``{mean, ci95}`` of
        the share at the end; ``prefix_share[method]`` the share of seeds whose first ``budget``
        evaluations are those of the compared run of the same method and seed (1: the long runs
        extend the compared ones, as the surrogate's do: its choices depend on the budget only
        through when it stops; a method whose schedule scales with the budget, such as
        ``zero_cost``'s pre-filter or EPR's generations, starts differently). ``effects``: per
        cause of :data:`EFFECTS` whose method and control both have long runs, the paired
        difference of their final shares over seeds with its 95 % CI. Runs are censored at
        ``evals``, the longest run's length.
    """
    if not long_runs:
        return {}
    rows, curves = curve_rows(experiment, long_runs)
    scaled = [{**r, "hv": r["hv"] / reference} for r in rows]
    curve = [{"method": r["method"], "n_evals": r["n_evals"], "n_seeds": r["n_seeds"], "frac_mean": r["hv_mean"],
              "frac_ci95_low": r["hv_ci95_low"], "frac_ci95_high": r["hv_ci95_high"]}
             for r in curve_ci(scaled, n_resamples)]
    evals = max(run.n_evals for run in long_runs)
    compared = {(r.method, r.seed): r for r in runs}
    reach, final, prefix, end_share = {}, {}, {}, {}
    for method in dict.fromkeys(r.method for r in long_runs):
        own = [r for r in long_runs if r.method == method]
        end_share[method] = {r.seed: curves[run_key(r.method, r.seed)][-1] / reference for r in own}
        reach[method] = {round(100 * level): time_to_target(
            [evals_to_reach(curves[run_key(r.method, r.seed)], level * reference) for r in own], evals)
            for level in levels}
        ends = [curves[run_key(r.method, r.seed)][-1] / reference for r in own]
        final[method] = {"mean": float(np.mean(ends)), "ci95": mean_ci(ends, n_resamples)}
        same = [np.array_equal(r.choices[:budget], compared[method, r.seed].choices[:budget])
                for r in own if (method, r.seed) in compared]
        prefix[method] = float(np.mean(same)) if same else math.nan
    effects, final_held = effects_with_held_out(end_share, design_seeds, n_resamples), {}
    if design_seeds:
        final_held = {m: _mean_with_ci(v, n_resamples) for m, v in held_out(end_share, design_seeds).items() if v}
    final_best, final_best_held = {}, {}
    if best_known:
        best_share = {m: {seed: share * reference / best_known for seed, share in by_seed.items()}
                      for m, by_seed in end_share.items()}
        final_best = {m: _mean_with_ci(v, n_resamples) for m, v in best_share.items()}
        if design_seeds:
            final_best_held = {m: _mean_with_ci(v, n_resamples) for m, v in held_out(best_share, design_seeds).items()
                               if v}
    return {"evals": evals, "levels": [float(v) for v in levels], "curve": curve, "reach": reach, "final": final,
            "final_held_out": final_held, "best_known_hv": best_known, "final_best_known": final_best,
            "final_best_known_held_out": final_best_held, "prefix_share": prefix, "effects": effects}


def confirm_study(experiment: ParetoExperiment, runs: list[MethodRun], reference: float,
                  n_resamples: int = 2000, effects: tuple[tuple[str, str, str], ...] = ()) -> dict:
    """A confirmatory study's runs (fresh seeds, the protocol's budget) read against the
    experiment's fixed ``reference`` HV, which they do not join; ``effects`` are the (cause,
    method, control) triples compared (empty: :data:`EFFECTS`).

    Returns:
        ``{methods, effects, by_target}`` (empty without runs). ``methods``: per method ``{method, n_seeds,
        share_mean, share_sd, share_ci95_low, share_ci95_high}`` (the final HV as a share of
        ``reference``; a Student-t CI over seeds) and the percentile bootstrap's ends
        (``share_boot_ci95_low``, ``_high``). ``effects``: per cause of :data:`EFFECTS` whose
        method and control both ran, the paired difference of their shares over the common
        seeds ``{effect, method, control, n_seeds, diff_mean, diff_sd, diff_ci95_low,
        diff_ci95_high}`` (t) and its bootstrap ends. ``by_target``: the same effects split into
        each headline target's contribution ``{effect, target, n_seeds, contrib_mean, contrib_sd,
        contrib_ci95_low, contrib_ci95_high, ...}``: the paired difference of the target's HV over
        ``reference`` and the number of targets, so the contributions sum to the effect. Beside it,
        where the two arms spent their evaluations on that target (:func:`matched_count_split`):
        ``in_box_method`` / ``in_box_control`` (mean evaluations inside the target's HV box per
        run), their paired difference ``in_box_diff_*``, the contribution split into
        ``split_quality_*`` (at equal in-box counts) and ``split_count_*`` (what the extra in-box
        evaluations add; the two sum to the contribution), ``best_miou_diff_*`` (the paired
        difference of the best in-box mIoU, the reference accuracy where an arm has none), each
        with mean, SD, t CI and bootstrap ends, and ``unequal_evals``: seeds whose two runs made
        different numbers of evaluations (0 in a sound study).
    """
    if not runs:
        return {}
    targets = experiment.hv_targets
    per_target: dict[str, dict[int, np.ndarray]] = {}  # a target's HV over reference and the number of targets
    by_seed: dict[str, dict[int, MethodRun]] = {}
    shares: dict[str, dict[int, float]] = {}
    for run in runs:
        hvs = np.array([experiment.target_hv(run.miou, run.latency_ms, t) for t in targets])  # once per run
        per_target.setdefault(run.method, {})[run.seed] = hvs / reference / len(targets)
        by_seed.setdefault(run.method, {})[run.seed] = run
        shares.setdefault(run.method, {})[run.seed] = float(np.mean(hvs)) / reference  # experiment.hv's mean
    methods = [{"method": m, "n_seeds": len(v), **_t_and_bootstrap("share", list(v.values()), n_resamples)}
               for m, v in shares.items()]
    compared, effects, by_target = effects or EFFECTS, [], []
    for effect, method, control in compared:
        if method in shares and control in shares:
            seeds = sorted(set(shares[method]) & set(shares[control]))
            if not seeds:  # both arms ran, on different seeds: nothing is paired
                continue
            diff = [shares[method][s] - shares[control][s] for s in seeds]
            effects.append({"effect": effect, "method": method, "control": control, "n_seeds": len(seeds),
                            **_t_and_bootstrap("diff", diff, n_resamples)})
            for i, t in enumerate(targets):
                contrib = [per_target[method][s][i] - per_target[control][s][i] for s in seeds]
                split = np.array([matched_count_split(experiment, by_seed[method][s], by_seed[control][s], t)
                                  for s in seeds]) / np.array([reference * len(targets)] * 2 + [1.0] * 3)
                unequal = sum(by_seed[method][s].n_evals != by_seed[control][s].n_evals for s in seeds)
                by_target.append({"effect": effect, "target": experiment.target_names[t], "n_seeds": len(seeds),
                                  **_t_and_bootstrap("contrib", contrib, n_resamples),
                                  "in_box_method": float(split[:, 2].mean()), "in_box_control": float(split[:, 3].mean()),
                                  **_t_and_bootstrap("in_box_diff", list(split[:, 2] - split[:, 3]), n_resamples),
                                  **_t_and_bootstrap("split_quality", list(split[:, 0]), n_resamples),
                                  **_t_and_bootstrap("split_count", list(split[:, 1]), n_resamples),
                                  **_t_and_bootstrap("best_miou_diff", list(split[:, 4]), n_resamples),
                                  "unequal_evals": int(unequal)})
    return {"methods": methods, "effects": effects, "by_target": by_target}


def _in_box(experiment: ParetoExperiment, run: MethodRun, target: int) -> tuple[np.ndarray, np.ndarray]:
    """``(miou, latency_ms)`` of ``run``'s evaluations inside the target's HV box, in evaluation order."""
    inside = inside_reference(experiment.objectives(run.miou, run.latency_ms, target), experiment.ref)
    return run.miou[inside], run.latency_ms[inside]


def matched_count_split(experiment: ParetoExperiment, run: MethodRun, control: MethodRun,
                        target: int) -> tuple[float, float, int, int, float]:
    """Split ``run``'s HV lead over ``control`` on one target into quality and count.

    Only evaluations inside the target's HV box (within its budget, above the reference
    accuracy) add HV. The arm with more of them is cut to the other's count, keeping its first
    ones in evaluation order: ``quality`` is the HV difference at equal counts, ``count`` what
    the longer arm's remaining in-box evaluations add, and ``quality + count`` is the whole HV
    difference.

    Returns:
        ``(quality, count, k_run, k_control, best_miou_diff)``: HVs unscaled; the in-box counts;
        the best in-box mIoU of ``run`` minus ``control``'s (an arm with none scores the
        reference accuracy, ``1 - experiment.ref[0]``).
    """
    boxed = [_in_box(experiment, r, target) for r in (run, control)]

    def hv(arm: int, k: int | None = None) -> float:
        miou, latency = boxed[arm]
        return experiment.target_hv(miou[:k], latency[:k], target) if len(miou[:k]) else 0.0

    k_run, k_control = len(boxed[0][0]), len(boxed[1][0])
    if k_run <= k_control:
        middle = hv(1, k_run)
        quality, count = hv(0) - middle, middle - hv(1)
    else:
        middle = hv(0, k_control)
        quality, count = middle - hv(1), hv(0) - middle
    floor = 1.0 - float(experiment.ref[0])
    best = [float(miou.max()) if len(miou) else floor for miou, _ in boxed]
    return quality, count, k_run, k_control, best[0] - best[1]


def _t_and_bootstrap(name: str, values: list[float], n_resamples: int) -> dict:
    """``<name>_mean``, ``_sd``, the t CI's ends ``<name>_ci95_low/high`` and the bootstrap's
    ``<name>_boot_ci95_low/high``."""
    low, high = mean_t_ci(values)
    boot_low, boot_high = mean_ci(values, n_resamples)
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return {f"{name}_mean": float(np.mean(values)), f"{name}_sd": sd, f"{name}_ci95_low": low,
            f"{name}_ci95_high": high, f"{name}_boot_ci95_low": boot_low, f"{name}_boot_ci95_high": boot_high}


def _mean_with_ci(by_seed: dict[int, float], n_resamples: int) -> dict:
    """``{mean, ci95}`` over the seeds of ``{seed: value}`` (:func:`mean_ci`)."""
    values = list(by_seed.values())
    return {"mean": float(np.mean(values)), "ci95": mean_ci(values, n_resamples)}


def held_out(values: dict[str, dict[int, float]], design_seeds) -> dict[str, dict[int, float]]:
    """``values`` (``method -> seed -> value``) without the seeds of ``design_seeds``.

    Raises:
        ValueError: a design seed that no method ran (a typo would otherwise hold nothing out).
    """
    design = {int(s) for s in design_seeds}
    ran = {int(s) for by_seed in values.values() for s in by_seed}
    if not design <= ran:
        raise ValueError(f"search.design_seeds {sorted(design - ran)} were not run (seeds run: {sorted(ran)})")
    return {m: {s: v for s, v in by_seed.items() if int(s) not in design} for m, by_seed in values.items()}


def effects_with_held_out(values: dict[str, dict[int, float]], design_seeds, n_resamples: int) -> list[dict]:
    """:func:`paired_effects` of ``values``, and with ``design_seeds`` the same on the other
    seeds (:func:`held_out`), named ``<cause>_held_out``."""
    effects = paired_effects(values, n_resamples)
    if design_seeds:
        effects += [{**row, "effect": f"{row['effect']}_held_out"}
                    for row in paired_effects(held_out(values, design_seeds), n_resamples)]
    return effects


def paired_effects(values: dict[str, dict[int, float]], n_resamples: int = 2000) -> list[dict]:
    """Per cause of :data:`EFFECTS` whose method and control both have values (``method -> seed
    -> value``): the paired difference over their common seeds, mean and 95 % bootstrap CI."""
    rows = []
    for effect, method, control in EFFECTS:
        if method not in values or control not in values:
            continue
        seeds = sorted(set(values[method]) & set(values[control]))
        diff = [values[method][s] - values[control][s] for s in seeds]
        low, high = mean_ci(diff, n_resamples)
        rows.append({"effect": effect, "method": method, "control": control, "n_seeds": len(seeds),
                     "diff_mean": float(np.mean(diff)) if diff else math.nan, "diff_ci95_low": low,
                     "diff_ci95_high": high})
    return rows


def seed_hv(per_run: list[dict]) -> dict[str, dict[int, float]]:
    """Per method and seed, the headline HV (mean over the targets of the per-run rows)."""
    sums: dict[str, dict[int, list]] = {}
    for row in per_run:
        sums.setdefault(row["method"], {}).setdefault(int(row["seed"]), []).append(row["hv"])
    return {m: {s: float(np.mean(v)) for s, v in by_seed.items()} for m, by_seed in sums.items()}


# (cause, method with it, control without it): each effect is a paired HV difference over seeds
EFFECTS = (("prefilter", "random_feasible", "random"), ("near", "zero_cost", "zero_cost_random_proxy"),
           ("feasible_init", "epr_feasible", "epr"), ("surrogate", "surrogate", "random_feasible"),
           ("local_moves", "surrogate_local", "surrogate_grow"), ("pool_growth", "surrogate_grow", "surrogate"),
           ("interactions", "surrogate_pairs", "surrogate_local"),
           ("fingerprint", "surrogate_fingerprint", "surrogate_pairs"),
           ("latency_information", "surrogate_fingerprint", "surrogate_fingerprint_random"),
           ("latency_alignment", "surrogate_fingerprint", "surrogate_fingerprint_shuffled"),
           ("latency_hinge", "surrogate_fingerprint_hinge", "surrogate_fingerprint"),
           ("whole_space", "surrogate_fingerprint_space", "surrogate_fingerprint"),
           ("posterior_mean_pool", "surrogate_fingerprint_mean", "surrogate_fingerprint"),
           ("whole_space_under_mean", "surrogate_fingerprint_space_mean", "surrogate_fingerprint_mean"))


def effect_rows(per_run: list[dict], n_resamples: int = 2000, design_seeds=()) -> list[dict]:
    """Per cause whose method and control both ran: the paired HV difference with its 95 % CI;
    with ``design_seeds``, each again on the other seeds (``<cause>_held_out``)."""
    rows = []
    for row in effects_with_held_out(seed_hv(per_run), design_seeds, n_resamples):
        rows.append({**{k: row[k] for k in ("effect", "method", "control", "n_seeds")},
                     "hv_diff_mean": row["diff_mean"], "hv_diff_ci95_low": row["diff_ci95_low"],
                     "hv_diff_ci95_high": row["diff_ci95_high"]})
    return rows


def method_table(per_run: list[dict], reach: dict, random_method: str = "random", n_resamples: int = 2000,
                 evals_ci: dict[str, dict] | None = None) -> list[dict]:
    """One row per method: HV over seeds with its 95 % CI and the paired difference to random's,
    IGD and front size, and evaluations to the target (Kaplan-Meier median, censored share, and
    as a fraction of random's with ``evals_ci[method]``, the :func:`evals_ratio_ci`)."""
    import pandas as pd

    frame = pd.DataFrame(per_run).assign(covered=lambda f: (f.front_size > 0).astype(float))
    by_seed = frame.groupby(["method", "seed"], sort=False).agg(igd=("igd", "mean"), front_size=("front_size", "mean"),
                                                                 covered=("covered", "sum"))
    hv = seed_hv(per_run)
    base_hv = hv.get(random_method, {})
    base_evals = reach.get(random_method, {}).get("km_median", math.nan)
    rows = []
    for method, group in by_seed.groupby(level=0, sort=False):
        seeds = sorted(hv[method])
        values = [hv[method][s] for s in seeds]
        paired = [hv[method][s] - base_hv[s] for s in seeds if s in base_hv]
        r, ci = reach[method], (evals_ci or {}).get(method, UNDEFINED_CI)
        rows.append({
            "method": method, "n_seeds": len(seeds),
            "hv_mean": float(np.mean(values)), "hv_std": float(np.std(values)),
            **dict(zip(("hv_ci95_low", "hv_ci95_high"), mean_ci(values, n_resamples))),
            "hv_diff_random_mean": float(np.mean(paired)) if paired else math.nan,
            **dict(zip(("hv_diff_random_ci95_low", "hv_diff_random_ci95_high"), mean_ci(paired, n_resamples))),
            # IGD averages only the targets with a front: read it with targets_with_front
            "igd_mean": float(group.igd.mean()), "igd_std": float(group.igd.std(ddof=0)),
            "targets_with_front_mean": float(group.covered.mean()),
            "front_size_mean": float(group.front_size.mean()),
            "evals_to_target_km_median": r["km_median"], "censored_share": r["censored_share"],
            "evals_to_target_fraction_of_random": r["km_median"] / base_evals if base_evals > 0 else math.nan,
            "evals_to_target_fraction_ci95_low": ci["low"], "evals_to_target_fraction_ci95_high": ci["high"],
            "evals_to_target_ci_undefined_share": ci["undefined_share"],
        })
    return rows


def feasible_share(experiment: ParetoExperiment, runs: list[MethodRun]) -> dict[str, float]:
    """Per method, the mean over seeds of the share of its evaluations within at least one budget.

    The pre-filtered methods spend every evaluation on such architectures by construction;
    this is what random spends on them, the size of the pre-filter's head start.
    """
    shares: dict[str, list] = {}
    for run in runs:
        within = (np.asarray(run.latency_ms) <= experiment.budgets_ms).any(axis=1)
        shares.setdefault(run.method, []).append(float(within.mean()) if len(within) else math.nan)
    return {m: float(np.mean(v)) for m, v in shares.items()}


def check_runs(runs: list[MethodRun]) -> None:
    """Validate the runs' values (finite, mIoU in [0, 1]) before analysing them."""
    if not runs:
        raise ValueError("no method runs to analyse")
    for run in runs:
        check_accuracy(run.miou)
        if not np.isfinite(run.latency_ms).all():
            raise ValueError(f"run {run_key(run.method, run.seed)} has non-finite latencies")


def joint_front(experiment: ParetoExperiment, miou, latency_ms) -> np.ndarray:
    """Joint objectives ``(1 - mIoU, latency_t / budget_t for t in hv_targets)`` of the points."""
    return joint_objectives(miou, latency_ms, experiment.budgets_ms, experiment.hv_targets)
