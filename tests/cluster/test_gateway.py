"""The gateway in the cluster: `/v1/chat/completions` and `/v1/models` on the Serve app,
forwarding over real HTTP to fake upstreams on 127.0.0.1, with the official `openai`
client; what the answers leave behind reaches the shared registry, the breaker actor and
the history in the replicas' batches."""

from __future__ import annotations

import time

import httpx
import pytest
import ray

from tinydancer.gateway.fake_upstream import FakeBehaviour, FakeUpstreams

openai = pytest.importorskip("openai")

AGENTS = {
    "gw-first": FakeBehaviour(quality=0.9, tokens=12),
    "gw-second": FakeBehaviour(quality=0.7, tokens=12),
}
SECRET = "s3cret-header-value-42"
ONLY_OURS = {"constraints": {"required_capabilities": ["gw-test"]}}


@pytest.fixture(scope="module")
def fleet(cluster, http, admin):
    with FakeUpstreams(AGENTS, seed=3) as upstreams:
        for name, quality in (("gw-first", 0.95), ("gw-second", 0.6)):
            spec = {
                "name": name,
                "capabilities": ["gw-test"],
                "expected_quality": quality,
                "cost": {"per_request_usd": 0.0001},
                "endpoint": upstreams.endpoint(
                    name, headers={"x-upstream-secret": SECRET}
                ).model_dump(mode="json"),
                "fallbacks": ["gw-second"] if name == "gw-first" else [],
            }
            reply = http.post("/v1/agents", json=spec, headers=admin)
            assert reply.status_code == 201, reply.text
        _until_every_replica_sees(http, lambda ids: ids >= set(AGENTS))
        yield upstreams
        for name in AGENTS:
            http.delete(f"/v1/agents/{name}", headers=admin)
        # later tests route without constraints: the agents must be gone from every snapshot
        _until_every_replica_sees(http, lambda ids: not ids & set(AGENTS))


def _until_every_replica_sees(http, condition):
    deadline = time.monotonic() + 30
    while True:  # two replicas answer in turn: eight answers in a row agree
        if all(
            condition({m["id"] for m in http.get("/v1/models").json()["data"]}) for _ in range(8)
        ):
            return
        assert time.monotonic() < deadline, "the replicas' snapshots never changed"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def client(cluster):
    return openai.OpenAI(
        base_url=f"{cluster.url}/v1", api_key="client-key", max_retries=0, timeout=60
    )


def ask(client, text, model="tinydancer/quality"):
    return client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        extra_body={"tinydancer": ONLY_OURS},
    )


def test_models_lists_the_profiles_and_the_agents_with_an_endpoint(fleet, http):
    models = http.get("/v1/models").json()
    ids = [m["id"] for m in models["data"]]
    assert {"tinydancer/auto", "tinydancer/cost", "tinydancer/quality"} <= set(ids)
    assert set(AGENTS) <= set(ids)
    assert "mistralai/mistral-7b-chat" not in ids  # a default agent without an endpoint
    listed = {a["name"]: a for a in http.get("/v1/agents").json()}
    assert listed["gw-first"]["gateway_unavailable"] is None
    assert listed["mistralai/mistral-7b-chat"]["gateway_unavailable"].startswith("no endpoint")


def test_a_completion_and_a_stream_through_the_cluster(fleet, client, cluster, http):
    raw = ask(client, "what is a router?")
    answer = raw.parse()
    request_id = raw.headers["x-tinydancer-request-id"]
    extra = answer.model_extra["tinydancer"]
    agent = extra["agent"]
    assert extra["request_id"] == request_id and agent in AGENTS
    assert answer.choices[0].message.content.split()[0] == f"0:{agent}"
    assert answer.usage.completion_tokens == 12

    stream = client.chat.completions.create(
        model="gw-second",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()
    assert words == [f"{i}:gw-second" for i in range(12)]
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].model_extra["tinydancer"]["agent"] == "gw-second"

    feedback = http.post("/v1/feedback", json={"request_id": request_id, "quality": 0.8})
    assert feedback.status_code == 200, feedback.text
    assert feedback.json()["agent"] == agent and feedback.json()["mode"] == "gateway"
    again = http.post("/v1/feedback", json={"request_id": request_id, "quality": 0.8})
    assert again.status_code == 409
    cluster.routed_ids.append(request_id)
    # the endpoint's header reached the upstream, and appears in no response
    assert fleet.requests(agent)[-1].headers.get("x-upstream-secret") == SECRET
    for path in ("/v1/agents", f"/v1/agents/{agent}", "/v1/models"):
        assert SECRET not in http.get(path).text
    assert SECRET not in raw.http_response.text

    history = cluster.actor("history")
    deadline = time.monotonic() + 30
    # one per answer, pushed in batches; flushed here so that only their delivery is timed
    # (writing by age is the history store's own test)
    while True:
        ray.get(history.flush.remote())
        status = ray.get(history.status.remote())
        if status["attempts"] >= 2:
            break
        assert time.monotonic() < deadline, f"attempts never reached the history: {status}"
        time.sleep(0.2)


def test_a_stream_cut_mid_answer_is_continued_by_the_next_agent(fleet, client):
    fleet.configure("gw-first", drop_rate=1.0, drop_after_chunks=4)
    try:
        stream = client.chat.completions.create(
            model="gw-first",  # then its fallback
            messages=[{"role": "user", "content": "a long answer please"}],
            stream=True,
        )
        chunks = list(stream)
    finally:
        fleet.configure("gw-first", drop_rate=0.0)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    words = text.split()
    assert words[:4] == [f"{i}:gw-first" for i in range(4)]
    assert words[4:] == [f"{i}:gw-second" for i in range(4, 12)]  # continues the numbering
    summary = chunks[-1].model_extra["tinydancer"]
    assert summary["agents_tried"] == ["gw-first", "gw-second"]
    assert summary["mid_stream_failovers"] == 1 and summary["agent"] == "gw-second"
    assert len({c.id for c in chunks}) == 1


def test_a_failing_agent_opens_its_circuit_in_the_breaker_actor(fleet, client, cluster):
    breaker = cluster.actor("breaker")
    fleet.configure("gw-first", error_rate=1.0)
    try:
        agents = []
        deadline = time.monotonic() + 30
        while ray.get(breaker.status.remote())["states"].get("gw-first") != "open":
            raw = ask(client, f"question {len(agents)}", "gw-first")  # answered by its fallback
            assert raw.http_response.status_code == 200
            agents.append(raw.parse().model_extra["tinydancer"]["agent"])
            assert time.monotonic() < deadline, "the circuit never opened"
        assert set(agents) == {"gw-second"}
        time.sleep(1.0)  # every replica's snapshot now has the open circuit
        served = fleet.served("gw-first")
        for i in range(4):
            assert ask(client, f"after {i}", "gw-first").parse().model_extra["tinydancer"][
                "agents_tried"
            ] == ["gw-second"]
        assert fleet.served("gw-first") == served  # skipped, not tried
    finally:
        fleet.configure("gw-first", error_rate=0.0)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [
        ("POST", "/v1/chat/completions", b'{"model": "tinydancer/auto"', 400, None),
        ("POST", "/v1/chat/completions", b'{"model": "no-such", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
        ("POST", "/v1/chat/completions", b'{"model": "tinydancer/auto", "messages": []}', 400, "messages"),
        ("GET", "/v1/chat/completions", None, 405, None),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_shaped_errors(fleet, http, method, path, body, status, param):
    reply = http.request(method, path, content=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"] and error["type"]
    if param is not None:
        assert error["param"] == param


def test_an_oversized_chat_body_gets_an_openai_413(cluster):
    body = b'{"model": "tinydancer/auto", "messages": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    reply = httpx.post(f"{cluster.url}/v1/chat/completions", content=body, timeout=60)
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "invalid_request_error"
