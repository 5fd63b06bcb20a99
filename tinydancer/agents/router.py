"""Agent-mode router: which agent should serve this request?

    registry = AgentRegistry(known_to_model=model_agents)
    router = AgentRouter(registry, CircuitBreaker())
    decision = router.route(AgentRequest(embedding=e, optimize_for="balanced"))
    router.record_outcome(decision.request_id, decision.agent, success=True, latency_ms=640, quality=0.9)

The router reads an immutable snapshot of the registry and breaker (rebuilt when their
versions change, at most every `snapshot_max_age_s` seconds), scores every agent for a
batch of requests in one jitted call (`agents.kernel.score_agents`) and only loops in
Python over requests, never over agents, to build decisions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tinydancer._ids import new_request_id
from tinydancer.agents import columnar
from tinydancer.agents.batch import decide_rows, prepare_inputs
from tinydancer.agents.breaker import BreakerState, CircuitBreaker, RoutingBreaker
from tinydancer.agents.columnar import ColumnarDecisions, columnar_decisions, decided_block
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.decisions import build_decision, model_qualities, no_eligible
from tinydancer.agents.draws import ThompsonDraws
from tinydancer.agents.kernel import score_agents
from tinydancer.agents.ledger import DecisionLedger
from tinydancer.agents.lone import LoneInputs, is_lone, lone_decision
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.requests import REQ
from tinydancer.agents.served import ServedModel, served_model
from tinydancer.agents.snapshot import OUT, RoutingSnapshot, build_snapshot
from tinydancer.agents.text import Encoder, with_embeddings, with_tokens
from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.agents.warm import WARM_BATCHES, WARM_STEPS, warm_kernel
from tinydancer.errors import ModelFileError, NoEligibleAgentError, TinyDancerError
from tinydancer.model.weights import RouterModel, serving_model
from tinydancer.runtime import use_sync_dispatch
from tinydancer.text.encoder import LazyEncoder

__all__ = ["EACH_ALONE_MAX", "AgentRouter", "AgentRouterConfig", "ColumnarDecisions"]

# `route_each` routes up to this many requests one by one: the lone path is cheaper for a
# few requests than forming a batch (the same decisions either way).
EACH_ALONE_MAX = 4


class AgentRouter:
    """Routes agent requests; learns from `record_outcome`; respects circuit breakers."""

    def __init__(
        self,
        registry: AgentRegistry,
        breaker: RoutingBreaker | None = None,
        config: AgentRouterConfig | None = None,
        *,
        model: RouterModel | None = None,
        clock: Any = time.time,
        encoder: Encoder | None = None,  # text / chat requests; default: the shared one, lazily
    ) -> None:
        self.config = config or AgentRouterConfig()
        if self.config.sync_dispatch:
            use_sync_dispatch()
        self.registry = registry
        self.breaker: RoutingBreaker = (
            breaker if breaker is not None else CircuitBreaker(clock=clock)
        )
        self._clock = clock
        self.encoder: Encoder = encoder if encoder is not None else LazyEncoder()
        self._lock = threading.Lock()
        self.draws = ThompsonDraws(self.config.seed)
        self._lone = LoneInputs()
        self.ledger = DecisionLedger(self.config.decision_cache_size)
        self._permits: dict[str, int] = {}
        self._model = served_model(
            serving_model(model if model is not None else self.config.model_path, "agent")
        )
        self.registry.set_known_to_model(self._model.heads)
        self.registry.embedding_dim = self._model.dim
        self._snapshot: RoutingSnapshot | None = None
        if self.config.warm:
            self.warm()

    # -- model -----------------------------------------------------------------------------
    @property
    def model(self) -> RouterModel:
        return self._model.model

    @property
    def model_version(self) -> str:
        return self._model.model.version

    def reload(self, source: str | Path | RouterModel) -> str:
        model = serving_model(source, "agent")
        if model.embedding != self._model.model.embedding:
            raise ModelFileError(
                model.version,
                "embedding model differs from the serving model",
                expected=str(self._model.model.embedding),
                found=str(model.embedding),
            )
        prepared = served_model(model)
        with self._lock:
            self._model = prepared
            self.registry.set_known_to_model(prepared.heads)
            self._snapshot = None
        if self.config.warm:
            self.warm()
        return model.version

    def warm(
        self, batches: Sequence[int] = WARM_BATCHES, steps: Sequence[int] = WARM_STEPS
    ) -> None:
        """Compile the kernel for these batch sizes and conversation lengths (see
        `tinydancer.agents.warm`); at construction with `config.warm`."""
        warm_kernel(self, batches, steps)

    # -- snapshot --------------------------------------------------------------------------
    def snapshot(self) -> RoutingSnapshot:
        """The current routing snapshot (rebuilt when the registry or breaker changed)."""
        current = self._snapshot
        key = (self.registry.version, self.breaker.version)
        now = self._clock()
        if (
            current is not None
            and now < current.expires_at
            and (current.key == key or now - current.taken_at < self.config.snapshot_max_age_s)
        ):
            return current
        snap = build_snapshot(
            self.registry,
            self.breaker,
            self._model.heads,
            self._model.dim,
            self.config.default_tokens,
            self._permit_available,
            now,
        )
        self._snapshot = snap
        return snap

    def _permit_available(self, name: str) -> bool:
        if self._permits.get(name, 0) > 0:
            return True
        granted = self.breaker.lease(name, 1)
        self._permits[name] = self._permits.get(name, 0) + granted
        return granted > 0

    # -- routing ---------------------------------------------------------------------------
    def route(self, request: AgentRequest) -> AgentDecision:
        return self.route_batch([request])[0]

    def _route_lone(self, request: AgentRequest, remember: bool) -> AgentDecision | None:
        """One embedding request by the lone path (`agents.lone`); None when the general
        rules apply (no agent registered, or a probe pending)."""
        start = time.perf_counter_ns()
        model = self._model
        with self._lock:
            snap = self.snapshot()
            if not snap.names or snap.probes:
                return None
            dim = model.dim
            inputs = self._lone.fill(request, snap, dim)
            inputs[0, dim + REQ["offset"]] = self.draws.offsets(1, self._draws())[0]
            out = self._score_inputs(model, snap, inputs)[0]
            elapsed = (time.perf_counter_ns() - start) / 1e3
            made = lone_decision(
                request,
                out,
                snap,
                self._lone.latency,
                registry=self.registry,
                model_version=model.model.version,
                elapsed_us=elapsed,
            )
            if made is None:  # nothing eligible: the fallback rules
                return self._decide(request, out, snap, elapsed, remember)
            decision, allowed, qualities = made
            if remember:
                self.ledger.remember(decision.request_id, allowed, qualities)
                self.breaker.routed(decision.request_id, decision.agent)
            return decision

    def route_batch(
        self, requests: Sequence[AgentRequest], *, remember: bool = True
    ) -> list[AgentDecision]:
        """Route many requests in one jitted call (one decision per request, in order)."""
        if not requests:
            return []
        if len(requests) == 1 and is_lone(requests[0]):  # `route`, a replica's lone request
            lone = self._route_lone(requests[0], remember)
            if lone is not None:
                return [lone]
        start = time.perf_counter_ns()
        requests, tokens = with_embeddings(requests, self.encoder, self.config.max_messages)
        model = self._model
        with self._lock:
            snap = self.snapshot()
            if not snap.names:
                raise NoEligibleAgentError({"registry": ["(no agents registered)"]})
            messages, rows, eligible = prepare_inputs(
                requests, snap, model.dim, self.config.max_messages
            )
            out = self._score(model, snap, messages, rows, eligible)
            elapsed = (time.perf_counter_ns() - start) / 1e3
            fast = (
                None
                if len(requests) == 1
                else decide_rows(
                    requests,
                    out,
                    snap,
                    registry=self.registry,
                    model_version=model.model.version,
                    elapsed_us=elapsed,
                )
            )
            if fast is not None:
                decisions = fast
                if remember:
                    self.ledger.remember_block(
                        decided_block([d.request_id for d in decisions], out[: len(requests)], snap)
                    )
                    for decision in decisions:
                        self.breaker.routed(decision.request_id, decision.agent)
            else:  # one request, a probe or a fallback: request by request, with the router's state
                decisions = [
                    self._decide(request, out[i], snap, elapsed, remember)
                    for i, request in enumerate(requests)
                ]
        return with_tokens(decisions, tokens)

    def route_each(self, requests: Sequence[AgentRequest]) -> list[AgentDecision | TinyDancerError]:
        """One decision per request, in order, a request that cannot be routed getting its
        own error in its place (a replica's micro-batch: the others are still routed).

        More than `EACH_ALONE_MAX` requests go as one `route_batch`; fewer, or a batch that
        fails as a whole, request by request.
        """
        if len(requests) > EACH_ALONE_MAX:
            try:
                return list(self.route_batch(requests))
            except TinyDancerError:
                pass  # each request then gets its own decision or error
        decided: list[AgentDecision | TinyDancerError] = []
        for request in requests:
            try:
                decided.append(self.route(request))
            except TinyDancerError as exc:
                decided.append(exc)
        return decided

    def _score(
        self,
        model: ServedModel,
        snap: RoutingSnapshot,
        messages: np.ndarray,
        rows: np.ndarray,
        eligible: np.ndarray,
        *,
        seeded: bool = True,
    ) -> np.ndarray:
        """The one jitted call: every agent for every request. `seeded`: each row's draw
        offset comes from the seeded stream (else it stays as given: warm-up)."""
        if seeded:
            rows[:, REQ["offset"]] = self.draws.offsets(rows.shape[0], self._draws())
        inputs = np.concatenate([messages.reshape(messages.shape[0], -1), rows, eligible], axis=1)
        return self._score_inputs(model, snap, inputs)

    def _draws(self) -> int:
        return self.registry.bandit_config.propensity_samples + 1  # the deciding draw + the rest

    def _score_inputs(
        self, model: ServedModel, snap: RoutingSnapshot, inputs: np.ndarray
    ) -> np.ndarray:
        """The jitted call on the kernel's one host array (see `score_agents`)."""
        return np.asarray(
            score_agents(
                *model.weights,
                model.table,
                snap.agents,
                snap.specialization,
                inputs,
                self.draws.pool(len(snap.base_eligible)),
                layout=model.layout,
                draws=self._draws(),
                explore=self.config.explore,
            )
        )

    def route_embeddings(
        self,
        embeddings: np.ndarray,
        template: AgentRequest | None = None,
        *,
        remember: bool = True,
        chunk: int = 1024,
    ) -> ColumnarDecisions:
        """Route N single-message requests sharing one objective and constraints, column-wise.

        The fast path for bulk traffic: no per-request Python objects; rows with no
        eligible agent get agent index -1. Each row's embedding is checked (finite,
        non-zero).
        """
        template = template or AgentRequest()
        model = self._model
        block = columnar.checked_embeddings(embeddings, model.dim)
        with self._lock:
            snap = self.snapshot()
            if not snap.names:
                raise NoEligibleAgentError({"registry": ["(no agents registered)"]})
            out = columnar.score_in_chunks(
                block, template, snap, lambda *inputs: self._score(model, snap, *inputs), chunk
            )
        result, decided = columnar_decisions(out, snap, model.model.version, remember=remember)
        if decided is not None:
            self.ledger.remember_block(decided)
        return result

    def _decide(
        self,
        request: AgentRequest,
        out: np.ndarray,
        snap: RoutingSnapshot,
        elapsed_us: float,
        remember: bool,
    ) -> AgentDecision:
        utility = out[OUT["utility"]]
        order = np.argsort(-utility, kind="stable")
        # A half-open circuit is tested with real requests: while this router holds a
        # probe permit, the next request the agent is eligible for goes to it (the usual
        # choice becomes the first alternative). The budget bounds what probes can cost.
        probe = next((i for i in snap.probes if self._permits.get(snap.names[i], 0) > 0), None)
        if probe is not None and np.isfinite(utility[probe]):
            order = np.concatenate(([probe], order[order != probe]))
        else:
            probe = None
        best = int(order[0])
        fallback = False
        if not np.isfinite(utility[best]):
            best = no_eligible(request, out, snap, self.registry, self.config.fallback_agent)
            fallback = True
        name = snap.names[best]
        if snap.states.get(name) is BreakerState.HALF_OPEN and not fallback:
            self._permits[name] = max(0, self._permits.get(name, 0) - 1)
            if self._permits[name] == 0:
                self._snapshot = None  # permits used up: rebuild before the next request
        decision = build_decision(
            request,
            out,
            snap,
            order,
            best,
            request_id=request.request_id or new_request_id(),
            registry=self.registry,
            model_version=self._model.model.version,
            fallback=fallback,
            probe=probe is not None,
            elapsed_us=elapsed_us,
        )
        if remember:
            ranked = [r[0] for r in decision.ranked]
            self.ledger.remember(decision.request_id, ranked, model_qualities(out, snap, ranked))
            self.breaker.routed(decision.request_id, name)
        return decision

    # -- feedback --------------------------------------------------------------------------
    def record_outcome(
        self,
        request_id: str,
        agent: str,
        success: bool,
        latency_ms: float | None = None,
        quality: float | None = None,
        cost_usd: float | None = None,
    ) -> None:
        """Feedback for a decision this router made: updates metrics, posterior and breaker.

        Refused (FeedbackError) for unknown or already-answered request ids and for an
        agent that was neither the choice nor one of its alternatives.
        """
        with self._lock:
            self.ledger.settle(
                request_id, agent, self.registry, success, latency_ms, quality, cost_usd
            )
            self.breaker.record(agent, success, request_id)

    def use_state(self, registry: AgentRegistry, breaker: Any) -> None:
        """Swap in a new registry / breaker (replicas do this with fresh snapshots) and
        rebuild the routing snapshot off the request path."""
        with self._lock:
            registry.set_known_to_model(self._model.heads)
            registry.embedding_dim = self._model.dim
            self.registry, self.breaker, self._snapshot = registry, breaker, None
            self._permits.clear()
            self.snapshot()
