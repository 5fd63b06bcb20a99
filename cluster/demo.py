"""`tinydancer demo`: start the cluster, drive a realistic workload through it, summarise, exit.

The default workload is a gateway run that needs nothing but this machine (see
`cluster.demo_gateway`): plain-text chat requests through `/v1/chat/completions` to fake
upstreams, with a drift, an outage and mid-stream drops, so the summary shows learning,
failover (also mid-stream) and recovery, and the errors clients saw. `--data DIR`
replays a routing-outcomes split instead: its embeddings as `/v1/route` requests (HTTP
and the Serve handle) and its recorded outcomes as feedback.
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
from pathlib import Path
from typing import Any

import numpy as np
import requests as http

from cluster.config import AppArgs
from cluster.demo_gateway import GatewayWorld, drive_gateway
from cluster.demo_tally import Tally
from cluster.runner import LocalCluster
from cluster.startup import StartupProgress
from tinydancer.agents.breaker import BreakerConfig
from tinydancer.gateway.fake_upstream import FakeUpstreams

__all__ = ["run_demo"]


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
    # the workload first: a bad --data directory is reported before any cluster starts
    world: Any = (
        DatasetWorld(data, requests_total, seed) if data else GatewayWorld(requests_total, seed)
    )
    # With --json, stdout carries the summary alone: what Ray prints goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    fleet = FakeUpstreams(world.behaviours, seed=seed) if not data else None
    with quiet, fleet or contextlib.nullcontext():
        args = AppArgs(
            history_path=history_path or str(workdir / "history.duckdb"),
            export_interval_s=5.0,
            # the demo compresses hours of traffic into seconds: probe an open circuit
            # after 1.5 s, and after at most 3 s however often it failed
            breaker=BreakerConfig(cooldown_s=1.5, max_cooldown_s=3.0),
            feedback_wait_s=5.0,  # quality reported the moment an answer ends waits for it
            agents=world.agents_with_endpoints(fleet) if fleet is not None else None,
        )
        progress = StartupProgress()
        cluster = LocalCluster.start(args, port=port, progress=progress)
        try:
            cluster.wait_ready()
            startup_s = progress.elapsed_s
            print(f"cluster up in {startup_s:.1f} s; sending {requests_total} requests ...")
            tally = Tally()
            t_run = time.perf_counter()
            gateway: dict[str, int] | None = None
            if fleet is not None:
                gateway = drive_gateway(cluster, world, fleet, tally, concurrency)
            else:
                _drive(cluster, world, tally, concurrency)
            run_s = time.perf_counter() - t_run
            stats = http.get(f"{cluster.url}/v1/stats", timeout=30).json()
            import ray

            breaker_events = ray.get(cluster.actor("history").transitions.remote())
        except BaseException:
            cluster.stop()  # an interrupted or failed run leaves no cluster behind
            raise
        integrity = cluster.stop()
    summary = _summary(
        world, tally, stats, breaker_events, integrity, startup_s, run_s, requests_total
    )
    summary["gateway"] = gateway
    summary["startup_phases_s"] = {name: round(t, 1) for name, t in progress.durations.items()}
    print(json.dumps(summary, indent=2) if as_json else _text(summary))
    return summary


def _drive(cluster: LocalCluster, world: Any, tally: Tally, concurrency: int) -> None:
    """`--data`: route each row's embedding (HTTP and handle) and report its recorded outcome."""
    local = threading.local()
    total = world.total

    def session() -> http.Session:
        if not hasattr(local, "session"):
            local.session = http.Session()
        return local.session

    def one(i: int) -> None:
        body = {"embedding": world.embeddings[i].tolist(), "optimize_for": "balanced"}
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
        tally.add(i, total, decision["agent"], elapsed_ms, outcome["cost_usd"], outcome["quality"])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))


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
        "latency_ms": {f"p{q}": round(float(np.percentile(lat, q)), 2) for q in (50, 95, 99)},
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
        f"  latency (client-side{', whole answers' if s.get('gateway') else ''}): p50 {s['latency_ms']['p50']} ms, p95 {s['latency_ms']['p95']} ms, "
        f"p99 {s['latency_ms']['p99']} ms; failures: {s['failed'] or 'none'}",
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
    if s.get("gateway"):
        g = s["gateway"]
        lines.append(
            f"  gateway: {s['routed']} answers ({g['streamed']} streamed), client-visible errors: "
            f"{sum(s['failed'].values())}; failovers {g['failovers']} (mid-stream "
            f"{g['mid_stream_failovers']}); quality reports refused: {g['feedback_refused']}"
        )
    events = s["breaker_events"]
    lines.append(f"  breaker events: {len(events)}")
    lines.extend(f"    {e}" for e in events[:24])
    if len(events) > 24:
        lines.append(f"    ... {len(events) - 24} more")
    lines.append(f"  bandit updates: {s['bandit_updates']}; history rows: {s['history']}")
    return "\n".join(lines)
