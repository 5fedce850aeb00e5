"""Standalone decoders on cached features: training, evaluation, mIoU over a split.

A standalone network is a :class:`~linas_lib.ops.Decoder` of one architecture, trained
on the cached encoder taps of the train split (Adam, shuffled by the run's generator,
segmentation loss of :mod:`linas_lib.losses`) and scored by the split-level mIoU of
:mod:`linas_lib.metrics`. Its weights start either from a generator-driven initialisation
(``scratch``) or from the supernet's weights of that path (``supernet``, see
:func:`linas_lib.supernet.model.extract_decoder`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..encoder.features import FeatureSplit
from ..keys import seeded_module
from ..losses import check_finite, segmentation_terms
from ..ops import Decoder


def train_decoder(decoder: torch.nn.Module, train: FeatureSplit, epochs: int, lr: float, batch_size: int,
                  rng: np.random.Generator, label: str = "standalone") -> list[dict]:
    """Train a decoder in place on cached taps.

    Args:
        decoder: the network (trained in place).
        train: cached train split.
        epochs, lr, batch_size: Adam schedule.
        rng: shuffles the batches.
        label: names the run in a non-finite-loss error.

    Returns:
        One ``{"epoch", "loss"}`` dict per epoch (mean training loss). After training, BN
        statistics are re-estimated over the train split (:func:`recalibrate_bn`).

    Raises:
        linas_lib.losses.NonFiniteLossError: the loss became NaN/inf (names epoch, step, terms).
    """
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        decoder.train()
        losses = []
        for step, (taps, masks) in enumerate(train.batches(batch_size, rng)):
            terms = segmentation_terms(decoder(taps), masks)
            check_finite(terms, f"{label} epoch {epoch} step {step}")
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
    if epochs > 0:
        recalibrate_bn(decoder, train, batch_size)
    return history


def recalibrate_bn(decoder: torch.nn.Module, train: FeatureSplit, batch_size: int) -> None:
    """Re-estimate every BN's running statistics exactly over the train split (no gradients).

    Short schedules leave momentum-0.1 running averages far from the final weights'
    statistics; a cumulative pass over the train split after training fixes that.
    """
    bns = [m for m in decoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    decoder.train()
    with torch.no_grad():
        for taps, _ in train.batches(batch_size):
            decoder(taps)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    decoder.eval()


def new_decoder(choices, generator: torch.Generator) -> Decoder:
    """A freshly initialised decoder, its initialisation drawn from ``generator``."""
    return seeded_module(lambda: Decoder(choices), generator)
