"""The logged decisions a model learns from: what the serving router did, and what came of it.

    logged = load_logged("history.duckdb")                   # read-only
    logged = load_logged("history.exports/", since=t0)       # a Parquet export directory

One row per agent-mode decision that has an outcome for the agent it chose and a
logged propensity in (0, 1]: the request embedding (dequantized), the chosen agent, the
outcome's quality (else success as 0 / 1) and cost, the propensity, the willingness to
pay, the serving model version and the time. The row counts say what was left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from tinydancer.errors import HistoryError
from tinydancer.history.records import dequantize_embeddings
from tinydancer.history.schema import TABLES

__all__ = ["LoggedData", "load_logged"]

_MICROSECONDS = 1_000_000
# One row per agent-mode decision in the window, with its first outcome (by ingestion
# order: repeats are stored as duplicates after it) when there is one.
_LOGGED_SQL = """
    WITH first_outcome AS (
        SELECT request_id, agent, success, quality, cost_usd FROM outcomes
        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY seq) = 1
    )
    SELECT d.request_id, epoch_us(d.ts) AS ts_us, d.embedding, d.embedding_scale, d.chosen,
           d.propensity, d.willingness_to_pay, d.model_version,
           o.agent AS outcome_agent,
           coalesce(o.quality, CAST(o.success AS DOUBLE)) AS quality,
           coalesce(o.cost_usd, d.estimated_cost_usd, 0.0) AS cost_usd
    FROM decisions d LEFT JOIN first_outcome o USING (request_id)
    WHERE d.mode = 'agent' AND epoch_us(d.ts) >= ? AND epoch_us(d.ts) < ?
    ORDER BY d.ts, d.seq
"""


@dataclass(frozen=True, eq=False)
class LoggedData:
    """Agent-mode decisions with an outcome for the chosen agent, one row each, by time."""

    source: str
    request_ids: list[str]
    agents: list[str]  # every agent chosen in these rows, sorted
    chosen: np.ndarray  # (n,) int64 index into `agents`
    embeddings: np.ndarray  # (n, D) float32: the request's last message, dequantized
    quality: np.ndarray  # (n,) float64: outcome quality, else success as 0 / 1
    cost_usd: np.ndarray  # (n,) float64: outcome cost, else the decision's estimate
    propensity: np.ndarray  # (n,) float64 in (0, 1]
    willingness_to_pay: np.ndarray  # (n,) float64, NaN where none was logged
    model_version: list[str]
    ts: np.ndarray  # (n,) float64 Unix seconds
    rows: dict[str, int] = field(default_factory=dict)  # what was read and what was left out

    def __len__(self) -> int:
        return len(self.request_ids)

    @property
    def window(self) -> tuple[str, str]:
        """First and last decision time (ISO 8601, UTC)."""
        return (_iso(float(self.ts.min())), _iso(float(self.ts.max())))

    def take(self, index: np.ndarray) -> LoggedData:
        """The rows at `index` (agents and row counts unchanged)."""
        return LoggedData(
            self.source,
            [self.request_ids[i] for i in index],
            self.agents,
            self.chosen[index],
            self.embeddings[index],
            self.quality[index],
            self.cost_usd[index],
            self.propensity[index],
            self.willingness_to_pay[index],
            [self.model_version[i] for i in index],
            self.ts[index],
            self.rows,
        )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _micros(moment: float | datetime | None, default: int) -> int:
    if moment is None:
        return default
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return round(aware.timestamp() * _MICROSECONDS)
    return round(float(moment) * _MICROSECONDS)


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a history file, or one over a Parquet export directory."""
    if path.is_file():
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise HistoryError(
                f"cannot open history file {path} read-only: {exc} (a running writer holds it; "
                "read its Parquet export directory instead)"
            ) from None
    if not path.is_dir():
        raise HistoryError(f"{path}: no such history file or Parquet export directory")
    con = duckdb.connect()
    for table in ("decisions", "outcomes"):
        if any((path / table).glob("*.parquet")):
            pattern = str(path / table / "*.parquet")
            con.read_parquet(pattern, union_by_name=True).create_view(table)
        elif table == "outcomes":  # decisions exported before any outcome arrived
            con.execute(f"CREATE TABLE outcomes ({TABLES['outcomes']})")
        else:
            raise HistoryError(
                f"{path} is not a history export: no {table}/*.parquet in it "
                "(expected the directory written by HistoryStore.export())"
            )
    return con


def load_logged(
    path_or_reader: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
    since: float | datetime | None = None,
    until: float | datetime | None = None,
) -> LoggedData:
    """Logged agent-mode decisions joined with their first outcome, ready to learn from.

        logged = load_logged("history.duckdb", since=time.time() - 7 * 86_400)

    `path_or_reader`: a history file (opened read-only), a Parquet export directory, or
    an open DuckDB connection holding `decisions` and `outcomes`. `since` (inclusive)
    and `until` (exclusive) bound the decision time (Unix seconds or datetimes, naive =
    UTC). Kept: decisions with an outcome for the agent they chose and a propensity in
    (0, 1]; `rows` counts the rest. Raises HistoryError when nothing is left.
    """
    own = not isinstance(path_or_reader, duckdb.DuckDBPyConnection)
    if isinstance(path_or_reader, duckdb.DuckDBPyConnection):
        con, source = path_or_reader, "<duckdb connection>"
    else:
        source = str(path_or_reader)
        con = _connect(Path(path_or_reader))
    bounds = [_micros(since, -(2**62)), _micros(until, 2**62)]
    try:
        table = con.sql(_LOGGED_SQL, params=bounds).to_arrow_table()
    except duckdb.Error as exc:
        raise HistoryError(f"{source}: cannot read decisions and outcomes: {exc}") from None
    finally:
        if own:
            con.close()
    if table is None:  # a SELECT always has a result set
        raise HistoryError(f"{source}: reading decisions returned no result set")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    decisions = len(columns["request_id"])
    window = "" if since is None and until is None else f" between {since} and {until}"
    if decisions == 0:
        raise HistoryError(f"{source}: no agent-mode decisions{window}; nothing to learn from")
    chosen, outcome_agent = columns["chosen"], columns["outcome_agent"]
    propensity = np.array([np.nan if p is None else p for p in columns["propensity"]])
    quality = np.array([np.nan if q is None else q for q in columns["quality"]])
    has_outcome = np.array([a is not None for a in outcome_agent]) & ~np.isnan(quality)
    same_agent = np.array([a == c for a, c in zip(outcome_agent, chosen, strict=True)])
    valid_propensity = (propensity > 0) & (propensity <= 1)  # NaN compares False
    keep = np.flatnonzero(has_outcome & same_agent & valid_propensity)
    rows = {
        "decisions": decisions,
        "with_outcome": len(keep),
        "without_outcome": int((~has_outcome).sum()),
        "outcome_for_other_agent": int((has_outcome & ~same_agent).sum()),
        "invalid_propensity": int((has_outcome & same_agent & ~valid_propensity).sum()),
    }
    if len(keep) == 0:
        raise HistoryError(
            f"{source}: {decisions} agent-mode decisions{window} but none has an outcome for "
            f"the agent it chose with a propensity in (0, 1] ({rows}); record outcomes "
            "(feedback) before learning from this history"
        )
    blobs = [columns["embedding"][i] for i in keep]
    widths = {len(b) for b in blobs}
    if len(widths) != 1:
        raise HistoryError(f"{source}: embeddings of different sizes in one window: {widths} bytes")
    names = sorted({chosen[i] for i in keep})
    index = {a: j for j, a in enumerate(names)}
    scales = np.array([columns["embedding_scale"][i] for i in keep], np.float32)
    wtp = [columns["willingness_to_pay"][i] for i in keep]
    return LoggedData(
        source=source,
        request_ids=[str(columns["request_id"][i]) for i in keep],
        agents=names,
        chosen=np.array([index[chosen[i]] for i in keep], np.int64),
        embeddings=dequantize_embeddings(blobs, scales),
        quality=quality[keep].astype(np.float64),
        cost_usd=np.array([columns["cost_usd"][i] for i in keep], np.float64),
        propensity=propensity[keep],
        willingness_to_pay=np.array([np.nan if w is None else w for w in wtp], np.float64),
        model_version=[str(columns["model_version"][i]) for i in keep],
        ts=np.array([columns["ts_us"][i] for i in keep], np.float64) / _MICROSECONDS,
        rows=rows,
    )
