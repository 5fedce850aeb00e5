"""Predictors: vectorisation equals a per-arch loop; the torch expectation equals the
additive prediction for one-hot probabilities and has gradients; ORT export of one arch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linas_lib.data import DataError
from linas_lib.latency import lut as L
from linas_lib.latency import predict as P
from linas_lib.space import N_CHOICES, N_LAYERS, OPS, WIDTHS
from test_latency_lut import fake_lut

BUDGETS = {"a": 168.0, "b": 200.0}


def _model(variant: str) -> P.LatencyModel:
    luts = {n: fake_lut(target=n, calibrated=True) for n in ("a", "b")}
    return P.model_from_luts(luts, BUDGETS, variant)


def _loop_predict(model: P.LatencyModel, arch) -> np.ndarray:
    out = []
    for t in range(len(model.target_names)):
        total = model.fixed[t] + sum(model.table[t, layer, arch[layer]] for layer in range(N_LAYERS))
        if model.variant in ("interaction", "calibrated"):  # the fake calibration corrects interaction
            total += sum(model.pair[t, s, arch[s], arch[s + 1]] for s in range(N_LAYERS - 1))
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("variant", P.PREDICT_VARIANTS)
def test_vectorised_equals_loop(variant):
    model = _model(variant)
    archs = np.random.default_rng(0).integers(0, N_CHOICES, size=(200, N_LAYERS))
    pred = model.predict(archs)
    assert pred.shape == (200, 2)
    np.testing.assert_allclose(pred, np.array([_loop_predict(model, a) for a in archs]), rtol=1e-12)
    np.testing.assert_allclose(model.predict(archs[3]), pred[3])
    np.testing.assert_allclose(model.predict(archs.astype(np.int8)), pred)


def test_variant_terms():
    arch = np.array([0, 1, 20, 20, 20])
    op_only, projected, inter, calibrated = (_model(v).predict(arch)[0] for v in P.PREDICT_VARIANTS)
    assert op_only == pytest.approx(20.0 + sum(1.0 + layer + arch[layer] / 100 for layer in range(5)))
    assert projected == pytest.approx(150.0 + sum(1.5 + layer + arch[layer] / 100 for layer in range(5)))
    assert inter == pytest.approx(projected + 0.4 - 1.0)  # measured pair (0,1) in slot 0; slot-2 mean
    assert calibrated == pytest.approx(2.0 * inter + 3.0)


def test_calibrated_variant_needs_a_calibration_block():
    with pytest.raises(L.LUTError, match="no calibration block"):
        P.model_from_luts({"a": fake_lut(target="a")}, {"a": 1.0}, "calibrated")


def test_predict_rejects_bad_choices():
    with pytest.raises(ValueError, match="entries 0..20"):
        _model("projected").predict(np.array([[0, 1, 2, 3, 21]]))


def test_feasible_and_subset():
    model = _model("projected")
    archs = np.array([[0] * 5, [20] * 5])
    np.testing.assert_array_equal(model.feasible(archs), [[True, True], [False, True]])
    assert model.subset(["b"]).predict(archs).shape == (2, 1)


@pytest.mark.parametrize("variant", P.PREDICT_VARIANTS)
def test_expectation_one_hot_equals_prediction(variant):
    model = _model(variant)
    table, fixed, pair = P.lut_tensor(model, dtype=torch.float64)
    for arch in np.random.default_rng(1).integers(0, N_CHOICES, size=(5, N_LAYERS)):
        probs = torch.nn.functional.one_hot(torch.as_tensor(arch), N_CHOICES).double()
        got = P.expected_latency(probs, table, fixed, pair)
        np.testing.assert_allclose(got.numpy(), model.predict(arch), rtol=1e-12)


def test_expectation_factored_probs_and_gradients():
    model = _model("interaction")
    table, fixed, pair = P.lut_tensor(model, dtype=torch.float64)
    op_logits = torch.randn(N_LAYERS, len(OPS), dtype=torch.float64, requires_grad=True)
    width_logits = torch.randn(N_LAYERS, len(WIDTHS), dtype=torch.float64, requires_grad=True)
    op_p, width_p = op_logits.softmax(-1), width_logits.softmax(-1)
    expected = P.expected_latency((op_p, width_p), table, fixed, pair)
    joint = (op_p[:, :, None] * width_p[:, None, :]).reshape(N_LAYERS, N_CHOICES)
    manual = fixed + (joint * table).sum((1, 2)) + torch.einsum("sa,tsab,sb->t", joint[:-1], pair, joint[1:])
    torch.testing.assert_close(expected, manual)
    expected.sum().backward()
    assert op_logits.grad is not None and torch.all(torch.isfinite(op_logits.grad))
    assert op_logits.grad.abs().sum() > 0 and width_logits.grad.abs().sum() > 0


def test_expectation_is_mean_over_all_archs_for_uniform_probs():
    model = _model("interaction")
    table, fixed, pair = P.lut_tensor(model, dtype=torch.float64)
    uniform = torch.full((N_LAYERS, N_CHOICES), 1.0 / N_CHOICES, dtype=torch.float64)
    exact = fixed.numpy() + model.table.mean(2).sum(1) + model.pair.mean((2, 3)).sum(1)
    np.testing.assert_allclose(P.expected_latency(uniform, table, fixed, pair).numpy(), exact, rtol=1e-12)


def test_bad_probs_shape():
    table, fixed, pair = P.lut_tensor(_model("projected"))
    with pytest.raises(ValueError, match="probs of shape"):
        P.expected_latency(torch.ones(5, 20), table, fixed, pair)


class TinyEncoder(torch.nn.Module):
    """Strided convs giving the DenseNet taps' shapes (64@H/2 ... 1024@H/16), cheap to export."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(a, b, 1, stride=s) for a, b, s in ((3, 64, 2), (64, 128, 2), (128, 256, 2),
                                                               (256, 512, 2), (512, 1024, 1)))

    def forward(self, x):
        taps = []
        for conv in self.convs:
            x = conv(x)
            taps.append(x)
        return tuple(taps)


def test_ort_export_runs_for_one_arch(tmp_path):
    from linas_lib.latency import e2e

    # a tiny stand-in for the (slow to export) DenseNet encoder, placed where the cache expects it
    e2e.export_onnx(TinyEncoder(), (torch.zeros(1, 3, 64, 64),), e2e.encoder_onnx_path(64, tmp_path))
    image = np.random.default_rng(0).integers(0, 256, size=(1, 64, 64, 3), dtype=np.uint8)
    arch = [0, 9, 20, 3, 14]
    fn, spec = e2e.pipeline("cpu-ort-1t", arch, 64, tmp_path)
    mask = fn(image)
    assert mask.shape == (1, 64, 64) and mask.dtype == np.uint8
    assert [p.name for p in tmp_path.iterdir()] == [e2e.encoder_onnx_path(64, tmp_path).name]
    torch_fn, _ = e2e.pipeline("cpu-torch-1t", arch, 64, tmp_path, encoder=TinyEncoder())
    assert torch_fn(image).shape == (1, 64, 64)
    samples = e2e.time_interleaved({"ort": (fn, spec), "torch": (torch_fn, spec)}, image, warmup=1, repeats=2)
    assert sorted(samples) == ["ort", "torch"] and all(len(v) == 2 and min(v) > 0 for v in samples.values())
    res = e2e.throughput(torch_fn, np.repeat(image, 2, axis=0), 3, spec)
    assert res["n_images"] == 3 and res["image_min_ms"] <= res["image_median_ms"] <= res["image_max_ms"]
    with pytest.raises(DataError, match="uint8 images"):
        fn(image.astype(np.float32))


def test_ort_graph_does_pre_and_post_processing_as_the_host_code():
    import onnxruntime as ort

    from linas_lib.data import postprocess, preprocess
    from linas_lib.latency import e2e

    pre, post = e2e._host_graphs(32)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
    logits = rng.normal(size=(1, 2, 32, 32)).astype(np.float32)
    run = lambda graph, feeds: ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]  # noqa: E731
    np.testing.assert_allclose(run(pre, {"image": image}), preprocess(image).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(run(post, {"logits": logits}), postprocess(torch.from_numpy(logits)))


def test_fastest_is_the_exhaustive_minimum_with_pair_terms():
    rng = np.random.default_rng(3)
    n_t = 2
    table = rng.uniform(1, 5, size=(n_t, P.N_LAYERS, P.N_CHOICES))
    pair = rng.uniform(-0.5, 0.5, size=(n_t, P.N_LAYERS - 1, P.N_CHOICES, P.N_CHOICES))
    model = P.LatencyModel(("a", "b"), np.array([10.0, 10.0]), ("end-to-end",) * 2, "interaction", table,
                           np.array([1.0, 2.0]), pair)
    archs, ms = model.fastest()
    from linas_lib.space import all_archs

    every = model.predict(all_archs())
    assert np.allclose(ms, every.min(axis=0))
    assert np.allclose(model.predict(archs).diagonal(), ms)
