"""Outcomes in bulk: a columnar block the registry applies vectorised (`record_many`).

A block holds rows that `AgentRegistry.record_outcome` (rows with `counted`) or
`record_quality` (rows without) would take one by one; NaN stands for None. Applying a
block gives the same metrics and posteriors as applying its rows one by one in order (up
to float rounding, ~1e-12 relative): per agent, the counters are sums, the recency-
weighted statistics use the units `add` would have used, and the bandit's discounted
update is a linear recurrence with a closed form,

    D_j = m_j D_(j-1) + X_j,   D = evidence - prior,   m_j = gamma * 0.5 ** (idle_j / idle_half_life)

so D_n = (prod m) D_0 + sum_j (prod_(i>j) m_i) X_j, taken with cumulative sums of log m.

    block = OutcomeBlock.build(names, agent=codes, success=ok, latency_ms=ms, cost_usd=usd)
    registry.record_many(block)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from tinydancer.agents.bandit import Posterior
from tinydancer.errors import InvalidRequestError

if TYPE_CHECKING:
    from tinydancer.agents.registry import AgentRegistry

__all__ = ["OutcomeBlock", "apply_block"]


@dataclass(frozen=True, eq=False)
class OutcomeBlock:
    """Rows of outcomes, column by column. `agent` indexes `names`."""

    names: tuple[str, ...]
    agent: np.ndarray  # int64
    success: np.ndarray  # bool
    latency_ms: np.ndarray  # float64, NaN = none
    quality: np.ndarray  # float64, NaN = none (success stands in)
    cost_usd: np.ndarray  # float64, NaN = none
    model_quality: np.ndarray  # float64, NaN = none
    learn: np.ndarray  # bool: the bandit learns this row
    counted: np.ndarray  # bool: an outcome (record_outcome); else a quality report

    def __len__(self) -> int:
        return len(self.agent)

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        *,
        agent: np.ndarray,
        success: np.ndarray,
        latency_ms: np.ndarray | None = None,
        quality: np.ndarray | None = None,
        cost_usd: np.ndarray | None = None,
        model_quality: np.ndarray | None = None,
        learn: np.ndarray | None = None,
        counted: np.ndarray | None = None,
    ) -> OutcomeBlock:
        n = len(agent)

        def floats(values: np.ndarray | None) -> np.ndarray:
            return np.full(n, np.nan) if values is None else np.asarray(values, np.float64)

        def flags(values: np.ndarray | None) -> np.ndarray:
            return np.ones(n, bool) if values is None else np.asarray(values, bool)

        return cls(
            tuple(names),
            np.asarray(agent, np.int64),
            np.asarray(success, bool),
            floats(latency_ms),
            floats(quality),
            floats(cost_usd),
            floats(model_quality),
            flags(learn),
            flags(counted),
        )


def _check(registry: AgentRegistry, block: OutcomeBlock) -> None:
    """Refuse the whole block before applying any of it (one by one, the rows before a bad
    one would have been applied)."""
    n = len(block)
    for name, column in vars(block).items():
        if name != "names" and len(column) != n:
            raise InvalidRequestError(name, f"{len(column)} values", f"{n} (one per row)")
    if n and (block.agent.min() < 0 or block.agent.max() >= len(block.names)):
        raise InvalidRequestError("agent", "an index out of range", f"< {len(block.names)}")
    for code in np.unique(block.agent):
        registry._require(block.names[code])
    for field_name, high in (
        ("latency_ms", math.inf),
        ("quality", 1.0),
        ("cost_usd", math.inf),
        ("model_quality", 1.0),
    ):
        values = getattr(block, field_name)
        bad = ~np.isnan(values) & ~((values >= 0.0) & (values <= high) & np.isfinite(values))
        if bad.any():
            row = int(np.argmax(bad))
            raise InvalidRequestError(
                field_name, float(values[row]), f"a number in [0.0, {high}] or null", f"row {row}"
            )
    missing = ~block.counted & np.isnan(block.quality)
    if missing.any():
        raise InvalidRequestError(
            "quality", None, "a number in [0, 1]", f"row {int(np.argmax(missing))}"
        )


def apply_block(registry: AgentRegistry, block: OutcomeBlock) -> int:
    """Apply every row as one-by-one calls in order would; returns the rows applied."""
    _check(registry, block)
    n = len(block)
    if n == 0:
        return 0
    learns = block.learn | ~block.counted  # a quality report always teaches the bandit
    learn_position = np.cumsum(learns) - 1  # among the block's learning rows
    observed = np.where(np.isnan(block.quality), block.success.astype(np.float64), block.quality)
    start = registry.bandit_updates
    order = np.argsort(block.agent, kind="stable")
    codes, first = np.unique(block.agent[order], return_index=True)
    for code, rows in zip(codes, np.split(order, first[1:]), strict=True):
        name = block.names[code]
        registry._metrics[name].add_many(
            block.counted[rows],
            block.success[rows],
            block.latency_ms[rows],
            block.quality[rows],
            block.cost_usd[rows],
        )
        taught = rows[learns[rows]]
        if len(taught):
            known = name in registry.known_to_model
            mq = block.model_quality[taught]
            slope = np.where(np.isnan(mq), 0.0, mq) if known else np.zeros(len(taught))
            registry._posteriors[name] = _learn(
                registry,
                registry._posteriors[name],
                start + learn_position[taught],
                slope,
                observed[taught],
            )
    registry.bandit_updates = start + int(learns.sum())
    registry.version += n
    return n


def _learn(
    registry: AgentRegistry,
    stored: Posterior,
    at: np.ndarray,
    slope: np.ndarray,
    observed: np.ndarray,
) -> Posterior:
    """One agent's posterior after outcomes at registry counts `at` (see the module doc)."""
    config = registry.bandit_config
    idle = np.diff(at, prepend=stored.updated_at + 1) - 1  # other agents' outcomes before each
    idle[0] = at[0] - stored.updated_at
    log_m = np.full(len(at), math.log(0.5) / config.half_life_outcomes)
    if config.idle_half_life_outcomes is not None:
        log_m += np.maximum(idle, 0) * (math.log(0.5) / config.idle_half_life_outcomes)
    # prod_(i>j) m_i for each j, and prod of all m
    after = np.concatenate([np.cumsum(log_m[:0:-1])[::-1], [0.0]])
    weights = np.exp(after)
    keep = math.exp(float(after[0] + log_m[0]))
    c = 1.0 / config.noise_sd**2
    s0, s1, s2 = c * weights.sum(), c * weights @ slope, c * weights @ (slope * slope)
    wq = weights * observed
    t0, t1 = c * wq.sum(), c * wq @ slope
    p0, b0 = stored.prior_precision, stored.prior_shift
    precision = p0 + keep * (stored.precision - p0) + np.array([[s0, s1], [s1, s2]])
    shift = b0 + keep * (stored.shift - b0) + np.array([t0, t1])
    return replace(
        stored,
        precision=precision,
        shift=shift,
        outcomes=stored.outcomes + len(at),
        updated_at=int(at[-1]) + 1,
    )
