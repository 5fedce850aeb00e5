"""I3: the NEAR zero-cost proxy (network expressivity by activation rank) for decoder paths.

NEAR scores a network, without training it further, by the *effective rank* of its
activations on one data batch. For a matrix ``A`` with singular values ``s_i``,
``p_i = s_i / sum_j s_j`` and ``erank(A) = exp(-sum_i p_i log p_i)`` (Roy & Vetterli 2007):
``n`` for an ``n x n`` identity, 1 for a rank-1 matrix. Each decoder layer's activations
``(B, C, H, W)`` are reshaped to ``(B*H*W, C)`` (samples x positions, channels); the layer
contributes ``erank(pre) + erank(post)`` with ``pre`` the op's output and ``post`` its
ReLU; the architecture's score is the sum over the five layers. Higher = more expressive.

Cost, and the one approximation. A path forward through the supernet costs tens of ms on
a CPU, so scoring a 10,000-architecture pool exactly would take minutes. But NEAR is a sum
over layers, and a layer's activations depend only on its own choice and its *input*. We
therefore score every (layer, choice) pair once (:func:`near_table`): layer ``l``'s input
is produced by a few random *context* prefixes (choices of layers ``< l``), and the pair's
score is its mean over those contexts. An architecture's proxy is then the table sum
(:func:`additive_scores`), which costs nothing per architecture. This is exact for layer 0
(its input is the bottleneck output, whatever the architecture) and an approximation for
deeper layers, whose real input depends on the earlier choices; :func:`exact_scores` runs
full paths so the notebook can report how well the additive table ranks like the exact
proxy (Kendall tau on a sample).

Which weights. The search scores paths of the *trained* supernet (the weights it then
evaluates). The NEAR paper scores networks at initialisation; :func:`init_scores` does that
(fresh supernets, mean over a few initialisations), so the ranking study can tell whether
NEAR is weak because it reads trained shared weights.
"""

from __future__ import annotations

import numpy as np
import torch

from ..space import N_CHOICES, N_LAYERS


def activation_matrix(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B*H*W, C)``; a 2-D matrix is returned unchanged."""
    if x.dim() == 2:
        return x
    if x.dim() != 4:
        raise ValueError(f"activations must be (B, C, H, W) or 2-D; got shape {tuple(x.shape)}")
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values of a 2-D matrix, in float64, via the eigenvalues of the smaller Gram matrix.

    The Gram route costs ``N * C**2`` for an ``(N, C)`` matrix, far less than an SVD of the
    tall activation matrices; its error on tiny singular values (``~sqrt(eps) * s_max``)
    changes an effective rank by well under 1e-6.
    """
    m = matrix.detach().to(torch.float64)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    return torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt()


def effective_rank(matrix) -> float:
    """``exp(entropy(s / sum(s)))`` of the singular values ``s`` of a 2-D matrix.

    Returns 0.0 for an all-zero matrix (no direction carries any signal, e.g. a dead ReLU).

    Raises:
        ValueError: not 2-D (after :func:`activation_matrix`), empty, or non-finite.
    """
    m = activation_matrix(torch.as_tensor(matrix))
    if m.numel() == 0 or not torch.isfinite(m).all():
        raise ValueError(f"effective rank needs a non-empty finite matrix; got shape {tuple(m.shape)}")
    s = singular_values(m)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def layer_near(candidate, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """NEAR contribution of one :class:`~linas_lib.ops.DecoderLayer` on input ``x``.

    Returns:
        ``(erank(pre) + erank(post), layer output before the skip-add)``.
    """
    pre = candidate.op(x)
    post = torch.relu(pre)  # not candidate.act: it is in-place and would overwrite ``pre``
    return _near_of(pre), candidate.proj(candidate.bn(post))


def _on_model_device(supernet, taps) -> tuple:
    """The taps on the device of the supernet's weights."""
    device = next(supernet.parameters()).device
    return tuple(t.to(device) for t in taps)


def _skips(taps) -> tuple:
    x1, x2, x3, x4, _ = taps
    return (x4, x3, x2, x1, None)


def _advance(supernet, x: torch.Tensor, layer: int, choice: int, skips) -> torch.Tensor:
    """Output of layer ``layer`` for ``choice`` including its skip-add."""
    out = supernet.layers[layer].forward_choice(x, int(choice))
    return out + skips[layer] if skips[layer] is not None else out


@torch.no_grad()
def near_table(supernet, taps, rng: np.random.Generator, n_contexts: int = 4) -> np.ndarray:
    """Per-(layer, choice) NEAR contribution, ``(5, 21)``, averaged over random input contexts.

    The contexts' inputs are stacked along the batch so each candidate runs once per layer;
    the effective ranks are still taken per context (each on its own ``B`` samples).

    Args:
        supernet: a :class:`~linas_lib.supernet.model.Supernet` (set to eval mode here).
        taps: encoder taps of one data batch.
        rng: draws the context prefixes.
        n_contexts: context prefixes per layer (layer 0 has a single, exact input).
    """
    if n_contexts < 1:
        raise ValueError(f"n_contexts must be >= 1; got {n_contexts}")
    supernet.eval()
    taps = _on_model_device(supernet, taps)
    skips = _skips(taps)
    base = supernet.bottleneck(taps[-1])
    table = np.zeros((N_LAYERS, N_CHOICES))
    contexts = rng.integers(0, N_CHOICES, size=(n_contexts, N_LAYERS))
    for layer in range(N_LAYERS):
        inputs = [base] if layer == 0 else [_prefix_input(supernet, base, ctx[:layer], skips) for ctx in contexts]
        stacked = torch.cat(inputs)
        for choice in range(N_CHOICES):
            pre = supernet.layers[layer].candidates[choice].op(stacked)
            table[layer, choice] = np.mean([_near_of(part) for part in pre.chunk(len(inputs))])
    return table


def _near_of(pre: torch.Tensor) -> float:
    return effective_rank(pre) + effective_rank(torch.relu(pre))


def _prefix_input(supernet, base: torch.Tensor, prefix, skips) -> torch.Tensor:
    x = base
    for layer, choice in enumerate(prefix):
        x = _advance(supernet, x, layer, choice, skips)
    return x


def additive_scores(table, choices) -> np.ndarray:
    """Proxy of architectures ``(n, L)`` as the sum of their per-layer table entries."""
    table = np.asarray(table, dtype=float)
    arr = np.asarray(choices, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != table.shape[0]:
        raise ValueError(f"choices must have shape (n, {table.shape[0]}); got {arr.shape}")
    return table[np.arange(table.shape[0]), arr].sum(axis=1)


@torch.no_grad()
def exact_scores(supernet, taps, choices) -> np.ndarray:
    """Exact NEAR of each architecture: its full path, every layer on its true input."""
    supernet.eval()
    taps = _on_model_device(supernet, taps)
    skips = _skips(taps)
    base = supernet.bottleneck(taps[-1])
    scores = []
    for arch in np.asarray(choices, dtype=np.int64):
        x, total = base, 0.0
        for layer, choice in enumerate(arch):
            score, out = layer_near(supernet.layers[layer].candidates[int(choice)], x)
            total += score
            x = out + skips[layer] if skips[layer] is not None else out
        scores.append(total)
    return np.asarray(scores)


@torch.no_grad()
def init_scores(factory, taps, choices, rng: np.random.Generator, n_inits: int) -> np.ndarray:
    """Exact NEAR at initialisation: :func:`exact_scores` on freshly built supernets, averaged.

    Args:
        factory: builds an untrained supernet (e.g. :class:`~linas_lib.supernet.model.Supernet`).
        taps: encoder taps of one data batch.
        choices: architectures ``(n, L)``.
        rng: draws each initialisation (through a ``torch.Generator``).
        n_inits: initialisations averaged.
    """
    from ..keys import seeded_module, torch_generator

    if n_inits < 1:
        raise ValueError(f"n_inits must be >= 1; got {n_inits}")
    runs = [exact_scores(seeded_module(factory, torch_generator(rng)), taps, choices) for _ in range(n_inits)]
    return np.mean(runs, axis=0)


class NearProxy:
    """The additive NEAR proxy as a scorer ``(n, L) -> (n,)`` for the zero-cost method.

    Args:
        table: ``(L, C)`` from :func:`near_table`.
    """

    def __init__(self, table):
        self.table = np.asarray(table, dtype=float)
        if not np.isfinite(self.table).all():
            raise ValueError("NEAR table has non-finite entries")

    def __call__(self, choices) -> np.ndarray:
        """Proxy scores, higher = better."""
        return additive_scores(self.table, choices)
