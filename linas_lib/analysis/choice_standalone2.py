"""Study ``choice_standalone2`` (notebook 09): does the mean of two standalone trainings per
candidate pick 05's final network better than one fine-tune?

The next rung after :mod:`~linas_lib.analysis.choice_standalone` (notebooks/studies/09_final_choice.md: registered
2026-12-07 at 6b898d4): every candidate of 05's ``choice_candidates.csv`` has standalone items on
:data:`SEEDS` (seed 3 trained for this study: ``linas bench candidates --seeds 3``). The four
seeds split into two pairs in three ways; each split gives two folds, one per direction
(:func:`folds`). A fold picks on its pick pair's **validation** mIoU and scores every rule's
pick on the mean **test** mIoU of the other pair (the fold's truth), so every rule of a fold is
read on the same truth and no pick reads a seed it is scored on. A rule's value on a target is
its pick's fold truth averaged over the folds (and over ``choice_truth``'s fresh fine-tune draws
for a rule that fine-tunes). The goal's reading is the fold that picks on :data:`GOAL_PICK`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import choice_standalone as CS
from . import final as F
from . import final_choice as FC

SEEDS = (0, 1, 2, 3)  # every candidate's standalone items
NEW_SEEDS = (3,)  # trained for this study after its registration
GOAL_PICK = (2, 3)  # the goal row picks on these seeds' validation mIoU ...
GOAL_READ = (0, 1)  # ... and reads the pick and the best table architecture on these
RULES = ("standalone2", "standalone", "single", "ws")  # rules that pick
REFERENCES = ("oracle", "random")  # picks on the pick pair's test mIoU; the candidates' mean truth
PRIMARY = ("standalone2", "single")  # the registered primary contrast: arm, control
SECONDARY = (("standalone2", "standalone"), ("standalone2", "ws"))
BOOTSTRAP_STREAM = 9_093  # np.random.default_rng([seed, BOOTSTRAP_STREAM])


def folds(n_seeds: int = len(SEEDS)) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(pick, truth)`` column pairs: every split of the seeds into two halves, both directions.

    >>> folds(4)[:2]
    [((0, 1), (2, 3)), ((2, 3), (0, 1))]
    """
    out = []
    for pick in itertools.combinations(range(n_seeds), n_seeds // 2):
        truth = tuple(i for i in range(n_seeds) if i not in pick)
        if pick < truth:  # each split once, then both directions
            out += [(pick, truth), (truth, pick)]
    return out


def fold_values(group: np.ndarray, val: np.ndarray, test: np.ndarray, fresh: np.ndarray,
                pick: tuple[int, ...], truth_cols: tuple[int, ...]) -> dict[str, float]:
    """Per rule, its pick's truth (the mean test mIoU over ``truth_cols``) on one target and fold.
    ``np.argmax`` takes the first maximum and ``group`` is in WS rank order, so ties go to the
    better rank.

    Args:
        group: the target's candidates (rows of the matrices) in WS rank order.
        val, test: ``(archs, seeds)`` validation and test mIoU.
        fresh: ``(archs, draws)`` fresh fine-tunes.
        pick, truth_cols: the fold's pick and truth seed columns.
    """
    truth = test[group][:, list(truth_cols)].mean(axis=1)
    pick_val = val[group][:, list(pick)]
    return {"standalone2": float(truth[np.argmax(pick_val.mean(axis=1))]),
            "standalone": float(np.mean([truth[np.argmax(pick_val[:, j])] for j in range(len(pick))])),
            "single": float(truth[np.argmax(fresh[group], axis=0)].mean()),
            "ws": float(truth[0]),
            "oracle": float(truth[np.argmax(test[group][:, list(pick)].mean(axis=1))]),
            "random": float(truth.mean())}


def rule_values(groups: list[np.ndarray], val: np.ndarray, test: np.ndarray, fresh: np.ndarray) -> dict[str, np.ndarray]:
    """Per rule (:data:`RULES` and :data:`REFERENCES`), its value on each target: the mean over
    :func:`folds` of :func:`fold_values`."""
    splits = folds(val.shape[1])
    values = {rule: np.empty(len(groups)) for rule in (*RULES, *REFERENCES)}
    for t, group in enumerate(groups):
        per_fold = [fold_values(group, val, test, fresh, pick, truth) for pick, truth in splits]
        for rule in values:
            values[rule][t] = float(np.mean([v[rule] for v in per_fold]))
    return values


def study(profile, latency, table_rows: list[dict], seed: int = 0, resamples: int = CS.RESAMPLES) -> dict:
    """The registered readings of ``choice_standalone2``, or what is still missing. With
    ``search.final_build`` the data are made here first.

    Returns:
        ``{"status", "targets", "contrasts", "picks"}`` as
        :func:`~linas_lib.analysis.choice_standalone.study`: ``targets`` per target each rule's
        value and gap to the best table architecture within the budget (``gap_<rule>_pts``), the
        goal fold's pick with its gap and 95 % CI (``goal_*``) and the seconds of the
        ``standalone2`` trainings; ``contrasts`` the registered contrasts read on the
        bias-shifted interval (:func:`shifted`); ``picks`` every (target, fold) pick of
        ``standalone2`` and ``oracle``; ``cost`` :func:`distinct_cost`; ``coverage`` the primary's
        :func:`coverage_check` (:func:`coverage_size`); ``foresee`` :func:`goal_foreseeability`.
        Empty lists while data are missing.
    """
    if profile.search.final_build:
        CS.build_here(profile, seed, SEEDS)
    data = CS.load(profile, table_rows, SEEDS, seed)
    if data["missing"]:
        return {"status": data["status"], "targets": [], "contrasts": [], "picks": []}
    val, test, fresh, groups = data["val"], data["test"], data["fresh"], data["groups"]
    values = rule_values(groups, val, test, fresh)
    pairs = (PRIMARY, *SECONDARY)
    cis = CS.noise_ci(groups, val, test, fresh, *data["noise"], pairs, seed, resamples, values_fn=rule_values,
                      stream=BOOTSTRAP_STREAM)
    contrasts = [shifted(CS.contrast(arm, control, values, cis[(arm, control)], data["labels"], seed, resamples,
                                     PRIMARY, BOOTSTRAP_STREAM)) for arm, control in pairs]
    goal = _goal_rows(data, table_rows, latency)
    n_sets, n_resamples = coverage_size(profile)
    return {"status": data["status"], "targets": _target_rows(data, values, goal), "contrasts": contrasts,
            "picks": _pick_rows(data), "cost": distinct_cost(data),
            "coverage": [coverage_check(data, n_sets, n_resamples, seed)],
            "foresee": goal_foreseeability(data, goal, FORESEE_DRAWS, seed)}


def coverage_size(profile) -> tuple[int, int]:
    """The coverage check's data sets and resamples per set: a tenth and a quarter of the
    profile's ``ranking.bootstrap_resamples`` (the cpu profile: 200 and 500)."""
    n = profile.ranking.bootstrap_resamples
    return max(n // 10, 1), max(n // 4, 1)


def distinct_cost(data: dict) -> dict[str, float]:
    """``train_s_distinct``: the item seconds of one fold's two trainings of every distinct
    candidate (a candidate shared between targets counted once), mean over the folds; beside it
    ``n_distinct_candidates``."""
    seconds = data["seconds"]
    return {"n_distinct_candidates": len(data["archs"]),
            "train_s_distinct": float(np.mean([seconds[:, list(pick)].sum() for pick, _ in folds()]))}


def shifted(row: dict) -> dict:
    """A contrast row read on its bias-shifted noise interval: the percentile interval moved by
    the estimate minus the bootstrap mean (the bootstrap redraws around observed seed means,
    whose spread holds seed noise, so its resamples favour rules that pick on validation). The
    raw interval and its verdict stay as ``raw_ci95_*_pts`` and ``raw_verdict``."""
    bias = row["boot_mean_pts"] - row["diff_pts"]
    low, high = row["diff_ci95_low_pts"] - bias, row["diff_ci95_high_pts"] - bias
    return {**row, "raw_ci95_low_pts": row["diff_ci95_low_pts"], "raw_ci95_high_pts": row["diff_ci95_high_pts"],
            "raw_verdict": row["verdict"], "diff_ci95_low_pts": low, "diff_ci95_high_pts": high,
            "verdict": FC.verdict(low, high) if math.isfinite(low + high) else "not computed"}


COVERAGE_STREAM = 9_094  # the coverage check's generator: np.random.default_rng([seed, COVERAGE_STREAM])
KNOWN_SEEDS = (0, 1, 2)  # the seeds read before the registration: the coverage check's true means


def coverage_check(data: dict, n_sets: int, resamples: int, seed: int = 0, n_truth: int = 2000) -> dict:
    """A synthetic check of the primary's two intervals (raw percentile and bias-shifted, 95 %).

    True means are the candidates' validation and test means over :data:`KNOWN_SEEDS`. Each
    synthetic data set draws four seeds around them with the study's noise model (pooled SDs,
    within-seed correlation) and resamples each candidate's fresh fine-tunes with replacement;
    its estimate and :func:`~linas_lib.analysis.choice_standalone.noise_ci` intervals are then
    compared with the true contrast, the mean of the contrast over ``n_truth`` such data sets.

    Returns:
        ``{"contrast", "true_diff_pts", "n_sets", "resamples", "coverage_raw", "coverage_shifted",
        "mean_estimate_pts", "mean_bias_pts", "mean_width_pts"}``.
    """
    rng = np.random.default_rng([seed, COVERAGE_STREAM])
    cols = [SEEDS.index(s) for s in KNOWN_SEEDS]
    mu_val, mu_test = data["val"][:, cols].mean(axis=1), data["test"][:, cols].mean(axis=1)
    sd_val, sd_test, rho = data["noise"]
    groups, fresh = data["groups"], data["fresh"]
    arm, control = PRIMARY

    def draw():
        z = rng.standard_normal((2, len(mu_val), len(SEEDS)))
        val = mu_val[:, None] + sd_val * z[0]
        test = mu_test[:, None] + sd_test * (rho * z[0] + math.sqrt(1.0 - rho * rho) * z[1])
        return val, test, np.take_along_axis(fresh, rng.integers(0, fresh.shape[1], size=fresh.shape), axis=1)

    def contrast(val, test, fr):
        values = rule_values(groups, val, test, fr)
        return 100 * float(np.mean(values[arm] - values[control]))

    truth = float(np.mean([contrast(*draw()) for _ in range(n_truth)]))
    hits_raw = hits_shifted = 0
    estimates, biases, widths = [], [], []
    for _ in range(n_sets):
        val, test, fr = draw()
        estimate = contrast(val, test, fr)
        ci = CS.noise_ci(groups, val, test, fr, sd_val, sd_test, rho, [PRIMARY], int(rng.integers(2**31)), resamples,
                         values_fn=rule_values, stream=COVERAGE_STREAM)[PRIMARY]
        low, high, boot = (100 * v for v in ci)
        bias = boot - estimate
        hits_raw += low <= truth <= high
        hits_shifted += low - bias <= truth <= high - bias
        estimates.append(estimate), biases.append(bias), widths.append(high - low)
    return {"contrast": f"{arm}_vs_{control}", "true_diff_pts": truth, "n_sets": n_sets, "resamples": resamples,
            "coverage_raw": hits_raw / n_sets, "coverage_shifted": hits_shifted / n_sets,
            "mean_estimate_pts": float(np.mean(estimates)), "mean_bias_pts": float(np.mean(biases)),
            "mean_width_pts": float(np.mean(widths))}


FORESEE_SD_PTS = 0.38  # amendment 2's model: one seed's validation SD (choice_standalone's pooled figure)
FORESEE_STREAM = 9_095  # np.random.default_rng([seed, FORESEE_STREAM])
FORESEE_DRAWS = 100_000


def goal_foreseeability(data: dict, goal: dict[str, dict], n_draws: int, seed: int = 0) -> dict[str, float]:
    """How foreseeable the goal fold was from what was known before seed 3 (amendment 2).

    Each draw gives every candidate a seed-3 validation mIoU: its :data:`KNOWN_SEEDS` mean plus
    N(0, :data:`FORESEE_SD_PTS` x sqrt(4/3)) points (the seed's noise and the mean's), seed 2's
    as observed. Per target the goal fold then picks on the mean over :data:`GOAL_PICK`; a pick
    passes when its mean test mIoU on :data:`GOAL_READ` is within 1 point of the goal row's best
    table architecture. A draw is shared by every target, so ``p_all`` is a joint probability.

    Returns:
        ``{"p_pass.<target>": ..., "p_all": ..., "n_draws": ...}``; a target without a table
        architecture within its budget reads NaN, and so does ``p_all``.
    """
    rng = np.random.default_rng([seed, FORESEE_STREAM])
    known = [SEEDS.index(s) for s in KNOWN_SEEDS]
    sd = FORESEE_SD_PTS / 100 * math.sqrt(1 + 1 / len(KNOWN_SEEDS))
    val3 = data["val"][:, known].mean(axis=1) + sd * rng.standard_normal((n_draws, len(data["archs"])))
    score = (data["val"][:, SEEDS.index(2)] + val3) / 2  # (draws, archs): the mean over seeds 2 and 3
    read = data["test"][:, [SEEDS.index(s) for s in GOAL_READ]].mean(axis=1)
    out, every = {}, np.ones(n_draws, dtype=bool)
    unknown = False
    for t, g in zip(data["targets"], data["groups"]):
        best = goal[t].get("best_bench_test_miou_mean", math.nan)
        if not math.isfinite(best):  # no table architecture within the budget: nothing to pass
            out[f"p_pass.{t}"], unknown = math.nan, True
            continue
        ok = (100 * (best - read[g]) <= 1.0)[np.argmax(score[:, g], axis=1)]
        out[f"p_pass.{t}"] = float(ok.mean())
        every &= ok
    return {**out, "p_all": math.nan if unknown else float(every.mean()), "n_draws": float(n_draws)}


def _goal_pick(group: np.ndarray, val: np.ndarray) -> int:
    """The goal fold's ``standalone2`` pick: the best mean validation mIoU over :data:`GOAL_PICK`."""
    cols = [SEEDS.index(s) for s in GOAL_PICK]
    return int(group[np.argmax(val[group][:, cols].mean(axis=1))])


def _goal_rows(data: dict, table_rows: list[dict], latency) -> dict[str, dict]:
    """Per target, the goal fold's pick read on the other seeds against the best table
    architecture within the budget on the same seeds (:func:`~linas_lib.analysis.final.final_rows`,
    05's goal rows and their t interval)."""
    archs = data["archs"]
    chosen = [{"target": t, "arch": archs[_goal_pick(g, data["val"])]} for t, g in zip(data["targets"], data["groups"])]
    others = [r for r in data["items"] if int(r["seed"]) in GOAL_READ]
    table = [r for r in table_rows if int(r["seed"]) in GOAL_READ]  # the reference on the same seeds
    return {r["target"]: r for r in F.final_rows(chosen, others, table, latency)}


def _target_rows(data: dict, values: dict[str, np.ndarray], goal: dict[str, dict]) -> list[dict]:
    seconds = data["seconds"]
    rows = []
    for i, (t, g) in enumerate(zip(data["targets"], data["groups"])):
        g_row = goal[t]
        bench_best = g_row.get("best_bench_test_miou_mean", math.nan)
        row = {"target": t, "n_candidates": len(g), "best_bench_arch": g_row.get("best_bench_arch", ""),
               "best_bench_miou": bench_best}
        for rule, v in values.items():
            row.update({f"value_{rule}": float(v[i]), f"gap_{rule}_pts": 100 * (bench_best - float(v[i]))})
        room = values["oracle"][i] - values["random"][i]
        row["standalone2_share_of_room"] = float((values["standalone2"][i] - values["random"][i]) / room) if room else math.nan
        row.update(CS.goal_fields(g_row, g, data["archs"]))
        row["train_s_standalone2"] = float(np.mean([seconds[g][:, list(pick)].sum() for pick, _ in folds()]))
        rows.append(row)
    return rows


def _pick_rows(data: dict) -> list[dict]:
    """Per target and fold, the ``standalone2`` and ``oracle`` picks with their fold truth."""
    archs, val, test = data["archs"], data["val"], data["test"]
    rows = []
    for t, g in zip(data["targets"], data["groups"]):
        for pick, truth_cols in folds():
            truth = test[g][:, list(truth_cols)].mean(axis=1)
            for rule, scores in (("standalone2", val), ("oracle", test)):
                k = int(np.argmax(scores[g][:, list(pick)].mean(axis=1)))
                rows.append({"target": t, "pick_seeds": "+".join(str(SEEDS[j]) for j in pick), "rule": rule,
                             "arch": archs[g[k]], "ws_rank": k + 1, "fold_truth_miou": float(truth[k])})
    return rows


def figures(result: dict) -> dict[str, float]:
    """:func:`~linas_lib.analysis.choice_standalone.study_figures` under ``choice_standalone2.``,
    ``choice_standalone2.standalone2.share_of_room`` and ``.train_s_mean`` (the seconds of one
    fold's 16 trainings per target, mean over the targets), ``choice_standalone2.train_s_distinct``
    and ``.n_distinct_candidates`` (:func:`distinct_cost`), ``choice_standalone2.coverage.<field>``
    (:func:`coverage_check`), ``choice_standalone2.foresee.<p_pass.<target> / p_all / n_draws>``
    (:func:`goal_foreseeability`)."""
    out = CS.study_figures(result, "choice_standalone2", (*RULES, *REFERENCES))
    rows = result["targets"]
    if rows:
        out["choice_standalone2.standalone2.share_of_room"] = CS.share_of_room(rows, "standalone2")
        out["choice_standalone2.standalone2.train_s_mean"] = float(np.mean([r["train_s_standalone2"] for r in rows]))
    out.update({f"choice_standalone2.{k}": float(v) for k, v in result.get("cost", {}).items()})
    out.update({f"choice_standalone2.foresee.{k}": float(v) for k, v in result.get("foresee", {}).items()})
    for row in result.get("coverage", []):
        out.update({f"choice_standalone2.coverage.{k}": float(v) for k, v in row.items() if k != "contrast"})
    return out
