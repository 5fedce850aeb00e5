"""Final networks: each target's chosen architecture trained standalone and compared with the
benchmark table's best architecture within the same budget (notebook 05, ``linas bench final``).

The chosen architectures (05's ``chosen.csv``) become benchmark items -- the table's training
recipe, split, keys and items folder (:mod:`linas_lib.analysis.bench`) -- so an architecture
already in the table is not trained again and every number compares like with like.
``linas bench final`` trains the pending items on Dask (resumes per item); notebook 05 reads the
items that exist and reports the others as pending. Per target: the chosen network's test
mIoU and defect-class IoU (mean, std and n over ``search.final_seeds``), the best table
architecture predicted within the target's budget, the slowest and the fastest table
architectures within it, and ``miou_gap_to_bench_pts`` = 100 x (best table mIoU - chosen
mIoU): mIoU points below the best benchmark architecture within the budget (negative = better).

How sure a gap is (:func:`gap_uncertainty`): its standard error from the seed SD pooled over
every trained architecture (the table's and the chosen ones': about 100 degrees of freedom,
where one architecture's 2 or 3 seeds give 1 or 2; items the two means share count once) and a
95 % t interval. The interval treats the best table architecture as fixed. The best of some 50
noisy table means is biased upwards (the winner's curse), which makes the gap look worse than
it is; ``miou_gap_xfit_pts`` cross-fits instead: for each seed, the table architecture that is
best on the *other* seeds is read at this seed. With 2 seeds that pick rests on one noisy seed,
so the cross-fitted best falls short of the true best: the two gaps bracket the gap to the
true best (cross-fitted below, plain above). :func:`held_seed_gaps` (notebook 07, once the
table's seed extension exists) reads the best on seeds that did not pick it: the table
architecture best within the budget on the table's seeds, read on the extension's seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..space import parse_arch
from ..stats import t_half_width
from . import bench as B


def final_selection(chosen: list[dict]) -> list[dict]:
    """One bench selection row per distinct chosen architecture (named after its targets): each
    row's architecture of every arm it carries (:data:`ARMS`)."""
    targets: dict[str, list[str]] = {}
    for row in chosen:
        for column in ARMS:
            if row.get(column):
                targets.setdefault(row[column], []).append(row["target"])
    return [{"arch": arch, "name": "final:" + ",".join(dict.fromkeys(names)), "stratum": -1, "predicted_ms": math.nan}
            for arch, names in targets.items()]


# chosen.csv's architecture columns: the final choice (multi-fidelity where 05 used it), the
# WS-only choice, the control arm (absent when 05 chose by WS alone), and the WS-loss choice
# (search.loss_arm)
ARMS = ("arch", "arch_ws", "arch_ws_loss")
CONTROL = "arch_ws"
# the arms compared with CONTROL: (name in final_arms.csv, chosen.csv column, summary prefixes of
# its final_rows and of its contrasts)
CONTRASTS = (("multi_fidelity", "arch", "final", "final_arms"),
             ("ws_loss", "arch_ws_loss", "final_ws_loss", "final_loss_arm"))


def final_plan(profile, chosen: list[dict], seed: int = 0, folder: Path | None = None, features_fn=None,
               build_features: bool = False) -> B.Plan:
    """The items of the chosen architectures x ``search.final_seeds`` in the table's folder."""
    return B.plan_for(profile, final_selection(chosen), profile.search.final_seeds, seed, folder, features_fn,
                      build_features)


def build_final(profile_ref, chosen: list[dict], seed: int = 0, scheduler: str | None = None,
                workers: int | None = None, limit: int | None = None, folder: Path | None = None, executor=None,
                features_fn=None, progress: bool = True) -> dict:
    """Train the pending final-network items; ``{"items", "done", "ran", "pending"}``.

    Raises:
        BenchError: items failed (the others are kept).
    """
    profile = B.as_profile(profile_ref)
    plan = final_plan(profile, chosen, seed, folder, features_fn, build_features=features_fn is None)
    return B.build_plan(plan, profile_ref, "final networks", scheduler, workers, limit, executor, features_fn, progress)


def finished_rows(plan: B.Plan) -> list[dict]:
    """Table rows of the plan's finished items."""
    return [B.table_row(r) for r in B.finished_records(plan)]


def arch_means(rows: list[dict]) -> dict[str, dict]:
    """Per architecture: mean, std and n over seeds of test mIoU and test crack IoU."""
    out: dict[str, dict] = {}
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        entry = {"n_seeds": len(mine)}
        for metric in ("test_miou", "test_crack_iou"):
            values = np.array([r[metric] for r in mine], dtype=float)
            entry[f"{metric}_mean"] = float(values.mean())
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        out[arch] = entry
    return out


def final_rows(chosen: list[dict], final_items: list[dict], table: list[dict], latency) -> list[dict]:
    """Per target: the chosen network against the table's architectures within its budget.

    Args:
        chosen: 05's chosen rows ``{target, arch, budget_ms, within_budget, ...}``.
        final_items: finished item rows of the chosen architectures (:func:`finished_rows`).
        table: the benchmark table's rows.
        latency: the search's latency model (the table's architectures are predicted with it).
    """
    mine, bench = arch_means(final_items), arch_means(table)
    spread = pooled_seed_sd(list(table) + list(final_items))
    archs = list(bench)
    pred, within_of = within_budgets(archs, latency)
    rows = []
    for c in chosen:
        j = latency.target_names.index(c["target"])
        within = within_of[c["target"]]
        in_budget = set(within)
        row = {"target": c["target"], "arch": c["arch"], "budget_ms": float(latency.budgets_ms[j]),
               "chosen_within_budget": c.get("within_budget"), **_prefixed("chosen", mine.get(c["arch"])),
               "bench_archs_within": len(within)}
        if within:
            best = max(within, key=lambda a: bench[a]["test_miou_mean"])
            by_ms = sorted(within, key=lambda a: pred[archs.index(a), j])
            row.update({"best_bench_arch": best, **_prefixed("best_bench", bench[best]),
                        "slowest_within_arch": by_ms[-1], **_prefixed("slowest_within", bench[by_ms[-1]]),
                        "fastest_within_arch": by_ms[0], **_prefixed("fastest_within", bench[by_ms[0]])})
            if c["arch"] in mine:
                chosen_miou = mine[c["arch"]]
                row["miou_gap_to_bench_pts"] = 100 * (bench[best]["test_miou_mean"] - chosen_miou["test_miou_mean"])
                shared = shared_seeds(final_items, table, c["arch"]) if best == c["arch"] else 0
                row.update(gap_uncertainty(row["miou_gap_to_bench_pts"], spread, chosen_miou["n_seeds"],
                                           bench[best]["n_seeds"], shared))
                xfit = cross_fitted_best([r for r in table if r["arch"] in in_budget])
                if xfit is not None:
                    row["miou_gap_xfit_pts"] = 100 * (xfit - chosen_miou["test_miou_mean"])
        rows.append(row)
    return rows


def within_budgets(archs: list[str], latency) -> tuple[np.ndarray, dict[str, list[str]]]:
    """``(predicted ms (n, targets), {target: the architectures predicted within its budget, in
    order})`` of the search's latency model."""
    pred = latency.predict(np.array([parse_arch(a) for a in archs])) if archs else np.zeros((0, len(latency.target_names)))
    return pred, {t: [a for i, a in enumerate(archs) if pred[i, j] <= latency.budgets_ms[j]]
                  for j, t in enumerate(latency.target_names)}


def pooled_seed_sd(rows: list[dict], metric: str = "test_miou") -> tuple[float, int]:
    """Seed SD of ``metric`` pooled over architectures, and its degrees of freedom.

    ``sum((n_a - 1) s_a^2) / sum(n_a - 1)`` over architectures with >= 2 seeds; an
    (architecture, seed) pair listed twice (an item shared by the table and the final
    networks) counts once. ``(nan, 0)`` when no architecture has two seeds.
    """
    values: dict[str, dict[int, float]] = {}
    for r in rows:
        values.setdefault(r["arch"], {})[int(r["seed"])] = float(r[metric])
    groups = [np.array(list(v.values())) for v in values.values() if len(v) >= 2]
    df = sum(len(g) - 1 for g in groups)
    if df == 0:
        return math.nan, 0
    return math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / df), df


def shared_seeds(items: list[dict], table: list[dict], arch: str) -> int:
    """Seeds of ``arch`` that both the final items and the table hold (the same trained item)."""
    seeds = [{int(r["seed"]) for r in rows if r["arch"] == arch} for rows in (items, table)]
    return len(seeds[0] & seeds[1])


def gap_uncertainty(gap_pts: float, spread: tuple[float, int], n_chosen: int, n_best: int, n_shared: int = 0,
                    confidence: float = 0.95) -> dict:
    """Standard error and t interval of a gap between two seed means, in mIoU points.

    ``Var = sd^2 (1/n_chosen + 1/n_best - 2 n_shared / (n_chosen n_best))``: items in both
    means (the chosen architecture is the best table one) cancel out.

    Args:
        gap_pts: the gap, in points.
        spread: :func:`pooled_seed_sd` ``(sd, df)`` (sd as a fraction).
        n_chosen, n_best: seeds behind each of the two means.
        n_shared: trained items in both means.

    Returns:
        ``{miou_gap_se_pts, miou_gap_ci95_low_pts, miou_gap_ci95_high_pts}``; empty when the
        spread is unknown (no architecture with two seeds).
    """
    sd, df = spread
    if df == 0 or n_chosen < 1 or n_best < 1:
        return {}
    se = 100 * sd * math.sqrt(max(1 / n_chosen + 1 / n_best - 2 * n_shared / (n_chosen * n_best), 0.0))
    half = t_half_width(se, df, confidence)
    return {"miou_gap_se_pts": se, "miou_gap_ci95_low_pts": gap_pts - half, "miou_gap_ci95_high_pts": gap_pts + half}


def cross_fitted_best(rows: list[dict], metric: str = "test_miou") -> float | None:
    """The best architecture's mean ``metric`` with less of the winner's curse.

    For each seed, among the architectures that have it and at least one other seed, the one
    with the best mean over its *other* seeds is read at this seed; the result is the mean over
    seeds. None when no seed has such an architecture.
    """
    import pandas as pd

    if not rows:
        return None
    wide = pd.DataFrame(list(rows)).pivot_table(index="arch", columns="seed", values=metric, aggfunc="mean")
    matrix = wide.to_numpy(dtype=float)
    picks = []
    for s in range(matrix.shape[1]):
        others = np.delete(matrix, s, axis=1)
        usable = ~np.isnan(matrix[:, s]) & (np.sum(~np.isnan(others), axis=1) >= 1)
        if usable.any():
            other_mean = np.full(len(matrix), -np.inf)
            other_mean[usable] = np.nanmean(others[usable], axis=1)
            picks.append(matrix[int(np.argmax(other_mean)), s])
    return float(np.mean(picks)) if picks else None


def _prefixed(prefix: str, entry: dict | None) -> dict:
    """``entry``'s fields as ``<prefix>_<field>`` (pending: ``n_seeds`` 0, the rest left out)."""
    if entry is None:
        return {f"{prefix}_n_seeds": 0}
    return {f"{prefix}_{k}": v for k, v in entry.items()}


FINAL_FIGURES = ("miou_gap_to_bench_pts", "miou_gap_ci95_low_pts", "miou_gap_ci95_high_pts", "miou_gap_xfit_pts")


def final_figures(rows: list[dict], prefix: str = "final") -> dict[str, float]:
    """``<prefix>.<figure>.<target>`` for each of :data:`FINAL_FIGURES` the row has (the chosen
    network and a table architecture within its budget both have results)."""
    return {f"{prefix}.{name}.{r['target']}": r[name] for r in rows for name in FINAL_FIGURES if name in r}


def final_networks(profile, chosen: list[dict], seed: int, latency, table=None) -> tuple[list[dict], dict]:
    """05's final-network table and what it rests on.

    With ``search.final_build`` the pending items are trained first, in this process (one
    thread, no Dask cluster); otherwise ``linas bench final`` trains them and this reads
    what exists. ``table``: the benchmark table already loaded
    (:func:`~linas_lib.analysis.ranking.load_table`; None: loaded here).

    Returns:
        ``(rows, status)``: :func:`final_rows` of the chosen architectures (``arch``);
        ``{items, done, pending, table, seeds}`` (items of every arm), and, where the rows carry
        the WS-only control arm ``arch_ws`` and an arm to compare with it (:func:`compared_arms`),
        ``control_rows`` (:func:`final_rows` of the control, the same seed SD), ``arm_rows``
        (``{chosen.csv column: its final_rows}`` of the arms other than ``arch``) and ``arms``
        (:func:`arm_differences` of each compared arm, stacked).
    """
    import concurrent.futures

    from .ranking import load_table

    if profile.search.final_build:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            build_final(profile, chosen, seed, executor=pool, progress=False)
    plan = final_plan(profile, chosen, seed)
    items = finished_rows(plan)
    table = table if table is not None else load_table(profile, seed)
    rows = final_rows(chosen, items, table.rows, latency)
    status = {"items": len(plan.items), "done": len(items), "pending": len(plan.items) - len(items),
              "table": table.message or table.path, "seeds": list(profile.search.final_seeds)}
    compared = compared_arms(profile, chosen)
    if compared:
        arm_of = lambda column: [{**c, "arch": c[column]} for c in chosen]  # noqa: E731
        status.update({"control_rows": final_rows(arm_of(CONTROL), items, table.rows, latency),
                       "arm_rows": {column: final_rows(arm_of(column), items, table.rows, latency)
                                    for _, column, _, _ in compared if column != "arch"},
                       "arms": [r for name, column, _, _ in compared
                                for r in arm_differences(chosen, items, table.rows, column, name)]})
    return rows, status


def compared_arms(profile, chosen: list[dict]) -> list[tuple[str, str, str, str]]:
    """The :data:`CONTRASTS` this run has: the multi-fidelity arm where ``search.choice_topk`` > 0,
    the WS-loss arm where every row carries ``arch_ws_loss``; none without the control ``arch_ws``."""
    if not chosen or not all(c.get(CONTROL) for c in chosen):
        return []
    has = {"arch": profile.search.choice_topk > 0, "arch_ws_loss": all(c.get("arch_ws_loss") for c in chosen)}
    return [contrast for contrast in CONTRASTS if has[contrast[1]]]


def arm_differences(chosen: list[dict], items: list[dict], table: list[dict], column: str = "arch",
                    name: str = "multi_fidelity") -> list[dict]:
    """An arm (chosen.csv's ``column``, ``arm`` = ``name``) minus the WS-only control
    (``arch_ws``), test mIoU points; ``arch`` in the rows is the arm's architecture.

    One row per target (``n_seeds`` and ``n_seeds_ws`` of the two arms; no difference while an
    arm is untrained), then, once every target has both arms, ``target`` "mean" (over every
    target, zeros included: the rule as deployed) and "mean_differing" (over the distinct
    (arm, control) pairs that differ, each once). Each is a contrast of architecture seed
    means, ``sum_a w_a mean_a``; its standard error is ``sd sqrt(sum_a w_a^2 / n_a)`` with the
    seed SD pooled over the table and the final items (:func:`pooled_seed_sd`), so an
    architecture in both arms cancels out and targets that share architectures are not counted
    as independent. The 95 % t interval is conditional on this supernet and search: seed noise
    only. ``n_pairs``: the distinct differing pairs among all targets.
    """
    means = arch_means(items)
    spread = pooled_seed_sd(list(table) + list(items))
    pairs_of = [(c[column], c[CONTROL]) for c in chosen]
    differing = list(dict.fromkeys(p for p in pairs_of if p[0] != p[1]))
    rows = []
    for c, (arch, control) in zip(chosen, pairs_of):
        row = {"arm": name, "target": c["target"], "arch": arch, "arch_ws": control, "n_targets": 1,
               "n_seeds": means.get(arch, {}).get("n_seeds", 0), "n_seeds_ws": means.get(control, {}).get("n_seeds", 0)}
        if row["n_seeds"] and row["n_seeds_ws"]:
            row.update(_contrast(_pair_weights([(arch, control)]), means, spread))
        rows.append(row)
    if chosen and all(r["n_seeds"] and r["n_seeds_ws"] for r in rows):
        for target, group in (("mean", pairs_of), ("mean_differing", differing)):
            if group:
                rows.append({"arm": name, "target": target, "arch": "", "arch_ws": "",
                             "n_targets": len(group) if target == "mean" else sum(a != b for a, b in pairs_of),
                             "n_pairs": len(differing), **_contrast(_pair_weights(group), means, spread)})
    return rows


def _pair_weights(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Per architecture its weight in the mean over ``pairs`` of (first - second): an architecture
    on both sides nets out."""
    weights: dict[str, float] = {}
    for a, b in pairs:
        weights[a] = weights.get(a, 0.0) + 1 / len(pairs)
        weights[b] = weights.get(b, 0.0) - 1 / len(pairs)
    return weights


def _contrast(weights: dict[str, float], means: dict[str, dict], spread: tuple[float, int],
              confidence: float = 0.95) -> dict:
    """``sum_a w_a`` x test mIoU mean of ``a`` in points, with its SE and t interval."""
    est = 100 * sum(w * means[a]["test_miou_mean"] for a, w in weights.items())
    sd, df = spread
    se = 100 * sd * math.sqrt(sum(w * w / means[a]["n_seeds"] for a, w in weights.items()))
    if df == 0:
        return {"diff_pts": est}
    half = t_half_width(se, df, confidence)
    return {"diff_pts": est, "diff_se_pts": se, "diff_ci95_low_pts": est - half, "diff_ci95_high_pts": est + half}


def arm_figures(control_rows: list[dict], arms: list[dict], arm_rows: dict | None = None) -> dict[str, float]:
    """``final_ws.<figure>.<target>`` (the WS-only control arm's :func:`final_rows`, as
    :func:`final_figures`), the same of each arm in ``arm_rows`` under its :data:`CONTRASTS` rows
    prefix (``final_ws_loss``), and per compared arm ``<prefix>.<diff_pts|diff_ci95_low_pts|
    diff_ci95_high_pts>.<target>`` of :func:`arm_differences` (targets, and ``mean`` and
    ``mean_differing`` once every target has both arms) with ``<prefix>.n_pairs`` and
    ``<prefix>.n_targets_pending`` (prefix ``final_arms``: the multi-fidelity arm,
    ``final_loss_arm``: the WS-loss arm); empty without a compared arm."""
    if not arms:
        return {}
    out = final_figures(control_rows, prefix="final_ws")
    for name, column, rows_prefix, prefix in CONTRASTS:
        if column in (arm_rows or {}):
            out.update(final_figures(arm_rows[column], prefix=rows_prefix))
        mine = [r for r in arms if r.get("arm", "multi_fidelity") == name]
        if not mine:
            continue
        for row in mine:
            out.update({f"{prefix}.{k}.{row['target']}": row[k]
                        for k in ("diff_pts", "diff_ci95_low_pts", "diff_ci95_high_pts") if k in row})
            if row["target"] == "mean":
                out[f"{prefix}.n_pairs"] = float(row["n_pairs"])
        out[f"{prefix}.n_targets_pending"] = float(sum(1 for r in mine if "n_seeds" in r
                                                       and not (r["n_seeds"] and r["n_seeds_ws"])))
    return out


def read_chosen(profile) -> list[dict]:
    """05's ``chosen.csv`` of the profile (one row per target; :data:`ARMS`: the architectures).

    Raises:
        BenchError: the file is absent (run notebook 05 first), lacks ``target``/``arch``, or has an
            unparsable architecture (in ``arch``, or another :data:`ARMS` column where the file has it) or a
            target twice (naming the file and row).
    """
    from ..paths import project_root
    from ..provenance import read_csv_table

    path = project_root() / "results" / profile.name / "05_pareto" / "chosen.csv"  # not created if absent
    if not path.is_file():
        raise B.BenchError(f"{path} does not exist: run notebook 05_pareto (profile {profile.name}) first")
    rows = read_csv_table(path, columns=("target", "arch"), archs=("arch",), unique=("target",), error=B.BenchError)
    arms = tuple(a for a in ARMS if a in rows[0])  # every arm 05 wrote is trained
    if arms != ("arch",):
        rows = read_csv_table(path, columns=("target", *arms), archs=arms, unique=("target",), error=B.BenchError)
    return rows


def held_seed_gaps(final: list[dict], table: list[dict], added: list[dict], latency,
                   final_seeds=()) -> list[dict]:
    """Per target: the gap to the table architecture best within the budget on the table's
    seeds, its accuracy read on the seed extension's seeds, which picked nothing (no winner's
    curse), with a 95 % t interval from the seed SD pooled over the table and the extension.

    Args:
        final: 05's final-network rows (:func:`read_final_networks`): ``target``, ``arch``,
            ``budget_ms``, ``chosen_n_seeds``, ``chosen_test_miou_mean``.
        table: the benchmark table's rows (the seeds the best is picked on).
        added: the seed extension's rows (:func:`~linas_lib.analysis.bench.extension_rows`).
        latency: the search's latency model (the table's architectures are predicted with it).
        final_seeds: the chosen networks' seeds. When the best is the chosen architecture, its
            extension item of a final seed is the chosen network's own (one key, one item):
            shared, it cancels out.

    Returns:
        ``{target, arch, best_arch, best_held_n_seeds, best_held_test_miou_mean,
        chosen_test_miou_mean, miou_gap_held_pts, miou_gap_held_ci95_low_pts,
        miou_gap_held_ci95_high_pts}`` per target with a chosen result and a best that the
        extension holds.

    Raises:
        BenchError: ``final`` names a target the latency model lacks, or another budget (a
            final-network table of another configuration: rerun 05).
    """
    picked, held = arch_means(table), arch_means(added)
    _, within_of = within_budgets(list(picked), latency)
    spread = pooled_seed_sd(list(table) + list(added))
    rows = []
    for row in final:
        _check_budget(row, latency)
        within = within_of[row["target"]]
        n_chosen, chosen = int(row.get("chosen_n_seeds") or 0), float(row.get("chosen_test_miou_mean", math.nan))
        if not within or n_chosen == 0 or not math.isfinite(chosen):
            continue  # no table architecture within the budget, or the chosen network still pending
        best = max(within, key=lambda a: picked[a]["test_miou_mean"])
        if best not in held:
            continue
        gap = 100 * (held[best]["test_miou_mean"] - chosen)
        held_seeds = {int(r["seed"]) for r in added if r["arch"] == best}
        shared = len(held_seeds & set(final_seeds)) if best == row["arch"] else 0
        bounds = gap_uncertainty(gap, spread, n_chosen, held[best]["n_seeds"], shared)
        rows.append({"target": row["target"], "arch": row["arch"], "best_arch": best,
                     "best_held_n_seeds": held[best]["n_seeds"], "best_held_test_miou_mean": held[best]["test_miou_mean"],
                     "chosen_test_miou_mean": chosen, "miou_gap_held_pts": gap,
                     **{k.replace("miou_gap_", "miou_gap_held_"): v for k, v in bounds.items() if "ci95" in k}})
    return rows


def _check_budget(row: dict, latency) -> None:
    target, names = row["target"], latency.target_names
    if target not in names:
        raise B.BenchError(f"05_pareto/final_networks.csv: target {target!r} is not a search target of this profile "
                           f"({', '.join(names)}): rerun notebook 05")
    budget = float(latency.budgets_ms[names.index(target)])
    if not math.isclose(float(row["budget_ms"]), budget, rel_tol=1e-6):
        raise B.BenchError(f"05_pareto/final_networks.csv: {target}'s budget is {row['budget_ms']} ms, this "
                           f"profile's {budget} ms: rerun notebook 05")


def held_seed_figures(rows: list[dict]) -> dict[str, float]:
    """``final_held.miou_gap_pts.<target>`` with ``final_held.miou_gap_ci95_low_pts.<target>`` /
    ``_high_`` from :func:`held_seed_gaps`."""
    names = {"miou_gap_held_pts": "miou_gap_pts", "miou_gap_held_ci95_low_pts": "miou_gap_ci95_low_pts",
             "miou_gap_held_ci95_high_pts": "miou_gap_ci95_high_pts"}
    return {f"final_held.{short}.{r['target']}": r[name] for r in rows for name, short in names.items() if name in r}


def read_final_networks(profile) -> list[dict] | None:
    """05's ``final_networks.csv`` of the profile (None when 05 has not written it).

    Raises:
        BenchError: a column :func:`held_seed_gaps` reads is missing or malformed (naming the file).
    """
    from ..paths import project_root
    from ..provenance import read_csv_table

    path = project_root() / "results" / profile.name / "05_pareto" / "final_networks.csv"
    if not path.is_file():
        return None
    return read_csv_table(path, columns=("target", "arch", "budget_ms", "chosen_n_seeds"), archs=("arch",),
                          numeric=("budget_ms",), counts=("chosen_n_seeds",), unique=("target",),
                          error=B.BenchError)


# choice rules re-read from 05's committed candidates (choice_candidates.csv, notebook 09):
# each maps a candidate row to its score; the highest score wins, ties to the better WS rank.
CHOICE_RULES = {
    "finetune": lambda r: r["finetuned_miou"],  # 05's rule: the first fine-tune alone
    "retest_mean": lambda r: (r["finetuned_miou"] + r["finetuned_miou_retest"]) / 2,  # both fine-tunes
}


def read_choice_candidates(profile) -> list[dict]:
    """05's ``choice_candidates.csv`` of the profile: per (target, candidate) its WS rank and both
    fine-tunes (``search.choice_retest``).

    Raises:
        BenchError: the file is absent (run notebook 05 first), lacks a column (05 ran without
            ``search.choice_retest``), or has a non-finite score, an unparsable architecture or a
            (target, WS rank) twice, naming the file and row.
    """
    from ..paths import project_root
    from ..provenance import read_csv_table

    path = project_root() / "results" / profile.name / "05_pareto" / "choice_candidates.csv"
    if not path.is_file():
        raise B.BenchError(f"{path} does not exist: run notebook 05_pareto (profile {profile.name}) first")
    scores = ("ws_miou", "finetuned_miou", "finetuned_miou_retest", "predicted_ms")
    return read_csv_table(path, columns=("target", "ws_rank", "arch", *scores), numeric=scores, counts=("ws_rank",),
                          archs=("arch",), unique=("target", "ws_rank"), error=B.BenchError)


def rule_choice(candidates: list[dict], rule: str) -> list[dict]:
    """Per target (in the candidates' order) the candidate ``rule`` (:data:`CHOICE_RULES`) picks:
    ``{"target", "arch", "ws_rank", "score"}``; ties go to the better WS rank.

    Raises:
        ValueError: an unknown rule (naming the known ones).
    """
    if rule not in CHOICE_RULES:
        raise ValueError(f"choice rule {rule!r}: expected one of {sorted(CHOICE_RULES)}")
    score = CHOICE_RULES[rule]
    out = []
    for target in dict.fromkeys(r["target"] for r in candidates):
        best = max((r for r in candidates if r["target"] == target), key=lambda r: (score(r), -int(r["ws_rank"])))
        out.append({"target": target, "arch": best["arch"], "ws_rank": int(best["ws_rank"]), "score": float(score(best))})
    return out
