"""Pareto search: indicators against reference values, samplers, NSGA-II (EPR), NEAR, I3."""

from __future__ import annotations

import dataclasses
import json
import lzma

import numpy as np
import pytest
import torch

from linas_lib.keys import seeded_module
from linas_lib.space import SearchSpace
from linas_lib.supernet.model import MixedLayer
from linas_lib.search import archive as A
from linas_lib.search import experiment as E
from linas_lib.search import fidelity, indicators, methods, samplers, zero_cost
from linas_lib.search.epr import run_epr
from linas_lib.search.objectives import objectives

TINY = SearchSpace(n_layers=3, n_choices=4)


# ---------------------------------------------------------------- fakes


class FakeAccuracy:
    """Additive mIoU in [0, 1]; records every architecture it is asked about."""

    def __init__(self, space, rng):
        self.table = rng.random((space.n_layers, space.n_choices))
        self.seen: list[np.ndarray] = []

    def evaluate(self, choices):
        choices = np.asarray(choices)
        self.seen.extend(choices)
        return self.table[np.arange(choices.shape[1]), choices].mean(axis=1)


class FakeLatency:
    """Additive latency on two targets, budgets at 70 % of the dearest architecture."""

    def __init__(self, space, rng, n_targets=2):
        self.table = rng.random((n_targets, space.n_layers, space.n_choices)) + 0.1
        self.target_names = tuple(f"t{i}" for i in range(n_targets))
        self.budgets_ms = 0.7 * self.table.max(axis=2).sum(axis=1)

    def predict(self, choices):
        choices = np.asarray(choices)
        idx = np.arange(choices.shape[1])
        return np.stack([t[idx, choices].sum(axis=1) for t in self.table], axis=1)


def all_of(space):
    return space.decode(np.arange(space.size))


# ---------------------------------------------------------------- indicators vs moocore


def read_sets(text):
    """Point sets of a moocore data file (sets separated by blank lines)."""
    sets, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append([float(v) for v in line.split()])
        elif current:
            sets.append(np.array(current)), current.clear()
    if current:
        sets.append(np.array(current))
    return sets


@pytest.fixture
def moo_ref(shared_data):
    folder = shared_data / "moo-reference"
    return folder, json.loads((folder / "derived" / "reference_values_moocore_0.3.2.json").read_text())


def test_hv_matches_moocore_input1_all_sets(moo_ref):
    folder, ref = moo_ref
    sets = read_sets((folder / "moocore" / "data" / "input1.dat").read_text())
    expected = ref["input1.dat"]["per_set"]
    assert len(sets) == len(expected) == 10
    hv = indicators.Hypervolume([10.0, 10.0])
    for points, want in zip(sets, expected):
        assert hv(points) == pytest.approx(want["hv_ref10"], rel=1e-9)
        assert indicators.nondominated(points).tolist() == want["nondominated_row_idx"]  # 0-based


def test_hv_documented_doctest(moo_ref):
    _, ref = moo_ref
    doc = ref["documented_doctest"]
    assert indicators.hypervolume(doc["points"], [10, 10]) == pytest.approx(doc["hv_min_ref10"], rel=1e-12)


@pytest.mark.parametrize("name", ["uniform-250-10-3d.txt.xz", "spherical-250-10-3d.txt.xz"])
def test_hv_matches_moocore_3d(moo_ref, name):
    folder, ref = moo_ref
    first = read_sets(lzma.decompress((folder / "moocore" / "data" / name).read_bytes()).decode())[0]
    want = ref[name]
    assert first.shape == (want["set1_n"], 3)
    assert indicators.hypervolume(first, want["set1_ref"]) == pytest.approx(want["set1_hv"], rel=1e-9)


def test_hv_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        indicators.hypervolume(np.zeros((0, 2)), [1, 1])
    with pytest.raises(ValueError, match="non-finite"):
        indicators.hypervolume([[0.5, np.nan]], [1, 1])
    with pytest.raises(ValueError, match="does not dominate the reference point"):
        indicators.hypervolume([[0.5, 0.5], [1.5, 0.2]], [1, 1])
    with pytest.raises(ValueError, match="objectives"):
        indicators.hypervolume([[0.5, 0.5, 0.5]], [1, 1])


def test_igd_known_case():
    ref_front = [[0.0, 1.0], [1.0, 0.0]]
    assert indicators.igd([[0.0, 1.0]], ref_front) == pytest.approx(np.sqrt(2) / 2)
    assert indicators.igd([[0.0, 1.0], [1.0, 0.0]], ref_front) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="empty"):
        indicators.igd(np.zeros((0, 2)), ref_front)


# ---------------------------------------------------------------- samplers


def test_samplers_shapes_and_determinism():
    lat = FakeLatency(TINY, np.random.default_rng(0))
    probs = np.full((3, 4), 0.25)
    costs = samplers.layer_choice_costs(TINY, lat)
    calls = [
        lambda g: samplers.random_sampler(TINY, g, 50),
        lambda g: samplers.alpha_guided_sampler(TINY, g, 50, probs),
        lambda g: samplers.uniform_pareto_sampler(TINY, g, 50, costs),
        lambda g: samplers.farthest_point_sampler(TINY, g, 20, lat, pool_size=64),
    ]
    for call in calls:
        a, b = call(np.random.default_rng(5)), call(np.random.default_rng(5))
        assert a.dtype == np.int64 and a.shape[1] == 3 and np.array_equal(a, b)
        assert a.min() >= 0 and a.max() < 4


def test_alpha_guided_follows_probs():
    probs = np.zeros((3, 4))
    probs[:, 2] = 1.0
    probs[1] = [0.5, 0.5, 0.0, 0.0]
    draw = samplers.alpha_guided_sampler(TINY, np.random.default_rng(0), 4000, probs)
    assert (draw[:, 0] == 2).all() and (draw[:, 2] == 2).all()
    assert set(draw[:, 1].tolist()) == {0, 1} and abs((draw[:, 1] == 0).mean() - 0.5) < 0.05
    mixed = samplers.alpha_guided_sampler(TINY, np.random.default_rng(0), 4000, probs, uniform_mix=1.0)
    assert abs((mixed[:, 0] == 2).mean() - 0.25) < 0.05
    with pytest.raises(ValueError, match="shape"):
        samplers.alpha_guided_sampler(TINY, np.random.default_rng(0), 5, np.ones((2, 4)))


def test_uniform_pareto_prefers_cheap_choices_deeper():
    costs = np.tile(np.arange(4.0), (3, 1))  # choice 0 cheapest in every layer
    probs = samplers.uniform_pareto_probs(costs, strength=3.0)
    assert np.allclose(probs[0], 0.25)  # first layer uniform
    assert probs[2, 0] > probs[1, 0] > probs[0, 0]
    assert np.all(np.diff(probs[2]) < 0)  # deepest layer: cheaper = likelier
    draw = samplers.uniform_pareto_sampler(TINY, np.random.default_rng(1), 4000, costs)
    assert draw[:, 2].mean() < draw[:, 1].mean() < draw[:, 0].mean()


def test_layer_choice_costs_recover_additive_table():
    lat = FakeLatency(TINY, np.random.default_rng(3))
    costs = samplers.layer_choice_costs(TINY, lat)
    expected = (lat.table / lat.budgets_ms[:, None, None]).mean(axis=0)
    centred = lambda a: a - a.mean(axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(centred(costs), centred(expected))


def test_farthest_point_picks_extremes_first():
    pts = np.array([[0.0], [0.4], [0.5], [1.0], [0.45]])
    order = samplers.farthest_point_indices(pts, 3, start=2)
    assert order.tolist()[0] == 2 and set(order.tolist()[1:]) == {0, 3}
    assert len(set(samplers.farthest_point_indices(pts, 5).tolist())) == 5
    with pytest.raises(ValueError, match="cannot choose"):
        samplers.farthest_point_indices(pts, 6)


# ---------------------------------------------------------------- archive and EPR


def test_archive_counts_once_and_enforces_budget():
    rng = np.random.default_rng(0)
    acc = FakeAccuracy(TINY, rng)
    archive = A.EvaluationArchive(TINY, acc, FakeLatency(TINY, rng), budget=3)
    archive.evaluate([[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    archive.evaluate([[1, 1, 1]])
    assert archive.n_evals == 2 and len(acc.seen) == 2
    with pytest.raises(A.BudgetExhausted, match="only 1"):
        archive.evaluate([[2, 2, 2], [3, 3, 3]])


def epr_truth(space, acc, lat, target):
    """Codes of the true constrained Pareto front, by enumeration."""
    everything = all_of(space)
    truth_lat = lat.predict(everything)
    F = objectives(acc.table[np.arange(space.n_layers), everything].mean(axis=1), truth_lat, lat.budgets_ms, target)
    norm = truth_lat / lat.budgets_ms
    feasible = (norm <= 1).any(axis=1) if target is None else norm[:, target] <= 1
    return set(np.flatnonzero(feasible)[indicators.nondominated(F[feasible])].tolist())


@pytest.mark.parametrize("target", [0, None])
def test_nsga2_finds_true_front_and_never_repeats(target):
    space = SearchSpace(n_layers=4, n_choices=4)  # 256 architectures
    rng = np.random.default_rng(11)
    acc, lat = FakeAccuracy(space, rng), FakeLatency(space, rng)
    archive = A.EvaluationArchive(space, acc, lat, budget=120)
    run_epr(archive, np.random.default_rng(0), pop_size=12, target=target)
    seen = space.encode(np.array(acc.seen))
    assert archive.n_evals == 120 and len(seen) == 120 and len(set(seen.tolist())) == 120
    truth = epr_truth(space, acc, lat, target)
    if target is not None:  # one target: the whole true front, every time
        assert truth <= set(archive.codes())
    else:  # joint (1 + 2 objectives): a larger front; most of it
        assert len(truth & set(archive.codes())) >= 0.8 * len(truth)


@pytest.mark.parametrize("target", [0, None])
def test_nsga2_beats_random_on_a_real_tradeoff(target):
    space = SearchSpace(n_layers=4, n_choices=5)  # 625 architectures, accuracy costs latency
    rng = np.random.default_rng(11)
    acc, lat = FakeAccuracy(space, rng), FakeLatency(space, rng)
    acc.table = 0.5 * acc.table + 0.5 * lat.table.mean(axis=0) / lat.table.max()
    truth = epr_truth(space, acc, lat, target)
    archive = A.EvaluationArchive(space, acc, lat, budget=200)
    run_epr(archive, np.random.default_rng(0), pop_size=16, target=target)
    found = len(truth & set(archive.codes()))
    by_chance = len(truth & set(np.random.default_rng(0).choice(space.size, 200, replace=False).tolist()))
    assert found >= (0.75 if target is not None else 0.5) * len(truth) and found > 1.5 * by_chance


def test_epr_stops_when_space_is_exhausted():
    rng = np.random.default_rng(2)
    archive = A.EvaluationArchive(TINY, FakeAccuracy(TINY, rng), FakeLatency(TINY, rng), budget=500)
    run_epr(archive, np.random.default_rng(0), pop_size=8)
    assert archive.n_evals <= TINY.size and len(set(archive.codes())) == archive.n_evals


# ---------------------------------------------------------------- NEAR zero-cost proxy


def test_effective_rank_known_values():
    assert zero_cost.effective_rank(torch.eye(6)) == pytest.approx(6.0, rel=1e-9)
    rank_one = torch.outer(torch.arange(1.0, 40.0), torch.arange(1.0, 9.0)).double()
    assert zero_cost.effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)
    assert zero_cost.effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0]))) == pytest.approx(2.0)
    assert zero_cost.effective_rank(torch.zeros(4, 3)) == 0.0
    # (B, C, H, W) -> (B*H*W, C): 3 channels holding independent noise have rank close to 3
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert 2.5 < zero_cost.effective_rank(x) <= 3.0
    with pytest.raises(ValueError, match="finite"):
        zero_cost.effective_rank(torch.tensor([[float("nan"), 1.0]]))


class TinySupernet(torch.nn.Module):
    """Supernet-shaped stand-in with small channels (same candidate layers as the real one)."""

    def __init__(self):
        super().__init__()
        self.bottleneck = torch.nn.Conv2d(8, 16, 1, stride=2)
        chans = [(16, 8), (8, 8), (8, 8), (8, 4), (4, 4)]
        self.layers = torch.nn.ModuleList(MixedLayer(i, o) for i, o in chans)


def tiny_supernet():
    return seeded_module(TinySupernet, torch.Generator().manual_seed(0))


def tiny_taps():
    g = torch.Generator().manual_seed(1)
    sizes = [(4, 16), (8, 8), (8, 4), (8, 2)]  # x1..x4 (channels, side) matching the outputs
    x1, x2, x3, x4 = (torch.randn(1, c, s, s, generator=g) for c, s in sizes)
    return x1, x2, x3, x4, torch.randn(1, 8, 2, 2, generator=g)


def test_near_table_additive_and_exact():
    net, taps = tiny_supernet(), tiny_taps()
    table = zero_cost.near_table(net, taps, np.random.default_rng(0), n_contexts=1)
    assert table.shape == (5, 21) and np.isfinite(table).all() and (table > 0).all()
    archs = np.array([[0, 5, 9, 20, 3], [7, 7, 7, 7, 7]])
    exact = zero_cost.exact_scores(net, taps, archs)
    # layer 0 sees the same input in both: its table entry is its exact contribution
    layer0 = [zero_cost.layer_near(net.layers[0].candidates[c], net.bottleneck(taps[-1]))[0] for c in (0, 7)]
    assert np.allclose(table[0, [0, 7]], layer0)
    proxy = zero_cost.NearProxy(table)
    assert np.allclose(proxy(archs), table[np.arange(5), archs].sum(axis=1))
    assert np.all(exact > 0) and np.all(exact <= 2 * (8 + 8 + 8 + 4 + 4))  # erank <= channels


def test_near_at_init_averages_fresh_supernets_of_the_rng():
    taps, archs = tiny_taps(), np.array([[0, 5, 9, 20, 3], [7, 7, 7, 7, 7]])
    one = zero_cost.init_scores(TinySupernet, taps, archs, np.random.default_rng(3), 1)
    rng = np.random.default_rng(3)
    fresh = seeded_module(TinySupernet, torch.Generator().manual_seed(int(rng.integers(2**62))))
    assert np.allclose(one, zero_cost.exact_scores(fresh, taps, archs))  # the rng draws the initialisation
    two = zero_cost.init_scores(TinySupernet, taps, archs, np.random.default_rng(3), 2)
    assert two.shape == (2,) and np.isfinite(two).all() and not np.allclose(one, two)
    assert np.allclose(two, zero_cost.init_scores(TinySupernet, taps, archs, np.random.default_rng(3), 2))
    with pytest.raises(ValueError, match="n_inits"):
        zero_cost.init_scores(TinySupernet, taps, archs, np.random.default_rng(3), 0)


# ---------------------------------------------------------------- methods, experiment, fidelity


def make_setup(space, budget=20, seed=0):
    rng = np.random.default_rng(seed)
    acc = FakeAccuracy(space, rng)
    setup = methods.SearchSetup(
        space=space, accuracy=A.AccuracyCache(acc), latency=FakeLatency(space, rng), eval_budget=budget,
        pop_size=6, alpha_probs=np.full((space.n_layers, space.n_choices), 1 / space.n_choices),
        proxy=lambda ch: acc.table[np.arange(space.n_layers), ch].sum(axis=1), zero_cost_pool=200,
    )
    return setup, acc


@pytest.mark.parametrize("method", methods.METHODS)
def test_every_method_spends_exactly_its_budget(method):
    setup, _ = make_setup(SearchSpace(n_layers=4, n_choices=5), budget=25)
    archive, facts = methods.run_method(setup, method, np.random.default_rng(0))
    assert archive.n_evals == 25 and len(set(archive.codes())) == 25
    if method == "zero_cost":
        assert facts["pool"] > 0 and len(facts["proxy"]) + facts["topped_up"] == 25


def test_prefilter_drops_over_budget_and_keeps_best_proxy():
    proxy = np.array([5.0, 4.0, 3.0, 9.0])
    lat = np.array([[0.5], [0.2], [0.9], [1.5]])  # the last is over the budget 1.0
    keep = methods.prefilter(proxy, lat, [1.0], n_keep=3)
    assert 3 not in keep.tolist() and keep.tolist()[:2] == [0, 1]


def test_experiment_hv_reference_and_curves(tmp_path):
    exp = E.ParetoExperiment(["a"], [10.0])
    assert exp.target_hv([0.5], [[5.0]], 0) == pytest.approx(0.25)
    assert exp.target_hv([0.9], [[12.0]], 0) == 0.0  # over budget: outside the reference box
    assert exp.reference()["per_target_ms"]["a"] == [1.0, 10.0]
    setup, acc = make_setup(TINY, budget=10)
    runs = E.run_all(setup, ["random", "epr"], [0, 1], folder=tmp_path)
    n_calls = len(acc.seen)
    again = E.run_all(setup, ["random", "epr"], [0, 1], folder=tmp_path)
    assert len(acc.seen) == n_calls and [r.miou.tolist() for r in again] == [r.miou.tolist() for r in runs]
    exp = E.ParetoExperiment(setup.latency.target_names, setup.latency.budgets_ms)
    rows, curves = E.curve_rows(exp, runs)
    curve = curves["random_seed0"]
    assert len(curve) == 10 and np.all(np.diff(curve) >= -1e-12)  # HV never drops as points are added
    ref_hv = E.reference_hv(exp, runs)
    assert all(c[-1] <= ref_hv + 1e-12 for c in curves.values())
    reach = E.reach_table(runs, curves, 2.0, budget=10)  # unreachable: every run censored at the budget
    assert reach["random"]["censored_share"] == 1.0 and np.isnan(reach["random"]["km_median"])
    level = E.target_level(curves)
    assert level == pytest.approx(np.median([curves["random_seed0"][-1], curves["random_seed1"][-1]]))
    reach = E.reach_table(runs, curves, level, budget=10)
    table = E.method_table(E.run_rows(exp, runs), reach, n_resamples=200)
    assert [r["method"] for r in table] == ["random", "epr"] and table[0]["evals_to_target_fraction_of_random"] == 1.0
    assert table[0]["hv_diff_random_mean"] == 0.0 and table[0]["n_seeds"] == 2
    assert table[1]["hv_ci95_low"] <= table[1]["hv_mean"] <= table[1]["hv_ci95_high"]
    band = E.curve_ci(rows, n_resamples=200)
    assert len(band) == 20 and all(r["hv_ci95_low"] <= r["hv_mean"] <= r["hv_ci95_high"] for r in band)


def test_time_to_target_is_kaplan_meier_with_censoring():
    # 4 runs reach the target after 3, 5, 5, 8 evaluations, 2 never do within 10: KM S(t) drops
    # to 5/6, 3/6, 2/6 at 3, 5, 8 -> median 5; the censored runs are not counted as reaching it at 10
    out = E.time_to_target([3, 5, None, 5, 8, None], budget=10)
    assert out["km_median"] == 5.0 and out["censored_share"] == pytest.approx(1 / 3)
    assert (out["n_runs"], out["n_reached"]) == (6, 4)
    late = E.time_to_target([9, None, None], budget=10)  # S never reaches 1/2: the median is censored
    assert np.isnan(late["km_median"]) and late["censored_share"] == pytest.approx(2 / 3)
    assert np.isnan(E.time_to_target([None, None], budget=10)["km_median"])


def test_mean_ci():
    low, high = E.mean_ci([0.1, 0.2, 0.3, 0.4], n_resamples=500)
    assert 0.1 <= low < 0.25 < high <= 0.4
    assert E.mean_ci([0.5, 0.5]) == (0.5, 0.5)
    assert all(np.isnan(E.mean_ci([0.5])))
    runs = [E.MethodRun("random", 0, np.zeros((1, 5), dtype=int), np.array([0.1]), np.ones((1, 1)))]
    assert np.isnan(E.reach_table(runs, {"random_seed0": np.array([0.0])}, 0.0, 1)["random"]["km_median"])
    with pytest.raises(ValueError, match="no random runs"):
        E.target_level({"epr_seed0": np.array([0.1])})


def test_evals_to_reach():
    assert E.evals_to_reach([0.1, 0.5, 0.9, 0.95], 0.9) == 3
    assert E.evals_to_reach([0.1, 0.5], 0.9) is None


def test_kendall_tau_and_rerank():
    assert fidelity.kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert fidelity.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(fidelity.kendall_tau([1, 1, 1], [1, 2, 3]))
    F = np.array([[0.2, 0.9], [0.3, 0.5], [0.25, 0.95], [0.6, 0.1]])
    assert fidelity.top_k_of_front(F, 2).tolist() == [0, 1]
    choices = np.arange(8).reshape(4, 2)
    res = fidelity.rerank_top_k(choices, 1 - F[:, 0], F, 3, finetune=lambda c: float(c[0]))
    assert res.choices[:, 0].tolist() == [0, 2, 6] and res.tau == pytest.approx(-1.0)
    assert [r["rank_ws"] for r in res.rows(str)] == [3, 2, 1]


def test_shared_cache_saves_work_but_each_run_counts(tmp_path):
    rng = np.random.default_rng(0)
    acc = FakeAccuracy(TINY, rng)
    cache = A.AccuracyCache(acc, tmp_path / "ws.json")
    lat = FakeLatency(TINY, rng)
    archs = [[0, 1, 2], [3, 2, 1]]
    first, second = (A.EvaluationArchive(TINY, cache, lat, budget=5) for _ in range(2))
    first.evaluate(archs)
    second.evaluate(archs)
    assert first.n_evals == second.n_evals == 2 and len(acc.seen) == 2
    cache.save()
    assert A.AccuracyCache(acc, tmp_path / "ws.json").values == cache.values


def test_two_caches_saving_to_one_file_keep_each_others_values(tmp_path):
    acc = FakeAccuracy(TINY, np.random.default_rng(0))
    first, second = (A.AccuracyCache(acc, tmp_path / "ws.json") for _ in range(2))
    first.lookup(TINY, np.array([[0, 1, 2]]))
    second.lookup(TINY, np.array([[3, 2, 1], [0, 1, 2]]))
    first.save()
    second.save()
    first.save()
    merged = A.AccuracyCache(acc, tmp_path / "ws.json").values
    assert len(merged) == 2 and merged == first.values == second.values


def test_a_cache_that_disagrees_with_the_saved_file_is_not_merged(tmp_path):
    acc = FakeAccuracy(TINY, np.random.default_rng(0))
    code = int(TINY.encode(np.array([0, 1, 2])))
    (tmp_path / "ws.json").write_text(json.dumps({str(code): 0.25}))
    cache = A.AccuracyCache(acc, tmp_path / "ws.json")
    cache.values = {}  # as if loaded before another process saved its value
    cache.lookup(TINY, np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"ws\.json: 1 architectures' saved WS accuracy differs"):
        cache.save()
    assert json.loads((tmp_path / "ws.json").read_text()) == {str(code): 0.25}


@pytest.mark.parametrize("content", ['{"12": 0.5', '[1, 2]', '{"12": null}', '{"12": NaN}', '{"x": 0.5}',
                                     '{"\u00b2": 0.5}'])
def test_an_unusable_accuracy_cache_is_logged_and_rebuilt(tmp_path, caplog, content):
    (tmp_path / "ws.json").write_text(content)
    cache = A.AccuracyCache(FakeAccuracy(TINY, np.random.default_rng(0)), tmp_path / "ws.json")
    assert cache.values == {}
    assert "ws.json" in caplog.text and "rebuilding it" in caplog.text


@pytest.mark.parametrize("content", ['{"method": "random", "seed": 0, "choi', '[1]', '{"settings": {}}'])
def test_an_unusable_run_checkpoint_is_logged_and_rerun(tmp_path, caplog, content):
    setup, _ = make_setup(TINY, budget=6)
    (tmp_path / "random_seed0.json").write_text(content)
    runs = E.run_all(setup, ["random"], [0], folder=tmp_path)
    assert runs[0].n_evals == 6 and "random_seed0.json" in caplog.text and "search run checkpoint" in caplog.text
    assert E.run_all(setup, ["random"], [0], folder=tmp_path)[0].miou.tolist() == runs[0].miou.tolist()


def test_a_run_checkpoint_of_mismatched_shapes_is_rerun(tmp_path, caplog):
    setup, _ = make_setup(TINY, budget=6)
    run = E.run_all(setup, ["random"], [0], folder=tmp_path)[0]
    path = tmp_path / "random_seed0.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "miou": saved["miou"][:-1]}))
    assert E.run_all(setup, ["random"], [0], folder=tmp_path)[0].miou.tolist() == run.miou.tolist()
    assert "mismatched shapes" in caplog.text


def test_chosen_c3_passes_only_if_every_run_does():
    from linas_lib.search import report as pareto

    def run(total_s, factor):
        return {"target": "t", "n_images": 100, "total_s": total_s, "ms_per_image": total_s * 10, "budget_s": 16.0,
                "margin_s": 16.0 - total_s, "pass": total_s <= 16.0, "speed_factor": factor,
                "ms_per_image_drift_corrected": total_s * 10 / factor, "pass_drift_corrected": total_s / factor <= 16.0,
                "other_cores": 0.01, "quiet": True}

    cols = pareto.chosen_c3_columns([run(14.0, 1.0), run(17.0, 1.2), run(15.0, 1.0)])
    assert cols["c3_runs"] == 3 and cols["measured_s"] == 17.0 and cols["c3_margin_s"] == -1.0  # the worst run
    assert cols["measured_s_median"] == 15.0 and cols["ms_per_image"] == 150.0
    assert cols["c3_pass"] is False and cols["c3_pass_share"] == pytest.approx(2 / 3)
    assert cols["c3_pass_drift_corrected"] is True and cols["c3_speed_factor"] == 1.0
    no_beat = {k: v for k, v in run(14.0, 1.0).items() if "speed_factor" not in k and "drift" not in k}
    mixed = pareto.chosen_c3_columns([run(14.0, 1.0), no_beat])
    assert "c3_speed_factor" not in mixed and mixed["c3_pass"] is True  # a heartbeat column needs every run's
    predicted = pareto.predicted_c3(330.0, 100, 16.0)
    assert predicted == {"c3_predicted_s": pytest.approx(33.0), "c3_predicted_pass": False}  # on the LUTs' scale
    flat = pareto.c3_figures([{**cols, **predicted, "target": "t", "note": "measured"},
                              {"target": "x", "note": "gpu target"}])
    assert flat["c3_pass.t"] == 0.0 and flat["c3_margin_s.t"] == -1.0 and "c3_pass.x" not in flat
    assert flat["c3_predicted_pass.t"] == 0.0


def test_pareto_summary_and_chosen():
    from linas_lib.search import report as pareto

    exp = E.ParetoExperiment(["a", "b"], [10.0, 1.0])
    lat = np.array([[5.0, 2.0], [8.0, 0.5], [12.0, 0.9]])
    runs = [E.MethodRun("random", 0, np.array([[0] * 5, [1] * 5, [2] * 5]), np.array([0.5, 0.4, 0.9]), lat),
            E.MethodRun("epr", 0, np.array([[2] * 5]), np.array([0.9]), lat[2:])]
    chosen = pareto.chosen_architectures(exp, runs)
    assert [r["ws_miou"] for r in chosen] == [0.5, 0.9]  # 'a': the 0.9 net is over budget
    tight = pareto.chosen_architectures(E.ParetoExperiment(["a", "b"], [1.0, 1.0]), runs)
    assert not tight[0]["within_budget"] and tight[0]["predicted_ms"] == 5.0  # none fits: the fastest
    result = pareto.analyse(exp, runs, budget=3, n_resamples=100)
    flat = pareto.summary(result, {"seconds": 1.0, "tau_additive_exact": 0.5}, 0.1, 0.2)
    assert flat["censored_share.random"] == 0 and flat["evals_to_target_abs.random"] == 3  # its last evaluation
    # random against itself is 1 [1, 1] and 0 [0, 0] by construction: not written
    assert not [k for k in flat if k.startswith(("evals_to_target.", "evals_to_target_ci", "hv_diff_random"))
                and k.endswith(".random")]
    assert flat["censored_share.epr"] == 1.0 and np.isnan(flat["evals_to_target.epr"])  # never reaches random's HV
    assert flat["target_hv"] == result["methods"][0]["hv_mean"] and flat["n_seeds"] == 1
    assert np.isnan(flat["evals_to_target_ci95_high.epr"])  # 1 seed
    assert flat["hv_frac_reference_ci95_low.epr"] == pytest.approx(flat["hv_ci95_low.epr"] / result["reference_hv"],
                                                                   nan_ok=True)
    assert flat["hv.epr"] < flat["hv.random"] <= result["reference_hv"]
    assert result["reference_from"] == "runs" and np.isnan(flat["oracle_hv"])
    assert flat["hv_frac_reference.random"] == pytest.approx(flat["hv.random"] / result["reference_hv"])
    # an oracle run with a better point raises the 100 % reference, never lowers it
    oracle = [E.MethodRun("epr", 1000, np.array([[3] * 5]), np.array([0.95]), np.array([[1.0, 0.1]]))]
    with_oracle = pareto.analyse(exp, runs, budget=3, n_resamples=100, oracle=oracle)
    assert with_oracle["reference_from"] == "runs + oracle"
    assert with_oracle["reference_hv"] > result["reference_hv"] and with_oracle["oracle_hv"] > 0
    assert with_oracle["methods"][0]["hv_frac_reference"] < result["methods"][0]["hv_frac_reference"]
    igd = {(r["method"], r["target"]): r["igd"] for r in result["per_run"]}
    igd_oracle = {(r["method"], r["target"]): r["igd"] for r in with_oracle["per_run"]}
    assert igd[("random", "b")] == 0 and igd_oracle[("random", "b")] > 0  # IGD reads the oracle's front too


def test_unknown_method_is_rejected_before_any_work():
    setup, acc = make_setup(TINY, budget=5)
    with pytest.raises(ValueError, match="unknown search method 'nsga3'"):
        E.run_all(setup, ["random", "nsga3"], [0])
    assert acc.seen == []


def test_controls_run_and_stay_feasible():
    setup, acc = make_setup(TINY, budget=8)
    budgets = np.asarray(setup.latency.budgets_ms)
    for method in ("random_feasible", "zero_cost_random_proxy", "epr_feasible"):
        archive, facts = methods.run_method(setup, method, np.random.default_rng(3))
        assert archive.n_evals == 8, method
    feasible = methods.feasible_sampler(setup)(np.random.default_rng(0), 20)
    assert feasible.shape == (20, TINY.n_layers)
    assert (np.asarray(setup.latency.predict(feasible)) <= budgets).any(axis=1).all()
    first, _ = methods.run_method(setup, "random_feasible", np.random.default_rng(5))
    again, _ = methods.run_method(setup, "random_feasible", np.random.default_rng(5))
    assert np.array_equal(first.choices(), again.choices())


def test_effect_rows_pair_a_cause_with_its_control():
    per_run = [{"method": m, "seed": s, "target": "a", "hv": hv}
               for m, values in (("zero_cost", [0.5, 0.6, 0.7]), ("zero_cost_random_proxy", [0.4, 0.45, 0.5]),
                                 ("random", [0.1, 0.2, 0.3]))
               for s, hv in enumerate(values)]
    (near,) = E.effect_rows(per_run, n_resamples=200)  # random_feasible and epr did not run
    assert (near["effect"], near["method"], near["control"], near["n_seeds"]) == ("near", "zero_cost",
                                                                                  "zero_cost_random_proxy", 3)
    assert near["hv_diff_mean"] == pytest.approx(0.15)
    assert near["hv_diff_ci95_low"] <= 0.15 <= near["hv_diff_ci95_high"]
    # seed 0 looked at while designing: the effect again on seeds 1 and 2 alone
    near, held = E.effect_rows(per_run, n_resamples=200, design_seeds=[0])
    assert near["hv_diff_mean"] == pytest.approx(0.15) and near["n_seeds"] == 3
    assert (held["effect"], held["n_seeds"]) == ("near_held_out", 2)
    assert held["hv_diff_mean"] == pytest.approx((0.15 + 0.2) / 2)
    with pytest.raises(ValueError, match=r"search.design_seeds \[7\] were not run \(seeds run: \[0, 1, 2\]\)"):
        E.effect_rows(per_run, n_resamples=200, design_seeds=[0, 7])


def test_km_median_survives_rounding_at_one_half():
    # 5 of 10 runs reach the target: S(t) ends at 0.5 (0.5000000000000001 in floating point)
    out = E.time_to_target([4, 8, 8, 12, 12, None, None, None, None, None], budget=60)
    assert out["km_median"] == 12.0 and out["censored_share"] == 0.5


def test_calibration_seeds_must_not_be_compared_seeds():
    from linas_lib.config import load_profile
    from linas_lib.search import report as pareto

    profile = load_profile("smoke")
    bad = dataclasses.replace(profile, search=dataclasses.replace(profile.search, target_seeds=(1, 100)))
    with pytest.raises(ValueError, match=r"search.target_seeds \[1\] are also search.seeds"):
        pareto.calibration_runs(bad, None, None)


def test_feasible_share_and_proxy_tau_on_random_samples():
    from linas_lib.search import report as pareto

    exp = E.ParetoExperiment(["a", "b"], [10.0, 1.0])
    lat = np.array([[5.0, 2.0], [12.0, 0.5], [12.0, 3.0], [11.0, 4.0]])
    runs = [E.MethodRun("random", 0, np.arange(20).reshape(4, 5), np.array([0.5, 0.6, 0.7, 0.8]), lat),
            E.MethodRun("zero_cost", 0, np.zeros((1, 5), dtype=int), np.array([0.9]), lat[:1])]
    assert E.feasible_share(exp, runs) == {"random": 0.5, "zero_cost": 1.0}
    assert pareto.proxy_tau(runs, lambda ch: ch[:, 0].astype(float)) == pytest.approx(1.0)  # random's 4 only


def test_clairvoyant_curve_picks_greedily_with_known_values():
    """One target, budget 10, reference (1, 1): A and B tie alone (HV 0.4 each), together 0.55;
    C adds its corner 0.01; D (dominated) and E (over budget) are never candidates."""
    from linas_lib.search import report as pareto

    exp = E.ParetoExperiment(["a"], [10.0])
    miou = np.array([0.8, 0.5, 0.9, 0.4, 0.95])  # A B C D E
    lat = np.array([[5.0], [2.0], [9.0], [8.0], [20.0]])
    runs = [E.MethodRun("random", 0, np.arange(5)[:, None].repeat(5, axis=1), miou[:3], lat[:3]),
            E.MethodRun("epr", 1000, np.arange(3, 5)[:, None].repeat(5, axis=1), miou[3:], lat[3:])]
    for seed in range(8):  # the tie at k = 1 is broken at random; the curve is the same
        rows = E.clairvoyant_curve(exp, runs, 5, np.random.default_rng(seed))
        assert [r["k"] for r in rows] == [1, 2, 3, 4, 5]  # flat once the pool's HV is reached
        assert [r["hv"] for r in rows] == pytest.approx([0.4, 0.55, 0.56, 0.56, 0.56])
    assert E.first_reaching(rows, 0.5) == 2 and E.first_reaching(rows, 0.6) is None
    assert len(E.clairvoyant_curve(exp, runs, 1, np.random.default_rng(0))) == 1
    over = [E.MethodRun("random", 0, np.zeros((1, 5), dtype=int), np.array([0.9]), np.array([[11.0]]))]
    assert E.clairvoyant_curve(exp, over, 5, np.random.default_rng(0)) == []  # nothing within the budget
    result = {"clairvoyant": [{**r, "hv_frac_reference": r["hv"] / 0.56} for r in rows], "target_hv": 0.5,
              "reference_hv": 0.56}
    summary = pareto.clairvoyant_summary(result)
    assert summary["clairvoyant.evals_to_target"] == 2 and summary["clairvoyant.evals_to_99pct_reference"] == 3
    assert summary["clairvoyant.hv_frac_reference.k1"] == pytest.approx(0.4 / 0.56)
    assert summary["clairvoyant.hv_frac_reference.k3"] == pytest.approx(1.0) and len(summary) == 4


def test_long_budget_reads_long_runs_against_the_fixed_reference():
    """One target, budget 10, reference HV 0.56 (A + B + C of the clairvoyant test). Seed 0
    finds B, A (0.55), C: 90 and 95 % at 2 evaluations, 99 % at 3; seed 1 finds D, B, A: 90 and 95 %
    at 3, 99 % never (censored at 4)."""
    from linas_lib.search import report as pareto

    exp = E.ParetoExperiment(["a"], [10.0])
    point = {"A": (0.8, 5.0), "B": (0.5, 2.0), "C": (0.9, 9.0), "D": (0.4, 8.0)}
    code = {name: i for i, name in enumerate(point)}

    def run(method, seed, names):
        return E.MethodRun(method, seed, np.array([[code[n]] * 5 for n in names]),
                           np.array([point[n][0] for n in names]), np.array([[point[n][1]] for n in names]))

    long = [run("surrogate", 0, "BACD"), run("surrogate", 1, "DBAD")]
    compared = [run("surrogate", 0, "BA"), run("surrogate", 1, "DA")]
    result = E.long_budget(exp, long, compared, 0.56, budget=2, n_resamples=100)
    assert result["evals"] == 4 and result["levels"] == [0.9, 0.95, 0.99]
    reach = result["reach"]["surrogate"]
    assert [reach[p]["km_median"] for p in (90, 95)] == [2.0, 2.0]  # runs at 2 and 3: S(2) = 1/2
    assert reach[99]["censored_share"] == 0.5 and reach[99]["km_median"] == 3.0  # S(3) = 1/2
    assert result["final"]["surrogate"]["mean"] == pytest.approx((1.0 + 0.55 / 0.56) / 2)
    assert result["prefix_share"] == {"surrogate": 0.5}  # seed 1's compared run took A second, not B
    ends = [r for r in result["curve"] if r["n_evals"] == 4]
    assert len(ends) == 1 and ends[0]["frac_mean"] == pytest.approx(result["final"]["surrogate"]["mean"])
    flat = pareto.long_summary(result)
    assert flat["long.evals"] == 4 and flat["long.evals_to_90pct.surrogate"] == 2.0
    assert flat["long.censored_share_99pct.surrogate"] == 0.5 and flat["long.prefix_share.surrogate"] == 0.5
    # seed 0 looked at while designing: the final share again on seed 1 alone (no CI from one seed)
    held = E.long_budget(exp, long, compared, 0.56, budget=2, n_resamples=100, design_seeds=[0])
    assert held["final_held_out"]["surrogate"]["mean"] == pytest.approx(0.55 / 0.56)
    assert np.isnan(held["final_held_out"]["surrogate"]["ci95"][0]) and held["final"] == result["final"]
    assert pareto.long_summary(held)["long.hv_frac_reference.surrogate_held_out"] == pytest.approx(0.55 / 0.56)
    assert "long.best_known_hv" not in pareto.long_summary(held)
    # against a better known front (HV 0.7): the final HVs 0.56 and 0.55 as its shares
    best = pareto.long_summary(E.long_budget(exp, long, compared, 0.56, budget=2, n_resamples=100, best_known=0.7))
    assert best["long.best_known_hv"] == 0.7
    assert best["long.hv_frac_best_known.surrogate"] == pytest.approx((0.56 + 0.55) / 2 / 0.7)
    low, high = best["long.hv_frac_best_known_ci95_low.surrogate"], best["long.hv_frac_best_known_ci95_high.surrogate"]
    assert 0.55 / 0.7 <= low <= high <= 0.56 / 0.7  # a percentile CI over the two seeds' shares
    best_held = pareto.long_summary(E.long_budget(exp, long, compared, 0.56, budget=2, n_resamples=100, best_known=0.7,
                                                  design_seeds=[0]))
    assert best_held["long.hv_frac_best_known.surrogate_held_out"] == pytest.approx(0.55 / 0.7)  # seed 1 alone
    never = E.long_budget(exp, [run("surrogate", 0, "DD")], [], 0.56, budget=1, n_resamples=100)
    assert pareto.long_summary(never)["long.evals_to_90pct.surrogate"] is None  # censored, not a number
    assert np.isnan(never["prefix_share"]["surrogate"])  # no compared run to extend
    assert E.long_budget(exp, [], compared, 0.56, 2) == {} and pareto.long_summary({}) == {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from linas_lib import plots

    for rows, clair in ((result["curve"], [{"k": 1, "hv_frac_reference": 0.7}, {"k": 2, "hv_frac_reference": 1.0}]),
                        ([], [])):
        fig = plots.long_budget_hv(rows, result["levels"], 2, clair)
        assert fig.axes[0].get_ylabel() == "HV / reference HV"
        plt.close(fig)


def test_long_runs_check_their_settings_before_any_work():
    from linas_lib.config import load_profile
    from linas_lib.search import report as pareto

    profile = load_profile("smoke")
    search = profile.search

    def with_search(**changes):
        return dataclasses.replace(profile, search=dataclasses.replace(search, **changes))

    assert pareto.long_runs(with_search(long_evals=0), None, None) == []
    assert pareto.long_runs(with_search(long_methods=()), None, None) == []
    with pytest.raises(ValueError, match=r"search.long_evals \(12\) must exceed search.eval_budget \(12\)"):
        pareto.long_runs(with_search(long_evals=12, eval_budget=12), None, None)
    with pytest.raises(ValueError, match=r"search.long_methods \['surrogate', 'surrogate_local', 'surrogate_grow', 'surrogate_pairs'\] are not in search.methods"):
        pareto.long_runs(with_search(methods=("random",)), None, None)
    with pytest.raises(ValueError, match=r"profile 'smoke': search.methods: unknown search method 'randum'"):
        pareto.search_inputs(with_search(methods=("randum",)), 0)  # before any supernet training
    with pytest.raises(ValueError, match=r"profile 'smoke': search.long_methods: unknown search method 'surrogat'"):
        pareto.check_methods(with_search(long_methods=("surrogat",), long_evals=24))
    pareto.check_methods(with_search(methods=("random",), long_evals=0))  # the long study off: not checked
    with pytest.raises(ValueError, match=r"target_seeds is empty and 'random' is not in search.methods"):
        pareto.check_methods(with_search(methods=("epr",), long_evals=0, target_seeds=()))
    with pytest.raises(ValueError, match=r"methods and search.seeds must both be non-empty"):
        pareto.check_methods(with_search(methods=(), long_evals=0))
    with pytest.raises(ValueError, match=r"design_seeds \[77\] are not in search.seeds"):
        pareto.check_methods(with_search(design_seeds=(77,)))


def test_clairvoyant_curve_keeps_an_all_rounder_that_is_on_no_single_front():
    """Two targets (budgets 10): A is best on the first (over budget on the second), B the
    reverse; p is on neither front but alone scores 0.34 on both, more than A or B alone (0.225)."""
    exp = E.ParetoExperiment(["a", "b"], [10.0, 10.0])
    miou = np.array([0.9, 0.9, 0.85])
    lat = np.array([[5.0, 11.0], [11.0, 5.0], [6.0, 6.0]])
    runs = [E.MethodRun("random", 0, np.arange(3)[:, None].repeat(5, axis=1), miou, lat)]
    rows = E.clairvoyant_curve(exp, runs, 4, np.random.default_rng(0))
    assert [r["hv"] for r in rows] == pytest.approx([0.34, 0.395, 0.45, 0.45])


# ---------------------------------------------------------------- model-based search (surrogate)


def test_hv_improvement_2d_equals_the_hv_difference_of_pymoo():
    rng = np.random.default_rng(0)
    ref = np.array([1.0, 1.0])

    def hv(points):
        inside = points[indicators.inside_reference(points, ref)]
        return indicators.hypervolume(inside, ref) if len(inside) else 0.0

    for k in (0, 1, 5, 8):
        for draw in (lambda n: rng.random((n, 2)) * 1.2, lambda n: rng.integers(0, 6, (n, 2)) / 4):
            # grid values (steps of 1/4 up to 1.25) bring ties, duplicates and points on the box's edge
            front, cands = draw(k), draw(30)
            gains = indicators.hv_improvement_2d(front, cands, ref)
            exact = [hv(np.vstack([front, c[None]])) - hv(front) for c in cands]
            np.testing.assert_allclose(gains, exact, atol=1e-12)
    assert indicators.hv_improvement_2d([[0.2, 0.2]], [[0.3, 0.3], [2.0, 0.1]], ref).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="front has 3 objectives"):
        indicators.hv_improvement_2d(np.zeros((2, 3)), [[0.5, 0.5]], ref)
    with pytest.raises(ValueError, match="candidates is empty"):
        indicators.hv_improvement_2d([[0.5, 0.5]], np.zeros((0, 2)), ref)


def test_linear_posterior_recovers_an_additive_function_and_rejects_bad_input():
    from linas_lib.search.surrogate import fit_linear_posterior

    space = SearchSpace(n_layers=4, n_choices=5)
    rng = np.random.default_rng(1)
    table = rng.normal(size=(4, 5))
    archs = space.sample(rng, 200)
    y = table[np.arange(4), archs].sum(axis=1) + 3.0
    post = fit_linear_posterior(space.one_hot(archs), y)
    test = space.sample(rng, 50)
    np.testing.assert_allclose(post.predict(space.one_hot(test)), table[np.arange(4), test].sum(axis=1) + 3.0,
                               atol=0.05)
    draws = np.array([post.predict(space.one_hot(test), post.sample(rng)) for _ in range(20)])
    assert draws.std(axis=0).max() < 0.1  # 200 exact observations leave little posterior spread
    few = fit_linear_posterior(space.one_hot(archs[:3]), y[:3])
    assert np.array([few.predict(space.one_hot(test), few.sample(rng)) for _ in range(20)]).std(axis=0).min() > 0.1
    close = fit_linear_posterior(space.one_hot(archs[:2]), [0.5, 0.5 + 1e-9], min_scale=0.01)
    assert close.scale == 0.01  # two nearly equal values: the floor keeps the draws apart
    assert fit_linear_posterior(space.one_hot(archs[:1]), [0.7]).scale == 1.0
    with pytest.raises(ValueError, match="n >= 1"):
        fit_linear_posterior(np.zeros((0, 20)), [])
    with pytest.raises(ValueError, match="finite"):
        fit_linear_posterior(space.one_hot(archs[:2]), [0.5, np.nan])


def test_pair_kernels_count_the_shared_layers_and_adjacent_pairs():
    from linas_lib.search.surrogate import pair_kernels

    a = np.array([[0, 1, 2, 3], [0, 1, 0, 3]])
    singles, pairs = pair_kernels(a, a)
    assert singles.tolist() == [[4, 3], [3, 4]] and pairs.tolist() == [[3, 1], [1, 3]]


def test_pair_posterior_learns_an_interaction_the_additive_model_cannot():
    from scipy.stats import multivariate_normal

    from linas_lib.search.surrogate import (NOISE_PRECISIONS, PAIR_SHARES, fit_linear_posterior, fit_pair_posterior,
                                            pair_kernels)

    space = SearchSpace(n_layers=3, n_choices=3)
    every = space.decode(np.arange(space.size))
    y = 0.6 + 0.05 * every[:, 0] + 0.1 * ((every[:, 1] == 2) & (every[:, 2] == 2))  # a pure pair effect
    train = np.flatnonzero(space.encode(every) != space.encode(np.array([[1, 2, 2]]))[0])
    held = np.array([[1, 2, 2]])
    pairs = fit_pair_posterior(every[train], y[train], space.n_choices)
    additive = fit_linear_posterior(space.one_hot(every[train]), y[train])
    rng = np.random.default_rng(0)
    draws = [pairs.predict(held, pairs.sample(rng))[0] for _ in range(20)]
    assert abs(np.mean(draws) - 0.75) < 0.01 < abs(additive.predict(space.one_hot(held))[0] - 0.75)
    # the fit is the maximum of the Gaussian marginal likelihood over the grid
    singles, shared = pair_kernels(every[train], every[train])

    def evidence(share, beta):
        cov = singles / 3 + shared * share / 2 + np.eye(len(train)) / beta
        return multivariate_normal.logpdf(pairs.standardised, np.zeros(len(train)), cov)

    grid = [(share, beta) for share in PAIR_SHARES for beta in NOISE_PRECISIONS]
    assert max(grid, key=lambda g: evidence(*g)) == (pairs.pair_share, pairs.beta)
    with pytest.raises(ValueError, match="L >= 2"):
        fit_pair_posterior(np.zeros((3, 1), dtype=int), [0.1, 0.2, 0.3], 3)
    with pytest.raises(ValueError, match="finite"):
        fit_pair_posterior(every[:2], [0.5, np.inf], 3)


def test_pair_draws_leave_unseen_pairs_at_zero_and_are_centred_on_the_posterior_mean():
    from linas_lib.search.surrogate import fit_pair_posterior, pair_kernels

    rng = np.random.default_rng(4)
    train = np.array([[0, 1, 2], [1, 1, 0], [2, 0, 1], [0, 0, 0], [1, 2, 2]])
    post = fit_pair_posterior(train, rng.normal(0.6, 0.05, len(train)), 3)
    seen = {(layer, a[layer], a[layer + 1]) for a in train for layer in range(2)}
    draws = [post.sample(rng) for _ in range(4000)]
    for _, pair in draws[:5]:
        unseen = [(layer, i, j) for layer in range(2) for i in range(3) for j in range(3) if (layer, i, j) not in seen]
        assert all(pair[u] == 0.0 for u in unseen)
    # the exact posterior mean of the function at new points: k(x, X) (K + I / beta)^-1 t
    new = np.array([[0, 1, 0], [2, 2, 2]])
    s_new, p_new = pair_kernels(new, train)
    cross = s_new * post.single_var + p_new * post.pair_var
    mean = post.offset + post.scale * cross @ np.linalg.solve(post.chol @ post.chol.T, post.standardised)
    drawn = np.mean([post.predict(new, w) for w in draws], axis=0)
    np.testing.assert_allclose(drawn, mean, atol=4 * post.scale / np.sqrt(len(draws)))


def test_surrogate_pairs_starts_as_surrogate_local_and_rejects_an_unknown_model():
    from linas_lib.search.surrogate import PAIR_SHARES, thompson_search

    setup, _ = make_setup(SearchSpace(n_layers=4, n_choices=5), budget=15)
    pairs, facts = methods.run_method(setup, "surrogate_pairs", np.random.default_rng([3, 0]))
    local, _ = methods.run_method(setup, "surrogate_local", np.random.default_rng([3, 0]))
    assert np.array_equal(pairs.choices()[:2], local.choices()[:2]) and pairs.n_evals == 15
    assert E.PAIRED_STREAM["surrogate_pairs"] == E.PAIRED_STREAM["surrogate_local"]  # paired seeds
    assert facts["pair_share"] in PAIR_SHARES and facts["grown"] > 0
    with pytest.raises(ValueError, match="model must be one of"):
        thompson_search(setup.new_archive(), np.random.default_rng(0), TINY.sample(np.random.default_rng(0), 8),
                        [0], (1.0, 1.0), 2, model="cubic")


def test_latency_fingerprint_standardises_log_latency_over_its_pool_and_refuses_bad_latency():
    from linas_lib.search.surrogate import LatencyFingerprint

    pool = np.array([[1.0, 5.0], [np.e, 5.0], [np.e**2, 5.0]])
    finger = LatencyFingerprint.of_pool(pool)
    z = finger(pool)
    np.testing.assert_allclose(z[:, 0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])  # log: 0, 1, 2; SD sqrt(2/3)
    assert (z[:, 1] == 0.0).all() and finger.sd[1] == 1.0  # an equal column: centred, not divided by 0
    np.testing.assert_allclose(finger([[np.e**3, 5.0]]), [[2 * np.sqrt(1.5), 0.0]])  # (3 - 1) / the pool's SD
    for bad in ([[0.0, 1.0]], [[np.nan, 1.0]], [1.0, 2.0], np.zeros((0, 2))):
        with pytest.raises(ValueError, match="positive finite latencies"):
            finger(bad)


def _fingerprint_problem(n_train: int = 12):
    """A 4-layer space whose accuracy follows a one-column latency fingerprint alone."""
    space = SearchSpace(n_layers=4, n_choices=6)
    rng = np.random.default_rng(5)
    every = space.decode(np.arange(space.size))
    cost = rng.uniform(0.5, 2.0, size=(4, 6))
    finger = np.log(cost[np.arange(4), every].sum(axis=1))[:, None]
    finger = (finger - finger.mean()) / finger.std()
    train = rng.choice(len(every), n_train, replace=False)
    return every, finger, 0.6 + 0.03 * finger[:, 0], train, np.setdiff1d(np.arange(len(every)), train)


def test_fingerprint_posterior_learns_a_latency_trend_from_few_points():
    from scipy.stats import multivariate_normal

    from linas_lib.search.surrogate import FINGERPRINT_SHARES, NOISE_PRECISIONS, PAIR_SHARES, fit_pair_posterior, pair_kernels

    every, finger, y, train, test = _fingerprint_problem()
    rng = np.random.default_rng(0)
    with_f = fit_pair_posterior(every[train], y[train], 6, fingerprints=finger[train])
    without = fit_pair_posterior(every[train], y[train], 6)
    mean_f = np.mean([with_f.predict(every[test], with_f.sample(rng), finger[test]) for _ in range(200)], axis=0)
    mean_p = np.mean([without.predict(every[test], without.sample(rng)) for _ in range(200)], axis=0)
    assert np.abs(mean_f - y[test]).mean() < 0.3 * np.abs(mean_p - y[test]).mean()
    assert with_f.fingerprint_share in FINGERPRINT_SHARES and len(with_f.sample(rng)) == 3
    singles, shared = pair_kernels(every[train], every[train])

    def evidence(share, fshare, beta):
        cov = singles / 4 + shared * share / 3 + fshare * finger[train] @ finger[train].T + np.eye(12) / beta
        return multivariate_normal.logpdf(with_f.standardised, np.zeros(12), cov)

    grid = [(s, f, b) for s in PAIR_SHARES for f in FINGERPRINT_SHARES for b in NOISE_PRECISIONS]
    assert max(grid, key=lambda g: evidence(*g)) == (with_f.pair_share, with_f.fingerprint_share, with_f.beta)
    with pytest.raises(ValueError, match="has a fingerprint part but no fingerprints were given"):
        with_f.predict(every[test], with_f.sample(rng))
    with pytest.raises(ValueError, match="has no fingerprint part but fingerprints were given"):
        without.predict(every[test], without.sample(rng), finger[test])
    with pytest.raises(ValueError, match="fingerprints must be finite"):
        fit_pair_posterior(every[train], y[train], 6, fingerprints=finger[train][:5])


def test_fingerprint_draws_are_centred_on_the_posterior_mean_and_leave_the_pairs_stream_alone():
    from linas_lib.search.surrogate import fit_pair_posterior, pair_kernels

    every, finger, y, train, _ = _fingerprint_problem(8)
    y = y + np.random.default_rng(1).normal(0, 0.01, len(y))  # something for the layers to explain too
    post = fit_pair_posterior(every[train], y[train], 6, fingerprints=finger[train])
    new = every[[3, 500, 1000]]
    rng, side = np.random.default_rng(2), np.random.default_rng(3)
    draws = [post.predict(new, post.sample(rng, side), finger[[3, 500, 1000]]) for _ in range(6000)]
    s_new, p_new = pair_kernels(new, every[train])
    cross = s_new * post.single_var + p_new * post.pair_var + post.fingerprint_var * finger[[3, 500, 1000]] @ finger[train].T
    mean = post.offset + post.scale * cross @ np.linalg.solve(post.chol @ post.chol.T, post.standardised)
    np.testing.assert_allclose(np.mean(draws, axis=0), mean, atol=4 * post.scale / np.sqrt(len(draws)))
    # with its own stream for the fingerprint weights, a draw takes from rng what the pairs model's takes
    plain = fit_pair_posterior(every[train], y[train], 6)
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    post.sample(a, np.random.default_rng(4))
    plain.sample(b)
    assert a.random() == b.random()


def test_shuffled_latency_relabels_each_layer_alike_on_every_target():
    from linas_lib.search.surrogate import shuffled_latency

    setup, _ = make_setup(SearchSpace(n_layers=4, n_choices=5), budget=6)
    source = shuffled_latency(np.random.default_rng(0), setup.latency, 4, 5)
    archs = setup.space.sample(np.random.default_rng(1), 7)
    shuffled, real = source(archs), setup.latency.predict(archs)
    assert shuffled.shape == real.shape == (7, len(setup.latency.budgets_ms))
    every = setup.space.decode(np.arange(setup.space.size))  # a relabelling: the same values, other architectures
    np.testing.assert_allclose(np.sort(source(every), axis=0), np.sort(setup.latency.predict(every), axis=0))


def test_random_cost_tables_are_additive_positive_and_one_column_per_target():
    from linas_lib.search.surrogate import random_cost_tables

    cost = random_cost_tables(np.random.default_rng(0), 3, 4, 5)
    archs = np.array([[0, 1, 2, 3], [0, 1, 2, 4], [4, 1, 2, 3], [1, 1, 1, 1], [2, 2, 2, 2]])
    c = cost(archs)
    assert c.shape == (5, 3) and (c > 0).all()
    # additive: changing layer 3 moves every row by the same per-target amount whatever the rest is
    np.testing.assert_allclose(cost([[4, 1, 2, 4]]) - cost([[4, 1, 2, 3]]), [c[1] - c[0]])


@pytest.mark.parametrize("method", ["surrogate_fingerprint", "surrogate_fingerprint_random",
                                    "surrogate_fingerprint_shuffled"])
def test_fingerprint_methods_start_as_surrogate_pairs(method):
    setup, _ = make_setup(SearchSpace(n_layers=4, n_choices=5), budget=15)
    finger, facts = methods.run_method(setup, method, np.random.default_rng([3, 0]))
    pairs, _ = methods.run_method(setup, "surrogate_pairs", np.random.default_rng([3, 0]))
    assert np.array_equal(finger.choices()[:2], pairs.choices()[:2]) and finger.n_evals == 15
    assert E.PAIRED_STREAM[method] == E.PAIRED_STREAM["surrogate_pairs"]  # paired seeds
    assert {"pair_share", "fingerprint_share", "grown"} <= set(facts)
    assert methods.method_settings(setup, method)["fingerprint_shares"] == [1.0]


def test_log_evidence_is_the_marginal_likelihood_of_the_linear_model():
    from scipy.stats import multivariate_normal

    from linas_lib.search.surrogate import log_evidence

    rng = np.random.default_rng(2)
    X, t = rng.normal(size=(7, 4)), rng.normal(size=7)
    for alpha, beta in ((4.0, 0.1), (1.0, 10.0)):
        cov = np.eye(7) / beta + X @ X.T / alpha
        assert log_evidence(X, t, alpha, beta) == pytest.approx(multivariate_normal.logpdf(t, np.zeros(7), cov))


def test_surrogate_spends_its_budget_when_the_pool_runs_out():
    setup, _ = make_setup(TINY, budget=12)
    archive, facts = methods.run_method(dataclasses.replace(setup, zero_cost_pool=5), "surrogate",
                                        np.random.default_rng(0))
    assert archive.n_evals == 12 and facts["pool"] <= 5 and facts["topped_up"] >= 7


def test_a_cached_surrogate_run_is_redone_when_its_hv_reference_changes(tmp_path, monkeypatch):
    setup, _ = make_setup(TINY, budget=6)
    ran = []
    real_run_method = E.run_method
    monkeypatch.setattr(E, "run_method", lambda s, method, rng: ran.append(method) or real_run_method(s, method, rng))
    first = E.run_all(setup, ["surrogate", "random"], [0], folder=tmp_path)
    moved_ref = dataclasses.replace(setup, hv_ref=(0.9, 1.0))
    E.run_all(moved_ref, ["random"], [0], folder=tmp_path)  # random does not read the reference: reused
    again = E.run_all(setup, ["surrogate"], [0], folder=tmp_path)
    assert ran == ["surrogate", "random"] and again[0].miou.tolist() == first[0].miou.tolist()
    stored = json.loads((tmp_path / "surrogate_seed0.json").read_text())["settings"]
    assert stored == {"hv_ref": [1.0, 1.0], "surrogate_init": 2}
    E.run_all(moved_ref, ["surrogate"], [0], folder=tmp_path)
    assert ran == ["surrogate", "random", "surrogate"]
    assert json.loads((tmp_path / "surrogate_seed0.json").read_text())["settings"]["hv_ref"] == [0.9, 1.0]


def test_surrogate_starts_as_its_control_and_beats_it_on_an_additive_problem():
    space = SearchSpace(n_layers=4, n_choices=6)
    gaps = []
    for seed in range(6):
        setup, _ = make_setup(space, budget=20, seed=seed)
        setup = dataclasses.replace(setup, zero_cost_pool=400)
        exp = E.ParetoExperiment(setup.latency.target_names, setup.latency.budgets_ms)
        rng = np.random.default_rng([seed, 0])
        model, facts = methods.run_method(setup, "surrogate", rng)
        control, _ = methods.run_method(setup, "random_feasible", np.random.default_rng([seed, 0]))
        assert np.array_equal(model.choices()[:2], control.choices()[:2])  # paired: the same first draws
        assert facts["init"] == 2 and facts["pool"] > 20
        gaps.append(exp.hv(model.miou(), model.latency_ms()) - exp.hv(control.miou(), control.latency_ms()))
    assert np.mean(gaps) > 0 and sum(g > 0 for g in gaps) >= 4


def test_front_neighbours_are_the_single_layer_changes_of_the_front():
    from linas_lib.search.surrogate import front_neighbours

    space = SearchSpace(n_layers=3, n_choices=4)
    setup, acc = make_setup(space, budget=10)
    archive = setup.new_archive()
    archive.evaluate(space.sample(np.random.default_rng(0), 10))
    moves = front_neighbours(archive, [0, 1], (1.0, 1.0))
    # brute force: members non-dominated (and inside the box) on some target
    norm = archive.latency_ms() / np.asarray(setup.latency.budgets_ms)
    points = [np.column_stack([1 - archive.miou(), norm[:, t]]) for t in (0, 1)]
    members = {i for P in points for i, p in enumerate(P) if (p < 1).all()
               and not any((q <= p).all() and (q < p).any() for q in P)}
    assert 0 < len(members) < archive.n_evals  # not every evaluated architecture
    expected = {tuple(np.where(np.arange(3) == layer, c, archive.choices()[i]))
                for i in members for layer in range(3) for c in range(4) if c != archive.choices()[i][layer]}
    assert set(map(tuple, moves.tolist())) == expected and len(moves) == 9 * len(members)
    assert front_neighbours(setup.new_archive(), [0], (1.0, 1.0)).shape == (0, 3)


def test_surrogate_local_starts_as_the_surrogate_and_finds_more_beyond_a_small_pool():
    space = SearchSpace(n_layers=5, n_choices=8)
    gaps = []
    for seed in range(6):
        setup, _ = make_setup(space, budget=25, seed=seed)
        setup = dataclasses.replace(setup, zero_cost_pool=40)
        exp = E.ParetoExperiment(setup.latency.target_names, setup.latency.budgets_ms)
        local, facts = methods.run_method(setup, "surrogate_local", np.random.default_rng([seed, 0]))
        plain, _ = methods.run_method(setup, "surrogate", np.random.default_rng([seed, 0]))
        assert np.array_equal(local.choices()[:2], plain.choices()[:2])  # paired: the same pool and first draws
        assert facts["grown"] > 0 and local.n_evals == 25
        grown, grown_facts = methods.run_method(setup, "surrogate_grow", np.random.default_rng([seed, 0]))
        assert np.array_equal(grown.choices()[:2], plain.choices()[:2]) and grown_facts["grown"] > 0
        gaps.append(exp.hv(local.miou(), local.latency_ms()) - exp.hv(plain.miou(), plain.latency_ms()))
    assert np.mean(gaps) > 0 and sum(g > 0 for g in gaps) >= 4


def test_thompson_search_rejects_an_unknown_growth_mode():
    from linas_lib.search.surrogate import thompson_search

    setup, _ = make_setup(TINY, budget=4)
    pool = TINY.sample(np.random.default_rng(0), 8)
    with pytest.raises(ValueError, match="grow must be one of"):
        thompson_search(setup.new_archive(), np.random.default_rng(0), pool, [0], (1.0, 1.0), 2, grow="wide")
    with pytest.raises(ValueError, match="random needs a sampler"):
        thompson_search(setup.new_archive(), np.random.default_rng(0), pool, [0], (1.0, 1.0), 2, grow="random")


def test_evals_ratio_ci_pairs_seeds_and_keeps_censoring_conservative():
    seeds = range(10)
    same = {s: 5 + s for s in seeds}
    assert E.evals_ratio_ci(same, same, budget=60, n_resamples=200) == {"low": 1.0, "high": 1.0, "undefined_share": 0.0}
    fast = {s: 2 + s % 3 for s in seeds}
    ci = E.evals_ratio_ci(fast, {s: 30 + s for s in seeds}, budget=60, n_resamples=500)
    point = E.time_to_target(list(fast.values()), 60)["km_median"] / E.time_to_target(list(range(30, 40)), 60)["km_median"]
    assert 0 < ci["low"] <= point <= ci["high"] < 0.2 and ci["undefined_share"] == 0.0
    # the base reaches the target in 6 of 10 runs: resamples where it does not use the budget, so
    # the ratio can only be overstated, the bound stays finite, and the share of such resamples is told
    base = {s: (40 if s < 6 else None) for s in seeds}
    ci = E.evals_ratio_ci(fast, base, budget=60, n_resamples=500)
    assert 2 / 60 <= ci["low"] <= ci["high"] <= 4 / 40 and 0.1 < ci["undefined_share"] < 0.6
    slow = {s: (50 if s < 6 else None) for s in seeds}  # undefined in many resamples: an open upper bound
    ci = E.evals_ratio_ci(slow, {s: 30 for s in seeds}, budget=60, n_resamples=500)
    assert ci["low"] == pytest.approx(50 / 30) and np.isnan(ci["high"])
    never = {s: (1 if s < 4 else None) for s in seeds}  # more than half censored: no point estimate
    assert all(np.isnan(list(E.evals_ratio_ci(never, same, budget=60, n_resamples=200).values())))
    assert all(np.isnan(list(E.evals_ratio_ci({0: 1}, {0: 2}, budget=60).values())))  # one paired seed: no CI


class _FineTuner:
    """A stand-in supernet: an architecture's fine-tuned score is fixed by it, plus a draw from the
    generator it is given (so a generator shared across architectures would show)."""

    class cfg:  # noqa: N801  (the attributes fidelity_choice reads)
        standalone_lr, batch_size = 0.01, 2

    def __init__(self, score=None):
        self.calls, self.score = [], score

    def finetune_and_evaluate(self, choices, epochs, rng):
        self.calls.append(tuple(int(c) for c in choices))
        if self.score is not None:
            return self.score
        return {0: 0.3, 1: 0.8, 2: 0.5}[int(choices[0])] + 1e-3 * rng.random()


def test_fidelity_choice_fine_tunes_the_ws_top_k_within_budget_and_keeps_the_ws_choice_as_control(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from linas_lib.search import report as pareto

    monkeypatch.setattr(pareto, "runs_dir", lambda *a, **k: tmp_path)
    exp = E.ParetoExperiment(["a", "b"], [10.0, 0.6])
    lat = np.array([[5.0, 0.5], [8.0, 0.7], [9.0, 0.5]])
    runs = [E.MethodRun("random", 0, np.array([[0] * 5, [1] * 5, [2] * 5]), np.array([0.9, 0.5, 0.6]), lat)]
    profile = SimpleNamespace(search=SimpleNamespace(choice_topk=2, choice_epochs=1, choice_retest=False))
    latency, tuner = SimpleNamespace(scopes=None), _FineTuner()
    rows, candidates = pareto.fidelity_choice(profile, tuner, latency, exp, runs, seed=0)
    # a: WS top-2 within 10 ms are archs 0 (0.9) and 2 (0.6); fine-tuned 0.3 vs 0.5: arch 2, WS rank 2
    assert [r["arch_ws"] for r in rows] == [pareto.arch_string([0] * 5)] * 2
    assert rows[0]["arch"] == pareto.arch_string([2] * 5) and rows[0]["ws_rank"] == 2
    assert rows[0]["finetuned_miou"] == pytest.approx(0.5, abs=1e-3) and rows[0]["rule"] == "multi_fidelity"
    # b: arch 1 is over its 0.6 ms budget, so never a candidate even though it fine-tunes best
    assert rows[1]["arch"] == pareto.arch_string([2] * 5) and rows[1]["n_candidates"] == 2
    assert len(candidates) == 4 and len(tuner.calls) == 2  # each architecture fine-tuned once for both targets
    fresh = _FineTuner()
    again, _ = pareto.fidelity_choice(profile, fresh, latency, exp, runs, seed=0)
    assert again == rows and fresh.calls == []  # every score reread from the cache file
    # one generator per architecture: the order the runs list them in changes no score
    monkeypatch.setattr(pareto, "runs_dir", lambda *a, **k: tmp_path / "other")
    (tmp_path / "other").mkdir()
    flipped = [E.MethodRun("random", 0, runs[0].choices[::-1], runs[0].miou[::-1], lat[::-1])]
    assert pareto.fidelity_choice(profile, _FineTuner(), latency, exp, flipped, seed=0)[0] == rows
    none_fit, _ = pareto.fidelity_choice(profile, tuner, latency, E.ParetoExperiment(["a", "b"], [1.0, 0.1]), runs, 0)
    assert not none_fit[0]["within_budget"] and none_fit[0]["n_candidates"] == 0  # the WS rule's fastest
    assert none_fit[0]["rule"] == "ws_fallback"
    assert pareto.fidelity_choice(SimpleNamespace(search=SimpleNamespace(choice_topk=0)), tuner, latency, exp, runs,
                                  0) == ([], [])


def test_fidelity_choice_rebuilds_a_corrupt_cache_and_refuses_a_non_finite_score(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from linas_lib.search import report as pareto

    monkeypatch.setattr(pareto, "runs_dir", lambda *a, **k: tmp_path)
    exp = E.ParetoExperiment(["a"], [10.0])
    runs = [E.MethodRun("random", 0, np.array([[0] * 5, [2] * 5]), np.array([0.9, 0.6]), np.array([[5.0], [9.0]]))]
    profile, latency = SimpleNamespace(search=SimpleNamespace(choice_topk=2, choice_epochs=1, choice_retest=False)), SimpleNamespace(scopes=None)
    pareto.fidelity_choice(profile, _FineTuner(), latency, exp, runs, seed=0)
    (cache,) = tmp_path.glob("choice_*_seed0.json")
    cache.write_text("{not json")
    tuner = _FineTuner()
    rows, _ = pareto.fidelity_choice(profile, tuner, latency, exp, runs, seed=0)
    assert len(tuner.calls) == 2 and rows[0]["arch"] == pareto.arch_string([2] * 5)  # rebuilt
    cache.unlink()
    with pytest.raises(ValueError, match=r"fine-tune of .* scored nan: not a finite mIoU"):
        pareto.fidelity_choice(profile, _FineTuner(score=float("nan")), latency, exp, runs, seed=0)
    assert not cache.exists()  # nothing cached from a failed fine-tune


class _LossScorer:
    """A stand-in supernet for :func:`loss_choice`: fixed WS scores per architecture (by its first
    choice), the mIoU the runs recorded unless ``miou_offset`` says otherwise."""

    def __init__(self, loss, miou, miou_offset=0.0):
        self.loss, self.miou, self.offset, self.seen = loss, miou, miou_offset, []

    def ws_scores(self, choices):
        self.seen.append(np.asarray(choices).copy())
        first = [int(c[0]) for c in choices]
        return {"miou": np.array([self.miou[f] + self.offset for f in first]),
                "crack_iou": np.zeros(len(first)), "loss": np.array([self.loss[f] for f in first])}


def test_loss_choice_picks_the_lowest_ws_loss_within_budget_among_the_same_evaluations():
    from types import SimpleNamespace

    from linas_lib.search import report as pareto

    exp = E.ParetoExperiment(["a", "b"], [10.0, 0.6])
    lat = np.array([[5.0, 0.5], [8.0, 0.7], [9.0, 0.5], [50.0, 5.0]])
    miou = np.array([0.9, 0.5, 0.6, 0.95])
    runs = [E.MethodRun("random", 0, np.array([[k] * 5 for k in range(4)]), miou, lat)]
    profile = SimpleNamespace(search=SimpleNamespace(loss_arm=True))
    chosen = pareto.chosen_architectures(exp, runs)  # WS-only: arch 0 for both targets
    scorer = _LossScorer(loss={0: 1.0, 1: 0.2, 2: 0.5, 3: 0.1}, miou=dict(enumerate(miou)))
    rows = pareto.loss_choice(profile, scorer, exp, runs, chosen)
    # a: within 10 ms are 0, 1, 2; the lowest loss is arch 1 (WS mIoU rank 3 there)
    assert rows[0]["arch_ws_loss"] == pareto.arch_string([1] * 5) and rows[0]["ws_loss_miou_rank"] == 3
    # b: arch 1 is over its 0.6 ms budget: arch 2 (loss 0.5); arch 3 is within no budget and never scored
    assert rows[1]["arch_ws_loss"] == pareto.arch_string([2] * 5) and rows[1]["ws_loss"] == 0.5
    assert all(r["arch_ws"] == r["arch"] == pareto.arch_string([0] * 5) for r in rows)  # the control, unchanged
    assert len(scorer.seen) == 1 and sorted(int(c[0]) for c in scorer.seen[0]) == [0, 1, 2]
    # off, or nothing chosen: the rows as they were
    assert pareto.loss_choice(SimpleNamespace(search=SimpleNamespace(loss_arm=False)), scorer, exp, runs, chosen) == chosen
    # a target nothing meets keeps the WS rule's fallback for this arm too
    tight = E.ParetoExperiment(["a", "b"], [10.0, 0.1])
    fallback = pareto.loss_choice(profile, scorer, tight, runs, pareto.chosen_architectures(tight, runs))[1]
    assert fallback["arch_ws_loss"] == fallback["arch_ws"] and fallback["ws_loss_miou_rank"] == 0


def test_loss_choice_refuses_another_oracles_scores_and_a_non_finite_loss():
    from types import SimpleNamespace

    from linas_lib.search import report as pareto

    exp = E.ParetoExperiment(["a"], [10.0])
    runs = [E.MethodRun("random", 0, np.array([[0] * 5, [1] * 5]), np.array([0.9, 0.5]), np.array([[5.0], [8.0]]))]
    profile = SimpleNamespace(search=SimpleNamespace(loss_arm=True))
    chosen = pareto.chosen_architectures(exp, runs)
    with pytest.raises(ValueError, match=r"off the value its search run recorded"):
        pareto.loss_choice(profile, _LossScorer({0: 1.0, 1: 2.0}, {0: 0.9, 1: 0.5}, miou_offset=0.01), exp, runs, chosen)
    with pytest.raises(ValueError, match=r"WS loss of Conv3x3_w50-.* is nan: not finite"):
        pareto.loss_choice(profile, _LossScorer({0: float("nan"), 1: 2.0}, {0: 0.9, 1: 0.5}), exp, runs, chosen)
    with pytest.raises(ValueError, match=r"off the value its search run recorded"):  # a NaN is no match
        pareto.loss_choice(profile, _LossScorer({0: 1.0, 1: 2.0}, {0: float("nan"), 1: 0.5}), exp, runs, chosen)
    with pytest.raises(ValueError, match=r"one row per target, in the experiment's order"):
        pareto.loss_choice(profile, _LossScorer({0: 1.0, 1: 2.0}, {0: 0.9, 1: 0.5}), exp, runs,
                           [{**chosen[0], "target": "b"}])


def test_choice_noise_reads_the_retest_against_the_first_fine_tune():
    from linas_lib.search import report as pareto

    def rows(target, first, second, ws):
        return [{"target": target, "arch": f"{target}{i}", "ws_miou": w, "finetuned_miou": a, "finetuned_miou_retest": b}
                for i, (a, b, w) in enumerate(zip(first, second, ws))]

    # t1: the retest keeps the order (tau 1); t2: it reverses it (tau -1), so the pick changes
    candidates = rows("t1", [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) + rows("t2", [0.1, 0.2, 0.3],
                                                                                    [0.3, 0.2, 0.1], [0.1, 0.2, 0.3])
    noise = pareto.choice_noise(candidates)
    assert noise["choice.retest_tau.mean"] == 0.0 and noise["choice.retest_same_pick_share"] == 0.5
    assert noise["choice.ws_tau.mean"] == -1.0  # t1: WS reversed (-1); t2: the fine-tunes' mean is constant (nan, left out)
    # one fine-tune's SD around the mean of two: sqrt(mean(d^2) / 2) over the 6 distinct architectures
    assert noise["choice.replicate_sd_pts"] == pytest.approx(100 * np.sqrt((0.2 ** 2 * 2) / 6 / 2))
    # t1's means 0.1, 0.2, 0.3 (variance 0.01), t2's all 0.2: pooled variance 0.005; noise variance 0.04 / 6
    assert noise["choice.candidate_sd_pts"] == pytest.approx(100 * np.sqrt(0.005))
    true_var = 0.005 - 0.04 / 6 / 2
    assert noise["choice.candidate_true_sd_pts"] == pytest.approx(100 * np.sqrt(true_var))
    assert noise["choice.reliability"] == pytest.approx(true_var / (true_var + 0.04 / 6))
    assert noise["choice.retest_tau.t1"] == 1.0 and noise["choice.retest_tau.t2"] == -1.0
    assert noise["choice.candidate_true_sd_pts.t2"] == 0.0  # its means do not spread: noise explains it all
    assert noise["choice.candidate_true_sd_pts.t1"] == pytest.approx(100 * np.sqrt(0.01 - 0.04 / 6 / 2))
    assert pareto.choice_noise([{k: v for k, v in candidates[0].items() if k != "finetuned_miou_retest"}]) == {}
    assert pareto.choice_noise([]) == {}


def test_fidelity_choice_retest_fine_tunes_again_with_another_generator_and_its_own_cache(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from linas_lib.search import report as pareto

    monkeypatch.setattr(pareto, "runs_dir", lambda *a, **k: tmp_path)
    exp = E.ParetoExperiment(["a"], [10.0])
    runs = [E.MethodRun("random", 0, np.array([[0] * 5, [2] * 5]), np.array([0.9, 0.6]), np.array([[5.0], [9.0]]))]
    latency = SimpleNamespace(scopes=None)
    plain = SimpleNamespace(search=SimpleNamespace(choice_topk=2, choice_epochs=1, choice_retest=False))
    rows, candidates = pareto.fidelity_choice(plain, _FineTuner(), latency, exp, runs, seed=0)
    tuner = _FineTuner()
    retested = SimpleNamespace(search=SimpleNamespace(choice_topk=2, choice_epochs=1, choice_retest=True))
    rows_r, candidates_r = pareto.fidelity_choice(retested, tuner, latency, exp, runs, seed=0)
    assert rows_r == rows and len(tuner.calls) == 2  # the choice reads the first fine-tune (cached); 2 retests
    assert [c["finetuned_miou"] for c in candidates_r] == [c["finetuned_miou"] for c in candidates]
    assert all(c["finetuned_miou_retest"] != c["finetuned_miou"] for c in candidates_r)  # another generator
    assert len(list(tmp_path.glob("choice_*_seed0.json"))) == 2


def test_confirm_study_reads_fresh_seeds_against_the_fixed_reference_with_t_intervals():
    """One target, budget 10, reference HV 0.56. Seeds 10-12: the method finds A (0.4), the
    control B (0.4) on seed 10; A + B (0.55) against B on 11; C (0.09) against A on 12."""
    from scipy.stats import t

    from linas_lib.search import report as pareto

    exp = E.ParetoExperiment(["a"], [10.0])
    point = {"A": (0.8, 5.0), "B": (0.5, 2.0), "C": (0.9, 9.0)}

    def run(method, seed, names):
        return E.MethodRun(method, seed, np.array([[i] * 5 for i, _ in enumerate(names)]),
                           np.array([point[n][0] for n in names]), np.array([[point[n][1]] for n in names]))

    runs = [run("surrogate_fingerprint", 10, "A"), run("surrogate_pairs", 10, "B"),
            run("surrogate_fingerprint", 11, "AB"), run("surrogate_pairs", 11, "B"),
            run("surrogate_fingerprint", 12, "C"), run("surrogate_pairs", 12, "A")]
    study = E.confirm_study(exp, runs, 0.56, n_resamples=200)
    diffs = np.array([0.4 - 0.4, 0.55 - 0.4, 0.09 - 0.4]) / 0.56
    (effect,) = [r for r in study["effects"] if r["effect"] == "fingerprint"]
    assert effect["n_seeds"] == 3 and effect["diff_mean"] == pytest.approx(diffs.mean())
    half = t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert (effect["diff_ci95_low"], effect["diff_ci95_high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert effect["diff_boot_ci95_low"] >= diffs.min() and effect["diff_sd"] == pytest.approx(diffs.std(ddof=1))
    shares = {r["method"]: r["share_mean"] for r in study["methods"]}
    assert shares["surrogate_pairs"] == pytest.approx((0.4 + 0.4 + 0.4) / 3 / 0.56)
    assert [r["effect"] for r in study["effects"]] == ["fingerprint"]  # the random control did not run
    (one_target,) = study["by_target"]  # one target: its contribution is the whole effect
    assert one_target["target"] == "a" and one_target["contrib_mean"] == pytest.approx(effect["diff_mean"])
    two = E.ParetoExperiment(["a", "b"], [10.0, 5.0])  # on two targets the contributions sum to the effect
    runs2 = [E.MethodRun(r.method, r.seed, r.choices, r.miou, np.hstack([r.latency_ms, r.latency_ms])) for r in runs]
    split = E.confirm_study(two, runs2, 0.5, n_resamples=200)
    assert {r["target"] for r in split["by_target"]} == {"a", "b"}
    assert sum(r["contrib_mean"] for r in split["by_target"]) == pytest.approx(split["effects"][0]["diff_mean"])
    # where the evaluations went: A, AB, C against B, B, A, every one inside target a's box
    assert (one_target["in_box_method"], one_target["in_box_control"]) == pytest.approx((4 / 3, 1.0))
    assert one_target["in_box_diff_mean"] == pytest.approx(1 / 3) and one_target["unequal_evals"] == 1  # seed 11: 2 vs 1
    # seed 11's lead is B's count (AB cut to its first, A: 0.4 = B's 0.4), seed 12's is quality (C 0.09 vs A 0.4)
    assert one_target["split_quality_mean"] == pytest.approx(np.mean([0, 0, 0.09 - 0.4]) / 0.56)
    assert one_target["split_count_mean"] == pytest.approx(np.mean([0, 0.55 - 0.4, 0]) / 0.56)
    assert one_target["best_miou_diff_mean"] == pytest.approx(np.mean([0.3, 0.3, 0.1]))
    b = next(r for r in split["by_target"] if r["target"] == "b")  # budget 5: A (5 ms) on the edge is out, C out
    assert (b["in_box_method"], b["in_box_control"]) == pytest.approx((1 / 3, 2 / 3))
    assert b["split_quality_mean"] == 0 and b["split_count_mean"] == pytest.approx(-0.3 / 3 / (0.5 * 2))  # seed 10: none vs B
    assert b["best_miou_diff_mean"] == pytest.approx(-0.5 / 3)  # no in-box point scores the reference accuracy (0)
    for row in split["by_target"]:
        assert row["split_quality_mean"] + row["split_count_mean"] == pytest.approx(row["contrib_mean"])
    flat = pareto.confirm_summary({key: [{"seeds": "confirm", **r} for r in rows] for key, rows in study.items()})
    assert flat["confirm.effect.fingerprint"] == effect["diff_mean"] and flat["confirm.n_seeds.surrogate_pairs"] == 3
    assert E.confirm_study(exp, [], 0.56) == {} and pareto.confirm_summary({}) == {}


def test_matched_count_split_cuts_the_longer_arm_to_its_first_in_box_points():
    """Budget 10, reference (1, 1): P1 (0.6, 2 ms) HV 0.48, P2 (0.8, 5 ms) 0.40, P3 (0.9, 9 ms) 0.09,
    P1 + P2 0.58; Q (12 ms) is over the budget, outside the box."""
    exp = E.ParetoExperiment(["a"], [10.0])
    point = {"P1": (0.6, 2.0), "P2": (0.8, 5.0), "P3": (0.9, 9.0), "Q": (0.95, 12.0)}

    def run(names):
        return E.MethodRun("m", 0, np.array([[i] * 5 for i, _ in enumerate(names)]),
                           np.array([point[n][0] for n in names]), np.array([[point[n][1]] for n in names]))

    # more in-box points (P2, then P1) against P3: cut to P2, the first one (0.40, not P1's 0.48)
    quality, count, k_run, k_control, best = E.matched_count_split(exp, run(["Q", "P2", "P1"]), run(["P3"]), 0)
    assert (k_run, k_control) == (2, 1) and (quality, count) == pytest.approx((0.40 - 0.09, 0.58 - 0.40))
    assert best == pytest.approx(0.8 - 0.9)  # Q's 0.95 is not in the box
    # fewer (P3) against P1, P2: the control cut to P1
    quality, count, k_run, k_control, best = E.matched_count_split(exp, run(["P3"]), run(["P1", "P2"]), 0)
    assert (k_run, k_control) == (1, 2) and (quality, count) == pytest.approx((0.09 - 0.48, 0.48 - 0.58))
    assert quality + count == pytest.approx(0.09 - 0.58)  # the whole HV difference
    assert E.matched_count_split(exp, run(["Q"]), run(["Q"]), 0) == (0.0, 0.0, 0, 0, 0.0)  # neither in the box


def test_confirm_settings_are_checked_before_any_work():
    from linas_lib.config import load_profile
    from linas_lib.search import report as pareto

    profile = load_profile("smoke")
    with pytest.raises(ValueError, match=r"search.confirm_seeds \[0\] are also search.seeds: a confirmatory"):
        dataclasses.replace(profile.search, confirm_seeds=(0, 10))
    with pytest.raises(ValueError, match=r"search.confirm_seeds \[101\] are also search.target_seeds"):
        dataclasses.replace(profile.search, confirm_seeds=(101,))
    with pytest.raises(ValueError, match=r"confirm_methods and search.confirm_seeds go together.*2 methods and 0 seeds"):
        dataclasses.replace(profile.search, confirm_methods=("random", "surrogate"), confirm_seeds=())
    bad = dataclasses.replace(profile, search=dataclasses.replace(profile.search, confirm_methods=("surrogat",)))
    with pytest.raises(ValueError, match=r"search.confirm_methods: unknown search method 'surrogat'"):
        pareto.check_methods(bad)
    assert pareto.confirm_study(dataclasses.replace(profile, search=dataclasses.replace(
        profile.search, confirm_seeds=(), confirm_methods=())), None, None, None, {}) == {}


@pytest.mark.parametrize("contenders", [5, 4096])  # pruned by the bound, and not
def test_whole_space_contenders_hold_the_exact_best_gain_over_every_open_architecture(monkeypatch, contenders):
    from linas_lib.search import surrogate as S

    monkeypatch.setattr(S, "CONTENDERS", contenders)
    space = SearchSpace(n_layers=4, n_choices=5)
    setup, _ = make_setup(space, budget=10)
    archive = setup.new_archive()
    archive.evaluate(space.sample(np.random.default_rng(0), 6))
    every = space.decode(np.arange(space.size))
    fingerprint = S.LatencyFingerprint.of_pool(setup.latency.predict(every[::7]))
    whole = S._SpaceCandidates(archive, [0, 1], (0.9, 1.0), fingerprint, setup.latency.predict)
    rng = np.random.default_rng(1)
    open_ = np.flatnonzero(~np.isin(np.arange(space.size), archive.codes()))
    for offset, scale in ((0.5, 0.02), (0.3, 0.2)):  # a weak and a strong draw
        weights = (rng.normal(size=(4, 5)), rng.normal(size=(3, 5, 5)), rng.normal(size=2))
        value = S.pair_additive_values(every, *weights[:2]) + fingerprint(setup.latency.predict(every)) @ weights[2]
        np.testing.assert_allclose(whole.values(weights), value)
        # brute force: every open architecture's exact gain
        gain = S.hv_gain(offset + scale * value[open_], setup.latency.predict(every[open_]), archive, [0, 1], (0.9, 1.0))
        codes, predicted = whole.contenders(weights, offset, scale)
        assert 0 < (gain > 0).sum() < len(open_) and set(codes) <= set(open_[gain > 0])
        np.testing.assert_allclose(predicted, offset + scale * value[codes])
        mine = S.hv_gain(predicted, setup.latency.predict(every[codes]), archive, [0, 1], (0.9, 1.0))
        assert mine.max() == pytest.approx(gain.max())
        assert set(open_[np.isclose(gain, gain.max())]) <= set(codes)  # every tie of the best is a contender
        assert contenders > len(codes) or len(codes) < (gain > 0).sum()  # the bound pruned where it could
    assert set(whole.open_inside().tolist()).isdisjoint(archive.codes())


def test_whole_space_search_starts_as_its_pool_control_and_looks_beyond_the_pool():
    from linas_lib.search.surrogate import thompson_search

    setup, _ = make_setup(SearchSpace(n_layers=4, n_choices=5), budget=15)
    setup = dataclasses.replace(setup, zero_cost_pool=20)
    whole, facts = methods.run_method(setup, "surrogate_fingerprint_space", np.random.default_rng([3, 0]))
    pooled, _ = methods.run_method(setup, "surrogate_fingerprint", np.random.default_rng([3, 0]))
    assert np.array_equal(whole.choices()[:2], pooled.choices()[:2]) and whole.n_evals == 15
    pool = methods.surrogate_pool(setup, np.random.default_rng([3, 0]))
    assert not set(whole.codes()) <= set(setup.space.encode(pool).tolist())  # it went beyond the pool
    assert facts["space_inside"] > 0 and facts["gaining_mean"] >= facts["contenders_mean"] > 0 and "grown" not in facts
    with pytest.raises(ValueError, match="grow='space' needs"):
        thompson_search(setup.new_archive(), np.random.default_rng(0), pool, [0], (1.0, 1.0), 2, grow="space")


@pytest.mark.parametrize("arm, control", [("surrogate_fingerprint_space_mean", "surrogate_fingerprint_space"),
                                          ("surrogate_fingerprint_mean", "surrogate_fingerprint")])
def test_posterior_mean_arm_starts_as_its_draw_control_and_never_draws(monkeypatch, arm, control):
    from linas_lib.search import surrogate as S

    setup, _ = make_setup(SearchSpace(n_layers=4, n_choices=5), budget=15)
    setup = dataclasses.replace(setup, zero_cost_pool=20)
    drawn, control_facts = methods.run_method(setup, control, np.random.default_rng([3, 0]))
    means = []
    real_mean = S.PairPosterior.mean_weights

    def recorded_mean(post):
        means.append(real_mean(post))
        return means[-1]

    def no_draw(*_):
        raise AssertionError("the posterior-mean arm drew from the posterior")

    monkeypatch.setattr(S.PairPosterior, "mean_weights", recorded_mean)
    monkeypatch.setattr(S.PairPosterior, "sample", no_draw)
    greedy, facts = methods.run_method(setup, arm, np.random.default_rng([3, 0]))
    assert np.array_equal(greedy.choices()[:2], drawn.choices()[:2]) and greedy.n_evals == 15
    assert len(means) == 13 and facts.pop("acquire") == "mean"  # one mean per step after the first 2
    assert set(facts) == set(control_facts)  # the control's grow mode and model, only the weights differ
    assert not np.array_equal(greedy.choices(), drawn.choices())
    pool = methods.surrogate_pool(setup, np.random.default_rng([3, 0]))
    with pytest.raises(ValueError, match="acquire must be one of"):
        S.thompson_search(setup.new_archive(), np.random.default_rng(0), pool, [0], (1.0, 1.0), 2, acquire="mean")
    with pytest.raises(ValueError, match="acquire must be one of"):
        S.thompson_search(setup.new_archive(), np.random.default_rng(0), pool, [0], (1.0, 1.0), 2, model="pairs",
                          acquire="mode")
