"""EPR: evolutionary Pareto refinement with pymoo's NSGA-II over the decoder search space.

The problem (:class:`ArchitectureProblem`) has one integer variable per layer (the choice
``0..C-1``; a choice vector is the integer code of :func:`linas_lib.space.encode` written
digit by digit). Objectives and budget constraints are those of
:mod:`linas_lib.search.objectives`: one target (``target=t``) or all targets jointly
(``target=None``).

Custom pymoo operators wrap the :class:`~linas_lib.space.SearchSpace` methods:
:class:`SpaceSampling` (any sampler of :mod:`linas_lib.search.samplers`),
:class:`LayerMutation` (1-2 layers get a different choice), :class:`LayerCrossover`
(layer-wise uniform crossover, two children per pair). :class:`ArchiveDuplicateElimination`
removes offspring that repeat each other, the population, *or any architecture the run has
already evaluated*, so no architecture is ever evaluated twice.

:func:`run_epr` drives NSGA-II through pymoo's ask/tell interface so the evaluation budget
is exact: the last generation is truncated to the evaluations left, and every evaluation
goes through the run's :class:`~linas_lib.search.archive.EvaluationArchive`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination

from ..space import SearchSpace
from .archive import EvaluationArchive
from .objectives import budget_constraints, objectives

Sampler = Callable[[np.random.Generator, int], np.ndarray]


class ArchitectureProblem(Problem):
    """pymoo problem: minimise (1 - WS mIoU, normalised latency) under latency budgets.

    Args:
        archive: the run's evaluation archive (counts and caches every evaluation).
        target: target index for a per-target front, ``None`` for the joint objectives.
        joint_targets: targets in the joint objectives (default: all).
    """

    def __init__(self, archive: EvaluationArchive, target: int | None, joint_targets=None):
        space = archive.space
        budgets = np.asarray(archive.latency.budgets_ms, dtype=float)
        if target is not None and not 0 <= target < budgets.size:
            raise ValueError(f"target index {target} out of range 0..{budgets.size - 1}")
        self.archive = archive
        self.target = target
        self.budgets = budgets
        self.joint_targets = None if joint_targets is None else np.asarray(joint_targets, dtype=int)
        n_joint = budgets.size if self.joint_targets is None else self.joint_targets.size
        super().__init__(
            n_var=space.n_layers,
            n_obj=2 if target is not None else 1 + n_joint,
            n_ieq_constr=1,
            xl=0,
            xu=space.n_choices - 1,
            vtype=int,
        )

    def _evaluate(self, X, out, *args, **kwargs):  # noqa: D102 (pymoo's signature)
        miou, lat = self.archive.evaluate(np.asarray(X, dtype=np.int64))
        out["F"] = objectives(miou, lat, self.budgets, self.target, self.joint_targets)
        out["G"] = budget_constraints(lat, self.budgets, self.target, self.joint_targets)


class SpaceSampling(Sampling):
    """Initial population from a sampler ``(rng, n) -> (n, L)`` (pymoo's generator is passed)."""

    def __init__(self, sampler: Sampler):
        super().__init__()
        self.sampler = sampler

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):  # noqa: D102
        return np.asarray(self.sampler(random_state, n_samples), dtype=np.int64)


class LayerMutation(Mutation):
    """Give 1..``max_layers`` random layers a different choice (:meth:`SearchSpace.mutate`)."""

    def __init__(self, space: SearchSpace, max_layers: int = 2):
        super().__init__(prob=1.0)
        self.space = space
        self.max_layers = max_layers

    def _do(self, problem, X, *args, random_state=None, **kwargs):  # noqa: D102
        X = np.asarray(X, dtype=np.int64)
        return np.stack([self.space.mutate(x, random_state, self.max_layers) for x in X]) if len(X) else X


class LayerCrossover(Crossover):
    """Layer-wise uniform crossover: two children per parent pair (:meth:`SearchSpace.crossover`)."""

    def __init__(self, space: SearchSpace, prob: float = 0.9):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.space = space

    def _do(self, problem, X, *args, random_state=None, **kwargs):  # noqa: D102
        X = np.asarray(X, dtype=np.int64)  # (2 parents, n_matings, L)
        first = [self.space.crossover(a, b, random_state) for a, b in zip(X[0], X[1])]
        second = [self.space.crossover(b, a, random_state) for a, b in zip(X[0], X[1])]
        return np.stack([np.stack(first), np.stack(second)])


class ArchiveDuplicateElimination(DuplicateElimination):
    """Drop offspring repeating each other, ``other`` populations, or archived architectures."""

    def __init__(self, archive: EvaluationArchive):
        super().__init__()
        self.archive = archive

    def _codes(self, pop) -> np.ndarray:
        return self.archive.space.encode(np.asarray(pop.get("X"), dtype=np.int64))

    def _do(self, pop, other, is_duplicate):  # noqa: D102
        codes = self._codes(pop)
        if other is None:
            seen = set(self.archive.codes())
            for i, code in enumerate(codes.tolist()):
                is_duplicate[i] = is_duplicate[i] or code in seen
                seen.add(code)
        else:
            others = set(self._codes(other).tolist())
            is_duplicate |= np.isin(codes, list(others))
        return is_duplicate


def build_nsga2(archive: EvaluationArchive, pop_size: int, sampler: Sampler) -> NSGA2:
    """NSGA-II with the space's operators and archive-aware duplicate elimination."""
    space = archive.space
    return NSGA2(
        pop_size=pop_size,
        sampling=SpaceSampling(sampler),
        crossover=LayerCrossover(space),
        mutation=LayerMutation(space, max_layers=2),
        eliminate_duplicates=ArchiveDuplicateElimination(archive),
    )


def run_epr(
    archive: EvaluationArchive,
    rng: np.random.Generator,
    pop_size: int,
    target: int | None = None,
    sampler: Sampler | None = None,
    joint_targets=None,
) -> EvaluationArchive:
    """Run NSGA-II until the archive's evaluation budget is spent (or no new offspring come).

    Args:
        archive: the run's archive; its budget is the run's budget.
        rng: random generator; pymoo gets ``int(rng.integers(2**31))`` as its seed.
        pop_size: NSGA-II population (and offspring) size.
        target: target index (one front) or ``None`` (joint multi-target objectives).
        sampler: initial-population sampler ``(rng, n) -> (n, L)``; uniform when ``None``.
        joint_targets: targets of the joint objectives (default: all).

    Returns:
        The same archive, filled.
    """
    if pop_size < 2:
        raise ValueError(f"pop_size must be >= 2; got {pop_size}")
    space = archive.space
    problem = ArchitectureProblem(archive, target, joint_targets)
    algorithm = build_nsga2(archive, pop_size, sampler or (lambda gen, n: space.sample(gen, n)))
    algorithm.setup(problem, termination=NoTermination(), seed=int(rng.integers(2**31)))
    while archive.remaining > 0:
        infills = algorithm.ask()
        if infills is None or len(infills) == 0:
            break  # nothing new can be generated (tiny spaces)
        infills = infills[: archive.remaining]
        algorithm.evaluator.eval(problem, infills, algorithm=algorithm)
        algorithm.tell(infills=infills)
    return archive
