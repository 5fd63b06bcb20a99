"""cluster/ingress.py without Ray: the launcher that keeps Serve's HAProxy on one address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cluster.ingress import (
    DRAIN_WINDOW_S,
    _ephemeral_ports,
    haproxy_environment,
    ingress_environment,
    main,
)

# The shape of the configuration Serve 2.60 writes (frontends, stats, metrics, a gRPC one).
GENERATED = """\
frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8000
frontend grpc
    bind *:9000 proto h2
listen stats
  bind *:8404
  bind 0.0.0.0:8405
  bind [::]:8406
backend b
    server r1 127.0.0.1:30000 check
"""


def _fake_haproxy(tmp_path):
    """A stand-in for the real binary: prints its argv and the file it was given."""
    fake = tmp_path / "haproxy"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nprint(sys.argv[1:])\n"
        "print(open(sys.argv[sys.argv.index('-f') + 1]).read())\n"
    )
    fake.chmod(0o755)
    return fake


def test_the_launcher_binds_every_listener_to_the_host_and_execs_haproxy(tmp_path):
    env = haproxy_environment("127.0.0.1", tmp_path)
    config = tmp_path / "haproxy.cfg"
    config.write_text(GENERATED)
    environ = {**os.environ, **env, "TINYDANCER_HAPROXY_REAL": str(_fake_haproxy(tmp_path))}
    run = subprocess.run(
        [env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-db", "-f", str(config), "-sf", "42"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.splitlines()[0] == str(["-db", "-f", str(config), "-sf", "42"])
    rewritten = config.read_text()
    binds = [line.split()[1] for line in rewritten.splitlines() if line.strip().startswith("bind")]
    assert binds == [f"127.0.0.1:{p}" for p in (9101, 8000, 9000, 8404, 8405, 8406)]
    assert "bind 127.0.0.1:9000 proto h2" in rewritten  # the rest of the line is kept
    assert "server r1 127.0.0.1:30000 check" in rewritten  # servers untouched
    assert rewritten == run.stdout.split("\n", 1)[1].rstrip("\n") + "\n"


def test_the_environment_picks_free_distinct_ports_and_is_restored(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    env = haproxy_environment("127.0.0.1", tmp_path)
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] != env["RAY_SERVE_HAPROXY_METRICS_PORT"]
    assert os.path.isfile(env["TINYDANCER_HAPROXY_REAL"])  # the binary ray[serve] ships
    with ingress_environment("haproxy", "127.0.0.1"):
        assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ
    with ingress_environment("proxy", "127.0.0.1"):
        assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ
    refused = "ingress must be one of haproxy, proxy, got 'nginx'"
    with pytest.raises(ValueError, match=refused), ingress_environment("nginx", "127.0.0.1"):
        pass


def test_the_exports_for_a_shell(tmp_path, capsys):
    assert main(["--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "export RAY_SERVE_ENABLE_HA_PROXY=1" in lines
    assert f"export RAY_SERVE_HAPROXY_BINARY_PATH={tmp_path / 'haproxy-launcher'}" in lines


def test_a_stopping_replica_drains_for_the_short_local_window_unless_told_otherwise(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", raising=False)
    env = haproxy_environment("127.0.0.1", tmp_path)
    assert float(env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]) == DRAIN_WINDOW_S < 30
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "12")
    env = haproxy_environment("127.0.0.1", tmp_path)
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "12"


def test_haproxy_ports_are_outside_the_range_outgoing_connections_take(tmp_path):
    """HAProxy binds them seconds after they are chosen: a port an outgoing connection can
    take meanwhile (the ephemeral range) made it exit with "Address already in use"."""
    low, high = _ephemeral_ports()
    for _ in range(20):
        env = haproxy_environment("127.0.0.1", tmp_path)
        for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
            port = int(env[name])
            assert 20_000 <= port < low, (name, port, low, high)
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))  # free when chosen
