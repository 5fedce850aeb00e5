"""The measurement harness: IQR filter, statistics, CV retries, runtimes (CUDA skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linas_lib.latency import measure as M


def test_iqr_filter_known_values():
    samples = [10, 11, 12, 13, 14, 100]
    # Q1 = 11.25, Q3 = 13.75, IQR = 2.5 -> keep [7.5, 17.5]
    np.testing.assert_array_equal(M.iqr_filter(samples), [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(M.iqr_filter([1, 2, 50]), [1, 2, 50])  # too few to filter
    with pytest.raises(ValueError, match="non-empty"):
        M.iqr_filter([])


def test_summarise_fields():
    stats = M.summarise([10, 11, 12, 13, 14, 100], retries=1)
    assert stats.n == 5 and stats.n_raw == 6 and stats.retries == 1
    assert stats.mean_ms == pytest.approx(12.0) and stats.median_ms == pytest.approx(12.0)
    assert stats.min_ms == 10 and stats.max_ms == 14
    assert stats.std_ms == pytest.approx(np.std([10, 11, 12, 13, 14], ddof=1))
    assert stats.cv == pytest.approx(stats.std_ms / 12.0)
    assert M.Stats.from_dict(stats.to_dict()) == stats


class FakeTimer:
    """Returns scripted timings; counts calls."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def __call__(self, fn):
        fn()
        self.calls += 1
        return self.values.pop(0)


def test_measure_robust_retries_until_cv_ok():
    settings = M.MeasureSettings(warmup=0, repeats=4, max_cv=0.05, max_retries=3)
    noisy = [1.0, 1.0, 5.0, 9.0, 1.0]  # probe + 4 repeats (no outlier under IQR) -> high CV
    calm = [1.0, 2.0, 2.0, 2.0, 2.0]
    timer = FakeTimer(noisy + calm)
    stats = M.measure_robust(lambda: None, settings, timer)
    assert stats.retries == 1 and stats.cv == 0.0 and stats.mean_ms == 2.0
    assert timer.calls == 10


def test_measure_robust_gives_up_after_max_retries():
    settings = M.MeasureSettings(warmup=0, repeats=4, max_cv=0.01, max_retries=2)
    timer = FakeTimer([1.0, 1.0, 5.0, 9.0, 1.0] * 3)
    stats = M.measure_robust(lambda: None, settings, timer)
    assert stats.retries == 2 and stats.cv > 0.01 and timer.calls == 15


def test_plan_caps_repeats_of_big_entries():
    settings = M.MeasureSettings(warmup=4, repeats=20, max_time_ms=100.0, min_repeats=3)
    assert settings.plan(1.0) == (4, 20)
    assert settings.plan(10.0) == (2, 10)
    assert settings.plan(500.0) == (1, 3)
    assert M.MeasureSettings(warmup=4, repeats=20).plan(500.0) == (4, 20)


@pytest.mark.parametrize("name, spec", [
    ("cpu-torch-2t", M.RuntimeSpec("torch", "cpu", "fp32", 2)),
    ("cpu-ort-1t", M.RuntimeSpec("ort", "cpu", "fp32", 1)),
    ("cuda-fp16", M.RuntimeSpec("torch", "cuda", "fp16", 1)),
    ("cuda-fp32-graph", M.RuntimeSpec("torch", "cuda", "fp32", 1, graph=True)),
])
def test_spec_for_target(name, spec):
    assert M.spec_for_target(name) == spec


@pytest.mark.parametrize("bad", ["cpu-torch", "cpu-tf-1t", "cuda-int8", "cpu-ort-0t", "cuda-fp16-eager"])
def test_spec_for_unknown_target(bad):
    with pytest.raises(ValueError, match="unknown target"):
        M.spec_for_target(bad)


def test_graph_needs_cuda_torch():
    with pytest.raises(ValueError, match="CUDA-graph"):
        M.RuntimeSpec("ort", "cpu", "fp32", 1, graph=True)


def test_torch_threads_pinned_and_restored():
    before = torch.get_num_threads()
    seen = []
    with M.torch_threads(1):
        seen.append(torch.get_num_threads())
    assert seen == [1] and torch.get_num_threads() == before


def test_measure_torch_cpu_runs():
    module = torch.nn.Conv2d(4, 4, 3, padding=1)
    stats = M.measure_torch(module, (torch.zeros(1, 4, 8, 8),), M.RuntimeSpec("torch", threads=1),
                            M.MeasureSettings(warmup=1, repeats=3, max_retries=0))
    assert stats.n_raw == 3 and 0 < stats.min_ms <= stats.max_ms


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("target", ["cuda-fp32", "cuda-fp16", "cuda-fp32-graph", "cuda-fp16-graph"])
def test_cuda_runners(target):
    spec = M.spec_for_target(target)
    module = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU())
    x = torch.randn(1, 4, 16, 16)
    runner = M.torch_runner(module, (x,), spec)
    out = runner()
    if not spec.graph:
        assert out.dtype == (torch.float16 if spec.precision == "fp16" else torch.float32)
    stats = M.measure_robust(runner, M.MeasureSettings(warmup=2, repeats=5, max_retries=0), spec.timer)
    assert stats.n_raw == 5 and stats.mean_ms > 0


def test_measure_interleaved_alternates_calls():
    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    timer = FakeTimer([1.0, 2.0] + [1.0, 2.0] * 3)
    stats = M.measure_interleaved(fns, M.MeasureSettings(warmup=1, repeats=3), timer)
    assert calls == ["a", "b"] * 5  # probe, warm-up, three timed rounds
    assert [s.mean_ms for s in stats] == [1.0, 2.0] and all(s.n_raw == 3 for s in stats)


def test_eviction_read_precedes_every_timed_call_only(monkeypatch):
    calls = []
    monkeypatch.setattr(M, "cache_evictor", lambda mib: (lambda: calls.append(f"evict{mib}")))

    def timer(fn):  # marks the timed span, so a read inside it would show
        calls.append("start")
        fn()
        calls.append("stop")
        return 1.0

    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    M.measure_interleaved(fns, M.MeasureSettings(warmup=1, repeats=2, evict_mib=8), timer)
    probes = ["start", "a", "stop", "start", "b", "stop"]
    # probes and warm-ups run as they are; each timed call comes right after a read, outside its span
    assert calls == probes + ["a", "b"] + ["evict8", "start", "a", "stop", "evict8", "start", "b", "stop"] * 2
    calls.clear()
    M.measure(lambda: calls.append("f"), M.MeasureSettings(warmup=1, repeats=2, evict_mib=8), timer)
    assert calls == ["start", "f", "stop", "f"] + ["evict8", "start", "f", "stop"] * 2


def test_cache_evictor_reads_the_buffer_it_was_asked_for():
    assert M.cache_evictor(0)() is None  # off: nothing is read
    assert M.cache_evictor(1)() == 2**20 // 8  # the sum of 1 MiB of float64 ones
    assert M._eviction_buffer(1).nbytes == 2**20


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_evict_mib_must_be_a_whole_number_of_mib(bad):
    with pytest.raises(ValueError, match="evict_mib = .* must be a whole number of MiB >= 0"):
        M.MeasureSettings(evict_mib=bad)


def test_cuda_target_refused_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda-fp32", "cuda-fp16-graph"):
        spec = M.spec_for_target(name)  # parsing a name never needs a GPU
        with pytest.raises(ValueError) as err:
            M.check_target_runnable(name, spec)
        assert str(err.value) == (f"target {name} needs a CUDA GPU, and torch sees none "
                                  "(torch.cuda.is_available() is False)")
    M.check_target_runnable("cpu-torch-1t", M.spec_for_target("cpu-torch-1t"))


def test_ort_target_refused_without_onnxruntime(monkeypatch):
    real = M.importlib.util.find_spec
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    with pytest.raises(ValueError, match="target cpu-ort-2t needs onnxruntime, which is not installed"):
        M.check_target_runnable("cpu-ort-2t", M.spec_for_target("cpu-ort-2t"))


def test_unknown_target_lists_valid_patterns():
    with pytest.raises(ValueError) as err:
        M.spec_for_target("cuda-int8")
    assert str(err.value) == ("unknown target 'cuda-int8'; expected one of cpu-torch-<N>t, cpu-ort-<N>t "
                              "(N >= 1 threads), cuda-fp32, cuda-fp16, cuda-fp32-graph, cuda-fp16-graph")


def test_evict_mib_enters_the_lut_key_only_when_set():
    from linas_lib.keys import key_fields

    assert "evict_mib" not in key_fields(M.MeasureSettings())  # LUTs cached before the setting keep their keys
    assert key_fields(M.MeasureSettings(evict_mib=64))["evict_mib"] == 64
