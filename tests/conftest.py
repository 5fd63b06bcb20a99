"""Shared fixtures. JAX runs with strict dtype promotion so silent upcasts fail tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "TINYDANCER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@pytest.fixture(scope="session", autouse=True)
def _strict_jax() -> None:
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_cpu_enable_async_dispatch", False)


@pytest.fixture
def key():
    import jax

    return jax.random.PRNGKey(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (routing-outcome datasets); tests that need it skip without it."""
    if not (SHARED_DATA / "routerbench").is_dir():
        pytest.skip(
            f"shared routing data not found at {SHARED_DATA} (CI provides it; "
            "set TINYDANCER_SHARED_DATA to point elsewhere)"
        )
    return SHARED_DATA
