"""`AgentRouterConfig`: how an `AgentRouter` routes (model, seed, exploration, limits)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentRouterConfig"]


class AgentRouterConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(
        None, description="agent-mode weights; None = the shipped model"
    )
    seed: int = Field(
        0, description="seed of the Thompson draws (routing is deterministic given it)"
    )
    explore: bool = Field(True, description="Thompson sampling; False = act on posterior means")
    max_messages: int = Field(
        16, ge=1, le=256, description="a conversation keeps its latest messages"
    )
    default_tokens: float = Field(
        500.0, gt=0, description="tokens assumed for per-token prices when unknown"
    )
    fallback_agent: str | None = Field(
        None, description="served when every eligible agent is unavailable"
    )
    snapshot_max_age_s: float = Field(
        0.0, ge=0, description="reuse a snapshot this long (0 = always fresh)"
    )
    decision_cache_size: int = Field(
        100_000, ge=1, description="recent decisions kept for feedback"
    )
    sync_dispatch: bool = Field(True, description="turn off JAX's async dispatch")
    warm: bool = Field(True, description="compile common shapes at start")
