"""`Gateway`: an OpenAI-compatible chat-completions endpoint as an engine object.

    gateway = td.Gateway(router)                       # an AgentRouter (its text encoder)
    response = await gateway.chat_completions(body)    # bytes as received, or a dict
    response.status, response.headers                  # x-tinydancer-request-id always
    response.body                                      # JSON answer or OpenAI-style error
    async for event in response.events: ...            # or SSE bytes, relayed as they arrive
    gateway.feedback(response.request_id, quality=0.8) # later: the answer's quality, once

Usable from any asyncio application (one event loop: the gateway, its router's learning
and its httpx client live there); an HTTP adapter only moves bytes: `asgi.asgi_app` is
a small one. Routing runs on the router's snapshot (no I/O); the upstream calls share
one pooled `httpx.AsyncClient` (given, or owned and closed by `aclose`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tinydancer._ids import new_request_id
from tinydancer.agents.endpoint import Endpoint
from tinydancer.agents.sketch import DecayingMean
from tinydancer.errors import GatewayError, TinyDancerError
from tinydancer.gateway.attempts import AttemptLoop
from tinydancer.gateway.config import GatewayConfig
from tinydancer.gateway.contract import parse_chat_request
from tinydancer.gateway.outcomes import LocalSink, OutcomeSink
from tinydancer.gateway.planning import TextEncoder, gateway_unavailable, plan_request
from tinydancer.gateway.upstream import Upstream

__all__ = ["REQUEST_ID_HEADER", "Gateway", "GatewayResponse"]

log = logging.getLogger("tinydancer.gateway")
REQUEST_ID_HEADER = "x-tinydancer-request-id"


@dataclass
class GatewayResponse:
    """What to send back: a JSON `body`, or SSE `events` (status 200) to stream as they come.

    An adapter that does not consume `events` to the end must `await response.aclose()`
    (that closes the upstream connection and records the attempt as cancelled).
    """

    status: int
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    events: AsyncIterator[bytes] | None = None

    @property
    def media_type(self) -> str:
        return "text/event-stream" if self.events is not None else "application/json"

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body)

    async def aclose(self) -> None:
        aclose = getattr(self.events, "aclose", None)
        if aclose is not None:
            await aclose()


async def _prefixed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


class Gateway:
    """Route, forward, fail over and learn, for OpenAI-compatible chat completions."""

    def __init__(
        self,
        router: Any,
        encoder: TextEncoder | None = None,
        config: GatewayConfig | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        sink: OutcomeSink | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """router: an `AgentRouter` (its registry holds the agents and their endpoints);
        encoder: turns messages into embeddings (default: the router's, `td.TextEncoder`);
        sink: where attempts and answers go (default: `LocalSink` on the router's own
        registry and breaker, no history); environ: where API keys are read (os.environ)."""
        self.router = router
        self.encoder: TextEncoder = encoder if encoder is not None else router.encoder
        self.config = config or GatewayConfig()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.sink: OutcomeSink = sink or LocalSink(
            router.registry, router.breaker, max_retry_after_s=self.config.max_retry_after_s
        )
        self._client = client
        self._owns_client = client is None
        self._upstreams: dict[tuple[str, int], Upstream] = {}
        self._output_tokens = DecayingMean(decay=0.99)
        for name, reason in self.unavailable().items():
            log.warning("agent %s is not available to the gateway: %s", name, reason)

    # -- state --------------------------------------------------------------------------------
    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(None, connect=self.config.connect_timeout_s),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: pass a client to use one
            )
        return self._client

    def unavailable(self) -> dict[str, str]:
        """Agents the gateway cannot forward to, with the reason (no endpoint, key not set...)."""
        return gateway_unavailable(self.router.registry, self.environ)

    def endpoint(self, agent: str) -> Endpoint:
        endpoint = self.router.registry.get(agent).endpoint
        if endpoint is None:
            raise GatewayError(503, f"agent {agent!r} has no endpoint", code="no_agent_available")
        return endpoint

    def upstream(self, agent: str) -> Upstream:
        endpoint = self.endpoint(agent)
        key = (agent, id(endpoint))  # the cached Upstream holds the endpoint: ids stay unique
        upstream = self._upstreams.get(key)
        if upstream is None or upstream.endpoint is not endpoint:
            if len(self._upstreams) > 4 * max(len(self.router.registry), 16):
                self._upstreams.clear()  # endpoints changed many times: drop the stale ones
            upstream = Upstream(
                self.client,
                endpoint,
                self.environ,
                self.config.max_upstream_body_bytes,
                self.config.connect_timeout_s,
            )
            self._upstreams[key] = upstream
        return upstream

    def observe_output_tokens(self, tokens: float) -> None:
        self._output_tokens.add(float(tokens))

    # -- the routes ---------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        """`GET /v1/models`: the routing profiles, then the agents that have an endpoint."""
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "tinydancer",
                "tinydancer": {
                    "kind": "profile",
                    "optimize_for": profile.optimize_for,
                    "description": profile.description,
                },
            }
            for name, profile in sorted(self.config.all_profiles().items())
        ]
        unavailable = self.unavailable()
        for agent in self.router.registry.list():
            if agent.endpoint is None:
                continue
            data.append(
                {
                    "id": agent.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "tinydancer",
                    "tinydancer": {
                        "kind": "agent",
                        "available": agent.name not in unavailable,
                        "reason": unavailable.get(agent.name),
                        "fallbacks": list(agent.fallbacks),
                    },
                }
            )
        return {"object": "list", "data": data}

    async def chat_completions(self, body: bytes | str | Mapping[str, Any]) -> GatewayResponse:
        """`POST /v1/chat/completions`. Never raises for a bad request: errors are responses."""
        request_id = new_request_id()
        headers = {REQUEST_ID_HEADER: request_id}
        try:
            chat = parse_chat_request(body, self.config)
            plan = plan_request(
                chat,
                request_id=request_id,
                config=self.config,
                router=self.router,
                encoder=self.encoder,
                environ=self.environ,
                output_tokens=self._output_tokens.mean,
            )
            self.router.ledger.remember(
                request_id,
                [name for name, _ in plan.candidates],
                [quality for _, quality in plan.candidates],
                mode="gateway",
            )
            self.sink.decided(plan.request, plan.decision)
            loop = AttemptLoop(self, plan)
            if not chat.stream:
                answer = await loop.complete()
                return GatewayResponse(200, request_id, headers, body=answer)
            events = loop.stream()
            first = await events.__anext__()  # the status depends on it: 200 or an error
            return GatewayResponse(
                200,
                request_id,
                {**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
                events=_prefixed(first, events),
            )
        except GatewayError as exc:
            return self._error(exc, request_id, headers)
        except TinyDancerError as exc:
            field_name = getattr(exc, "field", None)
            return self._error(GatewayError(400, str(exc), param=field_name), request_id, headers)
        except Exception:  # a bug: say so without a traceback (it is in the log)
            log.exception("request %s failed", request_id)
            error = GatewayError(
                500, f"internal error (request {request_id}; see the gateway's log)"
            )
            return self._error(error, request_id, headers)

    @staticmethod
    def _error(exc: GatewayError, request_id: str, headers: dict[str, str]) -> GatewayResponse:
        return GatewayResponse(
            exc.status, request_id, {**headers, **exc.headers()}, body=exc.openai_body()
        )

    def feedback(self, request_id: str, quality: float, agent: str | None = None) -> dict[str, Any]:
        """The answer's quality, once, credited to the agent that finished it; raises
        FeedbackError (refused, with a reason) or InvalidRequestError (a bad quality)."""
        settled = self.router.ledger.settle(
            request_id, agent, self.router.registry, None, None, quality, None
        )
        self.sink.settled(settled, quality)
        return {
            "accepted": True,
            "request_id": request_id,
            "agent": settled.agent,
            "stitched": settled.stitched,
        }

    # -- lifecycle ----------------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
