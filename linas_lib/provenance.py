"""Provenance and atomic result files.

Every results file carries where it came from: git sha, profile and resolved config,
package versions, machine, timestamp. JSON files hold it under ``"provenance"``; CSV
files in one leading ``# provenance: {...}`` comment line (``pandas.read_csv(...,
comment="#")`` skips it). Files are written to a temporary name and renamed, so a crash
never leaves a half-written result.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from . import numerics
from .keys import atomic_write_text
from .paths import project_root

PACKAGES = (
    "torch", "torchvision", "numpy", "scipy", "pymoo", "onnxruntime", "onnx",
    "papermill", "matplotlib", "pandas",
)


OUTPUT_FOLDERS = ("results/", "figures/")  # rewritten by every run: they do not make the code dirty
INPUT_FOLDERS = ("results/luts/",)  # committed data inside results/: it does


def _changes_code(path: str) -> bool:
    return path.startswith(INPUT_FOLDERS) or not path.startswith(OUTPUT_FOLDERS)


def git_sha() -> str:
    """Commit of the working tree (``+dirty`` if its code or data, anything but the outputs under
    ``results/`` and ``figures/``, has uncommitted changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--no-renames"],
            cwd=project_root(), capture_output=True, text=True, check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = any(_changes_code(line[3:].strip('"')) for line in changed)
    return f"{sha}+dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    """Installed versions of the packages results depend on (absent ones omitted)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def machine() -> dict:
    """CPU, core count and GPU (if torch sees one).

    ``cpu_id`` (vendor, family, model, stepping; ARM: implementer, part, variant, revision) and
    ``cpu_capability`` (the vector ISA of torch's own kernels; oneDNN and MKL dispatch on their
    own) are recorded because the cloud VM's model name may be masked ("AMD EPYC"), and trained
    numbers have been seen to reproduce bit for bit on one VM but not on another whose CPU was
    not recorded.
    """
    cpu = _cpuinfo()
    info = {"platform": platform.platform(), "processor": _cpu_name(cpu), "cpu_id": _cpu_id(cpu), "cores": os.cpu_count()}
    try:
        import torch
    except ImportError:
        return info
    info["torch_threads"] = torch.get_num_threads()
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    info["cpu_capability"] = capability() if capability else "unknown"
    info["numerics"] = numerics.describe()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


_CPU_FIELDS = (  # (label, /proc/cpuinfo key) of the first CPU: x86, then ARM
    (("", "vendor_id"), ("family", "cpu family"), ("model", "model"), ("stepping", "stepping")),
    (("arm implementer", "CPU implementer"), ("part", "CPU part"), ("variant", "CPU variant"),
     ("revision", "CPU revision")),
)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The fields of the first CPU block of ``path`` (empty where it cannot be read)."""
    try:
        block = Path(path).read_text().split("\n\n")[0]
    except OSError:
        return {}
    fields = {}
    for line in block.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _cpu_id(fields: dict[str, str]) -> str:
    """The CPU of :func:`_cpuinfo` fields as ``<vendor> family <f> model <m> stepping <s>`` (x86)
    or ``arm implementer <i> part <p> variant <v> revision <r>``; "unknown" without either."""
    for pairs in _CPU_FIELDS:
        if pairs[0][1] in fields:
            return " ".join(f"{label} {fields.get(key, '?')}".strip() for label, key in pairs)
    return "unknown"


def _cpu_name(fields: dict[str, str]) -> str:
    """The model name of :func:`_cpuinfo` fields, else the platform's processor string."""
    return fields.get("model name") or platform.processor() or "unknown"


def provenance(profile: str = "", config: dict | None = None, sha: str | None = None, **extra) -> dict:
    """The provenance block written into every results file (``sha``: the commit to record,
    by default :func:`git_sha` now)."""
    block = {
        "git_sha": sha or git_sha(),
        "profile": profile,
        "config": config or {},
        "packages": package_versions(),
        "machine": machine(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    block.update(extra)
    return block


def _finite(obj):
    """Replace NaN/inf by None so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _finite(obj.item())
    return obj


def write_json(path: str | Path, data: dict, prov: dict | None = None) -> Path:
    """Write ``data`` (plus ``"provenance": prov`` when given) atomically as JSON."""
    payload = dict(data)
    if prov is not None:
        payload["provenance"] = prov
    return atomic_write_text(path, json.dumps(_finite(payload), indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, rows: list[dict], prov: dict | None = None) -> Path:
    """Write a list of dicts atomically as CSV, with a ``# provenance:`` first line."""
    buffer = io.StringIO()
    if prov is not None:
        buffer.write("# provenance: " + json.dumps(_finite(prov), sort_keys=True) + "\n")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_finite(rows))
    return atomic_write_text(path, buffer.getvalue())


def read_csv_table(path: str | Path, columns=(), numeric=(), positive=(), counts=(), archs=(), unique=(),
                   error=ValueError) -> list[dict]:
    """The rows of a CSV written by :func:`write_csv`, checked before anything computes on them.

    Args:
        path: the file.
        columns: columns it must have.
        numeric: columns (fnmatch patterns, checked where present: list required ones in
            ``columns``) whose every value must be a finite number (read as float).
        positive: the same, for values that must be > 0.
        counts: columns (names, checked where present) whose every value must be an integer
            >= 0 (seeds, counts); read as int.
        archs: columns whose every value must be an architecture string (:func:`~linas_lib.space.parse_arch`).
        unique: columns whose values together must not repeat (e.g. ``("arch", "seed")``).
        error: the exception class raised.

    Raises:
        error: naming the file and what is wrong (no table, a missing column, the first bad row).
    """
    import numpy as np
    import pandas as pd

    from .paths import display_path
    from .space import parse_arch

    source, path = path, display_path(Path(path))  # read the file, name it as the project shows paths
    try:
        frame = pd.read_csv(source, comment="#")
    except pd.errors.EmptyDataError:
        raise error(f"{path}: no table after its provenance line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise error(f"{path}: not a CSV table ({err})") from None
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise error(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise error(f"{path}: the table has no rows")
    for column, must_be_positive in _matching(frame.columns, numeric, positive):
        values = pd.to_numeric(frame[column], errors="coerce").astype(float)
        bad = ~np.isfinite(values.to_numpy()) | ((values.to_numpy() <= 0) if must_be_positive else False)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            rule = "a finite number > 0" if must_be_positive else "a finite number"
            raise error(f"{path}: row {row + 1}: {column} = {_plain(frame[column].iloc[row])!r} is not {rule}")
        frame[column] = values
    for column in (c for c in counts if c in frame.columns):
        values = pd.to_numeric(frame[column], errors="coerce").astype(float).to_numpy()
        bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise error(f"{path}: row {row + 1}: {column} = {_plain(frame[column].iloc[row])!r} is not an integer >= 0")
        frame[column] = values.astype(np.int64)
    for column in archs:
        for row, text in enumerate(frame[column]):
            try:
                parse_arch(str(text))
            except ValueError as err:
                raise error(f"{path}: row {row + 1}: {column}: {err}") from None
    if unique and frame.duplicated(list(unique)).any():
        row = int(np.flatnonzero(frame.duplicated(list(unique)).to_numpy())[0])
        shown = ", ".join(f"{c} = {_plain(frame[c].iloc[row])!r}" for c in unique)
        raise error(f"{path}: row {row + 1} repeats {shown}")
    return frame.to_dict("records")


MACHINE_FIELDS = ("cpu_id", "cpu_capability")  # what trained and timed numbers follow (:func:`machine`)


def recorded_machine(block: dict | None) -> tuple[str, ...]:
    """The CPU a provenance block records, as :data:`MACHINE_FIELDS` (``unrecorded`` where absent)."""
    recorded = (block or {}).get("machine") or {}
    return tuple(str(recorded.get(f) or "unrecorded") for f in MACHINE_FIELDS)


def _matching(columns, numeric, positive) -> list[tuple[str, bool]]:
    """``(column, must be positive)`` for every column one of the fnmatch patterns names."""
    from fnmatch import fnmatchcase

    return [(c, any(fnmatchcase(c, p) for p in positive)) for c in columns
            if any(fnmatchcase(c, p) for p in (*numeric, *positive))]


def _plain(value):
    """A numpy scalar as the Python value it holds (so a message shows ``nan``, not ``np.float64(nan)``)."""
    return value.item() if hasattr(value, "item") else value


def read_csv_provenance(path: str | Path) -> dict:
    """The provenance block of a CSV written by :func:`write_csv`."""
    try:
        first = Path(path).read_text().split("\n", 1)[0]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not first.startswith("# provenance: "):
        raise ValueError(f"{path}: no '# provenance:' header line")
    try:
        block = json.loads(first[len("# provenance: "):])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the '# provenance:' line is not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(block, dict):
        raise ValueError(f"{path}: the '# provenance:' line holds a JSON {type(block).__name__}, not an object")
    return block
