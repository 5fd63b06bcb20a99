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

Open decisions are kept columnar: a batch's decisions are one `LedgerBlock` (their ids, and
numpy arrays of ranked agent indices and model qualities), found by a slot number, so a
10k-request batch adds no Python container per decision for the garbage collector to walk
(`entry()` builds the `LedgerEntry` view of one decision when its feedback comes).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from tinydancer.errors import FeedbackError

__all__ = ["Answer", "DecisionLedger", "LedgerBlock", "LedgerEntry", "Settled"]


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


class LedgerBlock(NamedTuple):
    """Many decisions at once: row i allowed `names[ranked[i, j]]` for j while
    `ranked[i, j] >= 0` (chosen first), with the model's qualities `qualities[i, j]` (NaN:
    no prediction)."""

    request_ids: list[str]
    names: tuple[str, ...]
    ranked: np.ndarray  # (N, k) integer, -1 after each row's last agent
    qualities: np.ndarray  # (N, k) float
    mode: str = "agent"

    def entry(self, row: int) -> LedgerEntry:
        ranked = self.ranked[row]
        count = int(np.count_nonzero(ranked >= 0))
        return LedgerEntry(
            self.request_ids[row],
            tuple(self.names[k] for k in ranked[:count].tolist()),
            tuple(self.qualities[row, :count].tolist()),
            self.mode,
        )


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
        self._open: OrderedDict[str, int] = OrderedDict()  # request id -> slot, oldest first
        self._singles: dict[int, LedgerEntry] = {}  # slots remembered one by one
        self._starts: list[int] = []  # first slot of each block still holding open slots
        self._blocks: list[LedgerBlock] = []
        self._next_slot = 0
        self._answered: OrderedDict[str, bool] = OrderedDict()  # id -> it had an answer
        self._attempts: dict[str, list[str]] = {}  # gateway request -> agents of its attempts
        self._answers: dict[str, Answer] = {}  # finished gateway answers awaiting quality
        self.refused = {"unknown_request": 0, "replayed": 0, "agent_mismatch": 0}

    def entry(self, request_id: str) -> LedgerEntry | None:
        """The open decision for `request_id` (None if it is not open)."""
        slot = self._open.get(request_id)
        if slot is None:
            return None
        single = self._singles.get(slot)
        if single is not None:
            return single
        i = bisect.bisect_right(self._starts, slot) - 1
        return self._blocks[i].entry(slot - self._starts[i])

    def _drop(self, request_id: str) -> None:
        self._singles.pop(self._open.pop(request_id), None)

    def _refuse(self, reason: str, message: str) -> FeedbackError:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return FeedbackError(reason, message)

    def _evict(self) -> None:
        # Over capacity, the oldest go; and a block is kept while an older decision is open,
        # so decisions more than 4 x capacity slots old go too (bounding the blocks kept).
        opened = self._open
        excess = len(opened) - self.capacity  # a 10k batch evicts 10k: tight loops
        if self._singles or self._attempts or self._answers:
            for _ in range(excess):
                self._forget(*opened.popitem(last=False))
        else:  # only block rows are open: nothing else to forget
            for _ in range(excess):
                opened.popitem(last=False)
        too_old = self._next_slot - 4 * self.capacity
        while opened and next(iter(opened.values())) < too_old:
            self._forget(*opened.popitem(last=False))
        # blocks whose every slot is older than the oldest open one hold nothing any more
        oldest = next(iter(opened.values()), self._next_slot)
        done = 0
        while done < len(self._blocks) and (
            self._starts[done] + len(self._blocks[done].request_ids) <= oldest
        ):
            done += 1
        if done:
            del self._starts[:done], self._blocks[:done]

    def _forget(self, request_id: str, slot: int) -> None:
        """What an evicted decision leaves besides its `_open` entry."""
        self._singles.pop(slot, None)
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
    ) -> LedgerEntry:
        entry = LedgerEntry(request_id, tuple(allowed), tuple(qualities), mode)
        self._remember_entry(entry)
        if len(self._open) > self.capacity:
            self._evict()
        return entry

    def _remember_entry(self, entry: LedgerEntry) -> None:
        self._drop_if_open(entry.request_id)
        self._open[entry.request_id] = slot = self._next_slot
        self._singles[slot] = entry
        self._next_slot += 1

    def _drop_if_open(self, request_id: str) -> None:
        if request_id in self._open:  # remembered again: the newest wins
            self._drop(request_id)

    def remember_block(self, block: LedgerBlock) -> None:
        """A batch's decisions in one go (rows with no agent, `ranked[i, 0] < 0`, are skipped)."""
        start = self._next_slot
        self._next_slot += len(block.request_ids)
        self._starts.append(start)
        self._blocks.append(block)
        ids = block.request_ids
        routable = block.ranked[:, 0] >= 0 if ids else np.ones(0, bool)
        if routable.all() and self._open.keys().isdisjoint(ids):  # fresh ids: in one update
            self._open.update(zip(ids, range(start, start + len(ids)), strict=True))
        else:
            for row, (request_id, ok) in enumerate(zip(ids, routable.tolist(), strict=True)):
                if ok:
                    self._drop_if_open(request_id)
                    self._open[request_id] = start + row
        if len(self._open) > self.capacity or self._next_slot - self._starts[0] > 4 * self.capacity:
            self._evict()

    def remember_entries(self, entries: Sequence[LedgerEntry | LedgerBlock]) -> None:
        """Entries one by one and blocks, in order (what a replica ships to the shared ledger)."""
        for item in entries:
            if isinstance(item, LedgerBlock):
                self.remember_block(item)
            else:
                self._remember_entry(item)
        if len(self._open) > self.capacity:
            self._evict()

    def ready_for_feedback(self, request_id: str) -> bool:
        """Feedback for `request_id` can be decided now: it is open (and, for a gateway
        request, its answer finished), or it was already closed (a replay, refused at once).
        False: unknown, or an answer still streaming: worth waiting for briefly."""
        entry = self.entry(request_id)
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
        entry = self.entry(answer.request_id)
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
            self._drop(answer.request_id)
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
        self._drop(request_id)
        del self._answers[request_id]
        self._close(request_id)
        return Settled(
            request_id, answer.agent, "gateway", answer.stitched, answer.latency_ms, answer.cost_usd
        )

    def check(self, request_id: str, agent: str) -> LedgerEntry:
        """The entry feedback for (request_id, agent) would consume; raises if it would be refused."""
        entry = self.entry(request_id)
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
        open_entry = self.entry(request_id)
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
        self._drop(request_id)
        self._close(request_id)
        return entry

    def _close(self, request_id: str, *, answered: bool = True) -> None:
        self._answered[request_id] = answered
        if len(self._answered) > self.capacity:
            self._answered.popitem(last=False)
