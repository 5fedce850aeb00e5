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
