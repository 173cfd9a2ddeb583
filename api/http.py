"""The HTTP server side: a Site whose channel enforces the request size limit with JSON errors.

Twisted answers an over-long request line with a bare "400 Bad Request" and no body; a
gateway owes its clients an honest status and a message: 414 for a request line over the
limit, 413 for a body over it (refused as soon as ``Content-Length`` says so, or as soon as a
chunk-size line would take a chunked body past it). After refusing, the channel keeps reading
and discarding what the client still sends for a moment (a "lingering close"), so the client
reads the answer instead of a connection reset.

Both channels bound what a client can hold: a request head must arrive within
``header_timeout`` of its first byte and a body within ``body_timeout`` of the head's end
(else 408); the bytes of requests still arriving have a budget per worker,
``max_body_memory`` (else 503 with ``Retry-After``), and no body is spooled to disk; the next
pipelined request is answered only once the client has read most of the previous answer.

The site also keeps the request lifecycle: each request's start time, the count of requests in
flight (for a shutdown that drains them), ``Connection: close`` on every answer while the
gateway leaves a fleet (api.drain), a 503 for requests that arrive while draining, and a
hook called when a request is finished or refused (statistics and the access log).

A site given ``fast_handlers`` (the main port's) builds :class:`api.fastpath.FastChannel`s,
which answer ``/db`` and ``/dbform`` themselves and hand a connection to a GatewayChannel at
the first request they do not take; the lifecycle above covers both kinds of request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.web.http import NO_BODY_CODES, RESPONSES, HTTPChannel, _ChunkedTransferDecoder
from twisted.web.http_headers import Headers
from twisted.web.server import Request, Site
from zope.interface import implementer

from api.browser import BrowserGuard, EarlyReply, web_header
from api.fastpath import (
    CONTENT_TYPE_BREAK,
    FREE_REQUEST_BYTES,
    LINGER_SECONDS,
    PROBE,
    TOO_LONG,
    DateHeader,
    FastChannel,
    PeerCheck,
    compat_status,
    compat_type,
    content_length,
    keeps_alive,
    refusal,
    timeout_message,
)
from gateway.results import error_body

#: Defaults of the bounds (conf.settings has the same): seconds for a head, for a body, and
#: the bytes of requests still arriving a worker holds.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 60.0
MAX_BODY_MEMORY = 64 << 20
#: Paths whose requests count against the in-flight limit.
LIMITED_PATHS = frozenset({b"/db", b"/dbform"})


def is_dbslayer_path(path: bytes) -> bool:
    """True for ``/db`` and ``/dbform``, also percent-encoded (Klein serves ``/%64b`` as
    ``/db``): the requests the statistics count in flight."""
    return path in LIMITED_PATHS or (b"%" in path and unquote_to_bytes(path) in LIMITED_PATHS)


_RETRY_SOON = ((b"Retry-After", b"1"),)
DRAINING = EarlyReply(
    503, "the gateway is shutting down; retry on another instance", _RETRY_SOON, close=True
)


def _bad_partial_line(pending: bytes) -> bool:
    """A LF, or a CR that is not the buffer's last byte, in the part of a line not yet ended
    by CR LF: a line twisted.web will refuse (400) once it ends."""
    return b"\n" in pending or pending.find(b"\r", 0, len(pending) - 1) >= 0


class BoundedChunkedDecoder(_ChunkedTransferDecoder):
    """twisted.web's chunked body decoder with the request size limit applied to each
    chunk-size line as it is read: a chunk that would take the body past the limit is refused
    (``too_large``) before any of its data is read. twisted.web's own read a huge chunk size
    and then its data without end."""

    def __init__(
        self,
        data_callback: Callable[[bytes], None],
        finish_callback: Callable[[bytes], None],
        limit: int,
        too_large: Callable[[int], None],
    ) -> None:
        super().__init__(data_callback, finish_callback)
        self.limit = limit
        self.too_large = too_large
        #: The sum of the chunk sizes read so far.
        self.declared = 0

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        if not super()._dataReceived_CHUNK_LENGTH():
            return False
        self.declared += self.length
        if self.declared <= self.limit:
            return True
        del self._buffer[:]
        self.state = "FINISHED"  # nothing more is read
        self.too_large(self.declared)
        return False


class BodyBudget:
    """The bytes of requests still arriving that one worker keeps in memory, over every
    connection of its sites: each connection's share is what it holds of the request it is
    receiving past its first :data:`api.fastpath.FREE_REQUEST_BYTES`."""

    def __init__(self, limit: int = MAX_BODY_MEMORY) -> None:
        self.limit = limit
        self.held = 0

    def hold(self, share: int, wanted: int) -> int:
        """A connection's share goes from ``share`` to ``wanted`` bytes (none if negative):
        the new share, or -1, with nothing changed, when it would pass the limit."""
        wanted = max(wanted, 0)
        held = self.held - share + wanted
        if wanted > share and held > self.limit:
            return -1
        self.held = held
        return wanted

    def message(self) -> str:
        """The 503's message when a request does not fit."""
        return (
            "too many large requests are arriving at once: the memory this gateway keeps for "
            f"them ({self.limit} bytes, --max-body-memory) is taken; retry shortly"
        )


class GatewayRequest(Request):
    """A request whose body stays in memory (never spooled to a file) and is refused past the
    size limit, knows when it started, and is counted in flight by its site."""

    body_too_large = False
    _body_bytes = 0
    #: Reactor time when the request was received (headers and body read).
    started: float = 0.0
    #: Error message of the answer, if it is an error (set by the app, read for statistics).
    error_message: str | None = None
    #: True when the answer carries an SQL error (HTTP 200, reference behaviour).
    sql_error = False
    #: The parsed DBSlayer request (set by the app for /db requests): the facts of its SQL,
    #: read once after authentication, give the statements by kind for the statistics.
    dbslayer_request: Any = None
    #: Counted in the site's requests in flight (refused requests are not).
    counted = False

    def process(self) -> None:
        site: Any = self.channel.site  # type: ignore[attr-defined]
        self.started = site.clock.seconds()
        refusal = site.admission(self)
        if refusal is not None:
            site.refuse(self, refusal)
            return
        site.admit(self)
        super().process()

    def connectionLost(self, reason: Any) -> None:
        site = getattr(self, "site", None)  # (set by process(); the channel goes away here)
        super().connectionLost(reason)
        if site is not None:
            site.request_abandoned(self)

    def gotLength(self, length: int | None) -> None:
        """twisted.web spools a body over 100 kB to a temporary file, one per request (300
        uploads held 314 MB of them); here a body stays in memory, where the size limit, the
        body timeout and the site's budget bound it."""
        self.content = BytesIO()  # type: ignore[assignment]

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes += len(data)
        limit = getattr(self.channel, "max_request_bytes", None)
        if limit is not None and self._body_bytes > limit:
            # (Not reached through GatewayChannel, which refuses before: at the head for a
            # Content-Length, at the chunk-size line for a chunked body.)
            if not self.body_too_large:
                self.body_too_large = True
                self.channel.refuse(413, f"request body over the limit of {limit} bytes")  # type: ignore[attr-defined]
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """twisted.web reads the Content-Type of a POST with a body through the email
        package, which raises on a line break of its own (VT, FF, FS, GS, RS or NEL) that the
        header rules let through: the exception dropped the connection without an answer.
        Such a request gets the 400 of a malformed one, on both channels (api.fastpath)."""
        ctype = self.requestHeaders.getRawHeaders(b"Content-Type")
        content: Any = self.content
        if command == b"POST" and ctype and CONTENT_TYPE_BREAK.search(ctype[0]):
            if content.tell():
                self.channel._respondToBadRequestAndDisconnect()  # type: ignore[union-attr]
                return
        super().requestReceived(command, path, version)

    def write(self, data: bytes) -> None:
        """twisted.web's, with the head of an answer under ``--compat original`` as the fast
        channel writes it (api.fastpath.FastRequest): the status of
        :func:`api.fastpath.compat_status` (``code`` keeps the honest one, for the journals),
        the Content-Type of :func:`api.fastpath.compat_type`, and no chunks (twisted.web
        chunks every HTTP/1.1 answer without a length; GatewayChannel.writeHeaders takes the
        header off, and the answer ends with the connection)."""
        site = getattr(self.channel, "site", None)
        if self.startedWriting or not getattr(site, "compat", False):
            super().write(data)
            return
        honest = self.code, self.code_message
        code = compat_status(self.code, self.method, self.error_message is not None)
        if code != self.code:
            self.code, self.code_message = code, RESPONSES.get(code, b"OK")
        ctype = self.responseHeaders.getRawHeaders(b"Content-Type")
        if ctype:
            self.responseHeaders.setRawHeaders(b"Content-Type", [compat_type(ctype[-1])])
        try:
            super().write(b"")  # the head
        finally:
            self.code, self.code_message = honest
        self.chunked = False
        if data and self.method != b"HEAD" and self.code not in NO_BODY_CODES:
            super().write(data)


@implementer(IHalfCloseableProtocol)
class GatewayChannel(HTTPChannel):
    """HTTPChannel with a configurable size limit and JSON refusals, the fast channel's
    keep-alive rule, a 400 at once for a bare CR or LF in a head, and answers for a client
    that half-closes."""

    #: The client half-closed: no request comes after those already received.
    _read_closed = False
    site: Any  # the GatewaySite (set by Site.buildProtocol)

    def __init__(
        self,
        max_request_bytes: int,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        super().__init__()
        self.max_request_bytes = max_request_bytes
        # The request line carries the whole query string (plus method, path and version).
        self.MAX_LENGTH = max_request_bytes + 8192
        self.totalHeadersSize = self.MAX_LENGTH + 65536
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._linger: Any = None
        #: What of a request still arriving the channel waits for ("head" or "body"), the
        #: timer that refuses it with 408, and the bytes of it the site's budget counts.
        self._phase: str | None = None
        self._deadline: Any = None
        self._share = 0
        #: A finished request whose requestDone waits for the transport to drain its answer.
        self._pending_done: Any = None

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(
            414,
            f"request line or header longer than the limit of {self.max_request_bytes} bytes; "
            "send large SQL in the body of POST /db",
        )

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if self.length is not None and self.length > self.max_request_bytes:
            self.refuse(
                413,
                f"request body of {self.length} bytes is over the limit of "
                f"{self.max_request_bytes} bytes",
            )
            return
        decoder = self._transferDecoder
        if type(decoder) is _ChunkedTransferDecoder:
            self._transferDecoder = BoundedChunkedDecoder(
                decoder.dataCallback,
                decoder.finishCallback,
                self.max_request_bytes,
                self._chunks_too_large,
            )
        if self.length != 0 and self._linger is None:
            self._start("body", self.body_timeout)

    def _chunks_too_large(self, declared: int) -> None:
        self.refuse(
            413,
            f"request body over the limit of {self.max_request_bytes} bytes (its chunks "
            f"announce {declared} bytes so far)",
        )

    def allContentReceived(self) -> None:
        self._received()
        if self._linger is not None:
            return  # refused while its body was arriving: nothing runs
        super().allContentReceived()

    # Time and memory of a request still arriving (as api.fastpath.FastChannel's).

    def _receiving(self) -> None:
        """After a read: start the head timer of a request begun, and count the bytes of it
        held so far (head lines and body) against the site's budget; end both once it is
        whole or refused."""
        begun = self.requests or self._buffer
        if self._handlingRequest or self._linger is not None or not begun:
            if self._phase is not None or self._share:
                self._received()
            return
        if self._phase is None:
            self._start("head", self.header_timeout)
        held = self._receivedHeaderSize + len(self._buffer)
        if self.requests:
            held += getattr(self.requests[-1], "_body_bytes", 0)
        site = getattr(self, "site", None)
        if site is not None and (held > FREE_REQUEST_BYTES or self._share):
            budget = site.body_budget
            share = budget.hold(self._share, held - FREE_REQUEST_BYTES)
            if share < 0:
                self.refuse(503, budget.message(), retry_after=True)
                return
            self._share = share

    def _start(self, phase: str, timeout: float) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._phase = phase
        self._deadline = self.callLater(timeout, partial(self._timed_out, phase, timeout))

    def _received(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._phase = None
        if self._share:
            self.site.body_budget.hold(self._share, 0)
            self._share = 0

    def _timed_out(self, phase: str, timeout: float) -> None:
        self._deadline = None
        if self._linger is None and not self._handlingRequest:
            self.refuse(408, timeout_message(phase, timeout))

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400, "malformed HTTP request")

    # Rules shared with the fast channel (api.fastpath), where twisted.web's own differ from
    # them or leave a client waiting.

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self._busyReceiving:
            return  # called back while parsing (a request answered at once): only buffered
        if self.line_mode and self._linger is None and _bad_partial_line(self._buffer):
            transport: Any = self.transport
            if not transport.disconnecting:
                # twisted.web answers 400 to a bare CR or LF in a request line or header,
                # but only once the line ends with CR LF: a client that ends its lines with
                # LF alone would wait for the idle timeout.
                self._respondToBadRequestAndDisconnect()
        self._receiving()
        self._close_when_answered()

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        # A Content-Length too long for int() (over 4,300 digits) raised out of twisted.web's
        # parser, which dropped the connection without an answer.
        if header == b"Content-Length" and content_length(data) == TOO_LONG:
            self.refuse(
                413,
                f"request body length of {len(data)} digits is over the limit of "
                f"{self.max_request_bytes} bytes",
            )
            self.length = None
            return False
        return bool(super()._maybeChooseTransferDecoder(header, data))

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        """The fast channel's keep-alive rule (api.fastpath.keeps_alive). twisted.web's own
        split ``Connection`` at spaces only (``close, TE`` kept the connection open) and never
        kept an HTTP/1.0 connection open."""
        values = request.requestHeaders.getRawHeaders(b"Connection")
        persistent = keeps_alive(version, b",".join(values) if values else None)
        if getattr(self.site, "compat", False):
            persistent = False  # (--compat original: the original closed after every answer)
        if not persistent and version == b"HTTP/1.1":
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        return persistent

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """As on the fast channel: an answer that says ``Connection: close`` closes the
        connection after it; on HTTP/1.0, a kept-alive connection stays open after an answer
        with a length (which says ``Connection: keep-alive``), and an answer without one ends
        with the connection (``Connection: close``). Under ``--compat original`` every
        answer closes the connection, and one without a length is close-delimited, never
        chunked (GatewayRequest.write)."""
        if isinstance(headers, Headers) and getattr(self.site, "compat", False):
            headers.removeHeader(b"Transfer-Encoding")
            headers.setRawHeaders(b"Connection", [b"close"])
            self.persistent = False
        elif isinstance(headers, Headers):
            said = headers.getRawHeaders(b"Connection")
            if said and not keeps_alive(b"HTTP/1.1", b",".join(said)):
                self.persistent = False
            elif version == b"HTTP/1.0":
                if self.persistent and headers.hasHeader(b"Content-Length"):
                    headers.setRawHeaders(b"Connection", [b"keep-alive"])
                else:
                    self.persistent = False
                    headers.setRawHeaders(b"Connection", [b"close"])
        super().writeHeaders(version, code, reason, headers)

    # A client that half-closes (shutdown(SHUT_WR)) after its last request. twisted.web took
    # the end of its input for the end of the connection and dropped the answers.

    def readConnectionLost(self, probe: bool = True) -> None:
        """The requests already received are answered, then the connection is closed. With a
        request in flight, the client may as well have closed altogether: PeerCheck tells
        (unless ``probe`` is false: the fast channel did it before handing over)."""
        if self._read_closed:
            return  # the end of the input seen again (reading resumed)
        self._read_closed = True
        self._close_when_answered()
        if probe and self._handlingRequest and self._linger is None and self.requests:
            request = self.requests[0]
            compat = getattr(self.site, "compat", False)  # (its clients may take it for the answer)
            if request.clientproto == b"HTTP/1.1" and not request.startedWriting and not compat:
                transport: Any = self.transport
                transport.write(PROBE)
                PeerCheck(self.callLater, transport, lambda: self._handlingRequest)

    def writeConnectionLost(self) -> None:
        """Our side is closed (after a refusal); the lingering read goes on."""

    def requestDone(self, request: Any) -> None:
        transport: Any = self.transport
        if (
            self._waitingForTransport
            and self.persistent
            and self._linger is None
            and transport is not None
            and not transport.disconnecting
        ):
            # The transport holds more than its 64 KiB mark of this answer (it paused us):
            # the next pipelined request waits until the client has read it. twisted.web
            # answers it at once, and the next, every answer piling up for a client that
            # does not read. The socket is not read meanwhile; the idle timeout runs.
            self._pending_done = request
            self._networkProducer.pauseProducing()
            self.setTimeout(self._savedTimeOut)
            return
        super().requestDone(request)
        self._close_when_answered()

    def resumeProducing(self) -> None:
        """The transport has sent what it held: a request that waited for it is done."""
        super().resumeProducing()
        request, self._pending_done = self._pending_done, None
        if request is not None:
            self.requestDone(request)

    def _close_when_answered(self) -> None:
        """Close once the client has half-closed and no request it sent is left to answer
        (what is left in the buffers can never become a whole request)."""
        if not self._read_closed or self._busyReceiving:
            return
        if self._handlingRequest and self._linger is None:
            return  # requestDone comes back here
        transport: Any = self.transport
        if transport is not None and not transport.disconnecting:
            self.loseConnection()

    def refuse(self, status: int, message: str, retry_after: bool = False) -> None:
        """Answer with a JSON error, stop reading requests, close after a lingering moment."""
        self._received()
        if self._linger is not None:
            return
        site = getattr(self, "site", None)
        if site is not None and site.on_refused is not None:
            site.on_refused(self, status, message)
        transport: Any = self.transport
        transport.write(refusal(status, message, retry_after, getattr(site, "compat", False)))
        # Stop parsing now, the rest of the bytes already received included (LineReceiver
        # goes on through its buffer until the transport is disconnecting).
        self.dataReceived = self._discard  # type: ignore[method-assign]
        self.lineReceived = self._discard  # type: ignore[method-assign]
        self.rawDataReceived = self._discard  # type: ignore[method-assign]
        self.setTimeout(None)
        self.persistent = False
        self._linger = self.callLater(LINGER_SECONDS, transport.abortConnection)
        try:
            transport.loseWriteConnection()
        except AttributeError:  # a transport that cannot half-close
            transport.loseConnection()

    def _discard(self, data: bytes) -> None:
        return None

    def connectionLost(self, reason: Any = None) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._received()
        self._pending_done = None
        super().connectionLost(reason)


class GatewaySite(Site):
    """A Site that builds GatewayChannels and GatewayRequests and keeps their lifecycle."""

    displayTracebacks = False
    requestFactory = GatewayRequest
    #: ``--compat original``: every answer of both channels as the original gave it
    #: (Connection: close, no chunks, 200 for refused requests: api.fastpath.compat_status).
    compat = False

    def __init__(
        self,
        resource: Any,
        max_request_bytes: int,
        clock: Any,
        max_in_flight: int = 512,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        body_budget: BodyBudget | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, reactor=clock, **kwargs)
        self.max_request_bytes = max_request_bytes
        self.max_in_flight = max_in_flight
        #: Seconds a request's head may take from its first byte, and its body from the
        #: head's end (both channels; past them 408).
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        #: The bytes of requests still arriving that the worker keeps (shared by its sites).
        self.body_budget = body_budget if body_budget is not None else BodyBudget()
        self.clock = clock
        self.draining = False
        #: Leaving a fleet (api.drain): every answer says ``Connection: close``, so that
        #: clients and load balancers reconnect elsewhere; requests are still served.
        self.leaving = False
        #: Called with each finished request (statistics, access log).
        self.on_finished: Callable[[GatewayRequest], None] | None = None
        #: Called with (channel, status, message) when the channel refuses a request.
        self.on_refused: Callable[[GatewayChannel, int, str], None] | None = None
        self.in_flight = 0
        #: Of those, the DBSlayer requests (/db, /dbform): the statistics' "in flight", which
        #: leaves out the monitoring requests that read it.
        self.db_in_flight = 0
        self._idle: list[Deferred[None]] = []
        #: Path -> handler answered by the fast channel (api.fastpath); empty: twisted.web only.
        self.fast_handlers: dict[bytes, Any] = {}
        self.date_header = DateHeader(clock)
        #: The Host and cross-site checks of this listener (api.browser); None: none.
        self.browser: BrowserGuard | None = None

    def protocol(self) -> GatewayChannel:  # type: ignore[override]
        return GatewayChannel(self.max_request_bytes, self.header_timeout, self.body_timeout)

    def buildProtocol(self, addr: Any) -> Any:
        """A fast channel where fast handlers are set (the main port), else twisted.web's."""
        if self.fast_handlers:
            return FastChannel(self, self.fast_handlers, addr)
        return self.web_channel(addr)

    def web_channel(self, addr: Any) -> Any:
        """A twisted.web channel (GatewayChannel) of this site."""
        return super().buildProtocol(addr)

    def log(self, request: Any) -> None:
        """Called by Twisted when one of its requests is finished."""
        self.request_finished(request)

    def admission(self, request: Any) -> EarlyReply | None:
        """None when a request (of either kind) may start now, else the answer to give it at
        once: a refusal of a request for another Host or another site (api.browser), a CORS
        preflight's 204, or a 503 while draining or past the in-flight limit.

        Called first for every request, before its SQL is read or its credentials checked.
        An allowed origin's request goes on with its CORS headers set here."""
        guard = self.browser
        if guard is not None:
            headers = getattr(request, "received_headers", None)  # (the fast channel's dict)
            verdict = guard.check(
                request.method,
                request.path,
                headers.get if headers is not None else web_header(request),
            )
            if verdict is not None:
                if isinstance(verdict, EarlyReply):
                    return verdict
                for name, value in verdict:
                    request.setHeader(name, value)
        if self.draining:
            return DRAINING
        if self.leaving:
            request.setHeader(b"Connection", b"close")
        if self.in_flight >= self.max_in_flight and is_dbslayer_path(request.path):
            return EarlyReply(
                503,
                f"too many requests in flight (the limit is {self.max_in_flight}); retry shortly",
                _RETRY_SOON,
            )
        return None

    def refuse(self, request: Any, reply: EarlyReply | str, close: bool = False) -> None:
        """Give a request the answer :meth:`admission` chose, at once, without running
        anything (either kind of request). A message alone is a 503 with Retry-After."""
        if isinstance(reply, str):
            reply = EarlyReply(503, reply, _RETRY_SOON, close)
        for name, value in reply.headers:
            request.setHeader(name, value)
        if reply.close:
            request.setHeader(b"Connection", b"close")
        if reply.message is None:
            request.setResponseCode(reply.status)
            if reply.status not in (204, 304):
                request.setHeader(b"Content-Length", b"0")
        else:
            request.write(json_error(request, reply.status, reply.message))
        request.finish()

    # Requests in flight, of either kind (GatewayRequest, api.fastpath.FastRequest).

    def admit(self, request: Any) -> None:
        """Count a request in flight until it is finished or its client goes away."""
        self.in_flight += 1
        request.counted = True
        if is_dbslayer_path(request.path):
            self.db_in_flight += 1

    def request_finished(self, request: Any) -> None:
        """The answer is written: the request leaves the count, and the recorder has it."""
        if request.counted:
            request.counted = False
            self._release(request)
        if self.on_finished is not None:
            self.on_finished(request)

    def request_abandoned(self, request: Any) -> None:
        """The client went away before the answer was finished: the request leaves the count
        at once, and a statement running for it is stopped (its ``hangup``, set by the app:
        see gateway.executor.Hangup; the app logs it, status 499, once the statement is
        done with). Other requests are not logged, as in twisted.web."""
        if request.counted:
            request.counted = False
            self._release(request)
        hangup = getattr(request, "hangup", None)
        if hangup is not None:
            hangup()

    def _release(self, request: Any) -> None:
        if is_dbslayer_path(request.path):
            self.db_in_flight -= 1
        self.in_flight -= 1
        if self.in_flight == 0:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def wait_idle(self) -> Deferred[None]:
        """Fires when no request is in flight."""
        if self.in_flight == 0:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        d = Deferred()
        self._idle.append(d)
        return d


def json_error(request: Any, status: int, message: str, **extra: Any) -> bytes:
    """Set status and headers of a JSON error answer and return its body."""
    body = error_body(message, **extra)
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if hasattr(request, "error_message"):
        request.error_message = message
    return body


def json_answer(request: Any, value: Any, status: int = 200) -> bytes:
    """Set status and headers of a JSON answer and return its body."""
    body = orjson.dumps(value)
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def not_found(request: Any, hint: str) -> bytes:
    path = request.path.decode("utf-8", "replace")
    return json_error(request, 404, f"no such path {path}; {hint}")


def not_allowed(request: Any, failure: Any) -> bytes:
    allowed = getattr(failure.value, "valid_methods", None) or []
    if allowed:
        request.setHeader(b"Allow", ", ".join(allowed).encode())
    method = request.method.decode("ascii", "replace")
    return json_error(request, 405, f"method {method} not allowed here; use {', '.join(allowed)}")


STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
}


def static_file(request: Any, name: str) -> bytes:
    """A file of api/static (no directory listing, no path outside it), or a JSON 404."""
    try:
        path = (STATIC / name).resolve()
        if STATIC not in path.parents or not path.is_file():
            return json_error(request, 404, f"no such file {name}")
        body = path.read_bytes()
    except (OSError, ValueError):  # (a name too long for the file system, a NUL byte...)
        return json_error(request, 404, f"no such file {name}")
    request.setHeader(b"Content-Type", _TYPES.get(path.suffix, b"application/octet-stream"))
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.setHeader(b"Cache-Control", b"no-cache")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return body


#: Media types of a page a browser navigates to.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
#: Headers the answer of /stats depends on (its Vary).
PAGE_OR_JSON_VARY = (b"Accept", b"Sec-Fetch-Dest", b"X-Requested-With")
#: Media ranges of an Accept header looked at (a longer list is cut: the first ones rank).
_ACCEPT_RANGES = 64


def accept_ranked(accept: str) -> list[str]:
    """The media ranges of an ``Accept`` value, most preferred first: by q-value, then in
    the order given (a range with q=0, or a q that is not a number, is not acceptable and
    left out); lower case, parameters other than q dropped. (Pure.)"""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.lower().split(",")[:_ACCEPT_RANGES]):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # (nan, negative or above 1: not a q-value)
                    q = 0.0
        if q > 0.0:
            ranked.append((-q, position, media))
    ranked.sort()
    return [media for _, _, media in ranked]


def prefers_page(
    accept: bytes | None, fetch_dest: bytes | None, requested_with: bytes | None
) -> bool:
    """Whether a request of ``/stats`` gets the HTML dashboard rather than the JSON. (Pure.)

    Only a browser navigating to it does: ``Sec-Fetch-Dest: document``, or an ``Accept`` that
    ranks an HTML type first (q-values respected; browsers without Fetch Metadata, such as any
    over plain HTTP to another host, send ``text/html`` first when they navigate). Anything
    else gets JSON: a script (``X-Requested-With``, as Prototype.js and jQuery send, whatever
    its Accept says: the original's own statistics page sends ``text/javascript, text/html,
    application/xml, text/xml, */*``), a ``fetch()`` (``Sec-Fetch-Dest: empty``), curl
    (``*/*``), a client that names JSON first or sends no Accept at all."""
    if requested_with:
        return False
    if fetch_dest is not None:  # (Fetch Metadata says what the request is for: trusted)
        return fetch_dest.strip().lower() in (b"document", b"iframe")
    if not accept:
        return False
    ranked = accept_ranked(accept.decode("latin-1"))
    return bool(ranked) and ranked[0] in HTML_TYPES


def wants_html(request: Any) -> bool:
    """True when the request of a page that is also JSON (``/stats``) is a browser navigating
    to it (:func:`prefers_page`)."""
    return prefers_page(
        request.getHeader(b"accept"),
        request.getHeader(b"sec-fetch-dest"),
        request.getHeader(b"x-requested-with"),
    )


def add_vary(request: Any, names: tuple[bytes, ...]) -> None:
    """Add ``names`` to the answer's ``Vary`` (kept: what is there, such as ``Origin``)."""
    current = _response_header(request, b"vary")
    listed = [v.strip() for v in current.split(b",") if v.strip()] if current else []
    known = {v.lower() for v in listed}
    listed += [name for name in names if name.lower() not in known]
    value = b", ".join(listed)
    if getattr(request, "response_headers", None) is not None:  # (api.fastpath.FastRequest)
        request.setHeader(b"Vary", value)
    else:
        request.responseHeaders.setRawHeaders(b"Vary", [value])


def _response_header(request: Any, name: bytes) -> bytes | None:
    """A header already set on the answer (either kind of request), or None."""
    headers = getattr(request, "response_headers", None)  # (api.fastpath.FastRequest)
    if headers is not None:
        found = headers.get(name)
        return found[1] if found is not None else None
    values = request.responseHeaders.getRawHeaders(name)
    return b", ".join(values) if values else None


def authorization(request: Any) -> str | None:
    """The request's Authorization header value, or None."""
    header = request.getHeader(b"authorization")
    return header.decode("latin-1") if header else None


def auth_refusal_headers(request: Any, status: int, challenge: str) -> None:
    """401 asks for credentials (WWW-Authenticate); 503 says when to retry."""
    if status == 401:
        request.setHeader(b"WWW-Authenticate", challenge.encode())
    elif status == 503:
        request.setHeader(b"Retry-After", b"1")
