"""The ranking study (notebook ``04_ranking``): which cheap signal ranks architectures like
standalone training does?

**Ground truth** is the benchmark table (``results/<profile>/bench/table.csv``, see
:mod:`linas_lib.analysis.bench`): per architecture the mean over its seeds of the test
mIoU, and of the test crack-class IoU as a second metric. Only architectures with at least
:data:`MIN_SEEDS` seeds count, and at least :data:`MIN_ARCHS` of them are needed
(:func:`ground_truth` refuses less with a :class:`RankingError`).

**Signals** are per-architecture scores: the weight-sharing (WS) accuracy of every supernet
variant, NEAR (I3), predicted latency of the bench's reference target, FLOPs, parameter
count, and a multi-fidelity score (a short fine-tune of the top-k by the best WS variant).
Each is compared with the ground truth by (:func:`compare`):

* Kendall tau-b (:func:`kendall`) and Spearman rho (:func:`spearman`) of the raw scores:
  the sign is reported as it comes out (a negative tau of latency says that slower networks
  were *worse*);
* precision@10 % (:func:`precision_at`): share of the true top 10 % among the predicted top
  10 % (at least one architecture). Picking a "top" needs a direction, so every signal
  declares one (:data:`DIRECTIONS`: +1 = a larger score predicts a better network;
  latency, FLOPs and parameters are +1, the "bigger is better" hypothesis);
* each with a 95 % percentile bootstrap CI over architectures (:func:`bootstrap_ci`,
  ``scipy.stats.bootstrap``, paired: an architecture keeps its score and its truth).

**The seed ceiling** (:func:`ceiling_rows`): the same three statistics between two training
seeds of the table, averaged over seed pairs (tau and its CI from
:func:`~linas_lib.analysis.bench_stats.seed_agreement`). A predictor is scored against the
mean over seeds, which is less noisy than one seed, so this row is a scale, not a bound: a
predictor exactly as noisy as one training seed scores above it (against the mean of two
seeds a perfect predictor reaches about 0.91 where the seed-to-seed tau is 0.82).

**Multi-fidelity** is read on the top k of the best WS variant, as a re-ranking stage uses
it; that selection narrows WS's own range on the subset, so compare ``mf`` with ``mf_ws``
(the same variant's WS score on the same k), not with ``ws.*`` over the whole table.

The statistics are pure functions on arrays and rows; the signal functions further down
(``*_columns``, :func:`mf_column`, :func:`steps_curve`) run the supernets.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..paths import display_path

log = logging.getLogger(__name__)
MIN_SEEDS = 2  # seeds an architecture needs to enter the ground truth
MIN_ARCHS = 3  # architectures the study needs
TOP_FRACTION = 0.1  # precision@10 %
CONFIDENCE = 0.95
# ground-truth column of the table -> key of TrainedSupernet.ws_scores measuring the same thing
METRICS = {"test_miou": "miou", "test_crack_iou": "crack_iou"}
HEADLINE = "test_miou"  # the metric of the summary's tau.*, rho.*, p10.*
SELECTION = "val_miou"  # what picks the best WS variant: never the test metric it is then scored on
# +1: a larger score predicts a better architecture (used by precision@10 % only)
DIRECTIONS = {"ws": 1, "ws_loss": 1, "near": 1, "near_exact": 1, "near_init": 1, "latency": 1, "flops": 1, "params": 1, "mf": 1, "mf_ws": 1}
SEED_CEILING = "seed_ceiling"
SEED_CEILING_MF = "seed_ceiling_mf"  # the seed ceiling on the multi-fidelity signal's top k
HALF_SUFFIX = "_half"  # a ceiling's split-half row: half the seeds' mean against the other half's
HALF_MIN_SEEDS = 4
BOOT_STREAM, MF_STREAM, NEAR_INIT_STREAM = 0xB007, 0x3F1D, 0x1417


class RankingError(ValueError):
    """The table or a setting cannot support the study; the message says what is missing."""


# ------------------------------------------------------------------ statistics (pure)


def _pair(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long float vectors, or a :class:`ValueError`."""
    a, b = np.asarray(pred, dtype=float).reshape(-1), np.asarray(truth, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"scores and truth differ in length: {a.size} vs {b.size}")
    return a, b


def kendall(pred, truth) -> float:
    """Kendall tau-b (``scipy.stats.kendalltau``); NaN for fewer than 2 items or a constant vector."""
    from scipy.stats import kendalltau

    a, b = _pair(pred, truth)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(kendalltau(a, b).statistic)


def spearman(pred, truth) -> float:
    """Spearman rho (``scipy.stats.spearmanr``); NaN for fewer than 2 items or a constant vector."""
    from scipy.stats import spearmanr

    a, b = _pair(pred, truth)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def top_count(n: int, fraction: float = TOP_FRACTION) -> int:
    """Architectures in the top ``fraction`` of ``n``: ``fraction * n`` rounded half up, at least 1."""
    if n < 1:
        raise ValueError(f"top_count needs n >= 1, got {n}")
    return max(1, min(n, int(math.floor(fraction * n + 0.5))))


def precision_at(pred, truth, fraction: float = TOP_FRACTION, direction: int = 1) -> float:
    """Share of the true top ``k`` among the predicted top ``k`` (``k`` = :func:`top_count`).

    The true top holds every architecture at least as good as the ``k``-th best (ties at the
    boundary all count as top). The predicted top is the ``k`` best of ``direction * pred``;
    a tie across its boundary is split evenly (the expected precision of a random tie-break),
    so the order of the rows never matters.

    Args:
        pred: scores.
        truth: ground truth, larger = better.
        fraction: the top share (0.1 = precision@10 %).
        direction: +1 when a larger score predicts a better network, -1 when a smaller one does.

    Returns:
        A value in [0, 1]; NaN for an empty input.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    a, b = _pair(pred, truth)
    if a.size == 0:
        return math.nan
    k = top_count(a.size, fraction)
    true_top = b >= np.sort(b)[::-1][k - 1]
    score = direction * a
    edge = np.sort(score)[::-1][k - 1]
    above, tied = score > edge, score == edge
    hits = true_top[above].sum() + (k - above.sum()) * true_top[tied].mean()
    return float(hits / k)


def bootstrap_ci(statistic: Callable, pred, truth, n_resamples: int = 2000, confidence: float = CONFIDENCE,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(pred, truth)``, resampling items in pairs.

    ``scipy.stats.bootstrap`` (paired) draws the resamples; the percentiles are taken over
    the resamples where the statistic is defined (a resample can be constant, e.g. Kendall
    tau of one architecture drawn every time). With fewer than half of them defined the CI
    is NaN.

    Returns:
        ``(low, high)``.
    """
    a, b = _pair(pred, truth)
    if a.size < 2:
        return math.nan, math.nan
    return _paired_ci(statistic, (a, b), n_resamples, confidence, seed)


def _paired_ci(statistic: Callable, columns: tuple, n_resamples: int, confidence: float,
               seed: int) -> tuple[float, float]:
    """Percentile CI of ``statistic(*columns)`` over paired resamples of the rows (see :func:`bootstrap_ci`)."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # degenerate resamples are expected and handled below
        warnings.simplefilter("ignore")
        res = bootstrap(columns, statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile",
                        rng=np.random.default_rng([seed, BOOT_STREAM]))
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    finite = dist[np.isfinite(dist)]
    if finite.size < 0.5 * dist.size:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def tau_gap(pred_a, pred_b, truth, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Kendall tau of ``pred_a`` minus that of ``pred_b``, both against ``truth`` on the same
    items, with a paired bootstrap CI (both taus from each resample of the items).

    Items where any value is NaN are left out.

    Returns:
        ``(gap, low, high)``; NaN with fewer than 2 items.

    Raises:
        ValueError: the three columns differ in length.
    """
    return replica_tau_gap([pred_a], [pred_b], truth, n_resamples, seed)


def _p10(direction: int) -> Callable:
    return lambda pred, truth: precision_at(pred, truth, TOP_FRACTION, direction)


def compare(pred, truth, direction: int = 1, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Tau, rho and precision@10 % of ``pred`` against ``truth``, each with its bootstrap CI
    (:func:`replica_compare` of one prediction).

    Items where either value is NaN are left out (``n`` counts the rest).

    Returns:
        ``{n, direction, tau, tau_lo, tau_hi, rho, rho_lo, rho_hi, p10, p10_lo, p10_hi}``.
    """
    row = replica_compare([pred], truth, direction, n_resamples, seed)
    return {k: v for k, v in row.items() if k != "replicas" and not k.endswith(("_min", "_max"))}


# ------------------------------------------------------------------ ground truth (pure)


@dataclass(frozen=True)
class GroundTruth:
    """Mean-over-seeds accuracy of the table's architectures (those with >= ``MIN_SEEDS`` seeds).

    Attributes:
        archs: architecture strings, in table order.
        values: ``{metric column: (n,) mean over seeds}`` for every column of :data:`METRICS`.
        n_seeds: seeds averaged per architecture (the same for all: :func:`ground_truth`).
    """

    archs: tuple[str, ...]
    values: dict
    n_seeds: np.ndarray

    @property
    def choices(self) -> np.ndarray:
        """``(n, 5)`` integer choices of the architectures."""
        from ..space import parse_arch

        return np.array([parse_arch(a) for a in self.archs], dtype=np.int64)


def _frame(rows):
    import pandas as pd

    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def seeds_per_arch(rows) -> dict[str, int]:
    """``{arch: distinct seeds}`` of table rows (empty for an empty table)."""
    df = _frame(rows)
    if df.empty or not {"arch", "seed"} <= set(df.columns):
        return {}
    return {str(a): int(n) for a, n in df.groupby("arch", sort=False)["seed"].nunique().items()}


def ground_truth(rows, min_seeds: int = MIN_SEEDS, min_archs: int = MIN_ARCHS) -> GroundTruth:
    """The ground truth of table rows ``{arch, seed, test_miou, test_crack_iou, ...}``: per
    architecture with >= ``min_seeds`` seeds, the mean over its ``n`` lowest seeds, ``n`` the
    fewest seeds any of them has (every mean equally noisy).

    Raises:
        RankingError: a column is missing, or fewer than ``min_archs`` architectures have
            ``min_seeds`` seeds (a table with one seed per architecture is refused: neither a
            mean over seeds nor the seed ceiling exists).
    """
    import pandas as pd

    df = _frame(rows)
    missing = sorted({"arch", "seed", *METRICS} - set(df.columns))
    if missing:
        raise RankingError(f"benchmark table lacks column(s) {', '.join(missing)}")
    counts = seeds_per_arch(df)
    usable = [a for a, n in counts.items() if n >= min_seeds]
    if len(usable) < min_archs:
        most = max(counts.values(), default=0)
        raise RankingError(f"benchmark table has {len(usable)} architecture(s) with >= {min_seeds} seeds "
                           f"({len(counts)} architecture(s), at most {most} seed(s) each); the ranking study "
                           f"needs >= {min_archs}: build more with `linas bench build`")
    columns = list(METRICS) + ([SELECTION] if SELECTION in df.columns else [])
    n_seeds = min(counts[a] for a in usable)
    # Equal seed counts, so no architecture's mean is less noisy than another's (a table still
    # filling, or a pilot's extra seed): each keeps its n_seeds lowest seeds.
    kept = df[df.arch.isin(usable)].sort_values("seed", kind="stable").groupby("arch", sort=False).head(n_seeds)
    means = kept.groupby("arch", sort=False)[columns].mean().reindex(pd.unique(df.arch[df.arch.isin(usable)]))
    return GroundTruth(tuple(means.index.astype(str)), {m: means[m].to_numpy(float) for m in columns},
                       np.full(len(means), n_seeds))


def table_facts(rows) -> dict:
    """``bench.n_archs`` (with >= MIN_SEEDS seeds), ``bench.n_seeds`` (fewest of those), ``bench.n_rows``
    and ``bench.train_s_total`` (training seconds of every row); only what the table holds."""
    df = _frame(rows)
    counts = seeds_per_arch(df)
    usable = [n for n in counts.values() if n >= MIN_SEEDS]
    facts = {"bench.n_archs": len(usable), "bench.n_rows": int(len(df))}
    if usable:
        facts["bench.n_seeds"] = min(usable)
    if "train_seconds" in df.columns and len(df):
        facts["bench.train_s_total"] = float(df.train_seconds.astype(float).sum())
    return facts


# ------------------------------------------------------------------ seed ceiling (pure)


def _pair_mean(stat: Callable) -> Callable:
    """``stat`` between every pair of columns (seeds), averaged over the pairs."""
    return lambda *cols: float(np.mean([stat(a, b) for a, b in itertools.combinations(cols, 2)]))


def ceiling_row(rows, metric: str, n_resamples: int = 2000, seed: int = 0, name: str = SEED_CEILING,
                half: bool = False) -> dict:
    """The seed ceiling of one metric as a ranking row (``signal = name``).

    Tau and its CI come from :func:`~linas_lib.analysis.bench_stats.seed_agreement`; rho and
    precision@10 % are computed the same way (one seed predicting another, averaged over
    seed pairs, bootstrap over architectures). With ``half`` (>= 4 seeds): the mean of half
    the seeds predicting the other half's (``tau_half``, averaged over the splits), the
    agreement of two tables of ``n_seeds // 2`` seeds each with the same split, encoder and
    recipe.

    Raises:
        RankingError: fewer than 3 architectures with 2 common seeds (4 with ``half``).
    """
    from .bench_stats import seed_agreement, seed_matrix, split_half_mean

    try:
        agree = seed_agreement(rows, metrics=(metric,), n_resamples=n_resamples, seed=seed)
    except ValueError as err:
        raise RankingError(f"seed ceiling: {err}") from err
    tau = "tau_half" if half else "tau"
    if f"{tau}.{metric}" not in agree:
        raise RankingError(f"split-half seed ceiling: {metric} has {agree['n_seeds']} common seed(s), needs >= 4")
    matrix, _, _ = seed_matrix(rows, metric)
    combine = split_half_mean if half else _pair_mean
    row = {"signal": name, "metric": metric, "n": int(agree["n_archs"]), "direction": 1,
           "tau": agree[f"{tau}.{metric}"], "tau_lo": agree[f"{tau}_ci_low.{metric}"],
           "tau_hi": agree[f"{tau}_ci_high.{metric}"]}
    for stat_name, stat in (("rho", spearman), ("p10", _p10(1))):
        low, high = _paired_ci(combine(stat), tuple(matrix.T), n_resamples, CONFIDENCE, seed)
        row.update({stat_name: combine(stat)(*matrix.T), f"{stat_name}_lo": low, f"{stat_name}_hi": high})
    return row


def ceiling_rows(rows, n_resamples: int = 2000, seed: int = 0, archs: Sequence[str] | None = None,
                 name: str = SEED_CEILING) -> list[dict]:
    """:func:`ceiling_row` of every metric of :data:`METRICS`, and with >= 4 seeds on every
    architecture the split-half rows too (``<name>_half``).

    Args:
        rows: the table's rows.
        archs: only these architectures (the ceiling of a subset: :data:`SEED_CEILING_MF` is
            that of the fine-tuned top k, whose accuracies lie closer together than the
            table's, so seed noise reorders more of them); None: all.
        name: the rows' ``signal``.
    """
    if archs is not None:
        wanted = {str(a) for a in archs}
        rows = [r for r in _frame(rows).to_dict("records") if str(r["arch"]) in wanted]
    out = [ceiling_row(rows, m, n_resamples, seed, name) for m in METRICS]
    if _common_seeds(rows) >= HALF_MIN_SEEDS:
        out += [ceiling_row(rows, m, n_resamples, seed, f"{name}{HALF_SUFFIX}", half=True) for m in METRICS]
    return out


def _common_seeds(rows) -> int:
    """How many seeds the architectures with every seed share (the seed ceiling's columns)."""
    from .bench_stats import seed_matrix

    return len(seed_matrix(rows, HEADLINE)[2])


def ceilings(table_rows, scores: Sequence[dict], n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """The seed ceiling of the whole table and, when the multi-fidelity signal scored at least
    :data:`MIN_ARCHS` architectures, of its top k (:data:`SEED_CEILING_MF`): the scale its tau
    and ``mf_ws``'s are read against."""
    rows = ceiling_rows(table_rows, n_resamples, seed)
    top = mf_archs(scores)
    if len(top) >= MIN_ARCHS:
        rows += ceiling_rows(table_rows, n_resamples, seed, top, SEED_CEILING_MF)
    return rows


def mf_archs(scores: Sequence[dict]) -> list[str]:
    """Architectures of ``scores.csv`` rows that the multi-fidelity signal scored (finite ``mf``)."""
    df = _frame(scores)
    if "mf" not in df.columns:
        return []
    return [str(a) for a in df.loc[np.isfinite(df["mf"].astype(float)), "arch"]]


# ------------------------------------------------------------------ signals and ranking rows (pure)


@dataclass(frozen=True)
class Signal:
    """One signal of the study and where ``scores.csv`` holds it.

    Attributes:
        name: the row name (``ws.<variant>``, ``near``, ``latency``, ...).
        columns: ``{metric: scores column}``; a metric not listed uses ``columns["*"]``.
        direction: +1 when larger predicts better (see :data:`DIRECTIONS`).
        subset: only architectures where this column is finite (empty: all).
    """

    name: str
    columns: dict
    direction: int = 1
    subset: str = ""

    def column(self, metric: str) -> str:
        """The scores column compared with ``metric``."""
        return self.columns.get(metric, self.columns.get("*"))


def signals(variants: Sequence[str], best: str | None = None, mf: bool = True) -> list[Signal]:
    """The study's signals in table order (``mf_ws``: the best WS variant on the fine-tuned subset)."""
    out = [Signal(f"ws.{v}", {"test_miou": f"ws.{v}", "test_crack_iou": f"ws_crack.{v}"}, DIRECTIONS["ws"])
           for v in variants]
    out += [Signal(f"ws_loss.{v}", {"*": f"ws_loss.{v}"}, DIRECTIONS["ws_loss"]) for v in variants]
    out += [Signal(n, {"*": n}, DIRECTIONS[n]) for n in ("near", "near_exact", "near_init", "latency", "flops", "params")]
    if mf:
        out.append(Signal("mf", {"*": "mf"}, DIRECTIONS["mf"]))
        if best is not None:
            out.append(Signal("mf_ws", {"test_miou": f"ws.{best}", "test_crack_iou": f"ws_crack.{best}"},
                              DIRECTIONS["mf_ws"], subset="mf"))
    return out


def score_rows(truth: GroundTruth, columns: Mapping[str, Sequence[float]]) -> list[dict]:
    """Rows of ``scores.csv``: architecture, seeds, ground truth, then every signal column.

    Raises:
        ValueError: a column whose length differs from the number of architectures.
    """
    n = len(truth.archs)
    bad = [name for name, values in columns.items() if len(values) != n]
    if bad:
        raise ValueError(f"score column(s) {', '.join(bad)} do not have {n} values")
    rows = []
    for i, arch in enumerate(truth.archs):
        row = {"arch": arch, "n_seeds": int(truth.n_seeds[i])}
        row.update({f"truth.{m}": float(v[i]) for m, v in truth.values.items()})
        row.update({name: float(values[i]) for name, values in columns.items()})
        rows.append(row)
    return rows


def ranking_rows(scores: Sequence[dict], signal_list: Sequence[Signal], n_resamples: int = 2000,
                 seed: int = 0) -> list[dict]:
    """One row per (signal, metric) present in ``scores``: :func:`compare` against ``truth.<metric>``."""
    df = _frame(scores)
    rows = []
    for sig, metric in itertools.product(signal_list, METRICS):
        col = sig.column(metric)
        if col not in df.columns:
            continue
        sub = df[np.isfinite(df[sig.subset].astype(float))] if sig.subset else df
        stats = compare(sub[col].astype(float), sub[f"truth.{metric}"].astype(float), sig.direction, n_resamples,
                        seed)
        rows.append({"signal": sig.name, "metric": metric, **stats})
    return rows


def best_variant(scores: Sequence[dict], variants: Sequence[str], metric: str = SELECTION) -> str:
    """The variant whose WS score has the highest Kendall tau with ``truth.<metric>`` (first on ties).

    Selected on the table's validation mIoU, so the winner's test tau is not chosen on itself.

    Raises:
        RankingError: no variants.
    """
    if not variants:
        raise RankingError("ranking.variants is empty")
    df = _frame(scores)
    taus = [kendall(df[f"ws.{v}"].astype(float), df[f"truth.{metric}"].astype(float)) for v in variants]
    ranked = [t if math.isfinite(t) else -math.inf for t in taus]
    return variants[int(np.argmax(ranked))]


def top_k(values, k: int, direction: int = 1) -> np.ndarray:
    """Indices of the ``k`` best of ``direction * values`` (stable: earlier rows first on ties)."""
    order = np.argsort(-direction * np.asarray(values, dtype=float), kind="stable")
    return order[: max(0, min(k, len(order)))]


def summary(facts: dict, rows: Sequence[dict] = ()) -> dict[str, float]:
    """Flat ``summary.json`` figures: the table facts, then per ranking row of the headline metric
    ``tau.<signal>``, ``tau_lo.<signal>``, ``tau_hi.<signal>``, ``rho.<signal>``, ``p10.<signal>``
    and, for the crack IoU, ``tau_crack.<signal>``."""
    out = dict(facts)
    for row in rows:
        name = row["signal"]
        if row["metric"] == HEADLINE:
            out.update({f"{k}.{name}": float(row[k]) for k in ("tau", "tau_lo", "tau_hi", "rho", "p10")})
        elif row["metric"] == "test_crack_iou":
            out[f"tau_crack.{name}"] = float(row["tau"])
    return out


def profile_variant(cfg, variants: Mapping[str, dict]) -> str | None:
    """The name of the variant whose settings the ``supernet`` section ``cfg`` has (None: none does)."""
    for name, settings in variants.items():
        if all(getattr(cfg, key, object()) == value for key, value in settings.items()):
            return name
    return None


# ------------------------------------------------------------------ settings and the table


def check_ranking(profile):
    """The profile's ``ranking`` section, with the variant names checked.

    The section's own fields are checked when the profile loads (:class:`RankingConfig`); the
    names need the supernet module.

    Raises:
        RankingError: an unknown variant in ``ranking.variants`` or ``ranking.search_ablations``.
    """
    from ..supernet.train import VARIANTS

    r = profile.ranking
    for name in ("variants", "search_ablations"):
        unknown = [v for v in getattr(r, name) if v not in VARIANTS]
        if unknown:
            raise RankingError(f"profile {profile.name!r}: ranking.{name}: unknown {', '.join(map(repr, unknown))} "
                               f"(known: {', '.join(VARIANTS)})")
    return r


@dataclass
class BenchTable:
    """The benchmark table as the notebook sees it.

    Attributes:
        rows: table rows (empty when absent).
        truth: the ground truth, or None when the table cannot support the study.
        message: one line saying what was found (and why it is not usable).
        path: where the table is read from.
        facts: :func:`table_facts`.
    """

    rows: list = field(default_factory=list)
    truth: GroundTruth | None = None
    message: str = ""
    path: str = ""
    facts: dict = field(default_factory=dict)


def table_path(profile) -> Path:
    """``results/<profile>/bench/table.csv`` (the pilot's ``pilot_table.csv`` only chooses the
    table's epochs and seeds; it is not a ground truth)."""
    from .bench import bench_dir

    return bench_dir(profile) / "table.csv"


def build_table(profile, seed: int) -> dict:
    """Build or resume the profile's benchmark table in this process (one thread, no Dask cluster)."""
    from .bench import build

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return build(profile, seed, executor=pool, progress=False)


def load_table(profile, seed: int) -> BenchTable:
    """The profile's table and its ground truth (built first when ``ranking.build_table``).

    A table that is absent, was built on other data or encoder weights than this run's, or
    has too few architectures with two seeds gives ``truth = None`` and a message saying so.

    Raises:
        RankingError: the table is corrupt (:func:`read_table_rows`) and was built on this run's data.
        ValueError: the table has rows but no provenance line, or this run's data cannot be loaded
            to compare with the one it was built on (:func:`data_mismatch`).
    """
    path = table_path(profile)
    shown = display_path(path)
    if profile.ranking.build_table:
        build_table(profile, seed)
    if not path.is_file():
        return BenchTable(message=f"no benchmark table at {shown}: build it with `linas bench build --profile "
                                  f"{profile.name}` (make bench); nothing is ranked", path=shown,
                          facts={"bench.n_archs": 0})
    try:
        stale, no_provenance = data_mismatch(profile, seed, path), None
    except ValueError as err:  # an empty file has no header either: the table's own error comes first
        stale, no_provenance = "", err
    try:
        rows = read_table_rows(path)
    except RankingError as err:
        if not stale:
            raise
        return BenchTable(message=f"{stale}; it is also unreadable here: {err}", path=shown, facts={"bench.n_archs": 0})
    if no_provenance:
        raise no_provenance
    table = BenchTable(rows=rows, path=shown, facts=table_facts(rows))
    if stale:
        table.message = stale
        return table
    try:
        table.truth = ground_truth(rows)
    except RankingError as err:
        table.message = f"{shown}: {err}"
        return table
    table.message = (f"{shown}: {len(table.truth.archs)} architectures with >= {MIN_SEEDS} seeds "
                     f"({len(rows)} rows)")
    return table


def read_table_rows(path: Path) -> list[dict]:
    """A benchmark table's rows, checked: the columns the ranking reads, finite metrics in
    [0, 1], parsable architectures, one row per (architecture, seed).

    Raises:
        RankingError: naming the file and the first bad row (a corrupt table is an error, not
            a table too small to rank).
    """
    from ..provenance import read_csv_table

    rows = read_csv_table(path, columns=("arch", "seed", *METRICS), numeric=(*METRICS, SELECTION), counts=("seed",),
                          archs=("arch",),
                          unique=("arch", "seed"), error=RankingError)
    present = [m for m in (*METRICS, SELECTION) if m in rows[0]]
    for number, row in enumerate(rows, start=1):
        outside = [m for m in present if not 0 <= row[m] <= 1]
        if outside:
            raise RankingError(f"{display_path(path)}: row {number}: {outside[0]} = {row[outside[0]]} lies outside [0, 1]")
    return rows


def data_mismatch(profile, seed: int, path: Path) -> str:
    """Why the table at ``path`` was built on other data or encoder weights than this run ("" if not)."""
    from ..data import load_splits
    from ..encoder.features import encoder_identity
    from ..provenance import read_csv_provenance
    from .bench import data_digest

    recorded = read_csv_provenance(path)
    if "data_digest" not in recorded:
        return ""
    splits = load_splits(profile, seed)
    here = {"data_digest": data_digest(splits), "weights_id": encoder_identity(profile, seed, splits).weights_id}
    differ = [k for k, v in here.items() if recorded.get(k) not in (None, v)]
    if not differ:
        return ""
    return (f"{display_path(path)} was built on other {' and '.join(differ)} than this run (table {recorded.get(differ[0])}, "
            f"run {here[differ[0]]}): rebuild it with `linas bench build --profile {profile.name}`; nothing is ranked")


# ------------------------------------------------------------------ signals (run the supernets)


def ws_columns(profile, seed: int, choices: np.ndarray, variants: Sequence[str]) -> dict[str, np.ndarray]:
    """``ws.<variant>`` (WS mIoU), ``ws_crack.<variant>`` (WS crack IoU) and ``ws_loss.<variant>``
    (minus the WS segmentation loss, so larger predicts better) of every architecture, from the
    same forward passes."""
    from ..supernet.train import trained_supernet

    out = {}
    for variant in variants:
        scores = ws_scores(trained_supernet(profile, seed, variant), choices)
        out[f"ws.{variant}"], out[f"ws_crack.{variant}"] = scores["miou"], scores["crack_iou"]
        if "loss" in scores:
            out[f"ws_loss.{variant}"] = -scores["loss"]
    return out


def replica_profile(profile, replica: int):
    """``profile`` with ``supernet.replica`` set (the profile itself for its own replica)."""
    if profile.supernet.replica == replica:
        return profile
    return replace(profile, supernet=replace(profile.supernet, replica=replica))


def ws_on_test_columns(profile, seed: int, choices: np.ndarray) -> dict[str, np.ndarray]:
    """The images' control for 07: ``ws_on_test.<variant>`` (WS mIoU) and ``ws_loss_on_test.<variant>``
    (minus the WS loss) of the profile's own variant scored on the *test* images, the ones the
    table's truth is measured on, with the same per-path BN recalibration as WS.

    A diagnostic that reads the test split, so no signal, choice or search uses it: if WS ranks
    no better on the truth's own images than on its held-out val images, the images are not
    what WS lacks. Empty when the profile's settings match no named variant.
    """
    from ..supernet.evaluate import WeightSharingEvaluator
    from ..supernet.train import VARIANTS, trained_supernet

    own = profile_variant(profile.supernet, VARIANTS)
    if own is None:
        return {}
    supernet = trained_supernet(profile, seed)
    test = WeightSharingEvaluator(supernet.model, supernet.features["test"], supernet.cfg.batch_size,
                                  recalib=supernet.features["train"], recalib_batches=supernet.cfg.bn_recalib_batches)
    scores = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in test.scores(np.asarray(choices, dtype=np.int64)).items()}
    out = {f"ws_on_test.{own}": scores["miou"]}
    if "loss" in scores:
        out[f"ws_loss_on_test.{own}"] = -scores["loss"]
    return out


def ws_scores(supernet, choices: np.ndarray) -> dict[str, np.ndarray]:
    """``{"miou": (n,), "crack_iou": (n,)}`` of ``supernet.ws_scores`` over architectures ``(n, 5)``,
    and ``"loss"`` when the supernet gives it (:class:`~linas_lib.supernet.evaluate.WeightSharingEvaluator`)."""
    scores = supernet.ws_scores(np.asarray(choices, dtype=np.int64))
    keys = ("miou", "crack_iou", "loss") if "loss" in scores else ("miou", "crack_iou")
    return {k: np.asarray(scores[k], dtype=float).reshape(-1) for k in keys}


def oracle_rows(supernet, table: BenchTable, n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Rank agreement of one trained supernet -- the oracle a search reads -- with the table.

    04 scores the profile's supernet as trained in its own run; a search on another CPU reads
    another training of the same key (floating-point reductions differ), so 05 scores the very
    weights it searched with. Rows ``signal = "ws"`` (its WS mIoU and crack IoU, per metric of
    :data:`METRICS`, by :func:`compare`) after the table's :data:`SEED_CEILING` rows.

    Returns:
        The rows, or ``[]`` when the table cannot support the study (``table.truth`` is None);
        without the ceiling rows when too few architectures share two seeds (a partial table).
    """
    truth = table.truth
    if truth is None:
        return []
    ws = ws_scores(supernet, truth.choices)
    try:
        rows = ceiling_rows(table.rows, n_resamples, seed)
    except RankingError as err:
        log.warning("%s: no seed ceiling beside the oracle's rank agreement (%s)", table.path, err)
        rows = []
    for metric, key in METRICS.items():
        rows.append({"signal": "ws", "metric": metric,
                     **compare(ws[key], truth.values[metric], DIRECTIONS["ws"], n_resamples, seed)})
    return rows


def oracle_summary(rows: Sequence[dict]) -> dict[str, float]:
    """:func:`summary` of :func:`oracle_rows` under ``oracle_rank.``: ``oracle_rank.tau.ws``,
    ``oracle_rank.tau.seed_ceiling``, ... (empty without rows)."""
    return {f"oracle_rank.{k}": v for k, v in summary({}, rows).items()}


def near_columns(supernet, search_cfg, seed: int, choices: np.ndarray, n_inits: int) -> tuple[dict, dict]:
    """NEAR of every architecture: ``near`` = the additive table the zero-cost search uses
    (:func:`linas_lib.search.report.near_proxy`), ``near_exact`` = full-path NEAR
    (:func:`linas_lib.search.zero_cost.exact_scores`) on the same batch, ``near_init`` = full-path
    NEAR of untrained supernets, the mean over ``n_inits`` initialisations (the NEAR paper's
    setting; :func:`~linas_lib.search.zero_cost.init_scores`).

    Returns:
        ``(columns, facts)`` (facts of :func:`~linas_lib.search.report.near_proxy`).
    """
    from ..search.report import near_proxy
    from ..search.zero_cost import exact_scores, init_scores
    from ..supernet.model import Supernet

    proxy, facts = near_proxy(supernet, search_cfg, seed)
    taps = supernet.feature_batch(search_cfg.near_images)
    exact = exact_scores(supernet.model, taps, choices)
    device = next(supernet.model.parameters()).device

    def untrained() -> Supernet:  # drawn on the CPU (the same weights on every device), scored on the run's
        return Supernet().to(device)

    at_init = init_scores(untrained, taps, choices, np.random.default_rng([seed, NEAR_INIT_STREAM]), n_inits)
    return {"near": proxy(choices), "near_exact": np.asarray(exact, dtype=float), "near_init": at_init}, facts


def decoder_costs(choices: np.ndarray, tap_shapes: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """FLOPs and parameters of each architecture's standalone decoder.

    FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward on taps of the given
    shapes (one image: leading dimension 1). Convolutions and matrix products are counted
    (2 per multiply-add), element-wise ops (BN, ReLU, adds) are not. The decoder and taps live
    on the ``meta`` device: shapes only, no arithmetic, same counts.

    Args:
        choices: ``(n, 5)``.
        tap_shapes: shapes of the five encoder taps of one image.

    Returns:
        ``(flops (n,), params (n,))``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..ops import Decoder

    flops, params = [], []
    for arch in np.asarray(choices, dtype=np.int64):
        with torch.device("meta"):
            decoder, taps = Decoder(arch).eval(), [torch.zeros(tuple(s)) for s in tap_shapes]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            decoder(taps)
        flops.append(counter.get_total_flops())
        params.append(sum(p.numel() for p in decoder.parameters()))
    return np.array(flops, dtype=float), np.array(params, dtype=float)


def latency_column(profile, choices: np.ndarray) -> np.ndarray:
    """Predicted latency (ms) of the bench's reference target (its committed LUT, I4 interaction model)."""
    from .bench import reference_model

    return np.asarray(reference_model(profile).predict(choices)[:, 0], dtype=float)


def cost_columns(profile, taps, choices: np.ndarray) -> dict[str, np.ndarray]:
    """``latency`` (ms), ``flops`` and ``params`` of every architecture (``taps``: one image's taps)."""
    flops, params = decoder_costs(choices, [(1, *t.shape[1:]) for t in taps])
    return {"latency": latency_column(profile, choices), "flops": flops, "params": params}


def mf_column(supernet, ws_miou, choices: np.ndarray, k: int, epochs: int, seed: int) -> np.ndarray:
    """Multi-fidelity: the top ``k`` by ``ws_miou`` fine-tuned ``epochs`` from the supernet's weights
    (``TrainedSupernet.finetune_and_evaluate``); NaN for the other architectures."""
    out = np.full(len(choices), np.nan)
    rng = np.random.default_rng([seed, MF_STREAM])
    for i in top_k(ws_miou, k):
        out[i] = _as_miou(supernet.finetune_and_evaluate(choices[i], epochs, rng))
    return out


def _as_miou(value) -> float:
    """A fine-tune score: a number, or a dict with ``miou``."""
    return float(value["miou"] if isinstance(value, Mapping) else value)


def curve_steps(profile) -> tuple[int, ...]:
    """Weight steps of the tau-vs-steps curve: ``ranking.steps``, else ``supernet.eval_checkpoints``."""
    return tuple(profile.ranking.steps or getattr(profile.supernet, "eval_checkpoints", ()))


def curve_profile(profile, replica: int = 0):
    """The profile whose supernet the tau-vs-steps curve follows (training replica ``replica``).

    Its ``eval_checkpoints`` are the curve's steps, so one replay to the last step saves every
    snapshot. ``ranking.steps_oneshot_epochs`` beyond the profile's ``supernet.warmup_epochs``
    lengthens the one-shot phase: a run of its own (another supernet key), whose first steps
    are the profile's own (the one-shot learning rate is constant and the data order is drawn
    per epoch alike in both), so the curve extends the profile's training rather than
    replacing it. ``ranking.steps_oneshot_ema`` gives it a moving average of the one-shot
    weights (``supernet.oneshot_ema``), which only observes those steps. ``replica`` > 0 is
    the same training from another stream of the run seed (``supernet.replica``).
    """
    cfg, r = profile.supernet, profile.ranking
    epochs = max(cfg.warmup_epochs, int(r.steps_oneshot_epochs))
    steps = tuple(sorted(set(curve_steps(profile))))
    ema = float(r.steps_oneshot_ema) or cfg.oneshot_ema
    return replace(profile, supernet=replace(cfg, warmup_epochs=epochs, eval_checkpoints=steps, oneshot_ema=ema,
                                             replica=int(replica)))


def replica_compare(preds: Sequence, truth, direction: int = 1, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Tau, rho and precision@10 % averaged over replicas' predictions of the same items.

    Each statistic is the mean over ``preds`` of its value against ``truth``, with its min and
    max over them, and a paired bootstrap CI over the items (every replica's statistic from the
    same resample), so the CI covers item sampling and the min-max the spread between replicas.
    Items where any value is NaN are left out.

    Returns:
        ``{n, direction, replicas, tau, tau_lo, tau_hi, tau_min, tau_max, rho, ..., p10, ...}``.
    """
    cols, truth = _aligned(preds, truth)
    row = {"n": int(truth.size), "direction": int(direction), "replicas": len(cols)}
    for name, stat in (("tau", kendall), ("rho", spearman), ("p10", _p10(direction))):
        values = [stat(c, truth) for c in cols]
        mean = lambda *c: float(np.mean([stat(x, c[-1]) for x in c[:-1]]))  # noqa: E731
        low, high = (_paired_ci(mean, (*cols, truth), n_resamples, CONFIDENCE, seed) if truth.size >= 2
                     else (math.nan, math.nan))
        row.update({name: float(np.mean(values)), f"{name}_lo": low, f"{name}_hi": high,
                    f"{name}_min": float(np.min(values)), f"{name}_max": float(np.max(values))})
    return row


def retest(preds: Sequence) -> float:
    """Mean Kendall tau between every pair of replicas' scores of the same items (NaN for fewer
    than two): how well one training's ranking reproduces in another (test-retest)."""
    return _pair_mean(kendall)(*preds) if len(preds) >= 2 else math.nan


def replica_tau_gap(preds_a: Sequence, preds_b: Sequence, truth, n_resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """:func:`tau_gap` averaged over replicas: the mean over ``r`` of tau(``preds_a[r]``) minus
    tau(``preds_b[r]``), with a paired bootstrap CI over the items (every tau from the same resample).

    Raises:
        ValueError: the two lists differ in length, or the columns in size.
    """
    if len(preds_a) != len(preds_b) or len(preds_a) == 0:
        raise ValueError(f"replica_tau_gap needs as many replicas in each arm (>= 1); got {len(preds_a)} and {len(preds_b)}")
    cols, truth = _aligned([*preds_a, *preds_b], truth)
    k = len(preds_a)

    def gap(*c):
        return float(np.mean([kendall(c[r], c[-1]) - kendall(c[k + r], c[-1]) for r in range(k)]))

    if truth.size < 2:
        return math.nan, math.nan, math.nan
    return (gap(*cols, truth), *_paired_ci(gap, (*cols, truth), n_resamples, CONFIDENCE, seed))


def _aligned(preds: Sequence, truth) -> tuple[list[np.ndarray], np.ndarray]:
    """Prediction columns and truth as float arrays, without the items where any is NaN.

    Raises:
        ValueError: the columns differ in length.
    """
    cols = [np.asarray(c, dtype=float).reshape(-1) for c in (*preds, truth)]
    if len({c.size for c in cols}) > 1:
        raise ValueError(f"one value per item is needed in each column; got lengths {[c.size for c in cols]}")
    keep = np.logical_and.reduce([np.isfinite(c) for c in cols])
    return [c[keep] for c in cols[:-1]], cols[-1][keep]


# curve score -> the prefix of its summary figures (``tau_steps.<steps>``, ``tau_steps_loss.<steps>``)
CURVE_SCORES = {"ws": "tau_steps", "ws_loss": "tau_steps_loss"}


def snapshot_scores(profile, seed: int, truth: GroundTruth) -> dict[tuple[int, str, int], dict[str, np.ndarray]]:
    """WS scores of the table's architectures on every snapshot of the tau-vs-steps curve.

    Each snapshot comes from :func:`linas_lib.supernet.train.supernet_at_steps` (saved during
    training, replayed otherwise: the last step first, so one replay saves them all; with
    ``supernet.snapshots_on_disk`` False each step is replayed in memory).

    Returns:
        ``{(steps, weights, replica): {"ws": WS mIoU, "ws_loss": minus the WS loss}}`` over
        ``truth.archs`` (``ws_loss`` where the evaluator gives the loss), for every training
        replica (``ranking.steps_replicas``) and weights (``raw``; ``ema`` when the curve's
        supernet keeps a moving average); empty without steps.
    """
    out = {}
    for step in sorted(set(curve_steps(profile)), reverse=True):
        for r in _curve_replicas(profile):
            for arm in _curve_arms(profile):
                out[int(step), arm, r] = _snapshot_scores(curve_profile(profile, r), seed, step, arm, truth)
    return out


def snapshot_rows(snapshots: Mapping, truth: GroundTruth) -> list[dict]:
    """:func:`snapshot_scores` as long rows ``{arch, steps, weights, replica, score, value}`` (``curve_scores.csv``)."""
    return [{"arch": arch, "steps": step, "weights": arm, "replica": r, "score": score, "value": float(value)}
            for (step, arm, r), scores in sorted(snapshots.items()) for score, column in scores.items()
            for arch, value in zip(truth.archs, column)]


def _curve_replicas(profile) -> range:
    return range(max(1, int(profile.ranking.steps_replicas)))


def _curve_arms(profile) -> tuple[str, ...]:
    return ("raw", "ema") if curve_profile(profile).supernet.oneshot_ema > 0 else ("raw",)


def steps_curve(profile, seed: int, truth: GroundTruth, n_resamples: int = 2000,
                snapshots: Mapping | None = None) -> list[dict]:
    """Tau (rho, p10) of the :func:`curve_profile`'s supernet after each of :func:`curve_steps` one-shot weight steps.

    ``snapshots`` are :func:`snapshot_scores` (computed when None). One row per score (``ws``:
    WS mIoU; ``ws_loss``: minus the WS loss, with ``tau_minus_ws``, its paired gap to WS mIoU
    of the same snapshot), training replica (``ranking.steps_replicas``), snapshot and weights
    (``raw``: the one-shot weights; ``ema``: their moving average, only when the curve's
    supernet keeps one): ``{steps, weights, replica, score, metric, ...}`` of :func:`compare`,
    the ``ema`` rows with ``tau_minus_raw`` (the paired gap to the raw weights of the same
    snapshot). With more than one replica, each (score, steps, weights) also gets a
    ``replica = "mean"`` row of :func:`replica_compare` (and :func:`replica_tau_gap`) with
    ``retest_tau`` (:func:`retest`: how well the replicas' rankings agree). Every row of a step
    reads the same architectures: those whose scores are finite in every replica and arm.
    Sorted by score, steps, weights and replica; empty without steps.
    """
    snapshots = snapshot_scores(profile, seed, truth) if snapshots is None else snapshots
    values = truth.values[HEADLINE]
    replicas, arms = _curve_replicas(profile), _curve_arms(profile)
    rows = []
    for step in sorted({k[0] for k in snapshots}):
        ws = {(score, r, arm): column for r in replicas for arm in arms
              for score, column in snapshots[step, arm, r].items()}
        keep = np.logical_and.reduce([np.isfinite(values), *(np.isfinite(v) for v in ws.values())])
        ws, truth_kept = {k: v[keep] for k, v in ws.items()}, values[keep]  # one item set for every row of the step
        for score in [s for s in CURVE_SCORES if (s, 0, arms[0]) in ws]:
            rows += _step_rows(step, score, ws, truth_kept, replicas, arms, n_resamples, seed)
    order = {r: i for i, r in enumerate([*replicas, "mean"])}
    scores = list(CURVE_SCORES)
    return sorted(rows, key=lambda r: (scores.index(r["score"]), r["steps"], arms.index(r["weights"]), order[r["replica"]]))


def _step_rows(step: int, score: str, ws: Mapping, truth, replicas, arms, n_resamples: int, seed: int) -> list[dict]:
    """:func:`steps_curve`'s rows of one score at one step: per weights, each replica, then their mean."""
    rows = []
    for arm in arms:
        columns = [ws[score, r, arm] for r in replicas]
        raw = [ws[score, r, "raw"] for r in replicas]
        miou = [ws["ws", r, arm] for r in replicas]
        for r, column in zip(replicas, columns):
            row = {"steps": int(step), "weights": arm, "replica": r, "score": score, "metric": HEADLINE,
                   **compare(column, truth, DIRECTIONS[score], n_resamples, seed)}
            rows.append(_with_gaps(row, tau_gap, column, raw[r], miou[r], truth, arm, score, n_resamples, seed))
        if len(replicas) > 1:
            row = {"steps": int(step), "weights": arm, "replica": "mean", "score": score, "metric": HEADLINE,
                   **replica_compare(columns, truth, DIRECTIONS[score], n_resamples, seed), "retest_tau": retest(columns)}
            rows.append(_with_gaps(row, replica_tau_gap, columns, raw, miou, truth, arm, score, n_resamples, seed))
    return rows


def _with_gaps(row: dict, gap, own, raw, miou, truth, arm: str, score: str, n_resamples: int, seed: int) -> dict:
    """``row`` with ``tau_minus_raw`` (averaged weights against the raw ones; NaN for raw rows)
    and, for a score other than WS mIoU, ``tau_minus_ws`` (against WS mIoU of the same weights),
    each with ``_lo`` / ``_hi`` from ``gap`` (:func:`tau_gap` or :func:`replica_tau_gap`)."""
    nan = (math.nan,) * 3
    row.update(zip(("tau_minus_raw", "tau_minus_raw_lo", "tau_minus_raw_hi"),
                   gap(own, raw, truth, n_resamples, seed) if arm != "raw" else nan))
    if score != "ws":
        row.update(zip(("tau_minus_ws", "tau_minus_ws_lo", "tau_minus_ws_hi"), gap(own, miou, truth, n_resamples, seed)))
    return row


def _snapshot_scores(curve, seed: int, step: int, arm: str, truth: GroundTruth) -> dict[str, np.ndarray]:
    """``{"ws": WS mIoU, "ws_loss": minus the WS loss}`` of the table's architectures on one
    snapshot's ``arm`` weights (``ws_loss`` where the evaluator gives the loss)."""
    from ..supernet.train import supernet_at_steps

    return _curve_scores_of(supernet_at_steps(curve, seed, int(step), raw=arm == "raw"), truth)


def _curve_scores_of(supernet, truth: GroundTruth) -> dict[str, np.ndarray]:
    """``{"ws": WS mIoU, "ws_loss": minus the WS loss}`` of the table's architectures on ``supernet``
    (``ws_loss`` where the evaluator gives the loss)."""
    scores = ws_scores(supernet, truth.choices)
    out = {"ws": scores[METRICS[HEADLINE]]}
    if "loss" in scores:
        out["ws_loss"] = -scores["loss"]
    return out


# ------------------------------------------------------------------ variant trainings (ranking.retest_variants)

# scores of replicas.csv -> their summary prefixes
REPLICA_SCORES = ("ws", "ws_loss")


def variant_trainings(profile, seed: int) -> list[tuple[str, int]]:
    """``(variant, replica)`` of every training :func:`replica_rows` reads: each of
    ``ranking.retest_variants`` twice (``supernet.replica`` 0 and 1), then each of
    ``ranking.search_ablations`` (replica 0; see :func:`ablation_parents`)."""
    r = profile.ranking
    return [(v, k) for v in r.retest_variants for k in (0, 1)] + [(v, 0) for v in ablation_parents(profile, seed)]


def ablation_parents(profile, seed: int) -> dict[str, str]:
    """``{search ablation: the retest variant whose one-shot phase it shares}``.

    Raises:
        RankingError: an ablation whose one-shot phase is no retest variant's (another
            :func:`~linas_lib.supernet.train.oneshot_key`): it would ablate more than the search phase.
    """
    from ..supernet.train import oneshot_key, variant_profile

    r = profile.ranking
    parents = {oneshot_key(variant_profile(profile, v), seed): v for v in r.retest_variants}
    out = {}
    for v in r.search_ablations:
        parent = parents.get(oneshot_key(variant_profile(profile, v), seed))
        if parent is None:
            raise RankingError(f"profile {profile.name!r}: ranking.search_ablations: {v!r} shares its one-shot phase "
                               f"with none of ranking.retest_variants {list(r.retest_variants)}")
        out[v] = parent
    return out


def ablation_checks(profile, seed: int) -> dict[str, float]:
    """``search_ablation.oneshot_rows_equal.<ablation>``: 1 when the ablation's one-shot history
    rows (every field but ``seconds``) equal its parent's replica 0, else 0 -- the runs share one
    one-shot phase, and its snapshot, only if they trained it step for step alike (another
    machine's cached run would not)."""
    from ..supernet.train import trained_supernet

    out = {}
    for ablation, parent in ablation_parents(profile, seed).items():
        rows = [trained_supernet(profile, seed, v).history for v in (ablation, parent)]
        n = profile.supernet.warmup_epochs
        timeless = [[{k: x for k, x in row.items() if k != "seconds"} for row in h[:n]] for h in rows]
        out[f"search_ablation.oneshot_rows_equal.{ablation}"] = float(len(timeless[0]) == n and timeless[0] == timeless[1])
    return out


def training_scores(profile, seed: int, truth: GroundTruth) -> dict[tuple[str, int, str], dict[str, np.ndarray]]:
    """WS scores of the table's architectures for each of :func:`variant_trainings`, at two
    points of the training: ``oneshot_end`` (the supernet after the one-shot phase, averaged
    weights where the profile keeps an average: the snapshot
    :func:`~linas_lib.supernet.train.supernet_at_steps`) and ``final`` (after the search phase:
    the supernet 03 and 05 use).

    Returns:
        ``{(variant, replica, phase): {"ws": WS mIoU, "ws_loss": minus the WS loss}}``.
    """
    from ..supernet.oneshot import updates_per_choice
    from ..supernet.train import supernet_at_steps, trained_supernet

    out = {}
    for variant, replica in variant_trainings(profile, seed):
        own = replica_profile(profile, replica)
        final = trained_supernet(own, seed, variant)
        steps = updates_per_choice(final.cfg, len(final.features["train"]))["weight_steps"]
        for phase, supernet in (("oneshot_end", supernet_at_steps(own, seed, steps, variant)), ("final", final)):
            out[variant, replica, phase] = _curve_scores_of(supernet, truth)
    return out


def training_score_rows(scores: Mapping, truth: GroundTruth) -> list[dict]:
    """:func:`training_scores` as long rows ``{arch, variant, replica, phase, score, value}`` (``training_scores.csv``)."""
    return [{"arch": arch, "variant": v, "replica": r, "phase": phase, "score": score, "value": float(value)}
            for (v, r, phase), columns in scores.items() for score, column in columns.items()
            for arch, value in zip(truth.archs, column)]


def replica_rows(scores: Mapping, truth: GroundTruth, n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Rows of ``replicas.csv``: how each training ranks after its one-shot phase and after the
    search phase, and how much two trainings of one rule differ.

    Per training and score: ``tau_oneshot_end``, ``tau_final`` (each with ``_lo`` / ``_hi``,
    bootstrap over architectures) and ``search_change`` (final minus one-shot end, paired).
    Per variant with two trainings, a ``replica = "mean"`` row: the same as means over them
    (with ``tau_final_min`` / ``_max``) and ``retest_tau`` (the two final rankings against each
    other). Every row reads the architectures whose scores are finite in every training.
    """
    keep = _finite_items(scores, truth)
    truth_kept = truth.values[HEADLINE][keep]
    trainings = list(dict.fromkeys((v, r) for v, r, _ in scores))  # in variant_trainings' order
    rows = []
    for score in REPLICA_SCORES:
        col = lambda v, r, phase: scores[v, r, phase][score][keep]  # noqa: E731
        for v, r in trainings:
            rows.append(_training_row(v, r, score, [col(v, r, "oneshot_end")], [col(v, r, "final")], truth_kept,
                                      n_resamples, seed))
        for v in dict.fromkeys(v for v, _ in trainings):
            reps = [r for w, r in trainings if w == v]
            if len(reps) > 1:
                final = [col(v, r, "final") for r in reps]
                row = _training_row(v, "mean", score, [col(v, r, "oneshot_end") for r in reps], final, truth_kept,
                                    n_resamples, seed)
                row.update({"tau_final_min": float(min(kendall(c, truth_kept) for c in final)),
                            "tau_final_max": float(max(kendall(c, truth_kept) for c in final)),
                            "retest_tau": retest(final)})
                rows.append(row)
    return rows


def _finite_items(scores: Mapping, truth: GroundTruth) -> np.ndarray:
    """Mask of the architectures whose truth and every training's scores are finite."""
    values = truth.values[HEADLINE]
    return np.logical_and.reduce([np.isfinite(values), *(np.isfinite(c) for s in scores.values() for c in s.values())])


def _training_row(variant: str, replica, score: str, oneshot_end: list, final: list, truth, n_resamples: int,
                  seed: int) -> dict:
    """One :func:`replica_rows` row over the trainings ``final`` / ``oneshot_end`` (one or several)."""
    direction = DIRECTIONS[score]
    row = {"variant": variant, "replica": replica, "score": score, "metric": HEADLINE, "n": int(truth.size)}
    for phase, cols in (("oneshot_end", oneshot_end), ("final", final)):
        stats = replica_compare(cols, truth, direction, n_resamples, seed)
        row.update({f"tau_{phase}": stats["tau"], f"tau_{phase}_lo": stats["tau_lo"], f"tau_{phase}_hi": stats["tau_hi"]})
    row.update(zip(("search_change", "search_change_lo", "search_change_hi"),
                   replica_tau_gap(final, oneshot_end, truth, n_resamples, seed)))
    return row


def replica_summary(rows: Sequence[dict], retest_variants: Sequence[str], scores: Mapping | None = None,
                    truth: GroundTruth | None = None, n_resamples: int = 2000, seed: int = 0,
                    parents: Mapping[str, str] | None = None) -> dict[str, float]:
    """Flat ``summary.json`` figures of :func:`replica_rows`, per score prefix ``<s>`` (``ws``, ``ws_loss``):

    * ``tau_final.<s>.<variant>.r<k>``, ``tau_oneshot_end.<s>.<variant>.r<k>``,
      ``search_change.<s>.<variant>.r<k>`` (with ``_lo`` / ``_hi``) per training;
    * ``tau_final_mean.<s>.<variant>`` with ``_min`` / ``_max``, and ``retest_tau.<s>.<variant>``;
    * for two retest variants ``a``, ``b`` (in ``retest_variants`` order, given ``scores`` and
      ``truth``): ``replica_gap.<s>.<a>_minus_<b>`` (mean over trainings, with a paired
      bootstrap CI over architectures), ``replica_gap_over_sd.<s>.<a>_minus_<b>`` (the gap over
      the pooled training SD: the sample SD of each variant's final taus, pooled) and
      ``replica_separated.<s>.<a>_vs_<b>`` (+1: both trainings of ``a`` rank above both of
      ``b``'s; -1: below; 0: they interleave);
    * for each search ablation in ``parents`` (``{ablation: retest variant}``, :func:`ablation_parents`):
      ``search_ablation_gap.<s>.<ablation>`` (with ``_lo`` / ``_hi``): its final tau minus that of
      the parent's replica 0, the training whose one-shot phase it shares (paired over architectures).
    """
    out = {}
    for row in rows:
        s, v, r = row["score"], row["variant"], row["replica"]
        if r == "mean":
            out.update({f"tau_final_mean.{s}.{v}": row["tau_final"], f"tau_final_mean.{s}.{v}_min": row["tau_final_min"],
                        f"tau_final_mean.{s}.{v}_max": row["tau_final_max"], f"retest_tau.{s}.{v}": row["retest_tau"]})
            continue
        for name in ("tau_final", "tau_oneshot_end", "search_change"):
            out.update({f"{name}.{s}.{v}.r{r}{end}": float(row[f"{name}{end}"]) for end in ("", "_lo", "_hi")})
    if scores is None or truth is None:
        return out
    keep = _finite_items(scores, truth)
    kept = {k: {s: c[keep] for s, c in v.items()} for k, v in scores.items()}
    values = truth.values[HEADLINE][keep]
    for a, b in itertools.combinations(retest_variants, 2):
        out.update(_pair_contrast(rows, kept, values, a, b, n_resamples, seed))
    for ablation, parent in (parents or {}).items():
        for s in REPLICA_SCORES:
            gap = replica_tau_gap([kept[ablation, 0, "final"][s]], [kept[parent, 0, "final"][s]], values, n_resamples, seed)
            out.update(zip((f"search_ablation_gap.{s}.{ablation}{end}" for end in ("", "_lo", "_hi")), gap))
    return out


def _pair_contrast(rows, scores: Mapping, truth: np.ndarray, a: str, b: str, n_resamples: int,
                   seed: int) -> dict[str, float]:
    """:func:`replica_summary`'s contrast of retest variants ``a`` and ``b`` (``scores`` and
    ``truth`` on the architectures ``rows`` read)."""
    out = {}
    for s in REPLICA_SCORES:
        taus = {v: [float(r["tau_final"]) for r in rows if r["score"] == s and r["variant"] == v and r["replica"] != "mean"]
                for v in (a, b)}
        gap, low, high = replica_tau_gap([scores[a, r, "final"][s] for r in (0, 1)],
                                         [scores[b, r, "final"][s] for r in (0, 1)], truth, n_resamples, seed)
        sd = math.sqrt(np.mean([np.var(taus[v], ddof=1) for v in (a, b)]))
        separated = 1.0 if min(taus[a]) > max(taus[b]) else -1.0 if max(taus[a]) < min(taus[b]) else 0.0
        key = f"{s}.{a}_minus_{b}"
        out.update({f"replica_gap.{key}": gap, f"replica_gap.{key}_lo": low, f"replica_gap.{key}_hi": high,
                    f"replica_gap_over_sd.{key}": gap / sd if sd > 0 else math.nan,
                    f"replica_separated.{s}.{a}_vs_{b}": separated})
    return out


def curve_rows_for_summary(rows: Sequence[dict]) -> list[dict]:
    """The rows the curve's headline figures read: the replica means where there are several
    replicas, else the one replica's rows."""
    means = [r for r in rows if str(r.get("replica", 0)) == "mean"]
    return means or [r for r in rows if str(r.get("replica", 0)) != "mean"]


def curve_summary(rows: Sequence[dict]) -> dict[str, float]:
    """Flat ``summary.json`` figures of the :func:`steps_curve` rows, per score under its
    :data:`CURVE_SCORES` prefix (``tau_steps`` for WS mIoU, ``tau_steps_loss`` for the WS loss).

    ``<prefix>.<steps>`` (raw weights), ``<prefix>_ema.<steps>`` (their moving average) and
    ``<prefix>_ema_minus_raw.<steps>`` with ``_lo`` / ``_hi`` (the paired gap): the mean over
    training replicas when there are several, then with ``<prefix>.<steps>_min`` / ``_max`` (and
    the same for ``_ema``) over them and ``<prefix>_retest.<steps>`` / ``<prefix>_ema_retest.<steps>``
    (the replicas' rankings against each other). A score other than WS mIoU adds
    ``<prefix>_minus_ws.<steps>`` / ``<prefix>_ema_minus_ws.<steps>`` with ``_lo`` / ``_hi`` (its
    paired gap to WS mIoU of the same weights). ``tau_steps.replicas`` says how many replicas (1
    for one run).
    """
    suffix = {"raw": "", "ema": "_ema"}
    rows = curve_rows_for_summary(rows)
    out = {}
    for r in rows:
        prefix, steps = CURVE_SCORES[r.get("score", "ws")], int(r["steps"])
        name = f"{prefix}{suffix[r['weights']]}"
        out[f"{name}.{steps}"] = float(r["tau"])
        if "tau_min" in r:
            out.update({f"{name}.{steps}_min": float(r["tau_min"]), f"{name}.{steps}_max": float(r["tau_max"])})
        if "retest_tau" in r:
            out[f"{name}_retest.{steps}"] = float(r["retest_tau"])
        if r["weights"] == "ema":
            out.update({f"{prefix}_ema_minus_raw.{steps}{end}": float(r[f"tau_minus_raw{end}"]) for end in ("", "_lo", "_hi")})
        if r.get("score", "ws") != "ws":
            out.update({f"{name}_minus_ws.{steps}{end}": float(r[f"tau_minus_ws{end}"]) for end in ("", "_lo", "_hi")})
    if rows:
        out["tau_steps.replicas"] = float(rows[0].get("replicas", 1))
    return out


# ------------------------------------------------------------------ the profile's variant and the record


def variant_verdict(profile, best: str) -> tuple[str | None, str]:
    """``(the profile's variant, one line)``: does the study support the supernet 03 and 05 search with?"""
    from ..supernet.train import VARIANTS

    own = profile_variant(profile.supernet, VARIANTS)
    if own is None:
        return None, f"the profile's supernet settings match no named variant; the best-ranking variant is {best!r}"
    if own == best:
        return own, f"the profile's variant {own!r} ranks best: 03 and 05 search with the supernet this study supports"
    settings = ", ".join(f"supernet.{k}: {v}" for k, v in VARIANTS[best].items())
    return own, (f"the profile's variant {own!r} does not rank best ({best!r} does; read tau_vs_profile's CI "
                 f"and the replicas' spread first: one training per variant): to follow it, set {settings} "
                 "for 03 and 05")


def variant_figures(profile, best: str) -> dict[str, float]:
    """``ws.profile_variant_is_best`` (1 or 0) when the profile's settings are a named variant."""
    own, _ = variant_verdict(profile, best)
    return {} if own is None else {"ws.profile_variant_is_best": float(own == best)}


def variant_gaps(scores: Sequence[dict], variants: Sequence[str], best: str, n_resamples: int = 2000,
                 seed: int = 0, reference: str | None = None) -> dict[str, float]:
    """Paired Kendall-tau differences between the variants on the headline metric (:func:`tau_gap`).

    * ``tau_gap_to_best.ws.<variant>`` (with ``_lo`` / ``_hi``): the best variant's tau minus
      each other variant's -- whether the choice could have come out the other way;
    * with ``reference`` (the profile's own variant, the supernet 03 and 05 search with):
      ``tau_vs_profile.ws.<variant>``, each other variant's tau minus the reference's -- the
      pre-specified contrasts (does I2, or sandwich, rank better than what the search uses),
      reported whichever variant happens to rank best.

    The CIs resample architectures; each variant is one supernet training, so the spread
    between trainings (the tau-vs-steps curve's replicas) is the floor to read them against.
    """
    df = _frame(scores)
    truth = df[f"truth.{HEADLINE}"].astype(float)

    def gap(a: str, b: str, key: str) -> dict[str, float]:
        value, low, high = tau_gap(df[f"ws.{a}"].astype(float), df[f"ws.{b}"].astype(float), truth, n_resamples, seed)
        return {key: value, f"{key}_lo": low, f"{key}_hi": high}

    out = {}
    for variant in variants:
        if variant != best:
            out.update(gap(best, variant, f"tau_gap_to_best.ws.{variant}"))
        if reference in variants and variant != reference:
            out.update(gap(variant, reference, f"tau_vs_profile.ws.{variant}"))
    return out


def loss_gaps(scores: Sequence[dict], variants: Sequence[str], n_resamples: int = 2000,
               seed: int = 0) -> dict[str, float]:
    """Does the WS loss rank better than WS mIoU? ``tau_gap.ws_loss_vs_miou.<variant>`` (with
    ``_lo`` / ``_hi``): the tau of ``ws_loss.<variant>`` minus that of ``ws.<variant>`` on the
    headline metric (:func:`tau_gap`, paired over architectures), and
    ``tau_gap.ws_loss_vs_miou.n_positive``: for how many variants it is above 0. Both scores
    come from the same forward passes of the same supernet, so the gap is free of training
    noise; each variant is another training. Empty when ``scores`` has no loss columns.
    """
    df = _frame(scores)
    truth = df[f"truth.{HEADLINE}"].astype(float)
    out = {}
    for variant in variants:
        if f"ws_loss.{variant}" not in df.columns:
            continue
        value, low, high = tau_gap(df[f"ws_loss.{variant}"].astype(float), df[f"ws.{variant}"].astype(float), truth,
                                   n_resamples, seed)
        key = f"tau_gap.ws_loss_vs_miou.{variant}"
        out.update({key: value, f"{key}_lo": low, f"{key}_hi": high})
    gaps = [v for k, v in out.items() if not k.endswith(("_lo", "_hi"))]
    if gaps:
        out["tau_gap.ws_loss_vs_miou.n_positive"] = float(sum(g > 0 for g in gaps))
    return out


def study_record(table: BenchTable, profile, best: str, near_facts: dict, n_mf: int) -> dict:
    """What ``study.json`` records: the table, the settings and choices behind ``ranking.csv``."""
    own, verdict = variant_verdict(profile, best)
    cfg = profile.ranking
    return {"table": table.path, "table_message": table.message, "facts": table.facts,
            "variants": list(cfg.variants), "best_variant": best, "profile_variant": own, "verdict": verdict,
            "near": {**near_facts, "near": "additive (layer, choice) table of search.report.near_proxy: the "
                                          "zero-cost search's proxy", "near_exact": "full-path NEAR "
                                          "(search.zero_cost.exact_scores) on the same batch",
                     "near_init": f"full-path NEAR of untrained supernets, mean of {cfg.near_inits} "
                                  "initialisations (search.zero_cost.init_scores), in eval mode: BN at "
                                  "its initial statistics (identity), as in near_exact"},
            "mf": {"variant": best, "k": n_mf, "epochs": cfg.mf_epochs},
            "latency": {"target": _reference_target(profile), "model": "committed LUT, interaction (I4)"},
            "flops": "torch.utils.flop_counter on one image (convolutions and matmuls, 2 per multiply-add)",
            "steps": list(curve_steps(profile)),
            "curve_oneshot_epochs": curve_profile(profile).supernet.warmup_epochs, "directions": DIRECTIONS, "top_fraction": TOP_FRACTION,
            "confidence": CONFIDENCE, "bootstrap_resamples": cfg.bootstrap_resamples}


def _reference_target(profile) -> str:
    from .bench import reference_target

    return reference_target(profile)
