"""``--workers N``: N processes serving one port, for N cores.

The master process starts N ``dbslayer serve --workers 1`` children. Each binds the same address
with ``SO_REUSEPORT`` (the kernel spreads connections over them), serves its statistics to the
others over a UNIX socket in a shared run directory (so ``/stats`` and ``/metrics`` report the
whole server), and, on ``/shutdown``, asks the master to stop everyone. The master forwards
SIGTERM/SIGINT to every worker (each drains its requests), restarts a worker that dies, and
exits 0 once all have stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import attrs

#: Environment given to workers by the master.
RUN_DIR_ENV = "DBSLAYER_WORKER_DIR"
START_ENV = "DBSLAYER_WORKER_START"


@attrs.frozen
class WorkerContext:
    """What a worker process knows about the server it is part of."""

    run_dir: str
    start: float

    @classmethod
    def from_environ(cls, environ: dict[str, str] | os._Environ[str]) -> WorkerContext | None:
        run_dir = environ.get(RUN_DIR_ENV)
        if not run_dir:
            return None
        return cls(run_dir=run_dir, start=float(environ.get(START_ENV) or time.time()))

    def stop_server(self) -> None:
        """Ask the master to stop every worker (it forwards SIGTERM to all, this one too)."""
        os.kill(os.getppid(), signal.SIGTERM)


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket bound with SO_REUSEPORT (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_master(
    argv: Sequence[str],
    workers: int,
    host: str,
    port: int,
    admin: tuple[str, int] | None,
    drain_timeout: float,
) -> int:
    """Start ``workers`` children and supervise them until told to stop; the exit status."""
    run_dir = tempfile.mkdtemp(prefix="dbslayer-")
    held: list[socket.socket] = []
    # Bind the port(s) first: a port already taken is a clear error at once, and port 0 picks
    # one port for every worker. The master's sockets never listen, so they take no
    # connections; they only hold the port while the workers come and go.
    for where_host, where_port in [(host, port)] + ([admin] if admin else []):
        try:
            sock = reuseport_socket(where_host, where_port)
        except OSError as e:
            print(
                f"dbslayer: cannot listen on {where_host}:{where_port}: {e.strerror}",
                file=sys.stderr,
                flush=True,
            )
            shutil.rmtree(run_dir, ignore_errors=True)
            return 1
        held.append(sock)
        if where_port == port == 0:
            port = sock.getsockname()[1]
    env = dict(os.environ, **{RUN_DIR_ENV: run_dir, START_ENV: repr(time.time())})
    command = [
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        *argv,
        "--workers",
        "1",
        "--port",
        str(port),
    ]
    stopping = False
    children: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    quick_deaths = 0

    def spawn() -> None:
        child = subprocess.Popen(command, env=env)
        children[child.pid] = child
        started[child.pid] = time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"dbslayer: {workers} workers serving http://{host}:{port}/ (master pid {os.getpid()})",
        flush=True,
    )
    for _ in range(workers):
        spawn()
    status = 0
    try:
        while children:
            try:
                pid, code = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            child = children.pop(pid, None)
            if child is None:
                continue
            child.returncode = os.waitstatus_to_exitcode(code)
            if stopping:
                continue
            lived = time.monotonic() - started.pop(pid, 0.0)
            print(
                f"dbslayer: worker {pid} exited with status {child.returncode} after {lived:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            quick_deaths = quick_deaths + 1 if lived < 5 else 0
            if quick_deaths >= 3:
                print(
                    "dbslayer: workers keep dying at start; stopping", file=sys.stderr, flush=True
                )
                status = 1
                stop(signal.SIGTERM, None)
                continue
            spawn()
    finally:
        deadline = time.monotonic() + drain_timeout + 10
        for child in list(children.values()):
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        for sock in held:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return status
