"""From a checked chat request to a plan: which profile, which agents may serve it, the
routing decision on the router's snapshot, and the agents to try in order.

A profile request fails over along the decision's full ranking of eligible agents; a
request naming an agent tries it, then its `fallbacks`, in that order. Agents the
gateway cannot forward to (no endpoint, key missing from the environment, inactive) are
excluded before routing. Routing errors become OpenAI-style `GatewayError`s here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.errors import (
    AgentsUnavailableError,
    GatewayError,
    ModelFileError,
    NoEligibleAgentError,
    TinyDancerError,
)
from tinydancer.gateway.config import GatewayConfig
from tinydancer.gateway.contract import ChatRequest
from tinydancer.gateway.profiles import AUTO, PREFIX, ConstraintOptions, Profile

__all__ = ["Plan", "TextEncoder", "gateway_unavailable", "plan_request", "retry_after_s"]


class TextEncoder(Protocol):
    """What the gateway needs from a text encoder: texts -> (N, 384) float32 unit rows."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Plan:
    request_id: str
    chat: ChatRequest
    request: AgentRequest
    decision: AgentDecision
    candidates: tuple[tuple[str, float | None], ...]  # (agent, model quality) in order
    direct: str | None  # the agent `model` named, if it named one
    started: float  # time.monotonic()
    deadline: float  # time.monotonic()


def gateway_unavailable(registry: AgentRegistry, environ: Mapping[str, str]) -> dict[str, str]:
    """Agents the gateway cannot forward to, with the reason."""
    out = {}
    for agent in registry.list():
        reason = agent.gateway_unavailable(environ)
        if reason is not None:
            out[agent.name] = reason
    return out


def retry_after_s(breaker: Any, now: float, cap_s: float) -> float:
    """When routing may find an agent again: the next breaker change, else one second."""
    try:
        wait = float(breaker.next_change_at()) - now
    except (AttributeError, TypeError, ValueError):
        wait = 1.0
    return min(max(wait, 1.0), cap_s) if wait == wait and wait != float("inf") else 1.0


def _resolve(
    chat: ChatRequest, config: GatewayConfig, registry: AgentRegistry
) -> tuple[Profile, str | None]:
    if chat.model.startswith(PREFIX):
        profile = config.profile(chat.model)
        if profile is None:
            raise GatewayError(
                404,
                f"the model {chat.model!r} does not exist: routing profiles are "
                f"{sorted(config.all_profiles())}",
                param="model",
                code="model_not_found",
            )
        return profile, None
    if chat.model not in registry:
        raise GatewayError(
            404,
            f"the model {chat.model!r} does not exist: use a routing profile ({AUTO}, ...) "
            "or the name of a registered agent (GET /v1/models lists both)",
            param="model",
            code="model_not_found",
        )
    return config.profile(AUTO) or Profile(), chat.model


def _unavailable_error(what: str, reasons: Mapping[str, str]) -> GatewayError:
    shown = "; ".join(f"{name}: {why}" for name, why in sorted(reasons.items())[:20])
    return GatewayError(
        503,
        f"{what} (an agent needs an endpoint the gateway can reach; {shown or 'no agents registered'})",
        code="no_agent_available",
        retry_after_s=1.0,
    )


def plan_request(
    chat: ChatRequest,
    *,
    request_id: str,
    config: GatewayConfig,
    router: Any,
    encoder: TextEncoder,
    environ: Mapping[str, str],
    output_tokens: float | None,
) -> Plan:
    """Resolve, exclude, encode and route `chat`; raises GatewayError when nothing can serve it."""
    started = time.monotonic()
    registry: AgentRegistry = router.registry
    profile, direct = _resolve(chat, config, registry)
    if chat.options is not None:
        profile = chat.options.over(profile)
    unavailable = gateway_unavailable(registry, environ)
    allowed: Sequence[str] | None = None
    if direct is not None:
        named = [direct, *registry.get(direct).fallbacks]
        allowed = [n for n in named if n in registry and n not in unavailable]
        if not allowed:
            reasons = {n: unavailable.get(n, "not registered") for n in named}
            raise _unavailable_error(
                f"the agent {direct!r} and its fallbacks cannot serve", reasons
            )
        excluded = frozenset(n.name for n in registry.list()) - set(allowed)
    else:
        if len(unavailable) == len(registry):
            raise _unavailable_error("no eligible agent has an endpoint", unavailable)
        excluded = frozenset(unavailable)
    kept = chat.texts[-router.config.max_messages :]
    try:
        embeddings = np.asarray(encoder.encode(kept), np.float32)  # (T, 384)
    except ModelFileError as exc:  # no encoder weights installed: the message says where
        raise GatewayError(503, str(exc), code="encoder_unavailable") from None
    expected = profile.expected_tokens
    if expected is None:
        answer = chat.max_tokens or output_tokens or config.default_output_tokens
        expected = float(chat.prompt_tokens + answer)
    try:
        constraints = (profile.constraints or ConstraintOptions()).to_engine(excluded)
        request = AgentRequest(
            messages=list(embeddings),
            optimize_for=profile.optimize_for,
            weights=None if profile.weights is None else profile.weights.as_dict(),
            willingness_to_pay=profile.willingness_to_pay,
            expected_tokens=expected,
            constraints=constraints,
            request_id=request_id,
        )
        decision = router.route_batch([request], remember=False)[0]
    except NoEligibleAgentError as exc:
        raise _no_eligible(exc, excluded, chat) from None
    except AgentsUnavailableError as exc:
        raise GatewayError(
            503,
            f"every eligible agent is unavailable (circuit open): {exc.open_agents}",
            code="no_agent_available",
            retry_after_s=retry_after_s(router.breaker, time.time(), config.max_retry_after_s),
        ) from None
    except GatewayError:
        raise
    except TinyDancerError as exc:
        field = getattr(exc, "field", None)
        raise GatewayError(
            400, str(exc), param=f"tinydancer.{field}" if field else None, code="invalid_value"
        ) from None
    # the router's fallback_agent may be one the gateway cannot reach: never try those
    ranking = tuple(r for r in decision.ranking if r[0] not in excluded)
    if not ranking:
        raise _unavailable_error("no eligible agent has an endpoint", unavailable)
    if allowed is not None:
        position = {name: i for i, name in enumerate(allowed)}
        ranking = tuple(
            sorted((r for r in ranking if r[0] in position), key=lambda r: position[r[0]])
        )
    return Plan(
        request_id=request_id,
        chat=chat,
        request=request,
        decision=decision,
        candidates=ranking,
        direct=direct,
        started=started,
        deadline=started + config.deadline_s,
    )


def _no_eligible(
    exc: NoEligibleAgentError, injected: frozenset[str], chat: ChatRequest
) -> GatewayError:
    """The router's exclusions without the agents the gateway itself excluded."""
    shown = {}
    for rule, agents in exc.excluded.items():
        kept = sorted(set(agents) - injected) if rule == "excluded_agents" else sorted(agents)
        if kept:
            shown[rule] = kept
    detail = "; ".join(f"{rule} excluded {agents}" for rule, agents in shown.items())
    source = "the tinydancer options" if chat.options is not None else "the profile"
    return GatewayError(
        400,
        f"no agent satisfies the constraints of {chat.model!r} ({source}): {detail or 'every agent excluded'}",
        param="tinydancer.constraints" if chat.options is not None else "model",
        code="no_eligible_agent",
    )
