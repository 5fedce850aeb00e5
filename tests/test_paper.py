"""``linas paper`` (content stamps, resume, profile errors) and the paper's macros.

Every test works in a throw-away project tree (``LINAS_ROOT``, ``LINAS_CACHE_DIR``) and
replaces the papermill runner by a fake that writes a ``summary.json``: no notebook runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from linas_lib import cli, paper, runner
from linas_lib.paths import project_root

NOTEBOOKS = ("00_data", "01_luts", "02_model")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A minimal project: three notebooks, a library file, a profile, LUT data."""
    root = tmp_path / "root"
    for name in NOTEBOOKS:
        _write(root / "notebooks" / f"{name}.ipynb", json.dumps({"cells": [], "name": name}))
    _write(root / "notebooks" / "scratch.ipynb", "{}")  # not numbered: never run
    _write(root / "linas_lib" / "mod.py", "X = 1\n")
    _write(root / "linas_lib" / "profiles" / "tiny.yaml", "device: cpu\n")
    _write(root / "results" / "luts" / "cpu" / "a.json", "{}")
    monkeypatch.setenv("LINAS_ROOT", str(root))
    monkeypatch.setenv("LINAS_CACHE_DIR", str(tmp_path / "cache"))
    return root


@pytest.fixture
def fake(monkeypatch):
    """Replace ``runner.run_notebook``: record the call, write a summary; fail on demand."""
    state = {"ran": [], "fail": set(), "count": 0}

    def run_notebook(name, profile="cpu", seed=0, html=True):
        state["count"] += 1
        if name in state["fail"]:
            raise runner.NotebookFailed(name, 3, "ZeroDivisionError", "division by zero", Path("x.ipynb"))
        state["ran"].append(name)
        folder = project_root() / "results" / "tiny" / name
        folder.mkdir(parents=True, exist_ok=True)
        figures = {"n_runs": float(state["count"]), "value.one-1": 0.5, "empty": None}
        (folder / "summary.json").write_text(json.dumps({"figures": figures}))
        return folder / "executed.ipynb"

    monkeypatch.setattr(runner, "run_notebook", run_notebook)
    return state


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _paper(tree, capsys, *extra, profile=None) -> tuple[int, str, str]:
    profile = profile or str(tree / "linas_lib" / "profiles" / "tiny.yaml")
    rc = cli.main(["paper", "--profile", profile, "--seed", "0", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------ stamps


def test_first_run_runs_all_second_runs_none(tree, fake, capsys):
    rc, out, _ = _paper(tree, capsys)
    assert rc == 0 and fake["ran"] == list(NOTEBOOKS)
    assert out.splitlines()[0] == "run 00_data (stale: no stamp)"
    fake["ran"].clear()
    rc, out, _ = _paper(tree, capsys)
    assert rc == 0 and fake["ran"] == []
    assert out.splitlines() == [f"ok {n} (up to date)" for n in NOTEBOOKS]
    assert (tree.parent / "cache" / "stamps" / "tiny" / "02_model.json").is_file()


def test_library_change_makes_every_notebook_stale(tree, fake, capsys):
    _paper(tree, capsys)
    fake["ran"].clear()
    (tree / "linas_lib" / "mod.py").write_text("X = 2\n")
    _, out, _ = _paper(tree, capsys)
    assert fake["ran"] == list(NOTEBOOKS)
    assert "run 00_data (stale: library changed: linas_lib/mod.py)" in out


def test_profile_and_seed_changes_make_notebooks_stale(tree, fake, capsys):
    _paper(tree, capsys)
    fake["ran"].clear()
    (tree / "linas_lib" / "profiles" / "tiny.yaml").write_text("device: cpu\nthreads: 1\n")
    _, out, _ = _paper(tree, capsys)
    assert fake["ran"] == list(NOTEBOOKS) and "(stale: profile changed)" in out
    fake["ran"].clear()
    rc = cli.main(["paper", "--profile", str(tree / "linas_lib" / "profiles" / "tiny.yaml"), "--seed", "1"])
    assert rc == 0 and fake["ran"] == list(NOTEBOOKS)
    assert "(stale: seed 0 -> 1)" in capsys.readouterr().out


def test_notebook_change_makes_it_and_later_ones_stale(tree, fake, capsys):
    _paper(tree, capsys)
    fake["ran"].clear()
    (tree / "notebooks" / "01_luts.ipynb").write_text("{}")
    _, out, _ = _paper(tree, capsys)
    assert fake["ran"] == ["01_luts", "02_model"]
    assert "ok 00_data (up to date)" in out and "run 01_luts (stale: notebook changed)" in out
    assert "run 02_model (stale: upstream outputs changed: 01_luts/summary.json)" in out


def test_lut_data_and_outputs_are_inputs(tree, fake, capsys):
    _paper(tree, capsys)
    fake["ran"].clear()
    (tree / "results" / "luts" / "cpu" / "a.json").write_text('{"changed": 1}')
    _, out, _ = _paper(tree, capsys)
    assert fake["ran"] == list(NOTEBOOKS) and "LUT data changed: results/luts/cpu/a.json" in out
    fake["ran"].clear()
    (tree / "results" / "tiny" / "02_model" / "summary.json").unlink()
    _, out, _ = _paper(tree, capsys)
    assert fake["ran"] == ["02_model"] and "run 02_model (stale: outputs missing)" in out


def test_a_new_benchmark_table_makes_notebooks_stale(tree, fake, capsys):
    _paper(tree, capsys)
    fake["ran"].clear()
    (tree / "results" / "tiny" / "bench").mkdir(parents=True, exist_ok=True)
    (tree / "results" / "tiny" / "bench" / "table.csv").write_text("arch,seed\n")
    _, out, _ = _paper(tree, capsys)
    assert fake["ran"] == list(NOTEBOOKS) and "benchmark table changed: table.csv" in out


def test_failure_keeps_earlier_stamps_and_resumes(tree, fake, capsys):
    fake["fail"].add("01_luts")
    rc, out, err = _paper(tree, capsys)
    assert rc == 1 and fake["ran"] == ["00_data"]
    assert err.strip().splitlines() == [
        "linas: error: notebook 01_luts failed in cell 3: ZeroDivisionError: division by zero; executed copy: x.ipynb"]
    stamps = tree.parent / "cache" / "stamps" / "tiny"
    assert sorted(p.stem for p in stamps.glob("*.json")) == ["00_data"]
    fake["fail"].clear()
    fake["ran"].clear()
    _, out, _ = _paper(tree, capsys)
    assert fake["ran"] == ["01_luts", "02_model"] and out.splitlines()[0] == "ok 00_data (up to date)"


def test_force_and_only(tree, fake, capsys):
    _paper(tree, capsys)
    fake["ran"].clear()
    _, out, _ = _paper(tree, capsys, "--only", "01_luts")
    assert fake["ran"] == [] and out.splitlines() == ["ok 01_luts (up to date)"]
    _, out, _ = _paper(tree, capsys, "--only", "01_luts", "--force")
    assert fake["ran"] == ["01_luts"] and out.splitlines() == ["run 01_luts (stale: forced)"]
    fake["ran"].clear()
    _paper(tree, capsys, "--force")
    assert fake["ran"] == list(NOTEBOOKS)
    rc, _, err = _paper(tree, capsys, "--only", "99_nothing")
    assert rc == 2 and err.startswith("linas: error: no notebook '99_nothing'")


def test_up_to_date_check_does_not_import_torch(tree, fake, capsys):
    _paper(tree, capsys)
    code = ("import sys; from linas_lib.paper import run_paper; "
            f"assert run_paper({str(tree / 'linas_lib/profiles/tiny.yaml')!r}) == []; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"


# ------------------------------------------------------------------ profile errors


def _one_error_line(err: str, start: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), err


@pytest.mark.parametrize("command", ["paper", "notebook"])
def test_bad_profile_is_one_line_and_creates_nothing(tree, tmp_path, capsys, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: cpu\nthreads: two\n")
    argv = ["paper", "--profile", str(bad)] if command == "paper" else ["notebook", "00_data", "--profile", str(bad)]
    assert cli.main(argv) == 2
    _one_error_line(capsys.readouterr().err, f"linas: error: {bad}: threads must be int")
    assert sorted(p.name for p in (tree / "results").iterdir()) == ["luts"]


def test_missing_profile_file(tree, capsys):
    assert cli.main(["paper", "--profile", "nosuch"]) == 2
    _one_error_line(capsys.readouterr().err, "linas: error: ")
    assert not (tree / "results" / "nosuch").exists()


def _target_profile(tmp_path, target: str) -> Path:
    path = tmp_path / "lutty.yaml"
    path.write_text(f"latency:\n  targets:\n    - {target}\n")
    return path


def test_missing_lut_file_is_reported_before_running(tree, tmp_path, fake, capsys):
    path = _target_profile(tmp_path, "{name: orin, kind: external, budget_ms: 30.0, lut: results/luts/none.json}")
    rc, _, err = _paper(tree, capsys, profile=str(path))
    assert rc == 2 and fake["ran"] == []
    _one_error_line(err, f"linas: error: {path}: target orin: LUT file results/luts/none.json does not exist")
    assert sorted(p.name for p in (tree / "results").iterdir()) == ["luts"]


def test_lut_directory_and_unknown_kind_are_errors(tree, tmp_path, fake, capsys):
    path = _target_profile(tmp_path, "{name: g, kind: gpu, budget_ms: 1.0, lut: results/luts/cpu, optional: true}")
    rc, _, err = _paper(tree, capsys, profile=str(path))
    assert rc == 2 and "LUT file results/luts/cpu does not exist (a directory is there)" in err
    path = _target_profile(tmp_path, "{name: g, kind: fpga, budget_ms: 1.0, lut: results/luts/cpu/a.json}")
    rc, _, err = _paper(tree, capsys, profile=str(path))
    assert rc == 2 and "kind = 'fpga' must be one of local, gpu, external" in err
    assert err.startswith(f"linas: error: {path}: ")


def test_optional_absent_lut_and_local_without_lut_are_fine(tree, tmp_path, fake, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text("latency:\n  targets:\n"
                    "    - {name: g, kind: gpu, budget_ms: 1.0, lut: results/luts/gpu.json, optional: true}\n"
                    "    - {name: cpu-torch-1t, kind: local, budget_ms: 100.0}\n")
    rc, _, err = _paper(tree, capsys, profile=str(path))
    assert rc == 0 and fake["ran"] == list(NOTEBOOKS), err


def test_failing_cell_is_one_line_exit_1(tree, monkeypatch, capsys):
    from papermill.exceptions import PapermillExecutionError

    def boom(source, executed, profile, seed):
        raise PapermillExecutionError(5, 3, "1/0", "ZeroDivisionError", "division\nby zero", ["tb"])

    monkeypatch.setattr(runner, "_execute", boom)
    rc = cli.main(["notebook", "00_data", "--profile", str(tree / "linas_lib" / "profiles" / "tiny.yaml")])
    executed = tree / "results" / "tiny" / "executed" / "00_data.ipynb"
    assert rc == 1
    assert capsys.readouterr().err.strip() == (f"linas: error: notebook 00_data failed in cell 3: ZeroDivisionError: "
                                               f"division by zero; executed copy: {executed}")


# ------------------------------------------------------------------ macros


@pytest.mark.parametrize("notebook,key,name", [
    ("01_luts", "cpu-torch-1t.feasible_pct", "lutsCpuTorchOnetFeasiblePct"),
    ("05_pareto", "evals_to_target.zero_cost", "paretoEvalsToTargetZeroCost"),
    ("05_pareto", "hv_ci95_low.epr", "paretoHvCiNineFiveLowEpr"),
    ("00_data", "n_train.synthetic", "dataNTrainSynthetic"),
    ("02_latency_accuracy", "mape_pct.cpu-ort-2t.op_only", "latencyAccuracyMapePctCpuOrtTwotOpOnly"),
    ("03_supernet", "pad_gap_miou.on", "supernetPadGapMiouOn"),
    ("07_x", "a10-b", "xAOneZeroB"),
])
def test_macro_name_rule(notebook, key, name):
    assert paper.macro_name(notebook, key) == name
    assert re.fullmatch(r"[A-Za-z]+", name)


def test_macro_names_unique_and_deterministic():
    summaries = {"01_luts": {"a.b": 1.0, "a_b": 2.0, "a-b": 3.0, "aBTwo": 4.0}, "00_data": {"x": 1.0}}
    rows = paper.macro_table(summaries)
    names = [r[0] for r in rows]
    assert len(set(names)) == len(names) == 5
    assert rows == paper.macro_table(dict(reversed(summaries.items())))
    assert all(re.fullmatch(r"[A-Za-z]+", n) for n in names)
    assert rows[0][0] == "dataX"


@pytest.mark.parametrize("value,text", [
    (1762234.0, "1762000"), (0.07122018508, "0.07122"), (160.0, "160"), (-6.153617, "-6.154"),
    (0.0, "0"), (-0.0, "0"), (1.0, "1"), (50.16249598, "50.16"), (0.8, "0.8"), (None, r"\textit{n/a}"),
    (float("nan"), r"\textit{n/a}"), (9999.6, "10000"), (1.5e-7, "0.00000015"),
])
def test_macro_values_four_significant_digits(value, text):
    assert paper.format_value(value) == text


def test_write_summary_regenerates_macros(tree, monkeypatch):
    from linas_lib import provenance
    from linas_lib.config import Profile
    from linas_lib.notebook import Run

    monkeypatch.setattr(provenance, "machine", lambda: {})
    Run("00_data", Profile(name="tiny"), 0).write_summary({"n_train.synthetic": 40, "load_s": None})
    Run("01_luts", Profile(name="tiny"), 0).write_summary({"cpu-torch-1t.feasible_pct": 50.16249598})
    text = (tree / "results" / "tiny" / "macros.tex").read_text()
    assert "\\newcommand{\\dataNTrainSynthetic}{40}" in text
    assert "\\newcommand{\\dataLoadS}{\\textit{n/a}}" in text
    assert "\\newcommand{\\lutsCpuTorchOnetFeasiblePct}{50.16}" in text
    assert text.startswith("%")


def test_record_digests_cover_each_record_a_study_names(tmp_path):
    import dataclasses

    from linas_lib import paper
    from linas_lib.config import StudyConfig, load_profile

    main, other = tmp_path / "main", tmp_path / "other"
    for folder, text in ((main, "a"), (other, "b")):
        folder.mkdir()
        (folder / "runs.csv").write_text(text)
    profile = load_profile("smoke")
    studies = (StudyConfig("s", ("surrogate_pairs",), (1,), record=str(other)),)
    profile = dataclasses.replace(profile, records=dataclasses.replace(profile.records, path=str(main), studies=studies))
    digests = paper.record_digests(profile)
    assert set(digests) == {"runs.csv", f"{other}/runs.csv"} and digests["runs.csv"] != digests[f"{other}/runs.csv"]
