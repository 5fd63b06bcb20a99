"""Benchmark session set-up.

Pinning must happen before JAX starts, so it is decided here from the environment:
``TINYDANCER_BENCH_PIN=<core>`` pins the whole benchmark process to one core. Run the
pinned and the unpinned configuration as two separate processes (see the README).
"""

from __future__ import annotations

import os

import pytest

_PIN = os.environ.get("TINYDANCER_BENCH_PIN")
if _PIN not in (None, ""):
    from tinydancer.runtime import pin_to_core

    pin_to_core(int(_PIN))


@pytest.fixture(scope="session")
def pinning() -> str:
    return f"pinned to core {_PIN}" if _PIN not in (None, "") else "unpinned"


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["tinydancer_pinning"] = f"core {_PIN}" if _PIN not in (None, "") else "unpinned"


@pytest.fixture(scope="module")
def encoder():
    """The text encoder without its cache (every call encodes); skips without weights."""
    from tinydancer.text import INSTALL_LINE, EncoderNotFoundError, TextEncoder, TextEncoderConfig

    try:
        return TextEncoder(TextEncoderConfig(cache_size=0))
    except EncoderNotFoundError:
        pytest.skip(f"text encoder weights not installed ({INSTALL_LINE})")
