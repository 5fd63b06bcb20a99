"""tinydancer.training.linear: CV-shrunk logistic heads inside a FastGRNN, on synthetic splits."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from tinydancer.datasets import RoutingOutcomes
from tinydancer.evaluation.offline import evaluate
from tinydancer.model.fastgrnn import forward
from tinydancer.model.weights import load_model, save_model
from tinydancer.training.agent import predict_quality
from tinydancer.training.linear import (
    embed_in_fastgrnn,
    fit_shrunk_logistic,
    train_linear_agent_model,
)
from tinydancer.training.metrics import roc_auc

AGENTS = ["cheap", "middle", "dear"]
COSTS = np.array([1e-4, 5e-4, 4e-3])


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def split(n: int, seed: int, *, signal: bool) -> RoutingOutcomes:
    """384-d unit prompts, three agents priced 1e-4 / 5e-4 / 4e-3 USD.

    With signal: the cheap agent answers well where x0 > 0, the middle one where x1 > 0,
    the dear one mostly; without: each agent's quality is a coin of its own bias.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 384))
    x[:, :2] *= 12.0  # the two directions that matter carry a fair share of the norm
    x = unit_rows(x)
    if signal:
        p = np.stack(
            [np.where(x[:, 0] > 0, 0.85, 0.25), np.where(x[:, 1] > 0, 0.9, 0.4), np.full(n, 0.9)], 1
        )
    else:
        p = np.broadcast_to([0.5, 0.7, 0.85], (n, 3))
    quality = (rng.random((n, 3)) < p).astype(np.float64)
    cost = np.broadcast_to(COSTS, (n, 3)).copy()
    ids = [f"p{seed}-{i}" for i in range(n)]
    return RoutingOutcomes(ids, AGENTS, x.astype(np.float32), quality, cost, None, "")


@pytest.fixture(scope="module")
def with_signal():
    train, test = split(800, 0, signal=True), split(400, 1, signal=True)
    model, report = train_linear_agent_model(train)
    return train, test, model, report


def test_heads_beat_or_tie_every_baseline_where_there_is_signal(with_signal):
    train, test, model, report = with_signal
    result = evaluate(model, test, train, bootstrap=0).result
    router, b = result["router"]["aiq"], result["baselines"]
    best = max(b[k]["aiq"] for k in ("zero_router", "knn", "logistic", "logistic_probe"))
    assert router >= best - 0.002
    assert router > b["zero_router"]["aiq"] + 0.02
    assert report["regime"].startswith("signal")


def test_pure_noise_stays_at_the_zero_router():
    train, test = split(800, 2, signal=False), split(400, 3, signal=False)
    model, _ = train_linear_agent_model(train)
    result = evaluate(model, test, train, bootstrap=0).result
    assert result["router"]["aiq"] >= result["baselines"]["zero_router"]["aiq"] - 0.005
    # whatever cross-validation keeps is weak: predictions stay close to the base rates
    predicted = predict_quality(model.float_params(), test.embeddings)
    base_rate = train.quality.mean(axis=0)
    assert np.abs(predicted - base_rate).mean(axis=0).max() < 0.03
    assert np.ptp(predicted, axis=0).max() < 0.15


def test_cross_validation_reports_each_agents_choice(with_signal):
    _, _, _, report = with_signal
    for choice in report["cv_per_agent"].values():
        assert choice["cv_brier"] <= choice["cv_brier_base_rate"]
        assert choice["kind"] in ("own", "shared", "base_rate")
        if choice["kind"] == "own":
            assert 0.0 < choice["shrinkage"] <= 1.0
    # the agents whose quality depends on the prompt get a head that reads it
    assert report["cv_per_agent"]["cheap"]["kind"] == "own"
    cheap = report["cv_per_agent"]["cheap"]
    assert cheap["cv_brier"] < cheap["cv_brier_base_rate"] - 0.02


def test_the_fastgrnn_computes_the_heads_exactly(with_signal):
    train, test, _, _ = with_signal
    heads = fit_shrunk_logistic(train.embeddings, train.quality)
    _, params = embed_in_fastgrnn(heads, train.embeddings)
    expected = heads.predict(test.embeddings)
    numpy_twin = predict_quality(params, test.embeddings)
    jitted = 1 / (1 + np.exp(-np.asarray(forward(params, jnp.asarray(test.embeddings[:, None])))))
    np.testing.assert_allclose(numpy_twin, expected, atol=2e-3)
    np.testing.assert_allclose(jitted, expected, atol=2e-3)


def test_a_conversation_is_scored_by_its_last_message(with_signal):
    train, test, _, _ = with_signal
    heads = fit_shrunk_logistic(train.embeddings, train.quality)
    _, params = embed_in_fastgrnn(heads, train.embeddings)
    pairs = np.stack([test.embeddings[:50], test.embeddings[50:100]], axis=1)  # (50, 2, D)
    logits = np.asarray(forward(params, jnp.asarray(pairs)))
    np.testing.assert_allclose(
        1 / (1 + np.exp(-logits)), heads.predict(test.embeddings[50:100]), atol=2e-3
    )


def test_the_int8_model_round_trips_through_safetensors(with_signal, tmp_path):
    _, test, model, report = with_signal
    assert report["int8_vs_float32_max_abs_diff"] < 0.01
    loaded = load_model(save_model(model, tmp_path / "m.safetensors"), expect_mode="agent")
    assert loaded.version == model.version and loaded.config == model.config
    np.testing.assert_array_equal(
        predict_quality(loaded.float_params(), test.embeddings),
        predict_quality(model.float_params(), test.embeddings),
    )


def test_an_agent_without_outcomes_is_a_neutral_base_rate():
    data = split(200, 4, signal=True)
    data.quality[:, 2] = np.nan
    heads = fit_shrunk_logistic(data.embeddings, data.quality)
    np.testing.assert_allclose(heads.predict(data.embeddings)[:, 2], 0.5)
    assert heads.choices[2]["kind"] == "base_rate"


def shared_difficulty(n: int, seed: int) -> RoutingOutcomes:
    """Six agents whose quality falls with one common difficulty direction (x0); the
    sixth is right on ~97 % of prompts, so it fails too rarely for a head of its own."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 384))
    x[:, 0] *= 12.0
    x = unit_rows(x)
    hardness = x[:, 0] / x[:, 0].std()
    base = np.array([-0.5, 0.0, 0.5, 1.0, 1.5, 3.9])
    p = 1 / (1 + np.exp(-(base[None, :] - 1.6 * hardness[:, None])))
    quality = (rng.random(p.shape) < p).astype(np.float64)
    cost = np.broadcast_to(np.geomspace(1e-4, 5e-3, 6), p.shape).copy()
    agents = [f"a{i}" for i in range(6)]
    return RoutingOutcomes(
        [f"d{seed}-{i}" for i in range(n)], agents, x.astype(np.float32), quality, cost, None, ""
    )


def test_a_rarely_failing_agent_borrows_the_shared_difficulty_direction():
    train, test = shared_difficulty(600, 5), shared_difficulty(2000, 6)
    heads = fit_shrunk_logistic(train.embeddings, train.quality)
    strong = heads.choices[5]
    assert strong["kind"] == "shared", strong
    # out of sample, the shared head ranks the strong agent's failures far better than chance
    # and beats its base rate in Brier
    predicted = heads.predict(test.embeddings)[:, 5]
    assert roc_auc(predicted, test.quality[:, 5]) > 0.7
    base_rate = train.quality[:, 5].mean()
    assert np.mean((predicted - test.quality[:, 5]) ** 2) < np.mean(
        (base_rate - test.quality[:, 5]) ** 2
    )
