"""Processes: the master opens the listening sockets once and its workers inherit them (a
second server on a served port fails at start), a worker that dies is replaced with a back-off while
the others serve (the server never stops itself because workers died), and Ctrl+C or SIGTERM
stop everything without a traceback."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.servers import ROOT, Gateway, MariaDB, free_port

ONE = "/db?" + quote(json.dumps({"SQL": "SELECT 1"}))


# ------------------------------------------------------------------ what /proc says


def worker_pids(gw: Gateway) -> set[int]:
    assert gw.proc is not None
    out = subprocess.run(["pgrep", "-P", str(gw.proc.pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def wait_for_workers(gw: Gateway, n: int, timeout: float = 30) -> set[int]:
    """The pids of ``n`` workers, each listening (its "listening on" line is in the log)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = worker_pids(gw)
        if len(pids) == n and gw.output().count("dbslayer http listening on") >= n:
            return pids
        assert time.monotonic() < deadline, (pids, gw.output()[-3000:])
        time.sleep(0.1)


def _tcp_table() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every IPv4 TCP socket."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        rows.append((int(local.split(":")[1], 16), int(remote.split(":")[1], 16), state, inode))
    return rows


def listening_inodes(port: int) -> set[int]:
    """The sockets listening on ``port`` (one each; SO_REUSEPORT makes several)."""
    return {inode for lport, _, state, inode in _tcp_table() if lport == port and state == "0A"}


def socket_inodes(pid: int) -> set[int]:
    """The sockets a process holds."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    return held


def server_side_holder(port: int, client_port: int, pids: set[int]) -> int:
    """Which of ``pids`` holds the server end of the connection from ``client_port``."""
    inodes = {i for lp, rp, _, i in _tcp_table() if lp == port and rp == client_port}
    holders = [pid for pid in pids if inodes & socket_inodes(pid)]
    assert len(holders) == 1, (inodes, holders)
    return holders[0]


def serve_command(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *args]


def run_second(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Start a server that must refuse to start; stop it (SIGTERM) if it does start."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, XDG_DATA_HOME=str(tmp_path / "second")),
    )
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.terminate()  # (the master forwards it to its workers)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"a second server started on a served port and ran: {out[-2000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


# ------------------------------------------------------------------ one socket, opened once


def test_a_second_server_on_a_served_port_fails_at_start(mariadb: MariaDB, tmp_path: Path) -> None:
    """The master opens the listening sockets once, one per worker slot (the kernel spreads
    connections over them), and holds them all; each worker holds its own. A second server on
    that port, with workers or without, exits 1 with one line "address already in use", and
    the first answers every request, before, during and after."""
    first = Gateway(tmp_path, "--backend", mariadb.dsn(name="first"), workers=2).start()
    try:
        pids = wait_for_workers(first, 2)
        listening = listening_inodes(first.port)
        assert len(listening) == 2, listening  # one per worker slot
        assert first.proc is not None
        assert listening <= socket_inodes(first.proc.pid)  # the master holds every one
        held = [listening & socket_inodes(pid) for pid in pids]
        assert all(len(h) == 1 for h in held) and held[0] != held[1], held

        servers: list[Any] = []
        done = threading.Event()

        def client() -> None:
            while not done.is_set():
                reply = first.db({"SQL": "SELECT 1"}, timeout=10)
                servers.append(reply.json().get("SERVER") if reply.status == 200 else reply)

        thread = threading.Thread(target=client)
        thread.start()
        try:
            for workers in ("2", "1"):
                second = run_second(
                    serve_command(
                        first.port, "--backend", mariadb.dsn(name="second"), "--workers", workers
                    ),
                    tmp_path,
                )
                assert second.returncode == 1, (workers, second)
                assert second.stderr.splitlines() == [
                    f"dbslayer: cannot listen on 127.0.0.1:{first.port}: Address already in use"
                ], (workers, second.stderr)
                assert "Traceback" not in second.stdout + second.stderr
        finally:
            done.set()
            thread.join(30)
        for _ in range(100):
            reply = first.db({"SQL": "SELECT 1"})
            servers.append(reply.json().get("SERVER") if reply.status == 200 else reply)
        assert len(servers) >= 100 and set(servers) == {"first"}, set(map(str, servers))
        assert listening_inodes(first.port) == listening
    finally:
        first.stop()
    assert first.proc is not None and first.proc.returncode == 0


def test_the_admin_port_is_opened_once_too(mariadb: MariaDB, tmp_path: Path) -> None:
    """--admin-port is one socket shared by the workers as well: a second server naming the
    same admin port exits 1 with one line, and the first's admin port keeps answering."""
    admin = free_port()
    first = Gateway(
        tmp_path, "--backend", mariadb.dsn(), "--admin-port", str(admin), workers=2
    ).start()
    try:
        pids = wait_for_workers(first, 2)
        deadline = time.monotonic() + 10
        while first.output().count("dbslayer admin listening on") < 2:
            assert time.monotonic() < deadline, first.output()[-2000:]
            time.sleep(0.1)
        listening = listening_inodes(admin)
        assert len(listening) == 1, listening
        for pid in pids:
            assert listening <= socket_inodes(pid), pid
        for workers in ("2", "1"):
            other = free_port()
            second = run_second(
                serve_command(
                    other,
                    "--backend",
                    mariadb.dsn(),
                    "--admin-port",
                    str(admin),
                    "--workers",
                    workers,
                ),
                tmp_path,
            )
            assert second.returncode == 1, (workers, second)
            assert second.stderr.splitlines() == [
                f"dbslayer: cannot listen on 127.0.0.1:{admin}: Address already in use"
            ], (workers, second.stderr)
            assert listening_inodes(other) == set()  # its main port was given back
        for _ in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        first.stop()
    assert first.proc is not None and first.proc.returncode == 0


# ------------------------------------------------------------------ deaths and replacements


def test_quick_worker_deaths_never_stop_the_server(mariadb: MariaDB, tmp_path: Path) -> None:
    """kill -9 of a worker three times in a row, each time soon after it started: the other
    worker answers every request on its connection throughout, a replacement comes each time
    after a growing delay, the master keeps running, and new connections are served."""
    gw = Gateway(tmp_path, "--backend", mariadb.dsn(), workers=2).start()
    try:
        pids = wait_for_workers(gw, 2)
        listening = listening_inodes(gw.port)
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", ONE)
        assert conn.getresponse().read() and conn.sock is not None
        survivor = server_side_holder(gw.port, conn.sock.getsockname()[1], pids)
        statuses: list[Any] = []
        done = threading.Event()

        def keep_asking() -> None:
            while not done.is_set():
                try:
                    conn.request("GET", ONE)
                    response = conn.getresponse()
                    response.read()
                    statuses.append(response.status)
                except (OSError, http.client.HTTPException) as e:
                    statuses.append(repr(e))
                    return
                time.sleep(0.01)

        thread = threading.Thread(target=keep_asking)
        thread.start()
        seen = set(pids)
        try:
            for _ in range(3):
                victim = next(iter(worker_pids(gw) - {survivor}))
                os.kill(victim, signal.SIGKILL)
                deadline = time.monotonic() + 30
                while True:  # its replacement: a new pid (killed at once on the next turn)
                    new = worker_pids(gw) - seen
                    if new:
                        seen |= new
                        break
                    assert gw.proc is not None and gw.proc.poll() is None, gw.output()[-3000:]
                    assert time.monotonic() < deadline, gw.output()[-3000:]
                    time.sleep(0.02)
            wait_for_workers(gw, 2)
        finally:
            done.set()
            thread.join(30)
        assert gw.proc is not None and gw.proc.poll() is None  # the master never gave up
        assert survivor in worker_pids(gw)
        # The replacements took the dead workers' sockets, which the master kept open.
        assert listening_inodes(gw.port) == listening and len(listening) == 2
        for pid in worker_pids(gw):
            assert len(listening & socket_inodes(pid)) == 1, pid
        assert len(statuses) >= 20 and set(statuses) == {200}, statuses[-5:]
        for _ in range(20):
            assert gw.db({"SQL": "SELECT 1"}).status == 200
        deaths = re.findall(
            r"worker (\d+) was killed by signal 9 \(SIGKILL\) after [\d.]+ s; a new one starts in ([\d.]+) s",
            gw.output(),
        )
        assert len(deaths) == 3, gw.output()[-3000:]
        delays = [float(d) for _, d in deaths]
        assert delays == sorted(delays) and delays[0] < delays[-1], delays
        assert "stopping" not in gw.output()
    finally:
        gw.stop()
    assert gw.proc is not None and gw.proc.returncode == 0


def test_restart_delay_doubles_while_deaths_are_quick() -> None:
    """The back-off: 0.5 s doubling to 30 s while workers die young; a worker that lived
    10 s or more is replaced at once and the next quick death starts again from 0.5 s."""
    from api.workers import RestartPolicy

    policy = RestartPolicy()
    assert [policy.delay_after(lived=1.0) for _ in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0,
    ]  # fmt: skip
    assert policy.delay_after(lived=10.0) == 0.0
    assert policy.delay_after(lived=0.1) == 0.5
    assert policy.delay_after(lived=9.9) == 1.0
    assert policy.delay_after(lived=3600.0) == 0.0
    assert policy.delay_after(lived=0.0) == 0.5
    short = RestartPolicy(first_delay=0.1, max_delay=0.3, healthy_after=1.0)
    assert [short.delay_after(lived=0.5) for _ in range(4)] == [0.1, 0.2, 0.3, 0.3]


class FakeChild:
    """A worker process for the supervisor's decisions: it lives until told otherwise."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)

    def kill(self) -> None:
        self.code = -9


def test_supervisor_replaces_dead_workers_and_never_gives_up() -> None:
    """With an injected clock: each quick death schedules one replacement after the policy's
    delay (none starts before it), the survivors are left alone, a stop forwards SIGTERM to
    every worker and cancels pending replacements, and workers still running after the
    drain timeout plus the grace are killed."""
    from api.workers import KILL_GRACE, Supervisor

    now = [100.0]
    started: list[FakeChild] = []
    said: list[str] = []

    slots: list[int] = []

    def start_worker(slot: int) -> FakeChild:
        slots.append(slot)
        child = FakeChild(1000 + len(started))
        started.append(child)
        return child

    closed: list[float] = []
    sup = Supervisor(
        start_worker,
        2,
        drain_timeout=30,
        clock=lambda: now[0],
        say=said.append,
        on_stop=lambda: closed.append(now[0]),
    )
    sup.start()
    assert [c.pid for c in started] == [1000, 1001] and sup.step() is None
    survivor = started[1]
    for delay in (0.5, 1.0, 2.0, 4.0):  # the newest worker dies young, again and again
        now[0] += 1.0
        started[-1 if len(started) > 2 else 0].code = -9
        assert sup.step() == delay and list(sup.children) == [survivor.pid]
        now[0] += delay - 0.01
        count = len(started)
        assert sup.step() == pytest.approx(0.01) and len(started) == count
        now[0] += 0.01
        assert sup.step() is None and len(started) == count + 1
    assert len(sup.children) == 2 and survivor.pid in sup.children and not survivor.signals
    assert said[0].startswith("worker 1000 was killed by signal 9 (SIGKILL) after 1.0 s")
    assert slots == [0, 1, 0, 0, 0, 0]  # each replacement takes its predecessor's socket
    assert said[-1].endswith("a new one starts in 4.0 s")
    now[0] += 60.0  # the newest lived a minute: replaced at once, and the delay starts over
    started[-1].code = 1
    count = len(started)
    assert sup.step() is None and len(started) == count + 1 and len(sup.children) == 2
    assert said[-1].endswith("exited with status 1 after 60.0 s; a new one starts in 0.0 s")
    started[-1].code = -11
    assert sup.step() == 0.5  # a quick death again: a replacement pending ...
    sup.request_stop()  # ... when the server is told to stop
    assert sup.step() == 30 + KILL_GRACE and not sup.due
    assert len(closed) == 1  # the master's listening sockets close as the stop begins
    fakes: list[Any] = list(sup.children.values())  # (FakeChild, typed as Child)
    assert all(c.signals == [signal.SIGTERM] for c in fakes)
    assert not sup.done
    stubborn = fakes[0]
    for child in fakes:
        if child is not stubborn:
            child.code = 0
    now[0] += 30 + KILL_GRACE
    count = len(started)
    assert sup.step() is None and stubborn.code == -9 and len(started) == count
    assert sup.step() == 0.0 and sup.done  # (nothing left to wait for)
    assert len(closed) == 1


def test_supervisor_is_done_at_once_when_the_last_worker_exits() -> None:
    """A stop whose workers all exit within the drain: the step that reaps the last one says
    nothing is left to wait for (0 s), so the master does not sit out a wait after it."""
    from api.workers import Supervisor

    now = [0.0]
    children = [FakeChild(1), FakeChild(2)]
    sup = Supervisor(lambda slot: children[slot], 2, drain_timeout=30, clock=lambda: now[0])
    sup.start()
    sup.request_stop()
    assert (sup.step() or 0.0) > 0 and not sup.done
    children[0].code = 0
    now[0] += 0.1
    assert (sup.step() or 0.0) > 0 and not sup.done
    children[1].code = 0
    assert sup.step() == 0.0 and sup.done


def test_worker_context_reads_the_inherited_sockets() -> None:
    """A worker learns its run directory and the descriptors of its listening sockets from
    the environment the master gave it."""
    from api.workers import LISTEN_FDS_ENV, WorkerContext

    context = WorkerContext.from_environ(
        {"DBSLAYER_WORKER_DIR": "/tmp/x", LISTEN_FDS_ENV: "http:5,admin:7"}
    )
    assert context is not None
    assert context.fds == {"http": 5, "admin": 7} and context.run_dir == "/tmp/x"
    assert WorkerContext.from_environ({LISTEN_FDS_ENV: "http:5"}) is None  # not a worker


# ------------------------------------------------------------------ stopping


def _start_in_own_group(tmp_path: Path, port: int, *args: str) -> tuple[Any, Path]:
    """``dbslayer serve`` as a terminal runs it: its own process group (a job)."""
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            serve_command(port, *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg")),
            start_new_session=True,
        )
    return proc, log


@pytest.mark.parametrize(
    ("workers", "signals", "to_group"),
    [
        (2, [signal.SIGINT], True),  # Ctrl+C: the terminal signals master and workers
        (2, [signal.SIGINT, signal.SIGINT], True),  # Ctrl+C twice
        (2, [signal.SIGTERM], False),  # kill PID of the master (systemd, docker stop)
        (1, [signal.SIGINT, signal.SIGINT], True),  # one process, Ctrl+C twice
        (1, [signal.SIGTERM, signal.SIGINT], False),
    ],
)
def test_signals_stop_the_server_without_tracebacks(
    tmp_path: Path, workers: int, signals: list[signal.Signals], to_group: bool
) -> None:
    """SIGINT to the process group (Ctrl+C, once or twice) or SIGTERM to the master: exit
    status 0, every worker drained ("dbslayer stopped" once each), no traceback."""
    port = free_port()
    proc, log = _start_in_own_group(tmp_path, port, "--workers", str(workers))
    try:
        deadline = time.monotonic() + 30
        while log.read_text(errors="replace").count("dbslayer http listening on") < workers:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", ONE)
        assert conn.getresponse().status == 200
        conn.close()
        for signum in signals:
            if to_group:
                os.killpg(proc.pid, signum)
            else:
                os.kill(proc.pid, signum)
            time.sleep(0.05)
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text(errors="replace")
    assert "Traceback" not in output and "ReactorNotRunning" not in output, output[-3000:]
    assert output.count("dbslayer stopped") == workers, output[-3000:]
