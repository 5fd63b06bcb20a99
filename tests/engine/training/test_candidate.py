from __future__ import annotations

import numpy as np

from tinydancer import Router, RouterConfig
from tinydancer.training.candidate import CandidateRows, train_candidate_model
from tinydancer.training.fit import FitSettings
from tinydancer.training.metrics import roc_auc


def test_a_small_training_run_learns_more_than_the_heuristic():
    settings = FitSettings(
        seed=1,
        max_epochs=25,
        retrain_epochs=10,
        patience=5,
        sparsity=0.5,
        learning_rate=1e-2,
        batch_size=512,
    )
    model, report = train_candidate_model(seed=1, n_queries=600, settings=settings)
    assert report["test_auc"] > report["test_auc_heuristic"]
    assert report["int8_vs_float32_max_abs_diff"] < 0.02
    assert abs(report["conformal_test_coverage"] - 0.9) < 0.04
    assert 0.3 <= model.sparsity <= 0.5  # W and U pruned to 50 %, head kept dense
    assert (
        Router(RouterConfig(warm_up_to_candidates=16), model=model).model_version == model.version
    )


def test_training_from_reported_outcomes_uses_the_given_rows():
    rng = np.random.default_rng(0)
    x = rng.random((3000, 5)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=3000) > 0.5).astype(np.float32)
    rows = CandidateRows(x, y, np.ones(3000, np.float32))
    settings = FitSettings(
        seed=0, max_epochs=30, retrain_epochs=5, patience=5, sparsity=0.0, batch_size=256
    )
    _, report = train_candidate_model(data=rows, settings=settings)
    assert report["source"] == "reported outcomes" and report["rows"]["train"] == 1800
    assert report["test_auc"] > 0.75


def test_roc_auc_handles_ties_and_degenerate_labels():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert np.isnan(roc_auc(np.array([0.5]), np.array([1])))
