"""Real servers for the tests: MariaDB, Redis and the gateway itself, each started in a temporary
directory on a free loopback port and stopped afterwards. No fakes: these are the real binaries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not become ready within {timeout} s\n{tail}")


class _ServerProcess:
    """A server started as a child process: stopped politely, or killed with -9."""

    proc: subprocess.Popen[bytes] | None = None
    stop_timeout = 30.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """kill -9: the server dies without closing anything."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class MariaDB(_ServerProcess):
    """A throwaway mariadbd: ``--no-defaults``, own datadir, loopback port, root without password."""

    def __init__(
        self, directory: Path, port: int | None = None, extra: list[str] | None = None
    ) -> None:
        self.extra = list(extra or [])
        self.dir = directory
        self.port = port or free_port()
        self.socket = str(directory / "sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "error.log"

    @staticmethod
    def available() -> str | None:
        """None when the binaries exist, else the reason they do not."""
        for binary in ("mariadbd", "mariadb-install-db", "mariadb"):
            if not _which(binary):
                return f"{binary} not found (apt-get install mariadb-server mariadb-client)"
        return None

    def start(self) -> MariaDB:
        data = self.dir / "data"
        if not data.exists():
            subprocess.run(
                [
                    _which("mariadb-install-db"),
                    "--no-defaults",
                    "--user=root",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        self.proc = subprocess.Popen(
            [
                _which("mariadbd"),
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.dir / 'pid'}",
                f"--log-error={self.log}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--max-connections=500",
                "--character-set-server=utf8mb4",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._ready, 60, "mariadbd", self.log)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited: {self.log.read_text(errors='replace')[-3000:]}")
        return (
            subprocess.run(
                [_which("mariadb"), "--no-defaults", "-uroot", "-S", self.socket, "-e", "select 1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ).returncode
            == 0
        )

    def sql(self, statements: str, database: str = "") -> str:
        """Run SQL with the command-line client (as root over the socket); return its output."""
        args = client_command(self.socket, database)
        out = subprocess.run(args, input=statements.encode(), check=True, capture_output=True)
        return out.stdout.decode()

    def dsn(
        self, database: str = "test", name: str = "db1", user: str = "root", password: str = ""
    ) -> str:
        cred = f"{user}:{password}@" if password else f"{user}@"
        return f"mysql://{cred}127.0.0.1:{self.port}/{database}?name={name}"


class Redis(_ServerProcess):
    """A throwaway redis-server: loopback port, no persistence, in its own directory."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"
        self.stop_timeout = 10.0
        self.url = f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> str | None:
        """None when redis-server exists, else the reason it does not."""
        if not _which_or_none("redis-server"):
            return "redis-server not found (apt-get install redis-server)"
        return None

    def start(self) -> Redis:
        self.proc = subprocess.Popen(
            [
                _which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._ready, 20, "redis-server", self.log)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"redis-server exited: {self.log.read_text(errors='replace')[-2000:]}"
            )
        return self.command("PING") == "PONG"

    def command(self, *args: str) -> str:
        """Run one command with redis-cli; return its raw output (stripped)."""
        try:
            out = subprocess.run(
                [_which("redis-cli"), "-p", str(self.port), "--raw", *args],
                capture_output=True,
                timeout=10,
            )
        except subprocess.TimeoutExpired:
            return ""
        return out.stdout.decode(errors="replace").strip()


class Gateway:
    """``dbslayer serve`` as a user runs it, in a subprocess on a free port."""

    def __init__(
        self,
        directory: Path,
        *args: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        host: str = "127.0.0.1",
        workers: int | None = 1,
    ) -> None:
        self.dir = directory
        self.port = free_port()
        self.args = list(args)
        #: The command that starts the server; ``{port}`` in it is replaced by the port.
        self.command = command or [sys.executable, "-m", "api.cli", "serve", "--port", "{port}"]
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("XDG_DATA_HOME", str(directory / "xdg"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / f"gateway-{self.port}.log"
        self.host = host
        #: Added as --workers N unless None (None: the gateway's default, one per core).
        self.workers = workers
        self.url = f"http://{host}:{self.port}"
        self.cwd = ROOT

    def start(self) -> Gateway:
        with open(self.log, "wb") as out:
            command = [part.replace("{port}", str(self.port)) for part in self.command]
            extra = []
            if self.workers is not None and "--workers" not in self.args:
                extra = ["--workers", str(self.workers)]
            self.proc = subprocess.Popen(
                [*command, *self.args, *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
            )
        _wait(self._ready, 30, "dbslayer serve", self.log)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.output()}")
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 30) -> Reply:
        return self.request("GET", path, None, headers, timeout)

    def post(
        self, path: str, body: bytes, content_type: str = "application/json", timeout: float = 30
    ) -> Reply:
        return self.request("POST", path, body, {"Content-Type": content_type}, timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, dict(e.headers), e.read())

    def db(self, obj: Any, **kwargs: Any) -> Reply:
        """GET /db with the request object as the URL-encoded JSON query string."""
        from urllib.parse import quote

        return self.get("/db?" + quote(json.dumps(obj)), **kwargs)


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:500]!r})"


def client_command(unix_socket: str | Path, database: str = "") -> list[str]:
    """The command-line client as root over a server's socket, batch output without headers."""
    args = [
        _which("mariadb"),
        "--no-defaults",
        "--default-character-set=utf8mb4",
        "-uroot",
        "-S",
        str(unix_socket),
        "-N",
        "-B",
    ]
    if database:
        args.append(database)
    return args


def _which_or_none(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _which(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    return path or binary


def users(redis: Redis, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``dbslayer users ARGS --redis URL`` as an operator would."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dbslayer"), "users", *args, "--redis", redis.url],
        capture_output=True,
        text=True,
        timeout=30,
    )


def add_user(redis: Redis, name: str, role: str, *extra: str) -> str:
    """``dbslayer users add``: the new user's token (printed on the last line)."""
    result = users(redis, "add", name, "--role", role, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_request(
    port: int,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float = 30,
) -> Reply:
    """One request with exactly the headers given (a ``Host`` given replaces http.client's),
    on a connection of its own, as a browser or a proxy would send it. With a
    ``Transfer-Encoding`` header the body (bytes or an iterable of bytes) is sent chunked."""
    import http.client

    headers = headers or {}
    chunked = any(name.lower() == "transfer-encoding" for name in headers)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers, encode_chunked=chunked)
        resp = conn.getresponse()
        return Reply(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


def replicate(primary: MariaDB, replica: MariaDB, timeout: float = 20.0) -> None:
    """Make ``replica`` replicate ``primary`` by GTID (both started with ``--server-id`` and
    ``--log-bin``), from the start of the primary's binary log, as PITFALLS.md describes;
    returns once the replica's threads run."""
    primary.sql(
        "CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'replpw';"
        "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';"
    )
    replica.sql(
        f"SET GLOBAL gtid_slave_pos=''; CHANGE MASTER TO MASTER_HOST='127.0.0.1', "
        f"MASTER_PORT={primary.port}, MASTER_USER='repl', MASTER_PASSWORD='replpw', "
        f"MASTER_USE_GTID=slave_pos; START SLAVE;"
    )
    deadline = time.monotonic() + timeout
    while "ON" not in replica.sql("SHOW GLOBAL STATUS LIKE 'Slave_running'"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"replication did not start: {replica.sql('SHOW SLAVE STATUS')}")
        time.sleep(0.1)
