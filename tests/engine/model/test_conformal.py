from __future__ import annotations

import numpy as np
import pytest

from tinydancer import ConfigError
from tinydancer.candidates.reference import candidate_features
from tinydancer.model.conformal import (
    calibrate,
    prediction_set,
    uncertainty,
    uncertainty_from_table,
    uncertainty_table,
)
from tinydancer.model.reference import fastgrnn_forward
from tinydancer.model.weights import load_model, shipped_model_path
from tinydancer.training.synthetic import generate


def _shipped_predictions(seed: int, n_queries: int):
    model = load_model(shipped_model_path("candidate"))
    from tinydancer.candidates.features import FeatureConfig

    feature_config = FeatureConfig.from_schema(model.feature_schema["features"])
    data = generate(n_queries, 16, seed=seed)
    x, _ = candidate_features(
        data.queries[data.query_index], data.embeddings, data.columns(), feature_config.constants()
    )
    logits = fastgrnn_forward(model.float_params(), x[:, None, :])[:, 0]
    return 1 / (1 + np.exp(-logits)), data.useful


@pytest.mark.parametrize("seed", [101, 202, 303, 404, 505])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_coverage_on_fresh_exchangeable_data(seed, alpha):
    """Calibrate on one draw, test on another: coverage >= 1 - alpha within sampling error."""
    p_cal, y_cal = _shipped_predictions(seed, 150)  # 2,400 calibration rows
    p_test, y_test = _shipped_predictions(seed + 1, 1250)  # 20,000 test rows
    calibration = calibrate(p_cal, y_cal, alpha=alpha)
    covered = prediction_set(calibration, p_test)[np.arange(len(y_test)), y_test.astype(int)]
    # Coverage given one calibration draw is ~ Beta around 1 - alpha with sd sqrt(a(1-a)/n_cal).
    tolerance = 3 * np.sqrt(alpha * (1 - alpha) / len(y_cal)) + 3 * np.sqrt(
        alpha * (1 - alpha) / len(y_test)
    )
    assert covered.mean() >= 1 - alpha - tolerance


def test_a_useless_model_is_not_covered_without_honest_sets():
    """The coverage check can fail: sets from a miscalibrated qhat do not reach 1 - alpha."""
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.5).astype(float)
    p = np.full(5000, 0.9)  # confident and wrong half the time
    cal = calibrate(p[:2500], y[:2500], alpha=0.1)
    sets = prediction_set(cal, p[2500:])
    assert sets.all()  # honest: both outcomes stay plausible
    wrong = calibrate(np.full(2500, 0.9), np.ones(2500), alpha=0.1)  # calibrated on other data
    covered = prediction_set(wrong, p[2500:])[np.arange(2500), y[2500:].astype(int)]
    assert covered.mean() < 0.8


def test_uncertainty_is_a_valid_p_value():
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(float)
    cal = calibrate(p[:10000], y[:10000], alpha=0.1)
    test_p, test_y = p[10000:], y[10000:]
    wrong = (test_p >= 0.5) != (test_y == 1)
    # P(uncertainty <= a and the prediction is wrong) <= a
    for a in (0.05, 0.1, 0.2):
        assert np.mean((uncertainty(cal, test_p) <= a) & wrong) <= a + 0.01


def test_table_lookup_is_conservative_and_close():
    rng = np.random.default_rng(2)
    cal = calibrate(rng.random(5000), (rng.random(5000) < 0.5).astype(float))
    p = rng.random(100_000).astype(np.float32)
    exact, table = uncertainty(cal, p), uncertainty_from_table(uncertainty_table(cal), p)
    assert np.all(table >= exact - 1e-7)
    assert np.max(table - exact) < 0.01


def test_qhat_and_metadata_round_trip():
    cal = calibrate([0.9, 0.8, 0.2], [1, 0, 0], alpha=0.5)
    assert cal.n == 3 and cal.qhat() == pytest.approx(0.2)
    assert calibrate([0.5], [1], alpha=0.1).qhat() == float("inf")


@pytest.mark.parametrize(
    ("p", "y", "alpha"),
    [([], [], 0.1), ([0.5], [1, 0], 0.1), ([0.5], [1], 1.5), ([np.nan], [1], 0.1)],
    ids=["empty", "ragged", "alpha", "nan"],
)
def test_calibrate_rejects_bad_input(p, y, alpha):
    with pytest.raises(ConfigError):
        calibrate(p, y, alpha=alpha)
