"""History rows from routed decisions.

from_agent_decisions: rows built for many routed batches at once (what a replica does at
each push) equal the rows built batch by batch when the decisions were made.
from_columnar: the rows of a `/v1/route/batch` block keep their numeric columns as arrays
and store the same values as the decisions returned.
from_candidate_responses: the rows of many candidate-mode requests, built at once, store
each request's top candidate, the next three and its query.
quantize_embeddings: each row's int8 codes and scale, in blocks of rows or not, are the
row's own (max |x| / 127, codes rounded from x / scale), zero rows included.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.candidates.router import Router
from tinydancer.candidates.types import Candidate, RoutingRequest
from tinydancer.history.records import (
    DecisionColumns,
    dequantize_embeddings,
    from_agent_decisions,
    from_candidate_responses,
    from_columnar,
    quantize_embeddings,
)
from tinydancer.history.store import HistoryConfig, HistoryStore
from tinydancer.model.weights import load_model, shipped_model_path


@pytest.fixture(scope="module")
def router():
    model = load_model(shipped_model_path("agent"))
    registry = AgentRegistry.for_model(model, capabilities=["chat"])
    return AgentRouter(registry, config=AgentRouterConfig(seed=0, warm=False), model=model)


@pytest.fixture(scope="module")
def batches(router):
    rng = np.random.default_rng(3)
    out = []
    for k, size in enumerate((1, 5, 3, 1, 8)):
        vectors = rng.normal(size=(size + 2, 384)).astype(np.float32)
        requests = [AgentRequest(embedding=v, optimize_for="cost") for v in vectors[:size]]
        requests[0] = AgentRequest(  # one conversation, one with constraints, per batch
            messages=list(vectors[size:]), willingness_to_pay=0.5 + k
        )
        if size > 1:
            requests[1] = AgentRequest(
                embedding=vectors[1], constraints=Constraints(max_cost_usd=1.0)
            )
        out.append((requests, router.route_batch(requests), 1_000.0 + k))
    return out


def test_rows_built_at_once_equal_the_rows_built_batch_by_batch(batches):
    one_by_one = DecisionColumns()
    for requests, decisions, ts in batches:
        one_by_one.extend(from_agent_decisions(requests, decisions, ts=ts, replica="r1"))
    at_once = from_agent_decisions(
        [r for requests, _, _ in batches for r in requests],
        [d for _, decisions, _ in batches for d in decisions],
        ts=[ts for requests, _, ts in batches for _ in requests],
        replica="r1",
    )
    assert len(at_once) == len(one_by_one) == sum(len(b[0]) for b in batches)
    for name, values in one_by_one.as_dict().items():
        got = at_once.as_dict()[name]
        if name == "embedding":
            assert all(np.array_equal(a, b) for a, b in zip(got, values, strict=True))
        else:
            assert got == values, name
    assert sorted(set(at_once.ts)) == [1_000.0 + k for k in range(len(batches))]


def test_one_time_per_decision_is_required(batches):
    requests, decisions, _ = batches[1]
    with pytest.raises(ValueError, match="ts: got 2 times for 5 decisions"):
        from_agent_decisions(requests, decisions, ts=[1.0, 2.0])


def test_columnar_rows_skip_unroutable_rows_and_store_what_was_decided(router, tmp_path):
    block = np.random.default_rng(4).normal(size=(64, 384)).astype(np.float32)
    qualities = router.route_embeddings(block, AgentRequest()).expected_quality
    # a quality floor between the rows' best qualities: some rows have no eligible agent
    template = AgentRequest(constraints=Constraints(min_quality=float(np.median(qualities))))
    decided = router.route_embeddings(block, template)
    routable = decided.agent_index >= 0
    assert 0 < routable.sum() < len(block)

    rows = from_columnar(block, decided, template, ts=1_000.0, replica="r1")
    assert isinstance(rows.confidence, np.ndarray) and rows.embedding.shape == (routable.sum(), 384)
    assert rows.request_id == [r for r, ok in zip(decided.request_ids, routable, strict=True) if ok]
    assert rows.chosen == [a for a in decided.agents if a is not None]

    store = HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb"))
    store.append_decisions(rows)
    assert store.flush() == routable.sum()
    stored = store.query(
        "SELECT request_id, chosen, confidence, expected_quality, estimated_cost_usd, "
        "message_count, alternatives, embedding, embedding_scale, replica FROM decisions ORDER BY seq"
    )
    picked = np.flatnonzero(routable)
    assert [r[0] for r in stored] == rows.request_id
    assert [r[1] for r in stored] == rows.chosen
    for name, k in (("confidence", 2), ("expected_quality", 3), ("estimated_cost_usd", 4)):
        np.testing.assert_array_equal(
            np.array([r[k] for r in stored], np.float32), getattr(decided, name)[picked], name
        )
    assert {r[5] for r in stored} == {1} and {r[9] for r in stored} == {"r1"}
    assert [r[6] for r in stored] == [
        json.dumps(list(decided.alternatives[i])) for i in picked.tolist()
    ]
    scales = np.array([r[8] for r in stored], np.float32)
    restored = dequantize_embeddings([r[7] for r in stored], scales)
    np.testing.assert_allclose(restored, block[picked], atol=float(scales.max()))


def test_candidate_rows_built_at_once_store_each_requests_ranking_and_query(tmp_path):
    router = Router()
    rng = np.random.default_rng(5)
    queries, responses = [], []
    for size in (1, 3, 6):  # fewer than four candidates too
        query = rng.normal(size=384).astype(np.float32)
        candidates = [
            Candidate(
                id=f"c{size}-{i}",
                embedding=rng.normal(size=384).astype(np.float32),
                created_at=time.time() - 60.0 * i,
            )
            for i in range(size)
        ]
        queries.append(query)
        responses.append(router.route(RoutingRequest(query, candidates)))

    rows = from_candidate_responses(queries, responses, ts=[1.0, 2.0, 3.0], replica="r2")
    assert rows.request_id == [r.request_id for r in responses]
    assert rows.chosen == [str(r.candidate_ids[0]) for r in responses]
    store = HistoryStore(HistoryConfig(path=tmp_path / "h.duckdb"))
    store.append_decisions(rows)
    assert store.flush() == 3
    stored = store.query(
        "SELECT request_id, mode, chosen, alternatives, confidence, propensity, epoch(ts), "
        "embedding, embedding_scale, replica FROM decisions ORDER BY seq"
    )
    for row, response in zip(stored, responses, strict=True):
        ranked = [str(i) for i in response.candidate_ids.tolist()]
        assert row[:3] == (response.request_id, "candidate", ranked[0])
        assert json.loads(row[3]) == ranked[1:4]
        assert row[4] == pytest.approx(float(response.confidence[0]), rel=1e-6)
        assert row[5] == 1.0 and row[9] == "r2"
    assert [r[6] for r in stored] == [1.0, 2.0, 3.0]
    scales = np.array([r[8] for r in stored], np.float32)
    restored = dequantize_embeddings([r[7] for r in stored], scales)
    np.testing.assert_allclose(restored, np.stack(queries), atol=float(scales.max()))


@pytest.mark.parametrize("rows", [0, 1, 511, 512, 513, 1300])
def test_each_row_is_quantized_on_its_own_scale_across_blocks(rows):
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 384)) * rng.choice([0.0, 1e-3, 1.0, 50.0], size=(rows, 1))
    codes, scales = quantize_embeddings(x)
    assert codes.dtype == np.int8 and codes.shape == (rows, 384)
    assert scales.dtype == np.float32 and scales.shape == (rows,)
    top = np.abs(x).max(axis=1).astype(np.float32) / 127
    want_scales = np.where(top > 0, top, 1).astype(np.float32)
    np.testing.assert_allclose(scales, want_scales, rtol=1e-6)
    # given its scale (checked above to float32 rounding), each row's codes exactly
    want = np.clip(np.rint(x.astype(np.float32) * (np.float32(1) / scales)[:, None]), -127, 127)
    assert np.array_equal(codes, want.astype(np.int8))
    assert (np.abs(codes).max(axis=1, initial=0)[top > 0] == 127).all()
    assert (codes[top == 0] == 0).all()
