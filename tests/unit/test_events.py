"""Events and webhook delivery, decided without a network: the event map and its decorator,
emit never raising, the error-rate hysteresis, the slow-statement threshold, URL redaction,
the signature, the bounded queue, back-off, Retry-After and one delivery in flight per URL
(on ``twisted.internet.task.Clock`` with a fake agent)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from api.webhooks import (
    RetryPolicy,
    WebhookSender,
    health_reporter,
    outcome_of,
    retry_after_seconds,
    signature,
    slow_reporter,
    wanted_names,
)
from conf.settings import SettingError, Settings
from conf.webhooks import has_secret_parts, shown_url, url_problem
from gateway.events import (
    CLUSTER_EVENTS,
    EVENTS,
    ErrorRateWatch,
    Event,
    Events,
    backend_event,
    event,
    iso_utc,
    primary_event,
)
from gateway.executor import Executor
from gateway.request import Request

# ---------------------------------------------------------------------------- the hub


def hub(clock: Clock | None = None, **kwargs: Any) -> Events:
    ids = iter(range(1, 1000))
    return Events(clock or Clock(), "gw1:9090", new_id=lambda: f"id-{next(ids)}", **kwargs)


def test_the_event_map_holds_every_event() -> None:
    """The map names each event the gateway emits; cluster events are marked."""
    assert {
        "backend.down",
        "backend.up",
        "writer.changed",
        "node.left_primary",
        "node.joined_primary",
        "errors.rate",
        "statement.slow",
        "test",
    } <= set(EVENTS)
    assert CLUSTER_EVENTS == {
        "backend.down",
        "backend.up",
        "writer.changed",
        "node.left_primary",
        "node.joined_primary",
    }


def test_an_event_is_one_decorated_function() -> None:
    """@event registers a builder; emit runs it and hands the payload to the sinks."""

    @event("unit.example", "only in this test")
    def _example(n: int, **_: Any) -> dict[str, Any]:
        return {"twice": n * 2}

    try:
        events = hub()
        seen: list[Event] = []
        events.on("unit.example")(seen.append)
        events.emit("unit.example", n=21)
        assert [e.payload() for e in seen] == [
            {
                "event": "unit.example",
                "id": "id-1",
                "at": "1970-01-01T00:00:00.000Z",
                "instance": "gw1:9090",
                "worker": None,
                "data": {"twice": 42},
            }
        ]
        with pytest.raises(ValueError, match="defined twice"):
            event("unit.example", "again")(_example)
    finally:
        del EVENTS["unit.example"]


def test_sinks_by_name_and_star() -> None:
    """A sink gets the events it was registered for; a "*" sink gets every one."""
    events = hub()
    downs: list[str] = []
    every: list[str] = []
    events.on("backend.down")(lambda e: downs.append(e.name))
    events.on("*")(lambda e: every.append(e.name))
    events.emit("backend.down", backend="a")
    events.emit("backend.up", backend="a")
    assert downs == ["backend.down"]
    assert every == ["backend.down", "backend.up"]


def test_unknown_event_names_are_refused_with_the_known_ones() -> None:
    """on() of a name not in the map raises; the settings check names the known events."""
    with pytest.raises(ValueError, match="backend.down"):
        hub().on("backend.gone")
    with pytest.raises(SettingError) as info:
        wanted_names(("backend.down", "backend.gone"))
    message = str(info.value)
    assert "webhook_events" in message and "'backend.gone'" in message
    assert "statement.slow" in message and "errors.rate" in message
    assert wanted_names(("backend.down", "*")) == ["*"]
    assert wanted_names(("backend.up", "backend.up")) == ["backend.up"]


def test_emit_never_raises() -> None:
    """A sink or builder that raises is counted; the other sinks still get the event."""
    events = hub()
    got: list[str] = []

    def broken(_: Event) -> None:
        raise RuntimeError("sink bug")

    events.on("backend.down")(broken)
    events.on("backend.down")(lambda e: got.append(e.id))
    assert events.emit("backend.down", backend="a") is not None
    assert got == ["id-1"] and events.handler_errors == 1
    # A builder given facts it does not take: nothing delivered, counted, no exception.
    events.on("errors.rate")(lambda e: got.append(e.id))
    assert events.emit("errors.rate", nonsense=1) is None
    assert events.handler_errors == 2


def test_no_sink_means_no_work() -> None:
    """An event nobody listens to is not even built (its builder is not called)."""
    events = hub()
    counted: list[str] = []
    events.count = counted.append
    assert events.emit("statement.slow") is None  # (would fail to build: no facts)
    assert events.handler_errors == 0 and counted == []


def test_cluster_events_come_from_one_worker() -> None:
    """A hub of another worker than slot 0 drops the events every worker finds, and keeps
    the request events it saw itself."""
    events = hub(worker=1, cluster=False)
    got: list[str] = []
    events.on("*")(lambda e: got.append(e.name))
    events.emit("backend.down", backend="a")
    events.emit("writer.changed", previous="a", writer="b")
    events.emit(
        "errors.rate", state="over", rate=1, threshold=0.5, requests=9, errors=9, window_s=1
    )
    assert got == ["errors.rate"]


def test_payload_time_and_worker() -> None:
    """``at`` is ISO 8601 UTC from the injected clock; ``worker`` is the slot."""
    clock = Clock()
    clock.advance(1_790_000_000.25)
    events = hub(clock, worker=0)
    events.on("test")(lambda e: None)
    built = events.emit("test")
    assert built is not None
    assert built.at == "2026-09-21T14:13:20.250Z" == iso_utc(1_790_000_000.25)
    payload = orjson.loads(built.body())
    assert payload["worker"] == 0 and payload["event"] == "test"


# ---------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("up", "down", "backend.down"),
        ("unknown", "down", "backend.down"),
        ("down", "up", "backend.up"),
        ("unknown", "up", None),
        ("down", "down", None),
    ],
)
def test_backend_events(old: str, new: str, expected: str | None) -> None:
    """Down is news from up or at the first verdict; up only after down."""
    assert backend_event(old, new) == expected


def test_health_reporter_carries_the_last_error() -> None:
    events = hub()
    got: list[Event] = []
    events.on("*")(got.append)

    class Status:
        last_error = "Can't connect (111)"

    report = health_reporter(events, lambda name: Status())
    report("db1", "unknown", "up")
    report("db1", "up", "down")
    report("db1", "down", "up")
    assert [(e.name, dict(e.data)) for e in got] == [
        ("backend.down", {"backend": "db1", "previous": "up", "error": "Can't connect (111)"}),
        ("backend.up", {"backend": "db1", "previous": "down"}),
    ]


def test_primary_component_events() -> None:
    """Leaving the primary component and joining it again, from wsrep states of any shape."""
    primary = {"cluster_status": "Primary", "local_state": 4}
    non_primary = {"wsrep_cluster_status": "non-Primary", "wsrep_local_state": 0}

    class State:
        cluster_status = "Primary"

    assert primary_event(primary, non_primary) == "node.left_primary"
    assert primary_event(State(), None) == "node.left_primary"
    assert primary_event(non_primary, State()) == "node.joined_primary"
    assert primary_event(None, primary) is None  # (first sight: no news)
    assert primary_event(None, primary, left_before=True) == "node.joined_primary"
    assert primary_event(primary, primary) is None


def test_wsrep_reporter_follows_a_killed_and_restarted_node() -> None:
    """A node killed (state unknown) left; back as Primary after restart, it joined; a node
    first seen as Primary at start is no news."""
    from api.webhooks import wsrep_reporter

    events = hub()
    got: list[Event] = []
    events.on("*")(got.append)
    report = wsrep_reporter(events)
    primary = {"cluster_status": "Primary", "local_state": 4, "local_index": 0}
    report("g1", None, primary)
    report("g1", primary, None)
    report("g1", None, primary)
    report("g2", None, primary)
    assert [(e.name, e.data["backend"]) for e in got] == [
        ("node.left_primary", "g1"),
        ("node.joined_primary", "g1"),
    ]
    assert got[1].data["wsrep"] == {"cluster_status": "Primary", "local_state": 4, "local_index": 0}


def test_writer_reporter() -> None:
    from api.webhooks import writer_reporter

    events = hub()
    got: list[Event] = []
    events.on("writer.changed")(got.append)
    writer_reporter(events)("g1", "g2")
    writer_reporter(events)(None, "g1")
    assert [dict(e.data) for e in got] == [
        {"previous": "g1", "writer": "g2"},
        {"previous": None, "writer": "g1"},
    ]


def test_error_rate_hysteresis() -> None:
    """Over once when the rate reaches the threshold, under once when it falls below half of
    it; hovering between the two fires nothing; too few requests is no verdict."""
    watch = ErrorRateWatch(threshold=0.5, window=10, min_requests=10, tick=1)
    verdicts = []
    total = errors = 0
    # second by second: (requests, errors) added
    script = [(2, 2)] * 3 + [(10, 6)] * 5 + [(10, 4)] * 10 + [(10, 0)] * 10 + [(10, 6)] * 12
    for second, (n, e) in enumerate(script, start=1):
        total, errors = total + n, errors + e
        verdicts.append((second, watch.observe(float(second), total, errors)))
    fired = [(s, v) for s, v in verdicts if v is not None]
    # 3 s of 2/2: only 6 requests (no verdict); then 60% > 50%: over.
    assert fired[0] == (4, "over")
    # 40% for 10 s stays "over" (above 25%); the all-good seconds bring it under 25%.
    assert [v for _, v in fired] == ["over", "under", "over"]
    assert watch.last["window_s"] == 10 and watch.last["requests"] == 100


def test_error_rate_window_is_bounded() -> None:
    """The samples kept never exceed the window's ticks (a bounded buffer)."""
    watch = ErrorRateWatch(threshold=0.5, window=5, min_requests=1, tick=1)
    for second in range(1000):
        watch.observe(float(second), second * 10, 0)
    assert len(watch._samples) <= 7


class _Backend:
    name = "db1"

    class spec:  # noqa: N801 - a stand-in attribute bag
        driver = "mysql"


class _Router:
    mode = "pool"


def test_slow_statement_threshold() -> None:
    """One comparison: at or over slow_seconds is reported with the request, user and
    backend; faster is not; off (on_slow None) adds nothing to the Deferred."""
    clock = Clock()
    executor = Executor([_Backend()], _Router(), clock)  # type: ignore[list-item,arg-type]
    seen: list[tuple[float, Any]] = []
    executor.slow_seconds = 0.1
    executor.on_slow = lambda seconds, request, user, result: seen.append((seconds, user))
    request = Request(sql="SELECT SLEEP(1)")
    for took in (0.05, 0.1, 0.3):
        started = clock.seconds()
        clock.advance(took)
        assert executor._timed("answer", started, request, "alice") == "answer"
    assert [round(s, 3) for s, _ in seen] == [0.1, 0.3] and seen[0][1] == "alice"

    def broken(*_: Any) -> None:
        raise RuntimeError("reporter bug")

    executor.on_slow = broken
    assert executor._timed("answer", clock.seconds() - 1, request, None) == "answer"


def test_slow_statement_event_redacts_the_sql() -> None:
    """statement.slow carries the SQL redacted (a password literal masked), the backend,
    the milliseconds and the user."""
    events = hub()
    got: list[Event] = []
    events.on("statement.slow")(got.append)
    report = slow_reporter(events, 100)

    class Answer:
        server = "db1"
        error = None

    class User:
        name = "alice"

    report(0.3041, Request(sql="SELECT SLEEP(0.3) FROM t"), User(), Answer())
    data = dict(got[0].data)
    assert data["sql"] == "SELECT SLEEP(0.3) FROM t"
    assert data["backend"] == "db1" and data["user"] == "alice"
    assert data["ms"] == 304.1 and data["threshold_ms"] == 100 and data["error"] is None
    for secret in (
        "CREATE USER bob IDENTIFIED BY 'hunter2'",
        "SELECT SLEEP(1) FROM t WHERE password = 'hunter2'",
    ):
        report(0.5, Request(sql=secret), None, Answer())
        assert "hunter2" not in orjson.dumps(got[-1].payload()).decode()
    long = "SELECT " + "1 + " * 10_000 + "1"
    report(0.5, Request(sql=long), None, Answer())
    assert len(got[-1].data["sql"].encode()) < 1100  # (cut, with its marker)


# ---------------------------------------------------------------------------- URLs, signature


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/a/b?token=s3cret#frag", "https://hooks.example.com:443/a/b"),
        ("http://user:pw@127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
        ("http://[::1]:9/x?k=v", "http://[::1]:9/x"),
        ("HTTP://Example.COM", "http://example.com:80/"),
        ("http://host:99999/", "<invalid URL>"),
        ("not a url", "<invalid URL>"),
    ],
)
def test_shown_url(url: str, shown: str) -> None:
    """Only scheme://host:port/path is ever shown: no userinfo, query or fragment."""
    assert shown_url(url) == shown


def test_url_validation() -> None:
    """http and https only, a host, a valid port; the message never quotes a secret part."""
    assert url_problem("https://h.example/x?token=abc") is None
    problem = url_problem("ftp://h.example/x?token=abc")
    assert problem is not None and "http" in problem and "abc" not in problem
    assert url_problem("http:///path") is not None
    assert url_problem("http://h:0x/") is not None
    assert has_secret_parts("http://h/x?t=1") and not has_secret_parts("http://h:1/x")
    with pytest.raises(SettingError) as info:
        Settings(webhooks=("gopher://h/?token=abc",), webhook_secret="s")
    assert "webhooks" in str(info.value) and "abc" not in str(info.value)
    settings = Settings(webhooks=("https://u:pw@h/x?token=abc",), webhook_secret="s")
    assert "abc" not in repr(settings) and "pw" not in repr(settings)
    assert "https://h:443/x" in repr(settings)


def test_webhooks_need_a_secret() -> None:
    with pytest.raises(SettingError, match="need a secret"):
        Settings(webhooks=("https://h/x",))


def test_signature_matches_a_known_vector() -> None:
    """HMAC-SHA256 over the exact body, hex, after "sha256=" (GitHub's documented example:
    secret "It's a Secret to Everybody", body "Hello, World!")."""
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    got = signature(b"It's a Secret to Everybody", b"Hello, World!")
    assert hmac.compare_digest(got, expected)
    body = b'{"event":"test"}'
    assert got != signature(b"another secret", b"Hello, World!")
    assert signature(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- delivery


class FakeResponse:
    def __init__(self, code: int, headers: dict[bytes, list[bytes]] | None = None) -> None:
        self.code = code
        self.headers = Headers(headers or {})

    def deliverBody(self, protocol: Any) -> None:  # noqa: N802 - Twisted's name
        protocol.makeConnection(None)
        protocol.connectionLost(None)


class FakeAgent:
    """Records each request; the test answers them (``answer``/``refuse``) or leaves them."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, Headers, bytes, Deferred[Any]]] = []

    def request(self, method: bytes, uri: bytes, headers: Headers, body: Any) -> Deferred[Any]:
        sent: list[bytes] = []

        class Consumer:
            def write(self, data: bytes) -> None:
                sent.append(data)

        body.startProducing(Consumer())
        d: Deferred[Any] = Deferred()
        self.requests.append((uri, headers, b"".join(sent), d))
        return d

    def answer(self, index: int, code: int, **headers: str) -> None:
        raw = {name.replace("_", "-").encode(): [v.encode()] for name, v in headers.items()}
        self.requests[index][3].callback(FakeResponse(code, raw))

    def refuse(self, index: int) -> None:
        self.requests[index][3].errback(Failure(ConnectionRefusedError()))


def sender(
    clock: Clock, agent: FakeAgent, attempts: int = 3, queue_size: int = 10
) -> WebhookSender:
    policy = RetryPolicy(attempts=attempts, first=1.0, cap=8.0, jitter=0.2)
    return WebhookSender(
        "http://127.0.0.1:9/hook?token=zzz",
        b"secret",
        clock,
        agent,
        policy,
        queue_size=queue_size,
        timeout=5.0,
        uniform=lambda low, high: high,  # (no jitter in these tests: the longest pause)
        agent_name="dbslayer/test",
    )


def make_event(n: int, name: str = "backend.down") -> Event:
    return Event(name, f"id-{n}", "2026-01-01T00:00:00.000Z", "gw", None, {"n": n})


def test_offer_never_sends_in_the_callers_stack() -> None:
    """offer() only queues; the POST starts on the reactor's next turn."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent)
    s.offer(make_event(1))
    assert agent.requests == []
    clock.advance(0)
    assert len(agent.requests) == 1


def test_a_delivery_is_signed_with_its_headers() -> None:
    """POST with the JSON body, its event name, its delivery id and a valid signature."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent)
    s.offer(make_event(1))
    clock.advance(0)
    uri, headers, body, _ = agent.requests[0]
    assert uri == b"http://127.0.0.1:9/hook?token=zzz"
    assert body == make_event(1).body()

    def header(name: bytes) -> str:
        values = headers.getRawHeaders(name)
        assert values is not None
        return values[0].decode()

    assert header(b"content-type") == "application/json"
    assert header(b"user-agent") == "dbslayer/test"
    assert header(b"x-dbslayer-event") == "backend.down"
    assert header(b"x-dbslayer-delivery") == "id-1"
    expected = "sha256=" + hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(header(b"x-dbslayer-signature"), expected)
    agent.answer(0, 204)
    assert s.counters.delivered == 1 and s.queued == 0


def test_one_in_flight_and_order_kept() -> None:
    """The second event waits until the first is delivered; they go in order."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent)
    for n in (1, 2, 3):
        s.offer(make_event(n))
    clock.advance(0)
    assert len(agent.requests) == 1 and s.queued == 3
    agent.answer(0, 200)
    clock.advance(0)
    assert len(agent.requests) == 2
    agent.answer(1, 200)
    clock.advance(0)
    agent.answer(2, 200)
    ids = [r[1].getRawHeaders(b"x-dbslayer-delivery")[0] for r in agent.requests]  # type: ignore[index]
    assert ids == [b"id-1", b"id-2", b"id-3"] and s.counters.delivered == 3


def test_queue_bound_drops_the_oldest() -> None:
    """A full queue drops its oldest event (counted as queue_full) for the newest."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent, queue_size=2)
    s.offer(make_event(1))
    clock.advance(0)  # event 1 is in flight, out of the queue
    for n in (2, 3, 4, 5):
        s.offer(make_event(n))
    assert [e.id for e in s.queue] == ["id-4", "id-5"]
    assert s.counters.dropped["queue_full"] == 2 and s.queued == 3


def test_back_off_schedule_then_give_up() -> None:
    """Connection refused: retried after 1, 2 s (doubling), the same delivery id each time;
    after the last attempt dropped as gave_up; the next event then goes."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent, attempts=3)
    s.offer(make_event(1))
    s.offer(make_event(2))
    clock.advance(0)
    agent.refuse(0)
    assert s.counters.retried == 1 and s.counters.last_error == "connection refused"
    clock.advance(0.99)
    assert len(agent.requests) == 1
    clock.advance(0.01)
    assert len(agent.requests) == 2
    agent.answer(1, 503)
    clock.advance(1.99)
    assert len(agent.requests) == 2
    clock.advance(0.01)
    agent.refuse(2)
    ids = {r[1].getRawHeaders(b"x-dbslayer-delivery")[0] for r in agent.requests[:3]}  # type: ignore[index]
    assert ids == {b"id-1"}
    c = s.counters
    assert (c.attempts, c.failed_attempts, c.retried, c.dropped["gave_up"]) == (3, 3, 2, 1)
    clock.advance(0)
    assert len(agent.requests) == 4  # event 2, at once
    assert agent.requests[3][1].getRawHeaders(b"x-dbslayer-delivery") == [b"id-2"]


def test_back_off_is_capped_with_jitter() -> None:
    """The pause doubles up to the cap, drawn within [pause * (1 - jitter), pause]."""
    policy = RetryPolicy(attempts=10, first=0.5, cap=4.0, jitter=0.2)
    assert [policy.delay(n, lambda lo, hi: hi) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert policy.delay(2, lambda lo, hi: lo) == pytest.approx(0.8)


def test_timeout_counts_as_a_failed_attempt() -> None:
    """A receiver that never answers: the attempt is cancelled after the timeout, retried."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent, attempts=2)
    s.offer(make_event(1))
    clock.advance(0)
    clock.advance(5.0)
    assert s.counters.last_error == "no answer within 5 s" and s.counters.retried == 1
    clock.advance(1.0)
    clock.advance(5.0)
    assert s.counters.dropped["gave_up"] == 1 and s.queued == 0


def test_retry_after_is_honoured_within_the_cap() -> None:
    """429 with Retry-After: 3 waits 3 s (not the 1 s back-off); Retry-After: 100 waits the
    cap (8 s)."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent, attempts=5)
    s.offer(make_event(1))
    clock.advance(0)
    agent.answer(0, 429, retry_after="3")
    clock.advance(2.9)
    assert len(agent.requests) == 1
    clock.advance(0.1)
    assert len(agent.requests) == 2
    agent.answer(1, 503, retry_after="100")
    clock.advance(7.9)
    assert len(agent.requests) == 2
    clock.advance(0.1)
    assert len(agent.requests) == 3


def test_retry_after_forms() -> None:
    assert retry_after_seconds([b"7"], 0) == 7
    assert retry_after_seconds([b"Thu, 01 Jan 1970 00:01:40 GMT"], 40) == 60
    assert retry_after_seconds([b"soon"], 0) is None
    assert retry_after_seconds(None, 0) is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "refused"),
        (400, "refused"),
        (401, "refused"),
        (404, "refused"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (None, "retry"),
    ],
)
def test_outcome_of_a_status(status: int | None, outcome: str) -> None:
    """5xx, 408, 429 and no answer are tried again; other statuses drop the delivery."""
    assert outcome_of(status) == outcome


def test_a_4xx_is_dropped_at_once() -> None:
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent)
    s.offer(make_event(1))
    clock.advance(0)
    agent.answer(0, 404)
    clock.advance(60)
    assert len(agent.requests) == 1
    assert s.counters.dropped["refused"] == 1 and s.counters.last_error == "HTTP 404"


def test_stop_cancels_and_sends_nothing_more() -> None:
    """After stop(), the attempt in flight is cancelled and offers are ignored."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent)
    s.offer(make_event(1))
    clock.advance(0)
    s.stop()
    s.offer(make_event(2))
    clock.advance(60)
    assert len(agent.requests) == 1 and s.queued == 0


def test_info_is_redacted() -> None:
    """The counters as /stats shows them; the URL's token is nowhere in them."""
    clock, agent = Clock(), FakeAgent()
    s = sender(clock, agent)
    info = s.info()
    assert s.shown == "http://127.0.0.1:9/hook"
    assert set(info) >= {"delivered", "attempts", "failed_attempts", "retried", "dropped"}
    assert "zzz" not in orjson.dumps(info).decode()


def test_stats_merge_webhooks_of_two_workers() -> None:
    """/stats of several workers adds the counts per URL and keeps the later error."""
    from stats.core import _merge_webhook

    mine = {"delivered": 1, "dropped": {"gave_up": 1}, "last_error": "a", "last_error_at": 5}
    theirs = {"delivered": 2, "dropped": {"gave_up": 2}, "last_error": "b", "last_error_at": 9}
    merged = _merge_webhook(mine, theirs)
    assert merged["delivered"] == 3 and merged["dropped"] == {"gave_up": 3}
    assert merged["last_error"] == "b"


def test_fake_agent_answers_synchronously() -> None:
    """(The fakes behave like the real Agent's Deferreds.)"""
    assert succeed(1).result == 1
