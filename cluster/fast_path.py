"""JsonFastPath: the hot JSON routes of the router replica answered without FastAPI's
per-request machinery (added by `cluster.http.create_api`, inside its body limit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FastRoutes", "JsonFastPath", "app_path"]

FastRoutes = Mapping[str, tuple[type[BaseModel], Callable[[Any], Awaitable[Any]]]]


class JsonFastPath:
    """ASGI middleware: a POST to one of `routes` (path -> (body model, handler)) whose JSON
    body parses and validates is answered here, without FastAPI's routing, dependency solving
    and standard-library JSON parsing (on /v1/route as much work as the routing itself).

    Only the successful parse takes this path: another method, path or content type, a
    body that does not parse (orjson) or validate (the route's model, exactly as FastAPI
    validates it) goes on to the app with the body replayed, so every such error is the
    app's own. The handler's return value is answered as `response(value)`; an exception it
    raises is answered by the app's handler for it (re-raised when there is none).
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Callable[[], FastRoutes],
        handlers: Mapping[Any, Callable[..., Any]],
        response: Callable[[Any], Response],
    ) -> None:
        self.app, self._routes, self._handlers, self._response = app, routes, handlers, response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST" and _is_json(scope):
            route = self._routes().get(app_path(scope))
        if route is None:
            await self.app(scope, receive, send)
            return
        model, handler = route
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nothing to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            body = model.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError):
            await self.app(scope, _replaying(raw, receive), send)
            return
        try:
            response = self._response(await handler(body))
        except Exception as exc:
            answer = next(
                (self._handlers[k] for k in type(exc).__mro__ if k in self._handlers), None
            )
            if answer is None:
                raise
            response = await answer(Request(scope, receive), exc)
        await response(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    """Whether the body is declared `application/json` (FastAPI parses no other body
    without a content type; `+json` types are left to it)."""
    value = dict(scope.get("headers") or []).get(b"content-type", b"")
    return value.split(b";")[0].strip().lower() == b"application/json"


def app_path(scope: Scope) -> str:
    """The request's path within the app (without the prefix it is mounted at)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _replaying(raw: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay
