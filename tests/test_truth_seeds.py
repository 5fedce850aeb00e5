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
    rng = np.random.default_rng(3)
    archs = _archs(60, rng)
    quality = rng.normal(0.65, 0.05, len(archs))
    design = quality[:, None] + rng.normal(0, 0.01, (len(archs), 2))
    held = quality[:, None] + rng.normal(0, 0.01, (len(archs), 2))
    scores = [{"arch": a, "honest": float(q + rng.normal(0, 0.03)), "fitted": float(d), "noise": float(rng.normal())}
              for a, q, d in zip(archs, quality, design.mean(axis=1))]
    return scores, _rows(archs, design, (0, 1)), _rows(archs, held, (2, 3))


def test_rows_score_each_signal_against_three_truths_with_paired_cis(study):
    scores, table, added = study
    rows = T.truth_seed_rows(scores, ["honest", "fitted", "noise"], table, added, n_resamples=300, seed=0)
    by = {r["signal"]: r for r in rows if r["signal"] != "truth"}
    assert by["fitted"]["tau_design"] == pytest.approx(1.0)  # the design truth itself
    # a signal fitted to the design seeds loses against seeds it never saw, beyond resampling noise
    assert by["fitted"]["held_minus_design_hi"] < 0
    assert by["fitted"]["held_minus_design"] == pytest.approx(by["fitted"]["tau_held_out"] - 1.0)
    honest = by["honest"]
    assert honest["held_minus_design_lo"] < 0 < honest["held_minus_design_hi"]  # the same seeds' noise: no drop shown
    assert honest["all_minus_design_lo"] <= honest["all_minus_design"] <= honest["all_minus_design_hi"]
    assert abs(by["noise"]["tau_design"]) < 0.2
    truths = {r["truth"]: r for r in rows if r["signal"] == "truth"}
    assert set(truths) == {"design", "held_out"} and truths["design"]["n_seeds"] == 2
    assert 0.7 < truths["design"]["pair_tau"] < 1 and truths["design"]["halves_tau"] == truths["held_out"]["halves_tau"]
    summary = T.truth_seed_summary(rows)
    assert summary["truth_seeds.n_held_drop_shown"] == 1.0 and summary["truth_seeds.n_archs"] == 60.0
    assert summary["truth_seeds.tau.honest.all"] == pytest.approx(honest["tau_all"])
    assert "truth_seeds.held_minus_design.honest_lo" in summary and T.truth_seed_summary([]) == {}


def test_expected_tau_shrinks_with_a_noisier_truth_only():
    assert T.expected_tau(0.6, 0.8, 2, 0.8, 2) == pytest.approx(0.6)
    assert 0 < T.expected_tau(0.6, 0.8, 2, 0.7, 2) < 0.6
    assert T.expected_tau(-0.6, 0.8, 2, 0.7, 2) == pytest.approx(-T.expected_tau(0.6, 0.8, 2, 0.7, 2))
    assert T.expected_tau(0.6, 0.8, 2, 0.8, 4) > 0.6  # more seeds: a less noisy truth
    assert math.isnan(T.expected_tau(0.6, 0.8, 2, -0.1, 2))


def test_too_few_seeds_or_architectures_are_refused_with_the_reason(study):
    scores, table, added = study
    one_seed = [r for r in added if r["seed"] == 2]
    with pytest.raises(T.TruthSeedsError, match="each group needs >= 2 seeds; the table has 2, the extension 1"):
        T.truth_seed_rows(scores, ["honest"], table, one_seed)
    with pytest.raises(T.TruthSeedsError, match="2 architecture"):
        T.truth_seed_rows(scores, ["honest"], table, [r for r in added if r["arch"] in {s["arch"] for s in scores[:2]}])
