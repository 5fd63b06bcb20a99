"""The serving layer's sub-commands of `tinydancer`, registered through the
``tinydancer.commands`` entry-point group (see `pyproject.toml`):

    tinydancer serve     # the cluster on this machine, until Ctrl-C (then a clean drain)
    tinydancer demo      # start it, drive a workload through it, summarise, exit
"""

from __future__ import annotations

import argparse
import signal
import threading

from cluster.ingress import INGRESSES
from tinydancer.cli import Command
from tinydancer.cli import demo as in_process_demo

__all__ = ["demo", "serve"]


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--history", default="tinydancer-data/history.duckdb", help="DuckDB history file"
    )
    serve.add_argument("--replicas", type=int, default=1, help="router replicas (fixed)")
    serve.add_argument(
        "--max-replicas", type=int, default=None, help="enable autoscaling up to this many"
    )
    serve.add_argument(
        "--num-cpus", type=int, default=2, help="CPUs given to the local Ray instance"
    )
    serve.add_argument(
        "--metrics-port", type=int, default=8080, help="Ray's Prometheus metrics port"
    )
    serve.add_argument(
        "--ingress",
        choices=INGRESSES,
        default="haproxy",
        help="Serve's HAProxy ingress, bound to --host only (default), or its Python proxy",
    )
    serve.add_argument(
        "--request-timeout-s",
        type=float,
        default=None,
        help="the proxy answers 408 after this long without a complete response, streams "
        "included (default: cluster.runner.REQUEST_TIMEOUT_S, the gateway's 600 s deadline + 5; "
        "0: wait forever)",
    )


def _serve(args: argparse.Namespace) -> int:
    from cluster.config import AppArgs, AutoscalingArgs
    from cluster.runner import REQUEST_TIMEOUT_S, LocalCluster

    autoscaling = None
    if args.max_replicas:
        autoscaling = AutoscalingArgs(min_replicas=args.replicas, max_replicas=args.max_replicas)
    app_args = AppArgs(
        history_path=args.history, num_replicas=args.replicas, autoscaling=autoscaling
    )
    from cluster.startup import StartupProgress

    progress = StartupProgress()
    cluster = LocalCluster.start(
        app_args,
        progress=progress,
        num_cpus=args.num_cpus,
        host=args.host,
        port=args.port,
        metrics_export_port=args.metrics_port,
        ingress=args.ingress,
        request_timeout_s=(
            REQUEST_TIMEOUT_S if args.request_timeout_s is None else args.request_timeout_s or None
        ),
    )
    cluster.wait_ready()
    print(
        f"Tiny Dancer serving at {cluster.url} after {progress.elapsed_s:.1f} s "
        f"(OpenAPI: {cluster.url}/docs, metrics: {cluster.url}/metrics, "
        f"Ray metrics: http://{args.host}:{args.metrics_port}/metrics); history: {args.history}"
    )
    if cluster.token_generated:
        print(
            f"admin token (shown once; set TINYDANCER_ADMIN_TOKEN to choose your own): {cluster.admin_token}"
        )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("draining replicas and flushing the history ...")
    integrity = cluster.stop()
    print(f"stopped; history: {integrity}")
    return 0


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    in_process_demo.add_arguments(demo)
    demo.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    demo.add_argument(
        "--data", help="replay a routing-outcomes split instead of the synthetic workload"
    )
    demo.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1")


def _demo(args: argparse.Namespace) -> int:
    if args.in_process:
        return in_process_demo.run(args)
    from cluster.demo import run_demo

    run_demo(
        requests_total=args.requests,
        concurrency=args.concurrency,
        seed=args.seed,
        data=args.data,
        port=args.port,
        as_json=args.json,
    )
    return 0


serve = Command(
    "serve", "run the cluster on this machine until interrupted", _serve_arguments, _serve
)
demo = Command(
    "demo",
    "start the local cluster, drive a workload through it, summarise, exit",
    _demo_arguments,
    _demo,
)
