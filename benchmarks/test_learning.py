"""The learning path in process: outcomes applied in bulk against one by one (same run).

* registry: `AgentRegistry.record_many` over a columnar block of 20,000 gateway-like
  outcomes (10 agents; latency, cost and the model's prediction on every row, a quality
  on 10 %, 5 % later quality reports) against `record_outcome` / `record_quality` row by
  row, interleaved call by call. Target: >= 200,000 outcomes/s in bulk.
* breaker: `CircuitBreaker.record_many` over 20,000 events (10 agents, two of them
  failing often enough to open, half-open and close again) against `record` per event
  with the clock at its time. Target: >= 200,000 events/s in bulk.

Under --benchmark-disable (the CI smoke run) the blocks have 500 rows and no target is
asserted; the equality of both paths is checked in tests/engine/agents/test_bulk.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinydancer.agents.agent import Agent
from tinydancer.agents.breaker import BreakerConfig, CircuitBreaker
from tinydancer.agents.breaker_bulk import BreakerEvents
from tinydancer.agents.bulk import OutcomeBlock
from tinydancer.agents.registry import AgentRegistry

from ._compare import interleaved_medians, median_s, record

NAMES = tuple(f"agent-{i}" for i in range(10))
TARGET_PER_S = 200_000


@pytest.fixture(scope="module")
def rows(request) -> int:
    return 500 if request.config.getoption("benchmark_disable", False) else 20_000


def gateway_block(n: int, seed: int = 0) -> OutcomeBlock:
    rng = np.random.default_rng(seed)
    counted = rng.random(n) >= 0.05
    quality = np.where(rng.random(n) < 0.1, rng.random(n), np.nan)
    quality[~counted] = rng.random(int((~counted).sum()))
    return OutcomeBlock.build(
        NAMES,
        agent=rng.integers(0, len(NAMES), n),
        success=rng.random(n) < 0.9,
        latency_ms=rng.lognormal(6.5, 0.7, n),
        quality=quality,
        cost_usd=rng.random(n) * 2e-3,
        model_quality=rng.random(n),
        learn=np.ones(n, bool),
        counted=counted,
    )


def new_registry() -> AgentRegistry:
    registry = AgentRegistry(known_to_model=NAMES[:6])
    for name in NAMES:
        registry.register(Agent(name=name, capabilities=["chat"]))
    return registry


def one_by_one(registry: AgentRegistry, block: OutcomeBlock, stop: int) -> None:
    def value(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    for i in range(stop):
        name = NAMES[block.agent[i]]
        if block.counted[i]:
            registry.record_outcome(
                "r",
                name,
                bool(block.success[i]),
                value(block.latency_ms[i]),
                value(block.quality[i]),
                value(block.cost_usd[i]),
                model_quality=value(block.model_quality[i]),
            )
        else:
            registry.record_quality(
                "r", name, float(block.quality[i]), model_quality=value(block.model_quality[i])
            )


def judge(benchmark, subject: str, n: int, medians: dict[str, float], singles: int) -> None:
    record(benchmark, medians, subject)
    bulk_rate, single_rate = n / medians[subject], singles / medians["one_by_one"]
    benchmark.extra_info["bulk_per_s"] = bulk_rate
    benchmark.extra_info["one_by_one_per_s"] = single_rate
    benchmark.extra_info["speedup"] = bulk_rate / single_rate
    median = median_s(benchmark)
    if median is not None:
        benchmark.extra_info["pytest_benchmark_per_s"] = n / median
        assert bulk_rate >= TARGET_PER_S, (bulk_rate, single_rate)


def test_registry_bulk_apply(benchmark, rows):
    benchmark.group = "learning: registry"
    block = gateway_block(rows)
    registry, other = new_registry(), new_registry()
    assert benchmark(registry.record_many, block) == rows
    singles = min(rows, 2_000)  # one by one is slow: a slice, rated per outcome
    medians = interleaved_medians(
        {
            "bulk": lambda: registry.record_many(block),
            "one_by_one": lambda: one_by_one(other, block, singles),
        },
        rounds=15 if rows > 500 else 2,
        warmup=1,
    )
    judge(benchmark, "bulk", rows, medians, singles)


def breaker_events(n: int, seed: int = 1) -> BreakerEvents:
    rng = np.random.default_rng(seed)
    code = rng.integers(0, len(NAMES), n)
    failure_rate = np.where(np.arange(len(NAMES)) < 2, 0.45, 0.03)
    success = rng.random(n) >= failure_rate[code]
    at = 1_000.0 + np.cumsum(rng.exponential(1e-3, n))  # 1,000 events/s over the block
    return BreakerEvents.build(NAMES, code, success, at)


def test_breaker_bulk_apply(benchmark, rows):
    benchmark.group = "learning: breaker"
    events = breaker_events(rows)
    config = BreakerConfig(cooldown_s=2.0, window_size=50)
    clock = {"now": 0.0}
    bulk = CircuitBreaker(config, clock=lambda: clock["now"])
    single = CircuitBreaker(config, clock=lambda: clock["now"])
    names = [NAMES[c] for c in events.agent]
    success = events.success.tolist()
    at = events.at.tolist()

    def apply_bulk() -> int:
        bulk.agents.clear()
        return bulk.record_many(events)

    def apply_one_by_one() -> None:
        single.agents.clear()
        for name, ok, now in zip(names, success, at, strict=True):
            clock["now"] = now
            single.record(name, ok)

    assert benchmark(apply_bulk) == rows
    assert len(bulk.transitions) > 0  # circuits did open (and the block spans cooldowns)
    medians = interleaved_medians(
        {"bulk": apply_bulk, "one_by_one": apply_one_by_one},
        rounds=15 if rows > 500 else 2,
        warmup=1,
    )
    judge(benchmark, "bulk", rows, medians, rows)


def test_registry_actor_costs_per_push_and_refresh(benchmark, rows):
    """What the registry actor spends besides applying rows, for the scale model
    (docs/scale.md): a snapshot for a replica's refresh, and the pickling of one push
    (an `AttemptBlock` and the ledger entries of its decisions) each way."""
    import pickle

    from tinydancer.agents.ledger import DecisionLedger, LedgerEntry
    from tinydancer.gateway.outcomes import AttemptBlock, AttemptOutcome

    benchmark.group = "learning: registry actor costs"
    registry = new_registry()
    registry.record_many(gateway_block(max(rows, 5_000)))  # sketches filled as in service
    n = min(rows, 2_000)
    rng = np.random.default_rng(4)
    attempts = [
        AttemptOutcome(
            f"r{i}",
            0,
            NAMES[i % 10],
            None,
            float(rng.lognormal(6.5, 0.7)),
            None,
            200,
            300,
            1e-3,
            model_quality=0.7,
        )
        for i in range(n)
    ]
    block = AttemptBlock.from_outcomes(attempts)
    entries = [LedgerEntry(f"r{i}", NAMES[:4], (0.7, 0.6, 0.5, 0.4)) for i in range(n)]
    ledger = DecisionLedger(capacity=1_000_000)

    def remember() -> None:
        ledger.remember_entries(pickle.loads(pickle.dumps(entries)))

    benchmark(registry.snapshot)
    medians = interleaved_medians(
        {
            "snapshot": registry.snapshot,
            "block_pickle_round_trip": lambda: pickle.loads(pickle.dumps(block)),
            "block_from_outcomes": lambda: AttemptBlock.from_outcomes(attempts),
            "apply_block": lambda: registry.record_many(
                OutcomeBlock.build(NAMES, agent=block.agent, success=block.success)
            ),
            "ledger_entries_round_trip": remember,
        },
        rounds=30 if rows > 500 else 2,
        warmup=1,
    )
    for name, value in medians.items():
        benchmark.extra_info[f"{name}_ms"] = 1e3 * value
    benchmark.extra_info["rows"] = n
    benchmark.extra_info["snapshot_bytes"] = len(pickle.dumps(registry.snapshot()))
