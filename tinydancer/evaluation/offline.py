"""`tinydancer eval`: the router and its baselines on a held-out routing-outcomes split.

Every router traces its curve by the same rule, the product's cost-quality knob:
for willingness to pay lambda (USD per unit of quality), each prompt goes to the
available agent maximising predicted quality - estimated cost / lambda, where the cost
estimate is the agent's mean cost on the training split. The Tiny Dancer router runs
through `AgentRouter` itself (posterior means, no exploration); baselines differ only
in where the predicted quality comes from. Agents without an outcome for a prompt in
the source are not offered for it (as for the oracle).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.datasets import RoutingOutcomes
from tinydancer.evaluation import baselines
from tinydancer.evaluation.curves import aiq, hull, hull_value, summarize
from tinydancer.model.weights import RouterModel
from tinydancer.training.agent import predict_quality
from tinydancer.training.metrics import roc_auc

__all__ = [
    "Evaluation",
    "calibrate_knob",
    "evaluate",
    "knob_grid",
    "router_for_model",
    "segment_diagnostics",
]


def knob_grid(costs: np.ndarray, points: int = 160) -> np.ndarray:
    """Willingness-to-pay values spanning every trade-off between the agents' prices."""
    spread = np.abs(costs[:, None] - costs[None, :])
    spread = spread[spread > 0]
    low, high = (spread.min(), spread.max()) if spread.size else (1e-6, 1.0)
    return np.concatenate([[low * 1e-3], np.geomspace(low * 0.5, high * 200, points), [high * 1e6]])


def router_for_model(
    model: RouterModel,
    *,
    explore: bool = False,
    seed: int = 0,
    bandit_config: BanditConfig | None = None,
) -> AgentRouter:
    """An AgentRouter over the model's own agents, priced at their training mean cost."""
    registry = AgentRegistry.for_model(model, bandit_config=bandit_config)
    config = AgentRouterConfig(explore=explore, seed=seed, warm=False)
    return AgentRouter(registry, config=config, model=model)


def _choices_from_scores(
    predicted: np.ndarray, available: np.ndarray, costs: np.ndarray, grid: np.ndarray
) -> np.ndarray:
    """(len(grid), n) chosen agent per prompt for each knob value."""
    out = np.empty((len(grid), predicted.shape[0]), np.int64)
    for i, wtp in enumerate(grid):
        utility = np.where(available, predicted - costs[None, :] / wtp, -np.inf)
        out[i] = np.argmax(utility, axis=1)
    return out


def _router_choices(
    router: AgentRouter, test: RoutingOutcomes, available: np.ndarray, grid: np.ndarray
) -> np.ndarray:
    names = list(test.agents)
    position = {n: i for i, n in enumerate(names)}
    unavailable = [
        frozenset(n for n, ok in zip(names, row, strict=True) if not ok) for row in available
    ]
    out = np.empty((len(grid), len(test)), np.int64)
    for i, wtp in enumerate(grid):
        requests = [
            AgentRequest(
                embedding=e,
                willingness_to_pay=float(wtp),
                constraints=Constraints(excluded_agents=u),
            )
            for e, u in zip(test.embeddings, unavailable, strict=True)
        ]
        decisions = []
        for start in range(0, len(requests), 256):
            decisions += router.route_batch(requests[start : start + 256], remember=False)
        out[i] = [position[d.agent] for d in decisions]
    return out


def _curve(
    choices: np.ndarray, quality: np.ndarray, cost: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    rows = np.arange(quality.shape[0]) if rows is None else rows
    picked_q = quality[rows[None, :], choices[:, rows]]
    picked_c = cost[rows[None, :], choices[:, rows]]
    return np.stack([picked_c.mean(axis=1), picked_q.mean(axis=1)], axis=1)


def _singles(quality: np.ndarray, cost: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.stack([np.nanmean(cost[rows], axis=0), np.nanmean(quality[rows], axis=0)], axis=1)


@dataclass
class Evaluation:
    result: dict[str, Any]  # the exact `--json` shape
    bootstrap: dict[str, Any]  # paired-bootstrap intervals of AIQ differences
    details: dict[str, Any]  # chosen hyper-parameters, per-agent diagnostics


def evaluate(
    model: RouterModel,
    test: RoutingOutcomes,
    train: RoutingOutcomes | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> Evaluation:
    agents = list(model.feature_schema["agents"])
    test = test.reindex_agents(agents)
    quality, cost = test.quality, test.cost_usd
    available = ~np.isnan(quality)
    quality_filled, cost_filled = np.nan_to_num(quality), np.nan_to_num(cost)
    mean_cost = model.info.get("agent_mean_cost_usd", {})
    costs = np.array([mean_cost.get(a, np.nanmean(cost[:, j])) for j, a in enumerate(agents)])
    grid = knob_grid(costs)
    choices: dict[str, np.ndarray] = {
        "router": _router_choices(router_for_model(model), test, available, grid)
    }
    details: dict[str, Any] = {"knob_values": len(grid)}
    if train is not None:
        train = train.reindex_agents(agents)
        knn, k = baselines.fit_knn(train.embeddings, train.quality, seed=seed)
        logistic, penalty = baselines.fit_logistic(train.embeddings, train.quality, seed=seed)
        probe = baselines.fit_logistic_probe(train.embeddings, train.quality)
        predictions = {
            "knn": knn(test.embeddings),
            "logistic": logistic(test.embeddings),
            "logistic_probe": probe(test.embeddings),
            "router": predict_quality(model.float_params(), test.embeddings),
        }
        choices["knn"] = _choices_from_scores(predictions["knn"], available, costs, grid)
        for name in ("logistic", "logistic_probe"):
            choices[name] = _choices_from_scores(predictions[name], available, costs, grid)
        details |= {
            "knn_k": k,
            "logistic_l2": penalty,
            "test_auc_per_agent": {
                name: {
                    a: roc_auc(p[available[:, j], j], quality[available[:, j], j])
                    for j, a in enumerate(agents)
                }
                for name, p in predictions.items()
            },
        }
    choices["oracle"] = _choices_from_scores(quality_filled, available, costs, grid)
    all_rows = np.arange(len(test))
    singles = _singles(quality, cost, all_rows)
    rng = np.random.default_rng(seed)
    random_points = []
    random_choice = np.array([rng.choice(np.flatnonzero(row)) for row in available])
    random_points.append(
        [
            cost_filled[all_rows, random_choice].mean(),
            quality_filled[all_rows, random_choice].mean(),
        ]
    )

    def metrics_for(points: np.ndarray) -> dict[str, Any]:
        return summarize(points, singles)

    baselines_out: dict[str, Any] = {
        "random": metrics_for(np.asarray(random_points)),
        "zero_router": metrics_for(singles),
    }
    for name in ("knn", "logistic", "logistic_probe"):
        if name in choices:
            baselines_out[name] = metrics_for(_curve(choices[name], quality_filled, cost_filled))
    baselines_out["oracle"] = metrics_for(_curve(choices["oracle"], quality_filled, cost_filled))
    baselines_out["single"] = {a: metrics_for(singles[j : j + 1]) for j, a in enumerate(agents)}
    result = {
        "router": metrics_for(_curve(choices["router"], quality_filled, cost_filled)),
        "baselines": baselines_out,
    }
    intervals = (
        _paired_bootstrap(choices, random_choice, quality, cost, bootstrap, seed)
        if bootstrap
        else {}
    )
    return Evaluation(result, intervals, details)


def _paired_bootstrap(
    choices: dict[str, np.ndarray],
    random_choice: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    rounds: int,
    seed: int,
) -> dict[str, Any]:
    """95 % intervals of AIQ(router) - AIQ(baseline) over prompts resampled with replacement."""
    rng = np.random.default_rng(seed + 1)
    n = quality.shape[0]
    q, c = np.nan_to_num(quality), np.nan_to_num(cost)
    differences: dict[str, list[float]] = {}
    for _ in range(rounds):
        rows = np.asarray(rng.integers(0, n, n))
        singles = _singles(quality, cost, rows)
        cost_range = (float(singles[:, 0].min()), float(singles[:, 0].max()))
        router = aiq(_curve(choices["router"], q, c, rows), cost_range)
        others = {
            "zero_router": aiq(singles, cost_range),
            "random": aiq(
                np.array(
                    [[c[rows, random_choice[rows]].mean(), q[rows, random_choice[rows]].mean()]]
                ),
                cost_range,
            ),
        }
        for name in ("knn", "logistic", "logistic_probe", "oracle"):
            if name in choices:
                others[name] = aiq(_curve(choices[name], q, c, rows), cost_range)
        for name, value in others.items():
            differences.setdefault(name, []).append(router - value)
    return {
        name: {
            "mean": float(np.mean(v)),
            "low_95": float(np.percentile(v, 2.5)),
            "high_95": float(np.percentile(v, 97.5)),
            "share_positive": float(np.mean(np.asarray(v) > 0)),
        }
        for name, v in differences.items()
    } | {"rounds": rounds}


def calibrate_knob(
    model: RouterModel, data: RoutingOutcomes, fractions: tuple[float, ...] = (0.8, 0.9, 0.95, 1.0)
) -> dict[str, float | None]:
    """Willingness to pay that reaches each fraction of the best single agent's quality.

    Calibrated on held-out `data` (as RouteLLM calibrates its threshold): for each
    fraction, the lowest-cost knob value whose routed quality on `data` reaches
    fraction x the best single agent's mean quality there (None if no value does).
    """
    agents = list(model.feature_schema["agents"])
    data = data.reindex_agents(agents)
    available = ~np.isnan(data.quality)
    mean_cost = model.info.get("agent_mean_cost_usd", {})
    costs = np.array(
        [mean_cost.get(a, np.nanmean(data.cost_usd[:, j])) for j, a in enumerate(agents)]
    )
    grid = knob_grid(costs)
    choices = _router_choices(router_for_model(model), data, available, grid)
    points = _curve(choices, np.nan_to_num(data.quality), np.nan_to_num(data.cost_usd))
    best = float(np.nanmax(np.nanmean(data.quality, axis=0)))
    out: dict[str, float | None] = {}
    for fraction in fractions:
        reaching = np.flatnonzero(points[:, 1] >= fraction * best)
        out[str(fraction)] = (
            None if not reaching.size else float(grid[reaching[np.argmin(points[reaching, 0])]])
        )
    return out


def segment_diagnostics(result: dict[str, Any], segments: int = 4) -> dict[str, Any]:
    """Where along the cost axis each curve wins: mean hull quality per cost segment.

    The single agents' cost range is cut into `segments` equal parts; a router that does
    not beat a baseline overall shows in which budget range it falls behind.
    """
    singles = np.asarray([m["curve"][0] for m in result["baselines"]["single"].values()])
    lo, hi = float(singles[:, 0].min()), float(singles[:, 0].max())
    edges = np.linspace(lo, hi, segments + 1)
    curves = {"router": result["router"]} | {
        k: v for k, v in result["baselines"].items() if k not in ("single", "random")
    }
    out: dict[str, Any] = {
        "segments_usd": [[float(a), float(b)] for a, b in itertools.pairwise(edges)]
    }
    for name, metrics in curves.items():
        vertices = hull(np.asarray(metrics["curve"]))
        out[name] = [
            float(hull_value(vertices, np.linspace(a, b, 200)).mean())
            for a, b in itertools.pairwise(edges)
        ]
    return out
