"""The Serve cluster against a bare Serve deployment that echoes a fixed JSON (same run).

* HTTP /v1/route vs HTTP echo at concurrency 1 and 8: p50 latency and throughput, measured in
  alternating 2-second slices so both see the same machine. A second baseline, an echo
  that reads the request body first, shows what reading a body costs on Serve itself
  (Serve ships the body from the proxy to the replica in a separate actor call). Two more
  split what is left: a FastAPI ingress whose one route returns the same JSON (Serve's
  FastAPI path and FastAPI itself), and the product's own app shell (`create_api`:
  middlewares, error handlers, orjson) validating the body as `RouteBody` exactly as
  `/v1/route` does before returning it (everything of `/v1/route` but the routing);
* handle `route` vs an echo handle call, alternating call by call;
* one columnar /v1/route/batch call of 10,000 requests (raw float32 body), requests/s, and
  then alternating with the body-reading echo given the same 15 MB body (the transport's
  share: proxy, Serve's ingress, the client's upload and parse);
* 200 such calls in a row with Arrow answers: p50, p99 and the replica's generation-2
  garbage collections during them (from `/v1/stats`).

`TINYDANCER_CLUSTER_BENCH_S` sets the seconds of load per side (default 20; the CI smoke
run with --benchmark-disable uses 2).
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import threading
import time

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi import FastAPI
from ray import serve
from starlette.requests import Request

from cluster.config import AppArgs
from cluster.http import OrjsonResponse, create_api, read_server_timing
from cluster.http_models import RouteBody
from cluster.runner import LocalCluster

from ._compare import interleaved_medians, median_s, record

ECHO_BODY = {
    "request_id": "0" * 32,
    "agent": "mistralai/mixtral-8x7b-chat",
    "confidence": 0.5,
    "uncertainty": 0.1,
    "estimated_cost_usd": 0.0004,
    "estimated_latency_ms": 700.0,
    "expected_quality": 0.8,
    "similarity": 0.0,
    "reason": "echo",
    "alternatives": [],
    "model_version": "echo",
}


# The echoes reserve little CPU so that all of them fit beside the router on 2 CPUs (the
# reservation only schedules; it does not limit what a replica may use).
_ECHO_CPU = {"num_cpus": 0.1}


@serve.deployment(name="echo", max_ongoing_requests=64, ray_actor_options=_ECHO_CPU)
class Echo:
    async def __call__(self, request: object) -> dict:
        return ECHO_BODY

    async def route(self, body: object) -> dict:
        return ECHO_BODY


@serve.deployment(name="echo_body", max_ongoing_requests=64, ray_actor_options=_ECHO_CPU)
class EchoAfterReadingBody:
    async def __call__(self, request: Request) -> dict:
        await request.body()
        return ECHO_BODY


_bare_api = FastAPI()
_shell_api = create_api(AppArgs().max_body_bytes, lambda: None)  # the router's default limit


@_bare_api.post("/")
async def _bare_api_echo(body: dict) -> OrjsonResponse:
    return OrjsonResponse(ECHO_BODY)


@_shell_api.post("/")
async def _shell_api_echo(body: RouteBody) -> OrjsonResponse:
    body.to_engine()
    return OrjsonResponse(ECHO_BODY)


@serve.deployment(name="echo_fastapi", max_ongoing_requests=64, ray_actor_options=_ECHO_CPU)
@serve.ingress(_bare_api)
class EchoFastAPI:
    pass


@serve.deployment(name="echo_shell", max_ongoing_requests=64, ray_actor_options=_ECHO_CPU)
@serve.ingress(_shell_api)
class EchoShell:
    pass


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def running(request):
    disabled = request.config.getoption("benchmark_disable", False)
    seconds = float(os.environ.get("TINYDANCER_CLUSTER_BENCH_S", 2 if disabled else 20))
    args = AppArgs(history_path=tempfile.mkdtemp() + "/history.duckdb", num_replicas=1)
    cluster = LocalCluster.start(args, num_cpus=2, port=_port())
    cluster.wait_ready(compiled=True)
    echo = serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    serve.run(EchoAfterReadingBody.bind(), name="echo_body", route_prefix="/echo_body")
    serve.run(EchoFastAPI.bind(), name="echo_fastapi", route_prefix="/echo_fastapi")
    serve.run(EchoShell.bind(), name="echo_shell", route_prefix="/echo_shell")
    yield cluster, echo, seconds
    for name in ("echo_shell", "echo_fastapi", "echo_body", "echo"):
        serve.delete(name)
    cluster.stop()


def _load(url: str, body: dict, stop_at: float, latencies: list[float]) -> None:
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            reply = client.post(url, json=body)
            if reply.status_code == 200:
                latencies.append(time.perf_counter() - t0)


def _slice(url: str, body: dict, seconds: float, concurrency: int = 8) -> list[float]:
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_load, args=(url, body, stop_at, latencies))
        for _ in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


@pytest.mark.parametrize("concurrency", [1, 8])
def test_http_route_vs_echo(benchmark, running, concurrency):
    cluster, _, seconds = running
    benchmark.group = f"cluster HTTP, concurrency {concurrency}"
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)
    body = {"embedding": (vector / np.linalg.norm(vector)).tolist()}
    paths = {
        "route": "/v1/route",
        "echo": "/echo",
        "echo_body": "/echo_body",
        "echo_fastapi": "/echo_fastapi/",
        "echo_shell": "/echo_shell/",
    }
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    for path in paths.values():  # warm every path
        _slice(f"{cluster.url}{path}", body, 1.0, concurrency)
    slices = max(1, int(seconds / 2))

    def measure() -> None:
        for _ in range(slices):
            for name, path in paths.items():
                latencies[name].extend(_slice(f"{cluster.url}{path}", body, 2.0, concurrency))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    duration = 2.0 * slices
    info: dict[str, float] = {}
    for name, values in latencies.items():
        assert len(values) > 10, f"{name}: only {len(values)} successful requests"
        info[f"{name}_p50_s"] = statistics.median(values)
        info[f"{name}_p99_s"] = float(np.percentile(values, 99))
        info[f"{name}_rps"] = len(values) / duration
    baselines = ("echo", "echo_body", "echo_fastapi", "echo_shell")
    for baseline in baselines:
        info[f"p50_ratio_to_{baseline}"] = info["route_p50_s"] / info[f"{baseline}_p50_s"]
        info[f"throughput_ratio_to_{baseline}"] = info["route_rps"] / info[f"{baseline}_rps"]
    benchmark.extra_info |= info
    print(
        f"\nHTTP c={concurrency}: "
        + "; ".join(
            f"{name} p50 {info[f'{name}_p50_s'] * 1e3:.2f} ms, {info[f'{name}_rps']:.0f} req/s"
            for name in paths
        )
        + "".join(
            f"\n  route vs {name}: p50 ratio {info[f'p50_ratio_to_{name}']:.2f}, "
            f"throughput ratio {info[f'throughput_ratio_to_{name}']:.2f}"
            for name in baselines
        )
    )


def test_handle_route_vs_echo_handle(benchmark, running):
    cluster, echo, seconds = running
    benchmark.group = "cluster handle"
    vector = np.random.default_rng(1).normal(size=384).astype(np.float32)
    body = {"embedding": (vector / np.linalg.norm(vector)).tolist()}
    route = benchmark(lambda: cluster.handle.route.remote(body).result())
    assert route["agent"]
    rounds = int(max(50, seconds * 20))
    record(
        benchmark,
        interleaved_medians(
            {
                "tinydancer": lambda: cluster.handle.route.remote(body).result(),
                "echo_handle": lambda: echo.route.remote(body).result(),
            },
            rounds=rounds,
        ),
        "tinydancer",
    )


def test_batch_of_10k_requests(benchmark, running):
    cluster, _, _ = running
    benchmark.group = "cluster /v1/route/batch, 10k requests"
    block = np.random.default_rng(2).normal(size=(10_000, 384)).astype("<f4")
    raw = block.tobytes()
    with httpx.Client(timeout=120) as client:

        def call() -> dict:
            reply = client.post(
                f"{cluster.url}/v1/route/batch",
                content=raw,
                headers={"content-type": "application/octet-stream"},
            )
            assert reply.status_code == 200, reply.text[:300]
            return reply.json()

        out = benchmark.pedantic(call, rounds=9, warmup_rounds=1)
        # the transport floor: the same body to an echo that reads it, alternating with ours
        # and with ours answering an Arrow stream (read by pyarrow instead of parsed JSON)
        variants = {
            "batch": ("/v1/route/batch", "application/json", lambda r: r.json()),
            "batch_arrow": ("/v1/route/batch", ARROW, lambda r: _read_arrow(r.content)),
            "echo_body": ("/echo_body", "application/json", lambda r: r.json()),
        }
        paired: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(5 if median_s(benchmark) is not None else 1):
            for name, (path, accept, read) in variants.items():
                t0 = time.perf_counter()
                reply = client.post(
                    f"{cluster.url}{path}",
                    content=raw,
                    headers={"content-type": "application/octet-stream", "accept": accept},
                )
                read(reply)
                paired[name].append(time.perf_counter() - t0)
                assert reply.status_code == 200, reply.text[:300]
    assert len(out["agent"]) == 10_000
    median = median_s(benchmark)
    if median is not None:
        batch, arrow, floor = (statistics.median(paired[k]) for k in variants)
        benchmark.extra_info |= {
            "requests_per_s": 10_000 / median,
            "paired_batch_s": batch,
            "paired_batch_arrow_s": arrow,
            "paired_echo_body_s": floor,
            "above_transport_floor_s": batch - floor,
        }
        print(
            f"\nbatch: 10k requests in {median * 1e3:.0f} ms "
            f"({benchmark.extra_info['requests_per_s']:.0f} requests/s end to end); "
            f"alternating with an Arrow answer and an echo that reads the same 15 MB body: "
            f"{batch * 1e3:.0f} ms, Arrow {arrow * 1e3:.0f} ms ({10_000 / arrow:.0f} "
            f"requests/s), echo {floor * 1e3:.0f} ms (the echo's is Serve's and HTTP's share)"
        )


def test_batch_calls_in_a_row(benchmark, running):
    """The issue's measure of the columnar ledger over HTTP: 200 raw-body calls of 10k
    requests in a row, each answered as an Arrow stream. It reports their p50 and p99 and
    the replica's generation-2 collections during the calls, read from `/v1/stats` (its
    `gc.get_stats()`) before and after, and the same percentiles of the replica's own
    phases (its `Server-Timing` header: reading the body, routing, building the answer)
    and of the rest of each call (the wire, the ingress, the client). The CI smoke run
    makes 10 calls."""
    cluster, _, _ = running
    benchmark.group = "cluster /v1/route/batch, calls in a row"
    calls = 10 if benchmark.disabled else 200
    raw = np.random.default_rng(5).normal(size=(10_000, 384)).astype("<f4").tobytes()
    headers = {"content-type": "application/octet-stream", "accept": ARROW}
    latencies: list[float] = []
    phases: list[dict[str, float]] = []
    collections: list[list[int]] = []
    with httpx.Client(timeout=120) as client:

        def gc_counts() -> list[int]:
            reply = client.get(f"{cluster.url}/v1/stats")
            assert reply.status_code == 200, reply.text[:300]
            return [int(c) for c in reply.json()["replica_gc_collections"]]

        def run() -> None:
            collections.append(gc_counts())
            for _ in range(calls):
                t0 = time.perf_counter()
                reply = client.post(f"{cluster.url}/v1/route/batch", content=raw, headers=headers)
                assert reply.status_code == 200, reply.text[:300]
                _read_arrow(reply.content)
                latencies.append(time.perf_counter() - t0)
                phases.append(read_server_timing(reply.headers["server-timing"]))
            collections.append(gc_counts())

        client.post(f"{cluster.url}/v1/route/batch", content=raw, headers=headers)  # warm
        benchmark.pedantic(run, rounds=1, iterations=1)
    assert len(latencies) == calls and len(collections) == 2
    p50, p99 = float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))
    full = collections[1][2] - collections[0][2]
    split = {name: np.array([p[name] for p in phases]) for name in phases[0]}
    split["outside"] = np.array(latencies) * 1e3 - sum(split.values())
    percentiles = {name: np.percentile(ms, [50, 99]).tolist() for name, ms in split.items()}
    benchmark.extra_info |= {
        "calls": calls,
        "p50_s": p50,
        "p99_s": p99,
        "p99_over_p50": p99 / p50,
        "requests_per_s_at_p50": 10_000 / p50,
        "replica_gen2_collections": full,
        "phase_p50_p99_ms": percentiles,
    }
    print(
        f"\nbatch, {calls} calls in a row (Arrow answers): p50 {p50 * 1e3:.0f} ms "
        f"({10_000 / p50:,.0f} requests/s), p99 {p99 * 1e3:.0f} ms ({p99 / p50:.2f}x p50), "
        f"{full} generation-2 collections in the replica\n  p50 / p99 ms: "
        + ", ".join(f"{name} {mid:.0f} / {tail:.0f}" for name, (mid, tail) in percentiles.items())
    )


ARROW = "application/vnd.apache.arrow.stream"


def _read_arrow(content: bytes) -> int:
    table = pa.ipc.open_stream(content).read_all()
    assert table.num_rows == 10_000
    return table.num_rows


def _feedback_load(url: str, todo: list, stop_at: float, latencies: list[float]) -> None:
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < stop_at:
            try:
                request_id, agent = todo.pop()
            except IndexError:
                return
            t0 = time.perf_counter()
            body = {"request_id": request_id, "agent": agent, "success": True, "quality": 0.8}
            reply = client.post(url, json=body)
            if reply.status_code == 200 and reply.json().get("accepted"):
                latencies.append(time.perf_counter() - t0)


def test_feedback_vs_route_at_concurrency_16(benchmark, running):
    """The issue's measure: decisions from /v1/route/batch, then their feedback over HTTP at
    concurrency 16, against /v1/route at concurrency 16, in alternating 2-second slices."""
    cluster, _, seconds = running
    benchmark.group = "cluster HTTP, feedback vs route, concurrency 16"
    rng = np.random.default_rng(3)
    todo: list[tuple[str, str]] = []
    with httpx.Client(timeout=120) as client:
        for _ in range(max(1, int(seconds / 2))):
            block = rng.normal(size=(2_000 if seconds <= 2 else 10_000, 384)).astype("<f4")
            reply = client.post(
                f"{cluster.url}/v1/route/batch",
                content=block.tobytes(),
                headers={"content-type": "application/octet-stream"},
            )
            assert reply.status_code == 200, reply.text[:300]
            out = reply.json()
            todo.extend(zip(out["request_id"], out["agent"], strict=True))
    rng.shuffle(todo)  # type: ignore[arg-type]
    vector = rng.normal(size=384).astype(np.float32)
    body = {"embedding": (vector / np.linalg.norm(vector)).tolist()}
    latencies: dict[str, list[float]] = {"route": [], "feedback": []}
    slices = max(1, int(seconds / 2))

    def feedback_slice() -> list[float]:
        out: list[float] = []
        stop_at = time.monotonic() + 2.0
        threads = [
            threading.Thread(
                target=_feedback_load, args=(f"{cluster.url}/v1/feedback", todo, stop_at, out)
            )
            for _ in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def measure() -> None:
        for _ in range(slices):
            latencies["route"].extend(_slice(f"{cluster.url}/v1/route", body, 2.0, 16))
            latencies["feedback"].extend(feedback_slice())

    benchmark.pedantic(measure, rounds=1, iterations=1)
    info: dict[str, float] = {}
    for name, values in latencies.items():
        assert len(values) > 10, f"{name}: only {len(values)} successful requests"
        info[f"{name}_p50_ms"] = statistics.median(values) * 1e3
        info[f"{name}_p99_ms"] = float(np.percentile(values, 99)) * 1e3
        info[f"{name}_rps"] = len(values) / (2.0 * slices)
    info["feedback_throughput_ratio_to_route"] = info["feedback_rps"] / info["route_rps"]
    benchmark.extra_info |= info
    print(
        f"\nfeedback c=16: {info['feedback_rps']:.0f}/s p50 {info['feedback_p50_ms']:.1f} ms "
        f"p99 {info['feedback_p99_ms']:.1f} ms; route c=16: {info['route_rps']:.0f}/s p50 "
        f"{info['route_p50_ms']:.1f} ms; feedback/route throughput "
        f"{info['feedback_throughput_ratio_to_route']:.2f}"
    )
