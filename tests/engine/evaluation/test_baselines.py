"""tinydancer.evaluation.baselines: kNN and logistic predictors against a base-rate predictor."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tinydancer.evaluation.baselines import (
    fit_knn,
    fit_logistic,
    fit_logistic_probe,
    masked_brier,
)

KS = (5, 10, 20, 40, 80, 160)
PENALTIES = (0.3, 1.0, 3.0, 10.0, 30.0)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic(n: int, seed: int, missing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings (n, 4) and 0/1 quality (n, 3); NaN where the outcome is unknown.

    agent 0 is good on the half-space x0 > 0, agent 1 on x1 < 0, agent 2 is a coin flip.
    """
    rng = np.random.default_rng(seed)
    x = unit_rows(rng.normal(size=(n, 4)))
    p = np.stack(
        [np.where(x[:, 0] > 0, 0.9, 0.1), np.where(x[:, 1] < 0, 0.8, 0.2), np.full(n, 0.5)], axis=1
    )
    quality = (rng.random((n, 3)) < p).astype(np.float64)
    quality[rng.random((n, 3)) < missing] = np.nan
    return x, quality


def base_rate(train_quality: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(np.nanmean(train_quality, axis=0), (n, train_quality.shape[1]))


@pytest.fixture(scope="module", params=[0, 1, 2], ids=lambda s: f"data{s}")
def split(request):
    x, quality = synthetic(600, seed=request.param)
    return x[:400], quality[:400], x[400:], quality[400:]


# -- masked_brier ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "quality", "expected"),
    [
        ([[0.5, 0.2], [1.0, 0.0]], [[1.0, np.nan], [1.0, 0.0]], 0.25 / 3),
        ([[0.5, 0.2]], [[np.nan, 1.0]], 0.64),
        ([[0.3, 0.3]], [[0.3, 0.3]], 0.0),
    ],
    ids=["one-missing", "only-one-known", "perfect"],
)
def test_masked_brier_by_hand(predicted, quality, expected):
    assert masked_brier(np.array(predicted), np.array(quality)) == pytest.approx(expected)


# -- beating the base rate ---------------------------------------------------------------


@pytest.mark.parametrize("fit", [fit_knn, fit_logistic], ids=["knn", "logistic"])
def test_predictors_beat_the_base_rate(split, fit):
    train_x, train_q, test_x, test_q = split
    predict, _ = fit(train_x, train_q)
    predicted = predict(test_x)
    assert predicted.shape == test_q.shape
    assert np.all((predicted >= 0) & (predicted <= 1))
    base = base_rate(train_q, len(test_x))
    assert masked_brier(predicted, test_q) < masked_brier(base, test_q) - 0.03
    # per agent: oracle gains are 0.16 (agent 0) and 0.09 (agent 1); the coin flip has none
    gains = [
        masked_brier(base[:, a], test_q[:, a]) - masked_brier(predicted[:, a], test_q[:, a])
        for a in range(3)
    ]
    assert gains[0] > 0.06 and gains[1] > 0.02 and gains[2] > -0.04


@pytest.mark.parametrize("fit", [fit_knn, fit_logistic], ids=["knn", "logistic"])
def test_nothing_to_learn_gives_nothing_over_the_base_rate(fit):
    """The check above can fail: on quality independent of the embedding there is no gain."""
    rng = np.random.default_rng(3)
    x = unit_rows(rng.normal(size=(400, 8)))
    quality = (rng.random((400, 2)) < 0.3).astype(np.float64)
    predict, _ = fit(x[:300], quality[:300])
    model = masked_brier(predict(x[300:]), quality[300:])
    base = masked_brier(base_rate(quality[:300], 100), quality[300:])
    assert model > base - 0.01


def test_knn_picks_k_from_the_candidates(split):
    train_x, train_q, _, _ = split
    _, k = fit_knn(train_x, train_q, ks=KS)
    assert k in KS


def test_knn_drops_candidates_too_large_for_the_data():
    x, quality = synthetic(30, seed=1)
    _, k = fit_knn(x, quality, ks=(5, 10, 20, 40))  # 40 is >= 0.8 * 30
    assert k in (5, 10, 20)
    _, k = fit_knn(x, quality, ks=(40, 80))
    assert k == 1  # nothing fits: the nearest neighbour


def test_logistic_picks_the_penalty_from_the_candidates(split):
    train_x, train_q, _, _ = split
    _, penalty = fit_logistic(train_x, train_q, penalties=PENALTIES)
    assert penalty in PENALTIES


@pytest.mark.parametrize("fit", [fit_knn, fit_logistic], ids=["knn", "logistic"])
def test_fitting_is_deterministic(split, fit):
    train_x, train_q, test_x, _ = split
    first, choice = fit(train_x, train_q, seed=5)
    second, again = fit(train_x, train_q, seed=5)
    assert choice == again
    np.testing.assert_array_equal(first(test_x), second(test_x))


def test_knn_with_one_neighbour_returns_the_neighbours_quality():
    x, quality = synthetic(50, seed=2)
    predict, k = fit_knn(x, quality, ks=(1,))
    assert k == 1
    np.testing.assert_array_equal(predict(x), quality)  # each point is its own nearest


def test_logistic_learns_the_direction():
    """Agent 0's weight on x0 is clearly positive, agent 1's on x1 clearly negative."""
    x, quality = synthetic(400, seed=4)
    predict, _ = fit_logistic(x, quality)
    probe = np.eye(4)
    predicted = predict(np.vstack([probe[:2], -probe[:2]]))  # +e0, +e1, -e0, -e1
    assert predicted[0, 0] > 0.7 > 0.3 > predicted[2, 0]
    assert predicted[3, 1] > 0.6 > 0.4 > predicted[1, 1]


# -- missing outcomes --------------------------------------------------------------------


def test_logistic_handles_missing_outcomes():
    x, quality = synthetic(600, seed=6, missing=0.3)
    predict, _ = fit_logistic(x[:400], quality[:400])
    predicted = predict(x[400:])
    assert np.all(np.isfinite(predicted))
    model = masked_brier(predicted, quality[400:])
    assert model < masked_brier(base_rate(quality[:400], 200), quality[400:]) - 0.03


def test_logistic_agent_without_outcomes_predicts_one_half():
    x, quality = synthetic(200, seed=7)
    quality[:, 2] = np.nan
    predict, _ = fit_logistic(x, quality)
    np.testing.assert_array_equal(predict(x[:10])[:, 2], 0.5)


def test_knn_handles_missing_outcomes():
    x, quality = synthetic(600, seed=6, missing=0.3)
    predict, _ = fit_knn(x[:400], quality[:400])
    predicted = predict(x[400:])
    assert np.all(np.isfinite(predicted))
    model = masked_brier(predicted, quality[400:])
    assert model < masked_brier(base_rate(quality[:400], 200), quality[400:]) - 0.03


def half_missing() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two clusters (+e0, -e0); agent 1 has outcomes only in the +e0 cluster."""
    rng = np.random.default_rng(8)
    centres = np.repeat(np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]), 10, axis=0)
    x = unit_rows(centres + 0.01 * rng.normal(size=centres.shape))
    quality = np.stack(
        [np.r_[np.ones(10), np.zeros(10)], np.r_[rng.random(10) < 0.7, np.zeros(10)]], axis=1
    ).astype(np.float64)
    quality[10:, 1] = np.nan
    return x, quality, np.array([[-1.0, 0, 0, 0]])


def test_knn_falls_back_to_the_agents_mean_when_no_neighbour_has_an_outcome():
    x, quality, query = half_missing()
    predict, _ = fit_knn(x, quality, ks=(3,))
    predicted = predict(query)
    assert predicted[0, 0] == 0.0  # the -e0 cluster's neighbours: all zero
    assert predicted[0, 1] == pytest.approx(np.nanmean(quality[:, 1]))  # fallback


def test_knn_fallback_does_not_warn():
    """All k neighbours lacking an agent's outcome is expected with sparse data: no warning."""
    x, quality, query = half_missing()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict, _ = fit_knn(x, quality, ks=(3,))
        predict(query)


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
def test_knn_agent_without_outcomes_gets_a_finite_prediction():
    x, quality = synthetic(200, seed=7)
    quality[:, 2] = np.nan
    predict, _ = fit_knn(x, quality)
    assert np.all(np.isfinite(predict(x[:10])))


# -- the simple logistic probe -----------------------------------------------------------


def probe_by_hand(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The issue's dozen lines of numpy, written out once more."""
    n = len(y)
    w, b = np.zeros(x.shape[1]), np.log(y.mean() / (1 - y.mean()))
    for _ in range(300):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w, b = w - 0.5 * (x.T @ (p - y) / n + 10 * w / n), b - 0.5 * np.mean(p - y)
    return w, b


def test_probe_is_exactly_the_described_recipe():
    x, quality = synthetic(300, seed=6, missing=0.2)
    predicted = fit_logistic_probe(x, quality)(x)
    for a in range(3):
        seen = ~np.isnan(quality[:, a])
        w, b = probe_by_hand(x[seen], quality[seen, a])
        np.testing.assert_allclose(predicted[:, a], 1 / (1 + np.exp(-(x @ w + b))), rtol=1e-9)


def test_probe_beats_the_base_rate_where_there_is_signal(split):
    train_x, train_q, test_x, test_q = split
    predicted = fit_logistic_probe(train_x, train_q)(test_x)
    base = base_rate(train_q, len(test_x))
    assert masked_brier(predicted, test_q) < masked_brier(base, test_q) - 0.03


def test_probe_of_an_agent_without_outcomes_says_one_half():
    x, quality = synthetic(50, seed=7)
    quality[:, 2] = np.nan
    predicted = fit_logistic_probe(x, quality)(x)
    np.testing.assert_allclose(predicted[:, 2], 0.5)
    assert np.all(np.isfinite(predicted))
