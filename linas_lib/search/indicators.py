"""Pareto-front quality indicators: hypervolume (HV) and inverted generational distance (IGD).

Thin, input-checked wrappers over pymoo (``pymoo.indicators.hv.HV``,
``pymoo.indicators.igd.IGD``) and pymoo's non-dominated sorting. All objectives are
*minimised*. pymoo would quietly return 0 for an empty front or propagate NaN; here bad input
is an error that says what is wrong:

* an empty front, a NaN/inf objective, a wrong shape -> :class:`ValueError`;
* a point that does not strictly dominate the HV reference point -> :class:`ValueError`
  (filter first with :func:`inside_reference`; an experiment decides explicitly what a
  front with no point inside the reference box scores, see
  :class:`linas_lib.search.experiment.ParetoExperiment`).

The indicator objects are built once per reference (:class:`Hypervolume`,
:class:`InvertedGenerationalDistance`) and then applied to many fronts, as pymoo intends.
"""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.indicators.igd import IGD
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


def as_objectives(F, name: str = "objectives", n_obj: int | None = None) -> np.ndarray:
    """Validate an objective matrix and return it as a float ``(n, m)`` array.

    Args:
        F: points, shape ``(n, m)`` (a single point ``(m,)`` is accepted as one row).
        name: what the matrix is, for the error message.
        n_obj: required number of objectives ``m`` (``None``: any, at least 1).

    Raises:
        ValueError: empty, not 2-D, wrong number of objectives, or not finite.
    """
    arr = np.asarray(F, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be an (n, m) array of objective values; got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: an indicator needs at least one point")
    if n_obj is not None and arr.shape[1] != n_obj:
        raise ValueError(f"{name} has {arr.shape[1]} objectives; expected {n_obj}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} has a non-finite value (NaN or inf) in row {row}: {arr[row].tolist()}")
    return arr


def as_reference_point(ref, n_obj: int | None = None) -> np.ndarray:
    """Validate a reference point (finite, 1-D, ``n_obj`` entries)."""
    arr = np.asarray(ref, dtype=float)
    if arr.ndim != 1 or arr.size == 0 or (n_obj is not None and arr.size != n_obj):
        want = f"{n_obj} entries" if n_obj is not None else "a 1-D vector"
        raise ValueError(f"reference point must be {want}; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"reference point must be finite; got {arr.tolist()}")
    return arr


def inside_reference(F, ref) -> np.ndarray:
    """Boolean mask of the rows of ``F`` that strictly dominate ``ref`` (the HV box)."""
    F = np.asarray(F, dtype=float)
    return np.all(F < np.asarray(ref, dtype=float), axis=1)


def nondominated(F) -> np.ndarray:
    """Indices of the non-dominated rows of ``F`` (pymoo non-dominated sorting), ascending."""
    F = as_objectives(F)
    return np.sort(NonDominatedSorting().do(F, only_non_dominated_front=True))


def pareto_ranks(F) -> np.ndarray:
    """Non-domination rank of every row (0 = first front), via pymoo."""
    F = as_objectives(F)
    _, rank = NonDominatedSorting().do(F, return_rank=True)
    return np.asarray(rank, dtype=int)


class Hypervolume:
    """Hypervolume with a fixed reference point, built once and applied to many fronts.

    Args:
        ref: the reference point (minimisation: every counted point must be below it).
    """

    def __init__(self, ref):
        self.ref = as_reference_point(ref)
        self._indicator = HV(ref_point=self.ref)

    def __call__(self, F) -> float:
        """HV of the points ``F``.

        Raises:
            ValueError: empty/NaN input, or a point that does not strictly dominate the
                reference point.
        """
        F = as_objectives(F, "front", n_obj=self.ref.size)
        outside = ~inside_reference(F, self.ref)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"point {F[row].tolist()} does not dominate the reference point {self.ref.tolist()}"
                f" ({int(outside.sum())} of {len(F)} points outside); filter with inside_reference()"
                " or choose a larger reference point"
            )
        return float(self._indicator(F))


class InvertedGenerationalDistance:
    """IGD against a fixed reference front: mean distance from each reference point to ``F``.

    Args:
        ref_front: the reference front, shape ``(k, m)``.
    """

    def __init__(self, ref_front):
        self.ref_front = as_objectives(ref_front, "reference front")
        self._indicator = IGD(self.ref_front)

    def __call__(self, F) -> float:
        """IGD of the points ``F`` (lower is better; 0 when ``F`` covers the reference front)."""
        F = as_objectives(F, "front", n_obj=self.ref_front.shape[1])
        return float(self._indicator(F))


def hv_improvement_2d(front, candidates, ref) -> np.ndarray:
    """Exact hypervolume each candidate would add to ``front`` on its own (two minimised objectives).

    Vectorised over candidates: an acquisition scores thousands per step, where pymoo's HV
    takes one front at a time. The area a candidate adds is its box up to ``ref`` minus the
    staircase ``front`` already dominates. Points of ``front`` outside the reference box are
    ignored; a candidate outside it adds 0.

    >>> hv_improvement_2d([[2, 2]], [[1, 1], [3, 3]], [4, 4]).tolist()
    [5.0, 0.0]

    Args:
        front: ``(k, 2)`` points already found (``k`` may be 0).
        candidates: ``(n, 2)`` points.
        ref: the reference point.

    Returns:
        ``(n,)`` hypervolume improvements, ``>= 0``.

    Raises:
        ValueError: no candidate, a non-finite value, or points without exactly two objectives.
    """
    ref = as_reference_point(ref, n_obj=2)
    points = as_objectives(candidates, "candidates", n_obj=2)
    F = np.asarray(front, dtype=float)
    F = F.reshape(0, 2) if F.size == 0 else as_objectives(F, "front", n_obj=2)
    F = F[inside_reference(F, ref)]
    if len(F):
        F = F[nondominated(F)]
        F = F[np.argsort(F[:, 0], kind="stable")]
    # the staircase: from x = left[i] to right[i], the front dominates everything above height[i]
    left = np.concatenate([[-np.inf], F[:, 0]])
    right = np.concatenate([F[:, 0], [ref[0]]])
    height = np.concatenate([[ref[1]], F[:, 1]])
    width = np.clip(right[None, :] - np.maximum(left[None, :], points[:, :1]), 0.0, None)
    depth = np.clip(height[None, :] - points[:, 1:], 0.0, None)
    return (width * depth).sum(axis=1)


def hypervolume(F, ref) -> float:
    """Hypervolume of ``F`` (minimised) with reference point ``ref``.

    >>> hypervolume([[5, 5], [4, 6], [2, 7], [7, 4]], [10, 10])
    38.0

    Raises:
        ValueError: see :class:`Hypervolume`.
    """
    return Hypervolume(ref)(F)


def igd(F, ref_front) -> float:
    """Inverted generational distance of ``F`` to ``ref_front``.

    Raises:
        ValueError: empty/NaN input or mismatched numbers of objectives.
    """
    return InvertedGenerationalDistance(ref_front)(F)
