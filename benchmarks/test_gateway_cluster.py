"""The gateway in the cluster against Serve's own floor and the upstream itself (same run).

Three paths to one fake upstream that answers at once (a child process, so that it does
not share an interpreter with the clients):

* `direct`: the client calls the upstream;
* `bare`: a Serve deployment that forwards the body to the upstream with one pooled
  `httpx.AsyncClient` and relays the answer (streamed or not), doing nothing else: what
  any gateway on Serve costs before it routes;
* `gateway`: Tiny Dancer's `/v1/chat/completions` (contract checks, the text encoder with
  its cache — the same prompt every time —, routing, forwarding, relaying, outcomes).

At concurrency 1 and 16, streaming and not, in alternating 2-second slices so that every
path sees the same machine: p50 / p99 latency, time to first event (streams) and
requests/s. `TINYDANCER_CLUSTER_BENCH_S` sets the seconds per path (default 12; the CI
smoke run with --benchmark-disable uses 2).

And text the encoder has not seen: the gateway at concurrency 1 with a new prompt every
request, beside the encoder's own time for the same kind of prompt in this process.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.responses import Response, StreamingResponse
from ray import serve
from starlette.requests import Request

from cluster.config import AppArgs
from cluster.runner import LocalCluster
from tinydancer.gateway.fake_upstream import FakeBehaviour, FakeUpstreamProcess

from .test_cluster import _port

BODY = {"model": "up", "messages": [{"role": "user", "content": "how far is the moon?"}]}


@serve.deployment(name="bare", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
class BareForwarder:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.client = httpx.AsyncClient(timeout=60)

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        upstream = self.client.build_request(
            "POST", self.upstream, content=body, headers={"content-type": "application/json"}
        )
        reply = await self.client.send(upstream, stream=True)
        if reply.headers.get("content-type", "").startswith("text/event-stream"):

            async def relay():
                try:
                    async for chunk in reply.aiter_raw():
                        yield chunk
                finally:
                    await reply.aclose()

            return StreamingResponse(relay(), media_type="text/event-stream")
        content = await reply.aread()
        return Response(content, status_code=reply.status_code, media_type="application/json")


@pytest.fixture(scope="module")
def paths(request):
    disabled = request.config.getoption("benchmark_disable", False)
    seconds = float(os.environ.get("TINYDANCER_CLUSTER_BENCH_S", 2 if disabled else 12))
    with FakeUpstreamProcess({"up": FakeBehaviour(tokens=20)}, seed=1) as fleet:
        agent = {
            "name": "up",
            "expected_quality": 0.9,
            "endpoint": fleet.endpoint("up").model_dump(mode="json"),
        }
        args = AppArgs(
            history_path=tempfile.mkdtemp() + "/history.duckdb", num_replicas=1, agents=[agent]
        )
        cluster = LocalCluster.start(args, num_cpus=2, port=_port())
        cluster.wait_ready(compiled=True)
        upstream = f"{fleet.base_url('up')}/chat/completions"
        serve.run(BareForwarder.bind(upstream), name="bare", route_prefix="/bare")
        yield (
            {
                "direct": upstream,
                "bare": f"{cluster.url}/bare",
                "gateway": f"{cluster.url}/v1/chat/completions",
            },
            seconds,
        )
        serve.delete("bare")
        cluster.stop()


def _client(url: str, body: dict, stream: bool, stop_at: float, out: list, fresh=None) -> None:
    """`fresh`: a callable giving a new body for each request (uncached text)."""
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < stop_at:
            body = fresh() if fresh else body
            t0 = time.perf_counter()
            first = None
            if stream:
                with client.stream("POST", url, json=body) as reply:
                    for _ in reply.iter_raw():
                        first = first or time.perf_counter() - t0
                    ok = reply.status_code == 200
            else:
                ok = client.post(url, json=body).status_code == 200
            if ok:
                out.append((time.perf_counter() - t0, first))


def _slice(url: str, body: dict, stream: bool, seconds: float, concurrency: int) -> list:
    out: list = []
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client, args=(url, body, stream, stop_at, out))
        for _ in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("concurrency", [1, 16])
def test_gateway_vs_bare_forwarder_vs_direct(benchmark, paths, concurrency, stream):
    urls, seconds = paths
    benchmark.group = (
        f"gateway in the cluster, concurrency {concurrency}, {'stream' if stream else 'json'}"
    )
    body = {**BODY, "stream": True} if stream else BODY
    gateway_body = {**body, "model": "tinydancer/auto"}
    bodies = {"direct": body, "bare": body, "gateway": gateway_body}
    for name, url in urls.items():  # warm every path (and the encoder's cache)
        assert _slice(url, bodies[name], stream, 0.5, 1), f"{name}: no successful request"
    samples: dict[str, list] = {name: [] for name in urls}
    slices = max(1, int(seconds / 2))

    def measure() -> None:
        for _ in range(slices):
            for name, url in urls.items():
                samples[name].extend(_slice(url, bodies[name], stream, 2.0, concurrency))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    info: dict[str, float] = {}
    for name, values in samples.items():
        assert len(values) > 5, f"{name}: only {len(values)} successful requests"
        latency = [v[0] for v in values]
        info[f"{name}_p50_ms"] = statistics.median(latency) * 1e3
        info[f"{name}_p99_ms"] = float(np.percentile(latency, 99)) * 1e3
        info[f"{name}_rps"] = len(values) / (2.0 * slices)
        if stream:
            info[f"{name}_ttft_p50_ms"] = statistics.median(v[1] for v in values) * 1e3
    info["p50_ratio_to_bare"] = info["gateway_p50_ms"] / info["bare_p50_ms"]
    info["p99_ratio_to_bare"] = info["gateway_p99_ms"] / info["bare_p99_ms"]
    info["throughput_ratio_to_bare"] = info["gateway_rps"] / info["bare_rps"]
    info["overhead_over_direct_p50_ms"] = info["gateway_p50_ms"] - info["direct_p50_ms"]
    benchmark.extra_info |= info
    print(
        f"\nc={concurrency} {'stream' if stream else 'json'}: "
        + "; ".join(
            f"{n} p50 {info[f'{n}_p50_ms']:.2f} p99 {info[f'{n}_p99_ms']:.2f} ms"
            + (f" ttft {info[f'{n}_ttft_p50_ms']:.2f}" if stream else "")
            + f" {info[f'{n}_rps']:.0f}/s"
            for n in urls
        )
        + f"\n  gateway/bare p50 {info['p50_ratio_to_bare']:.2f}, p99 "
        f"{info['p99_ratio_to_bare']:.2f}, throughput {info['throughput_ratio_to_bare']:.2f}; "
        f"over direct +{info['overhead_over_direct_p50_ms']:.2f} ms p50"
    )


def _prompt(rng: np.random.Generator) -> str:
    """About 80 tokens (the shared prompts' median), never the same twice."""
    words = ("moon", "orbit", "distance", "light", "tide", "planet", "measure", "why", "far")
    return f"{rng.integers(1 << 62)} " + " ".join(rng.choice(words, 60))


def test_gateway_with_text_the_encoder_has_not_seen(benchmark, paths, encoder):
    urls, seconds = paths
    benchmark.group = "gateway in the cluster, uncached text"
    rng = np.random.default_rng(7)

    def fresh() -> dict:
        return {
            **BODY,
            "model": "tinydancer/auto",
            "messages": [{"role": "user", "content": _prompt(rng)}],
        }

    uncached: list = []
    cached: list = []
    encode_s: list[float] = []
    slices = max(1, int(seconds / 2))

    def measure() -> None:
        for _ in range(slices):
            _client(urls["gateway"], fresh(), False, time.monotonic() + 2.0, uncached, fresh)
            gateway_body = {**BODY, "model": "tinydancer/auto"}
            _client(urls["gateway"], gateway_body, False, time.monotonic() + 2.0, cached)
            stop_at = time.monotonic() + 1.0
            while time.monotonic() < stop_at:
                text = _prompt(rng)
                t0 = time.perf_counter()
                encoder.encode([text])
                encode_s.append(time.perf_counter() - t0)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    assert len(uncached) > 3 and len(cached) > 3 and encode_s
    info = {
        "gateway_uncached_p50_ms": statistics.median(v[0] for v in uncached) * 1e3,
        "gateway_cached_p50_ms": statistics.median(v[0] for v in cached) * 1e3,
        "encoder_alone_p50_ms": statistics.median(encode_s) * 1e3,
    }
    benchmark.extra_info |= info
    print(
        f"\nuncached text: gateway p50 {info['gateway_uncached_p50_ms']:.2f} ms, cached "
        f"{info['gateway_cached_p50_ms']:.2f} ms, the encoder alone (this process, one "
        f"~80-token prompt) {info['encoder_alone_p50_ms']:.2f} ms"
    )
