"""PEP 249 (`dbslayer_client.dbapi`) against a real gateway and MariaDB."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dbslayer_client as client
import pytest
from dbslayer_client import dbapi

from tests.servers import Gateway, MariaDB, free_port


@pytest.fixture(scope="module")
def table(mariadb: MariaDB) -> str:
    mariadb.sql(
        "CREATE OR REPLACE TABLE dbapi_items (id INT AUTO_INCREMENT PRIMARY KEY, "
        "name VARCHAR(20) NOT NULL UNIQUE, price DECIMAL(10,2), weight DOUBLE, "
        "added DATETIME, blob_ BLOB);"
        "INSERT INTO dbapi_items (name, price, weight, added) VALUES "
        "('a', 1.50, 0.5, '2024-01-02 03:04:05'), ('b', 2.00, 1, NULL), "
        "('c', 3.25, NULL, NULL), ('d', NULL, NULL, NULL), ('e', 0.01, 2.5, NULL);",
        "test",
    )
    return "dbapi_items"


@pytest.fixture
def conn(gateway: Gateway) -> Iterator[dbapi.Connection]:
    with dbapi.connect(gateway.url) as c:
        yield c


def test_module_globals() -> None:
    """apilevel, threadsafety, paramstyle and the exception hierarchy are PEP 249's."""
    assert (dbapi.apilevel, dbapi.threadsafety, dbapi.paramstyle) == ("2.0", 1, "pyformat")
    assert issubclass(dbapi.Warning, Exception) and issubclass(dbapi.Error, Exception)
    assert issubclass(dbapi.InterfaceError, dbapi.Error)
    assert issubclass(dbapi.DatabaseError, dbapi.Error)
    for name in (
        "DataError",
        "OperationalError",
        "IntegrityError",
        "InternalError",
        "ProgrammingError",
        "NotSupportedError",
    ):
        cls = getattr(dbapi, name)
        assert issubclass(cls, dbapi.DatabaseError) and getattr(dbapi.Connection, name) is cls


def test_connect_cursor_close(gateway: Gateway) -> None:
    """connect() gives a Connection; cursor() a Cursor; close() is final and may repeat."""
    conn = dbapi.connect(gateway.url, timeout=10)
    cur = conn.cursor()
    assert cur.connection is conn and cur.arraysize == 1
    assert cur.description is None and cur.rowcount == -1 and cur.lastrowid is None
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    cur.close()
    cur.close()
    conn.close()
    conn.close()
    assert conn.closed and cur.closed


def test_fetch_methods_and_arraysize(conn: dbapi.Connection, table: str) -> None:
    """fetchone, fetchmany (arraysize by default) and fetchall walk the rows in order."""
    cur = conn.cursor()
    assert cur.execute(f"SELECT id, name FROM {table} ORDER BY id") is cur
    assert cur.rowcount == 5
    assert cur.fetchone() == (1, "a")
    assert cur.fetchmany() == [(2, "b")]
    cur.arraysize = 2
    assert cur.fetchmany() == [(3, "c"), (4, "d")]
    assert cur.rownumber == 4
    assert cur.fetchmany(10) == [(5, "e")]
    assert cur.fetchmany() == [] and cur.fetchone() is None and cur.fetchall() == []
    cur.execute(f"SELECT name FROM {table} WHERE id > %s ORDER BY id", (3,))
    assert cur.fetchall() == [("d",), ("e",)]


def test_values(conn: dbapi.Connection, table: str) -> None:
    """DECIMAL is a Decimal, DOUBLE a float, DATETIME MySQL's text, NULL None."""
    cur = conn.cursor()
    cur.execute(f"SELECT price, weight, added FROM {table} WHERE name = %(n)s", {"n": "a"})
    assert cur.fetchone() == (Decimal("1.50"), 0.5, "2024-01-02 03:04:05")
    cur.execute(f"SELECT price, weight, added FROM {table} WHERE name = 'd'")
    assert cur.fetchone() == (None, None, None)


def test_description_and_type_objects(conn: dbapi.Connection, table: str) -> None:
    """description has a 7-tuple per column; type codes compare equal to the type objects."""
    cur = conn.cursor()
    cur.execute(f"SELECT id, name, price, weight, added, blob_ FROM {table} LIMIT 1")
    description = cur.description
    assert description is not None and len(description) == 6
    assert all(len(column) == 7 for column in description)
    assert [column[0] for column in description] == [
        "id",
        "name",
        "price",
        "weight",
        "added",
        "blob_",
    ]
    codes = [column[1] for column in description]
    assert codes[0] == "MYSQL_TYPE_LONG" and codes[0] == dbapi.NUMBER
    assert codes[1] == dbapi.STRING and codes[1] != dbapi.NUMBER
    assert codes[2] == dbapi.NUMBER and codes[3] == dbapi.NUMBER
    assert codes[4] == dbapi.DATETIME and codes[5] == dbapi.BINARY
    assert dbapi.ROWID != codes[0] and dbapi.STRING != dbapi.BINARY
    cur.execute(f"UPDATE {table} SET weight = weight WHERE id = 0")
    assert cur.description is None


def test_rowcount_and_lastrowid(conn: dbapi.Connection, mariadb: MariaDB) -> None:
    """rowcount counts affected (or returned) rows; lastrowid is the generated id or None."""
    mariadb.sql(
        "CREATE OR REPLACE TABLE dbapi_auto (id INT AUTO_INCREMENT PRIMARY KEY, v INT)", "test"
    )
    cur = conn.cursor()
    cur.execute("INSERT INTO dbapi_auto (v) VALUES (%s)", [10])
    assert (cur.rowcount, cur.lastrowid) == (1, 1)
    cur.execute("INSERT INTO dbapi_auto (v) VALUES (20), (30)")
    assert (cur.rowcount, cur.lastrowid) == (2, 2)
    cur.execute("UPDATE dbapi_auto SET v = v + 1 WHERE v >= %s", [20])
    assert (cur.rowcount, cur.lastrowid) == (2, None)
    cur.execute("SELECT * FROM dbapi_auto")
    assert cur.rowcount == 3


def test_executemany(conn: dbapi.Connection, mariadb: MariaDB) -> None:
    """executemany runs the statement per parameter set; rowcount is the total."""
    mariadb.sql("CREATE OR REPLACE TABLE dbapi_many (k VARCHAR(5) PRIMARY KEY, v INT)", "test")
    cur = conn.cursor()
    cur.executemany("INSERT INTO dbapi_many VALUES (%s, %s)", [("a", 1), ("b", 2), ("c", 3)])
    assert cur.rowcount == 3
    cur.executemany("UPDATE dbapi_many SET v = %(v)s WHERE k = %(k)s", [{"k": "a", "v": 9}])
    assert cur.rowcount == 1
    cur.execute("SELECT k, v FROM dbapi_many ORDER BY k")
    assert cur.fetchall() == [("a", 9), ("b", 2), ("c", 3)]


def test_integrity_error_on_duplicate_key(conn: dbapi.Connection, table: str) -> None:
    """A duplicate key raises IntegrityError with MySQL's errno 1062, as the gateway's driver
    raised it (ERROR_CLASS), whether it is the only statement or a later one."""
    cur = conn.cursor()
    with pytest.raises(dbapi.IntegrityError) as caught:
        cur.execute(f"INSERT INTO {table} (name) VALUES (%s)", ["a"])
    assert caught.value.errno == 1062 and caught.value.args[0] == 1062
    assert "Duplicate" in caught.value.args[1] and caught.value.server == "db1"
    assert caught.value.backend_kind == "mariadb"
    cause = caught.value.__cause__
    assert isinstance(cause, client.SQLError) and cause.error_class == "IntegrityError"
    with pytest.raises(dbapi.IntegrityError):
        cur.execute(f"INSERT INTO {table} (name) VALUES (NULL)")
    with pytest.raises(dbapi.IntegrityError):
        cur.execute(f"SELECT 1; INSERT INTO {table} (name) VALUES ('b')")


def test_integrity_error_on_the_demo(gateway_factory: Any) -> None:
    """On the embedded SQLite demo too, a duplicate key (and a NOT NULL column left empty) is
    IntegrityError; errors SQLite's driver calls OperationalError (a syntax error) stay so."""
    gw = gateway_factory()  # no backend: the demo database, fresh in this test's tmp
    with dbapi.connect(gw.url) as conn:
        cur = conn.cursor()
        with pytest.raises(dbapi.IntegrityError) as caught:
            cur.execute(
                "INSERT INTO users (id, name, created) VALUES (%s, %s, %s)",
                (1, "again", "2024-01-01"),
            )
        assert caught.value.server == "demo" and caught.value.backend_kind == "sqlite"
        assert "UNIQUE" in caught.value.args[1] and caught.value.errno == caught.value.args[0]
        with pytest.raises(dbapi.IntegrityError):
            cur.execute("INSERT INTO users (id, created) VALUES (500, '2024-01-01')")
        with pytest.raises(dbapi.OperationalError) as syntax:
            cur.execute("SELEC 1")
        assert not isinstance(syntax.value, dbapi.IntegrityError)
        cur.execute("SELECT COUNT(*) FROM users")
        assert cur.fetchone() == (100,)


def test_programming_error_on_bad_sql(conn: dbapi.Connection) -> None:
    """Bad SQL, an unknown table or wrong parameters raise ProgrammingError."""
    cur = conn.cursor()
    with pytest.raises(dbapi.ProgrammingError) as syntax:
        cur.execute("SELEC 1")
    assert syntax.value.errno == 1064
    with pytest.raises(dbapi.ProgrammingError) as missing:
        cur.execute("SELECT * FROM dbapi_no_such_table")
    assert missing.value.errno == 1146
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELECT %s, %s", (1,))
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELECT %s", [object()])
    with pytest.raises(dbapi.ProgrammingError):
        cur.fetchone()  # the failed execute left no result set


def test_interface_error_after_close(gateway: Gateway) -> None:
    """A closed cursor, or any cursor of a closed connection, raises InterfaceError."""
    conn = dbapi.connect(gateway.url)
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.close()
    for use in (lambda: cur.execute("SELECT 1"), cur.fetchone, cur.fetchall, cur.nextset):
        with pytest.raises(dbapi.InterfaceError):
            use()
    other = conn.cursor()
    conn.close()
    for use in (
        lambda: other.execute("SELECT 1"),
        lambda: other.executemany("SELECT %s", [[1]]),
        conn.cursor,
        conn.commit,
        conn.rollback,
    ):
        with pytest.raises(dbapi.InterfaceError):
            use()


def test_iteration(conn: dbapi.Connection, table: str) -> None:
    """A cursor iterates over the rest of its rows."""
    cur = conn.cursor()
    cur.execute(f"SELECT name FROM {table} ORDER BY id")
    assert cur.fetchone() == ("a",)
    assert [row[0] for row in cur] == ["b", "c", "d", "e"]
    assert list(cur) == []


def test_commit_is_a_no_op_and_rollback_is_not_supported(conn: dbapi.Connection) -> None:
    """commit() does nothing (each execute autocommits); rollback() is NotSupportedError."""
    conn.commit()
    with pytest.raises(dbapi.NotSupportedError):
        conn.rollback()
    cur = conn.cursor()
    cur.setinputsizes([None])
    cur.setoutputsize(10)
    cur.setoutputsize(10, 0)


def test_several_statements_and_nextset(conn: dbapi.Connection) -> None:
    """One execute with several statements: the cursor starts on the first, nextset moves on."""
    cur = conn.cursor()
    cur.execute("SELECT 1 AS a; DO 0; SELECT 2 AS b, 3 AS c")
    assert cur.description is not None and cur.description[0][0] == "a"
    assert cur.fetchall() == [(1,)]
    assert cur.nextset() is True and cur.description is None and cur.rowcount == 0
    assert cur.nextset() is True and cur.fetchone() == (2, 3)
    assert cur.nextset() is None


def test_constructors_and_binary(conn: dbapi.Connection, mariadb: MariaDB) -> None:
    """Date, Time, Timestamp, *FromTicks and Binary values go in and come back right."""
    mariadb.sql(
        "CREATE OR REPLACE TABLE dbapi_kinds (d DATE, t TIME, ts DATETIME(6), b VARBINARY(8))",
        "test",
    )
    ticks = time.mktime((2024, 2, 29, 13, 14, 15, 0, 0, -1))
    assert dbapi.DateFromTicks(ticks) == dbapi.Date(2024, 2, 29)
    assert dbapi.TimeFromTicks(ticks) == dbapi.Time(13, 14, 15)
    assert dbapi.TimestampFromTicks(ticks) == dbapi.Timestamp(2024, 2, 29, 13, 14, 15)
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO dbapi_kinds VALUES (%s, %s, %s, %s)",
        (
            dbapi.Date(2024, 2, 29),
            dbapi.Time(23, 59, 58),
            dbapi.Timestamp(2024, 1, 2, 3, 4, 5, 600),
            dbapi.Binary(b"\x00\xff'%s"),
        ),
    )
    cur.execute("SELECT d, t, ts, b FROM dbapi_kinds")
    assert cur.fetchone() == (
        "2024-02-29",
        "23:59:58",
        "2024-01-02 03:04:05.000600",
        b"\x00\xff'%s",
    )
    assert cur.description is not None and cur.description[0][1] == dbapi.DATETIME
    assert isinstance(datetime.date.today(), dbapi.Date)


def test_gateway_errors_map_to_pep_249(gateway_factory: Any) -> None:
    """A backend down (503) and an unreachable gateway are OperationalError; a wrong path is
    InterfaceError."""
    gw = gateway_factory("--backend", f"mysql://root@127.0.0.1:{free_port()}/test?name=gone")
    with dbapi.connect(gw.url) as down, pytest.raises(dbapi.OperationalError) as caught:
        down.cursor().execute("SELECT 1")
    assert caught.value.status == 503 and caught.value.server == "gone"
    with dbapi.connect(f"http://127.0.0.1:{free_port()}") as nowhere:
        with pytest.raises(dbapi.OperationalError):
            nowhere.cursor().execute("SELECT 1")
    with dbapi.connect(gw.url + "/elsewhere") as wrong, pytest.raises(dbapi.InterfaceError):
        wrong.cursor().execute("SELECT 1")
    with pytest.raises(dbapi.InterfaceError):
        dbapi.connect("ftp://example.com")
