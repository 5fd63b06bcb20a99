"""Request ids: 128 random bits as 32 hex characters, cheap enough for the hot path.

`uuid.uuid4().hex` costs a few µs per call; reading the OS's randomness in blocks of 4 KiB
and slicing costs a fraction of that. Ids are unguessable (the service accepts feedback
only for ids it issued).
"""

from __future__ import annotations

import os
import threading

__all__ = ["new_request_id", "new_request_ids"]

_BLOCK_IDS = 256
_lock = threading.Lock()
_pool: list[str] = []


def new_request_id() -> str:
    try:
        return _pool.pop()  # list.pop is atomic under the GIL
    except IndexError:
        with _lock:
            if not _pool:
                hexed = os.urandom(16 * _BLOCK_IDS).hex()
                _pool.extend(hexed[i : i + 32] for i in range(0, len(hexed), 32))
        return new_request_id()


def new_request_ids(count: int) -> list[str]:
    """`count` fresh ids in one read of the OS's randomness (the columnar batch path)."""
    hexed = os.urandom(16 * count).hex()
    return [hexed[i : i + 32] for i in range(0, 32 * count, 32)]
