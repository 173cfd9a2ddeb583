"""Time and memory bounds of the two HTTP channels (api/fastpath.py's FastChannel and
api/http.py's GatewayChannel), in process on an injected clock.

The transport is Twisted's own write buffer and producer logic (``FileDescriptor``) over a fake
socket whose receive window the test sets, so a client that does not read is exactly what
Twisted sees of one: pauses, resumes and buffered bytes.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import pytest
from twisted.internet import abstract
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from zope.interface import implementer

from api.fastpath import HIGH_WATER
from api.http import LINGER_SECONDS, BodyBudget, GatewaySite
from conf.settings import SettingError, Settings

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0
#: An answer bigger than the transport's 64 KiB high-water mark.
BIG = b"x" * 100_000
KIB = 1024


# ------------------------------------------------------------------------------- harness


class _Socket:
    """The kernel's side of a Wire: takes what fits the client's receive window."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def send(self, data: bytes) -> int:
        n = self.wire.writeSomeData(data)
        if n == 0:
            raise BlockingIOError
        return n


class Wire(abstract.FileDescriptor):
    """A server connection as Twisted's TCP transport buffers it, to a client that reads
    ``room`` bytes (``read()`` gives it more room and returns what it got)."""

    def __init__(self, reactor: Any, room: int = 1 << 40) -> None:
        super().__init__(reactor)
        self.connected = 1
        self.room = room
        self.received = bytearray()
        self.socket = _Socket(self)
        self.reading = True
        self.writing = False
        self.write_closed = False
        self.aborted = False
        self.lost = False
        self.inbox: list[bytes] = []
        self.protocol: Any = None

    # the fake kernel
    def writeSomeData(self, data: bytes) -> int:
        n = min(len(data), self.room)
        self.room -= n
        self.received += bytes(data[:n])
        return n

    def startReading(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startWriting(self) -> None:
        self.writing = True

    def stopWriting(self) -> None:
        self.writing = False

    def _closeWriteConnection(self) -> None:
        self.write_closed = True

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 50000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 9090)

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def abortConnection(self) -> None:
        self.aborted = True
        self.connectionLost(Failure(ConnectionDone("aborted")))

    def connectionLost(self, reason: Any) -> None:
        if self.lost:
            return
        self.lost = True
        super().connectionLost(reason)
        self.protocol.connectionLost(reason)

    # the test's side
    @property
    def buffered(self) -> int:
        """Bytes the transport holds for a client that has not read them."""
        return len(self.dataBuffer) - self.offset + self._tempDataLen

    def send(self, data: bytes) -> None:
        """The client sends: delivered while the server reads (else queued in the kernel)."""
        self.inbox.append(data)
        self.pump()

    def pump(self) -> None:
        """Run the reactor's part: write what fits, deliver queued bytes while reading."""
        for _ in range(100_000):
            progress = False
            if self.writing and not self.lost:
                before = self.buffered
                result = self.doWrite()
                if result is not None:
                    self.connectionLost(Failure(ConnectionDone()))
                progress = self.buffered != before or not self.writing
            if self.reading and self.inbox and not self.lost and not self.disconnecting:
                self.protocol.dataReceived(self.inbox.pop(0))
                progress = True
            if not progress:
                return

    def read(self, room: int = 1 << 40) -> bytes:
        """The client reads: the window opens by ``room`` and what arrived is returned."""
        self.room += room
        self.pump()
        data = bytes(self.received)
        self.received.clear()
        return data


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:200]!r})"


def parse(data: bytes) -> list[Answer]:
    """HTTP answers (Content-Length or chunked framing) in ``data``, all of them whole (1xx
    skipped)."""
    answers = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"an answer's head is cut: {head[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        if 100 <= status < 200:
            continue
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            assert len(data) >= length, "an answer's body is cut"
            body, data = data[:length], data[length:]
        else:
            assert headers.get("transfer-encoding") == "chunked", headers
            body = b""
            while True:
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line, 16)
                body, data = body + data[:size], data[size + 2 :]
                if size == 0:
                    break
        answers.append(Answer(status, headers, body))
    return answers


def _answer(request: Any, body: bytes) -> bytes:
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


@implementer(IPushProducer)
class Stream:
    """A streamed answer's producer (as api.stream.JsonStream): paused and resumed by the
    transport."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.paused = False
        self.resumed = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumed += 1

    def stopProducing(self) -> None:
        pass

    def end(self) -> None:
        self.request.write(b"tail")
        self.request.unregisterProducer()
        self.request.finish()


class App:
    """The /db handler of the fast channel and a twisted.web resource for everything else."""

    def __init__(self) -> None:
        self.streams: list[Stream] = []
        self.seen: list[bytes] = []

    def fast(self, request: Any) -> Any:
        self.seen.append(request.uri)
        if request.query.startswith(b"big"):
            return _answer(request, BIG)
        if request.query.startswith(b"stream"):
            stream = Stream(request)
            self.streams.append(stream)
            request.setHeader(b"Content-Type", b"application/json")
            request.registerProducer(stream, True)
            request.write(BIG)
            return Deferred()  # the test ends the stream
        return _answer(request, json.dumps({"length": len(request.body)}).encode())

    def resource(self) -> Resource:
        app = self

        class Echo(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                app.seen.append(request.uri)
                if request.path.startswith(b"/big"):
                    return _answer(request, BIG)
                content = request.content
                body = {"length": len(content.read()), "spooled": not isinstance(content, BytesIO)}
                return _answer(request, json.dumps(body).encode())

        return Echo()


class Server:
    """A site with the fast channel, on a fake clock."""

    def __init__(self, max_request_bytes: int = 4096, **settings: Any) -> None:
        self.clock = MemoryReactorClock()
        self.app = App()
        settings.setdefault("header_timeout", HEADER_TIMEOUT)
        settings.setdefault("body_timeout", BODY_TIMEOUT)
        self.site = GatewaySite(
            self.app.resource(), max_request_bytes, self.clock, timeout=IDLE_TIMEOUT, **settings
        )
        self.site.fast_handlers = {b"/db": self.app.fast}
        self.finished: list[Any] = []
        self.refused: list[tuple[int, str]] = []
        self.site.on_finished = self.finished.append
        self.site.on_refused = lambda channel, status, message: self.refused.append(
            (status, message)
        )

    def connect(self, room: int = 1 << 40, web: bool = False) -> Wire:
        """A new connection; ``web``: handed over to twisted.web by a first request."""
        wire = Wire(self.clock, room)
        channel = self.site.buildProtocol(wire.getPeer())
        wire.protocol = channel
        channel.makeConnection(wire)
        if web:
            wire.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert type(wire.protocol).__name__ == "GatewayChannel"
            assert [a.status for a in parse(wire.read())] == [200]
        return wire

    def advance(self, seconds: float, wire: Wire | None = None) -> None:
        self.clock.advance(seconds)
        if wire is not None:
            wire.pump()


def trickle(server: Server, wire: Wire, data: bytes, every: float, until: float) -> bytes:
    """Send ``data`` a byte every ``every`` seconds, until the clock reads ``until``; returns
    what was not sent."""
    while data and server.clock.seconds() + every <= until + 1e-9:
        wire.send(data[:1])
        data = data[1:]
        server.advance(every, wire)
    return data


def assert_408_and_close(server: Server, wire: Wire, what: str) -> None:
    (answer,) = parse(wire.read())
    assert answer.status == 408, answer
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    assert what in answer.json()["ERROR"], answer
    assert wire.write_closed or wire.lost
    server.advance(LINGER_SECONDS + 0.1, wire)
    assert wire.lost


POST_HEAD = b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
CHUNKED_HEAD = (
    b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# --------------------------------------------------------------------------- time bounds


@pytest.mark.parametrize("channel", ["fast", "web"])
def test_trickled_head_is_408_at_the_header_timeout(channel: str) -> None:
    """A head trickled a byte every 0.25 s gets 408 (JSON, Connection: close) when it has taken
    --header-timeout since its first byte, however steadily the bytes come; then the close."""
    server = Server()
    wire = server.connect(web=channel == "web")
    start = server.clock.seconds()
    head = b"GET /db?q HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + b"y" * 100 + b"\r\n\r\n"
    left = trickle(server, wire, head, 0.25, start + HEADER_TIMEOUT - 0.25)
    assert left and wire.read() == b"" and not wire.lost
    server.advance(0.25, wire)
    assert_408_and_close(server, wire, "10")
    assert server.refused == [(408, server.refused[0][1])]


@pytest.mark.parametrize("framing", ["fast-length", "web-length", "web-chunked"])
def test_trickled_body_is_408_at_the_body_timeout(framing: str) -> None:
    """A body trickled a byte a second gets 408 when it has taken --body-timeout since its
    head was complete (the head's own time does not count), on both channels, with a
    Content-Length or chunked."""
    server = Server()
    wire = server.connect(web=framing == "web-length")
    chunked = framing.endswith("chunked")
    head = CHUNKED_HEAD if chunked else POST_HEAD % 1000
    wire.send(head[:20])
    server.advance(8.0, wire)  # the head takes 8 s of its 10
    wire.send(head[20:])
    head_done = server.clock.seconds()
    body = b"".join(chunk(b"x") for _ in range(100)) if chunked else b"x" * 1000
    left = trickle(server, wire, body, 1.0, head_done + BODY_TIMEOUT - 1.0)
    assert left and wire.read() == b"" and not wire.lost
    server.advance(1.0, wire)
    assert_408_and_close(server, wire, "30")
    assert server.app.seen == ([b"/health"] if framing == "web-length" else [])


@pytest.mark.parametrize("channel", ["fast", "web"])
def test_requests_in_time_are_answered_and_idle_connections_stay(channel: str) -> None:
    """A head that takes 9 s and a body that takes 29 s are answered; between requests the
    head and body timers do not run (an idle keep-alive connection is closed by the idle
    timeout only, quietly)."""
    server = Server()
    wire = server.connect(web=channel == "web")
    wire.send(b"GET /db?q HTTP/1.1\r\n")
    server.advance(9.0, wire)
    wire.send(b"Host: 127.0.0.1\r\n\r\n")
    assert [a.status for a in parse(wire.read())] == [200]
    server.advance(IDLE_TIMEOUT - 1.0, wire)
    assert not wire.lost
    wire.send(POST_HEAD % 30)
    for _ in range(29):
        wire.send(b"x")
        server.advance(1.0, wire)
    assert wire.read() == b""
    wire.send(b"x")
    (answer,) = parse(wire.read())
    assert answer.status == 200 and answer.json()["length"] == 30
    server.advance(IDLE_TIMEOUT + 1.0, wire)
    assert wire.lost and wire.read() == b""
    assert server.refused == []


def test_a_timer_of_the_fast_channel_does_not_outlive_the_hand_over() -> None:
    """A head that the fast channel held for 8 s, then handed over to twisted.web, is answered
    there, and the fast channel's head timer does not fire on the connection afterwards."""
    server = Server()
    wire = server.connect()
    wire.send(b"GET /health HTTP/1.1\r\n")
    server.advance(8.0, wire)
    wire.send(b"Host: 127.0.0.1\r\n\r\n")
    assert [a.status for a in parse(wire.read())] == [200]
    server.advance(5.0, wire)
    assert wire.read() == b"" and not wire.lost
    assert server.site.body_budget.held == 0


# ------------------------------------------------------------------------- chunk limits


@pytest.mark.parametrize(
    "size_line",
    [b"ffffffffffffffffffffffffffffffff", b"1001", b"1001;ext=1"],
    ids=["huge", "limit-plus-one", "with-extension"],
)
def test_chunk_size_over_the_limit_is_413_at_once(size_line: bytes) -> None:
    """A chunk-size line larger than --max-request-bytes gets a JSON 413 as soon as the line is
    read (not after its data), and nothing after it is read or run."""
    server = Server(max_request_bytes=4096)
    wire = server.connect()
    wire.send(CHUNKED_HEAD + size_line + b"\r\n")
    (answer,) = parse(wire.read())
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert "4096" in answer.json()["ERROR"]
    wire.send(b"x" * 10_000)
    assert wire.read() == b"" and server.app.seen == []
    server.advance(LINGER_SECONDS + 0.1, wire)
    assert wire.lost


def test_chunks_are_counted_against_the_limit_as_they_arrive() -> None:
    """Two 2 KiB chunks fill a 4 KiB limit exactly and are served; a third chunk's size line
    that would pass the limit gets 413 at once, before its data."""
    server = Server(max_request_bytes=4096)
    wire = server.connect()
    wire.send(CHUNKED_HEAD + chunk(b"a" * 2048) + chunk(b"b" * 2048) + b"0\r\n\r\n")
    (answer,) = parse(wire.read())
    assert answer.status == 200 and answer.json()["length"] == 4096
    wire.send(CHUNKED_HEAD + chunk(b"a" * 2048) + chunk(b"b" * 2000))
    assert wire.read() == b""
    wire.send(b"31\r\n")  # 49 bytes more: 4097 in all
    (answer,) = parse(wire.read())
    assert answer.status == 413 and "4096" in answer.json()["ERROR"]
    assert server.app.seen == [b"/db"]


@pytest.mark.parametrize("size_line", [b"zz", b"-1", b"1 2", b""], ids=repr)
def test_malformed_chunk_size_is_400(size_line: bytes) -> None:
    """A chunk-size line that is not a hexadecimal number gets a JSON 400 and the close."""
    server = Server()
    wire = server.connect()
    wire.send(CHUNKED_HEAD + size_line + b"\r\nxx\r\n")
    (answer,) = parse(wire.read())
    assert answer.status == 400 and "ERROR" in answer.json()
    assert answer.headers["connection"] == "close" and server.app.seen == []


# ------------------------------------------------------------------------- body memory


@pytest.mark.parametrize("framing", ["fast-length", "web-length", "web-chunked"])
def test_body_memory_budget_refuses_with_503(framing: str) -> None:
    """Bytes of unfinished requests past a connection's first 16 KiB come out of the worker's
    --max-body-memory: a request that would pass it gets a JSON 503 with Retry-After and the
    close, the others go on, and a finished request gives its share back."""
    server = Server(max_request_bytes=1 << 20, body_budget=BodyBudget(64 * KIB))
    web = framing.startswith("web")

    def upload(wire: Wire, total: int, first: int) -> bytes:
        body = b"z" * total
        if framing.endswith("chunked"):
            data = CHUNKED_HEAD + chunk(body) + b"0\r\n\r\n"
        else:
            data = POST_HEAD % total + body
        wire.send(data[:first])
        return data[first:]

    a = server.connect(web=web)
    rest_a = upload(a, 200_000, 60_000)
    b = server.connect(web=web)
    upload(b, 200_000, 45_000)
    (refused,) = parse(b.read())
    assert refused.status == 503 and refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"
    assert "memory" in refused.json()["ERROR"]
    server.advance(LINGER_SECONDS + 0.1, b)
    assert b.lost
    assert a.read() == b"" and not a.lost
    a.send(rest_a)
    (answer,) = parse(a.read())
    assert answer.status == 200 and answer.json()["length"] == 200_000
    assert server.site.body_budget.held == 0
    c = server.connect(web=web)
    rest_c = upload(c, 200_000, 60_000)
    assert c.read() == b""
    c.send(rest_c)
    assert parse(c.read())[0].json()["length"] == 200_000


def test_small_unfinished_requests_do_not_touch_the_budget() -> None:
    """Each connection may hold 16 KiB of an unfinished request outside the budget: with the
    budget taken, a head and a small body sent in pieces are still served."""
    server = Server(max_request_bytes=1 << 20, body_budget=BodyBudget(64 * KIB))
    big = server.connect()
    big.send(POST_HEAD % 500_000 + b"z" * 80_000)
    assert server.site.body_budget.held > 60 * KIB
    small = server.connect()
    small.send(POST_HEAD % 8000 + b"z" * 4000)
    small.send(b"z" * 4000)
    assert parse(small.read())[0].json()["length"] == 8000
    big.connectionLost(Failure(ConnectionDone()))
    assert server.site.body_budget.held == 0


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_bodies_are_never_spooled_to_disk(framing: str) -> None:
    """twisted.web spools a body over 100 kB to a temporary file; here every body stays in
    memory, within the limits above."""
    server = Server(max_request_bytes=1 << 20)
    wire = server.connect(web=True)
    body = b"q" * 300_000
    if framing == "chunked":
        wire.send(CHUNKED_HEAD + chunk(body) + b"0\r\n\r\n")
    else:
        wire.send(POST_HEAD % len(body) + body)
    (answer,) = parse(wire.read())
    assert answer.json() == {"length": 300_000, "spooled": False}


# ----------------------------------------------------------------- answers and draining


@pytest.mark.parametrize("channel", ["fast", "web"])
def test_pipelined_answers_wait_for_a_client_that_does_not_read(channel: str) -> None:
    """150 pipelined requests for 100 KB answers from a client that reads nothing: the channel
    answers one, stops reading, and the transport holds that answer; each further answer is
    made once the transport holds less than its 64 KiB mark of the previous ones, all 150 in
    order as the client reads."""
    server = Server()
    wire = server.connect(web=channel == "web")
    before = len(server.finished)
    path = b"/db?big" if channel == "fast" else b"/big"
    wire.room = 0
    wire.send(
        b"".join(b"GET %s%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (path, n) for n in range(150))
    )
    assert len(server.finished) - before == 1
    assert wire.buffered <= len(BIG) + 1024 and not wire.reading
    answers: list[Answer] = []
    data = b""
    for _ in range(200):
        data += wire.read(1 << 20)
        assert wire.buffered <= HIGH_WATER + len(BIG) + 1024
        if len(server.finished) - before == 150 and not wire.buffered:
            break
    answers = parse(data)
    assert [a.status for a in answers] == [200] * 150
    assert all(a.body == BIG for a in answers)
    assert server.app.seen[-150:] == [b"%s%d" % (path, n) for n in range(150)]
    assert wire.reading


def test_many_pipelined_quick_answers_are_all_given() -> None:
    """1,000 pipelined requests answered at once (no database wait) in one read: all answered
    in order, without one nested call per request."""
    server = Server()
    wire = server.connect()
    wire.send(b"".join(b"GET /db?q%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n for n in range(1000)))
    answers = parse(wire.read())
    assert [a.status for a in answers] == [200] * 1000
    assert server.app.seen == [b"/db?q%d" % n for n in range(1000)]


def test_a_streamed_answer_and_the_pipeline_share_the_transport() -> None:
    """A streamed answer (its own producer, registered through the request) is paused and
    resumed by the transport; the request pipelined behind it waits until the stream is done
    and the client has read it; nothing conflicts over the transport's producer."""
    server = Server()
    wire = server.connect(room=0)
    wire.send(
        b"GET /db?stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /db?big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    (stream,) = server.app.streams
    assert stream.paused and server.app.seen == [b"/db?stream"]
    data = wire.read(1 << 20)
    assert not stream.paused and stream.resumed == 1
    stream.end()
    data += wire.read(1 << 20)
    assert server.app.seen == [b"/db?stream", b"/db?big"]
    stream_answer, big = parse(data)
    assert stream_answer.body == BIG + b"tail" and big.body == BIG


@pytest.mark.parametrize("channel", ["fast", "web"])
def test_a_client_that_never_reads_is_cut_after_the_idle_timeout(channel: str) -> None:
    """A client that stops reading holds its connection for the idle timeout, then a grace
    period for the answer to leave; then the connection is aborted, not kept for ever."""
    server = Server()
    wire = server.connect(web=channel == "web")
    wire.room = 0
    wire.send(
        b"GET /db?big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        if channel == "fast"
        else b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert wire.buffered > 0
    server.advance(IDLE_TIMEOUT + 1, wire)
    assert not wire.lost
    server.advance(20.0, wire)
    assert wire.lost and wire.aborted


# ----------------------------------------------------------------------------- settings


def test_settings_defaults_and_checks() -> None:
    """The bounds' settings: 10 s for a head, 60 s for a body, 64 MiB of bodies per worker, which
    must hold at least one body of --max-request-bytes."""
    s = Settings()
    assert (s.header_timeout, s.body_timeout, s.max_body_memory) == (10.0, 60.0, 64 << 20)
    with pytest.raises(SettingError) as info:
        Settings(max_request_bytes=2 << 20, max_body_memory=1 << 20)
    assert info.value.setting == "max_body_memory" and "max_request_bytes" in str(info.value)
    with pytest.raises(SettingError):
        Settings(header_timeout=0)
