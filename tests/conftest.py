"""Shared fixtures: a tmp profile writer and a shared-data locator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from linas_lib.paths import project_root

# Tiny test models: one thread avoids oversubscribing the 2 cores (10-40x slower under load).
# Tests that time latency set their own thread count explicitly.
torch.set_num_threads(1)

SHARED_DATA = project_root().parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests needing it are skipped on machines without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture
def stub_candidates(monkeypatch):
    """Patch the inputs 09's candidate studies read (choice_truth, choice_standalone,
    choice_standalone2): 05's candidates, the size of the candidates' item plan, its finished
    records and the fine-tune replicates. Returns ``stub(candidates, n_items, items, replicates)``."""
    from types import SimpleNamespace

    from linas_lib.analysis import bench as B
    from linas_lib.analysis import choice_truth as CT
    from linas_lib.analysis import final as F
    from linas_lib.analysis import final_choice as FC

    def stub(candidates: list[dict], n_items: int, items: list[dict], replicates: list[dict]) -> None:
        monkeypatch.setattr(F, "read_choice_candidates", lambda profile: candidates)
        monkeypatch.setattr(CT, "candidates_plan", lambda profile, seeds, seed: SimpleNamespace(items=[0] * n_items))
        monkeypatch.setattr(B, "finished_records", lambda plan: items)
        monkeypatch.setattr(FC, "read_replicates", lambda profile: replicates)

    return stub


@pytest.fixture
def stub_final_rows(monkeypatch):
    """Patch :func:`linas_lib.analysis.final.final_rows` (the gap of each pick to the best table
    architecture) with one that reads a fixed best table mean of 0.75. Returns
    ``stub(read_seeds=None)``; with ``read_seeds`` the stub also asserts that the picks' items and
    the table are read on exactly those seeds."""
    from linas_lib.analysis import final as F

    def stub(read_seeds: set[int] | None = None) -> None:
        def final_rows(chosen, its, table, latency):
            if read_seeds is not None:
                assert {int(r["seed"]) for r in its} == {int(r["seed"]) for r in table} == read_seeds
            means = F.arch_means(its)
            return [{"target": c["target"], "arch": c["arch"], "best_bench_arch": "x", "best_bench_test_miou_mean": 0.75,
                     "chosen_test_miou_mean": means[c["arch"]]["test_miou_mean"],
                     "miou_gap_to_bench_pts": 100 * (0.75 - means[c["arch"]]["test_miou_mean"]),
                     "miou_gap_ci95_low_pts": 0.0, "miou_gap_ci95_high_pts": 1.0, "miou_gap_xfit_pts": 0.5}
                    for c in chosen]

        monkeypatch.setattr(F, "final_rows", final_rows)

    return stub
