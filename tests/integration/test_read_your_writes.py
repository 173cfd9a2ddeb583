"""Read your writes on real MariaDB replication: a write's answer carries its GTID, and a read
sent with it (AFTER) sees the write even when the replica has not applied it; without AFTER
the behaviour is as before (a replica may answer without the write)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, replicate

INTERVAL = 1.0
HEALTH = ["--health-interval", str(INTERVAL), "--health-max-backoff", str(1.5 * INTERVAL)]


def server(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> MariaDB:
    reason = MariaDB.available()
    if reason:
        pytest.skip(reason)
    return MariaDB(tmp_path_factory.mktemp(name), extra=list(extra)).start()


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    primary = server(tmp_path_factory, "primary", "--server-id=1", "--log-bin=bin")
    replica = server(tmp_path_factory, "replica", "--server-id=2", "--log-bin=bin")
    replicate(primary, replica)
    primary.sql("CREATE DATABASE app; CREATE TABLE app.t (k VARCHAR(40), v INT) ENGINE=InnoDB;")
    deadline = time.monotonic() + 10
    while "t" not in replica.sql("SHOW TABLES FROM app"):
        assert time.monotonic() < deadline, "the table did not replicate"
        time.sleep(0.1)
    yield primary, replica
    replica.stop()
    primary.stop()


@pytest.fixture(scope="module")
def gw(replicated: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    primary, replica = replicated
    gateway = Gateway(
        tmp_path_factory.mktemp("gw"),
        "--backend",
        primary.dsn(database="app", name="p") + "&role=primary",
        "--backend",
        replica.dsn(database="app", name="r") + "&role=replica",
        "--gtid-wait-ms",
        "300",
        *HEALTH,
    ).start()
    yield gateway
    gateway.stop()


def write(gw: Gateway, key: str) -> dict[str, Any]:
    answer: dict[str, Any] = gw.db({"SQL": "INSERT INTO t (k, v) VALUES (%s, 1)", "PARAMS": [key]}).json()
    assert answer["SERVER"] == "p" and answer["RESULT"]["AFFECTED_ROWS"] == 1, answer
    return answer


def test_write_answer_carries_gtid_and_no_reset(replicated: Any, gw: Gateway) -> None:
    """Each write's answer names the position after it (the primary's own), in order, and a
    plain write does not cost a session reset (the tracker entry is told from a real change)."""
    primary, _ = replicated
    first = write(gw, "gtid-1")["GTID"]
    second = write(gw, "gtid-2")["GTID"]
    d1, s1, n1 = (int(x) for x in first.split("-"))
    d2, s2, n2 = (int(x) for x in second.split("-"))
    assert (d1, s1) == (d2, s2) == (0, 1) and n2 > n1
    assert primary.sql("SELECT @@global.gtid_binlog_pos").strip() == second
    reads = gw.db({"SQL": "SELECT 1"}).json()
    assert "GTID" not in reads, reads
    resets = primary.sql("SHOW GLOBAL STATUS LIKE 'Com_change_db'").split()[-1]
    for i in range(5):
        write(gw, f"no-reset-{i}")
    after = primary.sql("SHOW GLOBAL STATUS LIKE 'Com_change_db'").split()[-1]
    assert after == resets, "a plain write reset its connection (a reset sets the database again)"


def test_read_with_after_sees_the_write_on_a_stalled_replica(replicated: Any, gw: Gateway) -> None:
    """The replica's SQL thread stopped: a read without AFTER may come from the replica and
    miss the write (as before); every read with AFTER sees it (the replica cannot reach the
    position within the wait, so the primary answers)."""
    _, replica = replicated
    replica.sql("STOP SLAVE SQL_THREAD")
    try:
        gtid = write(gw, "stalled")["GTID"]
        seen: Counter[tuple[str, int]] = Counter()
        for _ in range(12):
            answer = gw.db({"SQL": "SELECT COUNT(*) FROM t WHERE k = 'stalled'"}).json()
            seen[(answer["SERVER"], answer["RESULT"]["ROWS"][0][0])] += 1
        assert seen[("r", 0)] > 0, f"without AFTER the replica answers as before: {seen}"
        for _ in range(6):
            answer = gw.db(
                {"SQL": "SELECT COUNT(*) FROM t WHERE k = 'stalled'", "AFTER": gtid}
            ).json()
            assert answer["RESULT"]["ROWS"] == [[1]], answer
    finally:
        replica.sql("START SLAVE SQL_THREAD")


def test_read_with_after_waits_on_a_replica_that_catches_up(replicated: Any, gw: Gateway) -> None:
    """A replica that has the position answers reads with AFTER itself."""
    gtid = write(gw, "caught-up")["GTID"]
    servers: Counter[str] = Counter()
    for _ in range(20):
        answer = gw.db({"SQL": "SELECT COUNT(*) FROM t WHERE k = 'caught-up'", "AFTER": gtid}).json()
        assert answer["RESULT"]["ROWS"] == [[1]], answer
        servers[answer["SERVER"]] += 1
    assert servers["r"] > 0, servers


@pytest.mark.parametrize(
    "after", ["", "0-1", "x-1-2", "0-1-2,", 12, "0-1-2;DROP TABLE t", "0-1-99999999999999999999999"]
)
def test_bad_after_is_a_400(gw: Gateway, after: Any) -> None:
    reply = gw.db({"SQL": "SELECT 1", "AFTER": after})
    assert reply.status == 400, reply
    assert "AFTER" in reply.json()["ERROR"]


def test_client_read_your_writes(replicated: Any, gw: Gateway) -> None:
    """The Python client with read_your_writes=True sends its last write's position: its reads
    see its writes while the replica is stalled."""
    from dbslayer_client import Client

    _, replica = replicated
    client = Client(gw.url, read_your_writes=True)
    plain = Client(gw.url)
    replica.sql("STOP SLAVE SQL_THREAD")
    try:
        client.query("INSERT INTO t (k, v) VALUES ('client', 1)")
        for _ in range(6):
            rows = client.query("SELECT COUNT(*) FROM t WHERE k = 'client'").rows
            assert rows == [(1,)], rows
        missed = [plain.query("SELECT COUNT(*) FROM t WHERE k = 'client'").rows for _ in range(12)]
        assert [(0,)] in missed, "without read_your_writes a stalled replica answers"
    finally:
        replica.sql("START SLAVE SQL_THREAD")
