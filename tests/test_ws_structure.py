"""The WS-structure study: one-hot designs, ridge fits, and what a fit ranks."""

import numpy as np
import pytest

from linas_lib.analysis import ws_structure as W
from linas_lib.space import SearchSpace

SPACE = SearchSpace(n_layers=3, n_choices=4)


def test_features_are_the_one_hot_layers_adjacent_pairs_and_an_intercept():
    X = W.features(SPACE, np.array([[1, 2, 3]]), "pairs").toarray()[0]
    assert X.shape == (3 * 4 + 2 * 16 + 1,) and X.sum() == 3 + 2 + 1
    assert X[[1, 4 + 2, 8 + 3, 12 + 1 * 4 + 2, 12 + 16 + 2 * 4 + 3, 44]].tolist() == [1.0] * 6
    assert W.features(SPACE, np.array([[1, 2, 3]]), "additive").shape == (1, 13)
    with pytest.raises(ValueError, match="model must be one of"):
        W.features(SPACE, np.array([[1, 2, 3]]), "cubic")


def test_ridge_fit_is_least_squares_with_a_penalty():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    np.testing.assert_allclose(W.ridge_fit(X, y, 0.0), np.linalg.lstsq(X, y, rcond=None)[0])
    np.testing.assert_allclose(W.ridge_fit(X, y, 2.0), np.linalg.solve(X.T @ X + 2 * np.eye(3), X.T @ y))


def test_the_pairs_fit_explains_a_pair_effect_that_standalone_accuracy_does_not_share():
    space = SearchSpace(n_layers=3, n_choices=6)
    every = space.decode(np.arange(space.size))
    additive = 0.5 + 0.02 * every[:, 0] + 0.01 * every[:, 2]
    ws = additive + 0.05 * (every[:, 0] == every[:, 1])  # the supernet's own pair effect
    # the table (every fifth): architectures whose standalone accuracy is the additive part alone
    rows = W.structure_rows(space, every, ws, every[::5], additive[::5], ws[::5], np.random.default_rng(0), 200)
    rows = {r["model"]: r for r in rows}
    assert rows["pairs"]["held_out_resid_sd_pts"] < 0.5 * rows["additive"]["held_out_resid_sd_pts"]
    assert rows["pairs"]["held_out_r2"] > rows["additive"]["held_out_r2"]
    assert rows["additive"]["tau_gap_ci95_low"] > 0  # the additive fit ranks the table better than WS
    assert rows["pairs"]["tau_gap_ci95_low"] < 0 < rows["pairs"]["tau_gap_ci95_high"]  # the pairs fit is WS again
    assert rows["pairs"]["n_weights"] == 3 * 6 + 2 * 36 + 1 and rows["additive"]["n_weights"] == 19
    flat = W.structure_summary(list(rows.values()))
    assert flat["ws_structure.tau.ws"] == rows["ws"]["tau"] and "ws_structure.tau_gap_vs_ws.ws" not in flat


def test_structure_rows_reject_too_few_evaluations_and_mismatched_ws():
    every = SPACE.decode(np.arange(SPACE.size))
    table, standalone = every[:4], [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="at least 10 WS evaluations"):
        W.structure_rows(SPACE, every[:5], np.zeros(5), table, standalone, np.zeros(4), np.random.default_rng(0))
    with pytest.raises(ValueError, match="raw_ws has 3 values for 4 table architectures"):
        W.structure_rows(SPACE, every, np.zeros(len(every)), table, standalone, np.zeros(3), np.random.default_rng(0))


class _Latency:
    """One target: a random per-(layer, choice) cost table, budget 1.5."""

    def __init__(self, space, rng):
        self.table = rng.uniform(0.1, 1.0, (space.n_layers, space.n_choices))
        self.budgets_ms = [1.5]

    def predict(self, choices):
        choices = np.asarray(choices)
        return self.table[np.arange(choices.shape[1]), choices].sum(axis=1)[:, None]


class _WS:
    def __init__(self):
        self.calls = 0

    def evaluate(self, choices):
        self.calls += len(choices)
        c = np.asarray(choices)
        return 0.5 + 0.02 * c[:, 0] - 0.01 * c[:, 2] + 0.03 * (c[:, 0] == c[:, 1])


def test_sweep_evaluates_the_predicted_fronts_and_can_only_raise_the_best_known_front():
    from linas_lib.search.archive import AccuracyCache
    from linas_lib.search.experiment import MethodRun, ParetoExperiment

    rng = np.random.default_rng(3)
    space = SearchSpace(n_layers=3, n_choices=5)
    latency, ws = _Latency(space, rng), _WS()
    seen = space.sample(rng, 40)
    seen = seen[np.unique(space.encode(seen), return_index=True)[1]]
    searched = [MethodRun("m", 0, seen, ws.evaluate(seen), latency.predict(seen))]
    exp = ParetoExperiment(["a"], latency.budgets_ms)
    facts, run = W.sweep(space, exp, searched, AccuracyCache(ws), latency)
    # brute force: within the budget, a higher prediction than every cheaper architecture
    every = space.decode(np.arange(space.size))
    pred = W.features(space, every, "pairs") @ W.ridge_fit(W.features(space, seen, "pairs"), searched[0].miou)
    lat = latency.predict(every)[:, 0]
    assert len(np.unique(lat)) == len(lat)  # no latency ties (their rule: test_predicted_fronts_break_ties)
    front = [i for i in range(len(every)) if lat[i] <= 1.5 and all(pred[i] > pred[j] for j in range(len(every))
                                                                 if lat[j] < lat[i])]
    assert space.encode(run.choices).tolist() == front
    assert facts["n_archs"] == len(front) and 0 <= facts["n_new"] <= len(front)
    assert facts["with_sweep_hv"] >= max(facts["best_known_hv"], facts["sweep_hv"])
    np.testing.assert_allclose(run.miou, ws.evaluate(run.choices))
    flat = W.sweep_summary({**facts, "with_sweep_hv": 0.8}, {"final": {"m": {"mean": 0.5}}}, reference_hv=0.4)
    assert flat["ws_sweep.hv_frac.m"] == pytest.approx(0.25) and W.sweep_summary({}, {}, 1.0) == {}


def test_predicted_fronts_break_ties_and_skip_a_target_nothing_meets():
    space = SearchSpace(n_layers=2, n_choices=3)
    weights = np.zeros(2 * 3 + 9 + 1)
    weights[[0, 1, 2]] = [0.1, 0.3, 0.3]  # layer 0's choices; layer 1 adds nothing

    class Flat:  # latency = layer 0's choice index, so architectures tie in threes
        budgets_ms = [2.0, 2.0]

        def predict(self, choices):
            return np.column_stack([choices[:, 0], choices[:, 0] + 10.0])

    codes = W.predicted_fronts(space, weights, Flat(), [0, 1], limits_ms=[2.0, 2.0])
    # target 0: (0, *) at latency 0 (prediction 0.1, the lowest code: (0, 0)), then (1, *) at 1
    # (0.3, beats 0.1: (1, 0)); (2, *) at 2 only ties 0.3. Target 1: nothing within 2 ms.
    assert codes.tolist() == space.encode(np.array([[0, 0], [1, 0]])).tolist()


def test_smallest_path_coverage_counts_the_layers_each_set_shares_with_the_smallest_path():
    from linas_lib.analysis import ws_structure
    from linas_lib.space import arch_string

    smallest = np.zeros(5, dtype=np.int64)
    choices = np.array([[0, 0, 0, 1, 1], [0, 1, 1, 1, 1], [2, 2, 2, 2, 2], [0, 0, 0, 0, 0]])
    miou = np.array([0.9, 0.5, 0.6, 0.99])
    lat = np.array([[5.0], [6.0], [7.0], [50.0]])  # the smallest path itself is over the only budget
    chosen = [{"target": "a", "arch_ws": arch_string(choices[0]), "arch": arch_string(choices[2])}]
    rows = {r["set"]: r for r in ws_structure.smallest_path_coverage(
        smallest, [arch_string(choices[2]), arch_string(choices[1])], choices, miou, lat, [10.0], chosen, top_k=2)}
    assert set(rows) == {"table", "pool", "pool_top2", "arch_ws", "arch"}  # no arch_ws_loss column: skipped
    assert rows["pool"]["n"] == 3 and rows["pool"]["mean_smallest_layers"] == pytest.approx(4 / 3)
    assert rows["pool_top2"]["n"] == 2 and rows["pool_top2"]["share_ge3"] == 0.5  # archs 0 (3 layers) and 2 (none)
    assert rows["table"]["share_ge1"] == 0.5 and rows["table"]["share_ge2"] == 0.0
    assert rows["arch_ws"]["share_ge3"] == 1.0 and rows["arch"]["mean_smallest_layers"] == 0.0
    figures = ws_structure.coverage_summary(list(rows.values()))
    assert figures["near_smallest.share_ge2.pool"] == pytest.approx(1 / 3) and figures["near_smallest.n.table"] == 2.0
