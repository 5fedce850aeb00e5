"""The decoder's building blocks, exactly as the search space defines them.

Each searchable layer is a x2 upsampler: ``op -> ReLU -> BN`` and, for width < 100 %, a
1x1 projection (no bias) back to the layer's full output channels before the skip-add.
The ops' keys (``Conv3x3`` ...) are those of :mod:`linas_lib.space` and of the LUT files.
This module needs torch only, so it runs on the GPU measuring machine.
"""

from __future__ import annotations

import torch
from torch import nn

from .space import CHANNELS, N_LAYERS, OPS, WIDTHS, as_choices, choice_parts


def _upsample(c_in: int, c_out: int, kernel: int, *, groups: int = 1, dilation: int = 1, bias: bool = True):
    """Stride-2 transposed conv that exactly doubles H and W."""
    padding = dilation * (kernel // 2)
    return nn.ConvTranspose2d(
        c_in, c_out, kernel, stride=2, padding=padding, output_padding=1,
        groups=groups, dilation=dilation, bias=bias,
    )


class DWSep(nn.Sequential):
    """Depthwise transposed conv (no bias) then a 1x1 conv; optional trailing BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1, bn: bool = False):
        layers = [
            _upsample(c_in, c_in, kernel, groups=c_in, dilation=dilation, bias=False),
            nn.Conv2d(c_in, c_out, 1),
        ]
        if bn:
            layers.append(nn.BatchNorm2d(c_out))
        super().__init__(*layers)


class EdgeConv(nn.Module):
    """Channel mean -> fixed Sobel x/y -> learned 1x1 to 8 ch -> concat -> transposed conv -> BN."""

    EDGE_CHANNELS = 8

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("sobel", torch.stack([sobel_x, sobel_x.t()]).unsqueeze(1))
        self.edge_proj = nn.Conv2d(2, self.EDGE_CHANNELS, 1)
        self.up = _upsample(c_in + self.EDGE_CHANNELS, c_out, 3, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edges = nn.functional.conv2d(x.mean(dim=1, keepdim=True), self.sobel, padding=1)
        return self.bn(self.up(torch.cat([x, self.edge_proj(edges)], dim=1)))


def make_op(op: str, c_in: int, c_out: int) -> nn.Module:
    """The bare op (no ReLU/BN wrapper, no projection) as measured in op-only LUTs."""
    if op in ("Conv3x3", "Conv5x5", "Conv7x7"):
        return _upsample(c_in, c_out, int(op[-1]))
    if op in ("DWSep3x3", "DWSep5x5"):
        return DWSep(c_in, c_out, int(op[-1]))
    if op == "DilatedDWSep":
        return DWSep(c_in, c_out, 3, dilation=2, bn=True)
    if op == "EdgeConv":
        return EdgeConv(c_in, c_out)
    raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")


def width_channels(c_out: int, width_pct: int) -> int:
    """Channels the op outputs at a width: ``int(C_out * w)``."""
    return int(c_out * width_pct / 100)


class DecoderLayer(nn.Module):
    """One searchable layer at a fixed (op, width): op -> ReLU -> BN [-> 1x1 projection]."""

    def __init__(self, op: str, width_pct: int, c_in: int, c_out: int):
        super().__init__()
        if width_pct not in WIDTHS:
            raise ValueError(f"unknown width {width_pct!r}; expected one of {WIDTHS}")
        inner = width_channels(c_out, width_pct)
        self.op = make_op(op, c_in, inner)
        self.act = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(inner)
        self.proj = nn.Conv2d(inner, c_out, 1, bias=False) if inner != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.bn(self.act(self.op(x))))


ENCODER_CHANNELS = 1024  # DenseNet121 norm5 output


class Bottleneck(nn.Conv2d):
    """The trainable 1x1 stride-2 conv 1024->1024 that makes x5 (H/32) from norm5 (H/16)."""

    def __init__(self):
        super().__init__(ENCODER_CHANNELS, CHANNELS[0][0], 1, stride=2)


class Decoder(nn.Module):
    """A standalone decoder of one architecture: x5 conv, 5 layers with skip-adds, 1x1 head.

    ``forward`` takes the encoder taps ``(x1, x2, x3, x4, deep)`` and returns logits of
    shape ``(B, n_classes, H, W)`` at input resolution.
    """

    def __init__(self, choices, n_classes: int = 2):
        super().__init__()
        self.choices = as_choices(choices)
        self.bottleneck = Bottleneck()
        self.layers = nn.ModuleList(
            DecoderLayer(*choice_parts(c), c_in, c_out) for c, (c_in, c_out) in zip(self.choices, CHANNELS)
        )
        self.head = nn.Conv2d(CHANNELS[-1][1], n_classes, 1)

    def forward(self, taps) -> torch.Tensor:
        x1, x2, x3, x4, deep = taps
        x = self.bottleneck(deep)
        for layer, skip in zip(self.layers, (x4, x3, x2, x1, None)):
            x = layer(x)
            if skip is not None:
                x = x + skip
        return self.head(x)


def layer_input_shape(layer: int, resolution: int) -> tuple[int, int, int]:
    """``(C_in, H_in, W_in)`` of a decoder layer at a square input resolution."""
    if not 0 <= layer < N_LAYERS:
        raise ValueError(f"layer {layer} out of range 0..{N_LAYERS - 1}")
    if resolution % 32:
        raise ValueError(f"resolution {resolution} must be a multiple of 32 (five x2 stages)")
    side = resolution // 2 ** (N_LAYERS - layer)
    return CHANNELS[layer][0], side, side
