"""Time-driven logic on an injected clock, no sleeps: the reactor lane's overdue answers
(gateway/lane.py), and the Redis client's call timeouts, circuit breaker and reconnection
delays (gateway/redis.py). The executor's deadlines (KILL at the time limit, abort of a
server that answers no KILL) run on the clock in test_request_path_memory.py; the health
checks' schedule in test_health.py. The same logic against real servers, in real time, is in
tests/integration (test_lane.py, test_redis_client.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import txredisapi
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from gateway.backends import BackendPool, ClientGone, ConnectionLost, MySQLBackend, Run, Slot
from gateway.lane import ReactorLane
from gateway.redis import RedisClient, RedisUnavailable, _Factory, parse_redis_url
from gateway.request import parse_request

READ_TIMEOUT = 5.0


# ------------------------------------------------------------------ the reactor lane


class ScriptedConnection:
    """What the lane uses of a mysqlclient connection; its socket is one end of a local
    socket pair, so the lane can watch it (nothing answers: the answer never comes)."""

    encoding = "utf8"
    _dbslayer_limit = None
    _dbslayer_read_only = False
    _dbslayer_read_account = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def thread_id(self) -> int:
        return 42

    def send_query(self, sql: bytes) -> None:
        self.sent.append(sql)


class ScriptedPool:
    """The part of BackendPool the lane uses: one slot, taken and given back; a thread run
    is recorded instead of run."""

    PING_AFTER_IDLE = BackendPool.PING_AFTER_IDLE

    def __init__(self, slot: Slot) -> None:
        self._slots = [slot]
        self._free = [slot]
        self._waiting: list[Any] = []
        self.discarded: list[Slot] = []
        self.in_thread: list[tuple[Any, ...]] = []
        self.lane: Any = None

    def take(self) -> Slot | None:
        return self._free.pop() if self._free else None

    def queue(self, start: Any) -> None:
        self._waiting.append(start)

    def give_back(self, slot: Slot) -> None:
        if self._waiting:
            self._waiting.pop(0)(slot)
        else:
            self._free.append(slot)

    def discard(self, slot: Slot) -> None:
        self.discarded.append(slot)
        slot.conn = None

    def run_in_thread(self, slot: Slot, func: Any, args: Any, check: bool = True) -> Any:
        self.in_thread.append((slot, func, args))
        return Deferred()


class ScriptedBackend:
    name = "db1"

    def _connection_error(self, e: BaseException, errno: int | None, not_sent: bool) -> Any:
        return MySQLBackend._connection_error(self, e, errno, not_sent)  # type: ignore[arg-type]

    def _execute(self, *args: Any) -> None: ...

    def _finish_sent(self, *args: Any) -> None: ...


@pytest.fixture
def lane() -> Iterator[tuple[ReactorLane, MemoryReactorClock, ScriptedPool, ScriptedConnection]]:
    clock = MemoryReactorClock()
    mine, other = socket.socketpair()
    slot = Slot()
    conn = slot.conn = ScriptedConnection(mine)
    slot.last_used = clock.seconds()
    pool = ScriptedPool(slot)
    backend: Any = ScriptedBackend()
    pool_: Any = pool
    reactor_lane = ReactorLane(backend, pool_, clock, read_timeout=READ_TIMEOUT)
    reactor_lane.attach(slot)
    yield reactor_lane, clock, pool, conn
    if slot.lane is not None:
        reactor_lane._forget(slot)
    mine.close()
    other.close()


def outcome(d: Deferred[Any]) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_an_overdue_answer_fails_as_a_lost_connection_at_the_read_timeout(lane: Any) -> None:
    """Sent from the reactor, an answer that never comes fails like a lost connection (502,
    2013, outcome unknown) once read_timeout has passed on the clock (checked every second,
    so at most one second late), not before; the connection is dropped, the slot given back,
    and the watchdog stops with the last request."""
    reactor_lane, clock, pool, conn = lane
    got = outcome(reactor_lane.execute(parse_request({"SQL": "SELECT 1"}), Run()))
    assert conn.sent == [b"SELECT 1"] and reactor_lane.busy == 1
    clock.advance(READ_TIMEOUT - 0.5)
    assert got == []
    clock.advance(1.0)
    (failure,) = got
    assert isinstance(failure.value, ConnectionLost) and failure.value.errno == 2013
    assert f"no answer within {READ_TIMEOUT:g} s" in failure.value.message
    assert "may or may not have been applied" in failure.value.message
    assert pool.discarded == pool._slots and pool._free == pool._slots
    assert reactor_lane.busy == 0 and clock.getDelayedCalls() == []


@pytest.mark.parametrize("idle", [BackendPool.PING_AFTER_IDLE - 1, BackendPool.PING_AFTER_IDLE + 1])
def test_a_connection_idle_for_long_goes_through_a_thread(lane: Any, idle: float) -> None:
    """A connection idle longer than PING_AFTER_IDLE on the clock is checked (pinged) in a
    pool thread before use; one used more recently is used at once, from the reactor."""
    reactor_lane, clock, pool, conn = lane
    clock.advance(idle)
    reactor_lane.execute(parse_request({"SQL": "SELECT 1"}), Run())
    if idle > BackendPool.PING_AFTER_IDLE:
        assert conn.sent == [] and len(pool.in_thread) == 1
    else:
        assert conn.sent == [b"SELECT 1"] and pool.in_thread == []
        reactor_lane.abort(pool._slots[0], reactor_lane.pool._slots[0].lane.pending[1])


def test_a_request_whose_client_left_while_it_waited_for_a_slot_is_not_sent(lane: Any) -> None:
    """A request queued for the pool's one slot, whose client goes away meanwhile: when the
    slot comes, nothing is sent; it fails with ClientGone (nothing ran) and the slot goes
    to the next in line on the next turn."""
    reactor_lane, clock, pool, conn = lane
    running, waiting = Run(), Run()
    first = outcome(reactor_lane.execute(parse_request({"SQL": "SELECT 1"}), running))
    second = outcome(reactor_lane.execute(parse_request({"SQL": "SELECT 2"}), waiting))
    waiting.cancelled = True  # (the executor's stop: its client went away)
    reactor_lane.abort(pool._slots[0], running)  # the first ends: its slot goes to the second
    assert isinstance(first[0].value, ConnectionLost)
    (failure,) = second
    assert isinstance(failure.value, ClientGone) and failure.value.outcome == "not_sent"
    assert conn.sent == [b"SELECT 1"]
    assert pool._free == []
    clock.advance(0)
    assert pool._free == pool._slots


# ------------------------------------------------------------------ the Redis client


class ScriptedRedis:
    """txredisapi's connection handler: each command is a Deferred the test fires."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Deferred[Any]]] = []

    def __getattr__(self, command: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            self.calls.append((command, d))
            return d

        return call


class ScriptedFactory:
    """The connection pool the client talks through: ``size`` connections up."""

    def __init__(self) -> None:
        self.size = 1
        self.handler = ScriptedRedis()

    def disconnect(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


@pytest.fixture
def redis() -> tuple[RedisClient, Clock, ScriptedFactory, list[str]]:
    clock = Clock()
    errors: list[str] = []
    client = RedisClient(
        "redis://127.0.0.1:1",
        clock,  # type: ignore[arg-type]
        timeout=1.0,
        on_error=errors.append,
    )
    factory = ScriptedFactory()
    client._factory = factory  # (start() would connect through txredisapi)
    return client, clock, factory, errors


def test_a_call_without_reply_fails_at_its_timeout_then_the_breaker_answers(redis: Any) -> None:
    """No reply: the call fails with RedisUnavailable after ``timeout`` on the clock, not
    before; then calls fail at once, without a command sent, until retry_after has passed;
    then one call goes through, and its reply closes the breaker."""
    client, clock, factory, errors = redis
    got = outcome(client.get("k"))
    clock.advance(0.99)
    assert got == []
    clock.advance(0.02)
    assert isinstance(got[0].value, RedisUnavailable)
    assert "GET failed: no reply within 1 s" in str(got[0].value)
    assert errors == ["no reply within 1 s"] and not client.available
    sent = len(factory.handler.calls)
    clock.advance(client.retry_after - 0.1)
    fast = outcome(client.get("k"))
    assert "is unavailable: no reply within 1 s (next try in 0.1 s)" in str(fast[0].value)
    assert len(factory.handler.calls) == sent and errors == ["no reply within 1 s"]
    clock.advance(0.2)
    probe = outcome(client.get("k"))
    meanwhile = outcome(client.get("k"))  # while the probe runs, the others fail at once
    assert "being tried again now" in str(meanwhile[0].value)
    factory.handler.calls[-1][1].callback(b"v")
    assert probe == [b"v"] and client.available
    assert clock.getDelayedCalls() == []


def test_no_connection_fails_calls_at_once_with_the_reason(redis: Any) -> None:
    """While no connection is up and the last attempt failed, a call fails at once with
    that reason; a call waiting for a connection is failed as soon as an attempt fails (not
    at its timeout)."""
    client, clock, factory, errors = redis
    factory.size = 0
    waiting = outcome(client.get("k"))
    client._note_connect("connection refused")
    assert "GET failed: connection refused" in str(waiting[0].value)
    clock.advance(client.retry_after + 0.01)
    again = outcome(client.ping())
    assert "PING failed: connection refused" in str(again[0].value)
    client._note_connect(None)  # reconnected (txredisapi's backoff)
    factory.size = 1
    clock.advance(client.retry_after + 0.01)
    ok = outcome(client.ping())
    factory.handler.calls[-1][1].callback(b"PONG")
    assert ok == [True] and client.available
    assert clock.getDelayedCalls() == []


def test_an_error_reply_is_not_an_outage_and_a_cancel_is_not_a_failure(redis: Any) -> None:
    """An error reply fails the call but closes the breaker (Redis is there); a call the
    caller cancels is a CancelledError, not a Redis failure."""
    client, clock, factory, errors = redis
    got = outcome(client.get("k"))
    factory.handler.calls[-1][1].errback(Failure(txredisapi.ResponseError("WRONGTYPE nope")))
    assert "error reply: WRONGTYPE nope" in str(got[0].value) and client.available
    d = client.get("k")
    cancelled = outcome(d)
    d.cancel()
    assert isinstance(cancelled[0].value, CancelledError) and client.available
    assert clock.getDelayedCalls() == []


def test_stop_fails_the_calls_in_flight(redis: Any) -> None:
    """stop(): the calls still waiting fail at once saying so; later calls say the client
    is not running; no timer is left."""
    client, clock, factory, errors = redis
    waiting = outcome(client.get("k"))
    client.stop()
    assert "cancelled: the client stopped" in str(waiting[0].value)
    later = outcome(client.get("k"))
    assert "not running" in str(later[0].value)
    assert clock.getDelayedCalls() == []


def test_reconnection_delays_grow_to_two_seconds() -> None:
    """txredisapi's backoff, as set here: 0.5 s after the first failed attempt, growing by e,
    never above 2 s, so a restarted Redis is used again within about two seconds."""
    factory = _Factory(parse_redis_url("redis://127.0.0.1:1"), 1.0, lambda reason: None)
    factory.jitter = 0  # (the delays are jittered by about 12 % in service)
    delays = [factory.retryDelay(attempt) for attempt in range(1, 8)]
    assert delays[0] == pytest.approx(0.5) and delays[1] == pytest.approx(0.5 * 2.71828, 1e-3)
    assert delays[2:] == [2.0] * 5
