"""Split-conformal uncertainty for probabilistic scores.

Calibration (`calibrate`) takes held-out pairs (p_i, y_i), p the model's predicted
probability / quality in [0, 1], y the observed outcome in [0, 1], and keeps the
sorted nonconformity scores s_i = |y_i - p_i|. For a new prediction p and a
hypothetical outcome y the conformal p-value is

    pval(y) = (1 + #{i : s_i >= |y - p|}) / (n + 1),

and for exchangeable data P(pval(Y_true) <= alpha) <= alpha. Hence:

* the prediction set {y in {0, 1} : pval(y) > alpha} covers the true binary outcome
  with probability >= 1 - alpha (`prediction_set`; tested empirically);
* `uncertainty(p)` is the p-value of the outcome *opposite* to the predicted one,
  pval at |y - p| = max(p, 1 - p): how plausible, on held-out evidence, it is that the
  prediction is wrong. A router that acts only when uncertainty <= alpha takes a wrong
  action on at most an alpha fraction of all requests (marginally, over exchangeable
  traffic).

Pure functions over a frozen `ConformalCalibration`, in the optax style; `uncertainty`
has a numpy and a jnp form (the jnp one runs inside the router's jitted call).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tinydancer.errors import ConfigError

__all__ = [
    "ConformalCalibration",
    "calibrate",
    "prediction_set",
    "uncertainty",
    "uncertainty_from_table",
    "uncertainty_jnp",
    "uncertainty_table",
]


@dataclass(frozen=True, slots=True, eq=False)
class ConformalCalibration:
    """Sorted held-out nonconformity scores and the level they were validated for."""

    scores: np.ndarray  # (n,) float32, ascending
    alpha: float

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    def qhat(self, alpha: float | None = None) -> float:
        """The conformal quantile: |y - p| <= qhat holds with probability >= 1 - alpha."""
        a = self.alpha if alpha is None else alpha
        rank = int(np.ceil((self.n + 1) * (1.0 - a)))
        return float("inf") if rank > self.n else float(self.scores[rank - 1])

    def metadata(self) -> str:
        """JSON for the model file's `__metadata__` (the scores go in a tensor)."""
        return json.dumps(
            {
                "method": "split-conformal, score |y - p|",
                "alpha": self.alpha,
                "n": self.n,
                "qhat": self.qhat(),
            }
        )

    @classmethod
    def from_metadata(cls, text: str, scores: np.ndarray) -> ConformalCalibration:
        data: dict[str, Any] = json.loads(text)
        if int(data["n"]) != scores.shape[0]:
            raise ConfigError(
                f"conformal: metadata says n={data['n']}, scores tensor has {scores.shape[0]}"
            )
        return cls(scores=np.asarray(scores, np.float32), alpha=float(data["alpha"]))


def calibrate(predictions: Any, outcomes: Any, alpha: float = 0.1) -> ConformalCalibration:
    """Fit on held-out (prediction, outcome) pairs that the model never trained on."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha: got {alpha!r}; expected a level in (0, 1)")
    p = np.asarray(predictions, np.float64).ravel()
    y = np.asarray(outcomes, np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ConfigError(f"calibrate: need equal, non-empty arrays; got {p.shape} and {y.shape}")
    if not (np.isfinite(p).all() and np.isfinite(y).all()):
        raise ConfigError("calibrate: predictions and outcomes must be finite")
    scores = np.sort(np.abs(y - p)).astype(np.float32)
    return ConformalCalibration(scores=scores, alpha=float(alpha))


def _p_value(scores: np.ndarray, s: np.ndarray) -> np.ndarray:
    n = scores.shape[0]
    at_least = n - np.searchsorted(scores, s.astype(np.float32), side="left")
    return (1.0 + at_least) / (n + 1.0)


def uncertainty(calibration: ConformalCalibration, p: Any) -> np.ndarray:
    """P-value of the outcome opposite to the prediction (smaller = more certain)."""
    p = np.asarray(p, np.float32)
    return _p_value(calibration.scores, np.maximum(p, 1.0 - p))


TABLE_SIZE = 1024


def uncertainty_table(calibration: ConformalCalibration, size: int = TABLE_SIZE) -> np.ndarray:
    """The p-value function sampled at s_k = 0.5 + 0.5 k / (size - 1), k = 0..size-1.

    `uncertainty_jnp` reads it at the grid point at or below max(p, 1 - p); the p-value
    is non-increasing in s, so the result is never below the exact p-value (conservative:
    the coverage guarantee holds) and exceeds it by at most the share of calibration
    scores inside one grid step. A table lookup is one gather; a binary search over
    thousands of scores costs several XLA loop iterations per call.
    """
    grid = 0.5 + 0.5 * np.arange(size, dtype=np.float64) / (size - 1)
    return _p_value(calibration.scores, grid.astype(np.float32)).astype(np.float32)


def _table_lookup(xp: Any, table: Any, p: Any) -> Any:
    size = table.shape[0]
    s = xp.maximum(p, 1.0 - p)
    index = xp.clip(xp.floor((s - 0.5) * (2 * (size - 1)) - 1e-3).astype(xp.int32), 0, size - 1)
    return table[index]


def uncertainty_jnp(table: jax.Array, p: jax.Array) -> jax.Array:
    """`uncertainty` inside jit, from `uncertainty_table` (conservative by construction)."""
    return _table_lookup(jnp, table, p)


def uncertainty_from_table(table: np.ndarray, p: np.ndarray) -> np.ndarray:
    """numpy twin of `uncertainty_jnp`."""
    return _table_lookup(np, table, np.asarray(p, np.float32))


def prediction_set(
    calibration: ConformalCalibration, p: Any, alpha: float | None = None
) -> np.ndarray:
    """(N, 2) bool: whether outcome 0 and outcome 1 are in the conformal set at `alpha`."""
    a = calibration.alpha if alpha is None else alpha
    p = np.asarray(p, np.float32)
    includes_zero = _p_value(calibration.scores, p) > a
    includes_one = _p_value(calibration.scores, 1.0 - p) > a
    return np.stack([includes_zero, includes_one], axis=-1)
