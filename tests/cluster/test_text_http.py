"""Text over HTTP: /v1/route with text or chat, /v1/route/batch with texts, candidates with
query_text and candidate text; the encoder runs in the router replica."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from cluster.http import status_for
from cluster.http_models import BatchRouteBody, CandidateRouteBody, RouteBody
from tests.cluster.cluster_helpers import vector
from tinydancer.text import INSTALL_LINE, EncoderNotFoundError, find_encoder_dir

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "Sort a list in Python"}]},
]


def test_chat_messages_sent_as_messages_are_told_to_use_chat():
    with pytest.raises(ValidationError, match='as "chat" instead'):
        RouteBody.model_validate({"messages": CHAT})


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"text": "a", "embedding": vector(1).tolist()}, RouteBody),
        ({}, RouteBody),
        ({"texts": ["a"], "embeddings": [vector(1).tolist()]}, BatchRouteBody),
        (
            {"query_text": "q", "query_embedding": vector(1).tolist(), "candidates": []},
            CandidateRouteBody,
        ),
        ({"query_text": "q", "candidates": [{"id": "a", "created_at": 1.0}]}, CandidateRouteBody),
    ],
    ids=[
        "text+embedding",
        "nothing",
        "texts+embeddings",
        "two-queries",
        "candidate-without-either",
    ],
)
def test_text_fields_are_one_input_among_the_others(body, model):
    with pytest.raises(ValidationError, match="exactly one of"):
        model.model_validate(body)


def test_missing_encoder_weights_answer_503_with_the_install_line():
    error = EncoderNotFoundError("all-MiniLM-L6-v2", f"not found; install with: {INSTALL_LINE}")
    assert status_for(error) == 503
    assert INSTALL_LINE in error.to_dict()["message"]


def _weights_or_skip() -> None:
    try:
        find_encoder_dir()
    except EncoderNotFoundError:
        pytest.skip(f"text encoder weights not installed ({INSTALL_LINE})")


def _route_text(http, body):
    """The first text request of a replica may wait for its encoder to finish loading."""
    for _ in range(120):
        reply = http.post("/v1/route", json=body)
        if reply.status_code not in (408, 504):
            return reply
        time.sleep(1)
    return reply


def test_route_with_text_and_chat(cluster, http):
    _weights_or_skip()
    for body in ({"text": "Write a haiku about the sea", "optimize_for": "cost"}, {"chat": CHAT}):
        reply = _route_text(http, body)
        assert reply.status_code == 200, reply.text
        decision = reply.json()
        assert decision["agent"] and decision["text_tokens"] > 2
        cluster.routed_ids.append(decision["request_id"])
    long = _route_text(http, {"text": "word " * 600})
    assert long.status_code == 200 and long.json()["text_tokens"] == 256  # truncated, not refused


def test_batch_texts_give_one_decision_each_and_the_limit_is_enforced(cluster, http):
    _weights_or_skip()
    _route_text(http, {"text": "warm up"})
    texts = [f"question {i} about the history of mathematics" for i in range(5)]
    reply = http.post("/v1/route/batch", json={"texts": texts, "optimize_for": "quality"})
    assert reply.status_code == 200, reply.text
    decisions = reply.json()["decisions"]
    assert len(decisions) == 5 and all(d["text_tokens"] > 2 for d in decisions)
    cluster.routed_ids.extend(d["request_id"] for d in decisions)
    too_many = http.post("/v1/route/batch", json={"texts": ["x"] * 257})
    assert too_many.status_code == 422 and too_many.json()["field"] == "texts"


def test_candidates_with_query_text_and_candidate_text(http):
    _weights_or_skip()
    _route_text(http, {"text": "warm up"})
    now = time.time()
    body = {
        "query_text": "how do I bake bread",
        "candidates": [
            {"id": "bread", "text": "a sourdough bread recipe", "created_at": now - 60},
            {"id": "rome", "text": "the fall of the Roman empire", "created_at": now - 60},
            {"id": "vec", "embedding": vector(3).tolist(), "created_at": now - 60},
        ],
    }
    reply = http.post("/v1/route/candidates", json=body)
    assert reply.status_code == 200, reply.text
    ranked = reply.json()
    ids = (
        [d["candidate_id"] for d in ranked["decisions"]]
        if "decisions" in ranked
        else ranked["candidate_ids"]
    )
    assert ids.index("bread") < ids.index("rome")


def test_bad_chat_content_is_a_4xx_naming_the_field(http):
    _weights_or_skip()
    reply = http.post("/v1/route", json={"chat": [{"role": "robot", "content": "hi"}]})
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "chat[0].role"
    reply = http.post("/v1/route", json={"messages": CHAT})
    assert reply.status_code == 422 and "chat" in reply.text


def test_encoder_cache_hits_and_misses_reach_metrics(http):
    _weights_or_skip()
    for _ in range(3):
        assert _route_text(http, {"text": "the same prompt, again and again"}).status_code == 200
    for _ in range(30):  # replicas report their metrics every second or so
        text = http.get("/metrics").text
        hits = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('tinydancer_encoder_cache_total{result="hit"}')
        ]
        if hits and hits[0] >= 1:
            break
        time.sleep(1)
    assert hits and hits[0] >= 1, text[:2000]
    assert 'tinydancer_encoder_cache_total{result="miss"}' in text


def test_invalid_utf8_and_oversized_text_are_4xx_json(http):
    reply = http.post(
        "/v1/route", content=b'{"text": "caf\xe9"}', headers={"content-type": "application/json"}
    )
    assert 400 <= reply.status_code < 500 and reply.json()["field"] is not None, reply.text
    huge = http.post("/v1/route", json={"text": "x" * (5 * 1024 * 1024)})
    assert huge.status_code == 413 and huge.json()["field"] == "body"
