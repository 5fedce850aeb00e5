"""Training losses: the segmentation loss and the latency penalty of the search.

Segmentation (binary, 2-class logits): cross-entropy + soft Dice of the defect class +
boundary-weighted cross-entropy (pixels on the mask's morphological gradient, i.e. defect
edges, averaged on their own so thin cracks are not drowned by background).

Latency: ``sum_t relu(E[lat_t] - budget_t) / budget_t``, ``E[lat_t]`` the differentiable
expectation of :func:`linas_lib.latency.predict.expected_latency` (ProxylessNAS).
Each target's excess is divided by its budget so that targets whose latencies live on
different scales (0.5 ms GPUs, 150 ms CPUs) weigh the same per unit of *relative* overshoot.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import PENALTY_FORMS


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names where and the loss terms."""


def boundary_map(masks: torch.Tensor) -> torch.Tensor:
    """Defect edge pixels (3x3 morphological gradient) of ``(B, H, W)`` masks, as float."""
    m = masks.float().unsqueeze(1)
    dilated = F.max_pool2d(m, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-m, 3, stride=1, padding=1)
    return (dilated - eroded).squeeze(1)


def segmentation_terms(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three segmentation loss terms.

    Args:
        logits: ``(B, 2, H, W)``.
        masks: ``(B, H, W)`` in {0, 1}.

    Returns:
        ``{"ce", "dice", "boundary"}`` scalar tensors.

    Raises:
        ValueError: shapes that do not match.
    """
    if logits.ndim != 4 or logits.shape[1] != 2 or logits.shape[0] != masks.shape[0] or logits.shape[2:] != masks.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} do not match masks {tuple(masks.shape)} (want (B,2,H,W), (B,H,W))")
    target = masks.long()
    pixel_ce = F.cross_entropy(logits, target, reduction="none")
    prob = logits.softmax(dim=1)[:, 1]
    fg = target.float()
    dice = 1.0 - (2.0 * (prob * fg).sum() + 1.0) / (prob.sum() + fg.sum() + 1.0)
    edge = boundary_map(target)
    boundary = (pixel_ce * edge).sum() / edge.sum().clamp_min(1.0)
    return {"ce": pixel_ce.mean(), "dice": dice, "boundary": boundary}


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """CE + Dice + boundary-weighted CE (see :func:`segmentation_terms`)."""
    return sum(segmentation_terms(logits, masks).values())


def latency_penalty(expected_ms: torch.Tensor, budgets_ms: torch.Tensor, form: str = "ratio",
                    spans_ms: torch.Tensor | None = None) -> torch.Tensor:
    """Overshoot of the budgets summed over targets: zero when every target is in budget.

    ``ratio`` (LINAS): ``sum_t relu(E[lat_t] - budget_t) / budget_t``. Dimensionless, but its
    gradient is a target's LUT over its budget, so a target whose architectures span 30x its
    budget (an edge CPU, decoder only) outweighs one spanning half of it (a CPU end to end).
    ``log``: ``sum_t relu(log(E[lat_t] / budget_t))``: the LUT over the expected latency, so
    the same imbalance near the budget. ``range`` (scale-free): ``sum_t relu(E[lat_t] -
    budget_t) / span_t`` with ``span_t`` the target's latency range over the space, so
    moving any target from its fastest to its slowest architecture costs the same.

    Raises:
        ValueError: a non-positive budget or span, mismatched shapes, an unknown form, or
            ``range`` without spans.
    """
    if expected_ms.shape != budgets_ms.shape:
        raise ValueError(f"{expected_ms.shape[0]} expected latencies but {budgets_ms.shape[0]} budgets")
    if (budgets_ms <= 0).any():
        raise ValueError(f"latency budgets must be positive, got {budgets_ms.tolist()}")
    if form == "ratio":
        return (F.relu(expected_ms - budgets_ms) / budgets_ms).sum()
    if form == "log":
        return F.relu(torch.log(expected_ms) - torch.log(budgets_ms)).sum()
    if form == "range":
        if spans_ms is None or spans_ms.shape != budgets_ms.shape or (spans_ms <= 0).any():
            raise ValueError(f"the range penalty needs a positive latency span per target, got "
                             f"{None if spans_ms is None else spans_ms.tolist()}")
        return (F.relu(expected_ms - budgets_ms) / spans_ms).sum()
    raise ValueError(f"unknown latency penalty {form!r}; expected one of {', '.join(PENALTY_FORMS)}")


def check_finite(terms: dict[str, torch.Tensor], where: str) -> None:
    """Raise :class:`NonFiniteLossError` naming ``where`` and every term's value if any is not finite."""
    values = {name: float(value.detach()) for name, value in terms.items()}
    if not all(math.isfinite(v) for v in values.values()):
        listed = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        raise NonFiniteLossError(f"non-finite loss at {where}: {listed}")
