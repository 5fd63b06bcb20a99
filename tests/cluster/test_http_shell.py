"""The FastAPI shell of cluster/http.py in process (no Ray): auth before validation, 413 for
chunked bodies, 400 for broken JSON, 405 naming every method of a path.

The routes below mirror the app's admin and routing routes with the same body models, so
these tests fail if the shell lets FastAPI validate a body before the token is checked.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from cluster.http import AdminAuth, create_api, is_admin_route, prefers, read_json
from cluster.http_models import AgentPatch, CandidateRouteBody, ReloadBody, RouteBody
from tinydancer.agents.agent import Agent

TOKEN = "shell-test-token-0123456789"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def client():
    auth = {"auth": AdminAuth(TOKEN)}
    api = create_api(LIMIT, lambda: auth.get("auth"))

    @api.get("/v1/agents")
    async def list_agents() -> Any:
        return []

    @api.post("/v1/agents", status_code=201)
    async def register(body: Agent) -> Any:
        return body.public()

    included = APIRouter()  # Serve's class-based ingress re-mounts routes like this

    @included.get("/v1/agents/{name:path}")
    async def get_agent(name: str) -> Any:
        return {"name": name}

    @included.patch("/v1/agents/{name:path}")
    async def update(name: str, body: AgentPatch) -> Any:
        return {"name": name}

    @included.delete("/v1/agents/{name:path}")
    async def remove(name: str) -> Any:
        return {"name": name}

    api.include_router(included)

    @api.post("/v1/admin/reload")
    async def reload(body: ReloadBody) -> Any:
        return {"path": body.path}

    @api.post("/v1/route")
    async def route(body: RouteBody) -> Any:
        return {"ok": True}

    @api.post("/v1/route/candidates")
    async def candidates(body: CandidateRouteBody) -> Any:
        return {"ok": True}

    @api.post("/v1/route/batch")
    async def batch(request: Request) -> Any:
        return {"type": type(await read_json(request)).__name__}

    with TestClient(api) as test_client:
        yield test_client


ADMIN_CALLS = [
    ("POST", "/v1/agents", {"name": "_", "capabilities": True}),
    ("POST", "/v1/agents", {"name": 5}),
    ("PATCH", "/v1/agents/x", {"active": 0, "surprise": 1}),
    ("DELETE", "/v1/agents/x", None),
    ("POST", "/v1/admin/reload", {"path": ""}),
    ("POST", "/v1/admin/reload", b"{broken"),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"], ids=["missing", "wrong"])
def test_admin_routes_authenticate_before_validating(client, method, path, body, token):
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else None
    reply = client.request(
        method, path, json=None if content else body, content=content, headers=headers
    )
    assert reply.status_code == 401, reply.text
    assert reply.json()["field"] == "authorization"
    assert reply.headers["www-authenticate"] == "Bearer"


def test_the_token_still_lets_valid_and_invalid_bodies_through(client):
    admin = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/v1/agents", json={"name": "ok-agent"}, headers=admin).status_code == 201
    bad = client.post("/v1/agents", json={"name": "_", "capabilities": True}, headers=admin)
    assert bad.status_code == 422 and "capabilities" in bad.text


def test_which_routes_are_admin_routes():
    assert is_admin_route("POST", "/v1/agents") and is_admin_route("DELETE", "/v1/agents/a/b")
    assert is_admin_route("patch", "/v1/agents/a") and is_admin_route("GET", "/v1/admin/reload")
    assert is_admin_route("PATCH", "/v1/agents/\nname")  # schemathesis found this one
    assert not is_admin_route("GET", "/v1/agents") and not is_admin_route("GET", "/v1/agents/a")
    assert not is_admin_route("POST", "/v1/route") and not is_admin_route("POST", "/v1/feedback")


def test_an_unconfigured_token_refuses_everyone():
    api = create_api(LIMIT, lambda: None)

    @api.delete("/v1/agents/{name}")
    async def remove(name: str) -> Any:
        return {}

    with TestClient(api) as unconfigured:
        assert (
            unconfigured.delete("/v1/agents/x", headers={"Authorization": "Bearer "}).status_code
            == 401
        )


@pytest.mark.parametrize("capabilities", [True, 5, 1.5, {"a": 1}])
def test_capabilities_that_are_not_a_list_are_422_not_500(client, capabilities):
    admin = {"Authorization": f"Bearer {TOKEN}"}
    reply = client.post(
        "/v1/agents", json={"name": "c", "capabilities": capabilities}, headers=admin
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "capabilities"


def test_a_chunked_oversized_body_gets_413(client):
    def chunks():
        for _ in range(8):
            yield b" " * (LIMIT // 4)

    for path in ("/v1/route", "/v1/route/batch"):
        reply = client.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert reply.status_code == 413, reply.text
        assert reply.json() == {
            "error": "PayloadTooLarge",
            "field": "body",
            "message": f"request body exceeds {LIMIT} bytes",
        }


@pytest.mark.parametrize("path", ["/v1/route", "/v1/route/batch"])
def test_truncated_json_is_400_on_body(client, path):
    text = '{"embedding": [' + ",".join(["0.1"] * 384)
    reply = client.post(path, content=text, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == "body"
    assert "malformed JSON" in reply.json()["message"]


def test_405_names_every_method_of_the_path(client):
    for path, expected in (
        ("/v1/agents", {"GET", "POST"}),
        ("/v1/agents/some-agent", {"GET", "PATCH", "DELETE"}),
    ):
        reply = client.options(path)
        assert reply.status_code == 405
        allowed = {m.strip() for m in reply.headers["allow"].split(",")}
        assert expected <= allowed, (path, allowed)


COLUMNS = {"ids": ["a", "b"], "embeddings_b64": "AAAA", "created_at": [1.0, 2.0]}


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("created_at", [1.0]),
        ("created_at", [1.0, 2.0, 3.0]),
        ("access_count", [1]),
        ("metadata_overlap", [0.5]),
        ("success_rate", [0.5, 0.5, 0.5]),
    ],
)
def test_candidate_columns_need_one_value_per_id(client, column, values):
    body = {"query_embedding_b64": "AAAA", "columns": {**COLUMNS, column: values}}
    reply = client.post("/v1/route/candidates", json=body)
    assert reply.status_code == 422, reply.text
    message = reply.json()["message"]
    assert f"columns.{column}" in message and f"{len(values)} values for 2 ids" in message


ARROW = "application/vnd.apache.arrow.stream"


@pytest.mark.parametrize(
    ("accept", "arrow"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", False),
        (ARROW, True),
        ("Application/Vnd.Apache.Arrow.Stream", True),  # media types are case-insensitive
        (f"{ARROW}, application/json", True),  # a tie goes to the type the client named
        (f"application/json, {ARROW};q=0.9", False),
        (f"{ARROW};q=0.5, */*;q=0.1", True),
        (f"{ARROW};q=0", False),  # q=0: "not acceptable"
        (f"{ARROW};q=lots", False),  # an unreadable q is not consent
        (f"{ARROW}x", False),  # another type that merely starts the same
    ],
)
def test_accept_negotiation(accept, arrow):
    assert prefers(accept, ARROW) is arrow
