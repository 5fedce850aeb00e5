"""Segmentation quality: mIoU from per-class tp/fp/fn accumulated over a whole split.

mIoU is the mean over the two classes (background, defect) of ``tp / (tp + fp + fn)``,
counts summed over every pixel of the split first (not averaged per image), so small
defects in few images weigh by their pixel count. A class absent from both prediction and
ground truth (``tp + fp + fn == 0``) counts as IoU 1. The crack-class IoU
(:func:`class_iou_from_counts` of class 1, :meth:`MIoUMeter.crack_iou`) is the defect
class's IoU alone: mIoU averages it with the background's (near 1), which halves every
difference between networks.
"""

from __future__ import annotations

import numpy as np
import torch

N_CLASSES = 2
DEFECT_CLASS = 1  # the crack / defect class of the binary masks


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, n_classes: int = N_CLASSES) -> np.ndarray:
    """Per-class ``(tp, fp, fn)`` of one batch.

    Args:
        pred: predicted class per pixel, any integer shape.
        target: ground-truth class per pixel, same shape.

    Returns:
        int64 ``(n_classes, 3)``.

    Raises:
        ValueError: shapes differ.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    counts = np.zeros((n_classes, 3), dtype=np.int64)
    for c in range(n_classes):
        p, t = pred == c, target == c
        counts[c] = (int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()))
    return counts


def miou_from_counts(counts: np.ndarray) -> float:
    """Class-mean IoU of ``(n_classes, 3)`` tp/fp/fn counts (absent classes count 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    denom = tp + fp + fn
    iou = np.where(denom > 0, tp / np.maximum(denom, 1.0), 1.0)
    return float(iou.mean())


def class_iou_from_counts(counts: np.ndarray, cls: int = DEFECT_CLASS) -> float:
    """IoU of one class from ``(n_classes, 3)`` tp/fp/fn counts (1 when the class is absent
    from both prediction and ground truth, as in :func:`miou_from_counts`).

    Raises:
        ValueError: ``cls`` is not a row of ``counts``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if not 0 <= cls < counts.shape[0]:
        raise ValueError(f"class {cls} out of range 0..{counts.shape[0] - 1}")
    tp, fp, fn = counts[cls]
    denom = tp + fp + fn
    return float(tp / denom) if denom > 0 else 1.0


class MIoUMeter:
    """Accumulates tp/fp/fn over batches; :meth:`value` is the split's mIoU."""

    def __init__(self, n_classes: int = N_CLASSES):
        self.counts = np.zeros((n_classes, 3), dtype=np.int64)

    def update(self, logits: torch.Tensor, masks: torch.Tensor) -> None:
        """Add one batch of ``(B, C, H, W)`` logits and ``(B, H, W)`` masks."""
        self.counts += confusion_counts(logits.argmax(dim=1), masks, self.counts.shape[0])

    def value(self) -> float:
        """mIoU over everything seen so far."""
        return miou_from_counts(self.counts)

    def crack_iou(self) -> float:
        """IoU of the defect (crack) class alone over everything seen so far."""
        return class_iou_from_counts(self.counts, DEFECT_CLASS)
