"""Router configuration (pydantic models: typed, constrained, units in the names)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tinydancer.candidates.features import FeatureConfig

__all__ = ["RouterConfig"]


class RouterConfig(BaseModel):
    """Settings of a candidate-mode `Router`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(None, description="weights file; None = the shipped model")
    confidence_threshold: float = Field(
        0.85, ge=0.5, le=1.0, description="use_lightweight needs confidence >= this"
    )
    max_uncertainty: float = Field(
        0.15,
        gt=0.0,
        lt=1.0,
        description="use_lightweight needs the conformal p-value of 'not useful' <= this; "
        "it bounds the fraction of wrong lightweight decisions",
    )
    features: FeatureConfig | None = Field(
        None, description="feature settings; None = the ones the model was trained with"
    )
    sync_dispatch: bool = Field(
        True, description="turn off JAX's async dispatch (saves ~40-70 µs per call)"
    )
    warm_up_to_candidates: int = Field(
        1024, ge=0, description="compile and run every shape bucket up to this size at load"
    )
    max_future_skew_s: float = Field(
        300.0, ge=0, description="created_at may be this far in the future (clock skew)"
    )
    check_duplicate_ids: bool = Field(True, description="refuse requests with repeated ids")
