"""The gateway path makes no actor call per request: a replica's `/v1/chat/completions`
answers from its snapshots and queues what it learnt; the actors hear of it once per push
(`ship_learning`: one `remember_decisions`, one `record_gateway`, one `record_attempts`,
each with a whole block).

A real `ReplicaState` and `Gateway`, forwarding over HTTP to fake upstreams on 127.0.0.1;
the three state actors are stand-ins that count every `.remote()` call and answer from
in-process engine objects (answers travel as object refs of the session's Ray)."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from typing import Any

import ray

from cluster.config import AppArgs
from cluster.metrics import ReplicaMetrics
from cluster.replica_state import ReplicaState
from tinydancer.agents.agent import Agent
from tinydancer.agents.breaker import CircuitBreaker
from tinydancer.agents.registry import AgentRegistry
from tinydancer.gateway.fake_upstream import FakeBehaviour, FakeUpstreams
from tinydancer.gateway.outcomes import teach_breaker_block, teach_registry_block

AGENTS = {"calls-a": FakeBehaviour(quality=0.9, tokens=8), "calls-b": FakeBehaviour(quality=0.6)}
REQUESTS = 12


class CountingActor:
    """`actor.method.remote(...)` counted; the answer comes from `answer(method, ...)`."""

    def __init__(self, answer: Any) -> None:
        self.calls: Counter[str] = Counter()
        self._answer = answer

    def __getattr__(self, method: str) -> Any:
        actor = self

        class Method:
            @staticmethod
            def remote(*args: Any, **kwargs: Any) -> Any:
                actor.calls[method] += 1
                return ray.put(actor._answer(method, *args, **kwargs))

        return Method


class Replica:
    """A real `ReplicaState` and `Gateway` over counting stand-ins of the state actors;
    the history stand-in keeps how many attempt rows each `append` carried."""

    def __init__(self, upstreams: FakeUpstreams) -> None:
        self.registry = registry = AgentRegistry()
        for name in AGENTS:
            registry.register(
                Agent(name=name, capabilities=["calls-test"], endpoint=upstreams.endpoint(name))
            )
        breaker = CircuitBreaker()
        self.attempt_rows: list[int] = []

        def registry_answer(method: str, *args: Any, **kwargs: Any) -> Any:
            if method == "snapshot_if_newer":
                return None if args[0] == registry.version else registry.snapshot()
            if method == "record_gateway":
                teach_registry_block(registry, args[0])
                return registry.version
            return None

        def breaker_answer(method: str, *args: Any, **kwargs: Any) -> Any:
            if method == "snapshot_if_newer":
                return breaker.snapshot()
            if method == "record_attempts":
                teach_breaker_block(breaker, args[0], args[1])
            return None

        def history_answer(method: str, *args: Any, **kwargs: Any) -> Any:
            if method == "append":
                self.attempt_rows.append(0 if args[2] is None else len(args[2]))
            return None

        self.actors = [CountingActor(registry_answer), CountingActor(breaker_answer)]
        self.actors.append(CountingActor(history_answer))
        args = AppArgs(history_path=tempfile.mkdtemp() + "/unused.duckdb")
        self.state = ReplicaState(
            args, 0, "calls-replica", *self.actors, ReplicaMetrics("calls-replica")
        )
        self.state.encoder.preload()

    def calls(self) -> list[int]:
        return [sum(actor.calls.values()) for actor in self.actors]


BODY = {
    "model": "tinydancer/quality",
    "messages": [{"role": "user", "content": "say something"}],
    "tinydancer": {"constraints": {"required_capabilities": ["calls-test"]}},
}


def test_chat_completions_make_no_actor_call_per_request(cluster):
    with FakeUpstreams(AGENTS, seed=5) as upstreams:
        replica = Replica(upstreams)
        state, before = replica.state, replica.calls()

        async def requests_then_a_push() -> list[int]:
            statuses = [
                (await state.gateway.chat_completions(BODY)).status for _ in range(REQUESTS)
            ]
            assert replica.calls() == before  # none per request
            await state.push()
            return statuses

        assert asyncio.run(requests_then_a_push()) == [200] * REQUESTS
    registry_actor, breaker_actor, history_actor = (actor.calls for actor in replica.actors)
    assert registry_actor["record_gateway"] == 1 and registry_actor["remember_decisions"] == 1
    assert breaker_actor["record_attempts"] == 1
    assert history_actor["append"] == 1
    served = sum(replica.registry.metrics(name).requests for name in AGENTS)
    assert served >= REQUESTS  # every request's attempts arrived in the one push
    assert replica.attempt_rows == [served]


def test_a_push_during_the_feedback_path_loses_no_attempt(cluster):
    """Client feedback ships the replica's learning first (`ship_learning`); the background
    push may run while that shipment awaits the actors. The rows it returns must join the
    replica's current history buffer, not the one the push has just sent (CI lost a
    stream's attempt this way)."""
    with FakeUpstreams(AGENTS, seed=6) as upstreams:
        replica = Replica(upstreams)
        state = replica.state

        async def feedback_and_push_together() -> None:
            for _ in range(REQUESTS):
                assert (await state.gateway.chat_completions(BODY)).status == 200
            # the feedback path's shipment suspends first; the push runs meanwhile
            await asyncio.gather(state.ship_learning(), state.push())
            await state.push()

        asyncio.run(feedback_and_push_together())
    served = sum(replica.registry.metrics(name).requests for name in AGENTS)
    assert served >= REQUESTS
    assert sum(replica.attempt_rows) == served, replica.attempt_rows
