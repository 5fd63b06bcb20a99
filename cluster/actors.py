"""The cluster's state actors: thin adapters, each owning one engine object.

* `HistoryStoreActor` owns the `HistoryStore` (the only DuckDB writer); flushes by age and
  exports Parquet on a timer.
* `AgentRegistryActor` owns the `AgentRegistry` and the shared `DecisionLedger`; persists
  registry snapshots through the history actor and restores the latest one when it
  (re)starts.
* `CircuitBreakerActor` owns the `CircuitBreaker`; records transitions in the history.

All are named, detached, restartable (`max_restarts=-1`) async actors in the app's
namespace; `get_or_create` makes every replica find the same ones. With
`state_shards = N > 1` there are N registry actors and N breaker actors
(`tinydancer-registry`, `tinydancer-registry-1`, ...): registry shard k owns the agents
`agent_shard(name, N) == k` names (their metrics, posteriors, administration) and the
ledger of the requests `request_shard(id, N) == k` names; breaker shard k the same agents
(`tinydancer.agents.shards`). Feedback goes to its request's ledger shard, which forwards
what another shard's agent learnt to that shard in one call. Shard 0 also keeps the
cluster-wide state (model rollout, replica metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray

from cluster.breaker_actor import CircuitBreakerActor
from cluster.config import AppArgs
from cluster.history_actor import HistoryStoreActor
from cluster.metrics import without_gone_replicas
from tinydancer.agents.agent import Agent
from tinydancer.agents.ledger import Answer, DecisionLedger, LedgerBlock, LedgerEntry
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.shards import (
    ShardLearner,
    agent_shard,
    apply_forwarded,
    restrict_snapshot,
)
from tinydancer.errors import FeedbackError, TinyDancerError
from tinydancer.gateway.outcomes import (
    AttemptBlock,
    AttemptOutcome,
    teach_registry_block,
)
from tinydancer.model.weights import serving_model

__all__ = [
    "AgentRegistryActor",
    "CircuitBreakerActor",
    "HistoryStoreActor",
    "actor_names",
    "get_or_create",
    "shard_name",
]

log = logging.getLogger("tinydancer.actors")
REGISTRY, BREAKER, HISTORY = "tinydancer-registry", "tinydancer-breaker", "tinydancer-history"


def actor_names() -> tuple[str, str, str]:
    """The names of shard 0's registry and breaker (the only ones with one shard), and the history's."""
    return REGISTRY, BREAKER, HISTORY


def shard_name(base: str, shard: int) -> str:
    """Shard 0 keeps the unsharded name: one shard is exactly the unsharded app."""
    return base if shard == 0 else f"{base}-{shard}"


@ray.remote(max_restarts=-1, max_task_retries=3)
class AgentRegistryActor:
    def __init__(
        self, args: AppArgs, history: Any, default_agents: list[dict[str, Any]], shard: int = 0
    ) -> None:
        self.history = history
        self.shard, self.shards = shard, args.state_shards
        self.feedback_wait_s = args.feedback_wait_s
        self._args, self._default_agents = args, default_agents
        self._registry: AgentRegistry | None = None  # restored by the first call (`_ready`)
        self._restoring: asyncio.Lock | None = None
        self.restored_from_version: int | None = None
        self.ledger = DecisionLedger(capacity=1_000_000)
        self._waiters: dict[str, asyncio.Event] = {}
        self._persisted_version = -1
        self._persister: asyncio.Task[None] | None = None
        self.model: dict[str, Any] = {}  # desired model files, rolled out by replicas
        self._replica_samples: dict[str, list[Any]] = {}
        self._replica_models: dict[str, dict[str, str]] = {}
        self._replica_seen: dict[str, float] = {}  # replica -> monotonic time of its last report
        self._peers: dict[str, Any] = {}  # other shards' actors, looked up by name on first use

    async def _ready(self) -> None:
        """Restore the latest persisted registry (or start the default pool) once. Awaited,
        not `ray.get` in __init__: a blocking get would stall this async actor's loop."""
        if self._registry is not None:
            return
        self._restoring = self._restoring or asyncio.Lock()
        async with self._restoring:
            if self._registry is not None:
                return
            snapshot = await self._latest_snapshot()
            if snapshot is not None:
                registry = AgentRegistry.restore(snapshot)
                self.restored_from_version = registry.version
            else:
                registry = AgentRegistry(bandit_config=self._args.bandit)
                if self._args.register_default_agents:
                    for spec in self._default_agents:
                        if agent_shard(spec["name"], self.shards) == self.shard:
                            registry.register(Agent.model_validate(spec))
            # refuse agents whose specialization does not fit the model (one would break
            # every route)
            registry.embedding_dim = serving_model(
                self._args.agent_model_path, "agent"
            ).embedding.dim
            self._registry = registry

    async def _latest_snapshot(self) -> dict[str, Any] | None:
        """This shard's latest persisted snapshot; with shards and none yet, the unsharded
        registry's (its agents of this shard move here with their metrics and posteriors)."""
        if self.shards == 1:
            return await self.history.latest_agent_snapshot.remote()
        snapshot = await self.history.latest_agent_snapshot.remote(self.shard)
        if snapshot is None:
            unsharded = await self.history.latest_agent_snapshot.remote(None, True)
            if unsharded is not None:
                snapshot = restrict_snapshot(unsharded, self.shard, self.shards)
        return snapshot

    def _snapshot_to_persist(self) -> dict[str, Any]:
        snapshot = self.registry.snapshot()
        return snapshot if self.shards == 1 else {"shard": self.shard, **snapshot}

    def _peer(self, base: str, shard: int) -> Any:
        name = shard_name(base, shard)
        if name not in self._peers:
            self._peers[name] = ray.get_actor(name, namespace=self._args.namespace)
        return self._peers[name]

    @property
    def registry(self) -> AgentRegistry:
        assert self._registry is not None, "await self._ready() first"
        return self._registry

    def _ensure_persister(self) -> None:
        if self._persister is None:
            self._persister = asyncio.get_running_loop().create_task(self._persist_loop())

    async def _persist_loop(self) -> None:
        await self._ready()
        while True:
            if self.registry.version != self._persisted_version:
                version = self.registry.version
                await self.history.record_agent_snapshot.remote(self._snapshot_to_persist())
                self._persisted_version = version
            await asyncio.sleep(0.5)

    async def persist_now(self) -> int:
        await self._ready()
        await self.history.record_agent_snapshot.remote(self._snapshot_to_persist())
        self._persisted_version = self.registry.version
        return self._persisted_version

    # -- state for replicas ---------------------------------------------------------------------
    async def snapshot_if_newer(self, version: int) -> dict[str, Any] | None:
        self._ensure_persister()
        await self._ready()
        return None if version == self.registry.version else self.registry.snapshot()

    async def remember_decisions(self, entries: list[LedgerEntry | LedgerBlock]) -> None:
        self.ledger.remember_entries(entries)
        for request_id in [r for r in self._waiters if r in self.ledger]:
            self._wake(request_id)  # feedback that came before its decision

    def _wake(self, request_id: str) -> None:
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None:
            waiter.set()

    async def record_feedback(
        self,
        request_id: str,
        agent: str | None,
        success: bool | None,
        latency_ms: float | None,
        quality: float | None,
        cost_usd: float | None,
    ) -> dict[str, Any]:
        """One report (`record_feedback_many` of one)."""
        item = (request_id, agent, success, latency_ms, quality, cost_usd)
        return (await self.record_feedback_many([item]))[0]

    async def _settle(
        self,
        learner: ShardLearner,
        request_id: str,
        agent: str | None,
        success: bool | None,
        latency_ms: float | None,
        quality: float | None,
        cost_usd: float | None,
    ) -> dict[str, Any]:
        """Validate against the ledger (waiting briefly for a decision, or a gateway answer,
        still on its way from a replica), then learn (here, or queued for the agent's shard)."""
        await self._ready()
        self._ensure_persister()
        if not self.ledger.ready_for_feedback(request_id) and self.feedback_wait_s > 0:
            deadline = time.monotonic() + self.feedback_wait_s
            while not self.ledger.ready_for_feedback(request_id):
                event = self._waiters.setdefault(request_id, asyncio.Event())
                try:
                    await asyncio.wait_for(event.wait(), deadline - time.monotonic())
                except TimeoutError:
                    self._waiters.pop(request_id, None)
                    break
        try:
            settled = self.ledger.settle(
                request_id, agent, learner, success, latency_ms, quality, cost_usd
            )
            return {"accepted": True, **settled._asdict()}
        except FeedbackError as exc:
            return {"accepted": False, **exc.to_dict()}
        except TinyDancerError as exc:
            return {"accepted": False, "reason": "invalid", **exc.to_dict()}

    async def record_feedback_many(self, items: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """A replica's coalesced `/v1/feedback` reports (`record_feedback`'s arguments each),
        all of this ledger shard's requests: validated and learned one by one, concurrently
        (one may wait for its decision); what other shards' agents learnt goes to each such
        shard in one call, then the accepted agent-mode outcomes to the agents' breaker
        shards, one call each, in order."""
        await self._ready()
        learner = ShardLearner(self.registry, self.shard, self.shards)
        results = await asyncio.gather(*(self._settle(learner, *item) for item in items))
        await asyncio.gather(
            *(
                self._peer(REGISTRY, owner).record_forwarded.remote(forwarded)
                for owner, forwarded in learner.take().items()
            )
        )
        events = [
            (result["agent"], bool(item[2]), item[0])
            for item, result in zip(items, results, strict=True)
            if result.get("accepted") and result.get("mode") == "agent"
        ]
        by_shard: dict[int, list[tuple[str, bool, str]]] = {}
        for event in events:
            by_shard.setdefault(agent_shard(event[0], self.shards), []).append(event)
        await asyncio.gather(
            *(self._peer(BREAKER, k).record_events.remote(part) for k, part in by_shard.items())
        )
        return list(results)

    async def record_forwarded(
        self, items: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
    ) -> int:
        """Outcomes of this shard's agents, accepted by another shard's ledger (in its order)."""
        await self._ready()
        self._ensure_persister()
        return apply_forwarded(self.registry, items)

    async def record_gateway(
        self, attempts: AttemptBlock | list[AttemptOutcome], answers: list[Answer]
    ) -> int:
        """A replica's gateway attempts (validated there, in order) teach the registry in
        bulk (vectorised, as one by one); finished answers await their quality report in
        the shared ledger. Returns the registry's version after the block (the order in
        which blocks from several replicas were applied)."""
        await self._ready()
        self._ensure_persister()
        teach_registry_block(self.registry, attempts)
        for answer in answers:
            try:
                self.ledger.finish(answer)
            except FeedbackError as exc:  # aged out of the ledger: its quality cannot come
                log.warning("answer %s not kept for feedback: %s", answer.request_id, exc)
            self._wake(answer.request_id)
        return self.registry.version

    # -- agent administration --------------------------------------------------------------------
    async def call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run a registry method; errors come back as data (the HTTP layer maps them to 4xx)."""
        await self._ready()
        self._ensure_persister()
        allowed = {"register", "update", "remove", "set_active", "get", "list", "stats"}
        if method not in allowed:
            return {
                "ok": False,
                "error": "InvalidRequestError",
                "message": f"unknown method {method!r}",
            }
        try:
            if method == "register":
                result: Any = self.registry.register(Agent.model_validate(args[0]))
            else:
                result = getattr(self.registry, method)(*args, **kwargs)
        except TinyDancerError as exc:
            return {"ok": False, **exc.to_dict()}
        if isinstance(result, Agent):
            result = result.public()
        elif isinstance(result, list):
            result = [a.public() for a in result]
        return {"ok": True, "result": result}

    async def set_model(self, mode: str, path: str, version: str) -> dict[str, Any]:
        self.model[mode] = {"path": path, "version": version}
        return self.model

    async def desired_models(self) -> dict[str, Any]:
        return self.model

    async def report_metrics(
        self, replica: str, samples: list[Any], model_versions: dict[str, str]
    ) -> None:
        self._replica_samples[replica] = samples
        self._replica_models[replica] = model_versions
        self._replica_seen[replica] = time.monotonic()

    async def metrics_view(self) -> dict[str, Any]:
        """Replicas silent for `REPLICA_GONE_S` are gone: their gauges and model versions
        leave `/metrics`, their counters stay in the sums (which never go down)."""
        await self._ready()
        samples, models = without_gone_replicas(
            self._replica_samples, self._replica_models, self._replica_seen, time.monotonic()
        )
        return {
            "samples": samples,
            "model_versions": models,
            "bandit_updates": self.registry.bandit_updates,
            "version": self.registry.version,
        }

    async def status(self) -> dict[str, Any]:
        await self._ready()
        return {
            "version": self.registry.version,
            "agents": len(self.registry),
            "bandit_updates": self.registry.bandit_updates,
            "open_decisions": len(self.ledger),
            "refused_feedback": self.ledger.refused,
            "restored_from_version": self.restored_from_version,
            "models": self.model,
        }


def get_or_create(
    args: AppArgs, default_agents: list[dict[str, Any]]
) -> tuple[list[Any], list[Any], Any]:
    """The app's named actors, created on first use (safe to call from every replica): the
    registry shards, the breaker shards (one of each by default) and the history actor."""
    common = {
        "namespace": args.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "num_cpus": args.actor_num_cpus,
    }
    history = HistoryStoreActor.options(name=HISTORY, **common).remote(args)  # type: ignore[attr-defined]
    registries = [
        AgentRegistryActor.options(name=shard_name(REGISTRY, k), **common).remote(  # type: ignore[attr-defined]
            args, history, default_agents, k
        )
        for k in range(args.state_shards)
    ]
    breakers = [
        CircuitBreakerActor.options(name=shard_name(BREAKER, k), **common).remote(  # type: ignore[attr-defined]
            history, args.breaker
        )
        for k in range(args.state_shards)
    ]
    return registries, breakers, history
