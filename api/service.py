"""Service assembly: the gateway as a Twisted ``MultiService`` (used by ``dbslayer serve``,
the twistd plugin and ``conf/dbslayer.tac``)."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.logger import Logger

from api.app import GatewayApp
from api.http import GatewaySite
from conf.settings import BackendSpec, Settings
from gateway.backends import open_backend
from gateway.demo import ensure_demo_database
from gateway.executor import Executor

log = Logger()


class BackendsService(Service):
    """Owns the backends' pools: they start with the reactor and are closed on stop."""

    def __init__(self, executor: Executor) -> None:
        self.setName("backends")
        self.executor = executor

    def stopService(self) -> None:
        super().stopService()
        self.executor.close()


class HTTPService(Service):
    """Listens on the configured address; ``port`` is the listening port once started."""

    def __init__(self, site: GatewaySite, host: str, port: int, reactor: Any) -> None:
        self.setName("http")
        self.site = site
        self.host = host
        self.requested_port = port
        self.reactor = reactor
        self.listening: Any = None

    @property
    def port(self) -> int:
        return int(self.listening.getHost().port) if self.listening else self.requested_port

    def startService(self) -> None:
        self.listening = self.reactor.listenTCP(self.requested_port, self.site, interface=self.host)
        super().startService()
        log.info(
            "dbslayer listening on http://{host}:{port}/db",
            host=_url_host(self.host),
            port=self.port,
        )

    def stopService(self) -> Any:
        super().stopService()
        if self.listening is not None:
            listening, self.listening = self.listening, None
            return listening.stopListening()
        return None


def make_service(settings: Settings, reactor: Any = None) -> MultiService:
    """Everything the gateway runs, as one MultiService."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    mode, specs = settings.resolve_backends()
    if not specs:
        created = ensure_demo_database(settings.demo_database)
        specs = (BackendSpec(name="demo", driver="sqlite", path=settings.demo_database),)
        mode = "pool"
        log.warn(
            "No backend configured: serving the demo SQLite database at {path}{new} "
            "(table users). Pass --backend mysql://user:password@host:3306/db to serve MySQL.",
            path=settings.demo_database,
            new=" (just created)" if created else "",
        )
    backends = [
        open_backend(
            spec,
            reactor,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            write_timeout=settings.write_timeout,
            pool_min=settings.pool_min,
            pool_max=settings.pool_max,
        )
        for spec in specs
    ]
    for spec in specs:
        log.info("backend {name}: {dsn}", name=spec.name, dsn=spec.display())
    executor = Executor(backends, mode)
    app = GatewayApp(executor, settings.max_request_bytes)
    site = GatewaySite(app.resource(), settings.max_request_bytes, reactor=reactor)
    if not _is_loopback(settings.host):
        log.warn(
            "WARNING: listening on {host}, which is not a loopback address, and authentication "
            "is off: anyone who can reach this port can run any SQL on the backends.",
            host=settings.host,
        )
    top = MultiService()
    BackendsService(executor).setServiceParent(top)
    HTTPService(site, settings.host, settings.port, reactor).setServiceParent(top)
    return top


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
