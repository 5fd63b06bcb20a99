"""The HTTP API end to end on the session's Ray Serve app."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from cluster.http import read_server_timing
from tests.cluster.cluster_helpers import DIM, b64, vector


def test_route_json_and_base64_give_decisions(cluster, http):
    for body in (
        {"embedding": vector(1).tolist()},
        {"embedding_b64": b64(vector(1)), "optimize_for": "cost"},
        {"messages_b64": b64(np.stack([vector(2), vector(3)])), "optimize_for": "quality"},
    ):
        reply = http.post("/v1/route", json=body)
        assert reply.status_code == 200, reply.text
        decision = reply.json()
        assert {
            "request_id",
            "agent",
            "confidence",
            "uncertainty",
            "estimated_cost_usd",
            "estimated_latency_ms",
            "expected_quality",
            "similarity",
            "reason",
            "alternatives",
            "model_version",
        } <= set(decision)
        cluster.routed_ids.append(decision["request_id"])


def test_feedback_is_accepted_once_and_refused_otherwise(cluster, http):
    decision = http.post("/v1/route", json={"embedding": vector(4).tolist()}).json()
    cluster.routed_ids.append(decision["request_id"])
    ok = http.post(
        "/v1/feedback",
        json={
            "request_id": decision["request_id"],
            "agent": decision["agent"],
            "success": True,
            "latency_ms": 420.0,
            "quality": 0.9,
            "cost_usd": 0.0004,
        },
    )
    assert ok.status_code == 200 and ok.json()["accepted"], ok.text
    again = http.post(
        "/v1/feedback",
        json={"request_id": decision["request_id"], "agent": decision["agent"], "success": True},
    )
    assert again.status_code == 409 and again.json()["reason"] == "replayed"
    unknown = http.post(
        "/v1/feedback", json={"request_id": "0" * 32, "agent": decision["agent"], "success": True}
    )
    assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown_request"
    other = http.post("/v1/route", json={"embedding": vector(5).tolist()}).json()
    cluster.routed_ids.append(other["request_id"])
    wrong = http.post(
        "/v1/feedback",
        json={"request_id": other["request_id"], "agent": "not-an-agent", "success": True},
    )
    assert wrong.status_code == 422 and wrong.json()["reason"] == "agent_mismatch"
    stats = http.get("/v1/stats").json()
    refused = stats["registry"]["refused_feedback"]
    assert (
        refused["replayed"] >= 1
        and refused["unknown_request"] >= 1
        and refused["agent_mismatch"] >= 1
    )


def test_batch_routes_columns_from_base64_and_raw_bytes(cluster, http):
    block = np.stack([vector(i) for i in range(300)])
    reply = http.post(
        "/v1/route/batch", json={"embeddings_b64": b64(block), "willingness_to_pay": 0.1}
    )
    assert reply.status_code == 200, reply.text
    columns = reply.json()
    assert len(columns["request_id"]) == 300 and len(columns["agent"]) == 300
    raw = http.post(
        "/v1/route/batch?optimize_for=cost",
        content=block[:50].astype("<f4").tobytes(),
        headers={"content-type": "application/octet-stream"},
    )
    assert raw.status_code == 200 and len(raw.json()["agent"]) == 50
    cluster.routed_ids.extend(columns["request_id"] + raw.json()["request_id"])
    bad = http.post(
        "/v1/route/batch",
        content=b"\x00" * 100,
        headers={"content-type": "application/octet-stream"},
    )
    assert bad.status_code == 422 and bad.json()["field"] == "body"


def test_batch_answers_an_arrow_stream_when_asked(cluster, http):
    import pyarrow as pa

    arrow = "application/vnd.apache.arrow.stream"
    block = np.stack([vector(400 + i) for i in range(120)])
    reply = http.post(
        "/v1/route/batch?optimize_for=quality",
        content=block.astype("<f4").tobytes(),
        headers={"content-type": "application/octet-stream", "accept": arrow},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == arrow
    table = pa.ipc.open_stream(reply.content).read_all()
    assert table.num_rows == 120 and table.schema.metadata[b"model_version"]
    names = {a["name"] for a in http.get("/v1/agents").json()}
    assert set(table.column("agent").to_pylist()) <= names
    as_json = http.post(
        "/v1/route/batch", json={"embeddings_b64": b64(block)}, headers={"accept": arrow}
    )
    assert as_json.status_code == 200 and as_json.headers["content-type"] == arrow
    ids = table.column("request_id").to_pylist()
    ids += pa.ipc.open_stream(as_json.content).read_all().column("request_id").to_pylist()
    assert len(set(ids)) == 240
    cluster.routed_ids.extend(ids)  # their history rows are checked after shutdown
    # per-request forms answer JSON only: refused before anything is routed
    refused = http.post(
        "/v1/route/batch",
        json={"requests": [{"embedding": vector(1).tolist()}]},
        headers={"accept": arrow},
    )
    assert refused.status_code == 406 and refused.json()["field"] == "accept"


def test_batch_answers_say_where_the_replica_spent_its_time(cluster, http):
    block = np.stack([vector(700 + i) for i in range(200)])
    calls = [
        {
            "content": block.astype("<f4").tobytes(),
            "headers": {"content-type": "application/octet-stream"},
        },
        {"json": {"embeddings_b64": b64(block)}},
    ]
    for call in calls:
        started = time.perf_counter()
        reply = http.post("/v1/route/batch", **call)
        wall_ms = (time.perf_counter() - started) * 1e3
        assert reply.status_code == 200, reply.text
        header = reply.headers["server-timing"]
        assert re.fullmatch(
            r"read;dur=\d+\.\d\d, route;dur=\d+\.\d\d, encode;dur=\d+\.\d\d", header
        )
        phases = read_server_timing(header)
        assert list(phases) == ["read", "route", "encode"]
        assert all(ms >= 0 for ms in phases.values()), phases
        assert 0 < sum(phases.values()) <= wall_ms, (phases, wall_ms)  # within the client's call
        cluster.routed_ids.extend(reply.json()["request_id"])


def test_candidate_mode_over_http(cluster, http):
    now = time.time()
    candidates = [
        {
            "id": f"doc-{i}",
            "embedding": vector(10 + i).tolist(),
            "created_at": now - 60 * i,
            "access_count": i,
            "success_rate": 0.8,
        }
        for i in range(5)
    ]
    reply = http.post(
        "/v1/route/candidates",
        json={"query_embedding": vector(10).tolist(), "candidates": candidates},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["decisions"][0]["candidate_id"] == "doc-0" and body["candidates_processed"] == 5
    cluster.routed_ids.append(body["request_id"])
    feedback = http.post(
        "/v1/feedback", json={"request_id": body["request_id"], "agent": "doc-3", "success": True}
    )
    assert feedback.status_code == 200 and feedback.json()["mode"] == "candidate"
    millis = [dict(candidates[0], created_at=now * 1000)]
    bad = http.post(
        "/v1/route/candidates", json={"query_embedding": vector(10).tolist(), "candidates": millis}
    )
    assert bad.status_code == 422 and "milliseconds" in bad.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"embedding": [0.1] * 10}, "embedding"),
        ({"embedding": vector().tolist(), "surprise": 1}, "surprise"),
        ({"embedding": vector().tolist(), "optimize_for": "speed"}, "optimize_for"),
        (
            {"embedding": vector().tolist(), "constraints": {"min_quality": 2}},
            "constraints.min_quality",
        ),
        ({"embedding_b64": "not base64!"}, "embedding_b64"),
        ({}, ""),
        (  # the capability too: the fuzzer's admin calls may leave a free agent behind
            {
                "embedding": vector().tolist(),
                "constraints": {"max_cost_usd": 0.0, "required_capabilities": ["no-agent-has-it"]},
            },
            "",
        ),
    ],
    ids=[
        "dimension",
        "unknown-field",
        "objective",
        "constraint",
        "base64",
        "empty",
        "unsatisfiable",
    ],
)
def test_bad_requests_get_a_4xx_json_error_naming_the_field(http, body, field):
    reply = http.post("/v1/route", json=body)
    assert 400 <= reply.status_code < 500, reply.text
    error = reply.json()
    assert "message" in error
    if field:
        assert field in error.get("field", "") or field in error["message"]


def test_nan_and_malformed_json_are_4xx(http):
    nan_body = '{"embedding": [' + ",".join(["NaN"] * DIM) + "]}"
    assert (
        http.post(
            "/v1/route", content=nan_body, headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    for path in ("/v1/route", "/v1/route/batch"):  # truncated JSON: 400 on `body`, no offset
        truncated = '{"embedding": [' + ",".join(["0.1"] * DIM)
        broken = http.post(path, content=truncated, headers={"content-type": "application/json"})
        assert broken.status_code == 400 and broken.json()["field"] == "body", broken.text


def test_the_probes_http_findings_hold_on_the_real_app(http, admin):
    """Issue 12: auth before validation, no 500 from `capabilities`, column lengths, 405s."""
    for method, path, body in (
        ("POST", "/v1/agents", {"name": "_", "capabilities": True}),
        ("PATCH", "/v1/agents/x", {"active": 0}),
        ("POST", "/v1/admin/reload", {"path": ""}),
    ):
        reply = http.request(method, path, json=body)
        assert reply.status_code == 401, (path, reply.text)
    lax = http.post("/v1/agents", json={"name": "lax", "active": 0}, headers=admin)
    assert lax.status_code == 422 and lax.json()["field"] == "active", lax.text
    for capabilities in (True, 5, 1.5):
        spec = {"name": "_", "capabilities": capabilities}
        reply = http.post("/v1/agents", json=spec, headers=admin)
        assert reply.status_code == 422 and reply.json()["field"] == "capabilities", reply.text
    columns = {"ids": ["a", "b"], "embeddings_b64": b64(np.stack([vector(1), vector(2)]))}
    for extra in ({"created_at": [time.time()]}, {"created_at": [time.time()] * 3}):
        body = {"query_embedding": vector().tolist(), "columns": {**columns, **extra}}
        reply = http.post("/v1/route/candidates", json=body)
        assert reply.status_code == 422 and "for 2 ids" in reply.json()["message"], reply.text
    allowed = http.options("/v1/agents/some-agent").headers["allow"]
    assert {"GET", "PATCH", "DELETE"} <= {m.strip() for m in allowed.split(",")}
    huge = (b" " * 65536 for _ in range(128))  # 8 MB, chunked (no Content-Length)
    reply = http.post("/v1/route", content=huge, headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["field"] == "body"


def test_oversized_bodies_get_413(http):
    huge = b"[" + b"0," * (3 * 1024 * 1024) + b"0]"
    reply = http.post("/v1/route", content=huge, headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["field"] == "body"


def test_agent_administration_needs_the_token(http, admin):
    spec = {
        "name": "test-agent",
        "capabilities": ["chat"],
        "cost": {"per_request_usd": 0.0001},
        "expected_quality": 0.99,
        "expected_latency_ms": 50,
    }
    assert http.post("/v1/agents", json=spec).status_code == 401
    assert (
        http.post(
            "/v1/agents", json=spec, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}
        ).status_code
        == 401
    )
    assert http.post("/v1/agents", json=spec, headers=admin).status_code == 201
    assert http.post("/v1/agents", json=spec, headers=admin).status_code == 409
    assert http.get("/v1/agents/test-agent").json()["agent"]["name"] == "test-agent"
    assert (
        http.patch("/v1/agents/test-agent", json={"active": False}, headers=admin).status_code
        == 200
    )
    assert http.get("/v1/agents/mistralai/mistral-7b-chat").status_code == 200
    assert http.delete("/v1/agents/test-agent", headers=admin).status_code == 200
    assert http.get("/v1/agents/test-agent").status_code == 404


def test_a_specialization_that_does_not_fit_the_model_is_refused(http, admin):
    spec = {"name": "short-specialist", "specialization": [1.0] * 10}
    reply = http.post("/v1/agents", json=spec, headers=admin)
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "specialization"
    assert "384 values" in reply.json()["expected"]
    assert http.get("/v1/agents/short-specialist").status_code == 404
    assert http.post("/v1/route", json={"embedding": [0.1] * 384}).status_code == 200


def test_observability_endpoints(http):
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["encoder"] in {"ready", "unavailable"}
    deadline = time.monotonic() + 120  # the replica compiles its other shapes after it serves
    while health["warm"] != "ready":
        assert health["warm"] == "compiling" and time.monotonic() < deadline, health
        time.sleep(0.25)
        health = http.get("/healthz").json()
    spec = http.get("/openapi.json").json()
    assert {
        "/v1/route",
        "/v1/route/batch",
        "/v1/route/candidates",
        "/v1/feedback",
        "/v1/agents",
    } <= set(spec["paths"])
    metrics = http.get("/metrics").text
    for name in (
        "tinydancer_routes_total",
        "tinydancer_route_latency_seconds_bucket",
        "tinydancer_breaker_state",
        "tinydancer_bandit_updates_total",
        "tinydancer_history_decisions_total",
        "tinydancer_history_buffer_records",
        "tinydancer_model_info",
        "tinydancer_snapshot_staleness_seconds",
    ):
        assert name in metrics, name
    assert json.loads(json.dumps(http.get("/v1/stats").json()))["registry"]["agents"] >= 11


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/feedback", {"request_id": "x" * 32, "agent": "a", "success": 0}, 422, "success"),
        (
            "/v1/route/candidates",
            {
                "query_embedding": vector().tolist(),
                "candidates": [
                    {"id": "same", "embedding": vector(1).tolist(), "created_at": time.time()},
                    {"id": "same", "embedding": vector(2).tolist(), "created_at": time.time()},
                ],
            },
            422,
            "candidates.id",
        ),
        (
            "/v1/route",
            {"embedding": vector().tolist(), "constraints": {"excluded_agents": ["no-such-agent"]}},
            200,
            "",
        ),
        ("/v1/route/batch", {"embeddings_b64": "%%%"}, 422, "embeddings_b64"),
        ("/v1/route", b"", 422, ""),
    ],
    ids=[
        "bool-as-int",
        "duplicate-candidate-ids",
        "unknown-excluded-agent",
        "bad-base64",
        "empty-body",
    ],
)
def test_more_hand_written_bad_inputs(cluster, http, path, body, status, field):
    reply = (
        http.post(path, content=body, headers={"content-type": "application/json"})
        if isinstance(body, bytes)
        else http.post(path, json=body)
    )
    assert reply.status_code == status, reply.text
    if status == 200:
        cluster.routed_ids.append(reply.json()["request_id"])
    elif field:
        assert field in reply.json().get("field", "") + reply.json()["message"]


def test_raw_batch_query_options_are_validated(http):
    raw = vector().astype("<f4").tobytes()
    bad = http.post(
        "/v1/route/batch?willingness_to_pay=lots",
        content=raw,
        headers={"content-type": "application/octet-stream"},
    )
    assert bad.status_code == 422 and bad.json()["field"] == "willingness_to_pay"


def _batch_size_totals(http) -> tuple[float, float]:
    """(requests, jitted calls) of the route batch-size histogram, over all replicas."""
    routed = calls = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("tinydancer_route_batch_size_sum"):
            routed += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tinydancer_route_batch_size_count"):
            calls += float(line.rsplit(" ", 1)[1])
    return routed, calls


def test_concurrent_requests_share_a_jitted_call(cluster, http):
    before = _batch_size_totals(http)
    bodies = [{"embedding_b64": b64(vector(500 + i))} for i in range(48)]
    responses = [cluster.handle.route.remote(body) for body in bodies]  # all in flight at once
    assert all(r.result()["agent"] for r in responses)
    deadline = time.monotonic() + 30
    while True:  # replicas report their metrics every few seconds
        routed, calls = _batch_size_totals(http)
        if routed - before[0] >= len(bodies) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert routed - before[0] >= len(bodies)
    assert calls - before[1] < routed - before[0], "no two requests were routed together"
