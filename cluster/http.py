"""The FastAPI app shell: error mapping, body-size limit, admin authentication.

Every error Tiny Dancer raises on purpose becomes a 4xx (or 503 when every eligible
agent's circuit is open) with a JSON body naming the field; FastAPI's own validation
errors keep their 422 with the field's location.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    "BodyLimit",
    "OrjsonResponse",
    "create_api",
    "query_options",
    "read_json",
    "status_for",
]


class OrjsonResponse(JSONResponse):
    """JSON via orjson (numpy-aware, several times faster than the standard encoder)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def status_for(error: TinyDancerError) -> int:
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
            await self._reject(scope, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        message = f"request body exceeds {self.limit} bytes"
        if is_openai_path(scope.get("path", "")):
            error = GatewayError(413, message, param="body", code="request_too_large")
            response = JSONResponse(error.openai_body(), status_code=413)
        else:
            response = JSONResponse(
                {"error": "PayloadTooLarge", "field": "body", "message": message},
                status_code=413,
            )
        await response(scope={"type": "http"}, receive=None, send=send)  # type: ignore[arg-type]


def is_openai_path(path: str) -> bool:
    """The OpenAI-compatible routes answer errors in OpenAI's shape."""
    return path.startswith(OPENAI_PATHS)


OPENAI_PATHS = ("/v1/chat/", "/v1/models")


class _TooLarge(Exception):
    pass


class AdminAuth:
    """Bearer-token check for admin and agent-changing endpoints (constant-time compare)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self._token):
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


def create_api(max_body_bytes: Any) -> FastAPI:
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
        headers = getattr(exc, "headers", None)
        if is_openai_path(request.url.path):
            error = GatewayError(exc.status_code, str(exc.detail))
            return JSONResponse(error.openai_body(), status_code=exc.status_code, headers=headers)
        field = "body" if exc.status_code == 400 else None
        return JSONResponse(
            {"error": "HTTPError", "field": field, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers,
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

    api.add_middleware(BodyLimit, limit=max_body_bytes)
    return api


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
        raise InvalidRequestError("body", "malformed JSON", "a JSON document", str(exc)) from None
