"""The candidate-mode kernel: one jitted call scores, bounds and checks every candidate.

The kernel takes the INT8 weights as arguments (packed into three arrays) and
dequantizes them inside, so a reload with same-shaped weights swaps arrays without
recompiling. Its single output (5, bucket) float32 holds confidence, uncertainty,
use_lightweight, per-row input problems and the heuristic score, so one
device-to-host transfer brings everything back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tinydancer.candidates import features as feats
from tinydancer.model.conformal import uncertainty_jnp
from tinydancer.model.fastgrnn import forward
from tinydancer.model.quantization import unpack
from tinydancer.model.weights import RouterModel

__all__ = [
    "ROW_CONF",
    "ROW_HEURISTIC",
    "ROW_LIGHT",
    "ROW_PROBLEM",
    "ROW_UNC",
    "LoadedModel",
    "score_kernel",
]

ROW_CONF, ROW_UNC, ROW_LIGHT, ROW_PROBLEM, ROW_HEURISTIC = range(5)  # rows of the output


@partial(jax.jit, static_argnames=("layout",))
def score_kernel(
    qpack: jax.Array,
    spack: jax.Array,
    fpack: jax.Array,
    table: jax.Array,
    settings: jax.Array,
    embeddings: jax.Array,
    aux: jax.Array,
    *,
    layout: tuple[Any, ...],
) -> jax.Array:
    """(5, N) float32: confidence, uncertainty, use_lightweight, input problems, heuristic.

    embeddings: (N, D); aux: (4 N + D + 1,) = the (4, N) columns (age_s, access_count,
    success_rate, metadata_overlap), the query, and the number of real rows. Every host
    array passed to a jitted call costs a few µs, so the small inputs travel together.
    settings: (10,) = 7 feature constants, confidence threshold, uncertainty threshold,
    allowed future skew of created_at (s).
    Ranking is left to the host: numpy sorts 100 floats in ~2 µs, XLA's CPU sort costs
    several times that.
    """
    n = embeddings.shape[0]
    columns, query, count = aux[: 4 * n].reshape(4, n), aux[4 * n : -1], aux[-1]
    valid = (
        jnp.arange(n, dtype=jnp.float32) < count
    )  # rows past the request's count are bucket padding
    params = unpack(qpack, spack, fpack, layout)
    x, heuristic = feats.candidate_features(
        query, embeddings, columns, settings[:7]
    )  # (N, 5), (N,)
    confidence = jax.nn.sigmoid(forward(params, x[:, None, :])[:, 0])  # (N,)
    uncertainty = uncertainty_jnp(table, confidence)
    light = (confidence >= settings[7]) & (uncertainty <= settings[8])
    problems = feats.row_problems(query, embeddings, columns, valid, settings[9]) | jnp.where(
        valid & ~jnp.isfinite(confidence), feats.PROBLEM_MODEL_OUTPUT, 0
    )
    rows = [confidence, uncertainty, light, problems, heuristic]
    return jnp.stack([r.astype(jnp.float32) for r in rows])


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """Everything the kernel needs for one model, already on the device."""

    model: RouterModel
    weights: tuple[jax.Array, jax.Array, jax.Array]  # packed int8 matrices, scales, floats
    layout: tuple[Any, ...]
    table: jax.Array
    settings: jax.Array
    dim: int

    def score(self, embeddings: np.ndarray, aux: np.ndarray) -> np.ndarray:
        return np.asarray(
            score_kernel(
                *self.weights, self.table, self.settings, embeddings, aux, layout=self.layout
            )
        )
