"""End-to-end latency of an extracted network: pre-processing + encoder + decoder + post.

* torch eager: ``postprocess(net(preprocess(image)))`` with threads pinned;
* ONNX Runtime: the encoder is exported once (legacy exporter) and each architecture's
  decoder is exported and merged with it, *and with the pre- and post-processing*, by
  :func:`onnx.compose.merge_models`: ORT runs one graph from uint8 image to uint8 mask in
  its own pinned thread pool (no second, torch pool around ``session.run``).

:func:`time_interleaved` gives the raw batch-1 samples (ms) the end-to-end ground truth is
summarised from (the same :func:`~linas_lib.latency.measure.summarise` statistic as the LUT
entries); :func:`throughput` times ``n`` images through the whole pipeline (C3: 100 images within 16 s;
as one run, or in blocks between the heartbeat's reference networks) and keeps each image's
time, so the check reports the same statistic.
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
from .measure import RuntimeSpec, ort_session, spec_for_target, summarise, torch_threads, wall_timer


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
    """One architecture's whole pipeline (pre-processing, encoder, decoder, argmax) as one
    serialized ONNX graph: input ``image`` uint8 ``(1, H, W, 3)``, output ``mask`` uint8 ``(1, H, W)``.

    The decoder is exported in memory and merged with the cached encoder, pre- and
    post-processing graphs by :func:`onnx.compose.merge_models` (nothing per architecture
    is written to disk: a network weighs up to ~130 MB).
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
    net = compose.merge_models(enc, dec, io_map=[(n, n) for n in TAP_NAMES], prefix1="enc_", prefix2="dec_")
    pre, post = _host_graphs(resolution)
    net = compose.merge_models(pre, net, io_map=[("image_f", net.graph.input[0].name)], prefix2="net_")
    net = compose.merge_models(net, post, io_map=[(net.graph.output[0].name, "logits")])
    return net.SerializeToString()


class _Preprocess(nn.Module):
    """:func:`linas_lib.data.preprocess` as a module (exported into the ORT graph)."""

    def __init__(self):
        super().__init__()
        from ..data import IMAGENET_MEAN, IMAGENET_STD

        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0))

    def forward(self, image):
        return (image.permute(0, 3, 1, 2).float() - self.mean) * self.inv_std


class _Postprocess(nn.Module):
    """:func:`linas_lib.data.postprocess` as a module: argmax over classes, uint8."""

    def forward(self, logits):
        return logits.argmax(dim=1).to(torch.uint8)


@functools.lru_cache(maxsize=2)
def _host_graphs(resolution: int):
    """``(pre, post)`` ONNX graphs: ``image`` uint8 -> ``image_f``; ``logits`` -> ``mask`` uint8."""
    import onnx
    from onnx import compose

    image = torch.zeros(1, resolution, resolution, 3, dtype=torch.uint8)
    logits = torch.zeros(1, N_CLASSES, resolution, resolution)
    graphs = []
    for prefix, module, x, names in (("pre_", _Preprocess(), image, ("image", "image_f")),
                                     ("post_", _Postprocess(), logits, ("logits", "mask"))):
        graph = compose.add_prefix(onnx.load_from_string(onnx_bytes(module, (x,))), prefix)  # unique node names
        graphs.append(_rename(_rename(graph, names[:1], "input"), names[1:], "output"))
    return tuple(graphs)


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


def torch_pipeline(choices, encoder: nn.Module | None = None):
    """``fn(image) -> mask`` running pre -> net -> post in torch eager (the caller sets the threads)."""
    from ..data import postprocess, preprocess

    net = ExtractedNet(encoder if encoder is not None else shared_encoder(), choices).eval()

    def fn(image: np.ndarray):
        with torch.inference_mode():
            return postprocess(net(preprocess(image)))

    return fn


def ort_pipeline(choices, resolution: int, threads: int, folder: Path):
    """``fn(image) -> mask``: one ORT session runs pre-processing, network and argmax."""
    from ..data import check_images

    session = ort_session(network_onnx(choices, resolution, folder), threads)

    def fn(image: np.ndarray):
        return session.run(None, {"image": check_images(image)})[0]

    return fn


def pipeline(target: str, choices, resolution: int, folder: Path, encoder=None) -> tuple[Callable, RuntimeSpec]:
    """The end-to-end ``fn(image)`` of one local target and its :class:`RuntimeSpec`."""
    spec = spec_for_target(target)
    if spec.device != "cpu":
        raise ValueError(f"target {target!r}: end-to-end pipelines are measured on CPU targets only here")
    if spec.runtime == "torch":
        return torch_pipeline(choices, encoder), spec
    return ort_pipeline(choices, resolution, spec.threads, folder), spec


def time_interleaved(pipelines: dict[str, tuple[Callable, RuntimeSpec]], image: np.ndarray, warmup: int,
                     repeats: int) -> dict[str, list[float]]:
    """Raw batch-1 latencies (ms) of several pipelines of one network, timed in rounds.

    Each round runs every pipeline once (``warmup`` untimed rounds first, then ``repeats``
    timed ones), each under its own thread count, so a drift of the machine during the
    network's measurement spreads over all its targets alike.

    Args:
        pipelines: ``{target: (fn(image), spec)}`` from :func:`pipeline`.
    """
    samples = {name: [] for name in pipelines}
    for round_ in range(warmup + repeats):
        for name, (fn, spec) in pipelines.items():
            with torch_threads(spec.threads):
                ms = wall_timer(lambda: fn(image))
            if round_ >= warmup:
                samples[name].append(ms)
    return samples


def throughput(fn: Callable, images: np.ndarray, n: int, spec: RuntimeSpec,
               heartbeats: list[Callable] | None = None, every: int = 10, beats: int = 3,
               timer: Callable = wall_timer) -> dict:
    """Time ``n`` images (cycling through ``images`` (N, H, W, 3) uint8) through ``fn``, as a whole.

    One untimed warm-up image first. Each image is timed too, so the run's per-image
    statistic (:func:`~linas_lib.latency.measure.summarise`, as for LUT entries and the
    end-to-end ground truth) is reported beside the total the constraint reads.

    With ``heartbeats`` (the same target's pipelines of fixed reference networks, each warmed
    up once), ``beats`` images of one of them are timed, after one untimed image of it, before
    the first block of ``every`` images and after each block, cycling through the list; ``total_s`` is then the sum of the
    blocks' wall times (the heartbeat is not the network's time). Every block starts with one
    untimed warm-up image, as the first does: C3 reads a steady-state run of one network, and
    the switch to a heartbeat network and back is the measurement's cost, not the
    pipeline's (on cpu-ort-2t the first image after a switch took about 60 % longer).
    ``first_in_block_vs_rest_pct`` reports what a switch still costs after that warm-up (the
    first image of every block against the others).

    Returns:
        ``{n_images, total_s, ms_per_image, image_median_ms, image_std_ms, image_min_ms,
        image_max_ms}``; with heartbeats also ``heartbeat_gaps``: one ``(index, [ms, ...])``
        per gap (raw, for :func:`~linas_lib.latency.c3.c3_check`) and
        ``first_in_block_vs_rest_pct``.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"throughput needs uint8 images (N, H, W, 3), got shape {images.shape}")
    if heartbeats is not None and (not heartbeats or every < 1 or beats < 1):
        raise ValueError(f"a C3 heartbeat needs at least one network, every >= 1 and beats >= 1, got "
                         f"{len(heartbeats)} network(s), every={every}, beats={beats}")
    image = lambda i: images[i % len(images)][None]  # noqa: E731
    sizes = [n] if heartbeats is None else [min(every, n - s) for s in range(0, n, every)]
    per_image, walls, gaps = [], [], []

    def beat():
        k = len(gaps) % len(heartbeats)
        heartbeats[k](images[:1])  # untimed: a beat starts warm too, or every speed factor reads a switch
        gaps.append((k, [timer(lambda: heartbeats[k](images[:1])) for _ in range(beats)]))

    with torch_threads(spec.threads):
        for warm in heartbeats or ():
            warm(images[:1])
        if heartbeats:
            beat()
        for size in sizes:
            fn(images[:1])  # untimed warm-up of every block
            first = len(per_image)
            start = time.perf_counter()
            per_image += [timer(lambda i=i: fn(image(i))) for i in range(first, first + size)]
            walls.append(time.perf_counter() - start)
            if heartbeats:
                beat()
    total = float(sum(walls))
    stats = summarise(per_image)
    out = {"n_images": int(n), "total_s": total, "ms_per_image": total * 1e3 / n,
           "image_median_ms": stats.median_ms, "image_std_ms": stats.std_ms,
           "image_min_ms": float(min(per_image)), "image_max_ms": float(max(per_image))}
    if heartbeats:
        switched = {0, *np.cumsum(sizes[:-1]).tolist()}  # first image of every block: each follows a beat
        after_switch = [t for i, t in enumerate(per_image) if i in switched]
        rest = [t for i, t in enumerate(per_image) if i not in switched]
        out.update({"heartbeat_gaps": gaps,
                    "first_in_block_vs_rest_pct": 100 * (float(np.median(after_switch)) / float(np.median(rest)) - 1)
                    if after_switch and rest else float("nan")})
    return out


def onnx_folder() -> Path:
    """Cache folder of the exported encoder ONNX model."""
    from ..paths import cache_dir

    return cache_dir("onnx_e2e")


def dumps_key(*parts) -> str:
    """Short content hash of JSON-able parts (checkpoint keys)."""
    return content_hash(list(parts), 12)
