"""truth_seeds: each signal's tau against the design seeds', the held-out seeds' and every seed's mean."""

import math

import numpy as np
import pytest

from linas_lib.analysis import truth_seeds as T
from linas_lib.space import LINAS_SPACE, arch_string


def _archs(n: int, rng) -> list[str]:
    out = set()
    while len(out) < n:
        out.add(arch_string(LINAS_SPACE.sample(rng, 1)[0]))
    return sorted(out)


def _rows(archs, values, seeds):
    """Table-like rows: ``values[i, j]`` is seed ``seeds[j]``'s test (and val) mIoU of ``archs[i]``."""
    return [{"arch": a, "seed": s, "test_miou": float(values[i, j]), "val_miou": float(values[i, j])}
            for i, a in enumerate(archs) for j, s in enumerate(seeds)]


@pytest.fixture()
def study():
    """60 architectures, two seed groups of the same noise; the scores shuffled and one
    architecture missing a held-out seed, so alignment by name is what the study must use."""
    rng = np.random.default_rng(3)
    archs = _archs(60, rng)
    quality = rng.normal(0.65, 0.05, len(archs))
    design = quality[:, None] + rng.normal(0, 0.01, (len(archs), 2))
    held = quality[:, None] + rng.normal(0, 0.01, (len(archs), 2))
    scores = [{"arch": a, "honest": float(q + rng.normal(0, 0.03)), "fitted": float(d), "noise": float(rng.normal())}
              for a, q, d in zip(archs, quality, design.mean(axis=1))]
    order = rng.permutation(len(scores))
    added = [r for r in _rows(archs, held, (2, 3)) if not (r["arch"] == archs[0] and r["seed"] == 3)]
    return [scores[i] for i in order], _rows(archs, design, (0, 1)), added


def test_rows_score_each_signal_against_three_truths_with_paired_cis(study):
    scores, table, added = study
    rows = T.truth_seed_rows(scores, ["honest", "fitted", "noise"], table, added, n_resamples=300, seed=0)
    by = {r["signal"]: r for r in rows if r["signal"] != "truth"}
    assert {r["n"] for r in rows} == {59}  # the architecture without its seed 3 is left out
    assert by["fitted"]["tau_design"] == pytest.approx(1.0)  # the design truth itself, matched by name
    # a signal fitted to the design seeds loses against seeds it never saw, beyond what the noise predicts
    assert by["fitted"]["held_minus_design_hi"] < 0 and by["fitted"]["held_minus_expected_hi"] < 0
    assert by["fitted"]["held_minus_design"] == pytest.approx(by["fitted"]["tau_held_out"] - 1.0)
    honest = by["honest"]
    assert honest["held_minus_expected_lo"] < 0 < honest["held_minus_expected_hi"]  # same noise: nothing shown
    assert honest["held_minus_expected"] == pytest.approx(honest["tau_held_out"] - honest["held_expected"])
    assert honest["all_minus_design_lo"] <= honest["all_minus_design"] <= honest["all_minus_design_hi"]
    assert abs(by["noise"]["tau_design"]) < 0.2
    truths = {r["truth"]: r for r in rows if r["signal"] == "truth"}
    assert set(truths) == {"design", "held_out"} and truths["design"]["n_seeds"] == 2
    assert 0.7 < truths["design"]["pair_tau"] < 1 and truths["design"]["halves_tau"] == truths["held_out"]["halves_tau"]
    assert truths["design"]["halves_expected"] == pytest.approx(truths["design"]["halves_tau"], abs=0.05)
    summary = T.truth_seed_summary(rows)
    assert summary["truth_seeds.n_beyond_noise_shown"] == 1.0 and summary["truth_seeds.n_archs"] == 59.0
    assert summary["truth_seeds.tau.honest.all"] == pytest.approx(honest["tau_all"])
    assert "truth_seeds.held_minus_expected.honest_lo" in summary and T.truth_seed_summary([]) == {}


def test_expected_tau_is_the_attenuation_of_the_truths_reliabilities():
    # by hand: r = sin(pi tau / 2); a 2-seed mean's reliability 2r / (1 + r); the correlation
    # scales with the square root of the reliabilities' ratio
    def root_reliability(pair_tau, n):
        r = math.sin(math.pi * pair_tau / 2)
        return math.sqrt(n * r / (1 + (n - 1) * r))

    by_hand = 2 / math.pi * math.asin(math.sin(math.pi / 4) * root_reliability(0.6, 2) / root_reliability(0.8, 2))
    assert T.expected_tau(0.5, 0.8, 2, 0.6, 2) == pytest.approx(by_hand) == pytest.approx(0.47369, abs=1e-5)
    assert T.expected_tau(0.6, 0.8, 2, 0.8, 2) == pytest.approx(0.6)
    assert T.expected_tau(-0.6, 0.8, 2, 0.7, 2) == pytest.approx(-T.expected_tau(0.6, 0.8, 2, 0.7, 2))
    assert T.expected_tau(0.6, 0.8, 2, 0.8, 4) > 0.6  # more seeds: a less noisy truth
    assert math.isnan(T.expected_tau(0.6, 0.8, 2, -0.1, 2)) and math.isnan(T.expected_tau(math.nan, 0.8, 2, 0.8, 2))


def test_the_noise_model_predicts_a_simulated_noisier_truth():
    """Seeds 2 and 3 three times as noisy: the observed tau against their mean is what the model expects."""
    rng = np.random.default_rng(11)
    archs = _archs(400, rng)
    quality = rng.normal(0.65, 0.05, len(archs))
    design = quality[:, None] + rng.normal(0, 0.01, (len(archs), 2))
    held = quality[:, None] + rng.normal(0, 0.03, (len(archs), 2))
    scores = [{"arch": a, "signal": float(q + rng.normal(0, 0.04))} for a, q in zip(archs, quality)]
    row = T.truth_seed_rows(scores, ["signal"], _rows(archs, design, (0, 1)), _rows(archs, held, (2, 3)),
                            n_resamples=200)[0]
    assert row["held_minus_design"] < -0.03  # a real drop, from noise alone
    assert row["held_minus_expected"] == pytest.approx(0, abs=0.02)
    assert row["held_minus_expected_lo"] < 0 < row["held_minus_expected_hi"]


def test_too_few_seeds_shared_seeds_or_architectures_are_refused_with_the_reason(study):
    scores, table, added = study
    with pytest.raises(T.TruthSeedsError, match=r"has no finished item .* one truth only"):
        T.truth_seed_rows(scores, ["honest"], table, [])
    one_seed = [r for r in added if r["seed"] == 2]
    with pytest.raises(T.TruthSeedsError, match=r"each group needs >= 2 seeds; the table \(bench/table.csv\) has 2, "
                                                 r"the extension \(bench/extension.json's items\) 1"):
        T.truth_seed_rows(scores, ["honest"], table, one_seed)
    with pytest.raises(T.TruthSeedsError, match=r"share seed\(s\) \[1\]"):
        T.truth_seed_rows(scores, ["honest"], table, [dict(r, seed=1) if r["seed"] == 3 else r for r in added])
    few = {s["arch"] for s in scores[:2]}
    with pytest.raises(T.TruthSeedsError, match="2 architecture"):
        T.truth_seed_rows(scores, ["honest"], table, [r for r in added if r["arch"] in few])


def test_pools_contrast_the_tuned_signals_with_the_control_arm(study):
    scores, table, added = study
    scores = [dict(r, flops=r["honest"]) for r in scores]  # the honest signal again, under a control-arm name
    rows = T.truth_seed_rows(scores, ["honest", "fitted", "flops"], table, added, n_resamples=200, seed=0)
    by = {r["signal"]: r for r in rows}
    assert by["pool.tuned"]["n_signals"] == 2 and by["pool.control"]["n_signals"] == 1
    for d in T.DIFFERENCES:
        assert by["pool.tuned"][d] == pytest.approx((by["honest"][d] + by["fitted"][d]) / 2)
        assert by["pool.control"][d] == pytest.approx(by["flops"][d])
        assert by["pool.tuned_minus_control"][d] == pytest.approx(by["pool.tuned"][d] - by["pool.control"][d])
    assert by["pool.tuned_minus_control"]["held_minus_expected_hi"] < 0  # the fitted signal drags the tuned pool down
    summary = T.truth_seed_summary(rows)
    assert "truth_seeds.pool.tuned_minus_control.held_minus_expected_lo" in summary
    assert summary["truth_seeds.n_archs"] == 59.0 and "truth_seeds.tau.pool.tuned.design" not in summary
    assert T.pool_weights(["flops"]) == {"tuned": [], "control": [1.0], "tuned_minus_control": []}
