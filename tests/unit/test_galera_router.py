"""Unit tests for galera mode: the wsrep facts and rules (gateway.galera), the health tracker's
out-at-once rule, the router's one writer (choice, stickiness, failover order), the executor's
handling of error 1047, and how /stats and /metrics show the nodes. Fakes and a Clock only."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from conf.load import load_settings
from conf.settings import BackendSpec, SettingError
from gateway.backends import BackendUnavailable, ConnectionLost, Run
from gateway.executor import Executor
from gateway.galera import (
    PROBE_SQL,
    Wsrep,
    choose_writer,
    galera_report,
    not_executed,
    parse_wsrep,
    read_only_of,
    wsrep_problem,
)
from gateway.health import CheckResult, HealthChecks, HealthPolicy, HealthTracker
from gateway.request import Request
from gateway.results import Answer, ResultSet, SQLError, Update
from gateway.router import BackendStatus, NoBackend, Router
from stats.core import GatewayStats, merge_figures
from stats.prometheus import render_metrics

SYNCED = Wsrep(
    on=True,
    ready=True,
    cluster_status="Primary",
    local_state=4,
    local_state_comment="Synced",
    cluster_size=3,
    local_index=0,
    cluster_state_uuid="u",
)
DONOR = attrs.evolve(SYNCED, local_state=2, local_state_comment="Donor/Desynced")
JOINER = attrs.evolve(SYNCED, local_state=1, local_state_comment="Joining")
NON_PRIMARY = attrs.evolve(
    SYNCED,
    ready=False,
    cluster_status="non-Primary",
    cluster_size=1,
    local_state_comment="Initialized",
)
NOT_GALERA = Wsrep(on=False, cluster_status="Disconnected")
GALERA = HealthPolicy(jitter=0.0, galera=True)
REFUSED = CheckResult(ok=False, errno=2002, error="Can't connect")


def node(name: str, index: int | None, state: str = "up", **kw: Any) -> BackendStatus:
    """A checked node with the given wsrep_local_index (synced unless ``wsrep`` says)."""
    wsrep = kw.pop("wsrep", SYNCED)
    if wsrep is not None:
        wsrep = attrs.evolve(wsrep, local_index=index)
    return BackendStatus(name, state=state, wsrep=wsrep, **kw)


def ok(wsrep: Wsrep | None, index: int = 0, read_only: bool = False) -> CheckResult:
    if wsrep is not None and wsrep.on:
        wsrep = attrs.evolve(wsrep, local_index=index)
    return CheckResult(ok=True, wsrep=wsrep, read_only=read_only)


def names(statuses: list[BackendStatus]) -> list[str]:
    return [s.name for s in statuses]


# ------------------------------------------------------------------ facts and rules


def test_parse_reads_both_result_sets_of_the_probe() -> None:
    """The check's two result sets (SHOW VARIABLES, SHOW STATUS) become one Wsrep; values may
    come as bytes; a node outside any view reports 2**64-1, which is no index."""
    assert PROBE_SQL.startswith("SHOW GLOBAL VARIABLES") and "SELECT" not in PROBE_SQL
    variables = [("read_only", "OFF"), ("wsrep_on", b"ON"), ("wsrep_reject_queries", "NONE")]
    status = [
        ("wsrep_ready", "ON"),
        ("wsrep_cluster_status", "Primary"),
        ("wsrep_local_state", "4"),
        ("wsrep_local_state_comment", "Synced"),
        ("wsrep_cluster_size", "3"),
        ("wsrep_local_index", "2"),
        ("wsrep_cluster_state_uuid", "abc"),
    ]
    got = parse_wsrep(variables, status)
    assert got == Wsrep(True, True, "Primary", 4, "Synced", 3, 2, "abc")
    assert got.primary and got.synced and not read_only_of(variables)
    assert read_only_of([("read_only", "ON")])
    rejecting = parse_wsrep([("wsrep_on", "ON"), ("wsrep_reject_queries", "ALL")], status)
    assert rejecting.reject_queries == "ALL" and rejecting.primary and not rejecting.synced
    plain = parse_wsrep(
        [("read_only", "OFF"), ("wsrep_on", "OFF")],
        [("wsrep_ready", "OFF"), ("wsrep_local_index", "18446744073709551615")],
    )
    assert not plain.on and plain.local_index is None and not plain.primary
    assert not parse_wsrep([("read_only", "OFF")], []).on  # MySQL: no wsrep_on at all


@pytest.mark.parametrize(
    "wsrep, donor_reads, problem",
    [
        (SYNCED, False, None),
        (DONOR, True, None),
        (DONOR, False, "Donor/Desynced (wsrep_local_state 2)"),
        (JOINER, True, "Joining (wsrep_local_state 1), not synced"),
        (NON_PRIMARY, True, "wsrep_ready is OFF"),
        (attrs.evolve(SYNCED, cluster_status="non-Primary"), True, "not in the primary component"),
        (NOT_GALERA, True, "not a Galera node"),
        (attrs.evolve(SYNCED, reject_queries="ALL_KILL"), True, "wsrep_reject_queries is ALL_KILL"),
        (None, True, "wsrep state unknown"),
    ],
)
def test_wsrep_rules(wsrep: Wsrep | None, donor_reads: bool, problem: str | None) -> None:
    """Synced nodes pass; a donor only with galera_donor_reads; everything else is out."""
    got = wsrep_problem(wsrep, donor_reads)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


def test_donor_never_takes_writes_even_with_donor_reads() -> None:
    assert not DONOR.synced and DONOR.primary
    assert choose_writer([node("a", 0, wsrep=DONOR)], None) is None


def test_1047_not_executed_only_on_the_first_statement() -> None:
    assert not_executed(1047, 0)
    assert not not_executed(1047, 1)  # earlier statements ran
    assert not not_executed(1213, 0)  # a certification failure ran (and was rolled back)
    assert not not_executed(None, 0)


# ------------------------------------------------------------------ writer choice


def test_writer_is_the_synced_node_with_the_lowest_index() -> None:
    statuses = [node("a", 2), node("b", 0), node("c", 1)]
    assert choose_writer(statuses, None) == "b"


def test_writer_ties_by_name_and_unknown_index_last() -> None:
    assert choose_writer([node("z", 0), node("m", 0), node("a", None)], None) == "m"


def test_writer_is_sticky_while_it_may_write() -> None:
    """A rejoining node with a lower index does not take the writes over."""
    statuses = [node("a", 0), node("b", 1)]
    assert choose_writer(statuses, "b") == "b"


@pytest.mark.parametrize(
    "change",
    [
        {"state": "down"},
        {"state": "unknown"},
        {"read_only": True},
        {"wsrep": DONOR},
        {"wsrep": NON_PRIMARY},
        {"wsrep": None},
    ],
)
def test_writer_lost_next_by_index(change: dict[str, Any]) -> None:
    """A writer that may no longer write hands over to the synced node with the lowest index."""
    statuses = [node("c", 2), node("b", 1), node("a", 0)]
    statuses[2] = attrs.evolve(statuses[2], **change)
    assert choose_writer(statuses, "a") == "b"


def test_no_writer_when_none_may_write() -> None:
    statuses = [node("a", 0, state="down"), node("b", 1, wsrep=NON_PRIMARY)]
    assert choose_writer(statuses, "a") is None


# ------------------------------------------------------------------ router


def cluster(*statuses: BackendStatus) -> tuple[Router, list[tuple[str | None, str | None]]]:
    router = Router(list(statuses), "galera")
    changes: list[tuple[str | None, str | None]] = []
    router.on_writer_change = lambda old, new: changes.append((old, new))
    return router, changes


def test_write_candidates_writer_first_then_by_index() -> None:
    """Writes: the writer, then the other synced nodes by index (the next writer first); never
    a node not checked yet, down, donor or outside the primary component."""
    router, _ = cluster(
        node("d", None, state="unknown", wsrep=None),
        node("c", 3),
        node("b", 1),
        node("a", 2, state="down"),
        node("e", 0, wsrep=DONOR),
        node("f", 4, wsrep=NON_PRIMARY),
    )
    assert names(router.candidates(write=True)) == ["b", "c"]
    assert router.writer == "b"


def test_write_candidates_follow_the_sticky_writer() -> None:
    router, changes = cluster(node("a", 1), node("b", 2))
    assert router.refresh() == "a"
    router.status("a").state = "down"
    assert names(router.candidates(write=True)) == ["b"]
    router.status("a").state = "up"
    router.status("a").wsrep = attrs.evolve(SYNCED, local_index=0)  # (rejoined, lower index)
    assert names(router.candidates(write=True)) == ["b", "a"]
    assert changes == [(None, "a"), ("a", "b")]


def test_on_writer_change_fires_once_per_change() -> None:
    router, changes = cluster(node("a", 0), node("b", 1))
    for _ in range(5):
        router.refresh()
        router.candidates(write=True)
        router.candidates(write=False)
    assert changes == [(None, "a")]
    router.status("a").wsrep = NON_PRIMARY
    router.status("b").wsrep = NON_PRIMARY
    for _ in range(3):
        router.refresh()
    assert changes == [(None, "a"), ("a", None)]


def test_before_any_check_nothing_is_sent() -> None:
    """A node not checked yet may be outside the primary component, or no Galera node at all:
    until its first check answers, requests are refused (503), reads and writes alike."""
    router, changes = cluster(*(BackendStatus(n) for n in ("c", "a", "b")))
    for write in (True, False):
        with pytest.raises(NoBackend) as info:
            router.candidates(write=write)
        assert "a (not checked yet)" in info.value.message
    assert router.writer is None and changes == []


def test_unchecked_nodes_take_nothing() -> None:
    router, _ = cluster(BackendStatus("a"), node("b", 1), node("c", 0))
    assert sorted(names(router.candidates(write=False))) == ["b", "c"]
    assert names(router.candidates(write=True)) == ["c", "b"]


def test_reads_spread_over_up_nodes_by_score() -> None:
    router, _ = cluster(node("a", 0), node("b", 1), node("c", 2, state="down"))
    router.status("a").in_flight = 3
    assert names(router.candidates(write=False)) == ["b", "a"]
    router.status("a").in_flight = 0
    firsts = {names(router.candidates(write=False))[0] for _ in range(4)}
    assert firsts == {"a", "b"}  # idle equal nodes take turns


def test_donor_up_for_reads_takes_reads_not_writes() -> None:
    router, _ = cluster(node("a", 0, wsrep=DONOR), node("b", 1))
    assert sorted(names(router.candidates(write=False))) == ["a", "b"]
    assert names(router.candidates(write=True)) == ["b"]


def test_no_node_may_write_is_no_backend_naming_why() -> None:
    router, _ = cluster(
        node("a", 0, wsrep=DONOR),
        node("b", 1, read_only=True),
        node("c", 2, state="down", wsrep=None),
    )
    router.status("c").record_error(2002, "refused")
    with pytest.raises(NoBackend) as info:
        router.candidates(write=True)
    message = info.value.message
    assert "no Galera node can take writes" in message and "nothing was sent" in message
    assert "a (Donor/Desynced, not synced)" in message and "b (read-only" in message
    assert "c (refused)" in message and info.value.errno == 2002
    assert names(router.candidates(write=False)) in (["a", "b"], ["b", "a"])


def test_all_down_refuses_reads() -> None:
    router, _ = cluster(node("a", 0, state="down"))
    with pytest.raises(NoBackend):
        router.candidates(write=False)


def test_refresh_is_inert_outside_galera_mode() -> None:
    router = Router([BackendStatus("a")], "pool")
    assert router.refresh() is None and router.writer is None


# ------------------------------------------------------------------ health tracker


def galera_tracker(state: str = "unknown", policy: HealthPolicy = GALERA) -> HealthTracker:
    return HealthTracker(BackendStatus("n", state=state), policy)


def test_non_primary_is_out_at_once_not_after_fall() -> None:
    """fall = 3, but a node that left the primary component is down on the first check."""
    t = galera_tracker("up")
    assert t.apply(ok(NON_PRIMARY)) == "down"
    assert t.status.state == "down" and "wsrep_ready is OFF" in (t.status.last_error or "")
    assert t.status.wsrep == NON_PRIMARY  # (shown in /stats as it is)


def test_out_node_comes_back_by_rise() -> None:
    t = galera_tracker("up")
    t.apply(ok(DONOR))
    assert [t.apply(ok(SYNCED)) for _ in range(2)] == [None, "up"]  # rise = 2


def test_unknown_node_failing_wsrep_is_out_at_once() -> None:
    """A plain server is never counted usable: down on its first check."""
    t = galera_tracker("unknown")
    assert t.apply(ok(NOT_GALERA)) == "down"
    assert "not a Galera node" in (t.status.last_error or "")


def test_unreadable_wsrep_state_is_out_at_once() -> None:
    t = galera_tracker("up")
    result = CheckResult(ok=True, errno=1227, error="wsrep state unreadable (denied)")
    assert t.apply(result) == "down"
    assert t.status.last_error == "wsrep state unreadable (denied)"
    assert t.status.last_errno == 1227


def test_donor_stays_up_with_donor_reads() -> None:
    t = galera_tracker("up", attrs.evolve(GALERA, galera_donor_reads=True))
    assert t.apply(ok(DONOR)) is None and t.status.state == "up"
    assert t.status.wsrep == DONOR


def test_unreachable_node_keeps_fall_and_forgets_its_wsrep_once_down() -> None:
    t = galera_tracker("up")
    t.apply(ok(SYNCED))
    assert [t.apply(REFUSED) for _ in range(2)] == [None, None]
    assert t.status.wsrep == SYNCED  # (still up: the last facts stand)
    assert t.apply(REFUSED) == "down"
    assert t.status.wsrep is None


def test_mark_down_forgets_wsrep() -> None:
    t = galera_tracker("up")
    t.apply(ok(SYNCED))
    assert t.mark_down(1047, "outside the primary component") == "down"
    assert t.status.wsrep is None


def test_without_galera_the_wsrep_facts_are_ignored() -> None:
    t = HealthTracker(BackendStatus("n"), HealthPolicy(jitter=0.0))
    assert t.apply(ok(NON_PRIMARY)) == "up" and t.status.wsrep is None


# ------------------------------------------------------------------ health checks (Clock)


def test_on_wsrep_change_fires_on_status_or_state_change_only() -> None:
    clock = Clock()
    results = [ok(SYNCED), ok(SYNCED, index=1), ok(DONOR), ok(DONOR), REFUSED, REFUSED, REFUSED]
    status = BackendStatus("n")
    checks = HealthChecks(
        clock,
        {"n": HealthTracker(status, GALERA)},
        {"n": lambda: defer.succeed(results.pop(0))},
        GALERA,
    )
    seen: list[tuple[str, Any, Any]] = []
    checked: list[str] = []
    checks.on_wsrep_change = lambda name, old, new: seen.append((name, old, new))
    checks.on_checked = checked.append
    checks.startService()
    while results:
        clock.advance(10)
    checks.stopService()
    # (the index change is no event; donor comes once; the down node's facts become unknown)
    assert [(n, old and old.local_state, new and new.local_state) for n, old, new in seen] == [
        ("n", None, 4),
        ("n", 4, 2),
        ("n", 2, None),
    ]
    assert len(checked) == 7


def test_passive_mark_down_tells_the_listeners() -> None:
    clock = Clock()
    status = BackendStatus("n")
    checks = HealthChecks(
        clock,
        {"n": HealthTracker(status, GALERA)},
        {"n": lambda: defer.succeed(ok(SYNCED))},
        GALERA,
    )
    seen: list[Any] = []
    checks.on_wsrep_change = lambda name, old, new: seen.append((old, new))
    checks.on_checked = lambda name: seen.append(name)
    checks.startService()
    seen.clear()
    checks.report_failure("n", 1047, "outside the primary component")
    assert seen == [(attrs.evolve(SYNCED, local_index=0), None), "n"]
    assert status.state == "down"
    checks.stopService()


# ------------------------------------------------------------------ executor: 1047


class Node:
    """A scripted backend: answers each request with the next outcome, records what it got."""

    def __init__(self, name: str, *outcomes: Answer | Exception) -> None:
        self.name = name
        self.spec = BackendSpec(name=name, driver="mysql")
        self.outcomes = list(outcomes)
        self.sent: list[str | None] = []
        self.thread_runs = 0

    @property
    def pool(self) -> Any:
        return self

    def info(self) -> dict[str, int]:
        return {"in_use": 0, "idle": 0, "max": 1}

    def execute(self, request: Request, run: Run | None = None) -> Deferred[Answer]:
        self.sent.append(request.sql)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(outcome)

    def kill(self, run: Run) -> Deferred[None]:
        return defer.succeed(None)

    def abort(self, run: Run) -> bool:
        return False

    def close(self) -> None:
        pass


class Health:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.down: list[tuple[str, int | None]] = []

    def report_failure(self, name: str, errno: int | None, error: str) -> None:
        self.down.append((name, errno))
        self.router.status(name).state = "down"


NOT_PREPARED = SQLError(1047, "WSREP has not yet prepared node for application use")


def run_on(*nodes: Node, sql: str = "INSERT INTO t VALUES (1)") -> tuple[Any, Health, Router]:
    router = Router([node(n.name, i) for i, n in enumerate(nodes)], "galera")
    health = Health(router)
    executor = Executor(list(nodes), router, Clock(), health=health)  # type: ignore[arg-type]
    outcome: list[Any] = []
    executor.execute(Request(sql=sql)).addBoth(outcome.append)
    assert len(outcome) == 1
    return outcome[0], health, router


@pytest.mark.parametrize("sql", ["INSERT INTO t VALUES (1)", "SELECT * FROM t"])
def test_1047_on_the_first_statement_fails_over_once(sql: str) -> None:
    """Nothing ran on the node outside the primary component: it is marked down and the
    request (write or read) runs on the next node, once."""
    a = Node("a", Answer(error=NOT_PREPARED, server="a"))
    b = Node("b", Answer(results=[Update(1, 0)], server="b"))
    answer, health, router = run_on(a, b, sql=sql)
    assert isinstance(answer, Answer) and answer.server == "b" and answer.error is None
    assert a.sent == [sql] and b.sent == [sql]
    assert health.down == [("a", 1047)]
    assert router.refresh() == "b"


def test_1047_everywhere_is_a_503_nothing_ran() -> None:
    a = Node("a", Answer(error=NOT_PREPARED))
    b = Node("b", Answer(error=NOT_PREPARED))
    failure, health, _ = run_on(a, b)
    error = failure.value
    assert isinstance(error, BackendUnavailable) and error.status == 503
    assert "nothing ran" in error.message and error.errno == 1047
    assert health.down == [("a", 1047), ("b", 1047)]


def test_1047_on_a_later_statement_is_that_statements_error_never_resent() -> None:
    """The statements before it ran: the answer is the SQL error, the node marked down, the
    request not sent anywhere else."""
    first = ResultSet(["a"], ["MYSQL_TYPE_LONG"], [[1]])
    a = Node("a", Answer(results=[first], error=NOT_PREPARED, server="a"))
    b = Node("b")
    answer, health, _ = run_on(a, b, sql="SELECT 1; INSERT INTO t VALUES (1)")
    assert isinstance(answer, Answer) and answer.error == NOT_PREPARED
    assert b.sent == [] and health.down == [("a", 1047)]


def test_certification_failure_is_answered_as_the_sql_error() -> None:
    """1213 from a certification conflict: the SQL error it is, never retried."""
    deadlock = SQLError(1213, "Deadlock found when trying to get lock; try restarting")
    a = Node("a", Answer(error=deadlock, server="a"))
    b = Node("b")
    answer, health, _ = run_on(a, b)
    assert isinstance(answer, Answer) and answer.error == deadlock
    assert b.sent == [] and health.down == []


def test_a_write_lost_on_the_writer_is_never_resent() -> None:
    """The retry rule is unchanged: a write whose connection broke may have run."""
    a = Node("a", ConnectionLost("lost", errno=2013, server="a"))
    b = Node("b")
    failure, _, _ = run_on(a, b)
    assert isinstance(failure.value, ConnectionLost) and b.sent == []


def test_a_write_never_sent_goes_to_the_next_writer() -> None:
    a = Node("a", BackendUnavailable("refused", errno=2002, server="a"))
    b = Node("b", Answer(results=[Update(1, 0)], server="b"))
    answer, health, router = run_on(a, b)
    assert isinstance(answer, Answer) and answer.server == "b"
    assert health.down == [("a", 2002)] and router.refresh() == "b"


def test_outside_galera_mode_1047_is_an_ordinary_error() -> None:
    a = Node("a", Answer(error=NOT_PREPARED, server="a"))
    b = Node("b")
    router = Router([BackendStatus("a", state="up"), BackendStatus("b", state="up")], "pool")
    executor = Executor([a, b], router, Clock())  # type: ignore[list-item]
    outcome: list[Any] = []
    executor.execute(Request(sql="SELECT 1")).addBoth(outcome.append)
    assert isinstance(outcome[0], Answer) and outcome[0].error == NOT_PREPARED
    assert b.sent == []


def test_backend_info_shows_wsrep_and_the_writer() -> None:
    a, b = Node("a"), Node("b")
    router = Router([node("a", 1), node("b", 0, state="down", wsrep=None)], "galera")
    executor = Executor([a, b], router, Clock())  # type: ignore[list-item]
    router.refresh()
    info = executor.backend_info()
    assert info["a"]["writer"] is True and info["b"]["writer"] is False
    assert info["a"]["wsrep"]["local_state_comment"] == "Synced"
    assert info["a"]["wsrep"]["local_index"] == 1 and info["b"]["wsrep"] is None
    report = galera_report(router.statuses.values(), router.writer)
    assert report["writer"] == "a" and report["nodes"]["b"] is None


# ------------------------------------------------------------------ /stats and /metrics


def galera_stats(live: dict[str, dict[str, Any]]) -> GatewayStats:
    stats = GatewayStats(Clock())
    stats.backend_info = lambda: live
    return stats


def live(writer: bool, wsrep: Wsrep | None = SYNCED) -> dict[str, Any]:
    return {"state": "up", "writer": writer, "wsrep": wsrep.to_dict() if wsrep else None}


def test_stats_names_the_writer() -> None:
    stats = galera_stats({"a": live(True), "b": live(False, DONOR)})
    snapshot = stats.snapshot()
    assert snapshot["writer"] == "a"
    assert snapshot["backends"]["a"]["writer"] is True
    assert snapshot["backends"]["b"]["wsrep"]["local_state"] == 2
    assert "writer" not in GatewayStats(Clock()).snapshot()  # (not galera mode)
    assert galera_stats({"a": live(False)}).snapshot()["writer"] is None


def test_workers_that_disagree_on_the_writer_show_both() -> None:
    own = galera_stats({"a": live(True), "b": live(False)})
    peer = galera_stats({"a": live(False), "b": live(True)}).export()
    merged, _, _ = merge_figures(own.figures(), [], [], [peer], 100)
    assert own.snapshot(merged)["writer"] == ["a", "b"]
    agree = galera_stats({"a": live(True), "b": live(False)}).export()
    merged, _, _ = merge_figures(own.figures(), [], [], [agree], 100)
    assert own.snapshot(merged)["writer"] == "a"


def test_metrics_gauges_of_galera_mode() -> None:
    stats = galera_stats(
        {"a": live(True), "b": live(False, NON_PRIMARY), "c": {"state": "down", "writer": False}}
    )
    stats.record_backend("a", duration=0.01, failed=False, sql_error=False)
    body = render_metrics(stats)[0].decode()
    assert 'dbslayer_backend_writer{backend="a"} 1.0' in body
    assert 'dbslayer_backend_writer{backend="b"} 0.0' in body
    assert 'dbslayer_backend_wsrep_primary{backend="a"} 1.0' in body
    assert 'dbslayer_backend_wsrep_primary{backend="b"} 0.0' in body
    assert 'dbslayer_backend_wsrep_primary{backend="c"} 0.0' in body
    assert 'dbslayer_backend_wsrep_local_state{backend="a"} 4.0' in body
    assert 'dbslayer_backend_wsrep_cluster_size{backend="a"} 3.0' in body
    assert 'dbslayer_backend_wsrep_local_state{backend="c"}' not in body  # unknown: absent
    plain = render_metrics(galera_stats({"a": {"state": "up"}}))[0].decode()
    assert "wsrep" not in plain and "dbslayer_backend_writer" not in plain


# ------------------------------------------------------------------ settings


def test_galera_mode_from_the_command_line_and_the_environment() -> None:
    dsn = "mysql://app@127.0.0.1:3306/db?name=g1"
    settings = load_settings(["--mode", "galera", "--backend", dsn], {})
    assert settings.resolve_backends()[0] == "galera"
    env = load_settings(["--backend", dsn], {"DBSLAYER_MODE": "galera"})
    assert env.mode == "galera" and not env.galera_donor_reads
    assert load_settings(["--backend", dsn, "--galera-donor-reads", "true"], {}).galera_donor_reads


def test_auto_never_picks_galera() -> None:
    settings = load_settings(["--backend", "mysql://app@127.0.0.1:3306/db?name=g1"], {})
    assert settings.resolve_backends()[0] == "pool"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--backend", "mysql://a@h/db?name=g1&role=primary"], "role= is only meaningful"),
        ([], "'galera' needs the cluster's nodes"),
        (["--backend", "sqlite:///tmp/x.db"], "Galera nodes only"),
    ],
)
def test_galera_mode_refusals(argv: list[str], words: str) -> None:
    with pytest.raises(SettingError) as info:
        load_settings(["--mode", "galera", *argv], {})
    assert words in str(info.value)


class FirstChecks(Health):
    """Health checks still running their first check: ``check_now`` waits for it."""

    running = True

    def __init__(self, router: Router) -> None:
        super().__init__(router)
        self.pending: list[tuple[str, Deferred[str]]] = []

    def check_now(self, name: str) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.pending.append((name, d))
        return d

    def finish(self, name: str, state: str) -> None:
        for pending, d in list(self.pending):
            if pending == name:
                self.router.status(name).state = state
                self.router.refresh()
                d.callback(state)


@pytest.mark.parametrize("state, served", [("up", True), ("down", False)])
def test_a_request_before_the_first_checks_waits_for_them(state: str, served: bool) -> None:
    """Galera: an unchecked node takes nothing; a request that comes before the first check
    has ended waits for it (once) instead of getting a 503 at once, then runs or is refused
    by what the check found."""
    a = Node("a", Answer(results=[Update(1, 0)], server="a"))
    router = Router([node("a", 0, state="unknown")], "galera")
    health = FirstChecks(router)
    executor = Executor([a], router, Clock(), health=health)  # type: ignore[arg-type, list-item]
    outcome: list[Any] = []
    executor.execute(Request(sql="INSERT INTO t VALUES (1)")).addBoth(outcome.append)
    assert outcome == [] and [name for name, _ in health.pending] == ["a"]
    health.finish("a", state)
    assert len(outcome) == 1
    if served:
        assert isinstance(outcome[0], Answer) and a.sent == ["INSERT INTO t VALUES (1)"]
    else:
        assert isinstance(outcome[0].value, BackendUnavailable) and a.sent == []
        assert len(health.pending) == 1  # (waited once, not again)
