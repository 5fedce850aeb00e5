"""``make paper``: rerun exactly the notebooks whose inputs changed, and the paper's macros.

**Content stamps.** ``linas paper`` runs ``notebooks/[0-9][0-9]_*.ipynb`` in order. Before
each notebook it hashes (sha256, :mod:`linas_lib.keys`) everything the notebook's results
depend on:

* the notebook file,
* every ``linas_lib/**/*.py`` and ``linas_lib/profiles/*.yaml`` (sorted paths, their bytes),
* the profile file and the seed,
* the committed LUT data (every file under ``results/luts/``, plus any ``lut:`` file the
  profile names elsewhere),
* the committed benchmark table (``results/<profile>/bench/table.csv`` and ``split.json``),
* the profile's search records (the files under ``records.path`` and each study's ``record``),
* the outputs of every earlier notebook (the files under ``results/<profile>/<earlier>/``).

A notebook is skipped only when its stamp ``.cache/stamps/<profile>/<notebook>.json``
records the same input hash and its own outputs are still the ones it wrote. The stamp is
written (atomically) only after the notebook succeeded, so an interrupted run resumes at
the first notebook without a valid stamp; a fresh clone has no ``.cache`` and runs
everything. Only file hashing happens here: no torch import unless a notebook must run.

**Macros.** :func:`write_macros` turns every ``results/<profile>/*/summary.json`` into
``results/<profile>/macros.tex``, one ``\\newcommand`` per figure, for the paper text. It is
called by :meth:`linas_lib.notebook.Run.write_summary` and at the end of ``linas paper``.
Macro names must be letters only (TeX control words), so they are built by this rule:

* the notebook's name without its ``NN_`` prefix, first letter lower case, then the key;
* digits are spelled as capitalised words (``1`` -> ``One``), the letter after them kept;
* every other non-letter (``.``, ``-``, ``_``, non-ASCII) is dropped and the next letter
  capitalised;
* a name already taken (processing notebooks and keys in sorted order) gets ``Two``,
  ``Three``, ... appended.

Example: ``01_luts`` + ``cpu-torch-1t.feasible_pct`` -> ``\\lutsCpuTorchOnetFeasiblePct``.
Values are printed with 4 significant digits (no exponent); null is ``\\textit{n/a}``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from pathlib import Path

from . import runner
from .config import Profile, profile_path
from .keys import atomic_write_text, content_hash, file_digest, load_json
from .paths import cache_dir, project_root, resolve

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
STAMP_VERSION = 1
DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")
NA = r"\textit{n/a}"


# ------------------------------------------------------------------ file digests


def notebook_names() -> list[str]:
    """The numbered notebooks, in run order."""
    return sorted(p.stem for p in (project_root() / "notebooks").glob(NOTEBOOK_GLOB))


def _digests(paths, base: Path | None = None) -> dict[str, str]:
    """``{path relative to base (the root): sha256}`` of files (``"missing"`` when absent)."""
    root = base or project_root()
    out = {}
    for path in sorted(set(paths)):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        out[rel] = file_digest(path, 64) if path.is_file() else "missing"
    return out


def _files_under(folder: Path, pattern: str = "**/*") -> list[Path]:
    """Files under ``folder`` matching ``pattern`` (none if the folder is absent)."""
    return [p for p in folder.glob(pattern) if p.is_file() and "__pycache__" not in p.parts]


def library_digests() -> dict[str, str]:
    """Digests of ``linas_lib/**/*.py`` and ``linas_lib/profiles/*.yaml``."""
    lib = project_root() / "linas_lib"
    return _digests(_files_under(lib, "**/*.py") + _files_under(lib / "profiles", "*.yaml"))


def lut_digests(profile: Profile) -> dict[str, str]:
    """Digests of the committed LUT data and of every ``lut:`` file the profile names."""
    named = [resolve(t.lut) for t in profile.latency.targets if t.lut]
    return _digests(_files_under(project_root() / "results" / "luts") + named)


BENCH_INPUTS = ("table.csv", "split.json")  # what notebooks read of the benchmark table (not the pilot)


def bench_digests(profile_name: str) -> dict[str, str]:
    """Digests of the assembled benchmark table (``results/<profile>/bench/table.csv``, ``split.json``)."""
    folder = project_root() / "results" / profile_name / "bench"
    return _digests([folder / n for n in BENCH_INPUTS if (folder / n).is_file()], folder)


def record_digests(profile: Profile) -> dict[str, str]:
    """Digests of the files of the profile's search record (``records.path``; none when empty) and
    of each other record a study names (``records.studies[].record``, keys prefixed by its path)."""
    if not profile.records.path:
        return {}
    folder = resolve(profile.records.path)
    out = _digests(_files_under(folder), folder)
    for path in dict.fromkeys(s.record for s in profile.records.studies if s.record and s.record != profile.records.path):
        other = resolve(path)
        out.update({f"{path}/{k}": v for k, v in _digests(_files_under(other), other).items()})
    return out


def output_digests(profile_name: str, notebook: str) -> dict[str, str]:
    """Digests of the files under ``results/<profile>/<notebook>/``."""
    folder = project_root() / "results" / profile_name / notebook
    return _digests(_files_under(folder), folder)


def input_parts(notebook: str, earlier: list[str], profile: Profile, profile_file: Path, seed: int) -> dict:
    """Everything one notebook's results depend on, as digests (see the module docstring)."""
    return {
        "notebook": file_digest(project_root() / "notebooks" / f"{notebook}.ipynb", 64),
        "seed": int(seed),
        "profile": file_digest(profile_file, 64),
        "library": library_digests(),
        "luts": lut_digests(profile),
        "bench": bench_digests(profile.name),
        "records": record_digests(profile),
        "upstream": {f"{n}/{k}": v for n in earlier for k, v in output_digests(profile.name, n).items()},
    }


# ------------------------------------------------------------------ stamps


def stamp_path(profile_name: str, notebook: str) -> Path:
    """``.cache/stamps/<profile>/<notebook>.json``."""
    return cache_dir() / "stamps" / profile_name / f"{notebook}.json"


def read_stamp(profile_name: str, notebook: str) -> dict | None:
    """A notebook's stamp, or None when absent, unreadable or of another stamp version."""
    path = stamp_path(profile_name, notebook)
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("version") == STAMP_VERSION else None


def write_stamp(profile_name: str, notebook: str, parts: dict) -> Path:
    """Record a successful run: its input hash and parts, and the outputs it left."""
    stamp = {
        "version": STAMP_VERSION,
        "notebook": notebook,
        "input_hash": content_hash(parts, 64),
        "parts": parts,
        "outputs": output_digests(profile_name, notebook),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return atomic_write_text(stamp_path(profile_name, notebook), json.dumps(stamp, indent=1) + "\n")


def stale_reason(stamp: dict | None, parts: dict, outputs: dict[str, str]) -> str | None:
    """Why a notebook must run (None: its stamp is valid)."""
    if stamp is None:
        return "no stamp"
    old = stamp.get("parts", {})
    for part, label in (("notebook", "notebook changed"), ("profile", "profile changed")):
        if old.get(part) != parts[part]:
            return label
    if old.get("seed") != parts["seed"]:
        return f"seed {old.get('seed')} -> {parts['seed']}"
    for part, label in (("library", "library changed"), ("luts", "LUT data changed"),
                        ("bench", "benchmark table changed"), ("upstream", "upstream outputs changed")):
        changed = _changed(old.get(part, {}), parts.get(part, {}))
        if changed:
            return f"{label}: {changed}"
    if stamp.get("input_hash") != content_hash(parts, 64):
        return "inputs changed"
    if not outputs:
        return "outputs missing"
    changed = _changed(stamp.get("outputs", {}), outputs)
    return f"outputs changed: {changed}" if changed else None


def _changed(old: dict, new: dict) -> str:
    """The first path whose digest differs (``+N more``), or ``""``."""
    paths = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not paths:
        return ""
    return paths[0] + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else "")


# ------------------------------------------------------------------ linas paper


def run_paper(profile: str = "cpu", seed: int = 0, force: bool = False, only: str | None = None,
              echo=None) -> list[str]:
    """Run every notebook of ``profile`` whose stamp is not valid, in order.

    Args:
        profile: profile name or YAML path.
        seed: the notebooks' seed.
        force: rerun every (selected) notebook.
        only: consider this notebook only (its upstream still counts).
        echo: called with the one line per notebook (default: print, flushed).

    Returns:
        The notebooks that ran.

    Raises:
        ValueError: a bad profile or LUT file (``"<file>: ..."``), or an unknown ``only``.
        linas_lib.runner.NotebookFailed: a notebook cell raised (earlier stamps are kept).
    """
    loaded = runner.load_profile_named(profile)
    echo = echo or (lambda line: print(line, flush=True))
    names = notebook_names()
    selected = _select(names, only)
    ran, checked = [], False
    for i, name in enumerate(names):
        if name not in selected:
            continue
        parts = input_parts(name, names[:i], loaded, profile_path(profile), seed)
        reason = "forced" if force else stale_reason(read_stamp(loaded.name, name), parts,
                                                    output_digests(loaded.name, name))
        if reason is None:
            echo(f"ok {name} (up to date)")
            continue
        if not checked:
            runner.check_luts(loaded, profile_path(profile))
            checked = True
        echo(f"run {name} (stale: {reason})")
        runner.run_notebook(name, profile, seed)
        write_stamp(loaded.name, name, parts)
        ran.append(name)
    write_macros(loaded.name)
    write_goals(loaded.name)
    return ran


def _select(names: list[str], only: str | None) -> list[str]:
    """``names``, or just ``only`` (checked against ``names``)."""
    if only is None:
        return names
    stem = Path(only).stem
    if stem not in names:
        raise ValueError(f"no notebook {only!r} (known: {', '.join(names)})")
    return [stem]


# ------------------------------------------------------------------ macros


def macro_name(notebook: str, key: str) -> str:
    """``01_luts`` + ``cpu-torch-1t.feasible_pct`` -> ``lutsCpuTorchOnetFeasiblePct``."""
    stem = re.sub(r"^\d+_", "", notebook)
    head = _letters(stem, upper_first=False) or _letters(notebook, upper_first=False) or "nb"
    return head[0].lower() + head[1:] + _letters(key, upper_first=True)


def _letters(text: str, upper_first: bool) -> str:
    """``text`` as ASCII letters: digits spelled, other characters dropped, the next letter capitalised."""
    out, capital = [], upper_first
    for char in text:
        if char in "0123456789":
            out.append(DIGITS[int(char)])
            capital = False
        elif char.isascii() and char.isalpha():
            out.append(char.upper() if capital else char)
            capital = False
        else:
            capital = True
    return "".join(out)


def spelled(number: int) -> str:
    """``12`` -> ``OneTwo`` (digit by digit)."""
    return "".join(DIGITS[int(d)] for d in str(number))


def format_value(value) -> str:
    """A figure with 4 significant digits and no exponent; null/NaN -> ``\\textit{n/a}``."""
    if value is None or not math.isfinite(float(value)):
        return NA
    rounded = float(f"{float(value):.4g}") + 0.0
    if rounded == 0:
        return "0"
    decimals = max(0, 3 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def macro_table(summaries: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """``(name, value, notebook, key)`` for every figure, names unique, in sorted order."""
    rows, taken = [], set()
    for notebook in sorted(summaries):
        for key in sorted(summaries[notebook]):
            base = name = macro_name(notebook, key)
            count = 1
            while name in taken:
                count += 1
                name = base + spelled(count)
            taken.add(name)
            rows.append((name, format_value(summaries[notebook][key]), notebook, key))
    return rows


def read_summaries(profile_name: str) -> dict[str, dict]:
    """``{notebook: figures}`` of every ``results/<profile>/*/summary.json``."""
    out = {}
    for path in sorted((project_root() / "results" / profile_name).glob("*/summary.json")):
        out[path.parent.name] = load_json(path).get("figures", {})
    return out


def read_goal_figures(profile_name: str) -> dict[str, dict]:
    """:func:`read_summaries`; under :data:`linas_lib.goals.TARGETS` the profile's target names
    (``all``, ``local``); and under :data:`linas_lib.goals.BENCH_EXTENSION`, the seed agreement of
    the benchmark table's seed extension (``results/<profile>/bench/extension.json``, written by
    ``linas bench build --add-seeds``) with its item counts, when it exists."""
    from .config import load_profile, profile_path
    from .goals import BENCH_EXTENSION, TARGETS

    figures = read_summaries(profile_name)
    if profile_path(profile_name).is_file():  # results of a profile whose YAML is gone name no targets
        targets = load_profile(profile_name).latency.targets
        figures[TARGETS] = {"all": [t.name for t in targets], "local": [t.name for t in targets if t.kind == "local"]}
    path = project_root() / "results" / profile_name / "bench" / "extension.json"
    record = load_json(path)
    if record is not None:
        missing = [k for k in ("agreement", "items", "done") if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"{path}: lacks {', '.join(missing)}; rebuild it with linas bench build --add-seeds")
        figures[BENCH_EXTENSION] = {**record["agreement"], "items": record["items"], "done": record["done"]}
    return figures


def write_goals(profile_name: str) -> Path | None:
    """Write ``results/<profile>/goals.md`` (:func:`linas_lib.goals.goals_markdown`) from the
    profile's summaries and seed extension (:func:`read_goal_figures`, atomically); None when it
    has no summary yet."""
    from .goals import BENCH_EXTENSION, TARGETS, goals_markdown

    summaries = read_goal_figures(profile_name)
    if not set(summaries) - {BENCH_EXTENSION, TARGETS}:
        return None
    return atomic_write_text(project_root() / "results" / profile_name / "goals.md", goals_markdown(summaries))


def write_macros(profile_name: str) -> Path | None:
    """Write ``results/<profile>/macros.tex`` from the profile's summaries (atomically).

    Returns:
        The file, or None when the profile has no summary yet (nothing written).
    """
    summaries = read_summaries(profile_name)
    if not summaries:
        return None
    header = [
        f"% Headline figures of profile {profile_name}: one macro per summary.json figure.",
        "% Generated by linas_lib.paper.write_macros whenever a notebook writes its summary; do not edit.",
        "% Name: notebook without its NN_ prefix + key; digits spelled (1 -> One), other non-letters",
        "% dropped with the next letter capitalised; a taken name gets Two, Three, ... appended.",
        "% Values: 4 significant digits; null -> \\textit{n/a}.",
    ]
    lines = [f"\\newcommand{{\\{name}}}{{{value}}}  % {nb}: {key}"
             for name, value, nb, key in macro_table(summaries)]
    path = project_root() / "results" / profile_name / "macros.tex"
    return atomic_write_text(path, "\n".join(header + lines) + "\n")
