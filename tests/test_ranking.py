"""The ranking study (notebook 04_ranking): statistics, ground truth, seed ceiling, signals, the table."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from linas_lib import provenance as provenance_module
from linas_lib.analysis import ranking as R
from linas_lib.analysis.bench_stats import seed_agreement, seed_matrix, split_half_tau
from linas_lib.config import ConfigError, load_profile
from linas_lib.space import N_LAYERS, arch_string, choice_index

RESAMPLES = 200


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    """No git subprocess per written file."""
    monkeypatch.setattr(provenance_module, "git_sha", lambda: "test")


def uniform_arch(op: str, width: int) -> str:
    return arch_string([choice_index(op, width)] * N_LAYERS)


ARCHS = [uniform_arch(op, w) for op in ("Conv3x3", "DWSep3x3", "DWSep5x5", "Conv5x5") for w in (50, 75, 100)]


def table_rows(n_archs: int = 12, seeds=(0, 1), noise: float = 0.005, seed: int = 0) -> list[dict]:
    """Bench rows: architecture ``i`` has test mIoU about ``0.5 + 0.02 i`` plus seed noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, arch in enumerate(ARCHS[:n_archs]):
        for s in seeds:
            rows.append({"arch": arch, "seed": s, "val_miou": 0.5 + 0.02 * i + rng.normal(0, noise),
                         "test_miou": 0.5 + 0.02 * i + rng.normal(0, noise),
                         "test_crack_iou": 0.1 + 0.03 * i + rng.normal(0, noise), "train_seconds": 2.0})
    return rows


# ------------------------------------------------------------------ statistics


def test_kendall_and_spearman_known_values():
    assert R.kendall([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert R.kendall([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert R.kendall([1, 3, 2, 4], [1, 2, 3, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert R.spearman([1, 3, 2, 4], [1, 2, 3, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert math.isnan(R.kendall([1, 1, 1], [1, 2, 3])) and math.isnan(R.spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(R.kendall([1], [1]))
    with pytest.raises(ValueError, match="length"):
        R.kendall([1, 2], [1, 2, 3])


def test_top_count_rounds_half_up_and_keeps_one():
    assert [R.top_count(n) for n in (1, 7, 14, 15, 100, 103, 105)] == [1, 1, 1, 2, 10, 10, 11]
    with pytest.raises(ValueError):
        R.top_count(0)


def test_precision_at_known_values_and_edge_cases():
    truth = np.arange(20.0)  # true top 10 % = items 18, 19
    assert R.precision_at(truth, truth) == 1.0
    assert R.precision_at(-truth, truth) == 0.0
    half = truth.copy()
    half[18] = -1  # predicted top 2 = 19 and 17
    assert R.precision_at(half, truth) == 0.5
    assert R.precision_at([1, 2, 3], [3, 2, 1]) == 0.0  # n=3: top 1 of each
    assert R.precision_at([5.0], [1.0]) == 1.0
    assert math.isnan(R.precision_at([], []))


def test_precision_at_ties_split_evenly_and_true_ties_count_as_top():
    truth = np.arange(10.0)
    assert R.precision_at(np.zeros(10), truth) == pytest.approx(0.1)  # a constant score: chance level
    assert R.precision_at([0, 1, 1, 0], [0, 0, 5, 0]) == pytest.approx(0.5)  # tie between items 1 and 2
    assert R.precision_at([0, 9, 0, 0], [5, 5, 0, 0]) == 1.0  # items 0 and 1 are both the true best
    pred, truth = np.array([0, 2, 2, 2, 1, 0, 0, 0, 0, 0]), np.arange(10.0)[::-1]
    order = np.random.default_rng(0).permutation(10)
    assert R.precision_at(pred, truth) == R.precision_at(pred[order], truth[order]) == pytest.approx(0.0)
    assert R.precision_at(pred, np.r_[0, 9, 0, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(1 / 3)  # 1 of 3 tied at top


def test_direction_picks_the_other_end_but_leaves_tau_as_is():
    truth = np.arange(20.0)
    latency = -truth  # a signal where smaller predicts better
    assert R.precision_at(latency, truth, direction=-1) == 1.0
    assert R.precision_at(latency, truth, direction=1) == 0.0
    row = R.compare(latency, truth, direction=-1, n_resamples=RESAMPLES)
    assert row["tau"] == pytest.approx(-1.0) and row["p10"] == 1.0 and row["direction"] == -1
    with pytest.raises(ValueError, match="direction"):
        R.precision_at(truth, truth, direction=0)


def test_bootstrap_ci_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=40)
    pred = truth + rng.normal(scale=0.8, size=40)
    for stat in (R.kendall, R.spearman, lambda a, b: R.precision_at(a, b, 0.25)):
        low, high = R.bootstrap_ci(stat, pred, truth, RESAMPLES, seed=3)
        assert low <= stat(pred, truth) <= high and low < high
        assert (low, high) == R.bootstrap_ci(stat, pred, truth, RESAMPLES, seed=3)


def test_bootstrap_ci_of_an_undefined_statistic_is_nan():
    assert all(math.isnan(v) for v in R.bootstrap_ci(R.kendall, [1, 1, 1, 1], [1, 2, 3, 4], RESAMPLES))
    assert all(math.isnan(v) for v in R.bootstrap_ci(R.kendall, [1], [1], RESAMPLES))


def test_compare_leaves_out_missing_scores():
    pred = [1, 2, np.nan, 4, 5, 6]
    truth = [1, 2, 3, 4, 5, 6]
    row = R.compare(pred, truth, n_resamples=RESAMPLES)
    assert row["n"] == 5 and row["tau"] == pytest.approx(1.0) and row["rho"] == pytest.approx(1.0)
    assert set(row) == {"n", "direction", *(f"{s}{e}" for s in ("tau", "rho", "p10") for e in ("", "_lo", "_hi"))}


# ------------------------------------------------------------------ ground truth and seed ceiling


def test_ground_truth_is_the_mean_over_seeds_of_archs_with_two_seeds():
    rows = table_rows(4) + [{"arch": ARCHS[5], "seed": 0, "test_miou": 0.9, "test_crack_iou": 0.9}]
    truth = R.ground_truth(rows)
    assert truth.archs == tuple(ARCHS[:4]) and truth.n_seeds.tolist() == [2, 2, 2, 2]
    expected = np.mean([r["test_miou"] for r in rows if r["arch"] == ARCHS[2]])
    assert truth.values["test_miou"][2] == pytest.approx(expected)
    assert truth.choices.shape == (4, N_LAYERS)


def test_ground_truth_averages_as_many_seeds_for_every_architecture():
    rows = table_rows(4)
    extra = {"arch": ARCHS[1], "seed": 7, "test_miou": 0.01, "test_crack_iou": 0.01}
    truth = R.ground_truth([*rows, extra])  # a third seed is left out, not averaged in
    assert truth.archs == tuple(ARCHS[:4]) and truth.n_seeds.tolist() == [2, 2, 2, 2]
    np.testing.assert_allclose(truth.values["test_miou"], R.ground_truth(rows).values["test_miou"])


def test_a_table_with_one_seed_is_refused_clearly():
    with pytest.raises(R.RankingError, match=r"0 architecture\(s\) with >= 2 seeds.*at most 1 seed"):
        R.ground_truth(table_rows(6, seeds=(0,)))
    with pytest.raises(R.RankingError, match="2 architecture"):
        R.ground_truth(table_rows(2))
    with pytest.raises(R.RankingError, match="test_crack_iou"):
        R.ground_truth([{k: v for k, v in r.items() if k != "test_crack_iou"} for r in table_rows(4)])
    with pytest.raises(R.RankingError, match="seed ceiling"):
        R.ceiling_row(table_rows(6, seeds=(0,)), "test_miou", RESAMPLES)


def test_table_facts_count_only_what_the_table_holds():
    rows = table_rows(3) + [{"arch": ARCHS[7], "seed": 0, "test_miou": 0.5, "test_crack_iou": 0.1,
                             "train_seconds": 4.0}]
    assert R.table_facts(rows) == {"bench.n_archs": 3, "bench.n_rows": 7, "bench.n_seeds": 2,
                                   "bench.train_s_total": 16.0}
    assert R.table_facts([]) == {"bench.n_archs": 0, "bench.n_rows": 0}


def test_seed_ceiling_row_uses_seed_agreement_for_tau():
    rows = table_rows(12, seeds=(0, 1, 2), noise=0.01)
    row = R.ceiling_row(rows, "test_miou", RESAMPLES, seed=0)
    agree = seed_agreement(rows, metrics=("test_miou",), n_resamples=RESAMPLES, seed=0)
    assert row["signal"] == "seed_ceiling" and row["n"] == 12
    assert (row["tau"], row["tau_lo"], row["tau_hi"]) == (agree["tau.test_miou"], agree["tau_ci_low.test_miou"],
                                                          agree["tau_ci_high.test_miou"])
    assert row["rho_lo"] <= row["rho"] <= row["rho_hi"] and 0 <= row["p10"] <= 1
    assert [r["metric"] for r in R.ceiling_rows(rows, RESAMPLES)] == list(R.METRICS)


def test_split_half_ceiling_rows_appear_from_four_seeds():
    rows = table_rows(12, seeds=(0, 1, 2, 3), noise=0.03)
    half = [r for r in R.ceiling_rows(rows, RESAMPLES) if r["signal"] == "seed_ceiling_half"]
    assert [r["metric"] for r in half] == list(R.METRICS)
    matrix, _, _ = seed_matrix(rows, "test_miou")
    assert half[0]["tau"] == pytest.approx(split_half_tau(*matrix.T))
    assert half[0]["tau_lo"] <= half[0]["tau"] <= half[0]["tau_hi"] and half[0]["tau"] < 1
    assert half[0]["rho_lo"] <= half[0]["rho"] <= half[0]["rho_hi"]
    assert "tau.seed_ceiling_half" in R.summary({}, half)
    three = R.ceiling_rows(table_rows(12, seeds=(0, 1, 2), noise=0.01), RESAMPLES)
    assert {r["signal"] for r in three} == {"seed_ceiling"}
    with pytest.raises(R.RankingError, match="needs >= 4"):
        R.ceiling_row(table_rows(6, seeds=(0, 1, 2)), "test_miou", RESAMPLES, half=True)


def test_seed_ceiling_of_the_fine_tuned_top_k():
    rows = table_rows(12, noise=0.015)  # archs 0.02 apart: seed noise reorders neighbours
    truth = R.ground_truth(rows)
    good = truth.values["test_miou"]
    top = np.argsort(-good)[:4]  # the 4 best, in a band of 0.06
    mf = np.full(12, np.nan)
    mf[top] = good[top]
    scores = R.score_rows(truth, {"mf": mf})
    assert sorted(R.mf_archs(scores)) == sorted(truth.archs[i] for i in top)
    both = R.ceilings(rows, scores, RESAMPLES)
    whole = [r for r in both if r["signal"] == R.SEED_CEILING]
    sub = [r for r in both if r["signal"] == R.SEED_CEILING_MF]
    assert whole == R.ceiling_rows(rows, RESAMPLES) and [r["n"] for r in sub] == [4, 4]
    picked = [r for r in rows if r["arch"] in set(R.mf_archs(scores))]
    assert sub[0]["tau"] == R.ceiling_row(picked, "test_miou", RESAMPLES)["tau"]
    assert sub[0]["tau"] < whole[0]["tau"]  # the narrow band is reordered more by the same noise
    too_few = R.score_rows(truth, {"mf": np.r_[good[:2], np.full(10, np.nan)]})
    assert R.ceilings(rows, too_few, RESAMPLES) == whole  # under 3 fine-tuned architectures: no subset row
    assert R.ceilings(rows, R.score_rows(truth, {}), RESAMPLES) == whole  # no mf column


# ------------------------------------------------------------------ signals, rows, summary


def scores_for(n: int = 12) -> tuple[R.GroundTruth, list[dict]]:
    truth = R.ground_truth(table_rows(n))
    good = truth.values["test_miou"]
    columns = {"ws.a": good, "ws_crack.a": truth.values["test_crack_iou"], "ws.b": good[::-1].copy(),
               "ws_crack.b": good[::-1].copy(), "ws_loss.a": good - 1, "ws_loss.b": -good, "near": np.arange(n, dtype=float), "near_exact": np.ones(n),
               "near_init": good,
               "latency": -good, "flops": good, "params": good, "mf": np.r_[good[:3], np.full(n - 3, np.nan)]}
    return truth, R.score_rows(truth, columns)


def test_ranking_rows_score_every_signal_against_both_metrics():
    _, scores = scores_for()
    rows = R.ranking_rows(scores, R.signals(["a", "b"], best="a"), RESAMPLES)
    by = {(r["signal"], r["metric"]): r for r in rows}
    assert by[("ws.a", "test_miou")]["tau"] == pytest.approx(1.0)
    assert by[("ws.b", "test_miou")]["tau"] == pytest.approx(-1.0)
    assert by[("latency", "test_miou")]["tau"] == pytest.approx(-1.0) and by[("latency", "test_miou")]["p10"] == 0
    assert math.isnan(by[("near_exact", "test_miou")]["tau"])
    assert by[("near_init", "test_miou")]["tau"] == pytest.approx(1.0)
    assert by[("mf", "test_miou")]["n"] == 3 and by[("mf_ws", "test_miou")]["n"] == 3
    assert by[("ws.a", "test_crack_iou")]["tau"] == pytest.approx(1.0)
    assert by[("ws_loss.a", "test_miou")]["tau"] == pytest.approx(1.0) and by[("ws_loss.b", "test_crack_iou")]["tau"] < 0
    assert len(rows) == 2 * len(R.signals(["a", "b"], best="a"))
    without_loss = [{k: v for k, v in r.items() if not k.startswith("ws_loss")} for r in scores]
    assert not any(r["signal"].startswith("ws_loss") for r in R.ranking_rows(without_loss, R.signals(["a"]), RESAMPLES))


def test_score_rows_refuse_a_column_of_another_length():
    truth, _ = scores_for(4)
    with pytest.raises(ValueError, match="ws.a"):
        R.score_rows(truth, {"ws.a": [1.0, 2.0]})


def test_best_variant_and_top_k():
    _, scores = scores_for()
    assert R.best_variant(scores, ["b", "a"]) == "a"
    assert R.top_k([0.1, 0.5, 0.5, 0.2], 2).tolist() == [1, 2]
    assert R.top_k([0.1, 0.5, 0.3], 2, direction=-1).tolist() == [0, 2]
    assert R.top_k([0.1, 0.5], 5).tolist() == [1, 0]
    with pytest.raises(R.RankingError):
        R.best_variant(scores, [])
    # validation decides, not the test metric the winner is then scored on
    flipped = [{**r, "truth.val_miou": -r["truth.val_miou"]} for r in scores]
    assert R.best_variant(flipped, ["b", "a"]) == "b" and R.best_variant(flipped, ["b", "a"], "test_miou") == "a"


def test_summary_keys_and_the_no_table_summary():
    _, scores = scores_for()
    rows = R.ceiling_rows(table_rows(12), RESAMPLES) + R.ranking_rows(scores, R.signals(["a"], "a"), RESAMPLES)
    facts = R.table_facts(table_rows(12))
    out = R.summary(facts, rows)
    for name in ("seed_ceiling", "ws.a", "near", "latency", "flops", "params", "mf"):
        assert {f"tau.{name}", f"rho.{name}", f"p10.{name}", f"tau_crack.{name}"} <= set(out)
    assert out["bench.n_archs"] == 12 and out["bench.train_s_total"] == 48.0
    assert R.summary({"bench.n_archs": 0}) == {"bench.n_archs": 0}


def test_profile_variant_matches_the_settings():
    variants = {"baseline": {"sampling": "uniform", "calr": False}, "i2": {"sampling": "sandwich", "calr": True}}
    cfg = type("Cfg", (), {"sampling": "sandwich", "calr": True})()
    assert R.profile_variant(cfg, variants) == "i2"
    assert R.profile_variant(type("Cfg", (), {"sampling": "other"})(), variants) is None


# ------------------------------------------------------------------ signals that run networks (fakes)


def test_decoder_costs_on_meta_match_a_real_forward():
    from torch.utils.flop_counter import FlopCounterMode

    from linas_lib.ops import Decoder

    shapes = [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2), (1, 1024, 2, 2)]
    small, edge = uniform_arch("DWSep3x3", 50), uniform_arch("EdgeConv", 100)
    truth = R.ground_truth([{"arch": a, "seed": s, "test_miou": 0.5, "test_crack_iou": 0.1}
                            for a in (small, edge, ARCHS[0]) for s in (0, 1)])
    flops, params = R.decoder_costs(truth.choices, shapes)
    decoder = Decoder(truth.choices[1]).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        decoder([torch.zeros(s) for s in shapes])
    assert flops[1] == counter.get_total_flops() and params[1] == sum(p.numel() for p in decoder.parameters())
    assert flops[0] < flops[1] and params[0] < params[1]


class FakeSupernet:
    """``ws_scores`` = a fixed function of the choices; ``finetune_and_evaluate`` records its calls."""

    def __init__(self, offset: float = 0.0):
        self.offset, self.tuned = offset, []

    def ws_scores(self, choices):
        value = np.atleast_2d(choices).sum(axis=1) / 100 + self.offset
        return {"miou": value, "crack_iou": value / 2, "loss": 1 - value}

    def finetune_and_evaluate(self, choices, epochs, rng):
        self.tuned.append(tuple(int(c) for c in choices))
        return float(np.sum(choices)) / 100 + epochs


class NoLossSupernet(FakeSupernet):
    """A :class:`FakeSupernet` whose evaluator gives no loss."""

    def ws_scores(self, choices):
        return {k: v for k, v in super().ws_scores(choices).items() if k != "loss"}


def test_ws_scores_and_mf_column_with_a_fake_supernet():
    truth = R.ground_truth(table_rows(6))
    net = FakeSupernet()
    ws = R.ws_scores(net, truth.choices)
    assert ws["crack_iou"] == pytest.approx(ws["miou"] / 2) and ws["loss"] == pytest.approx(1 - ws["miou"])
    assert set(R.ws_scores(NoLossSupernet(), truth.choices)) == {"miou", "crack_iou"}  # a loss is optional
    mf = R.mf_column(net, ws["miou"], truth.choices, 2, 3, seed=0)
    top = R.top_k(ws["miou"], 2)
    assert np.isfinite(mf).sum() == 2 and np.isfinite(mf[top]).all()
    assert net.tuned == [tuple(truth.choices[i]) for i in top] and mf[top[0]] == pytest.approx(ws["miou"][top[0]] + 3)
    assert R._as_miou({"miou": 0.4, "crack_iou": 0.1}) == 0.4


def test_oracle_rows_score_the_searched_weights_beside_the_seed_ceiling():
    rows = table_rows(12)
    table = R.BenchTable(rows=rows, truth=R.ground_truth(rows))
    out = R.oracle_rows(FakeSupernet(), table, RESAMPLES)
    assert [(r["signal"], r["metric"]) for r in out] == [("seed_ceiling", "test_miou"), ("seed_ceiling", "test_crack_iou"),
                                                         ("ws", "test_miou"), ("ws", "test_crack_iou")]
    ws = R.ws_scores(FakeSupernet(), table.truth.choices)
    for row, metric, key in ((out[2], "test_miou", "miou"), (out[3], "test_crack_iou", "crack_iou")):
        expected = R.compare(ws[key], table.truth.values[metric], 1, RESAMPLES, 0)
        assert row["tau"] == pytest.approx(expected["tau"]) and row["tau_lo"] == pytest.approx(expected["tau_lo"])
    assert out[0]["tau"] == pytest.approx(R.ceiling_row(rows, "test_miou", RESAMPLES)["tau"])
    summary = R.oracle_summary(out)
    assert summary["oracle_rank.tau.ws"] == out[2]["tau"] and summary["oracle_rank.tau_crack.ws"] == out[3]["tau"]
    assert {"oracle_rank.tau_lo.ws", "oracle_rank.tau_hi.ws", "oracle_rank.tau.seed_ceiling"} <= set(summary)
    assert R.oracle_rows(FakeSupernet(), R.BenchTable()) == [] and R.oracle_summary([]) == {}
    # a partial table: too few architectures share both seeds for a ceiling; the oracle is still scored
    partial = table_rows(12, seeds=(0,)) + table_rows(2, seeds=(1,)) + table_rows(12, seeds=(2,))[2:]
    out = R.oracle_rows(FakeSupernet(), R.BenchTable(rows=partial, truth=R.ground_truth(partial)), RESAMPLES)
    assert [r["signal"] for r in out] == ["ws", "ws"] and out[0]["n"] == 12


def test_ws_columns_ask_every_variant(monkeypatch):
    from linas_lib.supernet import train

    asked = []
    monkeypatch.setattr(train, "trained_supernet",
                        lambda profile, seed, variant=None: asked.append(variant) or FakeSupernet(len(asked)))
    truth = R.ground_truth(table_rows(4))
    columns = R.ws_columns(None, 0, truth.choices, ["a", "b"])
    assert asked == ["a", "b"] and set(columns) == {f"{p}.{v}" for p in ("ws", "ws_crack", "ws_loss") for v in "ab"}
    assert columns["ws.b"] - columns["ws.a"] == pytest.approx(np.ones(4))
    assert columns["ws_loss.a"] == pytest.approx(columns["ws.a"] - 1)  # minus the loss: larger predicts better


def test_steps_curve_over_the_checkpoints(monkeypatch):
    from linas_lib.supernet import train

    profile = load_profile("smoke")
    profile = replace(profile, ranking=replace(profile.ranking, steps=(20, 10), steps_oneshot_ema=0.0, steps_replicas=1))
    asked = []
    recording = lambda p, s, steps, variant=None, raw=False: asked.append(  # noqa: E731
        (steps, variant, p.supernet.eval_checkpoints, p.supernet.warmup_epochs)) or FakeSupernet(steps + (not raw))
    monkeypatch.setattr(train, "supernet_at_steps", recording)
    truth = R.ground_truth(table_rows(6))
    every = R.steps_curve(profile, 0, truth, RESAMPLES)
    own = profile.supernet.warmup_epochs
    # the profile's own variant, the last step first (one replay saves every snapshot); rows by score, then step
    assert asked == [(20, None, (10, 20), own), (10, None, (10, 20), own)]
    assert [(r["score"], r["steps"]) for r in every] == [("ws", 10), ("ws", 20), ("ws_loss", 10), ("ws_loss", 20)]
    assert all(r["n"] == 6 and r["metric"] == "test_miou" for r in every)
    assert all(r["weights"] == "raw" for r in every)  # no moving average: the raw arm only
    curve, loss = every[:2], every[2:]
    # the fake's loss is 1 - its mIoU: the same ranking, a gap of 0 to WS mIoU
    assert [r["tau"] for r in loss] == [r["tau"] for r in curve] and all(r["tau_minus_ws"] == 0 for r in loss)
    assert R.curve_summary(every) == {"tau_steps.10": curve[0]["tau"], "tau_steps.20": curve[1]["tau"],
                                      "tau_steps_loss.10": loss[0]["tau"], "tau_steps_loss.20": loss[1]["tau"],
                                      **{f"tau_steps_loss_minus_ws.{s}{end}": 0.0 for s in (10, 20) for end in ("", "_lo", "_hi")},
                                      "tau_steps.replicas": 1.0}
    monkeypatch.setattr(train, "supernet_at_steps", lambda p, s, steps, variant=None, raw=False: NoLossSupernet(steps))
    assert {r["score"] for r in R.steps_curve(profile, 0, truth, RESAMPLES)} == {"ws"}  # without a loss, WS mIoU only
    monkeypatch.setattr(train, "supernet_at_steps", recording)
    snapshots = R.snapshot_scores(profile, 0, truth)
    assert sorted(snapshots) == [(10, "raw", 0), (20, "raw", 0)] and set(snapshots[10, "raw", 0]) == {"ws", "ws_loss"}
    assert R.steps_curve(profile, 0, truth, RESAMPLES, snapshots) == every  # the scores computed once, passed in
    long = R.snapshot_rows(snapshots, truth)
    assert len(long) == 2 * 2 * 6 and long[0] == {"arch": truth.archs[0], "steps": 10, "weights": "raw", "replica": 0,
                                                  "score": "ws", "value": snapshots[10, "raw", 0]["ws"][0]}
    longer = replace(profile, ranking=replace(profile.ranking, steps=(20, 10), steps_oneshot_epochs=own + 3))
    R.steps_curve(longer, 0, truth, RESAMPLES)
    assert asked[-1] == (10, None, (10, 20), own + 3)
    averaged = replace(profile, ranking=replace(profile.ranking, steps_oneshot_ema=0.9))
    assert R.curve_profile(averaged).supernet.oneshot_ema == 0.9 and R.curve_profile(profile).supernet.oneshot_ema == 0
    both = [r for r in R.steps_curve(averaged, 0, truth, RESAMPLES) if r["score"] == "ws"]
    assert [(r["steps"], r["weights"]) for r in both] == [(10, "raw"), (10, "ema"), (20, "raw"), (20, "ema")]
    summary = R.curve_summary(both)
    assert {k: summary[k] for k in ("tau_steps.10", "tau_steps_ema.10", "tau_steps.20", "tau_steps_ema.20")} == {
        "tau_steps.10": both[0]["tau"], "tau_steps_ema.10": both[1]["tau"],
        "tau_steps.20": both[2]["tau"], "tau_steps_ema.20": both[3]["tau"]}
    for step, raw, ema in ((10, both[0], both[1]), (20, both[2], both[3])):  # the paired gap of the same step
        assert summary[f"tau_steps_ema_minus_raw.{step}"] == pytest.approx(ema["tau"] - raw["tau"])
        assert np.isnan(raw["tau_minus_raw"]) and ema["tau_minus_raw_lo"] <= ema["tau_minus_raw"] <= ema["tau_minus_raw_hi"]
    assert len([k for k in summary if not k.startswith("tau_steps_loss")]) == 4 + 2 * 3 + 1
    shorter = replace(longer, ranking=replace(longer.ranking, steps_oneshot_epochs=own - 1))
    assert R.curve_profile(shorter).supernet.warmup_epochs == own  # never shorter than the profile's own
    no_steps = replace(profile, ranking=replace(profile.ranking, steps=()))
    assert R.curve_steps(no_steps) == tuple(profile.supernet.eval_checkpoints)


class ReplicaSupernet(FakeSupernet):
    """WS scores = the choices' sum plus noise drawn from (replica, raw): replicas rank differently."""

    def __init__(self, replica: int, raw: bool):
        super().__init__()
        self.noise = np.random.default_rng([replica, raw])

    def ws_scores(self, choices):
        value = np.atleast_2d(choices).sum(axis=1) / 100
        noise = self.noise.normal(0, 0.05, (2, value.size))
        return {"miou": value + noise[0], "crack_iou": (value + noise[0]) / 2, "loss": 1 - value + noise[1]}


def test_steps_curve_over_training_replicas(monkeypatch):
    from linas_lib.supernet import train

    profile = load_profile("smoke")
    profile = replace(profile, ranking=replace(profile.ranking, steps=(10,), steps_oneshot_ema=0.9, steps_replicas=2))
    asked = []
    monkeypatch.setattr(train, "supernet_at_steps", lambda p, s, steps, variant=None, raw=False: asked.append(
        (p.supernet.replica, raw)) or ReplicaSupernet(p.supernet.replica, raw))
    truth = R.ground_truth(table_rows(12))
    every = R.steps_curve(profile, 0, truth, RESAMPLES)
    assert sorted(asked) == [(0, False), (0, True), (1, False), (1, True)]
    order = [("raw", 0), ("raw", 1), ("raw", "mean"), ("ema", 0), ("ema", 1), ("ema", "mean")]
    assert [(r["score"], r["weights"], r["replica"]) for r in every] == [(s, *o) for s in ("ws", "ws_loss") for o in order]
    curve, loss = every[:6], {(r["weights"], r["replica"]): r for r in every[6:]}
    for arm in ("raw", "ema"):  # the loss score against WS mIoU of the same weights, per replica and on average
        own = [loss[arm, r]["tau"] - curve[order.index((arm, r))]["tau"] for r in (0, 1)]
        assert [loss[arm, r]["tau_minus_ws"] for r in (0, 1)] == pytest.approx(own)
        assert loss[arm, "mean"]["tau_minus_ws"] == pytest.approx(np.mean(own))
        assert loss[arm, "mean"]["tau_minus_ws_lo"] <= loss[arm, "mean"]["tau_minus_ws"] <= loss[arm, "mean"]["tau_minus_ws_hi"]
    assert R.curve_summary(every)["tau_steps_loss_ema_minus_ws.10"] == loss["ema", "mean"]["tau_minus_ws"]
    assert R.curve_summary(every)["tau_steps_loss_ema_retest.10"] == loss["ema", "mean"]["retest_tau"]
    rows = {(r["weights"], r["replica"]): r for r in curve}
    for arm in ("raw", "ema"):
        one, two, mean = rows[arm, 0], rows[arm, 1], rows[arm, "mean"]
        assert mean["tau"] == pytest.approx((one["tau"] + two["tau"]) / 2) and mean["replicas"] == 2
        assert mean["tau_min"] == min(one["tau"], two["tau"]) and mean["tau_max"] == max(one["tau"], two["tau"])
        assert mean["tau_lo"] <= mean["tau"] <= mean["tau_hi"]
    gaps = [rows["ema", r]["tau"] - rows["raw", r]["tau"] for r in (0, 1)]
    assert rows["ema", "mean"]["tau_minus_raw"] == pytest.approx(np.mean(gaps))
    summary = R.curve_summary(curve)  # the replica means
    assert summary["tau_steps.10"] == rows["raw", "mean"]["tau"] and summary["tau_steps.replicas"] == 2
    assert summary["tau_steps_ema.10_max"] == rows["ema", "mean"]["tau_max"]
    assert summary["tau_steps_ema_minus_raw.10"] == pytest.approx(np.mean(gaps))
    # one replica through the replica functions: the single-run values, bootstrap included
    a, b = ReplicaSupernet(0, False).ws_scores(truth.choices)["miou"], ReplicaSupernet(1, False).ws_scores(truth.choices)["miou"]
    values = truth.values[R.HEADLINE]
    by_hand = lambda x, y, z: R.kendall(x, z) - R.kendall(y, z)  # noqa: E731
    assert R.replica_tau_gap([a], [b], values, RESAMPLES) == pytest.approx(
        (by_hand(a, b, values), *R._paired_ci(by_hand, (a, b, values), RESAMPLES, R.CONFIDENCE, 0)))
    pooled = R.replica_compare([a], values, 1, RESAMPLES)
    assert pooled["tau"] == R.kendall(a, values) and pooled["tau_min"] == pooled["tau_max"] == pooled["tau"]
    assert (pooled["tau_lo"], pooled["tau_hi"]) == pytest.approx(R.bootstrap_ci(R.kendall, a, values, RESAMPLES))
    with pytest.raises(ValueError, match="as many replicas"):
        R.replica_tau_gap([a, b], [a], values)
    assert replace(R.curve_profile(profile, 1).supernet, replica=0) == R.curve_profile(profile).supernet
    # an architecture that one replica cannot score leaves every row of its step
    holes = lambda p, s, steps, variant=None, raw=False: HoleySupernet(p.supernet.replica, raw)  # noqa: E731
    monkeypatch.setattr(train, "supernet_at_steps", holes)
    holed = R.steps_curve(profile, 0, truth, RESAMPLES)
    assert {r["n"] for r in holed} == {11}
    raw = [r for r in holed if r["weights"] == "raw" and r["score"] == "ws"]
    assert raw[-1]["replica"] == "mean" and raw[-1]["tau"] == pytest.approx(np.mean([r["tau"] for r in raw[:-1]]))


def _trainings(truth, rng) -> dict:
    """Scores of two trainings of ``good`` (near the truth), two of ``bad`` (noisier) and an ablation of bad's first."""
    values, n = truth.values[R.HEADLINE], len(truth.archs)
    out = {}
    for variant, noise, replicas in (("good", 0.002, (0, 1)), ("bad", 0.02, (0, 1)), ("bad_ablation", 0.01, (0,))):
        for r in replicas:
            pre = values + rng.normal(0, 0.03, n)
            final = values + rng.normal(0, noise, n)
            out[variant, r, "oneshot_end"] = {"ws": pre, "ws_loss": pre - 1}
            out[variant, r, "final"] = {"ws": final, "ws_loss": final - 1}
    return out


def test_replica_rows_read_each_training_before_and_after_the_search_phase():
    truth = R.ground_truth(table_rows(20))
    scores, values = _trainings(truth, np.random.default_rng(3)), truth.values[R.HEADLINE]
    rows = R.replica_rows(scores, truth, RESAMPLES)
    ws = [r for r in rows if r["score"] == "ws"]
    assert [(r["variant"], r["replica"]) for r in ws] == [
        ("good", 0), ("good", 1), ("bad", 0), ("bad", 1), ("bad_ablation", 0), ("good", "mean"), ("bad", "mean")]
    one = ws[2]
    assert one["tau_final"] == pytest.approx(R.kendall(scores["bad", 0, "final"]["ws"], values))
    assert one["search_change"] == pytest.approx(one["tau_final"] - one["tau_oneshot_end"])
    assert one["search_change_lo"] <= one["search_change"] <= one["search_change_hi"]
    mean = ws[-1]
    assert mean["tau_final"] == pytest.approx((ws[2]["tau_final"] + ws[3]["tau_final"]) / 2)
    assert (mean["tau_final_min"], mean["tau_final_max"]) == (min(ws[2]["tau_final"], ws[3]["tau_final"]),
                                                              max(ws[2]["tau_final"], ws[3]["tau_final"]))
    assert mean["retest_tau"] == pytest.approx(R.kendall(scores["bad", 0, "final"]["ws"], scores["bad", 1, "final"]["ws"]))

    summary = R.replica_summary(rows, ["good", "bad"], scores, truth, RESAMPLES)
    assert summary["tau_final.ws.bad.r1"] == ws[3]["tau_final"]
    assert summary["tau_oneshot_end.ws.bad_ablation.r0"] == ws[4]["tau_oneshot_end"]
    assert summary["tau_final_mean.ws.good_max"] == ws[-2]["tau_final_max"]
    gap = ws[-2]["tau_final"] - ws[-1]["tau_final"]
    assert summary["replica_gap.ws.good_minus_bad"] == pytest.approx(gap)
    assert summary["replica_gap.ws.good_minus_bad_lo"] <= gap <= summary["replica_gap.ws.good_minus_bad_hi"]
    sd = math.sqrt(np.mean([np.var([ws[i]["tau_final"], ws[i + 1]["tau_final"]], ddof=1) for i in (0, 2)]))
    assert summary["replica_gap_over_sd.ws.good_minus_bad"] == pytest.approx(gap / sd)
    assert summary["replica_separated.ws.good_vs_bad"] == 1.0  # both good trainings above both bad ones
    assert summary["replica_separated.ws_loss.good_vs_bad"] == 1.0
    assert "replica_gap.ws.good_minus_bad" not in R.replica_summary(rows, ["good", "bad"])  # no scores: no contrast
    ablated = R.replica_summary(rows, ["good", "bad"], scores, truth, RESAMPLES, parents={"bad_ablation": "bad"})
    own = R.kendall(scores["bad_ablation", 0, "final"]["ws"], values) - R.kendall(scores["bad", 0, "final"]["ws"], values)
    assert ablated["search_ablation_gap.ws.bad_ablation"] == pytest.approx(own)
    assert ablated["search_ablation_gap.ws.bad_ablation_lo"] <= own <= ablated["search_ablation_gap.ws.bad_ablation_hi"]


def test_the_trainings_read_are_the_retest_variants_and_their_search_phase_ablations(monkeypatch):
    from linas_lib.supernet import train

    profile = load_profile("smoke")
    ranking = replace(profile.ranking, variants=("baseline", "i2"), retest_variants=("i2",),
                      search_ablations=("i2_oneshot_calr",))
    profile = replace(profile, ranking=ranking)
    monkeypatch.setattr(train, "oneshot_key", lambda p, seed, *_: "i2-like" if p.supernet.calr else "other")
    assert R.variant_trainings(profile, 0) == [("i2", 0), ("i2", 1), ("i2_oneshot_calr", 0)]
    assert R.variant_trainings(replace(profile, ranking=replace(ranking, retest_variants=(), search_ablations=())), 0) == []
    with pytest.raises(R.RankingError, match="'sandwich_calr' shares its one-shot phase with none of"):
        R.variant_trainings(replace(profile, ranking=replace(ranking, retest_variants=("baseline",),
                                                             search_ablations=("sandwich_calr",))), 0)
    with pytest.raises(ValueError, match="retest_variants must be distinct names from ranking.variants"):
        replace(ranking, retest_variants=("sandwich",))
    with pytest.raises(R.RankingError, match="ranking.search_ablations: unknown 'nope'"):
        R.check_ranking(replace(profile, ranking=replace(ranking, search_ablations=("nope",))))
    with pytest.raises(ValueError, match="search_ablations must be empty without ranking.retest_variants"):
        replace(ranking, retest_variants=())
    with pytest.raises(ValueError, match="search_ablations must be distinct and not in ranking.variants"):
        replace(ranking, variants=("baseline", "i2", "i2_oneshot_calr"))
    assert R.ablation_parents(profile, 0) == {"i2_oneshot_calr": "i2"}


class HoleySupernet(ReplicaSupernet):
    """A :class:`ReplicaSupernet` whose replica 1 cannot score the first architecture."""

    def __init__(self, replica: int, raw: bool):
        super().__init__(replica, raw)
        self.replica = replica

    def ws_scores(self, choices):
        scores = super().ws_scores(choices)
        if self.replica == 1:
            scores["miou"][0] = np.nan
        return scores


# ------------------------------------------------------------------ settings and the table file


def test_ranking_sections_load_and_are_checked():
    for name in ("smoke", "cpu", "full"):
        assert R.check_ranking(load_profile(name)).variants
    assert load_profile("cpu").ranking.mf_topk >= 20
    profile = load_profile("smoke")
    cfg = replace(profile.ranking, retest_variants=(), search_ablations=())
    for field, value, match in [("mf_topk", 1, "mf_topk must be >= 2, got 1"),
                                ("steps_oneshot_epochs", -1, "steps_oneshot_epochs = -1 must be >= 0"),
                                ("near_inits", 0, "near_inits = 0 must be > 0"),
                                ("steps_oneshot_ema", 1.0, r"steps_oneshot_ema must be in \[0, 1\)")]:
        with pytest.raises(ValueError, match=match):
            replace(cfg, **{field: value})
    with pytest.raises(R.RankingError, match="ranking.variants: unknown 'nope'"):
        R.check_ranking(replace(profile, ranking=replace(cfg, variants=("nope",))))


def test_a_bad_ranking_or_cross_hw_field_in_a_profile_file_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("ranking:\n  mf_topk: 1\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: ranking: mf_topk must be >= 2, got 1"):
        load_profile(path)
    path.write_text("cross_hw:\n  d_model: 30\n  heads: 4\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: cross_hw: d_model must be a multiple of heads, >= 4, got 30"):
        load_profile(path)


def table_profile(monkeypatch, tmp_path, rows=None, prov=None):
    """The smoke profile reading its table from ``tmp_path`` (written from ``rows`` if given)."""
    profile = load_profile("smoke")
    profile = replace(profile, ranking=replace(profile.ranking, build_table=False))
    path = tmp_path / "table.csv"
    monkeypatch.setattr(R, "table_path", lambda p: path)
    if rows is not None:
        provenance_module.write_csv(path, rows, prov or {"profile": "smoke"})
    return profile


def test_load_table_without_a_table_ranks_nothing(monkeypatch, tmp_path):
    table = R.load_table(table_profile(monkeypatch, tmp_path), 0)
    assert table.truth is None and table.facts == {"bench.n_archs": 0}
    assert "no benchmark table" in table.message and "linas bench build" in table.message


def test_load_table_with_a_partial_table_says_what_is_missing(monkeypatch, tmp_path):
    table = R.load_table(table_profile(monkeypatch, tmp_path, table_rows(2) + table_rows(5, seeds=(0,))[2:]), 0)
    assert table.truth is None and "2 architecture(s) with >= 2 seeds" in table.message
    assert table.facts["bench.n_archs"] == 2 and table.facts["bench.n_rows"] == 7


def test_load_table_with_a_full_table(monkeypatch, tmp_path):
    table = R.load_table(table_profile(monkeypatch, tmp_path, table_rows(8)), 0)
    assert table.truth is not None and len(table.truth.archs) == 8 and "8 architectures" in table.message


@pytest.mark.parametrize("seed, shown", [("abc", "'abc'"), (0.5, "0.5"), ("", "nan"), (-1, "-1")])
def test_a_table_seed_that_is_not_a_count_is_refused(monkeypatch, tmp_path, seed, shown):
    rows = table_rows(3)
    rows[4]["seed"] = seed
    table_profile(monkeypatch, tmp_path, rows)
    with pytest.raises(R.RankingError, match=rf"table\.csv: row 5: seed = {shown} is not an integer >= 0"):
        R.read_table_rows(tmp_path / "table.csv")


def test_a_corrupt_provenance_line_names_the_table(monkeypatch, tmp_path):
    profile = table_profile(monkeypatch, tmp_path, table_rows(3))
    path = tmp_path / "table.csv"
    first, rest = path.read_text().split("\n", 1)
    path.write_text(first[:20] + "\n" + rest)
    with pytest.raises(ValueError, match=r"table\.csv: the '# provenance:' line is not valid JSON"):
        R.load_table(profile, 0)


def test_load_table_refuses_a_table_of_other_data(monkeypatch, tmp_path):
    from linas_lib import data
    from linas_lib.analysis import bench
    from linas_lib.encoder import features

    monkeypatch.setattr(data, "load_splits", lambda profile, seed: {})
    monkeypatch.setattr(bench, "data_digest", lambda splits: "here")
    monkeypatch.setattr(features, "encoder_identity",
                        lambda profile, seed, splits: type("W", (), {"weights_id": "w"})())
    profile = table_profile(monkeypatch, tmp_path, table_rows(8), {"data_digest": "there", "weights_id": "w"})
    table = R.load_table(profile, 0)
    assert table.truth is None and "other data_digest" in table.message and table.facts["bench.n_archs"] == 8
    provenance_module.write_csv(tmp_path / "table.csv", table_rows(8), {"data_digest": "here", "weights_id": "w"})
    assert R.load_table(profile, 0).truth is not None


# ------------------------------------------------------------------ figures


def test_figures_draw_from_rows_with_gaps():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from linas_lib import plots

    _, scores = scores_for()
    rows = R.ceiling_rows(table_rows(12), RESAMPLES) + R.ranking_rows(scores, R.signals(["a", "b"], "a"), RESAMPLES)
    curve = [{"steps": 10, "tau": 0.2, "tau_lo": 0.0, "tau_hi": 0.4}, {"steps": 5, "tau": 0.1, "tau_lo": float("nan"),
                                                                        "tau_hi": float("nan")},
             {"steps": 10, "weights": "ema", "tau": 0.3, "tau_lo": 0.1, "tau_hi": 0.5}]
    ceiling = next(r for r in rows if r["signal"] == "seed_ceiling")
    for fig in (plots.ranking_ws_vs_standalone(scores, ["a", "b"], rows), plots.ranking_tau(rows),
                plots.ranking_tau_vs_steps(curve, ceiling), plots.ranking_tau_vs_steps([])):
        assert fig.axes
        plt.close(fig)



def test_tau_gap_is_paired_and_variant_gaps_name_each_other_variant():
    truth = np.arange(12.0)
    gap, low, high = R.tau_gap(truth, truth[::-1], truth, RESAMPLES)
    assert (gap, low, high) == pytest.approx((2.0, 2.0, 2.0))  # +1 - (-1) in every resample: pairing keeps the order
    noisy = truth + np.random.default_rng(0).normal(0, 3, 12)
    gap, low, high = R.tau_gap(noisy, truth, truth, RESAMPLES)
    assert gap < 0 and low <= gap <= high <= 0
    assert all(np.isnan(R.tau_gap([1.0], [2.0], [3.0])))
    with pytest.raises(ValueError, match=r"lengths \[12, 11, 12\]"):
        R.tau_gap(truth, truth[:-1], truth)
    scores = [{"arch": str(i), "truth.test_miou": t, "ws.a": t, "ws.b": n, "ws.c": -t}
              for i, (t, n) in enumerate(zip(truth, noisy))]
    gaps = R.variant_gaps(scores, ["a", "b", "c"], "a", RESAMPLES)
    assert set(gaps) == {f"tau_gap_to_best.ws.{v}{end}" for v in ("b", "c") for end in ("", "_lo", "_hi")}
    assert gaps["tau_gap_to_best.ws.c"] == pytest.approx(2.0) and gaps["tau_gap_to_best.ws.b"] > 0
    # contrasts against the profile's variant whichever ranks best: each other variant minus it
    against_b = R.variant_gaps(scores, ["a", "b", "c"], "a", RESAMPLES, reference="b")
    assert {k for k in against_b if k.startswith("tau_vs_profile")} == {
        f"tau_vs_profile.ws.{v}{end}" for v in ("a", "c") for end in ("", "_lo", "_hi")}
    assert against_b["tau_vs_profile.ws.a"] == pytest.approx(gaps["tau_gap_to_best.ws.b"])
    assert against_b["tau_vs_profile.ws.c"] < 0


def test_loss_gaps_pair_each_variants_loss_with_its_miou():
    truth = np.arange(12.0)
    noisy = truth + np.random.default_rng(0).normal(0, 3, 12)
    scores = [{"arch": str(i), "truth.test_miou": t, "ws.a": n, "ws_loss.a": t, "ws.b": t, "ws_loss.b": n, "ws.c": t}
              for i, (t, n) in enumerate(zip(truth, noisy))]
    gaps = R.loss_gaps(scores, ["a", "b", "c"], RESAMPLES)
    assert set(gaps) == {f"tau_gap.ws_loss_vs_miou.{v}{end}" for v in ("a", "b") for end in ("", "_lo", "_hi")} | {
        "tau_gap.ws_loss_vs_miou.n_positive"}  # c has no loss column
    assert gaps["tau_gap.ws_loss_vs_miou.a"] == pytest.approx(1 - R.kendall(noisy, truth))
    assert gaps["tau_gap.ws_loss_vs_miou.b"] == pytest.approx(-gaps["tau_gap.ws_loss_vs_miou.a"])
    assert gaps["tau_gap.ws_loss_vs_miou.a_lo"] <= gaps["tau_gap.ws_loss_vs_miou.a"] <= gaps["tau_gap.ws_loss_vs_miou.a_hi"]
    assert gaps["tau_gap.ws_loss_vs_miou.n_positive"] == 1
    assert R.loss_gaps([{k: v for k, v in r.items() if "loss" not in k} for r in scores], ["a"], RESAMPLES) == {}


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[3].update(test_miou=float("nan")), r"row 4: test_miou = nan is not a finite number"),
    (lambda rows: rows[3].update(test_crack_iou="high"), r"row 4: test_crack_iou = 'high' is not a finite number"),
    (lambda rows: rows[5].update(test_miou=1.7), r"row 6: test_miou = 1.7 lies outside \[0, 1\]"),
    (lambda rows: rows.append(dict(rows[0])), r"row 17 repeats arch = '.+', seed = 0"),
    (lambda rows: rows[2].update(arch="Conv3x3_w60-Foo_w50"), r"row 3: arch: architecture 'Conv3x3_w60-Foo_w50'"),
])
def test_load_table_refuses_a_corrupt_table_naming_file_and_row(monkeypatch, tmp_path, change, message):
    rows = table_rows(8)
    change(rows)
    profile = table_profile(monkeypatch, tmp_path, rows)
    with pytest.raises(R.RankingError, match=r"table\.csv: " + message):
        R.load_table(profile, 0)


def test_load_table_refuses_an_empty_file(monkeypatch, tmp_path):
    profile = table_profile(monkeypatch, tmp_path)
    (tmp_path / "table.csv").write_text("")
    with pytest.raises(R.RankingError, match=r"table\.csv: no table after its provenance line"):
        R.load_table(profile, 0)


def test_ws_on_test_scores_the_profiles_variant_on_the_test_images(monkeypatch):
    from types import SimpleNamespace

    from linas_lib.supernet import evaluate, train

    seen = {}

    class FakeEvaluator:
        def __init__(self, model, split, batch_size, recalib=None, recalib_batches=0):
            seen.update(model=model, split=split, recalib=recalib, recalib_batches=recalib_batches)

        def scores(self, choices):
            value = np.atleast_2d(choices).sum(axis=1) / 100
            return {"miou": value, "crack_iou": value / 2, "loss": 1 - value}

    profile = load_profile("cpu")
    own = R.profile_variant(profile.supernet, train.VARIANTS)
    fake = SimpleNamespace(model="net", features={"train": "train images", "val": "val images", "test": "test images"},
                           cfg=profile.supernet)
    monkeypatch.setattr(evaluate, "WeightSharingEvaluator", FakeEvaluator)
    monkeypatch.setattr(train, "trained_supernet", lambda p, seed, variant=None: fake)
    truth = R.ground_truth(table_rows(4))
    columns = R.ws_on_test_columns(profile, 0, truth.choices)
    assert own is not None and set(columns) == {f"ws_on_test.{own}", f"ws_loss_on_test.{own}"}
    assert seen == {"model": "net", "split": "test images", "recalib": "train images",
                    "recalib_batches": profile.supernet.bn_recalib_batches}
    assert columns[f"ws_loss_on_test.{own}"] == pytest.approx(columns[f"ws_on_test.{own}"] - 1)
    unnamed = replace(profile, supernet=replace(profile.supernet, momentum_bins=2))  # settings no variant names
    assert R.ws_on_test_columns(unnamed, 0, truth.choices) == {}
