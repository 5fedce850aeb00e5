"""Supernet, search losses, extraction, WS evaluation, metrics and the feature cache."""

from __future__ import annotations

import dataclasses
import math
import numpy as np
import pytest
import torch

from linas_lib.keys import seeded_module
from linas_lib.encoder.features import FeatureSplit, load_or_build
from linas_lib.losses import NonFiniteLossError, check_finite, latency_penalty, segmentation_loss, segmentation_terms
from linas_lib.metrics import confusion_counts, miou_from_counts
from linas_lib.supernet.evaluate import WeightSharingEvaluator
from linas_lib.supernet.train import LatencyTerms, arch_step, weight_step
from linas_lib.supernet.model import Supernet, argmax_choices, eval_mode, extract_decoder, gumbel_temperature

RES = 32
TAP_SHAPES = ((64, 16), (128, 8), (256, 4), (512, 2), (1024, 2))


# A tiny channel plan keeps most tests fast; the key invariant uses the real one.
TINY = ((32, 16), (16, 8), (8, 8), (8, 8), (8, 4))
TINY_SHAPES = ((8, 16), (8, 8), (8, 4), (16, 2), (24, 2))


def make_taps(batch: int, seed: int = 0, shapes=TINY_SHAPES):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, c, s, s, generator=gen) for c, s in shapes)


def tiny_supernet(seed: int = 0) -> Supernet:
    return seeded_module(lambda: Supernet(channels=TINY, deep_channels=24), torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _native_kernels():
    """oneDNN's per-shape kernel set-up dominates on these tiny tensors; the native kernels are quicker."""
    with torch.backends.mkldnn.flags(enabled=False):
        yield


@pytest.fixture(scope="module")
def supernet():
    return tiny_supernet()


@pytest.fixture(scope="module")
def full_supernet():
    return seeded_module(Supernet, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["soft", "gumbel", "binarised", "uniform"])
def test_every_mode_gives_logits_at_input_resolution(supernet, mode):
    out = supernet(make_taps(1), mode=mode, tau=1.0, generator=torch.Generator().manual_seed(1))
    assert out.shape == (1, 2, RES, RES)
    assert torch.isfinite(out).all()


def test_unknown_mode_and_missing_generator_are_errors(supernet):
    with pytest.raises(ValueError, match="unknown sampling mode"):
        supernet(make_taps(1), mode="darts")
    with pytest.raises(ValueError, match="Generator"):
        supernet(make_taps(1), mode="binarised")


def test_binarised_step_touches_only_the_sampled_path(supernet):
    supernet.zero_grad(set_to_none=True)
    path = np.array([2, 5, 9, 14, 20])
    out = supernet(make_taps(1), mode="binarised", path=path)
    out.mean().backward()
    for layer, chosen in zip(supernet.layers, path):
        for c, cand in enumerate(layer.candidates):
            grads = [p.grad for p in cand.parameters()]
            if c == chosen:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads), f"candidate {c} got gradients"
    # the straight-through gate passes a gradient to the architecture logits
    assert supernet.alpha_op.grad is not None and supernet.alpha_op.grad.abs().sum() > 0
    supernet.zero_grad(set_to_none=True)


def test_gumbel_temperature_schedule():
    assert gumbel_temperature(0, 10) == pytest.approx(5.0)
    assert gumbel_temperature(10, 10) == pytest.approx(0.1)
    assert gumbel_temperature(5, 10) == pytest.approx(5.0 * (0.1 / 5.0) ** 0.5)
    assert gumbel_temperature(20, 10) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        gumbel_temperature(1, 0)


def test_one_hot_alphas_make_the_supernet_equal_the_extracted_decoder(full_supernet):
    supernet = full_supernet
    choices = np.array([20, 3, 11, 16, 7])
    taps = make_taps(1, seed=3, shapes=TAP_SHAPES)
    with torch.no_grad():
        saved = supernet.alpha_op.clone(), supernet.alpha_width.clone()
        supernet.alpha_op.fill_(0.0)
        supernet.alpha_width.fill_(0.0)
        for i, c in enumerate(choices):
            supernet.alpha_op[i, c // 3] = 1e4
            supernet.alpha_width[i, c % 3] = 1e4
        supernet.eval()
        np.testing.assert_array_equal(argmax_choices(supernet.alpha_op, supernet.alpha_width), choices)
        decoder = extract_decoder(supernet, choices).eval()
        soft = supernet(taps, mode="soft")
        torch.testing.assert_close(soft, decoder(taps), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(supernet.forward_arch(taps, choices), decoder(taps), rtol=0, atol=0)
        supernet.alpha_op.copy_(saved[0])
        supernet.alpha_width.copy_(saved[1])


def test_extraction_is_deterministic(full_supernet):
    supernet = full_supernet
    a = extract_decoder(supernet, [1, 2, 3, 4, 5]).state_dict()
    b = extract_decoder(supernet, [1, 2, 3, 4, 5]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_latency_penalty_zero_under_budget_positive_above():
    budgets = torch.tensor([10.0, 100.0])
    assert latency_penalty(torch.tensor([9.0, 50.0]), budgets) == 0
    over = latency_penalty(torch.tensor([12.0, 50.0]), budgets)
    assert over == pytest.approx(0.2)  # (12 - 10) / 10: normalised by the budget
    assert latency_penalty(torch.tensor([12.0, 120.0]), budgets) == pytest.approx(0.4)


def test_latency_terms_gradient_points_to_cheaper_choices(supernet):
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(3, 5, 21, generator=gen) * 10
    table[:, :, 0] = 0.0  # choice 0 costs nothing anywhere
    lat = LatencyTerms(table, torch.zeros(3), torch.full((3,), 1.0), ("a", "b", "c"))
    probs = supernet.joint_probs()
    penalty = lat.penalty(probs)
    assert penalty > 0
    (grad,) = torch.autograd.grad(penalty, supernet.alpha_op)
    assert (grad[:, 0] < 0).all()  # raising op 0 lowers the penalty


def test_nan_loss_error_names_step_and_terms():
    with pytest.raises(NonFiniteLossError, match=r"epoch 3 step 7.*ce=nan"):
        check_finite({"ce": torch.tensor(float("nan")), "dice": torch.tensor(0.5)}, "supernet epoch 3 step 7")


def test_weight_step_raises_on_nan_features(supernet):
    taps = make_taps(1)
    taps = (taps[0], taps[1], taps[2], taps[3], torch.full_like(taps[4], float("nan")))
    opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.0)
    with pytest.raises(NonFiniteLossError, match="epoch 0 step 0"):
        weight_step(supernet, opt, taps, torch.zeros(1, RES, RES, dtype=torch.long), "uniform", 1.0,
                    torch.Generator().manual_seed(0), "supernet epoch 0 step 0")


def test_segmentation_terms_shape_check_and_values():
    logits = torch.zeros(2, 2, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, 2:4, 2:4] = 1
    terms = segmentation_terms(logits, masks)
    assert terms["ce"] == pytest.approx(np.log(2))
    assert 0 < terms["dice"] < 1 and terms["boundary"] == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match="do not match"):
        segmentation_terms(logits, masks[:, :4])


def test_miou_on_known_counts():
    pred = torch.tensor([[0, 0, 1, 1]])
    target = torch.tensor([[0, 1, 1, 1]])
    counts = confusion_counts(pred, target)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [2, 0, 1]])
    assert miou_from_counts(counts) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert miou_from_counts(np.array([[5, 0, 0], [0, 0, 0]])) == 1.0  # absent class counts 1


def test_ws_evaluator_deterministic_and_batched(supernet):
    taps = make_taps(3, seed=5)
    masks = (torch.arange(3 * RES * RES).reshape(3, RES, RES) % 7 == 0).to(torch.uint8)
    split = FeatureSplit(tuple(t.half() for t in taps), masks, ("a", "b", "c"))
    ev = WeightSharingEvaluator(supernet, split, batch_size=2)
    archs = np.array([[0, 1, 2, 3, 4], [20, 20, 20, 20, 20]])
    first = ev.evaluate(archs)
    ev.memo.clear()
    assert first.shape == (2,) and np.array_equal(first, ev.evaluate(archs))
    assert ((first >= 0) & (first <= 1)).all()
    # the loss: the training objective of each batch (2 + 1 images), weighted by its size
    with torch.no_grad(), eval_mode(supernet):
        by_hand = [segmentation_loss(supernet.forward_arch(t, archs[1]), m) for t, m in split.batches(2)]
    assert ev.scores(archs)["loss"][1] == pytest.approx((2 * float(by_hand[0]) + float(by_hand[1])) / 3, rel=1e-5)


def test_binarised_arch_step_moves_only_alphas_and_is_deterministic():
    def run():
        model = tiny_supernet(4)
        opt = torch.optim.Adam(model.arch_parameters(), lr=0.1)
        before = model.head.weight.clone()
        arch_step(model, opt, make_taps(1), torch.zeros(1, RES, RES, dtype=torch.long), "binarised", 1.0,
                  torch.Generator().manual_seed(9), None, 0.0, "test")
        assert torch.equal(before, model.head.weight)
        return model.alpha_op.detach().clone()

    a, b = run(), run()
    assert torch.equal(a, b) and a.abs().sum() > 0


class _CountingEncoder(torch.nn.Module):
    """A stand-in encoder with the DenseNet tap shapes (cheap, counts its calls)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        b, side = x.shape[0], x.shape[-1]
        return tuple(torch.full((b, c, side // s, side // s), x.mean().item())
                     for c, s in zip((64, 128, 256, 512, 1024), (2, 4, 8, 16, 16)))


def test_feature_cache_hit_miss_key_change_and_corruption(tmp_path):
    from linas_lib.data import SegDataset

    rng = np.random.default_rng(0)
    ds = SegDataset(rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8), np.zeros((3, 32, 32), np.uint8),
                    ("a", "b", "c"), "synthetic")
    enc = _CountingEncoder()
    first, hit = load_or_build(ds, "w1", lambda: enc, 2, tmp_path)
    assert not hit and enc.calls == 2 and first.taps[0].dtype == torch.float16
    again, hit = load_or_build(ds, "w1", lambda: enc, 2, tmp_path)
    assert hit and enc.calls == 2
    assert all(torch.equal(a, b) for a, b in zip(first.taps, again.taps))
    _, hit = load_or_build(ds, "w2", lambda: enc, 2, tmp_path)  # other weights: other key
    assert not hit and len(list(tmp_path.glob("taps_*.pt"))) == 2
    for path in tmp_path.glob("taps_*.pt"):
        path.write_bytes(b"corrupt")
    _, hit = load_or_build(ds, "w1", lambda: enc, 2, tmp_path)
    assert not hit  # rebuilt, not crashed
    _, hit = load_or_build(ds, "w1", lambda: enc, 2, tmp_path)
    assert hit


class _TapBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(8)

    def forward(self, taps):
        return self.bn(taps[0])


def test_recalibrate_bn_gives_exact_split_statistics():
    from linas_lib.supernet.standalone import recalibrate_bn

    taps = make_taps(4, seed=2)
    split = FeatureSplit(tuple(t.half() for t in taps), torch.zeros(4, RES, RES, dtype=torch.uint8), tuple("abcd"))
    model = _TapBN()
    recalibrate_bn(model, split, batch_size=2)
    expected = split.taps[0].float().mean(dim=(0, 2, 3))
    torch.testing.assert_close(model.bn.running_mean, expected, rtol=1e-5, atol=1e-5)
    assert model.bn.momentum == 0.1 and not model.training


class _FakeLatency:
    """Latency = sum of choice indices (cheaper = lower index); one target."""

    budgets_ms = np.array([30.0])

    def predict(self, choices):
        arr = np.asarray(choices)
        return arr.sum(axis=-1, keepdims=True).astype(float)


def test_budgeted_architecture_meets_budget_and_keeps_argmax_when_possible():
    from linas_lib.supernet.report import budgeted_architecture

    probs = np.full((5, 21), 0.01)
    probs[:, 20] = 1.0  # argmax: choice 20 everywhere, latency 100
    arch, meets = budgeted_architecture(probs / probs.sum(1, keepdims=True), _FakeLatency(), 0)
    assert meets and arch.sum() <= 30
    probs[:, 5] = 2.0  # argmax now latency 25: within budget, kept
    arch, meets = budgeted_architecture(probs / probs.sum(1, keepdims=True), _FakeLatency(), 0)
    assert meets and arch.tolist() == [5] * 5
    _FakeLatency.budgets_ms = np.array([-1.0])
    _, meets = budgeted_architecture(probs, _FakeLatency(), 0)
    _FakeLatency.budgets_ms = np.array([30.0])
    assert not meets


# ------------------------------------------------------------------ measurements never change what they measure


def _bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buf.clone() for name, buf in model.named_buffers()
            if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}


def _assert_same_state(before: dict, model: torch.nn.Module) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"changed: {changed[:5]}"


def _tiny_split(n: int, seed: int) -> FeatureSplit:
    taps = make_taps(n, seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    masks = (torch.rand(n, RES, RES, generator=gen) < 0.2).to(torch.uint8)
    return FeatureSplit(tuple(t.half() for t in taps), masks, tuple(f"img{seed}_{i}" for i in range(n)))


def _trained_tiny(seed: int = 6) -> Supernet:
    """A tiny supernet after a few uniform weight steps (BN statistics away from their init)."""
    model = tiny_supernet(seed)
    opt = torch.optim.Adam(model.weight_parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    split = _tiny_split(4, seed)
    for i, (taps, masks) in enumerate(split.batches(2)):
        weight_step(model, opt, taps, masks, "uniform", 1.0, gen, f"setup step {i}")
    return model.eval()


@pytest.mark.parametrize("mode", ["binarised", "gumbel", "soft"])
def test_arch_step_leaves_bn_statistics_but_normalises_with_the_batch(mode):
    import copy

    model = _trained_tiny()
    reference = copy.deepcopy(model).train()
    bn_before = _bn_buffers(model)
    assert bn_before and any(v.float().abs().sum() > 0 for k, v in bn_before.items() if k.endswith("running_mean"))
    weights_before = {k: v.clone() for k, v in model.state_dict().items() if k not in bn_before}
    taps, masks = make_taps(2, seed=11), (torch.rand(2, RES, RES, generator=torch.Generator().manual_seed(3)) < 0.3)
    opt = torch.optim.Adam(model.arch_parameters(), lr=0.1)
    terms = arch_step(model, opt, taps, masks.long(), mode, 2.0, torch.Generator().manual_seed(9), None, 0.0, "t")
    for name, value in _bn_buffers(model).items():
        assert torch.equal(value, bn_before[name]), f"{name} moved during the alpha step"
    for name, value in model.state_dict().items():
        if name not in bn_before and not name.startswith("alpha"):
            assert torch.equal(value, weights_before[name]), name
    assert not torch.equal(model.alpha_op, weights_before["alpha_op"])  # the step did move the logits
    # the loss the step saw is the train-mode (batch-statistics) loss, not an eval-mode one
    with torch.no_grad():
        expected = segmentation_terms(reference(taps, mode=mode, tau=2.0, generator=torch.Generator().manual_seed(9)),
                                      masks.long())
    assert terms["ce"] == pytest.approx(float(expected["ce"]), rel=1e-6)


class _TapHead(torch.nn.Module):
    """A minimal decoder: BN and a 1x1 head on the first tap."""

    def __init__(self):
        super().__init__()
        self.bn, self.head = torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 2, 1)

    def forward(self, taps):
        return self.head(self.bn(taps[0]))


def test_evaluation_restores_each_module_mode_and_leaves_statistics():
    from linas_lib.supernet.evaluate import evaluate_decoder, evaluate_logits

    model = _trained_tiny().train()
    model.layers[2].eval()  # a mixed-mode model gets each part back as it was
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: m.training for name, m in model.named_modules()}
    split = _tiny_split(3, seed=21)
    WeightSharingEvaluator(model, split, batch_size=2).evaluate(np.array([[0, 4, 8, 12, 20]]))
    evaluate_logits(lambda taps: model.forward_arch(taps, [1, 2, 3, 4, 5]), split, 2, model=model)
    assert {name: m.training for name, m in model.named_modules()} == flags
    _assert_same_state(state, model)

    decoder = _TapHead().train()
    masks16 = FeatureSplit(split.taps, split.masks[:, ::2, ::2].contiguous(), split.names)  # the first tap's size
    before = decoder.bn.running_mean.clone()
    value = evaluate_decoder(decoder, masks16, batch_size=2)
    assert 0 <= value <= 1 and decoder.training and decoder.bn.training
    assert torch.equal(decoder.bn.running_mean, before)  # eval mode inside: statistics read, not moved


def _tiny_trained_supernet(**cfg):
    from linas_lib.config import SupernetConfig
    from linas_lib.encoder.features import Features
    from linas_lib.supernet.train import TrainedSupernet

    features = Features({"train": _tiny_split(4, 1), "val": _tiny_split(3, 2), "test": _tiny_split(2, 3)},
                        weights=None, cache_hits={})
    settings = dict(batch_size=2, pad_batch_size=2, ws_val_images=0, pad_steps=1)
    settings.update(cfg)
    return TrainedSupernet(_trained_tiny(), [], features, SupernetConfig(**settings), None, "tiny")


def test_weights_digest_follows_the_weights_not_the_key_and_survives_ws_evaluation():
    ts = _tiny_trained_supernet(bn_recalib_batches=1)
    before = ts.weights_digest
    ts.ws_scores(ts.argmax())  # a WS evaluation, BN recalibrated: leaves the model bit-identical
    del ts.__dict__["weights_digest"]  # computed again, after the evaluation
    assert ts.weights_digest == before
    assert _tiny_trained_supernet().weights_digest == before  # the same weights: the same digest
    other = _tiny_trained_supernet()
    with torch.no_grad():
        other.model.alpha_op[0, 0] += 1e-3  # same key ("tiny"), other weights
    assert other.key == ts.key and other.weights_digest != before


def test_measure_memory_ratio_leaves_the_trained_supernet_unchanged():
    from linas_lib.supernet import report

    ts = _tiny_trained_supernet()
    state = {k: v.clone() for k, v in ts.model.state_dict().items()}
    fresh = lambda: WeightSharingEvaluator(ts.model, ts.features["val"], 2)  # noqa: E731 (no memo across)
    ws_before = fresh().evaluate(ts.argmax())
    memory = report.measure_memory_ratio(ts)
    assert memory["bytes_binarised"] > 0 and 0 < memory["binarised_mem_ratio"] < 1
    _assert_same_state(state, ts.model)
    assert not any(m.training for m in ts.model.modules())
    assert np.array_equal(fresh().evaluate(ts.argmax()), ws_before)


def test_pad_study_pairs_the_arms_and_leaves_the_trained_supernet_unchanged(monkeypatch):
    from linas_lib.supernet import pad

    ts = _tiny_trained_supernet(pad_steps=4)
    state = {k: v.clone() for k, v in ts.model.state_dict().items()}
    trained = []
    monkeypatch.setattr(pad, "_final_row", lambda ts_, model, arm, seed: trained.append(model) or {"arm": arm, "seed": seed})
    curves, finals = pad.pad_study(ts, seeds=[0, 1])
    assert [(r["arm"], r["seed"]) for r in finals] == [("annealed", 0), ("constant", 0), ("annealed", 1), ("constant", 1)]
    assert len(trained) == 4 and all(m is not ts.model for m in trained)
    assert not torch.equal(trained[0].alpha_op, ts.model.alpha_op)  # the runs did train (their copies)
    _assert_same_state(state, ts.model)
    assert not any(m.training for m in ts.model.modules())
    annealed = [r for r in curves if r["arm"] == "annealed" and r["seed"] == 0]
    constant = [r for r in curves if r["arm"] == "constant" and r["seed"] == 0]
    assert annealed[0]["tau"] == pytest.approx(ts.cfg.tau_max) and annealed[-1]["tau"] == pytest.approx(ts.cfg.tau_min)
    assert {r["tau"] for r in constant} == {ts.cfg.pad_constant_tau}
    assert [r["step"] for r in annealed] == [r["step"] for r in constant] == [0, 1, 2, 3, 4]
    assert all(0 <= r["alpha_entropy"] <= np.log(21) + 1e-6 for r in curves)


def test_pad_annealed_arm_trains_its_last_step_at_tau_min():
    from types import SimpleNamespace

    from linas_lib.supernet import pad

    cfg = SimpleNamespace(tau_max=5.0, tau_min=0.1, pad_constant_tau=1.0)
    trained = [pad.arm_temperature("annealed", step, 4, cfg) for step in range(4)]
    assert trained[0] == pytest.approx(5.0) and trained[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(trained, trained[1:]))
    assert pad.arm_temperature("constant", 3, 4, cfg) == 1.0


def test_pad_figures_pair_the_arms_by_seed():
    from linas_lib.supernet import pad

    finals = [{"arm": arm, "seed": s, "gap_miou": g, "gap_miou_tau_min": g / 2, "extracted_miou": 0.6,
               "alpha_entropy": 1.0} for arm, s, g in [("annealed", 0, 0.01), ("constant", 0, -0.05),
                                                        ("annealed", 1, 0.02), ("constant", 1, 0.06)]]
    out = pad.pad_figures(finals)
    assert out["pad.abs_gap_miou_diff"] == pytest.approx(((0.01 - 0.05) + (0.02 - 0.06)) / 2)
    assert out["pad.gap_miou.constant"] == pytest.approx(0.005) and out["pad.n_seeds"] == 2.0
    with pytest.raises(ValueError, match="unknown PAD arm"):
        pad.arm_temperature("warm", 0, 1, None)


# ------------------------------------------------------------------ resumable, keyed supernet training


class _Interrupted(Exception):
    pass


def _tiny_training(monkeypatch):
    from linas_lib.supernet import train as T

    monkeypatch.setattr(T, "Supernet", lambda: Supernet(channels=TINY, deep_channels=24))
    return T, _tiny_split(4, 31), _tiny_split(2, 32)


def _final(state) -> dict:
    return {"model": {k: v.clone() for k, v in state.model.state_dict().items()},
            "opt_w": state.opt_w.state_dict(), "opt_a": state.opt_a.state_dict(), "gen": state.gen.get_state(),
            "rng": state.rng.bit_generator.state, "ema": state.ema.state_dict() if state.ema is not None else None,
            "history": [{k: v for k, v in row.items() if k != "seconds"} for row in state.history]}


def _assert_equal_nested(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal_nested(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_nested(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("warmup,epochs,ema", [(1, 1, 0.0), (0, 2, 0.0), (2, 1, 0.5)])
def test_resumed_training_equals_an_uninterrupted_run(tmp_path, monkeypatch, warmup, epochs, ema):
    from linas_lib.config import SupernetConfig

    T, train, val = _tiny_training(monkeypatch)
    cfg = SupernetConfig(warmup_epochs=warmup, epochs=epochs, batch_size=2, lr_weights=1e-2, lr_alpha=0.05,
                         oneshot_ema=ema, bn_recalib_batches=int(ema > 0))
    whole = _final(T.train_supernet(cfg, 3, train, val, None, tmp_path / "whole.pt", "k"))

    real = T.run_epoch

    def stop_at_second(state, epoch, *args):
        if epoch == 1:
            raise _Interrupted
        return real(state, epoch, *args)

    monkeypatch.setattr(T, "run_epoch", stop_at_second)
    with pytest.raises(_Interrupted):
        T.train_supernet(cfg, 3, train, val, None, tmp_path / "resumed.pt", "k")
    saved = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert len(saved["history"]) == 1 and saved["opt_w"]["state"]  # the weight optimiser's moments are saved
    assert (saved["ema"] is None) == (ema == 0)  # the one-shot average is saved (mid-phase: 2 steps in)
    assert ema == 0 or int(saved["ema"]["n_averaged"]) == 2
    monkeypatch.setattr(T, "run_epoch", real)
    resumed = _final(T.train_supernet(cfg, 3, train, val, None, tmp_path / "resumed.pt", "k"))
    _assert_equal_nested(whole, resumed)


def test_settings_outside_the_key_do_not_change_training(tmp_path, monkeypatch):
    from dataclasses import fields, replace
    from types import SimpleNamespace

    from linas_lib.config import SupernetConfig
    from linas_lib.encoder.features import Features

    T, train, val = _tiny_training(monkeypatch)
    base = SupernetConfig(warmup_epochs=1, epochs=1, batch_size=2, search_mode="gumbel")
    outside = [f for f in fields(SupernetConfig) if f.metadata.get("key", True) is False]
    assert {f.name for f in outside} == {"standalone_epochs", "standalone_lr", "standalone_init", "pad_steps",
                                         "pad_batch_size", "pad_seeds", "pad_constant_tau", "pad_eval_every",
                                         "measure_batches", "eval_checkpoints", "checkpoint_every_s",
                                         "target_search_steps", "target_search_seeds", "snapshots_on_disk"}
    changed = replace(base, standalone_epochs=9, standalone_lr=0.5, standalone_init="supernet", pad_steps=7,
                      pad_batch_size=5, pad_seeds=(3,), pad_constant_tau=2.0, pad_eval_every=2, measure_batches=3,
                      eval_checkpoints=(1,), checkpoint_every_s=60.0, target_search_steps=11, target_search_seeds=(4,),
                      snapshots_on_disk=False)
    a = _final(T.train_supernet(base, 0, train, val, None))
    b = _final(T.train_supernet(changed, 0, train, val, None))
    _assert_equal_nested(a, b)

    features = Features({"train": train, "val": val}, SimpleNamespace(weights_id="w"), {})
    key = lambda cfg: T.supernet_key(SimpleNamespace(supernet=cfg), 0, features, None)  # noqa: E731
    assert key(base) == key(changed)
    others = {"warmup_epochs": 3, "epochs": 5, "search_mode": "soft", "batch_size": 3, "lr_weights": 0.2,
              "lr_alpha": 0.2, "latency_lambda": 0.7, "tau_max": 4.0, "tau_min": 0.2, "ws_val_images": 1,
              "sampling": "sandwich", "sandwich_random": 1, "calr": True, "momentum_bins": 2,
              "bn_recalib_batches": 1, "alpha_val_share": 0.5, "latency_penalty": "range", "oneshot_ema": 0.5,
              "replica": 1}
    explicit = {f.name for f in fields(SupernetConfig) if f.metadata.get("key") == "explicit"}
    assert set(others) == {f.name for f in fields(SupernetConfig)} - {f.name for f in outside} - explicit
    for name, value in others.items():
        assert key(replace(base, **{name: value})) != key(base), name
    # calr_search acts where CaLR scales sampled-path search steps, and the key says so there
    calr = replace(base, calr=True, sampling="sandwich", search_mode="binarised")
    assert explicit == {"calr_search"} and key(replace(calr, calr_search=False)) != key(calr)
    assert key(replace(base, calr_search=False)) == key(base)  # without CaLR it changes nothing


def test_dataset_digest_is_a_content_hash():
    from linas_lib.supernet.train import dataset_digest_of

    split = _tiny_split(3, 41)
    masks = split.masks.clone()
    ones = masks.nonzero()[0]
    zeros = (masks == 0).nonzero()[0]
    masks[tuple(ones)], masks[tuple(zeros)] = 0, 1  # one defect pixel moved: same pixel sum
    assert int(masks.long().sum()) == int(split.masks.long().sum())
    moved = FeatureSplit(split.taps, masks, split.names)
    taps = list(split.taps)
    taps[4] = taps[4].clone()
    taps[4][0, 0, 0, 0] += 1
    other_taps = FeatureSplit(tuple(taps), split.masks, split.names)
    digests = {dataset_digest_of(s) for s in (split, moved, other_taps)}
    assert len(digests) == 3
    assert dataset_digest_of(_tiny_split(3, 41)) == dataset_digest_of(split)


def test_background_scores_are_the_free_accuracy(supernet):
    from linas_lib.config import SearchConfig
    from linas_lib.search.report import hv_reference_miou_loss

    masks = torch.zeros(3, RES, RES, dtype=torch.uint8)
    masks[:, :, : RES // 4] = 1  # a quarter of every image is defect
    split = FeatureSplit(tuple(t.half() for t in make_taps(3, seed=6)), masks, ("a", "b", "c"))
    ev = WeightSharingEvaluator(supernet, split, batch_size=2)
    free = ev.background_scores()
    assert free == {"miou": pytest.approx(0.75 / 2), "crack_iou": 0.0}  # background IoU 3/4, defect IoU 0
    assert hv_reference_miou_loss(SearchConfig(), ev) == pytest.approx(1 - 0.375)
    assert hv_reference_miou_loss(SearchConfig(hv_ref_accuracy="fixed", hv_ref_miou_loss=0.9), ev) == 0.9
    with pytest.raises(ValueError, match="hv_ref_accuracy = 'none' must be one of background, fixed"):
        SearchConfig(hv_ref_accuracy="none")


def test_latency_penalty_forms():
    budgets = torch.tensor([10.0, 100.0])
    expected = torch.tensor([12.0, 50.0])
    assert latency_penalty(expected, budgets, "log") == pytest.approx(math.log(1.2))
    assert latency_penalty(expected, budgets, "range", torch.tensor([4.0, 1.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="the range penalty needs a positive latency span per target"):
        latency_penalty(expected, budgets, "range")
    with pytest.raises(ValueError, match="unknown latency penalty 'cubic'"):
        latency_penalty(expected, budgets, "cubic")


def test_range_penalty_pulls_every_target_alike():
    """Two targets over budget by the same share of their span: ``ratio`` pulls the wide one
    30x harder (LUT range / budget), ``range`` pulls both alike."""
    from linas_lib.supernet.train import LatencyTerms

    base = torch.linspace(0, 1, 21).expand(5, 21)
    table = torch.stack([base * 2.0, base * 60.0])  # spans 10 and 300 ms
    fixed = torch.tensor([100.0, 0.0])  # end to end vs decoder only
    probs = torch.full((5, 21), 1 / 21, requires_grad=True)
    norms = {}
    for form in ("ratio", "range"):
        terms = LatencyTerms(table, fixed, torch.tensor([100.0 + 4.0, 120.0]), ("e2e", "edge"), None, form)
        expected = terms.expected(probs)
        grads = [torch.autograd.grad(latency_penalty(expected[i:i + 1], terms.budgets[i:i + 1], form,
                                                     terms.spans()[i:i + 1]), probs, retain_graph=True)[0].norm()
                 for i in range(2)]
        norms[form] = float(grads[1] / grads[0])
    assert norms["ratio"] == pytest.approx(30 * 104 / 120, rel=1e-4)
    assert norms["range"] == pytest.approx(1.0, rel=1e-4)


def test_argmax_breaks_exact_ties_at_random_not_by_index():
    from linas_lib.space import WIDTHS

    alpha_op, alpha_width = np.zeros((5, 7)), np.zeros((5, len(WIDTHS)))  # untrained: every choice ties
    draws = np.array([argmax_choices(alpha_op, alpha_width, np.random.default_rng(s)) for s in range(40)])
    assert len(np.unique(draws % len(WIDTHS))) == len(WIDTHS)  # every width, not always index 0
    np.testing.assert_array_equal(argmax_choices(alpha_op, alpha_width), argmax_choices(alpha_op, alpha_width))
    alpha_width[:, 2] = 1.0  # a strict maximum is taken whatever the generator
    assert (argmax_choices(alpha_op, alpha_width, np.random.default_rng(1)) % len(WIDTHS) == 2).all()


def _two_target_latency(form: str = "ratio") -> LatencyTerms:
    """An edge target timed decoder-only (architectures 150-450 ms, 30x the CPU's span, budget
    200) and a CPU target timed end to end (the same shape plus a fixed 100 ms, budget 104)."""
    shape = torch.linspace(1.0, 3.0, 21).repeat(5, 1)  # cheapest 5, dearest 15 ms per architecture
    table = torch.stack([30 * shape, shape])
    return LatencyTerms(table, torch.tensor([0.0, 100.0]), torch.tensor([200.0, 104.0]), ("edge", "cpu"), form=form)


def test_target_search_shares_show_which_target_steers_the_joint_alpha():
    from linas_lib.supernet import target_search as T

    model = tiny_supernet()  # uniform logits: expected 300 and 110 ms, both over budget
    ratio = T.gradient_shares(model, _two_target_latency("ratio"))
    assert ratio[0] > 0.9  # budget-normalised: 30x the span over 2x the budget
    assert T.gradient_shares(model, _two_target_latency("range")) == pytest.approx([0.5, 0.5])  # scale-free
    loose = dataclasses.replace(_two_target_latency("range"), budgets=torch.tensor([1e4, 1e4]))
    assert T.gradient_shares(model, loose) is None  # every target within budget: no latency gradient
    sub = T.subset(_two_target_latency(), [1], "range")
    assert sub.names == ("cpu",) and sub.form == "range" and sub.table.shape == (1, 5, 21) and float(sub.budgets[0]) == 104.0


def test_target_search_runs_every_arm_on_frozen_copies(monkeypatch):
    from linas_lib.supernet import target_search as T

    ts = _tiny_trained_supernet(latency_lambda=1.0)
    ts = dataclasses.replace(ts, latency=_two_target_latency())
    state = {k: v.clone() for k, v in ts.model.state_dict().items()}
    batches, step = {}, T.arch_step
    def recording_step(model, opt, taps, masks, *args):  # noqa: E306
        batches.setdefault(args[-1].split(" step ")[0], []).append(masks.sum().item())
        return step(model, opt, taps, masks, *args)
    monkeypatch.setattr(T, "arch_step", recording_step)
    rows, shares = T.target_search(ts, seeds=[0, 1], steps=3)
    assert [(r["arm"], r["target"]) for r in rows[:6]] == [("joint_ratio", "edge"), ("joint_ratio", "cpu"),
                                                          ("joint_range", "edge"), ("joint_range", "cpu"),
                                                          ("per_target", "edge"), ("per_target", "cpu")]
    assert len(rows) == 12 and {r["seed"] for r in rows} == {0, 1}
    for seed in (0, 1):
        for arm in ("joint_ratio", "joint_range"):
            archs = {r["architecture"] for r in rows if r["arm"] == arm and r["seed"] == seed}
            assert len(archs) == 1  # one distribution serves every target
        runs = [v for k, v in batches.items() if k.endswith(f"seed {seed})")]
        assert len(runs) == 4 and all(r == runs[0] for r in runs)  # every arm of a seed: the same batches
    assert batches["target search (edge, cpu, ratio, seed 0)"] != batches["target search (edge, cpu, ratio, seed 1)"]
    assert all(r["meets_budget"] == (r["predicted_ms"] <= r["budget_ms"]) and 0 <= r["ws_miou"] <= 1 for r in rows)
    assert {(s["arm"], s["target"]) for s in shares} == {(a, t) for a in ("joint_ratio", "joint_range") for t in ("edge", "cpu")}
    assert all(s["active_steps"] == 3 for s in shares)  # the fixture's targets start over budget
    _assert_same_state(state, ts.model)
    searched, _, _ = T._search(ts, ts.latency, 0, 3)
    assert not torch.equal(searched.alpha_op, ts.model.alpha_op)  # the logits moved ...
    after = searched.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(state[k], v) for k, v in after.items()
                                                if not k.startswith("alpha_"))  # ... nothing else (weights, BN)
    out = T.target_search_figures(rows, shares)
    assert out["target_search.distinct_archs.joint_ratio"] == 1.0 and out["target_search.n_seeds"] == 2.0
    assert out["target_search.grad_share_max.joint_ratio"] > 0.9
    assert {"target_search.ws_miou_diff.per_target_vs_joint_range", "target_search.meets_budget_diff.per_target_vs_joint_range",
            "target_search.ws_miou_diff_both_within.per_target_vs_joint_range"} <= set(out)
    with pytest.raises(ValueError, match="needs >= 1 step.*supernet.target_search_steps"):
        T.target_search(ts, seeds=[0], steps=0)
    with pytest.raises(ValueError, match="latency targets"):
        T.target_search(dataclasses.replace(ts, latency=None), seeds=[0], steps=1)


def test_target_search_figures_pair_per_target_with_joint_range():
    from linas_lib.supernet import target_search as T

    def row(arm, seed, target, miou, meets):
        return {"arm": arm, "seed": seed, "target": target, "architecture": f"{arm}{target}", "ws_miou": miou,
                "crack_iou": 0.1, "meets_budget": meets}
    rows = [row("joint_range", s, t, 0.5, True) for s in (0, 1) for t in ("a", "b")]
    rows += [row("per_target", 0, "a", 0.7, True), row("per_target", 0, "b", 0.9, False),
             row("per_target", 1, "a", 0.6, True), row("per_target", 1, "b", 0.5, True)]
    out = T.target_search_figures(rows, [{"arm": "joint_range", "seed": 0, "target": "a", "grad_share": 1.0}])
    assert out["target_search.ws_miou_diff.per_target_vs_joint_range"] == pytest.approx(((0.2 + 0.4) / 2 + 0.05) / 2)
    assert out["target_search.meets_budget_diff.per_target_vs_joint_range"] == pytest.approx((-0.5 + 0) / 2)
    assert out["target_search.ws_miou_diff_both_within.per_target_vs_joint_range"] == pytest.approx((0.2 + 0.05) / 2)
    assert out["target_search.n_pairs_both_within"] == 3.0 and out["target_search.distinct_archs.per_target"] == 2.0
