"""``--mode galera`` against a real single-node Galera cluster (galera-4, bootstrapped with
``gcomm://`` on loopback; it starts in well under a second): the health check reads the wsrep
state, /stats /metrics /ready show it and name the writer, reads and writes run, a desynced
node (``SET GLOBAL wsrep_desync = ON``: wsrep_local_state 2, Donor/Desynced) is taken out at the
next check and comes back, and a plain MariaDB in galera mode is "not a Galera node" and never
used. The three-node cluster and its kill/partition chaos are tests/galera.py's (another file)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, Reply, free_port

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
INTERVAL = 0.5  # health interval of these gateways (default 2 s)
HEALTH = ["--health-interval", str(INTERVAL), "--health-max-backoff", str(1.5 * INTERVAL)]
#: How long a change may take to show: a check interval (with jitter), the backoff of a down
#: node, the confirming checks, and slack for a loaded machine.
SETTLE = 8 * INTERVAL
#: How long a new gateway may take to answer with its first check applied.
STARTED = 20.0


def one_node_cluster(tmp_path_factory: pytest.TempPathFactory, name: str) -> MariaDB:
    """A one-node Galera cluster on a loopback port, with the ``test`` database."""
    reason = MariaDB.available()
    if reason:
        pytest.skip(reason)
    if not PROVIDER.exists():
        pytest.skip(f"{PROVIDER} not found (apt-get install galera-4)")
    server = MariaDB(
        tmp_path_factory.mktemp(name),
        extra=[
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            "--wsrep-cluster-address=gcomm://",
            "--wsrep-node-address=127.0.0.1",
            f"--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{free_port()};"
            "gcache.size=16M",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
        ],
    ).start()
    server.sql("CREATE DATABASE test; CREATE TABLE test.writes (id VARCHAR(64) PRIMARY KEY, n INT)")
    return server


@pytest.fixture(scope="module")
def galera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    server = one_node_cluster(tmp_path_factory, "galera1")
    yield server
    server.stop()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(*args: str, workers: int = 1) -> Gateway:
        gw = Gateway(tmp_path, "--mode", "galera", *HEALTH, *args, workers=workers).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def wait_for(probe: Callable[[], Any], what: str, timeout: float = SETTLE) -> Any:
    """Poll ``probe`` until it returns something true (returned), within ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})")


def backend(gw: Gateway, name: str) -> dict[str, Any]:
    info: dict[str, Any] = gw.get("/stats").json()["backends"][name]
    return info


def write(gw: Gateway) -> tuple[str, Reply]:
    ident = uuid.uuid4().hex
    return ident, gw.db({"SQL": "INSERT INTO writes VALUES (%s, 1)", "PARAMS": [ident]})


def metric(body: str, name: str, backend: str) -> float | None:
    found = re.search(rf'^{name}{{backend="{backend}"}} (\S+)$', body, re.M)
    return float(found.group(1)) if found else None


def test_serves_and_reports_the_wsrep_state(galera: MariaDB, gateways: Any) -> None:
    """A synced node is the writer: writes and reads run on it; /stats (merged over two
    workers), /metrics and /ready show its wsrep state and name it the writer."""
    gw = gateways("--backend", galera.dsn(name="g1"), workers=2)
    wait_for(lambda: backend(gw, "g1")["state"] == "up", "g1 up", STARTED)
    ident, reply = write(gw)
    assert reply.status == 200 and reply.json()["SERVER"] == "g1", reply
    read = gw.db({"SQL": "SELECT n FROM writes WHERE id = %s", "PARAMS": [ident]})
    assert read.status == 200 and read.json()["RESULT"]["ROWS"] == [[1]], read
    assert galera.sql(f"SELECT n FROM test.writes WHERE id = '{ident}'").split() == ["1"]

    stats = gw.get("/stats").json()
    assert stats["writer"] == "g1"
    g1 = stats["backends"]["g1"]
    assert g1["writer"] is True and g1["state"] == "up"
    wsrep = g1["wsrep"]
    assert wsrep["ready"] is True and wsrep["cluster_status"] == "Primary"
    assert (wsrep["local_state"], wsrep["local_state_comment"]) == (4, "Synced")
    assert (wsrep["cluster_size"], wsrep["local_index"]) == (1, 0)
    assert re.fullmatch(r"[0-9a-f-]{36}", wsrep["cluster_state_uuid"])

    body = gw.get("/metrics").body.decode()
    assert metric(body, "dbslayer_backend_wsrep_local_state", "g1") == 4
    assert metric(body, "dbslayer_backend_wsrep_cluster_size", "g1") == 1
    assert metric(body, "dbslayer_backend_wsrep_primary", "g1") == 1
    assert metric(body, "dbslayer_backend_writer", "g1") == 1

    ready = gw.get("/ready")
    assert ready.status == 200, ready
    galera_ready = ready.json()["galera"]
    assert galera_ready["writer"] == "g1"
    assert galera_ready["nodes"]["g1"]["cluster_status"] == "Primary"


def test_desynced_node_is_out_at_the_next_check_and_comes_back(
    galera: MariaDB, gateways: Any
) -> None:
    """wsrep_desync = ON (Donor/Desynced): out of writes and reads at the next check (503,
    nothing sent), /ready 503 naming the state; back once synced again."""
    gw = gateways("--backend", galera.dsn(name="g1"))
    wait_for(lambda: backend(gw, "g1")["state"] == "up", "g1 up", STARTED)
    galera.sql("SET GLOBAL wsrep_desync = ON")
    try:
        desynced = wait_for(
            lambda: (b := backend(gw, "g1"))["state"] == "down" and b, "g1 out when desynced"
        )
        assert "Donor/Desynced" in desynced["last_error"], desynced
        assert desynced["wsrep"]["local_state"] == 2 and desynced["writer"] is False
        ident, refused = write(gw)
        assert refused.status == 503 and "no Galera node can take writes" in refused.json()["ERROR"]
        assert refused.headers.get("Retry-After") == "1"
        read = gw.db({"SQL": "SELECT 1"})
        assert read.status == 503, read
        ready = gw.get("/ready")
        assert ready.status == 503 and ready.json()["galera"]["writer"] is None
        assert ready.json()["galera"]["nodes"]["g1"]["local_state_comment"] == "Donor/Desynced"
        body = gw.get("/metrics").body.decode()
        assert metric(body, "dbslayer_backend_wsrep_local_state", "g1") == 2
        assert metric(body, "dbslayer_backend_writer", "g1") == 0
    finally:
        galera.sql("SET GLOBAL wsrep_desync = OFF")
    wait_for(lambda: backend(gw, "g1")["state"] == "up", "g1 back when synced")
    assert gw.get("/stats").json()["writer"] == "g1"
    ok_ident, reply = write(gw)
    assert reply.status == 200, reply
    assert galera.sql(f"SELECT id FROM test.writes WHERE id = '{ok_ident}'").split() == [ok_ident]
    assert galera.sql(f"SELECT id FROM test.writes WHERE id = '{ident}'").strip() == ""  # refused


def test_donor_reads_keeps_a_desynced_node_for_reads_only(galera: MariaDB, gateways: Any) -> None:
    """With --galera-donor-reads true a desynced node stays up and answers reads; writes are
    refused (a donor is never the writer)."""
    gw = gateways("--backend", galera.dsn(name="g1"), "--galera-donor-reads", "true")
    wait_for(lambda: backend(gw, "g1")["state"] == "up", "g1 up", STARTED)
    galera.sql("SET GLOBAL wsrep_desync = ON")
    try:
        wait_for(lambda: gw.get("/stats").json()["writer"] is None, "no writer when desynced")
        info = backend(gw, "g1")
        assert info["state"] == "up" and info["wsrep"]["local_state"] == 2
        read = gw.db({"SQL": "SELECT COUNT(*) FROM writes"})
        assert read.status == 200 and read.json()["SERVER"] == "g1", read
        _, refused = write(gw)
        assert refused.status == 503, refused
        assert "Donor/Desynced, not synced" in refused.json()["ERROR"]
    finally:
        galera.sql("SET GLOBAL wsrep_desync = OFF")
    wait_for(lambda: gw.get("/stats").json()["writer"] == "g1", "g1 the writer again")


def test_plain_mariadb_is_not_a_galera_node_and_never_used(
    galera: MariaDB, mariadb: MariaDB, gateways: Any
) -> None:
    """A server without wsrep in galera mode is down from its first check ("not a Galera
    node") and takes nothing, though its name comes first."""
    mariadb.sql("CREATE TABLE IF NOT EXISTS test.writes (id VARCHAR(64) PRIMARY KEY, n INT)")
    gw = gateways("--backend", mariadb.dsn(name="a-plain"), "--backend", galera.dsn(name="g1"))
    plain = wait_for(
        lambda: (b := backend(gw, "a-plain"))["state"] == "down" and b, "the plain server out"
    )
    assert "not a Galera node" in plain["last_error"], plain
    assert plain["wsrep"] is None or plain["wsrep"]["ready"] is False
    wait_for(lambda: backend(gw, "g1")["state"] == "up", "g1 up", STARTED)
    idents = []
    for _ in range(10):
        ident, reply = write(gw)
        assert reply.status == 200 and reply.json()["SERVER"] == "g1", reply
        idents.append(ident)
        read = gw.db({"SQL": "SELECT 1"})
        assert read.status == 200 and read.json()["SERVER"] == "g1", read
    listed = ", ".join(f"'{i}'" for i in idents)
    assert mariadb.sql(f"SELECT COUNT(*) FROM test.writes WHERE id IN ({listed})").split() == ["0"]
    assert galera.sql(f"SELECT COUNT(*) FROM test.writes WHERE id IN ({listed})").split() == ["10"]
    stats = gw.get("/stats").json()
    assert stats["writer"] == "g1" and stats["backends"]["a-plain"]["queries"] == 0
    assert gw.get("/ready").json()["backends"] == {"a-plain": "down", "g1": "up"}
