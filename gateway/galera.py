"""Galera mode: which node of a Galera cluster may take reads, which one takes the writes.

A Galera cluster is synchronous and multi-primary, but two nodes writing the same rows at once
make one of the transactions fail certification at commit (a deadlock error, 1213): so the
gateway writes to ONE node at a time, the *writer*, and spreads reads over the synced nodes, as
MaxScale's galeramon does. Everything here is pure (facts in, decisions out); the health checks
(gateway.health) read the facts, the router (gateway.router) orders the candidates.

The facts (:class:`Wsrep`) are the node's own ``wsrep_*`` status variables, read by one health
check round trip (:data:`PROBE_SQL`: ``SHOW`` statements only, which a node outside the primary
component still answers). The rules:

- A node is *synced* when ``wsrep_on``, ``wsrep_ready = ON``, ``wsrep_cluster_status =
  Primary`` and ``wsrep_local_state = 4`` (Synced). Only synced nodes take writes.
- A node with ``wsrep_reject_queries`` set (ALL, ALL_KILL: an operator took it out) takes
  nothing: it refuses client statements with 1047 although its wsrep state looks healthy.
- A donor or desynced node (local state 2) takes reads only when ``galera_donor_reads`` allows
  it, never writes. Joining or joined nodes (1, 3) take nothing.
- A node failing these rules is out at once, not after ``fall`` failed checks: a node outside
  the primary component must never be chosen (:func:`wsrep_problem`). It comes back by the
  ordinary ``rise`` rule.
- The writer is sticky: it stays while it may take writes, so a node that rejoins with a lower
  index does not flip writes between two nodes. When it may not, the next writer is the synced
  node with the lowest ``wsrep_local_index``, ties by backend name (:func:`choose_writer`).
- A node not checked yet takes nothing: it may be outside the primary component, or no Galera
  node at all (a plain server would run the statement). The checks start with the gateway, so
  this lasts the first check's round trip; until then requests are refused (503, retry).
- A node that has left the primary component refuses every statement but SET and SHOW with
  error 1047 ("WSREP has not yet prepared node for application use") before running it: on the
  first statement of a request that means nothing ran, and the request fails over to the next
  candidate like one that was never sent (:func:`not_executed`). On a later statement the earlier
  ones ran: it is the SQL error of that statement, never resent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from gateway.router import BackendStatus

#: wsrep_local_state values (Galera's node states).
JOINING, DONOR, JOINED, SYNCED = 1, 2, 3, 4
#: The server error a node outside the primary component answers, without running anything.
NOT_PREPARED = 1047

#: The status variables one check reads (SHOW GLOBAL STATUS).
STATUS_NAMES = (
    "wsrep_ready",
    "wsrep_cluster_status",
    "wsrep_local_state",
    "wsrep_local_state_comment",
    "wsrep_cluster_size",
    "wsrep_local_index",
    "wsrep_cluster_state_uuid",
)
#: One round trip, two result sets: the variables (read_only, wsrep_on, wsrep_reject_queries),
#: then the status. SHOW
#: only: a node outside the primary component refuses a SELECT (1047) but answers SHOW and SET.
PROBE_SQL = (
    "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'wsrep_on', "
    "'wsrep_reject_queries'); "
    "SHOW GLOBAL STATUS WHERE Variable_name IN ("
    + ", ".join(f"'{name}'" for name in STATUS_NAMES)
    + ")"
)


@attrs.frozen
class Wsrep:
    """What one health check read of a node's ``wsrep_*`` status."""

    on: bool = False  # @@wsrep_on: False on a server that is not a Galera node
    ready: bool = False  # wsrep_ready = ON
    cluster_status: str = ""  # "Primary", "non-Primary" or "Disconnected"
    local_state: int = 0  # 1 joining, 2 donor/desynced, 3 joined, 4 synced
    local_state_comment: str = ""
    cluster_size: int = 0
    local_index: int | None = None  # this node's index in the cluster view (None: unknown)
    cluster_state_uuid: str = ""
    #: @@wsrep_reject_queries: NONE, or ALL / ALL_KILL (the node is taken out for maintenance:
    #: it refuses client statements with 1047, though its wsrep state stays Primary and Synced)
    reject_queries: str = "NONE"

    @property
    def primary(self) -> bool:
        """Part of the primary component (the quorum), ready for statements."""
        return self.on and self.ready and self.cluster_status == "Primary"

    @property
    def synced(self) -> bool:
        """May take writes: in the primary component, synced, taking client statements."""
        return self.primary and self.local_state == SYNCED and self.reject_queries == "NONE"

    def to_dict(self) -> dict[str, Any]:
        """The facts as /stats, /ready and the worker exports show them."""
        return {
            "ready": self.ready,
            "cluster_status": self.cluster_status,
            "local_state": self.local_state,
            "local_state_comment": self.local_state_comment,
            "cluster_size": self.cluster_size,
            "local_index": self.local_index,
            "cluster_state_uuid": self.cluster_state_uuid,
            "reject_queries": self.reject_queries,
        }


def parse_wsrep(variables: Iterable[Sequence[Any]], status: Iterable[Sequence[Any]]) -> Wsrep:
    """The facts from the two result sets of :data:`PROBE_SQL` (rows of name, value)."""
    var = {str(row[0]).lower(): _text(row[1]) for row in variables}
    got = {str(row[0]).lower(): _text(row[1]) for row in status}
    index = _int(got.get("wsrep_local_index"))
    return Wsrep(
        on=var.get("wsrep_on", "OFF").upper() in ("ON", "1"),
        ready=got.get("wsrep_ready", "OFF").upper() == "ON",
        cluster_status=got.get("wsrep_cluster_status", ""),
        local_state=_int(got.get("wsrep_local_state")) or 0,
        local_state_comment=got.get("wsrep_local_state_comment", ""),
        cluster_size=_int(got.get("wsrep_cluster_size")) or 0,
        # (a node outside any cluster view reports 2**64 - 1: no index)
        local_index=index if index is not None and index < 2**32 else None,
        cluster_state_uuid=got.get("wsrep_cluster_state_uuid", ""),
        reject_queries=var.get("wsrep_reject_queries", "NONE").upper() or "NONE",
    )


def read_only_of(variables: Iterable[Sequence[Any]]) -> bool:
    """@@global.read_only from the first result set of :data:`PROBE_SQL`."""
    for name, value in variables:
        if str(name).lower() == "read_only":
            return _text(value).upper() in ("ON", "1")
    return False


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def wsrep_problem(wsrep: Wsrep | None, donor_reads: bool = False) -> str | None:
    """Why a node that answered its check may take no traffic in galera mode (None: it may
    take reads; :attr:`Wsrep.synced` says whether writes too)."""
    if wsrep is None:
        return "wsrep state unknown (the check did not read it)"
    if not wsrep.on:
        return "not a Galera node (wsrep_on is OFF); galera mode needs the nodes of a cluster"
    if not wsrep.ready:
        return f"wsrep_ready is OFF (cluster status {wsrep.cluster_status or 'unknown'})"
    if wsrep.cluster_status != "Primary":
        return (
            "not in the primary component (wsrep_cluster_status is "
            f"{wsrep.cluster_status or 'unknown'}); it takes no traffic"
        )
    if wsrep.reject_queries != "NONE":
        return (
            f"wsrep_reject_queries is {wsrep.reject_queries}: the node refuses client "
            "statements (taken out for maintenance)"
        )
    if wsrep.local_state == SYNCED:
        return None
    comment = wsrep.local_state_comment or "not synced"
    if wsrep.local_state == DONOR:
        if donor_reads:
            return None
        return (
            f"{comment} (wsrep_local_state 2); it takes no traffic "
            "(galera_donor_reads = true lets it take reads)"
        )
    return f"{comment} (wsrep_local_state {wsrep.local_state}), not synced; it takes no traffic"


def may_write(status: BackendStatus) -> bool:
    """The node may be the writer: checked up, synced in the primary component, writable."""
    wsrep = status.wsrep
    return status.state == "up" and wsrep is not None and wsrep.synced and not status.read_only


def _by_index(statuses: Iterable[BackendStatus]) -> list[BackendStatus]:
    """Lowest wsrep_local_index first (unknown last), ties by backend name."""

    def key(s: BackendStatus) -> tuple[int, int, str]:
        index = s.wsrep.local_index if s.wsrep is not None else None
        return (index is None, index or 0, s.name)

    return sorted(statuses, key=key)


def choose_writer(statuses: Sequence[BackendStatus], current: str | None) -> str | None:
    """The writer: ``current`` while it may take writes (sticky), else the synced node with
    the lowest wsrep_local_index (ties by name); None when no node may take writes."""
    by_name = {s.name: s for s in statuses}
    if current is not None and current in by_name and may_write(by_name[current]):
        return current
    eligible = _by_index(s for s in statuses if may_write(s))
    return eligible[0].name if eligible else None


def write_candidates(statuses: Sequence[BackendStatus], writer: str | None) -> list[BackendStatus]:
    """Where a write may go, in order: the writer, then the other nodes that may take writes
    (by index: the next writer first). The executor goes down the list only for a request that
    provably never ran (the retry rule), so a statement is never sent twice, and a write goes
    to the second node only when the writer could not take it."""
    by_name = {s.name: s for s in statuses}
    first = [by_name[writer]] if writer is not None and writer in by_name else []
    return first + _by_index(s for s in statuses if may_write(s) and s.name != writer)


def read_candidates(statuses: Sequence[BackendStatus]) -> list[BackendStatus]:
    """The nodes that may take a read: those checked up (the health checks keep up only the
    nodes the wsrep rules allow: synced, or donors with ``galera_donor_reads``)."""
    return [s for s in statuses if s.state == "up"]


def not_executed(errno: int | None, statements_answered: int) -> bool:
    """A 1047 answered to the FIRST statement of a request: the node is outside the primary
    component and ran nothing, so the request may go to another node as one never sent. On a
    later statement the earlier ones ran: an ordinary SQL error, never resent."""
    return errno == NOT_PREPARED and statements_answered == 0


def galera_report(statuses: Iterable[BackendStatus], writer: str | None) -> dict[str, Any]:
    """The writer and each node's wsrep state (None: unknown), as /ready shows them."""
    return {
        "writer": writer,
        "nodes": {s.name: s.wsrep.to_dict() if s.wsrep else None for s in statuses},
    }
