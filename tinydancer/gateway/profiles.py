"""Routing profiles and per-request routing options (the `tinydancer` object of a body).

A request's `model` is a profile (`tinydancer/...`) or an agent's name. A profile is
what `/v1/route` takes as options: objective, weights, willingness to pay, expected
tokens and constraints; the request's `tinydancer` object uses the same strict schema,
and each field it sets overrides the profile's (constraints field by field).

    merged = RoutingOptions.model_validate({"constraints": {"max_cost_usd": 0.01}}).over(BUILTIN_PROFILES["tinydancer/quality"])
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tinydancer.agents.types import Constraints

__all__ = [
    "AUTO",
    "BUILTIN_PROFILES",
    "PREFIX",
    "ConstraintOptions",
    "Profile",
    "RoutingOptions",
    "WeightOptions",
]

PREFIX = "tinydancer/"
AUTO = "tinydancer/auto"
# strict: JSON 0 / "yes" are not booleans and "1" is not a number; unknown fields refused
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)


class ConstraintOptions(BaseModel):
    model_config = _STRICT
    max_cost_usd: float | None = Field(None, ge=0, description="USD per request, at most")
    max_latency_ms: float | None = Field(None, ge=0, description="expected latency, at most")
    min_quality: float | None = Field(None, ge=0, le=1, description="expected quality, at least")
    required_capabilities: list[str] | None = Field(None, max_length=64)
    excluded_agents: list[str] | None = Field(None, max_length=1024)

    def over(self, base: ConstraintOptions | None) -> ConstraintOptions:
        """These constraints' set fields over `base`'s."""
        if base is None:
            return self
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})

    def to_engine(self, also_excluded: frozenset[str] = frozenset()) -> Constraints:
        return Constraints(
            self.max_cost_usd,
            self.max_latency_ms,
            self.min_quality,
            frozenset(self.required_capabilities or ()),
            frozenset(self.excluded_agents or ()) | also_excluded,
        )


class WeightOptions(BaseModel):
    model_config = _STRICT
    quality: float | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0)
    latency: float | None = Field(None, ge=0)
    similarity: float | None = Field(None, ge=0)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class RoutingOptions(BaseModel):
    """The `tinydancer` object of a request: every field optional; set fields override the profile's."""

    model_config = _STRICT
    optimize_for: Literal["cost", "latency", "quality", "balanced"] | None = None
    weights: WeightOptions | None = None
    willingness_to_pay: float | None = Field(None, gt=0, description="USD per unit of quality")
    expected_tokens: float | None = Field(None, ge=0, description="tokens (prompt + answer)")
    constraints: ConstraintOptions | None = None

    def over(self, profile: Profile) -> Profile:
        """The profile with this request's options applied."""
        update: dict[str, object] = {
            k: getattr(self, k) for k in self.model_fields_set if k != "constraints"
        }
        if self.constraints is not None:
            update["constraints"] = self.constraints.over(profile.constraints)
        return profile.model_copy(update=update)


class Profile(BaseModel):
    """A named routing policy (`model: "tinydancer/<name>"`)."""

    model_config = _STRICT
    optimize_for: Literal["cost", "latency", "quality", "balanced"] = Field(
        "balanced", description="the objective"
    )
    weights: WeightOptions | None = Field(None, description="overrides the objective's weights")
    willingness_to_pay: float | None = Field(
        None, gt=0, description="USD per unit of quality (replaces the cost weight)"
    )
    expected_tokens: float | None = Field(
        None, ge=0, description="tokens assumed for per-token prices (None = estimated)"
    )
    constraints: ConstraintOptions | None = Field(None, description="hard limits")
    description: str = Field("", max_length=500, description="shown by GET /v1/models")


BUILTIN_PROFILES: dict[str, Profile] = {
    f"{PREFIX}{objective}": Profile(optimize_for=objective, description=text)
    for objective, text in (
        ("cost", "cheapest agent that meets the constraints, quality still counts"),
        ("latency", "fastest agent, quality still counts"),
        ("quality", "best expected quality, cost and latency barely count"),
        ("balanced", "quality against cost and latency"),
    )
}
