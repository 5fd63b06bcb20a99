"""The columnar batch path and the garbage collector: 200 timed calls of
`AgentRouter.route_embeddings` over 10,000 requests each, the ledger remembering every
decision (2 M decisions through a 100,000-decision ledger, so eviction runs too).

Reported: generation-2 collections during the timed calls (counted with `gc.callbacks`;
the goal is none) and the calls' p99 / p50 (goal ≤ 1.5). Under --benchmark-disable
(the CI smoke run) 10 calls, and nothing asserted about time.
"""

from __future__ import annotations

import gc
import time

import numpy as np

from tinydancer.agents.config import AgentRouterConfig
from tinydancer.agents.registry import AgentRegistry
from tinydancer.agents.router import AgentRouter
from tinydancer.model.weights import load_model, shipped_model_path


def test_the_batch_path_creates_no_garbage_for_a_full_collection(benchmark, request):
    disabled = request.config.getoption("benchmark_disable", False)
    calls = 10 if disabled else 200
    model = load_model(shipped_model_path("agent"))
    registry = AgentRegistry.for_model(model, agents=model.feature_schema["agents"][:10])
    router = AgentRouter(registry, config=AgentRouterConfig(seed=0), model=model)
    block = np.random.default_rng(0).normal(size=(10_000, 384)).astype(np.float32)
    router.route_embeddings(block)  # warm: compile every bucket this size uses
    full: list[float] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(time.perf_counter())

    seconds: list[float] = []

    def run() -> None:
        for _ in range(calls):
            t0 = time.perf_counter()
            router.route_embeddings(block)
            seconds.append(time.perf_counter() - t0)

    gc.callbacks.append(count)
    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        gc.callbacks.remove(count)
    p50, p99 = np.percentile(seconds, [50, 99])
    benchmark.extra_info |= {
        "calls": calls,
        "generation_2_collections": len(full),
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
        "p99_over_p50": p99 / p50,
        "requests_per_s": 10_000 / p50,
        "ledger_open": len(router.ledger),
    }
    print(
        f"\n{calls} calls of 10k: {len(full)} generation-2 collections; p50 {p50 * 1e3:.1f} ms "
        f"p99 {p99 * 1e3:.1f} ms (p99/p50 {p99 / p50:.2f}), {10_000 / p50:,.0f} requests/s; "
        f"ledger {len(router.ledger):,} open"
    )
    assert len(router.ledger) <= router.ledger.capacity
    if not disabled:
        assert full == [], f"{len(full)} full collections during the timed calls"
