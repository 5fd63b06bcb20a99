"""Agents: who can serve a request, what they can do and what they cost."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Agent", "AgentType", "CostModel"]

HOURS_PER_MONTH = 730.0


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

    The monthly fee does not depend on routing decisions, so it is not part of a request's
    estimated cost; `stats` reports it so that totals can include it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_request_usd: float = Field(0.0, ge=0, description="USD charged per request")
    per_1k_tokens_usd: float = Field(0.0, ge=0, description="USD per 1,000 tokens (input + output)")
    monthly_fixed_usd: float = Field(
        0.0, ge=0, description="fixed USD per month, independent of traffic"
    )

    def estimate(self, tokens: float | None) -> float | None:
        """Per-request cost for a token count, or None if it depends on tokens that are unknown."""
        if self.per_1k_tokens_usd == 0.0:
            return self.per_request_usd
        if tokens is None:
            return None
        if tokens < 0:
            raise ValueError(f"tokens: got {tokens!r}; expected a count >= 0")
        return self.per_request_usd + self.per_1k_tokens_usd * tokens / 1000.0


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

    @field_validator("capabilities", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> frozenset[str]:
        if isinstance(value, str):
            raise ValueError("capabilities must be a list of strings, not one string")
        items = list(value or [])
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"capability {item!r} is not a non-empty string")
        return frozenset(item.strip().lower() for item in items)

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

    def public(self) -> dict[str, Any]:
        """JSON-ready description (the specialization is summarised, not dumped)."""
        data = self.model_dump(mode="json", exclude={"specialization"})
        data["capabilities"] = sorted(self.capabilities)
        data["has_specialization"] = self.specialization is not None
        return data
