"""Connection hygiene: a pooled connection goes back to the pool in the state of a new one.

A pooled connection is shared by every user of its database account, one request at a time,
so whatever a request leaves on its session (an open transaction, table or user-level locks,
another database, session variables, temporary tables, user variables, prepared statements,
HANDLERs) would reach the next user. Whether a request left something is decided from what
the server reports, never from the SQL text alone:

- every connection is opened with ``session_track_state_change`` on, so the server sets
  ``SERVER_SESSION_STATE_CHANGED`` in the status flags of a statement's OK/EOF packet when it
  changed the session's database, a session variable, a user variable (``SET @x``), a
  temporary table, a prepared statement or the table locks;
- ``SERVER_STATUS_IN_TRANS`` in the last status says a transaction is still open, and a
  cleared ``SERVER_STATUS_AUTOCOMMIT`` that autocommit was turned off.

The server does not flag everything: user-level locks (``GET_LOCK``), ``HANDLER ... OPEN``,
user variables assigned inside a query (``SELECT @x := 1``, ``SELECT ... INTO @x``) and
``LAST_INSERT_ID(expr)`` leave the flags clear (checked against MariaDB 10.11). For those the
request's own facts count (:attr:`gateway.sql.SQLFacts.session`: the tokenizer's conservative
"may leave state"). Where the status cannot be read at all, the session counts as changed.

A changed session is reset (``COM_RESET_CONNECTION``: one round trip that rolls back the
transaction and releases every lock and drops everything above), then set up again as a new
connection is (:func:`setup_statement`, and the configured database). A reset that fails
discards the connection, which the server then cleans up the same way.

The decisions are pure functions (:func:`session_changed`); :class:`NativeSession` is the thin
shell that reads the status and resets through the client library mysqlclient is linked with
(libmariadb), whose ``mysql_reset_connection`` and ``mariadb_get_infov`` mysqlclient does not
wrap.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

#: Status flags of the OK/EOF packets (mariadb_com.h).
SERVER_STATUS_IN_TRANS = 0x0001
SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_SESSION_STATE_CHANGED = 0x4000

#: ``mariadb_get_infov`` value for the connection's last server status (mysql.h,
#: ``enum mariadb_value``; the enum only grows, so the number is stable).
_MARIADB_CONNECTION_SERVER_STATUS = 30

#: A connection's cached session settings after a reset: never equal to a real setting, so
#: the next request sets its own (see MySQLBackend._set_limit and _set_read_only).
UNSET = "unset"


def session_changed(final: int | None, changed: bool, *, may_leave_state: bool) -> bool:
    """True when a request may have left its session different from a new one.

    ``final`` is the status of the request's last OK/EOF packet (None: not known), ``changed``
    whether any of its statements had ``SERVER_SESSION_STATE_CHANGED``; ``may_leave_state``
    the tokenizer's verdict that the text may leave state the server does not flag (see the
    module docstring). A statement that failed changes nothing by failing: the statuses of
    the statements before it say what they did (an ERR packet carries none, and the client
    library keeps the last status it saw)."""
    if final is None or changed or may_leave_state:
        return True
    if final & (SERVER_STATUS_IN_TRANS | SERVER_SESSION_STATE_CHANGED):
        return True
    return not final & SERVER_STATUS_AUTOCOMMIT


def transaction_open(final: int | None) -> bool:
    """True when the status says a transaction is still open."""
    return final is not None and bool(final & SERVER_STATUS_IN_TRANS)


def setup_statement(charset: str, keep: Sequence[str] = ()) -> str:
    """What a new (or reset) connection runs first: the connection's character set,
    autocommit on, and the session tracking the checks above read; ``keep`` are the gateway's
    own session settings to restore after a reset (``max_statement_time = 60.000``...)."""
    if not charset.replace("_", "").isalnum():
        raise ValueError(f"not a character set name: {charset!r}")
    extra = "".join(f", SESSION {assignment}" for assignment in keep)
    return f"SET NAMES {charset}, SESSION autocommit=1, session_track_state_change=1{extra}"


def quote_identifier(name: str) -> str:
    """A MySQL identifier in backticks (a backtick inside doubled)."""
    return "`" + name.replace("`", "``") + "`"


class NativeSession:
    """Reads a mysqlclient connection's server status and resets its session, through the
    client library mysqlclient is linked with. ``available`` is False where that library has
    neither function (MySQL's libmysqlclient has no ``mariadb_get_infov``): then the status is
    never known and :meth:`reset` changes user (same account), which resets as well."""

    def __init__(self) -> None:
        self.available = False
        self._lib: Any = None
        try:
            import MySQLdb._mysql as _mysql

            lib = ctypes.CDLL(_mysql.__file__)  # its symbols and its dependencies'
            get_info = lib.mariadb_get_infov
            reset = lib.mysql_reset_connection
        except (ImportError, OSError, AttributeError):
            return
        get_info.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        get_info.restype = ctypes.c_ubyte
        reset.argtypes = [ctypes.c_void_p]
        reset.restype = ctypes.c_int
        capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        capsule_pointer.restype = ctypes.c_void_p
        capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        capsule_name = ctypes.pythonapi.PyCapsule_GetName
        capsule_name.restype = ctypes.c_char_p
        capsule_name.argtypes = [ctypes.py_object]
        self._get_info, self._reset = get_info, reset
        self._capsule_pointer, self._capsule_name = capsule_pointer, capsule_name
        self.available = True
        #: The session tracker entries of the last OK packet (gateway.position): the
        #: position after a write, and whether anything but it changed.
        self._track: Any = None
        try:
            first = lib.mysql_session_track_get_first
            following = lib.mysql_session_track_get_next
        except AttributeError:
            return
        for function in (first, following):
            function.argtypes = [
                ctypes.c_void_p,
                ctypes.c_int,
                ctypes.POINTER(ctypes.c_char_p),
                ctypes.POINTER(ctypes.c_size_t),
            ]
            function.restype = ctypes.c_int
        self._track = (first, following)

    def _handle(self, conn: Any) -> int:
        handle = getattr(conn, "_dbslayer_native", None)
        if handle is None:
            capsule = conn._get_native_connection()
            handle = self._capsule_pointer(capsule, self._capsule_name(capsule))
            conn._dbslayer_native = handle
        return int(handle)

    def status(self, conn: Any) -> int | None:
        """The status flags of the connection's last OK/EOF packet; None when unknown."""
        if not self.available:
            return None
        value = ctypes.c_uint(0)
        if self._get_info(
            self._handle(conn), _MARIADB_CONNECTION_SERVER_STATUS, ctypes.byref(value)
        ):
            return None  # (non-zero: the library does not know the value)
        return value.value

    def tracked(self, conn: Any, types: Sequence[int]) -> dict[int, list[bytes]] | None:
        """The session tracker entries (of each type in ``types``) of the connection's last
        OK packet, as the client library parsed them; None when the library cannot say. Only
        meaningful right after an OK packet flagged SERVER_SESSION_STATE_CHANGED (a result
        set's EOF packet carries none: the library keeps the entries of an earlier OK)."""
        if self._track is None:
            return None
        first, following = self._track
        handle = self._handle(conn)
        data, length = ctypes.c_char_p(), ctypes.c_size_t()
        entries: dict[int, list[bytes]] = {}
        for kind in types:
            values = entries[kind] = []
            found = first(handle, kind, ctypes.byref(data), ctypes.byref(length))
            while found == 0:
                values.append(ctypes.string_at(data, length.value))
                found = following(handle, kind, ctypes.byref(data), ctypes.byref(length))
        return entries

    def reset(
        self,
        conn: Any,
        user: str,
        password: str,
        database: str,
        charset: str,
        keep: Sequence[str] = (),
    ) -> None:
        """Reset the session to a new one's and set it up again, with the settings ``keep``
        (raises the driver's OperationalError when the connection fails: the caller discards
        it)."""
        import MySQLdb

        if self.available and database:
            if self._reset(self._handle(conn)) != 0:
                raise MySQLdb.OperationalError(2013, "COM_RESET_CONNECTION failed")
            # (the reset keeps the current database: go back to the configured one)
            conn.query(f"USE {quote_identifier(database)}; {setup_statement(charset, keep)}")
            while conn.next_result() == 0:
                pass
        else:  # no database to go back to with USE, or no reset in the library
            conn.change_user(user, password, database)
            conn.query(setup_statement(charset, keep))
