"""Interleaved comparison: judge speed by ratios measured under the same conditions.

This machine is shared and its speed drifts by several times within minutes, so
benchmarks that run one after the other cannot be compared. `interleaved_medians`
alternates calls between the measured function and its baselines, call by call, and
returns each one's median; the ratios go into pytest-benchmark's `extra_info`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np


def interleaved_medians(
    functions: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 3
) -> dict[str, float]:
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[int]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter_ns()
            fn()
            samples[name].append(time.perf_counter_ns() - start)
    return {name: float(np.median(values)) / 1e9 for name, values in samples.items()}


def record(benchmark, medians: dict[str, float], subject: str) -> None:
    """Store the interleaved medians (s) and the subject's ratio to each baseline."""
    for name, value in medians.items():
        benchmark.extra_info[f"interleaved_median_s.{name}"] = value
        if name != subject:
            benchmark.extra_info[f"ratio_to.{name}"] = medians[subject] / value


def median_s(benchmark) -> float | None:
    """The benchmark's median in seconds, or None under --benchmark-disable (no stats)."""
    return None if benchmark.stats is None else float(benchmark.stats.stats.median)


@contextlib.contextmanager
def machine_load(load: str) -> Iterator[None]:
    """`busy`: a CPU-burning subprocess runs beside the measurement (stopped after)."""
    if load != "busy":
        yield
        return
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it start burning
        yield
    finally:
        burner.kill()
        burner.wait()


def benchmarking(benchmark) -> bool:
    """False under --benchmark-disable (the CI smoke run): assert no speed targets then."""
    return not benchmark.disabled
