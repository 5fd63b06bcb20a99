"""cluster/startup.py: each phase shown as it happens and timed (no Ray here)."""

from __future__ import annotations

import io

import pytest

from cluster.startup import StartupProgress


def test_phases_are_shown_in_plain_lines_when_not_a_terminal_and_timed():
    out = io.StringIO()
    progress = StartupProgress(out)
    with progress.phase("starting Ray") as detail:
        detail("1 starting")
        detail("1 starting")  # a detail is shown once per change
        detail("1 running")
    with pytest.raises(RuntimeError), progress.phase("deploying"):
        raise RuntimeError("replica failed")
    lines = out.getvalue().splitlines()
    assert lines[:4] == [
        "starting Ray ...",
        "  starting Ray: 1 starting",
        "  starting Ray: 1 running",
        f"✓ starting Ray ({progress.durations['starting Ray']:.1f} s)",
    ]
    assert lines[4] == "deploying ..." and lines[5].startswith("✗ deploying (")
    assert set(progress.durations) == {"starting Ray", "deploying"}
    assert progress.elapsed_s >= sum(progress.durations.values())


def test_a_disabled_progress_only_measures():
    out = io.StringIO()
    progress = StartupProgress(out, enabled=False)
    with progress.phase("starting Serve") as detail:
        detail("waiting")
    assert out.getvalue() == "" and progress.durations["starting Serve"] >= 0
