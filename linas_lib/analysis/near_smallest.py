"""Does weight sharing over-rate networks near the sandwich rule's smallest path?

The sandwich rule trains the smallest path (``DWSep3x3_w50`` in every layer) at every step, so
networks that share most of its layers may score better with the shared weights than their
standalone training earns. 05's WS-loss arm picked one such network (four of its five layers
narrow depthwise-separable ones) for three targets and lost 1.3-2.0 points there, and the
benchmark table that validates the oracle holds one architecture with two or more of those
layers in 103 (``smallest_path_coverage.csv``), so the table cannot see such a bias.

The test (:func:`select_pairs`): among the search's pool (the compared runs' evaluations within
some budget) in the top ``TOP_SHARE`` by WS mIoU, the region a WS pick comes from, draw
``search.near_smallest_pairs`` architectures with at least ``MIN_LAYERS`` smallest-path layers
and match each with the unused pool architecture that has none and the closest WS mIoU. Were WS
unbiased there, the pairs' standalone accuracies would agree on average; the bias predicts the
near one lower. Both are trained with the benchmark table's recipe and seeds (``bench.seeds``;
``linas bench near-smallest``); :func:`pair_rows` gives per pair the standalone difference
(near minus far, test mIoU points) and :func:`summary` its mean over the pairs with a t interval
over pairs (the pairs are the unit: seed noise and architecture spread both enter).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..space import arch_string
from . import bench as B

TOP_SHARE = 0.25  # the pool's best WS quarter: where a WS pick comes from
MIN_LAYERS = 2  # smallest-path layers that make an architecture "near"
PAIRS_STREAM = 0x5A1  # the draw of the near architectures


def select_pairs(smallest, choices, miou, lat, budgets_ms, n_pairs: int, rng: np.random.Generator) -> list[dict]:
    """Up to ``n_pairs`` (near, far) pairs matched on WS mIoU (see the module docstring).

    Args:
        smallest: the smallest path ``(L,)``.
        choices, miou, lat: the pool as :func:`~linas_lib.search.experiment.union` gives it.
        budgets_ms: per target, in ``lat``'s column order.
        n_pairs: how many pairs (fewer when fewer near architectures qualify).
        rng: draws the near architectures.

    Returns:
        ``{pair, near_arch, far_arch, near_ws_miou, far_ws_miou, near_layers}`` per pair.
    """
    pool = np.flatnonzero((lat <= np.asarray(budgets_ms)).any(axis=1))
    if n_pairs <= 0 or not len(pool):
        return []
    layers = (choices == np.asarray(smallest)).sum(axis=1)
    cut = np.quantile(miou[pool], 1 - TOP_SHARE)
    near = pool[(layers[pool] >= MIN_LAYERS) & (miou[pool] >= cut)]
    far = list(pool[layers[pool] == 0])
    drawn = rng.choice(near, size=min(n_pairs, len(near)), replace=False) if len(near) else []
    rows = []
    for k, i in enumerate(drawn):
        if not far:
            break
        j = far.pop(int(np.argmin([abs(miou[f] - miou[i]) for f in far])))
        rows.append({"pair": k, "near_arch": arch_string(choices[i]), "far_arch": arch_string(choices[j]),
                     "near_ws_miou": float(miou[i]), "far_ws_miou": float(miou[j]), "near_layers": int(layers[i])})
    return rows


def select(profile, supernet, runs, experiment, seed: int) -> list[dict]:
    """:func:`select_pairs` of 05's objects (``search.near_smallest_pairs`` pairs; none: [])."""
    from ..search.experiment import union
    from ..supernet.model import candidate_param_counts, smallest_path

    rng = np.random.default_rng([seed, PAIRS_STREAM])
    return select_pairs(smallest_path(candidate_param_counts(supernet.model)), *union(runs), experiment.budgets_ms,
                        profile.search.near_smallest_pairs, rng)


def pairs_plan(profile, pairs: list[dict], seed: int = 0, folder: Path | None = None, features_fn=None,
               build_features: bool = False) -> B.Plan:
    """The items of both architectures of every pair x ``bench.seeds``, in the table's folder."""
    archs = list(dict.fromkeys(a for p in pairs for a in (p["near_arch"], p["far_arch"])))
    selection = [{"arch": a, "name": "near_smallest", "stratum": -1, "predicted_ms": math.nan} for a in archs]
    return B.plan_for(profile, selection, B.check_bench(profile).seeds, seed, folder, features_fn, build_features)


def build(profile_ref, pairs: list[dict], seed: int = 0, scheduler: str | None = None, workers: int | None = None,
          limit: int | None = None) -> dict:
    """Train the pending pair items on Dask; ``{"items", "done", "ran", "pending"}``.

    Raises:
        BenchError: items failed (the others are kept).
    """
    profile = B.as_profile(profile_ref)
    plan = pairs_plan(profile, pairs, seed, build_features=True)
    ran, failures = B.run_pending(plan, B._profile_ref(profile_ref), scheduler, workers, limit)
    B.raise_failures(failures, "near-smallest pairs")
    done = len(B.finished_records(plan))
    return {"items": len(plan.items), "done": done, "ran": ran, "pending": len(plan.items) - done}


def finished(profile, pairs: list[dict], seed: int = 0) -> list[dict]:
    """The pair items trained so far (table rows: ``arch``, ``seed``, ``test_miou``, ...)."""
    if not pairs:
        return []
    return [B.table_row(r) for r in B.finished_records(pairs_plan(profile, pairs, seed))]


def pair_rows(pairs: list[dict], items: list[dict]) -> list[dict]:
    """Per pair: each side's seeds and mean test mIoU, and ``diff_pts`` = 100 x (near - far)
    where both sides have every seed the other has (at least one)."""
    by_arch: dict[str, dict[int, float]] = {}
    for r in items:
        by_arch.setdefault(r["arch"], {})[int(r["seed"])] = float(r["test_miou"])
    rows = []
    for p in pairs:
        near, far = by_arch.get(p["near_arch"], {}), by_arch.get(p["far_arch"], {})
        row = {**p, "near_n_seeds": len(near), "far_n_seeds": len(far)}
        if near and far and set(near) == set(far):
            row.update({"near_test_miou": float(np.mean(list(near.values()))),
                        "far_test_miou": float(np.mean(list(far.values())))})
            row["diff_pts"] = 100 * (row["near_test_miou"] - row["far_test_miou"])
        rows.append(row)
    return rows


def summary(rows: list[dict], confidence: float = 0.95) -> dict[str, float]:
    """``near_smallest.diff_pts`` (mean over the trained pairs, test mIoU points, near minus far),
    its t interval over pairs (``_ci95_low`` / ``_ci95_high``, two pairs or more),
    ``near_smallest.ws_diff_pts`` (the same in WS mIoU: about 0 by the matching),
    ``near_smallest.n_pairs`` and ``near_smallest.n_pairs_trained``; empty without pairs."""
    from scipy.stats import t

    if not rows:
        return {}
    done = [r for r in rows if "diff_pts" in r]
    out = {"near_smallest.n_pairs": float(len(rows)), "near_smallest.n_pairs_trained": float(len(done))}
    if done:
        diffs = np.array([r["diff_pts"] for r in done])
        out["near_smallest.diff_pts"] = float(diffs.mean())
        out["near_smallest.ws_diff_pts"] = float(100 * np.mean([r["near_ws_miou"] - r["far_ws_miou"] for r in done]))
        if len(diffs) >= 2:
            half = float(t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * diffs.std(ddof=1) / math.sqrt(len(diffs))
            out.update({"near_smallest.diff_ci95_low_pts": out["near_smallest.diff_pts"] - half,
                        "near_smallest.diff_ci95_high_pts": out["near_smallest.diff_pts"] + half})
    return out


def read_pairs(profile) -> list[dict]:
    """05's ``near_smallest_pairs.csv`` of the profile.

    Raises:
        BenchError: the file is absent (run notebook 05 with ``search.near_smallest_pairs`` > 0
            first) or has an unparsable architecture (naming the file and row).
    """
    from ..paths import project_root
    from ..provenance import read_csv_table

    path = project_root() / "results" / profile.name / "05_pareto" / "near_smallest_pairs.csv"
    if not path.is_file():
        raise B.BenchError(f"{path} does not exist: run notebook 05_pareto (profile {profile.name}, "
                           "search.near_smallest_pairs > 0) first")
    archs = ("near_arch", "far_arch")
    return read_csv_table(path, columns=("pair", *archs), numeric=("near_ws_miou", "far_ws_miou"), archs=archs,
                          unique=("pair",), error=B.BenchError)
