"""The HTTP server side: a Site whose channel enforces the request size limit with JSON errors.

Twisted answers an over-long request line with a bare "400 Bad Request" and no body; a
gateway owes its clients an honest status and a message: 414 for a request line over the
limit, 413 for a body over it (refused as soon as ``Content-Length`` says so; a chunked body
is read and dropped past the limit, then refused). After refusing, the channel keeps reading
and discarding what the client still sends for a moment (a "lingering close"), so the client
reads the answer instead of a connection reset.

The site also keeps the request lifecycle: each request's start time, the count of requests in
flight (for a shutdown that drains them), a 503 for requests that arrive while draining, and a
hook called when a request is finished or refused (statistics and the access log).

A site given ``fast_handlers`` (the main port's) builds :class:`api.fastpath.FastChannel`s,
which answer ``/db`` and ``/dbform`` themselves and hand a connection to a GatewayChannel at
the first request they do not take; the lifecycle above covers both kinds of request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.server import Request, Site

from api.fastpath import DateHeader, FastChannel

LINGER_SECONDS = 2.0
#: Paths whose requests count against the in-flight limit.
LIMITED_PATHS = frozenset({b"/db", b"/dbform"})


def error_body(message: str) -> bytes:
    return orjson.dumps({"ERROR": message})


class GatewayRequest(Request):
    """A request that drops body bytes past the size limit instead of buffering them, knows
    when it started, and is counted in flight by its site."""

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
        refusal = site.admission(self.path)
        if refusal is not None:
            site.refuse(self, *refusal)
            return
        site.admit(self)
        super().process()

    def connectionLost(self, reason: Any) -> None:
        site = getattr(self, "site", None)  # (set by process(); the channel goes away here)
        super().connectionLost(reason)
        if site is not None:
            site.request_abandoned(self)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes += len(data)
        limit = getattr(self.channel, "max_request_bytes", None)
        if limit is not None and self._body_bytes > limit:
            self.body_too_large = True
            return
        super().handleContentChunk(data)


class GatewayChannel(HTTPChannel):
    """HTTPChannel with a configurable size limit and JSON refusals."""

    def __init__(self, max_request_bytes: int) -> None:
        super().__init__()
        self.max_request_bytes = max_request_bytes
        # The request line carries the whole query string (plus method, path and version).
        self.MAX_LENGTH = max_request_bytes + 8192
        self.totalHeadersSize = self.MAX_LENGTH + 65536
        self._linger: Any = None

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

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400, "malformed HTTP request")

    def refuse(self, status: int, message: str) -> None:
        """Answer with a JSON error, stop reading requests, close after a lingering moment."""
        if self._linger is not None:
            return
        site = getattr(self, "site", None)
        if site is not None and site.on_refused is not None:
            site.on_refused(self, status, message)
        body = error_body(message)
        reason = RESPONSES.get(status, b"Error")
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
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
        super().connectionLost(reason)


class GatewaySite(Site):
    """A Site that builds GatewayChannels and GatewayRequests and keeps their lifecycle."""

    displayTracebacks = False
    requestFactory = GatewayRequest

    def __init__(
        self,
        resource: Any,
        max_request_bytes: int,
        clock: Any,
        max_in_flight: int = 512,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, reactor=clock, **kwargs)
        self.max_request_bytes = max_request_bytes
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.draining = False
        #: Called with each finished request (statistics, access log).
        self.on_finished: Callable[[GatewayRequest], None] | None = None
        #: Called with (channel, status, message) when the channel refuses a request.
        self.on_refused: Callable[[GatewayChannel, int, str], None] | None = None
        self.in_flight = 0
        self._idle: list[Deferred[None]] = []
        #: Path -> handler answered by the fast channel (api.fastpath); empty: twisted.web only.
        self.fast_handlers: dict[bytes, Any] = {}
        self.date_header = DateHeader(clock)

    def protocol(self) -> GatewayChannel:  # type: ignore[override]
        return GatewayChannel(self.max_request_bytes)

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

    def admission(self, path: bytes) -> tuple[str, bool] | None:
        """None when a request may start now, else the message of its 503 and whether the
        connection closes after it (while draining)."""
        if self.draining:
            return "the gateway is shutting down; retry on another instance", True
        if self.in_flight >= self.max_in_flight and path in LIMITED_PATHS:
            return (
                f"too many requests in flight (the limit is {self.max_in_flight}); retry shortly",
                False,
            )
        return None

    def refuse(self, request: Any, message: str, close: bool) -> None:
        """Answer a request :meth:`admission` turned away: a 503 with Retry-After, at once,
        without running anything (either kind of request)."""
        request.setHeader(b"Retry-After", b"1")
        if close:
            request.setHeader(b"Connection", b"close")
        request.write(json_error(request, 503, message))
        request.finish()

    # Requests in flight, of either kind (GatewayRequest, api.fastpath.FastRequest).

    def admit(self, request: Any) -> None:
        """Count a request in flight until it is finished or its client goes away."""
        self.in_flight += 1
        request.counted = True

    def request_finished(self, request: Any) -> None:
        """The answer is written: the request leaves the count, and the recorder has it."""
        if request.counted:
            request.counted = False
            self._release()
        if self.on_finished is not None:
            self.on_finished(request)

    def request_abandoned(self, request: Any) -> None:
        """The client went away before the answer was finished (not logged, as in
        twisted.web)."""
        if request.counted:
            request.counted = False
            self._release()

    def _release(self) -> None:
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
    body = orjson.dumps({"ERROR": message, **extra})
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
    path = (STATIC / name).resolve()
    if STATIC not in path.parents or not path.is_file():
        return json_error(request, 404, f"no such file {name}")
    body = path.read_bytes()
    request.setHeader(b"Content-Type", _TYPES.get(path.suffix, b"application/octet-stream"))
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.setHeader(b"Cache-Control", b"no-cache")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return body


def wants_html(request: Any) -> bool:
    """True when the client (a browser) prefers HTML to JSON."""
    accept = (request.getHeader(b"accept") or b"").decode("latin-1").lower()
    if "text/html" not in accept:
        return False
    return accept.find("text/html") < accept.find("json") if "json" in accept else True


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
