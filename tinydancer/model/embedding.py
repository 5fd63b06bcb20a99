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
    "USABLE_EMBEDDING",
    "EmbeddingSpec",
    "aligned_empty",
    "as_embedding",
    "as_embedding_matrix",
    "decode_base64_f32",
    "describe_unusable",
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
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # judged just below
        norm_sq = float(np.dot(vector, vector))
    if not np.isfinite(norm_sq) or norm_sq == 0.0:
        raise EmbeddingError(field, describe_unusable(vector), USABLE_EMBEDDING)
    return vector


USABLE_EMBEDDING = "finite, non-zero values whose squared norm fits float32 (unit norm is typical)"


def describe_unusable(vector: np.ndarray) -> str:
    """Say why a float32 vector (N,) cannot be scored: its squared norm is not finite or is 0.

    Values near float32's limits are named for what they are: 3e38 is finite but its square
    overflows, 1e-40 is a denormal whose square underflows to 0.
    """
    values = np.asarray(vector, np.float32)
    if not np.isfinite(values).all():
        return "a vector containing NaN or inf"
    largest = float(np.abs(values).max(initial=0.0))
    if largest == 0.0:
        return "the zero vector"
    with np.errstate(over="ignore", under="ignore"):
        norm_sq = float(np.dot(values, values))
    if norm_sq == 0.0:
        kind = "denormal " if largest < np.finfo(np.float32).tiny else ""
        return (
            f"values so small ({kind}max |x| = {largest:.3g}) that the squared norm underflows to 0"
        )
    return f"values so large (max |x| = {largest:.3g}) that the squared norm overflows float32"


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
