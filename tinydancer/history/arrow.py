"""Arrow columns for the history store: timestamps, embeddings and decision batches as
Arrow arrays DuckDB appends in one statement (`INSERT ... BY NAME SELECT * FROM <table>`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tinydancer.errors import HistoryError
from tinydancer.history.records import AttemptColumns, DecisionColumns

__all__ = ["attempt_table", "column", "decision_table", "embedding_column", "micros", "timestamps"]


def micros(seconds: float) -> int:
    """Unix seconds -> microseconds for `make_timestamp(?)`, truncated like `timestamps`.

    Not `to_timestamp(?)` cast to TIMESTAMP: that cast goes through the session time zone,
    so on a machine whose local zone is not UTC, events and the compaction cutoff would be
    shifted against the decisions (stored in UTC from Arrow).
    """
    return int(np.float64(seconds) * 1e6)


def timestamps(seconds: Any) -> pa.Array:
    values = (np.asarray(seconds, np.float64) * 1e6).astype("int64")
    return pa.array(values, pa.timestamp("us"))


def embedding_column(values: Any) -> tuple[pa.Array, int]:
    block = (
        values
        if isinstance(values, np.ndarray)
        else (np.stack(values) if len(values) else np.zeros((0, 0)))
    )
    block = np.ascontiguousarray(block, dtype=np.int8)
    rows, width = block.shape if block.ndim == 2 else (0, 0)
    if rows == 0:
        return pa.array([], pa.binary(0)), 0
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), rows, [None, pa.py_buffer(block.tobytes())]
    )
    return fixed, rows  # DuckDB stores fixed-size binary as BLOB directly (no copy into binary)


def column(values: Any) -> pa.Array:
    """Arrow array of a column; numpy string arrays go through lists (twice as fast)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "UO":
        return pa.array(values.tolist())
    return pa.array(values)


def decision_table(columns: DecisionColumns) -> pa.Table:
    data = columns.as_dict()
    embedding, rows = embedding_column(data.pop("embedding"))
    if rows != len(columns):
        raise HistoryError(f"decision batch has {len(columns)} rows but {rows} embeddings")
    arrays = {"ts": timestamps(data.pop("ts")), "embedding": embedding}
    for name, values in data.items():
        arrays[name] = column(values)
    return pa.table(arrays)


def attempt_table(columns: AttemptColumns, seq: np.ndarray) -> pa.Table:
    data = columns.as_dict()
    types = {
        "attempt": pa.int16(), "success": pa.bool_(), "failure_kind": pa.string(),
        "mid_stream": pa.bool_(), "continued": pa.bool_(), "status": pa.int16(),
        "latency_ms": pa.float64(), "ttft_ms": pa.float64(), "prompt_tokens": pa.int32(),
        "completion_tokens": pa.int32(), "cost_usd": pa.float64(), "replica": pa.string(),
    }  # fmt: skip
    arrays = {"seq": pa.array(seq), "ts": timestamps(data.pop("ts"))}
    for name, values in data.items():
        arrays[name] = pa.array(values, types.get(name, pa.string()))
    return pa.table(arrays)
