"""Reports over the routing history, each one parameterised SQL query.

    reader = HistoryReader("tinydancer-history.duckdb")  # a history file, opened read-only,
    reader = HistoryReader("tinydancer-history.exports")  # or a Parquet export directory
    reader.agents(since="2026-11-01")  # [{"agent": ..., "decisions": ..., ...}, ...]
    reader.report("timeseries", since=1_763_000_000, bucket="day")

A running writer holds its DuckDB file (one process may open it read-write, and then no
other may open it at all), so analysts of a live service read its exports; a stopped
store's file can be read directly.

Reports (`REPORTS`; columns in `REPORT_COLUMNS`):

| report | one row per | window on |
|---|---|---|
| `agents` | chosen agent: decisions, traffic share, outcomes, success rate, quality, latency p50/p95/p99, cost | decisions.ts |
| `savings` | (one row) actual cost of decisions with outcomes vs always using the strongest agent | decisions.ts |
| `timeseries` | hour or day: decisions, outcomes, success rate, quality, cost, share per agent | decisions.ts |
| `breakers` | agent x to_state: transitions, first and last | breaker_transitions.ts |
| `gateway` | agent of gateway attempts: attempts, successes, failures (by kind), failovers (failed attempts a later agent took over), mid-stream failures, continuations, time to first token p50/p95, latency p50, tokens, cost | attempts.ts |
| `models` | model_version: decisions, first and last seen | decisions.ts |
| `integrity` | (one row) decisions, outcomes, duplicates, unmatched on either side | each table's own ts |

Outcome metrics use the first outcome per request (`duplicate = false`), joined to the
decision. The window is half-open, `since <= ts < until`; both default to unbounded.
Times are UTC: ISO-8601 (a zone offset is converted, none means UTC), a date, or Unix
seconds. Only bound parameters reach the SQL: a report name selects one of the fixed
strings of `reports.py`, and so does the bucket.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from tinydancer.errors import HistoryError, InvalidRequestError
from tinydancer.history.reports import BUCKETS, REPORT_COLUMNS, REPORTS, SQL
from tinydancer.history.schema import SCHEMA_VERSION, TABLES, VIEWS

__all__ = [
    "BUCKETS",
    "REPORTS",
    "REPORT_COLUMNS",
    "HistoryReader",
    "check_bucket",
    "check_report",
    "parse_time",
]

TimeLike = str | float | int | datetime | date | None


def check_report(name: str) -> str:
    if name not in REPORTS:
        raise InvalidRequestError("report", name, f"one of {', '.join(REPORTS)}")
    return name


def check_bucket(bucket: str) -> str:
    if bucket not in BUCKETS:
        raise InvalidRequestError("bucket", bucket, "'hour' or 'day'")
    return bucket


def parse_time(value: TimeLike, field: str = "since") -> datetime | None:
    """ISO-8601 text, a date, a datetime or Unix seconds -> naive UTC datetime (None stays)."""
    expected = "ISO-8601 (2026-11-01 or 2026-11-01T12:00:00+00:00) or Unix seconds"
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            try:
                seconds = float(value)
            except ValueError:
                try:
                    moment = datetime.fromisoformat(value.strip())
                except ValueError:
                    raise InvalidRequestError(field, value, expected) from None
        else:
            raise InvalidRequestError(field, value, expected)
        if seconds is not None:
            if not math.isfinite(seconds) or not 0 <= seconds < 1e11:
                raise InvalidRequestError(
                    field, value, expected, "Unix seconds must be finite, >= 0 and not milliseconds"
                )
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


class HistoryReader:
    """Read-only reports over a DuckDB history file or a Parquet export directory.

    >>> with HistoryReader("history.duckdb") as reader:  # doctest: +SKIP
    ...     reader.integrity()[0]["decisions_without_outcome"]
    """

    def __init__(self, db: str | os.PathLike[str]) -> None:
        self.path = Path(db)
        self.kind: Literal["duckdb", "export"]
        self._files: dict[str, list[str]] = {}
        if self.path.is_dir():
            if not any((self.path / table).is_dir() for table in TABLES):
                raise InvalidRequestError(
                    "db",
                    str(db),
                    f"a history file or an export directory with {'/, '.join(TABLES)}/",
                )
            self.kind = "export"
            self._con = duckdb.connect()
            self._con.execute("CREATE SCHEMA empty")
            for table, columns in TABLES.items():
                self._con.execute(f"CREATE TABLE empty.{table} ({columns})")
            self._refresh()
            for name, sql in VIEWS.items():
                self._con.execute(f"CREATE VIEW {name} AS {sql}")
        elif self.path.is_file():
            self.kind = "duckdb"
            try:
                self._con = duckdb.connect(str(self.path), read_only=True)
            except duckdb.Error as exc:
                raise HistoryError(
                    f"cannot open {self.path} read-only: {exc} (a running writer holds its file; "
                    "read the store's Parquet exports instead: --db EXPORT_DIR)"
                ) from None
            self._check_file()
        else:
            raise InvalidRequestError(
                "db", str(db), "an existing DuckDB history file or export directory"
            )

    def _check_file(self) -> None:
        tables = {
            r[0] for r in self._con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        if not {"decisions", "outcomes"} <= tables:
            self.close()
            raise HistoryError(
                f"{self.path} is not a Tiny Dancer history file (no decisions table)"
            )
        if "attempts" not in tables:  # a file from before the gateway: no attempts yet
            self._con.execute(f"CREATE TEMP TABLE attempts ({TABLES['attempts']})")
        if "schema_info" in tables:
            row = self._con.execute(
                "SELECT value FROM schema_info WHERE key = 'schema_version'"
            ).fetchall()
            version = int(row[0][0]) if row else 1
            if version > SCHEMA_VERSION:
                self.close()
                raise HistoryError(
                    f"{self.path} has schema version {version}; this Tiny Dancer reads up to "
                    f"{SCHEMA_VERSION} (upgrade Tiny Dancer)"
                )

    def _refresh(self) -> None:
        """(Export directory) point each table's view at the Parquet files present now."""
        for table in TABLES:
            files = sorted(str(p) for p in (self.path / table).glob("*.parquet"))
            if files == self._files.get(table):
                continue
            if files:
                # The relation API takes the file list as data: no path text in our SQL.
                self._con.read_parquet(files, union_by_name=True).create_view(table)
            else:
                self._con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM empty.{table}")
            self._files[table] = files

    # -- reports ------------------------------------------------------------------------------
    def report(
        self, name: str, *, since: TimeLike = None, until: TimeLike = None, bucket: str = "hour"
    ) -> list[dict[str, Any]]:
        """Run report `name` (one of REPORTS) over [since, until); a list of dict rows."""
        key = check_report(name)
        check_bucket(bucket)
        if name == "timeseries":
            key = f"timeseries:{bucket}"
        low, high = parse_time(since, "since"), parse_time(until, "until")
        if low is not None and high is not None and high <= low:
            raise InvalidRequestError(
                "until", str(until), f"a time after since ({low.isoformat()})"
            )
        rows = self.query(SQL[key], {"since": low, "until": high})
        for row in rows:  # DuckDB gives MAP values as dicts; keep their key order stable
            if isinstance(row.get("agent_share"), dict):
                row["agent_share"] = {k: float(v) for k, v in row["agent_share"].items()}
            if isinstance(row.get("failure_kinds"), dict):
                row["failure_kinds"] = {k: int(v) for k, v in row["failure_kinds"].items()}
        return rows

    def agents(self, since: TimeLike = None, until: TimeLike = None) -> list[dict[str, Any]]:
        return self.report("agents", since=since, until=until)

    def savings(self, since: TimeLike = None, until: TimeLike = None) -> list[dict[str, Any]]:
        return self.report("savings", since=since, until=until)

    def timeseries(
        self, since: TimeLike = None, until: TimeLike = None, bucket: str = "hour"
    ) -> list[dict[str, Any]]:
        return self.report("timeseries", since=since, until=until, bucket=bucket)

    def breakers(self, since: TimeLike = None, until: TimeLike = None) -> list[dict[str, Any]]:
        return self.report("breakers", since=since, until=until)

    def gateway(self, since: TimeLike = None, until: TimeLike = None) -> list[dict[str, Any]]:
        return self.report("gateway", since=since, until=until)

    def models(self, since: TimeLike = None, until: TimeLike = None) -> list[dict[str, Any]]:
        return self.report("models", since=since, until=until)

    def integrity(self, since: TimeLike = None, until: TimeLike = None) -> list[dict[str, Any]]:
        return self.report("integrity", since=since, until=until)

    # -- raw access ---------------------------------------------------------------------------
    def query(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Any read query over the tables and views (bind values through `params`)."""
        if self.kind == "export":
            self._refresh()
        cursor = self._con.execute(sql, params if params is not None else [])
        names = [c[0] for c in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (read-only file, or in-memory over Parquet)."""
        if self.kind == "export":
            self._refresh()
        return self._con

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
