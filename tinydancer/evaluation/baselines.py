"""Baseline quality predictors for offline evaluation, tuned on the training split only.

* kNN on embeddings: a prompt's predicted quality per agent is the mean over its k most
  similar training prompts (cosine); k by 5-fold cross-validation (Brier score).
* Per-agent logistic regression on embeddings with an L2 penalty (Newton / IRLS);
  the penalty by 5-fold cross-validation (Brier score).
* The simple logistic probe (`fit_logistic_probe`), nothing tuned: per agent, on the
  prompts where it has an outcome, 300 full-batch gradient steps
  ``w -= 0.5 * (X.T @ (p - y) / n + 10 * w / n)``, ``b -= 0.5 * mean(p - y)`` from
  ``w = 0`` and ``b`` = the log-odds of the agent's mean quality.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["fit_knn", "fit_logistic", "fit_logistic_probe", "masked_brier"]

Predictor = Callable[[np.ndarray], np.ndarray]


def masked_brier(predicted: np.ndarray, quality: np.ndarray) -> float:
    mask = ~np.isnan(quality)
    return float(np.mean((predicted[mask] - quality[mask]) ** 2))


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    return list(np.array_split(np.random.default_rng(seed).permutation(n), k))


def _knn_predict(train_x: np.ndarray, train_q: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    similarity = x @ train_x.T  # unit-norm embeddings: cosine
    nearest = np.argpartition(-similarity, kth=min(k, len(train_x) - 1) - 1, axis=1)[:, :k]
    neighbours = train_q[nearest]  # (n, k, A)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an agent with no neighbour outcome: NaN
        mean = np.nanmean(neighbours, axis=1)
    observed = ~np.isnan(train_q)
    overall = float(np.nanmean(train_q)) if observed.any() else 0.5
    counts = observed.sum(axis=0)
    fallback = np.where(counts > 0, np.nansum(train_q, axis=0) / np.maximum(counts, 1), overall)
    filled = np.asarray(np.where(np.isnan(mean), fallback, mean), dtype=np.float64)
    return filled


def fit_knn(
    x: np.ndarray, quality: np.ndarray, ks: Sequence[int] = (5, 10, 20, 40, 80, 160), seed: int = 0
) -> tuple[Predictor, int]:
    ks = [k for k in ks if k < len(x) * 0.8] or [1]
    scores = {}
    for k in ks:
        errors = []
        for fold in _folds(len(x), 5, seed):
            train = np.setdiff1d(np.arange(len(x)), fold)
            errors.append(
                masked_brier(_knn_predict(x[train], quality[train], x[fold], k), quality[fold])
            )
        scores[k] = float(np.mean(errors))
    best = min(scores, key=scores.__getitem__)
    return (lambda new: _knn_predict(x, quality, new, best)), best


def _logistic_weights(
    x: np.ndarray, y: np.ndarray, penalty: float, iterations: int = 12
) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    ridge = penalty * np.r_[np.ones(x.shape[1]), 0.0]
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        gradient = xb.T @ (p - y) + ridge * w
        hessian = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(ridge)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(w)), gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return w


def _logistic_predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1))])
    return 1.0 / (1.0 + np.exp(-(xb @ weights.T)))


def _fit_all(x: np.ndarray, quality: np.ndarray, penalty: float) -> np.ndarray:
    weights = []
    for a in range(quality.shape[1]):
        seen = ~np.isnan(quality[:, a])
        y = quality[seen, a]
        weights.append(
            _logistic_weights(x[seen], y, penalty) if seen.any() else np.zeros(x.shape[1] + 1)
        )
    return np.asarray(weights)  # (A, D + 1)


def fit_logistic(
    x: np.ndarray,
    quality: np.ndarray,
    penalties: Sequence[float] = (0.3, 1.0, 3.0, 10.0, 30.0),
    seed: int = 0,
) -> tuple[Predictor, float]:
    scores = {}
    for penalty in penalties:
        errors = []
        for fold in _folds(len(x), 5, seed):
            train = np.setdiff1d(np.arange(len(x)), fold)
            weights = _fit_all(x[train], quality[train], penalty)
            errors.append(masked_brier(_logistic_predict(weights, x[fold]), quality[fold]))
        scores[penalty] = float(np.mean(errors))
    best = min(scores, key=scores.__getitem__)
    weights = _fit_all(x, quality, best)
    return (lambda new: _logistic_predict(weights, new)), best


def _probe_weights(x: np.ndarray, y: np.ndarray, steps: int = 300) -> np.ndarray:
    """(D + 1,) weights then bias of one agent's probe (see the module docstring)."""
    n = len(y)
    mean = float(np.clip(np.mean(y), 1e-4, 1 - 1e-4))  # a 0 or 1 base rate: finite log-odds
    w, b = np.zeros(x.shape[1]), float(np.log(mean / (1 - mean)))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w = w - 0.5 * (x.T @ (p - y) / n + 10.0 * w / n)
        b = b - 0.5 * float(np.mean(p - y))
    return np.r_[w, b]


def fit_logistic_probe(x: np.ndarray, quality: np.ndarray) -> Predictor:
    """The simple logistic probe of every agent; an agent without outcomes predicts 0.5."""
    x = np.asarray(x, np.float64)
    weights = []
    for a in range(quality.shape[1]):
        seen = ~np.isnan(quality[:, a])
        weights.append(
            _probe_weights(x[seen], quality[seen, a]) if seen.any() else np.zeros(x.shape[1] + 1)
        )
    stacked = np.asarray(weights)  # (A, D + 1)
    return lambda new: _logistic_predict(stacked, np.asarray(new, np.float64))
