"""Admin routes: monitoring (``/stats``, ``/stats/log``, ``/stats/error(s)``, ``/metrics``),
probes (``/health``, ``/ready``) and ``/shutdown`` for loopback callers only.

They are served on the main port (as the reference did) and, with ``--admin-port``, on a
listener of their own, so operators can keep the admin plane off the public port.

With authentication on, monitoring needs an admin user unless ``--protect-admin false``
(``/stats/log`` shows every user's SQL), and ``/shutdown`` always needs one. ``/shutdown``
also needs a loopback peer that is not a proxy: a reverse proxy on the same host connects from
loopback on behalf of anyone, so a request carrying a proxy's headers (``Forwarded``,
``X-Forwarded-For``, ``Via``...) is refused, whatever they say. (A proxy that adds none of them
cannot be told from a local client: keep such a proxy off the admin listener, or turn
authentication on.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from werkzeug.exceptions import MethodNotAllowed, NotFound

from api.app import without_head
from api.http import (
    PAGE_OR_JSON_VARY,
    add_vary,
    auth_refusal_headers,
    json_answer,
    json_error,
    not_allowed,
    not_found,
    static_file,
    wants_html,
)
from gateway.auth import CHALLENGE, AuthFailed
from stats.core import Figures, GatewayStats
from stats.prometheus import render_metrics

#: First path segments that belong to the admin routes.
ADMIN_SEGMENTS = frozenset({b"stats", b"metrics", b"health", b"ready", b"shutdown"})
#: Headers a proxy adds to the requests it forwards (standard, de facto, and CDN ones).
PROXY_HEADERS = tuple(
    (name.lower().encode("ascii"), name)
    for name in (
        "Forwarded",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Forwarded-Server",
        "X-Real-IP",
        "Via",
        "X-Client-IP",
        "True-Client-IP",
        "CF-Connecting-IP",
        "X-Cluster-Client-IP",
    )
)


def proxy_header(request: Any) -> str | None:
    """The name of the first proxy header the request carries, or None."""
    for key, name in PROXY_HEADERS:
        if request.getHeader(key) is not None:
            return name
    return None


def require_role_admin(what: str) -> Callable[[Any], Any]:
    """A callback that passes an admin user on and refuses (403) any other."""

    def check(user: Any) -> Any:
        if user.role != "admin":
            raise AuthFailed(403, f"user {user.name} has role {user.role}: {what} needs admin")
        return user

    return check


def readable_without_credentials(
    main: tuple[str, bool] | None, admin: str | None, protected: bool
) -> list[str]:
    """The non-loopback addresses where anyone who reaches them reads /stats* (the start-up
    warning): ``main`` is the main listener's address and whether it serves the admin
    routes, ``admin`` the admin listener's address, ``protected`` whether monitoring needs
    an admin user."""
    if protected:
        return []
    hosts = []
    if main is not None and main[1]:
        hosts.append(main[0])
    if admin is not None:
        hosts.append(admin)
    return [host for host in dict.fromkeys(hosts) if not is_loopback_peer(host)]


def is_loopback_peer(host: str) -> bool:
    """True for 127.0.0.0/8, ::1, IPv4-mapped loopback and the name localhost; False for
    anything else."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class AdminApp:
    """Monitoring, probes and shutdown; state through the constructor."""

    app = Klein()

    def __init__(
        self,
        stats: GatewayStats,
        readiness: Callable[[], Deferred[dict[str, str]]],
        shutdown: Callable[[], None],
        drain_timeout: float,
        authenticate: Callable[[Any], Deferred[Any]] | None = None,
        peers: Callable[[], Deferred[list[dict[str, Any]]]] | None = None,
        protect_monitoring: bool = True,
        drain: Any = None,
    ) -> None:
        self.stats = stats
        #: The stop phases (api.drain.Drain): /ready says 503 from the moment a stop begins.
        self.drain = drain
        self.readiness = readiness
        self.shutdown = shutdown
        self.drain_timeout = drain_timeout
        #: With authentication on: the user of a request's credentials (fails with
        #: AuthFailed). /shutdown needs an admin whenever it is set.
        self.authenticate = authenticate
        #: Monitoring (/stats*, /metrics) needs an admin too (when authentication is on).
        self.protect_monitoring = protect_monitoring
        #: With several workers: gathers the other workers' exported statistics.
        self.peers = peers
        #: Galera mode: the writer and each node's wsrep state, for /ready (None: not galera).
        self.galera: Callable[[], dict[str, Any]] | None = None

    def _whole(self) -> Deferred[tuple[Figures, list[dict[str, Any]], list[dict[str, Any]]]]:
        """Figures and journals of the whole server (every worker)."""
        if self.peers is None:
            own = (self.stats.figures(), self.stats.log_entries(), self.stats.error_entries())
            return succeed(own)
        return self.peers().addCallback(self.stats.merged)

    def _guarded(self, request: Any, produce: Callable[[], Any], what: str = "monitoring") -> Any:
        """``produce()`` for an admin user when authentication is on (monitoring: unless
        ``protect_monitoring`` is off), else the refusal."""
        if self.authenticate is None or (what == "monitoring" and not self.protect_monitoring):
            return produce()
        d = self.authenticate(request)
        d.addCallback(require_role_admin(what))
        d.addCallback(lambda _: produce())

        def refused(failure: Failure) -> bytes:
            failure.trap(AuthFailed)
            error = failure.value
            auth_refusal_headers(request, error.status, CHALLENGE)
            return json_error(request, error.status, error.message)

        return d.addErrback(refused)

    def resource(self) -> Any:
        return self.app.resource()

    @app.route("/stats", methods=["GET"])
    def stats_(self, request: Any) -> Any:
        """The reference keys plus the extension figures; a browser navigating to it gets the
        dashboard page, which reads this same JSON (api.http.prefers_page: scripts, the
        original's own statistics page among them, get the JSON)."""
        add_vary(request, PAGE_OR_JSON_VARY)
        if wants_html(request):
            return static_file(request, "dashboard.html")
        return self._guarded(
            request,
            lambda: self._whole().addCallback(
                lambda whole: json_answer(request, self.stats.snapshot(whole[0]))
            ),
        )

    @app.route("/static/<path:name>", methods=["GET"])
    def static(self, request: Any, name: str) -> bytes:
        """The dashboard's static files, on the admin listener too."""
        return static_file(request, name)

    @app.route("/stats/log", methods=["GET"])
    def stats_log(self, request: Any) -> Any:
        """The last requests, oldest first."""
        return self._guarded(
            request,
            lambda: self._whole().addCallback(lambda whole: json_answer(request, whole[1])),
        )

    @app.route("/stats/error", methods=["GET"])
    @app.route("/stats/errors", methods=["GET"])
    def stats_errors(self, request: Any) -> Any:
        """The last errors, oldest first."""
        return self._guarded(
            request,
            lambda: self._whole().addCallback(lambda whole: json_answer(request, whole[2])),
        )

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: Any) -> Any:
        """Prometheus text exposition of the same figures."""

        def produce(whole: Any) -> bytes:
            body, content_type = render_metrics(self.stats, whole[0])
            request.setHeader(b"Content-Type", content_type.encode())
            request.setHeader(b"Content-Length", b"%d" % len(body))
            return body

        return self._guarded(request, lambda: self._whole().addCallback(produce))

    @app.route("/health", methods=["GET"])
    def health(self, request: Any) -> bytes:
        """Liveness: the process answers."""
        snapshot = self.stats.snapshot()
        return json_answer(request, {"status": "ok", "uptime_seconds": snapshot["uptime_seconds"]})

    @app.route("/ready", methods=["GET"])
    def ready(self, request: Any) -> Deferred[bytes]:
        """Readiness: at least one backend answers; 503 with Retry-After otherwise, and at
        once from the moment a stop begins (``draining``: a load balancer takes this host
        out while it still serves, api.drain)."""
        if self.drain is not None and not self.drain.ready:
            request.setHeader(b"Retry-After", b"1")
            known = self.stats.figures().backend_live  # (the last states: no check waited for)
            body = {
                "ready": False,
                "draining": True,
                "phase": self.drain.phase,
                "backends": {name: str(info.get("state")) for name, info in known.items()},
            }
            return succeed(json_answer(request, body, 503))

        def answer(states: dict[str, str]) -> bytes:
            ready = any(state == "up" for state in states.values())
            if not ready:
                request.setHeader(b"Retry-After", b"1")
            body: dict[str, Any] = {"ready": ready, "backends": states}
            if self.galera is not None:  # (galera mode: each node's wsrep state, the writer)
                body["galera"] = self.galera()
            return json_answer(request, body, 200 if ready else 503)

        return self.readiness().addCallback(answer)

    @app.route("/shutdown", methods=["GET", "POST"])
    def shutdown_(self, request: Any) -> Any:
        """Stop the gateway, for loopback peers only (not through a proxy), and with
        authentication on for admin users only: answer, drain, exit 0."""
        if request.method == b"HEAD":  # (werkzeug would answer HEAD by shutting down)
            request.setHeader(b"Allow", b"GET, POST")
            return json_error(request, 405, "method HEAD not allowed on /shutdown; use GET or POST")
        peer = getattr(request.getClientAddress(), "host", "")
        refused = "shutdown is allowed from the gateway's own host (loopback) only"
        if not is_loopback_peer(peer):
            return json_error(request, 403, refused)
        proxied = proxy_header(request)
        if proxied is not None:
            return json_error(
                request,
                403,
                f"{refused}, not through a proxy: this request carries a proxy's {proxied} "
                "header, so it came from somewhere else",
            )
        return self._guarded(request, lambda: self._shut_down(request), "/shutdown")

    def _shut_down(self, request: Any) -> bytes:
        site = getattr(getattr(request, "channel", None), "site", None)
        in_flight = max(0, getattr(site, "in_flight", 1) - 1)
        request.notifyFinish().addBoth(lambda _: self.shutdown())
        return json_answer(
            request,
            {"shutting_down": True, "in_flight": in_flight, "drain_timeout": self.drain_timeout},
        )

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Failure) -> bytes:
        return not_found(request, "admin routes are /stats, /metrics, /health, /ready, /shutdown")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: Any, failure: Failure) -> bytes:
        return not_allowed(request, without_head(failure))
