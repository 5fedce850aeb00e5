"""Study ``choice_truth`` (notebook 09): how well each choice rule picks among 05's candidates,
scored against every candidate's standalone accuracy and on fresh fine-tune draws.

05 picks each target's final network among its ``search.choice_topk`` WS candidates by one
fine-tune; 09's study ``retest_mean`` re-picked on the mean of two, on the draws that suggested
it. Here (notebooks/studies/09_final_choice.md: registered 2026-12-07 at 7eebc78):

* every distinct candidate is trained standalone with 05's recipe on :data:`TRUTH_SEEDS`
  (``linas bench candidates``; its **truth**: the mean test mIoU over the seeds every candidate
  has, :func:`truth_seeds`);
* every candidate is fine-tuned again with fresh generators (``linas bench retune``: replicates
  :data:`~linas_lib.analysis.final_choice.FRESH_REPLICATES`);
* a rule's **value** on a target is the truth of its pick averaged over every draw the fresh
  fine-tunes give (:data:`RULES`), and rules are compared by the mean over the targets of their
  values' difference, with a bootstrap over the draws and the truth's seed noise
  (:func:`contrast_ci`).

On the cpu profile no supernet, no search: the fine-tunes and trainings are made beforehand;
the smoke and full profiles (``search.final_build``) make them in the notebook.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import bench as B
from . import final as F
from . import final_choice as FC

TRUTH_SEEDS = (0, 1)  # the registered seeds; seed 0 alone while seed 1 is not done for every candidate
# the registered clock rule: a seed after the first counts only if every candidate's item of it
# finished by then (item provenance ``timestamp``), so a rerun after a late item reads the same
TRUTH_CUTOFF = {"cpu": "2026-12-07T10:50:00+00:00"}
# targets sharing more than this share of their candidates make one decision (connected clusters)
CLUSTER_SHARE = 0.5
# rule -> the subsets of the fresh replicates whose mean it picks on, one subset per draw
# (indices into FRESH_REPLICATES); "ws" picks WS rank 1 and has no draw
RULES = {"ws": (), "single": tuple((j,) for j in range(4)),
         "mean2": tuple(itertools.combinations(range(4), 2)), "mean4": ((0, 1, 2, 3),)}
PRIMARY = ("mean2", "single")  # the registered primary contrast: arm, control
SECONDARY = (("ws", "single"), ("mean4", "single"))
RESAMPLES = 2000
BOOTSTRAP_STREAM = 9_091  # the bootstrap's generator: np.random.default_rng([seed, BOOTSTRAP_STREAM])


def candidate_archs(candidates: list[dict]) -> list[str]:
    """The distinct candidate architectures, in the candidates' order."""
    return list(dict.fromkeys(r["arch"] for r in candidates))


def candidates_plan(profile, seeds=TRUTH_SEEDS, seed: int = 0, build_features: bool = False) -> B.Plan:
    """The items of every distinct candidate of 05's ``choice_candidates.csv`` x ``seeds``, with
    05's recipe in the table's folder (an item the table or 05's final networks made is reused)."""
    archs = candidate_archs(F.read_choice_candidates(profile))
    selection = [{"arch": a, "name": "choice_candidate", "stratum": -1, "predicted_ms": math.nan} for a in archs]
    return B.plan_for(profile, selection, seeds, seed, build_features=build_features)


def build_candidates(profile_ref, seeds=TRUTH_SEEDS, seed: int = 0, scheduler: str | None = None,
                     workers: int | None = None, limit: int | None = None) -> dict:
    """Train the pending candidate items on Dask; ``{"items", "done", "ran", "pending"}``.

    Raises:
        BenchError: no seed, or items failed (the others are kept).
    """
    if not seeds:
        raise B.BenchError("bench candidates: no training seed given (--seeds S[,S...])")
    plan = candidates_plan(B.as_profile(profile_ref), seeds, seed, build_features=True)
    return B.build_plan(plan, profile_ref, "choice candidates", scheduler, workers, limit)


def build_here(profile, seed: int = 0) -> None:
    """With ``search.final_build`` (the smoke and full profiles): make the study's data in this
    process, the fresh fine-tunes (:func:`~linas_lib.analysis.final_choice.retune`, 05's
    replicate 0 checked too) and the candidates' items; the cpu profile makes them beforehand
    (``linas bench retune``, ``linas bench candidates``)."""
    import concurrent.futures

    FC.retune(profile, (0, *FC.FRESH_REPLICATES), seed, progress=False)
    plan = candidates_plan(profile, TRUTH_SEEDS, seed, build_features=True)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        B.build_plan(plan, profile, "choice candidates", executor=pool, progress=False)


def truth_seeds(items: list[dict], archs: list[str], cutoff: str = "") -> tuple[int, ...]:
    """The longest prefix of :data:`TRUTH_SEEDS` that every architecture has an item of (empty:
    some candidate lacks even the first); with ``cutoff`` (an ISO time, :data:`TRUTH_CUTOFF`), a
    seed after the first counts only where each of those items finished by then (its
    ``provenance.timestamp``)."""
    import datetime as dt

    limit = dt.datetime.fromisoformat(cutoff) if cutoff else None
    have: dict[str, dict[int, str]] = {a: {} for a in archs}
    for r in items:
        if r["arch"] in have:
            have[r["arch"]][int(r["seed"])] = str((r.get("provenance") or {}).get("timestamp", ""))
    seeds: tuple[int, ...] = ()
    for s in TRUTH_SEEDS:
        if not all(s in v for v in have.values()):
            break
        if seeds and limit is not None and not all(v[s] and dt.datetime.fromisoformat(v[s]) <= limit
                                                    for v in have.values()):
            break
        seeds += (s,)
    return seeds


def clusters(rows_of: dict[str, list[dict]], share: float = CLUSTER_SHARE) -> list[list[str]]:
    """The targets grouped into decisions: two targets are linked when they share more than
    ``share`` of their candidates (the smaller set's), clusters are the connected groups."""
    from scipy.sparse.csgraph import connected_components

    targets = list(rows_of)
    sets = [{r["arch"] for r in rows_of[t]} for t in targets]
    linked = np.array([[len(a & b) > share * min(len(a), len(b)) for b in sets] for a in sets])
    _, labels = connected_components(linked, directed=False)
    groups: dict[int, list[str]] = {}
    for t, label in zip(targets, labels):
        groups.setdefault(int(label), []).append(t)
    return list(groups.values())


def target_groups(candidates: list[dict], archs: list[str]) -> tuple[list[str], dict[str, list[dict]], list[np.ndarray]]:
    """The targets in the candidates' order, each target's candidate rows in WS rank order, and
    their row indices into ``archs``."""
    index = {a: i for i, a in enumerate(archs)}
    targets = list(dict.fromkeys(r["target"] for r in candidates))
    rows_of = {t: sorted((r for r in candidates if r["target"] == t), key=lambda r: int(r["ws_rank"])) for t in targets}
    return targets, rows_of, [np.array([index[r["arch"]] for r in rows_of[t]]) for t in targets]


def fresh_matrix(replicates: list[dict], archs: list[str]) -> np.ndarray:
    """``(len(archs), 4)``: each architecture's fresh fine-tunes (replicates
    :data:`~linas_lib.analysis.final_choice.FRESH_REPLICATES`, in that order).

    Raises:
        ValueError: an architecture lacks one (run ``linas bench retune``), naming it.
    """
    scores = {(r["arch"], int(r["replicate"])): float(r["finetuned_miou"]) for r in replicates}
    out = np.full((len(archs), len(FC.FRESH_REPLICATES)), np.nan)
    for i, a in enumerate(archs):
        for j, k in enumerate(FC.FRESH_REPLICATES):
            if (a, k) not in scores:
                raise ValueError(f"{FC.REPLICATES_FILE} has no fine-tune replicate {k} of {a}: "
                                 "run `linas bench retune` first")
            out[i, j] = scores[(a, k)]
    return out


def rule_values(groups: list[np.ndarray], fresh: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per rule (:data:`RULES`), its value on each target: the truth of its pick averaged over its
    draws.

    Args:
        groups: per target, the row indices (into ``fresh`` and ``true``) of its candidates in WS
            rank order; the first maximum wins, so ties go to the better WS rank.
        fresh: ``(archs, 4)`` fresh fine-tunes.
        true: ``(archs,)`` truths.
    """
    out = {}
    for rule, draws in RULES.items():
        if not draws:
            out[rule] = np.array([true[g[0]] for g in groups])
            continue
        out[rule] = np.array([np.mean([true[g[int(np.argmax(fresh[g][:, list(d)].mean(axis=1)))]] for d in draws])
                              for g in groups])
    return out


def contrast_ci(groups, fresh, true, n_seeds, seed_sd: float, pairs, seed: int = 0,
                resamples: int = RESAMPLES) -> dict[tuple[str, str], tuple[float, float, float]]:
    """``(low, high, bootstrap mean)``: the 95 % percentile CI of each ``(arm, control)`` contrast, the mean over the targets of
    value(arm) - value(control), from a bootstrap that resamples, independently per architecture,
    its fresh fine-tunes with replacement (the draws) and adds to its truth a normal error of SD
    ``seed_sd / sqrt(n_seeds)`` (the truth's seed noise). A hand-written loop, not
    ``scipy.stats.bootstrap``: the resampling is per architecture within rows, plus a parametric
    term. A resample repeats a fine-tune within a pair about a quarter of the time, which pulls the
    bootstrap towards ``single``; its mean is returned so that the shift shows."""
    rng = np.random.default_rng([seed, BOOTSTRAP_STREAM])
    n, k = fresh.shape
    noise_sd = seed_sd / np.sqrt(np.asarray(n_seeds, dtype=float))
    stats = {pair: np.empty(resamples) for pair in pairs}
    for b in range(resamples):
        pick = rng.integers(0, k, size=(n, k))
        fresh_b = np.take_along_axis(fresh, pick, axis=1)
        true_b = true + rng.normal(0.0, 1.0, n) * noise_sd
        values = rule_values(groups, fresh_b, true_b)
        for pair in pairs:
            stats[pair][b] = float(np.mean(values[pair[0]] - values[pair[1]]))
    return {pair: (float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5)), float(s.mean())) for pair, s in stats.items()}


def study(profile, latency, table_rows: list[dict], seed: int = 0, resamples: int = RESAMPLES) -> dict:
    """The registered readings of ``choice_truth``, or what is still missing. With
    ``search.final_build`` the data are made here first (:func:`build_here`).

    Returns:
        ``{"status": {...}, "targets": [...], "contrasts": [...], "candidates": [...]}``:
        ``status`` counts the candidate items (``items``, ``done``), names ``truth_seeds`` (by
        :data:`TRUTH_CUTOFF`) and the decision ``clusters`` (:func:`clusters`), and says whether
        the identity check passed (``identity_ok``: 05's replicates made again all equal; else
        every contrast is ``descriptive_only``); the pooled seed SD is the table's with the
        candidates' items of the truth's seeds;
        with every candidate's seed 0 and the fresh fine-tunes, ``targets`` has per target each
        rule's value and its gap to the best table architecture within the budget
        (``gap_<rule>_pts``), the best candidate's gap, the candidates within 1 point of that
        architecture, and the validity taus; ``contrasts`` each registered contrast with its CI
        (and the bootstrap's mean, ``boot_mean_pts``) and
        :func:`~linas_lib.analysis.final_choice.verdict`; ``candidates`` one row per
        (target, candidate) with its truth and fresh fine-tunes. Empty lists while data are missing.
    """
    from ..search.fidelity import kendall_tau

    if profile.search.final_build:
        build_here(profile, seed)
    candidates = F.read_choice_candidates(profile)
    archs = candidate_archs(candidates)
    plan = candidates_plan(profile, TRUTH_SEEDS, seed)
    records = B.finished_records(plan)
    seeds = truth_seeds(records, archs, TRUTH_CUTOFF.get(profile.name, ""))
    items = [B.table_row(r) for r in records if int(r["seed"]) in seeds]
    every = FC.read_replicates(profile)
    replicates = [r for r in every if int(r["replicate"]) in FC.FRESH_REPLICATES]
    checked = [r for r in every if int(r["replicate"]) in FC.COMMITTED_COLUMNS]
    identity = bool(checked) and all(str(r.get("identical")) == "True" for r in checked)
    status = {"items": len(plan.items), "done": len(records), "truth_seeds": ",".join(map(str, seeds)),
              "fresh_finetunes": len(replicates), "identity_ok": float(identity)}
    if not seeds or len(replicates) < len(archs) * len(FC.FRESH_REPLICATES):
        return {"status": status, "targets": [], "contrasts": [], "candidates": []}
    index = {a: i for i, a in enumerate(archs)}
    means = F.arch_means(items)  # items: the truth's seeds only
    fresh, true_of = fresh_matrix(replicates, archs), {a: means[a]["test_miou_mean"] for a in archs}
    true = np.array([true_of[a] for a in archs])
    targets, rows_of, groups = target_groups(candidates, archs)
    values = rule_values(groups, fresh, true)
    seed_sd, seed_df = F.pooled_seed_sd(list(table_rows) + items)
    pairs = (PRIMARY, *SECONDARY)
    cis = contrast_ci(groups, fresh, true, [len(seeds)] * len(archs), seed_sd, pairs, seed, resamples)
    decisions = clusters(rows_of)
    contrasts = []
    for arm, control in pairs:
        diff = 100 * float(np.mean(values[arm] - values[control]))
        low, high, boot_mean = (100 * v for v in cis[(arm, control)])
        differ = ~np.isclose(values[arm], values[control], rtol=0.0, atol=1e-12)  # float sums of equal picks
        contrasts.append({"arm": arm, "control": control, "reading": "primary" if (arm, control) == PRIMARY else "secondary",
                          "diff_pts": diff, "diff_ci95_low_pts": low, "diff_ci95_high_pts": high,
                          "boot_mean_pts": boot_mean,
                          "verdict": FC.verdict(low, high) if math.isfinite(low + high) else "not computed",
                          "descriptive_only": not identity, "n_targets": len(targets),
                          "n_distinct_decisions": len(decisions),
                          "n_targets_differing": int(differ.sum()),
                          "n_distinct_differing": len({(round(float(a), 9), round(float(c), 9))
                                                       for a, c, d in zip(values[arm], values[control], differ) if d})})
    best = {r["target"]: r for r in F.final_rows(F.read_chosen(profile), [], table_rows, latency)}
    target_rows, candidate_rows = [], []
    for t, g in zip(targets, groups):
        bench_best = best[t].get("best_bench_test_miou_mean", math.nan)
        row = {"target": t, "n_candidates": len(g), "best_bench_arch": best[t].get("best_bench_arch", ""),
               "best_bench_miou": bench_best, "best_candidate_miou": float(true[g].max()),
               "gap_best_candidate_pts": 100 * (bench_best - float(true[g].max())),
               "n_candidates_within_1pt": int(np.sum(100 * (bench_best - true[g]) <= 1.0)),
               "tau_truth_ws": kendall_tau(true[g], [float(r["ws_miou"]) for r in rows_of[t]]) if len(g) > 1 else math.nan,
               "tau_truth_fresh_mean": kendall_tau(true[g], fresh[g].mean(axis=1)) if len(g) > 1 else math.nan}
        for rule, v in values.items():
            i = targets.index(t)
            row.update({f"value_{rule}": float(v[i]), f"gap_{rule}_pts": 100 * (bench_best - float(v[i]))})
        target_rows.append(row)
        candidate_rows += [{"target": t, "ws_rank": int(r["ws_rank"]), "arch": r["arch"], "truth_miou": true_of[r["arch"]],
                            "ws_miou": float(r["ws_miou"]),
                            **{f"finetuned_miou_r{k}": float(fresh[index[r['arch']], j])
                               for j, k in enumerate(FC.FRESH_REPLICATES)}}
                           for r in rows_of[t]]
    status.update({"seed_sd_pts": 100 * seed_sd, "seed_sd_df": seed_df,
                   "clusters": "; ".join("+".join(c) for c in decisions)})
    return {"status": status, "targets": target_rows, "contrasts": contrasts, "candidates": candidate_rows}


def figures(result: dict) -> dict[str, float]:
    """``choice_truth.<status>``, ``choice_truth.contrast.<arm>_vs_<control>.<diff_pts|
    diff_ci95_low_pts|diff_ci95_high_pts|boot_mean_pts|n_targets_differing|n_distinct_differing>``
    (targets, and distinct value pairs, where arm and control differ), and per rule
    ``choice_truth.<rule>.n_within_1pt`` (targets whose value is within 1 point of the best table
    architecture), ``choice_truth.best_candidate.n_within_1pt``, ``choice_truth.tau_truth_ws.mean``,
    ``choice_truth.tau_truth_fresh_mean.mean`` and ``choice_truth.n_distinct_decisions`` (the
    :func:`clusters` of targets)."""
    status = result["status"]
    out = {f"choice_truth.{k}": float(v) for k, v in status.items() if k not in ("truth_seeds", "clusters")}
    out["choice_truth.n_truth_seeds"] = float(len([s for s in str(status["truth_seeds"]).split(",") if s]))
    for c in result["contrasts"]:
        prefix = f"choice_truth.contrast.{c['arm']}_vs_{c['control']}"
        out.update({f"{prefix}.{k}": float(c[k]) for k in ("diff_pts", "diff_ci95_low_pts", "diff_ci95_high_pts", "boot_mean_pts",
                                                           "n_targets_differing", "n_distinct_differing")})
        out["choice_truth.n_distinct_decisions"] = float(c["n_distinct_decisions"])
    rows = result["targets"]
    if rows:
        for rule in RULES:
            out[f"choice_truth.{rule}.n_within_1pt"] = float(sum(r[f"gap_{rule}_pts"] <= 1.0 for r in rows))
        out["choice_truth.best_candidate.n_within_1pt"] = float(sum(r["gap_best_candidate_pts"] <= 1.0 for r in rows))
        for k in ("tau_truth_ws", "tau_truth_fresh_mean"):
            taus = [r[k] for r in rows if math.isfinite(r[k])]
            out[f"choice_truth.{k}.mean"] = float(np.mean(taus)) if taus else math.nan
    return out
