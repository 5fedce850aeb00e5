"""Why weight-sharing (WS) ranks below the seed ceiling: three causes, each measured (04_ranking).

WS tau against the benchmark table can fall short for three reasons that call for different
cures; each has a measurement here, computed from ``scores.csv`` and the table alone:

1. **The images.** WS reads held-out *val* images, the ground truth is *test* mIoU.
   :func:`cross_split_ceiling` is the seed ceiling read across the split: one training
   seed's val mIoU predicting another seed's test mIoU. Beside the seed ceiling (test
   against test) it says what reading val instead of test costs a proxy as good as a
   standalone training; the table's val is the whole val split, WS reads its held-out half.
2. **Training noise of the supernet.** Each variant is an independent supernet training.
   :func:`ensemble_column` averages their standardised WS scores; averaging removes the
   noise of independent trainings, not an error they share, so a small gain of the ensemble
   over the best single variant (:func:`ensemble_gap`) says the shortfall is shared.
   :func:`agreement` is the tau between the variants' WS scores (every pair).
3. **A systematic bias.** :func:`width_bias` is the partial rank correlation of WS with the
   decoder's mean width given the standalone accuracy: a negative value says WS ranks wide
   decoders below where standalone training puts them. Its control, a standalone training
   seed's val mIoU (noisy, width-blind), says what noise alone gives.

Every function is pure: arrays and rows in, numbers out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..space import WIDTHS, parse_arch, width_indices
from .ranking import CONFIDENCE, HEADLINE, _frame, _p10, _paired_ci, kendall, spearman, tau_gap

CROSS_SPLIT_CEILING = "seed_ceiling_cross_split"
ENSEMBLE = "ws_ensemble"  # scores.csv column (its crack-IoU twin: ws_crack_ensemble)
MIN_VARIANTS = 2  # an ensemble, an agreement: at least two independent trainings


def cross_split_ceiling(table_rows, n_resamples: int = 2000, seed: int = 0) -> dict:
    """The seed ceiling across the val/test split, as a ``ranking.csv`` row.

    For every ordered pair of distinct seeds ``(s, t)``: tau (rho, precision@10 %) of seed
    ``s``'s val mIoU against seed ``t``'s test mIoU, averaged over the pairs, with a paired
    bootstrap CI over architectures. Only architectures with every seed count.

    Raises:
        ValueError: fewer than 2 seeds or 3 architectures with both columns.
    """
    from .bench_stats import seed_matrix

    val, archs, seeds = seed_matrix(table_rows, "val_miou")
    test, archs_t, seeds_t = seed_matrix(table_rows, HEADLINE)
    if archs != archs_t or seeds != seeds_t or len(seeds) < 2 or len(archs) < 3:
        raise ValueError(f"cross-split seed ceiling: needs val_miou and {HEADLINE} of >= 2 common seeds for "
                         f">= 3 architectures; the table has {len(seeds)} seed(s), {len(archs)} architecture(s)")
    k = len(seeds)
    pairs = [(s, t) for s, t in itertools.permutations(range(k), 2)]
    row = {"signal": CROSS_SPLIT_CEILING, "metric": HEADLINE, "n": len(archs), "direction": 1}
    for name, stat in (("tau", kendall), ("rho", spearman), ("p10", _p10(1))):
        def mean_over_pairs(*cols, stat=stat):
            return float(np.mean([stat(cols[s], cols[k + t]) for s, t in pairs]))

        cols = (*val.T, *test.T)
        low, high = _paired_ci(mean_over_pairs, cols, n_resamples, CONFIDENCE, seed)
        row.update({name: mean_over_pairs(*cols), f"{name}_lo": low, f"{name}_hi": high})
    return row


def _standardised(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    sd = np.nanstd(x)
    return (x - np.nanmean(x)) / sd if sd > 0 else np.zeros_like(x)


def ensemble_column(columns: Mapping[str, Sequence[float]], variants: Sequence[str], prefix: str = "ws") -> np.ndarray:
    """The mean of the variants' standardised ``<prefix>.<variant>`` columns (NaN where any is NaN).

    Raises:
        ValueError: fewer than :data:`MIN_VARIANTS` variants, or a variant without its column.
    """
    if len(variants) < MIN_VARIANTS:
        raise ValueError(f"a WS ensemble needs >= {MIN_VARIANTS} variants, got {list(variants)}")
    missing = [f"{prefix}.{v}" for v in variants if f"{prefix}.{v}" not in columns]
    if missing:
        raise ValueError(f"a WS ensemble needs the score column(s) {', '.join(missing)}")
    return np.mean([_standardised(columns[f"{prefix}.{v}"]) for v in variants], axis=0)


def ensemble_columns(columns: Mapping[str, Sequence[float]], variants: Sequence[str]) -> dict[str, np.ndarray]:
    """``{ws_ensemble, ws_crack_ensemble}`` (:func:`ensemble_column` of mIoU and crack IoU) for
    ``scores.csv``; empty with fewer than :data:`MIN_VARIANTS` variants."""
    if len(variants) < MIN_VARIANTS:
        return {}
    return {ENSEMBLE: ensemble_column(columns, variants, "ws"),
            "ws_crack_ensemble": ensemble_column(columns, variants, "ws_crack")}


def ensemble_gap(scores, best: str, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """``tau_gap.ws_ensemble_vs_best`` (``_lo`` / ``_hi``): the ensemble's tau minus the best
    single variant's, paired over architectures; empty when ``scores`` has no ensemble column."""
    df = _frame(scores)
    if ENSEMBLE not in df.columns:
        return {}
    truth = df[f"truth.{HEADLINE}"].astype(float)
    value, low, high = tau_gap(df[ENSEMBLE].astype(float), df[f"ws.{best}"].astype(float), truth, n_resamples, seed)
    key = "tau_gap.ws_ensemble_vs_best"
    return {key: value, f"{key}_lo": low, f"{key}_hi": high}


def agreement(scores, variants: Sequence[str]) -> dict[str, float]:
    """``ws_agreement.mean`` / ``.min`` / ``.max``: Kendall tau between every pair of the variants'
    WS scores (two independent supernet trainings each); empty with fewer than 2 variants."""
    df = _frame(scores)
    taus = [kendall(df[f"ws.{a}"].astype(float), df[f"ws.{b}"].astype(float))
            for a, b in itertools.combinations(variants, 2)]
    if not taus:
        return {}
    return {"ws_agreement.mean": float(np.mean(taus)), "ws_agreement.min": float(np.min(taus)),
            "ws_agreement.max": float(np.max(taus)), "ws_agreement.pairs": float(len(taus))}


def mean_width(archs: Sequence[str]) -> np.ndarray:
    """Mean width (percent) over the layers of each architecture string."""
    widths = np.asarray(WIDTHS, dtype=float)
    return np.array([widths[width_indices(parse_arch(a))].mean() for a in archs])


def _ranks(x) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(np.asarray(x, dtype=float))


def _residual(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y`` minus its least-squares line on ``x``."""
    design = np.c_[np.ones_like(x), x]
    return y - design @ np.linalg.lstsq(design, y, rcond=None)[0]


def rank_beyond_truth(pred, truth) -> np.ndarray:
    """The signal's rank where the standalone rank does not explain it: the residual of
    ``pred``'s ranks on ``truth``'s ranks (a line), as a fraction of the items."""
    pred_ranks, truth_ranks = _ranks(pred), _ranks(truth)
    return _residual(pred_ranks, truth_ranks) / pred_ranks.size


def width_partial_corr(pred, truth, width) -> float:
    """Partial Spearman correlation of a signal with the mean width given the standalone accuracy.

    Ranks of ``pred`` and of ``width``, each with its line on the ranks of ``truth`` removed,
    then their Pearson correlation. A signal that is standalone accuracy plus width-blind
    noise scores about 0 (the control rows of :func:`width_bias`); negative: the signal ranks
    wide decoders lower than their standalone accuracy does. (The plain correlation of the
    rank error with width is not used: where the truth itself correlates with width, every
    noisy signal's rank error does too.)
    """
    truth_ranks = _ranks(truth)
    a, b = _residual(_ranks(pred), truth_ranks), _residual(_ranks(width), truth_ranks)
    if np.ptp(a) < 1e-9 * a.size or np.ptp(b) < 1e-9 * b.size:  # nothing left beyond the truth (rounding aside)
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def standalone_val_columns(table_rows, archs: Sequence[str]) -> dict[str, np.ndarray]:
    """``{standalone_val.s<seed>: val mIoU of that training seed}`` for ``archs`` (NaN where the
    table lacks it): width-blind controls for :func:`width_bias` -- a standalone training read
    on the val split predicts the mean test mIoU with noise but no width bias."""
    df = _frame(table_rows)
    wide = df.pivot_table(index="arch", columns="seed", values="val_miou", aggfunc="mean")
    wide = wide.reindex([str(a) for a in archs])
    return {f"standalone_val.s{int(seed)}": wide[seed].to_numpy(dtype=float) for seed in wide.columns}


def width_bias(scores, variants: Sequence[str], table_rows, n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Rows ``{signal, role, feature, n, rho, rho_lo, rho_hi, truth_rho}``: :func:`width_partial_corr`
    of each WS signal (every variant, then the ensemble where ``scores`` has it; ``role``
    ``ws``) and of each training seed's standalone val mIoU (``role`` ``control``), with a
    paired bootstrap CI over architectures; ``truth_rho`` is the truth's own Spearman rho with
    the mean width (how much width matters in standalone training)."""
    df = _frame(scores)
    truth = df[f"truth.{HEADLINE}"].to_numpy(dtype=float)
    width = mean_width(df["arch"].astype(str))
    names = [f"ws.{v}" for v in variants] + ([ENSEMBLE] if ENSEMBLE in df.columns else [])
    columns = {name: ("ws", df[name].to_numpy(dtype=float)) for name in names}
    columns.update({name: ("control", values)
                    for name, values in standalone_val_columns(table_rows, df["arch"].astype(str)).items()})
    rows = []
    for name, (role, pred) in columns.items():
        keep = np.isfinite(pred) & np.isfinite(truth)
        cols = (pred[keep], truth[keep], width[keep])
        low, high = (_paired_ci(width_partial_corr, cols, n_resamples, CONFIDENCE, seed) if keep.sum() >= 4
                     else (math.nan, math.nan))
        rows.append({"signal": name, "role": role, "feature": "mean_width", "n": int(keep.sum()),
                     "rho": width_partial_corr(*cols) if keep.sum() >= 3 else math.nan, "rho_lo": low, "rho_hi": high,
                     "truth_rho": spearman(width[keep], truth[keep])})
    return rows


def bias_summary(rows: Sequence[dict]) -> dict[str, float]:
    """``ws_width_bias.<signal>`` with ``_lo`` / ``_hi`` for the WS rows of :func:`width_bias` (``ws.``
    dropped from the name), and ``ws_width_bias.standalone_val`` with ``_min`` / ``_max``: the
    controls' mean over training seeds."""
    out = {}
    for r in rows:
        if r["role"] == "ws":
            key = "ws_width_bias." + str(r["signal"]).removeprefix("ws.")
            out.update({key: float(r["rho"]), f"{key}_lo": float(r["rho_lo"]), f"{key}_hi": float(r["rho_hi"])})
    controls = [float(r["rho"]) for r in rows if r["role"] == "control"]
    if controls:
        out.update({"ws_width_bias.standalone_val": float(np.mean(controls)),
                    "ws_width_bias.standalone_val_min": float(np.min(controls)),
                    "ws_width_bias.standalone_val_max": float(np.max(controls))})
    return out


def shortfall_summary(scores, variants: Sequence[str], best: str, bias_rows: Sequence[dict],
                      n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """The ``summary.json`` figures of the three causes beside ``ranking.csv``'s rows:
    :func:`ensemble_gap`, :func:`agreement` and :func:`bias_summary`."""
    return {**ensemble_gap(scores, best, n_resamples, seed), **agreement(scores, variants), **bias_summary(bias_rows)}
