"""Why weight-sharing (WS) ranks below the seed ceiling: three causes, each measured (07_ws_shortfall).

WS tau against the benchmark table can fall short for three reasons that call for different
cures; each has a measurement here, computed from 04_ranking's ``scores.csv`` and the table
alone (no supernet runs, so the study takes a minute or two):

1. **The images.** WS reads held-out *val* images, the ground truth is *test* mIoU.
   :func:`cross_split_ceiling` is the seed ceiling read across the split: one training
   seed's val mIoU predicting another seed's test mIoU. Beside the seed ceiling (test
   against test) it says what reading val instead of test costs a proxy as good as a
   standalone training (:func:`split_gap`, with a paired CI). The table's val mIoU reads
   the whole val split, WS its held-out half, so the cost for WS's images is at least that.
   :func:`image_control` reads WS itself on the truth's own test images (04 scores the
   profile's variant there, as a diagnostic only).
2. **Training noise of the supernet.** The variants are trainings of different rules from
   one run seed (the same initial weights, encoder and WS images).
   :func:`ensemble_column` averages their standardised WS scores; averaging cancels only
   the noise they do not share, so :func:`ensemble_gap` (the ensemble's tau minus the
   variants' mean tau, not the chosen best one's) is a lower bound on what training noise
   costs. :func:`agreement` is the tau between the variants' WS scores (every pair). The
   clean test-retest of one rule comes from the training replicas of 04's tau-vs-steps
   curve (other streams of the run seed, ``curve_scores.csv``): :func:`replica_noise_rows`
   gives their agreement, the tau of their average and, under a Gaussian model of the noise
   (:func:`noise_model`), the limit of averaging ever more trainings and how many would reach
   the goal. From three replicas on, :func:`predicted_ensemble_tau` and :func:`unseen_retest`
   check the model on a training its fit did not see. The limit is read against :func:`truth_ceiling`, what a
   perfect predictor reaches against the same seed-mean truth.
3. **A systematic bias.** :func:`width_bias` is the partial rank correlation of WS with the
   decoder's mean width given the standalone accuracy: negative where WS ranks wide
   decoders below where standalone training puts them. The same for parameters and FLOPs
   says whether such a bias is one of width or of size. A noisy truth gives every signal
   that tracks true accuracy a partial correlation of the truth's own sign, so the
   statistic is read against a control with the same structure: each training seed's
   standalone val mIoU, scored (like WS) against a seed whose training it does not share
   (leave one seed out). WS minus the controls, with a paired CI, is the bias.

A cure, and its control: 04 also scores each supernet by minus its WS segmentation loss
(``ws_loss.<variant>``, the same forward passes as WS mIoU). FLOPs alone rank with tau
about 0.36, so a score could gain tau by leaning towards larger decoders rather than by
reading accuracy better. :func:`loss_size_control` builds, per variant, the WS mIoU ranks
mixed with the FLOPs ranks until they correlate with FLOPs as much as the loss score does
(no truth involved): the loss's tau gap to that size-matched arm is its gain beyond a size
prior.

Every function is pure: arrays and rows in, numbers out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from pathlib import Path

import numpy as np

from ..paths import display_path
from ..space import WIDTHS, parse_arch, width_indices
from .ranking import CONFIDENCE, HEADLINE, _frame, _p10, _pair_mean, _paired_ci, kendall, spearman, tau_gap

SCORES = Path("04_ranking") / "scores.csv"  # the ranking study's per-architecture scores, under results/<profile>
CURVE_SCORES = Path("04_ranking") / "curve_scores.csv"  # per-architecture scores of the curve's snapshots
TARGET_TAU = 0.8  # the WS goal of the ranking issue, for trainings_to_target
CROSS_SPLIT_CEILING = "seed_ceiling_cross_split"
ENSEMBLE = "ws_ensemble"  # scores.csv column (its crack-IoU twin: ws_crack_ensemble)
MIN_VARIANTS = 2  # an ensemble, an agreement: at least two independent trainings
# replica_noise_rows' check of the noise model on trainings a fit did not see (three replicas on)
MODEL_CHECK = ("tau_ensemble_predicted", "ensemble_minus_predicted", "ensemble_minus_predicted_lo",
               "ensemble_minus_predicted_hi", "retest_unseen", "retest_unseen_predicted",
               "retest_unseen_minus_predicted", "retest_unseen_minus_predicted_lo",
               "retest_unseen_minus_predicted_hi", "tau_limit_pair_min", "tau_limit_pair_max")


class ShortfallError(ValueError):
    """04's scores cannot support the study; the message names the file and what is missing."""


def load_scores(results_root: Path, variants: Sequence[str]) -> list[dict] | None:
    """04_ranking's ``scores.csv`` rows (None when 04 ranked nothing: no usable table).

    Raises:
        ShortfallError: the file lacks the ground truth or a variant's WS columns (04 ran with
            other ``ranking.variants``), or holds fewer than 3 architectures.
    """
    import pandas as pd

    path = Path(results_root) / SCORES
    if not path.is_file():
        return None
    df = pd.read_csv(path, comment="#")
    needed = ["arch", f"truth.{HEADLINE}"] + [f"{p}.{v}" for v in variants for p in ("ws", "ws_crack")]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ShortfallError(f"{display_path(path)}: no column(s) {', '.join(missing)}; run 04_ranking with "
                             f"ranking.variants {list(variants)} first")
    if len(df) < 3:
        raise ShortfallError(f"{display_path(path)}: {len(df)} architecture(s); the study needs at least 3")
    return df.to_dict("records")


def load_table_rows(profile) -> list[dict]:
    """The benchmark table's rows (:func:`~.ranking.read_table_rows`), with the per-seed val mIoU
    this study reads beside the test mIoU.

    Raises:
        ShortfallError: the table has no ``val_miou`` column (the file named).
    """
    from .ranking import read_table_rows, table_path

    path = table_path(profile)
    rows = read_table_rows(path)
    if rows and "val_miou" not in rows[0]:
        raise ShortfallError(f"{display_path(path)}: no column val_miou; 07 reads each seed's val mIoU beside "
                             f"its {HEADLINE} (rebuild the table with `linas bench build`)")
    return rows


def ensemble_rows(scores, n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """``shortfall.csv`` rows of the ensemble, one per metric: ``{signal: ws_ensemble, metric, n,
    tau, rho, p10, ...}`` (:func:`~.ranking.compare` against the mean over seeds); empty when
    ``scores`` has no ensemble columns (:func:`with_ensemble`)."""
    from .ranking import DIRECTIONS, METRICS, compare

    df = _frame(scores)
    if ENSEMBLE not in df.columns:
        return []
    return [{"signal": ENSEMBLE, "metric": metric,
             **compare(df[column].to_numpy(dtype=float), df[f"truth.{metric}"].to_numpy(dtype=float),
                       DIRECTIONS["ws"], n_resamples, seed)}
            for metric, column in zip(METRICS, (ENSEMBLE, "ws_crack_ensemble"))]


def with_ensemble(scores, variants: Sequence[str]) -> list[dict]:
    """``scores`` rows with the ``ws_ensemble`` / ``ws_crack_ensemble`` columns added (unchanged with
    fewer than :data:`MIN_VARIANTS` variants)."""
    df = _frame(scores).copy()
    columns = {c: df[c].to_numpy(dtype=float) for c in df.columns if str(c).startswith("ws")}
    for name, values in ensemble_columns(columns, variants).items():
        df[name] = values
    return df.to_dict("records")


def image_control(scores, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """WS read on the truth's own images: for each ``ws_on_test.<variant>`` column of 04's scores
    (the profile's variant scored on the test images), ``tau.ws_on_test.<variant>`` and
    ``tau_gap.ws_on_test_vs_val.<variant>`` (with ``_lo`` / ``_hi``: its tau minus that of
    ``ws.<variant>``, read on held-out val images, paired over architectures); the same for the
    loss score (``ws_loss_on_test``). A gap about 0 or below says the images are not what WS
    lacks. Empty without such columns (a 04 before this control)."""
    df = _frame(scores)
    truth = df[f"truth.{HEADLINE}"].to_numpy(dtype=float)
    out = {}
    for column in [c for c in df.columns if str(c).startswith(("ws_on_test.", "ws_loss_on_test."))]:
        name, variant = str(column).split(".", 1)
        held_out = f"{name.replace('_on_test', '')}.{variant}"
        if held_out not in df.columns:
            raise ShortfallError(f"{SCORES}: {column} without {held_out}, the held-out score it is read against; "
                                 "rerun 04_ranking")
        val = df[held_out].to_numpy(dtype=float)
        test = df[column].to_numpy(dtype=float)
        keep = np.isfinite(truth) & np.isfinite(val) & np.isfinite(test)
        gap, low, high = tau_gap(test[keep], val[keep], truth[keep], n_resamples, seed)
        key = f"tau_gap.{name}_vs_val.{variant}"
        out.update({f"tau.{column}": kendall(test[keep], truth[keep]), key: gap, f"{key}_lo": low, f"{key}_hi": high})
    return out


def _cross_split_mean(stat, cols, k: int) -> float:
    """``stat`` of seed ``s``'s val (``cols[s]``) against seed ``t``'s test (``cols[k + t]``), averaged
    over the ordered pairs of distinct seeds."""
    return float(np.mean([stat(cols[s], cols[k + t]) for s, t in itertools.permutations(range(k), 2)]))


def _seed_columns(table_rows, what: str) -> tuple[tuple[np.ndarray, ...], int, int]:
    """``(val columns then test columns, seeds, architectures)`` of the architectures with both
    values for every seed.

    Raises:
        ValueError: fewer than 2 seeds or 3 such architectures (``what`` names the study).
    """
    val, test, archs, seeds = seed_matrices(table_rows)
    if len(seeds) < 2 or len(archs) < 3:
        raise ValueError(f"{what}: needs val_miou and {HEADLINE} of >= 2 common seeds for >= 3 architectures; "
                         f"the table has {len(seeds)} seed(s), {len(archs)} architecture(s)")
    return (*val.T, *test.T), len(seeds), len(archs)


def cross_split_ceiling(table_rows, n_resamples: int = 2000, seed: int = 0) -> dict:
    """The seed ceiling across the val/test split, as a ``ranking.csv`` row.

    For every ordered pair of distinct seeds ``(s, t)``: tau (rho, precision@10 %) of seed
    ``s``'s val mIoU against seed ``t``'s test mIoU, averaged over the pairs, with a paired
    bootstrap CI over architectures. Only architectures with both values of every seed count.

    Raises:
        ValueError: fewer than 2 seeds or 3 architectures with both columns.
    """
    cols, k, n = _seed_columns(table_rows, "cross-split seed ceiling")
    row = {"signal": CROSS_SPLIT_CEILING, "metric": HEADLINE, "n": n, "direction": 1}
    for name, stat in (("tau", kendall), ("rho", spearman), ("p10", _p10(1))):
        def mean_over_pairs(*c, stat=stat):
            return _cross_split_mean(stat, c, k)

        low, high = _paired_ci(mean_over_pairs, cols, n_resamples, CONFIDENCE, seed)
        row.update({name: mean_over_pairs(*cols), f"{name}_lo": low, f"{name}_hi": high})
    return row


def seed_matrices(table_rows, archs: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str], list]:
    """``(val, test, archs, seeds)``: ``(n_archs, n_seeds)`` val and test mIoU of the table.

    With ``archs`` the rows follow that order (NaN where the table lacks a value); without,
    only the architectures that have both values for every seed, in the table's order.
    """
    df = _frame(table_rows)
    wide = {m: df.pivot_table(index="arch", columns="seed", values=m, aggfunc="mean") for m in ("val_miou", HEADLINE)}
    seeds = sorted(set(wide["val_miou"].columns) & set(wide[HEADLINE].columns))
    if archs is None:
        both = [wide[m][seeds].dropna() for m in wide]
        archs = [a for a in both[0].index if a in set(both[1].index)]
    index = [str(a) for a in archs]
    val, test = (wide[m].reindex(index)[seeds].to_numpy(dtype=float) for m in ("val_miou", HEADLINE))
    return val, test, index, seeds


def split_gap(table_rows, n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """``tau_gap.seed_ceiling_vs_cross_split`` (``_lo`` / ``_hi``): the seed ceiling (test against
    test, mean over seed pairs) minus :func:`cross_split_ceiling`'s tau (val against the other
    seeds' test), paired over architectures: what reading val instead of test costs.

    Raises:
        ValueError: fewer than 2 seeds or 3 architectures with both columns.
    """
    cols, k, _ = _seed_columns(table_rows, "split gap")

    def gap(*c):
        return _pair_mean(kendall)(*c[k:]) - _cross_split_mean(kendall, c, k)

    key = "tau_gap.seed_ceiling_vs_cross_split"
    low, high = _paired_ci(gap, cols, n_resamples, CONFIDENCE, seed)
    return {key: gap(*cols), f"{key}_lo": low, f"{key}_hi": high}


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


def ensemble_gap(scores, variants: Sequence[str], n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """``tau_gap.ws_ensemble_vs_mean`` (``_lo`` / ``_hi``): the ensemble's tau minus the mean of
    the variants' taus, paired over architectures; empty when ``scores`` has no ensemble column."""
    df = _frame(scores)
    if ENSEMBLE not in df.columns or len(variants) < MIN_VARIANTS:
        return {}
    cols = (df[ENSEMBLE].to_numpy(dtype=float), *(df[f"ws.{v}"].to_numpy(dtype=float) for v in variants),
            df[f"truth.{HEADLINE}"].to_numpy(dtype=float))
    keep = np.logical_and.reduce([np.isfinite(c) for c in cols])
    cols = tuple(c[keep] for c in cols)

    def gap(*c):
        return kendall(c[0], c[-1]) - float(np.mean([kendall(x, c[-1]) for x in c[1:-1]]))

    key = "tau_gap.ws_ensemble_vs_mean"
    low, high = _paired_ci(gap, cols, n_resamples, CONFIDENCE, seed) if keep.sum() >= 3 else (math.nan, math.nan)
    return {key: gap(*cols), f"{key}_lo": low, f"{key}_hi": high}


def agreement(scores, variants: Sequence[str]) -> dict[str, float]:
    """``ws_agreement.mean`` / ``.min`` / ``.max``: Kendall tau between every pair of the variants'
    WS scores (two trainings of different rules from one run seed); empty with fewer than 2 variants."""
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


def _loso_partial(pred, tests: np.ndarray, width, own: int | None = None) -> float:
    """:func:`width_partial_corr` of ``pred`` against each seed's test column (``tests``,
    ``(n, n_seeds)``) but ``own`` (the seed ``pred`` was trained with), averaged."""
    return float(np.mean([width_partial_corr(pred, tests[:, t], width) for t in range(tests.shape[1]) if t != own]))


SIZE_FEATURE = "flops"  # the size prior of the loss score's control (the trivial baseline that ranks best)
MIX_WEIGHTS = np.linspace(-2.0, 2.0, 401)  # weights of the FLOPs ranks tried for the size-matched arm
FEATURES = ("mean_width", "params", "flops")  # mean_width the suspect; parameters and FLOPs: size, its controls


def feature_columns(scores, features: Sequence[str] = FEATURES) -> dict[str, np.ndarray]:
    """``{feature: value per architecture}``: ``mean_width`` from the architecture strings, any
    other from the ``scores`` column of that name (04 writes ``params`` and ``flops``; a feature
    without its column is left out)."""
    df = _frame(scores)
    out = {}
    for name in features:
        if name == "mean_width":
            out[name] = mean_width(df["arch"].astype(str))
        elif name in df.columns:
            out[name] = df[name].to_numpy(dtype=float)
    return out


def width_bias(scores, variants: Sequence[str], table_rows, n_resamples: int = 2000, seed: int = 0,
               features: Sequence[str] = FEATURES) -> list[dict]:
    """Bias rows ``{signal, role, feature, n, rho, rho_lo, rho_hi, truth_rho, ...}``, per feature.

    For each feature of :func:`feature_columns` (the mean width first; parameters and FLOPs
    say whether a width bias is one of size): ``rho`` is :func:`width_partial_corr` with the
    feature against one training seed's test mIoU, averaged over the seeds, for each WS
    signal (every variant, then the ensemble where ``scores`` has it, then each variant's WS loss
    score ``ws_loss.<variant>`` where it has one; ``role`` ``ws``) over
    every seed, and for each seed's standalone val mIoU (``standalone_val.s<seed>``, ``role``
    ``control``) over the *other* seeds, so neither shares training noise with the truth it is
    read against. WS rows also carry ``minus_control`` (their rho minus the controls' mean).
    Every figure has a paired bootstrap 95 % CI over architectures (``_lo`` / ``_hi``);
    ``truth_rho`` is the mean test mIoU's own Spearman rho with the feature. Architectures
    with any value missing are left out.

    Raises:
        ValueError: fewer than 2 seeds with val and test mIoU for the scores' architectures.
        ShortfallError: fewer than 3 architectures with every value.
    """
    df = _frame(scores)
    archs = df["arch"].astype(str).tolist()
    val, test, _, seeds = seed_matrices(table_rows, archs)
    if len(seeds) < 2:
        raise ValueError(f"width bias: needs val_miou and {HEADLINE} of >= 2 seeds; the table has {len(seeds)}")
    feats, truth = feature_columns(df, features), df[f"truth.{HEADLINE}"].to_numpy(dtype=float)
    names = [f"ws.{v}" for v in variants] + ([ENSEMBLE] if ENSEMBLE in df.columns else [])
    names += [f"ws_loss.{v}" for v in variants if f"ws_loss.{v}" in df.columns]
    preds = {name: df[name].to_numpy(dtype=float) for name in names}
    keep = np.logical_and.reduce([np.isfinite(truth), *np.isfinite(val.T), *np.isfinite(test.T),
                                  *(np.isfinite(p) for p in (*preds.values(), *feats.values()))])
    k, n = len(seeds), int(keep.sum())
    if n < 3:
        raise ShortfallError(f"width bias: {n} of the scores' {len(archs)} architectures have every value (WS, "
                             f"features and each seed's val and {HEADLINE} in the table); the study needs 3: "
                             "were the scores ranked against another table?")
    val, test, truth = val[keep], test[keep], truth[keep]

    def controls(*c):  # c: val seeds, test seeds, feature
        tests = np.stack(c[k:2 * k], axis=1)
        return float(np.mean([_loso_partial(c[s], tests, c[-1], own=s) for s in range(k)]))

    def rho(*c):  # c: pred, test seeds, feature
        return _loso_partial(c[0], np.stack(c[1:-1], axis=1), c[-1])

    def minus(*c):  # c: pred, val seeds, test seeds, feature
        return rho(c[0], *c[1 + k:]) - controls(*c[1:])

    def ci(stat, cols):
        return _paired_ci(stat, cols, n_resamples, CONFIDENCE, seed) if n >= 4 else (math.nan, math.nan)

    rows = []
    for feature, values in feats.items():
        values = values[keep]
        base = {"feature": feature, "n": n, "truth_rho": spearman(values, truth)}
        for name, pred in preds.items():
            own, paired = (pred[keep], *test.T, values), (pred[keep], *val.T, *test.T, values)
            rows.append({"signal": name, "role": "ws", **base, "rho": rho(*own), **_named(ci(rho, own), "rho"),
                         "minus_control": minus(*paired), **_named(ci(minus, paired), "minus_control")})
        for s, seed_id in enumerate(seeds):
            def control(*c, s=s):  # c: val of seed s, test seeds, feature
                return _loso_partial(c[0], np.stack(c[1:-1], axis=1), c[-1], own=s)

            cols = (val[:, s], *test.T, values)
            rows.append({"signal": f"standalone_val.s{int(seed_id)}", "role": "control", **base,
                         "rho": control(*cols), **_named(ci(control, cols), "rho")})
    return rows


def _named(bounds: tuple[float, float], name: str) -> dict[str, float]:
    return {f"{name}_lo": bounds[0], f"{name}_hi": bounds[1]}


def bias_summary(rows: Sequence[dict]) -> dict[str, float]:
    """From :func:`width_bias` rows. Mean width: ``ws_width_bias.<signal>`` and
    ``ws_width_bias_vs_control.<signal>`` with ``_lo`` / ``_hi`` for the WS rows (``ws.``
    dropped from the name), and ``ws_width_bias.standalone_val`` with ``_min`` / ``_max`` (the
    controls' mean over seeds). Every other feature: ``ws_<feature>_bias_vs_control.<signal>``
    with ``_lo`` / ``_hi``."""
    out = {}
    for r in rows:
        if r["role"] != "ws":
            continue
        name, feature = str(r["signal"]).removeprefix("ws."), "width" if r["feature"] == "mean_width" else r["feature"]
        fields = [(f"ws_{feature}_bias_vs_control.{name}", "minus_control")]
        if feature == "width":
            fields.insert(0, (f"ws_width_bias.{name}", "rho"))
        for key, field in fields:
            out.update({key: float(r[field]), f"{key}_lo": float(r[f"{field}_lo"]), f"{key}_hi": float(r[f"{field}_hi"])})
    controls = [float(r["rho"]) for r in rows if r["role"] == "control" and r["feature"] == "mean_width"]
    if controls:
        out.update({"ws_width_bias.standalone_val": float(np.mean(controls)),
                    "ws_width_bias.standalone_val_min": float(np.min(controls)),
                    "ws_width_bias.standalone_val_max": float(np.max(controls))})
    return out


def shortfall_summary(scores, variants: Sequence[str], rows: Sequence[dict], bias_rows: Sequence[dict],
                      n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """The ``summary.json`` figures of the three causes: ``n_archs``; per ``shortfall.csv`` row of
    the headline metric ``tau.<signal>`` with ``tau_lo`` / ``tau_hi`` (the seed ceilings and
    the ensemble, for reading them side by side); :func:`ensemble_gap`,
    :func:`agreement` and :func:`bias_summary`. ``scores`` must hold the ensemble columns
    (:func:`with_ensemble`)."""
    out = {"n_archs": float(len(_frame(scores)))}
    for r in rows:
        if r["metric"] == HEADLINE:
            out.update({f"{k}.{r['signal']}": float(r[k]) for k in ("tau", "tau_lo", "tau_hi")})
    return {**out, **ensemble_gap(scores, variants, n_resamples, seed), **agreement(scores, variants),
            **bias_summary(bias_rows)}


def size_matched(ws, size, target: float) -> tuple[np.ndarray, float]:
    """``rank(ws) + lam * rank(size)`` with ``lam`` from :data:`MIX_WEIGHTS` whose Kendall tau
    with ``size`` lies closest to ``target`` (the first such ``lam``, smallest first).

    Returns:
        ``(the mixed score, lam)``.
    """
    from scipy.stats import rankdata

    r_ws, r_size = rankdata(ws), rankdata(size)
    taus = np.array([kendall(r_ws + lam * r_size, size) for lam in MIX_WEIGHTS])
    lam = float(MIX_WEIGHTS[int(np.nanargmin(np.abs(taus - target)))])
    return r_ws + lam * r_size, lam


def loss_size_control(scores, variants: Sequence[str], n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Does the WS loss score rank better than WS mIoU beyond a size prior? One row per variant
    with a ``ws_loss.<variant>`` column.

    Row fields: ``tau_ws``, ``tau_loss`` and ``tau_matched`` against the mean test mIoU;
    ``size_tau_*``, each score's Kendall tau with :data:`SIZE_FEATURE`; ``lam``, the
    size-matched arm's weight (:func:`size_matched`, chosen on the scores alone);
    ``loss_minus_ws`` and ``loss_minus_matched``, paired tau gaps with bootstrap CIs over
    architectures (``_lo`` / ``_hi``; ``lam`` stays fixed in the resamples). A loss gain
    that is a size prior shows as ``loss_minus_matched`` about 0.

    Raises:
        ShortfallError: ``scores`` lacks the :data:`SIZE_FEATURE` column.
    """
    df = _frame(scores)
    if SIZE_FEATURE not in df.columns:
        raise ShortfallError(f"04's scores have no {SIZE_FEATURE!r} column: the loss score's size control needs it")
    truth, size = df[f"truth.{HEADLINE}"].to_numpy(dtype=float), df[SIZE_FEATURE].to_numpy(dtype=float)
    rows = []
    for variant in variants:
        if f"ws_loss.{variant}" not in df.columns:
            continue
        ws, loss = df[f"ws.{variant}"].to_numpy(dtype=float), df[f"ws_loss.{variant}"].to_numpy(dtype=float)
        keep = np.isfinite(truth) & np.isfinite(size) & np.isfinite(ws) & np.isfinite(loss)
        ws, loss, t, z = ws[keep], loss[keep], truth[keep], size[keep]
        matched, lam = size_matched(ws, z, kendall(loss, z))
        row = {"variant": variant, "n": int(keep.sum()), "lam": lam,
               "tau_ws": kendall(ws, t), "tau_loss": kendall(loss, t), "tau_matched": kendall(matched, t),
               "size_tau_ws": kendall(ws, z), "size_tau_loss": kendall(loss, z), "size_tau_matched": kendall(matched, z)}
        for name, other in (("loss_minus_ws", ws), ("loss_minus_matched", matched)):
            gap, low, high = tau_gap(loss, other, t, n_resamples, seed)
            row.update({name: gap, f"{name}_lo": low, f"{name}_hi": high})
        rows.append(row)
    return rows


def loss_control_summary(rows: Sequence[dict]) -> dict[str, float]:
    """From :func:`loss_size_control` rows: ``tau_gap.ws_loss_vs_size_matched.<variant>`` (with
    ``_lo`` / ``_hi``), ``ws_loss_size_shift.<variant>`` (the loss score's tau with FLOPs minus
    WS mIoU's) and ``ws_loss.n_variants``; empty without rows."""
    out = {}
    for r in rows:
        key = f"tau_gap.ws_loss_vs_size_matched.{r['variant']}"
        out.update({key: float(r["loss_minus_matched"]), f"{key}_lo": float(r["loss_minus_matched_lo"]),
                    f"{key}_hi": float(r["loss_minus_matched_hi"]),
                    f"ws_loss_size_shift.{r['variant']}": float(r["size_tau_loss"] - r["size_tau_ws"])})
    if rows:
        out["ws_loss.n_variants"] = float(len(rows))
    return out


# ------------------------------------------------------------------ training noise of one rule (04's curve replicas)


def load_curve_scores(results_root: Path) -> list[dict] | None:
    """04_ranking's ``curve_scores.csv`` rows (None when absent: 04 drew no curve, or ran before it
    kept the curve's per-architecture scores).

    Raises:
        ShortfallError: the file lacks one of its columns (the file named).
    """
    import pandas as pd

    path = Path(results_root) / CURVE_SCORES
    if not path.is_file():
        return None
    df = pd.read_csv(path, comment="#")
    missing = [c for c in ("arch", "steps", "weights", "replica", "score", "value") if c not in df.columns]
    if missing:
        raise ShortfallError(f"{display_path(path)}: no column(s) {', '.join(missing)}; rerun 04_ranking")
    return df.to_dict("records")


def _r(tau: float) -> float:
    """Greiner's relation: the correlation of a bivariate normal pair whose Kendall tau is ``tau``."""
    return math.sin(math.pi * tau / 2)


def _tau(r: float) -> float:
    """Greiner's relation inverted, ``r`` clipped to [-1, 1] (NaN stays NaN: ``min`` would make it 1)."""
    if not math.isfinite(r):
        return math.nan
    return 2 / math.pi * math.asin(max(-1.0, min(1.0, r)))


def noise_model(columns: Sequence[np.ndarray], truth: np.ndarray) -> tuple[float, float]:
    """``(r_one, r_limit)`` of training replicas' scores ``columns`` against ``truth``, in correlations.

    A Gaussian congeneric model: each training's score is a shared signal, scaled by a quality of
    its own, plus noise of its own, independent between trainings. Taus become correlations by
    Greiner's relation ``r = sin(pi * tau / 2)``. ``r_one`` is the trainings' mean correlation with
    the truth; ``r_limit``, the shared signal's, is ``sqrt(r_iT * r_jT / r_ij)`` averaged over
    the pairs of trainings (under the model it holds for trainings of unequal quality), at most 1.
    NaN where a correlation is not positive or not finite (the model does not apply).
    """
    to_truth = [_r(kendall(c, truth)) for c in columns]
    between = {(i, j): _r(kendall(columns[i], columns[j])) for i, j in itertools.combinations(range(len(columns)), 2)}
    ratios = [to_truth[i] * to_truth[j] / r if r > 0 else math.nan for (i, j), r in between.items()]
    if not (all(math.isfinite(x) and x > 0 for x in to_truth) and ratios and all(math.isfinite(x) for x in ratios)):
        return math.nan, math.nan
    return float(np.mean(to_truth)), min(1.0, math.sqrt(float(np.mean(ratios))))


def averaged_tau(r_one: float, r_limit: float, k: float) -> float:
    """Kendall tau against the truth of the average of ``k`` trainings under :func:`noise_model`:
    Spearman-Brown with a training's reliability ``(r_one / r_limit) ** 2``, converted back to a
    tau (``k = inf``: the limit's tau). NaN where the model does not apply."""
    if not (r_one > 0 and r_limit > 0 and r_one <= r_limit):
        return math.nan
    reliability = (r_one / r_limit) ** 2
    return _tau(r_limit if math.isinf(k) else r_one * math.sqrt(k / (1 + (k - 1) * reliability)))


def predicted_ensemble_tau(columns: Sequence[np.ndarray], truth: np.ndarray) -> float:
    """The out-of-sample check of :func:`noise_model`: the Kendall tau of the average of all ``k``
    training replicas ``columns`` against ``truth``, as :func:`averaged_tau` predicts it from a
    fit to the first ``k - 1`` alone (the last replica is the one the fit did not see).

    The prediction misses when the unseen training is not what the others imply: another
    quality than theirs on average, or noise shared with only some of them. NaN below three
    replicas (a fit on one training has no pair) or where the fit does not apply.
    """
    if len(columns) < 3:
        return math.nan
    return averaged_tau(*noise_model(columns[:-1], truth), len(columns))


def unseen_retest(columns: Sequence[np.ndarray], truth: np.ndarray) -> tuple[float, float]:
    """``(measured, predicted)``: the last replica's mean Kendall tau with each other replica, and
    what a :func:`noise_model` fit to the others predicts for it given the last one's own
    correlation with the truth (``r_iT * r_lastT / r_limit ** 2`` per pair, in correlations).

    The training noise the limit assumes independent between trainings is what this reads: noise
    the unseen training shares with some of the others makes it agree with them more than
    predicted. NaN below three replicas or where the fit does not apply.
    """
    if len(columns) < 3:
        return math.nan, math.nan
    *seen, last = columns
    _, r_limit = noise_model(seen, truth)
    if not (r_limit > 0):
        return math.nan, math.nan
    r_last = _r(kendall(last, truth))
    predicted = [_tau(_r(kendall(c, truth)) * r_last / r_limit ** 2) for c in seen]
    return float(np.mean([kendall(c, last) for c in seen])), float(np.mean(predicted))


def pair_limits(columns: Sequence[np.ndarray], truth: np.ndarray) -> list[float]:
    """:func:`noise_model`'s limit (as a tau) from each pair of replicas alone: under the model
    every pair estimates the same shared signal, so their spread is a check of it."""
    return [averaged_tau(*noise_model([a, b], truth), math.inf) for a, b in itertools.combinations(columns, 2)]


def trainings_needed(r_one: float, r_limit: float, target: float) -> float:
    """How many trainings :func:`averaged_tau` needs averaged to reach tau ``target``, rounded up
    (inf when even the limit stays below it; NaN where the model does not apply)."""
    if not (r_one > 0 and r_limit > 0 and r_one <= r_limit):
        return math.nan
    r_target, reliability = _r(target), (r_one / r_limit) ** 2
    if r_one >= r_target:
        return 1.0
    if r_limit <= r_target:
        return math.inf
    return float(math.ceil(r_target ** 2 * (1 - reliability) / (r_one ** 2 - r_target ** 2 * reliability) - 1e-9))


def mean_reliability(seed_tau: float, n_seeds: float) -> float:
    """Spearman-Brown reliability (a correlation) of the mean of ``n_seeds`` standalone trainings
    whose seed-to-seed tau is ``seed_tau`` (Greiner's relation first); ``n_seeds`` = inf gives 1.
    NaN where the seeds do not agree at all (``seed_tau`` <= 0) or ``n_seeds`` < 1."""
    r = _r(seed_tau)
    if not (r > 0 and n_seeds >= 1):
        return math.nan
    return 1.0 if math.isinf(n_seeds) else n_seeds * r / (1 + (n_seeds - 1) * r)


def truth_ceiling(seed_tau: float, n_seeds: float) -> float:
    """Kendall tau a perfect predictor would reach against the mean of ``n_seeds`` standalone
    trainings whose seed-to-seed tau is ``seed_tau`` (:func:`mean_reliability`'s square root, as a
    tau): the scale every tau against that truth is read on. ``n_seeds`` may be inf."""
    return _tau(math.sqrt(mean_reliability(seed_tau, n_seeds)))


def truth_ceiling_summary(rows: Sequence[dict], table_rows) -> dict[str, float]:
    """:func:`truth_ceiling` of the seed-ceiling rows of ``shortfall.csv`` (test mIoU) with the
    fewest seeds an architecture of the table has: ``tau.truth_ceiling`` (the whole table) and,
    where 04's multi-fidelity signal scored its top k, ``tau.truth_ceiling_mf`` (those k alone:
    the most its tau can reach); ``_lo`` / ``_hi`` map the seed ceiling's CI (the map is
    monotone). Empty without a seed-ceiling row."""
    from .ranking import SEED_CEILING, SEED_CEILING_MF, seeds_per_arch

    seeds = [n for n in seeds_per_arch(table_rows).values() if n >= 2]
    out = {}
    for signal, key in ((SEED_CEILING, "tau.truth_ceiling"), (SEED_CEILING_MF, "tau.truth_ceiling_mf")):
        ceiling = [r for r in rows if r["signal"] == signal and r["metric"] == HEADLINE]
        if ceiling and seeds:
            row = ceiling[0]
            out.update({f"{key}{end}": truth_ceiling(float(row[f"tau{end}"]), min(seeds))
                        for end in ("", "_lo", "_hi") if _present(row.get(f"tau{end}"))})
    return out


def replica_noise_rows(curve_scores, scores, n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """The training noise of one rule, from the training replicas of 04's tau-vs-steps curve: one
    row per score (``ws``, ``ws_loss``), weights (``raw``, ``ema``) and step with at least
    :data:`MIN_VARIANTS` replicas.

    Row fields, against the mean test mIoU of ``scores`` (04's ``scores.csv``, matched by
    architecture): ``tau_mean`` (``tau_min`` / ``tau_max``) over the replicas; ``retest``, their
    mean pairwise tau; ``tau_ensemble``, the tau of their standardised average, and
    ``ensemble_minus_mean`` (``_lo`` / ``_hi``: paired bootstrap over architectures); under
    :func:`noise_model`, ``tau_limit`` (infinitely many trainings averaged; ``_lo`` / ``_hi``: a
    bootstrap over the architectures, which leaves out which trainings were drawn) and
    ``trainings_to_target`` for :data:`TARGET_TAU` (:func:`trainings_needed`; None with
    ``target_reachable`` 0 when even the limit stays below it). From three replicas on, the
    model's check (:func:`_model_check_fields`; None below): the ensemble's tau and the last
    replica's agreement with the others, each predicted by a fit that leaves the last replica
    out, measured minus predicted, and the spread of the limit over pairs of replicas.

    Raises:
        ShortfallError: an (architecture, replica) appears twice in a snapshot, or an
            architecture of the curve is not in ``scores``.
    """
    import pandas as pd

    df = _frame(curve_scores)
    if df.empty:
        return []
    df = df[pd.to_numeric(df.replica, errors="coerce").notna()]  # replicas only, never a summary row
    truth = {r["arch"]: float(r[f"truth.{HEADLINE}"]) for r in _frame(scores).to_dict("records")}
    unknown = sorted(set(df.arch) - set(truth))
    if unknown:
        raise ShortfallError(f"{CURVE_SCORES}: {len(unknown)} architecture(s) not in {SCORES} (e.g. {unknown[0]}); "
                             "04's files come from different runs: rerun 04_ranking")
    rows = []
    for (score, weights, steps), part in df.groupby(["score", "weights", "steps"], sort=False):
        if part.duplicated(["arch", "replica"]).any():
            raise ShortfallError(f"{CURVE_SCORES}: an architecture scored twice by one replica ({score}, {weights}, "
                                 f"{steps} steps); rerun 04_ranking")
        wide = part.pivot(index="arch", columns="replica", values="value")
        cols = [wide[r].to_numpy(dtype=float) for r in wide.columns] + [np.array([truth[a] for a in wide.index])]
        keep = np.logical_and.reduce([np.isfinite(c) for c in cols])
        if len(cols) - 1 >= MIN_VARIANTS and keep.sum() >= 3:
            row = _replica_row(tuple(c[keep] for c in cols), n_resamples, seed)
            rows.append({"score": score, "weights": weights, "steps": int(steps), **row})
    return sorted(rows, key=lambda r: (r["score"] != "ws", r["weights"], r["steps"]))


def _replica_row(cols: tuple, n_resamples: int, seed: int) -> dict:
    """:func:`replica_noise_rows`' fields of one snapshot: ``cols`` = the replicas' scores, then the truth."""
    *reps, t = cols
    taus = [kendall(c, t) for c in reps]
    r_one, r_limit = noise_model(reps, t)

    def gap(*c):
        return _ensemble_tau(*c) - float(np.mean([kendall(x, c[-1]) for x in c[:-1]]))

    def limit(*c):
        return averaged_tau(*noise_model(c[:-1], c[-1]), math.inf)

    low, high = _paired_ci(gap, cols, n_resamples, CONFIDENCE, seed)
    limit_lo, limit_hi = _paired_ci(limit, cols, n_resamples, CONFIDENCE, seed)
    return {"replicas": len(reps), "n": int(t.size), "tau_mean": float(np.mean(taus)), "tau_min": float(min(taus)),
            "tau_max": float(max(taus)), "retest": _pair_mean(kendall)(*reps),
            "tau_ensemble": _ensemble_tau(*cols), "ensemble_minus_mean": gap(*cols),
            "ensemble_minus_mean_lo": low, "ensemble_minus_mean_hi": high,
            "tau_limit": averaged_tau(r_one, r_limit, math.inf), "tau_limit_lo": limit_lo, "tau_limit_hi": limit_hi,
            "target": TARGET_TAU, **_needed_fields(trainings_needed(r_one, r_limit, TARGET_TAU)),
            **_model_check_fields(cols, n_resamples, seed)}


def _ensemble_tau(*cols) -> float:
    """Tau of the replicas' standardised average (``cols``: the replicas, then the truth)."""
    return kendall(np.mean([_standardised(c) for c in cols[:-1]], axis=0), cols[-1])


def _model_check_fields(cols: tuple, n_resamples: int, seed: int) -> dict:
    """:func:`replica_noise_rows`' check of the noise model, from three replicas on (else None):
    ``tau_ensemble_predicted`` (:func:`predicted_ensemble_tau`) and ``ensemble_minus_predicted``;
    ``retest_unseen`` and ``retest_unseen_predicted`` (:func:`unseen_retest`) and
    ``retest_unseen_minus_predicted``, both differences with ``_lo`` / ``_hi`` (paired bootstrap
    over architectures); ``tau_limit_pair_min`` / ``_max`` (:func:`pair_limits`; None if a pair's
    model does not apply)."""
    if len(cols) - 1 < 3:
        return dict.fromkeys(MODEL_CHECK)

    def miss(*c):
        return _ensemble_tau(*c) - predicted_ensemble_tau(c[:-1], c[-1])

    def retest_miss(*c):
        measured, predicted = unseen_retest(c[:-1], c[-1])
        return measured - predicted

    reps, truth = cols[:-1], cols[-1]
    predicted = predicted_ensemble_tau(reps, truth)
    retest, retest_predicted = unseen_retest(reps, truth)
    miss_lo, miss_hi = _paired_ci(miss, cols, n_resamples, CONFIDENCE, seed)
    retest_lo, retest_hi = _paired_ci(retest_miss, cols, n_resamples, CONFIDENCE, seed)
    limits = pair_limits(reps, truth)
    finite = all(math.isfinite(x) for x in limits)
    fields = {"tau_ensemble_predicted": predicted, "ensemble_minus_predicted": _ensemble_tau(*cols) - predicted,
              "ensemble_minus_predicted_lo": miss_lo, "ensemble_minus_predicted_hi": miss_hi,
              "retest_unseen": retest, "retest_unseen_predicted": retest_predicted,
              "retest_unseen_minus_predicted": retest - retest_predicted,
              "retest_unseen_minus_predicted_lo": retest_lo, "retest_unseen_minus_predicted_hi": retest_hi,
              "tau_limit_pair_min": min(limits) if finite else math.nan,
              "tau_limit_pair_max": max(limits) if finite else math.nan}
    return {k: (fields[k] if math.isfinite(fields[k]) else None) for k in MODEL_CHECK}


def _needed_fields(needed: float) -> dict:
    """``trainings_to_target`` (None where no count reaches it) and ``target_reachable`` (1 / 0;
    None where the model does not apply), so an unreachable target reads as censored, not missing."""
    if math.isnan(needed):
        return {"trainings_to_target": None, "target_reachable": None}
    return {"trainings_to_target": needed if math.isfinite(needed) else None, "target_reachable": float(math.isfinite(needed))}


def replica_noise_summary(rows: Sequence[dict]) -> dict[str, float]:
    """From :func:`replica_noise_rows` at each (score, weights)'s last step:
    ``ws_replicas.<score>.<weights>.<field>`` for ``steps``, ``tau_mean``, ``retest``,
    ``tau_ensemble``, ``tau_limit`` (``_lo`` / ``_hi``), ``target_reachable`` and
    ``trainings_to_target`` (where reachable), the model check's fields (:data:`MODEL_CHECK`,
    from three replicas on), and
    ``tau_gap.ws_replica_ensemble_vs_mean.<score>.<weights>`` with ``_lo`` / ``_hi``; empty
    without rows."""
    last = {}
    for r in rows:
        if r["steps"] >= last.get((r["score"], r["weights"]), {"steps": -1})["steps"]:
            last[r["score"], r["weights"]] = r
    out = {}
    for (score, weights), r in last.items():
        name = f"{score}.{weights}"
        out.update({f"ws_replicas.{name}.{k}": float(r[k]) for k in
                    ("steps", "tau_mean", "retest", "tau_ensemble", "tau_limit", "tau_limit_lo", "tau_limit_hi",
                     "trainings_to_target", "target_reachable", *MODEL_CHECK) if _present(r.get(k))})
        key = f"tau_gap.ws_replica_ensemble_vs_mean.{name}"
        out.update({key: float(r["ensemble_minus_mean"]), f"{key}_lo": float(r["ensemble_minus_mean_lo"]),
                    f"{key}_hi": float(r["ensemble_minus_mean_hi"])})
    return out


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
