"""Service assembly: the gateway as a Twisted ``MultiService`` (used by ``dbslayer serve``,
the twistd plugin and ``conf/dbslayer.tac``).

Stopping (``/shutdown``, SIGTERM, twistd) drains: for ``drain_delay`` seconds the gateway
leaves its fleet (``/ready`` 503, every answer ``Connection: close``, still serving: api.drain),
then new requests get 503, the listeners close, requests in flight finish (bounded by
``drain_timeout``), then the pools close.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import IO, Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, inlineCallbacks
from twisted.internet.error import TimeoutError
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from api.admin import ADMIN_SEGMENTS, AdminApp, is_loopback_peer, readable_without_credentials
from api.app import GatewayApp
from api.browser import BrowserGuard
from api.drain import Drain
from api.fastpath import dispatch
from api.fleet import gateway_version, instance_name
from api.http import BodyBudget, GatewaySite, authorization, json_error
from api.observe import RequestRecorder
from api.peers import PeerStats
from api.webhooks import (
    event_hub,
    health_reporter,
    slow_reporter,
    writer_reporter,
    wsrep_reporter,
)
from api.workers import BACKLOG, WorkerContext, stop_reactor
from conf.settings import BackendSpec, Settings
from gateway.auth import Authenticator
from gateway.backends import open_backend
from gateway.cache import AnswerCache, MemoryCache, RedisCache, check_redis_memory
from gateway.demo import ensure_demo_database
from gateway.executor import Executor
from gateway.fairness import InFlightPerUser, user_limit
from gateway.galera import galera_report
from gateway.health import HealthChecks, HealthPolicy, HealthTracker
from gateway.redis import RedisClient, RedisService, RedisUnavailable
from gateway.router import BackendStatus, Router
from gateway.users import UserStore
from stats.core import GatewayStats

log = Logger()

#: Pause after the last request in flight finished, so its answer leaves the socket buffers.
FLUSH_SECONDS = 0.1


class MainResource(Resource):
    """The main port: DBSlayer routes, and the admin routes where they are enabled there.

    ``GET``/``POST`` on ``/db`` and ``/dbform`` go straight to the app's handlers (the hot path
    skips Klein's URL matching); everything else is routed by the Klein apps."""

    isLeaf = True

    def __init__(self, app: GatewayApp, gateway: Any, admin: Any | None) -> None:
        super().__init__()
        self.direct = {b"/db": app.db, b"/dbform": app.dbform}
        self.gateway = gateway
        self.admin = admin

    def render(self, request: Any) -> Any:
        handler = self.direct.get(request.path)
        if handler is not None and request.method in (b"GET", b"POST"):
            return dispatch(handler, request) or NOT_DONE_YET
        first = request.postpath[0] if request.postpath else b""
        if self.admin is not None and first in ADMIN_SEGMENTS:
            return self.admin.render(request)
        return self.gateway.render(request)


class Utf8Front(Resource):
    """A Klein resource behind a check that the Host and the (percent-decoded) path it will
    decode as UTF-8 are UTF-8.

    Klein decodes both before routing; on bytes that are not UTF-8 it logs a traceback per
    request and answers a plain-text 400. Here such a request gets a JSON 400 and no log
    line beyond the access log's."""

    isLeaf = True

    def __init__(self, klein: Any) -> None:
        super().__init__()
        self.klein = klein

    def render(self, request: Any) -> Any:
        try:
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return json_error(request, 400, "the Host header is not valid UTF-8")
        try:
            b"/".join(request.prepath + request.postpath).decode("utf-8")
        except UnicodeDecodeError:
            return json_error(request, 400, "the path is not valid UTF-8 (once %-decoded)")
        return self.klein.render(request)


class HTTPService(Service):
    """Listens on one address; ``port`` is the listening port once started."""

    def __init__(
        self,
        name: str,
        site: GatewaySite,
        host: str,
        port: int,
        reactor: Any,
        fd: int | None = None,
    ) -> None:
        self.setName(name)
        #: A listening socket inherited from the master (api.workers), shared with the other
        #: workers of this server; None: bind ``host:port`` here.
        self.fd = fd
        self.site = site
        self.host = host
        self.requested_port = port
        self.reactor = reactor
        self.listening: Any = None

    @property
    def port(self) -> int:
        return int(self.listening.getHost().port) if self.listening else self.requested_port

    def startService(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            sock = socket.socket(fileno=fd)  # (the family is read from the descriptor)
            try:
                self.listening = self.reactor.adoptStreamPort(sock.fileno(), sock.family, self.site)
            finally:
                sock.close()  # the reactor holds its own copy of the descriptor
        else:
            self.listening = self.reactor.listenTCP(
                self.requested_port, self.site, backlog=BACKLOG, interface=self.host
            )
        super().startService()
        host = f"[{self.host}]" if ":" in self.host else self.host
        log.info(
            "dbslayer {name} listening on http://{host}:{port}/",
            name=self.name,
            host=host,
            port=self.port,
        )

    def stopService(self) -> Any:
        super().stopService()
        if self.listening is not None:
            listening, self.listening = self.listening, None
            return listening.stopListening()
        return None


class GatewayService(MultiService):
    """The whole gateway; stops in order: refuse new requests, close listeners, drain, close
    the pools."""

    def __init__(
        self,
        executor: Executor,
        sites: list[GatewaySite],
        drain_timeout: float,
        reactor: Any,
        access_log: IO[str] | None,
        drain: Drain | None = None,
    ) -> None:
        super().__init__()
        self.executor = executor
        self.sites = sites
        self.drain_timeout = drain_timeout
        self.reactor = reactor
        self.access_log = access_log
        self.drain = drain if drain is not None else Drain(reactor, 0, sites)

    @inlineCallbacks
    def stopService(self) -> Any:
        if self.drain.delay > 0:
            log.info(
                "dbslayer leaving: /ready answers 503 and answers close their connections; "
                "still serving for {t} s",
                t=self.drain.delay,
            )
        yield self.drain.leave()
        self.drain.stop_accepting()
        in_flight = sum(site.in_flight for site in self.sites)
        log.info(
            "dbslayer stopping: {n} request(s) in flight, waiting up to {t} s",
            n=in_flight,
            t=self.drain_timeout,
        )
        yield super().stopService()  # the listeners close; connections stay open
        idle = DeferredList([site.wait_idle() for site in self.sites], fireOnOneErrback=True)
        idle.addTimeout(self.drain_timeout, self.reactor)
        try:
            yield idle
        except (CancelledError, TimeoutError):
            log.warn(
                "dbslayer stopping with {n} request(s) still in flight after {t} s",
                n=sum(site.in_flight for site in self.sites),
                t=self.drain_timeout,
            )
        pause: Deferred[None] = Deferred()
        self.reactor.callLater(FLUSH_SECONDS, pause.callback, None)
        yield pause
        self.executor.close()
        if self.access_log is not None and self.access_log is not sys.stdout:
            self.access_log.close()
        self.drain.stopped()
        log.info("dbslayer stopped")


def make_service(
    settings: Settings, reactor: Any = None, worker: WorkerContext | None = None
) -> GatewayService:
    """Everything the gateway runs, as one MultiService (``worker``: this process is one of
    several serving the same port)."""
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
            reactor_lane=settings.reactor_lane,
            galera=mode == "galera",
        )
        for spec in specs
    ]
    for spec in specs:
        log.info("backend {name}: {dsn}", name=spec.name, dsn=spec.display())
    stats = GatewayStats(
        reactor,
        buckets=settings.stats_buckets,
        bucket_seconds=settings.stats_bucket_seconds,
        start=worker.start if worker is not None else None,
    )
    peers = PeerStats(worker.run_dir, stats, reactor) if worker is not None else None
    statuses = [BackendStatus(spec.name, role=spec.role, weight=spec.weight) for spec in specs]
    router = Router(statuses, mode)
    events, event_services = event_hub(
        settings, reactor, stats, worker.slot if worker is not None else None, os.environ
    )
    backend_events = health_reporter(events, router.status)

    def health_changed(name: str, old: str, new: str) -> None:
        stats.record_state_change(name, new, old)
        backend_events(name, old, new)

    health = HealthChecks(
        reactor,
        {s.name: HealthTracker(s, _health_policy(settings)) for s in statuses},
        {b.name: b.probe for b in backends},
        _health_policy(settings),
        on_change=health_changed,
    )
    if hasattr(health, "on_wsrep_change"):  # (Galera mode's checks)
        health.on_wsrep_change = wsrep_reporter(events)
    if hasattr(router, "on_writer_change"):
        router.on_writer_change = writer_reporter(events)
    if mode == "galera":
        health.on_checked = lambda name: _rechoose_writer(router)
    redis = users_redis = None
    if settings.redis_url:

        def redis_client() -> RedisClient:
            return RedisClient(
                settings.redis_url,
                reactor,
                timeout=settings.redis_timeout,
                on_error=lambda reason: stats.record_event("redis", "errors"),
            )

        redis = redis_client()
        if settings.auth:
            # User look-ups have a connection (and a circuit breaker) of their own: on the
            # cache's they would wait behind its big replies, in order, and fail (503) when
            # cache traffic saturates it.
            users_redis = redis_client()
    store: MemoryCache | RedisCache
    if redis is not None:
        store = RedisCache(
            redis,
            reactor,
            RedisUnavailable,
            max_entry_bytes=settings.cache_max_entry_bytes,
            max_bytes=settings.cache_redis_bytes or None,
        )
    else:
        store = MemoryCache(
            reactor,
            max_entries=settings.cache_memory_entries,
            max_bytes=settings.cache_memory_bytes,
            max_entry_bytes=settings.cache_max_entry_bytes,
        )
    cache = AnswerCache(
        store,
        reactor,
        default_ttl=float(settings.cache_default_ttl),
        max_ttl=float(settings.cache_max_ttl),
        on_event=lambda outcome: stats.record_event("cache", outcome),
    )
    authenticator = None
    if settings.auth and users_redis is not None:
        authenticator = Authenticator(
            UserStore(users_redis),
            reactor,
            ttl=settings.auth_cache_ttl,
            unavailable=RedisUnavailable,
            on_event=lambda outcome: stats.record_event("auth", outcome),
        )
    executor = Executor(
        backends,
        router,
        reactor,
        max_statement_time=settings.max_statement_time,
        stats=stats,
        health=health,
        cache=cache,
        max_rows=settings.max_rows,
        connect_timeout=settings.connect_timeout,
        # (without authentication there is one anonymous user: --max-in-flight is the limit)
        user_limit=(
            InFlightPerUser(user_limit(settings.max_user_in_flight, settings.pool_max))
            if authenticator is not None
            else None
        ),
    )
    stats.backend_info = executor.backend_info
    executor.gtid_wait = settings.gtid_wait_ms / 1000  # (read your writes: gateway.position)
    if settings.slow_statement_ms:
        executor.slow_seconds = settings.slow_statement_ms / 1000
        executor.on_slow = slow_reporter(events, settings.slow_statement_ms)

    access_log = _open_access_log(settings.access_log)
    recorder = RequestRecorder(stats, reactor, access_log)
    gateway = GatewayApp(executor, settings.max_request_bytes, authenticator)
    gateway.streaming = True  # MainResource dispatches /db itself and leaves streams open
    # A client that goes away stops its statement; the request is logged with status 499.
    # A streamed answer the client stops reading is stopped at the idle timeout.
    gateway.on_abandoned = recorder.finished
    gateway.clock, gateway.stall_timeout = reactor, settings.idle_timeout
    gateway.ignore_unknown_keys = settings.compat == "original"  # (as the reference did)
    sites: list[GatewaySite] = []

    def shutdown() -> None:
        log.info("dbslayer: shutdown requested over HTTP")
        if worker is not None:
            worker.stop_server()  # the master stops every worker, this one included
        else:
            reactor.callLater(0, stop_reactor, reactor)

    def readiness() -> Deferred[dict[str, str]]:
        names = [b.name for b in backends]
        d = DeferredList([health.check_now(name) for name in names], consumeErrors=True)
        return d.addCallback(lambda _: {name: router.status(name).state for name in names})

    admin_user = None
    if authenticator is not None:
        checker = authenticator

        def admin_user(request: Any) -> Deferred[Any]:
            return checker.authenticate(authorization(request))

    drain = Drain(reactor, settings.drain_delay, sites)
    admin = AdminApp(
        stats,
        readiness,
        shutdown,
        settings.drain_timeout,
        admin_user,
        peers=peers.gather if peers is not None else None,
        protect_monitoring=settings.protect_admin,
        drain=drain,
    )
    if mode == "galera":
        admin.galera = lambda: galera_report(router.statuses.values(), router.writer)
    stats.in_flight = lambda: sum(site.db_in_flight for site in sites)  # (not /stats itself)

    body_budget = BodyBudget(settings.max_body_memory)  # (shared by the main and admin ports)

    def site_for(resource: Any, host: str) -> GatewaySite:
        site = GatewaySite(
            resource,
            settings.max_request_bytes,
            reactor,
            settings.max_in_flight,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            body_budget=body_budget,
            timeout=settings.idle_timeout,
        )
        site.browser = BrowserGuard(host, settings.allowed_hosts, settings.allowed_origins)
        site.compat = settings.compat == "original"  # (answers as the C original gave them)
        site.on_finished = recorder.finished
        site.on_refused = recorder.refused
        sites.append(site)
        return site

    top = GatewayService(executor, sites, settings.drain_timeout, reactor, access_log, drain)
    health.setName("health")
    health.setServiceParent(top)
    event_services.setServiceParent(top)
    if peers is not None:
        peers.setServiceParent(top)
    for name, client in (("redis", redis), ("redis-users", users_redis)):
        if client is not None:
            check = check_redis_memory if client is redis else None
            redis_service = RedisService(client, on_start=check)
            redis_service.setName(name)
            redis_service.setServiceParent(top)
    main = MainResource(
        gateway,
        Utf8Front(gateway.resource()),
        Utf8Front(admin.resource()) if settings.admin_on_main_port else None,
    )
    inherited = worker.fds if worker is not None else {}
    main_site = site_for(main, settings.host)
    main_site.fast_handlers = dict(main.direct)
    main_service = HTTPService(
        "http", main_site, settings.host, settings.port, reactor, fd=inherited.get("http")
    )
    main_service.setServiceParent(top)
    # (the port it listens on: with --port 0 known once listening)
    stats.instance = lambda: instance_name(settings.instance, main_service.port)
    stats.version = gateway_version()
    if settings.admin_port:
        HTTPService(
            "admin",
            site_for(Utf8Front(admin.resource()), settings.admin_host),
            settings.admin_host,
            settings.admin_port,
            reactor,
            fd=inherited.get("admin"),
        ).setServiceParent(top)
    for host in {settings.host} | ({settings.admin_host} if settings.admin_port else set()):
        if not is_loopback_peer(host) and authenticator is None:
            log.warn(
                "WARNING: listening on {host}, which is not a loopback address, and "
                "authentication is off: anyone who can reach this port can run any SQL "
                "on the backends.",
                host=host,
            )
    open_monitoring = readable_without_credentials(
        (settings.host, settings.admin_on_main_port),
        settings.admin_host if settings.admin_port else None,
        protected=authenticator is not None and settings.protect_admin,
    )
    if open_monitoring:
        log.warn(
            "WARNING: /stats, /stats/log (every client's SQL), /stats/errors and /metrics can "
            "be read without credentials on {hosts}, which is not a loopback address; turn on "
            "--auth (with --protect-admin, its default), or serve the admin routes on a "
            "loopback --admin-host with --admin-on-main-port false.",
            hosts=", ".join(open_monitoring),
        )
    return top


def _rechoose_writer(router: Router) -> None:
    """Galera mode, after each health result: the router re-chooses its writer (logged)."""
    old = router.writer
    new = router.refresh()
    if new != old:
        log.info("galera: the writer is now {new} (was {old})", new=new, old=old)


def _health_policy(settings: Settings) -> HealthPolicy:
    return HealthPolicy(
        interval=settings.health_interval,
        fall=settings.health_fall,
        rise=settings.health_rise,
        max_backoff=settings.health_max_backoff,
        confirm_interval=min(0.5, settings.health_interval / 4),
        timeout=settings.connect_timeout + 1,
        max_lag=float(settings.max_replica_lag) if settings.max_replica_lag else None,
        # (auto never picks galera: the setting says it)
        galera=settings.mode == "galera",
        galera_donor_reads=settings.galera_donor_reads,
    )


def _open_access_log(path: str) -> IO[str] | None:
    if not path:
        return None
    if path == "-":
        return sys.stdout
    return open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by GatewayService
