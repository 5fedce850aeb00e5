"""Latency lookup tables (LUTs): one versioned JSON schema, builder, loader and checker.

Schema ``linas-lut`` version 2 (one JSON object per target and resolution)::

    {
      "schema": "linas-lut", "schema_version": 2,
      "target": "cpu-torch-1t",            # target name (file name: <target>_<res>px.json)
      "runtime": "torch",                   # torch | ort | external
      "device": "cpu", "precision": "fp32", "threads": 1, "graph": false,
      "scope": "end-to-end",                # or decoder-only (only op_only entries)
      "resolution": 128,                    # input side; must equal the run's resolution
      "space": {"ops": [...], "widths": [...], "channels": [[1024, 512], ...],
                "fingerprint": "<sha256[:16] of ops, widths, channels>"},
      "measure": {"warmup": 10, "repeats": 30, "max_cv": 0.1, "max_retries": 2,
                  "max_time_ms": 250.0, "min_repeats": 5, "evict_mib": 0},
      "restricted": false,                  # true: a test build of a few choices only
      "layers": {"layer_0": {"c_in": 1024, "c_out": 512, "h_out": 8, "w_out": 8,
                             "op_only":   {"Conv3x3_w50": STATS, ...},    # (a)
                             "projected": {"Conv3x3_w50": STATS, ...}},   # (b)
                 ...},
      "fixed": {"preprocess": STATS, "encoder": STATS, "bottleneck": STATS,
                "head": STATS, "postprocess": STATS},                      # (c)
      "pairs": {"method": "sampled", "per_slot": 6, "seed": 0,            # (d)
                "entries": [{"layer": 0, "a": "Conv3x3_w50", "b": "EdgeConv_w75",
                             "pair": STATS, "single_a": STATS, "single_b": STATS,
                             "interaction_ms": -0.12}, ...]},
      "provenance": {...}
    }

``STATS`` = ``{mean_ms, std_ms, median_ms, min_ms, max_ms, n, n_raw, cv, retries}`` of the
IQR-filtered samples (:class:`linas_lib.latency.measure.Stats`); predictors use
``median_ms`` (``mean_ms`` where a file has no median, as the external ones). Keys of ``op_only`` and
``projected`` are :func:`linas_lib.space.op_key` strings; ``projected`` entries time op ->
ReLU -> BN [-> 1x1 projection] plus the skip-add of layers 0..3.

Pair interactions (I4): ``interaction = pair - single_a - single_b``, where the pair
(layers l and l+1 with their skip-adds) and the two projection-inclusive singles are timed
*interleaved* in the same rounds, so a drifting machine load cancels in the difference
(version 1 subtracted the separately timed LUT entries; on a shared CPU the drift between
those measurements swamped the interaction).
Timing all 4 x 21 x 21 = 1,764 pairs per CPU target is too slow, so the builder times
``per_slot`` pairs per adjacent-layer slot, drawn uniformly without replacement from a
generator seeded by ``seed`` (the same pairs for every target). The predictor uses a
measured pair's own interaction and, for every unmeasured pair of the slot, the mean of
the slot's measured interactions (``per_slot = 441`` measures the full table). This is a
per-slot constant model with measured exceptions -- it captures the systematic cost of
chaining layers (cache reuse, allocator, call overhead), not op-specific interactions.

How entries are timed (:mod:`linas_lib.latency.measure`): batch 1, one probing call, then
``warmup`` and ``repeats`` runs -- with ``max_time_ms > 0`` big entries get proportionally
fewer repeats (at least ``min_repeats``), small noisy ones the full count -- IQR filter,
re-measured while ``cv > max_cv`` (at most ``max_retries`` times); with ``evict_mib > 0``
each timed call first reads that many MiB, so the entry meets the caches as the rest of the
pipeline leaves them (:func:`~.measure.cache_evictor`). Torch targets run the
entry module eagerly (CUDA: events; ``-graph`` targets replay a captured CUDA graph); ORT
targets export each entry to a small ONNX model (in memory) and run it in an ONNX Runtime
session with pinned intra-op threads, as the whole network runs there. Pre- and
post-processing are host code timed by the wall clock.

External files (``results/luts/external/seg-nas-128px``, another schema) are read by
:func:`read_external` into this schema in memory (scope decoder-only, op_only only).

Loading checks everything a predictor relies on and raises :class:`LUTError` naming the file
and the entry: JSON syntax (with line and column), the search space (ops, widths, channels,
layer count) and each layer's output geometry (``h_out``/``w_out``, Seg-NAS ``H_out``/``W_out``:
layer ``l`` outputs ``resolution / 2**(4 - l)``, see :func:`expected_geometry`) -- a LUT of
another space or resolution, such as the original 480x640 Seg-NAS files with 9 ops and widths
25..125, is refused with a list of what differs -- and every entry's fields (``mean_ms`` and
``std_ms`` for Seg-NAS entries, all ``STATS`` fields for ours), which must be finite numbers >= 0.
Builds checkpoint to ``<out>.partial.json`` after every entry group and resume from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from ..ops import layer_input_shape
from ..keys import atomic_write_text, load_cache_json
from ..provenance import provenance
from ..space import CHANNELS, N_CHOICES, N_LAYERS, OPS, WIDTHS, choice_index, choice_key, parse_arch, parse_op_key
from . import entries as E
from .quiet import QuietSettings, watch
from .measure import (
    MeasureSettings, RuntimeSpec, Stats, check_target_runnable, measure_interleaved, measure_robust, spec_for_target,
    torch_threads, wall_timer,
)
from .settings import SCOPES

SCHEMA = "linas-lut"
RUNTIMES = ("torch", "ort", "external")  # measured with torch or onnxruntime here, or an external device's table
SCHEMA_VERSION = 2
VARIANTS = ("op_only", "projected")
STATS_FIELDS = tuple(Stats.__dataclass_fields__)
COUNT_FIELDS = ("n", "n_raw", "retries")
EXTERNAL_STATS_FIELDS = ("mean_ms", "std_ms")  # what a Seg-NAS entry holds
LAYER_NAMES = tuple(f"layer_{i}" for i in range(N_LAYERS))
LAYER_DIMS = ("c_in", "c_out", "h_out", "w_out")
EXTERNAL_DIMS = ("C_in", "C_out", "H_out", "W_out")


class LUTError(ValueError):
    """A LUT file is malformed or does not fit the run; the message names the file."""


def space_block() -> dict:
    """The search-space description stored in (and checked against) every LUT."""
    ops, widths, channels = list(OPS), list(WIDTHS), [list(c) for c in CHANNELS]
    text = json.dumps([ops, widths, channels])
    return {"ops": ops, "widths": widths, "channels": channels,
            "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16]}


def lut_filename(target: str, resolution: int) -> str:
    """Conventional file name of a LUT: ``<target>_<resolution>px.json``."""
    return f"{target}_{resolution}px.json"


# ----------------------------------------------------------------------------- loading


def load_lut(path, resolution: int | None = None) -> dict:
    """Read and validate a LUT file (ours or an external one, detected by its keys).

    Args:
        path: the JSON file.
        resolution: the run's input side; a LUT of another resolution is an error.

    Raises:
        LUTError: unreadable, empty or invalid JSON, wrong schema, another search space or
            resolution (listing what differs), missing or non-finite entries -- the message
            names the file and the entry.
    """
    path = Path(path)
    data = _read_json(path)
    if "schema" not in data and ("hardware" in data or "input_size" in data):
        data = _external_to_schema(data, path, resolution)
    check_lut_data(data, path)
    if resolution is not None and data["resolution"] != resolution:
        raise LUTError(
            f"{path}: LUT measured at resolution {data['resolution']} but the run uses {resolution}; "
            "measure a LUT at the run's resolution (linas lut build --resolution ...)"
        )
    return data


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``, or a :class:`LUTError` naming the file and the problem."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as err:
        raise LUTError(f"{path}: LUT file not found") from err
    except IsADirectoryError as err:
        raise LUTError(f"{path}: is a directory, not a LUT file") from err
    except UnicodeDecodeError as err:
        raise LUTError(f"{path}: not valid JSON (not UTF-8 text: {err.reason} at byte {err.start})") from err
    except OSError as err:
        raise LUTError(f"{path}: cannot read the LUT file: {err.strerror or err}") from err
    if not text.strip():
        raise LUTError(f"{path}: empty file, not a LUT (expected a JSON object)")
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise LUTError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}") from err
    except DuplicateKeyError as err:
        raise LUTError(f"{path}: {err} (each entry once: json would silently keep the last)") from None
    except RecursionError as err:
        raise LUTError(f"{path}: not valid JSON (nested too deeply)") from err
    if not isinstance(data, dict):
        raise LUTError(f"{path}: a LUT must be a JSON object at the top level, got a JSON {_json_type(data)}")
    return data


class DuplicateKeyError(ValueError):
    """A JSON object that names one key twice."""


def _unique_keys(pairs: list[tuple]) -> dict:
    """A JSON object's ``dict``, refusing a key given twice (``json.loads``' object_pairs_hook)."""
    data = {}
    for key, value in pairs:
        if key in data:
            raise DuplicateKeyError(f"key {key!r} given twice in one object")
        data[key] = value
    return data


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_problem(value, negative_ok: bool = False) -> str | None:
    """Why ``value`` is not a usable latency (None when it is one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is not a number (a JSON {_json_type(value)})"
    if not math.isfinite(value):
        return "is not finite"
    if value < 0 and not negative_ok:
        return "is negative"
    return None


def expected_geometry(resolution: int) -> list[tuple[int, int]]:
    """``(H_out, W_out)`` of each decoder layer at a square input side ``resolution``.

    Layer ``l`` outputs ``resolution / 2**(4 - l)``: 8, 16, 32, 64, 128 at 128 px (as
    :func:`linas_lib.ops.layer_input_shape` and the Seg-NAS files' ``H_out``/``W_out``).

    Raises:
        ValueError: a resolution that is not a positive multiple of 32.
    """
    if not _is_int(resolution) or resolution <= 0:
        raise ValueError(f"resolution {resolution!r} must be a positive multiple of 32 (five x2 stages)")
    return [(2 * layer_input_shape(layer, resolution)[1],) * 2 for layer in range(N_LAYERS)]


def check_lut_data(data, path) -> None:
    """Validate a LUT dict against the schema (see module docstring).

    Raises:
        LUTError: naming ``path`` and the first problem found; a LUT of another search
            space or resolution names everything that differs.
    """
    if not isinstance(data, dict):
        raise LUTError(f"{path}: a LUT must be a JSON object, got a JSON {_json_type(data)}")
    if data.get("schema") != SCHEMA or data.get("schema_version") != SCHEMA_VERSION:
        raise LUTError(f"{path}: not a {SCHEMA} v{SCHEMA_VERSION} file (schema={data.get('schema')!r}, "
                       f"schema_version={data.get('schema_version')!r})")
    for key in ("target", "runtime", "scope", "resolution", "space", "layers"):
        if key not in data:
            raise LUTError(f"{path}: missing header field {key!r}")
    if data["scope"] not in SCOPES:
        raise LUTError(f"{path}: scope {data['scope']!r} is not one of {', '.join(SCOPES)}")
    if data["runtime"] not in RUNTIMES:
        raise LUTError(f"{path}: runtime {data['runtime']!r} is not one of {', '.join(RUNTIMES)}")
    if not isinstance(data["target"], str) or not data["target"]:
        raise LUTError(f"{path}: target must name the device the LUT was measured for, got {data['target']!r}")
    if not _is_int(data["resolution"]) or data["resolution"] <= 0:
        raise LUTError(f"{path}: resolution must be a positive integer, got {data['resolution']!r}")
    if not isinstance(data["layers"], dict):
        raise LUTError(f"{path}: 'layers' must be an object layer_0..layer_{N_LAYERS - 1}, "
                       f"got a JSON {_json_type(data['layers'])}")
    _check_space(data, path)
    fields = EXTERNAL_STATS_FIELDS if data["runtime"] == "external" else STATS_FIELDS
    variants = ("op_only",) if data["scope"] == "decoder-only" else VARIANTS
    for layer in range(N_LAYERS):
        _check_layer(data["layers"], layer, variants, fields, path)
    if data["scope"] != "decoder-only":
        _check_fixed(data.get("fixed"), fields, path)
        _check_pairs(data.get("pairs"), fields, path)
        if "calibration" in data:
            _check_calibration(data["calibration"], path)


CALIBRATION_BASES = ("op_only", "projected", "interaction")


def _check_calibration(cal, path) -> None:
    """The optional ``calibration`` block: ``ms = slope * base + intercept`` (see :func:`calibrate`)."""
    bad = f"{path}: calibration"
    if not isinstance(cal, dict):
        raise LUTError(f"{bad} must be an object, got a JSON {_json_type(cal)}")
    if cal.get("base") not in CALIBRATION_BASES:
        raise LUTError(f"{bad}.base = {cal.get('base')!r} is not one of {', '.join(CALIBRATION_BASES)}")
    for key in ("slope", "intercept"):
        problem = _number_problem(cal.get(key), negative_ok=key == "intercept")
        if problem:
            raise LUTError(f"{bad}.{key} = {cal.get(key)!r} {problem}")
    if cal["slope"] == 0:
        raise LUTError(f"{bad}.slope is 0: the calibrated predictor would not rank architectures")
    anchors, measured, base_ms = cal.get("anchors"), cal.get("anchor_ms"), cal.get("anchor_base_ms")
    lists = (anchors, measured, base_ms)
    if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) != 1 or len(anchors) < 2:
        raise LUTError(f"{bad} needs 'anchors' (architecture strings), 'anchor_ms' and 'anchor_base_ms' "
                       "of the same length >= 2")
    for key, values in (("anchor_ms", measured), ("anchor_base_ms", base_ms)):
        problem = next((p for p in map(_number_problem, values) if p), None)
        if problem:
            raise LUTError(f"{bad}.{key} has a value that {problem}")
    for number, anchor in enumerate(anchors):
        try:
            parse_arch(str(anchor))
        except ValueError as err:
            raise LUTError(f"{bad}.anchors[{number}]: {err}") from None


def calibrate(lut: dict, anchors: list[str], base_ms, measured_ms, base: str) -> dict:
    """A copy of ``lut`` with an affine in-context calibration fitted on anchor architectures.

    ``ms = slope * base_prediction + intercept`` by relative least squares over the anchors (nn-Meter
    style: the LUT sum misses what the whole pipeline adds, mostly a constant). The block
    records the anchors with their measured and base-predicted latencies, so the fit can be
    checked and redone.

    Args:
        lut: an end-to-end LUT dict.
        anchors: the anchors' architecture strings (:func:`linas_lib.space.arch_string`).
        base_ms: the ``base`` variant's prediction for each anchor.
        measured_ms: each anchor's measured end-to-end latency (the ground-truth statistic).
        base: the predictor variant the calibration corrects.

    An affine fit whose slope is not positive (anchors too close for the noise) falls back
    to an offset only (slope 1), recorded in the block's ``fit``.

    Raises:
        LUTError: a decoder-only LUT, or fewer than 2 anchors with distinct predictions.
    """
    where = f"LUT of {lut.get('target')!r}"
    if lut["scope"] == "decoder-only":
        raise LUTError(f"{where}: a decoder-only LUT has no end-to-end measurements to calibrate on")
    x, y = np.asarray(base_ms, dtype=float), np.asarray(measured_ms, dtype=float)
    if len(anchors) < 2 or x.shape != (len(anchors),) or y.shape != x.shape or np.ptp(x) == 0:
        raise LUTError(f"{where}: calibration needs >= 2 anchors with distinct predictions, one measurement each")
    slope, intercept, fit = _affine_fit(x, y)
    block = {"base": base, "fit": fit, "slope": float(slope), "intercept": float(intercept), "anchors": list(anchors),
             "anchor_ms": y.tolist(), "anchor_base_ms": x.tolist()}
    _check_calibration(block, where)
    return {**lut, "calibration": block}


def _affine_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, str]:
    """:func:`calibrate`'s fit of ``y ~ slope * x + intercept``: ``(slope, intercept, fit)``."""
    slope, intercept = np.polyfit(x, y, 1, w=1.0 / y)  # least squares in relative error, as MAPE reads it
    if not slope > 0:  # measurements do not follow the LUT across the anchors: correct the offset only
        return 1.0, float(np.mean(y - x)), "offset (the affine fit's slope was <= 0)"
    return float(slope), float(intercept), "affine"


def best_calibration_base(base_ms: dict[str, np.ndarray], measured_ms) -> str:
    """The base (a key of ``base_ms``: each base variant's prediction of the anchors) whose
    :func:`calibrate` fit errs least on an anchor left out (:func:`calibration_spread`); ties,
    and spreads that cannot be computed, go to the base given last."""
    def spread(base: str) -> float:
        value = calibration_spread({"anchor_base_ms": base_ms[base], "anchor_ms": measured_ms})
        return value if math.isfinite(value) else math.inf

    return min(reversed(list(base_ms)), key=spread)


def calibration_spread(block: dict) -> float:
    """The relative error a calibration makes on an architecture it was not fitted on: the root
    mean square of each anchor's error ``predicted / measured - 1`` when :func:`calibrate`'s fit
    is redone without it (leave-one-out; a bias counts, not only the scatter).

    Returns:
        The RMS error as a fraction (0.03: 3 %); NaN with fewer than 3 anchors (leave-one-out
        needs two left to fit) or when a left-out fit has anchors with one prediction only.
    """
    x, y = np.asarray(block["anchor_base_ms"], dtype=float), np.asarray(block["anchor_ms"], dtype=float)
    errors = []
    for left in range(len(x)):
        keep = np.arange(len(x)) != left
        if len(x) < 3 or np.ptp(x[keep]) == 0:
            return float("nan")
        slope, intercept, _ = _affine_fit(x[keep], y[keep])
        errors.append((slope * x[left] + intercept) / y[left] - 1)
    return float(np.sqrt(np.mean(np.square(errors))))


def _check_space(data: dict, path) -> None:
    """The space block, layer names, channels and output geometry against this project's."""
    space = data["space"]
    if not isinstance(space, dict):
        raise LUTError(f"{path}: 'space' must be an object with ops, widths and channels")
    layers = data["layers"]
    for name, layer in layers.items():
        if name in LAYER_NAMES and not isinstance(layer, dict):
            raise LUTError(f"{path}: {name} must be an object, got a JSON {_json_type(layer)}")
    present = [n for n in LAYER_NAMES if n in layers]
    for name in present:
        for field in LAYER_DIMS:
            value = layers[name].get(field)
            if field not in layers[name]:
                raise LUTError(f"{path}: {name} is missing {field!r} (each layer stores {', '.join(LAYER_DIMS)})")
            if not _is_int(value) or value <= 0:
                raise LUTError(f"{path}: {name}.{field} = {value!r} is not a positive integer")
    diffs = _space_differences(space.get("ops"), space.get("widths"), space.get("channels"))
    if set(layers) - set(LAYER_NAMES):
        diffs.append(f"layers: found {len(layers)} ({', '.join(layers)}), expected {N_LAYERS} "
                     f"(layer_0..layer_{N_LAYERS - 1})")
    found_channels = [[layers[n]["c_in"], layers[n]["c_out"]] for n in present]
    expected_channels = [list(CHANNELS[int(n.split("_")[1])]) for n in present]
    if found_channels != expected_channels and not any(d.startswith("channels") for d in diffs):
        diffs.append(f"channels (c_in->c_out of {', '.join(present)}): found {_fmt_channels(found_channels)}, "
                     f"expected {_fmt_channels(expected_channels)}")
    resolution = data["resolution"]
    if resolution % 32:
        diffs.append(f"resolution: {resolution} is not a multiple of 32 (five x2 upsampling stages)")
    else:
        found = [(layers[n]["h_out"], layers[n]["w_out"]) for n in present]
        expected = [expected_geometry(resolution)[int(n.split("_")[1])] for n in present]
        if found != expected:
            diffs.append(f"output geometry (h_out x w_out of {', '.join(present)}): found {_fmt_geometry(found)}, "
                         f"expected {_fmt_geometry(expected)} for its resolution {resolution}")
    if diffs:
        raise LUTError(_other_space_message(path, "LUT", diffs))


def _other_space_message(path, what: str, diffs: list[str]) -> str:
    return (f"{path}: {what} belongs to another search space and/or resolution; what differs from this "
            "project's:" + "".join(f"\n  - {d}" for d in diffs))


def _space_differences(ops, widths, channels, n_layers: int | None = None) -> list[str]:
    """What of ``ops``/``widths``/``channels`` (/ layer count) differs from this project's space."""
    diffs = []
    if n_layers is not None and n_layers != N_LAYERS:
        diffs.append(f"layer count: found {n_layers}, expected {N_LAYERS}")
    if widths != list(WIDTHS):
        diffs.append(f"widths: found {widths!r}, expected {list(WIDTHS)}")
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        diffs.append(f"ops: found {ops!r}, expected {list(OPS)}")
    else:
        extra, missing = [o for o in ops if o not in OPS], [o for o in OPS if o not in ops]
        if extra or missing:
            parts = [f"{what} {', '.join(names)}" for what, names in (("extra", extra), ("missing", missing)) if names]
            diffs.append(f"ops: {' and '.join(parts)} (found {len(ops)} ops, expected {len(OPS)})")
        elif ops != list(OPS):
            diffs.append(f"ops: listed in another order {ops}, expected {list(OPS)}")
    if channels != [list(c) for c in CHANNELS]:
        diffs.append(f"channels (C_in->C_out per layer): found {_fmt_channels(channels)}, "
                     f"expected {_fmt_channels(CHANNELS)}")
    return diffs


def _fmt_channels(channels) -> str:
    try:
        return ", ".join(f"{c_in}->{c_out}" for c_in, c_out in channels)
    except (TypeError, ValueError):
        return repr(channels)


def _fmt_geometry(geometry) -> str:
    return ", ".join(f"{h:g}x{w:g}" for h, w in geometry)


def _check_layer(layers, layer: int, variants, fields, path) -> None:
    name = f"layer_{layer}"
    if name not in layers:
        raise LUTError(f"{path}: missing layer {name!r}")
    keys = [choice_key(c) for c in range(N_CHOICES)]
    for variant in variants:
        table = layers[name].get(variant)
        if not isinstance(table, dict):
            raise LUTError(f"{path}: {name} has no {variant!r} entries")
        for key in keys:
            if key not in table:
                raise LUTError(f"{path}: {name}.{variant} is missing op {key!r}")
            _check_stats(table[key], f"{name}.{variant}.{key}", fields, path)
        extra = [k for k in table if k not in keys]
        if extra:
            raise LUTError(f"{path}: {name}.{variant} has entries outside this search space: {', '.join(extra)}")


def _check_stats(stats, where: str, fields, path) -> None:
    """One entry: every field of ``fields`` present; latencies finite and >= 0; counts integers."""
    if not isinstance(stats, dict):
        raise LUTError(f"{path}: {where} must be an object of latency stats ({', '.join(fields)}), "
                       f"got a JSON {_json_type(stats)}")
    missing = [f for f in fields if f not in stats]
    if missing:
        raise LUTError(f"{path}: {where} is missing {', '.join(repr(f) for f in missing)} "
                       f"(every entry needs {', '.join(fields)})")
    for field in fields:
        value = stats[field]
        if field in COUNT_FIELDS:
            if not _is_int(value) or value < 0:
                raise LUTError(f"{path}: {where}.{field} = {value!r} is not a count (an integer >= 0)")
            continue
        problem = _number_problem(value)
        if problem:
            raise LUTError(f"{path}: {where}.{field} = {value!r} {problem}; latencies must be finite numbers >= 0 ms")


def _check_fixed(fixed, fields, path) -> None:
    if not isinstance(fixed, dict):
        raise LUTError(f"{path}: an end-to-end LUT needs a 'fixed' object ({', '.join(E.FIXED_STAGES)})")
    for stage in E.FIXED_STAGES:
        if stage not in fixed:
            raise LUTError(f"{path}: fixed cost {stage!r} missing")
        _check_stats(fixed[stage], f"fixed.{stage}", fields, path)


def _check_pairs(pairs, fields, path) -> None:
    if not isinstance(pairs, dict) or not isinstance(pairs.get("entries"), list):
        raise LUTError(f"{path}: an end-to-end LUT needs 'pairs' with a list of 'entries'")
    seen = {}
    for i, entry in enumerate(pairs["entries"]):
        where = f"pairs.entries[{i}]"
        if not isinstance(entry, dict):
            raise LUTError(f"{path}: {where} must be an object, got a JSON {_json_type(entry)}")
        for key in ("layer", "a", "b", "interaction_ms"):
            if key not in entry:
                raise LUTError(f"{path}: {where} is missing {key!r}")
        if not _is_int(entry["layer"]) or not 0 <= entry["layer"] < N_LAYERS - 1:
            raise LUTError(f"{path}: {where}.layer = {entry['layer']!r} is not an adjacent-layer slot "
                           f"0..{N_LAYERS - 2}")
        for key in ("a", "b"):
            if not isinstance(entry[key], str):
                raise LUTError(f"{path}: {where}.{key} = {entry[key]!r} must be an entry name such as 'Conv3x3_w50'")
            try:
                parse_op_key(entry[key])
            except (AttributeError, TypeError, ValueError) as err:
                raise LUTError(f"{path}: {where}.{key}: {err}") from err
        problem = _number_problem(entry["interaction_ms"], negative_ok=True)
        if problem:
            raise LUTError(f"{path}: {where}.interaction_ms = {entry['interaction_ms']!r} {problem}")
        # keyed as pair_table reads it (by choice), which would keep the last one silently
        pair = (entry["layer"], *(choice_index(*parse_op_key(entry[k])) for k in ("a", "b")))
        if pair in seen:
            raise LUTError(f"{path}: {where} repeats pairs.entries[{seen[pair]}] (layer {pair[0]}, "
                           f"{entry['a']} then {entry['b']}); each adjacent pair is measured once")
        seen[pair] = i
        for key in ("pair", "single_a", "single_b"):
            if key in entry:
                _check_stats(entry[key], f"{where}.{key}", fields, path)


# ----------------------------------------------------------------------------- external


def read_external(path, resolution: int | None = None) -> dict:
    """Read a Seg-NAS device LUT (``lut_<device>.json``) into this schema (decoder-only).

    Raises:
        LUTError: as :func:`load_lut`.
    """
    return load_lut(path, resolution)


def _external_to_schema(raw: dict, path, resolution: int | None = None) -> dict:
    """Map the Seg-NAS schema (hardware, input_size, layers.layer_i.{C_in, C_out, H_out, W_out,
    ops}) onto ours, refusing a file of another search space or resolution with everything
    that differs (``resolution``: the run's input side, if known)."""
    bad = f"{path}: malformed external LUT (Seg-NAS schema)"
    hardware = raw.get("hardware")
    if not isinstance(hardware, str) or not hardware.strip():
        raise LUTError(f"{bad}: 'hardware' must name the device, got {hardware!r}")
    raw_layers = raw.get("layers")
    if not isinstance(raw_layers, dict) or not raw_layers:
        raise LUTError(f"{bad}: 'layers' must be a non-empty object layer_0..layer_{N_LAYERS - 1}")
    names = [f"layer_{i}" for i in range(len(raw_layers))]
    if set(raw_layers) != set(names):
        raise LUTError(f"{bad}: layers must be named layer_0, layer_1, ...; got {', '.join(raw_layers)}")
    height, width = _external_input(raw, bad)
    keys = {}
    for name in names:
        layer = raw_layers[name]
        if not isinstance(layer, dict):
            raise LUTError(f"{bad}: layers.{name} must be an object, got a JSON {_json_type(layer)}")
        for field in EXTERNAL_DIMS:
            if field not in layer:
                raise LUTError(f"{bad}: layers.{name} is missing {field!r}")
            if not _is_int(layer[field]) or layer[field] <= 0:
                raise LUTError(f"{bad}: layers.{name}.{field} = {layer[field]!r} is not a positive integer")
        if not isinstance(layer.get("ops"), dict) or not layer["ops"]:
            raise LUTError(f"{bad}: layers.{name} needs a non-empty 'ops' object of '<Op>_w<pct>' entries")
        for key in layer["ops"]:
            op, sep, pct = key.rpartition("_w")
            if not sep or not op or not pct.isdigit():
                raise LUTError(f"{bad}: layers.{name}.ops has a malformed key {key!r}; "
                               "expected '<Op>_w<pct>' such as 'Conv3x3_w50'")
            keys[key] = (op, int(pct))
    ops = list(dict.fromkeys(op for op, _ in keys.values()))
    found_ops = [op for op in OPS if op in ops] + [op for op in ops if op not in OPS]
    channels = [[raw_layers[n]["C_in"], raw_layers[n]["C_out"]] for n in names]
    diffs = _space_differences(found_ops, sorted({pct for _, pct in keys.values()}), channels, len(names))
    geometry = [(raw_layers[n]["H_out"], raw_layers[n]["W_out"]) for n in names]
    _check_external_geometry(diffs, geometry, (height, width), resolution)
    if diffs:
        raise LUTError(_other_space_message(path, f"external LUT of {hardware} (Seg-NAS schema)", diffs))
    layers = {}
    for name in names:
        entries = raw_layers[name]["ops"]
        for key, value in entries.items():
            _check_stats(value, f"layers.{name}.ops.{key}", EXTERNAL_STATS_FIELDS, path)
        missing = [choice_key(c) for c in range(N_CHOICES) if choice_key(c) not in entries]
        if missing:
            raise LUTError(f"{path}: layers.{name}.ops is missing {', '.join(missing)} "
                           "(every op is needed at every width)")
        layers[name] = {"c_in": raw_layers[name]["C_in"], "c_out": raw_layers[name]["C_out"],
                        "h_out": raw_layers[name]["H_out"], "w_out": raw_layers[name]["W_out"],
                        "op_only": {key: {"mean_ms": float(v["mean_ms"]), "std_ms": float(v["std_ms"])}
                                    for key, v in entries.items()}}
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "target": hardware,
        "runtime": "external", "device": hardware, "precision": "fp32", "threads": None,
        "graph": False, "scope": "decoder-only", "resolution": height, "space": space_block(),
        "measure": {"warmup": raw.get("warmup"), "repeats": raw.get("repeat")},
        "layers": layers, "source": str(path),
    }


def _external_input(raw: dict, bad: str) -> tuple[int, int]:
    """``(H, W)`` of a Seg-NAS file's input: ``input_size`` 128 or "480x640", or input_h/input_w."""
    size, h, w = raw.get("input_size"), raw.get("input_h"), raw.get("input_w")
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size) if isinstance(size, str) else None
    if _is_int(size):
        hw = (size, size)
    elif match:
        hw = (int(match[1]), int(match[2]))
    elif size is None and _is_int(h) and _is_int(w):
        hw = (h, w)
    elif size is None:
        raise LUTError(f"{bad}: missing 'input_size' (the input side, e.g. 128, or 'HxW')")
    else:
        raise LUTError(f"{bad}: input_size = {size!r} is neither an input side (128) nor 'HxW'")
    if ("input_h" in raw or "input_w" in raw) and (h, w) != hw:
        raise LUTError(f"{bad}: input_size {size!r} disagrees with input_h x input_w = {h!r}x{w!r}")
    if min(hw) <= 0:
        raise LUTError(f"{bad}: input size {hw[0]}x{hw[1]} is not positive")
    return hw


def _check_external_geometry(diffs: list, geometry, size: tuple[int, int], resolution: int | None) -> None:
    """Add resolution / output-geometry differences of a Seg-NAS file to ``diffs``.

    Its layer ``l`` of ``n`` must output ``input / 2**(n - 1 - l)`` of its own input; a
    non-square input or (with ``resolution``) another input than the run's is reported only
    when something else differs too (else :func:`load_lut` says "measured at resolution ...").
    """
    def expect(h, w):
        n = len(geometry)
        return [(h / 2 ** (n - 1 - layer), w / 2 ** (n - 1 - layer)) for layer in range(n)]

    height, width = size
    own = [] if geometry == expect(height, width) else [
        f"output geometry (H_out x W_out per layer): found {_fmt_geometry(geometry)}, expected "
        f"{_fmt_geometry(expect(height, width))} for its own input {height}x{width}"]
    if not (diffs or own or height != width):
        return
    if height != width:
        run = f", the run uses {resolution}x{resolution}" if resolution is not None else ""
        diffs.append(f"resolution: input {height}x{width} is not square (this project's inputs are square{run})")
    elif resolution is not None and height != resolution:
        diffs.append(f"resolution: input {height}x{width}, the run uses {resolution}x{resolution}")
    diffs += own
    if resolution is not None and geometry != expect(resolution, resolution):
        diffs.append(f"output geometry (H_out x W_out per layer): found {_fmt_geometry(geometry)}, expected "
                     f"{_fmt_geometry(expect(resolution, resolution))} at the run's {resolution} px")
    elif resolution is None and height != width:
        diffs.append(f"output geometry (H_out x W_out per layer): found {_fmt_geometry(geometry)} "
                     "(not square)")


# ----------------------------------------------------------------------------- tables


def latency_ms(stats: dict) -> float:
    """The latency a predictor uses for one entry: the median of the kept samples when the
    entry has one (robust to a busy machine), else ``mean_ms`` (external files)."""
    return float(stats["median_ms"] if stats.get("median_ms") is not None else stats["mean_ms"])


def entry_table(lut: dict, variant: str) -> np.ndarray:
    """``(5, 21)`` mean latency (ms) of every (layer, choice) of one variant."""
    table = np.empty((N_LAYERS, N_CHOICES))
    for layer in range(N_LAYERS):
        entries = lut["layers"][f"layer_{layer}"][variant]
        table[layer] = [latency_ms(entries[choice_key(c)]) for c in range(N_CHOICES)]
    return table


def fixed_total(lut: dict, stages=E.FIXED_STAGES) -> float:
    """Sum of the named fixed costs (ms); 0 for decoder-only LUTs."""
    if lut["scope"] == "decoder-only":
        return 0.0
    return float(sum(latency_ms(lut["fixed"][s]) for s in stages))


def pair_table(lut: dict) -> np.ndarray:
    """``(4, 21, 21)`` interaction (ms) of adjacent layers: measured, else the slot mean."""
    table = np.zeros((N_LAYERS - 1, N_CHOICES, N_CHOICES))
    if lut["scope"] == "decoder-only":
        return table
    entries = lut["pairs"]["entries"]
    for slot in range(N_LAYERS - 1):
        mine = [e for e in entries if e["layer"] == slot]
        table[slot] = np.mean([e["interaction_ms"] for e in mine]) if mine else 0.0
        for e in mine:
            table[slot, choice_index(*parse_op_key(e["a"])), choice_index(*parse_op_key(e["b"]))] = e["interaction_ms"]
    return table


def sampled_pairs(per_slot: int, seed: int) -> list[tuple[int, int, int]]:
    """The ``(slot, choice_a, choice_b)`` pairs a build times: ``per_slot`` per slot, seeded."""
    rng = np.random.default_rng([seed, 0x9A125])
    per_slot = min(int(per_slot), N_CHOICES * N_CHOICES)
    pairs = []
    for slot in range(N_LAYERS - 1):
        flat = rng.choice(N_CHOICES * N_CHOICES, size=per_slot, replace=False)
        pairs += [(slot, int(f // N_CHOICES), int(f % N_CHOICES)) for f in sorted(flat)]
    return pairs


# ----------------------------------------------------------------------------- building


def build_lut(target: str, resolution: int, settings: MeasureSettings, out, *, pairs_per_slot: int = 6,
              pair_seed: int = 0, choices=None, progress: bool = True, quiet: QuietSettings | None = None) -> dict:
    """Measure a LUT for a local/gpu target on this machine and write it to ``out``.

    Args:
        target: a target name understood by :func:`spec_for_target` (``cpu-ort-1t`` ...).
        resolution: input side (multiple of 32).
        settings: warm-up, repeats, CV limit and retries of every entry.
        out: the JSON file to write (``<out>.partial.json`` holds progress; a rerun resumes).
        pairs_per_slot: pairs timed per adjacent-layer slot (see module docstring).
        pair_seed: seed of the pair sample.
        choices: restrict the measured choices (tests, smoke profile); each unmeasured
            choice then takes the entry of a measured choice of the same op (else the first
            measured one) so the file stays complete -- such a LUT is marked
            ``"restricted": true`` and is not a measurement of those entries.
        progress: show a tqdm bar when tqdm is installed.
        quiet: when the machine counts as quiet and what to do if not (default: warn);
            each group's timings are judged before they are kept, and the load record
            goes into the file as ``machine_load``.

    Returns:
        The LUT dict (as written).

    Raises:
        NoisyMachineError: the machine is busy and ``quiet.policy`` is ``refuse`` (what was
            measured quietly before stays in the partial file; a rerun resumes).
    """
    spec = spec_for_target(target)
    check_target_runnable(target, spec)  # before torch.cuda / onnxruntime are touched
    out = Path(out)
    if not _is_int(resolution) or resolution <= 0 or resolution % 32:
        raise ValueError(f"target {target}: resolution {resolution!r} must be a positive multiple of 32 "
                         "(five x2 upsampling stages)")
    if out.is_dir():
        raise ValueError(f"target {target}: LUT output path {out} is a directory; give the JSON file to write")
    bad = [c for c in (choices or ()) if not 0 <= int(c) < N_CHOICES]
    if bad:
        raise ValueError(f"target {target}: choices {bad} out of range 0..{N_CHOICES - 1}")
    partial = out.with_name(out.stem + ".partial.json")
    header = _header(target, spec, resolution, settings, pairs_per_slot, pair_seed, choices)
    lut = _resume(partial, header)
    gen = torch.Generator().manual_seed(0)
    measured = sorted(set(range(N_CHOICES) if choices is None else (int(c) for c in choices)))
    groups = _groups(resolution, measured, pairs_per_slot, pair_seed)
    with watch(f"LUT {target}", spec.threads, quiet) as load:
        for group, jobs in _progress(groups, progress, target):
            if group in lut["done"]:
                continue
            since = load.mark()
            timed = [(where, _time_job(module_fn, spec, settings, gen)) for where, module_fn in jobs]
            load.check(since, f"group {group}")  # before anything is kept
            for where, stats in timed:
                _store(lut, where, stats)
            lut["done"].append(group)
            atomic_write_text(partial, json.dumps(lut, indent=1))
    final = {**_finish(lut, measured), "machine_load": load.record}
    atomic_write_text(out, json.dumps(final, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    check_lut_data(final, out)
    return final


def _header(target, spec: RuntimeSpec, resolution, settings, pairs_per_slot, pair_seed, choices) -> dict:
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "target": target, "runtime": spec.runtime,
        "device": spec.device, "precision": spec.precision, "threads": spec.threads, "graph": spec.graph,
        "scope": "end-to-end", "resolution": int(resolution), "space": space_block(),
        "measure": {"warmup": settings.warmup, "repeats": settings.repeats, "max_cv": settings.max_cv,
                    "max_retries": settings.max_retries, "max_time_ms": settings.max_time_ms,
                    "min_repeats": settings.min_repeats, "evict_mib": settings.evict_mib},
        "restricted": choices is not None,
        "pairs_config": {"method": "sampled", "per_slot": int(pairs_per_slot), "seed": int(pair_seed)},
    }


def _resume(partial: Path, header: dict) -> dict:
    """The partial build at ``partial`` if it was made with the same header, else a new one."""
    lut = load_cache_json(partial, "partial LUT build",
                          lambda d: "" if isinstance(d, dict) else f"a JSON {type(d).__name__}, not an object")
    if lut is not None and {k: lut.get(k) for k in header} == header:
        return lut
    layers = {}
    for layer in range(N_LAYERS):
        c_in, side, _ = layer_input_shape(layer, header["resolution"])
        layers[f"layer_{layer}"] = {"c_in": c_in, "c_out": CHANNELS[layer][1], "h_out": 2 * side,
                                    "w_out": 2 * side, "op_only": {}, "projected": {}}
    return {**header, "layers": layers, "fixed": {}, "pair_entries": [], "done": []}


def _groups(resolution: int, measured, pairs_per_slot: int, pair_seed: int):
    """Checkpoint groups: ``(name, [(where, factory)])``, factory(gen) -> module+inputs or host fn."""
    groups = [("fixed", [(("fixed", s), _fixed_factory(s, resolution)) for s in E.FIXED_STAGES])]
    for layer in range(N_LAYERS):
        for variant, make in (("op_only", E.op_only_entry), ("projected", E.projected_entry)):
            jobs = [((variant, layer, c), _entry_factory(make, layer, c, resolution)) for c in measured]
            groups.append((f"{variant}/layer_{layer}", jobs))
    # restricted builds time the sampled pairs' donors (see _donor), so pairs still get timed
    pairs = dict.fromkeys((s, _donor(a, measured), _donor(b, measured)) for s, a, b in sampled_pairs(pairs_per_slot, pair_seed))
    pair_jobs = [(("pair", s, a, b), _pair_factory(s, a, b, resolution)) for s, a, b in pairs]
    groups.append(("pairs", pair_jobs))
    return groups


def _fixed_factory(stage, resolution):
    if stage in ("preprocess", "postprocess"):
        return HostStage(stage, resolution)
    return lambda gen: E.fixed_module(stage, resolution, gen)


class HostStage:
    """Factory of a host stage (pre/post-processing): timed by the wall clock on every target."""

    def __init__(self, stage: str, resolution: int):
        self.stage, self.resolution = stage, resolution

    def __call__(self, gen, spec: RuntimeSpec):
        return E.host_stage(self.stage, self.resolution, gen, spec)


def _entry_factory(make, layer, choice, resolution):
    return lambda gen: make(layer, choice, resolution, gen)


def _pair_factory(slot, a, b, resolution):
    return PairJob(slot, a, b, resolution)


class PairJob:
    """Factory of one pair measurement: the pair and its two singles, timed interleaved."""

    def __init__(self, slot: int, a: int, b: int, resolution: int):
        self.slot, self.a, self.b, self.resolution = slot, a, b, resolution

    def __call__(self, gen):
        return [E.pair_entry(self.slot, self.a, self.b, self.resolution, gen),
                E.projected_entry(self.slot, self.a, self.resolution, gen),
                E.projected_entry(self.slot + 1, self.b, self.resolution, gen)]


def _time_job(factory, spec: RuntimeSpec, settings: MeasureSettings, gen) -> Stats:
    with torch_threads(spec.threads):
        if isinstance(factory, HostStage):
            return measure_robust(factory(gen, spec), settings, wall_timer)
        if isinstance(factory, PairJob):
            runners = [E.entry_runner(*made, spec) for made in factory(gen)]
            return measure_interleaved(runners, settings, spec.timer)
        return measure_robust(E.entry_runner(*factory(gen), spec), settings, spec.timer)


def _store(lut: dict, where: tuple, stats: Stats) -> None:
    if where[0] == "fixed":
        lut["fixed"][where[1]] = stats.to_dict()
    elif where[0] == "pair":
        pair, single_a, single_b = stats
        lut["pair_entries"].append({"layer": where[1], "a": choice_key(where[2]), "b": choice_key(where[3]),
                                    "pair": pair.to_dict(), "single_a": single_a.to_dict(),
                                    "single_b": single_b.to_dict()})
    else:
        variant, layer, choice = where
        lut["layers"][f"layer_{layer}"][variant][choice_key(choice)] = stats.to_dict()


def _finish(lut: dict, measured) -> dict:
    """Fill restricted entries, compute pair interactions, add provenance."""
    final = {k: v for k, v in lut.items() if k not in ("done", "pair_entries", "pairs_config")}
    donor = {c: _donor(c, measured) for c in range(N_CHOICES)}
    for layer in final["layers"].values():
        for variant in VARIANTS:
            layer[variant] = {choice_key(c): layer[variant][choice_key(donor[c])] for c in range(N_CHOICES)}
    entries = [{**e, "interaction_ms": latency_ms(e["pair"]) - latency_ms(e["single_a"]) - latency_ms(e["single_b"])}
               for e in lut["pair_entries"]]
    final["pairs"] = {**lut["pairs_config"], "entries": entries}
    final["provenance"] = provenance(lut_target=lut["target"], command="linas_lib.latency.lut.build_lut")
    return final


def _donor(choice: int, measured) -> int:
    """The measured choice whose entry an unmeasured one takes: itself, same op, else the first."""
    if choice in measured:
        return choice
    same_op = [c for c in measured if c // len(WIDTHS) == choice // len(WIDTHS)]
    return same_op[0] if same_op else measured[0]


def _progress(groups, enabled: bool, target: str):
    if not enabled:
        return groups
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return groups
    return tqdm(groups, desc=f"LUT {target}", leave=False)


def lut_summary(lut: dict) -> dict:
    """Counts and medians of a LUT (for ``linas lut check`` and the summary table)."""
    variants = ("op_only",) if lut["scope"] == "decoder-only" else VARIANTS
    cvs = [e["cv"] for layer in lut["layers"].values() for v in variants for e in layer[v].values() if "cv" in e]
    n = sum(len(layer[v]) for layer in lut["layers"].values() for v in variants)
    n += len(lut.get("fixed", {})) + len(lut.get("pairs", {}).get("entries", []))
    return {"target": lut["target"], "runtime": lut["runtime"], "scope": lut["scope"],
            "resolution": lut["resolution"], "n_entries": n,
            "median_cv": float(np.median(cvs)) if cvs else None,
            "retries": int(sum(e.get("retries", 0) for layer in lut["layers"].values() for v in variants
                               for e in layer[v].values()))}
