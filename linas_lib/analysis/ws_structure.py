"""What structure the weight-sharing (WS) oracle has, and which part of it standalone training shares.

The model-based searches (:mod:`linas_lib.search.surrogate`) model WS mIoU as additive over
the layers' choices, or additive plus adjacent-layer pairs. This module fits both to the
distinct architectures every search run evaluated (ridge least squares on one-hot features)
and asks two questions of each fit:

* how much of WS mIoU it explains: the residual SD on a random held-out share of the
  evaluations, in mIoU points;
* whether what it explains is what standalone training shares: the Kendall tau of the fit's
  prediction of the benchmark table's architectures against their standalone accuracy, beside
  raw WS's, with a paired bootstrap CI of the gap (:func:`~linas_lib.analysis.ranking.tau_gap`).

A fit that explains WS better but ranks the table no better has learnt the supernet's own
idiosyncrasies, which a search that exploits them finds but standalone training does not reward.

:func:`sweep` turns the pairs fit into a ceiling check: it predicts every architecture of the
space, and the predicted front of each target (best predicted mIoU at each LUT latency within
the budget) is evaluated. If the searches' best known front is near the oracle's true one, the
sweep adds little HV to it.
"""

from __future__ import annotations

import numpy as np

from ..space import LINAS_SPACE, SearchSpace
from .ranking import kendall, tau_gap

RIDGE = 1.0  # penalty of the least-squares fits (one-hot features: about one pseudo-observation per weight)
HELD_OUT_SHARE = 0.2
MODELS = ("additive", "pairs")


def features(space: SearchSpace, choices: np.ndarray, model: str):
    """Sparse one-hot design of ``choices`` ``(n, L)``: a column per (layer, choice), for
    ``"pairs"`` also one per (adjacent layer pair, choice pair), and an intercept column."""
    from scipy.sparse import csr_matrix

    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}; got {model!r}")
    A = np.asarray(choices, dtype=np.int64)
    n, L, C = len(A), space.n_layers, space.n_choices
    cols = [layer * C + A[:, layer] for layer in range(L)]
    width = L * C
    if model == "pairs":
        cols += [width + layer * C * C + A[:, layer] * C + A[:, layer + 1] for layer in range(L - 1)]
        width += (L - 1) * C * C
    cols.append(np.full(n, width))
    col = np.column_stack(cols)
    rows = np.repeat(np.arange(n), col.shape[1])
    return csr_matrix((np.ones(col.size), (rows, col.ravel())), shape=(n, width + 1))


def ridge_fit(X, y, ridge: float = RIDGE) -> np.ndarray:
    """Weights minimising ``|X w - y|^2 + ridge |w|^2`` (``X`` sparse or dense)."""
    gram = X.T @ X
    gram = gram.toarray() if hasattr(gram, "toarray") else np.asarray(gram)
    return np.linalg.solve(gram + ridge * np.eye(gram.shape[0]), np.asarray(X.T @ y).ravel())


def structure_rows(space: SearchSpace, choices, miou, table_choices, standalone, raw_ws, rng: np.random.Generator,
                   n_resamples: int = 2000, seed: int = 0) -> list[dict]:
    """One row for raw WS and one per model of :data:`MODELS` (module docstring).

    Args:
        space: the search space.
        choices: ``(n, L)`` evaluated architectures, without repeats.
        miou: ``(n,)`` their WS mIoU.
        table_choices: ``(m, L)`` the benchmark table's architectures.
        standalone: ``(m,)`` their mean standalone accuracy.
        raw_ws: ``(m,)`` their WS mIoU.
        rng: draws the held-out split.
        n_resamples: bootstrap resamples of the tau gaps.
        seed: seed of the bootstrap.

    Returns:
        Rows ``{model, n_evals, n_weights, held_out_resid_sd_pts, held_out_r2, tau, tau_gap_vs_ws,
        tau_gap_ci95_low, tau_gap_ci95_high}`` (the fits' fields NaN on the raw WS row).

    Raises:
        ValueError: fewer than 10 evaluations, or ``raw_ws`` not one value per table architecture.
    """
    choices = np.asarray(choices, dtype=np.int64)
    y = np.asarray(miou, dtype=float).reshape(-1)
    raw_ws = np.asarray(raw_ws, dtype=float).reshape(-1)
    target = np.asarray(standalone, dtype=float).reshape(-1)
    if len(y) < 10 or len(choices) != len(y):
        raise ValueError(f"need at least 10 WS evaluations, one per architecture; got {len(y)} for {len(choices)}")
    if len(raw_ws) != len(target):
        raise ValueError(f"raw_ws has {len(raw_ws)} values for {len(target)} table architectures")
    table = np.asarray(table_choices, dtype=np.int64)
    held = rng.permutation(len(y))[: max(1, round(HELD_OUT_SHARE * len(y)))]
    fit_mask = np.ones(len(y), dtype=bool)
    fit_mask[held] = False
    nan = float("nan")
    rows = [{"model": "ws", "n_evals": len(y), "n_weights": nan, "held_out_resid_sd_pts": nan, "held_out_r2": nan,
             "tau": kendall(raw_ws, target), "tau_gap_vs_ws": nan, "tau_gap_ci95_low": nan, "tau_gap_ci95_high": nan}]
    for model in MODELS:
        X = features(space, choices, model)
        resid = y[held] - X[held] @ ridge_fit(X[fit_mask], y[fit_mask])
        predicted = features(space, table, model) @ ridge_fit(X, y)
        gap, low, high = tau_gap(predicted, raw_ws, target, n_resamples, seed)
        rows.append({"model": model, "n_evals": len(y), "n_weights": X.shape[1],
                     "held_out_resid_sd_pts": 100 * float(np.std(resid)),
                     "held_out_r2": 1 - float(np.var(resid) / np.var(y[held])),
                     "tau": kendall(predicted, target), "tau_gap_vs_ws": gap, "tau_gap_ci95_low": low,
                     "tau_gap_ci95_high": high})
    return rows


def structure_summary(rows: list[dict]) -> dict[str, float]:
    """``ws_structure.<field>.<model>`` for the tau, residual SD and tau gap of every row."""
    out = {}
    for row in rows:
        for field in ("tau", "held_out_resid_sd_pts", "tau_gap_vs_ws", "tau_gap_ci95_low", "tau_gap_ci95_high"):
            if not np.isnan(row[field]):
                out[f"ws_structure.{field}.{row['model']}"] = float(row[field])
    return out


STRUCTURE_STREAM = 0x5757  # seed stream of the held-out split


def study(runs, supernet, table, n_resamples: int, seed: int) -> list[dict]:
    """:func:`structure_rows` of every distinct architecture of ``runs`` (search runs of one
    supernet), against ``table`` (a :class:`~linas_lib.analysis.ranking.BenchTable`); ``[]``
    when the table cannot support a ranking (``table.truth`` is None)."""
    from ..search.experiment import union
    from .ranking import ws_scores

    if table.truth is None:
        return []
    choices, miou, _ = union(runs)
    truth = table.truth
    raw = ws_scores(supernet, truth.choices)["miou"]
    return structure_rows(LINAS_SPACE, choices, miou, truth.choices, truth.values["test_miou"], raw,
                          np.random.default_rng([seed, STRUCTURE_STREAM]), n_resamples, seed)



SWEEP_CHUNK = 500_000  # architectures predicted at once (features and latency of a chunk: about 0.5 GB)
SWEEP_SAVE_EVERY = 50  # WS evaluations between saves of the accuracy cache


def predicted_fronts(space: SearchSpace, weights: np.ndarray, latency, targets, limits_ms) -> np.ndarray:
    """Codes of the architectures on some target's predicted front, sorted: for each of
    ``targets``, those within its ``limits_ms`` (the HV box) whose predicted mIoU (the pairs fit
    ``weights``) beats every one at a lower LUT latency and every other one at the same (at equal
    latency and prediction, the lowest code)."""
    pred, lat = [], []
    for start in range(0, space.size, SWEEP_CHUNK):
        archs = space.decode(np.arange(start, min(start + SWEEP_CHUNK, space.size)))
        pred.append(features(space, archs, "pairs") @ weights)
        lat.append(np.asarray(latency.predict(archs), dtype=float)[:, targets])
    pred, lat = np.concatenate(pred), np.concatenate(lat)
    picks = set()
    for j, t in enumerate(targets):
        ok = np.flatnonzero(lat[:, j] <= limits_ms[j])
        if not len(ok):
            continue
        order = ok[np.lexsort((-pred[ok], lat[ok, j]))]
        best_before = np.maximum.accumulate(pred[order])
        picks.update(order[np.r_[True, pred[order][1:] > best_before[:-1]]].tolist())
    return np.array(sorted(picks), dtype=np.int64)


def sweep(space: SearchSpace, experiment, searched, accuracy, latency) -> tuple[dict, object]:
    """The model-guided sweep (module docstring) against the searched runs' best known front.

    Args:
        space: the search space.
        experiment: the :class:`~linas_lib.search.experiment.ParetoExperiment` (its HV and targets).
        searched: every search run whose points make the best known front (compared, oracle, long).
        accuracy: the WS accuracy cache (``lookup(space, choices)``, ``save()``: saved after
            every :data:`SWEEP_SAVE_EVERY` evaluations, so an interrupted sweep resumes).
        latency: the latency model (``predict``, ``budgets_ms``).

    Returns:
        ``(facts, run)``: facts ``{n_archs, n_new, sweep_hv, best_known_hv, with_sweep_hv,
        pred_error_mean_pts, pred_error_sd_pts}`` (error: predicted - WS mIoU of the swept
        architectures) and the sweep as a :class:`~linas_lib.search.experiment.MethodRun`.
    """
    from ..search.experiment import MethodRun, reference_hv, union

    choices, miou, _ = union(searched)
    weights = ridge_fit(features(space, choices, "pairs"), miou)
    targets = list(experiment.hv_targets)
    limits = np.asarray(latency.budgets_ms, dtype=float)[targets] * experiment.ref[1]  # the HV box's latency edge
    codes = predicted_fronts(space, weights, latency, targets, limits)
    archs = space.decode(codes)
    ws = []
    for start in range(0, len(archs), SWEEP_SAVE_EVERY):
        ws.append(np.asarray(accuracy.lookup(space, archs[start:start + SWEEP_SAVE_EVERY]), dtype=float))
        accuracy.save()
    ws = np.concatenate(ws) if ws else np.zeros(0)
    run = MethodRun("ws_sweep", 0, archs, ws, np.asarray(latency.predict(archs), dtype=float))
    error = features(space, archs, "pairs") @ weights - ws
    known = set(space.encode(choices).tolist())
    facts = {"n_archs": len(codes), "n_new": int(sum(int(c) not in known for c in codes)),
             "sweep_hv": experiment.hv(run.miou, run.latency_ms), "best_known_hv": reference_hv(experiment, searched),
             "with_sweep_hv": reference_hv(experiment, list(searched) + [run]),
             "pred_error_mean_pts": 100 * float(error.mean()), "pred_error_sd_pts": 100 * float(error.std())}
    return facts, run


def sweep_summary(facts: dict, long_result: dict, reference_hv: float) -> dict[str, float]:
    """``ws_sweep.<fact>`` and, per long-budget method, ``ws_sweep.hv_frac.<method>``: its mean
    final HV (``long_result``'s final share of ``reference_hv``) as a share of the best known
    front with the sweep. Empty without a sweep."""
    if not facts:
        return {}
    out = {f"ws_sweep.{k}": float(v) for k, v in facts.items()}
    for m, row in (long_result or {}).get("final", {}).items():
        out[f"ws_sweep.hv_frac.{m}"] = row["mean"] * reference_hv / facts["with_sweep_hv"]
    return out


COVERAGE_TOP_K = 10  # per target, the pool's best WS mIoU within the budget: the region a WS pick comes from


def smallest_path_coverage(smallest, table_archs, choices, miou, lat, budgets_ms, chosen,
                           arms=("arch_ws", "arch", "arch_ws_loss"), top_k: int = COVERAGE_TOP_K) -> list[dict]:
    """How near the sandwich rule's smallest path (trained every step) each set of architectures
    lies, counted as the layers that equal it: the benchmark table (what validates the oracle),
    the search's pool (the compared runs' evaluations within some budget), the pool's ``top_k``
    best WS mIoU within each budget (distinct over the targets), and each final arm's picks
    (distinct). A region the search favours and the table does not sample is one where the
    table's Kendall tau says nothing about the oracle.

    Args:
        smallest: the smallest path ``(L,)`` (:func:`~linas_lib.supernet.model.smallest_path`).
        table_archs: the benchmark table's distinct architecture strings.
        choices, miou, lat: the pool as :func:`~linas_lib.search.experiment.union` gives it.
        budgets_ms: per target, in ``lat``'s column order.
        chosen: 05's chosen rows; ``arms``: their architecture columns (absent ones are skipped).

    Returns:
        One row per set: ``set``, ``n``, ``mean_smallest_layers``, ``share_ge1`` /
        ``share_ge2`` / ``share_ge3`` (the share with at least that many of the smallest path's layers).
    """
    from ..space import parse_arch

    smallest = np.asarray(smallest)
    within = lat <= np.asarray(budgets_ms)
    top = set()
    for t in range(within.shape[1]):
        ok = np.flatnonzero(within[:, t])
        top.update(ok[np.argsort(-miou[ok], kind="stable")[:top_k]].tolist())
    sets = {"table": np.array([parse_arch(a) for a in table_archs]).reshape(-1, len(smallest)),
            "pool": choices[within.any(axis=1)], f"pool_top{top_k}": choices[sorted(top)]}
    for arm in arms:
        picks = list(dict.fromkeys(row[arm] for row in chosen if row.get(arm)))
        if picks:
            sets[arm] = np.array([parse_arch(a) for a in picks])
    rows = []
    for name, archs in sets.items():
        layers = (np.asarray(archs) == smallest).sum(axis=1)
        rows.append({"set": name, "n": len(layers), "mean_smallest_layers": float(layers.mean()) if len(layers) else np.nan,
                     **{f"share_ge{k}": float((layers >= k).mean()) if len(layers) else np.nan for k in (1, 2, 3)}})
    return rows


def coverage_summary(rows: list[dict]) -> dict[str, float]:
    """``near_smallest.share_ge2.<set>`` and ``near_smallest.n.<set>`` of :func:`smallest_path_coverage`."""
    return {f"near_smallest.{key}.{r['set']}": float(r[field]) for r in rows
            for key, field in (("share_ge2", "share_ge2"), ("n", "n"))}


def coverage(supernet, table, runs, experiment, chosen: list[dict]) -> list[dict]:
    """:func:`smallest_path_coverage` of 05's objects: the supernet's smallest path, the loaded
    benchmark table, the compared runs, the experiment's budgets and the chosen rows."""
    from ..search.experiment import union
    from ..supernet.model import candidate_param_counts, smallest_path

    return smallest_path_coverage(smallest_path(candidate_param_counts(supernet.model)),
                                  list(dict.fromkeys(r["arch"] for r in table.rows)), *union(runs), experiment.budgets_ms, chosen)
