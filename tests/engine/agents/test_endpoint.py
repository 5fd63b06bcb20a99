"""Agents' upstreams: validation, what listings show, eligibility for the gateway, prices."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tinydancer.agents.agent import Agent, CostModel
from tinydancer.agents.endpoint import REDACTED, Endpoint, redact_snapshot
from tinydancer.agents.registry import AgentRegistry

URL = "https://api.example.com/v1"


def test_an_endpoint_keeps_its_url_without_the_trailing_slash():
    endpoint = Endpoint(base_url=URL + "/", model="gpt-x", api_key_env="EXAMPLE_KEY")
    assert endpoint.chat_url == URL + "/chat/completions" and endpoint.timeout_s == 120


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"base_url": "ftp://host/v1"}, "http"),
        ({"base_url": "http:///v1"}, "host"),
        ({"base_url": "https://user:pw@host/v1"}, "credentials"),
        ({"base_url": "https://host/v1?key=1"}, "query"),
        ({"model": ""}, "model"),
        ({"api_key_env": "has space"}, "api_key_env"),
        ({"api_key_env": "1STARTS_WITH_DIGIT"}, "api_key_env"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"headers": {"Authorization": "Bearer x"}}, "api_key_env"),
        ({"headers": {"X-Bad": "line\r\nInjected: 1"}}, "one line"),
        ({"headers": {"bad header": "v"}}, "header name"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_bad_endpoint_is_refused_saying_why(fields, message):
    with pytest.raises(ValidationError, match=message):
        Endpoint(**{"base_url": URL, "model": "m", **fields})


def test_listings_show_no_header_value_and_no_key():
    endpoint = Endpoint(base_url=URL, model="m", api_key_env="K", headers={"X-Org": "org-123"})
    agent = Agent(name="a", endpoint=endpoint)
    public = agent.public()
    assert public["endpoint"] == {
        "base_url": URL,
        "model": "m",
        "api_key_env": "K",
        "timeout_s": 120.0,
        "headers": {"X-Org": REDACTED},
    }
    assert "org-123" not in str(public)
    assert endpoint.secrets({"K": "sk-1"}) == ["sk-1", "org-123"]


def test_gateway_eligibility_and_its_reason():
    keyed = Endpoint(base_url=URL, model="m", api_key_env="THE_KEY")
    assert Agent(name="a").gateway_unavailable({}).startswith("no endpoint")
    assert "THE_KEY" in Agent(name="a", endpoint=keyed).gateway_unavailable({})
    assert Agent(name="a", endpoint=keyed).gateway_unavailable({"THE_KEY": "sk"}) is None
    assert (
        Agent(name="a", endpoint=keyed, active=False).gateway_unavailable({"THE_KEY": "sk"})
        == "inactive"
    )
    open_endpoint = Endpoint(base_url=URL, model="m")  # no key needed, no Authorization sent
    assert Agent(name="a", endpoint=open_endpoint).gateway_unavailable({}) is None


def test_a_registry_snapshot_for_the_history_has_its_header_values_redacted():
    registry = AgentRegistry()
    registry.register(
        Agent(name="a", endpoint=Endpoint(base_url=URL, model="m", headers={"X": "v"}))
    )
    registry.register(Agent(name="b"))
    snapshot = registry.snapshot()
    redacted = redact_snapshot(snapshot)
    assert redacted["agents"][0]["agent"]["endpoint"]["headers"] == {"X": REDACTED}
    assert snapshot["agents"][0]["agent"]["endpoint"]["headers"] == {"X": "v"}  # not modified
    restored = AgentRegistry.restore(redacted)
    assert "redacted" in restored.get("a").gateway_unavailable({})


@pytest.mark.parametrize("name", ["tinydancer/auto", "TinyDancer/mine", "tinydancer/"])
def test_the_profile_prefix_is_reserved(name):
    with pytest.raises(ValidationError, match="reserved for routing profiles"):
        Agent(name=name)


def test_fallbacks_are_distinct_names():
    assert Agent(name="a", fallbacks=["b", "c"]).fallbacks == ("b", "c")
    with pytest.raises(ValidationError, match="distinct"):
        Agent(name="a", fallbacks=["b", "b"])


def test_split_prices_default_to_the_blended_one():
    blended = CostModel(per_request_usd=0.001, per_1k_tokens_usd=0.002)
    assert blended.estimate_split(1000, 500) == pytest.approx(0.001 + 0.002 * 1.5)
    split = CostModel(input_per_1k_tokens_usd=0.001, output_per_1k_tokens_usd=0.003)
    assert split.estimate_split(2000, 1000) == pytest.approx(0.002 + 0.003)
    assert split.blended_per_1k_tokens_usd == pytest.approx(0.002)  # what routing estimates with
    assert split.estimate(1000) == pytest.approx(0.002)
    mixed = CostModel(per_1k_tokens_usd=0.01, output_per_1k_tokens_usd=0.03)
    assert mixed.estimate_split(1000, 1000) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="tokens"):
        split.estimate_split(-1, 0)
