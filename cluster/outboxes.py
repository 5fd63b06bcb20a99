"""What a router replica queues for the state actors, and how it ships it: off the
request path, one actor call per actor per `history_push_interval_s`.

* `ForwardingLedger`: the replica's own decision ledger, whose entries also go to the
  shared ledger in the registry actor (client feedback may reach any replica);
* `RoutedDecisions`: routed requests (agent-mode routes and the gateway's, candidate-mode
  routes), whose history rows are built at the next push for all of them at once, off
  the request path;
* `GatewayOutbox`: the gateway's `OutcomeSink`: each attempt's outcome, each finished
  answer and each decision of `/v1/chat/completions`. The registry applies the attempts
  in bulk (metrics, bandit) and keeps the answers for their quality report, the breaker
  moves circuits in order, the history stores decision and attempt rows. Routing sees
  them at the next snapshot refresh (`snapshot_interval_s`), as it does client feedback.
  Attempts travel as one columnar `AttemptBlock` per push, which both actors apply
  vectorised (`record_many`): no actor call per request. With state shards, each shard
  gets its part of the push (`cluster.shards.StateShards`): one call per shard and kind.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cluster.shards import StateShards
from tinydancer.agents.columnar import ColumnarDecisions
from tinydancer.agents.ledger import Answer, DecisionLedger, LedgerBlock, LedgerEntry, Settled
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.gateway.outcomes import AttemptBlock, AttemptOutcome
from tinydancer.history.records import (
    AttemptColumns,
    DecisionColumns,
    from_agent_decisions,
    from_candidate_responses,
    from_columnar,
)

__all__ = ["ForwardingLedger", "GatewayOutbox", "RoutedDecisions", "ship_learning"]


class RoutedDecisions:
    """Routed requests and their decisions, kept as they are until `take` builds their rows
    (requests one by one or in batches, columnar blocks of `/v1/route/batch`, and
    candidate-mode queries with their responses)."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._batches: list[tuple[Sequence[AgentRequest], Sequence[AgentDecision], float]] = []
        self._blocks: list[tuple[np.ndarray, ColumnarDecisions, AgentRequest, float]] = []
        self._candidates: list[tuple[np.ndarray, Any, float]] = []
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, requests: Sequence[AgentRequest], decisions: Sequence[AgentDecision]) -> None:
        self._batches.append((requests, decisions, time.time()))
        self._rows += len(requests)

    def add_block(
        self, block: np.ndarray, decisions: ColumnarDecisions, template: AgentRequest
    ) -> None:
        self._blocks.append((block, decisions, template, time.time()))
        self._rows += len(decisions)

    def add_candidates(self, query: np.ndarray, response: Any) -> None:
        """A candidate-mode request: its query embedding and its `RoutingResponse`."""
        self._candidates.append((query, response, time.time()))
        self._rows += 1

    def detach(self) -> RoutedDecisions:
        """Everything added since the last detach or take, as a `RoutedDecisions` of its own;
        this one starts empty. Called where the adds happen (the replica's event loop), so the
        detached one can build its rows in another thread while routing goes on."""
        detached = RoutedDecisions(self.replica)
        detached._batches, detached._blocks = self._batches, self._blocks
        detached._candidates, detached._rows = self._candidates, self._rows
        self._batches, self._blocks, self._candidates, self._rows = [], [], [], 0
        return detached

    def take(self) -> list[DecisionColumns]:
        """The history rows of everything added since the last take."""
        pending = self.detach()
        batches, blocks, candidates = pending._batches, pending._blocks, pending._candidates
        out = [
            from_columnar(block, decisions, template, ts=ts, replica=self.replica)
            for block, decisions, template, ts in blocks
        ]
        if batches:
            out.append(
                from_agent_decisions(
                    [r for requests, _, _ in batches for r in requests],
                    [d for _, decisions, _ in batches for d in decisions],
                    ts=[ts for requests, _, ts in batches for _ in requests],
                    replica=self.replica,
                )
            )
        if candidates:
            queries, responses, ts = zip(*candidates, strict=True)
            out.append(from_candidate_responses(queries, responses, ts=ts, replica=self.replica))
        return out


class GatewayOutbox:
    """An `OutcomeSink` that queues: the replica's background task ships the queues."""

    def __init__(self, replica: str, routed: RoutedDecisions | None = None) -> None:
        self.replica = replica
        self.routed = RoutedDecisions(replica) if routed is None else routed  # shared with routes
        self.attempts: list[AttemptOutcome] = []
        self.answers: list[Answer] = []
        self.carried = AttemptColumns()  # rows of attempts shipped by a push that failed elsewhere

    def decided(self, request: AgentRequest, decision: AgentDecision) -> None:
        self.routed.add([request], [decision])

    def attempted(self, outcomes: Sequence[AttemptOutcome]) -> None:
        self.attempts.extend(outcomes)

    def answered(self, answer: Answer) -> None:
        self.answers.append(answer)

    def settled(self, settled: Settled, quality: float) -> None:
        """Quality reports are settled by the registry actor (`/v1/feedback`), not here."""

    def take(self) -> tuple[list[AttemptOutcome], list[Answer], AttemptColumns]:
        attempts, answers = self.attempts, self.answers
        self.attempts, self.answers = [], []
        rows, self.carried = self.carried, AttemptColumns()
        rows.extend(AttemptColumns.from_outcomes(attempts, self.replica))
        return attempts, answers, rows

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
    shards: StateShards,
    max_retry_after_s: float,
) -> AttemptColumns:
    """Ledger entries first, then gateway attempts and answers, each to its shard
    (`StateShards.ship`); returns the attempts' rows for the history. What a failed shard
    did not take stays in the outbox for the next try (the rows of the rest are kept for
    the history), and the failure is raised."""
    entries, ledger.outbox = ledger.outbox, []
    attempts, answers, rows = outbox.take()
    if not entries and not attempts and not answers:
        return rows
    block = AttemptBlock.from_outcomes(attempts)  # columns: cheap to ship, applied in bulk
    failure = await shards.ship(entries, block, answers, max_retry_after_s)
    if failure is None:
        return rows
    error, kept_rows, kept_answers = failure
    kept = set(kept_rows.tolist())
    outbox.put_back([a for i, a in enumerate(attempts) if i in kept], kept_answers)
    outbox.carried.extend(
        AttemptColumns.from_outcomes(
            [a for i, a in enumerate(attempts) if i not in kept], outbox.replica
        )
    )
    raise error
