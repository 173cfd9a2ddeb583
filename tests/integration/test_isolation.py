"""Isolation between the users of a pooled connection, and the promises that rest on it, attacked
end to end: a real MariaDB, a real redis-server, `dbslayer users` and `dbslayer serve`.

The module's gateway runs with ``--pool-max 1``: one connection per database account, so two
consecutive requests of one account run on the same connection (the tests show it with
``CONNECTION_ID()``: a session reset keeps the id). Whatever a request leaves on its session
would then reach the next request.

A. every connection goes back to the pool in the state of a new one;
B. a read user changes no data and no state that outlives its request (the database refuses);
C. no acknowledged write is lost while others leave transactions open;
D. the answer cache never serves an answer to a user who could not have run it there;
E. honest outcomes: server errors 4000+ are SQL errors (200), account statements need admin;
F. a frozen backend: every request answered within its time limit plus the connect timeout.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, Redis, Reply, add_user, bearer

BIN = Path(sys.executable).parent

#: Unique values for rows the tests insert, so a leftover of one test never counts in another.
_VALUES = itertools.count(10_000)

#: The Unicode spaces MariaDB does not take as the end of ``--``: after them the line is code.
UNICODE_SPACES = {"nbsp": "\u00a0", "em": "\u2003", "ideographic": "\u3000", "nel": "\u0085"}


def hidden(space: str, tail: str) -> str:
    """A text a regex reads as ``SELECT ... WHERE 1`` and a comment, and MariaDB as
    ``... WHERE 1 - -`<space>`<tail>``: the derived table has a column named by the space, so
    the code after ``--<space>`` is valid and runs."""
    return f"SELECT 1 FROM (SELECT 1 AS `{space}`) d WHERE 1 --{space}{tail}"


SETUP = """
CREATE OR REPLACE DATABASE iso CHARACTER SET utf8mb4;
CREATE OR REPLACE DATABASE iso_a CHARACTER SET utf8mb4;
CREATE OR REPLACE DATABASE iso_b CHARACTER SET utf8mb4;
CREATE OR REPLACE DATABASE iso_x CHARACTER SET utf8mb4;
CREATE TABLE iso.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL);
CREATE TABLE iso.c (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL);
CREATE TABLE iso.three (id INT PRIMARY KEY);
INSERT INTO iso.three VALUES (1), (2), (3);
CREATE TABLE iso.other (x INT);
INSERT INTO iso.other VALUES (7);
CREATE TABLE iso.chk (v INT, CONSTRAINT small CHECK (v < 100));
CREATE SEQUENCE iso.s;
CREATE TABLE iso_a.t (who VARCHAR(10));
INSERT INTO iso_a.t VALUES ('from a');
CREATE TABLE iso_b.t (who VARCHAR(10));
INSERT INTO iso_b.t VALUES ('from b');
CREATE SQL SECURITY INVOKER VIEW iso_a.whoami AS SELECT CURRENT_USER() AS u;
CREATE SQL SECURITY INVOKER VIEW iso_b.whoami AS SELECT CURRENT_USER() AS u;
CREATE TABLE iso_x.secret (s VARCHAR(10));
INSERT INTO iso_x.secret VALUES ('hush');
DELIMITER //
CREATE FUNCTION iso.f() RETURNS INT MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN INSERT INTO iso.t (v) VALUES (999); RETURN 1; END//
CREATE PROCEDURE iso.p() MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN INSERT INTO iso.t (v) VALUES (998); END//
CREATE FUNCTION iso.lockit() RETURNS INT NO SQL RETURN GET_LOCK('fn', 0)//
CREATE TABLE iso.trig (v INT)//
CREATE TRIGGER iso.trig_lock BEFORE INSERT ON iso.trig FOR EACH ROW SET NEW.v = GET_LOCK('tl', 0)//
DELIMITER ;
CREATE VIEW iso.lockview AS SELECT GET_LOCK('v', 0) AS l;
CREATE VIEW iso.wv AS SELECT iso.f() AS x;
"""


def accounts_sql() -> str:
    out = []
    for host in ("127.0.0.1", "localhost"):
        out.append(f"CREATE OR REPLACE USER 'app'@'{host}' IDENTIFIED BY 'apppw';")
        out.append(f"CREATE OR REPLACE USER 'app_ro'@'{host}' IDENTIFIED BY 'ropw';")
        for db in ("iso", "iso_a", "iso_b", "iso_x"):
            out.append(f"GRANT ALL PRIVILEGES ON `{db}`.* TO 'app'@'{host}';")
        for db in ("iso", "iso_a", "iso_b"):
            out.append(f"GRANT SELECT, SHOW VIEW ON `{db}`.* TO 'app_ro'@'{host}';")
    out.append("CREATE OR REPLACE USER 'victim'@'localhost' IDENTIFIED BY 'v';")
    return "\n".join(out)


def dsn(mariadb: MariaDB, database: str = "iso", name: str = "db1") -> str:
    return (
        f"mysql://app:apppw@127.0.0.1:{mariadb.port}/{database}?name={name}"
        "&read_user=app_ro&read_password=ropw"
    )


# ------------------------------------------------------------------------------ helpers


def root(mariadb: MariaDB, sql: str, database: str = "iso") -> str:
    """SQL as root on a connection of its own, never waiting long for a lock a leak holds."""
    try:
        return mariadb.sql(
            "SET SESSION lock_wait_timeout=3; SET SESSION innodb_lock_wait_timeout=3;\n" + sql,
            database,
        )
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"root could not run {sql!r}: {e.stderr.decode()}") from None


def root_count(mariadb: MariaDB, where: str, table: str = "iso.t") -> int:
    return int(root(mariadb, f"SELECT COUNT(*) FROM {table} WHERE {where}").strip())


def ask(gw: Gateway, token: str | None, sql: str, timeout: float = 30, **extra: Any) -> Reply:
    headers = bearer(token) if token else {}
    return gw.db({"SQL": sql, **extra}, headers=headers, timeout=timeout)


def results(body: dict[str, Any]) -> list[dict[str, Any]]:
    result = body.get("RESULT")
    if result is None:
        return []
    return result if isinstance(result, list) else [result]


def rows(reply: Reply) -> list[list[Any]]:
    """The rows of the last result set of a successful answer."""
    body = reply.json()
    assert reply.status == 200 and "MYSQL_ERRNO" not in body, reply
    sets = [r for r in results(body) if "ROWS" in r]
    assert sets, reply
    return sets[-1]["ROWS"]


def one(gw: Gateway, token: str | None, sql: str, **extra: Any) -> Any:
    return rows(ask(gw, token, sql, **extra))[0][0]


def conn_id(gw: Gateway, token: str | None) -> int:
    return int(one(gw, token, "SELECT CONNECTION_ID()"))


def ok(reply: Reply) -> dict[str, Any]:
    """The body of an answer without any error."""
    assert reply.status == 200, reply
    body = reply.json()
    assert "MYSQL_ERRNO" not in body and "ERROR" not in body, reply
    return body


def header(reply: Reply, name: str) -> str | None:
    for key, value in reply.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def refused(reply: Reply) -> bool:
    """Refused by the gateway (403) or by the database (200 with MYSQL_ERRNO)."""
    if reply.status == 403:
        return True
    return reply.status == 200 and "MYSQL_ERRNO" in reply.json()


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def iso(mariadb: MariaDB) -> Iterator[MariaDB]:
    """The databases, tables, routines and the two accounts of this module."""
    mariadb.sql(SETUP)
    mariadb.sql(accounts_sql())
    yield mariadb
    root(
        mariadb,
        "DROP DATABASE IF EXISTS iso; DROP DATABASE IF EXISTS iso_a; DROP DATABASE IF EXISTS "
        "iso_b; DROP DATABASE IF EXISTS iso_x; DROP USER IF EXISTS 'victim'@'localhost', "
        "'victim2'@'localhost', 'evil'@'localhost';",
    )


@pytest.fixture(scope="module")
def redis_iso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    reason = Redis.available()
    if reason:
        pytest.skip(reason)
    server = Redis(tmp_path_factory.mktemp("redis_iso")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(redis_iso: Redis) -> dict[str, str]:
    return {
        "writer": add_user(redis_iso, "writer", "write"),
        "admin": add_user(redis_iso, "admin", "admin"),
        "reader": add_user(redis_iso, "reader", "read"),
        "reader2": add_user(redis_iso, "reader2", "read"),
        "b_reader": add_user(redis_iso, "b_reader", "read", "--servers", "b"),
        "b_writer": add_user(redis_iso, "b_writer", "write", "--servers", "b"),
    }


@pytest.fixture(scope="module")
def gw(
    iso: MariaDB, redis_iso: Redis, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One connection per account: leaks are visible to the next request."""
    gateway = Gateway(
        tmp_path_factory.mktemp("gw_iso"),
        "--backend",
        dsn(iso),
        "--auth",
        "--redis",
        redis_iso.url,
        "--pool-max",
        "1",
    ).start()
    yield gateway
    gateway.stop()


def two_backends(
    iso: MariaDB, redis_iso: Redis, tmp_path_factory: pytest.TempPathFactory, mode: str, *extra: str
) -> Iterator[Gateway]:
    """A gateway over backends a and b, on two databases with different contents."""
    gateway = Gateway(
        tmp_path_factory.mktemp(f"gw_{mode}"),
        "--backend",
        dsn(iso, "iso_a", "a"),
        "--backend",
        dsn(iso, "iso_b", "b"),
        "--mode",
        mode,
        "--auth",
        "--redis",
        redis_iso.url,
        "--protect-admin",
        "false",  # (/stats is read without credentials)
        *extra,
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def gw_pool(
    iso: MariaDB, redis_iso: Redis, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """Backends a and b pooled."""
    yield from two_backends(iso, redis_iso, tmp_path_factory, "pool")


@pytest.fixture(scope="module")
def gw_named(
    iso: MariaDB, redis_iso: Redis, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """The same two backends, named (the client picks with SERVER), every read cached."""
    yield from two_backends(iso, redis_iso, tmp_path_factory, "named", "--cache-default-ttl", "60")


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB of this module's own, for attacks that may leave a server unusable (a frozen
    server, a transaction no one can end)."""
    server = MariaDB(tmp_path_factory.mktemp("spare_mariadb")).start()
    yield server
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


def leak_then_check(
    gw: Gateway,
    tokens: dict[str, str],
    leaker: str,
    leak: str,
    checker: str,
    check: str,
) -> tuple[Reply | None, Reply]:
    """``leak`` as ``leaker``, then ``check`` as ``checker`` (same account), and show it ran on
    the same connection. Returns (the leak's reply, or None when it was refused, the check's)."""
    before = conn_id(gw, tokens[leaker])
    leaked = ask(gw, tokens[leaker], leak)
    assert leaked.status in (200, 403), leaked
    if leaker in ("writer", "admin"):
        ok(leaked)  # the leak itself must work, or the test shows nothing
    checked = ask(gw, tokens[checker], check)
    after = conn_id(gw, tokens[checker])
    assert after == before, (
        f"the connection was replaced ({before} -> {after}) instead of being reset: "
        f"{gw.output()[-2000:]}"
    )
    return (
        leaked if leaked.status == 200 and "MYSQL_ERRNO" not in leaked.json() else None
    ), checked


# ====================================================================== A. connection hygiene

TRANSACTIONS = [
    pytest.param("START/**/TRANSACTION; INSERT INTO t (v) VALUES ({v})", id="start-comment"),
    pytest.param("BEGIN; INSERT INTO t (v) VALUES ({v})", id="begin"),
    pytest.param("SET autocommit=0; INSERT INTO t (v) VALUES ({v})", id="autocommit-0"),
    pytest.param("START TRANSACTION READ WRITE; INSERT INTO t (v) VALUES ({v})", id="read-write"),
    pytest.param("/*!START TRANSACTION*/; INSERT INTO t (v) VALUES ({v})", id="exec-comment"),
    pytest.param(
        "SET @@session.autocommit=OFF; INSERT INTO t (v) VALUES ({v})", id="autocommit-off"
    ),
]


@pytest.mark.parametrize("template", TRANSACTIONS)
def test_open_transaction_rolled_back(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str], template: str
) -> None:
    v = next(_VALUES)
    before = conn_id(gw, tokens["writer"])
    reply = ask(gw, tokens["writer"], template.format(v=v))
    body = ok(reply)
    assert results(body)[-1].get("AFFECTED_ROWS") == 1, reply
    assert body.get("ROLLED_BACK") is True, reply
    state = rows(ask(gw, tokens["admin"], "SELECT @@in_transaction, @@autocommit"))
    assert state == [[0, 1]], state
    assert conn_id(gw, tokens["admin"]) == before
    assert root_count(iso, f"v = {v}") == 0, "the row of a transaction left open was committed"


@pytest.mark.parametrize(
    "leak",
    [
        "START TRANSACTION",
        "START/**/TRANSACTION",
        "BEGIN",
        "SET autocommit=0",
        "/*!SET autocommit=0*/",
        "XA START 'n'",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
    ],
)
def test_transaction_left_open_does_not_swallow_the_next_write(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str], leak: str
) -> None:
    """A transaction (or autocommit off) left by one request must not capture the next
    user's INSERT (which would be lost when it is rolled back later)."""
    v = next(_VALUES)
    before = conn_id(gw, tokens["writer"])
    ok(ask(gw, tokens["writer"], leak))
    reply = ask(gw, tokens["admin"], f"INSERT INTO t (v) VALUES ({v})")
    body = ok(reply)
    assert results(body)[-1].get("AFFECTED_ROWS") == 1 and "ROLLED_BACK" not in body, reply
    assert conn_id(gw, tokens["admin"]) == before
    assert root_count(iso, f"v = {v}") == 1, "an acknowledged INSERT is not in the table"


def test_xa_transaction_rolled_back(gw: Gateway, iso: MariaDB, tokens: dict[str, str]) -> None:
    v = next(_VALUES)
    before = conn_id(gw, tokens["writer"])
    reply = ask(gw, tokens["writer"], f"XA START 'x'; INSERT INTO t (v) VALUES ({v}); XA END 'x'")
    body = ok(reply)
    assert body.get("ROLLED_BACK") is True, reply
    assert rows(ask(gw, tokens["admin"], "SELECT @@in_transaction")) == [[0]]
    # the xid is free again: the XA transaction is gone, not merely detached
    ok(ask(gw, tokens["admin"], "XA START 'x'; XA END 'x'; XA ROLLBACK 'x'"))
    assert conn_id(gw, tokens["admin"]) == before
    assert root_count(iso, f"v = {v}") == 0
    assert root(iso, "XA RECOVER").strip() == ""


def test_table_lock_released(gw: Gateway, iso: MariaDB, tokens: dict[str, str]) -> None:
    for leak in ("LOCK/**/TABLES t WRITE", "LOCK TABLES t READ", "/*!LOCK TABLES t WRITE*/"):
        _, checked = leak_then_check(
            gw, tokens, "writer", leak, "admin", "SELECT COUNT(*) FROM other"
        )
        assert rows(checked) == [[1]], (leak, checked)  # 1100 if t were still locked
        v = next(_VALUES)
        root(iso, f"INSERT INTO iso.t (v) VALUES ({v})")  # fails after 3 s if still locked
        assert root_count(iso, f"v = {v}") == 1


@pytest.mark.parametrize(
    ("leaker", "checker", "leak", "name"),
    [
        pytest.param("writer", "admin", "SELECT GET_LOCK('g', 0)", "g", id="get-lock"),
        pytest.param("writer", "admin", "DO GET_LOCK('g2', 0)", "g2", id="do-get-lock"),
        pytest.param(
            "writer",
            "admin",
            "SELECT lockit()",
            "fn",
            id="inside-stored-function",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known gap on the main account: the server does not report user-level locks, and one taken by stored code (function, trigger) is not in the SQL text; see README, Sessions",
            ),
        ),
        pytest.param(
            "writer",
            "admin",
            "INSERT INTO trig VALUES (0)",
            "tl",
            id="inside-trigger",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known gap on the main account: the server does not report user-level locks, and one taken by stored code (function, trigger) is not in the SQL text; see README, Sessions",
            ),
        ),
        pytest.param(
            "writer", "admin", hidden("\u00a0", " AND GET_LOCK('h', 0)"), "h", id="after-nbsp"
        ),
        pytest.param("reader", "reader2", "SELECT GET_LOCK('r', 0)", "r", id="reader"),
        pytest.param(
            "reader",
            "reader2",
            "SELECT l FROM lockview",
            "v",
            id="reader-through-view",
        ),
    ],
)
def test_user_lock_released(
    gw: Gateway,
    iso: MariaDB,
    tokens: dict[str, str],
    leaker: str,
    checker: str,
    leak: str,
    name: str,
) -> None:
    leaked, checked = leak_then_check(gw, tokens, leaker, leak, checker, "SELECT 1")
    if leaked is not None and "ROWS" in results(leaked.json())[-1]:
        assert rows(leaked) == [[1]], leaked  # the lock was taken
    holder = root(iso, f"SELECT IS_USED_LOCK('{name}')").strip()
    assert holder == "NULL", f"user lock {name!r} still held by connection {holder} after {leak!r}"


@pytest.mark.parametrize(
    ("leaker", "checker", "leak"),
    [
        pytest.param("writer", "admin", "use iso_a", id="use"),
        pytest.param("writer", "admin", "USE information_schema", id="use-is"),
        pytest.param("writer", "admin", "/*!USE iso_a*/", id="exec-comment"),
        pytest.param("reader", "reader2", "use iso_b", id="reader"),
        pytest.param("reader", "reader2", "use information_schema", id="reader-is"),
    ],
)
def test_configured_database_restored(
    gw: Gateway, tokens: dict[str, str], leaker: str, checker: str, leak: str
) -> None:
    _, checked = leak_then_check(gw, tokens, leaker, leak, checker, "SELECT DATABASE()")
    assert rows(checked) == [["iso"]], checked


def test_use_of_the_configured_database_works_for_every_role(
    gw: Gateway, tokens: dict[str, str]
) -> None:
    """DBSlayer client libraries send ``use <db>`` before every request."""
    for user in ("reader", "writer", "admin"):
        ok(ask(gw, tokens[user], "use iso"))
        assert rows(ask(gw, tokens[user], "SELECT DATABASE()")) == [["iso"]]


@pytest.mark.parametrize(
    ("leaker", "checker", "leak", "check"),
    [
        pytest.param(
            "writer", "admin", "SET SESSION sql_select_limit=1", "SELECT id FROM three", id="limit"
        ),
        pytest.param(
            "writer",
            "admin",
            "/*!SET SESSION sql_select_limit=1*/",
            "SELECT id FROM three",
            id="limit-exec-comment",
        ),
        pytest.param(
            "writer",
            "admin",
            "/*M!100000 SET sql_select_limit=1*/",
            "SELECT id FROM three",
            id="limit-mariadb-comment",
        ),
        pytest.param(
            "writer",
            "admin",
            "SELECT 1; SET @@sql_select_limit=1",
            "SELECT id FROM three",
            id="limit-second-statement",
        ),
        pytest.param(
            "reader",
            "reader2",
            "SET SESSION sql_select_limit=1",
            "SELECT id FROM three",
            id="reader-limit",
        ),
        pytest.param(
            "reader",
            "reader2",
            "/*!SET SESSION sql_select_limit=1*/",
            "SELECT id FROM three",
            id="reader-limit-exec-comment",
        ),
        pytest.param(
            "writer",
            "admin",
            "SET NAMES latin1",
            "SELECT @@character_set_client, @@character_set_results, @@collation_connection, "
            "'\u00e9\u20ac' AS s",
            id="names",
        ),
        pytest.param(
            "reader",
            "reader2",
            "SET NAMES latin1",
            "SELECT @@character_set_client, @@character_set_results, @@collation_connection, "
            "'\u00e9\u20ac' AS s",
            id="reader-names",
        ),
        pytest.param(
            "writer", "admin", "SET time_zone='+05:00'", "SELECT @@time_zone", id="time-zone"
        ),
        pytest.param(
            "writer",
            "admin",
            "SET SESSION sql_mode='ANSI_QUOTES'",
            "SELECT @@sql_mode",
            id="sql-mode",
        ),
        pytest.param(
            "writer",
            "admin",
            "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SELECT @@tx_isolation",
            id="isolation",
        ),
    ],
)
def test_session_variables_reset(
    gw: Gateway, tokens: dict[str, str], leaker: str, checker: str, leak: str, check: str
) -> None:
    baseline = rows(ask(gw, tokens[checker], check))
    _, checked = leak_then_check(gw, tokens, leaker, leak, checker, check)
    assert rows(checked) == baseline, (leak, checked)


@pytest.mark.parametrize(
    ("leaker", "checker", "leak"),
    [
        pytest.param("writer", "admin", "CREATE TEMPORARY TABLE three (id INT)", id="create"),
        pytest.param(
            "writer", "admin", "CREATE TEMPORARY TABLE three AS SELECT 9 AS id", id="create-as"
        ),
        pytest.param(
            "writer", "admin", "/*!CREATE TEMPORARY TABLE three (id INT)*/", id="exec-comment"
        ),
        pytest.param("reader", "reader2", "CREATE TEMPORARY TABLE three (id INT)", id="reader"),
    ],
)
def test_temporary_table_dropped(
    gw: Gateway, tokens: dict[str, str], leaker: str, checker: str, leak: str
) -> None:
    _, checked = leak_then_check(
        gw, tokens, leaker, leak, checker, "SELECT id FROM three ORDER BY id"
    )
    assert rows(checked) == [[1], [2], [3]], checked


@pytest.mark.parametrize(
    ("leaker", "checker", "leak"),
    [
        pytest.param("writer", "admin", "SET @x=1", id="set"),
        pytest.param("writer", "admin", "SELECT @y:=5", id="assign-in-select"),
        pytest.param("writer", "admin", "SELECT 1 INTO @z", id="select-into"),
        pytest.param("writer", "admin", hidden("\u00a0", " AND (@y:=6)"), id="after-nbsp"),
        pytest.param("writer", "admin", "SELECT 1 FROM three WHERE (@x:=id) > 2", id="in-where"),
        pytest.param("reader", "reader2", "SET @x=1", id="reader-set"),
        pytest.param("reader", "reader2", "SELECT @y:=5", id="reader-assign"),
        pytest.param("reader", "reader2", "SELECT 1 INTO @z", id="reader-select-into"),
        pytest.param("reader", "reader2", hidden("\u2003", " AND (@y:=6)"), id="reader-after-em"),
    ],
)
def test_user_variables_cleared(
    gw: Gateway, tokens: dict[str, str], leaker: str, checker: str, leak: str
) -> None:
    _, checked = leak_then_check(gw, tokens, leaker, leak, checker, "SELECT @x, @y, @z")
    assert rows(checked) == [[None, None, None]], (leak, checked)


@pytest.mark.parametrize(
    ("leaker", "checker", "leak"),
    [
        pytest.param("admin", "admin", "PREPARE p FROM 'SELECT 1'", id="prepare"),
        pytest.param("admin", "admin", "/*!PREPARE p FROM 'SELECT 1'*/", id="exec-comment"),
        pytest.param("admin", "admin", "PREPARE p FROM 'SELECT 1'; SET @pp = 1", id="multi"),
        pytest.param("reader", "reader2", "PREPARE p FROM 'SELECT 1'", id="reader"),
    ],
)
def test_prepared_statement_dropped(
    gw: Gateway, tokens: dict[str, str], leaker: str, checker: str, leak: str
) -> None:
    """(The gateway lets only admin users PREPARE: a prepared text may be an account
    statement. Write users get 403, checked below.)"""
    assert ask(gw, tokens["writer"], "PREPARE p FROM 'SELECT 1'").status == 403
    leaked, checked = leak_then_check(gw, tokens, leaker, leak, checker, "EXECUTE p")
    if checked.status == 403 and leaked is None:
        return  # the read role may run neither
    assert checked.status == 200 and checked.json().get("MYSQL_ERRNO") == 1243, checked


@pytest.mark.parametrize(
    ("leaker", "checker", "leak", "check"),
    [
        pytest.param(
            "writer", "admin", "HANDLER three OPEN", "HANDLER three READ FIRST", id="open"
        ),
        pytest.param(
            "writer", "admin", "HANDLER three OPEN AS h", "HANDLER h READ FIRST", id="alias"
        ),
        pytest.param(
            "reader", "reader2", "HANDLER three OPEN", "HANDLER three READ FIRST", id="reader"
        ),
    ],
)
def test_handler_closed(
    gw: Gateway, tokens: dict[str, str], leaker: str, checker: str, leak: str, check: str
) -> None:
    leaked, checked = leak_then_check(gw, tokens, leaker, leak, checker, check)
    if checked.status == 403 and leaked is None:
        return
    assert checked.status == 200 and checked.json().get("MYSQL_ERRNO") == 1109, checked


# ======================================================== B. roles enforced by the database


def snapshot(mariadb: MariaDB) -> str:
    """Everything a read user must not change: the rows of t, the sequence, the accounts."""
    return root(
        mariadb,
        "SELECT COUNT(*), COALESCE(SUM(v), 0) FROM iso.t;"
        "SELECT next_not_cached_value FROM iso.s;"
        "SELECT user, host, authentication_string FROM mysql.user "
        "WHERE user IN ('app', 'app_ro', 'victim') ORDER BY user, host;",
    )


def restore_accounts(mariadb: MariaDB) -> None:
    statements = []
    for host in ("127.0.0.1", "localhost"):
        statements.append(f"SET PASSWORD FOR 'app'@'{host}' = PASSWORD('apppw');")
        statements.append(f"SET PASSWORD FOR 'app_ro'@'{host}' = PASSWORD('ropw');")
    statements.append("CREATE OR REPLACE USER 'victim'@'localhost' IDENTIFIED BY 'v';")
    statements.append("DROP USER IF EXISTS 'victim2'@'localhost', 'evil'@'localhost';")
    mariadb.sql("\n".join(statements))


READ_ATTACKS = [
    pytest.param("SELECT 1 --\u00a0x\n;INSERT INTO t (v) VALUES (401)", id="nbsp-newline"),
    *[
        pytest.param(hidden(space, ";INSERT INTO t (v) VALUES (402)"), id=f"hidden-{name}")
        for name, space in UNICODE_SPACES.items()
    ],
    pytest.param("START/**/TRANSACTION; INSERT INTO t (v) VALUES (403)", id="start-comment"),
    pytest.param("/*!INSERT INTO t (v) VALUES (404)*/", id="exec-comment"),
    pytest.param("/*M!50000 INSERT INTO t (v) VALUES (405)*/", id="mariadb-exec-comment"),
    pytest.param("SELECT 1 /*!50000 ; INSERT INTO t (v) VALUES (406) */", id="select-exec-comment"),
    pytest.param("SET STATEMENT tx_read_only=0 FOR SELECT f()", id="set-statement-function"),
    pytest.param("SET STATEMENT transaction_read_only=0 FOR SELECT f()", id="set-statement-2"),
    pytest.param("CALL p()", id="call"),
    pytest.param("DO f()", id="do-function"),
    pytest.param("SELECT 1; INSERT INTO t (v) VALUES (407)", id="multi"),
    pytest.param(
        "SET SESSION TRANSACTION READ WRITE; INSERT INTO t (v) VALUES (408)", id="read-write"
    ),
    pytest.param("COMMIT; INSERT INTO t (v) VALUES (409)", id="commit-then-write"),
    pytest.param("insert into t (v) select 410", id="lowercase"),
    pytest.param("REPLACE INTO t (v) VALUES (411)", id="replace"),
    pytest.param("SELECT NEXTVAL(s)", id="nextval"),
    pytest.param("SELECT NEXT VALUE FOR s", id="next-value-for"),
    pytest.param("SET PASSWORD = PASSWORD('x')", id="own-password"),
    pytest.param(
        "EXECUTE IMMEDIATE CONCAT('SET PASS', 'WORD = PASSWORD(''x'')')", id="dynamic-password"
    ),
    pytest.param("EXECUTE IMMEDIATE 'INSERT INTO t (v) VALUES (412)'", id="execute-immediate"),
    pytest.param("LOCK TABLES t WRITE", id="lock-tables"),
    pytest.param("SELECT id FROM three INTO OUTFILE '/tmp/iso_read_outfile'", id="outfile"),
]


@pytest.mark.parametrize("attack", READ_ATTACKS)
def test_read_user_cannot_write(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str], attack: str
) -> None:
    before = snapshot(iso)
    try:
        reply = ask(gw, tokens["reader"], attack)
        assert refused(reply), f"a read user's {attack!r} was accepted: {reply}"
        assert snapshot(iso) == before, f"a read user's {attack!r} changed data: {reply}"
        assert not os.path.exists("/tmp/iso_read_outfile")
        # and the read account still works, in a new session
        assert rows(ask(gw, tokens["reader2"], "SELECT @@in_transaction")) == [[0]]
    finally:
        if snapshot(iso) != before:
            restore_accounts(iso)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("SELECT f()", id="select-function"),
        pytest.param("SELECT f() FROM three", id="select-function-from"),
        pytest.param("SELECT id FROM three WHERE f() = 1", id="function-in-where"),
    ],
)
def test_database_refuses_what_the_classifier_lets_through(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str], text: str
) -> None:
    """``SELECT f()`` is a SELECT to the classifier; f writes (as its definer): the database
    refuses it (1370: no EXECUTE for the read account, or 1792: read-only session)."""
    before = snapshot(iso)
    reply = ask(gw, tokens["reader"], text)
    assert reply.status == 200, reply
    assert reply.json().get("MYSQL_ERRNO") in (1370, 1792), reply
    assert snapshot(iso) == before
    # the account, not the session, refuses: with the session's read-only lowered, still 1370
    lowered = ask(gw, tokens["reader"], f"SET STATEMENT tx_read_only=0 FOR {text}")
    assert lowered.status == 403 or lowered.json().get("MYSQL_ERRNO") == 1370, lowered
    assert snapshot(iso) == before


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param("SELECT x FROM wv", id="plain"),
        pytest.param("SET STATEMENT tx_read_only=0 FOR SELECT x FROM wv", id="set-statement"),
        pytest.param("SET SESSION TRANSACTION READ WRITE; SELECT x FROM wv", id="read-write"),
        pytest.param("SET SESSION tx_read_only=0; SELECT x FROM wv", id="tx-read-only-0"),
        pytest.param("SET @@transaction_read_only=0; SELECT x FROM wv", id="transaction-read-only"),
        pytest.param(
            "/*!SET SESSION TRANSACTION READ WRITE*/; SELECT x FROM wv", id="exec-comment"
        ),
        pytest.param(
            hidden("\u00a0", ";SET SESSION TRANSACTION READ WRITE; SELECT x FROM wv"),
            id="hidden-nbsp",
        ),
    ],
)
def test_read_user_cannot_write_through_a_definer_view(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str], attack: str
) -> None:
    """A view (SQL SECURITY DEFINER, created by root) over a function that writes: the read
    account has SELECT on it, so only the read-only session stands; the read user's own SQL
    must not be able to lower it."""
    before = snapshot(iso)
    reply = ask(gw, tokens["reader"], attack)
    assert refused(reply), f"{attack!r} was accepted: {reply}"
    assert snapshot(iso) == before, f"a read user wrote through the view with {attack!r}"


def test_read_user_start_transaction_does_not_outlive_the_request(
    gw: Gateway, tokens: dict[str, str]
) -> None:
    for leak in ("START/**/TRANSACTION", "BEGIN", "SET autocommit=0", "XA START 'rx'"):
        _, checked = leak_then_check(
            gw, tokens, "reader", leak, "reader2", "SELECT @@in_transaction, @@autocommit"
        )
        assert rows(checked) == [[0, 1]], (leak, checked)


# ======================================================= C. no acknowledged write is lost

SABOTAGE = [
    "START/**/TRANSACTION",
    "BEGIN",
    "SET autocommit=0",
    "START TRANSACTION; INSERT INTO c (v) VALUES (-1)",
    "SET autocommit=0; INSERT INTO c (v) VALUES (-2)",
    "BEGIN; INSERT INTO c (v) VALUES (-3); SELECT COUNT(*) FROM c",
    "XA START 'cx'; INSERT INTO c (v) VALUES (-4); XA END 'cx'",
    "/*!SET autocommit=0*/",
    "SET @@session.autocommit=OFF",
    "START TRANSACTION WITH CONSISTENT SNAPSHOT",
    "SET autocommit=0; SELECT 1",
    hidden("\u00a0", ";SET autocommit=0"),
    hidden("\u00a0", ";START TRANSACTION; INSERT INTO c (v) VALUES (-5)"),
]


def test_no_acknowledged_write_is_lost(
    iso: MariaDB, redis_iso: Redis, tokens: dict[str, str], gateway_factory: Any
) -> None:
    gw = gateway_factory(
        "--backend",
        dsn(iso),
        "--auth",
        "--redis",
        redis_iso.url,
        "--pool-max",
        "3",
        "--max-user-in-flight",
        "8",
    )
    base = next(_VALUES) * 1000
    for _ in range(10):
        next(_VALUES)
    acked: list[int] = []
    rolled_back: list[Reply] = []
    failed: list[tuple[int, Reply]] = []
    sabotage_replies: list[Reply] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(k: int) -> None:
        for i in range(30):
            v = base + k * 100 + i
            reply = ask(gw, tokens["writer"], f"INSERT INTO c (v) VALUES ({v})")
            body = reply.json()
            with lock:
                if (
                    reply.status == 200
                    and "MYSQL_ERRNO" not in body
                    and results(body)
                    and results(body)[-1].get("AFFECTED_ROWS") == 1
                ):
                    acked.append(v)
                    if body.get("ROLLED_BACK"):
                        rolled_back.append(reply)
                else:
                    failed.append((v, reply))

    def saboteur() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            reply = ask(gw, tokens["admin"], SABOTAGE[n % len(SABOTAGE)])
            with lock:
                sabotage_replies.append(reply)

    saboteurs = [threading.Thread(target=saboteur) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in saboteurs + writers:
        t.start()
    for t in writers:
        t.join(60)
    stop.set()
    for t in saboteurs:
        t.join(30)
    assert len(sabotage_replies) >= len(SABOTAGE), "the saboteurs did not get to run"
    assert not failed, failed[:3]
    assert not rolled_back, f"plain INSERTs answered ROLLED_BACK: {rolled_back[:3]}"
    open_now = root(iso, "SELECT COUNT(*) FROM information_schema.innodb_trx").strip()
    gw.stop()
    gw.start()
    present = {int(x) for x in root(iso, f"SELECT v FROM iso.c WHERE v >= {base}").split()}
    missing = sorted(set(acked) - present)
    assert not missing, f"{len(missing)} acknowledged INSERTs lost, e.g. {missing[:5]}"
    assert root_count(iso, "v < 0", "iso.c") == 0, "a transaction left open was committed"
    assert open_now == "0", f"{open_now} transactions open while the gateway was idle"
    assert root(iso, "SELECT COUNT(*) FROM information_schema.innodb_trx").strip() == "0"
    assert root(iso, "XA RECOVER").strip() == ""
    ok(ask(gw, tokens["writer"], "SELECT COUNT(*) FROM c"))


# ======================================================= D. the cache is scoped by reach


def test_cache_in_pool_mode_never_serves_another_backends_answer(
    gw_pool: Gateway, tokens: dict[str, str]
) -> None:
    """A reader allowed on a and b caches an answer produced on a; a reader allowed only on
    b asking the same must get b's rows, from b."""
    for i in range(10):
        sql = f"SELECT who, {i} AS k FROM t"
        first = ask(gw_pool, tokens["reader"], sql, CACHE=60)
        if ok(first)["SERVER"] == "a":
            break
    else:
        pytest.fail("the pool never sent a read to backend a")
    assert rows(first) == [["from a", i]]
    again = ask(gw_pool, tokens["reader"], sql, CACHE=60)
    assert header(again, "X-Cache") in (None, "hit") and ok(again)["SERVER"] == "a"
    for user in ("b_reader", "b_writer"):
        other = ask(gw_pool, tokens[user], sql, CACHE=60)
        body = ok(other)
        assert body["SERVER"] == "b" and rows(other) == [["from b", i]], (user, other)
        if header(other, "X-Cache") is not None:
            assert header(other, "X-Cache") in ("miss", "hit"), other


def test_cache_in_named_mode_never_serves_another_backends_answer(
    gw_named: Gateway, tokens: dict[str, str]
) -> None:
    sql = "SELECT who FROM t WHERE who LIKE 'from%'"
    first = ask(gw_named, tokens["reader"], sql, SERVER="a")
    assert ok(first)["SERVER"] == "a" and rows(first) == [["from a"]]
    assert header(first, "X-Cache") == "miss", first
    hit = ask(gw_named, tokens["reader"], sql, SERVER="a")
    assert header(hit, "X-Cache") == "hit" and rows(hit) == [["from a"]]
    refused_a = ask(gw_named, tokens["b_reader"], sql, SERVER="a")
    assert refused_a.status == 403, refused_a
    on_b = ask(gw_named, tokens["b_reader"], sql, SERVER="b")
    assert ok(on_b)["SERVER"] == "b" and rows(on_b) == [["from b"]], on_b
    assert ask(gw_named, tokens["b_reader"], sql).status == 400  # SERVER required


@pytest.mark.parametrize("gateway_name", ["gw_pool", "gw_named"])
def test_cache_never_mixes_database_accounts(
    request: pytest.FixtureRequest, tokens: dict[str, str], gateway_name: str
) -> None:
    """The read and the write role run on different database accounts: one's cached answer
    is never the other's."""
    gw = request.getfixturevalue(gateway_name)
    extra: dict[str, Any] = {"CACHE": 60}
    if gateway_name == "gw_named":
        extra["SERVER"] = "b"
    tag = gateway_name
    # write first, then read
    as_writer = ask(gw, tokens["writer"], f"SELECT u, '{tag}' FROM whoami", **extra)
    assert rows(as_writer)[0][0].startswith("app@"), as_writer
    as_reader = ask(gw, tokens["reader"], f"SELECT u, '{tag}' FROM whoami", **extra)
    assert rows(as_reader)[0][0].startswith("app_ro@"), as_reader
    # read first, then write
    as_reader = ask(gw, tokens["reader"], f"SELECT u AS u2, '{tag}' FROM whoami", **extra)
    assert rows(as_reader)[0][0].startswith("app_ro@"), as_reader
    as_writer = ask(gw, tokens["writer"], f"SELECT u AS u2, '{tag}' FROM whoami", **extra)
    assert rows(as_writer)[0][0].startswith("app@"), as_writer
    # rows only the main account may read are not served to the read account
    secret = f"SELECT s, '{tag}' FROM iso_x.secret"
    assert rows(ask(gw, tokens["writer"], secret, **extra)) == [["hush", tag]]
    assert header(ask(gw, tokens["writer"], secret, **extra), "X-Cache") in (None, "hit")
    denied = ask(gw, tokens["reader"], secret, **extra)
    assert denied.status == 200 and denied.json().get("MYSQL_ERRNO") == 1142, denied


# ============================================================================ E. honest outcomes


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("INSERT INTO chk (v) VALUES (500)", id="single"),
        pytest.param("SELECT 1; INSERT INTO chk (v) VALUES (500)", id="second-statement"),
    ],
)
def test_failed_check_constraint_is_an_sql_error(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str], sql: str
) -> None:
    before = conn_id(gw, tokens["writer"])
    reply = ask(gw, tokens["writer"], sql)
    assert reply.status == 200 and reply.json().get("MYSQL_ERRNO") == 4025, reply
    assert conn_id(gw, tokens["writer"]) == before, "the connection was dropped after a 4025"
    assert root_count(iso, "v = 500", "iso.chk") == 0


def _backend_totals(gw: Gateway) -> tuple[int, int]:
    backends = gw.get("/stats").json()["backends"]
    return (
        sum(b["queries"] for b in backends.values()),
        sum(b["errors"] for b in backends.values()),
    )


@pytest.mark.parametrize("user", ["reader", "writer"])
@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT POINT(1,1) + 1", id="single"),
        pytest.param("SELECT 1; SELECT POINT(1,1) + 1", id="second-statement"),
    ],
)
def test_read_with_a_4000_error_is_an_sql_error_not_retried(
    gw_pool: Gateway, tokens: dict[str, str], user: str, sql: str
) -> None:
    queries, errors = _backend_totals(gw_pool)
    reply = ask(gw_pool, tokens[user], sql)
    assert reply.status == 200, reply
    body = reply.json()
    assert body.get("MYSQL_ERRNO") == 4078 and body.get("SERVER") in ("a", "b"), reply
    after_queries, after_errors = _backend_totals(gw_pool)
    assert after_queries - queries == 1, "the read was sent to more than one backend"
    assert after_errors == errors, "a 4078 counted as a backend failure"
    states = {n: b["state"] for n, b in gw_pool.get("/stats").json()["backends"].items()}
    assert all(s in ("up", "unknown") for s in states.values()), states


ACCOUNT_STATEMENTS = [
    pytest.param("SET PASSWORD = PASSWORD('x')", id="set-password"),
    pytest.param("SET PASSWORD FOR CURRENT_USER() = PASSWORD('x')", id="set-password-for"),
    pytest.param("ALTER USER CURRENT_USER() IDENTIFIED BY 'x'", id="alter-user"),
    pytest.param("/*!ALTER USER CURRENT_USER() IDENTIFIED BY 'x'*/", id="alter-user-comment"),
    pytest.param("/*!SET PASSWORD = PASSWORD('x')*/", id="set-password-comment"),
    pytest.param("/*M!100000 SET PASSWORD = PASSWORD('x')*/", id="set-password-m-comment"),
    pytest.param("SET/**/PASSWORD = PASSWORD('x')", id="set-comment-password"),
    pytest.param("SELECT 1; SET PASSWORD = PASSWORD('x')", id="second-statement"),
    pytest.param("GRANT SELECT ON iso.* TO 'victim'@'localhost'", id="grant"),
    pytest.param("REVOKE ALL PRIVILEGES ON iso.* FROM 'app_ro'@'127.0.0.1'", id="revoke"),
    pytest.param("RENAME USER 'victim'@'localhost' TO 'victim2'@'localhost'", id="rename-user"),
    pytest.param("DROP USER 'victim'@'localhost'", id="drop-user"),
    pytest.param("CREATE USER 'evil'@'localhost'", id="create-user"),
    pytest.param(hidden("\u00a0", ";SET PASSWORD = PASSWORD('x')"), id="hidden-nbsp"),
    pytest.param("EXECUTE IMMEDIATE 'SET PASSWORD = PASSWORD(''x'')'", id="execute-immediate"),
    pytest.param(
        "EXECUTE IMMEDIATE CONCAT('SET PASS', 'WORD = PASSWORD(''x'')')", id="execute-concat"
    ),
    pytest.param(
        "PREPARE s FROM CONCAT('SET PASS', 'WORD = PASSWORD(''x'')'); EXECUTE s",
        id="prepare-concat",
    ),
]


@pytest.mark.parametrize("sql", ACCOUNT_STATEMENTS)
def test_write_user_may_not_touch_database_accounts(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str], sql: str
) -> None:
    before = snapshot(iso)
    try:
        reply = ask(gw, tokens["writer"], sql)
        assert reply.status == 403, f"a write user's {sql!r} was not refused: {reply}"
        assert snapshot(iso) == before, f"a write user's {sql!r} changed an account"
        ok(ask(gw, tokens["writer"], "SELECT 1"))
    finally:
        if snapshot(iso) != before:
            restore_accounts(iso)


def test_write_user_may_not_hide_account_statements_in_a_procedure(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str]
) -> None:
    """The write account may create routines in its database; a procedure's body is run by
    CALL, which the gateway cannot read."""
    before = snapshot(iso)
    try:
        created = ask(
            gw, tokens["writer"], "CREATE OR REPLACE PROCEDURE pw() SET PASSWORD = PASSWORD('x')"
        )
        if created.status != 403:
            call = ask(gw, tokens["writer"], "CALL pw()")
            assert snapshot(iso) == before, f"CALL pw() changed the gateway's password: {call}"
    finally:
        if snapshot(iso) != before:
            restore_accounts(iso)
        root(iso, "DROP PROCEDURE IF EXISTS iso.pw")


def test_write_user_may_not_hide_account_statements_in_an_event(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str]
) -> None:
    """An event runs as its definer (the gateway's account) whenever the server's event
    scheduler is on: its body is an account statement the gateway did not refuse."""
    try:
        reply = ask(
            gw,
            tokens["writer"],
            "CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO SET PASSWORD = PASSWORD('x')",
        )
        assert reply.status == 403, f"an event that sets the gateway's password: {reply}"
    finally:
        root(iso, "DROP EVENT IF EXISTS iso.e")


def test_new_connections_work_after_account_attacks(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str]
) -> None:
    """The gateway's accounts still log in: kill the pooled connections, ask again."""
    for user in ("writer", "reader"):
        victim = conn_id(gw, tokens[user])
        root(iso, f"KILL CONNECTION {victim}")
        deadline = time.monotonic() + 5
        while (
            root(
                iso, f"SELECT COUNT(*) FROM information_schema.processlist WHERE id = {victim}"
            ).strip()
            != "0"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert conn_id(gw, tokens[user]) != victim


def test_admin_may_run_account_statements(
    gw: Gateway, iso: MariaDB, tokens: dict[str, str]
) -> None:
    """Not refused by the gateway (the database may still refuse: app has no CREATE USER)."""
    try:
        reply = ask(gw, tokens["admin"], "SET PASSWORD = PASSWORD('apppw')")
        ok(reply)
        for sql in (
            "ALTER USER CURRENT_USER() IDENTIFIED BY 'apppw'",
            "GRANT SELECT ON iso.* TO 'victim'@'localhost'",
            "RENAME USER 'victim'@'localhost' TO 'victim2'@'localhost'",
            "DROP USER 'victim'@'localhost'",
        ):
            reply = ask(gw, tokens["admin"], sql)
            assert reply.status == 200, (sql, reply)
        ok(ask(gw, tokens["admin"], "SELECT 1"))
    finally:
        restore_accounts(iso)


# ======================================================== risky leaks last (they may linger)


def test_prepared_xa_transaction_not_left_behind(spare: MariaDB, gateway_factory: Any) -> None:
    """A prepared XA transaction survives its connection holding its locks: a request must
    not leave one behind. (On the spare server: on MariaDB 10.11 a COM_RESET_CONNECTION after
    XA PREPARE leaves an InnoDB transaction that holds its locks until the server restarts,
    even after XA ROLLBACK.)"""
    spare.sql("CREATE DATABASE xa; CREATE TABLE xa.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    gw: Gateway = gateway_factory("--backend", spare.dsn("xa", "xa"), "--pool-max", "1")
    before = conn_id(gw, None)
    reply = gw.db(
        {"SQL": "XA START 'xp'; INSERT INTO t (v) VALUES (1); XA END 'xp'; XA PREPARE 'xp'"}
    )
    assert reply.status == 400 and "XA PREPARE" in reply.json()["ERROR"], reply
    left = spare.sql("XA RECOVER").strip()
    after = gw.db({"SQL": "SELECT CONNECTION_ID(), COUNT(*) FROM t"})
    trx = spare.sql("SELECT COUNT(*) FROM information_schema.innodb_trx").strip()
    if left:
        spare.sql("XA ROLLBACK 'xp'")
    assert not left, f"a prepared XA transaction was left behind by {reply}"
    assert trx == "0", f"{trx} InnoDB transactions open after {reply}"
    body = ok(after)
    assert results(body)[0]["ROWS"] == [[before, 0]], after


# ============================================================================ F. a frozen backend


def test_frozen_backend_answers_within_limits(spare: MariaDB, gateway_factory: Any) -> None:
    limit, connect = 2.0, 2.0
    server = spare
    stopped = False
    try:
        server.sql("CREATE DATABASE f; CREATE TABLE f.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        gw: Gateway = gateway_factory(
            "--backend",
            server.dsn("f", "frozen"),
            "--max-statement-time",
            str(limit),
            "--connect-timeout",
            str(connect),
            "--health-interval",
            "1",
        )
        # warm: several connections open and used
        for _ in range(3):
            warm = [
                threading.Thread(target=lambda: gw.db({"SQL": "SELECT SLEEP(0.2)"}))
                for _ in range(4)
            ]
            for t in warm:
                t.start()
            for t in warm:
                t.join(30)
        assert ok(gw.db({"SQL": "INSERT INTO t (v) VALUES (0)"}))
        assert ok(gw.db({"SQL": "SELECT COUNT(*) FROM t"}))
        pool = gw.get("/stats").json()["backends"]["frozen"]["pool"]
        assert pool["idle"] >= 4, pool

        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        stopped = True
        outcomes: dict[str, tuple[Reply | Exception, float]] = {}

        def send(name: str, sql: str) -> None:
            started = time.monotonic()
            try:
                reply: Reply | Exception = gw.db({"SQL": sql}, timeout=30)
            except Exception as e:  # (a client timeout: the gateway hung)
                reply = e
            outcomes[name] = (reply, time.monotonic() - started)

        requests = {
            "write1": "INSERT INTO t (v) VALUES (1)",
            "read1": "SELECT 1",
            "write2": "INSERT INTO t (v) VALUES (2)",
            "read2": "SELECT COUNT(*) FROM t",
        }
        threads = [threading.Thread(target=send, args=item) for item in requests.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        bound = limit + connect + 2.0
        report = {k: (repr(r), round(s, 2)) for k, (r, s) in outcomes.items()}
        assert set(outcomes) == set(requests), report
        for name, (reply, seconds) in outcomes.items():
            assert isinstance(reply, Reply), (name, report)
            assert seconds <= bound, (name, report)
            if name.startswith("write"):
                if reply.status == 502:
                    assert "may or may not have been applied" in reply.json()["ERROR"], report
                else:
                    assert reply.status == 503, report  # nothing sent
            else:
                assert reply.status in (502, 503), report
        assert any(
            isinstance(r, Reply) and r.status == 502
            for n, (r, _) in outcomes.items()
            if n.startswith("write")
        ), (
            f"no write was sent to the frozen server: {report}"
        )
        deadline = time.monotonic() + 3
        while True:
            state = gw.get("/stats").json()["backends"]["frozen"]["state"]
            if state == "down":
                break
            assert time.monotonic() < deadline, f"backend state {state!r}, not down: {report}"
            time.sleep(0.1)
    finally:
        if stopped and server.proc is not None:
            os.kill(server.proc.pid, signal.SIGCONT)
