"""LUT schema, checker, external reader and the headless ``linas lut`` commands."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from linas_lib.cli import main
from linas_lib.latency import lut as L
from linas_lib.space import N_CHOICES, N_LAYERS, choice_key

EXTERNAL = "external-luts/seg-nas-128px"


def _stats(ms: float) -> dict:
    return {"mean_ms": ms, "std_ms": 0.01, "median_ms": ms, "min_ms": ms, "max_ms": ms, "n": 5,
            "n_raw": 5, "cv": 0.01 / ms, "retries": 0}


def fake_lut(resolution: int = 128, target: str = "cpu-torch-1t") -> dict:
    """A complete schema-v1 LUT with known values: entry (l, c) = 1 + l + c/100 ms."""
    layers = {}
    for layer in range(N_LAYERS):
        entries = {choice_key(c): _stats(1.0 + layer + c / 100) for c in range(N_CHOICES)}
        proj = {choice_key(c): _stats(1.5 + layer + c / 100) for c in range(N_CHOICES)}
        layers[f"layer_{layer}"] = {"c_in": 1, "c_out": 1, "h_out": 1, "w_out": 1, "op_only": entries,
                                    "projected": proj}
    return {
        "schema": L.SCHEMA, "schema_version": L.SCHEMA_VERSION, "target": target, "runtime": "torch",
        "device": "cpu", "precision": "fp32", "threads": 1, "graph": False, "scope": "end-to-end",
        "resolution": resolution, "space": L.space_block(), "measure": {"warmup": 1, "repeats": 5},
        "layers": layers,
        "fixed": {s: _stats(10.0 * (i + 1)) for i, s in enumerate(("preprocess", "encoder", "bottleneck", "head",
                                                                     "postprocess"))},
        "pairs": {"method": "sampled", "per_slot": 1, "seed": 0, "entries": [
            {"layer": 0, "a": choice_key(0), "b": choice_key(1), "pair": _stats(3.0), "interaction_ms": 0.4},
            {"layer": 0, "a": choice_key(2), "b": choice_key(3), "pair": _stats(3.0), "interaction_ms": 0.2},
            {"layer": 2, "a": choice_key(5), "b": choice_key(5), "pair": _stats(3.0), "interaction_ms": -1.0},
        ]},
    }


def _write(tmp_path, data, name="lut.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_schema_round_trip(tmp_path):
    data = fake_lut()
    loaded = L.load_lut(_write(tmp_path, data), resolution=128)
    assert loaded == data
    table = L.entry_table(loaded, "projected")
    assert table.shape == (N_LAYERS, N_CHOICES)
    assert table[2, 7] == pytest.approx(1.5 + 2 + 0.07)
    assert L.fixed_total(loaded) == pytest.approx(150.0)


def test_pair_table_uses_measured_pairs_and_slot_means():
    table = L.pair_table(fake_lut())
    assert table.shape == (N_LAYERS - 1, N_CHOICES, N_CHOICES)
    assert table[0, 0, 1] == pytest.approx(0.4) and table[0, 2, 3] == pytest.approx(0.2)
    assert table[0, 10, 10] == pytest.approx(0.3)  # slot mean elsewhere
    assert table[2, 5, 5] == pytest.approx(-1.0) and table[2, 0, 0] == pytest.approx(-1.0)
    assert np.all(table[1] == 0) and np.all(table[3] == 0)  # no measured pair -> no interaction


def test_check_names_file_for_bad_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(L.LUTError, match="broken.json.*not valid JSON"):
        L.load_lut(path)


def test_check_missing_op(tmp_path):
    data = fake_lut()
    del data["layers"]["layer_3"]["projected"]["EdgeConv_w75"]
    with pytest.raises(L.LUTError, match=r"lut.json: layer_3.projected is missing op 'EdgeConv_w75'"):
        L.load_lut(_write(tmp_path, data))


def test_check_missing_layer_and_fixed(tmp_path):
    data = fake_lut()
    del data["layers"]["layer_4"]
    with pytest.raises(L.LUTError, match="missing layer 'layer_4'"):
        L.load_lut(_write(tmp_path, data))
    data = fake_lut()
    del data["fixed"]["encoder"]
    with pytest.raises(L.LUTError, match="fixed cost 'encoder' missing"):
        L.load_lut(_write(tmp_path, data))


def test_other_resolution_is_an_error(tmp_path):
    path = _write(tmp_path, fake_lut(resolution=256))
    L.load_lut(path)  # valid on its own
    with pytest.raises(L.LUTError, match="lut.json: LUT measured at resolution 256 but the run uses 128"):
        L.load_lut(path, resolution=128)


def test_other_search_space_is_an_error(tmp_path):
    data = copy.deepcopy(fake_lut())
    data["space"]["channels"][0] = [2048, 512]
    with pytest.raises(L.LUTError, match="lut.json: LUT measured for another search space: channels"):
        L.load_lut(_write(tmp_path, data))


def test_cli_check_reports_errors_with_file(tmp_path, capsys):
    good, bad = _write(tmp_path, fake_lut(), "good.json"), tmp_path / "bad.json"
    bad.write_text("[")
    assert main(["lut", "check", str(good)]) == 0
    assert main(["lut", "check", str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_read_external_luts(shared_data):
    folder = shared_data / EXTERNAL
    files = sorted(folder.glob("lut_*.json"))
    assert len(files) == 6
    for path in files:
        lut = L.read_external(path, resolution=128)
        assert lut["scope"] == "decoder-only" and lut["runtime"] == "external"
        table = L.entry_table(lut, "op_only")
        assert table.shape == (N_LAYERS, N_CHOICES) and np.all(table > 0)
    odroid = L.read_external(folder / "lut_odroid.json")
    raw = json.loads((folder / "lut_odroid.json").read_text())
    assert odroid["layers"]["layer_0"]["op_only"]["Conv3x3_w50"]["mean_ms"] == raw["layers"]["layer_0"]["ops"][
        "Conv3x3_w50"]["mean_ms"]
    # the file's own latency_range is the sum of per-layer minima
    assert L.entry_table(odroid, "op_only").min(1).sum() == pytest.approx(raw["latency_range"]["min_ms"], rel=1e-6)


def test_external_lut_at_other_resolution_rejected(shared_data):
    with pytest.raises(L.LUTError, match="lut_orin.json: LUT measured at resolution 128 but the run uses 256"):
        L.read_external(shared_data / EXTERNAL / "lut_orin.json", resolution=256)


def test_sampled_pairs_deterministic_and_distinct():
    a, b = L.sampled_pairs(5, seed=3), L.sampled_pairs(5, seed=3)
    assert a == b and len(a) == 5 * (N_LAYERS - 1)
    assert len(set(a)) == len(a)
    assert L.sampled_pairs(5, seed=4) != a
    assert len(L.sampled_pairs(10_000, seed=0)) == (N_LAYERS - 1) * N_CHOICES**2


def test_cli_build_tiny_lut_and_resume(tmp_path):
    out = tmp_path / "cpu-torch-1t_64px.json"
    args = ["lut", "build", "--target", "cpu-torch-1t", "--resolution", "64", "--out", str(out),
            "--warmup", "0", "--repeats", "2", "--max-retries", "0", "--choices", "9", "--pairs-per-slot", "441"]
    assert main(args) == 0
    lut = L.load_lut(out, resolution=64)
    assert lut["restricted"] is True and lut["threads"] == 1 and lut["runtime"] == "torch"
    entry = lut["layers"]["layer_2"]["projected"]["DWSep3x3_w50"]
    assert entry["n_raw"] == 2 and entry["mean_ms"] > 0 and entry["min_ms"] <= entry["median_ms"] <= entry["max_ms"]
    assert len(lut["pairs"]["entries"]) == N_LAYERS - 1  # the one measured choice, every slot
    for e in lut["pairs"]["entries"]:
        expected = e["pair"]["median_ms"] - e["single_a"]["median_ms"] - e["single_b"]["median_ms"]
        assert e["interaction_ms"] == pytest.approx(expected)
    assert lut["layers"]["layer_0"]["op_only"]["Conv7x7_w100"] == lut["layers"]["layer_0"]["op_only"]["DWSep3x3_w50"]
    assert not out.with_name(out.stem + ".partial.json").exists()
    assert main(["lut", "check", str(out), "--resolution", "64"]) == 0


def test_restricted_donor_prefers_same_op():
    measured = [2, 9, 20]  # Conv3x3_w100, DWSep3x3_w50, EdgeConv_w100
    assert L._donor(2, measured) == 2
    assert L._donor(0, measured) == 2 and L._donor(11, measured) == 9 and L._donor(18, measured) == 20
    assert L._donor(4, measured) == 2  # Conv5x5 not measured -> first measured choice
