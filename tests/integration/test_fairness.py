"""Fairness between users, end to end (a real MariaDB, a real redis-server, `dbslayer serve`):

- one user's requests in flight are limited (below the pool size), so another user's request
  still finds a connection; past the limit a request gets 429 at once, and the count of a
  request is given back whatever its end (an error, a refusal, a cache hit, a stream, a client
  that hangs up);
- an answer bigger than ``--cache-max-entry-bytes`` is served but not stored, and the answers
  a gateway keeps in Redis stay within ``--cache-redis-bytes``;
- user look-ups have a Redis connection of their own: cache traffic that saturates the cache's
  connection does not delay them (no 503).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

import gateway.cache as cache_module
from conf.load import load_settings
from conf.settings import BackendSpec, SettingError
from gateway.auth import AuthFailed
from gateway.backends import ConnectionLost
from gateway.cache import (
    ENTRY_OVERHEAD,
    INDEX_KEY,
    SIZES_KEY,
    AnswerCache,
    EntryTooBig,
    MemoryCache,
    RedisCache,
    check_size,
    decode_answer,
    redis_memory_warning,
)
from gateway.executor import Executor
from gateway.fairness import InFlightPerUser, UserLimitExceeded, user_limit
from gateway.request import Request, RequestError
from gateway.results import Answer, ResultSet, SQLError
from gateway.router import BackendStatus, Router
from tests.servers import Gateway, MariaDB, Redis, Reply, add_user, bearer, free_port

#: How long the slow statements of the per-user tests sleep (s): the figures asserted are
#: fractions of it.
SLEEP = 3.0


def header(reply: Reply, name: str) -> str | None:
    for key, value in reply.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def ask(gw: Gateway, token: str, sql: str, timeout: float = 30, **extra: Any) -> Reply:
    return gw.db({"SQL": sql, **extra}, headers=bearer(token), timeout=timeout)


def timed(gw: Gateway, token: str, sql: str, **extra: Any) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = ask(gw, token, sql, **extra)
    return reply, time.monotonic() - started


def in_background(gw: Gateway, token: str, sql: str, n: int) -> tuple[list[Any], list[Any]]:
    """Start ``n`` requests in threads; the list their replies go to, and the threads."""
    replies: list[Any] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            reply: Any = timed(gw, token, sql)
        except Exception as e:  # a client timeout: reported, not raised in a thread
            reply = (e, 0.0)
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return replies, threads


def stats(gw: Gateway, admin: str) -> Any:
    return gw.get("/stats", headers=bearer(admin)).json()


def backend_in_flight(gw: Gateway, admin: str, name: str = "db1") -> int:
    return int(stats(gw, admin)["backends"][name]["in_flight"])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def raw_request(gw: Gateway, token: str, obj: Any) -> socket.socket:
    """A GET /db sent on a socket of its own, left for the caller to read or close."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    path = "/db?" + quote(json.dumps(obj))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


# ------------------------------------------------------------------------------ pure parts


def result_of(d: Deferred[Any]) -> Any:
    """The result a fired Deferred holds (raising its failure)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def failure_of(d: Deferred[Any]) -> Failure:
    """The failure a fired Deferred holds."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    assert isinstance(out[0], Failure), f"expected a failure, got {out[0]!r}"
    return out[0]


@pytest.mark.parametrize(
    ("configured", "pool_max", "limit"), [(0, 8, 7), (0, 4, 3), (0, 2, 1), (0, 1, 1), (5, 8, 5)]
)
def test_the_default_limit_leaves_a_connection(configured: int, pool_max: int, limit: int) -> None:
    """0 means pool_max - 1 (at least 1); any other value is taken as it is."""
    assert user_limit(configured, pool_max) == limit


def test_past_the_limit_a_request_is_refused_without_running() -> None:
    """At the limit the work is not called: 429 with Retry-After 1 at once, naming the user
    and the limit; other users are counted apart; a finished request makes room again."""
    refused: list[str] = []
    limits = InFlightPerUser(2, on_refused=refused.append)
    pending = [Deferred[str](), Deferred[str]()]
    running = [limits.run("ann", lambda d=d: d) for d in pending]  # type: ignore[misc]
    calls: list[int] = []

    def work() -> Deferred[str]:
        calls.append(1)
        return succeed("ran")

    error = failure_of(limits.run("ann", work)).value
    assert isinstance(error, UserLimitExceeded) and not calls and refused == ["ann"]
    assert error.status == 429 and error.retry_after == 1
    assert "ann" in error.message and "2" in error.message
    assert result_of(limits.run("bob", work)) == "ran"
    assert limits.count("ann") == 2 and limits.count("bob") == 0
    pending[0].callback("done")
    assert result_of(running[0]) == "done" and limits.count("ann") == 1
    assert result_of(limits.run("ann", work)) == "ran"


@pytest.mark.parametrize("end", ["result", "failure", "raise", "cancel", "already fired"])
def test_the_count_is_given_back_once_however_the_work_ends(end: str) -> None:
    """A result, a failure, an exception raised by the work itself, a cancellation, a
    Deferred fired already: the count goes back to zero and the user leaves the table."""
    limits = InFlightPerUser(1)
    pending: Deferred[str] = Deferred()

    def work() -> Deferred[str]:
        if end == "raise":
            raise RuntimeError("bug")
        if end == "already fired":
            return succeed("x")
        return pending

    d = limits.run("ann", work)
    if end == "result":
        pending.callback("x")
    elif end == "failure":
        pending.errback(RuntimeError("down"))
    elif end == "cancel":
        d.cancel()
    out: list[Any] = []
    d.addBoth(out.append)
    assert out and limits.count("ann") == 0 and limits.users == 0 and limits.total == 0
    if isinstance(out[0], Failure):
        out[0].trap(RuntimeError, CancelledError)
    assert result_of(limits.run("ann", lambda: succeed("again"))) == "again"
    assert limits.total == 0


def test_a_limit_below_one_is_refused() -> None:
    """A limit of 0 would refuse everything: a ValueError, not a silent outage."""
    with pytest.raises(ValueError):
        InFlightPerUser(0)


class SlowBackend:
    """A backend whose statements end when the test says (a Deferred per request)."""

    def __init__(self) -> None:
        self.name = "a"
        self.spec = BackendSpec(name="a", driver="mysql")
        self.pending: list[Deferred[Answer]] = []

    def execute(self, request: Request, run: Any) -> Deferred[Answer]:
        d: Deferred[Answer] = Deferred()
        self.pending.append(d)
        return d

    def kill(self, run: Any) -> Deferred[None]:
        return succeed(None)

    def abort(self, run: Any) -> bool:
        return False

    def close(self) -> None:
        pass


def user(name: str, role: str = "write") -> Any:
    return SimpleNamespace(name=name, role=role, servers=(), enabled=True)


def executor(limit: int, cache: AnswerCache | None = None) -> tuple[Executor, SlowBackend]:
    backend = SlowBackend()
    run = Executor(
        [backend],  # type: ignore[list-item]
        Router([BackendStatus("a")], "pool"),
        Clock(),
        cache=cache,
        user_limit=InFlightPerUser(limit),
    )
    return run, backend


def rows(value: Any) -> Answer:
    return Answer(results=[ResultSet(header=["v"], types=["LONG"], rows=[[value]])], server="a")


def test_executor_refuses_past_the_limit_before_reading_the_sql() -> None:
    """With 2 of ann's requests running, her third fails with 429 before its SQL is read or
    reaches a backend; bob's runs; when one of ann's ends she may send another."""
    run, backend = executor(2)
    ann = user("ann")
    first = [run.execute(Request(sql="SELECT SLEEP(5)"), ann) for _ in range(2)]
    third = Request(sql="SELECT 1")
    assert failure_of(run.execute(third, ann)).check(UserLimitExceeded)
    assert third.facts is None and len(backend.pending) == 2
    run.execute(Request(sql="SELECT 1"), user("bob"))
    assert len(backend.pending) == 3
    backend.pending[0].callback(rows(0))
    assert result_of(first[0]).results[0].rows == [[0]]
    run.execute(Request(sql="SELECT 2"), ann)
    assert len(backend.pending) == 4
    assert run.user_limit is not None and run.user_limit.count("ann") == 2


def test_executor_gives_the_count_back_on_every_outcome() -> None:
    """A refusal by role (403), a request error (400), a lost connection (502), an SQL error
    and a cache hit all give the count back; requests without SQL and anonymous requests
    (auth off) are not counted."""
    cache = AnswerCache(MemoryCache(Clock()), Clock())
    run, backend = executor(1, cache)
    limits = run.user_limit
    assert limits is not None
    reader, ann = user("reader", "read"), user("ann")
    assert failure_of(run.execute(Request(sql="INSERT INTO t VALUES (1)"), reader)).check(
        AuthFailed
    )
    assert failure_of(run.execute(Request(sql="XA PREPARE 'x'"), ann)).check(RequestError)
    lost = run.execute(Request(sql="SELECT 1"), ann)
    backend.pending[-1].errback(ConnectionLost("lost", errno=2013, not_sent=False))
    assert failure_of(lost).check(ConnectionLost)
    sql_error = run.execute(Request(sql="SELECT x"), ann)
    backend.pending[-1].callback(Answer(error=SQLError(1054, "Unknown column"), server="a"))
    assert result_of(sql_error).error is not None
    miss = run.execute(Request(sql="SELECT 42", cache_s=60), ann)
    backend.pending[-1].callback(rows(42))
    assert result_of(miss).cache == "miss"
    assert result_of(run.execute(Request(sql="SELECT 42", cache_s=60), ann)).cache == "hit"
    assert limits.total == 0
    held = run.execute(Request(sql="SELECT SLEEP(1)"), ann)
    assert result_of(run.execute(Request(help=True), ann)) is not None  # no backend: no count
    assert len(backend.pending) == 4
    run.execute(Request(sql="SELECT 1"), None)  # anonymous: --max-in-flight only
    assert len(backend.pending) == 5 and limits.count("ann") == 1
    backend.pending[3].callback(rows(1))
    assert result_of(held) is not None and limits.total == 0


def big_answer(n: int) -> Answer:
    return Answer(results=[ResultSet(header=["v"], types=["STRING"], rows=[["x" * n]])])


def test_memory_store_refuses_an_entry_over_the_limit() -> None:
    """An encoded answer over max_entry_bytes fails the put with EntryTooBig; one under it is
    stored; the answer cache serves the big one as a miss, counts it too_big, stores nothing."""
    store = MemoryCache(Clock(), max_entry_bytes=2048)
    failure_of(store.put("big", big_answer(3000), 60)).trap(EntryTooBig)
    assert store.entries == 0
    result_of(store.put("small", big_answer(1000), 60))
    assert store.entries == 1
    events: list[str] = []
    cache = AnswerCache(store, Clock(), on_event=events.append)
    for _ in range(2):
        answer, outcome = result_of(cache.fetch("k", 60, lambda: succeed(big_answer(3000))))
        assert outcome == "miss" and answer.results[0].rows == [["x" * 3000]]
    assert events == ["miss", "too_big", "miss", "too_big"] and store.entries == 1


def test_a_result_set_sure_to_be_too_big_is_not_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 rows of 2 columns take at least 4,000 bytes: refused by counting, not encoding."""
    monkeypatch.setattr(cache_module, "encode_answer", lambda *a: pytest.fail("encoded"))
    answer = Answer(
        results=[ResultSet(header=["a", "b"], types=["LONG"] * 2, rows=[[1, 2]] * 1000)]
    )
    with pytest.raises(EntryTooBig):
        check_size(answer, 3999)
    failure_of(MemoryCache(Clock(), max_entry_bytes=3999).put("k", answer, 60)).trap(EntryTooBig)


class RecordingStore:
    """Stands in for RedisClient: records the scripts it is asked to run."""

    def __init__(self, reply: int = 1) -> None:
        self.reply = reply
        self.evals: list[tuple[str, list[str], list[Any]]] = []
        self.hsets: list[str] = []

    def eval(self, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        self.evals.append((script, keys, args))
        return succeed(self.reply)

    def hset_many(self, key: str, mapping: Any, *, ttl: float) -> Deferred[None]:
        self.hsets.append(key)
        return succeed(None)


def test_redis_store_refuses_big_entries_and_puts_within_the_budget() -> None:
    """Over max_entry_bytes nothing is sent to Redis; under it, with a budget, the put is the
    budget script on the entry, the index and the sizes (charge = answer + 3 keys + overhead);
    a script that says the entry alone exceeds the budget is EntryTooBig too."""
    clock = Clock()
    clock.advance(1_700_000_000.5)
    store = RecordingStore()
    redis_cache = RedisCache(store, clock, OSError, max_entry_bytes=2048, max_bytes=100_000)
    failure_of(redis_cache.put("dbslayer:cache:k", big_answer(3000), 60)).trap(EntryTooBig)
    assert store.evals == [] and store.hsets == []
    assert result_of(redis_cache.put("dbslayer:cache:k", big_answer(100), 60)) is None
    ((_, keys, args),) = store.evals
    assert keys == ["dbslayer:cache:k", INDEX_KEY, SIZES_KEY]
    data, created, ttl_ms, now_ms, expiry_ms, charge, budget = args
    stored = decode_answer(data)[0].results[0]
    assert getattr(stored, "rows", None) == [["x" * 100]], stored
    assert (created, ttl_ms, now_ms, expiry_ms) == (
        "1700000000.5",
        60000,
        1700000000500,
        1700000060500,
    )
    assert charge == len(data) + 3 * len("dbslayer:cache:k") + ENTRY_OVERHEAD and budget == 100_000
    store.reply = 0
    failure_of(redis_cache.put("dbslayer:cache:k", big_answer(100), 60)).trap(EntryTooBig)
    unbounded = RedisCache(store, clock, OSError, max_entry_bytes=2048)
    result_of(unbounded.put("dbslayer:cache:k", big_answer(100), 60))
    assert store.hsets == ["dbslayer:cache:k"]


def budget_put(redis: Redis, key: str, size: int, now_ms: int, ttl_ms: int, budget: int) -> str:
    """The budget script run by redis-cli on an answer of ``size`` bytes charged ``size``."""
    return redis.command(
        "EVAL", cache_module._PUT_WITHIN_BUDGET, "3", key, INDEX_KEY, SIZES_KEY,
        "a" * size, "0", str(ttl_ms), str(now_ms), str(now_ms + ttl_ms), str(size), str(budget),
    )  # fmt: skip


def test_the_budget_script_in_redis(redis: Redis) -> None:
    """In a real Redis: entries are charged and summed; the ones due to expire first make room
    (the others stay); a key put again is charged once; entries past their expiry leave the
    account; an entry alone over the budget writes nothing; the index and sizes expire."""
    now = 1_700_000_000_000
    assert budget_put(redis, "k1", 400, now, 60_000, 1000) == "1"
    assert budget_put(redis, "k2", 400, now, 30_000, 1000) == "1"
    assert redis.command("HGET", SIZES_KEY, "#total") == "800"
    assert budget_put(redis, "k3", 400, now, 90_000, 1000) == "1"  # k2 expires first: it goes
    assert redis.command("EXISTS", "k2") == "0" and redis.command("EXISTS", "k1") == "1"
    assert redis.command("HGET", SIZES_KEY, "#total") == "800"
    assert budget_put(redis, "k3", 500, now, 90_000, 1000) == "1"  # replaced: charged once
    assert redis.command("HGET", SIZES_KEY, "#total") == "900"
    later = now + 70_000  # k1 (60 s) is past its expiry: it leaves the account
    assert budget_put(redis, "k4", 100, later, 60_000, 1000) == "1"
    assert redis.command("ZRANGE", INDEX_KEY, "0", "-1").split() == ["k3", "k4"]
    assert redis.command("HGET", SIZES_KEY, "#total") == "600"
    assert budget_put(redis, "k5", 1001, later, 60_000, 1000) == "0"
    assert redis.command("EXISTS", "k5") == "0"
    assert redis.command("HGET", SIZES_KEY, "#total") == "600"
    for key in (INDEX_KEY, SIZES_KEY):
        assert 0 < int(redis.command("PTTL", key)) <= 90_000
    fields = redis.command("HGETALL", "k4").split()
    assert dict(zip(fields[::2], fields[1::2])) == {"answer": "a" * 100, "created": "0"}
    assert 0 < int(redis.command("PTTL", "k4")) <= 60_000


def test_settings_of_fairness() -> None:
    """The defaults: the per-user limit computed from the pool (0), 1 MiB per cached answer,
    256 MiB of answers in Redis; each is a flag, a TOML key and a DBSLAYER_ variable."""
    defaults = load_settings([], {})
    assert defaults.max_user_in_flight == 0
    assert defaults.cache_max_entry_bytes == 1024 * 1024
    assert defaults.cache_redis_bytes == 256 * 1024 * 1024
    flags = load_settings(
        [
            "--max-user-in-flight",
            "3",
            "--cache-max-entry-bytes",
            "4096",
            "--cache-redis-bytes",
            "0",
        ],
        {},
    )
    assert (flags.max_user_in_flight, flags.cache_max_entry_bytes, flags.cache_redis_bytes) == (
        3, 4096, 0,
    )  # fmt: skip
    env = load_settings([], {"DBSLAYER_MAX_USER_IN_FLIGHT": "2"})
    assert env.max_user_in_flight == 2
    with pytest.raises(SettingError):
        load_settings(["--max-user-in-flight", "-1"], {})
    with pytest.raises(SettingError):
        load_settings(["--cache-max-entry-bytes", "10"], {})


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def read_dsn(mariadb: MariaDB) -> str:
    """The session's MariaDB with a read account for ``test``."""
    mariadb.sql(
        "CREATE USER IF NOT EXISTS 'fair_ro'@'127.0.0.1' IDENTIFIED BY 'fair-pw';"
        "GRANT SELECT, SHOW VIEW ON `test`.* TO 'fair_ro'@'127.0.0.1';"
    )
    return mariadb.dsn() + "&read_user=fair_ro&read_password=fair-pw"


@pytest.fixture
def tokens(redis: Redis) -> dict[str, str]:
    return {
        # (SLEEP is a write to the classifier: the slow queries are a write user's, and the
        # other user shares its pool of connections, the main account's)
        "heavy": add_user(redis, "heavy", "write"),
        "light": add_user(redis, "light", "write"),
        "admin": add_user(redis, "admin", "admin"),
    }


# ------------------------------------------------------------------------------ per user


def test_one_user_cannot_hold_every_connection(
    read_dsn: str, redis: Redis, tokens: dict[str, str], gateway_factory: Any
) -> None:
    """--pool-max 4 (so at most 3 requests in flight per user, by default): a user's 3 slow
    queries run, its next 3 get 429 with Retry-After and a JSON error within 1 s, another user's
    SELECT 1 is answered in under SLEEP / 2 (it waited a whole SLEEP before), and once the
    slow ones are done the first user's requests are accepted again."""
    gw: Gateway = gateway_factory(
        "--backend", read_dsn, "--auth", "--redis", redis.url, "--pool-max", "4"
    )
    heavy, light = tokens["heavy"], tokens["light"]
    assert ask(gw, heavy, "SELECT 1").status == 200  # (the pools are open)
    slow, threads = in_background(gw, heavy, f"SELECT SLEEP({SLEEP})", 3)
    wait_for(
        lambda: backend_in_flight(gw, tokens["admin"]) == 3, 10, "the slow queries did not start"
    )
    more, more_threads = in_background(gw, heavy, f"SELECT SLEEP({SLEEP})", 3)
    time.sleep(0.3)  # (they arrive; past the limit they are answered at once)
    other, seconds = timed(gw, light, "SELECT 1")
    for t in more_threads:
        t.join(SLEEP * 3)
    assert other.status == 200 and other.json()["RESULT"]["ROWS"] == [[1]]
    assert seconds < SLEEP / 2, f"another user's SELECT 1 took {seconds:.2f} s"
    assert len(more) == 3
    for reply, seconds in more:
        assert isinstance(reply, Reply) and reply.status == 429, reply
        assert seconds < 1.0, seconds
        assert header(reply, "Retry-After") == "1"
        assert header(reply, "Content-Type") == "application/json"
        assert "heavy" in reply.json()["ERROR"] and "in flight" in reply.json()["ERROR"]
    for t in threads:
        t.join(SLEEP * 3)
    assert [reply.status for reply, _ in slow] == [200, 200, 200], slow
    again, again_threads = in_background(gw, heavy, "SELECT SLEEP(0.5)", 3)
    for t in again_threads:
        t.join(10)
    assert sorted(reply.status for reply, _ in again) == [200, 200, 200], again
    snapshot = stats(gw, tokens["admin"])
    assert snapshot["gateway_errors"].get("429") == 3


def test_the_count_is_given_back_whatever_the_end(
    mariadb: MariaDB, read_dsn: str, redis: Redis, tokens: dict[str, str], gateway_factory: Any
) -> None:
    """After answers of every kind (SQL error, 403, 400, cache miss and hit, a streamed answer,
    a statement over its TIMEOUT, a client that hangs up during a slow query and one that hangs
    up during a stream), the user's count is back at zero: exactly 3 (the limit) slow requests
    are accepted at once and the 4th gets 429."""
    mariadb.sql("CREATE OR REPLACE TABLE test.fair (id INT PRIMARY KEY)")
    gw: Gateway = gateway_factory(
        "--backend", read_dsn, "--auth", "--redis", redis.url, "--pool-max", "4"
    )
    heavy = tokens["heavy"]
    assert "MYSQL_ERRNO" in ask(gw, heavy, "SELECT * FROM no_such_table").json()
    assert ask(gw, heavy, "DROP USER nobody").status == 403  # (account statements: admin)
    assert ask(gw, heavy, "XA PREPARE 'x'").status == 400
    assert header(ask(gw, heavy, "SELECT 42", CACHE=60), "X-Cache") == "miss"
    assert header(ask(gw, heavy, "SELECT 42", CACHE=60), "X-Cache") == "hit"
    streamed = ask(gw, heavy, "SELECT seq, REPEAT('s', 50) FROM seq_1_to_5000")
    assert (
        header(streamed, "X-Streamed") == "true" and len(streamed.json()["RESULT"]["ROWS"]) == 5000
    )
    timed_out = ask(gw, heavy, "SELECT SLEEP(5)", TIMEOUT=300)
    assert timed_out.status in (200, 504), timed_out
    # Clients that go away: during a slow statement (its slot is held until the statement
    # ends: the connection is busy until then), and during a stream (which stops it).
    hang_up = raw_request(gw, heavy, {"SQL": "SELECT SLEEP(1)"})
    big = raw_request(gw, heavy, {"SQL": "SELECT seq, REPEAT('x', 100) FROM seq_1_to_3000000"})
    assert big.recv(65536)  # the stream began
    time.sleep(0.3)
    hang_up.close()
    big.close()
    wait_for(
        lambda: backend_in_flight(gw, tokens["admin"]) == 0,
        15,
        "the abandoned requests did not end",
    )

    slow, threads = in_background(gw, heavy, f"SELECT SLEEP({SLEEP})", 3)
    wait_for(
        lambda: backend_in_flight(gw, tokens["admin"]) == 3,
        10,
        "3 slow requests were not all accepted",
    )
    fourth, seconds = timed(gw, heavy, "SELECT 1")
    assert fourth.status == 429 and seconds < 1.0, (fourth, seconds)
    for t in threads:
        t.join(SLEEP * 3)
    assert [reply.status for reply, _ in slow] == [200, 200, 200], slow


def test_the_limit_is_configurable(
    read_dsn: str, redis: Redis, tokens: dict[str, str], gateway_factory: Any
) -> None:
    """--max-user-in-flight 1: a user's second request in flight gets 429; others go on."""
    gw: Gateway = gateway_factory(
        "--backend",
        read_dsn,
        "--auth",
        "--redis",
        redis.url,
        "--max-user-in-flight",
        "1",
    )
    slow, threads = in_background(gw, tokens["heavy"], "SELECT SLEEP(1.5)", 1)
    wait_for(
        lambda: backend_in_flight(gw, tokens["admin"]) == 1, 10, "the slow query did not start"
    )
    assert ask(gw, tokens["heavy"], "SELECT 1").status == 429
    assert ask(gw, tokens["light"], "SELECT 1").status == 200
    for t in threads:
        t.join(10)
    assert ask(gw, tokens["heavy"], "SELECT 1").status == 200


# ------------------------------------------------------------------------------ cache size


def cache_entries(redis: Redis) -> list[str]:
    keys = redis.command("--scan", "--pattern", "dbslayer:cache:*").split()
    return [k for k in keys if not k.endswith(":lock")]


def used_memory(redis: Redis) -> int:
    for line in redis.command("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise AssertionError("no used_memory in INFO memory")


def test_a_big_answer_is_served_but_not_cached(
    read_dsn: str, redis: Redis, tokens: dict[str, str], gateway_factory: Any
) -> None:
    """An answer of 1.5 MB (over the default --cache-max-entry-bytes of 1 MiB) is served in
    full each time, as a miss; Redis holds no entry for it and grows by under 256 KiB; /stats
    counts it as too_big; a small answer is still cached."""
    gw: Gateway = gateway_factory("--backend", read_dsn, "--auth", "--redis", redis.url)
    heavy = tokens["heavy"]
    assert ask(gw, heavy, "SELECT 1").status == 200
    before = used_memory(redis)
    big = "SELECT REPEAT('x', 1500000) AS big"
    for _ in range(3):
        reply = ask(gw, heavy, big, CACHE=600)
        assert reply.status == 200 and len(reply.json()["RESULT"]["ROWS"][0][0]) == 1_500_000
        assert header(reply, "X-Cache") == "miss"
    assert cache_entries(redis) == []
    assert used_memory(redis) - before < 256 * 1024
    assert stats(gw, tokens["admin"])["cache"]["too_big"] == 3
    assert header(ask(gw, heavy, "SELECT 7", CACHE=600), "X-Cache") == "miss"
    assert header(ask(gw, heavy, "SELECT 7", CACHE=600), "X-Cache") == "hit"
    assert len(cache_entries(redis)) == 1


def test_answers_kept_in_redis_stay_within_the_budget(
    read_dsn: str, redis: Redis, tokens: dict[str, str], gateway_factory: Any
) -> None:
    """--cache-redis-bytes 300000: 30 different answers of some 50 KB each (1.5 MB in all)
    leave at most 300,000 bytes of answers in Redis (the oldest are dropped), the latest ones
    are still served from the cache, and Redis grows by under 1 MB."""
    gw: Gateway = gateway_factory(
        "--backend", read_dsn, "--auth", "--redis", redis.url, "--cache-redis-bytes", "300000"
    )
    heavy = tokens["heavy"]
    assert ask(gw, heavy, "SELECT 1").status == 200
    before = used_memory(redis)
    for i in range(30):
        reply = ask(gw, heavy, f"SELECT {i} AS n, REPEAT('y', 50000) AS pad", CACHE=600)
        assert reply.status == 200 and header(reply, "X-Cache") == "miss"
    entries = cache_entries(redis)
    stored = sum(int(redis.command("HSTRLEN", key, "answer")) for key in entries)
    assert 0 < stored <= 300_000, (len(entries), stored)
    assert 3 <= len(entries) <= 6, entries
    assert used_memory(redis) - before < 1024 * 1024
    latest = ask(gw, heavy, "SELECT 29 AS n, REPEAT('y', 50000) AS pad", CACHE=600)
    assert header(latest, "X-Cache") == "hit"
    first = ask(gw, heavy, "SELECT 0 AS n, REPEAT('y', 50000) AS pad", CACHE=600)
    assert header(first, "X-Cache") == "miss"


@pytest.mark.parametrize(
    ("info", "warned"),
    [
        ({"maxmemory": "104857600", "maxmemory_policy": "allkeys-lru"}, True),
        ({"maxmemory": "104857600", "maxmemory_policy": "allkeys-random"}, True),
        ({"maxmemory": "104857600", "maxmemory_policy": "volatile-ttl"}, False),
        ({"maxmemory": "0", "maxmemory_policy": "allkeys-lru"}, False),  # (never reached)
        ({}, False),
    ],
)
def test_redis_memory_warning(info: dict[str, str], warned: bool) -> None:
    """A maxmemory policy that may evict any key (users too) is warned about; others not."""
    warning = redis_memory_warning(info)
    assert (warning is not None) == warned
    if warning is not None:
        assert "volatile-lru" in warning and info["maxmemory_policy"] in warning


def test_start_up_warns_when_redis_may_evict_users(
    read_dsn: str, redis: Redis, gateway_factory: Any
) -> None:
    """Redis with maxmemory and allkeys-lru: the gateway says at start that users can be
    evicted."""
    redis.command("CONFIG", "SET", "maxmemory", "100mb")
    redis.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    gw: Gateway = gateway_factory("--backend", read_dsn, "--auth", "--redis", redis.url)
    wait_for(lambda: "maxmemory-policy allkeys-lru" in gw.output(), 10, gw.output()[-2000:])


# ------------------------------------------------------------------------------ auth vs cache


class ThrottlingProxy:
    """A TCP proxy to Redis whose answers (Redis to client) go at ``rate`` bytes per second per
    connection: a saturated link. Counts the bytes it carried back."""

    def __init__(self, target_port: int, rate: float) -> None:
        self.target_port = target_port
        self.rate = rate
        self.port = free_port()
        self.carried = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.rate), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, rate: float) -> None:
        try:
            while not self._stop.is_set():
                data = source.recv(8192)
                if not data:
                    break
                sink.sendall(data)
                if rate:
                    with self._lock:
                        self.carried += len(data)
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._sockets:
            s.close()


def test_user_lookups_do_not_queue_behind_cache_traffic(
    read_dsn: str, redis: Redis, tokens: dict[str, str], gateway_factory: Any
) -> None:
    """Redis reached through a link of 1 MB/s per connection, --redis-timeout 0.5: while four
    clients read an 800 KB cached answer over and over (each of its reads takes the cache's
    connection 0.8 s), a user whose look-ups are never trusted for long (--auth-cache-ttl
    0.01) gets 15 of 15 answers, each within 1 s (before, the look-ups waited behind the cache
    replies on the one connection: 503)."""
    proxy = ThrottlingProxy(redis.port, rate=1_000_000)
    try:
        gw: Gateway = gateway_factory(
            "--backend",
            read_dsn,
            "--auth",
            "--redis",
            proxy.url,
            "--redis-timeout",
            "0.5",
            "--auth-cache-ttl",
            "0.01",
        )
        heavy, light = tokens["heavy"], tokens["light"]
        big = "SELECT REPEAT('z', 800000) AS big"
        assert header(ask(gw, heavy, big, CACHE=600), "X-Cache") == "miss"
        wait_for(lambda: len(cache_entries(redis)) == 1, 10, "the big answer was not stored")
        stop = threading.Event()
        flood_replies: list[int] = []

        def flood() -> None:
            while not stop.is_set():
                flood_replies.append(ask(gw, heavy, big, CACHE=600).status)

        flooders = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
        for t in flooders:
            t.start()
        time.sleep(1.0)
        outcomes = []
        try:
            for _ in range(15):
                reply, seconds = timed(gw, light, "SELECT 1")
                outcomes.append((reply.status, round(seconds, 2)))
                time.sleep(0.1)
        finally:
            stop.set()
            for t in flooders:
                t.join(30)
        # (more than a second of the link's time, while the cache's breaker lets reads through)
        assert proxy.carried > 1_000_000, "the cache traffic did not fill the link"
        assert all(status == 200 and seconds < 1.0 for status, seconds in outcomes), outcomes
        assert flood_replies and set(flood_replies) == {200}
    finally:
        proxy.close()
