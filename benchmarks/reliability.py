"""The reliability campaign: bounded load on loopback, and faults injected under load.

    python -m benchmarks.reliability load   [--rate 40 --seconds 60 --step-rate 80 --step-seconds 30]
    python -m benchmarks.reliability faults [--rate 30 --seconds-per-fault 20]
    python -m benchmarks.reliability all    # both, with the long durations, into .bench/reliability.json

Each command starts its own local cluster (127.0.0.1, 2 CPUs), sends open-loop traffic
at a fixed rate (a request is due every 1/rate s whatever the latency; it stops by
itself), and reports p50/p99 latency, error rate, the RSS of every Ray process before
and after, and for faults: requests failed around each kill, time to recover, and how
much of the history survived. The quick versions run in CI from
tests/cluster/test_reliability.py on the test session's cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ray

__all__ = ["OpenLoop", "fault_campaign", "load_campaign", "ray_rss_mb"]


def ray_rss_mb() -> dict[str, float]:
    """RSS (MB) of every process of this user whose command line belongs to Ray."""
    out: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
            if "ray" not in cmdline or "benchmarks.reliability" in cmdline:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        name = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("Name:")), pid
        )
        rss = next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
        label = (
            cmdline.split()[0].split("/")[-1]
            if not cmdline.startswith("ray::")
            else cmdline.split()[0]
        )
        out[f"{label} ({name}, pid {pid})"] = rss / 1024
    return out


@dataclass
class Result:
    sent_at: float
    latency_s: float
    status: int  # 0 = connection error
    request_id: str | None = None


@dataclass
class OpenLoop:
    """Fixed-rate traffic: request i is due at start + i / rate; workers never retry."""

    url: str
    rate: float
    seconds: float
    workers: int = 16
    feedback: bool = True
    results: list[Result] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[Result]:
        start = time.monotonic() + 0.2
        total = int(self.rate * self.seconds)
        next_index = iter(range(total))
        index_lock = threading.Lock()
        vectors = np.random.default_rng(0).normal(size=(64, 384)).astype(np.float32)
        bodies = [{"embedding": (v / np.linalg.norm(v)).tolist()} for v in vectors]

        def worker() -> None:
            with httpx.Client(timeout=30) as client:
                while True:
                    with index_lock:
                        i = next(next_index, None)
                    if i is None:
                        return
                    due = start + i / self.rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    t0 = time.perf_counter()
                    try:
                        reply = client.post(f"{self.url}/v1/route", json=bodies[i % len(bodies)])
                        status, rid = (
                            reply.status_code,
                            reply.json().get("request_id") if reply.status_code == 200 else None,
                        )
                        if rid and self.feedback:
                            client.post(
                                f"{self.url}/v1/feedback",
                                json={
                                    "request_id": rid,
                                    "agent": reply.json()["agent"],
                                    "success": True,
                                    "latency_ms": 500.0,
                                    "quality": 0.9,
                                },
                            )
                    except httpx.HTTPError:
                        status, rid = 0, None
                    with self._lock:
                        self.results.append(Result(due, time.perf_counter() - t0, status, rid))

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.results


def summarize(results: list[Result], seconds: float) -> dict[str, Any]:
    ok = [r.latency_s for r in results if r.status == 200]
    return {
        "requests": len(results),
        "ok": len(ok),
        "error_rate": 1 - len(ok) / max(len(results), 1),
        "achieved_rps": len(ok) / seconds,
        "p50_ms": float(np.percentile(ok, 50) * 1e3) if ok else None,
        "p99_ms": float(np.percentile(ok, 99) * 1e3) if ok else None,
        "errors": {
            str(s): sum(1 for r in results if r.status == s)
            for s in {r.status for r in results}
            if s != 200
        },
    }


def load_campaign(
    url: str, rate: float, seconds: float, step_rate: float, step_seconds: float
) -> dict[str, Any]:
    before = ray_rss_mb()
    phases = {}
    for name, r, s in (("steady", rate, seconds), ("step_up", step_rate, step_seconds)):
        phases[name] = summarize(OpenLoop(url, r, s).run(), s) | {"target_rps": r}
    time.sleep(2)
    after = ray_rss_mb()
    common = set(before) & set(after)
    growth = {k: after[k] - before[k] for k in common}
    return {
        "phases": phases,
        "rss_mb_before_total": sum(before.values()),
        "rss_mb_after_total": sum(after.values()),
        "rss_growth_mb_by_process": dict(sorted(growth.items(), key=lambda kv: -abs(kv[1]))[:8]),
        "processes": len(after),
    }


def _replica_actor() -> Any:
    for a in ray.util.list_named_actors(all_namespaces=True):
        if a["name"].startswith("SERVE_REPLICA::tinydancer#router"):
            return ray.get_actor(a["name"], namespace=a["namespace"])
    raise LookupError("no router replica")


def _wait(check: Callable[[], bool], timeout_s: float = 120.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            pass
        time.sleep(0.2)
    return float("inf")


def fault_campaign(
    cluster: Any,
    rate: float,
    seconds_per_fault: float,
    faults: tuple[str, ...] = ("replica", "registry", "breaker", "history"),
) -> dict[str, Any]:
    """Kill each component in turn under load; returns per-fault figures and the accepted ids."""
    out: dict[str, Any] = {}
    accepted: list[str] = []
    for fault in faults:
        load = OpenLoop(cluster.url, rate, seconds_per_fault)
        runner = threading.Thread(target=load.run)
        runner.start()
        time.sleep(seconds_per_fault / 3)
        killed_at = time.monotonic()
        if fault == "replica":
            ray.kill(_replica_actor(), no_restart=True)
            recovered = _wait(
                lambda: (
                    len(
                        [
                            a
                            for a in ray.util.list_named_actors(all_namespaces=True)
                            if a["name"].startswith("SERVE_REPLICA::tinydancer#router")
                        ]
                    )
                    >= cluster.args.num_replicas
                )
            )
        else:
            ray.kill(cluster.actor(fault), no_restart=False)
            recovered = _wait(
                lambda name=fault: (
                    ray.get(cluster.actor(name).status.remote(), timeout=5) is not None
                )
            )
        runner.join()
        failed = [r for r in load.results if r.status != 200]
        accepted += [r.request_id for r in load.results if r.request_id]
        out[fault] = summarize(load.results, seconds_per_fault) | {
            "failed_within_5s_of_kill": sum(
                1 for r in failed if killed_at - 1 <= r.sent_at <= killed_at + 5
            ),
            "recovery_s": recovered,
        }
    out["accepted_ids"] = accepted
    return out


def history_completeness(history_file: Path, accepted: list[str]) -> dict[str, Any]:
    import duckdb

    with duckdb.connect(str(history_file), read_only=True) as con:
        stored = {r[0] for r in con.execute("SELECT request_id FROM decisions").fetchall()}
    missing = set(accepted) - stored
    return {
        "accepted": len(set(accepted)),
        "in_history": len(set(accepted) & stored),
        "missing": len(missing),
    }


def main(argv: list[str] | None = None) -> None:
    from cluster.config import AppArgs
    from cluster.runner import LocalCluster

    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability")
    parser.add_argument("command", choices=["load", "faults", "all"])
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--step-rate", type=float, default=80.0)
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument("--fault-rate", type=float, default=30.0)
    parser.add_argument("--seconds-per-fault", type=float, default=20.0)
    parser.add_argument("--out", default=".bench/reliability.json")
    args = parser.parse_args(argv)
    history = Path(tempfile.mkdtemp()) / "history.duckdb"
    cluster = LocalCluster.start(
        AppArgs(history_path=str(history), num_replicas=2, replica_num_cpus=0.4), port=8000
    )
    cluster.wait_ready(compiled=True)
    report: dict[str, Any] = {}
    try:
        if args.command in ("load", "all"):
            report["load"] = load_campaign(
                cluster.url, args.rate, args.seconds, args.step_rate, args.step_seconds
            )
        if args.command in ("faults", "all"):
            faults = fault_campaign(cluster, args.fault_rate, args.seconds_per_fault)
            accepted = faults.pop("accepted_ids")
            report["faults"] = faults
    finally:
        cluster.stop()
    if "faults" in report:
        report["faults"]["history_completeness"] = history_completeness(history, accepted)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
