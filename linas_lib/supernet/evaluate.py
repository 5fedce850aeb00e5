"""Scoring decoders on cached features: split-level mIoU and the weight-sharing evaluator.

Every function here leaves the model it scores as it found it: scoring runs in eval mode
under ``torch.no_grad`` (BN running statistics are read, never updated) and each module's
previous train/eval mode is restored afterwards (:func:`~.model.eval_mode`), so a
measurement never changes what it measures.
"""

from __future__ import annotations

import numpy as np
import torch

from ..encoder.features import FeatureSplit
from ..metrics import MIoUMeter
from ..space import as_choices
from .model import Supernet, eval_mode


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


class WeightSharingEvaluator:
    """mIoU of architectures with the supernet's shared weights, on a fixed split.

    Deterministic: only the architecture's path runs (no Gumbel noise, no alpha), BN in
    eval mode with each candidate's running statistics from supernet training. Results are
    memoised per architecture.

    Args:
        model: the trained supernet.
        split: cached features (the val split, or its first ``ws_val_images`` images).
        batch_size: evaluation batch size.
    """

    def __init__(self, model: Supernet, split: FeatureSplit, batch_size: int = 8):
        self.model = model
        self.split = split
        self.batches = [(tuple(t.contiguous() for t in taps), m) for taps, m in split.batches(batch_size)]
        self.memo: dict[tuple[int, ...], float] = {}

    def evaluate_one(self, choices) -> float:
        """mIoU of one architecture ``(5,)``."""
        key = tuple(int(c) for c in as_choices(choices))
        if key not in self.memo:
            meter = MIoUMeter()
            with eval_mode(self.model), torch.no_grad():
                for taps, masks in self.batches:
                    meter.update(self.model.forward_arch(taps, key), masks)
            self.memo[key] = meter.value()
        return self.memo[key]

    def evaluate(self, choices: np.ndarray) -> np.ndarray:
        """mIoU of architectures ``(n, 5)`` -> ``(n,)`` (one ``(5,)`` is accepted too)."""
        arr = np.atleast_2d(np.asarray(choices, dtype=np.int64))
        return np.array([self.evaluate_one(c) for c in arr], dtype=np.float64)
