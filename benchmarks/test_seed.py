"""Against the seed: its npm package `@ruvector/tiny-dancer` (a prebuilt Rust core behind a
Node binding) routing the same kind of call, interleaved with ours in the same run.

Per size, alternating blocks of 200 calls: our `Router.route` (this process: pinned or not
as `TINYDANCER_BENCH_PIN` says) and the seed's, whose Node process reports the round trip
it sees and its core's own `inferenceTimeUs`. The goals: route(100) ≤ the seed core's own
time (pinned: ≤ 0.5×), route(10) ≤ 0.6× the seed's Node round trip.

It installs the package (version pinned) into the user's cache on first use, so it runs
only when benchmarking is enabled and npm can reach its registry; otherwise it skips and
says why. The CI smoke run (--benchmark-disable) skips it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tinydancer import Router, RouterConfig, RoutingRequest

from .test_candidate_routing import make_batch

SEED_PACKAGE = "@ruvector/tiny-dancer@0.1.22"
SCRIPT = Path(__file__).parent / "seed" / "route.js"
ROUNDS, CALLS = 10, 200


@pytest.fixture(scope="module")
def seed(request):
    if request.config.getoption("benchmark_disable", False):
        pytest.skip("the seed comparison installs an npm package: only when benchmarking")
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed to run the seed's package")
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tinydancer-seed"
    if not (home / "node_modules" / "@ruvector" / "tiny-dancer").exists():
        home.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", SEED_PACKAGE],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm could not install {SEED_PACKAGE}: {installed.stderr[-300:]}")
    process = subprocess.Popen(
        ["node", str(SCRIPT)],
        cwd=home,
        env={**os.environ, "NODE_PATH": str(home / "node_modules")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def run(n: int, calls: int) -> dict:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(f"{n} {calls}\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    yield run
    process.terminate()
    process.wait(timeout=10)


@pytest.mark.parametrize("n", [10, 100])
def test_route_against_the_seed(benchmark, seed, n):
    benchmark.group = f"against the seed, route({n})"
    router = Router(RouterConfig(warm_up_to_candidates=128))
    query, batch = make_batch(n)
    request = RoutingRequest(query, batch)
    ours: list[float] = []
    theirs: list[dict] = []
    seed(n, CALLS)  # warm both
    for _ in range(CALLS):
        router.route(request)

    def measure() -> None:
        for _ in range(ROUNDS):
            times = []
            for _ in range(CALLS):
                t0 = time.perf_counter_ns()
                router.route(request)
                times.append(time.perf_counter_ns() - t0)
            ours.append(float(np.median(times)) / 1e3)
            theirs.append(seed(n, CALLS))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    our_us = float(np.median(ours))
    round_trip_us = float(np.median([t["round_trip_us"] for t in theirs]))
    inference_us = float(np.median([t["inference_us"] for t in theirs]))
    pinned = os.environ.get("TINYDANCER_BENCH_PIN") is not None
    benchmark.extra_info |= {
        "pinned": pinned,
        "ours_us": our_us,
        "seed_round_trip_us": round_trip_us,
        "seed_inference_us": inference_us,
        "ratio_to_seed_inference": our_us / inference_us,
        "ratio_to_seed_round_trip": our_us / round_trip_us,
    }
    print(
        f"\nroute({n}) {'pinned' if pinned else 'unpinned'}: ours {our_us:.1f} µs; seed core "
        f"{inference_us:.1f} µs (ratio {our_us / inference_us:.2f}), seed Node round trip "
        f"{round_trip_us:.1f} µs (ratio {our_us / round_trip_us:.2f})"
    )
