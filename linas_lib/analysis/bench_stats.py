"""How far the benchmark table can be trusted: seed-to-seed agreement of its accuracies.

If two training seeds of the same architectures rank them differently, no predictor can be
asked to rank them better than the seeds agree with each other: :func:`seed_agreement`
gives that ceiling (Kendall tau between seeds, averaged over seed pairs, with a paired
bootstrap CI over architectures) and the spread it comes from (seed SD against
between-architecture SD). This is what the pilot reports to choose epochs and seeds.

One seed against another is the agreement of a *single* training run. What the ranking
studies compare against is the mean over seeds, which agrees better with a rerun the more
seeds it averages. With four or more seeds :func:`split_half_tau` measures that for a mean
of ``n // 2`` seeds (the mean of half the seeds against the other half's; with 4 seeds a
2-seed mean, less than the 4-seed mean's own agreement), on the same split, encoder and
recipe; :func:`projected_agreement` forecasts it from fewer seeds.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import numpy as np

METRICS = ("val_miou", "test_miou", "val_crack_iou", "test_crack_iou")


def seed_matrix(table, metric: str) -> tuple[np.ndarray, list[str], list[int]]:
    """``(n_archs, n_seeds)`` values of ``metric`` for the architectures that have every seed.

    Args:
        table: rows (dicts) or a DataFrame with ``arch``, ``seed`` and ``metric`` columns.
        metric: the column.

    Returns:
        ``(matrix, archs, seeds)``; duplicate (arch, seed) rows are averaged.
    """
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    missing = {"arch", "seed", metric} - set(df.columns)
    if missing:
        raise ValueError(f"seed agreement: table lacks column(s) {', '.join(sorted(missing))}")
    wide = df.pivot_table(index="arch", columns="seed", values=metric, aggfunc="mean").dropna()
    return wide.to_numpy(dtype=float), [str(a) for a in wide.index], [int(s) for s in wide.columns]


def _kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return kendalltau(a, b).statistic


def mean_pair_tau(*columns) -> float:
    """Kendall tau-b between every pair of columns (one per seed), averaged over the pairs."""
    return float(np.mean([_kendall(a, b) for a, b in itertools.combinations(columns, 2)]))


def split_halves(n_seeds: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of ``n_seeds`` column indices into two disjoint halves of ``n_seeds // 2``
    (each unordered split once; with an odd count one seed sits out in turn)."""
    half = n_seeds // 2
    splits = []
    for first in itertools.combinations(range(n_seeds), half):
        rest = [i for i in range(n_seeds) if i not in first]
        for second in itertools.combinations(rest, half):
            if first < second:
                splits.append((first, second))
    return splits


def split_half_mean(statistic: Callable) -> Callable:
    """``statistic(mean of one half of the columns, mean of the other half)``, averaged over
    every split (:func:`split_halves`); the returned function needs >= 4 columns (seeds)."""
    def over_splits(*columns) -> float:
        if len(columns) < 4:
            raise ValueError(f"a split-half statistic needs >= 4 seeds, got {len(columns)}")
        matrix = np.column_stack(columns)
        return float(np.mean([statistic(matrix[:, list(a)].mean(axis=1), matrix[:, list(b)].mean(axis=1))
                              for a, b in split_halves(len(columns))]))
    return over_splits


def split_taus(matrix: np.ndarray, labels) -> dict[str, float]:
    """Kendall tau-b between the two halves' means for each split of :func:`split_halves`,
    named ``"a,b|c,d"`` by the columns' ``labels`` (the seeds)."""
    def name(group) -> str:
        return ",".join(str(labels[i]) for i in group)

    return {f"{name(a)}|{name(b)}": _kendall(matrix[:, list(a)].mean(axis=1), matrix[:, list(b)].mean(axis=1))
            for a, b in split_halves(matrix.shape[1])}


def split_half_tau(*columns) -> float:
    """Kendall tau-b between the mean of half the seeds and the mean of the other half,
    averaged over every split (:func:`split_halves`); needs >= 4 columns."""
    return split_half_mean(_kendall)(*columns)


def _pair_kind(i: int, j: int, n_first: int) -> str:
    """``table`` (both columns among the first ``n_first``), ``added`` (both later) or ``mixed``."""
    return "table" if j < n_first else "added" if i >= n_first else "mixed"


# pair contrasts of seeds added to a table: (pairs averaged, minus pairs averaged)
PAIR_CONTRASTS = {
    # a batch effect (the added seeds trained at another time, often on another host): pairs
    # within a batch agree more than pairs across the batches
    "gap_cross": (("table", "added"), ("mixed",)),
    # the added seeds noisier than the table's: they agree less with each other
    "gap_added": (("table",), ("added",)),
}


def pair_contrast(n_first: int, name: str) -> Callable:
    """A statistic of seed columns, the first ``n_first`` the table's and the rest added later:
    the mean Kendall tau over one kind of seed pair minus the mean over another
    (:data:`PAIR_CONTRASTS`: ``gap_cross``, within-batch minus mixed pairs; ``gap_added``,
    table pairs minus added pairs)."""
    plus, minus = PAIR_CONTRASTS[name]

    def contrast(*columns) -> float:
        taus = {"table": [], "added": [], "mixed": []}
        for i, j in itertools.combinations(range(len(columns)), 2):
            taus[_pair_kind(i, j, n_first)].append(_kendall(columns[i], columns[j]))
        return float(np.mean([t for k in plus for t in taus[k]]) - np.mean([t for k in minus for t in taus[k]]))

    return contrast


def pair_contrasts(matrix: np.ndarray, n_first: int, metric: str, n_resamples: int = 2000,
                   confidence: float = 0.95, seed: int = 0) -> dict:
    """:func:`pair_contrast` of a ``(architectures, seeds)`` matrix, each with its paired
    bootstrap CI over architectures (the seeds held fixed): ``{"<name>.<metric>",
    "<name>_ci_low.<metric>", "<name>_ci_high.<metric>"}``; ``gap_added`` only with >= 2 added seeds.

    Raises:
        ValueError: fewer than 2 table seeds or no added one (no pair on one side).
    """
    n_added = matrix.shape[1] - n_first
    if n_first < 2 or n_added < 1:
        raise ValueError(f"pair contrasts need >= 2 table seeds and an added one; got {n_first} and {n_added}")
    columns, out = tuple(matrix.T), {}
    for name in PAIR_CONTRASTS if n_added >= 2 else ("gap_cross",):
        statistic = pair_contrast(n_first, name)
        ci = _tau_ci(columns, statistic, n_resamples, confidence, seed)
        out.update({f"{name}.{metric}": statistic(*columns), f"{name}_ci_low.{metric}": float(ci.low),
                    f"{name}_ci_high.{metric}": float(ci.high)})
    return out


def seed_agreement(table, metrics=METRICS, n_resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> dict:
    """Seed-to-seed Kendall tau of the table, its bootstrap CI, and seed vs architecture spread.

    Per metric (only architectures with every seed count):

    * ``tau.<metric>``: Kendall tau-b between two seeds' values over architectures, averaged
      over every seed pair;
    * ``tau_ci_low.<metric>``, ``tau_ci_high.<metric>``: percentile bootstrap CI of that mean,
      resampling architectures (paired: an architecture keeps all its seeds);
    * ``seed_sd.<metric>``: root mean over architectures of the variance across seeds;
    * ``arch_sd.<metric>``: SD over architectures of their mean over seeds;
    * ``sd_ratio.<metric>``: seed SD / architecture SD;
    * with >= 4 seeds, ``tau_half.<metric>`` and its CI ``tau_half_ci_low/high.<metric>``:
      :func:`split_half_tau`, the agreement of a mean over ``n_seeds // 2`` seeds with another.

    Args:
        table: rows (dicts) or a DataFrame with ``arch``, ``seed`` and the metric columns.
        metrics: which columns (those absent from the table are skipped).
        n_resamples: bootstrap resamples.
        confidence: CI level.
        seed: bootstrap randomness.

    Returns:
        Flat ``{name: number}`` plus ``n_archs``, ``n_seeds`` (of the first metric).

    Raises:
        ValueError: fewer than 3 architectures with at least 2 common seeds.
    """
    rows = table if hasattr(table, "columns") else list(table)
    present = [m for m in metrics if _has_column(rows, m)]
    if not present:
        raise ValueError(f"seed agreement: the table has none of the columns {', '.join(metrics)}")
    out: dict[str, float] = {}
    for metric in present:
        matrix, _, seeds = seed_matrix(rows, metric)
        if len(seeds) < 2 or len(matrix) < 3:
            raise ValueError(f"seed agreement needs >= 3 architectures with >= 2 common seeds; {metric} has "
                             f"{len(matrix)} architecture(s) x {len(seeds)} seed(s)")
        out.setdefault("n_archs", len(matrix))
        out.setdefault("n_seeds", len(seeds))
        out.update(_metric_agreement(matrix, metric, n_resamples, confidence, seed))
    return out


def _has_column(rows, name: str) -> bool:
    return name in rows.columns if hasattr(rows, "columns") else any(name in r for r in rows)


def _metric_agreement(matrix: np.ndarray, metric: str, n_resamples: int, confidence: float, seed: int) -> dict:
    """The figures of one metric (see :func:`seed_agreement`)."""
    columns = tuple(matrix.T)
    ci = _tau_ci(columns, mean_pair_tau, n_resamples, confidence, seed)
    seed_sd = float(np.sqrt(np.mean(np.var(matrix, axis=1, ddof=1))))
    arch_sd = float(np.std(matrix.mean(axis=1), ddof=1))
    out = {f"tau.{metric}": mean_pair_tau(*columns), f"tau_ci_low.{metric}": float(ci.low),
           f"tau_ci_high.{metric}": float(ci.high), f"seed_sd.{metric}": seed_sd, f"arch_sd.{metric}": arch_sd,
           f"sd_ratio.{metric}": seed_sd / arch_sd if arch_sd > 0 else float("nan")}
    if len(columns) >= 4:
        half = _tau_ci(columns, split_half_tau, n_resamples, confidence, seed)
        out.update({f"tau_half.{metric}": split_half_tau(*columns), f"tau_half_ci_low.{metric}": float(half.low),
                    f"tau_half_ci_high.{metric}": float(half.high)})
    return out


def _tau_ci(columns: tuple, statistic, n_resamples: int, confidence: float, seed: int):
    """Paired percentile bootstrap CI of ``statistic`` over architectures (rows)."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # constant resamples (perfect agreement) are not an error here
        warnings.simplefilter("ignore")
        return bootstrap(columns, statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                         confidence_level=confidence, method="percentile",
                         rng=np.random.default_rng(seed)).confidence_interval


def projected_agreement(matrix: np.ndarray, n_seeds: int, rng: np.random.Generator, n_sims: int = 200) -> dict:
    """What the seed agreement would be with ``n_seeds`` seeds, simulated from a measured table.

    A forecast to hold a seed extension against before it is trained, not a measurement. The
    model: each architecture has a true accuracy, and each seed adds independent normal noise
    with the table's pooled seed SD (the same for every architecture). The true values are the
    measured means pulled towards their mean so that their spread is the measured spread less
    the seed noise left in a mean over the measured seeds. Noise that differs between
    architectures (one that sometimes fails to converge) breaks the model; the projected
    single-seed tau next to the measured one is the check of that.

    Args:
        matrix: ``(n_archs, n_measured_seeds)`` values (:func:`seed_matrix`), >= 2 seeds.
        n_seeds: seeds to project (>= 2).
        rng: the simulation's randomness.
        n_sims: simulated tables.

    Returns:
        ``tau`` (seed pairs, as :func:`mean_pair_tau`) and, from 4 seeds on, ``tau_half``
        (:func:`split_half_tau`): each the mean over the simulations with ``_p2.5``/``_p97.5``,
        the spread of one table's value under the model. That band is narrower than the
        forecast's own uncertainty (the measured table is one draw too, and the real extension
        keeps its measured seeds): it is no pass/fail test of the model.

    Raises:
        ValueError: fewer than 2 measured seeds or 3 architectures, or ``n_seeds`` < 2.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] < 2 or matrix.shape[0] < 3 or n_seeds < 2:
        raise ValueError(f"projected agreement needs >= 3 architectures x >= 2 measured seeds and n_seeds >= 2; "
                         f"got a {matrix.shape} table and n_seeds {n_seeds}")
    seed_sd = float(np.sqrt(np.mean(np.var(matrix, axis=1, ddof=1))))
    means = matrix.mean(axis=1)
    true_var = max(float(np.var(means, ddof=1)) - seed_sd ** 2 / matrix.shape[1], 0.0)
    spread = np.std(means, ddof=1)
    truth = means.mean() + (means - means.mean()) * (np.sqrt(true_var) / spread if spread > 0 else 0.0)
    stats = {"tau": mean_pair_tau} | ({"tau_half": split_half_tau} if n_seeds >= 4 else {})
    values: dict[str, list[float]] = {name: [] for name in stats}
    for _ in range(n_sims):
        table = truth[:, None] + rng.normal(0.0, seed_sd, (len(truth), n_seeds))
        for name, stat in stats.items():
            values[name].append(stat(*table.T))
    out = {"n_seeds": n_seeds, "n_sims": n_sims, "seed_sd": seed_sd, "true_sd": float(np.sqrt(true_var))}
    for name, vals in values.items():
        out |= {name: float(np.mean(vals)), f"{name}_p2.5": float(np.percentile(vals, 2.5)),
                f"{name}_p97.5": float(np.percentile(vals, 97.5))}
    return out
