"""The decision ledger: one-shot feedback for routed decisions, and for gateway answers one
outcome per attempt (in order, once each) and one later quality report."""

from __future__ import annotations

import pytest

from tinydancer.agents.agent import Agent
from tinydancer.agents.ledger import Answer, DecisionLedger
from tinydancer.agents.registry import AgentRegistry
from tinydancer.errors import FeedbackError

RID = "r" * 32


@pytest.fixture
def registry() -> AgentRegistry:
    registry = AgentRegistry()
    for name in ("a", "b", "c"):
        registry.register(Agent(name=name))
    return registry


def gateway_ledger() -> DecisionLedger:
    ledger = DecisionLedger(capacity=10)
    ledger.remember(RID, ("a", "b", "c"), (0.9, None, 0.5), mode="gateway")
    return ledger


class refused:
    """Expect a FeedbackError with this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, trace) -> bool:
        assert isinstance(error, FeedbackError), f"expected a refusal, got {error!r}"
        assert error.reason == self.reason, error
        return True


def test_attempts_are_accepted_once_each_in_order_with_the_models_quality():
    ledger = gateway_ledger()
    assert ledger.record_attempt(RID, 0, "a") == 0.9
    with refused("attempt_replayed"):
        ledger.record_attempt(RID, 0, "a")
    with refused("attempt_replayed"):
        ledger.record_attempt(RID, 2, "c")  # 1 is missing
    with refused("agent_mismatch"):
        ledger.record_attempt(RID, 1, "zed")
    assert ledger.record_attempt(RID, 1, "b") is None  # no head for b
    ledger.finish(Answer(RID, "b", stitched=True, latency_ms=900, cost_usd=0.01))
    with refused("attempt_replayed"):
        ledger.record_attempt(RID, 2, "c")  # finished
    with refused("not_open"):
        ledger.finish(Answer(RID, "b"))


def test_the_quality_report_is_settled_once_and_credited_to_the_finisher(registry):
    ledger = gateway_ledger()
    ledger.record_attempt(RID, 0, "a")
    with refused("in_progress"):
        ledger.settle(RID, None, registry, None, None, 0.8, None)
    ledger.finish(Answer(RID, "b", stitched=True, latency_ms=900, cost_usd=0.01))
    with refused("missing_quality"):
        ledger.settle(RID, None, registry, True, None, None, None)
    with refused("agent_mismatch"):
        ledger.settle(RID, "a", registry, None, None, 0.8, None)
    settled = ledger.settle(RID, None, registry, None, None, 0.8, None)
    assert settled == ("r" * 32, "b", "gateway", True, 900, 0.01)
    metrics = registry.metrics("b")
    assert (metrics.requests, metrics.quality_count, metrics.quality_sum) == (0, 1, 0.8)
    with refused("replayed"):
        ledger.settle(RID, None, registry, None, None, 0.8, None)
    assert ledger.refused["replayed"] == 1 and ledger.refused["agent_mismatch"] == 1


def test_an_answer_nobody_gave_has_no_quality_to_report(registry):
    ledger = gateway_ledger()
    ledger.finish(Answer(RID, None))
    with refused("no_answer"):
        ledger.settle(RID, None, registry, None, None, 0.5, None)
    assert RID not in ledger


def test_routed_decisions_keep_their_guarantees(registry):
    ledger = DecisionLedger()
    ledger.remember("d1", ("a", "b"), (0.7, 0.6))
    with refused("missing_field"):
        ledger.settle("d1", None, registry, None, None, 0.9, None)
    with refused("not_gateway"):
        ledger.record_attempt("d1", 0, "a")
    with refused("unknown_request"):
        ledger.settle("nope", "a", registry, True, None, None, None)
    settled = ledger.settle("d1", "b", registry, True, 120.0, 0.9, 0.001)
    assert (settled.agent, settled.mode, settled.stitched) == ("b", "agent", False)
    assert registry.metrics("b").requests == 1
    with refused("replayed"):
        ledger.settle("d1", "b", registry, True, None, None, None)
    assert set(ledger.refused) >= {"unknown_request", "replayed", "agent_mismatch"}


def test_capacity_evicts_gateway_state_with_its_decision():
    ledger = DecisionLedger(capacity=2)
    for i in range(3):
        ledger.remember(f"g{i}", ("a",), (None,), mode="gateway")
        ledger.record_attempt(f"g{i}", 0, "a")
    assert "g0" not in ledger and "g0" not in ledger._attempts
    with refused("unknown_request"):
        ledger.record_attempt("g0", 1, "a")


def test_feedback_is_ready_once_a_gateway_answer_is_finished_and_a_replay_at_once():
    from tinydancer.agents.ledger import Answer, DecisionLedger

    ledger = DecisionLedger()
    assert not ledger.ready_for_feedback("r1")  # unknown: its decision may be on its way
    ledger.remember("r1", ["a", "b"], mode="gateway")
    assert not ledger.ready_for_feedback("r1")  # the answer is still streaming
    ledger.finish(Answer("r1", "a"))
    assert ledger.ready_for_feedback("r1")
    ledger.remember("r2", ["a"])
    assert ledger.ready_for_feedback("r2")
    ledger.consume("r2", "a")
    assert ledger.ready_for_feedback("r2")  # settled: a replay is refused without waiting


def test_a_request_whose_feedback_was_taken_is_known_as_closed(registry):
    ledger = DecisionLedger(capacity=10)
    ledger.remember(RID, ("a",), mode="agent")
    assert RID in ledger and not ledger.closed(RID)
    ledger.settle(RID, "a", registry, True, 10.0, None, None)
    assert RID not in ledger and ledger.closed(RID)  # a replay: refused without waiting
    assert not ledger.closed("never-issued")
    with refused("replayed"):
        ledger.settle(RID, "a", registry, True, 10.0, None, None)


def _block(ids, ranked, qualities=None):
    import numpy as np

    from tinydancer.agents.ledger import LedgerBlock

    ranked = np.asarray(ranked, np.int16)
    if qualities is None:
        qualities = np.full(ranked.shape, np.nan, np.float32)
    return LedgerBlock(list(ids), ("a", "b", "c"), ranked, np.asarray(qualities, np.float32))


def test_a_block_holds_a_batch_columnar_and_reads_back_as_entries(registry):
    ledger = DecisionLedger(capacity=100)
    ledger.remember_block(
        _block(
            ["x0", "x1", "x2"],
            [[1, 0, -1], [-1, -1, -1], [2, 1, 0]],  # x1: no eligible agent
            [[0.7, float("nan"), float("nan")], [0, 0, 0], [0.4, 0.5, 0.6]],
        )
    )
    assert len(ledger) == 2 and "x1" not in ledger
    x0 = ledger.entry("x0")
    assert (
        x0 is not None
        and x0.allowed == ("b", "a")
        and x0.model_quality == pytest.approx({"b": 0.7})
    )
    assert ledger.entry("x2").allowed == ("c", "b", "a")  # type: ignore[union-attr]
    with refused("agent_mismatch"):
        ledger.settle("x0", "c", registry, True, 10.0, 0.9, 0.001)
    settled = ledger.settle("x0", "a", registry, True, 10.0, 0.9, 0.001)
    assert settled.agent == "a" and registry.metrics("a").requests == 1
    with refused("replayed"):
        ledger.settle("x0", "a", registry, True, 10.0, 0.9, 0.001)
    with refused("unknown_request"):
        ledger.settle("x1", "a", registry, True, 10.0, 0.9, 0.001)


def test_blocks_and_single_entries_age_out_oldest_first_and_blocks_are_released():
    ledger = DecisionLedger(capacity=5)
    ledger.remember("s0", ("a",))
    ledger.remember_block(_block([f"b{i}" for i in range(4)], [[0, -1, -1]] * 4))
    ledger.remember("s1", ("b",))
    assert len(ledger) == 6 - 1 and "s0" not in ledger  # over capacity: the oldest went
    ledger.remember_block(_block([f"c{i}" for i in range(4)], [[2, -1, -1]] * 4))
    assert len(ledger) == 5 and all(f"b{i}" not in ledger for i in range(4))
    assert "s1" in ledger and ledger.entry("c3").allowed == ("c",)  # type: ignore[union-attr]
    assert len(ledger._blocks) == 1  # the first block holds nothing open: released


def test_an_old_open_decision_does_not_keep_every_later_block_alive(registry):
    ledger = DecisionLedger(capacity=4)
    ledger.remember("old", ("a",))
    for k in range(10):  # each block's decisions get their feedback at once
        ids = [f"k{k}-{i}" for i in range(4)]
        ledger.remember_block(_block(ids, [[0, -1, -1]] * 4))
        for request_id in ids:
            ledger.settle(request_id, "a", registry, True, 1.0, None, None)
    assert "old" not in ledger  # more than 4 x capacity slots old: gone
    assert len(ledger._blocks) <= 5


def test_the_same_id_remembered_again_keeps_the_newest():
    ledger = DecisionLedger(capacity=10)
    ledger.remember("r", ("a",))
    ledger.remember_block(_block(["r"], [[1, -1, -1]]))
    assert len(ledger) == 1 and ledger.entry("r").allowed == ("b",)  # type: ignore[union-attr]


def test_blocks_alone_are_remembered_in_bulk_and_evicted_oldest_first(registry):
    ledger = DecisionLedger(capacity=5)
    ledger.remember_block(_block([f"b{i}" for i in range(4)], [[0, 1, -1]] * 4))
    ledger.remember_block(_block([f"c{i}" for i in range(4)], [[2, -1, -1]] * 4))
    assert len(ledger) == 5 and [f"b{i}" in ledger for i in range(4)] == [False] * 3 + [True]
    assert ledger.entry("b3").allowed == ("a", "b")  # type: ignore[union-attr]
    assert ledger.entry("c0").allowed == ("c",)  # type: ignore[union-attr]
    ledger.settle("b3", "b", registry, True, 1.0, None, None)
    ledger.remember_block(_block(["d0", "d1"], [[1, -1, -1]] * 2))
    assert len(ledger) == 5 and "c0" not in ledger and "d1" in ledger
    assert len(ledger._blocks) == 2  # b's block holds nothing open: released
    with refused("replayed"):
        ledger.settle("b3", "b", registry, True, 1.0, None, None)
