"""Supernet training and the differentiable search (DARTS bilevel, PAD, ProxylessNAS).

What :func:`train_supernet` does, epoch by epoch:

1. ``supernet.warmup_epochs`` epochs of the **one-shot phase**: weight steps on sampled
   paths, no architecture logits (:mod:`.oneshot`): ``sampling: uniform`` draws one
   (op, width) per layer uniformly and trains only that path (SPOS); ``sampling: sandwich``
   trains the largest, the smallest and ``sandwich_random`` uniform paths per step. The I2
   switches ``calr`` (step scaled by the path's complexity) and ``momentum_bins`` (one Adam
   state per complexity bin) apply to this phase. This is what makes weight-sharing
   evaluation meaningful: every candidate's weights see training and work inside many
   different paths; :func:`~.oneshot.updates_per_choice` (recorded in every history row)
   says how often the rarest candidate is expected to be updated, and ``choice_updates_min``
   how often it was.
2. ``supernet.epochs`` epochs of the **bilevel search** (DARTS): per train batch one
   weight step (train split, the single weight optimiser), then one architecture step on the
   next batch of the alpha part of the val split with
   ``loss = segmentation + lambda * sum_t relu(E[lat_t] - budget_t) / budget_t``. The mode
   (``supernet.search_mode``) decides what runs: ``binarised`` (ProxylessNAS: weight steps
   on a path sampled from p(op, w), alpha steps through the straight-through gate of the
   sampled path; memory of one path), ``gumbel`` (PAD: Gumbel-softmax mixture, temperature
   annealed from ``tau_max`` to ``tau_min`` over all search steps) or ``soft`` (DARTS
   mixture).

The val split is cut once (:func:`val_parts`): its first ``alpha_val_share`` of the images
(fixed order) are the ones alpha steps use; weight-sharing (WS) evaluation reads the
held-out rest (first ``ws_val_images`` of it), images neither the weights (train split) nor
alpha saw. ``alpha_val_share: 1.0`` keeps the old behaviour (both read the whole val split).
WS evaluation recalibrates a path's BN statistics on ``bn_recalib_batches`` train batches
first (:func:`~.evaluate.path_bn_recalibrated`) and leaves the supernet bit-identical.

BN statistics of the supernet's candidates are cumulative averages (momentum None), since
each candidate is updated only in the steps that sample it. Only weight steps (train split)
update them: an architecture step normalises with its val batch's statistics as before, but
its BN running statistics are restored afterwards (:func:`~.model.bn_statistics_kept`), so
the statistics the WS evaluator reads never absorbed val images. (BN in eval mode during
alpha steps was the alternative; it was not chosen because it would change what the alpha
gradient sees -- running statistics of candidates sampled a few times, or never, in place of
the batch statistics their weights are trained with.)
Weights: Adam (``lr_weights``; one per momentum bin in the one-shot phase when
``momentum_bins > 0``); logits: Adam (``lr_alpha``, betas (0.5, 0.999), weight decay 1e-3,
as in DARTS). A checkpoint is written after every epoch (or every ``checkpoint_every_s``
seconds) to ``cache_dir("supernet")`` under a hash of everything the result depends on
(:func:`supernet_key`); a stopped run resumes from it bit-identically: it holds the model,
every optimiser's state (Adam moments too, so the file is about three times the model's
size, more with momentum bins), the generators, the update counts and the history. The last
write of a finished run keeps only what its readers use (model, history, counts): the
optimisers' moments and the generators serve a resume only, and made a finished cpu run's
file 3.6 GB where its model is 0.6 GB. ``eval_checkpoints`` saves the model after those
one-shot weight-step counts beside it (:func:`supernet_at_steps`; ``snapshots_on_disk``
False replays to each count instead, for runs whose disk space is short).

``oneshot_ema > 0`` keeps an exponential moving average of the parameters over the one-shot
steps (``torch.optim.swa_utils.AveragedModel``; it starts at the first step's weights, without
bias correction, so choose a decay whose horizon ``1 / (1 - decay)`` steps is well inside the
phase). BN statistics are not averaged, so it requires ``bn_recalib_batches > 0`` (WS
evaluation re-estimates them per path). The average only observes: the one-shot steps are
those of the run without it. When the phase ends the parameters are replaced by their
average (the last one-shot history row already scores it), and a snapshot holds the average
as its model and the raw weights beside it (``raw_model``).

Named variants of the one-shot phase for the ranking study are :data:`VARIANTS`;
:func:`trained_supernet` takes one by name.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config import Profile, load_profile
from ..encoder.features import Features, FeatureSplit, run_features
from ..keys import (atomic_torch_save, atomic_write_json, content_hash, key_fields, load_checkpoint, load_json,
                    seeded_module)
from ..losses import PENALTY_FORMS, check_finite, latency_penalty, segmentation_terms
from ..paths import cache_dir
from ..space import OPS, WIDTHS, as_choices
from .evaluate import SCORES, WeightSharingEvaluator, evaluate_decoder
from .model import Supernet, argmax_choices, bn_statistics_kept, extract_decoder, gumbel_temperature
from .oneshot import OneShotRule, lr_scaled, one_shot_rule, one_shot_step, steps_per_epoch, touched, updates_per_choice
from .standalone import train_decoder

log = logging.getLogger(__name__)
SUPERNET_STREAM = 0x5E7
# Version of what a supernet checkpoint holds and how training runs; part of its cache key, so
# checkpoints of an older scheme are retrained, not loaded. 2: alpha steps keep BN statistics,
# the weight optimiser's state is saved, data enter the key by content. 3: one-shot rules
# (sampling, CaLR, momentum bins), val split cut for alpha / WS, update counts saved.
CHECKPOINT_SCHEMA = 3
# Variants of the one-shot phase compared by the ranking study: overrides of the profile's
# supernet section (the other settings, sandwich_random included, stay the profile's).
VARIANTS: dict[str, dict] = {
    "baseline": {"sampling": "uniform", "calr": False, "momentum_bins": 0},
    "sandwich": {"sampling": "sandwich", "calr": False, "momentum_bins": 0},
    "sandwich_calr": {"sampling": "sandwich", "calr": True, "momentum_bins": 0, "calr_search": True},
    "sandwich_momentum": {"sampling": "sandwich", "calr": False, "momentum_bins": 4},
    "i2": {"sampling": "sandwich", "calr": True, "momentum_bins": 4, "calr_search": True},
    # ablation: i2 with CaLR in the one-shot phase only (its one-shot phase is i2's, step for step)
    "i2_oneshot_calr": {"sampling": "sandwich", "calr": True, "momentum_bins": 4, "calr_search": False},
}


@dataclass(frozen=True)
class LatencyTerms:
    """The differentiable latency objective: LUT tensors, budgets and target names."""

    table: torch.Tensor  # (n_targets, 5, 21) ms
    fixed: torch.Tensor  # (n_targets,) ms
    budgets: torch.Tensor  # (n_targets,) ms
    names: tuple[str, ...]
    pair: torch.Tensor | None = None  # (n_targets, 4, 21, 21) ms (I4) or None
    form: str = "ratio"  # the penalty's form (supernet.latency_penalty, linas_lib.losses.PENALTY_FORMS)

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """``(n_targets,)`` expected latency (ms) under ``(5, 21)`` choice probabilities."""
        from ..latency.predict import expected_latency

        return expected_latency(probs, self.table, self.fixed, self.pair)

    def penalty(self, probs: torch.Tensor) -> torch.Tensor:
        """Overshoot of the budgets (see :func:`linas_lib.losses.latency_penalty`)."""
        return latency_penalty(self.expected(probs), self.budgets, self.form, self.spans())

    def spans(self) -> torch.Tensor:
        """``(n_targets,)`` latency range of the additive part over the space (ms): per layer the
        dearest minus the cheapest choice, summed (pair terms, a few ms, left out)."""
        return (self.table.amax(-1) - self.table.amin(-1)).sum(-1)

    def to(self, device) -> LatencyTerms:
        """The tables on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return LatencyTerms(move(self.table), move(self.fixed), move(self.budgets), self.names, move(self.pair),
                            self.form)

    def digest(self) -> str:
        """Hash of the tables and budgets (part of the supernet cache key)."""
        return content_hash({"names": list(self.names), "table": self.table, "fixed": self.fixed,
                             "budgets": self.budgets, "pair": self.pair})


def latency_terms(model, form: str = "ratio") -> LatencyTerms:
    """:class:`LatencyTerms` of a :class:`linas_lib.latency.predict.LatencyModel` with the penalty ``form``."""
    from ..latency.predict import lut_tensor

    table, fixed, pair = lut_tensor(model)
    budgets = torch.as_tensor(np.asarray(model.budgets_ms), dtype=torch.float32)
    if form not in PENALTY_FORMS:
        raise ValueError(f"supernet.latency_penalty must be one of {', '.join(PENALTY_FORMS)}, got {form!r}")
    return LatencyTerms(table, fixed, budgets, tuple(model.target_names), pair, form)


def search_latency_model(profile):
    """The latency model the search uses: every target of the profile, I4 interaction LUTs."""
    from ..latency.targets import latency_model

    return latency_model(profile, variant="interaction", progress=False)


# ------------------------------------------------------------------ one training step

SAMPLED_PATH_MODES = ("uniform", "binarised")  # weight steps on one sampled path (the others: a mixture)


def weight_step(model: Supernet, optimizer, taps, masks, mode: str, tau: float, gen: torch.Generator,
                where: str, optimizer_of=None, lr_scale_of=None) -> float:
    """One step on the shared weights; returns the segmentation loss.

    ``optimizer_of(path)``, when given, picks the optimiser of a sampled path (``uniform`` and
    ``binarised`` modes: the momentum bin of I2); ``optimizer`` serves every other step.
    ``lr_scale_of(path)``, when given, scales a sampled path's learning rate for its step (I2
    CaLR, as in a uniform one-shot step).
    """
    model.train()
    scale = 1.0
    if mode in SAMPLED_PATH_MODES:
        path = model.sample_path(mode, gen)
        logits = model.forward_arch(taps, path)
        if optimizer_of is not None:
            optimizer = optimizer_of(path)
        if lr_scale_of is not None:
            scale = lr_scale_of(path)
    else:
        logits = model(taps, mode=mode, tau=tau, generator=gen)
    terms = segmentation_terms(logits, masks)
    check_finite(terms, where)
    loss = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with lr_scaled(optimizer, scale):
        optimizer.step()
    return float(loss.detach())


def arch_step(model: Supernet, optimizer, taps, masks, mode: str, tau: float, gen: torch.Generator,
              latency: LatencyTerms | None, lam: float, where: str) -> dict[str, float]:
    """One step on the architecture logits (val batch): segmentation + lambda * latency penalty.

    BN normalises with the batch's statistics (train mode) but its running statistics are left
    as they were (see the module docstring); only the logits and ``optimizer`` change.
    """
    model.train()
    # restored only after the backward: autograd checks the buffers' versions
    with bn_statistics_kept(model):
        logits = model(taps, mode=mode, tau=tau, generator=gen)
        terms = segmentation_terms(logits, masks)
        if latency is not None and lam > 0:
            terms["latency"] = lam * latency.penalty(model.joint_probs())
        check_finite(terms, where)
        loss = sum(terms.values())
        grads = torch.autograd.grad(loss, model.arch_parameters(), allow_unused=True)
    for param, grad in zip(model.arch_parameters(), grads):
        param.grad = grad
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {k: float(v.detach()) for k, v in terms.items()}


# ------------------------------------------------------------------ the training loop


@dataclass
class SearchState:
    """Everything a resumable training run carries between epochs.

    Attributes:
        model, opt_w, opt_a: the supernet, its weight optimiser (both phases without momentum
            bins; with them, only the search phase's continuous modes) and its logit optimiser.
        gen, rng: the run's generators (paths and noise; batch order).
        history: one row per finished epoch.
        rule: the one-shot phase's rule (derived from the settings, not saved).
        opt_bins: one weight optimiser per momentum bin, serving the one-shot phase and the search
            phase's sampled-path steps (empty: ``opt_w`` serves both).
        weight_steps: one-shot weight steps taken.
        choice_updates: ``(n_layers, n_choices)`` one-shot weight steps that updated each candidate.
        ema: the moving average of the one-shot parameters (None: ``oneshot_ema`` is 0).
    """

    model: Supernet
    opt_w: torch.optim.Optimizer
    opt_a: torch.optim.Optimizer
    gen: torch.Generator
    rng: np.random.Generator
    history: list[dict] = field(default_factory=list)
    rule: OneShotRule | None = None
    opt_bins: list[torch.optim.Optimizer] = field(default_factory=list)
    weight_steps: int = 0
    choice_updates: np.ndarray | None = None
    ema: AveragedModel | None = None

    def bin_optimizer_of(self):
        """``path -> its momentum bin's optimiser`` for the search phase's sampled-path steps
        (None without bins: the weight optimiser serves)."""
        if not self.opt_bins:
            return None
        return lambda path: self.opt_bins[self.rule.bin_of(path)]

    def one_shot_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers of one-shot steps: one per momentum bin, or the weight optimiser."""
        return self.opt_bins or [self.opt_w]

    def count(self, paths: list[np.ndarray]) -> None:
        """Record one one-shot weight step on ``paths``."""
        mask = touched(paths, len(self.model.layers[0].candidates))
        self.choice_updates = mask if self.choice_updates is None else self.choice_updates + mask
        self.weight_steps += 1
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def averaged_state(self) -> dict:
        """The model's state with the parameters replaced by their one-shot average (no average: the model's)."""
        state = self.model.state_dict()
        if self.ema is not None:
            state.update({name: p.detach().clone() for name, p in self.ema.module.named_parameters()})
        return state

    def end_one_shot(self) -> None:
        """The one-shot phase is over: the parameters become their average (no average: nothing changes)."""
        if self.ema is not None:
            self.model.load_state_dict(self.averaged_state())

    def checkpoint(self, key: str, done: bool) -> dict:
        """Serializable state: model, counts and history; unless ``done``, every optimiser, the
        generators and the one-shot average too (a resume is bit-identical)."""
        finished = {"key": key, "done": done, "model": self.model.state_dict(), "history": self.history,
                    "weight_steps": self.weight_steps, "choice_updates": self.choice_updates}
        if done:
            return finished
        return {**finished, "opt_w": self.opt_w.state_dict(), "opt_a": self.opt_a.state_dict(),
                "opt_bins": [o.state_dict() for o in self.opt_bins], "gen": self.gen.get_state(),
                "rng": self.rng.bit_generator.state, "ema": self.ema.state_dict() if self.ema is not None else None}

    def restore(self, state: dict) -> None:
        """Load a :meth:`checkpoint` (of a finished run: its model, counts and history only)."""
        self.model.load_state_dict(state["model"])
        self.history = list(state["history"])
        self.weight_steps = int(state["weight_steps"])
        self.choice_updates = state["choice_updates"]
        if state["done"]:
            return
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_a.load_state_dict(state["opt_a"])
        for opt, saved in zip(self.opt_bins, state["opt_bins"], strict=True):
            opt.load_state_dict(saved)
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def search_optimizers(model: Supernet, cfg) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The weights' and alpha's optimisers of a search run (the PAD study uses the same)."""
    opt_w = torch.optim.Adam(model.weight_parameters(), lr=cfg.lr_weights)
    opt_a = torch.optim.Adam(model.arch_parameters(), lr=cfg.lr_alpha, betas=(0.5, 0.999), weight_decay=1e-3)
    return opt_w, opt_a


def new_search_state(cfg, seed: int, device: str = "cpu") -> SearchState:
    """Model (initialised from the run's generator, on ``device``), optimisers and generators of a run.

    The generators stay on the CPU (paths and Gumbel noise are tiny), so a seed gives the
    same sampled paths on every device. ``cfg.replica`` > 0 draws them from another stream of
    the seed (a training replica on the same data).
    """
    rng = np.random.default_rng([seed, SUPERNET_STREAM, cfg.replica] if cfg.replica else [seed, SUPERNET_STREAM])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    model = seeded_module(Supernet, gen).to(device)
    opt_w, opt_a = search_optimizers(model, cfg)
    opt_bins = [torch.optim.Adam(model.weight_parameters(), lr=cfg.lr_weights) for _ in range(cfg.momentum_bins)]
    if cfg.oneshot_ema > 0 and cfg.bn_recalib_batches == 0:
        raise ValueError("supernet.oneshot_ema needs supernet.bn_recalib_batches > 0: the average's BN "
                         "statistics are re-estimated per path, not averaged")
    return SearchState(model, opt_w, opt_a, gen, rng, rule=one_shot_rule(cfg, model), opt_bins=opt_bins,
                       ema=one_shot_average(model, cfg.oneshot_ema if cfg.warmup_epochs > 0 else 0.0))


def one_shot_average(model: Supernet, decay: float) -> AveragedModel | None:
    """The moving average of ``model``'s parameters with ``decay`` per one-shot step (0: None).

    Raises:
        ValueError: ``decay`` outside ``[0, 1)``.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"supernet.oneshot_ema must lie in [0, 1) (0: no average), got {decay}")
    if decay == 0.0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def run_epoch(state: SearchState, epoch: int, cfg, train: FeatureSplit, val: FeatureSplit,
              latency: LatencyTerms | None, ws: WeightSharingEvaluator, on_step=None) -> dict | None:
    """One epoch (one-shot or search, by index); returns its history row.

    Args:
        state: the run (changed in place).
        epoch: 0-based epoch index; the first ``cfg.warmup_epochs`` are the one-shot phase.
        cfg: the profile's ``supernet`` section.
        train: weight steps' split.
        val: the alpha steps' part of the val split.
        latency: the latency objective (None: no latency term).
        ws: scores the argmax path for the history row (a fresh evaluator: no memo across epochs).
        on_step: called with ``state`` after every one-shot weight step; True stops the epoch.

    Returns:
        The history row, or None when ``on_step`` stopped the epoch.
    """
    start = time.perf_counter()
    # the val order is drawn in every epoch (one-shot ones too), so the batch streams do not
    # depend on the phase
    val_batches = list(val.batches(cfg.batch_size, state.rng))
    if epoch < cfg.warmup_epochs:
        w_losses = _one_shot_epoch(state, epoch, cfg, train, on_step)
        if w_losses is None:
            return None
        if epoch == cfg.warmup_epochs - 1:
            state.end_one_shot()
        return _history_row(state, epoch, "warmup", cfg.sampling, 1.0, w_losses, [], latency, ws, cfg, len(train),
                            time.perf_counter() - start)
    mode, n_batches = cfg.search_mode, steps_per_epoch(len(train), cfg.batch_size)
    w_losses, a_terms, tau, optimizer_of = [], [], 1.0, state.bin_optimizer_of()
    for step, (taps, masks) in enumerate(train.batches(cfg.batch_size, state.rng)):
        if mode == "gumbel":
            t = (epoch - cfg.warmup_epochs) * n_batches + step
            tau = gumbel_temperature(t, max(cfg.epochs * n_batches - 1, 1), cfg.tau_max, cfg.tau_min)
        where = f"supernet epoch {epoch} step {step} ({mode})"
        w_losses.append(weight_step(state.model, state.opt_w, taps, masks, mode, tau, state.gen, where, optimizer_of,
                                    state.rule.scale if state.rule.calr and cfg.calr_search else None))
        v_taps, v_masks = val_batches[step % len(val_batches)]
        a_terms.append(arch_step(state.model, state.opt_a, v_taps, v_masks, mode, tau, state.gen, latency,
                                 cfg.latency_lambda, where + " alpha"))
    return _history_row(state, epoch, "search", mode, tau, w_losses, a_terms, latency, ws, cfg, len(train),
                        time.perf_counter() - start)


def _one_shot_epoch(state: SearchState, epoch: int, cfg, train: FeatureSplit, on_step) -> list[float] | None:
    """The weight steps of one one-shot epoch; None when ``on_step`` stopped it."""
    losses = []
    for step, (taps, masks) in enumerate(train.batches(cfg.batch_size, state.rng)):
        where = f"supernet epoch {epoch} step {step} ({cfg.sampling})"
        loss, paths = one_shot_step(state.model, state.one_shot_optimizers(), state.rule, taps, masks, state.gen,
                                    where)
        state.count(paths)
        losses.append(loss)
        if on_step is not None and on_step(state):
            return None
    return losses


def _history_row(state: SearchState, epoch: int, phase: str, mode: str, tau: float, w_losses, a_terms, latency,
                 ws: WeightSharingEvaluator, cfg, n_train: int, seconds: float) -> dict:
    """Per-epoch record: losses, probabilities, expected latency, WS mIoU of the argmax path, update counts."""
    model = state.model
    with torch.no_grad():
        p_op = model.alpha_op.softmax(-1).cpu().numpy()
        p_w = model.alpha_width.softmax(-1).cpu().numpy()
        expected = latency.expected(model.joint_probs()).cpu().numpy() if latency is not None else np.zeros(0)
    argmax = argmax_choices(p_op, p_w)
    row = {
        "epoch": epoch + 1, "phase": phase, "mode": mode, "tau": tau,
        "train_loss": float(np.mean(w_losses)), "seconds": seconds, "ws_miou_argmax": ws.evaluate_one(argmax),
        "p_op": p_op.tolist(), "p_width": p_w.tolist(), "argmax": argmax.tolist(),
        "expected_ms": dict(zip(latency.names, expected.tolist())) if latency is not None else {},
        "weight_steps": state.weight_steps,
        "choice_updates_min": int(state.choice_updates.min()) if state.choice_updates is not None else 0,
        "updates_per_choice": updates_per_choice(cfg, n_train)["min"],
    }
    for name in ("ce", "dice", "boundary", "latency"):
        values = [t[name] for t in a_terms if name in t]
        row[f"val_{name}"] = float(np.mean(values)) if values else None
    return row


def val_parts(val: FeatureSplit, share: float) -> tuple[FeatureSplit, FeatureSplit]:
    """``(alpha part, held-out part)`` of the val split: its first ``share`` of the images, in
    order, and the rest. ``share`` 1.0 gives ``(val, val)`` (the old behaviour).

    The alpha part has ``round(share * n)`` images, at least 1 and at most ``n - 1``.

    Raises:
        ValueError: ``share`` outside ``(0, 1]``, or a split too small to cut.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"supernet.alpha_val_share must lie in (0, 1], got {share}")
    if share == 1.0:
        return val, val
    n = len(val)
    if n < 2:
        raise ValueError(f"supernet.alpha_val_share {share} needs >= 2 val images, the split has {n}")
    cut = min(max(int(share * n + 0.5), 1), n - 1)
    return _images(val, 0, cut), _images(val, cut, n)


def _images(split: FeatureSplit, lo: int, hi: int) -> FeatureSplit:
    """Images ``lo:hi`` of a split."""
    return FeatureSplit(tuple(t[lo:hi] for t in split.taps), split.masks[lo:hi], tuple(split.names[lo:hi]))


def ws_evaluator(model: Supernet, cfg, train: FeatureSplit, val: FeatureSplit) -> WeightSharingEvaluator:
    """The weight-sharing evaluator of a run: the held-out val images (first ``ws_val_images``),
    BN recalibrated on ``bn_recalib_batches`` train batches."""
    held_out = val_parts(val, cfg.alpha_val_share)[1].subset(cfg.ws_val_images)
    return WeightSharingEvaluator(model, held_out, cfg.batch_size, recalib=train,
                                  recalib_batches=cfg.bn_recalib_batches)


def snapshot_key(key: str, steps: int) -> str:
    """Content key of the supernet of run ``key`` after ``steps`` one-shot weight steps."""
    return content_hash({"supernet": key, "weight_steps": int(steps)})


def snapshot_path(folder: Path, key: str, steps: int) -> Path:
    """File of a :func:`snapshot_key` snapshot, beside the run's checkpoint."""
    return Path(folder) / f"supernet_{key}_steps{int(steps)}.pt"


def _snapshot_hook(steps, folder: Path | None, key: str, stop_after: int | None):
    """``on_step`` of :func:`run_epoch`: saves the wanted snapshots, stops after ``stop_after`` steps."""
    wanted = {int(s) for s in steps} | ({int(stop_after)} if stop_after is not None else set())

    def hook(state: SearchState) -> bool:
        n = state.weight_steps
        if folder is not None and n in wanted and not snapshot_path(folder, key, n).is_file():
            atomic_torch_save(snapshot_of(state, key), snapshot_path(folder, key, n))
        return stop_after is not None and n >= stop_after

    return hook


def snapshot_of(state: SearchState, key: str) -> dict:
    """The snapshot of run ``key`` now: its averaged weights as ``model``, with a one-shot
    average its raw weights as ``raw_model``, its history and update counts."""
    raw = {"raw_model": state.model.state_dict()} if state.ema is not None else {}
    return {"key": snapshot_key(key, state.weight_steps), "weight_steps": state.weight_steps,
            "model": state.averaged_state(), "history": list(state.history),
            "choice_updates": state.choice_updates, **raw}


def train_supernet(cfg, seed: int, train: FeatureSplit, val: FeatureSplit, latency: LatencyTerms | None,
                   checkpoint: Path | None = None, key: str = "", snapshot_dir: Path | None = None,
                   stop_after_steps: int | None = None, snapshot_key_of: str = "") -> SearchState:
    """One-shot phase then search (see the module docstring), resuming from ``checkpoint`` if it matches ``key``.

    Args:
        cfg: the profile's ``supernet`` section.
        seed: run seed (initialisation, shuffling, sampled paths, Gumbel noise; with
            ``cfg.replica``, which stream of it).
        train, val: cached feature splits (weights on train; logits on the alpha part of val,
            WS evaluation on the held-out part, :func:`val_parts`).
            The model runs on the device of the feature splits.
        latency: the latency objective (None: no latency term).
        checkpoint: file written after every epoch (None: no checkpoints).
        key: identifies the run; a checkpoint with another key is ignored.
        snapshot_dir: folder of the ``eval_checkpoints`` snapshots (default: the checkpoint's
            folder; None without a checkpoint: none saved).
        stop_after_steps: stop once this many one-shot weight steps are done (its snapshot
            saved); the run's checkpoint is then not written.
        snapshot_key_of: the run key the snapshots are saved under (empty: ``key``); a run
            whose one-shot phase is another run's (:func:`oneshot_key`) shares its snapshots.

    Returns:
        The final :class:`SearchState` (its ``history`` has one row per finished epoch).
    """
    state = new_search_state(cfg, seed, str(train.masks.device))
    if stop_after_steps is None:
        saved = load_checkpoint(checkpoint, key, "supernet checkpoint")
        if saved is not None:
            state.restore(saved)
    else:
        checkpoint = None  # a partial run never overwrites the run's checkpoint
    alpha_val = val_parts(val, cfg.alpha_val_share)[0]
    folder = snapshot_dir if snapshot_dir is not None else (checkpoint.parent if checkpoint is not None else None)
    if not cfg.snapshots_on_disk:
        folder = None
    hook = _snapshot_hook(cfg.eval_checkpoints, folder, snapshot_key_of or key, stop_after_steps)
    total, last_save = cfg.warmup_epochs + cfg.epochs, time.monotonic()
    for epoch in range(len(state.history), total):
        row = run_epoch(state, epoch, cfg, train, alpha_val, latency, ws_evaluator(state.model, cfg, train, val), hook)
        if row is None:
            return state
        state.history.append(row)
        log.info("supernet epoch %d: %s", epoch + 1, {k: row[k] for k in ("train_loss", "ws_miou_argmax")})
        done = epoch + 1 == total
        if checkpoint is not None and (done or time.monotonic() - last_save >= cfg.checkpoint_every_s):
            atomic_torch_save(state.checkpoint(key, done), checkpoint)
            last_save = time.monotonic()
    return state


# ------------------------------------------------------------------ the cached, trained supernet


@dataclass
class TrainedSupernet:
    """A trained supernet with its history and the handles later stages use.

    Attributes:
        model: the :class:`~linas_lib.supernet.model.Supernet` (eval mode).
        history: one dict per epoch (see :func:`run_epoch`).
        features: the cached features it was trained on.
        cfg: the ``supernet`` profile section (with the variant's overrides, if any).
        latency: the latency objective used by the search.
        key: cache key (hash of data, encoder weights, LUTs, settings and seed; for a
            :func:`supernet_at_steps` snapshot, the snapshot's key; for its raw weights, one
            derived from it).
        variant: the :data:`VARIANTS` name it was trained with (None: the profile's own settings).
        weight_steps: one-shot weight steps behind it (None: the whole run).
    """

    model: Supernet
    history: list[dict]
    features: Features
    cfg: object
    latency: LatencyTerms | None
    key: str
    variant: str | None = None
    weight_steps: int | None = None

    @property
    def alpha_op(self) -> np.ndarray:
        """``(5, 7)`` op logits."""
        return self.model.alpha_op.detach().cpu().numpy().copy()

    @property
    def alpha_width(self) -> np.ndarray:
        """``(5, 3)`` width logits."""
        return self.model.alpha_width.detach().cpu().numpy().copy()

    def joint_probs(self) -> np.ndarray:
        """``(5, 21)`` joint ``p(op, w)`` per layer."""
        with torch.no_grad():
            return self.model.joint_probs().cpu().numpy()

    def argmax(self) -> np.ndarray:
        """The extracted architecture (argmax op and width per layer)."""
        return argmax_choices(self.alpha_op, self.alpha_width)

    @property
    def alpha_split(self) -> FeatureSplit:
        """The part of the val split that architecture steps use (:func:`val_parts`)."""
        return val_parts(self.features["val"], self.cfg.alpha_val_share)[0]

    @cached_property
    def weights_digest(self) -> str:
        """Content hash of the model's parameters and buffers (logits and BN statistics included).

        :attr:`key` hashes what training depends on, not what it produced: the same key trained
        on another CPU ends with other weights (floating-point reductions differ), so a cache of
        results read off the weights (the search's WS accuracies) is keyed by this digest too.
        WS evaluation leaves the model bit-identical, so computing it late changes nothing.
        """
        return content_hash(self.model.state_dict())

    @cached_property
    def evaluator(self) -> WeightSharingEvaluator:
        """Weight-sharing evaluator on the held-out val images (first ``ws_val_images``), BN
        recalibrated per architecture on ``bn_recalib_batches`` train batches."""
        return ws_evaluator(self.model, self.cfg, self.features["train"], self.features["val"])

    def ws_scores(self, choices) -> dict[str, np.ndarray]:
        """WS ``{"miou": (n,), "crack_iou": (n,), "loss": (n,)}`` of architectures ``(n, 5)`` (or one
        ``(5,)``), entry ``i`` for architecture ``i`` (memoised by :attr:`evaluator`).

        A table of architectures ``(n, 5)`` is also cached on disk (``cache_dir("ws_scores")``),
        keyed by :attr:`key`, :attr:`weights_digest`, the val split's content, the
        architectures, the torch version and the device type (:data:`WS_SCORES_SCHEMA`):
        scoring 04's 42 curve snapshots again took 49 of its 58 minutes. Read back, the numbers
        are the computed ones to every digit.
        """
        arr = np.asarray(choices, dtype=np.int64)
        if arr.ndim != 2:
            return self.evaluator.scores(arr)
        key = content_hash({"schema": WS_SCORES_SCHEMA, "supernet": self.key, "weights": self.weights_digest,
                            "val": self._val_digest, "choices": arr, "torch": torch.__version__,
                            "device": next(self.model.parameters()).device.type})
        path = cache_dir("ws_scores") / f"scores_{key}.json"
        saved = _saved_scores(path, key, len(arr))
        if saved is not None:
            return saved
        scores = self.evaluator.scores(arr)
        try:
            atomic_write_json(path, {"key": key, "scores": {k: v.tolist() for k, v in scores.items()}})
        except OSError as err:  # the scores stand; only their cache is lost
            log.warning("WS scores not cached: %s", err)
        return scores

    @cached_property
    def _val_digest(self) -> str:
        """:func:`dataset_digest_of` the val split (hashed once per supernet)."""
        return dataset_digest_of(self.features["val"])

    def feature_batch(self, n: int) -> tuple[torch.Tensor, ...]:
        """Float32 taps of the first ``n`` train images (for zero-cost proxies)."""
        train = self.features["train"]
        return train.batch(np.arange(min(n, len(train))))[0]

    def finetune_and_evaluate(self, choices, epochs: int, rng: np.random.Generator) -> float:
        """Multi-fidelity score: the path's weights fine-tuned ``epochs`` on train, mIoU on the WS split."""
        decoder = extract_decoder(self.model, choices)
        train_decoder(decoder, self.features["train"], epochs, self.cfg.standalone_lr, self.cfg.batch_size, rng,
                      label=f"fine-tune of {as_choices(choices).tolist()}")
        return evaluate_decoder(decoder, self.evaluator.split, self.cfg.batch_size)

    def copy_model(self) -> Supernet:
        """A deep copy of the supernet (for experiments that train it further)."""
        return copy.deepcopy(self.model)


# Bump when WS evaluation changes the numbers it returns (evaluate.WeightSharingEvaluator.scores_one,
# the loss, the meter, BN recalibration, forward_arch): cached table scores are then recomputed.
WS_SCORES_SCHEMA = 1


def _saved_scores(path: Path, key: str, n: int) -> dict[str, np.ndarray] | None:
    """The cached WS scores of ``path`` (None: absent; unreadable or not of ``key``: logged, None)."""
    if not path.is_file():
        return None
    try:
        saved = load_json(path)
        scores = {k: np.asarray(v, dtype=np.float64) for k, v in saved["scores"].items()}
        if saved["key"] != key or set(scores) != set(SCORES) or any(v.shape != (n,) for v in scores.values()):
            raise ValueError("another key, or scores of another shape")
        if any(x is None for v in saved["scores"].values() for x in v):
            raise ValueError("a null score")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("cached WS scores %s unreadable (%s); scoring again", path, err)
        return None
    return scores


def supernet_key(profile, seed: int, features: Features, latency: LatencyTerms | None) -> str:
    """Hash of everything a trained supernet depends on.

    The ``supernet`` settings enter by :func:`~linas_lib.keys.key_fields`: every field of
    :class:`~linas_lib.config.SupernetConfig` except those declared ``metadata={"key": False}``
    (the standalone, PAD-gap and measurement settings, which later experiments read but
    training does not; the snapshot steps and the checkpoint interval, which change what is
    saved, not what is trained). BN recalibration enters: it changes WS scores, which the
    search caches under this key and the trained weights' digest
    (:attr:`TrainedSupernet.weights_digest`, :func:`~linas_lib.search.report.run_folder`).
    With momentum bins the key names their step rule (the mean of the bins' proposals since
    9eb0c58), and with CaLR its step rule: under the sandwich rule each parameter's move
    scaled, not each path's loss (a uniform step's learning rate was always scaled); and the
    search phase's sampled-path weight steps scaled too (before, CaLR applied to the one-shot
    phase only; only search modes that sample a path have such steps). ``calr_search`` False
    (CaLR in the one-shot phase only) is named in the key as such, so it never loads a
    checkpoint of the rule before 230b5bf, trained elsewhere. A supernet cached by an older
    rule is trained again; keys without either are unchanged.
    """
    cfg = profile.supernet
    bins = {"bin_steps": "mean"} if cfg.momentum_bins else {}
    calr = {"calr_step": "per_parameter"} if cfg.calr and cfg.sampling != "uniform" else {}
    if cfg.calr and cfg.epochs > 0 and cfg.search_mode in SAMPLED_PATH_MODES:
        calr["calr_search_steps"] = bool(cfg.calr_search)
    return content_hash({
        **bins, **calr, "schema": CHECKPOINT_SCHEMA, "supernet": key_fields(profile.supernet),
        "weights": features.weights.weights_id, "seed": seed,
        "train": features["train"].names, "val": features["val"].names,
        "data": [dataset_digest_of(features[s]) for s in ("train", "val")],
        "latency": latency.digest() if latency is not None else None,
    })


def dataset_digest_of(split: FeatureSplit) -> str:
    """Content hash of a cached split: its names and every byte (with dtype and shape) of its
    masks and of the encoder taps the supernet trains on.

    The taps enter too: names, masks and the encoder's weights id do not pin the images (a
    change of pre-processing or of an image alone keeps them), and hashing them costs about a
    second per GB.
    """
    return content_hash({"names": list(split.names), "masks": split.masks, "taps": list(split.taps)})


_MEMO: dict[str, TrainedSupernet] = {}  # by key: a run's, a snapshot's, a snapshot's raw weights
# Trained supernets kept in memory, the most recently used; older ones are read again from the
# disk cache when asked for. Unbounded, 04's five variants and its curve's 28 snapshots (about
# 0.7 GB each) filled 24 GB and the kernel was killed.
MEMO_LIMIT = 4


def _remember(key: str, trained: TrainedSupernet) -> None:
    """Keep ``trained`` in :data:`_MEMO`, dropping the least recently used beyond :data:`MEMO_LIMIT`."""
    _MEMO[key] = trained
    while len(_MEMO) > MEMO_LIMIT:
        del _MEMO[next(iter(_MEMO))]


def _recall(key: str) -> TrainedSupernet | None:
    """The memoised supernet of ``key`` (now the most recently used), or None."""
    trained = _MEMO.pop(key, None)
    if trained is not None:
        _MEMO[key] = trained
    return trained


def variant_config(cfg, variant: str | None):
    """The ``supernet`` section with a :data:`VARIANTS` entry's overrides (None: ``cfg`` itself).

    Raises:
        ValueError: an unknown variant name.
    """
    if variant is None:
        return cfg
    if variant not in VARIANTS:
        raise ValueError(f"unknown supernet variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return dataclasses.replace(cfg, **VARIANTS[variant])


def variant_profile(profile, variant: str | None):
    """The profile (loaded if given by name) with its supernet section set to ``variant``'s settings."""
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    return dataclasses.replace(profile, supernet=variant_config(profile.supernet, variant))


def oneshot_key(profile, seed: int, features: Features | None = None, latency: LatencyTerms | None = None) -> str:
    """The key of the run whose one-shot phase is this run's, step for step: settings that act in
    the search phase only and were added after snapshots existed (``calr_search``) take their
    defaults, so the ablation ``i2_oneshot_calr`` reads and writes i2's snapshots. ``features``
    and ``latency``: the run's own (:func:`_run_inputs`), when the caller has them already."""
    defaults = {"calr_search": True}
    profile = dataclasses.replace(profile, supernet=dataclasses.replace(profile.supernet, **defaults))
    if features is None:
        return _run_inputs(profile, seed)[0]
    return supernet_key(profile, seed, features, latency)


def _run_inputs(profile, seed: int) -> tuple[str, Features, LatencyTerms]:
    """``(supernet key, features, latency terms)`` of a run, on the run's device."""
    device = run_device(profile)
    features = run_features(profile, seed)
    latency = latency_terms(search_latency_model(profile), profile.supernet.latency_penalty)
    key = supernet_key(profile, seed, features, latency)
    return key, features.to(device), latency.to(device)


def trained_supernet(profile, seed: int, variant: str | None = None) -> TrainedSupernet:
    """The run's trained supernet: from memory, from the disk cache, or trained now (resumable).

    Args:
        profile: the run's profile (or its name / YAML path).
        seed: run seed.
        variant: a :data:`VARIANTS` name (the profile's supernet section with that variant's
            overrides) or None (the profile's own settings). Runs are cached by content key,
            so a variant whose settings equal the profile's is the same trained supernet.
    """
    profile = variant_profile(profile, variant)
    key, features, latency = _run_inputs(profile, seed)
    trained = _recall(key)
    if trained is None:
        path = cache_dir("supernet") / f"supernet_{key}.pt"
        state = train_supernet(profile.supernet, seed, features["train"], features["val"], latency, path, key,
                               snapshot_key_of=oneshot_key(profile, seed, features, latency))
        state.model.eval()
        trained = TrainedSupernet(state.model, state.history, features, profile.supernet, latency, key)
        _remember(key, trained)
    return _with_settings(trained, profile.supernet, variant)


def _with_settings(trained: TrainedSupernet, cfg, variant: str | None) -> TrainedSupernet:
    """``trained`` carrying ``cfg`` and ``variant``: a shallow copy (same model, same evaluator)
    when they differ only outside the key (standalone, PAD gap, ...)."""
    if trained.cfg == cfg and trained.variant == variant:
        return trained
    trained = copy.copy(trained)
    trained.cfg, trained.variant = cfg, variant
    return trained


def supernet_at_steps(profile, seed: int, steps: int, variant: str | None = None, raw: bool = False) -> TrainedSupernet:
    """The supernet of a run after ``steps`` one-shot weight steps (tau against training steps).

    Read from the snapshot the run saved (``eval_checkpoints``; a run whose one-shot phase is
    another's saves under that run's key, :func:`oneshot_key`); when absent, the run is
    replayed from its start up to ``steps`` (same seed, same steps: the same weights) and the
    snapshot saved, without touching the run's own checkpoint. Its logits are still the
    initial (uniform) ones -- the one-shot phase does not train them -- and its
    :attr:`~TrainedSupernet.evaluator` reads the held-out images as the trained supernet's does.

    Args:
        profile: the run's profile (or its name / YAML path).
        seed: run seed.
        steps: one-shot weight steps, ``1 .. warmup_epochs * steps per epoch``.
        variant: as in :func:`trained_supernet`.
        raw: the one-shot weights themselves, not their moving average (``supernet.oneshot_ema``;
            without one the two are the same).

    Raises:
        ValueError: ``steps`` outside the one-shot phase.
    """
    profile = variant_profile(profile, variant)
    cfg = profile.supernet
    _, features, latency = _run_inputs(profile, seed)
    key = oneshot_key(profile, seed, features, latency)
    total = updates_per_choice(cfg, len(features["train"]))["weight_steps"]
    if not 1 <= int(steps) <= total:
        raise ValueError(f"steps must lie in 1..{total} (the one-shot phase of this profile), got {steps}")
    skey = snapshot_key(key, steps)
    # the snapshot's weights by arm (True: raw); one load memoises both
    wkeys = {False: skey, True: content_hash({"snapshot": skey, "weights": "raw"})}
    arms = (False, True) if cfg.oneshot_ema > 0 else (False,)
    raw = bool(raw and cfg.oneshot_ema > 0)
    trained = _recall(wkeys[raw])
    if trained is None:
        saved = _snapshot(cfg, seed, key, features, latency, int(steps))
        for arm in arms:
            with torch.random.fork_rng(devices=[]):  # initialisation overwritten: leave the global generator alone
                model = Supernet().to(str(features["train"].masks.device))
            model.load_state_dict(saved["raw_model" if arm else "model"])
            model.eval()
            _remember(wkeys[arm], TrainedSupernet(model, list(saved["history"]), features, cfg, latency, wkeys[arm],
                                                  weight_steps=int(steps)))
        trained = _MEMO[wkeys[raw]]
    return _with_settings(trained, cfg, variant)


def _snapshot(cfg, seed: int, key: str, features: Features, latency: LatencyTerms, steps: int) -> dict:
    """The :func:`snapshot_of` run ``key`` after ``steps`` steps: from the disk cache, else
    replayed (and saved, unless ``cfg.snapshots_on_disk`` is False)."""
    if not cfg.snapshots_on_disk:
        state = train_supernet(cfg, seed, features["train"], features["val"], latency, None, key, None, steps)
        return snapshot_of(state, key)
    folder = cache_dir("supernet")
    skey = snapshot_key(key, steps)
    saved = load_checkpoint(snapshot_path(folder, key, steps), skey, "supernet snapshot")
    if saved is None:
        train_supernet(cfg, seed, features["train"], features["val"], latency, None, key, folder, steps)
        saved = load_checkpoint(snapshot_path(folder, key, steps), skey, "supernet snapshot")
    return saved


def run_device(profile) -> str:
    """``cuda`` when the profile asks for it and a GPU is present, else ``cpu`` (logged)."""
    if profile.device == "cuda":
        if torch.cuda.is_available():
            return "cuda"
        log.warning("profile %s asks for cuda but no GPU is present; running on the CPU", profile.name)
    return "cpu"


def choice_names() -> tuple[list[str], list[str]]:
    """Labels of ops and widths (for tables and figures)."""
    return list(OPS), [f"w{w}" for w in WIDTHS]
