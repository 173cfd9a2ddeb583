"""Read your writes: the replication position after a write, and reads that wait for it.

An answer to a request that wrote carries ``GTID``, the position the server reports after it
(MariaDB's ``last_gtid``: ``domain-server-seq``, several domains comma-separated). A later
request may send it back as ``AFTER``; its read then runs only where that position has been
applied:

- ``primary-replica``: on a replica that has it (checked with ``@@gtid_current_pos``, else
  waited for with ``MASTER_GTID_WAIT``, bounded by ``gtid_wait_timeout``, on the connection
  that then runs the read); a replica that does not get there in time, or fails, sends the read
  to the primary, which has every position it wrote. On the primary nothing waits.
- ``galera``: the read runs with causal reads (``wsrep_sync_wait = 1``) on whichever node
  takes it: the node first catches up with every write the cluster committed before the read.
- ``pool`` and ``named``: the backend the read goes to must have the position (the same check
  and bounded wait); one that does not is skipped (pool) or answers 503 (named).
- SQLite (the demo): one file, every read sees every write before it: accepted, nothing to do.

A read with ``AFTER`` never comes from the answer cache, nor joins a single flight (both may be
older than the write). A write with ``AFTER`` runs as without it (writes go where they go).

How the position is known without an extra round trip: every MariaDB connection tracks
``last_gtid`` (``session_track_system_variables``), so the OK packet of a statement that wrote
carries the new value in its session-state information. The server then also sets
``SERVER_SESSION_STATE_CHANGED`` on that packet, which the connection hygiene
(:mod:`gateway.session`) takes as "the session changed: reset it". A write does not change the
session, and a reset per write would double the round trips of every write; so the tracker
entries are read (only when the flag is set, only on OK packets: a result set's EOF carries
none) and :func:`read_tracked` tells a ``last_gtid``-only report from a real change, which the
server reports with a ``SESSION_TRACK_STATE_CHANGE`` entry (checked against MariaDB 10.11:
``SET``, ``USE``, user variables, temporary tables, prepared statements, autocommit all add
one; a plain write adds only ``last_gtid``). The server reports; the SQL text is never read for
this.

Pure decisions here; the shells are :class:`gateway.session.NativeSession` (tracker entries)
and :mod:`gateway.backends` (the wait), :mod:`gateway.executor` (routing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

#: The session tracker types of the OK packet (mysql.h, ``enum enum_session_state_type``).
SESSION_TRACK_SYSTEM_VARIABLES = 0
SESSION_TRACK_STATE_CHANGE = 2
#: Types the client library may report (0..5): every one is read.
SESSION_TRACK_TYPES = range(6)

#: What every MariaDB connection tracks (set up with the connection and after every reset).
GTID_TRACKING = "session_track_system_variables = 'last_gtid'"

#: Most domains one AFTER may name.
MAX_DOMAINS = 64
_U32 = 2**32 - 1
_U64 = 2**64 - 1
_GTID = r"[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,20}"
#: The text of a GTID list, as MariaDB writes one (also the OpenAPI document's pattern).
GTID_LIST_PATTERN = rf"^{_GTID}(,{_GTID}){{0,{MAX_DOMAINS - 1}}}$"
_GTID_LIST = re.compile(GTID_LIST_PATTERN)

#: One GTID: (domain, server, seq_no).
Gtid = tuple[int, int, int]


class BadPosition(ValueError):
    """Not a GTID list (the request's 400)."""


def parse_gtids(text: str) -> tuple[Gtid, ...]:
    """The GTIDs of a list such as ``0-1-1234,1-2-7`` (BadPosition when it is not one). A
    domain named twice keeps its highest seq_no (MariaDB refuses a list that names a domain
    twice)."""
    if not isinstance(text, str) or _GTID_LIST.fullmatch(text) is None:
        raise BadPosition(f"not a GTID list: {text!r}")
    gtids = []
    for part in text.split(","):
        domain, server, seq = (int(n) for n in part.split("-"))
        if domain > _U32 or server > _U32 or seq > _U64:
            raise BadPosition(f"GTID {part} is out of range")
        gtids.append((domain, server, seq))
    return _highest(gtids)


def format_gtids(gtids: Sequence[Gtid]) -> str:
    """``0-1-1234,1-2-7``: domains in order, as MariaDB writes positions."""
    return ",".join(f"{d}-{s}-{n}" for d, s, n in sorted(gtids))


def merge(first: str | None, second: str | None) -> str | None:
    """The later of two positions, per domain (the highest seq_no of each domain); None when
    neither is known. A text that is not a GTID list counts as unknown."""
    gtids: list[Gtid] = []
    for text in (first, second):
        if text:
            try:
                gtids.extend(parse_gtids(text))
            except BadPosition:
                continue
    return format_gtids(_highest(gtids)) if gtids else None


def _highest(gtids: Sequence[Gtid]) -> tuple[Gtid, ...]:
    best: dict[int, Gtid] = {}
    for gtid in gtids:
        seen = best.get(gtid[0])
        if seen is None or gtid[2] > seen[2]:
            best[gtid[0]] = gtid
    return tuple(best[d] for d in sorted(best))


def covers(current: str | None, wanted: str) -> bool:
    """True when a server at position ``current`` (``@@gtid_current_pos``) has applied every
    GTID of ``wanted``: for each domain, its seq_no is at least the one wanted (seq_no only
    grows within a domain of one replication topology)."""
    if not current:
        return False
    try:
        have = {d: n for d, _, n in parse_gtids(current)}
    except BadPosition:
        return False
    return all(have.get(d, -1) >= n for d, _, n in parse_gtids(wanted))


def read_tracked(entries: Mapping[int, Sequence[bytes]]) -> tuple[str | None, bool]:
    """Read the session tracker entries of one OK packet flagged
    ``SERVER_SESSION_STATE_CHANGED``: ``(last_gtid, changed)``, the position it reports (None:
    none) and whether anything else changed (the session is then reset as before). Anything
    but ``last_gtid`` system-variable pairs is a change, a ``SESSION_TRACK_STATE_CHANGE`` entry
    above all."""
    gtid: str | None = None
    changed = False
    for kind, values in entries.items():
        if not values:
            continue
        if kind != SESSION_TRACK_SYSTEM_VARIABLES:
            changed = True
            continue
        pairs = list(values)
        if len(pairs) % 2:
            changed = True  # (not name/value pairs: not understood, so a change)
            pairs = pairs[:-1]
        for name, value in zip(pairs[::2], pairs[1::2]):
            if name.lower() == b"last_gtid":
                text = value.decode("ascii", "replace")
                gtid = merge(gtid, text) if text else gtid
            else:
                changed = True
    return gtid, changed


# ------------------------------------------------------------------------------- routing


def read_order(mode: str, names: Sequence[str], primary: str | None) -> list[str]:
    """The backends a read with AFTER tries, in order (pure). ``names`` are the router's
    candidates, best first; ``primary`` the primary's name (primary-replica mode).

    Primary-replica: the best replica, then the primary (which has the position: no wait),
    then the other replicas; when the primary is the router's first choice, it alone comes
    first. Other modes: the router's order."""
    if mode != "primary-replica" or primary is None or primary not in names:
        return list(names)
    if names[0] == primary:
        return list(names)
    rest = [n for n in names[1:] if n != primary]
    return [names[0], primary, *rest]


def wait_needed(mode: str, name: str, primary: str | None) -> bool:
    """Must the read check (and wait for) the position on backend ``name`` before it runs?
    Not on the primary of primary-replica mode (every write was made there), not in galera
    mode (causal reads instead)."""
    if mode == "galera":
        return False
    return not (mode == "primary-replica" and name == primary)


def wait_statement(gtids: str, seconds: float) -> str:
    """The bounded wait for a position (``gtids`` already validated by parse_gtids)."""
    return f"SELECT MASTER_GTID_WAIT('{format_gtids(parse_gtids(gtids))}', {seconds:.3f})"
