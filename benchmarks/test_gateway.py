"""The gateway in process against calling the fake upstream directly (same run, same loop).

One fake OpenAI-compatible upstream on loopback answering at once (20 words; streamed as
22 chunks), served from a child process (`FakeUpstreamProcess`: it does not share the
benchmark's interpreter). In the benchmark's event loop, call by call in alternation
(`interleaved_medians` style):

* `direct`: an httpx.AsyncClient posts the same body to the upstream and reads the answer
  (non-streaming: the JSON; streaming: every line up to `[DONE]`);
* `gateway`: `Gateway.chat_completions(body bytes)` and the answer read the same way
  (routing over 3 agents, the forward, the relay, the outcome recorded in the registry,
  breaker and ledger; no history);
* `routing`: parsing the body and planning the request alone (encoder cache hit + one
  AgentRouter decision), the part of the gateway's overhead that is not I/O.

Run with the router's snapshot rebuilt for every request (`snapshot_max_age_s` 0, the
default: each recorded outcome changes the registry) and reused for up to 1 s. The chat's
embedding is cached (a dictionary in front of a hashing encoder: what the
real encoder's cache gives on a repeated text). Concurrency 1. `extra_info` holds p50 / p99
of each path, time to first event for streams, and the gateway's overhead over `direct`.
`TINYDANCER_GATEWAY_BENCH_ROUNDS` sets the rounds per path (default 400; 20 under
--benchmark-disable).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tinydancer.agents.agent import Agent, CostModel
from tinydancer.agents.breaker import CircuitBreaker
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.gateway import Gateway
from tinydancer.gateway.contract import parse_chat_request
from tinydancer.gateway.fake_upstream import FakeBehaviour, FakeUpstreamProcess
from tinydancer.gateway.planning import plan_request

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Which of these is a prime number: 21, 27, 29 or 33?"},
]
AGENTS = ("primary", "secondary", "tertiary")


class CachedHashEncoder:
    """A hashing encoder behind a text cache (every benchmark call is a cache hit)."""

    def __init__(self) -> None:
        self.cache: dict[str, np.ndarray] = {}

    def _one(self, text: str) -> np.ndarray:
        vector = np.zeros(384, np.float32)
        for word in text.lower().split() or ["<empty>"]:
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
            vector[h % 384] += 1.0 if (h >> 16) & 1 else -1.0
        return vector / max(float(np.linalg.norm(vector)), 1e-6)

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            row = self.cache.get(text)
            if row is None:
                row = self.cache[text] = self._one(text)
            rows.append(row)
        return np.stack(rows)  # (N, 384)


@pytest.fixture(scope="module", params=[0.0, 1.0], ids=["fresh-snapshot", "snapshot-1s"])
def setup(request) -> Iterator[dict[str, Any]]:
    disabled = request.config.getoption("benchmark_disable", False)
    rounds = int(os.environ.get("TINYDANCER_GATEWAY_BENCH_ROUNDS", 20 if disabled else 400))
    fleet = FakeUpstreamProcess({name: FakeBehaviour() for name in AGENTS}).start()
    registry = AgentRegistry()
    for i, name in enumerate(AGENTS):
        registry.register(
            Agent(
                name=name,
                endpoint=fleet.endpoint(name),
                expected_quality=0.9 - 0.1 * i,
                cost=CostModel(input_per_1k_tokens_usd=0.0005, output_per_1k_tokens_usd=0.0015),
            )
        )
    # 0 s: every outcome changes the registry, so each request rebuilds the routing
    # snapshot; 1 s: the snapshot is reused for up to a second (what replicas do anyway)
    config = AgentRouterConfig(explore=False, snapshot_max_age_s=request.param)
    router = AgentRouter(registry, CircuitBreaker(), config)
    encoder = CachedHashEncoder()
    loop = asyncio.new_event_loop()
    gateway = Gateway(router, encoder)
    direct = httpx.AsyncClient(timeout=30)
    try:
        yield {
            "rounds": rounds,
            "loop": loop,
            "gateway": gateway,
            "direct": direct,
            "url": f"{fleet.base_url('primary')}/chat/completions",
            "router": router,
            "encoder": encoder,
        }
    finally:
        loop.run_until_complete(gateway.aclose())
        loop.run_until_complete(direct.aclose())
        loop.close()
        fleet.stop()


def _paths(s: dict[str, Any], stream: bool) -> dict[str, Callable[[], Awaitable[float]]]:
    """Each path returns its time to the first event (s); the caller times the whole call."""
    body = {"model": "tinydancer/quality", "messages": MESSAGES, "stream": stream}
    gateway_body = orjson.dumps(body)
    direct_body = orjson.dumps({**body, "model": "primary"})
    gateway, client, url = s["gateway"], s["direct"], s["url"]

    async def direct() -> float:
        start = time.perf_counter()
        if not stream:
            response = await client.post(
                url, content=direct_body, headers={"content-type": "application/json"}
            )
            orjson.loads(response.content)
            return time.perf_counter() - start
        first = 0.0
        async with client.stream(
            "POST", url, content=direct_body, headers={"content-type": "application/json"}
        ) as response:
            async for line in response.aiter_lines():  # to the body's end: the connection is reused
                if not first and line.startswith("data: "):
                    first = time.perf_counter() - start
        return first

    async def through_gateway() -> float:
        start = time.perf_counter()
        response = await gateway.chat_completions(gateway_body)
        assert response.status == 200, response.body
        if response.events is None:
            response.body_bytes()
            return time.perf_counter() - start
        first = 0.0
        async for _ in response.events:
            if not first:
                first = time.perf_counter() - start
        return first

    async def routing() -> float:
        start = time.perf_counter()
        chat = parse_chat_request(gateway_body, gateway.config)
        plan_request(
            chat,
            request_id="0" * 32,
            config=gateway.config,
            router=s["router"],
            encoder=s["encoder"],
            environ={},
            output_tokens=None,
        )
        return time.perf_counter() - start

    return {"direct": direct, "gateway": through_gateway, "routing": routing}


def _interleaved(
    s: dict[str, Any], paths: dict[str, Callable[[], Awaitable[float]]]
) -> dict[str, Any]:
    loop = s["loop"]
    for _ in range(5):
        for fn in paths.values():
            loop.run_until_complete(fn())
    total: dict[str, list[float]] = {name: [] for name in paths}
    first: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(s["rounds"]):
        for name, fn in paths.items():
            start = time.perf_counter()
            first[name].append(loop.run_until_complete(fn()))
            total[name].append(time.perf_counter() - start)
    out: dict[str, Any] = {}
    for name in paths:
        t, f = np.asarray(total[name]) * 1e3, np.asarray(first[name]) * 1e3
        out[f"{name}.p50_ms"] = float(np.percentile(t, 50))
        out[f"{name}.p99_ms"] = float(np.percentile(t, 99))
        out[f"{name}.first_event_p50_ms"] = float(np.percentile(f, 50))
    out["gateway_overhead_p50_ms"] = out["gateway.p50_ms"] - out["direct.p50_ms"]
    out["gateway_overhead_p99_ms"] = out["gateway.p99_ms"] - out["direct.p99_ms"]
    out["ttft_overhead_p50_ms"] = (
        out["gateway.first_event_p50_ms"] - out["direct.first_event_p50_ms"]
    )
    out["rounds"] = s["rounds"]
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gateway_against_the_upstream_directly(benchmark, setup, stream: bool):
    paths = _paths(setup, stream)
    figures = _interleaved(setup, paths)
    benchmark.extra_info.update(figures)
    loop = setup["loop"]
    benchmark.pedantic(
        lambda: loop.run_until_complete(paths["gateway"]()),
        rounds=max(setup["rounds"] // 4, 5),
        warmup_rounds=2,
    )
    age = setup["router"].config.snapshot_max_age_s
    print(
        f"\n{'stream' if stream else 'json'} (snapshot_max_age_s {age:g}): direct p50 {figures['direct.p50_ms']:.2f} ms "
        f"(p99 {figures['direct.p99_ms']:.2f}), gateway p50 {figures['gateway.p50_ms']:.2f} ms "
        f"(p99 {figures['gateway.p99_ms']:.2f}), overhead p50 {figures['gateway_overhead_p50_ms']:.2f} ms; "
        f"first event direct {figures['direct.first_event_p50_ms']:.2f} / gateway "
        f"{figures['gateway.first_event_p50_ms']:.2f} ms; routing alone p50 {figures['routing.p50_ms']:.3f} ms"
    )
    assert setup["router"].registry.metrics("primary").requests > 0
