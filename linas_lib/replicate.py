"""``linas replicate``: rerun a notebook of the committed code from a cold cache, beside the project.

A replication asks whether a result survives what a rerun changes: another machine, and with
it another supernet training (trainings do not reproduce bit for bit across CPUs). It must not
overwrite the committed results it is read against, so it runs in a clean clone with its own
cache:

1. ``git clone`` the project at the commit into a work folder (default
   ``.cache/replicas/<profile>-<notebook>-<sha12>``, one per notebook so that replicas do not
   read each other's outputs); an existing one is resumed when it holds the same commit.
   Uncommitted changes are not replicated. A relative data folder outside the project
   (``../shared/...``) is linked beside the clone, and the clone must resolve the profile's
   data to the same folder as the project, else the replica would quietly read other data.
2. ``linas paper --only <notebook>`` there (``LINAS_ROOT`` and ``PYTHONPATH`` name the clone):
   a fresh clone has no stamps, so the notebook runs; a resumed one skips it when it finished
   and otherwise reruns it, reading the per-item caches the stopped run left.
3. ``linas compare`` there: every summary figure against the commit's own.
4. The notebook's CSV/JSON files that the rerun rewrote (``git status`` in the clone; a file the
   rerun did not write is still the commit's and is left out, by name) and the compare table go
   to ``results/<profile>/replicas/<label>/`` in one rename (label: the commit and the clone's
   recorded CPU). An existing label is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .config import PROFILE_DIR, Profile, load_profile, profile_path
from .keys import atomic_write_text
from .paths import project_root
from .provenance import read_csv_provenance, recorded_machine


PROFILES = Path(PROFILE_DIR.parent.name) / PROFILE_DIR.name  # linas_lib/profiles, relative to a root


class ReplicateError(ValueError):
    """A replication cannot start or be collected; the message says why."""


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except OSError as err:  # no git, or cwd missing
        raise ReplicateError(f"cannot run `git {' '.join(args)}` in {cwd}: {err}") from err
    if done.returncode:
        raise ReplicateError(f"`git {' '.join(args)}` in {cwd} failed: {done.stderr.strip()[:300]}")
    return done.stdout.rstrip("\n")  # not strip(): a porcelain status line may start with a space


def default_workdir(root: Path, profile_name: str, notebook: str, sha: str) -> Path:
    """``<root>/.cache/replicas/<profile>-<notebook>-<sha12>``."""
    return root / ".cache" / "replicas" / f"{profile_name}-{notebook}-{sha[:12]}"


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
    _git(root, "clone", "--quiet", "--no-checkout", str(root), str(workdir))
    _git(workdir, "checkout", "--quiet", sha)
    return True


def link_outside_data(root: Path, workdir: Path, data_dir: str) -> Path | None:
    """Link a relative data folder that lies outside the project to the same place beside the clone.

    ``../shared/data/crackforest`` from ``root`` is ``root/../shared``: the clone gets
    ``workdir/../shared`` pointing there. Returns the link made, or None (empty, absolute or
    inside the project, the original absent, or the name already taken: :func:`check_same_data`
    then says whether the clone still reads the same data).
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


def check_same_data(root: Path, workdir: Path, data_dirs: list[str]) -> None:
    """Every data folder the project has must resolve to the same folder from the clone.

    Raises:
        ReplicateError: naming the profile's path and both folders.
    """
    for data_dir in filter(None, data_dirs):
        here = Path(data_dir) if Path(data_dir).is_absolute() else root / data_dir
        there = Path(data_dir) if Path(data_dir).is_absolute() else workdir / data_dir
        if here.is_dir() and (not there.is_dir() or here.resolve() != there.resolve()):
            raise ReplicateError(f"the profile's data folder {data_dir!r} is {here.resolve()} here but "
                                 f"{there.resolve() if there.exists() else str(there) + ' (missing)'} from the "
                                 f"clone {workdir}: it would read other data (link it, or pass another --workdir)")


def run_in_clone(workdir: Path, args: list[str]) -> int:
    """``python -m linas_lib.cli <args>`` with the clone as project root and import path."""
    env = dict(os.environ, LINAS_ROOT=str(workdir),
               PYTHONPATH=os.pathsep.join(filter(None, (str(workdir), os.environ.get("PYTHONPATH")))))
    env.pop("LINAS_CACHE_DIR", None)  # a cold cache of its own is the point
    return subprocess.run([sys.executable, "-m", "linas_lib.cli", *args], cwd=workdir, env=env).returncode


def machine_label(summary_or_csv: Path, sha: str) -> str:
    """``<sha7>-<cpu>``: the commit and the CPU the replica's provenance records, as a folder name."""
    if summary_or_csv.suffix == ".json":
        block = json.loads(summary_or_csv.read_text()).get("provenance")
    else:
        block = read_csv_provenance(summary_or_csv)
    cpu = recorded_machine(block)[0]
    return f"{sha[:7]}-" + (re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-") or "unrecorded")


def rewritten(workdir: Path, folder: str) -> set[str]:
    """Paths under ``folder`` (relative to the clone) that differ from its commit or are new."""
    status = _git(workdir, "status", "--porcelain", "--untracked-files=all", "--", folder)
    return {line[3:] for line in status.splitlines() if line[:2] != " D"}


def collect(workdir: Path, root: Path, profile_name: str, notebook: str, label: str | None, sha: str,
            partial: bool = False) -> Path:
    """Copy what the replica of ``notebook`` rewrote, and its compare table, under ``results/<profile>/replicas/``.

    Beside the files goes ``replica.json``: the commit, the notebook, whether the rerun finished
    (its summary rewritten), the files collected and those left out, and when.

    Args:
        partial: collect a replica that has not finished (no rewritten summary, no compare
            table): the files its finished cells wrote, marked ``finished: false``.

    Returns:
        The label's folder.

    Raises:
        ReplicateError: nothing rewritten, no summary rewritten unless ``partial``, or the label exists.
    """
    from datetime import datetime, timezone

    folder = f"results/{profile_name}/{notebook}"
    changed = rewritten(workdir, folder)
    made = sorted(p for p in (workdir / folder).iterdir() if p.suffix in (".csv", ".json"))
    files = [p for p in made if f"{folder}/{p.name}" in changed]
    finished = f"{folder}/summary.json" in changed
    if not files or not (finished or partial):
        raise ReplicateError(f"{workdir / folder / 'summary.json'} was not rewritten: the replica of {notebook} did "
                             f"not finish (--partial collects the files its finished cells wrote)")
    check_label(label)
    dest = root / "results" / profile_name / "replicas" / (label or machine_label(files[0], sha))
    if dest.exists():
        raise ReplicateError(f"{dest} exists: a replica is never overwritten (remove it or pass --label)")
    kept = [p.name for p in made if p not in files]
    if kept:
        print(f"left out (the commit's, not rewritten by the replica): {', '.join(kept)}")
    pairs = [(p, Path(notebook) / p.name) for p in files]
    table = workdir / "results" / profile_name / "compare.csv"
    if finished and table.is_file():
        pairs.append((table, Path(f"compare-{notebook}.csv")))
    manifest = {"commit": sha, "notebook": notebook, "profile": profile_name, "finished": finished,
                "collected": [rel.as_posix() for _, rel in pairs], "left_out": kept,
                "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    for source, rel in pairs:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(staging / rel, source.read_text())
    atomic_write_text(staging / "replica.json", json.dumps(manifest, indent=1) + "\n")
    staging.rename(dest)
    return dest


def _clone_profile(workdir: Path, name: str) -> Profile:
    """The profile as the clone's commit holds it (not this working tree's)."""
    return load_profile(workdir / PROFILES / f"{name}.yaml")


def check_label(label: str | None) -> None:
    """Refuse a ``--label`` that is not one folder name (it must not leave ``replicas/``).

    Raises:
        ReplicateError: a label with a path separator, or ``.``/``..``.
    """
    if label and (label != Path(label).name or label in (".", "..") or "\\" in label):
        raise ReplicateError(f"--label {label!r}: one folder name under results/<profile>/replicas/, without '/'")


def replicate(profile: str, notebook: str, workdir: str | None = None, label: str | None = None,
              commit: str = "HEAD", partial: bool = False) -> Path:
    """Run ``notebook`` of a commit in a clean clone with a cold cache, compare it there, collect it.

    Args:
        profile: a profile's name (``linas_lib/profiles/<name>.yaml``, read from the commit).
        notebook: the notebook's name, e.g. ``05_pareto``.
        workdir: the clone's folder (default :func:`default_workdir`); resumed when it exists.
        label: the folder under ``results/<profile>/replicas/`` (default :func:`machine_label`).
        commit: the commit whose code and committed results the replica runs (default ``HEAD``).
        partial: run nothing; collect what a replica still running (or stopped) in ``workdir``
            has written so far (:func:`collect`).

    Returns:
        The folder the files were collected into.

    Raises:
        ReplicateError: no git, an unknown commit, profile or notebook, a work folder at another
            commit or reading other data, the notebook or the comparison failed, or the label exists.
    """
    root = project_root()
    check_label(label)
    if profile_path(profile).parent != PROFILE_DIR:
        raise ReplicateError(f"profile {profile!r}: replicate takes the name of a committed profile "
                             f"({PROFILE_DIR.name}/<name>.yaml), which the clone reads from its own copy")
    sha = _git(root, "rev-parse", "--verify", f"{commit}^{{commit}}")
    for path in (f"notebooks/{notebook}.ipynb", f"{PROFILES.as_posix()}/{profile}.yaml"):
        if subprocess.run(["git", "cat-file", "-e", f"{sha}:{path}"], cwd=root, capture_output=True).returncode:
            raise ReplicateError(f"{path} is not in commit {sha[:12]}: nothing to replicate")
    work = Path(workdir).resolve() if workdir else default_workdir(root, profile, notebook, sha)
    if partial:
        if not work.is_dir():
            raise ReplicateError(f"{work} does not exist: --partial collects a replica that was started")
        prepare_clone(root, work, sha)  # checks it is a clone at the commit
        return collect(work, root, profile, notebook, label, sha, partial=True)
    fresh = prepare_clone(root, work, sha)
    data = _clone_profile(work, profile).data
    link_outside_data(root, work, data.crackforest_dir)
    check_same_data(root, work, [data.crackforest_dir, data.folder])
    print(f"replica of {notebook} at {sha[:12]} in {work} ({'new clone' if fresh else 'resumed'})", flush=True)
    code = run_in_clone(work, ["paper", "--profile", profile, "--only", notebook])
    if code:
        executed = work / "results" / profile / "executed" / f"{notebook}.ipynb"
        hint = "rerun the same command to resume" if code == 1 else "an error before the run (above)"
        raise ReplicateError(f"the replica of {notebook} failed in {work} (exit {code}; {hint}; "
                             f"executed copy: {executed})")
    table = work / "results" / profile / "compare.csv"
    table.unlink(missing_ok=True)
    code = run_in_clone(work, ["compare", "--profile", profile])
    if code not in (0, 1) or not table.is_file():  # 1: figures differ, a finding
        raise ReplicateError(f"`linas compare` failed in {work} (exit {code}) and wrote no {table.name}")
    return collect(work, root, profile, notebook, label, sha)
