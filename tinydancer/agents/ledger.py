"""Which decisions may still receive feedback, and for which agents or candidates.

Feedback can poison online learning, so it is accepted only for a request id the
service issued, once, and only for the chosen agent or one of its alternatives (in
candidate mode: one of the request's candidates). The ledger is bounded (oldest
entries go first) and counts what it refuses.

    ledger = DecisionLedger(capacity=100_000)
    ledger.remember("9f2c...", ("gpt-4", "mixtral"), (0.93, 0.81))
    entry = ledger.consume("9f2c...", "mixtral")   # FeedbackError if unknown / replayed / mismatched

A gateway decision (`mode="gateway"`, allowed = its full ranking) settles in two steps:
each attempt's outcome once, in order (`record_attempt`), then, once the answer is
complete (`finish`), one quality report (`settle` with a quality; no success needed),
credited to the agent that finished the answer. Attempts are the gateway's own
outcomes; `finish` takes an `Answer`, a plain tuple, so a replica can ship it to the
ledger that accepts client feedback.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tinydancer.errors import FeedbackError

__all__ = ["Answer", "DecisionLedger", "LedgerEntry", "Settled"]


class LedgerEntry(NamedTuple):  # a NamedTuple: built 10k at a time on the batch path
    """allowed: chosen agent first, then alternatives (or the candidate ids); qualities:
    the offline model's prediction for each allowed agent (None or NaN where it has none)."""

    request_id: str
    allowed: tuple[str, ...]
    qualities: tuple[float | None, ...] = ()
    mode: str = "agent"

    @property
    def model_quality(self) -> Mapping[str, float]:
        return {
            a: q
            for a, q in zip(self.allowed, self.qualities, strict=False)
            if q is not None and q == q  # NaN: no prediction
        }


class Answer(NamedTuple):
    """How a gateway answer ended: `agent` finished it (None: every attempt failed);
    `stitched`: continued by another agent after a mid-stream failure."""

    request_id: str
    agent: str | None
    stitched: bool = False
    latency_ms: float | None = None
    cost_usd: float | None = None


class Settled(NamedTuple):
    """Accepted feedback: the agent it was credited to, and for gateway answers how they ended."""

    request_id: str
    agent: str
    mode: str
    stitched: bool = False
    latency_ms: float | None = None
    cost_usd: float | None = None


class DecisionLedger:
    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._open: OrderedDict[str, LedgerEntry] = OrderedDict()
        self._answered: OrderedDict[str, bool] = OrderedDict()  # id -> it had an answer
        self._attempts: dict[str, list[str]] = {}  # gateway request -> agents of its attempts
        self._answers: dict[str, Answer] = {}  # finished gateway answers awaiting quality
        self.refused = {"unknown_request": 0, "replayed": 0, "agent_mismatch": 0}

    def _refuse(self, reason: str, message: str) -> FeedbackError:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return FeedbackError(reason, message)

    def _evict(self) -> None:
        while len(self._open) > self.capacity:
            request_id, _ = self._open.popitem(last=False)
            self._attempts.pop(request_id, None)
            self._answers.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._open

    def closed(self, request_id: str) -> bool:
        """Whether feedback for this request was already taken (a replay needs no waiting)."""
        return request_id in self._answered

    def remember(
        self,
        request_id: str,
        allowed: Sequence[str],
        qualities: Sequence[float | None] = (),
        mode: str = "agent",
    ) -> None:
        self._open[request_id] = LedgerEntry(request_id, tuple(allowed), tuple(qualities), mode)
        if len(self._open) > self.capacity:
            self._evict()

    def remember_entries(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            self._open[entry.request_id] = entry
        if len(self._open) > self.capacity:
            self._evict()

    def ready_for_feedback(self, request_id: str) -> bool:
        """Feedback for `request_id` can be decided now: it is open (and, for a gateway
        request, its answer finished), or it was already closed (a replay, refused at once).
        False: unknown, or an answer still streaming: worth waiting for briefly."""
        entry = self._open.get(request_id)
        if entry is None:
            return self.closed(request_id)
        return entry.mode != "gateway" or request_id in self._answers

    # -- gateway answers --------------------------------------------------------------------
    def record_attempt(self, request_id: str, attempt: int, agent: str) -> float | None:
        """Accept attempt number `attempt` (0, 1, ... in order, once each) of a gateway
        decision; returns the model's quality for `agent` (the bandit's context)."""
        entry = self.check(request_id, agent)
        if entry.mode != "gateway":
            raise self._refuse("not_gateway", f"request {request_id!r} was not a gateway request")
        agents = self._attempts.setdefault(request_id, [])
        if request_id in self._answers or attempt != len(agents):
            raise self._refuse(
                "attempt_replayed",
                f"attempt {attempt} of request {request_id!r} is out of order or already "
                f"recorded ({len(agents)} recorded{', answer finished' if request_id in self._answers else ''})",
            )
        agents.append(agent)
        return entry.model_quality.get(agent)

    def finish(self, answer: Answer) -> None:
        """The answer is complete (or gave up): from now on only its quality report remains."""
        entry = self._open.get(answer.request_id)
        if entry is None or entry.mode != "gateway" or answer.request_id in self._answers:
            raise self._refuse(
                "not_open",
                f"request {answer.request_id!r} is not an open gateway request (unknown, "
                "another kind of decision, or already finished)",
            )
        if answer.agent is not None and answer.agent not in entry.allowed:
            raise self._refuse(
                "agent_mismatch", f"{answer.agent!r} was not ranked for {answer.request_id!r}"
            )
        self._attempts.pop(answer.request_id, None)
        if answer.agent is None:  # nothing to report quality on: close it
            del self._open[answer.request_id]
            self._close(answer.request_id, answered=False)
        else:
            self._answers[answer.request_id] = answer

    def _settle_answer(
        self, entry: LedgerEntry, agent: str | None, registry: Any, quality: float | None
    ) -> Settled:
        request_id = entry.request_id
        answer = self._answers.get(request_id)
        if answer is None or answer.agent is None:
            raise self._refuse(
                "in_progress", f"the answer to {request_id!r} is not complete yet; report later"
            )
        if agent is not None and agent != answer.agent:
            raise self._refuse(
                "agent_mismatch",
                f"quality of request {request_id!r} is credited to the agent that finished "
                f"the answer, {answer.agent!r}, not {agent!r}",
            )
        if quality is None:
            raise self._refuse(
                "missing_quality", f"feedback for gateway request {request_id!r} needs a quality"
            )
        registry.record_quality(
            request_id, answer.agent, quality, model_quality=entry.model_quality.get(answer.agent)
        )
        del self._open[request_id], self._answers[request_id]
        self._close(request_id)
        return Settled(
            request_id, answer.agent, "gateway", answer.stitched, answer.latency_ms, answer.cost_usd
        )

    def check(self, request_id: str, agent: str) -> LedgerEntry:
        """The entry feedback for (request_id, agent) would consume; raises if it would be refused."""
        entry = self._open.get(request_id)
        if entry is None:
            if self._answered.get(request_id) is False:
                raise self._refuse(
                    "no_answer",
                    f"request {request_id!r} got no answer (every attempt failed): "
                    "there is no quality to report",
                )
            if request_id in self._answered:
                raise self._refuse(
                    "replayed", f"feedback for request_id {request_id!r} was already recorded"
                )
            raise self._refuse(
                "unknown_request",
                f"request_id {request_id!r} was not issued by this service (or has "
                "aged out of its feedback window)",
            )
        if agent not in entry.allowed:
            shown = list(entry.allowed[:8]) + (["..."] if len(entry.allowed) > 8 else [])
            raise self._refuse(
                "agent_mismatch",
                f"{agent!r} was neither chosen nor offered for request "
                f"{request_id!r}; expected one of {shown}",
            )
        return entry

    def settle(
        self,
        request_id: str,
        agent: str | None,
        registry: Any,
        success: bool | None,
        latency_ms: float | None,
        quality: float | None,
        cost_usd: float | None,
    ) -> Settled:
        """Accept feedback once: check it, teach `registry` (agent mode), then consume it.

        A gateway answer takes a quality alone (agent None or the one that finished it);
        other decisions need the agent and success. Raises FeedbackError (counted) for an
        unknown, replayed or mismatched request.
        """
        open_entry = self._open.get(request_id)
        if open_entry is None:
            self.check(request_id, agent or "")  # unknown, replayed or unanswered: raises
        elif open_entry.mode == "gateway":
            return self._settle_answer(open_entry, agent, registry, quality)
        if agent is None or success is None:
            raise self._refuse(
                "missing_field",
                f"feedback for request {request_id!r} needs the agent and success",
            )
        entry = self.check(request_id, agent)
        if entry.mode == "agent":
            registry.record_outcome(
                request_id,
                agent,
                success,
                latency_ms,
                quality,
                cost_usd,
                model_quality=entry.model_quality.get(agent),
            )
        self.consume(request_id, agent)
        return Settled(request_id, agent, entry.mode, False, latency_ms, cost_usd)

    def consume(self, request_id: str, agent: str) -> LedgerEntry:
        entry = self.check(request_id, agent)
        del self._open[request_id]
        self._close(request_id)
        return entry

    def _close(self, request_id: str, *, answered: bool = True) -> None:
        self._answered[request_id] = answered
        if len(self._answered) > self.capacity:
            self._answered.popitem(last=False)
