"""Shared fixtures. JAX runs with strict dtype promotion so silent upcasts fail tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _strict_jax() -> None:
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_cpu_enable_async_dispatch", False)


@pytest.fixture
def key():
    import jax

    return jax.random.PRNGKey(0)
