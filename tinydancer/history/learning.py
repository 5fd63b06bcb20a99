"""Learning from the routing history: retrain on logged decisions, estimate, promote.

    logged = load_logged("history.duckdb")            # or a Parquet export directory
    serving = load_model("serving.safetensors")
    model, report = train_from_history(logged, serving)
    save_model(model, "candidate.safetensors")
    compare(logged, model, serving)["difference"]["dr_utility"]
    promote(logged, "candidate.safetensors", serving, to="live.safetensors")

The log is not a dataset of every agent on every request: each request was answered by
the one agent the serving router chose, with a known probability (the logged
propensity). Training therefore sees one observed cell per request and weights it by
1 / propensity (clipped, self-normalised), so that agents the logging policy favoured in
some region do not look better or worse there than they are. The value of a model's
greedy policy is estimated off-policy (`off_policy`: IPS and doubly robust, bootstrap
intervals), and `promote` installs a candidate only if its DR utility estimate is not
below the serving model's. The method and its assumptions: docs/learning.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinydancer.datasets import RoutingOutcomes
from tinydancer.errors import ConfigError, HistoryError, ModelFileError
from tinydancer.history.logged import LoggedData, load_logged
from tinydancer.history.off_policy import (
    agent_mean_costs,
    calibrate_knob_off_policy,
    compare,
    greedy_policy,
    off_policy_value,
)
from tinydancer.model.embedding import DEFAULT_EMBEDDING
from tinydancer.model.weights import RouterModel, load_model, save_model
from tinydancer.training.agent import split_indices, train_agent_model
from tinydancer.training.fit import FitSettings

__all__ = [
    "LoggedData",
    "PromotionResult",
    "compare",
    "greedy_policy",
    "inverse_propensity_weights",
    "load_logged",
    "off_policy_value",
    "promote",
    "train_from_history",
]


def inverse_propensity_weights(propensity: np.ndarray, max_weight: float = 20.0) -> np.ndarray:
    """1 / propensity clipped at `max_weight`, scaled to mean 1 (max_weight=1: no weighting)."""
    if not max_weight >= 1.0:
        raise ConfigError(f"max_weight: got {max_weight!r}; expected a number >= 1")
    weight = np.minimum(1.0 / np.asarray(propensity, np.float64), max_weight)
    return weight / weight.mean()


def _parent_start(
    parent: RouterModel, agents: list[str], base_rate: np.ndarray
) -> dict[str, np.ndarray]:
    """The parent's float weights, the head extended to `agents` (new heads: base rate)."""
    params = parent.float_params()
    heads = {a: j for j, a in enumerate(parent.feature_schema["agents"])}
    weight = np.zeros((len(agents), parent.config.hidden_dim), np.float32)
    bias = np.log(base_rate / (1 - base_rate)).astype(np.float32)
    for j, agent in enumerate(agents):
        if agent in heads:
            weight[j] = params["head.weight"][heads[agent]]
            bias[j] = params["head.bias"][heads[agent]]
    return {**params, "head.weight": weight, "head.bias": bias}


def train_from_history(
    logged: LoggedData,
    parent: RouterModel | None = None,
    *,
    seed: int = 0,
    max_weight: float = 20.0,
    settings: FitSettings | None = None,
) -> tuple[RouterModel, dict[str, Any]]:
    """Retrain the agent model on logged outcomes, weighted by inverse propensity.

        model, report = train_from_history(load_logged("history.duckdb"), parent=serving)

    One observed cell per logged decision (the chosen agent's outcome), weight
    1 / propensity clipped at `max_weight` and self-normalised. Agents: the parent's,
    then any new agent in the log; the fit starts from the parent's weights (new heads at
    their logged base rate). The log is cut 70 / 15 / 15 into fit, early-stopping and
    conformal-calibration slices; the knob (`info["willingness_to_pay"]`) is calibrated
    off-policy on the calibration slice. `info["lineage"]` records the data, its window,
    the row counts, the parent and the weighting.
    """
    spec = parent.embedding if parent is not None else DEFAULT_EMBEDDING
    if logged.embeddings.shape[1] != spec.dim:
        raise HistoryError(
            f"{logged.source}: logged embeddings have {logged.embeddings.shape[1]} dimensions; "
            f"expected {spec.dim} ({spec.model})"
        )
    known = list(parent.feature_schema["agents"]) if parent is not None else []
    agents = known + [a for a in logged.agents if a not in known]
    position = np.array([agents.index(a) for a in logged.agents])[logged.chosen]  # (n,)
    rows = np.arange(len(logged))
    quality = np.full((len(logged), len(agents)), np.nan)
    quality[rows, position] = logged.quality
    cost = np.full_like(quality, np.nan)
    cost[rows, position] = logged.cost_usd
    weight = inverse_propensity_weights(logged.propensity, max_weight)
    # Each agent's base rate, weighted like the loss (what a new head starts from).
    counts = np.bincount(position, minlength=len(agents))
    totals = np.bincount(position, weights=weight, minlength=len(agents))
    rate = np.bincount(position, weights=weight * logged.quality, minlength=len(agents))
    base_rate = np.where(counts > 0, np.clip(rate / np.maximum(totals, 1e-12), 0.02, 0.98), 0.5)
    fit_rows, _, calibration_rows = split_indices(len(logged), seed)
    lineage = {
        "data": logged.source,
        "window": list(logged.window),
        "rows": {
            "decisions": logged.rows.get("decisions", len(logged)),
            "with_outcome": len(logged),
            "training": len(fit_rows),
        },
        "parent_model": parent.version if parent is not None else None,
        "weighting": f"inverse propensity, clipped at {max_weight:g}, self-normalised",
    }
    sizes: dict[str, Any] = {}
    if parent is not None:
        config = parent.config
        sizes = {"hidden_dim": config.hidden_dim, "w_rank": config.w_rank, "u_rank": config.u_rank}
    model, report = train_agent_model(
        RoutingOutcomes(logged.request_ids, agents, logged.embeddings, quality, cost, None, ""),
        seed=seed,
        alpha=parent.calibration.alpha if parent is not None else 0.1,
        settings=settings,
        lineage=lineage,
        row_weight=weight,
        initial=_parent_start(parent, agents, base_rate) if parent is not None else None,
        embedding=spec,
        **sizes,
    )
    logged_cost = dict(zip(logged.agents, map(float, agent_mean_costs(logged)), strict=True))
    parent_info = parent.info if parent is not None else {}
    parent_cost = parent_info.get("agent_mean_cost_usd", {})
    parent_base = parent_info.get("agent_base_quality", {})
    mean_cost = {a: logged_cost.get(a, float(parent_cost.get(a, 0.0))) for a in agents}
    base = {
        a: float(base_rate[j]) if counts[j] else float(parent_base.get(a, 0.5))
        for j, a in enumerate(agents)
    }
    costs = np.array([logged_cost[a] for a in logged.agents])
    model = model.with_info(agent_mean_cost_usd=mean_cost, agent_base_quality=base)
    knob = calibrate_knob_off_policy(logged.take(calibration_rows), model, costs)
    clipped = float(np.mean(1.0 / logged.propensity > max_weight))
    report |= {
        "source": logged.source,
        "lineage": lineage,
        "rows": dict(logged.rows),
        "importance_weights": {
            "max_weight": max_weight,
            "clipped_share": clipped,
            "effective_sample_size": float(weight.sum() ** 2 / (weight**2).sum()),
        },
        "willingness_to_pay": knob,
    }
    return model.with_info(willingness_to_pay=knob), report


@dataclass(frozen=True)
class PromotionResult:
    """What `promote` decided, why, and where it wrote the model (if it did)."""

    promoted: bool
    forced: bool
    message: str
    candidate_version: str
    serving_version: str
    comparison: dict[str, Any]
    written_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "forced": self.forced,
            "message": self.message,
            "candidate_version": self.candidate_version,
            "serving_version": self.serving_version,
            "written_to": self.written_to,
            "comparison": self.comparison,
        }


def _model(source: RouterModel | str | os.PathLike[str]) -> RouterModel:
    return source if isinstance(source, RouterModel) else load_model(source, expect_mode="agent")


def _install(
    candidate: RouterModel, source: RouterModel | str | os.PathLike[str], to: Path
) -> None:
    """Put the candidate at `to` atomically: a checked temp file in the same directory, renamed."""
    if isinstance(source, RouterModel):
        save_model(candidate, to)  # writes a temp file and renames it itself
        return
    to.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=to.parent, prefix=f".{to.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        copied = load_model(temp, expect_mode="agent")
        if copied.version != candidate.version:
            raise HistoryError(
                f"{source} changed during promotion: compared version {candidate.version}, "
                f"found {copied.version}"
            )
        os.replace(temp, to)
    finally:
        Path(temp).unlink(missing_ok=True)


def promote(
    logged: LoggedData,
    candidate: RouterModel | str | os.PathLike[str],
    serving: RouterModel | str | os.PathLike[str],
    *,
    to: str | os.PathLike[str] | None = None,
    force: bool = False,
    rounds: int = 1000,
    seed: int = 0,
) -> PromotionResult:
    """Promote `candidate` over `serving` unless its DR utility estimate is lower.

        result = promote(logged, "new.safetensors", "live.safetensors", to="live.safetensors")
        if not result.promoted: print(result.message)

    The rule: promote when DR utility(candidate) >= DR utility(serving) on the log (the
    interval of the difference is reported, not required to exclude 0), or when `force`.
    With `to`, the candidate file is copied there atomically on promotion. A candidate
    for another embedding model is refused even with `force` (ModelFileError).
    """
    new, old = _model(candidate), _model(serving)
    if new.embedding != old.embedding:
        raise ModelFileError(
            new.version,
            "embedding model differs from the serving model",
            expected=str(old.embedding),
            found=str(new.embedding),
        )
    comparison = compare(logged, new, old, rounds=rounds, seed=seed)
    ours, theirs = comparison["candidate"]["dr"]["utility"], comparison["serving"]["dr"]["utility"]
    gap = comparison["difference"]["dr_utility"]
    figures = (
        f"DR utility {ours['estimate']:.4f} [{ours['low_95']:.4f}, {ours['high_95']:.4f}] vs "
        f"serving {old.version} {theirs['estimate']:.4f} [{theirs['low_95']:.4f}, "
        f"{theirs['high_95']:.4f}]; difference {gap['estimate']:+.4f} "
        f"[{gap['low_95']:+.4f}, {gap['high_95']:+.4f}] (95 %, {len(logged)} logged decisions)"
    )
    overlap = comparison["candidate"]["training_window_overlap"]
    if overlap > 0:
        figures += f"; warning: {overlap:.0%} of them are in the candidate's training window"
    better = ours["estimate"] >= theirs["estimate"]
    if not better and not force:
        message = (
            f"refused: candidate {new.version} {figures}; "
            "pass force=True (--force) to promote anyway"
        )
        return PromotionResult(False, False, message, new.version, old.version, comparison)
    written = None
    if to is not None:
        _install(new, candidate, Path(to))
        written = str(to)
    verb = "promoted" if better else "promoted (forced, estimate below serving)"
    where = f" to {written}" if written else ""
    message = f"{verb} candidate {new.version}{where}: {figures}"
    return PromotionResult(
        True, force and not better, message, new.version, old.version, comparison, written
    )
