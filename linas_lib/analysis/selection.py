"""What a ranking signal buys a search: the regret of picking by it under a latency budget (07).

Kendall tau weighs every pair of architectures alike; a search under a budget keeps one
architecture, the best-scored among the feasible ones. :func:`selection_rows` measures that
directly on the benchmark table: for budgets at quantiles of the table's predicted latency
(the reference target's LUT, 04's ``latency`` column), each signal picks its best-scored
feasible architecture, and its regret is the best feasible architecture's mean test mIoU
minus the pick's, in mIoU points (the issue's "within 1 mIoU point" scale). Ties in a score
count as a uniform draw among the tied (their mean truth), never as the first by index.
``random`` is the expected regret of a uniform feasible pick; ``seed_pick`` picks by one
training seed's test mIoU and is judged against another seed's, averaged over the ordered seed
pairs: the regret of a standalone training's own noise (against a one-seed truth, so it is a
floor for reading the others, not their equal).

Budgets come in two designs (:class:`Budgets`): :data:`DECILES` of the reference target's
predicted latency, which spread the picks over the table, and :func:`target_budgets`, each of
05's targets at its own budget on the latency the search predicts for it
(:func:`with_target_latency`), which reads the picks 05 itself faces. A budget that admits no
architecture is left out of the mean (``n_budgets`` counts those averaged).

The CIs are paired bootstraps over architectures (:func:`linas_lib.analysis.ranking._paired_ci`:
each resample redraws the table, so the feasible sets, the picks and the quantile budgets
move with it; fixed budgets stay).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..space import parse_arch
from .ranking import CONFIDENCE, HEADLINE, _frame, _paired_ci

QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 11))  # budgets: deciles of the predicted latency
LATENCY = "latency"  # 04's scores.csv: the reference target's LUT-predicted latency
TARGET_LATENCY = "latency.{}"  # :func:`with_target_latency`: a target's predicted latency
RANDOM, SEED_PICK = "random", "seed_pick"


class SelectionError(ValueError):
    """04's scores cannot support the selection study; the message names what is missing."""


@dataclass(frozen=True)
class Budgets:
    """The latency budgets a pick must fit, each a limit on one latency column of the scores.

    Attributes:
        labels: one per budget (the rows' ``regret_<label>`` fields).
        columns: the scores' latency column each budget reads.
        quantiles: per budget, the quantile of its column that is its limit (recomputed on each
            bootstrap resample); None: ``limits_ms``.
        limits_ms: per budget, a fixed limit; None: ``quantiles``.
        axis: what the budgets are, for a figure's axis.
    """

    labels: tuple[str, ...]
    columns: tuple[str, ...]
    quantiles: tuple[float, ...] | None = None
    limits_ms: tuple[float, ...] | None = None
    axis: str = ""

    def __post_init__(self):
        n = len(self.labels)
        if (self.quantiles is None) == (self.limits_ms is None):
            raise ValueError("Budgets needs quantiles or limits_ms, not both or neither")
        lengths = {len(self.columns), len(self.quantiles if self.limits_ms is None else self.limits_ms)}
        if lengths != {n} or len(set(self.labels)) != n:
            raise ValueError(f"Budgets needs one column and one limit per label, labels unique; got {n} labels, "
                             f"{len(self.columns)} columns")
        clash = {"pts", "pts_lo", "pts_hi", "max_pts"} & set(self.labels)
        if clash:
            raise ValueError(f"budget label(s) {', '.join(sorted(clash))} would overwrite a regret_<field> of the rows")

    def subset(self, keep: Sequence[bool]) -> Budgets:
        """The budgets where ``keep`` is true, in order."""
        pick = lambda values: None if values is None else tuple(v for v, k in zip(values, keep) if k)  # noqa: E731
        return Budgets(pick(self.labels), pick(self.columns), pick(self.quantiles), pick(self.limits_ms), self.axis)

    @property
    def latency_columns(self) -> list[str]:
        """The distinct latency columns the budgets read, in order."""
        return list(dict.fromkeys(self.columns))

    def feasible_in(self, lats: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`feasible` of the :attr:`latency_columns`' values ``lats``, in that order."""
        return self.feasible(dict(zip(self.latency_columns, lats)))

    def feasible(self, latencies: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Per budget, the mask of the architectures within it (``latencies`` by column)."""
        if self.quantiles is not None:
            return [latencies[c] <= np.quantile(latencies[c], q) for c, q in zip(self.columns, self.quantiles)]
        return [latencies[c] <= limit for c, limit in zip(self.columns, self.limits_ms)]


DECILES = Budgets(tuple(f"q{q:g}" for q in QUANTILES), (LATENCY,) * len(QUANTILES), quantiles=QUANTILES,
                  axis="budget: quantile of the table's predicted latency (reference target)")


def target_budgets(latency_model) -> Budgets:
    """Each target's own budget on its predicted latency (05's targets and budgets:
    ``latency_model`` is :func:`~linas_lib.supernet.train.search_latency_model`)."""
    names = tuple(latency_model.target_names)
    return Budgets(names, tuple(TARGET_LATENCY.format(t) for t in names),
                   limits_ms=tuple(float(b) for b in latency_model.budgets_ms), axis="target (05's budget)")


def with_target_latency(scores, latency_model) -> list[dict]:
    """``scores``' rows with ``latency.<target>``: each architecture's latency predicted by the
    search's model (the one 05 holds its budgets against)."""
    rows = [dict(r) for r in scores]
    if not rows:
        return rows
    predicted = latency_model.predict(np.array([parse_arch(str(r["arch"])) for r in rows]))
    for row, values in zip(rows, predicted):
        row.update({TARGET_LATENCY.format(t): float(v) for t, v in zip(latency_model.target_names, values)})
    return rows


def regrets(score, truth, feasible: Sequence[np.ndarray]) -> np.ndarray:
    """Per feasible set: its best ``truth`` minus the truth of ``score``'s best pick in it (the
    tied picks' mean), times 100 (mIoU points); NaN where nothing is feasible."""
    score, truth = np.asarray(score, dtype=float), np.asarray(truth, dtype=float)
    out = []
    for ok in feasible:
        if not ok.any():
            out.append(np.nan)
            continue
        best = score[ok].max()
        out.append(100 * (truth[ok].max() - truth[ok][score[ok] == best].mean()))
    return np.array(out)


def random_regrets(truth, feasible: Sequence[np.ndarray]) -> np.ndarray:
    """The expected regret of a uniform pick among the feasible architectures, per feasible set."""
    truth = np.asarray(truth, dtype=float)
    return np.array([100 * (truth[ok].max() - truth[ok].mean()) if ok.any() else np.nan for ok in feasible])


def seed_regrets(seed_columns: Sequence[np.ndarray], feasible: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`regrets` of one seed's accuracy picking against another's, averaged over ordered seed pairs."""
    pairs = list(itertools.permutations(range(len(seed_columns)), 2))
    return np.mean([regrets(seed_columns[a], seed_columns[b], feasible) for a, b in pairs], axis=0)


def selection_signals(scores, variants: Sequence[str]) -> list[str]:
    """The ``scores.csv`` columns to pick by, those present with a value for every architecture
    (a pick compares all of them): per variant WS mIoU (``ws.<v>``) and minus the WS loss
    (``ws_loss.<v>``), 07's ensemble, NEAR and the trivial size signals."""
    df = _frame(scores)
    wanted = [f"{kind}.{v}" for v in variants for kind in ("ws", "ws_loss")]
    return [c for c in (*wanted, "ws_ensemble", "near", "flops", "params", LATENCY)
            if c in df.columns and np.isfinite(df[c].to_numpy(dtype=float)).all()]


def _columns(scores, names: Sequence[str]) -> list[np.ndarray]:
    """``scores``' columns ``names`` as float arrays.

    Raises:
        SelectionError: no rows, a column missing, or a value not finite (each named).
    """
    df = _frame(scores)
    if df.empty:
        raise SelectionError("04_ranking/scores.csv: no architectures; rerun 04_ranking with a benchmark table")
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise SelectionError(f"04_ranking/scores.csv: no column(s) {', '.join(missing)}; rerun 04_ranking")
    out = [df[c].to_numpy(dtype=float) for c in names]
    bad = [f"{c} ({int((~np.isfinite(x)).sum())} rows)" for c, x in zip(names, out) if not np.isfinite(x).all()]
    if bad:
        raise SelectionError(f"04_ranking/scores.csv: values that are not finite in {', '.join(bad)}; "
                             "a pick compares every architecture (selection_signals leaves such columns out)")
    return out


def selection_rows(scores, signals: Sequence[str], seed_columns: Sequence[np.ndarray] = (),
                   n_resamples: int = 2000, seed: int = 0, budgets: Budgets = DECILES) -> list[dict]:
    """One row per signal (a ``scores.csv`` column, larger = better), ``random`` and, with two or
    more complete ``seed_columns`` (per-seed test mIoU aligned with ``scores``' rows), ``seed_pick``:
    ``regret_pts`` (mean over the budgets with a feasible architecture, ``_lo`` / ``_hi``:
    bootstrap over architectures), ``regret_max_pts`` (the worst budget), ``n_budgets`` (those
    averaged) and ``regret_<label>`` per budget.

    Raises:
        SelectionError: no rows, or a signal's column, a latency column or the truth missing or not finite.
    """
    truth, *columns = _columns(scores, [f"truth.{HEADLINE}", *signals, *budgets.latency_columns])
    columns, lats = columns[:len(signals)], columns[len(signals):]
    active = _active(budgets, lats)
    arms = {name: (column, _by_signal) for name, column in zip(signals, columns)}
    arms[RANDOM] = (np.zeros_like(truth), _by_chance)
    seed_columns = [np.asarray(c, dtype=float) for c in seed_columns]
    if len(seed_columns) >= 2 and all(c.shape == truth.shape and np.isfinite(c).all() for c in seed_columns):
        arms[SEED_PICK] = (np.zeros_like(truth), _by_seed)
    else:
        seed_columns = []
    return [_row(name, [_per_budget(per_budget, b, len(lats), len(seed_columns)) for b in (budgets, active)],
                 (column, truth, *lats, *seed_columns), budgets, n_resamples, seed)
            for name, (column, per_budget) in arms.items()]


def _active(budgets: Budgets, lats: Sequence[np.ndarray]) -> Budgets:
    """The budgets that admit an architecture of the table itself: the ones a mean averages,
    in every bootstrap resample alike (a resample where one of them admits nothing is dropped,
    rather than averaging over fewer budgets than the point estimate)."""
    return budgets.subset([ok.any() for ok in budgets.feasible_in(lats)])


# per-budget regrets of one arm from (signal, truth, feasible sets, seed columns)
def _by_signal(c, t, feasible, seeds):
    return regrets(c, t, feasible)


def _by_chance(c, t, feasible, seeds):
    return random_regrets(t, feasible)


def _by_seed(c, t, feasible, seeds):
    return seed_regrets(seeds, feasible)


def _per_budget(arm, budgets: Budgets, n_lats: int, n_seeds: int):
    """``arm`` as a function of the columns ``(signal, truth, *latencies, *seeds)``, so that a
    bootstrap resamples them alike (quantile budgets move with each resample)."""
    def per_budget(c, t, *rest):
        lats, seeds = rest[:n_lats], rest[n_lats:n_lats + n_seeds]
        return arm(c, t, budgets.feasible_in(lats), seeds)

    return per_budget


def _row(name: str, per_budget, cols: tuple, budgets: Budgets, n_resamples: int, seed: int) -> dict:
    """One :func:`selection_rows` row: ``per_budget[0](*cols)`` (every budget) and the bootstrap of
    the mean of ``per_budget[1]`` (the :func:`_active` budgets)."""
    every, active = per_budget
    values = every(*cols)
    low, high = _paired_ci(lambda *c: _strict_mean(active(*c)), cols, n_resamples, CONFIDENCE, seed)
    return {"signal": name, "n": int(cols[1].size), "n_budgets": int(np.isfinite(values).sum()),
            "regret_pts": _mean(values), "regret_pts_lo": low, "regret_pts_hi": high,
            "regret_max_pts": float(np.nanmax(values)) if np.isfinite(values).any() else math.nan,
            **{f"regret_{label}": float(r) for label, r in zip(budgets.labels, values)}}


def _mean(values: np.ndarray) -> float:
    """Mean over the budgets with a feasible architecture (NaN: none)."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def _strict_mean(values: np.ndarray) -> float:
    """Mean over every budget; NaN when one of them admits nothing (a bootstrap resample dropped)."""
    return float(values.mean()) if values.size and np.isfinite(values).all() else math.nan


def regret_gap(scores, signal_a: str, signal_b: str, n_resamples: int = 2000, seed: int = 0,
               budgets: Budgets = DECILES) -> tuple[float, float, float]:
    """Mean regret of ``signal_a`` minus ``signal_b`` (mIoU points; negative: ``a`` picks better),
    with a paired bootstrap CI over architectures."""
    cols = tuple(_columns(scores, [signal_a, signal_b, f"truth.{HEADLINE}", *budgets.latency_columns]))
    active = _active(budgets, cols[3:])

    def gap(a, b, t, *lats):
        feasible = active.feasible_in(lats)
        return _strict_mean(regrets(a, t, feasible)) - _strict_mean(regrets(b, t, feasible))

    return (gap(*cols), *_paired_ci(gap, cols, n_resamples, CONFIDENCE, seed))


def budget_rows(scores, budgets: Budgets) -> list[dict]:
    """Per budget: its limit, how many architectures it admits and the best of them (mean test mIoU)."""
    lat_names = budgets.latency_columns
    truth, *lats = _columns(scores, [f"truth.{HEADLINE}", *lat_names])
    archs = [str(r["arch"]) for r in scores]
    rows = []
    for i, (label, ok) in enumerate(zip(budgets.labels, budgets.feasible_in(lats))):
        limit = (budgets.limits_ms[i] if budgets.limits_ms is not None
                 else float(np.quantile(lats[lat_names.index(budgets.columns[i])], budgets.quantiles[i])))
        best = int(np.flatnonzero(ok)[np.argmax(truth[ok])]) if ok.any() else None
        rows.append({"budget": label, "latency_column": budgets.columns[i], "limit_ms": float(limit),
                     "n_feasible": int(ok.sum()), "best_arch": archs[best] if best is not None else "",
                     f"best_{HEADLINE}": float(truth[best]) if best is not None else math.nan})
    return rows


def selection_summary(rows: Sequence[dict], gaps: dict[str, tuple[float, float, float]],
                      kind: str = "") -> dict[str, float]:
    """``selection.<kind>regret_pts.<signal>`` (with ``_lo`` / ``_hi``) and
    ``selection.<kind>regret_max_pts.<signal>`` per row; ``selection.<kind>gap_pts.<name>``
    (with ``_lo`` / ``_hi``) per entry of ``gaps``. ``kind``: "" for the deciles, "target_" for
    05's per-target budgets."""
    out = {}
    for r in rows:
        name = r["signal"]
        out.update({f"selection.{kind}regret_pts.{name}": float(r["regret_pts"]),
                    f"selection.{kind}regret_pts.{name}_lo": float(r["regret_pts_lo"]),
                    f"selection.{kind}regret_pts.{name}_hi": float(r["regret_pts_hi"]),
                    f"selection.{kind}regret_max_pts.{name}": float(r["regret_max_pts"])})
    for name, (value, low, high) in gaps.items():
        out.update({f"selection.{kind}gap_pts.{name}": value, f"selection.{kind}gap_pts.{name}_lo": low,
                    f"selection.{kind}gap_pts.{name}_hi": high})
    return out
