"""`tinydancer demo`: route a synthetic candidate workload in-process and summarise it.

The workload comes from the documented synthetic generator, so every candidate's true
usefulness is known and the summary can say how good the decisions were.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tinydancer.cli import Command

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The in-process demo's options (the serving layer's `demo` adds its own to these)."""
    demo.add_argument("--requests", type=int, default=2000, help="number of routing requests")
    demo.add_argument(
        "--in-process", action="store_true", help="candidate mode in this process, nothing started"
    )
    demo.add_argument(
        "--candidates", type=int, default=50, help="candidates per request (--in-process)"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--pin-core", type=int, default=None, help="pin this process to one core (--in-process)"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    if args.pin_core is not None:
        from tinydancer.runtime import pin_to_core

        pin_to_core(args.pin_core)
    from tinydancer.candidates.router import Router
    from tinydancer.candidates.types import CandidateBatch, RoutingRequest
    from tinydancer.training.synthetic import generate

    started = time.perf_counter()
    router = Router()
    load_s = time.perf_counter() - started
    data = generate(args.requests, args.candidates, seed=args.seed)
    now = time.time()
    latencies_us, lightweight, useful_lightweight, top1_useful = [], 0, 0, 0
    for q in range(args.requests):
        rows = slice(q * args.candidates, (q + 1) * args.candidates)
        batch = CandidateBatch(
            ids=np.arange(args.candidates),
            embeddings=data.embeddings[rows],
            created_at=now - data.age_s[rows],
            access_count=data.access_count[rows],
            success_rate=data.success_rate[rows],
            metadata_overlap=data.overlap[rows],
        )
        t0 = time.perf_counter_ns()
        response = router.route(RoutingRequest(data.queries[q], batch))
        latencies_us.append((time.perf_counter_ns() - t0) / 1e3)
        truth = data.useful[rows]
        chosen = response.candidate_ids[response.use_lightweight]
        lightweight += len(chosen)
        useful_lightweight += int(truth[chosen].sum())
        top1_useful += int(truth[response.candidate_ids[0]])
    lat = np.asarray(latencies_us)
    total = args.requests * args.candidates
    summary = {
        "mode": "candidate (in-process)",
        "model_version": router.model_version,
        "model_bytes": router.model.size_bytes,
        "load_and_warm_s": round(load_s, 2),
        "requests": args.requests,
        "candidates_per_request": args.candidates,
        "route_latency_us": {
            "p50": round(float(np.percentile(lat, 50)), 1),
            "p99": round(float(np.percentile(lat, 99)), 1),
        },
        "lightweight_share": round(lightweight / total, 4),
        "lightweight_precision": round(useful_lightweight / lightweight, 4)
        if lightweight
        else None,
        "useful_share_overall": round(float(data.useful.mean()), 4),
        "top1_useful_rate": round(top1_useful / args.requests, 4),
        "fallback_requests": router.stats.fallback_requests,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"Tiny Dancer demo — {summary['mode']}, model {summary['model_version']} "
        f"({summary['model_bytes']} bytes INT8), loaded and warmed in {summary['load_and_warm_s']} s"
    )
    print(f"  routed {args.requests} requests x {args.candidates} candidates")
    print(
        f"  route latency: p50 {summary['route_latency_us']['p50']} µs, p99 {summary['route_latency_us']['p99']} µs"
    )
    print(
        f"  sent to the lightweight path: {summary['lightweight_share']:.1%} of candidates, "
        f"{summary['lightweight_precision']} of them truly useful (base rate {summary['useful_share_overall']:.1%})"
    )
    print(
        f"  top-ranked candidate useful in {summary['top1_useful_rate']:.1%} of requests; "
        f"heuristic fallbacks: {summary['fallback_requests']}"
    )
    return 0


COMMAND = Command(
    "demo", "route a synthetic candidate workload in this process, summarise", add_arguments, run
)
