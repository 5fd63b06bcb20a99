"""Text and chat requests in agent mode: the same decisions as the embeddings they encode
to, OpenAI's message shapes, the message cap, the cache across turns, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tinydancer import AgentRequest, InvalidRequestError
from tinydancer.agents.text import chat_texts
from tinydancer.gateway import Gateway

from .test_router import make_router

CHAT = [
    {"role": "system", "content": "You are a careful assistant."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Fix this bug:"},
            {"type": "image_url", "image_url": {"url": "data:,"}},
            {"type": "text", "text": "x = 1 / 0"},
        ],
    },
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
    {"role": "tool", "content": "ZeroDivisionError", "tool_call_id": "c1"},
    {"role": "developer", "content": "Answer briefly."},
]


def _same(a, b) -> None:
    assert (a.agent, a.ranked) == (b.agent, b.ranked)
    assert a.confidence == pytest.approx(b.confidence)


def test_chat_texts_follow_openais_content_shapes():
    assert chat_texts(CHAT) == [
        "You are a careful assistant.",
        "Fix this bug:\nx = 1 / 0",  # text parts joined, the image ignored
        "ZeroDivisionError",  # the tool-call message without content is no time step
        "Answer briefly.",
    ]


@pytest.mark.parametrize(
    ("chat", "field"),
    [
        ([], "chat"),
        ("hello", "chat"),
        ([{"role": "robot", "content": "hi"}], "chat[0].role"),
        ([{"role": "user", "content": 42}], "chat[0].content"),
        ([{"role": "user", "content": [{"text": "no type"}]}], "chat[0].content[0]"),
        ([{"role": "user", "content": [{"type": "text", "text": 7}]}], "chat[0].content[0].text"),
        ([{"role": "assistant", "content": None}], "chat"),  # nothing to route on
        (["not a message"], "chat[0]"),
    ],
    ids=["empty", "string", "role", "content", "part-type", "part-text", "no-text", "message"],
)
def test_bad_chats_name_the_field(chat, field):
    with pytest.raises(InvalidRequestError) as info:
        chat_texts(chat)
    assert info.value.field == field


def test_a_text_request_decides_as_its_embedding_does(encoder):
    prompt = "Prove that there are infinitely many primes."
    by_text = make_router(seed=3, encoder=encoder).route(AgentRequest(text=prompt))
    by_vector = make_router(seed=3).route(AgentRequest(embedding=encoder.encode([prompt])[0]))
    _same(by_text, by_vector)
    assert by_text.text_tokens == encoder.encode_counted([prompt])[1][0]
    assert by_text.to_dict()["text_tokens"] == by_text.text_tokens
    assert "text_tokens" not in by_vector.to_dict()


def test_a_chat_is_one_time_step_per_message_with_text(encoder):
    texts = chat_texts(CHAT)
    by_chat = make_router(seed=5, encoder=encoder).route(AgentRequest(chat=CHAT))
    by_messages = make_router(seed=5).route(AgentRequest(messages=list(encoder.encode(texts))))
    _same(by_chat, by_messages)


def test_a_long_chat_keeps_its_latest_max_messages(encoder):
    chat = [{"role": "user", "content": f"message number {i} about cats"} for i in range(12)]
    capped = make_router(seed=1, encoder=encoder, max_messages=4)
    kept = encoder.encode([m["content"] for m in chat[-4:]])
    _same(
        capped.route(AgentRequest(chat=chat)),
        make_router(seed=1).route(AgentRequest(messages=list(kept))),
    )


def test_a_batch_mixes_text_chat_and_embeddings_in_one_encoder_call(encoder):
    router = make_router(seed=2, encoder=encoder)
    vector = encoder.encode(["an embedding request"])[0]
    before = encoder.stats.batches
    decisions = router.route_batch(
        [
            AgentRequest(text="batched text one, never seen before"),
            AgentRequest(embedding=vector),
            AgentRequest(chat=[{"role": "user", "content": "batched chat, never seen before"}]),
        ]
    )
    assert encoder.stats.batches == before + 1
    assert decisions[1].text_tokens is None and decisions[0].text_tokens > 2


def test_the_nth_turn_of_a_conversation_encodes_one_new_message(encoder):
    router = make_router(encoder=encoder)
    chat = []
    for turn in range(6):
        chat = [*chat, {"role": "user", "content": f"turn {turn} of a conversation on tides"}]
        misses = encoder.stats.cache_misses
        router.route(AgentRequest(chat=chat))
        assert encoder.stats.cache_misses == misses + 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (AgentRequest(text="a", embedding=np.ones(384, np.float32)), "request.embedding"),
        (AgentRequest(text="a", chat=[{"role": "user", "content": "b"}]), "request.text"),
        (AgentRequest(text=7), "request.text"),  # type: ignore[arg-type]
        (AgentRequest(chat=[{"role": "x", "content": "b"}]), "chat[0].role"),
    ],
    ids=["text+embedding", "text+chat", "not-a-string", "bad-role"],
)
def test_bad_text_requests_name_the_field(encoder, request_, field):
    with pytest.raises(InvalidRequestError) as info:
        make_router(encoder=encoder).route(request_)
    assert info.value.field == field


def test_the_default_encoder_loads_only_when_a_text_request_arrives(encoder):
    router = make_router()
    router.route(AgentRequest(embedding=encoder.encode(["x"])[0]))
    assert router.encoder.loaded is None
    router.route(AgentRequest(text="now the encoder is needed"))
    assert router.encoder.loaded is not None


def test_the_gateway_uses_the_routers_encoder(encoder):
    router = make_router(encoder=encoder)
    assert Gateway(router).encoder is encoder


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["arc_challenge", "winogrande"])
def test_decisions_from_text_equal_those_from_the_stored_embeddings(shared_data, encoder, dataset):
    import pyarrow.parquet as pq

    table = pq.read_table(
        shared_data / "routerbench" / dataset / "test" / "prompts.parquet",
        columns=["text", "embedding"],
    ).to_pydict()
    stored = np.asarray(table["embedding"], np.float32)
    by_text, by_vector = make_router(seed=11, encoder=encoder), make_router(seed=11)
    agents_text, agents_vector = [], []
    for start in range(0, len(stored), 32):  # the same batches, so the same Thompson draws
        texts = table["text"][start : start + 32]
        agents_text += [d.agent for d in by_text.route_batch([AgentRequest(text=t) for t in texts])]
        agents_vector += [
            d.agent
            for d in by_vector.route_batch(
                [AgentRequest(embedding=e) for e in stored[start : start + 32]]
            )
        ]
    same = np.mean(np.array(agents_text) == np.array(agents_vector))
    print(f"{dataset} test: {same:.2%} of {len(stored)} decisions equal")
    assert same >= 0.99
