"""Turning routing decisions and outcomes into columnar history records.

`DecisionColumns` / `OutcomeColumns` hold a batch as columns (lists and numpy arrays) so
the store appends them as one Arrow table; the helpers below build them from the
routers' results without touching the hot path's objects more than once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from tinydancer.agents.types import AgentDecision, AgentRequest

__all__ = [
    "AttemptColumns",
    "DecisionColumns",
    "OutcomeColumns",
    "dequantize_embeddings",
    "from_agent_decisions",
    "from_candidate_responses",
    "from_columnar",
    "quantize_embeddings",
]


_QUANTIZE_ROWS = 512  # a (512, 384) float32 block is 768 KiB


def quantize_embeddings(
    vectors: np.ndarray, rows_per_pass: int = _QUANTIZE_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float -> ((N, D) int8, (N,) float32 scale): symmetric, one scale per vector.

    In passes of `rows_per_pass` rows through one float32 scratch block that stays in the
    CPU's cache: a 10k-row batch's five passes over its 15 MB take half the time they take
    over the whole block (the replica quantizes every `/v1/route/batch` block it stores).
    The result does not depend on `rows_per_pass`.
    """
    vectors = np.asarray(vectors, np.float32)
    count = len(vectors)
    codes, scale = np.empty(vectors.shape, np.int8), np.empty(count, np.float32)
    rows_per_pass = max(1, min(count, rows_per_pass))
    scratch = np.empty((rows_per_pass, *vectors.shape[1:]), np.float32)
    for start in range(0, count, rows_per_pass):
        part = vectors[start : start + rows_per_pass]
        work = scratch[: len(part)]
        rows = np.abs(part, out=work).max(axis=1) * np.float32(1 / 127)
        rows = np.where(rows > 0, rows, np.float32(1))
        np.multiply(part, (np.float32(1) / rows)[:, None], out=work)  # |x| <= 127 (+ rounding)
        np.rint(work, out=work)
        codes[start : start + len(part)] = np.clip(work, -127, 127, out=work)
        scale[start : start + len(part)] = rows
    return codes, scale


def dequantize_embeddings(blobs: Sequence[bytes], scales: np.ndarray) -> np.ndarray:
    """Stored BLOBs + scales -> (N, D) float32."""
    raw = np.frombuffer(b"".join(blobs), dtype=np.int8).reshape(len(blobs), -1)
    return raw.astype(np.float32) * np.asarray(scales, np.float32)[:, None]


# A numeric column: a list, or a numpy array (the columnar batch path keeps its arrays).
Numbers = list[float] | np.ndarray
OptionalNumbers = list[float | None] | np.ndarray


@dataclass
class DecisionColumns:
    """A batch of decisions, column by column (see `schema.TABLES['decisions']`)."""

    request_id: list[str] = field(default_factory=list)
    ts: Numbers = field(default_factory=list)  # Unix seconds
    mode: list[str] = field(default_factory=list)
    embedding: list[np.ndarray] | np.ndarray = field(default_factory=list)  # (D,) int8s or (N, D)
    embedding_scale: Numbers = field(default_factory=list)
    message_count: list[int] | np.ndarray = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    confidence: Numbers = field(default_factory=list)
    uncertainty: Numbers = field(default_factory=list)
    propensity: Numbers = field(default_factory=list)
    model_quality: OptionalNumbers = field(default_factory=list)
    expected_quality: OptionalNumbers = field(default_factory=list)
    estimated_cost_usd: OptionalNumbers = field(default_factory=list)
    estimated_latency_ms: list[float | None] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)  # JSON list of names
    optimize_for: list[str | None] = field(default_factory=list)
    willingness_to_pay: list[float | None] = field(default_factory=list)
    constraints: list[str | None] = field(default_factory=list)  # JSON
    model_version: list[str] = field(default_factory=list)
    inference_time_us: Numbers = field(default_factory=list)
    replica: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.request_id)

    def extend(self, other: DecisionColumns) -> None:
        """Append `other`'s rows (a column held as a numpy array becomes a list here)."""
        for f in fields(self):
            mine = getattr(self, f.name)
            if not isinstance(mine, list):
                mine = list(mine)
                setattr(self, f.name, mine)
            mine.extend(getattr(other, f.name))

    def as_dict(self) -> dict[str, list[Any]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class OutcomeColumns:
    request_id: list[str] = field(default_factory=list)
    agent: list[str] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    latency_ms: list[float | None] = field(default_factory=list)
    quality: list[float | None] = field(default_factory=list)
    cost_usd: list[float | None] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    stitched: list[bool | None] = field(default_factory=list)  # a gateway answer two agents wrote

    def __len__(self) -> int:
        return len(self.request_id)

    def extend(self, other: OutcomeColumns) -> None:
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))

    def add(
        self,
        request_id: str,
        agent: str,
        success: bool,
        latency_ms: float | None = None,
        quality: float | None = None,
        cost_usd: float | None = None,
        ts: float | None = None,
        *,
        stitched: bool | None = None,
    ) -> None:
        import time

        self.request_id.append(request_id)
        self.agent.append(agent)
        self.success.append(bool(success))
        self.latency_ms.append(latency_ms)
        self.quality.append(quality)
        self.cost_usd.append(cost_usd)
        self.ts.append(time.time() if ts is None else ts)
        self.stitched.append(stitched)


@dataclass
class AttemptColumns:
    """Gateway attempts, column by column (see `schema.TABLES['attempts']`)."""

    request_id: list[str] = field(default_factory=list)
    attempt: list[int] = field(default_factory=list)
    agent: list[str] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    failure_kind: list[str | None] = field(default_factory=list)
    mid_stream: list[bool] = field(default_factory=list)
    continued: list[bool] = field(default_factory=list)
    status: list[int | None] = field(default_factory=list)
    latency_ms: list[float | None] = field(default_factory=list)
    ttft_ms: list[float | None] = field(default_factory=list)
    prompt_tokens: list[int | None] = field(default_factory=list)
    completion_tokens: list[int | None] = field(default_factory=list)
    cost_usd: list[float | None] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    replica: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.request_id)

    def extend(self, other: AttemptColumns) -> None:
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))

    def as_dict(self) -> dict[str, list[Any]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[Any], replica: str | None = None) -> AttemptColumns:
        """Columns of `gateway.AttemptOutcome`s (any objects with their attributes)."""
        columns = cls()
        for o in outcomes:
            columns.request_id.append(o.request_id)
            columns.attempt.append(o.attempt)
            columns.agent.append(o.agent)
            columns.success.append(o.failure_kind is None)
            columns.failure_kind.append(o.failure_kind)
            columns.mid_stream.append(o.mid_stream)
            columns.continued.append(o.continued)
            columns.status.append(o.status)
            columns.latency_ms.append(o.latency_ms)
            columns.ttft_ms.append(o.ttft_ms)
            columns.prompt_tokens.append(o.prompt_tokens)
            columns.completion_tokens.append(o.completion_tokens)
            columns.cost_usd.append(o.cost_usd)
            columns.ts.append(o.ts)
            columns.replica.append(replica)
        return columns


def _constraints_json(request: AgentRequest) -> str:
    c = request.constraints
    return json.dumps(
        {
            "max_cost_usd": c.max_cost_usd,
            "max_latency_ms": c.max_latency_ms,
            "min_quality": c.min_quality,
            "required_capabilities": sorted(c.required_capabilities),
            "excluded_agents": sorted(c.excluded_agents),
        }
    )


def from_agent_decisions(
    requests: Sequence[AgentRequest],
    decisions: Sequence[AgentDecision],
    *,
    ts: float | Sequence[float],
    replica: str | None = None,
) -> DecisionColumns:
    """History columns for a batch of agent-mode decisions (embedding = last message);
    `ts` is one time for all, or one per decision."""
    times = [float(ts)] * len(decisions) if isinstance(ts, int | float) else list(ts)
    if len(times) != len(decisions):
        raise ValueError(f"ts: got {len(times)} times for {len(decisions)} decisions")
    last = []
    counts = []
    for request in requests:
        if request.embedding is not None:
            last.append(np.asarray(request.embedding, np.float32))
            counts.append(1)
        else:
            messages = list(request.messages or [])
            last.append(np.asarray(messages[-1], np.float32))
            counts.append(len(messages))
    codes, scales = (
        quantize_embeddings(np.stack(last)) if last else (np.zeros((0, 0), np.int8), np.zeros(0))
    )
    if len(requests) != len(decisions):
        raise ValueError(f"got {len(requests)} requests for {len(decisions)} decisions")
    return DecisionColumns(
        request_id=[d.request_id for d in decisions],
        ts=times,
        mode=["agent"] * len(decisions),
        embedding=list(codes),
        embedding_scale=scales.tolist(),
        message_count=counts,
        chosen=[d.agent for d in decisions],
        confidence=[d.confidence for d in decisions],
        uncertainty=[d.uncertainty for d in decisions],
        propensity=[d.propensity for d in decisions],
        model_quality=[d.model_quality for d in decisions],
        expected_quality=[d.expected_quality for d in decisions],
        estimated_cost_usd=[d.estimated_cost_usd for d in decisions],
        estimated_latency_ms=[d.estimated_latency_ms for d in decisions],
        alternatives=[json.dumps([r[0] for r in d.ranked[1:4]]) for d in decisions],
        optimize_for=[d.objective for d in decisions],
        willingness_to_pay=[r.willingness_to_pay for r in requests],
        constraints=[_constraints_json(r) for r in requests],
        model_version=[d.model_version for d in decisions],
        inference_time_us=[d.inference_time_us for d in decisions],
        replica=[replica] * len(decisions),
    )


def from_columnar(
    block: np.ndarray,
    decisions: Any,
    template: AgentRequest,
    *,
    ts: float,
    replica: str | None = None,
) -> DecisionColumns:
    """History columns for `AgentRouter.route_embeddings` results (rows with an agent only).

    Numeric columns stay numpy arrays and the embeddings one (N, D) int8 block, so a
    10k-row batch makes no per-row Python objects beyond its ids, names and JSON strings
    (which the store needs as strings anyway): the rows cost little to build, to pickle
    on their way to the history actor and to turn into Arrow.
    """
    index = decisions.agent_index
    rows = np.flatnonzero(index >= 0)
    every = len(rows) == len(index)
    pick: Any = slice(None) if every else rows
    codes, scales = quantize_embeddings(np.asarray(block, np.float32)[pick])
    n = len(rows)
    ids = decisions.request_ids
    if not every:
        ids = [ids[i] for i in rows.tolist()]
    # rows share few rankings and few agents: each distinct one is encoded once, then taken
    rankings = np.array([json.dumps(list(r)) for r in decisions.rankings] or [""], object)
    names = np.array(decisions.agent_names or [""], object)
    confidence = decisions.confidence[pick]
    return DecisionColumns(
        request_id=list(ids),
        ts=np.full(n, ts, np.float64),
        mode=["agent"] * n,
        embedding=codes,
        embedding_scale=scales,
        message_count=np.ones(n, np.int32),
        chosen=names[index[pick]].tolist(),
        confidence=confidence,
        uncertainty=decisions.uncertainty[pick],
        propensity=confidence,
        model_quality=decisions.model_quality[pick],
        expected_quality=decisions.expected_quality[pick],
        estimated_cost_usd=decisions.estimated_cost_usd[pick],
        estimated_latency_ms=[None] * n,
        alternatives=rankings[decisions.ranking_index[pick]].tolist(),
        optimize_for=[template.optimize_for] * n,
        willingness_to_pay=[template.willingness_to_pay] * n,
        constraints=[_constraints_json(template)] * n,
        model_version=[decisions.model_version] * n,
        inference_time_us=np.zeros(n),
        replica=[replica] * n,
    )


def from_candidate_responses(
    queries: Sequence[np.ndarray],
    responses: Sequence[Any],
    *,
    ts: Sequence[float],
    replica: str | None = None,
) -> DecisionColumns:
    """One history row per candidate-mode request (its query, its `RoutingResponse` and
    when it was routed): the top candidate and the next three; the queries are quantized
    together."""
    n = len(responses)
    codes, scales = quantize_embeddings(np.asarray(queries, np.float32).reshape(n, -1))
    ids = [[str(i) for i in r.candidate_ids[:4].tolist()] for r in responses]
    top = [float(r.confidence[0]) for r in responses]
    return DecisionColumns(
        request_id=[r.request_id for r in responses],
        ts=list(ts),
        mode=["candidate"] * n,
        embedding=codes,
        embedding_scale=scales,
        message_count=[1] * n,
        chosen=[i[0] for i in ids],
        confidence=top,
        uncertainty=[float(r.uncertainty[0]) for r in responses],
        propensity=[1.0] * n,
        model_quality=list(top),  # its own list: `extend` grows each column in place
        expected_quality=[None] * n,
        estimated_cost_usd=[None] * n,
        estimated_latency_ms=[None] * n,
        alternatives=[json.dumps(i[1:]) for i in ids],
        optimize_for=[None] * n,
        willingness_to_pay=[None] * n,
        constraints=[None] * n,
        model_version=[r.model_version for r in responses],
        inference_time_us=[r.inference_time_us + r.feature_time_us for r in responses],
        replica=[replica] * n,
    )
