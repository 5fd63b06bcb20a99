from __future__ import annotations

import jax
import numpy as np
import pytest

from tinydancer.candidates import features, reference
from tinydancer.candidates.features import FeatureConfig


def _inputs():
    query = np.array([1.0, 0.0, 0.0], np.float32)
    embeddings = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0]], np.float32)
    columns = np.array(
        [[0.0, 693.147, 1e6], [0.0, 9.0, 10_000.0], [0.5, 1.0, 0.0], [1.0, 0.0, 0.25]], np.float32
    )
    return query, embeddings, columns


def test_each_feature_follows_its_definition():
    config = FeatureConfig(
        similarity_weight=1,
        recency_weight=1,
        frequency_weight=1,
        success_weight=1,
        metadata_weight=1,
    )
    query, embeddings, columns = _inputs()
    x, heuristic = jax.jit(features.candidate_features)(
        query, embeddings, columns, config.constants()
    )
    x = np.asarray(x)
    np.testing.assert_allclose(x[:, 0], [1.0, 0.0, 1 / np.sqrt(2)], rtol=1e-6)  # cosine
    np.testing.assert_allclose(x[:, 1], [1.0, 0.5, np.exp(-1e3)], rtol=1e-4)  # exp(-1e-3 * age)
    np.testing.assert_allclose(x[:, 2], [0.0, np.log(10) / np.log(10_001), 1.0], rtol=1e-5)
    np.testing.assert_allclose(x[:, 3], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(x[:, 4], [1.0, 0.0, 0.25])
    np.testing.assert_allclose(heuristic, x.mean(axis=1), rtol=1e-6)


def test_weights_scale_the_model_inputs_and_the_heuristic():
    config = FeatureConfig(
        similarity_weight=2.0,
        recency_weight=0,
        frequency_weight=0,
        success_weight=0,
        metadata_weight=0,
    )
    query, embeddings, columns = _inputs()
    x, heuristic = features.candidate_features(query, embeddings, columns, config.constants())
    np.testing.assert_allclose(np.asarray(x)[:, 0], [2.0, 0.0, 2 / np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(x)[:, 1:], 0.0)
    np.testing.assert_allclose(heuristic, [1.0, 0.0, 1 / np.sqrt(2)], rtol=1e-6)


def test_jax_and_numpy_features_agree():
    rng = np.random.default_rng(0)
    query = rng.normal(size=384).astype(np.float32)
    embeddings = rng.normal(size=(50, 384)).astype(np.float32)
    columns = np.stack(
        [rng.uniform(0, 1e4, 50), rng.integers(0, 1e5, 50), rng.random(50), rng.random(50)]
    ).astype(np.float32)
    constants = FeatureConfig(recency_decay_per_s=1e-4).constants()
    jx, jh = features.candidate_features(query, embeddings, columns, constants)
    nx, nh = reference.candidate_features(query, embeddings, columns, constants)
    np.testing.assert_allclose(jx, nx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jh, nh, rtol=1e-5, atol=1e-6)


def test_feature_config_is_validated():
    with pytest.raises(ValueError, match="recency_decay_per_s"):
        FeatureConfig(recency_decay_per_s=-1)
    with pytest.raises(ValueError, match="extra"):
        FeatureConfig(similarity=1.0)
