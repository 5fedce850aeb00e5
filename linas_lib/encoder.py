"""The frozen DenseNet121 encoder and its taps (x1..x4 and the deep norm5 features).

pool0 is skipped so dense block 1 runs at H/2; taps: x1 = relu0 (H/2, 64),
x2 = transition1 (H/4, 128), x3 = transition2 (H/8, 256), x4 = transition3 (H/16, 512),
deep = denseblock4 + norm5 (H/16, 1024). Needs torch and torchvision only.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

TAP_CHANNELS = (64, 128, 256, 512, 1024)
TAP_STRIDES = (2, 4, 8, 16, 16)


class DenseNetEncoder(nn.Module):
    """DenseNet121 features returning the five taps as a tuple."""

    def __init__(self):
        super().__init__()
        f = torchvision.models.densenet121(weights=None).features
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
