"""gateway.executor.validate_server: SERVER only where backends are named, and then known."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.executor import validate_server
from gateway.request import Request, RequestError

BY_NAME: dict[str, Any] = {"db1": object(), "db2": object()}


@pytest.mark.parametrize(
    "request_",
    [
        Request(sql="SELECT 1", server="db2"),
        Request(info=("STAT",), server="db1"),
        Request(help=True, server="db1"),
    ],
)
def test_named_known_server_passes(request_: Request) -> None:
    """In named mode a known SERVER is accepted, whatever else the request asks."""
    validate_server(request_, "named", BY_NAME)


@pytest.mark.parametrize("request_", [Request(sql="SELECT 1"), Request(info=("STAT",))])
def test_named_missing_server_lists_names(request_: Request) -> None:
    """In named mode a request needing a backend must say which, and is told the names."""
    with pytest.raises(RequestError, match="SERVER is required .*one of: db1, db2"):
        validate_server(request_, "named", BY_NAME)


@pytest.mark.parametrize(
    "request_", [Request(sql="SELECT 1", server="db9"), Request(help=True, server="db9")]
)
def test_named_unknown_server(request_: Request) -> None:
    """An unknown SERVER is refused even when no database is needed."""
    with pytest.raises(RequestError, match="unknown SERVER 'db9'; one of: db1, db2"):
        validate_server(request_, "named", BY_NAME)


def test_named_help_without_server_passes() -> None:
    """SLAYER_HELP alone needs no SERVER in named mode."""
    validate_server(Request(help=True), "named", BY_NAME)


@pytest.mark.parametrize("mode", ["pool", "primary-replica"])
@pytest.mark.parametrize(
    "request_", [Request(sql="SELECT 1", server="db1"), Request(help=True, server="db1")]
)
def test_server_outside_named_mode_refused(mode: str, request_: Request) -> None:
    """SERVER outside named mode is a request error (400), never silently ignored."""
    with pytest.raises(RequestError, match="only where backends are named") as caught:
        validate_server(request_, mode, BY_NAME)
    assert caught.value.status == 400


@pytest.mark.parametrize("mode", ["pool", "primary-replica"])
def test_no_server_outside_named_mode_passes(mode: str) -> None:
    """Without SERVER, pool and primary-replica requests pass."""
    validate_server(Request(sql="SELECT 1"), mode, BY_NAME)
