"""The executor: from a parsed Request to an Answer, on the backends the router offers.

For each request it reads the SQL once (``gateway.sql.read_sql``: read or write, statements,
session effects), asks the router for the
backends to try in order, runs the request on the first, and fails over to the next one only
as the retry rule allows (``gateway.router.may_retry``): a request that provably never reached
a server is sent elsewhere; after a lost connection only a read is; a write never is. Each
backend is tried at most once per request. It also enforces the statement time limit from the
gateway's side (``KILL QUERY`` when the server's own limit did not stop the statement), keeps
the router's in-flight counts, reports connect failures to the health checks, and reports
every attempt to the statistics.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway import galera, position
from gateway.auth import AuthFailed, allowed_backends, authorize_statements
from gateway.backends import (
    Backend,
    BackendUnavailable,
    ClientGone,
    ConnectionLost,
    GatewayError,
    PositionNotReached,
    Run,
    StatementTimeout,
    gone_before_sent,
)
from gateway.cache import AnswerCache, cache_key, cacheable
from gateway.fairness import InFlightPerUser
from gateway.health import HealthChecks
from gateway.request import HELP, Request, RequestError
from gateway.results import Answer
from gateway.router import LOST, NOT_SENT, BackendStatus, NoBackend, Router, may_retry
from gateway.sql import SQLFacts, read_sql
from stats.core import GatewayStats

log = Logger()

#: How long after the time limit the gateway kills a statement the server did not stop.
KILL_GRACE = 0.25
#: SQL texts longer than this (characters) are read in a process of their own, off the
#: reactor and off its GIL: the reading is linear, but adversarial shapes of 1 MiB take a few
#: hundred milliseconds of CPU, and a thread of this process holding the GIL that long
#: starved the reactor as surely (measured: /health at 65 ms instead of 2 ms).
BIG_SQL_CHARS = 32768
#: Big texts that may wait for the reader at once (each up to max_request_bytes).
MAX_QUEUED_READS = 16
#: How often running statements are checked against their deadline (the kill comes at most
#: this late).
SWEEP_SECONDS = 0.05


class Hangup:
    """A request's link to its HTTP client. The HTTP layer calls it when the client goes away
    (its connection closed or reset, or a streamed answer it stopped reading); the executor
    then stops the statement running for the request, by the KILL QUERY of the time limit
    (SQLite: an interrupt), sends nothing more for it (never a retry), and ends the request
    with :class:`ClientGone`, which says what became of the statements."""

    __slots__ = ("happened", "_stop", "_args")

    def __init__(self) -> None:
        #: The client went away.
        self.happened = False
        self._stop: Callable[..., None] | None = None
        self._args: tuple[Any, ...] = ()

    def __call__(self) -> None:
        if self.happened:
            return
        self.happened = True
        stop, self._stop = self._stop, None
        if stop is not None:
            stop(*self._args)

    def watch(self, stop: Callable[..., None] | None, *args: Any) -> None:
        """``stop(*args)`` stops what runs for the request now (None: nothing runs)."""
        self._stop = stop
        self._args = args


class _Work:
    """What a request runs with once its SQL is read and its rights are settled."""

    __slots__ = (
        "request",
        "user",
        "facts",
        "read",
        "allowed",
        "read_only_run",
        "sink",
        "wire_json",
    )

    def __init__(
        self,
        request: Request,
        user: Any,
        facts: SQLFacts | None,
        read: bool,
        allowed: frozenset[str] | set[str],
        read_only_run: bool,
        sink: Any,
        wire_json: bool,
    ) -> None:
        self.request = request
        self.user = user
        self.facts = facts
        self.read = read
        self.allowed = allowed
        self.read_only_run = read_only_run
        self.sink = sink
        self.wire_json = wire_json


class Executor:
    """Runs requests on a fixed set of backends."""

    #: ``execute`` takes a ``hangup`` (see :class:`Hangup`).
    stops_abandoned = True

    def __init__(
        self,
        backends: Sequence[Backend],
        router: Router,
        clock: Any,
        max_statement_time: float | None = None,
        stats: GatewayStats | None = None,
        health: HealthChecks | None = None,
        cache: AnswerCache | None = None,
        max_rows: int | None = None,
        connect_timeout: float = 5.0,
        user_limit: InFlightPerUser | None = None,
    ) -> None:
        if not backends:
            raise ValueError("an executor needs at least one backend")
        self.backends = list(backends)
        self.by_name = {b.name: b for b in self.backends}
        self._all_names = frozenset(self.by_name)
        self.router = router
        self.mode = router.mode
        self.clock = clock
        self.max_statement_time = max_statement_time
        self.stats = stats
        self.health = health
        self.cache = cache
        self.max_rows = max_rows
        #: How long a KILL QUERY may take to be answered: past the statement's deadline plus
        #: this, the server counts as frozen (see _kill_overdue).
        self.connect_timeout = connect_timeout
        #: Requests in flight per user, with their limit (None: no per-user limit).
        self.user_limit = user_limit
        #: The dialect of the SQL (the embedded SQLite demo has its own).
        self.dialect = (
            "sqlite" if all(b.spec.driver == "sqlite" for b in self.backends) else "mysql"
        )
        #: Running statements with a time limit: their next deadline, their backend, and
        #: whether the KILL was sent already.
        self._deadlines: dict[Run, tuple[float, Backend, bool]] = {}
        self._sweep: Any = None
        self._reader: ProcessPoolExecutor | None = None
        #: Big texts submitted to the reader and not yet read.
        self._queued = 0
        #: ``on_slow(seconds, request, user, result)``: called when a request's statements
        #: ran (on the backends, failovers included) at least ``slow_seconds``; None: off.
        self.on_slow: Callable[[float, Request, Any, Any], None] | None = None
        self.slow_seconds = float("inf")
        #: Read your writes: seconds a read with AFTER waits for a backend to apply the
        #: position before the next candidate is tried (0: no wait; gateway.position).
        self.gtid_wait = 1.0

    def execute(
        self, request: Request, user: Any = None, sink: Any = None, hangup: Hangup | None = None
    ) -> Deferred[Answer]:
        """Run a request for ``user`` (None when authentication is off); the Deferred fails
        with RequestError, AuthFailed or a GatewayError; with ClientGone once ``hangup``
        was called (the client went away), whatever became of the statements."""
        try:
            validate_server(request, self.mode, self.by_name)
        except RequestError as e:
            return fail(e)
        if not request.needs_backend:
            return succeed(_decorate(Answer(), request))
        if hangup is not None and hangup.happened:
            d: Deferred[Answer] = fail(ClientGone("the client went away", "not_sent"))
        elif user is not None and self.user_limit is not None:
            # Counted until the work is done (refused at once past the limit, before its SQL
            # is read): one user never holds every pooled connection.
            d = self.user_limit.run(user.name, lambda: self._execute(request, user, sink, hangup))
        else:
            d = self._execute(request, user, sink, hangup)
        if hangup is not None:
            d.addBoth(self._after_hangup, request, hangup)
        return d

    def _after_hangup(self, result: Any, request: Request, hangup: Hangup) -> Any:
        """A request whose client went away ends with ClientGone, saying what became of its
        statements, and is counted by that outcome (``cancelled`` in /stats). (A bug's failure
        goes on as it is.)"""
        error = result.value if isinstance(result, Failure) else None
        if not (hangup.happened or isinstance(error, ClientGone)):
            return result
        server = getattr(error if error is not None else result, "server", None) or None
        if isinstance(error, ClientGone):
            outcome = error.outcome
        elif isinstance(error, StatementTimeout) or (
            isinstance(error, ConnectionLost) and not error.not_sent
        ):
            outcome = "stopped"
        elif isinstance(error, (GatewayError, RequestError, AuthFailed)):
            outcome = "not_sent"
        elif error is not None:
            return result
        else:
            outcome = "finished"
        facts = request.facts
        write = facts is not None and not facts.read
        on = f" on backend {server}" if server else ""
        if outcome == "not_sent":
            to = f" to backend {server}" if server else ""
            message = f"the client went away before the statements were sent{to}; nothing ran"
        elif outcome == "stopped":
            message = f"the client went away while the statements ran{on}; they were stopped there"
            if write:
                message += " (a write may or may not have been applied)"
        else:
            message = f"the client went away; the statements had ended{on} before the stop came"
            if write and isinstance(result, Answer) and result.error is None:
                message += " (a write was applied)"
        if self.stats is not None:
            self.stats.record_event("cancelled", outcome)
        return Failure(ClientGone(message, outcome, server=server))

    def _execute(
        self, request: Request, user: Any, sink: Any, hangup: Hangup | None = None
    ) -> Deferred[Answer]:
        # The request's SQL is read once, here: every later decision uses these facts. A big
        # text is read in a thread of the reactor's pool: its reading is linear but can take
        # a few hundred milliseconds of CPU for adversarial shapes of 1 MiB, which must not
        # hold the reactor (the reactor thread gets the GIL back every switch interval).
        sql = request.sql
        if sql is not None and len(sql) > BIG_SQL_CHARS and request.facts is None:
            aside = self._read_aside(request, sql)
            if aside is not None:
                return aside.addCallback(lambda _: self._execute(request, user, sink, hangup))
        facts = request.read(self.dialect)
        read = facts is None or facts.read
        if facts is not None and facts.xa_prepare:
            return fail(
                RequestError(
                    "XA PREPARE is refused: a prepared XA transaction outlives the request and "
                    "its connection (the gateway rolls back what a request leaves open). Use "
                    "XA COMMIT ... ONE PHASE, or START TRANSACTION ... COMMIT in one request"
                )
            )
        try:
            authorize_statements(
                user,
                facts is None or facts.reads_or_use,
                account=facts is not None and facts.account,
            )
            allowed = self._allowed(user, request)
        except AuthFailed as e:
            return fail(e)
        read_only_run = user is not None and user.role == "read"
        ttl = self._cache_ttl(request, read)
        if ttl or facts is None or len(facts.statements) != 1:
            # Only the answer to one statement streams (its shape, RESULT as an object, is
            # known before the end: the backend streams a result set only when the server
            # says no other follows it, never a CALL's); one that may be cached is built
            # whole.
            sink = None
        # An answer rendered as JSON and not kept may carry rows rendered from the wire.
        wire_json = not ttl and request.format == "json"

        work = _Work(request, user, facts, read, allowed, read_only_run, sink, wire_json)
        if not ttl or self.cache is None or request.sql is None or facts is None:
            d = self._work(work, hangup)
        else:
            d = self._cached(request, facts, user, allowed, ttl, work, hangup)
        if request.help or request.debug_return_input:
            d.addCallback(_decorate, request)
        return d

    def _work(self, work: _Work, hangup: Hangup | None, first: bool = True) -> Deferred[Answer]:
        """Run a request whose facts and rights are settled (``work``) on its candidates."""
        request, read, allowed = work.request, work.read, work.allowed
        try:
            candidates = self.router.candidates(write=not read, server=request.server)
        except NoBackend as e:
            unchecked = self._unchecked() if first else []
            if unchecked:
                # Galera: a node not checked yet takes nothing (it may be outside the
                # primary component). A request that comes before the first checks have
                # ended (just after start-up) waits for them, once, bounded by the check
                # time-out, instead of a 503.
                assert self.health is not None
                waits = [self.health.check_now(name) for name in unchecked]
                return DeferredList(waits, consumeErrors=True).addCallback(
                    lambda _: self._work(work, hangup, first=False)
                )
            return fail(
                BackendUnavailable(e.message, errno=e.errno, server=e.server, retry_after=1)
            )
        names = [c.name for c in candidates if c.name in allowed]
        if request.after is not None and read:
            primary = self.router.primary
            names = position.read_order(
                self.mode, names, primary.name if primary is not None else None
            )
        if not names:
            return fail(
                BackendUnavailable(
                    f"none of the backends this user may use ({', '.join(sorted(allowed))}) "
                    "can take the request now; retry later",
                    retry_after=1,
                )
            )
        attempted = self._attempt(work, names, hangup)
        if self.on_slow is not None:  # (the one test a request pays when it is off)
            attempted.addBoth(self._timed, self.clock.seconds(), request, work.user)
        return attempted

    def _timed(self, result: Any, started: float, request: Request, user: Any) -> Any:
        """Report a request slower than ``slow_seconds`` (never fails the request)."""
        seconds = self.clock.seconds() - started
        if seconds >= self.slow_seconds and self.on_slow is not None:
            try:
                self.on_slow(seconds, request, user, result)
            except Exception:
                log.failure("reporting a slow statement failed")
        return result

    def _unchecked(self) -> list[str]:
        """Galera mode: the backends whose first health check has not ended yet."""
        if self.mode != "galera" or self.health is None or not self.health.running:
            return []
        return [s.name for s in self.router.statuses.values() if s.state == "unknown"]

    def _allowed(self, user: Any, request: Request) -> frozenset[str] | set[str]:
        if user is None:
            return self._all_names
        names = allowed_backends(user, list(self.by_name))
        if request.server is not None and request.server not in names:
            raise AuthFailed(403, f"user {user.name} may not use backend {request.server}")
        if not names:
            raise AuthFailed(403, f"user {user.name} may not use any configured backend")
        return set(names)

    def _cache_ttl(self, request: Request, read: bool) -> float | None:
        """The age of a cached answer this request accepts; None when it may not use the
        cache (a write, no SQL, no CACHE and no default)."""
        if self.cache is None or not read or request.sql is None:
            return None
        if request.after is not None:
            return None  # (a cached or shared answer may be older than the write: position)
        return self.cache.ttl_for(request.cache_s)

    def _cached(
        self,
        request: Request,
        facts: SQLFacts | None,
        user: Any,
        allowed: frozenset[str] | set[str],
        ttl: float,
        work: _Work,
        hangup: Hangup | None,
    ) -> Deferred[Answer]:
        """Serve from the answer cache where the request allows it.

        The key holds what the user may reach: the backends it may use and the database
        account its requests run on, so an answer is served only to users who could have run
        it on the backend that produced it, with the same account's privileges."""
        assert self.cache is not None and request.sql is not None and facts is not None
        if cacheable(facts, has_info_flags=bool(request.info)) is not None:
            return self._work(work, hangup).addCallback(_mark, "bypass")
        key = cache_key(
            group=self.mode,
            scope=self._account_scope(user, allowed),
            sql=request.sql,
            params=request.params,
            server=request.server,
        )
        # (The answer may be shared with other requests for the same key: its statement is
        # not stopped when this request's client goes away.)
        d = self.cache.fetch(key, ttl, lambda: self._work(work, None))
        return d.addCallback(lambda found: _mark(found[0], found[1]))

    def _account_scope(self, user: Any, allowed: frozenset[str] | set[str]) -> str:
        """Which database accounts, on which backends, a user's requests run on."""
        reader = user is not None and user.role == "read"
        return ",".join(
            f"{name}:{'read' if reader and self.by_name[name].spec.read_user else 'main'}"
            for name in sorted(allowed)
        )

    def time_limit(self, request: Request) -> float | None:
        """The configured maximum, lowered (never raised) by the request's TIMEOUT."""
        limit = self.max_statement_time
        if request.timeout_ms is not None:
            asked = request.timeout_ms / 1000.0
            limit = asked if limit is None else min(limit, asked)
        return limit

    def _attempt(
        self,
        work: _Work,
        names: list[str],
        hangup: Hangup | None,
        position: int = 0,
        last: Exception | None = None,
    ) -> Deferred[Answer]:
        """Run on ``names[position]``, going on down the list as the retry rule allows."""
        while position < len(names):
            status = self.router.status(names[position])
            if position and not status.usable:
                position += 1  # marked down while an earlier candidate was tried
                continue
            return self._run_on(self.by_name[names[position]], work, names, hangup, position)
        if last is None:
            return fail(BackendUnavailable("no healthy backend; retry later", retry_after=1))
        if isinstance(last, BackendUnavailable) and len(names) > 1:
            return fail(
                BackendUnavailable(
                    f"no backend could take the request ({', '.join(names)} tried); last "
                    f"error: {last.message}",
                    errno=last.errno,
                    server=last.server,
                    retry_after=1,
                )
            )
        return fail(last)

    def _after_failure(
        self,
        failure: Failure,
        work: _Work,
        names: list[str],
        hangup: Hangup | None,
        position: int,
    ) -> Any:
        """The attempt on ``names[position]`` failed: the next one (a Deferred), or the
        failure when the retry rule ends here."""
        error = failure.value
        name = names[position]
        sink = work.sink
        if sink is not None and getattr(sink, "begun", False):
            return failure  # (its answer has begun: it cannot start again elsewhere)
        if isinstance(error, BackendUnavailable):
            self._report_down(name, error)
        elif isinstance(error, PositionNotReached):
            # (nothing ran there: the next candidate, the primary first, may have it)
            log.info("read with AFTER not run on {name}: {error}", name=name, error=error.message)
        elif isinstance(error, ConnectionLost):
            read = work.facts is None or work.facts.read
            kind = NOT_SENT if error.not_sent else LOST
            if not may_retry(kind, read_only=read):
                return failure
            if hangup is not None and hangup.happened:
                return failure  # the client went away: nothing more is sent for it
            log.info(
                "retrying a {what} on another backend after {name} failed: {error}",
                what="read" if read else "request",
                name=name,
                error=error.message,
            )
        else:
            return failure
        if hangup is not None and hangup.happened:
            return failure  # the client went away: nothing more is sent for it
        return self._attempt(work, names, hangup, position + 1, error)

    def _run_on(
        self,
        backend: Backend,
        work: _Work,
        names: list[str],
        hangup: Hangup | None,
        position: int,
    ) -> Deferred[Answer]:
        """Run the request on ``backend`` (``names[position]``); one callback takes the
        outcome, whatever it is (:meth:`_attempted`)."""
        request = work.request
        if hangup is not None and hangup.happened:
            failure = Failure(gone_before_sent(backend.name))
            outcome = self._after_failure(failure, work, names, hangup, position)
            return outcome if isinstance(outcome, Deferred) else fail(outcome)
        status = self.router.status(backend.name)
        status.in_flight += 1
        run = Run(self.time_limit(request), read_only=work.read_only_run, max_rows=self.max_rows)
        run.sink = work.sink
        run.wire_json = work.wire_json
        if request.after is not None:
            self._position(run, backend, request)
        started = self.clock.seconds()
        if run.limit is not None:
            self._deadlines[run] = (started + run.limit + KILL_GRACE, backend, False)
            self._sweep_soon()
        if hangup is not None:
            hangup.watch(self._stop, backend, run)
        d = backend.execute(request, run)
        return d.addBoth(self._attempted, run, status, started, work, names, hangup, position)

    def _attempted(
        self,
        result: Any,
        run: Run,
        status: BackendStatus,
        started: float,
        work: _Work,
        names: list[str],
        hangup: Hangup | None,
        position: int,
    ) -> Any:
        """An attempt ended, in one callback: its bookkeeping, then the Galera answer check,
        then (a failure) the failover decision."""
        name = names[position]
        status.in_flight -= 1
        self._deadlines.pop(run, None)
        if hangup is not None:
            hangup.watch(None)
        self._observe(result, name, started)
        if self.mode == "galera" and not isinstance(result, Failure):
            try:
                return self._galera_answer(result, name)
            except Exception:
                result = Failure()
        if isinstance(result, Failure):
            return self._after_failure(result, work, names, hangup, position)
        return result

    def _galera_answer(self, answer: Answer, name: str) -> Answer:
        """Galera mode: a 1047 means the node is outside the primary component (the server
        refused the statement without running it). It is marked down at once; on the first
        statement nothing ran, so the request fails over as one never sent (BackendUnavailable,
        which the retry rule sends on); on a later one it is that statement's SQL error."""
        error = answer.error
        if error is None or error.errno != galera.NOT_PREPARED:
            return answer
        message = f"backend {name} is outside the Galera primary component ({error.message})"
        if answer.streamed or not galera.not_executed(error.errno, len(answer.results)):
            self._report_down(name, BackendUnavailable(message, errno=error.errno, server=name))
            return answer
        raise BackendUnavailable(
            f"{message}; nothing ran there", errno=error.errno, server=name, retry_after=1
        )

    def _position(self, run: Run, backend: Backend, request: Request) -> None:
        """Read your writes on ``backend`` (gateway.position): a read with AFTER checks and
        waits for the position there (not on the primary, which has it), or runs with causal
        reads (galera mode). A write, and the SQLite demo (one file), need nothing."""
        facts = request.facts
        if backend.spec.driver != "mysql" or (facts is not None and not facts.read):
            return
        if self.mode == "galera":
            run.causal = True
            return
        primary = self.router.primary
        if position.wait_needed(
            self.mode, backend.name, primary.name if primary is not None else None
        ):
            run.after = request.after
            wait = self.gtid_wait
            if run.limit is not None:
                wait = min(wait, run.limit / 2)  # (the wait counts in the time limit)
            run.after_wait = wait

    def _stop(self, backend: Backend, run: Run) -> None:
        """The client of ``run``'s request went away: stop its statement now, by the path of
        the time limit (KILL QUERY, sent again after KILL_GRACE for a statement that was
        being sent when the first one came, then the abort of a server that answers
        neither); a statement not sent yet is not sent (``run.cancelled``)."""
        run.cancelled = True
        self._kill(backend, run)
        entry = self._deadlines.get(run)
        if entry is None or not entry[2]:
            self._deadlines[run] = (self.clock.seconds() + KILL_GRACE, backend, False)
        self._sweep_soon()

    def _sweep_soon(self) -> None:
        if self._sweep is None:
            self._sweep = self.clock.callLater(SWEEP_SECONDS, self._kill_overdue)

    def _kill_overdue(self) -> None:
        """Kill the statements past their deadline (a timer per request would cost more than
        this sweep, which runs only while statements with a limit are running).

        A statement still running ``connect_timeout`` after its KILL was due means a server
        that answers neither (frozen, or the network to it gone): its connection is broken
        off, so the request fails as a lost connection (502, outcome not known; a read may go
        to another backend) instead of waiting out the read timeout, and the backend is
        marked down."""
        self._sweep = None
        now = self.clock.seconds()
        for run, (deadline, backend, killed) in list(self._deadlines.items()):
            if now < deadline:
                continue
            if not killed:  # due at limit + grace; the abort at limit + connect_timeout
                abort_at = max(deadline - KILL_GRACE + self.connect_timeout, now)
                self._deadlines[run] = (abort_at, backend, True)
                self._kill(backend, run)
                continue
            del self._deadlines[run]
            if run.kill_answered:
                # The server answered the KILL (done, or refused: a read account's thread is
                # not the main account's to kill without SUPER): it is not frozen. The
                # statement runs on to its time limit on the server; its connection is broken
                # off, so the request ends, but the backend stays up.
                if backend.abort(run):
                    log.warn(
                        "a statement on {name} still runs after a KILL QUERY the server "
                        "answered; its connection was broken off",
                        name=backend.name,
                    )
                continue
            if backend.abort(run):
                what = (
                    "a statement whose client went away"
                    if run.cancelled
                    else "a statement past its time limit"
                )
                message = (
                    f"backend {backend.name} answered neither {what} nor KILL QUERY within "
                    f"{self.connect_timeout:g} s"
                )
                log.warn("{message}: marked down", message=message)
                self._report_down(backend.name, BackendUnavailable(message, errno=2013))
        if self._deadlines:
            self._sweep = self.clock.callLater(SWEEP_SECONDS, self._kill_overdue)

    def _kill(self, backend: Backend, run: Run) -> None:
        if run.cancelled:
            log.info("the client of a statement on {n} went away: stopping it", n=backend.name)
        else:
            log.info(
                "statement on {name} past its time limit of {limit} s: killing it",
                name=backend.name,
                limit=run.limit,
            )
        d = backend.kill(run)
        d.addErrback(
            lambda f: log.warn(
                "KILL QUERY on {name} failed: {error}", name=backend.name, error=f.getErrorMessage()
            )
        )

    def _report_down(self, name: str, error: BackendUnavailable) -> None:
        if self.health is not None:
            self.health.report_failure(name, error.errno, error.message)
        else:
            status = self.router.status(name)
            status.state, status.last_errno, status.last_error = "down", error.errno, error.message

    def _observe(self, result: Any, name: str, started: float) -> None:
        if self.stats is None:
            return
        failure = getattr(result, "value", None)
        failed = isinstance(failure, (BackendUnavailable, ConnectionLost))
        sql_error = isinstance(result, Answer) and result.error is not None
        self.stats.record_backend(
            name, duration=self.clock.seconds() - started, failed=failed, sql_error=sql_error
        )

    def backend_info(self) -> dict[str, dict[str, Any]]:
        """Live facts per backend, for /stats and /metrics."""
        info: dict[str, dict[str, Any]] = {}
        for b in self.backends:
            status = self.router.status(b.name)
            pool = b.pool.info()
            info[b.name] = {
                "state": status.state,
                "driver": b.spec.driver,
                "role": b.spec.role,
                "weight": b.spec.weight,
                "read_only": status.read_only,
                "lag": status.lag,
                "in_flight": status.in_flight,
                "last_error": status.last_error,
                # How the read role is enforced: "account" (its own database account, with
                # SELECT and SHOW VIEW only: the database refuses writes), "session" (the
                # main account in a read-only session, which the client's SQL can lower: the
                # gateway's classifier is what stands), "query_only" (SQLite's pragma).
                "read_enforcement": getattr(b, "read_enforcement", "query_only"),
                "pool": pool,
                # Where answers were read: in the reactor thread (the reactor lane) or in a
                # pool thread (health checks not included).
                "answers": {
                    "reactor": lane.reads if (lane := getattr(b, "lane", None)) else 0,
                    "thread": b.pool.thread_runs,
                },
            }
            read_pool = getattr(b, "read_pool", None)
            if read_pool is not None:
                info[b.name]["read_pool"] = read_pool.info()
            if self.mode == "galera":  # the node's wsrep state (None: unknown), the writer
                info[b.name]["wsrep"] = status.wsrep.to_dict() if status.wsrep else None
                info[b.name]["writer"] = self.router.writer == b.name
        return info

    def _read_aside(self, request: Request, sql: str) -> Deferred[None] | None:
        """Read a big SQL text in the reader process (see BIG_SQL_CHARS) and give its facts to
        the request; None under a fake reactor. At most MAX_QUEUED_READS texts wait for the
        reader (past it: 503 with Retry-After). A reader that died is replaced and the text
        read here instead; the Deferred always fires."""
        if not hasattr(self.clock, "callFromThread"):
            return None
        if self._queued >= MAX_QUEUED_READS:
            return fail(
                BackendUnavailable(
                    f"{self._queued} big SQL texts are waiting to be read; retry shortly",
                    retry_after=1,
                )
            )
        pool = self._reader
        if pool is None:
            # spawn: a fresh interpreter, not a fork of this threaded process.
            pool = self._reader = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=reader_setup,
                initargs=(os.getpid(),),
            )
        d: Deferred[None] = Deferred()
        try:
            future = pool.submit(read_sql, sql, self.dialect)
        except (BrokenProcessPool, RuntimeError):  # (broken, or shut down)
            self._drop_reader(pool)
            request.read(self.dialect)
            return succeed(None)
        self._queued += 1

        def adopt(future: Any) -> None:  # (in the reactor thread)
            self._queued -= 1
            if future.cancelled():  # (the gateway is stopping: close() cancelled it)
                d.errback(Failure(BackendUnavailable("the gateway is stopping", retry_after=1)))
                return
            try:
                request.adopt(future.result())
            except Exception as e:  # the reader died (killed, out of memory), or raised
                if isinstance(e, BrokenProcessPool):
                    self._drop_reader(pool)
                log.warn("the SQL reader failed ({error}); reading the text here", error=e)
                try:
                    request.read(self.dialect)
                except Exception:
                    d.errback(Failure())
                    return
            d.callback(None)

        future.add_done_callback(lambda f: self.clock.callFromThread(adopt, f))
        return d

    def _drop_reader(self, pool: ProcessPoolExecutor) -> None:
        """Forget a broken reader (the next big text starts a new one)."""
        if self._reader is pool:
            self._reader = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.shutdown(wait=False, cancel_futures=True)
            self._reader = None
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        for backend in self.backends:
            backend.close()


def validate_server(request: Request, mode: str, by_name: dict[str, Backend]) -> None:
    """SERVER only where backends are named, and then a known name."""
    if request.server is not None and mode != "named":
        raise RequestError(
            "SERVER picks a backend only where backends are named (start the gateway with "
            '--named or mode = "named"); leave it out'
        )
    if mode != "named" or not (request.needs_backend or request.server is not None):
        return
    names = ", ".join(sorted(by_name))
    if request.server is None:
        raise RequestError(f"SERVER is required where backends are named; one of: {names}")
    if request.server not in by_name:
        raise RequestError(f"unknown SERVER {request.server!r}; one of: {names}")


def _mark(answer: Answer, outcome: str) -> Answer:
    answer.cache = outcome
    return answer


def _decorate(answer: Answer, request: Request) -> Answer:
    if request.help:
        answer.extras["SLAYER_HELP"] = HELP
    if request.debug_return_input:
        answer.extras["SLAYER_DEBUG_RETURN_INPUT"] = dict(request.raw)
    return answer


def reader_setup(gateway_pid: int) -> None:
    """In the reader process, before its first text: leave Ctrl+C to the gateway (which stops
    the reader itself) and die with the gateway, even one killed with SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # (not Linux: the reader outlives a killed gateway)
        pass
    if os.getppid() != gateway_pid:  # the gateway died before prctl took effect
        os._exit(0)


#: prctl(2) option: the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1
