"""The search's objective and constraint vectors (all minimised).

Per hardware target ``t`` (one front per target):
    ``F = (1 - mIoU, latency_t / budget_t)``, constraint ``G = latency_t / budget_t - 1 <= 0``.

Joint multi-target search (one run serving every target at once, C2):
    ``F = (1 - mIoU, latency_t / budget_t for every attainable target t)`` -- one latency
    objective per target (``1 + T'`` objectives), with the single constraint
    ``G = min_t latency_t / budget_t - 1 <= 0``: an architecture must meet at least one
    budget. Why not a scalarised latency (max or mean over targets)? The targets disagree
    (GPU and CPU latencies correlate weakly), and some budgets may be unattainable by any
    architecture (e.g. a CPU budget below the encoder's own time): a max would then be ruled
    by that one target, and "all budgets met" would be an empty set, leaving NSGA-II
    minimising violations instead of trading accuracy. Every per-target front is part of the
    ``1 + T'`` objective Pareto set, so nothing a per-target search could find is excluded.
    Targets no architecture can meet (:func:`attainable_targets`) are left out of the joint
    objectives; they cannot contribute to any front.

Latencies are divided by the budget so every target's latency axis reads "share of the
budget" and HV values of different targets can be averaged.
"""

from __future__ import annotations

import numpy as np

from .samplers import normalised_latency


def check_accuracy(miou) -> np.ndarray:
    """mIoU as a finite 1-D array in [0, 1]."""
    arr = np.asarray(miou, dtype=float).reshape(-1)
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"mIoU values must be finite and in [0, 1]; got min {arr.min()} max {arr.max()}")
    return arr


def target_objectives(miou, latency_ms, budgets_ms, target: int) -> np.ndarray:
    """``(n, 2)``: accuracy loss and budget-normalised latency on one target."""
    norm = normalised_latency(latency_ms, budgets_ms)
    return np.stack([1.0 - check_accuracy(miou), norm[:, target]], axis=1)


def joint_objectives(miou, latency_ms, budgets_ms, targets=None) -> np.ndarray:
    """``(n, 1 + T')``: accuracy loss and the budget-normalised latency of each joint target.

    Args:
        miou: ``(n,)`` mIoU.
        latency_ms: ``(n, T)`` latency.
        budgets_ms: ``(T,)`` budgets.
        targets: indices of the targets in the joint objectives (default: all).
    """
    norm = normalised_latency(latency_ms, budgets_ms)
    cols = np.arange(norm.shape[1]) if targets is None else np.asarray(targets, dtype=int)
    if cols.size == 0:
        raise ValueError("joint objectives need at least one target")
    return np.concatenate([(1.0 - check_accuracy(miou))[:, None], norm[:, cols]], axis=1)


def objectives(miou, latency_ms, budgets_ms, target: int | None, joint_targets=None) -> np.ndarray:
    """:func:`target_objectives` for a target index, :func:`joint_objectives` for ``None``."""
    if target is None:
        return joint_objectives(miou, latency_ms, budgets_ms, joint_targets)
    return target_objectives(miou, latency_ms, budgets_ms, target)


def attainable_targets(latency_ms, budgets_ms) -> np.ndarray:
    """Indices of the targets whose budget at least one of the given architectures meets."""
    return np.flatnonzero((normalised_latency(latency_ms, budgets_ms) <= 1.0).any(axis=0))


def budget_constraints(latency_ms, budgets_ms, target: int | None, joint_targets=None) -> np.ndarray:
    """Constraints (feasible when <= 0), shape ``(n, 1)``.

    One target: ``latency_t / budget_t - 1``. Joint: ``min_t latency_t / budget_t - 1`` over
    the joint targets (at least one budget met).
    """
    norm = normalised_latency(latency_ms, budgets_ms) - 1.0
    if target is not None:
        return norm[:, [target]]
    cols = np.arange(norm.shape[1]) if joint_targets is None else np.asarray(joint_targets, dtype=int)
    return norm[:, cols].min(axis=1, keepdims=True)
