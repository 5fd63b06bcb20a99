"""What one router replica holds: engine routers on local snapshots, and the outboxes that
carry decisions, outcomes and ledger entries to the actors off the request path."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import ray

from cluster.config import AppArgs
from cluster.feedback import FeedbackCoalescer
from cluster.http_models import CandidateRouteBody, FeedbackBody, candidate_routing_request
from cluster.metrics import ReplicaMetrics
from cluster.outboxes import ForwardingLedger, GatewayOutbox, RoutedDecisions, ship_learning
from cluster.shards import StateShards
from tinydancer.agents.breaker import BreakerView
from tinydancer.agents.columnar import ColumnarDecisions
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.text import embed_each, with_tokens
from tinydancer.agents.types import AgentRequest
from tinydancer.candidates.config import RouterConfig
from tinydancer.candidates.router import Router
from tinydancer.errors import InvalidRequestError, TinyDancerError
from tinydancer.gateway.gateway import Gateway
from tinydancer.history.records import (
    AttemptColumns,
    DecisionColumns,
    OutcomeColumns,
)
from tinydancer.model.weights import load_model
from tinydancer.runtime import use_compilation_cache
from tinydancer.text.encoder import LazyEncoder, TextEncoderConfig

__all__ = ["ReplicaState"]

log = logging.getLogger("tinydancer.replica")
_MAX_PENDING_RECORDS = 500_000
WARM_CANDIDATES = 1024  # candidate-mode shapes compiled in the background at start


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
        use_compilation_cache()  # before the first compile (the encoder's thread races the routers')
        # one handle each, or a list per kind with state shards
        self.shards = StateShards(registry_actor, breaker_actor)
        self.registry_actor, self.history_actor = self.shards.registry, history_actor
        # the text encoder runs here, in the replica (no extra hop); loaded in the background
        # at start when its weights are installed, else text requests answer 503
        self.encoder = LazyEncoder(TextEncoderConfig(cache_size=args.encoder_cache_size))
        self._encoder_counts = (0, 0)
        registry_snapshot, breaker_snapshot = self.shards.first_snapshots()
        self.breaker_view = BreakerView(breaker_snapshot)
        self.agent_router = AgentRouter(
            AgentRegistry.restore(registry_snapshot),
            self.breaker_view,
            AgentRouterConfig(
                model_path=args.agent_model_path,
                seed=args.seed + rank,
                fallback_agent=args.fallback_agent,
                warm=False,  # one shape now, the rest in the background (below)
            ),
            encoder=self.encoder,
        )
        self.agent_router.warm(batches=(1,), steps=())
        self.ledger = ForwardingLedger()
        self.agent_router.ledger = self.ledger
        self.candidate_router = Router(
            RouterConfig(model_path=args.candidate_model_path, warm_up_to_candidates=0),
            encoder=self.encoder,
        )
        # The replica serves as soon as the smallest shapes are compiled; the text encoder
        # loads and every other shape compiles in the background (a request of a shape
        # not compiled yet compiles it itself). /healthz reports both.
        self.warm = "compiling"
        threading.Thread(target=self._warm_in_background, daemon=True, name="warm").start()
        self.routed = RoutedDecisions(replica)  # routes' and the gateway's; rows built at push
        self.gateway_outbox = GatewayOutbox(replica, self.routed)
        self.gateway = Gateway(
            self.agent_router, self.encoder, args.gateway, sink=self.gateway_outbox
        )
        self.registry_version = int(registry_snapshot["version"])
        self.snapshot_at = time.time()
        self.decisions: list[DecisionColumns] = []  # rows a failed push keeps for the next
        self.outcomes = OutcomeColumns()
        self.feedback_calls = FeedbackCoalescer(self._send_feedback)
        self.attempts = AttemptColumns()
        self.history_dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._pushing = asyncio.Lock()  # one push at a time: drain() waits for the loop's
        self._last_metrics = 0.0

    def _warm_in_background(self) -> None:
        self.encoder.preload()  # first: the text requests' latency depends on it
        try:
            self._warm_all()
        except Exception as exc:  # a shape that fails to compile fails only its own requests
            log.warning("replica %s: warming the routers failed: %r", self.replica, exc)
            self.warm = f"failed: {type(exc).__name__}"
            return
        self.warm = "ready"

    def _warm_all(self, mode: str | None = None) -> None:
        if mode in (None, "agent"):
            self.agent_router.warm()
        if mode in (None, "candidate"):
            self.candidate_router.warm(WARM_CANDIDATES)

    def _reload(self, mode: str, path: Path) -> None:
        """Load a model file into one router and compile its shapes (in a worker thread)."""
        (self.agent_router if mode == "agent" else self.candidate_router).reload(path)
        self._warm_all(mode)

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
            except (ray.exceptions.RayError, TinyDancerError) as exc:  # an actor restarting
                log.warning("replica %s background step failed: %s", self.replica, exc)
            except Exception:  # never end the loop: the outboxes would stop shipping for good
                log.exception("replica %s background step failed unexpectedly", self.replica)
            await asyncio.sleep(self.args.snapshot_interval_s)

    async def refresh(self) -> None:
        registry_snapshot, breaker_snapshot = await self.shards.refresh()
        registry = self.agent_router.registry
        if registry_snapshot is not None:
            registry = AgentRegistry.restore(registry_snapshot)
            self.registry_version = int(registry_snapshot["version"])
        view = self.breaker_view if breaker_snapshot is None else BreakerView(breaker_snapshot)
        for name in view.half_open():  # lease this replica's probe permits ahead of time
            if view.permits.get(name, 0) == 0:
                view.permits[name] = await self.shards.lease(name, 1)
        if registry_snapshot is not None or view is not self.breaker_view or view.half_open():
            self.breaker_view = view
            self.agent_router.use_state(registry, view)
        self.snapshot_at = time.time()
        self.metrics.snapshot_staleness.labels(self.replica).set(0.0)

    async def ship_learning(self) -> None:
        """Ledger entries, then gateway attempts and answers (also before client feedback)."""
        rows = await ship_learning(
            self.ledger, self.gateway_outbox, self.shards, self.args.gateway.max_retry_after_s
        )
        # after the await: a push meanwhile may have sent and replaced the buffer
        self.attempts.extend(rows)

    def pending_records(self) -> int:
        return len(self.routed) + sum(len(b) for b in self.decisions)

    async def push(self) -> None:
        async with self._pushing:
            await self._push()

    async def _push(self) -> None:
        await self.ship_learning()
        # The rows are built in a worker thread (a 10k-row block's quantization and columns
        # take ~10 ms, most of it numpy, which lets go of the GIL): the event loop goes on
        # receiving and routing meanwhile.
        pending = self.routed.detach()
        if len(pending):
            self.decisions.extend(await asyncio.to_thread(pending.take))
        decisions, self.decisions = self.decisions, []
        outcomes, self.outcomes = self.outcomes, OutcomeColumns()
        attempts, self.attempts = self.attempts, AttemptColumns()
        if not decisions and not len(outcomes) and not len(attempts):
            return
        decisions = [batch for batch in decisions if len(batch)]
        try:
            await self.history_actor.append.remote(
                decisions,  # as built: merging columnar batches would make per-row objects
                outcomes if len(outcomes) else None,
                attempts if len(attempts) else None,
            )
        except ray.exceptions.RayError:
            self.decisions[:0] = decisions  # keep for the next try, within a bound
            self.outcomes.extend(outcomes)
            self.attempts.extend(attempts)
            while self.decisions and self.pending_records() > _MAX_PENDING_RECORDS:
                self.history_dropped += len(self.decisions.pop(0))  # the oldest first
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

    def _count_encoder(self) -> None:
        stats = self.encoder.loaded.stats if self.encoder.loaded is not None else None
        if stats is not None:
            hits, misses = self._encoder_counts
            self.metrics.encoder_cache.labels("hit").inc(stats.cache_hits - hits)
            self.metrics.encoder_cache.labels("miss").inc(stats.cache_misses - misses)
            self._encoder_counts = (stats.cache_hits, stats.cache_misses)

    async def report_metrics(self) -> None:
        self._last_metrics = time.monotonic()
        self._count_encoder()
        self.metrics.snapshot_staleness.labels(self.replica).set(time.time() - self.snapshot_at)
        self.metrics.history_pending.labels(self.replica).set(self.pending_records())
        await self.registry_actor.report_metrics.remote(
            self.replica, self.metrics.samples(), self.model_versions()
        )

    async def follow_models(self) -> None:
        desired = await self.registry_actor.desired_models.remote()
        for mode, target in desired.items():
            router = self.agent_router if mode == "agent" else self.candidate_router
            if router.model_version != target["version"]:
                try:
                    await asyncio.to_thread(self._reload, mode, Path(target["path"]))
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
    def route_texts(self, texts: list[str], template: AgentRequest) -> dict[str, Any]:
        """POST /v1/route/batch with `texts`: one decision per prompt, in order."""
        if len(texts) > self.args.max_batch_texts:
            raise InvalidRequestError(
                "texts", f"{len(texts)} texts", f"at most {self.args.max_batch_texts} per call"
            )
        results = self.route_many([dataclasses.replace(template, text=t) for t in texts])
        for result in results:
            if isinstance(result, Exception):
                raise result
        return {"decisions": results}

    def route_many(self, requests: list[AgentRequest]) -> list[Any]:
        """Route a batch; a bad request gets its own error, the others are still routed."""
        limit = self.agent_router.config.max_messages
        items, tokens = embed_each(requests, self.encoder, limit)  # errors in place
        valid = [r for r in items if not isinstance(r, Exception)]
        routed_valid = self.agent_router.route_each(valid)
        answers = iter(routed_valid)
        decisions = [r if isinstance(r, Exception) else next(answers) for r in items]
        requests = items  # embedded: what the history records
        routed = [
            (r, d) for r, d in zip(requests, decisions, strict=True) if not isinstance(d, Exception)
        ]
        if routed:
            self.routed.add([r for r, _ in routed], [d for _, d in routed])
        for d in decisions:
            self.metrics.routes.labels(
                getattr(d, "agent", "none"),
                type(d).__name__ if isinstance(d, Exception) else "routed",
            ).inc()
        return [
            d if isinstance(d, Exception) else with_tokens([d], [n])[0].to_dict()
            for d, n in zip(decisions, tokens, strict=True)
        ]

    def route_block(self, block: np.ndarray, template: AgentRequest) -> ColumnarDecisions:
        columns = self.agent_router.route_embeddings(block, template)
        self.routed.add_block(block, columns, template)
        self.metrics.routes.labels("batch", "routed").inc(len(columns))
        return columns

    def route_candidates(self, body: CandidateRouteBody) -> dict[str, Any]:
        dim = self.candidate_router.model.embedding.dim
        request = candidate_routing_request(body, dim, self.encoder)
        query = request.query_embedding
        response = self.candidate_router.route(request)
        self.ledger.remember(
            response.request_id,
            [str(i) for i in response.candidate_ids.tolist()],
            (),
            mode="candidate",
        )
        self.routed.add_candidates(query, response)  # its history row is built at the push
        return response.to_dict()

    async def _send_feedback(self, items: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """One coalesced call: the registry actor validates and learns each report, and
        passes the accepted ones' outcomes on to the breaker itself."""
        await self.ship_learning()  # our own recent decisions and answers reach the actors first
        return await self.shards.feedback(items)  # one call per ledger shard the ids name

    async def feedback(self, body: FeedbackBody) -> dict[str, Any]:
        result = await self.feedback_calls.submit(
            (
                body.request_id,
                body.agent,
                body.success,
                body.latency_ms,
                body.quality,
                body.cost_usd,
            )
        )
        accepted = bool(result.get("accepted"))
        self.metrics.feedback.labels(
            (result.get("agent") or "-") if accepted else "-",
            "accepted" if accepted else result.get("reason", "refused"),
        ).inc()
        if accepted:
            gateway = result["mode"] == "gateway"  # its attempts carried success and latency
            self.outcomes.add(
                body.request_id,
                result["agent"],
                True if gateway else bool(body.success),
                result["latency_ms"] if gateway else body.latency_ms,
                body.quality,
                result["cost_usd"] if gateway else body.cost_usd,
                stitched=bool(result["stitched"]) if gateway else None,
            )
        return result

    async def publish_model(self, mode: str, path: str) -> dict[str, Any]:
        """Validate a model file here, then publish it: every replica loads it within a second."""
        expected: Literal["agent", "candidate"] = "agent" if mode == "agent" else "candidate"
        model = await asyncio.to_thread(
            load_model, path, expect_mode=expected
        )  # raises ModelFileError
        await asyncio.to_thread(self._reload, mode, Path(path))
        await self.registry_actor.set_model.remote(mode, path, model.version)
        await self.history_actor.record_model.remote(model.version, mode, "loaded", path)
        return {
            "mode": mode,
            "version": model.version,
            "status": "published; replicas follow within 1 s",
        }

    async def stats(self) -> dict[str, Any]:
        (registry, breaker), history = await asyncio.gather(
            self.shards.statuses(), self.history_actor.status.remote()
        )
        return {
            "replica": self.replica,
            "models": self.model_versions(),
            "registry": registry,
            "breaker": breaker,
            "history": history,
            "replica_pending_records": self.pending_records(),
            "replica_history_dropped": self.history_dropped,
            "snapshot_age_s": time.time() - self.snapshot_at,
            # the replica process's garbage collections so far, per generation (0, 1, 2)
            "replica_gc_collections": [g["collections"] for g in gc.get_stats()],
        }

    async def metrics_view(self) -> tuple[dict[str, Any], dict[str, Any]]:
        await self.report_metrics()
        view, breaker, history = await asyncio.gather(
            self.shards.metrics_view(),
            self.shards.breaker_status(),
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
