"""Server-sent events in and out, and the stitching of several upstreams' chunks into one
well-formed OpenAI stream.

OpenAI's stream: `data: <chat.completion.chunk JSON>` events, each with `choices[].delta`
(role first, then content or tool-call pieces) and a final `finish_reason`; with
`stream_options.include_usage` one last chunk with `choices: []` and `usage`; then
`data: [DONE]`. A `Stitcher` rewrites every upstream chunk under one completion `id`
(the first upstream's), drops the repeated role of a continuing agent, keeps the partial
text (what a continuation sends back), holds the finishing chunk back, sums the usage,
and ends the stream itself: finishing chunk, usage chunk if asked for (the `tinydancer`
object on the last of them), `[DONE]`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

__all__ = ["DONE", "SSEParser", "Stitcher", "encode_event"]

DONE = b"data: [DONE]\n\n"


def encode_event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class SSEParser:
    """Lines in (without their line ending), the data of each complete event out."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        # comments (":"), event:, id: and retry: lines carry nothing the gateway relays
        return None

    def flush(self) -> str | None:
        """The last event of a stream that ended without a blank line."""
        return self.feed("")


class Stitcher:
    """One client stream from the chunks of one or more upstream attempts."""

    def __init__(self, fallback_id: str, include_usage: bool) -> None:
        self.fallback_id = fallback_id
        self.include_usage = include_usage
        self.id: str | None = None
        self.created: int | None = None
        self.model: str | None = None
        self.parts: list[str] = []  # the answer's text so far, every attempt's
        self.tool_calls = False  # tool-call pieces were relayed: a continuation cannot mend them
        self.finish: dict[str, Any] | None = None
        self.usage: dict[str, int] = {}
        self.events = 0  # events relayed to the client
        self.attempt_chars = 0  # text relayed in the current attempt
        self.attempt_usage: dict[str, int] | None = None
        self._continuing = False

    @property
    def partial(self) -> str:
        return "".join(self.parts)

    def start_attempt(self, continuing: bool) -> None:
        self._continuing = continuing
        self.attempt_chars = 0
        self.attempt_usage = None

    def add_usage(self, usage: dict[str, Any]) -> None:
        counts = {
            k: int(v)
            for k, v in usage.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        self.attempt_usage = counts
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            if key in counts:
                self.usage[key] = self.usage.get(key, 0) + counts[key]

    def chunk(self, chunk: dict[str, Any]) -> bytes | None:
        """Rewrite one upstream chunk; the bytes to relay now, or None (held or absorbed)."""
        usage = chunk.pop("usage", None)
        if isinstance(usage, dict):
            self.add_usage(usage)
        choices = chunk.get("choices")
        if not choices:
            return None  # the usage chunk: the stitched stream sends its own at the end
        if self.id is None:
            self.id = chunk.get("id") if isinstance(chunk.get("id"), str) else self.fallback_id
            created = chunk.get("created")
            self.created = created if isinstance(created, int) else int(time.time())
            self.model = chunk.get("model") if isinstance(chunk.get("model"), str) else None
        chunk["id"] = self.id
        chunk["created"] = self.created
        finished = False
        blank = True  # nothing but an empty delta (a continuing agent's opening chunk)
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if self._continuing:
                    delta.pop("role", None)
                text = delta.get("content")
                if isinstance(text, str) and text:
                    self.parts.append(text)
                    self.attempt_chars += len(text)
                if delta.get("tool_calls") or delta.get("function_call"):
                    self.tool_calls = True
                blank = blank and all(v in ("", None) for v in delta.values())
            if choice.get("finish_reason") is not None:
                finished = True
        if finished:
            self.finish = chunk
            return None
        if blank and self._continuing:
            return None
        self.events += 1
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def ending(self, info: dict[str, Any]) -> bytes:
        """The last events: the finishing chunk, the usage chunk if asked for, `[DONE]`;
        `info` (the `tinydancer` object) rides on the last data event."""
        finish = self.finish or {
            "id": self.id or self.fallback_id,
            "object": "chat.completion.chunk",
            "created": self.created or int(time.time()),
            "model": self.model or "",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        if not self.include_usage:
            return encode_event({**finish, "tinydancer": info}) + DONE
        usage_chunk = {
            "id": finish["id"],
            "object": "chat.completion.chunk",
            "created": finish.get("created"),
            "model": finish.get("model", self.model or ""),
            "choices": [],
            "usage": self.total_usage(),
            "tinydancer": info,
        }
        return encode_event(finish) + encode_event(usage_chunk) + DONE

    def total_usage(self) -> dict[str, int]:
        """Every attempt's usage summed (an attempt without one was estimated from its text)."""
        usage = dict(self.usage)
        if usage:
            usage["total_tokens"] = usage.get("prompt_tokens", 0) + usage.get(
                "completion_tokens", 0
            )
        return usage

    def error_event(self, error: dict[str, Any], info: dict[str, Any]) -> bytes:
        """A stream that cannot be completed: an OpenAI error object as the last event."""
        return encode_event({**error, "tinydancer": info}) + DONE
