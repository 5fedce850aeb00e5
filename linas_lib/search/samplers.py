"""Architecture samplers: each is ``(space, rng, n, ...) -> (n, L)`` int64 choices.

* :func:`random_sampler` -- uniform over the space.
* :func:`alpha_guided_sampler` -- each layer drawn independently from the supernet's
  architecture distribution (the ``(L, C)`` joint op x width probabilities derived from the
  DARTS alphas), optionally mixed with the uniform distribution.
* :func:`uniform_pareto_sampler` -- the original LINAS "uniform Pareto" idea: lighter ops in
  deeper layers. Each layer ``l`` draws choice ``c`` with probability
  ``p_l(c) ~ exp(-beta_l * cost_l(c))``, where ``cost_l`` is the per-choice latency cost
  of :func:`layer_choice_costs` scaled to [0, 1] within the layer and
  ``beta_l = strength * l / (L - 1)`` grows with depth (layer 0 uniform, last layer most
  biased towards cheap choices). Deeper layers run at higher resolution, so choosing their
  cheap ops moves an architecture furthest down the latency axis.
* :func:`farthest_point_sampler` -- a uniform pool, then a farthest-point (max-min distance)
  subset in the multi-target latency space, each target's latency divided by its budget and
  then min-max scaled over the pool, so every target weighs the same.

Samplers may return repeats (as independent draws do); searchers remove them against their
:class:`~linas_lib.search.archive.EvaluationArchive`.
"""

from __future__ import annotations

import numpy as np

from ..space import SearchSpace


def random_sampler(space: SearchSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` architectures drawn uniformly, shape ``(n, L)``."""
    return space.sample(rng, int(n))


def check_layer_probs(space: SearchSpace, probs) -> np.ndarray:
    """Validate per-layer choice probabilities ``(L, C)`` and renormalise each row.

    Raises:
        ValueError: wrong shape, negative or non-finite entries, or an all-zero row.
    """
    arr = np.asarray(probs, dtype=float)
    if arr.shape != (space.n_layers, space.n_choices):
        raise ValueError(f"layer probabilities must have shape ({space.n_layers}, {space.n_choices}); got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("layer probabilities must be finite and non-negative")
    sums = arr.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise ValueError("every layer needs at least one choice with positive probability")
    return arr / sums


def sample_from_layer_probs(space: SearchSpace, rng: np.random.Generator, n: int, probs) -> np.ndarray:
    """``n`` architectures, layer ``l`` drawn independently from ``probs[l]``."""
    probs = check_layer_probs(space, probs)
    cols = [rng.choice(space.n_choices, size=int(n), p=probs[layer]) for layer in range(space.n_layers)]
    return np.stack(cols, axis=1).astype(np.int64).reshape(int(n), space.n_layers)


def alpha_guided_sampler(
    space: SearchSpace, rng: np.random.Generator, n: int, probs, uniform_mix: float = 0.0
) -> np.ndarray:
    """Architectures drawn from the supernet's per-layer choice probabilities.

    Args:
        space: the search space.
        rng: random generator.
        n: number of architectures.
        probs: ``(L, C)`` probabilities (e.g. ``TrainedSupernet.joint_probs()``).
        uniform_mix: share ``eps`` of the uniform distribution mixed in,
            ``(1 - eps) * probs + eps / C`` -- keeps a peaked alpha distribution from
            proposing the same few architectures over and over.

    Raises:
        ValueError: bad ``probs`` or ``uniform_mix`` outside [0, 1].
    """
    if not 0.0 <= uniform_mix <= 1.0:
        raise ValueError(f"uniform_mix must lie in [0, 1]; got {uniform_mix}")
    mixed = (1.0 - uniform_mix) * check_layer_probs(space, probs) + uniform_mix / space.n_choices
    return sample_from_layer_probs(space, rng, n, mixed)


def layer_choice_costs(space: SearchSpace, latency, target: int | None = None) -> np.ndarray:
    """Latency cost of each (layer, choice), shape ``(L, C)``, from a latency model.

    ``cost[l, c]`` is the latency of the architecture with every layer set to ``j`` except
    layer ``l`` set to ``c``, averaged over the ``C`` contexts ``j``, each target's latency
    divided by its budget and the targets averaged (or only ``target``). For an additive
    (LUT) model this is the layer's own LUT cost plus a constant per layer; for a model with
    interaction terms it averages them over the contexts. Deterministic (no sampling).
    """
    budgets = np.asarray(latency.budgets_ms, dtype=float)
    L, C = space.n_layers, space.n_choices
    archs = np.repeat(np.arange(C)[:, None], L, axis=1)  # context j: all layers j
    rows = []
    for layer in range(L):
        for choice in range(C):
            variant = archs.copy()
            variant[:, layer] = choice
            rows.append(variant)
    lat = np.asarray(latency.predict(np.concatenate(rows)), dtype=float) / budgets
    lat = lat.mean(axis=1) if target is None else lat[:, target]
    return lat.reshape(L, C, C).mean(axis=2)


def cheapest_guesses(space: SearchSpace, latency) -> np.ndarray:
    """Per target the fastest architecture, ``(T, L)``.

    A latency model that knows its own optimum (``fastest()``, as
    :class:`~linas_lib.latency.predict.LatencyModel` does, exactly) is asked; for any other
    model, the per-layer cheapest choice of :func:`layer_choice_costs` (exact for additive
    models, close with interactions).
    """
    if hasattr(latency, "fastest"):
        return np.asarray(latency.fastest()[0], dtype=np.int64)
    n_targets = len(latency.budgets_ms)
    return np.stack([layer_choice_costs(space, latency, t).argmin(axis=1) for t in range(n_targets)]).astype(np.int64)


def uniform_pareto_probs(costs, strength: float = 3.0) -> np.ndarray:
    """Per-layer probabilities of :func:`uniform_pareto_sampler` from ``(L, C)`` costs."""
    costs = np.asarray(costs, dtype=float)
    if costs.ndim != 2 or not np.isfinite(costs).all():
        raise ValueError(f"costs must be a finite (L, C) array; got shape {costs.shape}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0; got {strength}")
    lo, hi = costs.min(axis=1, keepdims=True), costs.max(axis=1, keepdims=True)
    scaled = (costs - lo) / np.where(hi > lo, hi - lo, 1.0)
    depth = np.arange(costs.shape[0]) / max(costs.shape[0] - 1, 1)
    logits = -strength * depth[:, None] * scaled
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def uniform_pareto_sampler(
    space: SearchSpace, rng: np.random.Generator, n: int, costs, strength: float = 3.0
) -> np.ndarray:
    """Architectures with a depth-growing preference for cheap choices (see module doc).

    Args:
        space: the search space.
        rng: random generator.
        n: number of architectures.
        costs: ``(L, C)`` per-choice costs, e.g. :func:`layer_choice_costs`.
        strength: ``beta`` of the deepest layer (0 = uniform sampling).
    """
    return sample_from_layer_probs(space, rng, n, uniform_pareto_probs(costs, strength))


def normalised_latency(latency_ms, budgets_ms) -> np.ndarray:
    """Latency divided by each target's budget, ``(n, T)``; 1.0 = exactly on budget."""
    lat = np.asarray(latency_ms, dtype=float)
    budgets = np.asarray(budgets_ms, dtype=float)
    if lat.ndim != 2 or lat.shape[1] != budgets.size:
        raise ValueError(f"latency of shape {lat.shape} does not match {budgets.size} budgets")
    if (budgets <= 0).any():
        raise ValueError(f"budgets must be positive; got {budgets.tolist()}")
    return lat / budgets


def farthest_point_indices(points, n: int, start: int = 0) -> np.ndarray:
    """Greedy farthest-point subset: each next point maximises its distance to those chosen.

    Args:
        points: ``(m, d)`` coordinates.
        n: subset size (at most ``m``).
        start: index of the first point.

    Returns:
        ``(n,)`` distinct indices in selection order.

    Raises:
        ValueError: ``n`` larger than the number of points, or a bad ``start``.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or not np.isfinite(pts).all():
        raise ValueError(f"points must be a finite (m, d) array; got shape {pts.shape}")
    if not 0 <= n <= len(pts):
        raise ValueError(f"cannot choose {n} of {len(pts)} points")
    if n and not 0 <= start < len(pts):
        raise ValueError(f"start index {start} out of range 0..{len(pts) - 1}")
    chosen = np.empty(n, dtype=np.int64)
    dist = np.full(len(pts), np.inf)
    current = start
    for k in range(n):
        chosen[k] = current
        dist = np.minimum(dist, np.linalg.norm(pts - pts[current], axis=1))
        dist[chosen[: k + 1]] = -1.0
        current = int(np.argmax(dist))
    return chosen


def latency_features(latency_ms, budgets_ms) -> np.ndarray:
    """Budget-normalised latencies min-max scaled per target over the given set, ``(n, T)``."""
    norm = normalised_latency(latency_ms, budgets_ms)
    lo, hi = norm.min(axis=0), norm.max(axis=0)
    return (norm - lo) / np.where(hi > lo, hi - lo, 1.0)


def farthest_point_sampler(
    space: SearchSpace, rng: np.random.Generator, n: int, latency, pool_size: int = 2000
) -> np.ndarray:
    """A diverse set: farthest-point subset of a uniform pool in multi-target latency space.

    Args:
        space: the search space.
        rng: random generator (pool and first point).
        n: number of architectures.
        latency: latency model (``predict``, ``budgets_ms``).
        pool_size: uniform pool drawn first (repeats removed; must keep at least ``n``).
    """
    from .archive import unique_rows

    pool = unique_rows(space, space.sample(rng, max(int(pool_size), int(n))))
    if len(pool) < n:
        raise ValueError(f"pool of {len(pool)} distinct architectures is smaller than n={n}")
    feats = latency_features(latency.predict(pool), latency.budgets_ms)
    return pool[farthest_point_indices(feats, int(n), start=int(rng.integers(len(pool))))]
