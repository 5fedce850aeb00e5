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

With ``model="fingerprint"`` the pairs model also reads each architecture's *latency
fingerprint* (:class:`LatencyFingerprint`: its log LUT latency on every target, standardised
over the run's first pool): one weight per target, drawn with the layer weights. The LUTs cost
no evaluation, and how an architecture's time splits across CPUs, GPUs and edge boards says
what kind of layers it holds (depthwise or dense, wide or narrow) in a handful of numbers
that a few evaluations can weigh, where the 105 layer weights need many. Its control is
``model="pairs"`` (the same search without the fingerprint); two more controls read a
fingerprint of the same size without that information: ``model="fingerprint_random"``
(:func:`random_cost_tables`: random additive tables) and ``model="fingerprint_shuffled"``
(:func:`shuffled_latency`: the real LUTs with each layer's choices relabelled, so every
layer's share of the variance and the targets' correlation stay, and only which choice costs
what is lost).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .archive import EvaluationArchive, unique_rows
from .indicators import hv_improvement_2d, inside_reference, nondominated
from .samplers import normalised_latency

NOISE_PRECISIONS = np.logspace(-1, 3, 9)  # beta: residual N(0, 1 / beta) of the standardised mIoU
HV_GAIN_CHUNK = 1 << 18  # candidates per hv_gain call: a whole-space step may score millions
CONTENDERS = 4096  # a whole-space step scores this many of the highest bounds exactly before pruning
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
# prior variance of the latency-fingerprint part, a share of the additive part's (a grid: chosen by
# evidence with the others). One value, chosen on the compared seeds 0-9 (60 evaluations, against
# surrogate_pairs: 05's confirm_design.effect.fingerprint); a scratch run there (not committed)
# with the evidence over (0.3, 1, 3) gained less: with few points the evidence picks a weak share
FINGERPRINT_SHARES = (1.0,)


def random_cost_tables(rng: np.random.Generator, n_targets: int, n_layers: int, n_choices: int):
    """A control fingerprint's source: ``(n, L) -> (n, n_targets)`` sums over layers of
    log-normal per-(target, layer, choice) costs drawn once. Additive like a latency table, of
    the same dimension, and blind to the network (``model="fingerprint_random"``)."""
    costs = np.exp(rng.standard_normal((n_targets, n_layers, n_choices)))
    layers = np.arange(n_layers)
    return lambda archs: costs[:, layers, np.asarray(archs, dtype=np.int64)].sum(axis=2).T


def shuffled_latency(rng: np.random.Generator, latency, n_layers: int, n_choices: int):
    """A control fingerprint's source: ``(n, L) -> (n, T)`` LUT latency of the architectures
    with each layer's choices relabelled by one random permutation per layer (the same on every
    target, ``model="fingerprint_shuffled"``): the real tables' structure without their link
    to the network."""
    perms = np.stack([rng.permutation(n_choices) for _ in range(n_layers)])
    layers = np.arange(n_layers)
    return lambda archs: latency.predict(perms[layers, np.asarray(archs, dtype=np.int64)])


def hinged_latency(latency):
    """A fingerprint's source: ``(n, L) -> (n, T)`` LUT latency floored at each target's budget
    (``model="fingerprint_hinge"``), so that inside a target's box its term is flat: a slope
    learned across the space is not carried into the box (08's probe of the fingerprint)."""
    budgets = np.asarray(latency.budgets_ms, dtype=float)
    return lambda archs: np.maximum(np.asarray(latency.predict(archs), dtype=float), budgets)


def fingerprint_source(model: str, latency, space, rng: np.random.Generator):
    """``(n, L) -> (n, T)`` what a fingerprint model reads: the LUT latency (``"fingerprint"``), the
    same floored at the budgets (``"fingerprint_hinge"``, :func:`hinged_latency`), or
    :func:`random_cost_tables` or :func:`shuffled_latency` (drawn from ``rng``)."""
    if model == "fingerprint":
        return latency.predict
    if model == "fingerprint_hinge":
        return hinged_latency(latency)
    if model == "fingerprint_random":
        return random_cost_tables(rng, len(latency.budgets_ms), space.n_layers, space.n_choices)
    if model == "fingerprint_shuffled":
        return shuffled_latency(rng, latency, space.n_layers, space.n_choices)
    raise ValueError(f"no fingerprint for model {model!r}; expected one of {FINGERPRINT_MODELS}")


@dataclass(frozen=True)
class LatencyFingerprint:
    """Log latency on every target, standardised per target by a fixed pool's mean and SD.

    Attributes:
        mean: ``(T,)`` mean log latency of the pool.
        sd: ``(T,)`` its standard deviation (1 where the pool's latencies are all equal).
    """

    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def of_pool(cls, latency_ms) -> "LatencyFingerprint":
        """The standardisation of the pool whose latencies are ``latency_ms`` ``(n, T)``."""
        logs = cls._logs(latency_ms)
        sd = logs.std(axis=0)
        return cls(logs.mean(axis=0), np.where(sd > 0, sd, 1.0))

    def __call__(self, latency_ms) -> np.ndarray:
        """``(n, T)`` standardised log latencies of ``latency_ms`` ``(n, T)``."""
        return (self._logs(latency_ms) - self.mean) / self.sd

    @staticmethod
    def _logs(latency_ms) -> np.ndarray:
        ms = np.asarray(latency_ms, dtype=float)
        if ms.ndim != 2 or len(ms) == 0 or not (np.isfinite(ms).all() and (ms > 0).all()):
            raise ValueError(f"a latency fingerprint needs (n >= 1, T) positive finite latencies; got shape {ms.shape}")
        return np.log(ms)


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
    carry only the additive part's, the fingerprint part's (if any) and the noise's spread, so they are a deliberately narrower
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
        fingerprint: ``(n, D)`` the evaluated architectures' latency fingerprints, or None (no such part).
        fingerprint_var: prior variance of each fingerprint weight (``fingerprint_share / D``);
            fingerprint_share: its share of the additive part's, of the highest evidence.
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
    fingerprint: np.ndarray | None = None
    fingerprint_var: float = 0.0
    fingerprint_share: float = 0.0

    def sample(self, rng: np.random.Generator, fingerprint_rng: np.random.Generator | None = None
               ) -> tuple[np.ndarray, ...]:
        """One draw of the weights, ``((L, C) layer weights, (L - 1, C, C) pair weights)``
        (the pair weights' prior draw held at zero, see the class docstring), with a fingerprint
        part also its ``(D,)`` weights (drawn like the layer weights, from ``fingerprint_rng``
        when given: ``rng`` then draws what the pairs model's draw would)."""
        from scipy.linalg import cho_solve

        L, C = self.train.shape[1], self.n_choices
        single = rng.standard_normal((L, C)) * np.sqrt(self.single_var)
        pair = np.zeros((L - 1, C, C))
        noise = rng.standard_normal(len(self.train)) / np.sqrt(self.beta)
        residual = self.standardised - pair_additive_values(self.train, single, pair) - noise
        finger = None
        if self.fingerprint is not None:  # drawn last: without it, the draws are the pairs model's
            finger = (fingerprint_rng or rng).standard_normal(self.fingerprint.shape[1]) * np.sqrt(self.fingerprint_var)
            residual = residual - self.fingerprint @ finger
        return self._corrected(single, pair, finger, cho_solve((self.chol, True), residual))

    def mean_weights(self) -> tuple[np.ndarray, ...]:
        """The posterior mean of the weights, in :meth:`sample`'s form (a diagnostic, and the
        predictions of :func:`thompson_search`'s ``acquire="mean"``)."""
        from scipy.linalg import cho_solve

        L, C = self.train.shape[1], self.n_choices
        finger = None if self.fingerprint is None else np.zeros(self.fingerprint.shape[1])
        return self._corrected(np.zeros((L, C)), np.zeros((L - 1, C, C)), finger,
                               cho_solve((self.chol, True), self.standardised))

    def _corrected(self, single, pair, finger, v) -> tuple[np.ndarray, ...]:
        """Prior weights plus the data's correction ``k(., train) v`` (Matheron's rule)."""
        L = self.train.shape[1]
        for layer in range(L):
            np.add.at(single[layer], self.train[:, layer], self.single_var * v)
        for layer in range(L - 1):
            np.add.at(pair[layer], (self.train[:, layer], self.train[:, layer + 1]), self.pair_var * v)
        if finger is None:
            return single, pair
        return single, pair, finger + self.fingerprint_var * (self.fingerprint.T @ v)

    def predict(self, choices, weights, fingerprints=None) -> np.ndarray:
        """mIoU of architectures ``choices`` ``(n, L)`` under drawn ``weights``; with a
        fingerprint part, ``fingerprints`` ``(n, D)`` are theirs.

        Raises:
            ValueError: a fingerprint part without ``fingerprints``, or ``fingerprints`` without one.
        """
        choices = np.asarray(choices, dtype=np.int64)
        value = pair_additive_values(choices, *weights[:2])
        if (self.fingerprint is None) != (fingerprints is None):
            has = "has a fingerprint part but no fingerprints were" if fingerprints is None else \
                "has no fingerprint part but fingerprints were"
            raise ValueError(f"the posterior {has} given to predict")
        if fingerprints is not None:
            value = value + np.asarray(fingerprints, dtype=float) @ weights[2]
        return self.offset + self.scale * value


def pair_additive_values(choices: np.ndarray, single: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """``sum_l single[l, a_l] + sum_l pair[l, a_l, a_(l+1)]`` for every row ``a`` of ``choices``."""
    layers = np.arange(choices.shape[1])
    value = single[layers, choices].sum(axis=1)
    return value + pair[layers[:-1], choices[:, :-1], choices[:, 1:]].sum(axis=1)


def pair_kernels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layers and adjacent pairs that rows of ``a`` and ``b`` share: two ``(len(a), len(b))`` counts."""
    same = a[:, None, :] == b[None, :, :]
    return same.sum(axis=2).astype(float), (same[:, :, :-1] & same[:, :, 1:]).sum(axis=2).astype(float)


def fit_pair_posterior(choices, targets, n_choices: int, min_scale: float = 0.0,
                       fingerprints=None) -> PairPosterior:
    """The :class:`PairPosterior` of ``targets`` observed at ``choices``: the standardisation
    and the additive part's prior as :func:`fit_linear_posterior`'s; the noise precision and
    the pair part's prior share chosen together by evidence over :data:`NOISE_PRECISIONS` x
    :data:`PAIR_SHARES` (the smallest share is nearly the additive model). With
    ``fingerprints`` ``(n, D)`` (:class:`LatencyFingerprint`), a linear part on them too,
    ``k += share * z(a).z(b) / D``, its share chosen with the others over :data:`FINGERPRINT_SHARES`.

    Raises:
        ValueError: no observation, mismatched shapes, fewer than two layers or non-finite targets
            or fingerprints.
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
    Z = None if fingerprints is None else np.asarray(fingerprints, dtype=float)
    if Z is not None and (Z.ndim != 2 or len(Z) != n or Z.shape[1] == 0 or not np.isfinite(Z).all()):
        raise ValueError(f"fingerprints must be finite, one (D >= 1)-row per architecture; got {Z.shape} for {n}")
    singles, pairs = pair_kernels(A, A)
    linear = np.zeros((n, n)) if Z is None else Z @ Z.T / Z.shape[1]
    best = None
    for share in PAIR_SHARES:
        for finger in (0.0,) if Z is None else FINGERPRINT_SHARES:
            gram = singles / L + pairs * share / (L - 1) + finger * linear
            for beta in NOISE_PRECISIONS:
                chol = np.linalg.cholesky(gram + np.eye(n) / beta)
                alpha = solve_triangular(chol, t, lower=True)
                evidence = -0.5 * alpha @ alpha - np.sum(np.log(np.diag(chol))) - n / 2 * np.log(2 * np.pi)
                if best is None or evidence > best[0]:
                    best = (evidence, chol, float(beta), float(share), float(finger))
    _, chol, beta, share, finger = best
    finger_var = 0.0 if Z is None else finger / Z.shape[1]
    return PairPosterior(A, t, chol, offset, scale, 1.0 / L, share / (L - 1), beta, share, int(n_choices),
                         Z, finger_var, finger)


def hv_gain(miou, latency_ms, archive: EvaluationArchive, targets, ref, chunk: int = 0) -> np.ndarray:
    """Headline hypervolume each candidate would add to ``archive``'s points.

    Args:
        miou: ``(n,)`` the candidates' (predicted) mIoU.
        latency_ms: ``(n, T)`` their latency on every target.
        archive: the evaluated points.
        targets: indices of the targets whose gains are summed.
        ref: the HV reference in the objectives of :mod:`~linas_lib.search.objectives`
            (``1 - mIoU``, latency / budget).
        chunk: candidates scored at a time (0: all at once; memory grows with ``n`` times the front).

    Returns:
        ``(n,)`` summed gains, ``>= 0``.
    """
    if chunk and len(miou) > chunk:
        return np.concatenate([hv_gain(miou[i:i + chunk], latency_ms[i:i + chunk], archive, targets, ref)
                               for i in range(0, len(miou), chunk)])
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


class _SpaceCandidates:
    """The whole space as a Thompson step's candidates (``grow="space"``): every architecture in
    code order with its LUT latency, and per headline target the ones inside its HV box sorted by
    latency. A step evaluates its draw on all of them at once, by broadcasting: the model is a
    sum over layers and adjacent pairs, and the code order is C order (layer 0 most significant).
    The step's candidates are then every architecture not evaluated yet whose predicted point
    adds hypervolume on some headline target (every other one adds 0), so the pick is the
    summed gain's exact maximiser over the space."""

    def __init__(self, archive: EvaluationArchive, targets, ref, fingerprint=None, source=None):
        space = archive.space
        self.archive, self.targets, self.ref = archive, list(targets), (float(ref[0]), float(ref[1]))
        self.archs = space.decode(np.arange(space.size))
        self.latency = np.asarray(archive.latency.predict(self.archs), dtype=float)
        norm = normalised_latency(self.latency, archive.latency.budgets_ms)
        self.orders, self.sorted_norm = [], []
        for t in self.targets:
            inside = np.flatnonzero(norm[:, t] < self.ref[1])
            order = inside[np.argsort(norm[inside, t], kind="stable")]
            self.orders.append(order)
            self.sorted_norm.append(norm[order, t])
        del norm
        self.inside = np.unique(np.concatenate(self.orders)) if self.orders else np.zeros(0, dtype=np.int64)
        self.fingers = None if fingerprint is None else fingerprint(source(self.archs))
        self.n_gaining: list[int] = []  # per step: architectures predicted to add any hypervolume

    def values(self, weights) -> np.ndarray:
        """``(space.size,)`` the draw ``weights`` (:meth:`PairPosterior.sample`) before its offset
        and scale. A fingerprint part is summed column by column, not by a matrix product, so
        the values do not depend on the BLAS build."""
        single, pair = weights[0], weights[1]
        n_layers, n_choices = single.shape
        grid = np.zeros((n_choices,) * n_layers)
        for layer in range(n_layers):
            grid += single[layer].reshape(_axes(n_layers, n_choices, layer))
        for layer in range(n_layers - 1):
            grid += pair[layer].reshape(_axes(n_layers, n_choices, layer, layer + 1))
        value = grid.reshape(-1)
        if len(weights) > 2:
            for column, weight in enumerate(weights[2]):
                value += weight * self.fingers[:, column]
        return value

    def contenders(self, weights, offset: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, predicted mIoU)`` of the architectures not evaluated yet that may add the most
        hypervolume under the draw (``offset + scale * value``): every one whose summed gain can
        reach the best one's (empty when none adds any).

        A bound prunes the rest exactly. On each headline target a point adds at most the box
        from it to the reference, cut at the best loss found at or below its latency (the
        staircase only falls with latency); the :data:`CONTENDERS` highest bounds are scored
        exactly, and every other architecture whose bound reaches their best gain joins them.
        """
        archive = self.archive
        loss = 1.0 - (offset + scale * self.values(weights))
        loss[np.asarray(archive.codes(), dtype=np.int64)] = np.inf
        found_loss = 1.0 - archive.miou()
        found_norm = normalised_latency(archive.latency_ms(), archive.latency.budgets_ms)
        bound = np.zeros(len(loss))
        for t, order, sorted_norm in zip(self.targets, self.orders, self.sorted_norm):
            bar = np.full(len(order), self.ref[0])  # the loss to beat at each latency: the best found at or below it
            at = np.searchsorted(sorted_norm, found_norm[:, t], side="left")
            placed = at < len(order)
            np.minimum.at(bar, at[placed], found_loss[placed])
            room = np.minimum.accumulate(bar) - loss[order]
            adds = room > 0
            bound[order[adds]] += room[adds] * (self.ref[1] - sorted_norm[adds])
        positive = np.flatnonzero(bound > 0)
        self.n_gaining.append(len(positive))
        if len(positive) > CONTENDERS:
            top = positive[np.argpartition(-bound[positive], CONTENDERS)[:CONTENDERS]]
            best = self.gain(top, loss).max()
            positive = np.union1d(top, positive[bound[positive] >= best])
        return positive, 1.0 - loss[positive]

    def gain(self, codes: np.ndarray, loss: np.ndarray) -> np.ndarray:
        """Exact summed gains of ``codes`` whose predicted losses are ``loss[codes]``."""
        return hv_gain(1.0 - loss[codes], self.latency[codes], self.archive, self.targets, self.ref, chunk=HV_GAIN_CHUNK)

    def open_inside(self) -> np.ndarray:
        """Codes inside some headline target's box that are not evaluated yet."""
        return self.inside[~np.isin(self.inside, self.archive.codes())]


def _axes(n_layers: int, n_choices: int, *layers: int) -> tuple[int, ...]:
    """The broadcast shape that puts a table's axes on ``layers`` of the ``(C,) * L`` grid."""
    return tuple(n_choices if layer in layers else 1 for layer in range(n_layers))


@dataclass(frozen=True)
class StepState:
    """What one Thompson step of :func:`thompson_search` acts on, for its ``observe`` hook: the
    archive (live: read it during the call), the candidates, which are open, and copies of the
    generators as the step will draw from them (a fingerprint model's ``finger_rng``, else None)."""

    archive: EvaluationArchive
    archs: np.ndarray
    latency_ms: np.ndarray
    open: np.ndarray
    rng: np.random.Generator
    finger_rng: np.random.Generator | None


GROW_MODES = ("none", "local", "random", "space")
MODELS = ("additive", "pairs", "fingerprint", "fingerprint_random", "fingerprint_shuffled", "fingerprint_hinge")
FINGERPRINT_MODELS = ("fingerprint", "fingerprint_random", "fingerprint_shuffled", "fingerprint_hinge")
ACQUIRE = ("draw", "mean")  # what a step's predictions come from: a posterior draw (Thompson), or its mean


def thompson_search(archive: EvaluationArchive, rng: np.random.Generator, pool, targets, ref, n_init: int,
                    grow: str = "none", sampler=None, model: str = "additive", observe=None,
                    acquire: str = "draw") -> dict:
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
            as many LUT-feasible architectures from ``sampler`` (the control of ``"local"``);
            ``"space"``: each step chooses among the whole space instead of the pool, from every
            headline target's predicted front under the draw (:class:`_SpaceCandidates`; the
            pool gives only the first evaluations and the fingerprint's standardisation; the
            pairs or a fingerprint model only).
        sampler: ``(rng, n) -> (n, L)`` LUT-feasible architectures (``grow="random"`` only).
        model: ``"additive"`` (:func:`fit_linear_posterior` on the one-hot choices),
            ``"pairs"`` (:func:`fit_pair_posterior`: adjacent-layer interactions too) or
            ``"fingerprint"`` (``"pairs"`` with the latency fingerprint, standardised over ``pool``)
            or its controls ``"fingerprint_random"`` (the fingerprint of :func:`random_cost_tables`) and
            ``"fingerprint_shuffled"`` (of :func:`shuffled_latency`).
            A fingerprint's weights and tables draw from streams spawned off ``rng``, so ``rng``'s
            draws stay the pairs model's.
        observe: optional ``(StepState) -> None``, called before each Thompson step's fit (a
            diagnostic, :mod:`linas_lib.analysis.fingerprint_probe`; it gets copies of the
            generators and the open mask, so the run does not change).
        acquire: ``"draw"``: each step predicts with one posterior draw (Thompson sampling);
            ``"mean"``: with the posterior mean (greedy: no exploration beyond the HV gain's
            spread along the front; ``rng`` then only breaks ties and makes a whole-space step's
            random pick when nothing is predicted to gain). The pairs or a fingerprint model only.

    Returns:
        Facts: pool size, initial evaluations, the noise precision of the last fit (and for
        ``"pairs"`` its interactions' prior share, for ``"fingerprint"`` that and the fingerprint's) and, when growing, how many architectures
        joined the pool (``grown``).

    Raises:
        ValueError: an unknown ``grow`` mode, ``model`` or ``acquire``, or ``"random"`` without a
            sampler.
    """
    if grow not in GROW_MODES or (grow == "random" and sampler is None):
        raise ValueError(f"grow must be one of {GROW_MODES} (random needs a sampler); got {grow!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}; got {model!r}")
    if acquire not in ACQUIRE or (acquire == "mean" and model == "additive"):
        raise ValueError(f"acquire must be one of {ACQUIRE} ('mean' needs the pairs or a fingerprint model); "
                         f"got {acquire!r} with model {model!r}")
    if grow == "space" and (model == "additive" or observe is not None):
        raise ValueError(f"grow='space' needs the pairs or a fingerprint model and no observe hook; got {model!r}")
    space = archive.space
    cands = _Candidates(archive, pool)
    fingerprint = source = finger_rng = None
    if model in FINGERPRINT_MODELS:
        finger_rng, table_rng = rng.spawn(2)
        source = fingerprint_source(model, archive.latency, space, table_rng)
        fingerprint = LatencyFingerprint.of_pool(source(cands.archs))
        cand_fingers = fingerprint(source(cands.archs))  # grown with the pool, never recomputed
    whole = _SpaceCandidates(archive, targets, ref, fingerprint, source) if grow == "space" else None
    n_init = min(max(1, int(n_init)), archive.remaining, len(pool))
    if n_init:
        archive.evaluate(cands.archs[:n_init])
    cands.open[:n_init] = False
    post, added, counted, offered, zero_steps = None, 0, set(cands.known), [], 0
    while archive.remaining > 0:
        if grow == "local":
            added += cands.grow(front_neighbours(archive, targets, ref))
        elif grow == "random":  # as many as the local moves would add now, drawn uniformly instead
            n_local = len(cands.feasible_new(front_neighbours(archive, targets, ref), counted)[0])
            added += cands.grow(sampler(rng, n_local)) if n_local else 0
        if whole is None and not cands.open.any():
            break
        if observe is not None:
            observe(StepState(archive, cands.archs, cands.latency, cands.open.copy(), copy.deepcopy(rng),
                              copy.deepcopy(finger_rng) if model in FINGERPRINT_MODELS else None))
        if model == "additive":
            post = fit_linear_posterior(space.one_hot(archive.choices()), archive.miou(), MIN_SCALE)
            predicted = post.predict(cands.features, post.sample(rng))
            archs, latency, is_open = cands.archs, cands.latency, cands.open
        else:
            post = fit_pair_posterior(archive.choices(), archive.miou(), space.n_choices, MIN_SCALE,
                                      None if fingerprint is None else fingerprint(source(archive.choices())))
            if acquire == "mean":
                weights = post.mean_weights()
            else:
                weights = post.sample(rng) if fingerprint is None else post.sample(rng, finger_rng)
            if whole is not None:
                codes, predicted = whole.contenders(weights, post.offset, post.scale)
                if not len(codes):  # nothing is predicted to add: one open architecture at random
                    zero_steps += 1
                    codes = whole.open_inside()
                    if not len(codes):
                        break
                    predicted = np.zeros(len(codes))
                offered.append(len(codes))
                archs, latency, is_open = whole.archs[codes], whole.latency[codes], np.ones(len(codes), dtype=bool)
            else:
                archs, latency, is_open = cands.archs, cands.latency, cands.open
                if fingerprint is not None and len(cand_fingers) < len(archs):
                    cand_fingers = np.concatenate([cand_fingers, fingerprint(source(archs[len(cand_fingers):]))])
                fingers = None if fingerprint is None else cand_fingers
                predicted = post.predict(archs, weights, fingers)
        gain = hv_gain(predicted, latency, archive, targets, ref, chunk=HV_GAIN_CHUNK)
        gain[~is_open] = -np.inf
        pick = int(rng.choice(np.flatnonzero(gain == gain.max())))
        archive.evaluate(archs[[pick]])
        if whole is None:
            cands.open[pick] = False
    facts = {"pool": len(pool), "init": n_init}
    if grow in ("local", "random"):
        facts["grown"] = added
    if whole is not None:
        facts["space_inside"] = len(whole.inside)
        facts["contenders_mean"] = float(np.mean(offered)) if offered else 0.0
        facts["gaining_mean"] = float(np.mean(whole.n_gaining)) if whole.n_gaining else 0.0
        facts["zero_gain_steps"] = zero_steps
    if acquire != "draw":
        facts["acquire"] = acquire
    if post is not None:
        facts["noise_precision"] = post.beta
        if model != "additive":
            facts["pair_share"] = post.pair_share
        if model in FINGERPRINT_MODELS:
            facts["fingerprint_share"] = post.fingerprint_share
    return facts
