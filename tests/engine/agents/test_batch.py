"""The batch path of `AgentRouter.route_batch` (stacked inputs, shared request rows,
decisions built from one ranking of the batch) decides exactly as request by request."""

from __future__ import annotations

import numpy as np
import pytest

import tinydancer.agents.router as router_module
from tinydancer import EmbeddingError, InvalidRequestError
from tinydancer.agents.types import AgentRequest, Constraints

from .test_router import NAMES, embedding, make_router


def mixed_batch() -> list[AgentRequest]:
    cheap = Constraints(max_cost_usd=0.001)
    requests = [AgentRequest(embedding=embedding(i)) for i in range(20)]
    requests += [AgentRequest(embedding=embedding(i), constraints=cheap) for i in range(20, 26)]
    requests += [
        AgentRequest(embedding=embedding(30), willingness_to_pay=0.05),
        AgentRequest(embedding=list(embedding(31)), optimize_for="quality"),
        AgentRequest(embedding=embedding(32), weights={"cost": 2.0}),
        AgentRequest(embedding=embedding(33), constraints=Constraints(excluded_agents={NAMES[0]})),
        AgentRequest(embedding=embedding(34), request_id="mine-34", expected_tokens=900),
    ]
    return requests


def conversation_batch() -> list[AgentRequest]:
    return [
        AgentRequest(embedding=embedding(40)),
        AgentRequest(messages=[embedding(41), embedding(42), embedding(43)]),
        AgentRequest(embedding=embedding(44), optimize_for="cost"),
    ]


def one_by_one(monkeypatch, requests):
    """The same seeded router, forced down the request-by-request path."""
    monkeypatch.setattr(router_module, "decide_rows", lambda *a, **k: None)
    router = make_router(seed=7)
    return router, router.route_batch(requests)


def assert_same_decisions(fast_router, fast, slow_router, slow) -> None:
    """Two paths' decisions agree field for field, and so do their ledger entries."""
    for f, s in zip(fast, slow, strict=True):
        assert (f.agent, f.objective, f.fallback, f.probe) == (
            s.agent,
            s.objective,
            s.fallback,
            s.probe,
        )
        assert [r[0] for r in f.ranked] == [r[0] for r in s.ranked]
        np.testing.assert_allclose([r[1:4] for r in f.ranked], [r[1:4] for r in s.ranked])
        assert (f.confidence, f.propensity, f.uncertainty) == (
            s.confidence,
            s.propensity,
            s.uncertainty,
        )
        assert (f.estimated_latency_ms, f.expected_quality, f.model_quality) == (
            s.estimated_latency_ms,
            s.expected_quality,
            s.model_quality,
        )
        assert f.ranking == s.ranking and dict(f.excluded) == dict(s.excluded)
        assert (f.similarity, f.estimated_cost_usd, f.model_version) == (
            s.similarity,
            s.estimated_cost_usd,
            s.model_version,
        )
        assert f.reason == s.reason
        # what the ledger holds for feedback is the same
        fe = fast_router.ledger.check(f.request_id, f.agent)
        se = slow_router.ledger.check(s.request_id, s.agent)
        assert fe.allowed == se.allowed
        assert fe.model_quality == pytest.approx(se.model_quality, rel=1e-6)


@pytest.mark.parametrize("batch", [mixed_batch, conversation_batch])
def test_the_batch_path_decides_as_request_by_request(monkeypatch, batch):
    requests = batch()
    fast_router = make_router(seed=7)
    fast = fast_router.route_batch(requests)
    slow_router, slow = one_by_one(monkeypatch, requests)
    assert len(fast) == len(slow) == len(requests)
    assert_same_decisions(fast_router, fast, slow_router, slow)
    assert not any(d.fallback or d.probe for d in fast)
    assert fast[-1].request_id == slow[-1].request_id or batch is conversation_batch
    assert len({d.request_id for d in fast}) == len(fast)


def test_a_batch_with_a_fallback_row_is_decided_with_the_fallback():
    router = make_router(fallback_agent=NAMES[1])
    impossible = Constraints(max_cost_usd=0.0, min_quality=1.0)
    decisions = router.route_batch(
        [
            AgentRequest(embedding=embedding(1)),
            AgentRequest(embedding=embedding(2), constraints=impossible),
        ]
    )
    assert not decisions[0].fallback
    assert decisions[1].fallback and decisions[1].agent == NAMES[1]
    router.ledger.check(decisions[1].request_id, NAMES[1])  # remembered: feedback is accepted


@pytest.mark.parametrize(
    "bad, error, field",
    [
        (np.zeros(384, np.float32), EmbeddingError, r"embedding"),
        (np.full(384, np.nan, np.float32), EmbeddingError, r"embedding"),
        (np.ones(12, np.float32), EmbeddingError, r"embedding"),
    ],
    ids=["zero", "nan", "dimension"],
)
def test_a_bad_row_in_a_batch_is_named(bad, error, field):
    router = make_router()
    requests = [AgentRequest(embedding=embedding(i)) for i in range(5)]
    requests[3] = AgentRequest(embedding=bad)
    with pytest.raises(error, match=r"requests\[3\]\." + field):
        router.route_batch(requests)
    with pytest.raises(InvalidRequestError, match="willingness_to_pay"):
        router.route_batch(
            [
                AgentRequest(embedding=embedding(0)),
                AgentRequest(embedding=embedding(1), willingness_to_pay=-1),
            ]
        )
