"""Bulk learning (agents.bulk, agents.breaker_bulk): a block applied vectorised equals its
rows applied one by one in order: registry metrics and posteriors to 1e-9, breaker
states, counters and transitions exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinydancer.agents.agent import Agent
from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.breaker import BreakerConfig, CircuitBreaker
from tinydancer.agents.breaker_bulk import BreakerEvents
from tinydancer.agents.bulk import OutcomeBlock
from tinydancer.agents.registry import AgentRegistry
from tinydancer.errors import InvalidRequestError, UnknownAgentError

NAMES = ("known-a", "known-b", "new-c", "new-d", "new-e")
SPECIAL_LATENCIES = np.array([0.0, 0.01, 0.005, 1.0, 100.0, 1e7, 3e7])


def registry(half_life: float, idle: float | None) -> AgentRegistry:
    reg = AgentRegistry(
        known_to_model=NAMES[:2],
        recent_half_life_outcomes=half_life,
        bandit_config=BanditConfig(half_life_outcomes=half_life * 3, idle_half_life_outcomes=idle),
    )
    for i, name in enumerate(NAMES):
        reg.register(Agent(name=name, expected_quality=None if i % 2 else 0.3 + 0.1 * i))
    return reg


def random_block(rng: np.random.Generator, n: int, agents: int) -> OutcomeBlock:
    def some(values: np.ndarray, share: float) -> np.ndarray:
        return np.where(rng.random(n) < share, values, np.nan)

    latency = rng.lognormal(6, 1.5, n)
    special = rng.random(n) < 0.1
    latency[special] = rng.choice(SPECIAL_LATENCIES, int(special.sum()))
    counted = rng.random(n) < rng.uniform(0.5, 1.0)
    quality = some(rng.random(n), rng.uniform(0, 1))
    quality[~counted & np.isnan(quality)] = rng.random(int((~counted & np.isnan(quality)).sum()))
    return OutcomeBlock.build(
        NAMES,
        agent=rng.integers(0, agents, n),
        success=rng.random(n) < rng.uniform(0.1, 1.0),
        latency_ms=some(latency, rng.uniform(0, 1)),
        quality=quality,
        cost_usd=some(rng.random(n) * 1e-3, rng.uniform(0, 1)),
        model_quality=some(rng.random(n), rng.uniform(0, 1)),
        learn=rng.random(n) < rng.uniform(0, 1),
        counted=counted,
    )


def one_by_one(reg: AgentRegistry, block: OutcomeBlock) -> None:
    def value(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    for i in range(len(block)):
        name = block.names[block.agent[i]]
        if block.counted[i]:
            reg.record_outcome(
                f"r{i}",
                name,
                bool(block.success[i]),
                value(block.latency_ms[i]),
                value(block.quality[i]),
                value(block.cost_usd[i]),
                model_quality=value(block.model_quality[i]),
                learn=bool(block.learn[i]),
            )
        else:
            reg.record_quality(
                f"r{i}", name, float(block.quality[i]), model_quality=value(block.model_quality[i])
            )


def assert_close(a: object, b: object, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-300), path
    else:
        assert a == b, path


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=4),
    agents=st.integers(1, len(NAMES)),
    half_life=st.sampled_from([1.0, 5.0, 100.0, math.inf]),
    idle=st.sampled_from([None, 3.0, 1000.0]),
)
def test_registry_blocks_equal_their_rows_one_by_one(seed, sizes, agents, half_life, idle):
    rng = np.random.default_rng(seed)
    bulk, single = registry(half_life, idle), registry(half_life, idle)
    for i, n in enumerate(sizes):
        block = random_block(rng, n, agents)
        if i == 1:  # one-by-one calls in between must not upset the bulk path
            one_by_one(bulk, block)
        else:
            assert bulk.record_many(block) == n
        one_by_one(single, block)
    assert bulk.bandit_updates == single.bandit_updates
    assert_close(bulk.snapshot(), single.snapshot())
    for name in NAMES:
        assert_close(bulk.stats(name), single.stats(name))


def test_a_long_block_renormalises_where_the_loop_does():
    """Half-life 1: the recency units pass 1e150 after ~500 outcomes, many times here."""
    rng = np.random.default_rng(7)
    bulk, single = registry(1.0, 5.0), registry(1.0, 5.0)
    block = random_block(rng, 6000, 2)
    bulk.record_many(block)
    one_by_one(single, block)
    assert_close(bulk.snapshot(), single.snapshot())


def test_order_matters_so_the_comparison_can_fail():
    rng = np.random.default_rng(3)
    block = random_block(rng, 300, 1)
    flipped = OutcomeBlock(**{**vars(block), "success": ~block.success})
    bulk, single = registry(100.0, None), registry(100.0, None)
    bulk.record_many(flipped)
    one_by_one(single, block)
    with pytest.raises(AssertionError):
        assert_close(bulk.snapshot(), single.snapshot())


def test_a_bad_row_refuses_the_whole_block():
    reg = registry(100.0, None)
    before = reg.snapshot()
    good = {"agent": np.array([0, 1]), "success": np.array([True, False])}
    with pytest.raises(InvalidRequestError, match="latency_ms"):
        reg.record_many(OutcomeBlock.build(NAMES, **good, latency_ms=np.array([5.0, -1.0])))
    with pytest.raises(InvalidRequestError, match="quality"):
        reg.record_many(OutcomeBlock.build(NAMES, **good, counted=np.array([True, False])))
    with pytest.raises(UnknownAgentError):
        reg.record_many(OutcomeBlock.build(("nobody",), agent=[0], success=[True]))
    assert reg.snapshot() == before


def breakers(config: BreakerConfig) -> tuple[CircuitBreaker, CircuitBreaker, dict[str, float]]:
    clock = {"now": 0.0}
    return (
        CircuitBreaker(config, clock=lambda: clock["now"]),
        CircuitBreaker(config, clock=lambda: clock["now"]),
        clock,
    )


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 600), min_size=1, max_size=3),
    agents=st.integers(1, 4),
    consecutive=st.integers(1, 8),
    window=st.integers(1, 60),
    min_requests=st.integers(1, 30),
    to_close=st.integers(1, 3),
    disorder=st.sampled_from([0.0, 0.05]),
)
def test_breaker_events_equal_their_rows_one_by_one(
    seed, sizes, agents, consecutive, window, min_requests, to_close, disorder
):
    rng = np.random.default_rng(seed)
    config = BreakerConfig(
        consecutive_failures=consecutive,
        window_size=window,
        min_requests=min_requests,
        cooldown_s=float(rng.uniform(0.2, 3)),
        max_cooldown_s=20.0,
        successes_to_close=to_close,
    )
    bulk, single, clock = breakers(config)
    names = [f"agent-{i}" for i in range(agents)]
    now = 0.0
    for n in sizes:
        code = rng.integers(0, agents, n)
        success = rng.random(n) > rng.uniform(0, 0.7, agents)[code]
        at = now + np.cumsum(rng.exponential(0.02, n))
        at += np.where(rng.random(n) < disorder, rng.normal(0, 2, n), 0.0)  # out of order
        now = float(at.max(initial=now))
        cool = np.where(rng.random(n) < 0.01, rng.uniform(0, 30, n), np.nan)
        assert bulk.record_many(BreakerEvents.build(names, code, success, at, cool)) == n
        for i in range(n):
            clock["now"] = float(at[i])
            if math.isnan(cool[i]):
                single.record(names[code[i]], bool(success[i]))
            else:
                single.cool_down(names[code[i]], float(cool[i]))
    assert list(bulk.agents) == list(single.agents)
    assert bulk.agents == single.agents
    assert bulk.transitions == single.transitions
    assert bulk.version == single.version


def test_breaker_bulk_opens_at_the_right_event_and_settles_pending():
    config = BreakerConfig(consecutive_failures=3, decision_timeout_s=60.0)
    bulk, _, _ = breakers(config)
    bulk.routed("req-9", "a")
    success = np.array([True, False, False, False, False])
    events = BreakerEvents.build(
        ["a"], np.zeros(5), success, np.arange(5.0), request_id=[None, None, None, None, "req-9"]
    )
    bulk.record_many(events)
    [opened] = bulk.transitions
    assert (opened.at, opened.reason, opened.to_state.value) == (
        3.0,
        "3 consecutive failures",
        "open",
    )
    assert bulk.pending == {}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300))
def test_gateway_attempt_blocks_teach_as_the_one_by_one_functions(seed, n):
    from tinydancer.gateway.outcomes import (
        AttemptBlock,
        AttemptOutcome,
        teach_breaker,
        teach_breaker_block,
        teach_registry,
        teach_registry_block,
    )

    rng = np.random.default_rng(seed)
    kinds = [None, None, None, "rate_limited", "server_error", "deadline", "rejected"]
    agents = [*NAMES, "not-registered"]
    attempts = [
        AttemptOutcome(
            request_id=f"req-{i}",
            attempt=0,
            agent=agents[int(rng.integers(0, len(agents)))],
            failure_kind=kinds[int(rng.integers(0, len(kinds)))],
            latency_ms=float(rng.lognormal(6, 1)),
            ttft_ms=None,
            prompt_tokens=10,
            completion_tokens=20,
            cost_usd=None if rng.random() < 0.2 else float(rng.random() * 1e-3),
            retry_after_s=None if rng.random() < 0.5 else float(rng.uniform(0, 900)),
            teaches_bandit=bool(rng.random() < 0.8),
            model_quality=None if rng.random() < 0.3 else float(rng.random()),
        )
        for i in range(n)
    ]
    bulk, single = registry(100.0, 1000.0), registry(100.0, 1000.0)
    block = AttemptBlock.from_outcomes(attempts)
    teach_registry_block(bulk, block)
    teach_registry(single, attempts)
    assert_close(bulk.snapshot(), single.snapshot())
    config = BreakerConfig(consecutive_failures=2, decision_timeout_s=60.0)
    breaker_bulk, breaker_single, _ = breakers(config)
    for breaker in (breaker_bulk, breaker_single):
        for i in range(0, n + 5, 3):  # some routed requests still await their outcome
            breaker.routed(f"req-{i}", NAMES[0])
    teach_breaker_block(breaker_bulk, block, 300.0)
    teach_breaker(breaker_single, attempts, 300.0)
    assert breaker_bulk.pending == breaker_single.pending
    assert breaker_bulk.agents == breaker_single.agents
    assert breaker_bulk.transitions == breaker_single.transitions
