"""`tinydancer demo --data DIR`: replay a routing-outcomes split through a fresh cluster.

Runs after the session cluster has been stopped (file order), because the demo starts
and stops its own Ray and Serve app.
"""

from __future__ import annotations

import pytest
import ray
from cluster_helpers import free_port

from cluster.demo import run_demo
from tinydancer import InvalidRequestError
from tinydancer.datasets import load_split


@pytest.fixture
def no_ray_running():
    if ray.is_initialized():
        pytest.skip("the session cluster is still running (run this file alone or last)")


def test_a_bad_data_directory_fails_before_any_cluster_starts(no_ray_running, tmp_path):
    with pytest.raises(InvalidRequestError, match=r"prompts\.parquet"):
        run_demo(requests_total=10, data=str(tmp_path), port=free_port())
    assert not ray.is_initialized()


def test_demo_replays_a_split_with_its_recorded_outcomes(
    no_ray_running, shared_data, tmp_path, capsys
):
    split = shared_data / "routerbench" / "arc_challenge" / "test"
    total = 160
    summary = run_demo(
        requests_total=total,
        concurrency=4,
        data=str(split),
        port=free_port(),
        history_path=str(tmp_path / "history.duckdb"),
    )
    assert not ray.is_initialized(), "the demo must stop the Ray it started"
    assert summary["failed"] == {}
    assert summary["routed"] == total
    assert summary["bandit_updates"] == total
    history = summary["history"]
    assert history["decisions"] == total and history["outcomes"] == total
    assert history["outcomes_without_decision"] == 0 and history["duplicate_outcomes"] == 0
    # the baseline is the split's best agent, replayed on the same rows; routing keeps most
    # of its quality for a fraction of its cost
    assert summary["strongest_agent"] in load_split(split).agents
    assert 0 < summary["cost_usd"] < summary["cost_always_strongest_usd"]
    assert 0.75 * summary["mean_quality_always_strongest"] <= summary["mean_quality"] <= 1
    out = capsys.readouterr().out
    assert f"{total}/{total} requests routed" in out and "saved" in out
