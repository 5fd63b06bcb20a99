from __future__ import annotations

import numpy as np
import pytest

from tinydancer import (
    AgentsUnavailableError,
    EmbeddingError,
    FeedbackError,
    InvalidRequestError,
    NoEligibleAgentError,
)
from tinydancer.agents.agent import Agent, CostModel
from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.breaker import BreakerConfig, BreakerState, CircuitBreaker
from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.kernel import score_agents
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.agents.types import AgentRequest, Constraints
from tinydancer.model.weights import load_model, shipped_model_path

MODEL = load_model(shipped_model_path("agent"))
NAMES = MODEL.feature_schema["agents"]
PRICES = MODEL.info["agent_mean_cost_usd"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make_router(
    *,
    explore: bool = True,
    seed: int = 0,
    breaker: CircuitBreaker | None = None,
    extra: list[Agent] | None = None,
    encoder=None,
    bandit_config: BanditConfig | None = None,
    **config,
) -> AgentRouter:
    registry = AgentRegistry(known_to_model=NAMES, bandit_config=bandit_config)
    for i, name in enumerate(NAMES):
        registry.register(
            Agent(
                name=name,
                capabilities=["chat"] + (["code"] if "code" in name else []),
                cost=CostModel(per_request_usd=PRICES[name]),
                expected_latency_ms=200 + 100 * i,
            )
        )
    for agent in extra or []:
        registry.register(agent)
    return AgentRouter(
        registry,
        breaker,
        AgentRouterConfig(explore=explore, seed=seed, warm=False, **config),
        model=MODEL,
        encoder=encoder,
    )


def embedding(seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_decision_has_every_field():
    router = make_router()
    decision = router.route(AgentRequest(embedding=embedding()))
    assert decision.agent in NAMES and len(decision.request_id) == 32
    assert 0 < decision.confidence <= 1 and decision.propensity == decision.confidence
    assert 0 <= decision.uncertainty <= 1 and 0 <= decision.expected_quality <= 1
    assert decision.estimated_cost_usd == pytest.approx(PRICES[decision.agent], rel=1e-5)
    assert decision.estimated_latency_ms == 200 + 100 * NAMES.index(decision.agent)
    assert decision.model_version == MODEL.version and decision.reason.startswith(decision.agent)
    alternatives = decision.alternatives
    assert 1 <= len(alternatives) <= 3 and decision.agent not in {a.agent for a in alternatives}
    assert [a.score for a in alternatives] == sorted((a.score for a in alternatives), reverse=True)
    assert all("cost" in a.reason for a in alternatives)
    body = decision.to_dict()
    assert {
        "request_id",
        "agent",
        "confidence",
        "uncertainty",
        "estimated_cost_usd",
        "estimated_latency_ms",
        "expected_quality",
        "similarity",
        "reason",
        "alternatives",
        "model_version",
    } <= set(body)


def test_objectives_pull_towards_cost_quality_and_latency():
    router = make_router(explore=False)
    e = embedding(1)
    cost = router.route(AgentRequest(embedding=e, optimize_for="cost"))
    # the cost objective lands on the cost-quality frontier, at its cheap end: no agent is
    # cheaper without being worse, and it is cheaper than the quality objective's choice
    for other in cost.alternatives:
        assert (
            PRICES[other.agent] >= PRICES[cost.agent]
            or other.expected_quality < cost.expected_quality
        )
    assert PRICES[cost.agent] < np.median(list(PRICES.values()))
    assert router.route(AgentRequest(embedding=e, optimize_for="latency")).agent == NAMES[0]
    quality = router.route(AgentRequest(embedding=e, optimize_for="quality"))
    all_q = {d.agent: d.expected_quality for d in [quality]} | {
        a.agent: a.expected_quality for a in quality.alternatives
    }
    assert quality.expected_quality == max(all_q.values())
    assert PRICES[cost.agent] < PRICES[quality.agent]


def test_willingness_to_pay_moves_along_the_frontier():
    router = make_router(explore=False)
    requests = [embedding(s) for s in range(40)]
    points = []
    for wtp in (1e-5, 1e-3, 1e-1, 1e2):
        decisions = router.route_batch(
            [
                AgentRequest(
                    embedding=e, willingness_to_pay=wtp, weights={"latency": 0.0, "similarity": 0.0}
                )
                for e in requests
            ]
        )
        points.append(
            (
                np.mean([d.estimated_cost_usd for d in decisions]),
                np.mean([d.expected_quality for d in decisions]),
            )
        )
    costs, qualities = zip(*points, strict=True)
    assert list(costs) == sorted(costs) and list(qualities) == sorted(qualities)
    assert costs[-1] > 10 * costs[0]


@pytest.mark.parametrize(
    ("constraints", "check"),
    [
        (Constraints(max_cost_usd=0.0005), lambda d: PRICES[d.agent] <= 0.0005),
        (Constraints(required_capabilities=frozenset({"CODE"})), lambda d: "code" in d.agent),
        (Constraints(excluded_agents=frozenset(NAMES[1:])), lambda d: d.agent == NAMES[0]),
        (Constraints(max_latency_ms=350), lambda d: NAMES.index(d.agent) <= 1),
        (Constraints(min_quality=0.8), lambda d: d.expected_quality >= 0.8),
    ],
    ids=["max-cost", "capability", "excluded", "max-latency", "min-quality"],
)
def test_constraints_are_respected(constraints, check):
    router = make_router()
    for seed in range(5):
        decision = router.route(
            AgentRequest(embedding=embedding(seed), optimize_for="quality", constraints=constraints)
        )
        assert check(decision), decision.reason
        assert all(
            check(
                type(decision)(
                    **{
                        **decision.__dict__,
                        "agent": a.agent,
                        "expected_quality": a.expected_quality,
                    }
                )
            )
            for a in decision.alternatives
            if constraints.required_capabilities or constraints.excluded_agents
        )


def test_no_eligible_agent_lists_what_excluded_whom():
    router = make_router()
    constraints = Constraints(max_cost_usd=0.0002, required_capabilities=frozenset({"code"}))
    with pytest.raises(NoEligibleAgentError) as info:
        router.route(AgentRequest(embedding=embedding(), constraints=constraints))
    excluded = info.value.excluded
    assert "meta/code-llama-instruct-34b-chat" in excluded["max_cost_usd"]
    assert set(excluded["required_capabilities"]) == {n for n in NAMES if "code" not in n}
    assert "max_cost_usd" in str(info.value) and "required_capabilities" in str(info.value)


def test_conversations_are_routed_on_the_whole_sequence():
    router = make_router(explore=False)
    a, b, c = embedding(1), embedding(2), embedding(3)
    forward = router.route(AgentRequest(messages=[a, b, c]))
    backward = router.route(AgentRequest(messages=[c, b, a]))
    single = router.route(AgentRequest(messages=[c]))
    assert (
        forward.model_quality != pytest.approx(backward.model_quality, abs=1e-6)
        or forward.agent != backward.agent
    )
    assert router.route(AgentRequest(embedding=c)).model_quality == pytest.approx(
        single.model_quality, abs=1e-6
    )
    # variable lengths in one batch (padding, masks) give the same answers as one by one
    conversations = [[a], [a, b], [a, b, c, a, b]]
    together = router.route_batch([AgentRequest(messages=m) for m in conversations])
    alone = [router.route(AgentRequest(messages=m)) for m in conversations]
    for x, y in zip(together, alone, strict=True):
        assert x.agent == y.agent and x.model_quality == pytest.approx(y.model_quality, abs=1e-6)


def test_long_conversations_keep_their_latest_messages():
    router = make_router(explore=False, max_messages=2)
    a, b, c = embedding(1), embedding(2), embedding(3)
    assert router.route(AgentRequest(messages=[a, b, c])).model_quality == pytest.approx(
        router.route(AgentRequest(messages=[b, c])).model_quality, abs=1e-6
    )


@pytest.mark.parametrize(
    ("request_", "error", "field"),
    [
        (AgentRequest(), InvalidRequestError, "embedding"),
        (AgentRequest(embedding=[0.1] * 10), EmbeddingError, "embedding"),
        (AgentRequest(embedding=[float("nan")] * 384), EmbeddingError, "embedding"),
        (AgentRequest(messages=[]), InvalidRequestError, "messages"),
        (AgentRequest(messages=[[1.0] * 384, [1.0] * 12]), EmbeddingError, r"messages\[1\]"),
        (
            AgentRequest(embedding=[1.0] * 384, optimize_for="speed"),
            InvalidRequestError,
            "optimize_for",
        ),
        (AgentRequest(embedding=[1.0] * 384, weights={"price": 1}), InvalidRequestError, "weights"),
        (
            AgentRequest(embedding=[1.0] * 384, willingness_to_pay=-1),
            InvalidRequestError,
            "willingness_to_pay",
        ),
        (
            AgentRequest(embedding=[1.0] * 384, expected_tokens=float("inf")),
            InvalidRequestError,
            "expected_tokens",
        ),
    ],
    ids=[
        "nothing",
        "dimension",
        "nan",
        "empty-conversation",
        "bad-message",
        "objective",
        "weights",
        "wtp",
        "tokens",
    ],
)
def test_bad_requests_name_the_field(request_, error, field):
    with pytest.raises(error, match=field):
        make_router().route(request_)


def test_bad_constraints_are_refused_at_construction():
    with pytest.raises(InvalidRequestError, match=r"constraints\.min_quality"):
        Constraints(min_quality=2.0)
    with pytest.raises(InvalidRequestError, match=r"constraints\.max_cost_usd"):
        Constraints(max_cost_usd=-1.0)


def test_open_circuits_are_skipped_and_the_caller_learns_why():
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(consecutive_failures=2, cooldown_s=10), clock=clock)
    router = make_router(breaker=breaker, explore=False)
    e = embedding()
    first = router.route(AgentRequest(embedding=e, optimize_for="quality"))
    for _ in range(2):
        decision = router.route(AgentRequest(embedding=e, optimize_for="quality"))
        router.record_outcome(decision.request_id, decision.agent, success=False, latency_ms=100)
    assert breaker.state(first.agent) is BreakerState.OPEN
    failover = router.route(AgentRequest(embedding=e, optimize_for="quality"))
    assert failover.agent != first.agent
    only = Constraints(excluded_agents=frozenset(set(NAMES) - {first.agent}))
    with pytest.raises(AgentsUnavailableError, match=first.agent.replace("/", ".")):
        router.route(AgentRequest(embedding=e, constraints=only))
    clock.now += 11  # cooldown over: half-open admits a probe
    assert router.route(AgentRequest(embedding=e, constraints=only)).agent == first.agent


def test_a_fallback_agent_serves_when_nothing_is_eligible():
    router = make_router(fallback_agent=NAMES[0])
    decision = router.route(
        AgentRequest(embedding=embedding(), constraints=Constraints(max_cost_usd=0.0))
    )
    assert decision.agent == NAMES[0] and decision.fallback and "fallback" in decision.reason


def test_half_open_probes_are_limited_by_the_budget():
    clock = Clock()
    breaker = CircuitBreaker(
        BreakerConfig(consecutive_failures=1, cooldown_s=5, probe_budget=2), clock=clock
    )
    router = make_router(breaker=breaker, explore=False)
    target = NAMES[5]
    breaker.record(target, success=False)
    clock.now += 6
    only = Constraints(excluded_agents=frozenset(set(NAMES) - {target}))
    routed = [
        router.route(AgentRequest(embedding=embedding(i), constraints=only)).agent for i in range(2)
    ]
    assert routed == [target, target]
    with pytest.raises(AgentsUnavailableError):
        router.route(AgentRequest(embedding=embedding(9), constraints=only))


def test_a_half_open_agent_gets_its_probes_even_when_others_score_higher():
    """Without probes an avoided agent would never be tried again and its circuit never closed."""
    clock = Clock()
    breaker = CircuitBreaker(
        BreakerConfig(consecutive_failures=1, cooldown_s=5, probe_budget=2, successes_to_close=2),
        clock=clock,
    )
    router = make_router(breaker=breaker, explore=False)
    e = embedding()
    usual = router.route(AgentRequest(embedding=e, optimize_for="quality")).agent
    target = next(n for n in NAMES if n != usual)  # an agent the scores do not pick
    breaker.record(target, success=False)
    clock.now += 6  # half-open: two probe permits
    excluding = Constraints(excluded_agents=frozenset({target}))
    assert router.route(AgentRequest(embedding=e, constraints=excluding)).agent != target
    only = AgentRequest(constraints=Constraints(excluded_agents=frozenset(set(NAMES) - {target})))
    bulk = router.route_embeddings(np.stack([embedding(i) for i in range(4)]), only)
    assert (bulk.agent_index == -1).all()  # bulk rows never probe, even with a permit held
    probes = [router.route(AgentRequest(embedding=e, optimize_for="quality")) for _ in range(2)]
    for probe in probes:
        assert probe.agent == target and probe.probe and probe.propensity == 1.0
        assert "half-open" in probe.reason and probe.to_dict()["probe"] is True
        assert probe.alternatives[0].agent == usual  # the usual choice, for a client's failover
    after = router.route(AgentRequest(embedding=e, optimize_for="quality"))
    assert after.agent == usual and not after.probe  # the budget is spent
    for probe in probes:
        router.record_outcome(probe.request_id, target, success=True, quality=1.0)
    assert breaker.state(target) is BreakerState.CLOSED


def test_feedback_is_accepted_once_for_the_chosen_agent_or_an_alternative():
    router = make_router()
    decision = router.route(AgentRequest(embedding=embedding()))
    with pytest.raises(FeedbackError, match="neither chosen nor offered") as info:
        router.record_outcome(decision.request_id, "someone-else", success=True)
    assert info.value.reason == "agent_mismatch"
    router.record_outcome(
        decision.request_id, decision.alternatives[0].agent, success=True, quality=1.0
    )
    with pytest.raises(FeedbackError, match="already recorded") as replay:
        router.record_outcome(decision.request_id, decision.agent, success=True)
    assert replay.value.reason == "replayed"
    with pytest.raises(FeedbackError) as unknown:
        router.record_outcome("f" * 32, decision.agent, success=True)
    assert unknown.value.reason == "unknown_request"
    assert router.registry.metrics(decision.alternatives[0].agent).requests == 1
    assert router.ledger.refused == {"unknown_request": 1, "replayed": 1, "agent_mismatch": 1}


# The plain posterior's spread (no "the model is right" mixture), so that Thompson draws
# decide between near-ties often enough to tell two seeds apart.
PLAIN = BanditConfig(model_doubt=1.0)


def test_routing_is_deterministic_given_the_seed():
    def run(seed: int) -> list[str]:
        router = make_router(seed=seed, bandit_config=PLAIN)
        # at this knob the agents are near-ties, so the Thompson draws decide often
        return [
            router.route(AgentRequest(embedding=embedding(i), willingness_to_pay=0.12)).agent
            for i in range(30)
        ]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_exploration_spreads_traffic_and_propensities_are_probabilities():
    router = make_router(seed=1, bandit_config=PLAIN)
    decisions = [  # at 0.044 USD per unit quality gpt-4 and Yi-34B tie for this prompt
        router.route(AgentRequest(embedding=embedding(0), willingness_to_pay=0.044))
        for _ in range(200)
    ]
    chosen = {d.agent for d in decisions}
    assert len(chosen) >= 2
    assert all(0 < d.propensity <= 1 for d in decisions)
    # the logged propensity estimates the empirical choice frequency
    for agent in chosen:
        share = np.mean([d.agent == agent for d in decisions])
        mean_propensity = np.mean([d.propensity for d in decisions if d.agent == agent])
        assert abs(share - mean_propensity) < 0.25
    greedy = make_router(explore=False)
    assert greedy.route(AgentRequest(embedding=embedding(0))).propensity == 1.0


def test_a_failing_agent_loses_its_traffic():
    router = make_router(seed=2)
    e = embedding(5)

    def block(failing: str | None) -> list[str]:
        picks = []
        for _ in range(50):
            d = router.route(AgentRequest(embedding=e, willingness_to_pay=0.12))
            quality = 0.0 if d.agent == failing else 0.9
            router.record_outcome(d.request_id, d.agent, success=quality > 0.5, quality=quality)
            picks.append(d.agent)
        return picks

    first = block(None)
    favourite = max(set(first), key=first.count)
    assert first.count(favourite) / 50 > 0.3
    shares = [block(favourite).count(favourite) / 50 for _ in range(5)]
    assert shares[-1] < 0.1, shares


def test_a_new_agent_starts_from_its_prior_and_is_explored():
    newcomer = Agent(name="newcomer", expected_quality=0.97, cost=CostModel(per_request_usd=0.0003))
    router = make_router(extra=[newcomer], seed=0)
    picks = [
        router.route(AgentRequest(embedding=embedding(i), willingness_to_pay=0.12)).agent
        for i in range(60)
    ]
    assert "newcomer" in picks
    decision = router.route(
        AgentRequest(
            embedding=embedding(0), constraints=Constraints(excluded_agents=frozenset(NAMES))
        )
    )
    assert (
        decision.agent == "newcomer"
        and decision.uncertainty == 1.0
        and decision.model_quality == 0.0
    )


def test_specialisation_embeddings_report_similarity():
    target = embedding(7)
    expert = Agent(name="expert", specialization=tuple(target.tolist()), expected_quality=0.9)
    router = make_router(extra=[expert])
    decision = router.route(
        AgentRequest(embedding=target, constraints=Constraints(excluded_agents=frozenset(NAMES)))
    )
    assert decision.similarity == pytest.approx(1.0, abs=1e-5)


def test_steady_traffic_does_not_recompile():
    router = make_router()
    for size in (1, 2, 3, 7, 13, 20):  # every bucket up to 32: 1, 2, 4, 8, 16, 32
        router.route_batch([AgentRequest(embedding=embedding(i)) for i in range(size)])
    compiled = score_agents._cache_size()
    for size in (1, 2, 5, 8, 13, 31):
        router.route_batch([AgentRequest(embedding=embedding(i)) for i in range(size)])
    assert score_agents._cache_size() == compiled


def test_warm_compiles_the_shapes_it_names_and_changes_no_routing_state():
    """What a server warms in the background: every kernel shape a batch of up to 32
    (or a conversation of up to 8 messages) needs, with no decision made, so a half-open
    agent keeps its probe permit and the seeded draw stream is where it was."""
    router = make_router(seed=7)
    router.warm(batches=(1, 2, 4, 8, 16, 32), steps=(2, 4, 8))
    compiled = score_agents._cache_size()
    for size in (1, 2, 3, 5, 9, 17, 32):
        requests = [AgentRequest(embedding=embedding(i)) for i in range(size)]
        router.route_batch(requests, remember=False)
    for length in (2, 3, 5, 8):
        conversation = AgentRequest(messages=[embedding(i) for i in range(length)])
        router.route_batch([conversation], remember=False)
    assert score_agents._cache_size() == compiled  # nothing left to compile after warm

    warmed, cold = make_router(seed=11), make_router(seed=11)
    warmed.warm()
    requests = [AgentRequest(embedding=embedding(i)) for i in range(20)]
    assert [d.agent for d in warmed.route_batch(requests)] == [
        d.agent for d in cold.route_batch(requests)
    ]
    assert [warmed.route(r).agent for r in requests[:5]] == [
        cold.route(r).agent for r in requests[:5]
    ]

    clock = Clock()
    breaker = CircuitBreaker(
        BreakerConfig(consecutive_failures=1, cooldown_s=5, probe_budget=1, successes_to_close=1),
        clock=clock,
    )
    probing = make_router(breaker=breaker)
    target = NAMES[3]
    breaker.record(target, success=False)
    clock.now += 6  # half-open, one probe permit
    probing.warm()
    assert breaker.state(target) is BreakerState.HALF_OPEN
    only = Constraints(excluded_agents=frozenset(set(NAMES) - {target}))
    assert probing.route(AgentRequest(embedding=embedding(0), constraints=only)).probe


def test_registry_changes_reach_the_next_decision():
    router = make_router(explore=False)
    e = embedding()
    chosen = router.route(AgentRequest(embedding=e, optimize_for="quality")).agent
    router.registry.set_active(chosen, False)
    assert router.route(AgentRequest(embedding=e, optimize_for="quality")).agent != chosen


def test_columnar_routing_matches_one_by_one_and_remembers_for_feedback():
    router = make_router(explore=False)
    block = np.stack([embedding(i) for i in range(50)])
    columns = router.route_embeddings(block, AgentRequest(willingness_to_pay=0.12))
    single = [router.route(AgentRequest(embedding=e, willingness_to_pay=0.12)) for e in block]
    assert columns.agents == [d.agent for d in single]
    np.testing.assert_allclose(
        columns.expected_quality, [d.expected_quality for d in single], rtol=1e-5
    )
    assert [list(a) for a in columns.alternatives] == [
        [alt.agent for alt in d.alternatives] for d in single
    ]
    assert len(set(columns.request_ids)) == 50 and len(columns.to_dict()["agent"]) == 50
    # the ledger holds what the one-by-one path would: allowed agents and model predictions
    for i in (0, 17, 49):
        batch_entry = router.ledger.check(columns.request_ids[i], columns.agents[i])
        single_entry = router.ledger.check(single[i].request_id, single[i].agent)
        assert batch_entry.allowed == single_entry.allowed
        assert batch_entry.model_quality == pytest.approx(single_entry.model_quality, rel=1e-5)
    router.record_outcome(columns.request_ids[3], columns.agents[3], success=True, quality=1.0)
    with pytest.raises(FeedbackError, match="neither chosen nor offered"):
        offered = {columns.agents[4], *columns.alternatives[4]}
        outsider = next(n for n in NAMES if n not in offered)
        router.record_outcome(columns.request_ids[4], outsider, success=True, quality=1.0)
    with pytest.raises(InvalidRequestError, match=r"embeddings\[1\]"):
        router.route_embeddings(np.stack([embedding(0), np.zeros(384, np.float32)]))


def test_columnar_routing_with_fewer_than_four_eligible_agents():
    router = make_router(explore=False)
    keep = NAMES[:2]
    template = AgentRequest(constraints=Constraints(excluded_agents=frozenset(NAMES[2:])))
    columns = router.route_embeddings(np.stack([embedding(i) for i in range(8)]), template)
    assert set(columns.agents) <= set(keep)
    for i, agent in enumerate(columns.agents):
        assert columns.alternatives[i] == tuple(n for n in keep if n != agent)
        assert router.ledger.check(columns.request_ids[i], agent).allowed == (
            agent,
            *columns.alternatives[i],
        )


def test_the_full_ranking_lists_every_eligible_agent_best_first_with_model_qualities():
    router = make_router(explore=False)
    excluded = frozenset(NAMES[:2])
    decision = router.route(
        AgentRequest(embedding=embedding(3), constraints=Constraints(excluded_agents=excluded))
    )
    ranking = decision.ranking
    names = [name for name, _ in ranking]
    assert names[0] == decision.agent and len(names) == len(NAMES) - 2 > 4
    assert set(names) == set(NAMES) - excluded
    assert names[1:4] == [a.agent for a in decision.alternatives]
    scores = {a.agent: a.score for a in decision.alternatives}
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert all(q is not None and 0 <= q <= 1 for _, q in ranking)  # the model knows them all
    assert dict(ranking)[decision.agent] == pytest.approx(decision.model_quality)


def test_a_specialization_of_the_wrong_length_is_refused_and_routing_goes_on():
    registry = AgentRegistry.for_model(MODEL)
    router = AgentRouter(registry, config=AgentRouterConfig(warm=False))
    bad = Agent(name="short-specialist", specialization=tuple([1.0] * 10))
    with pytest.raises(InvalidRequestError) as err:
        registry.register(bad)
    assert err.value.field == "specialization"
    assert "10 values" in str(err.value) and "384 values" in str(err.value)
    with pytest.raises(InvalidRequestError):
        registry.update(NAMES[0], specialization=[1.0] * 10)
    assert "short-specialist" not in registry
    request = AgentRequest(embedding=np.ones(MODEL.embedding.dim, np.float32))
    assert router.route(request).agent in NAMES


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3e38, r"values so large \(max \|x\| = 3e\+38\) that the squared norm overflows"),
        (1e-40, r"values so small \(denormal max \|x\| = 1e-40\) that the squared norm underflows"),
        (np.nan, "NaN or inf"),
        (0.0, "the zero vector"),
    ],
    ids=["huge", "denormal", "nan", "zero"],
)
def test_unusable_embeddings_are_named_for_what_they_are(value, message):
    router = make_router()
    vector = np.full(384, value, np.float32)
    with pytest.raises(InvalidRequestError, match=message):
        router.route(AgentRequest(embedding=vector))
    with pytest.raises(InvalidRequestError, match=r"embeddings\[1\].*" + message):
        router.route_embeddings(np.stack([embedding(), vector]))
