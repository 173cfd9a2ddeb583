"""Leaving a fleet: the phases of a gateway's stop behind a load balancer.

A load balancer (HAProxy checking ``/ready``) learns that a gateway is going only from its
health checks, ``inter * fall`` seconds after the gateway stops answering them well. A gateway
that closed its listeners at once on SIGTERM failed the requests the balancer still sent it
meanwhile. So a stop has phases:

``serving``
    Normal service.
``leaving`` (for ``--drain-delay`` seconds; skipped when it is 0, today's behaviour)
    ``/ready`` answers 503 ``{"ready": false, "draining": true}`` at once, ``/health`` stays
    200 (the process is alive), and every other request is served as usual, its answer with
    ``Connection: close`` so that the client (or the balancer) opens its next connection
    elsewhere. The listeners stay open: a connection that arrives still gets served.
``draining``
    The listeners close (a new connection is refused: a connect failure, which the balancer
    may safely retry on another host, since nothing was sent), requests on open connections
    get 503, and the requests in flight finish, up to ``--drain-timeout``.
``stopped``
    The pools are closed.

:class:`Drain` holds the phase and the timing, on an injected clock; the service
(api.service.GatewayService) walks it, the sites (api.http.GatewaySite) and ``/ready``
(api.admin) read it. Under ``--workers N`` each worker walks it when the master forwards
SIGTERM (the master waits ``drain_delay + drain_timeout`` before it kills one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater

SERVING = "serving"
LEAVING = "leaving"
DRAINING = "draining"
STOPPED = "stopped"
PHASES = (SERVING, LEAVING, DRAINING, STOPPED)


class Drain:
    """The stop phases of one gateway process (see the module docstring).

    ``sites`` are told what each phase asks of them: ``leaving`` (every answer closes its
    connection) and ``draining`` (new requests get 503)."""

    def __init__(self, clock: Any, delay: float, sites: Sequence[Any] = ()) -> None:
        if delay < 0:
            raise ValueError("the drain delay cannot be negative")
        self.clock = clock
        self.delay = delay
        self.sites = sites
        self.phase = SERVING
        #: When the leaving phase began (clock seconds), None before.
        self.left_at: float | None = None
        self._leaving: Deferred[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether ``/ready`` may say ready: only while serving."""
        return self.phase == SERVING

    def remaining(self) -> float:
        """Seconds of the leaving phase still to go (0 outside it)."""
        if self.phase != LEAVING or self.left_at is None:
            return 0.0
        return max(0.0, self.left_at + self.delay - self.clock.seconds())

    def leave(self) -> Deferred[None]:
        """Begin leaving (``/ready`` 503, answers with ``Connection: close``); fires when the
        delay is over. Called again (a second SIGTERM, ``/shutdown`` during a SIGTERM), it
        answers the same wait; once past leaving, at once."""
        if self.phase == SERVING:
            self.phase = LEAVING
            self.left_at = self.clock.seconds()
            for site in self.sites:
                site.leaving = True
            if self.delay > 0:
                self._leaving = deferLater(self.clock, self.delay, lambda: None)
            else:
                self._leaving = succeed(None)
        if self.phase == LEAVING and self._leaving is not None and not self._leaving.called:
            waiter: Deferred[None] = Deferred()

            def over(result: Any) -> Any:
                waiter.callback(None)
                return result

            self._leaving.addBoth(over)
            return waiter
        return succeed(None)

    def stop_accepting(self) -> None:
        """The draining phase: the sites answer new requests with 503 (the service closes
        the listeners)."""
        self.phase = DRAINING
        for site in self.sites:
            site.leaving = True
            site.draining = True

    def stopped(self) -> None:
        self.phase = STOPPED
