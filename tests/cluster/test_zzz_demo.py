"""`tinydancer demo`: the synthetic workload (the README's main job) and `--data DIR`
(a routing-outcomes split replayed) through a fresh cluster.

Runs after the session cluster has been stopped (file order), because the demo starts
and stops its own Ray and Serve app.
"""

from __future__ import annotations

import json

import pytest
import ray

from cluster.demo import run_demo
from tests.cluster.cluster_helpers import free_port
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


def test_the_gateway_demo_shows_drift_failover_and_clean_json(no_ray_running, capsys):
    total = 600
    summary = run_demo(requests_total=total, concurrency=4, port=free_port(), as_json=True)
    assert not ray.is_initialized()
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # --json: stdout is the summary alone
    assert "graceful_shutdown failed" not in captured.out + captured.err  # a clean stop
    # every request got a complete answer through the outage: no client-visible error
    assert printed["routed"] == summary["routed"] == total and summary["failed"] == {}
    history = summary["history"]
    # a report that outran its answer's record is retried once, a second later (as the
    # refusal says); what can still be refused is at most what was in flight in one stall
    refused = summary["gateway"]["feedback_refused"]
    assert history["decisions"] == total and history["outcomes"] == total - refused
    assert refused <= 4  # the demo's concurrency
    drifted, failed = summary["drift_agent"], summary["outage_agent"]
    assert drifted and failed and drifted != failed
    phases = summary["traffic_by_phase"]
    # the outage hits the agent carrying the traffic; the gateway fails over (the client
    # never sees it) and its circuit opens, so traffic moves off it
    ranked = sorted(phases["drift"], key=phases["drift"].__getitem__, reverse=True)
    assert failed == next(a for a in ranked if a != drifted)
    assert phases["outage"].get(failed, 0) < 0.5 * phases["drift"][failed], phases
    assert phases["drift"].get(drifted, 0) < phases["learning"].get(drifted, 1), phases
    assert summary["gateway"]["failovers"] >= 1
    assert summary["gateway"]["streamed"] == total // 2
    assert any(e.startswith(f"{failed}: closed -> open") for e in summary["breaker_events"])
    assert summary["cost_usd"] < summary["cost_always_strongest_usd"]
