"""The routing snapshot: the registry and the breakers as the kernel reads them.

An `AgentRouter` rebuilds it when the registry's or the breaker's version changes (or a
circuit's cooldown ends), never per request: building it loops over agents, routing
does not. `exclusions` explains, for one scored request, which constraint excluded
which agent (for error messages and decision reasons, off the hot path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from tinydancer.agents import bandit
from tinydancer.agents.breaker import BreakerState, RoutingBreaker
from tinydancer.agents.kernel import AGENT_ROWS, OUTPUT_ROWS
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.types import AgentRequest
from tinydancer.errors import InvalidRequestError
from tinydancer.model.staging import bucket_for

__all__ = ["AGENT", "OUT", "RoutingSnapshot", "build_snapshot", "exclusions"]

OUT = {name: i for i, name in enumerate(OUTPUT_ROWS)}  # rows of the kernel's output
AGENT = {name: i for i, name in enumerate(AGENT_ROWS)}  # rows of the agent columns
_MIN_AGENT_BUCKET = 8


@dataclass(frozen=True, eq=False)
class RoutingSnapshot:
    """Agent columns for the kernel and what the host needs to read its output."""

    key: tuple[int, int]
    names: tuple[str, ...]
    index: dict[str, int]
    agents: Any  # (len(AGENT_ROWS), A_bucket) on the device
    columns: np.ndarray  # the same columns on the host
    specialization: Any  # (A_bucket, D) on the device
    capabilities: np.ndarray  # (A_bucket, C) bool
    capability_index: dict[str, int]
    base_eligible: np.ndarray  # (A_bucket,) bool: active and routable per the breaker
    states: dict[str, BreakerState]
    probes: tuple[int, ...]  # half-open agents this router holds a probe permit for
    cost_ref: float
    latency_ref: float
    taken_at: float
    expires_at: float  # a circuit's cooldown ends: breaker states change without an event


def build_snapshot(
    registry: AgentRegistry,
    breaker: RoutingBreaker,
    heads: dict[str, int],
    dim: int,
    default_tokens: float,
    permit_available: Callable[[str], bool],
    now: float,
) -> RoutingSnapshot:
    """Columns of every registered agent; `permit_available(name)` says whether a
    half-open agent may take a probe from this router."""
    agents = registry.list()
    count = len(agents)
    bucket = max(_MIN_AGENT_BUCKET, bucket_for(max(count, 1)))
    columns = np.zeros((len(AGENT_ROWS), bucket), np.float32)
    columns[AGENT["head"]] = -1
    columns[AGENT["latency_ms"]] = -1
    specialization = np.zeros((bucket, dim), np.float32)
    vocabulary = sorted({c for a in agents for c in a.capabilities})
    capability_index = {c: i for i, c in enumerate(vocabulary)}
    capabilities = np.zeros((bucket, max(len(vocabulary), 1)), bool)
    base = np.zeros(bucket, bool)
    states: dict[str, BreakerState] = {}
    for i, agent in enumerate(agents):  # snapshot build, not the hot path
        metrics = registry.metrics(agent.name)
        posterior = registry.posterior(agent.name)
        mean, factor = bandit.routing_posterior(posterior, registry.bandit_config)
        observed_cost = metrics.recent_cost.mean
        estimate = agent.cost.estimate(default_tokens)
        latency = metrics.recent_latency_mean.mean or agent.expected_latency_ms
        columns[:, i] = [
            0.0,
            heads.get(agent.name, -1),
            mean[0],
            mean[1],
            factor[0, 0],
            factor[1, 0],
            factor[1, 1],
            agent.cost.per_request_usd,
            agent.cost.blended_per_1k_tokens_usd,
            observed_cost if observed_cost is not None else estimate,
            -1.0 if latency is None else latency,
            0.0 if agent.specialization is None else 1.0,
        ]
        if agent.specialization is not None:
            if len(agent.specialization) != dim:
                raise InvalidRequestError(
                    f"agents.{agent.name}.specialization",
                    f"{len(agent.specialization)} values",
                    f"{dim} values (the model's embedding dimension)",
                )
            specialization[i] = agent.specialization
        for capability in agent.capabilities:
            capabilities[i, capability_index[capability]] = True
        state = breaker.state(agent.name)
        states[agent.name] = state
        base[i] = agent.active and (
            state is BreakerState.CLOSED
            or (state is BreakerState.HALF_OPEN and permit_available(agent.name))
        )
    columns[AGENT["eligible"], :count] = base[:count]
    active = [i for i, a in enumerate(agents) if a.active]
    costs = columns[AGENT["cost_estimate"], active] if active else np.zeros(1)
    latencies = columns[AGENT["latency_ms"], active] if active else np.zeros(1)
    return RoutingSnapshot(
        key=(registry.version, breaker.version),
        names=tuple(a.name for a in agents),
        index={a.name: i for i, a in enumerate(agents)},
        agents=jnp.asarray(columns),
        columns=columns,
        specialization=jnp.asarray(specialization),
        capabilities=capabilities,
        capability_index=capability_index,
        base_eligible=base,
        states=states,
        probes=tuple(
            i for i, a in enumerate(agents) if states[a.name] is BreakerState.HALF_OPEN and base[i]
        ),
        cost_ref=float(max(costs.max(), 1e-12)),
        latency_ref=float(max(latencies.max(), 1e-9)),
        taken_at=now,
        expires_at=breaker.next_change_at(),
    )


def exclusions(
    request: AgentRequest, out: np.ndarray, snap: RoutingSnapshot, registry: AgentRegistry
) -> dict[str, list[str]]:
    """Which constraint excluded which agents, for one request's kernel output `out`."""
    c = request.constraints
    excluded: dict[str, list[str]] = {}

    def add(rule: str, name: str) -> None:
        excluded.setdefault(rule, []).append(name)

    for i, name in enumerate(snap.names):
        agent = registry.get(name) if name in registry else None
        if agent is None or not agent.active:
            add("inactive", name)
        if snap.states.get(name) is BreakerState.OPEN or (
            snap.states.get(name) is BreakerState.HALF_OPEN and not snap.base_eligible[i]
        ):
            add("circuit_open", name)
        if name in c.excluded_agents:
            add("excluded_agents", name)
        if agent is not None and not c.required_capabilities <= agent.capabilities:
            add("required_capabilities", name)
        if c.max_cost_usd is not None and out[OUT["cost"], i] > c.max_cost_usd:
            add("max_cost_usd", name)
        latency = float(snap.columns[AGENT["latency_ms"], i])
        if c.max_latency_ms is not None and latency >= 0 and latency > c.max_latency_ms:
            add("max_latency_ms", name)
        if c.min_quality is not None and out[OUT["quality"], i] < c.min_quality:
            add("min_quality", name)
    return excluded
