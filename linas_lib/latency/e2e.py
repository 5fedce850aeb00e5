"""End-to-end latency of an extracted network: pre-processing + encoder + decoder + post.

* torch eager: ``postprocess(net(preprocess(image)))`` with threads pinned;
* ONNX Runtime: the encoder is exported once (legacy exporter) and each architecture's
  decoder is exported and merged into it with :func:`onnx.compose.merge_models`, so ORT
  runs *one* fused graph per network (pre/post stay the same host code as for torch).

:func:`measure_pipeline` gives the robust (median of repeats) batch-1 latency used to
validate the predictors; :func:`throughput` times ``n`` images through the whole
pipeline as one run (C3: 100 images within 16 s).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..keys import content_hash
from ..ops import Decoder
from ..space import as_choices
from .entries import N_CLASSES, export_onnx, onnx_bytes
from .measure import MeasureSettings, RuntimeSpec, measure, ort_session, spec_for_target, torch_threads


class ExtractedNet(nn.Module):
    """Encoder followed by one architecture's decoder: image tensor -> logits."""

    def __init__(self, encoder: nn.Module, choices):
        super().__init__()
        self.encoder = encoder
        self.decoder = Decoder(as_choices(choices), n_classes=N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class _DecoderFromTaps(nn.Module):
    """Decoder taking the five taps as separate inputs (for ONNX export)."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, x1, x2, x3, x4, deep):
        return self.decoder((x1, x2, x3, x4, deep))


TAP_NAMES = ("x1", "x2", "x3", "x4", "deep")


@functools.lru_cache(maxsize=1)
def shared_encoder() -> nn.Module:
    """One randomly initialised encoder reused by every pipeline of this process (latency
    does not depend on the weights; building DenseNet121 takes a second or two)."""
    from ..encoder.model import DenseNetEncoder

    gen_state = torch.random.get_rng_state()
    try:  # weights do not matter for latency; keep the global stream untouched
        return DenseNetEncoder().eval()
    finally:
        torch.random.set_rng_state(gen_state)


def encoder_onnx(resolution: int, folder: Path) -> Path:
    """The encoder as ONNX (exported once per resolution and torch version, cached)."""
    path = encoder_onnx_path(resolution, folder)
    if not path.is_file():
        x = torch.zeros(1, 3, resolution, resolution)
        export_onnx(_TapsOut(shared_encoder()), (x,), path)
    return path


def encoder_onnx_path(resolution: int, folder: Path) -> Path:
    """Where :func:`encoder_onnx` caches the encoder for a resolution and torch version."""
    return Path(folder) / f"encoder_{resolution}px_torch{torch.__version__.split('+')[0]}.onnx"


class _TapsOut(nn.Module):
    """Encoder with named tap outputs."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return tuple(self.encoder(x))


def network_onnx(choices, resolution: int, folder: Path) -> bytes:
    """One architecture's full network (encoder + decoder) as a single serialized ONNX graph.

    The decoder is exported in memory and merged into the cached encoder graph with
    :func:`onnx.compose.merge_models` (nothing per architecture is written to disk: a
    network weighs up to ~130 MB).
    """
    return _network_bytes(tuple(int(c) for c in as_choices(choices)), int(resolution), str(folder))


@functools.lru_cache(maxsize=1)
def _network_bytes(choices: tuple, resolution: int, folder: str) -> bytes:
    """Memo of the last network (so ORT 1- and 2-thread targets share one export)."""
    import onnx
    from onnx import compose

    enc = _encoder_graph(resolution, folder)
    decoder = _DecoderFromTaps(Decoder(as_choices(choices), N_CLASSES))
    dec = _rename(onnx.load_from_string(onnx_bytes(decoder, _tap_examples(resolution))), TAP_NAMES, "input")
    merged = compose.merge_models(enc, dec, io_map=[(n, n) for n in TAP_NAMES], prefix1="enc_", prefix2="dec_")
    return merged.SerializeToString()


@functools.lru_cache(maxsize=2)
def _encoder_graph(resolution: int, folder: str):
    """The cached encoder ONNX graph with its outputs named after the taps (not mutated later:
    :func:`onnx.compose.merge_models` copies its inputs)."""
    import onnx

    return _rename(onnx.load(str(encoder_onnx(resolution, Path(folder)))), TAP_NAMES, "output")


def _tap_examples(resolution: int) -> tuple:
    """Zero tensors shaped like the encoder's taps at ``resolution``."""
    from ..encoder.model import TAP_CHANNELS, TAP_STRIDES

    return tuple(torch.zeros(1, c, resolution // s, resolution // s) for c, s in zip(TAP_CHANNELS, TAP_STRIDES))


def _rename(model, names, which: str):
    """Rename the graph's inputs or outputs (in order) to ``names``, rewiring nodes."""
    graph = model.graph
    values = graph.output if which == "output" else graph.input
    mapping = {v.name: n for v, n in zip(values, names)}
    for v in values:
        v.name = mapping[v.name]
    for node in graph.node:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                if name in mapping:
                    seq[i] = mapping[name]
    return model


def torch_pipeline(choices, resolution: int, threads: int, encoder: nn.Module | None = None):
    """``(fn(image) -> mask, net)`` running pre -> net -> post in torch eager."""
    from ..data import postprocess, preprocess

    net = ExtractedNet(encoder if encoder is not None else shared_encoder(), choices).eval()

    def fn(image: np.ndarray):
        with torch.inference_mode():
            return postprocess(net(preprocess(image)))

    return fn


def ort_pipeline(choices, resolution: int, threads: int, folder: Path):
    """``fn(image) -> mask`` running pre -> ORT session of the whole network -> post."""
    from ..data import postprocess, preprocess

    session = ort_session(network_onnx(choices, resolution, folder), threads)
    name = session.get_inputs()[0].name

    def fn(image: np.ndarray):
        logits = session.run(None, {name: preprocess(image).numpy()})[0]
        return postprocess(torch.from_numpy(logits))

    return fn


def pipeline(target: str, choices, resolution: int, folder: Path, encoder=None) -> tuple[Callable, RuntimeSpec]:
    """The end-to-end ``fn(image)`` of one local target and its :class:`RuntimeSpec`."""
    spec = spec_for_target(target)
    if spec.device != "cpu":
        raise ValueError(f"target {target!r}: end-to-end pipelines are measured on CPU targets only here")
    if spec.runtime == "torch":
        return torch_pipeline(choices, resolution, spec.threads, encoder), spec
    return ort_pipeline(choices, resolution, spec.threads, folder), spec


def measure_pipeline(fn: Callable, image: np.ndarray, spec: RuntimeSpec, warmup: int, repeats: int) -> float:
    """Median batch-1 latency (ms) of ``fn(image)`` over ``repeats`` timed runs."""
    settings = MeasureSettings(warmup=warmup, repeats=repeats, max_cv=1.0, max_retries=0)
    with torch_threads(spec.threads):
        return measure(lambda: fn(image), settings).median_ms


def throughput(fn: Callable, images: np.ndarray, n: int, spec: RuntimeSpec) -> dict:
    """Time ``n`` images (cycling through ``images`` (N, H, W, 3) uint8) through ``fn``, as a whole.

    One untimed warm-up image first; returns ``{n_images, total_s, ms_per_image}``.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"throughput needs uint8 images (N, H, W, 3), got shape {images.shape}")
    with torch_threads(spec.threads):
        fn(images[:1])
        start = time.perf_counter()
        for i in range(n):
            fn(images[i % len(images)][None])
        total = time.perf_counter() - start
    return {"n_images": int(n), "total_s": total, "ms_per_image": total * 1e3 / n}


def onnx_folder() -> Path:
    """Cache folder of the exported encoder ONNX model."""
    from ..paths import cache_dir

    return cache_dir("onnx_e2e")


def dumps_key(*parts) -> str:
    """Short content hash of JSON-able parts (checkpoint keys)."""
    return content_hash(list(parts), 12)
