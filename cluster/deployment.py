"""RouterDeployment: the Serve replica. Thin: it translates HTTP / handle calls into engine
calls on its `AgentRouter` and `Router`, and moves state between them and the actors.

Request path: parse -> (batched) jitted routing on the local snapshot -> response. No
actor round trip and no database write: decisions are appended to local buffers that a
background task ships every `history_push_interval_s` (history records to the history
actor, ledger entries to the registry actor), and the same task refreshes the registry
and breaker snapshots every `snapshot_interval_s`.
"""

import os
import time
from typing import Any

import numpy as np
import ray
from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from ray import serve

from cluster import actors
from cluster.batcher import MicroBatcher
from cluster.config import AppArgs
from cluster.default_agents import DEFAULT_AGENTS
from cluster.fast_path import FastRoutes
from cluster.gateway import CHAT_OPENAPI, OPENAI_ERROR_RESPONSES, to_http
from cluster.http import (
    AdminAuth,
    NotAcceptableError,
    OrjsonResponse,
    create_api,
    plain,
    prefers,
    query_options,
    read_json,
    server_timing,
)
from cluster.http_models import (
    ERROR_RESPONSES,
    AgentPatch,
    BatchOptions,
    BatchRouteBody,
    CandidateRouteBody,
    ErrorBody,
    FeedbackBody,
    ReloadBody,
    RouteBody,
)
from cluster.metrics import ReplicaMetrics, render_cluster_metrics
from cluster.replica_state import ReplicaState
from tinydancer.agents.agent import Agent
from tinydancer.agents.columnar import ColumnarDecisions
from tinydancer.agents.columnar_arrow import ARROW_STREAM, decisions_ipc
from tinydancer.agents.types import AgentRequest
from tinydancer.errors import FeedbackError, InvalidRequestError

__all__ = ["RouterDeployment", "api"]

_LIMIT = {"bytes": 16 * 1024 * 1024}
# Endpoints that read the raw body (JSON or binary) still document what they accept.
BATCH_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": BatchRouteBody.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
            },
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "N x 384 little-endian float32",
                }
            },
        },
    }
}
BATCH_RESPONSES = {
    **ERROR_RESPONSES,
    200: {
        "description": "columnar decisions (JSON), or with `Accept: "
        f"{ARROW_STREAM}` and an embeddings block, the same columns as one Arrow IPC stream",
        "content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "Server-Timing": {
                "description": "the replica's time reading the body, routing and building the "
                "answer: `read;dur=<ms>, route;dur=<ms>, encode;dur=<ms>`",
                "schema": {"type": "string"},
            }
        },
    },
    406: {
        "model": ErrorBody,
        "description": f"{ARROW_STREAM} asked for `requests` or `texts` (JSON only)",
    },
}
_ADMIN: dict[str, AdminAuth] = {}  # this replica's admin token, checked before any body is read
_FAST: dict[str, FastRoutes] = {}  # the routes this replica answers on the JSON fast path
# OpenAPI links: a decision's request id and agent are what its feedback takes (clients and
# schemathesis' stateful phase follow them).
ROUTE_LINKS = {
    "description": "the decision",
    "links": {
        "Feedback": {
            "operationId": "http_feedback_v1_feedback_post",
            "requestBody": {
                "request_id": "$response.body#/request_id",
                "agent": "$response.body#/agent",
            },
        }
    },
}
api = create_api(
    lambda: _LIMIT["bytes"], lambda: _ADMIN.get("auth"), lambda: _FAST.get("routes", {})
)


@serve.deployment(name="router")
@serve.ingress(api)
class RouterDeployment:
    def __init__(self, args: AppArgs | dict[str, Any]) -> None:
        self.args = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)
        _LIMIT["bytes"] = self.args.max_body_bytes
        context = serve.get_replica_context()
        rank = context.rank.rank if context.rank is not None else 0
        self.replica = f"{context.replica_id.unique_id}"
        self.node_id = ray.get_runtime_context().get_node_id()
        if self.args.pin_replicas:
            from tinydancer.runtime import jax_backend_started, pin_to_core

            if not jax_backend_started():
                pin_to_core(rank % (os.cpu_count() or 1))
        self.auth = _ADMIN["auth"] = AdminAuth(self.args.admin_token or "")
        registries, breakers, self.history_actor = actors.get_or_create(
            self.args, DEFAULT_AGENTS if self.args.agents is None else self.args.agents
        )
        self.metrics = ReplicaMetrics(self.replica)
        self.state = ReplicaState(
            self.args,
            rank,
            self.replica,
            registries,
            breakers,
            self.history_actor,
            self.metrics,
        )
        self._batcher = MicroBatcher(
            self._route_now,
            self.args.batch_max_size,
            self.args.batch_wait_timeout_s,
            alone_now=True,
        )
        _FAST["routes"] = {  # the same handlers as the FastAPI routes below
            "/v1/route": (RouteBody, self._route_body),
            "/v1/route/candidates": (CandidateRouteBody, self.route_candidates),
            "/v1/feedback": (FeedbackBody, self._feedback_body),
        }

    async def check_health(self) -> None:
        self.state.ensure_background()

    async def __del__(self) -> None:
        await self.state.drain()

    # -- routing ----------------------------------------------------------------------------------
    def _route_now(self, requests: list[AgentRequest]) -> list[Any]:
        self.metrics.batch_size.observe(len(requests))
        return self.state.route_many(requests)

    async def route(self, request: AgentRequest | dict[str, Any]) -> dict[str, Any]:
        """Handle method: route one agent-mode request (an AgentRequest or a /v1/route body)."""
        self.state.ensure_background()
        started = time.perf_counter()
        engine_request = (
            request
            if isinstance(request, AgentRequest)
            else RouteBody.model_validate(plain(request)).to_engine()
        )
        try:
            return await self._batcher.submit(engine_request)  # alone: routed at once
        finally:
            self.metrics.route_latency.labels("route").observe(time.perf_counter() - started)

    async def describe(self) -> dict[str, Any]:
        """Handle method: which replica / node answered and what it serves."""
        return {
            "replica": self.replica,
            "node": self.node_id,
            "models": self.state.model_versions(),
            "encoder": self.state.encoder.state,
            "warm": self.state.warm,
        }

    async def route_candidates(self, body: CandidateRouteBody | dict[str, Any]) -> dict[str, Any]:
        """Handle method: candidate mode."""
        self.state.ensure_background()
        started = time.perf_counter()
        parsed = (
            body
            if isinstance(body, CandidateRouteBody)
            else CandidateRouteBody.model_validate(plain(body))
        )
        out = self.state.route_candidates(parsed)
        self.metrics.route_latency.labels("route_candidates").observe(time.perf_counter() - started)
        return out

    async def feedback(self, body: FeedbackBody | dict[str, Any]) -> dict[str, Any]:
        """Handle method: an outcome for a decision the service issued."""
        self.state.ensure_background()
        parsed = (
            body if isinstance(body, FeedbackBody) else FeedbackBody.model_validate(plain(body))
        )
        return await self.state.feedback(parsed)

    # -- HTTP -------------------------------------------------------------------------------------
    @api.post("/v1/route", responses={**ERROR_RESPONSES, 200: ROUTE_LINKS})
    async def http_route(self, body: RouteBody) -> Any:
        return OrjsonResponse(await self._route_body(body))

    async def _route_body(self, body: RouteBody) -> dict[str, Any]:
        return await self.route(body.to_engine())

    @api.post("/v1/route/batch", responses=BATCH_RESPONSES, openapi_extra=BATCH_OPENAPI)
    async def http_route_batch(self, request: Request) -> Any:
        self.state.ensure_background()
        started = time.perf_counter()
        accept = request.headers.get("accept", "")
        arrow = prefers(accept, ARROW_STREAM)
        out: ColumnarDecisions | dict[str, Any]
        if request.headers.get("content-type", "").startswith("application/octet-stream"):
            raw = await request.body()
            read = time.perf_counter()
            if len(raw) == 0 or len(raw) % (4 * 384):
                raise InvalidRequestError(
                    "body",
                    f"{len(raw)} bytes",
                    "N x 384 little-endian float32 (a positive multiple of 1536 bytes)",
                )
            options = BatchOptions.model_validate(query_options(request))
            out = self.state.route_block(
                np.frombuffer(raw, dtype="<f4").reshape(-1, 384), options.template()
            )
        else:
            body = BatchRouteBody.model_validate(await read_json(request))
            read = time.perf_counter()
            if arrow and (body.texts is not None or body.requests is not None):
                raise NotAcceptableError(
                    "accept",
                    accept,
                    "application/json for `requests` and `texts`",
                    f"{ARROW_STREAM} answers embedding blocks: a raw body, `embeddings` or "
                    "`embeddings_b64`",
                )
            if body.texts is not None:
                out = self.state.route_texts(body.texts, body.template())
            elif body.requests is not None:
                results = self.state.route_many([r.to_engine() for r in body.requests])
                for r in results:
                    if isinstance(r, Exception):
                        raise r
                out = {"decisions": results}
            else:
                out = self.state.route_block(body.block(), body.template())
        routed = time.perf_counter()
        self.metrics.route_latency.labels("route_batch").observe(routed - started)
        response: Response
        if not isinstance(out, ColumnarDecisions):
            response = OrjsonResponse(out)
        elif arrow:
            response = Response(decisions_ipc(out), media_type=ARROW_STREAM)
        else:
            response = OrjsonResponse(out.to_dict())
        # reading (and parsing) the body, routing, building the answer: the rest of a
        # client's wall time is the wire and the ingress
        response.headers["server-timing"] = server_timing(
            read=read - started, route=routed - read, encode=time.perf_counter() - routed
        )
        return response

    @api.post("/v1/route/candidates", responses=ERROR_RESPONSES)
    async def http_route_candidates(self, body: CandidateRouteBody) -> Any:
        return OrjsonResponse(await self.route_candidates(body))

    @api.post("/v1/feedback", responses=ERROR_RESPONSES)
    async def http_feedback(self, body: FeedbackBody) -> Any:
        return OrjsonResponse(await self._feedback_body(body))

    async def _feedback_body(self, body: FeedbackBody) -> dict[str, Any]:
        result = await self.feedback(body)
        if not result.get("accepted"):
            raise FeedbackError(
                result.get("reason", "invalid"), result.get("message", "feedback refused")
            )
        return result

    # -- the OpenAI-compatible gateway -------------------------------------------------------
    @api.post("/v1/chat/completions", responses=OPENAI_ERROR_RESPONSES, openapi_extra=CHAT_OPENAPI)
    async def chat_completions(self, request: Request) -> Response:
        """Route, forward (streaming or not), fail over and learn; OpenAI's contract."""
        self.state.ensure_background()
        started = time.perf_counter()
        response = await self.state.gateway.chat_completions(await request.body())
        self.metrics.route_latency.labels("chat_completions").observe(time.perf_counter() - started)
        return to_http(response)

    @api.get("/v1/models", responses=OPENAI_ERROR_RESPONSES)
    async def models(self) -> Any:
        """The routing profiles, then the agents with an endpoint."""
        return OrjsonResponse(self.state.gateway.models())

    @api.get("/v1/agents", responses=ERROR_RESPONSES)
    async def list_agents(self) -> Any:
        agents = await self._registry_call("list")
        if isinstance(agents, list):
            reasons = self.state.gateway.unavailable()  # once, not per agent
            for agent in agents:
                agent["gateway_unavailable"] = reasons.get(agent["name"])
        return agents

    @api.get("/v1/agents/{name:path}", responses=ERROR_RESPONSES)
    async def get_agent(self, name: str) -> Any:
        stats = await self._registry_call("stats", name)
        if isinstance(stats, dict) and isinstance(stats.get("agent"), dict):
            # why this replica's gateway cannot forward to it (its keys are read here)
            stats["agent"]["gateway_unavailable"] = self.state.gateway.unavailable().get(name)
        return stats

    @api.post("/v1/agents", status_code=201, responses=ERROR_RESPONSES)
    async def register_agent(self, body: Agent, request: Request) -> Any:
        # again, strictly (JSON 0 is not a boolean): `Agent` itself is lax for Python callers
        strict = Agent.model_validate_json(await request.body(), strict=True)
        return self.auth.check(request) or await self._registry_call(
            "register", strict.model_dump(mode="json")
        )

    @api.patch("/v1/agents/{name:path}", responses=ERROR_RESPONSES)
    async def update_agent(self, name: str, body: AgentPatch, request: Request) -> Any:
        changes = body.model_dump(exclude_none=True)
        return self.auth.check(request) or await self._registry_call("update", name, **changes)

    @api.delete("/v1/agents/{name:path}", responses=ERROR_RESPONSES)
    async def remove_agent(self, name: str, request: Request) -> Any:
        return self.auth.check(request) or await self._registry_call("remove", name)

    @api.get("/v1/stats", responses=ERROR_RESPONSES)
    async def stats(self) -> Any:
        return await self.state.stats()

    @api.post("/v1/admin/reload", responses=ERROR_RESPONSES)
    async def reload(self, body: ReloadBody, request: Request) -> Any:
        return self.auth.check(request) or await self.state.publish_model(body.mode, body.path)

    @api.get("/healthz", responses=ERROR_RESPONSES)
    async def healthz(self) -> Any:
        self.state.ensure_background()
        return {
            "status": "ok",
            "replica": self.replica,
            "node": self.node_id,
            "models": self.state.model_versions(),
            "encoder": self.state.encoder.state,
            "warm": self.state.warm,
        }

    @api.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def metrics_endpoint(self) -> Any:
        per_replica, cluster = await self.state.metrics_view()
        return PlainTextResponse(
            render_cluster_metrics(per_replica, cluster), media_type="text/plain; version=0.0.4"
        )

    async def _registry_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        reply = await self.state.shards.registry_call(method, *args, **kwargs)
        if reply["ok"]:
            return reply["result"]
        status = {"UnknownAgentError": 404, "DuplicateAgentError": 409}.get(
            reply.get("error", ""), 422
        )
        return OrjsonResponse({k: v for k, v in reply.items() if k != "ok"}, status_code=status)
