"""``linas compare``: the reproduced headline figures against the committed ones.

For every ``results/<profile>/*/summary.json`` committed at ``HEAD`` (read with
``git show``), each figure is compared with the working tree's. A figure's *class* comes
from its key by the table :data:`RULES` (fnmatch patterns, first match wins), and the class
says how strictly it must reproduce:

=========  ==========================================  ===================================
class      keys (patterns in :data:`RULES`)             tolerance
=========  ==========================================  ===================================
timing     ``_ms``, ``ms_per_image``, ``_s`` suffix,    none: machine-dependent, reported
           seconds, speedup, throughput, ``c3_``,       (status ``varies``), never failing
           mape/within5/within10/bias pct, median_cv,
           over_budget, noise_est, drift
exact      ``n_*``, ``*.n_*``, front_size, censored,    must be equal
           within_budget, ``_pass``, params, targets
memory     ``mem_ratio`` (byte counting, deterministic)  abs 1e-6 + rel 1e-4 of committed
lut-data   every figure of ``01_luts`` when the         abs 1e-6 + rel 1e-4
           profile's LUTs are all committed files
hv         ``hv.*``, ``hv_*``, ``igd.*``, ``*_hv*``,    abs 1e-6 + rel 1e-4
           evals_to (CIs: seeded bootstrap)
tau        ``*tau*`` (Kendall tau)                      abs 1e-6 + rel 1e-4
accuracy   ``*miou*`` (``*gap_miou*`` before tau)        abs 1e-6 + rel 1e-4
other      everything else                              abs 1e-6 + rel 1e-4
=========  ==========================================  ===================================

The default tolerance means same-seed runs must reproduce; a rule may carry a looser one.
Statuses: ``ok``, ``censored-both`` (null in both: ok), ``differs`` (beyond tolerance, or
null vs a number), ``varies`` (a timing figure that differs: reported only), ``missing``
(committed, not reproduced), ``new`` (reproduced, not committed). The command exits 1 when
a non-timing figure differs or is missing, and writes every row to
``results/<profile>/compare.csv``.

Trained figures have reproduced bit for bit on one machine but not on another VM (whose CPU
was not recorded), so for every rewritten summary a note names the committed and the
reproducing CPU (provenance ``cpu_id``, ``cpu_capability``) when they differ or either is not
known.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .config import PROFILE_DIR, profile_path
from .paths import project_root
from .provenance import recorded_machine

DEFAULT_ABS, DEFAULT_REL = 1e-6, 1e-4
COLUMNS = ("notebook", "key", "committed", "reproduced", "abs_diff", "rel_diff", "class", "tolerance", "status")
QUIET = ("ok", "censored-both")  # statuses the terminal table leaves out (without --all)


class CompareError(ValueError):
    """Nothing can be compared (no git, no committed summary); the message says why."""


@dataclass(frozen=True)
class Rule:
    """Keys matching ``pattern`` belong to ``cls``; ``abs_tol``/``rel_tol`` None: reported only."""

    pattern: str
    cls: str
    abs_tol: float | None = DEFAULT_ABS
    rel_tol: float | None = DEFAULT_REL

    @property
    def tolerance(self) -> str:
        """The tolerance in words (the CSV's ``tolerance`` column)."""
        if self.abs_tol is None:
            return "reported only"
        if self.abs_tol == 0 and self.rel_tol == 0:
            return "exact"
        return f"abs {self.abs_tol:g} + rel {self.rel_tol:g}"


def _timing(pattern: str) -> Rule:
    return Rule(pattern, "timing", None, None)


def _exact(pattern: str) -> Rule:
    return Rule(pattern, "exact", 0.0, 0.0)


RULES: tuple[Rule, ...] = (
    # timing: measured on this machine -- reported, never failing
    *map(_timing, ("*throughput*", "*c3_*", "*speedup*", "*_ms*", "*ms_per_image*", "*_s", "*_s.*",
                   "*seconds*", "*mape_pct*", "*within5_pct*", "*within10_pct*", "*bias_pct*", "*median_cv*",
                   "*over_budget*", "*noise_est*", "*drift*")),
    # exact: counts and flags
    *map(_exact, ("n_*", "*.n_*", "*front_size*", "*censored*", "*within_budget*", "*_pass*",
                  "params.*", "targets.*")),
    # non-timing, within a tolerance (same seed, same numbers)
    Rule("*mem_ratio*", "memory"),
    *(Rule(p, "hv") for p in ("hv.*", "hv_*", "igd.*", "*_hv*", "evals_to_*")),
    Rule("*gap_miou*", "accuracy"),  # the PAD study's mIoU gaps at tau_min are not a Kendall tau
    Rule("*tau*", "tau"),
    Rule("*miou*", "accuracy"),
    Rule("*", "other"),
)


# Notebook 01 only reads LUT files: where the profile's every LUT is committed data (no local
# target measured on this machine), all its figures are deterministic, timing-named or not.
LUT_NOTEBOOK = "01_luts"
LUT_DATA_RULE = Rule("*", "lut-data")


def classify(key: str, notebook: str = "", committed_luts: bool = False) -> Rule:
    """The rule of a figure: :data:`LUT_DATA_RULE` for notebook 01 of a profile whose LUTs are
    all committed, else the first rule of :data:`RULES` whose pattern matches ``key``."""
    if committed_luts and notebook == LUT_NOTEBOOK:
        return LUT_DATA_RULE
    return next(rule for rule in RULES if fnmatchcase(key, rule.pattern))


def reads_committed_luts(profile) -> bool:
    """Whether every target of ``profile`` reads a LUT file (none is measured on this machine)."""
    from .config import load_profile
    from .latency.targets import measures_here

    return not any(measures_here(t) for t in load_profile(profile).latency.targets)


# ------------------------------------------------------------------ reading summaries


def _git(*args: str) -> str:
    """Output of ``git args`` run in the project root.

    Raises:
        CompareError: git is not installed, or the command failed (not a repository, ...).
    """
    try:
        done = subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, check=True)
    except OSError as err:
        raise CompareError(f"git is not available ({err}); linas compare reads the committed "
                           f"summaries with `git show HEAD:<path>`") from err
    except subprocess.CalledProcessError as err:
        first = (err.stderr or "").strip().splitlines()[:1]
        raise CompareError(f"cannot read the committed results in {project_root()}: "
                           f"`git {' '.join(args)}` failed: {first[0] if first else err}") from err
    return done.stdout


def committed_paths(profile_name: str, ref: str = "HEAD") -> list[str]:
    """``results/<profile>/*/summary.json`` paths committed at ``ref``."""
    listed = _git("ls-tree", "-r", "--name-only", ref, "--", f"results/{profile_name}/")
    pattern = re.compile(rf"results/{re.escape(profile_name)}/[^/]+/summary\.json")
    return [p for p in listed.splitlines() if pattern.fullmatch(p)]


def committed_summary(path: str, ref: str = "HEAD") -> dict:
    """A summary (``figures`` and ``provenance``) as committed at ``ref``."""
    return parse_summary(_git("show", f"{ref}:./{path}"), f"{path} at {ref}")


def working_summary(path: str) -> dict | None:
    """A summary in the working tree, or None when the file is absent."""
    file = project_root() / path
    return parse_summary(file.read_text(), path) if file.is_file() else None


def parse_summary(text: str, where: str) -> dict:
    """A ``summary.json``'s text as a dict whose ``figures`` map names to numbers or null.

    Raises:
        CompareError: naming ``where`` and what is wrong.
    """
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as err:
        raise CompareError(f"{where}: not valid JSON ({err})") from None
    figures = summary.get("figures", {}) if isinstance(summary, dict) else None
    if not isinstance(figures, dict):
        raise CompareError(f"{where}: a summary is an object with 'figures' mapping names to numbers")
    bad = [k for k, v in figures.items() if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if bad:
        raise CompareError(f"{where}: figure {bad[0]!r} is {figures[bad[0]]!r}, not a number or null")
    return summary


def machine_of(summary: dict | None) -> tuple[str, ...]:
    """The summary's CPU (:func:`~linas_lib.provenance.recorded_machine` of its provenance) and
    its numerics mode (``LINAS_NUMERICS``; a block from before the mode was recorded ran native,
    the only mode there was)."""
    block = (summary or {}).get("provenance")
    numerics = ((block or {}).get("machine") or {}).get("numerics") or {}
    return (*recorded_machine(block), f"{numerics.get('mode', 'native')} numerics")


_NOT_KNOWN = {"unrecorded", "unknown"}


def machine_notes(pairs: dict[str, tuple[tuple, tuple]]) -> list[str]:
    """One note per (committed CPU, reproduced CPU) pair that is not one known CPU.

    Args:
        pairs: ``{path: (committed machine_of, reproduced machine_of)}`` of the summaries the
            reproduction rewrote.
    """
    groups: dict[tuple, list[str]] = {}
    for path, (old, new) in pairs.items():
        if old != new or _NOT_KNOWN & set(old):
            groups.setdefault((old, new), []).append(Path(path).parent.name)
    return [f"{', '.join(names)}: committed on {' / '.join(old)}, reproduced on {' / '.join(new)}; "
            f"trained figures have reproduced bit for bit on one machine, not on another VM, so a "
            f"`differs` there may come from the machine (README, `make compare`)"
            for (old, new), names in groups.items()]


def untracked_summaries(profile_name: str, committed: list[str]) -> list[str]:
    """Working-tree summaries of the profile that are not committed."""
    root = project_root()
    found = sorted(p.relative_to(root).as_posix() for p in (root / "results" / profile_name).glob("*/summary.json"))
    return [p for p in found if p not in committed]


# ------------------------------------------------------------------ comparing


def compare_figure(notebook: str, key: str, committed, reproduced, present: bool = True,
                   committed_luts: bool = False) -> dict:
    """One row: both values, their differences, the key's class and the status."""
    rule = classify(key, notebook, committed_luts)
    row = dict(notebook=notebook, key=key, committed=committed, reproduced=reproduced, abs_diff=None,
               rel_diff=None, **{"class": rule.cls}, tolerance=rule.tolerance)
    if committed is not None and reproduced is not None:
        diff = abs(float(reproduced) - float(committed))
        row["abs_diff"] = diff
        row["rel_diff"] = diff / abs(committed) if committed else (0.0 if diff == 0 else None)
    row["status"] = _status(rule, committed, reproduced, present, row["abs_diff"])
    return row


def _status(rule: Rule, committed, reproduced, present: bool, diff: float | None) -> str:
    if not present:
        return "missing"
    if committed is None and reproduced is None:
        return "censored-both"
    if diff is not None and _within(rule, diff, committed):
        return "ok"
    return "varies" if rule.cls == "timing" else "differs"


def _within(rule: Rule, diff: float, committed: float) -> bool:
    """``diff <= abs_tol + rel_tol * |committed|`` (timing: only an identical value)."""
    if rule.abs_tol is None:
        return diff == 0
    return diff <= rule.abs_tol + rule.rel_tol * abs(committed)


def compare_summaries(notebook: str, committed: dict, reproduced: dict | None,
                      committed_luts: bool = False) -> list[dict]:
    """Rows for every key of a committed summary (and keys only the reproduction has)."""
    reproduced_figs = reproduced or {}
    rows = [compare_figure(notebook, k, v, reproduced_figs.get(k), k in reproduced_figs, committed_luts)
            for k, v in committed.items()]
    rows += [dict(compare_figure(notebook, k, None, v, committed_luts=committed_luts), status="new")
             for k, v in reproduced_figs.items() if k not in committed]
    return rows


def failing(row: dict) -> bool:
    """A non-timing figure that differs beyond its tolerance or is missing."""
    return row["class"] != "timing" and row["status"] in ("differs", "missing")


def compare_profile(profile_name: str, ref: str = "HEAD", committed_luts: bool = False) -> tuple[list[dict], list[str]]:
    """Every row of a profile, and notes (untracked summaries, missing reproductions, another CPU).

    Raises:
        CompareError: no git, or no committed summary for the profile.
    """
    paths = committed_paths(profile_name, ref)
    untracked = untracked_summaries(profile_name, paths)
    if not paths:
        extra = f"; {', '.join(untracked)} exist but are untracked" if untracked else ""
        raise CompareError(f"no committed results/{profile_name}/*/summary.json at {ref}{extra}: nothing to compare")
    notes = [f"{p} is untracked (not at {ref}): not compared" for p in untracked]
    rows, machines = [], {}
    for path in paths:
        committed, reproduced = committed_summary(path, ref), working_summary(path)
        if reproduced is None:
            notes.append(f"{path} is committed but absent from the working tree: every figure missing")
        elif reproduced.get("provenance") != committed.get("provenance"):  # rewritten, not the committed file
            machines[path] = (machine_of(committed), machine_of(reproduced))
        rows += compare_summaries(Path(path).parent.name, committed.get("figures", {}),
                                  None if reproduced is None else reproduced.get("figures", {}), committed_luts)
    return rows, notes + machine_notes(machines)


# ------------------------------------------------------------------ reporting


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _cells(row: dict) -> list[str]:
    """A row's cells: absent values ``-``, null values ``null``."""
    absent = {"missing": "reproduced", "new": "committed"}.get(row["status"])
    return [("null" if c in ("committed", "reproduced") and c != absent and row[c] is None else _cell(row[c]))
            for c in COLUMNS]


def format_table(rows: list[dict]) -> str:
    """A plain-text table of ``rows`` with the :data:`COLUMNS`."""
    cells = [list(COLUMNS)] + [_cells(row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def tally(rows: list[dict], profile_name: str, ref: str) -> str:
    """One line: how many rows of each status, and the verdict."""
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    bad = sum(failing(r) for r in rows)
    verdict = f"FAIL ({bad} non-timing figure(s) differ or are missing)" if bad else "ok"
    return f"compare {profile_name} vs {ref}: {len(rows)} figures ({parts}): {verdict}"


def write_compare_csv(rows: list[dict], profile_name: str, ref: str) -> Path:
    """``results/<profile>/compare.csv`` (atomic, with a provenance line)."""
    from . import provenance as prov

    path = project_root() / "results" / profile_name / "compare.csv"
    return prov.write_csv(path, rows, prov.provenance(profile_name, ref=ref))


def run_compare(profile: str = "cpu", show_all: bool = False, ref: str = "HEAD", echo=print) -> int:
    """``linas compare``: print the non-ok rows (every row with ``show_all``) and a tally; write the CSV.

    Returns:
        1 when a non-timing figure differs beyond tolerance or is missing, else 0.

    Raises:
        CompareError: no git, a profile path that does not exist, or nothing committed for the profile.
    """
    path = profile_path(profile)
    if path != PROFILE_DIR / f"{profile}.yaml" and not path.is_file():  # a YAML path, not a name: it must exist
        raise CompareError(f"profile file {profile} not found")
    name = path.stem
    committed_luts = path.is_file() and reads_committed_luts(profile)
    rows, notes = compare_profile(name, ref, committed_luts)
    for note in notes:
        echo(f"note: {note}")
    shown = rows if show_all else [r for r in rows if r["status"] not in QUIET]
    if shown:
        echo(format_table(shown))
    path = write_compare_csv(rows, name, ref)
    echo(tally(rows, name, ref))
    echo(f"wrote {path}")
    return 1 if any(failing(r) for r in rows) else 0
