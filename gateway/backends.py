"""Backends: one database server = one adbapi pool (I/O shell around the pure models).

Each request runs in one pool interaction on one connection: all its statements, every
result set walked, info flags read from the same connection. The pool pings a thread's
connection before handing it out (adbapi's ``cp_reconnect`` only drops a connection after it
has failed a request), and drops a connection that broke during a request.

Errors come out in three kinds:
- an SQL error of a statement: part of the :class:`Answer` (HTTP 200, reference behaviour);
- :class:`BackendUnavailable`: the request never reached the server (connect or ping
  failed); nothing was executed;
- :class:`ConnectionLost`: the connection broke while the statements ran; they may or may not
  have been applied.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import threads
from twisted.internet.defer import Deferred

from conf.settings import BackendSpec
from gateway.request import Request
from gateway.results import Answer, SQLError, Update, result_set
from gateway.statements import split_statements, to_qmark

T = TypeVar("T")

#: Client error codes meaning the server was never reached (nothing was sent).
CONNECT_ERRNOS = frozenset({2002, 2003, 2005, 2026, 1040, 1045, 1049, 1129, 1130})
#: Client error codes meaning the connection broke (a statement may have run).
LOST_ERRNOS = frozenset({2006, 2013, 2014, 2055, 4031})


class GatewayError(Exception):
    """A failure answered with a gateway-level error object and an HTTP status."""

    status = 502

    def __init__(
        self,
        message: str,
        errno: int | None = None,
        server: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.server = server
        self.retry_after = retry_after

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ERROR": self.message}
        if self.errno is not None:
            out["MYSQL_ERRNO"] = self.errno
        if self.server is not None:
            out["SERVER"] = self.server
        return out


class BackendUnavailable(GatewayError):
    """The backend could not be reached; the request was not sent (HTTP 503)."""

    status = 503


class ConnectionLost(GatewayError):
    """The connection broke while statements ran; they may have been applied (HTTP 502)."""

    status = 502


class ParamsMismatch(GatewayError):
    """PARAMS do not fit the placeholders of the SQL (HTTP 400)."""

    status = 400


class Backend(Protocol):
    """What the executor needs from a backend."""

    name: str
    spec: BackendSpec

    @property
    def pool(self) -> BackendPool: ...

    def execute(self, request: Request) -> Deferred[Answer]: ...

    def close(self) -> None: ...


class BackendPool(adbapi.ConnectionPool):  # type: ignore[misc]
    """An adbapi pool that pings before use and runs plain functions on a raw connection.

    ``run(func, *args)`` calls ``func(connection, *args)`` in a pool thread without adbapi's
    implicit commit/rollback round trips; transactions are the caller's business.
    """

    def __init__(
        self,
        dbapi_name: str,
        name: str,
        is_broken: Callable[[BaseException], bool],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.backend_name = name
        self._is_broken = is_broken
        super().__init__(dbapi_name, *args, **kwargs)

    #: Interactions running or waiting for a pool thread (counted in the reactor thread).
    in_use = 0

    def run(self, func: Callable[..., T], *args: Any) -> Deferred[T]:
        self.in_use += 1
        d = threads.deferToThreadPool(self._reactor, self.threadpool, self._run, func, *args)
        d.addBoth(self._done)
        return d

    def _done(self, result: T) -> T:
        self.in_use -= 1
        return result

    def info(self) -> dict[str, int]:
        """Connections in use and idle, and the most this pool opens."""
        opened = len(self.connections)
        return {"in_use": self.in_use, "idle": max(0, opened - self.in_use), "max": self.max}

    def check(self) -> Deferred[bool]:
        """True when a connection can be had and answers a ping; never fails."""
        d = self.run(lambda conn: True)
        d.addErrback(lambda _: False)
        return d

    def _run(self, func: Callable[..., T], *args: Any) -> T:
        conn = self.checkout()
        try:
            return func(conn, *args)
        except BaseException as e:
            if self._is_broken(e):
                self.discard(conn)
            raise

    def checkout(self) -> Any:
        """This thread's connection, pinged; a dead one is replaced by a new connection.

        Raises BackendUnavailable when no connection can be made: nothing was sent."""
        tid = self.threadID()
        conn = self.connections.get(tid)
        if conn is not None:
            try:
                self.ping(conn)
            except self.dbapi.Error:
                self.discard(conn)
        try:
            return self.connect()
        except self.dbapi.Error as e:
            args: tuple[Any, ...] = tuple(getattr(e, "args", ()))
            errno = args[0] if args and isinstance(args[0], int) else None
            message = args[1] if len(args) > 1 else str(e)
            raise BackendUnavailable(
                f"backend {self.backend_name} is unavailable ({message})",
                errno=errno,
                server=self.backend_name,
                retry_after=1,
            ) from None

    def ping(self, conn: Any) -> None:
        conn.ping()

    def discard(self, conn: Any) -> None:
        """Close and forget a connection (ignoring errors: it is usually dead already)."""
        tid = self.threadID()
        if self.connections.get(tid) is conn:
            del self.connections[tid]
        try:
            conn.close()
        except Exception:
            pass


def server_version_number(version: str) -> int:
    """``10.11.19-MariaDB`` -> 101119, as ``mysql_get_server_version()``."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return 0
    major, minor, patch = (int(x) for x in m.groups())
    return major * 10000 + minor * 100 + patch


# --------------------------------------------------------------------------- MySQL / MariaDB


def _mysql_conversions() -> dict[Any, Any]:
    """mysqlclient converters: temporal values and YEAR stay the server's text, DECIMAL
    becomes an exact Decimal, BIT an integer; everything else is the driver's default."""
    from MySQLdb.constants import FIELD_TYPE
    from MySQLdb.converters import conversions

    conv = dict(conversions)
    for code in (
        FIELD_TYPE.DATE,
        FIELD_TYPE.TIME,
        FIELD_TYPE.DATETIME,
        FIELD_TYPE.TIMESTAMP,
        FIELD_TYPE.YEAR,
        14,
    ):  # 14 = NEWDATE
        conv[code] = str
    conv[FIELD_TYPE.BIT] = _bit_to_int
    return conv


def _bit_to_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _mysql_errno(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _mysql_is_broken(e: BaseException) -> bool:
    """A connection that raised this must not be reused."""
    import MySQLdb

    if isinstance(e, MySQLdb.Error):
        errno = _mysql_errno(e)
        return errno is None or errno in LOST_ERRNOS or errno >= 2000
    if isinstance(e, ConnectionLost):
        return True
    return not isinstance(e, GatewayError)


class MySQLBackend:
    """A MySQL or MariaDB server reached through mysqlclient."""

    def __init__(
        self,
        spec: BackendSpec,
        reactor: Any,
        *,
        connect_timeout: float,
        read_timeout: float,
        write_timeout: float,
        pool_min: int,
        pool_max: int,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        kwargs: dict[str, Any] = {
            "user": spec.user,
            "passwd": spec.password,
            "db": spec.database,
            "charset": spec.charset,
            "use_unicode": True,
            "autocommit": True,
            "conv": _mysql_conversions(),
            "connect_timeout": max(1, math.ceil(connect_timeout)),
            "read_timeout": max(1, math.ceil(read_timeout)),
            "write_timeout": max(1, math.ceil(write_timeout)),
        }
        if spec.unix_socket:
            kwargs["unix_socket"] = spec.unix_socket
        else:
            kwargs["host"] = spec.host
            kwargs["port"] = spec.port
        self.pool = BackendPool(
            "MySQLdb",
            spec.name,
            _mysql_is_broken,
            cp_min=pool_min,
            cp_max=pool_max,
            cp_reactor=reactor,
            cp_noisy=False,
            **kwargs,
        )

    def execute(self, request: Request) -> Deferred[Answer]:
        return self.pool.run(self._execute, request)

    def close(self) -> None:
        self.pool.close()

    # Everything below runs in a pool thread.

    def _execute(self, conn: Any, request: Request) -> Answer:
        import MySQLdb

        try:
            return self._execute_on(conn, request)
        except MySQLdb.Error as e:
            # Statement errors are part of the answer; what escapes is the connection failing.
            raise self._connection_error(e, _mysql_errno(e)) from None

    def _execute_on(self, conn: Any, request: Request) -> Answer:
        import MySQLdb

        answer = Answer(server=self.name)
        if request.sql is not None:
            transaction = request.rollback_on_error
            if transaction:
                conn.autocommit(False)
            try:
                self._run_sql(conn, request, answer)
            except ParamsMismatch:
                if transaction:
                    conn.rollback()
                    conn.autocommit(True)
                raise
            if transaction:
                self._finish_transaction(conn, answer)
                conn.autocommit(True)
            if _OPENS_TRANSACTION.search(request.sql):
                # A request cannot leave a transaction or table locks open on a pooled
                # connection: close them as a client disconnect would.
                conn.query("ROLLBACK; UNLOCK TABLES; SET autocommit=1")
                while conn.next_result() == 0:
                    pass
        for key in request.info:
            answer.extras[key] = self._info(conn, key, MySQLdb)
        return answer

    def _run_sql(self, conn: Any, request: Request, answer: Answer) -> None:
        import MySQLdb

        cursor = conn.cursor()
        try:
            try:
                cursor.execute(request.sql, request.params)
            except MySQLdb.ProgrammingError as e:
                if _mysql_errno(e) is None:  # raised by the driver's % formatting
                    raise ParamsMismatch(
                        f"PARAMS do not match the placeholders in SQL ({e.args[0]}); "
                        "placeholders are %s or %(name)s, a literal % is written %%",
                        server=self.name,
                    ) from None
                raise
            while True:
                if cursor.description is not None:
                    answer.results.append(result_set(cursor.description, cursor.fetchall()))
                else:
                    answer.results.append(Update(max(cursor.rowcount, 0), cursor.lastrowid or 0))
                if cursor.nextset() is None:
                    break
        except MySQLdb.Error as e:
            errno = _mysql_errno(e)
            if errno is None or errno >= 2000:
                raise self._connection_error(e, errno) from None
            answer.error = SQLError(errno, str(e.args[1]) if len(e.args) > 1 else str(e))
        finally:
            try:
                cursor.close()
            except MySQLdb.Error:
                pass

    def _connection_error(self, e: BaseException, errno: int | None) -> ConnectionLost:
        message = e.args[1] if len(e.args) > 1 else str(e)
        return ConnectionLost(
            f"connection to backend {self.name} lost while the statements ran ({message}); "
            "they may or may not have been applied",
            errno=errno or 2013,
            server=self.name,
        )

    def _finish_transaction(self, conn: Any, answer: Answer) -> None:
        import MySQLdb

        if answer.error is None:
            conn.commit()
            return
        answer.extras["ROLLBACK_ON_ERROR"] = True
        try:
            conn.rollback()
            answer.extras["ROLLBACK_ON_ERROR_SUCCESS"] = True
        except MySQLdb.Error:
            answer.extras["ROLLBACK_ON_ERROR_SUCCESS"] = False
            raise

    def _info(self, conn: Any, key: str, mysqldb: Any) -> Any:
        if key == "STAT":
            return conn.stat()
        if key == "CLIENT_INFO":
            return mysqldb.get_client_info()
        if key == "HOST_INFO":
            return conn.get_host_info()
        if key == "SERVER_VERSION":
            return server_version_number(conn.get_server_info())
        if key == "CLIENT_VERSION":
            return server_version_number(mysqldb.get_client_info())
        return self.name  # SERVER_NAME


_OPENS_TRANSACTION = re.compile(
    r"\b(BEGIN|START\s+TRANSACTION|AUTOCOMMIT|LOCK\s+TABLES?|XA)\b", re.IGNORECASE
)


# --------------------------------------------------------------------------- SQLite


def _sqlite_type(value: Any) -> str:
    if value is None:
        return "MYSQL_TYPE_NULL"
    if isinstance(value, int):
        return "MYSQL_TYPE_LONGLONG"
    if isinstance(value, float):
        return "MYSQL_TYPE_DOUBLE"
    if isinstance(value, bytes):
        return "MYSQL_TYPE_BLOB"
    return "MYSQL_TYPE_VAR_STRING"


class SQLitePool(BackendPool):
    def ping(self, conn: Any) -> None:
        return None


class SQLiteBackend:
    """A SQLite file through the same interface (the embedded demo); one connection, since
    SQLite serialises writers anyway. Statements are split here and run one by one; ``%s``
    and ``%(name)s`` placeholders are rewritten to sqlite3's own."""

    def __init__(self, spec: BackendSpec, reactor: Any) -> None:
        self.name = spec.name
        self.spec = spec
        self.pool = SQLitePool(
            "sqlite3",
            spec.name,
            lambda e: not isinstance(e, (sqlite3.Error, GatewayError)),
            spec.path,
            cp_min=1,
            cp_max=1,
            cp_reactor=reactor,
            cp_noisy=False,
            check_same_thread=False,
            isolation_level=None,
            timeout=5.0,
        )

    def execute(self, request: Request) -> Deferred[Answer]:
        return self.pool.run(self._execute, request)

    def close(self) -> None:
        self.pool.close()

    def _execute(self, conn: sqlite3.Connection, request: Request) -> Answer:
        answer = Answer(server=self.name)
        if request.sql is not None:
            statements = split_statements(request.sql, "sqlite")
            if request.params is not None and len(statements) > 1:
                raise ParamsMismatch("PARAMS apply to a single statement", server=self.name)
            if request.rollback_on_error:
                conn.execute("BEGIN")
            for statement in statements:
                try:
                    self._run_one(conn, statement, request.params, answer)
                except sqlite3.ProgrammingError as e:
                    raise ParamsMismatch(
                        f"PARAMS do not match the placeholders in SQL ({e})", server=self.name
                    ) from None
                except sqlite3.Error as e:
                    answer.error = SQLError(int(getattr(e, "sqlite_errorcode", None) or 1), str(e))
                    break
            if request.rollback_on_error:
                if answer.error is None:
                    conn.execute("COMMIT")
                else:
                    conn.execute("ROLLBACK")
                    answer.extras["ROLLBACK_ON_ERROR"] = True
                    answer.extras["ROLLBACK_ON_ERROR_SUCCESS"] = True
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        for key in request.info:
            answer.extras[key] = self._info(key)
        return answer

    def _run_one(
        self, conn: sqlite3.Connection, statement: str, params: Any, answer: Answer
    ) -> None:
        cursor = conn.cursor()
        try:
            args = () if params is None else params
            cursor.execute(to_qmark(statement, "sqlite") if params is not None else statement, args)
            if cursor.description is not None:
                rows = cursor.fetchall()
                types = [
                    _sqlite_type(next((r[i] for r in rows if r[i] is not None), None))
                    for i in range(len(cursor.description))
                ]
                answer.results.append(result_set(cursor.description, rows, types))
            else:
                answer.results.append(Update(max(cursor.rowcount, 0), cursor.lastrowid or 0))
        finally:
            cursor.close()

    def _info(self, key: str) -> Any:
        version = sqlite3.sqlite_version
        return {
            "STAT": f"SQLite {version} database {self.spec.path}",
            "CLIENT_INFO": version,
            "HOST_INFO": f"{self.spec.path} via SQLite",
            "SERVER_VERSION": server_version_number(version),
            "CLIENT_VERSION": server_version_number(version),
        }.get(key, self.name)


def open_backend(spec: BackendSpec, reactor: Any, **options: Any) -> Backend:
    """Build the backend a spec describes."""
    if spec.driver == "sqlite":
        return SQLiteBackend(spec, reactor)
    return MySQLBackend(spec, reactor, **options)
