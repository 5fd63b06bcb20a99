"""One local Ray instance and one Tiny Dancer app for the whole cluster test session.

Ray starts once with 2 CPUs, everything binds to 127.0.0.1, and the session ends with
the app drained and Ray shut down; `routed_ids` collects every request id the tests
got back, and the last test checks they all reached the history file.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("ray")

from tests.cluster.cluster_helpers import free_port

ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    from cluster.config import AppArgs
    from cluster.runner import LocalCluster

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    history = tmp_path_factory.mktemp("history") / "history.duckdb"
    args = AppArgs(
        history_path=str(history),
        admin_token=ADMIN_TOKEN,
        export_interval_s=2.0,
        max_body_bytes=4 * 1024 * 1024,
        feedback_wait_s=1.0,
        num_replicas=2,
        replica_num_cpus=0.4,
    )
    running = LocalCluster.start(args, num_cpus=2, port=free_port())
    running.wait_ready(compiled=True)
    running.history_file = history  # type: ignore[attr-defined]
    running.routed_ids = []  # type: ignore[attr-defined]
    running.load_ids = []  # type: ignore[attr-defined]  (requests of the fault tests)
    running.allowed_history_loss = 0  # type: ignore[attr-defined]  (the fault tests add theirs)
    yield running
    if running.handle is not None:
        running.stop()


@pytest.fixture(scope="session")
def http(cluster):
    import httpx

    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def admin():
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
