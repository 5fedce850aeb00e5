"""The selection study of 07 (``linas_lib.analysis.selection``): known regrets, ties, controls, errors."""

from __future__ import annotations

import numpy as np
import pytest

from linas_lib.analysis import ranking
from linas_lib.analysis import selection as S

LAT = np.array([1.0, 2.0, 3.0, 4.0])
TRUTH = np.array([0.50, 0.60, 0.70, 0.80])
QS = (0.25, 0.5, 1.0)  # budgets 1.75, 2.5, 4 (np.quantile interpolates): the first 1, 2, 4 architectures feasible


BUDGETS = S.Budgets(("a", "b", "c"), ("lat",) * 3, quantiles=QS)


def _feasible(budgets=BUDGETS):
    return budgets.feasible({"lat": LAT})


def test_regret_is_the_best_feasible_minus_the_pick_in_points():
    assert [m.sum() for m in _feasible()] == [1, 2, 4]
    assert S.regrets(TRUTH, TRUTH, _feasible()) == pytest.approx([0, 0, 0])  # the truth picks the best
    assert S.regrets(-TRUTH, TRUTH, _feasible()) == pytest.approx([0, 10, 30])  # the worst feasible one
    assert S.regrets(np.zeros(4), TRUTH, _feasible())[-1] == pytest.approx(15)  # all tied: their mean, not the first
    assert S.random_regrets(TRUTH, _feasible()) == pytest.approx([0, 5, 15])


def test_fixed_budgets_admit_by_limit_and_an_empty_one_is_nan():
    fixed = S.Budgets(("x", "y"), ("lat", "lat"), limits_ms=(0.5, 3.0))
    assert [m.sum() for m in _feasible(fixed)] == [0, 3]
    assert S.regrets(-TRUTH, TRUTH, _feasible(fixed)) == pytest.approx([np.nan, 20], nan_ok=True)
    assert S.random_regrets(TRUTH, _feasible(fixed)) == pytest.approx([np.nan, 10], nan_ok=True)


def test_a_seed_picking_against_itself_has_no_regret_and_against_another_seed_some():
    assert S.seed_regrets([TRUTH, TRUTH], _feasible()) == pytest.approx([0, 0, 0])
    other = np.array([0.50, 0.60, 0.85, 0.80])  # seed 2 prefers the third architecture
    assert S.seed_regrets([TRUTH, other], _feasible())[-1] == pytest.approx((5 + 10) / 2)


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
        assert r["n_budgets"] == len(S.QUANTILES)
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


def test_per_target_budgets_read_the_search_model_and_leave_out_a_target_nothing_fits():
    class Model:
        target_names = ("fast", "slow", "none")
        budgets_ms = np.array([5.0, 100.0, -1.0])

        def predict(self, choices):
            width = choices.astype(float).mean(axis=1)  # a latency that grows with the choice index
            return np.stack([width, 2 * width, width], axis=1)

    rng = np.random.default_rng(1)
    archs = ["-".join(f"{op}_w{w}" for op, w in zip(rng.choice(["Conv3x3", "Conv7x7"], 5), rng.choice([50, 75, 100], 5)))
             for _ in range(30)]
    truth = rng.uniform(0.5, 0.8, len(archs))
    scores = [{"arch": a, f"truth.{ranking.HEADLINE}": float(t), "good": float(t)} for a, t in zip(archs, truth)]
    scores = S.with_target_latency(scores, Model())
    budgets = S.target_budgets(Model())
    assert budgets.columns == ("latency.fast", "latency.slow", "latency.none") and budgets.limits_ms == (5.0, 100.0, -1.0)
    lat = np.array([r["latency.fast"] for r in scores])
    assert 0 < (lat <= 5).sum() < len(archs) and [r["latency.slow"] for r in scores] == pytest.approx(2 * lat)
    rows = {r["signal"]: r for r in S.selection_rows(scores, ["good"], n_resamples=50, budgets=budgets)}
    assert rows["good"]["n_budgets"] == 2 and np.isnan(rows["good"]["regret_none"])
    assert rows["good"]["regret_pts"] == 0 and rows[S.RANDOM]["regret_pts"] > 0
    assert rows[S.RANDOM]["regret_pts"] == pytest.approx(np.mean([rows[S.RANDOM]["regret_fast"], rows[S.RANDOM]["regret_slow"]]))
    table = S.budget_rows(scores, budgets)
    assert [r["n_feasible"] for r in table] == [int((lat <= 5).sum()), len(archs), 0]
    assert table[1][f"best_{ranking.HEADLINE}"] == truth.max() and table[2]["best_arch"] == ""
    gap, low, high = S.regret_gap(scores, "good", "good", n_resamples=20, budgets=budgets)
    assert gap == low == high == 0
    assert set(S.selection_summary(list(rows.values()), {}, kind="target_")) >= {"selection.target_regret_pts.good"}


def test_a_budget_one_resample_empties_is_not_averaged_out_of_the_ci():
    """The CI reads the mean over the budgets the table fills, in every resample alike: a
    resample where a one-architecture budget admits nothing is dropped, not averaged over the
    other budget alone (which would pull the CI towards that budget's regret)."""
    rng = np.random.default_rng(3)
    lat = np.arange(30, dtype=float)
    truth = rng.uniform(0.5, 0.8, 30)
    scores = [{"arch": f"a{i}", "lat": float(x), f"truth.{ranking.HEADLINE}": float(t)} for i, (x, t) in enumerate(zip(lat, truth))]
    budgets = S.Budgets(("one", "all"), ("lat", "lat"), limits_ms=(0.0, 100.0))
    rows = {r["signal"]: r for r in S.selection_rows(scores, [], n_resamples=400, budgets=budgets)}
    whole = 100 * (truth.max() - truth.mean())
    assert rows[S.RANDOM]["regret_one"] == 0 and rows[S.RANDOM]["regret_all"] == pytest.approx(whole)
    assert rows[S.RANDOM]["regret_pts"] == pytest.approx(whole / 2)
    assert rows[S.RANDOM]["regret_pts_hi"] < 0.75 * whole  # averaging out the empty budget would reach ~whole


def test_budgets_refuse_mismatched_lengths_and_labels_that_clash_with_the_row_fields():
    with pytest.raises(ValueError, match="one column and one limit per label"):
        S.Budgets(("a", "b"), ("lat",), limits_ms=(1.0, 2.0))
    with pytest.raises(ValueError, match="quantiles or limits_ms"):
        S.Budgets(("a",), ("lat",))
    with pytest.raises(ValueError, match="max_pts would overwrite"):
        S.Budgets(("max_pts",), ("lat",), limits_ms=(1.0,))
