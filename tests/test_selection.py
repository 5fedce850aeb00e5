"""The selection study of 07 (``linas_lib.analysis.selection``): known regrets, ties, controls, errors."""

from __future__ import annotations

import numpy as np
import pytest

from linas_lib.analysis import ranking
from linas_lib.analysis import selection as S

LAT = np.array([1.0, 2.0, 3.0, 4.0])
TRUTH = np.array([0.50, 0.60, 0.70, 0.80])
QS = (0.25, 0.5, 1.0)  # budgets 1.75, 2.5, 4 (np.quantile interpolates): the first 1, 2, 4 architectures feasible


def test_regret_is_the_best_feasible_minus_the_pick_in_points():
    assert S.regrets(TRUTH, LAT, TRUTH, QS) == pytest.approx([0, 0, 0])  # the truth picks the best
    assert S.regrets(-TRUTH, LAT, TRUTH, QS) == pytest.approx([0, 10, 30])  # the worst feasible one
    assert S.regrets(np.zeros(4), LAT, TRUTH, QS)[-1] == pytest.approx(15)  # all tied: their mean, not the first
    assert S.random_regrets(LAT, TRUTH, QS) == pytest.approx([0, 5, 15])


def test_a_seed_picking_against_itself_has_no_regret_and_against_another_seed_some():
    assert S.seed_regrets([TRUTH, TRUTH], LAT, QS) == pytest.approx([0, 0, 0])
    other = np.array([0.50, 0.60, 0.85, 0.80])  # seed 2 prefers the third architecture
    assert S.seed_regrets([TRUTH, other], LAT, QS)[-1] == pytest.approx((5 + 10) / 2)


def _scores(n=60, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.5, 0.8, n)
    return [{"arch": f"a{i}", "latency": float(rng.uniform(1, 10)), f"truth.{ranking.HEADLINE}": float(t),
             "good": float(t + rng.normal(0, 0.01)), "poor": float(rng.normal())} for i, t in enumerate(truth)]


def test_selection_rows_rank_a_good_signal_above_chance_and_carry_the_controls():
    scores = _scores()
    truth = np.array([r[f"truth.{ranking.HEADLINE}"] for r in scores])
    seeds = [truth + 0.002, truth - 0.002]
    rows = {r["signal"]: r for r in S.selection_rows(scores, ["good", "poor"], seeds, n_resamples=100)}
    assert list(rows) == ["good", "poor", S.RANDOM, S.SEED_PICK]
    assert rows["good"]["regret_pts"] < rows[S.RANDOM]["regret_pts"]
    assert rows[S.SEED_PICK]["regret_pts"] == pytest.approx(0)  # equal offsets: the same order
    for r in rows.values():
        assert r["regret_pts_lo"] <= r["regret_pts_hi"] and r["regret_max_pts"] >= r["regret_pts"] >= 0
        assert r["regret_pts"] == pytest.approx(np.mean([r[f"regret_q{q:g}"] for q in S.QUANTILES]))
    no_seed = S.selection_rows(scores, ["good"], [truth, truth * np.nan], n_resamples=20)
    assert [r["signal"] for r in no_seed] == ["good", S.RANDOM]  # an incomplete seed column: no seed control
    gap, low, high = S.regret_gap(scores, "good", "poor", n_resamples=100)
    assert gap < 0 and low <= gap <= high
    summary = S.selection_summary(list(rows.values()), {"good_vs_poor": (gap, low, high)})
    assert summary["selection.regret_pts.good"] == rows["good"]["regret_pts"]
    assert {"selection.regret_pts.good_lo", "selection.regret_max_pts.random", "selection.gap_pts.good_vs_poor_hi"} <= set(summary)


def test_selection_names_the_missing_column_and_the_signals_present():
    scores = _scores(10)
    with pytest.raises(S.SelectionError, match=r"scores\.csv: no column\(s\) ws\.a"):
        S.selection_rows(scores, ["ws.a"])
    scores = [{**r, "ws.a": 1.0, "ws_loss.a": 2.0, "flops": 3.0, "near": float("nan") if i else 1.0}
              for i, r in enumerate(scores)]
    assert S.selection_signals(scores, ["a", "b"]) == ["ws.a", "ws_loss.a", "flops", "latency"]  # near: not for all
    with pytest.raises(S.SelectionError, match=r"not finite in near \(9 rows\)"):
        S.selection_rows(scores, ["near"])
    with pytest.raises(S.SelectionError, match="no architectures"):
        S.regret_gap([], "ws.a", "flops")
