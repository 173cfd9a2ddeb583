"""Unit tests for gateway.health: the tracker's decisions and the check schedule on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from gateway.health import CheckResult, HealthChecks, HealthPolicy, HealthTracker
from gateway.router import BackendStatus

OK = CheckResult(ok=True)
REFUSED = CheckResult(ok=False, errno=2003, error="Can't connect to MySQL server on 'db' (111)")
NO_JITTER = HealthPolicy(jitter=0.0)


def middle(a: float, b: float) -> float:
    """A 'uniform' draw that always lands in the middle (jitter factor 1)."""
    return (a + b) / 2


def tracker(
    state: str = "unknown", role: str = "", policy: HealthPolicy = NO_JITTER
) -> HealthTracker:
    """A tracker for a fresh backend ``db`` in the given state."""
    return HealthTracker(BackendStatus("db", role=role, state=state), policy)


def feed(t: HealthTracker, *results: CheckResult) -> list[str | None]:
    """Apply results in turn; return what each apply returned."""
    return [t.apply(r) for r in results]


# ------------------------------------------------------------------ policy


@pytest.mark.parametrize(
    "bad",
    [
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"fall": 0},
        {"rise": 0},
        {"interval": 0.0},
        {"timeout": -1.0},
        {"max_lag": -1.0},
    ],
)
def test_policy_refuses_nonsense(bad: dict[str, Any]) -> None:
    """A policy that could not work (zero counts, jitter of 100 %, ...) is refused."""
    with pytest.raises(ValueError):
        HealthPolicy(**bad)


def test_policy_defaults() -> None:
    """The defaults are the documented ones."""
    p = HealthPolicy()
    assert (p.interval, p.jitter, p.fall, p.rise) == (2.0, 0.1, 3, 2)
    assert (p.max_backoff, p.confirm_interval, p.timeout, p.max_lag) == (3.0, 0.5, 5.0, None)


# ------------------------------------------------------------------ tracker: state changes


def test_unknown_to_up_on_first_success() -> None:
    """A backend not checked yet is up after its first successful check."""
    t = tracker()
    assert feed(t, OK, OK) == ["up", None]
    assert t.status.state == "up"


def test_unknown_to_down_only_after_fall_failures() -> None:
    """A backend not checked yet is marked down after ``fall`` failures, not earlier."""
    t = tracker()
    assert feed(t, REFUSED, REFUSED) == [None, None]
    assert t.status.state == "unknown"
    assert t.apply(REFUSED) == "down"
    assert t.status.state == "down"


def test_up_to_down_after_fall_consecutive_failures() -> None:
    """An up backend goes down after ``fall`` consecutive failures; a success resets the count."""
    t = tracker("up")
    assert feed(t, REFUSED, REFUSED, OK, REFUSED, REFUSED) == [None] * 5
    assert t.status.state == "up"
    assert t.apply(REFUSED) == "down"


def test_down_to_up_after_rise_successes() -> None:
    """A down backend comes back after ``rise`` consecutive successes; a failure resets them."""
    t = tracker("down", policy=attrs.evolve(NO_JITTER, rise=3))
    assert feed(t, OK, OK, REFUSED, OK, OK) == [None] * 5
    assert t.status.state == "down"
    assert t.apply(OK) == "up"
    assert t.status.state == "up"


def test_failure_records_error() -> None:
    """A failed check records its errno and error on the status."""
    t = tracker("up")
    t.apply(REFUSED)
    assert (t.status.last_errno, t.status.last_error) == (2003, REFUSED.error)


def test_failure_without_text() -> None:
    """A failed check without an error text still records a readable one."""
    t = tracker("up")
    t.apply(CheckResult(ok=False))
    assert t.status.last_error == "health check failed"


def test_failure_keeps_last_known_facts() -> None:
    """A failed check does not overwrite read_only and lag it could not read."""
    t = tracker("up", role="replica")
    t.apply(CheckResult(ok=True, read_only=True, lag=1.5))
    t.apply(REFUSED)
    assert (t.status.read_only, t.status.lag) == (True, 1.5)


def test_mark_down_is_immediate() -> None:
    """A passive failure marks an up backend down at once, with its error."""
    t = tracker("up")
    assert t.mark_down(2002, "Can't connect to local server") == "down"
    assert t.status.state == "down"
    assert (t.status.last_errno, t.status.last_error) == (2002, "Can't connect to local server")


def test_mark_down_of_unknown_backend() -> None:
    """A passive failure marks a backend not checked yet down at once too."""
    assert tracker().mark_down(2003, "refused") == "down"


def test_mark_down_when_already_down() -> None:
    """Marking a down backend down again is no change, but restarts a recovery in progress."""
    t = tracker("down")
    t.apply(OK)
    assert t.confirming
    assert t.mark_down(2003, "refused") is None
    assert not t.confirming
    assert feed(t, OK, OK) == [None, "up"]


# ------------------------------------------------------------------ tracker: replicas


def replica(max_lag: float | None = 5.0) -> HealthTracker:
    """An up replica checked with this lag limit."""
    return tracker("up", role="replica", policy=attrs.evolve(NO_JITTER, max_lag=max_lag, fall=1))


def test_replica_lagging_fails() -> None:
    """A replica lagging over max_lag fails its check, saying by how much."""
    t = replica()
    assert t.apply(CheckResult(ok=True, lag=12.0)) == "down"
    assert t.status.last_error == "replication lag 12.0 s over the limit of 5.0 s"
    assert t.status.last_errno is None
    assert t.status.lag == 12.0


def test_replica_within_lag_passes() -> None:
    """A replica lagging up to max_lag passes and its lag is recorded."""
    t = replica()
    assert t.apply(CheckResult(ok=True, lag=5.0)) is None
    assert t.status.state == "up"
    assert t.status.lag == 5.0


def test_replica_stopped_replication_fails() -> None:
    """A replica whose replication is stopped fails its check."""
    t = replica()
    assert t.apply(CheckResult(ok=True, lag=None, replicating=False)) == "down"
    assert t.status.last_error == "replication stopped"


def test_replica_unknown_lag_fails() -> None:
    """A replica that reports no lag while replicating cannot prove it is fresh: it fails."""
    t = replica()
    assert t.apply(CheckResult(ok=True, lag=None)) == "down"
    assert t.status.last_error is not None
    assert t.status.last_error.startswith("replication lag unknown")


def test_replica_without_limit_ignores_lag() -> None:
    """Without max_lag, lag and stopped replication do not fail a replica's check."""
    t = replica(max_lag=None)
    assert t.apply(CheckResult(ok=True, lag=1000.0, replicating=False)) is None
    assert t.status.state == "up"


def test_primary_ignores_lag_limit() -> None:
    """The lag limit is for replicas: a primary passes whatever its replication says."""
    t = tracker("up", role="primary", policy=attrs.evolve(NO_JITTER, max_lag=1.0, fall=1))
    assert t.apply(CheckResult(ok=True, lag=None, replicating=False)) is None


def test_read_only_primary_passes_but_is_read_only() -> None:
    """A read-only primary passes its check (it can serve reads) and is marked read-only."""
    t = tracker(role="primary")
    assert t.apply(CheckResult(ok=True, read_only=True)) == "up"
    assert t.status.read_only is True
    t.apply(CheckResult(ok=True, read_only=False))
    assert t.status.read_only is False


# ------------------------------------------------------------------ tracker: delays


def delays_down(t: HealthTracker, count: int) -> list[float]:
    """The next delay after each of ``count`` further failures of a down backend."""
    out = []
    for _ in range(count):
        out.append(t.next_delay(middle))
        t.apply(REFUSED)
    return out


def test_interval_when_up_or_unknown() -> None:
    """Up and unknown backends are checked every interval, failing checks included."""
    assert tracker().next_delay(middle) == 2.0
    t = tracker("up")
    t.apply(REFUSED)
    assert t.next_delay(middle) == 2.0


def test_backoff_sequence_capped() -> None:
    """A down backend is checked at interval, 2x, 4x, ... capped at max_backoff."""
    t = tracker("up", policy=attrs.evolve(NO_JITTER, interval=1.0, max_backoff=10.0, fall=1))
    t.apply(REFUSED)
    assert delays_down(t, 7) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_backoff_sequence_defaults() -> None:
    """With the defaults a dead backend is checked after 2 s, then every 3 s."""
    t = tracker("up", policy=NO_JITTER)
    feed(t, REFUSED, REFUSED, REFUSED)
    assert delays_down(t, 4) == [2.0, 3.0, 3.0, 3.0]


def test_backoff_after_mark_down_starts_at_interval() -> None:
    """After a passive mark-down the first re-check comes after one interval."""
    t = tracker("up")
    t.mark_down(2003, "refused")
    assert t.next_delay(middle) == 2.0


def test_backoff_very_long_dead_does_not_overflow() -> None:
    """A backend dead for thousands of checks stays at max_backoff."""
    t = tracker("down")
    t.down_failures = 5000
    assert t.next_delay(middle) == 3.0


def test_confirm_spacing_after_first_success() -> None:
    """After a down backend's first success, the confirming checks come confirm_interval apart."""
    t = tracker("down", policy=attrs.evolve(NO_JITTER, rise=3))
    feed(t, REFUSED, REFUSED)
    t.apply(OK)
    assert t.next_delay(middle) == 0.5
    t.apply(OK)
    assert t.next_delay(middle) == 0.5
    assert t.apply(OK) == "up"
    assert t.next_delay(middle) == 2.0


def test_failed_confirmation_returns_to_backoff() -> None:
    """A failure during the confirmation goes back to the backoff delays."""
    t = tracker("down")
    feed(t, REFUSED, REFUSED, OK, REFUSED)
    assert t.next_delay(middle) == 3.0


@pytest.mark.parametrize(("pick", "factor"), [(min, 0.9), (max, 1.1)])
def test_jitter_bounds(pick: Callable[[float, float], float], factor: float) -> None:
    """Jitter draws a factor in [1 - jitter, 1 + jitter] and multiplies every delay by it."""
    drawn: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        drawn.append((a, b))
        return pick(a, b)

    policy = HealthPolicy()  # jitter 0.1
    assert tracker(policy=policy).next_delay(uniform) == pytest.approx(2.0 * factor)
    down = tracker("down", policy=policy)
    assert down.next_delay(uniform) == pytest.approx(2.0 * factor)
    down.apply(REFUSED)
    assert down.next_delay(uniform) == pytest.approx(3.0 * factor)
    down.apply(OK)
    assert down.next_delay(uniform) == pytest.approx(0.5 * factor)
    assert drawn == [pytest.approx((0.9, 1.1))] * 4


# ------------------------------------------------------------------ HealthChecks on a Clock


class Checker:
    """A scripted checker: answers ``result`` at once, hangs (None) or raises (an exception)."""

    def __init__(self, clock: Clock, result: CheckResult | Exception | None = OK) -> None:
        self.clock = clock
        self.result = result
        self.calls: list[float] = []
        self.hung: list[Deferred[CheckResult]] = []

    def __call__(self) -> Deferred[CheckResult]:
        self.calls.append(self.clock.seconds())
        if self.result is None:
            d: Deferred[CheckResult] = Deferred()
            self.hung.append(d)
            return d
        if isinstance(self.result, Exception):
            raise self.result
        return defer.succeed(self.result)


@attrs.define
class Setup:
    """A HealthChecks service with its clock, checkers, trackers and recorded changes."""

    clock: Clock
    service: HealthChecks
    checkers: dict[str, Checker]
    trackers: dict[str, HealthTracker]
    changes: list[tuple[str, str, str]]

    def state(self, name: str = "a") -> str:
        """The state of a backend."""
        return self.trackers[name].status.state


def setup(
    *names: str,
    policy: HealthPolicy = NO_JITTER,
    uniform: Callable[[float, float], float] = middle,
    start: bool = True,
) -> Setup:
    """HealthChecks over answering checkers for these backends (default ``a``), started."""
    clock = Clock()
    names = names or ("a",)
    checkers = {n: Checker(clock) for n in names}
    trackers = {n: HealthTracker(BackendStatus(n), policy) for n in names}
    changes: list[tuple[str, str, str]] = []
    service = HealthChecks(
        clock,
        trackers,
        checkers,
        policy,
        on_change=lambda *change: changes.append(change),
        uniform=uniform,
    )
    if start:
        service.startService()
    return Setup(clock, service, checkers, trackers, changes)


def due_times(clock: Clock) -> list[float]:
    """When the pending delayed calls are due, in order."""
    calls: list[Any] = list(clock.getDelayedCalls())  # IDelayedCall: untyped zope interface
    return sorted(call.getTime() for call in calls)


def test_trackers_and_checkers_must_match() -> None:
    """Every backend needs both a tracker and a checker."""
    clock = Clock()
    t = {"a": tracker()}
    with pytest.raises(ValueError, match="one tracker and one checker"):
        HealthChecks(clock, t, {"b": Checker(clock)}, NO_JITTER)


def test_start_checks_all_at_once_then_schedules() -> None:
    """Starting checks every backend at once, then each again after its interval."""
    s = setup("a", "b")
    assert s.checkers["a"].calls == [0.0] and s.checkers["b"].calls == [0.0]
    assert s.state("a") == s.state("b") == "up"
    assert due_times(s.clock) == [2.0, 2.0]
    s.clock.advance(2.0)
    s.clock.advance(2.0)
    assert s.checkers["a"].calls == [0.0, 2.0, 4.0]
    assert due_times(s.clock) == [6.0, 6.0]  # one schedule per backend, never more


def test_schedule_uses_injected_jitter() -> None:
    """The delay to the next check comes from next_delay with the injected uniform."""
    s = setup(policy=HealthPolicy(jitter=0.1), uniform=lambda a, b: b)
    assert due_times(s.clock) == [pytest.approx(2.2)]


def test_on_change_called_with_old_and_new() -> None:
    """on_change gets (name, old, new) on every state change, and only then."""
    s = setup()
    assert s.changes == [("a", "unknown", "up")]
    s.checkers["a"].result = REFUSED
    s.clock.advance(2.0)
    s.clock.advance(2.0)
    assert s.changes == [("a", "unknown", "up")]
    s.clock.advance(2.0)
    assert s.changes == [("a", "unknown", "up"), ("a", "up", "down")]


def test_changes_are_logged() -> None:
    """A state change is logged with the backend's name and, when down, its error."""
    with capturedLogs() as events:
        s = setup(policy=attrs.evolve(NO_JITTER, fall=1))
        s.checkers["a"].result = REFUSED
        s.clock.advance(2.0)
    logged = [(e["log_format"], e.get("name"), e.get("error")) for e in events]
    assert ("backend {name} is {new} (was {old})", "a", None) in logged
    assert ("backend {name} is down (was {old}): {error}", "a", REFUSED.error) in logged


def test_hung_checker_times_out_and_schedule_continues() -> None:
    """A checker that never answers fails at the timeout; the next check is still scheduled."""
    s = setup(start=False)
    s.checkers["a"].result = None
    s.service.startService()
    assert due_times(s.clock) == [5.0]  # only the timeout is pending
    s.clock.advance(5.0)
    assert s.trackers["a"].failures == 1
    assert s.trackers["a"].status.last_error == "health check timed out after 5 s"
    assert due_times(s.clock) == [7.0]
    s.checkers["a"].result = OK
    s.clock.advance(2.0)
    assert s.checkers["a"].calls == [0.0, 7.0]
    assert s.state() == "up"


def test_raising_checker_counts_as_failure() -> None:
    """A checker that raises is a failed check (errno taken from DB-API style args)."""
    s = setup(start=False)
    s.checkers["a"].result = Exception(2003, "Can't connect to MySQL server on 'a' (111)")
    s.service.startService()
    status = s.trackers["a"].status
    assert (status.last_errno, status.last_error) == (
        2003,
        "Can't connect to MySQL server on 'a' (111)",
    )
    assert due_times(s.clock) == [2.0]
    s.checkers["a"].result = RuntimeError("bug in the checker")
    s.clock.advance(2.0)
    assert status.last_error == "health check failed: RuntimeError: bug in the checker"
    assert s.trackers["a"].failures == 2
    assert due_times(s.clock) == [4.0]


def test_failing_deferred_counts_as_failure() -> None:
    """A checker whose Deferred fails is a failed check too."""
    s = setup(start=False)
    s.service.checkers["a"] = lambda: defer.fail(ConnectionRefusedError("refused"))
    s.service.startService()
    assert s.trackers["a"].failures == 1
    assert "ConnectionRefusedError" in (s.trackers["a"].status.last_error or "")
    assert due_times(s.clock) == [2.0]


def test_failing_on_change_does_not_stop_schedule() -> None:
    """An on_change that raises is logged; checks go on."""
    clock = Clock()
    checker = Checker(clock)
    trackers = {"a": HealthTracker(BackendStatus("a"), NO_JITTER)}

    def boom(name: str, old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    with capturedLogs() as events:
        HealthChecks(clock, trackers, {"a": checker}, NO_JITTER, boom, middle).startService()
    assert trackers["a"].status.state == "up"
    assert due_times(clock) == [2.0]
    assert any(e.get("log_failure") is not None for e in events)


def test_stop_cancels_timers() -> None:
    """Stopping leaves no delayed call behind."""
    s = setup("a", "b")
    assert s.clock.getDelayedCalls()
    s.service.stopService()
    assert s.clock.getDelayedCalls() == []
    s.clock.advance(100.0)
    assert s.checkers["a"].calls == [0.0]


def test_stop_ignores_check_in_flight() -> None:
    """A check in flight at stop leaves no timeout behind and its late answer is ignored."""
    s = setup(start=False)
    s.checkers["a"].result = None
    s.service.startService()
    s.service.stopService()
    assert s.clock.getDelayedCalls() == []
    s.checkers["a"].hung[0].callback(OK)  # the late answer: no error, no effect
    assert s.state() == "unknown"
    assert s.trackers["a"].failures == 0
    assert s.clock.getDelayedCalls() == []


def test_restart_after_stop() -> None:
    """A stopped service can be started again and checks at once."""
    s = setup()
    s.service.stopService()
    s.service.startService()
    assert s.checkers["a"].calls == [0.0, 0.0]
    assert due_times(s.clock) == [2.0]


def test_check_now_fires_with_state_and_keeps_one_schedule() -> None:
    """check_now runs a check at once, fires with the state, and replaces the pending timer."""
    s = setup()
    s.clock.advance(0.5)
    s.checkers["a"].result = CheckResult(ok=False, error="boom")
    states: list[str] = []
    s.service.check_now("a").addCallback(states.append)
    assert states == ["up"]  # one failure is not enough to go down
    assert s.checkers["a"].calls == [0.0, 0.5]
    assert due_times(s.clock) == [2.5]


def test_check_now_joins_check_in_flight() -> None:
    """check_now while a check runs waits for that one instead of starting another."""
    s = setup(start=False)
    s.checkers["a"].result = None
    s.service.startService()
    states: list[str] = []
    s.service.check_now("a").addCallback(states.append)
    s.service.check_now("a").addCallback(states.append)
    assert len(s.checkers["a"].calls) == 1 and states == []
    s.checkers["a"].hung[0].callback(OK)
    assert states == ["up", "up"]
    assert due_times(s.clock) == [2.0]


def test_check_now_before_start() -> None:
    """check_now works before the service runs, and schedules nothing."""
    s = setup(start=False)
    states: list[str] = []
    s.service.check_now("a").addCallback(states.append)
    assert states == ["up"]
    assert s.clock.getDelayedCalls() == []


def test_check_now_fires_on_stop() -> None:
    """A check_now waiting on a check in flight fires with the current state when stopped."""
    s = setup(start=False)
    s.checkers["a"].result = None
    s.service.startService()
    states: list[str] = []
    s.service.check_now("a").addCallback(states.append)
    s.service.stopService()
    assert states == ["unknown"]


def test_check_now_unknown_name() -> None:
    """check_now of a backend that does not exist is a KeyError."""
    with pytest.raises(KeyError):
        setup().service.check_now("nope")


def test_report_failure_marks_down_and_reschedules() -> None:
    """A passive failure marks down at once, tells on_change and re-checks at the backoff delay."""
    s = setup()
    s.clock.advance(1.5)  # the normal check is due at 2.0
    s.service.report_failure("a", 2003, "Can't connect to MySQL server on 'a' (111)")
    assert s.state() == "down"
    assert s.changes[-1] == ("a", "up", "down")
    assert due_times(s.clock) == [3.5]  # 1.5 + interval * 2**0, the normal one cancelled
    s.clock.advance(2.0)
    assert s.checkers["a"].calls == [0.0, 3.5]
    assert due_times(s.clock) == [4.0]  # confirming the recovery
    s.clock.advance(0.5)
    assert s.state() == "up"
    assert s.changes[-1] == ("a", "down", "up")


def test_report_failure_when_already_down_keeps_schedule() -> None:
    """A passive failure of a backend already down changes nothing in the schedule."""
    s = setup(policy=attrs.evolve(NO_JITTER, fall=1))
    s.checkers["a"].result = REFUSED
    s.clock.advance(2.0)  # down; next at 2.0 + 2.0
    before = due_times(s.clock)
    changes = len(s.changes)
    s.service.report_failure("a", 2003, "refused")
    assert due_times(s.clock) == before
    assert len(s.changes) == changes


def test_report_failure_during_check_in_flight() -> None:
    """A passive failure during a running check leaves the scheduling to that check."""
    s = setup()
    s.checkers["a"].result = None
    s.clock.advance(2.0)  # a check is now running (its timeout pending)
    s.service.report_failure("a", 2003, "refused")
    assert s.state() == "down"
    assert due_times(s.clock) == [7.0]  # only the running check's timeout
    s.checkers["a"].hung[0].callback(OK)
    assert due_times(s.clock) == [2.5]  # the check scheduled the confirmation


def run_until(clock: Clock, when: float) -> None:
    """Advance the clock to ``when`` one due call at a time (as real time would pass)."""
    while clock.getDelayedCalls() and min(due_times(clock)) <= when:
        clock.advance(min(due_times(clock)) - clock.seconds())
    clock.advance(when - clock.seconds())


def fail_back_time(flip_at: float) -> float:
    """Seconds from a dead backend starting to answer at ``flip_at`` to its state being up."""
    s = setup(policy=HealthPolicy(), uniform=lambda a, b: b, start=False)  # max jitter
    s.checkers["a"].result = REFUSED
    s.service.startService()
    run_until(s.clock, flip_at)
    assert s.state() == "down"
    s.checkers["a"].result = OK
    while s.state() != "up":
        s.clock.advance(min(due_times(s.clock)) - s.clock.seconds())
        assert s.clock.seconds() < flip_at + 60
    return s.clock.seconds() - flip_at


def test_fail_back_within_two_intervals() -> None:
    """Design goal: a restarted backend is up again within 2 intervals (defaults, max jitter)."""
    starts = [40.0 + i * 0.01 for i in range(400)]  # cover more than one backoff period
    worst = max(fail_back_time(t) for t in starts)
    assert worst < 2 * HealthPolicy().interval
    assert worst == pytest.approx(3.3 + 0.55, abs=0.02)  # the documented worst case
