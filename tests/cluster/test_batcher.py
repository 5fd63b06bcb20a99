"""MicroBatcher (cluster/batcher.py) on a plain event loop: who shares a call, in what order
results come back, and what an error reaches."""

from __future__ import annotations

import asyncio

import pytest

from cluster.batcher import MicroBatcher


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[object]:
        self.calls.append(list(items))
        return [ValueError(f"item {i}") if i < 0 else i * 10 for i in items]


def run(coro):
    return asyncio.run(coro)


def submitted_together(batch, items, max_size=32):
    """Each item's result (or exception) when all are submitted in the same loop turn."""

    async def main():
        batcher = MicroBatcher(batch, max_size=max_size, wait_s=0.0)
        return await asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True)

    return run(main())


def test_requests_submitted_together_share_one_call_and_get_their_own_results():
    recorder = Recorder()
    assert submitted_together(recorder, range(7)) == [i * 10 for i in range(7)]
    assert recorder.calls == [list(range(7))]


def test_a_full_batch_runs_at_once_and_the_rest_follow_in_order():
    recorder = Recorder()
    assert submitted_together(recorder, range(10), max_size=4) == [i * 10 for i in range(10)]
    assert recorder.calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_request_within_the_wait_joins_the_batch():
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher(recorder, max_size=32, wait_s=1.0)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)  # the first is queued and waiting for company
        assert recorder.calls == []
        return await asyncio.gather(first, batcher.submit(2))

    assert run(main()) == [10, 20]
    assert recorder.calls == [[1, 2]]


def test_an_error_result_is_raised_in_its_own_caller_only():
    recorder = Recorder()
    one, bad, two = submitted_together(recorder, [1, -1, 2])
    assert (one, two) == (10, 20)
    assert isinstance(bad, ValueError) and str(bad) == "item -1"
    assert recorder.calls == [[1, -1, 2]]


def test_a_failing_run_fails_its_batch_and_the_next_batch_still_runs():
    calls: list[list[int]] = []

    def flaky(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("the jitted call failed")
        return items

    async def main():
        batcher = MicroBatcher(flaky, max_size=32, wait_s=0.0)
        failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        return failed, await batcher.submit(3)

    failed, after = run(main())
    assert [type(e) for e in failed] == [RuntimeError, RuntimeError]
    assert after == 3 and calls == [[1, 2], [3]]


def test_a_wrong_number_of_results_fails_the_batch():
    errors = submitted_together(lambda items: items[:-1], [1, 2])
    assert all(isinstance(e, RuntimeError) and "2 returned 1" in str(e) for e in errors)


def test_a_cancelled_caller_leaves_the_others_their_results():
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher(recorder, max_size=32, wait_s=1.0)
        gone = asyncio.ensure_future(batcher.submit(1))
        stays = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        return await stays

    assert run(main()) == 20
    assert recorder.calls == [[1, 2]]


def test_max_size_below_one_is_refused():
    with pytest.raises(ValueError, match="max_size: got 0"):
        MicroBatcher(lambda items: items, max_size=0, wait_s=0.0)


def test_alone_now_runs_a_lone_caller_at_once_and_batches_callers_that_arrive_together():
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher(recorder, max_size=32, wait_s=1.0, alone_now=True)
        lone = await asyncio.wait_for(batcher.submit(1), 0.5)  # not the 1 s wait
        together = await asyncio.gather(
            *(batcher.submit(i) for i in (2, 3, -4)), return_exceptions=True
        )
        with pytest.raises(ValueError, match="item -5"):
            await batcher.submit(-5)  # alone, its error raised in its caller
        return lone, together, batcher._callers

    lone, together, callers = run(main())
    assert lone == 10 and together[:2] == [20, 30] and str(together[2]) == "item -4"
    assert recorder.calls == [[1], [2, 3, -4], [-5]] and callers == 0
