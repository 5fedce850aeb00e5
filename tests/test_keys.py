"""Content keys: stable across processes, sensitive to content, blind to order; config key fields."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from linas_lib.config import SearchConfig, SupernetConfig, load_profile
from linas_lib.keys import content_hash, key_fields
from linas_lib.paths import project_root

# What each process hashes: numpy arrays, a tensor, a dataclass, nested containers, string keys
# (whose order a salted hash() would change from one process to the next).
MIXED = textwrap.dedent("""
    import dataclasses
    import numpy as np
    import torch
    from linas_lib.keys import content_hash

    @dataclasses.dataclass(frozen=True)
    class Settings:
        lr: float = 1e-3
        widths: tuple = (50, 75, 100)
        name: str = "binarised"

    obj = {
        "arr": np.arange(12, dtype=np.float32).reshape(3, 4),
        "ints": np.array([[1, -2], [3, 4]], dtype=np.int64),
        "tensor": torch.linspace(0, 1, 7, dtype=torch.float64),
        "half": torch.ones(2, 3, dtype=torch.float16),
        "cfg": Settings(),
        "nested": {"zeta": [None, True, 2.5, "x"], "alpha": {"b": 1, "a": 2}},
        "np_scalar": np.float32(0.25),
    }
    print(content_hash(obj))
""")
# The key of MIXED when key_fields was added to keys.py.
MIXED_KEY = "054bd16f6c8d47cd"


def _run(code: str, hash_seed: str, *args: str, timeout: int = 120) -> str:
    """stdout of ``python -c code *args`` in a fresh process with its own ``PYTHONHASHSEED``."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                         cwd=project_root(), timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_content_hash_is_the_same_in_separate_processes():
    first = _run(MIXED, "0").strip()
    second = _run(MIXED, "4242").strip()
    assert first == second and len(first) == 16
    namespace: dict = {}
    exec(compile(MIXED.replace("print(content_hash(obj))", "key = content_hash(obj)"), "<mixed>", "exec"), namespace)
    assert namespace["key"] == first
    assert first == MIXED_KEY  # pinned: a change of the canonical form changes every cache key


def test_different_bytes_dtypes_and_shapes_give_different_keys():
    base = np.zeros(4, dtype=np.float32)
    variants = [
        base,
        np.array([0, 0, 0, 1], dtype=np.float32),  # other bytes
        np.zeros(4, dtype=np.float64),  # other dtype
        np.zeros(4, dtype=np.int32),  # other dtype, same byte count
        np.zeros((2, 2), dtype=np.float32),  # other shape, same bytes
        np.zeros((4, 1), dtype=np.float32),
        torch.zeros(4, dtype=torch.float16),
        torch.zeros(2, 2, dtype=torch.float16),
    ]
    keys = [content_hash({"x": v}) for v in variants]
    assert len(set(keys)) == len(keys)
    # the same content as array or tensor is the same content
    assert content_hash(torch.zeros(4)) == content_hash(np.zeros(4, dtype=np.float32))
    assert content_hash(np.asfortranarray(np.arange(6).reshape(2, 3))) == content_hash(np.arange(6).reshape(2, 3))
    assert content_hash([1, 2]) != content_hash([2, 1])  # sequences keep their order
    assert content_hash({"a": 1}) != content_hash({"a": 1.5})


def test_key_order_does_not_matter():
    a = {"lr": 0.1, "epochs": 3, "nested": {"x": np.ones(2), "y": [1, {"q": 1, "p": 2}]}}
    b = {"nested": {"y": [1, {"p": 2, "q": 1}], "x": np.ones(2)}, "epochs": 3, "lr": 0.1}
    assert content_hash(a) == content_hash(b)


@pytest.mark.parametrize("value", [object(), lambda: 0, {1, 2}, b"bytes", SupernetConfig, 1j])
def test_values_without_a_canonical_spelling_raise_type_error(value):
    with pytest.raises(TypeError, match="content_hash"):
        content_hash({"v": value})


# ------------------------------------------------------------------ key fields


@dataclasses.dataclass(frozen=True)
class _Inner:
    size: int = 3
    note: str = dataclasses.field(default="", metadata={"key": False})


@dataclasses.dataclass(frozen=True)
class _Outer:
    lr: float = 0.1
    plots: int = dataclasses.field(default=2, metadata={"key": False})
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    inners: tuple = (_Inner(1), _Inner(2, "x"))
    flagged: bool = dataclasses.field(default=True, metadata={"key": True, "doc": "explicitly in"})


def test_key_fields_leave_out_key_false_and_take_in_new_fields():
    fields = key_fields(_Outer())
    assert fields == {"lr": 0.1, "inner": {"size": 3}, "inners": [{"size": 1}, {"size": 2}], "flagged": True}
    assert content_hash(key_fields(_Outer(plots=9, inner=_Inner(3, "y")))) == content_hash(fields)
    assert content_hash(key_fields(_Outer(lr=0.2))) != content_hash(fields)

    # a field added later enters the key without anyone listing it
    grown = dataclasses.make_dataclass("_Grown", [("batch", int, dataclasses.field(default=8))], bases=(_Outer,),
                                       frozen=True)
    assert key_fields(grown())["batch"] == 8
    assert content_hash(key_fields(grown(batch=4))) != content_hash(key_fields(grown()))

    with pytest.raises(TypeError):
        key_fields({"lr": 0.1})
    with pytest.raises(TypeError):
        key_fields(_Outer)


def test_unless_default_fields_enter_the_key_only_when_changed():
    cfg = SupernetConfig()
    assert "latency_penalty" not in key_fields(cfg)
    assert key_fields(dataclasses.replace(cfg, latency_penalty="range"))["latency_penalty"] == "range"
    assert "replica" not in key_fields(cfg) and key_fields(dataclasses.replace(cfg, replica=1))["replica"] == 1


def test_explicit_fields_are_left_to_the_function_that_builds_the_key():
    """``supernet.calr_search`` changes training, so it is not ``key: False``; supernet_key names it itself."""
    cfg = SupernetConfig(calr=True, sampling="sandwich", epochs=2, search_mode="binarised")
    assert "calr_search" not in key_fields(cfg) and "calr_search" not in key_fields(dataclasses.replace(cfg, calr_search=False))
    explicit = [f.name for f in dataclasses.fields(SupernetConfig) if f.metadata.get("key") == "explicit"]
    assert explicit == ["calr_search"]


def test_config_key_fields():
    assert set(key_fields(SupernetConfig())) == {
        "warmup_epochs", "epochs", "search_mode", "batch_size", "lr_weights", "lr_alpha", "latency_lambda",
        "tau_max", "tau_min", "ws_val_images", "sampling", "sandwich_random", "calr", "momentum_bins",
        "bn_recalib_batches", "alpha_val_share"}
    left_out = {f.name for f in dataclasses.fields(SearchConfig)} - set(key_fields(SearchConfig()))
    assert left_out == {"finetune_topk", "finetune_epochs", "choice_topk", "choice_epochs", "choice_retest", "loss_arm", "near_smallest_pairs", "near_check_archs", "hv_ref_accuracy",
                        "hv_ref_miou_loss", "hv_ref_latency", "c3_images", "target_seeds", "seeds", "methods",
                        "oracle_evals", "oracle_seed", "long_methods", "long_evals", "confirm_methods", "confirm_seeds", "final_seeds",
                        "final_build", "design_seeds", "ws_sweep"}


def test_run_folder_follows_the_search_key_fields():
    from linas_lib.search.report import run_folder

    supernet = SimpleNamespace(key="abc", weights_digest="w1")
    latency = SimpleNamespace(target_names=("a", "b"), budgets_ms=np.array([1.0, 2.0]), variant="interaction")
    folder = lambda search, net=supernet: run_folder(SimpleNamespace(search=search), net, latency)  # noqa: E731
    base = SearchConfig()
    assert folder(dataclasses.replace(base, hv_ref_latency=2.0, c3_images=5, finetune_topk=1)) == folder(base)
    assert folder(dataclasses.replace(base, eval_budget=7)) != folder(base)
    assert folder(dataclasses.replace(base, near_contexts=2)) != folder(base)
    # the same supernet key trained again (another CPU) with other weights: other runs
    assert folder(base, SimpleNamespace(key="abc", weights_digest="w2")) != folder(base)


# ------------------------------------------------------------------ the supernet key across processes

SMOKE_RUN = textwrap.dedent("""
    import dataclasses, json, logging, sys
    from linas_lib.config import load_profile
    from linas_lib.encoder.features import run_features
    from linas_lib.supernet import train as T

    profile = load_profile("smoke")
    features = run_features(profile, 0)
    latency = T.latency_terms(T.search_latency_model(profile), profile.supernet.latency_penalty)
    key = T.supernet_key(profile, 0, features, latency)
    out = {"key": key}
    if sys.argv[1] == "load":
        def no_training(*args, **kwargs):
            raise AssertionError("trained again instead of loading the checkpoint")
        T.run_epoch = no_training
        # settings outside the key: the same trained supernet, carrying this profile's settings
        other = dataclasses.replace(profile, supernet=dataclasses.replace(
            profile.supernet, standalone_lr=0.123, pad_steps=5))
        ts_other = T.trained_supernet(other, 0)
        out["other_key"], out["other_lr"] = ts_other.key, ts_other.cfg.standalone_lr
    ts = T.trained_supernet(profile, 0)
    out.update(ts_key=ts.key, history=ts.history, lr=ts.cfg.standalone_lr)
    print("RESULT " + json.dumps(out))
""")


def _result(stdout: str) -> dict:
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_supernet_key_and_checkpoint_are_shared_across_processes(tmp_path, monkeypatch):
    """Two processes (smoke profile, isolated cache): one key; the second loads what the first trained."""
    from linas_lib.latency.targets import target_lut_path

    monkeypatch.setenv("LINAS_CACHE_DIR", str(tmp_path / "cache"))  # inherited by the subprocesses
    profile = load_profile("smoke")
    # local smoke targets would be measured here (tens of seconds, and timings differ between
    # processes): seed the isolated cache with the committed LUTs of these targets instead
    for target in profile.latency.targets:
        if target.kind == "local" and not target.lut:
            committed = project_root() / "results" / "luts" / "cpu" / f"{target.name}_{profile.data.resolution}px.json"
            if not committed.is_file():
                pytest.skip(f"no committed LUT {committed}")
            shutil.copyfile(committed, target_lut_path(profile, target))

    first = _result(_run(SMOKE_RUN, "1", "train"))
    checkpoints = list((tmp_path / "cache" / "supernet").glob("supernet_*.pt"))
    assert [p.name for p in checkpoints] == [f"supernet_{first['key']}.pt"]
    mtime = checkpoints[0].stat().st_mtime_ns
    second = _result(_run(SMOKE_RUN, "2", "load"))
    assert first["key"] == first["ts_key"] == second["key"] == second["ts_key"] == second["other_key"]
    assert second["history"] == first["history"] and len(first["history"]) == 2
    assert checkpoints[0].stat().st_mtime_ns == mtime
    assert second["other_lr"] == 0.123 and second["lr"] == first["lr"] == profile.supernet.standalone_lr
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=False)
    # a finished run keeps what its readers use: no optimiser moments, generators or average
    assert state["done"] and set(state) == {"key", "done", "model", "history", "weight_steps", "choice_updates"}


def test_a_failed_write_names_the_file_and_the_free_space_and_leaves_no_temp(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from linas_lib.keys import WriteError, atomic_torch_save, atomic_write_text

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**12, 10**12 - 3 * 10**8, 3 * 10**8))

    def full_disk(obj, f):
        raise RuntimeError("basic_ios::clear: iostream error")  # what torch.save says on a full disk

    monkeypatch.setattr(torch, "save", full_disk)
    target = tmp_path / "cache" / "supernet_k.pt"
    with pytest.raises(WriteError, match=r"could not write .*supernet_k\.pt: basic_ios.*0\.30 GB free .*LINAS_CACHE_DIR"):
        atomic_torch_save({"a": 1}, target)
    assert list(target.parent.iterdir()) == []  # no temporary file left
    with pytest.raises(TypeError):  # not an I/O error: passed through unchanged
        atomic_write_text(tmp_path / "x.txt", 3)
    assert isinstance(WriteError("x"), OSError)


def test_load_cache_json_rebuilds_from_anything_unusable(tmp_path, caplog):
    from linas_lib.keys import load_cache_json

    def object_only(data):
        return "" if isinstance(data, dict) else "not an object"

    path = tmp_path / "cache.json"
    assert load_cache_json(path, "test cache", object_only) is None  # missing: silently None
    for content, why in [('{"a": 1', "not valid JSON"), ("[1]", "not an object")]:
        path.write_text(content)
        caplog.clear()
        assert load_cache_json(path, "test cache", object_only) is None
        assert "test cache" in caplog.text and "cache.json" in caplog.text and why in caplog.text
    path.write_bytes(b'{"\xff": 1}')
    assert load_cache_json(path, "test cache", object_only) is None and "not UTF-8 text" in caplog.text
    path.write_text('{"a": 1}')
    assert load_cache_json(path, "test cache", object_only) == {"a": 1}
