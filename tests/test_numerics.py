"""Portable numerics (linas_lib.numerics) and its check (linas_lib.analysis.numerics_check)."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys

import pytest

from linas_lib import numerics
from linas_lib.analysis import numerics_check as nc
from linas_lib.paths import cache_dir
from linas_lib.provenance import write_csv, write_json

X86 = platform.machine().lower() in numerics.X86_64


def test_mode_defaults_to_native_and_refuses_unknown_values(monkeypatch):
    monkeypatch.delenv(numerics.ENV_VAR, raising=False)
    assert numerics.mode() == "native"
    monkeypatch.setenv(numerics.ENV_VAR, " Portable ")
    assert numerics.mode() == "portable"
    monkeypatch.setenv(numerics.ENV_VAR, "fast")
    with pytest.raises(numerics.NumericsError, match=r"LINAS_NUMERICS='fast' is not a numerics mode; expected one of native, portable"):
        numerics.mode()


def test_portable_caches_live_apart(monkeypatch, tmp_path):
    monkeypatch.setenv("LINAS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(numerics.ENV_VAR, "native")
    assert cache_dir("supernet") == tmp_path / "supernet"
    monkeypatch.setenv(numerics.ENV_VAR, "portable")
    assert cache_dir("supernet") == tmp_path / "portable" / "supernet"


def _python(code: str, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in nc._CONTROLLED} | env
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=False)


@pytest.mark.skipif(not X86, reason="portable numerics pins x86-64 kernels")
def test_portable_mode_pins_the_kernels_and_refuses_a_late_start():
    done = _python("import linas_lib, torch, os; print(torch.backends.cpu.get_cpu_capability(), "
                   "torch.backends.mkldnn.enabled, os.environ['MKL_CBWR'])", LINAS_NUMERICS="portable")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DEFAULT", "False", "COMPATIBLE"]
    nnpack = _python("import linas_lib, torch; print(torch._C._get_nnpack_enabled())", LINAS_NUMERICS="portable")
    assert nnpack.stdout.split() == ["False"], nnpack.stderr
    late = _python("import torch; torch.ones(2) + 1; import linas_lib", LINAS_NUMERICS="portable")
    assert late.returncode != 0
    assert "torch already runs its" in late.stderr and "before Python starts" in late.stderr


@pytest.mark.skipif(not X86, reason="portable numerics pins x86-64 kernels")
def test_portable_mode_refuses_an_mkl_branch_chosen_before_the_pins():
    # torch.mm on empty tensors reaches MKL without any ATen vector kernel: only MKL's own
    # branch shows the late start
    code = "import torch; a = torch.empty(8, 8); torch.mm(a, a); import linas_lib"
    late = _python(code, LINAS_NUMERICS="portable")
    assert late.returncode != 0
    assert "MKL already runs its code branch" in late.stderr and "not COMPATIBLE (3)" in late.stderr
    released = _python(code + "; print('ok')", LINAS_NUMERICS="portable", LINAS_NUMERICS_RELEASE="mkl")
    assert released.returncode == 0 and released.stdout.split() == ["ok"], released.stderr
    pinned = _python("import linas_lib, torch; from linas_lib import numerics; print(numerics.mkl_branch(torch))",
                     LINAS_NUMERICS="portable")
    assert pinned.stdout.split() == ["3"], pinned.stderr


def test_native_mode_changes_nothing():
    done = _python("import linas_lib, torch, os; print(torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled(), "
                   "os.environ.get('MKL_CBWR', '-'))", LINAS_NUMERICS="native")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "-"]


def test_released_pins_are_named_and_checked(monkeypatch):
    monkeypatch.setenv(numerics.RELEASE_VAR, "aten, oneDNN")
    assert numerics.released() == ("aten", "onednn")
    monkeypatch.setenv(numerics.RELEASE_VAR, "aten,gpu")
    with pytest.raises(numerics.NumericsError, match="LINAS_NUMERICS_RELEASE: unknown pin.s. gpu; expected some of aten, mkl, onednn, nnpack"):
        numerics.released()


@pytest.mark.skipif(not X86, reason="portable numerics pins x86-64 kernels")
def test_portable_training_is_the_same_on_a_simulated_older_cpu():
    rows, inputs = nc.run_check("smoke", nc.CheckSettings(epochs=1, repeats=1), cpus=("this", "sse4"))
    figures = nc.summarise(rows)
    assert len(rows) == 8 and len(inputs) == 16
    portable = [r for r in rows if r["arm"] == "portable"]
    assert {(r["cpu_capability"], r["mkldnn"], r["nnpack"]) for r in portable} == {("DEFAULT", False, False)}
    assert {r["mkldnn"] for r in rows if r["arm"] == "release_onednn"} == {True}
    if not figures["control_moved"]:
        pytest.skip("the simulated CPU does not move native numbers on this machine: nothing to show")
    assert figures["portable_identical"], rows
    assert figures["pin_needed.aten"] or figures["pin_needed.onednn"], rows  # a released pin moves again


def test_summary_counts_digests_and_times_this_cpu_only():
    rows = [{"arm": "native", "simulated_cpu": "this", "digest": "a", "train_seconds": 1.0},
            {"arm": "native", "simulated_cpu": "this", "digest": "a", "train_seconds": 3.0},
            {"arm": "native", "simulated_cpu": "sse4", "digest": "b", "train_seconds": 9.0},
            {"arm": "portable", "simulated_cpu": "this", "digest": "c", "train_seconds": 4.0},
            {"arm": "portable", "simulated_cpu": "sse4", "digest": "c", "train_seconds": 9.0},
            {"arm": "release_aten", "simulated_cpu": "this", "digest": "d", "train_seconds": 4.0},
            {"arm": "release_aten", "simulated_cpu": "sse4", "digest": "d", "train_seconds": 4.0}]
    f = nc.summarise(rows)
    assert f["native.distinct_digests"] == 2 and f["portable.distinct_digests"] == 1
    assert f["native.train_s_mean"] == 2.0 and f["native.train_s_n"] == 2 and f["native.train_s_max"] == 3.0
    assert f["control_moved"] and f["portable_identical"] and f["portable_slowdown"] == 2.0
    assert f["pin_needed.aten"] is False and "pin_needed.onednn" not in f


def test_other_machines_compare_only_on_the_same_inputs_and_settings(tmp_path):
    settings = nc.CheckSettings()

    def saved(slug: str, cpu: str, inputs: str, digest: str, epochs: int = settings.epochs, torch: str = "2.x") -> None:
        prov = {"machine": {"cpu_id": cpu}, "packages": {"torch": torch}}
        summary = {"settings": dataclasses.asdict(dataclasses.replace(settings, epochs=epochs)), "inputs_digest": inputs}
        write_json(tmp_path / f"{slug}.json", summary, prov)
        write_csv(tmp_path / f"{slug}.csv", [{"arm": "portable", "digest": digest}, {"arm": "native", "digest": "n"}], prov)

    saved("a", "cpu A", "in1", "d1")
    saved("b", "cpu B", "in2", "d1")
    saved("c", "cpu C", "in1", "d1", epochs=9)
    saved("d", "cpu D", "in1", "d1", torch="1.x")
    saved("here", "cpu here", "in1", "d0")
    found = nc.other_machines(tmp_path, "cpu here", "in1", settings, "2.x")
    assert found == {"same_inputs": {"cpu A": ["d1"]}, "other_inputs": ["cpu B"]}


def test_machine_slug_is_a_file_name():
    assert nc.machine_slug("AuthenticAMD family 25 model 17 stepping 1") == "authenticamd-family-25-model-17-stepping-1"
    assert nc.machine_slug("") == "unknown"


@pytest.mark.skipif(not X86, reason="portable numerics pins x86-64 kernels")
def test_portable_taps_are_the_same_on_a_simulated_older_cpu():
    rows = nc.check_inputs("smoke", cpus=("this", "sse4"))
    figures = nc.summarise_inputs(rows)
    assert len(rows) == 4 and figures["inputs.portable.seconds_this_cpu"] > 0
    if figures["inputs.native.distinct_digests"] == 1:
        pytest.skip("the simulated CPU does not move the native encoder on this machine: nothing to show")
    assert figures["inputs.portable.distinct_digests"] == 1, rows
