"""Unit tests for the stats package: ring, rates, histograms, journals, GatewayStats, /metrics."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from twisted.internet.task import Clock

from stats.core import GatewayStats
from stats.histogram import BOUNDS, LatencyHistogram
from stats.journal import Journal
from stats.prometheus import render_metrics
from stats.ring import ThroughputRing
from stats.windows import RateWindow

T0 = 1_700_000_000  # a realistic epoch start; a multiple of 60


@pytest.fixture
def clock() -> Clock:
    """A fake reactor clock set to a realistic epoch time."""
    clock = Clock()
    clock.advance(T0)
    return clock


def record(stats: GatewayStats, clock: Clock, **overrides: Any) -> None:
    """Report one finished request with sensible defaults."""
    fields: dict[str, Any] = {
        "endpoint": "db",
        "client_ip": "127.0.0.1",
        "request_line": 'GET /db?{"SQL":"SELECT 1"} HTTP/1.1',
        "status": 200,
        "bytes_sent": 42,
        "started": clock.seconds(),
        "duration": 0.0015,
    }
    fields.update(overrides)
    stats.record_request(**fields)


# ------------------------------------------------------------------ ThroughputRing


def test_ring_bucket_boundaries(clock: Clock) -> None:
    """A bucket covers [start + k*width, start + (k+1)*width): 59.999 s is bucket 0, 60 s is 1."""
    ring = ThroughputRing(clock, buckets=10, width=60)
    ring.hit()
    clock.advance(59.999)
    ring.hit()
    clock.advance(0.001)
    ring.hit()
    clock.advance(60)
    assert ring.snapshot() == ([2, 1], [T0, T0 + 60])


def test_ring_open_bucket_excluded(clock: Clock) -> None:
    """Hits in the open bucket are not shown until it closes."""
    ring = ThroughputRing(clock, buckets=10, width=60)
    ring.hit()
    clock.advance(59)
    assert ring.snapshot() == ([], [])
    clock.advance(1)
    assert ring.snapshot() == ([1], [T0])


def test_ring_zero_buckets_included_oldest_first(clock: Clock) -> None:
    """Closed buckets without hits are listed as 0, in time order, oldest first."""
    ring = ThroughputRing(clock, buckets=10, width=60)
    ring.hit()
    clock.advance(130)
    ring.hit()
    ring.hit()
    clock.advance(60)
    assert ring.snapshot() == ([1, 0, 2], [T0, T0 + 60, T0 + 120])


def test_ring_capacity_older_buckets_fall_off(clock: Clock) -> None:
    """Only the newest ``buckets`` closed buckets are kept."""
    ring = ThroughputRing(clock, buckets=3, width=10)
    for n in range(5):
        for _ in range(n):
            ring.hit()
        clock.advance(10)
    assert ring.snapshot() == ([2, 3, 4], [T0 + 20, T0 + 30, T0 + 40])


def test_ring_long_idle_jump_is_cheap(clock: Clock) -> None:
    """A ten-year gap on 1 s buckets (3e8 of them) closes in at most ``buckets`` steps."""
    ring = ThroughputRing(clock, buckets=5, width=1)
    ring.hit()
    gap = 10 * 365 * 86_400
    clock.advance(gap)
    hits, slices = ring.snapshot()
    assert hits == [0] * 5
    assert slices == [T0 + gap - 5 + i for i in range(5)]
    ring.hit()
    clock.advance(1)
    assert ring.snapshot() == ([0, 0, 0, 0, 1], [T0 + gap - 4 + i for i in range(5)])


def test_ring_default_is_a_day_of_minutes(clock: Clock) -> None:
    """The reference ring: 1,440 one-minute buckets; a year's jump keeps exactly 1,440."""
    ring = ThroughputRing(clock)
    clock.advance(365 * 86_400 + 30)
    hits, slices = ring.snapshot()
    assert len(hits) == len(slices) == 1440
    assert slices[-1] - slices[-2] == 60
    assert slices[-1] == T0 + 365 * 86_400 - 60


# ------------------------------------------------------------------ RateWindow


def test_rate_one_second(clock: Clock) -> None:
    """Events of the second just completed, per second; the current second does not count."""
    rates = RateWindow(clock)
    for _ in range(50):
        rates.add()
    assert rates.rate(1) == 0
    clock.advance(1)
    assert rates.rate(1) == 50
    clock.advance(1)
    assert rates.rate(1) == 0
    assert rates.rate(2) == 25


def test_rate_ten_and_sixty_seconds_with_expiry(clock: Clock) -> None:
    """10 s and 60 s windows average their completed seconds and forget older events."""
    rates = RateWindow(clock, horizon=60)
    rates.add(100)
    clock.advance(30)
    rates.add(20)
    clock.advance(1)
    assert rates.rate(10) == 2.0
    assert rates.rate(60) == 2.0
    clock.advance(29)  # the 100 events are now 60 s old: still inside the 60 s window
    assert rates.rate(60) == 120 / 60
    clock.advance(1)
    assert rates.rate(60) == 20 / 60
    assert rates.rate(10) == 0.0
    clock.advance(3600)
    assert rates.rate(60) == 0.0


def test_rate_slots_are_reused_across_the_horizon(clock: Clock) -> None:
    """A slot written again after a full horizon starts from zero, not the old count."""
    rates = RateWindow(clock, horizon=5)
    rates.add(7)
    clock.advance(6)
    rates.add(1)
    clock.advance(1)
    assert rates.rate(1) == 1
    assert rates.rate(5) == 1 / 5


def test_rate_window_out_of_range(clock: Clock) -> None:
    """Asking for more than the horizon (or less than a second) is an error, not a guess."""
    rates = RateWindow(clock, horizon=60)
    with pytest.raises(ValueError):
        rates.rate(61)
    with pytest.raises(ValueError):
        rates.rate(0)


# ------------------------------------------------------------------ LatencyHistogram


def test_histogram_percentiles_on_known_data() -> None:
    """1..100 ms: p50 and p99 fall inside their buckets, never above max; max is exact."""
    histogram = LatencyHistogram()
    for ms in range(1, 101):
        histogram.observe(ms / 1000)
    assert histogram.count == 100
    assert histogram.sum == pytest.approx(5.05)
    assert histogram.max == 0.1
    p50 = histogram.percentile(0.5)
    assert 0.03 < p50 <= 0.05
    assert p50 == pytest.approx(0.05)
    p99 = histogram.percentile(0.99)
    assert 0.075 < p99 <= histogram.max
    assert p99 == pytest.approx(0.099)
    assert histogram.percentile(1.0) == 0.1
    assert histogram.percentile(0.0) == pytest.approx(0.001)


def test_histogram_summary_ms() -> None:
    """summary_ms gives count and p50/p90/p99/max in milliseconds rounded to 3 decimals."""
    histogram = LatencyHistogram()
    for ms in range(1, 101):
        histogram.observe(ms / 1000)
    assert histogram.summary_ms() == {
        "count": 100,
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "max": 100.0,
    }


def test_histogram_empty() -> None:
    """An empty histogram answers zeros, not errors."""
    histogram = LatencyHistogram()
    assert histogram.percentile(0.99) == 0.0
    assert histogram.summary_ms() == {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    assert histogram.cumulative()[-1] == (math.inf, 0)


def test_histogram_single_value_clamped_to_max() -> None:
    """Interpolation never reports more than the largest observation (nor less than the least)."""
    histogram = LatencyHistogram()
    histogram.observe(0.0012)
    assert histogram.percentile(0.5) == pytest.approx(0.0012)
    assert histogram.percentile(0.99) == pytest.approx(0.0012)


def test_histogram_cumulative_bounds_are_inclusive() -> None:
    """A value equal to a bound counts in that bound's bucket; counts are cumulative to +Inf."""
    histogram = LatencyHistogram()
    for value in (0.001, 0.0011, 120.0, -1.0):
        histogram.observe(value)
    pairs = dict(histogram.cumulative())
    assert list(pairs) == list(BOUNDS)
    assert pairs[0.0001] == 1  # the negative duration counts as 0
    assert pairs[0.001] == 2
    assert pairs[0.0015] == 3
    assert pairs[60] == 3
    assert pairs[math.inf] == 4 == histogram.count
    counts = list(pairs.values())
    assert counts == sorted(counts)
    assert histogram.percentile(0.99) <= histogram.max == 120.0


# ------------------------------------------------------------------ Journal


def test_journal_bounded_oldest_first() -> None:
    """A journal keeps the newest ``size`` entries, oldest first."""
    journal = Journal(("n", "square"), size=3)
    for n in range(5):
        journal.add((n, n * n))
    assert journal.entries() == [
        {"n": 2, "square": 4},
        {"n": 3, "square": 9},
        {"n": 4, "square": 16},
    ]
    journal.entries()[0]["n"] = 99
    assert journal.entries()[0] == {"n": 2, "square": 4}


# ------------------------------------------------------------------ GatewayStats


def test_snapshot_key_order_and_reference_keys(clock: Clock) -> None:
    """/stats lists the reference keys first, then the extension keys, in the documented order."""
    stats = GatewayStats(clock)
    clock.advance(90)
    snapshot = stats.snapshot()
    assert list(snapshot) == [
        "current_time",
        "hits",
        "slices",
        "start_time",
        "total_requests",
        "uptime_seconds",
        "qps",
        "latency_ms",
        "requests_by_status",
        "sql_errors",
        "gateway_errors",
        "statements",
        "backends",
        "in_flight",
        "auth",
        "cache",
        "redis",
        "cancelled",
    ]
    assert snapshot["current_time"] == T0 + 90
    assert snapshot["start_time"] == T0
    assert snapshot["uptime_seconds"] == 90
    assert (snapshot["hits"], snapshot["slices"]) == ([0], [T0])
    assert snapshot["total_requests"] == 0
    assert snapshot["qps"] == {"1s": 0.0, "10s": 0.0, "60s": 0.0}
    assert snapshot["statements"] == {"read": 0, "write": 0}
    assert snapshot["backends"] == {}
    assert snapshot["in_flight"] == 0


def test_only_db_and_dbform_count_in_reference_figures(clock: Clock) -> None:
    """total_requests, hits, qps and the request log count /db and /dbform only."""
    stats = GatewayStats(clock)
    record(stats, clock, endpoint="db")
    record(stats, clock, endpoint="dbform")
    for endpoint in ("stats", "metrics", "health", "shutdown", "other"):
        record(stats, clock, endpoint=endpoint, request_line=f"GET /{endpoint} HTTP/1.1")
    clock.advance(60)
    snapshot = stats.snapshot()
    assert snapshot["total_requests"] == 2
    assert snapshot["hits"] == [2]
    assert len(stats.log_entries()) == 2
    assert snapshot["requests_by_status"] == {"200": 7}
    assert set(snapshot["latency_ms"]) == {
        "db",
        "dbform",
        "stats",
        "metrics",
        "health",
        "shutdown",
        "other",
    }
    assert snapshot["latency_ms"]["db"]["count"] == 1


def test_qps_windows_in_snapshot(clock: Clock) -> None:
    """qps reports the 1 s, 10 s and 60 s rates of db requests, rounded to 3 decimals."""
    stats = GatewayStats(clock)
    for _ in range(30):
        record(stats, clock)
    record(stats, clock, endpoint="stats")
    clock.advance(1)
    assert stats.snapshot()["qps"] == {"1s": 30.0, "10s": 3.0, "60s": 0.5}
    clock.advance(9)
    assert stats.snapshot()["qps"] == {"1s": 0.0, "10s": 3.0, "60s": 0.5}
    clock.advance(1)
    assert stats.snapshot()["qps"] == {"1s": 0.0, "10s": 0.0, "60s": 0.5}
    clock.advance(50)
    assert stats.snapshot()["qps"] == {"1s": 0.0, "10s": 0.0, "60s": 0.0}


def test_request_log_entry_keys_and_values(clock: Clock) -> None:
    """A request log entry has the reference keys in order; time_toservice is in microseconds."""
    stats = GatewayStats(clock)
    record(
        stats,
        clock,
        client_ip="10.0.0.7",
        status=200,
        bytes_sent=1234,
        started=T0 + 0.75,
        duration=0.001234,
    )
    [entry] = stats.log_entries()
    assert list(entry) == [
        "bytes_sent",
        "client_ip",
        "request",
        "request_time",
        "response_code",
        "time_toservice",
    ]
    assert entry == {
        "bytes_sent": 1234,
        "client_ip": "10.0.0.7",
        "request": 'GET /db?{"SQL":"SELECT 1"} HTTP/1.1',
        "request_time": T0,
        "response_code": 200,
        "time_toservice": 1234,
    }


def test_error_log_entry_keys_and_values(clock: Clock) -> None:
    """An error entry has client_ip, error, request, request_time, in that order."""
    stats = GatewayStats(clock)
    record(stats, clock)
    record(
        stats,
        clock,
        endpoint="other",
        request_line="GET /nope HTTP/1.1",
        status=404,
        error="no such path",
    )
    [entry] = stats.error_entries()
    assert list(entry) == ["client_ip", "error", "request", "request_time"]
    assert entry == {
        "client_ip": "127.0.0.1",
        "error": "no such path",
        "request": "GET /nope HTTP/1.1",
        "request_time": T0,
    }


def test_journals_bounded_at_100_oldest_first(clock: Clock) -> None:
    """Both journals keep the last 100 entries, oldest first."""
    stats = GatewayStats(clock)
    for n in range(150):
        record(stats, clock, request_line=f"GET /db?{n} HTTP/1.1", error=f"error {n}")
        clock.advance(1)
    log, errors = stats.log_entries(), stats.error_entries()
    assert len(log) == len(errors) == 100
    assert log[0]["request"] == "GET /db?50 HTTP/1.1"
    assert log[-1]["request"] == "GET /db?149 HTTP/1.1"
    assert [e["request_time"] for e in log] == [T0 + n for n in range(50, 150)]
    assert [e["error"] for e in errors] == [f"error {n}" for n in range(50, 150)]


def test_gateway_errors_by_status_and_sql_errors(clock: Clock) -> None:
    """Statuses >= 400 count as gateway errors by status; SQL errors (answered 200) apart."""
    stats = GatewayStats(clock)
    record(stats, clock, status=200, sql_error=True, error="Table 'test.nope' doesn't exist")
    record(stats, clock, status=200, sql_error=True)
    record(stats, clock, status=400)
    record(stats, clock, status=502)
    record(stats, clock, status=502)
    record(stats, clock, endpoint="other", status=404)
    record(stats, clock, status=302)
    snapshot = stats.snapshot()
    assert snapshot["sql_errors"] == 2
    assert snapshot["gateway_errors"] == {"400": 1, "404": 1, "502": 2}
    assert snapshot["requests_by_status"] == {"200": 2, "302": 1, "400": 1, "404": 1, "502": 2}


def test_statements_by_kind(clock: Clock) -> None:
    """Statement counts add up by kind; read and write are always present."""
    stats = GatewayStats(clock)
    record(stats, clock, statements={"read": 2, "write": 1})
    record(stats, clock, statements={"read": 1})
    record(stats, clock, statements={"other": 3})
    record(stats, clock)
    assert stats.snapshot()["statements"] == {"read": 3, "write": 1, "other": 3}


def test_backends_counters_merged_with_live_info(clock: Clock) -> None:
    """Per-backend counters and latency join the live facts; live-only backends show zeros."""
    stats = GatewayStats(clock)
    pool = {"in_use": 1, "idle": 3, "max": 8}
    stats.backend_info = lambda: {
        "db1": {"state": "up", "role": "", "weight": 1, "in_flight": 0, "pool": pool},
        "db2": {"state": "down", "role": "replica", "weight": 2, "in_flight": 0},
    }
    stats.record_backend("db1", duration=0.002, failed=False, sql_error=False)
    stats.record_backend("db1", duration=0.004, failed=False, sql_error=True)
    stats.record_backend("db1", duration=1.0, failed=True, sql_error=False)
    stats.record_state_change("db2", "down")
    stats.record_state_change("db2", "up")
    stats.record_state_change("db2", "down")
    backends = stats.snapshot()["backends"]
    assert list(backends) == ["db1", "db2"]
    db1 = backends["db1"]
    assert list(db1)[:5] == ["queries", "errors", "sql_errors", "latency_ms", "state_changes"]
    assert (db1["queries"], db1["errors"], db1["sql_errors"]) == (3, 1, 1)
    assert db1["latency_ms"]["count"] == 3
    assert db1["latency_ms"]["max"] == 1000.0
    assert (db1["state"], db1["pool"]) == ("up", pool)
    db2 = backends["db2"]
    assert (db2["queries"], db2["errors"], db2["sql_errors"], db2["state_changes"]) == (0, 0, 0, 3)
    assert db2["latency_ms"]["count"] == 0
    assert (db2["state"], db2["role"], db2["weight"]) == ("down", "replica", 2)


def test_backend_known_only_from_counters(clock: Clock) -> None:
    """Without backend_info, backends that reported work still appear with their counters."""
    stats = GatewayStats(clock)
    stats.record_backend("solo", duration=0.001, failed=False, sql_error=False)
    assert stats.snapshot()["backends"]["solo"]["queries"] == 1


def test_in_flight_from_callable(clock: Clock) -> None:
    """in_flight comes from the caller's callable, 0 when none is set."""
    stats = GatewayStats(clock)
    assert stats.snapshot()["in_flight"] == 0
    stats.in_flight = lambda: 4
    assert stats.snapshot()["in_flight"] == 4


def test_secrets_redacted_everywhere(clock: Clock) -> None:
    """A password in a request line or an error never shows in /stats, the journals or /metrics."""
    stats = GatewayStats(clock)
    line = """GET /db?{"SQL":"CREATE USER u IDENTIFIED BY 'hunter2'"} HTTP/1.1"""
    error = "You have an error in your SQL syntax near 'IDENTIFIED BY 'hunter2' REQUIRE' at line 1"
    record(stats, clock, request_line=line, error=error, sql_error=True)
    record(
        stats,
        clock,
        endpoint="stats",
        request_line="GET /stats?token=hunter2 HTTP/1.1",
        status=403,
        error="cannot reach mysql://u:hunter2@db1/x for ?token=hunter2",
    )
    clock.advance(60)
    body, _ = render_metrics(stats)
    for text in (
        repr(stats.snapshot()),
        repr(stats.log_entries()),
        repr(stats.error_entries()),
        body.decode(),
    ):
        assert "hunter2" not in text
    [logged] = stats.log_entries()
    assert logged["request"] == """GET /db?{"SQL":"CREATE USER u IDENTIFIED BY '***'"} HTTP/1.1"""
    assert stats.error_entries()[1]["request"] == "GET /stats?token=*** HTTP/1.1"


def test_request_line_made_and_redacted_only_when_read(clock: Clock) -> None:
    """A request line given as a function is made once, when the journal is first read, and
    stored redacted like any other."""
    stats = GatewayStats(clock)
    calls = []

    def line() -> str:
        calls.append(1)
        return "GET /db?token=hunter2 HTTP/1.1"

    record(stats, clock, request_line=line, error="boom")
    assert calls == []
    assert "hunter2" not in stats.log_entries()[0]["request"]
    assert stats.error_entries()[0]["request"] == stats.log_entries()[0]["request"]
    assert "***" in stats.log_entries()[0]["request"] and calls == [1]


def test_long_request_lines_truncated(clock: Clock) -> None:
    """Request lines and errors are cut to 2 KiB with a note of what was left out."""
    stats = GatewayStats(clock)
    record(stats, clock, request_line="x" * 5000, error="e" * 3000)
    assert stats.log_entries()[0]["request"] == "x" * 2048 + "…[2952 more bytes]"
    assert stats.error_entries()[0]["error"] == "e" * 2048 + "…[952 more bytes]"


def test_huge_request_line_stored_short_and_redacted(clock: Clock) -> None:
    """A megabyte request line is stored as 2 KiB, its secret hidden, the rest counted."""
    stats = GatewayStats(clock)
    line = 'POST /db?{"SQL":"SET PASSWORD = PASSWORD(\'hunter2\'); ' + "x" * 1_000_000
    record(stats, clock, request_line=line)
    request = stats.log_entries()[0]["request"]
    assert "hunter2" not in request
    assert request.startswith('POST /db?{"SQL":"SET PASSWORD = PASSWORD(\'***\'); xxx')
    assert request.endswith(f"…[{len(line) - len('hunter2') + len('***') - 2048} more bytes]")


# ------------------------------------------------------------------ /metrics


def samples_of(body: bytes) -> list[Sample]:
    """Every sample of a text exposition (it must parse)."""
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample called ``name`` with exactly these labels."""
    [found] = [s.value for s in samples if s.name == name and s.labels == labels]
    return found


def busy_stats(clock: Clock) -> GatewayStats:
    """A GatewayStats with requests, errors, statements and two backends."""
    stats = GatewayStats(clock)
    stats.backend_info = lambda: {
        "db1": {
            "state": "up",
            "pool": {"in_use": 2, "idle": 5, "max": 8},
            "answers": {"reactor": 40, "thread": 2},
        },
        "db2": {"state": "unknown"},
    }
    stats.in_flight = lambda: 3
    for ms in range(1, 101):
        record(stats, clock, duration=ms / 1000, statements={"read": 1})
    record(stats, clock, endpoint="dbform", status=200, sql_error=True, statements={"write": 2})
    record(stats, clock, endpoint="other", status=404)
    stats.record_backend("db1", duration=0.003, failed=False, sql_error=False)
    stats.record_backend("db1", duration=0.004, failed=True, sql_error=False)
    stats.record_backend("db2", duration=0.5, failed=False, sql_error=True)
    stats.record_state_change("db2", "down")
    clock.advance(1)
    return stats


def test_metrics_parse_and_carry_the_stats_figures(clock: Clock) -> None:
    """The exposition parses and shows the same counts as /stats."""
    stats = busy_stats(clock)
    body, content_type = render_metrics(stats)
    assert content_type.startswith("text/plain; version=")
    samples = samples_of(body)
    assert value(samples, "dbslayer_requests_total", endpoint="db", status="200") == 100
    assert value(samples, "dbslayer_requests_total", endpoint="dbform", status="200") == 1
    assert value(samples, "dbslayer_requests_total", endpoint="other", status="404") == 1
    assert value(samples, "dbslayer_db_requests_total") == stats.snapshot()["total_requests"] == 101
    assert value(samples, "dbslayer_sql_errors_total") == 1
    assert value(samples, "dbslayer_gateway_errors_total", status="404") == 1
    assert value(samples, "dbslayer_statements_total", kind="read") == 100
    assert value(samples, "dbslayer_statements_total", kind="write") == 2
    assert value(samples, "dbslayer_queries_per_second", window="1s") == 101
    assert value(samples, "dbslayer_queries_per_second", window="10s") == 10.1
    assert value(samples, "dbslayer_in_flight_requests") == 3
    assert value(samples, "dbslayer_start_time_seconds") == T0
    assert value(samples, "dbslayer_backend_queries_total", backend="db1") == 2
    assert value(samples, "dbslayer_backend_errors_total", backend="db1") == 1
    assert value(samples, "dbslayer_backend_sql_errors_total", backend="db2") == 1
    assert value(samples, "dbslayer_backend_state_changes_total", backend="db2") == 1
    assert value(samples, "dbslayer_backend_up", backend="db1") == 1
    assert value(samples, "dbslayer_backend_up", backend="db2") == 0  # unknown is not up
    assert value(samples, "dbslayer_backend_pool_connections", backend="db1", state="in_use") == 2
    assert value(samples, "dbslayer_backend_pool_connections", backend="db1", state="idle") == 5
    assert value(samples, "dbslayer_backend_answers_total", backend="db1", read_in="reactor") == 40
    assert value(samples, "dbslayer_backend_answers_total", backend="db1", read_in="thread") == 2
    assert not [
        s
        for s in samples
        if s.name == "dbslayer_backend_pool_connections" and s.labels["backend"] == "db2"
    ]


def test_metrics_histograms_cumulative_with_inf_equal_to_count(clock: Clock) -> None:
    """Histogram buckets use BOUNDS, are cumulative, and +Inf equals _count; _sum is the total."""
    stats = busy_stats(clock)
    samples = samples_of(render_metrics(stats)[0])
    buckets = [
        s
        for s in samples
        if s.name == "dbslayer_request_duration_seconds_bucket" and s.labels["endpoint"] == "db"
    ]
    assert [float(s.labels["le"]) for s in buckets] == list(BOUNDS)
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert (
        value(samples, "dbslayer_request_duration_seconds_bucket", endpoint="db", le="0.05") == 50
    )
    assert buckets[-1].labels["le"] == "+Inf"
    assert (
        buckets[-1].value
        == value(samples, "dbslayer_request_duration_seconds_count", endpoint="db")
        == 100
    )
    assert value(samples, "dbslayer_request_duration_seconds_sum", endpoint="db") == pytest.approx(
        5.05
    )
    assert value(samples, "dbslayer_backend_duration_seconds_bucket", backend="db1", le="+Inf") == 2
    assert value(samples, "dbslayer_backend_duration_seconds_count", backend="db1") == 2
    assert value(samples, "dbslayer_backend_duration_seconds_bucket", backend="db2", le="0.3") == 0
    assert value(samples, "dbslayer_backend_duration_seconds_bucket", backend="db2", le="0.5") == 1


def test_two_gateways_render_independently(clock: Clock) -> None:
    """Two GatewayStats in one process render their own figures; the global registry is untouched."""
    names_before = set(REGISTRY._names_to_collectors)
    first, second = GatewayStats(clock), GatewayStats(clock)
    record(first, clock)
    for _ in range(3):
        record(second, clock)
    for _ in range(2):  # rendering twice must not trip duplicate registration
        one, two = samples_of(render_metrics(first)[0]), samples_of(render_metrics(second)[0])
        assert value(one, "dbslayer_db_requests_total") == 1
        assert value(two, "dbslayer_db_requests_total") == 3
    assert set(REGISTRY._names_to_collectors) == names_before
    assert not any(name.startswith("dbslayer") for name in names_before)


def test_metrics_of_idle_gateway_parse(clock: Clock) -> None:
    """A fresh gateway with no traffic renders a valid exposition with zero totals."""
    samples = samples_of(render_metrics(GatewayStats(clock))[0])
    assert value(samples, "dbslayer_db_requests_total") == 0
    assert value(samples, "dbslayer_in_flight_requests") == 0


def test_journals_of_several_workers_merge_in_request_order_within_a_second() -> None:
    """Entries of two workers in one whole second (``request_time`` is the same) come out in
    the order the requests started, and the precise time used for it is never shown."""
    one, two = GatewayStats(Clock()), GatewayStats(Clock())
    for stats, started, sql in (
        (one, 1000.1, "first"),
        (two, 1000.2, "second"),
        (one, 1000.3, "third"),
        (two, 1000.4, "fourth"),
    ):
        stats.record_request(
            endpoint="db",
            client_ip="127.0.0.1",
            request_line=f"GET /db?{sql} HTTP/1.1",
            status=400,
            bytes_sent=1,
            started=started,
            duration=0.001,
            error=sql,
        )
    _, log, errors = one.merged([two.export()])
    assert [e["error"] for e in errors] == ["first", "second", "third", "fourth"]
    assert [e["request"].split("?")[1].split()[0] for e in log] == [
        "first", "second", "third", "fourth",
    ]  # fmt: skip
    assert all(set(e) == {"client_ip", "error", "request", "request_time"} for e in errors)
    assert all("_at" not in e for e in log + one.log_entries() + one.error_entries())
