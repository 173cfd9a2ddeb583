"""Pure decisions of connection hygiene and honest outcomes (no I/O): when a session must be
reset, what counts as a server's SQL error, when an answer is a time-out, and the executor's
handling of a frozen backend, driven by an injected clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from conf.settings import BackendSpec
from gateway.backends import BackendUnavailable, ConnectionLost, Run, is_client_errno, timed_out
from gateway.executor import KILL_GRACE, Executor
from gateway.request import Request
from gateway.results import Answer, SQLError, Update
from gateway.router import BackendStatus, Router
from gateway.session import (
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_IN_TRANS,
    session_changed,
    setup_statement,
    transaction_open,
)
from gateway.wire import COMPLETE, answer_state

CLEAN = SERVER_STATUS_AUTOCOMMIT


# ------------------------------------------------------------------ session_changed


def test_a_clean_autocommit_answer_needs_no_reset() -> None:
    assert not session_changed(CLEAN, False, may_leave_state=False)


@pytest.mark.parametrize(
    "final",
    [
        CLEAN | SERVER_STATUS_IN_TRANS,  # START TRANSACTION, or an INSERT after autocommit=0
        CLEAN | SERVER_SESSION_STATE_CHANGED,  # SET, USE, temporary table, PREPARE, LOCK
        0,  # autocommit turned off, no transaction yet
        None,  # the status could not be read
    ],
)
def test_what_the_server_reports_forces_a_reset(final: int | None) -> None:
    assert session_changed(final, False, may_leave_state=False)


def test_a_change_in_an_earlier_statement_counts() -> None:
    """``SET @x=1; SELECT 1``: the last status is clean, the first one was flagged."""
    assert session_changed(CLEAN, True, may_leave_state=False)


def test_what_the_server_does_not_flag_comes_from_the_facts() -> None:
    """GET_LOCK, HANDLER and SELECT @x:=1 leave the flags clear: the tokenizer's verdict
    forces the reset."""
    assert session_changed(CLEAN, False, may_leave_state=True)


def test_transaction_open() -> None:
    assert transaction_open(CLEAN | SERVER_STATUS_IN_TRANS)
    assert not transaction_open(CLEAN)
    assert not transaction_open(None)


def test_setup_statement_turns_tracking_on_and_refuses_odd_charsets() -> None:
    text = setup_statement("utf8mb4")
    assert "session_track_state_change=1" in text and "autocommit=1" in text
    with pytest.raises(ValueError):
        setup_statement("utf8mb4; DROP TABLE t")


# ------------------------------------------------------------------ the wire's status


def _packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def test_answer_state_gives_the_ok_status() -> None:
    ok = _packet(
        1, b"\x00\x01\x00" + (CLEAN | SERVER_STATUS_IN_TRANS).to_bytes(2, "little") + b"\0\0"
    )
    assert answer_state(ok) == (COMPLETE, CLEAN | SERVER_STATUS_IN_TRANS)


def test_answer_state_gives_no_status_for_an_error() -> None:
    err = _packet(1, b"\xff\x19\x04#HY000boom")
    assert answer_state(err) == (COMPLETE, None)


# ------------------------------------------------------------------ outcomes


@pytest.mark.parametrize("errno", [2002, 2006, 2013, 2055, None])
def test_client_errors_are_lost_or_refused_connections(errno: int | None) -> None:
    assert is_client_errno(errno)


@pytest.mark.parametrize("errno", [1064, 1317, 1969, 3024, 4025, 4031, 4078])
def test_server_errors_are_sql_errors(errno: int) -> None:
    assert not is_client_errno(errno)


def test_a_statement_that_completed_late_is_answered() -> None:
    run = Run(limit=0.01)
    run.killed = True  # the KILL came after the statement had finished: nothing to stop
    answer = Answer(results=[Update(1, 0)])
    assert not timed_out(run, answer)


@pytest.mark.parametrize("errno", [1969, 3024])
def test_only_the_servers_interruption_is_a_time_out(errno: int) -> None:
    assert timed_out(Run(limit=1.0), Answer(error=SQLError(errno, "stopped")))


def test_an_interrupted_query_is_a_time_out_only_after_our_kill() -> None:
    """1317 "query execution was interrupted" is the gateway's time limit only when this run
    sent the KILL; another's KILL (a DBA's) is answered as the SQL error it is."""
    answer = Answer(error=SQLError(1317, "Query execution was interrupted"))
    assert not timed_out(Run(limit=1.0), answer)
    run = Run(limit=1.0)
    run.killed = True
    assert timed_out(run, answer)


def test_an_aborted_sort_is_a_time_out_only_after_a_kill() -> None:
    answer = Answer(error=SQLError(1028, "Sort aborted"))
    assert not timed_out(Run(limit=1.0), answer)
    run = Run(limit=1.0)
    run.killed = True
    assert timed_out(run, answer)


# ------------------------------------------------------------------ a frozen backend


class FrozenBackend:
    """Never answers: records the KILL and the abort the executor sends."""

    def __init__(self) -> None:
        self.name = "a"
        self.spec = BackendSpec(name="a", driver="mysql")
        self.kills: list[float] = []
        self.aborts: list[float] = []
        self.pending: Deferred[Answer] | None = None
        self.clock: Clock | None = None

    def execute(self, request: Request, run: Run) -> Deferred[Answer]:
        self.pending = Deferred()
        return self.pending

    def kill(self, run: Run) -> Deferred[None]:
        assert self.clock is not None
        self.kills.append(self.clock.seconds())
        return Deferred()  # the KILL's own connection hangs too

    def abort(self, run: Run) -> bool:
        assert self.clock is not None and self.pending is not None
        self.aborts.append(self.clock.seconds())
        self.pending.errback(ConnectionLost("lost", errno=2013, server="a"))
        return True


class Health:
    def __init__(self) -> None:
        self.down: list[tuple[str, int | None]] = []

    def report_failure(self, name: str, errno: int | None, error: str) -> None:
        self.down.append((name, errno))


def test_a_frozen_backend_is_broken_off_after_limit_plus_connect_timeout() -> None:
    clock = Clock()
    backend = FrozenBackend()
    backend.clock = clock
    health: Any = Health()
    executor = Executor(
        [backend],  # type: ignore[list-item]
        Router([BackendStatus("a")], "pool"),
        clock,
        max_statement_time=2.0,
        health=health,
        connect_timeout=3.0,
    )
    outcome: list[Any] = []
    executor.execute(Request(sql="INSERT INTO t VALUES (1)")).addBoth(outcome.append)
    for _ in range(200):  # 10 s in sweeps of 50 ms
        clock.advance(0.05)
    assert backend.kills and backend.kills[0] == pytest.approx(2.0 + KILL_GRACE, abs=0.06)
    assert backend.aborts and backend.aborts[0] == pytest.approx(2.0 + 3.0, abs=0.06)
    assert health.down == [("a", 2013)]
    assert isinstance(outcome[0].value, ConnectionLost)  # 502: may or may not have applied
    assert not executor._deadlines and executor._sweep is None
    executor.close = lambda: None  # type: ignore[method-assign]


def test_a_statement_that_ends_before_the_abort_is_not_broken_off() -> None:
    clock = Clock()
    backend = FrozenBackend()
    backend.clock = clock
    executor = Executor(
        [backend],  # type: ignore[list-item]
        Router([BackendStatus("a")], "pool"),
        clock,
        max_statement_time=1.0,
        connect_timeout=3.0,
    )
    outcome: list[Any] = []
    executor.execute(Request(sql="SELECT SLEEP(5)")).addBoth(outcome.append)
    clock.advance(1.3)  # past the limit: KILL QUERY sent
    clock.advance(0.05)
    assert backend.kills
    assert backend.pending is not None
    backend.pending.callback(Answer(error=SQLError(1317, "Query execution was interrupted")))
    for _ in range(100):
        clock.advance(0.05)
    assert not backend.aborts
    assert outcome and not isinstance(outcome[0], BackendUnavailable)
