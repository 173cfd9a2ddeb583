"""Two gateways behind a real HAProxy, run with the README's configuration (conf/haproxy.cfg,
unchanged: its addresses come from the environment), under a steady load of reads and
unique-key writes through HAProxy on keep-alive connections.

- SIGTERM to gateway A (``--workers 2``, ``--drain-delay`` above HAProxy's inter * fall): A's
  /ready says 503 at once while it goes on serving; HAProxy marks it DOWN; A exits 0. Not
  one request fails.
- Then kill -9 one worker of gateway B: only requests in flight at that moment may fail
  (each failed one started before the kill and had not finished), none started after it.
- Afterwards every acknowledged write is in the table exactly once, and no write is there
  twice (the table has no unique index: only the gateway and HAProxy's retry rules keep
  a write from being applied twice).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.servers import ROOT, Gateway, MariaDB, Redis, free_port

CONFIG = ROOT / "conf" / "haproxy.cfg"
#: Gateway A's --drain-delay: above the worst time HAProxy takes to mark it DOWN with the
#: configuration's checks (inter 2s, fastinter 1s, fall 3: 4 s).
DRAIN_DELAY = 7
CLIENTS = 4


def haproxy_binary() -> str | None:
    for path in ("/usr/sbin/haproxy", "/usr/bin/haproxy"):
        if os.access(path, os.X_OK):
            return path
    return None


class HAProxy:
    """``haproxy -f conf/haproxy.cfg -db`` with the addresses in its environment."""

    def __init__(self, directory: Path, servers: tuple[str, str]) -> None:
        self.port = free_port()
        self.socket = str(directory / "haproxy.sock")
        self.log = directory / "haproxy.log"
        self.env = dict(
            os.environ,
            DBSLAYER_LB_BIND=f"127.0.0.1:{self.port}",
            DBSLAYER_GW1=servers[0],
            DBSLAYER_GW2=servers[1],
            DBSLAYER_LB_SOCKET=self.socket,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        binary = haproxy_binary()
        assert binary is not None
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, "-f", str(CONFIG), "-db"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def command(self, line: str) -> str:
        """One command on the stats socket (``show stat``...), its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """The status of each server of the gateways backend (UP, DOWN, "UP 1/3"...)."""
        lines = self.command("show stat").splitlines()
        fields = lines[0].lstrip("# ").split(",")
        found = {}
        for line in lines[1:]:
            row = dict(zip(fields, line.split(",")))
            if row.get("pxname") == "gateways" and row.get("svname") not in ("BACKEND", None):
                found[row["svname"]] = row["status"]
        return found

    def wait_for(self, server: str, status: str, timeout: float) -> float:
        """Wait until ``server`` has ``status``; the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.states()
            if states.get(server) == status:
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"{server} not {status} within {timeout} s: {states}")


@attrs.define
class Outcome:
    """One request the load sent: when it started and ended (monotonic), how it went."""

    kind: str
    key: str
    started: float
    ended: float
    ok: bool
    detail: str = ""


class Load:
    """Client threads, each on its own keep-alive connection to HAProxy, alternating a read
    (of 50 ms) and a write of a unique key, until stopped."""

    def __init__(self, port: int, table: str, clients: int = CLIENTS) -> None:
        self.port = port
        self.table = table
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)
        ]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)

    def _run(self, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        seq = 0
        while not self.stopping.is_set():
            seq += 1
            key = f"c{n}-{seq}"
            if seq % 2:
                kind, sql = "write", f"INSERT INTO {self.table} (k) VALUES ('{key}')"
            else:  # (a read takes a while: a kill finds some in flight)
                kind, sql = "read", f"SELECT (SELECT COUNT(*) FROM {self.table}) n, SLEEP(0.05) s"
            body = json.dumps({"SQL": sql}).encode()
            started = time.monotonic()
            ok, detail = False, ""
            try:
                conn.request("POST", "/db", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                answer = json.loads(data)
                ok = resp.status == 200 and "RESULT" in answer
                detail = f"{resp.status} {data[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError) as e:
                detail = repr(e)
                conn.close()  # (the next request opens a new connection)
            with self.lock:
                self.outcomes.append(Outcome(kind, key, started, time.monotonic(), ok, detail))
            time.sleep(0.01)
        conn.close()

    def since(self, t: float) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if o.started >= t]

    def failures(self) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if not o.ok]


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a gateway master's workers)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def served(gw: Gateway) -> int:
    """Requests the gateway served so far (its /stats, every worker)."""
    reply = gw.get("/stats", timeout=10)
    assert reply.status == 200, reply
    return int(reply.json()["total_requests"])


@pytest.fixture
def fleet(
    mariadb: MariaDB, redis: Redis, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway, HAProxy, str]]:
    """Gateways A and B (two workers each), HAProxy before them with both UP, and an empty
    table without a unique index."""
    if haproxy_binary() is None:
        pytest.skip("haproxy not found (apt-get install haproxy)")
    table = f"fleet_{time.time_ns()}"
    mariadb.sql(f"CREATE TABLE test.{table} (k VARCHAR(64) NOT NULL)")
    common = ("--backend", mariadb.dsn(), "--redis", redis.url)
    started: list[Any] = []
    try:
        dirs = [tmp_path / name for name in ("a", "b")]
        for directory in dirs:
            directory.mkdir()
        a = Gateway(dirs[0], *common, "--drain-delay", str(DRAIN_DELAY), "--instance", "gw-a",
                    workers=2)  # fmt: skip
        b = Gateway(dirs[1], *common, "--drain-delay", "1", "--instance", "gw-b", workers=2)
        for gw in (a, b):
            started.append(gw.start())
        lb = HAProxy(tmp_path, (f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}")).start()
        started.insert(0, lb)
        lb.wait_for("gw1", "UP", 20)
        lb.wait_for("gw2", "UP", 20)
        yield a, b, lb, table
    finally:
        for server in started:
            server.stop()
        mariadb.sql(f"DROP TABLE IF EXISTS test.{table}")


def test_sigterm_then_kill_a_worker_under_load(
    fleet: tuple[Gateway, Gateway, HAProxy, str], mariadb: MariaDB
) -> None:
    """SIGTERM to one gateway fails no request (it leaves HAProxy first, then exits 0);
    kill -9 of a worker of the other fails only requests in flight on it at that moment;
    every acknowledged write is there exactly once, and no write twice."""
    a, b, lb, table = fleet
    assert a.proc is not None and b.proc is not None
    load = Load(lb.port, table).start()
    try:
        time.sleep(1.5)
        assert served(a) > 0 and served(b) > 0, "HAProxy did not spread the load"

        # --- SIGTERM to A: it leaves (HAProxy marks it DOWN), then drains and exits 0.
        before_term = served(a)
        a.proc.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        deadline = terminated + 5
        while True:  # /ready says 503 at once (the master forwards SIGTERM to each worker)
            ready = a.get("/ready", timeout=5)
            if ready.status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ready.status == 503 and ready.json()["draining"] is True, ready
        assert a.get("/health", timeout=5).status == 200  # (alive, only not ready)
        down = lb.wait_for("gw1", "DOWN", DRAIN_DELAY)
        # A was still serving HAProxy's traffic while HAProxy took it out.
        assert served(a) > before_term + 2
        assert time.monotonic() < terminated + DRAIN_DELAY, "A stopped before it was DOWN"
        code = a.proc.wait(DRAIN_DELAY + 20)
        assert code == 0, a.output()[-3000:]
        assert load.failures() == [], load.failures()[:5]
        assert load.since(down), "no load after A was taken out"

        # --- kill -9 one of B's workers (both serve now).
        workers = children(b.proc.pid)
        assert len(workers) == 2, workers
        killed_at = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(4)  # (its master starts a replacement; the other worker serves meanwhile)
        after_kill = load.since(killed_at)
        replaced = children(b.proc.pid)
    finally:
        load.stop()

    assert len(replaced) == 2 and workers[0] not in replaced, (workers, replaced)

    assert len(after_kill) > 20, "too little load after the kill to tell anything"
    failed = load.failures()
    for outcome in failed:
        assert outcome.started < killed_at < outcome.ended, outcome
    assert not [o for o in after_kill if not o.ok]
    assert len(failed) <= CLIENTS

    # --- Writes: the acknowledged ones exactly once, none twice.
    counts = dict(
        line.split("\t")
        for line in mariadb.sql(f"SELECT k, COUNT(*) FROM test.{table} GROUP BY k").splitlines()
    )
    acknowledged = [o.key for o in load.outcomes if o.kind == "write" and o.ok]
    assert len(acknowledged) > 50
    missing = [key for key in acknowledged if counts.get(key) != "1"]
    assert missing == [], missing[:10]
    assert [key for key, n in counts.items() if n != "1"] == []


def test_twistd_leaves_before_it_stops(tmp_path: Path) -> None:
    """Under twistd too, SIGTERM with --drain-delay: /ready 503 at once, requests still
    served (with Connection: close), /health 200; the gateway stops after the delay."""
    twistd = Path(sys.executable).parent / "twistd"
    gw = Gateway(
        tmp_path,
        "--drain-delay",
        "2",
        command=[str(twistd), "-n", "--pidfile=", "dbslayer", "--port", "{port}"],
        workers=None,
    ).start()
    try:
        assert gw.proc is not None
        assert gw.get("/ready").status == 200
        gw.proc.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        deadline = terminated + 1.5
        while (ready := gw.get("/ready", timeout=5)).status != 503:
            assert time.monotonic() < deadline, ready
            time.sleep(0.05)
        assert ready.json()["draining"] is True
        served = gw.db({"SQL": "SELECT COUNT(*) FROM users"}, timeout=5)
        assert served.status == 200 and served.headers["Connection"] == "close", served
        assert gw.get("/health", timeout=5).status == 200
        # (twistd ends itself with the signal that stopped it, once its services stopped:
        # its own convention, so a supervisor sees "killed by SIGTERM")
        assert gw.proc.wait(20) == -signal.SIGTERM, gw.output()[-3000:]
        assert time.monotonic() - terminated >= 1.9
        assert "dbslayer stopped" in gw.output()
    finally:
        gw.stop()
