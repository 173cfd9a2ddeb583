"""The result model and value encoding of PROTOCOL.md section 3 (pure, no I/O).

Backends hand raw driver rows to :func:`result_set`; the answer is an :class:`Answer` whose
:meth:`Answer.to_wire` builds the one response structure every renderer works from.

Value rules: integers stay Python ints (exact, BIGINT UNSIGNED included), DECIMAL arrives as
the server's text and becomes :class:`decimal.Decimal` (rendered as the same digits), temporal
values stay the server's text (zero dates and TIME beyond 24 h included), BIT becomes an
integer (by the driver's converter), and binary values (``bytes``) become base64 text with the
column listed under ``BASE64``.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import attrs
import orjson

_FIELD_TYPES = {
    0: "MYSQL_TYPE_DECIMAL",
    1: "MYSQL_TYPE_TINY",
    2: "MYSQL_TYPE_SHORT",
    3: "MYSQL_TYPE_LONG",
    4: "MYSQL_TYPE_FLOAT",
    5: "MYSQL_TYPE_DOUBLE",
    6: "MYSQL_TYPE_NULL",
    7: "MYSQL_TYPE_TIMESTAMP",
    8: "MYSQL_TYPE_LONGLONG",
    9: "MYSQL_TYPE_INT24",
    10: "MYSQL_TYPE_DATE",
    11: "MYSQL_TYPE_TIME",
    12: "MYSQL_TYPE_DATETIME",
    13: "MYSQL_TYPE_YEAR",
    14: "MYSQL_TYPE_NEWDATE",
    15: "MYSQL_TYPE_VARCHAR",
    16: "MYSQL_TYPE_BIT",
    245: "MYSQL_TYPE_JSON",
    246: "MYSQL_TYPE_NEWDECIMAL",
    247: "MYSQL_TYPE_ENUM",
    248: "MYSQL_TYPE_SET",
    249: "MYSQL_TYPE_TINY_BLOB",
    250: "MYSQL_TYPE_MEDIUM_BLOB",
    251: "MYSQL_TYPE_LONG_BLOB",
    252: "MYSQL_TYPE_BLOB",
    253: "MYSQL_TYPE_VAR_STRING",
    254: "MYSQL_TYPE_STRING",
    255: "MYSQL_TYPE_GEOMETRY",
}


def type_name(code: Any) -> str:
    """The reference's ``MYSQL_TYPE_*`` name for a driver type code."""
    if isinstance(code, str):
        return code
    return _FIELD_TYPES.get(code, f"MYSQL_TYPE_{code}")


@attrs.frozen(slots=True)
class ResultSet:
    """Rows of one statement that returned a result set."""

    header: list[str]
    types: list[str]
    rows: list[list[Any]]
    base64: list[int] = attrs.field(factory=list)

    #: True when the row limit cut this result set short (answered as "TRUNCATED": true).
    truncated: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The reference shape: keys sorted, BASE64 only where binary columns exist, TRUNCATED
        only where the row limit cut the rows."""
        wire: dict[str, Any] = {}
        if self.base64:
            wire["BASE64"] = self.base64
        wire["HEADER"] = self.header
        wire["ROWS"] = self.rows
        if self.truncated:
            wire["TRUNCATED"] = True
        wire["TYPES"] = self.types
        return wire


@attrs.frozen(slots=True)
class Update:
    """Outcome of a statement without a result set (INSERT, UPDATE, DDL...)."""

    affected_rows: int
    insert_id: int

    def to_wire(self) -> dict[str, Any]:
        return {"AFFECTED_ROWS": self.affected_rows, "INSERT_ID": self.insert_id, "SUCCESS": True}


Result = ResultSet | Update


#: The PEP 249 exception classes an SQL error may be answered as (``ERROR_CLASS``).
ERROR_CLASSES = frozenset(
    {
        "IntegrityError",
        "ProgrammingError",
        "OperationalError",
        "DataError",
        "NotSupportedError",
        "InternalError",
        "DatabaseError",
    }
)


def error_class_name(error: BaseException) -> str:
    """The PEP 249 class name of a driver exception (mysqlclient and sqlite3 both raise PEP
    249 classes), read from its class, never from its message: the nearest class in its MRO
    named as one of :data:`ERROR_CLASSES`, else ``DatabaseError``."""
    for cls in type(error).__mro__:
        if cls.__name__ in ERROR_CLASSES:
            return cls.__name__
    return "DatabaseError"


@attrs.frozen(slots=True)
class SQLError:
    """An error the database reported for one statement. ``error_class`` is the PEP 249 class
    of the driver's exception and ``backend_kind`` the kind of server ("mariadb", "mysql" or
    "sqlite"); both are answered after ``SERVER`` (``ERROR_CLASS``, ``BACKEND_KIND``) when
    known."""

    errno: int
    message: str
    error_class: str | None = None
    backend_kind: str | None = None

    def extensions(self) -> dict[str, str]:
        """The extension keys of this error, in answer order (after ``SERVER``)."""
        out: dict[str, str] = {}
        if self.error_class is not None:
            out["ERROR_CLASS"] = self.error_class
        if self.backend_kind is not None:
            out["BACKEND_KIND"] = self.backend_kind
        return out


def error_answer(message: str, **extra: Any) -> dict[str, Any]:
    """The one constructor of a gateway-level error object: ``{"ERROR": message}`` then the
    ``extra`` keys in the order given (``MYSQL_ERRNO``, ``SERVER``...), those that are None
    left out. Every ``{"ERROR": ...}`` answer of the gateway is built here (a test holds the
    source tree to it)."""
    out: dict[str, Any] = {"ERROR": message}
    for key, value in extra.items():
        if value is not None:
            out[key] = value
    return out


def error_body(message: str, **extra: Any) -> bytes:
    """:func:`error_answer` as the JSON bytes of an answer body (what the channels write)."""
    return orjson.dumps(error_answer(message, **extra))


@attrs.define(slots=True)
class Answer:
    """Everything one request produced, before rendering."""

    results: list[Result] = attrs.field(factory=list)
    error: SQLError | None = None
    server: str | None = None
    extras: dict[str, Any] = attrs.field(factory=dict)

    @property
    def truncated(self) -> bool:
        for r in self.results:
            if isinstance(r, ResultSet) and r.truncated:
                return True
        return False

    #: True when the rows were streamed to the run's sink (already written out).
    streamed: bool = attrs.field(default=False, eq=False)
    #: True when ``error`` stopped the last result set while its rows were read: that result
    #: set holds the rows read before it (whole chunks, as a streamed answer sent them).
    partial: bool = False
    #: Where the answer came from when the cache was asked: "hit", "miss" or "bypass".
    cache: str | None = attrs.field(default=None, eq=False)

    def to_wire(self) -> dict[str, Any]:
        """The DBSlayer response object, keys in the reference's (sorted) order.

        ``RESULT`` is the one result as an object, or an array of several; an error in a
        statement after the one result makes it an array too (the statements asked for more),
        while an error that stopped the one result set partway keeps it an object (the shape
        a streamed answer had begun). Every path (lane, pool thread, stream) answers this."""
        out: dict[str, Any] = dict(self.extras)
        results = self.results
        if len(results) == 1 and (self.error is None or self.partial):
            out["RESULT"] = results[0].to_wire()
        elif results:
            out["RESULT"] = [r.to_wire() for r in results]
        if self.error is not None:
            out["MYSQL_ERRNO"] = self.error.errno
            out["MYSQL_ERROR"] = self.error.message
        if self.server is not None:
            out["SERVER"] = self.server
        if len(out) > 2 or self.extras:
            out = dict(sorted(out.items()))
        if self.error is not None:
            out.update(self.error.extensions())  # (extensions after the reference's keys)
        return out


def result_set(
    description: Sequence[Sequence[Any]],
    rows: Iterable[Sequence[Any]],
    types: list[str] | None = None,
    truncated: bool = False,
) -> ResultSet:
    """Build a ResultSet from a DB-API description and rows, base64-encoding binary values.

    ``types`` overrides the type names read from the description's type codes."""
    try:
        header, described = _described(tuple(description))
    except TypeError:  # (an unhashable description)
        header, described = _describe(description)
    header = list(header)
    types = list(described) if types is None else types
    table = [list(r) for r in rows]
    binary = _binary_columns(len(header), table)
    for row in table:
        for i in binary:
            value = row[i]
            if value is not None:
                row[i] = b64encode(value).decode("ascii")
    return ResultSet(header=header, types=types, rows=table, base64=binary, truncated=truncated)


def _describe(description: Sequence[Sequence[Any]]) -> tuple[list[str], list[str]]:
    return [_column_name(d[0]) for d in description], [type_name(d[1]) for d in description]


#: Column names and type names by description: the same statements come back again and again.
_described = lru_cache(maxsize=1024)(_describe)


def _column_name(name: Any) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return str(name)


def _binary_columns(width: int, table: list[list[Any]]) -> list[int]:
    """Indexes of columns holding bytes (binary data); each column is decided by its first
    non-NULL value, since a driver returns one Python type per column."""
    if not table:
        return []
    first = table[0]
    if None not in first:  # every column decided by the first row
        return [i for i, value in enumerate(first) if isinstance(value, (bytes, bytearray))]
    undecided = set(range(width))
    binary: list[int] = []
    for row in table:
        for i in list(undecided):
            value = row[i]
            if value is not None:
                undecided.discard(i)
                if isinstance(value, (bytes, bytearray)):
                    binary.append(i)
        if not undecided:
            break
    binary.sort()
    return binary
