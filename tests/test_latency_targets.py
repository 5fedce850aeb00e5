"""Profile targets -> LUTs: every bad ``lut:`` path is one clear error naming the target and path."""

from __future__ import annotations

import json
import logging
import re

import pytest

from linas_lib.config import ConfigError, load_profile
from linas_lib.latency import lut as L
from linas_lib.latency import targets as T
from linas_lib.paths import project_root

ORIN = project_root() / "results" / "luts" / "external" / "seg-nas-128px" / "lut_orin.json"
RTX4090 = ORIN.with_name("lut_rtx4090.json")
CPU_TORCH_1T = project_root() / "results" / "luts" / "cpu" / "cpu-torch-1t_128px.json"


def _profile(tmp_path, *targets: str, name: str = "p"):
    """A profile whose latency.targets are the given YAML flow mappings."""
    lines = ["latency:", "  targets:"] + [f"    - {t}" for t in targets]
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_profile(path)


def _external(name: str, lut, optional: bool = False) -> str:
    extra = ", optional: true" if optional else ""
    return f"{{name: {name}, kind: external, scope: decoder-only, budget_ms: 30.0, lut: {lut}{extra}}}"


def test_committed_external_target_loads(tmp_path):
    profile = _profile(tmp_path, _external("orin", ORIN))
    luts = T.load_luts(profile)
    assert list(luts) == ["orin"] and luts["orin"]["runtime"] == "external"
    assert T.latency_model(profile).target_names == ("orin",)


def test_missing_lut_names_target_and_path(tmp_path):
    missing = tmp_path / "luts" / "lut_orin.json"
    profile = _profile(tmp_path, _external("orin", missing))
    with pytest.raises(ValueError) as err:
        T.load_luts(profile)
    assert str(err.value) == f"profile 'p': target 'orin': LUT file {missing} does not exist"


def test_missing_lut_among_others_names_its_path(tmp_path):
    missing = tmp_path / "lut_odroid.json"
    profile = _profile(tmp_path, _external("orin", ORIN), _external("odroid", missing))
    with pytest.raises(ValueError, match=f"target 'odroid': LUT file {missing} does not exist"):
        T.latency_model(profile)
    with pytest.raises(ValueError, match=f"target 'odroid': LUT file {missing} does not exist"):
        T.latency_model(profile, targets=["odroid"])


def test_lut_path_that_is_a_directory(tmp_path):
    folder = tmp_path / "luts"
    folder.mkdir()
    for optional in (False, True):
        profile = _profile(tmp_path, _external("orin", folder, optional))
        with pytest.raises(ValueError) as err:
            T.load_luts(profile)
        assert str(err.value) == f"profile 'p': target 'orin': LUT path {folder} is a directory, not a LUT file"


def test_unknown_kind_lists_kinds(tmp_path):
    with pytest.raises(ConfigError) as err:
        _profile(tmp_path, f"{{name: orin, kind: remote, budget_ms: 30.0, lut: {ORIN}}}")
    assert str(err.value) == (f"{tmp_path / 'p.yaml'}: latency.targets[0]: kind = 'remote' must be one of "
                              "local, gpu, external")


@pytest.mark.parametrize("target, differs", [
    ("{name: orin, kind: external, scope: decoder-only, budget_ms: 30.0, lut: %s}" % RTX4090,
     "it was measured for 'RTX4090'"),
    ("{name: orin, kind: external, scope: end-to-end, budget_ms: 30.0, lut: %s}" % ORIN,
     "it covers scope 'decoder-only', the target 'end-to-end'"),
    ("{name: cpu-torch-1t, kind: local, scope: decoder-only, budget_ms: 30.0, lut: %s}" % ORIN,
     "it is an external device table, the target is kind 'local'; it was measured for 'Orin'"),
    ("{name: cuda-fp16, kind: gpu, scope: decoder-only, budget_ms: 30.0, lut: %s}" % ORIN,
     "it is an external device table, the target is kind 'gpu'; it was measured for 'Orin'"),
    ("{name: cpu-torch-2t, kind: local, scope: end-to-end, budget_ms: 30.0, lut: %s}" % CPU_TORCH_1T,
     "it was measured for 'cpu-torch-1t'"),
    ("{name: cuda-fp16, kind: gpu, scope: end-to-end, budget_ms: 30.0, lut: %s}" % CPU_TORCH_1T,
     "it was measured for 'cpu-torch-1t'"),
])
def test_another_targets_lut_is_refused_naming_the_file_and_the_difference(tmp_path, target, differs):
    profile = _profile(tmp_path, target)
    with pytest.raises(L.LUTError, match=r": not the LUT of target '[\w-]+': .*" + re.escape(differs)):
        T.load_luts(profile)


@pytest.mark.parametrize("kind", ["gpu", "external"])
def test_a_lut_measured_on_ones_own_board_serves_a_target_of_any_name(tmp_path, kind):
    profile = _profile(tmp_path, f"{{name: myboard, kind: {kind}, scope: end-to-end, budget_ms: 300.0, "
                                 f"lut: {CPU_TORCH_1T}}}")
    assert T.load_luts(profile)["myboard"]["target"] == "cpu-torch-1t"  # the runtime configuration it was built with


def test_optional_missing_target_left_out_with_warning(tmp_path, caplog):
    missing = tmp_path / "cuda-fp16_128px.json"
    profile = _profile(tmp_path, _external("orin", ORIN),
                       f"{{name: cuda-fp16, kind: gpu, budget_ms: 20.0, lut: {missing}, optional: true}}")
    with caplog.at_level(logging.WARNING, logger="linas_lib.latency.targets"):
        luts = T.load_luts(profile)
    assert list(luts) == ["orin"]
    assert f"target cuda-fp16 has no LUT at {missing} yet (optional: left out)" in caplog.text
    assert T.latency_model(profile).target_names == ("orin",)


def test_only_optional_missing_target_left_names_the_path(tmp_path, caplog):
    missing = tmp_path / "cuda-fp16_128px.json"
    gpu = f"{{name: cuda-fp16, kind: gpu, budget_ms: 20.0, lut: {missing}, optional: true}}"
    with pytest.raises(ValueError) as err:
        T.latency_model(_profile(tmp_path, gpu))
    assert str(err.value) == (f"profile 'p': no target has a LUT -- cuda-fp16: {missing} does not exist "
                              "(optional: left out)")
    profile = _profile(tmp_path, _external("orin", ORIN), gpu)
    with pytest.raises(ValueError, match=f"no target has a LUT -- cuda-fp16: {missing} does not exist"):
        T.latency_model(profile, targets=["cuda-fp16"])


def test_unknown_target_filter(tmp_path):
    profile = _profile(tmp_path, _external("orin", ORIN))
    with pytest.raises(ValueError, match="profile 'p': unknown target\\(s\\) 'orn'; the profile has orin"):
        T.latency_model(profile, targets=["orn"])


def test_bad_lut_content_names_target_and_file(tmp_path):
    raw = json.loads(ORIN.read_text())
    del raw["layers"]["layer_1"]["ops"]["EdgeConv_w50"]["std_ms"]
    bad = tmp_path / "lut_orin.json"
    bad.write_text(json.dumps(raw))
    profile = _profile(tmp_path, _external("orin", bad))
    with pytest.raises(L.LUTError) as err:
        T.load_luts(profile)
    assert str(err.value) == (f"profile 'p': target 'orin': {bad}: layers.layer_1.ops.EdgeConv_w50 is missing "
                              "'std_ms' (every entry needs mean_ms, std_ms)")


def test_lut_cache_key_is_unchanged_by_a_later_setting_at_its_default():
    from linas_lib.latency.report import warm_profile
    from linas_lib.latency.targets import lut_cache_key

    smoke = load_profile("smoke")
    target = next(t for t in smoke.latency.targets if t.name == "cpu-torch-1t")
    warm = warm_profile(smoke)
    assert lut_cache_key(warm, target) == "f104c742bcf3"  # the key of smoke's LUT before evict_mib existed
    assert lut_cache_key(smoke, target) != lut_cache_key(warm, target)  # evict_mib 4: another LUT
