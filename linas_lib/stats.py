"""Bootstrap confidence intervals shared by the notebooks' analyses.

Needs numpy and scipy only (no torch, no pymoo), so the latency core, which the GPU machine
runs with torch alone, can use it too.
"""

from __future__ import annotations

import math

import numpy as np

CI_STREAM = 0xC195  # seed stream of the bootstrap CIs


def t_half_width(se: float, df: float, confidence: float = 0.95) -> float:
    """Half the width of a ``confidence`` Student-t interval with standard error ``se`` and
    ``df`` degrees of freedom (``scipy.stats.t``)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df)) * se


def welch_ci(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
             confidence: float = 0.95) -> tuple[float, float, float]:
    """``(difference, low, high)``: ``mean_a - mean_b`` of two independent samples, given by their
    means, SDs and sizes, with Welch's t interval (Welch-Satterthwaite degrees of freedom); NaN
    bounds below 2 values in either sample."""
    diff = float(mean_a - mean_b)
    if min(n_a, n_b) < 2:
        return diff, math.nan, math.nan
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if va + vb > 0 else n_a + n_b - 2
    half = t_half_width(math.sqrt(va + vb), df, confidence)
    return diff, diff - half, diff + half


def mean_t_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t CI of the mean: what a bootstrap of few values under-covers; NaN below 2 values."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return math.nan, math.nan
    half = t_half_width(values.std(ddof=1) / math.sqrt(values.size), values.size - 1, confidence)
    return float(values.mean()) - half, float(values.mean()) + half


def mean_ci(values, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (``scipy.stats.bootstrap``); NaN below 2 values,
    a point when every value is equal."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return math.nan, math.nan
    if np.ptp(values) == 0:  # every resample has the same mean
        return float(values[0]), float(values[0])
    res = bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                    method="percentile", rng=np.random.default_rng([seed, CI_STREAM]))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
