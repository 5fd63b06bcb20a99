"""The attempt loop: try the plan's agents in order until one answers, within
`max_attempts` and the request's deadline, recording each attempt exactly once.

Before the first byte reaches the client any failure moves on to the next agent. In a
stream, a failure after part of the answer was relayed hands the partial text to the
next agent with a request to continue it; its chunks go out under the same completion
id (see `relay.Stitcher`). When nothing is left: a 503 before streaming, a final error
event after. A client that goes away (the stream closed or the task cancelled) ends
the current attempt as `cancelled`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from tinydancer.agents.breaker import BreakerState
from tinydancer.agents.ledger import Answer
from tinydancer.errors import FeedbackError, GatewayError
from tinydancer.gateway.contract import estimate_tokens
from tinydancer.gateway.outcomes import AttemptOutcome
from tinydancer.gateway.planning import Plan, retry_after_s
from tinydancer.gateway.relay import Stitcher
from tinydancer.gateway.upstream import AttemptFailure

if TYPE_CHECKING:
    from tinydancer.gateway.gateway import Gateway

__all__ = ["AttemptLoop"]

log = logging.getLogger("tinydancer.gateway")


class AttemptLoop:
    """One request's attempts (create one per request)."""

    def __init__(self, gateway: Gateway, plan: Plan) -> None:
        self.gateway = gateway
        self.plan = plan
        self.tried: list[str] = []
        self.failures: list[AttemptFailure] = []
        self.mid_stream_failovers = 0
        self.finisher: str | None = None
        self.cost_usd: float | None = None  # every attempt's, summed

    # -- bookkeeping ----------------------------------------------------------------------------
    def _candidates(self) -> Iterator[tuple[str, float | None]]:
        """The agents still worth trying, in order; stops at max_attempts or the deadline."""
        breaker = self.gateway.router.breaker
        for agent, model_quality in self.plan.candidates:
            if len(self.tried) >= self.gateway.config.max_attempts:
                return
            if time.monotonic() >= self.plan.deadline:
                return
            # the router's choice may be a half-open circuit's probe; a failover goes only to
            # closed circuits; an open one is skipped wherever it is (a snapshot reused for
            # snapshot_max_age_s may not have seen it open)
            state = breaker.state(agent)
            if state is BreakerState.OPEN or (self.tried and state is not BreakerState.CLOSED):
                continue
            yield agent, model_quality

    def info(self) -> dict[str, Any]:
        """The `tinydancer` object of the response."""
        decision = self.plan.decision
        return {
            "request_id": self.plan.request_id,
            "agent": self.finisher,
            "agents_tried": list(self.tried),
            "failover_count": len(self.failures),
            "mid_stream_failovers": self.mid_stream_failovers,
            "decision": {
                "confidence": decision.confidence,
                "uncertainty": decision.uncertainty,
                "reason": (
                    f"requested by name ({self.plan.direct}, then its fallbacks); {decision.reason}"
                    if self.plan.direct
                    else decision.reason
                ),
                "alternatives": [a.to_dict() for a in decision.alternatives],
            },
        }

    def _record(
        self,
        agent: str,
        model_quality: float | None,
        started: float,
        failure: AttemptFailure | None,
        *,
        ttft_s: float | None = None,
        usage: dict[str, int] | None = None,
        prompt_tokens: int | None = None,
        completion_chars: int = 0,
        mid_stream: bool = False,
        continued: bool = False,
    ) -> None:
        """One attempt's outcome: to the ledger (once, in order) and to the sink."""
        gateway = self.gateway
        attempt = len(self.tried)
        self.tried.append(agent)
        prompt = usage.get("prompt_tokens") if usage else None
        completion = usage.get("completion_tokens") if usage else None
        answered_something = failure is None or mid_stream
        if prompt is None and answered_something:
            prompt = prompt_tokens
        if completion is None and answered_something:
            completion = estimate_tokens(completion_chars)
        cost = None
        if prompt is not None and completion is not None and agent in gateway.router.registry:
            cost = gateway.router.registry.get(agent).cost.estimate_split(prompt, completion)
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost
        if failure is None and completion:
            gateway.observe_output_tokens(completion)
        outcome = AttemptOutcome(
            request_id=self.plan.request_id,
            attempt=attempt,
            agent=agent,
            failure_kind=None if failure is None else failure.kind,
            latency_ms=(time.monotonic() - started) * 1e3,
            ttft_ms=None if ttft_s is None else ttft_s * 1e3,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            mid_stream=mid_stream,
            continued=continued,
            status=200 if failure is None else failure.status,
            retry_after_s=None if failure is None else failure.retry_after_s,
            teaches_bandit=failure is not None or not gateway.config.await_quality_feedback,
            model_quality=model_quality,
            ts=time.time(),
        )
        if failure is not None:
            self.failures.append(failure)
            log.info(
                "request %s: attempt %d on %s failed: %s",
                self.plan.request_id,
                attempt,
                agent,
                failure.detail,
            )
        try:
            gateway.router.ledger.record_attempt(self.plan.request_id, attempt, agent)
        except FeedbackError as exc:  # the ledger forgot the request (capacity): still report
            log.warning("request %s: %s", self.plan.request_id, exc)
        gateway.sink.attempted([outcome])

    def _finish(self, stitched: bool) -> None:
        answer = Answer(
            self.plan.request_id,
            self.finisher,
            stitched,
            (time.monotonic() - self.plan.started) * 1e3,
            self.cost_usd,
        )
        try:
            self.gateway.router.ledger.finish(answer)
        except FeedbackError as exc:
            log.warning("request %s: %s", self.plan.request_id, exc)
        self.gateway.sink.answered(answer)

    def _exhausted(self) -> GatewayError:
        """Nothing left to try: what the client is told."""
        kinds = [f.kind for f in self.failures]
        if kinds and all(k == "rejected" for k in kinds):
            message = self.failures[-1].upstream_message or "no detail given"
            return GatewayError(
                400,
                f"every agent tried ({', '.join(self.tried)}) rejected the request: {message}",
                code="upstream_rejected",
            )
        retry = retry_after_s(
            self.gateway.router.breaker, time.time(), self.gateway.config.max_retry_after_s
        )
        if kinds and all(k == "rate_limited" for k in kinds):  # clients back off on a 429
            waits = [f.retry_after_s for f in self.failures if f.retry_after_s is not None]
            return GatewayError(
                429,
                f"every agent tried ({', '.join(self.tried)}) is rate limited",
                code="rate_limit_exceeded",
                retry_after_s=min(waits) if waits else retry,
            )
        if "deadline" in kinds or time.monotonic() >= self.plan.deadline:
            text = f"the request's deadline ({self.gateway.config.deadline_s:g} s) passed"
            code = "deadline_exceeded"
        else:
            text = "no eligible agent could answer"
            code = "no_agent_available"
        tried = ", ".join(f"{a}: {f.kind}" for a, f in zip(self.tried, self.failures, strict=False))
        return GatewayError(
            503,
            f"{text} ({tried or 'no agent was available to try'})",
            code=code,
            retry_after_s=retry,
        )

    def _body(self, agent: str, partial: str = "") -> dict[str, Any]:
        chat = self.plan.chat
        body = dict(chat.body)
        body["model"] = self.gateway.endpoint(agent).model
        if chat.stream:  # usage prices the attempt; the client sees it only if it asked
            body["stream_options"] = {
                **(chat.body.get("stream_options") or {}),
                "include_usage": True,
            }
        if partial:
            body["messages"] = [
                *chat.messages,
                {"role": "assistant", "content": partial},
                {"role": "user", "content": self.gateway.config.continue_instruction},
            ]
            if chat.max_tokens_field is not None and chat.max_tokens is not None:
                body[chat.max_tokens_field] = max(
                    1, chat.max_tokens - estimate_tokens(len(partial))
                )
        return body

    # -- non-streaming --------------------------------------------------------------------------
    async def complete(self) -> dict[str, Any]:
        for agent, model_quality in self._candidates():
            started = time.monotonic()
            try:
                answer = await self.gateway.upstream(agent).complete(
                    self._body(agent), self.plan.deadline
                )
            except AttemptFailure as failure:
                self._record(agent, model_quality, started, failure)
                if failure.kind == "deadline":
                    break
                continue
            except Exception as exc:  # a bug on an odd answer: fail over, never a 500
                log.exception(
                    "request %s: handling %s's answer failed", self.plan.request_id, agent
                )
                self._record(
                    agent, model_quality, started, AttemptFailure("malformed", type(exc).__name__)
                )
                continue
            except asyncio.CancelledError:
                self._record(
                    agent, model_quality, started, AttemptFailure("cancelled", "client gone")
                )
                self._finish(False)
                raise
            usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
            text = sum(
                len(c["message"].get("content") or "")
                for c in answer["choices"]
                if isinstance(c["message"].get("content"), str)
            )
            self._record(
                agent,
                model_quality,
                started,
                None,
                ttft_s=time.monotonic() - started,
                usage=usage,
                prompt_tokens=self.plan.chat.prompt_tokens,
                completion_chars=text,
            )
            self.finisher = agent
            self._finish(False)
            answer["tinydancer"] = self.info()
            return answer
        self._finish(False)
        raise self._exhausted()

    # -- streaming ------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[bytes]:
        """SSE bytes; a failure before anything was yielded raises GatewayError instead."""
        chat = self.plan.chat
        stitcher = Stitcher(f"chatcmpl-{self.plan.request_id}", chat.include_usage)
        for agent, model_quality in self._candidates():
            continuing = stitcher.events > 0
            partial = stitcher.partial
            if continuing and stitcher.tool_calls:
                break  # half a tool call cannot be continued by another model
            if continuing:
                self.mid_stream_failovers += 1
            stitcher.start_attempt(continuing)
            relayed_before = stitcher.events
            started = time.monotonic()
            ttft: float | None = None
            prompt_estimate = chat.prompt_tokens + (
                estimate_tokens(len(partial), 2) if partial else 0
            )
            try:
                upstream = self.gateway.upstream(agent)
                async with aclosing(
                    upstream.stream(self._body(agent, partial), self.plan.deadline)
                ) as chunks:
                    async for chunk in chunks:
                        out = stitcher.chunk(chunk)
                        if ttft is None and (out is not None or stitcher.finish is not None):
                            ttft = time.monotonic() - started
                        if out is not None:
                            yield out
            except (AttemptFailure, Exception) as error:
                if isinstance(error, AttemptFailure):
                    failure = error
                else:  # a bug on an odd chunk: fail over, never a broken stream
                    log.exception("request %s: relaying %s failed", self.plan.request_id, agent)
                    failure = AttemptFailure("malformed", type(error).__name__)
                mid_stream = stitcher.events > relayed_before
                if mid_stream and stitcher.attempt_usage is None:
                    stitcher.add_usage(
                        {
                            "prompt_tokens": prompt_estimate,
                            "completion_tokens": estimate_tokens(stitcher.attempt_chars),
                        }
                    )
                self._record(
                    agent,
                    model_quality,
                    started,
                    failure,
                    ttft_s=ttft,
                    usage=stitcher.attempt_usage,
                    prompt_tokens=prompt_estimate,
                    completion_chars=stitcher.attempt_chars,
                    mid_stream=mid_stream,
                    continued=bool(partial),
                )
                if failure.kind == "deadline":
                    break
                continue
            except (asyncio.CancelledError, GeneratorExit):
                self._record(
                    agent,
                    model_quality,
                    started,
                    AttemptFailure("cancelled", "the client went away"),
                    ttft_s=ttft,
                    prompt_tokens=prompt_estimate,
                    completion_chars=stitcher.attempt_chars,
                    mid_stream=stitcher.events > relayed_before,
                    continued=bool(partial),
                )
                self._finish(bool(partial))
                raise
            if stitcher.attempt_usage is None:  # priced from the text; the client's usage too
                stitcher.add_usage(
                    {
                        "prompt_tokens": prompt_estimate,
                        "completion_tokens": estimate_tokens(stitcher.attempt_chars),
                    }
                )
            self._record(
                agent,
                model_quality,
                started,
                None,
                ttft_s=ttft,
                usage=stitcher.attempt_usage,
                prompt_tokens=prompt_estimate,
                completion_chars=stitcher.attempt_chars,
                continued=bool(partial),
            )
            self.finisher = agent
            self._finish(self.mid_stream_failovers > 0)
            yield stitcher.ending(self.info())
            return
        self._finish(False)
        exhausted = self._exhausted()
        if stitcher.events == 0:
            raise exhausted
        yield stitcher.error_event(exhausted.openai_body(), self.info())
