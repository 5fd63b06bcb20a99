"""From one request's kernel output to its `AgentDecision` (ranked agents, estimates,
the objective it was chosen under), and the error when nothing was eligible."""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any

import numpy as np

from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.snapshot import AGENT, OUT, RoutingSnapshot, exclusions
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.errors import AgentsUnavailableError, NoEligibleAgentError

__all__ = [
    "DECISION_DEFAULTS",
    "build_decision",
    "full_ranking",
    "model_qualities",
    "no_eligible",
    "objective_name",
]

# A decision's default fields: the hot paths fill a decision's __dict__ directly (the
# frozen dataclass's __init__ sets its 19 fields one `object.__setattr__` at a time).
DECISION_DEFAULTS = {f.name: f.default for f in fields(AgentDecision) if f.default is not MISSING}


def objective_name(request: AgentRequest) -> str:
    """The objective a decision was made under, as it reports it."""
    if request.weights:
        return "custom"
    return "willingness-to-pay" if request.willingness_to_pay is not None else request.optimize_for


def build_decision(
    request: AgentRequest,
    out: np.ndarray,
    snap: RoutingSnapshot,
    order: np.ndarray,
    best: int,
    *,
    request_id: str,
    registry: AgentRegistry,
    model_version: str,
    fallback: bool,
    probe: bool,
    elapsed_us: float,
) -> AgentDecision:
    """out: (len(OUTPUT_ROWS), A) for this request; `order` ranks the agents, `best` won."""
    # One conversion to Python floats (tolist) instead of a numpy scalar per field.
    rows = out.tolist()
    utility, quality, cost = rows[OUT["utility"]], rows[OUT["quality"]], rows[OUT["cost"]]
    propensity, uncertainty = rows[OUT["propensity"]], rows[OUT["uncertainty"]]
    similarity, model_quality = rows[OUT["similarity"]], rows[OUT["model_quality"]]
    ranked_count = sum(map(math.isfinite, utility))
    latency_row = snap.columns[AGENT["latency_ms"]]
    ranked = []
    for position in order[: min(4, ranked_count)].tolist() if not fallback else [best]:
        lat = float(latency_row[position])
        ranked.append(
            (
                snap.names[position],
                utility[position],
                quality[position],
                cost[position],
                None if lat < 0 else lat,
            )
        )
    latency = float(latency_row[best])
    return AgentDecision(
        request_id=request_id,
        agent=snap.names[best],
        confidence=propensity[best] if not fallback else 0.0,
        uncertainty=uncertainty[best],
        estimated_cost_usd=cost[best],
        estimated_latency_ms=None if latency < 0 else latency,
        expected_quality=quality[best],
        similarity=similarity[best],
        model_version=model_version,
        # the probability this policy chose the agent: a probe or the fallback is certain
        propensity=1.0 if fallback or probe else propensity[best],
        model_quality=model_quality[best],
        objective=objective_name(request),
        explain=(lambda: exclusions(request, out, snap, registry))
        if ranked_count < len(snap.names)
        else None,
        ranked=ranked,
        fallback=fallback,
        probe=probe,
        inference_time_us=elapsed_us,
        rank_all=lambda: full_ranking(out, snap, [best] if fallback else order[:ranked_count]),
    )


def full_ranking(
    out: np.ndarray, snap: RoutingSnapshot, positions: Any
) -> tuple[tuple[str, float | None], ...]:
    """(agent, model quality or None) for the agents at `positions`, in that order."""
    known, quality = out[OUT["known"]], out[OUT["model_quality"]]
    return tuple(
        (snap.names[p], float(quality[p]) if known[p] > 0 else None)
        for p in np.asarray(positions).tolist()
    )


def model_qualities(
    out: np.ndarray, snap: RoutingSnapshot, agents: list[str]
) -> list[float | None]:
    """The model's predicted quality for each agent (None where it has no head)."""
    known = out[OUT["known"]]
    return [
        float(out[OUT["model_quality"], snap.index[a]]) if known[snap.index[a]] > 0 else None
        for a in agents
    ]


def no_eligible(
    request: AgentRequest,
    out: np.ndarray,
    snap: RoutingSnapshot,
    registry: AgentRegistry,
    fallback_agent: str | None,
) -> int:
    """Nothing eligible: the fallback agent's index, or an error saying why."""
    excluded = exclusions(request, out, snap, registry)
    unavailable = excluded.get("circuit_open", [])
    others = {k: v for k, v in excluded.items() if k != "circuit_open"}
    if fallback_agent is not None and fallback_agent in snap.index:
        return snap.index[fallback_agent]
    blocked_by_constraints = {a for agents in others.values() for a in agents}
    if unavailable and not set(unavailable) <= blocked_by_constraints:
        raise AgentsUnavailableError([a for a in unavailable if a not in blocked_by_constraints])
    raise NoEligibleAgentError(excluded)
