"""tinydancer.agents.sketch: quantile accuracy, forgetting, persistence and input checks."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from tinydancer.agents.sketch import DecayingMean, QuantileSketch, decay_for_half_life


def lognormal(seed: int, n: int, median_ms: float, sigma: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(median_ms), sigma, n)


def filled(sketch: QuantileSketch, values: np.ndarray) -> QuantileSketch:
    for value in values:
        sketch.add(float(value))
    return sketch


def true_quantile(values: np.ndarray, q: float) -> float:
    # The sketch answers the value of rank ceil(q * n) (no interpolation): numpy's "inverted_cdf".
    return float(np.percentile(values, 100 * q, method="inverted_cdf"))


# -- decay_for_half_life -----------------------------------------------------------------


@pytest.mark.parametrize("half_life", [None, math.inf], ids=["none", "inf"])
def test_no_half_life_means_no_forgetting(half_life):
    assert decay_for_half_life(half_life) == 1.0


@pytest.mark.parametrize("half_life", [0.5, 1.0, 3.0, 100.0, 2500.0], ids=lambda h: f"h={h}")
def test_decay_halves_after_half_life_observations(half_life):
    decay = decay_for_half_life(half_life)
    assert 0.0 < decay < 1.0
    assert decay**half_life == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("half_life", [1, 3, 10], ids=lambda h: f"h={h}")
def test_half_life_seen_through_a_decaying_mean(half_life):
    """One observation followed by `half_life` newer ones weighs half of the newest one."""
    decay = decay_for_half_life(half_life)
    mean = DecayingMean(decay=decay)
    mean.add(1.0)
    for _ in range(half_life):
        mean.add(0.0)
    weights = decay ** np.arange(half_life + 1)  # newest first: 1, d, ..., d^h = 0.5
    assert weights[-1] == pytest.approx(0.5)
    assert mean.mean == pytest.approx(0.5 / weights.sum(), rel=1e-12)


@pytest.mark.parametrize("half_life", [0.0, -10.0, math.nan], ids=["zero", "negative", "nan"])
def test_invalid_half_life_raises_value_error(half_life):
    with pytest.raises(ValueError, match="half"):
        decay_for_half_life(half_life)


# -- QuantileSketch: accuracy ------------------------------------------------------------


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def latencies(request) -> np.ndarray:
    return lognormal(request.param, 5_000, median_ms=120.0, sigma=1.0)


@pytest.mark.parametrize("accuracy", [0.01, 0.02, 0.05], ids=["a1%", "a2%", "a5%"])
def test_quantiles_within_relative_accuracy(latencies, accuracy):
    sketch = filled(QuantileSketch(relative_accuracy=accuracy), latencies)
    for q in (0.5, 0.95, 0.99):
        expected = true_quantile(latencies, q)
        assert abs(sketch.quantile(q) - expected) <= accuracy * expected * (1 + 1e-9), (
            f"p{q * 100:g}"
        )


def test_quantiles_close_to_interpolated_numpy_percentiles(latencies):
    """Against numpy's default (linear) percentiles the error is the bound plus rank noise."""
    sketch = filled(QuantileSketch(relative_accuracy=0.01), latencies)
    for q in (0.5, 0.95, 0.99):
        assert sketch.quantile(q) == pytest.approx(np.percentile(latencies, 100 * q), rel=0.02)


def test_quantile_error_is_not_zero():
    """The check above can fail: a 5 % sketch is visibly coarser than a 1 % one."""
    values = np.linspace(100.0, 200.0, 1_001)
    coarse = filled(QuantileSketch(relative_accuracy=0.05), values)
    errors = [
        abs(coarse.quantile(q) / true_quantile(values, q) - 1) for q in np.linspace(0.01, 1, 100)
    ]
    assert 0.01 < max(errors) <= 0.05 + 1e-9


def test_quantiles_are_monotone_and_count_is_exact(latencies):
    sketch = filled(QuantileSketch(), latencies)
    estimates = [sketch.quantile(q) for q in np.linspace(0.01, 1.0, 100)]
    assert all(a <= b for a, b in itertools.pairwise(estimates))
    assert sketch.count == len(latencies)


def test_empty_sketch_has_no_quantiles():
    sketch = QuantileSketch()
    assert sketch.quantile(0.5) is None
    assert sketch.count == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, 0.01), (1e-9, 0.01), (1e12, 1e7)],
    ids=["zero", "below-min", "above-max"],
)
def test_values_outside_the_range_are_clipped(value, expected):
    sketch = QuantileSketch(relative_accuracy=0.01, min_value=0.01, max_value=1e7)
    sketch.add(value)
    assert sketch.quantile(0.5) == pytest.approx(expected, rel=0.01)


def test_quantile_zero_is_the_minimum():
    sketch = filled(QuantileSketch(), np.array([100.0, 200.0]))
    assert sketch.quantile(0.0) == pytest.approx(100.0, rel=0.01)


@pytest.mark.parametrize(
    "value",
    [-1.0, -1e-12, math.nan, math.inf, -math.inf],
    ids=["neg", "tiny-neg", "nan", "inf", "-inf"],
)
def test_invalid_values_raise(value):
    sketch = QuantileSketch()
    with pytest.raises(ValueError, match="finite and >= 0"):
        sketch.add(value)
    assert sketch.count == 0.0


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5], ids=["zero", "negative", "above-one"])
@pytest.mark.parametrize("cls", [QuantileSketch, DecayingMean], ids=["sketch", "mean"])
def test_invalid_decay_is_rejected(cls, decay):
    with pytest.raises(ValueError, match="decay"):
        cls(decay=decay)


# -- QuantileSketch: forgetting ----------------------------------------------------------


def test_decay_makes_recent_data_dominate():
    """Latency drifts from ~100 ms to ~1000 ms: the decayed p50 follows, the lifetime one lags."""
    before = lognormal(0, 2_000, median_ms=100.0, sigma=0.2)
    after = lognormal(1, 300, median_ms=1_000.0, sigma=0.2)
    decayed = QuantileSketch(decay=decay_for_half_life(50))
    cumulative = QuantileSketch()
    for value in before:
        decayed.add(float(value))
        cumulative.add(float(value))
    assert decayed.quantile(0.5) == pytest.approx(100.0, rel=0.1)
    assert cumulative.quantile(0.5) == pytest.approx(100.0, rel=0.1)
    for value in after:
        decayed.add(float(value))
        cumulative.add(float(value))
    assert decayed.quantile(0.5) == pytest.approx(1_000.0, rel=0.1)
    assert cumulative.quantile(0.5) < 150.0
    assert decayed.quantile(0.05) > 500.0  # even the low tail has moved: old data weighs ~1 %


def test_decayed_count_is_the_effective_number_of_observations():
    decay = decay_for_half_life(20)
    sketch = filled(QuantileSketch(decay=decay), np.full(30, 50.0))
    assert sketch.count == pytest.approx((1 - decay**30) / (1 - decay), rel=1e-12)


def test_renormalisation_keeps_counts_and_quantiles():
    """60k observations at half-life 100 push the unit weight past 1e150 (renormalised)."""
    decay = decay_for_half_life(100)
    sketch = QuantileSketch(decay=decay)
    for _ in range(60_000):
        sketch.add(50.0)
    assert math.isfinite(sketch.count)
    assert sketch.count == pytest.approx(1 / (1 - decay), rel=1e-9)
    for _ in range(1_000):
        sketch.add(500.0)
    assert sketch.quantile(0.5) == pytest.approx(500.0, rel=0.01)
    assert sketch.quantile(0.001) == pytest.approx(500.0, rel=0.01)


# -- QuantileSketch: persistence ---------------------------------------------------------


@pytest.mark.parametrize("half_life", [None, 30.0], ids=["lifetime", "decayed"])
def test_sketch_round_trip(half_life):
    decay = decay_for_half_life(half_life)
    original = filled(QuantileSketch(decay=decay), lognormal(3, 500, 80.0))
    data = json.loads(json.dumps(original.to_dict()))
    restored = QuantileSketch.from_dict(data)
    assert restored.decay == original.decay
    assert restored.relative_accuracy == original.relative_accuracy
    assert restored.count == pytest.approx(original.count, rel=1e-12)
    for q in (0.01, 0.25, 0.5, 0.9, 0.99, 1.0):
        assert restored.quantile(q) == original.quantile(q)
    # Both continue identically: new data weighs the same relative to the old.
    more = lognormal(4, 200, 800.0)
    filled(original, more)
    filled(restored, more)
    for q in (0.1, 0.5, 0.9):
        assert restored.quantile(q) == original.quantile(q)


def test_empty_sketch_round_trip():
    restored = QuantileSketch.from_dict(json.loads(json.dumps(QuantileSketch(0.02).to_dict())))
    assert restored.relative_accuracy == 0.02
    assert restored.quantile(0.5) is None


# -- DecayingMean ------------------------------------------------------------------------


def test_empty_mean():
    mean = DecayingMean()
    assert mean.mean is None
    assert mean.effective_count == 0.0


@pytest.mark.parametrize(
    "values", [[3.0], [1.0, 2.0, 3.0, 10.0], list(range(50))], ids=["one", "four", "fifty"]
)
def test_undecayed_mean_is_the_arithmetic_mean(values):
    mean = DecayingMean()
    for value in values:
        mean.add(float(value))
    assert mean.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert mean.effective_count == len(values)


@pytest.mark.parametrize("half_life", [2.0, 10.0, 100.0], ids=lambda h: f"h={h}")
def test_decayed_mean_weights_by_age(half_life):
    decay = decay_for_half_life(half_life)
    values = np.random.default_rng(7).uniform(0, 10, 40)
    mean = DecayingMean(decay=decay)
    for value in values:
        mean.add(float(value))
    weights = decay ** np.arange(len(values))[::-1]  # newest has weight 1
    assert mean.mean == pytest.approx(np.average(values, weights=weights), rel=1e-12)
    assert mean.effective_count == pytest.approx(weights.sum(), rel=1e-12)
    assert mean.effective_count == pytest.approx((1 - decay**40) / (1 - decay), rel=1e-12)


def test_decaying_mean_follows_a_step():
    mean = DecayingMean(decay=decay_for_half_life(10))
    lifetime = DecayingMean()
    for value in [0.9] * 500 + [0.1] * 60:
        mean.add(value)
        lifetime.add(value)
    assert mean.mean == pytest.approx(0.1, abs=0.02)  # 6 half-lives later
    assert lifetime.mean > 0.8


def test_decaying_mean_survives_renormalisation():
    decay = decay_for_half_life(100)
    mean = DecayingMean(decay=decay)
    for _ in range(60_000):
        mean.add(2.0)
    assert mean.mean == pytest.approx(2.0, rel=1e-12)
    assert mean.effective_count == pytest.approx(1 / (1 - decay), rel=1e-9)


@pytest.mark.parametrize("half_life", [None, 5.0], ids=["lifetime", "decayed"])
def test_decaying_mean_round_trip(half_life):
    original = DecayingMean(decay=decay_for_half_life(half_life))
    for value in np.random.default_rng(2).uniform(0, 1, 30):
        original.add(float(value))
    restored = DecayingMean.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored.decay == original.decay
    assert restored.mean == pytest.approx(original.mean, rel=1e-12)
    assert restored.effective_count == pytest.approx(original.effective_count, rel=1e-12)
    for value in (5.0, 6.0, 7.0):
        original.add(value)
        restored.add(value)
    assert restored.mean == pytest.approx(original.mean, rel=1e-12)
