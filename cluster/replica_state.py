"""What one router replica holds: engine routers on local snapshots, and the outboxes that
carry decisions, outcomes and ledger entries to the actors off the request path."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import ray

from cluster.config import AppArgs
from cluster.http_models import CandidateRouteBody, FeedbackBody
from cluster.metrics import ReplicaMetrics
from tinydancer.agents.breaker import BreakerView
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.ledger import DecisionLedger, LedgerEntry
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.types import AgentRequest
from tinydancer.candidates.config import RouterConfig
from tinydancer.candidates.router import Router
from tinydancer.candidates.types import Candidate, CandidateBatch, RoutingRequest
from tinydancer.errors import TinyDancerError
from tinydancer.history.records import (
    DecisionColumns,
    OutcomeColumns,
    from_agent_decisions,
    from_candidate_response,
    from_columnar,
)
from tinydancer.model.embedding import decode_base64_f32
from tinydancer.model.weights import load_model

__all__ = ["ReplicaState"]

log = logging.getLogger("tinydancer.replica")
_MAX_PENDING_RECORDS = 500_000


class ForwardingLedger(DecisionLedger):
    """The replica's ledger also queues its entries for the shared ledger in the registry actor."""

    def __init__(self) -> None:
        super().__init__(capacity=10_000)
        self.outbox: list[LedgerEntry] = []

    def remember(
        self, request_id: str, allowed: Any, qualities: Any = (), mode: str = "agent"
    ) -> None:
        super().remember(request_id, allowed, qualities, mode)
        self.outbox.append(self._open[request_id])

    def remember_entries(self, entries: Any) -> None:
        super().remember_entries(entries)
        self.outbox.extend(entries)


class ReplicaState:
    def __init__(
        self,
        args: AppArgs,
        rank: int,
        replica: str,
        registry_actor: Any,
        breaker_actor: Any,
        history_actor: Any,
        metrics: ReplicaMetrics,
    ) -> None:
        self.args, self.replica, self.metrics = args, replica, metrics
        self.registry_actor, self.breaker_actor, self.history_actor = (
            registry_actor,
            breaker_actor,
            history_actor,
        )
        registry_snapshot = ray.get(registry_actor.snapshot_if_newer.remote(-1))
        self.breaker_view = BreakerView(ray.get(breaker_actor.snapshot_if_newer.remote(-1)))
        self.agent_router = AgentRouter(
            AgentRegistry.restore(registry_snapshot),
            self.breaker_view,
            AgentRouterConfig(
                model_path=args.agent_model_path,
                seed=args.seed + rank,
                fallback_agent=args.fallback_agent,
            ),
        )
        self.ledger = ForwardingLedger()
        self.agent_router.ledger = self.ledger
        self.candidate_router = Router(RouterConfig(model_path=args.candidate_model_path))
        self.registry_version = int(registry_snapshot["version"])
        self.snapshot_at = time.time()
        self.decisions: list[DecisionColumns] = []
        self.outcomes = OutcomeColumns()
        self.history_dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._last_metrics = 0.0

    # -- background -------------------------------------------------------------------------------
    def ensure_background(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        last_push = 0.0
        while True:
            try:
                await self.refresh()
                if time.monotonic() - last_push >= self.args.history_push_interval_s:
                    await self.push()
                    last_push = time.monotonic()
                if time.monotonic() - self._last_metrics >= 1.0:
                    await self.report_metrics()
                    await self.follow_models()
            except (
                ray.exceptions.RayError,
                TinyDancerError,
            ) as exc:  # an actor restarting: try again
                log.warning("replica %s background step failed: %s", self.replica, exc)
            await asyncio.sleep(self.args.snapshot_interval_s)

    async def refresh(self) -> None:
        registry_snapshot, breaker_snapshot = await asyncio.gather(
            self.registry_actor.snapshot_if_newer.remote(self.registry_version),
            self.breaker_actor.snapshot_if_newer.remote(self.breaker_view.version),
        )
        registry = self.agent_router.registry
        if registry_snapshot is not None:
            registry = AgentRegistry.restore(registry_snapshot)
            self.registry_version = int(registry_snapshot["version"])
        view = self.breaker_view if breaker_snapshot is None else BreakerView(breaker_snapshot)
        for name in view.half_open():  # lease this replica's probe permits ahead of time
            if view.permits.get(name, 0) == 0:
                view.permits[name] = await self.breaker_actor.lease.remote(name, 1)
        if registry_snapshot is not None or view is not self.breaker_view or view.half_open():
            self.breaker_view = view
            self.agent_router.use_state(registry, view)
        self.snapshot_at = time.time()
        self.metrics.snapshot_staleness.labels(self.replica).set(0.0)

    async def push(self) -> None:
        entries, self.ledger.outbox = self.ledger.outbox, []
        if entries:
            await self.registry_actor.remember_decisions.remote(entries)
        decisions, self.decisions = self.decisions, []
        outcomes, self.outcomes = self.outcomes, OutcomeColumns()
        if not decisions and not len(outcomes):
            return
        merged = DecisionColumns()
        for batch in decisions:
            merged.extend(batch)
        try:
            await self.history_actor.append.remote(
                merged if len(merged) else None, outcomes if len(outcomes) else None
            )
        except ray.exceptions.RayError:
            self.decisions.insert(0, merged)  # keep for the next try, within a bound
            self.outcomes.extend(outcomes)
            pending = sum(len(d) for d in self.decisions)
            if pending > _MAX_PENDING_RECORDS:
                self.history_dropped += len(self.decisions[0])
                self.decisions.pop(0)
            raise
        self.metrics.history_pending.labels(self.replica).set(0)

    async def drain(self) -> None:
        """On shutdown: hand every buffered record and ledger entry to the actors."""
        for _ in range(3):
            try:
                await self.push()
                return
            except ray.exceptions.RayError:
                await asyncio.sleep(0.5)

    async def report_metrics(self) -> None:
        self._last_metrics = time.monotonic()
        self.metrics.snapshot_staleness.labels(self.replica).set(time.time() - self.snapshot_at)
        await self.registry_actor.report_metrics.remote(
            self.replica, self.metrics.samples(), self.model_versions()
        )

    async def follow_models(self) -> None:
        desired = await self.registry_actor.desired_models.remote()
        for mode, target in desired.items():
            router = self.agent_router if mode == "agent" else self.candidate_router
            if router.model_version != target["version"]:
                try:
                    await asyncio.to_thread(router.reload, Path(target["path"]))
                except TinyDancerError as exc:
                    log.error(
                        "replica %s could not load %s model %s: %s", self.replica, mode, target, exc
                    )

    def model_versions(self) -> dict[str, str]:
        return {
            "agent": self.agent_router.model_version,
            "candidate": self.candidate_router.model_version,
        }

    # -- requests ---------------------------------------------------------------------------------
    def route_many(self, requests: list[AgentRequest]) -> list[Any]:
        """Route a batch; a bad request gets its own error, the others are still routed."""
        try:
            decisions: list[Any] = self.agent_router.route_batch(requests)
        except TinyDancerError:
            decisions = []
            for request in requests:
                try:
                    decisions.append(self.agent_router.route(request))
                except TinyDancerError as exc:
                    decisions.append(exc)
        routed = [
            (r, d) for r, d in zip(requests, decisions, strict=True) if not isinstance(d, Exception)
        ]
        if routed:
            self.decisions.append(
                from_agent_decisions(
                    [r for r, _ in routed],
                    [d for _, d in routed],
                    ts=time.time(),
                    replica=self.replica,
                )
            )
        for d in decisions:
            self.metrics.routes.labels(
                getattr(d, "agent", "none"),
                type(d).__name__ if isinstance(d, Exception) else "routed",
            ).inc()
        self.metrics.history_pending.labels(self.replica).set(sum(len(b) for b in self.decisions))
        return [d if isinstance(d, Exception) else d.to_dict() for d in decisions]

    def route_block(self, block: np.ndarray, template: AgentRequest) -> dict[str, Any]:
        columns = self.agent_router.route_embeddings(block, template)
        self.decisions.append(
            from_columnar(block, columns, template, ts=time.time(), replica=self.replica)
        )
        self.metrics.routes.labels("batch", "routed").inc(len(columns))
        return columns.to_dict()

    def route_candidates(self, body: CandidateRouteBody) -> dict[str, Any]:
        dim = self.candidate_router.model.embedding.dim
        query = (
            np.asarray(body.query_embedding, np.float32)
            if body.query_embedding is not None
            else decode_base64_f32(body.query_embedding_b64 or "", "query_embedding_b64", dim)[0]
        )
        if body.candidates is not None:
            candidates: Any = [
                Candidate(
                    c.id, c.embedding, c.created_at, c.access_count, c.success_rate, c.metadata
                )
                for c in body.candidates
            ]
        else:
            cols = body.columns
            assert cols is not None
            n = len(cols.ids)

            def column(values: Any, default: float) -> np.ndarray:
                return np.full(n, default) if values is None else np.asarray(values, np.float64)

            candidates = CandidateBatch(
                np.asarray(cols.ids, dtype=object),
                decode_base64_f32(cols.embeddings_b64, "columns.embeddings_b64", dim),
                np.asarray(cols.created_at, np.float64),
                column(cols.access_count, 0.0),
                column(cols.success_rate, 0.0).astype(np.float32),
                None
                if cols.metadata_overlap is None
                else np.asarray(cols.metadata_overlap, np.float32),
            )
        response = self.candidate_router.route(
            RoutingRequest(query, candidates, metadata=body.metadata)
        )
        self.ledger.remember(
            response.request_id,
            [str(i) for i in response.candidate_ids.tolist()],
            (),
            mode="candidate",
        )
        self.decisions.append(
            from_candidate_response(query, response, ts=time.time(), replica=self.replica)
        )
        return response.to_dict()

    async def feedback(self, body: FeedbackBody) -> dict[str, Any]:
        self.ledger.outbox, entries = [], self.ledger.outbox
        if entries:  # our own recent decisions must reach the shared ledger first
            await self.registry_actor.remember_decisions.remote(entries)
        result = await self.registry_actor.record_feedback.remote(
            body.request_id, body.agent, body.success, body.latency_ms, body.quality, body.cost_usd
        )
        self.metrics.feedback.labels(
            body.agent if result.get("accepted") else "-",
            "accepted" if result.get("accepted") else result.get("reason", "refused"),
        ).inc()
        if result.get("accepted"):
            if result.get("mode") == "agent":
                await self.breaker_actor.record.remote(body.agent, body.success, body.request_id)
            self.outcomes.add(
                body.request_id,
                body.agent,
                body.success,
                body.latency_ms,
                body.quality,
                body.cost_usd,
            )
        return result

    async def publish_model(self, mode: str, path: str) -> dict[str, Any]:
        """Validate a model file here, then publish it: every replica loads it within a second."""
        expected: Literal["agent", "candidate"] = "agent" if mode == "agent" else "candidate"
        model = await asyncio.to_thread(
            load_model, path, expect_mode=expected
        )  # raises ModelFileError
        router = self.agent_router if mode == "agent" else self.candidate_router
        await asyncio.to_thread(router.reload, Path(path))
        await self.registry_actor.set_model.remote(mode, path, model.version)
        await self.history_actor.record_model.remote(model.version, mode, "loaded", path)
        return {
            "mode": mode,
            "version": model.version,
            "status": "published; replicas follow within 1 s",
        }

    async def stats(self) -> dict[str, Any]:
        registry, breaker, history = await asyncio.gather(
            self.registry_actor.status.remote(),
            self.breaker_actor.status.remote(),
            self.history_actor.status.remote(),
        )
        return {
            "replica": self.replica,
            "models": self.model_versions(),
            "registry": registry,
            "breaker": breaker,
            "history": history,
            "replica_pending_records": sum(len(b) for b in self.decisions),
            "replica_history_dropped": self.history_dropped,
            "snapshot_age_s": time.time() - self.snapshot_at,
        }

    async def metrics_view(self) -> tuple[dict[str, Any], dict[str, Any]]:
        await self.report_metrics()
        view, breaker, history = await asyncio.gather(
            self.registry_actor.metrics_view.remote(),
            self.breaker_actor.status.remote(),
            self.history_actor.status.remote(),
        )
        cluster = {
            "breaker_states": breaker["states"],
            "bandit_updates": view["bandit_updates"],
            "history_buffer": history["buffered_rows"],
            "history_flush_s": history["last_flush_s"],
            "history_decisions": history["written_total"]["decisions"],
            "registry_version": view["version"],
            "model_versions": view["model_versions"],
        }
        return view["samples"], cluster
