"""The modules a LUT times, one per entry, and how each runtime runs them.

Entry kinds (see :mod:`linas_lib.latency.lut` for the file schema):

* ``op_only``   -- the bare op (:func:`linas_lib.ops.make_op`) at ``int(C_out*w)`` channels,
  as in the external LUT files;
* ``projected`` -- the whole layer as the network runs it: op -> ReLU -> BN [-> 1x1
  projection] and the skip-add of layers 0..3 (:class:`LayerWithSkip`);
* ``pair``      -- two adjacent ``projected`` layers run back to back (:class:`LayerPair`);
* ``fixed``     -- pre-processing, encoder, x5 bottleneck, head, post-processing.

:func:`entry_runner` turns a module plus example inputs into a zero-argument callable for
the target's runtime: torch eager / CUDA graph, or a small ONNX model run by ONNX Runtime
(the same way the whole network runs there). Needs torch (+ onnxruntime for ORT targets).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..keys import atomic_write_bytes
from ..ops import Bottleneck, DecoderLayer, ENCODER_CHANNELS, layer_input_shape, make_op, width_channels
from ..space import CHANNELS, N_LAYERS, choice_parts
from .measure import RuntimeSpec, ort_runner, torch_runner

FIXED_STAGES = ("preprocess", "encoder", "bottleneck", "head", "postprocess")
N_CLASSES = 2


class LayerWithSkip(nn.Module):
    """A decoder layer and the skip-add that follows it (none after the last layer)."""

    def __init__(self, layer: int, choice: int):
        super().__init__()
        self.body = DecoderLayer(*choice_parts(choice), *CHANNELS[layer])
        self.has_skip = layer < N_LAYERS - 1

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        y = self.body(x)
        return y + skip if self.has_skip else y


class LayerPair(nn.Module):
    """Layers ``l`` and ``l+1`` (each with its skip-add) run back to back."""

    def __init__(self, layer: int, choice_a: int, choice_b: int):
        super().__init__()
        self.first = LayerWithSkip(layer, choice_a)
        self.second = LayerWithSkip(layer + 1, choice_b)

    def forward(self, x, skip_a, skip_b=None):
        y = self.first(x, skip_a)
        return self.second(y, skip_b) if skip_b is not None else self.second(y)


def skip_shape(layer: int, resolution: int) -> tuple[int, int, int, int]:
    """Shape of the skip tensor added after ``layer`` (its output shape)."""
    _, h, w = layer_input_shape(layer, resolution)
    return (1, CHANNELS[layer][1], 2 * h, 2 * w)


def layer_inputs(layer: int, resolution: int, gen: torch.Generator, with_skip: bool) -> tuple:
    """Example inputs of one layer (and its skip tensor for layers 0..3)."""
    x = torch.randn((1, *layer_input_shape(layer, resolution)), generator=gen)
    if with_skip and layer < N_LAYERS - 1:
        return x, torch.randn(skip_shape(layer, resolution), generator=gen)
    return (x,)


def op_only_entry(layer: int, choice: int, resolution: int, gen: torch.Generator):
    """``(module, inputs)`` of the bare op of ``choice`` at ``layer``."""
    op, width = choice_parts(choice)
    c_in, c_out = CHANNELS[layer]
    return make_op(op, c_in, width_channels(c_out, width)), layer_inputs(layer, resolution, gen, False)


def projected_entry(layer: int, choice: int, resolution: int, gen: torch.Generator):
    """``(module, inputs)`` of the projection-inclusive layer with its skip-add."""
    return LayerWithSkip(layer, choice), layer_inputs(layer, resolution, gen, True)


def pair_entry(layer: int, choice_a: int, choice_b: int, resolution: int, gen: torch.Generator):
    """``(module, inputs)`` of layers ``layer`` and ``layer+1`` run together."""
    inputs = layer_inputs(layer, resolution, gen, True)
    if layer + 1 < N_LAYERS - 1:
        inputs = inputs + (torch.randn(skip_shape(layer + 1, resolution), generator=gen),)
    return LayerPair(layer, choice_a, choice_b), inputs


def fixed_module(stage: str, resolution: int, gen: torch.Generator):
    """``(module, inputs)`` of the encoder, bottleneck or head (the network's fixed parts)."""
    if stage == "encoder":
        from ..encoder.model import DenseNetEncoder

        return DenseNetEncoder(), (torch.randn((1, 3, resolution, resolution), generator=gen),)
    if stage == "bottleneck":
        side = resolution // 16
        return Bottleneck(), (torch.randn((1, ENCODER_CHANNELS, side, side), generator=gen),)
    if stage == "head":
        return nn.Conv2d(CHANNELS[-1][1], N_CLASSES, 1), (
            torch.randn((1, CHANNELS[-1][1], resolution, resolution), generator=gen),
        )
    raise ValueError(f"unknown fixed stage {stage!r}; expected one of {FIXED_STAGES[1:4]}")


def host_stage(stage: str, resolution: int, gen: torch.Generator, spec: RuntimeSpec) -> Callable[[], object]:
    """Pre- or post-processing of one image, as the deployed pipeline runs it.

    On CPU targets: the host functions of :mod:`linas_lib.data`. On CUDA targets the
    pre-processing includes the copy to the GPU (and the fp16 cast) and the
    post-processing starts from logits on the GPU; both synchronise before returning.
    """
    from ..data import postprocess, preprocess

    cuda = spec.device == "cuda"
    half = spec.precision == "fp16"
    if stage == "preprocess":
        image = torch.randint(0, 256, (1, resolution, resolution, 3), generator=gen, dtype=torch.uint8).numpy()
        if not cuda:
            return lambda: preprocess(image)

        def to_device():
            x = preprocess(image).to(spec.device, non_blocking=False)
            x = x.half() if half else x
            torch.cuda.synchronize()
            return x

        return to_device
    if stage == "postprocess":
        logits = torch.randn((1, N_CLASSES, resolution, resolution), generator=gen).to(spec.device)
        logits = logits.half() if half else logits
        return lambda: postprocess(logits)  # .cpu() inside waits for the GPU
    raise ValueError(f"unknown host stage {stage!r}; expected preprocess or postprocess")


def onnx_bytes(module: nn.Module, inputs: tuple) -> bytes:
    """``module(*inputs)`` exported to ONNX in memory (legacy TorchScript exporter, opset 17).

    Inputs are named ``in0, in1, ...`` and the first output ``out``.
    """
    buffer = io.BytesIO()
    names = [f"in{i}" for i in range(len(inputs))]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
        torch.onnx.export(
            module.eval(), inputs, buffer, input_names=names, output_names=["out"],
            opset_version=17, dynamo=False,
        )
    return buffer.getvalue()


def export_onnx(module: nn.Module, inputs: tuple, path: Path) -> Path:
    """:func:`onnx_bytes` written atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, onnx_bytes(module, inputs))
    return path


def entry_runner(module: nn.Module, inputs: tuple, spec: RuntimeSpec) -> Callable[[], object]:
    """A zero-argument callable running one entry under the target's runtime.

    ORT targets export the entry to a small ONNX model in memory (no files: layer-0 entries
    weigh up to 100 MB) and run it in an ONNX Runtime session with pinned threads.

    Args:
        module: the entry's module (weights do not matter for latency).
        inputs: example inputs, batch 1.
        spec: the target's runtime.
    """
    if spec.runtime == "torch":
        return torch_runner(module, inputs, spec)
    feeds = {f"in{i}": x.numpy() for i, x in enumerate(inputs)}
    return ort_runner(onnx_bytes(module, inputs), feeds, spec.threads)
