"""cluster/feedback.py without Ray: concurrent reports share one call, each gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from cluster.feedback import FeedbackCoalescer


def _recorder(fail_on: str | None = None, delay_s: float = 0.0):
    calls: list[list[str]] = []

    async def send(items: list[str]) -> list[dict]:
        calls.append(list(items))
        await asyncio.sleep(delay_s)
        if fail_on in items:
            raise ConnectionError("registry actor unreachable")
        return [{"accepted": not item.startswith("bad"), "id": item} for item in items]

    return calls, send


def test_concurrent_reports_share_one_call_and_keep_their_own_results():
    calls, send = _recorder()
    coalescer = FeedbackCoalescer(send)

    async def main() -> list[dict]:
        return await asyncio.gather(
            *(coalescer.submit(f"r{i}") for i in range(20)), coalescer.submit("bad")
        )

    results = asyncio.run(main())
    assert calls == [[f"r{i}" for i in range(20)] + ["bad"]]
    assert [r["id"] for r in results] == [f"r{i}" for i in range(20)] + ["bad"]
    assert [r["accepted"] for r in results] == [True] * 20 + [False]
    assert (coalescer.calls, coalescer.reports) == (1, 21)


def test_reports_apart_in_time_and_over_max_batch_make_separate_calls_that_do_not_wait():
    calls, send = _recorder(delay_s=0.05)
    coalescer = FeedbackCoalescer(send, max_batch=4)

    async def main() -> None:
        first = asyncio.gather(*(coalescer.submit(f"a{i}") for i in range(6)))
        await asyncio.sleep(0.01)  # the first calls are in flight, not finished
        second = asyncio.gather(coalescer.submit("b0"))
        await asyncio.gather(first, second)

    asyncio.run(main())
    assert calls == [["a0", "a1", "a2", "a3"], ["a4", "a5"], ["b0"]]


def test_a_failed_call_fails_each_of_its_reports_and_no_other():
    calls, send = _recorder(fail_on="r1")
    coalescer = FeedbackCoalescer(send)

    async def main() -> tuple:
        together = await asyncio.gather(
            coalescer.submit("r0"), coalescer.submit("r1"), return_exceptions=True
        )
        later = await coalescer.submit("r2")
        return together, later

    together, later = asyncio.run(main())
    assert all(isinstance(r, ConnectionError) for r in together)
    assert later == {"accepted": True, "id": "r2"} and len(calls) == 2


@pytest.mark.parametrize("window_s", [0.0, 0.002])
def test_a_lone_report_is_sent_after_at_most_the_window(window_s):
    calls, send = _recorder()
    coalescer = FeedbackCoalescer(send, window_s=window_s)
    assert asyncio.run(coalescer.submit("only")) == {"accepted": True, "id": "only"}
    assert calls == [["only"]]
