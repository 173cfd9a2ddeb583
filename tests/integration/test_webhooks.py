"""Event webhooks end to end: a real gateway in front of a real MariaDB posts its events to a
real HTTP receiver on a loopback port, signed; a receiver that is down or never answers does
not slow requests, its deliveries are retried, then dropped and counted; ``dbslayer webhook
test`` sends a signed test event; the URL's query string (a token) is never shown."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, Gateway, MariaDB, free_port

SECRET = "webhook-test-secret"
TOKEN = "tok3nInQuery"  # (in every webhook URL's query string: must never be shown)


class Receiver:
    """A real HTTP server on a free loopback port that records every POST (headers, body)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner.lock:
                    owner.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook?token={TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The payloads received (of event ``name``), each checked: valid signature, headers
        matching the payload."""
        with self.lock:
            posts = list(self.posts)
        found = []
        for headers, body in posts:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-dbslayer-signature"], expected)
            payload = json.loads(body)
            assert headers["x-dbslayer-event"] == payload["event"]
            assert headers["x-dbslayer-delivery"] == payload["id"]
            assert headers["content-type"] == "application/json"
            assert headers["user-agent"].startswith("dbslayer/")
            if name is None or payload["event"] == name:
                found.append(payload)
        return found

    def wait_for(self, name: str, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {name} event within {timeout} s; got {self.events()}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """Accepts connections and never answers (a hung receiver)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hung?token={TOKEN}"
        self.held: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def own_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB of this module's own (the tests stop and restart it)."""
    reason = MariaDB.available()
    if reason:
        pytest.skip(reason)
    server = MariaDB(tmp_path_factory.mktemp("webhook-db")).start()
    server.sql("CREATE DATABASE test")
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("secret") / "webhook.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return str(path)


def hooks(*urls: str, secret_file: str, **extra: str) -> list[str]:
    args = []
    for url in urls:
        args += ["--webhook", url]
    args += ["--webhook-secret-file", secret_file]
    for key, value in extra.items():
        args += ["--" + key.replace("_", "-"), value]
    return args


def assert_no_token(gw: Gateway) -> None:
    """Neither /stats, /metrics nor the gateway's log shows a webhook URL's query string."""
    assert TOKEN not in gw.get("/stats").body.decode()
    assert TOKEN not in gw.get("/metrics").body.decode()
    assert TOKEN not in gw.output()


def test_backend_down_and_up_are_posted_signed(
    own_mariadb: MariaDB, receiver: Receiver, secret_file: str, gateway_factory: Any
) -> None:
    """Stopping the backend posts backend.down, once per delivery id, signed; restarting it
    posts backend.up; /stats counts the deliveries under the URL without its query string."""
    gw: Gateway = gateway_factory(
        "--backend",
        own_mariadb.dsn(),
        "--health-interval",
        "0.3",
        "--health-fall",
        "1",
        "--health-rise",
        "1",
        "--health-max-backoff",
        "0.5",
        "--connect-timeout",
        "1",
        *hooks(
            receiver.url,
            secret_file=secret_file,
            error_rate_threshold="0.5",
            error_rate_window="2",
            error_rate_min_requests="5",
        ),
    )
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    own_mariadb.stop()
    try:
        down = receiver.wait_for("backend.down")
        assert {gw.db({"SQL": "SELECT 1"}).status for _ in range(10)} == {503}
        over = receiver.wait_for("errors.rate")
    finally:
        own_mariadb.start()
    up = receiver.wait_for("backend.up")
    deadline = time.monotonic() + 10
    while len(receiver.events("errors.rate")) < 2 and time.monotonic() < deadline:
        assert gw.db({"SQL": "SELECT 1"}).status == 200
        time.sleep(0.02)
    under = receiver.wait_for("errors.rate", 2)[1]
    assert over[0]["data"]["state"] == "over" and over[0]["data"]["rate"] >= 0.5
    assert under["data"]["state"] == "under" and under["data"]["rate"] < 0.25
    assert len(receiver.events("errors.rate")) == 2  # (once each way: no flapping)
    assert down[0]["data"]["backend"] == "db1" and down[0]["data"]["previous"] == "up"
    assert up[0]["data"] == {"backend": "db1", "previous": "down"}
    for payload in (down[0], up[0]):
        assert payload["instance"].endswith(f":{gw.port}") and payload["worker"] is None
        assert payload["at"].endswith("Z")
    ids = [p["id"] for p in receiver.events()]
    assert len(ids) == len(set(ids))  # each delivery once
    order = [p["event"] for p in receiver.events() if p["event"].startswith("backend.")]
    assert order[:2] == ["backend.down", "backend.up"]
    stats = gw.get("/stats").json()
    shown = f"http://127.0.0.1:{receiver.port}/hook"
    delivered = len(receiver.events())
    assert stats["webhooks"][shown]["delivered"] == delivered
    assert stats["webhooks"][shown]["dropped"] == {"queue_full": 0, "gave_up": 0, "refused": 0}
    assert sum(stats["events"].values()) == delivered
    metrics = gw.get("/metrics").body.decode()
    assert f'dbslayer_webhook_delivered_total{{url="{shown}"}} {delivered}.0' in metrics
    assert_no_token(gw)


def test_slow_statement_is_posted_redacted(
    own_mariadb: MariaDB, receiver: Receiver, secret_file: str, gateway_factory: Any
) -> None:
    """A statement slower than slow_statement_ms posts statement.slow (SQL redacted, backend,
    ms); a fast one posts nothing; webhook_events filters the rest."""
    gw: Gateway = gateway_factory(
        "--backend",
        own_mariadb.dsn(),
        *hooks(
            receiver.url,
            secret_file=secret_file,
            slow_statement_ms="100",
            webhook_events="statement.slow",
        ),
    )
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    assert gw.db({"SQL": "SELECT SLEEP(0.3)"}).status == 200
    slow_secret = "SELECT SLEEP(0.3), 'x' AS password, 'hunter2' AS pw FROM DUAL WHERE 1"
    assert gw.db({"SQL": "SET @password = 'hunter2'; " + slow_secret}).status == 200
    slow = receiver.wait_for("statement.slow", 2)
    first = slow[0]["data"]
    assert first["sql"] == "SELECT SLEEP(0.3)" and first["backend"] == "db1"
    assert 250 <= first["ms"] < 5000 and first["threshold_ms"] == 100
    assert "hunter2" not in json.dumps(slow[1])
    time.sleep(0.3)
    assert len(receiver.events()) == 2  # (SELECT 1 was fast)
    assert_no_token(gw)


def test_with_workers_backend_events_come_once(
    receiver: Receiver, secret_file: str, gateway_factory: Any
) -> None:
    """With --workers 2 each worker checks the backend, but only slot 0 posts backend.down:
    one delivery; /stats (merged over the workers) counts it once."""
    gw: Gateway = gateway_factory(
        "--backend",
        f"mysql://root@127.0.0.1:{free_port()}/test?name=gone",
        "--workers",
        "2",
        "--connect-timeout",
        "0.5",
        "--health-interval",
        "0.3",
        "--health-fall",
        "1",
        *hooks(receiver.url, secret_file=secret_file),
    )
    (down,) = receiver.wait_for("backend.down")
    assert down["worker"] == 0 and down["data"]["backend"] == "gone"
    assert down["data"]["previous"] == "unknown"
    time.sleep(1.0)  # (time for a second worker's event, were it sent)
    assert len(receiver.events("backend.down")) == 1
    stats = gw.get("/stats").json()
    assert stats["webhooks"][f"http://127.0.0.1:{receiver.port}/hook"]["delivered"] == 1
    assert_no_token(gw)


def median_latency(gw: Gateway, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.monotonic()
        assert gw.db({"SQL": "SELECT SLEEP(0.002)"}).status == 200
        times.append(time.monotonic() - started)
    return statistics.median(times)


def test_receivers_down_or_hung_do_not_slow_requests(
    own_mariadb: MariaDB, secret_file: str, gateway_factory: Any
) -> None:
    """One receiver's port is closed, another accepts and never answers: every request
    (each a slow statement, so each an event) is as fast as without webhooks; deliveries are
    retried, then dropped (gave_up, queue_full), counted in /stats; no token shown."""
    silent = Silent()
    closed_port = free_port()
    closed = f"http://127.0.0.1:{closed_port}/down?token={TOKEN}"
    try:
        plain: Gateway = gateway_factory("--backend", own_mariadb.dsn())
        hooked: Gateway = gateway_factory(
            "--backend",
            own_mariadb.dsn(),
            *hooks(
                closed,
                silent.url,
                secret_file=secret_file,
                slow_statement_ms="1",
                webhook_queue="5",
                webhook_attempts="2",
                webhook_timeout="0.6",
                webhook_backoff="0.05",
                webhook_max_backoff="0.1",
            ),
        )
        median_latency(plain, 20)  # (warm both up)
        median_latency(hooked, 20)
        without = median_latency(plain, 200)
        with_hooks = median_latency(hooked, 200)
        assert with_hooks < without * 2 + 0.005, (without, with_hooks)
        deadline = time.monotonic() + 10
        while True:
            webhooks = hooked.get("/stats").json()["webhooks"]
            down = webhooks[f"http://127.0.0.1:{closed_port}/down"]
            hung = webhooks[f"http://127.0.0.1:{silent.port}/hung"]
            if down["dropped"]["gave_up"] >= 2 and hung["dropped"]["gave_up"] >= 1:
                break
            assert time.monotonic() < deadline, webhooks
            time.sleep(0.2)
        for url in (down, hung):
            assert url["delivered"] == 0 and url["queued"] <= 6
            # (one attempt may be in flight)
            assert url["retried"] >= 1 and url["attempts"] - 1 <= url["failed_attempts"]
            assert url["dropped"]["queue_full"] > 100  # (240 events, 5 queued at most)
        assert down["last_error"] == "connection refused"
        assert hung["last_error"] == "no answer within 0.6 s"
        assert_no_token(hooked)
    finally:
        silent.close()


def test_webhook_test_command(receiver: Receiver, secret_file: str, tmp_path: Path) -> None:
    """dbslayer webhook test URL sends one signed test event: exit 0 and the delivery id on
    a 2xx; 1 when nobody answers; 2 for a URL that is not http(s) or no secret."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = dict(os.environ, XDG_DATA_HOME=str(tmp_path), **env)
        environ.pop("DBSLAYER_CONFIG", None)
        return subprocess.run(
            [sys.executable, "-m", "api.cli", "webhook", "test", *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env=environ,
        )

    sent = run(receiver.url, "--secret-file", secret_file)
    assert sent.returncode == 0, sent.stderr
    (payload,) = receiver.events("test")
    assert f"delivery {payload['id']}: HTTP 200" in sent.stdout
    assert TOKEN not in sent.stdout + sent.stderr
    via_env = run(receiver.url, "--secret-env", "HOOK_SECRET", HOOK_SECRET=SECRET)
    assert via_env.returncode == 0 and len(receiver.events("test")) == 2
    settings_secret = run(receiver.url, DBSLAYER_WEBHOOK_SECRET_FILE=secret_file)
    assert settings_secret.returncode == 0 and len(receiver.events("test")) == 3
    nobody = run(f"http://127.0.0.1:{free_port()}/x", "--secret-file", secret_file)
    assert nobody.returncode == 1 and "connection refused" in nobody.stdout
    receiver.status = 404
    refused = run(receiver.url, "--secret-file", secret_file)
    assert refused.returncode == 1 and "HTTP 404" in refused.stdout
    assert run("ftp://h/x", "--secret-file", secret_file).returncode == 2
    assert run(receiver.url).returncode == 2
    assert run(receiver.url, "--secret-file", secret_file, "--secret", "x").returncode == 2
