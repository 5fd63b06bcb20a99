"""`build_app(args)`: the typed application builder named by `import_path` in deploy/serve_config.yaml.

serve run cluster.app:build_app history_path=/data/history.duckdb
serve deploy deploy/serve_config.yaml
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from cluster.config import AppArgs, admin_token_from
from cluster.deployment import RouterDeployment
from tinydancer.errors import ConfigError

__all__ = ["build_app"]


def build_app(args: AppArgs | dict[str, Any] | None = None) -> Application:
    """The Tiny Dancer application: the router deployment (its replicas create the actors).

    Raises `ConfigError` when no admin token is given (args or TINYDANCER_ADMIN_TOKEN).
    """
    parsed = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    token, generated = admin_token_from(parsed)
    if generated:  # nobody would ever learn it: refuse rather than lock the admin routes
        raise ConfigError(
            "admin_token: not set; set TINYDANCER_ADMIN_TOKEN (at least 16 characters) in the "
            "environment of `serve run` / the Ray cluster, or args.admin_token "
            "(`tinydancer serve` makes one and shows it once)"
        )
    parsed = parsed.model_copy(update={"admin_token": token})
    options: dict[str, Any] = {
        "max_ongoing_requests": parsed.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": parsed.replica_num_cpus},
        "logging_config": {"enable_access_log": parsed.access_log},
    }
    if parsed.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = parsed.max_replicas_per_node
    if parsed.autoscaling is not None:
        options["autoscaling_config"] = parsed.autoscaling.to_serve()
    else:
        options["num_replicas"] = parsed.num_replicas
    return RouterDeployment.options(**options).bind(parsed.model_dump())  # type: ignore[attr-defined]
