"""Plain-numpy versions of the candidate-mode kernel (features and the whole score).

They define what the kernels compute (tests compare the two), give the benchmarks a
baseline measured in the same run, and compute training features outside JAX.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tinydancer.model.conformal import uncertainty_from_table
from tinydancer.model.reference import fastgrnn_forward, sigmoid

__all__ = ["candidate_features", "score_candidates"]


def candidate_features(
    query: np.ndarray, embeddings: np.ndarray, columns: np.ndarray, constants: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of `tinydancer.candidates.features.candidate_features` (same argument layout).

    `query` may also be (N, D), one query per row (training data mixes many queries).
    """
    if query.ndim == 1:
        dots, query_norm = embeddings @ query, np.sqrt(query @ query)
    else:
        dots = np.einsum("ij,ij->i", embeddings, query)
        query_norm = np.sqrt(np.einsum("ij,ij->i", query, query))
    norms_sq = np.einsum("ij,ij->i", embeddings, embeddings)
    similarity = dots / np.sqrt(np.maximum(norms_sq, 1e-30)) / query_norm
    age_s, access_count, success_rate, overlap = columns[0], columns[1], columns[2], columns[3]
    weights, decay, inv_log = constants[:5], constants[5], constants[6]
    recency = np.exp(-decay * np.maximum(age_s, 0.0))
    frequency = np.minimum(1.0, np.log1p(np.maximum(access_count, 0.0)) * inv_log)
    features = np.stack([similarity, recency, frequency, success_rate, overlap], axis=1).astype(
        np.float32
    )
    heuristic = features @ weights / max(float(weights.sum()), 1e-12)
    return features * weights, heuristic


def score_candidates(
    params: Mapping[str, np.ndarray],
    table: np.ndarray,
    constants: np.ndarray,
    query: np.ndarray,
    embeddings: np.ndarray,
    columns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The router's whole computation in numpy: (confidence, uncertainty) per candidate.

    `table` is `conformal.uncertainty_table(calibration)`, as the router uses.
    """
    x, _ = candidate_features(query, embeddings, columns, constants)
    confidence = sigmoid(fastgrnn_forward(params, x[:, None, :])[:, 0])
    return confidence, uncertainty_from_table(table, confidence)
