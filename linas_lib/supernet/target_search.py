"""Target search study (notebook 03): one architecture distribution for every target (LINAS's
joint search) against one per target, and which targets a joint penalty listens to.

All arms search on the trained supernet -- the weight-sharing oracle notebook 04 validates --
with its weights frozen: the architecture logits start uniform and take
``target_search_steps`` steps on the alpha part of the val split (the profile's search mode,
``lr_alpha`` and ``latency_lambda``; the same batches for every arm of a seed). Arms:

* ``joint_ratio``: every target's overshoot summed as LINAS does, ``relu(E - B) / B``; its
  gradient is a target's LUT over its budget, so decoder-only edge targets, whose
  architectures span many times their budget, outweigh CPU targets timed end to end;
* ``joint_range``: the same targets, scale-free: ``relu(E - B) / span`` (the target's latency
  range over the space), so no target dominates by its units;
* ``per_target``: one run per target, with that target's scale-free penalty alone.

Per (arm, seed, target): the extracted architecture (argmax, exact ties broken at random),
its predicted latency against the budget, and its WS mIoU and crack IoU from the trained
supernet's own evaluator (the same for every arm). The joint arms also record each target's
norm of its own penalty term's gradient on the logits (before the optimiser rescales it)
over the sum of those norms, averaged over the steps where some target is over budget
(``active_steps``): the targets that steer the one shared distribution.

The seeds change the batch order, the sampled paths and the tie-breaking on one trained
supernet: their spread is the search's noise, not that of supernet training. The headline
comparison is ``per_target`` against ``joint_range``: each target's term is the same in both,
with the same lambda, so only sharing one distribution differs (``joint_ratio`` also differs
in the penalty's scale). An architecture over its budget can score more mIoU for free, so
the budget hit rate is compared beside it, and the mIoU also over the pairs where both arms
are within budget.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from ..keys import rng_for, torch_generator
from ..losses import latency_penalty
from ..space import arch_string
from .model import Supernet, argmax_choices, gumbel_temperature
from .train import LatencyTerms, TrainedSupernet, arch_step, search_optimizers

log = logging.getLogger(__name__)

TARGET_SEARCH_STREAM = 0x7A5


def subset(latency: LatencyTerms, targets: list[int], form: str) -> LatencyTerms:
    """The latency objective restricted to ``targets`` (indices), with the penalty ``form``."""
    idx = torch.as_tensor(targets, dtype=torch.long)
    pick = lambda t: None if t is None else t[idx]  # noqa: E731
    return dataclasses.replace(latency, table=pick(latency.table), fixed=pick(latency.fixed),
                               budgets=pick(latency.budgets), pair=pick(latency.pair),
                               names=tuple(latency.names[i] for i in targets), form=form)


def target_search(ts: TrainedSupernet, seeds, steps: int) -> tuple[list[dict], list[dict]]:
    """Every arm for every seed (see the module docstring).

    Returns:
        ``(rows, shares)``: one row per (arm, seed, target) with the architecture, its
        predicted latency, budget, WS scores; one row per (joint arm, seed, target) with the
        target's mean share of the penalty gradient.

    Raises:
        ValueError: ``steps`` below 1, no seeds, or a supernet trained without latency targets.
    """
    if steps < 1 or not len(seeds):
        raise ValueError(f"the target search needs >= 1 step and >= 1 seed (profile supernet.target_search_steps, "
                         f"supernet.target_search_seeds; steps 0 skips the study), got {steps} steps, seeds {list(seeds)}")
    if ts.latency is None:
        raise ValueError("the target search needs the supernet's latency targets; this one was trained without")
    if ts.cfg.alpha_val_share >= 1.0:
        log.warning("supernet.alpha_val_share is 1: the target search's alpha steps and its WS scores read the "
                    "same val images")
    names, every = list(ts.latency.names), list(range(len(ts.latency.names)))
    rows, shares = [], []
    for seed in seeds:
        for arm, form in (("joint_ratio", "ratio"), ("joint_range", "range")):
            model, share, active = _search(ts, subset(ts.latency, every, form), int(seed), steps)
            arch = argmax_choices(model.alpha_op, model.alpha_width, rng_for(seed, TARGET_SEARCH_STREAM + 1))
            rows += [_row(ts, arm, int(seed), t, arch) for t in every]
            shares += [{"arm": arm, "seed": int(seed), "target": n, "grad_share": float(s), "active_steps": active}
                       for n, s in zip(names, share)]
        for t in every:
            model, _, _ = _search(ts, subset(ts.latency, [t], "range"), int(seed), steps)
            arch = argmax_choices(model.alpha_op, model.alpha_width, rng_for(seed, TARGET_SEARCH_STREAM + 1))
            rows.append(_row(ts, "per_target", int(seed), t, arch))
    return rows, shares


def _search(ts: TrainedSupernet, latency: LatencyTerms, seed: int, steps: int) -> tuple[Supernet, np.ndarray, int]:
    """``steps`` alpha steps from uniform logits on frozen weights (a copy of the supernet).

    Returns:
        ``(model, shares, active_steps)``: the searched copy, each target's mean
        :func:`gradient_shares` over the steps where some target was over budget, and how many
        steps those were.
    """
    cfg, val = ts.cfg, ts.alpha_split
    model = ts.copy_model()
    with torch.no_grad():
        model.alpha_op.zero_()
        model.alpha_width.zero_()
    _, opt_a = search_optimizers(model, cfg)
    gen = torch_generator(rng_for(seed, TARGET_SEARCH_STREAM))
    rng = np.random.default_rng([seed, TARGET_SEARCH_STREAM, 1])  # the same batches in every arm
    shares = []
    for step in range(steps):
        tau = gumbel_temperature(step, max(steps - 1, 1), cfg.tau_max, cfg.tau_min) if cfg.search_mode == "gumbel" else 1.0
        taps, masks = val.batch(rng.choice(len(val), min(cfg.batch_size, len(val)), replace=False))
        shares.append(gradient_shares(model, latency))
        arch_step(model, opt_a, taps, masks, cfg.search_mode, tau, gen, latency, cfg.latency_lambda,
                  f"target search ({', '.join(latency.names)}, {latency.form}, seed {seed}) step {step}")
    active = [s for s in shares if s is not None]
    return model, (np.mean(active, axis=0) if active else np.full(len(latency.names), np.nan)), len(active)


def gradient_shares(model: Supernet, latency: LatencyTerms) -> np.ndarray | None:
    """Each target's share of the summed norms of its penalty term's gradient on the logits
    (None: no target over its budget, so no latency gradient at all)."""
    expected = latency.expected(model.joint_probs())
    spans = latency.spans()
    norms = []
    for t in range(len(latency.names)):
        term = latency_penalty(expected[t:t + 1], latency.budgets[t:t + 1], latency.form, spans[t:t + 1])
        grads = torch.autograd.grad(term, model.arch_parameters(), retain_graph=True, allow_unused=True)
        norms.append(float(torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None))))
    total = sum(norms)
    return np.asarray(norms) / total if total > 0 else None


def predicted_ms(latency: LatencyTerms, arch: np.ndarray) -> torch.Tensor:
    """``(n_targets,)`` predicted latency of one architecture (its one-hot expected latency)."""
    one_hot = torch.zeros(latency.table.shape[1:], dtype=latency.table.dtype, device=latency.table.device)
    one_hot[torch.arange(len(arch)), torch.as_tensor(arch)] = 1.0
    with torch.no_grad():
        return latency.expected(one_hot)


def _row(ts: TrainedSupernet, arm: str, seed: int, t: int, arch: np.ndarray) -> dict:
    predicted, budget = float(predicted_ms(ts.latency, arch)[t]), float(ts.latency.budgets[t])
    scores = ts.ws_scores(arch)
    return {"arm": arm, "seed": seed, "target": ts.latency.names[t], "architecture": arch_string(arch),
            "predicted_ms": predicted, "budget_ms": budget, "meets_budget": predicted <= budget,
            "ws_miou": float(scores["miou"][0]), "crack_iou": float(scores["crack_iou"][0])}


def target_search_figures(rows: list[dict], shares: list[dict]) -> dict:
    """``target_search.<metric>.<arm>`` over (seed, target); ``per_target`` minus ``joint_range``
    paired by (seed, target) -- WS mIoU, budget hit rate, and WS mIoU over the pairs where both
    are within budget -- as means over seeds with 95 % bootstrap CIs (NaN below 2 seeds); per
    joint arm the largest over targets of a target's gradient share averaged over seeds (NaN if
    no target was ever over budget)."""
    import pandas as pd

    from ..search.experiment import mean_ci

    frame, out = pd.DataFrame(rows), {}
    for arm, group in frame.groupby("arm", sort=False):
        out[f"target_search.meets_budget.{arm}"] = float(group.meets_budget.mean())
        out[f"target_search.ws_miou.{arm}"] = float(group.ws_miou.mean())
        out[f"target_search.crack_iou.{arm}"] = float(group.crack_iou.mean())
        out[f"target_search.distinct_archs.{arm}"] = float(group.groupby("seed").architecture.nunique().mean())
    paired = frame[frame.arm == "per_target"].merge(frame[frame.arm == "joint_range"], on=["seed", "target"],
                                                     suffixes=("", "_joint"))
    both = paired[paired.meets_budget & paired.meets_budget_joint]
    diffs = {"ws_miou_diff": paired.ws_miou - paired.ws_miou_joint,
             "meets_budget_diff": paired.meets_budget.astype(float) - paired.meets_budget_joint.astype(float),
             "ws_miou_diff_both_within": both.ws_miou - both.ws_miou_joint}
    for name, diff in diffs.items():
        per_seed = diff.groupby(paired.seed.loc[diff.index]).mean().to_numpy()
        low, high = mean_ci(per_seed)
        out[f"target_search.{name}.per_target_vs_joint_range"] = float(per_seed.mean()) if len(per_seed) else float("nan")
        out[f"target_search.{name}_ci95_low.per_target_vs_joint_range"] = low
        out[f"target_search.{name}_ci95_high.per_target_vs_joint_range"] = high
    out["target_search.n_pairs_both_within"] = float(len(both))
    share = pd.DataFrame(shares).groupby(["arm", "target"], sort=False).grad_share.mean()
    for arm in share.index.get_level_values(0).unique():
        out[f"target_search.grad_share_max.{arm}"] = float(share[arm].max())
    out["target_search.n_seeds"] = float(frame.seed.nunique())
    return out
