"""What notebook ``05_pareto`` computes, as a few calls: the search experiment end to end.

1. :func:`search_inputs` -- the run's trained supernet and the latency model it was searched
   with (every target of the profile, I4 interaction LUTs).
2. :func:`near_proxy` -- the additive NEAR table (I3) on one small data batch, timed, with
   the Kendall tau between the additive and the exact proxy on a random sample.
3. :func:`build_setup` + :func:`run_methods` -- every method x seed at the same weight-sharing
   budget, checkpointed per run in ``cache_dir("search", ...)``; weight-sharing accuracies are
   shared across runs in a disk cache (deterministic), each run still counts its own.
4. :func:`analyse` -- HV with bootstrap CIs and the paired difference to random, IGD, front
   size per method, anytime HV curves with CIs, evaluations to random's median final HV
   (Kaplan-Meier, censored runs kept censored). The HV reference is the all-background
   accuracy and the budget (:func:`hv_reference_miou_loss`).
5. :func:`multi_fidelity`, :func:`chosen_architectures`, :func:`measure_chosen` -- the
   top-k re-ranking, the chosen network per target and its measured 100-image time (C3).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from ..keys import atomic_write_json, content_hash, load_cache_json
from ..paths import cache_dir
from ..space import LINAS_SPACE, arch_string, encode
from . import experiment as E
from .archive import AccuracyCache
from .fidelity import kendall_tau, rerank_top_k
from .methods import SearchSetup, check_method_names, profile_setup
from .zero_cost import NearProxy, additive_scores, exact_scores, near_table

NEAR_STREAM, CHECK_STREAM, FIDELITY_STREAM = 0x4EA, 0xC4E, 0xF1D
CLAIRVOYANT_STREAM = 0xC1A  # ties of the clairvoyant greedy bound
CHOICE_STREAM = 0xC40  # fine-tunes of the multi-fidelity choice (one generator per architecture)
# bump when a fine-tune's score changes for the same recipe (train_decoder, evaluate_decoder, the
# WS split): cached multi-fidelity choice scores are then recomputed
CHOICE_SCHEMA = 1
REFERENCE_METHOD = "random"  # what hv_diff_random and evals_to_target compare every method with
RELATIVE_TO_RANDOM = {  # summary key -> method_table column, for every method but REFERENCE_METHOD
    "hv_diff_random": "hv_diff_random_mean", "hv_diff_random_ci95_low": "hv_diff_random_ci95_low",
    "hv_diff_random_ci95_high": "hv_diff_random_ci95_high", "evals_to_target": "evals_to_target_fraction_of_random",
    "evals_to_target_ci95_low": "evals_to_target_fraction_ci95_low",
    "evals_to_target_ci95_high": "evals_to_target_fraction_ci95_high",
    "evals_to_target_ci_undefined_share": "evals_to_target_ci_undefined_share"}


def check_methods(profile) -> None:
    """Refuse unknown ``search.methods``, long methods that are not compared, and search settings
    that would fail only after every run (no method or seed, no random runs for the efficiency
    target, design seeds that are not compared ones), before any training.

    Raises:
        ValueError: naming the profile and what is wrong.
    """
    cfg, where = profile.search, f"profile {profile.name!r}: search."
    long_methods = cfg.long_methods if cfg.long_evals > 0 else ()  # long_evals 0: the study is off
    check_method_names(cfg.methods, f"{where}methods: ")
    check_method_names(long_methods, f"{where}long_methods: ")
    check_method_names(cfg.confirm_methods, f"{where}confirm_methods: ")
    missing = [m for m in long_methods if m not in cfg.methods]
    if missing:
        raise ValueError(f"{where}long_methods {missing} are not in search.methods: a long run extends a compared one")
    if not cfg.methods or not cfg.seeds:
        raise ValueError(f"{where}methods and search.seeds must both be non-empty (got {len(cfg.methods)} methods "
                         f"and {len(cfg.seeds)} seeds): there is nothing to compare")
    if not cfg.target_seeds and REFERENCE_METHOD not in cfg.methods:
        raise ValueError(f"{where}target_seeds is empty and {REFERENCE_METHOD!r} is not in search.methods: the "
                         f"efficiency target is {REFERENCE_METHOD} search's median final HV, so one of them must run it")
    stray = sorted(set(cfg.design_seeds) - set(cfg.seeds))
    if stray:
        raise ValueError(f"{where}design_seeds {stray} are not in search.seeds (a design seed is a compared seed)")


def search_inputs(profile, seed: int):
    """``(trained supernet, latency model)`` of the run (cached stages; built if absent), once
    the profile's methods are known ones (:func:`check_methods`)."""
    from ..supernet.train import search_latency_model, trained_supernet

    check_methods(profile)
    return trained_supernet(profile, seed), search_latency_model(profile)


def near_proxy(supernet, cfg, seed: int) -> tuple[NearProxy, dict]:
    """The additive NEAR proxy of a trained supernet, and facts about it.

    Args:
        supernet: a ``TrainedSupernet`` (``model``, ``feature_batch``).
        cfg: the profile's ``search`` section (``near_images``, ``near_contexts``,
            ``near_check_archs``).
        seed: run seed (context prefixes and the check sample).

    Returns:
        The proxy and ``{seconds, n_images, n_contexts, tau_additive_exact, n_check}``.
    """
    taps = supernet.feature_batch(cfg.near_images)
    start = time.perf_counter()
    table = near_table(supernet.model, taps, np.random.default_rng([seed, NEAR_STREAM]), cfg.near_contexts)
    seconds = time.perf_counter() - start
    facts = {"seconds": seconds, "n_images": int(taps[0].shape[0]), "n_contexts": cfg.near_contexts,
             "n_check": int(cfg.near_check_archs), "tau_additive_exact": float("nan")}
    if cfg.near_check_archs >= 2:
        check = LINAS_SPACE.sample(np.random.default_rng([seed, CHECK_STREAM]), cfg.near_check_archs)
        facts["tau_additive_exact"] = kendall_tau(additive_scores(table, check),
                                                  exact_scores(supernet.model, taps, check))
    return NearProxy(table), facts


def run_folder(profile, supernet, latency) -> str:
    """Cache key of this experiment's runs: supernet (its key and its weights), latency model,
    search settings.

    The weights enter by :attr:`~linas_lib.supernet.train.TrainedSupernet.weights_digest`: a
    supernet of the same key trained again on another machine has other weights, and runs
    (and WS accuracies) cached on the first must not be read as the second's.

    The ``search`` settings enter by :func:`~linas_lib.keys.key_fields`: every field except
    those declared ``metadata={"key": False}`` in :class:`~linas_lib.config.SearchConfig`
    (settings of the analysis after the runs, which the cached runs do not depend on).
    """
    from ..keys import key_fields

    return content_hash({"schema": E.RUNS_SCHEMA, "supernet": supernet.key, "weights": supernet.weights_digest,
                        "search": key_fields(profile.search), "targets": list(latency.target_names), "budgets": np.asarray(latency.budgets_ms).tolist(),
                        "variant": getattr(latency, "variant", "")}, length=12)


def runs_dir(profile, supernet, latency, *sub: str):
    """The search's cache folder of this supernet and latency model (:func:`run_folder`), created."""
    return cache_dir("search", f"{profile.name}_{run_folder(profile, supernet, latency)}", *sub)


def build_setup(profile, supernet, latency, proxy, seed: int) -> SearchSetup:
    """The shared :class:`SearchSetup` of the profile (WS accuracies cached on disk).

    EPR's joint objectives use the targets some architecture can meet
    (:func:`~linas_lib.search.methods.screen_attainable`, latency model only). The HV
    reference (:func:`hv_reference_miou_loss`) is fixed here, once: the experiment scores with
    it and the surrogate's acquisition maximises the same hypervolume.
    """
    accuracy = AccuracyCache(supernet.evaluator, runs_dir(profile, supernet, latency) / "ws_miou.json")
    return profile_setup(profile, accuracy, latency, supernet.joint_probs(), proxy,
                         hv_reference_miou_loss(profile.search, supernet.evaluator), seed)


def run_methods(profile, setup: SearchSetup, supernet) -> list[E.MethodRun]:
    """Every method x seed of the profile, resuming from checkpoints."""
    folder = runs_dir(profile, supernet, setup.latency)
    return E.run_all(setup, profile.search.methods, profile.search.seeds, folder, progress=print)


def calibration_runs(profile, setup: SearchSetup, supernet) -> list[E.MethodRun]:
    """Random search with ``search.target_seeds``: the runs that set the efficiency target (none: [])."""
    overlap = set(profile.search.target_seeds) & set(profile.search.seeds)
    if overlap:
        raise ValueError(f"search.target_seeds {sorted(overlap)} are also search.seeds: the target must come "
                         "from runs that are not compared")
    folder = runs_dir(profile, supernet, setup.latency)
    return E.run_all(setup, ["random"], profile.search.target_seeds, folder, progress=print)


def oracle_runs(profile, setup: SearchSetup, supernet) -> list[E.MethodRun]:
    """The oracle's long EPR run (``search.oracle_evals`` evaluations; none: [])."""
    cfg = profile.search
    if cfg.oracle_evals <= 0:
        return []
    if cfg.oracle_seed in set(cfg.seeds) | set(cfg.target_seeds):
        raise ValueError(f"search.oracle_seed {cfg.oracle_seed} is also a search or target seed")
    folder = runs_dir(profile, supernet, setup.latency, f"oracle_{cfg.oracle_evals}")
    long_setup = dataclasses.replace(setup, eval_budget=cfg.oracle_evals)
    return E.run_all(long_setup, ["epr"], [cfg.oracle_seed], folder, progress=print)


def long_runs(profile, setup: SearchSetup, supernet) -> list[E.MethodRun]:
    """``search.long_methods`` run again with ``search.long_evals`` evaluations on the compared
    seeds (none: []); checkpointed per run like the compared ones, in a folder of their own.

    Raises:
        ValueError: ``long_evals`` not above the method budget, or a long method that is not compared.
    """
    cfg = profile.search
    if cfg.long_evals <= 0 or not cfg.long_methods:
        return []
    if cfg.long_evals <= cfg.eval_budget:
        raise ValueError(f"search.long_evals ({cfg.long_evals}) must exceed search.eval_budget ({cfg.eval_budget})")
    check_methods(profile)
    folder = runs_dir(profile, supernet, setup.latency, f"long_{cfg.long_evals}")
    long_setup = dataclasses.replace(setup, eval_budget=cfg.long_evals)
    return E.run_all(long_setup, cfg.long_methods, cfg.seeds, folder, progress=print)


def long_budget(profile, setup: SearchSetup, supernet, exp: E.ParetoExperiment, runs: list[E.MethodRun],
                result: dict) -> dict:
    """The long-budget study (:func:`long_runs` read by :func:`~linas_lib.search.experiment.long_budget`
    against ``result``'s reference HV, and against the best known front: the reference's points
    with every long run's); empty when the profile asks for none."""
    long = long_runs(profile, setup, supernet)
    best_known = E.reference_hv(exp, runs + oracle_runs(profile, setup, supernet) + long) if long else None
    return E.long_budget(exp, long, runs, result["reference_hv"], profile.search.eval_budget,
                         design_seeds=profile.search.design_seeds, best_known=best_known)


def confirm_study(profile, setup: SearchSetup, supernet, exp: E.ParetoExperiment, result: dict) -> dict:
    """The confirmatory study: ``search.confirm_methods`` at the protocol's budget on
    ``search.confirm_seeds`` (``"confirm"``) and, beside it, on the compared seeds its design
    was looked at on (``"design"``), cached with the compared runs; each read by
    :func:`~linas_lib.search.experiment.confirm_study` against ``result``'s fixed reference HV.

    Returns:
        ``{methods, effects, by_target}`` rows tagged ``seeds``: ``confirm`` or ``design``; empty
        when the profile asks for none.
    """
    cfg = profile.search
    if not (cfg.confirm_methods and cfg.confirm_seeds):
        return {}
    folder, study = runs_dir(profile, supernet, setup.latency), {"methods": [], "effects": [], "by_target": []}
    for tag, seeds in (("confirm", cfg.confirm_seeds), ("design", cfg.seeds)):
        runs = E.run_all(setup, cfg.confirm_methods, seeds, folder, progress=print)
        part = E.confirm_study(exp, runs, result["reference_hv"], profile.ranking.bootstrap_resamples)
        for key in study:
            study[key] += [{"seeds": tag, **row} for row in part[key]]
    return study


def confirm_summary(study: dict) -> dict:
    """Flat figures of :func:`confirm_study` on the fresh seeds (``confirm.``) and on the design
    seeds (``confirm_design.``): ``<prefix>hv_frac_reference.<method>`` with its t CI's ends
    (``<prefix>hv_frac_reference_ci95_low`` / ``_high``), ``<prefix>n_seeds.<method>``, and per cause
    ``<prefix>effect.<cause>`` (paired difference of the shares) with ``<prefix>effect_ci95_low`` /
    ``_high`` (t) and ``<prefix>effect_sd``."""
    out = {}
    prefixes = {"confirm": "confirm.", "design": "confirm_design."}
    for row in study.get("methods", []):
        m, pre = row["method"], prefixes[row["seeds"]]
        out[f"{pre}hv_frac_reference.{m}"] = row["share_mean"]
        out[f"{pre}hv_frac_reference_ci95_low.{m}"] = row["share_ci95_low"]
        out[f"{pre}hv_frac_reference_ci95_high.{m}"] = row["share_ci95_high"]
        out[f"{pre}n_seeds.{m}"] = float(row["n_seeds"])
    for row in study.get("effects", []):
        e, pre = row["effect"], prefixes[row["seeds"]]
        out[f"{pre}effect.{e}"] = row["diff_mean"]
        out[f"{pre}effect_ci95_low.{e}"] = row["diff_ci95_low"]
        out[f"{pre}effect_ci95_high.{e}"] = row["diff_ci95_high"]
        out[f"{pre}effect_sd.{e}"] = row["diff_sd"]
    return out


def long_summary(result: dict) -> dict:
    """Flat figures of :func:`~linas_lib.search.experiment.long_budget`: ``long.evals``, per
    method ``long.hv_frac_reference.<method>`` (with ``_ci95_low`` / ``_ci95_high``) at the end
    of the long runs, ``long.prefix_share.<method>``, and per level ``long.evals_to_<pct>pct.<method>``
    (Kaplan-Meier median; None: censored) with ``long.censored_share_<pct>pct.<method>``; per
    cause with both arms in the long runs, ``long.effect.<cause>`` (paired difference of the final
    shares of the reference) with ``long.effect_ci95_low`` / ``_high``; with design seeds, the same
    on the other seeds as ``long.hv_frac_reference.<method>_held_out`` and ``long.effect.<cause>_held_out``;
    ``long.best_known_hv`` and ``long.hv_frac_best_known.<method>`` (``_ci95_low`` / ``_high``; with
    design seeds also ``..._held_out``): the final share of the best known front (the reference's
    points with the long runs')."""
    if not result:
        return {}
    out = {"long.evals": result["evals"]}
    if result.get("best_known_hv") is not None:
        out["long.best_known_hv"] = result["best_known_hv"]
        for end, rows in (("", result["final_best_known"]), ("_held_out", result.get("final_best_known_held_out", {}))):
            for m, row in rows.items():
                out[f"long.hv_frac_best_known.{m}{end}"] = row["mean"]
                low, high = row["ci95"]
                out[f"long.hv_frac_best_known_ci95_low.{m}{end}"] = low
                out[f"long.hv_frac_best_known_ci95_high.{m}{end}"] = high
    for m, row in result["final"].items():
        out[f"long.hv_frac_reference.{m}"] = row["mean"]
        out[f"long.hv_frac_reference_ci95_low.{m}"], out[f"long.hv_frac_reference_ci95_high.{m}"] = row["ci95"]
        out[f"long.prefix_share.{m}"] = result["prefix_share"][m]
        for pct, reach in result["reach"][m].items():
            median = reach["km_median"]
            out[f"long.evals_to_{pct}pct.{m}"] = None if math.isnan(median) else median
            out[f"long.censored_share_{pct}pct.{m}"] = reach["censored_share"]
    for m, row in result.get("final_held_out", {}).items():
        out[f"long.hv_frac_reference.{m}_held_out"] = row["mean"]
        out[f"long.hv_frac_reference_ci95_low.{m}_held_out"], out[f"long.hv_frac_reference_ci95_high.{m}_held_out"] = row["ci95"]
    for row in result.get("effects", []):
        out[f"long.effect.{row['effect']}"] = row["diff_mean"]
        out[f"long.effect_ci95_low.{row['effect']}"] = row["diff_ci95_low"]
        out[f"long.effect_ci95_high.{row['effect']}"] = row["diff_ci95_high"]
    return out


def experiment_for(setup: SearchSetup) -> E.ParetoExperiment:
    """The experiment of ``setup``: its HV reference (fixed by :func:`build_setup`) and HV targets.

    The headline HV averages the attainable targets (``setup.joint_targets``): a target no
    architecture can meet would add 0 for every method.
    """
    lat = setup.latency
    return E.ParetoExperiment(lat.target_names, lat.budgets_ms, *setup.hv_ref, hv_targets=setup.joint_targets)


def hv_reference_miou_loss(cfg, evaluator) -> float:
    """The HV reference's ``1 - mIoU``: what predicting all background scores (``search.hv_ref_accuracy:
    background``, so no network gets HV for accuracy it has for free), or ``search.hv_ref_miou_loss`` (``fixed``).
    """
    if cfg.hv_ref_accuracy == "fixed":
        return cfg.hv_ref_miou_loss
    return 1.0 - evaluator.background_scores()["miou"]


def analyse(exp: E.ParetoExperiment, runs: list[E.MethodRun], budget: int, n_resamples: int = 2000,
            calibration: list[E.MethodRun] | None = None, oracle: list[E.MethodRun] | None = None,
            design_seeds=()) -> dict:
    """Tables and headline numbers of the comparison.

    Returns:
        ``{per_run, curves, curve_ci, methods, reference_hv, target_hv, reach, effects}``: per (method,
        seed, target) rows, HV-vs-evaluations rows and their mean with a 95 % CI per method,
        one row per method
        (:func:`~linas_lib.search.experiment.method_table`), the union HV, the efficiency
        target (random search's median final HV) and per method the Kaplan-Meier summary
        of evaluations to it; the effect of each cause against its control
        (:func:`~linas_lib.search.experiment.effect_rows`). ``target_from`` says which runs set
        the target: the ``calibration`` runs of random search when given (else random's own
        runs, which favours every other method). ``reference_hv`` is the HV of every run's
        points together with the ``oracle`` run's (its front alone: ``oracle_hv``), and each
        method row gets ``hv_frac_reference`` = its mean HV / ``reference_hv``. ``clairvoyant``:
        :func:`~linas_lib.search.experiment.clairvoyant_curve` over the same points, up to the
        method budget: what knowing every accuracy would buy (an upper bound on the evaluations the
        efficiency goals need with perfect prior knowledge). With ``design_seeds`` (the seeds
        looked at while a method was designed) each effect is also given on the other seeds.
    """
    E.check_runs(runs)
    per_run = E.run_rows(exp, runs, list(oracle or []))
    effects = E.effect_rows(per_run, n_resamples, design_seeds)
    curve_rows, curves = E.curve_rows(exp, runs)
    level = E.target_level(E.curve_rows(exp, calibration)[1] if calibration else curves)
    reach = E.reach_table(runs, curves, level, budget)
    methods = E.method_table(per_run, reach, n_resamples=n_resamples,
                             evals_ci=E.reach_ratio_cis(runs, curves, level, budget, n_resamples=n_resamples))
    shares = E.feasible_share(exp, runs)
    reference = E.reference_hv(exp, runs + list(oracle or []))
    methods = [{**row, "feasible_share": shares[row["method"]], "hv_frac_reference": row["hv_mean"] / reference}
               for row in methods]
    clairvoyant = E.clairvoyant_curve(exp, runs + list(oracle or []), budget, np.random.default_rng(CLAIRVOYANT_STREAM))
    return {"per_run": per_run, "curves": curve_rows, "curve_ci": E.curve_ci(curve_rows, n_resamples),
            "methods": methods, "target_from": "calibration" if calibration else "random",
            "reference_hv": reference, "reference_from": "runs + oracle" if oracle else "runs",
            "oracle_hv": E.reference_hv(exp, oracle) if oracle else float("nan"),
            "target_hv": level, "reach": reach, "effects": effects,
            "clairvoyant": [{**r, "hv_frac_reference": r["hv"] / reference} for r in clairvoyant]}


def summary(result: dict, near_facts: dict, proxy_tau: float, fidelity_tau: float) -> dict:
    """Flat headline figures for ``summary.json``."""
    out = {"reference_hv": result["reference_hv"], "oracle_hv": result["oracle_hv"], "target_hv": result["target_hv"],
           "near.seconds": near_facts["seconds"],
           "near.tau_additive_exact": near_facts["tau_additive_exact"], "near.tau_proxy_ws_miou": proxy_tau,
           "multifidelity.kendall_tau": fidelity_tau}
    for row in result["methods"]:
        m = row["method"]
        out["n_seeds"] = row["n_seeds"]
        out[f"hv.{m}"] = row["hv_mean"]
        out[f"hv_ci95_low.{m}"], out[f"hv_ci95_high.{m}"] = row["hv_ci95_low"], row["hv_ci95_high"]
        if m != REFERENCE_METHOD:  # random against itself: 0 [0, 0] and 1 [1, 1] by construction
            out.update({f"{key}.{m}": row[column] for key, column in RELATIVE_TO_RANDOM.items()})
        out[f"igd.{m}"] = row["igd_mean"]
        out[f"front_size.{m}"] = row["front_size_mean"]
        out[f"evals_to_target_abs.{m}"] = row["evals_to_target_km_median"]
        out[f"censored_share.{m}"] = row["censored_share"]
        out[f"hv_frac_reference.{m}"] = row["hv_frac_reference"]
        reference = result["reference_hv"]  # the HV CI's ends over the same fixed reference
        out[f"hv_frac_reference_ci95_low.{m}"] = row["hv_ci95_low"] / reference
        out[f"hv_frac_reference_ci95_high.{m}"] = row["hv_ci95_high"] / reference
        out[f"feasible_share.{m}"] = row["feasible_share"]
        out[f"targets_with_front.{m}"] = row["targets_with_front_mean"]
    out.update(clairvoyant_summary(result))
    for row in result.get("effects", []):
        out[f"effect.{row['effect']}"] = row["hv_diff_mean"]
        out[f"effect_ci95_low.{row['effect']}"] = row["hv_diff_ci95_low"]
        out[f"effect_ci95_high.{row['effect']}"] = row["hv_diff_ci95_high"]
    return out


def clairvoyant_summary(result: dict) -> dict:
    """``clairvoyant.evals_to_target`` and ``clairvoyant.evals_to_99pct_reference`` (None: not reached
    within the budget), and ``clairvoyant.hv_frac_reference.k<k>`` at 1, 3, 6 and 10 picks (those
    within the budget)."""
    rows = result.get("clairvoyant", [])
    out = {"clairvoyant.evals_to_target": E.first_reaching(rows, result["target_hv"]),
           "clairvoyant.evals_to_99pct_reference": E.first_reaching(rows, 0.99 * result["reference_hv"])}
    out.update({f"clairvoyant.hv_frac_reference.k{r['k']}": r["hv_frac_reference"] for r in rows
                if r["k"] in (1, 3, 6, 10)})
    return out


def proxy_tau(runs: list[E.MethodRun], proxy) -> float:
    """Kendall tau between the NEAR proxy and WS mIoU over the random runs' distinct architectures.

    Random samples, not the zero-cost runs' evaluations: those were picked by the proxy
    itself, which would narrow its range and bias the tau.
    """
    choices, miou, _ = E.union([r for r in runs if r.method == "random"])
    return kendall_tau(np.asarray(proxy(choices), dtype=float), miou) if len(choices) >= 2 else float("nan")


def multi_fidelity(supernet, runs: list[E.MethodRun], exp: E.ParetoExperiment, cfg, seed: int):
    """Top-k of the joint front of all runs, fine-tuned ``finetune_epochs`` and re-ranked.

    Only architectures within at least one budget are candidates (when there are any).
    """
    choices, miou, lat = E.union(runs)
    F = E.joint_front(exp, miou, lat)
    useful = np.flatnonzero((F[:, 1:] <= exp.ref[1]).any(axis=1))
    if len(useful):
        choices, miou, F = choices[useful], miou[useful], F[useful]
    rng = np.random.default_rng([seed, FIDELITY_STREAM])
    k = min(cfg.finetune_topk, len(choices))
    return rerank_top_k(choices, miou, F, k, lambda c: supernet.finetune_and_evaluate(c, cfg.finetune_epochs, rng))


def chosen_architectures(exp: E.ParetoExperiment, runs: list[E.MethodRun], scopes=None) -> list[dict]:
    """Per target: the evaluated architecture with the best WS mIoU within the budget.

    A target no evaluated architecture meets gets its *fastest* evaluated one instead,
    flagged ``within_budget = False`` (its measured time then shows by how much it misses).
    """
    choices, miou, lat = E.union(runs)
    rows = []
    for t, name in enumerate(exp.target_names):
        ok = np.flatnonzero(lat[:, t] <= exp.budgets_ms[t])
        best = ok[np.argmax(miou[ok])] if len(ok) else int(np.argmin(lat[:, t]))
        rows.append({"target": name, "scope": scopes[t] if scopes else "", "budget_ms": float(exp.budgets_ms[t]),
                     "within_budget": bool(len(ok)), "arch": arch_string(choices[best]),
                     "ws_miou": float(miou[best]), "predicted_ms": float(lat[best, t])})
    return rows


def fidelity_choice(profile, supernet, latency, exp: E.ParetoExperiment, runs: list[E.MethodRun],
                    seed: int) -> tuple[list[dict], list[dict]]:
    """Per target, the SPEC's multi-fidelity choice: the ``search.choice_topk`` evaluated
    architectures with the best WS mIoU within the budget, each fine-tuned from its WS weights for
    ``search.choice_epochs`` epochs (mIoU on the WS split, never the test split), the best
    fine-tuned one chosen. :func:`chosen_architectures` (the WS-only choice) is its control arm.

    Scores come from :class:`FineTuneScores` (one generator per architecture, cached on disk in
    :func:`runs_dir`, whose key carries the supernet's weights) and are shared by the targets.
    Ties go to the better WS rank. With ``search.choice_retest`` every candidate is fine-tuned a
    second time with another generator (``finetuned_miou_retest``; :func:`choice_noise`); the
    choice reads the first fine-tune only. A target no evaluated architecture meets gets the WS
    rule's fallback (its fastest one, ``within_budget`` False, not fine-tuned; ``rule``
    "ws_fallback").

    Raises:
        ValueError: a fine-tune scored a non-finite mIoU (naming the architecture; not cached).

    Returns:
        ``(rows, candidates)``: one :func:`chosen_architectures`-style row per target, ``arch``
        the multi-fidelity choice, with ``rule``, ``arch_ws`` (the WS-only choice),
        ``finetuned_miou`` (the best of the candidates': biased upwards, not an accuracy
        estimate), ``ws_rank`` (1: both rules agree) and ``n_candidates`` (at most
        ``choice_topk``); and one row per (target, candidate). Both empty when
        ``search.choice_topk`` is 0.
    """
    cfg = profile.search
    if cfg.choice_topk <= 0:
        return [], []
    choices, miou, lat = E.union(runs)
    folder = runs_dir(profile, supernet, latency)
    finetuned = FineTuneScores(supernet, cfg.choice_epochs, seed, folder)
    retest = FineTuneScores(supernet, cfg.choice_epochs, seed, folder, replicate=1) if cfg.choice_retest else None

    rows, candidates = [], []
    for t, ws_row in enumerate(chosen_architectures(exp, runs, latency.scopes)):
        ok = np.flatnonzero(lat[:, t] <= exp.budgets_ms[t])
        top = ok[np.argsort(-miou[ok], kind="stable")[:cfg.choice_topk]]
        tuned = [finetuned(choices[i]) for i in top]
        candidates += [{"target": ws_row["target"], "ws_rank": r + 1, "arch": arch_string(choices[i]),
                        "ws_miou": float(miou[i]), "finetuned_miou": v, "predicted_ms": float(lat[i, t]),
                        **({"finetuned_miou_retest": retest(choices[i])} if retest else {})}
                       for r, (i, v) in enumerate(zip(top, tuned))]
        row = {**ws_row, "rule": "multi_fidelity" if len(top) else "ws_fallback", "arch_ws": ws_row["arch"], "ws_rank": 1, "n_candidates": len(top),
               "finetuned_miou": math.nan}
        if len(top):
            best = int(np.argmax(tuned))  # the first maximum: ties go to the better WS rank
            i = top[best]
            row.update({"arch": arch_string(choices[i]), "ws_miou": float(miou[i]), "predicted_ms": float(lat[i, t]),
                        "ws_rank": best + 1, "finetuned_miou": tuned[best]})
        rows.append(row)
    return rows, candidates


def loss_choice(profile, supernet, exp: E.ParetoExperiment, runs: list[E.MethodRun], chosen: list[dict]) -> list[dict]:
    """``chosen`` with a third arm (``search.loss_arm``): per target the evaluated architecture
    with the lowest WS loss within the budget (``arch_ws_loss``), among the same compared runs'
    evaluations as the WS-only choice ``arch_ws``, scored by the same evaluator on the same WS
    split (the training objective, :func:`~linas_lib.losses.segmentation_loss`). Trained and
    compared with ``arch_ws`` like the multi-fidelity arm; the profile's choice ``arch`` is not
    changed. Rows without ``arch_ws`` (WS-only profiles) get it from ``arch``.

    Added columns: ``arch_ws_loss``, ``ws_loss`` (its WS loss), ``ws_loss_miou_rank`` (its rank by
    WS mIoU within the budget; 1: the WS-only choice). The pool's scores are one cached table
    (:meth:`~linas_lib.supernet.train.TrainedSupernet.ws_scores`).

    Raises:
        ValueError: the evaluator's WS mIoU of the pool differs from the one the runs recorded
            (another supernet or split: the loss would not be the same oracle's), a non-finite
            loss (naming the architecture), or rows not one per target in the experiment's order.
    """
    if not profile.search.loss_arm or not chosen:
        return chosen
    choices, miou, lat = E.union(runs)
    budgets = np.asarray(exp.budgets_ms)
    pool = np.flatnonzero((lat <= budgets).any(axis=1))
    scores = supernet.ws_scores(choices[pool])
    loss = np.full(len(choices), np.nan)
    loss[pool] = scores["loss"]
    drift = np.abs(scores["miou"] - miou[pool])
    drift[~np.isfinite(drift)] = np.inf  # a NaN on either side is a mismatch, not a pass
    if drift.max(initial=0.0) > 1e-4:  # float noise across machines, far below another supernet's
        raise ValueError(f"WS mIoU of {arch_string(choices[pool[int(np.argmax(drift))]])} is {drift.max():.3g} "
                         "off the value its search run recorded: the WS loss is not the searched oracle's")
    bad = pool[~np.isfinite(loss[pool])]
    if len(bad):
        raise ValueError(f"the WS loss of {arch_string(choices[bad[0]])} is {loss[bad[0]]}: not finite")
    if [row["target"] for row in chosen] != list(exp.target_names):
        raise ValueError(f"chosen rows name targets {[row['target'] for row in chosen]}, the experiment "
                         f"{list(exp.target_names)}: one row per target, in the experiment's order")
    rows = []
    for t, row in enumerate(chosen):
        ok = np.flatnonzero(lat[:, t] <= budgets[t])
        out = {**row, "arch_ws": row.get("arch_ws") or row["arch"]}
        if len(ok):
            best = ok[int(np.argmin(loss[ok]))]
            rank = 1 + int(np.sum(miou[ok] > miou[best]))
            out.update({"arch_ws_loss": arch_string(choices[best]), "ws_loss": float(loss[best]),
                        "ws_loss_miou_rank": rank})
        else:  # the WS rule's fallback (its fastest architecture) stands for this arm too
            out.update({"arch_ws_loss": out["arch_ws"], "ws_loss": math.nan, "ws_loss_miou_rank": 0})
        rows.append(out)
    return rows


class FineTuneScores:
    """Fine-tuned mIoU on the WS split per architecture (the multi-fidelity choice's score), cached.

    Each architecture's fine-tune has its own generator (seed, :data:`CHOICE_STREAM`, its code, and
    the replicate from 1 on), so a score depends neither on the order nor on the target. Scores are
    kept in ``<folder>/choice_<recipe hash>_seed<seed>.json`` (the recipe: schema, epochs, learning
    rate, batch size, stream, replicate), rewritten atomically after each fine-tune.

    Raises (on call):
        ValueError: a fine-tune scored a non-finite mIoU (naming the architecture; not cached).
    """

    def __init__(self, supernet, epochs: int, seed: int, folder, replicate: int = 0):
        recipe = {"schema": CHOICE_SCHEMA, "epochs": epochs, "lr": supernet.cfg.standalone_lr,
                  "batch_size": supernet.cfg.batch_size, "stream": CHOICE_STREAM}
        if replicate:  # replicate 0 keeps the name it had before replicates existed
            recipe["replicate"] = replicate
        self.supernet, self.epochs, self.seed, self.replicate = supernet, epochs, seed, replicate
        self.path = folder / f"choice_{content_hash(recipe, length=8)}_seed{seed}.json"
        self.scores = load_cache_json(self.path, "multi-fidelity choice scores", _score_problem) or {}

    def __call__(self, c: np.ndarray) -> float:
        code = str(int(encode(c)))
        if code not in self.scores:
            rng = np.random.default_rng([self.seed, CHOICE_STREAM, int(code)] + ([self.replicate] if self.replicate else []))
            score = float(self.supernet.finetune_and_evaluate(c, self.epochs, rng))
            if not math.isfinite(score):
                raise ValueError(f"the multi-fidelity fine-tune of {arch_string(c)} scored {score}: not a finite mIoU")
            self.scores[code] = score
            atomic_write_json(self.path, self.scores)
        return self.scores[code]


def choice_noise(candidates: list[dict]) -> dict[str, float]:
    """How much of the multi-fidelity choice is the fine-tune's noise (with ``search.choice_retest``).

    From :func:`fidelity_choice`'s candidates with a second fine-tune each (another generator):
    ``choice.retest_tau.mean``: Kendall tau between the two fine-tunes over a target's candidates,
    mean over the targets with >= 3; ``choice.retest_same_pick_share``: targets whose retest picks
    the same candidate; ``choice.ws_tau.mean``: WS mIoU against the mean of the two fine-tunes, the
    same way. In mIoU points: ``choice.replicate_sd_pts``, one fine-tune's SD around the
    architecture's expected score (``sqrt(mean(d^2) / 2)`` over the distinct architectures' two
    fine-tunes' differences ``d``); ``choice.candidate_sd_pts``, the SD among a target's candidates'
    two-fine-tune means (variances pooled over the targets), which holds half a replicate's
    variance; ``choice.candidate_true_sd_pts``, the same with that removed (0 where the noise
    explains it all): the spread a fine-tune has to resolve. ``choice.reliability`` =
    true variance / (true variance + one fine-tune's): the share of one fine-tune's variance
    among a target's candidates that is not noise. Per target (>= 3 candidates):
    ``choice.retest_tau.<target>`` and ``choice.candidate_true_sd_pts.<target>``. Empty without a
    retest.
    """
    if not candidates or "finetuned_miou_retest" not in candidates[0]:
        return {}
    by_target: dict[str, list[dict]] = {}
    for row in candidates:
        by_target.setdefault(row["target"], []).append(row)
    distinct = {r["arch"]: r["finetuned_miou"] - r["finetuned_miou_retest"] for r in candidates}
    noise_var = float(np.mean(np.array(list(distinct.values())) ** 2) / 2)
    true_sd = lambda var: 100 * math.sqrt(max(var - noise_var / 2, 0.0))  # noqa: E731  (points)
    taus, ws_taus, same, spread, per_target = [], [], [], [], {}
    for target, rows in by_target.items():
        a, b = (np.array([r[k] for r in rows]) for k in ("finetuned_miou", "finetuned_miou_retest"))
        same.append(int(np.argmax(a)) == int(np.argmax(b)))
        if len(rows) >= 3:
            taus.append(kendall_tau(a, b))
            ws_taus.append(kendall_tau([r["ws_miou"] for r in rows], (a + b) / 2))
            spread.append(float(np.var((a + b) / 2, ddof=1)))
            per_target.update({f"choice.retest_tau.{target}": taus[-1],
                               f"choice.candidate_true_sd_pts.{target}": true_sd(spread[-1])})
    nan_mean = lambda v: float(np.nanmean(v)) if len(v) and not np.isnan(v).all() else math.nan  # noqa: E731
    spread_var = nan_mean(np.array(spread))
    true_var = max(spread_var - noise_var / 2, 0.0) if math.isfinite(spread_var) else math.nan
    reliability = true_var / (true_var + noise_var) if true_var + noise_var > 0 else math.nan
    return {"choice.retest_tau.mean": nan_mean(np.array(taus)), "choice.retest_same_pick_share": float(np.mean(same)),
            "choice.ws_tau.mean": nan_mean(np.array(ws_taus)), "choice.replicate_sd_pts": 100 * math.sqrt(noise_var),
            "choice.candidate_sd_pts": 100 * math.sqrt(spread_var), "choice.candidate_true_sd_pts": 100 * math.sqrt(true_var),
            "choice.reliability": reliability, "choice.n_targets": float(len(by_target)), **per_target}


def _score_problem(content) -> str:
    """Why a multi-fidelity score cache is unusable ("" if usable)."""
    if not isinstance(content, dict):
        return "not a JSON object"
    bad = [k for k, v in content.items() if not k.isdigit() or not isinstance(v, float) or not math.isfinite(v)]
    return f"entries that are not architecture code -> finite score: {bad[:3]}" if bad else ""


def measure_chosen(profile, seed: int, rows: list[dict], n_images: int) -> tuple[list[dict], list[dict]]:
    """C3 for local targets: ``n_images`` test images through the chosen network's pipeline,
    ``latency.c3_runs`` times (the targets in turn within each run, as 02 does: one run's margin
    moves by seconds with the machine's speed of the moment).

    A target passes only if every run does; ``measured_s`` and ``c3_margin_s`` are its worst
    run's, ``ms_per_image`` the median over the runs (:func:`chosen_c3_columns`). Other targets
    (external, GPU) get ``measured_s`` NaN and a note: they cannot be timed here.

    Returns:
        ``(rows, runs)``: the chosen rows with their C3 columns, and one row per (run, target)
        as :func:`~linas_lib.latency.c3.c3_check` returns it, with ``run``.
    """
    from ..latency import e2e
    from ..latency.c3 import c3_check, heartbeat_references
    from ..latency.report import eval_images
    from ..space import parse_arch

    kinds = {t.name: t.kind for t in profile.latency.targets}
    local = [row for row in rows if kinds.get(row["target"]) == "local"]
    runs: list[dict] = []
    if local:
        encoder, images, beats = e2e.shared_encoder(), eval_images(profile, seed), heartbeat_references(profile)
        runs = [{"run": k, **c3_check(profile, row["target"], parse_arch(row["arch"]), images, n_images, encoder,
                                      beats.get(row["target"]))}
                for k in range(profile.latency.c3_runs) for row in local]
    budget_s = profile.latency.throughput_budget_s * n_images / 100
    out = []
    for row in rows:
        if kinds.get(row["target"]) != "local":
            out.append({**row, "c3_images": 0, "c3_runs": 0, "measured_s": float("nan"), "ms_per_image": float("nan"),
                        "c3_budget_s": budget_s, "c3_pass": "", "c3_other_cores": float("nan"), "c3_quiet": "",
                        "note": f"{kinds.get(row['target'])} target: not timed here"})
        else:
            out.append({**row, **chosen_c3_columns([r for r in runs if r["target"] == row["target"]]),
                        **predicted_c3(row["predicted_ms"], n_images, budget_s), "note": "measured"})
    return out, runs


def predicted_c3(predicted_ms: float, n_images: int, budget_s: float) -> dict:
    """C3 on the search's own latency scale (the committed LUTs' machine): ``n_images`` at the
    predicted end-to-end time per image, against the same budget. A measured pass on a faster
    machine than the LUTs' is that machine's speed; this says whether the search's choice meets C3
    where its latency model was measured."""
    total = predicted_ms * n_images / 1e3
    return {"c3_predicted_s": total, "c3_predicted_pass": bool(total <= budget_s)}


HEARTBEAT_COLUMNS = ("heartbeat_networks", "heartbeat_n", "speed_factor", "ms_per_image_drift_corrected",
                     "margin_s_drift_corrected", "pass_drift_corrected", "first_in_block_vs_rest_pct")


def chosen_c3_columns(runs: list[dict]) -> dict:
    """One chosen network's C3 columns over its runs (:func:`measure_chosen`): ``c3_runs``,
    ``measured_s`` and ``c3_margin_s`` of the worst run, ``measured_s_median``, ``ms_per_image``
    (median), ``c3_pass`` (every run) and ``c3_pass_share``; with a heartbeat in every run, the
    ``c3_*`` heartbeat columns (:data:`HEARTBEAT_COLUMNS`: medians; ``pass``: every run, the
    margin: the worst run's)."""
    worst = max(runs, key=lambda r: r["total_s"])
    out = {"c3_images": worst["n_images"], "c3_runs": len(runs), "measured_s": worst["total_s"],
           "measured_s_median": float(np.median([r["total_s"] for r in runs])),
           "ms_per_image": float(np.median([r["ms_per_image"] for r in runs])), "c3_budget_s": worst["budget_s"],
           "c3_margin_s": worst["margin_s"], "c3_pass": all(r["pass"] for r in runs),
           "c3_pass_share": float(np.mean([r["pass"] for r in runs]))}
    for k in HEARTBEAT_COLUMNS:
        if all(k in r for r in runs):
            values = [r[k] for r in runs]
            # the worst run decides pass and margin, as for the raw total; the rest are medians
            worst_of = {"pass_drift_corrected": all, "margin_s_drift_corrected": min}
            out[f"c3_{k}"] = worst_of[k](values) if k in worst_of else float(np.median(values))
    quiet = [r["quiet"] for r in runs]  # "": not judged; a run known to be noisy outweighs that
    return {**out, "c3_other_cores": float(np.nanmax([r["other_cores"] for r in runs])),
            "c3_quiet": False if False in quiet else "" if "" in quiet else True}


def front_points(exp: E.ParetoExperiment, runs: list[E.MethodRun], seed: int) -> list[dict]:
    """Per (method, target) the within-budget front of one seed, in ms and mIoU (for the figure)."""
    rows = []
    for run in (r for r in runs if r.seed == seed):
        for t, name in enumerate(exp.target_names):
            F = exp.feasible_front(run.miou, run.latency_ms, t)
            rows += [{"method": run.method, "target": name, "miou": 1.0 - f[0],
                      "latency_ms": f[1] * exp.budgets_ms[t]} for f in F]
    return rows


def headline_budgets(record: dict) -> dict[str, float]:
    """``{target: budget_ms}`` of the headline-HV targets of an ``experiment.json`` record."""
    budgets = dict(zip(record["targets"], record["budgets_ms"]))
    return {name: budgets[name] for name in record["reference_point"]["hv_targets"]}


def experiment_record(exp: E.ParetoExperiment, setup: SearchSetup, profile, near_facts: dict, supernet) -> dict:
    """What the experiment fixed before any method ran (written to ``experiment.json``), with the
    oracle's identity (``oracle``: the supernet's key and weights digest), so that a search made
    again on another machine can tell the same training from a near copy."""
    from dataclasses import asdict

    return {"reference_point": exp.reference(), "targets": list(exp.target_names),
            "budgets_ms": exp.budgets_ms.tolist(),
            "joint_targets": [exp.target_names[t] for t in setup.joint_targets],
            "search": asdict(profile.search), "near": near_facts,
            "oracle": {"supernet_key": supernet.key, "weights_digest": supernet.weights_digest}}


def c3_figures(rows: list[dict]) -> dict:
    """``c3_ms_per_image.<target>`` (median over the runs), ``c3_pass.<target>`` (every run) and
    ``c3_margin_s.<target>`` (the worst run's) of the measured chosen networks, with the heartbeat's
    figures where every run had one."""
    out = {}
    for row in rows:
        if row["note"] == "measured":
            out[f"c3_ms_per_image.{row['target']}"] = row["ms_per_image"]
            out[f"c3_pass.{row['target']}"] = float(row["c3_pass"])
            out[f"c3_margin_s.{row['target']}"] = row["c3_margin_s"]
            out[f"c3_predicted_pass.{row['target']}"] = float(row["c3_predicted_pass"])
            if "c3_speed_factor" in row:
                out[f"c3_speed_factor.{row['target']}"] = row["c3_speed_factor"]
                out[f"c3_ms_per_image_drift_corrected.{row['target']}"] = row["c3_ms_per_image_drift_corrected"]
                out[f"c3_pass_drift_corrected.{row['target']}"] = float(row["c3_pass_drift_corrected"])
    return out


def export_search_records(profile, seed: int, out) -> Path:
    """Write the record of this machine's 05 search cache (:mod:`linas_lib.search.records`): the
    cached supernet's WS oracle, every cached run, and the oracle-derived inputs of the methods.

    Args:
        profile: a profile or its name.
        seed: the notebook seed 05 ran with.
        out: the record's folder.
    """
    from ..analysis.bench import as_profile
    from ..provenance import provenance
    from .records import export_records

    profile = as_profile(profile)
    supernet, latency = search_inputs(profile, seed)
    proxy, _ = near_proxy(supernet, profile.search, seed)
    setup = build_setup(profile, supernet, latency, proxy, seed)
    folder = runs_dir(profile, supernet, latency)
    source = {"supernet_key": supernet.key, "weights_digest": supernet.weights_digest,
              "runs_folder": folder.name}
    return export_records(folder, Path(out), setup, profile.name, seed, source,
                          provenance(profile.name, profile.to_dict()))


def run_more(profile, methods, seeds, seed: int = 0, evals: int = 0, oracle: bool = False) -> list[E.MethodRun]:
    """Run ``methods`` on ``seeds`` on this machine's trained supernet of the profile (05's setup,
    its run cache: finished runs are reused), e.g. a study to be exported as a search record.
    With ``oracle``, make 05's long EPR run of the oracle instead (:func:`oracle_runs`; with 05's
    compared runs, the reference of a record made afresh).

    Args:
        profile: a profile or its name.
        methods: method names.
        seeds: search seeds.
        seed: the notebook seed 05 ran with.
        evals: evaluations per run; 0 or the protocol's budget: the compared runs' cache, more:
            long runs, cached in the subfolder ``long_<evals>`` as 05's long-budget study's.
        oracle: make only the oracle's run (``methods``, ``seeds`` and ``evals`` unused).

    Raises:
        ValueError: ``evals`` below the protocol's budget.
    """
    from ..analysis.bench import as_profile

    profile = as_profile(profile)
    check_method_names(methods)
    budget = profile.search.eval_budget
    if evals and evals < budget:
        raise ValueError(f"--evals {evals}: below the protocol's budget ({budget}); a long run extends a compared one")
    supernet, latency = search_inputs(profile, seed)
    proxy, _ = near_proxy(supernet, profile.search, seed)
    setup = build_setup(profile, supernet, latency, proxy, seed)
    if oracle:
        return oracle_runs(profile, setup, supernet)
    folder = runs_dir(profile, supernet, latency)
    if evals > budget:
        setup, folder = dataclasses.replace(setup, eval_budget=evals), runs_dir(profile, supernet, latency, f"long_{evals}")
    return E.run_all(setup, list(methods), [int(s) for s in seeds], folder, progress=print)
