"""Authentication and roles (no HTTP): who is asking, and may they do this?

Credentials come from an ``Authorization`` header value: ``Bearer <token>`` or ``Basic``
(user name + token). Users live in Redis (``gateway.users``); a lookup is trusted in process
for ``ttl`` seconds so Redis is not asked on every request, which also bounds how long a
disabled or removed user keeps working. When Redis cannot be reached and no fresh lookup is
cached, authentication fails closed (503), never open.

Roles: ``read`` may run read statements only (and the database enforces it too: the request
runs read-only), ``write`` may run anything on its allowed backends, ``admin`` also reads the
monitoring routes when they are protected.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail, succeed

ROLES = ("read", "write", "admin")
CHALLENGE = 'Bearer realm="dbslayer", Basic realm="dbslayer", charset="UTF-8"'


class AuthFailed(Exception):
    """Refused: ``status`` is 401 (who are you?), 403 (not allowed) or 503 (cannot tell now)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.frozen
class Credentials:
    """What the client presented: a token, with a user name for Basic."""

    token: str = attrs.field(repr=False)
    name: str | None = None

    @property
    def token_sha256(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()


def parse_authorization(header: str | None) -> Credentials:
    """Credentials from an Authorization header value; AuthFailed(401) when absent or bad."""
    if not header or not header.strip():
        raise AuthFailed(
            401,
            "authentication required: send Authorization: Bearer <token> "
            "(or Basic with user name and token)",
        )
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials(token=value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:  # (binascii.Error, UnicodeDecodeError, and non-ASCII text)
            raise AuthFailed(401, "malformed Basic credentials") from None
        name, colon, token = decoded.partition(":")
        if not colon or not name or not token:
            raise AuthFailed(401, "Basic credentials must be user name:token")
        return Credentials(token=token, name=name)
    raise AuthFailed(401, "unsupported Authorization scheme: use Bearer or Basic")


class UserLike(Protocol):
    name: str
    role: str
    servers: tuple[str, ...]
    enabled: bool

    def token_matches(self, token: str) -> bool: ...


class UserLookup(Protocol):
    def get(self, name: str) -> Deferred[Any]: ...

    def by_token(self, token: str) -> Deferred[Any]: ...


class Authenticator:
    """Checks credentials against the user store, trusting a lookup for ``ttl`` seconds."""

    def __init__(
        self,
        users: UserLookup,
        clock: Any,
        *,
        ttl: float,
        unavailable: type[Exception],
        on_event: Callable[[str], None] | None = None,
        max_entries: int = 10_000,
    ) -> None:
        self.users = users
        self.clock = clock
        self.ttl = ttl
        self.unavailable = unavailable
        self.on_event = on_event
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()

    def authenticate(self, header: str | None) -> Deferred[Any]:
        """Fires with the user, or fails with AuthFailed."""
        try:
            credentials = parse_authorization(header)
        except AuthFailed as e:
            self._event("failure")
            return fail(e)
        key = (credentials.name or "", credentials.token_sha256)
        cached = self._seen.get(key)
        if cached is not None and self.clock.seconds() - cached[0] < self.ttl:
            return self._decide(credentials, cached[1])
        if credentials.name is None:
            d = self.users.by_token(credentials.token)
        else:
            d = self.users.get(credentials.name)

        def found(user: Any) -> Deferred[Any]:
            self._remember(key, user)
            return self._decide(credentials, user)

        def unreachable(failure: Any) -> Any:
            if failure.check(self.unavailable):
                self._event("failure")
                raise AuthFailed(
                    503,
                    "cannot check credentials now: the user store (Redis) is unreachable; "
                    "retry later",
                )
            return failure

        return d.addCallbacks(found, unreachable)

    def _remember(self, key: tuple[str, str], user: Any) -> None:
        self._seen[key] = (self.clock.seconds(), user)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def _decide(self, credentials: Credentials, user: UserLike | None) -> Deferred[Any]:
        if user is None or not user.token_matches(credentials.token):
            self._event("failure")
            return fail(AuthFailed(401, "unknown user or wrong token"))
        if not user.enabled:
            self._event("failure")
            return fail(AuthFailed(403, f"user {user.name} is disabled"))
        self._event("success")
        return succeed(user)

    def _event(self, outcome: str) -> None:
        if self.on_event is not None:
            self.on_event(outcome)


def authorize_statements(user: UserLike | None, read_only: bool, account: bool = False) -> None:
    # ``read_only``: every statement is a read (or a plain USE, which the reset undoes).
    """A read user may run read statements only (the first of two checks; the database,
    running the request on the backend's read account, is the second). Statements on
    database accounts (SET PASSWORD, ALTER/RENAME/DROP USER, GRANT, REVOKE...) are for admin
    users only: the gateway's own account needs no privilege to change its own password, so
    without this a write user could lock the gateway out of its backend."""
    if user is not None and account and user.role != "admin":
        raise AuthFailed(
            403,
            f"user {user.name} has role {user.role}: statements on database accounts (SET "
            "PASSWORD, CREATE/ALTER/RENAME/DROP USER, GRANT, REVOKE, roles), stored programs "
            "that run them, and dynamic SQL that could hide them (PREPARE, EXECUTE IMMEDIATE) "
            "need role admin",
        )
    if user is not None and user.role == "read" and not read_only:
        raise AuthFailed(
            403,
            f"user {user.name} has role read: only read statements (SELECT, SHOW, DESCRIBE, "
            "EXPLAIN) are allowed",
        )


def allowed_backends(user: UserLike | None, names: list[str]) -> list[str]:
    """The backends of ``names`` this user may use (all when it has no restriction)."""
    if user is None or not user.servers:
        return names
    return [name for name in names if name in user.servers]


def require_admin(user: UserLike) -> None:
    if user.role != "admin":
        raise AuthFailed(403, f"user {user.name} has role {user.role}: monitoring needs admin")
