"""The chat-completions body: what is checked, what is forwarded untouched."""

from __future__ import annotations

import pytest

from tinydancer.errors import GatewayError
from tinydancer.gateway.config import GatewayConfig
from tinydancer.gateway.contract import estimate_tokens, parse_chat_request

CONFIG = GatewayConfig()
USER = {"role": "user", "content": "hello"}


def parse(**body):
    return parse_chat_request({"model": "tinydancer/auto", "messages": [USER], **body}, CONFIG)


def test_every_field_the_gateway_does_not_read_is_forwarded_untouched():
    extra = {
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "response_format": {"type": "json_object"},
        "user": "u-1",
        "logit_bias": {"50256": -100},
        "some_future_field": [1, 2],
    }
    chat = parse(**extra, tinydancer={"optimize_for": "cost"}, max_tokens=64)
    assert chat.body == {"model": "tinydancer/auto", "messages": [USER], **extra, "max_tokens": 64}
    assert chat.options is not None and chat.options.optimize_for == "cost"
    assert (chat.max_tokens, chat.max_tokens_field, chat.stream) == (64, "max_tokens", False)


def test_bytes_are_parsed_and_text_is_taken_from_every_message_shape():
    raw = (
        b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": ['
        b'{"role": "system", "content": [{"type": "text", "text": "be brief"}]},'
        b'{"role": "user", "content": [{"type": "text", "text": "what is"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},'
        b'{"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function"}]},'
        b'{"role": "tool", "tool_call_id": "c1", "content": "42"}]}'
    )
    chat = parse_chat_request(raw, CONFIG)
    assert chat.texts == ["be brief", "what is", "", "42"]
    assert chat.stream and chat.include_usage
    assert chat.prompt_tokens == estimate_tokens(len("be brief" + "what is" + "42"), 4)


def test_max_completion_tokens_wins_over_max_tokens():
    chat = parse(max_tokens=10, max_completion_tokens=20)
    assert (chat.max_tokens, chat.max_tokens_field) == (20, "max_completion_tokens")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": [USER] * 2049}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": "x", "name": 5}]}, "messages[0].name"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
        ({"model": ""}, "model"),
        ({"model": 12}, "model"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 262_145}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
        ({"tinydancer": {"optimize_for": "speed"}}, "tinydancer.optimize_for"),
        ({"tinydancer": {"constraints": {"min_quality": 2}}}, "tinydancer.constraints.min_quality"),
        ({"tinydancer": {"weights": {"cost": -1}}}, "tinydancer.weights.cost"),
        ({"tinydancer": {"willingness_to_pay": "1"}}, "tinydancer.willingness_to_pay"),
        ({"tinydancer": "cost"}, "tinydancer"),
    ],
)
def test_a_malformed_body_is_a_400_naming_the_field(body, param):
    full = {"model": "tinydancer/auto", "messages": [USER], **body}
    with pytest.raises(GatewayError) as caught:
        parse_chat_request(full, CONFIG)
    error = caught.value
    assert error.status == 400 and error.param == param, str(error)
    assert error.openai_body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "raw", [b"{", b"[1, 2]", b'"text"', b"\xff\xfe"], ids=["cut", "array", "string", "binary"]
)
def test_a_body_that_is_not_a_json_object_is_a_400(raw):
    with pytest.raises(GatewayError) as caught:
        parse_chat_request(raw, CONFIG)
    assert caught.value.status == 400 and caught.value.code == "invalid_json"


def test_a_body_over_the_limit_is_a_413():
    small = GatewayConfig(max_body_bytes=1024)
    with pytest.raises(GatewayError) as caught:
        parse_chat_request(b" " * 1025, small)
    assert caught.value.status == 413 and caught.value.code == "request_too_large"
