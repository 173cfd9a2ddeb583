"""Fixtures: a real MariaDB for the whole session, real gateways per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Gateway, MariaDB, Redis


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A throwaway MariaDB server with an empty ``test`` database."""
    reason = MariaDB.available()
    if reason:
        pytest.skip(reason)
    server = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    server.sql("CREATE DATABASE test CHARACTER SET utf8mb4")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """``dbslayer serve`` in front of the session's MariaDB, backend named ``db1``."""
    gw = Gateway(tmp_path_factory.mktemp("gateway"), "--backend", mariadb.dsn()).start()
    yield gw
    gw.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[object]:
    """Start gateways with custom arguments; all are stopped after the test."""
    started: list[Gateway] = []

    def start(*args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1") -> Gateway:
        if host != "127.0.0.1":
            args = (*args, "--host", host)
        gw = Gateway(tmp_path, *args, env=env, host=host).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """A throwaway redis-server for one test."""
    reason = Redis.available()
    if reason:
        pytest.skip(reason)
    server = Redis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
