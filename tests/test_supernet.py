"""Supernet, search losses, extraction, WS evaluation, metrics and the feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linas_lib.keys import seeded_module
from linas_lib.encoder.features import FeatureSplit, load_or_build
from linas_lib.losses import NonFiniteLossError, check_finite, latency_penalty, segmentation_terms
from linas_lib.metrics import confusion_counts, miou_from_counts
from linas_lib.supernet.evaluate import WeightSharingEvaluator
from linas_lib.supernet.train import LatencyTerms, arch_step, weight_step
from linas_lib.supernet.model import Supernet, argmax_choices, extract_decoder, gumbel_temperature

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
