"""Prometheus metrics: per-replica instruments, aggregated cluster-wide for `/metrics`.

Each replica keeps its own `prometheus_client` instruments in a private registry and
reports their samples to the registry actor with its state refresh. `/metrics` (on any
replica) sums counters and histograms over replicas, keeps gauges per replica, and adds
the state actors' gauges (breaker state per agent, bandit updates, history buffer depth
and flush latency, model versions). Ray's own metrics are scraped from Ray's metrics
port (see deploy/prometheus.yml).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["REPLICA_GONE_S", "ReplicaMetrics", "render_cluster_metrics", "without_gone_replicas"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
Sample = tuple[
    str, str, str, dict[str, str], float
]  # family, type, help, labels, value (name in labels)


class ReplicaMetrics:
    def __init__(self, replica: str, registry: CollectorRegistry | None = None) -> None:
        self.replica = replica
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.routes = Counter(
            "tinydancer_routes",
            "Routing requests by chosen agent and result",
            ["agent", "result"],
            registry=r,
        )
        self.feedback = Counter(
            "tinydancer_feedback",
            "Feedback received by agent and result",
            ["agent", "result"],
            registry=r,
        )
        self.route_latency = Histogram(
            "tinydancer_route_latency_seconds",
            "Time to route, per endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tinydancer_route_batch_size",
            "Requests routed together (one jitted call above 4, else one by one on the lone path)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 256, 1024),
            registry=r,
        )
        self.snapshot_staleness = Gauge(
            "tinydancer_snapshot_staleness_seconds",
            "Age of the replica's registry snapshot",
            ["replica"],
            registry=r,
        )
        self.encoder_cache = Counter(
            "tinydancer_encoder_cache",
            "Texts the replica's encoder looked up in its embedding cache, by result (hit, miss)",
            ["result"],
            registry=r,
        )
        self.history_pending = Gauge(
            "tinydancer_replica_history_pending_records",
            "Records buffered in the replica for the history",
            ["replica"],
            registry=r,
        )

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # creation times do not add up across replicas
                labels = dict(sample.labels) | {"__name__": sample.name}
                out.append(
                    (family.name, family.type, family.documentation, labels, float(sample.value))
                )
        return out


REPLICA_GONE_S = 10.0  # replicas report every second; one silent for this long is dead


def without_gone_replicas(
    samples: dict[str, list[Sample]],
    models: dict[str, dict[str, str]],
    seen: dict[str, float],
    now: float,
    gone_s: float = REPLICA_GONE_S,
) -> tuple[dict[str, list[Sample]], dict[str, dict[str, str]]]:
    """Drop the gauges and model versions of replicas not heard from for `gone_s` (a killed
    replica's frozen staleness gauge); keep their counters and histograms, so that sums over
    replicas never go down when one dies (a replacement starts from zero)."""
    live = {replica for replica, at in seen.items() if now - at < gone_s}
    kept = {
        replica: rows if replica in live else [s for s in rows if s[1] != "gauge"]
        for replica, rows in samples.items()
    }
    return kept, {replica: v for replica, v in models.items() if replica in live}


class _Aggregated:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def render_cluster_metrics(per_replica: dict[str, list[Sample]], cluster: dict[str, Any]) -> bytes:
    """Prometheus text exposition of all replicas' samples plus the actors' state."""
    totals: dict[tuple[str, str, str], dict[tuple[str, tuple[tuple[str, str], ...]], float]] = (
        defaultdict(lambda: defaultdict(float))
    )
    for samples in per_replica.values():
        for family, kind, doc, labels, value in samples:
            name = labels["__name__"]
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
            if kind == "gauge":
                totals[(family, kind, doc)][(name, key)] = value  # gauges carry a replica label
            else:
                totals[(family, kind, doc)][(name, key)] += value
    families: list[Metric] = []
    for (family, kind, doc), values in totals.items():
        metric = Metric(family, doc, kind)
        for (name, key), value in values.items():
            metric.add_sample(name, dict(key), value)
        families.append(metric)
    states = GaugeMetricFamily(
        "tinydancer_breaker_state",
        "1 for the agent's current breaker state",
        labels=["agent", "state"],
    )
    for agent, state in cluster.get("breaker_states", {}).items():
        for candidate in ("closed", "open", "half_open"):
            states.add_metric([agent, candidate], 1.0 if state == candidate else 0.0)
    families.append(states)
    # Counters with a restart-safe source: the registry's count is restored with its
    # snapshot, the history's is the file's sequence number (not a per-process tally).
    counters = (
        (
            "tinydancer_bandit_updates",
            "Posterior updates applied by the registry",
            "bandit_updates",
        ),
        ("tinydancer_history_decisions", "Decisions written to the history", "history_decisions"),
    )
    for counter_name, counter_doc, source in counters:
        if cluster.get(source) is not None:
            counter = CounterMetricFamily(counter_name, counter_doc)
            counter.add_metric([], float(cluster[source]))
            families.append(counter)
    cluster_gauges: tuple[tuple[str, str, Any], ...] = (
        (
            "tinydancer_history_buffer_records",
            "Records buffered in the history store",
            cluster.get("history_buffer"),
        ),
        (
            "tinydancer_history_flush_seconds",
            "Duration of the last history flush",
            cluster.get("history_flush_s"),
        ),
        ("tinydancer_registry_version", "Registry version", cluster.get("registry_version")),
    )
    for name, doc, value in cluster_gauges:
        if value is not None:
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], float(value))
            families.append(gauge)
    models = GaugeMetricFamily(
        "tinydancer_model_info",
        "Model version served (per replica)",
        labels=["replica", "mode", "version"],
    )
    for replica, versions in cluster.get("model_versions", {}).items():
        for mode, version in versions.items():
            models.add_metric([replica, mode, version], 1.0)
    families.append(models)
    registry = CollectorRegistry()
    registry.register(_Aggregated(families))
    return generate_latest(registry)
