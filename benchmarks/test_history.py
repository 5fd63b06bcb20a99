"""The DuckDB history: sustained ingestion, and every analytics report over 1 M decisions.

Ingestion appends 10,000-record DecisionColumns batches (numpy columns, int8 embeddings of
384 bytes, realistic strings) through the store's batched path for
``TINYDANCER_INGEST_SECONDS`` (default 60; 2 under ``--benchmark-disable``), while a
thread routes requests through an in-process AgentRouter at a steady 500 requests/s; the
same routing runs alone first as the baseline. Reported in ``extra_info``: records/s
(time inside append/flush, and wall clock), bytes per decision on disk after CHECKPOINT,
and the route latency p50/p99 with and without ingestion.

The analytics group builds ``TINYDANCER_ANALYTICS_ROWS`` decisions (default 1,000,000;
100,000 under ``--benchmark-disable``) over seven days through the same batched path,
90 % with an outcome (1 % of those repeated), and times each report on the closed file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinydancer.agents.types import AgentRequest
from tinydancer.history.analytics import REPORTS, HistoryReader
from tinydancer.history.records import (
    DecisionColumns,
    OutcomeColumns,
    from_columnar,
    quantize_embeddings,
)
from tinydancer.history.store import HistoryConfig, HistoryStore

from ._compare import interleaved_medians, median_s, record

BATCH = 10_000
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
AGENTS = np.array(
    [
        "gpt-4-1106-preview",
        "claude-v2",
        "claude-instant-v1",
        "mistralai/mixtral-8x7b-chat",
        "mistralai/mistral-7b-chat",
        "meta/llama-2-70b-chat",
        "meta/code-llama-instruct-34b-chat",
        "zero-one-ai/Yi-34B-Chat",
        "WizardLM/WizardLM-13B-V1.2",
        "gpt-3.5-turbo-1106",
    ]
)
PRICE_USD = np.array([0.03, 0.024, 0.0024, 0.0006, 0.0002, 0.0009, 0.0008, 0.0008, 0.0003, 0.002])
QUALITY = np.array([0.86, 0.80, 0.66, 0.70, 0.55, 0.62, 0.58, 0.72, 0.50, 0.74])
LATENCY_MS = np.array([1800, 1500, 700, 600, 350, 900, 800, 850, 500, 650], dtype=np.float64)
OBJECTIVES = np.array(["balanced", "balanced", "balanced", "cost", "quality", "latency"])
CONSTRAINTS = np.array(
    [
        '{"max_cost_usd": null, "max_latency_ms": null, "min_quality": null, '
        '"required_capabilities": [], "excluded_agents": []}',
        '{"max_cost_usd": 0.01, "max_latency_ms": 2000, "min_quality": null, '
        '"required_capabilities": ["chat"], "excluded_agents": []}',
        '{"max_cost_usd": null, "max_latency_ms": null, "min_quality": 0.7, '
        '"required_capabilities": ["code"], "excluded_agents": ["claude-v2"]}',
    ]
)


def _alternatives() -> np.ndarray:
    return np.array([json.dumps([str(a) for a in np.roll(AGENTS, -i)[1:4]]) for i in range(10)])


ALTERNATIVES = _alternatives()
REPLICAS = np.array([f"router-{i}" for i in range(4)])


class DecisionFactory:
    """10,000-record batches with numpy columns; only request ids are built per batch."""

    def __init__(self, seed: int = 0, blocks: int = 4) -> None:
        self.rng = np.random.default_rng(seed)
        # Quantized embeddings look like noise to a compressor: random int8 is realistic.
        self.embeddings = [
            self.rng.integers(-127, 128, (BATCH, 384), dtype=np.int8) for _ in range(blocks)
        ]
        self.count = 0
        self.chosen = np.zeros(0, np.int64)

    def batch(self, start_s: float, span_s: float, versions: tuple[str, ...]) -> DecisionColumns:
        rng, n, number = self.rng, BATCH, self.count // BATCH
        chosen = rng.choice(10, n, p=[0.1, 0.05, 0.1, 0.25, 0.1, 0.05, 0.05, 0.1, 0.05, 0.15])
        confidence = rng.uniform(0.2, 1.0, n).astype(np.float32)
        hexed = rng.bytes(16 * n).hex()  # request ids as the router makes them: 128 random bits
        columns: dict[str, Any] = {  # numpy arrays where the store takes them as they are
            "request_id": [hexed[i : i + 32] for i in range(0, 32 * n, 32)],
            "ts": start_s + np.sort(rng.uniform(0, span_s, n)),
            "mode": np.full(n, "agent"),
            "embedding": self.embeddings[number % len(self.embeddings)],  # (N, 384) int8
            "embedding_scale": rng.uniform(0.001, 0.02, n).astype(np.float32),
            "message_count": rng.integers(1, 12, n).astype(np.int16),
            "chosen": AGENTS[chosen],
            "confidence": confidence,
            "uncertainty": rng.uniform(0, 0.5, n).astype(np.float32),
            "propensity": confidence,
            "model_quality": QUALITY[chosen].astype(np.float32),
            "expected_quality": QUALITY[chosen].astype(np.float32),
            "estimated_cost_usd": PRICE_USD[chosen],
            "estimated_latency_ms": LATENCY_MS[chosen].astype(np.float32),
            "alternatives": ALTERNATIVES[chosen],
            "optimize_for": OBJECTIVES[rng.integers(0, len(OBJECTIVES), n)],
            "willingness_to_pay": [0.05 if x < 0.3 else None for x in rng.random(n)],
            "constraints": CONSTRAINTS[rng.integers(0, len(CONSTRAINTS), n)],
            "model_version": np.array(versions)[rng.integers(0, len(versions), n)],
            "inference_time_us": rng.gamma(4, 20, n).astype(np.float32),
            "replica": REPLICAS[rng.integers(0, len(REPLICAS), n)],
        }
        self.count += n
        self.chosen = chosen
        return DecisionColumns(**columns)

    def outcomes(self, decisions: DecisionColumns, share: float, repeats: float) -> OutcomeColumns:
        """Outcomes for `share` of the last batch, plus `repeats` of them sent twice."""
        rng = self.rng
        picked = np.flatnonzero(rng.random(len(decisions)) < share)
        picked = np.concatenate([picked, rng.choice(picked, int(len(picked) * repeats))])
        agent = self.chosen[picked]
        quality = np.clip(rng.normal(QUALITY[agent], 0.15), 0, 1)
        return OutcomeColumns(
            request_id=[decisions.request_id[i] for i in picked],
            agent=AGENTS[agent].tolist(),
            success=(quality > 0.5).tolist(),
            latency_ms=rng.lognormal(np.log(LATENCY_MS[agent]), 0.4).tolist(),
            quality=quality.tolist(),
            cost_usd=(PRICE_USD[agent] * rng.uniform(0.5, 1.5, len(picked))).tolist(),
            ts=(np.asarray(decisions.ts)[picked] + rng.uniform(0.2, 30, len(picked))).tolist(),
        )


def _router():
    from tinydancer.agents.config import AgentRouterConfig
    from tinydancer.agents.registry import AgentRegistry
    from tinydancer.agents.router import AgentRouter
    from tinydancer.model.weights import load_model, shipped_model_path

    model = load_model(shipped_model_path("agent"))
    latencies = [300.0 + 50 * i for i in range(len(model.feature_schema["agents"]))]
    registry = AgentRegistry.for_model(model, capabilities=["chat"], latency_ms=latencies)
    return AgentRouter(registry, config=AgentRouterConfig(seed=0), model=model)


class PacedRouting(threading.Thread):
    """Routes one request every `period_s` and keeps each call's latency."""

    def __init__(self, router, period_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        from tinydancer.agents.types import AgentRequest

        vector = np.random.default_rng(3).normal(size=384).astype(np.float32)
        self.request = AgentRequest(embedding=vector / np.linalg.norm(vector))
        self.router, self.period_s = router, period_s
        self.latencies_us: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        next_at = time.perf_counter()
        while not self.stop.is_set():
            start = time.perf_counter()
            self.router.route_batch([self.request], remember=False)
            self.latencies_us.append((time.perf_counter() - start) * 1e6)
            next_at += self.period_s
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def percentiles(self) -> dict[str, float]:
        values = np.asarray(self.latencies_us)
        return {
            "p50_us": float(np.percentile(values, 50)),
            "p99_us": float(np.percentile(values, 99)),
        }


def _routing_alone(router, seconds: float) -> PacedRouting:
    thread = PacedRouting(router)
    thread.start()
    time.sleep(seconds)
    thread.stop.set()
    thread.join()
    return thread


def test_sustained_ingestion(benchmark, tmp_path: Path):
    benchmark.group = "history ingestion"
    seconds = float(
        os.environ.get("TINYDANCER_INGEST_SECONDS", "2" if benchmark.disabled else "60")
    )
    router = _router()
    router.route_batch([PacedRouting(router).request], remember=False)  # compile first
    baseline = _routing_alone(router, min(5.0, max(1.0, seconds / 10)))
    factory = DecisionFactory()
    path = tmp_path / "ingest.duckdb"
    result: dict[str, float] = {}

    def ingest() -> None:
        store = HistoryStore(HistoryConfig(path=path))
        routing = PacedRouting(router)
        routing.start()
        inside_s, rows, started = 0.0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            batch = factory.batch(T0 + rows / 1000, BATCH / 1000, ("agent-2026.11.1",))
            t = time.perf_counter()
            store.append_decisions(batch)  # flushes by itself every max_buffer_rows
            inside_s += time.perf_counter() - t
            rows += len(batch)
        t = time.perf_counter()
        store.flush()
        inside_s += time.perf_counter() - t
        wall_s = time.perf_counter() - started
        routing.stop.set()
        routing.join()
        store.close()  # CHECKPOINT: the file holds everything, the WAL is folded in
        result.update(
            rows=rows,
            inside_s=inside_s,
            wall_s=wall_s,
            flushes=store.stats["flushes"],
            **{f"route_during_{k}": v for k, v in routing.percentiles().items()},
        )

    load_before = os.getloadavg()[0]
    benchmark.pedantic(ingest, rounds=1, iterations=1)
    size = path.stat().st_size
    info = {
        "seconds": seconds,
        "decisions": int(result["rows"]),
        "records_per_s": result["rows"] / result["inside_s"],
        "records_per_s_wall": result["rows"] / result["wall_s"],
        "flushes": int(result["flushes"]),
        "file_bytes": size,
        "bytes_per_decision": size / result["rows"],
        **{f"route_alone_{k}": v for k, v in baseline.percentiles().items()},
        "route_during_p50_us": result["route_during_p50_us"],
        "route_during_p99_us": result["route_during_p99_us"],
        # This machine is shared: the 1-minute load average says how much it was.
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
    }
    info["route_p50_ratio_during_to_alone"] = (
        info["route_during_p50_us"] / info["route_alone_p50_us"]
    )
    benchmark.extra_info.update(info)
    path.unlink()  # gigabytes after a full run
    assert info["decisions"] >= BATCH and info["bytes_per_decision"] > 384


# -- analytics over 1 M decisions -------------------------------------------------------------
@pytest.fixture(scope="module")
def history_1m(request, tmp_path_factory) -> dict[str, Any]:
    disabled = bool(request.config.getoption("benchmark_disable", False))
    total = int(os.environ.get("TINYDANCER_ANALYTICS_ROWS", "100000" if disabled else "1000000"))
    path = tmp_path_factory.mktemp("analytics") / "history-1m.duckdb"
    factory = DecisionFactory(seed=1)
    span_s = 7 * 86_400 / (total // BATCH)  # seven days
    started = time.perf_counter()
    with HistoryStore(HistoryConfig(path=path)) as store:
        store.record_model("agent-2026.11.1", "agent", "loaded")
        for i in range(total // BATCH):
            versions = ("agent-2026.11.1",) if i < total // BATCH // 2 else ("agent-2026.11.2",)
            decisions = factory.batch(T0 + i * span_s, span_s, versions)
            store.append_decisions(decisions)
            store.append_outcomes(factory.outcomes(decisions, share=0.9, repeats=0.01))
            if i % 10 == 5:
                agent = str(AGENTS[i % 10])
                store.record_transition(agent, "closed", "open", "failure rate", at=T0 + i * span_s)
                store.record_transition(
                    agent, "open", "half_open", "cooldown", at=T0 + i * span_s + 30
                )
    built_s = time.perf_counter() - started
    return {"path": path, "decisions": total, "built_s": built_s}


# The 1M-decision history is routing traffic only: it has no gateway attempts, so the
# gateway report (failovers, time to first token) would be empty here and is left out.
CASES = [(name, "hour") for name in REPORTS if name != "gateway"] + [("timeseries", "day")]


@pytest.mark.parametrize(
    ("report", "bucket"), CASES, ids=[f"{r}-{b}" if r == "timeseries" else r for r, b in CASES]
)
def test_report_over_1m_decisions(benchmark, history_1m, report, bucket):
    benchmark.group = "analytics 1M"
    with HistoryReader(history_1m["path"]) as reader:
        rows = benchmark(reader.report, report, bucket=bucket)
        integrity = reader.integrity()[0]
    assert rows and integrity["decisions"] == history_1m["decisions"]
    benchmark.extra_info.update(
        decisions=history_1m["decisions"],
        build_decisions_per_s=history_1m["decisions"] / history_1m["built_s"],
        file_bytes=Path(history_1m["path"]).stat().st_size,
        rows=len(rows),
        load_average_1m=os.getloadavg()[0],
    )
    median = median_s(benchmark)
    if median is not None:
        benchmark.extra_info["median_ms"] = median * 1e3


def test_history_rows_of_a_batch(benchmark, request):
    """What a router replica spends per `/v1/route/batch` block on its history rows
    (`from_columnar`: quantizing the 10k embeddings, then the columns), with the
    quantization alone interleaved against the same steps in one pass over the whole block
    (`rows_per_pass=BATCH`), the way it was done before."""
    disabled = request.config.getoption("benchmark_disable", False)
    router = _router()
    block = np.random.default_rng(3).normal(size=(BATCH, 384)).astype(np.float32)
    decisions = router.route_embeddings(block, remember=False)
    template = AgentRequest()
    codes, scales = quantize_embeddings(block)
    whole = quantize_embeddings(block, rows_per_pass=BATCH)
    assert np.array_equal(codes, whole[0]) and np.array_equal(scales, whole[1])
    rows = benchmark(lambda: from_columnar(block, decisions, template, ts=T0, replica="r1"))
    assert len(rows) == int((decisions.agent_index >= 0).sum())
    medians = interleaved_medians(
        {
            "quantize": lambda: quantize_embeddings(block),
            "quantize_whole_block": lambda: quantize_embeddings(block, rows_per_pass=BATCH),
        },
        rounds=3 if disabled else 60,
    )
    record(benchmark, medians, "quantize")
    print(
        f"\nhistory rows of a {BATCH:,}-row batch: quantize {medians['quantize'] * 1e3:.1f} ms, "
        f"one pass over the whole block {medians['quantize_whole_block'] * 1e3:.1f} ms "
        f"({medians['quantize'] / medians['quantize_whole_block']:.2f}x)"
    )
