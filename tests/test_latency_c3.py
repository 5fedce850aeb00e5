"""C3 and its heartbeat (:mod:`linas_lib.latency.c3`): beats around every block of images,
speed factors against 02's anchors, and when no reference may be read."""

from __future__ import annotations

import numpy as np
import pytest

from linas_lib.config import load_profile
from linas_lib.latency import c3 as C3


class _Clock:
    """A fake timer: each call returns the next value of ``ms`` (and still runs the function)."""

    def __init__(self, ms):
        self.ms, self.calls = list(ms), 0

    def __call__(self, fn):
        fn()
        self.calls += 1
        return self.ms[self.calls - 1]


def test_throughput_heartbeat_runs_around_every_block():
    from linas_lib.latency import e2e
    from linas_lib.latency.measure import RuntimeSpec

    seen = {"net": 0, "a": 0, "b": 0}
    order = []
    count = lambda key: lambda image: order.append(key) or seen.__setitem__(key, seen[key] + 1)  # noqa: E731
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    # 5 images in blocks of 2 (2, 2, 1): 4 gaps of 2 beats, networks a, b, a, b; the clock's
    # order is the calls' order (the second image of each block after the first is 10 ms)
    clock = _Clock([100, 100, 10, 10, 200, 200, 20, 10, 100, 100, 20, 200, 200])
    res = e2e.throughput(count("net"), images, 5, RuntimeSpec("torch", threads=1), [count("a"), count("b")],
                         every=2, beats=2, timer=clock)
    assert seen == {"net": 3 + 5, "a": 1 + 2 * 3, "b": 1 + 2 * 3}  # untimed: a, b once and per gap, net per block
    block, a, b = ["net"] * 3, ["a"] * 3, ["b"] * 3  # one untimed image, then the timed ones
    assert order == ["a", "b", *a, *block, *b, *block, *a, "net", "net", *b]
    assert clock.calls == 13 and [k for k, _ in res["heartbeat_gaps"]] == [0, 1, 0, 1]
    assert res["heartbeat_gaps"][1] == (1, [200, 200])
    assert res["image_min_ms"] == 10 and res["image_max_ms"] == 20
    assert res["first_in_block_vs_rest_pct"] == pytest.approx(100.0)  # 20 ms after a switch, 10 ms otherwise
    with pytest.raises(ValueError, match="every >= 1"):
        e2e.throughput(count("net"), images, 5, RuntimeSpec("torch", threads=1), [count("a")], every=0)


def test_speed_factor_divides_each_beat_by_its_own_reference():
    # network 0 (ref 100 ms) beats at 120, network 1 (ref 200 ms) at 240: the machine runs 1.2x slow
    cols = C3.heartbeat_columns([(0, [120.0, 120.0]), (1, [240.0, 240.0]), (0, [120.0])], [100.0, 200.0],
                               total_s=18.0, budget_s=16.0, n_images=100)
    assert cols["speed_factor"] == pytest.approx(1.2)
    assert cols["ms_per_image_drift_corrected"] == pytest.approx(150.0)
    assert cols["margin_s_drift_corrected"] == pytest.approx(1.0) and cols["pass_drift_corrected"] is True
    assert cols["heartbeat_networks"] == 2 and cols["heartbeat_n"] == 5


def test_heartbeat_references_are_the_anchors_of_each_target():
    smoke = load_profile("smoke")
    rows = [{"arch": f"a{i}", "target": t, "role": "anchor", "measured_ms": 10.0 * (i + 1) + (t == "cpu-ort-1t")}
            for t in ("cpu-torch-1t", "cpu-ort-1t") for i in range(3)]
    rows.append({"arch": "h", "target": "cpu-torch-1t", "role": "held_out", "measured_ms": 1.0})
    refs = C3.heartbeat_references(smoke, rows)
    assert sorted(refs) == ["cpu-ort-1t", "cpu-torch-1t"]  # targets without anchors get none
    assert refs["cpu-torch-1t"] == [{"arch": f"a{i}", "ref_ms": 10.0 * (i + 1)} for i in range(3)]
    assert refs["cpu-ort-1t"][2] == {"arch": "a2", "ref_ms": 31.0}
    many = [{"arch": f"a{i}", "target": "cpu-torch-1t", "role": "anchor", "measured_ms": 1.0} for i in range(20)]
    kept = {n: [r["arch"] for r in C3.heartbeat_references(smoke, many[:n])["cpu-torch-1t"]] for n in (10, 11, 20, 21)}
    assert kept[10] == [f"a{i}" for i in range(10)] and len(kept[11]) == len(kept[21]) == 10
    assert kept[20][0] == "a0" and kept[20][-1] == "a19" and len(set(kept[20])) == 10, "evenly spaced, ends kept"
    for bad in (0.0, float("nan")):  # a speed factor divides by the reference
        with pytest.raises(ValueError, match=r"positive and finite .*cpu-torch-1t a0"):
            C3.heartbeat_references(smoke, [{**rows[0], "measured_ms": bad}, *rows[1:]])


def test_heartbeat_off_or_without_02_gives_no_reference(tmp_path, monkeypatch):
    import dataclasses
    import json

    from linas_lib import paths, provenance

    smoke = load_profile("smoke")
    off = dataclasses.replace(smoke, latency=dataclasses.replace(smoke.latency, c3_heartbeat_every=0))
    assert C3.heartbeat_references(off, rows=[{"arch": "a", "target": "cpu-torch-1t", "role": "anchor",
                                              "measured_ms": 1.0}]) == {}
    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    assert C3.heartbeat_references(smoke) == {}  # 02 not run: C3 runs without a heartbeat
    folder = tmp_path / "results" / "smoke" / "02_latency_accuracy"
    folder.mkdir(parents=True)
    here = {"cpu_id": "GenuineIntel family 6 model 167 stepping 1"}
    monkeypatch.setattr(provenance, "machine", lambda: here)

    def header(resolution=smoke.data.resolution, machine=here):
        return "# provenance: " + json.dumps({"config": {"data": {"resolution": resolution}}, "machine": machine}) + "\n"

    (folder / "validation_measurements.csv").write_text(header() + "arch,target\nA,cpu-torch-1t\n")
    with pytest.raises(ValueError, match=r"validation_measurements.csv: missing column\(s\) measured_ms, role"):
        C3.heartbeat_references(smoke)
    (folder / "validation_measurements.csv").write_text(header(resolution=999) + "arch,target\nA,cpu-torch-1t\n")
    assert C3.heartbeat_references(smoke) == {}  # measured at another resolution: not a reference
    rows = "arch,target,role,measured_ms\nA,cpu-torch-1t,anchor,5.0\n"
    (folder / "validation_measurements.csv").write_text(header() + rows)
    assert C3.heartbeat_references(smoke) == {"cpu-torch-1t": [{"arch": "A", "ref_ms": 5.0}]}
    for other in ({"cpu_id": "AuthenticAMD family 26 model 2 stepping 1"}, {}):
        (folder / "validation_measurements.csv").write_text(header(machine=other) + rows)
        assert C3.heartbeat_references(smoke) == {}  # another (or an unrecorded) CPU: its speed is not drift
    (folder / "validation_measurements.csv").write_text(header())
    with pytest.raises(ValueError, match="validation_measurements.csv: no table after its provenance line"):
        C3.heartbeat_references(smoke)


def test_c3_heartbeat_settings_are_checked():
    from linas_lib.config import LatencyConfig

    with pytest.raises(ValueError, match="c3_heartbeat_every"):
        LatencyConfig(c3_heartbeat_every=-1)


def test_c3_over_several_runs_passes_only_if_every_run_does_and_reports_the_worst_margin():
    def row(target, run, ms, factor=None):
        out = {"target": target, "run": run, "ms_per_image": ms, "margin_s": 16.0 - ms / 10, "pass": ms <= 160.0}
        if factor is not None:
            out.update({"speed_factor": factor, "ms_per_image_drift_corrected": ms / factor,
                        "pass_drift_corrected": ms / factor <= 160.0, "c3_drift_corrected_vs_e2e_pct": 0.0})
        return out

    rows = [row("a", 0, 150.0, 1.0), row("a", 1, 163.0, 1.1), row("a", 2, 142.0, 0.9), row("b", 0, 90.0)]
    figures = C3.throughput_figures(rows)
    assert figures["throughput_runs"] == {"a": 3, "b": 1}
    assert figures["throughput_ms_per_image"]["a"] == pytest.approx(150.0), "the median run"
    assert figures["throughput_margin_s"]["a"] == pytest.approx(16.0 - 16.3), "the worst run's margin"
    assert figures["throughput_margin_max_s"]["a"] == pytest.approx(16.0 - 14.2)
    assert figures["throughput_pass"] == {"a": 0.0, "b": 1.0}, "one run over the budget fails the target"
    assert figures["throughput_pass_share"]["a"] == pytest.approx(2 / 3)
    corrected = figures["throughput_drift_corrected"]
    assert set(corrected["speed_factor"]) == {"a"} and corrected["speed_factor"]["a"] == pytest.approx(1.0)
    assert corrected["pass"] == {"a": 1.0}, "163 / 1.1 and 142 / 0.9 are within 160"


def test_c3_runs_must_be_positive():
    from dataclasses import replace

    latency = load_profile("cpu").latency
    assert latency.c3_runs == 3
    with pytest.raises(ValueError, match="c3_runs"):
        replace(latency, c3_runs=0)
