"""The hot path's HTTP: a lean HTTP/1.1 channel for ``/db`` and ``/dbform``.

twisted.web's request machinery (a Request object with dozens of attributes, a ``getsockname``
system call per request, resource traversal, header objects) cost more than everything else a
``/db`` request does. This channel parses the common request shape itself and calls the
gateway's handlers with a :class:`FastRequest`, the small part of twisted.web's Request they
use. Anything else, it hands to twisted.web: the first request on a connection that is not a
plain ``GET``/``POST`` of ``/db`` or ``/dbform`` (another path or method, a chunked or
``Expect: 100-continue`` body, a multipart form, an over-long or malformed request, a repeated
``Content-Length``...) turns the connection over to a :class:`api.http.GatewayChannel`, which
gets the bytes from that request on and serves the rest of the connection (admin routes,
the console, the JSON 413/414/400 refusals). The switch happens between requests, so each
request is answered whole by one parser; twisted.web stays the reference for every case this
parser does not take.

Written by hand because the switch needs the exact byte where a request starts, which the
parser libraries (httptools, h11) do not give, and because the shape it accepts is small:
a request line, header lines, and a ``Content-Length`` body.

What a request gets here is what twisted.web gives it: keep-alive (HTTP/1.1 by default,
HTTP/1.0 with ``Connection: keep-alive``), pipelined requests answered in order, chunked
transfer for answers of unknown length (streamed rows), flow control through the transport's
producer, the site's draining and in-flight limits, an idle timeout, and the site's finish hook
(statistics, access log).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, datetimeToString, parse_qs
from twisted.web.server import version as SERVER_VERSION

log = Logger()

#: Methods the fast channel answers; any other goes to twisted.web (HEAD, PUT, OPTIONS...).
FAST_METHODS = frozenset({b"GET", b"POST"})
#: Headers whose presence sends a request to twisted.web, which implements them.
HAND_OVER_HEADERS = frozenset({b"transfer-encoding", b"expect"})
#: Bytes of unanswered pipelined requests past which the channel stops reading the socket.
MAX_BUFFERED = 1 << 20

#: Transport attributes the direct write relies on (twisted.internet.abstract.FileDescriptor).
_DIRECT_WRITE_NEEDS = ("socket", "dataBuffer", "offset", "_tempDataLen", "disconnecting")
_INTERNAL_ERROR = b'{"ERROR":"internal error in the gateway; it was logged"}'
_STATUS_LINES: dict[tuple[bytes, int], bytes] = {}


def status_line(version: bytes, code: int) -> bytes:
    key = (version, code)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"%s %d %s\r\n" % (version, code, RESPONSES.get(code, b"Unknown Status"))
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[key] = line
    return line


class DateHeader:
    """The ``Date`` header, formatted once per second."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.second = -1
        self.header = b""

    def __call__(self) -> bytes:
        now = int(self.clock.seconds())
        if now != self.second:
            self.second = now
            self.header = b"Date: " + datetimeToString(now) + b"\r\n"
        return self.header


class FastRequest:
    """One request the fast channel parsed: the part of twisted.web's ``Request`` the
    gateway's handlers, the row stream and the request recorder use."""

    # Defaults the handlers may set (as on api.http.GatewayRequest).
    body_too_large = False
    #: Counted in the site's requests in flight (refused requests are not).
    counted = False
    error_message: str | None = None
    sql_error = False
    #: The parsed DBSlayer request (its SQL facts, once read, give the statement kinds).
    dbslayer_request: Any = None

    def __init__(
        self,
        channel: FastChannel,
        method: bytes,
        uri: bytes,
        path: bytes,
        query: bytes,
        clientproto: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        persistent: bool,
        started: float,
    ) -> None:
        self.channel = channel
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.clientproto = clientproto
        self.received_headers = headers
        self.body = body
        self.persistent = persistent
        self.started = started
        self.code = 200
        self.sentLength = 0
        self.finished = False
        self._disconnected = False
        self.headers_sent = False
        self.chunked = False
        self.response_headers: dict[bytes, tuple[bytes, bytes]] = {}
        self._notify: list[Deferred[None]] | None = None
        self._args: dict[bytes, list[bytes]] | None = None
        self._content: BytesIO | None = None

    # ------------------------------------------------------------ what was asked

    def getHeader(self, name: bytes) -> bytes | None:
        return self.received_headers.get(name.lower())

    @property
    def content(self) -> BytesIO:
        if self._content is None:
            self._content = BytesIO(self.body)
        return self._content

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        """Query string arguments, and a URL-encoded form body's (as twisted.web's)."""
        if self._args is None:
            args = parse_qs(self.query, 1)
            if self.method == b"POST" and self.body and _is_urlencoded_form(self):
                args.update(parse_qs(self.body, 1))
            self._args = args
        return self._args

    def getClientAddress(self) -> Any:
        return self.channel.peer

    # ------------------------------------------------------------------ answering

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.response_headers[name.lower()] = (name, value)

    def write(self, data: bytes) -> None:
        if self.finished or self._disconnected:
            return
        send = self.channel.send
        if not self.headers_sent:
            head = self._head()
            if self.chunked:
                send(head + b"%x\r\n" % len(data) + data + b"\r\n" if data else head)
            else:
                send(head + data)
        elif not data:
            return
        elif self.chunked:
            send(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            send(data)
        self.sentLength += len(data)

    def _head(self) -> bytes:
        self.headers_sent = True
        headers = self.response_headers
        lines = [status_line(self.clientproto, self.code), self.channel.date(), SERVER_HEADER]
        if b"content-length" not in headers:
            if self.clientproto == b"HTTP/1.1":
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.persistent = False  # the end of the answer is the end of the connection
        connection = headers.get(b"connection")
        if connection is not None and connection[1].lower() == b"close":
            self.persistent = False
        elif not self.persistent:
            lines.append(b"Connection: close\r\n")
        elif self.clientproto == b"HTTP/1.0":
            lines.append(b"Connection: keep-alive\r\n")
        for name, value in headers.values():
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        return b"".join(lines)

    def finish(self) -> None:
        if self.finished or self._disconnected:
            return
        if not self.headers_sent:
            self.response_headers.setdefault(b"content-length", (b"Content-Length", b"0"))
            self.write(b"")
        if self.chunked:
            self.channel.send(b"0\r\n\r\n")
        self.finished = True
        notify, self._notify = self._notify, None
        if notify:
            for d in notify:
                d.callback(None)
        self.channel.request_done(self)

    def notifyFinish(self) -> Deferred[None]:
        """Fires when the answer is finished; fails if the client goes away first."""
        d: Deferred[None] = Deferred()
        if self.finished:
            d.callback(None)
        elif self._disconnected:
            d.errback(Failure(ConnectionDone("the client closed the connection")))
        else:
            if self._notify is None:
                self._notify = []
            self._notify.append(d)
        return d

    def connection_lost(self, reason: Failure) -> None:
        self._disconnected = True
        notify, self._notify = self._notify, None
        for d in notify or ():
            d.errback(reason)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.channel.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.channel.transport.unregisterProducer()


SERVER_HEADER = b"Server: " + SERVER_VERSION + b"\r\n"


def _is_urlencoded_form(request: FastRequest) -> bool:
    ctype = request.received_headers.get(b"content-type", b"")
    return ctype.split(b";", 1)[0].strip().lower() == b"application/x-www-form-urlencoded"


class FastChannel(Protocol):
    """One client connection on the fast path (see the module's docstring)."""

    transport: Any  # a TCP transport (twisted.internet.tcp.Server)
    send: Any  # write an answer's bytes (see connectionMade)

    def __init__(self, site: Any, handlers: dict[bytes, Any], addr: Any) -> None:
        self.site = site
        self.handlers = handlers
        self.peer = addr
        self.date: DateHeader = site.date_header
        #: The longest request head this channel parses; a longer one goes to twisted.web,
        #: which refuses it with its JSON 414.
        self.max_head = site.max_request_bytes + 8192
        self.buffer = b""
        self.current: FastRequest | None = None
        self.paused = False
        self.closing = False
        self.handed_over = False
        self.last_active = 0.0
        self._idle: Any = None

    def connectionMade(self) -> None:
        transport = self.transport
        # As twisted.web does: a streamed answer's last small write must not wait for the
        # client's delayed ACK (Nagle's algorithm), which costs about 40 ms.
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        if all(hasattr(transport, a) for a in _DIRECT_WRITE_NEEDS):
            self.send = self._send_now
        else:
            self.send = transport.write
        self.last_active = self.site.clock.seconds()
        timeout = self.site.timeOut
        if timeout:
            self._idle = self.site.clock.callLater(timeout, self._check_idle)

    def _send_now(self, data: bytes) -> None:
        """Write to the socket at once when nothing is queued before it, else queue.

        The transport's own write() always queues and writes on the next reactor turn, which
        costs two epoll_ctl system calls and a loop iteration per answer; an answer that fits
        the socket's buffer (nearly all) leaves at once here, and the rest is queued."""
        t: Any = self.transport
        if t._tempDataLen or len(t.dataBuffer) != t.offset or not t.connected or t.disconnecting:
            t.write(data)
            return
        try:
            sent = t.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            t.write(data)  # the transport sees the error and closes the connection
            return
        if sent < len(data):
            t.write(data[sent:])

    def _check_idle(self) -> None:
        timeout = self.site.timeOut
        idle_for = self.site.clock.seconds() - self.last_active
        if self.current is None and idle_for >= timeout:
            self._idle = None
            self.transport.loseConnection()
            return
        self._idle = self.site.clock.callLater(max(timeout - idle_for, 1.0), self._check_idle)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer = self.buffer + data if self.buffer else data
        if self.current is None:
            self.next_request()
        elif len(self.buffer) > MAX_BUFFERED and not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def next_request(self) -> None:
        """Parse and answer the buffered requests, one at a time."""
        while self.current is None and self.buffer and not self.closing:
            buf = self.buffer
            end = buf.find(b"\r\n\r\n", 0, self.max_head + 4)
            if end < 0:
                if len(buf) > self.max_head:
                    self.hand_over()
                return
            head = buf[:end].split(b"\r\n")
            parts = head[0].split(b" ")
            if len(parts) != 3:
                self.hand_over()
                return
            method, uri, version = parts
            path, _, query = uri.partition(b"?")
            handler = self.handlers.get(path)
            if (
                handler is None
                or method not in FAST_METHODS
                or version not in (b"HTTP/1.1", b"HTTP/1.0")
            ):
                self.hand_over()
                return
            headers = _parse_headers(head)
            if headers is None:
                self.hand_over()
                return
            length = 0
            declared = headers.get(b"content-length")
            if declared is not None:
                if not declared.isdigit() or int(declared) > self.site.max_request_bytes:
                    self.hand_over()  # refused there, with its JSON 400 or 413
                    return
                length = int(declared)
            if (
                method == b"POST"
                and path == b"/dbform"
                and headers.get(b"content-type", b"").lower().startswith(b"multipart/")
            ):
                self.hand_over()
                return
            start = end + 4
            if len(buf) < start + length:
                return  # the body is still coming
            body = buf[start : start + length]
            self.buffer = buf[start + length :]
            connection = headers.get(b"connection", b"").lower()
            if version == b"HTTP/1.1":
                persistent = b"close" not in connection
            else:
                persistent = b"keep-alive" in connection
            request = FastRequest(
                self,
                method,
                uri,
                path,
                query,
                version,
                headers,
                body,
                persistent,
                self.site.clock.seconds(),
            )
            self.current = request
            self._process(request, handler)

    def _process(self, request: FastRequest, handler: Any) -> None:
        site = self.site
        refusal = site.admission(request.path)
        if refusal is not None:
            site.refuse(request, *refusal)
            return
        site.admit(request)
        dispatch(handler, request)

    def request_done(self, request: FastRequest) -> None:
        """The answer to ``request`` is written: go on with the connection."""
        site = self.site
        self.current = None
        self.last_active = site.clock.seconds()
        site.request_finished(request)
        if not request.persistent:
            self.closing = True
            self.transport.loseConnection()
            return
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()
        if self.buffer:
            self.next_request()

    def hand_over(self) -> None:
        """Give the rest of this connection, from the buffered request on, to twisted.web."""
        self.handed_over = True
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        channel = self.site.web_channel(self.peer)
        transport = self.transport
        transport.protocol = channel
        channel.makeConnection(transport)
        if self.paused:
            self.paused = False
            transport.resumeProducing()
        data, self.buffer = self.buffer, b""
        if data:
            channel.dataReceived(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        request, self.current = self.current, None
        if request is not None and not request.finished:
            request.connection_lost(reason)
            self.site.request_abandoned(request)


def _parse_headers(head: list[bytes]) -> dict[bytes, bytes] | None:
    """Header lines to a dict of lower-case names; None for anything this parser leaves to
    twisted.web (folded or malformed lines, repeated names, bodies it does not read)."""
    headers: dict[bytes, bytes] = {}
    for line in head[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in b" \t" or line[:1] in b" \t":
            return None
        key = name.lower()
        if key in headers or key in HAND_OVER_HEADERS:
            return None
        headers[key] = value.strip(b" \t")
    return headers


def dispatch(handler: Any, request: Any) -> Any:
    """Call a route handler and see its answer written: bytes at once, a Deferred when it
    fires (``None`` from it: the handler streamed the answer itself). Returns the bytes, or
    ``None`` while the answer is pending (twisted.web's NOT_DONE_YET)."""
    try:
        result = handler(request)
    except Exception:
        log.failure("unexpected error while answering {path!r}", path=request.path)
        request.setResponseCode(500)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(_INTERNAL_ERROR))
        request.write(_INTERNAL_ERROR)
        request.finish()
        return None
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
        return None
    result.addCallback(_write_answer, request)
    result.addErrback(_write_failure, request)
    return None


def _write_answer(body: bytes | None, request: Any) -> None:
    if body is None or request.finished or request._disconnected:
        return  # streamed already, or the client went away
    request.write(body)
    request.finish()


def _write_failure(failure: Failure, request: Any) -> None:
    log.failure("unexpected error while answering", failure)
    if not (request.finished or request._disconnected):
        if getattr(request, "headers_sent", False) or getattr(request, "startedWriting", False):
            request.finish()  # cut short; nothing better can be said mid-answer
            return
        request.setResponseCode(500)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(_INTERNAL_ERROR))
        request.write(_INTERNAL_ERROR)
        request.finish()
