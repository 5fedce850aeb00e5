"""The cross-hardware few-shot latency predictor and its leave-one-device-out protocol."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from linas_lib.analysis import cross_hw as C
from linas_lib.config import load_profile
from linas_lib.latency import cross_hw as X
from linas_lib.space import N_CHOICES, arch_string, decode

TOY = X.TokenSpace((("a", "b", "c", "d"), ("p", "q", "r", "s", "t", "u"), ("x", "y", "z")))


def toy_tables(n_devices: int = 6, n_archs: int = 200, seed: int = 0) -> list[X.DeviceTable]:
    """A second, synthetic space: additive per-token costs mixed from two latent hardware
    factors, a fixed cost, and 2 % noise; devices differ by up to 100x in scale. The space
    has 72 architectures, so devices share them: a held-out toy device is new, its
    architectures are not."""
    rng = np.random.default_rng(seed)
    factors = [rng.uniform(0.1, 1.0, size=(2, n)) for n in TOY.sizes]
    tokens = np.stack([rng.integers(0, n, n_archs) for n in TOY.sizes], 1)
    tables = []
    for d in range(n_devices):
        mix = rng.dirichlet([1.0, 1.0])
        cost = sum((mix @ f)[tokens[:, p]] for p, f in enumerate(factors))
        scale = 10 ** rng.uniform(0, 2)
        lat = scale * (0.5 + cost) * np.exp(rng.normal(0, 0.02, n_archs))
        tables.append(X.DeviceTable(f"dev{d}", tokens, lat, "synthetic"))
    return tables


SETTINGS = X.PredictorSettings(d_model=16, heads=2, layers=1, steps=150, lr=5e-3, query_batch=32)


def test_token_space_encodes_and_names_bad_tokens():
    assert TOY.encode([["b", "u", "x"]]).tolist() == [[1, 5, 0]]
    with pytest.raises(X.CrossHwError, match="row 0: token 'w' is not in its position's vocabulary"):
        TOY.encode([["a", "p", "w"]])
    with pytest.raises(X.CrossHwError, match="row 1 has 2 tokens; expected 3"):
        TOY.encode([["a", "p", "x"], ["a", "p"]])
    with pytest.raises(X.CrossHwError, match="position 1 has token 6 outside its vocabulary of 6"):
        TOY.check(np.array([[0, 6, 0]]), "query")
    with pytest.raises(X.CrossHwError, match="repeats a token"):
        X.TokenSpace((("a", "a"),))


def test_device_table_rejects_bad_latency_naming_the_device():
    tokens = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(X.CrossHwError, match="device 'dev': latency must be finite and > 0; row 1 is nan"):
        X.DeviceTable("dev", tokens, np.array([1.0, np.nan]))
    with pytest.raises(X.CrossHwError, match="device 'dev': 2 architectures but latency of shape"):
        X.DeviceTable("dev", tokens, np.array([1.0]))
    with pytest.raises(X.CrossHwError, match="the table is empty"):
        X.DeviceTable("dev", tokens[:0], np.array([]))


def test_meta_training_needs_two_devices_with_enough_rows():
    tables = toy_tables(3, 30)
    with pytest.raises(X.CrossHwError, match="at least 2 devices"):
        X.train_predictor(TOY, tables[:1], SETTINGS, torch.Generator().manual_seed(0))
    small = X.DeviceTable("tiny", tables[0].tokens[:1], tables[0].latency_ms[:1])
    with pytest.raises(X.CrossHwError, match="tiny: fewer than 2 architectures"):
        X.train_predictor(TOY, [tables[1], small], SETTINGS, torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def toy_model():
    tables = toy_tables()
    state = torch.get_rng_state()
    model = X.train_predictor(TOY, tables[:-1], SETTINGS, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state()), "meta-training touched torch's global random state"
    return model, tables[-1]


@pytest.mark.parametrize("residual", [False, True])
def test_predictor_ranks_a_held_out_device_of_another_space(toy_model, residual):
    model, held = toy_model
    score, ms = X.predict_device(model, held.tokens[:10], held.latency_ms[:10], held.tokens[10:], residual=residual)
    assert score.shape == ms.shape == (len(held.tokens) - 10,)
    assert spearmanr(score, held.latency_ms[10:])[0] > 0.8
    assert np.mean(np.abs(ms / held.latency_ms[10:] - 1)) < 0.25


def test_predictor_without_measurements_ranks_but_has_no_scale(toy_model):
    model, held = toy_model
    score, ms = X.predict_device(model, held.tokens[:0], held.latency_ms[:0], held.tokens, "network")
    assert ms is None and score.shape == (len(held.tokens),) and np.all(score > 0)
    with torch.no_grad():
        each = torch.stack([model(torch.as_tensor(held.tokens)[None], e[None])[0] for e in model.devices])
    assert np.allclose(score, each.mean(0).numpy(), rtol=1e-5), "k = 0: the prior's average, median units"


def test_posterior_finds_a_known_device_and_its_scale(toy_model):
    model, _ = toy_model
    known = toy_tables()[2]  # a training device, measured 3x slower (say, another clock)
    post = X.device_posterior(model, known.tokens[:20], 3 * known.latency_ms[:20], "network", fixed_cost=False)
    weights, log_scales = post.weights, post.log_scales
    assert weights.shape == log_scales.shape == (5,) and float(weights.sum()) == pytest.approx(1.0)
    assert int(weights.argmax()) == 2 and float(weights[2]) > 0.5
    assert float(log_scales[2]) == pytest.approx(np.log(3 * np.median(known.latency_ms)), abs=0.1)
    one = X.device_posterior(model, known.tokens[:1], known.latency_ms[:1], "network").weights
    assert torch.allclose(one, torch.full((5,), 0.2, dtype=one.dtype)), "one point: the prior"
    two = X.device_posterior(model, known.tokens[:2], known.latency_ms[:2], "network")
    assert len(two.weights) == 5 and not two.fixed_ms.any(), "fixed costs from 3 points only"
    with pytest.raises(X.CrossHwError, match="support: position 0 has token 9"):
        X.device_posterior(model, np.full((1, 3), 9), known.latency_ms[:1])


def test_posterior_weights_are_the_marginal_likelihood_by_hand(toy_model):
    model, held = toy_model
    tokens, ms = held.tokens[:5], held.latency_ms[:5]
    post = X.device_posterior(model, tokens, ms, "network", fixed_cost=False)
    weights, log_scales = post.weights, post.log_scales
    with torch.no_grad():
        preds = np.stack([model.log_forward(torch.as_tensor(tokens)[None], e[None])[0].double().numpy()
                          for e in model.devices])
    resid = np.log(ms)[None] - preds
    scale = resid.mean(1)
    rss = np.maximum(((resid - scale[:, None]) ** 2).sum(1), 5 * 0.01**2)  # the 1 % floor, pinned
    by_hand = rss ** -2.0  # RSS^(-(k - 1) / 2), k = 5, one table per device
    assert np.allclose(log_scales.numpy(), scale) and np.allclose(weights.numpy(), by_hand / by_hand.sum())


def additive_table(n_archs: int, noise: float, seed: int = 0) -> X.DeviceTable:
    """A toy device whose latency is a constant plus one cost per (position, token), times noise."""
    rng = np.random.default_rng(seed)
    costs = [rng.uniform(0.1, 2.0, n) for n in TOY.sizes]
    tokens = np.stack([rng.integers(0, n, n_archs) for n in TOY.sizes], 1)
    lat = (0.5 + sum(c[tokens[:, p]] for p, c in enumerate(costs))) * np.exp(rng.normal(0, noise, n_archs))
    return X.DeviceTable("additive", tokens, lat, "synthetic")


def test_additive_fit_is_exact_on_an_additive_table_and_shrinks_a_noisy_small_one():
    exact = additive_table(200, 0.0)
    coef = X.fit_additive(TOY, exact)
    assert coef.shape == (sum(TOY.sizes) + 1,)
    fitted = X.one_hot(TOY, exact.tokens) @ coef * np.median(exact.latency_ms)
    assert np.allclose(fitted, exact.latency_ms, rtol=1e-3), "a LUT-summed table is recovered"
    errors = X.additive_loo_errors(TOY, exact)
    assert min(errors, key=lambda lam: errors[lam][0]) == min(X.ADDITIVE_PENALTIES)
    noisy = additive_table(16, 0.3, seed=1)  # about as many rows as costs: shrink, do not interpolate
    errors = X.additive_loo_errors(TOY, noisy)
    chosen = min(errors, key=lambda lam: errors[lam][0])
    assert chosen > min(X.ADDITIVE_PENALTIES) and np.array_equal(X.fit_additive(TOY, noisy), errors[chosen][1])


def test_additive_leave_one_out_error_is_the_refit_error():
    table = additive_table(12, 0.2, seed=3)
    features = X.one_hot(TOY, table.tokens)
    y = table.latency_ms / np.exp(np.median(np.log(table.latency_ms)))
    lam, penalty = 0.1, np.diag([1.0] * (features.shape[1] - 1) + [0.0])
    refit = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        coef = np.linalg.solve(features[keep].T @ features[keep] + lam * penalty, features[keep].T @ y[keep])
        refit.append((y[i] - features[i] @ coef) ** 2)
    assert X.additive_loo_errors(TOY, table)[lam][0] == pytest.approx(np.mean(refit), rel=1e-9)


def test_one_hot_marks_one_token_per_position_and_a_constant():
    feats = X.one_hot(TOY, np.array([[1, 5, 0], [3, 0, 2]]))
    assert feats.shape == (2, 14) and feats.sum(1).tolist() == [4.0, 4.0]
    assert np.flatnonzero(feats[0]).tolist() == [1, 4 + 5, 10 + 0, 13]


def test_additive_hypotheses_find_an_additive_device_the_network_only_approximates():
    tables = [additive_table(200, 0.0, seed=s) for s in range(3)]
    tables = [dataclasses.replace(t, name=f"dev{i}") for i, t in enumerate(tables)]
    model = X.train_predictor(TOY, tables, dataclasses.replace(SETTINGS, steps=5), torch.Generator().manual_seed(0))
    logs, ids = X.hypothesis_logs(model, tables[1].tokens[:7])
    assert logs.shape == (6, 7) and ids == ("dev0", "dev1", "dev2") * 2
    by_hand = np.log(X.one_hot(TOY, tables[1].tokens[:7]) @ model.additive[1].numpy())
    assert np.allclose(logs[4].numpy(), by_hand)
    post = X.device_posterior(model, tables[1].tokens[:10], 2 * tables[1].latency_ms[:10], fixed_cost=False)
    weights, log_scales = post.weights, post.log_scales
    assert int(weights.argmax()) == 4 and float(weights[4]) > 0.9, "dev1's additive fit explains it (5 steps of network)"
    assert float(log_scales[4]) == pytest.approx(np.log(2 * np.median(tables[1].latency_ms)), abs=1e-3)
    _, ms = X.predict_device(model, tables[1].tokens[:10], 2 * tables[1].latency_ms[:10], tables[1].tokens[10:], "additive",
                             residual=False)
    assert np.allclose(ms, 2 * tables[1].latency_ms[10:], rtol=0.01)
    with pytest.raises(X.CrossHwError, match="hypotheses must be one of"):
        X.hypothesis_logs(model, tables[1].tokens[:2], "lut")


def test_posterior_names_bad_support():
    model = X.train_predictor(TOY, toy_tables(2, 20), dataclasses.replace(SETTINGS, steps=2), torch.Generator().manual_seed(0))
    tokens = toy_tables(1, 5)[0].tokens
    with pytest.raises(X.CrossHwError, match="support: 5 architectures but 4 latencies"):
        X.device_posterior(model, tokens, np.ones(4))
    with pytest.raises(X.CrossHwError, match="support: latency must be finite and > 0, got 0.0"):
        X.device_posterior(model, tokens, np.array([1.0, 2.0, 0.0, 1.0, 1.0]))


def test_posterior_prior_is_uniform_over_devices_not_tables():
    tables = toy_tables(3, 30)
    tables[2] = dataclasses.replace(tables[2], name="dev1 LUT", device="dev1", evaluate=False)
    model = X.train_predictor(TOY, tables, dataclasses.replace(SETTINGS, steps=5), torch.Generator().manual_seed(0))
    assert model.device_ids == ("dev0", "dev1", "dev1")
    weights = X.device_posterior(model, tables[0].tokens[:1], tables[0].latency_ms[:1], "network").weights
    assert np.allclose(weights.numpy(), [0.5, 0.25, 0.25])
    both = X.device_posterior(model, tables[0].tokens[:1], tables[0].latency_ms[:1]).weights
    assert np.allclose(both.numpy(), [0.25, 0.125, 0.125] * 2), "a device's share is split over all its hypotheses"
    prior = X.device_posterior(model, tables[0].tokens[:0], tables[0].latency_ms[:0], "network")
    assert np.allclose(prior.weights.numpy(), [0.5, 0.25, 0.25]) and not prior.log_scales.any()
    score, _ = X.predict_device(model, tables[0].tokens[:0], tables[0].latency_ms[:0], tables[0].tokens, "network")
    with torch.no_grad():
        each = torch.stack([model(torch.as_tensor(tables[0].tokens)[None], e[None])[0] for e in model.devices])
    assert np.allclose(score, (torch.tensor([0.5, 0.25, 0.25])[:, None] * each).sum(0).numpy(), rtol=1e-5)


def test_fixed_cost_variant_finds_a_device_that_adds_a_constant():
    tables = [additive_table(200, 0.0, seed=s) for s in range(3)]
    tables = [dataclasses.replace(t, name=f"dev{i}") for i, t in enumerate(tables)]
    model = X.train_predictor(TOY, tables, dataclasses.replace(SETTINGS, steps=5), torch.Generator().manual_seed(0))
    known, fixed = tables[1], 2.0 * float(np.median(tables[1].latency_ms))  # dev1 run twice as slow plus an overhead
    support, query = known.tokens[:10], known.tokens[10:]
    post = X.device_posterior(model, support, 2 * known.latency_ms[:10] + fixed, "additive")
    best = int(post.weights.argmax())
    assert len(post.weights) == 6 and best == 4 and float(post.weights[best]) > 0.9, "dev1's additive fit, with a fixed cost"
    assert float(post.fixed_ms[best]) == pytest.approx(fixed, rel=1e-2)
    assert float(torch.exp(post.log_scales[best])) / float(np.median(known.latency_ms)) == pytest.approx(2.0, rel=1e-2)
    truth = 2 * known.latency_ms[10:] + fixed
    _, ms = X.predict_device(model, support, 2 * known.latency_ms[:10] + fixed, query, "additive", residual=False)
    _, scaled = X.predict_device(model, support, 2 * known.latency_ms[:10] + fixed, query, "additive", residual=False,
                                 fixed_cost=False)
    assert np.allclose(ms, truth, rtol=5e-3)
    assert np.abs(scaled / truth - 1).max() > 0.01, "a rescale alone cannot add the constant"


def test_fixed_cost_fit_is_relative_least_squares_and_stays_a_latency():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([5.0, 7.5, 9.0, 12.0])
    preds = torch.log(torch.tensor(np.array([x, x[::-1], [2.0] * 4, x]), dtype=torch.float64))
    floors = torch.tensor([0.5, 0.5, 0.5, 0.01], dtype=torch.float64)
    log_b, a, rss = X._fixed_cost_fits(preds, torch.log(torch.tensor(y, dtype=torch.float64)), floors)
    slope, intercept = np.polyfit(x, y, 1, w=1 / y)
    assert float(torch.exp(log_b[0])) == pytest.approx(slope) and float(a[0]) == pytest.approx(intercept)
    assert float(rss[0]) == pytest.approx(np.sum((np.log(intercept + slope * x) - np.log(y)) ** 2))
    assert math.isinf(float(rss[1])), "falling with the hypothesis: not a latency"
    assert math.isinf(float(rss[2])), "one prediction for every point: no scale to tell from a fixed cost"
    assert torch.isfinite(log_b).all() and torch.isfinite(a).all()
    shifted = np.log(y - 4.5)  # a fixed cost of -4.5: fine above a floor of 0.5 with slope ~2, not above 0.01
    log_b, a, rss = X._fixed_cost_fits(torch.log(torch.tensor(np.array([x, x]), dtype=torch.float64)),
                                       torch.tensor(shifted, dtype=torch.float64),
                                       torch.tensor([3.0, 0.01], dtype=torch.float64))
    assert float(a[0]) < 0 and math.isfinite(float(rss[0])) and math.isinf(float(rss[1]))


def test_fixed_cost_variants_are_weighted_by_hand(toy_model):
    model, held = toy_model
    tokens, ms = held.tokens[:6], held.latency_ms[:6]
    post = X.device_posterior(model, tokens, ms, "network")
    with torch.no_grad():
        preds = np.stack([model.log_forward(torch.as_tensor(tokens)[None], e[None])[0].double().numpy()
                          for e in model.devices])
        floors = np.exp(model.fixed(model.devices)[:, 0].double().numpy())
    assert np.allclose(X.hypothesis_floors(model, "network").numpy(), floors)
    score = []
    for row in preds:  # the rescale, as before
        resid = np.log(ms) - row
        score.append(-2.5 * np.log(max(((resid - resid.mean()) ** 2).sum(), 6 * 0.01**2)))
    for row, floor in zip(preds, floors):
        slope, intercept = np.polyfit(np.exp(row), ms, 1, w=1 / ms)
        ok = slope > 0 and intercept + slope * floor > 0
        rss = ((np.log(intercept + slope * np.exp(row)) - np.log(ms)) ** 2).sum() if ok else np.inf
        score.append(-2.0 * np.log(max(rss, 6 * 0.01**2)) - 0.5 * np.log(6))
    by_hand = np.exp(np.array(score) - max(score))
    assert len(post.weights) == 10 and np.allclose(post.weights.numpy(), by_hand / by_hand.sum())
    assert float(post.weights[5:].sum()) > 0.01, "the fixed-cost variants take part"
    assert len(X.device_posterior(model, tokens[:2], ms[:2], "network").weights) == 5, "below 3 points: rescales alone"
    assert len(X.device_posterior(model, tokens[:3], ms[:3], "network").weights) == 10


def test_prediction_is_the_posterior_mixture_in_ms(toy_model):
    model, held = toy_model
    support, query = held.tokens[:10], held.tokens[10:30]
    score, ms = X.predict_device(model, support, held.latency_ms[:10], query, "network", residual=False)
    post = X.device_posterior(model, support, held.latency_ms[:10], "network")
    assert len(post.weights) == 10 and torch.equal(post.rows, torch.arange(10) % 5), "each rescaled, then with a fixed cost"
    with torch.no_grad():
        each = torch.stack([model(torch.as_tensor(query)[None], e[None])[0] for e in model.devices]).double()
    by_hand = (post.weights[:, None] * (each[post.rows] * torch.exp(post.log_scales)[:, None]
                                        + post.fixed_ms[:, None])).sum(0).numpy()
    assert np.array_equal(score, ms) and np.allclose(ms, by_hand, rtol=1e-5)


@pytest.mark.parametrize("hypotheses", X.HYPOTHESES)
def test_every_hypothesis_set_predicts_its_weighted_mixture(toy_model, hypotheses):
    model, held = toy_model
    support, query = held.tokens[:10], held.tokens[10:30]
    _, ms = X.predict_device(model, support, held.latency_ms[:10], query, hypotheses, residual=False, fixed_cost=False)
    logs, ids = X.hypothesis_logs(model, query, hypotheses)
    post = X.device_posterior(model, support, held.latency_ms[:10], hypotheses, fixed_cost=False)
    weights, log_scales = post.weights, post.log_scales
    if hypotheses != "additive":
        with torch.no_grad():
            by_net = torch.stack([model.log_forward(torch.as_tensor(query)[None], e[None])[0] for e in model.devices])
        assert torch.allclose(logs[: len(model.devices)].float(), by_net, atol=1e-5)
    by_hand = (weights[:, None] * torch.exp(logs + log_scales[:, None])).sum(0).numpy()
    assert len(ids) == len(weights) == (10 if hypotheses == "both" else 5)
    assert np.allclose(ms, by_hand, rtol=1e-9)


def test_token_families_default_to_the_tokens_and_are_checked():
    columns, n_columns = TOY.family_columns
    assert columns.tolist() == list(range(13)) and n_columns == 13
    grouped = X.TokenSpace(TOY.vocab, (("A", "A", "B", "B"), ("p",) * 6, ("x", "y", "y")))
    columns, n_columns = grouped.family_columns
    assert columns.tolist() == [0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 4, 4] and n_columns == 5
    feats = X.family_one_hot(grouped, np.array([[1, 5, 2], [2, 0, 0]]))
    assert feats.tolist() == [[1, 0, 1, 0, 1], [0, 1, 1, 1, 0]]
    with pytest.raises(X.CrossHwError, match=r"families: expected one label per token at each position \(sizes \(4, 6, 3\)\)"):
        X.TokenSpace(TOY.vocab, (("A", "A", "B", "B"), ("p",) * 6))


SLOW = X.TokenSpace(TOY.vocab, (("a", "b", "c", "d"), ("p", "q", "r", "s", "t", "u"), ("fast", "slow", "slow")))


def slow_family_device(seed: int = 0) -> tuple[X.FewShotLatencyPredictor, X.DeviceTable]:
    """Known devices: additive toy tables. The new one is the first of them plus a cost no
    known device has: tokens ``y`` and ``z`` at the last position (one family) cost 3 more."""
    tables = [dataclasses.replace(additive_table(200, 0.0, seed=s), name=f"dev{s}") for s in range(3)]
    model = X.train_predictor(SLOW, tables, dataclasses.replace(SETTINGS, steps=2), torch.Generator().manual_seed(seed))
    base = additive_table(120, 0.0, seed=0)
    lat = base.latency_ms + 3.0 * (base.tokens[:, 2] > 0)
    return model, X.DeviceTable("new", base.tokens, lat, "synthetic")


def test_residual_learns_a_cost_no_known_device_has():
    model, new = slow_family_device()
    support, query = slice(0, 15), slice(15, None)
    ridge = X.fit_residual(model, new.tokens[support], new.latency_ms[support], "additive", relevance=False)
    assert ridge.penalty in X.RESIDUAL_PENALTIES and ridge.loo_mse[ridge.penalty] < ridge.loo_mse[None]
    # the cost sits at the last position alone: a variance per position predicts the left-out points best
    fit = X.fit_residual(model, new.tokens[support], new.latency_ms[support], "additive")
    assert fit.penalty == X.RELEVANCE and fit.loo_mse[X.RELEVANCE] < min(ridge.loo_mse.values())
    scores = {}
    for residual, relevance in ((False, False), (True, False), (True, True)):
        _, ms = X.predict_device(model, new.tokens[support], new.latency_ms[support], new.tokens[query], "additive",
                                 residual, relevance)
        scores[residual, relevance] = (spearmanr(ms, new.latency_ms[query])[0],
                                       np.mean(np.abs(ms / new.latency_ms[query] - 1)))
    for corrected in ((True, False), (True, True)):
        assert scores[corrected][0] > scores[False, False][0] + 0.1
        assert scores[corrected][1] < scores[False, False][1] / 2


def test_residual_leave_one_out_error_of_the_average_is_the_refit_error():
    model, new = slow_family_device()
    tokens, ms = new.tokens[:8], new.latency_ms[:8]
    refit = [np.log(X.predict_device(model, np.delete(tokens, i, 0), np.delete(ms, i), tokens[i:i + 1], "both",
                                     residual=False)[1][0] / ms[i]) ** 2 for i in range(8)]
    assert X.fit_residual(model, tokens, ms).loo_mse[None] == pytest.approx(np.mean(refit), rel=1e-9)


def test_residual_leave_one_out_error_of_a_ridge_is_the_refit_error_and_the_prediction_applies_it():
    model, new = slow_family_device()
    tokens, ms, lam = new.tokens[:9], new.latency_ms[:9], 3.0
    features = X.family_one_hot(SLOW, tokens)
    refit = []
    for i in range(9):
        rest = np.delete(np.arange(9), i)
        average = np.log(X.predict_device(model, tokens[rest], ms[rest], tokens, residual=False)[1])
        intercept, coef = X._ridge(features[rest], np.log(ms[rest]) - average[rest], lam)
        refit.append((np.log(ms[i]) - average[i] - intercept - features[i] @ coef) ** 2)
    fit = X.fit_residual(model, tokens, ms)
    assert fit.loo_mse[lam] == pytest.approx(np.mean(refit), rel=1e-9)
    assert fit.penalty is not None
    query = new.tokens[9:40]
    average = X.predict_device(model, tokens, ms, query, residual=False)[1]
    corrected = X.predict_device(model, tokens, ms, query)[1]
    by_hand = average * np.exp(fit.intercept + X.family_one_hot(SLOW, query) @ fit.coef)
    assert np.allclose(corrected, by_hand, rtol=1e-9)


def test_an_infinite_penalty_is_a_rescale_alone():
    intercept, coef = X._ridge(np.eye(3), np.array([1.0, 2.0, 6.0]), float("inf"))
    assert intercept == 3.0 and np.array_equal(coef, np.zeros(3))


def test_no_residual_below_its_minimum_points():
    model, new = slow_family_device()
    for k in range(X.MIN_RESIDUAL_K):
        fit = X.fit_residual(model, new.tokens[:k], new.latency_ms[:k])
        assert fit.penalty is None and np.array_equal(fit.log_correction(SLOW, new.tokens[:4]), np.zeros(4))
    with pytest.raises(X.CrossHwError, match="support: 3 architectures but 2 latencies"):
        X.fit_residual(model, new.tokens[:3], new.latency_ms[:2])


def test_an_additive_prediction_below_zero_is_floored():
    tables = [dataclasses.replace(additive_table(100, 0.0, seed=s), name=f"dev{s}") for s in range(2)]
    model = X.train_predictor(TOY, tables, dataclasses.replace(SETTINGS, steps=2), torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.additive[0] = -1.0  # every cost negative
    logs, _ = X.hypothesis_logs(model, tables[0].tokens[:3], "additive")
    assert np.allclose(logs[0].numpy(), np.log(X.ADDITIVE_FLOOR)) and np.all(np.isfinite(logs.numpy()))


def test_meta_training_is_deterministic_per_generator():
    tables = toy_tables(3, 40)
    quick = dataclasses.replace(SETTINGS, steps=5)
    runs = [X.train_predictor(TOY, tables[:2], quick, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    preds = [X.predict_device(m, tables[2].tokens[:5], tables[2].latency_ms[:5], tables[2].tokens)[0] for m in runs]
    assert np.array_equal(preds[0], preds[1]) and not np.array_equal(preds[0], preds[2])


def test_fit_line_recovers_a_line_and_never_decreases():
    x = np.array([1.0, 2.0, 3.0])
    assert np.allclose(X.fit_line(x, 2 + 3 * x)(np.array([4.0])), [14.0])
    assert X.fit_line(x, np.array([3.0, 2.0, 1.0]))(np.array([4.0]))[0] > 2.0


# ------------------------------------------------------------------ protocol and baselines


def test_count_features_and_ridge():
    choices = decode(np.arange(0, 4_000_000, 400_000))
    feats = C.count_features(choices)
    assert feats.shape == (len(choices), 40)
    assert np.allclose(feats.reshape(-1, 5, 8)[..., :7].sum(-1), 1)
    w = np.random.default_rng(0).normal(size=40)
    y = feats @ w + 1.0
    assert np.allclose(C.ridge_fit(feats, y, 1e-9)(feats), y, atol=1e-5)


def test_flops_table_is_additive_over_layers():
    from linas_lib.analysis.ranking import decoder_costs
    from linas_lib.encoder.model import TAP_CHANNELS, TAP_STRIDES

    archs = np.array([[3, 20, 7, 11, 0], [20, 20, 20, 20, 20], [5, 1, 14, 2, 17]])
    shapes = [(1, c, 64 // s, 64 // s) for c, s in zip(TAP_CHANNELS, TAP_STRIDES)]
    assert np.allclose(C.flops_model(64)(archs), decoder_costs(archs, shapes)[0])


def test_scores_known_values():
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    perfect = C.scores(truth, truth, truth)
    assert perfect == {"spearman": 1.0, "kendall": 1.0, "mape_pct": 0.0, "within10_pct": 100.0}
    off = C.scores(truth, truth * 1.2, truth)
    assert math.isclose(off["mape_pct"], 20.0) and off["within10_pct"] == 0.0
    assert math.isnan(C.scores(truth, None, truth)["mape_pct"])


def test_measured_tables_names_a_missing_file(tmp_path):
    with pytest.raises(X.CrossHwError, match="validation_measurements.csv: not found; run notebook 02"):
        C.measured_tables(tmp_path / "validation_measurements.csv")
    bad = tmp_path / "v.csv"
    bad.write_text("arch,target\nx,y\n")
    with pytest.raises(X.CrossHwError, match="v.csv: missing column\\(s\\) measured_ms, pred_projected_ms"):
        C.measured_tables(bad)


def test_measured_tables_groups_by_target(tmp_path):
    archs = [arch_string(a) for a in decode(np.array([0, 5, 77]))]
    path = tmp_path / "v.csv"
    rows = [f"{a},{t},{10 + i},{11 + i}" for t in ("t1", "t2") for i, a in enumerate(archs)]
    path.write_text("# provenance\narch,target,measured_ms,pred_projected_ms\n" + "\n".join(rows) + "\n")
    tables, own = C.measured_tables(path)
    assert [t.name for t in tables] == ["t1", "t2"]
    assert tables[0].tokens.shape == (3, 5) and tables[0].latency_ms.tolist() == [10, 11, 12]
    assert own["t2"].tolist() == [11, 12, 13]
    assert math.isnan(tables[0].retest_spearman), "one pass: no repeatability"


def test_measured_tables_read_the_repeatability_of_two_passes(tmp_path):
    archs = [arch_string(a) for a in decode(np.array([0, 5, 77, 901]))]
    path = tmp_path / "v.csv"
    passes = [(1, 1), (2, 3), (3, 2), (4, 4)]  # the passes swap the middle two
    rows = [f"{a},t1,{(p0 + p1) / 2},{p0},{p1},{p0}" for a, (p0, p1) in zip(archs, passes)]
    path.write_text("arch,target,measured_ms,measured_pass0_ms,measured_pass1_ms,pred_projected_ms\n" + "\n".join(rows) + "\n")
    (table,), _ = C.measured_tables(path)
    assert table.retest_spearman == pytest.approx(0.8)
    assert C.device_rows([table], ["t1"])[0]["retest_spearman"] == pytest.approx(0.8)


def test_other_devices_reach_is_perfect_for_a_recombination_and_not_for_a_stranger():
    rng = np.random.default_rng(0)
    costs = [rng.uniform(0.1, 1.0, size=(5, N_CHOICES)) for _ in range(3)]
    def table(name, cost, n=300, seed=1):
        archs = decode(np.random.default_rng(seed).choice(N_CHOICES**5, n, replace=False))
        return X.DeviceTable(name, archs, 1.0 + cost[np.arange(5), archs].sum(1), "LUT sum", "lut")
    mixed = 2.0 * costs[0] + np.array([0.5, 0.0, 3.0, 1.0, 0.2])[:, None] * costs[1]  # per position
    tables = [table("a", costs[0], seed=2), table("b", costs[1], seed=3), table("mix", mixed), table("stranger", costs[2], seed=4)]
    reach = C.other_devices_reach(tables[:3], ["mix"])
    assert reach["mix"] == pytest.approx(1.0)
    assert C.other_devices_reach([tables[0], tables[1], tables[3]], ["stranger"])["stranger"] < 0.5
    assert math.isnan(C.other_devices_reach(tables[2:3], ["mix"])["mix"]), "no other device: nothing to say"


def test_baselines_apply_only_where_defined():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, N_CHOICES, size=(30, 5))
    held = X.DeviceTable("ext", tokens, rng.uniform(1, 2, 30))
    context = {"own": {}, "models": {}, "flops": lambda c: np.asarray(c).sum(-1) + 1.0}
    support, query = np.arange(1), np.arange(1, 30)
    assert C.baseline_predictions("own_lut", held, support, query, context) is None
    assert C.baseline_predictions("linear_counts", held, support, query, context) is None
    score, ms = C.baseline_predictions("flops", held, support, query, context)
    assert score.shape == (29,) and ms is None
    score, ms = C.baseline_predictions("flops", held, np.arange(5), np.arange(5, 30), context)
    assert ms.shape == (25,) and np.all(ms > 0)
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        C.baseline_predictions("nope", held, support, query, context)


def test_profiles_cross_hw_sections_are_valid_and_checked():
    for name in ("smoke", "cpu", "full"):
        assert load_profile(name).cross_hw.k_values
    cfg = load_profile("smoke").cross_hw
    with pytest.raises(ValueError, match="d_model must be a multiple of heads, >= 4, got 15"):
        dataclasses.replace(cfg, d_model=15)
    with pytest.raises(ValueError, match="heads = 0 must be > 0"):
        dataclasses.replace(cfg, heads=0)
    with pytest.raises(ValueError, match="k_values must be distinct counts >= 0, got"):
        dataclasses.replace(cfg, k_values=())


def test_summary_keeps_finite_figures_only():
    table = [{"method": "predictor", "k": 0, "device": "d", "spearman_mean": 0.9, "mape_pct_mean": math.nan}]
    means = [{"method": "predictor", "k": 0, "group": "all", "spearman_mean": 0.9, "kendall_mean": 0.8,
              "mape_pct_mean": math.nan, "within10_pct_mean": math.nan},
             {"method": "flops", "k": 0, "group": "lut", "spearman_mean": 0.5}]
    paired = [{"baseline": "flops", "metric": "spearman", "k": 0, "group": "all", "diff_mean": 0.4,
               "diff_ci95_low": 0.1, "diff_ci95_high": math.nan}]
    means.append({"method": "network_only", "k": 0, "group": "all", "spearman_mean": 0.7, "mape_pct_mean": math.nan})
    devices = [{"table": "d", "device": "d", "retest_spearman": 0.4, "reach_spearman": 0.6},
               {"table": "d LUT", "device": "d", "retest_spearman": math.nan, "reach_spearman": math.nan},  # d's LUT
               {"table": "lut", "device": "lut", "retest_spearman": math.nan, "reach_spearman": 0.8}]
    out = C.summary_figures(table, means, paired, devices)
    assert out == {"retest.spearman.d": 0.4, "spearman.k0.d": 0.9, "spearman.k0.mean": 0.9, "kendall.k0.mean": 0.8,
                   "baseline.flops.spearman.k0.lut": 0.5, "diff.flops.spearman.k0.mean": 0.4,
                   "diff.flops.spearman.k0.mean_ci95_low": 0.1, "ablation.network_only.spearman.k0.mean": 0.7,
                   "reach.spearman.d": 0.6, "reach.spearman.lut": 0.8, "reach.spearman.mean": pytest.approx(0.7)}


def test_paired_differences_use_shared_devices_only():
    rows = [{"method": m, "k": 5, "device": d, "group": g, "spearman_mean": v}
            for m, d, g, v in [("predictor", "a", "measured", 0.9), ("own_lut", "a", "measured", 0.7),
                               ("predictor", "b", "measured", 0.8), ("own_lut", "b", "measured", 0.9),
                               ("predictor", "c", "lut", 0.99), ("network_only", "c", "lut", 0.98)]]
    paired = {(r["baseline"], r["group"]): r for r in C.paired_rows(rows)}
    assert set(paired) == {("own_lut", "all"), ("own_lut", "measured"), ("network_only", "all"), ("network_only", "lut")}
    assert paired["network_only", "lut"]["diff_mean"] == pytest.approx(0.01), "ablations are paired like baselines"
    assert paired["own_lut", "all"]["n_devices"] == 2
    assert paired["own_lut", "all"]["diff_mean"] == pytest.approx(0.05)
    assert paired["own_lut", "all"]["n_predictor_ahead"] == 1


def test_no_architecture_of_the_held_out_device_enters_training():
    tables = toy_tables(3, 40)
    archs = decode(np.arange(40) * 1000)
    local = [X.DeviceTable(f"t{i}", archs[:30], t.latency_ms[:30], "measured", "measured") for i, t in enumerate(tables)]
    other = X.DeviceTable("ext", archs[20:], tables[0].latency_ms[20:], "LUT sum", "lut")  # shares 10 with the locals
    pool, query = C.partition(30, 10, seed=0, index=0)
    assert len(set(pool) | set(query)) == 30 and not set(pool) & set(query)
    train = C.training_tables(local + [other], local[0])
    assert [t.name for t in train] == ["ext"], "the other local tables share every architecture: they drop out"
    assert {tuple(a) for a in train[0].tokens} == {tuple(a) for a in archs[30:]}


def test_held_out_devices_respects_size_and_names():
    tables = toy_tables(3, 30) + [X.DeviceTable("small", toy_tables(1, 5)[0].tokens, np.ones(5))]
    config = dataclasses.replace(load_profile("smoke").cross_hw, k_values=(0, 5), min_query=10, held_out=())
    assert C.held_out_devices(tables, config) == ["dev0", "dev1", "dev2"]
    assert C.held_out_devices(tables, dataclasses.replace(config, held_out=("dev1",))) == ["dev1"]
    with pytest.raises(X.CrossHwError, match="cross_hw.held_out: no device to hold out named 'gpu9'"):
        C.held_out_devices(tables, dataclasses.replace(config, held_out=("gpu9",)))


def test_a_held_out_device_leaves_training_with_all_its_tables():
    tables = toy_tables(3, 40)
    archs = decode(np.arange(40) * 1000)
    local = [X.DeviceTable(f"t{i}", archs, t.latency_ms, "measured", "measured") for i, t in enumerate(tables)]
    luts = [X.DeviceTable(f"t{i} LUT", archs, t.latency_ms * 0.9, "LUT sum", "local-lut", device=f"t{i}", evaluate=False)
            for i, t in enumerate(tables)]
    luts = [dataclasses.replace(t, tokens=decode(np.arange(40) * 1000 + 7)) for t in luts]  # their own samples
    train = C.training_tables(local + luts, local[0])
    assert [t.name for t in train] == ["t1 LUT", "t2 LUT"]
    assert train[0].device_id == "t1" and not train[0].evaluate and train[0].group == "local-lut"
    config = dataclasses.replace(load_profile("smoke").cross_hw, k_values=(0, 5), min_query=10, held_out=())
    assert C.held_out_devices(local + luts, config) == ["t0", "t1", "t2"]
    with pytest.raises(X.CrossHwError, match="no device to hold out named 't1 LUT'.*training-only tables"):
        C.held_out_devices(local + luts, dataclasses.replace(config, held_out=("t1 LUT",)))
    assert all(t.device_id != "t0" for t in train), "the held-out device's LUT stays out of meta-training"


def test_linas_token_families_are_the_operations():
    space = C.linas_token_space()
    columns, n_columns = space.family_columns
    assert n_columns == 5 * 7 and len(columns) == 5 * N_CHOICES
    first = {key: int(col) for key, col in zip(space.vocab[0], columns[:N_CHOICES])}
    assert first["Conv3x3_w50"] == first["Conv3x3_w100"] != first["Conv5x5_w50"]


class AdditiveLut:
    """A stand-in LUT model: one cost per (position, token) and a constant."""

    def __init__(self, costs):
        self.costs = costs

    def predict(self, archs):
        return (1 + X.one_hot(C.linas_token_space(), np.asarray(archs)) @ self.costs)[:, None]


def test_repeats_rerun_the_protocol_with_the_next_seeds_on_new_lut_architectures(monkeypatch):
    monkeypatch.setattr(C, "BASELINES", ("flops",))
    rng = np.random.default_rng(0)
    models = {f"dev{d}": AdditiveLut(rng.uniform(0, 1, 106)) for d in range(3)}
    tables = C.lut_tables(models, 40, 0)
    base = load_profile("smoke")
    cfg = dataclasses.replace(base.cross_hw, k_values=(0, 5), split_seeds=2, min_query=10, held_out=("dev0",), steps=3,
                              external_archs=40)
    context = {"own": {}, "models": models, "flops": lambda c: np.asarray(c).sum(-1) + 1.0}

    def run(repeats, seed, drawn=tables):
        profile = dataclasses.replace(base, cross_hw=dataclasses.replace(cfg, repeats=repeats))
        return [{k: v for k, v in r.items() if k != "train_s"} for r in C.evaluate(profile, drawn, context, seed, progress=False)]

    both = run(2, 7)
    assert {r["repeat"] for r in both} == {0, 1}
    second = C.repeat_tables(tables, context, 40, 1)
    assert [t.name for t in second] == [t.name for t in tables]
    assert all(not np.array_equal(a.tokens, b.tokens) for a, b in zip(tables, second)), "new architectures"
    np.testing.assert_allclose(second[0].latency_ms, models["dev0"].predict(second[0].tokens)[:, 0])
    assert C.repeat_tables(tables, context, 40, 0) is tables
    for repeat, drawn in ((0, tables), (1, second)):
        alone = [{**r, "repeat": repeat} for r in run(1, 7 + repeat, drawn)]
        assert [r for r in both if r["repeat"] == repeat] == alone
    with pytest.raises(X.CrossHwError, match="repeat 1: no LUT model to draw new architectures for dev0, dev1, dev2"):
        C.repeat_tables(tables, {**context, "models": {}}, 40, 1)
    assert {r["n_splits"] for r in C.table_rows(both)} == {4}
    held_out = C.held_out_paired_rows(both, design_repeats=1)
    assert held_out == C.paired_rows(C.table_rows([r for r in both if r["repeat"] == 1])), "repeat 1 alone"
    assert held_out != C.paired_rows(C.table_rows(both)) and C.held_out_paired_rows(both, 0) == []
    figures = C.summary_figures(C.table_rows(both), [], C.paired_rows(C.table_rows(both)), (), held_out)
    assert figures["diff_held_out.flops.spearman.k5.mean"] == pytest.approx(
        next(r["diff_mean"] for r in held_out if (r["baseline"], r["k"], r["group"]) == ("flops", 5, "all")))
    with pytest.raises(ValueError, match="repeats = 0 must be > 0"):
        dataclasses.replace(cfg, repeats=0)
    with pytest.raises(ValueError, match="design_repeats must be >= 0 and < repeats, got 2"):
        dataclasses.replace(cfg, repeats=2, design_repeats=2)


def test_evidence_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = X.family_one_hot(SLOW, np.stack([rng.integers(0, n, 12) for n in SLOW.sizes], 1))
    x, y = x - x.mean(0), rng.normal(size=12)
    theta = np.array([-1.0, -3.0, 0.5, -2.0])
    value, grad = X._evidence(theta, x, y, SLOW.column_positions)
    step = 1e-6
    numeric = [(X._evidence(theta + step * e, x, y, SLOW.column_positions)[0] - value) / step for e in np.eye(4)]
    assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_column_positions_follow_the_family_columns():
    assert SLOW.column_positions.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    grouped = X.TokenSpace(TOY.vocab, (("A", "A", "B", "B"), ("p",) * 6, ("x", "y", "y")))
    assert grouped.column_positions.tolist() == [0, 0, 1, 2, 2]


def test_relevance_ridge_fits_the_position_that_holds_the_cost():
    rng = np.random.default_rng(1)
    tokens = np.stack([rng.integers(0, n, 14) for n in SLOW.sizes], 1)
    features = X.family_one_hot(SLOW, tokens)
    target = 1.0 * (tokens[:, 2] > 0) + rng.normal(0, 0.01, 14)  # the family "slow" at the last position only
    _, coef = X._relevance_ridge(features, target, SLOW.column_positions)
    _, shared = X._ridge(features, target, 1.0)
    last = SLOW.column_positions == 2
    assert np.abs(coef[~last]).max() < 0.05 < np.abs(shared[~last]).max()
    assert coef[last][1] - coef[last][0] == pytest.approx(1.0, abs=0.05)


def test_residual_relevance_candidate_is_refitted_per_left_out_point_and_needs_its_points():
    model, new = slow_family_device()
    k = X.min_relevance_k(SLOW)
    tokens, ms = new.tokens[:k], new.latency_ms[:k]
    features, positions = X.family_one_hot(SLOW, tokens), SLOW.column_positions
    refit = []
    for i in range(k):
        rest = np.delete(np.arange(k), i)
        average = np.log(X.predict_device(model, tokens[rest], ms[rest], tokens, residual=False)[1])
        intercept, coef = X._relevance_ridge(features[rest], np.log(ms[rest]) - average[rest], positions)
        refit.append((np.log(ms[i]) - average[i] - intercept - features[i] @ coef) ** 2)
    loo = X.fit_residual(model, tokens, ms).loo_mse
    assert loo[X.RELEVANCE] == pytest.approx(np.mean(refit), rel=1e-6)
    assert abs(loo[X.RELEVANCE] / loo[float("inf")] - 1) > 0.01  # the fits do correct: not the rescale alone
    assert X.RELEVANCE not in X.fit_residual(model, tokens, ms, relevance=False).loo_mse
    assert X.RELEVANCE not in X.fit_residual(model, tokens[:k - 1], ms[:k - 1]).loo_mse


def test_precomputed_query_logs_give_the_same_prediction_and_are_checked():
    model, new = slow_family_device()
    support, query = slice(0, 12), slice(12, 60)
    logs = X.hypothesis_logs(model, new.tokens[query], "both")[0]
    direct = X.predict_device(model, new.tokens[support], new.latency_ms[support], new.tokens[query])
    given = X.predict_device(model, new.tokens[support], new.latency_ms[support], new.tokens[query], query_logs=logs)
    assert np.array_equal(direct[0], given[0]) and np.array_equal(direct[1], given[1])
    with pytest.raises(X.CrossHwError, match=r"query_logs: expected shape \(6, 48\)"):
        X.predict_device(model, new.tokens[support], new.latency_ms[support], new.tokens[query], query_logs=logs[:, :5])


def test_ablations_are_scored_only_where_they_act_and_the_twin_control_only_with_a_twin(monkeypatch):
    monkeypatch.setattr(C, "BASELINES", ())
    rng = np.random.default_rng(1)
    models = {f"dev{d}": AdditiveLut(rng.uniform(0, 1, 106)) for d in range(4)}
    tables = C.lut_tables(models, 40, 0)
    base = load_profile("smoke")
    cfg = dataclasses.replace(base.cross_hw, k_values=(0, 5), split_seeds=1, min_query=10, held_out=("dev0",), steps=3,
                              repeats=1, design_repeats=0)
    profile = dataclasses.replace(base, cross_hw=cfg)
    context = {"own": {}, "models": models, "flops": None, "twins": {"dev0": {"dev1"}}}
    rows = C.evaluate(profile, tables, context, 0, progress=False)
    scored = {(r["method"], r["k"]) for r in rows}
    assert ("no_residual", 0) not in scored and ("no_residual", 5) in scored and ("no_fixed_cost", 0) not in scored
    assert ("no_relevance", 5) not in scored and ("network_only", 0) in scored, "no_relevance acts from k = 7"
    twin = {r["k"]: r for r in rows if r["method"] == "no_twin"}
    own = {r["k"]: r for r in rows if r["method"] == "predictor"}
    assert set(twin) == {0, 5} and twin[5]["n_train_tables"] == own[5]["n_train_tables"] - 1
    assert twin[5]["spearman"] != own[5]["spearman"]
    alone = C.evaluate(profile, tables, {**context, "twins": {"dev0": {"gpu9"}}}, 0, progress=False)
    assert not [r for r in alone if r["method"] == "no_twin"], "no twin in training: the control is the predictor"


def test_near_twins_are_devices_that_rank_alike():
    rng = np.random.default_rng(2)
    costs = rng.uniform(0, 1, 106)
    models = {"a": AdditiveLut(costs), "a2": AdditiveLut(2 * costs + rng.normal(0, 0.01, 106)),
              "b": AdditiveLut(rng.uniform(0, 1, 106))}
    assert C.near_twins(models) == {"a": {"a2"}, "a2": {"a"}, "b": set()}
    rows = {(r["device_a"], r["device_b"]): r for r in C.twin_rows(C.twin_spearman(models))}
    assert set(rows) == {("a", "a2"), ("a", "b"), ("a2", "b")}, "every pair once, by name"
    assert rows["a", "a2"]["near_twin"] and not rows["a", "b"]["near_twin"] and rows["a", "a2"]["spearman"] > 0.99


def test_twin_clusters_are_connected_components():
    clusters = C.twin_clusters({"a": {"b"}, "b": {"a", "c"}, "c": {"b"}, "d": set()})
    assert clusters == {"a": "a+b+c", "b": "a+b+c", "c": "a+b+c", "d": "d"}, "a chain of twins is one cluster"


def test_cluster_ci_is_the_device_bootstrap_for_singletons_and_wider_for_twins():
    from linas_lib.search.experiment import mean_ci

    values = np.array([0.9, 0.91, 0.5, 0.6, 0.7, 0.95, 0.96])
    singletons = [str(i) for i in range(len(values))]  # labels that sort in the values' order
    assert C.cluster_mean_ci(values, singletons) == pytest.approx(mean_ci(values)), "every device its own cluster"
    twins = ["g", "g", "x", "y", "z", "h", "h"]  # two pairs of near-identical devices: 5 clusters
    low, high = C.cluster_mean_ci(values, twins)
    plain_low, plain_high = mean_ci(values)
    assert high - low > plain_high - plain_low, "a twin pair counted once widens the interval"
    assert low <= values.mean() <= high
    few = ["a", "a", "a", "b", "b", "c", "c"]
    assert np.isnan(C.cluster_mean_ci(values, few)[0]), "3 clusters: no interval, not the range of their means"
    assert C.cluster_mean_ci(np.full(3, 0.5), ["one"] * 3) == (0.5, 0.5), "equal values: a point, however clustered"
    with pytest.raises(ValueError, match="one cluster label per value"):
        C.cluster_mean_ci(values, twins[:3])


def test_mean_and_paired_rows_count_clusters():
    rows = []
    for device, value in zip(["a", "a2", "b", "c"], [0.9, 0.92, 0.6, 0.7]):
        for method, shift in (("predictor", 0.0), ("flops", -0.1)):
            rows.append({"method": method, "k": 10, "device": device, "group": "lut", "spearman_mean": value + shift,
                         **{f"{m}_mean": 1.0 for m in ("kendall", "mape_pct", "within10_pct")}})
    clusters = {"a": "a+a2", "a2": "a+a2"}
    means = {r["group"]: r for r in C.mean_rows(rows, clusters=clusters) if r["method"] == "predictor"}
    assert means["all"]["spearman_n_devices"] == 4 and means["all"]["spearman_n_clusters"] == 3
    assert math.isnan(means["all"]["spearman_ci95_low"]), "3 clusters: too few for an interval"
    paired = [r for r in C.paired_rows(rows, clusters=clusters) if r["baseline"] == "flops" and r["group"] == "all"]
    assert paired[0]["n_devices"] == 4 and paired[0]["n_clusters"] == 3 and paired[0]["diff_mean"] == pytest.approx(0.1)


def test_linear_counts_penalty_is_chosen_by_exact_leave_one_out():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(12, 4))
    y = feats @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0
    assert C.ridge_loo_penalty(feats, y) == min(C.LINEAR_PENALTIES), "noise-free: the smallest penalty"
    penalty = 1.0
    errors = [y[i] - C.ridge_fit(np.delete(feats, i, 0), np.delete(y, i), penalty)(feats[i:i + 1])[0] for i in range(12)]
    z = np.column_stack([np.ones(12), feats])
    weights = np.diag([0.0] + [penalty] * 4)
    hat = z @ np.linalg.solve(z.T @ z + weights, z.T)
    closed = (y - hat @ y) / (1 - np.diag(hat))
    np.testing.assert_allclose(closed, errors, rtol=1e-8)  # the closed form the choice rests on
    noise = y + rng.normal(0, 5.0, 12)
    assert C.ridge_loo_penalty(feats, noise) > min(C.LINEAR_PENALTIES)


def test_nearest_lut_breaks_a_spearman_tie_by_the_line_fit():
    tokens = decode(np.arange(6) * 997)
    ms = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    held = X.DeviceTable("new", tokens, ms)

    class Fixed:
        def __init__(self, values):
            self.values = np.asarray(values, dtype=float)

        def predict(self, archs):
            return self.values[:, None]

    context = {"own": {}, "models": {"crooked": Fixed([1, 2, 3, 10, 50, 60]), "straight": Fixed(ms / 10)}}
    _, pred = C.baseline_predictions("nearest_lut", held, np.arange(4), np.arange(4, 6), context)
    np.testing.assert_allclose(pred, [50.0, 60.0], rtol=1e-6)  # both rank the 4 points perfectly; straight fits them


def test_summary_gives_a_comparators_mean_only_over_as_many_devices_as_the_predictors():
    means = [{"method": "predictor", "k": 5, "group": g, "spearman_mean": 0.8, "spearman_n_devices": n,
              "kendall_mean": 0.6, "mape_pct_mean": 9.0, "within10_pct_mean": 70.0} for g, n in (("all", 10), ("measured", 4))]
    means += [{"method": "own_lut", "k": 5, "group": g, "spearman_mean": 0.85, "spearman_n_devices": 4}
              for g in ("all", "measured")]
    means += [{"method": "no_twin", "k": 5, "group": "all", "spearman_mean": 0.7, "spearman_n_devices": 6,
               "mape_pct_mean": 12.0}]
    out = C.summary_figures([], means, [])
    assert out["baseline.own_lut.spearman.k5.measured"] == 0.85 and "baseline.own_lut.spearman.k5.mean" not in out
    assert not [k for k in out if "no_twin" in k], "6 of 10 devices: only its paired difference is comparable"


def test_linear_counts_penalty_on_two_points_is_the_first_not_rounding_noise():
    feats = np.random.default_rng(4).normal(size=(2, 40))
    assert C.ridge_loo_penalty(feats, np.array([1.0, 1.3])) == C.LINEAR_PENALTIES[0]
