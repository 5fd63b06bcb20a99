"""The history schema (DuckDB), its version and its migrations.

| table | one row per | key columns |
|---|---|---|
| `decisions` | routing decision | request_id, ts, mode, embedding (int8 BLOB, 384 B) + embedding_scale, message_count, chosen, confidence, uncertainty, propensity, model_quality, expected_quality, estimated_cost_usd, estimated_latency_ms, alternatives (JSON list), optimize_for, willingness_to_pay, constraints (JSON), model_version, inference_time_us, replica |
| `outcomes` | feedback received | request_id, agent, success, latency_ms, quality, cost_usd, ts, duplicate (a repeat of an earlier outcome for the same request), stitched (a gateway answer continued by another agent after a mid-stream failure; NULL outside the gateway) |
| `attempts` | gateway attempt (one request has one or more) | request_id, attempt (0, 1, ...), agent, success, failure_kind (NULL on success), mid_stream, continued, status, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost_usd, ts, replica |
| `agent_snapshots` | registry snapshot | ts, version, snapshot (JSON) |
| `breaker_transitions` | state change | ts, agent, from_state, to_state, reason |
| `model_versions` | model event | ts, version, mode, event (loaded / promoted / rolled_back), path, info (JSON) |
| `daily_aggregates` | day x agent, compacted | decisions, outcomes, successes, quality_sum, quality_count, cost_sum, latency_sum, latency_count |
| `schema_info` | setting | key, value (schema_version, export high-water marks) |

Every table has `seq`, an ingestion sequence number, so exports can be incremental.
The request embedding is the last message of the request (the query in candidate
mode), quantized to int8 with one float scale: enough to retrain the model, 4x smaller
than float32. Its column is stored uncompressed: quantized embeddings do not compress
(150k real prompts' codes took 58.5 MB compressed, 58.7 MB not) and DuckDB's compression
analysis made their insert and checkpoint 3.6x slower (636 vs 174 ms). Files made before
keep the column as it was. Views: `outcomes_latest` (first outcome per request,
duplicates dropped) and `decisions_with_outcomes` (decisions LEFT JOIN it).

Versioning: `SCHEMA_VERSION`; `MIGRATIONS[n]` upgrades a file from version n to n+1 and
runs, in order, when a store opens an older file.
"""

from __future__ import annotations

from typing import Any

from tinydancer.errors import HistoryError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "create_statements", "migrate"]

SCHEMA_VERSION = 3

TABLES: dict[str, str] = {
    "decisions": """
        seq BIGINT, request_id VARCHAR, ts TIMESTAMP, mode VARCHAR,
        embedding BLOB USING COMPRESSION uncompressed, embedding_scale FLOAT,
        message_count SMALLINT, chosen VARCHAR, confidence FLOAT, uncertainty FLOAT, propensity FLOAT,
        model_quality FLOAT, expected_quality FLOAT, estimated_cost_usd DOUBLE, estimated_latency_ms FLOAT,
        alternatives VARCHAR, optimize_for VARCHAR, willingness_to_pay DOUBLE, constraints VARCHAR,
        model_version VARCHAR, inference_time_us FLOAT, replica VARCHAR""",
    "outcomes": """
        seq BIGINT, request_id VARCHAR, agent VARCHAR, success BOOLEAN, latency_ms DOUBLE, quality DOUBLE,
        cost_usd DOUBLE, ts TIMESTAMP, duplicate BOOLEAN, stitched BOOLEAN""",
    "attempts": """
        seq BIGINT, request_id VARCHAR, attempt SMALLINT, agent VARCHAR, success BOOLEAN,
        failure_kind VARCHAR, mid_stream BOOLEAN, continued BOOLEAN, status SMALLINT, latency_ms DOUBLE,
        ttft_ms DOUBLE, prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd DOUBLE, ts TIMESTAMP,
        replica VARCHAR""",
    "agent_snapshots": "seq BIGINT, ts TIMESTAMP, version BIGINT, snapshot VARCHAR",
    "breaker_transitions": "seq BIGINT, ts TIMESTAMP, agent VARCHAR, from_state VARCHAR, to_state VARCHAR, reason VARCHAR",
    "model_versions": "seq BIGINT, ts TIMESTAMP, version VARCHAR, mode VARCHAR, event VARCHAR, path VARCHAR, info VARCHAR",
    "daily_aggregates": """
        day DATE, agent VARCHAR, decisions BIGINT, outcomes BIGINT, successes BIGINT, quality_sum DOUBLE,
        quality_count BIGINT, cost_sum DOUBLE, latency_sum DOUBLE, latency_count BIGINT""",
}

VIEWS = {
    "outcomes_latest": "SELECT * EXCLUDE (duplicate) FROM outcomes WHERE NOT duplicate",
    "decisions_with_outcomes": """
        SELECT d.*, o.agent AS outcome_agent, o.success, o.latency_ms, o.quality, o.cost_usd,
               o.ts AS outcome_ts
        FROM decisions d LEFT JOIN outcomes_latest o USING (request_id)""",
}


def create_statements() -> list[str]:
    statements = ["CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)"]
    statements += [
        f"CREATE TABLE IF NOT EXISTS {name} ({columns})" for name, columns in TABLES.items()
    ]
    statements += [f"CREATE OR REPLACE VIEW {name} AS {sql}" for name, sql in VIEWS.items()]
    return statements


# Version 1 (the first release) had no willingness_to_pay or replica on decisions;
# version 2 no gateway: no attempts table (created with the others) and no outcomes.stitched.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS willingness_to_pay DOUBLE",
        "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS replica VARCHAR",
    ],
    2: ["ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS stitched BOOLEAN"],
}


def migrate(con: Any) -> None:
    """Bring the file on `con` (a DuckDB connection) to `SCHEMA_VERSION`: run the
    migrations from its version on, then create what is missing. A file with no
    `schema_info` but a `decisions` table is version 1; an empty one is new."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)")
    found = con.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
    if found is None:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'decisions'"
        ).fetchone()
        version = 1 if exists and exists[0] else SCHEMA_VERSION
    else:
        version = int(found[0])
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"history file has schema version {version}; this Tiny Dancer reads up to "
            f"{SCHEMA_VERSION} (upgrade Tiny Dancer)"
        )
    for step in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[step]:
            con.execute(statement)
    for statement in create_statements():
        con.execute(statement)
    con.execute(
        "INSERT OR REPLACE INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
    )
