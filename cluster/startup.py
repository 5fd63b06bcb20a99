"""What a local start is doing, phase by phase, as it happens.

    progress = StartupProgress()                # a live status line on a terminal, plain lines otherwise
    with progress.phase("starting Ray"):
        ...
    with progress.phase("deploying 2 replicas") as step:
        step("1 of 2 running")                 # shown in place on a terminal, once per change otherwise
    progress.durations                          # {"starting Ray": 6.1, ...}

`StartupProgress(enabled=False)` only measures (the tests, `--json` runs).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = ["StartupProgress"]


class StartupProgress:
    def __init__(self, stream: IO[str] | None = None, *, enabled: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.durations: dict[str, float] = {}
        self.started = time.perf_counter()
        self._console: Any = None
        if enabled and self.stream.isatty():
            from rich.console import Console

            self._console = Console(file=self.stream)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def _line(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Callable[[str], None]]:
        """Time `name`; the callable it yields shows a detail (a count, a wait)."""
        t0 = time.perf_counter()
        last = [""]
        status: Any = None
        if self._console is not None:
            status = self._console.status(f"{name} ...")
            status.start()
        else:
            self._line(f"{name} ...")

        def detail(text: str) -> None:
            if text == last[0]:
                return
            last[0] = text
            if status is not None:
                status.update(f"{name}: {text} ({time.perf_counter() - t0:.0f} s)")
            else:
                self._line(f"  {name}: {text}")

        try:
            yield detail
        finally:
            if status is not None:
                status.stop()
            seconds = self.durations[name] = time.perf_counter() - t0
            failed = sys.exc_info()[0] is not None
            self._line(f"{'✗' if failed else '✓'} {name} ({seconds:.1f} s)")
