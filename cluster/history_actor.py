"""`HistoryStoreActor`: owns the `HistoryStore` (the only DuckDB writer); flushes by age and
exports Parquet on a timer. Named, detached and restartable like the other state actors
(`cluster.actors.get_or_create` creates it)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import ray

from cluster.config import AppArgs
from tinydancer.history.records import AttemptColumns, DecisionColumns, OutcomeColumns
from tinydancer.history.store import HistoryConfig, HistoryStore

__all__ = ["HistoryStoreActor"]

log = logging.getLogger("tinydancer.history")


@ray.remote(max_restarts=-1, max_task_retries=3)
class HistoryStoreActor:
    def __init__(self, args: AppArgs) -> None:
        self.store = HistoryStore(
            HistoryConfig(
                path=args.history_path,
                export_dir=args.export_dir,
                max_buffer_rows=args.history_max_buffer_rows,
                max_buffer_age_s=args.history_max_buffer_age_s,
                age_from_decision_ts=True,  # the loss bound holds in client time
                retention_days=args.history_retention_days,
                checkpoint_threshold=args.history_checkpoint_threshold,
            )
        )
        self.export_interval_s = args.export_interval_s
        self._last_export = time.monotonic()
        self._last_compaction = time.monotonic()
        self._ticker: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:  # one failed write must not stop the flushes by age
                self.store.flush_if_due()
                if time.monotonic() - self._last_export >= self.export_interval_s:
                    self._last_export = time.monotonic()
                    self.store.export()
                if time.monotonic() - self._last_compaction >= 3600.0:
                    self._last_compaction = time.monotonic()
                    self.store.compact()  # no-op unless retention_days is set
            except Exception:
                log.exception("history: a timed flush or export failed; retrying on the next tick")

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def append(
        self,
        decisions: Sequence[DecisionColumns],
        outcomes: OutcomeColumns | None,
        attempts: AttemptColumns | None = None,
    ) -> int:
        """Buffer a replica's records; decision batches come as they were built (the
        store merges them only as Arrow)."""
        self._ensure_ticker()
        for batch in decisions:
            self.store.append_decisions(batch)
        if outcomes is not None:
            self.store.append_outcomes(outcomes)
        if attempts is not None:
            self.store.append_attempts(attempts)
        return self.store.buffered_rows

    async def record_agent_snapshot(self, snapshot: dict[str, Any]) -> None:
        self.store.record_agent_snapshot(snapshot)

    async def latest_agent_snapshot(
        self, shard: int | None = None, unsharded: bool = False
    ) -> dict[str, Any] | None:
        return self.store.latest_agent_snapshot(shard, unsharded=unsharded)

    async def record_transitions(self, transitions: list[dict[str, Any]]) -> None:
        for t in transitions:
            self.store.record_transition(
                t["agent"], t["from_state"], t["to_state"], t["reason"], t["at"]
            )

    async def record_model(self, version: str, mode: str, event: str, path: str | None) -> None:
        self.store.record_model(version, mode, event, path)

    async def flush(self) -> int:
        return self.store.flush()

    async def export(self) -> dict[str, int]:
        return self.store.export()

    async def integrity(self) -> dict[str, int]:
        return self.store.integrity()

    async def transitions(self) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT agent, from_state, to_state, reason, epoch(ts) FROM breaker_transitions "
            "ORDER BY seq"
        )
        return [
            dict(zip(("agent", "from_state", "to_state", "reason", "at"), r, strict=True))
            for r in rows
        ]

    async def status(self) -> dict[str, Any]:
        self._ensure_ticker()
        return {
            "buffered_rows": self.store.buffered_rows,
            **self.store.stats,
            "written_total": self.store.written_total(),
        }

    async def close(self) -> None:
        self.store.close()
