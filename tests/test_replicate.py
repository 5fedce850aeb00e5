"""``linas replicate``: the clone, the data link, the label and the collection (no notebook runs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from linas_lib import replicate as R

PROVENANCE = {"machine": {"cpu_id": "GenuineIntel family 6 model 167 stepping 1", "cpu_capability": "AVX512"}}


def _repo(path: Path, files: dict[str, str] | None = None) -> str:
    """A one-commit git repository at ``path`` holding ``files`` (and a README); returns its commit."""
    for name, text in {"README.md": "x\n", **(files or {})}.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_clone_is_made_then_resumed_and_refuses_another_commit(tmp_path):
    root = tmp_path / "project"
    sha = _repo(root)
    work = R.default_workdir(root, "cpu", "05_pareto", sha)
    assert work == root / ".cache" / "replicas" / f"cpu-05_pareto-{sha[:12]}"
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
    R.check_same_data(root, work, ["../shared/data/crackforest", "", "../missing/x"])


def test_data_the_clone_would_resolve_elsewhere_is_refused(tmp_path):
    root, work = tmp_path / "a" / "project", tmp_path / "b" / "clone"
    (tmp_path / "a" / "shared" / "data").mkdir(parents=True)
    (tmp_path / "b" / "shared" / "data").mkdir(parents=True)  # the link's name is taken by other data
    root.mkdir(parents=True)
    work.mkdir(parents=True)
    assert R.link_outside_data(root, work, "../shared/data") is None
    with pytest.raises(R.ReplicateError, match="data folder '../shared/data' is .*a/shared/data here but "
                                               ".*b/shared/data from the clone"):
        R.check_same_data(root, work, ["../shared/data"])
    (root / "images").mkdir(parents=True)  # an untracked folder inside the project: not in the clone
    with pytest.raises(R.ReplicateError, match=r"clone/images \(missing\) from the clone"):
        R.check_same_data(root, work, ["images"])


def test_label_names_the_commit_and_the_recorded_cpu(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"figures": {}, "provenance": PROVENANCE}))
    assert R.machine_label(summary, "432eb0e" + "0" * 33) == "432eb0e-genuineintel-family-6-model-167-stepping-1"
    table = tmp_path / "t.csv"
    table.write_text("# provenance: {}\na\n1\n")
    assert R.machine_label(table, "abcdef1" + "0" * 33) == "abcdef1-unrecorded"


def test_collect_takes_only_what_the_replica_rewrote_and_never_overwrites(tmp_path):
    committed = {"results/cpu/05_pareto/summary.json": json.dumps({"figures": {"a": 1}}),
                 "results/cpu/05_pareto/long_budget.csv": "a\n1\n"}
    work, root = tmp_path / "clone", tmp_path / "project"
    _repo(work, committed)
    made = work / "results" / "cpu" / "05_pareto"
    with pytest.raises(R.ReplicateError, match="summary.json was not rewritten: the replica of 05_pareto did not"):
        R.collect(work, root, "cpu", "05_pareto", None, "1" * 40, partial=True)  # nothing rewritten yet
    (made / "confirm.csv").write_text("# provenance: " + json.dumps(PROVENANCE) + "\na\n1\n")
    with pytest.raises(R.ReplicateError, match="did not finish \\(--partial collects"):
        R.collect(work, root, "cpu", "05_pareto", None, "1" * 40)
    early = R.collect(work, root, "cpu", "05_pareto", "early", "1" * 40, partial=True)
    assert json.loads((early / "replica.json").read_text())["finished"] is False
    assert sorted(p.name for p in (early / "05_pareto").iterdir()) == ["confirm.csv"]
    (made / "summary.json").write_text(json.dumps({"figures": {"a": 2}, "provenance": PROVENANCE}))
    (made / "figure.png").write_bytes(b"\x89PNG")
    (work / "results" / "cpu" / "compare.csv").write_text("key\n")
    dest = R.collect(work, root, "cpu", "05_pareto", None, "1" * 40)
    assert dest == root / "results" / "cpu" / "replicas" / "1111111-genuineintel-family-6-model-167-stepping-1"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "05_pareto/confirm.csv", "05_pareto/summary.json", "compare-05_pareto.csv", "replica.json"]
    manifest = json.loads((dest / "replica.json").read_text())
    assert manifest["finished"] is True and manifest["left_out"] == ["long_budget.csv"]  # the commit's
    with pytest.raises(R.ReplicateError, match="exists: a replica is never overwritten"):
        R.collect(work, root, "cpu", "05_pareto", None, "1" * 40)
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted([dest.name, "early"])  # no staging folder left


def test_replicate_runs_paper_then_compare_in_the_clone_and_collects(tmp_path, monkeypatch):
    root = tmp_path / "project"
    summary = "results/cpu/05_pareto/summary.json"
    sha = _repo(root, {"notebooks/05_pareto.ipynb": "{}", "linas_lib/profiles/cpu.yaml": R.PROFILE_DIR.joinpath(
        "cpu.yaml").read_text(), summary: "{}"})
    monkeypatch.setenv("LINAS_ROOT", str(root))
    calls = []

    def fake_run(workdir, args):
        calls.append(args)
        if args[0] == "paper":
            (workdir / summary).write_text(json.dumps({"figures": {}, "provenance": PROVENANCE}))
        else:
            (workdir / "results" / "cpu" / "compare.csv").write_text("key\n")
        return 1 if args[0] == "compare" else 0  # figures that differ are a finding, not a failure

    monkeypatch.setattr(R, "run_in_clone", fake_run)
    dest = R.replicate("cpu", "05_pareto", label="here")
    assert calls == [["paper", "--profile", "cpu", "--only", "05_pareto"], ["compare", "--profile", "cpu"]]
    assert dest == root / "results" / "cpu" / "replicas" / "here" and (dest / "05_pareto" / "summary.json").is_file()
    assert (R.default_workdir(root, "cpu", "05_pareto", sha) / ".git").exists()
    monkeypatch.setattr(R, "run_in_clone", lambda workdir, args: 2 if args[0] == "compare" else 0)
    with pytest.raises(R.ReplicateError, match="`linas compare` failed in .* \\(exit 2\\) and wrote no compare.csv"):
        R.replicate("cpu", "05_pareto", label="again")
    monkeypatch.setattr(R, "run_in_clone", lambda workdir, args: 1)
    with pytest.raises(R.ReplicateError, match="failed in .* \\(exit 1; rerun the same command to resume; "
                                               "executed copy: .*05_pareto.ipynb\\)"):
        R.replicate("cpu", "05_pareto")
    with pytest.raises(R.ReplicateError, match="does not exist: --partial collects a replica that was started"):
        R.replicate("cpu", "05_pareto", workdir=str(tmp_path / "none"), partial=True)
    partial = R.replicate("cpu", "05_pareto", label="now", partial=True)  # the finished clone, collected again
    assert json.loads((partial / "replica.json").read_text())["finished"] is True
    with pytest.raises(R.ReplicateError, match="notebooks/04_ranking.ipynb is not in commit"):
        R.replicate("cpu", "04_ranking")
    with pytest.raises(R.ReplicateError, match="takes the name of a committed profile"):
        R.replicate(str(tmp_path / "mine.yaml"), "05_pareto")


def test_the_clone_imports_its_own_package(tmp_path, capfd):
    (tmp_path / "linas_lib").mkdir()
    (tmp_path / "linas_lib" / "__init__.py").write_text("")
    (tmp_path / "linas_lib" / "cli.py").write_text("import linas_lib, os\nprint(linas_lib.__file__, os.environ['LINAS_ROOT'])\n")
    assert R.run_in_clone(tmp_path, []) == 0  # the project's linas_lib is installed editable: PYTHONPATH wins
    assert capfd.readouterr().out.split() == [str(tmp_path / "linas_lib" / "__init__.py"), str(tmp_path)]


@pytest.mark.parametrize("label", ["../../x", "a/b", "..", "."])
def test_a_label_that_would_leave_the_replicas_folder_is_refused_before_any_work(label):
    with pytest.raises(R.ReplicateError, match="one folder name under results/<profile>/replicas/"):
        R.replicate("cpu", "05_pareto", label=label)
    R.check_label("432eb0e-genuineintel")  # one folder name: fine
