"""Model-based search: Thompson sampling on a Bayesian linear surrogate of weight-sharing mIoU.

The surrogate is a Bayesian linear regression on the one-hot choice of every layer
(:meth:`~linas_lib.space.SearchSpace.one_hot`, ``L x C`` indicators): on the cpu supernet, an
additive model of the layers explains most of the WS mIoU variance. Targets are standardised
by the evaluated architectures' mean and standard deviation (floored at one mIoU point,
:data:`MIN_SCALE`); the weight prior gives every
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

With ``grow="local"`` the candidates also grow around what was found (local moves, as BANANAS
optimises its acquisition by mutating the best architectures): before each step, every
single-layer change of the evaluated architectures that are non-dominated on some headline
target (:func:`front_neighbours`) joins the pool if it is LUT-feasible. A random pool of
10,000 holds about 1 in 400 of the space, so the best architectures near a found one are
usually not in it. Its control, ``grow="random"``, grows the pool by as many uniformly drawn
LUT-feasible architectures as the local moves would have added at that step: more candidates
without the locality.

With ``model="pairs"`` the surrogate also has a weight per adjacent-layer pair of choices
(:class:`PairPosterior`). On the cpu supernet (05's ``ws_structure.csv``), an additive fit
leaves a held-out residual SD of 0.93 mIoU points and adding the adjacent pairs 0.37 (R^2 0.91
vs 0.99), and the architectures that make the reference front are ones whose WS mIoU beats
the additive prediction. That pair structure is the supernet's own as far as the benchmark
table can tell: the pairs fit ranks the table's standalone accuracy no better than raw WS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .archive import EvaluationArchive, unique_rows
from .indicators import hv_improvement_2d, inside_reference, nondominated
from .samplers import normalised_latency

NOISE_PRECISIONS = np.logspace(-1, 3, 9)  # beta: residual N(0, 1 / beta) of the standardised mIoU
MIN_SCALE = 0.01  # mIoU: the standardisation's floor (1 point), so two close first values do not freeze the draws


@dataclass(frozen=True)
class LinearPosterior:
    """Gaussian posterior over the weights of a linear model of standardised targets.

    Attributes:
        mean: ``(M,)`` posterior mean of the weights.
        chol: ``(M, M)`` lower Cholesky factor of the posterior precision
            ``alpha I + beta X^T X`` (unique, so a draw does not depend on the LAPACK build).
        offset: mean of the targets (the standardisation).
        scale: standard deviation of the targets (at least the fit's ``min_scale``).
        alpha: the prior precision.
        beta: the noise precision of the highest evidence.
    """

    mean: np.ndarray
    chol: np.ndarray
    offset: float
    scale: float
    alpha: float
    beta: float

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One weight vector drawn from the posterior, ``(M,)``: ``mean + L^-T z``."""
        from scipy.linalg import solve_triangular

        return self.mean + solve_triangular(self.chol.T, rng.standard_normal(len(self.mean)), lower=False)

    def predict(self, features, weights=None) -> np.ndarray:
        """Targets of ``features`` ``(n, M)`` under ``weights`` (default: the posterior mean)."""
        w = self.mean if weights is None else weights
        return self.offset + self.scale * (np.asarray(features, dtype=float) @ w)


def _posterior(X: np.ndarray, t: np.ndarray, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray, float]:
    """``(mean, lower Cholesky factor of the precision, log evidence)`` of standardised targets
    ``t`` (Bishop eq. 3.86, the ``2 pi`` term included)."""
    from scipy.linalg import cho_solve

    n, m = X.shape
    chol = np.linalg.cholesky(alpha * np.eye(m) + beta * X.T @ X)
    mean = beta * cho_solve((chol, True), X.T @ t)
    misfit = beta / 2 * np.sum((t - X @ mean) ** 2) + alpha / 2 * mean @ mean
    log_det = 2 * np.sum(np.log(np.diag(chol)))
    evidence = (m * np.log(alpha) + n * np.log(beta) - log_det - n * np.log(2 * np.pi)) / 2 - misfit
    return mean, chol, float(evidence)


def log_evidence(features, standardised, alpha: float, beta: float) -> float:
    """Log marginal likelihood of ``standardised`` targets under the prior ``N(0, I / alpha)``
    and noise precision ``beta`` (what :func:`fit_linear_posterior` maximises over ``beta``)."""
    return _posterior(np.asarray(features, dtype=float), np.asarray(standardised, dtype=float), alpha, beta)[2]


def fit_linear_posterior(features, targets, min_scale: float = 0.0) -> LinearPosterior:
    """Bayesian linear regression of standardised targets (the standardisation's mean is the
    offset, no intercept weight); the prior and noise precisions as in the module docstring.

    Args:
        features: ``(n, M)`` design matrix (every row with the same number of nonzero indicators).
        targets: ``(n,)`` observed values.
        min_scale: floor of the standardisation's scale, in target units: a few nearly equal
            targets would otherwise shrink every draw to nothing (and equal ones need a scale).

    Returns:
        The posterior, with the noise precision of the highest evidence on :data:`NOISE_PRECISIONS`.

    Raises:
        ValueError: no observation, mismatched shapes or non-finite values.
    """
    X = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float).reshape(-1)
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, M) features and n >= 1 targets; got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("features and targets must be finite")
    offset = float(y.mean())
    scale = max(float(y.std()), float(min_scale)) or 1.0
    t = (y - offset) / scale
    alpha = float(np.mean(np.sum(X**2, axis=1))) or 1.0  # prior variance of each row's prediction: 1
    fits = [(_posterior(X, t, alpha, float(beta)), float(beta)) for beta in NOISE_PRECISIONS]
    (mean, chol, _), beta = max(fits, key=lambda fit: fit[0][2])
    return LinearPosterior(mean, chol, offset, scale, alpha, beta)


PAIR_SHARES = (0.03, 0.1, 0.3)  # prior variance of the adjacent-pair part, a share of the additive part's


@dataclass(frozen=True)
class PairPosterior:
    """Gaussian posterior of an additive model plus one weight per adjacent-layer pair of
    choices, ``f(a) = sum_l w[l, a_l] + sum_l v[l, a_l, a_(l+1)]``, kept in function space.

    With ``(L - 1) C^2`` pair weights the weight-space precision is large (1764 weights on the
    LINAS space) while the runs hold a few hundred points, so the posterior is kept as the
    ``n x n`` kernel of the evaluated architectures: ``k(a, b)`` counts the layers and adjacent
    pairs two architectures share, each count scaled by its prior variance.

    Draws are pathwise (Matheron's rule: a prior weight draw corrected by the data), with the
    pair weights' prior draw held at zero. They are centred on the exact posterior mean but
    carry only the additive part's and the noise's spread, so they are a deliberately narrower
    Thompson heuristic, not posterior samples; a pair never evaluated adds exactly zero to
    every draw. Why: with 1764 pair weights and a pool of some 20,000 candidates, drawing the
    pairs too gives every candidate about a point of (correlated) noise, and the acquisition
    then chases the luckiest draw (a diagnostic on the cpu supernet's long runs, seeds 0-2:
    0.93-0.97 of the reference HV at 300 evaluations against 0.98-0.995 for the additive model).

    Attributes:
        train: ``(n, L)`` the evaluated architectures.
        standardised: ``(n,)`` their standardised targets.
        chol: lower Cholesky factor of ``K + I / beta``.
        offset: mean of the targets; scale: their standard deviation (at least ``min_scale``).
        single_var: prior variance of each layer weight (1 / L: an architecture's additive part has variance 1).
        pair_var: prior variance of each pair weight (``pair_share / (L - 1)``).
        beta: the noise precision; pair_share: the interactions' prior share, both of the highest evidence.
        n_choices: choices per layer (the size of the weight tables a draw returns).
    """

    train: np.ndarray
    standardised: np.ndarray
    chol: np.ndarray
    offset: float
    scale: float
    single_var: float
    pair_var: float
    beta: float
    pair_share: float
    n_choices: int

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One draw of the weights, ``((L, C) layer weights, (L - 1, C, C) pair weights)``
        (the pair weights' prior draw held at zero, see the class docstring)."""
        from scipy.linalg import cho_solve

        L, C = self.train.shape[1], self.n_choices
        single = rng.standard_normal((L, C)) * np.sqrt(self.single_var)
        pair = np.zeros((L - 1, C, C))
        noise = rng.standard_normal(len(self.train)) / np.sqrt(self.beta)
        residual = self.standardised - pair_additive_values(self.train, single, pair) - noise
        v = cho_solve((self.chol, True), residual)
        for layer in range(L):
            np.add.at(single[layer], self.train[:, layer], self.single_var * v)
        for layer in range(L - 1):
            np.add.at(pair[layer], (self.train[:, layer], self.train[:, layer + 1]), self.pair_var * v)
        return single, pair

    def predict(self, choices, weights) -> np.ndarray:
        """mIoU of architectures ``choices`` ``(n, L)`` under drawn ``weights``."""
        return self.offset + self.scale * pair_additive_values(np.asarray(choices, dtype=np.int64), *weights)


def pair_additive_values(choices: np.ndarray, single: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """``sum_l single[l, a_l] + sum_l pair[l, a_l, a_(l+1)]`` for every row ``a`` of ``choices``."""
    layers = np.arange(choices.shape[1])
    value = single[layers, choices].sum(axis=1)
    return value + pair[layers[:-1], choices[:, :-1], choices[:, 1:]].sum(axis=1)


def pair_kernels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layers and adjacent pairs that rows of ``a`` and ``b`` share: two ``(len(a), len(b))`` counts."""
    same = a[:, None, :] == b[None, :, :]
    return same.sum(axis=2).astype(float), (same[:, :, :-1] & same[:, :, 1:]).sum(axis=2).astype(float)


def fit_pair_posterior(choices, targets, n_choices: int, min_scale: float = 0.0) -> PairPosterior:
    """The :class:`PairPosterior` of ``targets`` observed at ``choices``: the standardisation
    and the additive part's prior as :func:`fit_linear_posterior`'s; the noise precision and
    the pair part's prior share chosen together by evidence over :data:`NOISE_PRECISIONS` x
    :data:`PAIR_SHARES` (the smallest share is nearly the additive model).

    Raises:
        ValueError: no observation, mismatched shapes, fewer than two layers or non-finite targets.
    """
    from scipy.linalg import solve_triangular

    A = np.asarray(choices, dtype=np.int64)
    y = np.asarray(targets, dtype=float).reshape(-1)
    if A.ndim != 2 or A.shape[1] < 2 or len(A) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, L >= 2) choices and n >= 1 targets; got {A.shape} and {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("targets must be finite")
    offset = float(y.mean())
    scale = max(float(y.std()), float(min_scale)) or 1.0
    t = (y - offset) / scale
    n, L = A.shape
    singles, pairs = pair_kernels(A, A)
    best = None
    for share in PAIR_SHARES:
        gram = singles / L + pairs * share / (L - 1)
        for beta in NOISE_PRECISIONS:
            chol = np.linalg.cholesky(gram + np.eye(n) / beta)
            alpha = solve_triangular(chol, t, lower=True)
            evidence = -0.5 * alpha @ alpha - np.sum(np.log(np.diag(chol))) - n / 2 * np.log(2 * np.pi)
            if best is None or evidence > best[0]:
                best = (evidence, chol, float(beta), float(share))
    _, chol, beta, share = best
    return PairPosterior(A, t, chol, offset, scale, 1.0 / L, share / (L - 1), beta, share, int(n_choices))


def hv_gain(miou, latency_ms, archive: EvaluationArchive, targets, ref) -> np.ndarray:
    """Headline hypervolume each candidate would add to ``archive``'s points.

    Args:
        miou: ``(n,)`` the candidates' (predicted) mIoU.
        latency_ms: ``(n, T)`` their latency on every target.
        archive: the evaluated points.
        targets: indices of the targets whose gains are summed.
        ref: the HV reference in the objectives of :mod:`~linas_lib.search.objectives`
            (``1 - mIoU``, latency / budget).

    Returns:
        ``(n,)`` summed gains, ``>= 0``.
    """
    budgets = archive.latency.budgets_ms
    cand = normalised_latency(latency_ms, budgets)
    found = normalised_latency(archive.latency_ms(), budgets)
    loss, found_loss = 1.0 - np.asarray(miou, dtype=float), 1.0 - archive.miou()
    gain = np.zeros(len(cand))
    for t in targets:
        gain += hv_improvement_2d(np.column_stack([found_loss, found[:, t]]), np.column_stack([loss, cand[:, t]]), ref)
    return gain


def front_neighbours(archive: EvaluationArchive, targets, ref) -> np.ndarray:
    """Every single-layer change of the evaluated architectures that are non-dominated on at
    least one of ``targets`` (inside the HV reference box), ``(n, L)``, with repeats.

    Args:
        archive: the evaluated points.
        targets: indices of the headline targets.
        ref: the HV reference ``(1 - mIoU, latency / budget)``.
    """
    space = archive.space
    if archive.n_evals == 0:
        return np.zeros((0, space.n_layers), dtype=np.int64)
    loss = 1.0 - archive.miou()
    norm = normalised_latency(archive.latency_ms(), archive.latency.budgets_ms)
    members: set[int] = set()
    for t in targets:
        points = np.column_stack([loss, norm[:, t]])
        inside = np.flatnonzero(inside_reference(points, ref))
        if len(inside):
            members.update(inside[nondominated(points[inside])].tolist())
    base = archive.choices()[sorted(members)]
    n, layers, choices = len(base), space.n_layers, space.n_choices
    moves = np.repeat(base, layers * (choices - 1), axis=0).reshape(n, layers, choices - 1, layers)
    for layer in range(layers):
        moves[:, layer, :, layer] = (base[:, layer, None] + np.arange(1, choices)) % choices
    return moves.reshape(-1, layers)


class _Candidates:
    """The pool a Thompson step chooses from: architectures, their LUT latency and one-hot
    features, and which are still open (not evaluated)."""

    def __init__(self, archive: EvaluationArchive, pool: np.ndarray):
        self.archive = archive
        self.archs = np.asarray(pool, dtype=np.int64)
        self.latency = np.asarray(archive.latency.predict(self.archs), dtype=float)
        self.features = archive.space.one_hot(self.archs)
        self.open = np.ones(len(self.archs), dtype=bool)
        self.known = set(archive.space.encode(self.archs).tolist()) | set(archive.codes())

    def feasible_new(self, choices: np.ndarray, remember: set[int]) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``choices`` not in ``remember`` (which then holds them) that are within
        some target's budget, and their latency."""
        space, latency = self.archive.space, self.archive.latency
        fresh = unique_rows(space, choices, exclude=remember) if len(choices) else choices
        if not len(fresh):
            return fresh, np.zeros((0, len(latency.budgets_ms)))
        remember.update(space.encode(fresh).tolist())
        ms = np.asarray(latency.predict(fresh), dtype=float)
        keep = (ms <= np.asarray(latency.budgets_ms, dtype=float)).any(axis=1)
        return fresh[keep], ms[keep]

    def grow(self, choices: np.ndarray) -> int:
        """Add the LUT-feasible (within some target's budget) rows of ``choices`` not seen yet;
        returns how many joined."""
        fresh, ms = self.feasible_new(choices, self.known)
        if not len(fresh):
            return 0
        space = self.archive.space
        self.archs = np.concatenate([self.archs, fresh])
        self.latency = np.concatenate([self.latency, ms])
        self.features = np.concatenate([self.features, space.one_hot(fresh)])
        self.open = np.concatenate([self.open, np.ones(len(fresh), dtype=bool)])
        return len(fresh)


GROW_MODES = ("none", "local", "random")
MODELS = ("additive", "pairs")


def thompson_search(archive: EvaluationArchive, rng: np.random.Generator, pool, targets, ref, n_init: int,
                    grow: str = "none", sampler=None, model: str = "additive") -> dict:
    """Model-based search (module docstring) over the architectures ``pool`` ``(n, L)``.

    The first ``n_init`` evaluations are the pool's first rows; every further one is a
    Thompson step. Stops early only when the pool is spent.

    Args:
        archive: the run's archive (its budget is the method's).
        rng: the run's generator (posterior draws, ties).
        pool: candidate architectures, without repeats.
        targets: indices of the headline targets whose HV gains are summed.
        ref: the HV reference ``(1 - mIoU, latency / budget)``.
        n_init: evaluations before the first fit (at least 1 while budget is left).
        grow: ``"none"``; ``"local"``: grow the pool before each step by the LUT-feasible
            single-layer changes of the found front (:func:`front_neighbours`); ``"random"``: by
            as many LUT-feasible architectures from ``sampler`` (the control of ``"local"``).
        sampler: ``(rng, n) -> (n, L)`` LUT-feasible architectures (``grow="random"`` only).
        model: ``"additive"`` (:func:`fit_linear_posterior` on the one-hot choices) or
            ``"pairs"`` (:func:`fit_pair_posterior`: adjacent-layer interactions too).

    Returns:
        Facts: pool size, initial evaluations, the noise precision of the last fit (and for
        ``"pairs"`` its interactions' prior share) and, when growing, how many architectures
        joined the pool (``grown``).

    Raises:
        ValueError: an unknown ``grow`` mode or ``model``, or ``"random"`` without a sampler.
    """
    if grow not in GROW_MODES or (grow == "random" and sampler is None):
        raise ValueError(f"grow must be one of {GROW_MODES} (random needs a sampler); got {grow!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}; got {model!r}")
    space = archive.space
    cands = _Candidates(archive, pool)
    n_init = min(max(1, int(n_init)), archive.remaining, len(pool))
    if n_init:
        archive.evaluate(cands.archs[:n_init])
    cands.open[:n_init] = False
    post, added, counted = None, 0, set(cands.known)
    while archive.remaining > 0:
        if grow == "local":
            added += cands.grow(front_neighbours(archive, targets, ref))
        elif grow == "random":  # as many as the local moves would add now, drawn uniformly instead
            n_local = len(cands.feasible_new(front_neighbours(archive, targets, ref), counted)[0])
            added += cands.grow(sampler(rng, n_local)) if n_local else 0
        if not cands.open.any():
            break
        if model == "pairs":
            post = fit_pair_posterior(archive.choices(), archive.miou(), space.n_choices, MIN_SCALE)
            predicted = post.predict(cands.archs, post.sample(rng))
        else:
            post = fit_linear_posterior(space.one_hot(archive.choices()), archive.miou(), MIN_SCALE)
            predicted = post.predict(cands.features, post.sample(rng))
        gain = hv_gain(predicted, cands.latency, archive, targets, ref)
        gain[~cands.open] = -np.inf
        pick = int(rng.choice(np.flatnonzero(gain == gain.max())))
        archive.evaluate(cands.archs[[pick]])
        cands.open[pick] = False
    facts = {"pool": len(pool), "init": n_init}
    if grow != "none":
        facts["grown"] = added
    if post is not None:
        facts["noise_precision"] = post.beta
        if model == "pairs":
            facts["pair_share"] = post.pair_share
    return facts
