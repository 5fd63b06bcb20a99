"""Columnar decisions as an Arrow IPC stream hold exactly what their JSON form holds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tinydancer.agents.columnar_arrow import decisions_ipc, decisions_table
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.model.weights import load_model, shipped_model_path

MODEL = load_model(shipped_model_path("agent"))


@pytest.fixture(scope="module")
def decisions():
    router = AgentRouter(
        AgentRegistry.for_model(MODEL), config=AgentRouterConfig(seed=3, warm=False), model=MODEL
    )
    block = np.random.default_rng(3).normal(size=(400, 384)).astype("<f4")
    # a quality floor leaves some rows without an eligible agent (and shorter rankings)
    out = router.route_embeddings(block, AgentRequest(constraints=Constraints(min_quality=0.7)))
    assert 0 < int((out.agent_index < 0).sum()) < len(out)
    assert {len(a) for a in out.alternatives} >= {0, 2}
    return out


def test_the_stream_reads_back_as_the_json_columns(decisions):
    table = pa.ipc.open_stream(decisions_ipc(decisions)).read_all()
    expected = decisions.to_dict()
    assert table.schema.metadata == {b"model_version": expected["model_version"].encode()}
    assert table.column_names == [k for k in expected if k != "model_version"]
    got = table.to_pydict()
    assert got["request_id"] == expected["request_id"]
    assert got["agent"] == expected["agent"]  # None where no agent was eligible
    assert [tuple(a) for a in got["alternatives"]] == list(expected["alternatives"])
    for name in ("confidence", "uncertainty", "expected_quality", "estimated_cost_usd"):
        assert table.schema.field(name).type == pa.float32()
        # bit for bit: JSON carries the float32 values as exact doubles
        np.testing.assert_array_equal(
            table.column(name).to_numpy(), np.asarray(expected[name], np.float32)
        )


def test_agent_names_travel_once_per_stream(decisions):
    table = decisions_table(decisions)
    agent = table.column("agent").combine_chunks()
    assert agent.dictionary.to_pylist() == decisions.agent_names
    assert agent.null_count == int((decisions.agent_index < 0).sum())
    alternatives = table.column("alternatives").combine_chunks()
    assert alternatives.values.dictionary.to_pylist() == decisions.agent_names
    # the names are not repeated per row: far smaller than the JSON answer's
    assert len(decisions_ipc(decisions)) < 0.5 * len(str(decisions.to_dict()))
