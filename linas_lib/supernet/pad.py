"""PAD study (notebook 03): does annealing the Gumbel temperature close the gap between the
supernet and the network extracted from it?

From copies of the trained supernet, paired runs per seed -- the same train/val batches and
the same Gumbel noise stream -- of ``pad_steps`` full-mixture Gumbel bilevel steps (weights on
train, alpha on val) in two arms:

* ``annealed`` (PAD): tau from ``tau_max`` down to ``tau_min`` (:func:`~.model.gumbel_temperature`);
* ``constant``: tau held at ``pad_constant_tau`` for every step.

Before the first step, every ``pad_eval_every`` steps and after the last: the temperature
and the mean per-layer entropy of the joint alpha distribution (nats; ``log 21`` = uniform).
After the last step, on the WS split: the mixture's mIoU (noise-free) at the arm's own final
temperature (``tau_min`` for the annealed arm, so its two gaps coincide) and at ``tau_min``
(a temperature common to both arms, so the comparison is not only the temperature the
mixture is read at), the extracted argmax path's mIoU, and both gaps.
The earlier single-step gap (tau 1 soft vs annealed Gumbel, one batch of one image)
compared evaluation temperatures, not annealing.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import Supernet, argmax_choices, extract_decoder, gumbel_temperature
from .evaluate import evaluate_decoder, evaluate_logits
from ..keys import rng_for, torch_generator
from .train import TrainedSupernet, arch_step, search_optimizers, weight_step

PAD_ARMS = ("annealed", "constant")
PAD_STREAM = 0x0AD


def arm_temperature(arm: str, step: int, steps: int, cfg) -> float:
    """The Gumbel temperature of ``arm`` at ``step`` of ``steps`` (steps ``0 .. steps - 1`` are
    trained; the annealed arm's last trained step is at ``tau_min``, as in supernet training)."""
    if arm == "annealed":
        return gumbel_temperature(step, max(steps - 1, 1), cfg.tau_max, cfg.tau_min)
    if arm == "constant":
        return float(cfg.pad_constant_tau)
    raise ValueError(f"unknown PAD arm {arm!r}; expected one of {PAD_ARMS}")


def alpha_entropy(model: Supernet) -> float:
    """Mean over layers of the entropy (nats) of the joint op x width distribution."""
    with torch.no_grad():
        p = model.joint_probs().clamp_min(1e-30)
        return float(-(p * p.log()).sum(dim=1).mean())


def pad_study(ts: TrainedSupernet, seeds) -> tuple[list[dict], list[dict]]:
    """Both arms for every seed (see the module docstring).

    Returns:
        ``(curves, finals)``: one row per (arm, seed, evaluated step) with ``tau`` and
        ``alpha_entropy``; one row per (arm, seed) with the final mIoUs and gaps.
    """
    curves, finals = [], []
    for seed in seeds:
        for arm in PAD_ARMS:
            model, curve = _run_arm(ts, arm, int(seed))
            curves += curve
            finals.append(_final_row(ts, model, arm, int(seed)))
    return curves, finals


def _run_arm(ts: TrainedSupernet, arm: str, seed: int) -> tuple[Supernet, list[dict]]:
    cfg, steps = ts.cfg, ts.cfg.pad_steps
    train, val = ts.features["train"], ts.alpha_split
    model = ts.copy_model()
    gen = torch_generator(rng_for(seed, PAD_STREAM))
    rng = np.random.default_rng([seed, PAD_STREAM, 1])  # the same batches in both arms
    opt_w, opt_a = search_optimizers(model, cfg)
    every = cfg.pad_eval_every or max(steps // 4, 1)
    curve = [_curve_row(model, arm, seed, 0, arm_temperature(arm, 0, max(steps, 1), cfg))]
    for step in range(steps):
        tau = arm_temperature(arm, step, steps, cfg)
        n_t, n_v = min(cfg.pad_batch_size, len(train)), min(cfg.pad_batch_size, len(val))
        t_taps, t_masks = train.batch(rng.choice(len(train), n_t, replace=False))
        v_taps, v_masks = val.batch(rng.choice(len(val), n_v, replace=False))
        where = f"PAD study ({arm}, seed {seed}) step {step}"
        weight_step(model, opt_w, t_taps, t_masks, "gumbel", tau, gen, where)
        arch_step(model, opt_a, v_taps, v_masks, "gumbel", tau, gen, ts.latency, cfg.latency_lambda, where)
        if (step + 1) % every == 0 or step + 1 == steps:
            curve.append(_curve_row(model, arm, seed, step + 1, arm_temperature(arm, step + 1, steps, cfg)))
    return model, curve


def _curve_row(model: Supernet, arm: str, seed: int, step: int, tau: float) -> dict:
    return {"arm": arm, "seed": seed, "step": step, "tau": tau, "alpha_entropy": alpha_entropy(model)}


def _final_row(ts: TrainedSupernet, model: Supernet, arm: str, seed: int) -> dict:
    cfg, split = ts.cfg, ts.evaluator.split
    steps = max(cfg.pad_steps, 1)
    own_tau = arm_temperature(arm, steps, steps, cfg)
    own = _mixture_miou(model, own_tau, split, cfg.pad_batch_size)
    common = _mixture_miou(model, cfg.tau_min, split, cfg.pad_batch_size)
    argmax = argmax_choices(model.alpha_op.detach(), model.alpha_width.detach())
    extracted = evaluate_decoder(extract_decoder(model, argmax), split, cfg.pad_batch_size)
    return {"arm": arm, "seed": seed, "steps": cfg.pad_steps, "final_tau": own_tau,
            "supernet_miou": own, "supernet_miou_tau_min": common, "extracted_miou": extracted,
            "gap_miou": own - extracted, "gap_miou_tau_min": common - extracted,
            "alpha_entropy": alpha_entropy(model)}


def _mixture_miou(model: Supernet, tau: float, split, batch_size: int) -> float:
    return evaluate_logits(lambda taps: model(taps, mode="gumbel", tau=tau, noise=False), split, batch_size,
                           model=model)


def pad_figures(finals: list[dict]) -> dict:
    """``pad.<metric>.<arm>`` means over seeds and the paired annealed - constant differences
    of the absolute gaps with 95 % bootstrap CIs over seeds (NaN below 2 seeds)."""
    from ..search.experiment import mean_ci

    out = {}
    by_arm = {arm: sorted((r for r in finals if r["arm"] == arm), key=lambda r: r["seed"]) for arm in PAD_ARMS}
    for metric in ("gap_miou", "gap_miou_tau_min", "extracted_miou", "alpha_entropy"):
        for arm, rows in by_arm.items():
            out[f"pad.{metric}.{arm}"] = float(np.mean([r[metric] for r in rows])) if rows else float("nan")
    for metric in ("gap_miou", "gap_miou_tau_min"):
        diff = np.array([abs(a[metric]) - abs(c[metric]) for a, c in zip(by_arm["annealed"], by_arm["constant"])])
        low, high = mean_ci(diff)  # NaN below 2 seeds
        out[f"pad.abs_{metric}_diff"] = float(diff.mean()) if len(diff) else float("nan")
        out[f"pad.abs_{metric}_diff_ci95_low"], out[f"pad.abs_{metric}_diff_ci95_high"] = low, high
    out["pad.n_seeds"] = float(len(by_arm["annealed"]))
    return out
