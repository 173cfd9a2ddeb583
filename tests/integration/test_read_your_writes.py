"""Read your writes against real MariaDB replication: a write's answer carries the GTID after
it, a read sent back with it as AFTER sees the write (the replica waited for it, or the
primary answered), a read without it behaves as before, the client does it for the caller, and
tracking the position costs no session reset per write."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dbslayer_client import Client

from tests.servers import Gateway, MariaDB, replicate

#: How long a read with AFTER waits on the replica before it goes to the primary.
WAIT_MS = 800


def _server(tmp_path_factory: pytest.TempPathFactory, name: str, server_id: int) -> MariaDB:
    reason = MariaDB.available()
    if reason:
        pytest.skip(reason)
    extra = [f"--server-id={server_id}", "--log-bin=bin"]
    return MariaDB(tmp_path_factory.mktemp(name), extra=extra).start()


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MariaDB, MariaDB]]:
    """A primary and a replica with real MariaDB replication (GTID), table app.t on both."""
    primary = _server(tmp_path_factory, "ryw-primary", 1)
    replica = _server(tmp_path_factory, "ryw-replica", 2)
    try:
        primary.sql(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, "
            "tag VARCHAR(64) NOT NULL)"
        )
        replicate(primary, replica)
        _until(lambda: "t" in replica.sql("SHOW TABLES FROM app"), "app.t on the replica")
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture(scope="module")
def gw(
    replicated: tuple[MariaDB, MariaDB], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """The gateway in primary-replica mode; the replica weighs 100 times more, so a read
    without AFTER goes to it whenever it is up."""
    primary, replica = replicated
    gateway = Gateway(
        tmp_path_factory.mktemp("ryw-gateway"),
        "--backend",
        primary.dsn(database="app", name="p") + "&role=primary",
        "--backend",
        replica.dsn(database="app", name="r") + "&role=replica&weight=100",
        "--mode",
        "primary-replica",
        "--gtid-wait-ms",
        str(WAIT_MS),
        "--health-interval",
        "1",
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def sql_thread_stopped(replicated: tuple[MariaDB, MariaDB]) -> Iterator[MariaDB]:
    """The replica's SQL thread stopped (it receives the primary's events, applies none)."""
    primary, replica = replicated
    replica.sql("STOP SLAVE SQL_THREAD")
    yield replica
    replica.sql("START SLAVE SQL_THREAD")
    position = primary.sql("SELECT @@gtid_binlog_pos").strip()
    _until(
        lambda: replica.sql(f"SELECT MASTER_GTID_WAIT('{position}', 1)").strip() == "0",
        "the replica catching up",
    )


def _until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _insert(gw: Gateway, tag: str, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = gw.db(
        {"SQL": "INSERT INTO t (tag) VALUES (%s)", "PARAMS": [tag], **extra}
    ).json()
    assert answer["RESULT"]["AFFECTED_ROWS"] == 1 and answer["SERVER"] == "p", answer
    return answer


def _count(gw: Gateway, tag: str, **extra: Any) -> tuple[int, str, dict[str, str]]:
    reply = gw.db({"SQL": "SELECT COUNT(*) FROM t WHERE tag = %s", "PARAMS": [tag], **extra})
    assert reply.status == 200, reply
    answer = reply.json()
    return answer["RESULT"]["ROWS"][0][0], answer["SERVER"], reply.headers


def test_a_write_answers_the_gtid_after_it(gw: Gateway, replicated: Any) -> None:
    """The answer to a write carries GTID, the primary's position right after it; one to a
    read carries none."""
    primary, _ = replicated
    answer = _insert(gw, "gtid-" + uuid.uuid4().hex)
    assert answer["GTID"] == primary.sql("SELECT @@gtid_binlog_pos").strip()
    several = gw.db({"SQL": "INSERT INTO t (tag) VALUES ('a'); INSERT INTO t (tag) VALUES ('b')"})
    gtid = several.json()["GTID"]
    domain, server, seq = (int(n) for n in gtid.split("-"))
    assert (domain, server) == (0, 1) and seq == int(answer["GTID"].split("-")[2]) + 2
    assert "GTID" not in gw.db({"SQL": "SELECT 1"}).json()


def test_a_read_with_after_sees_the_write(gw: Gateway, sql_thread_stopped: MariaDB) -> None:
    """With the replica's SQL thread stopped, a read without AFTER goes to the replica and does
    not see the write (as before); with AFTER it does: the replica waited the bounded time,
    then the primary answered."""
    tag = "after-" + uuid.uuid4().hex
    gtid = _insert(gw, tag)["GTID"]
    assert _count(gw, tag)[:2] == (0, "r")
    started = time.monotonic()
    count, server, headers = _count(gw, tag, AFTER=gtid)
    assert (count, server) == (1, "p")
    assert time.monotonic() - started >= WAIT_MS / 1000 * 0.9  # (it waited on the replica)


def test_a_replica_that_catches_up_in_time_answers(
    gw: Gateway, sql_thread_stopped: MariaDB
) -> None:
    """A replica that applies the position while the read waits for it answers the read."""
    tag = "catch-up-" + uuid.uuid4().hex
    gtid = _insert(gw, tag)["GTID"]
    later = threading.Timer(0.2, sql_thread_stopped.sql, ["START SLAVE SQL_THREAD"])
    later.start()
    try:
        assert _count(gw, tag, AFTER=gtid)[:2] == (1, "r")
    finally:
        later.join()


def test_without_a_lag_the_replica_answers_at_once(gw: Gateway, replicated: Any) -> None:
    """A replica already at the position runs the read without waiting."""
    _, replica = replicated
    tag = "caught-up-" + uuid.uuid4().hex
    gtid = _insert(gw, tag)["GTID"]
    _until(lambda: replica.sql(f"SELECT MASTER_GTID_WAIT('{gtid}', 1)").strip() == "0", "it")
    started = time.monotonic()
    assert _count(gw, tag, AFTER=gtid)[:2] == (1, "r")
    assert time.monotonic() - started < WAIT_MS / 1000


def test_a_read_with_after_never_comes_from_the_cache(
    gw: Gateway, sql_thread_stopped: MariaDB
) -> None:
    """A cached answer older than the write is not served to a read that carries AFTER."""
    tag = "cache-" + uuid.uuid4().hex
    first = _count(gw, tag, CACHE=60)
    assert first[0] == 0 and first[2].get("X-Cache") == "miss", first
    gtid = _insert(gw, tag)["GTID"]
    assert _count(gw, tag, CACHE=60)[0] == 0  # (the cached answer, as before)
    count, _, headers = _count(gw, tag, CACHE=60, AFTER=gtid)
    assert count == 1 and "X-Cache" not in headers


def test_the_client_reads_its_own_writes(gw: Gateway, sql_thread_stopped: MariaDB) -> None:
    """Client(read_your_writes=True) sends the position of its writes with what follows; a
    client without it reads from the lagging replica as before."""
    tag = "client-" + uuid.uuid4().hex
    with Client(gw.url, read_your_writes=True) as mine, Client(gw.url) as plain:
        assert mine.position is not None and mine.position.value is None
        mine.query("INSERT INTO t (tag) VALUES (%s)", [tag])
        assert mine.position.value is not None
        seen = mine.query("SELECT COUNT(*) FROM t WHERE tag = %s", [tag])
        assert seen.rows == [(1,)] and seen.server == "p"
        unseen = plain.query("SELECT COUNT(*) FROM t WHERE tag = %s", [tag])
        assert unseen.rows == [(0,)] and unseen.server == "r"


def test_tracking_the_position_costs_no_reset_per_write(gw: Gateway, replicated: Any) -> None:
    """Writes through the reactor lane and through a pool thread do not reset their session
    (a reset sends USE, counted in Com_change_db); a real session change still does."""
    primary, _ = replicated

    def resets() -> int:
        return int(primary.sql("SHOW GLOBAL STATUS LIKE 'Com_change_db'").split()[1])

    _insert(gw, "warm-up")
    before = resets()
    gtids = []
    for i in range(10):
        gtids.append(_insert(gw, f"lane-{i}")["GTID"])
        sql = "INSERT INTO t (tag) VALUES ('x'); INSERT INTO t (tag) VALUES ('y')"
        gtids.append(gw.db({"SQL": sql}).json()["GTID"])  # (a pool thread)
    assert resets() == before
    assert len(set(gtids)) == len(gtids)
    gw.db({"SQL": "SET @x = 1"})
    assert resets() == before + 1


def test_bad_after_is_refused(gw: Gateway) -> None:
    """AFTER that is not a GTID list is a 400 naming the key; AFTER on a write is accepted
    (writes go to the primary) and on a request without SQL refused."""
    for bad in ("", "0-1", "0-1-x", "0-1-1,", " 0-1-1", "1-2-3;DROP TABLE t", 7, ["0-1-1"]):
        reply = gw.db({"SQL": "SELECT 1", "AFTER": bad})
        assert reply.status == 400 and "AFTER" in reply.json()["ERROR"], (bad, reply)
    assert gw.db({"STAT": True, "AFTER": "0-1-1"}).status == 400
    answer = _insert(gw, "write-after", AFTER="0-1-1")
    assert "GTID" in answer
