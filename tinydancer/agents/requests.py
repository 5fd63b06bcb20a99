"""Request preparation for the agent kernel: a request becomes a message sequence, one
row of `REQUEST_COLUMNS` and a row of per-agent eligibility (checked as it goes)."""

from __future__ import annotations

import numpy as np

from tinydancer.agents.kernel import REQUEST_COLUMNS
from tinydancer.agents.snapshot import RoutingSnapshot
from tinydancer.agents.types import AgentRequest
from tinydancer.errors import InvalidRequestError
from tinydancer.model.embedding import as_embedding

__all__ = ["REQ", "eligible_agents", "message_sequence", "request_row"]

REQ = {name: i for i, name in enumerate(REQUEST_COLUMNS)}


def message_sequence(request: AgentRequest, index: int, dim: int, max_messages: int) -> np.ndarray:
    """(T, D) float32: the request's embedding, or its latest `max_messages` messages.

    `index` names the request in errors (`requests[i]`; -1 for a lone request).
    """
    where = f"requests[{index}]" if index >= 0 else "request"
    prefix = f"{where}." if index >= 0 else ""
    if (request.embedding is None) == (request.messages is None):
        raise InvalidRequestError(
            f"{where}.embedding",
            "both or neither of embedding and messages",
            "exactly one of them",
        )
    if request.embedding is not None:
        return as_embedding(request.embedding, f"{prefix}embedding", dim)[None, :]
    messages = list(request.messages or [])
    if not messages:
        raise InvalidRequestError(f"{prefix}messages", [], "at least one message embedding")
    kept = messages[-max_messages:]
    offset = len(messages) - len(kept)
    return np.stack(
        [as_embedding(m, f"{prefix}messages[{offset + i}]", dim) for i, m in enumerate(kept)]
    )


def request_row(request: AgentRequest, snap: RoutingSnapshot, length: int) -> np.ndarray:
    """(len(REQUEST_COLUMNS),) float32: objective weights, scales, constraints, length."""
    w_quality, w_cost, w_latency, w_similarity = request.objective_weights()
    if request.willingness_to_pay is not None:
        wtp = request.willingness_to_pay
        if not (isinstance(wtp, int | float) and np.isfinite(wtp) and wtp > 0):
            raise InvalidRequestError("willingness_to_pay", wtp, "USD per unit of quality, > 0")
        cost_scale = 1.0 / wtp
    else:
        cost_scale = w_cost / snap.cost_ref
    tokens = request.expected_tokens
    if tokens is not None and not (
        isinstance(tokens, int | float) and np.isfinite(tokens) and tokens >= 0
    ):
        raise InvalidRequestError("expected_tokens", tokens, "a token count >= 0 or null")
    c = request.constraints
    return np.array(
        [
            w_quality,
            cost_scale,
            w_latency / snap.latency_ref,
            w_similarity,
            -1.0 if tokens is None else tokens,
            np.inf if c.max_cost_usd is None else c.max_cost_usd,
            np.inf if c.max_latency_ms is None else c.max_latency_ms,
            -np.inf if c.min_quality is None else c.min_quality,
            length,
            0.0,
        ],
        np.float32,
    )


def eligible_agents(request: AgentRequest, snap: RoutingSnapshot) -> np.ndarray:
    """(A_bucket,) bool: routable agents that meet the capability and exclusion rules."""
    c = request.constraints
    eligible = snap.base_eligible.copy()
    if c.required_capabilities:
        missing = [cap for cap in c.required_capabilities if cap not in snap.capability_index]
        if missing:
            eligible[:] = False
        else:
            columns = [snap.capability_index[cap] for cap in c.required_capabilities]
            eligible &= snap.capabilities[:, columns].all(axis=1)
    for name in c.excluded_agents:
        position = snap.index.get(name)
        if position is not None:
            eligible[position] = False
    return eligible
