"""Agent-mode router: which agent should serve this request?

    registry = AgentRegistry(known_to_model=model_agents)
    router = AgentRouter(registry, CircuitBreaker())
    decision = router.route(AgentRequest(embedding=e, optimize_for="balanced"))
    router.record_outcome(decision.request_id, decision.agent, success=True, latency_ms=640, quality=0.9)

The router reads an immutable snapshot of the registry and breaker (rebuilt when their
versions change, at most every `snapshot_max_age_s` seconds), scores every agent for a
batch of requests in one jitted call (`agent_kernel.score_agents`) and only loops in
Python over requests, never over agents, to build decisions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tinydancer import bandit
from tinydancer._errors import (
    AgentsUnavailableError,
    InvalidRequestError,
    ModelFileError,
    NoEligibleAgentError,
)
from tinydancer._ids import new_request_id, new_request_ids
from tinydancer._staging import bucket_for
from tinydancer.agent_kernel import AGENT_ROWS, OUTPUT_ROWS, REQUEST_COLUMNS, score_agents
from tinydancer.agent_types import AgentDecision, AgentRequest
from tinydancer.breaker import BreakerState, CircuitBreaker, RoutingBreaker
from tinydancer.conformal import uncertainty_table
from tinydancer.embedding import as_embedding
from tinydancer.ledger import DecisionLedger, LedgerEntry
from tinydancer.quantization import pack
from tinydancer.registry import AgentRegistry
from tinydancer.runtime import use_sync_dispatch
from tinydancer.weights import RouterModel, load_model, shipped_model_path

__all__ = ["AgentRouter", "AgentRouterConfig", "ColumnarDecisions"]

_OUT = {name: i for i, name in enumerate(OUTPUT_ROWS)}
_REQ = {name: i for i, name in enumerate(REQUEST_COLUMNS)}
_AGENT = {name: i for i, name in enumerate(AGENT_ROWS)}
_MIN_AGENT_BUCKET = 8
_POOL_DRAWS = 8192  # rows of the Thompson-draw pool


class AgentRouterConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(
        None, description="agent-mode weights; None = the shipped model"
    )
    seed: int = Field(
        0, description="seed of the Thompson draws (routing is deterministic given it)"
    )
    explore: bool = Field(True, description="Thompson sampling; False = act on posterior means")
    max_messages: int = Field(
        16, ge=1, le=256, description="a conversation keeps its latest messages"
    )
    default_tokens: float = Field(
        500.0, gt=0, description="tokens assumed for per-token prices when unknown"
    )
    fallback_agent: str | None = Field(
        None, description="served when every eligible agent is unavailable"
    )
    snapshot_max_age_s: float = Field(
        0.0, ge=0, description="reuse a snapshot this long (0 = always fresh)"
    )
    decision_cache_size: int = Field(
        100_000, ge=1, description="recent decisions kept for feedback"
    )
    sync_dispatch: bool = Field(True, description="turn off JAX's async dispatch")
    warm: bool = Field(True, description="compile common shapes at start")


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Agent columns for the kernel and what the host needs to read its output."""

    key: tuple[int, int]
    names: tuple[str, ...]
    index: dict[str, int]
    agents: Any  # (len(AGENT_ROWS), A_bucket) on the device
    columns: np.ndarray  # the same columns on the host
    specialization: Any  # (A_bucket, D) on the device
    capabilities: np.ndarray  # (A_bucket, C) bool
    capability_index: dict[str, int]
    base_eligible: np.ndarray  # (A_bucket,) bool: active and routable per the breaker
    states: dict[str, BreakerState]
    probes: tuple[int, ...]  # half-open agents this router holds a probe permit for
    cost_ref: float
    latency_ref: float
    taken_at: float
    expires_at: float  # a circuit's cooldown ends: breaker states change without an event


@dataclass(frozen=True, eq=False)
class ColumnarDecisions:
    """Decisions for N requests as columns; `agent_index` -1 = no eligible agent."""

    request_ids: list[str]
    agent_names: list[str]
    agent_index: np.ndarray
    confidence: np.ndarray
    uncertainty: np.ndarray
    expected_quality: np.ndarray
    estimated_cost_usd: np.ndarray
    model_quality: np.ndarray
    alternatives: list[tuple[str, ...]]  # rows with the same ranking share one tuple
    model_version: str

    def __len__(self) -> int:
        return len(self.request_ids)

    @property
    def agents(self) -> list[str | None]:
        return [self.agent_names[i] if i >= 0 else None for i in self.agent_index.tolist()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_ids,
            "agent": self.agents,
            "confidence": self.confidence.tolist(),
            "uncertainty": self.uncertainty.tolist(),
            "expected_quality": self.expected_quality.tolist(),
            "estimated_cost_usd": self.estimated_cost_usd.tolist(),
            "alternatives": self.alternatives,
            "model_version": self.model_version,
        }


@dataclass(frozen=True, eq=False)
class _Model:
    model: RouterModel
    weights: tuple[Any, Any, Any]
    layout: tuple[Any, ...]
    table: Any
    heads: dict[str, int]


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
    ) -> None:
        self.config = config or AgentRouterConfig()
        if self.config.sync_dispatch:
            use_sync_dispatch()
        self.registry = registry
        self.breaker: RoutingBreaker = (
            breaker if breaker is not None else CircuitBreaker(clock=clock)
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._offsets = np.random.default_rng(self.config.seed)
        self._pool: tuple[int, Any] | None = None  # (agent bucket, (P, A, 2) normals on the device)
        self.ledger = DecisionLedger(self.config.decision_cache_size)
        self._permits: dict[str, int] = {}
        self._model = self._prepare(
            model if model is not None else self._read(self.config.model_path)
        )
        self.registry.set_known_to_model(self._model.heads)
        self._snapshot: _Snapshot | None = None
        if self.config.warm:
            self._warm()

    # -- model -----------------------------------------------------------------------------
    @staticmethod
    def _read(path: Path | None) -> RouterModel:
        return load_model(path or shipped_model_path("agent"), expect_mode="agent")

    @staticmethod
    def _prepare(model: RouterModel) -> _Model:
        if model.mode != "agent":
            raise ModelFileError(
                model.version, "wrong model mode", expected="agent", found=model.mode
            )
        qpack, spack, fpack, layout = pack(model.stored)
        return _Model(
            model,
            (jnp.asarray(qpack), jnp.asarray(spack), jnp.asarray(fpack)),
            layout,
            jnp.asarray(uncertainty_table(model.calibration)),
            {name: i for i, name in enumerate(model.feature_schema["agents"])},
        )

    @property
    def model(self) -> RouterModel:
        return self._model.model

    @property
    def model_version(self) -> str:
        return self._model.model.version

    def reload(self, source: str | Path | RouterModel) -> str:
        model = source if isinstance(source, RouterModel) else self._read(Path(source))
        if model.embedding != self._model.model.embedding:
            raise ModelFileError(
                model.version,
                "embedding model differs from the serving model",
                expected=str(self._model.model.embedding),
                found=str(model.embedding),
            )
        prepared = self._prepare(model)
        with self._lock:
            self._model = prepared
            self.registry.set_known_to_model(prepared.heads)
            self._snapshot = None
        if self.config.warm:
            self._warm()
        return model.version

    def _warm(self) -> None:
        if len(self.registry) == 0:
            return
        dim = self._model.model.embedding.dim
        probe = np.zeros(dim, np.float32)
        probe[0] = 1.0
        try:
            for batch in (1, 2, 4, 8, 16, 32):
                self.route_batch([AgentRequest(embedding=probe)] * batch, remember=False)
            for steps in (2, 4, 8):
                self.route_batch([AgentRequest(messages=[probe] * steps)], remember=False)
        except (NoEligibleAgentError, AgentsUnavailableError):
            pass  # nothing routable yet; shapes compile on first use

    # -- snapshot --------------------------------------------------------------------------
    def snapshot(self) -> _Snapshot:
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
        snap = self._build_snapshot(key, now)
        self._snapshot = snap
        return snap

    def _build_snapshot(self, key: tuple[int, int], now: float) -> _Snapshot:
        agents = self.registry.list()
        count = len(agents)
        bucket = max(_MIN_AGENT_BUCKET, bucket_for(max(count, 1)))
        dim = self._model.model.embedding.dim
        columns = np.zeros((len(AGENT_ROWS), bucket), np.float32)
        columns[_AGENT["head"]] = -1
        columns[_AGENT["latency_ms"]] = -1
        specialization = np.zeros((bucket, dim), np.float32)
        vocabulary = sorted({c for a in agents for c in a.capabilities})
        capability_index = {c: i for i, c in enumerate(vocabulary)}
        capabilities = np.zeros((bucket, max(len(vocabulary), 1)), bool)
        base = np.zeros(bucket, bool)
        states: dict[str, BreakerState] = {}
        for i, agent in enumerate(agents):  # snapshot build, not the hot path
            metrics = self.registry.metrics(agent.name)
            posterior = self.registry.posterior(agent.name)
            mean = bandit.posterior_mean(posterior)
            factor = bandit.sample_factor(posterior, self.registry.bandit_config)
            observed_cost = metrics.recent_cost.mean
            estimate = agent.cost.estimate(self.config.default_tokens)
            latency = metrics.recent_latency_mean.mean or agent.expected_latency_ms
            columns[:, i] = [
                0.0,
                self._model.heads.get(agent.name, -1),
                mean[0],
                mean[1],
                factor[0, 0],
                factor[1, 0],
                factor[1, 1],
                agent.cost.per_request_usd,
                agent.cost.per_1k_tokens_usd,
                observed_cost if observed_cost is not None else estimate,
                -1.0 if latency is None else latency,
                0.0 if agent.specialization is None else 1.0,
            ]
            if agent.specialization is not None:
                if len(agent.specialization) != dim:
                    raise InvalidRequestError(
                        f"agents.{agent.name}.specialization",
                        f"{len(agent.specialization)} values",
                        f"{dim} values (the model's embedding dimension)",
                    )
                specialization[i] = agent.specialization
            for capability in agent.capabilities:
                capabilities[i, capability_index[capability]] = True
            state = self.breaker.state(agent.name)
            states[agent.name] = state
            base[i] = agent.active and (
                state is BreakerState.CLOSED
                or (state is BreakerState.HALF_OPEN and self._permit_available(agent.name))
            )
        columns[_AGENT["eligible"], :count] = base[:count]
        active = [i for i, a in enumerate(agents) if a.active]
        costs = columns[_AGENT["cost_estimate"], active] if active else np.zeros(1)
        latencies = columns[_AGENT["latency_ms"], active] if active else np.zeros(1)
        return _Snapshot(
            key=(self.registry.version, self.breaker.version),
            names=tuple(a.name for a in agents),
            index={a.name: i for i, a in enumerate(agents)},
            agents=jnp.asarray(columns),
            columns=columns,
            specialization=jnp.asarray(specialization),
            capabilities=capabilities,
            capability_index=capability_index,
            base_eligible=base,
            states=states,
            probes=tuple(
                i
                for i, a in enumerate(agents)
                if states[a.name] is BreakerState.HALF_OPEN and base[i]
            ),
            cost_ref=float(max(costs.max(), 1e-12)),
            latency_ref=float(max(latencies.max(), 1e-9)),
            taken_at=now,
            expires_at=self.breaker.next_change_at(),
        )

    def _permit_available(self, name: str) -> bool:
        if self._permits.get(name, 0) > 0:
            return True
        granted = self.breaker.lease(name, 1)
        self._permits[name] = self._permits.get(name, 0) + granted
        return granted > 0

    def _normals(self, agent_bucket: int) -> Any:
        """The device pool of standard normals for Thompson draws (regenerated per agent bucket)."""
        if self._pool is None or self._pool[0] != agent_bucket:
            rng = np.random.default_rng([self.config.seed, agent_bucket])
            self._pool = (
                agent_bucket,
                jnp.asarray(rng.standard_normal((_POOL_DRAWS, agent_bucket, 2), np.float32)),
            )
        return self._pool[1]

    # -- request preparation ------------------------------------------------------------------
    def _sequence(self, request: AgentRequest, index: int, dim: int) -> np.ndarray:
        where = f"requests[{index}]" if index >= 0 else "request"
        if (request.embedding is None) == (request.messages is None):
            raise InvalidRequestError(
                f"{where}.embedding",
                "both or neither of embedding and messages",
                "exactly one of them",
            )
        if request.embedding is not None:
            return as_embedding(request.embedding, "embedding", dim)[None, :]
        messages = list(request.messages or [])
        if not messages:
            raise InvalidRequestError("messages", [], "at least one message embedding")
        kept = messages[-self.config.max_messages :]
        offset = len(messages) - len(kept)
        return np.stack(
            [as_embedding(m, f"messages[{offset + i}]", dim) for i, m in enumerate(kept)]
        )

    def _request_row(self, request: AgentRequest, snap: _Snapshot, length: int) -> np.ndarray:
        w_quality, w_cost, w_latency, w_similarity = request.objective_weights()
        if request.willingness_to_pay is not None:
            wtp = request.willingness_to_pay
            if not (isinstance(wtp, int | float) and np.isfinite(wtp) and wtp > 0):
                raise InvalidRequestError("willingness_to_pay", wtp, "USD per unit of quality, > 0")
            cost_scale = 1.0 / wtp
        else:
            cost_scale = w_cost / snap.cost_ref
        tokens = request.expected_tokens
        if tokens is not None and not (
            isinstance(tokens, int | float) and np.isfinite(tokens) and tokens >= 0
        ):
            raise InvalidRequestError("expected_tokens", tokens, "a token count >= 0 or null")
        c = request.constraints
        return np.array(
            [
                w_quality,
                cost_scale,
                w_latency / snap.latency_ref,
                w_similarity,
                -1.0 if tokens is None else tokens,
                np.inf if c.max_cost_usd is None else c.max_cost_usd,
                np.inf if c.max_latency_ms is None else c.max_latency_ms,
                -np.inf if c.min_quality is None else c.min_quality,
                length,
                0.0,
            ],
            np.float32,
        )

    def _eligible(self, request: AgentRequest, snap: _Snapshot) -> np.ndarray:
        c = request.constraints
        eligible = snap.base_eligible.copy()
        if c.required_capabilities:
            missing = [cap for cap in c.required_capabilities if cap not in snap.capability_index]
            if missing:
                eligible[:] = False
            else:
                columns = [snap.capability_index[cap] for cap in c.required_capabilities]
                eligible &= snap.capabilities[:, columns].all(axis=1)
        for name in c.excluded_agents:
            position = snap.index.get(name)
            if position is not None:
                eligible[position] = False
        return eligible

    # -- routing ---------------------------------------------------------------------------
    def route(self, request: AgentRequest) -> AgentDecision:
        return self.route_batch([request])[0]

    def route_batch(
        self, requests: Sequence[AgentRequest], *, remember: bool = True
    ) -> list[AgentDecision]:
        """Route many requests in one jitted call (one decision per request, in order)."""
        if not requests:
            return []
        start = time.perf_counter_ns()
        model = self._model
        dim = model.model.embedding.dim
        with self._lock:
            snap = self.snapshot()
            if not snap.names:
                raise NoEligibleAgentError({"registry": ["(no agents registered)"]})
            single = len(requests) == 1
            sequences = [
                self._sequence(r, -1 if single else i, dim) for i, r in enumerate(requests)
            ]
            batch = bucket_for(len(requests)) if len(requests) > 1 else 1
            steps = max(s.shape[0] for s in sequences)
            steps = (
                1
                if steps == 1
                else bucket_for(steps)
                if steps > 16
                else 1 << (steps - 1).bit_length()
            )
            messages = np.zeros((batch, steps, dim), np.float32)
            rows = np.zeros((batch, len(REQUEST_COLUMNS)), np.float32)
            eligible = np.zeros((batch, len(snap.base_eligible)), np.float32)
            for i, (request, sequence) in enumerate(zip(requests, sequences, strict=True)):
                messages[i, : sequence.shape[0]] = sequence
                rows[i] = self._request_row(request, snap, sequence.shape[0])
                eligible[i] = self._eligible(request, snap)
            out = self._score(model, snap, messages, rows, eligible)
            elapsed = (time.perf_counter_ns() - start) / 1e3
            return [
                self._decide(request, out[i], snap, elapsed, remember)
                for i, request in enumerate(requests)
            ]

    def _score(
        self,
        model: _Model,
        snap: _Snapshot,
        messages: np.ndarray,
        rows: np.ndarray,
        eligible: np.ndarray,
    ) -> np.ndarray:
        """The one jitted call: every agent for every request (sets each row's draw offset)."""
        draws = self.registry.bandit_config.propensity_samples + 1
        rows[:, _REQ["offset"]] = self._offsets.integers(0, _POOL_DRAWS - draws, rows.shape[0])
        return np.asarray(
            score_agents(
                *model.weights,
                model.table,
                snap.agents,
                snap.specialization,
                messages,
                rows,
                eligible,
                self._normals(len(snap.base_eligible)),
                layout=model.layout,
                draws=draws,
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
        dim = model.model.embedding.dim
        block = np.asarray(embeddings, np.float32)
        if block.ndim != 2 or block.shape[1] != dim or block.shape[0] == 0:
            raise InvalidRequestError(
                "embeddings", f"array of shape {block.shape}", f"shape (N >= 1, {dim})"
            )
        norms = np.einsum("ij,ij->i", block, block)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if bad.size:
            raise InvalidRequestError(
                f"embeddings[{int(bad[0])}]",
                "a zero or non-finite vector",
                "finite, non-zero embeddings",
            )
        count = block.shape[0]
        outputs = []
        with self._lock:
            snap = self.snapshot()
            if not snap.names:
                raise NoEligibleAgentError({"registry": ["(no agents registered)"]})
            row = self._request_row(template, snap, 1)
            eligible_row = self._eligible(template, snap).astype(np.float32)
            eligible_row[list(snap.probes)] = 0.0  # bulk rows never probe a half-open circuit
            for start in range(0, count, chunk):
                part = block[start : start + chunk]
                size = part.shape[0]
                batch = bucket_for(size) if size > 1 else 1
                messages = np.zeros((batch, 1, dim), np.float32)
                messages[:size, 0] = part
                rows = np.broadcast_to(row, (batch, row.shape[0])).copy()
                eligible = np.broadcast_to(eligible_row, (batch, eligible_row.shape[0]))
                out = self._score(model, snap, messages, rows, np.ascontiguousarray(eligible))
                outputs.append(out[:size])
        out = np.concatenate(outputs)  # (N, rows, A)
        utility = out[:, _OUT["utility"]]
        order = np.argsort(-utility, axis=1, kind="stable")[:, :4]
        best = order[:, 0]
        rows_index = np.arange(count)
        routable = np.isfinite(utility[rows_index, best])
        chosen = np.where(routable, best, -1)
        pick = np.maximum(chosen, 0)
        ids = new_request_ids(count)
        finite = np.isfinite(np.take_along_axis(utility, order, axis=1))  # (N, <=4), a prefix
        # Rows share few rankings: encode each row's ranked eligible agents as one integer,
        # build the names of each distinct ranking once, and index them per row.
        width = len(snap.base_eligible) + 1
        code = np.where(finite, order + 1, 0) @ (width ** np.arange(order.shape[1]))
        _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        ranked_by_code = [
            tuple(snap.names[k] for k in order[r][finite[r]].tolist()) for r in first.tolist()
        ]
        alternatives_by_code = [ranked[1:] for ranked in ranked_by_code]
        codes = inverse.tolist()
        result = ColumnarDecisions(
            request_ids=ids,
            agent_names=list(snap.names),
            agent_index=chosen,
            confidence=np.where(routable, out[rows_index, _OUT["propensity"], pick], 0.0),
            uncertainty=out[rows_index, _OUT["uncertainty"], pick],
            expected_quality=out[rows_index, _OUT["quality"], pick],
            estimated_cost_usd=out[rows_index, _OUT["cost"], pick],
            model_quality=out[rows_index, _OUT["model_quality"], pick],
            alternatives=[alternatives_by_code[c] for c in codes],
            model_version=model.model.version,
        )
        if remember:
            known = np.take_along_axis(out[:, _OUT["known"]], order, axis=1) > 0
            qualities = np.where(
                known, np.take_along_axis(out[:, _OUT["model_quality"]], order, axis=1), np.nan
            ).tolist()  # NaN: the model has no head for that agent
            self.ledger.remember_entries(
                [
                    LedgerEntry(
                        ids[i],
                        ranked_by_code[codes[i]],
                        tuple(qualities[i][: len(ranked_by_code[codes[i]])]),
                    )
                    for i in np.flatnonzero(routable).tolist()
                ]
            )
        return result

    def _decide(
        self,
        request: AgentRequest,
        out: np.ndarray,
        snap: _Snapshot,
        elapsed_us: float,
        remember: bool,
    ) -> AgentDecision:
        utility = out[_OUT["utility"]]
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
            best, fallback = self._no_eligible(request, out, snap), True
        name = snap.names[best]
        if snap.states.get(name) is BreakerState.HALF_OPEN and not fallback:
            self._permits[name] = max(0, self._permits.get(name, 0) - 1)
            if self._permits[name] == 0:
                self._snapshot = None  # permits used up: rebuild before the next request
        ranked_count = int(np.isfinite(utility).sum())
        latency_row = snap.columns[_AGENT["latency_ms"]]
        ranked = []
        for position in order[: min(4, ranked_count)] if not fallback else [best]:
            lat = float(latency_row[position])
            ranked.append(
                (
                    snap.names[position],
                    float(utility[position]),
                    float(out[_OUT["quality"], position]),
                    float(out[_OUT["cost"], position]),
                    None if lat < 0 else lat,
                )
            )
        request_id = request.request_id or new_request_id()
        latency = float(latency_row[best])
        decision = AgentDecision(
            request_id=request_id,
            agent=name,
            confidence=float(out[_OUT["propensity"], best]) if not fallback else 0.0,
            uncertainty=float(out[_OUT["uncertainty"], best]),
            estimated_cost_usd=float(out[_OUT["cost"], best]),
            estimated_latency_ms=None if latency < 0 else latency,
            expected_quality=float(out[_OUT["quality"], best]),
            similarity=float(out[_OUT["similarity"], best]),
            model_version=self._model.model.version,
            # the probability this policy chose the agent: a probe or the fallback is certain
            propensity=1.0
            if fallback or probe is not None
            else float(out[_OUT["propensity"], best]),
            model_quality=float(out[_OUT["model_quality"], best]),
            objective="custom"
            if request.weights
            else (
                "willingness-to-pay"
                if request.willingness_to_pay is not None
                else request.optimize_for
            ),
            explain=(lambda: self._exclusions(request, out, snap))
            if ranked_count < len(snap.names)
            else None,
            ranked=ranked,
            fallback=fallback,
            probe=probe is not None,
            inference_time_us=elapsed_us,
        )
        if remember:
            known = out[_OUT["known"]]
            qualities = [
                float(out[_OUT["model_quality"], snap.index[r[0]]])
                if known[snap.index[r[0]]] > 0
                else None
                for r in ranked
            ]
            self.ledger.remember(request_id, [r[0] for r in ranked], qualities)
            self.breaker.routed(request_id, name)
        return decision

    def _no_eligible(self, request: AgentRequest, out: np.ndarray, snap: _Snapshot) -> int:
        """Nothing eligible: the fallback agent, or an error saying why."""
        excluded = self._exclusions(request, out, snap)
        unavailable = excluded.get("circuit_open", [])
        others = {k: v for k, v in excluded.items() if k != "circuit_open"}
        fallback = self.config.fallback_agent
        if fallback is not None and fallback in snap.index:
            return snap.index[fallback]
        blocked_by_constraints = {a for agents in others.values() for a in agents}
        if unavailable and not set(unavailable) <= blocked_by_constraints:
            raise AgentsUnavailableError(
                [a for a in unavailable if a not in blocked_by_constraints]
            )
        raise NoEligibleAgentError(excluded)

    def _exclusions(
        self, request: AgentRequest, out: np.ndarray, snap: _Snapshot
    ) -> dict[str, list[str]]:
        """Which constraint excluded which agents (error path and decision reasons)."""
        c = request.constraints
        excluded: dict[str, list[str]] = {}

        def add(rule: str, name: str) -> None:
            excluded.setdefault(rule, []).append(name)

        for i, name in enumerate(snap.names):
            agent = self.registry.get(name) if name in self.registry else None
            if agent is None or not agent.active:
                add("inactive", name)
            if snap.states.get(name) is BreakerState.OPEN or (
                snap.states.get(name) is BreakerState.HALF_OPEN and not snap.base_eligible[i]
            ):
                add("circuit_open", name)
            if name in c.excluded_agents:
                add("excluded_agents", name)
            if agent is not None and not c.required_capabilities <= agent.capabilities:
                add("required_capabilities", name)
            if c.max_cost_usd is not None and out[_OUT["cost"], i] > c.max_cost_usd:
                add("max_cost_usd", name)
            latency = float(snap.columns[_AGENT["latency_ms"], i])
            if c.max_latency_ms is not None and latency >= 0 and latency > c.max_latency_ms:
                add("max_latency_ms", name)
            if c.min_quality is not None and out[_OUT["quality"], i] < c.min_quality:
                add("min_quality", name)
        return excluded

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
            self.registry, self.breaker, self._snapshot = registry, breaker, None
            self._permits.clear()
            self.snapshot()
