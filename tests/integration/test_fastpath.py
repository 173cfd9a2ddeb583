"""The main port's lean HTTP/1.1 channel (api/fastpath.py), on the wire: keep-alive,
pipelining, HTTP/1.0, the hand-over of a connection to twisted.web, size refusals, streamed
(chunked or close-delimited) answers, and statistics. Raw sockets, so every byte is checked."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB

TIMEOUT = 5.0
#: A result set big enough to stream (over 1,000 rows and over the reactor lane's 64 KiB).
STREAMED_SQL = "SELECT seq, REPEAT('x', 30) AS pad FROM seq_1_to_5000"
STREAMED_ROWS = [[n, "x" * 30] for n in range(1, 5001)]


# ----------------------------------------------------------------------------- wire helpers


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: How the body's end was known: "length", "chunked" or "close".
    framing: str = ""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"header {name} repeated: {values}"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """One client connection; reads one answer at a time and keeps what follows it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.settimeout(TIMEOUT)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._more():
                raise EOFError(f"connection closed inside a line: {self.buf[:200]!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} body bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self) -> bytes:
        """An answer's status line and headers (for HEAD, whose answer has no body)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise EOFError(f"connection closed before an answer's head: {self.buf[:200]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def read(self) -> Response:
        head = self.read_head()
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        response = Response(version, int(status), reason)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            response.headers.append((name.strip(), value.strip()))
        te = response.header("Transfer-Encoding")
        length = response.header("Content-Length")
        if response.status < 200 or response.status in (204, 304):
            response.framing = "none"
        elif te is not None:
            assert te.lower() == "chunked", te
            assert length is None, "both Transfer-Encoding and Content-Length"
            body = b""
            while True:
                size = int(self._line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._line():  # trailers, then the empty line
                        pass
                    break
                body += self._exactly(size)
                assert self._exactly(2) == b"\r\n", "chunk not followed by CRLF"
            response.body, response.framing = body, "chunked"
        elif length is not None:
            response.body, response.framing = self._exactly(int(length)), "length"
        else:
            while self._more():
                pass
            response.body, self.buf, response.framing = self.buf, b"", "close"
        return response

    def assert_closed(self) -> None:
        """The server closes the connection, with nothing more sent."""
        extra = self.buf
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            extra += chunk
        assert extra == b"", f"unexpected bytes before the close: {extra[:200]!r}"

    def assert_open(self, wait: float = 0.3) -> None:
        """Nothing arrives and the connection is not closed within ``wait`` seconds."""
        assert self.buf == b""
        self.sock.settimeout(wait)
        try:
            with pytest.raises(socket.timeout):
                data = self.sock.recv(1)
                pytest.fail(f"expected an open, quiet connection, got {data!r}")
        finally:
            self.sock.settimeout(TIMEOUT)


def q(obj: Any) -> str:
    return urllib.parse.quote(json.dumps(obj))


def get_db(obj: Any, version: str = "HTTP/1.1", headers: str = "") -> bytes:
    return f"GET /db?{q(obj)} {version}\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


def get(path: str, version: str = "HTTP/1.1", headers: str = "") -> bytes:
    return f"GET {path} {version}\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


def post(path: str, body: bytes, ctype: str = "application/json", headers: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    )
    return head.encode() + body


def rows(response: Response) -> Any:
    assert response.status == 200, response
    return response.json()["RESULT"]["ROWS"]


def total_requests(gw: Gateway) -> int:
    reply = gw.get("/stats")
    assert reply.status == 200, reply
    return int(reply.json()["total_requests"])


# ---------------------------------------------------------------------------------- tests


def test_keep_alive_serves_several_requests(gateway: Gateway) -> None:
    """HTTP/1.1 without a Connection header: each answer has Content-Length and the right rows,
    and the connection stays open for the next request."""
    with Conn(gateway.port) as c:
        for n in (1, 2, 3):
            c.send(get_db({"SQL": f"SELECT {n} AS n"}))
            r = c.read()
            assert r.version == "HTTP/1.1" and r.status == 200 and r.framing == "length"
            assert r.header("Content-Length") == str(len(r.body))
            assert r.header("Content-Type") == "application/json"
            assert r.header("Connection") is None
            assert r.json()["RESULT"]["HEADER"] == ["n"] and rows(r) == [[n]]
        c.assert_open()


def test_pipelined_requests_are_answered_in_order(gateway: Gateway) -> None:
    """Three requests in one packet get three answers, in the order asked."""
    with Conn(gateway.port) as c:
        c.send(b"".join(get_db({"SQL": f"SELECT {n}"}) for n in (1, 2, 3)))
        assert [rows(c.read()) for _ in range(3)] == [[[1]], [[2]], [[3]]]
        c.send(get_db({"SQL": "SELECT 4"}))
        assert rows(c.read()) == [[4]]


def test_pipelined_slow_then_fast_keeps_order(gateway: Gateway) -> None:
    """A slow statement pipelined before a quick one is still answered first."""
    with Conn(gateway.port) as c:
        c.send(
            get_db({"SQL": "SELECT SLEEP(0.3) AS s, 'slow' AS w"})
            + get_db({"SQL": "SELECT 'quick'"})
        )
        assert rows(c.read()) == [[0, "slow"]]
        assert rows(c.read()) == [["quick"]]


def test_http10_closes_unless_keep_alive(gateway: Gateway) -> None:
    """HTTP/1.0 without keep-alive: answered, then closed. With ``Connection: keep-alive``: the
    answer says keep-alive and the connection serves another request."""
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": "SELECT 10"}, "HTTP/1.0"))
        r = c.read()
        assert r.version == "HTTP/1.0" and rows(r) == [[10]]
        assert r.header("Content-Length") == str(len(r.body))
        assert r.header("Connection") == "close"
        c.assert_closed()
    with Conn(gateway.port) as c:
        for n in (11, 12):
            c.send(get_db({"SQL": f"SELECT {n}"}, "HTTP/1.0", "Connection: keep-alive\r\n"))
            r = c.read()
            assert r.version == "HTTP/1.0" and rows(r) == [[n]]
            assert r.header("Connection") == "keep-alive"
        c.assert_open()


def test_connection_close_on_http11(gateway: Gateway) -> None:
    """``Connection: close`` on HTTP/1.1: the answer says so and the server closes; a request
    pipelined after it is not answered."""
    with Conn(gateway.port) as c:
        c.send(
            get_db({"SQL": "SELECT 5"}, headers="Connection: close\r\n")
            + get_db({"SQL": "SELECT 6"})
        )
        r = c.read()
        assert rows(r) == [[5]] and r.header("Connection") == "close"
        c.assert_closed()


def test_other_routes_hand_the_connection_over(gateway: Gateway) -> None:
    """/db, then /health, then /db on one connection: all answered in turn (the last two by
    twisted.web); a connection that starts with /stats serves /db too; and the same sequence
    pipelined in one packet is answered in order."""
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]
        c.send(get("/health"))
        h = c.read()
        assert h.status == 200 and h.json()["status"] == "ok"
        c.send(get_db({"SQL": "SELECT 2"}))
        r = c.read()
        assert rows(r) == [[2]] and r.header("Content-Length") == str(len(r.body))
        c.send(post("/db", json.dumps({"SQL": "SELECT 3"}).encode()))
        assert rows(c.read()) == [[3]]
        c.assert_open()
    with Conn(gateway.port) as c:
        c.send(get("/stats"))
        s = c.read()
        assert s.status == 200 and "total_requests" in s.json()
        c.send(get_db({"SQL": "SELECT 7"}))
        assert rows(c.read()) == [[7]]
    with Conn(gateway.port) as c:
        c.send(
            get_db({"SQL": "SELECT SLEEP(0.1) AS a"})
            + get("/health")
            + get_db({"SQL": "SELECT 8"})
            + get("/nowhere")
            + get_db({"SQL": "SELECT 9"})
        )
        assert rows(c.read()) == [[0]]
        assert c.read().json()["status"] == "ok"
        assert rows(c.read()) == [[8]]
        missing = c.read()
        assert missing.status == 404 and "ERROR" in missing.json()
        assert rows(c.read()) == [[9]]


def test_head_and_other_methods_go_to_twisted_web(gateway: Gateway) -> None:
    """HEAD /db is a 405 (it would run the SQL), headers only; PUT /db gets a JSON 405; the
    connection goes on."""
    with Conn(gateway.port) as c:
        c.send(f"HEAD /db?{q({'SQL': 'SELECT 1'})} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = c.read_head()
        assert head.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, POST" in head
        c.send(b"PUT /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}")
        r = c.read()
        assert r.status == 405 and "ERROR" in r.json()
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]


def test_post_db_and_dbform(gateway: Gateway) -> None:
    """POST /db with a JSON body; POST /dbform with a URL-encoded UTF-8 form (non-ASCII value
    intact); GET /dbform with the fields in the query string."""
    with Conn(gateway.port) as c:
        c.send(post("/db", json.dumps({"SQL": "SELECT 'é' AS e, 2 AS n"}).encode()))
        r = c.read()
        assert r.json()["RESULT"]["HEADER"] == ["e", "n"] and rows(r) == [["é", 2]]
        form = urllib.parse.urlencode({"SQL": "SELECT 'é' AS e"}).encode()
        assert b"%C3%A9" in form
        c.send(post("/dbform", form, "application/x-www-form-urlencoded"))
        assert rows(c.read()) == [["é"]]
        c.send(post("/dbform", form, "application/x-www-form-urlencoded; charset=UTF-8"))
        assert rows(c.read()) == [["é"]]
        c.send(get("/dbform?" + urllib.parse.urlencode({"SQL": "SELECT 'ü' AS u, 3"})))
        assert rows(c.read()) == [["ü", 3]]


def test_multipart_dbform_is_answered(gateway: Gateway) -> None:
    """POST /dbform as multipart/form-data (handed to twisted.web) is answered like the others."""
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="SQL"\r\n\r\n'
        f"SELECT 'mp' AS m\r\n--{boundary}--\r\n"
    ).encode()
    with Conn(gateway.port) as c:
        c.send(post("/dbform", body, f"multipart/form-data; boundary={boundary}"))
        assert rows(c.read()) == [["mp"]]
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]


def test_body_in_two_pieces(gateway: Gateway) -> None:
    """Headers first, the body a moment later: answered once, when the body is complete."""
    body = json.dumps({"SQL": "SELECT 'late' AS l"}).encode()
    head = post("/db", body)[: -len(body)]
    with Conn(gateway.port) as c:
        c.send(head + body[:5])
        time.sleep(0.2)
        c.assert_open(0.1)
        c.send(body[5:])
        assert rows(c.read()) == [["late"]]
        c.assert_open()
        # Head cut in the middle of a header line too.
        c.send(head[:20])
        time.sleep(0.1)
        c.send(head[20:] + body)
        assert rows(c.read()) == [["late"]]


def test_chunked_request_body(gateway: Gateway) -> None:
    """POST /db with ``Transfer-Encoding: chunked`` (handed to twisted.web) is answered, and the
    connection goes on."""
    body = json.dumps({"SQL": "SELECT 'chunked' AS c"}).encode()
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (4, body[:4], len(body) - 4, body[4:])
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]
        c.send(
            b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks
        )
        assert rows(c.read()) == [["chunked"]]
        c.send(get_db({"SQL": "SELECT 2"}))
        assert rows(c.read()) == [[2]]


def test_expect_100_continue(gateway: Gateway) -> None:
    """``Expect: 100-continue`` (handed to twisted.web): a 100 Continue, then the answer."""
    body = json.dumps({"SQL": "SELECT 100"}).encode()
    with Conn(gateway.port) as c:
        c.send(
            b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = c.read()
        assert interim.status == 100
        c.send(body)
        assert rows(c.read()) == [[100]]


@pytest.fixture(scope="module")
def limited(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with ``--max-request-bytes 4096`` and ``--max-in-flight 1``."""
    gw = Gateway(
        tmp_path_factory.mktemp("limited"),
        "--backend",
        mariadb.dsn(),
        "--max-request-bytes",
        "4096",
        "--max-in-flight",
        "1",
    ).start()
    yield gw
    gw.stop()


def test_query_string_over_the_limit_is_414(limited: Gateway) -> None:
    """A query string over --max-request-bytes gets a JSON 414 and the connection goes on; a
    request line too long to parse gets the same JSON 414, read whole before the close."""
    with Conn(limited.port) as c:
        c.send(get_db({"SQL": "SELECT '" + "x" * 5000 + "' AS x"}))
        r = c.read()
        assert r.status == 414 and r.header("Content-Type") == "application/json"
        assert "4096" in r.json()["ERROR"]
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]
    with Conn(limited.port) as c:
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]
        c.send(get_db({"SQL": "SELECT '" + "x" * 20000 + "' AS x"}))
        r = c.read()
        assert r.status == 414 and r.header("Content-Type") == "application/json"
        assert "4096" in r.json()["ERROR"] and r.header("Connection") == "close"
        c.assert_closed()


def test_body_over_the_limit_is_413(limited: Gateway) -> None:
    """A declared body over --max-request-bytes gets one JSON 413 (no reset, nothing after it)
    and the close, even when the client sent the body along."""
    with Conn(limited.port) as c:
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]
        c.send(
            b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000\r\n\r\n" + b"x" * 10000
        )
        r = c.read()
        assert r.status == 413 and r.header("Content-Type") == "application/json"
        assert "10000" in r.json()["ERROR"] and r.header("Connection") == "close"
        c.assert_closed()


def test_body_at_the_limit_is_served(limited: Gateway) -> None:
    """A body of exactly --max-request-bytes is read and run."""
    sql = json.dumps({"SQL": "SELECT 'edge' AS e"}).encode()
    with Conn(limited.port) as c:
        c.send(post("/db", sql + b" " * (4096 - len(sql))))
        assert rows(c.read()) == [["edge"]]


def test_in_flight_limit_on_the_fast_channel(limited: Gateway) -> None:
    """Past --max-in-flight a /db request gets a JSON 503 with Retry-After at once and its
    connection goes on; pipelined requests on one connection do not count against each other;
    a finished answer frees its place."""
    with Conn(limited.port) as busy, Conn(limited.port) as other:
        busy.send(get_db({"SQL": "SELECT SLEEP(0.5) AS s"}))
        time.sleep(0.15)
        started = time.monotonic()
        other.send(get_db({"SQL": "SELECT 1"}))
        r = other.read()
        assert time.monotonic() - started < 0.3
        assert r.status == 503 and r.header("Retry-After") == "1"
        assert r.header("Connection") is None and "too many requests" in r.json()["ERROR"]
        assert rows(busy.read()) == [[0]]
        other.send(b"".join(get_db({"SQL": f"SELECT {n}"}) for n in (1, 2, 3)))
        assert [rows(other.read()) for _ in range(3)] == [[[1]], [[2]], [[3]]]


def test_in_flight_limit_holds_for_percent_encoded_paths(limited: Gateway) -> None:
    """/%64b and /%64%62form are /db and /dbform to Klein: past --max-in-flight they get the
    503 too (they were let through while /db was refused)."""
    with Conn(limited.port) as busy, Conn(limited.port) as other:
        busy.send(get_db({"SQL": "SELECT SLEEP(0.5) AS s"}))
        time.sleep(0.15)
        for path in ("/%64b", "/%64%62", "/%64%62form"):
            other.send(get(f"{path}?{q({'SQL': 'SELECT 1'})}"))
            r = other.read()
            assert r.status == 503 and "too many requests" in r.json()["ERROR"], path
        assert rows(busy.read()) == [[0]]


def test_client_leaving_frees_its_in_flight_place(limited: Gateway) -> None:
    """A client that leaves before its answer does not keep its place in --max-in-flight."""
    with Conn(limited.port) as c:
        c.send(get_db({"SQL": "SELECT SLEEP(0.4)"}))
        time.sleep(0.1)
    time.sleep(0.1)
    with Conn(limited.port) as c:
        c.send(get_db({"SQL": "SELECT 'free'"}))
        assert rows(c.read()) == [["free"]]
    time.sleep(0.4)  # the abandoned statement ends before the next test


def test_draining_refuses_with_503_and_close(mariadb: MariaDB, gateway_factory: Any) -> None:
    """While the gateway drains (SIGTERM with a request in flight), a new request on a kept-alive
    connection gets a JSON 503 with Connection: close, then the close; the request in flight
    still gets its answer."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn())
    assert gw.proc is not None
    with Conn(gw.port) as idle, Conn(gw.port) as busy:
        idle.send(get_db({"SQL": "SELECT 1"}))
        assert rows(idle.read()) == [[1]]
        busy.send(get_db({"SQL": "SELECT SLEEP(0.8) AS s"}))
        time.sleep(0.2)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        idle.send(get_db({"SQL": "SELECT 2"}))
        r = idle.read()
        assert r.status == 503 and r.header("Retry-After") == "1"
        assert r.header("Connection") == "close" and "shutting down" in r.json()["ERROR"]
        idle.assert_closed()
        assert rows(busy.read()) == [[0]]


def test_fast_channel_turns_nagle_off() -> None:
    """The fast channel sets TCP_NODELAY, as twisted.web does: without it the last small write
    of a streamed answer waits for the client's delayed ACK, about 40 ms per answer."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from api.http import GatewaySite

    class Transport(StringTransport):
        no_delay = False

        def setTcpNoDelay(self, enabled: bool) -> None:
            self.no_delay = enabled

    site = GatewaySite(object(), 4096, Clock())
    site.fast_handlers = {b"/db": lambda request: b"{}"}
    channel = site.buildProtocol(None)
    transport = Transport()
    channel.makeConnection(transport)
    assert type(channel).__name__ == "FastChannel" and transport.no_delay is True
    channel.connectionLost()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /db HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /db?x HTTP/1.1\r\nno colon here\r\n\r\n",
    ],
    ids=["garbage", "version", "length", "header"],
)
def test_malformed_request_gets_json_400(gateway: Gateway, request_bytes: bytes) -> None:
    """A request twisted.web cannot parse gets a JSON 400 the client can read."""
    with Conn(gateway.port) as c:
        c.send(request_bytes)
        r = c.read()
        assert r.status == 400 and r.header("Content-Type") == "application/json"
        assert "ERROR" in r.json()
        c.assert_closed()


def test_malformed_request_after_fast_requests(gateway: Gateway) -> None:
    """A malformed request later on a kept-alive connection gets the same JSON 400."""
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]
        c.send(b"GARBAGE\r\n\r\n")
        r = c.read()
        assert r.status == 400 and "ERROR" in r.json()
        c.assert_closed()


def test_streamed_answer_is_chunked_on_http11(gateway: Gateway) -> None:
    """More than 1,000 rows stream as chunked transfer with X-Streamed; the JSON is whole and the
    connection serves the next request."""
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": STREAMED_SQL}))
        r = c.read()
        assert r.status == 200 and r.framing == "chunked"
        assert r.header("X-Streamed") == "true" and r.header("Content-Length") is None
        answer = r.json()
        assert answer["RESULT"]["HEADER"] == ["seq", "pad"]
        assert answer["RESULT"]["ROWS"] == STREAMED_ROWS and answer["SERVER"] == "db1"
        c.send(get_db({"SQL": "SELECT 2"}))
        assert rows(c.read()) == [[2]]
        # Pipelined behind a stream.
        c.send(get_db({"SQL": STREAMED_SQL}) + get_db({"SQL": "SELECT 3"}))
        streamed = c.read()
        assert streamed.framing == "chunked" and rows(streamed) == STREAMED_ROWS
        assert rows(c.read()) == [[3]]


def test_streamed_answer_is_close_delimited_on_http10(gateway: Gateway) -> None:
    """Over HTTP/1.0 (even asking keep-alive) a streamed answer has no length and no chunks: it
    ends with the connection, and is whole JSON."""
    for extra in ("", "Connection: keep-alive\r\n"):
        with Conn(gateway.port) as c:
            c.send(get_db({"SQL": STREAMED_SQL}, "HTTP/1.0", extra))
            r = c.read()
            assert r.version == "HTTP/1.0" and r.status == 200 and r.framing == "close"
            assert r.header("Transfer-Encoding") is None and r.header("Content-Length") is None
            assert r.header("X-Streamed") == "true" and r.header("Connection") == "close"
            assert r.json()["RESULT"]["ROWS"] == STREAMED_ROWS


def test_date_server_and_case_insensitive_headers(gateway: Gateway) -> None:
    """Answers carry Date and Server; client header names are case-insensitive."""
    body = json.dumps({"SQL": "SELECT 'ci' AS c"}).encode()
    with Conn(gateway.port) as c:
        c.send(
            b"POST /db HTTP/1.1\r\nhOsT: 127.0.0.1\r\ncontent-TYPE: application/json\r\n"
            b"content-LENGTH: %d\r\nCONNECTION: Keep-Alive\r\n\r\n%s" % (len(body), body)
        )
        r = c.read()
        assert rows(r) == [["ci"]]
        date = r.header("Date")
        assert date is not None and date.endswith(" GMT")
        assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 60
        server = r.header("Server")
        assert server is not None and server.startswith("TwistedWeb/")
        c.send(get_db({"SQL": "SELECT 1"}, headers="connection: CLOSE\r\n"))
        r = c.read()
        assert rows(r) == [[1]] and r.header("Connection") == "close"
        c.assert_closed()


def test_half_request_then_close_does_not_hurt(gateway: Gateway) -> None:
    """A client that sends part of a request (head or body) and leaves does not break the
    server: the next connection is served."""
    body = json.dumps({"SQL": "SELECT 1"}).encode()
    for partial in (
        get_db({"SQL": "SELECT 1"})[:15],
        post("/db", body)[:-5],
        get_db({"SQL": "SELECT SLEEP(0.2)"}),  # whole, but the client leaves before the answer
    ):
        with Conn(gateway.port) as c:
            c.send(partial)
            time.sleep(0.05)
    time.sleep(0.3)
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": "SELECT 'alive'"}))
        assert rows(c.read()) == [["alive"]]


def test_sql_error_is_200_and_bad_json_is_400(gateway: Gateway) -> None:
    """An SQL error answers 200 with MYSQL_ERRNO; a query string that is not JSON answers 400;
    the connection goes on after both."""
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": "SELECT nope"}))
        r = c.read()
        assert r.status == 200 and r.json()["MYSQL_ERRNO"] == 1054
        c.send(get("/db?%7Bnot-json"))
        r = c.read()
        assert r.status == 400 and r.header("Content-Type") == "application/json"
        assert "ERROR" in r.json()
        c.send(post("/db", b"{nope"))
        r = c.read()
        assert r.status == 400 and "ERROR" in r.json()
        c.send(get_db({"SQL": "SELECT 1"}))
        assert rows(c.read()) == [[1]]


def test_statistics_count_fast_requests(gateway: Gateway) -> None:
    """Every request the fast channel answers counts once in /stats total_requests."""
    before = total_requests(gateway)
    with Conn(gateway.port) as c:
        c.send(get_db({"SQL": "SELECT 1"}) + get_db({"SQL": "SELECT 2"}))
        c.read(), c.read()
        c.send(post("/db", b'{"SQL": "SELECT 3"}'))
        c.read()
        c.send(get("/dbform?SQL=SELECT+4"))
        c.read()
        c.send(get_db({"SQL": STREAMED_SQL}))  # streamed
        assert c.read().framing == "chunked"
        c.send(get("/db?%7Bbad"))  # a 400 is a request too
        assert c.read().status == 400
    assert total_requests(gateway) - before == 6


def test_idle_connections_are_closed(mariadb: MariaDB, gateway_factory: Any) -> None:
    """--idle-timeout: a keep-alive connection left idle is closed, on the fast channel and
    after a hand-over to twisted.web alike; a request that runs longer than the timeout is
    still answered."""
    gw = gateway_factory("--backend", mariadb.dsn(), "--idle-timeout", "1")
    with Conn(gw.port) as fast, Conn(gw.port) as web:
        fast.send(get_db({"SQL": "SELECT 1 AS n"}))
        assert rows(fast.read()) == [[1]]
        web.send(get("/health"))
        assert web.read().status == 200
        fast.send(get_db({"SQL": "SELECT SLEEP(2.5) AS s"}))  # longer than the idle timeout
        assert rows(fast.read()) == [[0]]
        started = time.monotonic()
        fast.assert_closed()
        assert time.monotonic() - started < 3.0
        web.assert_closed()
