"""Which weights the frozen encoder carries, found on this disk (never downloaded).

1. ImageNet weights from a local file: ``encoder.weights`` of the profile, else the
   environment variable ``LINAS_DENSENET121_WEIGHTS``;
2. ImageNet weights from the torch hub cache (``<torch.hub.get_dir()>/checkpoints/
   densenet121-*.pth``);
3. otherwise :mod:`.pretrain` trains the encoder on the task (the SPEC's fallback).

:class:`EncoderWeights` records which was used; it goes into provenance and into the
feature-cache key.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..keys import file_digest
from ..paths import display_path
from .model import DenseNetEncoder

WEIGHTS_ENV = "LINAS_DENSENET121_WEIGHTS"


class EncoderError(ValueError):
    """Encoder weights are unreadable or do not fit DenseNet121; the message names the file."""


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
        """Plain data for provenance (the path relative to the project root when inside it)."""
        return {**asdict(self), "path": display_path(self.path) if self.path else self.path}


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


def imagenet_identity(configured: str = "") -> EncoderWeights | None:
    """:class:`EncoderWeights` of local ImageNet weights, or None when there are none."""
    found = find_imagenet_weights(configured)
    if found is None:
        return None
    path, source = found
    return EncoderWeights(source, str(path), file_digest(path))
