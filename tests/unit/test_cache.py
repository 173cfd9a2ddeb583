"""Unit tests for gateway.cache: decisions, keys, encoding, the stores, single flight, front door."""

from __future__ import annotations

import inspect
import math
from decimal import Decimal
from typing import Any

import attrs
import orjson
import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from gateway.cache import (
    KEY_PREFIX,
    AnswerCache,
    CacheCorrupt,
    CacheUnavailable,
    MemoryCache,
    RedisCache,
    SingleFlight,
    cache_key,
    cacheable,
    copy_answer,
    decode_answer,
    encode_answer,
)
from gateway.results import Answer, ResultSet, SQLError, Update

# ------------------------------------------------------------------ helpers


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


def shape(value: Any) -> Any:
    """A structure that tells values apart by type too (1, 1.0, True and -0.0 differ)."""
    if isinstance(value, Answer):
        return (
            "Answer",
            shape(value.results),
            shape(value.error),
            shape(value.server),
            shape(value.extras),
        )
    if isinstance(value, ResultSet):
        return (
            "ResultSet",
            shape(value.header),
            shape(value.types),
            shape(value.rows),
            shape(value.base64),
        )
    if isinstance(value, (Update, SQLError)):
        return (type(value).__name__, shape(attrs.astuple(value)))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(shape(k), shape(v)) for k, v in value.items()])
    return (type(value).__name__, repr(value))


def rows_answer(*rows: list[Any], server: str | None = "db1") -> Answer:
    """An answer with one result set of the given rows (columns named c0, c1, ...)."""
    width = len(rows[0]) if rows else 1
    header = [f"c{i}" for i in range(width)]
    types = ["MYSQL_TYPE_LONG"] * width
    return Answer(results=[ResultSet(header, types, [list(r) for r in rows])], server=server)


def rich_answer() -> Answer:
    """An answer holding every kind of value the gateway produces, and more."""
    rows = [
        [
            2**70,
            -(2**63),
            2**64 - 1,
            -(2**64) - 5,
            Decimal("12345678901234567890.0123456789"),
            Decimal("-0.001"),
            0.1,
            -0.0,
            1e308,
            5e-324,
            "tab\there\nnul\x00bell\x07 \x1f del\x7f",
            "emoji 😀 and ünïcödé and \u2028",
            None,
            "AAEC/w==",
            True,
        ],
        [
            0,
            1,
            0,
            -1,
            Decimal("0"),
            Decimal("1E+2"),
            1.0,
            3.0,
            -2.5,
            1.5,
            "",
            "'\"\\/",
            None,
            None,
            False,
        ],
    ]
    header = [f"c{i}" for i in range(len(rows[0]))]
    types = ["MYSQL_TYPE_LONGLONG"] * 4 + ["MYSQL_TYPE_NEWDECIMAL"] * 2 + ["MYSQL_TYPE_DOUBLE"] * 4
    types += ["MYSQL_TYPE_VAR_STRING"] * 2 + [
        "MYSQL_TYPE_NULL",
        "MYSQL_TYPE_BLOB",
        "MYSQL_TYPE_TINY",
    ]
    return Answer(
        results=[
            ResultSet(header, types, rows, base64=[13]),
            Update(affected_rows=3, insert_id=2**64 - 1),
            ResultSet(["n"], ["MYSQL_TYPE_LONG"], []),
            Update(affected_rows=0, insert_id=0),
        ],
        error=SQLError(1064, "You have an error near '😀\x00'"),
        server="primary-1",
        extras={
            "ROLLBACK_ON_ERROR": True,
            "nested": {"a": [1, None, 2.5, "x"], "b": {}},
            "n": 2**80,
        },
    )


class StoreDown(Exception):
    """What the fake store raises when 'Redis' is unreachable."""


@attrs.define
class FakeStore:
    """A dict-backed stand-in for the Redis store (pure decision tests only)."""

    data: dict[str, dict[Any, Any]] = attrs.field(factory=dict)
    ttls: dict[str, float] = attrs.field(factory=dict)
    reads_down: bool = False
    writes_down: bool = False
    reads: int = 0
    pending_writes: list[Deferred[None]] | None = None

    def hgetall(self, key: str) -> Deferred[dict[Any, Any]]:
        self.reads += 1
        if self.reads_down:
            return fail(StoreDown("connection refused"))
        return succeed(dict(self.data.get(key, {})))

    def hset_many(self, key: str, mapping: dict[str, Any], *, ttl: float) -> Deferred[None]:
        if self.writes_down:
            return fail(StoreDown("connection lost"))
        self.data[key] = dict(mapping)
        self.ttls[key] = ttl
        return succeed(None)

    locks: dict[str, float] = attrs.field(factory=dict)

    def set(self, key: str, value: bytes, *, ex: float, nx: bool) -> Deferred[bool]:
        if self.writes_down:
            return fail(StoreDown("connection lost"))
        if nx and key in self.locks:
            return succeed(False)
        self.locks[key] = ex
        return succeed(True)

    def delete(self, *keys: str) -> Deferred[int]:
        return succeed(sum(self.locks.pop(k, None) is not None for k in keys))


def redis_cache(store: FakeStore | None = None, clock: Clock | None = None) -> RedisCache:
    """A RedisCache over a fake store and a Clock."""
    return RedisCache(store if store is not None else FakeStore(), clock or Clock(), StoreDown)


# ------------------------------------------------------------------ cacheable


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SELECT id, name FROM users WHERE id = %s",
        "select * from t where d > '2024-01-01' order by id limit 10",
        "SELECT 'NOW()' AS s",
        "SHOW TABLES",
        "SELECT 1; SELECT 2",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    ],
)
def test_cacheable_reads(sql: str) -> None:
    """Deterministic read-only statements may be cached."""
    assert cacheable(sql, has_info_flags=False) is None


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "SELECT 1; DELETE FROM t",
        "SELECT * FROM t FOR UPDATE",
        "SELECT GET_LOCK('x', 1)",
        "CREATE TABLE t (a INT)",
        "CALL proc()",
    ],
)
def test_cacheable_refuses_writes(sql: str) -> None:
    """Anything that is not read-only is not cached."""
    assert cacheable(sql, has_info_flags=False) == "not read-only"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT NOW()",
        "SELECT RAND()",
        "SELECT CURRENT_TIMESTAMP",
        "SELECT * FROM t WHERE created > CURRENT_DATE",
        "SELECT UUID()",
        "SELECT 1; SELECT now()",
        "SELECT @x",
    ],
)
def test_cacheable_refuses_nondeterministic(sql: str) -> None:
    """Reads whose answer may change between calls are not cached."""
    reason = cacheable(sql, has_info_flags=False)
    assert reason is not None and "non-deterministic" in reason


def test_cacheable_refuses_info_flags() -> None:
    """Info flags (STAT, SERVER_VERSION...) describe the live server: never cached."""
    reason = cacheable("SELECT 1", has_info_flags=True)
    assert reason is not None and "info flags" in reason
    assert cacheable(None, has_info_flags=True) is not None


@pytest.mark.parametrize("sql", [None, "", "   "])
def test_cacheable_refuses_no_sql(sql: str | None) -> None:
    """A request without SQL has nothing to cache."""
    assert cacheable(sql, has_info_flags=False) == "no SQL"


# ------------------------------------------------------------------ cache_key

BASE: dict[str, Any] = {
    "group": "primary",
    "scope": "db1:read",
    "sql": "SELECT %s",
    "params": (1,),
    "server": None,
}


def test_cache_key_form_and_stability() -> None:
    """The key is the prefix plus a SHA-256 hex digest, the same for the same inputs."""
    key = cache_key(**BASE)
    assert key.startswith(KEY_PREFIX) and key == "dbslayer:cache:" + key[len(KEY_PREFIX) :]
    digest = key[len(KEY_PREFIX) :]
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    assert cache_key(**BASE) == key
    assert cache_key(**{**BASE, "params": [1]}) == key  # a tuple and a list are the same


def test_cache_key_named_params_order_irrelevant() -> None:
    """Named PARAMS in another order give the same key."""
    one = cache_key(**{**BASE, "params": {"a": 1, "b": "x", "c": None}})
    two = cache_key(**{**BASE, "params": {"c": None, "b": "x", "a": 1}})
    assert one == two


def test_cache_key_every_part_counts() -> None:
    """A different group, role, statement, parameter or SERVER gives a different key."""
    variants: list[dict[str, Any]] = [
        BASE,
        {**BASE, "group": "named"},
        {**BASE, "scope": "db1:main"},
        {**BASE, "sql": "SELECT  %s"},
        {**BASE, "params": (2,)},
        {**BASE, "params": ("1",)},
        {**BASE, "params": (1.0,)},
        {**BASE, "params": (True,)},
        {**BASE, "params": (None,)},
        {**BASE, "params": None},
        {**BASE, "params": ()},
        {**BASE, "params": {"0": 1}},
        {**BASE, "server": "db1"},
        {**BASE, "server": "db2"},
    ]
    keys = {cache_key(**v) for v in variants}
    assert len(keys) == len(variants)


def test_cache_key_has_no_format() -> None:
    """FORMAT is not part of the key: one cached answer serves every format."""
    assert "format" not in {p.lower() for p in inspect.signature(cache_key).parameters}


def test_cache_key_values_beyond_json() -> None:
    """Parameters JSON cannot hold exactly (huge ints, Decimal) still give stable, distinct keys."""
    big = cache_key(**{**BASE, "params": (2**70,)})
    assert big == cache_key(**{**BASE, "params": [2**70]})
    assert big != cache_key(**{**BASE, "params": (2**70 + 1,)})
    assert big != cache_key(**{**BASE, "params": (str(2**70),)})
    dec = cache_key(**{**BASE, "params": {"b": Decimal("1.10"), "a": 1}})
    assert dec == cache_key(**{**BASE, "params": {"a": 1, "b": Decimal("1.10")}})
    assert dec != cache_key(**{**BASE, "params": {"a": 1, "b": "1.10"}})


# ------------------------------------------------------------------ encode / decode


def test_round_trip_is_exact() -> None:
    """Every value comes back with its type and value (huge ints, Decimals, -0.0, text...)."""
    answer = rich_answer()
    data = encode_answer(answer, 1700000000.123456)
    decoded, created = decode_answer(data)
    assert created == 1700000000.123456
    assert shape(decoded) == shape(answer)
    row = decoded.results[0].rows[0]  # type: ignore[union-attr]
    assert row[0] == 2**70 and type(row[0]) is int
    assert str(row[4]) == "12345678901234567890.0123456789" and type(row[4]) is Decimal
    assert str(row[5]) == "-0.001"
    assert math.copysign(1.0, row[7]) == -1.0
    assert str(decoded.results[0].rows[1][5]) == "1E+2"  # type: ignore[union-attr]


def test_round_trip_serves_every_format() -> None:
    """The decoded answer renders to the same wire structure as the original."""
    answer = rich_answer()
    answer.error = None
    decoded, _ = decode_answer(encode_answer(answer, 0.0))
    assert shape(decoded.to_wire()) == shape(answer.to_wire())


@pytest.mark.parametrize(
    "answer",
    [
        Answer(),
        Answer(results=[Update(affected_rows=1, insert_id=42)], server="bench"),
        rows_answer([1, "a"], [2, "b"], server=None),
        Answer(error=SQLError(1146, "Table 'test.nope' doesn't exist"), server="db1"),
        Answer(results=[ResultSet(["b"], ["MYSQL_TYPE_BLOB"], [["AAE="], [None]], base64=[0])]),
    ],
)
def test_round_trip_simple_answers(answer: Answer) -> None:
    """Plain answers (empty, updates, rows, errors, base64 columns) round-trip exactly."""
    decoded, created = decode_answer(encode_answer(answer, 5))
    assert shape(decoded) == shape(answer)
    assert created == 5.0 and type(created) is float


def test_round_trip_values_json_cannot_hold() -> None:
    """Lone surrogates, non-finite floats, bytes and dict cells are tagged and restored."""
    answer = rows_answer(
        ["bad \ud800 surrogate", math.inf, -math.inf, b"\x00\xff", {"d": "1"}, (1, 2)]
    )
    answer.extras = {"k\udfff": "v\ud800"}
    decoded, _ = decode_answer(encode_answer(answer, 0))
    row = decoded.results[0].rows[0]  # type: ignore[union-attr]
    assert row[:5] == ["bad \ud800 surrogate", math.inf, -math.inf, b"\x00\xff", {"d": "1"}]
    assert row[5] == [1, 2]  # a tuple comes back as a list (JSON has no tuples)
    assert decoded.extras == {"k\udfff": "v\ud800"}
    nan = decode_answer(encode_answer(rows_answer([math.nan]), 0))[0]
    assert math.isnan(nan.results[0].rows[0][0])  # type: ignore[union-attr]


def test_encode_refuses_unknown_types() -> None:
    """A value with no exact encoding (a date object, a set, a non-str key) raises TypeError."""
    import datetime

    with pytest.raises(TypeError):
        encode_answer(rows_answer([datetime.date(2024, 1, 1)]), 0)
    with pytest.raises(TypeError):
        encode_answer(rows_answer([{1, 2}]), 0)
    with pytest.raises(TypeError):
        encode_answer(Answer(extras={"x": {1: "a"}}), 0)


def test_encode_is_compact_json() -> None:
    """The stored bytes are one JSON document carrying a format version."""
    doc = orjson.loads(encode_answer(rows_answer([1]), 3.5))
    assert doc["v"] == 1 and doc["created"] == 3.5


def _valid_doc() -> dict[str, Any]:
    return dict(orjson.loads(encode_answer(rich_answer(), 1.0)))


def _mutated(**changes: Any) -> bytes:
    doc = _valid_doc()
    doc.update(changes)
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b'"text"',
        b"{}",
        b'{"v": 1}',
        _mutated(v=2),
        _mutated(created="yesterday"),
        _mutated(created=True),
        _mutated(results="nope"),
        _mutated(results=[{"k": "mystery"}]),
        _mutated(
            results=[{"k": "rows", "header": ["a"], "types": ["t"], "rows": "x", "base64": []}]
        ),
        _mutated(results=[{"k": "rows", "header": [1], "types": ["t"], "rows": [], "base64": []}]),
        _mutated(
            results=[
                {
                    "k": "rows",
                    "header": ["a"],
                    "types": ["t"],
                    "rows": [[{"d": "x1"}]],
                    "base64": [],
                }
            ]
        ),
        _mutated(
            results=[
                {
                    "k": "rows",
                    "header": ["a"],
                    "types": ["t"],
                    "rows": [[{"zz": "1"}]],
                    "base64": [],
                }
            ]
        ),
        _mutated(
            results=[
                {
                    "k": "rows",
                    "header": ["a"],
                    "types": ["t"],
                    "rows": [[{"d": "1", "i": "2"}]],
                    "base64": [],
                }
            ]
        ),
        _mutated(
            results=[
                {
                    "k": "rows",
                    "header": ["a"],
                    "types": ["t"],
                    "rows": [[{"b": "!!"}]],
                    "base64": [],
                }
            ]
        ),
        _mutated(
            results=[
                {
                    "k": "rows",
                    "header": ["a"],
                    "types": ["t"],
                    "rows": [[{"f": "1.5"}]],
                    "base64": [],
                }
            ]
        ),
        _mutated(
            results=[
                {
                    "k": "rows",
                    "header": ["a"],
                    "types": ["t"],
                    "rows": [[{"i": "0xg"}]],
                    "base64": [],
                }
            ]
        ),
        _mutated(
            results=[{"k": "rows", "header": ["a"], "types": ["t"], "rows": [], "base64": ["0"]}]
        ),
        _mutated(results=[{"k": "update", "affected_rows": "1", "insert_id": 0}]),
        _mutated(results=[{"k": "update", "affected_rows": 1}]),
        _mutated(results=[[1, 2]]),
        _mutated(error=[1064]),
        _mutated(error=["1064", "x"]),
        _mutated(server=5),
        _mutated(extras={"a": 1}),
        _mutated(extras=[["a"]]),
        _mutated(extras=[[1, 2]]),
    ],
)
def test_decode_refuses_garbage(data: bytes) -> None:
    """Anything encode_answer did not write raises CacheCorrupt (a ValueError)."""
    with pytest.raises(CacheCorrupt):
        decode_answer(data)
    assert issubclass(CacheCorrupt, ValueError)


def test_copy_answer_is_independent() -> None:
    """A copy shares no list or dict with the original, and is equal to it."""
    answer = rich_answer()
    copy = copy_answer(answer)
    assert shape(copy) == shape(answer)
    copy.results[0].rows[0][0] = "changed"  # type: ignore[union-attr]
    copy.results[0].header.append("x")  # type: ignore[union-attr]
    copy.extras["nested"]["a"].append(9)
    copy.extras["new"] = 1
    assert shape(answer) == shape(rich_answer())


# ------------------------------------------------------------------ MemoryCache


def test_memory_miss_then_hit() -> None:
    """Absent is None; after a put the answer comes back."""
    cache = MemoryCache(Clock())
    assert result_of(cache.get("k", 10)) is None
    result_of(cache.put("k", rich_answer(), 10))
    assert shape(result_of(cache.get("k", 10))) == shape(rich_answer())
    assert cache.entries == 1 and cache.size_bytes == len(encode_answer(rich_answer(), 0))


def test_memory_returns_independent_copies() -> None:
    """Changing a returned answer, or the one put, does not change the cached one."""
    cache = MemoryCache(Clock())
    original = rows_answer([1, "a"])
    result_of(cache.put("k", original, 10))
    original.results[0].rows[0][0] = 99  # type: ignore[union-attr]
    first = result_of(cache.get("k", 10))
    first.results[0].rows[0][1] = "mutated"
    first.extras["x"] = 1
    second = result_of(cache.get("k", 10))
    assert second is not first
    assert shape(second) == shape(rows_answer([1, "a"]))


def test_memory_expires_by_ttl() -> None:
    """An entry older than its ttl is gone (and dropped), whatever the reader allows."""
    clock = Clock()
    cache = MemoryCache(clock)
    result_of(cache.put("k", rows_answer([1]), 10))
    clock.advance(10)
    assert result_of(cache.get("k", 3600)) is not None  # exactly ttl old: still there
    clock.advance(0.5)
    assert result_of(cache.get("k", 3600)) is None
    assert cache.entries == 0 and cache.size_bytes == 0


def test_memory_respects_max_age() -> None:
    """A reader's CACHE (max_age) refuses older entries without dropping them."""
    clock = Clock()
    cache = MemoryCache(clock)
    result_of(cache.put("k", rows_answer([1]), 100))
    clock.advance(5)
    assert result_of(cache.get("k", 4)) is None
    assert result_of(cache.get("k", 5)) is not None
    assert result_of(cache.get("k", 60)) is not None
    assert cache.entries == 1


def test_memory_evicts_least_recently_used_by_entries() -> None:
    """Past max_entries the least recently used entry goes; a get counts as a use."""
    cache = MemoryCache(Clock(), max_entries=2)
    result_of(cache.put("a", rows_answer([1]), 60))
    result_of(cache.put("b", rows_answer([2]), 60))
    assert result_of(cache.get("a", 60)) is not None
    result_of(cache.put("c", rows_answer([3]), 60))
    assert cache.entries == 2
    assert result_of(cache.get("b", 60)) is None
    assert result_of(cache.get("a", 60)) is not None
    assert result_of(cache.get("c", 60)) is not None


def test_memory_evicts_least_recently_used_by_bytes() -> None:
    """Past max_bytes the least recently used entries go until the total fits."""
    size = len(encode_answer(rows_answer(["x" * 100]), 0))
    cache = MemoryCache(Clock(), max_bytes=2 * size + size // 2)
    for key in "abc":
        result_of(cache.put(key, rows_answer(["x" * 100]), 60))
    assert cache.entries == 2 and cache.size_bytes == 2 * size
    assert result_of(cache.get("a", 60)) is None
    big = rows_answer(["y" * (size + size // 3)])
    result_of(cache.put("d", big, 60))  # needs the room of both others
    assert cache.entries == 1 and result_of(cache.get("d", 60)) is not None
    assert cache.size_bytes == len(encode_answer(big, 0)) <= cache.max_bytes


def test_memory_skips_oversized_entry() -> None:
    """An entry bigger than max_bytes is not stored, and replaces nothing it would displace."""
    cache = MemoryCache(Clock(), max_bytes=500)
    result_of(cache.put("small", rows_answer([1]), 60))
    result_of(cache.put("k", rows_answer([1]), 60))
    result_of(cache.put("k", rows_answer(["z" * 1000]), 60))
    assert result_of(cache.get("k", 60)) is None  # the stale smaller answer is gone too
    assert result_of(cache.get("small", 60)) is not None
    assert cache.entries == 1


def test_memory_replacing_a_key_keeps_accounts() -> None:
    """Putting the same key again replaces the entry; sizes do not add up twice."""
    cache = MemoryCache(Clock())
    result_of(cache.put("k", rows_answer(["a" * 50]), 60))
    result_of(cache.put("k", rows_answer(["b"]), 60))
    assert cache.entries == 1
    assert cache.size_bytes == len(encode_answer(rows_answer(["b"]), 0))
    assert result_of(cache.get("k", 60)).results[0].rows == [["b"]]


def test_memory_ttl_zero_is_not_stored() -> None:
    """A put with ttl 0 stores nothing."""
    cache = MemoryCache(Clock())
    result_of(cache.put("k", rows_answer([1]), 0))
    assert cache.entries == 0


def test_memory_put_of_unencodable_answer_fails() -> None:
    """A put of an answer that cannot be encoded fails with TypeError and stores nothing."""
    cache = MemoryCache(Clock())
    failure_of(cache.put("k", rows_answer([object()]), 60)).trap(TypeError)
    assert cache.entries == 0


@pytest.mark.parametrize("bad", [{"max_entries": 0}, {"max_bytes": 0}])
def test_memory_refuses_nonsense_bounds(bad: dict[str, int]) -> None:
    """Bounds that could hold nothing are refused."""
    with pytest.raises(ValueError):
        MemoryCache(Clock(), **bad)


# ------------------------------------------------------------------ RedisCache


def test_redis_put_field_layout_and_ttl() -> None:
    """A put writes {"answer": encoded bytes, "created": epoch text} with the TTL."""
    clock = Clock()
    clock.advance(1700000000.25)
    store = FakeStore()
    cache = redis_cache(store, clock)
    assert result_of(cache.put("key1", rich_answer(), 30.5)) is None
    assert set(store.data["key1"]) == {"answer", "created"}
    assert store.data["key1"]["created"] == "1700000000.25"
    assert isinstance(store.data["key1"]["answer"], bytes)
    assert decode_answer(store.data["key1"]["answer"])[1] == 1700000000.25
    assert store.ttls == {"key1": 30.5}


def test_redis_get_round_trip() -> None:
    """A get reads the "answer" field back into an equal answer."""
    store = FakeStore()
    cache = redis_cache(store)
    result_of(cache.put("k", rich_answer(), 60))
    assert shape(result_of(cache.get("k", 60))) == shape(rich_answer())


def test_redis_get_accepts_bytes_field_names() -> None:
    """A store that answers with bytes field names (no charset) works too."""
    store = FakeStore(data={"k": {b"answer": encode_answer(rows_answer([7]), 0), b"created": b"0"}})
    assert result_of(redis_cache(store).get("k", 60)).results[0].rows == [[7]]


def test_redis_get_absent_and_stale() -> None:
    """Absent is None; an entry older than max_age is None."""
    clock = Clock()
    store = FakeStore()
    cache = redis_cache(store, clock)
    assert result_of(cache.get("k", 60)) is None
    result_of(cache.put("k", rows_answer([1]), 60))
    clock.advance(10)
    assert result_of(cache.get("k", 9)) is None
    assert result_of(cache.get("k", 10)) is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"answer": b"not json"},
        {"answer": b'{"v": 99}'},
        {"created": "12"},
        {"answer": orjson.dumps({"v": 1, "created": 0.0, "results": 5})},
    ],
)
def test_redis_corrupt_entry_is_a_miss(fields: dict[str, Any]) -> None:
    """A corrupt or foreign entry counts as absent."""
    store = FakeStore(data={"k": fields})
    assert result_of(redis_cache(store).get("k", 60)) is None


def test_redis_store_failure_is_cache_unavailable() -> None:
    """Store failures on get and put become CacheUnavailable, the cause attached."""
    store = FakeStore(reads_down=True, writes_down=True)
    cache = redis_cache(store)
    failure = failure_of(cache.get("k", 60))
    assert failure.check(CacheUnavailable)
    assert isinstance(failure.value.__cause__, StoreDown)
    assert failure_of(cache.put("k", rows_answer([1]), 60)).check(CacheUnavailable)


def test_redis_other_errors_propagate() -> None:
    """An exception that is not the store's unavailable class is not disguised."""

    class Broken(FakeStore):
        def hgetall(self, key: str) -> Deferred[dict[Any, Any]]:
            raise KeyError("bug")

    assert failure_of(redis_cache(Broken()).get("k", 60)).check(KeyError)


def test_redis_put_ttl_zero_and_unencodable() -> None:
    """ttl 0 writes nothing; an answer that cannot be encoded fails with TypeError."""
    store = FakeStore()
    cache = redis_cache(store)
    result_of(cache.put("k", rows_answer([1]), 0))
    assert store.data == {}
    failure_of(cache.put("k", rows_answer([object()]), 60)).trap(TypeError)
    assert store.data == {}


# ------------------------------------------------------------------ SingleFlight


def test_single_flight_runs_work_once_for_many() -> None:
    """100 concurrent callers: the work runs once, every caller gets the result."""
    flight = SingleFlight()
    pending: Deferred[str] = Deferred()
    calls: list[int] = []

    def work() -> Deferred[str]:
        calls.append(1)
        return pending

    waiting = [flight.run("k", work) for _ in range(100)]
    assert len(calls) == 1 and flight.in_flight == 1
    assert not any(d.called for d in waiting)
    pending.callback("answer")
    assert [result_of(d) for d in waiting] == ["answer"] * 100
    assert flight.in_flight == 0


def test_single_flight_callers_have_their_own_deferreds() -> None:
    """Chaining on one caller's Deferred does not change what the others get."""
    flight = SingleFlight()
    pending: Deferred[list[int]] = Deferred()
    first = flight.run("k", lambda: pending)
    second = flight.run("k", lambda: pending)
    assert first is not second
    first.addCallback(lambda _: "replaced")
    pending.callback([1])
    assert result_of(first) == "replaced"
    assert result_of(second) == [1]


def test_single_flight_shares_failure_and_releases_key() -> None:
    """A failing work fails every caller with the same error; the next run starts afresh."""
    flight = SingleFlight()
    pending: Deferred[str] = Deferred()
    calls: list[int] = []

    def work() -> Deferred[str]:
        calls.append(1)
        return pending

    waiting = [flight.run("k", work) for _ in range(100)]
    error = RuntimeError("backend gone")
    pending.errback(error)
    assert all(failure_of(d).value is error for d in waiting)
    assert flight.in_flight == 0
    again = flight.run("k", lambda: succeed("fresh"))
    assert result_of(again) == "fresh" and flight.in_flight == 0


def test_single_flight_sync_work() -> None:
    """Work that finishes (or raises) at once releases the key at once."""
    flight = SingleFlight()
    assert result_of(flight.run("k", lambda: succeed(1))) == 1
    assert flight.in_flight == 0

    def boom() -> Deferred[int]:
        raise ValueError("bad")

    failure_of(flight.run("k", boom)).trap(ValueError)
    assert flight.in_flight == 0


def test_single_flight_keys_are_separate() -> None:
    """Different keys run their own work."""
    flight = SingleFlight()
    a: Deferred[str] = Deferred()
    b: Deferred[str] = Deferred()
    da = flight.run("a", lambda: a)
    db = flight.run("b", lambda: b)
    assert flight.in_flight == 2
    b.callback("B")
    assert result_of(db) == "B" and not da.called and flight.in_flight == 1
    a.callback("A")
    assert result_of(da) == "A"


def test_single_flight_copy_result_for_later_callers() -> None:
    """With copy_result, later callers get copies made before anyone's callbacks ran."""
    flight = SingleFlight(copy_result=list)
    pending: Deferred[list[int]] = Deferred()
    leader = flight.run("k", lambda: pending)
    followers = [flight.run("k", lambda: pending) for _ in range(3)]

    def mutate(value: list[int]) -> list[int]:
        value.append(99)
        return value

    leader.addCallback(mutate)
    original = [1]
    pending.callback(original)
    assert result_of(leader) is original and original == [1, 99]
    values = [result_of(d) for d in followers]
    assert values == [[1]] * 3
    assert len({id(v) for v in values}) == 3


def test_single_flight_failing_copy_fails_only_that_caller() -> None:
    """A copy that raises fails the follower it was for; the leader still gets the result."""

    def bad_copy(value: Any) -> Any:
        raise RuntimeError("cannot copy")

    flight = SingleFlight(copy_result=bad_copy)
    pending: Deferred[str] = Deferred()
    leader = flight.run("k", lambda: pending)
    follower = flight.run("k", lambda: pending)
    pending.callback("v")
    assert result_of(leader) == "v"
    failure_of(follower).trap(RuntimeError)


def test_single_flight_skips_cancelled_callers() -> None:
    """A caller that cancelled is skipped; the others still get the result."""
    flight = SingleFlight()
    pending: Deferred[str] = Deferred()
    leader = flight.run("k", lambda: pending)
    follower = flight.run("k", lambda: pending)
    follower.cancel()
    follower.addErrback(lambda f: None)
    pending.callback("v")
    assert result_of(leader) == "v"


# ------------------------------------------------------------------ AnswerCache


def front(
    backend: MemoryCache | RedisCache | None = None, **kwargs: Any
) -> tuple[AnswerCache, list[str]]:
    """An AnswerCache (over a MemoryCache on a Clock by default) and its event list."""
    events: list[str] = []
    backend = backend if backend is not None else MemoryCache(Clock())
    return AnswerCache(backend, Clock(), on_event=events.append, **kwargs), events


def counted(answer: Answer) -> tuple[list[int], Any]:
    """A work function returning copies of ``answer``, and the list of its calls."""
    calls: list[int] = []

    def work() -> Deferred[Answer]:
        calls.append(1)
        return succeed(copy_answer(answer))

    return calls, work


def test_answer_cache_miss_then_hit() -> None:
    """The first fetch runs the work and stores; the second is a hit without work."""
    cache, events = front()
    calls, work = counted(rows_answer([1, "a"]))
    answer, outcome = result_of(cache.fetch("k", 60, work))
    assert outcome == "miss" and answer.results[0].rows == [[1, "a"]]
    answer2, outcome2 = result_of(cache.fetch("k", 60, work))
    assert outcome2 == "hit" and shape(answer2) == shape(rows_answer([1, "a"]))
    assert answer2 is not answer
    assert len(calls) == 1 and events == ["miss", "hit"]


def test_answer_cache_concurrent_misses_share_one_run() -> None:
    """Concurrent misses run the query once; every caller gets 'miss' and its own answer."""
    cache, events = front()
    pending: Deferred[Answer] = Deferred()
    calls: list[int] = []

    def work() -> Deferred[Answer]:
        calls.append(1)
        return pending

    waiting = [cache.fetch("k", 60, work) for _ in range(5)]
    assert len(calls) == 1 and cache.flight.in_flight == 1
    pending.callback(rows_answer([1]))
    results = [result_of(d) for d in waiting]
    assert {outcome for _, outcome in results} == {"miss"}
    assert len({id(a) for a, _ in results}) == 5
    assert all(shape(a) == shape(rows_answer([1])) for a, _ in results)
    assert events == ["miss"] * 5
    assert result_of(cache.fetch("k", 60, work))[1] == "hit"


def test_answer_cache_does_not_store_sql_errors() -> None:
    """An answer carrying an SQL error is returned but never stored."""
    backend = MemoryCache(Clock())
    cache, events = front(backend)
    failed = Answer(results=[rows_answer([1]).results[0]], error=SQLError(1064, "syntax"))
    calls, work = counted(failed)
    answer, outcome = result_of(cache.fetch("k", 60, work))
    assert outcome == "miss" and answer.error == SQLError(1064, "syntax")
    assert backend.entries == 0
    assert result_of(cache.fetch("k", 60, work))[1] == "miss"
    assert len(calls) == 2 and events == ["miss", "miss"]


def test_answer_cache_caps_stored_ttl() -> None:
    """The ttl stored is the reader's max_age capped at max_ttl."""
    store = FakeStore()
    cache, _ = front(redis_cache(store), max_ttl=10.0)
    _, work = counted(rows_answer([1]))
    result_of(cache.fetch("long", 100, work))
    result_of(cache.fetch("short", 3, work))
    assert store.ttls == {"long": 10.0, "short": 3}


def test_answer_cache_expiry_through_memory() -> None:
    """With the in-process store, an answer past its capped ttl is run again."""
    clock = Clock()
    events: list[str] = []
    cache = AnswerCache(MemoryCache(clock), clock, max_ttl=10.0, on_event=events.append)
    calls, work = counted(rows_answer([1]))
    result_of(cache.fetch("k", 100, work))
    clock.advance(10)
    assert result_of(cache.fetch("k", 100, work))[1] == "hit"
    clock.advance(1)
    assert result_of(cache.fetch("k", 100, work))[1] == "miss"
    assert len(calls) == 2 and events == ["miss", "hit", "miss"]


def test_answer_cache_bypass_when_store_unavailable() -> None:
    """Redis unreachable: the work runs directly, nothing is stored, outcome 'bypass'."""
    store = FakeStore(reads_down=True)
    cache, events = front(redis_cache(store))
    calls, work = counted(rows_answer([1]))
    answer, outcome = result_of(cache.fetch("k", 60, work))
    assert outcome == "bypass" and answer.results[0].rows == [[1]]
    assert store.data == {} and len(calls) == 1 and events == ["bypass"]


def test_answer_cache_ignores_put_failure() -> None:
    """A failing put is counted as 'bypass' but the answer is returned as a 'miss'."""
    store = FakeStore(writes_down=True)
    cache, events = front(redis_cache(store))
    _, work = counted(rows_answer([1]))
    answer, outcome = result_of(cache.fetch("k", 60, work))
    assert outcome == "miss" and answer.results[0].rows == [[1]]
    assert events == ["miss", "bypass"]


def test_answer_cache_unencodable_answer_is_returned() -> None:
    """An answer that cannot be encoded is still returned (the put failure is ignored)."""
    cache, events = front()
    _, work = counted(rows_answer([1]))
    odd = rows_answer([object()])
    answer, outcome = result_of(cache.fetch("k", 60, lambda: succeed(odd)))
    assert answer is odd and outcome == "miss" and events == ["miss", "bypass"]


def test_answer_cache_work_failure_propagates() -> None:
    """A failing query fails the fetch, stores nothing and releases the key."""
    backend = MemoryCache(Clock())
    cache, events = front(backend)
    failure_of(cache.fetch("k", 60, lambda: fail(RuntimeError("db down")))).trap(RuntimeError)
    assert backend.entries == 0 and cache.flight.in_flight == 0 and events == ["miss"]


def test_answer_cache_zero_max_age_bypasses() -> None:
    """A max_age of 0 does not look at the cache at all."""
    store = FakeStore()
    cache, events = front(redis_cache(store))
    _, work = counted(rows_answer([1]))
    assert result_of(cache.fetch("k", 0, work))[1] == "bypass"
    assert store.reads == 0 and store.data == {} and events == ["bypass"]


def test_answer_cache_without_event_sink() -> None:
    """on_event is optional."""
    cache = AnswerCache(MemoryCache(Clock()), Clock())
    _, work = counted(rows_answer([1]))
    assert result_of(cache.fetch("k", 60, work))[1] == "miss"
    assert result_of(cache.fetch("k", 60, work))[1] == "hit"


@pytest.mark.parametrize(
    ("default_ttl", "requested", "expected"),
    [
        (0.0, None, None),
        (0.0, 0, None),
        (0.0, 0.0, None),
        (0.0, 5, 5.0),
        (0.0, 2.5, 2.5),
        (0.0, 10_000, 3600.0),
        (30.0, None, 30.0),
        (30.0, 0, None),
        (30.0, 7, 7.0),
        (7200.0, None, 3600.0),
        (0.0, -1, None),
    ],
)
def test_ttl_for(default_ttl: float, requested: float | None, expected: float | None) -> None:
    """The request's CACHE, or the default when it gave none, capped; 0 means no cache."""
    cache = AnswerCache(MemoryCache(Clock()), Clock(), default_ttl=default_ttl)
    assert cache.ttl_for(requested) == expected


@pytest.mark.parametrize("bad", [{"default_ttl": -1.0}, {"max_ttl": 0.0}])
def test_answer_cache_refuses_nonsense(bad: dict[str, Any]) -> None:
    """A negative default or a zero cap is refused."""
    with pytest.raises(ValueError):
        AnswerCache(MemoryCache(Clock()), Clock(), **bad)


def test_processes_that_miss_wait_for_the_lock_holder() -> None:
    """Across processes: only the lock holder runs the query; another process that missed
    polls the cache and gets the holder's answer; the lock is released after."""
    clock = Clock()
    store = FakeStore()
    holder = AnswerCache(redis_cache(store, clock), clock)
    other = AnswerCache(redis_cache(store, clock), clock)
    gate: Deferred[Answer] = Deferred()
    runs: list[str] = []

    def work(name: str) -> Any:
        def run() -> Deferred[Answer]:
            runs.append(name)
            return gate if name == "holder" else succeed(Answer(server="other"))

        return run

    first = holder.fetch("k", 60, work("holder"))
    second = other.fetch("k", 60, work("other"))
    clock.advance(0.05)
    assert runs == ["holder"] and "k:lock" in store.locks
    gate.callback(Answer(results=[Update(1, 0)], server="holder"))
    clock.advance(0.05)
    got: list[Any] = []
    second.addCallback(got.append)
    first.addCallback(got.append)
    assert [g[0].server for g in got] == ["holder", "holder"] and runs == ["holder"]
    assert "k:lock" not in store.locks


def test_a_lock_holder_that_never_answers_is_not_waited_for_forever() -> None:
    """A process waiting for another's answer runs the query itself once the lock time ends."""
    clock = Clock()
    store = FakeStore()
    store.locks["k:lock"] = 30
    cache = AnswerCache(redis_cache(store, clock), clock)
    result: list[Any] = []
    cache.fetch("k", 60, lambda: succeed(Answer(server="me"))).addCallback(result.append)
    clock.pump([0.5] * 59)
    assert result == []
    clock.pump([0.5] * 4)
    assert result and result[0][0].server == "me"


@attrs.define
class RacingStore(FakeStore):
    """A store where another process stores the answer and releases its lock just before this
    process's claim lands."""

    elsewhere: Any = None

    def set(self, key: str, value: bytes, *, ex: float, nx: bool) -> Deferred[bool]:
        if self.elsewhere is not None:
            self.elsewhere.put("k", Answer(results=[Update(1, 0)], server="elsewhere"), 60)
            self.elsewhere = None
        return super().set(key, value, ex=ex, nx=nx)


def test_a_claim_won_after_another_process_answered_runs_nothing() -> None:
    """Across processes: when another process stores the answer and releases the lock between
    this process's miss and its claim, the new lock holder finds the answer and does not run
    the query again."""
    clock = Clock()
    store = RacingStore()
    store.elsewhere = redis_cache(store, clock)
    cache = AnswerCache(redis_cache(store, clock), clock)
    runs, work = counted(rows_answer([1]))
    got = result_of(cache.fetch("k", 60, work))
    assert got[0].server == "elsewhere" and runs == [] and "k:lock" not in store.locks
