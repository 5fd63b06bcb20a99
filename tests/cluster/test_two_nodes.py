"""Replicas on two nodes of a local Ray cluster share one registry (run in its own process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_replicas_on_both_nodes_share_one_registry():
    script = Path(__file__).with_name("two_node_cluster.py")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["cluster_nodes"] == 2 and result["nodes"] == 2  # one replica on each node
    assert result["replicas_answering"] == 2
    assert result["created"] == 201
    assert result["routed"] == 20 and result["agents"] == ["two-node-agent"]
