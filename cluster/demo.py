"""`tinydancer demo`: start the cluster, drive a realistic workload through it, summarise, exit.

The default workload is synthetic so that it runs on a fresh machine: requests come from
topic clusters in embedding space; each agent of the default pool has a latent
per-topic skill around its prior quality, a price per 1k tokens and a latency. Forty
per cent in, the busiest agent's quality drifts down; from 60 to 75 % the agent then
carrying most traffic fails every request (an outage). Clients report outcomes as
feedback, over HTTP (three quarters of requests) and through the Serve handle (the
rest), so the summary
shows learning, drift, failover and recovery. `--data DIR` replays a routing-outcomes
split instead: its embeddings as requests and its recorded outcomes as feedback.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests as http

from cluster.config import AppArgs
from cluster.default_agents import DEFAULT_AGENTS
from cluster.runner import LocalCluster
from tinydancer.agents.breaker import BreakerConfig

__all__ = ["run_demo"]

STRONGEST = "gpt-4-1106-preview"


class SyntheticWorld:
    phase_names = ("learning", "drift", "outage", "recovery")

    def __init__(self, total: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.agents = [a["name"] for a in DEFAULT_AGENTS]
        self.price = {a["name"]: a["cost"]["per_1k_tokens_usd"] for a in DEFAULT_AGENTS}
        self.latency = {a["name"]: a["expected_latency_ms"] for a in DEFAULT_AGENTS}
        topics = rng.normal(size=(8, 384))
        topics /= np.linalg.norm(topics, axis=1, keepdims=True)
        self.topic = rng.integers(0, 8, total)
        noise = rng.normal(size=(total, 384)) * 0.5 / np.sqrt(384)
        emb = topics[self.topic] + noise
        self.embeddings = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
        prior = np.array([a["expected_quality"] for a in DEFAULT_AGENTS])
        self.skill = np.clip(prior[:, None] + rng.normal(0, 0.12, (len(prior), 8)), 0.05, 0.98)
        self.tokens = rng.lognormal(np.log(700), 0.4, total)
        self.draws = rng.random(total)
        self.jitter = rng.lognormal(0, 0.25, total)
        self.total = total
        self.strongest = STRONGEST
        self.drift_agent: str | None = None
        self.outage_agent: str | None = None

    def outcome(self, i: int, agent: str) -> dict[str, Any]:
        a = self.agents.index(agent)
        quality = float(self.skill[a, self.topic[i]])
        if agent == self.drift_agent and i >= 0.4 * self.total:
            quality *= 0.3
        latency = float(self.latency[agent] * self.jitter[i])
        success = bool(self.draws[i] < quality)
        if agent == self.outage_agent and 0.6 * self.total <= i < 0.75 * self.total:
            success, latency = False, 30_000.0
        return {
            "success": success,
            "quality": float(success),
            "latency_ms": latency,
            "cost_usd": float(self.price[agent] * self.tokens[i] / 1000.0),
        }


class DatasetWorld:
    phase_names = ("0-40 %", "40-60 %", "60-75 %", "75-100 %")

    def __init__(self, directory: str, total: int, seed: int) -> None:
        from tinydancer.datasets import load_split

        data = load_split(directory)
        rng = np.random.default_rng(seed)
        self.rows = rng.integers(0, len(data), total)
        self.embeddings = data.embeddings[self.rows]
        self.data, self.total = data, total
        self.agents = list(data.agents)
        # the baseline: the agent with the best mean recorded quality on the replayed rows
        quality = data.quality[self.rows]
        known = np.isfinite(quality)
        mean = np.where(known, quality, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
        self.strongest = self.agents[int(np.argmax(mean))]
        self.drift_agent = self.outage_agent = None

    def outcome(self, i: int, agent: str) -> dict[str, Any]:
        j = self.data.agents.index(agent) if agent in self.data.agents else -1
        q = float(self.data.quality[self.rows[i], j]) if j >= 0 else float("nan")
        c = float(self.data.cost_usd[self.rows[i], j]) if j >= 0 else 0.0
        if not np.isfinite(q):
            return {"success": False, "quality": 0.0, "latency_ms": None, "cost_usd": 0.0}
        return {"success": q >= 0.5, "quality": q, "latency_ms": None, "cost_usd": c}


@dataclass
class Tally:
    agents: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    phases: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _phase(i: int, total: int) -> int:
    return 0 if i < 0.4 * total else 1 if i < 0.6 * total else 2 if i < 0.75 * total else 3


def run_demo(
    *,
    requests_total: int = 2000,
    concurrency: int = 8,
    seed: int = 7,
    data: str | None = None,
    port: int = 8000,
    history_path: str | None = None,
    as_json: bool = False,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tinydancer-demo-"))
    args = AppArgs(
        history_path=history_path or str(workdir / "history.duckdb"),
        export_interval_s=5.0,
        # the demo compresses hours of traffic into seconds: probe an open circuit after
        # 1.5 s, and after at most 3 s however often it failed
        breaker=BreakerConfig(cooldown_s=1.5, max_cooldown_s=3.0),
    )
    # the workload first: a bad --data directory is reported before any cluster starts
    world: Any = (
        DatasetWorld(data, requests_total, seed) if data else SyntheticWorld(requests_total, seed)
    )
    # With --json, stdout carries the summary alone: what Ray prints goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet:
        started = time.perf_counter()
        cluster = LocalCluster.start(args, port=port)
        try:
            cluster.wait_ready()
            startup_s = time.perf_counter() - started
            tally, run_s, stats, breaker_events = _drive(
                cluster, world, requests_total, concurrency
            )
        except BaseException:
            cluster.stop()  # an interrupted or failed run leaves no cluster behind
            raise
        integrity = cluster.stop()
    summary = _summary(
        world, tally, stats, breaker_events, integrity, startup_s, run_s, requests_total
    )
    print(json.dumps(summary, indent=2) if as_json else _text(summary))
    return summary


def _drive(
    cluster: LocalCluster, world: Any, requests_total: int, concurrency: int
) -> tuple[Tally, float, dict[str, Any], list[Any]]:
    """Send the workload with feedback (HTTP and handle), return the tally and cluster state."""
    tally = Tally()
    local = threading.local()

    def session() -> http.Session:
        if not hasattr(local, "session"):
            local.session = http.Session()
        return local.session

    def one(i: int) -> None:
        body = {
            "embedding": world.embeddings[i].tolist(),
            "optimize_for": "balanced",
            "expected_tokens": float(getattr(world, "tokens", [700] * (i + 1))[i]),
        }
        by_handle = i % 4 == 3
        t0 = time.perf_counter()
        try:
            if by_handle:
                decision = cluster.handle.route.remote(body).result()
            else:
                reply = session().post(f"{cluster.url}/v1/route", json=body, timeout=30)
                if reply.status_code != 200:
                    with tally.lock:
                        tally.errors[f"route {reply.status_code}"] += 1
                    return
                decision = reply.json()
        except Exception as exc:
            with tally.lock:
                tally.errors[type(exc).__name__] += 1
            return
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        outcome = world.outcome(i, decision["agent"])
        feedback = {"request_id": decision["request_id"], "agent": decision["agent"], **outcome}
        if by_handle:
            cluster.handle.feedback.remote(feedback).result()
        else:
            session().post(f"{cluster.url}/v1/feedback", json=feedback, timeout=30)
        with tally.lock:
            tally.agents.append(decision["agent"])
            tally.index.append(i)
            tally.phases.append(_phase(i, requests_total))
            tally.latency_ms.append(elapsed_ms)
            tally.cost.append(outcome["cost_usd"])
            tally.quality.append(outcome["quality"])

    t_run = time.perf_counter()
    synthetic = isinstance(world, SyntheticWorld)
    warm = min(200, requests_total)
    outage_from = max(warm, int(0.6 * requests_total))
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warm)))
        if synthetic:  # the drift hits the agent the router has come to prefer
            world.drift_agent = _busiest(tally, since=0, besides=None)
        list(pool.map(one, range(warm, outage_from)))
        if synthetic:  # the outage hits the agent carrying the traffic once the drift is learnt
            since = int(0.4 * requests_total)
            world.outage_agent = _busiest(tally, since=since, besides=world.drift_agent)
        list(pool.map(one, range(outage_from, requests_total)))
    run_s = time.perf_counter() - t_run
    stats = http.get(f"{cluster.url}/v1/stats", timeout=30).json()
    transitions = cluster.actor("history").transitions.remote()
    import ray

    breaker_events = ray.get(transitions)
    return tally, run_s, stats, breaker_events


def _busiest(tally: Tally, *, since: int, besides: str | None) -> str | None:
    with tally.lock:
        routed = zip(tally.agents, tally.index, strict=True)
        counts = Counter(a for a, i in routed if i >= since and a != besides)
    return counts.most_common(1)[0][0] if counts else None


def _summary(
    world: Any,
    tally: Tally,
    stats: dict[str, Any],
    events: list[dict[str, Any]],
    integrity: dict[str, int] | None,
    startup_s: float,
    run_s: float,
    total: int,
) -> dict[str, Any]:
    agents = np.asarray(tally.agents)
    phases = np.asarray(tally.phases)
    share = {
        a: round(float(np.mean(agents == a)), 3) for a, _ in Counter(tally.agents).most_common()
    }
    by_phase = {}
    for p, name in enumerate(world.phase_names):
        picked = agents[phases == p]
        by_phase[name] = {
            a: round(c / max(len(picked), 1), 3) for a, c in Counter(picked.tolist()).most_common(4)
        }
    # the counterfactual: the same routed requests, all sent to the strongest agent
    baseline = [world.outcome(i, world.strongest) for i in tally.index]
    lat = np.asarray(tally.latency_ms) if tally.latency_ms else np.zeros(1)
    return {
        "requests": total,
        "routed": len(agents),
        "failed": dict(tally.errors),
        "startup_s": round(startup_s, 1),
        "run_s": round(run_s, 1),
        "throughput_rps": round(len(agents) / max(run_s, 1e-9), 1),
        "route_latency_ms": {f"p{q}": round(float(np.percentile(lat, q)), 2) for q in (50, 95, 99)},
        "traffic_share": share,
        "traffic_by_phase": by_phase,
        "drift_agent": getattr(world, "drift_agent", None),
        "outage_agent": getattr(world, "outage_agent", None),
        "strongest_agent": world.strongest,
        "cost_usd": round(float(np.sum(tally.cost)), 4),
        "cost_always_strongest_usd": round(float(sum(b["cost_usd"] for b in baseline)), 4),
        "mean_quality": round(float(np.mean(tally.quality)), 4) if tally.quality else None,
        "mean_quality_always_strongest": (
            round(float(np.mean([b["quality"] for b in baseline])), 4) if baseline else None
        ),
        "breaker_events": [
            f"{e['agent']}: {e['from_state']} -> {e['to_state']} ({e['reason']})" for e in events
        ],
        "bandit_updates": stats["registry"]["bandit_updates"],
        "history": integrity,
    }


def _text(s: dict[str, Any]) -> str:
    lines = [
        f"Tiny Dancer demo — {s['routed']}/{s['requests']} requests routed through the local Ray Serve cluster "
        f"(startup {s['startup_s']} s, run {s['run_s']} s, {s['throughput_rps']} req/s incl. feedback)",
        f"  route latency (client-side): p50 {s['route_latency_ms']['p50']} ms, p95 {s['route_latency_ms']['p95']} ms, "
        f"p99 {s['route_latency_ms']['p99']} ms; failures: {s['failed'] or 'none'}",
        "  traffic per agent: "
        + ", ".join(f"{a} {v:.1%}" for a, v in list(s["traffic_share"].items())[:6]),
    ]
    for phase, shares in s["traffic_by_phase"].items():
        lines.append(f"    {phase:9s}: " + ", ".join(f"{a} {v:.0%}" for a, v in shares.items()))
    if s["drift_agent"]:
        lines.append(
            f"  drift: {s['drift_agent']} lost quality at 40 %; outage: {s['outage_agent']} failed 60-75 %"
        )
    if s["cost_always_strongest_usd"]:
        saved = 1 - s["cost_usd"] / s["cost_always_strongest_usd"]
        lines.append(
            f"  cost ${s['cost_usd']:.4f} vs ${s['cost_always_strongest_usd']:.4f} always using "
            f"{s['strongest_agent']} ({saved:.0%} saved); mean quality {s['mean_quality']} vs "
            f"{s['mean_quality_always_strongest']}"
        )
    events = s["breaker_events"]
    lines.append(f"  breaker events: {len(events)}")
    lines.extend(f"    {e}" for e in events[:24])
    if len(events) > 24:
        lines.append(f"    ... {len(events) - 24} more")
    lines.append(f"  bandit updates: {s['bandit_updates']}; history rows: {s['history']}")
    return "\n".join(lines)
