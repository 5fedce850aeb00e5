"""C3, the throughput constraint: ``latency.throughput_images`` images through a chosen
network's whole pipeline on each local target, against ``latency.throughput_budget_s`` per
100 images, and the heartbeat that reads the machine's speed during that run (02's anchor
networks timed between blocks of images; see :func:`c3_check`).

Notebook 02 checks its median network here; notebook 05 checks each target's chosen network.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..paths import display_path
from ..space import arch_string, parse_arch
from . import e2e
from . import quiet
from .measure import summarise
from .report import local_targets

log = logging.getLogger(__name__)


def throughput_rows(profile, choices, images: np.ndarray, e2e_ms: dict[str, float] | None = None,
                    heartbeats: dict[str, list[dict]] | None = None) -> list[dict]:
    """C3: ``throughput_images`` images through each local target's pipeline as a whole,
    ``latency.c3_runs`` times (the targets in turn within each run, so a slow spell of the
    machine is spread over them); one row per (run, target), column ``run``.

    Args:
        e2e_ms: optional per-target ground truth of the same architecture (single image, many
            runs): added as ``e2e_ms`` with the gaps of C3's per-image mean and median (and,
            with a heartbeat, of its drift-corrected mean) to it (%).
        heartbeats: optional ``{target: [{arch, ref_ms}, ...]}`` (:func:`heartbeat_references`):
            each target's run carries those reference networks (:func:`c3_check`).
    """
    encoder = e2e.shared_encoder()
    rows = [{"run": run, **c3_check(profile, t.name, choices, images, profile.latency.throughput_images, encoder,
                                    (heartbeats or {}).get(t.name))}
            for run in range(profile.latency.c3_runs) for t in local_targets(profile)]
    for row in rows:
        if e2e_ms is not None and row["target"] in e2e_ms:
            row["e2e_ms"] = float(e2e_ms[row["target"]])
            row["c3_vs_e2e_pct"] = 100 * (row["ms_per_image"] / row["e2e_ms"] - 1)
            row["c3_median_vs_e2e_pct"] = 100 * (row["image_median_ms"] / row["e2e_ms"] - 1)  # same statistic
            if "speed_factor" in row:
                row["c3_drift_corrected_vs_e2e_pct"] = 100 * (row["ms_per_image_drift_corrected"] / row["e2e_ms"] - 1)
    return rows


def c3_check(profile, target: str, choices, images: np.ndarray, n_images: int, encoder=None,
             heartbeat: list[dict] | None = None) -> dict:
    """C3 for one local target: ``n_images`` images through the network's whole pipeline.

    C3 passes or fails on the measured total, as the constraint says. One run of it moves with
    the machine's speed of the moment (26-50 % between runs on the 2-core cpu machine), so
    with a ``heartbeat`` (reference networks ``[{arch, ref_ms}, ...]``) and
    ``latency.c3_heartbeat_every > 0``, the same target's pipelines of those networks are timed
    between blocks of images (:func:`~.e2e.throughput`). ``speed_factor`` is the statistic
    (:func:`~.measure.summarise`) of every beat's time over its network's ``ref_ms`` (02's
    pooled end-to-end ground truth), and the ``*_drift_corrected`` columns divide it out:
    C3 at the speed those references were measured at -- an estimate beside the measurement.

    Returns:
        ``{target, arch, n_images, total_s, ms_per_image, budget_s, margin_s, pass, ...}``; the
        budget is ``latency.throughput_budget_s`` per 100 images, scaled to ``n_images``.
    """
    lat = profile.latency
    encoder = encoder if encoder is not None else e2e.shared_encoder()
    build = lambda arch: e2e.pipeline(target, arch, profile.data.resolution, e2e.onnx_folder(), encoder)  # noqa: E731
    fn, spec = build(choices)
    refs = heartbeat if heartbeat and lat.c3_heartbeat_every > 0 else []
    beats = [build(parse_arch(ref["arch"]))[0] for ref in refs] or None
    with quiet.watch(f"C3 {target}", spec.threads, lat.quiet) as load:
        since = load.mark()
        res = e2e.throughput(fn, images, n_images, spec, beats, lat.c3_heartbeat_every, lat.c3_heartbeat_beats)
        load.check(since, f"{n_images} images")
    budget_s = lat.throughput_budget_s * n_images / 100
    gaps = res.pop("heartbeat_gaps", None)
    row = {"target": target, "arch": arch_string(choices), **res, "budget_s": budget_s,
           "margin_s": budget_s - res["total_s"], "pass": bool(res["total_s"] <= budget_s)}
    if gaps:
        row.update(heartbeat_columns(gaps, [float(ref["ref_ms"]) for ref in refs], res["total_s"], budget_s, n_images))
    return {**row, **load_columns(load.record)}


def heartbeat_columns(gaps: list[tuple[int, list[float]]], ref_ms: list[float], total_s: float, budget_s: float,
                      n_images: int) -> dict:
    """C3's speed factor from its heartbeat beats (``(network index, [ms, ...])`` per gap) and
    the drift-corrected total, margin and pass (see :func:`c3_check`)."""
    ratios = [ms / ref_ms[k] for k, beat in gaps for ms in beat]
    factor = summarise(ratios).median_ms  # the project's statistic, here of dimensionless ratios
    corrected_s = total_s / factor
    return {"heartbeat_networks": len({k for k, _ in gaps}), "heartbeat_n": len(ratios), "speed_factor": factor,
            "ms_per_image_drift_corrected": corrected_s * 1e3 / n_images,
            "margin_s_drift_corrected": budget_s - corrected_s, "pass_drift_corrected": bool(corrected_s <= budget_s)}


MAX_HEARTBEAT_NETWORKS = 10  # C3 beats about 11 times per run: more networks would each beat once or never


def heartbeat_references(profile, rows: list[dict] | None = None) -> dict[str, list[dict]]:
    """C3's heartbeat networks per local target: 02's anchors (spread over the predicted
    latency range, the same on every machine; beyond :data:`MAX_HEARTBEAT_NETWORKS` of them,
    that many evenly spaced from the fastest to the slowest) with their pooled end-to-end
    ground truth.

    Args:
        rows: 02's ``validation_measurements`` rows (:func:`~.report.measurement_rows`); default: this
            profile's committed ``validation_measurements.csv`` (:func:`read_validation_rows`).

    Returns:
        ``{target: [{arch, ref_ms}, ...]}``; empty when the heartbeat is off, 02 has no anchors, or
        the committed 02 is absent or was measured at another resolution or on another CPU.
    """
    if profile.latency.c3_heartbeat_every == 0:
        return {}
    if rows is None:
        rows = read_validation_rows(profile)
    refs = {t.name: [{"arch": r["arch"], "ref_ms": float(r["measured_ms"])} for r in rows
                     if r["target"] == t.name and r["role"] == "anchor"] for t in local_targets(profile)}
    refs = {t: [ref[i] for i in np.linspace(0, len(ref) - 1, min(len(ref), MAX_HEARTBEAT_NETWORKS)).round().astype(int)]
            for t, ref in refs.items()}
    bad = [f"{t} {r['arch']}: {r['ref_ms']}" for t, ref in refs.items() for r in ref
           if not (math.isfinite(r["ref_ms"]) and r["ref_ms"] > 0)]
    if bad:
        raise ValueError(f"02's anchor ground truth must be positive and finite (a speed factor divides by it); "
                         f"got {'; '.join(bad[:3])}: rerun notebook 02")
    return {t: ref for t, ref in refs.items() if ref}


def read_validation_rows(profile) -> list[dict]:
    """02's committed ``validation_measurements.csv`` rows; ``[]`` (with a warning) when 02 has
    not been run at this profile's resolution or on this machine's CPU (provenance ``cpu_id``):
    a heartbeat's speed factor against another CPU's runs would be that CPU's speed, not drift.

    Raises:
        ValueError: the file has no table, or lacks a column the heartbeat reads (naming the file).
    """
    from ..paths import project_root
    from ..provenance import machine, read_csv_provenance, read_csv_table, recorded_machine

    path = project_root() / "results" / profile.name / "02_latency_accuracy" / "validation_measurements.csv"
    if not path.is_file():
        log.warning("%s does not exist: C3 runs without a heartbeat (run notebook 02_latency_accuracy first)",
                    display_path(path))
        return []
    try:
        provenance = read_csv_provenance(path)
    except ValueError as err:
        raise ValueError(f"{display_path(path)}: its provenance line cannot be read ({err}); rerun notebook 02") from None
    resolution = provenance.get("config", {}).get("data", {}).get("resolution")
    if resolution != profile.data.resolution:
        log.warning("%s was measured at %s px, not %s: C3 runs without a heartbeat", display_path(path), resolution,
                    profile.data.resolution)
        return []
    measured_on, here = recorded_machine(provenance)[0], machine().get("cpu_id", "unknown")
    if measured_on != here or here == "unknown":
        log.warning("%s was measured on %s, this machine is %s: C3 runs without a heartbeat (a speed factor "
                    "across machines is their difference, not drift)", display_path(path), measured_on, here)
        return []
    try:
        return read_csv_table(path, columns=("arch", "target", "role", "measured_ms"))
    except ValueError as err:
        raise ValueError(f"{err}; rerun notebook 02") from None


def load_columns(record: dict) -> dict:
    """A load record as flat table columns: other work's cores during the run, and whether it was quiet."""
    during = record.get("during", {})
    verdicts = [record[k]["quiet"] for k in ("before", "during", "after") if "quiet" in record.get(k, {})]
    return {"other_cores": during.get("other_cores", float("nan")),
            "quiet": "" if not verdicts else bool(all(verdicts) and not record.get("noisy"))}


def throughput_figures(rows: list[dict]) -> dict:
    """Per target over its runs (:func:`throughput_rows`): ``throughput_runs`` (how many),
    ``throughput_ms_per_image`` (their median), ``throughput_margin_s`` (the *worst* run's margin)
    and ``throughput_margin_max_s`` (the best's), ``throughput_pass`` (1 only if every run
    passed) and ``throughput_pass_share``; with a heartbeat, ``throughput_drift_corrected.*``
    (medians over the runs; ``pass``: every run; only targets whose every run had a heartbeat)."""
    by_target: dict[str, list[dict]] = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    out = {"throughput_runs": {t: len(rs) for t, rs in by_target.items()},
           "throughput_ms_per_image": {t: float(np.median([r["ms_per_image"] for r in rs])) for t, rs in by_target.items()},
           "throughput_margin_s": {t: min(r["margin_s"] for r in rs) for t, rs in by_target.items()},
           "throughput_margin_max_s": {t: max(r["margin_s"] for r in rs) for t, rs in by_target.items()},
           "throughput_pass": {t: float(all(r["pass"] for r in rs)) for t, rs in by_target.items()},
           "throughput_pass_share": {t: float(np.mean([r["pass"] for r in rs])) for t, rs in by_target.items()}}
    beats = {t: rs for t, rs in by_target.items() if all("speed_factor" in r for r in rs)}  # every run beat
    if beats:
        def median(column: str) -> dict:
            return {t: float(np.median([r[column] for r in rs])) for t, rs in beats.items()
                    if all(column in r for r in rs)}

        out["throughput_drift_corrected"] = {
            "ms_per_image": median("ms_per_image_drift_corrected"), "speed_factor": median("speed_factor"),
            "pass": {t: float(all(r["pass_drift_corrected"] for r in rs)) for t, rs in beats.items()},
            "vs_e2e_pct": median("c3_drift_corrected_vs_e2e_pct")}
    return out
