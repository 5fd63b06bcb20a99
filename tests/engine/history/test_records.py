"""from_agent_decisions: rows built for many routed batches at once (what a replica does at
each push) equal the rows built batch by batch when the decisions were made."""

from __future__ import annotations

import numpy as np
import pytest

from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.history.records import DecisionColumns, from_agent_decisions
from tinydancer.model.weights import load_model, shipped_model_path


@pytest.fixture(scope="module")
def batches():
    model = load_model(shipped_model_path("agent"))
    registry = AgentRegistry.for_model(model, capabilities=["chat"])
    router = AgentRouter(registry, config=AgentRouterConfig(seed=0, warm=False), model=model)
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
