"""Does a ranking verdict depend on which standalone seeds form the truth? (07_ws_shortfall)

Every signal of 04_ranking was designed and read against the benchmark table's mean over
``bench.seeds``, the *design* truth: the supernet variant, its one-shot length and weight
average, minus the WS loss as a score. The seed extension (``linas bench build --add-seeds``,
``bench/extension.json``) trained more seeds of the same architectures later with the same
recipe, and nothing was chosen on them. So each signal is scored against three truths on the
same architectures (test mIoU):

* ``design``: the mean over the table's seeds (what 04 reports);
* ``held_out``: the mean over the added seeds alone, a truth no choice saw;
* ``all``: the mean over every seed, the least noisy of the three.

A drop from ``design`` to ``held_out`` has two readings: choices fitted to the design seeds'
noise, or a noisier held-out truth. The second is measured: the seed-pair tau inside each group
gives each mean's reliability, and :func:`expected_tau` is the tau that noise alone predicts
against the held-out truth (Greiner's relation and Spearman-Brown, as in
:func:`~.ws_shortfall.truth_ceiling`). Paired bootstrap CIs over architectures say whether a
difference exceeds resampling noise. The untuned signals (FLOPs, parameters, latency, NEAR) are
the control arm: no design choice could fit them to the design seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .ranking import CONFIDENCE, _frame, _pair_mean, _paired_ci, kendall
from .ws_shortfall import _r, _tau, seed_matrices, truth_ceiling

TRUTHS = ("design", "held_out", "all")
DIFFERENCES = ("held_minus_design", "all_minus_design")


class TruthSeedsError(ValueError):
    """The table and its extension cannot support the study (the message says why)."""


def seed_groups(scores, table_rows, added_rows) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(archs, design, held_out)``: test mIoU per seed, ``(n_archs, n_seeds)`` each, of the
    architectures of ``scores`` that have every seed of both groups, in ``scores``' order.

    Raises:
        TruthSeedsError: a group has fewer than 2 seeds, or fewer than 3 architectures have them all.
    """
    archs = [str(a) for a in _frame(scores)["arch"]]
    _, design, _, design_seeds = seed_matrices(table_rows, archs)
    _, held, _, held_seeds = seed_matrices(added_rows, archs)
    if len(design_seeds) < 2 or len(held_seeds) < 2:
        raise TruthSeedsError(f"truth seeds: each group needs >= 2 seeds; the table has {len(design_seeds)}, "
                              f"the extension {len(held_seeds)}")
    keep = np.isfinite(design).all(axis=1) & np.isfinite(held).all(axis=1)
    if keep.sum() < 3:
        raise TruthSeedsError(f"truth seeds: {int(keep.sum())} architecture(s) of 04's scores have every seed of "
                              f"both groups; at least 3 are needed")
    return [a for a, k in zip(archs, keep) if k], design[keep], held[keep]


def expected_tau(tau: float, pair_from: float, n_from: int, pair_to: float, n_to: int) -> float:
    """The tau a signal with ``tau`` against the mean of ``n_from`` seeds (seed-pair tau
    ``pair_from``) is expected to reach against the mean of ``n_to`` other seeds (seed-pair tau
    ``pair_to``) when only the truths' noise differs: the correlation scales with the square
    root of each mean's reliability. NaN where a ceiling is undefined."""
    ceiling_from, ceiling_to = truth_ceiling(pair_from, n_from), truth_ceiling(pair_to, n_to)
    if not (ceiling_from > 0 and ceiling_to > 0):
        return math.nan
    return _tau(_r(tau) * _r(ceiling_to) / _r(ceiling_from))


def truth_seed_rows(scores, signals: Sequence[str], table_rows, added_rows, n_resamples: int = 2000,
                    seed: int = 0) -> list[dict]:
    """One row per signal (a ``scores`` column): ``tau_<truth>`` for each of :data:`TRUTHS`,
    ``held_minus_design`` and ``all_minus_design`` with paired bootstrap CIs (``_lo`` / ``_hi``,
    resampling architectures), ``held_expected`` (:func:`expected_tau`) and
    ``held_minus_expected``; then a ``truth`` row per group with its seed-pair tau
    (``pair_tau``), its seed count and the tau between the two groups' means (``halves_tau``).
    """
    archs, design, held = seed_groups(scores, table_rows, added_rows)
    df = _frame(scores).set_index("arch").loc[archs]
    means = {"design": design.mean(axis=1), "held_out": held.mean(axis=1),
             "all": np.concatenate([design, held], axis=1).mean(axis=1)}
    pair = {"design": _pair_mean(kendall)(*design.T), "held_out": _pair_mean(kendall)(*held.T)}
    rows = []
    for signal in signals:
        pred = df[signal].to_numpy(dtype=float)
        row = {"signal": signal, "n": len(archs), **{f"tau_{t}": kendall(pred, means[t]) for t in TRUTHS}}
        for name, other in (("held_minus_design", "held_out"), ("all_minus_design", "all")):
            low, high = _paired_ci(_tau_change, (pred, means["design"], means[other]), n_resamples, CONFIDENCE, seed)
            row.update({name: row[f"tau_{other}"] - row["tau_design"], f"{name}_lo": low, f"{name}_hi": high})
        row["held_expected"] = expected_tau(row["tau_design"], pair["design"], design.shape[1],
                                            pair["held_out"], held.shape[1])
        row["held_minus_expected"] = row["tau_held_out"] - row["held_expected"]
        rows.append(row)
    halves = kendall(means["design"], means["held_out"])
    for group, matrix in (("design", design), ("held_out", held)):
        rows.append({"signal": "truth", "truth": group, "n": len(archs), "n_seeds": matrix.shape[1],
                     "pair_tau": pair[group], "halves_tau": halves})
    return rows


def _tau_change(pred, design, other) -> float:
    """Tau of ``pred`` against ``other`` minus against ``design`` (the same resample)."""
    return kendall(pred, other) - kendall(pred, design)


def truth_seed_summary(rows: Sequence[dict]) -> dict[str, float]:
    """``truth_seeds.*`` summary keys of :func:`truth_seed_rows` (empty without rows):
    ``tau.<signal>.<truth>``, ``<difference>.<signal>`` with ``_lo`` / ``_hi``,
    ``held_expected.<signal>``, ``pair_tau.<group>``, ``halves_tau``, ``n_archs``, and
    ``n_held_drop_shown``: the signals whose held-out drop has a CI wholly below 0."""
    out: dict[str, float] = {}
    signal_rows = [r for r in rows if r["signal"] != "truth"]
    for r in signal_rows:
        s = r["signal"]
        out.update({f"truth_seeds.tau.{s}.{t}": float(r[f"tau_{t}"]) for t in TRUTHS})
        for d in DIFFERENCES:
            out.update({f"truth_seeds.{d}.{s}{end}": float(r[f"{d}{end}"]) for end in ("", "_lo", "_hi")})
        out[f"truth_seeds.held_expected.{s}"] = float(r["held_expected"])
    for r in (r for r in rows if r["signal"] == "truth"):
        out[f"truth_seeds.pair_tau.{r['truth']}"] = float(r["pair_tau"])
        out["truth_seeds.halves_tau"] = float(r["halves_tau"])
        out["truth_seeds.n_archs"] = float(r["n"])
    if signal_rows:
        out["truth_seeds.n_held_drop_shown"] = float(sum(float(r["held_minus_design_hi"]) < 0 for r in signal_rows))
    return out
