"""JsonFastPath (cluster/http.py) in process: a valid JSON body is answered by the route's
handler without FastAPI; everything else gets exactly the answer the app without the fast
path gives (same status, same body), errors the handler raises included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.http import create_api
from cluster.http_models import FeedbackBody, RouteBody
from tinydancer.errors import InvalidRequestError

LIMIT = 64 * 1024
VECTOR = [0.05] * 384


async def handle(body: RouteBody) -> dict[str, Any]:
    if body.text == "refuse":
        raise InvalidRequestError("text", "'refuse'", "any other prompt")
    if body.text == "crash":
        raise RuntimeError("a bug")
    return {"optimize_for": body.optimize_for, "text": body.text}


async def feedback(body: FeedbackBody) -> dict[str, Any]:
    return {"request_id": body.request_id}


def make_client(fast: bool) -> TestClient:
    routes = {"/v1/route": (RouteBody, handle), "/v1/feedback": (FeedbackBody, feedback)}
    api = create_api(LIMIT, lambda: None, (lambda: routes) if fast else None)

    @api.post("/v1/route")
    async def route(body: RouteBody) -> Any:
        return {**(await handle(body)), "via": "fastapi"}

    @api.post("/v1/feedback")
    async def give_feedback(body: FeedbackBody) -> Any:
        return {**(await feedback(body)), "via": "fastapi"}

    return TestClient(api, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def clients():
    with make_client(fast=False) as plain, make_client(fast=True) as fast:
        yield plain, fast


def same_answer(clients, path: str, content: bytes, content_type: str | None) -> Any:
    plain, fast = clients
    headers = {} if content_type is None else {"content-type": content_type}
    want = plain.post(path, content=content, headers=headers)
    got = fast.post(path, content=content, headers=headers)
    assert got.status_code == want.status_code, (content[:80], got.text, want.text)
    if want.status_code == 200:
        answer = want.json()
        answer.pop("via")
        fast_answer = got.json()
        fast_answer.pop("via", None)
        assert fast_answer == answer
    else:  # a 500 is Starlette's plain text
        assert got.text == want.text
    return got


def test_a_valid_body_is_answered_by_the_handler_without_fastapi(clients):
    for content_type in ("application/json", "Application/JSON; charset=utf-8"):
        got = same_answer(clients, "/v1/route", json.dumps({"text": "hi"}).encode(), content_type)
        assert got.status_code == 200 and "via" not in got.json()
        assert got.headers["content-type"] == "application/json"
    got = same_answer(clients, "/v1/feedback", b'{"request_id": "r1"}', "application/json")
    assert got.json() == {"request_id": "r1"}


BAD_BODIES = [
    b"",
    b"{broken",
    b'{"embedding": [' + b",".join([b"0.1"] * 384),
    b"[1, 2]",
    b'"text"',
    b'{"text": "a", "chat": [{"role": "user", "content": "b"}]}',
    b'{"text": "a", "surprise": 1}',
    b'{"embedding": [NaN' + b", 0.1" * 383 + b"]}",
    b'{"embedding": [1e400' + b", 0.1" * 383 + b"]}",
    b'{"text": 5}',
    b'{"optimize_for": "speed", "text": "a"}',
    b'{"text": "\\ud800"}',
    json.dumps({"embedding": VECTOR[:10]}).encode(),
    json.dumps({"text": "hi"}).encode("utf-16"),  # the standard parser reads it; orjson not
    json.dumps({"text": "refuse"}).encode(),  # the handler's own error
    json.dumps({"text": "crash"}).encode(),  # an unexpected error: 500 either way
]


@pytest.mark.parametrize("content", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_every_other_body_gets_the_apps_own_answer(clients, content):
    same_answer(clients, "/v1/route", content, "application/json")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_go_to_fastapi(clients, content_type):
    got = same_answer(clients, "/v1/route", json.dumps({"text": "hi"}).encode(), content_type)
    assert got.status_code == 422


def test_the_handlers_error_is_the_apps_error_body(clients):
    got = same_answer(clients, "/v1/route", b'{"text": "refuse"}', "application/json")
    assert got.status_code == 422 and got.json()["field"] == "text"


def test_a_chunked_oversized_body_still_gets_413(clients):
    def chunks():
        for _ in range(8):
            yield b" " * (LIMIT // 4)

    reply = clients[1].post(
        "/v1/route", content=chunks(), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413 and reply.json()["field"] == "body"


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text(max_size=12) | JSON,
        "optimize_for": st.sampled_from(["cost", "quality", "fast"]) | JSON,
        "willingness_to_pay": st.floats(allow_nan=False) | JSON,
        "constraints": st.fixed_dictionaries(
            {}, optional={"max_cost_usd": st.floats(allow_nan=False), "x": JSON}
        ),
        "embedding": st.just(VECTOR) | JSON,
        "surprise": JSON,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=FIELDS | JSON)
def test_random_bodies_get_the_same_answer_with_and_without_the_fast_path(clients, body):
    same_answer(clients, "/v1/route", json.dumps(body).encode(), "application/json")
