"""The answer cache: which requests may be cached, under which key, and where answers live.

It stores the *result model* (:class:`~gateway.results.Answer`), not rendered bytes, so one
cached answer serves every FORMAT. Parts, each small and testable without a server:

- :func:`cacheable` and :func:`cache_key`: the decisions (read-only and deterministic
  statements only, never info flags; key = backend group + role + statement + parameters +
  SERVER, hashed; FORMAT is not part of it).
- :func:`encode_answer` / :func:`decode_answer`: an exact round trip through orjson. Values
  JSON cannot hold exactly are *tagged*: a one-key object ``{"<tag>": payload}`` stands for
  ``d`` a Decimal (its text), ``i`` an int beyond orjson's 64 bits (hex text, which has no
  digit limit), ``f`` a non-finite float, ``u`` a str with lone surrogates (UTF-8
  ``surrogatepass`` bytes, base64), ``b`` bytes (base64), ``m`` a dict (a list of key/value
  pairs). Lists and scalars are themselves; a tuple comes back as a list. Other types (dates,
  sets, objects) are refused with TypeError: such an answer is simply not cached. The document
  carries a format version: an entry written by another version decodes as corrupt (a miss).
- :class:`MemoryCache` (no Redis configured: a bounded LRU of encoded bytes in process) and
  :class:`RedisCache` (a Redis hash per key, with a TTL, through an injected store; the
  answers one gateway keeps there have a byte budget of their own); both answer ``get`` with a
  fresh decoded Answer, never a shared object, and both refuse to store an answer over
  ``max_entry_bytes`` (:class:`EntryTooBig`: it is served, not stored).
- :class:`SingleFlight`: concurrent misses on one key run the query once.
- :class:`AnswerCache`: the front door the executor uses (hit / miss / bypass); Redis
  unreachable means the cache is bypassed (fail open), never that the request fails.

Ages: an entry is expired when it is older than its ttl, and stale for a reader when it is
older than the reader's CACHE (``max_age``); "older" is strict, an entry exactly ``max_age``
old is served. No I/O here except through the injected store; the clock is injected.
"""

from __future__ import annotations

import hashlib
import math
from base64 import b64decode, b64encode
from collections import OrderedDict
from collections.abc import Callable
from copy import deepcopy
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import orjson
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.results import Answer, Result, ResultSet, SQLError, Update
from gateway.sql import SQLFacts, read_sql

__all__ = [
    "KEY_PREFIX",
    "AnswerCache",
    "CacheCorrupt",
    "CacheUnavailable",
    "EntryTooBig",
    "MemoryCache",
    "RedisCache",
    "SingleFlight",
    "cache_key",
    "cacheable",
    "copy_answer",
    "decode_answer",
    "encode_answer",
]

log = Logger()

T = TypeVar("T")

KEY_PREFIX = "dbslayer:cache:"

#: Version of the encoded document; another version decodes as corrupt (a miss).
FORMAT_VERSION = 1

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1  # orjson writes signed and unsigned 64-bit integers natively
_PLAIN = frozenset({str, int, bool, type(None)})
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class CacheCorrupt(ValueError):
    """A cached entry is not something :func:`encode_answer` wrote."""


class CacheUnavailable(Exception):
    """The cache store (Redis) could not be reached; the caller bypasses the cache."""


class EntryTooBig(Exception):
    """An answer over the size limit of one entry (or over the whole budget): not stored."""

    def __init__(self, size: int, limit: int, *, at_least: bool = False) -> None:
        super().__init__(
            f"an answer of {'at least ' if at_least else ''}{size} bytes is over the cache's "
            f"limit of {limit} bytes"
        )
        self.size = size
        self.limit = limit


def check_size(answer: Answer, limit: int | None) -> None:
    """EntryTooBig when ``answer`` is sure to encode to more than ``limit`` bytes, told without
    encoding it: every value of a row takes at least two bytes (itself and a separator), so a
    big result set is refused before its copy as bytes is made."""
    if limit is None:
        return
    smallest = 0
    for result in answer.results:
        if isinstance(result, ResultSet):
            smallest += 2 * len(result.rows) * max(1, len(result.header))
    if smallest > limit:
        raise EntryTooBig(smallest, limit, at_least=True)


def _encoded_within(answer: Answer, created: float, limit: int | None) -> bytes:
    """The encoded answer; EntryTooBig past ``limit``, TypeError when it cannot be encoded."""
    check_size(answer, limit)
    data = encode_answer(answer, created)
    if limit is not None and len(data) > limit:
        raise EntryTooBig(len(data), limit)
    return data


# ------------------------------------------------------------------ decisions


def cacheable(sql: str | SQLFacts | None, *, has_info_flags: bool) -> str | None:
    """None when the request may be cached; else the reason it may not. Only a deterministic
    read is cached: ``sql`` is the SQL text or the facts :func:`gateway.sql.read_sql` read
    from it (the request's own, when the caller has them)."""
    if has_info_flags:
        return "asks for info flags (they describe the live server)"
    facts = read_sql(sql) if isinstance(sql, str) else sql
    if facts is None or not facts.statements:
        return "no SQL"
    if not facts.read:
        return "not read-only"
    if not facts.deterministic:
        return "uses a non-deterministic function or a variable"
    return None


def cache_key(*, group: str, scope: str, sql: str, params: Any, server: str | None) -> str:
    """The cache key of a request: ``dbslayer:cache:`` + SHA-256 hex of a canonical encoding
    of every part (object keys sorted, so the order of named PARAMS does not matter; a tuple
    and a list of the same values are the same). FORMAT is not part of it. ``scope`` is what
    the user may reach: the backends it may use and the database account it runs on there."""
    parts = {"group": group, "scope": scope, "sql": sql, "params": params, "server": server}
    try:
        canonical = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a value JSON cannot hold exactly: tag it (a distinct "enc" domain)
        if isinstance(params, dict):
            params = dict(sorted(params.items()))
        tagged = {k: _pack(v, strict=True) for k, v in {**parts, "params": params}.items()}
        canonical = orjson.dumps({**tagged, "enc": "tagged"}, option=orjson.OPT_SORT_KEYS)
    return KEY_PREFIX + hashlib.sha256(canonical).hexdigest()


# ------------------------------------------------------------------ encoding


def encode_answer(answer: Answer, created: float) -> bytes:
    """The bytes stored for ``answer`` created at ``created`` (epoch seconds).

    Raises TypeError for a value the encoding cannot hold (see the module docstring)."""
    try:
        return orjson.dumps(_document(answer, created, strict=False))
    except TypeError:  # a str with lone surrogates or an int beyond 64 bits in a row
        return orjson.dumps(_document(answer, created, strict=True))


def decode_answer(data: bytes) -> tuple[Answer, float]:
    """``(answer, created)`` from :func:`encode_answer` bytes; CacheCorrupt on anything else."""
    try:
        doc = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as e:
        raise CacheCorrupt(f"cached entry is not JSON: {e}") from None
    try:
        return _from_document(doc)
    except CacheCorrupt:
        raise
    except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
        raise CacheCorrupt(f"cached entry is malformed: {e!r}") from None


def copy_answer(answer: Answer) -> Answer:
    """An independent copy of ``answer``: its lists and extras are not shared (the values in
    rows are immutable scalars and are shared)."""
    results: list[Result] = []
    for result in answer.results:
        if isinstance(result, ResultSet):
            result = ResultSet(
                header=list(result.header),
                types=list(result.types),
                rows=[list(row) for row in result.rows],
                base64=list(result.base64),
                truncated=result.truncated,
            )
        results.append(result)  # Update is frozen and holds ints
    return attrs.evolve(answer, results=results, extras=deepcopy(answer.extras))


def _document(answer: Answer, created: float, strict: bool) -> dict[str, Any]:
    error = answer.error
    return {
        "v": FORMAT_VERSION,
        "created": float(created),
        "results": [_pack_result(r, strict) for r in answer.results],
        "error": None if error is None else [error.errno, _pack(error.message, strict)],
        "server": _pack(answer.server, strict),
        "extras": _pack(answer.extras, strict)["m"],
    }


def _pack_result(result: Result, strict: bool) -> dict[str, Any]:
    if isinstance(result, ResultSet):
        return {
            "k": "rows",
            "header": [_pack(h, strict) for h in result.header],
            "types": [_pack(t, strict) for t in result.types],
            "rows": [_pack_row(row, strict) for row in result.rows],
            "base64": list(result.base64),
            # (only when true: a hit keeps the row limit's marker, older entries read alike)
            **({"truncated": True} if result.truncated else {}),
        }
    if isinstance(result, Update):
        return {
            "k": "update",
            "affected_rows": _pack(result.affected_rows, strict),
            "insert_id": _pack(result.insert_id, strict),
        }
    raise TypeError(f"not a result: {type(result).__name__}")


def _pack_row(row: list[Any], strict: bool) -> list[Any]:
    """A row for :func:`_pack`; the common types skip the call (an int beyond 64 bits is
    left for orjson to refuse, and the strict pass then tags it)."""
    if strict:
        return [_pack(v, strict) for v in row]
    return [v if type(v) in _PLAIN else _pack(v, strict) for v in row]


def _pack(value: Any, strict: bool) -> Any:
    """``value`` as plain JSON, special values tagged; with ``strict`` every str is checked
    for lone surrogates (orjson refuses them)."""
    kind = type(value)
    if kind is str:
        if strict:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return {"u": b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")}
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        return value if _INT_MIN <= value <= _INT_MAX else {"i": hex(value)}
    if kind is float:
        return value if math.isfinite(value) else {"f": repr(value)}
    if kind is Decimal:
        return {"d": str(value)}
    if kind is list or kind is tuple:
        return [_pack(v, strict) for v in value]
    if kind is dict:
        for k in value:
            if type(k) is not str:
                raise TypeError(f"cannot cache a dict with a {type(k).__name__} key")
        return {"m": [[_pack(k, strict), _pack(v, strict)] for k, v in value.items()]}
    if kind is bytes:
        return {"b": b64encode(value).decode("ascii")}
    raise TypeError(f"cannot cache a value of type {kind.__name__}")


def _unpack(value: Any) -> Any:
    """The inverse of :func:`_pack`."""
    kind = type(value)
    if kind is list:
        return [_unpack(v) for v in value]
    if kind is not dict:
        return value  # a JSON scalar
    if len(value) != 1:
        raise CacheCorrupt("a tagged value has one key")
    ((tag, payload),) = value.items()
    if type(payload) is not str and tag != "m":
        raise CacheCorrupt(f"tag {tag!r} needs text")
    if tag == "d":
        return Decimal(payload)
    if tag == "i":
        return int(payload, 16)
    if tag == "f":
        return _NON_FINITE[payload]
    if tag == "u":
        return b64decode(payload, validate=True).decode("utf-8", "surrogatepass")
    if tag == "b":
        return b64decode(payload, validate=True)
    if tag == "m":
        return {_str(_unpack(k)): _unpack(v) for k, v in _pairs(payload)}
    raise CacheCorrupt(f"unknown tag {tag!r}")


def _from_document(doc: Any) -> tuple[Answer, float]:
    if type(doc) is not dict or doc.get("v") != FORMAT_VERSION:
        raise CacheCorrupt("not a cached answer of this version")
    created = doc["created"]
    if type(created) not in (int, float):
        raise CacheCorrupt("created is not a number")
    results = [_result(r) for r in _list(doc["results"])]
    error = doc["error"]
    if error is not None:
        errno, message = _list(error)
        error = SQLError(errno=_int(errno), message=_str(_unpack(message)))
    server = _unpack(doc["server"])
    if server is not None:
        server = _str(server)
    extras = {_str(_unpack(k)): _unpack(v) for k, v in _pairs(doc["extras"])}
    answer = Answer(results=results, error=error, server=server, extras=extras)
    return answer, float(created)


def _result(doc: Any) -> Result:
    if type(doc) is not dict:
        raise CacheCorrupt("a result is an object")
    if doc["k"] == "rows":
        base64 = [_int(i) for i in _list(doc["base64"])]
        return ResultSet(
            header=[_str(_unpack(h)) for h in _list(doc["header"])],
            types=[_str(_unpack(t)) for t in _list(doc["types"])],
            rows=[[_unpack(v) for v in _list(row)] for row in _list(doc["rows"])],
            base64=base64,
            truncated=doc.get("truncated") is True,
        )
    if doc["k"] == "update":
        return Update(
            affected_rows=_int(_unpack(doc["affected_rows"])),
            insert_id=_int(_unpack(doc["insert_id"])),
        )
    raise CacheCorrupt(f"unknown result kind {doc['k']!r}")


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise CacheCorrupt(f"expected a list, got {type(value).__name__}")
    return value


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    pairs = _list(value)
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise CacheCorrupt("expected a key/value pair")
    return [(k, v) for k, v in pairs]


def _str(value: Any) -> str:
    if type(value) is not str:
        raise CacheCorrupt(f"expected text, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise CacheCorrupt(f"expected an integer, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------ stores


class MemoryCache:
    """The cache without Redis: a bounded LRU of encoded answers in process.

    Bounded by ``max_entries`` and by ``max_bytes`` (the sum of the encoded sizes); the least
    recently used entries go first; an entry bigger than ``max_bytes`` is not stored (and a
    previous entry under its key is dropped), nor one bigger than ``max_entry_bytes`` (the put
    fails with EntryTooBig then). Expired entries are dropped when read, or when eviction
    reaches them."""

    def __init__(
        self,
        clock: Any,
        *,
        max_entries: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        max_entry_bytes: int | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a memory cache needs max_entries >= 1 and max_bytes >= 1")
        self.clock = clock
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict[str, tuple[bytes, float, float]] = OrderedDict()
        self._bytes = 0

    @property
    def entries(self) -> int:
        """How many answers are stored."""
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """The encoded size of the stored answers."""
        return self._bytes

    def get(self, key: str, max_age: float) -> Deferred[Answer | None]:
        """A fresh copy of the answer under ``key``; None when absent, expired or older than
        ``max_age``."""
        entry = self._entries.get(key)
        if entry is None:
            return defer.succeed(None)
        data, created, ttl = entry
        age = self.clock.seconds() - created
        if age > ttl:
            self._drop(key)
            return defer.succeed(None)
        if age > max_age:
            return defer.succeed(None)
        try:
            answer, _ = decode_answer(data)
        except CacheCorrupt:  # cannot happen with bytes we wrote; be safe anyway
            self._drop(key)
            return defer.succeed(None)
        self._entries.move_to_end(key)
        return defer.succeed(answer)

    def claim(self, key: str, seconds: float) -> Deferred[bool]:
        """In one process the single flight is enough: always True."""
        return defer.succeed(True)

    def release(self, key: str) -> Deferred[None]:
        return defer.succeed(None)

    def put(self, key: str, answer: Answer, ttl: float) -> Deferred[None]:
        """Store ``answer`` for ``ttl`` seconds (not at all when ttl <= 0), evicting the least
        recently used entries past either bound; fails with TypeError when it cannot be
        encoded, EntryTooBig when it is over ``max_entry_bytes``."""
        created = self.clock.seconds()
        try:
            data = _encoded_within(answer, created, self.max_entry_bytes)
        except EntryTooBig:
            self._drop(key)
            return defer.fail()
        except TypeError:
            return defer.fail()
        self._drop(key)
        if ttl <= 0 or len(data) > self.max_bytes:
            return defer.succeed(None)
        self._entries[key] = (data, created, ttl)
        self._bytes += len(data)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (old, _, _) = self._entries.popitem(last=False)
            self._bytes -= len(old)
        return defer.succeed(None)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0])


#: With a budget (``RedisCache.max_bytes``), the entries it covers: a sorted set of entry keys
#: scored by their expiry (epoch milliseconds), and a hash of the bytes each is charged (field
#: ``#total``: their sum). Neither is under KEY_PREFIX, so nothing takes them for entries.
INDEX_KEY = "dbslayer:cache-index"
SIZES_KEY = "dbslayer:cache-sizes"
#: Bytes charged for an entry besides its answer and its key (which is stored three times:
#: entry, index, sizes): Redis's own structures, roughly.
ENTRY_OVERHEAD = 128

# A put within the budget, in one step (Redis runs a script atomically, so gateways sharing
# Redis keep one account). Entries past their expiry are gone from Redis by themselves: they
# leave the account first (a bounded number per put); then the entries due to expire first
# are deleted until the new one fits. An entry deleted by someone else (or by Redis's own
# maxmemory policy) stays charged until its expiry: the account errs on the safe side, and
# mends itself. The index and the sizes expire after the last entry they cover.
# KEYS: entry, index, sizes. ARGV: answer, created, ttl ms, now ms, expiry ms, charge, budget.
# Returns 1 (stored) or 0 (the entry alone is over the budget: nothing written).
_PUT_WITHIN_BUDGET = """
local now, charge, budget = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7])
if charge > budget then return 0 end
local total = tonumber(redis.call('HGET', KEYS[3], '#total') or '0')
local function forget(key)
  local size = redis.call('HGET', KEYS[3], key)
  if size then
    total = total - tonumber(size)
    redis.call('HDEL', KEYS[3], key)
  end
  redis.call('ZREM', KEYS[2], key)
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)) do
  forget(key)
end
forget(KEYS[1])
while total + charge > budget do
  local first = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #first == 0 then
    total = 0
    break
  end
  forget(first[1])
  redis.call('DEL', first[1])
end
if total < 0 then total = 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'answer', ARGV[1], 'created', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], ARGV[6], '#total', tostring(total + charge))
for i = 2, 3 do
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
return 1
"""


def redis_memory_warning(info: dict[str, str]) -> str | None:
    """What an operator should be told about Redis's memory settings (``INFO memory``), or
    None. Users live in the same Redis with no TTL: a ``maxmemory`` policy that may evict any
    key (``allkeys-*``) can evict a user, whose token is then refused (401) until the user is
    added again; a ``volatile-*`` policy evicts only keys with a TTL, such as cached answers."""
    policy = info.get("maxmemory_policy", "")
    try:
        maxmemory = int(info.get("maxmemory", "0") or 0)
    except ValueError:
        return None
    if maxmemory > 0 and policy.startswith("allkeys-"):
        return (
            f"Redis evicts any key when it reaches maxmemory (maxmemory-policy {policy}): "
            "users (which have no TTL) can be evicted with the cached answers; use "
            "volatile-lru or volatile-ttl, which evict only keys with a TTL"
        )
    return None


def check_redis_memory(client: Any) -> Deferred[None]:
    """Read Redis's memory settings once and log a warning if they endanger the users (an
    INFO that fails or is not allowed is only noted: the cache works without it)."""

    def checked(info: dict[str, str]) -> None:
        warning = redis_memory_warning(info)
        if warning is not None:
            log.warn("WARNING: {warning}", warning=warning)

    def unknown(failure: Failure) -> None:
        log.info("could not read Redis's memory settings: {error}", error=failure.getErrorMessage())

    d: Deferred[Any] = defer.maybeDeferred(client.info, "memory")
    return d.addCallbacks(checked, unknown)


class RedisCache:
    """The cache in Redis: one hash per key, ``{"answer": encoded bytes, "created": epoch
    text}``, with the TTL set atomically by the store.

    Bounds: an answer over ``max_entry_bytes`` is not stored (EntryTooBig); with ``max_bytes``
    the entries this cache writes are kept within that many bytes, the ones due to expire
    first deleted to make room (one Lua script per put: ``store.eval``). The TTL bounds how
    long anything stays; Redis's own ``maxmemory`` (with a ``volatile-*`` policy, so that
    users, which have no TTL, are never evicted) is the operator's bound on the whole server.

    The store's failures (exceptions of the ``unavailable`` class) become CacheUnavailable;
    other exceptions propagate unchanged (they are bugs, not outages). A corrupt entry, or one
    written by another format version, is a miss (the next put overwrites it)."""

    def __init__(
        self,
        store: Any,
        clock: Any,
        unavailable: type[Exception],
        *,
        max_entry_bytes: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("a Redis cache budget needs max_bytes >= 1 (or None: no budget)")
        self.store = store
        self.clock = clock
        self.unavailable = unavailable
        self.max_entry_bytes = max_entry_bytes
        self.max_bytes = max_bytes

    def get(self, key: str, max_age: float) -> Deferred[Answer | None]:
        """The answer under ``key``; None when absent, corrupt or older than ``max_age``."""

        def found(fields: Any) -> Answer | None:
            data = None
            if fields:
                data = fields.get("answer", fields.get(b"answer"))
            if data is None:
                return None
            try:
                answer, created = decode_answer(data)
            except CacheCorrupt as e:
                log.debug("corrupt cache entry {key}: {error}", key=key, error=str(e))
                return None
            if self.clock.seconds() - created > max_age:
                return None
            return answer

        d = defer.maybeDeferred(self.store.hgetall, key)
        return d.addCallbacks(found, self._translate)

    def claim(self, key: str, seconds: float) -> Deferred[bool]:
        """Take the key's lock for ``seconds`` (Redis SET NX): True when this process got it,
        so only one process of all that missed runs the query. A failing store lets the
        caller run it (True)."""
        d = defer.maybeDeferred(
            self.store.set, key + ":lock", b"1", ex=max(0.001, seconds), nx=True
        )
        d.addErrback(lambda failure: failure.trap(self.unavailable) and True)
        return d.addCallback(bool)

    def release(self, key: str) -> Deferred[None]:
        d = defer.maybeDeferred(self.store.delete, key + ":lock")
        d.addErrback(lambda failure: failure.trap(self.unavailable) and None)
        return d.addCallback(lambda _: None)

    def put(self, key: str, answer: Answer, ttl: float) -> Deferred[None]:
        """Store ``answer`` for ``ttl`` seconds (not at all when ttl <= 0); fails with
        CacheUnavailable when the store does, TypeError when it cannot be encoded,
        EntryTooBig when it is over ``max_entry_bytes`` (or alone over ``max_bytes``)."""
        created = self.clock.seconds()
        try:
            data = _encoded_within(answer, created, self.max_entry_bytes)
        except (EntryTooBig, TypeError):
            return defer.fail()
        if ttl <= 0:
            return defer.succeed(None)
        if self.max_bytes is not None:
            return self._put_within_budget(key, data, created, ttl)
        mapping: dict[str, bytes | str | int] = {"answer": data, "created": str(created)}
        d = defer.maybeDeferred(self.store.hset_many, key, mapping, ttl=ttl)
        return d.addCallbacks(lambda _: None, self._translate)

    def _put_within_budget(
        self, key: str, data: bytes, created: float, ttl: float
    ) -> Deferred[None]:
        budget = self.max_bytes
        assert budget is not None
        ttl_ms = max(1, math.ceil(ttl * 1000))
        now_ms = math.floor(created * 1000)
        charge = len(data) + 3 * len(key) + ENTRY_OVERHEAD
        args: list[bytes | str | int] = [
            data, str(created), ttl_ms, now_ms, now_ms + ttl_ms, charge, budget
        ]  # fmt: skip
        d = defer.maybeDeferred(
            self.store.eval, _PUT_WITHIN_BUDGET, [key, INDEX_KEY, SIZES_KEY], args
        )

        def written(stored: Any) -> None:
            if stored != 1:
                raise EntryTooBig(charge, budget)

        return d.addCallbacks(written, self._translate)

    def _translate(self, failure: Failure) -> Failure:
        if failure.check(self.unavailable):
            raise CacheUnavailable(str(failure.value)) from failure.value
        return failure


# ------------------------------------------------------------------ single flight


class SingleFlight:
    """Concurrent misses on one key run the work once; the others wait for its result.

    Every caller gets its own Deferred, fired with the result (or the failure) of the one
    run; ``copy_result``, when given, makes the value each *later* caller receives (made
    before any caller's callbacks run, so no caller sees another's changes); without it they
    all receive the same object. The key is forgotten when the work finishes, before any
    caller's Deferred fires. A caller that cancelled its Deferred is skipped; the work goes on
    for the others."""

    def __init__(self, copy_result: Callable[[Any], Any] | None = None) -> None:
        self.copy_result = copy_result
        self._waiting: dict[str, list[Deferred[Any]]] = {}

    @property
    def in_flight(self) -> int:
        """How many keys have work running."""
        return len(self._waiting)

    def run(self, key: str, work: Callable[[], Deferred[T]]) -> Deferred[T]:
        """Start ``work()`` for ``key``, or wait for the run already going."""
        mine: Deferred[T] = Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(mine)
            return mine
        self._waiting[key] = [mine]
        defer.maybeDeferred(work).addBoth(self._finish, key)
        return mine

    def _finish(self, result: Any, key: str) -> None:
        waiting = self._waiting.pop(key)
        if isinstance(result, Failure):
            for d in waiting:
                if not d.called:
                    d.errback(result)
            return
        values: list[Any] = [result]
        for _ in waiting[1:]:
            if self.copy_result is None:
                values.append(result)
                continue
            try:
                values.append(self.copy_result(result))
            except Exception:
                values.append(Failure())
        for d, value in zip(waiting, values):
            if d.called:
                continue
            if isinstance(value, Failure):
                d.errback(value)
            else:
                d.callback(value)


# ------------------------------------------------------------------ front door


class AnswerCache:
    """What the executor asks: serve a request from the cache, or run it and keep its answer.

    ``fetch`` answers ``(answer, outcome)``: "hit" (served from the cache), "miss" (ran, via
    the single flight, and stored unless it carries an SQL error) or "bypass" (the store is
    unreachable: ran directly, nothing stored). Events ("hit", "miss", "bypass") go to
    ``on_event`` for the statistics; a put that fails adds a "bypass" event ("too_big" when
    the answer is over the store's size limit), the answer is still returned as a "miss". The put is not waited for: the answer is encoded at once, and
    the callers get it while the store writes. Each caller gets its own Answer object."""

    def __init__(
        self,
        backend_cache: MemoryCache | RedisCache,
        clock: Any,
        *,
        default_ttl: float = 0.0,
        max_ttl: float = 3600.0,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if default_ttl < 0 or max_ttl <= 0:
            raise ValueError("the cache needs default_ttl >= 0 and max_ttl > 0")
        self.backend_cache = backend_cache
        self.clock = clock  # the stores timestamp entries with their own clock
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.on_event = on_event
        self.flight = SingleFlight(copy_result=copy_answer)
        #: How long a process that missed waits for another one's answer before running the
        #: query itself, and how often it looks.
        self.lock_seconds = 30.0
        self.poll_interval = 0.02

    def ttl_for(self, requested: float | None) -> float | None:
        """The age a request accepts: its CACHE, else ``default_ttl``, capped at ``max_ttl``;
        None (do not use the cache) when that is 0."""
        ttl = self.default_ttl if requested is None else requested
        if not ttl or ttl <= 0:
            return None
        return float(min(ttl, self.max_ttl))

    def fetch(
        self, key: str, max_age: float, work: Callable[[], Deferred[Answer]]
    ) -> Deferred[tuple[Answer, str]]:
        """A cached answer no older than ``max_age``, or ``work()``'s, with the outcome."""
        if max_age <= 0:
            return self._bypass(work)

        def looked_up(answer: Answer | None) -> Any:
            if answer is not None:
                self._event("hit")
                return (answer, "hit")
            self._event("miss")
            d = self.flight.run(key, lambda: self._run_and_store(key, max_age, work))
            return d.addCallback(lambda ran: (ran, "miss"))

        def unavailable(failure: Failure) -> Deferred[tuple[Answer, str]]:
            failure.trap(CacheUnavailable)
            return self._bypass(work)

        d = defer.maybeDeferred(self.backend_cache.get, key, max_age)
        return d.addCallbacks(looked_up, unavailable)

    def _bypass(self, work: Callable[[], Deferred[Answer]]) -> Deferred[tuple[Answer, str]]:
        self._event("bypass")
        d = defer.maybeDeferred(work)
        return d.addCallback(lambda ran: (ran, "bypass"))

    def _run_and_store(
        self, key: str, max_age: float, work: Callable[[], Deferred[Answer]]
    ) -> Deferred[Answer]:
        def store(answer: Answer) -> Any:
            # The flight lasts until the answer is stored, so a miss that looked while it was
            # being stored joins this flight instead of running the query again (one Redis
            # connection answers in order: a GET sent before the store sees the flight).
            if answer.error is None:
                ttl = min(max_age, self.max_ttl)
                put = defer.maybeDeferred(self.backend_cache.put, key, answer, ttl)
                put.addErrback(self._put_failed, key)
                return put.addCallback(lambda _: answer)
            return answer

        def run() -> Deferred[Answer]:
            return defer.maybeDeferred(work).addCallback(store)

        return self._claimed(key, max_age, run)

    def _claimed(
        self, key: str, max_age: float, run: Callable[[], Deferred[Answer]]
    ) -> Deferred[Answer]:
        """Across processes (workers, gateways sharing Redis): the process that takes the
        key's lock runs the query; the others wait for its answer to appear in the cache
        (polling), and run the query themselves only if it does not come in time."""
        deadline = self.clock.seconds() + self.lock_seconds

        def claimed(mine: bool) -> Deferred[Answer]:
            if mine:
                # Look again: another process may have stored the answer and released the
                # lock between this process's miss and its claim.
                d: Deferred[Any] = defer.maybeDeferred(self.backend_cache.get, key, max_age)
                d.addCallbacks(owned, lambda failure: failure.trap(CacheUnavailable) and run())
                d.addBoth(lambda result: self._release(key, result))
                return d
            return poll()

        def owned(found: Answer | None) -> Any:
            return found if found is not None else run()

        def poll() -> Deferred[Answer]:
            if self.clock.seconds() >= deadline:
                return run()
            d: Deferred[Any] = task.deferLater(
                self.clock, self.poll_interval, self.backend_cache.get, key, max_age
            )
            d.addCallback(lambda found: found if found is not None else poll())
            d.addErrback(lambda failure: failure.trap(CacheUnavailable) and run())
            return d

        return self.backend_cache.claim(key, self.lock_seconds).addCallback(claimed)

    def _release(self, key: str, result: Any) -> Any:
        d = self.backend_cache.release(key)
        return d.addBoth(lambda _: result)

    def _put_failed(self, failure: Failure, key: str) -> None:
        if failure.check(EntryTooBig):
            self._event("too_big")  # served, not stored
            return
        self._event("bypass")
        if not failure.check(CacheUnavailable):
            log.failure("could not cache the answer for {key}", failure, key=key)

    def _event(self, outcome: str) -> None:
        if self.on_event is not None:
            self.on_event(outcome)
