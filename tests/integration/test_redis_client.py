"""gateway.redis: URL parsing (plain asserts) and the client against a real redis-server, each
Twisted scenario run on a real reactor in a subprocess that reports JSON and must exit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.redis import RedisAddress, parse_redis_url
from tests.servers import ROOT, Redis, _which, free_port

# Runs ``scenario(reactor, *argv)`` (an async function defined by each test), then checks the
# reactor is clean (no timer pending, no connection open) and prints the result as JSON.
HARNESS = """
import json, sys, time
from twisted.internet import task
from gateway.redis import RedisClient, RedisService, RedisUnavailable

def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)

class Skewed:
    # The real reactor's time (timeouts run on it) plus ``skew``: skip() moves the client's
    # clock on, so the circuit breaker's wait passes without waiting.
    def __init__(self, reactor):
        self.reactor = reactor
        self.skew = 0.0

    def seconds(self):
        return self.reactor.seconds() + self.skew

    def callLater(self, *args, **kwargs):
        return self.reactor.callLater(*args, **kwargs)

    def skip(self, seconds):
        self.skew += seconds

async def until(reactor, predicate, bound=5.0):
    # Poll (every 10 ms) until predicate() is true; fails past ``bound`` seconds.
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound} s")
        await sleep(reactor, 0.01)

async def attempt(d):
    started = time.monotonic()
    try:
        value = await d
    except RedisUnavailable as e:
        return {"error": str(e), "seconds": time.monotonic() - started}
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return {"value": value, "seconds": time.monotonic() - started}

%s

async def harness(reactor):
    result = await scenario(reactor, *sys.argv[1:])
    await sleep(reactor, 0)
    result["pending_timers"] = [repr(c) for c in reactor.getDelayedCalls() if c.active()]
    result["open_connections"] = [
        repr(r) for r in reactor.getReaders() + reactor.getWriters()
        if type(r).__name__ == "Client"
    ]
    print(json.dumps(result))

task.react(harness)
"""


def run_scenario(body: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run a scenario in a fresh interpreter; its JSON result, asserted clean."""
    script = HARNESS % textwrap.dedent(body)
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(out.stdout.decode().splitlines()[-1])
    assert result.pop("pending_timers") == [], "timers left on the reactor"
    assert result.pop("open_connections") == [], "connections left open"
    return result


# ------------------------------------------------------------------ URLs


def test_parse_redis_url_defaults() -> None:
    """A bare redis:// URL means port 6379, database 0, no credentials."""
    assert parse_redis_url("redis://localhost") == RedisAddress(host="localhost")
    assert parse_redis_url("redis://10.0.0.5:6380/3").db == 3


def test_parse_redis_url_credentials_and_database() -> None:
    """User, (percent-decoded) password, port and database come from the URL."""
    address = parse_redis_url("redis://app:s%40cret@redis.example:7000/2")
    assert (address.host, address.port, address.db) == ("redis.example", 7000, 2)
    assert (address.username, address.password) == ("app", "s@cret")
    assert "s@cret" not in repr(address)
    assert parse_redis_url("redis://:pw@h?db=4").db == 4


def test_parse_redis_url_unix_socket() -> None:
    """unix:///path names a socket; the database comes from ?db=."""
    address = parse_redis_url("unix://:pw@/run/redis/redis.sock?db=1")
    assert (address.path, address.db, address.password) == ("/run/redis/redis.sock", 1, "pw")
    assert address.where == "unix:/run/redis/redis.sock"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://u:hunter2@host", "use redis://"),
        ("redis://u:hunter2@host:99999", "port"),
        ("redis://u:hunter2@host/x", "database must be a number"),
        ("redis://u:hunter2@host/1?db=2", "twice"),
        ("redis://u:hunter2@host?timeout=3", "unknown parameter"),
        ("redis://u:hunter2@", "no host"),
        ("unix://u:hunter2@", "socket's path"),
    ],
)
def test_bad_redis_url_names_the_problem_without_the_password(url: str, why: str) -> None:
    """A bad URL is a ValueError that names it, password masked, and says what is wrong."""
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    message = str(caught.value)
    assert why in message
    assert "hunter2" not in message
    assert "u:***@" in message


# ------------------------------------------------------------------ the client, for real


def test_commands_round_trip_bytes(redis: Redis) -> None:
    """Values come back as the bytes stored (numbers too); SET ex takes fractions; NX works."""
    result = run_scenario(
        """
        async def scenario(reactor, url):
            service = RedisService(RedisClient(url, reactor, timeout=1.0))
            service.startService()
            client = service.client
            out = {"ping": await client.ping()}
            out["set"] = await client.set("k:bin", b"\\x00\\xff")
            out["bin"] = list(await client.get("k:bin"))
            await client.set("k:num", "123")
            out["num"] = repr(await client.get("k:num"))
            out["missing"] = await client.get("k:missing")
            out["ttl_set"] = await client.set("k:ttl", "v", ex=30.5)
            out["nx_taken"] = await client.set("k:num", "x", nx=True)
            out["nx_free"] = await client.set("k:new", "x", nx=True)
            out["deleted"] = await client.delete("k:new", "k:missing")
            out["no_hash"] = await client.hgetall("k:missing")
            out["available"] = client.available
            await service.stopService()
            return out
        """,
        redis.url,
    )
    assert result == {
        "ping": True,
        "set": True,
        "bin": [0, 255],
        "num": "b'123'",
        "missing": None,
        "ttl_set": True,
        "nx_taken": False,
        "nx_free": True,
        "deleted": 1,
        "no_hash": {},
        "available": True,
    }
    assert 29_000 < int(redis.command("PTTL", "k:ttl")) <= 30_500
    assert redis.command("GET", "k:num") == "123"


def test_hset_many_is_one_transaction_with_its_ttl(redis: Redis, tmp_path: Path) -> None:
    """hset_many sends HSET and PEXPIRE inside one MULTI/EXEC; hgetall gives bytes values."""
    monitor_log = tmp_path / "monitor.log"
    with open(monitor_log, "wb") as log:
        monitor = subprocess.Popen(
            [_which("redis-cli"), "-p", str(redis.port), "monitor"], stdout=log
        )
    try:
        deadline = time.monotonic() + 10
        while b"OK" not in monitor_log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        result = run_scenario(
            """
            async def scenario(reactor, url):
                client = RedisClient(url, reactor)
                client.start()
                await client.hset_many("h:1", {"answer": b"\\x01\\x02", "created": 17, "s": "é"},
                                       ttl=60.25)
                await client.hset_many("h:2", {"a": "b"})
                fields = await client.hgetall("h:1")
                await client.stop()
                return {name: list(value) for name, value in fields.items()}
            """,
            redis.url,
        )
        deadline = time.monotonic() + 10  # (the monitor prints the commands as they come)
        while b'"HGETALL"' not in monitor_log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        monitor.terminate()
        monitor.wait()
    assert result == {"answer": [1, 2], "created": list(b"17"), "s": list("é".encode())}
    assert 59_000 < int(redis.command("PTTL", "h:1")) <= 60_250
    assert redis.command("PTTL", "h:2") == "-1"
    commands = [
        line.split('"')[1]
        for line in monitor_log.read_text(errors="replace").splitlines()
        if '"h:1"' in line or '"MULTI"' in line or '"EXEC"' in line
    ]
    assert commands[:4] == ["MULTI", "HSET", "PEXPIRE", "EXEC"]


def test_scan_finds_every_matching_key(redis: Redis) -> None:
    """scan walks the whole key space with SCAN (small COUNT) and returns each match once."""
    pairs = [part for i in range(250) for part in (f"scan:{i}", "v")]
    redis.command("MSET", *pairs, "other:1", "v", "other:2", "v")
    result = run_scenario(
        """
        async def scenario(reactor, url):
            client = RedisClient(url, reactor)
            client.start()
            keys = await client.scan("scan:*", count=10)
            await client.stop()
            return {"keys": keys}
        """,
        redis.url,
    )
    assert result["keys"] == sorted(f"scan:{i}" for i in range(250))


def test_error_reply_fails_the_call_but_not_the_breaker(redis: Redis) -> None:
    """An error reply (WRONGTYPE) is a RedisUnavailable saying so; Redis stays available."""
    result = run_scenario(
        """
        async def scenario(reactor, url):
            errors = []
            client = RedisClient(url, reactor, on_error=errors.append)
            client.start()
            await client.set("s", "text")
            failed = await attempt(client.hset_many("s", {"a": 1}))
            after = await attempt(client.get("s"))
            await client.stop()
            return {"failed": failed["error"], "after": after["value"], "errors": errors,
                    "available": client.available}
        """,
        redis.url,
    )
    assert "MULTI/EXEC failed: error reply: WRONGTYPE" in result["failed"]
    assert result["after"] == "text"
    assert result["available"] is True
    assert len(result["errors"]) == 1


def test_refused_connection_fails_at_once_then_fast_until_retry() -> None:
    """Nothing listening: the first call fails fast saying so, then the breaker answers at once
    (no network, no on_error) until retry_after, when one call tries again."""
    result = run_scenario(
        """
        async def scenario(reactor, port):
            errors = []
            clock = Skewed(reactor)
            client = RedisClient(f"redis://127.0.0.1:{port}", clock, timeout=1.0,
                                 on_error=errors.append, reactor=reactor)
            client.start()
            first = await attempt(client.get("k"))
            fast = [await attempt(client.get("k")) for _ in range(50)]
            available = client.available
            errors_while_open = len(errors)
            clock.skip(client.retry_after + 0.05)
            retried = await attempt(client.ping())
            await client.stop()
            return {"first": first, "fast": fast, "available": available, "errors": errors,
                    "errors_while_open": errors_while_open, "retried": retried}
        """,
        str(free_port()),
    )
    assert "GET failed: connection refused" in result["first"]["error"]
    assert result["first"]["seconds"] < 1.0
    assert all("is unavailable: connection refused" in r["error"] for r in result["fast"])
    assert max(r["seconds"] for r in result["fast"]) < 0.02
    assert result["available"] is False
    assert result["errors_while_open"] == 1
    assert "PING failed: connection refused" in result["retried"]["error"]
    assert result["errors"] == ["connection refused", "connection refused"]


def test_silent_server_times_out_and_stop_leaves_nothing_behind() -> None:
    """A server that accepts but never answers: the call fails after `timeout`; stop() fails
    the call still waiting; no timer or connection is left (checked by the harness)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        result = run_scenario(
            """
            async def scenario(reactor, port):
                clock = Skewed(reactor)
                client = RedisClient(f"redis://127.0.0.1:{port}", clock, timeout=0.3,
                                     reactor=reactor)
                client.start()
                timed_out = await attempt(client.get("k"))  # (in real time, on the reactor)
                fast = await attempt(client.get("k"))
                clock.skip(client.retry_after + 0.05)
                waiting = client.get("k")
                await client.stop()
                stopped = await attempt(waiting)
                after_stop = await attempt(client.get("k"))
                return {"timed_out": timed_out, "fast": fast, "stopped": stopped,
                        "after_stop": after_stop}
            """,
            str(silent.getsockname()[1]),
        )
    assert "GET failed: no reply within 0.3 s" in result["timed_out"]["error"]
    assert 0.25 < result["timed_out"]["seconds"] < 0.8
    assert "unavailable: no reply within 0.3 s" in result["fast"]["error"]
    assert result["fast"]["seconds"] < 0.02
    assert "cancelled: the client stopped" in result["stopped"]["error"]
    assert "not running" in result["after_stop"]["error"]


def test_caller_cancel_is_not_a_redis_failure() -> None:
    """Cancelling a call (the HTTP client left) fails it with CancelledError, breaker closed."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        result = run_scenario(
            """
            from twisted.internet.defer import CancelledError

            async def scenario(reactor, port):
                errors = []
                client = RedisClient(f"redis://127.0.0.1:{port}", reactor, timeout=5,
                                     on_error=errors.append)
                client.start()
                d = client.get("k")
                await until(reactor, lambda: client._factory.size == 1)  # (the command is sent)
                d.cancel()
                try:
                    await d
                    outcome = "fired"
                except CancelledError:
                    outcome = "cancelled"
                available = client.available
                await client.stop()
                return {"outcome": outcome, "available": available, "errors": errors}
            """,
            str(silent.getsockname()[1]),
        )
    assert result == {"outcome": "cancelled", "available": True, "errors": []}


def test_calls_fail_fast_while_down_and_work_after_restart(redis: Redis, tmp_path: Path) -> None:
    """Redis killed: calls fail (the first within timeout, then at once); Redis restarted on the
    same port: the same client works again within a few seconds."""
    killed, restarted = tmp_path / "killed", tmp_path / "restarted"
    scenario = """
        import os

        async def wait_for(reactor, path):
            while not os.path.exists(path):
                await sleep(reactor, 0.02)

        async def scenario(reactor, url, killed, restarted):
            client = RedisClient(url, reactor, timeout=0.5)
            client.start()
            await client.set("k", "before")
            print("up", flush=True)
            await wait_for(reactor, killed)
            down = []
            started = time.monotonic()
            while time.monotonic() - started < 2:
                down.append(await attempt(client.get("k")))
                await sleep(reactor, 0.01)
            print("down", flush=True)
            await wait_for(reactor, restarted)
            started = time.monotonic()
            back = None
            while time.monotonic() - started < 10:
                result = await attempt(client.set("k", "after"))
                if "value" in result:
                    back = time.monotonic() - started
                    break
                await sleep(reactor, 0.05)
            value = await attempt(client.get("k"))
            await client.stop()
            return {"down": down, "back": back, "value": value, "available": client.available}
    """
    script = HARNESS % textwrap.dedent(scenario)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, redis.url, str(killed), str(restarted)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"up"
        redis.kill()
        killed.touch()
        assert proc.stdout.readline().strip() == b"down"
        redis.start()
        restarted.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    result = json.loads(out.decode().splitlines()[-1])
    assert result["pending_timers"] == [] and result["open_connections"] == []
    down = result["down"]
    assert all("error" in r for r in down)
    assert max(r["seconds"] for r in down) < 0.7  # never more than the timeout
    fast = [r for r in down if "is unavailable" in r["error"]]
    assert len(fast) > len(down) / 2
    assert max(r["seconds"] for r in fast) < 0.02
    assert result["back"] is not None and result["back"] < 5
    assert result["value"]["value"] == "after"
    assert result["available"] is True


def test_client_needs_a_valid_url_and_timeout() -> None:
    """The constructor refuses a bad URL (password masked) or a timeout that is not positive."""
    from twisted.internet.task import Clock

    from gateway.redis import RedisClient

    clock: Any = Clock()
    with pytest.raises(ValueError, match=r"redis://:\*\*\*@h:0"):
        RedisClient("redis://:pw@h:0", clock)
    with pytest.raises(ValueError, match="timeout"):
        RedisClient("redis://h", clock, timeout=0)


def test_password_and_user_name_are_sent(redis: Redis) -> None:
    """With requirepass, the URL's password (with or without a user name) gets in; a wrong one
    fails fast saying AUTH failed; none gets Redis' NOAUTH error reply."""
    redis.command("CONFIG", "SET", "requirepass", "s3cret")
    host = f"127.0.0.1:{redis.port}"
    result = run_scenario(
        """
        async def scenario(reactor, host):
            out = {}
            for label, url in (("password", f"redis://:s3cret@{host}/1"),
                               ("user", f"redis://default:s3cret@{host}"),
                               ("wrong", f"redis://:wrong@{host}"),
                               ("none", f"redis://{host}")):
                client = RedisClient(url, reactor, timeout=1.0)
                client.start()
                out[label] = await attempt(client.set("k", label))
                await client.stop()
            return out
        """,
        host,
    )
    assert result["password"]["value"] is True
    assert result["user"]["value"] is True
    assert "could not auth: WRONGPASS" in result["wrong"]["error"]
    assert result["wrong"]["seconds"] < 1.0
    assert "error reply: NOAUTH" in result["none"]["error"]
    assert "s3cret" not in json.dumps(result)
