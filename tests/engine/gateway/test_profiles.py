"""Profiles, per-request options over them, and the gateway's configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tinydancer.gateway.config import GatewayConfig
from tinydancer.gateway.profiles import BUILTIN_PROFILES, Profile, RoutingOptions


def test_the_built_in_profiles_are_the_four_objectives_and_auto_is_the_default():
    config = GatewayConfig()
    profiles = config.all_profiles()
    assert sorted(profiles) == [
        "tinydancer/auto", "tinydancer/balanced", "tinydancer/cost", "tinydancer/latency",
        "tinydancer/quality",
    ]  # fmt: skip
    assert {n: p.optimize_for for n, p in BUILTIN_PROFILES.items()} == {
        "tinydancer/cost": "cost",
        "tinydancer/latency": "latency",
        "tinydancer/quality": "quality",
        "tinydancer/balanced": "balanced",
    }
    assert profiles["tinydancer/auto"] == profiles["tinydancer/balanced"]
    cheap = GatewayConfig(default_profile="tinydancer/cost")
    assert cheap.profile("tinydancer/auto").optimize_for == "cost"


def test_configured_profiles_join_and_may_be_the_default():
    config = GatewayConfig(
        profiles={
            "tinydancer/support": Profile(
                optimize_for="quality",
                willingness_to_pay=0.5,
                constraints={"max_cost_usd": 0.02, "required_capabilities": ["chat"]},
            )
        },
        default_profile="tinydancer/support",
    )
    assert config.profile("tinydancer/auto").willingness_to_pay == 0.5
    assert config.profile("tinydancer/support").constraints.max_cost_usd == 0.02


@pytest.mark.parametrize(
    "settings",
    [
        {"profiles": {"support": {}}},
        {"profiles": {"tinydancer/auto": {}}},
        {"profiles": {"tinydancer/": {}}},
        {"default_profile": "tinydancer/none"},
        {"max_attempts": 0},
        {"deadline_s": 0},
    ],
    ids=["no-prefix", "auto", "empty-name", "unknown-default", "no-attempts", "no-deadline"],
)
def test_a_bad_configuration_is_refused(settings):
    with pytest.raises(ValidationError):
        GatewayConfig(**settings)


def test_options_override_the_profile_field_by_field_and_constraints_key_by_key():
    profile = Profile(
        optimize_for="quality",
        willingness_to_pay=0.2,
        constraints={"max_cost_usd": 0.01, "excluded_agents": ["a"]},
    )
    options = RoutingOptions.model_validate(
        {"optimize_for": "cost", "constraints": {"min_quality": 0.5, "excluded_agents": ["b"]}}
    )
    merged = options.over(profile)
    assert merged.optimize_for == "cost" and merged.willingness_to_pay == 0.2
    assert merged.constraints.max_cost_usd == 0.01 and merged.constraints.min_quality == 0.5
    assert merged.constraints.excluded_agents == ["b"]  # a list given replaces the profile's
    engine = merged.constraints.to_engine(frozenset({"no-endpoint"}))
    assert engine.excluded_agents == {"b", "no-endpoint"} and engine.max_cost_usd == 0.01
    assert RoutingOptions().over(profile) == profile


@pytest.mark.parametrize(
    "options",
    [
        {"optimize_for": "fast"},
        {"weights": {"speed": 1}},
        {"expected_tokens": -1},
        {"willingness_to_pay": 0},
        {"constraints": {"max_latency_ms": "10"}},
        {"constraints": {"max_cost_usd": float("nan")}},
        {"extra": True},
    ],
)
def test_the_options_schema_is_strict(options):
    with pytest.raises(ValidationError):
        RoutingOptions.model_validate(options)
