"""Online evaluation: replay a split as a stream where only the chosen agent's outcome is seen.

The router starts from the offline model and its priors, routes each prompt with
Thompson sampling, and learns from the one outcome it is shown. Optionally one agent's
quality drops to 0 part-way through (`drift_agent`): the report says how many requests
it took for that agent's share of the last `window` decisions to fall below 10 %.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.datasets import RoutingOutcomes
from tinydancer.evaluation.curves import hull, hull_value
from tinydancer.evaluation.offline import router_for_model
from tinydancer.model.weights import RouterModel

__all__ = ["replay"]


def replay(
    model: RouterModel,
    data: RoutingOutcomes,
    *,
    willingness_to_pay: float | None = None,
    drift_agent: str | None = None,
    drift_at: float = 0.5,
    window: int = 50,
    seed: int = 0,
    passes: int = 1,
    bandit_config: BanditConfig | None = None,
) -> dict[str, Any]:
    agents = list(model.feature_schema["agents"])
    data = data.reindex_agents(agents)
    quality, cost = data.quality, data.cost_usd
    available = ~np.isnan(quality)
    if willingness_to_pay is None:
        knobs = model.info.get("willingness_to_pay", {})
        willingness_to_pay = knobs.get("0.95") or knobs.get("1.0") or 1.0
    router = router_for_model(model, explore=True, seed=seed, bandit_config=bandit_config)
    rng = np.random.default_rng(seed)
    stream = np.concatenate([rng.permutation(len(data)) for _ in range(passes)])
    drift_step = int(drift_at * len(stream)) if drift_agent else None
    chosen = np.empty(len(stream), np.int64)
    got_q, got_c = np.empty(len(stream)), np.empty(len(stream))
    position = {a: j for j, a in enumerate(agents)}
    recent: deque[int] = deque(maxlen=window)
    drift_index = None if drift_agent is None else position.get(drift_agent)
    if drift_agent is not None and drift_index is None:
        raise ValueError(f"drift_agent {drift_agent!r} is not one of the model's agents {agents}")
    below_after: int | None = None
    for step, i in enumerate(stream):
        excluded = frozenset(a for a, ok in zip(agents, available[i], strict=True) if not ok)
        decision = router.route(
            AgentRequest(
                embedding=data.embeddings[i],
                willingness_to_pay=willingness_to_pay,
                constraints=Constraints(excluded_agents=excluded),
            )
        )
        a = position[decision.agent]
        q = float(quality[i, a])
        if drift_step is not None and step >= drift_step and a == drift_index:
            q = 0.0
        router.record_outcome(
            decision.request_id,
            decision.agent,
            success=q >= 0.5,
            quality=q,
            cost_usd=float(cost[i, a]),
        )
        chosen[step], got_q[step], got_c[step] = a, q, cost[i, a]
        recent.append(a)
        if (
            drift_step is not None
            and step >= drift_step
            and below_after is None
            and len(recent) == window
            and sum(1 for r in recent if r == drift_index) / window < 0.10
        ):
            below_after = step - drift_step + 1
    q_filled, c_filled = np.nan_to_num(quality), np.nan_to_num(cost)
    oracle_q = q_filled[stream].max(axis=1)
    oracle_c = np.where(
        available[stream] & (q_filled[stream] == oracle_q[:, None]), c_filled[stream], np.inf
    ).min(axis=1)
    singles = np.stack([np.nanmean(cost, axis=0), np.nanmean(quality, axis=0)], axis=1)
    zero_at_router_cost = float(hull_value(hull(singles), np.array([got_c.mean()]))[0])
    shares = {agents[j]: float(np.mean(chosen == j)) for j in np.unique(chosen)}
    report: dict[str, Any] = {
        "requests": len(stream),
        "willingness_to_pay": willingness_to_pay,
        "router": {
            "mean_quality": float(got_q.mean()),
            "mean_cost_usd": float(got_c.mean()),
            "cumulative_quality": float(got_q.sum()),
            "cumulative_cost_usd": float(got_c.sum()),
        },
        "oracle": {"mean_quality": float(oracle_q.mean()), "mean_cost_usd": float(oracle_c.mean())},
        "zero_router_quality_at_router_cost": zero_at_router_cost,
        "traffic_share": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
        "quality_by_quarter": [float(x.mean()) for x in np.array_split(got_q, 4)],
    }
    if drift_agent is not None:
        before = chosen[:drift_step]
        report["drift"] = {
            "agent": drift_agent,
            "at_request": drift_step,
            "share_before": float(np.mean(before == drift_index)) if len(before) else None,
            "requests_until_share_below_10pct": below_after,
            "window": window,
        }
    return report
