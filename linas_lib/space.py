"""The LINAS decoder search space: 5 layers x 7 ops x 3 widths = 21**5 architectures.

An architecture is held as a length-5 integer vector of *choices*; choice
``c = op_index * 3 + width_index`` selects one (op, width) pair of a layer. Batches of
architectures are ``(n, 5)`` integer arrays, so predictors and searchers vectorise.

Three equivalent spellings, each with exactly one function making it:

* canonical string  ``Conv3x3_w50-DWSep3x3_w100-...`` (:func:`arch_string`), built from
  the per-layer LUT key ``<Op>_w<pct>`` (:func:`op_key`) that the LUT builder and every
  lookup use;
* integer code ``0 .. 4,084,100`` (:func:`encode` / :func:`decode`), layer 0 most significant;
* choice vector (the working form).

Searchers reach architectures only through :class:`SearchSpace`, so the space can be
swapped for a tiny one in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPS: tuple[str, ...] = (
    "Conv3x3",
    "Conv5x5",
    "Conv7x7",
    "DWSep3x3",
    "DWSep5x5",
    "DilatedDWSep",
    "EdgeConv",
)
WIDTHS: tuple[int, ...] = (50, 75, 100)
# (C_in, C_out) of each decoder layer, DenseNet121 channel plan.
CHANNELS: tuple[tuple[int, int], ...] = ((1024, 512), (512, 256), (256, 128), (128, 64), (64, 32))
N_LAYERS = len(CHANNELS)
N_CHOICES = len(OPS) * len(WIDTHS)
N_ARCHS = N_CHOICES**N_LAYERS


def op_key(op: str, width_pct: int) -> str:
    """The canonical key of one (op, width) entry, e.g. ``Conv3x3_w50``.

    Args:
        op: One of :data:`OPS`.
        width_pct: One of :data:`WIDTHS` (percent of the layer's output channels).

    Raises:
        ValueError: for an unknown op or width.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    if width_pct not in WIDTHS:
        raise ValueError(f"unknown width {width_pct!r}; expected one of {WIDTHS}")
    return f"{op}_w{width_pct}"


def choice_key(choice: int) -> str:
    """The :func:`op_key` of a choice index ``0..20``."""
    op, width = choice_parts(choice)
    return op_key(op, width)


def choice_parts(choice: int) -> tuple[str, int]:
    """Split a choice index into ``(op, width_pct)``."""
    if not 0 <= int(choice) < N_CHOICES:
        raise ValueError(f"choice {choice!r} out of range 0..{N_CHOICES - 1}")
    return OPS[int(choice) // len(WIDTHS)], WIDTHS[int(choice) % len(WIDTHS)]


def choice_index(op: str, width_pct: int) -> int:
    """Inverse of :func:`choice_parts`."""
    op_key(op, width_pct)  # validates both
    return OPS.index(op) * len(WIDTHS) + WIDTHS.index(width_pct)


def parse_op_key(key: str) -> tuple[str, int]:
    """Parse ``Conv3x3_w50`` into ``("Conv3x3", 50)``, with a clear error if malformed."""
    op, sep, width = key.rpartition("_w")
    if not sep or not width.isdigit():
        raise ValueError(f"malformed op key {key!r}; expected '<Op>_w<pct>' such as 'Conv3x3_w50'")
    op_key(op, int(width))
    return op, int(width)


def arch_string(choices) -> str:
    """Canonical string of one architecture: layer keys joined by ``-``."""
    choices = as_choices(choices)
    return "-".join(choice_key(c) for c in choices)


def parse_arch(text: str) -> np.ndarray:
    """Inverse of :func:`arch_string`."""
    keys = text.strip().split("-")
    if len(keys) != N_LAYERS:
        raise ValueError(f"architecture {text!r} has {len(keys)} layers; expected {N_LAYERS}")
    return np.array([choice_index(*parse_op_key(k)) for k in keys], dtype=np.int64)


def as_choices(choices) -> np.ndarray:
    """Validate one choice vector (length 5, entries 0..20) and return it as int64."""
    arr = np.asarray(choices, dtype=np.int64)
    if arr.shape != (N_LAYERS,):
        raise ValueError(f"an architecture has {N_LAYERS} choices; got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= N_CHOICES:
        raise ValueError(f"choices must lie in 0..{N_CHOICES - 1}; got {arr.tolist()}")
    return arr


def all_archs() -> np.ndarray:
    """Every architecture as an ``(N_ARCHS, 5)`` int8 array, in code order (~20 MB)."""
    grids = np.meshgrid(*[np.arange(N_CHOICES, dtype=np.int8)] * N_LAYERS, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def op_indices(choices: np.ndarray) -> np.ndarray:
    """Op index (0..6) of each choice."""
    return np.asarray(choices) // len(WIDTHS)


def width_indices(choices: np.ndarray) -> np.ndarray:
    """Width index (0..2) of each choice."""
    return np.asarray(choices) % len(WIDTHS)


@dataclass(frozen=True)
class SearchSpace:
    """The search space as searchers see it (NASLib-style small interface).

    Attributes:
        n_layers: searchable layers.
        n_choices: (op, width) choices per layer.
    """

    n_layers: int = N_LAYERS
    n_choices: int = N_CHOICES

    @property
    def size(self) -> int:
        """Number of architectures."""
        return self.n_choices**self.n_layers

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` architectures drawn uniformly, shape ``(n, n_layers)``."""
        return rng.integers(0, self.n_choices, size=(n, self.n_layers), dtype=np.int64)

    def mutate(self, choices: np.ndarray, rng: np.random.Generator, max_layers: int = 2) -> np.ndarray:
        """Copy of ``choices`` with 1..``max_layers`` layers given a different choice."""
        child = np.array(choices, dtype=np.int64, copy=True)
        n_changed = int(rng.integers(1, max_layers + 1))
        for layer in rng.choice(self.n_layers, size=n_changed, replace=False):
            offset = int(rng.integers(1, self.n_choices))
            child[layer] = (child[layer] + offset) % self.n_choices
        return child

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Layer-wise uniform crossover: each layer taken from ``a`` or ``b`` at random."""
        take_a = rng.random(self.n_layers) < 0.5
        return np.where(take_a, np.asarray(a), np.asarray(b)).astype(np.int64)

    @property
    def _place(self) -> np.ndarray:
        return self.n_choices ** np.arange(self.n_layers - 1, -1, -1, dtype=np.int64)

    def encode(self, choices) -> np.ndarray | int:
        """Integer code(s) (layer 0 most significant) of one ``(L,)`` or many ``(n, L)`` choice vectors.

        Raises:
            ValueError: wrong last dimension or a choice out of range.
        """
        arr = np.asarray(choices, dtype=np.int64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n_layers:
            raise ValueError(f"expected architectures of shape (n, {self.n_layers}) or ({self.n_layers},); "
                             f"got {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_choices):
            raise ValueError(f"choices must lie in 0..{self.n_choices - 1}")
        codes = arr @ self._place
        return int(codes) if codes.ndim == 0 else codes

    def decode(self, codes) -> np.ndarray:
        """Choice vector(s) of integer code(s): ``(L,)`` for a scalar, ``(n, L)`` for an array."""
        arr = np.asarray(codes, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.size):
            raise ValueError(f"architecture codes must lie in 0..{self.size - 1}")
        return (arr[..., None] // self._place) % self.n_choices

    def one_hot(self, choices) -> np.ndarray:
        """``(n, n_layers * n_choices)`` indicators of each layer's choice (a predictor's encoding)."""
        arr = np.atleast_2d(np.asarray(choices, dtype=np.int64))
        self.encode(arr)  # validates shape and range
        out = np.zeros((len(arr), self.n_layers * self.n_choices))
        out[np.arange(len(arr))[:, None], np.arange(self.n_layers) * self.n_choices + arr] = 1.0
        return out

    def key(self, choices: np.ndarray) -> str:
        """Canonical string (for the full space) or a generic one (for test spaces)."""
        if self.n_layers == N_LAYERS and self.n_choices == N_CHOICES:
            return arch_string(choices)
        return "-".join(str(int(c)) for c in choices)


LINAS_SPACE = SearchSpace()


def encode(choices) -> np.ndarray | int:
    """Integer code(s) of LINAS architectures (see :meth:`SearchSpace.encode`)."""
    return LINAS_SPACE.encode(choices)


def decode(codes) -> np.ndarray:
    """LINAS architecture(s) of integer code(s) (see :meth:`SearchSpace.decode`)."""
    return LINAS_SPACE.decode(codes)
