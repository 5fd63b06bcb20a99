"""Sharding the learning state (agents.shards): owners stable across processes, blocks split
by shard equal to the shard's rows applied one by one, snapshots merged without changing a
posterior's age, feedback for another shard's agent checked before it is forwarded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinydancer.agents.agent import Agent
from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.breaker import CircuitBreaker
from tinydancer.agents.breaker_bulk import BreakerEvents
from tinydancer.agents.bulk import OutcomeBlock
from tinydancer.agents.ledger import DecisionLedger, LedgerBlock, LedgerEntry
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.shards import (
    ShardLearner,
    agent_shard,
    apply_forwarded,
    check_shards,
    merge_breaker_snapshots,
    merge_registry_snapshots,
    request_shard,
    restrict_snapshot,
    split_by_agent,
    split_entries,
    split_outcomes,
)
from tinydancer.errors import FeedbackError, InvalidRequestError

NAMES = tuple(f"agent-{i}" for i in range(12))
SHARDS = 3


def owners_in_a_fresh_process(seed: str) -> list[int]:
    code = (
        "import json; from tinydancer.agents.shards import agent_shard, request_shard; "
        f"print(json.dumps([agent_shard(n, {SHARDS}) for n in {list(NAMES)!r}]"
        f" + [request_shard(f'r{{i}}', {SHARDS}) for i in range(50)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    return list(json.loads(out.stdout))


def test_owners_are_the_same_in_every_process_and_cover_every_shard():
    here = [agent_shard(n, SHARDS) for n in NAMES] + [
        request_shard(f"r{i}", SHARDS) for i in range(50)
    ]
    assert owners_in_a_fresh_process("1") == owners_in_a_fresh_process("2") == here
    assert set(here) == set(range(SHARDS))
    assert {agent_shard(n, 1) for n in NAMES} == {request_shard("x", 1)} == {0}


@pytest.mark.parametrize("bad", [0, -1, 65, 2.0, True, "2"], ids=repr)
def test_a_shard_count_out_of_range_is_refused_naming_the_range(bad):
    with pytest.raises(InvalidRequestError, match=r"\[1, 64\]"):
        check_shards(bad, "state_shards")
    assert check_shards(64) == 64


def registry(names: tuple[str, ...], idle: float | None) -> AgentRegistry:
    reg = AgentRegistry(
        known_to_model=NAMES[::2],  # the model knows the same agents in every shard
        bandit_config=BanditConfig(half_life_outcomes=60.0, idle_half_life_outcomes=idle),
    )
    for name in names:
        reg.register(Agent(name=name))
    return reg


def block(rng: np.random.Generator, n: int) -> OutcomeBlock:
    return OutcomeBlock.build(
        NAMES,
        agent=rng.integers(0, len(NAMES), n),
        success=rng.random(n) < 0.8,
        latency_ms=rng.lognormal(6, 1, n),
        cost_usd=rng.random(n) * 1e-3,
        model_quality=np.where(rng.random(n) < 0.5, rng.random(n), np.nan),
        learn=rng.random(n) < 0.9,
    )


def one_by_one(reg: AgentRegistry, b: OutcomeBlock, rows: np.ndarray) -> None:
    for i in rows.tolist():
        mq = b.model_quality[i]
        reg.record_outcome(
            f"r{i}",
            b.names[b.agent[i]],
            bool(b.success[i]),
            float(b.latency_ms[i]),
            None,
            float(b.cost_usd[i]),
            model_quality=None if np.isnan(mq) else float(mq),
            learn=bool(b.learn[i]),
        )


def close(a: AgentRegistry, b: AgentRegistry, name: str) -> None:
    pa, pb = a.posterior(name), b.posterior(name)
    np.testing.assert_allclose(pa.precision, pb.precision, rtol=1e-9, atol=0)
    np.testing.assert_allclose(pa.shift, pb.shift, rtol=1e-9, atol=0)
    assert a.metrics(name).requests == b.metrics(name).requests


@pytest.mark.parametrize("idle", [None, 200.0], ids=["no-idle-ageing", "idle-ageing"])
def test_each_shards_part_of_a_block_equals_its_rows_one_by_one(idle):
    rng = np.random.default_rng(7)
    whole = block(rng, 3_000)
    parts = split_outcomes(whole, SHARDS)
    assert sum(len(p) for p in parts) == len(whole)
    everything = registry(NAMES, idle)
    everything.record_many(whole)
    for k, part in enumerate(parts):
        mine = tuple(n for n in NAMES if agent_shard(n, SHARDS) == k)
        assert {part.names[c] for c in np.unique(part.agent)} == set(mine)
        bulk, single = registry(mine, idle), registry(mine, idle)
        bulk.record_many(part)
        rows = np.flatnonzero([agent_shard(whole.names[c], SHARDS) == k for c in whole.agent])
        one_by_one(single, whole, rows)
        for name in mine:
            close(bulk, single, name)
            if idle is None:  # ageing by the shard's outcomes is the only difference
                close(bulk, everything, name)
    assert split_outcomes(whole, 1) == [whole]


def test_the_merged_snapshot_routes_with_every_shards_posteriors_at_their_age():
    rng = np.random.default_rng(3)
    shards = []
    for k, part in enumerate(split_outcomes(block(rng, 2_000), SHARDS)):
        reg = registry(tuple(n for n in NAMES if agent_shard(n, SHARDS) == k), 150.0)
        reg.record_many(part)
        shards.append(reg)
    merged = AgentRegistry.restore(merge_registry_snapshots([s.snapshot() for s in shards]))
    assert merged.version == sum(s.version for s in shards)
    assert [a.name for a in merged.list()] == [a.name for s in shards for a in s.list()]
    for reg in shards:
        for agent in reg.list():
            close(merged, reg, agent.name)  # posterior() ages: same age as in its shard
    one = shards[0].snapshot()
    assert merge_registry_snapshots([one]) is one
    back = restrict_snapshot(merged.snapshot(), 1, SHARDS)
    assert [e["agent"]["name"] for e in back["agents"]] == [a.name for a in shards[1].list()]


def test_breaker_events_and_snapshots_by_shard():
    events = BreakerEvents.build(NAMES, np.arange(12) % 12, np.zeros(12, bool), 100.0)
    parts = split_by_agent(events, SHARDS)
    breakers = [CircuitBreaker(clock=lambda: 100.0) for _ in range(SHARDS)]
    for b, part in zip(breakers, parts, strict=True):
        b.record_many(part)
        assert {part.names[c] for c in part.agent} <= {
            n for n in NAMES if agent_shard(n, SHARDS) == breakers.index(b)
        }
    merged = merge_breaker_snapshots([b.snapshot() for b in breakers])
    assert set(merged["states"]) == set(NAMES)
    assert merged["version"] == sum(b.version for b in breakers)


def test_ledger_entries_and_blocks_go_to_their_requests_shards():
    ids = [f"req-{i}" for i in range(40)]
    ranked = np.tile(np.array([[0, 1, -1]]), (30, 1))
    entries = [
        LedgerBlock(ids[:30], ("a", "b"), ranked, np.full((30, 3), 0.5)),
        *(LedgerEntry(i, ("a",)) for i in ids[30:]),
    ]
    parts = split_entries(entries, SHARDS)
    ledgers = [DecisionLedger() for _ in range(SHARDS)]
    for k, (ledger, part) in enumerate(zip(ledgers, parts, strict=True)):
        ledger.remember_entries(part)
        assert all(request_shard(i, SHARDS) == k for i in ids if i in ledger)
    assert sum(len(ledger) for ledger in ledgers) == len(ids)
    assert ledgers[request_shard("req-3", SHARDS)].entry("req-3") == entries[0].entry(3)
    assert split_entries(entries, 1) == [entries]


def test_feedback_for_another_shards_agent_is_checked_then_forwarded_once():
    mine = next(n for n in NAMES if agent_shard(n, 2) == 0)
    theirs = next(n for n in NAMES if agent_shard(n, 2) == 1)
    here, there = registry((mine,), None), registry((theirs,), None)
    ledger = DecisionLedger()
    for rid in ("r-1", "r-2", "r-3"):
        ledger.remember(rid, (mine, theirs))
    learner = ShardLearner(here, 0, 2)
    ledger.settle("r-1", mine, learner, True, 10.0, None, None)
    ledger.settle("r-2", theirs, learner, False, 20.0, 0.25, None)
    with pytest.raises(InvalidRequestError, match="latency_ms"):
        ledger.settle("r-3", theirs, learner, True, -1.0, None, None)
    assert "r-3" in ledger  # refused before it was consumed
    with pytest.raises(FeedbackError, match="already recorded"):
        ledger.settle("r-2", theirs, learner, False, 20.0, None, None)
    forwarded = learner.take()
    assert list(forwarded) == [1] and len(forwarded[1]) == 1 and learner.take() == {}
    assert here.metrics(mine).requests == 1
    assert apply_forwarded(there, forwarded[1]) == 1
    expected = registry((theirs,), None)
    expected.record_outcome("r-2", theirs, False, 20.0, 0.25)
    close(there, expected, theirs)
    there.remove(theirs)
    assert apply_forwarded(there, forwarded[1]) == 0  # removed meanwhile: skipped
