"""The Klein app: DBSlayer routes (``/db``, ``/dbform``) over the gateway's executor.

State comes in through the constructor (no module globals), so two gateways can live in one
process or one test. Every answer, errors included, is JSON (or the requested FORMAT) with an
honest status; no traceback ever reaches a client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from werkzeug.exceptions import MethodNotAllowed, NotFound

from api.fastpath import INTERNAL_ERROR
from api.http import auth_refusal_headers, authorization, not_allowed, not_found, static_file
from api.openapi import served as served_document
from api.render import CsvNotApplicable, render
from api.stream import JsonStream
from gateway.auth import CHALLENGE, AuthFailed
from gateway.backends import ClientGone, GatewayError
from gateway.executor import Hangup
from gateway.request import (
    Request,
    RequestError,
    decode_query,
    form_to_object,
    loads_json,
    parse_request,
)
from gateway.results import Answer, error_answer

log = Logger()

_JSON = b"application/json"


class RequestRunner(Protocol):
    """What the app needs to run a request (gateway.executor.Executor). A runner that stops a
    request's statement when its client goes away says so with ``stops_abandoned`` and
    takes a ``hangup`` (gateway.executor.Hangup)."""

    def execute(
        self, request: Request, user: Any = None, sink: Any = None, hangup: Any = None
    ) -> Deferred[Answer]: ...


#: Parsed query strings kept, and the longest kept (as gateway.sql's memo of SQL facts).
PARSED_ENTRIES = 1024
PARSED_MAX_BYTES = 4096
_SQL_ONLY = {"SQL": None}.keys()


class GatewayApp:
    """HTTP face of the gateway."""

    app = Klein()

    def __init__(
        self, executor: RequestRunner, max_request_bytes: int, authenticator: Any = None
    ) -> None:
        self.executor = executor
        self.max_request_bytes = max_request_bytes
        #: Checks the Authorization header when authentication is on (None: off).
        self.authenticator = authenticator
        #: Big JSON answers are written as their rows are read (set by the service, which
        #: dispatches /db itself and so can leave the response open).
        self.streaming = False
        #: Request keys the gateway does not know are ignored (``--compat original``, as the
        #: reference did) instead of refused with a 400 naming the closest known key.
        self.ignore_unknown_keys = False
        #: Called with a request whose client went away, once what ran for it is done with
        #: (status 499, the error says what became of the statements): the service gives the
        #: recorder (journal, access log). None: not recorded.
        self.on_abandoned: Callable[[Any], None] | None = None
        #: A streamed answer whose client takes nothing for this many seconds is stopped as
        #: a hang-up (the service gives the idle timeout and the reactor; 0: never).
        self.stall_timeout = 0.0
        self.clock: Any = None
        self._stops = bool(getattr(executor, "stops_abandoned", False))
        #: Query strings of the plain shape, parsed (see _remember). A Request is immutable
        #: (its facts, read once, included), so one serves every request with that text.
        self._parsed: dict[bytes, Request] = {}

    def resource(self) -> Any:
        return self.app.resource()

    # ------------------------------------------------------------------ routes

    @app.route("/db", methods=["GET", "POST"])
    def db(self, request: Any) -> Any:
        """``GET /db?<URL-encoded JSON>`` or ``POST /db`` with a JSON body."""
        if request.method == b"HEAD":
            return self._no_head(request)
        try:
            if request.method == b"POST":
                obj = loads_json(self._body(request), "request body")
                parsed = parse_request(obj, ignore_unknown_keys=self.ignore_unknown_keys)
            else:
                query = self._query(request)
                known = self._parsed.get(query)
                if known is not None:
                    return self._run(request, known)
                obj = decode_query(query)
                parsed = parse_request(obj, ignore_unknown_keys=self.ignore_unknown_keys)
                if obj.keys() == _SQL_ONLY and len(query) <= PARSED_MAX_BYTES:
                    self._remember(query, parsed)
        except RequestError as e:
            return self._error(request, e.status, error_answer(str(e)))
        return self._run(request, parsed)

    def _remember(self, query: bytes, parsed: Request) -> None:
        """Keep the parse of a query string of the plain shape (``{"SQL": ...}`` alone): the
        same statements come again and again. Bounded: the oldest goes first."""
        known = self._parsed
        if len(known) >= PARSED_ENTRIES:
            del known[next(iter(known))]
        known[query] = parsed

    @app.route("/dbform", methods=["GET", "POST"])
    def dbform(self, request: Any) -> Any:
        """HTML-form flavour: every field is a member of the request object."""
        if request.method == b"HEAD":
            return self._no_head(request)
        try:
            if request.method == b"POST":
                self._body(request)  # enforces the size limit
            else:
                self._query(request)
            fields = {}
            for key, values in request.args.items():
                try:
                    fields[key.decode("utf-8")] = values[-1].decode("utf-8")
                except UnicodeDecodeError:
                    raise RequestError("form fields must be UTF-8 text") from None
            parsed = parse_request(
                form_to_object(fields), ignore_unknown_keys=self.ignore_unknown_keys
            )
        except RequestError as e:
            return self._error(request, e.status, error_answer(str(e)))
        return self._run(request, parsed)

    @app.route("/", methods=["GET"])
    def console(self, request: Any) -> bytes:
        """The query console (static page; it talks to /db like any client)."""
        return static_file(request, "console.html")

    @app.route("/static/<path:name>", methods=["GET"])
    def static(self, request: Any, name: str) -> bytes:
        """The console's and dashboard's static files."""
        return static_file(request, name)

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request: Any) -> bytes:
        """The OpenAPI 3.1 document of this API (api/openapi.json), without authentication."""
        body = served_document()
        request.setHeader(b"Content-Type", _JSON)
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.setHeader(b"Cache-Control", b"no-cache")
        return body

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Failure) -> bytes:
        return not_found(request, "DBSlayer requests go to /db or /dbform")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: Any, failure: Failure) -> bytes:
        return not_allowed(request, without_head(failure))

    # ----------------------------------------------------------------- helpers

    def _no_head(self, request: Any) -> bytes:
        """werkzeug answers HEAD on every GET route by running it: here that would run the
        statement (a write included) and only drop the answer. HEAD is refused instead."""
        request.setHeader(b"Allow", b"GET, POST")
        path = request.path.decode("utf-8", "replace")
        return self._error(
            request,
            405,
            error_answer(
                f"method HEAD not allowed on {path}: it would run the SQL; use GET or POST"
            ),
        )

    def _query(self, request: Any) -> bytes:
        query = getattr(request, "query", None)  # (parsed already by the fast channel)
        if query is None:
            uri: bytes = request.uri
            query = uri.split(b"?", 1)[1] if b"?" in uri else b""
        if len(query) > self.max_request_bytes:
            raise _TooLarge(
                414,
                f"query string over the limit of {self.max_request_bytes} bytes; "
                "send large SQL in the body of POST /db",
            )
        return query

    def _body(self, request: Any) -> bytes:
        if getattr(request, "body_too_large", False):
            raise _TooLarge(413, f"request body over the limit of {self.max_request_bytes} bytes")
        request.content.seek(0)
        body: bytes = request.content.read(self.max_request_bytes + 1)
        if len(body) > self.max_request_bytes:
            raise _TooLarge(413, f"request body over the limit of {self.max_request_bytes} bytes")
        return body

    def _run(self, request: Any, parsed: Request) -> Deferred[Any]:
        request.dbslayer_request = parsed  # (its SQL is read by the executor, after auth)
        sink = None
        if (
            self.streaming
            and parsed.format == "json"
            and not (parsed.info or parsed.help or parsed.debug_return_input)
        ):
            sink = JsonStream(request, self.clock, self.stall_timeout)
        hangup = None
        if self._stops:
            # Called by the site when the client goes away (api.http.GatewaySite).
            hangup = request.hangup = Hangup()
        if self.authenticator is None:
            d: Deferred[Any] = self._execute(parsed, None, sink, hangup)
        else:
            d = self.authenticator.authenticate(authorization(request))
            d.addCallback(lambda user: self._execute(parsed, user, sink, hangup))
        # (an error raised by _answered itself reaches dispatch's failure handler: a JSON 500)
        d.addCallbacks(
            self._answered,
            self._failed,
            callbackArgs=(request, parsed),
            errbackArgs=(request, parsed, sink),
        )
        return d

    def _execute(
        self, parsed: Request, user: Any, sink: Any, hangup: Hangup | None
    ) -> Deferred[Answer]:
        if hangup is None:
            return self.executor.execute(parsed, user, sink)
        return self.executor.execute(parsed, user, sink, hangup=hangup)

    def _answered(self, answer: Answer, request: Any, parsed: Request) -> bytes | None:
        if answer.streamed:
            return None  # already written out, row chunk by row chunk
        if answer.cache is not None:
            request.setHeader(b"X-Cache", answer.cache.encode())
        if answer.truncated:
            request.setHeader(b"X-Truncated", b"true")
        if answer.error is not None:
            request.sql_error = True
            request.error_message = f"{answer.error.errno}: {answer.error.message}"
        return self._answer(request, answer.to_wire(), parsed.format, 200)

    def _failed(
        self, failure: Failure, request: Any, parsed: Request, sink: Any = None
    ) -> bytes | None:
        error = failure.value
        if isinstance(error, ClientGone):
            self._gone(request, error)
            return None  # (nobody to answer)
        if sink is not None and sink.begun:
            # Its first rows are out (status 200): no error answer can follow them.
            log.failure("a streamed answer failed after it began; cut short", failure)
            sink.abort()
            return None
        if isinstance(error, RequestError):
            return self._error(request, error.status, error_answer(str(error)), parsed.format)
        if isinstance(error, AuthFailed):
            auth_refusal_headers(request, error.status, CHALLENGE)
            return self._error(request, error.status, error_answer(error.message), parsed.format)
        if isinstance(error, GatewayError):
            if error.retry_after is not None:
                request.setHeader(b"Retry-After", str(error.retry_after).encode())
            return self._error(request, error.status, error.to_wire(), parsed.format)
        log.failure("unexpected error while answering {sql!r}", failure, sql=parsed.sql)
        return self._error(request, 500, error_answer(INTERNAL_ERROR))

    def _gone(self, request: Any, error: ClientGone) -> None:
        """The client went away: nothing is written; the request is recorded with status 499
        and what became of its statements."""
        request.setResponseCode(error.status)
        request.error_message = error.message
        if self.on_abandoned is not None:
            self.on_abandoned(request)

    def _answer(self, request: Any, wire: dict[str, Any], fmt: str, status: int) -> bytes:
        try:
            body, content_type = render(wire, fmt)
        except CsvNotApplicable:
            body, content_type = render(wire, "json")
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body

    def _error(self, request: Any, status: int, wire: dict[str, Any], fmt: str = "json") -> bytes:
        request.error_message = wire.get("ERROR")
        return self._answer(request, wire, fmt, status)


def without_head(failure: Failure) -> Failure:
    """A 405 of a route that takes POST does not offer HEAD (werkzeug adds it to every GET
    route): those routes act, and refuse HEAD themselves."""
    allowed = getattr(failure.value, "valid_methods", None)
    if allowed and "POST" in allowed:
        failure.value.valid_methods = sorted(m for m in allowed if m != "HEAD")
    return failure


class _TooLarge(RequestError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
