"""What notebooks 01_luts and 02_latency_accuracy compute: LUT summaries, feasible shares,
end-to-end validation of the predictors and the C3 throughput check.

Everything here is a few calls over :mod:`~linas_lib.latency.predict` and
:mod:`~linas_lib.latency.e2e`; end-to-end measurements checkpoint to the cache after every
architecture, so an interrupted notebook resumes.
"""

from __future__ import annotations

import json

import numpy as np

from ..paths import cache_dir
from ..keys import atomic_write_text
from ..space import N_ARCHS, N_CHOICES, all_archs, arch_string, choice_key, decode
from . import e2e
from .measure import spec_for_target
from . import lut as L
from . import predict as P
from . import quiet
from . import targets as T

VARIANT_LABELS = {"op_only": "op-only sum (baseline)", "projected": "+ projection & fixed costs",
                  "interaction": "+ pair interaction (I4)"}


def local_targets(profile) -> list:
    """The profile's local (measured here, end-to-end) targets."""
    return [t for t in profile.latency.targets if t.kind == "local"]


def target_rows(profile, here: bool = False) -> list[dict]:
    """One row per target: kind, scope, LUT path and status (``not measured`` GPU LUTs included)."""
    return [{"target": t.name, "kind": t.kind, "scope": t.scope, "budget_ms": t.budget_ms,
             "lut": _display_path(T.target_lut_path(profile, t, here)),
             "status": T.target_status(profile, t, here)} for t in profile.latency.targets]


def _display_path(path) -> str:
    """A LUT path relative to the project root where it lies inside it."""
    from ..paths import project_root

    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def feasible_share(model: P.LatencyModel, chunk: int = 1 << 20) -> dict[str, dict]:
    """Min/max predicted latency and share of all 4,084,101 archs within budget, per target."""
    archs = all_archs()
    lo = np.full(len(model.target_names), np.inf)
    hi = np.full(len(model.target_names), -np.inf)
    ok = np.zeros(len(model.target_names))
    for start in range(0, N_ARCHS, chunk):
        pred = model.predict(archs[start:start + chunk])
        lo, hi = np.minimum(lo, pred.min(0)), np.maximum(hi, pred.max(0))
        ok += (pred <= model.budgets_ms).sum(0)
    return {n: {"min_ms": lo[i], "max_ms": hi[i], "feasible_share": ok[i] / N_ARCHS}
            for i, n in enumerate(model.target_names)}


def latency_quantiles(model: P.LatencyModel, quantiles=(0.2, 0.5, 0.8), stride: int = 7) -> np.ndarray:
    """``(n_quantiles, n_targets)`` predicted-latency quantiles over every ``stride``-th arch
    (a deterministic 1/7 sample of the space; what a budget must sit between to bind)."""
    return np.quantile(model.predict(all_archs()[::stride]), quantiles, axis=0)


def lut_summary_rows(profile, luts: dict[str, dict], model: P.LatencyModel) -> list[dict]:
    """The LUT summary table: runtime, scope, entries, latency range and quantiles, budget,
    feasible share, median CV."""
    shares = feasible_share(model)
    q20, q50, q80 = latency_quantiles(model)
    rows = []
    for name, lut in luts.items():
        info = L.lut_summary(lut)
        rows.append({"target": name, "runtime": lut["runtime"], "scope": lut["scope"],
                     "n_entries": info["n_entries"], "min_arch_ms": shares[name]["min_ms"],
                     "max_arch_ms": shares[name]["max_ms"], "p20_arch_ms": q20[model.target_names.index(name)],
                     "p50_arch_ms": q50[model.target_names.index(name)], "p80_arch_ms": q80[model.target_names.index(name)],
                     "budget_ms": float(model.budgets_ms[model.target_names.index(name)]),
                     "budget_rule": _budget_rule(profile, name),
                     "feasible_pct": 100 * shares[name]["feasible_share"], "median_cv": info["median_cv"],
                     "variant": model.variant if lut["scope"] != "decoder-only" else "op_only"})
    return rows


def _budget_rule(profile, name: str) -> str:
    target = next(t for t in profile.latency.targets if t.name == name)
    return f"quantile {target.budget_quantile:g}" if target.budget_quantile > 0 else "fixed"


def heatmap_matrix(lut: dict) -> tuple[np.ndarray, list[str]]:
    """``(5, 21)`` ms of the LUT's main variant (projected, else op-only) and the column keys."""
    variant = "op_only" if lut["scope"] == "decoder-only" else "projected"
    return L.entry_table(lut, variant), [choice_key(c) for c in range(N_CHOICES)]


def heatmap_panels(luts: dict[str, dict]) -> tuple[dict[str, np.ndarray], list[str]]:
    """``({"<target> (<runtime>, <variant>)": (5, 21) ms}, keys)`` for :func:`plots.lut_heatmaps`."""
    panels, keys = {}, []
    for name, lut in luts.items():
        matrix, keys = heatmap_matrix(lut)
        variant = "op-only" if lut["scope"] == "decoder-only" else "projection-inclusive"
        panels[f"{name} ({lut['runtime']}, {variant})"] = matrix
    return panels, keys


# ---------------------------------------------------------------- validation (02)


def validation_archs(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct uniformly random architectures ``(n, 5)``."""
    return decode(rng.choice(N_ARCHS, size=n, replace=False))


def measure_validation(profile, archs: np.ndarray, image: np.ndarray,
                       progress: bool = True) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Median end-to-end latency (ms) of every arch on every local target, checkpointed.

    Archs are the outer loop (all targets measured per arch) so slow drifts of the machine
    spread evenly over targets. Each architecture's timings are judged by the quiet-machine
    guard (:mod:`linas_lib.latency.quiet`, ``latency.quiet``) before they are kept.

    Returns:
        ``({target: ms (n,)}, load records)``: one record per run that measured anything
        (a resumed pass adds one), kept with the checkpoint.
    """
    targets = [t.name for t in local_targets(profile)]
    lat = profile.latency
    key = e2e.dumps_key(targets, archs.tolist(), profile.data.resolution, lat.e2e_warmup, lat.e2e_repeats)
    path = cache_dir("e2e") / f"validation_{profile.name}_{key}.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    loads = done.setdefault(LOAD_KEY, [])
    todo = [a for a in archs if arch_string(a) not in done]
    if todo:
        encoder = e2e.shared_encoder()
        with quiet.watch("end-to-end validation", max_threads(profile), lat.quiet) as load:
            for arch in _progress(todo, progress, "end-to-end"):
                since = load.mark()
                ms = {t: _median_ms(profile, t, arch, image, encoder) for t in targets}
                load.check(since, arch_string(arch))
                done[arch_string(arch)] = ms
                atomic_write_text(path, json.dumps(done))
        loads.append(load.record)
        atomic_write_text(path, json.dumps(done))
    return {t: np.array([done[arch_string(a)][t] for a in archs]) for t in targets}, loads


LOAD_KEY = "_machine_load"  # the validation checkpoint's load records (no architecture string starts with "_")


def _median_ms(profile, target: str, arch, image: np.ndarray, encoder) -> float:
    lat = profile.latency
    fn, spec = e2e.pipeline(target, arch, profile.data.resolution, e2e.onnx_folder(), encoder)
    return e2e.measure_pipeline(fn, image, spec, lat.e2e_warmup, lat.e2e_repeats)


def max_threads(profile) -> int:
    """The most threads any local target of the profile times with."""
    return max((spec_for_target(t.name).threads for t in local_targets(profile)), default=1)


def accuracy_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """MAPE and MAE, share within +-5 % and +-10 %, mean signed error (%)."""
    rel = (predicted - measured) / measured
    return {"n": int(len(measured)), "mape_pct": 100 * float(np.mean(np.abs(rel))),
            "mae_ms": float(np.mean(np.abs(predicted - measured))),
            "within5_pct": 100 * float(np.mean(np.abs(rel) <= 0.05)),
            "within10_pct": 100 * float(np.mean(np.abs(rel) <= 0.10)),
            "bias_pct": 100 * float(np.mean(rel))}


def accuracy_rows(models: dict[str, P.LatencyModel], archs: np.ndarray, measured: dict[str, np.ndarray]):
    """One row per (local target, variant) and the predictions used, for the table and scatter."""
    rows, preds = [], {}
    for variant, model in models.items():
        pred = model.predict(archs)
        for target, meas in measured.items():
            p = pred[:, model.target_names.index(target)]
            preds[(target, variant)] = p
            rows.append({"target": target, "variant": variant, "label": VARIANT_LABELS[variant],
                         **accuracy_metrics(p, meas)})
    return rows, preds


def summary_figures(rows: list[dict]) -> dict:
    """Nested ``{mape_pct: {target: {variant: x}}, within5_pct: ..., ...}`` for ``flatten``."""
    out = {}
    for metric in ("mape_pct", "within5_pct", "within10_pct", "mae_ms"):
        out[metric] = {}
        for r in rows:
            out[metric].setdefault(r["target"], {})[r["variant"]] = r[metric]
    return out


def throughput_rows(profile, choices, images: np.ndarray) -> list[dict]:
    """C3: ``throughput_images`` images through each local target's pipeline as a whole."""
    encoder = e2e.shared_encoder()
    return [c3_check(profile, t.name, choices, images, profile.latency.throughput_images, encoder)
            for t in local_targets(profile)]


def c3_check(profile, target: str, choices, images: np.ndarray, n_images: int, encoder=None) -> dict:
    """C3 for one local target: ``n_images`` images through the network's whole pipeline.

    Returns:
        ``{target, arch, n_images, total_s, ms_per_image, budget_s, pass}``; the budget is
        ``latency.throughput_budget_s`` per 100 images, scaled to ``n_images``.
    """
    fn, spec = e2e.pipeline(target, choices, profile.data.resolution, e2e.onnx_folder(),
                            encoder if encoder is not None else e2e.shared_encoder())
    with quiet.watch(f"C3 {target}", spec.threads, profile.latency.quiet) as load:
        since = load.mark()
        res = e2e.throughput(fn, images, n_images, spec)
        load.check(since, f"{n_images} images")
    budget_s = profile.latency.throughput_budget_s * n_images / 100
    return {"target": target, "arch": arch_string(choices), **res, "budget_s": budget_s,
            "pass": bool(res["total_s"] <= budget_s), **load_columns(load.record)}


def load_columns(record: dict) -> dict:
    """A load record as flat table columns: other work's cores during the run, and whether it was quiet."""
    during = record.get("during", {})
    verdicts = [record[k]["quiet"] for k in ("before", "during", "after") if "quiet" in record.get(k, {})]
    return {"other_cores": during.get("other_cores", float("nan")),
            "quiet": "" if not verdicts else bool(all(verdicts) and not record.get("noisy"))}


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, leave=False)


def models_for(profile, luts: dict[str, dict], targets=None) -> dict[str, P.LatencyModel]:
    """One :class:`LatencyModel` per variant over the given LUTs (optionally some targets)."""
    chosen = {n: lut for n, lut in luts.items() if targets is None or n in targets}
    budgets = T.profile_budgets(profile, chosen)
    return {v: P.model_from_luts(chosen, budgets, v) for v in P.PREDICT_VARIANTS}


def save_local_luts(luts: dict[str, dict], folder) -> list:
    """Copy the LUTs measured by this project (with provenance) into a results folder."""
    from pathlib import Path

    paths = []
    for name, lut in luts.items():
        if lut["runtime"] != "external":
            path = Path(folder) / L.lut_filename(name, lut["resolution"])
            paths.append(atomic_write_text(path, json.dumps(lut, indent=1) + "\n"))
    return paths


def lut_summary_figures(rows: list[dict], target_rows_: list[dict]) -> dict:
    """Headline numbers of 01: feasible share, latency range per target, counts."""
    out = {"n_targets_with_lut": len(rows),
           "n_targets_not_measured": sum(r["status"] in ("not measured", "absent") for r in target_rows_)}
    for r in rows:
        out[r["target"]] = {"feasible_pct": r["feasible_pct"], "min_arch_ms": r["min_arch_ms"],
                            "max_arch_ms": r["max_arch_ms"], "budget_ms": r["budget_ms"]}
        if r["median_cv"] is not None:
            out[r["target"]]["median_cv"] = r["median_cv"]
    return out


def eval_images(profile, seed: int) -> np.ndarray:
    """The test split's uint8 images (what the throughput check and validation feed)."""
    from ..data import load_splits

    images = load_splits(profile, seed)["test"].images
    if images.shape[1] != profile.data.resolution:
        raise ValueError(f"test images are {images.shape[1]} px but the profile's LUT resolution is "
                         f"{profile.data.resolution}")
    return images


def measurement_rows(archs: np.ndarray, measured: dict, predicted: dict) -> list[dict]:
    """Per (arch, target): measured ms and every variant's prediction (the scatter's data)."""
    rows = []
    for i, arch in enumerate(archs):
        for target, meas in measured.items():
            row = {"arch": arch_string(arch), "target": target, "measured_ms": float(meas[i])}
            row.update({f"pred_{v}_ms": float(p[i]) for (t, v), p in predicted.items() if t == target})
            rows.append(row)
    return rows


def median_arch(archs: np.ndarray, model: P.LatencyModel) -> np.ndarray:
    """The arch whose mean predicted latency (over targets) is the median of ``archs``."""
    score = model.predict(archs).mean(axis=1)
    return archs[np.argsort(score)[len(score) // 2]]


def throughput_figures(rows: list[dict]) -> dict:
    """``{throughput_ms_per_image: {target: x}, throughput_pass: {target: 0/1}}``."""
    return {"throughput_ms_per_image": {r["target"]: r["ms_per_image"] for r in rows},
            "throughput_pass": {r["target"]: float(r["pass"]) for r in rows}}
