"""INT8 weights and magnitude pruning.

Scheme (recorded in every model file as `QUANTIZATION_SCHEME`): every 2-d weight
matrix is stored as int8 with one float32 scale per output row (symmetric, zero
point 0): ``scale_r = max_j |w_rj| / 127`` and ``q_rj = clip(rint(w_rj / scale_r),
-127, 127)`` (round to nearest, ties to even). An all-zero row gets scale 1. Vectors
and scalars (biases, zeta, nu) stay float32: they are a few dozen numbers and
quantizing them buys nothing. Dequantization, ``q * scale[:, None]``, runs inside the
router's jitted function, so the stored int8 tensors are what the router holds.

Pruning zeroes the smallest-magnitude entries of each prunable matrix to a target
sparsity; the mask is kept fixed while the model is retrained (dense -> sparsify ->
retrain -> INT8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tinydancer.errors import ConfigError

__all__ = [
    "QUANTIZATION_SCHEME",
    "dequantize",
    "prune_by_magnitude",
    "quantize",
    "stored_size_bytes",
]

QUANTIZATION_SCHEME: dict[str, Any] = {
    "name": "int8-symmetric-per-row",
    "matrices": "int8 values '<name>.q' (rows, cols) + float32 scales '<name>.scale' (rows,)",
    "rounding": "nearest, ties to even",
    "range": [-127, 127],
    "vectors": "float32",
}

_Q_SUFFIX = ".q"
_SCALE_SUFFIX = ".scale"


def quantize(params: Mapping[str, Any], matrices: Iterable[str]) -> dict[str, np.ndarray]:
    """Float params -> stored tensors (int8 + scales for `matrices`, float32 for the rest)."""
    matrix_set = set(matrices)
    stored: dict[str, np.ndarray] = {}
    for name, value in params.items():
        array = np.asarray(value, dtype=np.float32)
        if name not in matrix_set:
            stored[name] = array
            continue
        max_abs = np.max(np.abs(array), axis=1)  # (rows,)
        scale = np.where(max_abs > 0, max_abs / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(array / scale[:, None]), -127, 127).astype(np.int8)
        stored[name + _Q_SUFFIX] = q
        stored[name + _SCALE_SUFFIX] = scale
    return stored


def dequantize(stored: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Stored tensors -> float32 params. Pure jnp, meant to run inside `jax.jit`."""
    params: dict[str, jax.Array] = {}
    for name, value in stored.items():
        if name.endswith(_SCALE_SUFFIX):
            continue
        if name.endswith(_Q_SUFFIX):
            base = name[: -len(_Q_SUFFIX)]
            scale = stored[base + _SCALE_SUFFIX]
            params[base] = value.astype(jnp.float32) * scale[:, None]
        else:
            params[name] = value
    return params


def dequantize_numpy(stored: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same as `dequantize`, in numpy (for references and tests)."""
    return {k: np.asarray(v) for k, v in dequantize(stored).items()}  # type: ignore[arg-type]


def prune_by_magnitude(
    params: Mapping[str, Any], names: Iterable[str], sparsity: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Zero the smallest |w| of each named matrix so that `sparsity` of it is zero.

    Returns (pruned params, masks); masks are float32 1/0 arrays for the named matrices.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity: got {sparsity!r}; expected a fraction in [0, 1)")
    pruned = {k: np.asarray(v, dtype=np.float32).copy() for k, v in params.items()}
    masks: dict[str, np.ndarray] = {}
    for name in names:
        weights = pruned[name]
        n_zero = int(np.floor(sparsity * weights.size))
        mask = np.ones_like(weights)
        if n_zero > 0:
            order = np.argsort(np.abs(weights), axis=None, kind="stable")[:n_zero]
            mask.flat[order] = 0.0
        pruned[name] = weights * mask
        masks[name] = mask
    return pruned, masks


def stored_size_bytes(stored: Mapping[str, Any]) -> int:
    """Bytes of tensor data actually stored (int8 values + float32 scales + vectors)."""
    return int(sum(np.asarray(v).nbytes for v in stored.values()))


# -- packed layout for the hot path ------------------------------------------------------
# A jitted call pays per argument and per small op, so the router hands the kernel three
# arrays instead of one per tensor: every int8 matrix stacked row-wise (zero-padded to a
# common width), their row scales, and every float vector concatenated. One fused
# multiply dequantizes all matrices; the slices that follow are free.

PackLayout = tuple[
    tuple[str, int, int, int], ...
]  # (name, kind 0=matrix 1=vector, offset, size...)


def pack(
    stored: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[Any, ...]]:
    """Stored tensors -> (int8 (R, C), scales (R,), floats (K,), static layout)."""
    matrices = sorted(k[: -len(_Q_SUFFIX)] for k in stored if k.endswith(_Q_SUFFIX))
    vectors = sorted(k for k in stored if not k.endswith((_Q_SUFFIX, _SCALE_SUFFIX)))
    width = max((stored[m + _Q_SUFFIX].shape[1] for m in matrices), default=1)
    rows = sum(stored[m + _Q_SUFFIX].shape[0] for m in matrices)
    qpack = np.zeros((max(rows, 1), width), np.int8)
    spack = np.ones((max(rows, 1),), np.float32)
    layout: list[tuple[Any, ...]] = []
    row = 0
    for name in matrices:
        q = stored[name + _Q_SUFFIX]
        qpack[row : row + q.shape[0], : q.shape[1]] = q
        spack[row : row + q.shape[0]] = stored[name + _SCALE_SUFFIX]
        layout.append(("matrix", name, row, q.shape[0], q.shape[1]))
        row += q.shape[0]
    floats: list[np.ndarray] = []
    offset = 0
    for name in vectors:
        value = np.asarray(stored[name], np.float32)
        floats.append(value.ravel())
        layout.append(("vector", name, offset, value.size, value.shape))
        offset += value.size
    fpack = np.concatenate(floats) if floats else np.zeros((1,), np.float32)
    return qpack, spack, fpack, tuple(layout)


def unpack(
    qpack: jax.Array, spack: jax.Array | None, fpack: jax.Array, layout: tuple[Any, ...]
) -> dict[str, jax.Array]:
    """Inside jit: dequantize the packed matrices in one op and slice out every tensor.
    `spack` None: `qpack` is already the dequantized float32 matrix (`dequantized`)."""
    dense = qpack if spack is None else qpack.astype(jnp.float32) * spack[:, None]  # (R, C)
    params: dict[str, jax.Array] = {}
    for entry in layout:
        if entry[0] == "matrix":
            _, name, row, rows, cols = entry
            params[name] = dense[row : row + rows, :cols]
        else:
            _, name, offset, size, shape = entry
            params[name] = fpack[offset : offset + size].reshape(shape)
    return params


def dequantized(qpack: np.ndarray, spack: np.ndarray) -> np.ndarray:
    """The packed INT8 matrices as float32, once on the host: exactly what `unpack` computes
    in every call (the same int8 -> float32 conversion and float32 product), for a kernel
    whose per-call work should not include a 35k-element elementwise op that XLA may split
    across cores."""
    return qpack.astype(np.float32) * spack.astype(np.float32)[:, None]
