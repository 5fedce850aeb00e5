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
