"""The Klein app: DBSlayer routes (``/db``, ``/dbform``) over the gateway's executor.

State comes in through the constructor (no module globals), so two gateways can live in one
process or one test. Every answer, errors included, is JSON (or the requested FORMAT) with an
honest status; no traceback ever reaches a client.
"""

from __future__ import annotations

from typing import Any, Protocol

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from werkzeug.exceptions import MethodNotAllowed, NotFound

from api.http import auth_refusal_headers, authorization, not_allowed, not_found, static_file
from api.render import CsvNotApplicable, render
from api.stream import JsonStream
from gateway.auth import CHALLENGE, AuthFailed
from gateway.backends import GatewayError
from gateway.request import (
    Request,
    RequestError,
    decode_query,
    form_to_object,
    loads_json,
    parse_request,
)
from gateway.results import Answer

log = Logger()

_JSON = b"application/json"


class RequestRunner(Protocol):
    def execute(self, request: Request, user: Any = None, sink: Any = None) -> Deferred[Answer]: ...


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
            else:
                obj = decode_query(self._query(request))
            parsed = parse_request(obj)
        except RequestError as e:
            return self._error(request, e.status, {"ERROR": str(e)})
        return self._run(request, parsed)

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
            parsed = parse_request(form_to_object(fields))
        except RequestError as e:
            return self._error(request, e.status, {"ERROR": str(e)})
        return self._run(request, parsed)

    @app.route("/", methods=["GET"])
    def console(self, request: Any) -> bytes:
        """The query console (static page; it talks to /db like any client)."""
        return static_file(request, "console.html")

    @app.route("/static/<path:name>", methods=["GET"])
    def static(self, request: Any, name: str) -> bytes:
        """The console's and dashboard's static files."""
        return static_file(request, name)

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
            {"ERROR": f"method HEAD not allowed on {path}: it would run the SQL; use GET or POST"},
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
            sink = JsonStream(request)
        if self.authenticator is None:
            d: Deferred[Any] = self.executor.execute(parsed, None, sink)
        else:
            d = self.authenticator.authenticate(authorization(request))
            d.addCallback(lambda user: self.executor.execute(parsed, user, sink))
        # (an error raised by _answered itself reaches dispatch's failure handler: a JSON 500)
        d.addCallbacks(
            self._answered,
            self._failed,
            callbackArgs=(request, parsed),
            errbackArgs=(request, parsed),
        )
        return d

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

    def _failed(self, failure: Failure, request: Any, parsed: Request) -> bytes:
        error = failure.value
        if isinstance(error, RequestError):
            return self._error(request, error.status, {"ERROR": str(error)}, parsed.format)
        if isinstance(error, AuthFailed):
            auth_refusal_headers(request, error.status, CHALLENGE)
            return self._error(request, error.status, {"ERROR": error.message}, parsed.format)
        if isinstance(error, GatewayError):
            if error.retry_after is not None:
                request.setHeader(b"Retry-After", str(error.retry_after).encode())
            return self._error(request, error.status, error.to_wire(), parsed.format)
        log.failure("unexpected error while answering {sql!r}", failure, sql=parsed.sql)
        return self._error(request, 500, {"ERROR": "internal error in the gateway; it was logged"})

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
