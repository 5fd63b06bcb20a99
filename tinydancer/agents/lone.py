"""The lone-request path of `AgentRouter.route`: one request with one embedding (the
in-process call, an HTTP `/v1/route`), with the Python around the jitted call cut to
what the decision needs.

A lone call is dominated by fixed costs, not by arithmetic: on a 2-core VM the kernel
is about a quarter of it and the rest is Python and numpy calls, each paying more when
it runs once between jitted calls than in a tight loop. So this path
- keeps the kernel's input row and reuses its tail (the request row and eligibility)
  while the snapshot and the request's objective and constraints stay the same;
- checks the embedding with one dot product in float64, leaving anything near float32's
  limits to `as_embedding`, whose errors it raises;
- reads the kernel's output once (`tolist`), ranks the agents in Python and fills the
  decision in without the frozen dataclass's per-field `__init__`.

It makes the same decision as the request-by-request path, field for field (tests
compare the two). Anything else (messages, a probe pending, no eligible agent) is left
to the router.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from tinydancer._ids import new_request_id
from tinydancer.agents.batch import same_objective
from tinydancer.agents.decisions import DECISION_DEFAULTS, full_ranking, objective_name
from tinydancer.agents.requests import eligible_agents, request_row
from tinydancer.agents.snapshot import AGENT, OUT, RoutingSnapshot, exclusions
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.model.embedding import as_embedding

__all__ = ["LoneInputs", "is_lone", "lone_decision"]

# A squared norm in this range is finite and non-zero in float32 too (as `as_embedding`
# requires); outside it (NaN and inf included) `as_embedding` judges the vector.
_SAFE_NORM_SQ = (1e-30, 1e30)
_UTILITY, _QUALITY, _COST = OUT["utility"], OUT["quality"], OUT["cost"]
_PROPENSITY, _UNCERTAINTY = OUT["propensity"], OUT["uncertainty"]
_SIMILARITY, _MODEL_QUALITY, _KNOWN = OUT["similarity"], OUT["model_quality"], OUT["known"]


def is_lone(request: AgentRequest) -> bool:
    """Whether the request is one embedding (no messages, text or chat): this path's."""
    return request.embedding is not None and (
        request.messages is None and request.text is None and request.chat is None
    )


class LoneInputs:
    """The kernel's input row for one single-embedding request, kept between calls.

    Layout as `AgentRouter._score` builds it: the embedding (one message), the request
    row, the eligibility. Not thread-safe: the router uses it under its lock.
    """

    def __init__(self) -> None:
        self._key: tuple[RoutingSnapshot, AgentRequest] | None = None
        self._row: np.ndarray = np.zeros((1, 0), np.float32)
        self.latency: list[float | None] = []

    def fill(self, request: AgentRequest, snap: RoutingSnapshot, dim: int) -> np.ndarray:
        """(1, D + len(REQ) + A) float32 for `request`; raises what the general path raises."""
        key = self._key
        if key is None or key[0] is not snap or not same_objective(key[1], request):
            tail = np.concatenate(
                [request_row(request, snap, 1), eligible_agents(request, snap)]
            ).astype(np.float32)
            self._row = np.zeros((1, dim + tail.shape[0]), np.float32)
            self._row[0, dim:] = tail
            self._key = (snap, request)
            self.latency = [
                None if v < 0 else v for v in snap.columns[AGENT["latency_ms"]].tolist()
            ]
        vector = request.embedding
        if not (
            type(vector) is np.ndarray and vector.dtype == np.float32 and vector.shape == (dim,)
        ):
            vector = as_embedding(vector, "embedding", dim)
        wide = vector.astype(np.float64)  # no float32 overflow or underflow to judge here
        if not _SAFE_NORM_SQ[0] < float(wide.dot(wide)) < _SAFE_NORM_SQ[1]:
            as_embedding(vector, "embedding", dim)  # near float32's limits: its exact rule
        row = self._row
        row[0, :dim] = vector
        return row


def lone_decision(
    request: AgentRequest,
    out: np.ndarray,
    snap: RoutingSnapshot,
    latency: list[float | None],
    *,
    registry: Any,
    model_version: str,
    elapsed_us: float,
) -> tuple[AgentDecision, list[str], list[float | None]] | None:
    """The decision for one request's kernel output (len(OUTPUT_ROWS), A), with the agents
    it allows (chosen first) and the model's quality for each, for the ledger; None when
    no agent is eligible (the router's fallback rules decide)."""
    rows = out.tolist()
    utility = rows[_UTILITY]
    names = snap.names
    ranked_positions = sorted(
        (i for i in range(len(names)) if math.isfinite(utility[i])),
        key=utility.__getitem__,
        reverse=True,
    )  # stable: ties keep the lower index first, as argsort(-utility, kind="stable")
    if not ranked_positions:
        return None
    quality, cost = rows[_QUALITY], rows[_COST]
    best = ranked_positions[0]
    propensity = rows[_PROPENSITY][best]
    known, model_quality = rows[_KNOWN], rows[_MODEL_QUALITY]
    decision = object.__new__(AgentDecision)
    decision.__dict__.update(
        DECISION_DEFAULTS,
        request_id=request.request_id or new_request_id(),
        agent=names[best],
        confidence=propensity,
        uncertainty=rows[_UNCERTAINTY][best],
        estimated_cost_usd=cost[best],
        estimated_latency_ms=latency[best],
        expected_quality=quality[best],
        similarity=rows[_SIMILARITY][best],
        model_version=model_version,
        propensity=propensity,
        model_quality=model_quality[best],
        objective=objective_name(request),
        ranked=[
            (names[p], utility[p], quality[p], cost[p], latency[p]) for p in ranked_positions[:4]
        ],
        explain=partial(exclusions, request, out, snap, registry)
        if len(ranked_positions) < len(names)
        else None,
        inference_time_us=elapsed_us,
        rank_all=partial(full_ranking, out, snap, ranked_positions),
    )
    allowed = ranked_positions[:4]
    return (
        decision,
        [names[p] for p in allowed],
        [model_quality[p] if known[p] > 0 else None for p in allowed],
    )
