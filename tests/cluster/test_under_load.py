"""Killing a router replica during 60 s of load at concurrency 8 (clients do not retry)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import ray

from tests.cluster.cluster_helpers import b64, vector

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
    body = {"embedding_b64": b64(vector(40))}  # the fast form the README recommends
    results: list[tuple[float, float, int]] = []  # (sent, answered, status; 0: closed)
    lock = threading.Lock()
    stop = time.monotonic() + LOAD_S

    def client() -> None:
        # The proxy's timeout follows the gateway's 600 s deadline; a routing client that
        # wants a quick 408 for a request lost with the replica asks for it (Serve's header).
        headers = {"x-request-timeout-seconds": "10"}
        with httpx.Client(base_url=cluster.url, timeout=30, headers=headers) as http:
            while time.monotonic() < stop:
                sent = time.monotonic()
                try:
                    reply = http.post("/v1/route", json=body)
                    code = reply.status_code
                    if code == 200:
                        cluster.load_ids.append(reply.json()["request_id"])
                except httpx.HTTPError:
                    code = 0
                with lock:
                    results.append((sent, time.monotonic(), code))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_S / 3)
    name, namespace = _replica_actors()[0]
    killed_at = time.monotonic()
    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    for t in threads:
        t.join()
    failed = [r for r in results if r[2] != 200]
    success = 1 - len(failed) / len(results)
    in_flight = sum(1 for sent, answered, _ in results if sent <= killed_at <= answered)
    print(
        f"\n{len(results)} requests in {LOAD_S:.0f} s, {in_flight} in flight at the kill, "
        f"{len(failed)} failed (statuses {sorted(c for *_, c in failed)}, answered "
        f"{[round(a - killed_at, 1) for _, a, _ in failed]} s after the kill), success {success:.4%}"
    )
    assert len(results) > 1000
    # The killed replica's history buffer dies with it: its decisions since its last push
    # (every `history_push_interval_s`) and those of a push still in flight, which on a
    # loaded 2-core machine can take up to about a second. Bounded by its own rate (the
    # faster routing is, the more a fixed count would be exceeded), at least 100.
    per_replica = len(results) / LOAD_S / cluster.args.num_replicas
    cluster.allowed_history_loss += max(
        100, int(per_replica * (cluster.args.history_push_interval_s + 1.0))
    )
    # What a kill may cost: the requests in flight on the killed replica, plus the few the
    # ingress sent it before it marked it down (HAProxy does so after a handful of
    # connection errors: at most one more per client here). Nothing sent outside the kill's
    # window fails, and every client hears back at once (an error status, or its connection
    # closed) instead of hanging until its timeout.
    assert all(killed_at - 5 <= sent <= killed_at + 5 for sent, _, _ in failed), failed
    assert all(answered - sent < 10 for sent, answered, _ in failed), failed
    assert len(failed) <= in_flight + CLIENTS, failed
    deadline = time.monotonic() + 60
    while len(_replica_actors()) < 2:  # Serve replaces the replica
        assert time.monotonic() < deadline
        time.sleep(1)
