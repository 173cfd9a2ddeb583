"""Rows rendered from the wire, against a real MariaDB and mysqlclient: for every answer the
server sends (many column types, generated values), the wire rendering either declines or
gives, byte for byte, the rows the exact-value path gives (the driver's values, then orjson),
with the driver's column names and types. Then through a gateway: the same answers as the
exact-value path (a cached request takes it), the row limit, other formats, and a pooled
connection that serves wire-rendered answers, writes, errors and session changes in turn."""

from __future__ import annotations

import json
import os
import random
import select
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest

from api.render import _json_default
from gateway.backends import _mysql_conversions
from gateway.results import result_set, type_name
from gateway.wire import answer_state
from gateway.wirejson import header_and_types, json_rows_py
from tests.servers import Gateway, MariaDB

try:
    from gateway._wirejson import json_rows as compiled
except ImportError:
    compiled = None

TABLE = """
CREATE TABLE wr.t (
  id INT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, bi BIGINT,
  bu BIGINT UNSIGNED, zf INT(6) ZEROFILL, d DECIMAL(65,30), d0 DECIMAL(10,0), f FLOAT,
  db DOUBLE, bt BIT(9), c CHAR(5), v VARCHAR(200), tx TEXT, l1 VARCHAR(20) CHARACTER SET latin1,
  bn BINARY(3), vb VARBINARY(20), bl BLOB, e ENUM('a','é'), st SET('x','y'), dt DATE,
  tm TIME(3), dtm DATETIME(6), ts TIMESTAMP NULL, yr YEAR, js JSON
) CHARACTER SET utf8mb4
"""

ROWS = [
    "(1, -128, 65535, -8388608, -9223372036854775808, 18446744073709551615, 42, "
    "'-12345678901234567890123456789012345.123456789012345678901234567890', -0, 1.5, "
    "-2.25e-300, b'101010101', 'ab', 'text \"q\" \\\\ \\n\\t', 'long text é 😀', 'café', "
    "'a\\0b', X'00FF10', X'DEADBEEF', 'é', 'x,y', '2024-02-29', '-838:59:59.999', "
    "'2024-01-01 12:34:56.123456', '2038-01-19 03:14:07', 2155, '{\"k\": [1, 2]}')",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(3, 0, 0, 0, 0, 0, 0, '0.000000000000000000000000000001', 99, -0.0, 1e300, b'0', '', "
    "'', '', '', '', '', '', 'a', '', '0000-00-00', '00:00:00', '0000-00-00 00:00:00', NULL, "
    "0000, 'null')",
]

#: Statements whose answer the wire rendering must take (the common shapes).
RENDERED = [
    "SELECT id, ti, si, mi, bi, bu, d, d0 FROM wr.t ORDER BY id",
    "SELECT id, c, v, tx, l1, e, st FROM wr.t ORDER BY id",
    "SELECT id, dt, tm, dtm, ts, yr FROM wr.t ORDER BY id",
    "SELECT * FROM wr.gen ORDER BY id",
    "SELECT id, CAST(d AS CHAR) AS text_of_d, v AS `naïve ü` FROM wr.t ORDER BY id",
    "SELECT 1 FROM wr.t WHERE id < 0",
    "SELECT COUNT(*), SUM(id), AVG(id) FROM wr.t",
]
#: Statements whose answer keeps the exact-value path (or may: each is checked either way).
OTHERS = [
    "SELECT * FROM wr.t ORDER BY id",
    "SELECT id, zf FROM wr.t",
    "SELECT id, f, db FROM wr.t",
    "SELECT id, bt FROM wr.t",
    "SELECT id, bn, vb, bl FROM wr.t",
    "SELECT id, js FROM wr.t",
    "SELECT NULL, 1",
    "SELECT 1e3, 0.1 + 0.2",
]


def _random_text(rng: random.Random) -> str:
    pools = [
        "abcdefghijklmnopqrstuvwxyz",
        '"\\/\b\f\n\r\t\x00\x01\x1f\x7f',
        "éüß€漢字",
        "😀🙈\U0010fffd",
        "\u2028\u2029\u202e\ufeff",
    ]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randrange(0, 40)))


@pytest.fixture(scope="module")
def db(mariadb: MariaDB) -> MariaDB:
    mariadb.sql("DROP DATABASE IF EXISTS wr; CREATE DATABASE wr CHARACTER SET utf8mb4")
    mariadb.sql(TABLE)
    mariadb.sql("INSERT INTO wr.t VALUES " + ", ".join(ROWS))
    mariadb.sql(
        "CREATE TABLE wr.gen (id INT PRIMARY KEY, n BIGINT, d DECIMAL(20,6), s VARCHAR(200), "
        "t TEXT, at DATETIME) CHARACTER SET utf8mb4"
    )
    rng = random.Random(15)
    import MySQLdb

    conn = MySQLdb.connect(unix_socket=mariadb.socket, user="root", db="wr", charset="utf8mb4")
    values = [
        (
            i,
            rng.randrange(-(2**63), 2**63),
            Decimal(rng.randrange(-(10**19), 10**19)) / 1_000_000,
            _random_text(rng),
            _random_text(rng) if rng.random() < 0.8 else None,
            f"20{rng.randrange(10, 40)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 10)} 01:02:03",
        )
        for i in range(400)
    ]
    conn.cursor().executemany("INSERT INTO gen VALUES (%s, %s, %s, %s, %s, %s)", values)
    conn.commit()
    conn.close()
    return mariadb


@pytest.fixture(scope="module")
def driver(db: MariaDB) -> Iterator[tuple[Any, socket.socket]]:
    import MySQLdb

    conn = MySQLdb.connect(
        unix_socket=db.socket, user="root", db="wr", charset="utf8mb4", conv=_mysql_conversions()
    )
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    yield conn, sock
    sock.close()
    conn.close()


def _peeked(conn: Any, sock: socket.socket, sql: str) -> bytes:
    """Send ``sql`` and wait (bounded) until its whole answer is in the socket buffer."""
    conn.send_query(sql.encode())
    deadline = time.monotonic() + 10
    while True:
        select.select([sock], [], [], 0.5)
        data = sock.recv(1 << 22, socket.MSG_PEEK)
        if answer_state(data)[0] == "complete":
            return data
        assert time.monotonic() < deadline, "the answer did not arrive"
        time.sleep(0.005)


def _compare(driver: tuple[Any, socket.socket], sql: str, max_rows: int = -1) -> bool:
    """The verdicts agree and a rendering equals the exact-value path; True if rendered."""
    conn, sock = driver
    data = _peeked(conn, sock, sql)
    rendered = json_rows_py(data, max_rows)
    if compiled is not None:
        assert compiled(data, max_rows) == rendered, sql
    conn.read_query_result()
    result = conn.store_result()
    rows = result.fetch_row(0)
    cut = max_rows >= 0 and len(rows) > max_rows
    exact = result_set(result.describe(), rows[:max_rows] if cut else rows, truncated=cut)
    if rendered is None:
        return False
    end, _, defs_start, defs_end, rows_json, count = rendered
    assert end == len(data)
    assert rows_json == orjson.dumps(exact.rows, default=_json_default), sql
    assert count == len(rows)
    names, types = header_and_types(data[defs_start:defs_end])  # type: ignore[misc]
    assert list(names) == exact.header
    assert list(types) == [type_name(d[1]) for d in result.describe()]
    return True


@pytest.mark.parametrize("sql", RENDERED)
def test_common_shapes_rendered_as_the_driver_reads_them(driver: Any, sql: str) -> None:
    assert _compare(driver, sql), f"not rendered from the wire: {sql}"


@pytest.mark.parametrize("sql", OTHERS)
def test_other_shapes_agree_or_decline(driver: Any, sql: str) -> None:
    _compare(driver, sql)


def test_row_limits(driver: Any) -> None:
    for limit in (0, 1, 7, 399, 400, 401):
        assert _compare(driver, "SELECT * FROM wr.gen ORDER BY id", limit)


def test_every_column_of_every_generated_row(driver: Any) -> None:
    """Each generated value alone (one statement per row and column): hundreds of texts with
    controls, quotes, backslashes, astral characters and separators."""
    for column in ("n", "d", "s", "t", "at"):
        for start in range(0, 400, 40):
            sql = f"SELECT {column} FROM wr.gen WHERE id BETWEEN {start} AND {start + 39}"
            assert _compare(driver, sql), sql


# ----------------------------------------------------------------------- through a gateway


@pytest.fixture(scope="module")
def gateway(db: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(
        tmp_path_factory.mktemp("gw"), "--backend", db.dsn("wr"), "--max-rows", "50"
    ).start()
    yield gw
    gw.stop()


def _result(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return json.loads(reply.body, parse_float=Decimal)["RESULT"]


@pytest.mark.parametrize("sql", RENDERED + OTHERS)
def test_gateway_answers_as_the_exact_value_path(gateway: Gateway, sql: str) -> None:
    """The same RESULT as a request the cache takes (built by the exact-value path)."""
    wire = _result(gateway.db({"SQL": sql}))
    exact = gateway.db({"SQL": sql, "CACHE": 60})
    assert exact.headers.get("X-Cache") in ("miss", "hit", "bypass")
    assert wire == _result(exact)


def test_gateway_row_limit_and_formats(gateway: Gateway) -> None:
    result = _result(gateway.db({"SQL": "SELECT * FROM wr.gen ORDER BY id"}))
    assert result["TRUNCATED"] is True and len(result["ROWS"]) == 50
    assert [row[0] for row in result["ROWS"]] == list(range(50))
    xml = gateway.db({"SQL": "SELECT id, v FROM wr.t ORDER BY id", "FORMAT": "xml"})
    assert xml.status == 200 and b"<key>ROWS</key>" in xml.body


def test_pooled_connection_serves_everything_after_wire_answers(gateway: Gateway) -> None:
    """Wire-rendered answers, driver-read ones, writes, SQL errors and session changes in
    turn on the same pooled connections: every answer right, never out of sync."""
    gateway.db({"SQL": "CREATE TABLE IF NOT EXISTS wr.w (id INT PRIMARY KEY, v INT)"})
    gateway.db({"SQL": "DELETE FROM wr.w"})
    for i in range(300):
        step = i % 6
        if step == 0:
            result = _result(gateway.db({"SQL": f"SELECT {i} AS n, 'é' AS s"}))
            assert result["HEADER"] == ["n", "s"] and result["ROWS"] == [[i, "é"]]
        elif step == 1:
            assert _result(gateway.db({"SQL": f"SELECT {i} + 0.5e0 AS f"}))["ROWS"] == [[i + 0.5]]
        elif step == 2:
            reply = gateway.db({"SQL": f"INSERT INTO wr.w VALUES ({i}, {i})"})
            assert reply.json()["RESULT"]["AFFECTED_ROWS"] == 1
        elif step == 3:
            reply = gateway.db({"SQL": "SELECT nope FROM wr.w"})
            assert reply.json()["MYSQL_ERRNO"] == 1054
        elif step == 4:
            assert gateway.db({"SQL": f"SET @x = {i}"}).status == 200
            assert _result(gateway.db({"SQL": "SELECT @x"}))["ROWS"] == [[None]]
        else:
            rows = _result(gateway.db({"SQL": "SELECT id FROM wr.w ORDER BY id"}))["ROWS"]
            assert rows == [[k] for k in range(2, i + 1, 6)]
