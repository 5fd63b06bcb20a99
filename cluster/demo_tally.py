"""What the demo's clients saw, request by request, and the workload's four phases."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Tally", "phase"]


def phase(i: int, total: int) -> int:
    """0-40 %, 40-60 %, 60-75 %, 75-100 % of the workload."""
    return 0 if i < 0.4 * total else 1 if i < 0.6 * total else 2 if i < 0.75 * total else 3


@dataclass
class Tally:
    agents: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    phases: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self, i: int, total: int, agent: str, latency_ms: float, cost: float, quality: float
    ) -> None:
        with self.lock:
            self.agents.append(agent)
            self.index.append(i)
            self.phases.append(phase(i, total))
            self.latency_ms.append(latency_ms)
            self.cost.append(cost)
            self.quality.append(quality)

    def busiest(self, *, since: int, besides: str | None) -> str | None:
        """The agent that served most requests numbered `since` or later (not `besides`)."""
        with self.lock:
            routed = zip(self.agents, self.index, strict=True)
            counts = Counter(a for a, i in routed if i >= since and a != besides)
        return counts.most_common(1)[0][0] if counts else None
