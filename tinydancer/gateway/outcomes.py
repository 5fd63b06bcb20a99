"""What a gateway request leaves behind, and who receives it.

Every attempt produces one `AttemptOutcome` (a plain tuple, so a replica can ship them
in columnar batches: `AttemptColumns.from_outcomes`), the answer one `Answer` (the
ledger's), and a later quality report one `Settled`. The gateway checks each against
its ledger (once per attempt, in order) and hands it to an `OutcomeSink`:

* `LocalSink(registry, breaker, history)`: in process, applies attempts to the agent's
  metrics, bandit and breaker at once, and appends rows to a `HistoryStore` (or none);
* in a serving layer, a sink that queues them for whoever owns the shared state.

    sink = LocalSink(router.registry, router.breaker, history=store)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from tinydancer.agents.breaker_bulk import BreakerEvents
from tinydancer.agents.bulk import OutcomeBlock
from tinydancer.agents.ledger import Answer, Settled
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.gateway.upstream import NOT_THE_AGENTS_FAULT
from tinydancer.history.records import AttemptColumns, OutcomeColumns, from_agent_decisions

__all__ = [
    "AttemptBlock",
    "AttemptOutcome",
    "LocalSink",
    "OutcomeSink",
    "teach_breaker",
    "teach_breaker_block",
    "teach_registry",
    "teach_registry_block",
]


class AttemptOutcome(NamedTuple):
    """One attempt of one gateway request (`failure_kind` None = it answered).

    `mid_stream`: it failed after part of its answer reached the client; `continued`:
    it continued another agent's partial answer; `teaches_bandit`: whether its success
    or failure should update the agent's posterior (see GatewayConfig.await_quality_feedback);
    `model_quality`: the offline model's prediction for the agent (the bandit's context).
    """

    request_id: str
    attempt: int
    agent: str
    failure_kind: str | None
    latency_ms: float
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    mid_stream: bool = False
    continued: bool = False
    status: int | None = None
    retry_after_s: float | None = None
    teaches_bandit: bool = True
    model_quality: float | None = None
    ts: float = 0.0

    @property
    def success(self) -> bool:
        return self.failure_kind is None

    @property
    def counts_against_agent(self) -> bool:
        return self.failure_kind not in NOT_THE_AGENTS_FAULT


def teach_registry(registry: Any, outcomes: Sequence[AttemptOutcome]) -> None:
    """Each attempt that was the agent's doing updates its metrics (and bandit), in order."""
    for o in outcomes:
        if o.counts_against_agent and o.agent in registry:
            registry.record_outcome(
                o.request_id,
                o.agent,
                o.success,
                o.latency_ms,
                None,
                o.cost_usd,
                model_quality=o.model_quality,
                learn=o.teaches_bandit,
            )


def teach_breaker(
    breaker: Any, outcomes: Sequence[AttemptOutcome], max_retry_after_s: float
) -> None:
    """Each attempt that was the agent's doing moves its circuit; a 429 cools it down."""
    for o in outcomes:
        if not o.counts_against_agent:
            continue
        if o.failure_kind == "rate_limited" and o.retry_after_s is not None:
            breaker.cool_down(o.agent, min(o.retry_after_s, max_retry_after_s))
        else:
            breaker.record(o.agent, o.success, o.request_id)


@dataclass(frozen=True, eq=False)
class AttemptBlock:
    """What the learners need of a batch of attempts, column by column (NaN = none):
    cheap to ship between processes, applied in bulk by `teach_registry_block` and
    `teach_breaker_block` with the same result as the one-by-one functions above."""

    names: tuple[str, ...]
    agent: np.ndarray  # int64, indexes names
    success: np.ndarray
    counts: np.ndarray  # bool: the agent's doing (counts_against_agent)
    teaches_bandit: np.ndarray
    latency_ms: np.ndarray
    cost_usd: np.ndarray
    model_quality: np.ndarray
    retry_after_s: np.ndarray  # a rate limit's Retry-After; NaN = an ordinary outcome
    request_id: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.agent)

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[AttemptOutcome]) -> AttemptBlock:
        codes: dict[str, int] = {}
        agent = [codes.setdefault(o.agent, len(codes)) for o in outcomes]

        def numbers(values: list[float | None]) -> np.ndarray:
            return np.array([math.nan if v is None else v for v in values], np.float64)

        rate_limited = [
            o.retry_after_s if o.failure_kind == "rate_limited" else None for o in outcomes
        ]
        return cls(
            names=tuple(codes),
            agent=np.array(agent, np.int64),
            success=np.array([o.failure_kind is None for o in outcomes], bool),
            counts=np.array([o.counts_against_agent for o in outcomes], bool),
            teaches_bandit=np.array([o.teaches_bandit for o in outcomes], bool),
            latency_ms=numbers([o.latency_ms for o in outcomes]),
            cost_usd=numbers([o.cost_usd for o in outcomes]),
            model_quality=numbers([o.model_quality for o in outcomes]),
            retry_after_s=numbers(rate_limited),
            request_id=tuple(o.request_id for o in outcomes),
        )


def _block(attempts: AttemptBlock | Sequence[AttemptOutcome]) -> AttemptBlock:
    return attempts if isinstance(attempts, AttemptBlock) else AttemptBlock.from_outcomes(attempts)


def teach_registry_block(registry: Any, attempts: AttemptBlock | Sequence[AttemptOutcome]) -> int:
    """`teach_registry` in bulk (`AgentRegistry.record_many`); returns the rows applied."""
    block = _block(attempts)
    known = np.array([name in registry for name in block.names], bool)
    rows = block.counts & known[block.agent]
    return int(
        registry.record_many(
            OutcomeBlock.build(
                block.names,
                agent=block.agent[rows],
                success=block.success[rows],
                latency_ms=block.latency_ms[rows],
                cost_usd=block.cost_usd[rows],
                model_quality=block.model_quality[rows],
                learn=block.teaches_bandit[rows],
            )
        )
    )


def teach_breaker_block(
    breaker: Any, attempts: AttemptBlock | Sequence[AttemptOutcome], max_retry_after_s: float
) -> int:
    """`teach_breaker` in bulk (`CircuitBreaker.record_many`, all at the breaker's now)."""
    block = _block(attempts)
    rows = np.flatnonzero(block.counts)
    retry_after = block.retry_after_s[rows]
    return int(
        breaker.record_many(
            BreakerEvents.build(
                block.names,
                block.agent[rows],
                block.success[rows],
                breaker.clock(),
                np.minimum(retry_after, max_retry_after_s),  # NaN stays NaN
                # ids settle routed requests watched for a timeout (none by default)
                [block.request_id[i] for i in rows] if breaker.pending else None,
            )
        )
    )


class OutcomeSink(Protocol):
    """Receives what the gateway produced, in order, exactly once each."""

    def decided(self, request: AgentRequest, decision: AgentDecision) -> None: ...
    def attempted(self, outcomes: Sequence[AttemptOutcome]) -> None: ...
    def answered(self, answer: Answer) -> None: ...
    def settled(self, settled: Settled, quality: float) -> None: ...


class LocalSink:
    """In-process learning and history: attempts update the registry and the breaker now."""

    def __init__(
        self,
        registry: Any,
        breaker: Any,
        history: Any | None = None,
        *,
        replica: str | None = None,
        max_retry_after_s: float = 300.0,
    ) -> None:
        self.registry = registry
        self.breaker = breaker
        self.history = history
        self.replica = replica
        self.max_retry_after_s = max_retry_after_s

    def decided(self, request: AgentRequest, decision: AgentDecision) -> None:
        if self.history is not None:
            self.history.append_decisions(
                from_agent_decisions([request], [decision], ts=time.time(), replica=self.replica)
            )

    def attempted(self, outcomes: Sequence[AttemptOutcome]) -> None:
        teach_registry(self.registry, outcomes)
        teach_breaker(self.breaker, outcomes, self.max_retry_after_s)
        if self.history is not None:
            self.history.append_attempts(AttemptColumns.from_outcomes(outcomes, self.replica))

    def answered(self, answer: Answer) -> None:
        """Nothing to apply: the attempts carried the outcome; the answer awaits its quality."""

    def settled(self, settled: Settled, quality: float) -> None:
        if self.history is not None:
            rows = OutcomeColumns()
            rows.add(
                settled.request_id,
                settled.agent,
                True,
                settled.latency_ms,
                quality,
                settled.cost_usd,
                stitched=settled.stitched,
            )
            self.history.append_outcomes(rows)
