"""``--workers N``: N processes serving one port, for N cores.

The master process opens the listening sockets once, before any worker starts, and holds them
until it exits. It first binds the port without ``SO_REUSEPORT`` (a probe): a port another
process already listens on is refused at start ("address already in use"), where joining with
``SO_REUSEPORT`` let a second server of the same user take part of the traffic, silently.
The main port then gets one ``SO_REUSEPORT`` socket per worker slot, so that the kernel spreads
new connections evenly over the workers (one accept queue shared by all lets whichever worker
wakes first take a whole burst: measured, one of two workers got every keep-alive connection
of a ``wrk`` run); the admin port, lightly used, has one socket that all workers share. The
``dbslayer serve --workers 1`` children inherit their descriptors (their numbers in
``DBSLAYER_WORKER_FDS``) and accept on them (``reactor.adoptStreamPort``). A worker's
replacement inherits the same socket, which the master kept open meanwhile: connections
queued on it while the worker restarted wait for the replacement instead of being reset. Each worker serves its statistics to the others over a UNIX socket in a
shared run directory (so ``/stats`` and ``/metrics`` report the whole server) and, on
``/shutdown``, asks the master to stop everyone.

The master (:class:`Supervisor`) replaces a worker that dies, after a delay that grows while
workers die young (:class:`RestartPolicy`); the others serve meanwhile, and the server never
stops itself because workers died. SIGTERM or SIGINT make it forward SIGTERM to every worker
(each drains its requests) and exit 0 once all have stopped. The terminal's Ctrl+C reaches the
whole process group: workers start with SIGINT ignored and stop when the master tells them.
"""

from __future__ import annotations

import bisect
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import attrs

#: Environment given to workers by the master.
RUN_DIR_ENV = "DBSLAYER_WORKER_DIR"
START_ENV = "DBSLAYER_WORKER_START"
#: The worker's arguments (a JSON list), passed in the environment, which only this user can
#: read, rather than on its command line, which ps shows everyone (passwords included).
ARGV_ENV = "DBSLAYER_WORKER_ARGV"
#: The inherited listening sockets: ``name:fd`` pairs, comma-separated (``http:3,admin:4``).
LISTEN_FDS_ENV = "DBSLAYER_WORKER_FDS"
#: The worker's slot, 0 to workers - 1 (a replacement takes the slot of the worker it
#: replaces): slot 0 sends the events every worker finds (api.webhooks).
SLOT_ENV = "DBSLAYER_WORKER_SLOT"
#: Connections the kernel queues on a listening socket before the workers accept them (the
#: kernel caps it at ``net.core.somaxconn``).
BACKLOG = 1024
#: Seconds past the drain timeout after which the master kills a worker that has not stopped.
KILL_GRACE = 10.0
#: Longest the master sleeps between looks at its workers (signals wake it at once anyway).
MAX_SLEEP = 5.0


@attrs.frozen
class WorkerContext:
    """What a worker process knows about the server it is part of."""

    run_dir: str
    start: float
    #: Listening socket descriptors inherited from the master, by service name (``http``,
    #: ``admin``).
    fds: Mapping[str, int] = attrs.field(factory=dict)
    #: This worker's slot (0 to workers - 1).
    slot: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerContext | None:
        run_dir = environ.get(RUN_DIR_ENV)
        if not run_dir:
            return None
        fds = {}
        for pair in filter(None, environ.get(LISTEN_FDS_ENV, "").split(",")):
            name, _, fd = pair.partition(":")
            fds[name] = int(fd)
        return cls(
            run_dir=run_dir,
            start=float(environ.get(START_ENV) or time.time()),
            fds=fds,
            slot=int(environ.get(SLOT_ENV) or 0),
        )

    def stop_server(self) -> None:
        """Ask the master to stop every worker (it forwards SIGTERM to all, this one too)."""
        os.kill(os.getppid(), signal.SIGTERM)


def listening_socket(
    host: str, port: int, backlog: int = BACKLOG, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` (OSError when it cannot).

    ``SO_REUSEADDR``: a port left in TIME_WAIT by the previous run is taken again at once, a
    port that another socket listens on is refused (EADDRINUSE). ``reuse_port`` adds
    ``SO_REUSEPORT``, for the master's own group of sockets on one port (it probes the port
    without it first); ``listen`` False only binds (the probe)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
        sock.setblocking(False)  # (shared with the workers, which accept without blocking)
    except BaseException:
        sock.close()
        raise
    return sock


def stop_reactor(reactor: Any) -> None:
    """``reactor.stop()``, unless the reactor is stopping already (a second signal, a second
    ``/shutdown``): Twisted raises ReactorNotRunning then, logged as a traceback."""
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


@attrs.define
class RestartPolicy:
    """How long the master waits before it replaces a worker that died.

    A worker that dies young (before ``healthy_after`` seconds) is replaced after a delay that
    starts at ``first_delay`` and doubles with each such death, up to ``max_delay``: a worker
    that crashes at once costs one start every ``max_delay`` seconds, not a busy loop. A worker
    that lived ``healthy_after`` seconds or more is replaced at once, and the delay starts
    again from ``first_delay``. The policy never gives up: the other workers keep serving, and
    a cause that goes away (a full disk, a bad deploy rolled back) heals without a restart.
    """

    first_delay: float = 0.5
    max_delay: float = 30.0
    healthy_after: float = 10.0
    _next: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self._next = self.first_delay

    def delay_after(self, lived: float) -> float:
        """Seconds before the replacement of a worker that died after ``lived`` seconds."""
        if lived >= self.healthy_after:
            self._next = self.first_delay
            return 0.0
        delay = self._next
        self._next = min(self._next * 2, self.max_delay)
        return delay


class Child(Protocol):
    """What the supervisor uses of a worker process (a ``subprocess.Popen``)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


def _say(message: str) -> None:
    print(f"dbslayer: {message}", file=sys.stderr, flush=True)


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"was killed by signal {-code} ({name})"
    return f"exited with status {code}"


class Supervisor:
    """The master's decisions, without the waiting: start the workers, replace the ones that
    die (:class:`RestartPolicy`), and on a stop request forward SIGTERM to every worker, then
    kill those still running ``drain_timeout + KILL_GRACE`` seconds later.

    :meth:`step` does what is due and says how long the caller may sleep; the caller wakes it
    again on SIGCHLD, SIGTERM or SIGINT (see :func:`run_master`). ``start_worker`` (called with
    the worker's slot, 0 to ``workers - 1``: a replacement takes the slot of the worker it
    replaces) and ``clock`` are injected, so the decisions are tested without processes or
    time."""

    def __init__(
        self,
        start_worker: Callable[[int], Child],
        workers: int,
        drain_timeout: float,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = _say,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.start_worker = start_worker
        self.workers = workers
        self.drain_timeout = drain_timeout
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.say = say
        #: Called once when stopping begins (the master closes its listening sockets).
        self.on_stop = on_stop
        self.children: dict[int, Child] = {}
        self.born: dict[int, float] = {}
        #: The slot of each running worker.
        self.slots: dict[int, int] = {}
        #: When each pending replacement starts, and its slot (sorted).
        self.due: list[tuple[float, int]] = []
        #: Set by the signal handler; acted on by the next step.
        self.stop_requested = False
        #: When the workers still running get SIGKILL (set once stopping).
        self.kill_at: float | None = None
        self.killed = False

    @property
    def done(self) -> bool:
        """Stopping, and every worker has exited."""
        return self.kill_at is not None and not self.children

    def start(self) -> None:
        now = self.clock()
        for slot in range(self.workers):
            self._spawn(now, slot)

    def request_stop(self) -> None:
        """Stop the server (safe in a signal handler: only sets a flag)."""
        self.stop_requested = True

    def step(self) -> float | None:
        """Act on what happened: reap exited workers, schedule or start replacements, begin
        or finish stopping. Returns the seconds until something is due (None: nothing is)."""
        now = self.clock()
        self._reap(now)
        if self.stop_requested and self.kill_at is None:
            self.kill_at = now + self.drain_timeout + KILL_GRACE
            self.due.clear()
            if self.on_stop is not None:
                self.on_stop()
            for child in self.children.values():
                child.send_signal(signal.SIGTERM)
        if self.kill_at is not None:
            if not self.children:
                return 0.0  # (done: the loop must not wait for a signal that came already)
            if now >= self.kill_at and not self.killed:
                self.killed = True
                for pid, child in self.children.items():
                    self.say(f"worker {pid} still running {KILL_GRACE:g} s past the drain; killed")
                    child.kill()
            return None if self.killed else self.kill_at - now
        while self.due and self.due[0][0] <= now:
            _, slot = self.due.pop(0)
            self._spawn(now, slot)
        return self.due[0][0] - now if self.due else None

    def _reap(self, now: float) -> None:
        for pid, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            del self.children[pid]
            slot = self.slots.pop(pid, 0)
            lived = now - self.born.pop(pid, now)
            if self.stop_requested:
                continue
            delay = self.policy.delay_after(lived)
            self.say(
                f"worker {pid} {_how_it_ended(code)} after {lived:.1f} s; "
                f"a new one starts in {delay:.1f} s"
            )
            bisect.insort(self.due, (now + delay, slot))

    def _spawn(self, now: float, slot: int) -> None:
        try:
            child = self.start_worker(slot)
        except OSError as e:  # (fork failed: out of memory or processes)
            delay = self.policy.delay_after(0.0)
            self.say(f"cannot start a worker ({e.strerror}); trying again in {delay:.1f} s")
            bisect.insort(self.due, (now + delay, slot))
            return
        self.children[child.pid] = child
        self.born[child.pid] = now
        self.slots[child.pid] = slot


def _ignore_sigint() -> None:
    """(In a new worker, before it runs: the terminal's Ctrl+C is the master's to act on.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _woken_by_signals(supervisor: Supervisor) -> Iterator[Callable[[float | None], None]]:
    """A ``wait(timeout)`` that returns early on SIGCHLD, SIGTERM or SIGINT (SIGTERM and
    SIGINT also ask the supervisor to stop). The signals write to a pipe the wait selects on
    (``signal.set_wakeup_fd``), so one that arrives just before the wait is not missed."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)

    def on_stop(signum: int, frame: object) -> None:
        supervisor.request_stop()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_stop),
        signal.SIGINT: signal.signal(signal.SIGINT, on_stop),
        # (a handler of its own, so that the C-level handler writes to the wake-up pipe)
        signal.SIGCHLD: signal.signal(signal.SIGCHLD, lambda signum, frame: None),
    }
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def wait(timeout: float | None) -> None:
        limit = MAX_SLEEP if timeout is None else max(0.0, min(timeout, MAX_SLEEP))
        readable, _, _ = select.select([wake_r], [], [], limit)
        if readable:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass

    try:
        yield wait
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(wake_r)
        os.close(wake_w)


def run_master(
    argv: Sequence[str],
    workers: int,
    host: str,
    port: int,
    admin: tuple[str, int] | None,
    drain_timeout: float,
) -> int:
    """Open the listening sockets, start ``workers`` children on them and supervise them until
    told to stop; the exit status (1: a port cannot be listened on)."""
    held: list[socket.socket] = []
    main: list[socket.socket] = []  # one per worker slot
    admin_sock: socket.socket | None = None
    where_host, where_port = host, port
    try:
        probe = listening_socket(host, port, listen=False)  # refused if anyone listens there
        port = probe.getsockname()[1]  # (port 0: the one the kernel chose, for every worker)
        probe.close()
        where_port = port
        for _ in range(workers):
            main.append(listening_socket(host, port, reuse_port=True))
            held.append(main[-1])
        if admin:
            where_host, where_port = admin
            admin_sock = listening_socket(*admin)
            held.append(admin_sock)
    except OSError as e:
        _say(f"cannot listen on {where_host}:{where_port}: {e.strerror}")
        for sock in held:
            sock.close()
        return 1
    from api.cli import masked_arguments

    run_dir = tempfile.mkdtemp(prefix="dbslayer-")
    worker_argv = [*argv, "--workers", "1", "--port", str(port)]
    env = dict(os.environ, **{RUN_DIR_ENV: run_dir, START_ENV: repr(time.time())})
    env[ARGV_ENV] = json.dumps(worker_argv)
    # The worker reads its arguments from ARGV_ENV; its command line shows them masked, for ps.
    command = [sys.executable, "-m", "api.cli", "serve", *masked_arguments(worker_argv)]

    def start_worker(slot: int) -> Child:
        fds = {"http": main[slot].fileno()}
        if admin_sock is not None:
            fds["admin"] = admin_sock.fileno()
        slot_env = dict(env, **{LISTEN_FDS_ENV: ",".join(f"{k}:{v}" for k, v in fds.items())})
        slot_env[SLOT_ENV] = str(slot)
        return subprocess.Popen(
            command, env=slot_env, pass_fds=tuple(fds.values()), preexec_fn=_ignore_sigint
        )

    def close_listeners() -> None:
        # The workers stop listening as they drain; the master's copies would keep the
        # sockets open, and new clients would wait in their queues until the end instead of
        # being refused at once (so that a load balancer tries another server).
        for sock in held:
            sock.close()

    supervisor = Supervisor(start_worker, workers, drain_timeout, on_stop=close_listeners)
    try:
        with _woken_by_signals(supervisor) as wait:
            print(
                f"dbslayer: {workers} workers serving http://{host}:{port}/ "
                f"(master pid {os.getpid()})",
                flush=True,
            )
            supervisor.start()
            while not supervisor.done:
                wait(supervisor.step())
    finally:
        for child in supervisor.children.values():  # (only after an unexpected error)
            child.kill()
        for sock in held:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0
