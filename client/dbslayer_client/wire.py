"""The wire: the JSON body of a request (`build_query`) and the decoding of an answer into
`Results` or the exception it calls for (`decode_answer`), shared by both clients.

Values come back exact: the body is parsed with ``parse_float=decimal.Decimal``, so DECIMAL
keeps its digits (FLOAT and DOUBLE columns become ``float``), integers are exact, and binary
columns (listed under ``BASE64``) become ``bytes``. Temporal values stay MySQL's text (zero
dates and TIME beyond 24 h cannot be Python objects).
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
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from dbslayer_client._version import __version__
from dbslayer_client.errors import (
    ClientTimeout,
    ConnectionLost,
    GatewayError,
    GatewayUnreachable,
    SQLError,
    error_class,
)
from dbslayer_client.results import Result, Results

__all__ = ["DEFAULT_URL", "INFO_FLAGS", "build_query", "decode_answer", "decode_json"]

DEFAULT_URL = "http://127.0.0.1:9090"
USER_AGENT = f"dbslayer-client/{__version__}"

#: Info flags answered by `Client.info` (PROTOCOL.md section 1).
INFO_FLAGS = ("STAT", "CLIENT_INFO", "HOST_INFO", "SERVER_VERSION", "CLIENT_VERSION", "SERVER_NAME")

#: Seconds the client waits past a query's own TIMEOUT (the gateway answers 504 a moment after
#: the limit; this only keeps the socket from giving up first).
_TIMEOUT_MARGIN = 10.0

_FLOAT_TYPES = frozenset({"MYSQL_TYPE_FLOAT", "MYSQL_TYPE_DOUBLE"})
_DECIMAL_TYPES = frozenset({"MYSQL_TYPE_DECIMAL", "MYSQL_TYPE_NEWDECIMAL"})
#: Keys of an answer that are not info flags (the rest go to `Results.info`).
_WIRE_KEYS = frozenset(
    {"RESULT", "SERVER", "MYSQL_ERRNO", "MYSQL_ERROR", "ERROR_CLASS", "BACKEND_KIND"}
)


def build_query(
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    server: str | None = None,
    timeout: float | None = None,
    cache: float | None = None,
    rollback_on_error: bool = False,
    after: str | None = None,
) -> bytes:
    """The JSON body of a ``POST /db`` query.

    Parameters are JSON values; ``Decimal`` is sent as its exact text, dates and times as
    MySQL's text, and ``bytes`` are written into the SQL as hex literals (``X'..'``), since
    JSON has no binary type. ``timeout`` (seconds) becomes ``TIMEOUT`` in milliseconds.
    ``after`` (a GTID position, as a write's answer gives it) becomes ``AFTER``."""
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
    if after is not None:
        if not isinstance(after, str) or parse_gtids(after) is None:
            raise ValueError(f"after must be a GTID position like '0-1-1234', got {after!r}")
        request["AFTER"] = after
    return _dumps(request)


_GTID = re.compile(r"[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,20}")


def parse_gtids(text: str) -> dict[int, tuple[int, int]] | None:
    """A GTID position (``0-1-1234``, several domains comma-separated) as ``{domain:
    (server, seq_no)}``, the highest seq_no of a domain named twice; None when ``text`` is
    not one."""
    found: dict[int, tuple[int, int]] = {}
    for part in text.split(","):
        if _GTID.fullmatch(part) is None:
            return None
        domain, server, seq = (int(n) for n in part.split("-"))
        if domain not in found or seq > found[domain][1]:
            found[domain] = (server, seq)
    return found


def merge_gtids(first: str | None, second: str | None) -> str | None:
    """The later of two positions, domain by domain (the highest seq_no of each); a text that
    is not a position counts as none."""
    merged: dict[int, tuple[int, int]] = {}
    for text in (first, second):
        for domain, (server, seq) in (parse_gtids(text) or {}).items() if text else ():
            if domain not in merged or seq > merged[domain][1]:
                merged[domain] = (server, seq)
    if not merged:
        return None
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(merged.items()))


class Position:
    """Read your writes: the latest position of this client's writes (the ``GTID`` of their
    answers, merged domain by domain), sent as ``AFTER`` with the requests that follow, so a
    read runs where those writes have been applied. Thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: str | None = None

    @property
    def value(self) -> str | None:
        """The position to send (None until a write answered one)."""
        return self._value

    def remember(self, info: Mapping[str, Any]) -> None:
        """Take the ``GTID`` of an answer (its info keys), if it has one."""
        gtid = info.get("GTID")
        if isinstance(gtid, str):
            with self._lock:
                self._value = merge_gtids(self._value, gtid)


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
    if "MYSQL_ERRNO" not in obj and "MYSQL_ERROR" not in obj and "ERROR" in obj:
        # A refusal answered 200 (a gateway under --compat original): raised all the same.
        raise _error(status, headers, obj, b"")
    if "MYSQL_ERRNO" in obj or "MYSQL_ERROR" in obj:
        rolled_back = obj.get("ROLLBACK_ON_ERROR_SUCCESS")
        raise SQLError(
            str(obj.get("MYSQL_ERROR") or obj.get("ERROR") or ""),
            status,
            mysql_errno=_int_or_none(obj.get("MYSQL_ERRNO")),
            server=server,
            results=results,
            rolled_back=rolled_back if isinstance(rolled_back, bool) else None,
            error_class=_str_or_none(obj.get("ERROR_CLASS")),
            backend_kind=_str_or_none(obj.get("BACKEND_KIND")),
        )
    return results


def remembered(position: Position | None, answer: tuple[int, Mapping[str, str], bytes]) -> Results:
    """`decode_answer`, with the answer's GTID taken into ``position`` (when there is one),
    from an SQL error's answer too (the statements before the error may have written)."""
    try:
        results = decode_answer(*answer)
    except SQLError as e:
        if position is not None and e.results is not None:
            position.remember(e.results.info)
        raise
    if position is not None:
        position.remember(results.info)
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
    return error_class(status)(
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
    return Result(
        columns=columns, types=types, rows=rows, truncated=item.get("TRUNCATED") is True
    )


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


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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


def unreachable(url: str, error: BaseException) -> GatewayUnreachable:
    return GatewayUnreachable(
        f"cannot reach the gateway at {url} ({error}); nothing was sent, it is safe to retry"
    )


def lost(url: str, error: BaseException) -> ConnectionLost:
    return ConnectionLost(
        f"the connection to the gateway at {url} broke after the request was sent ({error}); "
        "the statements may or may not have been applied, so the request was not sent again"
    )


def timed_out(url: str, seconds: float) -> ClientTimeout:
    return ClientTimeout(
        f"no answer from the gateway at {url} within {seconds:g} s; the request may still be "
        "running or have been applied (raise the client's timeout for long statements)"
    )


def answer_timeout(client_timeout: float, query_timeout: float | None) -> float:
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


class Endpoint:
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


def info_of(results: Results) -> dict[str, Any]:
    return {k: v for k, v in results.info.items() if k in INFO_FLAGS}
