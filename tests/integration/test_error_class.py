"""SQL-error answers name the PEP 249 class the driver raised (ERROR_CLASS) and the kind of
backend (BACKEND_KIND), after the reference's keys: on MariaDB (reactor lane, pool thread,
a later statement, ROLLBACK_ON_ERROR, a streamed answer ending in an error) and on the demo."""

from __future__ import annotations

import json
from typing import Any

import MySQLdb
import pytest
from MySQLdb.cursors import SSCursor

from tests.servers import Gateway, MariaDB

#: Rows enough to stream (more than the gateway's 1,000-row chunk, and more bytes than the
#: reactor lane reads itself); the correlated subquery returns two rows from row 3,001 on, so
#: the statement fails midway through its rows.
STREAMED_FAILING = (
    "SELECT s.seq, REPEAT('x', 100) AS pad, "
    "(SELECT 1 FROM seq_1_to_2 WHERE s.seq > 3000) AS boom FROM seq_1_to_6000 s"
)


@pytest.fixture(scope="module")
def dup_table(mariadb: MariaDB) -> str:
    mariadb.sql(
        "CREATE OR REPLACE TABLE errclass_items (id INT PRIMARY KEY, name VARCHAR(8) NOT NULL);"
        "INSERT INTO errclass_items VALUES (1, 'a');",
        "test",
    )
    return "errclass_items"


def driver_class(mariadb: MariaDB, sql: str) -> str:
    """The class name of what mysqlclient itself raises for ``sql`` (the oracle)."""
    conn = MySQLdb.connect(host="127.0.0.1", port=mariadb.port, user="root", database="test")
    try:
        cursor = conn.cursor(SSCursor)
        try:
            cursor.execute(sql)
            while True:
                cursor.fetchall()
                if cursor.nextset() is None:
                    break
        except MySQLdb.Error as e:
            return type(e).__name__
        raise AssertionError(f"{sql!r} did not fail")
    finally:
        conn.close()


def post(gw: Gateway, obj: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    reply = gw.post("/db", json.dumps(obj).encode())
    assert reply.status == 200, reply
    answer = json.loads(reply.body)
    return answer, list(answer), reply.headers


def test_duplicate_key_on_mariadb(gateway: Gateway, mariadb: MariaDB, dup_table: str) -> None:
    """A duplicate key is IntegrityError, as mysqlclient raised it, every time (the first
    request on a connection goes through a pool thread, the next ones through the lane)."""
    sql = f"INSERT INTO {dup_table} VALUES (1, 'again')"
    assert driver_class(mariadb, sql) == "IntegrityError"
    for _ in range(4):
        answer, keys, _ = post(gateway, {"SQL": sql})
        assert keys == ["MYSQL_ERRNO", "MYSQL_ERROR", "SERVER", "ERROR_CLASS", "BACKEND_KIND"]
        assert answer["MYSQL_ERRNO"] == 1062 and answer["SERVER"] == "db1"
        assert (answer["ERROR_CLASS"], answer["BACKEND_KIND"]) == ("IntegrityError", "mariadb")


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",
        "SELECT * FROM errclass_no_such_table",
        "INSERT INTO errclass_items VALUES (2, NULL)",
        "SELECT 1 FROM seq_1_to_2 WHERE 1 = (SELECT seq FROM seq_1_to_2)",
    ],
)
def test_error_class_is_the_drivers(
    gateway: Gateway, mariadb: MariaDB, dup_table: str, sql: str
) -> None:
    """Whatever the error, ERROR_CLASS is the class mysqlclient raises for it."""
    answer, _, _ = post(gateway, {"SQL": sql})
    assert answer["ERROR_CLASS"] == driver_class(mariadb, sql)
    assert answer["BACKEND_KIND"] == "mariadb"


def test_error_in_a_later_statement(gateway: Gateway, dup_table: str) -> None:
    """After the results of the statements before it, with ROLLBACK_ON_ERROR too."""
    sql = f"SELECT 1 AS one; INSERT INTO {dup_table} VALUES (1, 'b')"
    answer, keys, _ = post(gateway, {"SQL": sql})
    assert keys == [
        "MYSQL_ERRNO",
        "MYSQL_ERROR",
        "RESULT",
        "SERVER",
        "ERROR_CLASS",
        "BACKEND_KIND",
    ]
    assert answer["RESULT"][0]["ROWS"] == [[1]] and answer["ERROR_CLASS"] == "IntegrityError"
    answer, keys, _ = post(gateway, {"SQL": sql, "ROLLBACK_ON_ERROR": True})
    assert keys[-3:] == ["SERVER", "ERROR_CLASS", "BACKEND_KIND"]
    assert answer["ROLLBACK_ON_ERROR_SUCCESS"] is True
    assert (answer["ERROR_CLASS"], answer["BACKEND_KIND"]) == ("IntegrityError", "mariadb")


def test_streamed_answer_ending_in_an_error(gateway: Gateway, mariadb: MariaDB) -> None:
    """A streamed answer whose statement fails midway ends with the same keys."""
    expected = driver_class(mariadb, STREAMED_FAILING)
    answer, keys, headers = post(gateway, {"SQL": STREAMED_FAILING})
    assert headers.get("X-Streamed") == "true"
    assert keys[-3:] == ["SERVER", "ERROR_CLASS", "BACKEND_KIND"]
    assert answer["MYSQL_ERRNO"] == 1242 and len(answer["RESULT"]["ROWS"]) >= 1000
    assert (answer["ERROR_CLASS"], answer["BACKEND_KIND"]) == (expected, "mariadb")


def test_demo_errors(gateway_factory: Any) -> None:
    """On the SQLite demo: IntegrityError for a duplicate key, sqlite3's OperationalError for
    a syntax error, BACKEND_KIND sqlite."""
    gw: Gateway = gateway_factory()
    answer, keys, _ = post(
        gw, {"SQL": "INSERT INTO users (id, name, created) VALUES (1, 'x', '2024-01-01')"}
    )
    assert keys == ["MYSQL_ERRNO", "MYSQL_ERROR", "SERVER", "ERROR_CLASS", "BACKEND_KIND"]
    assert (answer["ERROR_CLASS"], answer["BACKEND_KIND"]) == ("IntegrityError", "sqlite")
    answer, keys, _ = post(gw, {"SQL": "SELECT 1; SELEC 2"})
    assert keys[-3:] == ["SERVER", "ERROR_CLASS", "BACKEND_KIND"]
    assert (answer["ERROR_CLASS"], answer["BACKEND_KIND"]) == ("OperationalError", "sqlite")
