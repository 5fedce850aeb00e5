"""The frozen DenseNet121 encoder: its taps, its weights, and the task pre-training fallback.

pool0 is skipped so dense block 1 runs at H/2; taps: x1 = relu0 (H/2, 64),
x2 = transition1 (H/4, 128), x3 = transition2 (H/8, 256), x4 = transition3 (H/16, 512),
deep = denseblock4 + norm5 (H/16, 1024).

Weights (:func:`frozen_encoder`), first found wins, never downloaded:

1. ImageNet weights from a local file: ``encoder.weights`` of the profile, else the
   environment variable ``LINAS_DENSENET121_WEIGHTS``;
2. ImageNet weights from the torch hub cache (``<torch.hub.get_dir()>/checkpoints/
   densenet121-*.pth``);
3. *task pre-training*: the encoder (random init from the run's generator) is trained
   together with a fixed reference decoder (every layer ``DWSep3x3`` at width 100) on the
   train split for ``encoder.pretrain_epochs`` epochs (Adam, ``encoder.pretrain_lr``,
   segmentation loss of :mod:`linas_lib.losses`), saved under ``cache_dir("encoder")``
   with a checkpoint per epoch (a stopped run resumes) and reused.

The encoder is then frozen (eval mode, no gradients). :class:`EncoderWeights` records which
of the three was used; it goes into provenance and into the feature-cache key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

TAP_CHANNELS = (64, 128, 256, 512, 1024)
TAP_STRIDES = (2, 4, 8, 16, 16)
WEIGHTS_ENV = "LINAS_DENSENET121_WEIGHTS"
# torchvision's released checkpoints use the old "norm.1" layer names.
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
PRETRAIN_STREAM = 0xE9C0


class EncoderError(ValueError):
    """Encoder weights are unreadable or do not fit DenseNet121; the message names the file."""


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


@dataclass(frozen=True)
class EncoderWeights:
    """Which weights the frozen encoder carries (recorded in provenance).

    Attributes:
        source: ``imagenet-file``, ``imagenet-hub-cache`` or ``task-pretrained``.
        path: the weights file used or written.
        weights_id: short hash identifying the weights (part of the feature-cache key).
        pretrain_epochs: epochs of task pre-training (0 for ImageNet weights).
    """

    source: str
    path: str
    weights_id: str
    pretrain_epochs: int = 0

    def to_dict(self) -> dict:
        """Plain data for provenance."""
        return asdict(self)


def find_imagenet_weights(configured: str = "") -> tuple[Path, str] | None:
    """Locate local DenseNet121 ImageNet weights without downloading anything.

    Args:
        configured: the profile's ``encoder.weights`` (may be empty).

    Returns:
        ``(path, source)`` with source ``imagenet-file`` or ``imagenet-hub-cache``, or None.

    Raises:
        EncoderError: a path was configured (profile or environment) but is not a file.
    """
    for given in (configured, os.environ.get(WEIGHTS_ENV, "")):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise EncoderError(f"DenseNet121 weights {path} (encoder.weights or ${WEIGHTS_ENV}) is not a file")
            return path, "imagenet-file"
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(hub.glob("densenet121-*.pth")) if hub.is_dir() else []
    return (found[0], "imagenet-hub-cache") if found else None


def load_imagenet_encoder(path: Path) -> DenseNetEncoder:
    """An encoder carrying the ImageNet weights in ``path``.

    Raises:
        EncoderError: the file is unreadable or not a DenseNet121 state dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return DenseNetEncoder(state)
    except (OSError, RuntimeError, KeyError, EOFError) as err:
        raise EncoderError(f"{path}: not usable DenseNet121 weights: {err}") from err


def file_digest(path: Path, length: int = 16) -> str:
    """Short sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def config_hash(data: dict, length: int = 16) -> str:
    """Short sha256 of JSON-able data (sorted keys): the key of a cached artifact."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def freeze(encoder: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the encoder is fixed from here on (C1)."""
    encoder.eval()
    for param in encoder.parameters():
        param.requires_grad_(False)
    return encoder


def seeded_module(factory, generator: torch.Generator) -> nn.Module:
    """Build a module whose random initialisation is drawn from ``generator``.

    torch's init functions read the global generator, so the module is built inside
    :func:`torch.random.fork_rng` seeded from ``generator``; the global state is restored.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def frozen_encoder(profile, seed: int, splits: dict | None = None) -> tuple[DenseNetEncoder, EncoderWeights]:
    """The frozen encoder of a run: ImageNet weights if at hand, else task pre-trained.

    Args:
        profile: the run's :class:`~linas_lib.config.Profile`.
        seed: run seed (pre-training's initialisation and shuffling).
        splits: the data splits (loaded from the profile when None).

    Returns:
        ``(encoder, weights)``, the encoder frozen.
    """
    found = find_imagenet_weights(profile.encoder.weights)
    if found is not None:
        path, source = found
        weights = EncoderWeights(source, str(path), file_digest(path))
        return freeze(load_imagenet_encoder(path)), weights
    from .pretrain import task_pretrained_encoder

    return task_pretrained_encoder(profile, seed, splits)


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A numpy generator for one named stream of a seed."""
    return np.random.default_rng([seed, stream])
