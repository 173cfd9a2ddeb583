"""Webhook delivery: gateway events POSTed as signed JSON, never in a request's way.

Each configured URL has a :class:`WebhookSender`: a bounded queue (full: the oldest event is
dropped, counted) and one delivery in flight at a time, so events arrive in the order they
happened. A delivery is one POST of the event's JSON with

- ``Content-Type: application/json``, ``User-Agent: dbslayer/<version>``,
- ``X-Dbslayer-Event: <name>`` and ``X-Dbslayer-Delivery: <id>`` (the event's id, the same on
  every retry, so a receiver can drop duplicates),
- ``X-Dbslayer-Signature: sha256=<hex HMAC-SHA256 of the exact body with the secret>``, as
  GitHub signs its webhooks; a receiver recomputes it and compares with
  ``hmac.compare_digest``.

A connect error, a timeout (``--webhook-timeout`` per attempt, connecting included), a 5xx,
408 or 429 is tried again after a pause that starts at ``--webhook-backoff`` and doubles (with
jitter) up to ``--webhook-max-backoff``, a receiver's ``Retry-After`` honoured within that cap;
after ``--webhook-attempts`` tries the delivery is dropped ("gave_up"). Any other status (3xx,
4xx) drops it at once ("refused"): sending the same body again would not change the answer.

Nothing on the request path waits: :meth:`WebhookSender.offer` appends to a deque and, when
idle, schedules a send. URLs show only as ``scheme://host:port/path``
(:func:`conf.webhooks.shown_url`). All timing is on the injected reactor, so the decisions are
tested on ``twisted.internet.task.Clock`` with a fake agent.

:func:`event_hub` assembles the :class:`gateway.events.Events` hub of a gateway: the webhook
sink, the log-line sink, and the error-rate watch (:class:`ErrorRateService`).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import socket
from collections import deque
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from conf.settings import SettingError
from conf.webhooks import shown_url, webhook_secret
from gateway.events import (
    CLUSTER_EVENTS,
    ErrorRateWatch,
    Event,
    Events,
    backend_event,
    known_events,
    primary_event,
    unknown_events,
)

log = Logger()

#: Bytes of a receiver's answer read (and thrown away) before the connection is closed.
MAX_ANSWER_BYTES = 64 * 1024
#: Why a delivery was dropped (the keys of ``dropped`` in /stats).
DROP_REASONS = ("queue_full", "gave_up", "refused")
#: Log a queue-full drop the first time and then every this many.
LOG_EVERY_DROPS = 1000


def version() -> str:
    """The gateway's version, for the User-Agent."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("dbslayer")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def signature(secret: bytes, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def delivery_headers(event: Event, body: bytes, secret: bytes, agent_name: str) -> Headers:
    """The headers of one delivery of ``event`` (the same on every attempt)."""
    return Headers(
        {
            b"Content-Type": [b"application/json"],
            b"User-Agent": [agent_name.encode()],
            b"X-Dbslayer-Event": [event.name.encode()],
            b"X-Dbslayer-Delivery": [event.id.encode()],
            b"X-Dbslayer-Signature": [signature(secret, body).encode()],
        }
    )


# ---------------------------------------------------------------------------- decisions


def outcome_of(status: int | None) -> str:
    """What an attempt's result means: ``delivered`` (2xx), ``retry`` (no answer, 5xx, 408,
    429) or ``refused`` (any other status: trying again would get the same answer)."""
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "refused"


def retry_after_seconds(values: list[bytes] | None, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (delta-seconds or an HTTP date);
    None when absent or unreadable."""
    if not values:
        return None
    text = values[0].decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


@attrs.frozen
class RetryPolicy:
    """How often and how soon a delivery is tried again."""

    attempts: int = 5
    first: float = 0.5
    cap: float = 30.0
    #: The pause is drawn from ``[delay * (1 - jitter), delay]``.
    jitter: float = 0.2

    def delay(
        self,
        retry: int,
        uniform: Callable[[float, float], float] = random.uniform,
        retry_after: float | None = None,
    ) -> float:
        """The pause before retry number ``retry`` (1 = the first retry): ``first`` doubled
        each time, capped, with jitter; a receiver's Retry-After is honoured up to the cap."""
        base = min(self.first * (2 ** (retry - 1)), self.cap)
        pause = uniform(base * (1 - self.jitter), base)
        if retry_after is not None:
            pause = max(pause, min(retry_after, self.cap))
        return min(pause, self.cap)


@attrs.define
class WebhookCounters:
    """What became of one URL's deliveries (``/stats`` ``webhooks``)."""

    delivered: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    retried: int = 0
    dropped: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    last_error: str | None = None
    last_error_at: float | None = None
    last_status: int | None = None


def describe_failure(error: BaseException, timeout: float) -> str:
    """A short, URL-free description of a failed attempt (for ``last_error``)."""
    if isinstance(error, (TimeoutError, defer.TimeoutError, defer.CancelledError)):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectingCancelledError):
        return f"could not connect within {timeout:g} s"
    if isinstance(error, DNSLookupError):
        return "host name not found"
    if isinstance(error, ConnectError):
        return "could not connect"
    name = type(error).__name__
    if name in ("ResponseFailed", "ResponseNeverReceived", "ConnectionLost", "ConnectionDone"):
        return "connection lost before an answer"
    return name


# ---------------------------------------------------------------------------- the shell


@implementer(IBodyProducer)
class _Body:
    """The event's bytes, written at once."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body) if body else UNKNOWN_LENGTH

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Drain(Protocol):
    """Reads a receiver's answer body and throws it away, up to a size and a time."""

    def __init__(self, clock: Any, timeout: float) -> None:
        self.seen = 0
        self.clock = clock
        self.timer: Any = None
        self.timeout = timeout

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        self.timer = self.clock.callLater(self.timeout, self._stop)

    def dataReceived(self, data: bytes) -> None:
        self.seen += len(data)
        if self.seen > MAX_ANSWER_BYTES:
            self._stop()

    def _stop(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Any = None) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class WebhookSender:
    """One webhook URL: its queue, its one delivery in flight, its counters."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        clock: Any,
        agent: Any,
        policy: RetryPolicy,
        *,
        queue_size: int = 1000,
        timeout: float = 5.0,
        uniform: Callable[[float, float], float] = random.uniform,
        agent_name: str = "",
    ) -> None:
        self.url = url
        self.shown = shown_url(url)
        self.secret = secret
        self.clock = clock
        self.agent = agent
        self.policy = policy
        self.timeout = timeout
        self.uniform = uniform
        self.agent_name = agent_name or f"dbslayer/{version()}"
        self.queue: deque[Event] = deque()
        self.queue_size = queue_size
        self.counters = WebhookCounters()
        #: The delivery being tried: its event, body and attempts so far.
        self.current: tuple[Event, bytes, int] | None = None
        self._request: Deferred[Any] | None = None
        #: The attempt's deadline (a delayed call), and whether it passed.
        self._deadline: Any = None
        self._expired = False
        self._timer: Any = None
        self.stopped = False

    # -- the request path's side: O(1), never waits

    def offer(self, event: Event) -> None:
        """Queue ``event`` for delivery (the oldest queued event is dropped when full)."""
        if self.stopped:
            return
        if len(self.queue) >= self.queue_size:
            self.queue.popleft()
            self._dropped("queue_full")
            drops = self.counters.dropped["queue_full"]
            if drops == 1 or drops % LOG_EVERY_DROPS == 0:
                log.warn(
                    "webhook {url}: queue full ({size} events), dropping the oldest "
                    "({n} dropped so far)",
                    url=self.shown,
                    size=self.queue_size,
                    n=drops,
                )
        self.queue.append(event)
        if self.current is None and self._timer is None:
            # (sent from the reactor's next turn: never inside the caller's stack)
            self._timer = self.clock.callLater(0, self._next)

    @property
    def queued(self) -> int:
        """Events not yet delivered or dropped (the one being tried included)."""
        return len(self.queue) + (1 if self.current is not None else 0)

    def info(self) -> dict[str, Any]:
        c = self.counters
        return {
            "delivered": c.delivered,
            "attempts": c.attempts,
            "failed_attempts": c.failed_attempts,
            "retried": c.retried,
            "dropped": dict(c.dropped),
            "queued": self.queued,
            "last_status": c.last_status,
            "last_error": c.last_error,
            "last_error_at": c.last_error_at,
        }

    def stop(self) -> None:
        """Stop sending: the pending timer and the attempt in flight are cancelled."""
        self.stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        request, self._request = self._request, None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if request is not None:
            request.cancel()
        left = self.queued
        self.queue.clear()
        self.current = None
        if left:
            log.info(
                "webhook {url}: {n} event(s) not delivered at shutdown", url=self.shown, n=left
            )

    # -- the delivery loop

    def _next(self) -> None:
        self._timer = None
        if self.stopped or self.current is not None or not self.queue:
            return
        event = self.queue.popleft()
        self.current = (event, event.body(), 0)
        self._attempt()

    def _attempt(self) -> None:
        assert self.current is not None
        event, body, tries = self.current
        self.current = (event, body, tries + 1)
        self.counters.attempts += 1
        headers = delivery_headers(event, body, self.secret, self.agent_name)
        try:
            d = self.agent.request(b"POST", self.url.encode(), headers, _Body(body))
        except Exception as e:  # (a bad URL the agent refuses outright)
            d = defer.fail(e)
        self._request = d
        self._expired = False
        self._deadline = self.clock.callLater(self.timeout, self._expire, d)
        d.addCallbacks(self._answered, self._failed, errbackArgs=(d,), callbackArgs=(d,))
        d.addErrback(lambda f: log.failure("webhook {url}: delivery broke", f, url=self.shown))

    def _expire(self, request: Deferred[Any]) -> None:
        """The attempt's time is up: cancel it (it fails as "no answer within ...")."""
        self._deadline = None
        if request is self._request:
            self._expired = True
            request.cancel()

    def _settled(self, request: Deferred[Any]) -> bool:
        """True when ``request`` is the attempt in flight (now over); stops its deadline."""
        if request is not self._request:
            return False
        self._request = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        return True

    def _answered(self, response: Any, request: Deferred[Any]) -> None:
        if not self._settled(request):
            return
        try:
            response.deliverBody(_Drain(self.clock, self.timeout))
        except Exception:  # (the answer is not needed, only its status)
            pass
        status = int(response.code)
        self.counters.last_status = status
        outcome = outcome_of(status)
        if outcome == "delivered":
            self.counters.delivered += 1
            self._done()
            return
        retry_after = None
        headers = getattr(response, "headers", None)
        if headers is not None:
            retry_after = retry_after_seconds(
                headers.getRawHeaders(b"retry-after"), self.clock.seconds()
            )
        self._attempt_failed(f"HTTP {status}", outcome, retry_after)

    def _failed(self, failure: Any, request: Deferred[Any]) -> None:
        expired = self._expired
        if not self._settled(request):
            return
        error = TimeoutError() if expired else failure.value
        self._attempt_failed(describe_failure(error, self.timeout), "retry", None)

    def _attempt_failed(self, error: str, outcome: str, retry_after: float | None) -> None:
        assert self.current is not None
        event, _, tries = self.current
        c = self.counters
        c.failed_attempts += 1
        c.last_error, c.last_error_at = error, self.clock.seconds()
        if outcome == "refused":
            self._dropped("refused")
            log.warn(
                "webhook {url}: delivery {id} ({event}) refused ({error}); dropped",
                url=self.shown,
                id=event.id,
                event=event.name,
                error=error,
            )
            self._done()
            return
        if tries >= self.policy.attempts:
            self._dropped("gave_up")
            log.warn(
                "webhook {url}: delivery {id} ({event}) dropped after {n} attempt(s); last "
                "error: {error}",
                url=self.shown,
                id=event.id,
                event=event.name,
                n=tries,
                error=error,
            )
            self._done()
            return
        c.retried += 1
        pause = self.policy.delay(tries, self.uniform, retry_after)
        self._timer = self.clock.callLater(pause, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if not self.stopped and self.current is not None:
            self._attempt()

    def _done(self) -> None:
        self.current = None
        if self.queue and not self.stopped:
            self._timer = self.clock.callLater(0, self._next)

    def _dropped(self, reason: str) -> None:
        self.counters.dropped[reason] += 1


def make_agent(reactor: Any, timeout: float) -> Any:
    """A Twisted Agent with a connect timeout and no kept connections (one POST each).

    (Twisted's HostnameEndpoint reports a refused connection only after its attempt delay,
    0.3 s: an attempt timeout shorter than that reports "could not connect" instead.)"""
    from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory

    class QuietFactory(_HTTP11ClientFactory):
        noisy = False  # (else two log lines per delivery)

    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory = QuietFactory
    return Agent(reactor, connectTimeout=timeout, pool=pool)


class Webhooks(Service):
    """Every configured URL's sender; a sink of the event hub (:meth:`offer`)."""

    def __init__(self, senders: list[WebhookSender]) -> None:
        self.setName("webhooks")
        self.senders = senders

    def offer(self, event: Event) -> None:
        for sender in self.senders:
            sender.offer(event)

    def info(self) -> dict[str, dict[str, Any]]:
        """Per URL (shown form; a second URL of the same shown form gets `` #2``)."""
        shown: dict[str, dict[str, Any]] = {}
        for sender in self.senders:
            key, n = sender.shown, 1
            while key in shown:
                n += 1
                key = f"{sender.shown} #{n}"
            shown[key] = sender.info()
        return shown

    def stopService(self) -> Any:
        super().stopService()
        for sender in self.senders:
            sender.stop()
        return None


class ErrorRateService(Service):
    """Samples the statistics' request totals every ``tick`` seconds and emits
    ``errors.rate`` when :class:`gateway.events.ErrorRateWatch` says so."""

    def __init__(
        self,
        clock: Any,
        events: Events,
        totals: Callable[[], tuple[int, int]],
        watch: ErrorRateWatch,
    ) -> None:
        self.setName("error-rate")
        self.clock = clock
        self.events = events
        self.totals = totals
        self.watch = watch
        self._timer: Any = None

    def startService(self) -> None:
        super().startService()
        self._sample()

    def stopService(self) -> Any:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return None

    def _sample(self) -> None:
        self._timer = None
        try:
            requests, errors = self.totals()
            verdict = self.watch.observe(self.clock.seconds(), requests, errors)
            if verdict is not None:
                self.events.emit("errors.rate", state=verdict, **self.watch.last)
        except Exception:
            log.failure("the error-rate watch failed")
        if self.running:
            self._timer = self.clock.callLater(self.watch.tick, self._sample)


def health_reporter(
    events: Events, status_of: Callable[[str], Any]
) -> Callable[[str, str, str], None]:
    """``on_change(name, old, new)`` of the health checks, as ``backend.down``/``backend.up``
    events (with the backend's last error)."""

    def changed(name: str, old: str, new: str) -> None:
        kind = backend_event(old, new)
        if kind is None or not events.wanted(kind):
            return
        error = getattr(status_of(name), "last_error", None) if kind == "backend.down" else None
        events.emit(kind, backend=name, previous=old, error=error)

    return changed


def wsrep_reporter(events: Events) -> Callable[[str, Any, Any], None]:
    """``on_wsrep_change(name, old, new)`` of Galera health checks, as
    ``node.left_primary``/``node.joined_primary`` events."""

    left: set[str] = set()  # (nodes that left the primary component, until they rejoin)

    def changed(name: str, old: Any, new: Any) -> None:
        kind = primary_event(old, new, left_before=name in left)
        if kind == "node.left_primary":
            left.add(name)
        elif kind == "node.joined_primary":
            left.discard(name)
        if kind is not None:
            events.emit(kind, backend=name, previous=old, state=new)

    return changed


def writer_reporter(events: Events) -> Callable[[Any, Any], None]:
    """``on_writer_change(old, new)`` of the router, as the ``writer.changed`` event."""

    def changed(old: Any, new: Any) -> None:
        events.emit(
            "writer.changed",
            previous=None if old is None else str(getattr(old, "name", old)),
            writer=None if new is None else str(getattr(new, "name", new)),
        )

    return changed


def slow_reporter(events: Events, threshold_ms: int) -> Callable[[float, Any, Any, Any], None]:
    """``Executor.on_slow``: a slow request as the ``statement.slow`` event."""

    def slow(seconds: float, request: Any, user: Any, result: Any) -> None:
        error = getattr(result, "value", None)  # (a Failure)
        answered = error is None
        server = getattr(result if answered else error, "server", None)
        problem = None
        if not answered:
            errno = getattr(error, "errno", None)
            problem = type(error).__name__ + (f" (MYSQL_ERRNO {errno})" if errno else "")
        elif getattr(result, "error", None) is not None:
            problem = f"MYSQL_ERRNO {result.error.errno}"
        events.emit(
            "statement.slow",
            sql=request.sql,
            facts=request.facts,
            backend=server,
            seconds=seconds,
            threshold_ms=threshold_ms,
            user=getattr(user, "name", None),
            error=problem,
        )

    return slow


def _log_event(event: Event) -> None:
    log.info("dbslayer event {name}: {data}", name=event.name, data=dict(event.data))


def wanted_names(names: tuple[str, ...] | list[str]) -> list[str]:
    """The sink registrations for ``webhook_events``: ``["*"]`` when it holds ``*``; raise
    SettingError naming the known events for an unknown name."""
    unknown = unknown_events(names)
    if unknown:
        raise SettingError(
            "webhook_events",
            f"unknown event {', '.join(repr(n) for n in unknown)} (known: "
            f"{', '.join(n for n in known_events() if n != 'test')}, or * for all)",
        )
    if "*" in names:
        return ["*"]
    return list(dict.fromkeys(names))


def instance_of(settings: Any, stats: Any) -> Callable[[], str]:
    """This gateway host's name in events: the statistics' (``instance``, known once the port
    listens) where they have one, else the ``instance`` setting, else ``hostname:port``."""

    def instance() -> str:
        named = getattr(stats, "instance", None)
        if callable(named):
            return str(named())
        return str(getattr(settings, "instance", "") or f"{socket.gethostname()}:{settings.port}")

    return instance


def event_hub(
    settings: Any,
    reactor: Any,
    stats: Any,
    slot: int | None,
    environ: Mapping[str, str],
    *,
    agent: Any = None,
) -> tuple[Events, MultiService]:
    """The gateway's event hub and the services that feed and drain it (the webhook
    senders, the error-rate watch), as one MultiService to start with the gateway.

    ``slot``: this worker's slot with ``--workers N`` (None: the only process); only slot 0
    (or the only process) sends backend and cluster events. Raises SettingError for an
    unknown event name or an unreadable secret."""
    names = wanted_names(settings.webhook_events)
    events = Events(
        reactor,
        instance_of(settings, stats),
        worker=slot,
        cluster=slot in (None, 0),
        count=lambda name: stats.record_event("events", name),
    )
    events.on("statement.slow")(_log_event)
    events.on("errors.rate")(_log_event)
    services = MultiService()
    services.setName("events")
    if settings.webhooks:
        secret = webhook_secret(settings, environ).encode()
        agent = agent if agent is not None else make_agent(reactor, settings.webhook_timeout)
        policy = RetryPolicy(
            attempts=settings.webhook_attempts,
            first=settings.webhook_backoff,
            cap=settings.webhook_max_backoff,
        )
        senders = [
            WebhookSender(
                url,
                secret,
                reactor,
                agent,
                policy,
                queue_size=settings.webhook_queue,
                timeout=settings.webhook_timeout,
            )
            for url in settings.webhooks
        ]
        hooks = Webhooks(senders)
        for name in names:
            events.on(name)(hooks.offer)
        hooks.setServiceParent(services)
        stats.webhook_info = hooks.info
        for sender in senders:
            log.info("webhook: {url}", url=sender.shown)
    if settings.error_rate_threshold > 0:
        watch = ErrorRateWatch(
            threshold=settings.error_rate_threshold,
            window=settings.error_rate_window,
            min_requests=settings.error_rate_min_requests,
            tick=min(1.0, settings.error_rate_window / 10),
        )
        ErrorRateService(reactor, events, stats.db_totals, watch).setServiceParent(services)
    return events, services


__all__ = [
    "CLUSTER_EVENTS",
    "DROP_REASONS",
    "ErrorRateService",
    "RetryPolicy",
    "WebhookSender",
    "Webhooks",
    "event_hub",
    "outcome_of",
    "retry_after_seconds",
    "signature",
]
