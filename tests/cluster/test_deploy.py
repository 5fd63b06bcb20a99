"""deploy/: the Serve config against Ray's own schema, the RayService manifest against it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.config import AppArgs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _serve_config() -> dict:
    return yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())


def test_serve_config_is_valid_for_ray_and_for_the_builder():
    from ray.serve.schema import ServeDeploySchema

    config = _serve_config()
    ServeDeploySchema.model_validate(config)  # raises on anything Ray would refuse
    (app,) = config["applications"]
    assert app["import_path"] == "cluster.app:build_app"
    args = AppArgs.model_validate(app["args"])  # the typed builder's own validation
    assert (
        args.autoscaling is not None
        and args.autoscaling.max_replicas >= args.autoscaling.min_replicas
    )
    assert config["http_options"]["host"] == "127.0.0.1"
    from cluster.runner import REQUEST_TIMEOUT_S

    # the same end-to-end timeout as `tinydancer serve`: a lost request gets a 408
    assert config["http_options"]["request_timeout_s"] == REQUEST_TIMEOUT_S


def test_the_serve_config_shards_the_state_actors_and_refuses_a_bad_count(monkeypatch):
    """`state_shards` is in the YAML (1: the unsharded actors); a sharded config builds; a
    count out of range fails when the app is built, naming the field, value and range."""
    from pydantic import ValidationError

    from cluster.app import build_app

    monkeypatch.setenv("TINYDANCER_ADMIN_TOKEN", "a-token-from-the-environment")
    args = _serve_config()["applications"][0]["args"]
    assert args["state_shards"] == 1
    assert AppArgs.model_validate({**args, "state_shards": 4}).state_shards == 4
    build_app({**args, "state_shards": 2})
    for bad in (0, 65):
        with pytest.raises(ValidationError, match=rf"state_shards={bad} .*\[1, 64\]"):
            build_app({**args, "state_shards": bad})


def test_the_history_checkpoint_size_is_validated_with_the_app_args():
    """A size DuckDB reads is accepted; anything else fails naming the field and value."""
    from pydantic import ValidationError

    from tinydancer.history.maintenance import checkpoint_threshold_sql

    for good in ("256MB", "1.5GiB", "64 mb"):
        size = AppArgs.model_validate({"history_checkpoint_threshold": good})
        assert checkpoint_threshold_sql(size.history_checkpoint_threshold)  # the store agrees
    for bad in ("lots", "1GB'; DROP TABLE decisions; --", "-1MB", ""):
        with pytest.raises(ValidationError, match=r"history_checkpoint_threshold\n.*pattern"):
            AppArgs.model_validate({"history_checkpoint_threshold": bad})


def test_build_app_turns_args_into_deployment_options(monkeypatch):
    from cluster.app import build_app

    monkeypatch.setenv("TINYDANCER_ADMIN_TOKEN", "a-token-from-the-environment")
    app = build_app(_serve_config()["applications"][0]["args"])
    deployment = app._bound_deployment
    assert deployment._deployment_config.autoscaling_config.max_replicas == 4
    assert deployment._deployment_config.max_ongoing_requests == 64
    assert deployment.ray_actor_options["num_cpus"] == 0.5
    assert deployment._deployment_config.logging_config["enable_access_log"] is False
    logged = build_app({**_serve_config()["applications"][0]["args"], "access_log": True})
    assert logged._bound_deployment._deployment_config.logging_config["enable_access_log"]


def test_rayservice_manifest_matches_the_serve_config():
    manifest = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(embedded)
    ours = _serve_config()["applications"][0]
    theirs = embedded["applications"][0]
    assert theirs["import_path"] == ours["import_path"] and theirs["name"] == ours["name"]
    paths = ("history_path", "export_dir")  # KubeRay mounts a volume; serve run needs no root
    assert {k: v for k, v in theirs["args"].items() if k not in paths} == {
        k: v for k, v in ours["args"].items() if k not in paths
    }
    assert (
        embedded["http_options"]["request_timeout_s"]
        == _serve_config()["http_options"]["request_timeout_s"]
    )
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    workers = cluster["workerGroupSpecs"][0]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    import ray

    assert cluster["rayVersion"] == ray.__version__


def test_prometheus_scrapes_tinydancer_and_ray():
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tinydancer"]["metrics_path"] == "/metrics"
    assert jobs["tinydancer"]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert jobs["ray"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]


def test_the_apps_agents_and_gateway_are_validated_when_the_app_is_built():
    from pydantic import ValidationError

    from cluster.config import AppArgs

    spec = {
        "name": "upstream-a",
        "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "a", "api_key_env": "A_KEY"},
    }
    args = AppArgs.model_validate({"agents": [spec], "gateway": {"max_attempts": 2}})
    assert args.agents == [spec] and args.gateway.max_attempts == 2
    with pytest.raises(ValidationError, match="base_url"):
        AppArgs.model_validate(
            {"agents": [{**spec, "endpoint": {"base_url": "ftp://x", "model": "a"}}]}
        )
    with pytest.raises(ValidationError, match="max_attempts"):
        AppArgs.model_validate({"gateway": {"max_attempts": 0}})


def test_build_app_refuses_to_start_without_an_admin_token(monkeypatch):
    """Issue 12 #11: `serve run` used to invent a token nobody could ever read."""
    from cluster.app import build_app
    from tinydancer.errors import ConfigError

    monkeypatch.delenv("TINYDANCER_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="TINYDANCER_ADMIN_TOKEN"):
        build_app(_serve_config()["applications"][0]["args"])


def test_the_serve_config_writes_where_no_root_is_needed():
    args = _serve_config()["applications"][0]["args"]
    for key in ("history_path", "export_dir"):
        assert not Path(args[key]).is_absolute(), (key, args[key])


def test_every_node_of_the_rayservice_runs_the_haproxy_ingress():
    manifest = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())
    spec = manifest["spec"]["rayClusterConfig"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1", container["name"]
