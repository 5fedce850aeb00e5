"""Multi-objective Pareto search over the decoder space (C5, EPR, I3, multi-fidelity).

Modules, each with one job:

* :mod:`~linas_lib.search.indicators` -- HV and IGD (checked wrappers over pymoo), pymoo
  non-dominated sorting;
* :mod:`~linas_lib.search.objectives` -- per-target and joint objective/constraint vectors;
* :mod:`~linas_lib.search.archive` -- budgeted, repeat-free evaluation archive of one run and
  the shared weight-sharing accuracy cache;
* :mod:`~linas_lib.search.samplers` -- random, alpha-guided, uniform-Pareto and
  farthest-point samplers;
* :mod:`~linas_lib.search.epr` -- NSGA-II (pymoo) with the space's mutation and crossover;
* :mod:`~linas_lib.search.zero_cost` -- the NEAR effective-rank proxy (I3);
* :mod:`~linas_lib.search.methods` -- the compared methods at equal budgets;
* :mod:`~linas_lib.search.fidelity` -- multi-fidelity re-ranking and Kendall tau;
* :mod:`~linas_lib.search.experiment` -- fixed reference points, checkpointed runs, tables;
* :mod:`~linas_lib.search.report` -- what notebook ``05_pareto`` calls.

Searchers see architectures only through a :class:`~linas_lib.space.SearchSpace`, an accuracy
model (``evaluate``) and a latency model (``predict``), so tests run them on tiny spaces.
"""
