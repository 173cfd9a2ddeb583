"""Two ``dbslayer serve`` hosts sharing one Redis, as a fleet behind a load balancer runs them:
users, cached answers and the single flight of cache misses are the fleet's, not one host's.

Real servers: one MariaDB, one redis-server, two gateways (each its own process, port and
in-process caches). Statement runs are counted by the server itself: its general log
(``log_output = TABLE``) holds every statement a connection sent, so "ran once" is read from
the database, not from the gateways' own figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, Redis, Reply, add_user, bearer, users

#: Seconds the view below sleeps per row it returns: long enough that every request of the
#: concurrent burst arrives while the one run is going.
SLOW_SECONDS = 0.8


@pytest.fixture
def fleet(mariadb: MariaDB, redis: Redis, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway, str]]:
    """Gateways A and B on one MariaDB and one Redis, authentication on (users in Redis);
    and the token of an admin user (for /stats)."""
    mariadb.sql(
        f"CREATE OR REPLACE VIEW test.fleet_slow AS SELECT SLEEP({SLOW_SECONDS}) AS slept, 7 AS n"
    )
    admin = add_user(redis, "fleet-admin", "admin")
    common = (
        "--backend",
        mariadb.dsn(),
        "--redis",
        redis.url,
        "--auth",
        "--read-on-shared-account",
        "--auth-cache-ttl",
        "0.5",
    )
    started: list[Gateway] = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            started.append(Gateway(directory, *common, "--instance", f"gw-{name}").start())
        yield started[0], started[1], admin
    finally:
        for gw in started:
            gw.stop()


@pytest.fixture
def general_log(mariadb: MariaDB) -> Iterator[Any]:
    """The server's general log on (into mysql.general_log) for one test; a function that
    counts the statements sent whose text contains a marker (the counting query itself, and
    this fixture's own, are left out)."""
    mariadb.sql("SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1")

    def runs(marker: str) -> int:
        out = mariadb.sql(
            "SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Query' "
            f"AND argument LIKE '%{marker}%' AND argument NOT LIKE '%general_log%'"
        )
        return int(out.strip())

    try:
        yield runs
    finally:
        mariadb.sql("SET GLOBAL general_log = 0; TRUNCATE mysql.general_log")


def cache_figures(gw: Gateway, admin: str) -> dict[str, int]:
    reply = gw.get("/stats", headers=bearer(admin))
    assert reply.status == 200, reply
    figures: dict[str, int] = reply.json()["cache"]
    return figures


def test_a_user_added_once_works_on_every_host(
    fleet: tuple[Gateway, Gateway, str], redis: Redis
) -> None:
    """A user added once (dbslayer users add, into the shared Redis) authenticates on both
    gateways; disabled once, both refuse it (within their look-up cache time)."""
    a, b, _ = fleet
    token = add_user(redis, "fleet-writer", "write")
    ask = {"SQL": "SELECT 1 AS one"}
    for gw in (a, b):
        reply = gw.db(ask, headers=bearer(token))
        assert reply.status == 200 and reply.json()["RESULT"]["ROWS"] == [[1]], (gw.url, reply)
        assert gw.db(ask, headers=bearer(token + "x")).status == 401
        assert gw.db(ask).status == 401
    disabled = users(redis, "disable", "fleet-writer")
    assert disabled.returncode == 0, disabled.stderr
    deadline = time.monotonic() + 10
    refused: dict[str, int] = {}
    while time.monotonic() < deadline:
        refused = {gw.url: gw.db(ask, headers=bearer(token)).status for gw in (a, b)}
        if all(status in (401, 403) for status in refused.values()):
            break
        time.sleep(0.1)
    assert all(status in (401, 403) for status in refused.values()), refused


def test_an_answer_cached_through_one_host_is_a_hit_through_the_other(
    fleet: tuple[Gateway, Gateway, str], general_log: Any
) -> None:
    """An answer cached through A is served by B from Redis: B reports a hit, and the
    statement ran on the database once."""
    a, b, admin = fleet
    marker = f"fleet_hit_{time.time_ns()}"
    ask = {"SQL": f"SELECT n, '{marker}' AS m FROM fleet_slow", "CACHE": 60}
    before_a, before_b = cache_figures(a, admin), cache_figures(b, admin)
    first = a.db(ask, headers=bearer(admin))
    assert first.status == 200 and first.headers["X-Cache"] == "miss", first
    second = b.db(ask, headers=bearer(admin))
    assert second.status == 200 and second.headers["X-Cache"] == "hit", second
    assert second.json()["RESULT"] == first.json()["RESULT"]
    assert first.json()["RESULT"]["ROWS"] == [[7, marker]]
    after_a, after_b = cache_figures(a, admin), cache_figures(b, admin)
    assert after_a["miss"] - before_a["miss"] == 1
    assert after_b["hit"] - before_b["hit"] == 1 and after_b["miss"] == before_b["miss"]
    assert general_log(marker) == 1


def test_concurrent_misses_over_both_hosts_run_the_statement_once(
    fleet: tuple[Gateway, Gateway, str], general_log: Any
) -> None:
    """Twelve concurrent requests for one cold key, split over both gateways, run the
    statement on the database once (the key's lock in Redis); every one gets its answer, and
    both gateways took part in the flight (each counted misses, none ran it again)."""
    a, b, admin = fleet
    marker = f"fleet_flight_{time.time_ns()}"
    ask = {"SQL": f"SELECT n, '{marker}' AS m FROM fleet_slow", "CACHE": 60}
    before = {gw.url: cache_figures(gw, admin) for gw in (a, b)}
    replies: list[tuple[str, Reply]] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def one(gw: Gateway) -> None:
        start.wait(10)
        reply = gw.db(ask, headers=bearer(admin), timeout=30)
        with lock:
            replies.append((gw.url, reply))

    threads = [threading.Thread(target=one, args=((a, b)[i % 2],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(replies) == 12
    assert all(r.status == 200 for _, r in replies), replies
    assert all(r.json()["RESULT"]["ROWS"] == [[7, marker]] for _, r in replies)
    assert general_log(marker) == 1
    for gw in (a, b):
        after = cache_figures(gw, admin)
        assert after["miss"] > before[gw.url]["miss"], (gw.url, before[gw.url], after)
