"""The Python client of the gateway: `Client` (synchronous, standard library only) and
`TwistedClient` (treq, returning Deferreds), both answering with the same `Results` and raising
the same exceptions.

Both send ``POST /db`` with a JSON body and hand the answer, as ``(status, headers, body)``, to
one function, `decode_answer`, which turns it into `Results` or raises the `GatewayError`
subclass the answer calls for. Values come back exact: the body is parsed with
``parse_float=decimal.Decimal``, so DECIMAL keeps its digits (FLOAT and DOUBLE columns become
``float``), integers are exact, and binary columns (listed under ``BASE64``) become ``bytes``.
Temporal values stay MySQL's text (zero dates and TIME beyond 24 h cannot be Python objects).

Keep-alive. `Client` keeps one `http.client.HTTPConnection` open. Before reusing it, it checks
that the gateway has not closed it while idle (a restart, an idle timeout) and reconnects if so.
When a reused connection breaks after the request was sent, the request is sent once more on a
new connection only if it is idempotent (``/stats``, info flags, SQL whose every statement is a
read by the gateway's own classifier); otherwise `ConnectionLost` says it may have been applied.
A request that could not be written completely never reached the gateway and is sent again.

Example::

    from api.client import Client

    with Client("http://127.0.0.1:9090") as db:
        rows = db.query("SELECT id, name FROM users WHERE id < %s", [3]).rows
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import http.client
import json
import math
import re
import select
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast, overload

from gateway.sql import read_sql

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = [
    "DEFAULT_URL",
    "AuthError",
    "Client",
    "ClientTimeout",
    "ConnectionLost",
    "GatewayError",
    "GatewayUnreachable",
    "RequestRefused",
    "Result",
    "Results",
    "SQLError",
    "TimeLimit",
    "TwistedClient",
    "Unavailable",
    "build_query",
    "decode_answer",
    "decode_json",
]

DEFAULT_URL = "http://127.0.0.1:9090"
USER_AGENT = "dbslayer-client/0.1"

#: Info flags answered by `Client.info` (PROTOCOL.md section 1).
INFO_FLAGS = ("STAT", "CLIENT_INFO", "HOST_INFO", "SERVER_VERSION", "CLIENT_VERSION", "SERVER_NAME")

#: Seconds the client waits past a query's own TIMEOUT (the gateway answers 504 a moment after
#: the limit; this only keeps the socket from giving up first).
_TIMEOUT_MARGIN = 10.0

_FLOAT_TYPES = frozenset({"MYSQL_TYPE_FLOAT", "MYSQL_TYPE_DOUBLE"})
_DECIMAL_TYPES = frozenset({"MYSQL_TYPE_DECIMAL", "MYSQL_TYPE_NEWDECIMAL"})
_WIRE_KEYS = frozenset({"RESULT", "SERVER", "MYSQL_ERRNO", "MYSQL_ERROR"})


# ------------------------------------------------------------------------------ exceptions


class GatewayError(Exception):
    """The gateway answered with an error, or could not be reached.

    ``status`` is the HTTP status (0 when no answer came at all), ``message`` the gateway's
    ``ERROR`` (or ``MYSQL_ERROR``) text, ``mysql_errno`` its ``MYSQL_ERRNO``, ``server`` the
    backend concerned, ``retry_after`` the ``Retry-After`` header in seconds."""

    def __init__(
        self,
        message: str,
        status: int = 0,
        *,
        mysql_errno: int | None = None,
        server: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.mysql_errno = mysql_errno
        self.server = server
        self.retry_after = retry_after

    def __str__(self) -> str:
        details = []
        if self.status:
            details.append(f"HTTP {self.status}")
        if self.mysql_errno is not None:
            details.append(f"MYSQL_ERRNO {self.mysql_errno}")
        if self.server is not None:
            details.append(f"server {self.server}")
        if self.retry_after is not None:
            details.append(f"retry after {self.retry_after:g} s")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class SQLError(GatewayError):
    """The database refused a statement (``MYSQL_ERRNO``/``MYSQL_ERROR``, answered with 200).

    ``results`` holds the outcome of the statements before the failing one. With
    ``rollback_on_error`` they were rolled back when ``rolled_back`` is True."""

    def __init__(
        self,
        message: str,
        status: int = 200,
        *,
        mysql_errno: int | None = None,
        server: str | None = None,
        retry_after: float | None = None,
        results: Results | None = None,
        rolled_back: bool | None = None,
    ) -> None:
        super().__init__(
            message, status, mysql_errno=mysql_errno, server=server, retry_after=retry_after
        )
        self.results = results if results is not None else Results(server=server)
        self.rolled_back = rolled_back


class AuthError(GatewayError):
    """Missing or bad credentials (401), or not allowed (403)."""


class Unavailable(GatewayError):
    """No backend could take the request and nothing was sent (503); see ``retry_after``."""


class GatewayUnreachable(Unavailable):
    """The gateway itself could not be reached (status 0); nothing was sent."""


class ConnectionLost(GatewayError):
    """The connection broke while the statements ran (502, ``MYSQL_ERRNO`` 2013), or the
    connection to the gateway broke after the request was sent (status 0): the statements may or
    may not have been applied. Nothing was sent again."""


class ClientTimeout(ConnectionLost):
    """No answer from the gateway within the client's timeout (status 0). The request may still
    be running or have been applied."""


class TimeLimit(GatewayError):
    """The statement time limit was reached and the statement was stopped on the server (504)."""


class RequestRefused(GatewayError):
    """The gateway refused the request itself (400, 404, 405, 413, 414 and other 4xx)."""


def _error_class(status: int) -> type[GatewayError]:
    if status in (401, 403):
        return AuthError
    if status == 503:
        return Unavailable
    if status == 502:
        return ConnectionLost
    if status == 504:
        return TimeLimit
    if 400 <= status < 500:
        return RequestRefused
    return GatewayError


# ------------------------------------------------------------------------------ results


@dataclass(slots=True)
class Result:
    """One statement's outcome: a result set (``columns``, ``types``, ``rows``) or, for a
    statement without one, ``affected_rows`` and ``insert_id`` (0 when none was generated)."""

    columns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    affected_rows: int | None = None
    insert_id: int | None = None

    @property
    def has_rows(self) -> bool:
        """True when the statement returned a result set (possibly empty)."""
        return self.affected_rows is None

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name (a later duplicate name wins)."""
        return [dict(zip(self.columns, row)) for row in self.rows]


class Results(Sequence[Result]):
    """All statements of one request, in order, with the backend that ran them (``server``),
    the ``X-Cache`` header (``cache``: ``hit``, ``miss``, ``bypass`` or None) and the answered
    info flags (``info``). ``rows``, ``columns``, ``types``, ``dicts()``, ``affected_rows`` and
    ``insert_id`` are those of the last statement. Equality compares the results, ``server``
    and ``info``, not ``cache``."""

    __slots__ = ("_results", "server", "cache", "info")

    def __init__(
        self,
        results: Iterable[Result] = (),
        *,
        server: str | None = None,
        cache: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self._results = list(results)
        self.server = server
        self.cache = cache
        self.info: dict[str, Any] = dict(info or {})

    @overload
    def __getitem__(self, index: int) -> Result: ...

    @overload
    def __getitem__(self, index: slice) -> list[Result]: ...

    def __getitem__(self, index: int | slice) -> Result | list[Result]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Results):
            return NotImplemented
        return (self._results, self.server, self.info) == (other._results, other.server, other.info)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Results({self._results!r}, server={self.server!r}, cache={self.cache!r})"

    def __getstate__(self) -> tuple[list[Result], str | None, str | None, dict[str, Any]]:
        return (self._results, self.server, self.cache, self.info)

    def __setstate__(
        self, state: tuple[list[Result], str | None, str | None, dict[str, Any]]
    ) -> None:
        self._results, self.server, self.cache, self.info = state

    @property
    def last(self) -> Result:
        """The last statement's Result (an empty one when the request ran no SQL)."""
        return self._results[-1] if self._results else Result()

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return self.last.rows

    @property
    def columns(self) -> tuple[str, ...]:
        return self.last.columns

    @property
    def types(self) -> tuple[str, ...]:
        return self.last.types

    @property
    def affected_rows(self) -> int | None:
        return self.last.affected_rows

    @property
    def insert_id(self) -> int | None:
        return self.last.insert_id

    def dicts(self) -> list[dict[str, Any]]:
        return self.last.dicts()


# ------------------------------------------------------------------------------ the wire


def build_query(
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    server: str | None = None,
    timeout: float | None = None,
    cache: float | None = None,
    rollback_on_error: bool = False,
) -> tuple[bytes, bool]:
    """The JSON body of a query and whether it is idempotent (every statement a read).

    Parameters are JSON values; ``Decimal`` is sent as its exact text, dates and times as
    MySQL's text, and ``bytes`` are written into the SQL as hex literals (``X'..'``), since
    JSON has no binary type. ``timeout`` (seconds) becomes ``TIMEOUT`` in milliseconds."""
    if not isinstance(sql, str):
        raise TypeError(f"sql must be a str, got {type(sql).__name__}")
    request: dict[str, Any] = {"SQL": sql}
    if params is not None:
        sql, encoded = _encode_params(sql, params)
        request["SQL"] = sql
        if encoded is not None:
            request["PARAMS"] = encoded
    if server is not None:
        request["SERVER"] = server
    if timeout is not None:
        if not timeout > 0 or not math.isfinite(timeout):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        request["TIMEOUT"] = round(timeout * 1000, 3)
    if cache is not None:
        if not cache >= 0 or not math.isfinite(cache):
            raise ValueError(f"cache must be a number of seconds >= 0, got {cache!r}")
        request["CACHE"] = cache
    if rollback_on_error:
        request["ROLLBACK_ON_ERROR"] = True
    return _dumps(request), read_sql(sql).read


def decode_answer(status: int, headers: Mapping[str, str], body: bytes) -> Results:
    """Turn a ``/db`` answer into Results, or raise the GatewayError subclass it calls for."""
    obj = _parse(status, headers, body)
    if not isinstance(obj, dict):
        raise GatewayError(f"the answer is not a JSON object: {_excerpt(body)}", status)
    lowered = _lower(headers)
    raw = obj.get("RESULT")
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    server = obj.get("SERVER")
    results = Results(
        (_result(item) for item in items),
        server=server,
        cache=lowered.get("x-cache"),
        info={k: v for k, v in obj.items() if k not in _WIRE_KEYS},
    )
    if "MYSQL_ERRNO" in obj or "MYSQL_ERROR" in obj:
        rolled_back = obj.get("ROLLBACK_ON_ERROR_SUCCESS")
        raise SQLError(
            str(obj.get("MYSQL_ERROR", "")),
            status,
            mysql_errno=_int_or_none(obj.get("MYSQL_ERRNO")),
            server=server,
            results=results,
            rolled_back=rolled_back if isinstance(rolled_back, bool) else None,
        )
    return results


def decode_json(status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """A JSON answer of the monitoring routes (``/stats`` ...), or the error it carries."""
    return _parse(status, headers, body, parse_float=float)


def _parse(status: int, headers: Mapping[str, str], body: bytes, parse_float: Any = Decimal) -> Any:
    try:
        obj = json.loads(body, parse_float=parse_float)
    except (ValueError, UnicodeDecodeError):
        obj = None
        if status == 200:
            raise GatewayError(f"the answer is not JSON: {_excerpt(body)}", status) from None
    if status != 200:
        raise _error(status, headers, obj, body)
    return obj


def _error(status: int, headers: Mapping[str, str], obj: Any, body: bytes) -> GatewayError:
    if not isinstance(obj, dict):
        obj = {}
    message = obj.get("ERROR") or obj.get("MYSQL_ERROR")
    if not isinstance(message, str) or not message:
        reason = http.client.responses.get(status, "error")
        message = f"{reason}: {_excerpt(body)}" if body.strip() else reason
    server = obj.get("SERVER")
    return _error_class(status)(
        message,
        status,
        mysql_errno=_int_or_none(obj.get("MYSQL_ERRNO")),
        server=server if isinstance(server, str) else None,
        retry_after=_retry_after(_lower(headers).get("retry-after")),
    )


def _result(item: Any) -> Result:
    if not isinstance(item, dict):
        raise GatewayError(f"a RESULT element is not an object: {item!r}", 200)
    if "HEADER" not in item:
        return Result(
            affected_rows=_int_or_none(item.get("AFFECTED_ROWS")) or 0,
            insert_id=_int_or_none(item.get("INSERT_ID")) or 0,
        )
    columns = tuple(str(name) for name in item["HEADER"])
    types = tuple(str(name) for name in item.get("TYPES") or ())
    binary = frozenset(item.get("BASE64") or ())
    converters: list[Any] = []
    for i in range(len(columns)):
        kind = types[i] if i < len(types) else ""
        if i in binary:
            converters.append(_from_base64)
        elif kind in _FLOAT_TYPES:
            converters.append(_to_float)
        elif kind in _DECIMAL_TYPES:
            converters.append(_to_decimal)
        else:
            converters.append(None)
    if any(converters):
        rows = [
            tuple(v if c is None or v is None else c(v) for c, v in zip(converters, row))
            for row in item.get("ROWS") or ()
        ]
    else:
        rows = [tuple(row) for row in item.get("ROWS") or ()]
    return Result(columns=columns, types=types, rows=rows)


def _from_base64(value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise GatewayError(f"a BASE64 column holds {value!r}, not base64 text", 200) from None


def _to_float(value: Any) -> Any:
    return (
        float(value) if isinstance(value, (int, Decimal)) and not isinstance(value, bool) else value
    )


def _to_decimal(value: Any) -> Any:
    return Decimal(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _excerpt(body: bytes, limit: int = 300) -> str:
    text = body[:limit].decode("utf-8", "replace").strip()
    return text + ("..." if len(body) > limit else "")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


# ------------------------------------------------------------------------------ parameters

_BINARY = (bytes, bytearray, memoryview)
#: ``%%``, ``%s`` or ``%(name)s``: the placeholders of the driver's pyformat.
_PLACEHOLDER = re.compile(r"%(?:(%)|\(([^()]*)\)s|s)")


def _encode_params(
    sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> tuple[str, list[Any] | dict[str, Any] | None]:
    """The SQL and its PARAMS as JSON values (None: no PARAMS are left to send)."""
    if isinstance(params, Mapping):
        named = {str(k): v for k, v in params.items()}
        if any(isinstance(v, _BINARY) for v in named.values()):
            return _inline_named(sql, named)
        return sql, {k: _param(v) for k, v in named.items()}
    if isinstance(params, (str, *_BINARY)) or not isinstance(params, Sequence):
        raise TypeError(
            f"params must be a sequence (for %s) or a mapping (for %(name)s), got "
            f"{type(params).__name__}"
        )
    values = list(params)
    if any(isinstance(v, _BINARY) for v in values):
        return _inline_positional(sql, values)
    return sql, [_param(v) for v in values]


def _param(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be sent to the database")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} cannot be sent to the database")
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat(" ") if isinstance(value, datetime.datetime) else value.isoformat()
    if isinstance(value, datetime.timedelta):
        return _mysql_time(value)
    raise TypeError(f"cannot send a {type(value).__name__} as a parameter: {value!r}")


def _mysql_time(delta: datetime.timedelta) -> str:
    micros = abs(delta) // datetime.timedelta(microseconds=1)
    seconds, micro = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{'-' if delta < datetime.timedelta(0) else ''}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{text}.{micro:06d}" if micro else text


def _hex(value: bytes | bytearray | memoryview) -> str:
    return f"X'{bytes(value).hex()}'"


def _unescape(sql: str) -> str:
    """The SQL as sent without PARAMS: ``%%`` was the escape of a literal ``%``."""
    return _PLACEHOLDER.sub(lambda m: "%" if m.group(1) else m.group(0), sql)


def _inline_positional(sql: str, values: list[Any]) -> tuple[str, list[Any] | None]:
    marks = [m for m in _PLACEHOLDER.finditer(sql) if not m.group(1)]
    if len(marks) != len(values) or any(m.group(2) is not None for m in marks):
        raise ValueError(
            f"params do not match the placeholders: {len(values)} values for "
            f"{len(marks)} placeholders (use %s for each)"
        )
    out: list[str] = []
    kept: list[Any] = []
    at = 0
    for mark, value in zip(marks, values):
        if isinstance(value, _BINARY):
            out.append(sql[at : mark.start()] + _hex(value))
        else:
            out.append(sql[at : mark.end()])
            kept.append(_param(value))
        at = mark.end()
    out.append(sql[at:])
    text = "".join(out)
    return (text, kept) if kept else (_unescape(text), None)


def _inline_named(sql: str, values: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    def replace(mark: re.Match[str]) -> str:
        name = mark.group(2)
        if name is None:
            if mark.group(1):
                return mark.group(0)
            raise ValueError("params is a mapping, so placeholders must be %(name)s, not %s")
        if name not in values:
            raise ValueError(f"no value for the placeholder %({name})s")
        value = values[name]
        return _hex(value) if isinstance(value, _BINARY) else mark.group(0)

    text = _PLACEHOLDER.sub(replace, sql)
    kept = {k: _param(v) for k, v in values.items() if not isinstance(v, _BINARY)}
    return (text, kept) if kept else (_unescape(text), None)


# ------------------------------------------------------------------------------ messages


def _unreachable(url: str, error: BaseException) -> GatewayUnreachable:
    return GatewayUnreachable(
        f"cannot reach the gateway at {url} ({error}); nothing was sent, it is safe to retry"
    )


def _lost(url: str, error: BaseException) -> ConnectionLost:
    return ConnectionLost(
        f"the connection to the gateway at {url} broke after the request was sent ({error}); "
        "the statements may or may not have been applied, so the request was not sent again"
    )


def _timed_out(url: str, seconds: float) -> ClientTimeout:
    return ClientTimeout(
        f"no answer from the gateway at {url} within {seconds:g} s; the request may still be "
        "running or have been applied (raise the client's timeout for long statements)"
    )


def _read_timeout(client_timeout: float, query_timeout: float | None) -> float:
    if query_timeout is None:
        return client_timeout
    return max(client_timeout, query_timeout + _TIMEOUT_MARGIN)


def _authorization(token: str | None, user: str | None) -> str | None:
    if token is None:
        if user is not None:
            raise ValueError("user needs a token (HTTP Basic sends the user and the token)")
        return None
    if user is None:
        return f"Bearer {token}"
    if ":" in user:
        raise ValueError("a user name for HTTP Basic cannot contain ':'")
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")


class _Endpoint:
    """The parts of a gateway URL both clients need."""

    def __init__(self, url: str, token: str | None, user: str | None, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the gateway URL must be http://host[:port], got {url!r}")
        if parts.username is not None and token is None:
            # http://user:token@host or http://token@host
            if parts.password is not None:
                user, token = (
                    urllib.parse.unquote(parts.username),
                    urllib.parse.unquote(parts.password),
                )
            else:
                token = urllib.parse.unquote(parts.username)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{parts.scheme}://{host}:{self.port}{parts.path.rstrip('/')}"
        self.prefix = parts.path.rstrip("/")
        self.timeout = float(timeout)
        self.headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        authorization = _authorization(token, user)
        if authorization is not None:
            self.headers["Authorization"] = authorization

    def info_body(self, server: str | None) -> bytes:
        request: dict[str, Any] = {flag: True for flag in INFO_FLAGS}
        if server is not None:
            request["SERVER"] = server
        return _dumps(request)


def _info(results: Results) -> dict[str, Any]:
    return {k: v for k, v in results.info.items() if k in INFO_FLAGS}


# ------------------------------------------------------------------------------ sync client


class Client:
    """Synchronous client over one kept-alive HTTP connection (standard library only).

    ``token`` alone is sent as ``Authorization: Bearer``; ``user`` and ``token`` as HTTP Basic.
    ``timeout`` bounds the connect and each wait for the gateway, in seconds. A Client may be
    shared between threads; its requests then take turns on the one connection."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        user: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._endpoint = _Endpoint(url, token, user, timeout)
        self.url = self._endpoint.url
        self.timeout = self._endpoint.timeout
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        #: TCP connections opened to the gateway so far (1 while keep-alive holds).
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; a later request opens a new one."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        server: str | None = None,
        timeout: float | None = None,
        cache: float | None = None,
        rollback_on_error: bool = False,
    ) -> Results:
        """Run one or more statements (``;``-separated); ``params`` fill ``%s`` or
        ``%(name)s``. ``timeout`` lowers the statement time limit (seconds), ``cache``
        accepts a cached answer up to that many seconds old. Raises SQLError when a statement
        fails, with the results of those before it."""
        body, idempotent = build_query(
            sql,
            params,
            server=server,
            timeout=timeout,
            cache=cache,
            rollback_on_error=rollback_on_error,
        )
        answer = self._exchange(
            "POST", "/db", body, idempotent, _read_timeout(self.timeout, timeout)
        )
        return decode_answer(*answer)

    def info(self, *, server: str | None = None) -> dict[str, Any]:
        """The backend's info flags: STAT, SERVER_VERSION, CLIENT_INFO, HOST_INFO,
        CLIENT_VERSION and SERVER_NAME."""
        body = self._endpoint.info_body(server)
        return _info(decode_answer(*self._exchange("POST", "/db", body, True, self.timeout)))

    def stats(self) -> dict[str, Any]:
        """The gateway's ``/stats``."""
        stats: dict[str, Any] = decode_json(
            *self._exchange("GET", "/stats", None, True, self.timeout)
        )
        return stats

    def _exchange(
        self, method: str, path: str, body: bytes | None, idempotent: bool, read_timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self._endpoint.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        target = self._endpoint.prefix + path
        with self._lock:
            for attempt in (1, 2):
                conn, reused = self._connect()
                assert conn.sock is not None
                conn.sock.settimeout(read_timeout)
                try:
                    conn.request(method, target, body=body, headers=headers)
                except OSError as e:
                    # Not written completely: the gateway has no whole request to run.
                    self._drop()
                    if attempt == 1:
                        continue
                    raise _unreachable(self.url, e) from e
                try:
                    response = conn.getresponse()
                    data = response.read()
                except TimeoutError as e:
                    self._drop()
                    raise _timed_out(self.url, read_timeout) from e
                except (OSError, http.client.HTTPException) as e:
                    self._drop()
                    if attempt == 1 and reused and idempotent:
                        continue  # an idle connection the gateway dropped: a read is safe
                    raise _lost(self.url, e) from e
                if response.will_close:
                    self._drop()
                return response.status, dict(response.getheaders()), data
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> tuple[http.client.HTTPConnection, bool]:
        """The open connection and whether it served a request before; a new one when the
        gateway closed it while it was idle."""
        conn = self._connection
        if conn is not None and conn.sock is not None and not _closed_by_peer(conn.sock):
            return conn, True
        self._drop()
        endpoint = self._endpoint
        factory = (
            http.client.HTTPSConnection
            if endpoint.scheme == "https"
            else http.client.HTTPConnection
        )
        conn = factory(endpoint.host, endpoint.port, timeout=endpoint.timeout)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise _unreachable(self.url, e) from e
        self._connection = conn
        self.connections_opened += 1
        return conn, False

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _closed_by_peer(sock: Any) -> bool:
    """True when an idle connection is readable: the gateway closed it (or sent something
    unasked), so it cannot carry another request."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# ------------------------------------------------------------------------------ Twisted client


class TwistedClient:
    """The same client on Twisted and treq: every method returns a Deferred firing with what
    `Client` returns, or failing with the same exceptions. Connections are kept alive in
    ``pool`` (a persistent ``HTTPConnectionPool`` of its own unless given)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        user: str | None = None,
        timeout: float = 30.0,
        *,
        reactor: Any = None,
        pool: Any = None,
    ) -> None:
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool
        from twisted.web.iweb import IAgent

        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._endpoint = _Endpoint(url, token, user, timeout)
        self.url = self._endpoint.url
        self.timeout = self._endpoint.timeout
        self._reactor = reactor
        self._own_pool = pool is None
        self.pool = pool if pool is not None else HTTPConnectionPool(reactor, persistent=True)
        agent = cast("IAgent", Agent(reactor, pool=self.pool))  # Agent implements IAgent
        self._http = HTTPClient(agent)

    def __repr__(self) -> str:
        return f"TwistedClient({self.url!r})"

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        server: str | None = None,
        timeout: float | None = None,
        cache: float | None = None,
        rollback_on_error: bool = False,
    ) -> Deferred[Results]:
        """As `Client.query`, as a Deferred."""
        from twisted.internet.defer import Deferred, fail

        try:
            body, idempotent = build_query(
                sql,
                params,
                server=server,
                timeout=timeout,
                cache=cache,
                rollback_on_error=rollback_on_error,
            )
        except Exception:
            return fail()
        exchange = self._exchange(
            "POST", "/db", body, idempotent, _read_timeout(self.timeout, timeout)
        )
        return Deferred.fromCoroutine(_then(exchange, lambda a: decode_answer(*a)))

    def info(self, *, server: str | None = None) -> Deferred[dict[str, Any]]:
        """As `Client.info`, as a Deferred."""
        from twisted.internet.defer import Deferred

        exchange = self._exchange(
            "POST", "/db", self._endpoint.info_body(server), True, self.timeout
        )
        return Deferred.fromCoroutine(_then(exchange, lambda a: _info(decode_answer(*a))))

    def stats(self) -> Deferred[dict[str, Any]]:
        """As `Client.stats`, as a Deferred."""
        from twisted.internet.defer import Deferred

        exchange = self._exchange("GET", "/stats", None, True, self.timeout)
        return Deferred.fromCoroutine(_then(exchange, lambda a: decode_json(*a)))

    def close(self) -> Deferred[None]:
        """Close the kept-alive connections (of the pool this client made)."""
        from twisted.internet.defer import succeed

        if self._own_pool:
            closed: Deferred[None] = self.pool.closeCachedConnections()
            return closed
        return succeed(None)

    async def _exchange(
        self, method: str, path: str, body: bytes | None, idempotent: bool, read_timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        from twisted.internet.defer import TimeoutError as DeferredTimeout
        from twisted.internet.error import ConnectError
        from twisted.web.client import RequestNotSent, RequestTransmissionFailed

        headers: dict[bytes | str, bytes | str] = {k: v for k, v in self._endpoint.headers.items()}
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self.url + path
        for attempt in (1, 2):
            d = self._http.request(method, url, data=body, headers=headers, allow_redirects=False)
            d.addCallback(_with_content)
            d.addTimeout(read_timeout, self._reactor)
            try:
                response, data = await d
            except DeferredTimeout as e:
                raise _timed_out(self.url, read_timeout) from e
            except ConnectError as e:
                raise _unreachable(self.url, e) from e
            except (RequestNotSent, RequestTransmissionFailed) as e:
                if attempt == 1:
                    continue  # the gateway has no whole request to run
                raise _unreachable(self.url, e) from e
            except Exception as e:
                # ResponseNeverReceived, ResponseFailed...: sent, then the connection broke.
                if attempt == 1 and idempotent:
                    continue
                raise _lost(self.url, e) from e
            return response.code, _twisted_headers(response.headers), data
        raise AssertionError("unreachable")  # pragma: no cover


async def _then(exchange: Any, decode: Any) -> Any:
    return decode(await exchange)


def _with_content(response: Any) -> Any:
    import treq

    d = treq.content(response)
    d.addCallback(lambda data: (response, data))
    return d


def _twisted_headers(headers: Any) -> dict[str, str]:
    return {
        name.decode("latin-1"): values[-1].decode("latin-1")
        for name, values in headers.getAllRawHeaders()
        if values
    }
