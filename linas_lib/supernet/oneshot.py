"""Weight steps of the one-shot phase: sampling rule, I2 CaLR and I2 momentum bins.

The one-shot phase (``supernet.warmup_epochs``) trains the shared weights on sampled paths,
no architecture logits involved. Its profile switches (:class:`~linas_lib.config.SupernetConfig`):

* ``sampling``: ``uniform`` -- one path per step, one choice per layer drawn uniformly (SPOS);
  ``sandwich`` -- per step the largest path (:func:`~.model.largest_path`), the smallest path
  (:func:`~.model.smallest_path`) and ``sandwich_random`` uniform paths; their gradients are
  accumulated (one backward per path, so memory of one path) and one optimiser step follows.
* ``calr`` (I2 CaLR, complexity-aware learning rate): each path's step is scaled by
  :func:`calr_scale` ``= clip((c / c_mean) ** 0.5, 0.5, 2)``, where ``c`` is the path's
  parameter count (:func:`~.model.path_complexity`) and ``c_mean`` that of the mean path
  (:func:`~.model.mean_path_complexity`): larger sub-networks, which converge more slowly,
  take larger steps; the clip bounds the factor for the extremes (the largest path of the
  space is 4.7 mean paths, the smallest 0.07). With ``uniform`` the optimiser's learning rate
  is multiplied by the factor for the step. With ``sandwich`` the step stays one optimiser
  step on the paths' summed gradient, and each parameter's move is multiplied by the mean
  factor of the step's paths that ran it: a candidate only the largest path ran moves 2x its
  move without CaLR, one only the smallest path ran 0.5x. For a parameter one path ran that is
  a per-path learning rate, whatever the optimiser; the parameters several paths ran share one
  rate, their mean factor -- for the bottleneck and head, which every path runs and whose
  sandwich always holds the largest (2) and smallest (0.5) paths, close to a constant. Scaling
  each path's *loss* instead (the earlier rule; :func:`~.train.supernet_key` tells the two
  apart) is a per-path rate for SGD only: Adam divides by the running gradient magnitude and
  cancels most of it. With momentum bins each bin's proposal is scaled so before the mean.
* ``momentum_bins`` (I2 separate momentum): 0 -- one Adam state for all paths; ``k > 0`` --
  ``k`` Adam optimisers, one per complexity bin. Bins are the ``k``-quantiles of path
  complexity over the whole space (exact enumeration of every path, computed once per run,
  :func:`complexity_bin_edges`); a step's paths are grouped by bin, every group's gradient is
  computed at the same weights, then each group's optimiser proposes its step from its own
  moments and a parameter moves by the *mean* of the proposals of the groups that touched it.
  (Stepping every group's optimiser in turn would move a parameter that every path shares --
  bottleneck, head -- by about one Adam step per bin: about 3 per weight step with 4 bins, a
  larger learning rate that a comparison with ``sandwich`` would credit to separate momentum.)
  A uniform step has one path, so it uses one bin's optimiser. The search phase's binarised
  weight steps keep routing each path to its bin's optimiser (its moments carry over from
  the one-shot phase), and under CaLR scale its learning rate by the path's factor, as a
  uniform one-shot step does (the whole path's factor, head and bottleneck included; the
  paths come from the architecture distribution, so as it moves to cheap paths the factors
  fall below 1 -- the factor stays relative to the space's mean path); continuous modes use
  the search optimiser, unscaled.

An *update* of a candidate is a weight step in which it received a gradient;
:func:`updates_per_choice` gives the expected count of the rarest candidate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SAMPLINGS
from ..losses import check_finite, segmentation_terms
from ..space import N_CHOICES, N_LAYERS
from .model import (Supernet, candidate_param_counts, largest_path, mean_path_complexity, path_complexity,
                    smallest_path)

CALR_POWER = 0.5  # CaLR factor (c / c_mean) ** CALR_POWER ...
CALR_CLIP = (0.5, 2.0)  # ... clipped to this range


def calr_scale(complexity: float, mean_complexity: float) -> float:
    """CaLR factor of a path: ``clip((complexity / mean_complexity) ** CALR_POWER, *CALR_CLIP)``."""
    return float(np.clip((complexity / mean_complexity) ** CALR_POWER, *CALR_CLIP))


def complexity_distribution(counts: np.ndarray) -> np.ndarray:
    """Path complexity of every path of the space (``n_choices ** n_layers`` values, unordered)."""
    total = np.zeros(1)
    for row in np.asarray(counts, dtype=np.float64):
        total = (total[:, None] + row[None, :]).ravel()
    return total


def complexity_bin_edges(counts: np.ndarray, n_bins: int) -> np.ndarray:
    """The ``n_bins - 1`` inner quantiles of path complexity over the space (bin ``i`` lies
    between edges ``i - 1`` and ``i``); empty for ``n_bins <= 1``."""
    if n_bins <= 1:
        return np.zeros(0)
    return np.quantile(complexity_distribution(counts), np.arange(1, n_bins) / n_bins)


@dataclass(frozen=True)
class OneShotRule:
    """How the one-shot phase draws paths and scales and routes their steps.

    Attributes:
        sampling: one of :data:`SAMPLINGS`.
        n_random: uniform paths per sandwich step.
        calr: whether CaLR scales the steps.
        counts: ``(n_layers, n_choices)`` candidate parameter counts.
        bin_edges: complexity quantiles of the momentum bins (empty: one bin).
    """

    sampling: str
    n_random: int
    calr: bool
    counts: np.ndarray
    bin_edges: np.ndarray

    def draw(self, model: Supernet, gen: torch.Generator) -> list[np.ndarray]:
        """The paths of one step (uniform draws come from ``gen``)."""
        if self.sampling == "uniform":
            return [model.sample_path("uniform", gen)]
        fixed = [largest_path(len(self.counts)), smallest_path(self.counts)]
        return fixed + [model.sample_path("uniform", gen) for _ in range(self.n_random)]

    def complexity(self, path) -> float:
        """Parameter count of a path's candidates."""
        return path_complexity(self.counts, path)

    def scale(self, path) -> float:
        """CaLR factor of a path (1 when CaLR is off)."""
        return calr_scale(self.complexity(path), mean_path_complexity(self.counts)) if self.calr else 1.0

    def bin_of(self, path) -> int:
        """Momentum bin of a path (0 when there is one bin)."""
        return int(np.searchsorted(self.bin_edges, self.complexity(path), side="right"))


def one_shot_rule(cfg, model: Supernet) -> OneShotRule:
    """The :class:`OneShotRule` of a profile's ``supernet`` section for ``model`` (the section's
    sampling rule and counts were checked when it was built)."""
    counts = candidate_param_counts(model)
    return OneShotRule(cfg.sampling, int(cfg.sandwich_random), bool(cfg.calr), counts,
                       complexity_bin_edges(counts, cfg.momentum_bins))


def one_shot_step(model: Supernet, optimizers: list[torch.optim.Optimizer], rule: OneShotRule, taps, masks,
                  gen: torch.Generator, where: str) -> tuple[float, list[np.ndarray]]:
    """One weight step of the one-shot phase (see the module docstring).

    Args:
        model: the supernet (trained in place).
        optimizers: one optimiser, or one per momentum bin (indexed by :meth:`OneShotRule.bin_of`).
        rule: sampling, CaLR and bins.
        taps, masks: the train batch.
        gen: draws the uniform paths.
        where: names the step in a non-finite-loss error.

    Returns:
        ``(mean segmentation loss over the step's paths, the paths)``.
    """
    model.train()
    paths = rule.draw(model, gen)
    route = (lambda p: rule.bin_of(p)) if len(optimizers) > 1 else (lambda p: 0)  # noqa: E731
    if rule.sampling == "uniform":
        loss = _path_loss(model, taps, masks, paths[0], where)
        optimizer = optimizers[route(paths[0])]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with lr_scaled(optimizer, rule.scale(paths[0])):
            optimizer.step()
        return float(loss.detach()), paths
    groups: dict[int, list[np.ndarray]] = {}
    for path in paths:
        groups.setdefault(route(path), []).append(path)
    params, losses, steps = model.weight_parameters(), [], []
    for p in params:
        p.grad = None
    for index, group in groups.items():  # every group's gradient at the same weights
        grads, factors = _group_gradients(model, params, rule, group, taps, masks, where, losses)
        steps.append((optimizers[index], grads, factors))
    _step_groups(params, steps)
    return float(np.mean(losses)), paths


def _group_gradients(model: Supernet, params: list[torch.Tensor], rule: OneShotRule, group: list[np.ndarray],
                     taps, masks, where: str, losses: list[float]) -> tuple[list, list | None]:
    """The summed gradient of a group's paths (one backward per path) and, under CaLR, each
    parameter's mean CaLR factor over the group's paths that touched it (``None`` where none
    did; the factors are ``None`` without CaLR). Appends each path's loss to ``losses``."""
    grads: list = [None] * len(params)
    factor_sums, counts = np.zeros(len(params)), np.zeros(len(params), dtype=np.int64)
    for path in group:
        loss = _path_loss(model, taps, masks, path, f"{where} path {path.tolist()}")
        losses.append(float(loss.detach()))
        loss.backward()
        if rule.calr:  # each path's gradient apart, to know which paths ran each parameter
            scale = rule.scale(path)
            for i, p in enumerate(params):
                if p.grad is not None:
                    grads[i] = p.grad if grads[i] is None else grads[i] + p.grad
                    factor_sums[i] += scale
                    counts[i] += 1
                    p.grad = None
    if not rule.calr:  # gradients accumulated in place, as they always have (bit-identical runs)
        grads = [p.grad for p in params]
        for p in params:
            p.grad = None
        return grads, None
    return grads, [float(s / n) if n else None for s, n in zip(factor_sums, counts)]


@torch.no_grad()
def _step_groups(params: list[torch.Tensor], steps: list[tuple[torch.optim.Optimizer, list, list | None]]) -> None:
    """Each ``(optimiser, gradients, factors)`` proposes a step from the same weights, each
    parameter's move times its factor (CaLR; ``factors`` ``None``: 1); every parameter moves by
    the mean of the proposals of the optimisers that had a gradient for it."""
    if len(steps) == 1 and steps[0][2] is None:  # stepped directly: ``p0 + (p - p0) / 1`` is not bit-identical to ``p``
        optimizer, group_grads, _ = steps[0]
        for p, g in zip(params, group_grads):
            p.grad = g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return
    start = [p.detach().clone() for p in params]
    moved = [torch.zeros_like(p) for p in params]
    proposals = [0] * len(params)
    for optimizer, group_grads, factors in steps:
        for p, g in zip(params, group_grads):
            p.grad = g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for i, (p, p0, g) in enumerate(zip(params, start, group_grads)):
            if g is not None:
                moved[i] += (p - p0) if factors is None else (p - p0) * factors[i]
                proposals[i] += 1
                p.copy_(p0)
    for p, p0, m, n in zip(params, start, moved, proposals):
        if n:
            p.copy_(p0 + m / n)


def _path_loss(model: Supernet, taps, masks, path, where: str) -> torch.Tensor:
    """Segmentation loss of one path on a batch (checked finite)."""
    terms = segmentation_terms(model.forward_arch(taps, path), masks)
    check_finite(terms, where)
    return sum(terms.values())


@contextmanager
def lr_scaled(optimizer: torch.optim.Optimizer, scale: float) -> Iterator[None]:
    """Every parameter group's learning rate times ``scale`` inside the block (restored exactly)."""
    if scale == 1.0:
        yield
        return
    saved = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * scale
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, saved):
            group["lr"] = lr


def touched(paths: list[np.ndarray], n_choices: int = N_CHOICES) -> np.ndarray:
    """``(n_layers, n_choices)`` 0/1: which candidates a step's paths ran (one update each)."""
    mask = np.zeros((len(paths[0]), n_choices), dtype=np.int64)
    for path in paths:
        mask[np.arange(len(path)), np.asarray(path)] = 1
    return mask


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Weight steps of one epoch over ``n_train`` images (the last batch may be smaller)."""
    return -(-int(n_train) // int(batch_size))


def updates_per_choice(cfg, n_train: int) -> dict:
    """Expected updates of the rarest candidate choice per layer over the one-shot phase.

    A candidate is updated in a weight step when one of the step's paths runs it. Per step
    and layer: ``uniform`` runs a given choice with probability ``1 / 21``; ``sandwich`` runs
    the largest and the smallest path's choices in every step and any other choice with
    probability ``1 - (20 / 21) ** sandwich_random`` (the uniform paths). The rarest choice
    of a layer is one outside the two fixed paths (there are 21 choices), so the count does
    not need the parameter table. Only the one-shot phase counts (the search phase samples
    from the architecture distribution).

    Args:
        cfg: the profile's ``supernet`` section (``sampling``, ``sandwich_random``,
            ``warmup_epochs``, ``batch_size``).
        n_train: images in the train split.

    Returns:
        ``{"weight_steps", "paths_per_step", "per_layer" (list of N_LAYERS), "min"}``.
    """
    steps = cfg.warmup_epochs * steps_per_epoch(n_train, cfg.batch_size)
    if cfg.sampling == "uniform":
        p_rarest, paths = 1.0 / N_CHOICES, 1
    elif cfg.sampling == "sandwich":
        p_rarest, paths = 1.0 - (1.0 - 1.0 / N_CHOICES) ** cfg.sandwich_random, 2 + cfg.sandwich_random
    else:
        raise ValueError(f"supernet.sampling must be one of {', '.join(SAMPLINGS)}, got {cfg.sampling!r}")
    per_layer = [steps * p_rarest] * N_LAYERS
    return {"weight_steps": steps, "paths_per_step": paths, "per_layer": per_layer, "min": float(min(per_layer))}


def epochs_for_updates(cfg, n_train: int, min_updates: float) -> int:
    """One-shot epochs giving the rarest choice ``min_updates`` expected updates (planning aid).

    Raises:
        ValueError: the sampling rule never updates some choice (``sandwich`` with no random path).
    """
    per_epoch = updates_per_choice(dataclasses.replace(cfg, warmup_epochs=1), n_train)["min"]
    if per_epoch <= 0:
        raise ValueError("this sampling rule never updates the rarest choice (sandwich_random = 0?)")
    return math.ceil(min_updates / per_epoch)
