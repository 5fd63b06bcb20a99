"""Run by test_two_nodes.py in its own process: a 2-node local Ray cluster, one replica per
node, one shared registry. Prints one JSON line with what it observed."""

from __future__ import annotations

import json
import sys
import tempfile
import time

import httpx
import ray
from cluster_helpers import free_port
from ray import serve
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.app import build_app
from cluster.config import AppArgs
from cluster.runner import APP_NAME


def main() -> None:
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, namespace="tinydancer", log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    token = "two-node-admin-token-123456"
    args = AppArgs(
        history_path=tempfile.mkdtemp() + "/history.duckdb",
        num_replicas=2,
        max_replicas_per_node=1,
        replica_num_cpus=0.5,
        actor_num_cpus=0.05,
        admin_token=token,
        pin_replicas=False,
    )
    serve.run(build_app(args), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as http:
        created = http.post(
            "/v1/agents",
            json={"name": "two-node-agent", "capabilities": ["only-here"], "expected_quality": 0.9},
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
    time.sleep(1.5)  # snapshot staleness bound

    @ray.remote(num_cpus=0)
    def from_this_node() -> dict:
        handle = serve.get_app_handle(APP_NAME)  # prefers the replica on its own node
        body = {
            "embedding": [1.0] + [0.0] * 383,
            "constraints": {"required_capabilities": ["only-here"]},
        }
        return {
            "who": handle.describe.remote().result(),
            "agent": handle.route.remote(body).result()["agent"],
            "task_node": ray.get_runtime_context().get_node_id(),
        }

    answers = []
    for node in ray.nodes():
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        answers += ray.get(
            [from_this_node.options(scheduling_strategy=strategy).remote() for _ in range(10)]
        )
    seen = {a["who"]["replica"] for a in answers}
    nodes = {a["who"]["node"] for a in answers}
    print(
        json.dumps(
            {
                "nodes": len(nodes),
                "replicas_answering": len(seen),
                "cluster_nodes": len(ray.nodes()),
                "created": created,
                "routed": len(answers),
                "agents": sorted({a["agent"] for a in answers}),
            }
        )
    )
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
