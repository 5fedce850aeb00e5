"""The scale study of 07 (linas_lib.analysis.scale): projections to more seeds, the seeds a goal
needs, and the checks against a seed extension."""

from __future__ import annotations

import math

import numpy as np
import pytest

from linas_lib.analysis import scale
from linas_lib.analysis.ranking import kendall
from linas_lib.analysis.ws_shortfall import mean_reliability, truth_ceiling


def test_projections_at_the_measured_scale_are_the_measurement():
    assert scale.halves_tau(0.6, 1) == pytest.approx(0.6)
    assert scale.signal_tau(0.65, 0.79, 2, 2) == pytest.approx(0.65)
    assert mean_reliability(0.5, math.inf) == 1.0 and math.isnan(mean_reliability(-0.1, 2))
    taus = [scale.signal_tau(0.65, 0.79, 2, m) for m in (1, 2, 4, 16, math.inf)]
    assert taus == sorted(taus) and taus[-1] < 0.7  # more seeds help a little, and no further


def test_seeds_needed_is_the_smallest_count_that_reaches_the_goal():
    needed = scale.seeds_needed(lambda m: truth_ceiling(0.379, m), 0.9)
    first = next(m for m in range(1, 1000) if truth_ceiling(0.379, m) >= 0.9)
    assert needed == first == 32
    assert scale.seeds_needed(lambda m: scale.halves_tau(0.794, m), 0.8) == 2
    assert scale.seeds_needed(lambda m: scale.signal_tau(0.652, 0.794, 2, m), 0.8) is None  # beyond any table


def test_ceiling_rows_map_the_ci_ends_and_give_no_limit_by_construction():
    rows = scale.ceiling_rows([
        {"signal": "seed_ceiling", "metric": "test_miou", "tau": 0.794, "tau_lo": 0.749, "tau_hi": 0.835},
        {"signal": "seed_ceiling_mf", "metric": "test_miou", "tau": 0.379, "tau_lo": 0.062, "tau_hi": 0.663},
        {"signal": "seed_ceiling", "metric": "test_crack_iou", "tau": 0.1}])
    assert [r["signal"] for r in rows] == ["seed_ceiling", "seed_ceiling_mf"]
    mf = rows[1]
    assert mf["needed"] == 32 and mf["needed_lo"] < 32 < mf["needed_hi"]  # the CI's high tau needs fewest
    assert "tau_inf" not in mf and mf["tau_m2"] == pytest.approx(truth_ceiling(0.379, 2))
    summary = scale.scale_summary(rows)
    assert summary["scale.needed.seed_ceiling_mf"] == 32 and "scale.tau_inf.seed_ceiling" not in summary


def test_the_projection_matches_a_simulated_larger_table():
    rng = np.random.default_rng(0)
    n = 20000
    accuracy = rng.normal(size=n)
    seeds = accuracy[:, None] + rng.normal(scale=0.6, size=(n, 4))
    signal = accuracy + rng.normal(scale=0.8, size=n)
    pair = np.mean([kendall(seeds[:, 0], seeds[:, 1]), kendall(seeds[:, 2], seeds[:, 3])])
    projected = scale.signal_tau(kendall(signal, seeds[:, :2].mean(axis=1)), pair, 2, 4)
    assert projected == pytest.approx(kendall(signal, seeds.mean(axis=1)), abs=0.01)
    halves = kendall(seeds[:, :2].mean(axis=1), seeds[:, 2:].mean(axis=1))
    assert scale.halves_tau(pair, 2) == pytest.approx(halves, abs=0.01)
    limit = scale.signal_tau(kendall(signal, seeds[:, :2].mean(axis=1)), pair, 2, math.inf)
    assert limit == pytest.approx(kendall(signal, accuracy), abs=0.01)


def test_study_checks_each_projection_on_the_extension():
    rng = np.random.default_rng(1)
    n = 60
    accuracy = rng.normal(size=n)
    archs = [f"a{i}" for i in range(n)]
    table = [{"arch": a, "seed": s, "val_miou": float(accuracy[i]), "test_miou": float(accuracy[i] + rng.normal())}
             for i, a in enumerate(archs) for s in (0, 1)]
    scores = [{"arch": a, "ws.v": float(accuracy[i] + rng.normal()), "near": 0.0} for i, a in enumerate(archs)]
    shortfall = [{"signal": "seed_ceiling", "metric": "test_miou", "tau": 0.5, "tau_lo": 0.4, "tau_hi": 0.6}]
    noise = [{"score": "ws", "weights": "ema", "steps": s, "tau_limit": t, "tau_limit_lo": "", "tau_limit_hi": ""}
             for s, t in ((10, 0.3), (20, 0.4))]
    truth = [{"signal": "ws.v", "tau_all": 0.42, "tau_held_out": 0.38, "held_expected": 0.40},
             {"signal": "truth", "truth": "design", "n_seeds": 2, "halves_tau": 0.55, "halves_expected": 0.57},
             {"signal": "truth", "truth": "held_out", "n_seeds": 3, "halves_tau": 0.55, "halves_expected": 0.57}]
    rows = {r["signal"]: r for r in scale.study(shortfall, scores, ["ws.v", "near"], table, noise, truth, 200, 0)}
    assert set(rows) == {"seed_ceiling", "ws.v", "ws_replicas.ws.ema.tau_limit"}  # near is no WS signal
    # checked on the added seeds alone (no choice saw them), with each group's own seed-pair tau
    assert rows["seed_ceiling"]["tau_measured"] == 0.55 and rows["seed_ceiling"]["tau_projected"] == 0.57
    ws = rows["ws.v"]
    assert ws["measured_m"] == 3 and (ws["tau_measured"], ws["tau_projected"]) == (0.38, 0.40)
    assert ws["tau_inf_lo"] <= ws["tau_inf"] <= ws["tau_inf_hi"]
    limit = rows["ws_replicas.ws.ema.tau_limit"]
    assert limit["steps"] == 20 and limit["tau_now"] == 0.4 and "tau_measured" not in limit  # the last step
    nan_last = noise + [{**noise[0], "steps": 30, "tau_limit": "nan"}]
    assert scale.limit_rows(nan_last, 0.5, 2) == []  # the last step has no limit: none, not an earlier one


def test_seeds_that_do_not_agree_are_undefined_not_unreachable():
    row = scale.ceiling_rows([{"signal": "seed_ceiling", "metric": "test_miou", "tau": -0.1}])[0]
    assert row["needed"] is None and math.isnan(row["reachable"])
