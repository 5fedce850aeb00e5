"""Study choice_standalone2 (notebook 09): picks on the mean of two standalone trainings,
cross-fitted over the splits of four seeds into pairs, read on the other pair."""

from types import SimpleNamespace

import numpy as np
import pytest

from linas_lib.analysis import choice_standalone2 as C2
from linas_lib.analysis import final_choice as FC
from linas_lib.space import arch_string

ARCHS = [arch_string([i] * 5) for i in range(4)]


def test_folds_split_the_seeds_into_disjoint_pairs_both_ways():
    folds = C2.folds(4)
    assert len(folds) == 6 and len(set(folds)) == 6
    for pick, truth in folds:
        assert len(pick) == len(truth) == 2 and set(pick) | set(truth) == {0, 1, 2, 3} and not set(pick) & set(truth)
        assert (truth, pick) in folds


def _signals():
    # three candidates in WS rank order; seeds 0-3 (dyadic values: exact means)
    val = np.array([[0.50, 0.50, 0.50, 0.50],
                    [0.875, 0.25, 0.875, 0.25],  # best on seeds 0 and 2 alone, not on a pair's mean with 1 or 3
                    [0.625, 0.625, 0.625, 0.625]])  # the best mean over any pair but (0, 2)
    test = np.array([[0.50, 0.50, 0.50, 0.50],
                     [0.25, 0.25, 0.25, 0.25],
                     [0.75, 0.75, 0.75, 0.75]])
    fresh = np.array([[0.9] * 4, [0.1] * 4, [0.1] * 4])  # one fine-tune picks WS rank 1 every draw
    return val, test, fresh


def test_rules_read_one_truth_per_fold():
    val, test, fresh = _signals()
    values = C2.rule_values([np.arange(3)], val, test, fresh)
    # standalone2 picks 2 in every fold except the one picking on (0, 2), where 1 wins: 5 x 0.75 + 0.25
    assert values["standalone2"][0] == pytest.approx((5 * 0.75 + 0.25) / 6)
    # one seed: candidate 1 on seeds 0 and 2, candidate 2 on seeds 1 and 3; each pick pair holds
    # one of each except (0, 2) (both 1) and (1, 3) (both 2)
    assert values["standalone"][0] == pytest.approx((4 * 0.5 + 0.25 + 0.75) / 6)
    assert values["single"][0] == values["ws"][0] == pytest.approx(0.5)
    assert values["oracle"][0] == pytest.approx(0.75) and values["random"][0] == pytest.approx(0.5)


def test_a_pick_never_reads_the_seeds_it_is_scored_on():
    val, test, fresh = _signals()
    group = np.arange(3)
    for pick, truth in C2.folds(4):
        moved = test.copy()
        moved[:, list(pick)] += np.array([[0.0], [1.0], [2.0]])  # the pick pair's test mIoU is not the truth
        before, after = (C2.fold_values(group, val, t, fresh, pick, truth) for t in (test, moved))
        assert {k: v for k, v in after.items() if k != "oracle"} == {k: v for k, v in before.items() if k != "oracle"}


def test_ties_go_to_the_better_ws_rank():
    val = np.full((3, 4), 0.5)
    test = np.array([[0.25] * 4, [0.75] * 4, [0.5] * 4])
    values = C2.rule_values([np.array([2, 1, 0])], val, test, np.full((3, 4), 0.5))  # WS order: row 2 first
    assert values["standalone2"][0] == values["standalone"][0] == values["single"][0] == pytest.approx(0.5)


CANDIDATES = [{"target": t, "ws_rank": r + 1, "arch": ARCHS[i], "ws_miou": 0.7 - r / 100}
              for t, order in (("t", (0, 1, 2)), ("u", (3, 1))) for r, i in enumerate(order)]


def test_study_waits_for_missing_items_and_picks_the_goal_on_seeds_2_and_3(monkeypatch, stub_candidates, stub_final_rows):
    val, test, _ = _signals()
    val, test = np.vstack([val, [[0.4] * 4]]), np.vstack([test, [[0.4] * 4]])
    items = [{"arch": a, "seed": s, "val_miou": val[i, s], "test_miou": test[i, s], "test_crack_iou": 0.3,
              "seconds": 10.0 + i} for i, a in enumerate(ARCHS) for s in C2.SEEDS]
    fresh = [{"arch": a, "replicate": k, "finetuned_miou": 0.6 + 0.01 * i * (k % 2)}
             for i, a in enumerate(ARCHS) for k in FC.FRESH_REPLICATES]
    profile = SimpleNamespace(name="p", search=SimpleNamespace(final_build=False),
                              ranking=SimpleNamespace(bootstrap_resamples=40))
    stub_final_rows({0, 1})
    stub_candidates(CANDIDATES, 16, items[:-1], fresh)
    assert C2.study(profile, None, [])["targets"] == []
    stub_candidates(CANDIDATES, 16, items, fresh)
    table = [{"arch": a, "seed": s, "val_miou": 0.5 + k * s / 100, "test_miou": 0.6 + k * s / 50}
             for k, a in enumerate("xy", 1) for s in C2.SEEDS]
    result = C2.study(profile, None, table, resamples=30)
    by_target = {r["target"]: r for r in result["targets"]}
    assert by_target["t"]["goal_arch"] == ARCHS[2] and by_target["t"]["goal_ws_rank"] == 3  # mean of seeds 2, 3
    assert by_target["t"]["train_s_standalone2"] == pytest.approx(2 * (10 + 11 + 12))
    primary = [c for c in result["contrasts"] if c["reading"] == "primary"][0]
    assert (primary["arm"], primary["control"]) == C2.PRIMARY
    assert len(result["picks"]) == 2 * len(C2.folds()) * 2
    figures = C2.figures(result)
    assert figures["choice_standalone2.goal.miou_gap_to_bench_pts.t"] == pytest.approx(0.0)
    assert figures["choice_standalone2.goal.n_within_1pt"] == 1.0  # u picks rank 2 (ARCHS[1]): 50 points below
    assert figures["choice_standalone2.standalone2.train_s_mean"] == pytest.approx((66 + 2 * (13 + 11)) / 2)
    assert "choice_standalone2.contrast.standalone2_vs_single.diff_ci95_low_pts" in figures
    assert figures["choice_standalone2.n_distinct_candidates"] == 4.0
    assert figures["choice_standalone2.train_s_distinct"] == pytest.approx(2 * (10 + 11 + 12 + 13))
    assert figures["choice_standalone2.coverage.n_sets"] == 4.0 and figures["choice_standalone2.coverage.resamples"] == 10.0
    assert figures["choice_standalone2.foresee.n_draws"] == C2.FORESEE_DRAWS and "choice_standalone2.foresee.p_pass.u" in figures


def test_the_verdict_reads_the_bias_shifted_interval():
    row = {"diff_pts": 0.03, "boot_mean_pts": 0.18, "diff_ci95_low_pts": 0.01, "diff_ci95_high_pts": 0.41,
           "verdict": "helps"}
    out = C2.shifted(row)
    assert out["diff_ci95_low_pts"] == pytest.approx(-0.14) and out["diff_ci95_high_pts"] == pytest.approx(0.26)
    assert out["verdict"] == "inconclusive" and out["raw_verdict"] == "helps" and out["raw_ci95_low_pts"] == 0.01


def test_a_fold_reading_ignores_the_truth_pairs_validation():
    val, test, fresh = _signals()
    for pick, truth in C2.folds(4):
        moved = val.copy()
        moved[:, list(truth)] = np.array([[0.0], [1.0], [2.0]])
        assert C2.fold_values(np.arange(3), moved, test, fresh, pick, truth) == \
            C2.fold_values(np.arange(3), val, test, fresh, pick, truth)


def _data(sd: float):
    val, test, fresh = _signals()
    return {"val": val, "test": test, "fresh": fresh, "groups": [np.arange(3)], "noise": (sd, sd, 0.6)}


def test_coverage_check_is_exact_without_noise_and_repeatable_with_it():
    data = _data(0.0)
    data["fresh"] = np.full((3, 4), 0.5)
    out = C2.coverage_check(data, n_sets=3, resamples=5, n_truth=3)
    assert out["coverage_raw"] == out["coverage_shifted"] == 1.0 and out["mean_width_pts"] == 0.0
    assert out["mean_estimate_pts"] == pytest.approx(out["true_diff_pts"]) and out["mean_bias_pts"] == 0.0
    noisy = _data(0.05)
    a = C2.coverage_check(noisy, n_sets=4, resamples=20, seed=3, n_truth=20)
    assert a == C2.coverage_check(noisy, n_sets=4, resamples=20, seed=3, n_truth=20)
    assert 0.0 <= a["coverage_raw"] <= 1.0 and a["mean_width_pts"] > 0.0 and a["n_sets"] == 4


def test_goal_foreseeability_draws_seed_3_around_the_known_seeds(monkeypatch):
    val, test, fresh = _signals()  # seeds 0-2 means: 0.5, 0.667, 0.625; seed 2: 0.5, 0.875, 0.625
    data = {"val": val, "test": test, "archs": ARCHS[:3], "targets": ["t", "u"],
            "groups": [np.arange(3), np.array([0, 2])]}
    goal = {"t": {"best_bench_test_miou_mean": 0.755}, "u": {"best_bench_test_miou_mean": 0.755}}
    monkeypatch.setattr(C2, "FORESEE_SD_PTS", 0.0)
    out = C2.goal_foreseeability(data, goal, n_draws=10)
    # t: candidate 1 scores (0.875 + 0.667) / 2 and fails (0.25 on seeds 0, 1); u: candidate 2 passes
    assert out["p_pass.t"] == 0.0 and out["p_pass.u"] == 1.0 and out["p_all"] == 0.0 and out["n_draws"] == 10.0
    monkeypatch.setattr(C2, "FORESEE_SD_PTS", 30.0)  # 0.3 of mIoU: seed 3 decides, both ways
    noisy = C2.goal_foreseeability(data, goal, n_draws=2000, seed=1)
    assert 0.0 < noisy["p_pass.t"] < 1.0 and noisy["p_all"] <= min(noisy["p_pass.t"], noisy["p_pass.u"])
    assert noisy == C2.goal_foreseeability(data, goal, n_draws=2000, seed=1)


def test_goal_foreseeability_reads_nan_where_no_table_architecture_fits_the_budget():
    val, test, _ = _signals()
    data = {"val": val, "test": test, "archs": ARCHS[:3], "targets": ["t", "u"], "groups": [np.arange(3), np.arange(3)]}
    out = C2.goal_foreseeability(data, {"t": {}, "u": {"best_bench_test_miou_mean": 0.755}}, n_draws=10)
    assert np.isnan(out["p_pass.t"]) and np.isnan(out["p_all"]) and 0.0 <= out["p_pass.u"] <= 1.0
