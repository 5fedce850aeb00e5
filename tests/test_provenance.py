import json
import re
import sys

import pandas as pd
import pytest

from linas_lib import provenance
from linas_lib.notebook import Run, flatten
from linas_lib.config import load_profile


def test_json_has_provenance_and_no_temp_left(tmp_path):
    path = provenance.write_json(tmp_path / "a.json", {"x": 1.5, "bad": float("nan")}, provenance.provenance("smoke"))
    data = json.loads(path.read_text())
    assert data["x"] == 1.5 and data["bad"] is None
    for key in ("git_sha", "profile", "config", "packages", "machine", "timestamp"):
        assert key in data["provenance"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_cpu_id_names_the_first_cpu_and_says_unknown_without_one(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                    "model name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\nvendor_id\t: Other\n")
    assert provenance._cpu_id(provenance._cpuinfo(info)) == "AuthenticAMD family 26 model 2 stepping 1"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
                    "CPU variant\t: 0x1\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\nprocessor\t: 1\n")
    assert provenance._cpu_id(provenance._cpuinfo(info)) == "arm implementer 0x41 part 0xd0c variant 0x1 revision 1"
    info.write_text("processor\t: 0\nisa\t: rv64imafdc\n")
    assert provenance._cpu_id(provenance._cpuinfo(info)) == "unknown"
    assert provenance._cpu_id(provenance._cpuinfo(tmp_path / "absent")) == "unknown"


def test_machine_without_torch_still_names_the_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    info = provenance.machine()
    assert "cpu_id" in info and "cpu_capability" not in info and "torch_threads" not in info


def test_csv_roundtrip_with_header(tmp_path):
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    path = provenance.write_csv(tmp_path / "t.csv", rows, {"git_sha": "abc"})
    assert provenance.read_csv_provenance(path)["git_sha"] == "abc"
    frame = pd.read_csv(path, comment="#")
    assert frame["a"].tolist() == [1, 2]


@pytest.mark.parametrize("first_line, why", [
    ('# provenance: {"git_sha": "ab', "is not valid JSON"),
    ("# provenance: [1, 2]", "holds a JSON list, not an object"),
    ("a,b", "no '# provenance:' header line"),
])
def test_a_bad_provenance_line_names_the_file(tmp_path, first_line, why):
    path = tmp_path / "t.csv"
    path.write_text(f"{first_line}\na,b\n1,2\n")
    with pytest.raises(ValueError, match=rf"t\.csv: .*{re.escape(why)}"):
        provenance.read_csv_provenance(path)


def test_a_provenance_line_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"# provenance: {\xff\xfe}\n")
    with pytest.raises(ValueError, match=r"t\.csv: not UTF-8 text"):
        provenance.read_csv_provenance(path)


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "keep.json"
    provenance.write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        provenance.write_json(target, {"v": object()})
    assert json.loads(target.read_text())["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_summary_must_be_flat_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("LINAS_ROOT", str(tmp_path))
    run = Run("99_test", load_profile("smoke"), 0)
    run.write_summary(flatten({"mape_pct": {"cpu": 1.5}, "n": 3}))
    data = json.loads((tmp_path / "results/smoke/99_test/summary.json").read_text())
    assert data["figures"] == {"mape_pct.cpu": 1.5, "n": 3.0}
    with pytest.raises(ValueError, match="must be a number"):
        run.write_summary({"x": "high"})


def test_run_rng_streams_are_reproducible():
    run = Run("x", load_profile("smoke"), 5)
    assert run.rng(1).integers(0, 1000, 5).tolist() == run.rng(1).integers(0, 1000, 5).tolist()
    assert run.rng(1).integers(0, 10**9) != run.rng(2).integers(0, 10**9)


def test_rewritten_outputs_do_not_make_the_code_dirty(tmp_path, monkeypatch):
    import subprocess

    from linas_lib import provenance as prov

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for name in ("linas_lib/x.py", "results/cpu/s.json", "results/luts/cpu/l.json", "figures/cpu/f.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0")
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    monkeypatch.setenv("LINAS_ROOT", str(tmp_path))
    assert not prov.git_sha().endswith("+dirty")
    (tmp_path / "results/cpu/s.json").write_text("1")
    (tmp_path / "figures/cpu/f.png").write_text("1")
    assert not prov.git_sha().endswith("+dirty")
    (tmp_path / "results/luts/cpu/l.json").write_text("1")
    assert prov.git_sha().endswith("+dirty")
    git("checkout", "results/luts")
    (tmp_path / "linas_lib/x.py").write_text("1")
    assert prov.git_sha().endswith("+dirty")


def test_a_run_records_the_commit_it_began_at_and_a_later_one_beside_it(monkeypatch, tmp_path):
    shas = iter(["aaa", "aaa", "bbb"])
    monkeypatch.setattr(provenance, "git_sha", lambda: next(shas))
    run = Run(notebook="00_data", profile=load_profile("smoke"), seed=0)
    assert run.sha == "aaa"
    same = run.provenance()
    assert same["git_sha"] == "aaa" and "git_sha_at_write" not in same
    moved = run.provenance()  # a commit made while the run goes on
    assert moved["git_sha"] == "aaa" and moved["git_sha_at_write"] == "bbb"
