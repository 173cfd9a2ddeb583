"""Health checks: when a backend is up or down, and how often to look.

Two parts, as everywhere in the gateway: a pure decision (:class:`HealthTracker`, one per
backend: results in, state changes and the next delay out) and a thin Twisted shell
(:class:`HealthChecks`, a service that runs the checkers on an injected clock).

Rules (:class:`HealthPolicy`):
- ``unknown`` (not checked yet) becomes ``up`` on the first success, ``down`` after ``fall``
  failures; ``up`` becomes ``down`` after ``fall`` consecutive failures; ``down`` becomes ``up``
  after ``rise`` consecutive successes. A request that could not connect marks its backend down at
  once (:meth:`HealthTracker.mark_down`, the passive check).
- A replica (with ``max_lag`` set) fails its check when replication is stopped or lags more than
  ``max_lag``. A read-only primary passes (it can serve reads) but is recorded as read-only, and
  the router then refuses writes.
- Galera mode (``galera``): a check that answered also reads the node's wsrep state
  (:mod:`gateway.galera`); a node outside the primary component, not ready, joining, or a donor
  (unless ``galera_donor_reads``) is down AT ONCE, not after ``fall`` failures (such a node must
  never be chosen), and comes back by the ``rise`` rule. The wsrep facts of a node that went down
  for a failed check (it could not be reached) are forgotten: they are unknown until it answers.
- Delays: ``interval`` while up or unknown; for a down backend ``interval * 2**(n-1)`` capped at
  ``max_backoff`` (n = failures since it was marked down); ``confirm_interval`` between the
  confirming checks of a recovery. Every delay is multiplied by a factor drawn uniformly in
  ``[1 - jitter, 1 + jitter]`` so checks of many backends (and many gateways) do not align.
  A delay runs from the end of one check to the start of the next.

Design goal, pinned by a test: a restarted backend is back ``up`` within two health intervals
with the default policy. The worst case is a restart just after a failed check:
``max_backoff * (1 + jitter) + (rise - 1) * confirm_interval * (1 + jitter)`` = 3.3 + 0.55 =
3.85 s < 4.0 s. This assumes the failed checks fail fast (connection refused, as when a server
restarts); a check that hangs until ``timeout`` adds up to that timeout. Operators raising
``max_backoff`` trade slower fail-back for fewer checks on long-dead backends.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.galera import Wsrep, wsrep_problem
from gateway.router import BackendStatus

__all__ = ["CheckResult", "HealthChecks", "HealthPolicy", "HealthTracker"]


@attrs.frozen
class CheckResult:
    """What one health check found."""

    ok: bool  # the backend connected and answered
    read_only: bool = False
    lag: float | None = None  # replica: Seconds_Behind_Master; None when not known
    replicating: bool = True  # replica: False when the IO or SQL thread is not running
    errno: int | None = None
    error: str | None = None
    wsrep: Wsrep | None = None  # galera mode: the node's wsrep state (None: not read)


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"health policy: {attribute.name} must be above 0, got {value!r}")


@attrs.frozen
class HealthPolicy:
    """How often to check, and how many results it takes to change a backend's state."""

    interval: float = attrs.field(default=2.0, validator=_positive)
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
    )
    fall: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    rise: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    max_backoff: float = attrs.field(default=3.0, validator=_positive)
    confirm_interval: float = attrs.field(default=0.5, validator=_positive)
    timeout: float = attrs.field(default=5.0, validator=_positive)
    max_lag: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0.0))
    )
    #: Galera mode: the wsrep rules decide too, and a node failing them is out at once.
    galera: bool = False
    #: Galera mode: a donor/desynced node (wsrep_local_state 2) stays up for reads.
    galera_donor_reads: bool = False


class HealthTracker:
    """One backend's health: decides its state from check results (pure, no I/O)."""

    def __init__(self, status: BackendStatus, policy: HealthPolicy) -> None:
        self.status = status
        self.policy = policy
        self.failures = 0  # consecutive failed checks
        self.successes = 0  # consecutive successful checks
        # failures since the backend was marked down (drives the backoff)
        self.down_failures = 1 if status.state == "down" else 0

    @property
    def confirming(self) -> bool:
        """A down backend has passed a check and the confirming checks are under way."""
        return self.status.state == "down" and self.successes > 0

    def apply(self, result: CheckResult) -> str | None:
        """Record one check result; return the new state if it changed, else None."""
        status = self.status
        if result.ok:
            status.read_only = result.read_only
            status.lag = result.lag
            if self.policy.galera:
                status.wsrep = result.wsrep
                problem = wsrep_problem(result.wsrep, self.policy.galera_donor_reads)
                if result.wsrep is None and result.error:
                    problem = result.error
                if problem is not None:
                    status.record_error(result.errno if result.wsrep is None else None, problem)
                    return self._out_now()
        failure = self._failure(result)
        if failure is not None:
            status.record_error(*failure)
            new = self._failed()
            if self.policy.galera and status.state == "down" and not result.ok:
                status.wsrep = None  # (not reached: its state is unknown until it answers)
            return new
        return self._passed()

    def mark_down(self, errno: int | None, error: str) -> str | None:
        """A request could not connect: down at once. Returns ``"down"`` if that is a change."""
        self.status.record_error(errno, error)
        self.successes = 0  # a recovery being confirmed starts again
        self.failures = max(self.failures, 1)
        if self.policy.galera:
            self.status.wsrep = None  # (unknown until the next check reads it)
        if self.status.state == "down":
            return None
        self.status.state = "down"
        self.down_failures = 1
        return "down"

    def next_delay(self, uniform: Callable[[float, float], float]) -> float:
        """Seconds until the next check, jitter applied (``uniform(a, b)`` draws in [a, b])."""
        policy = self.policy
        if self.status.state != "down":
            base = policy.interval
        elif self.confirming:
            base = policy.confirm_interval
        else:
            n = max(self.down_failures, 1)
            base = min(policy.interval * 2 ** min(n - 1, 64), policy.max_backoff)
        return base * uniform(1.0 - policy.jitter, 1.0 + policy.jitter)

    def _failure(self, result: CheckResult) -> tuple[int | None, str] | None:
        """``(errno, error)`` if the result is a failed check, else None."""
        if not result.ok:
            return result.errno, result.error or "health check failed"
        max_lag = self.policy.max_lag
        if self.status.role != "replica" or max_lag is None:
            return None
        if not result.replicating:
            return None, "replication stopped"
        if result.lag is None:
            return None, "replication lag unknown (no Seconds_Behind_Master)"
        if result.lag > max_lag:
            return None, f"replication lag {result.lag:.1f} s over the limit of {max_lag:.1f} s"
        return None

    def _out_now(self) -> str | None:
        """A failed check that takes the backend out at once (galera: the wsrep rules)."""
        self.successes = 0
        self.failures += 1
        if self.status.state == "down":
            self.down_failures += 1
            return None
        self.status.state = "down"
        self.down_failures = 1
        return "down"

    def _failed(self) -> str | None:
        self.successes = 0
        self.failures += 1
        if self.status.state == "down":
            self.down_failures += 1
            return None
        if self.failures >= self.policy.fall:
            self.status.state = "down"
            self.down_failures = 1
            return "down"
        return None

    def _passed(self) -> str | None:
        self.failures = 0
        self.successes += 1
        state = self.status.state
        if state == "unknown" or (state == "down" and self.successes >= self.policy.rise):
            self.status.state = "up"
            self.down_failures = 0
            return "up"
        return None


def _as_result(failure: Any, timeout: float) -> CheckResult:
    """Turn a failed or timed-out check into a failed :class:`CheckResult`."""
    exc = failure.value
    if isinstance(exc, defer.TimeoutError):
        return CheckResult(ok=False, error=f"health check timed out after {timeout:g} s")
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):  # DB-API style: (errno, message)
        return CheckResult(ok=False, errno=args[0], error=str(args[1]))
    return CheckResult(ok=False, error=f"health check failed: {type(exc).__name__}: {exc}")


class HealthChecks(Service):
    """Runs every backend's checker on its own schedule and applies the results.

    ``checkers[name]()`` returns a Deferred firing with a :class:`CheckResult`; any failure or
    timeout counts as a failed check and never stops the schedule. ``on_change(name, old, new)``
    is called on every state change (also logged).

    Galera mode: ``on_wsrep_change(name, old, new)`` (an attribute, None by default) is called
    with the node's previous and new :class:`Wsrep` (None: unknown) when its wsrep_on,
    cluster_status or local_state changes; ``on_checked(name)`` after every result or passive
    mark-down applied (the router re-chooses its writer there)."""

    log = Logger()

    def __init__(
        self,
        clock: Any,
        trackers: Mapping[str, HealthTracker],
        checkers: Mapping[str, Callable[[], Deferred[CheckResult]]],
        policy: HealthPolicy,
        on_change: Callable[[str, str, str], None] | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if set(trackers) != set(checkers):
            raise ValueError("health checks need one tracker and one checker per backend")
        self.clock = clock
        self.trackers = dict(trackers)
        self.checkers = dict(checkers)
        self.policy = policy
        self.on_change = on_change
        self.uniform = uniform
        self._timers: dict[str, Any] = {}  # name -> IDelayedCall of the next check
        self._in_flight: dict[str, Deferred[CheckResult]] = {}  # name -> running checker
        self._waiters: dict[str, list[Deferred[str]]] = {}  # check_now callers
        self.on_wsrep_change: Callable[[str, Wsrep | None, Wsrep | None], None] | None = None
        self.on_checked: Callable[[str], None] | None = None

    def startService(self) -> None:
        """Check every backend at once, then each on its own schedule."""
        super().startService()
        for name in self.trackers:
            if name not in self._in_flight:
                self._start(name)

    def stopService(self) -> None:
        """Cancel pending checks; a check in flight is cancelled and its result ignored."""
        super().stopService()
        for name in list(self._timers):
            self._cancel_timer(name)
        running = list(self._in_flight.values())
        self._in_flight.clear()
        for check in running:
            check.cancel()
        for name in list(self._waiters):
            self._wake(name)

    def check_now(self, name: str) -> Deferred[str]:
        """Run one check now (or join the one running); fires with the state after it.

        The check replaces the pending scheduled one, so no second schedule is created."""
        if name not in self.trackers:
            raise KeyError(f"no backend named {name!r}")
        waiter: Deferred[str] = Deferred()
        self._waiters.setdefault(name, []).append(waiter)
        if name not in self._in_flight:
            self._cancel_timer(name)
            self._start(name)
        return waiter

    def report_failure(self, name: str, errno: int | None, error: str) -> None:
        """A request could not connect to ``name``: mark it down now and re-check it soon."""
        tracker = self.trackers[name]
        old = tracker.status.state
        before = tracker.status.wsrep
        new = tracker.mark_down(errno, error)
        if new is not None:
            self._changed(name, old, new)
        self._after(name, before)
        if new is None:
            return
        if self.running and name not in self._in_flight:
            self._schedule(name)

    def _start(self, name: str) -> None:
        check: Deferred[CheckResult] = defer.maybeDeferred(self.checkers[name])
        self._in_flight[name] = check
        check.addTimeout(self.policy.timeout, self.clock)
        check.addErrback(_as_result, self.policy.timeout)
        check.addCallback(self._finished, name, check)
        check.addErrback(self._broken, name, check)

    def _finished(self, result: CheckResult, name: str, check: Deferred[CheckResult]) -> None:
        if self._in_flight.get(name) is not check:
            return  # the service stopped while it ran: ignored
        del self._in_flight[name]
        tracker = self.trackers[name]
        old = tracker.status.state
        before = tracker.status.wsrep
        new = tracker.apply(result)
        if new is not None:
            self._changed(name, old, new)
        self._after(name, before)
        if self.running:
            self._schedule(name)
        self._wake(name)

    def _broken(self, failure: Any, name: str, check: Deferred[CheckResult]) -> None:
        """A bug while applying a result: log it and keep the schedule alive."""
        self.log.failure("health check of {name} could not be applied", failure, name=name)
        if self._in_flight.get(name) is check:
            del self._in_flight[name]
        if self.running and name not in self._timers:
            self._schedule(name)
        self._wake(name)

    def _changed(self, name: str, old: str, new: str) -> None:
        status = self.trackers[name].status
        if new == "down":
            self.log.warn(
                "backend {name} is down (was {old}): {error}",
                name=name,
                old=old,
                error=status.last_error,
            )
        else:
            self.log.info("backend {name} is {new} (was {old})", name=name, new=new, old=old)
        if self.on_change is not None:
            try:
                self.on_change(name, old, new)
            except Exception:
                self.log.failure("on_change failed for backend {name}", name=name)

    def _after(self, name: str, before: Wsrep | None) -> None:
        """Tell the wsrep listener of a change of the node's wsrep state, then the router."""
        after = self.trackers[name].status.wsrep
        if _wsrep_key(before) != _wsrep_key(after):
            if after is not None and before is not None:
                self.log.info(
                    "backend {name}: wsrep {old} -> {new}",
                    name=name,
                    old=f"{before.cluster_status}/{before.local_state_comment}",
                    new=f"{after.cluster_status}/{after.local_state_comment}",
                )
            if self.on_wsrep_change is not None:
                try:
                    self.on_wsrep_change(name, before, after)
                except Exception:
                    self.log.failure("on_wsrep_change failed for backend {name}", name=name)
        if self.on_checked is not None:
            try:
                self.on_checked(name)
            except Exception:
                self.log.failure("on_checked failed for backend {name}", name=name)

    def _schedule(self, name: str) -> None:
        self._cancel_timer(name)
        delay = self.trackers[name].next_delay(self.uniform)
        self._timers[name] = self.clock.callLater(delay, self._due, name)

    def _due(self, name: str) -> None:
        self._timers.pop(name, None)
        if name not in self._in_flight:
            self._start(name)

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _wake(self, name: str) -> None:
        state = self.trackers[name].status.state
        for waiter in self._waiters.pop(name, []):
            waiter.callback(state)


def _wsrep_key(wsrep: Wsrep | None) -> tuple[bool, str, int] | None:
    """What makes a wsrep change worth telling: membership of a cluster, the primary
    component, the node state."""
    if wsrep is None:
        return None
    return (wsrep.on, wsrep.cluster_status, wsrep.local_state)
