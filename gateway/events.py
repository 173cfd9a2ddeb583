"""Events the gateway reports outward (webhooks, the log), and the map that defines them.

The pattern is a webhook handler's event map turned outward. Two kinds of function, each
registered by a decorator, so that adding an event or a sink is one function:

- an **event** is a builder registered with ``@event("backend.down", ...)``: it turns the
  gateway's facts (keyword arguments of :meth:`Events.emit`) into the event's ``data``. The
  module-level :data:`EVENTS` map is the catalogue: settings are checked against it.
- a **sink** is a handler registered on an :class:`Events` hub with ``@events.on(name)``
  (or ``"*"`` for every event): it gets the finished :class:`Event`. The webhook sender
  (``api.webhooks``) and the log line are sinks.

:meth:`Events.emit` is called from the request path and from health checks: it never raises
into its caller (a failing builder or sink is logged and counted) and its work does not grow
with anything but the number of sinks (a sink must be quick: the webhook one only queues).

Who sends what with ``--workers N``: every worker runs its own health checks, so backend and
cluster events (:data:`CLUSTER_EVENTS`) would be found N times; a hub with ``cluster=False``
drops them, and only worker slot 0 (or the single process) is built with ``cluster=True``.
Request events (``statement.slow``, ``errors.rate``) come from the worker that saw them; the
payload names the ``instance`` and the ``worker``.

The pure decisions behind two events live here too: :class:`ErrorRateWatch` (a threshold
with hysteresis over a window of cheap counter samples) and :func:`backend_event` (which
health state changes are news).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson
from twisted.logger import Logger

from stats.redact import excerpt, shown_sql

log = Logger()

#: Builds an event's ``data`` from the facts given to :meth:`Events.emit`.
Builder = Callable[..., dict[str, Any]]
#: A sink: gets every event it was registered for.
Sink = Callable[["Event"], None]


@attrs.frozen
class EventKind:
    """One entry of the event map."""

    name: str
    help: str
    build: Builder
    #: Found by every worker's health checks (sent from one worker only).
    cluster: bool = False


#: The event map: name -> kind, filled by :func:`event`.
EVENTS: dict[str, EventKind] = {}
#: The events that health checks find (every worker finds them: one sends them).
CLUSTER_EVENTS: set[str] = set()
#: Longest SQL text an event carries (UTF-8 bytes, after redaction).
SQL_EXCERPT_BYTES = 1024


def event(name: str, help: str, *, cluster: bool = False) -> Callable[[Builder], Builder]:
    """Register ``builder`` as the event ``name`` (a decorator)."""

    def register(builder: Builder) -> Builder:
        if name in EVENTS:
            raise ValueError(f"event {name!r} is defined twice")
        EVENTS[name] = EventKind(name, help, builder, cluster)
        if cluster:
            CLUSTER_EVENTS.add(name)
        return builder

    return register


def known_events() -> list[str]:
    """Every event name, sorted (``test`` included)."""
    return sorted(EVENTS)


def unknown_events(names: tuple[str, ...] | list[str]) -> list[str]:
    """The names of ``names`` that are neither ``*`` nor an event of the map."""
    return [name for name in names if name != "*" and name not in EVENTS]


# ---------------------------------------------------------------------------- the events


def _short(text: object) -> str | None:
    return None if text is None else excerpt(str(text), 512)


@event(
    "backend.down", "a backend was marked down (health checks or a failed connect)", cluster=True
)
def _backend_down(
    backend: str, previous: str = "unknown", error: str | None = None, **_: Any
) -> dict[str, Any]:
    return {"backend": backend, "previous": previous, "error": _short(error)}


@event("backend.up", "a backend that was down is back up", cluster=True)
def _backend_up(backend: str, previous: str = "down", **_: Any) -> dict[str, Any]:
    return {"backend": backend, "previous": previous}


@event("writer.changed", "the backend that takes writes changed (Galera mode)", cluster=True)
def _writer_changed(previous: str | None, writer: str | None, **_: Any) -> dict[str, Any]:
    return {"previous": previous, "writer": writer}


def _wsrep_fields(state: Any) -> dict[str, Any] | None:
    """The wsrep facts of a node's state, whatever its shape (a mapping or an object)."""
    if state is None:
        return None
    fields = (
        "ready",
        "cluster_status",
        "local_state",
        "local_state_comment",
        "cluster_size",
        "local_index",
    )
    shown: dict[str, Any] = {}
    for field in fields:
        if isinstance(state, Mapping):
            value = state.get(field, state.get(f"wsrep_{field}"))
        else:
            value = getattr(state, field, getattr(state, f"wsrep_{field}", None))
        if value is not None:
            shown[field] = value if isinstance(value, (bool, int, float)) else str(value)
    return shown


@event("node.left_primary", "a Galera node left the primary component", cluster=True)
def _node_left(backend: str, previous: Any = None, state: Any = None, **_: Any) -> dict[str, Any]:
    return {"backend": backend, "previous": _wsrep_fields(previous), "wsrep": _wsrep_fields(state)}


@event("node.joined_primary", "a Galera node is in the primary component again", cluster=True)
def _node_joined(backend: str, previous: Any = None, state: Any = None, **_: Any) -> dict[str, Any]:
    return {"backend": backend, "previous": _wsrep_fields(previous), "wsrep": _wsrep_fields(state)}


@event("errors.rate", "the share of /db requests answered 5xx crossed the threshold (or fell back)")
def _errors_rate(
    state: str,
    rate: float,
    threshold: float,
    requests: int,
    errors: int,
    window_s: float,
    **_: Any,
) -> dict[str, Any]:
    return {
        "state": state,
        "rate": round(rate, 4),
        "threshold": threshold,
        "requests": requests,
        "errors": errors,
        "window_s": window_s,
    }


@event("statement.slow", "a request's statements ran longer than slow_statement_ms")
def _statement_slow(
    sql: str | None,
    backend: str | None,
    seconds: float,
    threshold_ms: int,
    user: str | None = None,
    facts: Any = None,
    error: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    from gateway.sql import read_sql

    shown = None
    if sql is not None:
        # (statements that may hold a secret show as their kind; the rest redacted and cut)
        shown = excerpt(shown_sql(sql[: SQL_EXCERPT_BYTES * 4], facts, read_sql), SQL_EXCERPT_BYTES)
    return {
        "sql": shown,
        "backend": backend,
        "ms": round(seconds * 1000, 1),
        "threshold_ms": threshold_ms,
        "user": user,
        "error": _short(error),
    }


@event("test", "sent by `dbslayer webhook test URL`")
def _test(message: str = "a test event from dbslayer", **_: Any) -> dict[str, Any]:
    return {"message": message}


# ---------------------------------------------------------------------------- the hub


@attrs.frozen
class Event:
    """One event as it is delivered: the payload's fields; :meth:`body` its exact bytes."""

    name: str
    id: str
    at: str
    instance: str
    worker: int | None
    data: Mapping[str, Any]

    def payload(self) -> dict[str, Any]:
        return {
            "event": self.name,
            "id": self.id,
            "at": self.at,
            "instance": self.instance,
            "worker": self.worker,
            "data": dict(self.data),
        }

    def body(self) -> bytes:
        """The JSON body (what the signature covers)."""
        return orjson.dumps(self.payload())


def iso_utc(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-12-02T06:51:34.123Z``."""
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class Events:
    """The hub: sinks registered by event name (or ``"*"``), events emitted by name.

    ``clock`` gives ``seconds()`` (the reactor, or a test's Clock); ``instance`` (a name, or a
    function returning it: known once the port listens) and ``worker`` go into every payload; ``cluster=False`` drops :data:`CLUSTER_EVENTS` (another worker
    sends them); ``count(name)`` is called for each event emitted (statistics)."""

    def __init__(
        self,
        clock: Any,
        instance: str | Callable[[], str],
        worker: int | None = None,
        *,
        cluster: bool = True,
        count: Callable[[str], None] | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.clock = clock
        self.instance = instance
        self.worker = worker
        self.cluster = cluster
        self.count = count
        self.new_id = new_id
        self._sinks: dict[str, list[Sink]] = {}
        #: Builders and sinks that raised (each logged).
        self.handler_errors = 0

    def on(self, name: str) -> Callable[[Sink], Sink]:
        """Register a sink for the event ``name`` (``"*"``: every event); a decorator."""
        if name != "*" and name not in EVENTS:
            raise ValueError(f"unknown event {name!r} (known: {', '.join(known_events())})")

        def register(sink: Sink) -> Sink:
            self._sinks.setdefault(name, []).append(sink)
            return sink

        return register

    def wanted(self, name: str) -> bool:
        """True when emitting ``name`` reaches a sink (cheap; callers may skip the facts)."""
        if name in CLUSTER_EVENTS and not self.cluster:
            return False
        return name in self._sinks or "*" in self._sinks

    def emit(self, name: str, **facts: Any) -> Event | None:
        """Build the event ``name`` from ``facts`` and hand it to its sinks; the event, or None
        when no sink wants it or it could not be built. Never raises."""
        try:
            if not self.wanted(name):
                return None
            built = Event(
                name=name,
                id=self.new_id(),
                at=iso_utc(self.clock.seconds()),
                instance=self.instance() if callable(self.instance) else self.instance,
                worker=self.worker,
                data=EVENTS[name].build(**facts),
            )
        except Exception:
            self.handler_errors += 1
            log.failure("the event {name} could not be built", name=name)
            return None
        if self.count is not None:
            try:
                self.count(name)
            except Exception:
                self.handler_errors += 1
                log.failure("counting the event {name} failed", name=name)
        for sink in (*self._sinks.get(name, ()), *self._sinks.get("*", ())):
            try:
                sink(built)
            except Exception:
                self.handler_errors += 1
                log.failure("a sink of the event {name} failed", name=name)
        return built


# ---------------------------------------------------------------------------- decisions


def backend_event(old: str, new: str) -> str | None:
    """The event of a backend's health change from ``old`` to ``new``: down (from up, or at
    the first verdict), up (only after down: a backend's first "up" is no news), else None."""
    if new == "down" and old != "down":
        return "backend.down"
    if new == "up" and old == "down":
        return "backend.up"
    return None


def primary_event(old: Any, new: Any, left_before: bool = False) -> str | None:
    """``node.left_primary`` / ``node.joined_primary`` from two wsrep states of one node (a
    mapping or an object with ``cluster_status``; None: unknown, e.g. unreachable).
    Leaving: from Primary to anything else, unknown included (a killed node left). Joining:
    to Primary from a known other state, or from unknown when the node had left before
    (``left_before``: a restarted node; a node first seen at start is no news)."""
    was, now = _is_primary(old), _is_primary(new)
    if was and not now:
        return "node.left_primary"
    if now and (was is False or (was is None and left_before)):
        return "node.joined_primary"
    return None


def _is_primary(state: Any) -> bool | None:
    fields = _wsrep_fields(state)
    if not fields or "cluster_status" not in fields:
        return None
    return str(fields["cluster_status"]).lower() == "primary"


@attrs.define
class ErrorRateWatch:
    """The share of errors among requests over a sliding window, against a threshold.

    Fed with samples of two running totals (requests, errors: cheap counters the statistics
    keep anyway) every ``tick`` seconds; :meth:`observe` returns ``"over"`` once when the rate
    reaches ``threshold``, ``"under"`` once when it falls below ``threshold * clear_ratio``
    (hysteresis: a rate hovering at the threshold does not flap), else None. Fewer than
    ``min_requests`` requests in the window is no verdict (the state stays)."""

    threshold: float
    window: float
    min_requests: int = 20
    tick: float = 1.0
    clear_ratio: float = 0.5
    over: bool = False
    _samples: deque[tuple[float, int, int]] = attrs.field(init=False)
    #: The figures of the last verdict, for the event.
    last: dict[str, Any] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._samples = deque(maxlen=int(self.window / self.tick) + 2)

    def observe(self, now: float, requests: int, errors: int) -> str | None:
        samples = self._samples
        samples.append((now, requests, errors))
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()  # (the oldest kept is the base: at or before the window start)
        base_requests, base_errors = samples[0][1], samples[0][2]
        counted, failed = requests - base_requests, errors - base_errors
        if counted < self.min_requests:
            return None
        rate = failed / counted
        self.last = {
            "rate": rate,
            "threshold": self.threshold,
            "requests": counted,
            "errors": failed,
            "window_s": self.window,
        }
        if not self.over and rate >= self.threshold:
            self.over = True
            return "over"
        if self.over and rate < self.threshold * self.clear_ratio:
            self.over = False
            return "under"
        return None
