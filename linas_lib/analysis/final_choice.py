"""05's final choice re-read under other choice rules, from its committed files (notebook
09_final_choice).

05 fine-tunes each target's ``search.choice_topk`` best WS candidates, twice with
``search.choice_retest``, and picks on the first fine-tune (rule ``finetune``). A rule of
:data:`~linas_lib.analysis.final.CHOICE_RULES` re-picks among the same candidates
(``choice_candidates.csv``); the picks are trained standalone with 05's recipe as benchmark
items (``linas bench final --rule <rule>``, or in this process with ``search.final_build``) and
compared like 05's choice: per target the gap to the best table architecture within the budget
(:func:`~linas_lib.analysis.final.final_rows`), and the rule minus 05's choice in test mIoU
(:func:`~linas_lib.analysis.final.arm_differences`, 05's pick as the control). No supernet,
no search: seconds, once the items exist.
"""

from __future__ import annotations

import concurrent.futures

from . import bench as B
from . import final as F

CONTROL_RULE = "finetune"  # 05's own rule: its picks are chosen.csv's
RULES = ("retest_mean",)  # the rules compared with it (notebooks/studies/09_final_choice.md: study retest_mean, registered 2026-12-07)
REPLICATES_FILE = "choice_replicates.csv"  # bench/: fine-tunes made after 05 (`linas bench retune`)
FRESH_REPLICATES = (2, 3, 4, 5)  # study choice_truth's fresh fine-tunes; 05 made replicates 0 and 1
COMMITTED_COLUMNS = {0: "finetuned_miou", 1: "finetuned_miou_retest"}  # 05's replicates in choice_candidates.csv
# a rule's sensitivity reading leaves out targets whose outcome was known or that suggested it
# (arm "<rule>_sensitivity"; targets the profile lacks are ignored)
SENSITIVITY = {"retest_mean": ("cpu-ort-2t", "rtx4090")}  # a profile with neither target gets no sensitivity arm
SMALLEST_EFFECT_PTS = 0.25  # the registered smallest effect of interest, test mIoU points


def verdict(low: float, high: float, margin: float = SMALLEST_EFFECT_PTS) -> str:
    """The registered reading of a contrast's 95 % CI: ``helps`` (above 0), ``hurts`` (below 0),
    ``equivalent`` (within +/- ``margin``), else ``inconclusive``."""
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    return "equivalent" if -margin < low and high < margin else "inconclusive"


def rule_chosen(chosen: list[dict], picks: list[dict]) -> list[dict]:
    """05's chosen rows with ``arch`` replaced by a rule's pick (``ws_rank``, ``score`` added).

    Raises:
        ValueError: the picks' targets differ from chosen.csv's.
    """
    by_target = {p["target"]: p for p in picks}
    if set(by_target) != {c["target"] for c in chosen}:
        raise ValueError(f"the candidates' targets {sorted(by_target)} differ from chosen.csv's "
                         f"{sorted(c['target'] for c in chosen)}")
    return [{**c, "arch": by_target[c["target"]]["arch"], "ws_rank": by_target[c["target"]]["ws_rank"],
             "score": by_target[c["target"]]["score"]} for c in chosen]


def study(profile, rules: tuple[str, ...], latency, table_rows: list[dict], seed: int = 0) -> dict:
    """Every rule's picks, their final-network rows and each rule minus 05's choice.

    With ``search.final_build`` the pending items are trained first, in this process.

    Returns:
        ``{"rows": [...], "arms": [...], "status": {...}}``: ``rows`` are
        :func:`~linas_lib.analysis.final.final_rows` per rule (``rule``, ``ws_rank`` added),
        ``arms`` the :func:`~linas_lib.analysis.final.arm_differences` of each rule other than
        05's (``arch_control``: 05's pick; ``verdict`` on the means), and of its
        :data:`SENSITIVITY` reading (arm ``<rule>_sensitivity``), ``status`` counts items (``items``, ``done``,
        ``pending``), ``n_changed.<rule>`` (targets whose pick differs from 05's) and
        ``control_matches`` (1.0 when rule ``finetune`` gives chosen.csv's pick on every
        multi-fidelity target: the re-read reproduces 05).
    """
    chosen = F.read_chosen(profile)
    candidates = F.read_choice_candidates(profile)
    picked = {rule: rule_chosen(chosen, F.rule_choice(candidates, rule)) for rule in (CONTROL_RULE, *rules)}
    every = [row for rows in picked.values() for row in rows]
    if profile.search.final_build:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            F.build_final(profile, every, seed, executor=pool, progress=False)
    plan = F.final_plan(profile, every, seed)
    items = F.finished_rows(plan)
    rows, arms = [], []
    for rule, mine in picked.items():
        for row, pick in zip(F.final_rows(mine, items, table_rows, latency), mine):
            rows.append({"rule": rule, "ws_rank": pick["ws_rank"], "score": pick["score"], **row})
        if rule != CONTROL_RULE:
            compared = [{**c, "arch_rule": c["arch"], F.CONTROL: o["arch"]} for c, o in zip(mine, chosen)]
            arms += _arm_rows(compared, items, table_rows, rule)
            if rule in SENSITIVITY:
                kept = [c for c in compared if c["target"] not in SENSITIVITY[rule]]
                if kept and len(kept) < len(compared):
                    arms += _arm_rows(kept, items, table_rows, f"{rule}_sensitivity")
    mf = [(c["arch"], p["arch"]) for c, p in zip(chosen, picked[CONTROL_RULE]) if c.get("rule") == "multi_fidelity"]
    status = {"items": len(plan.items), "done": len(items), "pending": len(plan.items) - len(items),
              "control_matches": float(bool(mf) and all(a == b for a, b in mf)),
              **{f"n_changed.{rule}": float(sum(c["arch"] != p["arch"] for c, p in zip(chosen, mine)))
                 for rule, mine in picked.items() if rule != CONTROL_RULE}}
    return {"rows": rows, "arms": arms, "status": status}


def _arm_rows(compared: list[dict], items: list[dict], table_rows: list[dict], name: str) -> list[dict]:
    """:func:`~linas_lib.analysis.final.arm_differences` of ``arch_rule`` against 05's pick, the
    control columns named for what they are here (05's pick, not the WS-only choice), and the
    means' :func:`verdict`."""
    rows = []
    for row in F.arm_differences(compared, items, table_rows, "arch_rule", name):
        row = {("arch_control" if k == F.CONTROL else "n_seeds_control" if k == "n_seeds_ws" else k): v
               for k, v in row.items()}
        if row["target"] in ("mean", "mean_differing") and "diff_ci95_low_pts" in row:
            row["verdict"] = verdict(row["diff_ci95_low_pts"], row["diff_ci95_high_pts"])
        rows.append(row)
    return rows


def machine_check(profile) -> dict[str, float]:
    """The picks' machine check, from ``bench/recheck_arch.csv`` (``linas bench recheck --arch``:
    an architecture's items trained again on the machine that trained the rule's picks):
    ``choice.machine_check.n_items``, ``n_identical`` and ``max_abs_test_miou_diff_pts``; empty
    without the file.

    Raises:
        BenchError: the file lacks a column or holds a non-finite value (naming the file and row).
    """
    from ..provenance import read_csv_table

    path = B.bench_dir(profile) / "recheck_arch.csv"
    if not path.is_file():
        return {}
    rows = read_csv_table(path, columns=("arch", "seed", "test_miou_diff", "identical"), numeric=("test_miou_diff",),
                          error=B.BenchError)
    return {"choice.machine_check.n_items": float(len(rows)),
            "choice.machine_check.n_identical": float(sum(str(r["identical"]) == "True" for r in rows)),
            "choice.machine_check.max_abs_test_miou_diff_pts": 100 * max(abs(float(r["test_miou_diff"])) for r in rows)}


def figures(result: dict) -> dict[str, float]:
    """``choice.<rule>.<gap figure>.<target>`` (:data:`~linas_lib.analysis.final.FINAL_FIGURES`),
    ``choice.<rule>.n_within_1pt`` and ``n_pending_targets``, ``choice_arm.<rule>.<diff figure>.<target|mean|
    mean_differing>`` and ``choice_arm.<rule>.n_pairs``, and the status counts."""
    out = {f"choice.{k}": float(v) for k, v in result["status"].items()}
    for rule in dict.fromkeys(r["rule"] for r in result["rows"]):
        mine = [r for r in result["rows"] if r["rule"] == rule]
        out.update(F.final_figures(mine, prefix=f"choice.{rule}"))
        read = [r for r in mine if "miou_gap_to_bench_pts" in r]
        out[f"choice.{rule}.n_pending_targets"] = float(len(mine) - len(read))
        if len(read) == len(mine):
            out[f"choice.{rule}.n_within_1pt"] = float(sum(r["miou_gap_to_bench_pts"] <= 1.0 for r in read))
    for row in result["arms"]:
        prefix = f"choice_arm.{row['arm']}"
        out.update({f"{prefix}.{k}.{row['target']}": row[k]
                    for k in ("diff_pts", "diff_ci95_low_pts", "diff_ci95_high_pts") if k in row})
        if row["target"] == "mean":
            out[f"{prefix}.n_pairs"] = float(row["n_pairs"])
    return out


def read_replicates(profile) -> list[dict]:
    """``bench/choice_replicates.csv`` (:func:`retune`): one row per (architecture, replicate),
    ``finetuned_miou``; empty without the file.

    Raises:
        BenchError: a missing column, a non-finite score, an unparsable architecture or an
            (architecture, replicate) twice, naming the file and row.
    """
    from ..provenance import read_csv_table

    path = B.bench_dir(profile) / REPLICATES_FILE
    if not path.is_file():
        return []
    return read_csv_table(path, columns=("arch", "replicate", "finetuned_miou"), numeric=("finetuned_miou",),
                          counts=("replicate",), archs=("arch",), unique=("arch", "replicate"), error=B.BenchError)


def retune(profile_ref, replicates=(0, *FRESH_REPLICATES), seed: int = 0, progress: bool = True) -> list[dict]:
    """Fine-tune every distinct candidate of 05's ``choice_candidates.csv`` again, one fine-tune
    per replicate, with 05's recipe on this machine's training of 05's supernet (05's
    :class:`~linas_lib.search.report.FineTuneScores`: one generator per architecture and
    replicate, cached per fine-tune, so an interrupted run resumes). Replicates 0 and 1 are 05's
    own: their scores are compared with the committed ones (``committed_miou``, ``identical``), an
    identity check of the oracle. Writes ``bench/choice_replicates.csv`` with the oracle's identity
    (``oracle``: supernet key, weights digest) in its provenance.

    Raises:
        BenchError: no replicate, a negative or repeated one, or 05's candidates missing (see
            :func:`~linas_lib.analysis.final.read_choice_candidates`).
    """
    from tqdm.auto import tqdm

    from ..provenance import provenance, write_csv
    from ..search.report import FineTuneScores, runs_dir, search_inputs
    from ..space import parse_arch

    if not replicates or any(int(k) < 0 for k in replicates) or len(set(replicates)) < len(replicates):
        raise B.BenchError(f"bench retune: replicates must be distinct whole numbers >= 0, at least one; "
                           f"got {list(replicates)}")
    profile = B.as_profile(profile_ref)
    candidates = F.read_choice_candidates(profile)
    committed = {k: {r["arch"]: float(r[column]) for r in candidates} for k, column in COMMITTED_COLUMNS.items()}
    archs = list(dict.fromkeys(r["arch"] for r in candidates))
    supernet, latency = search_inputs(profile, seed)
    folder = runs_dir(profile, supernet, latency)
    rows = []
    for k in replicates:
        scores = FineTuneScores(supernet, profile.search.choice_epochs, seed, folder, replicate=int(k))
        for arch in tqdm(archs, desc=f"fine-tunes, replicate {k}", unit="arch", disable=not progress):
            value = scores(parse_arch(arch))
            was = committed.get(int(k), {}).get(arch)
            rows.append({"arch": arch, "replicate": int(k), "finetuned_miou": value,
                         "committed_miou": "" if was is None else was,
                         "identical": "" if was is None else value == was})
    oracle = {"supernet_key": supernet.key, "weights_digest": supernet.weights_digest}
    write_csv(B.bench_dir(profile) / REPLICATES_FILE, rows,
              provenance(profile.name, profile.to_dict(), data_seed=seed, oracle=oracle))
    return rows


def replicate_figures(profile) -> dict[str, float]:
    """The identity check of :func:`retune`: ``choice.replicates.n_checked`` (05's replicates made
    again) and ``n_identical`` (equal to the committed score to every digit), and
    ``choice.replicates.max_abs_diff_pts``; ``choice.replicates.n_fresh`` counts the fine-tunes
    of the other replicates. Empty without the file."""
    rows = read_replicates(profile)
    checked = [r for r in rows if int(r["replicate"]) in COMMITTED_COLUMNS]
    if not rows:
        return {}
    out = {"choice.replicates.n_checked": float(len(checked)),
           "choice.replicates.n_identical": float(sum(str(r["identical"]) == "True" for r in checked)),
           "choice.replicates.n_fresh": float(len(rows) - len(checked))}
    if checked:
        out["choice.replicates.max_abs_diff_pts"] = 100 * max(abs(float(r["finetuned_miou"]) - float(r["committed_miou"]))
                                                              for r in checked)
    return out
