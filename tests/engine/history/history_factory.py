"""A small, realistic routing history with numbers a test can work out by hand.

Twelve decisions by three agents over two model versions, in three hours across two
days (T0 = 2026-01-01 00:00 UTC); outcomes for ten of them, two duplicates (with
different values, which every report must ignore), one outcome for a request nobody
routed, one outcome that arrives before its decision, four breaker transitions and two
model events, and six gateway attempts for four of the requests (a failover before the
first byte, a mid-stream failover continued by another agent, a rate limit with no
agent left). `test_analytics.py` states the expected reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tinydancer.history.records import (
    AttemptColumns,
    DecisionColumns,
    OutcomeColumns,
    quantize_embeddings,
)
from tinydancer.history.store import HistoryConfig, HistoryStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3_600.0
DAY = 86_400.0

# request_id, seconds after T0, chosen agent, model version, first outcome or None:
# (success, latency_ms, quality, cost_usd)
Outcome = tuple[bool, float, float, float]
DECISIONS: list[tuple[str, float, str, str, Outcome | None]] = [
    ("d01", 60, "gpt-4", "v1", (True, 1000, 0.9, 0.030)),
    ("d02", 120, "mixtral", "v1", (True, 200, 0.6, 0.001)),
    ("d03", 180, "mixtral", "v1", (False, 300, 0.2, 0.001)),
    ("d04", 240, "llama", "v1", (True, 500, 0.7, 0.005)),
    ("d05", 300, "gpt-4", "v1", (True, 1400, 1.0, 0.040)),
    ("d06", 360, "mixtral", "v1", None),
    ("d07", HOUR + 60, "mixtral", "v2", (True, 250, 0.8, 0.002)),
    ("d08", HOUR + 120, "llama", "v2", (False, 700, 0.3, 0.005)),
    ("d09", HOUR + 180, "gpt-4", "v2", (True, 1200, 0.8, 0.030)),
    ("d10", HOUR + 240, "mixtral", "v2", (True, 150, 0.5, 0.001)),
    ("d11", DAY + 60, "llama", "v2", (True, 600, 0.9, 0.006)),
    ("d12", DAY + 120, "mixtral", "v2", None),
]
# Repeats of an earlier outcome (stored with duplicate = true), at T0 + offset.
DUPLICATES: list[tuple[str, str, bool, float, float, float, float]] = [
    ("d02", "mixtral", False, 9_999, 0.0, 0.5, 150),
    ("d09", "gpt-4", False, 9_999, 0.0, 0.5, HOUR + 210),
]
ORPHAN = ("ghost", "mixtral", True, 100.0, 0.5, 0.001, DAY + 3_600)
EARLY = "d11"  # its outcome is written before its decision
TRANSITIONS = [  # agent, from, to, seconds after T0
    ("mixtral", "closed", "open", 200),
    ("mixtral", "open", "half_open", HOUR + 100),
    ("llama", "closed", "open", HOUR + 150),
    ("mixtral", "half_open", "closed", HOUR + 200),
]
AGENTS = ("gpt-4", "mixtral", "llama")
# Gateway attempts: request_id, attempt, agent, failure_kind, mid_stream, continued, status,
# latency_ms, ttft_ms, completion_tokens, cost_usd (written at the decision's time + 1 s).
Attempt = tuple[
    str, int, str, str | None, bool, bool, int | None, float, float | None, int | None, float | None
]
ATTEMPTS: list[Attempt] = [
    ("d01", 0, "mixtral", "server_error", False, False, 503, 5, None, None, None),
    ("d01", 1, "gpt-4", None, False, False, 200, 1000, 100, 60, 0.03),
    ("d02", 0, "mixtral", None, False, False, 200, 200, 50, 30, 0.001),
    ("d07", 0, "llama", "dropped", True, False, 200, 120, 80, 7, 0.0005),
    ("d07", 1, "mixtral", None, False, True, 200, 250, 40, 20, 0.002),
    ("d09", 0, "gpt-4", "rate_limited", False, False, 429, 3, None, None, None),
]


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def decision_columns(
    rows: list[tuple[str, float, str, str, Any]], seed: int = 0
) -> DecisionColumns:
    """DecisionColumns for (request_id, offset_s, chosen, model_version, _) rows."""
    rng = np.random.default_rng(seed)
    codes, scales = quantize_embeddings(rng.normal(size=(len(rows), 384)))
    columns = DecisionColumns()
    for i, (request_id, offset, chosen, version, _) in enumerate(rows):
        columns.request_id.append(request_id)
        columns.ts.append(T0 + offset)
        columns.mode.append("agent")
        columns.embedding.append(codes[i])
        columns.embedding_scale.append(float(scales[i]))
        columns.message_count.append(1 + i % 3)
        columns.chosen.append(chosen)
        columns.confidence.append(0.6)
        columns.uncertainty.append(0.1)
        columns.propensity.append(0.6)
        columns.model_quality.append(0.7)
        columns.expected_quality.append(0.7)
        columns.estimated_cost_usd.append(0.01)
        columns.estimated_latency_ms.append(500.0)
        columns.alternatives.append(json.dumps([a for a in AGENTS if a != chosen]))
        columns.optimize_for.append("balanced")
        columns.willingness_to_pay.append(None if i % 2 else 0.05)
        columns.constraints.append(json.dumps({"max_cost_usd": None}))
        columns.model_version.append(version)
        columns.inference_time_us.append(80.0 + i)
        columns.replica.append(f"router-{i % 2}")
    return columns


def write_history(path: Path, clock: Clock | None = None, **config: Any) -> HistoryStore:
    """Write the history into a new store at `path` and return it (still open)."""
    clock = clock or Clock()
    clock.now = T0
    store = HistoryStore(HistoryConfig(path=path, **config), clock=clock)
    store.record_model("v1", "agent", "loaded", path="models/agent-v1.safetensors")
    early = OutcomeColumns()
    for request_id, offset, chosen, _, outcome in DECISIONS:
        if request_id == EARLY and outcome is not None:
            early.add(request_id, chosen, *outcome, ts=T0 + offset + 5)
    store.append_outcomes(early)
    store.flush()  # the early outcome is in the file before its decision
    first_day = [row for row in DECISIONS if row[1] < DAY]
    store.append_decisions(decision_columns(first_day[:6]))
    store.append_decisions(decision_columns(first_day[6:], seed=1))
    clock.now = T0 + HOUR
    store.record_model("v2", "agent", "promoted", path="models/agent-v2.safetensors")
    outcomes = OutcomeColumns()
    for request_id, offset, chosen, _, outcome in DECISIONS:
        if outcome is not None and request_id != EARLY:
            outcomes.add(request_id, chosen, *outcome, ts=T0 + offset + 5)
    for request_id, agent, success, latency, quality, cost, offset in DUPLICATES:
        outcomes.add(request_id, agent, success, latency, quality, cost, ts=T0 + offset)
    request_id, agent, success, latency, quality, cost, offset = ORPHAN
    outcomes.add(request_id, agent, success, latency, quality, cost, ts=T0 + offset)
    store.append_outcomes(outcomes)
    store.append_decisions(decision_columns([row for row in DECISIONS if row[1] >= DAY], seed=2))
    for agent, from_state, to_state, offset in TRANSITIONS:
        store.record_transition(agent, from_state, to_state, "test", at=T0 + offset)
    store.append_attempts(attempt_columns(ATTEMPTS))
    store.flush()
    return store


def attempt_columns(rows: list[Attempt]) -> AttemptColumns:
    offsets = {request_id: offset for request_id, offset, *_ in DECISIONS}
    columns = AttemptColumns()
    for (
        request_id,
        attempt,
        agent,
        kind,
        mid,
        continued,
        status,
        latency,
        ttft,
        tokens,
        cost,
    ) in rows:
        columns.request_id.append(request_id)
        columns.attempt.append(attempt)
        columns.agent.append(agent)
        columns.success.append(kind is None)
        columns.failure_kind.append(kind)
        columns.mid_stream.append(mid)
        columns.continued.append(continued)
        columns.status.append(status)
        columns.latency_ms.append(latency)
        columns.ttft_ms.append(ttft)
        columns.prompt_tokens.append(None if tokens is None else 12)
        columns.completion_tokens.append(tokens)
        columns.cost_usd.append(cost)
        columns.ts.append(T0 + offsets[request_id] + 1)
        columns.replica.append("router-0")
    return columns


def write_history_file(path: Path) -> Path:
    """The history as a closed DuckDB file (what `tinydancer analytics --db FILE` reads)."""
    write_history(path).close()
    return path
