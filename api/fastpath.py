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

One set of rules: the channel takes only heads twisted.web takes, and reads them as it does
(the same method, target, version, headers and body framing: :data:`_HEAD`,
:func:`content_length`), so the two can never frame a byte stream differently (a
``Transfer-Encoding\x0b: chunked`` header once made a body run as a second request here).
Everything else goes to twisted.web, which answers it (its JSON 400 for a bare CR or LF, a NUL,
a control or a space in a header name, more than 500 headers...); a head still arriving goes
there as soon as its lines so far rule it out. tests/integration/test_http_differential.py holds the two
to it. Where twisted.web's own rules left a client waiting or dropped it (a bare-LF head, a
Content-Length too long for ``int()``, a half-close), api.http.GatewayChannel overrides them
and this channel does the same; the keep-alive rule (:func:`keeps_alive`) is this channel's,
and the GatewayChannel's too.

Written by hand because the switch needs the exact byte where a request starts, which the
parser libraries (httptools, h11) do not give, and because the shape it accepts is small:
a request line, header lines, and a ``Content-Length`` body.

What a request gets here is what twisted.web gives it: keep-alive (HTTP/1.1 by default,
HTTP/1.0 with ``Connection: keep-alive``), answers after a half-close (``shutdown(SHUT_WR)``,
see :class:`PeerCheck`), pipelined requests answered in order, chunked
transfer for answers of unknown length (streamed rows), flow control through the transport's
producer, the site's draining and in-flight limits, an idle timeout, and the site's finish hook
(statistics, access log).

Under ``--compat original`` (the site's ``compat``), for clients written against the C
original, both channels answer as it did: ``Connection: close`` after every answer, never a
chunk (an answer of unknown length ends with the connection), 200 for a refused request with
its ERROR body (:func:`compat_status`), JSON labelled ``text/plain`` (:func:`compat_type`),
and no 100-continue probe.
"""

from __future__ import annotations

import re
import socket
from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel, datetimeToString, parse_qs
from twisted.web.server import version as SERVER_VERSION
from zope.interface import implementer

from gateway.results import error_body

log = Logger()

#: Methods the fast channel answers; any other goes to twisted.web (HEAD, PUT, OPTIONS...).
FAST_METHODS = frozenset({b"GET", b"POST"})
#: Headers whose presence sends a request to twisted.web, which implements them.
HAND_OVER_HEADERS = frozenset({b"transfer-encoding", b"expect"})
#: twisted.web answers 400 to a request with more header lines than this.
MAX_HEADERS = HTTPChannel.maxHeaders
#: The request heads this channel takes: twisted.web's rules (twisted.web.http's
#: _parseRequestLine and HTTPChannel.headerReceived, Twisted 26), narrowed to the fast shape,
#: so that each head taken here is one twisted.web takes and reads alike, and any other goes
#: to twisted.web, which answers it (its JSON 400, for most):
#:
#: - the request line: method, target and version separated by single spaces; the method GET
#:   or POST; a target of bytes 0x21 to 0xB0 (twisted.web refuses ``c <= 32 or c > 176``);
#:   HTTP/1.0 or HTTP/1.1;
#: - each header line: a token name (RFC 9110's tchar, so no space, control or separator:
#:   neither whitespace before the colon nor an obs-fold line, which starts with SP or HT),
#:   a colon, and a value without NUL, CR or LF;
#: - CR LF at the end of every line: the head ends at the first CR LF CR LF, and no bare CR
#:   or LF fits the lines above.
#:
#: Possessive quantifiers, so a head that does not match fails in linear time.
_HEAD = re.compile(
    rb"(GET|POST) ([\x21-\xb0]++) (HTTP/1\.[01])"
    rb"((?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[^\r\n\x00]*+)*+)"
)
#: What twisted.web's reading of a POST body's Content-Type (email.message) takes for a
#: line break and refuses: a POST with a body and one of these in its Content-Type gets 400.
CONTENT_TYPE_BREAK = re.compile(rb"[\x0b\x0c\x1c-\x1e\x85]")
#: The Content-Types of a POST body this channel takes: ``type/subtype`` tokens and any
#: parameters (without CONTENT_TYPE_BREAK), of which twisted.web's reading (the email
#: package's) and :func:`_is_urlencoded_form` find the same type. twisted.web reads a form
#: body into the arguments when it finds application/x-www-form-urlencoded (as this channel
#: does) and parses multipart/form-data (not done here: handed over).
_CONTENT_TYPE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]++/[!#$%&'*+\-.^_`|~0-9A-Za-z]++"
    rb"(?:[ \t]*+;[^\x0b\x0c\x1c-\x1e\x85]*+)?+"
)
#: A Content-Length of more significant digits than this reads as TOO_LONG.
_MAX_LENGTH_DIGITS = 18
#: A length over every limit: what a Content-Length too long for int() reads as.
TOO_LONG = 10**_MAX_LENGTH_DIGITS
#: Bytes of pipelined requests read ahead of the one being answered, past which the channel
#: stops reading the socket (twisted.web stops at 16 KiB).
MAX_BUFFERED = 64 * 1024
#: The next pipelined request is answered only once the transport holds less than this of the
#: answers before it (its own mark: past it, it pauses its producer); a client that does not
#: read holds one answer in the gateway, not one per request it sent.
HIGH_WATER = 64 * 1024
#: Bytes of a request still arriving that a connection holds outside the worker's budget for
#: them (api.http.BodyBudget): a head and a small body never wait for the budget.
FREE_REQUEST_BYTES = 16 * 1024
#: After refusing a request, the channel reads and drops what the client still sends for this
#: long before closing (a "lingering close"), so the client reads the answer, not a reset.
LINGER_SECONDS = 2.0
#: The idle timeout closes a connection once its last answer is sent; a client that does not
#: read it has this long more, then the connection is aborted (twisted.web's abortTimeout).
ABORT_SECONDS = 15.0

#: Transport attributes the direct write relies on (twisted.internet.abstract.FileDescriptor).
_DIRECT_WRITE_NEEDS = ("socket", "dataBuffer", "offset", "_tempDataLen", "disconnecting")
#: The message of an answer the gateway could not make (a bug: the traceback is logged).
INTERNAL_ERROR = "internal error in the gateway; it was logged"
_INTERNAL_ERROR = error_body(INTERNAL_ERROR)
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
    #: The producer of a streamed answer, while it is registered with the transport.
    _producer: Any = None

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
        code = self.code
        compat = getattr(self.channel.site, "compat", False)
        if compat:  # --compat original: answered as the original did (see compat_status)
            code = compat_status(code, self.method, self.error_message is not None)
            ctype = headers.get(b"content-type")
            if ctype is not None:
                headers[b"content-type"] = (ctype[0], compat_type(ctype[1]))
            self.persistent = False
        lines = [status_line(self.clientproto, code), self.channel.date(), SERVER_HEADER]
        if b"content-length" not in headers:
            if self.clientproto == b"HTTP/1.1" and not compat:
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
        if self._producer is not None:
            self.unregisterProducer()  # (an answer cut short by an error keeps it otherwise)
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
        """A streamed answer's producer, paused and resumed by the transport itself. The
        channel registers itself there only between answers (FastChannel.resumeProducing),
        so the two never overlap."""
        self._producer = producer
        self.channel.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self._producer is not None:
            self._producer = None
            self.channel.transport.unregisterProducer()


SERVER_HEADER = b"Server: " + SERVER_VERSION + b"\r\n"


def _is_urlencoded_form(request: FastRequest) -> bool:
    ctype = request.received_headers.get(b"content-type", b"")
    return ctype.split(b";", 1)[0].strip().lower() == b"application/x-www-form-urlencoded"


@implementer(IHalfCloseableProtocol, IPushProducer)
class FastChannel(Protocol):
    """One client connection on the fast path (see the module's docstring).

    Its bounds: an answer is followed by the next pipelined one only once the transport holds
    less than :data:`HIGH_WATER` of it (the channel, registered as the transport's producer
    meanwhile, stops reading and is resumed when it has drained); a request's head must arrive
    within the site's ``header_timeout`` from its first byte and its body within
    ``body_timeout`` from the head's end, however the bytes trickle in (else a JSON 408 and
    the close); the bytes of a request still arriving count against the site's body budget
    past :data:`FREE_REQUEST_BYTES` (else a JSON 503 with ``Retry-After``)."""

    #: The client half-closed: no request comes after those buffered.
    read_closed = False

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
        #: The transport's bytes are written straight to its socket (see connectionMade).
        self._direct = False
        #: Inside next_request: an answer given at once lets its loop go on (no recursion).
        self._parsing = False
        #: Registered with the transport until it drains the last answer (see request_done).
        self._waiting = False
        #: What of a request still arriving the channel waits for ("head" or "body"), the
        #: timer that refuses it with 408, and the bytes of it the budget counts.
        self._phase: str | None = None
        self._deadline: Any = None
        self._scanned = 0
        self._share = 0
        #: Closes the connection after a refusal, or when an idle close does not finish.
        self._closer: Any = None
        #: The buffered request's head once read (its end and parts), while its body arrives;
        #: and how far a head still arriving has been looked at.
        self._head: tuple[int, tuple[Any, ...]] | None = None
        self._head_scanned = 0

    def connectionMade(self) -> None:
        transport = self.transport
        # As twisted.web does: a streamed answer's last small write must not wait for the
        # client's delayed ACK (Nagle's algorithm), which costs about 40 ms.
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        if all(hasattr(transport, a) for a in _DIRECT_WRITE_NEEDS):
            self.send = self._send_now
            self._direct = True
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
        """Close a connection idle for the site's timeout: no request in flight (an answer
        still leaving counts as idle) and none arriving (the head and body timers rule it)."""
        clock = self.site.clock
        timeout = self.site.timeOut
        idle_for = clock.seconds() - self.last_active
        current = self.current
        if (current is None or current.finished) and self._phase is None and idle_for >= timeout:
            self._idle = None
            self.closing = True
            self.transport.loseConnection()
            if self._closer is None:
                self._closer = clock.callLater(ABORT_SECONDS, self.transport.abortConnection)
            return
        self._idle = clock.callLater(max(timeout - idle_for, 1.0), self._check_idle)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer = self.buffer + data if self.buffer else data
        if self.current is None:
            self._parsing = True
            try:
                self.next_request()
            finally:
                self._parsing = False
            if self._phase is not None or (self.current is None and self.buffer):
                self._receiving()
        elif len(self.buffer) > MAX_BUFFERED and not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def _receiving(self) -> None:
        """After parsing: start or switch the timer of a request still arriving and count its
        bytes against the budget; end both once it is whole, handed over or refused."""
        buf = self.buffer
        if self.current is not None or not buf or self.closing or self.handed_over:
            self._received()
            return
        site = self.site
        phase = self._phase
        if phase != "body":
            end = buf.find(b"\r\n\r\n", max(self._scanned - 3, 0), self.max_head + 4)
            self._scanned = len(buf)
            if end >= 0:
                self._start("body", site.body_timeout)
            elif phase is None:
                self._start("head", site.header_timeout)
        if len(buf) > FREE_REQUEST_BYTES or self._share:
            budget = site.body_budget
            share = budget.hold(self._share, len(buf) - FREE_REQUEST_BYTES)
            if share < 0:
                self.refuse(503, budget.message(), retry_after=True)
                return
            self._share = share

    def _start(self, phase: str, timeout: float) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._phase = phase
        self._deadline = self.site.clock.callLater(timeout, self._timed_out, phase, timeout)

    def _received(self) -> None:
        """The request that was arriving is whole (or gone): its timer and share end."""
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._phase = None
        self._scanned = 0
        if self._share:
            self.site.body_budget.hold(self._share, 0)
            self._share = 0

    def _timed_out(self, phase: str, timeout: float) -> None:
        self._deadline = None
        if self.handed_over or self.closing or self.current is not None:
            self._received()  # (stale: the request went on elsewhere)
            return
        self.refuse(408, timeout_message(phase, timeout))

    def refuse(self, status: int, message: str, retry_after: bool = False) -> None:
        """Answer a request still arriving with a JSON error (as api.http.GatewayChannel's
        refusals), stop reading requests, close after a lingering moment."""
        self._received()
        if self.closing:
            return
        self.closing = True
        self.buffer = b""
        site = self.site
        if site.on_refused is not None:
            site.on_refused(self, status, message)
        self.send(refusal(status, message, retry_after, getattr(site, "compat", False)))
        transport = self.transport
        if self.paused:
            self.paused = False
            transport.resumeProducing()  # read and drop what the client still sends
        if self._closer is None:
            self._closer = site.clock.callLater(LINGER_SECONDS, transport.abortConnection)
        try:
            transport.loseWriteConnection()
        except AttributeError:  # a transport that cannot half-close
            transport.loseConnection()

    def next_request(self) -> None:
        """Parse and answer the buffered requests, one at a time.

        A request is taken only in the shape :data:`_HEAD` describes, with a body framed by a
        ``Content-Length`` twisted.web reads alike (:meth:`_read_head`); at the first request
        it does not take, the connection goes to twisted.web (:meth:`hand_over`), which
        answers that request by its own rules. A head still arriving goes there as soon as
        its lines so far are not the start of a head this channel takes, or it has a bare CR
        or LF: twisted.web reads a head line by line and refuses a bad line without waiting
        for the head's end (which never comes for a client that ends its lines with LF)."""
        while self.current is None and self.buffer and not self.closing:
            buf = self.buffer
            if self._head is not None:  # (read already; its body is still coming)
                end, parts = self._head
            else:
                scanned = self._head_scanned
                end = buf.find(b"\r\n\r\n", max(scanned - 3, 0), self.max_head + 4)
                if end < 0:
                    self._head_scanned = len(buf)
                    # A head still coming is looked at again only when a line may have ended
                    # (or a bare CR or LF arrived): a head trickled byte by byte is not
                    # re-read whole on every byte.
                    if len(buf) <= self.max_head and not _has_line_break(buf, scanned):
                        break
                    if (
                        len(buf) > self.max_head
                        or _bare_line_end(buf)
                        or self._read_head(buf, buf.rfind(b"\r\n")) is None
                    ):
                        self.hand_over()  # answered there: a JSON 414, or its 400...
                        return
                    break  # the head is still coming
                read = self._read_head(buf, end)
                if read is None:
                    self.hand_over()  # another route, method or version, a malformed head...
                    return
                parts = read
                self._head = (end, parts)
            method, uri, path, query, version, headers, handler, length = parts
            start = end + 4
            if len(buf) < start + length:
                break  # the body is still coming
            body = buf[start : start + length]
            self.buffer = buf[start + length :]
            self._head = None
            self._head_scanned = 0
            persistent = keeps_alive(version, headers.get(b"connection"))
            if self.read_closed and not self.buffer:
                persistent = False  # the client has sent its last request
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
            self._received()  # (its timer and budget share end; the next request's start anew)
            self._process(request, handler)
        if self.read_closed and self.current is None and not self.closing:
            # The client half-closed: what is left can never be a whole request.
            self.closing = True
            self.transport.loseConnection()

    def _read_head(self, buf: bytes, end: int) -> tuple[Any, ...] | None:
        """The head in ``buf[:end]`` (whole lines, without the CR LF of the last), as
        ``(method, uri, path, query, version, headers, handler, body length)``; or None when
        it is not one this channel takes (twisted.web answers it: its 400 for a malformed
        head or ``Content-Length``, its 413 for a body over the limit, or its own route)."""
        if end < 0:
            return ()  # the request line is still coming
        head = _HEAD.fullmatch(buf, 0, end)
        if head is None:
            return None
        method, uri, version, fields = head.groups()
        path, _, query = uri.partition(b"?")
        handler = self.handlers.get(path)
        if handler is None:
            return None
        headers = _parse_headers(fields)
        if headers is None:
            return None
        length: int | None = 0
        declared = headers.get(b"content-length")
        if declared is not None:
            length = content_length(declared)
            if length is None or length > self.site.max_request_bytes:
                return None
        if method == b"POST" and length:
            ctype = headers.get(b"content-type")
            if ctype and (_CONTENT_TYPE.fullmatch(ctype) is None or _is_multipart(ctype)):
                return None  # read there: a multipart form, or a type read its own way
        return method, uri, path, query, version, headers, handler, length

    def readConnectionLost(self) -> None:
        """The client half-closed (``shutdown(SHUT_WR)``) after its last request: the
        requests it sent are answered, then the connection is closed. With a request in
        flight, the client may as well have closed altogether: :class:`PeerCheck` tells."""
        if self.read_closed:
            return  # the end of the input seen again (reading resumed)
        self.read_closed = True
        request = self.current
        if request is None:
            self.next_request()  # (closes)
            return
        if not self.buffer:
            request.persistent = False
        if request.clientproto == b"HTTP/1.1" and not request.headers_sent:
            if getattr(self.site, "compat", False):
                return  # (a client of the original may read the probe as its answer)
            self.send(PROBE)
            PeerCheck(self.site.clock.callLater, self.transport, lambda: self.current is not None)

    def writeConnectionLost(self) -> None:
        """Not called for TCP (this channel never half-closes its side)."""

    def _process(self, request: FastRequest, handler: Any) -> None:
        site = self.site
        refusal = site.admission(request)
        if refusal is not None:
            site.refuse(request, refusal)
            return
        site.admit(request)
        dispatch(handler, request)

    def request_done(self, request: FastRequest) -> None:
        """The answer to ``request`` is written: go on with the connection, at once when the
        transport holds less than :data:`HIGH_WATER` of it (nearly always), else once the
        client has read it (:meth:`resumeProducing`)."""
        site = self.site
        self.last_active = site.clock.seconds()
        site.request_finished(request)
        if not request.persistent:
            self.current = None
            self.closing = True
            self.transport.loseConnection()
            return
        t = self.transport
        if (
            self._direct
            and len(t.dataBuffer) - t.offset + t._tempDataLen > HIGH_WATER
            and t.connected
            and not t.disconnecting
        ):
            # ``current`` stays (finished) until then: nothing else is parsed or answered,
            # and the socket is not read.
            self._waiting = True
            t.registerProducer(self, True)
            t.producerPaused = True  # (a streaming producer is resumed only if it was paused)
            if not self.paused:
                self.paused = True
                t.pauseProducing()
            return
        self.current = None
        if not self._parsing:  # (else next_request's loop goes on with the next request)
            self._go_on()

    # IPushProducer: the transport calls these while the channel waits for it to drain.

    def resumeProducing(self) -> None:
        """The transport has sent everything it held: answer the next request."""
        if not self._waiting:
            return
        self._waiting = False
        self.transport.unregisterProducer()
        self.current = None
        self._go_on()

    def pauseProducing(self) -> None:
        """Nothing to pause: the channel writes nothing while it waits."""

    def stopProducing(self) -> None:
        """The connection is going away (connectionLost follows)."""
        self._waiting = False

    def _go_on(self) -> None:
        """Read again, and answer what is buffered."""
        if self.closing:
            return
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()
        if self.buffer or self.read_closed:
            self._parsing = True
            try:
                self.next_request()
            finally:
                self._parsing = False
        if self._phase is not None or (self.current is None and self.buffer):
            self._receiving()

    def hand_over(self) -> None:
        """Give the rest of this connection, from the buffered request on, to twisted.web."""
        self._received()  # (twisted.web times and counts the request from here on)
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
        if self.read_closed:
            # It answers what it was given, then closes (the client was probed here, when
            # it half-closed with a request in flight).
            channel.readConnectionLost(probe=False)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        for call in (self._idle, self._closer):
            if call is not None and call.active():
                call.cancel()
        self._idle = self._closer = None
        self._received()
        self._waiting = False
        request, self.current = self.current, None
        if request is not None and not request.finished:
            request.connection_lost(reason)
            self.site.request_abandoned(request)


#: An interim answer every HTTP/1.1 client skips (RFC 9110 section 15.2: a client must parse
#: 1xx answers it did not ask for): sent to a client that half-closed with a request in flight,
#: it makes a client that closed altogether reset the connection.
PROBE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Seconds from the probe to each check of the socket (the last one repeated).
PEER_CHECKS = (0.02, 0.1, 0.5, 2.0, 5.0)


class PeerCheck:
    """Finds out whether a client that half-closed with a request in flight is still there.

    TCP tells a half-close (``shutdown(SHUT_WR)``: the client still reads) from a close only
    once data reaches the client: a closed socket answers with a reset. After :data:`PROBE`,
    the socket's error is looked at now and then while ``pending()``; a reset aborts the
    connection (``connectionLost``: the request is abandoned and its place in flight freed,
    as for any client that leaves before its answer). Without it, a client that gave up and
    closed would hold its place until its statement ended. (Reading
    the socket would not tell: after the client's FIN, ``recv`` returns b"" even once the
    reset has come; ``SO_ERROR`` holds it.)"""

    def __init__(self, call_later: Any, transport: Any, pending: Any) -> None:
        self.call_later = call_later
        self.transport = transport
        self.pending = pending
        self.step = 0
        self.call = call_later(PEER_CHECKS[0], self.check)

    def check(self) -> None:
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if sock is None or not transport.connected or transport.disconnecting or not self.pending():
            return
        try:
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            error = 1
        if error:
            transport.abortConnection()
            return
        self.step = min(self.step + 1, len(PEER_CHECKS) - 1)
        self.call = self.call_later(PEER_CHECKS[self.step], self.check)


#: Statuses an error answer keeps under ``--compat original``: 401, whose challenge
#: (``WWW-Authenticate``) is what makes an HTTP client send its credentials, and 404, which
#: the original itself answered for a path it did not serve.
COMPAT_KEPT_STATUSES = frozenset({401, 404})
#: The Content-Type the original gave its JSON answers (/db, /dbform, /stats...).
COMPAT_JSON_TYPE = b"text/plain; charset=utf-8"


def compat_status(code: int, method: bytes, error: bool) -> int:
    """The status an answer goes out with under ``--compat original`` (pure): 200 for a
    gateway error answer (``error``: its body is an ``{"ERROR": ...}`` object) with a 4xx or
    5xx status, as the original answered everything it refused, except those of
    :data:`COMPAT_KEPT_STATUSES` and the answers to HEAD (no body would say what failed);
    any other status as it is. The journals and the access log keep the honest status."""
    if error and code >= 400 and code not in COMPAT_KEPT_STATUSES and method != b"HEAD":
        return 200
    return code


def compat_type(content_type: bytes) -> bytes:
    """The Content-Type an answer goes out with under ``--compat original`` (pure): JSON as
    the original labelled it, ``text/plain; charset=utf-8`` (code written for it, such as a
    jQuery page that parses the text itself, gets a string, not an object); others as they
    are."""
    if content_type.split(b";", 1)[0].strip().lower() == b"application/json":
        return COMPAT_JSON_TYPE
    return content_type


def refusal(status: int, message: str, retry_after: bool = False, compat: bool = False) -> bytes:
    """The whole answer to a request a channel refuses before it runs (both channels): its
    status and JSON error, ``Connection: close``; under ``--compat original`` as
    :func:`compat_status` and :func:`compat_type` say."""
    body = error_body(message)
    code, ctype = status, b"application/json"
    if compat:
        code, ctype = compat_status(status, b"GET", True), compat_type(ctype)
    retry = b"Retry-After: 1\r\n" if retry_after else b""
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
        code,
        RESPONSES.get(code, b"Error"),
        ctype,
        len(body),
        retry,
    ) + (b"Connection: close\r\n\r\n" + body)


def timeout_message(phase: str, timeout: float) -> str:
    """The 408's message when a request's head or body took too long (both channels)."""
    setting = "--header-timeout" if phase == "head" else "--body-timeout"
    return (
        f"the request {phase} did not arrive within {timeout:g} s ({setting}); "
        "the connection is closed"
    )


def _has_line_break(buf: bytes, start: int) -> bool:
    """True when ``buf[start:]`` holds a CR or LF (one byte before it too: a CR LF may have
    been cut between two reads)."""
    start = max(start - 1, 0)
    return buf.find(b"\n", start) >= 0 or buf.find(b"\r", start) >= 0


def _parse_headers(fields: bytes) -> dict[bytes, bytes] | None:
    """The header lines of a head :data:`_HEAD` matched (its fourth group: CR LF before each
    line) to a dict of lower-case names and values stripped of SP and HT, as twisted.web
    strips them; None for what this parser leaves to twisted.web (more lines than it allows,
    repeated names, bodies it does not read)."""
    headers: dict[bytes, bytes] = {}
    if not fields:
        return headers
    lines = fields[2:].split(b"\r\n")
    if len(lines) > MAX_HEADERS:
        return None
    for line in lines:
        name, _, value = line.partition(b":")
        key = name.lower()
        if key in headers or key in HAND_OVER_HEADERS:
            return None
        headers[key] = value.strip(b" \t")
    return headers


def _is_multipart(ctype: bytes) -> bool:
    return ctype[:10].lower() == b"multipart/"


def _bare_line_end(data: bytes) -> bool:
    """A CR or an LF in ``data`` that is not part of a CR LF (a CR at the very end may still
    be). Counted rather than searched: three passes in C, whatever the length."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf + data.endswith(b"\r")


def content_length(value: bytes) -> int | None:
    """A ``Content-Length`` value (stripped of SP and HT) as twisted.web reads it: ASCII
    digits only (no sign, no hex, no inner space, no list of lengths), else None (its 400).
    A value of more than 18 significant digits reads as :data:`TOO_LONG`, over every limit,
    where ``int()`` would raise past 4,300 digits."""
    if not value.isdigit():
        return None
    if len(value) > _MAX_LENGTH_DIGITS:
        value = value.lstrip(b"0")
        if len(value) > _MAX_LENGTH_DIGITS:
            return TOO_LONG
    return int(value or b"0")


def keeps_alive(version: bytes, connection: bytes | None) -> bool:
    """Whether a connection stays open after the answer to a request (RFC 9112 section 9.3),
    the rule of both channels: HTTP/1.1 unless ``close`` is one of the ``Connection``
    options, HTTP/1.0 only with ``keep-alive`` (and no ``close``). The options are the
    comma-separated tokens of the header, in any case (``Connection: close, TE`` closes, and
    ``closed`` is not ``close``)."""
    if not connection:
        return version == b"HTTP/1.1"
    options = {option.strip(b" \t").lower() for option in connection.split(b",")}
    if b"close" in options:
        return False
    return version == b"HTTP/1.1" or b"keep-alive" in options


def dispatch(handler: Any, request: Any) -> Any:
    """Call a route handler and see its answer written: bytes at once, a Deferred when it
    fires (``None`` from it: the handler streamed the answer itself). Returns the bytes, or
    ``None`` while the answer is pending (twisted.web's NOT_DONE_YET)."""
    try:
        result = handler(request)
    except Exception:
        log.failure("unexpected error while answering {path!r}", path=request.path)
        _internal_error(request)
        return None
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
        return None
    result.addCallbacks(
        _write_answer, _write_failure, callbackArgs=(request,), errbackArgs=(request,)
    )
    return None


def _write_answer(body: bytes | None, request: Any) -> None:
    if body is None or request.finished or request._disconnected:
        return  # streamed already, or the client went away
    try:
        request.write(body)
        request.finish()
    except Exception:
        _write_failure(Failure(), request)


def _write_failure(failure: Failure, request: Any) -> None:
    log.failure("unexpected error while answering", failure)
    if not (request.finished or request._disconnected):
        if getattr(request, "headers_sent", False) or getattr(request, "startedWriting", False):
            cut_short(request)  # nothing better can be said mid-answer
            return
        _internal_error(request)


def _internal_error(request: Any) -> None:
    """Answer 500 with the internal error's JSON body (the traceback is logged)."""
    request.setResponseCode(500)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(_INTERNAL_ERROR))
    request.error_message = INTERNAL_ERROR
    request.write(_INTERNAL_ERROR)
    request.finish()


def cut_short(request: Any) -> None:
    """End an answer that began and cannot be completed by closing its connection, without
    the last chunk of a chunked answer: the client sees it cut, never a whole answer with
    invalid JSON in it (which finishing it would send)."""
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if transport is not None:
        transport.loseConnection()
