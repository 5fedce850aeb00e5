"""``linas replicate``: the clone, the data link, the label and the collection (no notebook runs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from linas_lib import replicate as R

PROVENANCE = {"machine": {"cpu_id": "GenuineIntel family 6 model 167 stepping 1", "cpu_capability": "AVX512"}}


def _repo(path: Path) -> str:
    """A one-commit git repository at ``path``; returns its commit."""
    path.mkdir(parents=True)
    (path / "README.md").write_text("x\n")
    for args in (["init", "-q"], ["add", "README.md"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_clone_is_made_then_resumed_and_refuses_another_commit(tmp_path):
    root = tmp_path / "project"
    sha = _repo(root)
    work = R.default_workdir(root, "cpu", sha)
    assert work == root / ".cache" / "replicas" / f"cpu-{sha[:12]}"
    assert R.prepare_clone(root, work, sha) is True and (work / "README.md").read_text() == "x\n"
    assert R.prepare_clone(root, work, sha) is False
    with pytest.raises(R.ReplicateError, match="holds commit .* not 0000000000"):
        R.prepare_clone(root, work, "0" * 40)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(R.ReplicateError, match="plain exists and is not a git clone"):
        R.prepare_clone(root, plain, sha)


def test_data_outside_the_project_is_linked_beside_the_clone(tmp_path):
    root, work = tmp_path / "a" / "project", tmp_path / "b" / "clone"
    root.mkdir(parents=True)
    work.mkdir(parents=True)
    (tmp_path / "a" / "shared" / "data" / "crackforest").mkdir(parents=True)
    link = R.link_outside_data(root, work, "../shared/data/crackforest")
    assert link == work / ".." / "shared" and (work / "../shared/data/crackforest").is_dir()
    assert R.link_outside_data(root, work, "../shared/data/crackforest") is None  # already there
    assert R.link_outside_data(root, work, "data/inside") is None
    assert R.link_outside_data(root, work, "/abs/path") is None
    assert R.link_outside_data(root, work, "../missing/x") is None


def test_label_names_the_commit_and_the_recorded_cpu(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"figures": {}, "provenance": PROVENANCE}))
    assert R.machine_label(summary, "432eb0e" + "0" * 33) == "432eb0e-genuineintel-family-6-model-167-stepping-1"
    table = tmp_path / "t.csv"
    table.write_text("# provenance: {}\na\n1\n")
    assert R.machine_label(table, "abcdef1" + "0" * 33) == "abcdef1-unrecorded"


def test_collect_copies_the_notebooks_files_and_compare(tmp_path):
    work, root = tmp_path / "clone", tmp_path / "project"
    made = work / "results" / "cpu" / "05_pareto"
    with pytest.raises(R.ReplicateError, match="summary.json is missing: the replica of 05_pareto did not finish"):
        R.collect(work, root, "cpu", "05_pareto", None, "1" * 40)
    made.mkdir(parents=True)
    (made / "summary.json").write_text(json.dumps({"figures": {"a": 1}, "provenance": PROVENANCE}))
    (made / "confirm.csv").write_text("a\n1\n")
    (made / "figure.png").write_bytes(b"\x89PNG")
    (work / "results" / "cpu" / "compare.csv").write_text("key\n")
    dest = R.collect(work, root, "cpu", "05_pareto", None, "1" * 40)
    assert dest == root / "results" / "cpu" / "replicas" / "1111111-genuineintel-family-6-model-167-stepping-1"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "05_pareto/confirm.csv", "05_pareto/summary.json", "compare.csv"]


def test_replicate_runs_paper_then_compare_in_the_clone_and_collects(tmp_path, monkeypatch):
    root = tmp_path / "project"
    sha = _repo(root)
    monkeypatch.setenv("LINAS_ROOT", str(root))
    calls = []

    def fake_run(workdir, args):
        calls.append(args)
        if args[0] == "paper":
            out = workdir / "results" / "cpu" / "05_pareto"
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps({"figures": {}, "provenance": PROVENANCE}))
        return 1 if args[0] == "compare" else 0  # figures that differ are a finding, not a failure

    monkeypatch.setattr(R, "run_in_clone", fake_run)
    dest = R.replicate("cpu", "05_pareto", label="here")
    assert calls == [["paper", "--profile", "cpu", "--only", "05_pareto"], ["compare", "--profile", "cpu"]]
    assert dest == root / "results" / "cpu" / "replicas" / "here" and (dest / "05_pareto" / "summary.json").is_file()
    assert (R.default_workdir(root, "cpu", sha) / ".git").exists()
    monkeypatch.setattr(R, "run_in_clone", lambda workdir, args: 1)
    with pytest.raises(R.ReplicateError, match="the replica of 05_pareto failed in .*: rerun the same command"):
        R.replicate("cpu", "05_pareto")
    with pytest.raises(R.ReplicateError, match="takes the name of a committed profile"):
        R.replicate(str(tmp_path / "mine.yaml"), "05_pareto")
