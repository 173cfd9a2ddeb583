"""Several real MariaDB backends: failover without double writes, health checks and fail-back,
primary/replica routing with real replication, time limits, all backends down."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, Reply

INTERVAL = 1.0  # health interval used by these tests (the default is 2 s)
HEALTH = ["--health-interval", str(INTERVAL), "--health-max-backoff", str(1.5 * INTERVAL)]


def server(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> MariaDB:
    reason = MariaDB.available()
    if reason:
        pytest.skip(reason)
    return MariaDB(tmp_path_factory.mktemp(name), extra=list(extra)).start()


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two independent servers, each with the table the writes go to."""
    a = server(tmp_path_factory, "a")
    b = server(tmp_path_factory, "b")
    for s in (a, b):
        s.sql(
            "CREATE DATABASE app; CREATE TABLE app.writes (id VARCHAR(64), n INT) ENGINE=InnoDB;"
            "CREATE TABLE app.fixed (k INT PRIMARY KEY, v VARCHAR(10));"
            "INSERT INTO app.fixed VALUES (1, 'one'), (2, 'two')"
        )
    yield a, b
    a.stop()
    b.stop()


def rows_per_id(*servers: MariaDB) -> Counter[str]:
    counts: Counter[str] = Counter()
    for s in servers:
        for line in s.sql("SELECT id FROM app.writes").split():
            counts[line] += 1
    return counts


def test_kill_one_of_two_during_traffic(pair: Any, gateway_factory: Any) -> None:
    """kill -9 of one pool backend under a stream of reads and writes: reads all answered
    correctly, nothing hangs, no write applied twice, and the restarted server is back in
    rotation within two health intervals."""
    a, b = pair
    gw: Gateway = gateway_factory(
        "--backend",
        a.dsn(database="app", name="a"),
        "--backend",
        b.dsn(database="app", name="b"),
        "--connect-timeout",
        "2",
        *HEALTH,
    )
    stop = threading.Event()
    outcomes: list[tuple[str, str, Reply, float, float]] = []
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            if len(outcomes) % 2:
                ident = uuid.uuid4().hex
                kind, request = (
                    ident,
                    {"SQL": "INSERT INTO writes VALUES (%s, 1)", "PARAMS": [ident]},
                )
            else:
                kind, request = "read", {"SQL": "SELECT v FROM fixed WHERE k = 2"}
            started = time.monotonic()
            reply = gw.db(request, timeout=30)
            with lock:
                outcomes.append(
                    (
                        "write" if kind != "read" else "read",
                        kind,
                        reply,
                        time.monotonic() - started,
                        started,
                    )
                )

    workers = [threading.Thread(target=client) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.5)
    a.kill()
    killed_at = time.monotonic()
    time.sleep(2.0)
    a.start()
    back_at = time.monotonic()
    returned = None
    while time.monotonic() - back_at < 4 * INTERVAL and returned is None:
        with lock:
            recent = [o for o in outcomes[-8:] if o[2].status == 200]
        if any(o[2].json().get("SERVER") == "a" for o in recent):
            returned = time.monotonic() - back_at
        time.sleep(0.05)
    stop.set()
    for w in workers:
        w.join(30)

    reads = [o for o in outcomes if o[0] == "read"]
    writes = [o for o in outcomes if o[0] == "write"]
    assert len(reads) > 20 and len(writes) > 20, (len(reads), len(writes))
    for _, _, reply, _, _ in reads:
        assert reply.status == 200, reply
        assert reply.json()["RESULT"]["ROWS"] == [["two"]]
    assert max(o[3] for o in outcomes) < 2 + 1.0, "a request waited past the connect timeout"
    counts = rows_per_id(a, b)
    statuses = Counter(o[2].status for o in writes)
    for _, ident, reply, _, _ in writes:
        assert counts[ident] <= 1, f"write {ident} applied {counts[ident]} times"
        if reply.status == 200:
            assert counts[ident] == 1, f"acknowledged write {ident} missing"
            assert reply.json()["SERVER"] in ("a", "b")
        else:
            assert reply.status in (502, 503), reply
            assert reply.json()["SERVER"] == "a" or reply.status == 503
    after_kill = [o for o in outcomes if killed_at <= o[4] <= killed_at + 1.0]
    print(
        f"\nkill test: {len(reads)} reads (all answered), {len(writes)} writes "
        f"{dict(statuses)}, longest request {max(o[3] for o in outcomes):.3f} s, "
        f"longest in the second after the kill {max(o[3] for o in after_kill):.3f} s "
        f"({len(after_kill)} requests), restarted server back in rotation after {returned:.2f} s"
    )
    assert returned is not None and returned <= 2 * INTERVAL + 0.5, returned
    snapshot = gw.get("/stats").json()["backends"]
    assert snapshot["a"]["state"] == "up" and snapshot["a"]["state_changes"] >= 2


@pytest.fixture
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A primary and a replica with real MariaDB replication (GTID)."""
    primary = server(tmp_path_factory, "primary", "--server-id=1", "--log-bin=bin")
    replica = server(tmp_path_factory, "replica", "--server-id=2", "--log-bin=bin")
    primary.sql(
        "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'replpw';"
        "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';"
        "CREATE DATABASE app; CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    )
    replica.sql(
        f"SET GLOBAL gtid_slave_pos=''; CHANGE MASTER TO MASTER_HOST='127.0.0.1', "
        f"MASTER_PORT={primary.port}, MASTER_USER='repl', MASTER_PASSWORD='replpw', "
        f"MASTER_USE_GTID=slave_pos; START SLAVE;"
    )
    deadline = time.monotonic() + 20
    while "t" not in replica.sql(
        "SHOW TABLES FROM app" if "app" in replica.sql("SHOW DATABASES") else "SELECT 'no'"
    ):
        assert time.monotonic() < deadline, replica.sql("SHOW SLAVE STATUS\\G")
        time.sleep(0.1)
    yield primary, replica
    replica.stop()
    primary.stop()


def test_primary_replica_routing(replicated: Any, gateway_factory: Any) -> None:
    """Writes go to the primary and reads to both; reads continue on the primary when the
    replica stops; a primary turned read-only gets no writes, with a clear error."""
    primary, replica = replicated
    gw: Gateway = gateway_factory(
        "--backend",
        primary.dsn(database="app", name="p") + "&role=primary",
        "--backend",
        replica.dsn(database="app", name="r") + "&role=replica",
        *HEALTH,
    )
    for i in range(5):
        answer = gw.db({"SQL": "INSERT INTO t (v) VALUES (%s)", "PARAMS": [i]}).json()
        assert answer["SERVER"] == "p" and answer["RESULT"]["AFFECTED_ROWS"] == 1
    time.sleep(1.0)  # replication
    servers: Counter[str] = Counter()
    for _ in range(30):
        answer = gw.db({"SQL": "SELECT COUNT(*) AS n FROM t"}).json()
        assert answer["RESULT"]["ROWS"] == [[5]], answer
        servers[answer["SERVER"]] += 1
    assert servers["p"] > 0 and servers["r"] > 0, servers
    assert gw.db({"SQL": "SELECT 1 FOR UPDATE"}).json()["SERVER"] == "p"

    replica.stop()
    for _ in range(20):
        reply = gw.db({"SQL": "SELECT COUNT(*) AS n FROM t"})
        assert reply.status == 200 and reply.json()["SERVER"] == "p", reply

    primary.sql("SET GLOBAL read_only = 1")
    time.sleep(2.5 * INTERVAL)
    reply = gw.db({"SQL": "INSERT INTO t (v) VALUES (99)"})
    assert reply.status == 503, reply
    assert "read-only" in reply.json()["ERROR"] and "nothing was sent" in reply.json()["ERROR"]
    assert primary.sql("SELECT COUNT(*) FROM app.t WHERE v = 99").strip() == "0"
    assert gw.db({"SQL": "SELECT COUNT(*) FROM t"}).status == 200


def test_timeout_stops_the_statement(mariadb: MariaDB, gateway_factory: Any) -> None:
    """SLEEP(10) with TIMEOUT 500 answers 504 in about half a second, the statement is gone
    from the server, and the same pool serves the next request."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--pool-max", "1")
    started = time.monotonic()
    reply = gw.db({"SQL": "SELECT SLEEP(10)", "TIMEOUT": 500})
    took = time.monotonic() - started
    assert reply.status == 504, reply
    answer = reply.json()
    assert (
        "500 ms" in answer["ERROR"] and answer["SERVER"] == "db1" and answer["MYSQL_ERRNO"] == 1969
    )
    assert 0.4 < took < 1.5, took
    assert "SLEEP(10)" not in mariadb.sql("SHOW FULL PROCESSLIST")
    assert gw.db({"SQL": "SELECT 7"}).json()["RESULT"]["ROWS"] == [[7]]
    print(f"\n504 after {took:.3f} s")


def test_gateway_kills_what_the_server_does_not_stop(
    mariadb: MariaDB, gateway_factory: Any
) -> None:
    """A statement that escapes the server-side limit is stopped by the gateway's KILL QUERY."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--pool-max", "1")
    started = time.monotonic()
    reply = gw.db({"SQL": "SET SESSION max_statement_time = 0; SELECT SLEEP(5)", "TIMEOUT": 300})
    took = time.monotonic() - started
    assert reply.status == 504, reply
    assert took < 2, took
    assert "SLEEP(5)" not in mariadb.sql("SHOW FULL PROCESSLIST")
    assert gw.db({"SQL": "SELECT 8"}).json()["RESULT"]["ROWS"] == [[8]]


def test_timeout_cannot_raise_the_limit(mariadb: MariaDB, gateway_factory: Any) -> None:
    """TIMEOUT only lowers the configured maximum."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-statement-time", "0.5")
    reply = gw.db({"SQL": "SELECT SLEEP(3)", "TIMEOUT": 10_000})
    assert reply.status == 504 and "500 ms" in reply.json()["ERROR"]


def test_all_backends_down_and_back(
    tmp_path_factory: pytest.TempPathFactory, gateway_factory: Any
) -> None:
    """All backends down: 503 with Retry-After quickly, every time; service resumes by itself."""
    one = server(tmp_path_factory, "one")
    two = server(tmp_path_factory, "two")
    try:
        gw: Gateway = gateway_factory(
            "--backend",
            one.dsn(database="mysql", name="one"),
            "--backend",
            two.dsn(database="mysql", name="two"),
            "--connect-timeout",
            "2",
            *HEALTH,
        )
        assert gw.db({"SQL": "SELECT 1"}).status == 200
        one.kill()
        two.kill()
        for _ in range(6):
            started = time.monotonic()
            reply = gw.db({"SQL": "SELECT 1"})
            assert time.monotonic() - started < 2, "waited past the connect timeout"
            assert reply.status == 503 and reply.headers["Retry-After"] == "1", reply
            assert reply.json()["MYSQL_ERRNO"] in (2002, 2003)
        assert gw.get("/ready").status == 503
        two.start()
        deadline = time.monotonic() + 4 * INTERVAL
        while gw.db({"SQL": "SELECT 1"}).status != 200:
            assert time.monotonic() < deadline, "service did not resume"
            time.sleep(0.1)
        assert gw.db({"SQL": "SELECT 1"}).json()["SERVER"] == "two"
        assert gw.get("/ready").status == 200
    finally:
        one.stop()
        two.stop()
