"""Runs last: drain the session app and check every routed request reached the history file.

Requests served by the replica that test_under_load kills with `ray.kill` (no graceful
drain) may be lost from the history: at most what that replica had buffered, i.e. its
decisions since its last push and a push in flight (the bound is set from its rate in
that test). Everything else must be there.
"""

from __future__ import annotations

import socket
import time

import duckdb


def test_every_routed_request_is_in_the_history_after_shutdown(cluster):
    assert cluster.routed_ids or cluster.load_ids
    integrity = cluster.stop()
    cluster.handle = None  # stopped: the session fixture must not stop it again
    _port_is_free(cluster.port)  # nothing, HAProxy included, outlived the stop
    assert integrity is not None and integrity["decisions"] >= len(set(cluster.routed_ids))
    with duckdb.connect(str(cluster.history_file), read_only=True) as con:
        stored = {r[0] for r in con.execute("SELECT request_id FROM decisions").fetchall()}
    missing = set(cluster.routed_ids) - stored
    assert not missing, (
        f"{len(missing)} routed requests missing from the history, e.g. {sorted(missing)[:3]}"
    )
    lost_to_kill = set(cluster.load_ids) - stored
    print(
        f"\nhistory: {len(stored)} decisions; of {len(cluster.load_ids)} requests in the replica-kill test, "
        f"{len(lost_to_kill)} were lost with the killed replica's buffer"
    )
    assert len(lost_to_kill) <= cluster.allowed_history_loss


def _port_is_free(port: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.2)
