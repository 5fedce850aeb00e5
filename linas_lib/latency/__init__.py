"""Measured latency: harness, LUTs, predictors and end-to-end checks (C2, C3, C4, I4).

Modules: :mod:`.measure` (timing harness and runtimes), :mod:`.entries` (what each LUT
entry times), :mod:`.lut` (schema, builder, checker, external reader), :mod:`.predict`
(vectorised and differentiable predictors), :mod:`.targets` (a profile's targets turned into
LUTs and budgets, :func:`~.targets.latency_model`), :mod:`.settings` (how an entry is timed), :mod:`.e2e`
(whole-network latency and throughput), :mod:`.quiet` (is the machine quiet enough to time?),
:mod:`.report` (what the notebooks compute), :mod:`.c3` (the C3 throughput check and its heartbeat).
Submodules are imported on demand so ``linas lut`` works where only torch is installed.
"""
