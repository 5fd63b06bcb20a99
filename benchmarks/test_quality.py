"""Routing quality on the shared RouterBench splits: train on train, evaluate on test.

Full mode (benchmarks enabled) is what regenerates the README's quality table: for
every dataset, the `tinydancer eval --json` result with 1,000 paired-bootstrap rounds,
and `replay` (learning on / off / the zero router) over five stream orders, plain and
with the busiest agent's quality dropping to 0 half-way (`--drift auto`). It writes
`.bench/quality-<dataset>.json` and prints the README's rows (run with -s).

Smoke mode (`--benchmark-disable`, as CI runs it): the same code on Winogrande only,
trained on a seeded sample of 400 training prompts and evaluated on one of 120 test
prompts, with 50 bootstrap rounds and one replay order, written to
`.bench/quality-smoke-<dataset>.json` (training and the baselines' cross-validation
dominate its time, and both scale with the training prompts). Skipped without ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinydancer.datasets import RoutingOutcomes, load_split
from tinydancer.evaluation.offline import calibrate_knob, evaluate, segment_diagnostics
from tinydancer.evaluation.online import replay
from tinydancer.model.weights import RouterModel
from tinydancer.training.agent import split_indices
from tinydancer.training.linear import train_linear_agent_model

OUT = Path(__file__).resolve().parents[1] / ".bench"
SMOKE_DATASET = "winogrande"
SMOKE_TRAIN_PROMPTS = 400
SMOKE_TEST_PROMPTS = 120


def _replays(model: RouterModel, test: RoutingOutcomes, seeds: range) -> dict[str, Any]:
    """Per seed: one plain pass, and one where the busiest agent (of the plain pass's
    learning-on arm, as `replay --drift auto`) drops to quality 0 half-way."""
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "drift": []}
    for seed in seeds:
        plain = replay(model, test, seed=seed)
        busiest = next(iter(plain["traffic_share"]))
        runs["plain"].append(plain)
        runs["drift"].append(replay(model, test, seed=seed, drift_agent=busiest))
    summary: dict[str, Any] = {}
    for kind, reports in runs.items():
        arms = {
            "learning_on": [r["learning_on"] for r in reports],
            "learning_off": [r["learning_off"] for r in reports],
            "zero_router_at_learning_on_cost": [
                r["zero_router"]["at_learning_on_cost"] for r in reports
            ],
        }
        summary[kind] = {
            name: {
                key: float(np.mean([a[key] for a in values]))
                for key in ("mean_quality", "mean_cost_usd")
            }
            for name, values in arms.items()
        }
        gains = [r["learning_gain"]["mean_quality"] for r in reports]
        summary[kind]["learning_gain_min"] = float(np.min(gains))
    return {"seeds": list(seeds), "summary": summary, "reports": runs}


@pytest.mark.parametrize("dataset", ["arc_challenge", "winogrande"])
def test_quality(benchmark, shared_data, dataset):
    smoke = benchmark.disabled
    if smoke and dataset != SMOKE_DATASET:
        pytest.skip(f"smoke mode (--benchmark-disable) runs {SMOKE_DATASET} only")
    benchmark.group = f"quality {dataset}"
    base = shared_data / "routerbench" / dataset
    train, test = load_split(base / "train"), load_split(base / "test")
    if smoke:
        rng = np.random.default_rng(0)
        train = train.take(np.sort(rng.permutation(len(train))[:SMOKE_TRAIN_PROMPTS]))
        test = test.take(np.sort(rng.permutation(len(test))[:SMOKE_TEST_PROMPTS]))
    model, training = train_linear_agent_model(train, seed=0)
    _, _, calibration_rows = split_indices(len(train), 0)
    model = model.with_info(willingness_to_pay=calibrate_knob(model, train.take(calibration_rows)))
    evaluation = benchmark.pedantic(
        evaluate, (model, test, train), kwargs={"bootstrap": 50 if smoke else 1000}, rounds=1
    )
    online = _replays(model, test, range(1 if smoke else 5))
    report = {
        "dataset": dataset,
        "mode": "smoke" if smoke else "full",
        "test_prompts": len(test),
        "model_version": model.version,
        "result": evaluation.result,
        "aiq_difference_router_minus": evaluation.bootstrap,
        "details": evaluation.details,
        "segments": segment_diagnostics(evaluation.result),
        "online": online,
        "training": {
            k: training[k]
            for k in (
                "prompts",
                "regime",
                "cv_per_agent",
                "validation_brier",
                "int8_vs_float32_max_abs_diff",
                "size_bytes",
                "sparsity",
            )
        },
    }
    OUT.mkdir(exist_ok=True)
    name = f"quality-smoke-{dataset}.json" if smoke else f"quality-{dataset}.json"
    (OUT / name).write_text(json.dumps(report, indent=2))
    summary = {"router": evaluation.result["router"]["aiq"]} | {
        k: v["aiq"] for k, v in evaluation.result["baselines"].items() if k != "single"
    }
    benchmark.extra_info |= {f"aiq.{k}": v for k, v in summary.items()}
    intervals = evaluation.bootstrap
    print(  # the README's table rows (run with -s to see them)
        f"\n| {dataset} | "
        + " | ".join(
            f"{summary[k]:.4f}"
            for k in ("router", "zero_router", "knn", "logistic", "logistic_probe", "random")
        )
        + f" | {summary['oracle']:.4f} |\n| {dataset} | "
        + " | ".join(
            f"{intervals[k]['mean']:+.4f} [{intervals[k]['low_95']:+.4f}, {intervals[k]['high_95']:+.4f}]"
            for k in ("zero_router", "knn", "logistic", "logistic_probe")
        )
        + f" | {training['regime']} |"
    )
    for kind, arms in online["summary"].items():
        print(
            f"| {dataset} | {kind} | "
            + " | ".join(
                f"{arms[arm]['mean_quality']:.4f} ({arms[arm]['mean_cost_usd']:.2e})"
                for arm in ("learning_on", "learning_off", "zero_router_at_learning_on_cost")
            )
            + f" | {arms['learning_gain_min']:+.4f} |"
        )
    assert summary["random"] < summary["router"] < summary["oracle"]
    for kind in ("plain", "drift"):
        assert {"learning_on", "learning_off", "zero_router"} <= set(online["reports"][kind][0])
