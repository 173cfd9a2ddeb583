"""Leaving a fleet (api.drain) on an injected clock: the stop phases and their timing, the
service that walks them (listeners closed only after the delay), /ready while leaving, and
``Connection: close`` on the answers of both HTTP channels; and the fleet figures (api.fleet:
the instance name in /stats and /metrics)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from api.admin import AdminApp
from api.drain import DRAINING, LEAVING, SERVING, STOPPED, Drain
from api.fleet import instance_name
from api.service import FLUSH_SECONDS, GatewayService, Utf8Front
from stats.core import GatewayStats
from stats.prometheus import render_metrics
from tests.unit.test_request_path_memory import CHANNELS, HOST, Gateway, get, rows


class Site:
    """What a Drain (two flags) and the service (requests in flight) ask of a site."""

    leaving = False
    draining = False
    in_flight = 0

    def wait_idle(self) -> Deferred[None]:
        return succeed(None)


def fired(d: Deferred[Any]) -> bool:
    return bool(d.called)


# ------------------------------------------------------------------ the phases


def test_leaving_lasts_the_delay() -> None:
    """leave() starts the leaving phase at once (not ready, sites close their connections,
    still serving) and fires when the delay is over, not before."""
    clock, site = Clock(), Site()
    drain = Drain(clock, 10, [site])
    assert drain.phase == SERVING and drain.ready
    d = drain.leave()
    assert drain.phase == LEAVING and not drain.ready
    assert site.leaving and not site.draining
    clock.advance(9.9)
    assert not fired(d) and drain.remaining() == pytest.approx(0.1)
    clock.advance(0.1)
    assert fired(d) and drain.remaining() == 0.0


def test_no_delay_is_an_immediate_stop() -> None:
    """With a delay of 0 (the default) leave() fires at once: today's stop."""
    drain = Drain(Clock(), 0, [Site()])
    assert fired(drain.leave())


def test_a_second_stop_request_joins_the_first() -> None:
    """A second leave() (SIGTERM twice, /shutdown during a SIGTERM) does not start the delay
    again: it fires with the first one; after the leaving phase, at once."""
    clock = Clock()
    drain = Drain(clock, 5, [])
    first = drain.leave()
    clock.advance(3)
    second = drain.leave()
    clock.advance(2)
    assert fired(first) and fired(second)
    drain.stop_accepting()
    assert fired(drain.leave()) and drain.phase == DRAINING


def test_stop_accepting_and_stopped() -> None:
    """The draining phase tells the sites to refuse new requests (503); then stopped."""
    site = Site()
    drain = Drain(Clock(), 0, [site])
    drain.leave()
    drain.stop_accepting()
    assert drain.phase == DRAINING and site.draining and site.leaving and not drain.ready
    drain.stopped()
    assert drain.phase == STOPPED and not drain.ready


def test_negative_delay_is_refused() -> None:
    """A negative delay is a programming error, not a silent 0."""
    with pytest.raises(ValueError):
        Drain(Clock(), -1)


# ------------------------------------------------------------------ the service


class Listener(Service):
    """Stands in for an HTTPService: records when it was stopped (its listener closed)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stopped_at: float | None = None

    def stopService(self) -> None:
        super().stopService()
        self.stopped_at = self.clock.seconds()


class Executor:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_service_closes_listeners_only_after_the_delay() -> None:
    """GatewayService.stopService: /ready goes 503 at once, the listeners close only after
    the drain delay, then the sites refuse new requests, and the pools close last."""
    clock, site, executor = Clock(), Site(), Executor()
    drain = Drain(clock, 8, [site])
    top = GatewayService(executor, [site], 30.0, clock, None, drain)  # type: ignore[arg-type,list-item]
    listener = Listener(clock)
    listener.setServiceParent(top)
    top.startService()
    done = top.stopService()
    assert drain.phase == LEAVING and site.leaving and not site.draining
    clock.advance(7.9)
    assert listener.stopped_at is None and not executor.closed
    clock.advance(0.1)
    assert listener.stopped_at == 8 and site.draining and drain.phase == DRAINING
    clock.advance(FLUSH_SECONDS)
    assert fired(done) and executor.closed and drain.phase == STOPPED


def test_service_without_a_drain_stops_as_before() -> None:
    """Without a drain delay the listeners close at once (the stop of before)."""
    clock, site = Clock(), Site()
    top = GatewayService(Executor(), [site], 30.0, clock, None)  # type: ignore[arg-type,list-item]
    listener = Listener(clock)
    listener.setServiceParent(top)
    top.startService()
    top.stopService()
    assert listener.stopped_at == 0 and site.draining


# ------------------------------------------------------------------ the HTTP side


def leaving_gateway(delay: float = 10) -> tuple[Gateway, Drain]:
    """The in-memory main port (tests.unit.test_request_path_memory) with the admin routes
    on it, and its Drain."""
    gw = Gateway()
    drain = Drain(gw.clock, delay, [gw.site])
    admin = AdminApp(
        gw.stats,
        lambda: succeed({"db1": "up"}),
        lambda: None,
        30.0,
        drain=drain,
    )
    gw.site.resource.admin = Utf8Front(admin.resource())
    return gw, drain


def ask(gw: Gateway, path: bytes) -> Any:
    """The answer to GET ``path`` on a new connection (the fast channel hands it over)."""
    transport = gw.connect()
    transport.send(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, HOST))
    (answer,) = transport.answers()
    return answer


def test_ready_is_503_at_once_while_health_stays_200() -> None:
    """/ready says 200 while serving, 503 {"ready": false, "draining": true} from the moment
    a stop begins (no backend check waited for); /health stays 200 (alive)."""
    gw, drain = leaving_gateway()
    before = ask(gw, b"/ready")
    assert before.status == 200 and before.json()["ready"] is True
    drain.leave()
    ready = ask(gw, b"/ready")
    assert ready.status == 503 and ready.headers["retry-after"] == "1"
    assert ready.json() == {
        "ready": False,
        "draining": True,
        "phase": "leaving",
        "backends": {"db1": "up"},
    }
    health = ask(gw, b"/health")
    assert health.status == 200 and health.json()["status"] == "ok"


@pytest.mark.parametrize("channel", CHANNELS)
def test_answers_close_their_connection_while_leaving(channel: str) -> None:
    """While leaving, a request is still served (it runs, 200), and its answer says
    Connection: close and closes the connection; before, the connection stays open."""
    gw, drain = leaving_gateway()
    transport = gw.connect(channel)
    transport.send(get({"SQL": "SELECT 1"}))
    gw.db1.answer(rows(1))
    (kept,) = transport.answers()
    assert kept.status == 200 and "close" not in kept.headers.get("connection", "")
    assert not transport.disconnecting
    drain.leave()
    transport.send(get({"SQL": "SELECT 2"}))
    gw.db1.answer(rows(2))
    (closed,) = transport.answers()
    assert closed.status == 200 and closed.json()["RESULT"]["ROWS"] == [[2]]
    assert closed.headers["connection"] == "close"
    assert transport.disconnecting
    assert len(gw.db1.sent) == 2  # (served, not refused)


@pytest.mark.parametrize("channel", CHANNELS)
def test_requests_are_refused_once_draining(channel: str) -> None:
    """After the delay (draining) a request on an open connection gets 503 and never runs."""
    gw, drain = leaving_gateway(delay=1)
    transport = gw.connect(channel)
    drain.leave()
    gw.advance(1)
    drain.stop_accepting()
    transport.send(get({"SQL": "SELECT 3"}))
    (refused,) = transport.answers()
    assert refused.status == 503 and refused.headers["connection"] == "close"
    assert gw.db1.sent == []


# ------------------------------------------------------------------ fleet figures


def test_instance_name_defaults_to_host_and_port() -> None:
    """--instance wins; else <hostname>:<port>."""
    assert instance_name("gw-a", 9090, hostname="h1") == "gw-a"
    assert instance_name("", 9090, hostname="h1") == "h1:9090"


def test_instance_in_stats_and_one_metrics_family() -> None:
    """/stats carries "instance" at the top level; /metrics has one dbslayer_instance_info
    family with the instance and version labels, and no other family an instance label
    (Prometheus adds its own on scrape)."""
    stats = GatewayStats(Clock())
    assert "instance" not in stats.snapshot()
    stats.instance = lambda: "gw-a"
    stats.version = "1.2.3"
    assert stats.snapshot()["instance"] == "gw-a"
    body, _ = render_metrics(stats)
    text = body.decode()
    assert 'dbslayer_instance_info{instance="gw-a",version="1.2.3"} 1.0' in text
    labelled = [
        line for line in text.splitlines() if "instance=" in line and not line.startswith("#")
    ]
    assert [line.split("{")[0] for line in labelled] == ["dbslayer_instance_info"]
