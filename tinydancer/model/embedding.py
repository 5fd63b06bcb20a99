"""The embedding contract: all-MiniLM-L6-v2 sentence embeddings, 384 float32 values.

Every model file records the embedding model and dimension it was trained for
(`EmbeddingSpec`); routers reject requests whose vectors do not match. Vectors need
not be exactly unit norm (cosine similarity normalises), but must be finite and
non-zero.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinydancer.errors import EmbeddingError

__all__ = [
    "DEFAULT_EMBEDDING",
    "EmbeddingSpec",
    "aligned_empty",
    "as_embedding",
    "as_embedding_matrix",
    "decode_base64_f32",
]

_ALIGN_BYTES = 64


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """Which sentence-embedding model produced the vectors, and their dimension."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    dim: int = 384

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.dim}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingSpec:
        return cls(model=str(data["model"]), dim=int(data["dim"]))


DEFAULT_EMBEDDING = EmbeddingSpec()


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary.

    JAX on CPU reads aligned numpy arguments in place; misaligned ones are copied first
    (tens of µs for 100x384), so staging buffers are allocated aligned.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN_BYTES, dtype=np.uint8)
    offset = (-raw.ctypes.data) % _ALIGN_BYTES
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def as_embedding(value: Any, field: str, dim: int) -> np.ndarray:
    """Validate one embedding -> float32 vector of length `dim`."""
    try:
        vector = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbeddingError(field, value, f"a list of {dim} numbers", str(exc)) from None
    if vector.ndim != 1 or vector.shape[0] != dim:
        raise EmbeddingError(
            field,
            f"array of shape {vector.shape}",
            f"shape ({dim},)",
            "embedding dimension mismatch",
        )
    norm_sq = float(np.dot(vector, vector))
    if not np.isfinite(norm_sq):
        raise EmbeddingError(field, "a vector containing NaN or inf", "finite numbers")
    if norm_sq == 0.0:
        raise EmbeddingError(field, "the zero vector", "a non-zero (unit-norm) embedding")
    return vector


def as_embedding_matrix(value: Any, field: str, dim: int) -> np.ndarray:
    """Validate the shape of an (N, dim) block -> float32, C-contiguous (values checked later)."""
    try:
        matrix = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbeddingError(field, value, f"an (N, {dim}) array of numbers", str(exc)) from None
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise EmbeddingError(
            field,
            f"array of shape {matrix.shape}",
            f"shape (N, {dim})",
            "embedding dimension mismatch",
        )
    if not matrix.flags.c_contiguous:
        matrix = np.ascontiguousarray(matrix)
    return matrix


def decode_base64_f32(text: str, field: str, dim: int) -> np.ndarray:
    """Decode base64 little-endian float32 into an (N, dim) array (N >= 1)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise EmbeddingError(
            field, text[:40] if isinstance(text, str) else text, "base64 of little-endian float32"
        ) from None
    row_bytes = 4 * dim
    if len(raw) == 0 or len(raw) % row_bytes:
        raise EmbeddingError(
            field,
            f"{len(raw)} decoded bytes",
            f"a positive multiple of {row_bytes} bytes ({dim} float32 per row)",
        )
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dim)
