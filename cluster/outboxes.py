"""What a router replica queues for the state actors, and how it ships it: off the
request path, one actor call per actor per `history_push_interval_s`.

* `ForwardingLedger`: the replica's own decision ledger, whose entries also go to the
  shared ledger in the registry actor (client feedback may reach any replica);
* `GatewayOutbox`: the gateway's `OutcomeSink`: each attempt's outcome, each finished
  answer and each decision of `/v1/chat/completions`. The registry applies the attempts
  in bulk (metrics, bandit) and keeps the answers for their quality report, the breaker
  moves circuits in order, the history stores decision and attempt rows. Routing sees
  them at the next snapshot refresh (`snapshot_interval_s`), as it does client feedback.
  Attempts travel as one columnar `AttemptBlock` per push, which both actors apply
  vectorised (`record_many`): no actor call per request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import ray

from tinydancer.agents.ledger import Answer, DecisionLedger, LedgerBlock, LedgerEntry, Settled
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.gateway.outcomes import AttemptBlock, AttemptOutcome
from tinydancer.history.records import AttemptColumns, from_agent_decisions

__all__ = ["ForwardingLedger", "GatewayOutbox", "ship_learning"]


class GatewayOutbox:
    """An `OutcomeSink` that queues: the replica's background task ships the queues."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.decisions: list[Any] = []  # DecisionColumns blocks, merged with the routes'
        self.attempts: list[AttemptOutcome] = []
        self.answers: list[Answer] = []

    def decided(self, request: AgentRequest, decision: AgentDecision) -> None:
        self.decisions.append(
            from_agent_decisions([request], [decision], ts=time.time(), replica=self.replica)
        )

    def attempted(self, outcomes: Sequence[AttemptOutcome]) -> None:
        self.attempts.extend(outcomes)

    def answered(self, answer: Answer) -> None:
        self.answers.append(answer)

    def settled(self, settled: Settled, quality: float) -> None:
        """Quality reports are settled by the registry actor (`/v1/feedback`), not here."""

    def take(self) -> tuple[list[AttemptOutcome], list[Answer], AttemptColumns]:
        attempts, answers = self.attempts, self.answers
        self.attempts, self.answers = [], []
        return attempts, answers, AttemptColumns.from_outcomes(attempts, self.replica)

    def put_back(self, attempts: list[AttemptOutcome], answers: list[Answer]) -> None:
        """A failed shipment: keep it for the next try, oldest first."""
        self.attempts[:0], self.answers[:0] = attempts, answers


class ForwardingLedger(DecisionLedger):
    """The replica's ledger also queues its entries for the shared ledger in the registry actor."""

    def __init__(self) -> None:
        super().__init__(capacity=10_000)
        self.outbox: list[LedgerEntry | LedgerBlock] = []  # a batch ships as its one block

    def remember(
        self, request_id: str, allowed: Any, qualities: Any = (), mode: str = "agent"
    ) -> LedgerEntry:
        entry = super().remember(request_id, allowed, qualities, mode)
        self.outbox.append(entry)
        return entry

    def remember_block(self, block: LedgerBlock) -> None:
        super().remember_block(block)
        self.outbox.append(block)

    def remember_entries(self, entries: Any) -> None:
        super().remember_entries(entries)
        self.outbox.extend(entries)


async def ship_learning(
    ledger: ForwardingLedger,
    outbox: GatewayOutbox,
    registry_actor: Any,
    breaker_actor: Any,
    max_retry_after_s: float,
) -> AttemptColumns:
    """Ledger entries first, then gateway attempts and answers; returns the attempts' rows
    for the history. A failed registry call keeps the attempts for the next try."""
    entries, ledger.outbox = ledger.outbox, []
    if entries:
        await registry_actor.remember_decisions.remote(entries)
    attempts, answers, rows = outbox.take()
    if not attempts and not answers:
        return rows
    block = AttemptBlock.from_outcomes(attempts)  # columns: cheap to ship, applied in bulk
    try:
        await registry_actor.record_gateway.remote(block, answers)
    except ray.exceptions.RayError:
        outbox.put_back(attempts, answers)
        raise
    if attempts:
        await breaker_actor.record_attempts.remote(block, max_retry_after_s)
    return rows
