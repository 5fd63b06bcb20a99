"""Train the candidate-mode model (5 features -> FastGRNN -> P(useful)).

Two sources of labelled rows: the synthetic generator (`training.synthetic`, what the
shipped model is trained on) and reported outcomes (rows of query/candidate features
with the success a client reported; `train_candidate_model(data=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import optax

from tinydancer.candidates import reference
from tinydancer.candidates.features import FeatureConfig
from tinydancer.model.conformal import calibrate, prediction_set
from tinydancer.model.embedding import DEFAULT_EMBEDDING
from tinydancer.model.fastgrnn import FastGRNNConfig, forward
from tinydancer.model.quantization import QUANTIZATION_SCHEME, dequantize_numpy
from tinydancer.model.reference import fastgrnn_forward
from tinydancer.model.weights import RouterModel
from tinydancer.training import metrics
from tinydancer.training.fit import FitSettings, train_fastgrnn
from tinydancer.training.synthetic import CandidateData, generate

__all__ = ["CandidateRows", "rows_from_synthetic", "train_candidate_model"]


@dataclass(frozen=True, eq=False)
class CandidateRows:
    """Model inputs and labels: x (N, 5) weighted features, y (N,) 0/1, weight (N,)."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray

    def take(self, index: np.ndarray) -> CandidateRows:
        return CandidateRows(self.x[index], self.y[index], self.weight[index])


def rows_from_synthetic(data: CandidateData, feature_config: FeatureConfig) -> CandidateRows:
    x, _ = reference.candidate_features(
        data.queries[data.query_index], data.embeddings, data.columns(), feature_config.constants()
    )
    return CandidateRows(x.astype(np.float32), data.useful, np.ones_like(data.useful))


def _loss(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    logits = forward(params, x[:, None, :])[:, 0]
    return w * optax.sigmoid_binary_cross_entropy(logits, y)


def _predict(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    logits = fastgrnn_forward(params, x[:, None, :])[:, 0]
    return 1.0 / (1.0 + np.exp(-logits))


def train_candidate_model(
    *,
    seed: int = 0,
    n_queries: int = 3000,
    candidates_per_query: int = 16,
    hidden_dim: int = 8,
    sparsity: float = 0.5,
    alpha: float = 0.1,
    feature_config: FeatureConfig | None = None,
    data: CandidateRows | None = None,
    settings: FitSettings | None = None,
) -> tuple[RouterModel, dict[str, Any]]:
    """Fit, prune, quantize and calibrate; returns the model and a report of its metrics.

    With `data=None` the rows come from the synthetic generator (train / validation /
    calibration / test drawn with different seeds); otherwise `data` is split
    60 / 15 / 15 / 10 at random.
    """
    feature_config = feature_config or FeatureConfig()
    settings = settings or FitSettings(
        seed=seed, sparsity=sparsity, learning_rate=1e-2, batch_size=512
    )
    if data is None:
        source = f"synthetic generator (tinydancer.training.synthetic), seed {seed}"
        splits = [
            rows_from_synthetic(
                generate(n, candidates_per_query, seed=seed * 10 + k), feature_config
            )
            for k, n in enumerate((n_queries, n_queries // 4, n_queries // 4, n_queries // 4))
        ]
        train, val, cal, test = splits
    else:
        source = "reported outcomes"
        order = np.random.default_rng(seed).permutation(len(data.y))
        cuts = (np.array([0.6, 0.75, 0.9]) * len(order)).astype(int)
        train, val, cal, test = (data.take(part) for part in np.split(order, cuts))
    config = FastGRNNConfig(input_dim=5, hidden_dim=hidden_dim, output_dim=1)
    stored, summary = train_fastgrnn(
        config, _loss, (train.x, train.y, train.weight), (val.x, val.y, val.weight), settings
    )
    float_params = summary.pop("float_params")
    int8_params = dequantize_numpy(stored)
    calibration = calibrate(_predict(int8_params, cal.x), cal.y, alpha=alpha)

    p_int8, p_float = _predict(int8_params, test.x), _predict(float_params, test.x)
    heuristic = test.x.sum(axis=1) / float(feature_config.weights().sum())
    covered = prediction_set(calibration, p_int8)[np.arange(len(test.y)), test.y.astype(int)]
    report = {
        "source": source,
        "rows": {
            "train": len(train.y),
            "validation": len(val.y),
            "calibration": len(cal.y),
            "test": len(test.y),
        },
        "test_auc": metrics.roc_auc(p_int8, test.y),
        "test_auc_heuristic": metrics.roc_auc(heuristic, test.y),
        "test_brier": metrics.brier(p_int8, test.y),
        "test_log_loss": metrics.log_loss(p_int8, test.y),
        "int8_vs_float32_max_abs_diff": float(np.max(np.abs(p_int8 - p_float))),
        "int8_vs_float32_mean_abs_diff": float(np.mean(np.abs(p_int8 - p_float))),
        "conformal_alpha": alpha,
        "conformal_test_coverage": float(covered.mean()),
        "training": {k: v for k, v in summary.items() if k != "pruned"},
        "seed": seed,
    }
    model = RouterModel(
        mode="candidate",
        config=config,
        stored=stored,
        feature_schema={
            "embedding": DEFAULT_EMBEDDING.to_dict(),
            "features": feature_config.to_schema(),
        },
        calibration=calibration,
        info={"report": report, "quantization": QUANTIZATION_SCHEME["name"]},
    )
    report["size_bytes"] = model.size_bytes
    report["sparsity"] = model.sparsity
    report["version"] = model.version
    return model, report
