"""The candidate-mode kernel: one jitted call scores, bounds and checks every candidate.

The model travels as one float32 array (`pack_model`): its one-step form computed once
at load from the dequantized INT8 weights (input weights and head transposed, the two
gates' sigmoids), the settings and the uncertainty table, sliced apart inside the kernel
by a static layout. A jitted call pays a few µs per argument, and on XLA's CPU runtime
every small dot, dequantization or scalar op is a thunk of its own, so a small call pays
for two arguments and a few fused loops; a reload with same-shaped weights swaps the
array without recompiling. The single output (5, bucket) float32 holds confidence,
uncertainty, use_lightweight, per-row input problems and the heuristic score, so one
device-to-host transfer brings everything back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tinydancer.candidates import features as feats
from tinydancer.model.conformal import uncertainty_jnp
from tinydancer.model.fastgrnn import forward_one_step, one_step_form
from tinydancer.model.weights import RouterModel

__all__ = [
    "ROW_CONF",
    "ROW_HEURISTIC",
    "ROW_LIGHT",
    "ROW_PROBLEM",
    "ROW_UNC",
    "LoadedModel",
    "pack_model",
    "score_kernel",
    "score_reduced_kernel",
]

ROW_CONF, ROW_UNC, ROW_LIGHT, ROW_PROBLEM, ROW_HEURISTIC = range(5)  # rows of the output


@partial(jax.jit, static_argnames=("layout",))
def score_kernel(
    model: jax.Array,
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
    allowed future skew of created_at (s); they travel in `model` (see `pack_model`).
    Ranking is left to the host: numpy sorts 100 floats in ~2 µs, XLA's CPU sort costs
    several times that.
    """
    n = embeddings.shape[0]
    columns = [aux[i * n : (i + 1) * n] for i in range(4)]  # row slices (see the reduced kernel)
    query, count = aux[4 * n : -1], aux[-1]
    dots = embeddings @ query  # (N,)
    norms_sq = jnp.einsum("ij,ij->i", embeddings, embeddings)  # (N,) fused, no N x D temp
    return _score_rows(model, dots, norms_sq, query @ query, columns, count, layout)


@partial(jax.jit, static_argnames=("layout",))
def score_reduced_kernel(
    model: jax.Array,
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
    # row slices, not a reshape: XLA would copy a reshaped (6, N) block before using it
    rows = [aux[i * n : (i + 1) * n] for i in range(6)]
    return _score_rows(model, rows[0], rows[1], aux[-2], rows[2:], aux[-1], layout)


def pack_model(
    params: Mapping[str, np.ndarray], table: np.ndarray, settings: np.ndarray
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """One float32 array for the kernel, and its static layout: the model's
    `one_step_form` (from its dequantized parameters), the settings, the uncertainty table.
    """
    parts = {**one_step_form(params), "settings": settings, "table": table}
    layout, offset = [], 0
    for name, value in parts.items():
        layout.append((name, offset, np.shape(value)))
        offset += int(np.size(value))
    model = np.concatenate([np.asarray(v, np.float32).ravel() for v in parts.values()])
    return model, tuple(layout)


def _unpack_model(model: jax.Array, layout: tuple[Any, ...]) -> dict[str, Any]:
    """Inside jit: `pack_model`'s array -> its named parts, matrices as lists of rows
    (slices only; XLA fuses a row slice into its consumer, a reshaped matrix it copies)."""
    parts: dict[str, Any] = {}
    for name, offset, shape in layout:
        if len(shape) == 2:
            rows, cols = shape
            starts = range(offset, offset + rows * cols, cols)
            parts[name] = [model[start : start + cols] for start in starts]
        else:
            parts[name] = model[offset : offset + int(np.prod(shape))].reshape(shape)
    return parts


def _score_rows(
    model: jax.Array,
    dots: jax.Array,
    norms_sq: jax.Array,
    query_norm_sq: jax.Array,
    columns: feats.Columns,
    count: jax.Array,
    layout: tuple[Any, ...],
) -> jax.Array:
    n = dots.shape[0]
    valid = (
        jnp.arange(n, dtype=jnp.float32) < count
    )  # rows past the request's count are bucket padding
    parts = _unpack_model(model, layout)
    settings, table = parts["settings"], parts["table"]
    x, heuristic = feats.features_from_reductions(
        dots, norms_sq, query_norm_sq, columns, settings[:7]
    )  # (N, 5), (N,)
    confidence = jax.nn.sigmoid(forward_one_step(parts, x)[:, 0])  # (N,)
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
    packed: jax.Array  # `pack_model`'s array
    layout: tuple[Any, ...]  # its static layout
    dim: int

    def score(self, embeddings: np.ndarray, aux: np.ndarray) -> np.ndarray:
        return np.asarray(score_kernel(self.packed, embeddings, aux, layout=self.layout))

    def score_reduced(self, aux: np.ndarray) -> np.ndarray:
        """`score` from host-side reductions (see `score_reduced_kernel`)."""
        return np.asarray(score_reduced_kernel(self.packed, aux, layout=self.layout))
