"""LocalSink: what each attempt outcome does to the registry, the breaker and the history."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinydancer.agents.agent import Agent
from tinydancer.agents.breaker import BreakerConfig, CircuitBreaker
from tinydancer.agents.ledger import Settled
from tinydancer.agents.registry import AgentRegistry
from tinydancer.gateway import AttemptOutcome, LocalSink
from tinydancer.history.store import HistoryConfig, HistoryStore


def outcome(kind: str | None, **fields) -> AttemptOutcome:
    base = dict(
        request_id="r1", attempt=0, agent="a", failure_kind=kind, latency_ms=12.0, ttft_ms=3.0,
        prompt_tokens=10, completion_tokens=5, cost_usd=0.001, ts=1.0,
    )  # fmt: skip
    return AttemptOutcome(**{**base, **fields})


@pytest.fixture
def parts(tmp_path: Path):
    registry = AgentRegistry()
    registry.register(Agent(name="a"))
    breaker = CircuitBreaker(BreakerConfig(consecutive_failures=1), clock=lambda: 100.0)
    with HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb")) as history:
        yield registry, breaker, history, LocalSink(registry, breaker, history, replica="r-0")


def test_a_success_updates_metrics_and_bandit_and_a_row(parts):
    registry, breaker, history, sink = parts
    sink.attempted([outcome(None)])
    metrics = registry.metrics("a")
    assert (metrics.requests, metrics.successes, metrics.cost_total_usd) == (1, 1, 0.001)
    assert registry.posterior("a").outcomes == 1 and breaker.state("a").value == "closed"
    assert history.query("SELECT agent, success, ttft_ms, replica FROM attempts") == [
        ("a", True, 3.0, "r-0")
    ]


def test_a_success_awaiting_its_quality_teaches_the_bandit_nothing(parts):
    registry, _, _, sink = parts
    sink.attempted([outcome(None, teaches_bandit=False)])
    assert registry.metrics("a").requests == 1 and registry.posterior("a").outcomes == 0


@pytest.mark.parametrize("kind", ["rejected", "cancelled", "deadline"])
def test_failures_that_are_not_the_agents_fault_only_reach_the_history(parts, kind):
    registry, breaker, history, sink = parts
    sink.attempted([outcome(kind)])
    assert registry.metrics("a").requests == 0 and breaker.state("a").value == "closed"
    assert history.query("SELECT failure_kind FROM attempts") == [(kind,)]


def test_a_failure_opens_the_breaker_and_a_rate_limit_cools_it_for_retry_after(parts):
    registry, breaker, _, sink = parts
    sink.attempted([outcome("rate_limited", retry_after_s=42.0, status=429)])
    assert breaker.state("a").value == "open" and breaker.next_change_at() == 142.0
    assert registry.metrics("a").successes == 0


def test_a_settled_quality_is_an_outcome_row_marked_stitched(parts):
    _, _, history, sink = parts
    sink.settled(Settled("r1", "a", "gateway", True, 900.0, 0.004), 0.7)
    assert history.query("SELECT agent, success, quality, stitched, cost_usd FROM outcomes") == [
        ("a", True, 0.7, True, 0.004)
    ]
