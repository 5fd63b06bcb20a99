"""Routing quality on the shared RouterBench splits: train on train, evaluate on test.

Writes `.bench/quality-<dataset>.json` with the `tinydancer eval --json` result, the
paired-bootstrap intervals of AIQ differences, per-segment diagnostics, per-agent test
AUCs and an online replay with a drifting agent. Skipped without ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinydancer.datasets import load_split
from tinydancer.evaluation.offline import calibrate_knob, evaluate, segment_diagnostics
from tinydancer.evaluation.online import replay
from tinydancer.training.agent import split_indices
from tinydancer.training.linear import train_linear_agent_model

OUT = Path(__file__).resolve().parents[1] / ".bench"


@pytest.mark.parametrize("dataset", ["arc_challenge", "winogrande"])
def test_quality(benchmark, shared_data, dataset):
    benchmark.group = f"quality {dataset}"
    base = shared_data / "routerbench" / dataset
    train, test = load_split(base / "train"), load_split(base / "test")
    model, training = train_linear_agent_model(train, seed=0)
    _, _, calibration_rows = split_indices(len(train), 0)
    model = model.with_info(willingness_to_pay=calibrate_knob(model, train.take(calibration_rows)))
    evaluation = benchmark.pedantic(
        evaluate, (model, test, train), kwargs={"bootstrap": 1000}, rounds=1
    )
    drift_agent = "zero-one-ai/Yi-34B-Chat"
    report = {
        "dataset": dataset,
        "model_version": model.version,
        "result": evaluation.result,
        "aiq_difference_router_minus": evaluation.bootstrap,
        "details": evaluation.details,
        "segments": segment_diagnostics(evaluation.result),
        "online": replay(model, test, seed=0),
        "online_drift": replay(model, test, drift_agent=drift_agent, passes=2, seed=0),
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
    (OUT / f"quality-{dataset}.json").write_text(json.dumps(report, indent=2))
    summary = {"router": evaluation.result["router"]["aiq"]} | {
        k: v["aiq"] for k, v in evaluation.result["baselines"].items() if k != "single"
    }
    benchmark.extra_info |= {f"aiq.{k}": v for k, v in summary.items()}
    intervals = evaluation.bootstrap
    print(  # the README's table rows (run with -s to see them)
        f"| {dataset} | "
        + " | ".join(
            f"{summary[k]:.4f}"
            for k in ("router", "zero_router", "knn", "logistic", "logistic_probe")
        )
        + " | "
        + " | ".join(
            f"{intervals[k]['mean']:+.4f} [{intervals[k]['low_95']:+.4f}, {intervals[k]['high_95']:+.4f}]"
            for k in ("zero_router", "knn", "logistic", "logistic_probe")
        )
        + f" | {training['regime']} |"
    )
    assert summary["random"] < summary["router"] < summary["oracle"]
