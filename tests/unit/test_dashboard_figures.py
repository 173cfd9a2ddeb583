"""Unit tests for the figures the dashboard shows: backend state changes (the first verdict on a
backend is no change, with one worker or several), "in flight" (DBSlayer requests only, never
the monitoring request reading it), and the SQL of failed POST requests in the error journal
(statements that may hold a secret shown as their kind only)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from api.http import GatewaySite, is_dbslayer_path
from api.observe import LAZY_LINE_MAX, RequestRecorder
from gateway.health import CheckResult, HealthChecks, HealthPolicy, HealthTracker
from gateway.request import Request
from gateway.router import BackendStatus
from stats.core import GatewayStats

T0 = 1_700_000_000
OK = CheckResult(ok=True)
REFUSED = CheckResult(ok=False, errno=2003, error="Can't connect to MySQL server on 'db' (111)")


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(T0)
    return clock


# ------------------------------------------------------------------ state changes


def test_first_verdict_is_no_change(clock: Clock) -> None:
    """unknown -> up (or down) is the first verdict, not a change; up <-> down are."""
    stats = GatewayStats(clock)
    stats.record_state_change("db1", "up", "unknown")
    stats.record_state_change("db2", "down", "unknown")
    backends = stats.snapshot()["backends"]
    assert backends["db1"]["state_changes"] == 0
    assert backends["db2"]["state_changes"] == 0
    stats.record_state_change("db1", "down", "up")
    stats.record_state_change("db1", "up", "down")
    stats.record_state_change("db2", "up", "down")
    backends = stats.snapshot()["backends"]
    assert (backends["db1"]["state_changes"], backends["db2"]["state_changes"]) == (2, 1)


def checked_stats(clock: Clock, results: list[CheckResult]) -> GatewayStats:
    """One worker: its health checks (as api.service wires them) run over ``results``."""
    stats = GatewayStats(clock)
    policy = HealthPolicy(jitter=0.0, fall=1, rise=1)
    queue = list(results)
    checks = HealthChecks(
        clock,
        {"db": HealthTracker(BackendStatus("db"), policy)},
        {"db": lambda: defer.succeed(queue.pop(0) if queue else OK)},
        policy,
        on_change=lambda name, old, new: stats.record_state_change(name, new, old),
        uniform=lambda a, b: (a + b) / 2,
    )
    checks.startService()
    for _ in results[1:]:
        clock.advance(policy.max_backoff)
    checks.stopService()
    return stats


def test_backend_that_never_changed_shows_zero_with_two_workers(clock: Clock) -> None:
    """Two workers each check the backend once (unknown -> up): the server's figure, the
    workers' sum, is 0 (it was 2). A real change, seen by both workers, is 2."""
    first, second = checked_stats(clock, [OK]), checked_stats(clock, [OK])
    merged, _, _ = first.merged([second.export()])
    assert merged.backends["db"].state_changes == 0
    assert first.snapshot(merged)["backends"]["db"]["state_changes"] == 0

    first, second = checked_stats(clock, [OK, REFUSED]), checked_stats(clock, [OK, REFUSED])
    assert first.snapshot()["backends"]["db"]["state_changes"] == 1
    merged, _, _ = first.merged([second.export()])
    assert merged.backends["db"].state_changes == 2


def test_backend_down_from_the_start_then_up_is_one_change(clock: Clock) -> None:
    stats = checked_stats(clock, [REFUSED, OK])
    assert stats.snapshot()["backends"]["db"]["state_changes"] == 1


# ------------------------------------------------------------------ in flight


@pytest.mark.parametrize(
    ("path", "counted"),
    [
        (b"/db", True),
        (b"/dbform", True),
        (b"/%64b", True),
        (b"/%64%62form", True),
        (b"/stats", False),
        (b"/stats/errors", False),
        (b"/metrics", False),
        (b"/", False),
        (b"/static/console.js", False),
        (b"/dbx", False),
        (b"/db/x", False),
    ],
)
def test_dbslayer_paths(path: bytes, counted: bool) -> None:
    assert is_dbslayer_path(path) is counted


def test_in_flight_counts_dbslayer_requests_only(clock: Clock) -> None:
    """The statistics' in-flight figure is the site's DBSlayer requests: the /stats request
    that reads it (and the dashboard's parallel /stats/errors) is not among them; finished
    and abandoned requests leave the count."""
    site = GatewaySite(Resource(), 1 << 20, clock)
    stats = GatewayStats(clock)
    stats.in_flight = lambda: site.db_in_flight

    def request(path: bytes) -> Any:
        return SimpleNamespace(path=path, counted=False)

    poll, errors, query, form = (
        request(p) for p in (b"/stats", b"/stats/errors", b"/db", b"/dbform")
    )
    site.admit(poll)
    site.admit(errors)
    assert stats.snapshot()["in_flight"] == 0
    assert site.in_flight == 2  # (every request still counts for draining)
    site.admit(query)
    site.admit(form)
    assert stats.snapshot()["in_flight"] == 2
    site.request_finished(query)
    site.request_abandoned(form)
    site.request_abandoned(form)  # (twice: counted once)
    site.request_finished(poll)
    assert stats.snapshot()["in_flight"] == 0
    assert site.in_flight == 1
    site.request_finished(errors)
    assert (site.in_flight, site.db_in_flight) == (0, 0)


# ------------------------------------------------------------------ SQL of failed POSTs


class FinishedRequest:
    """What RequestRecorder reads of a finished request."""

    def __init__(
        self, method: bytes, uri: bytes, sql: str | None, error: str | None, code: int = 200
    ) -> None:
        self.method = method
        self.uri = uri
        self.path = uri.split(b"?", 1)[0]
        self.clientproto = b"HTTP/1.1"
        self.code = code
        self.sentLength = 100
        self.started = float(T0)
        self.error_message = error
        self.sql_error = error is not None and code == 200
        self.dbslayer_request = Request(sql=sql) if sql is not None else None
        if self.sql_error and self.dbslayer_request is not None:
            self.dbslayer_request.read()  # (the executor read it: an SQL error came back)

    def getClientAddress(self) -> Any:
        return SimpleNamespace(host="127.0.0.1")


def errors_of(clock: Clock, *requests: FinishedRequest) -> list[dict[str, Any]]:
    stats = GatewayStats(clock)
    recorder = RequestRecorder(stats, clock)
    for request in requests:
        recorder.finished(request)
    return stats.error_entries()


def test_post_error_entry_carries_its_sql(clock: Clock) -> None:
    """A failed POST /db or POST /dbform shows its SQL under ``sql``; a GET (the SQL is in its
    request line), a success and a POST without SQL add no key."""
    entries = errors_of(
        clock,
        FinishedRequest(b"POST", b"/db", "SELECT * FROM missing", "1146: Table 'missing' ..."),
        FinishedRequest(b"POST", b"/dbform", "SELECT nope", "1054: Unknown column 'nope'"),
        FinishedRequest(b"POST", b"/db", "SELECT 1", None),
        FinishedRequest(b"GET", b'/db?{"SQL":"SELECT nope"}', "SELECT nope", "1054: ..."),
        FinishedRequest(b"POST", b"/db", None, "body is not a JSON object", 400),
        FinishedRequest(b"POST", b"/db", "CREATE USER u IDENTIFIED BY 'pw-1'", "no token", 401),
    )
    assert [e.get("sql") for e in entries] == [
        "SELECT * FROM missing",
        "SELECT nope",
        None,
        None,
        "CREATE USER … [redacted]",  # (refused before its SQL was read: read for the journal)
    ]
    assert list(entries[0]) == ["client_ip", "error", "request", "request_time", "sql"]
    assert entries[0]["request"] == "POST /db HTTP/1.1"
    assert list(entries[2]) == ["client_ip", "error", "request", "request_time"]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE USER 'h4'@'localhost' IDENTIFIED BY 'pw-h4-secret' garbage",
        "SELECT 1; ALTER USER 'h4'@'%' IDENTIFIED BY 'pw-h4-secret'",
        "SET PASSWORD FOR 'h4'@'%' = PASSWORD('pw-h4-secret')",
        "SELECT AES_ENCRYPT('x', 'pw-h4-secret') FROM nowhere",
    ],
)
def test_post_error_sql_keeps_secrets_redacted(clock: Clock, sql: str) -> None:
    """Statements that may hold a secret show as their kind only, also when the error
    message quotes them."""
    message = f"1064: You have an error in your SQL syntax near '{sql[-30:]}'"
    [entry] = errors_of(clock, FinishedRequest(b"POST", b"/db", sql, message))
    assert "pw-h4" not in repr(entry)
    assert "[redacted]" in entry["sql"]


def test_post_error_sql_is_bounded(clock: Clock) -> None:
    """A big failed POST keeps 2 KiB of its SQL (made at once: no big text is kept)."""
    sql = "SELECT " + ", ".join(["1"] * LAZY_LINE_MAX)
    [entry] = errors_of(clock, FinishedRequest(b"POST", b"/db", sql, "1064: ..."))
    assert entry["sql"].startswith("SELECT 1, 1") and entry["sql"].endswith("more bytes]")
    assert len(entry["sql"].encode()) < 2100
