"""Writing a big result set as it is read: the JSON of one answer, chunk by chunk.

The backend's pool thread reads rows in chunks and hands them here through the reactor; this
object writes them to the HTTP response as they come (chunked transfer), and is the response's
push producer: when the client reads slowly, Twisted pauses it and the pool thread waits before
reading more, so memory stays flat whatever the size of the result. A client that goes away
stops the statement on the server.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from api.render import _json_default
from gateway.results import SQLError


@implementer(IPushProducer)
class JsonStream:
    """The sink of one streamed answer (see gateway.backends.RowSink)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        #: Set while the client takes more data (made when the stream begins: most answers
        #: are small and never stream).
        self.writable: threading.Event | None = None
        self.stopped = False
        self._types: list[str] = []
        self._first = True

    # IPushProducer: Twisted calls these in the reactor thread.
    def pauseProducing(self) -> None:
        if self.writable is not None:
            self.writable.clear()

    def resumeProducing(self) -> None:
        if self.writable is not None:
            self.writable.set()

    def stopProducing(self) -> None:
        self.stopped = True
        if self.writable is not None:
            self.writable.set()

    # The sink, called in the reactor thread on behalf of the pool thread.
    def begin(self, header: list[str], types: list[str], base64: list[int]) -> None:
        self.writable = threading.Event()
        self.writable.set()
        request = self.request
        if request._disconnected:
            self.stopped = True  # gone before the first row: the reader stops at once
        if self.stopped:
            return
        # Watched from here on only: most answers are small and never stream.
        request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self._types = types
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"X-Streamed", b"true")
        request.registerProducer(self, True)
        start = b'{"RESULT":{'
        if base64:
            start += b'"BASE64":' + orjson.dumps(base64) + b","
        request.write(start + b'"HEADER":' + orjson.dumps(header) + b',"ROWS":[')

    def rows(self, rows: list[list[Any]]) -> None:
        if self.stopped or not rows:
            return
        body = orjson.dumps(rows, default=_json_default)[1:-1]
        self.request.write(body if self._first else b"," + body)
        self._first = False

    def end(self, truncated: bool, error: SQLError | None, server: str) -> None:
        if self.stopped:
            return
        tail = b"]"
        if truncated:
            tail += b',"TRUNCATED":true'
        tail += b',"TYPES":' + orjson.dumps(self._types) + b"}"
        if error is not None:
            tail += b',"MYSQL_ERRNO":' + orjson.dumps(error.errno)
            tail += b',"MYSQL_ERROR":' + orjson.dumps(error.message)
            self.request.sql_error = True
            self.request.error_message = f"{error.errno}: {error.message}"
        tail += b',"SERVER":' + orjson.dumps(server) + b"}"
        request = self.request
        request.write(tail)
        request.unregisterProducer()
        request.finish()
