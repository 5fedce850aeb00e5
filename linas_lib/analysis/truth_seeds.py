"""Does a ranking verdict depend on which standalone seeds form the truth? (07_ws_shortfall)

Every signal of 04_ranking was designed and read against the benchmark table's mean over
``bench.seeds``, the *design* truth: the supernet variant, its one-shot length and weight
average, minus the WS loss as a score. The seed extension (``linas bench build --add-seeds``,
``bench/extension.json``) trained more seeds of the same architectures with the same recipe,
and no choice of 04's signals read them (a few of them can be the pilot's items, trained beside
the table: held out all the same). So each signal is scored against three truths on the same
architectures (test mIoU):

* ``design``: the mean over the table's seeds (what 04 reports);
* ``held_out``: the mean over the added seeds alone, a truth no choice saw;
* ``all``: the mean over every seed, the least noisy of the three. It contains the design
  seeds, so it is no held-out test: it says what a larger table would change.

A drop from ``design`` to ``held_out`` has two readings: choices fitted to the design seeds'
noise, or a noisier held-out truth. The second is modelled: the seed-pair tau inside each group
gives each mean's reliability, and :func:`expected_tau` is the tau that noise alone predicts
against the held-out truth (Greiner's relation and Spearman-Brown, as in
:func:`~.ws_shortfall.truth_ceiling`). ``held_minus_expected`` is the drop beyond it, the
overfitting test; its CI resamples architectures and recomputes the pair taus and the
expectation in each resample. The model is checked on the two truths themselves
(``halves_tau`` against ``halves_expected``), and the untuned signals (FLOPs, parameters,
latency, NEAR) are the control arm: no design choice could fit them to the design seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .ranking import CONFIDENCE, _frame, _pair_mean, _paired_ci, kendall
from .ws_shortfall import _r, _tau, seed_matrices, truth_ceiling

TRUTHS = ("design", "held_out", "all")
DIFFERENCES = ("held_minus_design", "all_minus_design", "held_minus_expected")
CONTROL = ("near", "near_exact", "near_init", "flops", "params", "latency")  # no design choice read the table for these
POOLS = ("tuned", "control", "tuned_minus_control")
TABLE, EXTENSION = "the table (bench/table.csv)", "the extension (bench/extension.json's items)"


class TruthSeedsError(ValueError):
    """The table and its extension cannot support the study (the message says why)."""


def seed_groups(scores, table_rows, added_rows) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both seed groups' test mIoU on the architectures of 04's scores that have every seed.

    Args:
        scores: 04's ``scores.csv`` rows (``arch`` and the signals).
        table_rows: the benchmark table's rows (the design seeds).
        added_rows: the seed extension's rows (:func:`linas_lib.analysis.bench.extension_rows`).

    Returns:
        ``(archs, design, held_out)``: the architectures in ``scores``' order and their
        ``(n_archs, n_seeds)`` test mIoU per seed of each group.

    Raises:
        TruthSeedsError: no extension rows, a group has fewer than 2 seeds, the groups share a
            seed, or fewer than 3 architectures have every seed of both.
    """
    if not added_rows:
        raise TruthSeedsError(f"truth seeds: {EXTENSION} has no finished item (no seed extension of the table, "
                              f"`linas bench build --add-seeds`): one truth only")
    archs = [str(a) for a in _frame(scores)["arch"]]
    _, design, _, design_seeds = seed_matrices(table_rows, archs)
    _, held, _, held_seeds = seed_matrices(added_rows, archs)
    if len(design_seeds) < 2 or len(held_seeds) < 2:
        raise TruthSeedsError(f"truth seeds: each group needs >= 2 seeds; {TABLE} has {len(design_seeds)}, "
                              f"{EXTENSION} {len(held_seeds)}")
    shared = sorted(set(design_seeds) & set(held_seeds))
    if shared:
        raise TruthSeedsError(f"truth seeds: {TABLE} and {EXTENSION} share seed(s) {shared}; a held-out truth "
                              f"needs other trainings")
    keep = np.isfinite(design).all(axis=1) & np.isfinite(held).all(axis=1)
    if keep.sum() < 3:
        raise TruthSeedsError(f"truth seeds: {int(keep.sum())} architecture(s) of 04's scores have every seed of "
                              f"{TABLE} and {EXTENSION}; at least 3 are needed")
    return [a for a, k in zip(archs, keep) if k], design[keep], held[keep]


def expected_tau(tau: float, pair_from: float, n_from: int, pair_to: float, n_to: int) -> float:
    """The tau a signal is expected to reach against another truth when only the truths' noise differs.

    A truth that is the mean of ``n`` seeds with seed-pair tau ``pair`` has the reliability of
    Spearman-Brown; a signal's correlation with it scales with that reliability's square root
    (:func:`~.ws_shortfall.truth_ceiling` is the square root, as a tau). Taus and correlations
    are mapped by Greiner's relation.

    Args:
        tau: the signal's tau against the first truth.
        pair_from, n_from: the first truth's seed-pair tau and seed count.
        pair_to, n_to: the same for the other truth.

    Returns:
        The expected tau; NaN where ``tau`` is not finite or a ceiling is undefined.
    """
    ceiling_from, ceiling_to = truth_ceiling(pair_from, n_from), truth_ceiling(pair_to, n_to)
    if not (math.isfinite(tau) and ceiling_from > 0 and ceiling_to > 0):
        return math.nan
    return _tau(_r(tau) * _r(ceiling_to) / _r(ceiling_from))


def _truths(design: np.ndarray, held: np.ndarray) -> dict[str, np.ndarray]:
    return {"design": design.mean(axis=1), "held_out": held.mean(axis=1),
            "all": np.concatenate([design, held], axis=1).mean(axis=1)}


def _pair_taus(design: np.ndarray, held: np.ndarray) -> tuple[float, float]:
    """Each group's mean seed-pair tau."""
    return _pair_mean(kendall)(*design.T), _pair_mean(kendall)(*held.T)


def _held_expected(tau_design: float, pairs: tuple[float, float], design: np.ndarray, held: np.ndarray) -> float:
    """:func:`expected_tau` against the held-out mean of a signal with ``tau_design`` against the design mean."""
    return expected_tau(tau_design, pairs[0], design.shape[1], pairs[1], held.shape[1])


def _difference(name: str, n_design: int, weights: Sequence[float] = (1.0,)):
    """A statistic on the columns ``(*preds, *design seeds, *held seeds)``: the ``weights``-weighted
    sum over the preds of the change ``name`` (one of :data:`DIFFERENCES`; one pred with weight 1:
    that signal's own). The truths and, for ``held_minus_expected``, the pair taus are computed
    once per call, so a bootstrap recomputes them in every resample."""
    n_preds = len(weights)

    def statistic(*columns) -> float:
        design = np.column_stack(columns[n_preds:n_preds + n_design])
        held = np.column_stack(columns[n_preds + n_design:])
        truths = _truths(design, held)
        pairs = _pair_taus(design, held) if name == "held_minus_expected" else None
        total = 0.0
        for w, pred in zip(weights, columns[:n_preds]):
            if not w:
                continue
            base = kendall(pred, truths["design"])
            if pairs is not None:
                change = kendall(pred, truths["held_out"]) - _held_expected(base, pairs, design, held)
            else:
                change = kendall(pred, truths["held_out" if name == "held_minus_design" else "all"]) - base
            total += w * change
        return float(total)
    return statistic


def pool_weights(signals: Sequence[str]) -> dict[str, list[float]]:
    """Per pool of :data:`POOLS`, the weight of each signal: the mean over the tuned signals (every
    one not in :data:`CONTROL`: 04's WS scores), the mean over the control arm, and their difference."""
    tuned = [s not in CONTROL for s in signals]
    n_tuned, n_control = sum(tuned), len(signals) - sum(tuned)
    mean_tuned = [1 / n_tuned if t else 0.0 for t in tuned] if n_tuned else []
    mean_control = [0.0 if t else 1 / n_control for t in tuned] if n_control else []
    both = [a - b for a, b in zip(mean_tuned, mean_control)] if n_tuned and n_control else []
    return {"tuned": mean_tuned, "control": mean_control, "tuned_minus_control": both}


def truth_seed_rows(scores, signals: Sequence[str], table_rows, added_rows, n_resamples: int = 2000,
                    seed: int = 0) -> list[dict]:
    """Each signal's tau against the three truths, the changes between them, and the truths' own rows.

    Args:
        scores: 04's ``scores.csv`` rows.
        signals: the ``scores`` columns to read (finite for every architecture).
        table_rows, added_rows: the design and held-out seeds' rows (:func:`seed_groups`).
        n_resamples: bootstrap resamples of the architectures.
        seed: bootstrap randomness.

    Returns:
        Per signal ``{signal, n, tau_<truth> for each of TRUTHS, <difference> and its _lo / _hi
        for each of DIFFERENCES, held_expected}``; then a row per pool of :data:`POOLS`
        (``signal`` ``pool.<pool>``, ``n_signals``, the same differences of the pool's mean:
        :func:`pool_weights`; ``pool.tuned_minus_control`` is the test of a fit to the design
        seeds against the control arm); then per group a ``truth`` row with
        ``n_seeds``, ``pair_tau`` (its seeds' mean pair tau), ``halves_tau`` (the two groups'
        means against each other) and ``halves_expected`` (what the noise model predicts for it).

    Raises:
        TruthSeedsError: see :func:`seed_groups`.
    """
    archs, design, held = seed_groups(scores, table_rows, added_rows)
    df = _frame(scores).set_index("arch").loc[archs]
    truths, pairs, columns = _truths(design, held), _pair_taus(design, held), (*design.T, *held.T)
    preds = {s: df[s].to_numpy(dtype=float) for s in signals}
    rows = []
    for signal, pred in preds.items():
        row = {"signal": signal, "n": len(archs), **{f"tau_{t}": kendall(pred, truths[t]) for t in TRUTHS}}
        row["held_expected"] = _held_expected(row["tau_design"], pairs, design, held)
        row.update(_differences((pred,), [1.0], columns, design.shape[1], n_resamples, seed))
        rows.append(row)
    for pool, weights in pool_weights(signals).items():
        if weights:
            rows.append({"signal": f"pool.{pool}", "n": len(archs), "n_signals": sum(w != 0 for w in weights),
                         **_differences(tuple(preds.values()), weights, columns, design.shape[1], n_resamples, seed)})
    return rows + _truth_rows(design, held, pairs)


def _differences(preds: tuple, weights: Sequence[float], seeds: tuple, n_design: int, n_resamples: int,
                 seed: int) -> dict[str, float]:
    """Each of :data:`DIFFERENCES` of the weighted preds with its paired bootstrap CI (``_lo`` / ``_hi``)."""
    out = {}
    for name in DIFFERENCES:
        statistic = _difference(name, n_design, weights)
        low, high = _paired_ci(statistic, (*preds, *seeds), n_resamples, CONFIDENCE, seed)
        out.update({name: statistic(*preds, *seeds), f"{name}_lo": low, f"{name}_hi": high})
    return out


def _truth_rows(design: np.ndarray, held: np.ndarray, pairs: tuple[float, float]) -> list[dict]:
    """The two groups' rows: seed-pair tau, the halves' agreement and its expectation."""
    pair = dict(zip(("design", "held_out"), pairs))
    ceilings = [truth_ceiling(pairs[0], design.shape[1]), truth_ceiling(pairs[1], held.shape[1])]
    halves_expected = _tau(_r(ceilings[0]) * _r(ceilings[1])) if all(c > 0 for c in ceilings) else math.nan
    halves = kendall(design.mean(axis=1), held.mean(axis=1))
    return [{"signal": "truth", "truth": group, "n": len(design), "n_seeds": matrix.shape[1], "pair_tau": pair[group],
             "halves_tau": halves, "halves_expected": halves_expected}
            for group, matrix in (("design", design), ("held_out", held))]


def truth_seed_summary(rows: Sequence[dict]) -> dict[str, float]:
    """The ``truth_seeds.*`` summary keys of :func:`truth_seed_rows` (empty without rows).

    Keys: ``tau.<signal>.<truth>``, ``<difference>.<signal>`` with ``_lo`` / ``_hi`` (and
    ``pool.<pool>.<difference>`` with ``_lo`` / ``_hi``),
    ``held_expected.<signal>``, ``pair_tau.<group>``, ``halves_tau``, ``halves_expected``,
    ``n_archs``, ``n_held_drop_shown`` (signals whose drop to the held-out truth has a CI wholly
    below 0) and ``n_beyond_noise_shown`` (the same for the drop beyond the noise model's,
    ``held_minus_expected``: the overfitting test).
    """
    out: dict[str, float] = {}
    signal_rows = [r for r in rows if r["signal"] != "truth" and not r["signal"].startswith("pool.")]
    for r in (r for r in rows if r["signal"].startswith("pool.")):
        for d in DIFFERENCES:
            out.update({f"truth_seeds.{r['signal']}.{d}{end}": float(r[f"{d}{end}"]) for end in ("", "_lo", "_hi")})
    for r in signal_rows:
        s = r["signal"]
        out.update({f"truth_seeds.tau.{s}.{t}": float(r[f"tau_{t}"]) for t in TRUTHS})
        for d in DIFFERENCES:
            out.update({f"truth_seeds.{d}.{s}{end}": float(r[f"{d}{end}"]) for end in ("", "_lo", "_hi")})
        out[f"truth_seeds.held_expected.{s}"] = float(r["held_expected"])
    for r in (r for r in rows if r["signal"] == "truth"):
        out[f"truth_seeds.pair_tau.{r['truth']}"] = float(r["pair_tau"])
        out.update({f"truth_seeds.{k}": float(r[k]) for k in ("halves_tau", "halves_expected")})
        out["truth_seeds.n_archs"] = float(r["n"])
    if signal_rows:
        out["truth_seeds.n_held_drop_shown"] = float(sum(float(r["held_minus_design_hi"]) < 0 for r in signal_rows))
        out["truth_seeds.n_beyond_noise_shown"] = float(sum(float(r["held_minus_expected_hi"]) < 0
                                                            for r in signal_rows))
    return out
