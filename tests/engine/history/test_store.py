"""The DuckDB history store: batching, durability, outcomes, exports, migration, compaction."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from tests.engine.history.history_factory import (
    ATTEMPTS,
    DAY,
    DECISIONS,
    T0,
    Clock,
    attempt_columns,
    decision_columns,
    write_history,
)
from tinydancer.errors import HistoryError
from tinydancer.history.analytics import HistoryReader
from tinydancer.history.records import OutcomeColumns
from tinydancer.history.schema import SCHEMA_VERSION, TABLES
from tinydancer.history.store import HistoryConfig, HistoryStore

HERE = Path(__file__).resolve().parents[3]  # the repository: `tests` imports from there


def count(path: Path, table: str) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def outcome(request_id: str, agent: str = "mixtral", ts: float = T0) -> OutcomeColumns:
    columns = OutcomeColumns()
    columns.add(request_id, agent, True, 100.0, 0.5, 0.001, ts=ts)
    return columns


# -- batching and durability ------------------------------------------------------------------
def test_appends_are_buffered_and_written_as_one_batch(tmp_path: Path):
    store = HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb", max_buffer_age_s=3600))
    store.append_decisions(decision_columns(DECISIONS[:5]))
    store.append_decisions(decision_columns(DECISIONS[5:]))
    store.append_outcomes(outcome("d01"))
    assert store.buffered_rows == 13 and store.stats["flushes"] == 0
    assert store.flush() == 13
    assert store.buffered_rows == 0 and store.stats["flushes"] == 1
    assert store.stats["decisions"] == 12 and store.stats["outcomes"] == 1
    rows = store.query("SELECT request_id, seq FROM decisions ORDER BY seq")
    assert rows == [(r[0], i + 1) for i, r in enumerate(DECISIONS)]  # order and seq kept
    assert store.flush() == 0 and store.stats["flushes"] == 1  # nothing to write: no flush
    store.close()


def test_flushed_rows_survive_a_crash_and_unflushed_ones_are_the_only_loss(tmp_path: Path):
    path = tmp_path / "h.duckdb"
    script = f"""
import os, sys
sys.path.insert(0, {str(HERE)!r})
from tests.engine.history.history_factory import DECISIONS, decision_columns
from tinydancer.history.store import HistoryConfig, HistoryStore
store = HistoryStore(HistoryConfig(path={str(path)!r}, max_buffer_age_s=3600))
store.append_decisions(decision_columns(DECISIONS[:8]))
store.flush()
store.append_decisions(decision_columns(DECISIONS[8:]))  # still buffered
os._exit(0)  # no close(), no checkpoint: a crash
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    assert count(path, "decisions") == 8


@pytest.mark.parametrize("size, checkpointed", [("1KB", True), ("1GB", False)])
def test_the_log_is_checkpointed_once_it_reaches_the_configured_size(
    tmp_path: Path, size: str, checkpointed: bool
):
    path, wal = tmp_path / "h.duckdb", tmp_path / "h.duckdb.wal"
    store = HistoryStore(HistoryConfig(path=path, checkpoint_threshold=size))
    store.append_decisions(decision_columns(DECISIONS))
    store.flush()
    logged = wal.stat().st_size if wal.exists() else 0
    assert (logged == 0) is checkpointed, f"{logged} bytes still in the log"
    store.close()
    assert count(path, "decisions") == len(DECISIONS)


@pytest.mark.parametrize("size", ["lots", "1GB'; DROP TABLE decisions; --", 5, "-1MB"])
def test_a_checkpoint_size_that_is_not_a_size_is_refused_before_the_file_opens(
    tmp_path: Path, size: object
):
    with pytest.raises(HistoryError, match=r"checkpoint_threshold: got .*expected a size"):
        HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb", checkpoint_threshold=size))  # type: ignore[arg-type]
    assert not (tmp_path / "h.duckdb").exists()


def test_close_then_a_read_only_connection_sees_every_row(tmp_path: Path):
    path = tmp_path / "h.duckdb"
    write_history(path).close()
    assert count(path, "decisions") == 12 and count(path, "outcomes") == 13
    assert count(path, "breaker_transitions") == 4 and count(path, "model_versions") == 2
    reopened = HistoryStore(HistoryConfig(path=path))  # and the writer can come back
    assert reopened.integrity()["decisions"] == 12
    reopened.close()


# -- outcomes are never dropped ---------------------------------------------------------------
def test_duplicate_early_and_unknown_outcomes_are_kept_and_counted(tmp_path: Path):
    path = tmp_path / "h.duckdb"
    store = HistoryStore(HistoryConfig(path=path))
    store.append_outcomes(outcome("d01"))  # before its decision
    store.append_outcomes(outcome("nobody"))  # for a request never routed
    store.flush()
    assert store.integrity()["outcomes_without_decision"] == 2
    store.append_decisions(decision_columns(DECISIONS[:3]))
    store.append_outcomes(outcome("d01"))  # a repeat
    store.append_outcomes(outcome("d02"))
    assert store.integrity() == {
        "decisions": 3,
        "outcomes": 4,
        "duplicate_outcomes": 1,
        "outcomes_without_decision": 1,  # the early one joined when its decision arrived
        "decisions_without_outcome": 1,
    }
    assert store.stats["duplicate_outcomes"] == 1
    store.close()
    store = HistoryStore(HistoryConfig(path=path))  # duplicates are recognised after a restart
    store.append_outcomes(outcome("d02"))
    assert store.integrity()["duplicate_outcomes"] == 2
    assert store.query("SELECT count(*) FROM outcomes_latest") == [(3,)]
    store.close()


# -- buffer bounds ----------------------------------------------------------------------------
def test_max_buffer_rows_triggers_a_flush(tmp_path: Path):
    store = HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb", max_buffer_rows=10))
    store.append_decisions(decision_columns(DECISIONS[:6]))
    assert store.stats["flushes"] == 0 and store.buffered_rows == 6
    outcomes = OutcomeColumns()
    for request_id in ("d01", "d02", "d03", "d04"):
        outcomes.extend(outcome(request_id))
    store.append_outcomes(outcomes)  # 6 + 4 = 10 rows
    assert store.stats["flushes"] == 1 and store.buffered_rows == 0
    assert store.stats["decisions"] == 6 and store.stats["outcomes"] == 4
    store.close()


def test_max_buffer_age_with_an_injected_clock(tmp_path: Path):
    clock = Clock(100.0)
    config = HistoryConfig(path=tmp_path / "h.duckdb", max_buffer_age_s=1.0)
    store = HistoryStore(config, clock=clock)
    assert not store.flush_if_due()  # nothing buffered
    store.append_decisions(decision_columns(DECISIONS[:1]))
    clock.now = 100.5
    assert not store.flush_if_due() and store.buffered_rows == 1
    clock.now = 101.0
    assert store.flush_if_due() and store.buffered_rows == 0 and store.stats["flushes"] == 1
    store.append_decisions(decision_columns(DECISIONS[1:2]))  # oldest is now 101.0
    clock.now = 102.5
    store.append_outcomes(outcome("d01"))  # an append past the age flushes by itself
    assert store.buffered_rows == 0 and store.stats["flushes"] == 2
    store.close()


# -- exports ----------------------------------------------------------------------------------
def test_export_is_incremental_and_a_reader_sees_exactly_the_rows(tmp_path: Path):
    exports = tmp_path / "exports"
    store = write_history(tmp_path / "h.duckdb", export_dir=exports)
    assert store.export() == {
        "decisions": 12,
        "outcomes": 13,
        "attempts": 6,
        "agent_snapshots": 0,
        "breaker_transitions": 4,
        "model_versions": 2,
        "daily_aggregates": 0,
    }
    store.append_decisions(decision_columns([("n1", DAY + 200, "llama", "v2", None)]))
    store.append_decisions(decision_columns([("n2", DAY + 300, "gpt-4", "v2", None)]))
    store.append_outcomes(outcome("n1", "llama", T0 + DAY + 205))
    second = store.export()
    assert second["decisions"] == 2 and second["outcomes"] == 1
    assert sum(second.values()) == 3
    assert sum(store.export().values()) == 0  # nothing new, no new files
    assert sorted(p.name for p in (exports / "decisions").iterdir()) == [
        "part-000000000001-000000000012.parquet",
        "part-000000000013-000000000014.parquet",
    ]
    with HistoryReader(exports) as reader:
        assert reader.integrity() == [store.integrity()]
        exported = {r["request_id"] for r in reader.query("SELECT request_id FROM decisions")}
        assert exported == {r[0] for r in store.query("SELECT request_id FROM decisions")}
        # The reader follows a live export directory: new parts show up on the next report.
        store.append_decisions(decision_columns([("n3", DAY + 400, "llama", "v2", None)]))
        store.export()
        assert reader.integrity()[0]["decisions"] == 15
    store.close()


def test_export_after_compaction_and_restart_keeps_every_new_row(tmp_path: Path):
    # Regression: a restart used to take seq from max(seq); once compaction had removed
    # every row, seq restarted below the export mark and new rows were never exported.
    clock = Clock()
    path, exports = tmp_path / "h.duckdb", tmp_path / "exports"
    store = HistoryStore(HistoryConfig(path=path, export_dir=exports), clock=clock)
    store.append_decisions(decision_columns(DECISIONS[:3]))
    store.export()
    clock.now = T0 + 30 * DAY
    assert store.compact(older_than_days=1)["decisions"] == 3
    store.close()
    store = HistoryStore(HistoryConfig(path=path, export_dir=exports), clock=clock)
    store.append_decisions(
        decision_columns([(f"new{i}", 30 * DAY, "llama", "v2", None) for i in range(4)])
    )
    assert store.export()["decisions"] == 4
    store.close()
    with HistoryReader(exports) as reader:
        assert reader.query("SELECT count(*) AS n, count(DISTINCT seq) AS seqs FROM decisions") == [
            {"n": 7, "seqs": 7}
        ]


def test_event_times_and_the_compaction_cutoff_are_utc_in_any_local_zone(tmp_path: Path):
    # Regression: to_timestamp(?)::TIMESTAMP converted through the session time zone.
    script = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
from tests.engine.history.history_factory import decision_columns
from tinydancer.history.store import HistoryConfig, HistoryStore
store = HistoryStore(HistoryConfig(path={str(tmp_path / "h.duckdb")!r}), clock=lambda: 0.0)
store.record_transition("a", "closed", "open")
store.record_model("v1", "agent", "loaded")
times = [str(r[0]) for r in store.query(
    "SELECT ts FROM breaker_transitions UNION ALL SELECT ts FROM model_versions")]
store.append_decisions(decision_columns([("early", 10_000, "a", "v1", None),
                                         ("late", 20_000, "a", "v1", None)]))
from tests.engine.history.history_factory import T0
store._clock = lambda: T0 + 15_000 + 86_400
removed = store.compact(older_than_days=1)["decisions"]
print(json.dumps({{"times": times, "removed": removed}}))
"""
    env = {**__import__("os").environ, "TZ": "America/New_York"}
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env
    ).stdout
    assert json.loads(out) == {"times": ["1970-01-01 00:00:00"] * 2, "removed": 1}


# -- schema versions --------------------------------------------------------------------------
def _columns_without(table: str, *dropped: str) -> str:
    columns = [c.strip() for c in TABLES[table].split(",")]
    return ", ".join(c for c in columns if c.split()[0] not in dropped)


def test_a_version_1_file_is_migrated_and_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:  # what the first release wrote: no schema_info
        con.execute(
            f"CREATE TABLE decisions ({_columns_without('decisions', 'willingness_to_pay', 'replica')})"
        )
        con.execute(f"CREATE TABLE outcomes ({_columns_without('outcomes', 'stitched')})")
        for seq, request_id in enumerate(["old1", "old2"], start=1):
            con.execute(
                "INSERT INTO decisions (seq, request_id, ts, mode, chosen, model_version) "
                "VALUES (?, ?, make_timestamp(?), 'agent', 'llama', 'v0')",
                [seq, request_id, int(T0 * 1e6)],
            )
        con.execute(
            "INSERT INTO outcomes VALUES (1, 'old1', 'llama', true, 300, 0.8, 0.004, "
            "make_timestamp(?), false)",
            [int(T0 * 1e6)],
        )
    with HistoryReader(path) as reader:  # reports read an unmigrated file as it is
        assert reader.agents()[0]["decisions"] == 2
    store = HistoryStore(HistoryConfig(path=path))
    assert store.schema_version == SCHEMA_VERSION == 3
    assert store.query("SELECT request_id, willingness_to_pay, replica FROM decisions") == [
        ("old1", None, None),
        ("old2", None, None),
    ]
    store.append_decisions(decision_columns(DECISIONS[:1]))  # d01: willingness_to_pay 0.05
    assert store.query(
        "SELECT seq, willingness_to_pay, replica FROM decisions WHERE request_id = 'd01'"
    ) == [(3, 0.05, "router-0")]
    assert store.integrity()["decisions_without_outcome"] == 2
    store.close()
    store = HistoryStore(HistoryConfig(path=path))  # opening again changes nothing
    assert store.schema_version == 3 and store.integrity()["decisions"] == 3
    store.close()


def test_a_version_2_file_gains_attempts_and_stitched_outcomes(tmp_path: Path):
    path = tmp_path / "v2.duckdb"
    with duckdb.connect(str(path)) as con:  # what version 2 wrote: no attempts, no stitched
        con.execute("CREATE TABLE schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("INSERT INTO schema_info VALUES ('schema_version', '2')")
        con.execute(f"CREATE TABLE decisions ({TABLES['decisions']})")
        con.execute(f"CREATE TABLE outcomes ({_columns_without('outcomes', 'stitched')})")
        con.execute(
            "INSERT INTO outcomes VALUES (1, 'old1', 'llama', true, 300, 0.8, 0.004, "
            "make_timestamp(?), false)",
            [int(T0 * 1e6)],
        )
    with HistoryReader(path) as reader:  # read as it is: no attempts yet
        assert reader.gateway() == [] and reader.agents()[0]["outcomes"] == 1
    with HistoryStore(HistoryConfig(path=path)) as store:
        assert store.schema_version == 3
        rows = OutcomeColumns()
        rows.add("new1", "gpt-4", True, 900, 0.7, 0.01, T0 + 5, stitched=True)
        store.append_outcomes(rows)
        store.append_attempts(attempt_columns(ATTEMPTS[:2]))
        assert store.query("SELECT request_id, stitched FROM outcomes ORDER BY seq") == [
            ("old1", None),
            ("new1", True),
        ]
        assert store.query("SELECT agent, failure_kind, status FROM attempts ORDER BY seq") == [
            ("mixtral", "server_error", 503),
            ("gpt-4", None, 200),
        ]


def test_agent_snapshots_never_hold_endpoint_header_values(tmp_path: Path):
    from tinydancer.agents.agent import Agent
    from tinydancer.agents.endpoint import Endpoint
    from tinydancer.agents.registry import AgentRegistry

    registry = AgentRegistry()
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", model="m", headers={"X-Org": "s3cret"})
    registry.register(Agent(name="a", endpoint=endpoint))
    with HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb")) as store:
        store.record_agent_snapshot(registry.snapshot())
        stored = store.query("SELECT snapshot FROM agent_snapshots")[0][0]
        assert "s3cret" not in stored and "X-Org" in stored
        restored = AgentRegistry.restore(store.latest_agent_snapshot())
    assert restored.get("a").gateway_unavailable({}) is not None  # say it, don't send "[redacted]"


def test_each_registry_shard_finds_its_own_latest_snapshot(tmp_path: Path):
    with HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb")) as store:
        assert store.latest_agent_snapshot(0) is None
        store.record_agent_snapshot({"version": 1, "agents": []})  # unsharded
        for shard, version in ((1, 2), (0, 3), (1, 4), (0, 5)):
            store.record_agent_snapshot({"shard": shard, "version": version, "agents": []})
        assert store.latest_agent_snapshot()["version"] == 5  # the newest of any
        assert store.latest_agent_snapshot(0)["version"] == 5
        assert store.latest_agent_snapshot(1)["version"] == 4
        assert store.latest_agent_snapshot(2) is None
        assert store.latest_agent_snapshot(unsharded=True)["version"] == 1


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path):
    path = tmp_path / "h.duckdb"
    HistoryStore(HistoryConfig(path=path)).close()
    with duckdb.connect(str(path)) as con:
        con.execute(
            "UPDATE schema_info SET value = ? WHERE key = 'schema_version'",
            [str(SCHEMA_VERSION + 1)],
        )
    with pytest.raises(HistoryError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        HistoryStore(HistoryConfig(path=path))


# -- retention --------------------------------------------------------------------------------
def test_compaction_folds_old_rows_into_daily_aggregates(tmp_path: Path):
    clock = Clock()
    store = write_history(tmp_path / "h.duckdb", clock=clock, retention_days=1.5)
    assert store.compact() == {"decisions": 0, "outcomes": 0, "attempts": 0}  # an hour in
    assert store.query("SELECT count(*) FROM daily_aggregates") == [(0,)]
    clock.now = T0 + 2 * DAY + 1  # horizon 1.5 days: 2026-01-01 goes, 2026-01-02 stays
    # d01..d10: 9 first outcomes + 2 repeats, and their 6 gateway attempts
    assert store.compact() == {"decisions": 10, "outcomes": 11, "attempts": 6}
    rows = store.query(
        "SELECT agent, decisions, outcomes, successes, quality_sum, quality_count, cost_sum, "
        "latency_sum, latency_count, day FROM daily_aggregates ORDER BY agent"
    )
    expected = [
        ("gpt-4", 3, 3, 3, 2.7, 3, 0.1, 3600.0, 3),
        ("llama", 2, 2, 1, 1.0, 2, 0.010, 1200.0, 2),
        ("mixtral", 5, 4, 3, 2.1, 4, 0.005, 900.0, 4),
    ]
    assert [r[:4] for r in rows] == [e[:4] for e in expected]
    for row, want in zip(rows, expected, strict=True):
        assert row[4:9] == pytest.approx(want[4:9]) and row[9] == date(2026, 1, 1)
    assert store.integrity() == {
        "decisions": 2,
        "outcomes": 2,  # d11's and the one for a request nobody routed
        "duplicate_outcomes": 0,
        "outcomes_without_decision": 1,
        "decisions_without_outcome": 1,
    }
    assert store.query("SELECT min(ts) FROM decisions") == [(datetime(2026, 1, 2, 0, 1),)]
    store.close()
    with write_history(tmp_path / "keep.duckdb", clock=clock) as keep:  # retention_days=None
        clock.now = T0 + 365 * DAY
        assert keep.compact() == {"decisions": 0, "outcomes": 0, "attempts": 0}
        assert keep.integrity()["decisions"] == 12


@pytest.mark.parametrize("from_decision", [True, False], ids=["decision-ts", "arrival"])
def test_buffer_age_counts_from_the_decision_when_asked(tmp_path: Path, from_decision):
    """Issue 12 #9: decisions that took 0.9 s to arrive were kept another full second, so a
    killed history actor lost more than the stated bound in client time."""
    clock = Clock(T0 + 10.0)
    config = HistoryConfig(
        path=tmp_path / "h.duckdb", max_buffer_age_s=1.0, age_from_decision_ts=from_decision
    )
    store = HistoryStore(config, clock=clock)
    late = decision_columns([("late", 9.1, "mixtral", "v1", None)])  # decided 0.9 s ago
    store.append_decisions(late)
    assert store.buffered_rows == 1
    clock.now += 0.2  # 1.1 s after the decision, 0.2 s after its arrival
    assert store.flush_if_due() is from_decision
    future = decision_columns([("future", 60.0, "mixtral", "v1", None)])  # a skewed clock
    store.append_decisions(future)
    clock.now += 0.5
    assert store.flush_if_due() is False  # a future ts counts from its arrival
    clock.now += 0.5
    assert store.flush_if_due() is True and store.buffered_rows == 0
    store.close()


def test_rows_written_survive_a_restart_of_the_writer(tmp_path: Path):
    """Issue 12 #8: `tinydancer_history_decisions_total` dropped to 0 on an actor restart;
    its source now comes from the file."""
    path = tmp_path / "h.duckdb"
    write_history(path).close()
    reopened = HistoryStore(HistoryConfig(path=path))
    assert reopened.stats["decisions"] == 0  # the per-process tally starts again
    assert reopened.written_total()["decisions"] == 12
    reopened.append_decisions(decision_columns(DECISIONS[:2], seed=5))
    reopened.flush()
    assert reopened.written_total()["decisions"] == 14
    reopened.close()
