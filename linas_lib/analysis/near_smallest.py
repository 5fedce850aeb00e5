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
(never one of 05's final picks, whose accuracy is known) and match each with the unused pool
architecture that has none, a parameter count within ``SIZE_TOLERANCE`` of its own, and the
closest WS mIoU. Matching on size too matters: near networks are small, standalone accuracy
grows with size, and WS correlates with it imperfectly, so at equal WS alone a smaller network
is expected to train worse even under an unbiased WS (regression to each group's mean). Were WS
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
from ..stats import mean_t_ci
from . import bench as B
from .final import ARMS, finished_rows

TOP_SHARE = 0.25  # the pool's best WS quarter: where a WS pick comes from
MIN_LAYERS = 2  # smallest-path layers that make an architecture "near"
SIZE_TOLERANCE = 0.1  # a far partner's parameter count within 10 % of the near one's
PAIRS_STREAM = 0x5A1  # the draw of the near architectures


def select_pairs(smallest, choices, miou, lat, budgets_ms, params, n_pairs: int, rng: np.random.Generator,
                 exclude=()) -> list[dict]:
    """Up to ``n_pairs`` (near, far) pairs matched on size and WS mIoU (see the module docstring).

    Args:
        smallest: the smallest path ``(L,)``.
        choices, miou, lat: the pool as :func:`~linas_lib.search.experiment.union` gives it.
        budgets_ms: per target, in ``lat``'s column order.
        params: each pool architecture's parameter count ``(n,)``.
        n_pairs: how many pairs (fewer when fewer near architectures qualify or find a partner).
        rng: draws the near architectures (in a random order; each takes its partner in turn).
        exclude: architecture strings never drawn or matched (05's final picks).

    Returns:
        ``{pair, near_arch, far_arch, near_ws_miou, far_ws_miou, near_params, far_params,
        near_layers}`` per pair.
    """
    pool = np.flatnonzero((lat <= np.asarray(budgets_ms)).any(axis=1))
    skip = set(exclude)
    pool = np.array([i for i in pool if arch_string(choices[i]) not in skip], dtype=np.int64)
    if n_pairs <= 0 or not len(pool):
        return []
    layers = (choices == np.asarray(smallest)).sum(axis=1)
    params = np.asarray(params, dtype=float)
    cut = np.quantile(miou[pool], 1 - TOP_SHARE)
    near = pool[(layers[pool] >= MIN_LAYERS) & (miou[pool] >= cut)]
    far = set(pool[layers[pool] == 0].tolist())
    rows = []
    for i in (rng.permutation(near) if len(near) else []):
        fits = sorted(f for f in far if abs(params[f] / params[i] - 1) <= SIZE_TOLERANCE)
        if not fits:
            continue  # no far network of its size: no pair
        j = fits[int(np.argmin([abs(miou[f] - miou[i]) for f in fits]))]
        far.discard(j)
        rows.append({"pair": len(rows), "near_arch": arch_string(choices[i]), "far_arch": arch_string(choices[j]),
                     "near_ws_miou": float(miou[i]), "far_ws_miou": float(miou[j]), "near_params": float(params[i]),
                     "far_params": float(params[j]), "near_layers": int(layers[i])})
        if len(rows) == n_pairs:
            break
    return rows


def select(profile, supernet, runs, experiment, chosen: list[dict], seed: int) -> list[dict]:
    """:func:`select_pairs` of 05's objects (``search.near_smallest_pairs`` pairs; none: []),
    excluding every architecture of ``chosen`` (05's final arms)."""
    from ..search.experiment import union
    from ..supernet.model import candidate_param_counts, smallest_path

    counts = np.asarray(candidate_param_counts(supernet.model))
    choices, miou, lat = union(runs)
    params = counts[np.arange(counts.shape[0]), choices].sum(axis=1)
    picks = {row[c] for row in chosen for c in ARMS if row.get(c)}
    rng = np.random.default_rng([seed, PAIRS_STREAM])
    return select_pairs(smallest_path(counts), choices, miou, lat, experiment.budgets_ms, params,
                        profile.search.near_smallest_pairs, rng, exclude=picks)


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
    plan = pairs_plan(B.as_profile(profile_ref), pairs, seed, build_features=True)
    return B.build_plan(plan, profile_ref, "near-smallest pairs", scheduler, workers, limit)


def finished(profile, pairs: list[dict], seed: int = 0) -> list[dict]:
    """The pair items trained so far (table rows: ``arch``, ``seed``, ``test_miou``, ...)."""
    return finished_rows(pairs_plan(profile, pairs, seed)) if pairs else []


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
    ``near_smallest.params_ratio`` (mean near / far parameter count: about 1 by the matching),
    ``near_smallest.n_pairs`` and ``near_smallest.n_pairs_trained``; empty without pairs."""
    if not rows:
        return {}
    done = [r for r in rows if "diff_pts" in r]
    out = {"near_smallest.n_pairs": float(len(rows)), "near_smallest.n_pairs_trained": float(len(done))}
    if done:
        diffs = np.array([r["diff_pts"] for r in done])
        out["near_smallest.diff_pts"] = float(diffs.mean())
        out["near_smallest.ws_diff_pts"] = float(100 * np.mean([r["near_ws_miou"] - r["far_ws_miou"] for r in done]))
        out["near_smallest.params_ratio"] = float(np.mean([r["near_params"] / r["far_params"] for r in done]))
        if len(diffs) >= 2:
            out["near_smallest.diff_ci95_low_pts"], out["near_smallest.diff_ci95_high_pts"] = mean_t_ci(diffs, confidence)
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
