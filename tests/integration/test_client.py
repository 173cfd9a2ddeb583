"""The Python client (`dbslayer_client`) against a real gateway and MariaDB: values, errors,
authentication, keep-alive, and the Twisted flavour (run in a subprocess, away from pytest)."""

from __future__ import annotations

import base64
import json
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dbslayer_client import (
    AuthError,
    Client,
    ClientTimeout,
    ConnectionLost,
    GatewayUnreachable,
    RequestRefused,
    Result,
    Results,
    SQLError,
    TimeLimit,
    Unavailable,
    build_query,
)

from tests.servers import ROOT, Gateway, MariaDB, Redis, free_port

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def people(mariadb: MariaDB) -> str:
    mariadb.sql(
        "CREATE OR REPLACE TABLE client_people (id INT PRIMARY KEY, name VARCHAR(20), "
        "score DECIMAL(30,10), big BIGINT UNSIGNED, ratio DOUBLE, photo VARBINARY(16));"
        "INSERT INTO client_people VALUES "
        "(1, 'ann', '12345678901234567890.0123456789', 18446744073709551615, 0.1, NULL),"
        "(2, 'bob', '-0.5000000000', 9007199254740993, 2.5, NULL),"
        "(3, 'cy', NULL, NULL, NULL, NULL);",
        "test",
    )
    return "client_people"


@pytest.fixture
def client(gateway: Gateway) -> Any:
    with Client(gateway.url) as c:
        yield c


def test_select_rows_as_tuples_and_dicts(client: Client, people: str) -> None:
    """A SELECT answers rows as tuples, dicts keyed by column, the column names and types."""
    results = client.query(f"SELECT id, name FROM {people} ORDER BY id")
    assert isinstance(results, Results) and len(results) == 1
    assert results.rows == [(1, "ann"), (2, "bob"), (3, "cy")]
    assert results.columns == ("id", "name")
    assert results.types == ("MYSQL_TYPE_LONG", "MYSQL_TYPE_VAR_STRING")
    assert results.dicts()[1] == {"id": 2, "name": "bob"}
    assert results[0] == Result(results.columns, results.types, results.rows)
    assert results.server == "db1" and results.affected_rows is None
    assert client.query(f"SELECT id FROM {people} WHERE id < 0").rows == []


def test_bigint_and_decimal_are_exact(client: Client, people: str) -> None:
    """BIGINT UNSIGNED and DECIMAL come back exact; DOUBLE comes back as a float."""
    rows = client.query(f"SELECT big, score, ratio FROM {people} ORDER BY id").rows
    assert rows[0] == (18446744073709551615, Decimal("12345678901234567890.0123456789"), 0.1)
    assert rows[1] == (9007199254740993, Decimal("-0.5000000000"), 2.5)
    assert rows[2] == (None, None, None)
    assert isinstance(rows[0][2], float) and isinstance(rows[1][1], Decimal)
    assert client.query("SELECT CAST(5 AS DECIMAL(10,0)) AS d").rows == [(Decimal(5),)]


def test_binary_round_trip(client: Client, people: str) -> None:
    """Bytes written with a hex literal (or a bytes parameter) come back as the same bytes."""
    raw = bytes([0, 255, 16, 10, 13, 34, 92]) + "é".encode()
    client.query(f"UPDATE {people} SET photo = X'{raw.hex()}' WHERE id = 1")
    client.query(f"UPDATE {people} SET photo = %s WHERE id = %s", [b"\x00\x01%s", 2])
    rows = client.query(f"SELECT id, photo FROM {people} ORDER BY id").rows
    assert rows == [(1, raw), (2, b"\x00\x01%s"), (3, None)]
    named = client.query("SELECT %(b)s AS b, %(n)s AS n, '100%%' AS p", {"b": b"\xff", "n": 7})
    assert named.rows == [(b"\xff", 7, "100%")]
    assert client.query("SELECT %s AS b, '5%%' AS p", [b""]).rows == [(b"", "5%")]


def test_several_statements_give_several_results(client: Client) -> None:
    """Several statements answer one Result each, in order; the shortcuts read the last."""
    results = client.query("SELECT 1 AS a; SELECT 2 AS b, 3 AS c; DO 1")
    assert len(results) == 3
    assert [r.columns for r in results] == [("a",), ("b", "c"), ()]
    assert results[1].rows == [(2, 3)] and results[0].dicts() == [{"a": 1}]
    assert results.affected_rows == 0 and results.rows == [] and not results[2].has_rows


def test_insert_id_and_affected_rows(client: Client, mariadb: MariaDB) -> None:
    """INSERT answers the first generated id and the affected rows; UPDATE the rows changed."""
    mariadb.sql(
        "CREATE OR REPLACE TABLE client_auto (id INT AUTO_INCREMENT PRIMARY KEY, t VARCHAR(9))",
        "test",
    )
    one = client.query("INSERT INTO client_auto (t) VALUES ('a')")
    assert (one.insert_id, one.affected_rows) == (1, 1)
    many = client.query("INSERT INTO client_auto (t) VALUES ('b'), ('c'), ('d')")
    assert (many.insert_id, many.affected_rows) == (2, 3)
    update = client.query("UPDATE client_auto SET t = 'z' WHERE id > 1")
    assert (update.affected_rows, update.insert_id) == (3, 0)


def test_params_positional_and_named(client: Client, people: str) -> None:
    """%s takes a sequence and %(name)s a mapping; values are escaped, never pasted."""
    positional = client.query(f"SELECT name FROM {people} WHERE id IN (%s, %s) ORDER BY id", (1, 3))
    assert positional.rows == [("ann",), ("cy",)]
    named = client.query(f"SELECT id FROM {people} WHERE name = %(n)s", {"n": "bob"})
    assert named.rows == [(2,)]
    tricky = 'it\'s "q" \\ %s; DROP TABLE x -- 日本'
    echoed = client.query("SELECT %s AS t, %s AS d, %s AS n", [tricky, Decimal("1.10"), None])
    assert echoed.rows == [(tricky, "1.10", None)]
    with pytest.raises(TypeError):
        client.query("SELECT %s", "oops")


def test_sql_error_carries_errno_and_earlier_results(client: Client) -> None:
    """A failing statement raises SQLError with errno, message, server and the results before."""
    with pytest.raises(SQLError) as caught:
        client.query("SELECT 1 AS a; SELECT nope FROM no_such_table; SELECT 3")
    error = caught.value
    assert error.status == 200 and error.mysql_errno == 1146 and error.server == "db1"
    assert (error.error_class, error.backend_kind) == ("ProgrammingError", "mariadb")
    assert "no_such_table" in error.message and "1146" in str(error)
    assert len(error.results) == 1 and error.results.rows == [(1,)]
    with pytest.raises(SQLError) as syntax:
        client.query("SELEC 1")
    assert syntax.value.mysql_errno == 1064 and len(syntax.value.results) == 0


def test_rollback_on_error(client: Client, mariadb: MariaDB) -> None:
    """rollback_on_error undoes the statements before the failing one and says so."""
    mariadb.sql("CREATE OR REPLACE TABLE client_tx (id INT PRIMARY KEY)", "test")
    with pytest.raises(SQLError) as caught:
        client.query(
            "INSERT INTO client_tx VALUES (1); INSERT INTO client_tx VALUES (1)",
            rollback_on_error=True,
        )
    assert caught.value.mysql_errno == 1062 and caught.value.rolled_back is True
    assert client.query("SELECT COUNT(*) FROM client_tx").rows == [(0,)]


def test_bad_request_is_refused(client: Client, gateway: Gateway) -> None:
    """Requests the gateway refuses raise RequestRefused with the status and its message."""
    with pytest.raises(RequestRefused) as mismatch:
        client.query("SELECT %s, %s", [1])
    assert mismatch.value.status == 400 and "PARAMS" in mismatch.value.message
    with pytest.raises(RequestRefused) as server:
        client.query("SELECT 1", server="elsewhere")
    assert server.value.status == 400
    with Client(gateway.url + "/nowhere") as lost:
        with pytest.raises(RequestRefused) as missing:
            lost.query("SELECT 1")
    assert missing.value.status == 404


def test_backend_down_is_unavailable(gateway_factory: Any) -> None:
    """With its backend on a dead port, the gateway's 503 becomes Unavailable with Retry-After."""
    gw = gateway_factory("--backend", f"mysql://root@127.0.0.1:{free_port()}/test?name=gone")
    started = time.monotonic()
    with Client(gw.url) as c, pytest.raises(Unavailable) as caught:
        c.query("SELECT 1")
    assert time.monotonic() - started < 15
    error = caught.value
    assert error.status == 503 and error.retry_after == 1.0 and error.server == "gone"
    assert error.mysql_errno is not None and "retry after 1 s" in str(error)


def test_gateway_unreachable() -> None:
    """No gateway listening: GatewayUnreachable (an Unavailable), saying nothing was sent."""
    with Client(f"http://127.0.0.1:{free_port()}", timeout=3) as c:
        with pytest.raises(GatewayUnreachable) as caught:
            c.query("INSERT INTO t VALUES (1)")
    assert isinstance(caught.value, Unavailable) and caught.value.status == 0
    assert "nothing was sent" in caught.value.message


def test_statement_time_limit(client: Client) -> None:
    """timeout=0.3 lowers the statement limit: SLEEP(5) stops with TimeLimit (504) quickly."""
    started = time.monotonic()
    with pytest.raises(TimeLimit) as caught:
        client.query("SELECT SLEEP(5)", timeout=0.3)
    assert time.monotonic() - started < 4
    assert caught.value.status == 504 and "300 ms" in caught.value.message
    assert client.query("SELECT 1").rows == [(1,)]


def test_client_timeout(gateway: Gateway) -> None:
    """No answer within the client's own timeout: ClientTimeout, a ConnectionLost that says the
    request may still run; the next query opens a new connection."""
    with Client(gateway.url, timeout=0.5) as c:
        with pytest.raises(ClientTimeout) as caught:
            c.query("SELECT SLEEP(2)")
        assert isinstance(caught.value, ConnectionLost) and "0.5 s" in caught.value.message
        assert c.query("SELECT 1").rows == [(1,)] and c.connections_opened == 2


def test_cache_header(client: Client, people: str) -> None:
    """cache= asks for a cached answer: X-Cache says miss, then hit, with the same rows."""
    sql = f"SELECT name FROM {people} WHERE id = 3 AND 'cache-test' = 'cache-test'"
    first = client.query(sql, cache=30)
    second = client.query(sql, cache=30)
    assert (first.cache, second.cache) == ("miss", "hit") and first == second
    assert client.query(sql).cache is None


def _add_user(redis: Redis, name: str, role: str) -> str:
    out = subprocess.run(
        [str(BIN / "dbslayer"), "users", "add", name, "--role", role, "--redis", redis.url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_authentication(mariadb: MariaDB, redis: Redis, gateway_factory: Any) -> None:
    """With --auth a token works as Bearer and as Basic; a wrong or missing one is AuthError."""
    token = _add_user(redis, "clientuser", "write")
    gw = gateway_factory(
        "--backend", mariadb.dsn(), "--auth", "--redis", redis.url, "--read-on-shared-account"
    )
    with Client(gw.url, token=token) as bearer:
        assert bearer.query("SELECT 1 AS one").rows == [(1,)]
    with Client(gw.url, token=token, user="clientuser") as basic:
        assert basic.query("SELECT 2").rows == [(2,)]
    for wrong in (Client(gw.url, token="not-" + token), Client(gw.url)):
        with wrong, pytest.raises(AuthError) as caught:
            wrong.query("SELECT 1")
        assert caught.value.status == 401
    reader = _add_user(redis, "clientreader", "read")
    with Client(gw.url, token=reader) as c, pytest.raises(AuthError) as refused:
        c.query("CREATE TABLE nope (i INT)")
    assert refused.value.status == 403


def test_keep_alive_reuses_one_connection(client: Client) -> None:
    """Many queries (and stats) travel over one TCP connection."""
    client.query("SELECT 0")
    sock = client._connection.sock if client._connection else None
    assert sock is not None
    local = sock.getsockname()
    for i in range(30):
        assert client.query("SELECT %s AS i", [i]).rows == [(i,)]
    client.stats()
    assert client.connections_opened == 1
    assert client._connection is not None and client._connection.sock is sock
    assert sock.getsockname() == local


def test_gateway_restart_is_survived(mariadb: MariaDB, gateway_factory: Any) -> None:
    """A gateway restart between queries is noticed on the idle connection: the next query
    (a SELECT, and even a write) reconnects and succeeds."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn())
    with Client(gw.url) as c:
        assert c.query("SELECT 1").rows == [(1,)]
        gw.stop()
        gw.start()
        assert c.query("SELECT 2").rows == [(2,)]
        assert c.connections_opened == 2
        gw.stop()
        gw.start()
        # The drop is seen before sending, so even a write goes through: nothing was lost.
        assert c.query("DO 1").affected_rows == 0
        assert c.connections_opened == 3


class DroppingServer:
    """A scripted HTTP server for what a real gateway cannot be made to do on cue: each request
    is answered or, per the script, read and then dropped without an answer."""

    ANSWER = json.dumps(
        {"RESULT": {"HEADER": ["x"], "ROWS": [[1]], "TYPES": ["MYSQL_TYPE_LONG"]}, "SERVER": "s"}
    ).encode()

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0
        self.resets = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = bytearray()
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, rest = bytes(data).split(b"\r\n\r\n", 1)
                data = bytearray(rest)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                step = self.script.pop(0) if self.script else "drop"
                if step == "reset":
                    # Close (RST) with the body still unread: the client cannot finish writing.
                    self.resets += 1
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                while len(data) < length:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        return
                    data += chunk
                body, data = bytes(data[:length]), data[length:]
                self.requests.append(body)
                if step == "drop":
                    return
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.ANSWER), self.ANSWER)
                )

    def close(self) -> None:
        self.listener.close()


def test_broken_connection_never_resends_sql_unless_told() -> None:
    """A kept-alive connection that breaks after the request was sent: SQL (a SELECT as much
    as an INSERT) is not sent again and ConnectionLost says it may have been applied; with
    idempotent=True it is sent again on a new connection."""
    for sql, params in (("SELECT 2", None), ("INSERT INTO t VALUES (%s)", [1])):
        server = DroppingServer(["answer", "drop", "answer"])
        try:
            with Client(server.url) as c:
                c.query("SELECT 1")
                with pytest.raises(ConnectionLost) as caught:
                    c.query(sql, params)
                assert "may or may not have been applied" in caught.value.message
                assert caught.value.status == 0
                assert len(server.requests) == 2 and sql.encode() in server.requests[1]
                assert c.query("SELECT 3").rows == [(1,)]  # the next request reconnects
                assert len(server.requests) == 3 and c.connections_opened == 2
        finally:
            server.close()
    server = DroppingServer(["answer", "drop", "answer"])
    try:
        with Client(server.url) as c:
            c.query("SELECT 1")
            assert c.query("SELECT 2", idempotent=True).rows == [(1,)]
            assert server.requests[1] == server.requests[2] and len(server.requests) == 3
            assert c.connections_opened == 2
    finally:
        server.close()


def test_broken_connection_resends_what_has_no_sql() -> None:
    """info() and stats() carry no SQL: after a break they are sent once more, never a third
    time."""
    server = DroppingServer(["answer", "drop", "answer", "drop", "answer", "drop", "drop"])
    try:
        with Client(server.url) as c:
            c.query("SELECT 1")
            assert c.info() == {}  # (the scripted answer has no info flags)
            assert isinstance(c.stats(), dict)
            assert len(server.requests) == 5 and c.connections_opened == 3
            with pytest.raises(ConnectionLost):
                c.stats()  # dropped on the reused connection, then on the new one
            assert len(server.requests) == 7
    finally:
        server.close()


def test_request_not_written_completely_is_resent() -> None:
    """A request the gateway closed the connection on before it was written whole never
    reached it as a request: it is sent again on a new connection, a write included."""
    server = DroppingServer(["reset", "answer"])
    big = "x" * (64 << 20)  # more than the socket buffers hold: the write fails midway
    try:
        with Client(server.url) as c:
            results = c.query("INSERT INTO t VALUES (%s)", [big])
            assert results.rows == [(1,)]
            assert server.resets == 1 and len(server.requests) == 1
            assert json.loads(server.requests[0])["PARAMS"] == [big]
            assert c.connections_opened == 2
    finally:
        server.close()


def test_stats_and_info(client: Client) -> None:
    """stats() is the gateway's /stats; info() the backend's info flags."""
    client.query("SELECT 1")
    stats = client.stats()
    assert stats["total_requests"] >= 1 and "db1" in stats["backends"]
    info = client.info()
    assert info["SERVER_NAME"] == "db1" and isinstance(info["SERVER_VERSION"], int)
    assert {"STAT", "CLIENT_INFO", "HOST_INFO", "CLIENT_VERSION"} <= set(info)


def test_request_body_is_the_protocol() -> None:
    """build_query writes the protocol's keys: TIMEOUT in ms, CACHE in s, bytes inlined."""
    body = build_query(
        "SELECT %s, %s", [b"\x01", 2], server="a", timeout=0.25, cache=5, rollback_on_error=True
    )
    assert json.loads(body) == {
        "SQL": "SELECT X'01', %s",
        "PARAMS": [2],
        "SERVER": "a",
        "TIMEOUT": 250,
        "CACHE": 5,
        "ROLLBACK_ON_ERROR": True,
    }
    assert json.loads(build_query("INSERT INTO t VALUES (1)")) == {
        "SQL": "INSERT INTO t VALUES (1)"
    }
    with pytest.raises(ValueError):
        build_query("SELECT %s", [b"a", 1])


TWISTED_SCRIPT = r"""
import base64, pickle, sys
from twisted.internet import defer, task
from dbslayer_client import GatewayError
from dbslayer_client.twisted import TwistedClient

async def main(reactor, url, table, dead):
    client = TwistedClient(url, reactor=reactor)
    out = {}
    out["rows"] = await client.query(f"SELECT id, name, score, big, photo FROM {table} ORDER BY id")
    out["multi"] = await client.query("SELECT %(a)s AS a; SELECT 2 AS b", {"a": 1})
    for key, sql, kwargs in [
        ("sql_error", "SELECT 1; SELECT nope FROM no_such_table", {}),
        ("refused", "SELECT %s, %s", {"params": [1]}),
        ("time_limit", "SELECT SLEEP(5)", {"timeout": 0.3}),
    ]:
        try:
            await client.query(sql, **kwargs)
        except GatewayError as e:
            out[key] = e
    out["stats"] = await client.stats()
    out["info"] = await client.info()
    try:
        await TwistedClient(dead, reactor=reactor, timeout=3).query("SELECT 1")
    except GatewayError as e:
        out["dead"] = e
    await client.close()
    sys.stdout.write(base64.b64encode(pickle.dumps(out)).decode() + "\n")

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
"""


def test_twisted_client_returns_the_same(client: Client, gateway: Gateway, people: str) -> None:
    """TwistedClient (treq, in a subprocess under task.react) answers the same Results and
    raises the same exceptions as Client."""
    dead = f"http://127.0.0.1:{free_port()}"
    run = subprocess.run(
        [sys.executable, "-c", TWISTED_SCRIPT, gateway.url, people, dead],
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    out = pickle.loads(base64.b64decode(run.stdout.strip().splitlines()[-1]))
    expected = client.query(f"SELECT id, name, score, big, photo FROM {people} ORDER BY id")
    assert out["rows"] == expected and out["rows"].server == "db1"
    assert out["multi"] == client.query("SELECT %(a)s AS a; SELECT 2 AS b", {"a": 1})
    error = out["sql_error"]
    assert isinstance(error, SQLError) and error.mysql_errno == 1146
    assert error.results.rows == [(1,)] and error.error_class == "ProgrammingError"
    assert isinstance(out["refused"], RequestRefused) and out["refused"].status == 400
    assert isinstance(out["time_limit"], TimeLimit) and out["time_limit"].status == 504
    assert out["stats"]["total_requests"] >= 1
    info = client.info()
    assert out["info"].keys() == info.keys()
    assert out["info"]["SERVER_VERSION"] == info["SERVER_VERSION"]
    assert isinstance(out["dead"], GatewayUnreachable)


def test_cut_answers_and_compat_refusals_are_never_silent(gateway_factory: Any) -> None:
    """A result set cut by --max-rows says so (Result.truncated, cursor.truncated); a
    refusal a --compat original gateway answers 200 with an ERROR body is raised all the
    same; 429 and 408 are Unavailable (transient), not a refusal of the request itself."""
    from dbslayer_client import GatewayError, dbapi
    from dbslayer_client.errors import Unavailable, error_class

    gw = gateway_factory("--max-rows", "3", "--compat", "original")
    sql = "SELECT id FROM users WHERE id <= 10 ORDER BY id"
    with Client(gw.url) as c:
        result = c.query(sql)[0]
        assert result.truncated and result.rows == [(1,), (2,), (3,)]
        assert not c.query("SELECT 1")[0].truncated
        with pytest.raises(GatewayError) as caught:
            c.query("SELECT 1", server="nope")
        assert "SERVER" in str(caught.value)
    conn = dbapi.connect(gw.url)
    cur = conn.cursor()
    cur.execute(sql)
    assert cur.truncated and cur.fetchall() == [(1,), (2,), (3,)]
    conn.close()
    assert error_class(429) is Unavailable and error_class(408) is Unavailable
