"""gateway.users and ``dbslayer users``: the pure parts with plain asserts, the rest through the
command line (and small UserStore scripts) against a real redis-server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from api.users_cli import DEFAULT_REDIS_URL, CommandError, redis_url
from gateway.users import User, UserError, clean_servers, hash_token, new_token, valid_name
from tests.servers import ROOT, Redis, free_port

# ------------------------------------------------------------------ pure parts


def test_hash_token_is_hex_sha256() -> None:
    """The stored form of a token is its hex SHA-256."""
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


def test_new_tokens_are_long_random_and_url_safe() -> None:
    """Tokens are 43 URL-safe characters (32 random bytes) and never repeat."""
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)


def test_valid_name() -> None:
    """Names are 1 to 64 of letters, digits and _ . @ -."""
    assert valid_name("alice")
    assert valid_name("svc.reports@db-1_x")
    assert valid_name("a" * 64)
    for bad in ("", "a" * 65, "has space", "semi;colon", "star*", "colon:x", "é"):
        assert not valid_name(bad), bad


def test_user_may_use_and_token_matches() -> None:
    """No servers means all backends; the token check compares hashes; repr hides the hash."""
    token = new_token()
    user = User("alice", "read", ("db1",), True, 0, hash_token(token))
    assert user.may_use("db1") and not user.may_use("db2")
    assert User("bob", "write", (), True, 0, "").may_use("anything")
    assert user.token_matches(token)
    assert not user.token_matches(token + "x")
    assert hash_token(token) not in repr(user)


def test_clean_servers() -> None:
    """Backend names are stripped, empty ones dropped, duplicates kept once; spaces refused."""
    assert clean_servers([" db1", "db2 ", "", "db1"]) == ("db1", "db2")
    with pytest.raises(UserError, match="bad backend name"):
        clean_servers(["db 1"])


def test_redis_url_precedence(tmp_path: Path) -> None:
    """--redis beats $DBSLAYER_REDIS_URL beats [redis] url of --config/$DBSLAYER_CONFIG."""
    config = tmp_path / "gw.toml"
    config.write_text('[redis]\nurl = "redis://from-file:6379/1"\n')
    env = {"DBSLAYER_CONFIG": str(config)}
    assert redis_url(None, None, {}) == DEFAULT_REDIS_URL
    assert redis_url(None, None, env) == "redis://from-file:6379/1"
    assert redis_url(None, str(config), {}) == "redis://from-file:6379/1"
    env["DBSLAYER_REDIS_URL"] = "redis://from-env"
    assert redis_url(None, str(config), env) == "redis://from-env"
    assert redis_url("redis://from-flag", str(config), env) == "redis://from-flag"
    (tmp_path / "empty.toml").write_text("[server]\nport = 1\n")
    assert redis_url(None, str(tmp_path / "empty.toml"), {}) == DEFAULT_REDIS_URL
    (tmp_path / "bad.toml").write_text("[redis\n")
    with pytest.raises(CommandError, match="not valid TOML"):
        redis_url(None, str(tmp_path / "bad.toml"), {})
    with pytest.raises(CommandError, match="cannot read config file"):
        redis_url(None, str(tmp_path / "missing.toml"), {})


# ------------------------------------------------------------------ the command line


def users(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m api.users_cli ARGS`` (what ``dbslayer users ARGS`` runs)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DBSLAYER_")}
    return subprocess.run(
        [sys.executable, "-m", "api.users_cli", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def add(redis: Redis, name: str, *options: str) -> str:
    """Add a user through the CLI; its token (the last line)."""
    out = users("add", name, *options, "--redis", redis.url)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1]


def hash_fields(redis: Redis, key: str) -> dict[str, str]:
    lines = redis.command("HGETALL", key).splitlines()
    return dict(zip(lines[::2], lines[1::2]))


def test_add_prints_the_token_last_and_stores_only_its_hash(redis: Redis) -> None:
    """add says who was added (role, servers), prints the token alone on the last line, and
    Redis holds its SHA-256 (user hash and token index), never the token."""
    before = int(time.time())
    out = users("add", "alice", "--role", "write", "--servers", "db1, db2", "--redis", redis.url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    token = lines[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert "alice" in lines[0] and "write" in lines[0] and "db1,db2" in lines[0]
    assert out.stdout.count(token) == 1
    assert out.stderr == ""
    fields = hash_fields(redis, "dbslayer:user:alice")
    assert fields["token_sha256"] == hash_token(token)
    assert (fields["role"], fields["servers"], fields["enabled"]) == ("write", "db1,db2", "1")
    assert before <= int(fields["created"]) <= time.time() + 1
    assert redis.command("GET", f"dbslayer:token:{hash_token(token)}") == "alice"
    everything = redis.command("KEYS", "*") + json.dumps(fields)
    assert token not in everything
    assert "servers all" in users("add", "bob", "--role", "read", "--redis", redis.url).stdout


def test_list_disable_enable_remove(redis: Redis) -> None:
    """list shows name, role, servers (or all), enabled and ISO creation time, never tokens or
    hashes; disable/enable flip the flag; remove deletes the user and its token index."""
    alice = add(redis, "alice", "--role", "read")
    add(redis, "bob", "--role", "admin", "--servers", "db2")
    listed = users("list", "--redis", redis.url)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "ROLE", "SERVERS", "ENABLED", "CREATED"]
    assert [row[:4] for row in rows[1:]] == [
        ["alice", "read", "all", "yes"],
        ["bob", "admin", "db2", "yes"],
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[1][4])
    assert alice not in listed.stdout and hash_token(alice) not in listed.stdout

    out = users("disable", "alice", "--redis", redis.url)
    assert (out.returncode, out.stdout.strip()) == (0, "disabled user alice")
    assert hash_fields(redis, "dbslayer:user:alice")["enabled"] == "0"
    assert users("list", "--redis", redis.url).stdout.splitlines()[1].split()[3] == "no"
    assert users("enable", "alice", "--redis", redis.url).returncode == 0
    assert hash_fields(redis, "dbslayer:user:alice")["enabled"] == "1"

    out = users("remove", "alice", "--redis", redis.url)
    assert (out.returncode, out.stdout.strip()) == (0, "removed user alice")
    assert redis.command("EXISTS", "dbslayer:user:alice") == "0"
    assert redis.command("EXISTS", f"dbslayer:token:{hash_token(alice)}") == "0"
    assert [
        line.split()[0] for line in users("list", "--redis", redis.url).stdout.splitlines()
    ] == [
        "NAME",
        "bob",
    ]


def test_list_without_users(redis: Redis) -> None:
    """An empty store lists as 'no users'."""
    out = users("list", "--redis", redis.url)
    assert (out.returncode, out.stdout.strip()) == (0, "no users")


def test_rotate_prints_a_new_token_and_drops_the_old_index(redis: Redis) -> None:
    """rotate prints the new token last; the user's hash and index follow it, the old index
    is gone."""
    old = add(redis, "alice", "--role", "read")
    out = users("rotate", "alice", "--redis", redis.url)
    assert out.returncode == 0, out.stderr
    new = out.stdout.splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", new) and new != old
    assert old not in out.stdout
    assert hash_fields(redis, "dbslayer:user:alice")["token_sha256"] == hash_token(new)
    assert redis.command("EXISTS", f"dbslayer:token:{hash_token(old)}") == "0"
    assert redis.command("GET", f"dbslayer:token:{hash_token(new)}") == "alice"


STORE_HARNESS = """
import json, sys
from twisted.internet import task
from gateway.redis import RedisClient
from gateway.users import UserError, UserStore

%s

async def main(reactor, url, *args):
    client = RedisClient(url, reactor)
    client.start()
    try:
        result = await scenario(UserStore(client), *args)
    finally:
        await client.stop()
    print(json.dumps(result))

task.react(main, sys.argv[1:])
"""


def run_store(body: str, *args: str) -> Any:
    """Run ``scenario(store, *args)`` on a real reactor in a subprocess; its JSON result."""
    out = subprocess.run(
        [sys.executable, "-c", STORE_HARNESS % textwrap.dedent(body), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_by_token_finds_the_user_and_a_rotated_token_does_not(redis: Redis) -> None:
    """by_token finds the user of a current token (disabled ones too, flagged); the token
    rotated away, an unknown one and one whose index points at the wrong user find nobody."""
    old = add(redis, "alice", "--role", "read", "--servers", "db1")
    new = users("rotate", "alice", "--redis", redis.url).stdout.splitlines()[-1]
    bob = add(redis, "bob", "--role", "write")
    users("disable", "bob", "--redis", redis.url)
    # a forged index entry: bob's hash pointing at alice must not let bob's token in as alice
    redis.command("SET", f"dbslayer:token:{hash_token('forged')}", "alice")
    result = run_store(
        """
        def describe(user):
            if user is None:
                return None
            return [user.name, user.role, list(user.servers), user.enabled]

        async def scenario(store, new, old, bob):
            out = {}
            for label, token in (("new", new), ("old", old), ("bob", bob),
                                 ("unknown", "nope"), ("forged", "forged"), ("empty", "")):
                out[label] = describe(await store.by_token(token))
            out["get"] = describe(await store.get("alice"))
            out["get_missing"] = describe(await store.get("carol"))
            out["get_bad_name"] = describe(await store.get("not a name"))
            out["matches"] = (await store.get("alice")).token_matches(new)
            return out
        """,
        redis.url,
        new,
        old,
        bob,
    )
    assert result == {
        "new": ["alice", "read", ["db1"], True],
        "old": None,
        "bob": ["bob", "write", [], False],
        "unknown": None,
        "forged": None,
        "empty": None,
        "get": ["alice", "read", ["db1"], True],
        "get_missing": None,
        "get_bad_name": None,
        "matches": True,
    }


def test_concurrent_adds_of_one_name_create_it_once(redis: Redis) -> None:
    """Two adds of the same name at once: one gets a token, the other 'exists already'."""
    result = run_store(
        """
        from twisted.internet import defer

        async def scenario(store):
            outcomes = await defer.DeferredList(
                [store.add("alice", "read"), store.add("alice", "write")], consumeErrors=True)
            return ["token" if ok else str(value.value) for ok, value in outcomes]
        """,
        redis.url,
    )
    assert sorted(result) == ["token", "user 'alice' exists already"]
    assert len(redis.command("KEYS", "dbslayer:token:*").splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "alice", "--role", "read"), "user 'alice' exists already"),
        (("add", "carol", "--role", "boss"), "unknown role 'boss': use one of read, write, admin"),
        (("add", "no good", "--role", "read"), "bad user name 'no good'"),
        (("disable", "carol"), "no such user 'carol'"),
        (("enable", "carol"), "no such user 'carol'"),
        (("remove", "carol"), "no such user 'carol'"),
        (("rotate", "carol"), "no such user 'carol'"),
        (("list", "--redis", "http://u:hunter2@h"), "bad Redis URL 'http://u:***@h'"),
    ],
)
def test_refusals_exit_1_with_one_line(redis: Redis, args: tuple[str, ...], message: str) -> None:
    """Refusals print one line 'dbslayer users: ...' on stderr, nothing on stdout, and exit 1."""
    add(redis, "alice", "--role", "read")
    out = users(*args, env={"DBSLAYER_REDIS_URL": redis.url})
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"dbslayer users: {message}")
    assert "hunter2" not in out.stderr


@pytest.mark.parametrize(
    "args", [(), ("add", "alice"), ("frobnicate",), ("list", "extra"), ("add", "--role", "read")]
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    """Bad usage (missing or unknown command, --role or NAME missing) exits 2."""
    out = users(*args)
    assert out.returncode == 2
    assert "usage: dbslayer users" in out.stderr


def test_redis_url_from_config_file(redis: Redis, tmp_path: Path) -> None:
    """With no --redis and no $DBSLAYER_REDIS_URL, [redis] url of --config is used."""
    config = tmp_path / "gw.toml"
    config.write_text(f'[redis]\nurl = "{redis.url}"\ntimeout = 1.0\n')
    add(redis, "alice", "--role", "read")
    out = users("list", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert "alice" in out.stdout
    assert "alice" in users("list", env={"DBSLAYER_CONFIG": str(config)}).stdout


def test_redis_down_fails_within_two_seconds(redis: Redis) -> None:
    """Redis killed: list and add fail fast (no hang) with a line naming Redis and the cause."""
    redis.kill()
    for args in (("list",), ("add", "alice", "--role", "read")):
        started = time.monotonic()
        out = users(*args, "--redis", redis.url)
        elapsed = time.monotonic() - started
        assert out.returncode == 1
        assert elapsed < 2.5
        assert out.stderr.count("\n") == 1
        assert out.stderr.startswith(f"dbslayer users: Redis at 127.0.0.1:{redis.port}: ")
        assert "connection refused" in out.stderr


def test_nothing_listening_at_all_is_reported() -> None:
    """The default URL on a port with nothing: a clear one-line error, exit 1."""
    out = users("list", "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 1
    assert "connection refused" in out.stderr
