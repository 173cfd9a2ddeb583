"""Users in Redis: who may call the gateway, with which role, on which backends.

A user is the hash ``dbslayer:user:<name>``::

    token_sha256  hex SHA-256 of the token (the token itself is never stored)
    role          read | write | admin
    servers       comma-separated backend names it may use; empty = all
    enabled       1 | 0
    created       epoch seconds

and ``dbslayer:token:<sha256>`` holds the name, so a bearer token finds its user. The index is
only a pointer: :meth:`UserStore.by_token` always checks the token against the user's own hash,
so a stale index entry can never let a token in.

Writes that touch the user and its index, or that depend on whether the user exists, are one
Lua script each (EVAL), which Redis runs atomically like MULTI/EXEC but which can also check
first: a name is refused when taken, and disable/enable/rotate never resurrect a user removed
meanwhile as a half-filled hash.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Generator, Iterable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred

from gateway.redis import RedisClient

__all__ = [
    "ROLES",
    "TOKEN_PREFIX",
    "USER_PREFIX",
    "User",
    "UserError",
    "UserStore",
    "clean_servers",
    "hash_token",
    "new_token",
    "valid_name",
]

ROLES = ("read", "write", "admin")
USER_PREFIX = "dbslayer:user:"
TOKEN_PREFIX = "dbslayer:token:"
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token: what is stored instead of it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe base64: 43 characters)."""
    return secrets.token_urlsafe(32)


def valid_name(name: str) -> bool:
    """1 to 64 of letters, digits, ``_ . @ -``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


class UserError(Exception):
    """A user operation refused: unknown role, bad name, user exists, no such user."""


@attrs.frozen
class User:
    """One user as stored (without its token, which is nowhere but with its owner)."""

    name: str
    role: str
    servers: tuple[str, ...]  # allowed backends; () = all
    enabled: bool
    created: int  # epoch seconds
    token_sha256: str = attrs.field(repr=False)

    def may_use(self, backend: str) -> bool:
        """Whether this user may send statements to ``backend``."""
        return not self.servers or backend in self.servers

    def token_matches(self, token: str) -> bool:
        """Whether ``token`` is this user's (compared in constant time)."""
        return hmac.compare_digest(hash_token(token), self.token_sha256)


def _user_key(name: str) -> str:
    return USER_PREFIX + name


def _token_key(sha256: str) -> str:
    return TOKEN_PREFIX + sha256


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise UserError(
            f"bad user name {name!r}: use 1 to 64 letters, digits or the characters _ . @ -"
        )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def clean_servers(servers: Iterable[str]) -> tuple[str, ...]:
    """Backend names as stored: stripped, empty ones dropped, each once; UserError if bad."""
    names: list[str] = []
    for server in servers:
        server = server.strip()
        if not server:
            continue
        if "," in server or any(c.isspace() for c in server):
            raise UserError(f"bad backend name {server!r}: no commas or spaces")
        if server not in names:
            names.append(server)
    return tuple(names)


def _user_from_hash(name: str, fields: dict[str, bytes]) -> User | None:
    """The User in a stored hash; None when it is absent or not a complete user."""
    try:
        role = fields["role"].decode()
        sha256 = fields["token_sha256"].decode()
        enabled = fields["enabled"]
        created = int(fields["created"])
        servers = fields.get("servers", b"").decode()
    except (KeyError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if role not in ROLES or _SHA256.fullmatch(sha256) is None or enabled not in (b"0", b"1"):
        return None
    return User(
        name=name,
        role=role,
        servers=tuple(s for s in servers.split(",") if s),
        enabled=enabled == b"1",
        created=created,
        token_sha256=sha256,
    )


# KEYS: user, new token index; ARGV: name, then the hash's fields and values. 0: name taken.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

# KEYS: user; ARGV: enabled flag. 0: no such user.
_SET_ENABLED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'enabled', ARGV[1])
return 1
"""

# KEYS: user, old token index, new token index; ARGV: name, old sha256, new sha256.
# 0: the user is gone or its token changed since it was read (nothing written).
_ROTATE = """
if redis.call('HGET', KEYS[1], 'token_sha256') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'token_sha256', ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[1])
return 1
"""

# KEYS: user, its token index; ARGV: sha256 read before. 0: gone or changed meanwhile.
_REMOVE = """
if redis.call('HGET', KEYS[1], 'token_sha256') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


class UserStore:
    """Users in Redis. Failures of Redis come out as ``RedisUnavailable``, refusals as
    :class:`UserError`; both as failed Deferreds."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    def add(self, name: str, role: str, servers: Iterable[str] = ()) -> Deferred[str]:
        """Create the user; fires with its new token (shown once: only its hash is stored)."""
        return defer.inlineCallbacks(self._add)(name, role, servers)

    def _add(
        self, name: str, role: str, servers: Iterable[str]
    ) -> Generator[Deferred[Any], Any, str]:
        _check_name(name)
        _check_role(role)
        allowed = clean_servers(servers)
        token = new_token()
        sha256 = hash_token(token)
        fields: list[str] = [
            "token_sha256", sha256,
            "role", role,
            "servers", ",".join(allowed),
            "enabled", "1",
            "created", str(int(time.time())),
        ]  # fmt: skip
        done = yield self.redis.eval(_ADD, [_user_key(name), _token_key(sha256)], [name, *fields])
        if done != 1:
            raise UserError(f"user {name!r} exists already")
        return token

    def get(self, name: str) -> Deferred[User | None]:
        """The user called ``name``; None when there is none."""
        if not valid_name(name):
            return defer.succeed(None)  # no such name can be stored
        d = self.redis.hgetall(_user_key(name))
        return d.addCallback(lambda fields: _user_from_hash(name, fields))

    def by_token(self, token: str) -> Deferred[User | None]:
        """The user whose token this is (enabled or not); None when nobody's."""
        return defer.inlineCallbacks(self._by_token)(token)

    def _by_token(self, token: str) -> Generator[Deferred[Any], Any, User | None]:
        if not token:
            return None
        name = yield self.redis.get(_token_key(hash_token(token)))
        if name is None:
            return None
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            return None
        user = yield self.get(text)
        if user is None or not user.token_matches(token):
            return None
        return user  # type: ignore[no-any-return]

    def list(self) -> Deferred[list[User]]:
        """Every (complete) user, sorted by name."""
        return defer.inlineCallbacks(self._list)()

    def _list(self) -> Generator[Deferred[Any], Any, builtins.list[User]]:
        keys = yield self.redis.scan(USER_PREFIX + "*")
        names = sorted(k[len(USER_PREFIX) :] for k in keys if valid_name(k[len(USER_PREFIX) :]))
        gathered = defer.gatherResults([self.get(n) for n in names], consumeErrors=True)
        users = yield gathered.addErrback(lambda f: f.value.subFailure)  # the first failure
        return [u for u in users if u is not None]

    def disable(self, name: str) -> Deferred[None]:
        """The user's token stops working (until :meth:`enable`)."""
        return self._set_enabled(name, False)

    def enable(self, name: str) -> Deferred[None]:
        return self._set_enabled(name, True)

    def _set_enabled(self, name: str, enabled: bool) -> Deferred[None]:
        return defer.inlineCallbacks(self._set_enabled_steps)(name, enabled)

    def _set_enabled_steps(self, name: str, enabled: bool) -> Generator[Deferred[Any], Any, None]:
        _check_name(name)
        done = yield self.redis.eval(_SET_ENABLED, [_user_key(name)], ["1" if enabled else "0"])
        if done != 1:
            raise UserError(f"no such user {name!r}")

    def remove(self, name: str) -> Deferred[None]:
        """Delete the user and its token index."""
        return defer.inlineCallbacks(self._remove)(name)

    def _remove(self, name: str) -> Generator[Deferred[Any], Any, None]:
        for _ in range(3):  # again if its token was rotated between the read and the delete
            user = yield self._existing(name)
            keys = [_user_key(name), _token_key(user.token_sha256)]
            done = yield self.redis.eval(_REMOVE, keys, [user.token_sha256])
            if done == 1:
                return
        raise UserError(f"user {name!r} keeps changing; try again")

    def rotate(self, name: str) -> Deferred[str]:
        """A new token for the user; the old one stops working at once."""
        return defer.inlineCallbacks(self._rotate)(name)

    def _rotate(self, name: str) -> Generator[Deferred[Any], Any, str]:
        for _ in range(3):  # again if it was rotated between the read and the write
            user = yield self._existing(name)
            token = new_token()
            sha256 = hash_token(token)
            keys = [_user_key(name), _token_key(user.token_sha256), _token_key(sha256)]
            done = yield self.redis.eval(_ROTATE, keys, [name, user.token_sha256, sha256])
            if done == 1:
                return token
        raise UserError(f"user {name!r} keeps changing; try again")

    def _existing(self, name: str) -> Deferred[User]:
        _check_name(name)

        def found(user: User | None) -> User:
            if user is None:
                raise UserError(f"no such user {name!r}")
            return user

        return self.get(name).addCallback(found)
