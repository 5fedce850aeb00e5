"""Multi-fidelity re-ranking: weight-sharing screen, then a short fine-tune of the top-k.

The cheap fidelity (weight-sharing mIoU) picks the top-k architectures of a front; each is
fine-tuned briefly from the supernet's weights (the expensive fidelity) and the k are
re-ranked by the fine-tuned mIoU. The Kendall tau between the two fidelities says how far
the weight-sharing ranking can be trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau

from .indicators import as_objectives, pareto_ranks


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two score vectors (scipy); NaN when either is constant.

    Raises:
        ValueError: different lengths, fewer than 2 items, or non-finite values.
    """
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"Kendall tau needs two equally long vectors of >= 2 items; got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Kendall tau inputs must be finite")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def top_k_of_front(F, k: int) -> np.ndarray:
    """Indices of the ``k`` best points by the first objective among the first Pareto fronts.

    Points of front 0 come first (best first objective first); if front 0 has fewer than
    ``k`` points the next fronts fill up.
    """
    F = as_objectives(F)
    if not 1 <= k <= len(F):
        raise ValueError(f"k must lie in 1..{len(F)}; got {k}")
    order = np.lexsort((F[:, 0], pareto_ranks(F)))
    return order[:k]


@dataclass(frozen=True)
class FidelityResult:
    """Top-k architectures with both fidelities and the rank agreement."""

    choices: np.ndarray  # (k, L)
    ws_miou: np.ndarray  # (k,)
    finetuned_miou: np.ndarray  # (k,)
    tau: float  # Kendall tau(ws, fine-tuned); NaN if undefined

    def rows(self, key: Callable[[np.ndarray], str]) -> list[dict]:
        """Table rows, ranked by the fine-tuned mIoU (the re-ranking)."""
        order = np.argsort(-self.finetuned_miou, kind="stable")
        ws_rank = np.argsort(np.argsort(-self.ws_miou, kind="stable"), kind="stable")
        return [
            {
                "rank_finetuned": r + 1,
                "rank_ws": int(ws_rank[i]) + 1,
                "arch": key(self.choices[i]),
                "ws_miou": float(self.ws_miou[i]),
                "finetuned_miou": float(self.finetuned_miou[i]),
            }
            for r, i in enumerate(order)
        ]


def rerank_top_k(choices, ws_miou, F, k: int, finetune: Callable[[np.ndarray], float]) -> FidelityResult:
    """Fine-tune the top-``k`` of the front ``F`` and compare the two fidelities.

    Args:
        choices: ``(n, L)`` evaluated architectures.
        ws_miou: ``(n,)`` their weight-sharing mIoU.
        F: ``(n, 2)`` their objectives (the front is taken from these).
        k: how many to fine-tune.
        finetune: ``choices (L,) -> fine-tuned mIoU`` (e.g. a closure over
            ``TrainedSupernet.finetune_and_evaluate`` with its epochs and generator).
    """
    idx = top_k_of_front(F, k)
    chosen = np.asarray(choices, dtype=np.int64)[idx]
    tuned = np.array([float(finetune(c)) for c in chosen])
    ws = np.asarray(ws_miou, dtype=float)[idx]
    tau = kendall_tau(ws, tuned) if k >= 2 else float("nan")
    return FidelityResult(choices=chosen, ws_miou=ws, finetuned_miou=tuned, tau=tau)
