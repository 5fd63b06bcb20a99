"""tinydancer.agents.registry and tinydancer.agents.agent: agents, validation, metrics, persistence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from tinydancer.agents import bandit
from tinydancer.agents.agent import Agent, AgentType, CostModel
from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.sketch import decay_for_half_life
from tinydancer.errors import (
    DuplicateAgentError,
    InvalidRequestError,
    TinyDancerError,
    UnknownAgentError,
)

CONFIG = BanditConfig(
    half_life_outcomes=200.0,
    noise_sd=0.45,
    prior_sd_offset=0.1,
    prior_sd_slope=0.25,
    unknown_prior_sd=0.25,
    exploration=1.0,
)


@pytest.fixture
def registry() -> AgentRegistry:
    registry = AgentRegistry(bandit_config=CONFIG, recent_half_life_outcomes=50)
    registry.register(
        Agent(
            name="gpt-mini", capabilities=["Chat", "code"], cost=CostModel(per_1k_tokens_usd=0.0006)
        )
    )
    registry.register(
        Agent(name="vision-x", type=AgentType.VISION, capabilities=["vision", "chat"])
    )
    registry.register(Agent(name="coder", capabilities=["code"], expected_quality=0.8))
    return registry


def mean_of(registry: AgentRegistry, name: str) -> np.ndarray:
    return bandit.posterior_mean(registry.posterior(name))


# -- Agent validation --------------------------------------------------------------------


def test_capabilities_are_lowercased_stripped_and_deduplicated():
    agent = Agent(name="a", capabilities=["Chat", " chat ", "CODE"])
    assert agent.capabilities == frozenset({"chat", "code"})
    assert agent.has_capabilities(frozenset({"code"}))
    assert not agent.has_capabilities(frozenset({"code", "vision"}))


@pytest.mark.parametrize(
    ("capabilities", "message"),
    [
        ("chat", "not one string"),
        (["chat", ""], "non-empty"),
        (["chat", "  "], "non-empty"),
        (["chat", 3], "non-empty"),
    ],
    ids=["bare-string", "empty", "blank", "not-a-string"],
)
def test_bad_capabilities_are_rejected(capabilities, message):
    with pytest.raises(ValidationError, match=message):
        Agent(name="a", capabilities=capabilities)


@pytest.mark.parametrize(
    ("vector", "unit"),
    [((3.0, 4.0), (0.6, 0.8)), ((0.0, -2.0, 0.0), (0.0, -1.0, 0.0)), ((1e-8,), (1.0,))],
    ids=["3-4-5", "negative-axis", "tiny"],
)
def test_specialization_is_normalised(vector, unit):
    agent = Agent(name="a", specialization=vector)
    assert agent.specialization == pytest.approx(unit)
    assert math.fsum(v * v for v in agent.specialization) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "vector",
    [(0.0, 0.0), (math.nan, 1.0), (math.inf, 1.0), ()],
    ids=["zero", "nan", "inf", "empty"],
)
def test_degenerate_specialization_is_rejected(vector):
    with pytest.raises(ValidationError, match="finite, non-zero"):
        Agent(name="a", specialization=vector)


@pytest.mark.parametrize(
    "name",
    ["gpt-4o-mini", "org/model:v1", "claude@2024+x", "a_b.c", "x" * 200],
    ids=["dashes", "slash-colon", "at-plus", "underscore-dot", "200-chars"],
)
def test_good_names_are_accepted(name):
    assert Agent(name=name).name == name


@pytest.mark.parametrize(
    "name",
    ["", "has space", "a*b", "semi;colon", "trailing\n", "x" * 201],
    ids=["empty", "space", "star", "semicolon", "trailing-newline", "201-chars"],
)
def test_bad_names_are_rejected(name):
    with pytest.raises(ValidationError, match="name"):
        Agent(name=name)


@pytest.mark.parametrize(
    "bad",
    [
        {"expected_quality": 1.1},
        {"expected_quality": -0.1},
        {"expected_latency_ms": 0.0},
        {"type": "oracle"},
        {"colour": "red"},
    ],
    ids=["quality-high", "quality-low", "latency-zero", "type", "unknown-field"],
)
def test_bad_agent_fields_are_rejected(bad):
    with pytest.raises(ValidationError, match=next(iter(bad))):
        Agent(name="a", **bad)


def test_agents_are_frozen():
    agent = Agent(name="a")
    with pytest.raises(ValidationError):
        agent.active = False


@pytest.mark.parametrize(
    ("per_request", "per_1k", "tokens", "expected"),
    [
        (0.01, 0.0, None, 0.01),
        (0.01, 0.0, 5_000, 0.01),
        (0.001, 0.002, 1_500, 0.004),
        (0.0, 0.002, 0, 0.0),
        (0.001, 0.002, None, None),
        (0.0, 0.0, None, 0.0),
    ],
    ids=[
        "flat-no-tokens",
        "flat-ignores-tokens",
        "per-token",
        "zero-tokens",
        "unknown-tokens",
        "free",
    ],
)
def test_cost_estimate(per_request, per_1k, tokens, expected):
    cost = CostModel(per_request_usd=per_request, per_1k_tokens_usd=per_1k, monthly_fixed_usd=99.0)
    result = cost.estimate(tokens)
    assert result == (None if expected is None else pytest.approx(expected, rel=1e-12))


@pytest.mark.parametrize("field", ["per_request_usd", "per_1k_tokens_usd", "monthly_fixed_usd"])
def test_negative_prices_are_rejected(field):
    with pytest.raises(ValidationError, match=field):
        CostModel(**{field: -0.01})


def test_public_description_is_json_ready():
    agent = Agent(name="a", capabilities=["b", "A"], specialization=(1.0, 1.0), metadata={"k": 1})
    public = json.loads(json.dumps(agent.public()))
    assert public["capabilities"] == ["a", "b"]
    assert public["has_specialization"] is True
    assert "specialization" not in public
    assert public["type"] == "llm"


# -- registry: agents --------------------------------------------------------------------


def test_register_and_get(registry):
    assert len(registry) == 3
    assert "coder" in registry and "nobody" not in registry
    assert registry.get("coder").expected_quality == 0.8
    assert [a.name for a in registry.list()] == ["gpt-mini", "vision-x", "coder"]


def test_duplicate_registration_names_the_agent(registry):
    version = registry.version
    with pytest.raises(DuplicateAgentError, match=r"'coder' is already registered") as info:
        registry.register(Agent(name="coder"))
    assert info.value.agent == "coder"
    assert registry.version == version
    assert registry.get("coder").expected_quality == 0.8  # the original is kept


def test_unknown_agent_lists_the_registered_ones(registry):
    with pytest.raises(UnknownAgentError) as info:
        registry.get("nobody")
    assert str(info.value) == (
        "agent 'nobody' is not registered; registered agents: ['coder', 'gpt-mini', 'vision-x']"
    )
    assert isinstance(info.value, KeyError) and isinstance(info.value, TinyDancerError)
    assert info.value.agent == "nobody"


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.remove("nobody"),
        lambda r: r.update("nobody", active=False),
        lambda r: r.set_active("nobody", False),
        lambda r: r.metrics("nobody"),
        lambda r: r.posterior("nobody"),
        lambda r: r.stats("nobody"),
        lambda r: r.record_outcome("req", "nobody", True),
    ],
    ids=["remove", "update", "set_active", "metrics", "posterior", "stats", "record_outcome"],
)
def test_every_lookup_refuses_unknown_agents(registry, call):
    version = registry.version
    with pytest.raises(UnknownAgentError, match="nobody"):
        call(registry)
    assert registry.version == version


def test_update_changes_fields_and_keeps_learning(registry):
    registry.record_outcome("r1", "coder", True, quality=0.9)
    metrics, posterior = registry.metrics("coder"), registry.posterior("coder")
    updated = registry.update("coder", capabilities=["Code", "REVIEW"], expected_latency_ms=900.0)
    assert updated.capabilities == frozenset({"code", "review"})  # validated like a new agent
    assert registry.get("coder") is updated
    assert registry.get("coder").expected_quality == 0.8  # untouched fields stay
    assert registry.metrics("coder") is metrics and registry.posterior("coder") is posterior


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"expected_quality": 2.0}, "expected_quality"),
        ({"capabilities": "chat"}, "capabilities"),
        ({"cost": {"per_request_usd": -1.0}}, "cost.per_request_usd"),
        ({"specialization": (0.0, 0.0)}, "specialization"),
        ({"colour": "red"}, "colour"),
    ],
    ids=["quality", "capabilities", "nested-cost", "specialization", "unknown-field"],
)
def test_invalid_update_names_the_field(registry, changes, field):
    before, version = registry.get("coder"), registry.version
    with pytest.raises(InvalidRequestError) as info:
        registry.update("coder", **changes)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: got ")
    assert registry.get("coder") is before and registry.version == version


def test_renaming_is_refused(registry):
    with pytest.raises((TypeError, InvalidRequestError)):
        registry.update("coder", **{"name": "coder-2"})
    assert "coder-2" not in registry and "coder" in registry


def test_renaming_is_refused_with_an_invalid_request_error(registry):
    with pytest.raises(InvalidRequestError, match="cannot be renamed") as info:
        registry.update("coder", **{"name": "coder-2"})
    assert info.value.field == "name"


def test_remove(registry):
    removed = registry.remove("vision-x")
    assert removed.name == "vision-x"
    assert "vision-x" not in registry and len(registry) == 2
    with pytest.raises(UnknownAgentError, match=r"registered agents: \['coder', 'gpt-mini'\]"):
        registry.get("vision-x")
    registry.register(Agent(name="vision-x"))  # the name is free again, with fresh metrics
    assert registry.metrics("vision-x").requests == 0


def test_set_active_and_list(registry):
    registry.set_active("gpt-mini", False)
    assert registry.get("gpt-mini").active is False
    assert [a.name for a in registry.list(active_only=True)] == ["vision-x", "coder"]
    assert len(registry.list()) == 3
    registry.set_active("gpt-mini", True)
    assert len(registry.list(active_only=True)) == 3


@pytest.mark.parametrize(
    ("capability", "names"),
    [
        ("chat", ["gpt-mini", "vision-x"]),
        ("CHAT", ["gpt-mini", "vision-x"]),
        ("  Code ", ["gpt-mini", "coder"]),
        ("audio", []),
    ],
    ids=["lower", "upper", "padded-mixed", "none"],
)
def test_find_by_capability_ignores_case(registry, capability, names):
    assert [a.name for a in registry.find_by_capability(capability)] == names


def test_find_by_capability_skips_inactive_agents_unless_asked(registry):
    registry.set_active("coder", False)
    assert [a.name for a in registry.find_by_capability("code")] == ["gpt-mini"]
    found = registry.find_by_capability("code", active_only=False)
    assert [a.name for a in found] == ["gpt-mini", "coder"]


def test_version_counts_every_change(registry):
    version = registry.version
    assert version == 3  # three registrations
    registry.update("coder", expected_latency_ms=500.0)
    registry.set_active("coder", False)
    registry.record_outcome("r1", "coder", True)
    registry.set_known_to_model(["coder"])
    registry.remove("coder")
    assert registry.version == version + 5
    for refused in (
        lambda: registry.register(Agent(name="gpt-mini")),
        lambda: registry.update("gpt-mini", expected_quality=3.0),
        lambda: registry.record_outcome("r2", "gpt-mini", True, quality=7.0),
    ):
        with pytest.raises(TinyDancerError):
            refused()
    assert registry.version == version + 5


# -- registry: outcomes and metrics ------------------------------------------------------


def test_metrics_of_many_outcomes():
    rng = np.random.default_rng(0)
    n = 3_000
    latency = rng.lognormal(math.log(400.0), 0.8, n)
    quality = rng.uniform(0, 1, n)
    cost = rng.uniform(0, 0.002, n)
    success = rng.random(n) < 0.8
    registry = AgentRegistry(bandit_config=CONFIG)
    registry.register(Agent(name="a"))
    for i in range(n):
        registry.record_outcome(
            f"r{i}", "a", bool(success[i]), float(latency[i]), float(quality[i]), float(cost[i])
        )
    metrics = registry.stats("a")["metrics"]
    assert metrics["requests"] == n
    assert metrics["success_rate"] == success.mean()
    assert metrics["mean_quality"] == pytest.approx(quality.mean(), rel=1e-12)
    assert metrics["cost_total_usd"] == pytest.approx(cost.sum(), rel=1e-12)
    assert metrics["mean_cost_usd"] == pytest.approx(cost.mean(), rel=1e-12)
    assert metrics["latency_ms"]["mean"] == pytest.approx(latency.mean(), rel=1e-12)
    for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        true = np.percentile(latency, q, method="inverted_cdf")
        assert metrics["latency_ms"][key] == pytest.approx(true, rel=0.02), key
    assert registry.posterior("a").outcomes == n


def test_optional_fields_only_count_when_given(registry):
    registry.record_outcome("r1", "coder", True)
    registry.record_outcome("r2", "coder", False, latency_ms=100.0)
    metrics = registry.stats("coder")["metrics"]
    assert metrics["requests"] == 2
    assert metrics["success_rate"] == 0.5
    assert metrics["mean_quality"] is None and metrics["mean_cost_usd"] is None
    assert metrics["cost_total_usd"] == 0.0
    assert metrics["latency_ms"]["mean"] == 100.0
    assert metrics["latency_ms"]["p50"] == pytest.approx(100.0, rel=0.02)


def test_fresh_agent_has_empty_metrics(registry):
    metrics = registry.stats("coder")["metrics"]
    assert metrics["requests"] == 0
    assert metrics["success_rate"] is None
    assert metrics["latency_ms"] == {"mean": None, "p50": None, "p95": None, "p99": None}
    assert metrics["recent"]["effective_outcomes"] == 0.0


def test_recent_metrics_reflect_drift():
    """500 good fast cheap outcomes, then 300 bad slow expensive ones (recent half-life 50)."""
    registry = AgentRegistry(bandit_config=CONFIG, recent_half_life_outcomes=50)
    registry.register(Agent(name="a"))
    rng = np.random.default_rng(1)
    success = np.r_[np.arange(500) % 20 != 0, np.arange(300) % 5 == 0]  # 95 % then 20 %
    latency = np.r_[rng.lognormal(math.log(100), 0.1, 500), rng.lognormal(math.log(1000), 0.1, 300)]
    quality = np.r_[np.full(500, 0.9), np.full(300, 0.2)]
    cost = np.r_[np.full(500, 0.001), np.full(300, 0.01)]
    for i in range(800):
        registry.record_outcome(
            f"r{i}", "a", bool(success[i]), float(latency[i]), float(quality[i]), float(cost[i])
        )
    metrics = registry.stats("a")["metrics"]
    recent = metrics["recent"]
    decay = decay_for_half_life(50)
    weights = decay ** np.arange(800)[::-1]  # the newest outcome weighs 1
    for key, values in (
        ("success_rate", success),
        ("mean_quality", quality),
        ("mean_cost_usd", cost),
    ):
        assert recent[key] == pytest.approx(np.average(values, weights=weights), rel=1e-9), key
    assert recent["latency_ms"]["mean"] == pytest.approx(
        np.average(latency, weights=weights), rel=1e-9
    )
    assert recent["effective_outcomes"] == pytest.approx(weights.sum(), rel=1e-9)
    # the drift shows in the recent figures, while the lifetime ones lag
    assert recent["success_rate"] < 0.25 < 0.6 < metrics["success_rate"]
    assert recent["mean_quality"] < 0.25 < 0.6 < metrics["mean_quality"]
    assert recent["latency_ms"]["p50"] == pytest.approx(1000.0, rel=0.05)
    assert metrics["latency_ms"]["p50"] == pytest.approx(100.0, rel=0.1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latency_ms", -1.0),
        ("latency_ms", math.nan),
        ("latency_ms", "fast"),
        ("quality", 1.5),
        ("quality", -0.1),
        ("quality", math.nan),
        ("quality", "0.5"),
        ("cost_usd", -0.01),
        ("model_quality", 2.0),
        ("success", "yes"),
        ("success", 1),
    ],
    ids=[
        "latency-negative",
        "latency-nan",
        "latency-string",
        "quality-high",
        "quality-low",
        "quality-nan",
        "quality-string",
        "cost-negative",
        "model-quality-high",
        "success-string",
        "success-int",
    ],
)
def test_invalid_outcome_values_name_the_field(registry, field, value):
    version = registry.version
    args = {"success": True, field: value}
    with pytest.raises(InvalidRequestError) as info:
        registry.record_outcome("req-7", "coder", **args)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: got {value!r}")
    assert "req-7" in str(info.value)
    assert registry.version == version
    assert registry.metrics("coder").requests == 0
    assert registry.posterior("coder").outcomes == 0


@pytest.mark.parametrize("field", ["latency_ms", "cost_usd"])
def test_infinite_outcome_values_are_rejected_cleanly(registry, field):
    with pytest.raises(InvalidRequestError) as info:
        registry.record_outcome("req-8", "coder", True, quality=0.5, **{field: math.inf})
    assert info.value.field == field
    assert registry.metrics("coder").requests == 0


def test_outcomes_update_the_posterior(registry):
    prior_mean = mean_of(registry, "coder")
    assert prior_mean == pytest.approx([0.8, 0.0], abs=1e-9)  # expected_quality prior
    for i in range(20):
        registry.record_outcome(f"r{i}", "coder", False)  # quality defaults to 0.0 from success
    assert mean_of(registry, "coder")[0] < 0.5
    assert registry.posterior("coder").outcomes == 20


# -- registry: model knowledge and persistence -------------------------------------------


def test_set_known_to_model_resets_only_fresh_agents(registry):
    registry.record_outcome("r1", "gpt-mini", True, quality=0.9)
    learnt = registry.posterior("gpt-mini")
    registry.set_known_to_model(["gpt-mini", "coder"])
    assert registry.posterior("gpt-mini") is learnt  # has outcomes: kept
    assert mean_of(registry, "coder") == pytest.approx([0.0, 1.0], abs=1e-9)  # model-trusting
    assert mean_of(registry, "vision-x") == pytest.approx([0.5, 0.0], abs=1e-9)  # not known
    registry.set_known_to_model([])
    assert mean_of(registry, "coder") == pytest.approx([0.8, 0.0], abs=1e-9)


def test_known_agents_learn_a_slope_from_model_quality():
    registry = AgentRegistry(bandit_config=CONFIG, known_to_model=["known"])
    registry.register(Agent(name="known"))
    registry.register(Agent(name="unknown"))
    for i in range(200):
        p_model = (i % 10) / 10
        for name in ("known", "unknown"):
            registry.record_outcome(
                f"{name}{i}", name, True, quality=0.5 * p_model, model_quality=p_model
            )
    assert mean_of(registry, "known")[1] < 0.9  # the slope moved from the prior's 1.0
    assert mean_of(registry, "unknown")[1] == pytest.approx(0.0, abs=1e-3)  # no model context


def busy_registry() -> AgentRegistry:
    rng = np.random.default_rng(2)
    registry = AgentRegistry(
        bandit_config=CONFIG, recent_half_life_outcomes=50, known_to_model=["a"]
    )
    registry.register(
        Agent(
            name="a",
            capabilities=["chat"],
            specialization=(1.0, 2.0),
            cost=CostModel(per_1k_tokens_usd=0.001),
            metadata={"tier": "gold"},
        )
    )
    registry.register(Agent(name="b", expected_quality=0.7, active=False))
    registry.register(Agent(name="c"))
    for i in range(600):
        registry.record_outcome(
            f"r{i}",
            "ab"[i % 2],
            bool(rng.random() < 0.8),
            float(rng.lognormal(5, 1)),
            float(rng.random()),
            float(rng.random() * 1e-3),
            model_quality=float(rng.random()),
        )
    return registry


def flatten(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}.{key}")
    elif isinstance(tree, list) and tree and isinstance(tree[0], dict | list):
        for i, value in enumerate(tree):
            yield from flatten(value, f"{prefix}[{i}]")
    else:
        yield prefix, tree


def test_snapshot_is_json_and_restore_reproduces_stats():
    registry = busy_registry()
    text = json.dumps(registry.snapshot(), allow_nan=False)
    restored = AgentRegistry.restore(json.loads(text))
    assert restored.version == registry.version
    assert restored.known_to_model == registry.known_to_model
    assert restored.recent_decay == registry.recent_decay
    assert restored.bandit_config == registry.bandit_config
    assert [a.name for a in restored.list()] == ["a", "b", "c"]
    original, copy = dict(flatten(registry.stats())), dict(flatten(restored.stats()))
    assert original.keys() == copy.keys()
    for key, value in original.items():
        if ".recent." in key and isinstance(value, float):
            assert copy[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert copy[key] == value, key
    # and both carry on identically
    for reg in (registry, restored):
        reg.record_outcome("next", "a", False, latency_ms=5_000.0, quality=0.1, cost_usd=0.01)
    assert restored.stats("a")["metrics"]["recent"]["mean_quality"] == pytest.approx(
        registry.stats("a")["metrics"]["recent"]["mean_quality"], rel=1e-12
    )
    np.testing.assert_array_equal(mean_of(restored, "a"), mean_of(registry, "a"))


def test_restore_reproduces_stats_exactly():
    registry = busy_registry()
    restored = AgentRegistry.restore(json.loads(json.dumps(registry.snapshot())))
    assert restored.stats() == registry.stats()


def test_a_registry_for_a_trained_models_agents():
    from tinydancer.model.weights import load_model, shipped_model_path

    model = load_model(shipped_model_path("agent"))
    names = model.feature_schema["agents"]
    prices = model.info["agent_mean_cost_usd"]
    full = AgentRegistry.for_model(model)
    assert [a.name for a in full.list()] == names
    assert all(full.get(n).cost.per_request_usd == pytest.approx(prices[n]) for n in names)
    assert full.known_to_model == frozenset(names)

    subset = AgentRegistry.for_model(
        model, agents=names[:3], capabilities=["Chat"], latency_ms=[100, 200, 300]
    )
    assert [a.name for a in subset.list()] == names[:3]
    assert [a.expected_latency_ms for a in subset.list()] == [100, 200, 300]
    assert all(a.capabilities == frozenset({"chat"}) for a in subset.list())
    assert subset.known_to_model == frozenset(names)  # the model still scores all of them

    with pytest.raises(InvalidRequestError) as bad:
        AgentRegistry.for_model(model, agents=["not-a-model-agent"])
    assert bad.value.field == "agents" and "not-a-model-agent" in str(bad.value)
    with pytest.raises(InvalidRequestError) as bad:
        AgentRegistry.for_model(model, latency_ms=[100.0])
    assert bad.value.field == "latency_ms"


def test_an_avoided_agent_drifts_back_towards_its_prior():
    """Outcomes of other agents age an agent's evidence: one avoided after failures is retried."""
    registry = AgentRegistry(
        bandit_config=CONFIG.model_copy(update={"idle_half_life_outcomes": 100.0})
    )
    for name in ("failed", "busy"):
        registry.register(Agent(name=name, expected_quality=0.8))
    for i in range(40):
        registry.record_outcome(f"f{i}", "failed", False)
    after_failures = float(bandit.posterior_mean(registry.posterior("failed"))[0])
    for i in range(300):
        registry.record_outcome(f"b{i}", "busy", True)
    recovered = float(bandit.posterior_mean(registry.posterior("failed"))[0])
    assert after_failures < recovered < 0.8
    assert registry.posterior("failed").outcomes == 40  # ageing is not an outcome

    restored = AgentRegistry.restore(json.loads(json.dumps(registry.snapshot())))
    np.testing.assert_allclose(
        restored.posterior("failed").precision, registry.posterior("failed").precision
    )
    legacy = registry.snapshot()  # written before ageing existed: no `updated_at`
    for entry in legacy["agents"]:
        del entry["posterior"]["updated_at"]
    old = AgentRegistry.restore(legacy)
    (stored,) = [e["posterior"] for e in legacy["agents"] if e["agent"]["name"] == "failed"]
    np.testing.assert_allclose(old.posterior("failed").precision, stored["precision"])


def test_a_quality_reported_later_teaches_quality_without_counting_a_request(registry):
    registry.record_outcome("r1", "coder", True, 500.0, None, 0.01, learn=False)
    before = registry.posterior("coder")
    metrics = registry.metrics("coder")
    assert (metrics.requests, metrics.quality_count) == (1, 0) and before.outcomes == 0
    registry.record_quality("r1", "coder", 0.25, model_quality=0.8)
    assert (metrics.requests, metrics.successes, metrics.quality_count) == (1, 1, 1)
    assert metrics.quality_sum == 0.25 and registry.posterior("coder").outcomes > before.outcomes
    with pytest.raises(InvalidRequestError, match="quality"):
        registry.record_quality("r1", "coder", 1.5)


@pytest.mark.parametrize("value", [True, 5, 1.5, {"chat": 1}, "chat", None])
def test_capabilities_that_are_not_a_list_are_a_validation_error(value):
    with pytest.raises(ValidationError, match="capabilities must be a list of strings"):
        Agent(name="a", capabilities=value)


@pytest.mark.parametrize(
    "metadata", [{"n": -334343029151369527296}, {"\ud800": 1}, {"x": [{"y": 2**64}]}]
)
def test_metadata_that_is_not_plain_json_is_refused(metadata):
    # found by schemathesis: such metadata was stored, then every GET /v1/agents was a 500
    with pytest.raises(ValidationError, match="metadata must be plain JSON"):
        Agent(name="a", metadata=metadata)
    registry = AgentRegistry()
    registry.register(Agent(name="a"))
    with pytest.raises(InvalidRequestError, match="metadata"):
        registry.update("a", metadata=metadata)
