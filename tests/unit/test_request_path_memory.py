"""The real request path in memory: MainResource and the GatewayApp behind both HTTP channels
(the fast channel of api.fastpath, and twisted.web's api.http.GatewayChannel), the real
Executor, the request recorder and the statistics, over a StringTransport on a
MemoryReactorClock. A scripted backend stands in for the database: each statement is a
Deferred the test fires, and a KILL is a call it records (the database side is tested against
MariaDB and the demo SQLite in tests/integration, test_hangup.py among them).

Both channels are driven the same way: ``channel="web"`` first sends a request the fast
channel does not take, so the connection is twisted.web's from then on.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from api.app import GatewayApp
from api.browser import BrowserGuard
from api.observe import RequestRecorder
from api.service import MainResource, Utf8Front
from conf.settings import BackendSpec, Settings
from gateway.backends import (
    BackendUnavailable,
    ConnectionLost,
    Run,
    StatementTimeout,
)
from gateway.executor import KILL_GRACE, SWEEP_SECONDS, Executor
from gateway.fairness import InFlightPerUser
from gateway.health import CheckResult
from gateway.request import Request
from gateway.results import Answer, ResultSet, SQLError
from gateway.router import BackendStatus, Router
from gateway.users import User
from stats.core import GatewayStats
from tests.unit.test_http_bounds import Answer as Reply
from tests.unit.test_http_bounds import parse

MAX_REQUEST = 4096
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0
CONNECT_TIMEOUT = 2.0
HOST = b"127.0.0.1:9090"
CHANNELS = ["fast", "web"]


# ------------------------------------------------------------------------------ harness


class ScriptedBackend:
    """A backend whose statements are Deferreds the test fires; KILLs are recorded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.spec = BackendSpec(name=name, driver="mysql")
        self.pool = _Pool()
        #: Statements sent, in order: (request, run, deferred).
        self.sent: list[tuple[Request, Run, Deferred[Answer]]] = []
        self.kills: list[Run] = []
        self.aborts: list[Run] = []

    def execute(self, request: Request, run: Run | None = None) -> Deferred[Answer]:
        d: Deferred[Answer] = Deferred()
        self.sent.append((request, run or Run(), d))
        return d

    def kill(self, run: Run) -> Deferred[None]:
        self.kills.append(run)
        run.killed = True
        return succeed(None)

    def abort(self, run: Run) -> bool:
        self.aborts.append(run)
        return True

    def probe(self) -> Deferred[CheckResult]:
        return succeed(CheckResult(ok=True))

    def close(self) -> None:
        pass

    # the test's side: what the server answers to the last statement sent
    @property
    def run(self) -> Run:
        return self.sent[-1][1]

    def answer(self, answer: Answer, index: int = -1) -> None:
        self.sent[index][2].callback(answer)

    def fail(self, error: Exception, index: int = -1) -> None:
        self.sent[index][2].errback(Failure(error))


class _Pool:
    thread_runs = 0

    def info(self) -> dict[str, int]:
        return {"in_use": 0, "idle": 0, "max": 1}


class Users:
    """An authenticator whose look-ups the test answers (``pending``) or that knows ann."""

    def __init__(self, wait: bool = False) -> None:
        self.wait = wait
        self.pending: list[Deferred[Any]] = []
        self.user = User(
            name="ann", role="write", servers=(), enabled=True, created=0, token_sha256="-"
        )

    def authenticate(self, header: str | None) -> Deferred[Any]:
        if not self.wait:
            return succeed(self.user)
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d


class Transport(StringTransport):
    """A connection's server side: what the gateway writes is kept (``value()``); an abort, or
    the client closing (``client_closes``), ends it as TCP does, with connectionLost."""

    def __init__(self) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 9090),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        )
        self.protocol: Any = None
        self.lost = False

    def abortConnection(self) -> None:
        super().abortConnection()
        self.client_closes()

    def client_closes(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone("the client closed")))

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def answers(self) -> list[Reply]:
        data = self.value()
        self.clear()
        return parse(data)


class Gateway:
    """The main port as api.service.make_service assembles it, on a MemoryReactorClock."""

    def __init__(
        self,
        backends: tuple[str, ...] = ("db1",),
        authenticator: Any = None,
        user_limit: InFlightPerUser | None = None,
        max_statement_time: float | None = None,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.backends = {name: ScriptedBackend(name) for name in backends}
        self.router = Router([BackendStatus(name, state="up") for name in backends], "pool")
        self.stats = GatewayStats(self.clock)
        self.executor = Executor(
            list(self.backends.values()),  # type: ignore[arg-type]
            self.router,
            self.clock,
            max_statement_time=max_statement_time,
            stats=self.stats,
            connect_timeout=CONNECT_TIMEOUT,
            user_limit=user_limit,
        )
        self.stats.backend_info = self.executor.backend_info
        self.access_log = io.StringIO()
        recorder = RequestRecorder(self.stats, self.clock, self.access_log)
        app = GatewayApp(self.executor, MAX_REQUEST, authenticator)
        app.streaming = True
        app.on_abandoned = recorder.finished
        app.clock, app.stall_timeout = self.clock, IDLE_TIMEOUT
        main = MainResource(app, Utf8Front(app.resource()), None)
        defaults = Settings()
        self.site = site = _site(main, self.clock)
        site.browser = BrowserGuard("127.0.0.1", defaults.allowed_hosts, defaults.allowed_origins)
        site.on_finished = recorder.finished
        site.on_refused = recorder.refused
        site.fast_handlers = dict(main.direct)
        self.stats.in_flight = lambda: site.in_flight

    @property
    def db1(self) -> ScriptedBackend:
        return self.backends["db1"]

    def connect(self, channel: str = "fast") -> Transport:
        transport = Transport()
        protocol = self.site.buildProtocol(transport.getPeer())
        transport.protocol = protocol
        protocol.makeConnection(transport)
        if channel == "web":  # a request the fast channel leaves to twisted.web
            transport.send(b"GET /nowhere HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
            assert type(transport.protocol).__name__ == "GatewayChannel"
            assert [r.status for r in transport.answers()] == [404]
        else:
            assert type(protocol).__name__ == "FastChannel"
        return transport

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def journal(self) -> list[dict[str, Any]]:
        return [e for e in self.stats.log_entries() if e["request"].startswith(("GET /db", "POST"))]


def _site(resource: Any, clock: MemoryReactorClock) -> Any:
    from api.http import GatewaySite

    return GatewaySite(
        resource,
        MAX_REQUEST,
        clock,
        512,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        timeout=IDLE_TIMEOUT,
    )


def gone(gw: Gateway) -> list[dict[str, Any]]:
    """The error journal's entries of requests whose client went away."""
    return [e for e in gw.stats.error_entries() if "the client went away" in e["error"]]


def get(obj: Any, version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    target = b"/db?" + quote(json.dumps(obj)).encode()
    return b"GET %s %s\r\nHost: %s\r\n%s\r\n" % (target, version, HOST, extra)


def post_form(fields: str) -> bytes:
    body = fields.encode()
    return (
        b"POST /dbform HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: %d\r\n\r\n%s" % (HOST, len(body), body)
    )


def rows(*values: int, server: str = "db1") -> Answer:
    return Answer(
        results=[ResultSet(["n"], ["MYSQL_TYPE_LONG"], [[v] for v in values])], server=server
    )


# ------------------------------------------------------------------------ answer shapes


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_select_is_answered_in_the_reference_shape_and_journalled(channel: str) -> None:
    """GET /db?{json}: the statement reaches the backend as parsed, the answer is the
    reference's JSON with an honest length, and the request journal has it (status 200)."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT n FROM t"}))
    request, run, _ = gw.db1.sent[0]
    assert request.sql == "SELECT n FROM t" and run.limit is None
    assert t.value() == b""  # nothing before the backend answers
    gw.db1.answer(rows(1, 2))
    (reply,) = t.answers()
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert reply.json() == {
        "RESULT": {"HEADER": ["n"], "ROWS": [[1], [2]], "TYPES": ["MYSQL_TYPE_LONG"]},
        "SERVER": "db1",
    }
    (entry,) = gw.journal()
    assert entry["response_code"] == 200 and "SELECT n FROM t" in entry["request"]
    assert gw.site.in_flight == 0 and gw.router.status("db1").in_flight == 0


@pytest.mark.parametrize("channel", CHANNELS)
def test_dbform_post_and_sql_errors(channel: str) -> None:
    """POST /dbform: every field is a request key; an SQL error is a 200 carrying it."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(post_form("SQL=SELECT+nope&FORMAT=json"))
    assert gw.db1.sent[0][0].sql == "SELECT nope"
    gw.db1.answer(Answer(error=SQLError(1054, "Unknown column 'nope'"), server="db1"))
    (reply,) = t.answers()
    assert reply.status == 200
    assert reply.json()["MYSQL_ERRNO"] == 1054 and reply.json()["SERVER"] == "db1"


# ----------------------------------------------------------- keep-alive and pipelining


@pytest.mark.parametrize("channel", CHANNELS)
def test_pipelined_requests_are_answered_in_order_on_one_connection(channel: str) -> None:
    """Two requests in one write: the second is sent to the backend only once the first is
    answered (one at a time per connection, as twisted.web does), answers come in order, and
    the connection stays open (HTTP/1.1 keep-alive)."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT 1"}) + get({"SQL": "SELECT 2"}))
    assert len(gw.db1.sent) == 1
    gw.db1.answer(rows(1))
    assert len(gw.db1.sent) == 2 and gw.db1.sent[1][0].sql == "SELECT 2"
    gw.db1.answer(rows(2))
    replies = t.answers()
    assert [r.json()["RESULT"]["ROWS"] for r in replies] == [[[1]], [[2]]]
    assert all(r.headers.get("connection") != "close" for r in replies)
    assert not t.disconnecting


@pytest.mark.parametrize("channel", CHANNELS)
def test_http_1_0_and_connection_close_end_the_connection_after_the_answer(channel: str) -> None:
    """HTTP/1.0 without keep-alive, or Connection: close, is answered then closed; HTTP/1.0
    with keep-alive stays open and says so."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT 1"}, b"HTTP/1.0", b"Connection: keep-alive\r\n"))
    gw.db1.answer(rows(1))
    (reply,) = t.answers()
    assert reply.headers["connection"].lower() == "keep-alive" and not t.disconnecting
    t.send(get({"SQL": "SELECT 1"}, extra=b"Connection: close\r\n"))
    gw.db1.answer(rows(1))
    (reply,) = t.answers()
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert t.disconnecting


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (BackendUnavailable("backend db1 is unavailable", errno=2003, server="db1"), 503, "1"),
        (ConnectionLost("lost while the statements ran", errno=2013, server="db1"), 502, None),
        (StatementTimeout("time limit reached", errno=1969, server="db1"), 504, None),
    ],
)
def test_gateway_errors_have_honest_statuses(
    channel: str, error: Exception, status: int, retry_after: str | None
) -> None:
    """A backend that cannot be reached (503, Retry-After), a connection lost while a write
    ran (502, never retried), a statement stopped at its time limit (504): JSON errors that
    name the backend, and the journal has the status."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "UPDATE t SET n = 1"}))
    if isinstance(error, BackendUnavailable):
        error.retry_after = 1
    gw.db1.fail(error)
    (reply,) = t.answers()
    assert reply.status == status, reply
    assert reply.json()["SERVER"] == "db1" and "ERROR" in reply.json()
    assert reply.headers.get("retry-after") == retry_after
    assert len(gw.db1.sent) == 1  # a write is never sent again
    assert gw.journal()[-1]["response_code"] == status


@pytest.mark.parametrize("channel", CHANNELS)
def test_request_errors_never_reach_the_backend(channel: str) -> None:
    """Not JSON (400), no such path (404), a query string over the limit (414): answered by
    the gateway, nothing sent."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(b"GET /db?%7Bnope HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    t.send(b"GET /dbx HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    replies = t.answers()
    assert [r.status for r in replies] == [400, 404]
    assert all("ERROR" in r.json() for r in replies)
    t.send(get({"SQL": "SELECT '" + "x" * MAX_REQUEST + "'"}))
    (reply,) = t.answers()
    assert reply.status == 414 and "ERROR" in reply.json()
    assert gw.db1.sent == []


# ----------------------------------------------------------------- time, on the clock


@pytest.mark.parametrize("channel", CHANNELS)
def test_head_and_body_timeouts_are_408_on_the_clock(channel: str) -> None:
    """A head not whole within the header timeout, a body not whole within the body timeout
    (from the head's end): a JSON 408 and the close, at the second the clock reaches it."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(b"GET /db?%7B%22SQL%22 HTTP/1.1\r\nHost: ")
    gw.advance(HEADER_TIMEOUT - 0.5)
    assert t.value() == b""
    gw.advance(1.0)
    (reply,) = t.answers()
    assert reply.status == 408 and "head" in reply.json()["ERROR"]
    t = gw.connect(channel)
    t.send(
        b"POST /db HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: 40\r\n\r\n{" % HOST
    )
    gw.advance(BODY_TIMEOUT - 0.5)
    assert t.value() == b""
    gw.advance(1.0)
    (reply,) = t.answers()
    assert reply.status == 408 and "body" in reply.json()["ERROR"]
    assert gw.db1.sent == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_idle_timeout_closes_an_idle_connection_never_one_with_a_request(channel: str) -> None:
    """A request in flight is never cut by the idle timeout; once answered, the connection
    is closed when it has been idle that long."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT SLEEP(100)"}))
    gw.advance(IDLE_TIMEOUT * 2)
    assert not t.disconnecting
    gw.db1.answer(rows(0))
    assert t.answers()[0].status == 200
    gw.advance(IDLE_TIMEOUT - 1)
    assert not t.disconnecting
    gw.advance(2)
    assert t.disconnecting


@pytest.mark.parametrize("channel", CHANNELS)
def test_statement_time_limit_kills_on_the_clock_then_504(channel: str) -> None:
    """TIMEOUT 200 ms: the executor sends KILL QUERY at the limit plus its grace (the
    server's own limit came first otherwise), not before; the server's answer to it is a
    504 for the client."""
    gw = Gateway(max_statement_time=30.0)
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT SLEEP(5)", "TIMEOUT": 200}))
    run = gw.db1.run
    assert run.limit == pytest.approx(0.2)
    gw.advance(0.2)
    assert gw.db1.kills == []
    gw.advance(KILL_GRACE + SWEEP_SECONDS)
    assert gw.db1.kills == [run] and not run.cancelled
    gw.db1.fail(run.timeout_error("db1", 1317))
    (reply,) = t.answers()
    assert reply.status == 504 and reply.json()["MYSQL_ERRNO"] == 1317
    gw.advance(SWEEP_SECONDS)  # the sweep stops once no statement has a deadline
    assert [c for c in gw.clock.getDelayedCalls() if "_kill" in repr(c)] == []


# -------------------------------------------------------------------------- hang-up


@pytest.mark.parametrize("channel", CHANNELS)
def test_hang_up_stops_the_statement_and_is_journalled_as_499(channel: str) -> None:
    """The client closes its connection while its statement runs: the statement is killed
    at once (and once more after the grace, for one that was being sent), the request
    leaves the in-flight count at once, nothing is written; once the server answers the KILL,
    the backend's count is given back, the journal and access log show 499 with what became
    of the statement, and /stats counts it under cancelled."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT n FROM slow"}))
    run = gw.db1.run
    assert gw.site.in_flight == 1 and gw.router.status("db1").in_flight == 1
    t.client_closes()
    assert gw.db1.kills == [run] and run.cancelled
    assert gw.site.in_flight == 0
    assert gw.router.status("db1").in_flight == 1  # the statement still holds its connection
    gw.advance(KILL_GRACE + SWEEP_SECONDS)
    assert gw.db1.kills == [run, run]
    gw.db1.fail(run.timeout_error("db1", 1317))  # the server: "query execution was interrupted"
    assert t.value() == b""
    assert gw.router.status("db1").in_flight == 0
    (entry,) = gw.journal()
    assert entry["response_code"] == 499
    (error,) = gone(gw)
    assert "went away while the statements ran on backend db1" in error["error"]
    assert "stopped there" in error["error"] and "write" not in error["error"]
    assert '" 499 0 ' in gw.access_log.getvalue()
    assert gw.stats.snapshot()["cancelled"] == {"stopped": 1, "finished": 0, "not_sent": 0}
    assert gw.db1.aborts == []  # answered in time: no abort, the backend stays up
    gw.advance(CONNECT_TIMEOUT * 2)
    assert gw.db1.aborts == [] and gw.router.status("db1").state == "up"


def test_a_write_stopped_by_a_hang_up_may_or_may_not_be_applied() -> None:
    """The journal says that a write stopped by a hang-up may or may not have been applied;
    one that had ended before the stop came says it was applied."""
    gw = Gateway()
    t = gw.connect()
    t.send(get({"SQL": "UPDATE t SET n = n + 1"}))
    t.client_closes()
    gw.db1.fail(gw.db1.run.timeout_error("db1", 1317))
    t = gw.connect()
    t.send(get({"SQL": "INSERT INTO t VALUES (1)"}))
    t.client_closes()
    gw.db1.answer(Answer(server="db1"))  # it had ended: the KILL came too late
    stopped, finished = (e["error"] for e in gone(gw))
    assert "(a write may or may not have been applied)" in stopped
    assert "had ended on backend db1" in finished and "(a write was applied)" in finished
    assert gw.stats.snapshot()["cancelled"] == {"stopped": 1, "finished": 1, "not_sent": 0}


def test_a_server_that_answers_no_kill_is_aborted_and_marked_down() -> None:
    """A statement still running connect_timeout after its KILL (a frozen server): its
    connection is broken off (the abort of the time limit's path) and the backend is down."""
    gw = Gateway()
    t = gw.connect()
    t.send(get({"SQL": "SELECT SLEEP(30)"}))
    run = gw.db1.run
    t.client_closes()
    gw.advance(CONNECT_TIMEOUT - SWEEP_SECONDS)
    assert gw.db1.aborts == []
    gw.advance(2 * SWEEP_SECONDS)
    assert gw.db1.aborts == [run]
    assert gw.router.status("db1").state == "down"
    assert "whose client went away" in (gw.router.status("db1").last_error or "")


def test_a_hang_up_is_never_retried_on_another_backend() -> None:
    """A read whose connection is lost after its client went away is not sent to the other
    backend (it would be, for a client still there)."""
    gw = Gateway(backends=("db1", "db2"))
    t = gw.connect()
    t.send(get({"SQL": "SELECT 1"}))
    (first,) = [b for b in gw.backends.values() if b.sent]
    first.fail(ConnectionLost("lost", errno=2013, server=first.name))
    (second,) = [b for b in gw.backends.values() if b is not first]
    assert len(second.sent) == 1  # the rule: a read is retried elsewhere
    t.client_closes()
    second.fail(ConnectionLost("lost", errno=2013, server=second.name))
    assert sum(len(b.sent) for b in gw.backends.values()) == 2
    assert gw.journal()[-1]["response_code"] == 499


def test_a_hang_up_before_the_statement_is_sent_sends_nothing() -> None:
    """The client leaves while its credentials are being checked: nothing is sent, and the
    journal says nothing ran."""
    users = Users(wait=True)
    gw = Gateway(authenticator=users)
    t = gw.connect()
    t.send(get({"SQL": "DELETE FROM t"}))
    t.client_closes()
    users.pending[0].callback(users.user)
    assert gw.db1.sent == []
    (error,) = gone(gw)
    assert "nothing ran" in error["error"]
    assert gw.stats.snapshot()["cancelled"]["not_sent"] == 1


def test_a_hang_up_gives_the_users_place_back_once_the_statement_ends() -> None:
    """With a per-user limit of 1: while the stopped statement still runs, the user's next
    request is refused (429); once the server has answered the KILL, it is taken."""
    gw = Gateway(authenticator=Users(), user_limit=InFlightPerUser(1))
    t = gw.connect()
    t.send(get({"SQL": "SELECT SLEEP(30)"}))
    t.client_closes()
    other = gw.connect()
    other.send(get({"SQL": "SELECT 1"}))
    (reply,) = other.answers()
    assert reply.status == 429
    gw.db1.fail(gw.db1.sent[0][1].timeout_error("db1", 1317))
    other.send(get({"SQL": "SELECT 1"}))
    gw.db1.answer(rows(1))
    assert [r.status for r in other.answers()] == [200]


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_half_close_is_not_a_hang_up(channel: str) -> None:
    """A client that only shuts its sending side (shutdown(SHUT_WR)) still reads: its
    statement runs on and the answer is written, then the connection is closed."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT 1"}))
    t.protocol.readConnectionLost()
    assert gw.db1.kills == []
    gw.db1.answer(rows(1))
    assert [r.status for r in t.answers()] == [200]
    assert t.disconnecting


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_streamed_answer_the_client_stops_reading_is_stopped_at_the_idle_timeout(
    channel: str,
) -> None:
    """A streamed answer (rows written as read) whose client stops reading: paused by the
    transport, and after the idle timeout its connection is aborted and the statement
    stopped, as for a client that left; a resume before then keeps it going."""
    gw = Gateway()
    t = gw.connect(channel)
    t.send(get({"SQL": "SELECT n FROM big"}))
    run = gw.db1.run
    sink = run.sink
    assert sink is not None
    sink.begin(["n"], ["MYSQL_TYPE_LONG"], [])
    sink.rows([[i] for i in range(1000)])
    producer = t.producer
    assert producer is not None
    producer.pauseProducing()
    gw.advance(IDLE_TIMEOUT - 1)
    producer.resumeProducing()  # it read: the timer starts again at the next pause
    producer.pauseProducing()
    gw.advance(IDLE_TIMEOUT - 1)
    assert not t.lost and gw.db1.kills == []
    gw.advance(2)
    assert t.lost and sink.stopped
    assert gw.db1.kills == [run] and run.cancelled
    gw.db1.fail(run.timeout_error("db1", 1317))
    assert gw.journal()[-1]["response_code"] == 499
    assert gw.stats.snapshot()["cancelled"]["stopped"] == 1
