"""The router: which backends may take a request, in which order, and whether a failure may be
retried elsewhere. Pure decisions, no I/O: the executor and the health checks feed it facts
(:class:`BackendStatus`), it answers with an ordered list of candidates or :class:`NoBackend`.

Modes:
- ``pool``: every usable backend takes reads and writes alike, ordered by a weighted
  least-outstanding-requests score ``(in_flight + 1) / weight`` (lower first). Ties are broken by
  an offset that advances on every call, so idle equal backends take turns (round robin).
- ``primary-replica``: a write goes to the primary only, never elsewhere (a read-only or down
  primary refuses it: nothing is sent). A read goes to the usable replicas and the primary by the
  same score; health checks mark lagging replicas down, so they are skipped here.
- ``named``: the client's ``SERVER`` picks the one backend; there is no failover to another name.
- ``galera``: the nodes of a Galera cluster (:mod:`gateway.galera`). Writes go to ONE node, the
  writer (sticky; when it may no longer take writes, the synced node with the lowest
  wsrep_local_index), then down the other synced nodes only as the retry rule allows; reads go
  to the nodes checked up, by the same score as in pool mode. A node not checked yet takes
  nothing (it may be outside the primary component, or no Galera node at all).
  :attr:`Router.writer` names the writer; ``on_writer_change(old, new)`` is called on each
  change.

"Usable" means not known to be down: ``unknown`` (not checked yet) counts as usable, so the
first requests after start-up are not refused.

The retry rule (:func:`may_retry`): a statement is sent again, to the same or another backend,
only when the server provably never received it (:data:`NOT_SENT`). After the connection broke
with the statement sent (:data:`LOST`, 2013), a read-only statement outside a transaction may be
re-run elsewhere; a write never is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import attrs

from gateway import galera
from gateway.galera import Wsrep

MODES = ("pool", "primary-replica", "named", "galera")

#: The server provably never received the statement: connect refused or failed (2002, 2003,
#: 2005), ping failed before sending, "server has gone away" (2006) before the command was written.
NOT_SENT = "not_sent"
#: The connection broke after the statement was sent (2013): it may have run.
LOST = "lost"

# Orders recorded errors across backends, so "the most recent error" has a meaning without a
# clock. Only its order matters; it is never reset.
_error_order = itertools.count(1)


@attrs.define
class BackendStatus:
    """Live facts about one backend, updated by health checks and by the request path."""

    name: str
    role: str = ""  # "", "primary" or "replica"
    weight: int = 1
    state: str = "unknown"  # "unknown" (not checked yet), "up" or "down"
    read_only: bool = False  # the server reports @@read_only = 1
    lag: float | None = None  # replication lag in seconds (replicas), None if unknown
    in_flight: int = 0  # requests running on it now (the executor increments/decrements)
    last_errno: int | None = None
    last_error: str | None = None
    error_seq: int = 0  # order of the last recorded error among all backends (0: none)
    wsrep: Wsrep | None = None  # galera mode: the node's wsrep state at its last check

    @property
    def usable(self) -> bool:
        """Not known to be down (``unknown`` counts as usable)."""
        return self.state != "down"

    def record_error(self, errno: int | None, error: str) -> None:
        """Remember the last error of this backend (and that it is the most recent one)."""
        self.last_errno = errno
        self.last_error = error
        self.error_seq = next(_error_order)


class NoBackend(Exception):
    """No backend may take this request; nothing was sent.

    ``.message`` says why and what to do; ``.errno`` is the last connect error of the backends
    concerned (None if unknown); ``.status`` is 503; ``.server`` names the one backend concerned
    (None when several are); ``.backends`` names all of them."""

    status = 503

    def __init__(
        self,
        message: str,
        errno: int | None = None,
        backends: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.backends = tuple(backends)
        self.server = self.backends[0] if len(self.backends) == 1 else None


def may_retry(kind: str, *, read_only: bool) -> bool:
    """May a failed statement be sent again (to the same or another backend)?

    ``read_only``: the statement is read-only and runs outside a transaction."""
    if kind == NOT_SENT:
        return True  # the server provably never received it
    if kind == LOST:
        return read_only  # a read may be re-run elsewhere; a write may have been applied
    raise ValueError(f"unknown failure kind {kind!r}; expected {NOT_SENT!r} or {LOST!r}")


class Router:
    """Chooses the backends to try for one request, in order of preference."""

    def __init__(self, statuses: Sequence[BackendStatus], mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if not statuses:
            raise ValueError("a router needs at least one backend")
        self.statuses: dict[str, BackendStatus] = {}
        for status in statuses:
            if status.name in self.statuses:
                raise ValueError(f"backend name {status.name!r} is used twice")
            if status.weight < 1:
                raise ValueError(f"backend {status.name}: weight must be at least 1")
            self.statuses[status.name] = status
        self.mode = mode
        self.primary: BackendStatus | None = None
        if mode == "primary-replica":
            primaries = [s for s in statuses if s.role == "primary"]
            if len(primaries) != 1:
                raise ValueError(
                    "primary-replica mode needs exactly one backend with role primary,"
                    f" got {len(primaries)}"
                )
            self.primary = primaries[0]
        self._turn = 0
        #: Galera mode: the node that takes the writes (None: none may now).
        self.writer: str | None = None
        #: Galera mode: called with ``(old, new)`` writer names on every change of writer.
        self.on_writer_change: Callable[[str | None, str | None], None] | None = None

    def status(self, name: str) -> BackendStatus:
        """The live status of the backend of that name (KeyError if there is none)."""
        try:
            return self.statuses[name]
        except KeyError:
            raise KeyError(f"no backend named {name!r}") from None

    def candidates(self, *, write: bool, server: str | None = None) -> list[BackendStatus]:
        """The backends to try, best first; never empty (NoBackend instead).

        ``write``: the request may change data (only matters in primary-replica mode);
        ``server``: the client's ``SERVER``, required in named mode and refused otherwise."""
        turn = self._turn
        self._turn += 1
        if self.mode == "named":
            return self._named(server)
        if server is not None:
            raise ValueError(f"SERVER is only meaningful in named mode, not {self.mode!r}")
        if self.mode == "pool":
            return _by_score(list(self.statuses.values()), turn)
        if self.mode == "galera":
            return self._galera(write, turn)
        if write:
            return self._write_to_primary()
        return _by_score(list(self.statuses.values()), turn)

    def refresh(self) -> str | None:
        """Galera mode: re-choose the writer from the statuses (the health checks call it after
        every result); calls ``on_writer_change`` when it changed. Returns the writer."""
        if self.mode != "galera":
            return None
        old = self.writer
        new = galera.choose_writer(list(self.statuses.values()), old)
        if new != old:
            self.writer = new
            if self.on_writer_change is not None:
                self.on_writer_change(old, new)
        return new

    def _galera(self, write: bool, turn: int) -> list[BackendStatus]:
        statuses = list(self.statuses.values())
        if write:
            candidates = galera.write_candidates(statuses, self.refresh())
            if not candidates:
                listed = ", ".join(f"{s.name} ({_galera_why(s)})" for s in statuses)
                raise NoBackend(
                    f"no Galera node can take writes now: {listed}; nothing was sent; retry later",
                    errno=_latest_errno(statuses),
                    backends=[s.name for s in statuses],
                )
            return candidates
        up = galera.read_candidates(statuses)
        if not up:
            listed = ", ".join(f"{s.name} ({_galera_why(s)})" for s in statuses)
            raise NoBackend(
                f"no Galera node can take reads now: {listed}; retry later",
                errno=_latest_errno(statuses),
                backends=[s.name for s in statuses],
            )
        return _by_score(up, turn)

    def _named(self, server: str | None) -> list[BackendStatus]:
        if server is None:
            raise ValueError("named mode needs SERVER")
        if server not in self.statuses:
            raise ValueError(f"unknown SERVER {server!r}")
        status = self.statuses[server]
        if not status.usable:
            raise NoBackend(
                f"backend {server} is down ({_why(status)}); named mode does not fail over"
                " to another server; retry later",
                errno=status.last_errno,
                backends=[server],
            )
        return [status]

    def _write_to_primary(self) -> list[BackendStatus]:
        primary = self.primary
        assert primary is not None  # set in primary-replica mode
        if not primary.usable:
            raise NoBackend(
                f"primary {primary.name} is down ({_why(primary)}); writes go to the primary"
                " only, nothing was sent; retry later",
                errno=primary.last_errno,
                backends=[primary.name],
            )
        if primary.read_only:
            raise NoBackend(
                f"primary {primary.name} is read-only (@@read_only = 1); writes are refused,"
                " nothing was sent",
                backends=[primary.name],
            )
        return [primary]


def _by_score(statuses: list[BackendStatus], turn: int) -> list[BackendStatus]:
    """Usable backends by weighted least-outstanding score, ties rotated by ``turn``."""
    usable = [s for s in statuses if s.usable]
    if not usable:
        raise _none_healthy(statuses)
    n = len(usable)
    if n == 1:
        return usable
    order = sorted(
        range(n),
        key=lambda i: ((usable[i].in_flight + 1) / usable[i].weight, (i - turn) % n),
    )
    return [usable[i] for i in order]


def _none_healthy(statuses: list[BackendStatus]) -> NoBackend:
    listed = ", ".join(f"{s.name} ({_why(s)})" for s in statuses)
    return NoBackend(
        f"no healthy backend: {listed}; retry later",
        errno=_latest_errno(statuses),
        backends=[s.name for s in statuses],
    )


def _latest_errno(statuses: list[BackendStatus]) -> int | None:
    """The error number of the most recent error recorded on any of them."""
    latest = max(
        (s for s in statuses if s.last_errno is not None),
        key=lambda s: s.error_seq,
        default=None,
    )
    return latest.last_errno if latest is not None else None


def _galera_why(status: BackendStatus) -> str:
    """Why a node takes no writes (galera mode)."""
    if status.state == "unknown":
        return "not checked yet"
    if status.state == "down":
        return _why(status)
    if status.read_only:
        return "read-only (@@read_only = 1)"
    wsrep = status.wsrep
    if wsrep is not None and not wsrep.synced:
        return f"{wsrep.local_state_comment or 'not synced'}, not synced"
    return _why(status)


def _why(status: BackendStatus) -> str:
    return status.last_error or "no error recorded"
