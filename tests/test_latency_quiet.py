"""The quiet-machine guard: readings from /proc, the verdict, the policies, and its hooks."""

import json
import warnings

import pytest

from linas_lib.cli import main
from linas_lib.latency import lut as L
from linas_lib.latency import quiet as Q

BUSY = {"cores": 2, "other_cores": 1.9, "steal_share": 0.0,
        "processes": [{"pid": 7, "name": "python", "cores": 1.9, "command": "python train.py"}]}
QUIET = {"cores": 2, "other_cores": 0.02, "steal_share": 0.0, "processes": []}


def fake_proc(root, cpu_line: str, own_utime: int = 40, own_stime: int = 10):
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(cpu_line + "\ncpu0 1 2 3 4\n")
    (root / "self" / "stat").write_text(f"99 (my (odd) proc) S 1 1 1 0 -1 0 0 0 0 0 {own_utime} {own_stime} 0 0\n")
    return root


def test_read_times_parses_proc_stat_and_the_own_process(tmp_path):
    proc = fake_proc(tmp_path, "cpu  100 0 50 800 20 0 0 30 5 0")
    t = Q.read_times(proc)
    assert (t.total, t.idle, t.steal, t.own) == (1000, 820, 30, 50)
    assert Q.read_times(tmp_path / "missing") is None


def test_load_between_subtracts_this_process():
    a, b = Q.CpuTimes(0.0, 0, 0, 0, 0), Q.CpuTimes(1.0, 200, 50, 10, 50)
    load = Q.load_between(a, b, cores=2)
    assert load == {"seconds": 1.0, "other_cores": 1.0, "own_cores": 0.5, "steal_share": 0.05}


def test_problems_name_the_cause():
    settings = Q.QuietSettings()
    assert Q.problems(QUIET, 2, settings) == []
    assert Q.problems(QUIET, 4, settings) == ["4 threads asked on 2 usable cores (oversubscribed)"]
    (busy,) = Q.problems(BUSY, 1, settings)
    assert busy == "other work keeps 1.90 cores busy (limit 0.25): python train.py (pid 7, 1.90 cores)"
    (steal,) = Q.problems({**QUIET, "steal_share": 0.2}, 1, settings)
    assert steal == "the hypervisor steals 20.0% of CPU time (limit 5%)"
    assert Q.problems({"cores": 2, "loadavg": [9.0, 9.0, 9.0]}, 1, settings) == []  # no /proc: not judged


def test_policies():
    with pytest.warns(Q.NoisyMachineWarning, match="LUT x: machine not quiet before the measurement"):
        Q.judge(dict(BUSY), "LUT x", "before the measurement", 1, Q.QuietSettings(policy="warn"))
    with pytest.raises(Q.NoisyMachineError, match="stop the other work and rerun"):
        Q.judge(dict(BUSY), "LUT x", "before", 1, Q.QuietSettings(policy="refuse"))
    with pytest.warns(Q.NoisyMachineWarning):  # after the results exist, refuse only warns
        Q.judge(dict(BUSY), "LUT x", "after", 1, Q.QuietSettings(policy="refuse"), refuse=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reading = dict(BUSY)
        Q.judge(reading, "LUT x", "before", 1, Q.QuietSettings(policy="off"))
    assert reading["quiet"] is False
    with pytest.raises(ValueError, match="quiet policy 'loud' is not one of warn, refuse, off"):
        Q.QuietSettings(policy="loud")


def test_watch_refuses_before_timing_anything(monkeypatch):
    monkeypatch.setattr(Q, "snapshot", lambda sample_s: dict(BUSY))
    ran = []
    with pytest.raises(Q.NoisyMachineError, match="before the measurement"):
        with Q.watch("C3 cpu-torch-1t", 1, Q.QuietSettings(policy="refuse")):
            ran.append(1)
    assert ran == []


def test_watch_checks_each_interval_and_records_it(monkeypatch):
    monkeypatch.setattr(Q, "snapshot", lambda sample_s: dict(QUIET))
    ticks = iter([Q.CpuTimes(0.0, 0, 0, 0, 0), Q.CpuTimes(0.0, 0, 0, 0, 0), Q.CpuTimes(1.0, 200, 20, 0, 0),
                  Q.CpuTimes(1.0, 200, 20, 0, 0)])
    monkeypatch.setattr(Q, "read_times", lambda: next(ticks))
    with pytest.warns(Q.NoisyMachineWarning, match="while timing arch A"):
        with Q.watch("end-to-end", 1, Q.QuietSettings(policy="warn")) as load:
            load.check(load.mark(), "arch A")
    record = load.record
    assert record["before"]["quiet"] and record["after"]["quiet"]
    (noisy,) = record["noisy"]
    assert noisy["at"] == "arch A" and noisy["own_cores"] == 0.0 and noisy["seconds"] == 1.0
    assert noisy["other_cores"] == pytest.approx(0.9 * Q.usable_cores())
    assert record["during"]["seconds"] == 1.0


def test_lut_build_refuses_on_a_busy_machine_and_records_the_load(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cpu-torch-1t_64px.json"
    args = ["lut", "build", "--target", "cpu-torch-1t", "--resolution", "64", "--out", str(out), "--warmup", "0",
            "--repeats", "1", "--max-retries", "0", "--choices", "9", "--pairs-per-slot", "1"]
    monkeypatch.setattr(Q, "snapshot", lambda sample_s: dict(BUSY))
    assert main(args + ["--quiet-policy", "refuse"]) == 3
    assert "LUT cpu-torch-1t: machine not quiet before the measurement" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(Q, "snapshot", lambda sample_s: dict(QUIET))
    assert main(args + ["--quiet-policy", "warn"]) == 0
    load = L.load_lut(out, resolution=64)["machine_load"]
    assert load["what"] == "LUT cpu-torch-1t" and load["threads"] == 1 and load["settings"]["policy"] == "warn"
    assert load["before"]["quiet"] and "other_cores" in load["during"]
    assert json.loads(out.read_text())["machine_load"] == load


def test_machine_check_command(monkeypatch, capsys):
    monkeypatch.setattr(Q, "snapshot", lambda sample_s: dict(BUSY))
    assert main(["machine", "check", "--threads", "1"]) == 3
    assert "not quiet: other work keeps 1.90 cores busy" in capsys.readouterr().out
    monkeypatch.setattr(Q, "snapshot", lambda sample_s: dict(QUIET))
    assert main(["machine", "check"]) == 0
    assert capsys.readouterr().out.endswith("quiet enough for 1 thread(s)\n")


def test_a_bad_quiet_section_names_the_file(tmp_path):
    from linas_lib.config import ConfigError, load_profile

    bad = tmp_path / "bad.yaml"
    bad.write_text("latency:\n  quiet: {policy: loud}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: latency.quiet: quiet policy 'loud' is not one of warn, refuse, off"):
        load_profile(bad)
