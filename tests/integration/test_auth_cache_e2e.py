"""Users, roles and the answer cache end to end: a real redis-server, a real MariaDB, the
gateway and the `dbslayer users` command, as an operator would use them."""

from __future__ import annotations

import base64
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, Redis, Reply, add_user, bearer, users

BIN = Path(sys.executable).parent


def basic(name: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


@pytest.fixture
def table(mariadb: MariaDB) -> str:
    mariadb.sql(
        "CREATE OR REPLACE TABLE test.notes (id INT AUTO_INCREMENT PRIMARY KEY, t VARCHAR(20));"
        "INSERT INTO test.notes (t) VALUES ('a'), ('b');\n"
        "DELIMITER //\n"
        "CREATE OR REPLACE FUNCTION test.sneaky() RETURNS INT MODIFIES SQL DATA "
        "BEGIN INSERT INTO test.notes (t) VALUES ('sneaked'); RETURN 1; END//\n"
        "DELIMITER ;\n"
    )
    return "notes"


@pytest.fixture
def read_account(mariadb: MariaDB) -> str:
    """A read account for ``test`` (SELECT and SHOW VIEW only, as `dbslayer grants` makes it);
    the DSN of the session's MariaDB with it as the read account."""
    mariadb.sql(
        "CREATE USER IF NOT EXISTS 'e2e_ro'@'127.0.0.1' IDENTIFIED BY 'ro-pw';"
        "GRANT SELECT, SHOW VIEW ON `test`.* TO 'e2e_ro'@'127.0.0.1';"
    )
    return mariadb.dsn() + "&read_user=e2e_ro&read_password=ro-pw"


def count(mariadb: MariaDB) -> int:
    return int(mariadb.sql("SELECT COUNT(*) FROM test.notes").strip())


def test_users_and_roles(
    mariadb: MariaDB, redis: Redis, table: str, read_account: str, gateway_factory: Any
) -> None:
    """A user from the command line works with both header forms; bad, disabled and removed
    users are refused; a read user runs on the read account, its writes are refused, a
    hidden one by the database."""
    writer = add_user(redis, "writer", "write")
    reader = add_user(redis, "reader", "read")
    assert writer not in redis.command("HGETALL", "dbslayer:user:writer")
    gw: Gateway = gateway_factory(
        "--backend",
        read_account,
        "--auth",
        "--redis",
        redis.url,
        "--auth-cache-ttl",
        "1",
        "--protect-admin",
        "false",  # (its /stats is read without credentials below)
    )
    select = {"SQL": "SELECT COUNT(*) FROM notes"}
    assert gw.db(select, headers=bearer(writer)).json()["RESULT"]["ROWS"] == [[2]]
    assert gw.db(select, headers=basic("writer", writer)).status == 200

    missing = gw.db(select)
    assert missing.status == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
    assert gw.db(select, headers=bearer("not-a-token")).status == 401
    assert gw.db(select, headers=basic("writer", reader)).status == 401

    insert = {"SQL": "INSERT INTO notes (t) VALUES ('x')"}
    refused = gw.db(insert, headers=bearer(reader))
    assert refused.status == 403 and "role read" in refused.json()["ERROR"]
    who = gw.db({"SQL": "SELECT CURRENT_USER()"}, headers=bearer(reader)).json()
    assert who["RESULT"]["ROWS"] == [["e2e_ro@127.0.0.1"]]
    hidden = gw.db({"SQL": "SELECT sneaky()"}, headers=bearer(reader))
    # The session is read-only too (1792 comes first); without it the account has no
    # EXECUTE (1370).
    assert hidden.status == 200 and hidden.json()["MYSQL_ERRNO"] in (1792, 1370), hidden
    assert count(mariadb) == 2
    assert gw.db(insert, headers=bearer(writer)).status == 200 and count(mariadb) == 3
    assert gw.db(select, headers=bearer(reader)).status == 200  # read-only session released

    assert users(redis, "disable", "writer").returncode == 0
    time.sleep(1.2)
    disabled = gw.db(select, headers=bearer(writer))
    assert disabled.status == 403 and "disabled" in disabled.json()["ERROR"]
    assert users(redis, "remove", "reader").returncode == 0
    time.sleep(1.2)
    assert gw.db(select, headers=bearer(reader)).status == 401
    listing = users(redis, "list").stdout
    assert "writer" in listing and "reader" not in listing and writer not in listing

    snapshot = gw.get("/stats").json()
    assert snapshot["auth"]["success"] >= 4 and snapshot["auth"]["failure"] >= 5
    assert snapshot["backends"]["db1"]["read_enforcement"] == "account"


def test_read_on_shared_account(
    mariadb: MariaDB, redis: Redis, table: str, gateway_factory: Any
) -> None:
    """Without a read account, --auth stops start-up unless --read-on-shared-account: then a
    read user runs on the main account in a read-only session (a write hidden in a stored
    function is refused by that session, error 1792), and /stats says so."""
    reader = add_user(redis, "reader", "read")
    with pytest.raises(RuntimeError, match="backend db1 has no read account"):
        gateway_factory("--backend", mariadb.dsn(), "--auth", "--redis", redis.url)
    gw: Gateway = gateway_factory(
        "--backend",
        mariadb.dsn(),
        "--auth",
        "--redis",
        redis.url,
        "--read-on-shared-account",
        "--protect-admin",
        "false",  # (its /stats is read without credentials below)
    )
    hidden = gw.db({"SQL": "SELECT sneaky()"}, headers=bearer(reader))
    assert hidden.status == 200 and hidden.json()["MYSQL_ERRNO"] == 1792, hidden
    assert count(mariadb) == 2
    assert gw.get("/stats").json()["backends"]["db1"]["read_enforcement"] == "session"


def test_backend_restriction_and_protected_monitoring(
    mariadb: MariaDB, redis: Redis, gateway_factory: Any
) -> None:
    """A user limited to some backends is refused others (403); with protect_admin the
    monitoring routes need an admin."""
    mariadb.sql("CREATE DATABASE IF NOT EXISTS other")
    limited = add_user(redis, "limited", "write", "--servers", "one")
    admin = add_user(redis, "boss", "admin")
    gw: Gateway = gateway_factory(
        "--backend",
        mariadb.dsn(name="one"),
        "--backend",
        mariadb.dsn(database="other", name="two"),
        "--mode",
        "named",
        "--auth",
        "--redis",
        redis.url,
        "--protect-admin",
        "--read-on-shared-account",
    )
    assert gw.db({"SQL": "SELECT 1", "SERVER": "one"}, headers=bearer(limited)).status == 200
    other = gw.db({"SQL": "SELECT 1", "SERVER": "two"}, headers=bearer(limited))
    assert other.status == 403 and "two" in other.json()["ERROR"]
    assert gw.get("/stats").status == 401
    assert gw.get("/stats", headers=bearer(limited)).status == 403
    assert gw.get("/stats", headers=bearer(admin)).status == 200
    assert gw.get("/metrics", headers=bearer(admin)).status == 200
    assert gw.get("/health").status == 200


def test_cache_serves_until_ttl(
    mariadb: MariaDB, redis: Redis, table: str, gateway_factory: Any
) -> None:
    """A cached answer equals the database's until its TTL ends; NOW() is never cached."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--redis", redis.url)
    ask = {"SQL": "SELECT t FROM notes ORDER BY id", "CACHE": 2}
    first = gw.db(ask)
    assert first.headers["X-Cache"] == "miss" and first.json()["RESULT"]["ROWS"] == [["a"], ["b"]]
    mariadb.sql("INSERT INTO test.notes (t) VALUES ('c')")
    second = gw.db(ask)
    assert second.headers["X-Cache"] == "hit" and second.json() == first.json()
    as_xml = gw.db({**ask, "FORMAT": "xml"})
    assert as_xml.headers["X-Cache"] == "hit" and b"<item>b</item>" in as_xml.body
    time.sleep(2.2)
    third = gw.db(ask)
    assert third.headers["X-Cache"] == "miss" and third.json()["RESULT"]["ROWS"] == [
        ["a"],
        ["b"],
        ["c"],
    ]
    now = {"SQL": "SELECT NOW(6) AS n", "CACHE": 60}
    one, two = gw.db(now), gw.db(now)
    assert one.headers["X-Cache"] == two.headers["X-Cache"] == "bypass"
    assert one.json()["RESULT"]["ROWS"] != two.json()["RESULT"]["ROWS"]
    assert "X-Cache" not in gw.db({"SQL": "SELECT 1"}).headers
    assert (
        gw.db({"SQL": "INSERT INTO notes (t) VALUES ('d')", "CACHE": 60}).headers.get("X-Cache")
        is None
    )
    assert redis.command("KEYS", "dbslayer:cache:*")
    snapshot = gw.get("/stats").json()["cache"]
    assert snapshot["hit"] >= 2 and snapshot["miss"] >= 2


@pytest.mark.parametrize("workers", ["1", "2"])
def test_one_backend_query_for_a_cold_key(
    mariadb: MariaDB, redis: Redis, gateway_factory: Any, workers: str
) -> None:
    """100 concurrent requests for a cold key run one backend query (counted on the server),
    with one worker process or several (a lock in Redis)."""
    gw: Gateway = gateway_factory(
        "--backend", mariadb.dsn(), "--redis", redis.url, "--workers", workers
    )
    marker = f"cold_{time.time_ns()}"
    mariadb.sql("SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1")
    try:
        ask = {"SQL": f"SELECT COUNT(*) AS {marker} FROM seq_1_to_3000000", "CACHE": 30}
        replies: list[Reply] = []
        lock = threading.Lock()

        def one() -> None:
            reply = gw.db(ask, timeout=30)
            with lock:
                replies.append(reply)

        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(replies) == 100 and all(r.status == 200 for r in replies)
        runs = mariadb.sql(
            f"SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Query' "
            f"AND argument LIKE 'SELECT COUNT(*) AS {marker}%'"
        ).strip()
        assert runs == "1", runs
    finally:
        mariadb.sql("SET GLOBAL general_log = 0; TRUNCATE mysql.general_log")


def test_redis_down_and_back(
    mariadb: MariaDB, redis: Redis, table: str, gateway_factory: Any
) -> None:
    """Redis killed: freshly cached users are served, unknown users get 503 quickly, the cache
    is bypassed and the database answers; Redis restarted: all back, no gateway restart."""
    known = add_user(redis, "known", "write")
    gw: Gateway = gateway_factory(
        "--backend",
        mariadb.dsn(),
        "--auth",
        "--read-on-shared-account",
        "--redis",
        redis.url,
        "--auth-cache-ttl",
        "30",
        "--redis-timeout",
        "1",
        "--protect-admin",
        "false",  # (its /stats is read without credentials, Redis down, below)
    )
    ask = {"SQL": "SELECT t FROM notes ORDER BY id", "CACHE": 60}
    assert gw.db(ask, headers=bearer(known)).headers["X-Cache"] == "miss"
    assert gw.db(ask, headers=bearer(known)).headers["X-Cache"] == "hit"
    redis.kill()
    for _ in range(3):
        started = time.monotonic()
        unknown = gw.db({"SQL": "SELECT 1"}, headers=bearer("someone-else"))
        assert time.monotonic() - started < 2.5
        assert unknown.status == 503 and unknown.headers["Retry-After"] == "1"
    served = gw.db(ask, headers=bearer(known))
    assert served.status == 200 and served.headers["X-Cache"] == "bypass"
    assert served.json()["RESULT"]["ROWS"] == [["a"], ["b"]]
    assert gw.get("/stats").json()["redis"]["errors"] >= 1
    redis.start()
    newcomer = add_user(redis, "newcomer", "read")
    deadline = time.monotonic() + 10
    while gw.db({"SQL": "SELECT 1"}, headers=bearer(newcomer)).status != 200:
        assert time.monotonic() < deadline, "the gateway did not reconnect to Redis"
        time.sleep(0.2)
    # The cache has a Redis connection of its own (user look-ups never queue behind it): it
    # comes back on its own schedule, within the same bound.
    while gw.db(ask, headers=bearer(known)).headers["X-Cache"] == "bypass":
        assert time.monotonic() < deadline, "the cache did not reconnect to Redis"
        time.sleep(0.2)
    assert gw.db(ask, headers=bearer(known)).headers["X-Cache"] == "hit"


def test_in_process_cache_without_redis(mariadb: MariaDB, gateway_factory: Any) -> None:
    """Without Redis the answer cache is a bounded in-process one."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--cache-memory-entries", "2")
    ask = {"SQL": "SELECT 42 AS answer", "CACHE": 30}
    assert gw.db(ask).headers["X-Cache"] == "miss"
    assert gw.db(ask).headers["X-Cache"] == "hit"
    for n in (1, 2):
        gw.db({"SQL": f"SELECT {n}", "CACHE": 30})
    assert gw.db(ask).headers["X-Cache"] == "miss"  # evicted: the cache holds two answers
