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
import os
import re
import select
import socket
import sqlite3
import threading
from base64 import b64encode
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import attrs
from twisted.enterprise import adbapi
from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed

from conf.settings import BackendSpec
from gateway.health import CheckResult
from gateway.position import (
    GTID_TRACKING,
    SESSION_TRACK_TYPES,
    BadPosition,
    covers,
    merge,
    read_tracked,
    wait_statement,
)
from gateway.request import Request
from gateway.results import (
    Answer,
    ResultSet,
    SQLError,
    Update,
    error_answer,
    error_class_name,
    result_set,
)
from gateway.session import (
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
    UNSET,
    NativeSession,
    session_changed,
    setup_statement,
    transaction_open,
)
from gateway.statements import split_statements
from gateway.wire import SERVER_MORE_RESULTS_EXISTS

T = TypeVar("T")

#: Client error codes meaning the server was never reached (nothing was sent).
CONNECT_ERRNOS = frozenset({2002, 2003, 2005, 2026, 1040, 1045, 1049, 1129, 1130})
#: Client error codes meaning the connection broke (a statement may have run).
LOST_ERRNOS = frozenset({2006, 2013, 2014, 2055})


def is_client_errno(errno: int | None) -> bool:
    """True for the client library's own error numbers (2000-2999: lost or refused
    connections, protocol errors) and for an error without a number. Server errors (1000-1999,
    3000 and up, MariaDB's 4000 and up) are SQL errors: part of the answer, the connection
    kept, never retried."""
    return errno is None or 2000 <= errno < 3000


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
        return error_answer(self.message, MYSQL_ERRNO=self.errno, SERVER=self.server)


class BackendUnavailable(GatewayError):
    """The backend could not be reached; the request was not sent (HTTP 503)."""

    status = 503


class ConnectionLost(GatewayError):
    """The connection broke while statements ran; they may have been applied (HTTP 502).

    ``not_sent`` is True when the break happened before the statements were written to the
    server (error 2006 on sending): then nothing ran and the request may be sent elsewhere."""

    status = 502

    def __init__(
        self,
        message: str,
        errno: int | None = None,
        server: str | None = None,
        not_sent: bool = False,
    ) -> None:
        super().__init__(message, errno=errno, server=server)
        self.not_sent = not_sent


class StatementTimeout(GatewayError):
    """The statement time limit was reached and the statement stopped on the server (504)."""

    status = 504


class ClientGone(GatewayError):
    """The HTTP client went away (closed or reset its connection, or stopped reading a
    streamed answer) while its request ran: the statements were stopped on the server, or
    never sent. No client reads the answer; the status 499 (nginx's "client closed request")
    is what the request journal and the access log show.

    ``outcome`` says what became of the statements: ``"not_sent"`` (nothing ran),
    ``"stopped"`` (stopped on the server while they ran) or ``"finished"`` (they had ended
    before the stop reached them)."""

    status = 499

    def __init__(self, message: str, outcome: str, server: str | None = None) -> None:
        super().__init__(message, server=server)
        self.outcome = outcome


def gone_before_sent(server: str) -> ClientGone:
    """The ClientGone of a request whose client went away before its statements were sent."""
    return ClientGone(
        f"the client went away before the statements were sent to backend {server}; nothing ran",
        "not_sent",
        server=server,
    )


#: Server errors saying the server stopped a statement: its time limit (MariaDB 1969,
#: MySQL 3024) or KILL QUERY (1317). (1028, a sort aborted, counts only after a KILL.)
TIMEOUT_ERRNOS = frozenset({1969, 3024, 1317})


#: Rows read (and written) per step of a streamed answer.
STREAM_CHUNK = 1000
#: Seconds a streamed answer waits for a client that reads nothing before it is taken as gone
#: (a backstop: the HTTP side stops such a stream at the idle timeout, api.stream).
STREAM_STALL_SECONDS = 600.0


def row_chunks(
    fetch: Callable[[int], Sequence[Any]], max_rows: int | None
) -> Iterator[tuple[Sequence[Any], bool]]:
    """The rows of one result set as every reader takes them (pool thread, stream, SQLite),
    so that a statement failing partway leaves the same rows in every answer: a first chunk
    of STREAM_CHUNK + 1 rows (one more than a small answer: it tells a big one), then chunks
    of STREAM_CHUNK, each ``(rows, cut)``; past ``max_rows`` the last chunk is cut to the
    limit with ``cut`` true (one row more is fetched to know). ``fetch(n)`` is the driver's
    ``fetchmany``: an error it raises goes to the caller, the rows of that chunk lost, those
    yielded before kept. (Pure, apart from ``fetch``.)"""
    want = STREAM_CHUNK + 1
    taken = 0
    while True:
        if max_rows is not None:
            want = min(want, max_rows - taken + 1)
        chunk = fetch(want)
        if not chunk:
            return
        if max_rows is not None and taken + len(chunk) > max_rows:
            yield chunk[: max_rows - taken], True
            return
        taken += len(chunk)
        yield chunk, False
        if len(chunk) < want:
            return  # (fewer than asked: the last of them)
        want = STREAM_CHUNK


class RowSink(Protocol):
    """Receives a big result set as it is read (the HTTP layer writes it out as it comes).

    The pool thread calls these through the reactor (``blockingCallFromThread``), and waits on
    ``writable`` between chunks, so a slow client slows the reading (back-pressure)."""

    writable: Any  # a threading.Event: set while the client takes more data
    stopped: bool  # the client went away

    def begin(self, header: list[str], types: list[str], base64: list[int]) -> None: ...

    def rows(self, rows: list[list[Any]]) -> None: ...

    def end(self, answer: Answer) -> None:
        """The end of the answer: its streamed result set's (rows left out: they were sent),
        the error that stopped it, ROLLBACK_ON_ERROR and SERVER, as Answer.to_wire has
        them."""
        ...

    def abandon(self) -> None:
        """Stop: the client reads nothing (its connection is closed)."""
        ...


class Run:
    """One request's execution, shared by the reactor and the pool thread: its time limit, the
    server's id for the connection running it (to kill the statement), and whether it was
    killed."""

    __slots__ = (
        "limit",
        "read_only",
        "max_rows",
        "thread_id",
        "killed",
        "connection",
        "sink",
        "fd",
        "lane",
        "lane_slot",
        "cancelled",
        "kill_lock",
        "killing",
        "read_account",
        "kill_answered",
        "after",
        "after_wait",
        "causal",
        "wire_json",
    )

    def __init__(
        self,
        limit: float | None = None,
        read_only: bool = False,
        max_rows: int | None = None,
    ) -> None:
        self.limit = limit
        #: Rows one result set may carry; past it the answer is cut and marked TRUNCATED.
        self.max_rows = max_rows
        #: The answer is rendered as JSON and not kept (no cache): the reactor lane may render
        #: a result set's rows from the wire (gateway.wirejson).
        self.wire_json = False
        #: A read-role request: it runs on the backend's read account where there is one, and
        #: in a read-only session in any case, so the database refuses any write.
        self.read_only = read_only
        self.thread_id: int | None = None
        #: True once a KILL QUERY for this run is being sent (set before it goes out, so that
        #: the statement's error, which may come first, is known for the KILL's).
        self.killed = False
        #: Held by a KILL QUERY from its check of ``thread_id`` to the server's answer, and by
        #: the pool thread that ends the run before its connection serves anyone else: a KILL
        #: never reaches the next statement of a reused connection.
        self.kill_lock = threading.Lock()
        #: The KILL QUERY in flight (None: none); the reactor lane keeps the slot until it ends.
        self.killing: Deferred[None] | None = None
        #: The run holds a connection of the backend's read account (its KILL goes as that
        #: account: another account's threads are not its to kill without SUPER).
        self.read_account = False
        #: True once the server answered a KILL QUERY for this run (done, or refused with a
        #: server error): a server that answers is not frozen, whatever its statement does.
        self.kill_answered = False
        #: The socket of the connection running it in a pool thread (to abort a read that
        #: hangs on a frozen server), and the reactor lane and slot where the lane runs it.
        self.fd: int | None = None
        self.lane: Any = None
        self.lane_slot: Any = None
        #: Where a big single result set is streamed as its rows are read (None: no streaming).
        self.sink: RowSink | None = None
        self.connection: Any = None
        #: True once the request's HTTP client went away: the statements are being stopped
        #: (the executor's KILL), and a statement not sent yet is not sent.
        self.cancelled = False
        #: Read your writes (gateway.position): the position (AFTER) this backend must have
        #: applied before the statements run, checked and waited for up to ``after_wait``
        #: seconds (PositionNotReached past it); None: no check. ``causal``: run with Galera's
        #: causal reads (wsrep_sync_wait) instead. Either sends the run to a pool thread.
        self.after: str | None = None
        self.after_wait = 0.0
        self.causal = False

    def not_sent_if_cancelled(self, server: str) -> None:
        """Raise ClientGone (nothing ran) when the client went away before the statements
        were sent; called just before sending them."""
        if self.cancelled:
            raise gone_before_sent(server)

    def timeout_error(self, server: str, errno: int | None) -> StatementTimeout:
        limit_ms = int(round((self.limit or 0) * 1000))
        return StatementTimeout(
            f"statement time limit of {limit_ms} ms reached on backend {server}; the statement "
            "was stopped on the server (statements before it in this request may have been "
            "applied). Lower the work, or raise TIMEOUT within max_statement_time",
            errno=errno or 1969,
            server=server,
        )


class PositionNotReached(GatewayError):
    """The backend has not applied the request's AFTER position (and did not within the wait):
    nothing was run there; the executor tries the next candidate (HTTP 503 when none is
    left)."""

    status = 503


class ParamsMismatch(GatewayError):
    """PARAMS do not fit the placeholders of the SQL (HTTP 400)."""

    status = 400


def params_mismatch(detail: object, server: str) -> ParamsMismatch:
    """The 400 for PARAMS the driver could not put into the SQL's placeholders (``detail``:
    the formatting error, or its text)."""
    if isinstance(detail, KeyError):  # (a name the SQL uses that PARAMS lacks)
        name = detail.args[0] if detail.args else ""
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        detail = f"no value in PARAMS for %({text})s"
    elif isinstance(detail, Exception) and detail.args:
        detail = detail.args[0]
    return ParamsMismatch(
        f"PARAMS do not match the placeholders in SQL ({detail}); placeholders are %s or "
        "%(name)s, a literal % is written %%",
        server=server,
    )


#: What the driver's %-formatting of SQL with PARAMS raises when they do not fit: a ``%`` that
#: is not ``%s``, ``%(name)s`` or ``%%`` (ValueError: unsupported format character, incomplete
#: format), too many or too few values or a mapping for ``%s`` (TypeError, which mysqlclient
#: turns into ProgrammingError), a name missing from PARAMS (KeyError).
FORMAT_ERRORS: tuple[type[Exception], ...] = (TypeError, ValueError, KeyError)


def bind_params(cursor: Any, sql: str, params: Any, server: str) -> bytes:
    """The statement as mysqlclient sends it: ``sql`` in the connection's charset with the
    escaped PARAMS put in; ParamsMismatch (400) when they do not fit.

    Both MySQL paths (the reactor lane and a pool thread) bind here, so one request gets one
    answer whichever path takes it. The driver's own formatting decides, not the tokenizer's
    placeholder facts: mysqlclient %-formats the *whole* text, string literals and comments
    included, so ``'5%'`` in a literal fails there although the tokenizer (which counts code
    only) sees one placeholder for one value; only the driver's error is right for the text
    it will send."""
    import MySQLdb

    try:
        query: bytes = cursor._mogrify(sql, params)
    except UnicodeEncodeError as e:  # (before the FORMAT_ERRORS: it is a ValueError)
        raise ParamsMismatch(
            f"SQL cannot be sent in the connection's charset ({e})", server=server
        ) from None
    except (MySQLdb.ProgrammingError, *FORMAT_ERRORS) as e:
        raise params_mismatch(e, server) from None
    return query


def bind_params_sqlite(sql: str, params: Any, server: str) -> tuple[str, Any]:
    """``sql`` and ``params`` as sqlite3 binds them, put in the way mysqlclient puts PARAMS
    into MySQL's SQL (see :func:`bind_params`), so that the demo answers what MySQL answers:
    the whole text is a %-format (as bytes, as the driver formats it), literals and comments
    included; each ``%s`` becomes ``?``, each ``%(name)s`` a ``:pN`` parameter (any JSON key
    may be a name), each ``%%`` a ``%``. ParamsMismatch (400) where the driver would fail."""
    marks: Any
    if isinstance(params, dict):
        marks = {str(key).encode("utf-8"): b":p%d" % i for i, key in enumerate(params)}
        args: Any = {f"p{i}": value for i, value in enumerate(params.values())}
    else:
        marks = tuple(b"?" for _ in params)
        args = tuple(params)
    try:
        text = sql.encode("utf-8", "surrogatepass") % marks
    except FORMAT_ERRORS as e:
        raise params_mismatch(e, server) from None
    return text.decode("utf-8", "surrogatepass"), args


def sql_error(e: BaseException, errno: int, conn: Any = None) -> SQLError:
    """The answer's SQL error for a driver exception carrying a server error number, with
    the PEP 249 class of the exception and the kind of server ``conn`` is connected to."""
    args: tuple[Any, ...] = tuple(getattr(e, "args", ()))
    return SQLError(
        errno,
        str(args[1]) if len(args) > 1 else str(e),
        error_class=error_class_name(e),
        backend_kind=mysql_kind(conn),
    )


def mysql_kind(conn: Any) -> str | None:
    """The kind of server ("mariadb" or "mysql") of a mysqlclient connection, read from the
    version the server sent in its handshake (no round trip) and kept on the connection; None
    when unknown."""
    if conn is None:
        return None
    mariadb = getattr(conn, "_dbslayer_mariadb", None)
    if mariadb is None:
        try:
            info = conn.get_server_info()
        except Exception:  # (a closed connection, or a driver without it: unknown, not wrong)
            return None
        if not isinstance(info, str):
            return None
        mariadb = conn._dbslayer_mariadb = "mariadb" in info.lower()
    return "mariadb" if mariadb else "mysql"


class Backend(Protocol):
    """What the executor needs from a backend."""

    name: str
    spec: BackendSpec

    @property
    def pool(self) -> BackendPool: ...

    def execute(self, request: Request, run: Run | None = None) -> Deferred[Answer]: ...

    def kill(self, run: Run) -> Deferred[None]: ...

    def probe(self) -> Deferred[CheckResult]: ...

    def abort(self, run: Run) -> bool: ...

    def close(self) -> None: ...


class Slot:
    """One of a pool's connections: opened lazily, replaced when it breaks.

    The reactor hands slots out and takes them back; while a pool thread runs a request, the
    slot is that thread's alone. ``lane`` is the reactor lane's per-connection state (see
    :mod:`gateway.lane`), None where the lane is off or the connection is not attached."""

    __slots__ = ("conn", "last_used", "lane")

    def __init__(self) -> None:
        self.conn: Any = None
        #: The pool's clock (its reactor's seconds()) when the connection last finished a
        #: request.
        self.last_used = 0.0
        self.lane: Any = None


class PoolLane(Protocol):
    """What the pool needs from a reactor lane (gateway.lane.ReactorLane)."""

    def detach(self, slot: Slot) -> None: ...

    def attach(self, slot: Slot) -> None: ...


class BackendPool(adbapi.ConnectionPool):  # type: ignore[misc]
    """At most ``cp_max`` connections to one server, handed out by the reactor.

    adbapi gives the threads, the driver and the connection arguments; the connections are
    slots the reactor hands out (rather than adbapi's one connection per thread), so a
    request can run in a pool thread (:meth:`run`) or, through the reactor lane, in the
    reactor thread itself, on the same bounded set of connections. Requests beyond
    ``cp_max`` wait their turn in order.

    Before use in a thread, a connection is checked (adbapi's ``cp_reconnect`` only drops a
    connection after it has failed a request): a ping after a long idle time, else a local
    look at the socket; a dead one is replaced, and a connection that cannot be made is a
    :class:`BackendUnavailable` (nothing was sent). ``run(func, *args)`` calls
    ``func(connection, *args)`` without adbapi's implicit commit/rollback round trips;
    transactions are the caller's business.
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
        self._free: list[Slot] = [Slot() for _ in range(self.max)]
        #: Called with a slot each, in order, as slots are given back.
        self._waiting: deque[Callable[[Slot], object]] = deque()
        self._slots = list(self._free)
        #: Slots handed out (running or about to run a request), counted in the reactor.
        self.in_use = 0
        #: The reactor lane, when one runs on this pool.
        self.lane: PoolLane | None = None
        #: Requests run in a pool thread (for /stats and /metrics).
        self.thread_runs = 0

    # ------------------------------------------------------- in the reactor thread

    def take(self) -> Slot | None:
        """A free slot (the most recently used first), or None when all are in use."""
        if self._free:
            self.in_use += 1
            return self._free.pop()
        return None

    def wait(self) -> Deferred[Slot]:
        """A slot, when one is given back (first come, first served)."""
        d: Deferred[Slot] = Deferred()
        self._waiting.append(d.callback)
        return d

    def queue(self, start: Callable[[Slot], object]) -> None:
        """Call ``start(slot)`` when a slot is given back (first come, first served)."""
        self._waiting.append(start)

    def give_back(self, slot: Slot) -> None:
        if self._waiting:
            self._waiting.popleft()(slot)
            return
        self.in_use -= 1
        self._free.append(slot)

    def run(self, func: Callable[..., T], *args: Any) -> Deferred[T]:
        """``func(connection, *args)`` in a pool thread, on a checked connection."""
        slot = self.take()
        if slot is None:
            return self.wait().addCallback(self.run_in_thread, func, args)
        return self.run_in_thread(slot, func, args)

    def run_in_thread(
        self, slot: Slot, func: Callable[..., T], args: tuple[Any, ...], check: bool = True
    ) -> Deferred[T]:
        """Run on a slot already taken, then give it back. ``check=False``: the connection
        is mid-request (handed over by the reactor lane) and is used as it is."""
        if self.lane is not None and slot.lane is not None:
            self.lane.detach(slot)
        self.thread_runs += 1
        d = threads.deferToThreadPool(
            self._reactor, self.threadpool, self._in_thread, slot, func, args, check
        )
        d.addBoth(self._thread_done, slot)
        return d

    def _thread_done(self, result: T, slot: Slot) -> T:
        if self.lane is not None:
            self.lane.attach(slot)
        self.give_back(slot)
        return result

    def info(self) -> dict[str, int]:
        """Connections in use and idle, and the most this pool opens."""
        idle = sum(1 for slot in self._free if slot.conn is not None)
        return {"in_use": self.in_use, "idle": idle, "max": self.max}

    def check(self) -> Deferred[bool]:
        """True when a connection can be had and answers a ping; never fails."""
        d = self.run(lambda conn: True)
        d.addErrback(lambda _: False)
        return d

    def finalClose(self) -> None:
        super().finalClose()  # stops the threads
        for slot in self._slots:
            if self.lane is not None and slot.lane is not None:
                self.lane.detach(slot)
            self.discard(slot)
        self._waiting.clear()  # (the reactor is stopping: nobody waits for these answers)

    # ---------------------------------------------------------- in a pool thread

    def _in_thread(
        self, slot: Slot, func: Callable[..., T], args: tuple[Any, ...], check: bool
    ) -> T:
        conn = self.checkout(slot) if check else slot.conn
        try:
            return func(conn, *args)
        except BaseException as e:
            if self._is_broken(e):
                self.discard(slot)
            raise
        finally:
            slot.last_used = self._reactor.seconds()
            if slot.conn is not None and getattr(slot.conn, "_dbslayer_discard", False):
                # The answer was cut short with rows still unread: closing the connection is
                # cheaper than reading them, and the server stops the statement.
                self.discard(slot)

    def checkout(self, slot: Slot) -> Any:
        """The slot's connection, checked; a dead one is replaced by a new connection.

        Raises BackendUnavailable when no connection can be made: nothing was sent."""
        if slot.conn is not None:
            try:
                self.ping(slot.conn, slot.last_used)
            except self.dbapi.Error:
                self.discard(slot)
        if slot.conn is None:
            try:
                slot.conn = self.open_connection()
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
        return slot.conn

    def open_connection(self) -> Any:
        conn = self.dbapi.connect(*self.connargs, **self.connkw)
        if self.openfun is not None:
            self.openfun(conn)
        return conn

    #: A connection idle longer than this gets a real ping (a round trip) before use; one used
    #: more recently is checked locally: an idle MySQL connection has nothing to read, so a
    #: readable socket means the server closed it (restart, kill, wait_timeout).
    PING_AFTER_IDLE = 10.0

    def ping(self, conn: Any, last_used: float) -> None:
        if not last_used or self._reactor.seconds() - last_used > self.PING_AFTER_IDLE:
            conn.ping()
            return
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            raise self.dbapi.OperationalError(2006, "the server closed the connection")

    def discard(self, slot: Slot) -> None:
        """Close and forget the slot's connection (ignoring errors: it is usually dead
        already)."""
        conn, slot.conn = slot.conn, None
        if conn is None:
            return
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


_SENT_CURSOR: Any = None


def _sent_cursor() -> Any:
    """An unbuffered cursor for a statement the reactor lane already sent: executing it reads
    the answer instead of sending the statement (mysqlclient's cursor, minus the send)."""
    global _SENT_CURSOR
    if _SENT_CURSOR is None:
        from MySQLdb.cursors import SSCursor

        class SentCursor(SSCursor):  # type: ignore[misc]
            def execute(self, query: Any, args: Any = None) -> Any:
                return self._query(query)

            def _query(self, q: Any) -> Any:
                db = self._get_db()
                self._result = None
                self.warning_count = 0
                self.rowcount = None
                self.lastrowid = None
                db.read_query_result()
                self._do_get_result(db)
                self._post_get_result()
                self._executed = q
                return self.rowcount

        _SENT_CURSOR = SentCursor
    return _SENT_CURSOR


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
        return is_client_errno(_mysql_errno(e))
    if isinstance(e, ConnectionLost):
        return True
    return not isinstance(e, GatewayError)


def timed_out(run: Run, answer: Answer) -> bool:
    """Did the server stop the request's statement (its time limit, or a KILL QUERY it
    answered)? Only the server's own error says so: a statement that completed, however late,
    has its result. (A streamed answer ends with its own error instead.)"""
    error = answer.error
    if answer.streamed or error is None:
        return False
    if error.errno == 1317:  # "query execution was interrupted": by our KILL, or another's
        return run.killed
    return error.errno in TIMEOUT_ERRNOS or (run.killed and error.errno == 1028)


def may_leave_state(request: Request) -> bool:
    """The tokenizer's verdict (gateway.sql, ``session``): the request's SQL may leave session
    state that the server does not flag (see gateway.session). A request without SQL leaves
    none."""
    facts = request.read()
    return facts is not None and facts.session


def _ends_with_ok(request: Request, answer: Answer) -> bool:
    """The connection's last packet is the OK packet of the request's last statement (or of
    its ROLLBACK_ON_ERROR commit): its tracker entries are the request's, as its status is. (A
    result set ends with an EOF packet, which carries none; after an error or an info flag,
    not known.)"""
    if request.info or answer.error is not None or not answer.results:
        return False
    return request.rollback_on_error or isinstance(answer.results[-1], Update)


def run_sink_wanted(run: Run, answer: Answer) -> bool:
    """Stream this result set? Only where the executor gave the run a sink (it does so for
    single-statement answers that are not cached) and the row limit allows a big answer."""
    if run.sink is None or answer.results:
        return False
    return run.max_rows is None or run.max_rows > STREAM_CHUNK


class MySQLBackend:
    """A MySQL or MariaDB server reached through mysqlclient.

    Requests run on connections of the backend's main account (``pool``), except read-role
    requests where the backend names a read account (``read_user``): those run only on that
    account's connections (``read_pool``, slots of their own), so the database refuses their
    writes whatever the SQL text says. Every connection goes back to its pool in the state of
    a new one (:mod:`gateway.session`)."""

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
        reactor_lane: bool = True,
        galera: bool = False,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.reactor = reactor
        #: Galera mode: the health check reads the node's wsrep state (gateway.galera).
        self.galera = galera
        self.session = NativeSession()
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
        self.pool = self._pool(kwargs, pool_min, pool_max)
        read_user = getattr(spec, "read_user", "")
        #: "account" when reads run on a read account of their own, "session" when they run on
        #: the main account in a read-only session (the gateway's classifier and the session
        #: setting, which the client's own SQL can lower).
        self.read_enforcement = "account" if read_user else "session"
        self.read_pool: BackendPool | None = None
        if read_user:
            read_kwargs = {**kwargs, "user": read_user, "passwd": spec.read_password}
            self.read_pool = self._pool(read_kwargs, pool_min, pool_max, read_account=True)
        # Health checks and KILL QUERY use connections of their own, with short timeouts, so a
        # pool busy with long statements never delays them.
        short = max(1, math.ceil(connect_timeout))
        self._control = {**kwargs, "read_timeout": short, "write_timeout": short}
        self._read_control = self._control
        if read_user:
            self._read_control = {**self._control, "user": read_user, "passwd": spec.read_password}
        self.health_pool = BackendPool(
            "MySQLdb",
            spec.name,
            _mysql_is_broken,
            cp_min=1,
            cp_max=1,
            cp_reactor=reactor,
            cp_noisy=False,
            **self._control,
        )
        self.lane: Any = None
        self.read_lane: Any = None
        if reactor_lane:
            from gateway.lane import ReactorLane

            self.lane = ReactorLane(self, self.pool, reactor, read_timeout=read_timeout)
            if self.read_pool is not None:
                self.read_lane = ReactorLane(
                    self, self.read_pool, reactor, read_timeout=read_timeout
                )

    def _pool(
        self, kwargs: dict[str, Any], pool_min: int, pool_max: int, read_account: bool = False
    ) -> BackendPool:
        account = (kwargs["user"], kwargs["passwd"])
        return BackendPool(
            "MySQLdb",
            self.name,
            _mysql_is_broken,
            cp_min=pool_min,
            cp_max=pool_max,
            cp_reactor=self.reactor,
            cp_noisy=False,
            cp_openfun=lambda conn: self._set_up(conn, account, read_account),
            **kwargs,
        )

    def execute(self, request: Request, run: Run | None = None) -> Deferred[Answer]:
        run = run or Run()
        if run.read_only and self.read_pool is not None:
            pool, lane = self.read_pool, self.read_lane
            run.read_account = True
        else:
            pool, lane = self.pool, self.lane
        if lane is not None:
            return lane.execute(request, run)  # type: ignore[no-any-return]
        return pool.run(self._execute, request, run)

    def kill(self, run: Run) -> Deferred[None]:
        """Stop the run's statement with KILL QUERY over a separate connection; ``run.killed``
        says, once the server has answered it, that it was sent."""
        thread_id = run.thread_id
        if thread_id is None:
            return succeed(None)
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self._kill_query, run, thread_id
        )
        run.killing = d

        def ended(result: Any) -> Any:
            if run.killing is d:
                run.killing = None
            return result

        d.addBoth(ended)
        return d

    def abort(self, run: Run) -> bool:
        """Break the connection running ``run`` (a frozen server answers neither the statement
        nor the KILL): the request fails as a lost connection, whose outcome is not known.
        False when the run no longer holds a connection."""
        lane, slot = run.lane, run.lane_slot
        if lane is not None and slot is not None:
            return bool(lane.abort(slot, run))
        fd = run.fd
        if fd is None:
            return False
        try:  # (a duplicate descriptor: shutdown acts on the socket the thread reads from)
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        return True

    def probe(self) -> Deferred[CheckResult]:
        """One health check: connect (or ping), read @@read_only, and replication for replicas."""
        d = self.health_pool.run(self._probe)
        d.addErrback(_failed_check)
        return d

    def close(self) -> None:
        for lane in (self.lane, self.read_lane):
            if lane is not None:
                lane.close()
        self.pool.close()
        if self.read_pool is not None:
            self.read_pool.close()
        self.health_pool.close()

    # Everything below runs in a pool thread.

    def _set_up(self, conn: Any, account: tuple[str, str], read_account: bool) -> None:
        """Set a new connection up: character set, autocommit, session tracking."""
        import MySQLdb

        conn._dbslayer_account = account
        conn._dbslayer_read_account = read_account
        conn._dbslayer_limit = UNSET
        conn._dbslayer_read_only = None
        # MariaDB reports the position after each write (last_gtid, gateway.position).
        keep = (GTID_TRACKING,) if mysql_kind(conn) == "mariadb" else ()
        try:
            conn.query(setup_statement(self.spec.charset, keep))
        except MySQLdb.OperationalError as e:
            if _mysql_errno(e) != 1193:  # (unknown variable: a server without tracking)
                raise
            conn._dbslayer_untracked = True

    def _kill_query(self, run: Run, thread_id: int) -> None:
        import MySQLdb

        with run.kill_lock:  # (the run's connection serves nobody else until the KILL ends)
            if run.thread_id != thread_id:
                return  # it finished meanwhile: its connection may run someone else's statement
            control = self._read_control if run.read_account else self._control
            conn = MySQLdb.connect(**control)
            try:
                run.killed = True
                conn.query(f"KILL QUERY {int(thread_id)}")
                run.kill_answered = True
            except MySQLdb.Error as e:
                errno = _mysql_errno(e)
                run.kill_answered = errno is not None and not is_client_errno(errno)
                raise
            finally:
                conn.close()

    def _probe(self, conn: Any) -> CheckResult:
        if self.galera:
            return self._probe_galera(conn)
        cursor = conn.cursor()
        try:
            cursor.execute("SELECT @@global.read_only")
            read_only = bool(int(cursor.fetchall()[0][0]))
            if self.spec.role != "replica":
                return CheckResult(ok=True, read_only=read_only)
            cursor.execute("SHOW SLAVE STATUS")
            rows = cursor.fetchall()
            if not rows:
                return CheckResult(ok=True, read_only=read_only, lag=None, replicating=False)
            status = dict(zip([d[0] for d in cursor.description], rows[0]))
            running = status.get("Slave_IO_Running") == "Yes" and (
                status.get("Slave_SQL_Running") == "Yes"
            )
            lag = status.get("Seconds_Behind_Master")
            return CheckResult(
                ok=True,
                read_only=read_only,
                lag=None if lag is None else float(lag),
                replicating=running,
            )
        finally:
            cursor.close()

    def _probe_galera(self, conn: Any) -> CheckResult:
        """Galera mode's check: read_only, wsrep_on and the wsrep status in one round trip
        (SHOW only: a node outside the primary component answers those, and refuses the rest).
        A server that does not know wsrep_on (MySQL) is no Galera node either."""
        import MySQLdb

        from gateway.galera import PROBE_SQL, parse_wsrep, read_only_of

        cursor = conn.cursor()
        try:
            cursor.execute(PROBE_SQL)
            variables = cursor.fetchall()
            status = cursor.fetchall() if cursor.nextset() else ()
        except MySQLdb.Error as e:
            errno = _mysql_errno(e)
            if is_client_errno(errno):
                raise
            # The server answered but not with its wsrep state: out at once (ok, no facts).
            message = e.args[1] if len(e.args) > 1 else str(e)
            return CheckResult(ok=True, errno=errno, error=f"wsrep state unreadable ({message})")
        finally:
            cursor.close()
        return CheckResult(
            ok=True, read_only=read_only_of(variables), wsrep=parse_wsrep(variables, status)
        )

    def _execute(self, conn: Any, request: Request, run: Run, already_sent: bool = False) -> Answer:
        import MySQLdb

        sent = [already_sent]
        run.fd = conn.fileno()
        try:
            return self._execute_on(conn, request, run, sent, already_sent)
        except MySQLdb.Error as e:
            # Statement errors are part of the answer; what escapes is the connection failing
            # (a KILL QUERY never breaks it, so the outcome is not known: never a 504 here).
            raise self._connection_error(e, _mysql_errno(e), not_sent=not sent[0]) from None
        finally:
            run.fd = None
            with run.kill_lock:  # (a KILL on its way for this run lands before the next one)
                run.thread_id = None

    def _finish_sent(self, conn: Any, request: Request, run: Run) -> Answer:
        """Read the answer to a request the reactor lane sent, when it did not arrive whole at
        once (a big or slow result set): streaming, row limit and errors as usual."""
        return self._execute(conn, request, run, already_sent=True)

    def _execute_on(
        self,
        conn: Any,
        request: Request,
        run: Run,
        sent: list[bool],
        already_sent: bool = False,
    ) -> Answer:
        import MySQLdb

        answer = Answer(server=self.name)
        run.thread_id = conn.thread_id()  # (from here on, a KILL QUERY reaches it)
        if not already_sent:
            run.not_sent_if_cancelled(self.name)
            if request.sql is not None and (run.after is not None or run.causal):
                self._reach_position(conn, run)  # (read your writes: gateway.position)
        changed = [False]
        stopped = False
        try:
            if request.sql is not None:
                if not already_sent:  # (the lane sends only where the session is set already)
                    self._set_limit(conn, run.limit)
                    self._set_read_only(conn, run.read_only)
                transaction = request.rollback_on_error
                if transaction:
                    conn.autocommit(False)
                try:
                    self._run_sql(conn, request, answer, sent, run, already_sent, changed)
                except ParamsMismatch:
                    if transaction:
                        conn.rollback()
                        conn.autocommit(True)
                    raise
                stopped = timed_out(run, answer)
                if transaction:
                    self._finish_transaction(conn, answer)
                    conn.autocommit(True)
                if answer.streamed and run.sink is not None:
                    # Ended here, after the transaction: its tail is the answer's own keys
                    # (ROLLBACK_ON_ERROR... included), as a buffered answer has them.
                    threads.blockingCallFromThread(self.reactor, run.sink.end, answer)
            for key in request.info:
                answer.extras[key] = self._info(conn, key, MySQLdb)
        except MySQLdb.Error:
            raise  # the connection failed: the pool discards it
        except BaseException:
            self._clean(conn, request, answer, changed=True)
            raise
        self._clean(conn, request, answer, changed[0])
        if getattr(conn, "_dbslayer_causal", False) and not getattr(
            conn, "_dbslayer_discard", False
        ):
            # (back to the connection's own setting before it serves anyone else)
            try:
                conn.query("SET SESSION wsrep_sync_wait = DEFAULT")
                conn._dbslayer_causal = False
            except MySQLdb.Error:
                conn._dbslayer_discard = True  # (closed: nobody gets its causal reads)
        if stopped:
            raise run.timeout_error(self.name, answer.error.errno if answer.error else None)
        return answer

    def _reach_position(self, conn: Any, run: Run) -> None:
        """Read your writes, before the statements (gateway.position): Galera's causal reads
        for this request (``run.causal``), or the position ``run.after`` applied here, checked
        against ``@@gtid_current_pos`` and else waited for with MASTER_GTID_WAIT up to
        ``run.after_wait`` seconds; PositionNotReached when it is not (nothing ran)."""
        import MySQLdb

        after = run.after
        self._set_limit(conn, run.limit)  # (the wait runs under the request's time limit)
        if run.causal:
            conn.query("SET SESSION wsrep_sync_wait = 1")
            conn._dbslayer_causal = True
            return
        if after is None:
            return
        cursor = conn.cursor()
        try:
            cursor.execute("SELECT @@GLOBAL.gtid_current_pos")
            if covers(cursor.fetchall()[0][0], after):
                return
            if run.after_wait > 0:
                cursor.execute(wait_statement(after, run.after_wait))
                if cursor.fetchall()[0][0] == 0:
                    return
        except MySQLdb.Error as e:
            errno = _mysql_errno(e)
            if errno is None or is_client_errno(errno):
                raise  # (the connection failed before the statements were sent)
            message = e.args[1] if len(e.args) > 1 else str(e)
            raise PositionNotReached(
                f"backend {self.name} cannot say whether it has applied AFTER {after} "
                f"({message}); nothing ran there",
                errno=errno,
                server=self.name,
            ) from None
        except BadPosition:
            raise PositionNotReached(
                f"backend {self.name} reports no GTID position; nothing ran there",
                server=self.name,
            ) from None
        finally:
            cursor.close()
        raise PositionNotReached(
            f"backend {self.name} had not applied AFTER {after} within "
            f"{run.after_wait:g} s; nothing ran there",
            server=self.name,
        )

    def _clean(self, conn: Any, request: Request, answer: Answer, changed: bool) -> None:
        """Give the connection back as a new one: reset its session when the server reports
        (or cannot rule out) that the request changed it; say so when a transaction the
        request left open is rolled back that way."""
        import MySQLdb

        if getattr(conn, "_dbslayer_discard", False):
            return  # (closed after the request anyway)
        untracked = getattr(conn, "_dbslayer_untracked", False)
        final = None if untracked else self.session.status(conn)
        if final is not None and answer.error is not None and not answer.results:
            # The first statement failed, so none of the request's ran: the status is still
            # the one the session's own setup left (SET SESSION max_statement_time flags a
            # change), and that setup is the configured state.
            final = SERVER_STATUS_AUTOCOMMIT
        if (
            final is not None
            and final & SERVER_SESSION_STATE_CHANGED
            and _ends_with_ok(request, answer)
            and not self.track_position(conn, answer)
        ):
            final &= ~SERVER_SESSION_STATE_CHANGED  # (flagged for the position after a write)
        if not conn._dbslayer_read_account and not session_changed(
            final, changed, may_leave_state=may_leave_state(request)
        ):
            return  # (a read account's session is always reset: see ReactorLane._read)
        open_transaction = transaction_open(final)
        if final is None:
            try:
                cursor = conn.cursor()
                cursor.execute("SELECT @@in_transaction")
                open_transaction = bool(cursor.fetchall()[0][0])
                cursor.close()
            except MySQLdb.Error:
                conn._dbslayer_discard = True  # (closing it rolls back just as well)
        if open_transaction:
            answer.extras["ROLLED_BACK"] = True
        self.reset_session(conn)

    def track_position(self, conn: Any, answer: Answer) -> bool:
        """Read the session tracker entries of the OK packet just read (it was flagged
        SERVER_SESSION_STATE_CHANGED): the position after a write goes into the answer
        (``GTID``, gateway.position); True when anything else changed the session (or the
        entries cannot be read)."""
        entries = self.session.tracked(conn, SESSION_TRACK_TYPES)
        if entries is None:
            return True
        gtid, changed = read_tracked(entries)
        if gtid is not None:
            answer.extras["GTID"] = merge(answer.extras.get("GTID"), gtid)
        return changed

    def reset_session(self, conn: Any) -> None:
        """In a pool thread: reset the connection's session and set it up again. A connection
        that fails it is marked to be closed, which cleans the session on the server just as
        well."""
        import MySQLdb

        if getattr(conn, "_dbslayer_discard", False):
            return
        try:
            self._reset_session(conn)
        except MySQLdb.Error:
            conn._dbslayer_discard = True

    def _reset_session(self, conn: Any) -> None:
        user, password = conn._dbslayer_account
        limit, read_only = conn._dbslayer_limit, conn._dbslayer_read_only
        mariadb = getattr(conn, "_dbslayer_mariadb", None)
        keep = []  # the gateway's own settings, restored in the same round trip
        if mariadb is not None and limit is not UNSET:
            keep.append(self._limit_assignment(mariadb, limit))
        else:
            limit = UNSET
        if mariadb is not None and read_only is not None:
            keep.append(
                f"{'tx_read_only' if mariadb else 'transaction_read_only'} = {int(read_only)}"
            )
        else:
            read_only = None
        if mariadb:
            keep.append(GTID_TRACKING)  # (the position after each write: gateway.position)
        conn._dbslayer_limit, conn._dbslayer_read_only = UNSET, None  # (until it succeeded)
        self.session.reset(conn, user, password, self.spec.database, self.spec.charset, keep)
        conn._dbslayer_limit, conn._dbslayer_read_only = limit, read_only
        conn._dbslayer_causal = False  # (the reset set wsrep_sync_wait back)

    @staticmethod
    def _limit_assignment(mariadb: bool, limit: float | None) -> str:
        """The session setting of the statement time limit (MariaDB: max_statement_time in
        seconds; MySQL: max_execution_time in milliseconds, SELECT statements only)."""
        if mariadb:
            return f"max_statement_time = {0 if limit is None else max(0.001, limit):.3f}"
        return f"max_execution_time = {0 if limit is None else max(1, int(limit * 1000))}"

    def _set_limit(self, conn: Any, limit: float | None) -> None:
        """Set the server-side statement time limit of this connection's session, only when it
        differs from what the connection already has (most requests cost no round trip)."""
        if getattr(conn, "_dbslayer_limit", None) == limit:
            return
        mariadb = getattr(conn, "_dbslayer_mariadb", None)
        if mariadb is None:
            mariadb = conn._dbslayer_mariadb = "mariadb" in conn.get_server_info().lower()
        conn.query(f"SET SESSION {self._limit_assignment(mariadb, limit)}")
        conn._dbslayer_limit = limit

    def _set_read_only(self, conn: Any, read_only: bool) -> None:
        """Make the session read-only (or not), only when it changes: with it, the server
        refuses any write, even one hidden in a stored function called by a SELECT."""
        if getattr(conn, "_dbslayer_read_only", False) is read_only:
            return
        conn.query(f"SET SESSION TRANSACTION {'READ ONLY' if read_only else 'READ WRITE'}")
        conn._dbslayer_read_only = read_only

    def _run_sql(
        self,
        conn: Any,
        request: Request,
        answer: Answer,
        sent: list[bool],
        run: Run,
        already_sent: bool = False,
        changed: list[bool] | None = None,
    ) -> None:
        """Run the request's SQL and read every result into the answer; ``changed[0]`` is set
        when the server flagged a session change on any of them (the status of each
        statement's OK/EOF packet is read before the next result replaces it)."""
        max_rows = run.max_rows
        import MySQLdb
        from MySQLdb.cursors import SSCursor

        # An unbuffered cursor: rows are read from the server as they are fetched, so the row
        # limit bounds the memory an answer takes, however large the result.
        cursor = conn.cursor(_sent_cursor() if already_sent else SSCursor)
        cut = False
        try:
            if already_sent:  # (the lane bound and sent it: the cursor only reads the answer)
                query: Any = request.sql
            else:
                query = bind_params(cursor, request.sql or "", request.params, self.name)
            try:
                sent[0] = True
                cursor.execute(query)
            except MySQLdb.OperationalError as e:
                if _mysql_errno(e) == 2006:  # "gone away" while sending: nothing reached it
                    sent[0] = False
                raise
            while True:
                if (
                    cursor.description is not None
                    and run_sink_wanted(run, answer)
                    and self._last_result(conn, request)
                ):
                    cut = self._stream(conn, cursor, answer, run)
                    if cut or answer.streamed:
                        break
                elif cursor.description is not None:
                    cut = self._read_rows(conn, cursor, answer, max_rows)
                    if cut:
                        break
                else:
                    answer.results.append(Update(max(cursor.rowcount, 0), cursor.lastrowid or 0))
                ok = cursor.description is None  # (an OK packet: it carries tracker entries)
                if changed is not None and (ok or not changed[0]):
                    status = self.session.status(conn)
                    flagged = status is None or bool(status & SERVER_SESSION_STATE_CHANGED)
                    if flagged and ok and status is not None:
                        flagged = self.track_position(conn, answer)
                    changed[0] = changed[0] or flagged
                if cursor.nextset() is None:
                    break
        except MySQLdb.Error as e:
            errno = _mysql_errno(e)
            if errno is None or is_client_errno(errno):
                raise
            answer.error = sql_error(e, errno, conn)
        finally:
            if not cut:
                try:
                    cursor.close()
                except MySQLdb.Error:
                    pass
        if run.sink is not None and run.sink.stopped:  # (its statement was killed: _stream)
            raise ClientGone(
                f"the client went away while its answer streamed from backend {self.name}; "
                "the statement was stopped there",
                "stopped",
                server=self.name,
            )

    def _last_result(self, conn: Any, request: Request) -> bool:
        """No other result follows the one being read, as the server's status flags say once
        its columns are read (a CALL, a compound statement, EXECUTE IMMEDIATE have more:
        their answer is an array, which a stream begun as an object could not become);
        without the flags, a statement the tokenizer reads as a plain read."""
        status = self.session.status(conn)
        if status is None:
            facts = request.read()
            return facts is not None and facts.read
        return not status & SERVER_MORE_RESULTS_EXISTS

    def _read_rows(self, conn: Any, cursor: Any, answer: Answer, max_rows: int | None) -> bool:
        """Read a result set into the answer, in the chunks of :func:`row_chunks` (as a
        stream reads it); True when the row limit cut it (rows left unread). A statement that
        fails while its rows are read keeps those of the chunks read before (``partial``: the
        rows a streamed answer had sent), then the error goes on to the caller."""
        import MySQLdb

        rows: list[Any] = []
        cut = False
        try:
            for chunk, last in row_chunks(cursor.fetchmany, max_rows):
                rows.extend(chunk)
                cut = last
        except MySQLdb.Error as e:
            errno = _mysql_errno(e)
            if rows and errno is not None and not is_client_errno(errno):
                answer.results.append(result_set(cursor.description, rows))
                answer.partial = True
            raise
        answer.results.append(result_set(cursor.description, rows, truncated=cut))
        if cut:
            conn._dbslayer_discard = True
        return cut

    def _stream(self, conn: Any, cursor: Any, answer: Answer, run: Run) -> bool:
        """Read the result set in the chunks of :func:`row_chunks`; a small one (a first
        chunk short of STREAM_CHUNK + 1) stays in the answer, a big one goes to the run's
        sink as it is read, and the answer holds its header and types (``streamed``: the
        executor's caller ends the stream, :meth:`_execute_on`). True when rows were left
        unread (cut, failed or abandoned)."""
        import MySQLdb

        sink = run.sink
        assert sink is not None
        chunks = row_chunks(cursor.fetchmany, run.max_rows)
        first, cut = next(chunks, ([], False))  # (an error here: no row read, the caller's)
        if len(first) <= STREAM_CHUNK:
            answer.results.append(result_set(cursor.description, first, truncated=cut))
            if cut:
                conn._dbslayer_discard = True
            return cut
        head = result_set(cursor.description, first)
        call = threads.blockingCallFromThread
        call(self.reactor, sink.begin, head.header, head.types, head.base64)
        call(self.reactor, sink.rows, head.rows)
        error = None
        try:
            while True:
                if not sink.writable.wait(STREAM_STALL_SECONDS) and not sink.stopped:
                    # The client took nothing for that long (the HTTP side gives up sooner, at
                    # the idle timeout, unless that is off): it is taken as gone.
                    call(self.reactor, sink.abandon)
                if sink.stopped:  # the client went away: stop the statement, drop the rows
                    conn._dbslayer_discard = True
                    if run.thread_id is not None:
                        self._kill_query(run, run.thread_id)
                    return True
                following = next(chunks, None)
                if following is None:
                    break
                chunk, cut = following
                rows = [list(r) for r in chunk]
                for row in rows:
                    for i in head.base64:
                        if row[i] is not None:
                            row[i] = b64encode(row[i]).decode("ascii")
                if rows:
                    call(self.reactor, sink.rows, rows)
                if cut:
                    conn._dbslayer_discard = True
                    break
        except MySQLdb.Error as e:
            errno = _mysql_errno(e) or 2013
            error = sql_error(e, errno, conn)
            if run.killed and errno in (*TIMEOUT_ERRNOS, 1028):
                error = attrs.evolve(
                    error, errno=errno, message=f"statement time limit reached ({error.message})"
                )
            conn._dbslayer_discard = True
        # The streamed result set, rows left out (they are sent): what the stream's tail and
        # the statistics read; an error that stopped it is the answer's (``partial``).
        answer.results.append(
            ResultSet(head.header, head.types, [], base64=head.base64, truncated=cut)
        )
        if error is not None:
            answer.error, answer.partial = error, True
        answer.streamed = True
        return cut or error is not None

    def _connection_error(
        self, e: BaseException, errno: int | None, not_sent: bool
    ) -> ConnectionLost:
        message = e.args[1] if len(e.args) > 1 else str(e)
        if not_sent:
            text = (
                f"connection to backend {self.name} broke before the statements were sent "
                f"({message}); nothing ran"
            )
        else:
            text = (
                f"connection to backend {self.name} lost while the statements ran "
                f"({message}); they may or may not have been applied"
            )
        return ConnectionLost(text, errno=errno or 2013, server=self.name, not_sent=not_sent)

    def _finish_transaction(self, conn: Any, answer: Answer) -> None:
        import MySQLdb

        if answer.error is None:
            conn.commit()
            status = self.session.status(conn)
            if status is not None and status & SERVER_SESSION_STATE_CHANGED:
                self.track_position(conn, answer)  # (the commit's OK: the position after it)
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


def _failed_check(failure: Any) -> CheckResult:
    error = failure.value
    return CheckResult(
        ok=False,
        errno=getattr(error, "errno", None),
        error=getattr(error, "message", None) or str(error),
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


def _sqlite_result(description: Any, rows: list[Any], cut: bool) -> ResultSet:
    """A SQLite result set, each column's type read from its first non-NULL value."""
    types = [
        _sqlite_type(next((r[i] for r in rows if r[i] is not None), None))
        for i in range(len(description))
    ]
    return result_set(description, rows, types, truncated=cut)


class SQLitePool(BackendPool):
    def ping(self, conn: Any, last_used: float) -> None:
        return None


class SQLiteBackend:
    """A SQLite file through the same interface (the embedded demo); one connection, since
    SQLite serialises writers anyway. Statements are split here and run one by one; ``%s``
    and ``%(name)s`` placeholders are rewritten to sqlite3's own, as mysqlclient reads them
    (:func:`bind_params_sqlite`)."""

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

    def execute(self, request: Request, run: Run | None = None) -> Deferred[Answer]:
        return self.pool.run(self._execute, request, run or Run())

    def abort(self, run: Run) -> bool:
        """(A local file: nothing to break off; the interrupt of kill() stops it.)"""
        return False

    def kill(self, run: Run) -> Deferred[None]:
        """Interrupt the run's statement (sqlite3's interrupt is safe from another thread)."""
        run.killed = True
        if run.connection is not None:
            run.connection.interrupt()
        return succeed(None)

    def probe(self) -> Deferred[CheckResult]:
        d = self.pool.run(lambda conn: CheckResult(ok=conn.execute("SELECT 1").fetchone() == (1,)))
        d.addErrback(_failed_check)
        return d

    def close(self) -> None:
        self.pool.close()

    def _execute(self, conn: sqlite3.Connection, request: Request, run: Run) -> Answer:
        answer = Answer(server=self.name)
        run.connection = conn  # (from here on, kill() interrupts it)
        state = (id(conn), run.read_only)
        if getattr(self, "_read_only_state", (id(conn), False)) != state:
            conn.execute(f"PRAGMA query_only = {1 if run.read_only else 0}")
        self._read_only_state = state
        try:
            run.not_sent_if_cancelled(self.name)
            self._execute_on(conn, request, run, answer)
        finally:
            run.connection = None
            if conn.in_transaction:
                # A statement that raised (PARAMS that do not fit, after ROLLBACK_ON_ERROR's
                # BEGIN) left the transaction open: the next request on this connection would
                # run inside it, and its own BEGIN fail.
                conn.execute("ROLLBACK")
        if run.killed:
            raise run.timeout_error(self.name, None)
        return answer

    def _execute_on(
        self, conn: sqlite3.Connection, request: Request, run: Run, answer: Answer
    ) -> None:
        if request.sql is not None:
            sql, params = request.sql, request.params
            if params is not None:
                sql, params = bind_params_sqlite(sql, params, self.name)
            statements = split_statements(sql, "sqlite")
            if request.params is not None and len(statements) > 1:
                raise ParamsMismatch("PARAMS apply to a single statement", server=self.name)
            if request.rollback_on_error:
                conn.execute("BEGIN")
            for statement in statements:
                try:
                    if self._run_one(conn, statement, params, answer, run.max_rows):
                        break  # cut by the row limit: the statements after it do not run
                except sqlite3.ProgrammingError as e:
                    raise params_mismatch(e, self.name) from None
                except sqlite3.Error as e:
                    answer.error = SQLError(
                        int(getattr(e, "sqlite_errorcode", None) or 1),
                        str(e),
                        error_class=error_class_name(e),
                        backend_kind="sqlite",
                    )
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

    def _run_one(
        self,
        conn: sqlite3.Connection,
        statement: str,
        params: Any,
        answer: Answer,
        max_rows: int | None,
    ) -> bool:
        """Run one statement; True when its rows were cut by the row limit."""
        cursor = conn.cursor()
        try:
            cursor.execute(statement, () if params is None else params)
            if cursor.description is not None:
                rows: list[Any] = []
                cut = False
                try:  # (read as every backend reads rows: the same ones kept on an error)
                    for chunk, last in row_chunks(cursor.fetchmany, max_rows):
                        rows.extend(chunk)
                        cut = last
                except sqlite3.Error as e:
                    if rows and not isinstance(e, sqlite3.ProgrammingError):
                        answer.results.append(_sqlite_result(cursor.description, rows, False))
                        answer.partial = True
                    raise
                answer.results.append(_sqlite_result(cursor.description, rows, cut))
                return cut
            answer.results.append(Update(max(cursor.rowcount, 0), cursor.lastrowid or 0))
            return False
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
        return SQLiteBackend(spec, reactor)  # (no lane: SQLite has no socket to watch)
    return MySQLBackend(spec, reactor, **options)
