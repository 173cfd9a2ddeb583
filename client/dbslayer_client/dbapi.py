"""PEP 249 (DB-API 2.0) over the gateway's Python client (`dbslayer_client.Client`).

::

    from dbslayer_client import dbapi

    with dbapi.connect("http://127.0.0.1:9090", token=TOKEN) as conn:
        cur = conn.cursor()
        cur.execute("SELECT id, name FROM users WHERE id < %s", (3,))
        print(cur.fetchall())

How this driver differs from a driver holding a database session:

- **Every execute autocommits.** Each ``execute`` is one gateway request, and the gateway runs
  each request with autocommit on, on whichever pooled connection it picks. So ``commit()`` is
  a no-op (PEP 249 allows it for a database in autocommit mode), and ``rollback()`` raises
  `NotSupportedError`: there is no transaction across requests. Statements that must stand or
  fall together go in one ``execute``, separated by ``;`` (use `nextset` to walk their result
  sets).
- **Session state does not carry over**: ``SET @v``, ``USE`` or temporary tables from one
  execute may or may not be seen by the next.
- **Values** are the client's: exact ints, ``Decimal`` for DECIMAL, ``float`` for FLOAT and
  DOUBLE, ``bytes`` for binary columns, and MySQL's text for dates and times (zero dates and
  TIME beyond 24 h have no Python equivalent). Parameters may be ``bytes`` (`Binary`), dates,
  times and ``Decimal``.
- ``paramstyle`` is ``pyformat``: ``%s`` with a sequence, ``%(name)s`` with a mapping. With
  parameters a literal ``%`` is written ``%%``; without them the SQL is sent as is.
- **Exceptions** of the database are of the class its driver raised on the gateway (the
  answer's ``ERROR_CLASS``): a duplicate key is `IntegrityError` on MariaDB, MySQL and SQLite
  alike. SQLite's driver calls a syntax error or an unknown table `OperationalError`, where
  mysqlclient says `ProgrammingError`. From a gateway that does not send ``ERROR_CLASS``, the
  class is chosen by MySQL error number.
- An execute is never sent twice: if the connection to the gateway breaks after a request was
  sent, `OperationalError` says it may or may not have been applied.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

import dbslayer_client as _client

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]

apilevel = "2.0"
#: Threads may share the module, not connections.
threadsafety = 1
#: ``%s`` and ``%(name)s``, the gateway's (and mysqlclient's) placeholders.
paramstyle = "pyformat"


# ------------------------------------------------------------------------------ exceptions


class Warning(Exception):  # shadows the builtin: PEP 249 names it so
    """Important warnings (PEP 249). This driver raises none: the gateway sends no warnings."""


class Error(Exception):
    """Base of the driver's errors. ``errno`` is the MySQL error number when there is one
    (SQLite's extended result code on SQLite), ``status`` the gateway's HTTP status (0: none),
    ``server`` the backend concerned, ``backend_kind`` its kind ("mariadb", "mysql" or
    "sqlite") where the gateway said; ``args`` is ``(errno, message)`` when the errno is known,
    as in mysqlclient."""

    errno: int | None = None
    status: int = 0
    server: str | None = None
    backend_kind: str | None = None


class InterfaceError(Error):
    """Misuse of this driver, or a URL that is not the gateway."""


class DatabaseError(Error):
    """An error of the database or of the gateway in front of it."""


class DataError(DatabaseError):
    """A value out of range, too long, or not valid for its column."""


class OperationalError(DatabaseError):
    """The database or the gateway could not do it: unreachable, lost connection, time
    limit, credentials refused."""


class IntegrityError(DatabaseError):
    """A constraint refused the change: duplicate key, foreign key, NOT NULL, CHECK."""


class InternalError(DatabaseError):
    """The gateway failed internally (HTTP 500)."""


class ProgrammingError(DatabaseError):
    """An error in the SQL or its parameters: syntax, unknown table or column, wrong number of
    parameters, a request the gateway refuses."""


class NotSupportedError(DatabaseError):
    """Something the database or this driver does not do (e.g. rollback across requests)."""


_INTEGRITY = frozenset(
    {
        1022,  # ER_DUP_KEY
        1048,  # ER_BAD_NULL_ERROR
        1062,  # ER_DUP_ENTRY
        1169,  # ER_DUP_UNIQUE
        1215,  # ER_CANNOT_ADD_FOREIGN
        1216,  # ER_NO_REFERENCED_ROW
        1217,  # ER_ROW_IS_REFERENCED
        1451,  # ER_ROW_IS_REFERENCED_2
        1452,  # ER_NO_REFERENCED_ROW_2
        1557,  # ER_FOREIGN_DUPLICATE_KEY
        1586,  # ER_DUP_ENTRY_WITH_KEY_NAME
        1761,  # ER_FOREIGN_DUPLICATE_KEY_WITH_CHILD_INFO
        1762,  # ER_FOREIGN_DUPLICATE_KEY_WITHOUT_CHILD_INFO
        3819,  # ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
        4025,  # ER_CONSTRAINT_FAILED (MariaDB CHECK)
    }
)
_PROGRAMMING = frozenset(
    {
        1007,  # ER_DB_CREATE_EXISTS
        1008,  # ER_DB_DROP_EXISTS
        1046,  # ER_NO_DB_ERROR
        1049,  # ER_BAD_DB_ERROR
        1050,  # ER_TABLE_EXISTS_ERROR
        1051,  # ER_BAD_TABLE_ERROR
        1054,  # ER_BAD_FIELD_ERROR
        1060,  # ER_DUP_FIELDNAME
        1061,  # ER_DUP_KEYNAME
        1064,  # ER_PARSE_ERROR
        1091,  # ER_CANT_DROP_FIELD_OR_KEY
        1102,  # ER_WRONG_DB_NAME
        1103,  # ER_WRONG_TABLE_NAME
        1110,  # ER_FIELD_SPECIFIED_TWICE
        1111,  # ER_INVALID_GROUP_FUNC_USE
        1112,  # ER_UNSUPPORTED_EXTENSION
        1113,  # ER_TABLE_MUST_HAVE_COLUMNS
        1136,  # ER_WRONG_VALUE_COUNT_ON_ROW
        1146,  # ER_NO_SUCH_TABLE
        1149,  # ER_SYNTAX_ERROR
        1179,  # ER_CANT_DO_THIS_DURING_AN_TRANSACTION
        1305,  # ER_SP_DOES_NOT_EXIST
        1318,  # ER_SP_WRONG_NO_OF_ARGS
        1630,  # ER_FUNC_INEXISTENT_NAME_COLLISION
    }
)
_DATA = frozenset(
    {
        1264,  # ER_WARN_DATA_OUT_OF_RANGE
        1265,  # WARN_DATA_TRUNCATED
        1292,  # ER_TRUNCATED_WRONG_VALUE
        1365,  # ER_DIVISION_BY_ZERO
        1366,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
        1367,  # ER_ILLEGAL_VALUE_FOR_TYPE
        1406,  # ER_DATA_TOO_LONG
        1690,  # ER_DATA_OUT_OF_RANGE
    }
)
_NOT_SUPPORTED = frozenset(
    {
        1196,  # ER_WARNING_NOT_COMPLETE_ROLLBACK
        1235,  # ER_NOT_SUPPORTED_YET
        1286,  # ER_UNKNOWN_STORAGE_ENGINE
        1289,  # ER_FEATURE_DISABLED
    }
)


#: The gateway's ``ERROR_CLASS`` (the class its driver raised) to this module's classes.
_BY_ERROR_CLASS: dict[str, type[DatabaseError]] = {
    "IntegrityError": IntegrityError,
    "ProgrammingError": ProgrammingError,
    "OperationalError": OperationalError,
    "DataError": DataError,
    "NotSupportedError": NotSupportedError,
    "InternalError": InternalError,
    "DatabaseError": DatabaseError,
}


def _sql_error_class(error: _client.SQLError) -> type[DatabaseError]:
    """The class the gateway's driver raised (``ERROR_CLASS``); from a gateway that does not
    send it, a guess by MySQL error number."""
    if error.error_class is not None and error.error_class in _BY_ERROR_CLASS:
        return _BY_ERROR_CLASS[error.error_class]
    return _errno_class(error.mysql_errno)


def _errno_class(errno: int | None) -> type[DatabaseError]:
    if errno in _INTEGRITY:
        return IntegrityError
    if errno in _PROGRAMMING:
        return ProgrammingError
    if errno in _DATA:
        return DataError
    if errno in _NOT_SUPPORTED:
        return NotSupportedError
    return OperationalError


def _error_class(error: _client.GatewayError) -> type[Error]:
    if isinstance(error, _client.SQLError):
        return _sql_error_class(error)
    if isinstance(error, _client.RequestRefused):
        # 404/405: the URL does not lead to /db; 400/413/414: the request itself is wrong.
        return InterfaceError if error.status in (404, 405) else ProgrammingError
    if isinstance(
        error,
        (_client.AuthError, _client.Unavailable, _client.ConnectionLost, _client.TimeLimit),
    ):
        return OperationalError
    if error.status >= 500:
        return InternalError
    return DatabaseError


def _translate(error: _client.GatewayError) -> Error:
    """The PEP 249 exception for a client exception (the original is its ``__cause__``)."""
    cls = _error_class(error)
    exc = (
        cls(error.mysql_errno, error.message) if error.mysql_errno is not None else cls(str(error))
    )
    exc.errno = error.mysql_errno
    exc.status = error.status
    exc.server = error.server
    if isinstance(error, _client.SQLError):
        exc.backend_kind = error.backend_kind
    return exc


# ------------------------------------------------------------------------------ types


class DBAPITypeObject:
    """A PEP 249 type object: equal to each ``MYSQL_TYPE_*`` name it covers, so
    ``cursor.description[i][1] == NUMBER`` works."""

    def __init__(self, name: str, *type_names: str) -> None:
        self.name = name
        self.values = frozenset(type_names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DBAPITypeObject):
            return self.values == other.values
        return other in self.values

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        return f"<dbapi type {self.name}>"


STRING = DBAPITypeObject(
    "STRING",
    "MYSQL_TYPE_VARCHAR",
    "MYSQL_TYPE_VAR_STRING",
    "MYSQL_TYPE_STRING",
    "MYSQL_TYPE_ENUM",
    "MYSQL_TYPE_SET",
    "MYSQL_TYPE_JSON",
)
#: BLOB and TEXT share their type codes; a VARBINARY column is a VAR_STRING.
BINARY = DBAPITypeObject(
    "BINARY",
    "MYSQL_TYPE_TINY_BLOB",
    "MYSQL_TYPE_MEDIUM_BLOB",
    "MYSQL_TYPE_LONG_BLOB",
    "MYSQL_TYPE_BLOB",
    "MYSQL_TYPE_GEOMETRY",
)
NUMBER = DBAPITypeObject(
    "NUMBER",
    "MYSQL_TYPE_DECIMAL",
    "MYSQL_TYPE_NEWDECIMAL",
    "MYSQL_TYPE_TINY",
    "MYSQL_TYPE_SHORT",
    "MYSQL_TYPE_LONG",
    "MYSQL_TYPE_FLOAT",
    "MYSQL_TYPE_DOUBLE",
    "MYSQL_TYPE_LONGLONG",
    "MYSQL_TYPE_INT24",
    "MYSQL_TYPE_YEAR",
    "MYSQL_TYPE_BIT",
)
DATETIME = DBAPITypeObject(
    "DATETIME",
    "MYSQL_TYPE_TIMESTAMP",
    "MYSQL_TYPE_DATE",
    "MYSQL_TYPE_TIME",
    "MYSQL_TYPE_DATETIME",
    "MYSQL_TYPE_NEWDATE",
)
#: MySQL has no row id type: an AUTO_INCREMENT key is a plain integer (NUMBER).
ROWID = DBAPITypeObject("ROWID")


Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:  # PEP 249 names
    """The local date of a POSIX timestamp."""
    return datetime.date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    """The local time of day of a POSIX timestamp."""
    return datetime.time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    """The local date and time of a POSIX timestamp."""
    return datetime.datetime(*time.localtime(ticks)[:6])


# ------------------------------------------------------------------------------ connection


def connect(
    url: str = _client.DEFAULT_URL,
    *,
    token: str | None = None,
    user: str | None = None,
    timeout: float = 30.0,
    server: str | None = None,
    read_your_writes: bool = False,
) -> Connection:
    """A Connection to the gateway at ``url``. ``token`` (with ``user`` for HTTP Basic)
    authenticates, ``timeout`` bounds each wait for the gateway in seconds, and ``server``
    names the backend to run on where the gateway's backends are named;
    ``read_your_writes=True`` sends each execute with the position of the connection's
    writes so far (see `dbslayer_client.Client`). No request is sent until the first
    execute."""
    try:
        gateway = _client.Client(
            url, token=token, user=user, timeout=timeout, read_your_writes=read_your_writes
        )
    except ValueError as e:
        raise InterfaceError(str(e)) from e
    return Connection(gateway, server=server)


class Connection:
    """A PEP 249 connection: a kept-alive HTTP connection to the gateway. Not thread safe
    (``threadsafety = 1``)."""

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(self, gateway: _client.Client, server: str | None = None) -> None:
        self._client: _client.Client | None = gateway
        self.server = server

    @property
    def closed(self) -> bool:
        return self._client is None

    @property
    def client(self) -> _client.Client:
        """The underlying `dbslayer_client.Client`."""
        self._check()
        assert self._client is not None
        return self._client

    def _check(self) -> None:
        if self._client is None:
            raise InterfaceError("the connection is closed")

    def cursor(self) -> Cursor:
        self._check()
        return Cursor(self)

    def commit(self) -> None:
        """A no-op: every execute is its own request, and the gateway autocommits each."""
        self._check()

    def rollback(self) -> NoReturn:
        """Always NotSupportedError: there is no transaction across requests to roll back
        (put statements that must stand or fall together in one execute)."""
        self._check()
        raise NotSupportedError(
            "rollback is not supported: each execute is committed by the gateway on its own"
        )

    def close(self) -> None:
        """Close the HTTP connection; the Connection and its cursors are unusable afterwards.
        Closing again does nothing."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Connection:
        self._check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> Any:
        gateway = self.client
        try:
            return gateway.query(sql, params, server=self.server)
        except _client.GatewayError as e:
            raise _translate(e) from e
        except (TypeError, ValueError) as e:
            raise ProgrammingError(str(e)) from e


# ------------------------------------------------------------------------------ cursor

_Description = tuple[str, str, None, None, None, None, None]


class Cursor:
    """A PEP 249 cursor. Each execute is one gateway request; its rows are all in memory once
    it returns, so fetching never touches the network."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self._results: list[_client.Result] = []
        self._set = 0
        self._row = 0
        self._closed = False
        self._executed_rowcount: int | None = None
        self.server: str | None = None

    # -- state

    def _open(self) -> Connection:
        if self._closed:
            raise InterfaceError("the cursor is closed")
        if self.connection.closed:
            raise InterfaceError("the connection is closed")
        return self.connection

    @property
    def _current(self) -> _client.Result | None:
        return self._results[self._set] if self._set < len(self._results) else None

    @property
    def description(self) -> tuple[_Description, ...] | None:
        """One 7-tuple ``(name, type_code, None, None, None, None, None)`` per column of the
        current result set; type codes are ``MYSQL_TYPE_*`` names. None without rows."""
        current = self._current
        if current is None or not current.has_rows:
            return None
        types = current.types + ("",) * (len(current.columns) - len(current.types))
        return tuple(
            (name, code, None, None, None, None, None) for name, code in zip(current.columns, types)
        )

    @property
    def rowcount(self) -> int:
        """Rows in the result set, or rows affected (summed over `executemany`); -1 before any
        execute."""
        if self._executed_rowcount is not None:
            return self._executed_rowcount
        current = self._current
        if current is None:
            return -1
        if current.has_rows:
            return len(current.rows)
        return current.affected_rows if current.affected_rows is not None else -1

    @property
    def lastrowid(self) -> int | None:
        """The AUTO_INCREMENT id the last statement generated (the first of a multi-row
        insert), or None."""
        current = self._current
        if current is None or not current.insert_id:
            return None
        return current.insert_id

    @property
    def truncated(self) -> bool:
        """True when the gateway's row limit cut the current result set short (its
        ``TRUNCATED`` marker): the rows fetched are the first ones only (an extension)."""
        current = self._current
        return current is not None and current.truncated

    @property
    def rownumber(self) -> int | None:
        """Index of the next row to fetch in the current result set (PEP 249 extension)."""
        current = self._current
        return self._row if current is not None and current.has_rows else None

    # -- executing

    def execute(
        self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Cursor:
        """Run ``operation`` (one or more ``;``-separated statements) with ``parameters`` for
        its ``%s`` or ``%(name)s``. Returns the cursor. The cursor is on the first result
        set; `nextset` moves on."""
        connection = self._open()
        self._reset()
        results = connection._query(operation, parameters)
        self._results = list(results)
        self.server = results.server
        return self

    def executemany(
        self, operation: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]
    ) -> Cursor:
        """Run ``operation`` once per parameter set, each as its own request (so each
        commits by itself); ``rowcount`` is the total of affected rows."""
        connection = self._open()
        self._reset()
        total = 0
        for parameters in seq_of_parameters:
            results = connection._query(operation, parameters)
            self._results = list(results)
            self.server = results.server
            self._set = 0
            for result in results:
                total += result.affected_rows or 0
        self._executed_rowcount = total
        return self

    def _reset(self) -> None:
        self._results = []
        self._set = 0
        self._row = 0
        self._executed_rowcount = None

    def nextset(self) -> bool | None:
        """Move to the next statement's outcome: True, or None when there is none left."""
        self._open()
        if self._set + 1 >= len(self._results):
            self._set = len(self._results)
            return None
        self._set += 1
        self._row = 0
        self._executed_rowcount = None
        return True

    # -- fetching

    def _rows(self) -> list[tuple[Any, ...]]:
        self._open()
        current = self._current
        if current is None or not current.has_rows:
            raise ProgrammingError("no result set to fetch from: execute a statement with rows")
        return current.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._rows()
        if self._row >= len(rows):
            return None
        self._row += 1
        return rows[self._row - 1]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        rows = self._rows()
        count = self.arraysize if size is None else size
        chunk = rows[self._row : self._row + max(count, 0)]
        self._row += len(chunk)
        return chunk

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows()
        chunk = rows[self._row :]
        self._row = len(rows)
        return chunk

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    # -- the rest of PEP 249

    def setinputsizes(self, sizes: Any) -> None:
        """Does nothing (allowed by PEP 249)."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Does nothing (allowed by PEP 249)."""

    def close(self) -> None:
        """Make the cursor unusable; closing again does nothing."""
        self._closed = True
        self._results = []

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Cursor:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
