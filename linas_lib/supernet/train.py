"""Supernet training and the differentiable search (DARTS bilevel, PAD, ProxylessNAS).

What :func:`train_supernet` does, epoch by epoch:

1. ``supernet.warmup_epochs`` epochs of **uniform single-path** training of the shared
   weights (SPOS-style): every step draws one (op, width) per layer uniformly and trains
   only that path. This is what makes weight-sharing evaluation meaningful: every
   candidate's weights see training and work inside many different paths.
2. ``supernet.epochs`` epochs of the **bilevel search** (DARTS): per train batch one
   weight step (train split), then one architecture step on the next val batch with
   ``loss = segmentation + lambda * sum_t relu(E[lat_t] - budget_t) / budget_t``. The mode
   (``supernet.search_mode``) decides what runs: ``binarised`` (ProxylessNAS: weight steps
   on a path sampled from p(op, w), alpha steps through the straight-through gate of the
   sampled path; memory of one path), ``gumbel`` (PAD: Gumbel-softmax mixture, temperature
   annealed from ``tau_max`` to ``tau_min`` over all search steps) or ``soft`` (DARTS
   mixture).

BN statistics of the supernet's candidates are cumulative averages (momentum None), since
each candidate is updated only in the steps that sample it; weight-sharing evaluation runs
BN in eval mode on them. Only weight steps (train split) update them: an architecture step
normalises with its val batch's statistics as before, but its BN running statistics are
restored afterwards (:func:`~.model.bn_statistics_kept`), so the statistics the
weight-sharing evaluator reads never absorbed the val images it scores. (BN in eval mode
during alpha steps was the alternative; it was not chosen because it would change what the
alpha gradient sees -- running statistics of candidates sampled a few times, or never, in
place of the batch statistics their weights are trained with.)
Weights: Adam (``lr_weights``); logits: Adam (``lr_alpha``, betas (0.5, 0.999), weight
decay 1e-3, as in DARTS). A checkpoint is written after every epoch to
``cache_dir("supernet")`` under a hash of everything the result depends on
(:func:`supernet_key`); a stopped run resumes from it bit-identically: it holds the model,
both optimisers' states (the weight optimiser's Adam moments too, so the file is about three
times the model's size), the generators and the history.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..config import Profile, load_profile
from ..encoder.features import Features, FeatureSplit, run_features
from ..keys import atomic_torch_save, content_hash, key_fields, load_checkpoint, seeded_module
from ..losses import check_finite, latency_penalty, segmentation_terms
from ..paths import cache_dir
from ..space import OPS, WIDTHS, as_choices
from .evaluate import WeightSharingEvaluator, evaluate_decoder, evaluate_logits
from .model import Supernet, argmax_choices, bn_statistics_kept, extract_decoder, gumbel_temperature
from .standalone import train_decoder

log = logging.getLogger(__name__)
SUPERNET_STREAM = 0x5E7
SEARCH_MODES = ("binarised", "gumbel", "soft")
# Version of what a supernet checkpoint holds and how training runs; part of its cache key, so
# checkpoints of an older scheme are retrained, not loaded. 2: alpha steps keep BN statistics,
# the weight optimiser's state is saved, data enter the key by content.
CHECKPOINT_SCHEMA = 2


@dataclass(frozen=True)
class LatencyTerms:
    """The differentiable latency objective: LUT tensors, budgets and target names."""

    table: torch.Tensor  # (n_targets, 5, 21) ms
    fixed: torch.Tensor  # (n_targets,) ms
    budgets: torch.Tensor  # (n_targets,) ms
    names: tuple[str, ...]
    pair: torch.Tensor | None = None  # (n_targets, 4, 21, 21) ms (I4) or None

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """``(n_targets,)`` expected latency (ms) under ``(5, 21)`` choice probabilities."""
        from ..latency.predict import expected_latency

        return expected_latency(probs, self.table, self.fixed, self.pair)

    def penalty(self, probs: torch.Tensor) -> torch.Tensor:
        """Budget-normalised overshoot (see :func:`linas_lib.losses.latency_penalty`)."""
        return latency_penalty(self.expected(probs), self.budgets)

    def to(self, device) -> LatencyTerms:
        """The tables on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return LatencyTerms(move(self.table), move(self.fixed), move(self.budgets), self.names, move(self.pair))

    def digest(self) -> str:
        """Hash of the tables and budgets (part of the supernet cache key)."""
        return content_hash({"names": list(self.names), "table": self.table, "fixed": self.fixed,
                             "budgets": self.budgets, "pair": self.pair})


def latency_terms(model) -> LatencyTerms:
    """:class:`LatencyTerms` of a :class:`linas_lib.latency.predict.LatencyModel`."""
    from ..latency.predict import lut_tensor

    table, fixed, pair = lut_tensor(model)
    budgets = torch.as_tensor(np.asarray(model.budgets_ms), dtype=torch.float32)
    return LatencyTerms(table, fixed, budgets, tuple(model.target_names), pair)


def search_latency_model(profile):
    """The latency model the search uses: every target of the profile, I4 interaction LUTs."""
    from ..latency.targets import latency_model

    return latency_model(profile, variant="interaction", progress=False)


# ------------------------------------------------------------------ one training step


def weight_step(model: Supernet, optimizer, taps, masks, mode: str, tau: float, gen: torch.Generator,
                where: str) -> float:
    """One step on the shared weights; returns the segmentation loss."""
    model.train()
    if mode in ("uniform", "binarised"):
        logits = model.forward_arch(taps, model.sample_path(mode, gen))
    else:
        logits = model(taps, mode=mode, tau=tau, generator=gen)
    terms = segmentation_terms(logits, masks)
    check_finite(terms, where)
    loss = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
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
    """Everything a resumable training run carries between epochs."""

    model: Supernet
    opt_w: torch.optim.Optimizer
    opt_a: torch.optim.Optimizer
    gen: torch.Generator
    rng: np.random.Generator
    history: list[dict] = field(default_factory=list)

    def checkpoint(self, key: str, done: bool) -> dict:
        """Serializable state: model, both optimisers, generators, history (a resume is bit-identical)."""
        return {"key": key, "done": done, "model": self.model.state_dict(), "opt_w": self.opt_w.state_dict(),
                "opt_a": self.opt_a.state_dict(), "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state,
                "history": self.history}

    def restore(self, state: dict) -> None:
        """Load a :meth:`checkpoint`."""
        self.model.load_state_dict(state["model"])
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_a.load_state_dict(state["opt_a"])
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]
        self.history = list(state["history"])


def new_search_state(cfg, seed: int, device: str = "cpu") -> SearchState:
    """Model (initialised from the run's generator, on ``device``), optimisers and generators of a run.

    The generators stay on the CPU (paths and Gumbel noise are tiny), so a seed gives the
    same sampled paths on every device.
    """
    rng = np.random.default_rng([seed, SUPERNET_STREAM])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    model = seeded_module(Supernet, gen).to(device)
    opt_w = torch.optim.Adam(model.weight_parameters(), lr=cfg.lr_weights)
    opt_a = torch.optim.Adam(model.arch_parameters(), lr=cfg.lr_alpha, betas=(0.5, 0.999), weight_decay=1e-3)
    return SearchState(model, opt_w, opt_a, gen, rng)


def run_epoch(state: SearchState, epoch: int, cfg, train: FeatureSplit, val: FeatureSplit,
              latency: LatencyTerms | None, ws_split: FeatureSplit) -> dict:
    """One epoch (warm-up or search, by index); returns its history row."""
    if cfg.search_mode not in SEARCH_MODES:
        raise ValueError(f"supernet.search_mode must be one of {', '.join(SEARCH_MODES)}, got {cfg.search_mode!r}")
    start = time.perf_counter()
    warmup = epoch < cfg.warmup_epochs
    mode = "uniform" if warmup else cfg.search_mode
    n_batches = -(-len(train) // cfg.batch_size)
    val_batches = list(val.batches(cfg.batch_size, state.rng))
    w_losses, a_terms, tau = [], [], 1.0
    for step, (taps, masks) in enumerate(train.batches(cfg.batch_size, state.rng)):
        if mode == "gumbel":
            t = (epoch - cfg.warmup_epochs) * n_batches + step
            tau = gumbel_temperature(t, max(cfg.epochs * n_batches - 1, 1), cfg.tau_max, cfg.tau_min)
        where = f"supernet epoch {epoch} step {step} ({mode})"
        w_losses.append(weight_step(state.model, state.opt_w, taps, masks, mode, tau, state.gen, where))
        if not warmup:
            v_taps, v_masks = val_batches[step % len(val_batches)]
            a_terms.append(arch_step(state.model, state.opt_a, v_taps, v_masks, mode, tau, state.gen, latency,
                                     cfg.latency_lambda, where + " alpha"))
    return _history_row(state.model, epoch, mode, tau, w_losses, a_terms, latency, ws_split, cfg,
                        time.perf_counter() - start)


def _history_row(model: Supernet, epoch: int, mode: str, tau: float, w_losses, a_terms, latency, ws_split, cfg,
                 seconds: float) -> dict:
    """Per-epoch record: losses, probabilities, expected latency, WS mIoU of the argmax path."""
    with torch.no_grad():
        p_op = model.alpha_op.softmax(-1).cpu().numpy()
        p_w = model.alpha_width.softmax(-1).cpu().numpy()
        expected = latency.expected(model.joint_probs()).cpu().numpy() if latency is not None else np.zeros(0)
    argmax = argmax_choices(p_op, p_w)
    ws = evaluate_logits(lambda taps: model.forward_arch(taps, argmax), ws_split, cfg.batch_size, model=model)
    row = {
        "epoch": epoch + 1, "phase": "warmup" if mode == "uniform" else "search", "mode": mode, "tau": tau,
        "train_loss": float(np.mean(w_losses)), "seconds": seconds, "ws_miou_argmax": ws,
        "p_op": p_op.tolist(), "p_width": p_w.tolist(), "argmax": argmax.tolist(),
        "expected_ms": dict(zip(latency.names, expected.tolist())) if latency is not None else {},
    }
    for name in ("ce", "dice", "boundary", "latency"):
        values = [t[name] for t in a_terms if name in t]
        row[f"val_{name}"] = float(np.mean(values)) if values else None
    return row


def train_supernet(cfg, seed: int, train: FeatureSplit, val: FeatureSplit, latency: LatencyTerms | None,
                   checkpoint: Path | None = None, key: str = "") -> SearchState:
    """Warm-up then search (see the module docstring), resuming from ``checkpoint`` if it matches ``key``.

    Args:
        cfg: the profile's ``supernet`` section.
        seed: run seed (initialisation, shuffling, sampled paths, Gumbel noise).
        train, val: cached feature splits (weights on train, logits on val).
        latency: the latency objective (None: no latency term).
        checkpoint: file written after every epoch (None: no checkpoints).
            The model runs on the device of the feature splits.
        key: identifies the run; a checkpoint with another key is ignored.

    Returns:
        The final :class:`SearchState` (its ``history`` has one row per epoch).
    """
    state = new_search_state(cfg, seed, str(train.masks.device))
    saved = load_checkpoint(checkpoint, key, "supernet checkpoint")
    if saved is not None:
        state.restore(saved)
    ws_split = val.subset(cfg.ws_val_images)
    for epoch in range(len(state.history), cfg.warmup_epochs + cfg.epochs):
        state.history.append(run_epoch(state, epoch, cfg, train, val, latency, ws_split))
        log.info("supernet epoch %d: %s", epoch + 1, {k: state.history[-1][k] for k in ("train_loss", "ws_miou_argmax")})
        if checkpoint is not None:
            atomic_torch_save(state.checkpoint(key, epoch + 1 == cfg.warmup_epochs + cfg.epochs), checkpoint)
    return state


# ------------------------------------------------------------------ weight-sharing evaluation


# ------------------------------------------------------------------ the cached, trained supernet


@dataclass
class TrainedSupernet:
    """A trained supernet with its history and the handles later stages use.

    Attributes:
        model: the :class:`~linas_lib.supernet.model.Supernet` (eval mode).
        history: one dict per epoch (see :func:`run_epoch`).
        features: the cached features it was trained on.
        cfg: the ``supernet`` profile section.
        latency: the latency objective used by the search.
        key: cache key (hash of data, encoder weights, LUTs, settings and seed).
    """

    model: Supernet
    history: list[dict]
    features: Features
    cfg: object
    latency: LatencyTerms | None
    key: str

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

    @cached_property
    def evaluator(self) -> WeightSharingEvaluator:
        """Weight-sharing evaluator on the val split (first ``ws_val_images`` images)."""
        return WeightSharingEvaluator(self.model, self.features["val"].subset(self.cfg.ws_val_images),
                                      self.cfg.batch_size)

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


def supernet_key(profile, seed: int, features: Features, latency: LatencyTerms | None) -> str:
    """Hash of everything a trained supernet depends on.

    The ``supernet`` settings enter by :func:`~linas_lib.keys.key_fields`: every field of
    :class:`~linas_lib.config.SupernetConfig` except those declared ``metadata={"key": False}``
    (the standalone, PAD-gap and measurement settings, which later experiments read but
    training does not).
    """
    return content_hash({
        "schema": CHECKPOINT_SCHEMA, "supernet": key_fields(profile.supernet),
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


_MEMO: dict[str, TrainedSupernet] = {}


def trained_supernet(profile, seed: int) -> TrainedSupernet:
    """The run's trained supernet: from memory, from the disk cache, or trained now (resumable).

    Args:
        profile: the run's profile (or its name / YAML path).
        seed: run seed.
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    device = run_device(profile)
    features = run_features(profile, seed)
    latency = latency_terms(search_latency_model(profile))
    key = supernet_key(profile, seed, features, latency)
    features, latency = features.to(device), latency.to(device)
    if key not in _MEMO:
        path = cache_dir("supernet") / f"supernet_{key}.pt"
        state = train_supernet(profile.supernet, seed, features["train"], features["val"], latency, path, key)
        state.model.eval()
        _MEMO[key] = TrainedSupernet(state.model, state.history, features, profile.supernet, latency, key)
    trained = _MEMO[key]
    if trained.cfg != profile.supernet:
        # same trained supernet, other settings outside the key (standalone, PAD gap, ...):
        # a shallow copy (same model, same evaluator) carrying this profile's section
        trained = copy.copy(trained)
        trained.cfg = profile.supernet
    return trained


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
