"""The pure parts of the Galera cluster fixture (tests/galera.py): address slots, stale
namespaces, status parsing, the recovered position. The cluster itself runs in
tests/integration/test_galera_chaos.py."""

from __future__ import annotations

import pytest

from tests.galera import (
    SLOTS,
    is_synced_primary,
    parse_status,
    pick_slot,
    recovered_position,
    stale_namespaces,
    used_slots,
)

ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
7: dbgs200c0    inet 10.200.0.1/24 scope global dbgs200c0\\       valid_lft forever
9: dbgs200c1    inet 10.200.1.1/24 scope global dbgs200c1\\       valid_lft forever
"""
ROUTES = """\
default via 192.0.2.1 dev eth0
10.201.0.0/16 via 192.0.2.7 dev eth0
110.202.0.0/16 via 192.0.2.7 dev eth0
"""


def test_used_slots_reads_addresses_and_routes() -> None:
    """Slots taken by an address or a route of a 10.x network are seen; 110.x is not 10.x."""
    assert used_slots(ADDR + ROUTES) == {200, 201}


def test_pick_slot_takes_the_lowest_free_one() -> None:
    """The first slot not taken; none left is a clear error."""
    assert pick_slot(set()) == SLOTS.start
    assert pick_slot({SLOTS.start, SLOTS.start + 1}) == SLOTS.start + 2
    with pytest.raises(RuntimeError, match="no free"):
        pick_slot(set(SLOTS))


def test_stale_namespaces_are_those_of_dead_processes() -> None:
    """Only this fixture's names whose pid is gone; other namespaces are never touched."""
    names = ["dbg100s200n0", "dbg100s200br", "dbg200s201n1", "dbgtest", "other", "dbg100probe"]
    assert stale_namespaces(names, alive=lambda pid: pid == 200) == [
        "dbg100s200n0",
        "dbg100s200br",
    ]


def test_parse_status_and_synced_primary() -> None:
    """Names lower-cased; synced means ready, Primary and local state 4, nothing less."""
    status = parse_status(
        "WSREP_READY\tON\nWSREP_CLUSTER_STATUS\tPrimary\nWSREP_LOCAL_STATE\t4\n"
        "WSREP_PROVIDER_NAME\t\n"
    )
    assert status["wsrep_cluster_status"] == "Primary"
    assert status["wsrep_provider_name"] == ""
    assert is_synced_primary(status)
    assert not is_synced_primary({**status, "wsrep_local_state": "2"})  # donor/desynced
    assert not is_synced_primary({**status, "wsrep_cluster_status": "non-Primary"})
    assert not is_synced_primary({**status, "wsrep_ready": "OFF"})
    assert not is_synced_primary({})


def test_recovered_position() -> None:
    """The last position --wsrep-recover logged, without its GTID list; -1 is no position."""
    uuid = "d9ac9599-ee1d-11f1-8765-9a3e0809cfc4"
    log = (
        "2026-12-02  6:59:21 0 [Note] InnoDB: Starting crash recovery\n"
        f"2026-12-02  6:59:21 0 [Note] WSREP: Recovered position: {uuid}:12,1-1-8\n"
    )
    assert recovered_position(log) == f"{uuid}:12"
    assert recovered_position(f"[Note] WSREP: Recovered position: {uuid}:-1\n") is None
    assert recovered_position("no position here") is None
