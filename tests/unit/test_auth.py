"""gateway.auth: credential parsing, the lookup cache with its TTL, failing closed, roles.

The user store here is a scripted stand-in (pure decision inputs); the real Redis store is
tested in test_users.py and end to end in test_auth_cache_e2e.py."""

from __future__ import annotations

import base64
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from gateway.auth import (
    Authenticator,
    AuthFailed,
    allowed_backends,
    authorize_statements,
    parse_authorization,
    require_admin,
)


class Down(Exception):
    """The store's 'unreachable' error."""


@attrs.define
class User:
    name: str
    role: str = "write"
    servers: tuple[str, ...] = ()
    enabled: bool = True
    token: str = "secret-token"

    def token_matches(self, token: str) -> bool:
        return token == self.token


@attrs.define
class Store:
    users: dict[str, User]
    down: bool = False
    calls: int = 0

    def get(self, name: str) -> Deferred[Any]:
        self.calls += 1
        return fail(Down("redis down")) if self.down else succeed(self.users.get(name))

    def by_token(self, token: str) -> Deferred[Any]:
        self.calls += 1
        if self.down:
            return fail(Down("redis down"))
        return succeed(next((u for u in self.users.values() if u.token == token), None))


def basic(name: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()


def outcome(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    result = box[0]
    if hasattr(result, "value"):
        return result.value
    return result


def make(store: Store, ttl: float = 5.0) -> tuple[Authenticator, Clock, list[str]]:
    clock, events = Clock(), list[str]()
    return (
        Authenticator(store, clock, ttl=ttl, unavailable=Down, on_event=events.append),
        clock,
        events,
    )


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "authentication required"),
        ("", "authentication required"),
        ("Digest abc", "unsupported"),
        ("Bearer", "unsupported"),
        ("Basic !!!", "malformed"),
        ("Basic " + base64.b64encode(b"nocolon").decode(), "user name:token"),
        ("Basic " + base64.b64encode(b":tok").decode(), "user name:token"),
    ],
)
def test_bad_headers_are_401(header: str | None, message: str) -> None:
    """Missing or malformed credentials are a 401 naming the problem."""
    with pytest.raises(AuthFailed, match=message) as caught:
        parse_authorization(header)
    assert caught.value.status == 401


def test_both_header_forms() -> None:
    """Bearer carries a token; Basic a user name and a token (scheme case-insensitive)."""
    assert parse_authorization("Bearer abc").token == "abc"
    creds = parse_authorization(basic("ann", "t:with:colons").replace("Basic", "basic"))
    assert (creds.name, creds.token) == ("ann", "t:with:colons")
    assert "abc" not in repr(parse_authorization("Bearer abc"))


def test_good_credentials_pass_and_are_cached_for_the_ttl() -> None:
    """A known user passes with either form; a lookup is reused for the TTL, then redone."""
    store = Store({"ann": User("ann")})
    auth, clock, events = make(store)
    assert outcome(auth.authenticate("Bearer secret-token")).name == "ann"
    assert outcome(auth.authenticate(basic("ann", "secret-token"))).name == "ann"
    assert store.calls == 2
    clock.advance(4)
    outcome(auth.authenticate("Bearer secret-token"))
    assert store.calls == 2
    clock.advance(2)
    outcome(auth.authenticate("Bearer secret-token"))
    assert store.calls == 3 and events == ["success"] * 4


def test_wrong_token_and_unknown_user_are_401() -> None:
    """A wrong token or an unknown user is a 401 that does not say which."""
    auth, _, events = make(Store({"ann": User("ann")}))
    for header in ("Bearer nope", basic("ann", "nope"), basic("bob", "secret-token")):
        error = outcome(auth.authenticate(header))
        assert isinstance(error, AuthFailed) and error.status == 401
        assert error.message == "unknown user or wrong token"
    assert events == ["failure"] * 3


def test_disabled_user_refused_within_the_ttl() -> None:
    """Disabling a user takes effect once the cached lookup is older than the TTL."""
    store = Store({"ann": User("ann")})
    auth, clock, _ = make(store, ttl=2)
    assert outcome(auth.authenticate("Bearer secret-token")).name == "ann"
    store.users["ann"] = User("ann", enabled=False)
    assert outcome(auth.authenticate("Bearer secret-token")).name == "ann"  # still cached
    clock.advance(2.1)
    error = outcome(auth.authenticate("Bearer secret-token"))
    assert isinstance(error, AuthFailed) and error.status == 403 and "disabled" in error.message


def test_removed_user_refused_after_the_ttl() -> None:
    """A removed user is unknown (401) once the TTL has passed."""
    store = Store({"ann": User("ann")})
    auth, clock, _ = make(store, ttl=1)
    outcome(auth.authenticate(basic("ann", "secret-token")))
    del store.users["ann"]
    clock.advance(1.5)
    error = outcome(auth.authenticate(basic("ann", "secret-token")))
    assert isinstance(error, AuthFailed) and error.status == 401


def test_store_down_fails_closed_unless_freshly_cached() -> None:
    """Redis down: a fresh cached user still passes; anyone else gets 503, never let through."""
    store = Store({"ann": User("ann"), "bob": User("bob", token="bob-token")})
    auth, clock, _ = make(store, ttl=5)
    outcome(auth.authenticate("Bearer secret-token"))
    store.down = True
    assert outcome(auth.authenticate("Bearer secret-token")).name == "ann"
    error = outcome(auth.authenticate("Bearer bob-token"))
    assert isinstance(error, AuthFailed) and error.status == 503 and "unreachable" in error.message
    clock.advance(6)
    assert outcome(auth.authenticate("Bearer secret-token")).status == 503


def test_lookup_cache_is_bounded() -> None:
    """The in-process lookup cache never grows past its bound (bad tokens cannot fill memory)."""
    store = Store({})
    auth = Authenticator(store, Clock(), ttl=60, unavailable=Down, max_entries=10)
    for i in range(100):
        outcome(auth.authenticate(f"Bearer t{i}"))
    assert len(auth._seen) == 10


def test_roles() -> None:
    """read may run reads only; write and admin anything; monitoring needs admin."""
    authorize_statements(User("r", role="read"), read_only=True)
    with pytest.raises(AuthFailed, match="role read") as caught:
        authorize_statements(User("r", role="read"), read_only=False)
    assert caught.value.status == 403
    authorize_statements(User("w", role="write"), read_only=False)
    authorize_statements(None, read_only=False)
    require_admin(User("a", role="admin"))
    with pytest.raises(AuthFailed, match="needs admin"):
        require_admin(User("w", role="write"))


def test_allowed_backends() -> None:
    """A user restricted to some backends gets only those; no restriction means all."""
    names = ["db1", "db2", "db3"]
    assert allowed_backends(None, names) == names
    assert allowed_backends(User("u"), names) == names
    assert allowed_backends(User("u", servers=("db3", "db1")), names) == ["db1", "db3"]
