"""RoutedDecisions (cluster/outboxes.py): a replica's routes and its gateway share one buffer,
and a take builds the rows of everything added since the last take (columnar blocks and
candidate-mode routes too)."""

from __future__ import annotations

import numpy as np

from cluster.outboxes import GatewayOutbox, RoutedDecisions
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.types import AgentRequest
from tinydancer.candidates.router import Router
from tinydancer.candidates.types import Candidate, RoutingRequest
from tinydancer.model.weights import load_model, shipped_model_path


def test_the_gateways_decisions_land_in_the_replicas_buffer_and_a_take_empties_it():
    model = load_model(shipped_model_path("agent"))
    router = AgentRouter(
        AgentRegistry.for_model(model, capabilities=["chat"]),
        config=AgentRouterConfig(seed=0, warm=False),
        model=model,
    )
    vectors = np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32)
    requests = [AgentRequest(embedding=v) for v in vectors]
    decisions = router.route_batch(requests)
    routed = RoutedDecisions("r1")
    outbox = GatewayOutbox("r1", routed)  # empty, so falsy: still the one it was given
    routed.add(requests[:3], decisions[:3])
    outbox.decided(requests[3], decisions[3])
    assert len(routed) == 4
    (rows,) = routed.take()
    assert rows.request_id == [d.request_id for d in decisions]
    assert rows.replica == ["r1"] * 4
    assert len(routed) == 0 and routed.take() == []

    block = vectors * 2
    columns = router.route_embeddings(block)
    routed.add_block(block, columns, AgentRequest())
    routed.add(requests[:1], decisions[:1])
    assert len(routed) == 5
    block_rows, one = routed.take()
    assert block_rows.request_id == list(columns.request_ids)
    assert block_rows.mode == ["agent"] * 4 and one.request_id == [decisions[0].request_id]

    candidates = [
        Candidate(id=f"doc-{i}", embedding=v, created_at=0.0) for i, v in enumerate(vectors)
    ]
    candidate_router = Router()
    responses = [candidate_router.route(RoutingRequest(q, candidates)) for q in vectors[:2]]
    for query, response in zip(vectors[:2], responses, strict=True):
        routed.add_candidates(query, response)  # what /v1/route/candidates keeps
    routed.add(requests[:1], decisions[:1])
    assert len(routed) == 3
    one, both = routed.take()  # one row per candidate-mode request, all built at once
    assert one.mode == ["agent"] and both.mode == ["candidate"] * 2
    assert both.request_id == [r.request_id for r in responses]
    assert both.chosen == [str(r.candidate_ids[0]) for r in responses]
    assert both.embedding.shape == (2, 384) and both.replica == ["r1"] * 2
    assert len(routed) == 0
