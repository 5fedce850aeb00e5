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

Method runs are checkpointed: :func:`run_all` writes one JSON per (method, seed) into a
cache folder and reloads it on a rerun.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..keys import atomic_write_text
from .indicators import Hypervolume, InvertedGenerationalDistance, inside_reference, nondominated
from .methods import METHODS, SearchSetup, run_method
from .objectives import check_accuracy, joint_objectives, target_objectives


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


def run_all(setup: SearchSetup, methods, seeds, folder: Path | None = None, progress=None) -> list[MethodRun]:
    """Run every method with every seed, resuming from per-run checkpoints in ``folder``.

    Each (method, seed) gets its own generator ``default_rng([seed, METHODS.index(method)])``,
    so a run's numbers do not depend on which other methods run with it.

    Args:
        setup: the shared search setup.
        methods: method names (see :data:`linas_lib.search.methods.METHODS`).
        seeds: search seeds.
        folder: checkpoint folder (``None``: no checkpoints).
        progress: optional callable ``(message) -> None``.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown search method {unknown[0]!r}; expected one of {', '.join(METHODS)}")
    runs = []
    for seed in seeds:
        for method in methods:
            path = folder / f"{run_key(method, seed)}.json" if folder is not None else None
            if path is not None and path.is_file():
                runs.append(MethodRun.from_json(json.loads(path.read_text())))
                continue
            start = time.perf_counter()
            archive, facts = run_method(setup, method, np.random.default_rng([int(seed), METHODS.index(method)]))
            run = MethodRun(method, int(seed), archive.choices(), archive.miou(), archive.latency_ms(),
                            time.perf_counter() - start, facts)
            if path is not None:
                atomic_write_text(path, json.dumps(run.to_json()))
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


def run_rows(experiment: ParetoExperiment, runs: list[MethodRun]) -> list[dict]:
    """Per (method, seed, target in the headline HV): HV, IGD, front size."""
    igds = experiment.igd_fronts(runs)
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


def evals_to_level(runs: list[MethodRun], curves: dict, level: float, budget: int) -> dict:
    """Per method: mean evaluations to reach ``level`` over seeds, and whether any was censored.

    A seed that never reaches the level counts with the full ``budget`` (a censored lower
    bound) and sets the method's ``censored`` flag.
    """
    out: dict[str, dict] = {}
    for run in runs:
        hit = evals_to_reach(curves[run_key(run.method, run.seed)], level)
        entry = out.setdefault(run.method, {"evals": [], "censored": 0})
        entry["evals"].append(hit if hit is not None else budget)
        entry["censored"] = max(entry["censored"], int(hit is None))
    return {m: {"evals": float(np.mean(e["evals"])), "censored": e["censored"]} for m, e in out.items()}


def method_table(per_run: list[dict], reach: dict, random_method: str = "random") -> list[dict]:
    """One row per method: mean and std over seeds of HV (mean over targets), IGD, front size."""
    import pandas as pd

    frame = pd.DataFrame(per_run)
    by_seed = frame.groupby(["method", "seed"], sort=False).agg(hv=("hv", "mean"), igd=("igd", "mean"),
                                                                 front_size=("front_size", "mean"))
    rows = []
    base = reach.get(random_method, {}).get("evals")
    for method, group in by_seed.groupby(level=0, sort=False):
        r = reach[method]
        rows.append({
            "method": method,
            "hv_mean": float(group.hv.mean()), "hv_std": float(group.hv.std(ddof=0)),
            "igd_mean": float(group.igd.mean()), "igd_std": float(group.igd.std(ddof=0)),
            "front_size_mean": float(group.front_size.mean()),
            "evals_to_99pct_hv": r["evals"], "censored": r["censored"],
            "evals_fraction_of_random": r["evals"] / base if base else float("nan"),
        })
    return rows


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
