"""``linas replicate``: rerun notebooks of the committed code from a cold cache, beside the project.

A replication asks whether a result survives what a rerun changes: another machine, and with
it another supernet training (trainings do not reproduce bit for bit across CPUs, README
"Reproducing the paper"). It must not overwrite the committed results it is read against, so
it runs in a clean clone of ``HEAD`` with its own cache:

1. ``git clone`` the project into a work folder (default ``.cache/replicas/<profile>-<sha12>``;
   an existing one is resumed when it holds the same commit). Uncommitted changes are not
   replicated. A relative data folder outside the project (the profile's
   ``data.crackforest_dir``, ``../shared/...``) is linked beside the clone, so the clone reads
   the same data and does not fall back to the synthetic set.
2. ``linas paper --only <notebook>`` there (``LINAS_ROOT`` and ``PYTHONPATH`` name the clone):
   a fresh clone has no stamps, so the notebook runs; a resumed one skips it when it finished
   and otherwise reruns it, reading the per-item caches the stopped run left.
3. ``linas compare`` there: every summary figure against the clone's committed one.
4. The notebook's CSV/JSON files and ``compare.csv`` are copied, each atomically, to
   ``results/<profile>/replicas/<label>/`` (label: the commit and the clone's recorded CPU).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .config import PROFILE_DIR, load_profile, profile_path
from .keys import atomic_write_text
from .paths import project_root
from .provenance import read_csv_provenance, recorded_machine


class ReplicateError(ValueError):
    """A replication cannot start or be collected; the message says why."""


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise ReplicateError(f"`git {' '.join(args)}` in {cwd} failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


def default_workdir(root: Path, profile_name: str, sha: str) -> Path:
    """``<root>/.cache/replicas/<profile>-<sha12>``."""
    return root / ".cache" / "replicas" / f"{profile_name}-{sha[:12]}"


def prepare_clone(root: Path, workdir: Path, sha: str) -> bool:
    """Clone ``root`` at ``sha`` into ``workdir``; True when it was made now, False when resumed.

    Raises:
        ReplicateError: ``workdir`` exists and is not a clone at ``sha``.
    """
    if workdir.exists():
        if not (workdir / ".git").exists():
            raise ReplicateError(f"{workdir} exists and is not a git clone: remove it or pass another --workdir")
        held = _git(workdir, "rev-parse", "HEAD")
        if held != sha:
            raise ReplicateError(f"{workdir} holds commit {held[:12]}, not {sha[:12]}: remove it or pass another "
                                 f"--workdir")
        return False
    workdir.parent.mkdir(parents=True, exist_ok=True)
    _git(root, "clone", "--quiet", str(root), str(workdir))
    _git(workdir, "checkout", "--quiet", sha)
    return True


def link_outside_data(root: Path, workdir: Path, data_dir: str) -> Path | None:
    """Link a relative data folder that lies outside the project to the same place beside the clone.

    ``../shared/data/crackforest`` from ``root`` is ``root/../shared``: the clone gets
    ``workdir/../shared`` pointing there. Returns the link made, or None (absolute or inside
    the project, the original absent, or the name already taken).
    """
    parts = Path(data_dir).parts
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    if Path(data_dir).is_absolute() or ups == 0 or ups == len(parts):
        return None
    rel = Path(*parts[:ups + 1])  # e.g. ../shared
    source, link = (root / rel).resolve(), workdir / rel
    if not source.exists() or link.exists() or link.is_symlink():
        return None
    link.symlink_to(source, target_is_directory=True)
    return link


def run_in_clone(workdir: Path, args: list[str]) -> int:
    """``python -m linas_lib.cli <args>`` with the clone as project root and import path."""
    env = dict(os.environ, LINAS_ROOT=str(workdir),
               PYTHONPATH=os.pathsep.join(filter(None, (str(workdir), os.environ.get("PYTHONPATH")))))
    env.pop("LINAS_CACHE_DIR", None)  # a cold cache of its own is the point
    return subprocess.run([sys.executable, "-m", "linas_lib.cli", *args], cwd=workdir, env=env).returncode


def machine_label(summary_or_csv: Path, sha: str) -> str:
    """``<sha7>-<cpu>``: the commit and the CPU the replica's provenance records, as a folder name."""
    if summary_or_csv.suffix == ".json":
        import json

        block = json.loads(summary_or_csv.read_text()).get("provenance")
    else:
        block = read_csv_provenance(summary_or_csv)
    cpu = recorded_machine(block)[0]
    return f"{sha[:7]}-" + (re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-") or "unrecorded")


def collect(workdir: Path, root: Path, profile_name: str, notebook: str, label: str | None, sha: str) -> Path:
    """Copy the replica's files of ``notebook`` and its ``compare.csv`` under ``results/<profile>/replicas/``.

    Raises:
        ReplicateError: the replica wrote no summary for ``notebook`` (it did not finish).
    """
    made = workdir / "results" / profile_name / notebook
    summary = made / "summary.json"
    if not summary.is_file():
        raise ReplicateError(f"{summary} is missing: the replica of {notebook} did not finish")
    dest = root / "results" / profile_name / "replicas" / (label or machine_label(summary, sha))
    files = [(p, dest / notebook / p.name) for p in sorted(made.iterdir()) if p.suffix in (".csv", ".json")]
    compare = workdir / "results" / profile_name / "compare.csv"
    if compare.is_file():
        files.append((compare, dest / "compare.csv"))
    for source, target in files:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, source.read_text())
    return dest


def replicate(profile: str, notebook: str, workdir: str | None = None, label: str | None = None,
              commit: str = "HEAD") -> Path:
    """Run ``notebook`` of the committed code in a clean clone with a cold cache and collect it.

    Args:
        profile: a profile's name (``linas_lib/profiles/<name>.yaml``: the clone reads its own copy).
        notebook: the notebook's name, e.g. ``05_pareto``.
        workdir: the clone's folder (default :func:`default_workdir`); resumed when it exists.
        label: the folder under ``results/<profile>/replicas/`` (default :func:`machine_label`).
        commit: the commit whose code and committed results the replica runs (default ``HEAD``).

    Returns:
        The folder the files were collected into.

    Raises:
        ReplicateError: no git, an unknown commit, a work folder at another commit, or the
            notebook failed.
    """
    root = project_root()
    if profile_path(profile).parent != PROFILE_DIR:
        raise ReplicateError(f"profile {profile!r}: replicate takes the name of a committed profile "
                             f"({PROFILE_DIR.name}/<name>.yaml), which the clone reads from its own copy")
    loaded = load_profile(profile)
    sha = _git(root, "rev-parse", "--verify", f"{commit}^{{commit}}")
    work = Path(workdir).resolve() if workdir else default_workdir(root, loaded.name, sha)
    fresh = prepare_clone(root, work, sha)
    link_outside_data(root, work, loaded.data.crackforest_dir)
    print(f"replica of {notebook} at {sha[:12]} in {work} ({'new clone' if fresh else 'resumed'})", flush=True)
    if run_in_clone(work, ["paper", "--profile", loaded.name, "--only", notebook]):
        raise ReplicateError(f"the replica of {notebook} failed in {work}: rerun the same command to resume")
    run_in_clone(work, ["compare", "--profile", loaded.name])  # exit 1 (figures differ) is a finding
    dest = collect(work, root, loaded.name, notebook, label, sha)
    print(f"collected into {dest}")
    return dest
