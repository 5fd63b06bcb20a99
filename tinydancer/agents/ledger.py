"""Which decisions may still receive feedback, and for which agents or candidates.

Feedback can poison online learning, so it is accepted only for a request id the
service issued, once, and only for the chosen agent or one of its alternatives (in
candidate mode: one of the request's candidates). The ledger is bounded (oldest
entries go first) and counts what it refuses.

    ledger = DecisionLedger(capacity=100_000)
    ledger.remember("9f2c...", ("gpt-4", "mixtral"), (0.93, 0.81))
    entry = ledger.consume("9f2c...", "mixtral")   # FeedbackError if unknown / replayed / mismatched
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tinydancer.errors import FeedbackError

__all__ = ["DecisionLedger", "LedgerEntry"]


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


class DecisionLedger:
    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._open: OrderedDict[str, LedgerEntry] = OrderedDict()
        self._answered: OrderedDict[str, None] = OrderedDict()
        self.refused = {"unknown_request": 0, "replayed": 0, "agent_mismatch": 0}

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._open

    def remember(
        self,
        request_id: str,
        allowed: Sequence[str],
        qualities: Sequence[float | None] = (),
        mode: str = "agent",
    ) -> None:
        self._open[request_id] = LedgerEntry(request_id, tuple(allowed), tuple(qualities), mode)
        if len(self._open) > self.capacity:
            self._open.popitem(last=False)

    def remember_entries(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            self._open[entry.request_id] = entry
        while len(self._open) > self.capacity:
            self._open.popitem(last=False)

    def check(self, request_id: str, agent: str) -> LedgerEntry:
        """The entry feedback for (request_id, agent) would consume; raises if it would be refused."""
        entry = self._open.get(request_id)
        if entry is None:
            reason = "replayed" if request_id in self._answered else "unknown_request"
            self.refused[reason] += 1
            if reason == "replayed":
                raise FeedbackError(
                    reason, f"feedback for request_id {request_id!r} was already recorded"
                )
            raise FeedbackError(
                reason,
                f"request_id {request_id!r} was not issued by this service (or has "
                "aged out of its feedback window)",
            )
        if agent not in entry.allowed:
            self.refused["agent_mismatch"] += 1
            shown = list(entry.allowed[:8]) + (["..."] if len(entry.allowed) > 8 else [])
            raise FeedbackError(
                "agent_mismatch",
                f"{agent!r} was neither chosen nor offered for request "
                f"{request_id!r}; expected one of {shown}",
            )
        return entry

    def settle(
        self,
        request_id: str,
        agent: str,
        registry: Any,
        success: bool,
        latency_ms: float | None,
        quality: float | None,
        cost_usd: float | None,
    ) -> LedgerEntry:
        """Accept feedback once: check it, teach `registry` (agent mode), then consume it.

        Raises FeedbackError (counted) for an unknown, replayed or mismatched request.
        """
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
        return entry

    def consume(self, request_id: str, agent: str) -> LedgerEntry:
        entry = self.check(request_id, agent)
        del self._open[request_id]
        self._answered[request_id] = None
        if len(self._answered) > self.capacity:
            self._answered.popitem(last=False)
        return entry
