"""Client feedback on one replica, coalesced: the reports that arrive within a millisecond of
each other share one actor call.

    coalescer = FeedbackCoalescer(send)     # send(items) -> one result per item, in order
    result = await coalescer.submit(item)   # from each /v1/feedback request

Each report is still validated on its own by the registry actor's shared ledger (accepted
once, only for an issued request id and an offered agent, refused with a reason); a report
that waits there for its decision (still on its way from another replica) holds back only
the reports of its own call: calls do not wait for each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["FeedbackCoalescer"]


class FeedbackCoalescer:
    def __init__(
        self,
        send: Callable[[list[Any]], Awaitable[list[dict[str, Any]]]],
        *,
        window_s: float = 0.001,
        max_batch: int = 512,
    ) -> None:
        self.send = send
        self.window_s = window_s
        self.max_batch = max_batch
        self.calls = 0  # actor calls made (the tests count them against the reports)
        self.reports = 0
        self._pending: list[tuple[Any, asyncio.Future[dict[str, Any]]]] = []
        self._scheduled = False

    async def submit(self, item: Any) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self.reports += 1
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.window_s)
        self._scheduled = False
        pending, self._pending = self._pending, []
        await asyncio.gather(
            *(
                self._call(pending[i : i + self.max_batch])
                for i in range(0, len(pending), self.max_batch)
            )
        )

    async def _call(self, batch: list[tuple[Any, asyncio.Future[dict[str, Any]]]]) -> None:
        self.calls += 1
        try:
            results = await self.send([item for item, _ in batch])
        except BaseException as exc:  # every report of the call hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
