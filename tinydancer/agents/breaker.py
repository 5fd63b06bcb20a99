"""Per-agent circuit breakers: a pure state machine with an injected clock.

    closed ──(failures)──▶ open ──(cooldown_s elapsed)──▶ half_open
       ▲                    ▲                                 │
       │                    └────────(a probe fails)──────────┤
       └──────────(successes_to_close probe successes)────────┘

* closed → open when `consecutive_failures` failures arrive in a row, or when at least
  `min_requests` of the last `window_size` outcomes are known and their failure rate is
  >= `failure_rate`. Counters are windows, not lifetime totals (the seed's defect).
* open → half_open once `cooldown_s` has passed; each consecutive re-opening doubles the
  cooldown up to `max_cooldown_s`.
* half_open admits at most `probe_budget` requests in total until it resolves; one
  success does not close it: `successes_to_close` successful probes do. Any failure
  re-opens it.
* `cool_down(seconds)` (an upstream answered 429 with Retry-After): open for exactly that
  long (capped at `max_cooldown_s`), then half-open as usual; a rate limit is not a
  failure streak, so it does not lengthen later cooldowns.

Many replicas route from snapshots, so probes are *leased*: a replica asks for permits
(`lease`), the breaker grants at most what is left of the budget, and a replica routes
to a half-open agent only while it holds a permit. The sum of all leases never exceeds
the budget, however many replicas there are.

Optionally (`decision_timeout_s`, off by default) a routed request with no outcome after
that long counts as a failure (`expire`).

Pure functions over frozen states (optax style); `CircuitBreaker` keeps one state per
agent and is what the registry / actor owns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from tinydancer.agents.breaker_bulk import BreakerEvents

__all__ = [
    "AgentBreaker",
    "BreakerConfig",
    "BreakerState",
    "BreakerView",
    "CircuitBreaker",
    "Transition",
]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    consecutive_failures: int = Field(
        5, ge=1, description="failures in a row that open the circuit"
    )
    failure_rate: float = Field(
        0.5, gt=0, le=1, description="failure share over the window that opens it"
    )
    window_size: int = Field(
        50, ge=1, le=1024, description="recent outcomes the failure rate is taken over"
    )
    min_requests: int = Field(20, ge=1, description="outcomes needed before the rate rule applies")
    cooldown_s: float = Field(30.0, gt=0, description="time open before probing")
    max_cooldown_s: float = Field(600.0, gt=0, description="cap of the doubling cooldown")
    probe_budget: int = Field(
        3, ge=1, description="requests admitted while half-open, all replicas together"
    )
    successes_to_close: int = Field(2, ge=1, description="probe successes that close the circuit")
    decision_timeout_s: float | None = Field(
        None, gt=0, description="no outcome after this = failure (off)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> BreakerConfig:
        if self.probe_budget < self.successes_to_close:
            raise ValueError(
                f"probe_budget ({self.probe_budget}) must be >= successes_to_close "
                f"({self.successes_to_close}), or a half-open circuit can never close"
            )
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError(
                f"max_cooldown_s ({self.max_cooldown_s}) must be >= cooldown_s ({self.cooldown_s})"
            )
        return self


@dataclass(frozen=True, slots=True)
class Transition:
    agent: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "at": self.at,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class AgentBreaker:
    """One agent's breaker. `window` holds the last outcomes (True = failure), oldest first."""

    state: BreakerState = BreakerState.CLOSED
    window: tuple[bool, ...] = ()
    failures_in_a_row: int = 0
    opened_at: float = 0.0
    reopenings: int = 0
    probes_leased: int = 0
    probe_successes: int = 0
    leased_at: float = 0.0
    open_until: float = 0.0  # set by a rate limit: the end of its Retry-After (0 = none)

    def cooldown(self, config: BreakerConfig) -> float:
        return min(config.cooldown_s * 2.0 ** max(self.reopenings - 1, 0), config.max_cooldown_s)

    def ready_at(self, config: BreakerConfig) -> float:
        """When an open circuit goes half-open."""
        return self.open_until if self.open_until > 0 else self.opened_at + self.cooldown(config)


def _open(agent: AgentBreaker, now: float) -> AgentBreaker:
    return AgentBreaker(BreakerState.OPEN, (), 0, now, agent.reopenings + 1, 0, 0)


def tick(agent: AgentBreaker, now: float, config: BreakerConfig) -> tuple[AgentBreaker, str | None]:
    """Time passes: open -> half_open after the cooldown.

    Half-open probes whose outcomes never arrive would hold the budget forever; once the
    whole budget is leased and a cooldown passes without a verdict, it is issued again.
    """
    if agent.state is BreakerState.OPEN and now >= agent.ready_at(config):
        half_open = replace(
            agent, state=BreakerState.HALF_OPEN, probes_leased=0, probe_successes=0, open_until=0.0
        )
        return half_open, "cooldown elapsed"
    if (
        agent.state is BreakerState.HALF_OPEN
        and agent.probes_leased >= config.probe_budget
        and now - agent.leased_at >= config.cooldown_s
    ):
        return replace(agent, probes_leased=0), None
    return agent, None


def on_outcome(
    agent: AgentBreaker, failed: bool, now: float, config: BreakerConfig
) -> tuple[AgentBreaker, str | None]:
    """Apply one outcome; returns the new state and the reason if the state changed."""
    agent, reason = tick(agent, now, config)
    if agent.state is BreakerState.OPEN:
        return agent, reason  # late outcomes of requests routed before it opened change nothing
    if agent.state is BreakerState.HALF_OPEN:
        if failed:
            return _open(agent, now), "probe failed"
        successes = agent.probe_successes + 1
        if successes >= config.successes_to_close:
            return AgentBreaker(), f"{successes} probe successes"
        return replace(agent, probe_successes=successes), reason
    window = (*agent.window, failed)[-config.window_size :]
    in_a_row = agent.failures_in_a_row + 1 if failed else 0
    if in_a_row >= config.consecutive_failures:
        return _open(agent, now), f"{in_a_row} consecutive failures"
    if len(window) >= config.min_requests and sum(window) / len(window) >= config.failure_rate:
        return _open(
            agent, now
        ), f"failure rate {sum(window) / len(window):.0%} over {len(window)} outcomes"
    return replace(
        agent,
        window=window,
        failures_in_a_row=in_a_row,
        reopenings=0 if not failed else agent.reopenings,
    ), reason


def cool_down(
    agent: AgentBreaker, seconds: float, now: float, config: BreakerConfig
) -> tuple[AgentBreaker, str]:
    """A rate limit: open until `seconds` from now (capped), or later if it was open longer."""
    agent, _ = tick(agent, now, config)
    until = now + min(max(seconds, 0.0), config.max_cooldown_s)
    reason = f"rate limited (Retry-After {seconds:g} s)"
    if agent.state is BreakerState.OPEN:
        return replace(agent, open_until=max(agent.ready_at(config), until)), reason
    return AgentBreaker(BreakerState.OPEN, (), 0, now, agent.reopenings, open_until=until), reason


def lease(
    agent: AgentBreaker, wanted: int, now: float, config: BreakerConfig
) -> tuple[AgentBreaker, int, str | None]:
    """Grant up to `wanted` probe permits (only half-open agents need them)."""
    agent, reason = tick(agent, now, config)
    if agent.state is not BreakerState.HALF_OPEN:
        return agent, 0, reason
    granted = max(0, min(wanted, config.probe_budget - agent.probes_leased))
    leased_at = now if granted else agent.leased_at
    return (
        replace(agent, probes_leased=agent.probes_leased + granted, leased_at=leased_at),
        granted,
        reason,
    )


@dataclass
class CircuitBreaker:
    """The breakers of all agents, with transitions recorded for the history store."""

    config: BreakerConfig = field(default_factory=BreakerConfig)
    clock: Callable[[], float] = time.time
    agents: dict[str, AgentBreaker] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    pending: dict[str, tuple[str, float]] = field(
        default_factory=dict
    )  # request_id -> (agent, deadline)
    version: int = 0

    def _set(self, name: str, new: AgentBreaker, reason: str | None, now: float) -> None:
        old = self.agents.get(name, AgentBreaker())
        self.agents[name] = new
        if new.state is not old.state:
            self.transitions.append(Transition(name, old.state, new.state, now, reason or ""))
            self.version += 1

    def state(self, name: str) -> BreakerState:
        return self.refresh(name).state

    def refresh(self, name: str) -> AgentBreaker:
        now = self.clock()
        new, reason = tick(self.agents.get(name, AgentBreaker()), now, self.config)
        self._set(name, new, reason, now)
        return new

    def record(self, name: str, success: bool, request_id: str | None = None) -> BreakerState:
        self.refresh(name)  # a cooldown that ended is its own transition, recorded first
        now = self.clock()
        if request_id is not None:
            self.pending.pop(request_id, None)
        new, reason = on_outcome(
            self.agents.get(name, AgentBreaker()), not success, now, self.config
        )
        self._set(name, new, reason, now)
        return new.state

    def record_many(self, events: BreakerEvents) -> int:
        """Apply a block of events (`agents.breaker_bulk`) vectorised: the same states,
        counters and transitions as `record` / `cool_down` for each in order, with the
        clock at each event's time. Returns the events applied."""
        from tinydancer.agents.breaker_bulk import apply_events

        return apply_events(self, events)

    def cool_down(self, name: str, seconds: float) -> BreakerState:
        """Open `name` for `seconds` (an upstream's Retry-After), then probe it as usual."""
        self.refresh(name)
        now = self.clock()
        new, reason = cool_down(self.agents.get(name, AgentBreaker()), seconds, now, self.config)
        self._set(name, new, reason, now)
        if new.state is BreakerState.OPEN:
            self.version += 1  # a longer cooldown changes when routing may try it again
        return new.state

    def lease(self, name: str, wanted: int = 1) -> int:
        self.refresh(name)
        now = self.clock()
        new, granted, reason = lease(
            self.agents.get(name, AgentBreaker()), wanted, now, self.config
        )
        self._set(name, new, reason, now)
        return granted

    def routed(self, request_id: str, name: str) -> None:
        """Note a routed request (only needed when decision_timeout_s is set)."""
        if self.config.decision_timeout_s is not None:
            self.pending[request_id] = (name, self.clock() + self.config.decision_timeout_s)

    def expire(self) -> list[str]:
        """Count overdue decisions as failures; returns their request ids."""
        now = self.clock()
        overdue = [rid for rid, (_, deadline) in self.pending.items() if deadline <= now]
        for rid in overdue:
            name, _ = self.pending.pop(rid)
            self.record(name, success=False)
        return overdue

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        for name in list(self.agents):
            self.refresh(name)
        return {
            "version": self.version,
            "at": now,
            "next_change_at": self.next_change_at(),
            "states": {n: a.state.value for n, a in self.agents.items()},
        }

    def next_change_at(self) -> float:
        """When the earliest open circuit will go half-open by itself (inf if none is open)."""
        return min(
            (a.ready_at(self.config) for a in self.agents.values() if a.state is BreakerState.OPEN),
            default=float("inf"),
        )

    def forget(self, name: str) -> None:
        self.agents.pop(name, None)


class RoutingBreaker(Protocol):
    """What a router needs from breakers: a CircuitBreaker, or a replica's BreakerView."""

    version: int

    def state(self, name: str) -> BreakerState: ...
    def lease(self, name: str, wanted: int = 1) -> int: ...
    def next_change_at(self) -> float: ...
    def routed(self, request_id: str, name: str) -> None: ...
    def record(self, name: str, success: bool, request_id: str | None = None) -> BreakerState: ...


class BreakerView:
    """A replica's read-only view of the breakers: states from the CircuitBreaker's
    snapshot plus the probe permits leased to this replica. Duck-types what AgentRouter
    needs from a CircuitBreaker; outcomes go to the owner of the real breaker."""

    def __init__(
        self, snapshot: dict[str, Any] | None = None, permits: dict[str, int] | None = None
    ) -> None:
        snapshot = snapshot or {"version": 0, "states": {}, "next_change_at": float("inf")}
        self.version = int(snapshot["version"])
        self._states = {name: BreakerState(state) for name, state in snapshot["states"].items()}
        self._next_change_at = float(snapshot.get("next_change_at", float("inf")))
        self.permits = dict(permits or {})

    def state(self, name: str) -> BreakerState:
        return self._states.get(name, BreakerState.CLOSED)

    def half_open(self) -> list[str]:
        return [n for n, s in self._states.items() if s is BreakerState.HALF_OPEN]

    def lease(self, name: str, wanted: int = 1) -> int:
        granted = min(wanted, self.permits.get(name, 0))
        self.permits[name] = self.permits.get(name, 0) - granted
        return granted

    def next_change_at(self) -> float:
        return self._next_change_at

    def routed(self, request_id: str, name: str) -> None:
        """Decision timeouts are tracked by the breaker's owner."""

    def record(self, name: str, success: bool, request_id: str | None = None) -> BreakerState:
        raise RuntimeError(
            "a BreakerView is read-only: send outcomes to the CircuitBreaker's owner"
        )
