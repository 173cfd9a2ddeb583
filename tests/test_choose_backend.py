"""Unit tests for gateway.executor.choose_backend: the pure backend-choice decision."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest

from gateway.executor import choose_backend
from gateway.request import Request, RequestError


@attrs.frozen
class Named:
    """A plain value standing in for a backend: choose_backend only reads its name."""

    name: str


DB1, DB2, DB3 = Named("db1"), Named("db2"), Named("db3")
BY_NAME: dict[str, Any] = {b.name: b for b in (DB2, DB1, DB3)}


def turns() -> Any:
    """A fresh round-robin over the three backends."""
    return itertools.cycle([DB1, DB2, DB3])


SQL = Request(sql="SELECT 1")
INFO = Request(info=("STAT",))
HELP_ONLY = Request(help=True)
DEBUG_ONLY = Request(debug_return_input=True)


# ------------------------------------------------------------------ named mode


@pytest.mark.parametrize("name", ["db1", "db2", "db3"])
def test_named_server_picks(name: str) -> None:
    """In named mode, SERVER picks the backend of that name."""
    request = Request(sql="SELECT 1", server=name)
    assert choose_backend(request, "named", BY_NAME, turns()) is BY_NAME[name]


def test_named_server_picks_for_info_flags() -> None:
    """In named mode, SERVER also picks the backend for an info-only request."""
    request = Request(info=("SERVER_NAME",), server="db2")
    assert choose_backend(request, "named", BY_NAME, turns()) is DB2


def test_named_does_not_consume_turns() -> None:
    """Named mode ignores the round-robin entirely."""
    ring = turns()
    choose_backend(Request(sql="SELECT 1", server="db3"), "named", BY_NAME, ring)
    assert next(ring) is DB1


@pytest.mark.parametrize("request_", [SQL, INFO], ids=["sql", "info"])
def test_named_missing_server(request_: Request) -> None:
    """In named mode, a request needing a backend without SERVER is refused, listing names."""
    with pytest.raises(RequestError) as info:
        choose_backend(request_, "named", BY_NAME, turns())
    message = str(info.value)
    assert message == "SERVER is required where backends are named; one of: db1, db2, db3"


@pytest.mark.parametrize("server", ["db4", "", "DB1", "db1 "])
def test_named_unknown_server(server: str) -> None:
    """In named mode, an unknown SERVER is refused, echoing it and listing the names sorted."""
    request = Request(sql="SELECT 1", server=server)
    with pytest.raises(RequestError) as info:
        choose_backend(request, "named", BY_NAME, turns())
    assert str(info.value) == f"unknown SERVER {server!r}; one of: db1, db2, db3"


def test_request_error_status() -> None:
    """Backend-choice refusals are RequestErrors, i.e. HTTP 400."""
    with pytest.raises(RequestError) as info:
        choose_backend(Request(sql="SELECT 1"), "named", BY_NAME, turns())
    assert info.value.status == 400


# ------------------------------------------------------------------ SERVER outside named mode


@pytest.mark.parametrize("mode", ["pool", "primary-replica"])
@pytest.mark.parametrize(
    "request_",
    [
        Request(sql="SELECT 1", server="db1"),
        Request(help=True, server="db1"),
        Request(sql="SELECT 1", server="nope"),
    ],
    ids=["sql-known-name", "help-only", "unknown-name"],
)
def test_server_outside_named_mode_refused(mode: str, request_: Request) -> None:
    """SERVER outside named mode is a request error, even when no backend is needed."""
    ring = turns()
    with pytest.raises(RequestError, match="SERVER picks a backend only where backends are named"):
        choose_backend(request_, mode, BY_NAME, ring)
    assert next(ring) is DB1


# ------------------------------------------------------------------ no backend needed


@pytest.mark.parametrize("mode", ["pool", "primary-replica", "named"])
@pytest.mark.parametrize("request_", [HELP_ONLY, DEBUG_ONLY], ids=["help", "debug"])
def test_no_backend_needed_returns_none(mode: str, request_: Request) -> None:
    """A request needing no database (only SLAYER_HELP / debug echo) gets None in every mode."""
    ring = turns()
    assert choose_backend(request_, mode, BY_NAME, ring) is None
    assert next(ring) is DB1


# ------------------------------------------------------------------ pool mode


@pytest.mark.parametrize("mode", ["pool", "primary-replica"])
def test_pool_takes_turns(mode: str) -> None:
    """Outside named mode, each request needing a backend takes the next turn."""
    ring = turns()
    picked = [choose_backend(SQL, mode, BY_NAME, ring) for _ in range(5)]
    assert picked == [DB1, DB2, DB3, DB1, DB2]


def test_pool_info_request_takes_turn() -> None:
    """An info-only request also takes a turn in pool mode."""
    ring = turns()
    assert choose_backend(INFO, "pool", BY_NAME, ring) is DB1
    assert choose_backend(SQL, "pool", BY_NAME, ring) is DB2


def test_pool_help_does_not_take_turn() -> None:
    """A help-only request between two SQL requests does not advance the round-robin."""
    ring = turns()
    assert choose_backend(SQL, "pool", BY_NAME, ring) is DB1
    assert choose_backend(HELP_ONLY, "pool", BY_NAME, ring) is None
    assert choose_backend(SQL, "pool", BY_NAME, ring) is DB2


def test_pool_uses_turns_not_names() -> None:
    """In pool mode the choice comes from the turns iterator alone, not from by_name."""
    only = Named("solo")
    ring = itertools.cycle([only])
    assert choose_backend(SQL, "pool", {}, ring) is only
