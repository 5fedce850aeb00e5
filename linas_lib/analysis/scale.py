"""What scale would reach the ranking issue's goals (issue 11; notebook 07_ws_shortfall).

The issue asks, where a goal is out of reach at CPU scale, what scale would reach it. Each lever
here is projected by the noise model that 07 checks on the seed extension (:mod:`.truth_seeds`):
Greiner's relation maps a Kendall tau to a correlation, each standalone seed is the
architecture's accuracy plus noise of its own, so a mean of ``m`` seeds has the Spearman-Brown
reliability, and a signal's correlation with that mean scales with the reliability's square root.

* ``seed_ceiling`` (goal: the table's seed-to-seed tau >= 0.8): a mean of ``m`` seeds against
  another mean of ``m`` (a table of ``2 m`` seeds split in halves). The seed extension measured
  ``m`` = 2 (``truth_seeds.halves_tau`` against ``truth_seeds.halves_expected``).
* ``seed_ceiling_mf`` (goal: multi-fidelity tau >= 0.9 on its top k): what a *perfect* predictor
  reaches against an ``m``-seed truth on those k architectures; no signal can pass it.
* a WS signal (goal: best WS tau >= 0.8): its tau against an ``m``-seed truth, projected from
  its tau against the table's mean. ``m`` -> inf is the most that more seeds can give it; for
  the limit of averaging trainings of the rule (:func:`~.ws_shortfall.replica_noise_rows`'
  ``tau_limit``) it is the most that more seeds and more trainings can give together.

``needed`` is the smallest ``m`` that reaches the goal, None where none does (``reachable`` 0):
then the scale that reaches it is not more of these, and the row says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .ranking import CONFIDENCE, _paired_ci, _pair_mean, kendall
from .truth_seeds import expected_tau
from .ws_shortfall import _tau, mean_reliability, truth_ceiling

SEED_COUNTS = (1, 2, 4, 8, 16, 32)  # the columns tau_m<m>; inf is tau_inf
MAX_SEEDS = 10_000  # beyond this ``needed`` is reported as not reachable
GOALS = {"seed_ceiling": 0.8, "seed_ceiling_mf": 0.9, "ws": 0.8}  # issue 11's marks
LEVERS = {"seed_ceiling": "seeds per half (an m-seed mean against another)",
          "seed_ceiling_mf": "seeds in the truth's mean (a perfect predictor on the top k)",
          "ws": "seeds in the truth's mean (this signal)"}


def halves_tau(seed_tau: float, m: float) -> float:
    """Tau of an ``m``-seed mean against another ``m``-seed mean (the table's own agreement)."""
    return _tau(mean_reliability(seed_tau, m))


def signal_tau(tau: float, seed_tau: float, n_from: int, m: float) -> float:
    """A signal's tau against an ``m``-seed truth, from its ``tau`` against an ``n_from``-seed one
    (:func:`~.truth_seeds.expected_tau` with one seed-pair tau for both truths; ``m`` may be inf)."""
    return expected_tau(tau, seed_tau, n_from, seed_tau, m)


def seeds_needed(project, goal: float) -> float | None:
    """The smallest ``m`` in 1..:data:`MAX_SEEDS` with ``project(m) >= goal``, None where even
    ``project(inf)`` stays below it (the projections rise with ``m``, so a bisection finds it)."""
    if not project(math.inf) >= goal:
        return None
    if project(1) >= goal:
        return 1.0
    low, high = 1, MAX_SEEDS
    if not project(high) >= goal:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if project(mid) >= goal else (mid, high)
    return float(high)


def _row(signal: str, kind: str, tau, project, n_now: int, lo=None, hi=None) -> dict:
    """One row: the projections of ``project(tau, m)`` and the seeds each of ``tau``, its CI's
    ends (monotone maps, so the ends map to the ends) need. A ceiling's ``tau_inf`` is 1 by
    construction (a mean of infinitely many seeds agrees with itself), so only a signal's is given."""
    goal = GOALS[kind]
    row = {"signal": signal, "goal": kind, "goal_tau": goal, "lever": LEVERS[kind], "n_now": n_now, "tau_now": tau,
           **{f"tau_m{m}": project(tau, m) for m in SEED_COUNTS}}
    if kind == "ws":
        row["tau_inf"] = project(tau, math.inf)
    needed = seeds_needed(lambda m: project(tau, m), goal)
    defined = math.isfinite(project(tau, 2))  # seeds that do not agree at all project nowhere
    row.update({"needed": needed, "reachable": float(needed is not None) if defined else math.nan})
    for end, value in (("lo", lo), ("hi", hi)):
        if value is not None and math.isfinite(value):
            row[f"tau_now_{end}"] = value
            if kind == "ws":
                row[f"tau_inf_{end}"] = project(value, math.inf)
            # a higher tau needs fewer seeds: the CI's low end gives needed_hi
            row[f"needed_{'hi' if end == 'lo' else 'lo'}"] = seeds_needed(lambda m: project(value, m), goal)
    return row


def ceiling_rows(shortfall_rows: Sequence[dict]) -> list[dict]:
    """The table's agreement and the multi-fidelity ceiling rows from 07's ``shortfall.csv``
    (``seed_ceiling`` and ``seed_ceiling_mf``, test mIoU, with their bootstrap CIs): each is one
    seed against another (``n_now`` 1), projected to means of ``m`` seeds."""
    from .ranking import HEADLINE, SEED_CEILING, SEED_CEILING_MF

    projections = {SEED_CEILING: ("seed_ceiling", halves_tau),
                   SEED_CEILING_MF: ("seed_ceiling_mf", truth_ceiling)}
    rows = []
    for r in shortfall_rows:
        if r["signal"] in projections and r["metric"] == HEADLINE:
            kind, project = projections[r["signal"]]
            rows.append(_row(r["signal"], kind, float(r["tau"]), project, 1, _float(r.get("tau_lo")),
                             _float(r.get("tau_hi"))))
    return rows


def signal_rows(columns: dict[str, np.ndarray], seeds: np.ndarray, n_resamples: int = 2000,
                seed: int = 0) -> list[dict]:
    """Each WS signal's projection to an ``m``-seed truth.

    Args:
        columns: ``{signal: scores}`` over the architectures of ``seeds``' rows.
        seeds: ``(n_archs, n_seeds)`` test mIoU of the table's training seeds (its mean is the truth).
        n_resamples, seed: the bootstrap over architectures of ``tau_inf`` (``_lo`` / ``_hi``),
            which recomputes the signal's tau and the seed-pair tau in every resample.
    """
    n = seeds.shape[1]
    rows = []
    for name, pred in columns.items():
        def limit(*cols):
            pair = _pair_mean(kendall)(*cols[1:])
            return signal_tau(kendall(cols[0], np.mean(cols[1:], axis=0)), pair, n, math.inf)

        pair = _pair_mean(kendall)(*seeds.T)
        row = _row(name, "ws", kendall(pred, seeds.mean(axis=1)), lambda t, m: signal_tau(t, pair, n, m), n)
        row["seed_pair_tau"] = pair
        row["tau_inf_lo"], row["tau_inf_hi"] = _paired_ci(limit, (pred, *seeds.T), n_resamples, CONFIDENCE, seed)
        rows.append(row)
    return rows


def limit_rows(noise_rows: Sequence[dict], seed_tau: float, n_seeds: int) -> list[dict]:
    """The limit of averaging trainings (07's ``replica_noise.csv``, each score and weights at its
    last step; none where that step has no limit) projected to an ``m``-seed truth: more
    trainings and more seeds together. The CI ends are ``tau_limit``'s mapped with the table's
    seed-pair tau held fixed (the seed tau's own uncertainty is not in them)."""
    last: dict[tuple, dict] = {}
    for r in noise_rows:
        key = (r["score"], r["weights"])
        if key not in last or int(r["steps"]) > int(last[key]["steps"]):
            last[key] = r
    rows = []
    for (score, weights), r in sorted(last.items()):
        if _float(r.get("tau_limit")) is None:
            continue
        row = _row(f"ws_replicas.{score}.{weights}.tau_limit", "ws", float(r["tau_limit"]),
                   lambda t, m: signal_tau(t, seed_tau, n_seeds, m), n_seeds,
                   _float(r.get("tau_limit_lo")), _float(r.get("tau_limit_hi")))
        rows.append({**row, "steps": int(r["steps"]), "seed_pair_tau": seed_tau})
    return rows


def study(shortfall_rows: Sequence[dict], scores, signals: Sequence[str], table_rows, noise_rows: Sequence[dict],
          truth_rows: Sequence[dict] = (), n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Every row of the scale study (``scale.csv``): :func:`ceiling_rows`, then the WS signals
    among ``signals`` (:func:`signal_rows`, against the table's seeds on ``scores``' architectures;
    those without every seed are left out), then :func:`limit_rows`; each checked where the seed
    extension measured the same scale (:func:`with_checks`, from 07's ``truth_seeds`` rows)."""
    from .ws_shortfall import seed_matrices

    rows = ceiling_rows(shortfall_rows)
    archs = [str(r["arch"]) for r in scores]
    _, test, _, _ = seed_matrices(table_rows, archs)
    keep = np.isfinite(test).all(axis=1)
    if test.shape[1] >= 2 and keep.sum() >= 3:
        ws = {s: np.array([float(r[s]) for r in scores])[keep] for s in signals if s.startswith("ws")}
        rows += signal_rows(ws, test[keep], n_resamples, seed)
        rows += limit_rows(noise_rows, _pair_mean(kendall)(*test[keep].T), test.shape[1])
    return with_checks(rows, truth_rows)


def with_checks(rows: Sequence[dict], truth_rows: Sequence[dict]) -> list[dict]:
    """The model checked on seeds no choice saw (:func:`~.truth_seeds.truth_seed_rows`): the
    table's own seeds against the seed extension's added seeds, ``measured_m`` the added seeds'
    count. The table's agreement: its seeds' mean against the added seeds' mean (``halves_tau``)
    beside the model's prediction with each group's own seed-pair tau (``halves_expected``); a WS
    signal: its tau against the added seeds' mean (``tau_held_out``) beside the prediction from
    its tau against the table's (``held_expected``). Against every seed's mean the check would
    not be independent: half of it is the truth the signal was read on. The limit rows have no
    such measurement."""
    groups = {r["truth"]: r for r in truth_rows if r.get("signal") == "truth"}
    measured = {r["signal"]: r for r in truth_rows if "tau_held_out" in r}
    if "held_out" not in groups:
        return list(rows)
    n_held = int(groups["held_out"]["n_seeds"])
    out = []
    for r in rows:
        check = {}
        if r["signal"] == "seed_ceiling":
            check = {"tau_measured": groups["held_out"]["halves_tau"], "tau_projected": groups["held_out"]["halves_expected"]}
        elif r["signal"] in measured:
            check = {"tau_measured": measured[r["signal"]]["tau_held_out"],
                     "tau_projected": measured[r["signal"]]["held_expected"]}
        out.append({**r, **({"measured_m": n_held, **{k: float(v) for k, v in check.items()}} if check else {})})
    return out


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def scale_summary(rows: Sequence[dict]) -> dict[str, float | None]:
    """``scale.needed.<signal>`` (None: no seed count reaches the goal), ``scale.reachable.<signal>``,
    a signal's ``scale.tau_inf.<signal>``, where the row has them ``_lo`` / ``_hi`` of both, and the
    extension's check, ``scale.tau_measured.<signal>`` and ``scale.tau_projected.<signal>``."""
    out: dict[str, float | None] = {}
    for r in rows:
        s = r["signal"]
        out[f"scale.reachable.{s}"] = r["reachable"]
        for key in ("needed", "tau_inf", "tau_measured", "tau_projected"):
            for end in ("", "_lo", "_hi"):
                if f"{key}{end}" in r:
                    value = r[f"{key}{end}"]
                    # a count is a JSON integer (the goals table prints it as one)
                    out[f"scale.{key}.{s}{end}"] = int(value) if key == "needed" and value is not None else value
    return out
