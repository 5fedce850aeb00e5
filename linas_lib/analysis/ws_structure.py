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

