"""Every shell and Python example of README.md, run as written and compared with the output it shows.

One pytest case per block, named by its heading and index (``Requests-1``), so a failure names
the example (and the README line). How a block is run:

- Against a demo gateway: ``dbslayer serve`` (the default workers, as ``make run``) on a free
  port with a fresh SQLite demo database in a temporary directory; ``127.0.0.1:9090`` and
  ``localhost:9090`` in the block are rewritten to its port. Blocks that only read share one
  such gateway; a block that may change anything (SQL that writes, CACHE, /shutdown, users)
  gets a fresh one of its own, so no example depends on another's side effects.
- Shell blocks run in one bash session each (variables carry from line to line), with the
  virtualenv's bin first on PATH (as after ``. .venv/bin/activate``), in a temporary working
  directory holding a link to the repository's ``conf/``. Each command's output (stdout and
  stderr) is compared with the ``# `` lines shown under it. A command must exit with 0 unless
  the output it shows matches (an error the README means to show). curl runs with
  ``--fail-with-body`` added (``$CURL_HOME/.curlrc``), so an HTTP error an example does not
  show its answer for fails the example.
- Servers in a block (``dbslayer serve ...``, ``twistd -n ...``) are started in the background
  on a free port (their ``--port N`` and the block's later ``:N``/``:9090`` rewritten to it),
  must be listening within 30 s (or have shown the error the README shows), serve the lines
  after them, and are stopped with SIGTERM at the next server line or the end of the block.
- Python blocks run with the virtualenv's python, top-level statement by statement; each
  statement's output is compared with the ``# `` lines in and under it.
- ``<!-- example: needs=... -->``: ``redis`` (a Redis; ``127.0.0.1:6379`` rewritten to it,
  ``DBSLAYER_REDIS_URL`` set); ``auth`` (the demo gateway runs ``--auth`` on that Redis, with
  users alice (write) and admin, their tokens in ``$TOKEN`` and ``$ADMIN_TOKEN``);
  ``mariadb`` (a MariaDB as ``127.0.0.1:3306`` with a ``shop`` database and the accounts
  ``app`` and ``app_ro``; their password files under ``/etc/dbslayer/`` and ``$DB_PW`` /
  ``$DB1_PW``, the paths rewritten to a temporary directory; ``mariadb`` and ``sudo mariadb``
  reach it as root). ``<!-- example: skip=REASON -->``: skipped, with the reason.
- A gateway's log must show no traceback after a block.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.readme_examples import (
    Example,
    ReadmeError,
    console_commands,
    match_output,
    parse_readme,
    ports_named,
    python_statements,
    rewrite,
    server_command,
    shell_commands,
    strip_comment,
)
from tests.servers import ROOT, Gateway, MariaDB, Redis, add_user, free_port

README = ROOT / "README.md"
BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 30.0
# A block may change state (then it gets a fresh demo gateway of its own).
_CHANGES = re.compile(
    r"(?i)\b(insert|update|delete|replace|create|drop|alter|truncate|rename|grant|revoke|"
    r"transaction|lock|set)\b|cache|/shutdown|dbapi|users\s"
)
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|Unhandled Error")

try:
    EXAMPLES: list[Example] = parse_readme(README.read_text(encoding="utf-8"))
    PARSE_ERROR = ""
except ReadmeError as e:  # (reported as a failing case of its own)
    EXAMPLES, PARSE_ERROR = [], str(e)

#: Processes a block started and asked to stop; reaped when the module ends.
_STOPPING: list[int] = []
_GATEWAYS: list[Gateway] = []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def _reap() -> Iterator[None]:
    yield
    for gw in _GATEWAYS:
        if gw.proc is not None:
            try:
                gw.proc.wait(30)
            except subprocess.TimeoutExpired:
                gw.proc.kill()
                gw.proc.wait()
    deadline = time.monotonic() + 30
    for pid in _STOPPING:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _demo_gateway(directory: Path, *args: str) -> Gateway:
    """``dbslayer serve`` with the default workers, as ``make run`` starts it (not started)."""
    directory.mkdir(parents=True, exist_ok=True)
    return Gateway(
        directory,
        *args,
        command=[str(BIN / "dbslayer"), "serve", "--port", "{port}"],
        env={"XDG_DATA_HOME": str(directory / "xdg")},
        workers=None,
    )


def _demo(directory: Path, *args: str) -> Gateway:
    return _demo_gateway(directory, *args).start()


class _Spare:
    """The next fresh demo gateway, started while the block before it runs."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.pending: tuple[threading.Thread, Gateway, list[BaseException]] | None = None

    def _launch(self) -> None:
        gw = _demo_gateway(self.factory.mktemp("readme-fresh"))
        errors: list[BaseException] = []

        def start() -> None:
            try:
                gw.start()
            except BaseException as e:  # (raised again by take)
                errors.append(e)

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        self.pending = (thread, gw, errors)

    def take(self) -> Gateway:
        if self.pending is None:
            self._launch()
        assert self.pending is not None
        thread, gw, errors = self.pending
        thread.join(60)
        self._launch()
        if errors:
            raise errors[0]
        return gw

    def close(self) -> None:
        if self.pending is not None:
            thread, gw, _ = self.pending
            thread.join(60)
            _stop_later(gw)


def _stop_later(gw: Gateway) -> None:
    """SIGTERM now; the exit is awaited when the module ends (stopping takes seconds)."""
    if gw.proc is not None and gw.proc.poll() is None:
        gw.proc.send_signal(signal.SIGTERM)
        _GATEWAYS.append(gw)


@pytest.fixture(scope="module")
def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = _demo(tmp_path_factory.mktemp("readme-demo"))
    yield gw
    _stop_later(gw)


@pytest.fixture(scope="module")
def spare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Spare]:
    spares = _Spare(tmp_path_factory)
    yield spares
    spares.close()


@dataclass
class Shop:
    """The MariaDB of ``needs=mariadb``: database ``shop`` (with a table ``notes``), the accounts
    app (all privileges on shop) and app_ro (SELECT, SHOW VIEW), their password files."""

    server: MariaDB
    password: str = "app-secret-1"
    read_password: str = "app-ro-secret-1"

    def prepare(self, etc: Path) -> dict[str, str]:
        """Accounts as new (an example may change a password), the password files in ``etc``
        (for /etc/dbslayer/); the block's text replacements."""
        accounts = []
        for host in ("127.0.0.1", "localhost"):
            accounts.append(
                f"CREATE OR REPLACE USER 'app'@'{host}' IDENTIFIED BY '{self.password}';"
                f"GRANT ALL ON shop.* TO 'app'@'{host}';"
                f"CREATE OR REPLACE USER 'app_ro'@'{host}' IDENTIFIED BY '{self.read_password}';"
                f"GRANT SELECT, SHOW VIEW ON shop.* TO 'app_ro'@'{host}';"
            )
        self.server.sql(
            "CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4;"
            "CREATE TABLE IF NOT EXISTS shop.notes (id INT AUTO_INCREMENT PRIMARY KEY, t INT);"
            + "".join(accounts)
        )
        etc.mkdir(parents=True, exist_ok=True)
        for name, secret in (
            ("main.pw", self.password),
            ("db1.pw", self.password),
            ("db1-ro.pw", self.read_password),
        ):
            path = etc / name
            path.write_text(secret + "\n")
            path.chmod(0o600)
        return {
            "127.0.0.1:3306": f"127.0.0.1:{self.server.port}",
            "/etc/dbslayer/": f"{etc}/",
            "/run/mysqld/mysqld.sock": self.server.socket,
        }


@pytest.fixture(scope="module")
def shop(request: pytest.FixtureRequest) -> Shop:
    return Shop(request.getfixturevalue("mariadb"))


@dataclass
class Outcome:
    failures: list[str] = field(default_factory=list)

    def fail(self, where: str, text: str, why: str, output: str) -> None:
        shown = output if len(output) < 4000 else output[:2000] + "\n[...]\n" + output[-2000:]
        self.failures.append(f"{where}: {why}\n  command: {text}\n  output:\n{shown}")


class Shell:
    """One bash session for a block: commands written to its stdin, each one's output to a
    file, and a line on bash's stdout when it is done."""

    def __init__(self, cwd: Path, env: dict[str, str], out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(out / "bash.err", "wb"),  # noqa: SIM115 (closed with the process)
            cwd=cwd,
            env=env,
        )
        self.buffer = b""
        self.n = 0

    def _send(self, script: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()

    def _line(self, prefix: str, timeout: float) -> str | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            if b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(prefix):
                    return text[len(prefix) :]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self.buffer += chunk

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int | None, str]:
        """Run a command to its end: (exit status or None on a time-out, its output)."""
        self.n += 1
        out = self.out / f"{self.n}.out"
        self._send(f'{{\n{command}\n}} >"{out}" 2>&1 </dev/null\necho "@@done {self.n} $?"\n')
        got = self._line(f"@@done {self.n} ", timeout)
        return (int(got) if got is not None else None), out.read_text(errors="replace")

    def start(self, command: str) -> tuple[int, Path]:
        """Start a command in the background: (its pid, its output file)."""
        self.n += 1
        out = self.out / f"{self.n}.out"
        command = strip_comment(command).rstrip().removesuffix("&")
        self._send(f'{command} >"{out}" 2>&1 </dev/null &\necho "@@bg {self.n} $!"\n')
        got = self._line(f"@@bg {self.n} ", 10)
        assert got is not None, "bash did not start the command"
        return int(got), out

    def status(self, pid: int) -> int | None:
        self.n += 1
        self._send(f'wait {pid}; echo "@@rc {self.n} $?"\n')
        got = self._line(f"@@rc {self.n} ", 10)
        return int(got) if got is not None else None

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _environment(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBSLAYER_")}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    shims = tmp / "shims"
    shims.mkdir(exist_ok=True)
    env["PATH"] = os.pathsep.join([str(BIN), str(shims), env.get("PATH", "/usr/bin:/bin")])
    env["VIRTUAL_ENV"] = str(BIN.parent)
    env["XDG_DATA_HOME"] = str(tmp / "xdg")
    env["CURL_HOME"] = str(tmp / "curl")
    (tmp / "curl").mkdir(exist_ok=True)
    # (silent: no progress meter, as at a terminal; errors are still shown)
    (tmp / "curl" / ".curlrc").write_text("silent\nshow-error\nfail-with-body\n")
    env.update(extra)
    return env


def _workdir(tmp: Path) -> Path:
    work = tmp / "work"
    work.mkdir()
    (work / "conf").symlink_to(ROOT / "conf")
    return work


def _port_replacements(old: int, new: int) -> dict[str, str]:
    return {
        f"127.0.0.1:{old}": f"127.0.0.1:{new}",
        f"localhost:{old}": f"localhost:{new}",
        f"127.0.0.1 {old}": f"127.0.0.1 {new}",  # (nc HOST PORT)
        f"--port {old}": f"--port {new}",
        f"--port={old}": f"--port={new}",
    }


def _log_problem(text: str) -> str:
    m = _TRACEBACK.search(text)
    return text[max(0, m.start() - 500) : m.start() + 3000] if m else ""


def _run_shell(
    example: Example,
    commands: list[Any],
    tmp: Path,
    env: dict[str, str],
    fixed: dict[str, str],
    demo_port: int | None,
    outcome: Outcome,
) -> None:
    out = tmp / "out"
    out.mkdir()
    shell = Shell(_workdir(tmp), env, out)
    ports: dict[str, str] = {}
    if demo_port is not None:
        ports = _port_replacements(9090, demo_port)
    servers: list[tuple[int, Path, bool]] = []  # pid, output, is twistd

    def stop(pid: int, twistd: bool, wait: bool) -> None:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
        if wait:
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        _STOPPING.append(pid)

    try:
        for command in commands:
            where = f"README.md:{example.line + command.line - 1}"
            if server_command(command.text):
                twistd = strip_comment(command.text).lstrip().split()[0] != "dbslayer"
                for pid, _, was_twistd in servers:
                    stop(pid, was_twistd, wait=twistd or was_twistd)
                servers = []
                port = free_port()
                named = ports_named(command.text) or [9090]
                for old in {*named, 9090}:
                    ports.update(_port_replacements(old, port))
                text = rewrite(command.text, {**fixed, **ports})
                pid, log = shell.start(f"DBSLAYER_PORT={port} {text}")
                deadline = time.monotonic() + SERVER_START_TIMEOUT
                while _alive(pid) and not _listening(port) and time.monotonic() < deadline:
                    time.sleep(0.05)
                expected = [rewrite(line, {**fixed, **ports}) for line in command.expected]
                if _alive(pid) and _listening(port):
                    servers.append((pid, log, twistd))
                    problem = match_output(expected, log.read_text(errors="replace"))
                    if problem:
                        outcome.fail(where, text, problem, log.read_text(errors="replace"))
                elif _alive(pid):
                    stop(pid, twistd, wait=False)
                    outcome.fail(
                        where,
                        text,
                        f"not listening within {SERVER_START_TIMEOUT:g} s",
                        log.read_text(errors="replace"),
                    )
                else:
                    rc = shell.status(pid)
                    output = log.read_text(errors="replace")
                    problem = match_output(expected, output) if expected else "no output shown"
                    if problem:
                        outcome.fail(where, text, f"exited with {rc} ({problem})", output)
                continue
            text = rewrite(command.text, {**fixed, **ports})
            expected = [rewrite(line, {**fixed, **ports}) for line in command.expected]
            rc, output = shell.run(text)
            if rc is None:
                outcome.fail(where, text, f"still running after {COMMAND_TIMEOUT:g} s", output)
                break
            problem = match_output(expected, output)
            if problem:
                outcome.fail(where, text, problem, output)
            elif rc != 0 and not expected:
                outcome.fail(where, text, f"exit status {rc}", output)
    finally:
        for pid, log, twistd in servers:
            stop(pid, twistd, wait=False)
            problem = _log_problem(log.read_text(errors="replace"))
            if problem:
                outcome.fail(
                    f"README.md:{example.line}", "(a server of the block)", "traceback", problem
                )
        shell.close()


_DRIVER = r"""
import ast, sys
path, first = sys.argv[1], int(sys.argv[2])
tree = ast.parse(open(path, encoding="utf-8").read(), "README.md")
ast.increment_lineno(tree, first - 1)
scope = {"__name__": "__main__"}
for n, node in enumerate(tree.body):
    print(f"\n@@stmt {n}", flush=True)
    exec(compile(ast.Module([node], []), "README.md", "exec"), scope)
    sys.stdout.flush()
"""


def _run_python(
    example: Example, tmp: Path, env: dict[str, str], replacements: dict[str, str], outcome: Outcome
) -> None:
    code = rewrite(example.code, replacements)
    (tmp / "example.py").write_text(code)
    (tmp / "driver.py").write_text(_DRIVER)
    work = _workdir(tmp)
    try:
        done = subprocess.run(
            [
                str(BIN / "python"),
                str(tmp / "driver.py"),
                str(tmp / "example.py"),
                str(example.line),
            ],
            cwd=work,
            env=env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        outcome.fail(f"README.md:{example.line}", "(the block)", "timed out", "")
        return
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    parts = re.split(r"\n@@stmt (\d+)\n", "\n" + stdout)
    outputs = {int(parts[k]): parts[k + 1] for k in range(1, len(parts) - 1, 2)}
    for n, statement in enumerate(python_statements(code)):
        where = f"README.md:{example.line + statement.first - 1}"
        lines = "\n".join(code.splitlines()[statement.first - 1 : statement.last])
        if n not in outputs:
            outcome.fail(where, lines, f"not run (exit status {done.returncode})", stderr)
            break
        problem = match_output(statement.expected, outputs[n])
        if problem:
            outcome.fail(where, lines, problem, outputs[n] + stderr)
    else:
        if done.returncode != 0:
            outcome.fail(
                f"README.md:{example.line}", "(the block)", f"exit status {done.returncode}", stderr
            )


def test_readme_parses() -> None:
    assert not PARSE_ERROR, PARSE_ERROR
    assert EXAMPLES, "README.md shows no example"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_readme_example(example: Example, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if example.skip:
        pytest.skip(f"README.md:{example.line}: {example.skip}")
    extra: dict[str, str] = {}
    fixed: dict[str, str] = {}
    redis: Redis | None = None
    if "redis" in example.needs or "auth" in example.needs:
        redis = request.getfixturevalue("redis")
        fixed["127.0.0.1:6379"] = f"127.0.0.1:{redis.port}"
        extra["DBSLAYER_REDIS_URL"] = redis.url
    if "mariadb" in example.needs:
        found: Shop = request.getfixturevalue("shop")
        etc = tmp_path / "etc-dbslayer"
        fixed.update(found.prepare(etc))
        extra["DB_PW"] = extra["DB1_PW"] = extra["PW"] = found.password
        shims = tmp_path / "shims"
        shims.mkdir(exist_ok=True)
        client = shims / "mariadb"
        client.write_text(
            f'#!/bin/sh\nexec {shutil.which("mariadb") or "mariadb"} --no-defaults -uroot -S {found.server.socket} "$@"\n'
        )
        client.chmod(0o755)
        sudo = shims / "sudo"
        sudo.write_text('#!/bin/sh\nexec "$@"\n')
        sudo.chmod(0o755)
    if example.lang == "python":
        commands: list[Any] = []
    elif example.lang == "console":
        commands = console_commands(example.code)
    else:
        commands = shell_commands(example.code)
    own_servers = any(server_command(c.text) for c in commands)
    gateway: Gateway | None = None
    fresh = False
    if not own_servers:
        if "auth" in example.needs:
            assert redis is not None
            gateway = _demo(tmp_path / "gateway", "--auth", "--redis", redis.url)
            extra["TOKEN"] = add_user(redis, "alice", "write")
            extra["ADMIN_TOKEN"] = add_user(redis, "admin", "admin")
            fresh = True
        elif "mariadb" in example.needs:  # a gateway in front of it, as backend db1
            dsn = f"mysql://app@127.0.0.1:{found.server.port}/shop?name=db1&password_file={etc}/db1.pw"
            gateway = _demo(tmp_path / "gateway", "--backend", dsn)
            fresh = True
        elif _CHANGES.search(example.code) or example.needs:
            gateway = request.getfixturevalue("spare").take()
            fresh = True
        else:
            gateway = request.getfixturevalue("shared_demo")
    log_start = len(gateway.output()) if gateway else 0
    env = _environment(tmp_path, extra)
    outcome = Outcome()
    try:
        if example.lang == "python":
            ports = _port_replacements(9090, gateway.port) if gateway else {}
            _run_python(example, tmp_path, env, {**fixed, **ports}, outcome)
        else:
            _run_shell(
                example, commands, tmp_path, env, fixed, gateway.port if gateway else None, outcome
            )
    finally:
        if gateway is not None:
            problem = _log_problem(gateway.output()[log_start:])
            if problem:
                outcome.fail(
                    f"README.md:{example.line}", "(the gateway)", "traceback in its log", problem
                )
            if fresh:
                _stop_later(gateway)
    assert not outcome.failures, f"{example.id} (README.md:{example.line}):\n" + "\n\n".join(
        outcome.failures
    )
