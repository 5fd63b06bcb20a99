"""`/metrics` rendering in process (no Ray): counter and gauge types, dead replicas.

Issue 12 #8: a killed replica's staleness gauge stayed frozen in `/metrics`, and two gauges
were named `_total`, one of which dropped to 0 when the history actor restarted.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from cluster.metrics import ReplicaMetrics, render_cluster_metrics, without_gone_replicas

CLUSTER = {"bandit_updates": 7, "history_decisions": 1234, "history_buffer": 3}


def _families(per_replica, cluster=CLUSTER) -> dict:
    text = render_cluster_metrics(per_replica, cluster).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _replica(name: str, routes: int) -> ReplicaMetrics:
    metrics = ReplicaMetrics(name)
    metrics.routes.labels("a", "routed").inc(routes)
    metrics.snapshot_staleness.labels(name).set(0.1)
    return metrics


def test_counters_are_counters_and_gauges_are_not_named_total():
    families = _families({"r1": _replica("r1", 3).samples()})
    for family in families.values():
        names = {s.name for s in family.samples}
        if family.type == "gauge":
            assert not any(n.endswith("_total") for n in names), (family.name, names)
    assert families["tinydancer_bandit_updates"].type == "counter"
    assert families["tinydancer_history_decisions"].type == "counter"
    (written,) = families["tinydancer_history_decisions"].samples
    assert written.name == "tinydancer_history_decisions_total" and written.value == 1234


def test_a_dead_replicas_gauges_go_and_its_counters_stay_in_the_sums():
    alive, dead = _replica("alive", 2), _replica("dead", 5)
    samples = {"alive": alive.samples(), "dead": dead.samples()}
    models = {"alive": {"agent": "v1"}, "dead": {"agent": "v1"}}
    seen = {"alive": 100.0, "dead": 80.0}
    kept, kept_models = without_gone_replicas(samples, models, seen, now=100.5, gone_s=10.0)
    assert kept_models == {"alive": {"agent": "v1"}}
    families = _families(kept, {**CLUSTER, "model_versions": kept_models})
    staleness = families["tinydancer_snapshot_staleness_seconds"].samples
    assert [s.labels["replica"] for s in staleness] == ["alive"]
    (routes,) = [s for s in families["tinydancer_routes"].samples if s.name.endswith("_total")]
    assert routes.value == 7  # the dead replica's 5 still count: the sum never goes down
    info = families["tinydancer_model_info"].samples
    assert [s.labels["replica"] for s in info] == ["alive"]
