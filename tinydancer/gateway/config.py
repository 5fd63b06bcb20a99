"""`GatewayConfig`: profiles, failover bounds, deadlines and request limits of a `Gateway`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from tinydancer.gateway.profiles import AUTO, BUILTIN_PROFILES, PREFIX, Profile

__all__ = ["CONTINUE_INSTRUCTION", "GatewayConfig"]

CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped: do not repeat "
    "anything already written and do not comment on the interruption."
)


class GatewayConfig(BaseModel):
    """How the gateway routes, fails over and bounds a request.

    >>> GatewayConfig(default_profile="tinydancer/cost", max_attempts=2).profile("tinydancer/auto").optimize_for
    'cost'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    profiles: dict[str, Profile] = Field(
        default_factory=dict,
        description="more profiles by model name (tinydancer/...); may redefine a built-in",
    )
    default_profile: str = Field(
        f"{PREFIX}balanced", description="what tinydancer/auto (and no profile) means"
    )
    max_attempts: int = Field(
        3, ge=1, le=16, description="agents tried per request, the first included"
    )
    deadline_s: float = Field(
        600.0, gt=0, le=86_400, description="total time a request may take, every attempt included"
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP (and TLS) connect to an upstream")
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_messages: int = Field(2048, ge=1, description="messages per request, at most")
    max_tokens_limit: int = Field(
        262_144, ge=1, description="max_tokens / max_completion_tokens above this are refused"
    )
    max_upstream_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="a larger upstream answer is malformed"
    )
    default_output_tokens: float = Field(
        256.0, gt=0, description="answer tokens assumed before any were observed"
    )
    continue_instruction: str = Field(
        CONTINUE_INSTRUCTION,
        min_length=1,
        max_length=2000,
        description="sent after the partial answer when another agent continues it",
    )
    await_quality_feedback: bool = Field(
        False,
        description="successful attempts teach the bandit nothing; quality reports do "
        "(else a success teaches quality 1.0 and a later report adds its quality)",
    )
    max_retry_after_s: float = Field(
        300.0, gt=0, description="a 429's Retry-After is capped at this (breaker cooldown)"
    )

    _all: dict[str, Profile] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _profiles(self) -> GatewayConfig:
        for name in self.profiles:
            if not name.startswith(PREFIX) or name == AUTO or len(name) <= len(PREFIX):
                raise ValueError(
                    f"profile name {name!r}: expected {PREFIX}<name>, not {AUTO} (an alias "
                    "of default_profile)"
                )
        merged = {**BUILTIN_PROFILES, **self.profiles}
        if self.default_profile not in merged:
            raise ValueError(
                f"default_profile {self.default_profile!r} is not a profile; expected one of "
                f"{sorted(merged)}"
            )
        merged[AUTO] = merged[self.default_profile]
        self._all = merged
        return self

    def all_profiles(self) -> dict[str, Profile]:
        """Every profile by model name, tinydancer/auto included."""
        return dict(self._all)

    def profile(self, model: str) -> Profile | None:
        return self._all.get(model)
