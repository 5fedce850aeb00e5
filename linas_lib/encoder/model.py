"""The DenseNet121 encoder as five taps, and freezing it (C1).

pool0 is skipped so dense block 1 runs at H/2; taps: x1 = relu0 (H/2, 64),
x2 = transition1 (H/4, 128), x3 = transition2 (H/8, 256), x4 = transition3 (H/16, 512),
deep = denseblock4 + norm5 (H/16, 1024).
"""

from __future__ import annotations

import re

import torch
import torchvision
from torch import nn

TAP_CHANNELS = (64, 128, 256, 512, 1024)
TAP_STRIDES = (2, 4, 8, 16, 16)
# torchvision's released checkpoints use the old "norm.1" layer names.
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class DenseNetEncoder(nn.Module):
    """DenseNet121 features returning the five taps as a tuple.

    Args:
        state_dict: optional torchvision DenseNet121 state dict (old or new key names);
            ``None`` keeps torchvision's random initialisation.
    """

    def __init__(self, state_dict: dict | None = None):
        super().__init__()
        net = torchvision.models.densenet121(weights=None)
        if state_dict is not None:
            net.load_state_dict(_renamed(state_dict))
        f = net.features
        self.stem = nn.Sequential(f.conv0, f.norm0, f.relu0)
        self.stage2 = nn.Sequential(f.denseblock1, f.transition1)
        self.stage3 = nn.Sequential(f.denseblock2, f.transition2)
        self.stage4 = nn.Sequential(f.denseblock3, f.transition3)
        self.stage5 = nn.Sequential(f.denseblock4, f.norm5)

    def forward(self, x: torch.Tensor):
        x1 = self.stem(x)
        x2 = self.stage2(x1)
        x3 = self.stage3(x2)
        x4 = self.stage4(x3)
        return x1, x2, x3, x4, self.stage5(x4)


def _renamed(state_dict: dict) -> dict:
    """Map torchvision's legacy DenseNet key names (``norm.1``) to the current ones."""
    out = {}
    for key, value in state_dict.items():
        match = _OLD_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def freeze(encoder: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the encoder is fixed from here on (C1)."""
    encoder.eval()
    for param in encoder.parameters():
        param.requires_grad_(False)
    return encoder
