"""Quick versions of the reliability campaign (the long one: `python -m benchmarks.reliability all`)."""

from __future__ import annotations

import hmac
import inspect
from pathlib import Path

import pytest

from benchmarks.reliability import fault_campaign, load_campaign


@pytest.mark.slow
def test_bounded_load_with_a_step_up_has_no_errors_and_no_runaway_memory(cluster):
    report = load_campaign(cluster.url, rate=20, seconds=6, step_rate=40, step_seconds=4)
    for phase in report["phases"].values():
        assert phase["error_rate"] == 0.0, phase
        assert phase["achieved_rps"] >= 0.8 * phase["target_rps"], phase
    assert report["rss_mb_after_total"] - report["rss_mb_before_total"] < 400


@pytest.mark.slow
def test_killing_each_state_actor_under_load(cluster):
    rate, seconds = 15, 6
    report = fault_campaign(cluster, rate, seconds, faults=("registry", "breaker", "history"))
    cluster.load_ids.extend(report.pop("accepted_ids"))
    cluster.allowed_history_loss += int(rate * 1.5)  # the history actor's unflushed second
    for fault, figures in report.items():
        assert figures["error_rate"] <= 0.01, (fault, figures)  # routing never needs the actors
        assert figures["recovery_s"] < 60, (fault, figures)


def test_services_bind_loopback_only(cluster):
    port = int(cluster.url.rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # LISTEN
                listening.append(address)
    assert listening and all(
        a in ("0100007F", "00000000000000000000000001000000") for a in listening
    ), listening


def test_every_port_of_the_embedded_ray_listens_on_loopback(cluster):
    """Issue 12 #6: GCS, raylet, workers, agents, metrics export, the Serve proxy: every
    listening socket of this process's tree (Ray was started by the session fixture)."""
    from tests.cluster.sockets import beyond_loopback, listening_sockets

    port = int(cluster.url.rsplit(":", 1)[1])
    sockets = listening_sockets()
    assert port in {s[3] for s in sockets} and len(sockets) >= 5, sockets
    # the HAProxy ingress (the default): the HTTP port, its stats page and metrics exporter
    haproxy = [s for s in sockets if "haproxy" in s[1]]
    assert len({s[3] for s in haproxy}) >= 3 and port in {s[3] for s in haproxy}, sockets
    # The one exception Ray 2.60 does not let us close: each Serve replica's inter-deployment
    # gRPC server, hard-coded to "[::]:0" in ray/serve/_private/replica.py (RELIABILITY.md).
    open_ = beyond_loopback()
    replicas = [s for s in open_ if s[1].startswith("ray::ServeReplica")]
    assert [s for s in open_ if s not in replicas] == [], open_
    assert len(replicas) <= cluster.args.num_replicas, replicas


def test_the_proxy_answers_a_lost_request_within_the_timeout(cluster):
    import ray

    from cluster.runner import REQUEST_TIMEOUT_S

    controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    assert ray.get(controller.get_http_config.remote()).request_timeout_s == REQUEST_TIMEOUT_S


def test_ray_token_authentication_is_left_on(cluster):
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert is_token_auth_enabled()


def test_admin_tokens_are_compared_in_constant_time():
    from cluster.http import AdminAuth

    assert "hmac.compare_digest" in inspect.getsource(AdminAuth.check_header)
    assert hmac.compare_digest(b"a", b"a")
