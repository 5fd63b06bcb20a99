"""Fixtures shared by tests/ and benchmarks/ (imports nothing heavy: benchmarks pin first)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "TINYDANCER_SHARED_DATA", Path(__file__).resolve().parent.parent / "shared" / "data"
    )
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (routing-outcome datasets); tests that need it skip without it."""
    if not (SHARED_DATA / "routerbench").is_dir():
        pytest.skip(
            f"shared routing data not found at {SHARED_DATA} (CI provides it; "
            "set TINYDANCER_SHARED_DATA to point elsewhere)"
        )
    return SHARED_DATA
