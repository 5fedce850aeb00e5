"""Scoring decoders on cached features: split-level mIoU and the weight-sharing evaluator.

Every function here leaves the model it scores as it found it: scoring runs in eval mode
under ``torch.no_grad`` (BN running statistics are read, never updated) and each module's
previous train/eval mode is restored afterwards (:func:`~.model.eval_mode`), so a
measurement never changes what it measures. That holds for BN recalibration too
(:func:`path_bn_recalibrated`): a path's BN statistics are re-estimated on train batches for
the evaluation and every BN buffer is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from ..encoder.features import FeatureSplit
from ..losses import segmentation_loss
from ..metrics import MIoUMeter
from ..space import as_choices
from .model import Supernet, bn_statistics_kept, eval_mode


def evaluate_logits(forward, split: FeatureSplit, batch_size: int, model: torch.nn.Module | None = None) -> float:
    """Split-level mIoU of ``forward(taps) -> logits`` over every image of ``split``.

    Args:
        forward: a module, or a callable running ``model`` (a lambda over the supernet).
        split: cached features.
        batch_size: evaluation batch size.
        model: the module ``forward`` runs, when ``forward`` is not that module itself. It
            (and ``forward``, if a module) runs in eval mode and gets its previous
            train/eval mode back afterwards.
    """
    meter = MIoUMeter()
    module = forward if isinstance(forward, torch.nn.Module) else None
    with eval_mode(module, model), torch.no_grad():
        for taps, masks in split.batches(batch_size):
            meter.update(forward(taps), masks)
    return meter.value()


def evaluate_decoder(decoder: torch.nn.Module, split: FeatureSplit, batch_size: int = 8) -> float:
    """mIoU of a decoder on a split, BN in eval mode (the decoder's mode restored afterwards)."""
    return evaluate_logits(decoder, split, batch_size)


@contextmanager
def path_bn_recalibrated(model: Supernet, choices, batches) -> Iterator[None]:
    """Run a block (eval mode) with the BN statistics of one path re-estimated on ``batches``.

    The path's BNs get fresh cumulative statistics (reset, momentum None) from train-mode
    forward passes of the path under ``torch.no_grad`` over ``batches`` (``(taps, masks)``
    pairs of the train split); the block then runs with the model in eval mode. On exit every
    BN buffer, every momentum and every module's train/eval flag is as before, so the supernet
    is bit-identical. With no batches, the block runs in eval mode on the trained statistics.
    """
    bns = [m for cand in model.path_candidates(choices) for m in cand.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    with bn_statistics_kept(model), eval_mode(model):
        try:
            if batches:
                for m in bns:
                    m.reset_running_stats()
                    m.momentum = None
                model.train()
                with torch.no_grad():
                    for taps, _ in batches:
                        model.forward_arch(taps, choices)
                model.eval()
            yield
        finally:
            for m, momentum in zip(bns, momenta):
                m.momentum = momentum


SCORES = ("miou", "crack_iou", "loss")  # what :meth:`WeightSharingEvaluator.scores` returns per architecture


class WeightSharingEvaluator:
    """mIoU, crack IoU and loss of architectures with the supernet's shared weights, on a fixed split.

    Deterministic: only the architecture's path runs (no Gumbel noise, no alpha), BN in
    eval mode, either with each candidate's running statistics from supernet training or,
    with ``recalib_batches > 0``, with the path's statistics re-estimated on the first
    ``recalib_batches`` batches of ``recalib`` (in order) before scoring
    (:func:`path_bn_recalibrated`; the model is left bit-identical). Results are memoised per
    architecture.

    ``loss`` is the training objective (:func:`~linas_lib.losses.segmentation_loss`: cross-entropy
    + soft Dice + boundary cross-entropy) of the scored images, each batch's value weighted by
    its size. Unlike mIoU it reads the predicted probabilities, not only their argmax, so on a
    few images it is a smoother (lower = better) score of the same path. Its Dice and boundary
    terms pool the pixels of a batch, so the value depends on ``batch_size`` (and the split's
    order), as the training loss does: scores are comparable across architectures of one
    evaluator, not across batch sizes.

    Args:
        model: the trained supernet.
        split: cached features scored (the held-out part of the val split).
        batch_size: evaluation (and recalibration) batch size.
        recalib: the split whose batches re-estimate BN statistics (the train split).
        recalib_batches: how many of its batches (0: no recalibration).
    """

    def __init__(self, model: Supernet, split: FeatureSplit, batch_size: int = 8, recalib: FeatureSplit | None = None,
                 recalib_batches: int = 0):
        self.model = model
        self.split = split
        self.batches = _contiguous(split.batches(batch_size))
        if recalib_batches > 0 and recalib is None:
            raise ValueError("BN recalibration needs the split it reads (recalib)")
        self.recalib_batches = _contiguous(recalib.batches(batch_size))[:recalib_batches] if recalib_batches else []
        self.memo: dict[tuple[int, ...], dict[str, float]] = {}

    def scores_one(self, choices) -> dict[str, float]:
        """``{"miou", "crack_iou", "loss"}`` of one architecture ``(5,)``.

        A change to what this computes must bump ``train.WS_SCORES_SCHEMA``: tables of these
        scores are cached on disk.
        """
        key = tuple(int(c) for c in as_choices(choices))
        if key not in self.memo:
            meter, loss_sum, n_images = MIoUMeter(), 0.0, 0
            with path_bn_recalibrated(self.model, key, self.recalib_batches), torch.no_grad():
                for taps, masks in self.batches:
                    logits = self.model.forward_arch(taps, key)
                    meter.update(logits, masks)
                    loss_sum += float(segmentation_loss(logits, masks)) * len(masks)
                    n_images += len(masks)
            self.memo[key] = {"miou": meter.value(), "crack_iou": meter.crack_iou(), "loss": loss_sum / n_images}
        return self.memo[key]

    def background_scores(self) -> dict[str, float]:
        """``{"miou", "crack_iou"}`` of predicting background everywhere on the scored images.

        The accuracy every network gets for free: the HV reference of the Pareto search.
        """
        meter = MIoUMeter()
        for _, masks in self.batches:
            logits = torch.zeros((masks.shape[0], self.model.head.out_channels, *masks.shape[-2:]))
            logits[:, 0] = 1.0
            meter.update(logits, masks)
        return {"miou": meter.value(), "crack_iou": meter.crack_iou()}

    def evaluate_one(self, choices) -> float:
        """mIoU of one architecture ``(5,)``."""
        return self.scores_one(choices)["miou"]

    def evaluate(self, choices: np.ndarray) -> np.ndarray:
        """mIoU of architectures ``(n, 5)`` -> ``(n,)`` (one ``(5,)`` is accepted too)."""
        return self.scores(choices)["miou"]

    def scores(self, choices: np.ndarray) -> dict[str, np.ndarray]:
        """``{"miou": (n,), "crack_iou": (n,), "loss": (n,)}`` of architectures ``(n, 5)`` (or one ``(5,)``)."""
        arr = np.atleast_2d(np.asarray(choices, dtype=np.int64))
        rows = [self.scores_one(c) for c in arr]
        return {name: np.array([r[name] for r in rows], dtype=np.float64) for name in SCORES}


def _contiguous(batches) -> list:
    """Materialised ``(taps, masks)`` batches with contiguous taps."""
    return [(tuple(t.contiguous() for t in taps), m) for taps, m in batches]
