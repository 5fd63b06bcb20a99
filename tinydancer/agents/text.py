"""Text requests: `AgentRequest(text=...)` and `AgentRequest(chat=[...])` become message
embeddings before routing, every text of a batch in one encoder call.

Chat messages follow OpenAI's shapes: `content` a string, a list of content parts (text
parts joined with newlines, other parts ignored for routing) or null (an assistant
message with `tool_calls`). Each message with text is one time step, in order; the
router keeps the latest `max_messages`.

    texts = chat_texts([{"role": "user", "content": "hi"}], "chat")   # ['hi']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from tinydancer.agents.types import AgentDecision, AgentRequest
from tinydancer.errors import InvalidRequestError, TinyDancerError

__all__ = [
    "CHAT_ROLES",
    "Encoder",
    "chat_texts",
    "embed_each",
    "is_text_request",
    "with_embeddings",
    "with_tokens",
]

CHAT_ROLES = ("assistant", "developer", "system", "tool", "user")


class Encoder(Protocol):
    """What routing needs from a text encoder (`td.TextEncoder` is one)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_counted(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


def _content(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise InvalidRequestError(
                    f"{where}[{j}]", part, 'a content part: an object with a "type"'
                )
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise InvalidRequestError(
                        f"{where}[{j}].text", part.get("text"), "a string (a text part's text)"
                    )
                texts.append(part["text"])
        return "\n".join(texts)
    raise InvalidRequestError(where, content, "a string, a list of content parts, or null")


def chat_texts(chat: Any, field: str = "chat") -> list[str]:
    """The text of every message that has some, in order (checked on the way)."""
    if isinstance(chat, str | bytes) or not isinstance(chat, Sequence) or not chat:
        raise InvalidRequestError(
            field, chat, 'a non-empty list of messages {"role": ..., "content": ...}'
        )
    texts = []
    for i, message in enumerate(chat):
        where = f"{field}[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(where, message, 'a message {"role": ..., "content": ...}')
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise InvalidRequestError(f"{where}.role", role, f"one of {list(CHAT_ROLES)}")
        text = _content(message.get("content"), f"{where}.content")
        if text:
            texts.append(text)
    if not texts:
        raise InvalidRequestError(
            field, f"{len(chat)} message(s) without text", "a message with text"
        )
    return texts


def is_text_request(request: AgentRequest) -> bool:
    return request.text is not None or request.chat is not None


def _texts_of(request: AgentRequest, where: str) -> list[str]:
    given = [
        n for n in ("embedding", "messages", "text", "chat") if getattr(request, n) is not None
    ]
    if len(given) != 1:
        raise InvalidRequestError(
            f"{where}.{given[0] if given else 'embedding'}",
            f"{' and '.join(given) or 'none'} given",
            "exactly one of embedding, messages, text, chat",
        )
    if request.text is not None:
        if not isinstance(request.text, str):
            raise InvalidRequestError(f"{where}.text", request.text, "a string")
        return [request.text]
    return chat_texts(request.chat, f"{where}.chat" if where != "request" else "chat")


def with_embeddings(
    requests: Sequence[AgentRequest], encoder: Encoder, max_messages: int
) -> tuple[Sequence[AgentRequest], list[int | None] | None]:
    """`requests` with text and chat replaced by message embeddings (one encoder call for
    the batch), and the tokens each request's kept texts used (None: not a text request;
    no list at all when no request has text, the common case, which costs one scan)."""
    if not any(r.text is not None or r.chat is not None for r in requests):
        return requests, None
    single = len(requests) == 1
    spans: list[tuple[int, int] | None] = []
    texts: list[str] = []
    for i, request in enumerate(requests):
        if not is_text_request(request):
            spans.append(None)
            continue
        kept = _texts_of(request, "request" if single else f"requests[{i}]")[-max_messages:]
        spans.append((len(texts), len(texts) + len(kept)))
        texts.extend(kept)
    vectors, counts = encoder.encode_counted(texts)
    out: list[AgentRequest] = []
    tokens: list[int | None] = []
    for request, span in zip(requests, spans, strict=True):
        if span is None:
            out.append(request)
            tokens.append(None)
            continue
        start, stop = span
        out.append(
            dataclasses.replace(request, text=None, chat=None, messages=list(vectors[start:stop]))
        )
        tokens.append(int(counts[start:stop].sum()))
    return out, tokens


def embed_each(
    requests: Sequence[AgentRequest], encoder: Encoder, max_messages: int
) -> tuple[list[Any], list[int | None]]:
    """Like `with_embeddings`, but a request that cannot be encoded becomes its error
    (in place) and the others still go through (one encoder call when all are fine)."""
    try:
        embedded, tokens = with_embeddings(requests, encoder, max_messages)
        return list(embedded), tokens or [None] * len(requests)
    except TinyDancerError:
        out: list[Any] = []
        counts: list[int | None] = []
        for request in requests:
            try:
                one, count = with_embeddings([request], encoder, max_messages)
                out.append(one[0])
                counts.append(count[0] if count else None)
            except TinyDancerError as exc:
                out.append(exc)
                counts.append(None)
        return out, counts


def with_tokens(
    decisions: list[AgentDecision], tokens: list[int | None] | None
) -> list[AgentDecision]:
    """Each text request's decision records the tokens its texts used."""
    if tokens is None:
        return decisions
    return [
        d if n is None else dataclasses.replace(d, text_tokens=n)
        for d, n in zip(decisions, tokens, strict=True)
    ]
