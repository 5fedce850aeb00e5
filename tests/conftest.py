"""Shared fixtures: a tmp profile writer and a shared-data locator."""

from __future__ import annotations

from pathlib import Path

import pytest

from linas_lib.paths import project_root

SHARED_DATA = project_root().parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests needing it are skipped on machines without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA
