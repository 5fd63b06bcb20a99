"""The chat-completions request body: parsed, checked, and split into what routing reads and
what is forwarded.

Only what the gateway needs is checked (model, messages, stream, stream_options, n,
max_tokens / max_completion_tokens, the `tinydancer` object); every other OpenAI field
is forwarded untouched. Every refusal is a `GatewayError` naming the field (`param`),
in OpenAI's shape, never a 500.

    chat = parse_chat_request(b'{"model": "tinydancer/auto", "messages": [{"role": "user", "content": "hi"}]}', GatewayConfig())
    chat.texts  # ['hi']: what the text encoder reads, one per message
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from tinydancer.errors import GatewayError
from tinydancer.gateway.config import GatewayConfig
from tinydancer.gateway.profiles import RoutingOptions

__all__ = ["ChatRequest", "estimate_tokens", "parse_chat_request"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_PART_FIELD = {  # content part type -> the field it must carry, and that field's JSON type
    "text": ("text", str),
    "image_url": ("image_url", dict),
    "input_audio": ("input_audio", dict),
    "file": ("file", dict),
    "refusal": ("refusal", str),
}
_TEXT_ONLY = frozenset({"system", "developer", "tool", "function"})
CHARS_PER_TOKEN = 4.0  # no upstream tokenizer here: the usual English-text ratio


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A checked request. `body` is what is forwarded (no `tinydancer`; `model` is replaced
    per attempt); `texts` holds one text per message for the encoder."""

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    max_tokens_field: str | None  # which of max_tokens / max_completion_tokens was given
    options: RoutingOptions | None
    texts: list[str]
    prompt_tokens: int  # estimated from the text (CHARS_PER_TOKEN)


def _bad(message: str, param: str | None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code or "invalid_value")


def estimate_tokens(text_chars: int, messages: int = 0) -> int:
    """Tokens of `text_chars` characters in `messages` messages (≈ 4 characters a token,
    plus 4 per message for the chat format)."""
    return math.ceil(text_chars / CHARS_PER_TOKEN) + 4 * messages


def _load(raw: bytes | str | Mapping[str, Any], config: GatewayConfig) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if len(raw) > config.max_body_bytes:
        raise GatewayError(
            413,
            f"request body of {len(raw)} bytes is larger than the {config.max_body_bytes} allowed",
            code="request_too_large",
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"the body is not valid JSON: {exc}", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad(
            f"the body must be a JSON object, got {type(body).__name__}", None, "invalid_json"
        )
    return body


def _content_text(message: dict[str, Any], index: int) -> str:
    """Check one message's content; its text (parts joined by newlines; '' if none)."""
    role = message["role"]
    content = message.get("content")
    where = f"messages[{index}].content"
    if content is None:
        if role == "assistant" and (
            message.get("tool_calls") or message.get("function_call") or message.get("refusal")
        ):
            return ""
        raise _bad(f"{where} is required for a {role} message", where)
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _bad(
            f"{where} must be a string or a non-empty list of content parts, "
            f"got {type(content).__name__}",
            where,
        )
    texts = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _PART_FIELD:
            raise _bad(f"{at}.type must be one of {sorted(_PART_FIELD)}, got {kind!r}", at)
        if role in _TEXT_ONLY and kind != "text":
            raise _bad(f"{at}: a {role} message takes text parts only, got {kind!r}", at)
        name, expected = _PART_FIELD[kind]
        if not isinstance(part.get(name), expected):
            raise _bad(f"{at}.{name} must be a {expected.__name__}", f"{at}.{name}")
        if kind == "text":
            texts.append(part["text"])
    return "\n".join(texts)


def _messages(
    body: dict[str, Any], config: GatewayConfig
) -> tuple[list[dict[str, Any]], list[str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad(
            "messages must be a non-empty list of chat messages", "messages", "missing_messages"
        )
    if len(messages) > config.max_messages:
        raise _bad(
            f"messages: {len(messages)} given, at most {config.max_messages} allowed", "messages"
        )
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(
                f"messages[{i}] must be an object, got {type(message).__name__}", f"messages[{i}]"
            )
        role = message.get("role")
        if role not in ROLES:
            raise _bad(
                f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}",
                f"messages[{i}].role",
            )
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _bad(
                f"messages[{i}].tool_call_id is required for a tool message",
                f"messages[{i}].tool_call_id",
            )
        if "name" in message and not isinstance(message["name"], str):
            raise _bad(f"messages[{i}].name must be a string", f"messages[{i}].name")
        texts.append(_content_text(message, i))
    return messages, texts


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an integer in [{low}, {high}], got {value!r}", name)
    return value


def _options(body: dict[str, Any]) -> RoutingOptions | None:
    raw = body.get("tinydancer")
    if raw is None:
        return None
    try:
        return RoutingOptions.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["tinydancer", *(str(p) for p in first["loc"])])
        raise _bad(f"{where}: {first['msg']} (got {first.get('input')!r})", where) from None


def parse_chat_request(raw: bytes | str | Mapping[str, Any], config: GatewayConfig) -> ChatRequest:
    """Check a chat-completions body (bytes as received, or a parsed object)."""
    body = _load(raw, config)
    model = body.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= 256:
        raise _bad("model must be a non-empty string of at most 256 characters", "model")
    messages, texts = _messages(body, config)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad(f"stream must be true or false, got {stream!r}", "stream")
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not stream:
            raise _bad("stream_options is only allowed when stream is true", "stream_options")
        if not isinstance(stream_options, dict):
            raise _bad("stream_options must be an object", "stream_options")
        include_usage = stream_options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise _bad(
                "stream_options.include_usage must be true or false",
                "stream_options.include_usage",
            )
    n = _int_field(body, "n", 1, 128)
    if n is not None and n != 1:
        raise _bad(
            f"n = {n}: the gateway returns one choice per request (n must be 1); send "
            "several requests instead",
            "n",
            "unsupported_value",
        )
    limit = config.max_tokens_limit
    max_tokens = _int_field(body, "max_completion_tokens", 1, limit)
    field = "max_completion_tokens" if max_tokens is not None else None
    if max_tokens is None:
        max_tokens = _int_field(body, "max_tokens", 1, limit)
        field = "max_tokens" if max_tokens is not None else None
    options = _options(body)
    forwarded = {k: v for k, v in body.items() if k != "tinydancer"}
    return ChatRequest(
        body=forwarded,
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        max_tokens_field=field,
        options=options,
        texts=texts,
        prompt_tokens=estimate_tokens(sum(len(t) for t in texts), len(texts)),
    )
