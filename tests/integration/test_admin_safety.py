"""The admin plane's safety against a real gateway, MariaDB and Redis: /shutdown refused
through a real reverse proxy on the same host (with and without authentication), /shutdown
needing an admin user under --auth, monitoring protected by default under --auth, and the
start-up warning when /stats* can be read without credentials from other hosts."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.admin import readable_without_credentials
from conf.load import load_settings
from tests.servers import (
    Gateway,
    MariaDB,
    Redis,
    add_user,
    bearer,
    free_port,
    raw_request,
)

#: A reverse proxy on this host (twisted.web's ReverseProxyResource), adding the headers the
#: named kind of proxy adds to what it forwards; "transparent" adds none (as nginx's
#: proxy_pass by default).
PROXY = textwrap.dedent(
    """
    import sys
    from twisted.internet import reactor
    from twisted.web import proxy, server

    kind, target, listen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ADDED = {
        "apache": ["X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Server"],
        "nginx": ["X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto"],
        "rfc7239": ["Forwarded"],
        "via": ["Via"],
        "transparent": [],
    }[kind]

    class Forwarding(proxy.ReverseProxyResource):
        def getChild(self, path, request):
            child = super().getChild(path, request)
            return Forwarding(child.host, child.port, child.path, child.reactor)

        def render(self, request):
            client = request.getClientAddress().host.encode()
            host = request.getHeader(b"host") or b""
            values = {
                "X-Forwarded-For": client,
                "X-Real-IP": client,
                "X-Forwarded-Host": host,
                "X-Forwarded-Server": b"proxy.example",
                "X-Forwarded-Proto": b"https",
                "Forwarded": b"for=" + client + b";host=" + host + b";proto=https",
                "Via": b"1.1 proxy.example",
            }
            for name in ADDED:
                request.requestHeaders.addRawHeader(name.encode(), values[name])
            return super().render(request)

    reactor.listenTCP(listen, server.Site(Forwarding("127.0.0.1", target, b"")),
                      interface="127.0.0.1")
    reactor.run()
    """
)


@pytest.fixture
def reverse_proxy() -> Iterator[Callable[[str, int], int]]:
    """Start reverse proxies to a port: ``start(kind, port)`` gives the proxy's port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str, target: int) -> int:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", PROXY, kind, str(target), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return port
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the proxy did not start"
                time.sleep(0.05)

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def alive(gw: Gateway) -> bool:
    time.sleep(0.3)  # (a shutdown answers first, then stops)
    return gw.proc is not None and gw.proc.poll() is None and gw.get("/health").status == 200


def shut_down_directly(gw: Gateway, headers: dict[str, str] | None = None) -> None:
    reply = gw.get("/shutdown", headers=headers)
    assert reply.status == 200 and reply.json()["shutting_down"] is True, reply
    assert gw.proc is not None and gw.proc.wait(20) == 0


PROXIES = ("apache", "nginx", "rfc7239", "via")


def test_shutdown_through_a_reverse_proxy_refused(
    mariadb: MariaDB, gateway_factory: Any, reverse_proxy: Any
) -> None:
    """Through real reverse proxies on the same host (apache-, nginx-like, RFC 7239, Via),
    /shutdown is 403 naming the proxy's header, though the proxy connects from loopback; the
    gateway keeps serving, through the proxy too, and a direct /shutdown still works."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn())
    for kind in PROXIES:
        port = reverse_proxy(kind, gw.port)
        for method in ("GET", "POST"):
            reply = raw_request(port, method, "/shutdown", {}, b"" if method == "POST" else None)
            assert reply.status == 403, (kind, reply)
            error = reply.json()["ERROR"]
            assert "loopback" in error and "proxy" in error, error
        assert raw_request(port, "GET", "/health").status == 200
    assert alive(gw)
    shut_down_directly(gw)


def test_shutdown_through_a_proxy_refused_with_auth(
    mariadb: MariaDB, redis: Redis, gateway_factory: Any, reverse_proxy: Any
) -> None:
    """With --auth --protect-admin, /shutdown through the proxy is 403 even with an admin's
    token; through a proxy that adds no header, the token is what stops it (401 without);
    directly with the admin's token it shuts down."""
    admin = add_user(redis, "boss", "admin")
    gw: Gateway = gateway_factory(
        "--backend",
        mariadb.dsn(),
        "--auth",
        "--redis",
        redis.url,
        "--protect-admin",
        "--read-on-shared-account",
    )
    port = reverse_proxy("apache", gw.port)
    reply = raw_request(port, "GET", "/shutdown", bearer(admin))
    assert reply.status == 403 and "X-Forwarded-For" in reply.json()["ERROR"], reply
    transparent = reverse_proxy("transparent", gw.port)
    anonymous = raw_request(transparent, "GET", "/shutdown")
    assert anonymous.status == 401 and "Bearer" in anonymous.headers["WWW-Authenticate"]
    assert alive(gw)
    shut_down_directly(gw, bearer(admin))


def test_shutdown_needs_an_admin_under_auth(
    mariadb: MariaDB, redis: Redis, gateway_factory: Any
) -> None:
    """With --auth (--protect-admin left at its default, or turned off), /shutdown from
    loopback without credentials is 401, with a write user's 403; an admin's shuts down."""
    writer = add_user(redis, "writer", "write")
    admin = add_user(redis, "boss", "admin")
    common = ("--backend", mariadb.dsn(), "--auth", "--redis", redis.url)
    unprotected: Gateway = gateway_factory(
        *common, "--read-on-shared-account", "--protect-admin", "false"
    )
    assert unprotected.get("/shutdown").status == 401
    assert unprotected.get("/stats").status == 200  # monitoring left open on purpose
    gw: Gateway = gateway_factory(*common, "--read-on-shared-account")
    missing = gw.get("/shutdown")
    assert missing.status == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
    wrong = gw.get("/shutdown", headers=bearer("not-a-token"))
    assert wrong.status == 401
    writer_reply = gw.get("/shutdown", headers=bearer(writer))
    assert writer_reply.status == 403 and "/shutdown needs admin" in writer_reply.json()["ERROR"]
    assert alive(gw) and alive(unprotected)
    shut_down_directly(gw, bearer(admin))


def test_monitoring_needs_an_admin_under_auth_by_default(
    mariadb: MariaDB, redis: Redis, gateway_factory: Any
) -> None:
    """--auth alone protects monitoring: /stats/log (every user's SQL), /stats,
    /stats/errors and /metrics are 401 without credentials and 403 for a write user, and
    the SQL is not in those answers; an admin reads them; /health stays open."""
    writer = add_user(redis, "writer", "write")
    admin = add_user(redis, "boss", "admin")
    gw: Gateway = gateway_factory(
        "--backend", mariadb.dsn(), "--auth", "--redis", redis.url, "--read-on-shared-account"
    )
    secret_sql = "SELECT 'writers-private-query' AS q"
    assert gw.db({"SQL": secret_sql}, headers=bearer(writer)).status == 200
    for path in ("/stats/log", "/stats", "/stats/errors", "/stats/error", "/metrics"):
        anonymous = gw.get(path)
        assert anonymous.status == 401 and b"writers-private-query" not in anonymous.body, path
        assert gw.get(path, headers=bearer(writer)).status == 403, path
        assert gw.get(path, headers=bearer(admin)).status == 200, path
    log = gw.get("/stats/log", headers=bearer(admin)).json()
    assert any("writers-private-query" in entry["request"] for entry in log)
    assert gw.get("/health").status == 200


def test_protect_admin_default_and_overrides(tmp_path: Any) -> None:
    """protect_admin is on unless turned off: by default, from a config file saying true,
    and off with --protect-admin false or DBSLAYER_PROTECT_ADMIN=false."""
    auth = ["--auth", "--redis", "redis://127.0.0.1:6379/0"]
    assert load_settings(auth, {}).protect_admin is True
    assert load_settings([*auth, "--protect-admin"], {}).protect_admin is True
    assert load_settings([*auth, "--protect-admin", "false"], {}).protect_admin is False
    assert load_settings(auth, {"DBSLAYER_PROTECT_ADMIN": "false"}).protect_admin is False
    config = tmp_path / "old.toml"
    config.write_text("[auth]\nprotect_admin = true\n")
    assert load_settings([*auth, "--config", str(config)], {}).protect_admin is True


@pytest.mark.parametrize(
    ("main", "admin", "protected", "expected"),
    [
        (("127.0.0.1", True), None, False, []),
        (("0.0.0.0", True), None, False, ["0.0.0.0"]),
        (("0.0.0.0", True), None, True, []),
        (("0.0.0.0", False), "127.0.0.1", False, []),
        (("127.0.0.1", True), "10.0.0.5", False, ["10.0.0.5"]),
        (("::", True), "::", False, ["::"]),
        (("localhost", True), "::1", False, []),
    ],
)
def test_open_monitoring_addresses(
    main: tuple[str, bool], admin: str | None, protected: bool, expected: list[str]
) -> None:
    """The start-up warning names the non-loopback addresses serving /stats* without
    credentials: the main one when it serves the admin routes, the admin listener's."""
    assert readable_without_credentials(main, admin, protected) == expected


def test_start_up_warns_when_stats_are_open_to_other_hosts(
    mariadb: MariaDB, redis: Redis, gateway_factory: Any
) -> None:
    """An admin listener on every address without auth logs one warning line naming it;
    with --auth (monitoring protected by default) there is none."""
    port = free_port()
    gw: Gateway = gateway_factory(
        "--backend", mariadb.dsn(), "--admin-port", str(port), "--admin-host", "0.0.0.0"
    )
    lines = [line for line in gw.output().splitlines() if "/stats/log" in line]
    assert len(lines) == 1 and "without credentials on 0.0.0.0" in lines[0], gw.output()
    protected: Gateway = gateway_factory(
        "--backend",
        mariadb.dsn(),
        "--admin-port",
        str(free_port()),
        "--admin-host",
        "0.0.0.0",
        "--auth",
        "--redis",
        redis.url,
        "--read-on-shared-account",
    )
    assert "without credentials" not in protected.output()
