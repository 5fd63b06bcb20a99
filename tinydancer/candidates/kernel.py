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
    "score_reduced_kernel",
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
    dots = embeddings @ query  # (N,)
    norms_sq = jnp.einsum("ij,ij->i", embeddings, embeddings)  # (N,) fused, no N x D temp
    return _score_rows(
        qpack, spack, fpack, table, settings, dots, norms_sq, query @ query, columns, count, layout
    )


@partial(jax.jit, static_argnames=("layout",))
def score_reduced_kernel(
    qpack: jax.Array,
    spack: jax.Array,
    fpack: jax.Array,
    table: jax.Array,
    settings: jax.Array,
    aux: jax.Array,
    *,
    layout: tuple[Any, ...],
) -> jax.Array:
    """`score_kernel` for small calls, given the embedding reductions (same output).

    aux: (6 N + 2,) = the (6, N) rows (E q, row norms squared, age_s, access_count,
    success_rate, metadata_overlap), q . q, and the number of real rows. The router
    computes the two reductions with numpy (a few µs for 100 x 384, one thread), so
    the embeddings never enter the jitted call: no staging copy, and no XLA reduction
    that its CPU runtime would split across cores (which costs tens of µs on a small
    machine in an unpinned process).
    """
    n = (aux.shape[0] - 2) // 6
    rows, query_norm_sq, count = aux[: 6 * n].reshape(6, n), aux[-2], aux[-1]
    return _score_rows(
        qpack,
        spack,
        fpack,
        table,
        settings,
        rows[0],
        rows[1],
        query_norm_sq,
        rows[2:],
        count,
        layout,
    )


def _score_rows(
    qpack: jax.Array,
    spack: jax.Array,
    fpack: jax.Array,
    table: jax.Array,
    settings: jax.Array,
    dots: jax.Array,
    norms_sq: jax.Array,
    query_norm_sq: jax.Array,
    columns: jax.Array,
    count: jax.Array,
    layout: tuple[Any, ...],
) -> jax.Array:
    n = dots.shape[0]
    valid = (
        jnp.arange(n, dtype=jnp.float32) < count
    )  # rows past the request's count are bucket padding
    params = unpack(qpack, spack, fpack, layout)
    x, heuristic = feats.features_from_reductions(
        dots, norms_sq, query_norm_sq, columns, settings[:7]
    )  # (N, 5), (N,)
    confidence = jax.nn.sigmoid(forward(params, x[:, None, :])[:, 0])  # (N,)
    uncertainty = uncertainty_jnp(table, confidence)
    light = (confidence >= settings[7]) & (uncertainty <= settings[8])
    problems = feats.problems_from_reductions(
        norms_sq, query_norm_sq, columns, valid, settings[9]
    ) | jnp.where(valid & ~jnp.isfinite(confidence), feats.PROBLEM_MODEL_OUTPUT, 0)
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

    def score_reduced(self, aux: np.ndarray) -> np.ndarray:
        """`score` from host-side reductions (see `score_reduced_kernel`)."""
        return np.asarray(
            score_reduced_kernel(*self.weights, self.table, self.settings, aux, layout=self.layout)
        )
