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

The CIs are paired bootstraps over architectures (:func:`linas_lib.analysis.ranking._paired_ci`:
each resample redraws the table, so the budgets, the feasible sets and the picks move with it).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .ranking import CONFIDENCE, HEADLINE, _frame, _paired_ci

QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 11))  # budgets: deciles of the predicted latency
LATENCY = "latency"  # 04's scores.csv: the reference target's LUT-predicted latency
RANDOM, SEED_PICK = "random", "seed_pick"


class SelectionError(ValueError):
    """04's scores cannot support the selection study; the message names what is missing."""


def regrets(score, latency, truth, quantiles: Sequence[float] = QUANTILES) -> np.ndarray:
    """Per budget (``latency`` <= its quantile ``q``): the best feasible ``truth`` minus the truth
    of ``score``'s best feasible pick (the tied picks' mean), times 100 (mIoU points)."""
    score, latency, truth = (np.asarray(x, dtype=float) for x in (score, latency, truth))
    out = []
    for q in quantiles:
        feasible = latency <= np.quantile(latency, q)
        best = score[feasible].max()
        picked = truth[feasible][score[feasible] == best].mean()
        out.append(100 * (truth[feasible].max() - picked))
    return np.array(out)


def random_regrets(latency, truth, quantiles: Sequence[float] = QUANTILES) -> np.ndarray:
    """The expected regret of a uniform pick among the feasible architectures, per budget."""
    latency, truth = np.asarray(latency, dtype=float), np.asarray(truth, dtype=float)
    feasible = [latency <= np.quantile(latency, q) for q in quantiles]
    return np.array([100 * (truth[f].max() - truth[f].mean()) for f in feasible])


def seed_regrets(seed_columns: Sequence[np.ndarray], latency, quantiles: Sequence[float] = QUANTILES) -> np.ndarray:
    """:func:`regrets` of one seed's accuracy picking against another's, averaged over ordered seed pairs."""
    pairs = list(itertools.permutations(range(len(seed_columns)), 2))
    return np.mean([regrets(seed_columns[a], latency, seed_columns[b], quantiles) for a, b in pairs], axis=0)


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
                   n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """One row per signal (a ``scores.csv`` column, larger = better), ``random`` and, with two or
    more complete ``seed_columns`` (per-seed test mIoU aligned with ``scores``' rows), ``seed_pick``:
    ``regret_pts`` (mean over the budgets, ``_lo`` / ``_hi``: bootstrap over architectures),
    ``regret_max_pts`` (the worst budget) and ``regret_q<q>`` per budget quantile.

    Raises:
        SelectionError: no rows, or a signal's column, the latency or the truth missing or not finite.
    """
    latency, truth, *columns = _columns(scores, [LATENCY, f"truth.{HEADLINE}", *signals])
    arms = {name: (column, _by_signal) for name, column in zip(signals, columns)}
    arms[RANDOM] = (np.zeros_like(truth), _by_chance)
    seed_columns = [np.asarray(c, dtype=float) for c in seed_columns]
    if len(seed_columns) >= 2 and all(c.shape == truth.shape and np.isfinite(c).all() for c in seed_columns):
        arms[SEED_PICK] = (np.zeros_like(truth), _by_seed)
    return [_row(name, per_budget, (column, latency, truth, *seed_columns), n_resamples, seed)
            for name, (column, per_budget) in arms.items()]


# per-budget regrets of one arm from the columns (signal, latency, truth, *seeds), resampled alike
def _by_signal(c, lat, t, *seeds):
    return regrets(c, lat, t)


def _by_chance(c, lat, t, *seeds):
    return random_regrets(lat, t)


def _by_seed(c, lat, t, *seeds):
    return seed_regrets(seeds, lat)


def _row(name: str, per_budget, cols: tuple, n_resamples: int, seed: int) -> dict:
    """One :func:`selection_rows` row: ``per_budget(*cols)`` and the bootstrap of its mean."""
    values = per_budget(*cols)
    low, high = _paired_ci(lambda *c: float(np.mean(per_budget(*c))), cols, n_resamples, CONFIDENCE, seed)
    return {"signal": name, "n": int(cols[2].size), "regret_pts": float(np.mean(values)), "regret_pts_lo": low,
            "regret_pts_hi": high, "regret_max_pts": float(np.max(values)),
            **{f"regret_q{q:g}": float(r) for q, r in zip(QUANTILES, values)}}


def regret_gap(scores, signal_a: str, signal_b: str, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean regret of ``signal_a`` minus ``signal_b`` (mIoU points; negative: ``a`` picks better),
    with a paired bootstrap CI over architectures."""
    cols = tuple(_columns(scores, [signal_a, signal_b, LATENCY, f"truth.{HEADLINE}"]))

    def gap(a, b, lat, t):
        return float(np.mean(regrets(a, lat, t)) - np.mean(regrets(b, lat, t)))

    return (gap(*cols), *_paired_ci(gap, cols, n_resamples, CONFIDENCE, seed))


def selection_summary(rows: Sequence[dict], gaps: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    """``selection.regret_pts.<signal>`` (with ``_lo`` / ``_hi``) and ``selection.regret_max_pts.<signal>``
    per row; ``selection.gap_pts.<name>`` (with ``_lo`` / ``_hi``) per entry of ``gaps``."""
    out = {}
    for r in rows:
        name = r["signal"]
        out.update({f"selection.regret_pts.{name}": float(r["regret_pts"]),
                    f"selection.regret_pts.{name}_lo": float(r["regret_pts_lo"]),
                    f"selection.regret_pts.{name}_hi": float(r["regret_pts_hi"]),
                    f"selection.regret_max_pts.{name}": float(r["regret_max_pts"])})
    for name, (value, low, high) in gaps.items():
        out.update({f"selection.gap_pts.{name}": value, f"selection.gap_pts.{name}_lo": low,
                    f"selection.gap_pts.{name}_hi": high})
    return out
