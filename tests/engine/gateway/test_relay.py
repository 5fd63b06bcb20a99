"""SSE parsing and the stitching of upstream chunks into one OpenAI stream."""

from __future__ import annotations

import orjson

from tinydancer.gateway.relay import DONE, SSEParser, Stitcher


def chunk(content=None, *, id="up-1", role=None, finish=None, model="m"):
    delta = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"id": id, "object": "chat.completion.chunk", "created": 7, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def events(raw: bytes) -> list[dict]:
    return [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]


def test_the_parser_joins_data_lines_and_ignores_comments_and_fields():
    parser = SSEParser()
    lines = [
        ": keep-alive",
        "event: message",
        'data: {"a":',
        "data: 1}",
        "id: 3",
        "",
        "",
        "data:[DONE]",
    ]
    out = [parser.feed(line) for line in lines]
    assert [o for o in out if o is not None] == ['{"a":\n1}']
    assert parser.flush() == "[DONE]" and parser.flush() is None


def test_a_stitched_stream_keeps_one_id_one_role_and_ends_with_the_tinydancer_object():
    stitcher = Stitcher("chatcmpl-fallback", include_usage=False)
    stitcher.start_attempt(continuing=False)
    sent = [stitcher.chunk(chunk(role="assistant", content="")), stitcher.chunk(chunk("Hel"))]
    stitcher.start_attempt(continuing=True)  # the first upstream dropped; another continues
    sent += [
        stitcher.chunk(chunk(role="assistant", content="", id="up-2", model="n")),  # dropped: blank
        stitcher.chunk(chunk("lo", id="up-2", model="n")),
        stitcher.chunk(chunk(finish="stop", id="up-2", model="n")),  # held back
    ]
    assert sent[2] is None and sent[4] is None
    relayed = [e for raw in sent if raw for e in events(raw)]
    assert [e["id"] for e in relayed] == ["up-1"] * 3 and stitcher.partial == "Hello"
    assert [e["choices"][0]["delta"] for e in relayed] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
    ]
    end = stitcher.ending({"agent": "n"})
    assert end.endswith(DONE)
    (last,) = events(end)
    assert last["choices"][0]["finish_reason"] == "stop" and last["tinydancer"] == {"agent": "n"}
    assert last["id"] == "up-1" and last["created"] == 7


def test_usage_is_summed_over_attempts_and_sent_in_its_own_chunk_when_asked():
    stitcher = Stitcher("x", include_usage=True)
    stitcher.start_attempt(False)
    stitcher.add_usage(
        {"prompt_tokens": 10, "completion_tokens": 3}
    )  # an estimate for a dropped one
    stitcher.start_attempt(True)
    assert (
        stitcher.chunk(
            {
                "id": "u",
                "choices": [],
                "usage": {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19},
            }
        )
        is None
    )
    stitcher.chunk(chunk("x"))
    finish, usage = events(stitcher.ending({"agent": "b"}))
    assert "tinydancer" not in finish and usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 24, "completion_tokens": 8, "total_tokens": 32}
    assert usage["tinydancer"] == {"agent": "b"}


def test_an_answer_without_a_finishing_chunk_gets_one_and_tool_calls_are_noticed():
    stitcher = Stitcher("chatcmpl-own", include_usage=False)
    stitcher.start_attempt(False)
    stitcher.chunk(
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}, "not a choice"]}
    )
    assert stitcher.tool_calls and stitcher.id == "chatcmpl-own"  # no id upstream: our own
    (last,) = events(stitcher.ending({}))
    assert last["choices"][0]["finish_reason"] == "stop" and last["id"] == "chatcmpl-own"
    error = events(stitcher.error_event({"error": {"message": "m"}}, {"agent": None}))
    assert error == [{"error": {"message": "m"}, "tinydancer": {"agent": None}}]
