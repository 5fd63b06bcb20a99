"""Agents: who can serve a request, what they can do and what they cost."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tinydancer.agents.endpoint import Endpoint, unavailable_reason

__all__ = ["RESERVED_PREFIX", "Agent", "AgentType", "CostModel"]

HOURS_PER_MONTH = 730.0
RESERVED_PREFIX = "tinydancer/"  # gateway routing profiles; no agent may be named so


class AgentType(StrEnum):
    LLM = "llm"
    EMBEDDING = "embedding"
    SPECIALIZED = "specialized"
    VISION = "vision"
    AUDIO = "audio"
    MULTIMODAL = "multimodal"
    CUSTOM = "custom"


class CostModel(BaseModel):
    """Price of one request: per request + per 1k tokens (+ a monthly fixed fee, reported apart).

    `per_1k_tokens_usd` is a blended price; `input_per_1k_tokens_usd` and
    `output_per_1k_tokens_usd` price prompt and completion tokens apart (each defaults to
    the blended price). The monthly fee does not depend on routing decisions, so it is not
    part of a request's estimated cost; `stats` reports it so that totals can include it.

    >>> CostModel(input_per_1k_tokens_usd=0.001, output_per_1k_tokens_usd=0.002).estimate_split(1000, 500)
    0.002
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_request_usd: float = Field(0.0, ge=0, description="USD charged per request")
    per_1k_tokens_usd: float = Field(0.0, ge=0, description="USD per 1,000 tokens (input + output)")
    monthly_fixed_usd: float = Field(
        0.0, ge=0, description="fixed USD per month, independent of traffic"
    )
    input_per_1k_tokens_usd: float | None = Field(
        None, ge=0, description="USD per 1,000 prompt tokens (None = the blended price)"
    )
    output_per_1k_tokens_usd: float | None = Field(
        None, ge=0, description="USD per 1,000 completion tokens (None = the blended price)"
    )

    @property
    def blended_per_1k_tokens_usd(self) -> float:
        """The blended price, or the mean of the input and output prices when it is not given."""
        if self.per_1k_tokens_usd > 0 or (
            self.input_per_1k_tokens_usd is None and self.output_per_1k_tokens_usd is None
        ):
            return self.per_1k_tokens_usd
        return (self.input_price + self.output_price) / 2.0

    @property
    def input_price(self) -> float:
        value = self.input_per_1k_tokens_usd
        return self.per_1k_tokens_usd if value is None else value

    @property
    def output_price(self) -> float:
        value = self.output_per_1k_tokens_usd
        return self.per_1k_tokens_usd if value is None else value

    def estimate(self, tokens: float | None) -> float | None:
        """Per-request cost for a token count, or None if it depends on tokens that are unknown."""
        blended = self.blended_per_1k_tokens_usd
        if blended == 0.0:
            return self.per_request_usd
        if tokens is None:
            return None
        if tokens < 0:
            raise ValueError(f"tokens: got {tokens!r}; expected a count >= 0")
        return self.per_request_usd + blended * tokens / 1000.0

    def estimate_split(self, prompt_tokens: float, completion_tokens: float) -> float:
        """Per-request cost of prompt and completion tokens priced apart (an upstream's usage)."""
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError(
                f"tokens: got {prompt_tokens!r} prompt, {completion_tokens!r} completion; expected counts >= 0"
            )
        return (
            self.per_request_usd
            + (self.input_price * prompt_tokens + self.output_price * completion_tokens) / 1000.0
        )


class Agent(BaseModel):
    """A model, tool or service that requests can be routed to.

    `expected_quality` / `expected_latency_ms` are priors used until outcomes arrive;
    `specialization` is an optional embedding of what the agent is good at (requests
    close to it report a high `similarity`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        ...,
        min_length=1,
        max_length=200,
        pattern=r"^[\w.\-/:@+]+$",
        description="unique name (letters, digits and . - / : @ + _)",
    )
    type: AgentType = Field(AgentType.LLM, description="kind of agent")
    capabilities: frozenset[str] = Field(
        frozenset(), description="what it can do (case-insensitive)"
    )
    cost: CostModel = Field(default_factory=CostModel)
    expected_quality: float | None = Field(
        None, ge=0, le=1, description="prior mean quality in [0, 1]"
    )
    expected_latency_ms: float | None = Field(None, gt=0, description="prior latency in ms")
    specialization: tuple[float, ...] | None = Field(
        None, description="embedding of its speciality"
    )
    active: bool = Field(True, description="inactive agents are never routed to")
    metadata: dict[str, Any] = Field(default_factory=dict)
    endpoint: Endpoint | None = Field(
        None, description="upstream the gateway forwards to (None = /v1/route only)"
    )
    fallbacks: tuple[str, ...] = Field(
        (), max_length=16, description="agents tried next when a request names this one"
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower().startswith(RESERVED_PREFIX):
            raise ValueError(
                f"agent names may not start with {RESERVED_PREFIX!r} (reserved for routing profiles)"
            )
        return value

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"fallbacks {list(value)!r} must be distinct agent names")
        return value

    @field_validator("capabilities", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> frozenset[str]:
        if isinstance(value, str):
            raise ValueError("capabilities must be a list of strings, not one string")
        if not isinstance(value, list | tuple | set | frozenset):
            raise ValueError(
                f"capabilities must be a list of strings, got {type(value).__name__} {value!r}"
            )
        items = list(value)
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"capability {item!r} is not a non-empty string")
        return frozenset(item.strip().lower() for item in items)

    @field_validator("metadata")
    @classmethod
    def _serialisable(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:  # it is stored in snapshots and returned by the API: it must stay JSON
            orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise ValueError(
                f"metadata must be plain JSON (strings, numbers whose integers fit in 64 bits, "
                f"lists, objects): {exc}"
            ) from None
        return value

    @field_validator("specialization")
    @classmethod
    def _unit(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        norm = math.sqrt(sum(v * v for v in value))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError("specialization must be a finite, non-zero embedding")
        return tuple(v / norm for v in value)

    def has_capabilities(self, required: frozenset[str]) -> bool:
        return required <= self.capabilities

    def gateway_unavailable(self, environ: Mapping[str, str]) -> str | None:
        """Why the gateway cannot forward to this agent in a process with `environ` (None = it can)."""
        return unavailable_reason(self.endpoint, self.active, environ)

    def public(self) -> dict[str, Any]:
        """JSON-ready description (the specialization is summarised, not dumped; the
        endpoint shows no header values)."""
        data = self.model_dump(mode="json", exclude={"specialization", "endpoint"})
        data["capabilities"] = sorted(self.capabilities)
        data["has_specialization"] = self.specialization is not None
        data["endpoint"] = None if self.endpoint is None else self.endpoint.public()
        return data
