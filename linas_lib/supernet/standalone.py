"""Standalone decoders on cached features: training, evaluation, mIoU over a split.

A standalone network is a :class:`~linas_lib.ops.Decoder` of one architecture, trained
on the cached encoder taps of the train split (Adam, shuffled by the run's generator,
segmentation loss of :mod:`linas_lib.losses`) and scored by the split-level mIoU of
:mod:`linas_lib.metrics`. Its weights start either from a generator-driven initialisation
(``scratch``) or from the supernet's weights of that path (``supernet``, see
:func:`linas_lib.supernet.model.extract_decoder`).

The learning rate is constant by default; :func:`train_decoder` optionally warms it up
linearly over the first epochs and/or decays it along a cosine (per optimizer step, see
:func:`lr_factor`). :func:`evaluate_scores` gives a split's mIoU and crack-class IoU at once.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import SCHEDULES
from ..encoder.features import FeatureSplit
from ..keys import seeded_module
from ..losses import check_finite, segmentation_terms
from ..metrics import MIoUMeter
from ..ops import Decoder
from .model import eval_mode



def train_decoder(decoder: torch.nn.Module, train: FeatureSplit, epochs: int, lr: float, batch_size: int,
                  rng: np.random.Generator, label: str = "standalone", schedule: str = "constant",
                  warmup_epochs: int = 0) -> list[dict]:
    """Train a decoder in place on cached taps.

    Args:
        decoder: the network (trained in place).
        train: cached train split.
        epochs, lr, batch_size: Adam schedule.
        rng: shuffles the batches.
        label: names the run in a non-finite-loss error.
        schedule: ``constant`` (the default: ``lr`` throughout) or ``cosine`` (decay towards
            0 over the steps after the warm-up), see :func:`lr_factor`.
        warmup_epochs: epochs of linear warm-up from ``lr / warmup_steps`` to ``lr`` (0 = none).
            With the defaults no learning rate is ever set, so training is exactly the plain
            constant-rate loop.

    Returns:
        One ``{"epoch", "loss"}`` dict per epoch (mean training loss). After training, BN
        statistics are re-estimated over the train split (:func:`recalibrate_bn`).

    Raises:
        linas_lib.losses.NonFiniteLossError: the loss became NaN/inf (names epoch, step, terms).
        ValueError: an unknown schedule or a negative warm-up.
    """
    set_lr = _lr_setter(schedule, warmup_epochs, epochs, -(-len(train) // batch_size), lr)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    history, global_step = [], 0
    for epoch in range(epochs):
        decoder.train()
        losses = []
        for step, (taps, masks) in enumerate(train.batches(batch_size, rng)):
            terms = segmentation_terms(decoder(taps), masks)
            check_finite(terms, f"{label} epoch {epoch} step {step}")
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if set_lr is not None:
                set_lr(optimizer, global_step)
            optimizer.step()
            global_step += 1
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
    if epochs > 0:
        recalibrate_bn(decoder, train, batch_size)
    return history


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` over the first ``warmup_steps`` steps; then
    1 (``constant``) or ``0.5 * (1 + cos(pi * t))`` with ``t`` the share of the remaining
    steps already taken (``cosine``: 1 right after the warm-up, close to 0 at the last step).

    Raises:
        ValueError: an unknown schedule.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _lr_setter(schedule: str, warmup_epochs: int, epochs: int, steps_per_epoch: int, lr: float):
    """A ``set(optimizer, step)`` applying :func:`lr_factor`, or None for the plain constant rate."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if schedule == "constant" and warmup_epochs == 0:
        return None
    total, warmup = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch

    def set_lr(optimizer: torch.optim.Optimizer, step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(step, total, warmup, schedule)

    return set_lr


def evaluate_scores(decoder: torch.nn.Module, split: FeatureSplit, batch_size: int = 8) -> dict[str, float]:
    """Split-level ``{"miou", "crack_iou"}`` of a decoder (eval mode; its modes restored afterwards)."""
    meter = MIoUMeter()
    with eval_mode(decoder), torch.no_grad():
        for taps, masks in split.batches(batch_size):
            meter.update(decoder(taps), masks)
    return {"miou": meter.value(), "crack_iou": meter.crack_iou()}


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
