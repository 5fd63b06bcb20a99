"""Fake OpenAI-compatible upstreams on 127.0.0.1 for tests, benchmarks and the demo.

One small HTTP/1.1 server (keep-alive, raw asyncio) per agent, each with its own port:
`POST /v1/chat/completions` (streaming and not) and `GET /v1/models`. Each behaves as its
`FakeBehaviour` says: latency to the first byte, token rate, answer length, errors (500),
rate limits (429 with Retry-After), mid-stream drops, hangs, garbage; every random choice
is drawn from (seed, agent, request number), so a run is reproducible.

    with FakeUpstreams({"fast": FakeBehaviour(), "flaky": FakeBehaviour(error_rate=0.5)}, seed=7) as fleet:
        fleet.endpoint("fast")            # an Endpoint to register the agent with
        fleet.configure("fast", error_rate=1.0)   # an outage, from now on
        fleet.quality("fast", messages)   # the quality of its answer to those messages

An answer is words `"<i>:<agent>"`; a request whose last two messages are a partial
assistant answer and a user message continues the numbering after the partial's words,
so a test can check a stitched answer. `quality()` is a deterministic function of the
agent's `quality`, the seed and the last user message (what a demo reports as feedback).

`FakeUpstreamProcess` serves the same fleet from a child process (`python -m
tinydancer.gateway.fake_upstream SPEC`), so that a benchmark's upstreams do not share
its interpreter; it answers the same questions except `configure`, `served` and
`requests`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from tinydancer.agents.endpoint import Endpoint
from tinydancer.gateway.fake_server import FakeBehaviour, FakeServer, RecordedRequest, message_texts

__all__ = [
    "FakeBehaviour",
    "FakeUpstreamProcess",
    "FakeUpstreams",
    "RecordedRequest",
    "answer_quality",
]


def answer_quality(quality: float, seed: int, name: str, messages: Any) -> float:
    """`quality` ± 0.1, fixed by the seed, the agent and the last user message."""
    texts = message_texts(messages)
    last = next(
        (t for m, t in zip(reversed(messages), reversed(texts), strict=True)
         if isinstance(m, dict) and m.get("role") == "user"),
        "",
    )  # fmt: skip
    digest = hashlib.blake2b(f"{seed}:{name}:{last}".encode(), digest_size=8).digest()
    noise = int.from_bytes(digest, "little") / 2**64 * 2 - 1  # in [-1, 1)
    return min(1.0, max(0.0, quality + 0.1 * noise))


class FakeUpstreams:
    """Fake agents on loopback ports, served from a background thread (or your loop)."""

    def __init__(
        self, behaviours: Mapping[str, FakeBehaviour], *, seed: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.behaviours: dict[str, FakeBehaviour] = dict(behaviours)
        self.seed = seed
        self.host = host
        self._servers = {name: FakeServer(self.behaviours, name, seed) for name in self.behaviours}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- in the caller's loop -------------------------------------------------------------------
    async def start_async(self) -> FakeUpstreams:
        for server in self._servers.values():
            await server.start(self.host)
        return self

    async def stop_async(self) -> None:
        for server in self._servers.values():
            await server.stop()

    # -- in a background thread -----------------------------------------------------------------
    def start(self) -> FakeUpstreams:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start_async())
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-upstreams", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("fake upstreams did not start within 30 s")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeUpstreams:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests and demos ask -----------------------------------------------------------
    def port(self, name: str) -> int:
        return self._servers[name].port

    def base_url(self, name: str) -> str:
        return f"http://{self.host}:{self.port(name)}/v1"

    def endpoint(self, name: str, **fields: Any) -> Endpoint:
        """An Endpoint for `name` (extra fields: api_key_env, timeout_s, headers)."""
        return Endpoint(base_url=self.base_url(name), model=self._servers[name].model, **fields)

    def configure(self, name: str, **changes: Any) -> None:
        """Change how `name` behaves from its next request on (a drift, an outage...)."""
        self.behaviours[name] = replace(self.behaviours[name], **changes)

    def served(self, name: str) -> int:
        """Chat-completion requests `name` received."""
        return self._servers[name].count

    def requests(self, name: str) -> list[RecordedRequest]:
        """The last 200 requests `name` received (method, path, headers, body)."""
        return list(self._servers[name].recorded)

    def quality(self, name: str, messages: Any) -> float:
        """The quality of `name`'s answer to `messages` (see `answer_quality`)."""
        return answer_quality(self.behaviours[name].quality, self.seed, name, messages)


class FakeUpstreamProcess:
    """The same fleet, served by a child process (start / stop, or a with block)."""

    def __init__(
        self, behaviours: Mapping[str, FakeBehaviour], *, seed: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.behaviours = dict(behaviours)
        self.seed, self.host = seed, host
        self.ports: dict[str, int] = {}
        self._child: subprocess.Popen[str] | None = None

    def start(self) -> FakeUpstreamProcess:
        spec = {
            "seed": self.seed,
            "host": self.host,
            "behaviours": {n: asdict(b) for n, b in self.behaviours.items()},
        }
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tinydancer.gateway.fake_upstream", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._child.stdout.readline() if self._child.stdout is not None else ""
        if not line:
            self.stop()
            raise RuntimeError("the fake upstream process did not start")
        self.ports = json.loads(line)
        return self

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            child.stdin.close()  # the child serves until its stdin closes
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(30)

    def __enter__(self) -> FakeUpstreamProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def base_url(self, name: str) -> str:
        return f"http://{self.host}:{self.ports[name]}/v1"

    def endpoint(self, name: str, **fields: Any) -> Endpoint:
        model = self.behaviours[name].model or name
        return Endpoint(base_url=self.base_url(name), model=model, **fields)

    def quality(self, name: str, messages: Any) -> float:
        return answer_quality(self.behaviours[name].quality, self.seed, name, messages)


def _serve(spec: dict[str, Any]) -> None:
    """The child process: serve, print the ports as one JSON line, stop when stdin closes."""
    behaviours = {n: FakeBehaviour(**b) for n, b in spec["behaviours"].items()}
    fleet = FakeUpstreams(behaviours, seed=int(spec["seed"]), host=spec["host"])

    async def run() -> None:
        await fleet.start_async()
        print(json.dumps({n: fleet.port(n) for n in behaviours}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await fleet.stop_async()

    asyncio.run(run())


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
