"""Online evaluation: replay a split as a stream where only the chosen agent's outcome is seen.

Three arms see the same stream (the same prompt order, the same knob, the same drift):

* `learning_on`  the product: the router starts from the offline model and its priors,
  routes each prompt (Thompson sampling) and learns from the one outcome it is shown;
* `learning_off` the same model and knob, the bandit never updated (posterior means of
  the prior, i.e. the offline model alone);
* `zero_router`  the best static mix of single agents at the same mean cost as each
  learning arm: the convex hull of the agents' (mean cost, mean quality) on this split
  (with the drift applied to the drifting agent's second-half outcomes), read at that
  cost. It is an oracle static policy: it knows every agent's mean on the stream.

Optionally one agent's quality drops to 0 part-way through (`drift_agent`): the report
says, per learning arm, how many requests it took for that agent's share of the last
`window` decisions to fall below 10 %.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.datasets import RoutingOutcomes
from tinydancer.errors import InvalidRequestError
from tinydancer.evaluation.curves import hull, hull_value
from tinydancer.evaluation.offline import router_for_model
from tinydancer.model.weights import RouterModel

__all__ = ["replay"]


def _summary(got_q: np.ndarray, got_c: np.ndarray) -> dict[str, float]:
    return {
        "mean_quality": float(got_q.mean()),
        "mean_cost_usd": float(got_c.mean()),
        "cumulative_quality": float(got_q.sum()),
        "cumulative_cost_usd": float(got_c.sum()),
    }


def _run_arm(
    model: RouterModel,
    data: RoutingOutcomes,
    stream: np.ndarray,
    *,
    learn: bool,
    willingness_to_pay: float,
    drift_index: int | None,
    drift_step: int | None,
    window: int,
    seed: int,
    bandit_config: BanditConfig | None,
) -> dict[str, Any]:
    agents = list(data.agents)
    quality, cost = data.quality, data.cost_usd
    available = ~np.isnan(quality)
    router = router_for_model(model, explore=learn, seed=seed, bandit_config=bandit_config)
    position = {a: j for j, a in enumerate(agents)}
    chosen = np.empty(len(stream), np.int64)
    got_q, got_c = np.empty(len(stream)), np.empty(len(stream))
    recent: deque[int] = deque(maxlen=window)
    below_after: int | None = None
    for step, i in enumerate(stream):
        excluded = frozenset(a for a, ok in zip(agents, available[i], strict=True) if not ok)
        decision = router.route_batch(
            [
                AgentRequest(
                    embedding=data.embeddings[i],
                    willingness_to_pay=willingness_to_pay,
                    constraints=Constraints(excluded_agents=excluded),
                )
            ],
            remember=learn,
        )[0]
        a = position[decision.agent]
        q = float(quality[i, a])
        if drift_step is not None and step >= drift_step and a == drift_index:
            q = 0.0
        if learn:
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
    shares = {agents[j]: float(np.mean(chosen == j)) for j in np.unique(chosen)}
    arm: dict[str, Any] = _summary(got_q, got_c) | {
        "traffic_share": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
        "quality_by_quarter": [float(x.mean()) for x in np.array_split(got_q, 4)],
    }
    if drift_step is not None:
        before = chosen[:drift_step]
        arm["drift_share_before"] = float(np.mean(before == drift_index)) if len(before) else None
        arm["drift_share_after"] = float(np.mean(chosen[drift_step:] == drift_index))
        arm["requests_until_share_below_10pct"] = below_after
    return arm


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
    """Stream `data` (`passes` times, in a seeded order) through the three arms.

    The report's `router` is the `learning_on` arm (the product), kept under that name.
    """
    agents = list(model.feature_schema["agents"])
    data = data.reindex_agents(agents)
    quality, cost = data.quality, data.cost_usd
    available = ~np.isnan(quality)
    if willingness_to_pay is None:
        knobs = model.info.get("willingness_to_pay", {})
        willingness_to_pay = knobs.get("0.95") or knobs.get("1.0") or 1.0
    position = {a: j for j, a in enumerate(agents)}
    drift_index = None if drift_agent is None else position.get(drift_agent)
    if drift_agent is not None and drift_index is None:
        raise InvalidRequestError(
            "drift", drift_agent, f"'auto' or one of the model's agents {agents}"
        )
    if passes < 1:
        raise InvalidRequestError("passes", passes, "an integer >= 1")
    rng = np.random.default_rng(seed)
    stream = np.concatenate([rng.permutation(len(data)) for _ in range(passes)])
    drift_step = int(drift_at * len(stream)) if drift_agent else None
    common: dict[str, Any] = {
        "willingness_to_pay": willingness_to_pay,
        "drift_index": drift_index,
        "drift_step": drift_step,
        "window": window,
        "seed": seed,
        "bandit_config": bandit_config,
    }
    on = _run_arm(model, data, stream, learn=True, **common)
    off = _run_arm(model, data, stream, learn=False, **common)

    # Per-step quality and cost of every agent on the stream (the drift applied), for the
    # oracle and the zero router.
    stream_q = np.where(available[stream], np.nan_to_num(quality[stream]), np.nan)
    if drift_step is not None:
        stream_q[drift_step:, drift_index] = np.where(
            available[stream[drift_step:], drift_index], 0.0, np.nan
        )
    stream_c = np.where(available[stream], np.nan_to_num(cost[stream]), np.nan)
    q_filled, c_filled = np.nan_to_num(stream_q, nan=-1.0), np.nan_to_num(stream_c)
    oracle_q = q_filled.max(axis=1)
    oracle_c = np.where(
        ~np.isnan(stream_q) & (q_filled == oracle_q[:, None]), c_filled, np.inf
    ).min(axis=1)
    singles = np.stack([np.nanmean(stream_c, axis=0), np.nanmean(stream_q, axis=0)], axis=1)
    frontier = hull(singles)

    def zero_at(spent: float) -> float:
        # a mean of equal prices can round to just below that price: not below the hull
        if len(frontier) and spent >= frontier[0, 0] * (1 - 1e-9):
            spent = max(spent, float(frontier[0, 0]))
        return float(hull_value(frontier, np.array([spent]))[0])

    zero = {
        f"at_{name}_cost": {
            "mean_cost_usd": arm["mean_cost_usd"],
            "mean_quality": zero_at(arm["mean_cost_usd"]),
        }
        for name, arm in (("learning_on", on), ("learning_off", off))
    }
    report: dict[str, Any] = {
        "requests": len(stream),
        "willingness_to_pay": willingness_to_pay,
        "router": on,
        "learning_on": on,
        "learning_off": off,
        "zero_router": zero,
        "learning_gain": {
            "mean_quality": on["mean_quality"] - off["mean_quality"],
            "mean_cost_usd": on["mean_cost_usd"] - off["mean_cost_usd"],
        },
        "oracle": {"mean_quality": float(oracle_q.mean()), "mean_cost_usd": float(oracle_c.mean())},
        "zero_router_quality_at_router_cost": zero["at_learning_on_cost"]["mean_quality"],
        "traffic_share": on["traffic_share"],
        "quality_by_quarter": on["quality_by_quarter"],
    }
    if drift_agent is not None:
        report["drift"] = {
            "agent": drift_agent,
            "at_request": drift_step,
            "share_before": on["drift_share_before"],
            "requests_until_share_below_10pct": on["requests_until_share_below_10pct"],
            "window": window,
        }
    return report
