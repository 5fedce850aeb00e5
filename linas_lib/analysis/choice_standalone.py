"""Study ``choice_standalone`` (notebook 09): does one standalone training per candidate pick
05's final network better than one fine-tune?

``choice_truth`` found that within a target's candidates the truth barely follows WS or the
fine-tunes. Here (notebooks/studies/09_final_choice.md: registered 2026-12-07 at 0ceb58c) every candidate of 05's
``choice_candidates.csv`` has standalone items with 05's recipe on :data:`SEEDS` (seed 2 trained
for this study: ``linas bench candidates --seeds 2``), and the rules are cross-fitted: fold ``s``
picks on seed ``s``'s **validation** mIoU and scores every rule's pick on the mean **test** mIoU
of the other seeds (the fold's truth), so a pick never reads its own seed. A rule's value on a
target is its pick's fold truth averaged over the folds (and over the fresh fine-tune draws of
``choice_truth`` for a rule that fine-tunes). The goal's reading is fold :data:`GOAL_FOLD` alone,
read against the best table architecture within the budget as 05's goal row.
"""

from __future__ import annotations

import math

import numpy as np

from . import bench as B
from . import choice_truth as CT
from . import final as F
from . import final_choice as FC

SEEDS = (0, 1, 2)  # every candidate's standalone items; a fold per seed
NEW_SEEDS = (2,)  # trained for this study after its registration
GOAL_FOLD = 2  # the goal row reads the pick on this seed, scored on the other seeds
TOP = 3  # standalone_top3: the trainings go to the TOP best candidates by one fine-tune
RULES = ("standalone", "standalone_top3", "single", "ws")  # rules that pick
REFERENCES = ("oracle", "random")  # picks on seed s's test mIoU; the candidates' mean truth
PRIMARY = ("standalone", "single")  # the registered primary contrast: arm, control
SECONDARY = (("standalone", "ws"), ("standalone_top3", "single"))
RESAMPLES = 2000
BOOTSTRAP_STREAM = 9_092  # the bootstrap's generator: np.random.default_rng([seed, BOOTSTRAP_STREAM])


def seed_matrix(records: list[dict], archs: list[str], metric: str, seeds=SEEDS) -> np.ndarray:
    """``(len(archs), len(seeds))``: each architecture's ``metric`` per seed.

    Raises:
        ValueError: an architecture lacks a seed's item (run ``linas bench candidates --seeds``),
            or its ``metric`` is not finite, naming it.
    """
    value = {(r["arch"], int(r["seed"])): float(r[metric]) for r in records}
    bad = sorted(k for k, v in value.items() if not math.isfinite(v))
    if bad:
        raise ValueError(f"bench/items: {metric} of {bad[0][0]} seed {bad[0][1]} is {value[bad[0]]}, not a "
                         f"number (and {len(bad) - 1} more): train that item again")
    out = np.empty((len(archs), len(seeds)))
    for i, a in enumerate(archs):
        for j, s in enumerate(seeds):
            if (a, s) not in value:
                raise ValueError(f"bench/items has no seed-{s} item of candidate {a}: run "
                                 f"`linas bench candidates --seeds {s}` first")
            out[i, j] = value[(a, s)]
    return out


def fold_truths(test: np.ndarray) -> np.ndarray:
    """``(archs, folds)``: fold ``s``'s truth, the mean test mIoU over every seed but ``s``."""
    n = test.shape[1]
    return (test.sum(axis=1, keepdims=True) - test) / (n - 1)


def _first_max(scores: np.ndarray) -> int:
    """The index of the first maximum: candidates are in WS rank order, so ties go to the better rank."""
    return int(np.argmax(scores))


def _top(group: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """``(TOP, draws)``: per fine-tune draw, the positions in ``group`` of its :data:`TOP` best
    candidates (ties to the better WS rank), back in WS rank order."""
    return np.sort(np.argsort(-fresh[group], axis=0, kind="stable")[:TOP], axis=0)


def picks(group: np.ndarray, val: np.ndarray, fresh: np.ndarray) -> dict[str, np.ndarray]:
    """Per rule, its picks on one target: ``(folds, draws)`` row indices (a rule without folds or
    draws repeats its pick). ``np.argmax`` takes the first maximum and the candidates are in WS
    rank order, so ties go to the better rank.

    Args:
        group: the target's candidates (rows of ``val`` and ``fresh``) in WS rank order.
        val: ``(archs, folds)`` validation mIoU per seed.
        fresh: ``(archs, draws)`` fresh fine-tunes.
    """
    folds, draws = val.shape[1], fresh.shape[1]
    top = _top(group, fresh)
    in_top = np.argmax(val[group][top], axis=0)  # (draws, folds): the best validation among each draw's top
    return {"standalone": np.broadcast_to(group[np.argmax(val[group], axis=0)][:, None], (folds, draws)),
            "standalone_top3": group[top[in_top, np.arange(draws)[:, None]]].T,
            "single": np.broadcast_to(group[np.argmax(fresh[group], axis=0)][None, :], (folds, draws)),
            "ws": np.full((folds, draws), group[0])}


def rule_values(groups: list[np.ndarray], val: np.ndarray, test: np.ndarray, fresh: np.ndarray) -> dict[str, np.ndarray]:
    """Per rule (:data:`RULES` and the reference arms :data:`REFERENCES`), its value on each
    target: its picks' fold truths averaged over the folds and the fine-tune draws.

    Args:
        groups: per target, the row indices of its candidates in WS rank order.
        val, test: ``(archs, folds)`` validation and test mIoU per seed.
        fresh: ``(archs, draws)`` fresh fine-tunes.
    """
    truth = fold_truths(test)
    folds = np.arange(val.shape[1])
    values = {rule: np.empty(len(groups)) for rule in (*RULES, *REFERENCES)}
    for t, group in enumerate(groups):
        for rule, chosen in picks(group, val, fresh).items():
            values[rule][t] = float(truth[chosen, folds[:, None]].mean())
        values["oracle"][t] = float(np.mean([truth[group[_first_max(test[group, s])], s] for s in folds]))
        values["random"][t] = float(truth[group].mean())
    return values


def noise_ci(groups, val, test, fresh, sd_val: float, sd_test: float, rho: float, pairs, seed: int = 0,
             resamples: int = RESAMPLES, values_fn=None,
             stream: int = BOOTSTRAP_STREAM) -> dict[tuple[str, str], tuple[float, float, float]]:
    """``(low, high, bootstrap mean)``: the 95 % percentile CI of each ``(arm, control)`` contrast
    (the mean over the targets of value(arm) - value(control)) from a bootstrap that holds the
    targets fixed: per resample each candidate's fine-tunes are resampled with replacement and
    each of its (validation, test) seed pairs is redrawn as its seed means plus a bivariate normal
    error (SDs ``sd_val``, ``sd_test``, correlation ``rho``). Hand-written like
    :func:`~linas_lib.analysis.choice_truth.contrast_ci`: it resamples within rows and draws a
    parametric term, which ``scipy.stats.bootstrap`` does not. ``values_fn`` computes the rules'
    values (default :func:`rule_values`; another study passes its own); ``stream`` names the
    generator's stream."""
    values_fn = values_fn or rule_values
    rng = np.random.default_rng([seed, stream])
    n, k = fresh.shape
    mean_val, mean_test = val.mean(axis=1, keepdims=True), test.mean(axis=1, keepdims=True)
    stats = {pair: np.empty(resamples) for pair in pairs}
    for b in range(resamples):
        fresh_b = np.take_along_axis(fresh, rng.integers(0, k, size=(n, k)), axis=1)
        z = rng.standard_normal((2, *val.shape))
        val_b = mean_val + sd_val * z[0]
        test_b = mean_test + sd_test * (rho * z[0] + math.sqrt(1.0 - rho * rho) * z[1])
        values = values_fn(groups, val_b, test_b, fresh_b)
        for pair in pairs:
            stats[pair][b] = float(np.mean(values[pair[0]] - values[pair[1]]))
    return {pair: (float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5)), float(s.mean()))
            for pair, s in stats.items()}


def cluster_ci(diff: np.ndarray, labels: np.ndarray, seed: int = 0, resamples: int = RESAMPLES,
               stream: int = BOOTSTRAP_STREAM) -> tuple[float, float]:
    """The 95 % percentile CI of the mean over targets of ``diff`` from ``scipy.stats.bootstrap``
    over the decision clusters (``labels``: one per target): a resample's statistic is its
    clusters' summed differences over their target count."""
    from scipy.stats import bootstrap

    ids = np.unique(labels)
    sums = np.array([diff[labels == c].sum() for c in ids])
    counts = np.array([float((labels == c).sum()) for c in ids])
    if np.ptp(sums / counts) == 0:  # every cluster alike: nothing to resample
        value = float(sums.sum() / counts.sum())
        return value, value
    res = bootstrap((sums, counts), lambda s, c: s.sum() / c.sum(), paired=True, vectorized=False,
                    method="percentile", n_resamples=resamples, rng=np.random.default_rng([seed, stream]))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def correlation_of_residuals(rows: list[dict], exclude: set[str]) -> float:
    """The within-seed correlation of validation and test mIoU: Pearson over every item's
    deviation from its architecture's seed means (architectures with >= 2 seeds, not in
    ``exclude``)."""
    dev_val, dev_test = [], []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        if arch in exclude or len(mine) < 2:
            continue
        v = np.array([float(r["val_miou"]) for r in mine])
        t = np.array([float(r["test_miou"]) for r in mine])
        dev_val += list(v - v.mean())
        dev_test += list(t - t.mean())
    if len(dev_val) < 3:
        return math.nan
    return float(np.corrcoef(dev_val, dev_test)[0, 1])


def build_here(profile, seed: int = 0, seeds=SEEDS) -> None:
    """With ``search.final_build`` (the smoke and full profiles): make ``choice_truth``'s data
    where its fresh fine-tunes are missing (notebook 09 has made them just before) and every
    candidate's items on ``seeds`` in this process; the cpu profile makes them beforehand
    (``linas bench candidates --seeds 2``)."""
    import concurrent.futures

    try:
        CT.fresh_matrix(FC.read_replicates(profile), CT.candidate_archs(F.read_choice_candidates(profile)))
    except ValueError:
        CT.build_here(profile, seed)
    plan = CT.candidates_plan(profile, seeds, seed, build_features=True)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        B.build_plan(plan, profile, "choice candidates", executor=pool, progress=False)


def _distinct_items(*row_lists: list[dict]) -> list[dict]:
    """Rows with one entry per (architecture, seed): a candidate that is also a table
    architecture shares its items."""
    out: dict[tuple[str, int], dict] = {}
    for rows in row_lists:
        for r in rows:
            out.setdefault((r["arch"], int(r["seed"])), r)
    return list(out.values())


def load(profile, table_rows: list[dict], seeds, seed: int = 0) -> dict:
    """What a candidate study reads: every candidate's standalone items on ``seeds`` and its fresh
    fine-tunes, grouped per target, with the noise model and the decision clusters.

    Returns:
        ``{"missing", "status", ...}``: ``missing`` is True while an item or a fine-tune is
        absent (``status`` then counts them: ``items``, ``done``, ``fresh_finetunes``); else
        ``status`` adds the noise model (pooled seed SDs of validation and test mIoU in points,
        their df, the within-seed correlation ``rho`` on the table's non-candidate items) and
        the decision clusters, and the dict holds ``items``, ``archs``, ``val``/``test``/``seconds``
        (``(archs, seeds)``), ``fresh`` (``(archs, draws)``), ``targets``, ``rows_of``,
        ``groups``, the targets' cluster ``labels`` and ``noise`` (``sd_val``, ``sd_test``, ``rho``:
        :func:`noise_ci`'s arguments).
    """
    candidates = F.read_choice_candidates(profile)
    archs = CT.candidate_archs(candidates)
    plan = CT.candidates_plan(profile, seeds, seed)
    records = B.finished_records(plan)
    replicates = [r for r in FC.read_replicates(profile) if int(r["replicate"]) in FC.FRESH_REPLICATES]
    status = {"items": len(plan.items), "done": len(records), "fresh_finetunes": len(replicates)}
    if len(records) < len(plan.items) or len(replicates) < len(archs) * len(FC.FRESH_REPLICATES):
        return {"missing": True, "status": status}
    items = [B.table_row(r) for r in records]
    targets, rows_of, groups = CT.target_groups(candidates, archs)
    pooled = _distinct_items(table_rows, items)
    sd_val, _ = F.pooled_seed_sd(pooled, "val_miou")
    sd_test, df = F.pooled_seed_sd(pooled)
    decisions = CT.clusters(rows_of)
    status.update({"seed_sd_val_pts": 100 * sd_val, "seed_sd_test_pts": 100 * sd_test, "seed_sd_df": df,
                   "rho": correlation_of_residuals(list(table_rows), set(archs)),
                   "n_distinct_decisions": len(decisions), "clusters": "; ".join("+".join(c) for c in decisions)})
    return {"missing": False, "status": status, "items": items, "archs": archs,
            "val": seed_matrix(items, archs, "val_miou", seeds), "test": seed_matrix(items, archs, "test_miou", seeds),
            "seconds": seed_matrix(items, archs, "seconds", seeds),
            "fresh": CT.fresh_matrix(replicates, archs), "targets": targets, "rows_of": rows_of, "groups": groups,
            "labels": np.array([next(i for i, c in enumerate(decisions) if t in c) for t in targets]),
            "noise": (sd_val, sd_test, status["rho"])}


def study(profile, latency, table_rows: list[dict], seed: int = 0, resamples: int = RESAMPLES) -> dict:
    """The registered readings of ``choice_standalone``, or what is still missing. With
    ``search.final_build`` the data are made here first (:func:`build_here`).

    Returns:
        ``{"status", "targets", "contrasts", "picks"}``: ``status`` counts the candidates' items
        on :data:`SEEDS` (``items``, ``done``), the fresh fine-tunes, the noise model (pooled seed
        SDs and the validation/test correlation ``rho``) and the decision clusters; ``targets``
        per target each rule's value and gap to the best table architecture within the budget
        (``gap_<rule>_pts``), the goal fold's pick with its gap and 95 % CI (``goal_*``), and the
        trainings' seconds; ``contrasts`` the registered contrasts with the noise bootstrap's CI
        and mean, the cluster bootstrap's CI and the verdict; ``picks`` every (target, fold)
        pick of the rules without draws. Empty lists while data are missing.
    """
    if profile.search.final_build:
        build_here(profile, seed)
    data = load(profile, table_rows, SEEDS, seed)
    if data["missing"]:
        return {"status": data["status"], "targets": [], "contrasts": [], "picks": []}
    status, items, archs = data["status"], data["items"], data["archs"]
    val, test, fresh, groups = data["val"], data["test"], data["fresh"], data["groups"]
    targets, rows_of, labels = data["targets"], data["rows_of"], data["labels"]
    values = rule_values(groups, val, test, fresh)
    pairs = (PRIMARY, *SECONDARY)
    cis = noise_ci(groups, val, test, fresh, *data["noise"], pairs, seed, resamples)
    contrasts = [contrast(arm, control, values, cis[(arm, control)], labels, seed, resamples) for arm, control in pairs]
    goal = _goal_rows(profile, groups, archs, val, items, table_rows, latency, targets)
    target_rows = _target_rows(targets, rows_of, groups, values, goal, data["seconds"], archs, (val, test, fresh))
    return {"status": status, "targets": target_rows, "contrasts": contrasts,
            "picks": _pick_rows(targets, rows_of, groups, archs, val, test, fresh)}


def contrast(arm: str, control: str, values: dict, ci: tuple, labels: np.ndarray, seed: int, resamples: int,
             primary: tuple[str, str] = PRIMARY, stream: int = BOOTSTRAP_STREAM) -> dict:
    """One registered contrast's row: value(``arm``) minus value(``control``), mean over the
    targets (points), the noise bootstrap's ``ci`` (low, high, mean) and the cluster bootstrap's
    CI over the decision ``labels``, each with its verdict (:func:`~linas_lib.analysis.final_choice.verdict`)."""
    diff = values[arm] - values[control]
    low, high, boot_mean = (100 * v for v in ci)
    c_low, c_high = cluster_ci(100 * diff, labels, seed, resamples, stream)
    differ = ~np.isclose(values[arm], values[control], rtol=0.0, atol=1e-12)  # float sums of equal picks
    return {"arm": arm, "control": control, "reading": "primary" if (arm, control) == primary else "secondary",
            "diff_pts": 100 * float(diff.mean()), "diff_ci95_low_pts": low, "diff_ci95_high_pts": high,
            "boot_mean_pts": boot_mean, "verdict": FC.verdict(low, high) if math.isfinite(low + high) else "not computed",
            "cluster_ci95_low_pts": c_low, "cluster_ci95_high_pts": c_high,
            "cluster_verdict": FC.verdict(c_low, c_high) if math.isfinite(c_low + c_high) else "not computed",
            "n_targets": len(diff), "n_targets_differing": int(differ.sum()),
            "n_decisions_differing": len(set(labels[differ].tolist()))}


def _goal_rows(profile, groups, archs, val, items, table_rows, latency, targets) -> dict[str, dict]:
    """Per target, 05's goal reading of fold :data:`GOAL_FOLD`: its ``standalone`` pick read on
    the other seeds against the best table architecture within the budget on the same seeds
    (:func:`~linas_lib.analysis.final.final_rows`: its t interval on the pooled seed SD of those
    items, as 05's goal rows)."""
    fold = SEEDS.index(GOAL_FOLD)
    chosen = [{"target": t, "arch": archs[g[_first_max(val[g, fold])]]} for t, g in zip(targets, groups)]
    others = [r for r in items if int(r["seed"]) != GOAL_FOLD]
    table = [r for r in table_rows if int(r["seed"]) != GOAL_FOLD]  # the reference on the same seeds
    return {r["target"]: r for r in F.final_rows(chosen, others, table, latency)}


GOAL_FIELDS = ("chosen_test_miou_mean", "miou_gap_to_bench_pts", "miou_gap_ci95_low_pts", "miou_gap_ci95_high_pts",
               "miou_gap_xfit_pts")  # a goal row's fields a target row keeps (prefixed ``goal_``)


def goal_fields(goal_row: dict, group: np.ndarray, archs: list[str]) -> dict:
    """A target row's ``goal_*`` fields: the goal fold's pick, its WS rank among the target's
    candidates and its :data:`GOAL_FIELDS` from 05's goal row."""
    return {"goal_arch": goal_row["arch"], "goal_ws_rank": int(list(group).index(archs.index(goal_row["arch"])) + 1),
            **{f"goal_{k}": goal_row.get(k, math.nan) for k in GOAL_FIELDS}}


def _target_rows(targets, rows_of, groups, values, goal, seconds, archs, signals) -> list[dict]:
    val, test, fresh = signals
    rows = []
    for i, (t, g) in enumerate(zip(targets, groups)):
        row = {"target": t, "n_candidates": len(g)}
        g_row = goal[t]
        bench_best = g_row.get("best_bench_test_miou_mean", math.nan)
        row.update({"best_bench_arch": g_row.get("best_bench_arch", ""), "best_bench_miou": bench_best})
        for rule, v in values.items():
            row.update({f"value_{rule}": float(v[i]), f"gap_{rule}_pts": 100 * (bench_best - float(v[i]))})
        room = values["oracle"][i] - values["random"][i]
        row["standalone_share_of_room"] = float((values["standalone"][i] - values["random"][i]) / room) if room else math.nan
        row.update(goal_fields(g_row, g, archs))
        top = g[_top(g, fresh)]  # (TOP, draws): the candidates standalone_top3 trains per draw
        row.update({"train_s_standalone": float(seconds[g].sum(axis=0).mean()),
                    "train_s_standalone_top3": float(seconds[top].sum(axis=0).mean())})
        ws = np.array([float(r["ws_miou"]) for r in rows_of[t]])
        row.update(_taus(g, val, test, fresh, ws))
        rows.append(row)
    return rows


TAU_SIGNALS = ("val", "ws", "fresh_mean")


def _taus(group: np.ndarray, val: np.ndarray, test: np.ndarray, fresh: np.ndarray, ws: np.ndarray) -> dict[str, float]:
    """``tau_truth_<signal>``: Kendall tau-b of each fold's truth against seed ``s``'s validation
    mIoU, WS mIoU and the fresh fine-tunes' mean over the target's candidates, mean over the
    folds with a finite tau (NaN: every fold had a constant vector)."""
    from ..search.fidelity import kendall_tau

    truth = fold_truths(test)[group]
    out = {}
    for name in TAU_SIGNALS:
        taus = []
        for s in range(truth.shape[1]):
            signal = {"val": val[group, s], "ws": ws, "fresh_mean": fresh[group].mean(axis=1)}[name]
            taus.append(kendall_tau(truth[:, s], signal) if len(group) > 1 else math.nan)
        finite = [x for x in taus if math.isfinite(x)]
        out[f"tau_truth_{name}"] = float(np.mean(finite)) if finite else math.nan
        out[f"tau_truth_{name}_n"] = len(finite)
    return out


def _pick_rows(targets, rows_of, groups, archs, val, test, fresh) -> list[dict]:
    """Per target and fold, the ``standalone`` and ``oracle`` picks with their fold truth."""
    truth = fold_truths(test)
    rows = []
    for t, g in zip(targets, groups):
        rank = {archs[i]: k + 1 for k, i in enumerate(g)}
        for s, seed in enumerate(SEEDS):
            for rule, scores in (("standalone", val[g, s]), ("oracle", test[g, s])):
                pick = g[_first_max(scores)]
                rows.append({"target": t, "fold_seed": seed, "rule": rule, "arch": archs[pick],
                             "ws_rank": rank[archs[pick]], "fold_truth_miou": float(truth[pick, s])})
    return rows


def study_figures(result: dict, name: str, rules) -> dict[str, float]:
    """A candidate study's summary figures under ``<name>.``: its status; per registered
    contrast ``contrast.<arm>_vs_<control>.<diff_pts|diff_ci95_low_pts|diff_ci95_high_pts|
    boot_mean_pts|cluster_ci95_low_pts|cluster_ci95_high_pts|n_targets_differing|n_decisions_differing>``;
    per rule in ``rules`` ``<rule>.n_within_1pt`` and ``.value_mean``; the goal fold's
    ``goal.<miou_gap_to_bench_pts|miou_gap_ci95_low_pts|miou_gap_ci95_high_pts|miou_gap_xfit_pts>.<target>``
    with ``goal.n_within_1pt``."""
    out = {f"{name}.{k}": float(v) for k, v in result["status"].items() if k != "clusters"}
    for c in result["contrasts"]:
        prefix = f"{name}.contrast.{c['arm']}_vs_{c['control']}"
        out.update({f"{prefix}.{k}": float(c[k]) for k in (
            "diff_pts", "diff_ci95_low_pts", "diff_ci95_high_pts", "boot_mean_pts", "cluster_ci95_low_pts",
            "cluster_ci95_high_pts", "n_targets_differing", "n_decisions_differing")})
    rows = result["targets"]
    if not rows:
        return out
    for rule in rules:
        out[f"{name}.{rule}.n_within_1pt"] = float(sum(r[f"gap_{rule}_pts"] <= 1.0 for r in rows))
        out[f"{name}.{rule}.value_mean"] = float(np.mean([r[f"value_{rule}"] for r in rows]))
    for k in GOAL_FIELDS[1:]:
        out.update({f"{name}.goal.{k}.{r['target']}": float(r[f"goal_{k}"]) for r in rows})
    out[f"{name}.goal.n_within_1pt"] = float(sum(r["goal_miou_gap_to_bench_pts"] <= 1.0 for r in rows))
    return out


def share_of_room(rows: list[dict], arm: str) -> float:
    """The mean over targets of ``arm``'s value minus ``random``'s over that of ``oracle`` minus
    ``random``: how much of the room between a random candidate and the oracle's pick a rule takes."""
    room = np.mean([r["value_oracle"] - r["value_random"] for r in rows])
    gain = np.mean([r[f"value_{arm}"] - r["value_random"] for r in rows])
    return float(gain / room) if room else math.nan


def figures(result: dict) -> dict[str, float]:
    """:func:`study_figures` under ``choice_standalone.``, ``choice_standalone.tau_truth_<signal>.mean``
    and ``choice_standalone.standalone.share_of_room`` (:func:`share_of_room`)."""
    out = study_figures(result, "choice_standalone", (*RULES, *REFERENCES))
    rows = result["targets"]
    if not rows:
        return out
    for name in TAU_SIGNALS:  # the mean over every finite (target, fold) tau
        n = sum(r[f"tau_truth_{name}_n"] for r in rows)
        total = sum(r[f"tau_truth_{name}"] * r[f"tau_truth_{name}_n"] for r in rows if r[f"tau_truth_{name}_n"])
        out[f"choice_standalone.tau_truth_{name}.mean"] = float(total / n) if n else math.nan
    out["choice_standalone.standalone.share_of_room"] = share_of_room(rows, "standalone")
    return out
