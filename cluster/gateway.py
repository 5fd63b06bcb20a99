"""The gateway's HTTP side in a router replica: the engine's `GatewayResponse` as a
Starlette response (JSON, or SSE relayed as it arrives) and the OpenAPI description of
the OpenAI-compatible routes. What its requests leave behind travels in
`cluster.outboxes`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from tinydancer.gateway.gateway import GatewayResponse

__all__ = ["CHAT_OPENAPI", "OPENAI_ERROR_RESPONSES", "to_http"]


class OpenAIError(BaseModel):
    model_config = ConfigDict(extra="allow")
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """Errors of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIError


OPENAI_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorBody, "description": text}
    for code, text in (
        (400, "invalid request (param names the field)"),
        (404, "unknown model"),
        (413, "request body too large"),
        (429, "every eligible agent is rate limited (Retry-After)"),
        (502, "the upstream's answer was unusable"),
        (503, "no agent available (Retry-After)"),
        (504, "the deadline passed"),
    )
}
CHAT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "messages"],
                    "properties": {
                        "model": {"type": "string", "description": "a profile or an agent"},
                        "messages": {"type": "array", "items": {"type": "object"}},
                        "stream": {"type": "boolean"},
                        "tinydancer": {"type": "object", "description": "routing options"},
                    },
                }
            }
        },
    }
}


def to_http(response: GatewayResponse) -> Response:
    """The engine's response as Starlette's: JSON, or the SSE events relayed as they come."""
    if response.events is None:
        return Response(
            response.body_bytes(),
            status_code=response.status,
            headers=response.headers,
            media_type="application/json",
        )
    return StreamingResponse(
        response.events,
        status_code=response.status,
        headers=response.headers,
        media_type="text/event-stream",
    )
