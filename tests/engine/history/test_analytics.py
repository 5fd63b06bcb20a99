"""History reports: hand-worked numbers on a small history, windows, refusals, CLI, notebook."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.engine.history.history_factory import DAY, HOUR, T0, write_history, write_history_file
from tinydancer.cli import main
from tinydancer.errors import HistoryError, InvalidRequestError
from tinydancer.history.analytics import REPORT_COLUMNS, REPORTS, HistoryReader, parse_time
from tinydancer.history.records import OutcomeColumns
from tinydancer.history.schema import TABLES

START = datetime(2026, 1, 1)
approx = pytest.approx


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history_file(tmp_path_factory.mktemp("history") / "history.duckdb")


@pytest.fixture
def reader(history_file: Path):
    with HistoryReader(history_file) as r:
        yield r


def assert_row(row: dict, expected: dict) -> None:
    """approx() neither nests nor takes datetimes: compare those on their own."""
    expected = dict(expected)
    if "agent_share" in expected:
        share = expected.pop("agent_share")
        assert list(row["agent_share"]) == sorted(share) and row["agent_share"] == approx(share)
    assert row["bucket"] == expected.pop("bucket")
    assert {k: v for k, v in row.items() if k not in ("agent_share", "bucket")} == approx(expected)


# -- every report, all time -------------------------------------------------------------------
def test_agents(reader: HistoryReader):
    rows = reader.agents()
    assert [r["agent"] for r in rows] == ["mixtral", "gpt-4", "llama"]  # by decisions, then name
    mixtral, gpt4, llama = rows
    assert mixtral == approx(
        {
            "agent": "mixtral",
            "decisions": 6,
            "traffic_share": 0.5,
            # outcome metrics belong to the agent that served: d02, d03, d07, d10 and the
            # orphan (an outcome whose decision never reached the history); d02's duplicate is ignored
            "outcomes": 5,
            "success_rate": 0.8,
            "mean_quality": (0.6 + 0.2 + 0.8 + 0.5 + 0.5) / 5,
            "latency_p50_ms": 200.0,  # 100 150 200 250 300
            "latency_p95_ms": 290.0,  # position 0.95 * 4 = 3.8 -> 250 + 0.8 * 50
            "latency_p99_ms": 298.0,
            "total_cost_usd": 0.006,
            "mean_cost_usd": 0.0012,
        }
    )
    assert gpt4 == approx(
        {
            "agent": "gpt-4",
            "decisions": 3,
            "traffic_share": 0.25,
            "outcomes": 3,
            "success_rate": 1.0,
            "mean_quality": 0.9,
            "latency_p50_ms": 1200.0,
            "latency_p95_ms": 1380.0,  # 1200 + 0.9 * 200
            "latency_p99_ms": 1396.0,
            "total_cost_usd": 0.1,
            "mean_cost_usd": 0.1 / 3,
        }
    )
    assert llama == approx(
        {
            "agent": "llama",
            "decisions": 3,
            "traffic_share": 0.25,
            "outcomes": 3,
            "success_rate": 2 / 3,
            "mean_quality": 1.9 / 3,
            "latency_p50_ms": 600.0,
            "latency_p95_ms": 690.0,
            "latency_p99_ms": 698.0,
            "total_cost_usd": 0.016,
            "mean_cost_usd": 0.016 / 3,
        }
    )


def test_savings(reader: HistoryReader):
    [row] = reader.savings()
    always_strongest = 11 * 0.1 / 3  # gpt-4 (mean quality 0.9) at its mean cost, 11 outcomes
    assert row == approx(
        {
            "decisions_with_outcome": 11,  # the ten matched outcomes and the orphan
            "actual_total_cost_usd": 0.122,
            "actual_mean_cost_usd": 0.122 / 11,
            "actual_mean_quality": 7.2 / 11,
            "strongest_agent": "gpt-4",
            "strongest_mean_cost_usd": 0.1 / 3,
            "strongest_mean_quality": 0.9,
            "always_strongest_total_cost_usd": always_strongest,
            "savings_usd": always_strongest - 0.122,
            "savings_share": 1 - 0.122 / always_strongest,
        }
    )


def test_timeseries_by_hour_and_by_day(reader: HistoryReader):
    hours = reader.timeseries(bucket="hour")
    assert [r["bucket"] for r in hours] == [
        START,
        START + timedelta(hours=1),
        START + timedelta(days=1),
    ]
    assert_row(
        hours[0],
        {
            "bucket": START,
            "decisions": 6,
            "outcomes": 5,
            "success_rate": 0.8,
            "mean_quality": 0.68,
            "cost_usd": 0.077,
            "agent_share": {"gpt-4": 2 / 6, "llama": 1 / 6, "mixtral": 3 / 6},
        },
    )
    assert hours[1]["decisions"] == 4 and hours[1]["outcomes"] == 4
    assert hours[1]["success_rate"] == approx(0.75) and hours[1]["mean_quality"] == approx(0.6)
    assert hours[1]["cost_usd"] == approx(0.038)
    assert hours[1]["agent_share"] == approx({"gpt-4": 0.25, "llama": 0.25, "mixtral": 0.5})
    assert list(hours[2]["agent_share"]) == ["llama", "mixtral"]  # keys sorted, present only
    days = reader.timeseries(bucket="day")
    assert_row(
        days[0],
        {
            "bucket": START,
            "decisions": 10,
            "outcomes": 9,
            "success_rate": 7 / 9,
            "mean_quality": 5.8 / 9,
            "cost_usd": 0.115,
            "agent_share": {"gpt-4": 0.3, "llama": 0.2, "mixtral": 0.5},
        },
    )
    assert_row(
        days[1],
        {
            "bucket": START + timedelta(days=1),
            "decisions": 2,
            "outcomes": 2,  # d11's and the orphan's, bucketed by the outcome's own time
            "success_rate": 1.0,
            "mean_quality": 0.7,
            "cost_usd": 0.007,
            "agent_share": {"llama": 0.5, "mixtral": 0.5},
        },
    )


def test_breakers(reader: HistoryReader):
    rows = reader.breakers()
    assert [(r["agent"], r["to_state"], r["transitions"]) for r in rows] == [
        ("llama", "open", 1),
        ("mixtral", "closed", 1),
        ("mixtral", "half_open", 1),
        ("mixtral", "open", 1),
    ]
    assert rows[3]["first_ts"] == START + timedelta(seconds=200)


def test_gateway_attempts_failovers_and_time_to_first_token(reader: HistoryReader):
    rows = reader.gateway()
    assert [r["agent"] for r in rows] == ["mixtral", "gpt-4", "llama"]  # by attempts, then name
    mixtral, gpt4, llama = rows
    assert mixtral.pop("failure_kinds") == {"server_error": 1}  # approx() does not nest
    # mixtral: d01's first attempt failed (503) and gpt-4 took over; it answered d02, and
    # continued d07 after llama dropped mid-stream
    assert mixtral == approx(
        {
            "agent": "mixtral",
            "attempts": 3,
            "successes": 2,
            "failures": 1,
            "failovers": 1,
            "mid_stream_failures": 0,
            "continuations": 1,
            "ttft_p50_ms": 45.0,
            "ttft_p95_ms": 49.5,
            "latency_p50_ms": 200.0,
            "completion_tokens": 50,
            "cost_usd": 0.003,
        }
    )
    # gpt-4's 429 on d09 was the request's last attempt: a failure, not a failover
    assert (gpt4["failures"], gpt4["failovers"], gpt4["ttft_p50_ms"]) == (1, 0, 100.0)
    assert gpt4["failure_kinds"] == {"rate_limited": 1} and gpt4["latency_p50_ms"] == 501.5
    assert (llama["failovers"], llama["mid_stream_failures"], llama["failure_kinds"]) == (
        1,
        1,
        {"dropped": 1},
    )
    # d07 and d09: one attempt each, by name
    assert [r["agent"] for r in reader.gateway(since=T0 + HOUR)] == ["gpt-4", "llama", "mixtral"]


def test_models(reader: HistoryReader):
    assert reader.models() == [
        {
            "model_version": "v1",
            "decisions": 6,
            "first_seen": START + timedelta(seconds=60),
            "last_seen": START + timedelta(seconds=360),
        },
        {
            "model_version": "v2",
            "decisions": 6,
            "first_seen": START + timedelta(seconds=HOUR + 60),
            "last_seen": START + timedelta(seconds=DAY + 120),
        },
    ]


def test_integrity_matches_the_store(reader: HistoryReader, tmp_path: Path):
    expected = {
        "decisions": 12,
        "outcomes": 13,  # 10 first + 2 duplicates + 1 for a request nobody routed
        "duplicate_outcomes": 2,
        "outcomes_without_decision": 1,
        "decisions_without_outcome": 2,
    }
    assert reader.integrity() == [expected]
    with write_history(tmp_path / "again.duckdb") as store:
        assert store.integrity() == expected


@pytest.mark.parametrize("name", REPORTS)
def test_every_report_has_its_documented_columns(reader: HistoryReader, name: str):
    rows = reader.report(name)
    assert rows and all(tuple(row) == REPORT_COLUMNS[name] for row in rows)


# -- windows ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("since", "until"),
    [
        (T0 + HOUR, T0 + DAY),
        ("2026-01-01T01:00:00Z", "2026-01-02"),
        ("2026-01-01T02:00:00+01:00", "1767312000"),  # an offset is converted to UTC
        (START + timedelta(hours=1), START + timedelta(days=1)),
    ],
    ids=["unix", "iso-utc", "iso-offset-and-unix-text", "datetime"],
)
def test_since_until_window_is_half_open(reader: HistoryReader, since, until):
    rows = {r["agent"]: r["decisions"] for r in reader.agents(since=since, until=until)}
    assert rows == {"mixtral": 2, "gpt-4": 1, "llama": 1}  # d07..d10
    assert reader.integrity(since=since, until=until) == [
        {
            "decisions": 4,
            "outcomes": 5,  # their first outcomes and d09's duplicate
            "duplicate_outcomes": 1,
            "outcomes_without_decision": 0,
            "decisions_without_outcome": 0,
        }
    ]
    [saving] = reader.savings(since=since, until=until)
    assert saving["decisions_with_outcome"] == 4 and saving["actual_total_cost_usd"] == approx(
        0.038
    )
    assert [r["model_version"] for r in reader.models(since=since, until=until)] == ["v2"]
    breakers = reader.breakers(since=since, until=until)
    assert [(r["agent"], r["to_state"]) for r in breakers] == [
        ("llama", "open"),
        ("mixtral", "closed"),
        ("mixtral", "half_open"),
    ]


def test_open_ended_windows(reader: HistoryReader):
    assert sum(r["decisions"] for r in reader.agents(since=T0 + DAY)) == 2
    assert sum(r["decisions"] for r in reader.agents(until=T0 + 61)) == 1  # d01 only
    assert reader.agents(since=T0 + 2 * DAY) == []
    assert reader.savings(since=T0 + 2 * DAY)[0]["decisions_with_outcome"] == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": 1_767_225_600_000}, "since"),  # milliseconds
        ({"since": float("nan")}, "since"),
        ({"since": T0 + DAY, "until": T0}, "until"),
        ({"bucket": "week"}, "bucket"),
    ],
    ids=["words", "bad-month", "milliseconds", "nan", "until-before-since", "bucket"],
)
def test_bad_arguments_name_the_field(reader: HistoryReader, kwargs, field):
    with pytest.raises(InvalidRequestError) as info:
        reader.report("timeseries", **kwargs)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_sql_in_arguments_is_refused_and_sql_in_data_is_data(tmp_path: Path):
    path = write_history_file(tmp_path / "h.duckdb")
    with HistoryReader(path) as reader:
        for attack in ("2026-01-01' OR 1=1 --", "0); DROP TABLE decisions; --"):
            with pytest.raises(InvalidRequestError, match="since"):
                reader.agents(since=attack)
        with pytest.raises(InvalidRequestError, match="report"):
            reader.report("agents; DROP TABLE decisions")
        with pytest.raises(InvalidRequestError, match="bucket"):
            reader.report("timeseries", bucket="hour', ts) FROM decisions; --")
        assert reader.integrity()[0]["decisions"] == 12
    # Names that look like SQL are stored and reported as they are.
    from tests.engine.history.history_factory import decision_columns
    from tinydancer.history.store import HistoryConfig, HistoryStore

    evil = "x'); DROP TABLE decisions; --"
    with HistoryStore(HistoryConfig(path=path)) as store:
        store.append_decisions(decision_columns([("evil", 30, evil, "v1", None)]))
    with HistoryReader(path) as reader:
        assert evil in {r["agent"] for r in reader.agents()}
        assert reader.integrity()[0]["decisions"] == 13


def test_parse_time():
    assert parse_time(None) is None
    assert parse_time("2026-01-01") == START
    assert parse_time(T0) == START and parse_time(str(int(T0))) == START
    assert parse_time("2026-01-01T00:00:00-05:00") == START + timedelta(hours=5)


# -- sources ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exported")
    with write_history(root / "h.duckdb", export_dir=root / "it's exports") as store:
        store.export()
    return root / "it's exports"  # a quote in the path is data too


@pytest.mark.parametrize("name", REPORTS)
def test_an_export_directory_gives_the_same_reports(history_file: Path, export_dir: Path, name):
    with HistoryReader(history_file) as direct, HistoryReader(export_dir) as exported:
        assert exported.kind == "export" and direct.kind == "duckdb"
        for bucket in ("hour", "day"):
            assert exported.report(name, bucket=bucket) == direct.report(name, bucket=bucket)


def test_an_export_tolerates_tables_without_files(export_dir: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    shutil.rmtree(copy / "daily_aggregates")  # no directory at all
    for empty in (copy / "agent_snapshots").glob("*.parquet"):  # a directory, no files
        empty.unlink()
    with HistoryReader(copy) as reader:
        for table, columns in TABLES.items():
            cursor = reader.connection.execute(f"SELECT * FROM {table}")
            names = [c[0] for c in cursor.description]
            assert names == [c.split()[0] for c in columns.replace("\n", " ").split(",")]
        assert reader.query("SELECT count(*) AS n FROM agent_snapshots") == [{"n": 0}]
        assert reader.query("SELECT count(*) AS n FROM outcomes_latest") == [{"n": 11}]


def test_refused_sources(tmp_path: Path, history_file: Path):
    with pytest.raises(InvalidRequestError, match=r"^db: "):
        HistoryReader(tmp_path / "missing.duckdb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequestError, match="export directory"):
        HistoryReader(tmp_path / "empty")
    (tmp_path / "notes.duckdb").write_text("not a database")
    with pytest.raises(HistoryError, match="read-only"):
        HistoryReader(tmp_path / "notes.duckdb")
    import duckdb

    duckdb.connect(str(tmp_path / "other.duckdb")).close()
    with pytest.raises(HistoryError, match="not a Tiny Dancer history"):
        HistoryReader(tmp_path / "other.duckdb")
    future = tmp_path / "future.duckdb"
    shutil.copy(history_file, future)
    with duckdb.connect(str(future)) as con:
        con.execute("UPDATE schema_info SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(HistoryError, match="schema version 99"):
        HistoryReader(future)


def test_a_file_held_by_a_writer_points_to_the_exports(tmp_path: Path):
    with write_history(tmp_path / "live.duckdb"), pytest.raises(HistoryError, match="exports"):
        HistoryReader(tmp_path / "live.duckdb")


# -- the CLI ----------------------------------------------------------------------------------
def test_cli_json(history_file: Path, capsys):
    assert main(["analytics", "--db", str(history_file), "agents", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["agent"], r["decisions"]) for r in rows] == [
        ("mixtral", 6),
        ("gpt-4", 3),
        ("llama", 3),
    ]
    args = ["analytics", "--db", str(history_file), "timeseries", "--bucket", "day", "--json"]
    assert main([*args, "--since", "2026-01-02"]) == 0
    [day] = json.loads(capsys.readouterr().out)
    assert day["bucket"] == "2026-01-02T00:00:00" and day["agent_share"] == {
        "llama": 0.5,
        "mixtral": 0.5,
    }


def test_cli_csv(history_file: Path, capsys):
    assert main(["analytics", "--db", str(history_file), "models", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [tuple(r.values()) for r in rows] == [
        ("v1", "6", "2026-01-01T00:01:00", "2026-01-01T00:06:00"),
        ("v2", "6", "2026-01-01T01:01:00", "2026-01-02T00:02:00"),
    ]
    bad = ["--since", "2026-01-02", "--until", "2026-01-01"]
    assert main(["analytics", "--db", str(history_file), "timeseries", "--csv", *bad]) == 2
    assert "until" in capsys.readouterr().err
    assert main(["analytics", "--db", str(history_file), "timeseries", "--csv"]) == 0
    out = capsys.readouterr().out
    header, first = list(csv.reader(io.StringIO(out)))[:2]
    assert tuple(header) == REPORT_COLUMNS["timeseries"]
    assert json.loads(first[-1]) == approx({"gpt-4": 2 / 6, "llama": 1 / 6, "mixtral": 0.5})


def test_cli_table(history_file: Path, capsys):
    assert main(["analytics", "--db", str(history_file), "integrity"]) == 0
    header, _rule, row = capsys.readouterr().out.splitlines()
    assert header.split() == list(REPORT_COLUMNS["integrity"])
    assert row.split() == ["12", "13", "2", "1", "2"]
    assert main(["analytics", "--db", str(history_file), "agents", "--since", "2030-01-01"]) == 0
    assert "(no rows)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["bogus"], "report"),
        (["agents", "--since", "last tuesday"], "since"),
        (["agents", "--until", "2026-02-30"], "until"),
        (["timeseries", "--bucket", "minute"], "bucket"),
    ],
    ids=["report", "since", "until", "bucket"],
)
def test_cli_bad_input_exits_2_naming_the_field(history_file: Path, capsys, argv, field):
    assert main(["analytics", "--db", str(history_file), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinydancer analytics: {field}: ") and "Traceback" not in err


def test_cli_missing_file_exits_2(tmp_path: Path, capsys):
    assert main(["analytics", "--db", str(tmp_path / "nope.duckdb"), "agents"]) == 2
    assert "db: " in capsys.readouterr().err


# -- round trip through the router ------------------------------------------------------------
def test_round_trip_from_the_router_to_the_reports(tmp_path: Path):
    from tinydancer.agents.config import AgentRouterConfig
    from tinydancer.agents.registry import AgentRegistry
    from tinydancer.agents.router import AgentRouter
    from tinydancer.agents.types import AgentRequest
    from tinydancer.history.records import OutcomeColumns, from_agent_decisions
    from tinydancer.history.store import HistoryConfig, HistoryStore
    from tinydancer.model.weights import load_model, shipped_model_path

    model = load_model(shipped_model_path("agent"))
    latencies = [200.0 + 100 * i for i in range(len(model.feature_schema["agents"]))]
    registry = AgentRegistry.for_model(model, capabilities=["chat"], latency_ms=latencies)
    router = AgentRouter(registry, config=AgentRouterConfig(seed=0, warm=False), model=model)
    n, rng = 500, np.random.default_rng(0)
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb", max_buffer_rows=200))
    routed = set()
    for start in range(0, n, 50):
        requests = [AgentRequest(embedding=v) for v in vectors[start : start + 50]]
        decisions = router.route_batch(requests)
        store.append_decisions(from_agent_decisions(requests, decisions, ts=T0 + start))
        outcomes = OutcomeColumns()
        for d in decisions:
            success = bool(rng.random() < 0.8)
            latency, cost = float(rng.uniform(100, 900)), float(d.estimated_cost_usd)
            router.record_outcome(d.request_id, d.agent, success, latency, float(success), cost)
            outcomes.add(
                d.request_id, d.agent, success, latency, float(success), cost, ts=T0 + start
            )
            routed.add(d.request_id)
        store.append_outcomes(outcomes)
    assert len(routed) == n
    store.close()
    with HistoryReader(tmp_path / "h.duckdb") as reader:
        assert reader.integrity() == [
            {
                "decisions": n,
                "outcomes": n,
                "duplicate_outcomes": 0,
                "outcomes_without_decision": 0,
                "decisions_without_outcome": 0,
            }
        ]
        agents = reader.agents()
        assert sum(r["decisions"] for r in agents) == n and sum(r["outcomes"] for r in agents) == n
        assert {r["agent"] for r in agents} <= set(model.feature_schema["agents"])
        assert sum(r["traffic_share"] for r in agents) == approx(1.0)
        assert reader.models() == [
            {
                "model_version": model.version,
                "decisions": n,
                "first_seen": START,
                "last_seen": START + timedelta(seconds=450),
            }
        ]


# -- the notebook -----------------------------------------------------------------------------
NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "routing_analytics.ipynb"


def test_the_committed_notebook_has_no_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import nbformat
    from nbclient import NotebookClient

    path = write_history_file(tmp_path / "history.duckdb")
    monkeypatch.setenv("TINYDANCER_HISTORY", str(path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(images) == 3  # traffic share over time, cost vs quality, latency distributions
    assert len(tables) >= 6  # one per report
    text = "".join(o.get("data", {}).get("text/html", "") for o in tables)
    for expected in ("mixtral", "gpt-4", "llama", "v1", "v2", "half_open"):
        assert expected in text


def test_tables_without_rows_are_exported_as_empty_files_with_their_schema(export_dir: Path):
    """Issue 12 #11: `read_parquet('<export>/model_versions/*.parquet')` must not fail."""
    import duckdb

    for table in ("agent_snapshots", "daily_aggregates"):
        pattern = str(export_dir / table / "*.parquet")
        cursor = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [pattern])
        assert [c[0] for c in cursor.description] == [
            c.split()[0] for c in TABLES[table].replace("\n", " ").split(",")
        ]
        assert cursor.fetchall() == []


def test_candidate_mode_decisions_are_not_agents(tmp_path: Path):
    """Issue 12 #11: a candidate decision choosing `doc-0` is not traffic of an agent `doc-0`."""
    from tests.engine.history.history_factory import decision_columns

    with write_history(tmp_path / "h.duckdb") as store:
        columns = decision_columns([("cand-1", 10.0, "doc-0", "c1", None)], seed=3)
        columns.mode[0] = "candidate"
        store.append_decisions(columns)
        outcome = OutcomeColumns()
        outcome.add("cand-1", "doc-0", True, 5.0, 0.99, 0.0, ts=T0 + 20)
        store.append_outcomes(outcome)
        store.flush()
    with HistoryReader(tmp_path / "h.duckdb") as reader:
        assert "doc-0" not in {r["agent"] for r in reader.agents()}
        for row in reader.timeseries(bucket="hour"):
            assert "doc-0" not in row["agent_share"]
        assert reader.savings()[0]["strongest_agent"] != "doc-0"
