"""Our small interface to Redis, around txredisapi: every call bounded, none ever waits forever.

txredisapi, left to itself, waits for a connection as long as Redis is down and holds the
commands issued meanwhile. :class:`RedisClient` puts three things in front of it:

- a time limit on every call (``timeout``, measured on the injected clock): the call fails with
  :class:`RedisUnavailable` saying what went wrong (connection refused, no connection or no
  reply within the limit, an error reply);
- a short circuit breaker: after a failure, calls fail at once, without touching the network or
  queueing, for ``retry_after`` = max(0.5, timeout) seconds; then one call is let through (the
  others still fail at once while it runs) and its success closes the breaker. A call made
  while the last connection attempt failed fails at once too, with that reason, and calls
  waiting for a connection are failed as soon as an attempt fails (not at their time limit);
- values as bytes (``charset=None``, no number conversion): what was stored comes back.

Things learnt from txredisapi's source (1.6), which shaped this module:
- with ``charset=None`` its ``multi()`` and ``watch()`` compare the status reply to the *str*
  ``'OK'``, fail, and keep the connection checked out for good (every later call then waits
  for a connection that never comes back). Transactions are therefore sent as plain
  ``MULTI`` ... ``EXEC`` commands inside a ``pipeline()``, which has the connection to itself
  and returns it when the replies are in.
- ``SET ... EX`` takes whole seconds only (a float is refused by Redis); expiries are sent as
  milliseconds (``PX`` / ``PEXPIRE``).
- its default number conversion turns the bytes ``b"123"`` into the int 123, and SCAN's cursor
  comes back as bytes: both are switched off or converted here.
- its reconnection backoff grows to 10 s; here it stops at 2 s, so a restarted Redis is used
  again within about two seconds.

The connection is built from txredisapi's public pieces (``RedisFactory.startConnecting``, as
its ``lazyConnection`` does) so that connection failures are seen (for the messages and the
fail-fast) and the endpoint uses the injected reactor; an IP address is connected to directly
(HostnameEndpoint would report a refusal only after its 0.3 s happy-eyeballs delay).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import txredisapi
from twisted.application.service import Service
from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "RedisAddress",
    "RedisClient",
    "RedisService",
    "RedisUnavailable",
    "parse_redis_url",
]


class RedisUnavailable(Exception):
    """A Redis call failed: not reachable, too slow, or an error reply. The message says which."""


# ------------------------------------------------------------------ addresses


@attrs.frozen
class RedisAddress:
    """Where Redis is: ``host``/``port`` (TCP) or ``path`` (unix socket), database, credentials."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str = attrs.field(default="", repr=False)
    username: str = ""
    path: str = ""  # a unix socket (unix://...); host and port are unused then

    @property
    def where(self) -> str:
        """For messages: ``host:port`` or ``unix:/path`` (never the password)."""
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_URL_FORMS = (
    "use redis://[[user]:password@]host[:port][/db] or unix://[[user]:password@]/path[?db=N]"
)


def parse_redis_url(url: str) -> RedisAddress:
    """A ``redis://`` or ``unix://`` URL as a RedisAddress; ValueError (password masked) if bad."""

    def bad(why: str) -> ValueError:
        return ValueError(f"bad Redis URL {mask_url(url)!r}: {why}")

    try:
        parts = urlsplit(url.strip())
    except ValueError as e:  # unbalanced brackets of an IPv6 address
        raise bad(str(e)) from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise bad("the port must be a number from 1 to 65535")
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "unix"):
        raise bad(_URL_FORMS)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"db"})
    if unknown:
        raise bad(f"unknown parameter {unknown[0]!r} (only db=N is understood)")
    db_text = query.get("db", [""])[-1]
    if scheme == "redis":
        path_db = parts.path.strip("/")
        if path_db and db_text and path_db != db_text:
            raise bad("the database is given twice, differently")
        db_text = db_text or path_db
    if db_text and not db_text.isdigit():
        raise bad(f"the database must be a number, not {db_text!r}")
    fields: dict[str, Any] = {
        "db": int(db_text or 0),
        "password": unquote(parts.password or ""),
        "username": unquote(parts.username or ""),
    }
    if scheme == "unix":
        if not parts.path:
            raise bad("a unix:// URL needs the socket's path, as in unix:///run/redis.sock")
        return RedisAddress(path=unquote(parts.path), **fields)
    if not parts.hostname:
        raise bad("no host")
    return RedisAddress(host=parts.hostname, port=port or 6379, **fields)


def mask_url(url: str) -> str:
    """``url`` with the password (what follows ``user:`` before the last ``@``) as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


# ------------------------------------------------------------------ the connection


class _Factory(txredisapi.RedisFactory):  # type: ignore[misc]
    """txredisapi's factory with a shorter reconnection backoff, reporting connect errors."""

    initialDelay = 0.5
    maxDelay = 2.0

    def __init__(self, address: RedisAddress, timeout: float, note: Callable[[str], None]):
        super().__init__(
            address.where,
            address.db or None,
            1,  # one connection: commands are pipelined on it; a transaction has it briefly
            isLazy=True,
            charset=None,
            password=address.password or None,
            replyTimeout=timeout,
            convertNumbers=False,
            username=address.username or None,
        )
        self.reconnect = True
        self._note = note
        # fired (and then forgotten) by txredisapi on the first connection or a failed AUTH
        self.deferred.addErrback(lambda _: None)

    def connectionError(self, why: str) -> None:  # AUTH or SELECT refused
        self._note(why.removeprefix("Redis error: "))
        super().connectionError(why)


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """An endpoint that tells ``note`` why each connection attempt failed (None: it worked)."""

    def __init__(self, endpoint: Any, note: Callable[[str | None], None], timeout: float):
        self._endpoint = endpoint
        self._note = note
        self._timeout = timeout

    def connect(self, factory: Any) -> Deferred[Any]:
        def connected(protocol: Any) -> Any:
            self._note(None)
            return protocol

        def failed(failure: Failure) -> Failure:
            if failure.check(error.ConnectionRefusedError):
                self._note("connection refused")
            elif failure.check(error.TimeoutError, defer.TimeoutError):
                self._note(f"no connection within {self._timeout:g} s")
            elif not failure.check(CancelledError):
                self._note(failure.getErrorMessage())
            return failure

        d: Deferred[Any] = self._endpoint.connect(factory)
        return d.addCallbacks(connected, failed)


def _tcp_endpoint(reactor: Any, address: RedisAddress, timeout: float) -> Any:
    """An IP address is connected to directly (a refusal is known at once); a host name is
    resolved first (HostnameEndpoint, which also tries each of its addresses)."""
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
    tcp = TCP4ClientEndpoint if ip.version == 4 else TCP6ClientEndpoint
    return tcp(reactor, address.host, address.port, timeout=timeout)


def _encode(value: bytes | str | int) -> bytes:
    """An argument as bytes, so txredisapi's encoder cannot fail halfway through a pipeline."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    raise TypeError(f"Redis values are bytes, str or int, not {type(value).__name__}")


def _milliseconds(seconds: float, what: str) -> int:
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{what} must be a positive number of seconds, got {seconds!r}")
    return max(1, math.ceil(seconds * 1000))


# ------------------------------------------------------------------ the client


class RedisClient:
    """Redis calls that fail with RedisUnavailable, in bounded time, and fast while it is down.

    Construct, then :meth:`start` (the connection is made in the background) and :meth:`stop`;
    :class:`RedisService` does both for a service tree."""

    def __init__(
        self,
        url: str,
        clock: IReactorTime,
        *,
        timeout: float = 1.0,
        on_error: Callable[[str], None] | None = None,
        reactor: Any = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"the Redis timeout must be above 0 seconds, got {timeout!r}")
        self.address = parse_redis_url(url)
        self.clock: Any = clock  # Any: mypy cannot call zope interface methods
        self.timeout = float(timeout)
        self.retry_after = max(0.5, self.timeout)
        self.on_error = on_error
        self._reactor = reactor
        self._factory: Any = None
        self._connect_error: str | None = None  # why the last connection attempt failed
        self._failed_at: float | None = None  # the breaker is open since then (None: closed)
        self._last_failure = ""
        self._probing = False  # the one call let through after retry_after is running
        self._stopping = False
        # calls in flight, with why they were abandoned (None: they were not)
        self._in_flight: dict[Deferred[Any], str | None] = {}

    def __repr__(self) -> str:
        return f"<RedisClient {self.address.where} db {self.address.db}>"

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background; returns at once."""
        if self._factory is not None:
            return
        if self._reactor is None:
            from twisted.internet import reactor as global_reactor

            self._reactor = global_reactor
        self._stopping = False
        self._connect_error = None
        self._failed_at = None
        self._probing = False
        self._factory = _Factory(self.address, self.timeout, self._note_connect)
        if self.address.path:
            endpoint: Any = UNIXClientEndpoint(
                self._reactor, self.address.path, timeout=self.timeout
            )
        else:
            endpoint = _tcp_endpoint(self._reactor, self.address, self.timeout)
        self._factory.startConnecting(_WatchedEndpoint(endpoint, self._note_connect, self.timeout))

    def stop(self) -> Deferred[None]:
        """Fail the calls in flight, disconnect, stop reconnecting; fires once all is closed."""
        factory, self._factory = self._factory, None
        self._stopping = True
        self._abandon("the client stopped")
        if factory is None:
            return succeed(None)
        closed: Deferred[Any] = factory.disconnect()
        return closed.addCallback(lambda _: None)

    @property
    def available(self) -> bool:
        """False while the breaker is open (the last call found Redis unavailable)."""
        return self._failed_at is None

    # -------------------------------------------------------------- commands

    def ping(self) -> Deferred[bool]:
        """True when Redis answers PONG."""
        return self._call("PING", lambda redis: redis.ping()).addCallback(
            lambda reply: reply in (b"PONG", "PONG")
        )

    def get(self, key: str) -> Deferred[bytes | None]:
        return self._call("GET", lambda redis: redis.get(key))

    def set(
        self, key: str, value: bytes | str, *, ex: float | None = None, nx: bool = False
    ) -> Deferred[bool]:
        """SET; ``ex`` in seconds (fractions allowed); with ``nx`` False when the key exists."""
        px = None if ex is None else _milliseconds(ex, "ex")
        data = _encode(value)
        return self._call(
            "SET", lambda redis: redis.set(key, data, pexpire=px, only_if_not_exists=nx)
        ).addCallback(lambda reply: reply is not None)

    def delete(self, *keys: str) -> Deferred[int]:
        """DEL: how many of ``keys`` existed."""
        if not keys:
            return succeed(0)
        return self._call("DEL", lambda redis: redis.delete(list(keys)))

    def hgetall(self, key: str) -> Deferred[dict[str, bytes]]:
        """The hash's fields (names decoded as UTF-8, values bytes); {} when there is none."""

        def decode(fields: Mapping[Any, bytes]) -> dict[str, bytes]:
            return {
                name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name): value
                for name, value in fields.items()
            }

        return self._call("HGETALL", lambda redis: redis.hgetall(key)).addCallback(decode)

    def hset_many(
        self,
        key: str,
        mapping: Mapping[str, bytes | str | int],
        *,
        ttl: float | None = None,
    ) -> Deferred[None]:
        """HSET all of ``mapping`` (and PEXPIRE ``ttl``) in one MULTI/EXEC: nobody sees half."""
        if not mapping:
            raise ValueError("hset_many needs at least one field")
        command: list[bytes | str] = ["HSET", key]
        for name, value in mapping.items():
            command += [_encode(name), _encode(value)]
        commands = [command]
        if ttl is not None:
            commands.append(["PEXPIRE", key, str(_milliseconds(ttl, "ttl"))])
        return self._call("MULTI/EXEC", lambda redis: _transaction(redis, commands)).addCallback(
            lambda _: None
        )

    def scan(self, match: str, count: int = 100) -> Deferred[list[str]]:
        """Every key matching ``match`` (sorted, decoded), by SCAN; each round trip is bounded."""
        return defer.inlineCallbacks(self._scan)(match, count)

    def _scan(self, match: str, count: int) -> Generator[Deferred[Any], Any, list[str]]:
        keys: set[str] = set()
        cursor = 0

        def step(redis: Any) -> Deferred[Any]:
            return redis.scan(cursor, match, count)

        while True:
            reply = yield self._call("SCAN", step)
            cursor = int(reply[0])
            keys.update(
                key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
                for key in reply[1]
            )
            if cursor == 0:
                return sorted(keys)

    def info(self, section: str) -> Deferred[dict[str, str]]:
        """INFO ``section``: its ``name:value`` lines as a dict (values as text)."""

        def parse(reply: Any) -> dict[str, str]:
            text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
            fields: dict[str, str] = {}
            for line in text.splitlines():
                name, sep, value = line.partition(":")
                if sep and not line.startswith("#"):
                    fields[name.strip()] = value.strip()
            return fields

        return self._call("INFO", lambda redis: redis.execute_command("INFO", section)).addCallback(
            parse
        )

    def eval(
        self, script: str, keys: Sequence[str] = (), args: Iterable[bytes | str | int] = ()
    ) -> Deferred[Any]:
        """Run a Lua script (EVALSHA once Redis knows it): for a check-and-write in one step."""
        values = [_encode(arg) for arg in args]
        return self._call("EVAL", lambda redis: redis.eval(script, list(keys), values))

    # -------------------------------------------------------------- the shell

    def _call(self, command: str, run: Callable[[Any], Deferred[Any]]) -> Deferred[Any]:
        """Run one command through txredisapi, bounded, behind the breaker."""
        factory = self._factory
        if factory is None:
            return fail(
                RedisUnavailable(f"Redis at {self.address.where}: the client is not running")
            )
        if self._failed_at is not None:
            wait = self._failed_at + self.retry_after - self.clock.seconds()
            if self._probing or wait > 0:
                again = "being tried again now" if self._probing else f"next try in {wait:.1f} s"
                return fail(
                    RedisUnavailable(
                        f"Redis at {self.address.where} is unavailable: "
                        f"{self._last_failure} ({again})"
                    )
                )
            self._probing = True
        if not factory.size and self._connect_error is not None:
            return fail(self._failed(command, self._connect_error))
        try:
            d = run(factory.handler)
        except Exception:
            d = fail()
        d.addTimeout(self.timeout, self.clock)
        self._in_flight[d] = None

        def settled(result: Any) -> Any:
            abandoned = self._in_flight.pop(d, None)
            if isinstance(result, Failure):
                return self._translate(result, command, abandoned)
            return self._succeeded(result)

        return d.addBoth(settled)

    def _abandon(self, reason: str) -> None:
        """Fail the calls in flight with ``reason`` (connection refused, client stopped)."""
        for d in list(self._in_flight):
            if self._in_flight.get(d, reason) is None:
                self._in_flight[d] = reason
                d.cancel()

    def _succeeded(self, result: Any) -> Any:
        self._failed_at = None
        self._probing = False
        return result

    def _translate(self, failure: Failure, command: str, abandoned: str | None) -> Any:
        if failure.check(defer.FirstError):  # how a pipeline reports its first failed reply
            failure = failure.value.subFailure
        if failure.check(txredisapi.ResponseError):
            # Redis answered: it is there (the breaker closes), but the command was refused
            self._succeeded(None)
            reason = f"error reply: {failure.getErrorMessage()}"
            if self.on_error is not None:
                self.on_error(reason)
            raise RedisUnavailable(f"Redis at {self.address.where}: {command} failed: {reason}")
        if failure.check(defer.TimeoutError):
            if self._factory is not None and not self._factory.size:
                last = f" (last attempt: {self._connect_error})" if self._connect_error else ""
                reason = f"no connection within {self.timeout:g} s{last}"
            else:
                reason = f"no reply within {self.timeout:g} s"
        elif failure.check(CancelledError):
            self._probing = False
            if abandoned is None:
                return failure  # the caller cancelled: not a Redis failure
            if self._stopping:
                raise RedisUnavailable(
                    f"Redis at {self.address.where}: {command} cancelled: the client stopped"
                )
            reason = abandoned
        elif failure.check(txredisapi.TimeoutError):
            reason = f"no reply within {self.timeout:g} s"
        elif failure.check(txredisapi.ConnectionError):
            reason = "connection lost" if "Lost" in failure.getErrorMessage() else "not connected"
        elif failure.check(txredisapi.RedisError, error.ConnectError, ConnectionError):
            reason = failure.getErrorMessage()
        else:
            return failure  # a bug, not an outage
        raise self._failed(command, reason)

    def _failed(self, command: str, reason: str) -> RedisUnavailable:
        """Open (or keep open) the breaker, report, and make the exception."""
        self._failed_at = self.clock.seconds()
        self._probing = False
        self._last_failure = reason
        if self.on_error is not None:
            self.on_error(reason)
        return RedisUnavailable(f"Redis at {self.address.where}: {command} failed: {reason}")

    def _note_connect(self, reason: str | None) -> None:
        self._connect_error = reason
        if reason is not None and self._factory is not None and not self._factory.size:
            # no connection to wait for: whoever waits for one is told why now, not at timeout
            self._abandon(reason)


def _transaction(redis: Any, commands: Sequence[Sequence[bytes | str]]) -> Deferred[list[Any]]:
    """MULTI, ``commands``, EXEC, written at once on a connection of its own (a pipeline)."""

    def send(pipe: Any) -> Deferred[list[Any]]:
        try:
            pipe.execute_command("MULTI")
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute_command("EXEC")
        except Exception:
            # half a transaction must never be sent, nor the connection left in pipeline mode
            if pipe.transport is not None:
                pipe.transport.abortConnection()
            raise
        replies: Deferred[list[Any]] = pipe.execute_pipeline()
        return replies

    def results(replies: list[Any]) -> list[Any]:
        executed = replies[-1]
        if not isinstance(executed, list):
            raise txredisapi.ResponseError(f"EXEC answered {executed!r}")
        for reply in executed:
            if isinstance(reply, Exception):
                raise reply
        return executed

    d: Deferred[Any] = redis.pipeline()
    return d.addCallback(send).addCallback(results)


class RedisService(Service):
    """Starts the client with the service tree and stops it (disconnects) with it;
    ``on_start`` is called with the client once it is started (a check of the server)."""

    def __init__(
        self, client: RedisClient, on_start: Callable[[RedisClient], Any] | None = None
    ) -> None:
        self.client = client
        self.on_start = on_start

    def startService(self) -> None:
        super().startService()
        self.client.start()
        if self.on_start is not None:
            self.on_start(self.client)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.client.stop()
