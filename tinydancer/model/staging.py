"""Shape buckets and aligned staging buffers for the jitted hot path.

A jitted function compiles once per input shape. Row counts are rounded up to a
power-of-two bucket (16 .. 16384) so that steady-state traffic with varying N never
recompiles; inputs are copied into a preallocated, 64-byte-aligned buffer of the
bucket's size (which JAX then reads in place) unless they already have the bucket's
shape and alignment. Batch scoring works in `BATCH_CHUNK`-row chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinydancer.model.embedding import aligned_empty

__all__ = ["BATCH_CHUNK", "BUCKETS", "MAX_BUCKET", "StagingBuffers", "bucket_for", "is_aligned"]

BUCKETS: tuple[int, ...] = tuple(2**k for k in range(4, 15))
MAX_BUCKET = BUCKETS[-1]
# Batch scoring works in chunks of this many rows: big enough to amortise the per-call
# cost, small enough that padding the last chunk to its bucket wastes little.
BATCH_CHUNK = 4096


def bucket_for(n: int) -> int:
    """The smallest bucket holding n rows (n <= MAX_BUCKET)."""
    if n <= BUCKETS[0]:
        return BUCKETS[0]
    return 1 << (int(n) - 1).bit_length()


def is_aligned(array: np.ndarray) -> bool:
    return array.flags.c_contiguous and array.ctypes.data % 64 == 0


class StagingBuffers:
    """One aligned buffer per bucket for each named input; not thread-safe by itself."""

    def __init__(
        self, shapes: dict[str, Callable[[int], tuple[int, ...]]], dtype: type = np.float32
    ) -> None:
        # shapes: name -> function of the bucket size giving the buffer's shape.
        self._shapes = shapes
        self._dtype = dtype
        self._buffers: dict[tuple[str, int], np.ndarray] = {}

    def get(self, name: str, bucket: int) -> np.ndarray:
        key = (name, bucket)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = aligned_empty(self._shapes[name](bucket), self._dtype)
            buffer.fill(0)
            self._buffers[key] = buffer
        return buffer
