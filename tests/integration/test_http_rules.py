"""One set of HTTP rules on both channels of the main port: the requests the fast channel takes
itself and those it leaves to twisted.web, a 400 at once for a bare CR or LF (never silence
until a timeout), refusals instead of tracebacks for what twisted.web's parser raised on, one
keep-alive rule, and answers for a client that half-closes (``shutdown(SHUT_WR)``) after its
last request. In memory over the stub sites of tests/integration/test_http_differential.py, then end to end
against a real gateway and MariaDB over loopback TCP."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from typing import Any

import pytest
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock

from api.fastpath import TOO_LONG, content_length, keeps_alive
from tests.integration.test_http_differential import (
    PEER,
    StubApp,
    Transport,
    exchange,
    parse_answers,
    stub_site,
)
from tests.servers import Gateway

TIMEOUT = 5.0


class Connection:
    """One in-memory connection to a stub site, fed by hand."""

    def __init__(self, fast: bool) -> None:
        self.clock = Clock()
        self.app = StubApp(self.clock)
        site = stub_site(self.app, self.clock, fast)
        self.transport = Transport()
        self.first = site.buildProtocol(PEER)
        self.transport.protocol = self.first
        self.first.makeConnection(self.transport)

    @property
    def protocol(self) -> Any:
        return self.transport.protocol

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self.clock.advance(0.01)

    @property
    def handed_over(self) -> bool:
        return self.protocol is not self.first

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting or self.transport.write_closed)

    def answers(self) -> list[tuple[Any, bytes]]:
        return parse_answers(self.transport.value())


GET_DB = "GET /db?" + urllib.parse.quote(json.dumps({"SQL": "SELECT 1"}))


def q(sql: str) -> str:
    return urllib.parse.quote(json.dumps({"SQL": sql}))


# --------------------------------------------------------------------- what the fast path takes

#: Requests real clients send: the fast channel answers each itself (no hand-over), so the
#: rules cost the hot path nothing.
TAKEN = {
    "wrk": f"{GET_DB} HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n\r\n".encode(),
    "curl": f"{GET_DB} HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nUser-Agent: curl/8.5.0\r\n"
    "Accept: */*\r\n\r\n".encode(),
    "python client POST": b"POST /db HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nAccept-Encoding: "
    b"identity\r\nContent-Type: application/json\r\nContent-Length: 18\r\nConnection: keep-alive"
    b"\r\nAuthorization: Bearer 0123456789abcdef\r\n\r\n" + b'{"SQL":"SELECT 1"}',
    "browser form": b"POST /dbform HTTP/1.1\r\nHost: localhost:9090\r\nUser-Agent: Mozilla/5.0 "
    b"(X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,"
    b"application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b"Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: 12\r\n"
    b"Origin: http://localhost:9090\r\nSec-Fetch-Site: same-origin\r\nCookie: a=b; c=d\r\n"
    b"\r\nSQL=SELECT+1",
    "HTTP/1.0 keep-alive (ab)": f"{GET_DB} HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: x\r\n"
    "\r\n".encode(),
    "no space after the colon, tabs around the value": f"{GET_DB} HTTP/1.1\r\nHost:x\r\n"
    "X-A:\t 1 \t\r\n\r\n".encode(),
    "bytes over 0x7F and controls in a value": f"{GET_DB} HTTP/1.1\r\nHost: x\r\n"
    "X-A: caf\xe9 \x01\x7f\r\n\r\n".encode("latin-1"),
    "a target with bytes 0x7F to 0xB0": b"GET /db?\x7f\x80\xb0 HTTP/1.1\r\nHost: x\r\n\r\n",
    "500 headers, twisted.web's limit": f"{GET_DB} HTTP/1.1\r\n".encode()
    + b"".join(b"X-%d: v\r\n" % i for i in range(500))
    + b"\r\n",
    "Content-Length with leading zeros": b"POST /db HTTP/1.1\r\nContent-Length: 0002\r\n\r\n{}",
}


@pytest.mark.parametrize("name", list(TAKEN))
def test_fast_channel_takes_what_clients_send(name: str) -> None:
    """Each common request shape is answered by the fast channel itself, as twisted.web would
    answer it (same request seen by the handler, same status)."""
    stream = TAKEN[name]
    conn = Connection(fast=True)
    conn.send(stream)
    assert not conn.handed_over, name
    assert [status for status, _ in conn.answers()] == [200]
    assert exchange(stream, [], fast=True) == exchange(stream, [], fast=False)


#: Heads that twisted.web refuses (400), and the fast channel therefore hands over.
REFUSED = {
    "bare LF line ends": b"GET /db HTTP/1.1\nHost: x\n\n",
    "bare CR line ends": b"GET /db HTTP/1.1\rHost: x\r\r",
    "bare LF in a header line": b"GET /db HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    "bare CR in a value": b"GET /db HTTP/1.1\r\nHost: x\ry\r\n\r\n",
    "NUL in a value": b"GET /db HTTP/1.1\r\nHost: x\x00\r\n\r\n",
    "space before the colon": b"GET /db HTTP/1.1\r\nHost : x\r\n\r\n",
    "space in a name": b"GET /db HTTP/1.1\r\nX Y: x\r\n\r\n",
    "control in a name": b"GET /db HTTP/1.1\r\nHo\x01st: x\r\n\r\n",
    "vertical tab after Transfer-Encoding (the smuggling case)": b"POST /db HTTP/1.1\r\n"
    b"Transfer-Encoding\x0b: chunked\r\nContent-Length: 0\r\n\r\n",
    "501 headers": b"GET /db HTTP/1.1\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(501))
    + b"\r\n",
    "plus-signed Content-Length": b"POST /db HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
    "negative Content-Length": b"POST /db HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "hex Content-Length": b"POST /db HTTP/1.1\r\nContent-Length: 0x2\r\n\r\n{}",
    "two Content-Lengths": b"POST /db HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    "a list of lengths": b"POST /db HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n{}",
    "Content-Length and chunked": b"POST /db HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 2\r\n\r\n",
    "unknown Transfer-Encoding": b"POST /db HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    "control in the target": b"GET /db?\x01 HTTP/1.1\r\n\r\n",
    "byte over 0xB0 in the target": b"GET /db?\xb1 HTTP/1.1\r\n\r\n",
    "HTTP/1.2": b"GET /db HTTP/1.2\r\n\r\n",
    "two spaces in the request line": b"GET  /db HTTP/1.1\r\n\r\n",
    "a header line without a colon": b"GET /db HTTP/1.1\r\nHost\r\n\r\n",
    "a vertical tab in a POST's Content-Type": b"POST /db HTTP/1.1\r\nContent-Type: text/plain"
    b"\x0b\r\nContent-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_malformed_heads_get_twisted_webs_400_on_both_channels(name: str) -> None:
    """A head twisted.web refuses gets its JSON 400 and the close on the fast channel's site
    too, at once (before the client's end of input), and nothing runs."""
    for fast in (True, False):
        conn = Connection(fast)
        conn.send(REFUSED[name])
        assert conn.answers() == [(400, b'{"ERROR":"malformed HTTP request"}')], (name, fast)
        assert conn.closed and conn.app.seen == [], (name, fast)
        assert conn.handed_over is fast


def test_bare_lf_pipelined_after_a_fast_request() -> None:
    """A bare-LF request after a request the fast channel answered: the first is answered,
    the second gets 400 at once (twisted.web waited for a CR LF that never comes)."""
    for fast in (True, False):
        conn = Connection(fast)
        conn.send(f"{GET_DB} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.send(b"GET /db HTTP/1.1\nHost: x\n")
        assert [status for status, _ in conn.answers()] == [200, 400], fast
        assert conn.closed


def test_bare_cr_at_the_end_of_a_piece_waits_for_its_lf() -> None:
    """A CR that ends what has arrived so far may be the first half of CR LF: no 400 for it,
    and the request is answered when the LF follows."""
    for fast in (True, False):
        conn = Connection(fast)
        conn.send(f"{GET_DB} HTTP/1.1\r".encode())
        conn.send(b"\nHost: x\r")
        assert conn.answers() == [] and not conn.closed
        conn.send(b"\n\r\n")
        assert [status for status, _ in conn.answers()] == [200], fast


def test_content_length_too_long_for_int_is_413_not_a_traceback() -> None:
    """A Content-Length of 5,000 digits (int() refuses over 4,300, and twisted.web's parser
    raised, dropping the connection unanswered) is a JSON 413 on both channels."""
    stream = b"POST /db HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    for fast in (True, False):
        conn = Connection(fast)
        conn.send(stream)
        [(status, body)] = conn.answers()
        assert status == 413 and "5000 digits" in json.loads(body)["ERROR"]
        assert conn.closed
    assert content_length(b"0" * 40 + b"12") == 12
    assert content_length(b"1" + b"0" * 18) == TOO_LONG
    assert [content_length(v) for v in (b"", b"+1", b"-1", b"1 2", b"0x1", b"\xd9\xa1")] == [
        None
    ] * 6


def test_form_content_type_with_a_line_break_of_email_is_400() -> None:
    """A POST form whose Content-Type has a form feed (twisted.web read it with the email
    package, which raised: no answer and a traceback) gets 400 on both channels; without a
    body there is nothing to read and it is served."""
    head = b"POST /dbform HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\x0c\r\n"
    for fast in (True, False):
        conn = Connection(fast)
        conn.send(head + b"Content-Length: 12\r\n\r\nSQL=SELECT+1")
        assert [status for status, _ in conn.answers()] == [400] and conn.app.seen == []
        conn = Connection(fast)
        conn.send(head + b"Content-Length: 0\r\n\r\n")
        assert [status for status, _ in conn.answers()] == [200]


# ---------------------------------------------------------------------------- keep-alive


def test_keep_alive_rule() -> None:
    """Connection options are comma-separated tokens in any case: HTTP/1.1 stays open unless
    one is close; HTTP/1.0 only with keep-alive."""
    cases = {
        (b"HTTP/1.1", None): True,
        (b"HTTP/1.1", b"keep-alive"): True,
        (b"HTTP/1.1", b"close"): False,
        (b"HTTP/1.1", b"Close"): False,
        (b"HTTP/1.1", b"close, TE"): False,
        (b"HTTP/1.1", b"TE,close"): False,
        (b"HTTP/1.1", b"closed"): True,
        (b"HTTP/1.0", None): False,
        (b"HTTP/1.0", b"Keep-Alive"): True,
        (b"HTTP/1.0", b"te, keep-alive"): True,
        (b"HTTP/1.0", b"keep-alive, close"): False,
        (b"HTTP/1.0", b"keep-alived"): False,
    }
    assert {case: keeps_alive(*case) for case in cases} == cases


def test_http10_keep_alive_on_twisted_web_routes_too() -> None:
    """HTTP/1.0 with ``Connection: keep-alive`` stays open on twisted.web's routes as on the
    fast channel's (the answer has a length and says keep-alive); twisted.web closed it."""
    for fast in (True, False):
        conn = Connection(fast)
        conn.send(b"GET /elsewhere HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        conn.send(f"{GET_DB} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
        assert [status for status, _ in conn.answers()] == [404, 200]
        assert b"\r\nConnection: keep-alive\r\n" in conn.transport.value()
        assert not conn.closed
        conn.send(b"GET /elsewhere HTTP/1.0\r\n\r\n")
        assert [status for status, _ in conn.answers()] == [404, 200, 404] and conn.closed


def test_close_among_other_options_closes_on_both_channels() -> None:
    """``Connection: close, TE`` closes after the answer on both channels (twisted.web split
    the header at spaces and kept the connection open); a pipelined request is not run."""
    for path in (b"/db", b"/elsewhere"):
        for fast in (True, False):
            conn = Connection(fast)
            conn.send(
                b"GET %s HTTP/1.1\r\nConnection: close, TE\r\n\r\nGET /db HTTP/1.1\r\n\r\n" % path
            )
            assert len(conn.answers()) == 1 and conn.transport.disconnecting, (path, fast)


def test_an_answer_that_says_close_closes_twisted_web_connections() -> None:
    """While the site drains, a request on either channel gets a 503 with Connection: close
    and the connection is closed after it (twisted.web said close and kept it open)."""
    for path in (b"/db", b"/elsewhere"):
        for fast in (True, False):
            conn = Connection(fast)
            conn.protocol.site.draining = True
            conn.send(b"GET %s HTTP/1.1\r\n\r\nGET /db HTTP/1.1\r\n\r\n" % path)
            assert [status for status, _ in conn.answers()] == [503], (path, fast)
            assert conn.transport.disconnecting, (path, fast)


# -------------------------------------------------------------------------- half-close


def half_close(conn: Connection) -> None:
    half: Any = IHalfCloseableProtocol(conn.protocol, None)
    assert half is not None, f"{type(conn.protocol).__name__} does not take half-closes"
    half.readConnectionLost()
    conn.clock.advance(0.01)


def test_half_close_in_memory_answers_then_closes() -> None:
    """After the client's half-close, both channels answer what was sent (pipelined, answered
    later, handed over in between), close at once after the last answer, and drop a request
    left incomplete."""
    pipelined = (
        f"{GET_DB} HTTP/1.1\r\n\r\n".encode()
        + b"GET /elsewhere HTTP/1.1\r\n\r\n"
        + f"{GET_DB} HTTP/1.1\r\n\r\n".encode()
        + b"POST /db HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}"  # incomplete
    )
    for fast in (True, False):
        conn = Connection(fast)
        conn.app.later = True
        conn.protocol.dataReceived(pipelined)
        half_close(conn)
        assert not conn.transport.disconnecting
        for _ in range(10):
            conn.clock.advance(0.01)
        # An interim 100 Continue first (PeerCheck's probe, for the request in flight).
        assert [status for status, _ in conn.answers()] == [100, 200, 404, 200], fast
        assert conn.transport.disconnecting, fast
        # Nothing pending: closed at once.
        idle = Connection(fast)
        half_close(idle)
        assert idle.transport.disconnecting and idle.answers() == []


# ------------------------------------------------------------------- end to end, real TCP


def request_bytes(path: str, version: str = "HTTP/1.1", headers: str = "") -> bytes:
    return f"GET {path} {version}\r\nHost: localhost\r\n{headers}\r\n".encode()


def read_until_closed(sock: socket.socket, timeout: float = TIMEOUT) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when the close came."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"no close within {timeout} s; got {data[:300]!r}")
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def answers_of(data: bytes) -> list[tuple[Any, Any]]:
    out = []
    for status, body in parse_answers(data):
        try:
            out.append((status, json.loads(body)))
        except ValueError:
            out.append((status, body))
    return out


def rows(answer: tuple[Any, Any]) -> Any:
    status, body = answer
    assert status == 200, answer
    return body["RESULT"]["ROWS"]


def test_bare_lf_request_gets_400_end_to_end(gateway: Gateway) -> None:
    """Against a real gateway: a request with bare-LF line ends gets a JSON 400 within a
    second, then the close (it waited for the idle timeout, 60 s), on a fresh connection and
    after a request the fast channel answered."""
    for first in (b"", request_bytes("/db?" + q("SELECT 1"))):
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=TIMEOUT) as sock:
            sock.sendall(first + f"GET /db?{q('SELECT 2')} HTTP/1.1\nHost: localhost\n\n".encode())
            data, took = read_until_closed(sock)
        answers = answers_of(data)
        assert took < 1.0
        assert [status for status, _ in answers] == ([200, 400] if first else [400])
        assert "ERROR" in answers[-1][1]


def test_half_closed_clients_get_their_answers(gateway: Gateway) -> None:
    """Against a real gateway: a client that sends its requests and half-closes
    (shutdown(SHUT_WR)) reads every answer, then the server's close: pipelined /db requests
    with a slow one first (fast channel), twisted.web's routes, a hand-over in between, a
    request completed by the last bytes before the half-close, and an incomplete request
    left at the end (dropped, the rest answered)."""
    slow = request_bytes("/db?" + q("SELECT SLEEP(0.3) AS s"))
    cases = {
        "fast channel, pipelined": (
            slow + request_bytes("/db?" + q("SELECT 1")) + request_bytes("/db?" + q("SELECT 2")),
            [[[0]], [[1]], [[2]]],
        ),
        "twisted.web": (request_bytes("/health") + request_bytes("/health"), ["ok", "ok"]),
        "hand-over in between": (
            slow + request_bytes("/health") + request_bytes("/db?" + q("SELECT 3")),
            [[[0]], "ok", [[3]]],
        ),
        "HTTP/1.0": (request_bytes("/db?" + q("SELECT 4"), "HTTP/1.0"), [[[4]]]),
        "incomplete request left": (
            request_bytes("/db?" + q("SELECT 5")) + b"POST /db HTTP/1.1\r\nContent-Length: 50\r\n"
            b"\r\n{",
            [[[5]]],
        ),
    }
    for name, (stream, expected) in cases.items():
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=TIMEOUT) as sock:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
            data, took = read_until_closed(sock)
        answers = answers_of(data)
        interim = [status for status, _ in answers if status == 100]
        got = [
            body["status"] if "status" in body else rows((status, body))
            for status, body in answers
            if status != 100
        ]
        assert got == expected, name
        assert took < 2.0, name
        # The probe of a client that half-closed with an HTTP/1.1 request in flight (the
        # slow ones, at least): once, before the answers.
        assert len(interim) <= 1 and (not interim or answers[0][0] == 100), name
        if stream.startswith(slow):
            assert interim == [100], name


def test_client_that_closes_with_a_request_in_flight_is_let_go(
    mariadb: Any, gateway_factory: Any
) -> None:
    """A FIN is a half-close or a close: the client that half-closed is answered (above), and
    one that closed altogether, found by the probe's reset, is let go at once on both
    channels: with --max-in-flight 1 the next client is served within a second (in about
    50 ms), not after the 2 s statement."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-in-flight", "1")
    sql = "SELECT SLEEP(2) AS left_behind"
    body = json.dumps({"SQL": sql}).encode()
    ways = {
        "fast channel": request_bytes("/db?" + q(sql)),
        "twisted.web (chunked body)": b"POST /db HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n"
        % (len(body), body),
    }
    for name, stream in ways.items():
        with socket.create_connection(("127.0.0.1", gw.port), timeout=TIMEOUT) as sock:
            sock.sendall(stream)
            time.sleep(0.2)  # the statement is running
        started = time.monotonic()
        while True:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=TIMEOUT) as sock:
                sock.sendall(
                    request_bytes("/db?" + q("SELECT 'next'"), headers="Connection: close\r\n")
                )
                data, _ = read_until_closed(sock)
            status = answers_of(data)[-1][0]
            if status == 200 or time.monotonic() - started > 1.7:
                break
            time.sleep(0.05)
        assert status == 200 and time.monotonic() - started < 1.0, name
        time.sleep(2.0)  # the statement left behind ends
