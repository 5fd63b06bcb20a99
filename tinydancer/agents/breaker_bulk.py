"""Breaker events in bulk: `CircuitBreaker.record_many`, equal to one-by-one calls.

A block of events (agent, success, time; or a rate limit's cooldown) gives the same
states, counters, open times and transitions (same order) as calling `record` /
`cool_down` for each event in order with the clock at the event's time. Per agent, runs
of a closed circuit are vectorised (the window's failure sums and the failure streaks
are cumulative sums: the first event that opens it is found at once), runs of an open
circuit before its cooldown ends are skipped at once, and the few half-open probes and
rate limits go through the one-event functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from tinydancer.agents.breaker import (
    AgentBreaker,
    BreakerConfig,
    BreakerState,
    Transition,
    _open,
    cool_down,
    on_outcome,
    tick,
)

if TYPE_CHECKING:
    from tinydancer.agents.breaker import CircuitBreaker

__all__ = ["BreakerEvents", "apply_events"]

_FIRST_RUN, _LONGEST_RUN = 256, 8192


@dataclass(frozen=True, eq=False)
class BreakerEvents:
    """Events column by column: `agent` indexes `names`; `at` the clock at each event;
    `cool_down_s` (NaN = an outcome) a rate limit's cooldown; `request_id` (or None)
    settles routed requests watched for a decision timeout."""

    names: tuple[str, ...]
    agent: np.ndarray  # int64
    success: np.ndarray  # bool
    at: np.ndarray  # float64
    cool_down_s: np.ndarray  # float64, NaN = an outcome
    request_id: Sequence[str | None] | None = None

    def __len__(self) -> int:
        return len(self.agent)

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        agent: np.ndarray,
        success: np.ndarray,
        at: np.ndarray | float,
        cool_down_s: np.ndarray | None = None,
        request_id: Sequence[str | None] | None = None,
    ) -> BreakerEvents:
        n = len(agent)
        return cls(
            tuple(names),
            np.asarray(agent, np.int64),
            np.asarray(success, bool),
            np.broadcast_to(np.asarray(at, np.float64), (n,)),
            np.full(n, np.nan) if cool_down_s is None else np.asarray(cool_down_s, np.float64),
            request_id,
        )


def _closed_run(
    agent: AgentBreaker, failed: np.ndarray, config: BreakerConfig
) -> tuple[AgentBreaker, int | None, str]:
    """A closed circuit takes `failed` in order: its state after them, or the state just
    before the event that opens it, that event's index and the reason."""
    window = np.concatenate([np.asarray(agent.window, np.int64), failed.astype(np.int64)])
    sums = np.concatenate([[0], np.cumsum(window)])
    k = np.arange(len(failed))
    end = len(agent.window) + k + 1  # the window after event k is window[low:end]
    low = np.maximum(end - config.window_size, 0)
    length, failures = end - low, sums[end] - sums[low]
    last_success = np.maximum.accumulate(np.where(failed, -1, k))
    streak = np.where(last_success >= 0, k - last_success, agent.failures_in_a_row + k + 1)
    opens = (streak >= config.consecutive_failures) | (
        (length >= config.min_requests) & (failures / length >= config.failure_rate)
    )
    if not opens.any():
        tail = window[-config.window_size :].astype(bool).tolist()
        reopenings = agent.reopenings if failed.all() else 0
        return (
            replace(
                agent,
                window=tuple(tail),
                failures_in_a_row=int(streak[-1]),
                reopenings=reopenings,
            ),
            None,
            "",
        )
    first = int(np.argmax(opens))
    if streak[first] >= config.consecutive_failures:
        reason = f"{int(streak[first])} consecutive failures"
    else:
        rate = failures[first] / length[first]
        reason = f"failure rate {rate:.0%} over {int(length[first])} outcomes"
    before = agent if failed[:first].all() else replace(agent, reopenings=0)
    return before, first, reason


class _Applier:
    def __init__(self, breaker: CircuitBreaker, events: BreakerEvents) -> None:
        self.breaker, self.events, self.config = breaker, events, breaker.config
        self.failed = ~events.success
        self.is_cool_down = ~np.isnan(events.cool_down_s)
        self.found: list[tuple[int, int, Transition]] = []  # (row, step, transition)

    def _note(
        self,
        row: int,
        step: int,
        name: str,
        old: AgentBreaker,
        new: AgentBreaker,
        reason: str | None,
    ) -> None:
        if new.state is not old.state:
            at = float(self.events.at[row])
            self.found.append((row, step, Transition(name, old.state, new.state, at, reason or "")))

    def _one(self, name: str, agent: AgentBreaker, row: int) -> AgentBreaker:
        """One event through the one-event functions, as `record` / `cool_down` would."""
        now = float(self.events.at[row])
        ticked, reason = tick(agent, now, self.config)
        self._note(row, 0, name, agent, ticked, reason)
        if self.is_cool_down[row]:
            new, reason = cool_down(ticked, float(self.events.cool_down_s[row]), now, self.config)
            if new.state is BreakerState.OPEN:
                self.breaker.version += 1
        else:
            new, reason = on_outcome(ticked, bool(self.failed[row]), now, self.config)
        self._note(row, 1, name, ticked, new, reason)
        return new

    def agent(self, name: str, rows: np.ndarray) -> AgentBreaker:
        state = self.breaker.agents.get(name, AgentBreaker())
        stops = np.flatnonzero(self.is_cool_down[rows])  # rate limits go one by one
        i, run = 0, _FIRST_RUN
        while i < len(rows):
            next_stop = (
                stops[np.searchsorted(stops, i)] if len(stops) and stops[-1] >= i else len(rows)
            )
            end = min(int(next_stop), i + run)
            if end == i or state.state is BreakerState.HALF_OPEN:
                state, i = self._one(name, state, int(rows[i])), i + 1
                continue
            segment = rows[i:end]
            if state.state is BreakerState.OPEN:
                ready = np.flatnonzero(self.events.at[segment] >= state.ready_at(self.config))
                if len(ready) == 0:  # late outcomes of an open circuit change nothing
                    i, run = end, min(2 * run, _LONGEST_RUN)
                    continue
                i += int(ready[0])
                state, i = self._one(name, state, int(rows[i])), i + 1
                continue
            state, first, reason = _closed_run(state, self.failed[segment], self.config)
            if first is None:
                i, run = end, min(2 * run, _LONGEST_RUN)
                continue
            row = int(segment[first])
            opened = _open(state, float(self.events.at[row]))
            self._note(row, 1, name, state, opened, reason)
            state, i, run = opened, i + first + 1, _FIRST_RUN
        return state


def apply_events(breaker: CircuitBreaker, events: BreakerEvents) -> int:
    """Apply every event as one-by-one calls in order would; returns the events applied."""
    n = len(events)
    if n == 0:
        return 0
    if events.request_id is not None:  # outcomes settle them (`record`), rate limits do not
        for request_id, cooling in zip(
            events.request_id, ~np.isnan(events.cool_down_s), strict=True
        ):
            if request_id is not None and not cooling:
                breaker.pending.pop(request_id, None)
    applier = _Applier(breaker, events)
    order = np.argsort(events.agent, kind="stable")
    codes, first = np.unique(events.agent[order], return_index=True)
    for code in codes[np.argsort(order[first])]:  # new agents join in order of first event
        breaker.agents.setdefault(events.names[code], AgentBreaker())
    for code, rows in zip(codes, np.split(order, first[1:]), strict=True):
        name = events.names[code]
        breaker.agents[name] = applier.agent(name, rows)
    applier.found.sort(key=lambda found: (found[0], found[1]))
    breaker.transitions.extend(t for _, _, t in applier.found)
    breaker.version += len(applier.found)
    return n
