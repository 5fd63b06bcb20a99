"""Plain-numpy versions of the jitted computations.

They define what the kernels compute (tests compare the two), give the benchmarks a
baseline measured in the same run, and compute training features outside JAX.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tinydancer.conformal import uncertainty_from_table

__all__ = ["candidate_features", "fastgrnn_forward", "score_candidates"]


def candidate_features(
    query: np.ndarray, embeddings: np.ndarray, columns: np.ndarray, constants: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of `tinydancer.features.candidate_features` (same argument layout).

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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def fastgrnn_forward(
    params: Mapping[str, np.ndarray], xs: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """numpy twin of `tinydancer.fastgrnn.forward`: xs (B, T, D), mask (B, T) -> (B, O)."""
    w = params["W"] if "W" in params else params["W2"] @ params["W1"]
    u = params["U"] if "U" in params else params["U2"] @ params["U1"]
    batch, steps, _ = xs.shape
    h = np.zeros((batch, u.shape[0]), np.float32)
    zeta, nu = _sigmoid(params["zeta"]), _sigmoid(params["nu"])
    for t in range(steps):
        pre = xs[:, t] @ w.T + h @ u.T
        z = _sigmoid(pre + params["b_z"])
        h_new = z * h + (zeta * (1.0 - z) + nu) * np.tanh(pre + params["b_h"])
        h = h_new if mask is None else np.where(mask[:, t, None], h_new, h)
    return h @ params["head.weight"].T + params["head.bias"]


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
    confidence = _sigmoid(fastgrnn_forward(params, x[:, None, :])[:, 0])
    return confidence, uncertainty_from_table(table, confidence)
