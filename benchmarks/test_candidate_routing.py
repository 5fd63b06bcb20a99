"""Candidate mode: Router.route, batch scoring and the model alone, against baselines.

Baselines measured in the same run: a plain-numpy implementation of the same
computation (validation, features, FastGRNN, conformal bound, ranking) and the time to
stream the embeddings through memory once (`E.sum()`), the physical floor.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinydancer import CandidateBatch, Router, RouterConfig, RoutingRequest
from tinydancer.candidates.features import FeatureConfig
from tinydancer.candidates.reference import score_candidates
from tinydancer.model.conformal import uncertainty_table
from tinydancer.model.embedding import aligned_empty
from tinydancer.model.fastgrnn import forward
from tinydancer.model.quantization import pack, unpack

from ._compare import benchmarking, interleaved_medians, machine_load, record

ROUTE_SIZES = [1, 10, 50, 100]
BATCH_SIZES = [1_000, 10_000, 100_000]


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(RouterConfig(warm_up_to_candidates=128))


def make_batch(n: int, seed: int = 0) -> tuple[np.ndarray, CandidateBatch]:
    rng = np.random.default_rng(seed)
    now = time.time()
    query = rng.normal(size=384).astype(np.float32)
    embeddings = rng.normal(size=(n, 384)).astype(np.float32)
    return query, CandidateBatch(
        ids=np.arange(n),
        embeddings=embeddings,
        created_at=now - rng.uniform(0, 86_400, n),
        access_count=rng.integers(0, 1_000, n).astype(np.float64),
        success_rate=rng.uniform(0, 1, n).astype(np.float32),
        metadata_overlap=rng.choice([0.0, 0.5, 1.0], n).astype(np.float32),
    )


class NumpyRouter:
    """The same computation in plain numpy: validation, features, model, bound, ranking."""

    def __init__(self, router: Router) -> None:
        model = router.model
        self.params = model.float_params()
        self.table = uncertainty_table(model.calibration)
        self.constants = FeatureConfig.from_schema(model.feature_schema["features"]).constants()

    def route(
        self, query: np.ndarray, batch: CandidateBatch
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        now = time.time()
        if not (np.isfinite(query).all() and np.isfinite(batch.embeddings).all()):
            raise ValueError("non-finite embedding")
        if len(set(batch.ids.tolist())) != len(batch.ids):
            raise ValueError("duplicate ids")
        ages = now - batch.created_at
        if ages.min() < -300 or not ((batch.success_rate >= 0) & (batch.success_rate <= 1)).all():
            raise ValueError("bad column")
        columns = np.stack(
            [ages, batch.access_count, batch.success_rate, batch.metadata_overlap]
        ).astype(np.float32)
        confidence, uncertainty = score_candidates(
            self.params, self.table, self.constants, query, batch.embeddings, columns
        )
        order = np.argsort(-confidence, kind="stable")
        return batch.ids[order], confidence[order], uncertainty[order]


@pytest.mark.parametrize("load", ["quiet", "busy"])
@pytest.mark.parametrize("n", ROUTE_SIZES)
def test_route(benchmark, router, n, load):
    """Router.route (columnar) vs the numpy reference vs streaming the embeddings once.

    `busy`: a CPU-burning process runs beside the benchmark. Target: never slower than
    the numpy reference (interleaved ratio <= 1), pinned or not, quiet or busy.
    """
    benchmark.group = f"route {n:>3} candidates" + (", busy machine" if load == "busy" else "")
    query, batch = make_batch(n)
    request = RoutingRequest(query, batch)
    reference = NumpyRouter(router)
    _, confidence, _ = reference.route(query, batch)
    with machine_load(load):
        response = benchmark(router.route, request)
        np.testing.assert_allclose(confidence, response.confidence, rtol=1e-4, atol=1e-5)
        medians = interleaved_medians(
            {
                "tinydancer": lambda: router.route(request),
                "numpy_reference": lambda: reference.route(query, batch),
                "stream_floor": batch.embeddings.sum,
            },
            rounds=2000 if benchmarking(benchmark) else 20,
        )
    record(benchmark, medians, "tinydancer")
    if benchmarking(benchmark):
        assert medians["tinydancer"] <= medians["numpy_reference"], medians


@pytest.mark.parametrize("aligned", [False, True], ids=["numpy-alloc", "aligned-alloc"])
@pytest.mark.parametrize("n", BATCH_SIZES)
def test_score_batch(benchmark, router, n, aligned):
    """Router.score_batch from numpy inputs; `aligned-alloc` uses tinydancer.aligned_empty."""
    benchmark.group = f"batch {n:>7} candidates"
    query, batch = make_batch(n)
    if aligned:
        embeddings = aligned_empty(batch.embeddings.shape)
        embeddings[...] = batch.embeddings
        batch = CandidateBatch(
            batch.ids,
            embeddings,
            batch.created_at,
            batch.access_count,
            batch.success_rate,
            metadata_overlap=batch.metadata_overlap,
        )
    rounds = 5 if n >= 100_000 else 20
    scores = benchmark.pedantic(router.score_batch, (query, batch), rounds=rounds, warmup_rounds=1)
    assert scores.confidence.shape == (n,) and not scores.used_fallback
    reference = NumpyRouter(router)
    record(
        benchmark,
        interleaved_medians(
            {
                "tinydancer": lambda: router.score_batch(query, batch),
                "numpy_reference": lambda: reference.route(query, batch),
                "stream_floor": batch.embeddings.sum,
            },
            rounds=3 * rounds,
            warmup=1,
        ),
        "tinydancer",
    )


MODEL_ROWS = 1_000_000


@pytest.fixture(scope="module")
def model_only(router):
    qpack, spack, fpack, layout = pack(router.model.stored)
    weights = (jnp.asarray(qpack), jnp.asarray(spack), jnp.asarray(fpack))

    @jax.jit
    def run(qp, sp, fp, x):  # x: (N, 5) weighted feature rows
        params = unpack(qp, sp, fp, layout)
        return jax.nn.sigmoid(forward(params, x[:, None, :])[:, 0])

    x = jnp.asarray(np.random.default_rng(0).random((MODEL_ROWS, 5), np.float32))
    return lambda: run(*weights, x).block_until_ready()


def test_model_only_rows_per_second(benchmark, model_only):
    benchmark.group = "model alone, 1M feature rows"
    benchmark.extra_info["rows"] = MODEL_ROWS
    benchmark.pedantic(model_only, rounds=10, warmup_rounds=1)
