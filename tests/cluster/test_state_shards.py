"""Two state shards (`state_shards: 2`): a real `ReplicaState` (in the test process) routes
from the merged snapshots of two registry actors and two breaker actors, created in their
own namespace of the session's Ray. Outcomes reach the shard that owns their agent,
feedback the ledger shard its request id names (accepted once, refused with a reason, one
actor call per report), and a replica routes on an outcome within a second."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import ray

from cluster import actors
from cluster.config import AppArgs
from cluster.default_agents import DEFAULT_AGENTS
from cluster.http_models import FeedbackBody
from cluster.metrics import ReplicaMetrics
from cluster.replica_state import ReplicaState
from tests.cluster.cluster_helpers import vector
from tinydancer.agents.agent import Agent
from tinydancer.agents.shards import agent_shard, request_shard
from tinydancer.agents.types import AgentRequest
from tinydancer.gateway.outcomes import AttemptOutcome

SHARDS = 2


@pytest.fixture(scope="module")
def sharded(cluster, tmp_path_factory):
    args = AppArgs(
        namespace="tinydancer-shards-test",
        history_path=str(tmp_path_factory.mktemp("shards") / "history.duckdb"),
        state_shards=SHARDS,
        actor_num_cpus=0,
        snapshot_interval_s=0.25,
    )
    registries, breakers, history = actors.get_or_create(args, DEFAULT_AGENTS)
    state = ReplicaState(
        args, 0, "shards-replica", registries, breakers, history, ReplicaMetrics("shards-replica")
    )
    yield args, registries, breakers, state
    for actor in (*registries, *breakers, history):
        ray.kill(actor, no_restart=True)


def names_of(registry: Any) -> set[str]:
    return {a["name"] for a in ray.get(registry.call.remote("list"))["result"]}


def test_each_shard_owns_its_agents_and_the_replica_routes_from_all(sharded):
    _, registries, _, state = sharded
    owned = [names_of(r) for r in registries]
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    for k, names in enumerate(owned):
        assert {agent_shard(n, SHARDS) for n in names} == {k}
    assert {a.name for a in state.agent_router.registry.list()} == owned[0] | owned[1]
    assert {a["name"] for a in DEFAULT_AGENTS} == owned[0] | owned[1]
    assert actors.shard_name("tinydancer-registry", 1) == "tinydancer-registry-1"


def routed(state: ReplicaState, count: int) -> list[dict[str, Any]]:
    decisions = state.route_many([AgentRequest(embedding=vector(900 + i)) for i in range(count)])
    return [d for d in decisions if isinstance(d, dict)]


def allowed(decision: dict[str, Any]) -> list[str]:
    alternatives = [a["agent"] if isinstance(a, dict) else a for a in decision["alternatives"]]
    return [decision["agent"], *alternatives]


def test_feedback_goes_to_its_ledger_shard_once_and_routing_sees_it_within_a_second(sharded):
    args, registries, _, state = sharded
    decisions = routed(state, 24)
    # one report per (ledger shard, agent shard) pair, when the routes offer one
    picks: dict[tuple[int, int], tuple[str, str]] = {}
    for d in decisions:  # a report per request: each id is accepted once
        for agent in allowed(d):
            pair = (request_shard(d["request_id"], SHARDS), agent_shard(agent, SHARDS))
            if pair not in picks:
                picks[pair] = (d["request_id"], agent)
                break
    assert {ledger for ledger, _ in picks} == {0, 1}
    assert {owner for _, owner in picks} == {0, 1}
    assert any(ledger != owner for ledger, owner in picks)  # learnt by another shard
    before = {
        agent: state.agent_router.registry.metrics(agent).requests for _, agent in picks.values()
    }

    async def scenario() -> dict[str, Any]:
        state.ensure_background()
        calls = state.feedback_calls.calls
        results, seen = {}, {}
        for pair, (request_id, agent) in picks.items():
            body = FeedbackBody(request_id=request_id, agent=agent, success=True, latency_ms=5.0)
            results[pair] = await state.feedback(body)
            accepted_at = time.monotonic()
            assert results[pair]["accepted"], results[pair]
            while state.agent_router.registry.metrics(agent).requests == before[agent]:
                assert time.monotonic() - accepted_at < 10, "the outcome never reached routing"
                await asyncio.sleep(0.01)
            seen[pair] = time.monotonic() - accepted_at
            before[agent] += 1
        replays = [
            await state.feedback(FeedbackBody(request_id=r, agent=a, success=False))
            for r, a in picks.values()
        ]
        unknown = await state.feedback(
            FeedbackBody(request_id="f" * 32, agent=DEFAULT_AGENTS[0]["name"], success=True)
        )
        return {
            "results": results,
            "seen": seen,
            "replays": replays,
            "unknown": unknown,
            "calls": state.feedback_calls.calls - calls,
        }

    out = asyncio.run(scenario())
    assert all(r["accepted"] for r in out["results"].values()), out["results"]
    assert [r["reason"] for r in out["replays"]] == ["replayed"] * len(picks)
    assert out["unknown"]["accepted"] is False and out["unknown"]["reason"] == "unknown_request"
    assert out["calls"] == 2 * len(picks) + 1  # one coalesced call per report sent alone
    # the outcome was learnt by the agent's shard, whichever ledger shard took the report
    for (_, owner), (_, agent) in picks.items():
        stats = ray.get(registries[owner].call.remote("stats", agent))
        assert stats["ok"] and stats["result"]["metrics"]["requests"] >= 1
        assert not ray.get(registries[1 - owner].call.remote("get", agent))["ok"]
    # each refusal was counted by the ledger shard the request id names
    refused = [ray.get(r.status.remote())["refused_feedback"] for r in registries]
    replayed = [sum(request_shard(r, SHARDS) == k for r, _ in picks.values()) for k in (0, 1)]
    assert [refused[k]["replayed"] for k in (0, 1)] == replayed
    assert sum(refused[k]["unknown_request"] for k in (0, 1)) == 1
    assert refused[request_shard("f" * 32, SHARDS)]["unknown_request"] == 1
    worst = max(out["seen"].values())
    print(
        f"\nstate shards: outcome to routing {sorted(round(v, 3) for v in out['seen'].values())} s"
    )
    assert worst <= 1.0, (
        f"outcome to routing took {worst:.3f} s (refresh {args.snapshot_interval_s} s)"
    )


def test_gateway_attempts_reach_the_agents_registry_and_breaker_shards(sharded):
    _, registries, breakers, state = sharded
    owned = [sorted(names_of(r)) for r in registries]
    victim, healthy = owned[1][0], owned[0][0]
    failures = [
        AttemptOutcome(f"gw-{i}", 0, victim, "server_error", 30.0, None, None, None, None)
        for i in range(20)
    ]
    successes = [
        AttemptOutcome(f"ok-{i}", 0, healthy, None, 30.0, None, 10, 10, 1e-4) for i in range(7)
    ]
    counts = [
        ray.get(registries[k].call.remote("stats", name))["result"]["metrics"]["requests"]
        for k, name in ((1, victim), (0, healthy))
    ]
    state.gateway_outbox.attempted(failures + successes)

    async def push_and_refresh() -> None:
        await state.push()
        await state.refresh()

    asyncio.run(push_and_refresh())
    after = [
        ray.get(registries[k].call.remote("stats", name))["result"]["metrics"]["requests"]
        for k, name in ((1, victim), (0, healthy))
    ]
    assert [a - b for a, b in zip(after, counts, strict=True)] == [20, 7]
    states = [ray.get(b.status.remote())["states"] for b in breakers]
    assert states[1][victim] == "open" and victim not in states[0]
    assert state.breaker_view.state(victim).value == "open"  # the merged view routes around it


def test_administration_goes_to_the_owning_shard(sharded):
    _, registries, _, state = sharded
    name = next(f"shard-admin-{i}" for i in range(100) if agent_shard(f"shard-admin-{i}", 2) == 1)

    async def admin() -> list[dict[str, Any]]:
        calls = state.shards.registry_call
        return [
            await calls("register", {"name": name, "capabilities": ["shard-test"]}),
            await calls("register", {"name": name}),
            await calls("list"),
            await calls("stats"),
            await calls("remove", name),
        ]

    registered, again, listed, stats, removed = asyncio.run(admin())
    assert registered["ok"] and not again["ok"] and again["error"] == "DuplicateAgentError"
    assert name in {a["name"] for a in listed["result"]} and name in stats["result"]["agents"]
    assert removed["ok"] and name not in names_of(registries[1])
    stats = asyncio.run(state.stats())  # GET /v1/stats: summed over the shards, each shown
    assert [s["agents"] for s in stats["registry"]["shards"]] == [
        len(names_of(r)) for r in registries
    ]
    assert stats["registry"]["agents"] == len(DEFAULT_AGENTS)
    _, cluster_view = asyncio.run(state.metrics_view())  # /metrics
    updates = [ray.get(r.status.remote())["bandit_updates"] for r in registries]
    assert cluster_view["bandit_updates"] == sum(updates) > 0


def test_a_killed_shard_comes_back_with_its_own_agents_and_posteriors(sharded):
    args, registries, _, _ = sharded
    before = [ray.get(r.call.remote("stats"))["result"] for r in registries]
    ray.get(registries[1].persist_now.remote())
    ray.get(registries[0].persist_now.remote())  # the newest row is shard 0's
    ray.kill(registries[1], no_restart=False)
    deadline = time.monotonic() + 60
    name = actors.shard_name("tinydancer-registry", 1)
    while True:
        try:
            shard = ray.get_actor(name, namespace=args.namespace)
            after = ray.get(shard.call.remote("stats"), timeout=10)["result"]
            break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert set(after["agents"]) == set(before[1]["agents"])  # its own, not shard 0's
    for agent, stats in before[1]["agents"].items():
        assert after["agents"][agent]["posterior_mean"] == stats["posterior_mean"]
        assert after["agents"][agent]["metrics"]["requests"] == stats["metrics"]["requests"]
    assert ray.get(shard.status.remote())["restored_from_version"] == before[1]["version"]


def test_going_from_one_shard_to_two_keeps_every_agents_learning(cluster, tmp_path):
    """Shards that find no snapshot of their own start from the unsharded registry's: each
    takes its agents with their metrics and posteriors."""
    from tinydancer.agents.registry import AgentRegistry

    unsharded = AgentRegistry()
    for spec in DEFAULT_AGENTS:
        unsharded.register(Agent.model_validate(spec))
    for i, spec in enumerate(DEFAULT_AGENTS):
        unsharded.record_outcome(f"m{i}", spec["name"], i % 2 == 0, 100.0 + i)
    args = AppArgs(
        namespace="tinydancer-reshard-test",
        history_path=str(tmp_path / "history.duckdb"),
        state_shards=SHARDS,
        actor_num_cpus=0,
    )
    history = actors.HistoryStoreActor.options(namespace=args.namespace).remote(args)  # type: ignore[attr-defined]
    ray.get(history.record_agent_snapshot.remote(unsharded.snapshot()))
    shards = [
        actors.AgentRegistryActor.options(namespace=args.namespace).remote(  # type: ignore[attr-defined]
            args, history, [], k
        )
        for k in range(SHARDS)
    ]
    try:
        for k, shard in enumerate(shards):
            stats = ray.get(shard.call.remote("stats"))["result"]["agents"]
            mine = [s["name"] for s in DEFAULT_AGENTS if agent_shard(s["name"], SHARDS) == k]
            assert sorted(stats) == sorted(mine)
            for name in mine:
                assert stats[name]["metrics"] == unsharded.stats(name)["metrics"]
                assert stats[name]["posterior_mean"] == unsharded.stats(name)["posterior_mean"]
    finally:
        for actor in (*shards, history):
            ray.kill(actor, no_restart=True)
