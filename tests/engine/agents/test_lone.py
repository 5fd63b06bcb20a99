"""The lone-request path of `AgentRouter.route` (one embedding: a reused input row,
offsets drawn in blocks, the decision read from one `tolist`) decides exactly as the
request-by-request path, errs as it does and draws the same random stream."""

from __future__ import annotations

import numpy as np
import pytest

from tinydancer import EmbeddingError
from tinydancer.agents.draws import POOL_DRAWS, ThompsonDraws
from tinydancer.agents.types import AgentRequest, Constraints

from .test_batch import assert_same_decisions, mixed_batch
from .test_router import NAMES, embedding, make_router


def general_router(**config):
    """A router that never takes the lone path (its decisions are the reference)."""
    router = make_router(**config)
    router._route_lone = lambda request, remember: None
    return router


def lone_sequence() -> list[AgentRequest]:
    impossible = Constraints(max_cost_usd=0.0, min_quality=1.0)  # the fallback agent's
    return [
        *mixed_batch(),
        AgentRequest(embedding=embedding(50), constraints=impossible),
        AgentRequest(
            embedding=embedding(51), constraints=Constraints(required_capabilities={"code"})
        ),
        AgentRequest(embedding=embedding(52).astype(np.float64)),  # converted, as generally
        AgentRequest(embedding=np.full(384, 1e-17, np.float32)),  # tiny but usable in float32
        AgentRequest(embedding=embedding(53)),
    ]


def test_route_decides_as_the_request_by_request_path():
    """Two routers with one seed, fed the same requests and the same feedback (so the
    snapshot, and with it the lone path's cached input row, changes as it goes)."""
    lone = make_router(seed=11, fallback_agent=NAMES[2])
    general = general_router(seed=11, fallback_agent=NAMES[2])
    for i, request in enumerate(lone_sequence() * 2):
        fast = lone.route(request)
        slow = general.route(request)  # decided request by request
        assert_same_decisions(lone, [fast], general, [slow])
        if i % 3 == 0 and not fast.fallback:
            for router, decision in ((lone, fast), (general, slow)):
                router.record_outcome(
                    decision.request_id, decision.agent, success=i % 2 == 0, quality=0.5
                )
    assert any(d.fallback for d in [lone.route(lone_sequence()[-5])])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(384, np.float32),
        np.full(384, np.nan, np.float32),
        np.full(384, 3e38, np.float32),  # finite, but the squared norm overflows float32
        np.full(384, 1e-40, np.float32),  # denormals: the squared norm underflows to 0
        np.ones(12, np.float32),
        ["a"] * 384,
    ],
    ids=["zero", "nan", "overflow", "underflow", "dimension", "strings"],
)
def test_a_bad_embedding_is_refused_as_the_general_path_refuses_it(bad):
    lone, general = make_router(seed=3), general_router(seed=3)
    with pytest.raises(EmbeddingError) as fast:
        lone.route(AgentRequest(embedding=bad))
    with pytest.raises(EmbeddingError) as slow:
        general.route_batch([AgentRequest(embedding=bad)])
    assert str(fast.value) == str(slow.value) and "embedding" in str(fast.value)
    assert len(lone.ledger) == 0
    # nothing was drawn for the refused request: the next decisions still agree
    request = AgentRequest(embedding=embedding(9))
    assert_same_decisions(lone, [lone.route(request)], general, [general.route_batch([request])[0]])


def test_offsets_drawn_in_blocks_are_the_seeded_stream_call_by_call():
    router = make_router(seed=5)
    draws = router.registry.bandit_config.propensity_samples + 1
    high = POOL_DRAWS - draws
    sizes = [1] * 300 + [7, 300, 1, 256, 1]
    drawn = np.concatenate([router.draws.offsets(n, draws) for n in sizes])
    stream = np.random.default_rng(5)
    one_by_one = np.concatenate([stream.integers(0, high, n) for n in sizes])
    np.testing.assert_array_equal(drawn, one_by_one)
    assert drawn.min() >= 0 and drawn.max() < high


def test_another_number_of_draws_drops_what_was_drawn_for_the_old_bound():
    draws = ThompsonDraws(seed=2)
    first = draws.offsets(3, 65)  # a block of 256 drawn below POOL_DRAWS - 65
    later = draws.offsets(500, 8000)  # a bound of 192: the rest of that block is not used
    assert first.max() < POOL_DRAWS - 65 and later.max() < POOL_DRAWS - 8000
    stream = np.random.default_rng(2)
    np.testing.assert_array_equal(first, stream.integers(0, POOL_DRAWS - 65, 256)[:3])
    np.testing.assert_array_equal(later, stream.integers(0, POOL_DRAWS - 8000, 500))
    assert draws.pool(16).shape == (POOL_DRAWS, 2, 16)


def test_a_lone_request_in_route_batch_takes_the_lone_path(monkeypatch):
    """A replica routes a request alone as route_batch([request]): the same path as route."""
    import tinydancer.agents.router as router_module

    calls = []
    original = router_module.lone_decision
    monkeypatch.setattr(
        router_module, "lone_decision", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    lone, general = make_router(seed=4), general_router(seed=4)
    request = AgentRequest(embedding=embedding(3))
    fast = lone.route_batch([request], remember=False)
    slow = general.route_batch([request], remember=False)
    assert calls == [1] and fast[0].agent == slow[0].agent and len(lone.ledger) == 0
    assert fast[0].propensity == slow[0].propensity
    lone.route_batch([request, request])  # two requests: the batch path
    assert calls == [1] and len(lone.ledger) == 2


def test_route_each_gives_a_bad_request_its_own_error_and_routes_the_rest(monkeypatch):
    """A replica's micro-batch: up to EACH_ALONE_MAX requests one by one, more as one
    batch; a batch that fails as a whole falls back to request by request, so a bad
    request gets its error in its place and the others the decisions `route` gives."""
    from tinydancer.agents.router import EACH_ALONE_MAX

    router, reference = make_router(seed=9), make_router(seed=9)
    sizes: list[int] = []
    original = router.route_batch
    monkeypatch.setattr(
        router,
        "route_batch",
        lambda requests, **k: sizes.append(len(requests)) or original(requests, **k),
    )
    few = [AgentRequest(embedding=embedding(i)) for i in range(EACH_ALONE_MAX)]
    assert [d.agent for d in router.route_each(few)] == [reference.route(r).agent for r in few]
    assert sizes == [1] * EACH_ALONE_MAX  # one by one
    sizes.clear()
    many = [AgentRequest(embedding=embedding(10 + i)) for i in range(EACH_ALONE_MAX + 3)]
    many[2] = AgentRequest(embedding=np.zeros(384, np.float32))  # no direction: an error
    out = router.route_each(many)
    assert sizes[0] == len(many) and sizes[1:] == [1] * len(many)  # the batch, then each
    assert isinstance(out[2], EmbeddingError) and "embedding" in str(out[2])
    want = [reference.route(r).agent for i, r in enumerate(many) if i != 2]
    assert [d.agent for i, d in enumerate(out) if i != 2] == want
    assert len(router.ledger) == EACH_ALONE_MAX + len(many) - 1  # each routed one remembered
    assert router.route_each([]) == []
