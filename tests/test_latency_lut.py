"""LUT schema, checker, external reader and the headless ``linas lut`` commands."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from linas_lib.cli import main
from linas_lib.latency import lut as L
from linas_lib.ops import layer_input_shape
from linas_lib.paths import project_root
from linas_lib.space import CHANNELS, N_CHOICES, N_LAYERS, arch_string, choice_key

EXTERNAL = project_root() / "results" / "luts" / "external" / "seg-nas-128px"  # committed copies
FIXTURES = Path(__file__).parent / "fixtures"


def _stats(ms: float) -> dict:
    return {"mean_ms": ms, "std_ms": 0.01, "median_ms": ms, "min_ms": ms, "max_ms": ms, "n": 5,
            "n_raw": 5, "cv": 0.01 / ms, "retries": 0}


ANCHORS = [arch_string([c] * N_LAYERS) for c in range(3)]  # calibration anchors are architecture strings
CALIBRATION = {"base": "interaction", "fit": "affine", "slope": 2.0, "intercept": 3.0,
               "anchors": ANCHORS[:2], "anchor_ms": [203.0, 403.0], "anchor_base_ms": [100.0, 200.0]}


def fake_lut(resolution: int = 128, target: str = "cpu-torch-1t", calibrated: bool = False) -> dict:
    """A complete schema-v2 LUT with known values: entry (l, c) = 1 + l + c/100 ms; with
    ``calibrated``, the block ``ms = 2 * interaction + 3``."""
    layers = {}
    for layer in range(N_LAYERS):
        entries = {choice_key(c): _stats(1.0 + layer + c / 100) for c in range(N_CHOICES)}
        proj = {choice_key(c): _stats(1.5 + layer + c / 100) for c in range(N_CHOICES)}
        side = resolution // 2 ** (N_LAYERS - 1 - layer)
        layers[f"layer_{layer}"] = {"c_in": CHANNELS[layer][0], "c_out": CHANNELS[layer][1], "h_out": side,
                                    "w_out": side, "op_only": entries, "projected": proj}
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
        **({"calibration": dict(CALIBRATION)} if calibrated else {}),
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


@pytest.mark.parametrize("field, value, message", [
    ("runtime", "banana", "runtime 'banana' is not one of torch, ort, external"),
    ("target", None, "target must name the device the LUT was measured for, got None"),
    ("scope", "bogus", "scope 'bogus' is not one of end-to-end, decoder-only"),
])
def test_check_header_values(tmp_path, field, value, message):
    data = fake_lut()
    data[field] = value
    with pytest.raises(L.LUTError, match="lut.json: " + re.escape(message)):
        L.load_lut(_write(tmp_path, data))


def test_other_resolution_is_an_error(tmp_path):
    path = _write(tmp_path, fake_lut(resolution=256))
    L.load_lut(path)  # valid on its own
    with pytest.raises(L.LUTError, match="lut.json: LUT measured at resolution 256 but the run uses 128"):
        L.load_lut(path, resolution=128)


def test_other_search_space_is_an_error(tmp_path):
    data = copy.deepcopy(fake_lut())
    data["space"]["channels"][0] = [2048, 512]
    with pytest.raises(L.LUTError, match=r"lut.json: LUT belongs to another search space and/or resolution") as err:
        L.load_lut(_write(tmp_path, data))
    assert "channels (C_in->C_out per layer): found 2048->512, 512->256" in str(err.value)


def test_cli_check_reports_errors_with_file(tmp_path, capsys):
    good, bad = _write(tmp_path, fake_lut(), "good.json"), tmp_path / "bad.json"
    bad.write_text("[")
    assert main(["lut", "check", str(good)]) == 0
    assert main(["lut", "check", str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_read_external_luts():
    folder = EXTERNAL
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


def test_external_lut_at_other_resolution_rejected():
    with pytest.raises(L.LUTError, match="lut_orin.json: LUT measured at resolution 128 but the run uses 256"):
        L.read_external(EXTERNAL / "lut_orin.json", resolution=256)


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


# ----------------------------------------------------------------------------- bad inputs


def _external(tmp_path, edit=None, name="lut_orin.json"):
    """A copy of the committed Orin LUT (raw Seg-NAS schema), changed by ``edit(raw)``."""
    raw = json.loads((EXTERNAL / "lut_orin.json").read_text())
    if edit:
        edit(raw)
    return _write(tmp_path, raw, name)


def test_expected_geometry_matches_ops_and_committed_files():
    geometry = L.expected_geometry(128)
    assert geometry == [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128)]
    assert geometry == [(2 * layer_input_shape(i, 128)[1],) * 2 for i in range(N_LAYERS)]
    for path in sorted(EXTERNAL.glob("lut_*.json")):
        raw = json.loads(path.read_text())
        layers = [raw["layers"][f"layer_{i}"] for i in range(N_LAYERS)]
        assert [(la["H_out"], la["W_out"]) for la in layers] == geometry, path.name
        assert [(la["C_in"], la["C_out"]) for la in layers] == list(CHANNELS), path.name
    assert L.expected_geometry(64)[0] == (4, 4)
    with pytest.raises(ValueError, match="multiple of 32"):
        L.expected_geometry(100)


def test_lut_of_another_space_and_resolution_lists_what_differs(capsys):
    """The original Seg-NAS LUTs (480x640, 9 ops, widths 25..125): named as such, not 'unknown width 25'."""
    path = FIXTURES / "lut_segnas_480x640.json"
    with pytest.raises(L.LUTError) as err:
        L.load_lut(path, resolution=128)
    text = str(err.value)
    assert text.startswith(f"{path}: external LUT of SyntheticOrin (Seg-NAS schema) belongs to another search "
                           "space and/or resolution")
    assert "widths: found [25, 50, 75, 100, 125], expected [50, 75, 100]" in text
    assert "ops: extra Conv3x3_SE, DWSep3x3_SE (found 9 ops, expected 7)" in text
    assert "resolution: input 480x640 is not square" in text and "the run uses 128x128" in text
    assert ("output geometry (H_out x W_out per layer): found 30x40, 60x80, 120x160, 240x320, 480x640, "
            "expected 8x8, 16x16, 32x32, 64x64, 128x128") in text
    assert "unknown width" not in text
    assert main(["lut", "check", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert err_text.startswith(f"linas: error: {path}: external LUT") and "widths: found [25" in err_text
    assert "Traceback" not in err_text


@pytest.mark.parametrize("edit, expected", [
    (lambda raw: raw["layers"]["layer_2"].update(H_out=16, W_out=16),
     "output geometry (H_out x W_out per layer): found 8x8, 16x16, 16x16, 64x64, 128x128, expected 8x8, 16x16, "
     "32x32, 64x64, 128x128 for its own input 128x128"),
    (lambda raw: raw["layers"]["layer_0"].update(C_in=2048),
     "channels (C_in->C_out per layer): found 2048->512, 512->256"),
    (lambda raw: raw["layers"].update(layer_5=copy.deepcopy(raw["layers"]["layer_4"])),
     "layer count: found 6, expected 5"),
    (lambda raw: [layer["ops"].pop(k) for layer in raw["layers"].values() for k in list(layer["ops"])
                  if k.startswith("EdgeConv")],
     "ops: missing EdgeConv (found 6 ops, expected 7)"),
    (lambda raw: raw.update(input_size=256),
     "output geometry (H_out x W_out per layer): found 8x8, 16x16, 32x32, 64x64, 128x128, expected 16x16"),
])
def test_external_lut_of_another_space(tmp_path, edit, expected):
    path = _external(tmp_path, edit)
    with pytest.raises(L.LUTError, match="lut_orin.json: external LUT of Orin .* another search space") as err:
        L.load_lut(path)
    assert expected in str(err.value)


def test_external_other_resolution_and_space_lists_both(tmp_path):
    path = _external(tmp_path, lambda raw: raw["layers"]["layer_0"].update(C_in=2048))
    with pytest.raises(L.LUTError) as err:
        L.load_lut(path, resolution=256)
    assert "resolution: input 128x128, the run uses 256x256" in str(err.value)
    assert "expected 16x16, 32x32, 64x64, 128x128, 256x256 at the run's 256 px" in str(err.value)


def test_our_lut_geometry_and_channels_checked(tmp_path):
    data = fake_lut()
    data["layers"]["layer_3"]["h_out"] = 32
    with pytest.raises(L.LUTError, match="another search space and/or resolution") as err:
        L.load_lut(_write(tmp_path, data))
    assert ("output geometry (h_out x w_out of layer_0, layer_1, layer_2, layer_3, layer_4): found 8x8, 16x16, "
            "32x32, 32x64, 128x128, expected 8x8, 16x16, 32x32, 64x64, 128x128 for its resolution 128"
            ) in str(err.value)
    data = fake_lut()
    data["layers"]["layer_1"]["c_in"] = 640
    with pytest.raises(L.LUTError, match=r"channels \(c_in->c_out of layer_0, .*\): found 1024->512, 640->256"):
        L.load_lut(_write(tmp_path, data))
    data = fake_lut()
    data["space"]["ops"] = data["space"]["ops"] + ["Conv3x3_SE"]
    data["space"]["widths"] = [25, 50, 75, 100, 125]
    with pytest.raises(L.LUTError) as err:
        L.load_lut(_write(tmp_path, data))
    assert "ops: extra Conv3x3_SE" in str(err.value) and "widths: found [25, 50, 75, 100, 125]" in str(err.value)
    data = fake_lut()
    del data["layers"]["layer_2"]["w_out"]
    with pytest.raises(L.LUTError, match="lut.json: layer_2 is missing 'w_out'"):
        L.load_lut(_write(tmp_path, data))


def test_external_missing_std_is_an_error(tmp_path):
    path = _external(tmp_path, lambda raw: raw["layers"]["layer_2"]["ops"]["DWSep5x5_w75"].pop("std_ms"))
    with pytest.raises(L.LUTError, match=r"lut_orin.json: layers.layer_2.ops.DWSep5x5_w75 is missing 'std_ms'"):
        L.load_lut(path)


def test_our_lut_missing_stats_field_is_an_error(tmp_path):
    data = fake_lut()
    del data["layers"]["layer_1"]["projected"]["Conv5x5_w75"]["median_ms"]
    with pytest.raises(L.LUTError, match=r"lut.json: layer_1.projected.Conv5x5_w75 is missing 'median_ms'"):
        L.load_lut(_write(tmp_path, data))
    data = fake_lut()
    del data["fixed"]["head"]["std_ms"], data["fixed"]["head"]["n"]
    with pytest.raises(L.LUTError, match=r"lut.json: fixed.head is missing 'std_ms', 'n'"):
        L.load_lut(_write(tmp_path, data))


@pytest.mark.parametrize("value, problem", [
    (float("nan"), "nan is not finite"),
    (float("inf"), "inf is not finite"),
    (-0.5, "-0.5 is negative"),
    ("1.25", "'1.25' is not a number (a JSON string)"),
    (None, "None is not a number (a JSON null)"),
    (True, "True is not a number (a JSON boolean)"),
])
def test_bad_latency_values(tmp_path, value, problem):
    data = fake_lut()
    data["layers"]["layer_4"]["op_only"]["EdgeConv_w50"]["mean_ms"] = value
    with pytest.raises(L.LUTError, match="lut.json: layer_4.op_only.EdgeConv_w50.mean_ms = ") as err:
        L.load_lut(_write(tmp_path, data))
    assert problem in str(err.value)

    def edit(raw):
        raw["layers"]["layer_0"]["ops"]["Conv7x7_w100"]["std_ms"] = value

    with pytest.raises(L.LUTError, match="lut_orin.json: layers.layer_0.ops.Conv7x7_w100.std_ms = ") as err:
        L.load_lut(_external(tmp_path, edit))
    assert problem in str(err.value)


def test_bad_counts_and_pairs(tmp_path):
    data = fake_lut()
    data["layers"]["layer_0"]["op_only"]["Conv3x3_w50"]["n"] = 2.5
    with pytest.raises(L.LUTError, match=r"layer_0.op_only.Conv3x3_w50.n = 2.5 is not a count"):
        L.load_lut(_write(tmp_path, data))
    data = fake_lut()
    data["pairs"]["entries"][1]["interaction_ms"] = float("nan")
    with pytest.raises(L.LUTError, match=r"lut.json: pairs.entries\[1\].interaction_ms = nan is not finite"):
        L.load_lut(_write(tmp_path, data))
    data = fake_lut()
    del data["pairs"]["entries"][0]["b"]
    with pytest.raises(L.LUTError, match=r"lut.json: pairs.entries\[0\] is missing 'b'"):
        L.load_lut(_write(tmp_path, data))
    data = fake_lut()
    data["pairs"]["entries"].append({**data["pairs"]["entries"][0], "interaction_ms": 9.0})
    with pytest.raises(L.LUTError, match=r"lut.json: pairs.entries\[3\] repeats pairs.entries\[0\] \(layer 0, "
                                         r"Conv3x3_w50 then Conv3x3_w75\)"):
        L.load_lut(_write(tmp_path, data))
    data["pairs"]["entries"][3]["a"] = "Conv3x3_w050"  # the same choice, spelled otherwise
    with pytest.raises(L.LUTError, match=r"pairs.entries\[3\] repeats pairs.entries\[0\] \(layer 0, Conv3x3_w050 then"):
        L.load_lut(_write(tmp_path, data))


@pytest.mark.parametrize("text, message", [
    ('{\n  "schema": "linas-lut",\n  "layers": {,\n}',
     r"not valid JSON \(line 3, column 14\): Expecting property name"),
    ("", "empty file, not a LUT"),
    ("  \n\n", "empty file, not a LUT"),
    ("[1, 2]", "a LUT must be a JSON object at the top level, got a JSON array"),
    ('"lut"', "a LUT must be a JSON object at the top level, got a JSON string"),
    ("null", "a LUT must be a JSON object at the top level, got a JSON null"),
    ('{"schema": "linas-lut", "layers": {"layer_0": {}, "layer_0": {}}}',
     r"key 'layer_0' given twice in one object \(each entry once"),
])
def test_unreadable_files(tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(L.LUTError, match=f"bad.json: {message}"):
        L.load_lut(path)
    assert main(["lut", "check", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"linas: error: {path}: ")


def test_not_utf8_and_directory(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"hardware": "\xe9"}')
    with pytest.raises(L.LUTError, match="latin1.json: not valid JSON \\(not UTF-8 text"):
        L.load_lut(path)
    with pytest.raises(L.LUTError, match=f"{tmp_path}: is a directory, not a LUT file"):
        L.load_lut(tmp_path)
    with pytest.raises(L.LUTError, match="nope.json: LUT file not found"):
        L.load_lut(tmp_path / "nope.json")


def test_cli_build_cuda_target_without_cuda(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "cuda.json"
    for target in ("cuda-fp16", "cuda-fp32-graph"):
        assert main(["lut", "build", "--target", target, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == (f"linas: error: target {target} needs a CUDA GPU, and torch sees none "
                       "(torch.cuda.is_available() is False)\n")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_build_bad_arguments(tmp_path, capsys):
    assert main(["lut", "build", "--target", "gpu-fp16", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("linas: error: unknown target 'gpu-fp16'; expected one of cpu-torch-<N>t, cpu-ort-<N>t")
    assert "cuda-fp32, cuda-fp16, cuda-fp32-graph, cuda-fp16-graph" in err
    out = str(tmp_path / "x.json")
    assert main(["lut", "build", "--target", "cpu-torch-1t", "--resolution", "100", "--out", out]) == 2
    assert "target cpu-torch-1t: resolution 100 must be a positive multiple of 32" in capsys.readouterr().err
    assert main(["lut", "build", "--target", "cpu-torch-1t", "--out", str(tmp_path)]) == 2
    assert f"LUT output path {tmp_path} is a directory" in capsys.readouterr().err
    assert main(["lut", "build", "--target", "cpu-torch-1t", "--choices", "3,21", "--out", out]) == 2
    assert "target cpu-torch-1t: choices [21] out of range 0..20" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("target", ["cuda-fp16", "cuda-fp32-graph"])
def test_cli_build_tiny_cuda_lut(tmp_path, target):
    out = tmp_path / f"{target}_64px.json"
    args = ["lut", "build", "--target", target, "--resolution", "64", "--out", str(out), "--warmup", "1",
            "--repeats", "3", "--max-retries", "0", "--choices", "9", "--pairs-per-slot", "1"]
    assert main(args) == 0
    lut = L.load_lut(out, resolution=64)
    assert lut["device"] == "cuda" and lut["graph"] == target.endswith("graph")
    assert lut["layers"]["layer_2"]["projected"]["DWSep3x3_w50"]["mean_ms"] > 0


def test_calibrate_fits_the_anchors_and_round_trips(tmp_path):
    lut = L.calibrate(fake_lut(), ANCHORS, [100.0, 150.0, 200.0], [230.0, 305.0, 380.0], "projected")
    cal = lut["calibration"]
    assert (cal["fit"], cal["base"]) == ("affine", "projected")
    assert cal["slope"] == pytest.approx(1.5) and cal["intercept"] == pytest.approx(80.0)
    assert L.load_lut(_write(tmp_path, lut), resolution=128)["calibration"] == cal
    assert "calibration" not in fake_lut()  # a copy: the input LUT is left alone


def test_calibrate_falls_back_to_an_offset_when_the_slope_is_not_positive():
    cal = L.calibrate(fake_lut(), ANCHORS[:2], [100.0, 200.0], [260.0, 240.0], "projected")["calibration"]
    assert cal["slope"] == 1.0 and cal["intercept"] == pytest.approx(100.0) and cal["fit"].startswith("offset")


def test_calibrate_refuses_decoder_only_and_too_few_anchors():
    ext = {**fake_lut(), "scope": "decoder-only"}
    with pytest.raises(L.LUTError, match="decoder-only"):
        L.calibrate(ext, ANCHORS[:2], [1.0, 2.0], [1.0, 2.0], "op_only")
    with pytest.raises(L.LUTError, match=">= 2 anchors"):
        L.calibrate(fake_lut(), ["x"], [1.0], [1.0], "projected")


@pytest.mark.parametrize("change, message", [
    ({"slope": 0.0}, "slope is 0"), ({"slope": float("nan")}, "slope = nan is not finite"),
    ({"base": "calibrated"}, "base = .calibrated."), ({"anchor_ms": [1.0]}, "same length"),
    ({"anchor_base_ms": [1.0, -2.0]}, "anchor_base_ms has a value that is negative"),
    ({"anchors": [ANCHORS[0], "x"]}, r"calibration.anchors\[1\]: "),
])
def test_bad_calibration_block_is_refused_naming_the_file(tmp_path, change, message):
    data = fake_lut(calibrated=True)
    data["calibration"].update(change)
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(data).replace("NaN", "NaN"))
    with pytest.raises(L.LUTError, match=message) as err:
        L.load_lut(path, resolution=128)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("args, message", [
    (["lut", "build", "--target", "cpu-torch-1t", "--out", "x.json", "--choices", "a,b"],
     "argument --choices: expected comma-separated whole numbers >= 0, got 'a,b'"),
    (["lut", "build", "--target", "cpu-torch-1t", "--out", "x.json", "--pairs-per-slot", "-1"],
     "argument --pairs-per-slot: expected a whole number >= 0, got '-1'"),
    (["lut", "build", "--target", "cpu-torch-1t", "--out", "x.json", "--max-cv", "nan"],
     "argument --max-cv: expected a finite number > 0, got 'nan'"),
    (["machine", "check", "--seconds", "nan"], "argument --seconds: expected a finite number > 0, got 'nan'"),
    (["bench", "build", "--workers", "0"], "argument --workers: expected a whole number >= 1, got '0'"),
    (["bench", "speed", "--threads", "x"], "argument --threads: expected comma-separated whole numbers >= 0"),
])
def test_bad_numeric_arguments_are_refused_by_name(args, message, capsys):
    with pytest.raises(SystemExit) as code:
        main(args)
    assert code.value.code == 2 and message in capsys.readouterr().err
