"""The standalone benchmark table: selection, item keys, resume, scores, seed agreement, Dask driver."""

from __future__ import annotations

import concurrent.futures
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from linas_lib import provenance as provenance_module
from linas_lib.analysis import bench as B
from linas_lib.analysis.bench_speed import profile_training_step, speed_table
from linas_lib.analysis.bench_stats import (pair_contrast, pair_contrasts, projected_agreement, seed_agreement,
                                            split_half_tau, split_halves)
from linas_lib.cli import build_parser
from linas_lib.config import ConfigError, load_profile
from linas_lib.encoder.features import FeatureSplit
from linas_lib.latency.predict import LatencyModel
from linas_lib.losses import NonFiniteLossError
from linas_lib.metrics import MIoUMeter, class_iou_from_counts
from linas_lib.space import N_CHOICES, N_LAYERS, arch_string, choice_index
from linas_lib.supernet.standalone import lr_factor, new_decoder, recalibrate_bn, train_decoder

RES = 32
TAP_SHAPES = ((64, 16), (128, 8), (256, 4), (512, 2), (1024, 2))
TARGET = "raspberrypi5"  # an external target of the smoke profile
SMALL = arch_string([choice_index("DWSep3x3", 50)] * N_LAYERS)
SMALL2 = arch_string([choice_index("DWSep3x3", 50)] * (N_LAYERS - 1) + [choice_index("Conv3x3", 50)])


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    """No git subprocess per written file; native kernels (quicker than oneDNN on tiny tensors)."""
    monkeypatch.setattr(provenance_module, "git_sha", lambda: "test")
    with torch.backends.mkldnn.flags(enabled=False):
        yield


def fake_model(seed: int = 0) -> LatencyModel:
    """A one-target latency model with random positive tables (no LUT file)."""
    rng = np.random.default_rng(seed)
    return LatencyModel((TARGET,), np.array([1.0]), ("decoder-only",), "interaction",
                        rng.uniform(1, 10, (1, N_LAYERS, N_CHOICES)), np.array([2.0]),
                        rng.uniform(0, 1, (1, N_LAYERS - 1, N_CHOICES, N_CHOICES)))


def split_of(n: int, seed: int, nan: bool = False) -> FeatureSplit:
    gen = torch.Generator().manual_seed(seed)
    taps = tuple(torch.randn(n, c, s, s, generator=gen).half() for c, s in TAP_SHAPES)
    if nan:
        taps[4][0, 0, 0, 0] = float("nan")
    masks = (torch.rand(n, RES, RES, generator=gen) < 0.2).to(torch.uint8)
    return FeatureSplit(taps, masks, tuple(f"img{seed}_{i}" for i in range(n)))


def fake_features(profile, data_seed: int):
    """4 train / 2 val / 2 test images at 32 px with random taps."""
    splits = {"train": split_of(4, 10 * data_seed + 1), "val": split_of(2, 10 * data_seed + 2),
              "test": split_of(2, 10 * data_seed + 3)}
    return splits, "test-weights"


def nan_features(profile, data_seed: int):
    splits, wid = fake_features(profile, data_seed)
    return splits | {"train": split_of(4, 10 * data_seed + 1, nan=True)}, wid


def tiny_profile(**bench):
    base = load_profile("smoke")
    fields = dict(n_archs=2, seeds=(0, 1), epochs=1, lr=5e-3, schedule="constant", warmup_epochs=0, batch_size=2,
                  reference_target=TARGET, include=(SMALL,), latency_sample=50, pilot_archs=2, pilot_seeds=2,
                  workers=1) | bench
    return replace(base, bench=replace(base.bench, **fields))


def data_of(seed: int = 0) -> B.BenchData:
    splits, wid = fake_features(None, seed)
    return B.BenchData.of(splits, wid)


# ------------------------------------------------------------------ selection


def test_selection_is_deterministic_covers_every_stratum_and_keeps_includes():
    model = fake_model()
    predict = lambda c: model.predict(c)[:, 0]  # noqa: E731
    includes = {"a": np.zeros(N_LAYERS, dtype=np.int64), "b": np.zeros(N_LAYERS, dtype=np.int64)}
    rows = B.stratified_selection(predict, 10, np.random.default_rng(3), includes, sample=2000)
    again = B.stratified_selection(predict, 10, np.random.default_rng(3), includes, sample=2000)
    other = B.stratified_selection(predict, 10, np.random.default_rng(4), includes, sample=2000)
    assert rows == again and rows != other
    assert [r["name"] for r in rows[:1]] == ["a"] and "b" not in [r["name"] for r in rows]  # duplicate dropped
    strata = [r for r in rows if r["stratum"] >= 0]
    assert [r["stratum"] for r in strata] == list(range(10))
    for r in strata:
        assert r["stratum_lo_ms"] <= r["predicted_ms"] <= r["stratum_hi_ms"]
    for lo, hi in zip(strata, strata[1:]):
        assert lo["stratum_hi_ms"] <= hi["stratum_lo_ms"]
    sample = predict(np.random.default_rng(3).integers(0, N_CHOICES, (2000, N_LAYERS)))
    assert strata[0]["stratum_lo_ms"] == pytest.approx(sample.min())
    assert strata[-1]["stratum_hi_ms"] == pytest.approx(sample.max())


def test_named_includes_are_largest_smallest_and_reference():
    model = fake_model()
    rows = B.select_architectures(tiny_profile(include=("largest", "smallest", "reference")), 0, model)
    names = {r["name"]: r["arch"] for r in rows}
    assert names["largest"] == arch_string([choice_index("Conv7x7", 100)] * N_LAYERS)
    assert names["reference"] == arch_string([choice_index("DWSep3x3", 100)] * N_LAYERS)
    assert names["smallest"] == arch_string(model.fastest()[0][0])
    assert min(r["predicted_ms"] for r in rows) == pytest.approx(model.fastest()[1][0])


def test_pilot_subset_spans_the_latency_range_and_pilot_seeds_extend_the_table_seeds():
    rows = [{"arch": f"x{i}", "predicted_ms": float(i), "name": str(i), "stratum": i} for i in range(20)]
    picked = B.pilot_subset(rows, 4)
    assert [r["predicted_ms"] for r in picked][0] == 0.0 and picked[-1]["predicted_ms"] == 19.0 and len(picked) == 4
    assert B.pilot_seed_list(tiny_profile(seeds=(0, 1), pilot_seeds=3).bench) == (0, 1, 2)
    assert B.pilot_seed_list(tiny_profile(seeds=(5,), pilot_seeds=3).bench) == (5, 0, 1)


@pytest.mark.parametrize("field, value, match", [
    ("epochs", 0, "epochs = 0 must be > 0"),
    ("schedule", "linear", "schedule = 'linear' must be one of constant, cosine"),
    ("warmup_epochs", 1, r"warmup_epochs must be >= 0 and < epochs \(1\), got 1"),
    ("seeds", (1, 1), r"seeds = \[1, 1\] must be distinct integers >= 0"),
    ("seeds", (), "seeds must be a non-empty list"),
    ("latency_sample", 1, r"latency_sample must be >= n_archs \(2\), got 1"),
])
def test_bad_bench_fields_are_refused_when_the_section_is_made(field, value, match):
    with pytest.raises(ValueError, match=match):
        tiny_profile(**{field: value})


@pytest.mark.parametrize("field, value, match", [
    ("reference_target", "nope", "bench.reference_target 'nope' is not a latency target"),
    ("include", ("biggest",), "bench.include: 'biggest' is neither"),
])
def test_bad_bench_references_are_clear_errors(field, value, match):
    with pytest.raises(B.BenchError, match=match):
        B.check_bench(tiny_profile(**{field: value}))


def test_a_bad_bench_field_in_a_profile_file_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("bench:\n  epochs: 3\n  warmup_epochs: 3\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: bench: warmup_epochs must be >= 0 and < epochs \(3\)"):
        load_profile(path)


# ------------------------------------------------------------------ keys and resume


def test_item_key_follows_training_settings_and_data_not_scheduling():
    bench, data = tiny_profile().bench, data_of()
    key = B.item_key(SMALL, 0, bench, data)
    for field, value in (("epochs", 2), ("lr", 1e-3), ("schedule", "cosine"), ("batch_size", 4)):
        assert B.item_key(SMALL, 0, replace(bench, **{field: value}), data) != key, field
    for field, value in (("workers", 3), ("n_archs", 7), ("threads_per_worker", 2), ("seeds", (4, 5))):
        assert B.item_key(SMALL, 0, replace(bench, **{field: value}), data) == key, field
    assert B.item_key(SMALL, 1, bench, data) != key and B.item_key(SMALL2, 0, bench, data) != key
    assert B.item_key(SMALL, 0, bench, replace(data, weights_id="other")) != key
    assert B.item_key(SMALL, 0, bench, data_of(seed=1)) != key


@pytest.mark.parametrize("field, value, why", [
    ("test_miou", float("nan"), "test_miou = nan is not a finite number"),
    ("test_miou", "high", "test_miou = 'high' is not a finite number"),
    ("test_miou", None, "test_miou = None is not a finite number"),
    ("val_crack_iou", 1.5, r"val_crack_iou = 1.5 lies outside \[0, 1\]"),
])
def test_a_finished_item_with_a_bad_metric_is_rerun(tmp_path, caplog, field, value, why):
    spec = B.ItemSpec(SMALL, 0, "k", str(tmp_path / "item.json"), 0, "d", "w", "n", 0, 1.0)
    good = {"item_key": "k", "val_miou": 0.5, "test_miou": 0.5, "val_crack_iou": 0.1, "test_crack_iou": 0.1,
            "final_train_loss": 0.3, "seconds": 2.0}
    (tmp_path / "item.json").write_text(json.dumps(good))
    assert B.read_item(spec) == good
    (tmp_path / "item.json").write_text(json.dumps({**good, field: value}))
    assert B.read_item(spec) is None
    assert "item.json" in caplog.text and re.search(why, caplog.text) and "re-run" in caplog.text


def test_finished_item_is_skipped_and_a_changed_setting_reruns_it(tmp_path, monkeypatch):
    calls = []
    real = B.train_item
    monkeypatch.setattr(B, "train_item", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    kwargs = dict(folder=tmp_path, executor=concurrent.futures.ThreadPoolExecutor(1), features_fn=fake_features,
                  model=fake_model(), progress=False)
    profile = tiny_profile(n_archs=1, seeds=(0,))
    first = B.build(profile, **kwargs)
    assert first["ran"] == 2 and first["done"] == 2 and len(calls) == 2  # the stratum arch and SMALL
    item = json.loads((tmp_path / "items" / f"{SMALL}__s0.json").read_text())
    assert item["provenance"]["item_key"] == item["item_key"] and 0 <= item["test_crack_iou"] <= 1
    again = B.build(profile, **kwargs)
    assert again["ran"] == 0 and len(calls) == 2
    spent = B.status(profile, folder=tmp_path, features_fn=fake_features, model=fake_model())["train_hours_by_cpu"]
    assert list(spent) == [item["provenance"]["machine"]["cpu_id"]] and spent[item["provenance"]["machine"]["cpu_id"]]["items"] == 2
    changed = replace(profile, bench=replace(profile.bench, lr=1e-3))
    assert B.status(changed, folder=tmp_path, features_fn=fake_features, model=fake_model())["stale"] == 2
    assert B.build(changed, **kwargs | {"limit": 1})["ran"] == 1 and len(calls) == 3
    rerun = json.loads((tmp_path / "items" / f"{SMALL}__s0.json").read_text())  # includes come first
    assert rerun["item_key"] != item["item_key"] and rerun["settings"]["lr"] == 1e-3


def test_added_seeds_train_items_only_and_report_agreement_on_complete_archs(tmp_path):
    kwargs = dict(folder=tmp_path, executor=concurrent.futures.ThreadPoolExecutor(1), features_fn=fake_features,
                  model=fake_model(), progress=False)
    profile = tiny_profile(n_archs=2, seeds=(0, 1))
    B.build(profile, **kwargs)
    table = (tmp_path / "table.csv").read_text()
    part = B.extend(profile, (2, 3), limit=2, **kwargs)
    part_record = json.loads((tmp_path / "extension.json").read_text())
    assert (part["ran"], part["done"], part["pending"], part["seeds"]) == (2, 2, 4, [0, 1, 2, 3])
    assert part["agreement"] == {}  # one architecture has all four seeds so far: too few to rank
    assert (tmp_path / "table.csv").read_text() == table  # the table keeps bench.seeds
    assert B.status(profile, folder=tmp_path, features_fn=fake_features, model=fake_model(),
                    seeds=(2, 3))["pending"] == 4
    full = B.extend(profile, (2, 3), **kwargs)
    assert full["pending"] == 0 and full["agreement"]["n_seeds"] == 4 and full["agreement"]["n_archs"] == 3
    assert "tau_half.test_miou" in full["agreement"]
    assert full["files"]["extension"].endswith("extension.json")
    record = json.loads((tmp_path / "extension.json").read_text())
    assert record["added_seeds"] == [2, 3] and record["provenance"]["extension_seeds"] == [2, 3]
    forecast = record["forecast"]
    assert forecast["test_miou"]["n_seeds"] == 4 and "tau_half" in forecast["test_miou"]
    assert list(record["split_taus"]["test_miou"]) == ["0,1|2,3", "0,2|1,3", "0,3|1,2"]
    assert np.mean(list(record["split_taus"]["test_miou"].values())) == \
        pytest.approx(full["agreement"]["tau_half.test_miou"])
    # the forecast is kept from the first write: changing it now would no longer be a forecast
    forecast_first = json.loads(json.dumps(part_record))["forecast"]
    assert forecast == forecast_first
    assert record["agreement_table_seeds"]["n_seeds"] == 2 and record["agreement_table_seeds"]["n_archs"] == 3
    assert np.isfinite(record["seed_gap"]["gap_cross.test_miou"]) and "gap_added_ci_low.test_miou" in record["seed_gap"]
    assert record["seed_gap_archs"] == 3
    # an added item from the table's batch (as the pilot's seeds are) takes its architecture out of seed_gap
    early = tmp_path / "items" / f"{SMALL}__s2.json"
    item = json.loads(early.read_text())
    item["provenance"]["timestamp"] = "2000-01-01T00:00:00+00:00"
    early.write_text(json.dumps(item))
    assert B.extend(profile, (2, 3), **kwargs)["ran"] == 0
    record = json.loads((tmp_path / "extension.json").read_text())
    assert record["seed_gap_archs"] == 2 and record["seed_gap"] == {}  # below 3 architectures: no contrast
    assert record["agreement"]["n_archs"] == 3  # the agreement keeps every architecture
    table_item = sorted((tmp_path / "items").glob("*__s0.json"))[0]
    item = json.loads(table_item.read_text())
    del item["provenance"]["timestamp"]  # a table item of unknown time: the batches cannot be told apart
    table_item.write_text(json.dumps(item))
    B.extend(profile, (2, 3), **kwargs)
    assert json.loads((tmp_path / "extension.json").read_text())["seed_gap_archs"] == 0
    added = B.extension_rows(profile, folder=tmp_path, features_fn=fake_features, model=fake_model())
    assert len(added) == 6 and {r["seed"] for r in added} == {2, 3} and set(added[0]) == set(B.TABLE_COLUMNS)
    record["added_seeds"] = "2,3"
    (tmp_path / "extension.json").write_text(json.dumps(record))
    with pytest.raises(B.BenchError, match=r"extension.json: added_seeds must be a list of integer seeds, got '2,3'"):
        B.extension_rows(profile, folder=tmp_path, features_fn=fake_features, model=fake_model())
    (tmp_path / "extension.json").unlink()
    assert B.extension_rows(profile, folder=tmp_path, features_fn=fake_features, model=fake_model()) == []
    with pytest.raises(B.BenchError, match=r"seed\(s\) \[1\] are already in profile"):
        B.extend(profile, (1, 2), **kwargs)
    (tmp_path / "items" / f"{SMALL}__s0.json").unlink()
    with pytest.raises(B.BenchError, match="1 of the table's 6 items are not finished"):
        B.extend(profile, (2, 3), **kwargs)
    with pytest.raises(B.BenchError, match="not the pilot"):
        B.status(profile, pilot=True, seeds=(2,), folder=tmp_path, features_fn=fake_features, model=fake_model())


def test_recheck_trains_items_again_elsewhere_and_compares(tmp_path):
    kwargs = dict(folder=tmp_path, features_fn=fake_features, model=fake_model())
    profile = tiny_profile(n_archs=1, seeds=(0,))
    B.build(profile, executor=concurrent.futures.ThreadPoolExecutor(1), progress=False, **kwargs)
    items = sorted((tmp_path / "items").iterdir())
    before = [p.read_text() for p in items]
    rows = B.recheck(profile, 1, scratch=tmp_path / "scratch", **kwargs)
    assert len(rows) == 1 and rows[0]["identical"] and rows[0]["test_miou_diff"] == 0.0
    assert [p.read_text() for p in items] == before  # the committed items are never rewritten
    assert (tmp_path / "recheck.csv").is_file() and (tmp_path / "scratch").is_dir()
    record = json.loads(items[0].read_text())
    record["test_miou"] -= 0.01  # as if trained elsewhere
    items[0].write_text(json.dumps(record))
    moved = [r for r in B.recheck(profile, 2, **kwargs) if r["arch"] == record["arch"]][0]
    assert not moved["identical"] and moved["test_miou_diff"] == pytest.approx(0.01)
    with pytest.raises(B.BenchError, match="n must be >= 1"):
        B.recheck(profile, 0, **kwargs)
    one = B.recheck(profile, 3, arch=record["arch"], **kwargs)  # one architecture's items, by seed
    assert [(r["arch"], r["seed"]) for r in one] == [(record["arch"], 0)] and (tmp_path / "recheck_arch.csv").is_file()
    with pytest.raises(B.BenchError, match="--arch: architecture 'Conv3x3_w50-x' has 2 layers; expected 5"):
        B.recheck(profile, 1, arch="Conv3x3_w50-x", **kwargs)
    with pytest.raises(B.BenchError, match="no finished item of Conv3x3_w50"):
        B.recheck(profile, 1, arch="Conv3x3_w50-Conv3x3_w50-Conv3x3_w50-Conv3x3_w50-Conv3x3_w50", **kwargs)


def test_nan_loss_names_architecture_and_seed(tmp_path):
    profile = tiny_profile()
    data = B.BenchData.of(*nan_features(profile, 0))
    spec = B.plan_items([{"arch": SMALL, "name": "x", "stratum": 0, "predicted_ms": 1.0}], (3,), profile.bench,
                        data, 0, tmp_path)[0]
    with pytest.raises(NonFiniteLossError, match=rf"{SMALL} seed 3"):
        B.run_item(spec, profile, nan_features)
    assert not (tmp_path / "items").exists() or not list((tmp_path / "items").iterdir())


def test_worker_with_other_data_refuses(tmp_path):
    profile = tiny_profile()
    spec = B.plan_items([{"arch": SMALL, "name": "x", "stratum": 0, "predicted_ms": 1.0}], (0,), profile.bench,
                        data_of(seed=1), 0, tmp_path)[0]
    with pytest.raises(B.BenchError, match="differ from the driver"):
        B.run_item(spec, profile, fake_features)


def test_worker_in_other_numerics_refuses(tmp_path, monkeypatch):
    profile = tiny_profile()
    spec = B.plan_items([{"arch": SMALL, "name": "x", "stratum": 0, "predicted_ms": 1.0}], (0,), profile.bench,
                        data_of(seed=0), 0, tmp_path)[0]
    assert spec.numerics == "native"
    monkeypatch.setenv("LINAS_NUMERICS", "portable")  # the mode read by the worker (no kernels pinned here)
    with pytest.raises(B.BenchError, match=rf"{SMALL} seed 0: the driver runs native numerics and this worker portable"):
        B.run_item(spec, profile, fake_features)
    portable = B.plan_items([{"arch": SMALL, "name": "x", "stratum": 0, "predicted_ms": 1.0}], (0,), profile.bench,
                            data_of(seed=0), 0, tmp_path)[0]
    assert portable.numerics == "portable"
    with pytest.raises(B.BenchError, match=rf"{SMALL} seed 0: not trained; LINAS_NUMERICS=portable reads the committed"):
        B.run_item(portable, profile, fake_features)


def test_dask_local_cluster_runs_two_items_and_assembles_the_table(tmp_path):
    profile = tiny_profile(n_archs=1, seeds=(0,))
    with B.dask_client(workers=1, processes=False) as client:
        summary = B.build(profile, folder=tmp_path, executor=client, features_fn=fake_features, model=fake_model(),
                          progress=False)
    assert summary["ran"] == 2 and summary["pending"] == 0
    table = (tmp_path / "table.csv").read_text().splitlines()
    assert table[0].startswith("# provenance: ") and len(table) == 4
    assert table[1].split(",")[:2] == ["arch", "name"]
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["train"] == list(fake_features(None, 0)[0]["train"].names) and "provenance" in split


# ------------------------------------------------------------------ metrics and training


def test_crack_iou_known_values():
    counts = np.array([[5, 1, 2], [1, 1, 1]])
    assert class_iou_from_counts(counts, 1) == pytest.approx(1 / 3)
    assert class_iou_from_counts(counts, 0) == pytest.approx(5 / 8)
    assert class_iou_from_counts(np.array([[4, 0, 0], [0, 0, 0]]), 1) == 1.0  # absent class
    meter = MIoUMeter()
    pred = torch.tensor([[[1, 1], [0, 0]]])
    logits = torch.stack([1 - pred, pred], dim=1).float()
    meter.update(logits, torch.tensor([[[1, 0], [1, 0]]]))
    assert meter.crack_iou() == pytest.approx(1 / 3) and meter.value() == pytest.approx(1 / 3)


def test_lr_schedule_factors():
    assert [lr_factor(s, 10, 2, "cosine") for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_factor(9, 10, 2, "cosine") < 0.05
    assert [lr_factor(s, 10, 0, "constant") for s in (0, 9)] == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        lr_factor(0, 10, 0, "step")


def test_default_training_is_the_plain_constant_rate_loop():
    train = split_of(4, 1)
    choices = [choice_index("DWSep3x3", 50)] * N_LAYERS
    a = new_decoder(choices, torch.Generator().manual_seed(0))
    train_decoder(a, train, 1, 5e-3, 2, np.random.default_rng(0))
    b = new_decoder(choices, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(b.parameters(), lr=5e-3)
    b.train()
    from linas_lib.losses import segmentation_loss

    for taps, masks in train.batches(2, np.random.default_rng(0)):
        loss = segmentation_loss(b(taps), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    recalibrate_bn(b, train, 2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = new_decoder(choices, torch.Generator().manual_seed(0))
    train_decoder(c, train, 1, 5e-3, 2, np.random.default_rng(0), schedule="cosine", warmup_epochs=0)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


# ------------------------------------------------------------------ seed agreement and speed


def agreement_table(values: np.ndarray) -> list[dict]:
    return [{"arch": f"a{i}", "seed": s, "test_miou": float(values[i, s])}
            for i in range(values.shape[0]) for s in range(values.shape[1])]


def test_seed_agreement_perfect_vs_shuffled():
    quality = np.linspace(0.5, 0.7, 12)
    perfect = np.stack([quality, quality + 0.001, quality + 0.002], axis=1)
    out = seed_agreement(agreement_table(perfect), n_resamples=200)
    assert out["tau.test_miou"] == pytest.approx(1.0) and out["tau_ci_low.test_miou"] == pytest.approx(1.0)
    assert out["n_archs"] == 12 and out["n_seeds"] == 3
    shuffled = perfect.copy()
    shuffled[:, 1] = np.random.default_rng(0).permutation(shuffled[:, 1])
    low = seed_agreement(agreement_table(shuffled), n_resamples=200)
    assert low["tau.test_miou"] < 0.8 and low["tau_ci_low.test_miou"] < low["tau.test_miou"]
    spread = seed_agreement(agreement_table(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])), n_resamples=50)
    assert spread["seed_sd.test_miou"] == pytest.approx(np.sqrt(0.5)) and spread["arch_sd.test_miou"] == 2.0
    with pytest.raises(ValueError, match=">= 3 architectures"):
        seed_agreement(agreement_table(perfect[:2]))


def test_split_halves_pair_disjoint_halves_once():
    assert split_halves(4) == [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    assert len(split_halves(5)) == 15 and all(not set(a) & set(b) for a, b in split_halves(5))
    assert len(split_halves(6)) == 10


def test_pair_contrasts_tell_a_batch_effect_from_noisier_added_seeds():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=80)
    seeds = lambda base, n, sd: base[:, None] + sd * rng.normal(size=(80, n))  # noqa: E731
    same = np.column_stack([seeds(truth, 2, 0.1), seeds(truth, 2, 0.1)])
    other_host = np.column_stack([seeds(truth, 2, 0.1), seeds(truth + 0.5 * rng.normal(size=80), 2, 0.1)])
    noisier = np.column_stack([seeds(truth, 2, 0.1), seeds(truth, 2, 1.0)])
    assert abs(pair_contrast(2, "gap_cross")(*same.T)) < 0.1 and abs(pair_contrast(2, "gap_added")(*same.T)) < 0.1
    batch = pair_contrasts(other_host, 2, "m", n_resamples=200)
    assert batch["gap_cross_ci_low.m"] > 0.1 and abs(batch["gap_added.m"]) < 0.1
    noise = pair_contrasts(noisier, 2, "m", n_resamples=200)
    assert noise["gap_added_ci_low.m"] > 0.2 and noise["gap_cross.m"] < noise["gap_added.m"]
    tau = lambda i, j: kendalltau(noisier[:, i], noisier[:, j]).statistic  # noqa: E731
    mixed = np.mean([tau(0, 2), tau(0, 3), tau(1, 2), tau(1, 3)])
    assert noise["gap_cross.m"] == pytest.approx((tau(0, 1) + tau(2, 3)) / 2 - mixed)
    assert noise["gap_added.m"] == pytest.approx(tau(0, 1) - tau(2, 3))
    three = pair_contrasts(noisier[:, :3], 2, "m", n_resamples=50)  # one added seed: no added pair
    assert "gap_added.m" not in three and three["gap_cross.m"] == pytest.approx(tau(0, 1) - (tau(0, 2) + tau(1, 2)) / 2)
    full = pair_contrasts(noisier, 3, "m", n_resamples=50)  # three table seeds (the full profile), one added
    assert set(full) == {"gap_cross.m", "gap_cross_ci_low.m", "gap_cross_ci_high.m"}
    with pytest.raises(ValueError, match="pair contrasts need >= 2 table seeds and an added one; got 2 and 0"):
        pair_contrasts(noisier[:, :2], 2, "m")


def test_split_half_tau_averages_seeds_before_ranking():
    # seeds 0 and 2 rank archs 0 and 1 one way, seeds 1 and 3 the other: the split {0, 2} |
    # {1, 3} keeps that disagreement, the other two splits average it away
    base = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    swapped = base[[1, 0, 2, 3, 4]]
    cols = [base, swapped, base + 0.001, swapped + 0.001]
    assert split_half_tau(*cols) == pytest.approx(np.mean([kendalltau(a, b).statistic for a, b in [
        (base + swapped, base + swapped), (base + base, swapped + swapped), (base + swapped, swapped + base)]]))
    with pytest.raises(ValueError, match="needs >= 4 seeds"):
        split_half_tau(base, base, base)


def test_seed_agreement_reports_split_half_with_four_seeds_only():
    quality = np.linspace(0.5, 0.7, 15)
    noisy = quality[:, None] + np.random.default_rng(1).normal(0, 0.03, (15, 4))
    four = seed_agreement(agreement_table(noisy), n_resamples=200)
    assert four["tau_half_ci_low.test_miou"] <= four["tau_half.test_miou"] <= four["tau_half_ci_high.test_miou"]
    # averaging halves the seed noise's variance, so the halves agree better than single seeds
    assert four["tau_half.test_miou"] > four["tau.test_miou"]
    three = seed_agreement(agreement_table(noisy[:, :3]), n_resamples=50)
    assert "tau_half.test_miou" not in three


def test_projected_agreement_follows_the_seed_noise():
    quality = np.linspace(0.5, 0.7, 30)
    rng = np.random.default_rng(3)
    exact = projected_agreement(np.stack([quality, quality], axis=1), 4, rng, n_sims=5)
    assert exact["tau"] == exact["tau_half"] == 1.0 and exact["seed_sd"] == 0.0
    noisy = quality[:, None] + rng.normal(0, 0.02, (30, 2))
    two = projected_agreement(noisy, 2, np.random.default_rng(0), n_sims=100)
    four = projected_agreement(noisy, 4, np.random.default_rng(0), n_sims=100)
    assert "tau_half" not in two and two["tau_p2.5"] <= two["tau"] <= two["tau_p97.5"]
    assert four["tau"] == pytest.approx(two["tau"], abs=0.03)  # single seeds agree no better with more of them
    assert four["tau_half"] > four["tau"]  # their means do
    assert projected_agreement(noisy, 4, np.random.default_rng(7), n_sims=20) == \
        projected_agreement(noisy, 4, np.random.default_rng(7), n_sims=20)
    with pytest.raises(ValueError, match="n_seeds 1"):
        projected_agreement(noisy, 1, rng)


def test_profile_training_step_times_every_variant():
    rows = profile_training_step(tiny_profile(), archs=[SMALL], batch_sizes=(2,), threads=(1,),
                                 variants=("baseline", "foreach"), features=split_of(4, 1), min_run_time=0.01)
    assert [(r["variant"], r["error"]) for r in rows] == [("baseline", ""), ("foreach", "")]
    assert all(r["ms_per_step"] > 0 and r["n"] >= 1 and r["iqr"] >= 0 for r in rows)
    assert speed_table(rows)[0]["speedup"] == 1.0
    with pytest.raises(ValueError, match="unknown training-step variant"):
        profile_training_step(tiny_profile(), archs=[SMALL], variants=("turbo",), features=split_of(4, 1))


def test_cli_parses_bench_commands():
    args = build_parser().parse_args(["bench", "build", "--profile", "smoke", "--pilot", "--scheduler", "tcp://h:8786",
                                      "--workers", "3", "--limit", "5"])
    assert (args.pilot, args.scheduler, args.workers, args.limit) == (True, "tcp://h:8786", 3, 5)
    assert build_parser().parse_args(["bench", "status"]).profile == "cpu"
    assert build_parser().parse_args(["bench", "build", "--add-seeds", "2,3"]).add_seeds == (2, 3)


def test_spread_order_is_a_permutation_whose_prefixes_cover_the_range():
    order = B.spread_order(100)
    assert sorted(order) == list(range(100))
    assert order[:4] == [0, 64, 32, 96]
    assert max(order[:8]) - min(order[:8]) >= 80
    assert B.spread_order(1) == [0]


def test_run_order_keeps_an_architectures_seeds_adjacent():
    items = [B.ItemSpec(f"a{i}", s, "k", "p", 0, "d", "w", "n", i, 1.0) for i in range(5) for s in (0, 1)]
    ordered = B.run_order(items)
    assert sorted((s.arch, s.seed) for s in ordered) == sorted((s.arch, s.seed) for s in items)
    assert [s.arch for s in ordered[:4]] == ["a0", "a0", "a4", "a4"]
    assert [s.seed for s in ordered[:2]] == [0, 1]


def test_final_rows_compare_the_chosen_network_with_the_best_table_arch_within_budget():
    from linas_lib.analysis import final
    from linas_lib.space import arch_string

    a, b, c = (arch_string([i] * 5) for i in (0, 10, 20))
    table = [{"arch": a, "seed": s, "test_miou": 0.60 + s / 100, "test_crack_iou": 0.2} for s in (0, 1)]
    table += [{"arch": b, "seed": s, "test_miou": 0.70, "test_crack_iou": 0.3} for s in (0, 1)]
    table += [{"arch": c, "seed": s, "test_miou": 0.80, "test_crack_iou": 0.4} for s in (0, 1)]
    table_ms = np.tile(np.arange(N_CHOICES, dtype=float), (1, N_LAYERS, 1))  # latency = sum of choice indices
    model = LatencyModel((TARGET,), np.array([75.0]), ("decoder-only",), "projected", table_ms, np.zeros(1),
                         np.zeros((1, N_LAYERS - 1, N_CHOICES, N_CHOICES)))  # a 0, b 50, c 100 ms; budget 75
    chosen = [{"target": model.target_names[0], "arch": a, "within_budget": True}]
    items = [{"arch": a, "seed": s, "test_miou": v, "test_crack_iou": 0.25} for s, v in ((0, 0.60), (1, 0.61), (2, 0.65))]
    (row,) = final.final_rows(chosen, items, table, model)
    assert row["best_bench_arch"] == b and row["bench_archs_within"] == 2
    assert (row["slowest_within_arch"], row["fastest_within_arch"]) == (b, a)
    assert row["chosen_n_seeds"] == 3 and row["miou_gap_to_bench_pts"] == pytest.approx(8.0)
    # pooled over a (3 seeds, the table's two shared), b and c: sd^2 = 0.0014 / 4; chosen n 3, best n 2
    assert row["miou_gap_se_pts"] == pytest.approx(100 * np.sqrt(0.0014 / 4) * np.sqrt(1 / 3 + 1 / 2))
    assert row["miou_gap_ci95_low_pts"] < 8.0 < row["miou_gap_ci95_high_pts"]
    assert row["miou_gap_xfit_pts"] == pytest.approx(8.0)  # b is best on either seed
    figures = final.final_figures([row])
    assert figures[f"final.miou_gap_to_bench_pts.{model.target_names[0]}"] == row["miou_gap_to_bench_pts"]
    assert set(figures) == {f"final.{name}.{model.target_names[0]}" for name in final.FINAL_FIGURES}
    (pending,) = final.final_rows(chosen, [], table, model)  # not trained yet: reported, no gap
    assert pending["chosen_n_seeds"] == 0 and "miou_gap_to_bench_pts" not in pending


def test_held_seed_gap_picks_the_best_on_the_table_seeds_and_reads_it_on_the_added_ones():
    from scipy.stats import t

    from linas_lib.analysis import final
    from linas_lib.space import arch_string

    a, b, c = (arch_string([i] * 5) for i in (0, 10, 20))
    table = [{"arch": a, "seed": s, "test_miou": 0.70, "test_crack_iou": 0.2} for s in (0, 1)]
    table += [{"arch": b, "seed": s, "test_miou": 0.74, "test_crack_iou": 0.3} for s in (0, 1)]  # lucky on 0, 1
    table += [{"arch": c, "seed": s, "test_miou": 0.90, "test_crack_iou": 0.4} for s in (0, 1)]  # over the budget
    added = [{"arch": x, "seed": s, "test_miou": v + s / 1000, "test_crack_iou": 0.2}
             for x, v in ((a, 0.71), (b, 0.70), (c, 0.90)) for s in (2, 3)]
    table_ms = np.tile(np.arange(N_CHOICES, dtype=float), (1, N_LAYERS, 1))  # a 0, b 50, c 100 ms
    model = LatencyModel((TARGET,), np.array([75.0]), ("decoder-only",), "projected", table_ms, np.zeros(1),
                         np.zeros((1, N_LAYERS - 1, N_CHOICES, N_CHOICES)))
    net = {"target": TARGET, "arch": a, "budget_ms": 75.0, "chosen_n_seeds": 3, "chosen_test_miou_mean": 0.69}
    (row,) = final.held_seed_gaps([net], table, added, model)
    assert row["best_arch"] == b and row["best_held_n_seeds"] == 2  # picked on seeds 0, 1, not on its 2, 3
    assert row["miou_gap_held_pts"] == pytest.approx(100 * (0.7025 - 0.69))
    sd, df = final.pooled_seed_sd(table + added)
    half = t.ppf(0.975, df) * 100 * sd * np.sqrt(1 / 3 + 1 / 2)
    assert row["miou_gap_held_ci95_high_pts"] == pytest.approx(row["miou_gap_held_pts"] + half)
    figures = final.held_seed_figures([row])
    assert figures == {f"final_held.miou_gap_pts.{TARGET}": row["miou_gap_held_pts"],
                       f"final_held.miou_gap_ci95_low_pts.{TARGET}": row["miou_gap_held_ci95_low_pts"],
                       f"final_held.miou_gap_ci95_high_pts.{TARGET}": row["miou_gap_held_ci95_high_pts"]}
    assert final.held_seed_gaps([{**net, "chosen_n_seeds": 0, "chosen_test_miou_mean": np.nan}], table, added, model) == []
    assert final.held_seed_gaps([net], table, [], model) == [], "no extension: nothing to read the best on"
    with pytest.raises(final.B.BenchError, match="final_networks.csv: target 'gpu9' is not a search target"):
        final.held_seed_gaps([{**net, "target": "gpu9"}], table, added, model)
    with pytest.raises(final.B.BenchError, match="budget is 60.0 ms, this profile's 75.0 ms: rerun notebook 05"):
        final.held_seed_gaps([{**net, "budget_ms": 60.0}], table, added, model)
    # the best is the chosen one: only its own extension seeds that are final seeds are shared items
    mine = {**net, "arch": b}
    (same,) = final.held_seed_gaps([mine], table, added[:3] + added[4:], model, final_seeds=(0, 1, 2, 3))
    assert same["best_held_n_seeds"] == 1
    assert same["miou_gap_held_ci95_high_pts"] - same["miou_gap_held_pts"] == pytest.approx(
        t.ppf(0.975, df - 1) * 100 * final.pooled_seed_sd(table + added[:3] + added[4:])[0] * np.sqrt(1 / 3 + 1 - 2 / 3))


def test_final_gap_uncertainty_pools_the_seed_sd_and_cross_fits_the_best():
    from scipy.stats import t

    from linas_lib.analysis import final

    rows = [{"arch": "x", "seed": s, "test_miou": v} for s, v in ((0, 0.5), (1, 0.7))]
    rows += [{"arch": "y", "seed": s, "test_miou": v} for s, v in ((0, 0.1), (1, 0.2), (2, 0.3))]
    rows += [{"arch": "x", "seed": 0, "test_miou": 0.5}, {"arch": "z", "seed": 0, "test_miou": 0.9}]  # a repeat, a single seed
    sd, df = final.pooled_seed_sd(rows)
    assert df == 3 and sd == pytest.approx(np.sqrt(0.04 / 3))
    assert final.pooled_seed_sd(rows[-1:]) == (pytest.approx(np.nan, nan_ok=True), 0)
    ci = final.gap_uncertainty(2.0, (0.1, 10), n_chosen=3, n_best=2)
    se = 10 * np.sqrt(1 / 3 + 1 / 2)
    assert ci["miou_gap_se_pts"] == pytest.approx(se)
    assert ci["miou_gap_ci95_low_pts"] == pytest.approx(2.0 - t.ppf(0.975, 10) * se)
    assert ci["miou_gap_ci95_high_pts"] == pytest.approx(2.0 + t.ppf(0.975, 10) * se)
    assert final.gap_uncertainty(2.0, (np.nan, 0), 3, 2) == {}
    # the chosen architecture is the best table one: its 2 table seeds are 2 of its 3 items
    shared = final.gap_uncertainty(0.0, (0.1, 10), n_chosen=3, n_best=2, n_shared=2)
    assert shared["miou_gap_se_pts"] == pytest.approx(10 * np.sqrt(1 / 3 + 1 / 2 - 2 * 2 / 6))
    assert final.shared_seeds(rows, rows[:1], "x") == 1 and final.shared_seeds(rows, rows, "q") == 0
    # the best on the other seed, read at this one: b (0.6) at seed 0 -> 0.5; a (0.9) at seed 1 -> 0.1
    two = [{"arch": "a", "seed": 0, "test_miou": 0.9}, {"arch": "a", "seed": 1, "test_miou": 0.1},
           {"arch": "b", "seed": 0, "test_miou": 0.5}, {"arch": "b", "seed": 1, "test_miou": 0.6}]
    assert final.cross_fitted_best(two) == pytest.approx(0.3)  # the naive best mean is b's 0.55
    assert final.cross_fitted_best(two[::2]) is None and final.cross_fitted_best([]) is None
    # a partial table: c lacks seed 1 and still counts at seed 0 once it has another seed
    partial = two + [{"arch": "c", "seed": 0, "test_miou": 0.95}, {"arch": "c", "seed": 2, "test_miou": 0.99}]
    # seed 0: best on other seeds is c (0.99) -> 0.95; seed 1: a/b on seeds 0/2: a 0.9 -> 0.1; seed 2: c (0.95) -> 0.99
    assert final.cross_fitted_best(partial) == pytest.approx((0.95 + 0.1 + 0.99) / 3)


def test_final_selection_names_each_distinct_arch_after_its_targets():
    from linas_lib.analysis import final

    rows = final.final_selection([{"target": "t1", "arch": "x"}, {"target": "t2", "arch": "x"},
                                  {"target": "t3", "arch": "y"}])
    assert [(r["arch"], r["name"]) for r in rows] == [("x", "final:t1,t2"), ("y", "final:t3")]


def test_final_selection_also_trains_the_ws_control_arm():
    from linas_lib.analysis import final

    rows = final.final_selection([{"target": "t1", "arch": "x", "arch_ws": "y"}, {"target": "t2", "arch": "y", "arch_ws": "y"}])
    assert [(r["arch"], r["name"]) for r in rows] == [("x", "final:t1"), ("y", "final:t1,t2")]


def test_arm_differences_are_contrasts_of_seed_means_with_shared_architectures_cancelling():
    from linas_lib.analysis import final

    # seed SD 0.01 within every architecture (values m-0.01, m, m+0.01): pooled sd 0.01, df 2 per arch
    items = [{"arch": a, "seed": s, "test_miou": m + d, "test_crack_iou": 0.3}
             for a, m in (("x", 0.70), ("y", 0.68), ("z", 0.71)) for s, d in enumerate((-0.01, 0.0, 0.01))]
    chosen = [{"target": "t1", "arch": "x", "arch_ws": "y"}, {"target": "t2", "arch": "x", "arch_ws": "y"},
              {"target": "t3", "arch": "z", "arch_ws": "z"}]
    rows = {r["target"]: r for r in final.arm_differences(chosen, items, [])}
    assert rows["t1"]["diff_pts"] == pytest.approx(2.0) and rows["t3"]["diff_pts"] == 0.0
    assert rows["t3"]["diff_se_pts"] == 0.0  # the same architecture in both arms: no difference, no noise
    assert rows["t1"]["diff_se_pts"] == pytest.approx(100 * 0.01 * np.sqrt(2 / 3))
    # the mean over targets: weights 2/3 on x and -2/3 on y (t1 and t2 share their pair), z cancels
    assert rows["mean"]["diff_pts"] == pytest.approx(4 / 3) and rows["mean"]["n_targets"] == 3
    assert rows["mean"]["diff_se_pts"] == pytest.approx(100 * 0.01 * np.sqrt(2 * (2 / 3) ** 2 / 3))
    assert rows["mean_differing"]["diff_pts"] == pytest.approx(2.0) and rows["mean_differing"]["n_pairs"] == 1
    assert rows["mean"]["diff_ci95_low_pts"] < 4 / 3 < rows["mean"]["diff_ci95_high_pts"]
    figures = final.arm_figures([], list(rows.values()))
    assert figures["final_arms.diff_pts.mean"] == rows["mean"]["diff_pts"] and figures["final_arms.n_pairs"] == 1.0
    assert figures["final_arms.n_targets_pending"] == 0.0 and final.arm_figures([], []) == {}
    # while an arm is untrained: its targets have no difference and there is no mean over a subset
    pending = final.arm_differences(chosen, [i for i in items if i["arch"] != "y"], [])
    assert [r["target"] for r in pending] == ["t1", "t2", "t3"] and "diff_pts" not in pending[0]
    assert pending[0]["n_seeds_ws"] == 0 and pending[2]["diff_pts"] == 0.0
    flat = final.arm_figures([], pending)
    assert flat["final_arms.n_targets_pending"] == 2.0 and "final_arms.diff_pts.mean" not in flat


def test_each_arm_is_contrasted_with_the_ws_control_under_its_own_summary_prefix():
    from types import SimpleNamespace

    from linas_lib.analysis import final

    items = [{"arch": a, "seed": s, "test_miou": m + d, "test_crack_iou": 0.3}
             for a, m in (("x", 0.70), ("y", 0.68), ("z", 0.71)) for s, d in enumerate((-0.01, 0.0, 0.01))]
    chosen = [{"target": "t1", "arch": "x", "arch_ws": "y", "arch_ws_loss": "z"},
              {"target": "t2", "arch": "y", "arch_ws": "y", "arch_ws_loss": "y"}]
    loss = {r["target"]: r for r in final.arm_differences(chosen, items, [], "arch_ws_loss", "ws_loss")}
    assert loss["t1"]["arm"] == "ws_loss" and loss["t1"]["arch"] == "z" and loss["t1"]["diff_pts"] == pytest.approx(3.0)
    assert loss["t2"]["diff_pts"] == 0.0 and loss["mean"]["diff_pts"] == pytest.approx(1.5)
    mf = final.arm_differences(chosen, items, [])
    figures = final.arm_figures([], mf + list(loss.values()), {"arch_ws_loss": [{"target": "t1", "miou_gap_to_bench_pts": 0.4}]})
    assert figures["final_arms.diff_pts.t1"] == pytest.approx(2.0)
    assert figures["final_loss_arm.diff_pts.t1"] == pytest.approx(3.0) and figures["final_loss_arm.n_pairs"] == 1.0
    assert figures["final_ws_loss.miou_gap_to_bench_pts.t1"] == 0.4
    # which arms a run compares: the multi-fidelity one only where the profile chose by it
    with_mf = SimpleNamespace(search=SimpleNamespace(choice_topk=8))
    ws_only = SimpleNamespace(search=SimpleNamespace(choice_topk=0))
    assert [c[0] for c in final.compared_arms(with_mf, chosen)] == ["multi_fidelity", "ws_loss"]
    assert [c[0] for c in final.compared_arms(ws_only, chosen)] == ["ws_loss"]
    assert final.compared_arms(with_mf, [{"target": "t1", "arch": "x"}]) == []  # no control arm
    # every arm is trained: one bench item per distinct architecture
    assert [r["arch"] for r in final.final_selection(chosen)] == ["x", "y", "z"]


def test_read_chosen_checks_the_control_arm_column_where_there_is_one(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from linas_lib import paths
    from linas_lib.analysis import bench, final
    from linas_lib.space import arch_string

    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    folder = tmp_path / "results" / "p" / "05_pareto"
    folder.mkdir(parents=True)
    a, b = arch_string([0] * 5), arch_string([1] * 5)
    (folder / "chosen.csv").write_text(f"target,arch,arch_ws\nt1,{a},{b}\n")
    assert final.read_chosen(SimpleNamespace(name="p")) == [{"target": "t1", "arch": a, "arch_ws": b}]
    (folder / "chosen.csv").write_text(f"target,arch,arch_ws\nt1,{a},Conv9x9_w100\n")
    with pytest.raises(bench.BenchError, match=r"chosen.csv: row 1: arch_ws"):
        final.read_chosen(SimpleNamespace(name="p"))
    c = arch_string([2] * 5)
    (folder / "chosen.csv").write_text(f"target,arch,arch_ws,arch_ws_loss\nt1,{a},{b},{c}\n")
    assert final.read_chosen(SimpleNamespace(name="p"))[0]["arch_ws_loss"] == c
    (folder / "chosen.csv").write_text(f"target,arch,arch_ws,arch_ws_loss\nt1,{a},{b},nonsense\n")
    with pytest.raises(bench.BenchError, match=r"chosen.csv: row 1: arch_ws_loss"):
        final.read_chosen(SimpleNamespace(name="p"))


def test_final_arms_figure_draws_both_arms_and_the_best_table_architecture_per_target():
    import matplotlib

    matplotlib.use("Agg")
    from linas_lib import plots

    choice = [{"target": "t1", "chosen_test_miou_mean": 0.70, "chosen_test_miou_std": 0.01},
              {"target": "t2", "chosen_n_seeds": 0}]  # pending: drawn as a gap, not an error
    control = [{"target": t, "chosen_test_miou_mean": 0.71, "chosen_test_miou_std": 0.0, "best_bench_test_miou_mean": 0.72}
               for t in ("t1", "t2")]
    fig = plots.final_arms(choice, control)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t1", "t2"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "final choice", "WS-only control", "best table architecture within the budget"}
    assert ax.lines[-1].get_ydata().tolist() == pytest.approx([72.0, 72.0])
    loss = [{"target": "t1", "chosen_test_miou_mean": 0.69, "chosen_test_miou_std": 0.01}]  # t2 pending
    three = plots.final_arms(choice, control, loss).axes[0]
    assert "WS-loss arm" in {t.get_text() for t in three.get_legend().get_texts()}


def test_training_hours_are_split_by_the_cpu_each_item_records():
    records = [{"train_seconds": 3600, "provenance": {"machine": {"cpu_id": "Zen 3"}}},
               {"train_seconds": 1800, "provenance": {"machine": {"cpu_id": "Zen 3"}}},
               {"train_seconds": 900, "provenance": {"machine": {"cpu_id": "Xeon"}}},
               {"train_seconds": 7200, "provenance": {}}]  # from before the CPU was recorded
    assert B.train_hours_by_cpu(records) == {"Xeon": {"items": 1, "hours": 0.25}, "Zen 3": {"items": 2, "hours": 1.5},
                                             "unrecorded": {"items": 1, "hours": 2.0}}


def _candidates(rows):
    from linas_lib.space import arch_string

    return [{"target": t, "ws_rank": r, "arch": arch_string([a] * 5), "finetuned_miou": f, "finetuned_miou_retest": g}
            for t, r, a, f, g in rows]


def test_rule_choice_picks_on_the_rule_score_with_ties_to_the_better_ws_rank():
    from linas_lib.analysis import final

    cands = _candidates([("t", 2, 2, 0.70, 0.60), ("t", 1, 1, 0.68, 0.68), ("t", 3, 3, 0.68, 0.68),
                         ("u", 1, 4, 0.50, 0.50), ("u", 2, 5, 0.50, 0.50)])
    first = {p["target"]: p for p in final.rule_choice(cands, "finetune")}
    mean = {p["target"]: p for p in final.rule_choice(cands, "retest_mean")}
    assert first["t"]["ws_rank"] == 2 and first["t"]["score"] == pytest.approx(0.70)
    assert mean["t"]["ws_rank"] == 1 and mean["t"]["score"] == pytest.approx(0.68)  # rank 3 ties: rank 1 wins
    assert first["u"]["ws_rank"] == mean["u"]["ws_rank"] == 1
    assert list(first) == ["t", "u"]
    with pytest.raises(ValueError, match="choice rule 'best'.*retest_mean"):
        final.rule_choice(cands, "best")


def test_read_choice_candidates_names_the_file_and_what_is_missing(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from linas_lib.analysis import final

    monkeypatch.setattr("linas_lib.paths.project_root", lambda: tmp_path)
    profile = SimpleNamespace(name="p")
    with pytest.raises(B.BenchError, match="choice_candidates.csv does not exist: run notebook 05_pareto"):
        final.read_choice_candidates(profile)
    folder = tmp_path / "results" / "p" / "05_pareto"
    folder.mkdir(parents=True)
    arch = "Conv3x3_w50-Conv3x3_w50-Conv3x3_w50-Conv3x3_w50-Conv3x3_w50"
    (folder / "choice_candidates.csv").write_text(
        "# provenance: {}\ntarget,ws_rank,arch,ws_miou,finetuned_miou,predicted_ms\n" f"t,1,{arch},0.6,0.6,1.0\n")
    with pytest.raises(B.BenchError, match="choice_candidates.csv.*finetuned_miou_retest"):
        final.read_choice_candidates(profile)


def test_final_choice_study_rereads_05s_picks_and_contrasts_a_rule_with_them(monkeypatch):
    from types import SimpleNamespace

    from linas_lib.analysis import final, final_choice
    from linas_lib.space import arch_string

    a, b, c = (arch_string([i] * 5) for i in (0, 1, 2))
    chosen = [{"target": "t", "arch": b, "rule": "multi_fidelity"}, {"target": "u", "arch": a, "rule": "multi_fidelity"}]
    cands = _candidates([("t", 1, 0, 0.69, 0.69), ("t", 2, 1, 0.70, 0.60), ("u", 1, 0, 0.7, 0.7), ("u", 2, 2, 0.6, 0.6)])
    items = [{"arch": x, "seed": s, "test_miou": m + d, "test_crack_iou": 0.3}
             for x, m in ((a, 0.70), (b, 0.68)) for s, d in enumerate((-0.01, 0.0, 0.01))]
    monkeypatch.setattr(final, "read_chosen", lambda profile: chosen)
    monkeypatch.setattr(final, "read_choice_candidates", lambda profile: cands)
    monkeypatch.setattr(final, "final_plan", lambda profile, rows, seed: SimpleNamespace(items=[r["arch"] for r in rows]))
    monkeypatch.setattr(final, "finished_rows", lambda plan: items)
    monkeypatch.setattr(final, "final_rows", lambda rows, its, table, latency: [{"target": r["target"], "arch": r["arch"]}
                                                                                 for r in rows])
    profile = SimpleNamespace(search=SimpleNamespace(final_build=False))
    result = final_choice.study(profile, ("retest_mean",), None, [])
    assert [(r["rule"], r["target"], r["arch"]) for r in result["rows"]] == [
        ("finetune", "t", b), ("finetune", "u", a), ("retest_mean", "t", a), ("retest_mean", "u", a)]
    assert result["status"]["control_matches"] == 1.0 and result["status"]["n_changed.retest_mean"] == 1.0
    arms = {r["target"]: r for r in result["arms"]}
    assert arms["t"]["arch_control"] == b and arms["t"]["diff_pts"] == pytest.approx(2.0)
    assert arms["mean"]["diff_pts"] == pytest.approx(1.0) and "arch_ws" not in arms["t"]
    assert arms["mean"]["verdict"] in ("helps", "inconclusive")
    assert not any(r["arm"].endswith("_sensitivity") for r in result["arms"])  # neither target named here
    figures = final_choice.figures(result)
    assert figures["choice_arm.retest_mean.diff_pts.mean"] == pytest.approx(1.0)
    assert figures["choice_arm.retest_mean.n_pairs"] == 1.0 and figures["choice.n_changed.retest_mean"] == 1.0
    assert figures["choice.retest_mean.n_pending_targets"] == 2.0  # the stubbed rows carry no gap
    with pytest.raises(ValueError, match="targets"):
        final_choice.rule_chosen(chosen[:1], final.rule_choice(cands, "finetune"))
    monkeypatch.setattr(final_choice, "SENSITIVITY", {"retest_mean": ("t",)})  # leaves out t: only u's zero
    sens = [r for r in final_choice.study(profile, ("retest_mean",), None, [])["arms"]
            if r["arm"] == "retest_mean_sensitivity"]
    assert [r["target"] for r in sens] == ["u", "mean"] and sens[1]["diff_pts"] == 0.0


def test_final_choice_verdict_reads_the_ci_against_zero_and_the_smallest_effect():
    from linas_lib.analysis.final_choice import verdict

    assert verdict(0.1, 0.5) == "helps" and verdict(-0.5, -0.1) == "hurts"
    assert verdict(-0.2, 0.2) == "equivalent" and verdict(-0.3, 0.2) == "inconclusive"


def test_final_choice_machine_check_reads_recheck_arch(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from linas_lib.analysis import final_choice

    monkeypatch.setattr(B, "bench_dir", lambda profile: tmp_path)
    profile = SimpleNamespace(name="p")
    assert final_choice.machine_check(profile) == {}
    (tmp_path / "recheck_arch.csv").write_text("# provenance: {}\narch,seed,test_miou_diff,identical\n"
                                               f"{SMALL},0,0.0,True\n{SMALL},1,-0.002,False\n")
    check = final_choice.machine_check(profile)
    assert check == {"choice.machine_check.n_items": 2.0, "choice.machine_check.n_identical": 1.0,
                     "choice.machine_check.max_abs_test_miou_diff_pts": pytest.approx(0.2)}
    (tmp_path / "recheck_arch.csv").write_text("# provenance: {}\narch,seed,test_miou_diff,identical\n"
                                               f"{SMALL},0,nan,True\n")
    with pytest.raises(B.BenchError, match="recheck_arch.csv"):
        final_choice.machine_check(profile)
