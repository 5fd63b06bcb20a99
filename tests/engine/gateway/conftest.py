from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.gateway.gateway_helpers import Server, http_server


@pytest.fixture(scope="package")
def server() -> Iterator[Server]:
    with http_server() as running:
        yield running
