"""Latency predictors over LUTs: vectorised numpy lookups and a differentiable torch form.

Variants (one :class:`LatencyModel` interface, ``predict(choices (n, 5)) -> (n, n_targets)``):

* ``op_only``     (a) naive baseline: encoder cost + sum of bare-op entries (the original
  LINAS LUT plus a measured encoder constant; decoder-only targets: the op sum alone);
* ``projected``   (b+c) fixed costs (pre, encoder, bottleneck, head, post) + sum of
  projection-inclusive entries (op, ReLU, BN, 1x1 projection, skip-add);
* ``interaction`` (d, I4) ``projected`` + sum over adjacent slots of the pair interaction;
* ``calibrated``  the variant a LUT's ``calibration`` block names, scaled and shifted by its
  affine fit on measured anchor architectures (:func:`linas_lib.latency.lut.calibrate`):
  table and pairs times the slope, fixed cost times the slope plus the intercept, so the
  vectorised and the differentiable predictors both give the calibrated latency.

Decoder-only (external) targets have op-only entries only, so every variant predicts their
op sum (documented, not hidden). For the supernet, :func:`lut_tensor` gives the tables as
tensors and :func:`expected_latency` the differentiable ``E[lat] = fixed + sum p * LUT +
sum_l p_l^T I_l p_{l+1}`` (the interaction term is the expectation of the pair product,
exact for independent layer distributions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..space import N_CHOICES, N_LAYERS, OPS, WIDTHS
from . import lut as L

PREDICT_VARIANTS = ("op_only", "projected", "interaction", "calibrated")
CHUNK = 1 << 19


@dataclass(frozen=True)
class LatencyModel:
    """Per-target LUT tables of one variant, predicting in milliseconds.

    Attributes:
        target_names: one name per target (column order of :meth:`predict`).
        budgets_ms: budget of each target (ms), same order.
        scopes: ``end-to-end`` or ``decoder-only`` per target.
        variant: one of :data:`PREDICT_VARIANTS`.
        table: ``(n_targets, 5, 21)`` per-layer latency of each choice.
        fixed: ``(n_targets,)`` architecture-independent cost.
        pair: ``(n_targets, 4, 21, 21)`` adjacent-layer interaction (zeros unless ``interaction`` or calibrated on it).
    """

    target_names: tuple[str, ...]
    budgets_ms: np.ndarray
    scopes: tuple[str, ...]
    variant: str
    table: np.ndarray
    fixed: np.ndarray
    pair: np.ndarray

    def predict(self, choices) -> np.ndarray:
        """Latency (ms) of architectures ``(n, 5)`` (or one ``(5,)``) -> ``(n, n_targets)``."""
        arr = np.asarray(choices)
        single = arr.ndim == 1
        arr = np.atleast_2d(arr)
        if arr.shape[1] != N_LAYERS or arr.min(initial=0) < 0 or arr.max(initial=0) >= N_CHOICES:
            raise ValueError(f"choices must have shape (n, {N_LAYERS}) with entries 0..{N_CHOICES - 1}")
        out = np.empty((arr.shape[0], len(self.target_names)))
        for start in range(0, arr.shape[0], CHUNK):
            out[start:start + CHUNK] = self._predict_chunk(arr[start:start + CHUNK].astype(np.intp))
        return out[0] if single else out

    def _predict_chunk(self, arr: np.ndarray) -> np.ndarray:
        # Four row gathers from (441, n_targets) tables, one per pair of adjacent layers:
        # (l0, l1): t0 + t1 + I0, (l1, l2): I1, (l2, l3): t2 + t3 + I2, (l3, l4): t4 + I3.
        g = self._gather_tables()
        n = N_CHOICES
        total = g[0][arr[:, 0] * n + arr[:, 1]]
        total += g[1][arr[:, 1] * n + arr[:, 2]]
        total += g[2][arr[:, 2] * n + arr[:, 3]]
        total += g[3][arr[:, 3] * n + arr[:, 4]]
        return total

    def _gather_tables(self) -> list[np.ndarray]:
        """The four ``(441, n_targets)`` tables of :meth:`_predict_chunk` (fixed cost in the first)."""
        t, pair = self.table, self._pair()
        first = t[:, 0, :, None] + t[:, 1, None, :] + pair[:, 0] + self.fixed[:, None, None]
        third = t[:, 2, :, None] + t[:, 3, None, :] + pair[:, 2]
        fourth = t[:, 4, None, :] + pair[:, 3]
        return [np.ascontiguousarray(x.reshape(len(self.target_names), -1).T) for x in (first, pair[:, 1], third, fourth)]

    def _pair(self) -> np.ndarray:
        """The pair terms the variant uses (none for ``op_only`` and ``projected``)."""
        return np.zeros_like(self.pair) if self.variant in ("op_only", "projected") else self.pair

    def fastest(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact fastest architecture of every target and its latency.

        Latency is a chain (per-layer terms plus adjacent-pair terms), so a min-plus dynamic
        programme over the layers finds the optimum exactly, pair interactions included.

        Returns:
            ``(choices (n_targets, 5), ms (n_targets,))``.
        """
        pair = self._pair()
        archs, best_ms = [], []
        for t in range(len(self.target_names)):
            value, back = self.table[t, 0].astype(float), []
            for layer in range(1, N_LAYERS):
                step = value[:, None] + pair[t, layer - 1] + self.table[t, layer][None, :]
                back.append(step.argmin(axis=0))
                value = step.min(axis=0)
            arch = [int(value.argmin())]
            for prev in reversed(back):
                arch.append(int(prev[arch[-1]]))
            archs.append(arch[::-1])
            best_ms.append(float(value.min() + self.fixed[t]))
        return np.array(archs, dtype=np.int64), np.array(best_ms)

    def feasible(self, choices) -> np.ndarray:
        """Boolean ``(n, n_targets)``: predicted latency within each target's budget."""
        return self.predict(choices) <= self.budgets_ms

    def subset(self, names) -> "LatencyModel":
        """The same model restricted to the named targets (in the given order)."""
        idx = [self.target_names.index(n) for n in names]
        return LatencyModel(tuple(self.target_names[i] for i in idx), self.budgets_ms[idx],
                            tuple(self.scopes[i] for i in idx), self.variant, self.table[idx],
                            self.fixed[idx], self.pair[idx])


def model_from_luts(luts: dict[str, dict], budgets_ms: dict[str, float], variant: str) -> LatencyModel:
    """Build a :class:`LatencyModel` from loaded LUT dicts keyed by target name."""
    if variant not in PREDICT_VARIANTS:
        raise ValueError(f"unknown latency variant {variant!r}; expected one of {PREDICT_VARIANTS}")
    names = tuple(luts)
    tables, fixed, pairs = [], [], []
    for name in names:
        t, f, p = _target_terms(luts[name], variant)
        tables.append(t), fixed.append(f), pairs.append(p)
    return LatencyModel(names, np.array([budgets_ms[n] for n in names], dtype=float),
                        tuple(luts[n]["scope"] for n in names), variant, np.stack(tables),
                        np.array(fixed), np.stack(pairs))


def _target_terms(lut: dict, variant: str):
    """``(table, fixed, pair)`` of one target for one variant."""
    zeros = np.zeros((N_LAYERS - 1, N_CHOICES, N_CHOICES))
    if variant == "calibrated" and lut["scope"] != "decoder-only":
        cal = lut.get("calibration")
        if cal is None:
            raise L.LUTError(f"{lut.get('source', lut['target'])}: no calibration block (the calibrated variant "
                             "needs one: notebook 02 fits it on measured anchor architectures)")
        table, fixed, pair = _target_terms(lut, cal["base"])
        return cal["slope"] * table, cal["slope"] * fixed + cal["intercept"], cal["slope"] * pair
    if lut["scope"] == "decoder-only" or variant in ("op_only", "calibrated"):
        fixed = 0.0 if lut["scope"] == "decoder-only" else L.fixed_total(lut, ("encoder",))
        return L.entry_table(lut, "op_only"), fixed, zeros
    pair = L.pair_table(lut) if variant == "interaction" else zeros
    return L.entry_table(lut, "projected"), L.fixed_total(lut), pair


# ------------------------------------------------------------------ differentiable form


def lut_tensor(model: LatencyModel, dtype=torch.float32, device="cpu"):
    """The model's tables as tensors for the supernet's latency loss.

    Returns:
        ``(table (n_targets, 5, 21), fixed (n_targets,), pair (n_targets, 4, 21, 21))``;
        ``pair`` is all zeros unless the variant is ``interaction`` or calibrated on it.
    """
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
    return as_t(model.table), as_t(model.fixed), as_t(model.pair)


def joint_probs(probs) -> torch.Tensor:
    """``(..., 5, 21)`` choice probabilities from ``(..., 5, 21)`` or ``(op (...,5,7), width (...,5,3))``."""
    if isinstance(probs, (tuple, list)):
        op_p, width_p = probs
        if op_p.shape[-1] != len(OPS) or width_p.shape[-1] != len(WIDTHS):
            raise ValueError(f"expected op probs (..., 5, {len(OPS)}) and width probs (..., 5, {len(WIDTHS)})")
        return (op_p[..., :, None] * width_p[..., None, :]).flatten(-2)
    if probs.shape[-2:] != (N_LAYERS, N_CHOICES):
        raise ValueError(f"expected probs of shape (..., {N_LAYERS}, {N_CHOICES}), got {tuple(probs.shape)}")
    return probs


def expected_latency(probs, table: torch.Tensor, fixed: torch.Tensor, pair: torch.Tensor | None = None):
    """Differentiable expected latency (ms) per target.

    Args:
        probs: ``(5, 21)`` choice probabilities per layer, or a pair ``(op (5, 7), width
            (5, 3))`` of independent op and width probabilities (a leading batch dim is allowed).
        table, fixed, pair: from :func:`lut_tensor`.

    Returns:
        ``(n_targets,)`` (or ``(batch, n_targets)``) tensor; equals :meth:`LatencyModel.predict`
        for one-hot probabilities.
    """
    p = joint_probs(probs).to(table.dtype)
    total = fixed + torch.einsum("...lc,tlc->...t", p, table)
    if pair is not None:
        total = total + torch.einsum("...sa,tsab,...sb->...t", p[..., :-1, :], pair, p[..., 1:, :])
    return total


# ------------------------------------------------------------------ profile-level entry point
