"""Plain-numpy twin of the FastGRNN cell (`tinydancer.model.fastgrnn.forward`).

It defines what the jitted cell computes (tests compare the two), gives benchmarks a
baseline measured in the same run, and evaluates models outside JAX in training.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["fastgrnn_forward", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def fastgrnn_forward(
    params: Mapping[str, np.ndarray], xs: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """numpy twin of `tinydancer.model.fastgrnn.forward`: xs (B, T, D), mask (B, T) -> (B, O)."""
    w = params["W"] if "W" in params else params["W2"] @ params["W1"]
    u = params["U"] if "U" in params else params["U2"] @ params["U1"]
    batch, steps, _ = xs.shape
    h = np.zeros((batch, u.shape[0]), np.float32)
    zeta, nu = sigmoid(params["zeta"]), sigmoid(params["nu"])
    for t in range(steps):
        pre = xs[:, t] @ w.T + h @ u.T
        z = sigmoid(pre + params["b_z"])
        h_new = z * h + (zeta * (1.0 - z) + nu) * np.tanh(pre + params["b_h"])
        h = h_new if mask is None else np.where(mask[:, t, None], h_new, h)
    return h @ params["head.weight"].T + params["head.bias"]
