"""What notebook ``06_cross_hw`` computes: the few-shot cross-hardware latency predictor
(:mod:`linas_lib.latency.cross_hw`) scored leave-one-device-out against simple baselines.

**Devices and their tables** (:func:`device_tables`):

* every *local* target: the architectures measured end to end by ``02_latency_accuracy``
  (``validation_measurements.csv`` of the same profile; real measurements, encoder and
  pre/post-processing included);
* every *external* device (decoder-only LUTs of real devices): ``cross_hw.external_archs``
  random architectures whose latency is the device's LUT sum. Those tables are additive by
  construction, so for them the "own LUT" baseline would score perfectly by definition and is
  not reported;
* every local target's own LUT, priced the same way (``<target> LUT``): a training-only view
  of a local device. It is the knowledge the ``nearest_lut`` baseline uses, so the predictor
  gets it too, and it leaves meta-training with its device (:func:`training_tables`).

**Protocol** (:func:`evaluate`): for each device with at least ``max(k) + min_query``
architectures, split its rows into a pool of ``max(k)`` and a query set; meta-train the
predictor on every *other* device without any of the held-out device's architectures
(:func:`training_tables`: the local targets share theirs, so a held-out local target leaves the
others' LUT tables only); then for each k and each of ``split_seeds``
random choices of k points from the pool, predict the query set. The whole protocol is
repeated ``repeats`` times with new partitions, meta-training and choices (seeds ``seed``,
``seed + 1``, ...) and, for the LUT tables, new architectures (:func:`repeat_tables`: repeat 0's
are the samples the design was chosen on, so the repeats after ``design_repeats`` score LUT
devices on architectures nobody looked at; a measured table has only its own architectures, so
its repeats share most query rows). External devices each get
their own architecture sample. Baselines at the same k (:data:`BASELINES`):

* ``own_lut`` -- the device's own LUT sum (projection-inclusive + fixed costs; local targets,
  measured on the same machine as the ground truth), no fit;
* ``nearest_lut`` -- the LUT of the other device whose predictions rank the k points best
  (Spearman; ties, common on few points, to the smaller squared error of its line), scaled by
  a line fitted in log space on the k points (k >= 2);
* ``linear_counts`` -- ridge regression of latency (relative to the k points' median: it is
  additive in ms) on per-layer op one-hot and width (40 features) fitted on the k points
  (k >= 2); it uses no other device; its penalty is chosen by leave-one-out on the k points
  (:data:`LINEAR_PENALTIES`), as the predictor's correction's is;
* ``flops`` -- decoder FLOPs, scaled by a line fitted in log space on the k points (its
  ranking needs no point).

The predictor averages two kinds of hypothesis per training table (the network's embedding
and an additive fit, :func:`linas_lib.latency.cross_hw.hypothesis_logs`), each rescaled to the
k points and, from k = 3, also rescaled plus a fixed cost of the device's own
(:func:`linas_lib.latency.cross_hw.device_posterior`); from k = 3 it also corrects the
average by a rescale and one log cost per (position, operation) where
leave-one-out on the k points supports it (:func:`linas_lib.latency.cross_hw.fit_residual`:
ridge with one shared penalty, or, from 7 points, one prior variance per position fitted to
the points); its ablations at the same k and splits:
``no_residual`` (the average alone, the design before the correction), ``no_relevance`` (the
shared penalty only, the design before the per-position variances), ``no_fixed_cost`` (every
hypothesis rescaled only, the design before each also entered with a fixed cost of the new
device's own), ``network_only`` (the design before the additive fits joined) and
``additive_only`` (each with the full correction). An ablation is scored only from the k at
which its part acts (:func:`ablation_acts`): below it, it is the predictor by construction.

The control ``no_twin`` (:data:`CONTROLS`) is the predictor meta-trained without the held-out
device's near-twins (:func:`near_twins`: devices whose LUT sums rank a sample with Spearman
>= 0.95, such as rtx3090 and a6000); it is scored only for devices that have one, and says how
much of their score the twin gives.

Metrics on the query: Spearman, Kendall tau, MAPE and the share within +-10 %; means over
devices are reported over all held-out devices and per group (``measured``: the local
targets, noisy and sharing one CPU; ``lut``: exact LUT sums), and the comparison with each
ablation, control and baseline as paired per-device differences (:func:`paired_rows`) on the
devices both have. Their 95 % CIs resample clusters of near-twin devices, not devices
(:func:`cluster_mean_ci`, :func:`twin_clusters`): a pair of twins is one piece of evidence about
a new device, not two, and the matrix behind the clusters is written (:func:`twin_rows`); ``summary.json`` gives a comparator's unpaired mean only where it covers as
many devices as the predictor's (``own_lut`` exists for the local targets only). MAPE is not
defined where a method has no scale (the predictor at k = 0, ``flops`` below two points;
``nearest_lut`` and ``linear_counts`` need two points to exist at all): such cells are left empty, never filled in.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..latency import cross_hw as X
from ..space import N_CHOICES, N_LAYERS, OPS, WIDTHS, choice_key, choice_parts, decode, parse_arch

BASELINES = ("own_lut", "nearest_lut", "linear_counts", "flops")
# method -> (the predictor's hypotheses, with the device's own residual correction, with its
# per-position candidate, with the hypotheses' fixed-cost variants)
PREDICTOR = ("both", True, True, True)
ABLATIONS = {"no_residual": ("both", False, False, True), "no_relevance": ("both", True, False, True),
             "no_fixed_cost": ("both", True, True, False),
             "network_only": ("network", True, True, True), "additive_only": ("additive", True, True, True)}
CONTROLS = ("no_twin",)  # the predictor meta-trained without the held-out device's near-twins
METHODS = ("predictor", *ABLATIONS, *CONTROLS, *BASELINES)
COMPARATORS = (*ABLATIONS, *CONTROLS, *BASELINES)  # what the predictor is compared with, paired by device
METRICS = ("spearman", "kendall", "mape_pct", "within10_pct")
SAMPLE_STREAM = 61  # rng stream of the external devices' architecture sample
SPLIT_STREAM = 62  # ... of the k-point choices
TRAIN_STREAM = 63  # ... of meta-training
TWIN_STREAM = 64  # ... of the sample on which near-twin devices are found
TWIN_SPEARMAN = 0.95  # two devices whose LUT sums rank a sample this alike are near-twins
TWIN_SAMPLE = 2000
MIN_CLUSTERS = 5  # fewer clusters of devices give no bootstrap CI (2 or 3 give just the range of their means)
LINEAR_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # linear_counts' ridge, chosen by leave-one-out


def ablation_acts(method: str, k: int) -> bool:
    """Whether an ablation can differ from the predictor at ``k`` points (below the fewest
    points its part needs, it is the predictor by construction and is not scored)."""
    need = {"no_residual": X.MIN_RESIDUAL_K, "no_fixed_cost": X.MIN_FIXED_COST_K,
            "no_relevance": X.min_relevance_k(linas_token_space())}
    return k >= need.get(method, 0)


class _Trained(NamedTuple):
    """One meta-training of a held-out device's protocol and what its rows carry."""

    model: object
    seconds: float
    query_logs: dict  # hypotheses -> the query's log predictions
    counts: dict  # n_train_devices, n_train_tables


def settings_of(profile) -> X.PredictorSettings:
    """The predictor's settings from the profile's ``cross_hw`` section."""
    c = profile.cross_hw
    return X.PredictorSettings(d_model=c.d_model, heads=c.heads, layers=c.layers, steps=c.steps, lr=c.lr,
                               query_batch=c.query_batch, hw_dim=c.hw_dim)


def linas_token_space() -> X.TokenSpace:
    """The LINAS space as tokens: five positions, each with the 21 ``<Op>_w<pct>`` keys; a
    token's family is its operation (the few-shot residual corrects an op at all widths)."""
    keys = tuple(choice_key(c) for c in range(N_CHOICES))
    families = tuple(choice_parts(c)[0] for c in range(N_CHOICES))
    return X.TokenSpace((keys,) * N_LAYERS, (families,) * N_LAYERS)


# ------------------------------------------------------------------ device tables


def measured_tables(csv_path: Path) -> tuple[list[X.DeviceTable], dict[str, np.ndarray]]:
    """Local targets' end-to-end measurements (02's ``validation_measurements.csv``).

    Returns:
        ``(tables, own_lut_ms)``: one table per target, and per target its own LUT's
        projection-inclusive prediction of the same architectures.

    Raises:
        CrossHwError: naming the file: it is missing, lacks a column, has a latency that is not a
            positive number, an architecture that does not parse or an (arch, target) twice.
    """
    import pandas as pd
    from scipy.stats import spearmanr

    from ..provenance import read_csv_table

    if not csv_path.is_file():
        raise X.CrossHwError(f"{csv_path}: not found; run notebook 02_latency_accuracy of this profile first")
    frame = pd.DataFrame(read_csv_table(csv_path, columns=("arch", "target", "measured_ms", "pred_projected_ms"),
                                        positive=("measured_ms", "pred_projected_ms", "measured_pass*_ms"),
                                        archs=("arch",), unique=("arch", "target"), error=X.CrossHwError))
    passes = sorted(c for c in frame.columns if c.startswith("measured_pass") and c.endswith("_ms"))
    tables, own = [], {}
    for target, rows in frame.groupby("target", sort=False):
        tokens = np.stack([parse_arch(a) for a in rows["arch"]])
        retest = float(spearmanr(rows[passes[0]], rows[passes[1]])[0]) if len(passes) >= 2 else math.nan
        tables.append(X.DeviceTable(str(target), tokens, rows["measured_ms"].to_numpy(float),
                                    "measured end to end (02_latency_accuracy)", "measured", retest_spearman=retest))
        own[str(target)] = rows["pred_projected_ms"].to_numpy(float)
    return tables, own


def lut_tables(models: dict, n_archs: int, seed: int, local: bool = False) -> list[X.DeviceTable]:
    """LUT devices: per device its own ``n_archs`` random architectures (independent samples of
    the 4 million, so two tables share about one architecture) priced by its LUT sum (``models``: name -> one-target
    :class:`LatencyModel`).

    ``local``: the models are this machine's targets, which are scored through their end-to-end
    measurements; their LUT tables (named ``<target> LUT``) only join meta-training, the same
    knowledge the ``nearest_lut`` baseline draws on, and leave it with the target.
    """
    tables = []
    for index, (name, model) in enumerate(models.items()):
        rng = np.random.default_rng([seed, SAMPLE_STREAM, index])
        archs = decode(rng.choice(N_CHOICES**N_LAYERS, size=n_archs, replace=False))
        lat = model.predict(archs)[:, 0]
        if local:
            tables.append(X.DeviceTable(f"{name} LUT", archs, lat, "LUT sum (this machine, projection-inclusive)",
                                        "local-lut", device=name, evaluate=False))
        else:
            tables.append(X.DeviceTable(name, archs, lat, "LUT sum (decoder only)", "lut"))
    return tables


def device_tables(profile, results_root: Path, progress: bool = True):
    """Every device of the profile with data, its LUT models, and the local targets' own-LUT predictions.

    Returns:
        ``(tables, lut_models, own_lut_ms)``; ``lut_models`` maps every device with a LUT to a
        one-target :class:`~linas_lib.latency.predict.LatencyModel` (external: op-only sum;
        local: this machine's projection-inclusive LUT saved by 02).
    """
    from ..latency import lut as L
    from ..latency import predict as P
    from ..latency import targets as T

    folder = results_root / "02_latency_accuracy"
    measured, own = measured_tables(folder / "validation_measurements.csv")
    models = {}
    for target in profile.latency.targets:
        if target.kind == "local":
            path = folder / L.lut_filename(target.name, profile.data.resolution)
            if path.is_file():
                models[target.name] = P.model_from_luts({target.name: L.load_lut(path)}, {target.name: 1.0}, "projected")
        elif T.target_lut_path(profile, target).is_file():
            lut = T.load_target_lut(profile, target, progress=progress)
            models[target.name] = P.model_from_luts({target.name: lut}, {target.name: 1.0}, "op_only")
    return measured + lut_sample(models, own, profile.cross_hw.external_archs, 0), models, own


def lut_sample(models: dict, local_names, n_archs: int, repeat: int) -> list[X.DeviceTable]:
    """Every LUT table of a repeat of the protocol: the external devices' (sample seed
    ``2 * repeat``) and the local targets' (``local_names``) training-only ones
    (``2 * repeat + 1``), so each repeat scores and meta-trains on architectures of its own
    (repeat 0's are the design's)."""
    external = {n: m for n, m in models.items() if n not in local_names}
    local = {n: m for n, m in models.items() if n in local_names}
    return lut_tables(external, n_archs, 2 * repeat) + lut_tables(local, n_archs, 2 * repeat + 1, local=True)


def repeat_tables(tables: list[X.DeviceTable], context: dict, n_archs: int, repeat: int) -> list[X.DeviceTable]:
    """``tables`` with their LUT tables drawn anew for ``repeat`` (:func:`lut_sample`; repeat 0:
    ``tables`` itself); the measured tables stay (their architectures are all there are).

    Raises:
        CrossHwError: a LUT table whose device has no LUT model in ``context["models"]``.
    """
    if repeat == 0:
        return tables
    luts = [t for t in tables if t.group in ("lut", "local-lut")]
    missing = sorted({t.device_id for t in luts} - set(context["models"]))
    if missing:
        raise X.CrossHwError(f"repeat {repeat}: no LUT model to draw new architectures for {', '.join(missing)}")
    fresh = lut_sample(context["models"], context["own"], n_archs, repeat)
    return [t for t in tables if t.group not in ("lut", "local-lut")] + fresh


def twin_spearman(models: dict, seed: int = 0) -> dict[tuple[str, str], float]:
    """Spearman correlation of every pair of devices' LUT sums on one random sample of
    :data:`TWIN_SAMPLE` architectures, ``{(a, b): rho}`` for ``a < b`` (by name)."""
    from scipy.stats import spearmanr

    archs = decode(np.random.default_rng([seed, TWIN_STREAM]).choice(N_CHOICES**N_LAYERS, TWIN_SAMPLE, replace=False))
    sums = {n: m.predict(archs)[:, 0] for n, m in models.items()}
    names = sorted(sums)
    return {(a, b): float(spearmanr(sums[a], sums[b])[0]) for i, a in enumerate(names) for b in names[i + 1:]}


def near_twins(models: dict, seed: int = 0, spearman: dict | None = None) -> dict[str, set[str]]:
    """Per device with a LUT: the other devices whose LUT sums rank a random sample of
    :data:`TWIN_SAMPLE` architectures with Spearman >= :data:`TWIN_SPEARMAN` (e.g. two GPUs of one
    generation, or two thread counts of one CPU). The control ``no_twin`` meta-trains without
    them, to show how much of a held-out device's score is the twin's. ``spearman``: a
    :func:`twin_spearman` matrix already computed (default: computed here)."""
    out = {name: set() for name in models}
    for (a, b), rho in (spearman if spearman is not None else twin_spearman(models, seed)).items():
        if rho >= TWIN_SPEARMAN:
            out[a].add(b)
            out[b].add(a)
    return out


def twin_rows(spearman: dict[tuple[str, str], float]) -> list[dict]:
    """A :func:`twin_spearman` matrix as rows ``{device_a, device_b, spearman, near_twin, n_archs}``:
    the matrix behind :func:`near_twins` and :func:`twin_clusters`, written so it can be read."""
    return [{"device_a": a, "device_b": b, "spearman": rho, "near_twin": rho >= TWIN_SPEARMAN, "n_archs": TWIN_SAMPLE}
            for (a, b), rho in spearman.items()]


def twin_clusters(twins: dict[str, set[str]]) -> dict[str, str]:
    """Device -> its cluster: the connected component of the near-twin graph (:func:`near_twins`),
    named by its members joined with ``+``. Near-twins are not independent evidence about a new
    device, so the CIs over devices resample these clusters (:func:`cluster_mean_ci`)."""
    out: dict[str, str] = {}
    for start in sorted(twins):
        if start in out:
            continue
        component, frontier = {start}, [start]
        while frontier:
            for other in twins.get(frontier.pop(), set()):
                if other not in component:
                    component.add(other)
                    frontier.append(other)
        label = "+".join(sorted(component))
        out.update({name: label for name in component})
    return out


def cluster_mean_ci(values, clusters, seed: int = 0, n_resamples: int = 2000) -> tuple[float, float]:
    """95 % percentile bootstrap CI (``scipy.stats.bootstrap``) of the mean over devices that
    resamples whole clusters of devices (:func:`twin_clusters`), not devices: each resample's
    statistic is the mean over the devices of the clusters drawn. With every device its own
    cluster this is the ordinary bootstrap of the mean (the same in distribution; to the digit
    when the labels sort in the values' order); it no longer counts two near-twins as two
    independent devices. Below :data:`MIN_CLUSTERS` clusters it gives no interval: a percentile
    bootstrap over 2 or 3 clusters is just the range of their means.

    Args:
        values: one value per device.
        clusters: the cluster label of each device (same order).
        seed: seeds the resampling.
        n_resamples: bootstrap resamples.

    Returns:
        ``(low, high)``; a point when every value is equal; NaN below :data:`MIN_CLUSTERS` clusters.
    """
    from scipy.stats import bootstrap

    from ..stats import CI_STREAM

    values = np.asarray(values, dtype=float)
    labels = np.asarray(clusters)
    if values.shape != labels.shape:
        raise ValueError(f"one cluster label per value: {values.shape} values, {labels.shape} labels")
    names = sorted(set(labels.tolist()))
    if len(values) and np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    if len(names) < MIN_CLUSTERS:
        return math.nan, math.nan
    sums = np.array([values[labels == name].sum() for name in names])
    counts = np.array([(labels == name).sum() for name in names], dtype=float)
    index = np.arange(len(names))
    res = bootstrap((index,), lambda i: sums[i].sum() / counts[i].sum(), n_resamples=n_resamples,
                    confidence_level=0.95, method="percentile", vectorized=False,
                    rng=np.random.default_rng([seed, CI_STREAM]))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def other_devices_reach(tables: list[X.DeviceTable], held: list[str]) -> dict[str, float]:
    """Per held-out device: an in-sample reference for how much of its ranking the other
    devices' per-position costs explain (not a strict bound).

    The other devices' tables (:func:`training_tables`) each give an additive fit
    (:func:`linas_lib.latency.cross_hw.fit_additive`); their per-position costs, recombined with
    non-negative weights (one per table and position, and a constant) fitted by least squares
    in ms on the held-out device's *whole* table (not only the query rows the methods are
    scored on), predict that table; the value is the fit's Spearman correlation. It knows
    every latency of the device, so it is optimistic for this family, and more so for a
    measured table (about 46 weights on 110 noisy rows); a method outside the family (the
    network hypotheses are not additive) may score above it. What the family misses is the
    device's own structure, which k points would have to teach (one cost per position and token).
    """
    from scipy.optimize import nnls
    from scipy.stats import spearmanr

    space = linas_token_space()
    out = {}
    for name in held:
        table = next(t for t in tables if t.name == name)
        others = training_tables(tables, table)
        if not others:
            out[name] = math.nan
            continue
        features = [np.ones(len(table.tokens))]
        for other in others:
            per_token = X.fit_additive(space, other)[space.offsets + table.tokens]  # (n, positions)
            features += list(per_token.T)
        features = np.stack(features, 1)
        weights, _ = nnls(features, np.asarray(table.latency_ms, dtype=float))
        out[name] = float(spearmanr(features @ weights, table.latency_ms)[0])
    return out


# ------------------------------------------------------------------ baselines


def count_features(choices: np.ndarray) -> np.ndarray:
    """Per layer: op one-hot (7) and width fraction (1) -> ``(n, 40)``."""
    choices = np.asarray(choices, dtype=np.int64)
    ops = np.eye(len(OPS))[choices // len(WIDTHS)]
    widths = np.array(WIDTHS, dtype=float)[choices % len(WIDTHS)][..., None] / 100
    return np.concatenate([ops, widths], -1).reshape(len(choices), -1)


def ridge_fit(features: np.ndarray, y: np.ndarray, penalty: float):
    """Ridge regression (intercept unpenalised) as a callable on new features."""
    mean_x, mean_y = features.mean(0), y.mean()
    xc = features - mean_x
    coef = np.linalg.solve(xc.T @ xc + penalty * np.eye(xc.shape[1]), xc.T @ (y - mean_y))
    return lambda f: mean_y + (np.asarray(f) - mean_x) @ coef


def ridge_loo_penalty(features: np.ndarray, y: np.ndarray, penalties=LINEAR_PENALTIES) -> float:
    """The penalty of ``penalties`` whose leave-one-out squared error
    (:func:`linas_lib.latency.cross_hw.ridge_loo_errors`, intercept unpenalised) is smallest; the
    first of those within rounding of the smallest: with 2 points every penalty leaves the same error."""
    with_constant = np.column_stack([features, np.ones(len(features))])
    errors = np.array([mse for mse, _ in X.ridge_loo_errors(with_constant, y, penalties).values()])
    return float(penalties[int(np.flatnonzero(errors <= errors.min() * (1 + 1e-9) + 1e-15)[0])])


def flops_model(resolution: int):
    """Decoder FLOPs as a function of architectures ``(n, 5)``, from a per-(layer, choice) table.

    Layers are independent in FLOPs (each outputs its full ``C_out``), so the count of every
    architecture is the all-``Conv3x3_w50`` decoder's plus one difference per layer: 101
    counts on the ``meta`` device instead of one per architecture.
    """
    from ..encoder.model import TAP_CHANNELS, TAP_STRIDES
    from .ranking import decoder_costs

    shapes = [(1, c, resolution // s, resolution // s) for c, s in zip(TAP_CHANNELS, TAP_STRIDES)]
    base = np.zeros(N_LAYERS, dtype=np.int64)
    variants = [base] + [np.where(np.arange(N_LAYERS) == layer, choice, base)
                         for layer in range(N_LAYERS) for choice in range(1, N_CHOICES)]
    flops, _ = decoder_costs(np.stack(variants), shapes)
    delta = np.zeros((N_LAYERS, N_CHOICES))
    delta[:, 1:] = (flops[1:] - flops[0]).reshape(N_LAYERS, N_CHOICES - 1)
    return lambda choices: flops[0] + delta[np.arange(N_LAYERS), np.asarray(choices, dtype=np.int64)].sum(-1)


def baseline_context(profile, models: dict, own: dict) -> dict:
    """What :func:`baseline_predictions` and the protocol need: LUT models, own-LUT predictions,
    FLOPs, each device's near-twins (:func:`near_twins`) and the matrix they come from
    (``twin_spearman``, :func:`twin_spearman`)."""
    spearman = twin_spearman(models)
    return {"models": models, "own": own, "flops": flops_model(profile.data.resolution),
            "twins": near_twins(models, spearman=spearman), "twin_spearman": spearman}


def device_rows(tables: list[X.DeviceTable], held: list[str], clusters: dict[str, str] | None = None) -> list[dict]:
    """One row per table: its device, its near-twin cluster (:func:`twin_clusters`; the device
    itself where it has no LUT), source, architectures, latency range, held out or training
    only, the test-retest Spearman of two measurement passes (measured tables) and, for
    held-out devices, :func:`other_devices_reach` (``reach_spearman``; NaN otherwise)."""
    reach = other_devices_reach(tables, held)
    return [{"table": t.name, "device": t.device_id, "cluster": _cluster_labels([t.device_id], clusters)[0],
             "source": t.source, "n_archs": len(t.tokens),
             "min_ms": float(np.min(t.latency_ms)), "median_ms": float(np.median(t.latency_ms)),
             "max_ms": float(np.max(t.latency_ms)), "held_out": t.name in held,
             "retest_spearman": t.retest_spearman, "reach_spearman": reach.get(t.name, math.nan)} for t in tables]


def _scaled(reference_support: np.ndarray, support_ms: np.ndarray, reference_query: np.ndarray) -> np.ndarray | None:
    """``reference_query`` mapped by a line in log space fitted on the support (None below 2 points)."""
    if len(support_ms) < 2:
        return None
    line = X.fit_line(np.log(reference_support), np.log(support_ms))
    return np.exp(line(np.log(reference_query)))


def baseline_predictions(name: str, held: X.DeviceTable, support: np.ndarray, query: np.ndarray, context: dict):
    """``(score, latency_ms or None)`` of one baseline on the query, or ``None`` where it does not apply.

    ``context``: ``own`` (local targets' own-LUT predictions), ``models`` (LUT models of every
    device), ``flops`` (a function of choices).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    tokens, ms = held.tokens, np.asarray(held.latency_ms, dtype=float)
    if name == "own_lut":
        own = context["own"].get(held.name)
        return None if own is None else (own[query], own[query])
    if name == "flops":
        f = context["flops"](tokens)
        return f[query], _scaled(f[support], ms[support], f[query])
    if len(support) < 2:
        return None
    if name == "linear_counts":  # additive in ms, fitted relative to the support's median
        feats, unit = count_features(tokens), np.median(ms[support])
        penalty = ridge_loo_penalty(feats[support], ms[support] / unit)
        pred = unit * np.maximum(ridge_fit(feats[support], ms[support] / unit, penalty)(feats[query]), 1e-3)
        return pred, pred
    candidates = {n: m.predict(tokens)[:, 0] for n, m in context["models"].items() if n != held.name}
    best = max(candidates, key=lambda n: _lut_fit(candidates[n][support], ms[support]))
    pred = _scaled(candidates[best][support], ms[support], candidates[best][query])
    return pred, pred


def _lut_fit(lut_ms: np.ndarray, support_ms: np.ndarray) -> tuple[float, float]:
    """How well a LUT explains the k points: its Spearman (NaN: -2), then, to break the ties
    that few points make common, minus the squared error of its log-space line."""
    from scipy.stats import spearmanr

    rho = np.nan_to_num(spearmanr(lut_ms, support_ms)[0], nan=-2.0)
    line = X.fit_line(np.log(lut_ms), np.log(support_ms))
    return float(rho), -float(np.sum((line(np.log(lut_ms)) - np.log(support_ms)) ** 2))


# ------------------------------------------------------------------ metrics and protocol


def scores(pred_score, pred_ms, truth_ms) -> dict[str, float]:
    """Spearman and Kendall of the score, MAPE and share within +-10 % of the latency (NaN without one)."""
    from scipy.stats import kendalltau, spearmanr

    truth = np.asarray(truth_ms, dtype=float)
    out = {"spearman": float(spearmanr(pred_score, truth)[0]), "kendall": float(kendalltau(pred_score, truth)[0])}
    if pred_ms is None:
        return {**out, "mape_pct": math.nan, "within10_pct": math.nan}
    err = np.abs(np.asarray(pred_ms, dtype=float) / truth - 1)
    return {**out, "mape_pct": 100 * float(err.mean()), "within10_pct": 100 * float((err <= 0.10).mean())}


def held_out_devices(tables: list[X.DeviceTable], config) -> list[str]:
    """Devices to hold out: those named by ``cross_hw.held_out`` (all when empty) that have
    ``max(k_values) + min_query`` architectures.

    Raises:
        CrossHwError: ``held_out`` names a device without a table.
    """
    names = [t.name for t in tables if t.evaluate]
    unknown = [n for n in config.held_out if n not in names]
    if unknown:
        raise X.CrossHwError(f"cross_hw.held_out: no device to hold out named {', '.join(map(repr, unknown))} "
                             f"(devices with data: {', '.join(names)}; training-only tables cannot be held out)")
    need = max(config.k_values) + config.min_query
    return [t.name for t in tables
            if t.evaluate and len(t.tokens) >= need and (not config.held_out or t.name in config.held_out)]


def partition(n_rows: int, pool_size: int, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A device's fixed ``(pool, query)`` row split: the k measured points of every split are
    drawn from the pool, predictions are scored on the query."""
    order = np.random.default_rng([seed, SPLIT_STREAM, index]).permutation(n_rows)
    return order[:pool_size], order[pool_size:]


def training_tables(tables: list[X.DeviceTable], held: X.DeviceTable) -> list[X.DeviceTable]:
    """Every other device's tables (none of the held-out device's, its LUT included), without
    any architecture of the held-out device's table; tables left with fewer than 2 rows drop out.

    Why every architecture, not only the query: the local targets share their measured
    architectures and, measured back to back, part of their noise. With the pool rows kept,
    the other targets' measured tables would be scored by the posterior on the k points they
    were trained on, noise included, which favours them (on a development run it also cost
    0.03-0.04 Spearman at k = 10 and 20 on the measured targets). So a held-out local target
    meta-trains without the other targets' measured tables and keeps their LUT tables.
    """
    from ..space import encode

    hidden = set(encode(held.tokens).tolist())
    out = []
    for table in tables:
        if table.device_id == held.device_id:
            continue
        keep = ~np.isin(encode(table.tokens), list(hidden))
        if keep.sum() >= 2:
            out.append(dataclasses.replace(table, tokens=table.tokens[keep], latency_ms=np.asarray(table.latency_ms)[keep]))
    return out


def evaluate(profile, tables: list[X.DeviceTable], context: dict, seed: int, progress: bool = True) -> list[dict]:
    """Leave-one-device-out rows ``{device, group, k, repeat, split, method, spearman, kendall,
    mape_pct, within10_pct, n_query, n_train_devices, n_train_tables, train_s}`` (see the module
    docstring).

    Each held-out device is evaluated ``cross_hw.repeats`` times with seeds ``seed``,
    ``seed + 1``, ...: each repeat draws the LUT tables' architectures anew
    (:func:`repeat_tables`), splits the device's rows anew into a pool of ``max(k_values)`` and
    a query set, meta-trains anew, and draws its k points from the pool; every method is scored
    on the same query set, and no architecture of the held-out device enters meta-training.
    """
    c = profile.cross_hw
    held_names = held_out_devices(tables, c)
    if not held_names:
        raise X.CrossHwError(f"profile {profile.name!r}: no device has max(k_values) + min_query = "
                             f"{max(c.k_values) + c.min_query} architectures to hold out")
    rows = []
    for repeat in range(c.repeats):
        drawn = repeat_tables(tables, context, c.external_archs, repeat)
        for index, name in enumerate(held_names):
            held = next(t for t in drawn if t.name == name)
            rows += [{**row, "repeat": repeat} for row in
                     _evaluate_device(profile, drawn, held, index, context, seed + repeat, progress)]
    return rows


def _evaluate_device(profile, tables: list[X.DeviceTable], held: X.DeviceTable, index: int, context: dict, seed: int,
                     progress: bool) -> list[dict]:
    """:func:`evaluate`'s rows of one held-out device (its ``index``) for one seed."""
    import time

    import torch

    c, settings, space = profile.cross_hw, settings_of(profile), linas_token_space()
    pool, query = partition(len(held.tokens), max(c.k_values), seed, index)
    train = training_tables(tables, held)
    twins = context.get("twins", {}).get(held.device_id, set())
    trained: dict[str, _Trained] = {}  # "predictor" (also the ablations') and "no_twin"
    for group, tables_used in (("predictor", train), ("no_twin", [t for t in train if t.device_id not in twins])):
        if group == "no_twin" and (len(tables_used) == len(train) or len({t.device_id for t in tables_used}) < 2):
            continue  # without a twin in training it is the predictor itself; without 2 devices, nothing to learn
        start = time.perf_counter()
        model = X.train_predictor(space, tables_used, settings,
                                  torch.Generator().manual_seed(seed * 1000 + TRAIN_STREAM + index), progress=progress)
        trained[group] = _Trained(model, time.perf_counter() - start,
                                  {h: X.hypothesis_logs(model, held.tokens[query], h)[0] for h in X.HYPOTHESES},
                                  {"n_train_devices": len({t.device_id for t in tables_used}),
                                   "n_train_tables": len(tables_used)})
    truth = np.asarray(held.latency_ms, dtype=float)[query]
    methods = {"predictor": ("predictor", PREDICTOR), **{m: ("predictor", v) for m, v in ABLATIONS.items()},
               **({"no_twin": ("no_twin", PREDICTOR)} if "no_twin" in trained else {})}
    rows = []
    for k in c.k_values:
        acting = {m: v for m, v in methods.items() if ablation_acts(m, k)}
        for split in range(c.split_seeds):
            support = np.random.default_rng([seed, SPLIT_STREAM, index, k, split]).choice(pool, k, replace=False)
            common = {"device": held.name, "group": held.group, "k": k, "split": split, "n_query": len(query),
                      **trained["predictor"].counts}
            for method, (group, (hypotheses, residual, relevance, fixed_cost)) in acting.items():
                run = trained[group]
                score, ms = X.predict_device(run.model, held.tokens[support], np.asarray(held.latency_ms)[support],
                                             held.tokens[query], hypotheses, residual, relevance,
                                             run.query_logs[hypotheses], fixed_cost)
                rows.append({**common, **run.counts, "method": method, **scores(score, ms, truth),
                             "train_s": run.seconds})
            for base in BASELINES:
                out = baseline_predictions(base, held, support, query, context)
                if out is not None:
                    rows.append({**common, "method": base, **scores(out[0], out[1], truth), "train_s": 0.0})
    return rows


def table_rows(rows: list[dict]) -> list[dict]:
    """Mean (and SD over repeats and splits, ``n_splits`` of them) of every metric per (method, k, device)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    out = []
    for (method, k, device), group in frame.groupby(["method", "k", "device"], sort=False):
        row = {"method": method, "k": int(k), "device": device, "group": group["group"].iloc[0], "n_splits": len(group)}
        for metric in METRICS:
            values = group[metric].to_numpy(float)
            row[f"{metric}_mean"] = float(np.mean(values)) if np.isfinite(values).all() else math.nan
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 and np.isfinite(values).all() else math.nan
        out.append(row)
    return out


def mean_rows(table: list[dict], seed: int = 0, clusters: dict[str, str] | None = None) -> list[dict]:
    """Per (method, k, group): each metric's mean over devices (``all`` and each group) with a
    95 % bootstrap CI that resamples clusters of near-twin devices (:func:`cluster_mean_ci`;
    ``clusters`` from :func:`twin_clusters`, a device missing from it is its own cluster);
    ``n_devices`` counts the devices with a finite value, ``n_clusters`` their clusters."""
    import pandas as pd

    frame = pd.DataFrame(table)
    frame = pd.concat([frame.assign(group="all"), frame])
    out = []
    for (method, k, group), part in frame.groupby(["method", "k", "group"], sort=False):
        row = {"method": method, "k": int(k), "group": group}
        for metric in METRICS:
            values = part[f"{metric}_mean"].to_numpy(float)
            keep = np.isfinite(values)
            labels = _cluster_labels(part["device"].to_numpy()[keep], clusters)
            low, high = cluster_mean_ci(values[keep], labels, seed=seed) if keep.any() else (math.nan, math.nan)
            row.update({f"{metric}_mean": float(values[keep].mean()) if keep.any() else math.nan,
                        f"{metric}_ci95_low": low, f"{metric}_ci95_high": high,
                        f"{metric}_n_devices": int(keep.sum()), f"{metric}_n_clusters": len(set(labels))})
        out.append(row)
    return out


def _cluster_labels(devices, clusters: dict[str, str] | None) -> list[str]:
    return [(clusters or {}).get(device, device) for device in devices]


def paired_rows(table: list[dict], metric: str = "spearman", seed: int = 0,
                clusters: dict[str, str] | None = None) -> list[dict]:
    """Predictor minus each ablation, control and baseline (:data:`COMPARATORS`), per (comparator, k,
    group), on the devices both have: mean of the per-device differences with a 95 % bootstrap
    CI that resamples clusters of near-twin devices (:func:`cluster_mean_ci`; column
    ``baseline``: the comparator; ``n_clusters``: the clusters those devices form)."""
    import pandas as pd

    frame = pd.DataFrame(table)
    wide = frame.pivot_table(index=["k", "device", "group"], columns="method", values=f"{metric}_mean").reset_index()
    out = []
    for base in COMPARATORS:
        if base not in wide:
            continue
        for k, part in wide.groupby("k"):
            for group in ["all", *sorted(part["group"].unique())]:
                sub = part if group == "all" else part[part["group"] == group]
                diff = (sub["predictor"] - sub[base]).to_numpy(float)
                keep = np.isfinite(diff)
                if not keep.any():
                    continue
                diff, labels = diff[keep], _cluster_labels(sub["device"].to_numpy()[keep], clusters)
                low, high = cluster_mean_ci(diff, labels, seed=seed)
                out.append({"baseline": base, "k": int(k), "group": group, "metric": metric, "n_devices": len(diff),
                            "n_clusters": len(set(labels)), "diff_mean": float(diff.mean()), "diff_ci95_low": low,
                            "diff_ci95_high": high, "n_predictor_ahead": int((diff > 0).sum())})
    return out


def held_out_paired_rows(rows: list[dict], design_repeats: int, seed: int = 0,
                         clusters: dict[str, str] | None = None) -> list[dict]:
    """:func:`paired_rows` over the repeats after the first ``design_repeats`` of
    :func:`evaluate`'s ``rows``: the comparisons on partitions, meta-trainings and k-point
    choices that nobody looked at while the predictor was designed (empty with
    ``design_repeats`` 0: every repeat is then as good as another)."""
    if design_repeats <= 0:
        return []
    rest = [row for row in rows if row["repeat"] >= design_repeats]
    return paired_rows(table_rows(rest), seed=seed, clusters=clusters) if rest else []


def summary_figures(table: list[dict], means: list[dict], paired: list[dict], devices: list[dict] = (),
                    paired_held_out: list[dict] = ()) -> dict[str, float]:
    """The predictor's ``spearman.k<k>.<device>``, ``mape.k<k>.<device>`` (where defined),
    ``spearman.k<k>.<group>`` (``mean`` over all devices, ``measured``, ``lut``),
    ``kendall/mape/within10.k<k>.mean``; ``baseline.<name>.spearman.k<k>.<group>`` and
    ``ablation.<name>.spearman.k<k>.<group>`` (same for ``mape``); the paired
    differences ``diff.<name>.spearman.k<k>.<group>`` with ``_ci95_low``/``_ci95_high`` (and
    ``diff_held_out.*`` the same from :func:`held_out_paired_rows`); and the
    repeatability of each measured table (:func:`device_rows`), ``retest.spearman.<device>``;
    what the other devices can explain at best, ``reach.spearman.<device>`` and its ``mean``;
    finite values only."""
    out = {f"retest.spearman.{row['table']}": row["retest_spearman"] for row in devices
           if math.isfinite(row["retest_spearman"])}
    reach = {row["table"]: row.get("reach_spearman", math.nan) for row in devices}
    out.update({f"reach.spearman.{name}": value for name, value in reach.items() if math.isfinite(value)})
    if any(math.isfinite(v) for v in reach.values()):
        out["reach.spearman.mean"] = float(np.nanmean([v for v in reach.values() if math.isfinite(v)]))
    for row in table:
        if row["method"] == "predictor":
            out[f"spearman.k{row['k']}.{row['device']}"] = row["spearman_mean"]
            out[f"mape.k{row['k']}.{row['device']}"] = row["mape_pct_mean"]
    covered = {(r["k"], r["group"]): r.get("spearman_n_devices") for r in means if r["method"] == "predictor"}
    for row in means:
        group = "mean" if row["group"] == "all" else row["group"]
        if row["method"] != "predictor" and _fewer_devices(row, covered.get((row["k"], row["group"]))):
            continue  # a mean over fewer devices than the predictor's is not comparable with it: see diff.*
        kind = "ablation" if row["method"] in ABLATIONS else "control" if row["method"] in CONTROLS else "baseline"
        prefix = "" if row["method"] == "predictor" else f"{kind}.{row['method']}."
        out[f"{prefix}spearman.k{row['k']}.{group}"] = row["spearman_mean"]
        if row["method"] in ABLATIONS or row["method"] in CONTROLS:
            out[f"{prefix}mape.k{row['k']}.{group}"] = row["mape_pct_mean"]
        if row["method"] == "predictor" and group == "mean":
            out[f"kendall.k{row['k']}.mean"] = row["kendall_mean"]
            out[f"mape.k{row['k']}.mean"] = row["mape_pct_mean"]
            out[f"within10.k{row['k']}.mean"] = row["within10_pct_mean"]
    for prefix, rows in (("diff", paired), ("diff_held_out", paired_held_out)):
        for row in rows:
            name = f"{prefix}.{row['baseline']}.{row['metric']}.k{row['k']}.{'mean' if row['group'] == 'all' else row['group']}"
            out[name], out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = (row["diff_mean"], row["diff_ci95_low"],
                                                                           row["diff_ci95_high"])
    return {k: v for k, v in out.items() if v is not None and math.isfinite(v)}


def _fewer_devices(row: dict, predictor_devices) -> bool:
    n = row.get("spearman_n_devices")
    return n is not None and predictor_devices is not None and n < predictor_devices
