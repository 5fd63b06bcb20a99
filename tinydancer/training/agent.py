"""Train the agent-mode quality model from a routing-outcomes split.

One FastGRNN reads a request's message embeddings (one time step per message) and
predicts, through one output per agent, the probability that each agent answers
well. All agents share the recurrent representation (multi-task), which is what lets
a thousand prompts inform eleven heads. Loss: binary cross-entropy over the observed
(prompt, agent) cells only; head biases start at each agent's base rate.

The training split is cut into fit / validation (early stopping) / calibration
(split-conformal) slices by prompt; nothing is fitted on the calibration slice.

Retraining from the routing history (`tinydancer.history.learning`) uses the same
function with one observed cell per prompt (the agent that served it), a per-prompt
loss weight (`row_weight`, inverse propensities) and the parent model's weights as the
starting point (`initial`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tinydancer.datasets import RoutingOutcomes, describe_source
from tinydancer.model.conformal import calibrate
from tinydancer.model.embedding import DEFAULT_EMBEDDING, EmbeddingSpec
from tinydancer.model.fastgrnn import FastGRNNConfig, forward, init_params
from tinydancer.model.quantization import QUANTIZATION_SCHEME, dequantize_numpy
from tinydancer.model.reference import fastgrnn_forward
from tinydancer.model.weights import RouterModel
from tinydancer.training import metrics
from tinydancer.training.fit import FitSettings, train_fastgrnn

__all__ = ["predict_quality", "split_indices", "train_agent_model"]

DEFAULT_SETTINGS = FitSettings(
    learning_rate=2e-3,
    weight_decay=1e-2,
    batch_size=64,
    max_epochs=300,
    patience=20,
    sparsity=0.3,
    retrain_epochs=40,
)


def _loss(
    params: dict[str, jax.Array], x: jax.Array, y: jax.Array, observed: jax.Array
) -> jax.Array:
    logits = forward(params, x[:, None, :])  # (B, A)
    per_cell = observed * optax.sigmoid_binary_cross_entropy(logits, y)
    return per_cell.sum(axis=1) / jnp.maximum(observed.sum(axis=1), 1.0)


def _weighted_loss(
    params: dict[str, jax.Array],
    x: jax.Array,
    y: jax.Array,
    observed: jax.Array,
    weight: jax.Array,
) -> jax.Array:
    return weight * _loss(params, x, y, observed)  # (B,)


def _column_means(
    matrix: np.ndarray, fallback: np.ndarray | float, row_weight: np.ndarray | None = None
) -> np.ndarray:
    """NaN-aware (weighted) column means; `fallback` for a column without any value."""
    present = ~np.isnan(matrix)
    if row_weight is None:
        counts = present.sum(axis=0)
        return np.where(counts > 0, np.nansum(matrix, axis=0) / np.maximum(counts, 1), fallback)
    weight = present * row_weight[:, None]  # (n, A)
    totals = weight.sum(axis=0)
    sums = (np.nan_to_num(matrix) * weight).sum(axis=0)
    return np.where(totals > 0, sums / np.where(totals > 0, totals, 1.0), fallback)


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, validation, calibration) prompt indices of a training split (70 / 15 / 15)."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(0.15 * n)
    return order[2 * cut :], order[:cut], order[cut : 2 * cut]


def predict_quality(params: dict[str, np.ndarray], embeddings: np.ndarray) -> np.ndarray:
    """(n, A) predicted quality for single-message requests (numpy; used offline)."""
    logits = fastgrnn_forward(params, embeddings[:, None, :])
    return 1.0 / (1.0 + np.exp(-logits))


def train_agent_model(
    data: RoutingOutcomes,
    *,
    seed: int = 0,
    hidden_dim: int = 32,
    w_rank: int | None = 16,
    u_rank: int | None = None,
    alpha: float = 0.1,
    settings: FitSettings | None = None,
    lineage: dict[str, Any] | None = None,
    row_weight: np.ndarray | None = None,
    initial: Mapping[str, np.ndarray] | None = None,
    embedding: EmbeddingSpec = DEFAULT_EMBEDDING,
) -> tuple[RouterModel, dict[str, Any]]:
    """Fit, prune, quantize and calibrate on one split; returns the model and a summary.

    `row_weight` (n,) weights each prompt's loss (None: every prompt counts once);
    `initial` replaces the random start, head included (None: fresh weights, head
    biases at each agent's base rate on the fit slice).
    """
    base = settings or DEFAULT_SETTINGS
    settings = FitSettings(**{**base.__dict__, "seed": seed})
    fit_rows, val, cal = split_indices(len(data), seed)
    quality = data.quality
    targets = np.nan_to_num(quality).astype(np.float32)
    observed = (~np.isnan(quality)).astype(np.float32)
    x = data.embeddings
    n_agents = len(data.agents)
    config = FastGRNNConfig(
        input_dim=x.shape[1],
        hidden_dim=hidden_dim,
        output_dim=n_agents,
        w_rank=w_rank,
        u_rank=u_rank,
    )
    # An agent without an outcome in the fit slice (a parent's agent absent from a log)
    # keeps a neutral base rate rather than NaN; with row weights the rate is weighted too.
    fit_weight = None if row_weight is None else np.asarray(row_weight, np.float64)[fit_rows]
    base_rate = np.clip(_column_means(quality[fit_rows], 0.5, fit_weight), 0.02, 0.98)
    if initial is None:
        start = {
            k: np.asarray(v) for k, v in init_params(config, key=jax.random.PRNGKey(seed)).items()
        }
        start["head.bias"] = np.log(base_rate / (1 - base_rate)).astype(np.float32)
    else:
        start = {k: np.asarray(v, np.float32) for k, v in initial.items()}
    loss: Callable[..., jax.Array] = _loss
    columns = [x, targets, observed]
    if row_weight is not None:
        loss, columns = _weighted_loss, [*columns, np.asarray(row_weight, np.float32)]
    stored, summary = train_fastgrnn(
        config,
        loss,
        [c[fit_rows] for c in columns],
        [c[val] for c in columns],
        settings,
        initial=start,
    )
    float_params = summary.pop("float_params")
    int8 = dequantize_numpy(stored)
    p_cal = predict_quality(int8, x[cal])
    mask = observed[cal] > 0
    calibration = calibrate(p_cal[mask], quality[cal][mask], alpha=alpha)
    p_val_int8, p_val_float = predict_quality(int8, x[val]), predict_quality(float_params, x[val])
    val_mask = observed[val] > 0
    source = describe_source(data.source)
    report = {
        "source": source,
        "agents": list(data.agents),
        "prompts": {"fit": len(fit_rows), "validation": len(val), "calibration": len(cal)},
        "validation_auc_per_agent": {
            a: metrics.roc_auc(p_val_int8[val_mask[:, j], j], quality[val][val_mask[:, j], j])
            for j, a in enumerate(data.agents)
        },
        "validation_brier": metrics.brier(p_val_int8[val_mask], quality[val][val_mask]),
        "int8_vs_float32_max_abs_diff": float(np.max(np.abs(p_val_int8 - p_val_float))),
        "training": {k: v for k, v in summary.items() if k != "pruned"},
        "seed": seed,
    }
    mean_cost = _column_means(data.cost_usd[fit_rows], np.nan)
    return agent_model_file(
        data,
        config,
        stored,
        embedding,
        calibration,
        report,
        mean_cost,
        base_rate,
        lineage or {"data": source, "parent_model": None},
    )


def agent_model_file(
    data: Any,
    config: Any,
    stored: Any,
    embedding: Any,
    calibration: Any,
    report: dict[str, Any],
    mean_cost: Any,
    base_quality: Any,
    lineage: dict[str, Any],
) -> tuple[RouterModel, dict[str, Any]]:
    """The agent-mode model file every training recipe writes, and its report completed
    with the file's size, sparsity and version."""
    model = RouterModel(
        mode="agent",
        config=config,
        stored=stored,
        feature_schema={
            "embedding": embedding.to_dict(),
            "agents": list(data.agents),
            "input": "message embeddings, one time step per message, oldest first",
        },
        calibration=calibration,
        info={
            "report": report,
            "quantization": QUANTIZATION_SCHEME["name"],
            "agent_mean_cost_usd": dict(zip(data.agents, map(float, mean_cost), strict=True)),
            "agent_base_quality": dict(zip(data.agents, map(float, base_quality), strict=True)),
            "lineage": lineage,
        },
    )
    report["size_bytes"] = model.size_bytes
    report["sparsity"] = model.sparsity
    report["version"] = model.version
    return model, report
