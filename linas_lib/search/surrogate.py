"""Model-based search: Thompson sampling on a Bayesian linear surrogate of weight-sharing mIoU.

The surrogate is a Bayesian linear regression on the one-hot choice of every layer
(:meth:`~linas_lib.space.SearchSpace.one_hot`, ``L x C`` indicators): on the cpu supernet, an
additive model of the layers explains most of the WS mIoU variance. Targets are standardised
by the evaluated architectures' mean and standard deviation; the weight prior gives every
architecture a standardised prior variance of 1 (precision = the indicators set per row, one
per layer), and the noise precision is chosen by evidence maximisation over a fixed grid
(Bishop, *Pattern Recognition and Machine Learning*, section 3.5). Why not the prior's precision
too: with a handful of points the evidence favours the strongest prior, whose draws are then
all alike and Thompson sampling stops exploring.

:func:`thompson_search` evaluates a few random architectures of a pool, then, at
each step, draws one weight vector from the posterior (Thompson sampling: the draw's spread
is the exploration), predicts every pool architecture's mIoU and evaluates the one whose
predicted point adds the most hypervolume, summed over the headline targets (latency from
the LUT, the experiment's HV reference, exact 2-D improvement
:func:`~linas_lib.search.indicators.hv_improvement_2d`). Ties are broken at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .archive import EvaluationArchive
from .indicators import hv_improvement_2d
from .samplers import normalised_latency

NOISE_PRECISIONS = np.logspace(-1, 3, 9)  # beta: residual N(0, 1 / beta) of the standardised mIoU


@dataclass(frozen=True)
class LinearPosterior:
    """Gaussian posterior over the weights of a linear model of standardised targets.

    Attributes:
        mean: ``(M,)`` posterior mean of the weights.
        basis: ``(M, M)`` eigenvectors of the features' Gram matrix.
        spread: ``(M,)`` posterior standard deviation along each eigenvector.
        offset: mean of the targets (the standardisation).
        scale: standard deviation of the targets (1 when they are all equal).
        alpha: the chosen prior precision.
        beta: the chosen noise precision.
    """

    mean: np.ndarray
    basis: np.ndarray
    spread: np.ndarray
    offset: float
    scale: float
    alpha: float
    beta: float

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One weight vector drawn from the posterior, ``(M,)``."""
        return self.mean + self.basis @ (self.spread * rng.standard_normal(len(self.spread)))

    def predict(self, features, weights=None) -> np.ndarray:
        """Targets of ``features`` ``(n, M)`` under ``weights`` (default: the posterior mean)."""
        w = self.mean if weights is None else weights
        return self.offset + self.scale * (np.asarray(features, dtype=float) @ w)


def fit_linear_posterior(features, targets) -> LinearPosterior:
    """Bayesian linear regression of standardised targets (the standardisation's mean is the
    offset, no intercept weight); the prior and noise precisions as in the module docstring.

    Args:
        features: ``(n, M)`` design matrix (every row with the same number of nonzero indicators).
        targets: ``(n,)`` observed values.

    Raises:
        ValueError: no observation, mismatched shapes or non-finite values.
    """
    X = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float).reshape(-1)
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, M) features and n >= 1 targets; got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("features and targets must be finite")
    offset, scale = float(y.mean()), float(y.std())
    scale = scale if scale > 0 else 1.0
    t = (y - offset) / scale
    alpha = float(np.mean(np.sum(X**2, axis=1))) or 1.0  # prior variance of each row's prediction: 1
    eig, basis = np.linalg.eigh(X.T @ X)
    eig = np.clip(eig, 0.0, None)
    proj = basis.T @ (X.T @ t)
    n, m = X.shape
    best = None
    for beta in NOISE_PRECISIONS:
        mean = basis @ (beta * proj / (alpha + beta * eig))
        misfit = beta / 2 * np.sum((t - X @ mean) ** 2) + alpha / 2 * mean @ mean
        evidence = (m * np.log(alpha) + n * np.log(beta) - np.sum(np.log(alpha + beta * eig))) / 2 - misfit
        if best is None or evidence > best[0]:
            best = (evidence, beta, mean)
    _, beta, mean = best
    return LinearPosterior(mean, basis, 1.0 / np.sqrt(alpha + beta * eig), offset, scale, alpha, float(beta))


def hv_gain(miou, latency_ms, archive: EvaluationArchive, targets, ref) -> np.ndarray:
    """Headline hypervolume each candidate ``(miou (n,), latency_ms (n, T))`` would add to
    ``archive``'s points, summed over ``targets`` (objectives of
    :mod:`~linas_lib.search.objectives`: ``1 - mIoU``, latency / budget)."""
    budgets = archive.latency.budgets_ms
    cand = normalised_latency(latency_ms, budgets)
    found = normalised_latency(archive.latency_ms(), budgets)
    loss, found_loss = 1.0 - np.asarray(miou, dtype=float), 1.0 - archive.miou()
    gain = np.zeros(len(cand))
    for t in targets:
        gain += hv_improvement_2d(np.column_stack([found_loss, found[:, t]]), np.column_stack([loss, cand[:, t]]), ref)
    return gain


def thompson_search(archive: EvaluationArchive, rng: np.random.Generator, pool, targets, ref, n_init: int) -> dict:
    """Model-based search (module docstring) over the architectures ``pool`` ``(n, L)``.

    The first ``n_init`` evaluations are the pool's first rows; every further one is a
    Thompson step. Stops early only when the pool is spent.

    Args:
        archive: the run's archive (its budget is the method's).
        rng: the run's generator (posterior draws, ties).
        pool: candidate architectures, without repeats.
        targets: indices of the headline targets whose HV gains are summed.
        ref: the HV reference ``(1 - mIoU, latency / budget)``.
        n_init: evaluations before the first fit (at least 1).

    Returns:
        Facts: pool size, initial evaluations, and the precisions of the last fit.
    """
    space = archive.space
    latency = np.asarray(archive.latency.predict(pool), dtype=float)
    features = space.one_hot(pool)
    n_init = max(1, min(int(n_init), archive.remaining, len(pool)))
    archive.evaluate(pool[:n_init])
    open_rows = np.ones(len(pool), dtype=bool)
    open_rows[:n_init] = False
    post = None
    while archive.remaining > 0 and open_rows.any():
        post = fit_linear_posterior(space.one_hot(archive.choices()), archive.miou())
        gain = hv_gain(post.predict(features, post.sample(rng)), latency, archive, targets, ref)
        gain[~open_rows] = -np.inf
        pick = int(rng.choice(np.flatnonzero(gain == gain.max())))
        archive.evaluate(pool[[pick]])
        open_rows[pick] = False
    facts = {"pool": len(pool), "init": n_init}
    if post is not None:
        facts.update(prior_precision=post.alpha, noise_precision=post.beta)
    return facts
