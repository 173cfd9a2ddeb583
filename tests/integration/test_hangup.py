"""A client that goes away stops its statement on the server: against a real MariaDB (the
statement leaves SHOW PROCESSLIST within a second or two) and the demo SQLite (its one
connection is free again at once), on both channels (the fast channel's GET /db, twisted.web's
POST /dbform), for a client that closes, one that resets, and one that stops reading a
streamed answer. Every wait is a poll with a bound; what is measured is reported in the
assertion messages."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.servers import Gateway, MariaDB

#: Seconds within which a statement must be gone once its client has left.
GONE_WITHIN = 2.0


def until(predicate: Callable[[], Any], bound: float, what: str) -> float:
    """Poll ``predicate`` until true; the seconds it took (fails past ``bound``)."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > bound:
            raise AssertionError(f"{what}: not within {bound} s")
        time.sleep(0.02)


def running(mariadb: MariaDB, marker: str) -> int:
    """How many statements holding ``marker`` the server is running (not this one)."""
    out = mariadb.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        f"WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
    )
    return int(out.strip())


def head(gw: Gateway, method: str, target: str, body: bytes = b"", ctype: str = "") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{gw.port}"]
    if body:
        lines += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_answer(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    top, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in top.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return top


def start_request(gw: Gateway, channel: str, obj: dict[str, Any], **opts: Any) -> socket.socket:
    """Send a DBSlayer request and leave it running: GET /db on the fast channel, or on
    twisted.web (the connection handed over by a GET /health first) POST /dbform."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    if opts.get("rcvbuf"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts["rcvbuf"])
    if channel == "fast":
        sock.sendall(head(gw, "GET", "/db?" + quote(json.dumps(obj))))
    else:
        sock.sendall(head(gw, "GET", "/health"))
        assert b" 200 " in read_answer(sock).split(b"\r\n")[0]
        fields = {key: json.dumps(v) if not isinstance(v, str) else v for key, v in obj.items()}
        body = urlencode(fields).encode()
        sock.sendall(head(gw, "POST", "/dbform", body, "application/x-www-form-urlencoded"))
    return sock


def leave(sock: socket.socket, how: str) -> None:
    """The client goes away: a close (FIN), or a reset (RST, SO_LINGER 0)."""
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def stats(gw: Gateway) -> dict[str, Any]:
    return gw.get("/stats").json()  # type: ignore[no-any-return]


def settled(gw: Gateway, backend: str) -> bool:
    """Nothing in flight any more: the site's count and the backend's."""
    figures = stats(gw)
    return figures["in_flight"] == 0 and figures["backends"][backend]["in_flight"] == 0


def journal_499(gw: Gateway) -> list[dict[str, Any]]:
    return [e for e in gw.get("/stats/log").json() if e["response_code"] == 499]


def gone_errors(gw: Gateway) -> list[str]:
    return [e["error"] for e in gw.get("/stats/errors").json() if "went away" in e["error"]]


# ------------------------------------------------------------------------------ MariaDB


@pytest.fixture(scope="module")
def hang_db(mariadb: MariaDB) -> MariaDB:
    mariadb.sql(
        "CREATE TABLE IF NOT EXISTS test.hangup_t (id INT PRIMARY KEY AUTO_INCREMENT, v INT) "
        "ENGINE=InnoDB"
    )
    return mariadb


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("channel", ["fast", "web"])
def test_mariadb_statement_stops_when_the_client_leaves(
    hang_db: MariaDB, gateway_factory: Any, channel: str, how: str
) -> None:
    """SELECT SLEEP(30), then the client closes (or resets) its socket: the statement leaves
    SHOW PROCESSLIST within GONE_WITHIN, on the reactor lane and on a pool thread; nothing is
    retried; the in-flight counts are back to 0; the journal and /stats count it (499,
    cancelled.stopped); the connection serves the next request."""
    gw = gateway_factory("--backend", hang_db.dsn(), "--pool-max", "1")
    assert gw.db({"SQL": "SELECT 1"}).status == 200  # (the connection is opened: the lane next)
    for path, sql in (
        ("lane", f"SELECT SLEEP(30) AS hang_{channel}_{how}_lane"),
        ("thread", f"SELECT 1; SELECT SLEEP(30) AS hang_{channel}_{how}_thread"),
    ):
        marker = f"hang_{channel}_{how}_{path}"
        sock = start_request(gw, channel, {"SQL": sql})
        until(
            lambda m=marker: running(hang_db, m) == 1,  # type: ignore[misc]
            10,
            f"{marker} running",
        )
        leave(sock, how)
        took = until(
            lambda m=marker: running(hang_db, m) == 0,  # type: ignore[misc]
            GONE_WITHIN,
            f"{marker} gone",
        )
        until(lambda: settled(gw, "db1"), GONE_WITHIN, "in-flight counts back to 0")
        assert gw.db({"SQL": "SELECT 2"}).json()["RESULT"]["ROWS"] == [[2]], f"took {took:.2f} s"
    figures = stats(gw)
    assert figures["cancelled"] == {"stopped": 2, "finished": 0, "not_sent": 0}
    assert figures["backends"]["db1"]["queries"] == 5  # (never sent twice)
    assert len(journal_499(gw)) == 2
    errors = gone_errors(gw)
    assert len(errors) == 2 and all("stopped there" in e for e in errors), errors


def test_killed_statement_in_a_rollback_on_error_transaction_leaves_none_open(
    hang_db: MariaDB, gateway_factory: Any
) -> None:
    """ROLLBACK_ON_ERROR: an INSERT, then a statement stopped by the client's hang-up: the
    transaction is rolled back (the row is not there), the pooled connection (the only one)
    comes back with no transaction open, and the journal says the write may or may not have
    been applied."""
    gw = gateway_factory("--backend", hang_db.dsn(), "--pool-max", "1")
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    connection = gw.db({"SQL": "SELECT CONNECTION_ID()"}).json()["RESULT"]["ROWS"][0][0]
    sql = "INSERT INTO hangup_t (v) VALUES (4711); SELECT SLEEP(30) AS hang_tx"
    sock = start_request(gw, "fast", {"SQL": sql, "ROLLBACK_ON_ERROR": True})
    until(lambda: running(hang_db, "hang_tx") == 1, 10, "the transaction's statement running")
    leave(sock, "close")
    until(lambda: running(hang_db, "hang_tx") == 0, GONE_WITHIN, "the statement gone")
    until(lambda: settled(gw, "db1"), GONE_WITHIN, "in-flight counts back to 0")
    assert hang_db.sql("SELECT COUNT(*) FROM test.hangup_t WHERE v = 4711").strip() == "0"
    after = gw.db({"SQL": "SELECT CONNECTION_ID(), @@in_transaction"}).json()["RESULT"]["ROWS"]
    assert after[0][1] == 0
    assert after[0][0] in (connection, after[0][0])  # (the same or a fresh connection: clean)
    (error,) = gone_errors(gw)
    assert "a write may or may not have been applied" in error


@pytest.mark.parametrize("how", ["stops reading", "leaves"])
def test_mariadb_streamed_answer_stops_when_the_client_stops_reading_or_leaves(
    hang_db: MariaDB, gateway_factory: Any, how: str
) -> None:
    """A streamed answer (rows written as they are read): a client that reads nothing more is
    cut at the idle timeout (here 2 s) and the statement stopped; one that leaves mid-answer
    stops it at once."""
    idle = 2.0
    gw = gateway_factory("--backend", hang_db.dsn(), "--idle-timeout", str(idle))
    sql = "SELECT seq, REPEAT('x', 200) AS hang_stream FROM seq_1_to_50000000"
    sock = start_request(gw, "fast", {"SQL": sql}, rcvbuf=4096)
    got = b""
    while b"X-Streamed" not in got:
        got += sock.recv(4096)
    until(lambda: running(hang_db, "hang_stream") == 1, 10, "the streamed statement running")
    if how == "leaves":
        leave(sock, "close")
        bound = GONE_WITHIN
    else:
        bound = idle + GONE_WITHIN  # (the client holds its socket open and reads nothing)
    took = until(lambda: running(hang_db, "hang_stream") == 0, bound, "the statement gone")
    until(lambda: settled(gw, "db1"), GONE_WITHIN, "in-flight counts back to 0")
    if how == "stops reading":
        assert took > idle - 0.5, f"cut after {took:.2f} s, before the idle timeout"
        sock.settimeout(5)
        try:  # the gateway aborted the connection: what was sent, then the end
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        sock.close()
    assert stats(gw)["cancelled"]["stopped"] == 1
    assert len(journal_499(gw)) == 1


# --------------------------------------------------------------------------- SQLite demo


#: Counts to three thousand million in SQLite: minutes of work for its one connection.
LONG_CTE = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
    "SELECT COUNT(*) FROM (SELECT n FROM c LIMIT 3000000000)"
)


@pytest.mark.parametrize("channel", ["fast", "web"])
def test_sqlite_demo_statement_is_interrupted_when_the_client_leaves(
    gateway_factory: Any, channel: str
) -> None:
    """The demo's long recursive CTE, then the client leaves: the statement is interrupted,
    so the demo's one connection answers the next request within GONE_WITHIN (it would wait
    minutes otherwise); /stats counts it, the journal shows 499."""
    gw = gateway_factory()
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    sock = start_request(gw, channel, {"SQL": LONG_CTE})
    until(lambda: stats(gw)["backends"]["demo"]["in_flight"] == 1, 10, "the CTE running")
    leave(sock, "close")
    started = time.monotonic()
    reply = gw.db({"SQL": "SELECT 7"}, timeout=GONE_WITHIN + 3)
    took = time.monotonic() - started
    assert reply.json()["RESULT"]["ROWS"] == [[7]]
    assert took < GONE_WITHIN, f"the next request waited {took:.2f} s"
    until(lambda: settled(gw, "demo"), GONE_WITHIN, "in-flight counts back to 0")
    assert stats(gw)["cancelled"]["stopped"] == 1
    (entry,) = journal_499(gw)
    assert entry["request"].startswith("GET /db?" if channel == "fast" else "POST /dbform")


# ------------------------------------------------------------------ races and accounts


def test_a_hang_up_never_kills_the_next_statement_on_its_connection(
    hang_db: MariaDB, gateway_factory: Any
) -> None:
    """One pooled connection: a client sends a short statement and leaves just before it
    ends, while another client's write waits for the same connection. The KILL QUERY of the
    first (sent over a new connection, which takes a few ms to open) must never land on the
    write that follows it on the reused connection: every write is applied and answered."""
    hang_db.sql("CREATE OR REPLACE TABLE test.hangup_race (id INT PRIMARY KEY, v INT)")
    hang_db.sql("INSERT INTO test.hangup_race VALUES (1, 0)")
    gw = gateway_factory("--backend", hang_db.dsn(), "--pool-max", "1", "--workers", "1")
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    write = {"SQL": "UPDATE hangup_race SET v = v + 1 WHERE id = 1 AND SLEEP(0.3) = 0"}
    disturbed: list[str] = []
    tries = 16
    for i in range(tries):
        early = 0.012 + (i % 8) * 0.003  # (the first client leaves this long before its end)
        first = start_request(gw, "fast", {"SQL": "SELECT SLEEP(0.1) AS race_first"})
        time.sleep(0.01)
        victim = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        victim.sendall(head(gw, "GET", "/db?" + quote(json.dumps(write))))
        time.sleep(max(0.0, 0.09 - early))  # (the scenario's timing, not a wait for a result)
        leave(first, "close")
        top = read_answer(victim)
        victim.close()
        if b" 200 " not in top.split(b"\r\n")[0]:
            disturbed.append(f"{early:.3f}: {top.splitlines()[0]!r}")
    assert not disturbed, disturbed
    until(lambda: settled(gw, "db1"), GONE_WITHIN, "in-flight counts back to 0")
    assert hang_db.sql("SELECT v FROM test.hangup_race").strip() == str(tries)


def test_a_read_user_hanging_up_never_takes_the_backend_down(
    hang_db: MariaDB, redis: Any, gateway_factory: Any
) -> None:
    """With auth, read-role requests run on the read account. The main account here has no
    SUPER, so it may not kill the read account's threads: the KILL goes as the read account,
    the statement stops, and the backend stays up (before: KILL refused with 1095, the
    backend marked down after the connect timeout, the statement left running)."""
    from tests.servers import add_user, bearer

    hang_db.sql(
        "CREATE USER IF NOT EXISTS 'hk_main'@'127.0.0.1' IDENTIFIED BY 'main-pw';"
        "GRANT ALL ON `test`.* TO 'hk_main'@'127.0.0.1';"
        "CREATE USER IF NOT EXISTS 'hk_ro'@'127.0.0.1' IDENTIFIED BY 'ro-pw';"
        "GRANT SELECT, SHOW VIEW ON `test`.* TO 'hk_ro'@'127.0.0.1';"
    )
    dsn = (
        hang_db.dsn(user="hk_main", password="main-pw") + "&read_user=hk_ro&read_password=ro-pw"
    )
    reader = add_user(redis, "hk_reader", "read")
    gw = gateway_factory(
        "--backend", dsn, "--auth", "--redis", redis.url, "--connect-timeout", "1",
        "--protect-admin", "false", "--workers", "1",
    )  # fmt: skip
    assert gw.db({"SQL": "SELECT 1"}, headers=bearer(reader)).status == 200
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    query = {  # (a long read: SLEEP() is no read to the gateway's classifier)
        "SQL": "SELECT SUM(a.seq * b.seq) AS hang_read_account "
        "FROM seq_1_to_100000 a JOIN seq_1_to_100000 b"
    }
    token = f"Authorization: Bearer {reader}\r\n\r\n".encode()
    sock.sendall(head(gw, "GET", "/db?" + quote(json.dumps(query)))[:-2] + token)
    until(lambda: running(hang_db, "hang_read_account") == 1, 10, "the read running")
    leave(sock, "close")
    until(lambda: running(hang_db, "hang_read_account") == 0, GONE_WITHIN, "the read gone")
    until(lambda: settled(gw, "db1"), GONE_WITHIN, "in-flight counts back to 0")
    deadline = time.monotonic() + 2.5  # (past the connect timeout the old code marked it down)
    while time.monotonic() < deadline:
        assert gw.get("/ready").status == 200, gw.output()
        time.sleep(0.1)
    assert "marked down" not in gw.output()
