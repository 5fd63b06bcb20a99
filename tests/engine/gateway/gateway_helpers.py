"""What the gateway tests share: a deterministic text encoder, agents on fake upstreams,
and a real HTTP server (uvicorn on 127.0.0.1, port chosen by the OS) serving the gateway
in its own thread, so the official `openai` client talks to it as to any endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from tinydancer.agents.agent import Agent, CostModel
from tinydancer.agents.breaker import BreakerConfig, CircuitBreaker
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.gateway import Gateway, GatewayConfig, LocalSink
from tinydancer.gateway.asgi import asgi_app
from tinydancer.gateway.fake_upstream import FakeBehaviour, FakeUpstreams
from tinydancer.history.store import HistoryConfig, HistoryStore
from tinydancer.model.weights import load_model, shipped_model_path

MODEL = load_model(shipped_model_path("agent"))
QUALITY = {"first": 0.9, "second": 0.7, "third": 0.5}  # priors: the routing order


class HashEncoder:
    """Words hashed into signed buckets of a 384-d unit vector: deterministic, no model."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), 384), np.float32)  # (N, 384)
        for i, text in enumerate(texts):
            for word in text.lower().split() or ["<empty>"]:
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[i, h % 384] += 1.0 if (h >> 16) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm > 0 else np.eye(1, 384, 0, np.float32)[0]
        return out


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Swap:
    """An ASGI app whose inner app each test replaces (one server per module)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@dataclass
class Server:
    url: str
    loop: asyncio.AbstractEventLoop
    swap: Swap

    def run(self, coroutine: Any, timeout_s: float = 60.0) -> Any:
        """Run a coroutine in the server's event loop (where the gateway lives)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)


@contextmanager
def http_server() -> Iterator[Server]:
    swap = Swap()
    config = uvicorn.Config(
        swap, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    for _ in range(3000):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("uvicorn did not start within 30 s")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(f"http://127.0.0.1:{port}", loop, swap)
    finally:
        server.should_exit = True
        thread.join(30)
        loop.close()


@dataclass
class Rig:
    """One test's agents, fake upstreams, router, history and gateway, served over HTTP."""

    server: Server
    fleet: FakeUpstreams
    router: AgentRouter
    gateway: Gateway
    history: HistoryStore
    clock: Clock
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.server.url}/v1"

    def openai(self, **options: Any) -> Any:
        import openai

        return openai.OpenAI(
            base_url=self.url, api_key="client-key", max_retries=0, timeout=60, **options
        )

    def attempts(self, request_id: str | None = None) -> list[tuple[Any, ...]]:
        where = "" if request_id is None else f"WHERE request_id = '{request_id}'"
        return self.history.query(
            "SELECT request_id, attempt, agent, failure_kind, mid_stream, continued, status "
            f"FROM attempts {where} ORDER BY seq"
        )

    def kinds(self, request_id: str) -> list[tuple[str, str | None]]:
        return [(row[2], row[3]) for row in self.attempts(request_id)]


@contextmanager
def rig(
    server: Server,
    tmp_path: Path,
    behaviours: Mapping[str, FakeBehaviour] | None = None,
    *,
    config: GatewayConfig | None = None,
    breaker: BreakerConfig | None = None,
    endpoint: Callable[[str, FakeUpstreams], dict[str, Any]] | None = None,
    agents: Mapping[str, dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
    seed: int = 0,
) -> Iterator[Rig]:
    """Agents first/second/third (routing prefers them in that order) on fake upstreams."""
    behaviours = behaviours or {name: FakeBehaviour() for name in QUALITY}
    clock = Clock()
    with FakeUpstreams(behaviours, seed=seed) as fleet:
        registry = AgentRegistry()
        for name in behaviours:
            fields = {"endpoint": fleet.endpoint(name).model_dump()}
            if endpoint is not None:
                fields["endpoint"] = {**fields["endpoint"], **endpoint(name, fleet)}
            spec = {
                "name": name,
                "expected_quality": QUALITY.get(name, 0.6),
                "cost": CostModel(input_per_1k_tokens_usd=0.001, output_per_1k_tokens_usd=0.002),
                **fields,
                **(agents or {}).get(name, {}),
            }
            registry.register(Agent.model_validate(spec))
        circuit = CircuitBreaker(breaker or BreakerConfig(), clock=clock)
        router = AgentRouter(
            registry,
            circuit,
            AgentRouterConfig(explore=False, warm=False),
            model=MODEL,
            clock=clock,
        )
        history = HistoryStore(
            HistoryConfig(path=tmp_path / "history.duckdb", max_buffer_age_s=3600)
        )
        env = dict(environ or {})
        gateway = Gateway(
            router,
            HashEncoder(),
            config or GatewayConfig(),
            sink=LocalSink(registry, circuit, history),
            environ=env,
        )
        server.swap.app = asgi_app(lambda: gateway)
        try:
            yield Rig(server, fleet, router, gateway, history, clock, env)
        finally:
            server.run(gateway.aclose())
            history.close()
