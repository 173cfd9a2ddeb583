"""ERROR_CLASS and BACKEND_KIND: how the gateway names a driver exception (pure), where the keys
sit in an answer, and how the client and its DB-API adapter read them (no servers)."""

from __future__ import annotations

import json
import sqlite3

import MySQLdb
import pytest
from dbslayer_client import SQLError, dbapi, decode_answer

from gateway.backends import mysql_kind, sql_error
from gateway.results import ERROR_CLASSES, Answer, Update, error_class_name
from gateway.results import SQLError as WireSQLError


@pytest.mark.parametrize(
    "exc, expected",
    [
        (sqlite3.IntegrityError("UNIQUE constraint failed: users.id"), "IntegrityError"),
        (sqlite3.OperationalError('near "SELEC": syntax error'), "OperationalError"),
        (sqlite3.DataError("string or blob too big"), "DataError"),
        (sqlite3.DatabaseError("file is not a database"), "DatabaseError"),
        (MySQLdb.IntegrityError(1062, "Duplicate entry 'a' for key 'name'"), "IntegrityError"),
        (
            MySQLdb.ProgrammingError(1064, "You have an error in your SQL syntax"),
            "ProgrammingError",
        ),
        (MySQLdb.OperationalError(1205, "Lock wait timeout exceeded"), "OperationalError"),
        (MySQLdb.NotSupportedError(1235, "not supported yet"), "NotSupportedError"),
        (MySQLdb.InternalError(1, "internal"), "InternalError"),
        (MySQLdb.DataError(1406, "Data too long"), "DataError"),
        (sqlite3.Error("a bare driver error"), "DatabaseError"),
    ],
)
def test_error_class_is_read_from_the_class(exc: BaseException, expected: str) -> None:
    """The PEP 249 name comes from the exception's class (its MRO), whatever the message."""
    assert error_class_name(exc) == expected and expected in ERROR_CLASSES


def test_error_class_ignores_the_message() -> None:
    """A message that names another class changes nothing; a subclass is its PEP 249 base."""

    class DriverDuplicate(MySQLdb.IntegrityError):
        pass

    assert error_class_name(MySQLdb.OperationalError(1, "IntegrityError")) == "OperationalError"
    assert error_class_name(DriverDuplicate(1062, "dup")) == "IntegrityError"


class _Conn:
    def __init__(self, info: object) -> None:
        self.info = info
        self.calls = 0

    def get_server_info(self) -> object:
        self.calls += 1
        if isinstance(self.info, Exception):
            raise self.info
        return self.info


def test_backend_kind_from_the_handshake_version() -> None:
    """The kind is "mariadb" or "mysql" by the server's version text, read once per
    connection; None when it cannot be read."""
    maria = _Conn("10.11.6-MariaDB-0+deb12u1")
    assert mysql_kind(maria) == "mariadb" and mysql_kind(maria) == "mariadb"
    assert maria.calls == 1
    assert mysql_kind(_Conn("5.5.5-10.6.12-MariaDB-log")) == "mariadb"
    assert mysql_kind(_Conn("8.0.36")) == "mysql"
    assert mysql_kind(_Conn(MySQLdb.InterfaceError(0, ""))) is None
    assert mysql_kind(None) is None
    error = sql_error(MySQLdb.IntegrityError(1062, "Duplicate entry"), 1062, _Conn("8.4.0"))
    assert error == WireSQLError(1062, "Duplicate entry", "IntegrityError", "mysql")


def test_extension_keys_come_after_the_reference_keys() -> None:
    """MYSQL_ERRNO, MYSQL_ERROR, then SERVER (and the rest in the reference's sorted order);
    ERROR_CLASS and BACKEND_KIND after them; absent when unknown."""
    error = WireSQLError(1062, "Duplicate entry", "IntegrityError", "mariadb")
    first = Answer(error=error, server="db1").to_wire()
    assert list(first) == [
        "MYSQL_ERRNO",
        "MYSQL_ERROR",
        "SERVER",
        "ERROR_CLASS",
        "BACKEND_KIND",
    ]
    assert (first["ERROR_CLASS"], first["BACKEND_KIND"]) == ("IntegrityError", "mariadb")
    later = Answer(
        results=[Update(1, 0)],
        error=error,
        server="db1",
        extras={"ROLLBACK_ON_ERROR": True, "ROLLBACK_ON_ERROR_SUCCESS": True},
    ).to_wire()
    assert list(later) == [
        "MYSQL_ERRNO",
        "MYSQL_ERROR",
        "RESULT",
        "ROLLBACK_ON_ERROR",
        "ROLLBACK_ON_ERROR_SUCCESS",
        "SERVER",
        "ERROR_CLASS",
        "BACKEND_KIND",
    ]
    old = Answer(error=WireSQLError(1064, "syntax"), server="db1").to_wire()
    assert list(old) == ["MYSQL_ERRNO", "MYSQL_ERROR", "SERVER"]
    assert list(Answer(results=[Update(1, 0)], server="db1").to_wire()) == ["RESULT", "SERVER"]


def _answer(obj: dict[str, object]) -> bytes:
    return json.dumps(obj).encode()


def test_client_reads_the_extension_keys() -> None:
    """SQLError carries error_class and backend_kind; they are not info flags; an answer
    without them (an older gateway) leaves them None."""
    body = _answer(
        {
            "MYSQL_ERRNO": 1555,
            "MYSQL_ERROR": "UNIQUE constraint failed: users.id",
            "SERVER": "demo",
            "ERROR_CLASS": "IntegrityError",
            "BACKEND_KIND": "sqlite",
        }
    )
    with pytest.raises(SQLError) as caught:
        decode_answer(200, {}, body)
    error = caught.value
    assert (error.error_class, error.backend_kind, error.mysql_errno) == (
        "IntegrityError",
        "sqlite",
        1555,
    )
    assert error.results.info == {}
    with pytest.raises(SQLError) as old:
        decode_answer(200, {}, _answer({"MYSQL_ERRNO": 1062, "MYSQL_ERROR": "dup"}))
    assert old.value.error_class is None and old.value.backend_kind is None


def _dbapi_error(obj: dict[str, object]) -> dbapi.Error:
    try:
        decode_answer(200, {}, _answer(obj))
    except SQLError as e:
        return dbapi._translate(e)
    raise AssertionError("no SQLError")


@pytest.mark.parametrize(
    "error_class, errno, expected",
    [
        ("IntegrityError", 1555, dbapi.IntegrityError),  # SQLite's code: only the class says
        ("OperationalError", 1, dbapi.OperationalError),
        ("ProgrammingError", 1146, dbapi.ProgrammingError),
        ("DataError", 1406, dbapi.DataError),
        ("NotSupportedError", 1235, dbapi.NotSupportedError),
        ("InternalError", 1, dbapi.InternalError),
        ("DatabaseError", 26, dbapi.DatabaseError),
        (None, 1062, dbapi.IntegrityError),  # an older gateway: by MySQL errno
        (None, 1064, dbapi.ProgrammingError),
        (None, 1406, dbapi.DataError),
        (None, 1205, dbapi.OperationalError),
        ("SomethingElse", 1062, dbapi.IntegrityError),  # unknown name: by errno as well
    ],
)
def test_dbapi_maps_error_class_first(
    error_class: str | None, errno: int, expected: type[dbapi.Error]
) -> None:
    obj: dict[str, object] = {"MYSQL_ERRNO": errno, "MYSQL_ERROR": "x", "SERVER": "s"}
    if error_class is not None:
        obj["ERROR_CLASS"] = error_class
        obj["BACKEND_KIND"] = "sqlite"
    error = _dbapi_error(obj)
    assert type(error) is expected
    assert error.errno == errno and error.args == (errno, "x") and error.server == "s"
    assert error.backend_kind == ("sqlite" if error_class is not None else None)
