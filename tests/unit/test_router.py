"""Unit tests for gateway.router: backend choice per mode and the retry rule (pure)."""

from __future__ import annotations

from collections import Counter, deque

import pytest

from gateway.router import LOST, NOT_SENT, BackendStatus, NoBackend, Router, may_retry


def names(statuses: list[BackendStatus]) -> list[str]:
    """The names of a candidate list, in order."""
    return [s.name for s in statuses]


def pool(*statuses: BackendStatus) -> Router:
    """A pool-mode router over these statuses."""
    return Router(list(statuses), "pool")


def primary_replica(*states: str) -> tuple[Router, BackendStatus, BackendStatus, BackendStatus]:
    """A primary ``p`` and replicas ``r1``, ``r2`` in these states (default: all unknown)."""
    p, r1, r2 = (
        BackendStatus("p", role="primary"),
        BackendStatus("r1", role="replica"),
        BackendStatus("r2", role="replica"),
    )
    for status, state in zip((p, r1, r2), states):
        status.state = state
    return Router([p, r1, r2], "primary-replica"), p, r1, r2


# ------------------------------------------------------------------ construction


def test_unknown_mode_refused() -> None:
    """A mode the router does not know is refused at construction."""
    with pytest.raises(ValueError, match="unknown mode 'round-robin'"):
        Router([BackendStatus("a")], "round-robin")


def test_no_backends_refused() -> None:
    """A router needs at least one backend."""
    with pytest.raises(ValueError, match="at least one backend"):
        Router([], "pool")


def test_duplicate_names_refused() -> None:
    """Two backends of the same name are refused."""
    with pytest.raises(ValueError, match="'a' is used twice"):
        pool(BackendStatus("a"), BackendStatus("a"))


def test_zero_weight_refused() -> None:
    """A weight below 1 is refused (it would divide by zero in the score)."""
    with pytest.raises(ValueError, match="weight must be at least 1"):
        pool(BackendStatus("a", weight=0))


@pytest.mark.parametrize("roles", [("replica", "replica"), ("primary", "primary")])
def test_primary_replica_needs_one_primary(roles: tuple[str, str]) -> None:
    """Primary-replica mode needs exactly one primary."""
    statuses = [BackendStatus(f"b{i}", role=role) for i, role in enumerate(roles)]
    with pytest.raises(ValueError, match="exactly one backend with role primary"):
        Router(statuses, "primary-replica")


def test_statuses_by_name_in_configuration_order() -> None:
    """``statuses`` maps names to the very status objects, in configuration order."""
    b, a = BackendStatus("b"), BackendStatus("a")
    router = pool(b, a)
    assert list(router.statuses) == ["b", "a"]
    assert router.status("a") is a


def test_status_of_unknown_name() -> None:
    """``status`` of an unknown name raises KeyError naming it."""
    with pytest.raises(KeyError, match="no backend named 'x'"):
        pool(BackendStatus("a")).status("x")


def test_usable_means_not_down() -> None:
    """Unknown and up are usable; down is not."""
    assert BackendStatus("a", state="unknown").usable
    assert BackendStatus("a", state="up").usable
    assert not BackendStatus("a", state="down").usable


# ------------------------------------------------------------------ pool mode


def test_pool_orders_by_score() -> None:
    """Pool mode orders backends by (in_flight + 1) / weight, lowest first."""
    a = BackendStatus("a", in_flight=4)  # 5
    b = BackendStatus("b", in_flight=1)  # 2
    c = BackendStatus("c", weight=4, in_flight=3)  # 1
    assert names(pool(a, b, c).candidates(write=False)) == ["c", "b", "a"]


def test_pool_reads_and_writes_alike() -> None:
    """Pool mode gives writes the same candidates as reads."""
    router = pool(BackendStatus("a", in_flight=1), BackendStatus("b"))
    assert names(router.candidates(write=True)) == ["b", "a"]
    assert names(router.candidates(write=False)) == ["b", "a"]


def test_pool_round_robin_of_idle_ties() -> None:
    """Idle equal backends take turns: each is first equally often, each list is a rotation."""
    router = pool(BackendStatus("a"), BackendStatus("b"), BackendStatus("c"))
    firsts: Counter[str] = Counter()
    orders = set()
    for _ in range(300):
        order = names(router.candidates(write=False))
        firsts[order[0]] += 1
        orders.add(tuple(order))
    assert firsts == {"a": 100, "b": 100, "c": 100}
    assert orders == {("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")}


def test_pool_ties_rotate_only_among_equals() -> None:
    """The tie-break never lets a worse score ahead of a better one."""
    busy = BackendStatus("busy", in_flight=2)
    router = pool(busy, BackendStatus("a"), BackendStatus("b"))
    for _ in range(10):
        assert names(router.candidates(write=False))[-1] == "busy"


def test_pool_weights_respected_under_load() -> None:
    """With requests in flight as the executor counts them, weight 3 carries 3 times weight 1."""
    heavy, light = BackendStatus("heavy", weight=3), BackendStatus("light", weight=1)
    router = pool(heavy, light)
    running: deque[BackendStatus] = deque()
    picks: Counter[str] = Counter()
    for _ in range(4000):
        chosen = router.candidates(write=False)[0]
        chosen.in_flight += 1  # the executor starts the request
        running.append(chosen)
        picks[chosen.name] += 1
        if len(running) >= 8:
            running.popleft().in_flight -= 1  # the oldest request finishes
    assert 2.7 < picks["heavy"] / picks["light"] < 3.3


def test_pool_equal_weights_under_load_are_even() -> None:
    """Equal backends under load share requests evenly."""
    statuses = [BackendStatus(n) for n in "abcd"]
    router = pool(*statuses)
    running: deque[BackendStatus] = deque()
    picks: Counter[str] = Counter()
    for i in range(4000):
        chosen = router.candidates(write=False)[0]
        chosen.in_flight += 1
        running.append(chosen)
        picks[chosen.name] += 1
        if len(running) >= 1 + i % 7:  # uneven concurrency
            running.popleft().in_flight -= 1
    assert all(900 <= picks[n] <= 1100 for n in "abcd"), picks


def test_pool_skips_down_and_uses_unknown() -> None:
    """Down backends are not candidates; unknown ones are (first requests after start-up)."""
    router = pool(
        BackendStatus("a", state="down"), BackendStatus("b"), BackendStatus("c", state="up")
    )
    for _ in range(4):
        assert sorted(names(router.candidates(write=False))) == ["b", "c"]


def test_pool_refuses_server() -> None:
    """SERVER is a named-mode parameter; pool mode refuses it."""
    with pytest.raises(ValueError, match="only meaningful in named mode"):
        pool(BackendStatus("a")).candidates(write=False, server="a")


def test_pool_all_down_no_backend() -> None:
    """All down: NoBackend (503) naming each backend and its error, errno the latest one."""
    a = BackendStatus("a", state="down")
    b = BackendStatus("b", state="down")
    b.record_error(2003, "Can't connect to MySQL server on 'db2' (111)")
    a.record_error(2002, "Can't connect to local server through socket")
    with pytest.raises(NoBackend) as caught:
        pool(a, b).candidates(write=False)
    e = caught.value
    assert e.status == 503
    assert e.errno == 2002  # a's error was recorded last
    assert e.message == (
        "no healthy backend: a (Can't connect to local server through socket),"
        " b (Can't connect to MySQL server on 'db2' (111)); retry later"
    )
    assert e.backends == ("a", "b")
    assert e.server is None
    assert str(e) == e.message


def test_no_backend_without_errors_recorded() -> None:
    """Backends down without a recorded error are still named; errno is None."""
    router = pool(BackendStatus("a", state="down"))
    with pytest.raises(NoBackend, match=r"no healthy backend: a \(no error recorded\)") as caught:
        router.candidates(write=True)
    assert caught.value.errno is None
    assert caught.value.server == "a"


# ------------------------------------------------------------------ primary-replica mode


def test_write_goes_to_primary_only() -> None:
    """A write's only candidate is the primary, whatever the replicas' load."""
    router, p, r1, _ = primary_replica("up", "up", "up")
    p.in_flight = 10
    for _ in range(5):
        assert router.candidates(write=True) == [p]


def test_write_to_unknown_primary() -> None:
    """A primary not checked yet takes writes."""
    router, p, _, _ = primary_replica()
    assert router.candidates(write=True) == [p]


def test_write_refused_by_read_only_primary() -> None:
    """A read-only primary refuses writes with a message that says nothing was sent."""
    router, p, _, _ = primary_replica("up", "up", "up")
    p.read_only = True
    with pytest.raises(NoBackend) as caught:
        router.candidates(write=True)
    assert caught.value.message == (
        "primary p is read-only (@@read_only = 1); writes are refused, nothing was sent"
    )
    assert caught.value.status == 503
    assert caught.value.server == "p"


def test_write_refused_by_down_primary() -> None:
    """A down primary refuses writes, naming it and its last error; no replica takes them."""
    router, p, _, _ = primary_replica("down", "up", "up")
    p.record_error(2003, "Can't connect to MySQL server on 'p' (111)")
    with pytest.raises(NoBackend) as caught:
        router.candidates(write=True)
    e = caught.value
    assert e.errno == 2003
    assert e.message.startswith("primary p is down (Can't connect to MySQL server on 'p' (111))")
    assert "nothing was sent" in e.message
    assert e.backends == ("p",)


def test_read_only_primary_still_serves_reads() -> None:
    """A read-only primary is still a read candidate."""
    router, p, _, _ = primary_replica("up", "down", "down")
    p.read_only = True
    assert router.candidates(write=False) == [p]


def test_reads_spread_over_replicas_and_primary() -> None:
    """Idle reads take turns over the replicas and the primary."""
    router, *_ = primary_replica("up", "up", "up")
    firsts = Counter(router.candidates(write=False)[0].name for _ in range(300))
    assert firsts == {"p": 100, "r1": 100, "r2": 100}


def test_reads_by_score() -> None:
    """Reads follow the weighted least-outstanding score, primary included."""
    router, p, r1, r2 = primary_replica("up", "up", "up")
    p.in_flight, r1.in_flight, r2.in_flight = 3, 0, 1
    assert names(router.candidates(write=False)) == ["r1", "r2", "p"]


def test_reads_skip_down_replica() -> None:
    """A down replica (for instance marked down for lag) takes no reads."""
    router, _, _, r2 = primary_replica("up", "down", "up")
    for _ in range(6):
        assert sorted(names(router.candidates(write=False))) == ["p", "r2"]


def test_reads_with_primary_down_use_replicas() -> None:
    """Reads keep working on the replicas while the primary is down."""
    router, *_ = primary_replica("down", "up", "up")
    for _ in range(4):
        assert sorted(names(router.candidates(write=False))) == ["r1", "r2"]


def test_reads_all_down() -> None:
    """All down: a read gets NoBackend naming every backend, errno the latest error."""
    router, p, r1, r2 = primary_replica("down", "down", "down")
    r1.record_error(2013, "Lost connection to server during query")
    p.record_error(2003, "Can't connect to MySQL server on 'p' (111)")
    r2.last_error = "replication stopped"
    with pytest.raises(NoBackend) as caught:
        router.candidates(write=False)
    e = caught.value
    assert e.errno == 2003
    assert e.message == (
        "no healthy backend: p (Can't connect to MySQL server on 'p' (111)),"
        " r1 (Lost connection to server during query), r2 (replication stopped); retry later"
    )


def test_primary_replica_refuses_server() -> None:
    """SERVER is refused outside named mode."""
    router, *_ = primary_replica()
    with pytest.raises(ValueError):
        router.candidates(write=False, server="r1")


# ------------------------------------------------------------------ named mode


def named() -> Router:
    """A named-mode router over ``a`` and ``b``."""
    return Router([BackendStatus("a"), BackendStatus("b")], "named")


@pytest.mark.parametrize("write", [False, True])
def test_named_gives_the_named_backend(write: bool) -> None:
    """Named mode returns exactly the backend the client asked for."""
    router = named()
    assert names(router.candidates(write=write, server="b")) == ["b"]
    assert names(router.candidates(write=write, server="a")) == ["a"]


def test_named_down_no_failover() -> None:
    """A down named backend is refused with its error; no other name is offered."""
    router = named()
    router.status("a").state = "down"
    router.status("a").record_error(2003, "Can't connect to MySQL server on 'a' (111)")
    with pytest.raises(NoBackend) as caught:
        router.candidates(write=False, server="a")
    e = caught.value
    assert e.errno == 2003
    assert e.server == "a"
    assert e.message.startswith("backend a is down (Can't connect to MySQL server on 'a' (111))")
    assert "does not fail over" in e.message


def test_named_needs_server() -> None:
    """Named mode without SERVER is a caller bug: ValueError."""
    with pytest.raises(ValueError, match="needs SERVER"):
        named().candidates(write=False)


def test_named_unknown_server() -> None:
    """An unknown SERVER is a caller bug (it validates first): ValueError."""
    with pytest.raises(ValueError, match="unknown SERVER 'c'"):
        named().candidates(write=False, server="c")


# ------------------------------------------------------------------ retry rule


@pytest.mark.parametrize(
    ("kind", "read_only", "expected"),
    [
        (NOT_SENT, True, True),
        (NOT_SENT, False, True),
        (LOST, True, True),
        (LOST, False, False),
    ],
)
def test_may_retry_table(kind: str, read_only: bool, expected: bool) -> None:
    """Not sent: always retried; lost after sending: only a read-only statement."""
    assert may_retry(kind, read_only=read_only) is expected


def test_may_retry_unknown_kind() -> None:
    """An unknown failure kind is a bug, not a silent 'no'."""
    with pytest.raises(ValueError, match="unknown failure kind"):
        may_retry("timeout", read_only=True)
