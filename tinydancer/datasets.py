"""Routing-outcomes datasets: a split directory with `prompts.parquet` and `outcomes.parquet`.

    prompts.parquet   prompt_id (string), text (string), embedding (list<float32>[384])
    outcomes.parquet  prompt_id, agent, quality in [0, 1], cost_usd (nullable),
                      latency_ms (optional)

`load_split` returns dense matrices: one row per prompt, one column per agent, NaN where
the source has no outcome for that pair. `combine_splits` stacks several splits into one
(the union of their agents; a prompt id is qualified by its split, so equal ids in
different splits stay distinct prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tinydancer.errors import InvalidRequestError

__all__ = ["RoutingOutcomes", "combine_splits", "describe_source", "load_split"]


@dataclass(frozen=True, eq=False)
class RoutingOutcomes:
    """Prompts x agents. `quality`, `cost_usd`, `latency_ms` are (n, A) with NaN = missing."""

    prompt_ids: list[str]
    agents: list[str]
    embeddings: np.ndarray  # (n, D) float32
    quality: np.ndarray  # (n, A) float64
    cost_usd: np.ndarray  # (n, A) float64
    latency_ms: np.ndarray | None = None  # (n, A) float64
    source: str = ""

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def take(self, index: np.ndarray) -> RoutingOutcomes:
        return RoutingOutcomes(
            [self.prompt_ids[i] for i in index],
            self.agents,
            self.embeddings[index],
            self.quality[index],
            self.cost_usd[index],
            None if self.latency_ms is None else self.latency_ms[index],
            self.source,
        )

    def reindex_agents(self, agents: list[str]) -> RoutingOutcomes:
        """Columns in the given agent order (agents absent here become all-NaN columns)."""
        position = {a: i for i, a in enumerate(self.agents)}

        def pick(matrix: np.ndarray) -> np.ndarray:
            out = np.full((matrix.shape[0], len(agents)), np.nan)
            for j, agent in enumerate(agents):
                if agent in position:
                    out[:, j] = matrix[:, position[agent]]
            return out

        latency = None if self.latency_ms is None else pick(self.latency_ms)
        return RoutingOutcomes(
            self.prompt_ids,
            list(agents),
            self.embeddings,
            pick(self.quality),
            pick(self.cost_usd),
            latency,
            self.source,
        )

    def mean_cost(self) -> np.ndarray:
        """(A,) mean observed cost per agent (NaN-aware)."""
        return np.nanmean(self.cost_usd, axis=0)


def load_split(directory: str | Path) -> RoutingOutcomes:
    """Read one split directory; raises InvalidRequestError naming what is wrong."""
    path = Path(directory)
    for name in ("prompts.parquet", "outcomes.parquet"):
        if not (path / name).is_file():
            raise InvalidRequestError(
                "data", str(path), f"a directory holding {name}", "file missing"
            )
    prompts = pq.read_table(path / "prompts.parquet", columns=["prompt_id", "embedding"])
    outcomes = pq.read_table(path / "outcomes.parquet")
    prompt_ids = [str(p) for p in prompts.column("prompt_id").to_pylist()]
    if len(set(prompt_ids)) != len(prompt_ids):
        raise InvalidRequestError("prompts.prompt_id", "duplicate ids", "unique prompt ids")
    embeddings = np.stack(prompts.column("embedding").to_numpy(zero_copy_only=False)).astype(
        np.float32
    )
    row = {p: i for i, p in enumerate(prompt_ids)}
    agent_names = outcomes.column("agent").to_pylist()
    agents = sorted(set(agent_names))
    column = {a: j for j, a in enumerate(agents)}
    rows = np.array([row.get(p, -1) for p in outcomes.column("prompt_id").to_pylist()])
    if (rows < 0).any():
        raise InvalidRequestError(
            "outcomes.prompt_id",
            "ids missing from prompts.parquet",
            "every outcome's prompt_id in prompts.parquet",
        )
    cols = np.array([column[a] for a in agent_names])
    shape = (len(prompt_ids), len(agents))

    def dense(name: str) -> np.ndarray:
        values = np.asarray(outcomes.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        out = np.full(shape, np.nan)
        out[rows, cols] = values
        return out

    quality = dense("quality")
    observed = ~np.isnan(quality)
    if (quality[observed] < 0).any() or (quality[observed] > 1).any():
        raise InvalidRequestError("outcomes.quality", "values outside [0, 1]", "quality in [0, 1]")
    latency = dense("latency_ms") if "latency_ms" in outcomes.column_names else None
    return RoutingOutcomes(
        prompt_ids, agents, embeddings, quality, dense("cost_usd"), latency, str(path)
    )


SOURCE_SEPARATOR = "\n"  # between the directories of a combined split's `source`


def describe_source(source: str) -> str:
    """The last three parts of each directory (`routerbench/arc_challenge/train`), joined by ' + '."""
    return " + ".join(
        "/".join(Path(part).parts[-3:]) for part in source.split(SOURCE_SEPARATOR) if part
    )


def combine_splits(splits: list[RoutingOutcomes]) -> RoutingOutcomes:
    """One dataset from several splits: rows stacked, agents the (sorted) union, NaN where a
    split has no outcome for an agent. With more than one split, each prompt id becomes
    `<k>:<id>` (k the split's position), so the same id in two splits is two prompts."""
    if not splits:
        raise InvalidRequestError("data", "no split", "at least one split directory")
    if len(splits) == 1:
        return splits[0]
    dims = {s.embeddings.shape[1] for s in splits}
    if len(dims) != 1:
        raise InvalidRequestError(
            "data",
            f"embedding dimensions {sorted(dims)}",
            "splits whose embeddings have one dimension",
        )
    agents = sorted({a for s in splits for a in s.agents})
    parts = [s.reindex_agents(agents) for s in splits]
    with_latency = all(p.latency_ms is not None for p in parts)
    return RoutingOutcomes(
        [f"{k}:{p}" for k, part in enumerate(parts) for p in part.prompt_ids],
        agents,
        np.concatenate([p.embeddings for p in parts]),
        np.concatenate([p.quality for p in parts]),
        np.concatenate([p.cost_usd for p in parts]),
        np.concatenate([p.latency_ms for p in parts]) if with_latency else None,
        SOURCE_SEPARATOR.join(p.source for p in parts),
    )
