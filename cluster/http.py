"""The FastAPI app shell: error mapping, body-size limit, admin authentication.

Every error Tiny Dancer raises on purpose becomes a 4xx (or 503 when every eligible
agent's circuit is open) with a JSON body naming the field; FastAPI's own validation
errors keep their 422 with the field's location, unparseable JSON is a 400 on `body`.
Admin routes are authenticated by `AdminGate` before their body is read or validated.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.fast_path import FastRoutes, JsonFastPath, app_path
from tinydancer.errors import (
    AgentsUnavailableError,
    DuplicateAgentError,
    FeedbackError,
    GatewayError,
    InvalidRequestError,
    ModelFileError,
    NoEligibleAgentError,
    TinyDancerError,
    UnknownAgentError,
)
from tinydancer.text.weights import EncoderNotFoundError

__all__ = [
    "AdminAuth",
    "AdminGate",
    "BodyLimit",
    "NotAcceptableError",
    "OrjsonResponse",
    "create_api",
    "is_admin_route",
    "plain",
    "prefers",
    "query_options",
    "read_json",
    "read_server_timing",
    "server_timing",
    "status_for",
]


class OrjsonResponse(JSONResponse):
    """JSON via orjson (numpy-aware, several times faster than the standard encoder)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class NotAcceptableError(InvalidRequestError):
    """The request's `Accept` header names no representation this call answers in (406)."""


def prefers(accept: str, media_type: str) -> bool:
    """Whether an `Accept` header asks for `media_type` over JSON: it names it with q > 0,
    at a q no lower than JSON's (`application/json`, `application/*` or `*/*`; a tie goes
    to the type the client named). Without the type named, JSON, as always."""
    accept = accept.lower()
    if media_type not in accept:
        return False
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # an unreadable q is not consent
        weights[media] = max(weights.get(media, 0.0), weight)
    wanted = weights.get(media_type, 0.0)
    json = max(weights.get(t, 0.0) for t in ("application/json", "application/*", "*/*"))
    return wanted > 0 and wanted >= json


def status_for(error: TinyDancerError) -> int:
    if isinstance(error, NotAcceptableError):
        return 406
    if isinstance(error, UnknownAgentError):
        return 404
    if isinstance(error, DuplicateAgentError):
        return 409
    if isinstance(error, AgentsUnavailableError | EncoderNotFoundError):
        return 503  # (no encoder weights: text fields cannot be served, embedding ones can)
    if isinstance(error, FeedbackError):
        return {"unknown_request": 404, "replayed": 409}.get(error.reason, 422)
    if isinstance(error, NoEligibleAgentError | ModelFileError):
        return 422
    return 422


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes with 413 before reading them all."""

    def __init__(self, app: ASGIApp, limit: Any) -> None:
        self.app, self._limit = app, limit  # an int, or a callable returning the current limit

    @property
    def limit(self) -> int:
        return int(self._limit() if callable(self._limit) else self._limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, scope.get("path", ""))(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # a chunked body with no Content-Length
                raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await _too_large(self.limit, scope.get("path", ""))(scope, receive, send)


def _too_large(limit: int, path: str) -> JSONResponse:
    message = f"request body exceeds {limit} bytes"
    if is_openai_path(path):
        error = GatewayError(413, message, param="body", code="request_too_large")
        return JSONResponse(error.openai_body(), status_code=413)
    return JSONResponse(
        {"error": "PayloadTooLarge", "field": "body", "message": message}, status_code=413
    )


OPENAI_PATHS = ("/v1/chat/", "/v1/models")


def is_openai_path(path: str) -> bool:
    """The OpenAI-compatible routes answer errors in OpenAI's shape."""
    return path.startswith(OPENAI_PATHS)


class _TooLarge(StarletteHTTPException):
    """Raised from `receive`: FastAPI re-raises HTTP exceptions met while reading a body
    (any other error there becomes its 400 "error parsing the body")."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


_ADMIN_PATHS = (  # DOTALL: a name with a newline is still an admin path (401, not 404)
    (frozenset({"POST"}), re.compile(r"/v1/agents/?")),
    (frozenset({"PATCH", "DELETE", "PUT", "POST"}), re.compile(r"/v1/agents/.+", re.S)),
    (None, re.compile(r"/v1/admin(/.*)?", re.S)),  # None: every method
)


def is_admin_route(method: str, path: str) -> bool:
    """Whether a request changes agents or the service (and so needs the admin token)."""
    return any(
        (methods is None or method.upper() in methods) and pattern.fullmatch(path)
        for methods, pattern in _ADMIN_PATHS
    )


class AdminGate:
    """ASGI middleware: admin routes answer 401 before their body is read or validated.

    `auth` returns the replica's `AdminAuth` (None until it is configured: refused too).
    """

    def __init__(self, app: ASGIApp, auth: Callable[[], AdminAuth | None]) -> None:
        self.app, self._auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_admin_route(scope["method"], scope["path"]):
            auth = self._auth()
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            refusal = (auth or AdminAuth.refusing()).check_header(header.decode("latin-1"))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AdminAuth:
    """Bearer-token check for admin and agent-changing endpoints (constant-time compare)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    @classmethod
    def refusing(cls) -> AdminAuth:
        return cls("")  # an empty token never matches: check_header refuses empty tokens

    def check(self, request: Request) -> JSONResponse | None:
        return self.check_header(request.headers.get("authorization", ""))

    def check_header(self, header: str) -> JSONResponse | None:
        scheme, _, given = header.partition(" ")
        matches = hmac.compare_digest(given.encode(), self._token)
        if scheme.lower() != "bearer" or not self._token or not matches:
            return JSONResponse(
                {
                    "error": "Unauthorized",
                    "field": "authorization",
                    "message": "admin endpoints need 'Authorization: Bearer <admin token>'",
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None


def create_api(
    max_body_bytes: Any,
    admin_auth: Callable[[], AdminAuth | None],
    fast_routes: Callable[[], FastRoutes] | None = None,
) -> FastAPI:
    """The app shell. `fast_routes` returns the routes `JsonFastPath` answers (see there)."""
    api = FastAPI(
        title="Tiny Dancer",
        version="0.1.0",
        default_response_class=OrjsonResponse,
        description="Routes AI requests to the agent (or candidates) that should serve them.",
    )

    @api.exception_handler(TinyDancerError)
    async def _engine_error(_: Request, exc: TinyDancerError) -> JSONResponse:
        headers = {"Retry-After": "5"} if isinstance(exc, AgentsUnavailableError) else None
        return JSONResponse(exc.to_dict(), status_code=status_for(exc), headers=headers)

    @api.exception_handler(ValidationError)
    async def _model_error(_: Request, exc: ValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return JSONResponse(
            {"error": "InvalidRequestError", "field": field, "message": first.get("msg")},
            status_code=422,
        )

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            limit = max_body_bytes() if callable(max_body_bytes) else max_body_bytes
            return _too_large(int(limit), request.url.path)
        field = "body" if exc.status_code == 400 else None
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first route's methods
            headers["Allow"] = ", ".join(_allowed_methods(request))
        if is_openai_path(request.url.path):
            gateway_error = GatewayError(exc.status_code, str(exc.detail))
            return JSONResponse(
                gateway_error.openai_body(), status_code=exc.status_code, headers=headers or None
            )
        error = "InvalidRequestError" if exc.status_code == 400 else "HTTPError"
        return JSONResponse(
            {"error": error, "field": field, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers or None,
        )

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": e.get("msg"),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        broken = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if broken:  # FastAPI puts the byte offset where the field belongs
            where = broken[0].get("loc", ("body", "?"))[-1]
            reason = (broken[0].get("ctx") or {}).get("error", "JSON decode error")
            return JSONResponse(
                {
                    "error": "InvalidRequestError",
                    "field": "body",
                    "message": f"body: got malformed JSON ({reason} at byte {where}); "
                    "expected a JSON document",
                },
                status_code=400,
            )
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            {
                "error": "InvalidRequestError",
                "field": first["field"],
                "message": first["message"],
                "errors": errors,
            },
            status_code=422,
        )

    if fast_routes is not None:  # innermost: inside the body limit and the admin gate
        api.add_middleware(
            JsonFastPath,
            routes=fast_routes,
            handlers=api.exception_handlers,
            response=OrjsonResponse,
        )
    api.add_middleware(BodyLimit, limit=max_body_bytes)
    api.add_middleware(AdminGate, auth=admin_auth)  # added last: runs first
    return api


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app accepts for this request's path."""
    return sorted(set(_methods_for(request.app.router.routes, app_path(request.scope), "")))


def _methods_for(routes: list[Any], path: str, prefix: str) -> Any:
    """Methods of the routes matching `path`, walking routers included with `include_router`
    (FastAPI keeps them as nodes; Serve's class-based ingress puts every route in one)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _methods_for(included.routes, path, prefix + getattr(context, "prefix", ""))
            continue
        regex = getattr(route, "path_regex", None)
        if regex is not None and path.startswith(prefix) and regex.match(path[len(prefix) :]):
            yield from getattr(route, "methods", None) or ()


def plain(value: Any) -> Any:
    """A handle call's body with numpy arrays (what a Ray job holds) as lists, for the strict
    HTTP models; base64 strings and plain lists pass through."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def server_timing(**phases: float) -> str:
    """A `Server-Timing` header (W3C) from phase durations in seconds: `read;dur=24.20, ...`
    in milliseconds, so a client can tell the server's part of a slow call from the wire's."""
    return ", ".join(f"{name};dur={seconds * 1e3:.2f}" for name, seconds in phases.items())


def read_server_timing(header: str) -> dict[str, float]:
    """`server_timing`'s header back as {phase: milliseconds} (for clients and benchmarks)."""
    parts = (part.strip().partition(";dur=") for part in header.split(","))
    return {name: float(ms) for name, _, ms in parts}


def query_options(request: Request) -> dict[str, Any]:
    """Routing options of a raw-binary batch call, from its query string."""
    params = dict(request.query_params)
    options: dict[str, Any] = {}
    if "optimize_for" in params:
        options["optimize_for"] = params["optimize_for"]
    for name in ("willingness_to_pay", "expected_tokens"):
        if name in params:
            try:
                options[name] = float(params[name])
            except ValueError:
                raise InvalidRequestError(name, params[name], "a number") from None
    return options


async def read_json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise StarletteHTTPException(
            400, f"body: got malformed JSON ({exc}); expected a JSON document"
        ) from None
