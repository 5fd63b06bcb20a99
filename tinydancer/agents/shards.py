"""Sharding the learning state: which shard owns an agent or a request, blocks split by
shard, and one routing view merged from every shard's snapshot.

A serving layer may run the registry and the breaker as several shards, each owning the
agents `agent_shard(name, shards)` names, and the decision ledger as several shards,
each holding the requests `request_shard(request_id, shards)` names. Both are a CRC-32 of
the UTF-8 key modulo the shard count: the same in every process and every run (Python's
`hash()` of a str is salted per process). A request id is 32 random hex characters, so
its shard is uniform; it is the id itself that names its ledger shard, and a report for
an id nobody issued lands on some shard whose ledger refuses it (`unknown_request`).
With one shard every function here is the identity.

    shards = 2
    owner = agent_shard("gpt-4o-mini", shards)             # 0 or 1, everywhere
    parts = split_outcomes(block, shards)                  # parts[k]: rows of shard k's agents
    view = merge_registry_snapshots([s0, s1])              # AgentRegistry.restore(view)

The bandit's idle ageing (`BanditConfig.idle_half_life_outcomes`) counts outcomes: a
shard counts its own (`bandit_updates` per shard), so with shards an agent's evidence ages
with the outcomes of the agents of its shard, not of all agents. The merged view keeps
each posterior's age (its shard's count since its last outcome) exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

import numpy as np

from tinydancer.agents.bulk import OutcomeBlock
from tinydancer.agents.ledger import LedgerBlock, LedgerEntry
from tinydancer.agents.registry import check_outcome_values
from tinydancer.errors import InvalidRequestError

__all__ = [
    "MAX_SHARDS",
    "ShardLearner",
    "agent_shard",
    "apply_forwarded",
    "check_shards",
    "merge_breaker_snapshots",
    "merge_registry_snapshots",
    "request_shard",
    "restrict_snapshot",
    "rows_by_shard",
    "split_by_agent",
    "split_by_request",
    "split_entries",
    "split_outcomes",
    "take_rows",
]

MAX_SHARDS = 64
_Block = TypeVar("_Block")


def check_shards(shards: int, field: str = "shards") -> int:
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise InvalidRequestError(field, shards, f"an integer in [1, {MAX_SHARDS}]")
    return shards


def _shard(key: str, shards: int) -> int:
    return 0 if shards == 1 else zlib.crc32(key.encode("utf-8")) % shards


def agent_shard(name: str, shards: int) -> int:
    """The registry and breaker shard that owns agent `name`."""
    return _shard(name, shards)


def request_shard(request_id: str, shards: int) -> int:
    """The ledger shard that holds request `request_id`'s decision (and takes its feedback)."""
    return _shard(request_id, shards)


def rows_by_shard(names: Sequence[str], agent: np.ndarray, shards: int) -> list[np.ndarray]:
    """Row indices of each shard, in their order, for rows whose agent is `names[agent[i]]`."""
    owner = np.array([agent_shard(n, shards) for n in names], np.int64)
    of_row = owner[np.asarray(agent, np.int64)] if len(names) else np.zeros(0, np.int64)
    return [np.flatnonzero(of_row == k) for k in range(shards)]


def take_rows(block: _Block, rows: np.ndarray) -> _Block:
    """A columnar dataclass block (`names` plus per-row columns) restricted to `rows`;
    `names` stays whole, so the agent codes keep their meaning."""
    changes: dict[str, Any] = {}
    for f in fields(block):  # type: ignore[arg-type]
        value = getattr(block, f.name)
        if f.name == "names" or value is None:
            continue
        if isinstance(value, np.ndarray):
            changes[f.name] = value[rows]
        else:  # a sequence of ids
            changes[f.name] = type(value)(value[i] for i in rows.tolist())
    return replace(block, **changes)  # type: ignore[type-var]


def split_by_agent(block: _Block, shards: int) -> list[_Block]:
    """Any columnar block with `names` and `agent` (OutcomeBlock, BreakerEvents,
    AttemptBlock), split by the agents' shards; with one shard, `[block]` itself."""
    if shards == 1:
        return [block]
    rows = rows_by_shard(block.names, block.agent, shards)  # type: ignore[attr-defined]
    return [take_rows(block, r) for r in rows]


def split_outcomes(block: OutcomeBlock, shards: int) -> list[OutcomeBlock]:
    return split_by_agent(block, shards)


def split_entries(
    entries: Sequence[LedgerEntry | LedgerBlock], shards: int
) -> list[list[LedgerEntry | LedgerBlock]]:
    """Ledger entries and blocks by their requests' shards, each shard's in order (a block's
    rows go to their shards as smaller blocks)."""
    if shards == 1:
        return [list(entries)]
    parts: list[list[LedgerEntry | LedgerBlock]] = [[] for _ in range(shards)]
    for item in entries:
        if isinstance(item, LedgerEntry):
            parts[request_shard(item.request_id, shards)].append(item)
            continue
        owner = np.array([request_shard(r, shards) for r in item.request_ids], np.int64)
        for k in range(shards):
            rows = np.flatnonzero(owner == k)
            if len(rows) == len(owner):
                parts[k].append(item)
            elif len(rows):
                parts[k].append(
                    LedgerBlock(
                        [item.request_ids[i] for i in rows.tolist()],
                        item.names,
                        item.ranked[rows],
                        item.qualities[rows],
                        item.mode,
                    )
                )
    return parts


def split_by_request(items: Sequence[Any], shards: int, key: int = 0) -> list[list[Any]]:
    """Tuples (a feedback report, an `Answer`) by the shard of their request id (`item[key]`)."""
    parts: list[list[Any]] = [[] for _ in range(shards)]
    for item in items:
        parts[request_shard(item[key], shards)].append(item)
    return parts


def merge_registry_snapshots(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One registry snapshot (for `AgentRegistry.restore`) from every shard's, in shard
    order. `version` is the sum of the shards' (it grows whenever one does); each
    posterior's `updated_at` is moved so that its age against the merged `bandit_updates`
    equals its age in its own shard. One snapshot is returned as it is."""
    if len(snapshots) == 1:
        return snapshots[0]
    if not snapshots:
        raise InvalidRequestError("snapshots", 0, "at least one shard's snapshot")
    now = max(int(s.get("bandit_updates", 0)) for s in snapshots)
    agents = []
    for snapshot in snapshots:
        shift = now - int(snapshot.get("bandit_updates", 0))
        for entry in snapshot["agents"]:
            posterior = dict(entry["posterior"])
            if "updated_at" in posterior:
                posterior["updated_at"] = int(posterior["updated_at"]) + shift
            agents.append({**entry, "posterior": posterior})
    return {
        **snapshots[0],
        "bandit_updates": now,
        "version": sum(int(s["version"]) for s in snapshots),
        "agents": agents,
    }


def merge_breaker_snapshots(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One breaker snapshot (for a `BreakerView`) from every shard's: their states (each
    agent in one shard), the earliest change, `version` the sum."""
    if len(snapshots) == 1:
        return snapshots[0]
    states: dict[str, Any] = {}
    for snapshot in snapshots:
        states.update(snapshot["states"])
    return {
        "version": sum(int(s["version"]) for s in snapshots),
        "at": max(float(s.get("at", 0.0)) for s in snapshots),
        "next_change_at": min(float(s.get("next_change_at", float("inf"))) for s in snapshots),
        "states": states,
    }


class ShardLearner:
    """What one ledger shard's accepted feedback teaches, for `DecisionLedger.settle`'s
    `registry` argument: the agents `shard` owns learn at once in `registry`; another
    shard's agent's outcome is checked as the registry would check it (so a bad value is
    refused before the decision is consumed) and queued for its owner (`take`)."""

    def __init__(self, registry: Any, shard: int, shards: int) -> None:
        self.registry, self.shard, self.shards = registry, shard, shards
        self.forwarded: dict[int, list[tuple[str, tuple[Any, ...], dict[str, Any]]]] = {}

    def _owner(self, agent: str) -> int:
        return agent_shard(agent, self.shards)

    def record_outcome(
        self,
        request_id: str,
        agent: str,
        success: bool,
        latency_ms: float | None = None,
        quality: float | None = None,
        cost_usd: float | None = None,
        *,
        model_quality: float | None = None,
        learn: bool = True,
    ) -> None:
        args = (request_id, agent, success, latency_ms, quality, cost_usd)
        kwargs = {"model_quality": model_quality, "learn": learn}
        owner = self._owner(agent)
        if owner == self.shard:
            self.registry.record_outcome(*args, **kwargs)
            return
        check_outcome_values(request_id, latency_ms, quality, cost_usd, model_quality)
        if not isinstance(success, bool):
            raise InvalidRequestError("success", success, "true or false", f"request {request_id}")
        self.forwarded.setdefault(owner, []).append(("record_outcome", args, kwargs))

    def record_quality(
        self, request_id: str, agent: str, quality: float, *, model_quality: float | None = None
    ) -> None:
        owner = self._owner(agent)
        if owner == self.shard:
            self.registry.record_quality(request_id, agent, quality, model_quality=model_quality)
            return
        if quality is None:
            raise InvalidRequestError(
                "quality", None, "a number in [0, 1]", f"request {request_id}"
            )
        check_outcome_values(request_id, None, quality, None, model_quality)
        self.forwarded.setdefault(owner, []).append(
            ("record_quality", (request_id, agent, quality), {"model_quality": model_quality})
        )

    def take(self) -> dict[int, list[tuple[str, tuple[Any, ...], dict[str, Any]]]]:
        forwarded, self.forwarded = self.forwarded, {}
        return forwarded


def apply_forwarded(
    registry: Any, items: Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]]
) -> int:
    """On the owning shard: another shard's `ShardLearner.take()` items, in order. An agent
    removed meanwhile is skipped (as a gateway block skips it). Returns the items applied."""
    applied = 0
    for method, args, kwargs in items:
        if method in ("record_outcome", "record_quality") and args[1] in registry:
            getattr(registry, method)(*args, **kwargs)
            applied += 1
    return applied


def restrict_snapshot(snapshot: dict[str, Any], shard: int, shards: int) -> dict[str, Any]:
    """A registry snapshot keeping only the agents `shard` owns (a shard starting from an
    unsharded registry's snapshot: each agent keeps its metrics and posterior)."""
    agents = [e for e in snapshot["agents"] if agent_shard(e["agent"]["name"], shards) == shard]
    return {**snapshot, "agents": agents}
