"""Small routing-outcomes split directories written to a temporary path, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["write_split"]


def write_split(
    directory: Path,
    agents: list[str],
    n: int,
    seed: int,
    *,
    dim: int = 384,
    thresholds: list[float] | None = None,
) -> Path:
    """A small split: prompt ids p0..p{n-1}; agent a's quality is 1 when the embedding's
    coordinate (index of a) is above its threshold (default 0), else 0 (so the prompt
    carries signal)."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, dim)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    directory.mkdir(parents=True)
    ids = [f"p{i}" for i in range(n)]
    pq.write_table(
        pa.table(
            {
                "prompt_id": ids,
                "text": [f"prompt {i}" for i in range(n)],
                "embedding": pa.array(list(e), type=pa.list_(pa.float32(), dim)),
            }
        ),
        directory / "prompts.parquet",
    )
    cut = thresholds or [0.0] * len(agents)
    rows = [
        (pid, agent, float(e[i, j] > cut[j]), 0.001 * (j + 1))
        for i, pid in enumerate(ids)
        for j, agent in enumerate(agents)
    ]
    pid, agent, quality, cost = zip(*rows, strict=True)
    pq.write_table(
        pa.table({"prompt_id": pid, "agent": agent, "quality": quality, "cost_usd": cost}),
        directory / "outcomes.parquet",
    )
    return directory
