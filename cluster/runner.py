"""Start and stop the cluster on this machine (embedded defaults: local Ray, a DuckDB file).

    cluster = LocalCluster.start(AppArgs(history_path="data/history.duckdb"))
    cluster.url                       # http://127.0.0.1:8000
    handle = cluster.handle           # DeploymentHandle: handle.route.remote({...}).result()
    cluster.stop()                    # replicas drain, history flushed and closed, Ray shut down

From inside a Ray job on a running cluster, get the handle by name:
`serve.get_app_handle("tinydancer")`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from cluster.actors import actor_names, shard_name
from cluster.app import build_app
from cluster.config import AppArgs, admin_token_from
from cluster.ingress import ingress_environment
from cluster.startup import StartupProgress
from tinydancer.gateway.config import GatewayConfig

__all__ = ["APP_NAME", "REQUEST_TIMEOUT_S", "LocalCluster"]

APP_NAME = "tinydancer"
log = logging.getLogger("tinydancer.cluster")
# The proxy answers 408 when a request has had no response for this long (Serve's default
# is to wait forever: a request lost with a killed replica would hang its client). It is
# end to end, streams included, and one value for every route: the gateway's deadline
# (600 s, every attempt of a long answer included) governs it, plus a margin. A client of
# the routing API that wants a quicker 408 sends Serve's `x-request-timeout-seconds`.
PROXY_MARGIN_S = 5.0
REQUEST_TIMEOUT_S = GatewayConfig().deadline_s + PROXY_MARGIN_S


# Ray's single-machine mode (its default on macOS and Windows): the node IP is 127.0.0.1, so
# GCS, raylet, worker, agent and metrics-export ports all listen on loopback; on Linux Ray
# otherwise binds them to every interface. Read by the processes Ray spawns (environment)
# and by this one (the constant, evaluated when ray was imported).
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _ray_on_loopback() -> Iterator[None]:
    """For the `ray.init` inside: the processes it starts keep the setting; this process's
    environment and Ray's constant are restored after (later subprocesses, such as a test's
    multi-node cluster, are not affected)."""
    from ray._private import ray_constants

    before_env, before_constant = (
        os.environ.get(_SINGLE_MACHINE_ENV),
        ray_constants.ENABLE_RAY_CLUSTER,
    )
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_constant
        if before_env is None:
            os.environ.pop(_SINGLE_MACHINE_ENV, None)
        else:
            os.environ[_SINGLE_MACHINE_ENV] = before_env


@dataclass
class LocalCluster:
    args: AppArgs
    host: str
    port: int
    handle: Any
    admin_token: str
    token_generated: bool
    started_ray: bool
    progress: StartupProgress

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def start(
        cls,
        args: AppArgs | None = None,
        *,
        num_cpus: int = 2,
        host: str = "127.0.0.1",
        port: int = 8000,
        metrics_export_port: int | None = None,
        request_timeout_s: float | None = REQUEST_TIMEOUT_S,
        ingress: str = "haproxy",
        progress: StartupProgress | None = None,
    ) -> LocalCluster:
        """`ingress`: "haproxy" (Serve's HAProxy ingress, loopback-bound; see cluster/ingress.py)
        or "proxy" (Serve's Python proxy); it takes effect only when this call starts Ray.
        `progress`: where each phase is shown and timed (default: measured, not shown)."""
        progress = progress or StartupProgress(enabled=False)
        args = args or AppArgs()
        token, generated = admin_token_from(args)
        args = args.model_copy(update={"admin_token": token})
        started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "num_cpus": num_cpus,
                "include_dashboard": False,
                "log_to_driver": False,
                "namespace": args.namespace,
            }
            if metrics_export_port is not None:
                options["_metrics_export_port"] = metrics_export_port
            with (
                progress.phase(f"starting Ray ({num_cpus} CPUs, loopback)"),
                _ray_on_loopback(),
                ingress_environment(ingress, host),
            ):
                ray.init(**options)
            started = True
        http_options: dict[str, Any] = {"host": host, "port": port}
        if request_timeout_s is not None:
            if request_timeout_s < args.gateway.deadline_s:
                log.warning(
                    "request_timeout_s %.0f s is shorter than the gateway's deadline %.0f s: "
                    "the proxy will cut longer answers off",
                    request_timeout_s,
                    args.gateway.deadline_s,
                )
            http_options["request_timeout_s"] = request_timeout_s
        with progress.phase(f"starting Serve ({ingress} ingress on {host}:{port})"):
            serve.start(http_options=http_options)
        replicas = args.autoscaling.min_replicas if args.autoscaling else args.num_replicas
        with progress.phase(
            f"deploying {replicas} replica{'s' * (replicas != 1)} and the state actors "
            "(models loaded, first shapes compiled)"
        ) as detail:
            handle = _deploy(build_app(args), detail)
        return cls(args, host, port, handle, token, generated, started, progress)

    def actor(self, which: str) -> Any:
        names = dict(zip(("registry", "breaker", "history"), actor_names(), strict=True))
        return ray.get_actor(names[which], namespace=self.args.namespace)

    def stop(self, *, timeout_s: float = 60.0) -> dict[str, int] | None:
        """Drain replicas, flush and close the history, remove the actors, stop Serve (and Ray)."""
        integrity = None
        try:
            serve.delete(APP_NAME)  # replicas run __del__: buffered records go to the history actor
            history = self.actor("history")
            ray.get(history.flush.remote(), timeout=timeout_s)
            integrity = ray.get(history.integrity.remote(), timeout=timeout_s)
            ray.get(history.close.remote(), timeout=timeout_s)
        finally:
            registry, breaker, history = actor_names()
            names = [history] + [
                shard_name(base, k)
                for base in (registry, breaker)
                for k in range(self.args.state_shards)
            ]
            for name in names:
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(name, namespace=self.args.namespace), no_restart=True)
            if self.started_ray:  # Ray's shutdown ends Serve too; serve.shutdown() first would
                ray.shutdown()  # print "graceful_shutdown failed" (a retried task), read as a crash
            else:
                serve.shutdown()
        return integrity

    def wait_ready(self, timeout_s: float = 120.0, *, compiled: bool = False) -> None:
        """Until a replica answers `/healthz` with its text encoder loaded and compiled (or
        known to be unavailable: no weights installed). `compiled`: also until every
        replica has compiled every routing shape in the background (`"warm": "ready"`),
        as benchmarks and tests want; a user's first request need not wait for it."""
        import urllib.request

        replicas = (
            self.args.autoscaling.min_replicas if self.args.autoscaling else self.args.num_replicas
        )
        deadline = time.monotonic() + timeout_s
        warmed: set[str] = set()
        label = "warming the text encoder" + (" and compiling every shape" if compiled else "")
        with self.progress.phase(label) as detail:
            while True:
                try:
                    with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                        health = json.loads(response.read())
                        encoder = health.get("encoder", "ready")
                        if health.get("warm") == "ready":
                            warmed.add(str(health.get("replica")))
                        detail(f"encoder {encoder}, {len(warmed)}/{replicas} replicas compiled")
                        if (
                            response.status == 200
                            and encoder != "loading"
                            and (not compiled or len(warmed) >= replicas)
                        ):
                            return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"after {timeout_s} s: encoder still loading or "
                        f"{replicas - len(warmed)} replica(s) still compiling"
                    )
                time.sleep(0.25)


def _deploy(app: Any, detail: Any) -> Any:
    """`serve.run`, showing the replicas' states while it waits for them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(serve.run, app, name=APP_NAME, route_prefix="/", blocking=False)
        while not running.done():
            with contextlib.suppress(Exception):  # the status is a courtesy; the run decides
                deployments = serve.status().applications[APP_NAME].deployments
                states = Counter[str]()
                for deployment in deployments.values():
                    states.update(
                        {
                            str(getattr(k, "value", k)).lower(): v
                            for k, v in deployment.replica_states.items()
                        }
                    )
                detail(", ".join(f"{n} {state}" for state, n in sorted(states.items())))
            time.sleep(0.25)
        return running.result()
