"""Why weight sharing ranks below the seed ceiling (04_ranking): the three causes' measurements."""

from __future__ import annotations

import numpy as np
import pytest

from linas_lib.analysis import ranking
from linas_lib.analysis import ws_shortfall as S
from linas_lib.space import arch_string


def _archs(n: int, rng: np.random.Generator) -> list[str]:
    return [arch_string(rng.integers(0, 21, size=5)) for _ in range(n)]


def _table(archs, val, test) -> list[dict]:
    """Table rows: ``val[s][i]`` / ``test[s][i]`` of architecture ``i`` and seed ``s``."""
    return [{"arch": a, "seed": s, "val_miou": float(val[s][i]), "test_miou": float(test[s][i])}
            for s in range(len(val)) for i, a in enumerate(archs)]


def test_the_cross_split_ceiling_reads_one_seeds_val_against_another_seeds_test():
    rng = np.random.default_rng(0)
    archs = _archs(30, rng)
    test = rng.normal(size=(2, 30))
    same = S.cross_split_ceiling(_table(archs, test, test), n_resamples=200)
    assert same["signal"] == S.CROSS_SPLIT_CEILING and same["n"] == 30
    # with val equal to test, each ordered pair is seed s's test against seed t's: the seed ceiling's tau
    assert same["tau"] == pytest.approx(ranking.kendall(test[0], test[1]))
    assert same["tau_lo"] <= same["tau"] <= same["tau_hi"]
    val = np.stack([test[1], -test[0]])  # seed 0's val is seed 1's test; seed 1's val the reverse of seed 0's
    crossed = S.cross_split_ceiling(_table(archs, val, test), n_resamples=200)
    assert crossed["tau"] == pytest.approx(0.5 * (1.0 - 1.0))


def test_the_cross_split_ceiling_needs_two_seeds():
    archs = _archs(5, np.random.default_rng(1))
    with pytest.raises(ValueError, match="cross-split seed ceiling: needs val_miou and test_miou of >= 2 common seeds"):
        S.cross_split_ceiling(_table(archs, [np.arange(5)], [np.arange(5)]))


def test_the_ensemble_averages_standardised_variants():
    columns = {"ws.a": np.array([0.1, 0.2, 0.3]), "ws.b": np.array([30.0, 10.0, 20.0]),
               "ws_crack.a": np.zeros(3), "ws_crack.b": np.array([1.0, 2.0, 3.0])}
    out = S.ensemble_columns(columns, ["a", "b"])
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    np.testing.assert_allclose(out[S.ENSEMBLE], (z(columns["ws.a"]) + z(columns["ws.b"])) / 2)
    np.testing.assert_allclose(out["ws_crack_ensemble"], z(columns["ws_crack.b"]) / 2)  # a constant column adds 0
    assert S.ensemble_columns(columns, ["a"]) == {}
    with pytest.raises(ValueError, match="needs the score column"):
        S.ensemble_column({"ws.a": [1, 2]}, ["a", "b"])


def test_ensemble_gap_and_agreement_of_the_variants():
    truth = np.arange(20.0)
    scores = [{"arch": str(i), f"truth.{ranking.HEADLINE}": t, "ws.a": t, "ws.b": -t, S.ENSEMBLE: t}
              for i, t in enumerate(truth)]
    agree = S.agreement(scores, ["a", "b"])
    assert agree == {"ws_agreement.mean": -1.0, "ws_agreement.min": -1.0, "ws_agreement.max": -1.0,
                     "ws_agreement.pairs": 1.0}
    assert S.agreement(scores, ["a"]) == {}
    gap = S.ensemble_gap(scores, ["a", "b"], n_resamples=200)  # tau 1 against the variants' mean tau 0
    assert gap["tau_gap.ws_ensemble_vs_mean"] == pytest.approx(1.0)
    assert gap["tau_gap.ws_ensemble_vs_mean_lo"] <= 1.0 + 1e-9 <= gap["tau_gap.ws_ensemble_vs_mean_hi"] + 2e-9
    assert S.ensemble_gap([{k: v for k, v in r.items() if k != S.ENSEMBLE} for r in scores], ["a", "b"]) == {}


def test_the_ensemble_of_independent_noisy_trainings_ranks_better_than_each():
    rng = np.random.default_rng(4)
    truth = rng.normal(size=300)
    columns = {f"ws.{v}": truth + rng.normal(size=300) for v in "abcd"}
    columns.update({f"ws_crack.{v}": columns[f"ws.{v}"] for v in "abcd"})
    scores = [{"arch": str(i), f"truth.{ranking.HEADLINE}": truth[i], **{k: c[i] for k, c in columns.items()},
               S.ENSEMBLE: S.ensemble_columns(columns, list("abcd"))[S.ENSEMBLE][i]} for i in range(300)]
    gap = S.ensemble_gap(scores, list("abcd"), n_resamples=200)
    assert gap["tau_gap.ws_ensemble_vs_mean_lo"] > 0.05  # noise cancels; a shared error would not


def test_the_width_bias_is_zero_for_width_blind_noise_and_negative_for_a_signal_that_penalises_width():
    rng = np.random.default_rng(2)
    n = 400
    width = rng.uniform(50, 100, n)
    truth = 0.04 * width + rng.normal(size=n)  # standalone accuracy grows with width
    noisy = truth + rng.normal(size=n)  # width-blind noise
    biased = truth - 0.06 * width + 0.3 * rng.normal(size=n)
    # the plain rank error of the width-blind signal still correlates with width (regression to
    # the mean): why the partial correlation is the statistic
    assert ranking.spearman(S._ranks(noisy) - S._ranks(truth), width) < -0.1
    assert abs(S.width_partial_corr(noisy, truth, width)) < 0.1
    assert S.width_partial_corr(biased, truth, width) < -0.5
    assert np.isnan(S.width_partial_corr(truth, truth, width))  # nothing beyond the truth to correlate


def _noisy_table(n: int, rng: np.random.Generator, width_penalty: float):
    """Architectures whose true accuracy grows with width, a two-seed table (val and test share
    the seed's training noise), and scores of a WS signal with no training noise of the table's
    that penalises width by ``width_penalty``."""
    archs = _archs(n, rng)
    width = S.mean_width(archs)
    true = 0.04 * width + rng.normal(size=n)
    noise = rng.normal(scale=0.7, size=(2, n))
    test = true + noise
    val = true + noise + 0.5 * rng.normal(size=(2, n))
    ws = true - width_penalty * width + rng.normal(size=n)
    scores = [{"arch": a, f"truth.{ranking.HEADLINE}": test[:, i].mean(), "ws.a": ws[i]} for i, a in enumerate(archs)]
    return scores, _table(archs, val, test), width, test


def test_width_blind_ws_and_the_controls_agree_under_a_noisy_truth():
    rng = np.random.default_rng(5)
    scores, table, width, test = _noisy_table(1500, rng, width_penalty=0.0)
    ws = np.array([r["ws.a"] for r in scores])
    # against the two-seed mean, a width-blind WS signal already correlates with width given the truth
    assert S.width_partial_corr(ws, test.mean(axis=0), width) > 0.05
    rows = {r["signal"]: r for r in S.width_bias(scores, ["a"], table, n_resamples=100)}
    assert abs(rows["ws.a"]["minus_control"]) < 0.06  # leave one seed out: the controls share that artefact
    assert rows["ws.a"]["minus_control_lo"] < 0 < rows["ws.a"]["minus_control_hi"]


def test_width_bias_rows_find_a_width_penalty_and_name_their_controls():
    rng = np.random.default_rng(3)
    scores, table, width, test = _noisy_table(300, rng, width_penalty=0.06)
    rows = S.width_bias(scores, ["a"], table, n_resamples=100)
    assert [(r["signal"], r["role"]) for r in rows] == [("ws.a", "ws"), ("standalone_val.s0", "control"),
                                                        ("standalone_val.s1", "control")]
    ws_row = rows[0]
    assert ws_row["minus_control_hi"] < -0.2 and ws_row["rho"] < 0
    val0 = np.array([r["val_miou"] for r in table if r["seed"] == 0])
    assert rows[1]["rho"] == pytest.approx(S.width_partial_corr(val0, test[1], width))  # seed 0 read on seed 1
    assert ws_row["rho"] == pytest.approx(np.mean([S.width_partial_corr([r["ws.a"] for r in scores], test[t], width)
                                                   for t in (0, 1)]))
    assert all(r["n"] == 300 and r["truth_rho"] == pytest.approx(ranking.spearman(width, test.mean(axis=0)))
               for r in rows)
    summary = S.bias_summary(rows)
    assert summary["ws_width_bias.a"] == ws_row["rho"] and summary["ws_width_bias_vs_control.a"] == ws_row["minus_control"]
    assert summary["ws_width_bias.standalone_val"] == pytest.approx((rows[1]["rho"] + rows[2]["rho"]) / 2)


def test_width_bias_leaves_out_architectures_with_a_missing_value():
    rng = np.random.default_rng(6)
    scores, table, _, _ = _noisy_table(12, rng, width_penalty=0.0)
    scores[0]["ws.a"] = float("nan")
    table = [r for r in table if not (r["arch"] == scores[1]["arch"] and r["seed"] == 1)]
    assert {r["n"] for r in S.width_bias(scores, ["a"], table, n_resamples=50)} == {10}
    assert S.cross_split_ceiling(table, n_resamples=50)["n"] == 11


def test_mean_width_of_canonical_strings():
    np.testing.assert_allclose(S.mean_width(["Conv3x3_w50-Conv3x3_w50-Conv3x3_w100-Conv3x3_w100-EdgeConv_w75"]), [75.0])


def test_the_curve_reports_how_well_its_replicas_agree():
    a, b = np.arange(10.0), np.arange(10.0)[::-1]
    assert ranking.retest([a, a]) == pytest.approx(1.0) and ranking.retest([a, b]) == pytest.approx(-1.0)
    assert np.isnan(ranking.retest([a]))
    rows = [{"steps": 36, "weights": "ema", "replica": "mean", "replicas": 2, "tau": 0.5, "tau_min": 0.4,
             "tau_max": 0.6, "tau_minus_raw": 0.1, "tau_minus_raw_lo": 0.0, "tau_minus_raw_hi": 0.2, "retest_tau": 0.7}]
    assert ranking.curve_summary(rows)["tau_steps_ema_retest.36"] == 0.7


def test_load_scores_reads_04s_scores_and_names_what_is_missing(tmp_path):
    assert S.load_scores(tmp_path, ["a"]) is None  # 04 ranked nothing
    path = tmp_path / S.SCORES
    path.parent.mkdir(parents=True)
    rows = [{"arch": str(i), f"truth.{ranking.HEADLINE}": i, "ws.a": i, "ws_crack.a": i} for i in range(4)]
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    assert [r["arch"] for r in S.load_scores(tmp_path, ["a"])] == [0, 1, 2, 3]
    with pytest.raises(S.ShortfallError, match=r"scores.csv: no column\(s\) ws.b, ws_crack.b; run 04_ranking"):
        S.load_scores(tmp_path, ["a", "b"])
    pd.DataFrame(rows[:2]).to_csv(path, index=False)
    with pytest.raises(S.ShortfallError, match="2 architecture"):
        S.load_scores(tmp_path, ["a"])


def test_ensemble_rows_score_the_ensemble_on_both_metrics():
    truth = np.arange(12.0)
    scores = [{"arch": str(i), "truth.test_miou": t, "truth.test_crack_iou": -t, "ws.a": t, "ws.b": t ** 2,
               "ws_crack.a": t, "ws_crack.b": t} for i, t in enumerate(truth)]
    rows = S.ensemble_rows(S.with_ensemble(scores, ["a", "b"]), n_resamples=100)
    assert [(r["signal"], r["metric"]) for r in rows] == [(S.ENSEMBLE, "test_miou"), (S.ENSEMBLE, "test_crack_iou")]
    assert rows[0]["tau"] == pytest.approx(1.0) and rows[1]["tau"] == pytest.approx(-1.0)
    assert S.ensemble_rows(S.with_ensemble(scores, ["a"])) == []
    with_it = S.with_ensemble(scores, ["a", "b"])
    assert S.ENSEMBLE in with_it[0] and "ws_crack_ensemble" in with_it[0] and S.ENSEMBLE not in scores[0]


def test_a_width_bias_is_told_apart_from_one_of_size():
    rng = np.random.default_rng(7)
    scores, table, _, _ = _noisy_table(300, rng, width_penalty=0.06)
    for r in scores:
        r["params"] = float(rng.uniform(1e5, 1e7))  # a size unrelated to the width here
    rows = S.width_bias(scores, ["a"], table, n_resamples=100)
    ws = {r["feature"]: r for r in rows if r["role"] == "ws"}
    assert set(ws) == {"mean_width", "params"}  # no flops column: left out
    assert ws["mean_width"]["minus_control_hi"] < -0.2
    assert ws["params"]["minus_control_lo"] < 0 < ws["params"]["minus_control_hi"]
    summary = S.bias_summary(rows)
    assert "ws_params_bias_vs_control.a" in summary and "ws_params_bias.a" not in summary
    assert summary["ws_width_bias.standalone_val"] == pytest.approx(
        np.mean([r["rho"] for r in rows if r["role"] == "control" and r["feature"] == "mean_width"]))


def test_the_split_gap_is_the_seed_ceiling_minus_the_cross_split_one():
    rng = np.random.default_rng(8)
    archs = _archs(40, rng)
    test = rng.normal(size=(2, 40))
    assert S.split_gap(_table(archs, test, test), n_resamples=100)["tau_gap.seed_ceiling_vs_cross_split"] == \
        pytest.approx(0.0, abs=1e-12)  # val equal to test: reading val costs nothing
    val = rng.normal(size=(2, 40))  # val unrelated to test
    gap = S.split_gap(_table(archs, val, test), n_resamples=100)
    expected = ranking.kendall(test[0], test[1]) - S.cross_split_ceiling(_table(archs, val, test), 50)["tau"]
    assert gap["tau_gap.seed_ceiling_vs_cross_split"] == pytest.approx(expected)


def test_width_bias_refuses_scores_of_architectures_the_table_lacks():
    rng = np.random.default_rng(9)
    scores, table, _, _ = _noisy_table(6, rng, width_penalty=0.0)
    known = {r["arch"] for r in scores}
    unknown = [a for a in _archs(20, np.random.default_rng(10)) if a not in known][:6]
    other = [dict(r, arch=a) for r, a in zip(scores, unknown)]
    with pytest.raises(S.ShortfallError, match="width bias: 0 of the scores' 6 architectures have every value"):
        S.width_bias(other, ["a"], table)


def test_the_table_must_hold_each_seeds_val_miou(monkeypatch, tmp_path):
    from linas_lib.analysis import ranking as R

    path = tmp_path / "table.csv"
    monkeypatch.setattr(R, "table_path", lambda profile: path)
    monkeypatch.setattr(R, "read_table_rows", lambda p: [{"arch": "a", "seed": 0, "test_miou": 0.5}])
    with pytest.raises(S.ShortfallError, match=r"table.csv: no column val_miou"):
        S.load_table_rows(None)
    monkeypatch.setattr(R, "read_table_rows", lambda p: [{"arch": "a", "seed": 0, "test_miou": 0.5, "val_miou": 0.4}])
    assert S.load_table_rows(None)[0]["val_miou"] == 0.4


def _loss_scores(n: int = 80) -> list[dict]:
    """Truth leaning on FLOPs; WS mIoU noisy; loss ``a`` = WS ranks plus a FLOPs lean (a size
    prior, no new information), loss ``b`` = a less noisy reading of the truth."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    flops = rng.uniform(1, 10, n)
    truth = 0.3 * (flops - flops.mean()) / flops.std() + rng.normal(0, 1, n)
    ws_a, ws_b = truth + rng.normal(0, 1.0, n), truth + rng.normal(0, 1.0, n)
    loss_a = rankdata(ws_a) + 0.6 * rankdata(flops)
    loss_b = truth + rng.normal(0, 0.3, n)
    return [{"arch": str(i), "truth.test_miou": truth[i], "flops": flops[i], "ws.a": ws_a[i], "ws_loss.a": loss_a[i],
             "ws.b": ws_b[i], "ws_loss.b": loss_b[i], "ws.c": ws_b[i]} for i in range(n)]


def test_the_loss_control_sees_through_a_size_prior_and_credits_a_better_reading():
    rows = {r["variant"]: r for r in S.loss_size_control(_loss_scores(), ["a", "b", "c"], n_resamples=200)}
    assert set(rows) == {"a", "b"}  # c has no loss column
    a, b = rows["a"], rows["b"]
    assert a["size_tau_loss"] > a["size_tau_ws"] and a["size_tau_matched"] == pytest.approx(a["size_tau_loss"], abs=0.02)
    assert a["lam"] == pytest.approx(0.6, abs=0.05)  # the lean is recovered without the truth
    assert abs(a["loss_minus_matched"]) < 0.02 and a["loss_minus_matched_lo"] <= 0 <= a["loss_minus_matched_hi"]
    assert b["loss_minus_ws"] > 0.15 and b["loss_minus_matched_lo"] > 0  # a better reading, not a size prior
    summary = S.loss_control_summary(list(rows.values()))
    assert summary["ws_loss.n_variants"] == 2
    assert summary["tau_gap.ws_loss_vs_size_matched.b"] == b["loss_minus_matched"]
    assert summary["ws_loss_size_shift.a"] == pytest.approx(a["size_tau_loss"] - a["size_tau_ws"])
    assert S.loss_control_summary([]) == {}


def test_the_loss_control_needs_the_size_column_and_the_bias_rows_read_the_loss_scores():
    scores = [{k: v for k, v in r.items() if k != "flops"} for r in _loss_scores(10)]
    with pytest.raises(S.ShortfallError, match="no 'flops' column"):
        S.loss_size_control(scores, ["a"])
    assert S.loss_size_control(_loss_scores(10), ["c"]) == []
    scores, table, _, _ = _noisy_table(60, np.random.default_rng(8), width_penalty=0.06)
    scores = [{**r, "ws_loss.a": -r["ws.a"]} for r in scores]  # the loss score of variant a: the reversed ranking
    rows = {r["signal"]: r for r in S.width_bias(scores, ["a"], table, n_resamples=50, features=("mean_width",))}
    assert rows["ws_loss.a"]["role"] == "ws" and rows["ws_loss.a"]["rho"] == pytest.approx(-rows["ws.a"]["rho"])
    assert "ws_width_bias.ws_loss.a" in S.bias_summary(list(rows.values()))


def test_the_noise_model_has_known_values_and_refuses_where_it_does_not_apply():
    # r_one 0.6, r_limit 0.8: a training's reliability 0.5625
    assert S.averaged_tau(0.6, 0.8, 1) == pytest.approx(2 / np.pi * np.arcsin(0.6))
    assert S.averaged_tau(0.6, 0.8, np.inf) == pytest.approx(2 / np.pi * np.arcsin(0.8))
    assert S.averaged_tau(0.6, 0.8, 2) == pytest.approx(2 / np.pi * np.arcsin(0.6 * np.sqrt(2 / 1.5625)))
    assert S.averaged_tau(0.7, 0.7, 10) == pytest.approx(S.averaged_tau(0.7, 0.7, 1))  # no training noise
    more = [S.averaged_tau(0.6, 0.8, k) for k in (1, 2, 4, 8, np.inf)]
    assert more == sorted(more)
    for bad in ((np.nan, 0.8), (-0.2, 0.8), (0.9, 0.8), (0.6, np.nan)):
        assert np.isnan(S.averaged_tau(*bad, 2)) and np.isnan(S.trainings_needed(*bad, 0.5))
    # trainings_needed: the least k whose average reaches the target
    k = S.trainings_needed(0.6, 0.8, 0.55)
    assert S.averaged_tau(0.6, 0.8, k) >= 0.55 > S.averaged_tau(0.6, 0.8, k - 1)
    assert S.trainings_needed(0.6, 0.8, 0.3) == 1.0 and S.trainings_needed(0.6, 0.8, 0.7) == np.inf
    # a perfect predictor against the mean of two seeds whose own tau is 0.794 reaches about 0.90
    assert S.truth_ceiling(0.794, 2) == pytest.approx(0.896, abs=0.002) and S.truth_ceiling(0.794, 1) > 0.794
    assert np.isnan(S.truth_ceiling(-0.1, 2))


def test_the_noise_model_finds_the_shared_signal_of_trainings_of_unequal_quality():
    rng = np.random.default_rng(5)
    truth = rng.normal(size=2000)
    shared = truth + rng.normal(0, 0.75, 2000)  # what every training sees alike
    good, poor = shared + rng.normal(0, 0.3, 2000), shared + rng.normal(0, 1.5, 2000)
    r_one, r_limit = S.noise_model([good, poor], truth)
    assert S.averaged_tau(r_one, r_limit, np.inf) == pytest.approx(ranking.kendall(shared, truth), abs=0.02)
    assert r_one == pytest.approx(np.mean([np.sin(np.pi / 2 * ranking.kendall(c, truth)) for c in (good, poor)]))
    assert S.noise_model([good, -poor], truth) == (pytest.approx(np.nan, nan_ok=True),) * 2  # negative: no model


def _curve_scores(archs, replicas, score="ws", weights="ema", steps=(10, 20)) -> list[dict]:
    return [{"arch": a, "steps": s, "weights": weights, "replica": r, "score": score, "value": float(col[i])}
            for s in steps for r, col in enumerate(replicas) for i, a in enumerate(archs)]


def test_replica_noise_rows_measure_one_rules_training_noise():
    rng = np.random.default_rng(3)
    archs = _archs(400, rng)
    truth = rng.normal(size=400)
    replicas = truth + rng.normal(0, 1.0, (3, 400))  # three trainings, independent noise
    scores = [{"arch": a, f"truth.{ranking.HEADLINE}": t} for a, t in zip(archs, truth)]
    curve = _curve_scores(archs, replicas) + _curve_scores(archs, replicas[:1], score="ws_loss")  # one replica: no row
    rows = S.replica_noise_rows(curve, scores, n_resamples=200)
    assert [(r["score"], r["weights"], r["steps"], r["replicas"], r["n"]) for r in rows] == [
        ("ws", "ema", 10, 3, 400), ("ws", "ema", 20, 3, 400)]
    row = rows[1]
    taus = [ranking.kendall(c, truth) for c in replicas]
    assert row["tau_mean"] == pytest.approx(np.mean(taus)) and row["tau_min"] == pytest.approx(min(taus))
    assert row["retest"] == pytest.approx(np.mean([ranking.kendall(replicas[a], replicas[b])
                                                   for a, b in ((0, 1), (0, 2), (1, 2))]))
    assert row["tau_ensemble"] == pytest.approx(ranking.kendall(replicas.mean(axis=0), truth), abs=0.01)
    assert row["ensemble_minus_mean_lo"] > 0  # averaging independent noise helps
    # independent noise only: the limit is the truth itself, within the bootstrap's reach
    assert row["tau_limit_lo"] <= row["tau_limit"] <= row["tau_limit_hi"] and row["tau_limit"] > 0.85
    assert row["trainings_to_target"] > 3 and row["target_reachable"] == 1
    summary = S.replica_noise_summary(rows)  # the last step
    assert summary["ws_replicas.ws.ema.steps"] == 20 and summary["ws_replicas.ws.ema.tau_limit"] == row["tau_limit"]
    assert summary["tau_gap.ws_replica_ensemble_vs_mean.ws.ema_lo"] == row["ensemble_minus_mean_lo"]
    assert S.replica_noise_summary([]) == {} and S.replica_noise_rows([], scores) == []
    # noise the trainings share caps the limit: a target beyond it is censored, not missing
    shared = truth + rng.normal(0, 1.5, 400)
    far = S.replica_noise_rows(_curve_scores(archs, shared + rng.normal(0, 1.0, (2, 400)), steps=(1,)), scores,
                               n_resamples=50)[0]
    assert far["tau_limit"] == pytest.approx(ranking.kendall(shared, truth), abs=0.06)
    assert far["trainings_to_target"] is None and far["target_reachable"] == 0
    assert S.replica_noise_summary([far])["ws_replicas.ws.ema.target_reachable"] == 0
    assert "ws_replicas.ws.ema.trainings_to_target" not in S.replica_noise_summary([far])


def test_the_model_check_predicts_what_an_unseen_training_averages_to_and_misses_one_unlike_the_others():
    rng = np.random.default_rng(6)
    truth = rng.normal(size=3000)
    shared = truth + rng.normal(0, 0.75, 3000)
    alike = shared + rng.normal(0, 1.0, (3, 3000))  # congeneric: the model holds
    measured = ranking.kendall(alike.mean(axis=0), truth)
    assert S.predicted_ensemble_tau(list(alike), truth) == pytest.approx(measured, abs=0.015)
    limits = S.pair_limits(list(alike), truth)
    assert len(limits) == 3 and max(limits) - min(limits) < 0.05
    assert np.isnan(S.predicted_ensemble_tau(list(alike[:2]), truth))  # a fit on one training has no pair
    # the unseen training shares its noise with the first (say, the same batch order): averaging gains less
    tied = [alike[0], alike[1], alike[0] + rng.normal(0, 0.3, 3000)]
    assert ranking.kendall(np.mean(tied, axis=0), truth) < S.predicted_ensemble_tau(tied, truth) - 0.02
    limits = S.pair_limits(tied, truth)
    assert max(limits) - min(limits) > 0.1
    # the unseen training's agreement with the others: as predicted when the model holds, above it when tied
    measured, predicted = S.unseen_retest(list(alike), truth)
    assert measured == pytest.approx(predicted, abs=0.015)
    measured, predicted = S.unseen_retest(tied, truth)
    assert measured > predicted + 0.1
    # a worse third training is within the model (its own quality enters the prediction)
    worse = [alike[0], alike[1], shared + rng.normal(0, 2.0, 3000)]
    measured, predicted = S.unseen_retest(worse, truth)
    assert measured == pytest.approx(predicted, abs=0.015)
    assert all(np.isnan(S.unseen_retest(list(alike[:2]), truth)))


def test_replica_noise_rows_check_the_model_from_three_replicas_on():
    rng = np.random.default_rng(7)
    archs = _archs(300, rng)
    truth = rng.normal(size=300)
    scores = [{"arch": a, f"truth.{ranking.HEADLINE}": t} for a, t in zip(archs, truth)]
    three = truth + rng.normal(0, 0.75, 300) + rng.normal(0, 1.0, (3, 300))
    row = S.replica_noise_rows(_curve_scores(archs, three, steps=(5,)), scores, n_resamples=200)[0]
    assert row["ensemble_minus_predicted"] == pytest.approx(row["tau_ensemble"] - row["tau_ensemble_predicted"])
    assert row["ensemble_minus_predicted_lo"] < 0 < row["ensemble_minus_predicted_hi"]  # the model holds here
    assert row["retest_unseen_minus_predicted_lo"] < 0 < row["retest_unseen_minus_predicted_hi"]
    assert row["retest_unseen_minus_predicted"] == pytest.approx(row["retest_unseen"] - row["retest_unseen_predicted"])
    assert row["tau_limit_pair_min"] <= row["tau_limit"] <= row["tau_limit_pair_max"] + 0.02
    summary = S.replica_noise_summary([row])
    assert {f"ws_replicas.ws.ema.{k}" for k in S.MODEL_CHECK} <= set(summary)
    two = S.replica_noise_rows(_curve_scores(archs, three[:2], steps=(5,)), scores, n_resamples=50)[0]
    assert all(two[k] is None for k in S.MODEL_CHECK)  # with two the check would hold by construction: none
    assert not any(k.endswith(S.MODEL_CHECK) for k in S.replica_noise_summary([two]))


def test_replica_noise_rows_refuse_mixed_files():
    rng = np.random.default_rng(4)
    archs = _archs(10, rng)
    scores = [{"arch": a, f"truth.{ranking.HEADLINE}": float(i)} for i, a in enumerate(archs)]
    two = rng.normal(size=(2, 10))
    with pytest.raises(S.ShortfallError, match=r"1 architecture\(s\) not in .*scores\.csv"):
        S.replica_noise_rows(_curve_scores(archs, two), scores[1:])
    with pytest.raises(S.ShortfallError, match="scored twice"):
        S.replica_noise_rows(_curve_scores(archs, two) + _curve_scores(archs[:1], two[:1]), scores)
    mean_rows = [dict(r, replica="mean") for r in _curve_scores(archs, two[:1])]
    assert [r["replicas"] for r in S.replica_noise_rows(_curve_scores(archs, two) + mean_rows, scores, 50)] == [2, 2]


def test_the_truth_ceiling_reads_the_seed_ceiling_row_and_the_fewest_seeds():
    rows = [{"signal": ranking.SEED_CEILING, "metric": ranking.HEADLINE, "tau": 0.794}]
    table = [{"arch": a, "seed": s, "test_miou": 0.5} for a in "xy" for s in (0, 1)] + [{"arch": "x", "seed": 2, "test_miou": 0.5}]
    assert S.truth_ceiling_summary(rows, table) == {"tau.truth_ceiling": S.truth_ceiling(0.794, 2)}
    assert S.truth_ceiling_summary([], table) == {}
    # the multi-fidelity top k's own ceiling, with its CI mapped; the crack-IoU row is not read
    rows += [{"signal": ranking.SEED_CEILING_MF, "metric": ranking.HEADLINE, "tau": 0.38, "tau_lo": 0.06, "tau_hi": 0.66},
             {"signal": ranking.SEED_CEILING_MF, "metric": "test_crack_iou", "tau": 0.9}]
    summary = S.truth_ceiling_summary(rows, table)
    assert summary["tau.truth_ceiling_mf"] == pytest.approx(S.truth_ceiling(0.38, 2))
    assert summary["tau.truth_ceiling_mf_lo"] < summary["tau.truth_ceiling_mf"] < summary["tau.truth_ceiling_mf_hi"] < 0.9


def test_load_curve_scores_names_the_file_and_the_missing_column(tmp_path):
    assert S.load_curve_scores(tmp_path) is None
    path = tmp_path / S.CURVE_SCORES
    path.parent.mkdir(parents=True)
    path.write_text("arch,steps,weights,replica,value\nx,1,raw,0,0.5\n")
    with pytest.raises(S.ShortfallError, match=r"curve_scores\.csv: no column\(s\) score"):
        S.load_curve_scores(tmp_path)
    path.write_text("arch,steps,weights,replica,score,value\nx,1,raw,0,ws,0.5\n")
    assert S.load_curve_scores(tmp_path)[0]["score"] == "ws"


def test_the_image_control_reads_ws_on_the_truths_own_images():
    rng = np.random.default_rng(6)
    truth = rng.normal(size=30)
    val = truth + rng.normal(0, 1.0, 30)
    scores = [{"arch": f"a{i}", f"truth.{ranking.HEADLINE}": truth[i], "ws.sandwich": val[i], "ws_on_test.sandwich": truth[i],
               "ws_loss.sandwich": val[i], "ws_loss_on_test.sandwich": val[i]} for i in range(30)]
    out = S.image_control(scores, n_resamples=200)
    assert out["tau.ws_on_test.sandwich"] == pytest.approx(1.0)
    assert out["tau_gap.ws_on_test_vs_val.sandwich"] == pytest.approx(1.0 - ranking.kendall(val, truth))
    assert out["tau_gap.ws_loss_on_test_vs_val.sandwich"] == pytest.approx(0.0)  # the same scores: no gap
    assert out["tau_gap.ws_on_test_vs_val.sandwich_lo"] <= out["tau_gap.ws_on_test_vs_val.sandwich"]
    assert S.image_control([{k: v for k, v in r.items() if "on_test" not in k} for r in scores]) == {}
    with pytest.raises(S.ShortfallError, match=r"scores\.csv: ws_on_test\.sandwich without ws\.sandwich"):
        S.image_control([{k: v for k, v in r.items() if k != "ws.sandwich"} for r in scores])
