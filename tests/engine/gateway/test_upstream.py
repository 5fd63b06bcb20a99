"""One attempt's pieces: Retry-After, redaction, and what a failure counts against."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from tinydancer.gateway.upstream import (
    FAILURE_KINDS,
    NOT_THE_AGENTS_FAULT,
    AttemptFailure,
    redact,
    retry_after_seconds,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-2", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_retry_after_in_seconds(value, expected):
    assert retry_after_seconds(value, 1_000.0) == expected


def test_retry_after_as_an_http_date():
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_seconds(later, now) == pytest.approx(30.0)


def test_redaction_replaces_every_secret():
    assert redact("key sk-1 and org-2, sk-1 again", ["sk-1", "org-2", ""]) == (
        "key [redacted] and [redacted], [redacted] again"
    )


def test_only_the_agents_own_failures_count_against_it():
    assert set(FAILURE_KINDS) > NOT_THE_AGENTS_FAULT
    assert not AttemptFailure("cancelled", "x").counts_against_agent
    assert AttemptFailure("dropped", "x").counts_against_agent
