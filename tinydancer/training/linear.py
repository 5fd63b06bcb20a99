"""The default agent-model recipe: per-agent logistic heads, shrunk by cross-validation.

Each agent gets a logistic regression on the raw 384-d embedding, fitted by full-batch
gradient descent from ``w = 0`` and ``b`` = the log-odds of its mean quality (the loss
and L2 term of `eval`'s ``logistic_probe``). Two things are chosen per agent by K-fold
cross-validation on the training split alone (out-of-fold Brier score):

* how long to descend (early stopping: a time ``lr * steps`` from `TIMES`, 0 = none), and
* a shrinkage ``s`` in [0, 1] of the logit towards the agent's mean:
  ``logit = b0 + s * (w.x + b - b0)``.

Beside its own head, each agent may take a *shared-direction* head: every agent's
descent at time ``t`` (from `DIRECTION_TIMES`) is averaged into one direction ``v`` (what
makes a prompt hard or easy for the agents as a group), and the agent's logit is
``b0 + slope * d(x)``, ``d`` the standardised projection on ``v`` and ``slope`` from
`SLOPES`: two numbers per agent, so an agent with few errors (a strong model that is
right on 95 % of prompts has too few failures for a head of its own) or few outcomes
borrows the direction from the rest. Cross-validation picks, per agent, the best of
its own heads and the shared-direction heads; in each fold the direction comes from
that fold's training rows only.

A head is kept only if its out-of-fold Brier score beats the base rate's (by `GUARD`
paired standard errors, 0 by default); otherwise the agent's head is its base rate.
The guard was one standard error until subsampled training splits showed what it
cost: with 150-600 training prompts it turned most heads into base rates and the
router into the static mix, below the simple logistic probe and kNN, which keep weak
signal; AIQ rewards a weak but real ranking, and the shrinkage grid (down to 0.1) and
short descent times already hold a weak head close to its base rate.

Where cross-validation finds no signal for an agent (no candidate beats the base rate
out of fold) its head is its base rate; where it finds none for any agent the model predicts every agent's mean
quality for every prompt, and routing by the knob is the static mix of single agents.

The fitted heads are embedded exactly in a FastGRNN so the product's INT8 runtime
serves them unchanged (`embed_in_fastgrnn`): one hidden unit per agent, full-rank W
(the agent's weights, scaled so ``W x`` stays in tanh's linear range), U = 0, a gate
bias so negative that the gate stays shut (the state is the last message's), and a
diagonal head that undoes the scale. INT8 quantisation (per row) applies as to any
FastGRNN; the report gives the INT8-vs-float difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinydancer.datasets import RoutingOutcomes, describe_source
from tinydancer.model.conformal import calibrate
from tinydancer.model.embedding import DEFAULT_EMBEDDING, EmbeddingSpec
from tinydancer.model.fastgrnn import FastGRNNConfig, matrix_names
from tinydancer.model.quantization import dequantize_numpy, quantize
from tinydancer.model.weights import RouterModel
from tinydancer.training import metrics
from tinydancer.training.agent import agent_model_file, predict_quality

__all__ = [
    "TIMES",
    "ShrunkLogistic",
    "embed_in_fastgrnn",
    "fit_shrunk_logistic",
    "train_linear_agent_model",
]

TIMES = (0.0, 15.0, 50.0, 150.0, 500.0, 1500.0, 5000.0)  # lr * steps; the probe's is 150
SHRINKAGE = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
DIRECTION_TIMES = (500.0, 1500.0, 5000.0)  # descent times whose mean weights give v
SLOPES = tuple(np.round(np.geomspace(0.05, 3.2, 13), 3))  # logit per sd of d(x)
L2 = 10.0  # as the probe: the gradient of the penalty is L2 * w / n
FOLDS = 5
GUARD = 0.0  # paired standard errors a head must beat its base rate's CV Brier by (see above)
_GATE_SHUT = -16.0  # b_z: sigmoid(-16) ~ 1e-7
_LINEAR_RANGE = 0.05  # max |W x| over the training prompts (tanh(0.05) / 0.05 = 0.9992)


def sigmoid(z: np.ndarray | np.floating[Any]) -> np.ndarray:
    """Logistic function, clipped so that no logit overflows exp (warnings are errors)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


@dataclass(frozen=True)
class ShrunkLogistic:
    """Per-agent heads ``logit = weight @ x + bias`` and how cross-validation chose them."""

    weight: np.ndarray  # (A, D)
    bias: np.ndarray  # (A,)
    out_of_fold: np.ndarray  # (n, A) cross-validated predictions of the chosen heads
    choices: list[dict[str, Any]]  # per agent: kind, time, shrinkage or slope, CV Briers

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(sigmoid(np.asarray(x, np.float64) @ self.weight.T + self.bias))


def _base_logit(quality: np.ndarray, observed: np.ndarray) -> np.ndarray:
    mean = (np.nan_to_num(quality) * observed).sum(0) / np.maximum(observed.sum(0), 1.0)
    mean = np.where(observed.sum(0) > 0, mean, 0.5)
    mean = np.clip(mean, 1e-4, 1 - 1e-4)
    return np.asarray(np.log(mean / (1 - mean)))


def _descent_path(
    x: np.ndarray, quality: np.ndarray, learning_rate: float
) -> tuple[dict[float, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """{time: (W (D, A), b (A,))} along full-batch descent, and the start logits b0."""
    observed = (~np.isnan(quality)).astype(np.float32)
    y = np.nan_to_num(quality).astype(np.float32)
    counts = np.maximum(observed.sum(0), 1.0)
    b0 = _base_logit(quality, observed)
    w, b = np.zeros((x.shape[1], quality.shape[1]), np.float32), b0.astype(np.float32)
    at_step = {round(t / learning_rate): t for t in TIMES if t > 0}
    path = {0.0: (w.copy(), b.copy())}
    for step in range(1, max(at_step, default=0) + 1):
        residual = (sigmoid(x @ w + b) - y) * observed  # (n, A)
        w = w - learning_rate * (x.T @ residual + L2 * w) / counts
        b = b - learning_rate * residual.sum(0) / counts
        if step in at_step:
            path[at_step[step]] = (w.copy(), b.copy())
    return path, b0


def _safe_learning_rate(x: np.ndarray, quality: np.ndarray, folds: int) -> float:
    """One step size that is stable for every agent's loss, in every CV fold.

    Per agent, the loss's curvature is at most top_a / 4 (the logistic part, top_a the
    largest eigenvalue of its prompts' X^T X / count) plus L2 / count (the penalty). The
    step keeps each part's product with it at most 0.5; with every agent observed on
    hundreds of prompts the penalty's bound never binds and this is 2 / top. On small
    splits, or agents seen on a fraction of a combined split, it does.
    """
    observed = ~np.isnan(quality)
    x64 = x.astype(np.float64)
    rate = np.inf
    patterns: dict[bytes, float] = {}  # agents observed on the same prompts share top_a
    for a in range(quality.shape[1]):
        seen = observed[:, a]
        count = int(seen.sum())
        if count == 0:
            continue
        key = np.packbits(seen).tobytes()
        if key not in patterns:
            rows = x64[seen]
            patterns[key] = float(np.linalg.eigvalsh(rows.T @ rows / count).max())
        fold_count = max(count * (folds - 1) / folds, 1.0)
        rate = min(rate, 2.0 / max(patterns[key], 1e-6), 0.5 * fold_count / L2)
    return float(rate) if np.isfinite(rate) else 1.0


def _shrunk_logits(
    x: np.ndarray, head: tuple[np.ndarray, np.ndarray], b0: np.ndarray, shrinkage: float
) -> np.ndarray:
    w, b = head
    return np.asarray(b0 + shrinkage * (x @ w + b - b0))  # (n, A)


def _direction(
    path: dict[float, tuple[np.ndarray, np.ndarray]], time: float, x: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """The shared direction at `time` and the mean and sd of its projection over `x`."""
    v = path[time][0].astype(np.float64).mean(axis=1)  # (D,)
    projection = x @ v
    return v, float(projection.mean()), float(max(projection.std(), 1e-12))


Candidate = tuple[str, float, float]  # ("own", time, shrinkage) | ("shared", time, slope)
_BASE: Candidate = ("own", 0.0, 0.0)


def _out_of_fold(
    x: np.ndarray, quality: np.ndarray, folds: int, seed: int, learning_rate: float
) -> dict[Candidate, np.ndarray]:
    """Every candidate head's out-of-fold predictions (n, A)."""
    n, agents = quality.shape
    order = np.random.default_rng(seed).permutation(n)
    own = [("own", t, float(s)) for t in TIMES for s in SHRINKAGE]
    shared = [("shared", t, float(s)) for t in DIRECTION_TIMES for s in SLOPES]
    oof = {key: np.zeros((n, agents)) for key in own + shared}
    for fold in np.array_split(order, folds):
        rows = np.setdiff1d(order, fold)
        path, b0 = _descent_path(x[rows], quality[rows], learning_rate)
        for _, t, s in own:
            oof["own", t, s][fold] = sigmoid(_shrunk_logits(x[fold], path[t], b0, s))
        for t in DIRECTION_TIMES:
            v, mean, sd = _direction(path, t, x[rows])
            d = (x[fold] @ v - mean) / sd
            for slope in SLOPES:
                oof["shared", t, float(slope)][fold] = sigmoid(b0 + float(slope) * d[:, None])
    return oof


def _choose(
    oof: dict[Candidate, np.ndarray], y: np.ndarray, seen: np.ndarray, a: int, guard: float
) -> tuple[Candidate, dict[Candidate, float]]:
    """The candidate with the lowest CV Brier, if it beats the base rate by `guard` paired
    standard errors of the per-prompt squared-error difference (else the base rate)."""
    errors = {
        key: float(np.mean((p[seen, a] - y) ** 2)) if seen.any() else 0.0 for key, p in oof.items()
    }
    best = min(oof, key=errors.__getitem__)  # insertion order breaks ties: the base rate first
    if seen.sum() > 1 and best != _BASE:
        gain = (oof[_BASE][seen, a] - y) ** 2 - (oof[best][seen, a] - y) ** 2
        if gain.mean() <= guard * gain.std(ddof=1) / np.sqrt(len(gain)):
            best = _BASE
    return best, errors


def fit_shrunk_logistic(
    x: np.ndarray,
    quality: np.ndarray,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    guard: float = GUARD,
) -> ShrunkLogistic:
    """Per-agent heads (own or shared-direction) chosen by K-fold CV, refitted on all rows."""
    x = np.asarray(x, np.float32)
    n, agents = quality.shape
    learning_rate = _safe_learning_rate(x, quality, folds)
    oof = _out_of_fold(x, quality, folds, seed, learning_rate)
    observed = ~np.isnan(quality)
    path, b0 = _descent_path(x, quality, learning_rate)
    x64 = x.astype(np.float64)
    weight, bias = np.zeros((agents, x.shape[1])), b0.astype(np.float64).copy()
    chosen_oof = np.zeros((n, agents))
    choices: list[dict[str, Any]] = []
    for a in range(agents):
        seen = observed[:, a]
        best, errors = _choose(oof, quality[seen, a], seen, a, guard)
        kind, t, s = best
        if kind == "own":
            w, b = path[t]
            weight[a] = s * w[:, a]
            bias[a] = b0[a] + s * (b[a] - b0[a])
        else:
            v, mean, sd = _direction(path, t, x64)
            weight[a] = s * v / sd
            bias[a] = b0[a] - s * mean / sd
        chosen_oof[:, a] = oof[best][:, a]
        used = best != _BASE and s > 0 and t > 0
        choices.append(
            {
                "kind": kind if used else "base_rate",
                "time": t,
                "shrinkage" if kind == "own" else "slope": s,
                "cv_brier": errors[best],
                "cv_brier_base_rate": errors[_BASE],
            }
        )
    return ShrunkLogistic(weight, bias, chosen_oof, choices)


def embed_in_fastgrnn(
    heads: ShrunkLogistic, x_train: np.ndarray
) -> tuple[FastGRNNConfig, dict[str, np.ndarray]]:
    """Float FastGRNN parameters whose single-message logits are the heads' logits."""
    agents, dim = heads.weight.shape
    config = FastGRNNConfig(input_dim=dim, hidden_dim=agents, output_dim=agents)
    reach = np.max(np.abs(np.asarray(x_train, np.float64) @ heads.weight.T), axis=0)  # (A,)
    active = reach > 0
    scale = np.where(active, _LINEAR_RANGE / np.where(active, reach, 1.0), 0.0)  # (A,)
    zeta, nu = 1.0, -4.0
    gain = sigmoid(np.float64(zeta)) * (1 - sigmoid(np.float64(_GATE_SHUT))) + sigmoid(
        np.float64(nu)
    )
    head = np.diag(np.where(active, 1.0 / np.where(active, scale * gain, 1.0), 0.0))
    params = {
        "W": heads.weight * scale[:, None],
        "U": np.zeros((agents, agents)),
        "b_z": np.full(agents, _GATE_SHUT),
        "b_h": np.zeros(agents),
        "zeta": np.array([zeta]),
        "nu": np.array([nu]),
        "head.weight": head,
        "head.bias": heads.bias,
    }
    return config, {k: np.asarray(v, np.float32) for k, v in params.items()}


def _regime(choices: list[dict[str, Any]]) -> str:
    own = sum(1 for c in choices if c["kind"] == "own")
    shared = sum(1 for c in choices if c["kind"] == "shared")
    if own + shared == 0:
        return "no signal: every head is its agent's base rate (the static mix of single agents)"
    return (
        f"signal: {own + shared} of {len(choices)} agents' heads use the prompt "
        f"({own} their own, {shared} the shared direction), the rest base rates"
    )


def train_linear_agent_model(
    data: RoutingOutcomes,
    *,
    seed: int = 0,
    alpha: float = 0.1,
    embedding: EmbeddingSpec = DEFAULT_EMBEDDING,
) -> tuple[RouterModel, dict[str, Any]]:
    """Fit the heads on the whole split, embed, quantize; conformal from out-of-fold data."""
    x, quality = data.embeddings, data.quality
    heads = fit_shrunk_logistic(x, quality, seed=seed)
    config, float_params = embed_in_fastgrnn(heads, x)
    stored = quantize(float_params, matrix_names(config))
    int8 = dequantize_numpy(stored)
    observed = ~np.isnan(quality)
    calibration = calibrate(heads.out_of_fold[observed], quality[observed], alpha=alpha)
    served = predict_quality(int8, x)
    source = describe_source(data.source)
    counts = observed.sum(0)
    base = np.where(counts > 0, np.nansum(quality, 0) / np.maximum(counts, 1), 0.5)
    report = {
        "source": source,
        "agents": list(data.agents),
        "recipe": "per-agent logistic heads, own or shared-direction, chosen by 5-fold CV",
        "regime": _regime(heads.choices),
        "cv_per_agent": dict(zip(data.agents, heads.choices, strict=True)),
        "prompts": {"fit": len(data), "cross_validation_folds": FOLDS},
        "cv_auc_per_agent": {
            a: metrics.roc_auc(heads.out_of_fold[observed[:, j], j], quality[observed[:, j], j])
            for j, a in enumerate(data.agents)
        },
        "validation_brier": metrics.brier(heads.out_of_fold[observed], quality[observed]),
        "int8_vs_float32_max_abs_diff": float(np.max(np.abs(served - heads.predict(x)))),
        "seed": seed,
    }
    priced = ~np.isnan(data.cost_usd)
    mean_cost = np.nansum(data.cost_usd, 0) / np.maximum(priced.sum(0), 1)
    return agent_model_file(
        data,
        config,
        stored,
        embedding,
        calibration,
        report,
        mean_cost,
        base,
        {"data": source, "parent_model": None},
    )
