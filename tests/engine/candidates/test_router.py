from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest

from tinydancer import (
    Candidate,
    CandidateBatch,
    EmbeddingError,
    InvalidRequestError,
    ModelFileError,
    Router,
    RouterConfig,
    RoutingRequest,
)
from tinydancer.candidates.features import FeatureConfig
from tinydancer.candidates.kernel import score_kernel, score_reduced_kernel
from tinydancer.candidates.reference import score_candidates
from tinydancer.model.conformal import calibrate, uncertainty_table
from tinydancer.model.embedding import EmbeddingSpec, aligned_empty
from tinydancer.model.fastgrnn import FastGRNNConfig, init_params, matrix_names
from tinydancer.model.quantization import quantize
from tinydancer.model.weights import RouterModel, load_model, save_model, shipped_model_path

NOW = 1_763_000_000.0  # a fixed clock: 2025-11-13


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(RouterConfig(warm_up_to_candidates=256), clock=lambda: NOW)


def make_batch(
    n: int, seed: int = 0, dim: int = 384, aligned: bool = False
) -> tuple[np.ndarray, CandidateBatch]:
    rng = np.random.default_rng(seed)
    query = rng.normal(size=dim).astype(np.float32)
    embeddings = rng.normal(size=(n, dim)).astype(np.float32)
    embeddings[: n // 3] += 2 * query  # some candidates close to the query
    if aligned:
        buffer = aligned_empty((n, dim))
        buffer[...] = embeddings
        embeddings = buffer
    batch = CandidateBatch(
        ids=np.array([f"c{i}" for i in range(n)], dtype=object),
        embeddings=embeddings,
        created_at=NOW - rng.uniform(0, 5_000, n),
        access_count=rng.integers(0, 5_000, n).astype(np.float64),
        success_rate=rng.uniform(0, 1, n).astype(np.float32),
        metadata_overlap=rng.choice([0.0, 0.5, 1.0], n).astype(np.float32),
    )
    return query, batch


def reference(
    router: Router, query: np.ndarray, batch: CandidateBatch
) -> tuple[np.ndarray, np.ndarray]:
    model = router.model
    features = FeatureConfig.from_schema(model.feature_schema["features"])
    columns = np.stack(
        [NOW - batch.created_at, batch.access_count, batch.success_rate, batch.metadata_overlap]
    )
    return score_candidates(
        model.float_params(),
        uncertainty_table(model.calibration),
        features.constants(),
        query,
        batch.embeddings,
        columns.astype(np.float32),
    )


@pytest.mark.parametrize("n", [1, 10, 100, 300])
def test_route_matches_the_numpy_reference_and_ranks(router, n):
    query, batch = make_batch(n, seed=n)
    response = router.route(RoutingRequest(query, batch))
    confidence, uncertainty = reference(router, query, batch)
    order = [int(c[1:]) for c in response.candidate_ids]
    np.testing.assert_allclose(response.confidence, confidence[order], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(response.uncertainty, uncertainty[order], atol=2e-3)
    assert np.all(np.diff(response.confidence) <= 0)
    assert sorted(order) == list(range(n))
    assert response.candidates_processed == n and response.model_version == router.model_version
    assert response.inference_time_us > 0 and response.feature_time_us > 0
    expected_light = (response.confidence >= 0.85) & (response.uncertainty <= 0.15)
    np.testing.assert_array_equal(response.use_lightweight, expected_light)


def test_list_and_columnar_inputs_agree(router):
    query, batch = make_batch(20)
    metadata = {"lang": "en", "team": "a"}
    candidates = [
        Candidate(
            str(i),
            batch.embeddings[i].tolist(),
            float(batch.created_at[i]),
            int(batch.access_count[i]),
            float(batch.success_rate[i]),
            {"lang": "en", "team": "a" if i % 2 else "b"},
        )
        for i in range(20)
    ]
    listed = router.route(RoutingRequest(query.tolist(), candidates, metadata=metadata))
    overlap = np.array([1.0 if i % 2 else 0.5 for i in range(20)], np.float32)
    columnar = router.route(
        RoutingRequest(
            query,
            CandidateBatch(
                np.array([str(i) for i in range(20)], object),
                batch.embeddings,
                batch.created_at,
                batch.access_count,
                batch.success_rate,
                metadata_overlap=overlap,
            ),
        )
    )
    assert list(listed.candidate_ids) == list(columnar.candidate_ids)
    np.testing.assert_allclose(listed.confidence, columnar.confidence, rtol=1e-6)
    first = listed.decisions[0]
    assert first.candidate_id == listed.candidate_ids[0] and first.confidence == pytest.approx(
        listed.confidence[0]
    )


def test_tag_bitsets_give_the_overlap_fraction(router):
    query, batch = make_batch(4)
    tags = np.array([0b1111, 0b0011, 0b0001, 0], np.uint64)
    tagged = CandidateBatch(
        batch.ids,
        batch.embeddings,
        batch.created_at,
        batch.access_count,
        batch.success_rate,
        tags=tags,
    )
    explicit = CandidateBatch(
        batch.ids,
        batch.embeddings,
        batch.created_at,
        batch.access_count,
        batch.success_rate,
        metadata_overlap=np.array([1, 0.5, 0.25, 0], np.float32),
    )
    a = router.route(RoutingRequest(query, tagged, tags=0b1111))
    b = router.route(RoutingRequest(query, explicit))
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-6)


def test_more_similar_candidates_rank_higher(router):
    rng = np.random.default_rng(3)
    query = rng.normal(size=384).astype(np.float32)
    other = rng.normal(size=384).astype(np.float32)
    embeddings = np.stack([query + 0.1 * other, other]).astype(np.float32)
    batch = CandidateBatch(
        np.array(["near", "far"], object),
        embeddings,
        np.full(2, NOW - 60.0),
        np.full(2, 50.0),
        np.full(2, 0.9, np.float32),
    )
    assert list(router.route(RoutingRequest(query, batch)).candidate_ids) == ["near", "far"]


def _replace(batch: CandidateBatch, **changes) -> CandidateBatch:
    fields = {
        k: getattr(batch, k)
        for k in (
            "ids",
            "embeddings",
            "created_at",
            "access_count",
            "success_rate",
            "metadata_overlap",
            "tags",
        )
    }
    return CandidateBatch(**(fields | changes))


def _with(batch, field, index, value):
    column = np.array(getattr(batch, field), copy=True)
    column[index] = value
    return _replace(batch, **{field: column})


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda q, b: (q[:100], b), EmbeddingError, r"query_embedding.*shape \(384,\)"),
        (
            lambda q, b: (np.where(np.arange(384) == 5, np.nan, q).astype(np.float32), b),
            EmbeddingError,
            "query_embedding",
        ),
        (lambda q, b: (np.zeros(384, np.float32), b), EmbeddingError, "query_embedding.*non-zero"),
        (
            lambda q, b: (q, _replace(b, embeddings=b.embeddings[:, :128])),
            EmbeddingError,
            r"shape \(N, 384\)",
        ),
        (
            lambda q, b: (q, _with(b, "embeddings", 3, np.inf)),
            EmbeddingError,
            r"candidates\[3\]\.embedding.*'c3'",
        ),
        (
            lambda q, b: (q, _with(b, "embeddings", 2, 0.0)),
            EmbeddingError,
            r"candidates\[2\]\.embedding.*zero",
        ),
        (
            lambda q, b: (q, _with(b, "created_at", 4, NOW * 1000)),
            InvalidRequestError,
            r"candidates\[4\]\.created_at.*milliseconds",
        ),
        (
            lambda q, b: (q, _with(b, "created_at", 1, NOW + 3600)),
            InvalidRequestError,
            r"candidates\[1\]\.created_at.*future",
        ),
        (
            lambda q, b: (q, _with(b, "created_at", 1, np.nan)),
            InvalidRequestError,
            r"candidates\[1\]\.created_at",
        ),
        (
            lambda q, b: (q, _with(b, "success_rate", 0, 1.5)),
            InvalidRequestError,
            r"candidates\[0\]\.success_rate.*\[0, 1\]",
        ),
        (
            lambda q, b: (q, _with(b, "access_count", 5, -1)),
            InvalidRequestError,
            r"candidates\[5\]\.access_count",
        ),
        (
            lambda q, b: (q, _with(b, "ids", 6, "c0")),
            InvalidRequestError,
            r"candidates\.id.*'c0'.*unique",
        ),
        (
            lambda q, b: (q, _replace(b, ids=b.ids[:3])),
            InvalidRequestError,
            r"candidates\.id.*one per embedding",
        ),
        (
            lambda q, b: (q, _replace(b, success_rate=b.success_rate[:3])),
            InvalidRequestError,
            "candidates",
        ),
    ],
    ids=[
        "query-dim",
        "query-nan",
        "query-zero",
        "cand-dim",
        "cand-inf",
        "cand-zero",
        "millis",
        "future",
        "created-nan",
        "success",
        "count",
        "duplicate",
        "ids-short",
        "column-short",
    ],
)
def test_bad_requests_raise_clear_errors(router, mutate, error, message):
    query, batch = make_batch(8)
    bad_query, bad_batch = mutate(query, batch)
    with pytest.raises(error, match=message):
        router.route(RoutingRequest(bad_query, bad_batch))


def test_empty_and_oversized_requests(router):
    query, _ = make_batch(1)
    with pytest.raises(InvalidRequestError, match="at least one candidate"):
        router.route(RoutingRequest(query, []))
    with pytest.raises(EmbeddingError, match="embedding_model"):
        router.route(
            RoutingRequest(query, make_batch(2)[1], embedding_model="openai/text-embedding-3-small")
        )


def test_a_router_recovers_after_a_bad_request(router):
    query, batch = make_batch(8)
    good = router.route(RoutingRequest(query, batch))
    with pytest.raises(EmbeddingError):
        router.route(RoutingRequest(query, _with(batch, "embeddings", 0, np.nan)))
    again = router.route(RoutingRequest(query, batch))
    np.testing.assert_array_equal(good.confidence, again.confidence)


def _random_model(dim: int = 384, *, nan: bool = False, seed: int = 0) -> RouterModel:
    config = FastGRNNConfig(input_dim=5, hidden_dim=8)
    params = {
        k: np.asarray(v) for k, v in init_params(config, key=jax.random.PRNGKey(seed)).items()
    }
    if nan:
        params["b_h"] = np.full(8, np.nan, np.float32)
    return RouterModel(
        mode="candidate",
        config=config,
        stored=quantize(params, matrix_names(config)),
        feature_schema={
            "embedding": EmbeddingSpec(dim=dim).to_dict(),
            "features": FeatureConfig().to_schema(),
        },
        calibration=calibrate(np.linspace(0, 1, 50), np.linspace(0, 1, 50) > 0.5),
    )


def test_non_finite_model_scores_fall_back_to_the_heuristic():
    broken = Router(
        RouterConfig(warm_up_to_candidates=16), model=_random_model(nan=True), clock=lambda: NOW
    )
    query, batch = make_batch(30)
    response = broken.route(RoutingRequest(query, batch))
    assert response.used_fallback and broken.stats.fallback_requests == 1
    assert np.isfinite(response.confidence).all() and np.all(np.diff(response.confidence) <= 0)
    assert not response.use_lightweight.any() and np.all(response.uncertainty == 1.0)
    scores = broken.score_batch(query, batch)
    assert scores.used_fallback and broken.stats.fallback_requests == 2


def test_steady_state_traffic_does_not_recompile(router):
    for n in (1, 16, 17, 100, 200, 256):  # touch every warm bucket once
        router.route(RoutingRequest(*make_batch(n, seed=n)))
    compiled = score_kernel._cache_size(), score_reduced_kernel._cache_size()
    rng = np.random.default_rng(0)
    for n in rng.integers(1, 257, 40):
        router.route(RoutingRequest(*make_batch(int(n), seed=int(n))))
    assert (score_kernel._cache_size(), score_reduced_kernel._cache_size()) == compiled


@pytest.mark.parametrize("aligned", [False, True], ids=["numpy-alloc", "aligned"])
def test_score_batch_equals_route_and_handles_chunks(router, aligned):
    query, batch = make_batch(20_000, seed=9, aligned=aligned)  # more than one 16,384-row chunk
    scores = router.score_batch(query, batch)
    confidence, _ = reference(router, query, batch)
    np.testing.assert_allclose(scores.confidence, confidence, rtol=1e-4, atol=1e-5)
    small = router.route(
        RoutingRequest(
            query,
            _replace(
                batch,
                **{
                    k: getattr(batch, k)[:200]
                    for k in (
                        "ids",
                        "embeddings",
                        "created_at",
                        "access_count",
                        "success_rate",
                        "metadata_overlap",
                    )
                },
            ),
        )
    )
    by_id = dict(zip(small.candidate_ids, small.confidence, strict=True))
    np.testing.assert_allclose(
        [by_id[f"c{i}"] for i in range(200)], scores.confidence[:200], rtol=1e-6
    )


def test_score_batch_reports_the_absolute_row_of_a_bad_input(router):
    query, batch = make_batch(20_000, seed=1)
    with pytest.raises(EmbeddingError, match=r"candidates\[18000\]"):
        router.score_batch(query, _with(batch, "embeddings", 18_000, np.nan))


def test_reload_swaps_weights_and_a_bad_file_changes_nothing(tmp_path):
    local = Router(RouterConfig(warm_up_to_candidates=16), clock=lambda: NOW)
    query, batch = make_batch(10)
    before = local.route(RoutingRequest(query, batch))
    other = _random_model(seed=5)
    path = save_model(other, tmp_path / "other.safetensors")
    assert local.reload(path) == other.version
    after = local.route(RoutingRequest(query, batch))
    assert after.model_version == other.version and not np.allclose(
        before.confidence, after.confidence
    )
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        local.reload(tmp_path / "bad.safetensors")
    with pytest.raises(ModelFileError, match="embedding dimension"):
        local.reload(_random_model(dim=128))
    with pytest.raises(ModelFileError, match="expected candidate, found agent"):
        local.reload(load_model(shipped_model_path("agent")))
    assert local.route(RoutingRequest(query, batch)).model_version == other.version


def test_model_embedding_dimension_is_enforced():
    small = Router(
        RouterConfig(warm_up_to_candidates=16), model=_random_model(dim=128), clock=lambda: NOW
    )
    query, batch = make_batch(3)
    with pytest.raises(EmbeddingError, match=r"shape \(128,\)"):
        small.route(RoutingRequest(query, batch))
    assert small.route(RoutingRequest(*make_batch(3, dim=128))).candidates_processed == 3


def test_concurrent_routing_gives_the_same_answers(router):
    requests = [RoutingRequest(*make_batch(n, seed=n)) for n in (5, 50, 120, 7)]
    expected = [router.route(r).confidence for r in requests]
    failures: list[str] = []

    def worker() -> None:
        for _ in range(25):
            for request, want in zip(requests, expected, strict=True):
                got = router.route(request).confidence
                if not np.array_equal(got, want):
                    failures.append(f"{len(want)} rows differ")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_real_clock_and_shipped_model_work_by_default():
    router = Router(RouterConfig(warm_up_to_candidates=16))
    query, batch = make_batch(5)
    fresh = _replace(batch, created_at=np.full(5, time.time() - 10.0))
    assert router.route(RoutingRequest(query, fresh)).candidates_processed == 5


@pytest.mark.parametrize(
    "column", ["created_at", "access_count", "success_rate", "metadata_overlap"]
)
@pytest.mark.parametrize("length", [1, 3])
def test_columns_of_another_length_are_refused_not_broadcast(router, column, length):
    query, batch = make_batch(2)
    short = _replace(batch, **{column: np.asarray(getattr(batch, column))[:1].repeat(length)})
    with pytest.raises(
        InvalidRequestError, match=f"candidates.{column}: got '{length} values'; expected 2 values"
    ):
        router.route(RoutingRequest(query, short))
    with pytest.raises(InvalidRequestError, match=f"candidates.{column}"):
        router.score_batch(query, short)


def test_a_huge_candidate_embedding_is_named_as_overflowing(router):
    query, batch = make_batch(3)
    embeddings = np.array(batch.embeddings, copy=True)
    embeddings[1] = 3e38
    with pytest.raises(EmbeddingError, match=r"candidates\[1\].embedding.*overflows float32"):
        router.route(RoutingRequest(query, _replace(batch, embeddings=embeddings)))


def test_warm_compiles_every_bucket_up_to_its_limit():
    """A server starts with the smallest bucket compiled and warms the rest later."""
    dim = 96  # a dimension no other test compiles for
    lazy = Router(
        RouterConfig(warm_up_to_candidates=0), model=_random_model(dim=dim), clock=lambda: NOW
    )
    started = score_kernel._cache_size(), score_reduced_kernel._cache_size()
    lazy.warm(64)
    warmed = score_kernel._cache_size(), score_reduced_kernel._cache_size()
    # buckets 32 and 64 for this dimension (the reduced kernel's inputs do not depend on
    # it, so another test may have compiled those already)
    assert warmed[0] == started[0] + 2
    for n in (1, 17, 33, 64):
        lazy.route(RoutingRequest(*make_batch(n, seed=n, dim=dim)))
    assert (score_kernel._cache_size(), score_reduced_kernel._cache_size()) == warmed
