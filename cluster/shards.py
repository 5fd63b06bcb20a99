"""A router replica's view of the state shards: which actor each call goes to.

With `state_shards = 1` every method makes exactly the calls a replica made before
sharding (one registry actor, one breaker actor). With N shards (`tinydancer.agents.shards`
names the owners):

* refresh: one `snapshot_if_newer` per registry shard and per breaker shard, concurrently;
  when any changed, the routing view is the merge of every shard's latest snapshot;
* learning (`ship_learning`, once per `history_push_interval_s`): each shard gets its part,
  one call per shard and kind: its requests' ledger entries and answers, its agents'
  attempts (registry, then breaker);
* feedback: a coalesced batch goes to the ledger shards its request ids name, one call per
  shard (each report to exactly one actor);
* agent administration goes to the agent's shard; listing and stats gather every shard;
* probe leases go to the agent's breaker shard; model rollout and metrics stay on shard 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray

from tinydancer.agents.shards import (
    agent_shard,
    merge_breaker_snapshots,
    merge_registry_snapshots,
    request_shard,
    rows_by_shard,
    split_by_request,
    split_entries,
    take_rows,
)
from tinydancer.gateway.outcomes import AttemptBlock

__all__ = ["StateShards"]

_BY_AGENT = {"register", "update", "remove", "set_active", "get"}


def _handles(actors: Any) -> list[Any]:
    return list(actors) if isinstance(actors, list | tuple) else [actors]


class StateShards:
    def __init__(self, registries: Any, breakers: Any) -> None:
        self.registries, self.breakers = _handles(registries), _handles(breakers)
        if len(self.registries) != len(self.breakers):
            raise ValueError(
                f"{len(self.registries)} registry shards but {len(self.breakers)} breaker shards"
            )
        self.count = len(self.registries)
        self.registry_snapshots: list[dict[str, Any]] = []
        self.breaker_snapshots: list[dict[str, Any]] = []

    @property
    def registry(self) -> Any:
        """Shard 0: also the cluster-wide state (model rollout, replica metrics)."""
        return self.registries[0]

    # -- snapshots --------------------------------------------------------------------------------
    def first_snapshots(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Blocking (a replica's constructor): every shard's current snapshots, merged."""
        self.registry_snapshots = ray.get([r.snapshot_if_newer.remote(-1) for r in self.registries])
        self.breaker_snapshots = ray.get([b.snapshot_if_newer.remote(-1) for b in self.breakers])
        return (
            merge_registry_snapshots(self.registry_snapshots),
            merge_breaker_snapshots(self.breaker_snapshots),
        )

    async def refresh(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The merged registry and breaker snapshots, each None when no shard changed."""
        calls = [
            r.snapshot_if_newer.remote(int(s["version"]))
            for r, s in zip(self.registries, self.registry_snapshots, strict=True)
        ] + [
            b.snapshot_if_newer.remote(int(s["version"]))
            for b, s in zip(self.breakers, self.breaker_snapshots, strict=True)
        ]
        replies = await asyncio.gather(*calls)
        registry, breaker = replies[: self.count], replies[self.count :]
        return (
            self._merge(registry, self.registry_snapshots, merge_registry_snapshots),
            self._merge(breaker, self.breaker_snapshots, merge_breaker_snapshots),
        )

    @staticmethod
    def _merge(replies: Sequence[Any], kept: list[dict[str, Any]], merge: Any) -> Any:
        if all(reply is None for reply in replies):
            return None
        for k, reply in enumerate(replies):
            if reply is not None:
                kept[k] = reply
        return merge(kept)

    async def lease(self, agent: str, wanted: int) -> int:
        return int(await self.breakers[agent_shard(agent, self.count)].lease.remote(agent, wanted))

    # -- learning ---------------------------------------------------------------------------------
    async def ship(
        self, entries: list[Any], block: AttemptBlock, answers: list[Any], max_retry_after_s: float
    ) -> tuple[BaseException, np.ndarray, list[Any]] | None:
        """Ledger entries, then attempts and answers, to the shards that own them (the
        breaker shards get their attempts once their registry shard took them). None, or
        the first failure with the rows of `block` and the answers whose shard failed (to
        keep for the next push); every shard had its turn either way."""
        if self.count == 1:
            parts_entries, parts_answers = [entries], [answers]
            rows, blocks = [np.arange(len(block))], [block]
        else:
            parts_entries = split_entries(entries, self.count)
            parts_answers = split_by_request(answers, self.count)
            rows = rows_by_shard(block.names, block.agent, self.count)
            blocks = [take_rows(block, r) for r in rows]
        results = await asyncio.gather(
            *(
                self._ship_shard(k, parts_entries[k], blocks[k], parts_answers[k])
                for k in range(self.count)
            ),
            return_exceptions=True,
        )
        failed = [k for k, r in enumerate(results) if isinstance(r, BaseException)]
        await asyncio.gather(
            *(
                self.breakers[k].record_attempts.remote(blocks[k], max_retry_after_s)
                for k in range(self.count)
                if k not in failed and len(blocks[k])
            )
        )
        if not failed:
            return None
        error = results[failed[0]]
        assert isinstance(error, BaseException)
        kept_rows = np.sort(np.concatenate([rows[k] for k in failed]))
        return error, kept_rows, [a for k in failed for a in parts_answers[k]]

    async def _ship_shard(
        self, k: int, entries: list[Any], block: AttemptBlock, answers: list[Any]
    ) -> None:
        if entries:
            await self.registries[k].remember_decisions.remote(entries)
        if len(block) or answers:
            await self.registries[k].record_gateway.remote(block, answers)

    # -- feedback and administration --------------------------------------------------------------
    async def feedback(self, items: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """Each report to its request's ledger shard: one call per shard with reports."""
        if self.count == 1:
            return list(await self.registry.record_feedback_many.remote(items))
        order: list[list[tuple[int, tuple[Any, ...]]]] = [[] for _ in range(self.count)]
        for i, item in enumerate(items):
            order[request_shard(item[0], self.count)].append((i, item))
        shards = [k for k in range(self.count) if order[k]]
        replies = await asyncio.gather(
            *(
                self.registries[k].record_feedback_many.remote([item for _, item in order[k]])
                for k in shards
            )
        )
        results: list[dict[str, Any]] = [{}] * len(items)
        for k, reply in zip(shards, replies, strict=True):
            for (i, _), result in zip(order[k], reply, strict=True):
                results[i] = result
        return results

    async def registry_call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """An administration call on the agent's shard (`list` and `stats` of all: every shard)."""
        if self.count == 1:
            return dict(await self.registry.call.remote(method, *args, **kwargs))
        if method in _BY_AGENT or (method == "stats" and args):
            name = args[0]["name"] if method == "register" else args[0]
            shard = agent_shard(str(name), self.count)
            return dict(await self.registries[shard].call.remote(method, *args, **kwargs))
        replies = await asyncio.gather(
            *(r.call.remote(method, *args, **kwargs) for r in self.registries)
        )
        failed = [reply for reply in replies if not reply["ok"]]
        if failed or method not in ("list", "stats"):
            return dict(failed[0] if failed else replies[0])
        if method == "list":
            return {"ok": True, "result": [a for reply in replies for a in reply["result"]]}
        merged: dict[str, Any] = {"version": 0, "agents": {}}
        for reply in replies:
            merged["version"] += reply["result"]["version"]
            merged["agents"].update(reply["result"]["agents"])
        return {"ok": True, "result": merged}

    async def statuses(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The registry's and the breaker's status, summed over the shards (and each shard's)."""
        registries, breaker = await asyncio.gather(
            asyncio.gather(*(r.status.remote() for r in self.registries)), self.breaker_status()
        )
        if self.count == 1:
            return registries[0], breaker
        registry = dict(registries[0])
        for key in ("version", "agents", "bandit_updates", "open_decisions"):
            registry[key] = sum(r[key] for r in registries)
        registry["refused_feedback"] = {
            reason: sum(r["refused_feedback"].get(reason, 0) for r in registries)
            for reason in {reason for r in registries for reason in r["refused_feedback"]}
        }
        registry["shards"] = list(registries)
        return registry, breaker

    async def breaker_status(self) -> dict[str, Any]:
        breakers = await asyncio.gather(*(b.status.remote() for b in self.breakers))
        if self.count == 1:
            return dict(breakers[0])
        return {
            "version": sum(b["version"] for b in breakers),
            "states": {n: s for b in breakers for n, s in b["states"].items()},
            "transitions": sum(b["transitions"] for b in breakers),
            "shards": list(breakers),
        }

    async def metrics_view(self) -> dict[str, Any]:
        """Shard 0's view (replica metrics, models), with learning counted over every shard."""
        views = await asyncio.gather(*(r.metrics_view.remote() for r in self.registries))
        view = dict(views[0])
        view["bandit_updates"] = sum(v["bandit_updates"] for v in views)
        view["version"] = sum(v["version"] for v in views)
        return view
