"""The frozen DenseNet121 encoder (C1): its taps, its weights, the task pre-training
fallback and the on-disk feature cache.

Modules: :mod:`.model` (the five taps, freezing), :mod:`.weights` (ImageNet weights found
on this disk), :mod:`.pretrain` (task pre-training when there are none), :mod:`.features`
(taps computed once per split and weights, cached).
"""

from __future__ import annotations

from .model import TAP_CHANNELS, TAP_STRIDES, DenseNetEncoder, freeze
from .weights import EncoderError, EncoderWeights, imagenet_identity, load_imagenet_encoder


def frozen_encoder(profile, seed: int, splits: dict | None = None) -> tuple[DenseNetEncoder, EncoderWeights]:
    """The frozen encoder of a run: ImageNet weights if at hand, else task pre-trained.

    Args:
        profile: the run's :class:`~linas_lib.config.Profile`.
        seed: run seed (pre-training's initialisation and shuffling).
        splits: the data splits (loaded from the profile when None).

    Returns:
        ``(encoder, weights)``, the encoder frozen.
    """
    weights = imagenet_identity(profile.encoder.weights)
    if weights is not None:
        return freeze(load_imagenet_encoder(weights.path)), weights
    from .pretrain import task_pretrained_encoder

    return task_pretrained_encoder(profile, seed, splits)


__all__ = ["TAP_CHANNELS", "TAP_STRIDES", "DenseNetEncoder", "EncoderError", "EncoderWeights", "freeze",
           "frozen_encoder"]
