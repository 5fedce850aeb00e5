"""The latency measurement harness: batch 1, warm-up, repeats, IQR filter, CV retries.

One timing loop serves every runtime: a *runner* is a zero-argument callable that runs
the network once and returns when the result is ready, plus an optional ``timer`` that
says how long one call took (wall clock on CPU, CUDA events on a GPU). :func:`measure`
runs it ``warmup`` times untimed, then ``repeats`` times timed, drops outliers outside
``[Q1 - 1.5 IQR, Q3 + 1.5 IQR]`` and returns :class:`Stats` (mean, std, median, min, max
and n in separate fields). :func:`measure_robust` re-measures while the coefficient of
variation exceeds ``max_cv`` (at most ``max_retries`` times) and records the retries.
With ``evict_mib`` each timed call first reads a buffer that large (:func:`cache_evictor`),
so an entry meets the CPU caches as the rest of the pipeline leaves them, not as its own
previous call did.

Threads are pinned: torch via ``torch.set_num_threads`` (restored afterwards), ONNX
Runtime via ``SessionOptions.intra_op_num_threads``. Needs torch (and onnxruntime for the
ORT runners) only -- no pandas -- so it runs headless on any measuring machine.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from .settings import MeasureSettings


@dataclass(frozen=True)
class Stats:
    """Summary of one measured entry, in milliseconds, after the IQR filter.

    Attributes:
        mean_ms, std_ms, median_ms, min_ms, max_ms: of the kept samples.
        n: samples kept; n_raw: samples timed (before the filter).
        cv: std / mean of the kept samples.
        retries: re-measurements because ``cv`` exceeded ``max_cv``.
    """

    mean_ms: float
    std_ms: float
    median_ms: float
    min_ms: float
    max_ms: float
    n: int
    n_raw: int
    cv: float
    retries: int = 0

    def to_dict(self) -> dict:
        """JSON-able form (the LUT entry schema)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Stats":
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def iqr_filter(samples) -> np.ndarray:
    """Samples inside ``[Q1 - 1.5 IQR, Q3 + 1.5 IQR]`` (all of them when fewer than 4).

    Args:
        samples: 1-D sequence of timings.

    Returns:
        The kept samples, in their original order.
    """
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"expected a non-empty 1-D sequence of samples, got shape {arr.shape}")
    if arr.size < 4:
        return arr
    q1, q3 = np.percentile(arr, [25, 75])
    spread = 1.5 * (q3 - q1)
    return arr[(arr >= q1 - spread) & (arr <= q3 + spread)]


def summarise(samples_ms, retries: int = 0) -> Stats:
    """:class:`Stats` of raw samples (in ms) after :func:`iqr_filter`."""
    kept = iqr_filter(samples_ms)
    mean = float(kept.mean())
    std = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
    return Stats(
        mean_ms=mean, std_ms=std, median_ms=float(np.median(kept)), min_ms=float(kept.min()),
        max_ms=float(kept.max()), n=int(kept.size), n_raw=int(np.size(samples_ms)),
        cv=std / mean if mean > 0 else 0.0, retries=retries,
    )


def wall_timer(fn: Callable[[], object]) -> float:
    """Milliseconds of one call of ``fn`` by the monotonic wall clock."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def cuda_event_timer(fn: Callable[[], object]) -> float:
    """Milliseconds of one call of ``fn`` on the current CUDA stream, by CUDA events."""
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return float(begin.elapsed_time(end))


def cache_evictor(mib: int) -> Callable[[], None]:
    """A callable that reads ``mib`` MiB of memory (a no-op for 0), run before a timed call.

    Timed back to back, an entry finds its weights and inputs where its own previous call
    left them: in the caches. In the pipeline the rest of the network (tens to a hundred MB
    of weights and activations) runs between two calls of one layer, so the isolated timing
    can be faster than the entry in context. Reading a buffer about the size of that traffic
    is meant to put the entry back in context; 02's warm control arm tests whether it does.
    The read runs on the calling thread and touches CPU caches only: it means nothing for a
    CUDA target (and leaves another core's private cache as it was).

    Args:
        mib: MiB to read before each timed call; 0 for none.
    """
    if mib <= 0:
        return lambda: None
    buffer = _eviction_buffer(int(mib))
    return lambda: float(buffer.sum())  # float(): the read is not optimised away or left pending


@functools.lru_cache(maxsize=1)
def _eviction_buffer(mib: int) -> np.ndarray:
    return np.ones(mib * 2**20 // 8)


def measure(fn: Callable[[], object], settings: MeasureSettings, timer=wall_timer, retries: int = 0) -> Stats:
    """Time ``fn``: one probing call, then the warm-ups and repeats of ``settings.plan``
    (each timed call after :func:`cache_evictor`'s read when ``settings.evict_mib`` > 0)."""
    warmup, repeats = settings.plan(timer(fn))
    evict = cache_evictor(settings.evict_mib)
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        evict()
        samples.append(timer(fn))
    return summarise(samples, retries)


def measure_robust(fn: Callable[[], object], settings: MeasureSettings, timer=wall_timer) -> Stats:
    """:func:`measure`, repeated while ``cv > max_cv`` (at most ``max_retries`` times).

    The retry with the lowest CV is returned, with the number of retries recorded.
    """
    best = measure(fn, settings, timer)
    for attempt in range(1, settings.max_retries + 1):
        if best.cv <= settings.max_cv:
            break
        again = measure(fn, settings, timer, retries=attempt)
        best = again if again.cv < best.cv else Stats(**{**asdict(best), "retries": attempt})
    return best


def measure_interleaved(fns: list, settings: MeasureSettings, timer=wall_timer) -> list[Stats]:
    """Time several callables in alternating rounds (``f0, f1, ..., f0, f1, ...``).

    Used where differences between entries matter (pair interactions): a slow drift of a
    busy machine then affects every entry alike instead of biasing their difference.
    Repeats follow ``settings.plan`` of the slowest callable; no CV retries.
    """
    probes = [timer(fn) for fn in fns]
    warmup, repeats = settings.plan(max(probes))
    evict = cache_evictor(settings.evict_mib)
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for fn, kept in zip(fns, samples):
            evict()
            kept.append(timer(fn))
    return [summarise(s) for s in samples]


@contextlib.contextmanager
def torch_threads(threads: int):
    """Pin ``torch.set_num_threads(threads)`` for a block, restoring the old value."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- runners (one per runtime)


@dataclass(frozen=True)
class RuntimeSpec:
    """How a target runs a network: runtime, device, precision, threads, CUDA graphs."""

    runtime: str  # torch | ort
    device: str = "cpu"  # cpu | cuda
    precision: str = "fp32"  # fp32 | fp16
    threads: int = 1
    graph: bool = False  # CUDA-graph replay (torch on cuda only)

    def __post_init__(self):
        if self.runtime not in ("torch", "ort"):
            raise ValueError(f"unknown runtime {self.runtime!r}; expected torch or ort")
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"unknown precision {self.precision!r}; expected fp32 or fp16")
        if self.graph and (self.runtime != "torch" or self.device != "cuda"):
            raise ValueError("CUDA-graph replay needs runtime torch on device cuda")

    @property
    def timer(self):
        """The timer this runtime uses (CUDA events on a GPU, wall clock otherwise)."""
        return cuda_event_timer if self.device == "cuda" else wall_timer


def spec_for_target(name: str) -> RuntimeSpec:
    """The :class:`RuntimeSpec` of a built-in local/gpu target name.

    ``cpu-torch-<N>t``, ``cpu-ort-<N>t``, ``cuda-fp32``, ``cuda-fp16``, ``cuda-fp32-graph``,
    ``cuda-fp16-graph``.

    Raises:
        ValueError: for a name of another form.
    """
    parts = name.split("-")
    if len(parts) == 3 and parts[0] == "cpu" and parts[1] in ("torch", "ort") and parts[2].endswith("t"):
        if parts[2][:-1].isdigit() and int(parts[2][:-1]) > 0:
            return RuntimeSpec(parts[1], "cpu", "fp32", int(parts[2][:-1]))
    if parts[0] == "cuda" and len(parts) in (2, 3) and parts[1] in ("fp32", "fp16"):
        if len(parts) == 2 or parts[2] == "graph":
            return RuntimeSpec("torch", "cuda", parts[1], 1, graph=len(parts) == 3)
    raise ValueError(f"unknown target {name!r}; expected one of {TARGET_PATTERNS}")


TARGET_PATTERNS = ("cpu-torch-<N>t, cpu-ort-<N>t (N >= 1 threads), cuda-fp32, cuda-fp16, "
                   "cuda-fp32-graph, cuda-fp16-graph")


def check_target_runnable(name: str, spec: RuntimeSpec) -> None:
    """Refuse a target this machine cannot run, before any runtime is touched.

    Raises:
        ValueError: a ``cuda-*`` target without a CUDA device torch can see, or an ORT
            target without onnxruntime installed -- one line naming the target.
    """
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"target {name} needs a CUDA GPU, and torch sees none (torch.cuda.is_available() is False)")
    if spec.runtime == "ort" and importlib.util.find_spec("onnxruntime") is None:
        raise ValueError(f"target {name} needs onnxruntime, which is not installed (pip install onnxruntime)")


def prepare_module(module: torch.nn.Module, spec: RuntimeSpec) -> torch.nn.Module:
    """``module`` in eval mode on the spec's device, cast to half for fp16."""
    module = module.eval().to(spec.device)
    return module.half() if spec.precision == "fp16" else module


def prepare_inputs(inputs: tuple, spec: RuntimeSpec) -> tuple:
    """Inputs moved to the spec's device; floating ones cast to half for fp16."""
    moved = []
    for x in inputs:
        x = x.to(spec.device)
        moved.append(x.half() if spec.precision == "fp16" and x.is_floating_point() else x)
    return tuple(moved)


def torch_runner(module: torch.nn.Module, inputs: tuple, spec: RuntimeSpec) -> Callable[[], object]:
    """A zero-argument callable running ``module(*inputs)`` (no grad) as the spec says.

    On CUDA with ``spec.graph`` the forward pass is captured once into a
    :class:`torch.cuda.CUDAGraph` and the callable replays it; otherwise it runs eagerly.
    """
    module, inputs = prepare_module(module, spec), prepare_inputs(inputs, spec)
    if spec.graph:
        return _cuda_graph_runner(module, inputs)

    def run():
        with torch.inference_mode():
            return module(*inputs)

    return run


def _cuda_graph_runner(module: torch.nn.Module, inputs: tuple) -> Callable[[], object]:
    """Capture ``module(*inputs)`` in a CUDA graph (after side-stream warm-up); return replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            module(*inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        module(*inputs)
    return graph.replay


def ort_session(model, threads: int):
    """An ONNX Runtime CPU session with intra-op threads pinned (sequential execution).

    Args:
        model: an ONNX file path or the serialized model as bytes.
        threads: intra-op threads.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def ort_runner(model, feeds: dict, threads: int) -> Callable[[], object]:
    """A zero-argument callable running the ONNX model (path or bytes) once on ``feeds``."""
    session = ort_session(model, threads)

    def run():
        return session.run(None, feeds)

    return run


def measure_torch(module, inputs: tuple, spec: RuntimeSpec, settings: MeasureSettings) -> Stats:
    """Robust batch-1 latency of ``module(*inputs)`` under a torch :class:`RuntimeSpec`."""
    with torch_threads(spec.threads):
        return measure_robust(torch_runner(module, inputs, spec), settings, spec.timer)
