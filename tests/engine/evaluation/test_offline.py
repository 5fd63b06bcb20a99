"""Offline and online evaluation on the shared RouterBench splits (skipped without ../shared)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinydancer.cli import main
from tinydancer.datasets import load_split
from tinydancer.evaluation.offline import calibrate_knob, evaluate
from tinydancer.evaluation.online import replay
from tinydancer.model.weights import load_model, shipped_model_path

M_KEYS = {"aiq", "apgr", "cost_to_reach", "best_quality", "curve"}


@pytest.fixture(scope="module")
def arc(shared_data):
    base = shared_data / "routerbench" / "arc_challenge"
    return load_split(base / "train"), load_split(base / "test"), base


def test_eval_json_has_exactly_the_documented_shape(arc, capsys, tmp_path):
    _, _, base = arc
    code = main(
        [
            "eval",
            "--data",
            str(base / "test"),
            "--model",
            str(shipped_model_path("agent")),
            "--train",
            str(base / "train"),
            "--json",
            "--bootstrap",
            "50",
            "--bootstrap-json",
            str(tmp_path / "boot.json"),
            "--plot",
            str(tmp_path / "curves.png"),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"router", "baselines"}
    assert set(result["baselines"]) == {
        "random",
        "zero_router",
        "knn",
        "logistic",
        "logistic_probe",
        "oracle",
        "single",
    }
    for metrics in [
        result["router"],
        *[v for k, v in result["baselines"].items() if k != "single"],
        *result["baselines"]["single"].values(),
    ]:
        assert set(metrics) == M_KEYS
        assert set(metrics["cost_to_reach"]) == {"50", "80", "95", "100"}
        assert all(len(point) == 2 for point in metrics["curve"])
    assert len(result["baselines"]["single"]) == 11
    boot = json.loads((tmp_path / "boot.json").read_text())
    assert {"zero_router", "knn", "logistic", "logistic_probe", "oracle", "random"} <= set(
        boot["aiq_difference_router_minus"]
    )
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_router_sits_between_the_baselines_it_must_beat_and_the_oracle(arc):
    train, test, _ = arc
    evaluation = evaluate(load_model(shipped_model_path("agent")), test, train, bootstrap=100)
    router = evaluation.result["router"]["aiq"]
    baselines = evaluation.result["baselines"]
    assert baselines["random"]["aiq"] < router < baselines["oracle"]["aiq"]
    assert router > baselines["zero_router"]["aiq"] - 0.01  # ties or beats the strong zero router
    assert evaluation.bootstrap["oracle"]["high_95"] < 0 < evaluation.bootstrap["random"]["low_95"]
    assert evaluation.details["knn_k"] in (5, 10, 20, 40, 80, 160)


def test_the_knob_calibration_reaches_its_target_on_held_out_data(arc):
    _, test, _ = arc
    model = load_model(shipped_model_path("agent"))
    knobs = calibrate_knob(model, test, fractions=(0.9,))
    assert knobs["0.9"] is not None
    best = float(np.nanmax(np.nanmean(test.quality, axis=0)))
    from tinydancer.evaluation.offline import _router_choices, router_for_model

    available = ~np.isnan(test.reindex_agents(model.feature_schema["agents"]).quality)
    choices = _router_choices(
        router_for_model(model),
        test.reindex_agents(model.feature_schema["agents"]),
        available,
        np.array([knobs["0.9"]]),
    )
    picked = np.nan_to_num(test.reindex_agents(model.feature_schema["agents"]).quality)[
        np.arange(len(test)), choices[0]
    ]
    assert picked.mean() >= 0.9 * best


def test_online_replay_learns_and_drops_a_drifting_agent(arc):
    _, test, _ = arc
    model = load_model(shipped_model_path("agent"))
    busiest = next(iter(replay(model, test, seed=0)["traffic_share"]))  # as --drift auto
    report = replay(model, test, drift_agent=busiest, passes=2, seed=0)
    assert report["requests"] == 2 * len(test)
    assert report["oracle"]["mean_quality"] >= report["router"]["mean_quality"] > 0.8
    assert report["learning_on"]["mean_quality"] > report["learning_off"]["mean_quality"]
    drift = report["drift"]
    assert drift["share_before"] > 0.1
    assert drift["requests_until_share_below_10pct"] is not None
    assert drift["requests_until_share_below_10pct"] < 200


def test_training_on_a_split_writes_a_servable_model(shared_data, tmp_path, capsys):
    split = shared_data / "routerbench" / "winogrande" / "train"
    out = tmp_path / "wino.safetensors"
    assert main(["train", "--data", str(split), "--out", str(out), "--json", "--seed", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    model = load_model(out, expect_mode="agent")
    assert model.version == summary["version"] and len(model.feature_schema["agents"]) == 11
    assert summary["int8_vs_float32_max_abs_diff"] < 0.05
    assert set(summary["willingness_to_pay"]) == {"0.8", "0.9", "0.95", "1.0"}
    assert model.info["lineage"]["data"] == "routerbench/winogrande/train"


def test_loading_a_bad_split_names_the_problem(tmp_path):
    from tinydancer import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=r"prompts\.parquet"):
        load_split(tmp_path)
