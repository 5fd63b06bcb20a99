"""The batch side of `AgentRouter.route_batch`: requests → the kernel's three host arrays,
and kernel output → decisions, with the per-request Python work cut to what each
`AgentDecision` needs.

Inputs: a batch of plain embedding requests is stacked and checked in one go, and
requests that share an objective and constraints (the usual batch) share one request
row and one eligibility row. Anything else, and any request that fails a check, takes
the request-by-request path, which names the offending field.

Outputs: the ranking, the counts of eligible agents and the conversion to Python floats
are done once for the batch. Rows that need the router's state (a probe of a half-open
circuit, the fallback agent when nothing is eligible) are left to the router.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from tinydancer._ids import new_request_id
from tinydancer.agents.decisions import DECISION_DEFAULTS, full_ranking, objective_name
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.requests import REQ, eligible_agents, message_sequence, request_row
from tinydancer.agents.snapshot import AGENT, OUT, RoutingSnapshot, exclusions
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.model.staging import bucket_for

__all__ = ["BatchInputs", "decide_rows", "prepare_inputs", "same_objective"]

BatchInputs = tuple[np.ndarray, np.ndarray, np.ndarray]  # messages, request rows, eligibility


def _padded(count: int) -> int:
    """A batch's compile bucket: powers of two (the kernel's time grows with its bucket,
    16 rows several times one, so small batches get buckets of their own)."""
    return bucket_for(count) if count > 16 else 1 << (count - 1).bit_length()


def _steps_bucket(steps: int) -> int:
    if steps == 1:
        return 1
    return bucket_for(steps) if steps > 16 else 1 << (steps - 1).bit_length()


def same_objective(a: AgentRequest, b: AgentRequest) -> bool:
    """Whether two requests get the same request row and eligibility (up to the length)."""
    return (
        (a.constraints is b.constraints or a.constraints == b.constraints)
        and a.optimize_for == b.optimize_for
        and a.weights == b.weights
        and a.willingness_to_pay == b.willingness_to_pay
        and a.expected_tokens == b.expected_tokens
    )


def _stacked_embeddings(requests: Sequence[AgentRequest], dim: int) -> np.ndarray | None:
    """(N, D) float32 when every request is one usable embedding of length `dim`, else None."""
    if any(r.messages is not None or r.embedding is None for r in requests):
        return None
    try:
        block = np.array([r.embedding for r in requests], np.float32)
    except (TypeError, ValueError):
        return None
    if block.ndim != 2 or block.shape[1] != dim:
        return None
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # judged below
        norms = np.vecdot(block, block)
    if not (np.isfinite(norms) & (norms != 0)).all():
        return None  # the request-by-request path names the request and says why
    return block


def prepare_inputs(
    requests: Sequence[AgentRequest], snap: RoutingSnapshot, dim: int, max_messages: int
) -> BatchInputs:
    """The kernel's messages (B, T, D), request rows (B, R) and eligibility (B, A), B and T
    padded to their compile buckets; raises InvalidRequestError naming a bad request."""
    count = len(requests)
    if count == 1:  # a lone request: none of the batch machinery pays for itself
        sequence = message_sequence(requests[0], -1, dim, max_messages)
        messages = np.zeros((1, _steps_bucket(sequence.shape[0]), dim), np.float32)
        messages[0, : sequence.shape[0]] = sequence
        row = request_row(requests[0], snap, sequence.shape[0])
        return messages, row[None], eligible_agents(requests[0], snap)[None].astype(np.float32)
    batch = _padded(count)
    stacked = _stacked_embeddings(requests, dim)
    if stacked is not None:
        messages = np.zeros((batch, 1, dim), np.float32)
        messages[:count, 0] = stacked
        lengths = [1] * count
    else:
        sequences = [message_sequence(r, i, dim, max_messages) for i, r in enumerate(requests)]
        lengths = [s.shape[0] for s in sequences]
        messages = np.zeros((batch, _steps_bucket(max(lengths)), dim), np.float32)
        for i, sequence in enumerate(sequences):
            messages[i, : sequence.shape[0]] = sequence
    # Consecutive requests with the same objective and constraints (the usual batch)
    # share one request row and one eligibility row, computed (and checked) once.
    distinct: list[tuple[np.ndarray, np.ndarray]] = []
    which: list[int] = []
    previous: AgentRequest | None = None
    for request in requests:
        if previous is None or not same_objective(request, previous):
            distinct.append((request_row(request, snap, 1), eligible_agents(request, snap)))
            previous = request
        which.append(len(distinct) - 1)
    rows = np.zeros((batch, len(REQ)), np.float32)
    eligible = np.zeros((batch, len(snap.base_eligible)), np.float32)
    rows[:count] = np.stack([row for row, _ in distinct])[which]
    rows[:count, REQ["length"]] = lengths
    eligible[:count] = np.stack([e for _, e in distinct])[which]
    return messages, rows, eligible


def _ranking(
    block: np.ndarray, snap: RoutingSnapshot, order: np.ndarray, row: int, count: int
) -> Any:
    return full_ranking(block[row], snap, order[row, :count])


def _exclusions(
    request: AgentRequest, block: np.ndarray, row: int, snap: RoutingSnapshot, registry: Any
) -> Any:
    return exclusions(request, block[row], snap, registry)


def decide_rows(
    requests: Sequence[AgentRequest],
    out: np.ndarray,
    snap: RoutingSnapshot,
    *,
    registry: AgentRegistry,
    model_version: str,
    elapsed_us: float,
) -> list[AgentDecision] | None:
    """Every request's decision, as `build_decision` would make it, or None when a row
    needs the router's own state (a probe is pending, or a row has no eligible agent and
    goes to the fallback): then the router decides the batch request by request.

    The ranking and every value a decision reads are gathered for the whole batch and
    converted to Python floats at once; each decision is then filled in directly (the
    frozen dataclass's __init__ sets its 19 fields one `object.__setattr__` at a time,
    a third of a row's cost).
    """
    count = len(requests)
    if snap.probes:
        return None
    block = out[:count]
    utility = block[:, OUT["utility"]]
    order = np.argsort(-utility, axis=1, kind="stable")
    rows = np.arange(count)
    best = order[:, 0]
    ranked_counts = np.isfinite(utility).sum(axis=1)
    if not np.isfinite(utility[rows, best]).all():
        return None
    top = order[:, :4]
    column = rows[:, None]
    utilities = utility[column, top].tolist()
    qualities = block[:, OUT["quality"]][column, top].tolist()
    costs = block[:, OUT["cost"]][column, top].tolist()

    def at_best(name: str) -> list[float]:
        return block[rows, OUT[name], best].tolist()

    propensity, uncertainty = at_best("propensity"), at_best("uncertainty")
    similarity, model_quality = at_best("similarity"), at_best("model_quality")
    latency = [None if v < 0 else v for v in snap.columns[AGENT["latency_ms"]].tolist()]
    names = snap.names
    everyone = len(names)
    # the fields every row shares, copied into each decision's __dict__ (measured: half
    # the cost of `__dict__.update(**fields)` per row)
    shared = dict(DECISION_DEFAULTS, model_version=model_version, inference_time_us=elapsed_us)
    ids = [r.request_id or new_request_id() for r in requests]
    decisions = []
    for i, (request, positions, ranked_count, u, q, c) in enumerate(
        zip(
            requests, top.tolist(), ranked_counts.tolist(), utilities, qualities, costs, strict=True
        )
    ):
        chosen = positions[0]
        decision = object.__new__(AgentDecision)
        fields = decision.__dict__
        fields.update(shared)
        fields["request_id"] = ids[i]
        fields["agent"] = names[chosen]
        fields["confidence"] = fields["propensity"] = propensity[i]
        fields["uncertainty"] = uncertainty[i]
        fields["estimated_cost_usd"] = c[0]
        fields["estimated_latency_ms"] = latency[chosen]
        fields["expected_quality"] = q[0]
        fields["similarity"] = similarity[i]
        fields["model_quality"] = model_quality[i]
        fields["objective"] = objective_name(request)
        ranked = positions[:ranked_count]  # `top` holds at most 4 agents
        fields["ranked"] = list(  # as long as `ranked`: zip stops at the shortest
            zip([names[p] for p in ranked], u, q, c, [latency[p] for p in ranked], strict=False)
        )
        if ranked_count < everyone:
            fields["explain"] = partial(_exclusions, request, block, i, snap, registry)
        fields["rank_all"] = partial(_ranking, block, snap, order, i, ranked_count)
        decisions.append(decision)
    return decisions
