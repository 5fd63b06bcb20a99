"""Off-policy value: what a model *would* have achieved on logged traffic it did not route.

The log holds, per decision i, the request x_i, the agent a_i the serving router chose
with probability p_i (its propensity), and the outcome: quality r_i and cost c_i. The
target is the greedy policy of a model, pi(x) = argmax_a q(x, a) - cbar_a / lambda_i
(the decision rule of `tinydancer.evaluation.offline`; q the model's predicted quality,
cbar_a the agent's mean logged cost, lambda_i the decision's willingness to pay), over
the agents seen in the log. With w_i = 1[a_i = pi(x_i)] / p_i and any reward y:

    IPS  V = mean_i  w_i y_i
    DR   V = mean_i  m(x_i, pi(x_i)) + w_i (y_i - m(x_i, a_i))

where the reward model m is the model's predicted quality for quality, cbar_a for cost,
and their combination q - cbar / lambda for utility. Both are unbiased when the logged
propensities are right and every agent the target picks had p > 0 (overlap); DR has
lower variance when m is good. Intervals: percentile bootstrap over logged decisions
(`rounds` resamples, seeded); `compare` resamples both models with the same draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from tinydancer.errors import ConfigError, HistoryError
from tinydancer.evaluation.offline import knob_grid
from tinydancer.history.logged import LoggedData
from tinydancer.model.weights import RouterModel
from tinydancer.training.agent import predict_quality

__all__ = ["calibrate_knob_off_policy", "compare", "greedy_policy", "off_policy_value"]

_REWARDS = ("quality", "cost_usd", "utility")
_BOOTSTRAP_CELLS = 4_000_000  # resample counts held in memory at once (rounds x decisions)


def agent_mean_costs(logged: LoggedData) -> np.ndarray:
    """(A,) mean logged cost of each agent in `logged.agents` (when it was chosen)."""
    totals = np.bincount(logged.chosen, weights=logged.cost_usd, minlength=len(logged.agents))
    counts = np.bincount(logged.chosen, minlength=len(logged.agents))
    return totals / np.maximum(counts, 1)


def predicted_quality(logged: LoggedData, model: RouterModel) -> np.ndarray:
    """(n, A) the model's quality for each logged agent; NaN for agents it has no head for."""
    heads = {name: j for j, name in enumerate(model.feature_schema["agents"])}
    if logged.embeddings.shape[1] != model.config.input_dim:
        raise HistoryError(
            f"logged embeddings have {logged.embeddings.shape[1]} dimensions; model "
            f"{model.version} expects {model.config.input_dim}"
        )
    scores = predict_quality(model.float_params(), logged.embeddings)  # (n, A_model)
    out = np.full((len(logged), len(logged.agents)), np.nan)
    for j, name in enumerate(logged.agents):
        if name in heads:
            out[:, j] = scores[:, heads[name]]
    if np.isnan(out).all():
        raise HistoryError(
            f"model {model.version} knows none of the logged agents {logged.agents}; "
            f"its agents are {list(heads)}"
        )
    return out


def _willingness_to_pay(
    logged: LoggedData, model: RouterModel, default: float | None
) -> np.ndarray:
    """(n,) each decision's logged willingness to pay; the default where none was logged."""
    wtp = logged.willingness_to_pay.copy()
    missing = np.isnan(wtp)
    if missing.any():
        if default is None:
            default = (model.info.get("willingness_to_pay") or {}).get("0.95")
        if default is None or not default > 0:
            raise ConfigError(
                f"{int(missing.sum())} logged decisions have no willingness_to_pay and model "
                f"{model.version} has no calibrated info['willingness_to_pay']['0.95'] "
                f"(found {default!r}); pass a positive default_willingness_to_pay"
            )
        wtp[missing] = default
    if not (wtp > 0).all():
        raise ConfigError(f"willingness_to_pay must be > 0; the log holds {float(wtp.min())}")
    return wtp


def _greedy(predicted: np.ndarray, costs: np.ndarray, wtp: np.ndarray) -> np.ndarray:
    """(n,) index of the agent maximising predicted quality - mean cost / wtp."""
    utility = predicted - costs[None, :] / wtp[:, None]  # (n, A)
    return np.argmax(np.where(np.isnan(utility), -np.inf, utility), axis=1)


def greedy_policy(
    logged: LoggedData, model: RouterModel, *, default_willingness_to_pay: float | None = None
) -> list[str]:
    """The agent the model's greedy policy picks for each logged decision."""
    wtp = _willingness_to_pay(logged, model, default_willingness_to_pay)
    choice = _greedy(predicted_quality(logged, model), agent_mean_costs(logged), wtp)
    return [logged.agents[j] for j in choice]


def _contributions(
    logged: LoggedData, predicted: np.ndarray, costs: np.ndarray, wtp: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-decision terms whose means are the IPS and DR estimates; weights; choices."""
    rows = np.arange(len(logged))
    choice = _greedy(predicted, costs, wtp)
    weight = (choice == logged.chosen) / logged.propensity  # (n,)
    observed = {
        "quality": logged.quality,
        "cost_usd": logged.cost_usd,
        "utility": logged.quality - logged.cost_usd / wtp,
    }
    # Reward models at the target's and at the logged agent (equal where they agree; the
    # logged one is used only there, so agents the model lacks never enter).
    reward_model = {
        "quality": (predicted[rows, choice], predicted[rows, choice]),
        "cost_usd": (costs[choice], costs[logged.chosen]),
    }
    reward_model["utility"] = (
        reward_model["quality"][0] - reward_model["cost_usd"][0] / wtp,
        reward_model["quality"][1] - reward_model["cost_usd"][1] / wtp,
    )
    terms: dict[str, np.ndarray] = {}
    for name in _REWARDS:
        at_target, at_logged = reward_model[name]
        terms[f"ips.{name}"] = weight * observed[name]
        terms[f"dr.{name}"] = at_target + np.where(
            weight > 0, weight * (observed[name] - at_logged), 0.0
        )
        terms[f"logging_policy.{name}"] = observed[name]
    return terms, weight, choice


def _bootstrap_means(
    terms: Mapping[str, np.ndarray], rounds: int, seed: int
) -> dict[str, np.ndarray]:
    """(rounds,) means of each column over decisions resampled with replacement."""
    names = list(terms)
    matrix = np.stack([terms[k] for k in names], axis=1)  # (n, K)
    n = matrix.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(rounds, _BOOTSTRAP_CELLS // max(n, 1)))
    means = []
    for start in range(0, rounds, chunk):
        r = min(chunk, rounds - start)
        draws = rng.integers(0, n, (r, n)) + (np.arange(r) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=r * n).reshape(r, n)  # (r, n)
        means.append(counts @ matrix / n)  # (r, K)
    stacked = np.concatenate(means, axis=0)
    return {k: stacked[:, i] for i, k in enumerate(names)}


def _interval(estimate: float, draws: np.ndarray) -> dict[str, float]:
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"estimate": float(estimate), "low_95": float(low), "high_95": float(high)}


@dataclass(frozen=True, eq=False)
class _Target:
    """A model's greedy policy on the log: per-decision estimate terms and weights."""

    model: RouterModel
    terms: dict[str, np.ndarray]  # "ips.quality", "dr.utility", "logging_policy.cost_usd", ... (n,)
    weight: np.ndarray  # (n,) importance weight 1[a_i = pi(x_i)] / p_i
    choice: np.ndarray  # (n,) index into logged.agents
    offered: list[str]  # the agents the policy may choose


def _target(logged: LoggedData, model: RouterModel, wtp: np.ndarray) -> _Target:
    predicted = predicted_quality(logged, model)
    terms, weight, choice = _contributions(logged, predicted, agent_mean_costs(logged), wtp)
    offered = [a for j, a in enumerate(logged.agents) if not np.isnan(predicted[:, j]).all()]
    return _Target(model, terms, weight, choice, offered)


def _summary(
    logged: LoggedData, target: _Target, draws: Mapping[str, np.ndarray], prefix: str = ""
) -> dict[str, Any]:
    estimates: dict[str, Any] = {"ips": {}, "dr": {}, "logging_policy": {}}
    for key, values in target.terms.items():
        group, reward = key.split(".")
        estimates[group][reward] = _interval(float(values.mean()), draws[prefix + key])
    weight = target.weight
    ess = float(weight.sum() ** 2 / (weight**2).sum()) if weight.any() else 0.0
    share = np.bincount(target.choice, minlength=len(logged.agents)) / len(logged)
    return {
        "model": target.model.version,
        "decisions": len(logged),
        **estimates,
        "effective_sample_size": ess,
        "effective_sample_share": ess / len(logged),
        "agreement_with_log": float((target.choice == logged.chosen).mean()),
        "max_importance_weight": float(weight.max()),
        "target_traffic_share": {
            a: float(s) for a, s in zip(logged.agents, share, strict=True) if s > 0
        },
        "agents_offered": target.offered,
        "willingness_to_pay_logged_share": float((~np.isnan(logged.willingness_to_pay)).mean()),
        "training_window_overlap": _training_overlap(logged, target.model),
    }


def _training_overlap(logged: LoggedData, model: RouterModel) -> float:
    """Share of the logged decisions inside the model's training window (by time only).

    A model estimated on the traffic it was fitted to looks better than it is (its
    greedy choices follow the noise it learned); evaluate on later traffic.
    """
    lineage = model.info.get("lineage") or {}
    window = lineage.get("window")
    if not window:
        return 0.0
    first, last = (datetime.fromisoformat(t).timestamp() for t in window)
    return float(((logged.ts >= first) & (logged.ts <= last)).mean())


def _check_rounds(rounds: int) -> None:
    if rounds < 1:
        raise ConfigError(f"rounds: got {rounds}; expected a positive number of bootstrap rounds")


def off_policy_value(
    logged: LoggedData,
    model: RouterModel,
    *,
    rounds: int = 1000,
    seed: int = 0,
    default_willingness_to_pay: float | None = None,
) -> dict[str, Any]:
    """IPS and DR estimates (with 95 % intervals) of the model's greedy policy on the log.

        value = off_policy_value(load_logged("history.duckdb"), load_model("new.safetensors"))
        value["dr"]["utility"]  # {"estimate": ..., "low_95": ..., "high_95": ...}

    Also the logging policy's own value (`logging_policy`, the mean logged outcome) and
    the effective sample size of the importance weights. Decisions logged without a
    willingness to pay use `default_willingness_to_pay`, else the model's calibrated
    `info["willingness_to_pay"]["0.95"]`.
    """
    _check_rounds(rounds)
    wtp = _willingness_to_pay(logged, model, default_willingness_to_pay)
    target = _target(logged, model, wtp)
    draws = _bootstrap_means(target.terms, rounds, seed)
    return _summary(logged, target, draws) | {"bootstrap": {"rounds": rounds, "seed": seed}}


def compare(
    logged: LoggedData,
    candidate: RouterModel,
    serving: RouterModel,
    *,
    rounds: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Both models' off-policy values and paired-bootstrap intervals of their differences.

        result = compare(logged, new_model, serving_model)
        result["difference"]["dr_utility"]  # candidate - serving, with its 95 % interval

    Both policies are judged with the same willingness to pay per decision: the logged
    one, else the serving model's calibrated value.
    """
    _check_rounds(rounds)
    default = (serving.info.get("willingness_to_pay") or {}).get("0.95")
    wtp = _willingness_to_pay(logged, serving, default)
    new, old = _target(logged, candidate, wtp), _target(logged, serving, wtp)
    differences = {f"dr_{r}": new.terms[f"dr.{r}"] - old.terms[f"dr.{r}"] for r in _REWARDS}
    columns = (
        {f"candidate.{k}": v for k, v in new.terms.items()}
        | {f"serving.{k}": v for k, v in old.terms.items()}
        | differences
    )
    draws = _bootstrap_means(columns, rounds, seed)  # one resample for all: paired
    difference = {
        key: _interval(float(values.mean()), draws[key])
        | {"share_positive": float((draws[key] > 0).mean())}
        for key, values in differences.items()
    }
    return {
        "candidate": _summary(logged, new, draws, "candidate."),
        "serving": _summary(logged, old, draws, "serving."),
        "difference": difference,
        "bootstrap": {"rounds": rounds, "seed": seed},
    }


def calibrate_knob_off_policy(
    logged: LoggedData,
    model: RouterModel,
    costs: np.ndarray,
    fractions: tuple[float, ...] = (0.8, 0.9, 0.95, 1.0),
) -> dict[str, float | None]:
    """`evaluation.offline.calibrate_knob` on logged data: DR estimates instead of a full grid.

    For each fraction, the knob value (willingness to pay) of lowest estimated cost whose
    DR-estimated quality reaches that fraction of the best single agent's (None if none).
    """
    predicted = predicted_quality(logged, model)
    rows = np.arange(len(logged))
    inverse = 1.0 / logged.propensity

    def dr(choice: np.ndarray, reward: np.ndarray, model_at: np.ndarray) -> float:
        match = choice == logged.chosen
        at_logged = model_at[rows, logged.chosen]
        return float(np.mean(model_at[rows, choice] + match * inverse * (reward - at_logged)))

    cost_model = np.broadcast_to(costs, predicted.shape)
    filled = np.nan_to_num(predicted)
    known = np.flatnonzero(~np.isnan(predicted).all(axis=0))
    best = max(dr(np.full(len(logged), j), logged.quality, filled) for j in known)
    grid = knob_grid(costs[known])
    points = []
    for wtp in grid:
        choice = _greedy(predicted, costs, np.full(len(logged), wtp))
        points.append((dr(choice, logged.cost_usd, cost_model), dr(choice, logged.quality, filled)))
    out: dict[str, float | None] = {}
    for fraction in fractions:
        reaching = [i for i, (_, q) in enumerate(points) if q >= fraction * best]
        out[str(fraction)] = (
            float(grid[min(reaching, key=lambda i: points[i][0])]) if reaching else None
        )
    return out
