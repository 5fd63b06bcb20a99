"""`build_app(args)`: the typed application builder named by `import_path` in deploy/serve_config.yaml.

serve run cluster.app:build_app history_path=/data/history.duckdb
serve deploy deploy/serve_config.yaml
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from cluster.config import AppArgs, admin_token_from
from cluster.deployment import RouterDeployment

__all__ = ["build_app"]


def build_app(args: AppArgs | dict[str, Any] | None = None) -> Application:
    """The Tiny Dancer application: the router deployment (its replicas create the actors)."""
    parsed = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    token, _ = admin_token_from(parsed)
    parsed = parsed.model_copy(update={"admin_token": token})
    options: dict[str, Any] = {
        "max_ongoing_requests": parsed.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": parsed.replica_num_cpus},
    }
    if parsed.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = parsed.max_replicas_per_node
    if parsed.autoscaling is not None:
        options["autoscaling_config"] = parsed.autoscaling.to_serve()
    else:
        options["num_replicas"] = parsed.num_replicas
    return RouterDeployment.options(**options).bind(parsed.model_dump())  # type: ignore[attr-defined]
