"""Prometheus text exposition of the ``GatewayStats`` figures (``/metrics``).

A custom collector reads :meth:`stats.core.GatewayStats.figures` at scrape time and is registered
in a registry of its own per rendering, never the process-wide default one, so two gateways in
one process never clash.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from stats.core import Figures, GatewayStats
from stats.histogram import LatencyHistogram

try:  # prometheus_client >= 0.22: the content type that generate_latest's output carries
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
except ImportError:  # pragma: no cover - older releases, where LATEST still meant 0.0.4
    from prometheus_client.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE

PREFIX = "dbslayer"


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    return [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]


class GatewayCollector(Collector):
    """Yields the gateway's metric families from one :class:`Figures` reading per scrape."""

    def __init__(self, stats: GatewayStats, figures: Figures | None = None) -> None:
        self.stats = stats
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        """All families; every scrape reads the figures once, so they agree with each other."""
        f = self.figures if self.figures is not None else self.stats.figures()
        yield from self._instance()
        yield from self._requests(f)
        yield from self._backends(f)
        yield from self._events(f)
        yield from self._webhooks(f)

    def _instance(self) -> Iterator[Metric]:
        """``dbslayer_instance_info{instance,version} 1``: which host of a fleet this is (the
        one family with an ``instance`` label, see api.fleet)."""
        if self.stats.instance is None:
            return
        info = GaugeMetricFamily(
            f"{PREFIX}_instance_info",
            "This gateway: its instance name (--instance) and version; always 1.",
            labels=["instance", "version"],
        )
        info.add_metric([self.stats.instance(), self.stats.version or "unknown"], 1)
        yield info

    def _events(self, f: Figures) -> Iterator[Metric]:
        auth = CounterMetricFamily(
            f"{PREFIX}_auth", "Authentication attempts by outcome.", labels=["outcome"]
        )
        for outcome, count in f.events.get("auth", {}).items():
            auth.add_metric([outcome], count)
        yield auth
        cache = CounterMetricFamily(
            f"{PREFIX}_cache", "Answer cache lookups by outcome.", labels=["outcome"]
        )
        for outcome, count in f.events.get("cache", {}).items():
            cache.add_metric([outcome], count)
        yield cache
        yield CounterMetricFamily(
            f"{PREFIX}_redis_errors",
            "Redis calls that failed or timed out.",
            value=f.events.get("redis", {}).get("errors", 0),
        )
        cancelled = CounterMetricFamily(
            f"{PREFIX}_cancelled",
            "Requests whose client went away while they ran, by what became of the statements.",
            labels=["outcome"],
        )
        for outcome, count in f.events.get("cancelled", {}).items():
            cancelled.add_metric([outcome], count)
        yield cancelled

    def _webhooks(self, f: Figures) -> Iterator[Metric]:
        """Events emitted by name, and webhook deliveries per URL (shown without userinfo,
        query string or fragment: a URL may carry a token)."""
        emitted = CounterMetricFamily(
            f"{PREFIX}_events", "Gateway events emitted (api.webhooks), by name.", labels=["event"]
        )
        for name, count in f.events.get("events", {}).items():
            emitted.add_metric([name], count)
        yield emitted
        url = ["url"]
        families = {
            key: CounterMetricFamily(f"{PREFIX}_webhook_{key}", text, labels=url)
            for key, text in (
                ("delivered", "Webhook deliveries answered 2xx."),
                ("attempts", "Webhook delivery attempts (POSTs)."),
                ("failed_attempts", "Webhook attempts that failed (no answer, or not 2xx)."),
                ("retried", "Webhook attempts scheduled again after a failure."),
            )
        }
        dropped = CounterMetricFamily(
            f"{PREFIX}_webhook_dropped",
            "Webhook deliveries dropped, by reason (queue_full, gave_up, refused).",
            labels=["url", "reason"],
        )
        queued = GaugeMetricFamily(
            f"{PREFIX}_webhook_queued", "Webhook events waiting (or being tried).", labels=url
        )
        for shown, info in f.webhooks.items():
            for key, family in families.items():
                family.add_metric([shown], int(info.get(key) or 0))
            for reason, count in (info.get("dropped") or {}).items():
                dropped.add_metric([shown, reason], count)
            queued.add_metric([shown], int(info.get("queued") or 0))
        yield from (*families.values(), dropped, queued)

    def _requests(self, f: Figures) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}_requests",
            "HTTP requests by endpoint and status.",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in f.requests.items():
            requests.add_metric([endpoint, str(status)], count)
        yield requests
        yield CounterMetricFamily(
            f"{PREFIX}_db_requests",
            "DBSlayer requests (/db and /dbform), the reference total_requests.",
            value=f.total_requests,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_sql_errors", "Requests answered with an SQL error.", value=f.sql_errors
        )
        gateway_errors = CounterMetricFamily(
            f"{PREFIX}_gateway_errors", "Requests answered with status >= 400.", labels=["status"]
        )
        for status, count in f.gateway_errors.items():
            gateway_errors.add_metric([str(status)], count)
        yield gateway_errors
        statements = CounterMetricFamily(
            f"{PREFIX}_statements", "SQL statements by kind.", labels=["kind"]
        )
        for kind, count in f.statements.items():
            statements.add_metric([kind], count)
        yield statements
        duration = HistogramMetricFamily(
            f"{PREFIX}_request_duration_seconds",
            "Time to serve a request, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, histogram in f.latency.items():
            duration.add_metric([endpoint], _buckets(histogram), histogram.sum)
        yield duration
        qps = GaugeMetricFamily(
            f"{PREFIX}_queries_per_second",
            "DBSlayer requests per second over the last completed seconds.",
            labels=["window"],
        )
        for window, rate in f.qps.items():
            qps.add_metric([window], rate)
        yield qps
        yield GaugeMetricFamily(
            f"{PREFIX}_in_flight_requests",
            "DBSlayer requests (/db, /dbform) being served now.",
            value=f.in_flight,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_start_time_seconds",
            "Start time of the gateway, epoch seconds.",
            value=f.start,
        )

    def _backends(self, f: Figures) -> Iterator[Metric]:
        labels = ["backend"]
        queries = CounterMetricFamily(
            f"{PREFIX}_backend_queries", "Requests executed on a backend.", labels=labels
        )
        errors = CounterMetricFamily(
            f"{PREFIX}_backend_errors",
            "Requests a backend could not run (connection failed or lost).",
            labels=labels,
        )
        sql_errors = CounterMetricFamily(
            f"{PREFIX}_backend_sql_errors",
            "Requests a backend answered with an SQL error.",
            labels=labels,
        )
        state_changes = CounterMetricFamily(
            f"{PREFIX}_backend_state_changes", "Health state changes of a backend.", labels=labels
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_backend_up", "1 when the backend's state is up, else 0.", labels=labels
        )
        pool = GaugeMetricFamily(
            f"{PREFIX}_backend_pool_connections",
            "Pooled connections of a backend by state.",
            labels=["backend", "state"],
        )
        answers = CounterMetricFamily(
            f"{PREFIX}_backend_answers",
            "Answers of a backend by where they were read: the reactor thread or a pool thread.",
            labels=["backend", "read_in"],
        )
        wsrep_state = GaugeMetricFamily(
            f"{PREFIX}_backend_wsrep_local_state",
            "Galera mode: the node's wsrep_local_state (4 synced, 2 donor/desynced, 1 "
            "joining, 3 joined); absent while unknown.",
            labels=labels,
        )
        wsrep_size = GaugeMetricFamily(
            f"{PREFIX}_backend_wsrep_cluster_size",
            "Galera mode: wsrep_cluster_size as the node reports it.",
            labels=labels,
        )
        wsrep_primary = GaugeMetricFamily(
            f"{PREFIX}_backend_wsrep_primary",
            "Galera mode: 1 when the node is ready in the primary component, else 0.",
            labels=labels,
        )
        writer = GaugeMetricFamily(
            f"{PREFIX}_backend_writer",
            "Galera mode: 1 for the node that takes the writes, else 0.",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            f"{PREFIX}_backend_duration_seconds",
            "Time to execute a request on a backend.",
            labels=labels,
        )
        for name, c in f.backends.items():
            live = f.backend_live.get(name, {})
            queries.add_metric([name], c.queries)
            errors.add_metric([name], c.errors)
            sql_errors.add_metric([name], c.sql_errors)
            state_changes.add_metric([name], c.state_changes)
            up.add_metric([name], 1 if live.get("state") == "up" else 0)
            connections = live.get("pool")
            if isinstance(connections, dict):
                for state in ("in_use", "idle"):
                    if isinstance(connections.get(state), int | float):
                        pool.add_metric([name, state], connections[state])
            read_in = live.get("answers")
            if isinstance(read_in, dict):
                for where in ("reactor", "thread"):
                    if isinstance(read_in.get(where), int):
                        answers.add_metric([name, where], read_in[where])
            duration.add_metric([name], _buckets(c.latency), c.latency.sum)
            if "writer" in live:  # (galera mode)
                writer.add_metric([name], 1 if live.get("writer") else 0)
                wsrep = live.get("wsrep")
                facts: dict[str, Any] = wsrep if isinstance(wsrep, dict) else {}
                primary = facts.get("ready") is True and facts.get("cluster_status") == "Primary"
                wsrep_primary.add_metric([name], 1 if primary else 0)
                for family, key in ((wsrep_state, "local_state"), (wsrep_size, "cluster_size")):
                    if isinstance(facts.get(key), int):
                        family.add_metric([name], facts[key])
        yield from (queries, errors, sql_errors, state_changes, up, pool, answers, duration)
        if any("writer" in live for live in f.backend_live.values()):
            yield from (wsrep_state, wsrep_size, wsrep_primary, writer)


def render_metrics(stats: GatewayStats, figures: Figures | None = None) -> tuple[bytes, str]:
    """``(body, content type)`` of the Prometheus text exposition of ``stats`` (or of the given
    figures, e.g. merged from every worker)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(stats, figures))
    return generate_latest(registry), CONTENT_TYPE
