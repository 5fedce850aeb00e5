"""``linas compare``: key classes, tolerances, exit codes, compare.csv, git errors.

The committed summaries come from a throw-away git repository made in ``tmp_path``.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from linas_lib import cli, compare, provenance

GIT = shutil.which("git")
COMMITTED = {
    "n_train.synthetic": 96.0,
    "load_s.synthetic": 1.02,
    "hv.epr": 0.5,
    "multifidelity.kendall_tau": -0.3333,
    "censored.random": 1.0,
    "throughput_ms_per_image.cpu-torch-1t": 373.5,
    "evals_to_random_final_hv.zero_cost": None,
}


@pytest.mark.parametrize("key,cls", [
    ("throughput_ms_per_image.cpu-torch-1t", "timing"), ("throughput_pass.cpu-ort-1t", "timing"),
    ("c3_pass.cpu-torch-1t", "timing"), ("c3_ms_per_image.cpu-ort-2t", "timing"),
    ("load_s.synthetic", "timing"), ("synthetic_gen_s", "timing"), ("near.seconds", "timing"),
    ("supernet.train_seconds", "timing"), ("cache_speedup", "timing"), ("odroid.min_arch_ms", "timing"),
    ("mape_pct.cpu-torch-1t.op_only", "timing"), ("within5_pct.cpu-ort-1t.interaction", "timing"),
    ("within10_pct.a.b", "timing"), ("mae_ms.a.b", "timing"), ("bias_pct.a", "timing"),
    ("cpu-torch-1t.median_cv", "timing"),
    ("n_images.synthetic", "exact"), ("n_targets_with_lut", "exact"), ("near.n_archs", "exact"),
    ("front_size.epr", "exact"), ("censored.alpha", "exact"), ("censored_random_final_hv.epr", "exact"),
    ("searched.share_targets_within_budget", "exact"), ("params.largest", "exact"),
    ("binarised_mem_ratio", "memory"), ("hv.zero_cost", "hv"), ("igd.random", "hv"), ("reference_hv", "hv"),
    ("evals_to_target.epr", "hv"), ("hv_ci95_low.alpha", "hv"), ("hv_diff_random_ci95_high.epr", "hv"),
    ("target_hv", "hv"), ("censored_share.zero_cost", "exact"), ("n_seeds", "exact"), ("multifidelity.kendall_tau", "tau"), ("near.tau_proxy_ws_miou", "tau"),
    ("miou.searched", "accuracy"), ("pad_gap_miou.on", "accuracy"), ("defect_pct.synthetic", "other"),
    ("cpu-torch-1t.feasible_pct", "other"), ("measured_over_budget_pct.cpu-ort-1t.interaction", "timing"),
    ("pooled_noise_est_pct.cpu-ort-1t", "timing"), ("split_half_mape_pct.cpu-ort-1t", "timing"), ("mape_pct_max.cpu-ort-1t.test_retest", "timing"), ("drift_range_pct.cpu-torch-1t", "timing"),
    ("hv_frac_reference.zero_cost", "hv"), ("oracle_hv", "hv"), ("pad.abs_gap_miou_diff", "accuracy"), ("pad.gap_miou_tau_min.annealed", "accuracy"),
])
def test_classes_of_sample_keys(key, cls):
    assert compare.classify(key).cls == cls


def test_tolerances_in_words():
    assert compare.classify("n_x").tolerance == "exact"
    assert compare.classify("load_s").tolerance == "reported only"
    assert compare.classify("hv.a").tolerance == "abs 1e-06 + rel 0.0001"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository holding a committed ``results/p/00_data/summary.json``."""
    if GIT is None:
        pytest.skip("git not installed")
    root = tmp_path / "repo"
    summary = root / "results" / "p" / "00_data" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"figures": COMMITTED, "provenance": {"t": 1}}))
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "r"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    monkeypatch.setenv("LINAS_ROOT", str(root))
    monkeypatch.setattr(provenance, "machine", lambda: {})  # keep torch out of the CSV's provenance
    return root


def _reproduce(repo, changes: dict | None = None) -> None:
    figures = dict(COMMITTED)
    for key, value in (changes or {}).items():
        if value == "drop":
            figures.pop(key)
        else:
            figures[key] = value
    path = repo / "results" / "p" / "00_data" / "summary.json"
    path.write_text(json.dumps({"figures": figures, "provenance": {"t": 2}}))


def _csv_rows(repo) -> list[dict]:
    path = repo / "results" / "p" / "compare.csv"
    assert path.read_text().startswith("# provenance: ")
    return list(csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#")))


def test_identical_reproduction_is_ok(repo, capsys):
    _reproduce(repo)
    assert cli.main(["compare", "--profile", "p"]) == 0
    out = capsys.readouterr().out
    assert "7 figures (1 censored-both, 6 ok): ok" in out
    rows = _csv_rows(repo)
    assert list(rows[0]) == list(compare.COLUMNS) and len(rows) == 7


def test_timing_difference_is_reported_not_failing(repo, capsys):
    _reproduce(repo, {"load_s.synthetic": 9.0, "throughput_ms_per_image.cpu-torch-1t": "drop"})
    assert cli.main(["compare", "--profile", "p"]) == 0
    out = capsys.readouterr().out
    assert "load_s.synthetic" in out and "varies" in out and "missing" in out
    statuses = {r["key"]: r["status"] for r in _csv_rows(repo)}
    assert statuses["load_s.synthetic"] == "varies"


@pytest.mark.parametrize("key,value", [
    ("hv.epr", 0.5002), ("multifidelity.kendall_tau", 0.0), ("n_train.synthetic", 96.000001),
    ("censored.random", None), ("evals_to_random_final_hv.zero_cost", 6.0), ("hv.epr", "drop"),
])
def test_non_timing_difference_fails(repo, capsys, key, value):
    _reproduce(repo, {key: value})
    assert cli.main(["compare", "--profile", "p"]) == 1
    out = capsys.readouterr().out
    assert "FAIL (1 non-timing figure(s) differ or are missing)" in out
    assert key in out


def test_within_tolerance_and_new_keys_pass(repo, capsys):
    _reproduce(repo, {"hv.epr": 0.5 + 1e-6, "extra": 1.0})
    assert cli.main(["compare", "--profile", "p", "--all"]) == 0
    rows = {r["key"]: r for r in _csv_rows(repo)}
    assert rows["hv.epr"]["status"] == "ok" and float(rows["hv.epr"]["abs_diff"]) == pytest.approx(1e-6)
    assert rows["extra"]["status"] == "new"
    assert rows["evals_to_random_final_hv.zero_cost"]["status"] == "censored-both"
    assert capsys.readouterr().out.count("\n") >= 10  # --all: every row printed


def test_absent_reproduction_is_missing(repo, capsys):
    (repo / "results" / "p" / "00_data" / "summary.json").unlink()
    assert cli.main(["compare", "--profile", "p"]) == 1
    out = capsys.readouterr().out
    assert "absent from the working tree" in out and "committed on" not in out


SAME_CPU = {"cpu_id": "AuthenticAMD family 26 model 2 stepping 1", "cpu_capability": "AVX512"}


def _stamp_cpu(path, machine: dict) -> None:
    data = json.loads(path.read_text())
    data["provenance"] = {"t": 3, "machine": machine}
    path.write_text(json.dumps(data))


def test_a_rewritten_summary_names_an_unrecorded_or_another_cpu(repo, capsys):
    summary = repo / "results" / "p" / "00_data" / "summary.json"
    assert cli.main(["compare", "--profile", "p"]) == 0  # the committed file itself: not rerun, no note
    assert "committed on" not in capsys.readouterr().out
    _reproduce(repo)
    assert cli.main(["compare", "--profile", "p"]) == 0
    assert ("note: 00_data: committed on unrecorded / unrecorded / native numerics, reproduced on unrecorded / "
            "unrecorded / native numerics") in capsys.readouterr().out
    _stamp_cpu(summary, SAME_CPU)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "cpu"], cwd=repo, check=True)
    _stamp_cpu(summary, {**SAME_CPU})
    data = json.loads(summary.read_text())
    data["provenance"]["t"] = 4  # rewritten on the same CPU: no note
    summary.write_text(json.dumps(data))
    assert cli.main(["compare", "--profile", "p"]) == 0
    assert "committed on" not in capsys.readouterr().out
    _stamp_cpu(summary, {**SAME_CPU, "cpu_capability": "AVX2"})
    assert cli.main(["compare", "--profile", "p"]) == 0
    assert ("note: 00_data: committed on AuthenticAMD family 26 model 2 stepping 1 / AVX512 / native numerics, "
            "reproduced on AuthenticAMD family 26 model 2 stepping 1 / AVX2 / native numerics;") in capsys.readouterr().out


def test_a_reproduction_in_another_numerics_mode_gets_a_note():
    committed = compare.machine_of({"provenance": {"machine": SAME_CPU}})  # before the mode was recorded
    native = compare.machine_of({"provenance": {"machine": {**SAME_CPU, "numerics": {"mode": "native"}}}})
    portable = compare.machine_of({"provenance": {"machine": {**SAME_CPU, "numerics": {"mode": "portable"}}}})
    assert committed == native and compare.machine_notes({"r/p/03_x/summary.json": (committed, native)}) == []
    note, = compare.machine_notes({"r/p/03_x/summary.json": (committed, portable)})
    assert note.startswith("03_x: committed on") and "/ native numerics, reproduced on" in note
    assert "/ portable numerics;" in note


def test_machine_notes_group_summaries_and_distrust_unknown_cpus():
    same = compare.machine_of({"provenance": {"machine": SAME_CPU}})
    other = compare.machine_of({"provenance": {"machine": {**SAME_CPU, "cpu_capability": "AVX2"}}})
    unknown = compare.machine_of({"provenance": {"machine": {"cpu_id": "unknown", "cpu_capability": "DEFAULT"}}})
    assert compare.machine_notes({"r/p/03_x/summary.json": (same, same)}) == []
    notes = compare.machine_notes({"r/p/03_x/summary.json": (same, other), "r/p/04_y/summary.json": (same, other),
                                   "r/p/05_z/summary.json": (unknown, unknown)})
    assert [n.split(":")[0] for n in notes] == ["03_x, 04_y", "05_z"]


def test_untracked_summaries_are_named(repo, capsys):
    _reproduce(repo)
    extra = repo / "results" / "p" / "05_new" / "summary.json"
    extra.parent.mkdir()
    extra.write_text(json.dumps({"figures": {"x": 1.0}}))
    assert cli.main(["compare", "--profile", "p"]) == 0
    assert "note: results/p/05_new/summary.json is untracked" in capsys.readouterr().out
    other = repo / "results" / "q" / "00_data" / "summary.json"
    other.parent.mkdir(parents=True)
    other.write_text("{}")
    assert cli.main(["compare", "--profile", "q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("linas: error: no committed results/q/*/summary.json at HEAD")
    assert "untracked" in err


def test_without_git_says_so(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main(["compare", "--profile", "p"]) == 2
    assert "git is not available" in capsys.readouterr().err


def test_outside_a_repository_says_so(tmp_path, monkeypatch, capsys):
    if GIT is None:
        pytest.skip("git not installed")
    monkeypatch.setenv("LINAS_ROOT", str(tmp_path))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert cli.main(["compare", "--profile", "p"]) == 2
    assert "cannot read the committed results" in capsys.readouterr().err


def test_lut_notebook_figures_are_deterministic_only_when_every_lut_is_committed():
    from linas_lib import compare as C

    assert C.classify("cpu-torch-1t.budget_ms", "01_luts", committed_luts=True).cls == "lut-data"
    assert C.classify("cpu-torch-1t.budget_ms", "01_luts", committed_luts=False).cls == "timing"
    assert C.classify("mape_pct.cpu-torch-1t.op_only", "02_latency_accuracy", committed_luts=True).cls == "timing"
    assert C.reads_committed_luts("cpu") is True
    assert C.reads_committed_luts("smoke") is False


@pytest.mark.parametrize("text, message", [
    ('{"figures": {"n_train.x": 1', "not valid JSON"),
    ('{"figures": {"n_train.synthetic": "three"}}', "figure 'n_train.synthetic' is 'three', not a number or null"),
    ("[1, 2]", "a summary is an object with 'figures'"),
    ('{"figures": [1, 2]}', "a summary is an object with 'figures'"),
])
def test_a_bad_reproduced_summary_is_named(repo, capsys, text, message):
    (repo / "results" / "p" / "00_data" / "summary.json").write_text(text)
    assert cli.main(["compare", "--profile", "p"]) == 2
    err = capsys.readouterr().err
    assert "results/p/00_data/summary.json: " in err and message in err


def test_a_profile_path_that_does_not_exist_is_named(repo, tmp_path, capsys):
    assert cli.main(["compare", "--profile", str(tmp_path / "nope.yaml")]) == 2
    assert f"profile file {tmp_path / 'nope.yaml'} not found" in capsys.readouterr().err
