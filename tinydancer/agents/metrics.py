"""Per-agent outcome statistics: lifetime and recency-weighted (the registry keeps one per agent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinydancer.agents.sketch import DecayingMean, QuantileSketch

__all__ = ["AgentMetrics"]


@dataclass
class AgentMetrics:
    """Lifetime and recency-weighted statistics of one agent's outcomes."""

    recent_decay: float
    requests: int = 0
    successes: int = 0
    quality_sum: float = 0.0
    quality_count: int = 0
    cost_total_usd: float = 0.0
    cost_count: int = 0
    latency: QuantileSketch = field(default_factory=QuantileSketch)
    latency_mean: DecayingMean = field(default_factory=DecayingMean)
    recent_success: DecayingMean = field(default_factory=DecayingMean)
    recent_quality: DecayingMean = field(default_factory=DecayingMean)
    recent_cost: DecayingMean = field(default_factory=DecayingMean)
    recent_latency: QuantileSketch = field(default_factory=QuantileSketch)
    recent_latency_mean: DecayingMean = field(default_factory=DecayingMean)

    def __post_init__(self) -> None:
        for name in ("recent_success", "recent_quality", "recent_cost", "recent_latency_mean"):
            getattr(self, name).decay = self.recent_decay
        self.recent_latency.decay = self.recent_decay

    def add(
        self, success: bool, latency_ms: float | None, quality: float | None, cost_usd: float | None
    ) -> None:
        self.requests += 1
        self.successes += int(success)
        self.recent_success.add(float(success))
        if quality is not None:
            self.add_quality(quality)
        if cost_usd is not None:
            self.cost_total_usd += cost_usd
            self.cost_count += 1
            self.recent_cost.add(cost_usd)
        if latency_ms is not None:
            self.latency.add(latency_ms)
            self.latency_mean.add(latency_ms)
            self.recent_latency.add(latency_ms)
            self.recent_latency_mean.add(latency_ms)

    def add_many(
        self,
        counted: np.ndarray,
        success: np.ndarray,
        latency_ms: np.ndarray,
        quality: np.ndarray,
        cost_usd: np.ndarray,
    ) -> None:
        """Rows in order, as `add` (rows with `counted`) or `add_quality` (the others) would
        apply them one by one; NaN stands for None. Vectorised, equal up to rounding."""
        success = success[counted]
        self.requests += int(counted.sum())
        self.successes += int(success.sum())
        self.recent_success.add_many(success.astype(np.float64))
        qualities = quality[~np.isnan(quality)]
        self.quality_sum += float(qualities.sum())
        self.quality_count += len(qualities)
        self.recent_quality.add_many(qualities)
        costs = cost_usd[counted & ~np.isnan(cost_usd)]
        self.cost_total_usd += float(costs.sum())
        self.cost_count += len(costs)
        self.recent_cost.add_many(costs)
        latencies = latency_ms[counted & ~np.isnan(latency_ms)]
        self.latency.add_many(latencies)
        self.latency_mean.add_many(latencies)
        self.recent_latency.add_many(latencies)
        self.recent_latency_mean.add_many(latencies)

    def add_quality(self, quality: float) -> None:
        self.quality_sum += quality
        self.quality_count += 1
        self.recent_quality.add(quality)

    def summary(self) -> dict[str, Any]:
        def quantiles(sketch: QuantileSketch) -> dict[str, float | None]:
            return {f"p{int(q * 100)}": sketch.quantile(q) for q in (0.5, 0.95, 0.99)}

        return {
            "requests": self.requests,
            "success_rate": self.successes / self.requests if self.requests else None,
            "mean_quality": self.quality_sum / self.quality_count if self.quality_count else None,
            "latency_ms": {"mean": self.latency_mean.mean, **quantiles(self.latency)},
            "cost_total_usd": self.cost_total_usd,
            "mean_cost_usd": self.cost_total_usd / self.cost_count if self.cost_count else None,
            "recent": {
                "success_rate": self.recent_success.mean,
                "mean_quality": self.recent_quality.mean,
                "mean_cost_usd": self.recent_cost.mean,
                "latency_ms": {
                    "mean": self.recent_latency_mean.mean,
                    **quantiles(self.recent_latency),
                },
                "effective_outcomes": self.recent_success.effective_count,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "recent_decay": self.recent_decay,
            "requests": self.requests,
            "successes": self.successes,
            "quality_sum": self.quality_sum,
            "quality_count": self.quality_count,
            "cost_total_usd": self.cost_total_usd,
            "cost_count": self.cost_count,
            **{
                name: getattr(self, name).to_dict()
                for name in (
                    "latency",
                    "latency_mean",
                    "recent_success",
                    "recent_quality",
                    "recent_cost",
                    "recent_latency",
                    "recent_latency_mean",
                )
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentMetrics:
        metrics = cls(recent_decay=data["recent_decay"])
        for name in ("requests", "successes", "quality_count", "cost_count"):
            setattr(metrics, name, int(data[name]))
        metrics.quality_sum, metrics.cost_total_usd = (
            float(data["quality_sum"]),
            float(data["cost_total_usd"]),
        )
        for name in ("latency", "recent_latency"):
            setattr(metrics, name, QuantileSketch.from_dict(data[name]))
        for name in (
            "latency_mean",
            "recent_success",
            "recent_quality",
            "recent_cost",
            "recent_latency_mean",
        ):
            setattr(metrics, name, DecayingMean.from_dict(data[name]))
        return metrics
