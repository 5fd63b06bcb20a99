"""The learning path through the actors: several simulated replicas push gateway attempts
into one registry actor (and one breaker actor), as `ship_learning` does; and the same
into two state shards (`state_shards: 2`), each replica splitting every block by the
agents' shards and making one call per shard (as `StateShards.ship`). Both configurations
exist side by side and take turns (one, two, two, one shards), so the machine's load
weighs on both alike.

Each simulated replica (a Ray actor) queues pre-built attempts in a real `GatewayOutbox`,
takes them (the history rows are built as on a replica) and ships one `AttemptBlock` of
2,000 attempts per push: `record_gateway` on the registry actor, then `record_attempts`
on the breaker actor, as fast as the actors answer; it also refreshes its registry
snapshot every `snapshot_interval_s` (0.25 s) like a replica. The registry actor
persists its snapshot through a real history actor every 0.5 s while it changes.

Reported: outcomes/s the registry actor sustained (target >= 50,000/s in benchmark
mode; with shards, in total and per shard), push and refresh latencies. Checked: each
registry actor's final registry equals its initial one with the same attempts applied one
by one in process (`teach_registry`, which skips another shard's agents), in the order
the actor applied the blocks (each push returns the registry's version), to 1e-9. Under --benchmark-disable each configuration runs 3 s; `TINYDANCER_LEARNING_BENCH_S`
sets it (default 60), `TINYDANCER_LEARNING_BLOCK_ROWS` the rows per push. One by one replays ~35,000 outcomes/s, so runs longer than 10 s
replay in bulk in process instead (equal to one by one: tests/engine/agents/test_bulk.py)
unless `TINYDANCER_LEARNING_REPLAY=one_by_one`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time

import numpy as np
import psutil
import pytest
import ray

from cluster.actors import AgentRegistryActor, CircuitBreakerActor, HistoryStoreActor
from cluster.config import AppArgs
from cluster.default_agents import DEFAULT_AGENTS
from cluster.outboxes import GatewayOutbox
from cluster.runner import _ray_on_loopback
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.shards import rows_by_shard, take_rows
from tinydancer.gateway.outcomes import (
    AttemptBlock,
    AttemptOutcome,
    teach_registry,
    teach_registry_block,
)

from .test_learning import TARGET_PER_S as IN_PROCESS_TARGET_PER_S

REPLICAS, BLOCKS_PER_REPLICA = 3, 8
BLOCK_ROWS = int(os.environ.get("TINYDANCER_LEARNING_BLOCK_ROWS", 2_000))
TARGET_PER_S = 50_000
NAMES = [agent["name"] for agent in DEFAULT_AGENTS]
assert IN_PROCESS_TARGET_PER_S > TARGET_PER_S


def attempts(replica: int, block: int) -> list[AttemptOutcome]:
    """Deterministic gateway attempts: ~8 % fail, 1 % rate limited, 2 % not the agent's doing."""
    rng = np.random.default_rng([replica, block])
    kinds = rng.choice(
        np.array(["", "server_error", "rate_limited", "deadline"], object),
        BLOCK_ROWS,
        p=[0.9, 0.07, 0.01, 0.02],
    )
    agent = rng.integers(0, len(NAMES), BLOCK_ROWS)
    latency = rng.lognormal(6.8, 0.6, BLOCK_ROWS)
    cost = rng.random(BLOCK_ROWS) * 2e-3
    quality = rng.random(BLOCK_ROWS)
    return [
        AttemptOutcome(
            request_id=f"r{replica}-{block}-{i}",
            attempt=0,
            agent=NAMES[agent[i]],
            failure_kind=kinds[i] or None,
            latency_ms=float(latency[i]),
            ttft_ms=None,
            prompt_tokens=200,
            completion_tokens=300,
            cost_usd=float(cost[i]),
            retry_after_s=2.0 if kinds[i] == "rate_limited" else None,
            model_quality=float(quality[i]),
        )
        for i in range(BLOCK_ROWS)
    ]


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU time (user + system) so far of each role's processes."""
    totals = {}
    for role, ids in pids.items():
        times = [psutil.Process(pid).cpu_times() for pid in ids]
        totals[role] = sum(t.user + t.system for t in times)
    return totals


@ray.remote(num_cpus=0)
class SimulatedReplica:
    def __init__(self, index: int, registries: list[object], breakers: list[object]) -> None:
        self.index, self.registries, self.breakers = index, registries, breakers
        self.blocks = [attempts(index, k) for k in range(BLOCKS_PER_REPLICA)]
        self.outbox = GatewayOutbox(f"replica-{index}")

    def pid(self) -> int:
        return os.getpid()

    async def _refresh(self, stop: float, latencies: list[float]) -> None:
        versions = [-1] * len(self.registries)
        while time.monotonic() < stop:
            started = time.perf_counter()
            snapshots = await asyncio.gather(
                *(
                    r.snapshot_if_newer.remote(v)  # type: ignore[attr-defined]
                    for r, v in zip(self.registries, versions, strict=True)
                )
            )
            latencies.append(time.perf_counter() - started)
            versions = [
                v if snap is None else int(snap["version"])
                for v, snap in zip(versions, snapshots, strict=True)
            ]
            await asyncio.sleep(0.25)

    async def run(self, seconds: float) -> dict[str, object]:
        stop = time.monotonic() + seconds
        refreshes: list[float] = []
        refresher = asyncio.get_running_loop().create_task(self._refresh(stop, refreshes))
        pushes, latencies, k = [], [], 0
        while time.monotonic() < stop:
            self.outbox.attempted(self.blocks[k % BLOCKS_PER_REPLICA])
            started = time.perf_counter()
            taken, _, _rows = self.outbox.take()  # as ship_learning: history rows too
            block = AttemptBlock.from_outcomes(taken)
            shards = len(self.registries)
            parts = (
                [block]
                if shards == 1
                else [take_rows(block, r) for r in rows_by_shard(block.names, block.agent, shards)]
            )
            versions = await asyncio.gather(
                *(
                    r.record_gateway.remote(part, [])  # type: ignore[attr-defined]
                    for r, part in zip(self.registries, parts, strict=True)
                )
            )
            await asyncio.gather(
                *(
                    b.record_attempts.remote(part, 300.0)  # type: ignore[attr-defined]
                    for b, part in zip(self.breakers, parts, strict=True)
                )
            )
            latencies.append(time.perf_counter() - started)
            pushes.append(([int(v) for v in versions], k % BLOCKS_PER_REPLICA))
            k += 1
        await refresher
        return {"pushes": pushes, "push_s": latencies, "refresh_s": refreshes}


class Setup:
    """One configuration's actors and simulated replicas, and what its slices measured."""

    def __init__(self, shards: int) -> None:
        args = AppArgs(history_path=tempfile.mkdtemp() + "/history.duckdb", state_shards=shards)
        common = {"num_cpus": 0.1}
        self.shards = shards
        self.history = HistoryStoreActor.options(**common).remote(args)  # type: ignore[attr-defined]
        self.registries = [
            AgentRegistryActor.options(**common).remote(args, self.history, DEFAULT_AGENTS, k)  # type: ignore[attr-defined]
            for k in range(shards)
        ]
        self.breakers = [
            CircuitBreakerActor.options(**common).remote(self.history, args.breaker)  # type: ignore[attr-defined]
            for _ in range(shards)
        ]
        self.replicas = [
            SimulatedReplica.remote(i, self.registries, self.breakers)  # type: ignore[attr-defined]
            for i in range(REPLICAS)
        ]
        self.initial = ray.get([r.snapshot_if_newer.remote(-1) for r in self.registries])
        ray.get([replica.__ray_ready__.remote() for replica in self.replicas])
        self.pids = {
            "registry": [pid(r) for r in self.registries],
            "breaker": [pid(b) for b in self.breakers],
            "history": [pid(self.history)],
            "replicas": ray.get([replica.pid.remote() for replica in self.replicas]),
        }
        self.elapsed = 0.0
        self.cpu = dict.fromkeys(self.pids, 0.0)
        self.pushed: list[tuple[int, list[int], int]] = []
        self.push_s: list[float] = []
        self.refresh_s: list[float] = []

    def run(self, seconds: float) -> None:
        before = cpu_seconds(self.pids)
        started = time.perf_counter()
        runs = ray.get([replica.run.remote(seconds) for replica in self.replicas])
        self.elapsed += time.perf_counter() - started
        after = cpu_seconds(self.pids)
        for role in self.cpu:
            self.cpu[role] += after[role] - before[role]
        for r, run in enumerate(runs):
            self.pushed += [(r, versions, k) for versions, k in run["pushes"]]
            self.push_s += run["push_s"]
            self.refresh_s += run["refresh_s"]

    def kill(self) -> None:
        for actor in (*self.replicas, *self.breakers, *self.registries, self.history):
            ray.kill(actor)


def pid(actor: object) -> int:
    return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid())))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def setups(request):
    disabled = request.config.getoption("benchmark_disable", False)
    seconds = float(os.environ.get("TINYDANCER_LEARNING_BENCH_S", 3 if disabled else 60))
    started = not ray.is_initialized()
    if started:
        with _ray_on_loopback():
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    built = [Setup(1), Setup(2)]
    yield built, seconds
    for setup in built:
        setup.kill()
    if started:
        ray.shutdown()


def test_replicas_push_learning_into_one_and_into_two_registry_shards(benchmark, setups):
    """The two configurations take turns, ABBA (one shard, two, two, one), each for half
    its total time per turn, so a change in the machine's load weighs on both alike."""
    benchmark.group = "learning through the actors"
    (one, two), seconds = setups

    def interleaved() -> None:
        for setup in (one, two, two, one):
            setup.run(seconds / 2)

    benchmark.pedantic(interleaved, rounds=1, iterations=1)
    info = benchmark.extra_info
    info.update(replicas=REPLICAS, block_rows=BLOCK_ROWS, seconds_each=seconds)
    mode = os.environ.get("TINYDANCER_LEARNING_REPLAY", "bulk" if seconds > 10 else "one_by_one")
    info["replay"] = mode
    for setup in (one, two):
        measured = check_and_measure(setup, mode)
        info.update({f"{setup.shards}_shards_{key}": value for key, value in measured.items()})
    info["two_to_one_shard_rate"] = (
        info["2_shards_outcomes_per_s"] / info["1_shards_outcomes_per_s"]
    )
    print(f"\nlearning through the actors: {info}")
    if not benchmark.disabled:
        assert info["1_shards_outcomes_per_s"] >= TARGET_PER_S, info


def check_and_measure(setup: Setup, mode: str) -> dict[str, object]:
    """Each shard's final registry equals its initial one with the same attempts applied
    one by one in process, in the order it applied them (1e-9); and the rates."""
    shards, elapsed = setup.shards, setup.elapsed
    finals = ray.get([r.snapshot_if_newer.remote(-1) for r in setup.registries])
    transitions = sum(ray.get(b.status.remote())["transitions"] for b in setup.breakers)
    blocks = {(r, k): attempts(r, k) for r, _, k in setup.pushed}
    owned = [{a["agent"]["name"] for a in snap["agents"]} for snap in setup.initial]
    per_shard = [
        sum(sum(o.agent in owned[s] for o in blocks[r, k]) for r, _, k in setup.pushed)
        for s in range(shards)
    ]
    outcomes = len(setup.pushed) * BLOCK_ROWS
    teach = teach_registry if mode == "one_by_one" else teach_registry_block
    started = time.perf_counter()
    for s in range(shards):
        order = sorted((versions[s], r, k) for r, versions, k in setup.pushed)
        assert len({v for v, _, _ in order}) == len(order)
        replay = AgentRegistry.restore(setup.initial[s])
        for _, r, k in order:
            teach(replay, blocks[r, k])  # another shard's agents are skipped
        assert replay.version == finals[s]["version"]
        expected = replay.snapshot()
        for mine, theirs in zip(finals[s]["agents"], expected["agents"], strict=True):
            assert mine["agent"]["name"] == theirs["agent"]["name"]
            for key in ("precision", "shift"):
                np.testing.assert_allclose(
                    mine["posterior"][key], theirs["posterior"][key], rtol=1e-9, atol=0
                )
            assert mine["posterior"]["outcomes"] == theirs["posterior"]["outcomes"]
            assert mine["metrics"]["requests"] == theirs["metrics"]["requests"]
            np.testing.assert_allclose(
                mine["metrics"]["cost_total_usd"], theirs["metrics"]["cost_total_usd"], rtol=1e-9
            )
    measured: dict[str, object] = {
        "seconds": elapsed,
        "outcomes": outcomes,
        "outcomes_per_s": outcomes / elapsed,
        "outcomes_per_s_per_shard": [n / elapsed for n in per_shard],
        "push_p50_ms": 1e3 * statistics.median(setup.push_s),
        "push_max_ms": 1e3 * max(setup.push_s),
        "refresh_p50_ms": 1e3 * statistics.median(setup.refresh_s),
        "refresh_max_ms": 1e3 * max(setup.refresh_s),
        "breaker_transitions": transitions,
        "replay_per_s": outcomes / (time.perf_counter() - started),
    }
    for role, cpu in setup.cpu.items():  # share of one core each role's processes used
        measured[f"cpu_{role}"] = cpu / elapsed
    return measured
