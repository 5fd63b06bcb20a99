"""The fake upstreams' HTTP side: one small HTTP/1.1 server (keep-alive, raw asyncio) per
fake agent, answering OpenAI's chat completions (streaming and not) and `/v1/models` as
its `FakeBehaviour` says. `fake_upstream.FakeUpstreams` runs a fleet of them."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["FakeBehaviour", "FakeServer", "RecordedRequest", "message_texts"]


@dataclass(frozen=True)
class FakeBehaviour:
    """How one fake agent answers (rates are per request, in [0, 1])."""

    latency_ms: float = 0.0  # before the first byte of the answer
    tokens: int = 20  # words in an answer (capped by max_tokens)
    token_rate_per_s: float = 0.0  # 0 = all chunks at once
    quality: float = 0.8  # mean quality of its answers
    error_rate: float = 0.0  # HTTP 500
    rate_limit_rate: float = 0.0  # HTTP 429 with Retry-After
    retry_after_s: float = 1.0
    drop_rate: float = 0.0  # the connection drops after drop_after_chunks content chunks
    drop_after_chunks: int = 3
    stall_after_chunks: int | None = None  # stream: stops sending (but stays open) after that many
    error_event_after_chunks: int | None = (
        None  # stream: an error event after that many, then the end
    )
    hang: bool = False  # never answers
    reject: bool = False  # HTTP 400 (its message quotes the Authorization header it got)
    api_key: str = ""  # if set, a request without "Bearer <api_key>" gets HTTP 401
    garbage: bool = False  # 200 with a body that is not a chat completion
    model: str = ""  # the upstream's model name ("" = the agent's name)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def message_texts(messages: Any) -> list[str]:
    out = []
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append(content if isinstance(content, str) else "")
    return out


class FakeServer:
    """One fake agent's HTTP/1.1 server; `behaviours[name]` is read per request (so it can change)."""

    def __init__(self, behaviours: Mapping[str, FakeBehaviour], name: str, seed: int) -> None:
        self.behaviours, self.name, self.seed = behaviours, name, seed
        self.count = 0
        self.recorded: deque[RecordedRequest] = deque(maxlen=200)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self, host: str) -> None:
        self.server = await asyncio.start_server(self.connection, host, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self.writers):
                writer.transport.abort()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.server.wait_closed()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(length) if length else b""
                keep = await self.respond(method, path, headers, raw, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # a handler must not end cancelled: asyncio would log it as an error
        finally:
            self.writers.discard(writer)
            if task is not None:
                self.tasks.discard(task)
            writer.close()

    @staticmethod
    def head(status: int, kind: str, length: int | None, extra: str = "") -> bytes:
        size = (
            f"content-length: {length}\r\n"
            if length is not None
            else "transfer-encoding: chunked\r\n"
        )
        return f"HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\n{size}{extra}\r\n".encode()

    def json(self, writer: asyncio.StreamWriter, status: int, body: Any, extra: str = "") -> None:
        raw = orjson.dumps(body)
        writer.write(self.head(status, "application/json", len(raw), extra) + raw)

    async def respond(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False = the connection must end."""
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.recorded.append(
            RecordedRequest(method, path, headers, body if isinstance(body, dict) else None)
        )
        if method == "GET" and path.endswith("/models"):
            self.json(
                writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            )
            return True
        if method != "POST" or not path.endswith("/chat/completions") or not isinstance(body, dict):
            self.json(
                writer, 404 if method == "GET" else 400, {"error": {"message": "bad request"}}
            )
            return True
        behaviour = self.behaviours[self.name]
        number, self.count = self.count, self.count + 1
        rng = random.Random(f"{self.seed}:{self.name}:{number}")
        fail, limit, drop = rng.random(), rng.random(), rng.random()
        if behaviour.hang:
            await asyncio.sleep(3600)
            return False
        authorization = headers.get("authorization", "")
        if behaviour.api_key and authorization != f"Bearer {behaviour.api_key}":
            self.json(
                writer, 401, {"error": {"message": "bad key", "type": "invalid_request_error"}}
            )
            return True
        if behaviour.reject:  # an upstream that quotes what it got: the gateway must redact it
            message = f"this model cannot take the request (Authorization: {authorization})"
            self.json(writer, 400, {"error": {"message": message, "type": "invalid_request_error"}})
            return True
        if behaviour.latency_ms > 0:
            await asyncio.sleep(behaviour.latency_ms / 1e3)
        if fail < behaviour.error_rate:
            self.json(
                writer, 500, {"error": {"message": "fake upstream error", "type": "server_error"}}
            )
            return True
        if limit < behaviour.rate_limit_rate:
            self.json(
                writer,
                429,
                {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                f"retry-after: {behaviour.retry_after_s:g}\r\n",
            )
            return True
        if behaviour.garbage:
            writer.write(self.head(200, "application/json", 9) + b"not json!")
            return True
        words, reason = self.words(behaviour, body)
        dropping = drop < behaviour.drop_rate
        if body.get("stream"):
            return await self.stream(writer, behaviour, body, words, reason, dropping)
        if dropping:  # the connection ends halfway through the body
            writer.write(self.head(200, "application/json", 1000) + b'{"id": "chatcmpl-')
            await writer.drain()
            return False
        if behaviour.token_rate_per_s > 0:
            await asyncio.sleep(len(words) / behaviour.token_rate_per_s)
        text = "".join(words)
        self.json(
            writer,
            200,
            {
                "id": f"chatcmpl-fake-{self.name}-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": reason,
                    }
                ],
                "usage": self.usage(body, len(words)),
            },
        )
        return True

    @property
    def model(self) -> str:
        return self.behaviours[self.name].model or self.name

    def words(self, behaviour: FakeBehaviour, body: dict[str, Any]) -> tuple[list[str], str]:
        """The answer's chunks of text (continuing a partial answer if asked to) and its finish_reason."""
        messages = body.get("messages") or []
        start = 0
        if (
            len(messages) >= 2
            and isinstance(messages[-2], dict)
            and messages[-2].get("role") == "assistant"
        ):
            start = len(message_texts([messages[-2]])[0].split())
        count = max(0, behaviour.tokens - start)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        reason = "stop"
        if isinstance(cap, int) and cap < count:
            count, reason = cap, "length"
        return [
            ("" if i == 0 and start == 0 else " ") + f"{i}:{self.name}"
            for i in range(start, start + count)
        ], reason

    @staticmethod
    def usage(body: dict[str, Any], completion: int) -> dict[str, int]:
        prompt = sum(len(t.split()) for t in message_texts(body.get("messages")))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def stream(
        self,
        writer: asyncio.StreamWriter,
        behaviour: FakeBehaviour,
        body: dict[str, Any],
        words: list[str],
        reason: str,
        dropping: bool,
    ) -> bool:
        writer.write(self.head(200, "text/event-stream", None))
        base = {"id": f"chatcmpl-fake-{self.name}-{self.count}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model}  # fmt: skip

        def event(data: Any) -> bytes:
            payload = (
                b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"
            )
            return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return event(
                {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            )

        writer.write(chunk({"role": "assistant", "content": ""}))
        gap = 1.0 / behaviour.token_rate_per_s if behaviour.token_rate_per_s > 0 else 0.0
        for i, word in enumerate(words):
            if dropping and i == behaviour.drop_after_chunks:
                await writer.drain()
                return False  # no terminating chunk: the client sees an incomplete body
            if i == behaviour.stall_after_chunks:
                await writer.drain()
                await asyncio.sleep(3600)
                return False
            if i == behaviour.error_event_after_chunks:
                error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
                writer.write(event(error) + event(b"[DONE]") + b"0\r\n\r\n")
                await writer.drain()
                return True
            if gap:
                await writer.drain()
                await asyncio.sleep(gap)
            writer.write(chunk({"content": word}))
        writer.write(chunk({}, reason))
        if (body.get("stream_options") or {}).get("include_usage"):
            writer.write(event({**base, "choices": [], "usage": self.usage(body, len(words))}))
        writer.write(event(b"[DONE]") + b"0\r\n\r\n")
        await writer.drain()
        return True
