"""A minimal ASGI application over a `Gateway`, for in-process users and tests.

    app = asgi_app(lambda: Gateway(router, encoder))   # built on first request, in the server's loop
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `POST /v1/feedback` (`{"request_id",
"quality", "agent"?}`: a gateway answer's quality). The gateway is built lazily so that its
httpx client belongs to the server's event loop. Bodies over the gateway's
`max_body_bytes` get 413 without being read whole; a client that disconnects
mid-stream closes the upstream attempt (recorded as cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from tinydancer._ids import new_request_id
from tinydancer.errors import FeedbackError, GatewayError, TinyDancerError
from tinydancer.gateway.gateway import REQUEST_ID_HEADER, Gateway, GatewayResponse

__all__ = ["asgi_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_FEEDBACK_STATUS = {"unknown_request": 404, "replayed": 409, "no_answer": 409}


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it grows past `limit` bytes."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send_json(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    raw = orjson.dumps(body)
    pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    pairs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": raw})


async def _stream(
    response: GatewayResponse, events: AsyncIterator[bytes], receive: Receive, send: Send
) -> None:
    headers = [(b"content-type", b"text/event-stream")]
    headers += [(k.encode(), v.encode()) for k, v in response.headers.items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        async for event in events:
            if watcher.done():
                break
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
        await response.aclose()


def _request_id() -> dict[str, str]:
    return {REQUEST_ID_HEADER: new_request_id()}


def asgi_app(factory: Callable[[], Gateway]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app serving the gateway that `factory()` builds on the first request."""
    holder: list[Gateway] = []

    def gateway() -> Gateway:
        if not holder:
            holder.append(factory())
        return holder[0]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if holder:
                        await holder[0].aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        gw = gateway()
        method, path = scope["method"], scope["path"]
        if path == "/v1/models" and method == "GET":
            await _send_json(send, 200, gw.models())
        elif path == "/v1/chat/completions" and method == "POST":
            raw = await _read_body(receive, gw.config.max_body_bytes)
            if raw is None:
                error = GatewayError(
                    413,
                    f"request body larger than the {gw.config.max_body_bytes} bytes allowed",
                    code="request_too_large",
                )
                await _send_json(send, 413, error.openai_body(), _request_id())
                return
            response = await gw.chat_completions(raw)
            if response.events is None:
                await _send_json(send, response.status, response.body, response.headers)
            else:
                await _stream(response, response.events, receive, send)
        elif path == "/v1/feedback" and method == "POST":
            await _feedback(gw, receive, send)
        else:
            error = GatewayError(404, f"no route {method} {path}", code="unknown_url")
            await _send_json(send, 404, error.openai_body(), _request_id())

    return app


async def _feedback(gw: Gateway, receive: Receive, send: Send) -> None:
    raw = await _read_body(receive, 65_536)
    try:
        body = orjson.loads(raw or b"")
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            raise ValueError("expected a JSON object with request_id and quality")
        quality = body.get("quality")
        if isinstance(quality, bool) or not isinstance(quality, int | float):
            raise ValueError("quality must be a number in [0, 1]")
        agent = body.get("agent")
        result = gw.feedback(
            body["request_id"], float(quality), agent if isinstance(agent, str) else None
        )
    except FeedbackError as exc:  # before ValueError: it is one
        await _send_json(send, _FEEDBACK_STATUS.get(exc.reason, 400), exc.to_dict())
        return
    except TinyDancerError as exc:
        await _send_json(send, 422, exc.to_dict())
        return
    except ValueError as exc:  # bad JSON or a bad field
        await _send_json(send, 400, {"error": "InvalidRequestError", "message": str(exc)})
        return
    await _send_json(send, 200, result)
