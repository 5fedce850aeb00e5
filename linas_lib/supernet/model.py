"""The LINAS supernet: every layer holds all 21 (op, width) candidates and architecture logits.

Each of the 5 layers is a :class:`MixedLayer`: one :class:`~linas_lib.ops.DecoderLayer` per
(op, width) pair (7 ops x 3 widths, each with its own weights and projection), indexed by the
choice ``c = op * 3 + width`` of :mod:`linas_lib.space`. Architecture logits are per layer
for ops (``alpha_op``, 5 x 7) and widths (``alpha_width``, 5 x 3); the joint probability is
``p(op, w) = p_op * p_w``.

Sampling modes of :meth:`Supernet.forward`:

* ``soft`` (DARTS): every candidate runs, outputs mixed with ``p(op, w)``.
* ``gumbel`` (PAD): every candidate runs, mixed with Gumbel-softmax weights at temperature
  ``tau`` (annealed by :func:`gumbel_temperature`); ``noise=False`` gives the deterministic
  ``softmax(alpha / tau)`` used for evaluation.
* ``binarised`` (ProxylessNAS): one path per layer is sampled from ``p(op, w)`` and only it
  runs (memory of one path); its output is multiplied by the straight-through gate
  ``1 + p - stopgrad(p)`` (value 1), so the architecture logits get the gradient
  ``<dL/d out, out>`` of the sampled path.
* ``uniform``: one path per layer drawn uniformly (weight-sharing training, no alpha).

:meth:`Supernet.forward_arch` runs one fixed architecture; :func:`extract_decoder` copies its
weights into a standalone :class:`~linas_lib.ops.Decoder`. :func:`bn_statistics_kept` and
:func:`eval_mode` let a step or a measurement run without changing BN statistics or modes.

Sub-network size, defined once here: :func:`candidate_param_counts` (parameters of every
candidate, read from the modules, so it depends neither on a machine nor on a LUT),
:func:`path_complexity`, :func:`largest_path` and :func:`smallest_path` (the two ends of the
sandwich rule, :mod:`.oneshot`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..ops import ENCODER_CHANNELS, Bottleneck, Decoder, DecoderLayer
from ..space import CHANNELS, N_CHOICES, N_LAYERS, OPS, WIDTHS, as_choices, choice_index

MODES = ("soft", "gumbel", "binarised", "uniform")


def gumbel_temperature(step: int, total: int, tau_max: float = 5.0, tau_min: float = 0.1) -> float:
    """PAD schedule ``tau_t = tau_max * (tau_min / tau_max) ** (t / T)`` (``t`` clipped to ``[0, T]``).

    Raises:
        ValueError: non-positive temperatures or ``total``.
    """
    if tau_max <= 0 or tau_min <= 0 or total <= 0:
        raise ValueError(f"need tau_max, tau_min, total > 0; got {tau_max}, {tau_min}, {total}")
    frac = min(max(step, 0), total) / total
    return float(tau_max * (tau_min / tau_max) ** frac)


def sample_gumbel(shape, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log U)`` drawn from ``generator``."""
    u = torch.rand(shape, generator=generator, device=generator.device).clamp_(1e-10, 1.0 - 1e-10)
    return -torch.log(-torch.log(u))


class MixedLayer(nn.Module):
    """All 21 (op, width) candidates of one decoder layer, indexed by choice."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.candidates = nn.ModuleList(DecoderLayer(op, w, c_in, c_out) for op in OPS for w in WIDTHS)

    def forward_choice(self, x: torch.Tensor, choice: int) -> torch.Tensor:
        """Only the candidate ``choice`` runs."""
        return self.candidates[int(choice)](x)

    def forward_mixture(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted sum of every candidate's output (``weights``: ``(21,)``)."""
        return sum(w * cand(x) for w, cand in zip(weights, self.candidates))


class Supernet(nn.Module):
    """Bottleneck, five :class:`MixedLayer` with skip-adds, 1x1 head, architecture logits.

    Build it under a generator with :func:`~linas_lib.keys.seeded_module`; the logits
    start at zero (uniform over ops and widths).

    Args:
        n_classes: output classes.
        channels: ``(C_in, C_out)`` per layer; the search space's plan by default (a smaller
            plan only serves fast unit tests; extraction needs the default).
        deep_channels: channels of the deep encoder tap.
    """

    def __init__(self, n_classes: int = 2, channels=CHANNELS, deep_channels: int = ENCODER_CHANNELS):
        super().__init__()
        channels = tuple(tuple(c) for c in channels)
        if (channels, deep_channels) == (CHANNELS, ENCODER_CHANNELS):
            self.bottleneck = Bottleneck()
        else:
            self.bottleneck = nn.Conv2d(deep_channels, channels[0][0], 1, stride=2)
        self.layers = nn.ModuleList(MixedLayer(c_in, c_out) for c_in, c_out in channels)
        self.head = nn.Conv2d(channels[-1][1], n_classes, 1)
        # Each candidate's BN sees only the steps that sample it: cumulative averages
        # (momentum None) give exact running statistics after few updates, so eval-mode
        # (weight-sharing) evaluation is meaningful even after short schedules.
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None
        self.alpha_op = nn.Parameter(torch.zeros(N_LAYERS, len(OPS)))
        self.alpha_width = nn.Parameter(torch.zeros(N_LAYERS, len(WIDTHS)))

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture logits."""
        return [self.alpha_op, self.alpha_width]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the architecture logits."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def joint_probs(self, tau: float = 1.0) -> torch.Tensor:
        """``(5, 21)`` joint ``p(op, w) = softmax(alpha_op/tau) * softmax(alpha_width/tau)``."""
        return _joint(self.alpha_op / tau, self.alpha_width / tau)

    def mixture_weights(self, mode: str, tau: float = 1.0, generator: torch.Generator | None = None,
                        noise: bool = True) -> torch.Tensor:
        """``(5, 21)`` mixing weights of the ``soft`` or ``gumbel`` mode."""
        if mode == "soft":
            return self.joint_probs()
        if mode != "gumbel":
            raise ValueError(f"mixture weights exist for 'soft' and 'gumbel', not {mode!r}")
        a_op, a_w = self.alpha_op.log_softmax(-1), self.alpha_width.log_softmax(-1)
        if noise:
            if generator is None:
                raise ValueError("gumbel mode with noise needs a torch.Generator")
            a_op = a_op + sample_gumbel(a_op.shape, generator).to(a_op.device)
            a_w = a_w + sample_gumbel(a_w.shape, generator).to(a_w.device)
        return _joint(a_op / tau, a_w / tau)

    def sample_path(self, mode: str, generator: torch.Generator) -> np.ndarray:
        """One choice per layer: from ``p(op, w)`` (``binarised``) or uniform (``uniform``)."""
        if mode == "uniform":
            return torch.randint(0, N_CHOICES, (N_LAYERS,), generator=generator, device=generator.device).cpu().numpy()
        with torch.no_grad():  # sampled where the generator lives (CPU generators serve CUDA models)
            p_op = self.alpha_op.softmax(-1).to(generator.device)
            p_w = self.alpha_width.softmax(-1).to(generator.device)
            ops = torch.multinomial(p_op, 1, generator=generator).squeeze(1)
            widths = torch.multinomial(p_w, 1, generator=generator).squeeze(1)
        return (ops * len(WIDTHS) + widths).cpu().numpy()

    def forward(self, taps, mode: str = "soft", tau: float = 1.0, generator: torch.Generator | None = None,
                noise: bool = True, path: np.ndarray | None = None) -> torch.Tensor:
        """Logits ``(B, n_classes, H, W)`` of the supernet in one sampling mode.

        Args:
            taps: encoder taps ``(x1, x2, x3, x4, deep)``.
            mode: one of :data:`MODES`.
            tau: Gumbel temperature (``gumbel`` only).
            generator: source of Gumbel noise / sampled paths.
            noise: ``gumbel`` only: False evaluates ``softmax(alpha / tau)`` without noise.
            path: ``binarised``/``uniform`` only: use this path instead of sampling one.
        """
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r}; expected one of {', '.join(MODES)}")
        if mode in ("soft", "gumbel"):
            weights = self.mixture_weights(mode, tau, generator, noise)
            return self._run(taps, lambda i, x: self.layers[i].forward_mixture(x, weights[i]))
        if path is None:
            if generator is None:
                raise ValueError(f"{mode} mode needs a torch.Generator (or an explicit path)")
            path = self.sample_path(mode, generator)
        path = as_choices(path)
        if mode == "uniform":
            return self.forward_arch(taps, path)
        probs = self.joint_probs()
        gates = [1.0 + probs[i, c] - probs[i, c].detach() for i, c in enumerate(path)]
        return self._run(taps, lambda i, x: self.layers[i].forward_choice(x, path[i]) * gates[i])

    def path_candidates(self, choices) -> list[nn.Module]:
        """The candidate module of each layer that the architecture ``choices`` runs."""
        return [layer.candidates[int(c)] for layer, c in zip(self.layers, as_choices(choices))]

    def forward_arch(self, taps, choices) -> torch.Tensor:
        """Logits of one fixed architecture (only its path runs, no alpha involved)."""
        choices = as_choices(choices)
        return self._run(taps, lambda i, x: self.layers[i].forward_choice(x, choices[i]))

    def _run(self, taps, layer_fn) -> torch.Tensor:
        """Bottleneck, the five layers (``layer_fn(i, x)``) with skip-adds, then the head."""
        x1, x2, x3, x4, deep = taps
        x = self.bottleneck(deep)
        for i, skip in enumerate((x4, x3, x2, x1, None)):
            x = layer_fn(i, x)
            if skip is not None:
                x = x + skip
        return self.head(x)


@contextmanager
def bn_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Run a block in which BN normalises as usual but its running statistics do not move.

    Every BN buffer (``running_mean``, ``running_var``, ``num_batches_tracked``) is copied
    on entry and written back on exit (also after an error); inside, a train-mode BN still
    normalises with the batch's statistics. Used around architecture steps: they run on val
    batches, and BN statistics that absorbed those images would make the weight-sharing
    evaluator (which scores on the val split, BN in eval mode) read statistics of its own
    test images. The block must hold the backward too: BN saves its buffers for it, and
    autograd refuses buffers written in place before the backward ran.
    """
    saved = [(buf, buf.detach().clone()) for module in model.modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm) for buf in module.buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, copy in saved:
                buf.copy_(copy)


@contextmanager
def eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Run a block with ``modules`` in eval mode; every submodule's own train/eval flag is restored.

    ``None`` entries are skipped. The flags are restored one by one (not by ``train(flag)`` on
    the top module), so a model whose parts were in different modes gets each part back as it was.
    """
    flags = [(m, m.training) for module in modules if module is not None for m in module.modules()]
    try:
        for module in modules:
            if module is not None:
                module.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def candidate_param_counts(model: Supernet) -> np.ndarray:
    """``(n_layers, 21)`` parameter count of every candidate (op, width) of every layer.

    The architecture-independent size measure of sub-networks: the number of elements of the
    candidate's parameters (op, BN affine, projection), so it is the same on every machine and
    needs no LUT. Shared parts (bottleneck, head) are left out: every path carries them.
    """
    return np.array([[sum(p.numel() for p in cand.parameters()) for cand in layer.candidates]
                     for layer in model.layers], dtype=np.float64)


def path_complexity(counts: np.ndarray, path) -> float:
    """Parameters of one path's candidates (:func:`candidate_param_counts` summed along ``path``)."""
    path = np.asarray(path, dtype=np.int64)
    return float(counts[np.arange(len(path)), path].sum())


def mean_path_complexity(counts: np.ndarray) -> float:
    """Mean :func:`path_complexity` over uniformly drawn paths (the per-layer means summed)."""
    return float(np.asarray(counts).mean(axis=1).sum())


def largest_path(n_layers: int = N_LAYERS) -> np.ndarray:
    """The largest sub-network: every layer ``Conv7x7_w100`` (the sandwich rule's upper end)."""
    return np.full(n_layers, choice_index("Conv7x7", 100), dtype=np.int64)


def smallest_path(counts: np.ndarray) -> np.ndarray:
    """The smallest sub-network: per layer the candidate with the fewest parameters.

    ``counts`` comes from :func:`candidate_param_counts`; ties go to the lowest choice index.
    With the search space's channel plan this is ``DWSep3x3_w50`` in every layer.
    """
    return np.asarray(counts).argmin(axis=1).astype(np.int64)


def _joint(logits_op: torch.Tensor, logits_width: torch.Tensor) -> torch.Tensor:
    """``(5, 21)`` product of the per-layer op and width softmaxes, in choice order."""
    p_op, p_w = logits_op.softmax(-1), logits_width.softmax(-1)
    return (p_op.unsqueeze(-1) * p_w.unsqueeze(-2)).reshape(p_op.shape[0], -1)


def argmax_choices(alpha_op, alpha_width, rng: np.random.Generator | None = None) -> np.ndarray:
    """Extraction: the most probable op and width of each layer, as a choice vector.

    Exact ties (an untrained layer's equal logits) are broken uniformly at random by ``rng``
    (default: a generator seeded 0, so extraction stays deterministic), not by index: index 0
    is the cheapest width, which a tie must not favour.
    """
    as_np = lambda a: a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)  # noqa: E731
    rng = np.random.default_rng(0) if rng is None else rng
    ops = _argmax_random_ties(as_np(alpha_op), rng)
    widths = _argmax_random_ties(as_np(alpha_width), rng)
    return (ops * len(WIDTHS) + widths).astype(np.int64)


def _argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of ``(rows, k)`` with exact ties broken by ``rng``."""
    best = values == values.max(axis=1, keepdims=True)
    return np.array([rng.choice(np.flatnonzero(row)) for row in best], dtype=np.int64)


def extract_decoder(supernet: Supernet, choices) -> Decoder:
    """A standalone :class:`~linas_lib.ops.Decoder` carrying the supernet's weights of one path.

    Deterministic: the decoder is built and every parameter and buffer overwritten by a copy
    of the supernet's (bottleneck, the chosen candidate of each layer, head).
    """
    choices = as_choices(choices)
    n_classes = supernet.head.out_channels
    with torch.random.fork_rng(devices=[]):
        decoder = Decoder(choices, n_classes=n_classes).to(supernet.head.weight.device)
    decoder.bottleneck.load_state_dict(supernet.bottleneck.state_dict())
    for layer, mixed, c in zip(decoder.layers, supernet.layers, choices):
        layer.load_state_dict(mixed.candidates[int(c)].state_dict())
    decoder.head.load_state_dict(supernet.head.state_dict())
    return decoder
