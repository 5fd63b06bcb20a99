"""One attempt against one agent's upstream: the HTTP call, its timeouts, and what went wrong.

Every way an attempt can fail is an `AttemptFailure` with a `kind` (`FAILURE_KINDS`);
`counts_against_agent` says whether the agent's breaker and metrics should hear of it
(a request the upstream rejects as invalid, a client that went away or the gateway's own
deadline are not the agent's fault). Waits are bounded twice: httpx's read timeout
(the endpoint's `timeout_s`, per socket read: a stall) and, once less than `timeout_s` is
left of the request's deadline, `asyncio.timeout` with what is left (httpx's timeouts
apply per read, so a trickling answer would outlast them). Between the two, no read
waits past the deadline, and the common case pays no timer per chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from tinydancer.agents.endpoint import Endpoint
from tinydancer.gateway.relay import SSEParser

__all__ = [
    "FAILURE_KINDS",
    "NOT_THE_AGENTS_FAULT",
    "AttemptFailure",
    "Upstream",
    "redact",
]

FAILURE_KINDS = {
    "connect_error": "could not connect (refused, reset, DNS)",
    "timeout": "no first byte within the endpoint's timeout_s",
    "server_error": "HTTP 5xx or 408",
    "rate_limited": "HTTP 429 (its Retry-After cools the agent down)",
    "auth_error": "HTTP 401 / 403 (the agent's key or account)",
    "rejected": "another HTTP 4xx: the upstream refused this request",
    "malformed": "an answer that is not a chat completion (or not a stream of chunks)",
    "dropped": "the connection ended before the answer did",
    "stalled": "no chunk within timeout_s in the middle of an answer",
    "upstream_error": "an error event inside the stream",
    "deadline": "the request's total deadline passed",
    "cancelled": "the client went away",
}
NOT_THE_AGENTS_FAULT = frozenset({"rejected", "deadline", "cancelled"})
_ERROR_BODY_BYTES = 65_536


class AttemptFailure(Exception):
    """Why an attempt failed; `detail` is safe to log (secrets redacted)."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        upstream_message: str | None = None,
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after_s = retry_after_s
        self.upstream_message = upstream_message
        super().__init__(f"{kind}: {detail}")

    @property
    def counts_against_agent(self) -> bool:
        return self.kind not in NOT_THE_AGENTS_FAULT


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (a number of seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if seconds == seconds else None


class Upstream:
    """Calls one agent's endpoint through a shared client; the key is read from `environ`
    when the request is built and goes nowhere else."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoint: Endpoint,
        environ: Mapping[str, str],
        max_body_bytes: int,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.environ = environ
        self.max_body_bytes = max_body_bytes
        wait = endpoint.timeout_s
        self.timeout = httpx.Timeout(wait, connect=min(connect_timeout_s, wait))

    @property
    def secrets(self) -> list[str]:
        return self.endpoint.secrets(self.environ)

    def _request(self, body: dict[str, Any], stream: bool) -> httpx.Request:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            **self.endpoint.headers,
        }
        if self.endpoint.api_key_env is not None:
            headers["authorization"] = f"Bearer {self.environ.get(self.endpoint.api_key_env, '')}"
        return self.client.build_request(
            "POST",
            self.endpoint.chat_url,
            content=orjson.dumps(body),
            headers=headers,
            timeout=self.timeout,
        )

    def _wait(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AttemptFailure("deadline", "the request's deadline passed")
        return min(self.endpoint.timeout_s, left)

    async def _open(self, body: dict[str, Any], stream: bool, deadline: float) -> httpx.Response:
        """Send and wait for the status line and headers; non-200 answers become failures."""
        wait = self._wait(deadline)
        try:
            async with asyncio.timeout(wait):
                response = await self.client.send(self._request(body, stream), stream=True)
        except TimeoutError:
            kind = "deadline" if time.monotonic() >= deadline else "timeout"
            raise AttemptFailure(kind, f"no response within {wait:.3g} s") from None
        except httpx.TimeoutException as exc:
            raise AttemptFailure("timeout", type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise AttemptFailure(
                "connect_error", redact(f"{type(exc).__name__}: {exc}", self.secrets)
            ) from None
        if response.status_code == 200:
            return response
        try:
            text = await self._read(response, deadline, _ERROR_BODY_BYTES, truncate=True)
        except AttemptFailure:
            text = b""
        finally:
            await response.aclose()
        raise self._status_failure(response, text)

    def _status_failure(self, response: httpx.Response, text: bytes) -> AttemptFailure:
        status = response.status_code
        message = None
        try:
            error = orjson.loads(text).get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                message = redact(error["message"][:500], self.secrets)
        except (orjson.JSONDecodeError, AttributeError):
            pass
        detail = f"HTTP {status}"
        if status == 429:
            retry = retry_after_seconds(response.headers.get("retry-after"), time.time())
            return AttemptFailure("rate_limited", detail, status=status, retry_after_s=retry)
        if status >= 500 or status == 408:
            return AttemptFailure("server_error", detail, status=status)
        if status in (401, 403):
            return AttemptFailure("auth_error", detail, status=status)
        if 400 <= status < 500:
            return AttemptFailure("rejected", detail, status=status, upstream_message=message)
        return AttemptFailure("malformed", f"unexpected {detail}", status=status)

    async def _read(
        self, response: httpx.Response, deadline: float, limit: int, *, truncate: bool = False
    ) -> bytes:
        parts: list[bytes] = []
        size = 0
        iterator = response.aiter_bytes()
        while True:
            try:
                part = await self._next(iterator, deadline)
            except StopAsyncIteration:
                return b"".join(parts)
            parts.append(part)
            size += len(part)
            if size > limit:
                if truncate:
                    return b"".join(parts)[:limit]
                raise AttemptFailure("malformed", f"an answer larger than {limit} bytes")

    async def _next(self, iterator: AsyncIterator[Any], deadline: float) -> Any:
        """The next item of a response body, bounded by timeout_s and the deadline."""
        left = deadline - time.monotonic()
        try:
            if left >= self.endpoint.timeout_s:  # httpx's read timeout bounds the wait
                return await anext(iterator)
            if left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left):
                return await anext(iterator)
        except (TimeoutError, httpx.TimeoutException):
            kind = "deadline" if time.monotonic() >= deadline else "stalled"
            raise AttemptFailure(
                kind, f"nothing arrived within {min(left, self.endpoint.timeout_s):.3g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise AttemptFailure("dropped", type(exc).__name__) from None

    async def _drain(self, lines: AsyncIterator[str], deadline: float) -> None:
        """Read what follows [DONE] (the end of the chunked body) so that the connection
        goes back to the pool instead of being closed."""
        try:
            async with asyncio.timeout(max(0.0, min(1.0, deadline - time.monotonic()))):
                async for _ in lines:
                    pass
        except (TimeoutError, httpx.HTTPError):
            pass

    async def complete(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """A non-streaming answer, checked to be a chat completion."""
        response = await self._open(body, False, deadline)
        try:
            raw = await self._read(response, deadline, self.max_body_bytes)
        finally:
            await response.aclose()
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AttemptFailure("malformed", "the answer is not JSON") from None
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices)
        ):
            raise AttemptFailure("malformed", "the answer has no choices[].message")
        return answer

    async def stream(
        self, body: dict[str, Any], deadline: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The answer's chunks as parsed objects; ends at `[DONE]` (or at the end of a
        stream whose answer had finished); failures raise AttemptFailure."""
        response = await self._open(body, True, deadline)
        try:
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise AttemptFailure("malformed", f"a stream of content-type {kind[:60]!r}")
            lines = response.aiter_lines()
            parser = SSEParser()
            finished = started = False
            while True:
                try:
                    data = parser.feed(await self._next(lines, deadline))
                except AttemptFailure as failure:
                    if failure.kind == "stalled" and not started:  # no chunk yet: no first byte
                        raise AttemptFailure("timeout", failure.detail) from None
                    raise
                except StopAsyncIteration:
                    data = parser.flush()
                    if data is None:
                        if finished:
                            return
                        raise AttemptFailure("dropped", "the stream ended before [DONE]") from None
                if data is None:
                    continue
                if data == "[DONE]":
                    await self._drain(lines, deadline)
                    return
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise AttemptFailure("malformed", "a data event that is not JSON") from None
                if not isinstance(chunk, dict):
                    raise AttemptFailure("malformed", "a data event that is not an object")
                if "error" in chunk:
                    raise AttemptFailure("upstream_error", "an error event in the stream")
                choices = chunk.get("choices")
                if not isinstance(choices, list):
                    raise AttemptFailure("malformed", "a chunk without choices")
                finished = finished or any(
                    isinstance(c, dict) and c.get("finish_reason") is not None for c in choices
                )
                started = True
                yield chunk
        finally:
            await response.aclose()
