"""`tinydancer serve`: the cluster on this machine, until Ctrl-C (then a clean drain)."""

from __future__ import annotations

import argparse
import signal
import threading

from cluster.config import AppArgs, AutoscalingArgs
from cluster.runner import REQUEST_TIMEOUT_S, LocalCluster

__all__ = ["run_serve"]


def run_serve(args: argparse.Namespace) -> int:
    autoscaling = None
    if args.max_replicas:
        autoscaling = AutoscalingArgs(min_replicas=args.replicas, max_replicas=args.max_replicas)
    app_args = AppArgs(
        history_path=args.history, num_replicas=args.replicas, autoscaling=autoscaling
    )
    cluster = LocalCluster.start(
        app_args,
        num_cpus=args.num_cpus,
        host=args.host,
        port=args.port,
        metrics_export_port=args.metrics_port,
        request_timeout_s=(
            REQUEST_TIMEOUT_S if args.request_timeout_s is None else args.request_timeout_s or None
        ),
    )
    cluster.wait_ready()
    print(
        f"Tiny Dancer serving at {cluster.url} (OpenAPI: {cluster.url}/docs, metrics: {cluster.url}/metrics, "
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
