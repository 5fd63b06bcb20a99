"""Killing a router replica during 60 s of load at concurrency 8 (clients do not retry)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import ray
from cluster_helpers import vector

LOAD_S = 60.0
CLIENTS = 8


def _replica_actors() -> list[tuple[str, str]]:
    return [
        (a["name"], a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::tinydancer#router")
    ]


@pytest.mark.slow
def test_killing_a_replica_under_load_loses_almost_nothing(cluster):
    assert len(_replica_actors()) >= 2, "the session app runs two replicas"
    body = {"embedding": vector(40).tolist()}
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    stop = time.monotonic() + LOAD_S

    def client() -> None:
        with httpx.Client(base_url=cluster.url, timeout=30) as http:
            while time.monotonic() < stop:
                try:
                    reply = http.post("/v1/route", json=body)
                    code = reply.status_code
                    if code == 200:
                        cluster.load_ids.append(reply.json()["request_id"])
                except httpx.HTTPError:
                    code = 0
                with lock:
                    results.append((time.monotonic(), code))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_S / 3)
    name, namespace = _replica_actors()[0]
    killed_at = time.monotonic()
    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    for t in threads:
        t.join()
    failed = [(t, c) for t, c in results if c != 200]
    success = 1 - len(failed) / len(results)
    near_kill = [t for t, _ in failed if killed_at <= t <= killed_at + 5]
    print(
        f"\n{len(results)} requests in {LOAD_S:.0f} s, {len(failed)} failed "
        f"({len(near_kill)} within 5 s of the kill), success {success:.4%}"
    )
    assert len(results) > 1000
    # What a kill may cost: the requests in flight on the killed replica (at most
    # one per client), plus at most one more per client sent before the proxy
    # learns the replica is gone. Nothing fails before the kill or after that.
    assert len(near_kill) == len(failed), f"failures outside the kill window: {failed}"
    assert len(failed) <= 2 * CLIENTS
    deadline = time.monotonic() + 60
    while len(_replica_actors()) < 2:  # Serve replaces the replica
        assert time.monotonic() < deadline
        time.sleep(1)
