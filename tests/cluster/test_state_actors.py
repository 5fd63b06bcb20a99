"""Handles inside Ray jobs, snapshot staleness, registry restarts, model reloads."""

from __future__ import annotations

import time

import ray

from tests.cluster.cluster_helpers import vector
from tinydancer.model.weights import load_model, save_model, shipped_model_path


def test_handles_work_from_the_driver_a_task_and_an_actor(cluster):
    from ray import serve

    handle = serve.get_app_handle("tinydancer")
    decision = handle.route.remote({"embedding": vector(20).tolist()}).result()
    cluster.routed_ids.append(decision["request_id"])
    assert handle.feedback.remote(
        {"request_id": decision["request_id"], "agent": decision["agent"], "success": True}
    ).result()["accepted"]

    @ray.remote(num_cpus=0)
    def job(embedding: list[float]) -> dict:
        from ray import serve as s

        h = s.get_app_handle("tinydancer")
        d = h.route.remote({"embedding": embedding, "optimize_for": "cost"}).result()
        c = h.route_candidates.remote(
            {
                "query_embedding": embedding,
                "candidates": [
                    {
                        "id": "a",
                        "embedding": embedding,
                        "created_at": time.time() - 5,
                        "access_count": 3,
                        "success_rate": 0.9,
                    }
                ],
            }
        ).result()
        f = h.feedback.remote(
            {"request_id": d["request_id"], "agent": d["agent"], "success": False}
        ).result()
        return {"decision": d, "candidates": c, "feedback": f}

    @ray.remote(num_cpus=0)
    class Pipeline:
        def run(self, embedding: list[float]) -> dict:
            from ray import serve as s

            return s.get_app_handle("tinydancer").route.remote({"embedding": embedding}).result()

    result = ray.get(job.remote(vector(21).tolist()))
    assert (
        result["feedback"]["accepted"]
        and result["candidates"]["decisions"][0]["candidate_id"] == "a"
    )
    from_actor = ray.get(Pipeline.remote().run.remote(vector(22).tolist()))
    cluster.routed_ids += [
        result["decision"]["request_id"],
        result["candidates"]["request_id"],
        from_actor["request_id"],
    ]


def test_the_readmes_handle_examples_run_as_written_in_a_task_and_an_actor(cluster):
    from tests.engine.test_docs import README, needs_cluster, python_examples

    examples = [code for code in python_examples(README) if needs_cluster(code)]
    assert examples, "the README shows how to use a handle"

    def run(code: str) -> dict:
        namespace: dict = {}  # as written: the example makes its own (numpy) vector
        exec(compile(code, "README handle example", "exec"), namespace)
        assert type(namespace["vector"]).__module__ == "numpy"
        return {"request_id": namespace["decision"]["request_id"]}

    in_task = ray.remote(num_cpus=0)(run)

    @ray.remote(num_cpus=0)
    class Job:
        def run(self, code: str) -> dict:
            return run(code)

    for code in examples:
        from_task = ray.get(in_task.remote(code))
        from_actor = ray.get(Job.remote().run.remote(code))
        cluster.routed_ids += [from_task["request_id"], from_actor["request_id"]]


def test_registry_changes_reach_replicas_within_a_second(cluster, http, admin):
    spec = {
        "name": "staleness-probe",
        "capabilities": ["probe-only"],
        "cost": {"per_request_usd": 0.0},
        "expected_quality": 0.9,
    }
    assert http.post("/v1/agents", json=spec, headers=admin).status_code == 201
    registered = time.monotonic()
    body = {
        "embedding": vector(23).tolist(),
        "constraints": {"required_capabilities": ["probe-only"]},
    }
    while True:
        reply = http.post("/v1/route", json=body)
        if reply.status_code == 200:
            break
        assert time.monotonic() - registered < 5, reply.text
        time.sleep(0.02)
    staleness = time.monotonic() - registered
    cluster.routed_ids.append(reply.json()["request_id"])
    assert reply.json()["agent"] == "staleness-probe"
    assert staleness <= 1.0, f"snapshot staleness {staleness:.3f} s"
    http.delete("/v1/agents/staleness-probe", headers=admin)


def test_a_killed_registry_comes_back_with_its_agents_and_posteriors(cluster, http):
    registry = cluster.actor("registry")
    before = ray.get(registry.call.remote("stats"))["result"]
    ray.get(registry.persist_now.remote())
    ray.kill(registry, no_restart=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            after = ray.get(cluster.actor("registry").call.remote("stats"), timeout=10)["result"]
            break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert set(after["agents"]) == set(before["agents"])
    for name, stats in before["agents"].items():
        assert after["agents"][name]["posterior_mean"] == stats["posterior_mean"]
        assert after["agents"][name]["metrics"]["requests"] == stats["metrics"]["requests"]
    status = ray.get(cluster.actor("registry").status.remote())
    assert status["restored_from_version"] == before["version"]
    decision = http.post("/v1/route", json={"embedding": vector(24).tolist()})
    assert decision.status_code == 200
    cluster.routed_ids.append(decision.json()["request_id"])


def test_model_reload_rolls_out_and_a_bad_file_is_rejected(cluster, http, admin, tmp_path):
    serving = http.get("/healthz").json()["models"]["agent"]
    model = load_model(shipped_model_path("agent"))
    new = model.with_info(note="reload test")
    new = type(model)(
        new.mode,
        new.config,
        new.stored,
        new.feature_schema,
        new.calibration,
        "agent-reload-test",
        new.info,
    )
    path = save_model(new, tmp_path / "agent-new.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"corrupt" * 100)
    refused = http.post("/v1/admin/reload", json={"path": str(bad), "mode": "agent"}, headers=admin)
    assert refused.status_code == 422 and str(bad) in refused.json()["message"]
    assert http.post("/v1/admin/reload", json={"path": str(path)}).status_code == 401
    assert http.get("/healthz").json()["models"]["agent"] == serving
    accepted = http.post(
        "/v1/admin/reload", json={"path": str(path), "mode": "agent"}, headers=admin
    )
    assert accepted.status_code == 200 and accepted.json()["version"] == "agent-reload-test"
    deadline = time.monotonic() + 60
    while not all(
        http.get("/healthz").json()["models"]["agent"] == "agent-reload-test" for _ in range(12)
    ):
        assert time.monotonic() < deadline, (
            "not every replica loaded the new model"
        )  # 12 probes: both replicas
        time.sleep(0.5)
    decision = http.post("/v1/route", json={"embedding": vector(25).tolist()}).json()
    assert decision["model_version"] == "agent-reload-test"
    cluster.routed_ids.append(decision["request_id"])


def test_breaker_opens_over_http_feedback_and_routing_fails_over(cluster, http):
    victim = "meta/llama-2-70b-chat"
    others = [a for a in _agent_names(http) if a != victim]
    only = {"embedding": vector(26).tolist(), "constraints": {"excluded_agents": others}}
    for _ in range(5):  # five consecutive failures open the circuit (default config)
        d = http.post("/v1/route", json=only).json()
        assert d["agent"] == victim
        cluster.routed_ids.append(d["request_id"])
        assert http.post(
            "/v1/feedback", json={"request_id": d["request_id"], "agent": victim, "success": False}
        ).json()["accepted"]
    assert ray.get(cluster.actor("breaker").status.remote())["states"][victim] == "open"
    deadline = time.monotonic() + 3
    while (
        reply := http.post("/v1/route", json=only)
    ).status_code == 200:  # replicas see it within a second
        cluster.routed_ids.append(reply.json()["request_id"])
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert reply.status_code == 503 and victim in reply.json()["message"]
    assert reply.headers["retry-after"] == "5"
    free = http.post(
        "/v1/route", json={"embedding": vector(26).tolist(), "optimize_for": "quality"}
    ).json()
    assert free["agent"] != victim  # fails over to the others
    cluster.routed_ids.append(free["request_id"])


def _agent_names(http) -> list[str]:
    return [a["name"] for a in http.get("/v1/agents").json()]


def test_async_actors_never_block_their_loop_on_ray_get():
    """Issue 12 #11: the registry actor's __init__ called ray.get ("Using blocking ray.get
    inside async actor"); every actor with an async method must await instead."""
    import ast
    import inspect

    from cluster import actors, breaker_actor, history_actor

    tree = ast.parse(
        "\n".join(inspect.getsource(m) for m in (actors, breaker_actor, history_actor))
    )
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        if not any(isinstance(f, ast.AsyncFunctionDef) for f in cls.body):
            continue
        calls = [
            ast.unparse(c.func)
            for c in ast.walk(cls)
            if isinstance(c, ast.Call) and ast.unparse(c.func) == "ray.get"
        ]
        assert calls == [], f"{cls.name} calls ray.get"
