"""The HTTP server side: a Site whose channel enforces the request size limit with JSON errors.

Twisted answers an over-long request line with a bare "400 Bad Request" and no body; a
gateway owes its clients an honest status and a message: 414 for a request line over the
limit, 413 for a body over it (refused as soon as ``Content-Length`` says so; a chunked body
is read and dropped past the limit, then refused). After refusing, the channel keeps reading
and discarding what the client still sends for a moment (a "lingering close"), so the client
reads the answer instead of a connection reset.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.server import Request, Site

LINGER_SECONDS = 2.0


def error_body(message: str) -> bytes:
    return orjson.dumps({"ERROR": message})


class GatewayRequest(Request):
    """A request that drops body bytes past the size limit instead of buffering them."""

    body_too_large = False
    _body_bytes = 0

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
        body = error_body(message)
        reason = RESPONSES.get(status, b"Error")
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.dataReceived = self._discard  # type: ignore[method-assign]
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
    """A Site that builds GatewayChannels and GatewayRequests."""

    displayTracebacks = False
    requestFactory = GatewayRequest

    def __init__(self, resource: Any, max_request_bytes: int, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.max_request_bytes = max_request_bytes

    def protocol(self) -> GatewayChannel:  # type: ignore[override]
        return GatewayChannel(self.max_request_bytes)
