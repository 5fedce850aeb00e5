"""The search methods compared at equal weight-sharing evaluation budgets.

Each method fills one :class:`~linas_lib.search.archive.EvaluationArchive` (its budget is
the method's budget) and is a function ``(setup, archive, rng) -> None``:

* ``random`` -- uniform samples (:func:`~linas_lib.search.samplers.random_sampler`);
* ``alpha`` -- samples from the supernet's architecture distribution
  (:func:`~linas_lib.search.samplers.alpha_guided_sampler`);
* ``uniform_pareto`` -- lighter ops deeper
  (:func:`~linas_lib.search.samplers.uniform_pareto_sampler`);
* ``epr`` -- NSGA-II, one joint multi-target run (:func:`~linas_lib.search.epr.run_epr`);
* ``zero_cost`` -- I3: a large pool scored by the NEAR proxy, pre-filtered on
  proxy x latency (non-dominated ranks per target), a farthest-point diverse subset in the
  multi-target latency space, then weight-sharing evaluation in that order
  (:func:`zero_cost_guided`).

Controls, so that every gain is attributed to its cause (issue 12):

* ``random_feasible`` -- uniform among the LUT-feasible architectures (within the budget of
  at least one target): what the latency pre-filter alone buys;
* ``zero_cost_random_proxy`` -- ``zero_cost`` with NEAR replaced by random scores: the
  pre-filter and the diversity ordering without the proxy;
* ``epr_feasible`` -- NSGA-II with its initial population drawn from the feasible set.

Model-based (last in :data:`METHODS`, whose order names the generator streams of
:func:`~linas_lib.search.experiment.run_all`):

* ``surrogate`` -- Thompson sampling on a Bayesian linear surrogate of WS mIoU over a
  LUT-feasible pool, each step evaluating the architecture whose drawn accuracy adds the most
  headline hypervolume (:func:`~linas_lib.search.surrogate.thompson_search`). It draws from
  ``random_feasible``'s stream, so its first evaluations are that control's first ones.
* ``surrogate_local`` -- ``surrogate`` whose pool also grows by local moves: the LUT-feasible
  single-layer changes of the found front join it before each step;
* ``surrogate_grow`` -- its control: the pool grows by as many uniform LUT-feasible
  architectures instead (more candidates without the locality). Both draw from ``surrogate``'s
  stream: the same pool and first evaluations.
* ``surrogate_pairs`` -- ``surrogate_local`` whose model also has adjacent-layer interactions
  (:class:`~linas_lib.search.surrogate.PairPosterior`); its control is ``surrogate_local``,
  whose stream it shares.
* ``surrogate_fingerprint`` -- ``surrogate_pairs`` whose model also reads each architecture's
  latency fingerprint (:class:`~linas_lib.search.surrogate.LatencyFingerprint`: log LUT latency
  on every target); its control is ``surrogate_pairs``, whose stream it shares.
* ``surrogate_fingerprint_random`` -- its control for the latency information: the same model on
  a fingerprint of random additive cost tables of the same dimension
  (:func:`~linas_lib.search.surrogate.random_cost_tables`);
* ``surrogate_fingerprint_shuffled`` -- a second such control, added after the first's result:
  the real LUTs with each layer's choices relabelled
  (:func:`~linas_lib.search.surrogate.shuffled_latency`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..space import LINAS_SPACE, SearchSpace
from .archive import AccuracyCache, EvaluationArchive, LatencyModel, unique_rows
from .epr import run_epr
from . import surrogate
from .surrogate import thompson_search
from .indicators import pareto_ranks
from .samplers import (
    alpha_guided_sampler,
    farthest_point_indices,
    latency_features,
    layer_choice_costs,
    normalised_latency,
    uniform_pareto_sampler,
)

METHODS = ("random", "alpha", "uniform_pareto", "epr", "zero_cost", "random_feasible", "zero_cost_random_proxy",
           "epr_feasible", "surrogate", "surrogate_local", "surrogate_grow", "surrogate_pairs",
           "surrogate_fingerprint", "surrogate_fingerprint_random", "surrogate_fingerprint_shuffled",
           "surrogate_fingerprint_hinge", "surrogate_fingerprint_space",
           "surrogate_fingerprint_space_mean", "surrogate_fingerprint_mean")  # appended only: a method's index is its random stream
FINGERPRINT_METHODS = ("surrogate_fingerprint", "surrogate_fingerprint_random", "surrogate_fingerprint_shuffled",
                       "surrogate_fingerprint_hinge", "surrogate_fingerprint_space", "surrogate_fingerprint_space_mean",
                       "surrogate_fingerprint_mean")
SURROGATES = ("surrogate", "surrogate_local", "surrogate_grow", "surrogate_pairs") + FINGERPRINT_METHODS


@dataclass
class SearchSetup:
    """Everything a method needs; built once per experiment.

    Attributes:
        space: the search space.
        accuracy: shared weight-sharing accuracy cache.
        latency: latency model (``predict``, ``budgets_ms``, ``target_names``).
        eval_budget: weight-sharing evaluations per method run.
        pop_size: NSGA-II population.
        alpha_probs: ``(L, C)`` supernet architecture probabilities (for ``alpha``).
        proxy: zero-cost scorer ``(n, L) -> (n,)``, higher is better (for ``zero_cost``).
        zero_cost_pool: architectures scored by the proxy per run.
        prefilter_factor: candidates kept after the proxy x latency pre-filter, as a
            multiple of the evaluation budget.
        alpha_uniform_mix: uniform share mixed into the alpha distribution.
        pareto_strength: ``beta`` of the deepest layer of the uniform-Pareto sampler.
        epr_init: initial population sampler of EPR (``random`` or ``uniform_pareto``).
        joint_targets: targets in EPR's joint objectives and the surrogate's HV gain (default:
            all; see :func:`screen_attainable`).
        hv_ref: the HV reference ``(1 - mIoU, latency / budget)`` the experiment scores with
            (the surrogate's acquisition maximises the same hypervolume).
        surrogate_init: random feasible evaluations before the surrogate's first fit.
    """

    space: SearchSpace
    accuracy: AccuracyCache
    latency: LatencyModel
    eval_budget: int
    pop_size: int
    alpha_probs: np.ndarray | None = None
    proxy: Callable[[np.ndarray], np.ndarray] | None = None
    zero_cost_pool: int = 10000
    prefilter_factor: float = 4.0
    alpha_uniform_mix: float = 0.1
    pareto_strength: float = 3.0
    epr_init: str = "random"
    joint_targets: np.ndarray | None = None
    hv_ref: tuple[float, float] = (1.0, 1.0)
    surrogate_init: int = 2

    def new_archive(self) -> EvaluationArchive:
        """An empty archive with this setup's budget."""
        return EvaluationArchive(self.space, self.accuracy, self.latency, self.eval_budget)


def fill_from_sampler(archive: EvaluationArchive, sampler, rng: np.random.Generator, max_rounds: int = 50) -> None:
    """Evaluate fresh samples of ``sampler(rng, n)`` until the budget is spent.

    Stops early (leaving budget unused) only if ``max_rounds`` draws in a row bring nothing
    new, which happens when the sampler's support is nearly exhausted.
    """
    idle = 0
    while archive.remaining > 0 and idle < max_rounds:
        fresh = archive.new_rows(sampler(rng, archive.remaining))[: archive.remaining]
        idle = idle + 1 if len(fresh) == 0 else 0
        if len(fresh):
            archive.evaluate(fresh)


def run_random(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> None:
    """Uniform random search."""
    fill_from_sampler(archive, lambda gen, n: setup.space.sample(gen, n), rng)


def run_alpha(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> None:
    """Samples from the supernet's per-layer choice probabilities."""
    if setup.alpha_probs is None:
        raise ValueError("method 'alpha' needs SearchSetup.alpha_probs (the supernet's joint_probs())")
    probs, mix = setup.alpha_probs, setup.alpha_uniform_mix
    fill_from_sampler(archive, lambda gen, n: alpha_guided_sampler(setup.space, gen, n, probs, mix), rng)


def pareto_sampler(setup: SearchSetup):
    """The uniform-Pareto sampler ``(rng, n)`` of this setup (costs from its latency model)."""
    costs = layer_choice_costs(setup.space, setup.latency)
    return lambda gen, n: uniform_pareto_sampler(setup.space, gen, n, costs, setup.pareto_strength)


def run_uniform_pareto(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> None:
    """Lighter-ops-deeper sampling."""
    fill_from_sampler(archive, pareto_sampler(setup), rng)


def run_epr_method(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> None:
    """NSGA-II, joint multi-target objectives, budgets as constraints."""
    if setup.epr_init not in ("random", "uniform_pareto"):
        raise ValueError(f"epr_init must be 'random' or 'uniform_pareto'; got {setup.epr_init!r}")
    sampler = pareto_sampler(setup) if setup.epr_init == "uniform_pareto" else None
    run_epr(archive, rng, setup.pop_size, target=None, sampler=sampler, joint_targets=setup.joint_targets)


def screen_attainable(space: SearchSpace, latency, rng: np.random.Generator, n: int = 20000) -> np.ndarray:
    """Indices of the targets some architecture can meet (no accuracy evaluation needed).

    Screens ``n`` uniform architectures plus each target's cheapest-choice architecture
    (:func:`~linas_lib.search.samplers.cheapest_guesses`) with the latency model only.
    """
    from .objectives import attainable_targets
    from .samplers import cheapest_guesses

    archs = np.concatenate([space.sample(rng, n), cheapest_guesses(space, latency)])
    return attainable_targets(latency.predict(archs), latency.budgets_ms)


def prefilter(proxy, latency_ms, budgets_ms, n_keep: int) -> np.ndarray:
    """Indices of the best ``n_keep`` candidates on proxy x latency.

    For every target, the candidates within its budget are ranked by pymoo non-dominated
    sorting on (-proxy, latency); a candidate's rank is its best rank over the targets.
    Candidates over every budget are dropped. Ties in rank are broken by the proxy.
    """
    proxy = np.asarray(proxy, dtype=float)
    norm = normalised_latency(latency_ms, budgets_ms)
    best = np.full(len(proxy), np.inf)
    for t in range(norm.shape[1]):
        ok = np.flatnonzero(norm[:, t] <= 1.0)
        if len(ok):
            ranks = pareto_ranks(np.stack([-proxy[ok], norm[ok, t]], axis=1))
            best[ok] = np.minimum(best[ok], ranks)
    order = np.lexsort((-proxy, best))
    order = order[np.isfinite(best[order])]
    return order[:n_keep]


def zero_cost_guided(
    archive: EvaluationArchive, rng: np.random.Generator, proxy, pool_size: int, prefilter_factor: float
) -> dict:
    """I3: proxy-screen a pool, pre-filter, diversify, then weight-sharing-evaluate.

    Returns:
        Facts of the screen: pool size, candidates kept, and the proxy score of every
        evaluated architecture (in evaluation order) for the proxy-vs-mIoU correlation.
    """
    space, latency = archive.space, archive.latency
    pool = unique_rows(space, space.sample(rng, pool_size))
    scores = np.asarray(proxy(pool), dtype=float)
    if scores.shape != (len(pool),) or not np.isfinite(scores).all():
        raise ValueError(f"zero-cost proxy returned shape {scores.shape} or non-finite scores")
    lat = np.asarray(latency.predict(pool), dtype=float)
    keep = prefilter(scores, lat, latency.budgets_ms, max(int(prefilter_factor * archive.budget), 1))
    n_eval = min(archive.remaining, len(keep))
    start = int(np.argmax(scores[keep])) if len(keep) else 0
    order = keep[farthest_point_indices(latency_features(lat[keep], latency.budgets_ms), n_eval, start)]
    archive.evaluate(pool[order])
    return {"pool": len(pool), "candidates": len(keep), "proxy": scores[order].tolist()}


def run_zero_cost(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """Zero-cost guided sampling (I3); tops up with uniform samples if the screen ran short."""
    if setup.proxy is None:
        raise ValueError("method 'zero_cost' needs SearchSetup.proxy (a zero-cost scorer)")
    facts = zero_cost_guided(archive, rng, setup.proxy, setup.zero_cost_pool, setup.prefilter_factor)
    facts["topped_up"] = archive.remaining
    run_random(setup, archive, rng)
    return facts


def feasible_sampler(setup: SearchSetup, chunk: int = 4096, max_draws: int = 1 << 22):
    """Sampler ``(rng, n)`` of uniform architectures within the budget of at least one target.

    Rejection sampling in chunks with the latency model alone.

    Raises:
        ValueError: no feasible architecture within ``max_draws`` draws.
    """
    budgets = np.asarray(setup.latency.budgets_ms, dtype=float)

    def sample(gen: np.random.Generator, n: int) -> np.ndarray:
        found, drawn = [], 0
        while sum(len(f) for f in found) < n:
            if drawn >= max_draws:
                raise ValueError(f"no {n} LUT-feasible architectures among {drawn} uniform draws")
            archs = setup.space.sample(gen, chunk)
            drawn += chunk
            feasible = (np.asarray(setup.latency.predict(archs), dtype=float) <= budgets).any(axis=1)
            found.append(archs[feasible])
        return np.concatenate(found)[:n]

    return sample


def run_random_feasible(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> None:
    """Control: uniform random among the LUT-feasible architectures (the pre-filter alone)."""
    fill_from_sampler(archive, feasible_sampler(setup), rng)


def run_zero_cost_random_proxy(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """Control: ``zero_cost`` with the proxy replaced by random scores (pre-filter and diversity only)."""
    scores_rng = rng.spawn(1)[0]  # leaves rng's draws as zero_cost's: the same seed, the same pool
    random_proxy = lambda pool: scores_rng.random(len(pool))  # noqa: E731
    facts = zero_cost_guided(archive, rng, random_proxy, setup.zero_cost_pool, setup.prefilter_factor)
    facts["topped_up"] = archive.remaining
    run_random(setup, archive, rng)
    return facts


def run_epr_feasible(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> None:
    """Control: NSGA-II whose initial population is drawn from the LUT-feasible architectures."""
    run_epr(archive, rng, setup.pop_size, target=None, sampler=feasible_sampler(setup),
            joint_targets=setup.joint_targets)


def run_surrogate(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator,
                  grow: str = "none", model: str = "additive", observe=None, acquire: str = "draw") -> dict:
    """Model-based: Thompson sampling over ``zero_cost_pool`` LUT-feasible architectures (a pool
    that grows as ``grow`` says, see :func:`~linas_lib.search.surrogate.thompson_search`); tops
    up with feasible samples if the pool ran out before the budget; ``model`` names the
    surrogate (additive, or with adjacent-layer pairs); ``observe`` and ``acquire`` are
    thompson_search's."""
    sampler = feasible_sampler(setup)
    pool = surrogate_pool(setup, rng, sampler)
    targets = np.arange(len(setup.latency.budgets_ms)) if setup.joint_targets is None else setup.joint_targets
    facts = thompson_search(archive, rng, pool, targets, setup.hv_ref, setup.surrogate_init, grow, sampler, model,
                            observe, acquire)
    facts["topped_up"] = archive.remaining
    fill_from_sampler(archive, sampler, rng)
    return facts


def surrogate_pool(setup: SearchSetup, rng: np.random.Generator, sampler=None) -> np.ndarray:
    """A surrogate run's first candidate pool: ``zero_cost_pool`` LUT-feasible architectures, the
    first draws of the run's generator."""
    sampler = sampler or feasible_sampler(setup)
    return unique_rows(setup.space, sampler(rng, setup.zero_cost_pool))


def run_surrogate_local(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """``surrogate`` with local moves around the found front."""
    return run_surrogate(setup, archive, rng, grow="local")


def run_surrogate_grow(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """Control of ``surrogate_local``: the pool grows by as many uniform feasible architectures."""
    return run_surrogate(setup, archive, rng, grow="random")


def run_surrogate_pairs(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator,
                        observe=None) -> dict:
    """``surrogate_local`` with adjacent-layer interactions in the model."""
    return run_surrogate(setup, archive, rng, grow="local", model="pairs", observe=observe)


def run_surrogate_fingerprint(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator,
                              observe=None) -> dict:
    """``surrogate_pairs`` whose model also reads the latency fingerprint."""
    return run_surrogate(setup, archive, rng, grow="local", model="fingerprint", observe=observe)


def run_surrogate_fingerprint_random(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """Control of ``surrogate_fingerprint``: a fingerprint of random additive cost tables."""
    return run_surrogate(setup, archive, rng, grow="local", model="fingerprint_random")


def run_surrogate_fingerprint_shuffled(setup: SearchSetup, archive: EvaluationArchive,
                                       rng: np.random.Generator) -> dict:
    """Second control of ``surrogate_fingerprint``: the real LUTs with each layer's choices relabelled."""
    return run_surrogate(setup, archive, rng, grow="local", model="fingerprint_shuffled")


def run_surrogate_fingerprint_hinge(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """``surrogate_fingerprint`` whose latency is floored at each target's budget (flat inside every box)."""
    return run_surrogate(setup, archive, rng, grow="local", model="fingerprint_hinge")


def method_settings(setup: SearchSetup, method: str) -> dict:
    """What a method's runs depend on beyond the search folder's key
    (:func:`linas_lib.search.report.run_folder`): recorded with each cached run, which is redone
    when they change. The surrogate's acquisition reads the HV reference, set from settings
    kept out of that key (``search.hv_ref_*`` change the scoring, not the other methods' runs)."""
    if method not in SURROGATES:
        return {}
    settings = {"hv_ref": [float(v) for v in setup.hv_ref], "surrogate_init": int(setup.surrogate_init)}
    if method in FINGERPRINT_METHODS:
        settings["fingerprint_shares"] = [float(v) for v in surrogate.FINGERPRINT_SHARES]
    return settings


def run_surrogate_fingerprint_space(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """``surrogate_fingerprint`` whose steps choose among the whole space, not its pool (the same
    first evaluations, fingerprint standardisation and draws: only the candidates differ)."""
    return run_surrogate(setup, archive, rng, grow="space", model="fingerprint")


def run_surrogate_fingerprint_space_mean(setup: SearchSetup, archive: EvaluationArchive,
                                         rng: np.random.Generator) -> dict:
    """``surrogate_fingerprint_space`` whose steps act on the posterior mean instead of a draw
    (greedy; the same first evaluations, candidates and fits: only the weights a step predicts
    with differ)."""
    return run_surrogate(setup, archive, rng, grow="space", model="fingerprint", acquire="mean")


def run_surrogate_fingerprint_mean(setup: SearchSetup, archive: EvaluationArchive, rng: np.random.Generator) -> dict:
    """``surrogate_fingerprint`` whose steps act on the posterior mean instead of a draw (the
    pool's counterpart of ``surrogate_fingerprint_space_mean``)."""
    return run_surrogate(setup, archive, rng, grow="local", model="fingerprint", acquire="mean")


RUNNERS = {
    "random": run_random,
    "alpha": run_alpha,
    "uniform_pareto": run_uniform_pareto,
    "epr": run_epr_method,
    "zero_cost": run_zero_cost,
    "random_feasible": run_random_feasible,
    "zero_cost_random_proxy": run_zero_cost_random_proxy,
    "epr_feasible": run_epr_feasible,
    "surrogate": run_surrogate,
    "surrogate_local": run_surrogate_local,
    "surrogate_grow": run_surrogate_grow,
    "surrogate_pairs": run_surrogate_pairs,
    "surrogate_fingerprint": run_surrogate_fingerprint,
    "surrogate_fingerprint_random": run_surrogate_fingerprint_random,
    "surrogate_fingerprint_shuffled": run_surrogate_fingerprint_shuffled,
    "surrogate_fingerprint_hinge": run_surrogate_fingerprint_hinge,
    "surrogate_fingerprint_space": run_surrogate_fingerprint_space,
    "surrogate_fingerprint_space_mean": run_surrogate_fingerprint_space_mean,
    "surrogate_fingerprint_mean": run_surrogate_fingerprint_mean,
}


def check_method_names(names, where: str = "") -> None:
    """Refuse a name that is not one of :data:`METHODS`.

    Raises:
        ValueError: ``where`` (e.g. the profile field) and the first unknown name.
    """
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"{where}unknown search method {unknown[0]!r}; expected one of {', '.join(METHODS)}")


OBSERVABLE = ("surrogate_pairs", "surrogate_fingerprint")  # runners that pass thompson_search's observe hook on


def run_method(setup: SearchSetup, method: str, rng: np.random.Generator,
               observe=None) -> tuple[EvaluationArchive, dict]:
    """Run one method to its budget (``observe``: thompson_search's hook, for :data:`OBSERVABLE` methods).

    Returns:
        The filled archive and method-specific facts (empty for most methods).

    Raises:
        ValueError: unknown method or missing inputs for it, or ``observe`` for a method that has no hook.
    """
    check_method_names([method])
    archive = setup.new_archive()
    if observe is None:
        facts = RUNNERS[method](setup, archive, rng)
    elif method in OBSERVABLE:
        facts = RUNNERS[method](setup, archive, rng, observe=observe)
    else:
        raise ValueError(f"method {method!r} has no observe hook (those that do: {OBSERVABLE})")
    return archive, facts or {}


ATTAIN_STREAM = 0xA77  # EPR's attainable-target screen


def profile_setup(profile, accuracy: AccuracyCache, latency, alpha_probs, proxy, hv_ref_miou_loss: float,
                  seed: int) -> SearchSetup:
    """The :class:`SearchSetup` of a profile around oracle-derived inputs: a trained supernet's
    (:func:`linas_lib.search.report.build_setup`) or a search record's
    (:func:`linas_lib.search.records.replay_setup`).

    Args:
        profile: the profile (its ``search`` section).
        accuracy: the WS accuracy cache.
        latency: the latency model.
        alpha_probs: ``(L, C)`` the supernet's architecture probabilities.
        proxy: the zero-cost scorer.
        hv_ref_miou_loss: the HV reference's ``1 - mIoU``.
        seed: the notebook seed (EPR's attainable targets).
    """
    cfg = profile.search
    return SearchSetup(
        space=LINAS_SPACE, accuracy=accuracy, latency=latency, eval_budget=cfg.eval_budget, pop_size=cfg.pop_size,
        alpha_probs=alpha_probs, proxy=proxy, zero_cost_pool=cfg.zero_cost_pool,
        prefilter_factor=cfg.prefilter_factor, alpha_uniform_mix=cfg.alpha_uniform_mix,
        pareto_strength=cfg.pareto_strength, epr_init=cfg.epr_init,
        joint_targets=screen_attainable(LINAS_SPACE, latency, np.random.default_rng([seed, ATTAIN_STREAM])),
        hv_ref=(hv_ref_miou_loss, cfg.hv_ref_latency),
    )
