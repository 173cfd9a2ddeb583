"""Writing a big result set as it is read: the JSON of one answer, chunk by chunk.

The backend's pool thread reads rows in chunks and hands them here through the reactor; this
object writes them to the HTTP response as they come (chunked transfer; under ``--compat
original`` an answer that ends with the connection), and is the response's push producer:
when the client reads slowly, Twisted pauses it and the pool thread waits before reading
more, so memory stays flat whatever the size of the result. A client that goes away
stops the statement on the server; so does one that reads nothing for ``stall_timeout``
seconds (the service gives the idle timeout): its connection is aborted, as a client that
left.

The JSON is the buffered answer's (:meth:`gateway.results.Answer.to_wire`): the result set's
keys around its rows come from ``ResultSet.to_wire``, and the end, written once the backend is
done (after a ROLLBACK_ON_ERROR transaction's end), from the whole answer's, so a streamed and a
buffered answer to the same request parse to equal JSON, an error partway included.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from api.fastpath import cut_short
from api.render import _json_default
from gateway.results import Answer, ResultSet

log = Logger()


@implementer(IPushProducer)
class JsonStream:
    """The sink of one streamed answer (see gateway.backends.RowSink)."""

    def __init__(self, request: Any, clock: Any = None, stall_timeout: float = 0.0) -> None:
        self.request = request
        #: Set while the client takes more data (made when the stream begins: most answers
        #: are small and never stream).
        self.writable: threading.Event | None = None
        self.stopped = False
        #: True once the answer has begun (its head and first rows are written), and once
        #: it has ended (written whole).
        self.begun = False
        self.ended = False
        self._first = True
        #: A client that takes nothing for this long, while paused, is taken as gone (0 or no
        #: clock: never; the pool thread's own backstop still holds).
        self.clock = clock
        self.stall_timeout = stall_timeout
        self._stall: Any = None

    # IPushProducer: Twisted calls these in the reactor thread.
    def pauseProducing(self) -> None:
        if self.writable is not None:
            self.writable.clear()
        if self._stall is None and self.clock is not None and self.stall_timeout > 0:
            if not self.stopped:
                self._stall = self.clock.callLater(self.stall_timeout, self.abandon)

    def resumeProducing(self) -> None:
        self._stall_off()
        if self.writable is not None:
            self.writable.set()

    def stopProducing(self) -> None:
        self._stall_off()
        self.stopped = True
        if self.writable is not None:
            self.writable.set()

    def abandon(self) -> None:
        """The client takes nothing of the answer: stop it, and abort the connection (the
        site then stops the statement, as for any client that goes away)."""
        self._stall = None
        if self.stopped:
            return
        self.stopProducing()
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        if transport is not None:
            transport.abortConnection()

    def _stall_off(self) -> None:
        stall, self._stall = self._stall, None
        if stall is not None and stall.active():
            stall.cancel()

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
        self.begun = True
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"X-Streamed", b"true")
        request.registerProducer(self, True)
        # The result set's keys before its rows, as ResultSet.to_wire orders them.
        before, _ = _around_rows(ResultSet(header=header, types=types, rows=[], base64=base64))
        request.write(b'{"RESULT":{' + before + b'"ROWS":[')

    def rows(self, rows: list[list[Any]]) -> None:
        if self.stopped or not rows:
            return
        body = orjson.dumps(rows, default=_json_default)[1:-1]
        self.request.write(body if self._first else b"," + body)
        self._first = False

    def end(self, answer: Answer) -> None:
        """Write the rest of the answer and finish it: what Answer.to_wire gives besides the
        streamed rows (the result set's keys after them, then the answer's other keys: an
        error that stopped the statement, ROLLBACK_ON_ERROR, SERVER...), so that a streamed
        answer parses to the same JSON as the buffered one (only the key order may differ:
        RESULT comes first here)."""
        if self.stopped:
            return
        request = self.request
        wire = answer.to_wire()
        result = wire.pop("RESULT", None)
        if not isinstance(result, dict) or len(answer.results) != 1:
            # (never: one streamed result set, RESULT an object; but a cut answer is better
            # than a whole one that says something else)
            log.error("a streamed answer ends with a shape it did not begin with: cut short")
            self._stall_off()
            cut_short(request)
            return
        _, after = _around_rows(answer.results[0])
        tail = b"]" + after
        if wire:
            tail += b"," + orjson.dumps(wire, default=_json_default)[1:-1]
        tail += b"}"
        if answer.error is not None:
            request.sql_error = True
            request.error_message = f"{answer.error.errno}: {answer.error.message}"
        self._stall_off()
        self.ended = True
        request.write(tail)
        request.unregisterProducer()
        request.finish()

    def abort(self) -> None:
        """The answer began and cannot be ended (the request failed after its first rows):
        the connection is closed without the end, so the client sees it cut short."""
        if self.stopped or self.ended:
            return
        self._stall_off()
        self.stopProducing()
        cut_short(self.request)


def _around_rows(result: Any) -> tuple[bytes, bytes]:
    """The JSON of a result set's keys before its rows (each followed by a comma) and after
    them (the end of its object included), as ResultSet.to_wire orders them: the stream
    writes the first, then the rows, then the second."""
    wire = result.to_wire()
    keys = list(wire)
    at = keys.index("ROWS")
    before = {k: wire[k] for k in keys[:at]}
    after = {k: wire[k] for k in keys[at + 1 :]}
    head = orjson.dumps(before)[1:-1] + b"," if before else b""
    tail = b"," + orjson.dumps(after)[1:-1] if after else b""
    return head, tail + b"}"
