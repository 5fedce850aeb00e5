"""Search records: one weight-sharing oracle and the search runs made on it, as committed text.

The WS oracle is one training of the supernet, and trainings differ across CPU models (README,
"Reproducing the paper"), so 05 rerun on another machine searches another oracle. A record
keeps what the searches read from that training, so they replay on any machine without it:

* ``oracle.csv``: every architecture the runs evaluated (its code, ``LINAS_SPACE.encode``) and
  its WS mIoU;
* ``runs.csv``: each run's evaluations in order (``folder``: the run's cache subfolder, ``""``
  for the compared and confirmatory runs, e.g. ``oracle_300`` for the oracle's long run);
* ``records.json``: the other oracle-derived inputs of the methods (the HV reference's
  all-background accuracy, the alpha probabilities, the NEAR table), the profile, the targets and budgets,
  the oracle's identity (supernet key, weights digest, runs folder) and provenance.

:func:`replay_setup` builds the profile's :class:`~linas_lib.search.methods.SearchSetup` on the
record's oracle (:class:`RecordedOracle`): a method run with a recorded seed evaluates the
recorded architectures, and one that asks for an architecture the oracle never evaluated
raises :class:`OracleMiss` instead of having another training answer it.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..keys import atomic_write_text
from ..space import LINAS_SPACE, arch_string
from . import experiment as E
from .archive import AccuracyCache
from .methods import check_method_names, profile_setup
from .zero_cost import NearProxy

RECORDS_SCHEMA = 1
ORACLE_FILE, RUNS_FILE, META_FILE = "oracle.csv", "runs.csv", "records.json"
META_KEYS = ("schema", "profile", "seed", "targets", "budgets_ms", "hv_ref_miou_loss", "alpha_probs", "near_table", "oracle")


class OracleMiss(KeyError):
    """A replayed search asked for an architecture the recorded oracle never evaluated."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class SearchRecords:
    """A loaded record (:func:`load_records`).

    Attributes:
        folder: where it was read from (named in errors).
        miou: WS mIoU by architecture code.
        runs: evaluated codes in order, by ``(folder, method, seed)``.
        meta: ``records.json``.
    """

    folder: Path
    miou: dict[int, float]
    runs: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


class RecordedOracle:
    """The record's WS mIoU as an accuracy model (``evaluate(choices) -> (n,)``)."""

    def __init__(self, records: SearchRecords):
        self.records = records

    def evaluate(self, choices: np.ndarray) -> np.ndarray:
        """mIoU of each architecture.

        Raises:
            OracleMiss: an architecture the recorded oracle never evaluated.
        """
        codes = np.atleast_1d(LINAS_SPACE.encode(choices)).tolist()
        missing = [c for c in codes if c not in self.records.miou]
        if missing:
            raise OracleMiss(
                f"{self.records.folder / ORACLE_FILE}: the recorded oracle never evaluated "
                f"{arch_string(LINAS_SPACE.decode(missing[0]))} (and {len(missing) - 1} more of this batch); "
                "a search that leaves the recorded runs needs the supernet that made them "
                f"(weights {self.records.meta['oracle'].get('weights_digest', '?')}), not another training")
        return np.array([self.records.miou[c] for c in codes], dtype=float)


def export_records(runs_folder: Path, out: Path, setup, profile: str, seed: int, source: dict, prov: dict) -> Path:
    """Write the record of a search cache folder (every cached run in it and its subfolders).

    Args:
        runs_folder: the experiment's run cache (:func:`linas_lib.search.report.runs_dir`).
        out: the record's folder (created).
        setup: the experiment's :class:`SearchSetup` (its oracle-derived inputs are recorded).
        profile: the name of the profile the runs were made with (a replay builds its setup).
        seed: the notebook seed the setup was built with (EPR's attainable targets).
        source: the oracle's identity (``supernet_key``, ``weights_digest``, ``runs_folder``).
        prov: provenance block of the export.

    Returns:
        ``out``.
    """
    runs_folder, out = Path(runs_folder), Path(out)
    miou = {int(k): float(v) for k, v in json.loads((runs_folder / "ws_miou.json").read_text()).items()}
    rows = []
    for path in sorted(runs_folder.rglob("*_seed*.json")):
        run = E.MethodRun.from_json(json.loads(path.read_text()))
        codes = np.atleast_1d(LINAS_SPACE.encode(run.choices)).tolist()
        if [miou.get(c) for c in codes] != run.miou.tolist():
            raise ValueError(f"{path}: its mIoU values are not the oracle's ({runs_folder / 'ws_miou.json'})")
        folder = path.parent.relative_to(runs_folder).as_posix()
        rows.append((folder if folder != "." else "", run.method, run.seed, codes))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / ORACLE_FILE, "code,ws_miou\n" + "".join(f"{c},{miou[c]!r}\n" for c in sorted(miou)))
    atomic_write_text(out / RUNS_FILE, "folder,method,seed,codes\n"
                      + "".join(f"{f},{m},{s},{' '.join(map(str, c))}\n" for f, m, s, c in sorted(rows)))
    meta = {"schema": RECORDS_SCHEMA, "profile": profile, "seed": int(seed), "targets": list(setup.latency.target_names),
            "budgets_ms": np.asarray(setup.latency.budgets_ms, dtype=float).tolist(),
            "hv_ref_miou_loss": float(setup.hv_ref[0]),
            "alpha_probs": np.asarray(setup.alpha_probs, dtype=float).tolist(),
            "near_table": np.asarray(setup.proxy.table, dtype=float).tolist(),
            "oracle": dict(source), "provenance": prov}
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=1) + "\n")
    return out


def load_records(folder: Path) -> SearchRecords:
    """Read and check a record.

    Raises:
        FileNotFoundError: a file of the record is missing.
        ValueError: a malformed row, a code outside the space, a repeated code, a non-finite or
            out-of-range mIoU, a run evaluating an architecture the oracle lacks, or a
            ``records.json`` of another schema or without its keys; each names the file.
    """
    folder = Path(folder)
    for name in (ORACLE_FILE, RUNS_FILE, META_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing; a search record needs "
                                    f"{ORACLE_FILE}, {RUNS_FILE} and {META_FILE}")
    records = SearchRecords(folder, _read_oracle(folder / ORACLE_FILE))
    records.runs = _read_runs(folder / RUNS_FILE, records.miou)
    records.meta = _read_meta(folder / META_FILE)
    return records


def _rows(path: Path, header: list[str]) -> list[list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0] != header:
        raise ValueError(f"{path}: header {rows[0] if rows else 'missing'}, expected {header}")
    if len(rows) < 2:
        raise ValueError(f"{path}: no rows")
    return rows[1:]


def _code(path: Path, line: int, text: str) -> int:
    if not text.isdigit() or int(text) >= LINAS_SPACE.size:
        raise ValueError(f"{path}, line {line}: {text!r} is not an architecture code (0..{LINAS_SPACE.size - 1})")
    return int(text)


def _read_oracle(path: Path) -> dict[int, float]:
    miou = {}
    for line, row in enumerate(_rows(path, ["code", "ws_miou"]), start=2):
        if len(row) != 2:
            raise ValueError(f"{path}, line {line}: {len(row)} fields, expected 2")
        code = _code(path, line, row[0])
        try:
            value = float(row[1])
        except ValueError:
            raise ValueError(f"{path}, line {line}: mIoU {row[1]!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{path}, line {line}: mIoU {row[1]} is not in [0, 1]")
        if code in miou:
            raise ValueError(f"{path}, line {line}: code {code} appears twice")
        miou[code] = value
    return miou


def _read_runs(path: Path, miou: dict[int, float]) -> dict[tuple[str, str, int], list[int]]:
    runs = {}
    for line, row in enumerate(_rows(path, ["folder", "method", "seed", "codes"]), start=2):
        if len(row) != 4 or not row[2].isdigit():
            raise ValueError(f"{path}, line {line}: expected folder,method,seed,codes with an integer seed")
        codes = [_code(path, line, c) for c in row[3].split()]
        key = (row[0], row[1], int(row[2]))
        if not codes or key in runs:
            raise ValueError(f"{path}, line {line}: {row[1]} seed {row[2]} "
                             + ("has no evaluations" if not codes else "appears twice"))
        lacking = [c for c in codes if c not in miou]
        if lacking:
            raise ValueError(f"{path}, line {line}: {row[1]} seed {row[2]} evaluates code {lacking[0]}, "
                             f"which {path.parent / ORACLE_FILE} lacks")
        runs[key] = codes
    return runs


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("schema") != RECORDS_SCHEMA:
        raise ValueError(f"{path}: not a search record of schema {RECORDS_SCHEMA}")
    lacking = [k for k in META_KEYS if k not in meta]
    if lacking:
        raise ValueError(f"{path}: lacks {lacking}")
    return meta


def replay_setup(profile, records: SearchRecords, latency):
    """The profile's search setup on the record's oracle (see the module docstring).

    Raises:
        ValueError: another profile than the record's, or a latency model whose targets or budgets
            are not the record's.
    """

    meta = records.meta
    if profile.name != meta["profile"]:
        raise ValueError(f"{records.folder / META_FILE}: recorded with profile {meta['profile']!r}, "
                         f"replayed with {profile.name!r}")
    if list(latency.target_names) != meta["targets"] or not np.allclose(latency.budgets_ms, meta["budgets_ms"],
                                                                          rtol=1e-12, atol=0):
        raise ValueError(f"{records.folder / META_FILE}: recorded for targets {meta['targets']} with budgets "
                         f"{meta['budgets_ms']} ms; this latency model has {list(latency.target_names)}, "
                         f"{np.asarray(latency.budgets_ms).tolist()}")
    accuracy = AccuracyCache(RecordedOracle(records))
    return profile_setup(profile, accuracy, latency, np.asarray(meta["alpha_probs"], dtype=float),
                         NearProxy(meta["near_table"]), float(meta["hv_ref_miou_loss"]), int(meta["seed"]))


def recorded_runs(records: SearchRecords, latency, folder: str = "") -> list[E.MethodRun]:
    """The record's runs of one cache subfolder as :class:`MethodRun` s (latency from the model)."""
    runs = []
    for (where, method, seed), codes in sorted(records.runs.items()):
        if where == folder:
            choices = np.atleast_2d(LINAS_SPACE.decode(codes))
            runs.append(E.MethodRun(method, seed, choices, np.array([records.miou[c] for c in codes]),
                                    np.asarray(latency.predict(choices), dtype=float)))
    return runs


def run_budget(setup, folder: str) -> int:
    """A recorded run's evaluation budget: the setup's, or the one its folder names (``oracle_300``)."""
    if not folder:
        return setup.eval_budget
    tail = folder.rsplit("_", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"run folder {folder!r} names no evaluation budget (expected e.g. oracle_300)")
    return int(tail)


def replay_keys(records: SearchRecords, n_runs: int = 0, capped=(), cap: int = 0,
                long_cap: int | None = None) -> list[tuple[str, str, int]]:
    """The ``(folder, method, seed)`` runs a replay makes again: the first ``n_runs`` in the
    record's order (0: all), of which at most ``cap`` (the lowest seeds) of each method in
    ``capped`` per folder, and with ``long_cap`` at most that many of each method in a long
    folder (``long_<n>``: :func:`run_more`'s long runs)."""
    keys, kept = sorted(records.runs)[: n_runs or None], {}
    out = []
    for key in keys:
        limit = min(cap if key[1] in capped else np.inf,
                    np.inf if long_cap is None or not key[0].startswith("long_") else long_cap)
        if limit < np.inf:
            kept[key[:2]] = kept.get(key[:2], 0) + 1
            if kept[key[:2]] > limit:
                continue
        out.append(key)
    return out


def replay_rows(setup, records: SearchRecords, n_runs: int = 0, progress=None, keys=None) -> list[dict]:
    """Run the record's runs again with this machine's search code on the recorded oracle.

    Args:
        setup: :func:`replay_setup` of the record.
        records: the record.
        n_runs: how many of its runs, in its order (0: all).
        progress: optional ``(message) -> None``.
        keys: the ``(folder, method, seed)`` runs to replay instead (``n_runs`` then unused).

    Returns:
        One row per run: ``folder, method, seed, n_evals`` (recorded), ``identical`` (1 when every
        evaluation is the recorded one, in order), ``left_record`` (1 when the run asked for an
        architecture the record lacks, so it differed somewhere before), ``first_difference``
        (the first evaluation that differs; -1 if none, NaN where the run left the record),
        ``seconds``.
    """
    import dataclasses
    import time

    keys = replay_keys(records, n_runs) if keys is None else list(keys)
    rows = []
    for folder, method, seed in keys:
        recorded = records.runs[(folder, method, seed)]
        start = time.perf_counter()
        archive_setup = dataclasses.replace(setup, eval_budget=run_budget(setup, folder))
        try:
            made = np.atleast_1d(LINAS_SPACE.encode(E.run_all(archive_setup, [method], [seed])[0].choices)).tolist()
        except OracleMiss:
            made = None
        rows.append({"folder": folder, "method": method, "seed": seed, "n_evals": len(recorded),
                     "identical": int(made == recorded), "left_record": int(made is None),
                     "first_difference": _first_difference(made, recorded), "seconds": time.perf_counter() - start})
        if progress is not None and len(rows) % 50 == 0:
            progress(f"{len(rows)}/{len(keys)} runs replayed")
    return rows


def _first_difference(made: list[int] | None, recorded: list[int]) -> float:
    if made is None:
        return float("nan")  # the run left the record; where it first differed is not kept
    for i, (a, b) in enumerate(zip(made, recorded)):
        if a != b:
            return i
    return -1 if len(made) == len(recorded) else min(len(made), len(recorded))


def open_record(profile):
    """``(record, its replay setup, its latency model)`` of ``profile.records.path``, built with the
    profile the record was made with; ``(None, None, None)`` when the path is empty.

    Raises:
        ValueError: an unknown method name in ``records.studies``, a study's ``evals`` not above
            ``search.eval_budget`` (nor 0), or an unknown ``records.probe_target``.
    """
    from ..config import load_profile
    from ..paths import resolve
    from ..supernet.train import search_latency_model

    if not profile.records.path:
        return None, None, None
    check_method_names(profile.records.replay_capped, "records.replay_capped: ")
    for study in profile.records.studies:
        check_method_names(study.methods, f"records.studies[{study.name}].methods: ")
        if 0 < study.evals <= profile.search.eval_budget:
            raise ValueError(f"records.studies[{study.name}].evals = {study.evals}: long runs need more than "
                             f"search.eval_budget ({profile.search.eval_budget}); 0 reads runs at that budget")
    records, setup, latency = open_record_at(profile.records.path)
    if profile.records.probe_target not in latency.target_names:
        raise ValueError(f"records.probe_target {profile.records.probe_target!r} is not a target of the record "
                         f"{profile.records.path} (its targets: {', '.join(latency.target_names)})")
    return records, setup, latency


def open_record_at(path: str):
    """``(record, its replay setup, its latency model)`` of the record in ``path`` (relative to the
    project), built with the profile the record was made with."""
    from ..config import load_profile
    from ..paths import resolve
    from ..supernet.train import search_latency_model

    records = load_records(resolve(path))
    made_with = load_profile(records.meta["profile"])
    latency = search_latency_model(made_with)
    return records, replay_setup(made_with, records, latency), latency


def study_records(profile, main) -> dict[str, tuple]:
    """Each study's ``(record, setup, latency)`` by its name: ``main`` (:func:`open_record`'s
    triple) for a study without a ``record`` of its own, else that record, opened once per folder."""
    opened = {"": main, profile.records.path: main}
    for study in profile.records.studies:
        if study.record not in opened:
            opened[study.record] = open_record_at(study.record)
    return {study.name: opened[study.record] for study in profile.records.studies}


def committed_match(records: SearchRecords, latency, setup, folder: Path) -> dict[str, float]:
    """How the record's 05 runs score against a committed 05's files in ``folder``, each to every
    digit: ``per_run.csv`` (per compared run and target its HV: ``per_run_cells``,
    ``per_run_equal``), ``hv_curves.csv`` (the headline HV after every evaluation:
    ``curve_cells``, ``curve_equal``) and ``experiment.json``'s ``reference_hv`` and ``oracle_hv``
    (``reference_hv_equal``, ``oracle_hv_equal``: 1 or 0); the largest absolute HV difference of
    each file's cells (``per_run_max_abs_diff``, ``curve_max_abs_diff``). A cell whose run the
    record lacks is not equal (its difference infinite). Every cell equal: the record holds that
    05's oracle and searches.

    Raises:
        ValueError: a file without its columns or keys, named.
    """
    folder = Path(folder)
    lat = setup.latency  # 05's experiment (report.experiment_for, which imports this module)
    experiment = E.ParetoExperiment(lat.target_names, lat.budgets_ms, *setup.hv_ref, hv_targets=setup.joint_targets)
    runs = {(r.method, r.seed): r for r in recorded_runs(records, latency)}
    per_run = _committed_rows(folder / "per_run.csv", ("method", "seed", "target", "hv"), experiment.target_names)
    curves = _committed_rows(folder / "hv_curves.csv", ("method", "seed", "n_evals", "hv"))
    try:
        meta = json.loads((folder / "experiment.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{folder / 'experiment.json'}: not JSON ({err})") from None
    if not isinstance(meta, dict) or not {"reference_hv", "oracle_hv"} <= set(meta):
        raise ValueError(f"{folder / 'experiment.json'}: lacks reference_hv or oracle_hv")
    index = {name: t for t, name in enumerate(experiment.target_names)}
    per_run_diff = [experiment.target_hv(run.miou, run.latency_ms, index[row["target"]]) - row["hv"]
                    if run is not None else math.inf
                    for row in per_run for run in [runs.get((row["method"], row["seed"]))]]
    compared = sorted({(r["method"], r["seed"]) for r in per_run} & set(runs))
    made = {(r["method"], r["seed"], r["n_evals"]): r["hv"]
            for r in E.curve_rows(experiment, [runs[key] for key in compared])[0]}
    curve_diff = [made.get((c["method"], c["seed"], c["n_evals"]), math.inf) - c["hv"] for c in curves]
    oracle_folders = sorted({f for f, _, _ in records.runs if f.startswith("oracle_")})
    oracle = recorded_runs(records, latency, oracle_folders[0]) if oracle_folders else []
    reference = E.reference_hv(experiment, [runs[key] for key in compared] + oracle) if oracle else math.nan
    oracle_hv = E.reference_hv(experiment, oracle) if oracle else math.nan
    return {"per_run_cells": float(len(per_run)), "per_run_equal": float(sum(d == 0 for d in per_run_diff)),
            "per_run_max_abs_diff": float(max(map(abs, per_run_diff))),
            "curve_cells": float(len(curves)), "curve_equal": float(sum(d == 0 for d in curve_diff)),
            "curve_max_abs_diff": float(max(map(abs, curve_diff))),
            "reference_hv_equal": float(reference == meta["reference_hv"]),
            "oracle_hv_equal": float(oracle_hv == meta["oracle_hv"])}


def _committed_rows(path: Path, columns: tuple[str, ...], targets=()) -> list[dict]:
    """A committed 05 CSV's rows, ``seed`` and ``n_evals`` as ints and ``hv`` as a float read back
    to every digit (csv, not pandas); with ``targets``, each row's ``target`` must be one of them.

    Raises:
        ValueError: no rows, a missing column or a malformed value, naming the file (and line).
    """
    with path.open(newline="") as handle:
        lines = handle.readlines()
    comments = sum(1 for _ in itertools.takewhile(lambda text: text.startswith("#"), lines))
    rows = list(csv.DictReader(lines[comments:]))
    lacking = sorted(set(columns) - set(rows[0] if rows else {}))
    if lacking:
        raise ValueError(f"{path}: no rows, or missing column(s) {', '.join(lacking)}")
    for line, row in enumerate(rows, start=comments + 2):  # after the provenance line(s) and the header
        try:
            row.update({k: int(row[k]) for k in ("seed", "n_evals") if k in row}, hv=float(row["hv"]))
        except ValueError:
            raise ValueError(f"{path}, line {line}: seed, n_evals or hv is not a number ({row})") from None
        if targets and row["target"] not in targets:
            raise ValueError(f"{path}, line {line}: target {row['target']!r} is not one of the record's "
                             f"({', '.join(targets)})")
    return rows


def describe(records: SearchRecords) -> dict:
    """What a record holds: its folder, architectures, runs per (folder, method), the oracle's identity."""
    counts: dict[str, int] = {}
    for folder, method, _ in records.runs:
        key = f"{folder}/{method}" if folder else method
        counts[key] = counts.get(key, 0) + 1
    made_on = records.meta.get("provenance", {}).get("machine", {}).get("cpu_id", "?")
    return {"folder": str(records.folder), "profile": records.meta["profile"], "architectures": len(records.miou),
            "runs": len(records.runs), "runs_per_method": counts, "oracle": records.meta["oracle"], "exported_on": made_on}


def replay_figures(rows: list[dict], records: SearchRecords | None) -> dict[str, float]:
    """Summary figures: ``records.n_runs`` and ``records.n_archs`` (0 without a record),
    ``replay.n_runs``, ``replay.n_identical``, ``replay.n_left_record``, ``replay.seconds``."""
    if records is None:
        return {"records.n_runs": 0.0}
    return {"records.n_runs": float(len(records.runs)), "records.n_archs": float(len(records.miou)),
            "replay.n_runs": float(len(rows)), "replay.n_identical": float(sum(r["identical"] for r in rows)),
            "replay.n_left_record": float(sum(r["left_record"] for r in rows)),
            "replay.seconds": float(sum(r["seconds"] for r in rows))}
