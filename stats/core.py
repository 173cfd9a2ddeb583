"""``GatewayStats``: the one object the HTTP layer and the executor report into.

It keeps the reference DBSlayer figures (throughput ring, total requests, the last requests and
errors) and the extension figures (rates, latency percentiles, status and error counts,
statements by kind, per-backend counters merged with live backend facts). ``/stats`` is
:meth:`GatewayStats.snapshot`; ``/metrics`` renders the same :class:`Figures`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from stats import SecondsClock
from stats.histogram import LatencyHistogram
from stats.journal import Journal
from stats.redact import excerpt
from stats.ring import ThroughputRing
from stats.windows import RateWindow

#: Endpoints that are DBSlayer requests proper (reference ``total_requests``, ring, journal).
DB_ENDPOINTS = frozenset({"db", "dbform"})
#: The ``qps`` windows of ``/stats``: label -> seconds.
QPS_WINDOWS = {"1s": 1, "10s": 10, "60s": 60}
#: The fields of the request journal (/stats/log) and of the error journal (/stats/errors).
LOG_FIELDS = (
    "bytes_sent",
    "client_ip",
    "request",
    "request_time",
    "response_code",
    "time_toservice",
)
ERROR_FIELDS = ("client_ip", "error", "request", "request_time")
#: An error entry's extension key: the (redacted) SQL of a request that carried it in its body
#: (POST), where the request line shows none; absent from other entries.
ERROR_SQL = "sql"
#: The precise start time (epoch seconds, a float) of a journal entry: kept so that journals
#: of several workers merge in the order the requests came (``request_time`` is whole
#: seconds), and never shown.
AT = "_at"
#: Recorded requests (or backend runs) past which they are folded into the figures without
#: waiting for a reading: a bound on what is held, not a delay on what is shown.
FOLD_EVERY = 128
#: Statement kinds always present in ``statements``, even at zero.
STATEMENT_KINDS = ("read", "write")


@dataclass
class BackendCounters:
    """What the executor reported about one backend."""

    queries: int = 0
    errors: int = 0
    sql_errors: int = 0
    state_changes: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass(frozen=True)
class Figures:
    """Everything ``/stats`` and ``/metrics`` show, read at one instant.

    Histograms are the live objects, not copies: read them, do not change them.
    """

    now: float
    start: float
    hits: list[int]
    slices: list[int]
    total_requests: int
    qps: dict[str, float]
    requests: dict[tuple[str, int], int]  # (endpoint, status) -> count, every endpoint
    latency: dict[str, LatencyHistogram]  # endpoint -> histogram
    sql_errors: int
    gateway_errors: dict[int, int]  # status >= 400 -> count
    statements: dict[str, int]
    backends: dict[str, BackendCounters]
    backend_live: dict[str, dict[str, Any]]
    in_flight: int
    events: dict[str, dict[str, int]]  # family (auth, cache, redis) -> outcome -> count
    #: Webhook deliveries per URL (shown form): counters, queue length, last error.
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)


#: Event families and their outcomes, all shown from the start (zeros included).
EVENTS = {
    "auth": ("success", "failure"),
    "cache": ("hit", "miss", "bypass"),
    "redis": ("errors",),
    # Requests whose client went away while they ran, by what became of their statements:
    # stopped on the server, ended before the stop came, or never sent (gateway.executor).
    "cancelled": ("stopped", "finished", "not_sent"),
}


class GatewayStats:
    """Counters, windows, histograms and journals of one gateway, on an injected clock.

    ``backend_info`` (returning live per-backend facts) and ``in_flight`` (returning the number
    of DBSlayer requests, ``/db`` and ``/dbform``, being served: not the monitoring requests
    that read it) are optional callables the caller sets after construction.
    """

    def __init__(
        self,
        clock: SecondsClock,
        buckets: int = 1440,
        bucket_seconds: int = 60,
        journal_size: int = 100,
        start: float | None = None,
    ) -> None:
        self._clock = clock
        # Workers of one server share ``start`` so their throughput buckets line up.
        self._ring = ThroughputRing(clock, buckets, bucket_seconds, start=start)
        self._start = self._ring.start
        self._rates = RateWindow(clock, horizon=max(QPS_WINDOWS.values()))
        self._total_requests = 0
        self._requests: Counter[tuple[str, int]] = Counter()
        self._latency: dict[str, LatencyHistogram] = {}
        self._sql_errors = 0
        self._gateway_errors: Counter[int] = Counter()
        self._statements: Counter[str] = Counter({kind: 0 for kind in STATEMENT_KINDS})
        self._backends: dict[str, BackendCounters] = {}
        #: Requests and backend runs recorded and not folded yet (see record_request).
        self._pending: list[tuple[Any, ...]] = []
        self._pending_backends: list[tuple[str, float, bool, bool]] = []
        self._log = Journal((*LOG_FIELDS, AT), journal_size)
        self._errors = Journal((*ERROR_FIELDS, ERROR_SQL, AT), journal_size)
        self._events = {family: dict.fromkeys(outcomes, 0) for family, outcomes in EVENTS.items()}
        self.backend_info: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
        self.in_flight: Callable[[], int] | None = None
        #: Webhook deliveries per URL (api.webhooks), for /stats and /metrics.
        self.webhook_info: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
        #: This host's name in a fleet (api.fleet), and the gateway's version: the
        #: ``instance`` key of /stats and the dbslayer_instance_info family of /metrics.
        self.instance: Callable[[], str] | None = None
        self.version = ""

    # ------------------------------------------------------------------ reporting

    def record_request(
        self,
        *,
        endpoint: str,
        client_ip: str,
        request_line: str | Callable[[], str],
        status: int,
        bytes_sent: int,
        started: float,
        duration: float,
        error: str | None = None,
        sql_error: bool = False,
        statements: Mapping[str, int] | None = None,
        sql: str | Callable[[], str] | None = None,
        kinds: tuple[str, ...] | None = None,
    ) -> None:
        """One finished HTTP request (any endpoint); ``request_line`` and ``error`` are stored
        redacted and cut to 2 KiB (:func:`stats.redact.excerpt`). ``request_line`` may be a
        function that makes the line: it is called, and the line redacted, only when the
        journal is read (most entries never are). ``sql``: the SQL of a request that sent it
        in its body (the caller hides secret statements; it is redacted and cut here too, and
        may be a function called when read), kept with its error entry. ``kinds``: the kind
        of each statement (another way to give ``statements``).

        Recording is an append: the figures and journals take the requests in (a fold) when
        they are read, or every :data:`FOLD_EVERY` requests."""
        self._pending.append(
            (
                self._clock.seconds(),
                endpoint,
                client_ip,
                request_line,
                status,
                bytes_sent,
                started,
                duration,
                error,
                sql_error,
                statements,
                kinds,
                sql,
            )
        )
        if len(self._pending) >= FOLD_EVERY:
            self._fold()

    def record_backend(self, name: str, *, duration: float, failed: bool, sql_error: bool) -> None:
        """One request executed on backend ``name``: failed = could not run or connection lost;
        sql_error = the database answered with an error."""
        self._pending_backends.append((name, duration, failed, sql_error))
        if len(self._pending_backends) >= FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        """Count the requests recorded since the last fold into the figures and journals, in
        the order they were recorded, each at the time it was (every reading folds first).
        Column by column: most of the counting is done by C loops (Counter, zip), and the
        journals build only the entries they keep."""
        pending, self._pending = self._pending, []
        if pending:
            self._fold_requests(pending)
        backends, self._pending_backends = self._pending_backends, []
        by_name: dict[str, list[tuple[str, float, bool, bool]]] = {}
        for run in backends:
            by_name.setdefault(run[0], []).append(run)
        for name, runs in by_name.items():
            counters = self._backend(name)
            counters.queries += len(runs)
            counters.errors += sum(1 for run in runs if run[2])
            counters.sql_errors += sum(1 for run in runs if run[3])
            counters.latency.observe_many(run[1] for run in runs)

    def _fold_requests(self, pending: list[tuple[Any, ...]]) -> None:
        (
            ats,
            endpoints,
            client_ips,
            lines,
            statuses,
            sent,
            starteds,
            durations,
            errors,
            sql_errors,
            statements,
            kinds,
            sqls,
        ) = zip(*pending)
        self._requests.update(zip(endpoints, statuses))
        for endpoint in set(endpoints):
            histogram = self._latency.get(endpoint)
            if histogram is None:
                histogram = self._latency[endpoint] = LatencyHistogram()
            if endpoints.count(endpoint) == len(endpoints):
                histogram.observe_many(durations)
            else:
                histogram.observe_many(d for e, d in zip(endpoints, durations) if e == endpoint)
        self._sql_errors += sum(1 for flagged in sql_errors if flagged)
        failed = [status for status in statuses if status >= 400]
        if failed:
            self._gateway_errors.update(failed)
        seen = self._statements
        for counts in statements:
            if counts:
                for kind, count in counts.items():
                    seen[kind] += count
        seen.update(chain.from_iterable(k for k in kinds if k))
        # A request's text, shared by its log and error entries (made once when read).
        texts: dict[int, str | _Later] = {}

        def text(i: int) -> str | _Later:
            made = texts.get(i)
            if made is None:
                made = texts[i] = _journal_text(lines[i])
            return made

        db = [i for i, endpoint in enumerate(endpoints) if endpoint in DB_ENDPOINTS]
        if db:
            self._total_requests += len(db)
            self._count_times([ats[i] for i in db])
            # (only the entries the journal keeps are made: it holds the newest ``size``)
            for i in db[-self._log.size :]:
                self._log.add(
                    (
                        sent[i],
                        client_ips[i],
                        text(i),
                        int(starteds[i]),
                        statuses[i],
                        _micros(durations[i]),
                        starteds[i],
                    )
                )
        wrong = [i for i, error in enumerate(errors) if error is not None]
        for i in wrong[-self._errors.size :]:
            sql = sqls[i]
            shown = None if sql is None else _journal_text(sql)
            started = starteds[i]
            self._errors.add(
                (
                    client_ips[i],
                    excerpt(errors[i]),
                    text(i),
                    int(started),
                    shown,
                    started,
                )
            )

    def _count_times(self, ats: list[float]) -> None:
        """The throughput ring and the rates, for DBSlayer requests that ended at ``ats`` (in
        order): one addition per run of requests in the same second and ring bucket."""
        ring, rates = self._ring, self._rates
        start, width = ring.start, ring.width
        run = 0
        second = bucket = -1
        last = 0.0
        floor = math.floor
        for at in ats:
            this_second = floor(at)
            elapsed = at - start
            this_bucket = floor(elapsed / width) if elapsed > 0 else 0
            if this_second != second or this_bucket != bucket:
                if run:
                    ring.hit_at(last, run)
                    rates.add_at(second, run)
                run, second, bucket = 0, this_second, this_bucket
            run += 1
            last = at
        if run:
            ring.hit_at(last, run)
            rates.add_at(second, run)

    def record_event(self, family: str, outcome: str) -> None:
        """Count one event: ("auth", "success"|"failure"), ("cache", "hit"|"miss"|"bypass"),
        ("redis", "errors")."""
        counts = self._events.setdefault(family, {})
        counts[outcome] = counts.get(outcome, 0) + 1

    def db_totals(self) -> tuple[int, int]:
        """``(DBSlayer requests, those answered with a status of 500 or more)`` so far: the
        error-rate watch samples them (a few additions, not per-request work)."""
        self._fold()
        total = errors = 0
        for (endpoint, status), count in self._requests.items():
            if endpoint in DB_ENDPOINTS:
                total += count
                if status >= 500:
                    errors += count
        return total, errors

    def record_state_change(self, name: str, state: str, previous: str | None = None) -> None:
        """Backend ``name`` changed from ``previous`` to ``state`` (counted; the live state
        comes from ``backend_info``). The first verdict on a backend (from ``"unknown"``, the
        state before its first check) is no change: a backend that never changed shows 0,
        whatever the number of workers that each checked it once."""
        counters = self._backend(name)
        if previous != "unknown":
            counters.state_changes += 1

    def _backend(self, name: str) -> BackendCounters:
        counters = self._backends.get(name)
        if counters is None:
            counters = self._backends[name] = BackendCounters()
        return counters

    # ------------------------------------------------------------------ reading

    def figures(self) -> Figures:
        """All figures at this instant (the source of both ``/stats`` and ``/metrics``)."""
        self._fold()
        reported = self.backend_info() if self.backend_info is not None else {}
        live = {name: dict(info) for name, info in reported.items()}
        backends = {name: BackendCounters() for name in live if name not in self._backends}
        backends.update(self._backends)
        hits, slices = self._ring.snapshot()
        return Figures(
            now=self._clock.seconds(),
            start=self._start,
            hits=hits,
            slices=slices,
            total_requests=self._total_requests,
            qps={label: round(self._rates.rate(s), 3) for label, s in QPS_WINDOWS.items()},
            requests=dict(sorted(self._requests.items())),
            latency=dict(sorted(self._latency.items())),
            sql_errors=self._sql_errors,
            gateway_errors=dict(sorted(self._gateway_errors.items())),
            statements=dict(self._statements),
            backends=dict(sorted(backends.items())),
            backend_live=live,
            in_flight=int(self.in_flight()) if self.in_flight is not None else 0,
            webhooks=(
                {url: dict(info) for url, info in self.webhook_info().items()}
                if self.webhook_info is not None
                else {}
            ),
            events={family: dict(counts) for family, counts in self._events.items()},
        )

    def snapshot(self, figures: Figures | None = None) -> dict[str, Any]:
        """The ``/stats`` JSON: the reference keys first, then the extension keys."""
        f = figures if figures is not None else self.figures()
        by_status: Counter[int] = Counter()
        for (_, status), count in f.requests.items():
            by_status[status] += count
        return {
            "current_time": int(f.now),
            "hits": f.hits,
            "slices": f.slices,
            "start_time": int(f.start),
            "total_requests": f.total_requests,
            "uptime_seconds": max(0, int(f.now - f.start)),
            **({"instance": self.instance()} if self.instance is not None else {}),
            "qps": f.qps,
            "latency_ms": {endpoint: h.summary_ms() for endpoint, h in f.latency.items()},
            "requests_by_status": {str(s): n for s, n in sorted(by_status.items())},
            "sql_errors": f.sql_errors,
            "gateway_errors": {str(s): n for s, n in f.gateway_errors.items()},
            "statements": f.statements,
            "backends": {
                name: {
                    "queries": c.queries,
                    "errors": c.errors,
                    "sql_errors": c.sql_errors,
                    "latency_ms": c.latency.summary_ms(),
                    "state_changes": c.state_changes,
                    **f.backend_live.get(name, {}),
                }
                for name, c in f.backends.items()
            },
            "in_flight": f.in_flight,
            **_galera_writer(f.backend_live),
            **f.events,
            **({"webhooks": _shown_webhooks(f.webhooks)} if f.webhooks else {}),
        }

    def log_entries(self) -> list[dict[str, Any]]:
        """The request journal (db/dbform only), oldest first."""
        return _untimed(self._timed_log())

    def error_entries(self) -> list[dict[str, Any]]:
        """The error journal, oldest first (``sql`` only in the entries that have one)."""
        return _untimed(self._timed_errors())

    def _timed_log(self) -> list[dict[str, Any]]:
        self._fold()
        return _resolved(self._log.entries())

    def _timed_errors(self) -> list[dict[str, Any]]:
        self._fold()
        entries = self._errors.entries()
        for entry in entries:
            sql = entry.pop(ERROR_SQL)
            if isinstance(sql, _Later):
                entry[ERROR_SQL] = sql.text()
            elif sql is not None:
                entry[ERROR_SQL] = sql
        return _resolved(entries)

    # ------------------------------------------------------------------ several workers

    def export(self) -> dict[str, Any]:
        """This process's figures and journals as JSON-able data, for another worker to merge."""
        return export_figures(self.figures(), self._timed_log(), self._timed_errors())

    def merged(
        self, peers: list[dict[str, Any]]
    ) -> tuple[Figures, list[dict[str, Any]], list[dict[str, Any]]]:
        """Figures and journals of the whole server: this process plus ``peers`` (exports of
        the other workers)."""
        return merge_figures(
            self.figures(), self._timed_log(), self._timed_errors(), peers, self._log.size
        )


def _micros(duration: float) -> int:
    """A duration as whole microseconds; 0 for a negative or NaN one (as the histograms
    count them): one bad clock reading must not stop a fold."""
    return round(duration * 1_000_000) if duration > 0 else 0


def _journal_text(line: str | Callable[[], str]) -> str | _Later:
    """A journal's request text: made (and redacted) when first read if ``line`` makes it."""
    return _Later(line) if callable(line) else excerpt(line)


class _Later:
    """A journal text made and redacted when first read."""

    __slots__ = ("_make", "_text")

    def __init__(self, make: Callable[[], str]) -> None:
        self._make: Callable[[], str] | None = make
        self._text: str | None = None

    def text(self) -> str:
        if self._text is None:
            assert self._make is not None
            self._text, self._make = excerpt(self._make()), None
        return self._text


def _resolved(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entry in entries:
        request = entry.get("request")
        if isinstance(request, _Later):
            entry["request"] = request.text()
    return entries


def export_figures(
    f: Figures, log: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "now": f.now,
        "start": f.start,
        "hits": f.hits,
        "slices": f.slices,
        "total_requests": f.total_requests,
        "qps": f.qps,
        "requests": [[endpoint, status, n] for (endpoint, status), n in f.requests.items()],
        "latency": {endpoint: h.state() for endpoint, h in f.latency.items()},
        "sql_errors": f.sql_errors,
        "gateway_errors": {str(status): n for status, n in f.gateway_errors.items()},
        "statements": f.statements,
        "backends": {
            name: {
                "queries": c.queries,
                "errors": c.errors,
                "sql_errors": c.sql_errors,
                "state_changes": c.state_changes,
                "latency": c.latency.state(),
            }
            for name, c in f.backends.items()
        },
        "backend_live": f.backend_live,
        "in_flight": f.in_flight,
        "events": f.events,
        "webhooks": f.webhooks,
        "log": log,
        "errors": errors,
    }


def merge_figures(
    own: Figures,
    log: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    peers: list[dict[str, Any]],
    journal_size: int,
) -> tuple[Figures, list[dict[str, Any]], list[dict[str, Any]]]:
    """Add the peers' exported figures to ``own``: counters and histograms summed, rates
    summed, throughput buckets summed by slice, live backend facts combined, journals merged in
    time order (the newest ``journal_size`` kept)."""
    buckets: Counter[int] = Counter(dict(zip(own.slices, own.hits)))
    longest = len(own.slices)
    qps = Counter(own.qps)
    requests: Counter[tuple[str, int]] = Counter(own.requests)
    latency = {endpoint: h.copy() for endpoint, h in own.latency.items()}
    gateway_errors: Counter[int] = Counter(own.gateway_errors)
    statements: Counter[str] = Counter(own.statements)
    backends = {name: _copy_counters(c) for name, c in own.backends.items()}
    live = {name: dict(info) for name, info in own.backend_live.items()}
    events = {family: Counter(counts) for family, counts in own.events.items()}
    webhooks = {url: dict(info) for url, info in own.webhooks.items()}
    totals = {
        "total_requests": own.total_requests,
        "sql_errors": own.sql_errors,
        "in_flight": own.in_flight,
    }
    start = own.start
    logs, error_logs = list(log), list(errors)
    for peer in peers:
        start = min(start, peer["start"])
        for slice_start, hits in zip(peer["slices"], peer["hits"]):
            buckets[int(slice_start)] += int(hits)
        longest = max(longest, len(peer["slices"]))
        qps.update(peer["qps"])
        for endpoint, status, n in peer["requests"]:
            requests[(endpoint, int(status))] += int(n)
        for endpoint, state in peer["latency"].items():
            latency.setdefault(endpoint, LatencyHistogram()).merge(state)
        gateway_errors.update({int(s): int(n) for s, n in peer["gateway_errors"].items()})
        statements.update(peer["statements"])
        for name, c in peer["backends"].items():
            mine = backends.setdefault(name, BackendCounters())
            mine.queries += c["queries"]
            mine.errors += c["errors"]
            mine.sql_errors += c["sql_errors"]
            mine.state_changes += c["state_changes"]
            mine.latency.merge(c["latency"])
        for name, info in peer["backend_live"].items():
            live[name] = _combine_live(live.get(name), info)
        for url, info in peer.get("webhooks", {}).items():
            webhooks[url] = _merge_webhook(webhooks.get(url), info)
        for family, counts in peer["events"].items():
            events.setdefault(family, Counter()).update(counts)
        for key in totals:
            totals[key] += int(peer[key])
        logs.extend(peer["log"])
        error_logs.extend(peer["errors"])
    slices = sorted(buckets)[-longest:] if longest else []
    merged = Figures(
        now=own.now,
        start=start,
        hits=[buckets[s] for s in slices],
        slices=slices,
        total_requests=totals["total_requests"],
        qps={label: round(rate, 3) for label, rate in qps.items()},
        requests=dict(sorted(requests.items())),
        latency=dict(sorted(latency.items())),
        sql_errors=totals["sql_errors"],
        gateway_errors=dict(sorted(gateway_errors.items())),
        statements=dict(statements),
        backends=dict(sorted(backends.items())),
        backend_live=live,
        in_flight=totals["in_flight"],
        events={family: dict(counts) for family, counts in events.items()},
        webhooks=webhooks,
    )
    logs.sort(key=_start)
    error_logs.sort(key=_start)
    return merged, _untimed(logs[-journal_size:]), _untimed(error_logs[-journal_size:])


def _start(entry: dict[str, Any]) -> float:
    return float(entry.get(AT, entry.get("request_time", 0)))


def _untimed(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entry in entries:
        entry.pop(AT, None)
    return entries


def _copy_counters(c: BackendCounters) -> BackendCounters:
    return BackendCounters(
        queries=c.queries,
        errors=c.errors,
        sql_errors=c.sql_errors,
        state_changes=c.state_changes,
        latency=c.latency.copy(),
    )


def _combine_live(mine: dict[str, Any] | None, theirs: dict[str, Any]) -> dict[str, Any]:
    """One backend seen by two workers: in-flight, pool use and answer counts add up; the state
    is "up" when any worker reaches it."""
    if mine is None:
        return dict(theirs)
    combined = dict(mine)
    combined["in_flight"] = mine.get("in_flight", 0) + theirs.get("in_flight", 0)
    pool, other = mine.get("pool") or {}, theirs.get("pool") or {}
    combined["pool"] = {k: pool.get(k, 0) + other.get(k, 0) for k in set(pool) | set(other)}
    mine_answers, their_answers = mine.get("answers") or {}, theirs.get("answers") or {}
    combined["answers"] = {
        k: mine_answers.get(k, 0) + their_answers.get(k, 0)
        for k in set(mine_answers) | set(their_answers)
    }
    states = {mine.get("state"), theirs.get("state")}
    combined["state"] = "up" if "up" in states else "down" if "down" in states else "unknown"
    combined["last_error"] = mine.get("last_error") or theirs.get("last_error")
    if "writer" in mine or "writer" in theirs:  # (galera mode: each worker chooses its own)
        combined["writer"] = bool(mine.get("writer")) or bool(theirs.get("writer"))
        combined["wsrep"] = mine.get("wsrep") or theirs.get("wsrep")
    return combined


def _galera_writer(live: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Galera mode (backends carry a ``writer`` flag): the top-level ``writer`` of /stats,
    the name of the node taking the writes (None: none may now). Workers choose the writer
    each from their own checks: while they disagree (for a check interval after a change),
    it lists every writer they chose."""
    if not any("writer" in info for info in live.values()):
        return {}
    writers = sorted(name for name, info in live.items() if info.get("writer"))
    return {"writer": writers[0] if len(writers) == 1 else writers or None}


def _shown_webhooks(webhooks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``webhooks`` section of /stats (the time of the last error is only for merging)."""
    return {
        url: {key: value for key, value in info.items() if key != "last_error_at"}
        for url, info in webhooks.items()
    }


def _merge_webhook(mine: dict[str, Any] | None, theirs: dict[str, Any]) -> dict[str, Any]:
    """One webhook URL as two workers saw it: counts (and counts by reason) add up; the last
    error (and status) is the later one's."""
    if mine is None:
        return dict(theirs)
    merged = dict(mine)
    for key, value in theirs.items():
        if isinstance(value, bool) or key.startswith("last_"):
            continue
        if isinstance(value, int):
            merged[key] = int(mine.get(key) or 0) + value
        elif isinstance(value, dict):
            ours = mine.get(key) or {}
            merged[key] = {k: ours.get(k, 0) + value.get(k, 0) for k in set(ours) | set(value)}
    if (theirs.get("last_error_at") or 0) > (mine.get("last_error_at") or 0):
        for key in ("last_error", "last_error_at", "last_status"):
            merged[key] = theirs.get(key)
    return merged
