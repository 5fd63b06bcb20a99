"""The gateway in a router replica: the engine's `Gateway` on the replica's own router, and
the sink that carries what its requests leave behind to the actors in batches.

Request path (no actor call): contract checks -> text encoder -> routing on the local
snapshot -> forward with the replica's pooled httpx client -> relay. Each attempt's
outcome, each finished answer and each decision are appended to the replica's outboxes;
the replica's background task ships them every `history_push_interval_s` in one call per
actor (registry: metrics, bandit and the shared ledger; breaker: circuit transitions in
order; history: decision and attempt rows). Routing sees them at the next snapshot
refresh (`snapshot_interval_s`), within the same staleness bound as client feedback.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from tinydancer.agents.ledger import Answer, Settled
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.gateway.gateway import GatewayResponse
from tinydancer.gateway.outcomes import AttemptOutcome
from tinydancer.history.records import AttemptColumns, from_agent_decisions

__all__ = ["CHAT_OPENAPI", "OPENAI_ERROR_RESPONSES", "GatewayOutbox", "to_http"]


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


class GatewayOutbox:
    """An `OutcomeSink` that queues: the replica's background task ships the queues."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.decisions: list[Any] = []  # DecisionColumns blocks, merged with the routes'
        self.attempts: list[AttemptOutcome] = []
        self.answers: list[Answer] = []

    def decided(self, request: AgentRequest, decision: AgentDecision) -> None:
        self.decisions.append(
            from_agent_decisions([request], [decision], ts=time.time(), replica=self.replica)
        )

    def attempted(self, outcomes: Sequence[AttemptOutcome]) -> None:
        self.attempts.extend(outcomes)

    def answered(self, answer: Answer) -> None:
        self.answers.append(answer)

    def settled(self, settled: Settled, quality: float) -> None:
        """Quality reports are settled by the registry actor (`/v1/feedback`), not here."""

    def take(self) -> tuple[list[AttemptOutcome], list[Answer], AttemptColumns]:
        attempts, answers = self.attempts, self.answers
        self.attempts, self.answers = [], []
        return attempts, answers, AttemptColumns.from_outcomes(attempts, self.replica)

    def put_back(self, attempts: list[AttemptOutcome], answers: list[Answer]) -> None:
        """A failed shipment: keep it for the next try, oldest first."""
        self.attempts[:0], self.answers[:0] = attempts, answers


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
