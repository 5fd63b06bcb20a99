"""Agent-mode request and decision types (plain dataclasses: the hot path builds them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from tinydancer.errors import InvalidRequestError

__all__ = ["OBJECTIVES", "AgentDecision", "AgentRequest", "Alternative", "Constraints", "Objective"]

Objective = Literal["cost", "latency", "quality", "balanced"]
# Weights of (quality, cost, latency, similarity); cost and latency are divided by the
# most expensive / slowest eligible estimate, so each term is in [0, 1].
OBJECTIVES: dict[str, tuple[float, float, float, float]] = {
    "quality": (1.0, 0.02, 0.02, 0.0),
    "cost": (0.3, 1.0, 0.0, 0.0),
    "latency": (0.3, 0.0, 1.0, 0.0),
    "balanced": (1.0, 0.35, 0.25, 0.05),
}


@dataclass(frozen=True, slots=True)
class Constraints:
    """Hard limits; an agent that breaks one is not eligible."""

    max_cost_usd: float | None = None
    max_latency_ms: float | None = None
    min_quality: float | None = None
    required_capabilities: frozenset[str] = frozenset()
    excluded_agents: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("max_cost_usd", "max_latency_ms", "min_quality"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float) and np.isfinite(value) and value >= 0
            ):
                raise InvalidRequestError(
                    f"constraints.{name}", value, "a finite number >= 0 or null"
                )
        if self.min_quality is not None and self.min_quality > 1:
            raise InvalidRequestError(
                "constraints.min_quality", self.min_quality, "a quality in [0, 1]"
            )
        object.__setattr__(
            self,
            "required_capabilities",
            frozenset(c.strip().lower() for c in self.required_capabilities),
        )
        object.__setattr__(self, "excluded_agents", frozenset(self.excluded_agents))


NO_CONSTRAINTS = Constraints()


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """One request to route: an `embedding`, or a conversation as `messages` (oldest first)
    of embeddings; or, encoded by the router's text encoder, a prompt as `text`, or a
    conversation as `chat` (OpenAI-style messages: {"role", "content"}). Exactly one.

    `willingness_to_pay` (USD per unit of quality) replaces the objective's cost weight:
    utility = quality - cost / willingness_to_pay - ... — the cost-quality knob.
    `weights` overrides the objective's weights (keys quality, cost, latency, similarity).
    """

    embedding: Any = None
    messages: Sequence[Any] | None = None
    optimize_for: str = "balanced"
    weights: Mapping[str, float] | None = None
    willingness_to_pay: float | None = None
    expected_tokens: float | None = None
    constraints: Constraints = NO_CONSTRAINTS  # immutable: one shared instance
    request_id: str | None = None
    text: str | None = None
    chat: Sequence[Mapping[str, Any]] | None = None

    def objective_weights(self) -> tuple[float, float, float, float]:
        if self.optimize_for not in OBJECTIVES:
            raise InvalidRequestError(
                "optimize_for", self.optimize_for, f"one of {sorted(OBJECTIVES)}"
            )
        base = OBJECTIVES[self.optimize_for]
        if self.weights is None:
            return base
        keys = ("quality", "cost", "latency", "similarity")
        unknown = set(self.weights) - set(keys)
        if unknown:
            raise InvalidRequestError("weights", sorted(unknown), f"keys among {list(keys)}")
        values = []
        for key, default in zip(keys, base, strict=True):
            value = self.weights.get(key, default)
            if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
                raise InvalidRequestError(f"weights.{key}", value, "a finite number >= 0")
            values.append(float(value))
        return values[0], values[1], values[2], values[3]


@dataclass(frozen=True, slots=True)
class Alternative:
    agent: str
    score: float
    expected_quality: float
    estimated_cost_usd: float
    estimated_latency_ms: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "score": self.score,
            "expected_quality": self.expected_quality,
            "estimated_cost_usd": self.estimated_cost_usd,
            "estimated_latency_ms": self.estimated_latency_ms,
            "reason": self.reason,
        }


@dataclass(frozen=True, eq=False)
class AgentDecision:
    """The chosen agent and why; `alternatives` and `reason` are built when first read.

    confidence: posterior probability that the chosen agent is the best under the
    objective (estimated by resampling); with Thompson sampling this is also the
    probability the router picks it, logged as `propensity`.
    uncertainty: conformal p-value that the chosen agent's outcome is the opposite of
    the model's prediction (1.0 for an agent the model has no head for).
    model_quality: the offline model's predicted quality for the chosen agent (the
    bandit's context; feedback for this request updates the posterior with it).
    """

    request_id: str
    agent: str
    confidence: float
    uncertainty: float
    estimated_cost_usd: float
    estimated_latency_ms: float | None
    expected_quality: float
    similarity: float
    model_version: str
    propensity: float
    model_quality: float
    objective: str
    ranked: Sequence[
        tuple[str, float, float, float, float | None]
    ]  # agent, score, quality, cost, latency
    explain: Callable[[], Mapping[str, Sequence[str]]] | None = (
        None  # computes `excluded` on demand
    )
    fallback: bool = False
    probe: bool = False  # sent to test a half-open circuit, whatever the scores said
    inference_time_us: float = 0.0
    rank_all: Callable[[], Sequence[tuple[str, float | None]]] | None = None
    text_tokens: int | None = None  # tokens the encoder read (text and chat requests)

    @cached_property
    def ranking(self) -> Sequence[tuple[str, float | None]]:
        """Every eligible agent, best first, with the model's quality for it (None: no head);
        what a gateway fails over along. Built on first read."""
        return () if self.rank_all is None else self.rank_all()

    @cached_property
    def excluded(self) -> Mapping[str, Sequence[str]]:
        """Constraint -> agents it excluded (empty when every agent was eligible)."""
        return {} if self.explain is None else self.explain()

    @cached_property
    def reason(self) -> str:
        head = (
            "fallback agent (no eligible agent available)"
            if self.fallback
            else "probe of a half-open circuit (the agent is recovering from failures)"
            if self.probe
            else f"best {self.objective} score"
        )
        latency = (
            "" if self.estimated_latency_ms is None else f", ~{self.estimated_latency_ms:.0f} ms"
        )
        text = (
            f"{self.agent}: {head}: expected quality {self.expected_quality:.2f}, "
            f"~${self.estimated_cost_usd:.6f}{latency}, chosen in {self.confidence:.0%} of posterior draws"
        )
        if self.excluded:
            count = len({a for agents in self.excluded.values() for a in agents})
            text += f"; {count} agent(s) excluded by {', '.join(sorted(self.excluded))}"
        return text

    @cached_property
    def alternatives(self) -> list[Alternative]:
        out = []
        for name, score, quality, cost, latency in self.ranked[1:4]:
            dq = quality - self.expected_quality
            ratio = cost / self.estimated_cost_usd if self.estimated_cost_usd > 0 else float("inf")
            why = f"expected quality {quality:.2f} ({dq:+.2f}) at {ratio:.2g}x the cost"
            if latency is not None and self.estimated_latency_ms:
                why += f", {latency / self.estimated_latency_ms:.2g}x the latency"
            out.append(Alternative(name, score, quality, cost, latency, why))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "agent": self.agent,
            "confidence": self.confidence,
            "uncertainty": self.uncertainty,
            "estimated_cost_usd": self.estimated_cost_usd,
            "estimated_latency_ms": self.estimated_latency_ms,
            "expected_quality": self.expected_quality,
            "similarity": self.similarity,
            "reason": self.reason,
            "alternatives": [a.to_dict() for a in self.alternatives],
            "model_version": self.model_version,
            "propensity": self.propensity,
            "fallback": self.fallback,
            "probe": self.probe,
            **({} if self.text_tokens is None else {"text_tokens": self.text_tokens}),
        }
