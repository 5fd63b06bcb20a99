"""Where a router's Thompson draws come from: a pool of standard normals on the device
and a seeded stream of offsets into it (see `agents.kernel`).

    draws = ThompsonDraws(seed=0)
    pool = draws.pool(16)            # (POOL_DRAWS, 2, 16) on the device, per agent bucket
    offsets = draws.offsets(256, 65)  # 256 pool rows, each leaving room for 65 draws

Offsets are drawn from the seeded numpy generator in blocks of `OFFSET_BLOCK`, giving
the same values as drawing them call by call (a `Generator.integers` call per request
cost more than the rest of a lone route's Python). Not thread-safe: a router draws under
its lock.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["OFFSET_BLOCK", "POOL_DRAWS", "ThompsonDraws"]

POOL_DRAWS = 8192  # rows of the pool
OFFSET_BLOCK = 256  # offsets drawn from the seeded stream at a time


class ThompsonDraws:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._stream = np.random.default_rng(seed)
        self._block: tuple[int, np.ndarray] = (0, np.zeros(0, np.int64))  # (bound, drawn)
        self._next = 0
        self._pool: tuple[int, Any] | None = None

    def pool(self, agent_bucket: int) -> Any:
        """(POOL_DRAWS, 2, agent_bucket) standard normals on the device (regenerated when
        the agent bucket changes; laid out as the kernel reads them)."""
        if self._pool is None or self._pool[0] != agent_bucket:
            rng = np.random.default_rng([self.seed, agent_bucket])
            normals = rng.standard_normal((POOL_DRAWS, agent_bucket, 2), np.float32)
            self._pool = (agent_bucket, jnp.asarray(normals.transpose(0, 2, 1).copy()))
        return self._pool[1]

    def offsets(self, count: int, draws: int) -> np.ndarray:
        """`count` pool offsets in [0, POOL_DRAWS - draws), the seeded stream's next values."""
        high = POOL_DRAWS - draws
        bound, drawn = self._block
        start = self._next
        if bound != high:  # another number of draws: what was drawn for the old bound is dropped
            drawn, start = drawn[:0], 0
        if start + count > drawn.shape[0]:
            fresh = self._stream.integers(0, high, max(count, OFFSET_BLOCK))
            drawn, start = np.concatenate([drawn[start:], fresh]), 0
        self._block, self._next = (high, drawn), start + count
        return drawn[start : start + count]
