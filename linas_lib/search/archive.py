"""The evaluation archive of one search run: honest counting, a hard budget, no repeats.

Every searcher (random, alpha-guided, EPR, zero-cost guided) asks for weight-sharing
accuracies only through an :class:`EvaluationArchive`. The archive

* evaluates each distinct architecture at most once per run and counts it once;
* refuses to go past the run's evaluation budget (:class:`BudgetExhausted`);
* keeps the evaluation *order*, so quality-vs-evaluations curves come from its prefixes;
* may share a :class:`AccuracyCache` with other runs: weight-sharing evaluation is
  deterministic, so a value computed for another method or seed is reused to save wall
  time -- it still counts as one evaluation of *this* run.

The accuracy model is any object with ``evaluate(choices (n, L)) -> (n,)`` (the supernet's
evaluator, or a fake in tests); the latency model any object with
``predict(choices (n, L)) -> (n, T)`` ms and ``target_names`` / ``budgets_ms``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from ..keys import atomic_write_text, load_cache_json
from ..space import SearchSpace


class AccuracyModel(Protocol):
    """What searchers need from an accuracy source."""

    def evaluate(self, choices: np.ndarray) -> np.ndarray:
        """mIoU of each architecture, shape ``(n,)``."""


class LatencyModel(Protocol):
    """What searchers need from a latency source."""

    target_names: tuple[str, ...]
    budgets_ms: np.ndarray

    def predict(self, choices: np.ndarray) -> np.ndarray:
        """Latency (ms) of each architecture on each target, shape ``(n, T)``."""


class BudgetExhausted(ValueError):
    """A run asked for more new evaluations than its budget has left."""


def unique_rows(space: SearchSpace, choices, exclude=()) -> np.ndarray:
    """Rows of ``choices`` in first-occurrence order without repeats or codes in ``exclude``."""
    codes = np.atleast_1d(space.encode(choices))
    seen = set(int(c) for c in exclude)
    keep = []
    for i, code in enumerate(codes.tolist()):
        if code not in seen:
            seen.add(code)
            keep.append(i)
    return np.asarray(choices, dtype=np.int64)[keep]


def _cache_problem(data) -> str:
    """Why an accuracy cache's content is unusable ("" when it maps integer codes to finite floats)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for key, value in data.items():
        if not (key.isascii() and key.isdigit()):
            return f"key {key!r} is not an architecture code"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            return f"code {key}: {value!r} is not a finite number"
    return ""


class AccuracyCache:
    """Weight-sharing accuracies by architecture code, shared across runs, optionally on disk.

    Args:
        model: the accuracy model that computes missing values.
        path: a JSON file to load from and :meth:`save` to (``None``: memory only).
    """

    def __init__(self, model: AccuracyModel, path: Path | None = None):
        self.model = model
        self.path = Path(path) if path is not None else None
        self.values: dict[int, float] = {}
        self.n_computed = 0
        if self.path is not None:
            saved = load_cache_json(self.path, "accuracy cache", _cache_problem)
            self.values = {int(k): float(v) for k, v in (saved or {}).items()}

    def lookup(self, space: SearchSpace, choices: np.ndarray) -> np.ndarray:
        """Accuracy of every row, computing the missing ones in one batched call."""
        codes = np.atleast_1d(space.encode(choices))
        missing = [i for i, c in enumerate(codes.tolist()) if c not in self.values]
        if missing:
            fresh = np.asarray(self.model.evaluate(np.asarray(choices)[missing]), dtype=float).reshape(-1)
            if fresh.shape != (len(missing),) or not np.isfinite(fresh).all():
                raise ValueError(
                    f"accuracy model returned {fresh.shape} values (expected {len(missing)}) "
                    f"or non-finite ones: {fresh[:5].tolist()}"
                )
            for i, value in zip(missing, fresh.tolist()):
                self.values[int(codes[i])] = value
            self.n_computed += len(missing)
        return np.array([self.values[int(c)] for c in codes], dtype=float)

    def save(self) -> None:
        """Write the cache atomically, merged with what other processes saved to the same file
        meanwhile (under a lock file), so that several processes, e.g. ``linas records run`` on
        disjoint seeds, can share one cache (no-op for a memory-only cache).

        Raises:
            ValueError: the file holds another value for an architecture this cache holds
                (weight-sharing evaluation is meant to be deterministic).
        """
        if self.path is None:
            return
        with _locked(self.path.with_name(self.path.name + ".lock")):
            saved = load_cache_json(self.path, "accuracy cache", _cache_problem) or {}
            on_disk = {int(k): float(v) for k, v in saved.items()}
            differ = sorted(c for c in on_disk.keys() & self.values.keys() if on_disk[c] != self.values[c])
            if differ:
                code = differ[0]
                raise ValueError(
                    f"{self.path}: {len(differ)} architectures' saved WS accuracy differs from this process's "
                    f"(code {code}: saved {on_disk[code]!r}, here {self.values[code]!r}); two evaluations of one "
                    "architecture disagree, so the cache is not merged"
                )
            self.values = {**on_disk, **self.values}
            atomic_write_text(self.path, json.dumps({str(k): v for k, v in self.values.items()}))


@contextlib.contextmanager
def _locked(lock_path: Path):
    """Hold an exclusive advisory lock on ``lock_path`` (created if absent) while the block runs."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EvaluationArchive:
    """Ordered, budgeted, repeat-free evaluations of one search run.

    Args:
        space: the search space.
        accuracy: an :class:`AccuracyCache` (shared) or a bare accuracy model.
        latency: the latency model (``predict`` -> ``(n, T)`` ms).
        budget: maximum number of distinct architectures this run may evaluate.
    """

    def __init__(self, space: SearchSpace, accuracy, latency: LatencyModel, budget: int):
        if budget < 1:
            raise ValueError(f"evaluation budget must be >= 1; got {budget}")
        self.space = space
        self.cache = accuracy if isinstance(accuracy, AccuracyCache) else AccuracyCache(accuracy)
        self.latency = latency
        self.budget = int(budget)
        self._index: dict[int, int] = {}
        self._choices: list[np.ndarray] = []
        self._miou: list[float] = []
        self._lat: list[np.ndarray] = []

    @property
    def n_evals(self) -> int:
        """Distinct architectures evaluated so far."""
        return len(self._choices)

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return self.budget - self.n_evals

    def codes(self) -> list[int]:
        """Codes of the evaluated architectures (a copy; order of evaluation)."""
        return list(self._index)

    def contains(self, choices) -> np.ndarray:
        """Whether each row has been evaluated already."""
        return np.array([int(c) in self._index for c in np.atleast_1d(self.space.encode(choices))], dtype=bool)

    def new_rows(self, choices) -> np.ndarray:
        """The rows not evaluated yet, repeats removed, order kept."""
        return unique_rows(self.space, choices, exclude=self._index)

    def evaluate(self, choices) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy ``(n,)`` and latency ``(n, T)`` of every row; new ones are counted.

        Raises:
            BudgetExhausted: the rows hold more new architectures than the budget has left.
        """
        choices = np.asarray(choices, dtype=np.int64)
        fresh = self.new_rows(choices)
        if len(fresh) > self.remaining:
            raise BudgetExhausted(
                f"{len(fresh)} new architectures requested but only {self.remaining} of the budget"
                f" of {self.budget} evaluations are left"
            )
        if len(fresh):
            self._add(fresh)
        rows = [self._index[int(c)] for c in np.atleast_1d(self.space.encode(choices))]
        return np.asarray(self._miou)[rows], np.asarray(self._lat)[rows]

    def _add(self, fresh: np.ndarray) -> None:
        miou = self.cache.lookup(self.space, fresh)
        lat = np.asarray(self.latency.predict(fresh), dtype=float)
        if lat.ndim != 2 or lat.shape[0] != len(fresh) or not np.isfinite(lat).all():
            raise ValueError(f"latency model returned shape {lat.shape} or non-finite values")
        for row, code in enumerate(np.atleast_1d(self.space.encode(fresh)).tolist()):
            self._index[code] = len(self._choices)
            self._choices.append(fresh[row])
            self._miou.append(float(miou[row]))
            self._lat.append(lat[row])

    def choices(self) -> np.ndarray:
        """Evaluated architectures in evaluation order, ``(n, L)``."""
        return np.asarray(self._choices, dtype=np.int64).reshape(-1, self.space.n_layers)

    def miou(self) -> np.ndarray:
        """Weight-sharing mIoU in evaluation order, ``(n,)``."""
        return np.asarray(self._miou, dtype=float)

    def latency_ms(self) -> np.ndarray:
        """Predicted latency in evaluation order, ``(n, T)``."""
        return np.asarray(self._lat, dtype=float).reshape(self.n_evals, -1)
