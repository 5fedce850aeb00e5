"""What notebooks 01/02 compute: accuracy metrics, summary layout, feasible shares, targets."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from linas_lib.config import load_profile
from linas_lib.latency import lut as L
from linas_lib.latency import predict as P
from linas_lib.latency import report as R
from linas_lib.latency import targets as T
from linas_lib.notebook import flatten
from linas_lib.space import N_ARCHS, N_CHOICES, N_LAYERS
from test_latency_lut import fake_lut


def test_accuracy_metrics_known_values():
    measured = np.array([100.0, 200.0, 100.0, 50.0])
    predicted = np.array([104.0, 180.0, 100.0, 56.0])  # +4 %, -10 %, 0 %, +12 %
    m = R.accuracy_metrics(predicted, measured)
    assert m["n"] == 4
    assert m["mape_pct"] == pytest.approx((4 + 10 + 0 + 12) / 4)
    assert m["mae_ms"] == pytest.approx((4 + 20 + 0 + 6) / 4)
    assert m["within5_pct"] == pytest.approx(50.0)
    assert m["within10_pct"] == pytest.approx(75.0)
    assert m["bias_pct"] == pytest.approx((4 - 10 + 0 + 12) / 4)


def test_summary_has_every_target_and_variant():
    luts = {"t1": fake_lut(target="t1", calibrated=True), "t2": fake_lut(target="t2", calibrated=True)}
    models = {v: P.model_from_luts(luts, {"t1": 1.0, "t2": 1.0}, v) for v in P.PREDICT_VARIANTS}
    archs = np.random.default_rng(0).integers(0, N_CHOICES, size=(6, N_LAYERS))
    measured = {"t1": models["projected"].predict(archs)[:, 0], "t2": np.full(6, 1000.0)}
    rows, preds = R.accuracy_rows(models, archs, measured)
    assert len(rows) == 2 * len(P.PREDICT_VARIANTS) and len(preds) == len(rows)
    flat = flatten(R.summary_figures(rows))
    for target in ("t1", "t2"):
        for variant in P.PREDICT_VARIANTS:
            assert f"mape_pct.{target}.{variant}" in flat and f"within5_pct.{target}.{variant}" in flat
    assert flat["mape_pct.t1.projected"] == pytest.approx(0.0)
    assert flat["within5_pct.t1.projected"] == 100.0 and flat["within5_pct.t2.projected"] == 0.0
    samples = {"t1": np.array([[[100.0] * 2, [110.0] * 2, [110.0] * 2]])}
    flat = flatten(R.summary_figures(R.floor_rows(samples)))
    assert flat["mape_pct_min.t1.test_retest"] == pytest.approx(0.0) and flat["mape_pct_max.t1.test_retest"] == pytest.approx(10.0)
    assert {"split_half_mape_pct.t1", "pooled_noise_est_pct.t1", "mape_pct.t1.test_retest"} <= set(flat)


def test_validation_archs_deterministic_distinct_in_range():
    a = R.validation_archs(np.random.default_rng(5), 50)
    b = R.validation_archs(np.random.default_rng(5), 50)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, N_LAYERS) and a.min() >= 0 and a.max() < N_CHOICES
    assert len({tuple(x) for x in a}) == 50


def test_feasible_share_counts_all_archs():
    lut = fake_lut()
    # projected: 150 + sum_l (1.5 + l + c_l / 100) = 167.5 + sum(c)/100; budget 168.005 -> sum(c) <= 50
    model = P.model_from_luts({"x": lut}, {"x": 168.005}, "projected")
    share = R.feasible_share(model)["x"]
    assert share["min_ms"] == pytest.approx(167.5) and share["max_ms"] == pytest.approx(168.5)
    counts = np.zeros(N_CHOICES * N_LAYERS)  # number of 5-tuples in 0..20 summing to s
    counts[:N_CHOICES] = 1
    ways = counts.copy()
    for _ in range(N_LAYERS - 1):
        ways = np.convolve(ways, counts[:N_CHOICES])[: len(counts)]
    assert share["feasible_share"] == pytest.approx(ways[:51].sum() / N_ARCHS)


def test_target_rows_report_unmeasured_gpu_targets():
    rows = {r["target"]: r for r in R.target_rows(load_profile("full"))}
    for name in ("cuda-fp32", "cuda-fp16", "cuda-fp32-graph", "cuda-fp16-graph"):
        assert rows[name]["kind"] == "gpu"
        assert rows[name]["status"] in ("measured", "not measured")
    assert {rows[n]["kind"] for n in ("cpu-torch-1t", "cpu-ort-2t")} == {"local"}


def test_heatmap_matrix_shape():
    matrix, keys = R.heatmap_matrix(fake_lut())
    assert matrix.shape == (N_LAYERS, N_CHOICES) and keys[0] == "Conv3x3_w50" and keys[-1] == "EdgeConv_w100"


def test_quantile_budgets_bind_and_fixed_budgets_kept():
    from linas_lib.config import LatencyConfig, Profile, TargetConfig
    from linas_lib.space import all_archs

    profile = Profile(name="t", latency=LatencyConfig(targets=(
        TargetConfig("a", 1.0, budget_quantile=0.3), TargetConfig("b", 7.0))))
    luts = {"a": fake_lut(target="a"), "b": fake_lut(target="b")}
    budgets = T.profile_budgets(profile, luts)
    assert budgets["b"] == 7.0
    pred = P.model_from_luts(luts, budgets, "interaction").predict(all_archs()[::7])[:, 0]
    assert 0.3 <= np.mean(pred <= budgets["a"]) < 0.33  # ties of the fake LUT: at least the quantile
    models = R.models_for(profile, luts)
    assert all(m.budgets_ms[0] == budgets["a"] for m in models.values())


def test_quantile_budget_is_read_off_the_calibrated_prediction_when_every_lut_has_a_block():
    from linas_lib.config import LatencyConfig, Profile, TargetConfig
    from linas_lib.space import all_archs

    profile = Profile(name="t", latency=LatencyConfig(targets=(
        TargetConfig("a", 1.0, budget_quantile=0.3), TargetConfig("b", 7.0))))
    plain = T.profile_budgets(profile, {"a": fake_lut(target="a"), "b": fake_lut(target="b")})
    luts = {"a": fake_lut(target="a", calibrated=True), "b": fake_lut(target="b", calibrated=True)}
    budgets = T.profile_budgets(profile, luts)
    assert budgets["b"] == 7.0
    assert budgets["a"] == pytest.approx(2 * plain["a"] + 3)  # the fake block: ms = 2 * interaction + 3
    pred = P.model_from_luts(luts, budgets, "calibrated").predict(all_archs()[::7])[:, 0]
    assert 0.3 <= np.mean(pred <= budgets["a"]) < 0.33  # the same feasible set, in the calibrated frame
    mixed = {"a": fake_lut(target="a", calibrated=True), "b": fake_lut(target="b")}
    assert T.profile_budgets(profile, mixed)["a"] == plain["a"]  # models_for's rule: every LUT or none
    assert "calibrated" not in R.models_for(profile, mixed)


def test_latency_model_refuses_another_variant_against_calibrated_budgets(monkeypatch):
    from linas_lib.config import LatencyConfig, Profile, TargetConfig

    profile = Profile(name="t", latency=LatencyConfig(targets=(TargetConfig("a", 1.0, budget_quantile=0.5),)))
    monkeypatch.setattr(T, "load_luts", lambda *args, **kwargs: {"a": fake_lut(target="a", calibrated=True)})
    assert T.latency_model(profile, "calibrated").budgets_ms[0] > 0
    with pytest.raises(ValueError, match="calibration blocks.*'interaction'.*ask for variant 'calibrated'"):
        T.latency_model(profile, "interaction")


def test_calibration_corrects_the_base_that_errs_least_on_a_left_out_anchor():
    lut = fake_lut(target="t")
    bases = {v: P.model_from_luts({"t": lut}, {"t": 1.0}, v) for v in L.CALIBRATION_BASES}
    anchors = np.array([[0, 1, 0, 0, 0], [3] * 5, [6] * 5, [9] * 5])  # the first has a measured pair (+0.4 ms)
    two = {v: bases[v] for v in ("op_only", "interaction")}  # projected = op_only + a constant here: a tie
    for truth_base in two:
        truth = {"t": 2 * bases[truth_base].predict(anchors)[:, 0] + 5}
        (cal,) = R.calibrate_luts({"t": lut}, two, anchors, truth).values()
        assert cal["calibration"]["base"] == truth_base
        assert (cal["calibration"]["slope"], cal["calibration"]["intercept"]) == pytest.approx((2.0, 5.0))
    # two anchors leave nothing to leave out: the last variant given
    truth = {"t": 2 * bases["op_only"].predict(anchors[1:3])[:, 0] + 5}
    (cal,) = R.calibrate_luts({"t": lut}, bases, anchors[1:3], truth).values()
    assert cal["calibration"]["base"] == "interaction"


def test_calibration_spread_is_the_leave_one_out_error():
    block = {"anchor_base_ms": [100.0, 150.0, 200.0, 250.0], "anchor_ms": [213.0, 313.0, 413.0, 513.0]}
    assert L.calibration_spread(block) == pytest.approx(0.0, abs=1e-9)  # exactly affine: no error left out
    # three anchors: each left-out fit is the line through the other two (10, 20, 32 ms at 1, 2, 3)
    errors = [8 / 10 - 1, 21 / 20 - 1, 30 / 32 - 1]
    three = {"anchor_base_ms": [1.0, 2.0, 3.0], "anchor_ms": [10.0, 20.0, 32.0]}
    assert L.calibration_spread(three) == pytest.approx(np.sqrt(np.mean(np.square(errors))))
    assert np.isnan(L.calibration_spread({"anchor_base_ms": [1.0, 2.0], "anchor_ms": [3.0, 5.0]}))


def test_i4_calibrated_effect_pairs_the_two_calibrated_bases_on_the_held_out_archs():
    profile = load_profile("smoke")
    luts = {t.name: fake_lut(target=t.name) for t in R.local_targets(profile)}
    interaction = R.models_for(profile, luts)["interaction"]
    rng = np.random.default_rng(0)
    paired = [[0, 1, k, k, k] for k in (7, 8, 9, 10)]  # slot 0 holds a measured interaction
    anchors, archs = rng.integers(0, 21, (6, 5)), np.vstack([paired, rng.integers(0, 21, (8, 5))])
    every = np.concatenate([anchors, archs])
    truth = 2 * interaction.predict(every) + 3  # the pipeline is the interaction sum, rescaled
    samples = {t: np.repeat(truth[:, j, None, None], 2, 1).repeat(3, 2) for j, t in enumerate(interaction.target_names)}
    rows = R.i4_calibrated_effect(profile, luts, anchors, archs, samples)
    assert [r["target"] for r in rows] == list(samples) and all(r["n"] == len(archs) for r in rows)
    for r in rows:
        assert r["mape_pct_interaction"] == pytest.approx(0.0, abs=1e-9), "the true model calibrates exactly"
        assert r["mape_pct_projected"] > 0 and r["mape_pct_interaction_minus_projected"] < 0
        assert r["ci95_low"] <= r["mape_pct_interaction_minus_projected"] <= r["ci95_high"]


def test_models_for_offers_calibrated_only_when_every_lut_has_a_block():
    profile = load_profile("smoke")
    luts = {t.name: fake_lut(target=t.name) for t in R.local_targets(profile)}
    assert "calibrated" not in R.models_for(profile, luts)
    luts = {n: fake_lut(target=n, calibrated=True) for n in luts}
    assert "calibrated" in R.models_for(profile, luts)


def test_floor_and_ground_truth_from_passes():
    # 2 archs x 2 passes x 3 runs; pass 2 is 10 % slower than pass 1 for both
    samples = {"t": np.array([[[100.0, 100.0, 100.0], [110.0, 110.0, 110.0]],
                              [[200.0, 200.0, 200.0], [220.0, 220.0, 220.0]]])}
    np.testing.assert_allclose(R.pass_values(samples)["t"], [[100, 110], [200, 220]])
    np.testing.assert_allclose(R.ground_truth(samples)["t"], [105.0, 210.0])
    (row,) = R.floor_rows(samples)
    assert row["variant"] == "test_retest" and row["mape_pct"] == pytest.approx(10.0) and row["n"] == 2
    assert row["n_pairs"] == 1 and row["split_half_mape_pct"] == pytest.approx(10.0)
    assert row["pooled_noise_est_pct"] == pytest.approx(5.0)  # two passes: half their difference
    assert R.floor_rows({"t": samples["t"][:, :1]}) == []  # one pass: no floor


def test_floor_averages_every_pair_of_passes_and_shows_their_range():
    # 1 arch x 4 passes: the machine ran 10 % slower after pass 1 (a step, as on 02 at 8f12913)
    samples = {"t": np.array([[[100.0] * 3, [110.0] * 3, [110.0] * 3, [110.0] * 3]])}
    (row,) = R.floor_rows(samples)
    # pairs (1,2), (1,3), (1,4) are 10 % apart, (2,3), (2,4), (3,4) agree
    assert row["n_pairs"] == 6 and row["mape_pct"] == pytest.approx(5.0)
    assert (row["mape_pct_min"], row["mape_pct_max"]) == (pytest.approx(0.0), pytest.approx(10.0))
    # every split in halves puts pass 1 with a 110 pass: 110 predicts the median of 100s and 110s, 105
    assert row["split_half_mape_pct"] == pytest.approx(100 * 5 / 105)
    assert row["pooled_noise_est_pct"] == pytest.approx(row["split_half_mape_pct"] / 2)


def test_the_floor_divides_out_each_splits_shared_speed_change():
    # 5 archs x 2 passes: the second pass 10 % slower for all (a speed change a calibration
    # absorbs) times 0.88 / 0.96 / 1 / 1.04 / 1.12 per architecture (noise); pooled over both, a
    # perfect predictor errs by half the noise: 6 / 2 / 0 / 2 / 6 %, so 3 of 5 within 5 %
    noise = np.array([0.88, 0.96, 1.0, 1.04, 1.12])
    samples = {"t": np.stack([np.full((5, 3), 100.0), 110.0 * noise[:, None] * np.ones((5, 3))], axis=1)}
    (row,) = R.floor_rows(samples)
    assert row["pooled_noise_est_pct"] == pytest.approx(100 * np.mean(np.abs(1.1 * noise - 1)) / 2), "shift included"
    assert row["floor_mape_pct"] == pytest.approx(100 * np.mean(np.abs(noise - 1)) / 2), "shift divided out"
    assert row["floor_within5_pct"] == pytest.approx(60.0)
    assert row["floor_mape_pct_ci95_low"] <= row["floor_mape_pct"] <= row["floor_mape_pct_ci95_high"]
    assert R.summary_figures([row])["floor_within5_pct"] == {"t": pytest.approx(60.0)}
    (same,) = R.floor_rows({"t": samples["t"] * np.array([1.0, 1.3])[None, :, None]})
    assert same["floor_mape_pct"] == pytest.approx(row["floor_mape_pct"]), "a larger shared change: the same floor"


def test_accuracy_ci_brackets_mape_and_within5_over_architectures():
    measured = np.full(50, 100.0)
    predicted = measured * (1 + np.linspace(-0.1, 0.1, 50))
    ci = R.accuracy_ci(predicted, measured)
    metrics = R.accuracy_metrics(predicted, measured)
    assert ci["mape_pct_ci95_low"] < metrics["mape_pct"] < ci["mape_pct_ci95_high"]
    assert ci["within5_pct_ci95_low"] < metrics["within5_pct"] < ci["within5_pct_ci95_high"]
    assert ci == R.accuracy_ci(predicted, measured), "seeded: the same interval every time"
    exact = R.accuracy_ci(measured[:100].repeat(2), measured[:100].repeat(2))  # 100 of 100 within
    assert exact["within5_pct_ci95_high"] == 100.0 and exact["within5_pct_ci95_low"] == pytest.approx(96.38, abs=0.01), (
        "Clopper-Pearson: 100 of 100 is not a certain 100 %")
    assert exact["mape_pct_ci95_low"] == exact["mape_pct_ci95_high"] == 0.0
    assert math.isnan(R.accuracy_ci(predicted[:1], measured[:1])["mape_pct_ci95_low"]), "no CI from one architecture"


def test_split_half_averages_every_split_of_the_passes():
    # a step after pass 2: only the split {1, 2} | {3, 4} sees it (10 %), {1, 3} | {2, 4} and {1, 4} | {2, 3} not
    runs = np.array([[[100.0] * 3, [100.0] * 3, [110.0] * 3, [110.0] * 3]])
    assert R.split_half_mape(runs) == pytest.approx(10 / 3)
    # 3 passes: {1, 2} | {3} and {1, 3} | {2} compare 110 with 105, {2, 3} | {1} 110 with 100
    runs = np.array([[[100.0] * 3, [110.0] * 3, [110.0] * 3]])
    assert R.split_half_mape(runs) == pytest.approx((2 * 100 * 5 / 105 + 10) / 3)
    (row,) = R.floor_rows({"t": runs})
    assert row["pooled_noise_est_pct"] == pytest.approx(row["split_half_mape_pct"] * R.pooled_share(2, 1))


def test_pooled_share_scales_a_difference_of_pooled_halves_to_the_whole():
    assert R.pooled_share(1, 1) == pytest.approx(0.5) and R.pooled_share(2, 2) == pytest.approx(0.5)
    # 3 passes split 2 / 1: var(A - B) = 1/2 + 1, var(all) = 1/3
    assert R.pooled_share(2, 1) == pytest.approx(np.sqrt((1 / 3) / 1.5))


def test_drift_follows_the_measurement_order():
    # the machine was 10 % slower during pass 2 (the second half of the sequence)
    samples = {"t": np.array([[[100.0, 100.0, 100.0], [110.0, 110.0, 110.0]],
                              [[200.0, 200.0, 200.0], [220.0, 220.0, 220.0]]])}
    orders = R.measurement_orders(np.random.default_rng(0), 2, 2)
    assert sorted(orders[0].tolist()) == [0, 1] and len(orders) == 2
    rows = R.drift_rows(samples, orders, blocks=2)
    assert [r["block"] for r in rows] == [0, 1] and [r["n"] for r in rows] == [2, 2]
    np.testing.assert_allclose([r["median_ratio"] for r in rows], [100 / 105, 110 / 105])
    assert R.drift_figures(rows)["drift_range_pct"]["t"] == pytest.approx(100 * 10 / 105)
    assert R.drift_figures([]) == {}


def test_drift_correction_removes_a_speed_change_shared_by_co_timed_targets():
    # 3 targets x 3 archs x 2 passes x 4 runs; the machine runs at a different speed for each
    # (arch, pass), which scales every target timed then alike: the corrected floor is 0
    rng = np.random.default_rng(0)
    speed = rng.uniform(0.8, 1.25, size=(3, 2))
    base = {"a": [100.0, 150.0, 90.0], "b": [50.0, 70.0, 65.0], "c": [30.0, 20.0, 45.0]}
    samples = {t: np.array(v)[:, None, None] * speed[:, :, None] * np.ones((3, 2, 4)) for t, v in base.items()}
    assert R.floor_rows(samples)[0]["mape_pct"] > 1.0
    corrected = R.drift_corrected(samples)
    assert set(corrected) == set(samples) and all(c.shape == (3, 2, 4) for c in corrected.values())
    assert all(r["mape_pct"] == pytest.approx(0.0, abs=1e-9) for r in R.floor_rows(corrected))
    # a target's own deviation is not divided away: only the others' speed reading is used
    samples["a"][0, 1] *= 1.5
    assert R.floor_rows(R.drift_corrected(samples))[0]["mape_pct"] > 10.0
    assert R.drift_corrected({"a": samples["a"]}) == {}  # nothing timed alongside: no correction


def test_anchors_spread_over_the_range_and_avoid_validation_archs():
    model = P.model_from_luts({"t": fake_lut(target="t")}, {"t": 1.0}, "projected")
    anchors = R.anchor_archs(model, np.random.default_rng(0), 5, sample=500)
    again = R.anchor_archs(model, np.random.default_rng(0), 5, sample=500)
    np.testing.assert_array_equal(anchors, again)
    pred = model.predict(anchors)[:, 0]
    assert np.all(np.diff(pred) >= 0) and pred[-1] > pred[0]
    archs = R.validation_archs(np.random.default_rng(1), 30, exclude=anchors)
    assert len(archs) == 30 and not {tuple(a) for a in archs} & {tuple(a) for a in anchors}


def test_budget_rows_count_predicted_feasible_that_measure_over():
    model = P.model_from_luts({"t": fake_lut(target="t")}, {"t": 168.0}, "projected")
    archs = np.array([[0] * 5, [1] * 5, [20] * 5])
    pred = model.predict(archs)[:, 0]  # 167.5, 167.55 and 168.5 ms: the first two within 168 ms
    assert (pred <= 168.0).tolist() == [True, True, False]
    (row,) = R.budget_rows({"projected": model}, archs, {"t": np.array([150.0, 170.0, 100.0])})
    assert (row["n_predicted_within"], row["n_measured_over"], row["measured_over_pct"]) == (2, 1, 50.0)
    assert row["measured_over_ci95_low"] == pytest.approx(1.258, abs=1e-3)  # Clopper-Pearson, 1 of 2
    assert row["measured_over_ci95_high"] == pytest.approx(98.742, abs=1e-3)
    none = R.budget_rows({"projected": model}, archs[2:], {"t": np.array([100.0])})[0]
    assert none["n_predicted_within"] == 0 and math.isnan(none["measured_over_pct"])
    flat = R.budget_figures([row, none | {"target": "u"}])
    assert flat["measured_over_budget_n"] == {"t": {"projected": 2}, "u": {"projected": 0}}, "n = 0 is written"
    assert "u" not in flat["measured_over_budget_pct"] and flat["measured_over_budget_pct"]["t"]["projected"] == 50.0


def test_guarded_budget_rows_count_only_predictions_within_by_the_margin():
    model = P.model_from_luts({"t": fake_lut(target="t")}, {"t": 168.0}, "projected")
    archs = np.array([[0] * 5, [1] * 5, [20] * 5])  # 167.5, 167.55 and 168.5 ms
    truth = {"t": np.array([150.0, 170.0, 100.0])}
    plain, guarded = R.budget_rows({"calibrated": model}, archs, truth, {"t": 0.0029})
    assert (plain["variant"], plain["guard_pct"], plain["n_predicted_within"]) == ("calibrated", 0.0, 2)
    assert guarded["variant"] == "calibrated_guarded" and guarded["guard_pct"] == pytest.approx(0.29)
    # 167.5 / (1 - 0.0029) <= 168 < 167.55 / (1 - 0.0029): only the first, which measures within
    assert (guarded["n_predicted_within"], guarded["n_measured_over"], guarded["measured_over_pct"]) == (1, 0, 0.0)
    assert len(R.budget_rows({"projected": model}, archs, truth, {"t": 0.0029})) == 1  # calibrated rows only


def test_pair_holdout_scores_the_slot_mean_leave_one_out():
    (row,) = R.pair_holdout_rows({"t": fake_lut(target="t")})  # only slot 0 has two measured pairs
    assert (row["slot"], row["n_pairs"]) == (0, 2)
    assert row["loo_rmse_slot_mean_ms"] == pytest.approx(0.2)  # 0.4 predicted by 0.2 and vice versa
    assert row["rmse_zero_ms"] == pytest.approx(np.sqrt((0.4 ** 2 + 0.2 ** 2) / 2))
    assert np.isnan(row["noise_se_ms"])  # no interleaved singles recorded in the fake


def test_goal_columns_follow_the_thread_count():
    good = {"mape_pct": 1.5, "within5_pct": 99.5}
    assert R.goal_columns("cpu-torch-1t", good)["meets_goal"]
    assert not R.goal_columns("cpu-ort-1t", {"mape_pct": 1.5, "within5_pct": 95.0})["meets_goal"]
    assert R.goal_columns("cpu-ort-2t", {"mape_pct": 4.9, "within5_pct": 10.0})["meets_goal"]
    assert R.goal_columns("t1", good) == {}


def test_warm_control_arm_builds_the_luts_with_evict_mib_zero(monkeypatch):
    smoke = load_profile("smoke")
    assert smoke.latency.measure.evict_mib > 0 and R.lut_timing(smoke) == f"evicted_{smoke.latency.measure.evict_mib}mib"
    seen = {}

    def fake_load(profile, here=False, progress=True):
        seen["evict_mib"], seen["here"] = profile.latency.measure.evict_mib, here
        return {"lut": "warm"}

    def fake_score(profile, luts, anchors, archs, samples):
        return {"cpu-torch-1t": luts}, {}, {"accuracy": ["acc"], "measurements": ["meas"], "budgets": ["b"]}

    monkeypatch.setattr(R.T, "load_luts", fake_load)
    monkeypatch.setattr(R, "score_predictors", fake_score)
    calibrated, tables = R.warm_lut_scores(smoke, None, None, None)
    assert seen == {"evict_mib": 0, "here": True}  # this machine's LUTs, timed warm
    assert calibrated == {"cpu-torch-1t": {"lut": "warm"}} and tables == {"accuracy": ["acc"], "measurements": ["meas"]}
    warm = R.warm_profile(smoke)
    assert R.warm_lut_scores(warm, None, None, None) == ({}, {"accuracy": [], "measurements": []})
    assert R.lut_timing(warm) == "warm"


def test_anchor_designs_recalibrate_every_half_design_as_calibrate_luts_does():
    rng = np.random.default_rng(0)
    base = np.linspace(100.0, 200.0, 8)
    measured = 1.1 * base + 5 + rng.normal(0, 1.0, 8)
    measured[7] -= 12.0  # a large anchor well below the line: it sets the slope of the designs that keep it
    held = np.linspace(105.0, 195.0, 30)

    def row(i, role, b, m):  # op_only is the sum the truth follows; the others are bent away from it
        return {"arch": f"{role}{i}", "target": "t", "role": role, "measured_ms": m,
                **{f"pred_{v}_ms": b * (1.0 if v == "op_only" else 1 + 0.05 * np.sin(i + len(v))) for v in L.CALIBRATION_BASES}}

    rows = [row(i, "anchor", b, m) for i, (b, m) in enumerate(zip(base, measured))]
    rows += [row(i, "held_out", b, 1.1 * b + 5) for i, b in enumerate(held)]
    (out,) = R.anchor_design_rows(rows, np.random.default_rng(0))
    assert out["n_anchors"] == 8 and out["n_designs"] == 16  # one of each pair (0, 1), (2, 3), (4, 5), (6, 7)
    slope, intercept, _ = L._affine_fit(base, measured)
    truth = 1.1 * held + 5
    assert out["base"] == "op_only", "the sum that errs least on a left-out anchor"
    assert out["mape_pct"] == pytest.approx(np.mean(np.abs((slope * held + intercept) / truth - 1)) * 100)
    even = L._affine_fit(base[::2], measured[::2])
    assert out["half_even_mape_pct"] == pytest.approx(np.mean(np.abs((even[0] * held + even[1]) / truth - 1)) * 100)
    assert 0.0 <= out["half_share_below_all"] <= 1.0
    assert out["half_mape_pct_p2_5"] <= out["half_mape_pct_median"] <= out["half_mape_pct_p97_5"]
    assert R.anchor_design_rows(rows[:3] + rows[8:], np.random.default_rng(0)) == [], "fewer than 4 anchors"
    (odd,) = R.anchor_design_rows(rows[:7] + rows[8:], np.random.default_rng(0))  # 7 anchors: 3 pairs + the last
    last = L._affine_fit(base[[0, 2, 4, 6]], measured[[0, 2, 4, 6]])
    assert odd["n_designs"] == 8 and odd["half_even_mape_pct"] == pytest.approx(
        np.mean(np.abs((last[0] * held + last[1]) / truth - 1)) * 100), "the unpaired anchor is in every design"
    figures = R.anchor_design_figures([out])
    assert figures["mape_pct"] == {"t": out["mape_pct"]} and "base" not in figures and R.anchor_design_figures([]) == {}


def test_paired_mape_effect_names_its_arms():
    rows = [{"target": "t", "arch": a, "role": "held_out", "measured_ms": 100.0, "pred_calibrated_ms": p}
            for a, p in (("a", 101.0), ("b", 102.0))]
    worse = [{**r, "pred_calibrated_ms": r["pred_calibrated_ms"] + 2.0} for r in rows]
    (row,) = R.paired_mape_effect(rows, worse, ("all_anchors", "half_anchors"), n_resamples=100)
    assert row["mape_pct_all_anchors"] == pytest.approx(1.5) and row["mape_pct_half_anchors"] == pytest.approx(3.5)
    assert row["mape_pct_half_anchors_minus_all_anchors"] == pytest.approx(2.0)


def test_calibration_rows_list_each_timing_and_measured_target():
    smoke = load_profile("smoke")
    block = {"base": "projected", "fit": "affine", "slope": 1.1, "intercept": -2.0, "anchors": ["a"]}
    built = {"timestamp": "2026-12-03T12:00:00+00:00", "git_sha": "abc"}
    evicted = {"cpu-ort-1t": {"calibration": block, "provenance": built}, "rtx4090": {}}
    warm = {"cpu-ort-1t": {"calibration": {**block, "slope": 1.3}}}
    rows = R.calibration_rows(smoke, evicted, warm)
    assert rows == [{"lut_timing": "evicted_4mib", "target": "cpu-ort-1t", "base": "projected", "fit": "affine",
                     "slope": 1.1, "intercept": -2.0, "built": built["timestamp"], "git_sha": "abc"},
                    {"lut_timing": "warm", "target": "cpu-ort-1t", "base": "projected", "fit": "affine",
                     "slope": 1.3, "intercept": -2.0, "built": None, "git_sha": None}]  # no external LUT rows
    off = R.warm_profile(smoke)
    # a profile timing warm already: its own LUTs are the warm ones, not replaced by an empty arm
    assert [r["lut_timing"] for r in R.calibration_rows(off, evicted, {})] == ["warm"]


def test_lut_timing_effect_pairs_the_held_out_architectures():
    def rows(preds):
        return [{"target": "t", "arch": a, "role": role, "measured_ms": 100.0, "pred_calibrated_ms": p}
                for (a, role), p in preds.items()]

    evicted = rows({("a", "held_out"): 101.0, ("b", "held_out"): 98.0, ("c", "held_out"): 100.0, ("x", "anchor"): 150.0})
    warm = rows({("a", "held_out"): 104.0, ("b", "held_out"): 97.0, ("c", "held_out"): 102.0, ("x", "anchor"): 100.0})
    (row,) = R.lut_timing_effect(evicted, warm, n_resamples=200)
    assert row["n"] == 3  # anchors fitted the calibration: left out
    assert row["mape_pct_evicted"] == pytest.approx(1.0) and row["mape_pct_warm"] == pytest.approx(3.0)
    assert row["mape_pct_warm_minus_evicted"] == pytest.approx(2.0)  # differences 4 - 1, 3 - 2, 2 - 0: mean 2
    assert 1.0 - 1e-9 <= row["ci95_low"] <= 2.0 <= row["ci95_high"] <= 3.0 + 1e-9  # means of resampled {3, 1, 2}
    assert row["ci95_low"] < row["ci95_high"]
    assert R.lut_timing_effect(evicted, []) == []
    (one,) = R.lut_timing_effect(evicted[:1], warm[:1])
    assert one["n"] == 1 and math.isnan(one["ci95_low"]) and math.isnan(one["ci95_high"])  # no CI from one
    assert R.warm_lut_figures([], [row]) == {**R.summary_figures([]), "mape_pct_warm_minus_evicted": {"t": pytest.approx(2.0)}}


def test_a_timing_checkpoint_of_other_targets_or_values_is_unusable():
    good = {R.LOAD_KEY: [], "0|x": {"a": [1.0, 2.0], "b": [3.0]}}
    assert R._timing_problem(good, ["b", "a"]) == ""
    for bad in ({"0|x": {}}, {"0|x": {"a": [1.0]}}, {"0|x": {"a": [1.0], "b": ["slow"]}},
                {"0|x": {"a": [1.0], "b": [float("nan")]}}, {R.LOAD_KEY: {}}, [1]):
        assert R._timing_problem(bad, ["a", "b"])
    assert "not 2 runs" in R._timing_problem(good, ["a", "b"], repeats=2), "b holds 1 run of the profile's 2"
    assert "at least one run" in R._timing_problem({"0|x": {"a": [], "b": [1.0]}}, ["a", "b"])
    assert R._timing_problem({"0|x": {"a": [1.0, 2.0], "b": [3.0, 4.0]}}, ["a", "b"], repeats=2) == ""


def test_protocol_shortfalls_name_what_the_issue_needs():
    assert load_profile("cpu").latency.protocol_shortfalls() == [], "the cpu profile meets the protocol"
    smoke = load_profile("smoke").latency.protocol_shortfalls()
    assert any("timed runs per architecture" in s for s in smoke) and any("held-out" in s for s in smoke)
    one = replace(load_profile("cpu").latency, e2e_passes=1, anchor_archs=0)
    assert [s.split(":")[0].split(" =")[0] for s in one.protocol_shortfalls()] == [
        "e2e_passes x e2e_repeats", "e2e_passes", "anchor_archs"]


def test_paired_effect_figures_name_their_ci_after_the_difference():
    row = {"target": "t", "n": 3, "mape_pct_a": 1.0, "mape_pct_b": 2.0, "mape_pct_b_minus_a": 1.0,
           "ci95_low": 0.5, "ci95_high": 1.5}
    flat = flatten(R.paired_effect_figures([row]))
    assert flat == {"mape_pct_b_minus_a.t": 1.0, "mape_pct_b_minus_a_ci95_low.t": 0.5, "mape_pct_b_minus_a_ci95_high.t": 1.5}
    with pytest.raises(ValueError, match="_minus_"):
        R.paired_effect_figures([{"target": "t", "ci95_low": 0.0, "ci95_high": 1.0}])
