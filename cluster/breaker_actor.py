"""The circuit breaker's actor (one per breaker shard; `cluster.actors.get_or_create`
creates them): owns one `CircuitBreaker`, records its transitions in the history."""

from __future__ import annotations

from typing import Any

import ray

from tinydancer.agents.breaker import BreakerConfig, CircuitBreaker
from tinydancer.gateway.outcomes import AttemptBlock, AttemptOutcome, teach_breaker_block

__all__ = ["CircuitBreakerActor"]


@ray.remote(max_restarts=-1, max_task_retries=3)
class CircuitBreakerActor:
    def __init__(self, history: Any, config: BreakerConfig) -> None:
        self.history = history
        self.breaker = CircuitBreaker(config)
        self._reported = 0

    async def _report(self) -> None:
        new = self.breaker.transitions[self._reported :]
        if new:
            self._reported = len(self.breaker.transitions)
            await self.history.record_transitions.remote([t.to_dict() for t in new])

    async def record_events(self, events: list[tuple[str, bool, str | None]]) -> None:
        """Client-reported outcomes (agent, success, request id), in order."""
        for agent, success, request_id in events:
            self.breaker.record(agent, success, request_id)
        await self._report()

    async def record_attempts(
        self, attempts: AttemptBlock | list[AttemptOutcome], max_retry_after_s: float
    ) -> None:
        """A replica's gateway attempts, in order and in bulk: circuit transitions and 429
        cooldowns."""
        teach_breaker_block(self.breaker, attempts, max_retry_after_s)
        await self._report()

    async def snapshot_if_newer(self, version: int) -> dict[str, Any] | None:
        snapshot = self.breaker.snapshot()  # refreshes cooldowns, may record transitions
        await self._report()
        return None if snapshot["version"] == version else snapshot

    async def lease(self, agent: str, wanted: int) -> int:
        granted = self.breaker.lease(agent, wanted)
        await self._report()
        return granted

    async def status(self) -> dict[str, Any]:
        snapshot = self.breaker.snapshot()
        return {
            "version": snapshot["version"],
            "states": snapshot["states"],
            "transitions": len(self.breaker.transitions),
        }
