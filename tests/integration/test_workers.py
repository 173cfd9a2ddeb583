"""--workers N: N processes on one port (SO_REUSEPORT); statistics of the whole server; one
/shutdown or SIGTERM stops them all."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from tests.servers import Gateway, MariaDB, Reply


def worker_pids(gw: Gateway) -> set[int]:
    assert gw.proc is not None
    out = subprocess.run(["pgrep", "-P", str(gw.proc.pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def test_workers_share_the_port_and_the_stats(mariadb: MariaDB, tmp_path: Path) -> None:
    """Two workers serve one port; /stats counts every request, whichever worker answered."""
    gw = Gateway(tmp_path, "--backend", mariadb.dsn(), workers=2).start()
    try:
        deadline = time.monotonic() + 10
        while len(worker_pids(gw)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        replies: list[Reply] = []

        def client() -> None:
            for _ in range(25):
                replies.append(gw.db({"SQL": "SELECT CONNECTION_ID()"}))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(replies) == 100 and all(r.status == 200 for r in replies)
        time.sleep(1.1)
        for _ in range(4):  # whichever worker answers, the figures are the server's
            snapshot = gw.get("/stats").json()
            assert snapshot["total_requests"] == 100
            assert snapshot["backends"]["db1"]["queries"] == 100
            # Each answer was read in one place; most in the reactor (a connection's first
            # request goes through a pool thread, which opens it).
            answers = snapshot["backends"]["db1"]["answers"]
            assert answers["reactor"] + answers["thread"] == 100 and answers["reactor"] >= 80
            assert snapshot["latency_ms"]["db"]["count"] == 100
            assert sum(snapshot["hits"]) <= 100
            assert len(gw.get("/stats/log").json()) == 100
        metrics = gw.get("/metrics").body.decode()
        assert "dbslayer_db_requests_total 100.0" in metrics
        assert gw.output().count(f"listening on http://127.0.0.1:{gw.port}/") == 2
    finally:
        gw.stop()
    assert gw.proc is not None and gw.proc.returncode == 0


def test_shutdown_stops_every_worker(mariadb: MariaDB, tmp_path: Path) -> None:
    """/shutdown answered by one worker stops the master and all workers, status 0."""
    gw = Gateway(tmp_path, "--backend", mariadb.dsn(), workers=2).start()
    time.sleep(1.0)
    pids = worker_pids(gw)
    assert len(pids) == 2
    assert gw.get("/shutdown").json()["shutting_down"] is True
    assert gw.proc is not None and gw.proc.wait(30) == 0
    for pid in pids:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_a_dead_worker_is_replaced(mariadb: MariaDB, tmp_path: Path) -> None:
    """A worker killed with -9 is restarted by the master; the server keeps answering."""
    gw = Gateway(tmp_path, "--backend", mariadb.dsn(), workers=2).start()
    try:
        time.sleep(1.0)
        victim = sorted(worker_pids(gw))[0]
        subprocess.run(["kill", "-9", str(victim)], check=True)
        deadline = time.monotonic() + 10
        while True:
            pids = worker_pids(gw)
            if len(pids) == 2 and victim not in pids:
                break
            assert time.monotonic() < deadline, pids
            time.sleep(0.1)
        for _ in range(10):
            assert gw.db({"SQL": "SELECT 1"}).status == 200
    finally:
        gw.stop()
