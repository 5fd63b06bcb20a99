"""tinydancer.agents.breaker: deterministic transitions on a fake clock, plus a stateful property test."""

from __future__ import annotations

import itertools
from collections import Counter, deque

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pydantic import ValidationError

from tinydancer.agents.breaker import AgentBreaker, BreakerConfig, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
NAME = "agent-a"


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# Explicit values (so that tuning the defaults does not change what these tests pin);
# the rate rule is off unless a test asks for it.
BASE = {
    "consecutive_failures": 5,
    "failure_rate": 1.0,
    "window_size": 50,
    "min_requests": 1_000,
    "cooldown_s": 30.0,
    "max_cooldown_s": 600.0,
    "probe_budget": 3,
    "successes_to_close": 2,
}


def make(clock: FakeClock, **config) -> CircuitBreaker:
    config = {**BASE, **config}
    return CircuitBreaker(BreakerConfig(**config), clock=clock)


def fail(breaker: CircuitBreaker, times: int, name: str = NAME) -> BreakerState:
    state = breaker.state(name)
    for _ in range(times):
        state = breaker.record(name, success=False)
    return state


def succeed(breaker: CircuitBreaker, times: int, name: str = NAME) -> BreakerState:
    state = breaker.state(name)
    for _ in range(times):
        state = breaker.record(name, success=True)
    return state


def history(breaker: CircuitBreaker) -> list[tuple[str, str, str]]:
    return [(t.from_state.value, t.to_state.value, t.reason) for t in breaker.transitions]


def opened(clock: FakeClock, **config) -> CircuitBreaker:
    breaker = make(clock, consecutive_failures=1, **config)
    assert fail(breaker, 1) is OPEN
    return breaker


# -- closed -> open ----------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [1, 3, 5], ids=lambda n: f"after{n}")
def test_consecutive_failures_open_the_circuit(clock, threshold):
    breaker = make(clock, consecutive_failures=threshold)
    assert fail(breaker, threshold - 1) is CLOSED
    assert breaker.agents[NAME].failures_in_a_row == threshold - 1
    assert fail(breaker, 1) is OPEN
    assert history(breaker) == [("closed", "open", f"{threshold} consecutive failures")]


def test_a_success_resets_the_failure_run(clock):
    breaker = make(clock, consecutive_failures=3)
    for _ in range(10):
        assert fail(breaker, 2) is CLOSED
        assert succeed(breaker, 1) is CLOSED
    assert breaker.agents[NAME].failures_in_a_row == 0
    assert fail(breaker, 3) is OPEN


@pytest.mark.parametrize("min_requests", [2, 7, 20], ids=lambda m: f"min{m}")
def test_rate_rule_waits_for_min_requests(clock, min_requests):
    """Alternating failure/success (>= 50 % failures) opens exactly at the min_requests-th outcome."""
    breaker = make(
        clock, consecutive_failures=100, failure_rate=0.5, window_size=50, min_requests=min_requests
    )
    for i in range(min_requests - 1):
        assert breaker.record(NAME, success=i % 2 == 1) is CLOSED
    assert breaker.record(NAME, success=(min_requests - 1) % 2 == 1) is OPEN
    (reason,) = [t.reason for t in breaker.transitions]
    assert reason.startswith("failure rate") and reason.endswith(f"over {min_requests} outcomes")


def test_rate_rule_uses_a_window_not_lifetime_totals(clock):
    """After 100 successes, 5 failures in a 10-wide window make 50 % (lifetime: 4.8 %)."""
    breaker = make(
        clock, consecutive_failures=100, failure_rate=0.5, window_size=10, min_requests=10
    )
    assert succeed(breaker, 100) is CLOSED
    assert fail(breaker, 4) is CLOSED
    assert fail(breaker, 1) is OPEN
    assert history(breaker) == [("closed", "open", "failure rate 50% over 10 outcomes")]


def test_rate_below_threshold_never_opens(clock):
    breaker = make(
        clock, consecutive_failures=100, failure_rate=0.5, window_size=10, min_requests=10
    )
    for _ in range(100):  # 1 failure in 3: 33 % < 50 %
        assert fail(breaker, 1) is CLOSED
        assert succeed(breaker, 2) is CLOSED
    assert breaker.version == 0
    assert len(breaker.agents[NAME].window) == 10


# -- open -> half_open -> closed / open --------------------------------------------------


@pytest.mark.parametrize("cooldown", [0.5, 30.0, 600.0], ids=lambda c: f"cooldown{c:g}s")
def test_open_becomes_half_open_after_cooldown(clock, cooldown):
    breaker = opened(clock, cooldown_s=cooldown, max_cooldown_s=600.0)
    clock.advance(cooldown * 0.999)
    assert breaker.state(NAME) is OPEN
    clock.advance(cooldown * 0.001 + 1e-9)
    assert breaker.state(NAME) is HALF_OPEN
    assert history(breaker)[-1] == ("open", "half_open", "cooldown elapsed")


def cooldown_now(breaker: CircuitBreaker, clock: FakeClock, step: float = 0.5) -> float:
    """Seconds the breaker stays open from now, measured by stepping the fake clock."""
    start = clock.now
    while breaker.state(NAME) is OPEN:
        clock.advance(step)
    return clock.now - start


def test_cooldown_doubles_on_each_reopening_and_is_capped(clock):
    breaker = opened(clock, cooldown_s=10.0, max_cooldown_s=35.0)
    measured = []
    for _ in range(4):
        measured.append(cooldown_now(breaker, clock))
        assert breaker.record(NAME, success=False) is OPEN  # the probe fails
    assert measured == [10.0, 20.0, 35.0, 35.0]
    assert [t.reason for t in breaker.transitions].count("probe failed") == 4


def test_closing_resets_the_cooldown(clock):
    breaker = opened(clock, cooldown_s=10.0, max_cooldown_s=1_000.0)
    cooldown_now(breaker, clock)
    fail(breaker, 1)
    assert cooldown_now(breaker, clock) == 20.0
    assert succeed(breaker, 2) is CLOSED
    fail(breaker, 1)
    assert cooldown_now(breaker, clock) == 10.0


@pytest.mark.parametrize("needed", [1, 2, 3], ids=lambda n: f"close-after{n}")
def test_half_open_needs_successes_to_close(clock, needed):
    breaker = opened(clock, cooldown_s=5.0, successes_to_close=needed, probe_budget=3)
    clock.advance(5.0)
    assert breaker.state(NAME) is HALF_OPEN
    for _ in range(needed - 1):
        assert breaker.record(NAME, success=True) is HALF_OPEN
    assert breaker.record(NAME, success=True) is CLOSED
    assert history(breaker)[-1] == ("half_open", "closed", f"{needed} probe successes")
    assert breaker.agents[NAME] == AgentBreaker()  # a fresh closed breaker: counters reset


def test_one_success_does_not_close_when_two_are_needed(clock):
    breaker = opened(clock, cooldown_s=5.0, successes_to_close=2)
    clock.advance(5.0)
    assert breaker.state(NAME) is HALF_OPEN
    assert breaker.record(NAME, success=True) is HALF_OPEN
    clock.advance(1_000.0)  # time alone does not close it either
    assert breaker.state(NAME) is HALF_OPEN


@pytest.mark.parametrize("successes_first", [0, 1, 2], ids=lambda n: f"after{n}ok")
def test_a_failure_in_half_open_reopens(clock, successes_first):
    breaker = opened(clock, cooldown_s=5.0, successes_to_close=3)
    clock.advance(5.0)
    assert succeed(breaker, successes_first) is HALF_OPEN
    assert breaker.record(NAME, success=False) is OPEN
    assert breaker.agents[NAME].opened_at == clock.now
    assert history(breaker)[-1] == ("half_open", "open", "probe failed")


# -- probe leases ------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [1, 3, 8], ids=lambda b: f"budget{b}")
def test_probe_leases_never_exceed_the_budget_across_replicas(clock, budget):
    breaker = opened(clock, cooldown_s=5.0, probe_budget=budget, successes_to_close=1)
    assert breaker.lease(NAME, 5) == 0  # open: no permits
    clock.advance(5.0)
    granted = Counter()
    for round_ in range(5):
        for replica in range(20):
            granted[replica] += breaker.lease(NAME, wanted=1 + (replica + round_) % 3)
    assert sum(granted.values()) == budget
    assert breaker.agents[NAME].probes_leased == budget
    assert breaker.lease(NAME, 100) == 0


def test_lease_grants_what_is_left(clock):
    breaker = opened(clock, cooldown_s=5.0, probe_budget=5)
    clock.advance(5.0)
    assert [breaker.lease(NAME, n) for n in (2, 0, 2, 2, 1)] == [2, 0, 2, 1, 0]


def test_closed_agents_need_no_permits(clock):
    breaker = make(clock)
    assert breaker.lease(NAME, 3) == 0
    assert breaker.state(NAME) is CLOSED


def test_a_new_half_open_period_gets_a_new_budget(clock):
    breaker = opened(clock, cooldown_s=5.0, probe_budget=2)
    clock.advance(5.0)
    assert breaker.lease(NAME, 5) == 2
    fail(breaker, 1)
    assert breaker.lease(NAME, 5) == 0
    clock.advance(10.0)
    assert breaker.lease(NAME, 5) == 2


# -- late outcomes, timeouts, history ----------------------------------------------------


def test_late_outcomes_while_open_change_nothing(clock):
    breaker = opened(clock, cooldown_s=30.0)
    before = breaker.agents[NAME]
    version, transitions = breaker.version, list(breaker.transitions)
    for success in (True, False, True, True, False, False, True):
        clock.advance(1.0)
        assert breaker.record(NAME, success=success) is OPEN
    assert breaker.agents[NAME] == before
    assert (breaker.version, breaker.transitions) == (version, transitions)
    clock.advance(23.0)  # 30 s after opening: the late outcomes did not extend the cooldown
    assert breaker.state(NAME) is HALF_OPEN


def test_decision_timeout_counts_overdue_decisions_as_failures(clock):
    breaker = make(clock, consecutive_failures=2, decision_timeout_s=5.0)
    breaker.routed("r1", NAME)
    breaker.routed("r2", NAME)
    clock.advance(1.0)
    breaker.routed("r3", NAME)
    breaker.record(NAME, success=True, request_id="r2")  # answered in time
    clock.advance(3.9)
    assert breaker.expire() == []
    clock.advance(0.1)  # r1 is due (deadline <= now); r3 is not
    assert breaker.expire() == ["r1"]
    assert breaker.agents[NAME].failures_in_a_row == 1
    assert breaker.expire() == []  # counted once
    clock.advance(1.0)
    assert breaker.expire() == ["r3"]
    assert breaker.state(NAME) is OPEN
    assert history(breaker) == [("closed", "open", "2 consecutive failures")]


def test_decision_timeout_is_off_by_default(clock):
    breaker = make(clock, consecutive_failures=1)
    assert breaker.config.decision_timeout_s is None
    breaker.routed("r1", NAME)
    clock.advance(1e6)
    assert breaker.expire() == []
    assert breaker.pending == {}
    assert breaker.state(NAME) is CLOSED


def test_a_full_cycle_is_recorded_with_reasons_and_times(clock):
    breaker = make(clock, consecutive_failures=3, cooldown_s=10.0)
    start = clock.now
    fail(breaker, 3)
    clock.advance(10.0)
    assert breaker.lease(NAME, 2) == 2
    succeed(breaker, 2)
    assert history(breaker) == [
        ("closed", "open", "3 consecutive failures"),
        ("open", "half_open", "cooldown elapsed"),
        ("half_open", "closed", "2 probe successes"),
    ]
    assert [t.at for t in breaker.transitions] == [start, start + 10.0, start + 10.0]
    assert breaker.transitions[0].to_dict() == {
        "agent": NAME,
        "from_state": "closed",
        "to_state": "open",
        "at": start,
        "reason": "3 consecutive failures",
    }


def test_version_bumps_only_on_state_changes(clock):
    breaker = make(clock, consecutive_failures=2, cooldown_s=10.0)
    succeed(breaker, 5)
    fail(breaker, 1)
    assert breaker.version == 0
    fail(breaker, 1)
    assert breaker.version == 1
    breaker.record(NAME, success=False)  # late: nothing changes
    assert breaker.version == 1
    clock.advance(10.0)
    breaker.state(NAME)
    assert breaker.version == 2
    breaker.state(NAME)
    breaker.lease(NAME, 1)
    assert breaker.version == 2
    succeed(breaker, 2)
    assert breaker.version == 3 == len(breaker.transitions)


def test_agents_are_independent_and_snapshot_refreshes(clock):
    breaker = make(clock, consecutive_failures=1, cooldown_s=10.0)
    fail(breaker, 1, name="a")
    succeed(breaker, 1, name="b")
    assert breaker.snapshot()["states"] == {"a": "open", "b": "closed"}
    clock.advance(10.0)
    snapshot = breaker.snapshot()
    assert snapshot["states"] == {"a": "half_open", "b": "closed"}
    assert snapshot["version"] == breaker.version == 2
    assert snapshot["at"] == clock.now
    breaker.forget("a")
    assert breaker.state("a") is CLOSED


def test_reopening_by_a_late_failure_after_cooldown_is_recorded(clock):
    breaker = opened(clock, cooldown_s=10.0)
    clock.advance(10.0)
    assert breaker.record(NAME, success=False) is OPEN
    assert breaker.agents[NAME].reopenings == 2  # the cooldown doubled ...
    assert history(breaker) == [  # ... but the history does not say why
        ("closed", "open", "1 consecutive failures"),
        ("open", "half_open", "cooldown elapsed"),
        ("half_open", "open", "probe failed"),
    ]


def test_closing_after_cooldown_passes_through_half_open_in_the_history(clock):
    breaker = opened(clock, cooldown_s=10.0, successes_to_close=1)
    clock.advance(10.0)
    assert breaker.record(NAME, success=True) is CLOSED
    assert ("open", "closed") not in [(f, t) for f, t, _ in history(breaker)]


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"consecutive_failures": 0},
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"window_size": 0},
        {"window_size": 2_000},
        {"cooldown_s": 0.0},
        {"probe_budget": 0},
        {"successes_to_close": 0},
        {"decision_timeout_s": 0.0},
        {"cooldown": 5.0},
    ],
    ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items()),
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValidationError, match=next(iter(bad))):
        BreakerConfig(**bad)


@pytest.mark.parametrize(
    "bad",
    [{"probe_budget": 1, "successes_to_close": 2}, {"cooldown_s": 100.0, "max_cooldown_s": 10.0}],
    ids=["budget-below-successes", "max-below-cooldown"],
)
def test_config_rejects_inconsistent_values(bad):
    with pytest.raises(ValidationError):
        BreakerConfig(**bad)


# -- property-based: a reference model driven by random events ---------------------------


@st.composite
def configs(draw: st.DrawFn) -> BreakerConfig:
    """Valid configurations only (the config itself refuses inconsistent ones)."""
    cooldown = draw(st.sampled_from([1.0, 5.0, 30.0]))
    successes = draw(st.integers(1, 3))
    return BreakerConfig(
        consecutive_failures=draw(st.integers(1, 5)),
        failure_rate=draw(st.sampled_from([0.25, 0.5, 1.0])),
        window_size=draw(st.integers(1, 10)),
        min_requests=draw(st.integers(1, 12)),
        cooldown_s=cooldown,
        max_cooldown_s=draw(st.sampled_from([c for c in (5.0, 30.0, 120.0) if c >= cooldown])),
        probe_budget=draw(st.integers(successes, 4)),
        successes_to_close=successes,
    )


class BreakerMachine(RuleBasedStateMachine):
    """Drives one CircuitBreaker with random outcomes, clock steps and leases from replicas.

    A small independent model of the documented behaviour predicts every answer; the
    invariants are the ones the module docstring promises. `check_history` additionally
    demands that the recorded transitions tell the same story as the model.
    """

    check_history = False

    @initialize(config=configs())
    def build(self, config: BreakerConfig) -> None:
        self.config = config
        self.clock = FakeClock()
        self.breaker = CircuitBreaker(config, clock=self.clock)
        self.state = CLOSED  # model's state as of its last event
        self.window: deque[bool] = deque(maxlen=config.window_size)
        self.in_a_row = 0
        self.opened_at = 0.0
        self.opens_in_a_row = 0
        self.half_open_since: float | None = None
        self.leased: Counter[int] = Counter()
        self.last_lease_at = 0.0
        self.probe_successes = 0
        self.changes = 0  # state changes the model went through

    # model -------------------------------------------------------------------------------
    def expected_cooldown(self) -> float:
        c = self.config
        return min(c.cooldown_s * 2.0 ** (self.opens_in_a_row - 1), c.max_cooldown_s)

    def tick(self) -> None:
        if self.state is OPEN and self.clock.now - self.opened_at >= self.expected_cooldown():
            self.state, self.half_open_since = HALF_OPEN, self.clock.now
            self.leased.clear()
            self.probe_successes = 0
            self.changes += 1
        elif (
            self.state is HALF_OPEN
            and sum(self.leased.values()) >= self.config.probe_budget
            and self.clock.now - self.last_lease_at >= self.config.cooldown_s
        ):
            self.leased.clear()  # probes whose outcomes never came: the budget is issued again

    def open(self) -> None:
        self.opens_in_a_row = 1 if self.state is CLOSED else self.opens_in_a_row + 1
        self.state, self.opened_at, self.half_open_since = OPEN, self.clock.now, None
        self.window.clear()
        self.in_a_row = 0
        self.changes += 1

    def close(self) -> None:
        self.state, self.opens_in_a_row, self.half_open_since = CLOSED, 0, None
        self.changes += 1

    def stored(self) -> AgentBreaker:
        return self.breaker.agents.get(NAME, AgentBreaker())

    # events ------------------------------------------------------------------------------
    @rule(seconds=st.one_of(st.just(0.0), st.floats(0.0, 3.0), st.floats(3.0, 150.0)))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def observe(self) -> None:
        self.tick()
        assert self.breaker.state(NAME) is self.state

    @rule(success=st.booleans())
    def outcome(self, success: bool) -> None:
        self.tick()
        before = self.stored()
        version = self.breaker.version
        answered = self.breaker.record(NAME, success=success)
        if self.state is OPEN:  # late outcome: nothing changes
            assert self.stored() == before
            assert self.breaker.version == version
        elif self.state is HALF_OPEN:
            if not success:
                self.open()
            else:
                self.probe_successes += 1
                if self.probe_successes >= self.config.successes_to_close:
                    # closing only after successes_to_close consecutive probe successes
                    assert self.probe_successes == self.config.successes_to_close
                    self.close()
        else:
            self.window.append(not success)
            self.in_a_row = 0 if success else self.in_a_row + 1
            rate_hit = (
                len(self.window) >= self.config.min_requests
                and sum(self.window) / len(self.window) >= self.config.failure_rate
            )
            if self.in_a_row >= self.config.consecutive_failures or rate_hit:
                self.open()
        assert answered is self.state

    @rule(replica=st.integers(0, 7), wanted=st.integers(0, 4))
    def lease(self, replica: int, wanted: int) -> None:
        self.tick()
        granted = self.breaker.lease(NAME, wanted)
        if self.state is HALF_OPEN:
            assert granted == min(wanted, self.config.probe_budget - sum(self.leased.values()))
            self.leased[replica] += granted
            if granted:
                self.last_lease_at = self.clock.now
        else:
            assert granted == 0

    # invariants --------------------------------------------------------------------------
    @invariant()
    def state_is_known(self) -> None:
        assert self.stored().state in set(BreakerState)

    @invariant()
    def leases_stay_within_budget(self) -> None:
        if self.stored().state is HALF_OPEN:
            assert (
                sum(self.leased.values()) == self.stored().probes_leased <= self.config.probe_budget
            )

    @invariant()
    def closed_means_below_the_failure_run(self) -> None:
        if self.stored().state is CLOSED:
            assert self.stored().failures_in_a_row < self.config.consecutive_failures

    @invariant()
    def half_open_only_after_cooldown(self) -> None:
        if self.stored().state is HALF_OPEN:
            assert self.half_open_since is not None
            assert self.half_open_since - self.stored().opened_at >= self.expected_cooldown()

    @invariant()
    def stored_state_agrees_with_the_model(self) -> None:
        stored = self.stored()
        # The breaker may lag (it ticks lazily) but only from open to half_open.
        assert stored.state is self.state or (stored.state, self.state) == (OPEN, HALF_OPEN)
        if stored.state is not CLOSED:
            assert stored.opened_at == self.opened_at
        assert self.breaker.version == len(self.breaker.transitions)

    @invariant()
    def never_open_to_closed_in_the_history(self) -> None:
        if not self.check_history:
            return
        transitions = self.breaker.transitions
        assert all((t.from_state, t.to_state) != (OPEN, CLOSED) for t in transitions)
        for a, b in itertools.pairwise(transitions):
            assert a.to_state is b.from_state
        # every change the model went through is recorded (up to a pending lazy tick)
        lag = int((self.stored().state, self.state) == (OPEN, HALF_OPEN))
        assert len(transitions) == self.changes - lag


PROPERTY_SETTINGS = settings(max_examples=200, stateful_step_count=40, deadline=None, database=None)


def test_breaker_matches_its_model_under_random_events():
    run_state_machine_as_test(BreakerMachine, settings=PROPERTY_SETTINGS)


class HistoryMachine(BreakerMachine):
    check_history = True


def test_transition_history_is_the_path_the_breaker_took():
    run_state_machine_as_test(
        HistoryMachine,
        # no shrinking: the failure is explained above, and shrinking a stateful run is slow
        settings=settings(PROPERTY_SETTINGS, derandomize=True, phases=[Phase.generate]),
    )


# -- rate limits (Retry-After) -------------------------------------------------------------
def test_a_rate_limit_opens_for_its_retry_after_then_probes(clock):
    breaker = make(clock)
    assert breaker.cool_down(NAME, 7.0) is OPEN
    assert history(breaker) == [("closed", "open", "rate limited (Retry-After 7 s)")]
    assert breaker.next_change_at() == clock.now + 7.0
    clock.advance(6.9)
    assert breaker.state(NAME) is OPEN
    clock.advance(0.2)
    assert breaker.state(NAME) is HALF_OPEN
    assert breaker.lease(NAME, 5) == BASE["probe_budget"]
    assert succeed(breaker, 2) is CLOSED


def test_a_rate_limit_does_not_lengthen_later_cooldowns_and_is_capped(clock):
    breaker = make(clock, max_cooldown_s=60.0)
    breaker.cool_down(NAME, 3600.0)
    assert breaker.next_change_at() == clock.now + 60.0  # capped
    clock.advance(61)
    assert breaker.state(NAME) is HALF_OPEN
    succeed(breaker, 2)
    assert fail(breaker, 5) is OPEN
    assert breaker.next_change_at() == clock.now + 30.0  # the first opening's cooldown


def test_a_rate_limit_while_open_keeps_the_later_end(clock):
    breaker = opened(clock)  # open for 30 s
    breaker.cool_down(NAME, 5.0)
    assert breaker.next_change_at() == clock.now + 30.0
    breaker.cool_down(NAME, 100.0)
    assert breaker.next_change_at() == clock.now + 100.0
