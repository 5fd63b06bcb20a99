"""`replay` on a small synthetic split: three arms on one stream, and learning under drift."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.engine.split_factory import write_split
from tinydancer.cli import main
from tinydancer.datasets import load_split
from tinydancer.evaluation.online import replay
from tinydancer.model.weights import load_model

ARM_KEYS = {"mean_quality", "mean_cost_usd", "cumulative_quality", "cumulative_cost_usd"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("online")
    # qualities about 0.88 / 0.78 / 0.65: mostly successes, so no circuit opens
    cuts = [-0.06, -0.04, -0.02]
    train = write_split(base / "train", ["a", "b", "c"], 300, 0, thresholds=cuts)
    test = write_split(base / "test", ["a", "b", "c"], 200, 1, thresholds=cuts)
    model_path = base / "m.safetensors"
    assert main(["train", "--data", str(train), "--out", str(model_path)]) == 0
    return load_model(model_path, expect_mode="agent"), load_split(test), model_path, test


def test_replay_reports_learning_on_off_and_the_zero_router(trained):
    model, test, _, _ = trained
    report = replay(model, test, seed=0)
    for arm in ("learning_on", "learning_off"):
        assert set(report[arm]) >= ARM_KEYS
        assert report[arm]["cumulative_quality"] == pytest.approx(
            report[arm]["mean_quality"] * report["requests"]
        )
    assert report["router"] == report["learning_on"]
    zero = report["zero_router"]
    assert set(zero) == {"at_learning_on_cost", "at_learning_off_cost"}
    assert zero["at_learning_off_cost"]["mean_cost_usd"] == report["learning_off"]["mean_cost_usd"]
    # the hull of single agents at a cost is at least the cheapest agent's quality
    means = np.nanmean(test.quality, axis=0)
    assert zero["at_learning_on_cost"]["mean_quality"] >= means.min() - 1e-9
    assert report["learning_gain"]["mean_quality"] == pytest.approx(
        report["learning_on"]["mean_quality"] - report["learning_off"]["mean_quality"]
    )


def test_under_drift_learning_on_beats_learning_off(trained):
    model, test, _, _ = trained
    plain = replay(model, test, seed=0)
    busiest = next(iter(plain["learning_off"]["traffic_share"]))
    report = replay(model, test, seed=0, drift_agent=busiest, passes=2)
    on, off = report["learning_on"], report["learning_off"]
    # the arm that never learns keeps sending the dead agent its share; the learner stops
    assert off["drift_share_after"] == pytest.approx(off["drift_share_before"], abs=0.1)
    assert on["drift_share_after"] < 0.5 * off["drift_share_after"]
    assert on["mean_quality"] > off["mean_quality"] + 0.05
    assert report["drift"]["requests_until_share_below_10pct"] is not None


def test_replay_cli_prints_the_three_arms(trained, capsys):
    _, _, model_path, test = trained
    code = main(["replay", "--data", str(test), "--model", str(model_path), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"learning_on", "learning_off", "zero_router"} <= set(report)


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--drift", "nobody"], "drift: got 'nobody'"), (["--passes", "0"], "passes: got 0")],
    ids=["unknown-drift-agent", "no-pass"],
)
def test_replay_cli_names_a_bad_argument(trained, capsys, flags, named):
    _, _, model_path, test = trained
    code = main(["replay", "--data", str(test), "--model", str(model_path), *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert named in err and "expected" in err
