"""The routing history: one DuckDB file, written in batches by a single owner.

    store = HistoryStore(HistoryConfig(path="history.duckdb"))
    store.append_decisions(columns)          # buffered; flushed by size or age
    store.append_outcomes(outcomes)
    store.append_attempts(attempts)          # the gateway's attempts
    store.flush()                            # everything accepted so far is in the file
    store.export()                           # Parquet for analysts while the writer runs
    store.close()

Writes are Arrow appends (`INSERT ... BY NAME SELECT * FROM <arrow table>`), never one
INSERT per record. A crash loses at most the unflushed buffer: at most
`max_buffer_rows` records, none older than `max_buffer_age_s` provided the owner calls
`flush_if_due()` at least that often (the HistoryStore actor does); with
`age_from_decision_ts` a decision's age counts from its own `ts`, delivery included.

Outcomes are never dropped: a repeat for the same request is stored with `duplicate = true`
(the `outcomes_latest` view skips it); one that arrives before its decision, or for a request
the store never saw, is stored as is and counted as unmatched by `integrity()` until its
decision arrives. DuckDB checkpoints its log every `checkpoint_threshold` (see maintenance).

DuckDB lets one process open a file read-write, so analysts read Parquet exports (`export()`,
incremental by ingestion sequence, one directory per table) with any engine, or `tinydancer
analytics --db EXPORT_DIR`, while the writer keeps running.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from tinydancer.agents.endpoint import redact_snapshot
from tinydancer.errors import HistoryError
from tinydancer.history.arrow import attempt_table, decision_table, micros, timestamps
from tinydancer.history.maintenance import (
    DEFAULT_CHECKPOINT_SIZE,
    checkpoint_threshold_sql,
    compact_before,
    export_tables,
)
from tinydancer.history.records import AttemptColumns, DecisionColumns, OutcomeColumns
from tinydancer.history.schema import TABLES, migrate

__all__ = ["HistoryConfig", "HistoryStore"]

_SEQUENCED = (
    "decisions",
    "outcomes",
    "attempts",
    "agent_snapshots",
    "breaker_transitions",
    "model_versions",
)


@dataclass(frozen=True)
class HistoryConfig:
    path: str | os.PathLike[str] = "tinydancer-history.duckdb"
    max_buffer_rows: int = 50_000
    max_buffer_age_s: float = 1.0
    # Count a decision's age from its own `ts` (its answer time), so the time it took to reach
    # the store counts too: the loss bound then holds in client time. Off for backfills of
    # old decisions, which would otherwise flush on every append.
    age_from_decision_ts: bool = False
    export_dir: str | os.PathLike[str] | None = None
    retention_days: float | None = None  # None = keep raw rows for ever
    checkpoint_threshold: str = DEFAULT_CHECKPOINT_SIZE


class HistoryStore:
    """Single-writer DuckDB history with batched appends."""

    def __init__(self, config: HistoryConfig | None = None, *, clock: Any = time.time) -> None:
        self.config = config or HistoryConfig()
        self._clock = clock
        self._lock = threading.RLock()
        path = Path(self.config.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        threshold = checkpoint_threshold_sql(self.config.checkpoint_threshold)
        try:
            self._con = duckdb.connect(str(path))
        except duckdb.Error as exc:
            raise HistoryError(
                f"cannot open history file {path}: {exc} (only one process may write it; "
                "analysts should read its Parquet exports)"
            ) from None
        self._con.execute(threshold)
        migrate(self._con)
        # Never below the export high-water mark: after compaction deletes a table's newest
        # rows, restarting at max(seq) would reuse exported numbers and skip new rows.
        self._seq = {
            t: max(
                self._scalar(f"SELECT coalesce(max(seq), 0) FROM {t}"),
                self._scalar(
                    "SELECT coalesce(max(value::BIGINT), 0) FROM schema_info WHERE key = ?",
                    [f"export.{t}"],
                ),
            )
            for t in _SEQUENCED
        }
        self._seen_outcomes: set[str] = {
            str(r[0])
            for r in self._con.execute("SELECT DISTINCT request_id FROM outcomes").fetchall()
        }
        self._decisions: list[DecisionColumns] = []  # batches as given: merged only as Arrow
        self._decision_rows = 0
        self._outcomes = OutcomeColumns()
        self._attempts = AttemptColumns()
        self._oldest: float | None = None
        self.stats = {
            "decisions": 0,
            "outcomes": 0,
            "attempts": 0,
            "duplicate_outcomes": 0,
            "flushes": 0,
            "last_flush_s": 0.0,
        }

    # -- schema -------------------------------------------------------------------------------
    def _scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        row = self._con.execute(sql, params or []).fetchone()
        return None if row is None else row[0]

    @property
    def schema_version(self) -> int:
        return int(self._scalar("SELECT value FROM schema_info WHERE key = 'schema_version'"))

    # -- buffered appends ---------------------------------------------------------------------
    def append_decisions(self, columns: DecisionColumns) -> None:
        with self._lock:
            if len(columns) == 0:
                return
            self._decisions.append(columns)
            self._decision_rows += len(columns)
            made_at = None  # by default a row's age counts from when it reached this buffer
            if self.config.age_from_decision_ts:  # live traffic: from when it was decided
                made_at = float(np.min(np.asarray(columns.ts, np.float64)))
            self._note_buffered(made_at)

    def append_outcomes(self, columns: OutcomeColumns) -> None:
        with self._lock:
            if len(columns) == 0:
                return
            self._outcomes.extend(columns)
            self._note_buffered()

    def append_attempts(self, columns: AttemptColumns) -> None:
        with self._lock:
            if len(columns) == 0:
                return
            self._attempts.extend(columns)
            self._note_buffered()

    def _note_buffered(self, made_at: float | None = None) -> None:
        now = self._clock()
        made = now if made_at is None or not made_at <= now else made_at  # never in the future
        self._oldest = made if self._oldest is None else min(self._oldest, made)
        if self.buffered_rows >= self.config.max_buffer_rows:
            self.flush()
        else:
            self.flush_if_due()

    @property
    def buffered_rows(self) -> int:
        return self._decision_rows + len(self._outcomes) + len(self._attempts)

    def flush_if_due(self) -> bool:
        with self._lock:
            if (
                self._oldest is not None
                and self._clock() - self._oldest >= self.config.max_buffer_age_s
            ):
                self.flush()
                return True
            return False

    def flush(self) -> int:
        """Write every buffered record; returns how many. Durable when this returns."""
        with self._lock:
            started = time.perf_counter()
            written = 0
            if self._decisions:
                written += self._write_decisions(self._decisions)
                self._decisions, self._decision_rows = [], 0
            if len(self._outcomes):
                written += self._write_outcomes(self._outcomes)
                self._outcomes = OutcomeColumns()
            if len(self._attempts):
                count = len(self._attempts)
                arrow_attempts = attempt_table(self._attempts, self._next_seq("attempts", count))  # noqa: F841
                self._con.execute("INSERT INTO attempts BY NAME SELECT * FROM arrow_attempts")
                self.stats["attempts"] += count
                written += count
                self._attempts = AttemptColumns()
            self._oldest = None
            if written:
                self.stats["flushes"] += 1
                self.stats["last_flush_s"] = time.perf_counter() - started
            return written

    def _next_seq(self, table: str, count: int) -> np.ndarray:
        start = self._seq[table] + 1
        self._seq[table] += count
        return np.arange(start, start + count, dtype=np.int64)

    def _write_decisions(self, batches: list[DecisionColumns]) -> int:
        tables = [decision_table(b) for b in batches]
        merged = (
            pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        )
        count = merged.num_rows
        arrow_batch = merged.append_column("seq", pa.array(self._next_seq("decisions", count)))  # noqa: F841
        self._con.execute("INSERT INTO decisions BY NAME SELECT * FROM arrow_batch")
        self.stats["decisions"] += count
        return count

    def _write_outcomes(self, columns: OutcomeColumns) -> int:
        duplicate = []
        for request_id in columns.request_id:
            duplicate.append(request_id in self._seen_outcomes)
            self._seen_outcomes.add(request_id)
        count = len(columns)
        arrow_batch = pa.table(  # noqa: F841 - read by DuckDB below
            {
                "seq": pa.array(self._next_seq("outcomes", count)),
                "request_id": pa.array(columns.request_id),
                "agent": pa.array(columns.agent),
                "success": pa.array(columns.success, pa.bool_()),
                "latency_ms": pa.array(columns.latency_ms, pa.float64()),
                "quality": pa.array(columns.quality, pa.float64()),
                "cost_usd": pa.array(columns.cost_usd, pa.float64()),
                "ts": timestamps(columns.ts),
                "duplicate": pa.array(duplicate, pa.bool_()),
                "stitched": pa.array(
                    columns.stitched or [None] * count, pa.bool_()
                ),  # older callers leave it empty
            }
        )
        self._con.execute("INSERT INTO outcomes BY NAME SELECT * FROM arrow_batch")
        self.stats["outcomes"] += count
        self.stats["duplicate_outcomes"] += sum(duplicate)
        return count

    # -- rare events (written at once) --------------------------------------------------------
    def _insert_event(self, table: str, values: dict[str, Any]) -> None:
        with self._lock:
            seq = int(self._next_seq(table, 1)[0])
            names = ["seq", "ts", *values]
            placeholders = ", ".join(["?", "make_timestamp(?)"] + ["?"] * len(values))
            self._con.execute(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({placeholders})",
                [seq, micros(self._clock()), *values.values()],
            )

    def record_agent_snapshot(self, snapshot: dict[str, Any]) -> None:
        self._insert_event(
            "agent_snapshots",
            {  # endpoint header values may be secrets: never in the history
                "version": int(snapshot.get("version", 0)),
                "snapshot": json.dumps(redact_snapshot(snapshot)),
            },
        )

    def latest_agent_snapshot(
        self, shard: int | None = None, *, unsharded: bool = False
    ) -> dict[str, Any] | None:
        """The newest registry snapshot; with `shard`, the newest that registry shard wrote
        (its snapshot carries `"shard"`); with `unsharded`, the newest without a shard."""
        where, params = "", []
        if unsharded or shard is not None:
            where = f"WHERE json_extract(snapshot, '$.shard') {'IS NULL' if unsharded else '= ?'}"
            params = [] if unsharded else [str(int(shard))]  # type: ignore[arg-type]
        with self._lock:
            row = self._con.execute(
                f"SELECT snapshot FROM agent_snapshots {where} ORDER BY seq DESC LIMIT 1", params
            ).fetchone()
            return None if row is None else json.loads(row[0])

    def record_transition(
        self, agent: str, from_state: str, to_state: str, reason: str = "", at: float | None = None
    ) -> None:
        with self._lock:
            seq = int(self._next_seq("breaker_transitions", 1)[0])
            self._con.execute(
                "INSERT INTO breaker_transitions VALUES (?, make_timestamp(?), ?, ?, ?, ?)",
                [
                    seq,
                    micros(self._clock() if at is None else at),
                    agent,
                    from_state,
                    to_state,
                    reason,
                ],
            )

    def record_model(
        self,
        version: str,
        mode: str,
        event: str,
        path: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self._insert_event(
            "model_versions",
            {
                "version": version,
                "mode": mode,
                "event": event,
                "path": path,
                "info": json.dumps(info or {}, default=str),
            },
        )

    # -- reading --------------------------------------------------------------------------------
    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query on the writer's connection (tests and maintenance; flushes first)."""
        with self._lock:
            self.flush()
            return self._con.execute(sql, params or []).fetchall()

    def integrity(self) -> dict[str, int]:
        """How decisions and outcomes line up (nothing here is ever deleted silently)."""
        rows = self.query("""
            SELECT (SELECT count(*) FROM decisions),
                   (SELECT count(*) FROM outcomes),
                   (SELECT count(*) FROM outcomes WHERE duplicate),
                   (SELECT count(*) FROM outcomes_latest o ANTI JOIN decisions d USING (request_id)),
                   (SELECT count(*) FROM decisions d ANTI JOIN outcomes_latest o USING (request_id))""")
        decisions, outcomes, duplicates, unmatched, open_ = rows[0]
        return {
            "decisions": decisions,
            "outcomes": outcomes,
            "duplicate_outcomes": duplicates,
            "outcomes_without_decision": unmatched,
            "decisions_without_outcome": open_,
        }

    # -- exports, retention, shutdown ---------------------------------------------------------
    def export(self, directory: str | os.PathLike[str] | None = None) -> dict[str, int]:
        """Write rows added since the last export as Parquet files; returns rows per table."""
        target = Path(
            directory or self.config.export_dir or Path(self.config.path).with_suffix(".exports")
        )
        with self._lock:
            self.flush()
            return export_tables(self._con, target, {t: self._seq[t] for t in _SEQUENCED})

    def compact(self, older_than_days: float | None = None) -> dict[str, int]:
        """Fold raw decisions/outcomes older than the horizon into per-day aggregates."""
        horizon = older_than_days if older_than_days is not None else self.config.retention_days
        if horizon is None:
            return {"decisions": 0, "outcomes": 0, "attempts": 0}
        cutoff = micros(self._clock() - horizon * 86_400)
        with self._lock:
            self.flush()
            return compact_before(self._con, cutoff)

    def close(self) -> None:
        with self._lock:
            if self._con is None:
                return
            self.flush()
            self._con.execute("CHECKPOINT")
            self._con.close()
            self._con = None  # type: ignore[assignment]

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def written_total(self) -> dict[str, int]:
        """Rows ever written per sequenced table (from the file's sequence numbers, so the
        counts survive a restart and count compacted rows too)."""
        return dict(self._seq)

    @staticmethod
    def table_names() -> list[str]:
        return list(TABLES)
