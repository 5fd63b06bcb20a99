"""Small helpers shared by the cluster tests."""

from __future__ import annotations

import base64
import socket

import numpy as np

DIM = 384


def vector(seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def b64(block: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(block, "<f4").tobytes()).decode()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
