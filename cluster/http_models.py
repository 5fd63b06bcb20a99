"""HTTP request bodies (pydantic): strict (unknown fields and NaN/inf refused), with units in names.

Embeddings travel as JSON lists or, much cheaper to parse, as base64 of little-endian
float32 (`*_b64` fields): one vector, or a row-major N x 384 block. Or send text
(`text`, `chat`, `texts`, `query_text`, candidate `text`): the replica's encoder embeds it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tinydancer.agents.endpoint import Endpoint
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.candidates.types import Candidate, CandidateBatch, RoutingRequest
from tinydancer.model.embedding import decode_base64_f32

__all__ = [
    "ERROR_RESPONSES",
    "AgentPatch",
    "BatchOptions",
    "BatchRouteBody",
    "CandidateColumns",
    "CandidateRouteBody",
    "ErrorBody",
    "FeedbackBody",
    "ReloadBody",
    "RouteBody",
    "candidate_routing_request",
]

# strict: JSON 0 / "yes" are not booleans and "1" is not a number (ints are still accepted as floats)
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)
DIM = 384
# An all-MiniLM-L6-v2 embedding as a JSON list (the *_b64 fields carry the same, cheaper).
Vector = Annotated[list[float], Field(min_length=DIM, max_length=DIM)]


class ConstraintsBody(BaseModel):
    model_config = _STRICT
    max_cost_usd: float | None = Field(None, ge=0)
    max_latency_ms: float | None = Field(None, ge=0)
    min_quality: float | None = Field(None, ge=0, le=1)
    required_capabilities: list[str] = Field(default_factory=list, max_length=64)
    excluded_agents: list[str] = Field(default_factory=list, max_length=1024)

    def to_engine(self) -> Constraints:
        return Constraints(
            self.max_cost_usd,
            self.max_latency_ms,
            self.min_quality,
            frozenset(self.required_capabilities),
            frozenset(self.excluded_agents),
        )


class WeightsBody(BaseModel):
    model_config = _STRICT
    quality: float | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0)
    latency: float | None = Field(None, ge=0)
    similarity: float | None = Field(None, ge=0)


class _Options(BaseModel):
    model_config = _STRICT
    optimize_for: Literal["cost", "latency", "quality", "balanced"] = "balanced"
    weights: WeightsBody | None = None
    willingness_to_pay: float | None = Field(None, gt=0, description="USD per unit of quality")
    expected_tokens: float | None = Field(None, ge=0)
    constraints: ConstraintsBody = Field(default_factory=ConstraintsBody)

    def template(self, **extra: Any) -> AgentRequest:
        weights = (
            None
            if self.weights is None
            else {k: v for k, v in self.weights.model_dump().items() if v is not None}
        )
        return AgentRequest(
            optimize_for=self.optimize_for,
            weights=weights,
            willingness_to_pay=self.willingness_to_pay,
            expected_tokens=self.expected_tokens,
            constraints=self.constraints.to_engine(),
            **extra,
        )


_ROUTE_INPUTS = ("embedding", "embedding_b64", "messages", "messages_b64", "text", "chat")
# a chat message: {"role", "content"} with content a string, a list of parts or null;
# checked by the engine (tinydancer.agents.text), which names the offending field
ChatMessage = dict[str, Any]


class RouteBody(_Options):
    """POST /v1/route: exactly one of embedding, embedding_b64, messages, messages_b64,
    text (a prompt) or chat (OpenAI-style messages)."""

    embedding: Vector | None = None
    embedding_b64: str | None = Field(None, max_length=65536)
    messages: list[Vector] | None = Field(None, min_length=1, max_length=256)
    messages_b64: str | None = Field(None, max_length=4_000_000)
    text: str | None = Field(
        None, description="a prompt; truncated at 256 tokens as the model does"
    )
    chat: list[ChatMessage] | None = Field(
        None, min_length=1, max_length=4096, description='[{"role": ..., "content": ...}, ...]'
    )

    @field_validator("messages", mode="before")
    @classmethod
    def _not_chat(cls, value: Any) -> Any:
        if isinstance(value, list) and any(isinstance(m, dict) for m in value):
            raise ValueError(
                "messages holds message embeddings (lists of 384 numbers); send chat "
                'messages ({"role": ..., "content": ...}) as "chat" instead'
            )
        return value

    @model_validator(mode="after")
    def _one_input(self) -> RouteBody:
        given = [n for n in _ROUTE_INPUTS if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(_ROUTE_INPUTS)} (got {given or 'none'})"
            )
        return self

    def to_engine(self) -> AgentRequest:
        if self.text is not None:
            return self.template(text=self.text)
        if self.chat is not None:
            return self.template(chat=self.chat)
        if self.embedding_b64 is not None:
            block = decode_base64_f32(self.embedding_b64, "embedding_b64", DIM)
            if block.shape[0] != 1:
                return self.template(messages=list(block))
            return self.template(embedding=block[0])
        if self.messages_b64 is not None:
            return self.template(
                messages=list(decode_base64_f32(self.messages_b64, "messages_b64", DIM))
            )
        if self.messages is not None:
            return self.template(messages=self.messages)
        return self.template(embedding=self.embedding)


class BatchOptions(_Options):
    """Options of a raw-binary /v1/route/batch call (from the query string)."""


class BatchRouteBody(_Options):
    """POST /v1/route/batch (JSON form): an N x 384 block (base64 or lists), full requests,
    or `texts` (prompts, at most `max_batch_texts`; one decision each)."""

    embeddings_b64: str | None = Field(None, max_length=64_000_000)
    embeddings: list[Vector] | None = Field(None, min_length=1, max_length=100_000)
    requests: list[RouteBody] | None = Field(None, max_length=10_000)
    texts: list[str] | None = Field(None, min_length=1, max_length=100_000)

    @model_validator(mode="after")
    def _one_input(self) -> BatchRouteBody:
        names = ("embeddings_b64", "embeddings", "requests", "texts")
        given = [n for n in names if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(names)} (got {given or 'none'})")
        return self

    def block(self) -> np.ndarray:
        if self.embeddings_b64 is not None:
            return decode_base64_f32(self.embeddings_b64, "embeddings_b64", DIM)
        return np.asarray(self.embeddings, np.float32)


class CandidateBody(BaseModel):
    model_config = _STRICT
    id: str = Field(..., min_length=1, max_length=256)
    embedding: Vector | None = None
    text: str | None = Field(None, description="instead of embedding: embedded by the replica")
    created_at: float = Field(..., description="Unix seconds")
    access_count: int = Field(0, ge=0)
    success_rate: float = Field(0.0, ge=0, le=1)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_input(self) -> CandidateBody:
        if (self.embedding is None) == (self.text is None):
            raise ValueError("give exactly one of embedding, text")
        return self


class CandidateColumns(BaseModel):
    model_config = _STRICT
    ids: list[str] = Field(..., min_length=1, max_length=16384)
    embeddings_b64: str = Field(..., max_length=64_000_000)
    created_at: list[float]
    access_count: list[int] | None = None
    success_rate: list[float] | None = None
    metadata_overlap: list[float] | None = None

    @model_validator(mode="after")
    def _one_value_per_id(self) -> CandidateColumns:
        for name in ("created_at", "access_count", "success_rate", "metadata_overlap"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.ids):
                raise ValueError(
                    f"columns.{name} has {len(values)} values for {len(self.ids)} ids; "
                    "every column needs exactly one value per id"
                )
        return self


class CandidateRouteBody(BaseModel):
    """POST /v1/route/candidates: a query and a list of candidates or their columns."""

    model_config = _STRICT
    query_embedding: Vector | None = None
    query_embedding_b64: str | None = Field(None, max_length=65536)
    query_text: str | None = None
    candidates: list[CandidateBody] | None = Field(None, max_length=16384)
    columns: CandidateColumns | None = None
    metadata: dict[str, str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _inputs(self) -> CandidateRouteBody:
        queries = ("query_embedding", "query_embedding_b64", "query_text")
        given = [n for n in queries if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(queries)} (got {given or 'none'})")
        if (self.candidates is None) == (self.columns is None):
            raise ValueError("give exactly one of candidates, columns")
        return self


class FeedbackBody(BaseModel):
    model_config = _STRICT
    request_id: str = Field(..., min_length=1, max_length=64)
    agent: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="the agent (or candidate id) that served; optional for a gateway answer "
        "(its quality is credited to the agent that finished it)",
    )
    success: bool | None = Field(None, description="required except for a gateway answer")
    latency_ms: float | None = Field(None, ge=0)
    quality: float | None = Field(None, ge=0, le=1)
    cost_usd: float | None = Field(None, ge=0)


class AgentPatch(BaseModel):
    model_config = _STRICT
    capabilities: list[str] | None = None
    cost: dict[str, float] | None = None
    expected_quality: float | None = Field(None, ge=0, le=1)
    expected_latency_ms: float | None = Field(None, gt=0)
    active: bool | None = None
    metadata: dict[str, Any] | None = None
    endpoint: Endpoint | None = Field(None, description="the agent's upstream (gateway)")
    fallbacks: list[str] | None = Field(None, description="agents tried when it is named directly")


class ErrorBody(BaseModel):
    """Every 4xx / 503 body: which error, the field, a message saying what would be valid."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str
    field: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (401, "missing or wrong admin token"),
        (404, "unknown request id or agent"),
        (409, "duplicate agent or replayed feedback"),
        (413, "request body too large"),
        (400, "the body could not be parsed"),
        (422, "invalid request (the body names the field)"),
        (503, "every eligible agent's circuit is open, or text sent without encoder weights"),
    )
}


class ReloadBody(BaseModel):
    model_config = _STRICT
    path: str = Field(..., min_length=1, max_length=4096)
    mode: Literal["agent", "candidate"] = "agent"


def candidate_routing_request(body: CandidateRouteBody, dim: int, encoder: Any) -> RoutingRequest:
    """A `/v1/route/candidates` body as the engine's request (text through `encoder`)."""
    if body.query_text is not None:
        query = encoder.encode([body.query_text])[0]
    elif body.query_embedding is not None:
        query = np.asarray(body.query_embedding, np.float32)
    else:
        query = decode_base64_f32(body.query_embedding_b64 or "", "query_embedding_b64", dim)[0]
    if body.candidates is not None:
        candidates: Any = [Candidate(**dict(c)) for c in body.candidates]
    else:
        cols = body.columns
        assert cols is not None
        n = len(cols.ids)

        def column(values: Any, default: float) -> np.ndarray:
            return np.full(n, default) if values is None else np.asarray(values, np.float64)

        candidates = CandidateBatch(
            np.asarray(cols.ids, dtype=object),
            decode_base64_f32(cols.embeddings_b64, "columns.embeddings_b64", dim),
            np.asarray(cols.created_at, np.float64),
            column(cols.access_count, 0.0),
            column(cols.success_rate, 0.0).astype(np.float32),
            None
            if cols.metadata_overlap is None
            else np.asarray(cols.metadata_overlap, np.float32),
        )
    return RoutingRequest(query, candidates, metadata=body.metadata)
