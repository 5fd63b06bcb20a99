"""Candidate features, computed inside the router's jitted call.

Per candidate (seed semantics, settings in `FeatureConfig`):

| feature | definition |
|---|---|
| similarity | cosine(query, candidate embedding) |
| recency | exp(-recency_decay_per_s * age_s), age_s = now - created_at (host, float64) |
| frequency | min(1, ln(1 + access_count) / ln(1 + frequency_saturation_count)) |
| success_rate | as given, in [0, 1] |
| metadata_overlap | fraction of the request's metadata the candidate matches |

The model reads the features multiplied by their weights; the weighted mean is also
the heuristic score the router falls back to when the model misbehaves.
Row norms use a fused reduction (no normalised N x D intermediate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FEATURE_NAMES",
    "FeatureConfig",
    "candidate_features",
    "features_from_reductions",
    "problems_from_reductions",
    "row_problems",
]

# The (4, N) columns (age_s, access_count, success_rate, metadata_overlap): an array, or
# its four rows (the kernels pass row slices, which XLA fuses where it copies a reshape).
Columns = jax.Array | Sequence[jax.Array]

FEATURE_NAMES = ("similarity", "recency", "frequency", "success_rate", "metadata_overlap")

# Bits of the per-row problem code returned by `row_problems`.
PROBLEM_NON_FINITE_EMBEDDING = 1
PROBLEM_ZERO_EMBEDDING = 2
PROBLEM_SUCCESS_RATE = 4
PROBLEM_ACCESS_COUNT = 8
PROBLEM_OVERLAP = 16
PROBLEM_CREATED_AT = 32
PROBLEM_QUERY = 64
PROBLEM_MODEL_OUTPUT = 128  # not an input problem: the model gave a non-finite score


class FeatureConfig(BaseModel):
    """How candidate features are computed and weighted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    similarity_weight: float = Field(0.4, ge=0, description="weight of cosine similarity")
    recency_weight: float = Field(0.2, ge=0, description="weight of the recency score")
    frequency_weight: float = Field(0.15, ge=0, description="weight of the access frequency score")
    success_weight: float = Field(0.15, ge=0, description="weight of the success rate")
    metadata_weight: float = Field(0.1, ge=0, description="weight of the metadata overlap")
    recency_decay_per_s: float = Field(
        1e-3, ge=0, description="recency = exp(-decay * age_s); 1e-3/s halves in ~11.5 min"
    )
    frequency_saturation_count: float = Field(
        10_000, gt=0, description="access count at which the frequency score reaches 1"
    )

    def weights(self) -> np.ndarray:
        return np.asarray(
            [
                self.similarity_weight,
                self.recency_weight,
                self.frequency_weight,
                self.success_weight,
                self.metadata_weight,
            ],
            dtype=np.float32,
        )

    def constants(self) -> np.ndarray:
        """(7,) float32 packed for the jitted call: 5 weights, decay, 1/ln(1+saturation)."""
        inv_log = 1.0 / np.log1p(self.frequency_saturation_count)
        return np.concatenate([self.weights(), [self.recency_decay_per_s, inv_log]]).astype(
            np.float32
        )

    def to_schema(self) -> dict[str, Any]:
        """The `features` entry of a model file's feature schema."""
        return {"names": list(FEATURE_NAMES), **self.model_dump()}

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> FeatureConfig:
        return cls(**{k: v for k, v in schema.items() if k != "names"})


def candidate_features(
    query: jax.Array, embeddings: jax.Array, columns: jax.Array, constants: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Features and heuristic scores.

    query (D,); embeddings (N, D); columns (4, N): age_s, access_count, success_rate,
    metadata_overlap; constants (7,) from `FeatureConfig.constants`.
    Returns (weighted features (N, 5), heuristic score (N,)).
    """
    dots = embeddings @ query  # (N,)
    norms_sq = jnp.einsum("ij,ij->i", embeddings, embeddings)  # (N,) fused, no N x D temp
    return features_from_reductions(dots, norms_sq, query @ query, columns, constants)


def features_from_reductions(
    dots: jax.Array,
    norms_sq: jax.Array,
    query_norm_sq: jax.Array,
    columns: Columns,
    constants: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """`candidate_features` given the embedding reductions: dots (N,) = E q, norms_sq (N,)
    = row norms squared, query_norm_sq = q . q (the router's small calls compute these
    on the host, so the embeddings never enter the jitted call)."""
    similarity = dots * jax.lax.rsqrt(jnp.maximum(norms_sq, 1e-30)) / jnp.sqrt(query_norm_sq)
    age_s, access_count, success_rate, overlap = columns[0], columns[1], columns[2], columns[3]
    weights, decay, inv_log_saturation = constants[:5], constants[5], constants[6]
    recency = jnp.exp(-decay * jnp.maximum(age_s, 0.0))
    frequency = jnp.minimum(1.0, jnp.log1p(jnp.maximum(access_count, 0.0)) * inv_log_saturation)
    features = [similarity, recency, frequency, success_rate, overlap]
    # the weighted sum written out (a 5-term dot would be a separate XLA thunk on CPU)
    weighted = [f * weights[i] for i, f in enumerate(features)]
    total = weighted[0]
    for w in weighted[1:]:
        total = total + w
    heuristic = total / jnp.maximum(weights.sum(), 1e-12)  # (N,)
    return jnp.stack(weighted, axis=1), heuristic  # (N, 5), (N,)


def row_problems(
    query: jax.Array,
    embeddings: jax.Array,
    columns: jax.Array,
    valid: jax.Array,
    max_future_skew_s: jax.Array,
) -> jax.Array:
    """(N,) int32 bit set of input problems per row (0 = fine); rows with valid=False are 0.

    The query's own problems (non-finite, zero) are reported on every valid row.
    """
    norms_sq = jnp.einsum("ij,ij->i", embeddings, embeddings)
    return problems_from_reductions(norms_sq, query @ query, columns, valid, max_future_skew_s)


def problems_from_reductions(
    norms_sq: jax.Array,
    query_norm_sq: jax.Array,
    columns: Columns,
    valid: jax.Array,
    max_future_skew_s: jax.Array,
) -> jax.Array:
    """`row_problems` given the row norms squared and q . q."""
    age_s, access_count, success_rate, overlap = (columns[i] for i in range(4))
    code = (
        jnp.where(~jnp.isfinite(norms_sq), PROBLEM_NON_FINITE_EMBEDDING, 0)
        | jnp.where(norms_sq == 0.0, PROBLEM_ZERO_EMBEDDING, 0)
        | jnp.where(~((success_rate >= 0.0) & (success_rate <= 1.0)), PROBLEM_SUCCESS_RATE, 0)
        | jnp.where(~(access_count >= 0.0), PROBLEM_ACCESS_COUNT, 0)
        | jnp.where(~((overlap >= 0.0) & (overlap <= 1.0)), PROBLEM_OVERLAP, 0)
        | jnp.where(~(age_s >= -max_future_skew_s), PROBLEM_CREATED_AT, 0)
        | jnp.where(~(jnp.isfinite(query_norm_sq) & (query_norm_sq > 0.0)), PROBLEM_QUERY, 0)
    )
    return jnp.where(valid, code, 0).astype(jnp.int32)
