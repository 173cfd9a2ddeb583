"""Unit tests for what issue 15 took off the request path: the statistics fold, the reactor's
dispatch, and the parse kept per query string. Each checks that the figures, events and
answers are what they were, only made at another time or once."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

import stats.core
from api.app import PARSED_ENTRIES, GatewayApp
from api.reactor import GatewayReactor
from gateway.request import Request
from gateway.results import Answer
from stats.core import GatewayStats
from stats.histogram import LatencyHistogram

T0 = 1_700_000_010.25  # (not on a bucket boundary: the ring's start is fractional)


def _requests(seed: int, count: int) -> list[dict[str, Any]]:
    """Requests as the recorder reports them: endpoints, statuses, errors, kinds, times."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        endpoint = rng.choice(["db", "db", "db", "dbform", "stats", "metrics"])
        status = rng.choice([200, 200, 200, 400, 499, 502, 503])
        error = None if status == 200 else f"error {i}"
        out.append(
            {
                "advance": rng.choice([0.0, 0.0001, 0.3, 0.9, 1.7, 59.9, 61.0]),
                "endpoint": endpoint,
                "client_ip": f"10.0.0.{i % 7}",
                "request_line": f"GET /{endpoint}?n={i} HTTP/1.1",
                "status": status,
                "bytes_sent": rng.randrange(0, 5000),
                "duration": rng.choice([0.0, -1.0, float("nan"), 0.0004, 0.02, 3.5]),
                "error": error,
                "sql_error": rng.random() < 0.2,
                "kinds": rng.choice([None, ("read",), ("write", "read"), ()]),
                "statements": rng.choice([None, {"read": 2}, {}]),
                "sql": rng.choice([None, "SELECT 1"]) if error else None,
            }
        )
    return out


def _play(fold_every: int, requests: list[dict[str, Any]], monkeypatch: Any) -> Any:
    """Record ``requests`` with the fold bound ``fold_every``; read everything at the end."""
    monkeypatch.setattr(stats.core, "FOLD_EVERY", fold_every)
    clock = Clock()
    clock.advance(T0)
    gateway = GatewayStats(clock, buckets=30, bucket_seconds=60, journal_size=20)
    for fields in requests:
        fields = dict(fields)
        clock.advance(fields.pop("advance"))
        started = clock.seconds() - 0.001
        gateway.record_request(started=started, **fields)
        gateway.record_backend(
            "b1" if fields["status"] < 500 else "b2",
            duration=fields["duration"],
            failed=fields["status"] == 502,
            sql_error=fields["sql_error"],
        )
    snapshot = gateway.snapshot()
    return snapshot, gateway.log_entries(), gateway.error_entries(), gateway.db_totals()


@pytest.mark.parametrize("seed", range(6))
def test_fold_gives_the_figures_recording_one_by_one_gave(seed: int, monkeypatch: Any) -> None:
    """Folded every request (as recording was before) or in batches of any size: the same
    /stats figures, journals and totals, to the last bucket, percentile and journal entry."""
    requests = _requests(seed, 700)
    one_by_one = _play(1, requests, monkeypatch)
    for every in (2, 7, 64, 1024, 10**9):
        assert _play(every, requests, monkeypatch) == one_by_one, every


def test_recording_is_bounded_and_read_folds_first(monkeypatch: Any) -> None:
    """At most FOLD_EVERY requests wait to be folded; any reading sees every one."""
    monkeypatch.setattr(stats.core, "FOLD_EVERY", 10)
    clock = Clock()
    clock.advance(T0)
    gateway = GatewayStats(clock)
    for i in range(25):
        gateway.record_request(
            endpoint="db",
            client_ip="127.0.0.1",
            request_line=f"GET /db?{i} HTTP/1.1",
            status=200,
            bytes_sent=1,
            started=clock.seconds(),
            duration=0.001,
        )
        assert len(gateway._pending) < 10
    assert gateway.figures().total_requests == 25
    assert gateway._pending == []
    assert len(gateway.log_entries()) == 25


def test_a_request_text_is_made_once_when_read() -> None:
    """A request line given as a function is not called by recording nor by the fold; once
    read it is made once, for the log and the error journal alike."""
    clock = Clock()
    gateway = GatewayStats(clock)
    calls: list[int] = []

    def line() -> str:
        calls.append(1)
        return "GET /db?x HTTP/1.1"

    for _ in range(3):
        gateway.record_request(
            endpoint="db",
            client_ip="h",
            request_line=line,
            status=500,
            bytes_sent=0,
            started=0.0,
            duration=0.0,
            error="boom",
        )
    gateway.figures()
    assert calls == []
    assert [e["request"] for e in gateway.log_entries()] == ["GET /db?x HTTP/1.1"] * 3
    gateway.error_entries()
    assert calls == [1, 1, 1]


def test_observe_many_is_observe_in_order() -> None:
    rng = random.Random(3)
    values = [rng.choice([0.0, -2.0, float("nan"), 1e-5, 0.07, 99.0]) for _ in range(500)]
    one, many = LatencyHistogram(), LatencyHistogram()
    for v in values:
        one.observe(v)
    many.observe_many(values[:100])
    many.observe_many(iter(values[100:]))
    assert one.state() == many.state()
    assert one.summary_ms() == many.summary_ms()


# ------------------------------------------------------------------------------ the reactor


class _Selectable:
    def __init__(self, fd: int, log: list[str], reactor: Any = None, victim: Any = None):
        self.fd, self.log, self.reactor, self.victim = fd, log, reactor, victim

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        self.log.append(f"read {self.fd}")
        if self.victim is not None:
            self.reactor._selectables.pop(self.victim.fd)

    def doWrite(self) -> None:
        self.log.append(f"write {self.fd}")

    def connectionLost(self, reason: Any) -> None:
        self.log.append(f"lost {self.fd}")

    def logPrefix(self) -> str:
        return "test"


class _Poller:
    def __init__(self, events: list[tuple[int, int]]) -> None:
        self.events = events

    def poll(self, timeout: float, most: int) -> list[tuple[int, int]]:
        return self.events


def test_reactor_dispatches_each_event_as_twisted_does() -> None:
    """Events go to the selectable's doRead/doWrite; one removed by an earlier event of the
    same poll is skipped; an error in doRead disconnects that selectable (Twisted's own
    _doReadOrWrite), and the others still run."""
    import select

    reactor = GatewayReactor()
    log: list[str] = []
    second = _Selectable(11, log)
    first = _Selectable(10, log, reactor, victim=second)

    class Failing(_Selectable):
        def doRead(self) -> None:
            raise RuntimeError("bug")

    failing = Failing(12, log)
    third = _Selectable(13, log)
    for s in (first, second, failing, third):
        reactor._selectables[s.fd] = s
    reactor._poller = _Poller(
        [(10, select.EPOLLIN), (11, select.EPOLLIN), (12, select.EPOLLIN), (13, select.EPOLLOUT)]
    )
    reactor.doPoll(0)
    assert log == ["read 10", "lost 12", "write 13"]


def test_serve_installs_the_gateway_reactor() -> None:
    """dbslayer serve runs on GatewayReactor (installed before klein imports the reactor)."""
    import subprocess
    import sys

    code = (
        "import sys, api.cli as c\n"
        "c.run_until_stopped = lambda r: print(type(r).__name__)\n"
        "sys.exit(c.serve(['--port', '0', '--workers', '1']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout
    assert out.strip().splitlines()[-1] == "GatewayReactor"


# ------------------------------------------------------------------- the parse, kept per text


class _Runner:
    stops_abandoned = False

    def __init__(self) -> None:
        self.seen: list[Request] = []

    def execute(self, request: Request, user: Any = None, sink: Any = None, hangup: Any = None):
        self.seen.append(request)
        return succeed(Answer())


class _Req:
    method = b"GET"

    def __init__(self, query: bytes) -> None:
        self.query = query
        self.headers: dict[bytes, bytes] = {}
        self.code = 200

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def setResponseCode(self, code: int) -> None:
        self.code = code


def _ask(app: GatewayApp, query: bytes) -> _Req:
    request = _Req(query)
    result = app.db(request)
    if not isinstance(result, bytes):
        result.addCallback(lambda body: None)
    return request


def test_plain_query_parsed_once_and_shared() -> None:
    runner = _Runner()
    app = GatewayApp(runner, 1 << 20)
    query = b'{"SQL":"SELECT%201"}'
    for _ in range(3):
        _ask(app, query)
    assert len(runner.seen) == 3
    assert runner.seen[0] is runner.seen[1] is runner.seen[2]
    assert runner.seen[0].sql == "SELECT 1"


@pytest.mark.parametrize(
    "query",
    [
        b'{"SQL":"SELECT 1","SERVER":"x"}',  # another shape: parsed each time
        b'{"SQL":"SELECT 1","FORMAT":"xml"}',
        b'{"SQL":"SELECT 1","CACHE":5}',
    ],
)
def test_other_shapes_are_not_kept(query: bytes) -> None:
    runner = _Runner()
    app = GatewayApp(runner, 1 << 20)
    _ask(app, query)
    _ask(app, query)
    assert runner.seen[0] is not runner.seen[1]
    assert runner.seen[0] == runner.seen[1]
    assert app._parsed == {}


def test_refusals_are_not_kept_and_the_memo_is_bounded() -> None:
    runner = _Runner()
    app = GatewayApp(runner, 1 << 20)
    assert _ask(app, b'{"SQL":"  "}').code == 400
    assert _ask(app, b'{"SQL":"  "}').code == 400
    assert _ask(app, b'{"SQL":1}').code == 400
    assert app._parsed == {}
    for i in range(PARSED_ENTRIES + 10):
        _ask(app, b'{"SQL":"SELECT %d"}' % i)
    assert len(app._parsed) == PARSED_ENTRIES
    assert b'{"SQL":"SELECT 0"}' not in app._parsed  # the oldest went first
    long = b'{"SQL":"SELECT ' + b"1" * 5000 + b'"}'
    _ask(app, long)
    assert long not in app._parsed


def test_unknown_keys_follow_the_app_setting() -> None:
    """--compat original ignores unknown keys, the default refuses them: never memoized
    across that setting (the memo is the app's)."""
    strict, lax = GatewayApp(_Runner(), 1 << 20), GatewayApp(_Runner(), 1 << 20)
    lax.ignore_unknown_keys = True
    query = b'{"SQL":"SELECT 1","SQLX":1}'
    assert _ask(strict, query).code == 400
    assert _ask(lax, query).code == 200
