"""The minimal ASGI app, driven directly (no server): lifespan, limits, unknown routes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tinydancer.gateway import GatewayConfig
from tinydancer.gateway.asgi import asgi_app


class StubGateway:
    def __init__(self) -> None:
        self.config = GatewayConfig(max_body_bytes=1024)
        self.closed = False
        self.bodies: list[bytes] = []

    async def aclose(self) -> None:
        self.closed = True

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": []}


async def call(app, scope: dict, messages: list[dict]) -> list[dict]:
    inbox = list(messages)
    sent: list[dict] = []

    async def receive() -> dict:
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_lifespan_builds_nothing_and_shutdown_closes_the_gateway():
    gateway = StubGateway()
    built: list[StubGateway] = []
    app = asgi_app(lambda: built.append(gateway) or gateway)
    lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = asyncio.run(call(app, {"type": "lifespan"}, lifespan))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert built == [] and not gateway.closed  # never used: nothing built, nothing to close
    http = {"type": "http", "method": "GET", "path": "/v1/models"}
    asyncio.run(call(app, http, [{"type": "http.request", "body": b""}]))
    asyncio.run(call(app, {"type": "lifespan"}, lifespan))
    assert built == [gateway] and gateway.closed


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole_and_unknown_routes_are_404():
    app = asgi_app(StubGateway)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
    parts = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 10
    sent = asyncio.run(call(app, scope, parts))
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "request_too_large"
    headers = dict(sent[0]["headers"])
    assert headers[b"x-tinydancer-request-id"]
    missing = asyncio.run(
        call(app, {**scope, "path": "/v1/embeddings"}, [{"type": "http.request"}])
    )
    assert missing[0]["status"] == 404 and b"unknown_url" in missing[1]["body"]
