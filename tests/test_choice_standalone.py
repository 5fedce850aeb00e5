"""Study choice_standalone (notebook 09): cross-fitted picks on one standalone training, the
reference arms, both bootstraps, and clear errors for missing items."""

from types import SimpleNamespace

import numpy as np
import pytest

from linas_lib.analysis import choice_standalone as CS
from linas_lib.analysis import final_choice as FC
from linas_lib.space import arch_string

ARCHS = [arch_string([i] * 5) for i in range(5)]


def test_fold_truth_is_the_mean_of_the_other_seeds():
    test = np.array([[0.5, 0.75, 1.0]])
    assert CS.fold_truths(test).tolist() == [[0.875, 0.75, 0.625]]


def _signals():
    # four candidates in WS rank order 0-3; seeds 0-2 (dyadic values: exact means)
    test = np.array([[0.50, 0.50, 0.50],
                     [0.75, 0.25, 0.50],
                     [0.25, 0.75, 0.75],
                     [0.50, 0.50, 1.00]])
    val = np.array([[0.500, 0.500, 0.500],
                    [0.875, 0.125, 0.250],  # candidate 1 best on seed 0's validation
                    [0.250, 0.875, 0.250],  # candidate 2 on seed 1's
                    [0.250, 0.250, 0.875]])  # candidate 3 on seed 2's
    fresh = np.array([[0.5, 0.5, 0.5, 0.5],
                      [0.6, 0.6, 0.6, 0.6],
                      [0.7, 0.7, 0.7, 0.7],
                      [0.1, 0.1, 0.1, 0.1]])  # one fine-tune ranks 2, 1, 0, 3 every draw
    return val, test, fresh


def test_rules_pick_per_fold_and_score_on_the_other_seeds():
    val, test, fresh = _signals()
    truth = CS.fold_truths(test)
    values = CS.rule_values([np.arange(4)], val, test, fresh)
    # standalone: fold s picks candidate s + 1, scored on the other seeds
    assert values["standalone"][0] == pytest.approx((truth[1, 0] + truth[2, 1] + truth[3, 2]) / 3)
    # top3 by the fine-tunes is {2, 1, 0}: candidate 3 is never trained; in fold 2 seed 2's best of them is 1
    assert values["standalone_top3"][0] == pytest.approx((truth[1, 0] + truth[2, 1] + truth[1, 2]) / 3)
    assert values["single"][0] == pytest.approx(truth[2].mean())  # the fine-tune always picks 2
    assert values["ws"][0] == pytest.approx(truth[0].mean())
    # oracle picks on the fold's own test seed: 1 on seed 0, 2 on seed 1, 3 on seed 2
    assert values["oracle"][0] == pytest.approx((truth[1, 0] + truth[2, 1] + truth[3, 2]) / 3)
    assert values["random"][0] == pytest.approx(truth.mean())


def test_ties_go_to_the_better_ws_rank():
    val = np.full((3, 3), 0.5)
    test = np.array([[0.5] * 3, [0.75] * 3, [0.25] * 3])
    fresh = np.full((3, 4), 0.5)
    picks = CS.picks(np.array([2, 0, 1]), val, fresh)  # WS order: row 2 first
    assert (picks["standalone"] == 2).all() and (picks["single"] == 2).all() and (picks["ws"] == 2).all()
    assert CS.rule_values([np.array([2, 0, 1])], val, test, fresh)["standalone"][0] == pytest.approx(0.25)


def test_top3_keeps_the_three_best_fine_tunes_and_breaks_validation_ties_by_ws_rank():
    val = np.array([[0.5] * 3, [0.5] * 3, [0.5] * 3, [0.9] * 3])  # 1 and 2 tie on validation; 3 is never trained
    test = np.array([[0.5] * 3, [0.75] * 3, [0.25] * 3, [1.0] * 3])
    fresh = np.array([[0.1] * 4, [0.5] * 4, [0.6] * 4, [0.05] * 4])  # the top 3 by fine-tune: 2, 1, 0
    picks = CS.picks(np.arange(4), val, fresh)
    assert (picks["standalone_top3"] == 0).all()  # 0, 1, 2 tie on validation: WS rank 1, not the best fine-tune (2)
    assert (picks["standalone"] == 3).all() and (picks["single"] == 2).all()


def test_noise_ci_is_degenerate_without_noise_and_repeatable_with_it():
    val, test, fresh = _signals()
    groups = [np.arange(4)]
    # no noise: every resample picks from the seed means alone (val means: candidate 1, 0.4167, ... )
    ci = CS.noise_ci(groups, val, test, fresh, 0.0, 0.0, 0.0, [("single", "ws")], resamples=20)
    means = test.mean(axis=1)
    assert ci[("single", "ws")] == pytest.approx((means[2] - means[0],) * 3)
    # standalone picks the best validation mean (candidate 0) in every fold; single picks 2
    ci = CS.noise_ci(groups, val, test, fresh, 0.0, 0.0, 0.0, [CS.PRIMARY], resamples=20)
    assert ci[CS.PRIMARY] == pytest.approx((means[0] - means[2],) * 3)
    a = CS.noise_ci(groups, val, test, fresh, 0.05, 0.05, 0.6, [CS.PRIMARY], seed=4, resamples=100)
    b = CS.noise_ci(groups, val, test, fresh, 0.05, 0.05, 0.6, [CS.PRIMARY], seed=4, resamples=100)
    assert a == b and a[CS.PRIMARY][0] < a[CS.PRIMARY][2] < a[CS.PRIMARY][1]


def test_noise_ci_draws_validation_and_test_with_the_given_sds_and_correlation(monkeypatch):
    drawn = []
    real = CS.rule_values

    def capture(groups, val, test, fresh):
        drawn.append((val.copy(), test.copy()))
        return real(groups, val, test, fresh)

    monkeypatch.setattr(CS, "rule_values", capture)
    n = 400
    CS.noise_ci([np.arange(n)], np.zeros((n, 3)), np.ones((n, 3)), np.zeros((n, 4)), 0.1, 0.2, 0.6,
                [CS.PRIMARY], resamples=1)
    val, test = drawn[0]
    assert val.std() == pytest.approx(0.1, rel=0.1) and test.std() == pytest.approx(0.2, rel=0.1)
    assert test.mean() == pytest.approx(1.0, abs=0.03)
    assert np.corrcoef(val.ravel(), test.ravel())[0, 1] == pytest.approx(0.6, abs=0.08)


def test_cluster_ci_resamples_clusters_and_reproduces_the_target_mean():
    diff = np.array([1.0, 1.0, 0.0, 2.0, -1.0])
    labels = np.array([0, 0, 1, 2, 3])
    low, high = CS.cluster_ci(diff, labels, resamples=500)
    assert low < diff.mean() < high and -1.0 <= low and high <= 2.0
    assert CS.cluster_ci(np.array([0.5, 0.5, 0.5]), np.array([0, 1, 1])) == (0.5, 0.5)
    assert CS.cluster_ci(diff, labels, seed=2, resamples=300) == CS.cluster_ci(diff, labels, seed=2, resamples=300)
    # one cluster of 9 targets at 1, three of one target at 0: weighted by targets a resample with
    # two copies of the big cluster reads 0.9 (a mean of cluster means would read 0.5)
    big = np.array([1.0] * 9 + [0.0] * 3)
    low, high = CS.cluster_ci(big, np.array([0] * 9 + [1, 2, 3]), resamples=2000)
    assert low == 0.0 and high > 0.85


def test_correlation_of_residuals_leaves_out_the_candidates_and_single_seeds():
    rows = [{"arch": a, "seed": s, "val_miou": v, "test_miou": t}
            for a, pts in (("p", ((0.5, 0.6), (0.7, 0.8))), ("q", ((0.4, 0.45), (0.2, 0.25))),
                           ("r", ((0.1, 0.9), (0.9, 0.1))), ("s", ((0.3, 0.3),)))
            for s, (v, t) in enumerate(pts)]
    assert CS.correlation_of_residuals(rows, {"r"}) == pytest.approx(1.0)
    assert CS.correlation_of_residuals(rows, set()) < 0.5  # r's validation and test move apart
    assert np.isnan(CS.correlation_of_residuals(rows, {"p", "q", "r"}))  # only a single-seed architecture left


def test_seed_matrix_names_the_missing_item():
    rows = [{"arch": ARCHS[0], "seed": s, "val_miou": 0.5} for s in (0, 1)]
    with pytest.raises(ValueError, match=f"no seed-2 item of candidate {ARCHS[0]}.*bench candidates --seeds 2"):
        CS.seed_matrix(rows, ARCHS[:1], "val_miou")
    rows.append({"arch": ARCHS[0], "seed": 2, "val_miou": float("nan")})
    with pytest.raises(ValueError, match=f"val_miou of {ARCHS[0]} seed 2 is nan, not a number"):
        CS.seed_matrix(rows, ARCHS[:1], "val_miou")


CANDIDATES = [{"target": t, "ws_rank": r + 1, "arch": ARCHS[i], "ws_miou": 0.7 - r / 100}
              for t, order in (("t", (0, 1, 2, 3)), ("u", (4, 1))) for r, i in enumerate(order)]


def test_study_waits_for_missing_items_and_reads_what_exists(monkeypatch, stub_candidates, stub_final_rows):
    val, test, _ = _signals()
    extra = np.array([[0.4, 0.45, 0.5]])
    val, test = np.vstack([val, extra]), np.vstack([test, extra])
    items = [{"arch": a, "seed": s, "val_miou": val[i, s], "test_miou": test[i, s], "test_crack_iou": 0.3,
              "seconds": 10.0 + i} for i, a in enumerate(ARCHS) for s in CS.SEEDS]
    fresh = [{"arch": a, "replicate": k, "finetuned_miou": 0.6 + 0.01 * i * (k % 2)}
             for i, a in enumerate(ARCHS) for k in FC.FRESH_REPLICATES]
    profile = SimpleNamespace(name="p", search=SimpleNamespace(final_build=False))
    stub_final_rows()
    stub_candidates(CANDIDATES, 15, items[:-1], fresh)
    assert CS.study(profile, None, [])["targets"] == []
    stub_candidates(CANDIDATES, 15, items, fresh)
    table = [{"arch": a, "seed": s, "val_miou": 0.5 + k * s / 100, "test_miou": 0.6 + k * s / 50}
             for k, a in enumerate("xy", 1) for s in (0, 1)]
    result = CS.study(profile, None, table, resamples=30)
    by_target = {r["target"]: r for r in result["targets"]}
    assert by_target["t"]["goal_arch"] == ARCHS[3] and by_target["t"]["goal_ws_rank"] == 4  # best on seed 2's val
    assert by_target["t"]["train_s_standalone"] == pytest.approx(10 + 11 + 12 + 13)
    assert result["status"]["rho"] == pytest.approx(1.0) and result["status"]["n_distinct_decisions"] == 2.0
    primary = [c for c in result["contrasts"] if c["reading"] == "primary"][0]
    assert (primary["arm"], primary["control"]) == CS.PRIMARY
    assert len(result["picks"]) == 2 * len(CS.SEEDS) * 2
    figures = CS.figures(result)
    assert figures["choice_standalone.goal.miou_gap_to_bench_pts.t"] == pytest.approx(100 * (0.75 - 0.5))
    assert figures["choice_standalone.random.n_within_1pt"] == 0.0
    assert np.isfinite(figures["choice_standalone.tau_truth_val.mean"])
