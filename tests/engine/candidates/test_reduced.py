"""The small-call path (numpy reductions + `score_reduced_kernel`) against the full kernel.

route() calls up to `HOST_REDUCE_ROWS` rows take the reduced path; forcing the limit to
0 sends the same request through `score_kernel`. Both must give the same scores (within
float32 rounding of the two reductions), the same ranking and the same errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinydancer import CandidateBatch, InvalidRequestError, Router, RouterConfig, RoutingRequest
from tinydancer.candidates import router as router_module
from tinydancer.errors import EmbeddingError

NOW = 1_763_000_000.0


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(RouterConfig(warm_up_to_candidates=16), clock=lambda: NOW)


def random_request(rng: np.random.Generator, n: int) -> RoutingRequest:
    dim = 384
    scale = float(rng.choice([1e-3, 1.0, 50.0]))
    query = (rng.normal(size=dim) * scale).astype(np.float32)
    embeddings = (rng.normal(size=(n, dim)) * scale).astype(np.float32)
    close = rng.random(n) < 0.3
    embeddings[close] += rng.uniform(0.5, 3.0) * query
    return RoutingRequest(
        query,
        CandidateBatch(
            ids=np.arange(n),
            embeddings=embeddings,
            created_at=NOW - rng.uniform(0, 20_000, n),
            access_count=rng.integers(0, 20_000, n).astype(np.float64),
            success_rate=rng.uniform(0, 1, n).astype(np.float32),
            metadata_overlap=rng.choice([0.0, 0.25, 0.5, 1.0], n).astype(np.float32),
        ),
    )


def both_paths(router: Router, request: RoutingRequest, monkeypatch) -> tuple:
    reduced = router.route(request)
    with monkeypatch.context() as patch:
        patch.setattr(router_module, "HOST_REDUCE_ROWS", 0)
        full = router.route(request)
    return reduced, full


@pytest.mark.parametrize("seed", range(40))
def test_reduced_path_gives_the_full_kernels_decisions(router, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 7, 16, 17, 50, 100, 128, 129, 500, 1024]))
    reduced, full = both_paths(router, random_request(rng, n), monkeypatch)
    np.testing.assert_allclose(reduced.confidence, full.confidence, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reduced.uncertainty, full.uncertainty, rtol=1e-5, atol=1e-5)
    # same ranking, except that candidates whose scores tie within rounding may swap
    by_id = dict(zip(full.candidate_ids.tolist(), full.confidence.tolist(), strict=True))
    swapped = reduced.candidate_ids != full.candidate_ids
    gaps = np.abs(
        np.array([by_id[i] for i in reduced.candidate_ids[swapped]]) - full.confidence[swapped]
    )
    assert (gaps <= 1e-5).all()
    lightweight = dict(zip(full.candidate_ids.tolist(), full.use_lightweight.tolist(), strict=True))
    differ = [
        i
        for i, light in zip(reduced.candidate_ids, reduced.use_lightweight, strict=True)
        if lightweight[i] != light
    ]
    assert len(differ) <= max(1, n // 100)  # only candidates sitting on a threshold
    assert reduced.used_fallback == full.used_fallback is False
    assert reduced.candidates_processed == full.candidates_processed == n


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("embedding_nan", np.nan, EmbeddingError),
        ("embedding_inf", np.inf, EmbeddingError),
        ("embedding_zero", 0.0, EmbeddingError),
        ("success_rate", 1.5, InvalidRequestError),
        ("access_count", -1.0, InvalidRequestError),
        ("metadata_overlap", 2.0, InvalidRequestError),
        ("created_at", NOW + 1e6, InvalidRequestError),
        ("query_zero", 0.0, EmbeddingError),
    ],
)
def test_reduced_path_reports_the_same_input_errors(router, monkeypatch, field, value, error):
    request = random_request(np.random.default_rng(7), 40)
    batch = request.candidates
    assert isinstance(batch, CandidateBatch)
    if field.startswith("embedding"):
        batch.embeddings[13] = 0.0 if field == "embedding_zero" else batch.embeddings[13]
        if field != "embedding_zero":
            batch.embeddings[13, 5] = value
    elif field == "query_zero":
        request.query_embedding[:] = 0.0
    else:
        getattr(batch, field)[13] = value
    messages = []
    for limit in (router_module.HOST_REDUCE_ROWS, 0):
        with monkeypatch.context() as patch:
            patch.setattr(router_module, "HOST_REDUCE_ROWS", limit)
            with pytest.raises(error) as caught:
                router.route(request)
            messages.append(str(caught.value))
    assert messages[0] == messages[1]
