"""The reactor lane: a small answer is read in the reactor thread, with no thread hand-off.

Handing every request to a pool thread and back (a queue, two wake-ups, the GIL passed
between threads) cost more than the query itself. A request that qualifies (one statement,
no transaction or session change, no info flags; :func:`lane_eligible`) is sent from the
reactor thread with the driver's ``send_query``, and the reactor watches the connection's
socket. When the answer starts to arrive, the lane peeks at the socket buffer:

- the whole answer is there (:func:`gateway.wire.response_state`): the driver reads it at once,
  without waiting, in the reactor thread;
- it is not all there yet (a big result set, or one the server is still producing), or it is
  one the walk does not follow: a pool thread reads it, with the same code as any request
  (streaming, row limit, errors), so the reactor never waits on the network.

The connections are the pool's slots (:class:`gateway.backends.BackendPool`), so the pool's
maximum holds for both ways. A connection that is new, idle for long, or whose session needs a
different time limit or read-only mode goes through a pool thread, which checks and sets it.
While idle, a lane connection stays watched: if the server closes it, it is dropped at once.
An answer that does not come within ``read_timeout`` fails like a lost connection.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.backends import (
    BackendPool,
    ParamsMismatch,
    Run,
    Slot,
    _mysql_errno,
    bind_params,
    gone_before_sent,
    is_client_errno,
    sql_error,
    timed_out,
)
from gateway.request import Request
from gateway.results import Answer, ResultSet, Update, result_set
from gateway.session import SERVER_SESSION_STATE_CHANGED, session_changed, transaction_open
from gateway.wire import COMPLETE, UNSUPPORTED, answer_state
from gateway.wirejson import Rendered, header_and_types, json_rows

log = Logger()

#: Bytes of an answer the lane reads itself; a bigger answer is read by a pool thread.
PEEK_BYTES = 64 * 1024


def lane_eligible(request: Request) -> bool:
    """Can this request run in the reactor lane? (Pure.) One statement, by the request's
    facts, that the tokenizer does not suspect of leaving session state the server would not
    flag, with no info flags and no ROLLBACK_ON_ERROR transaction. (Whatever the statement
    does to the session, the server's status flags on its answer decide the reset.)"""
    if request.info or request.rollback_on_error:
        return False
    facts = request.read()
    return facts is not None and len(facts.statements) == 1 and not facts.session


@implementer(IReadDescriptor)
class LaneSocket:
    """A lane connection's socket as the reactor watches it (a duplicate of the driver's
    descriptor, so the lane can peek and watch without touching the driver's)."""

    def __init__(self, lane: ReactorLane, slot: Slot, conn: Any, sock: socket.socket) -> None:
        self.lane = lane
        self.slot = slot
        self.conn = conn
        self.sock = sock
        self.fd = sock.fileno()
        self.watched = False
        #: The request whose answer is awaited: (request, run, deferred, monotonic sent time).
        self.pending: tuple[Request, Run, Deferred[Answer], float] | None = None

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        self.lane.readable(self)

    def connectionLost(self, reason: Failure) -> None:
        self.lane.lost(self.slot)

    def logPrefix(self) -> str:
        return "dbslayer-lane"


class ReactorLane:
    """Runs eligible requests of one MySQL backend in the reactor thread."""

    def __init__(
        self,
        backend: Any,
        pool: BackendPool,
        reactor: Any,
        read_timeout: float,
        peek_bytes: int = PEEK_BYTES,
    ) -> None:
        self.backend = backend
        self.pool = pool
        self.reactor = reactor
        self.read_timeout = read_timeout
        self.peek_bytes = peek_bytes
        self.name = backend.name
        self.busy = 0
        #: Answers read in the reactor thread (for /stats and /metrics).
        self.reads = 0
        self._watchdog: Any = None
        pool.lane = self

    # ------------------------------------------------------------------ requests

    def execute(self, request: Request, run: Run) -> Deferred[Answer]:
        """Run a request: here if it is eligible, else in a pool thread."""
        if run.after is not None or run.causal or not lane_eligible(request):
            return self.pool.run(self.backend._execute, request, run)
        d: Deferred[Answer] = Deferred()
        slot = self.pool.take()
        if slot is None:
            self.pool.queue(lambda slot: self._start(slot, request, run, d))
        else:
            self._start(slot, request, run, d)
        return d

    def _start(self, slot: Slot, request: Request, run: Run, d: Deferred[Answer]) -> None:
        """Send the request on ``slot`` (or hand both to a pool thread); ``d`` gets the
        answer."""
        if run.cancelled:  # the client went away while the request waited for a slot
            self.reactor.callLater(0, self.pool.give_back, slot)
            d.errback(gone_before_sent(self.name))
            return
        conn = slot.conn
        lane = slot.lane
        if (
            lane is None
            or lane.conn is not conn
            or self.reactor.seconds() - slot.last_used > self.pool.PING_AFTER_IDLE
            or getattr(conn, "_dbslayer_limit", None) != run.limit
            or getattr(conn, "_dbslayer_read_only", False) is not run.read_only
        ):
            # New, idle for long, or the session needs setting: a pool thread does it.
            self.pool.run_in_thread(slot, self.backend._execute, (request, run)).chainDeferred(d)
            return
        import MySQLdb

        try:
            if request.params is None:
                sql = request.sql.encode(conn.encoding)  # type: ignore[union-attr]
            else:  # (the thread path binds with the same function: the same 400 either way)
                sql = bind_params(conn.cursor(), request.sql or "", request.params, self.name)
        except ParamsMismatch as e:
            # (given back on the next turn: a queue of such requests must not recurse)
            self.reactor.callLater(0, self.pool.give_back, slot)
            d.errback(e)
            return
        except UnicodeEncodeError as e:
            self.reactor.callLater(0, self.pool.give_back, slot)
            d.errback(
                ParamsMismatch(
                    f"SQL cannot be sent in the connection's charset ({e})", server=self.name
                )
            )
            return
        run.thread_id = conn.thread_id()
        try:
            conn.send_query(sql)
        except MySQLdb.Error as e:
            self.drop(slot)
            self.pool.give_back(slot)
            d.errback(self.backend._connection_error(e, _mysql_errno(e), not_sent=True))
            return
        lane.pending = (request, run, d, self.reactor.seconds())
        run.lane, run.lane_slot = self, slot
        self.busy += 1
        if self._watchdog is None:
            self._watchdog = self.reactor.callLater(1.0, self._check_overdue)

    def readable(self, lane: LaneSocket) -> None:
        """The reactor saw the connection readable: an answer arrived (or the server left)."""
        slot = lane.slot
        pending = lane.pending
        if pending is None:
            self.drop(slot)  # idle, and readable: the server closed it
            return
        try:
            data = lane.sock.recv(self.peek_bytes, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # the driver's read reports the error
        lane.pending = None
        self.busy -= 1
        request, run, d, _ = pending
        run.lane = run.lane_slot = None
        if run.wire_json and data:
            max_rows = run.max_rows
            rendered = json_rows(data, -1 if max_rows is None else max_rows)
            if rendered is not None and self._rendered(slot, lane, run, d, data, rendered):
                return
        try:
            state, status = answer_state(data) if data else (COMPLETE, None)
        except Exception:  # a shape the walk trips on: the driver, in a thread, will not
            log.failure("walking an answer in the reactor lane of {name}", name=self.name)
            state, status = UNSUPPORTED, None
        if state is not COMPLETE or (status is None and len(data) > 4 and data[4] != 0xFF):
            # Not all there (or not a shape the walk follows): a pool thread reads it. So is
            # a result set that ends in an error (complete, no status, and not a lone ERR
            # packet): the driver's whole read here would drop its rows, while the thread
            # keeps those of the chunks read before the error, as a stream and every other
            # answer does (gateway.backends.row_chunks).
            self.pool.run_in_thread(
                slot, self.backend._finish_sent, (request, run), check=False
            ).chainDeferred(d)
            return
        self._read(slot, request, run, d, status)

    def _read(
        self, slot: Slot, request: Request, run: Run, d: Deferred[Answer], status: int | None
    ) -> None:
        """Read a whole answer (all in the socket buffer) and fire the request's Deferred;
        ``status`` is the server status the answer ends with (None for an error)."""
        import MySQLdb

        conn = slot.conn
        answer = Answer(server=self.name)
        try:
            conn.read_query_result()
            result = conn.store_result()
            if result is None:
                answer.results.append(Update(max(conn.affected_rows(), 0), conn.insert_id() or 0))
                if (
                    status is not None
                    and status & SERVER_SESSION_STATE_CHANGED
                    and not self.backend.track_position(conn, answer)
                ):
                    # Flagged for the position after a write only (gateway.position): in the
                    # answer as GTID, and no reset.
                    status &= ~SERVER_SESSION_STATE_CHANGED
            else:
                rows = result.fetch_row(0)
                max_rows = run.max_rows
                cut = max_rows is not None and len(rows) > max_rows
                if cut:
                    rows = rows[:max_rows]
                answer.results.append(result_set(result.describe(), rows, truncated=cut))
        except Exception as e:
            if not isinstance(e, MySQLdb.Error):  # (a bug: the answer may be half read)
                log.failure("reading an answer in the reactor lane of {name}", name=self.name)
                e = MySQLdb.OperationalError(2013, "internal error while reading the answer")
            errno = _mysql_errno(e)
            if errno is None or is_client_errno(errno):
                self.drop(slot)
                slot.last_used = self.reactor.seconds()
                self.pool.give_back(slot)
                run.thread_id = None
                d.errback(self.backend._connection_error(e, errno, not_sent=False))
                return
            answer.error = sql_error(e, errno, conn)
        self._answered(slot, run, d, answer, status)

    def _rendered(
        self,
        slot: Slot,
        lane: LaneSocket,
        run: Run,
        d: Deferred[Answer],
        data: bytes,
        rendered: Rendered,
    ) -> bool:
        """Answer with a result set rendered from the wire (gateway.wirejson): take its bytes
        off the socket (the driver never reads them: it has nothing pending after
        ``send_query``, and its next command starts afresh), and fire ``d``. False, with
        nothing taken, when the column names are not the driver's (not UTF-8)."""
        end, status, defs_start, defs_end, rows_json, count = rendered
        described = header_and_types(data[defs_start:defs_end])
        if described is None:
            return False
        try:
            left = end
            while left > 0:  # (all there: it was peeked)
                chunk = lane.sock.recv(left)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                left -= len(chunk)
        except OSError as e:
            self._fail_lost(slot, d, f"the connection's socket failed: {e}")
            return True
        max_rows = run.max_rows
        answer = Answer(server=self.name)
        header, types = described
        answer.results.append(
            ResultSet(
                header=list(header),
                types=list(types),
                rows=orjson.Fragment(rows_json),  # type: ignore[arg-type]
                truncated=max_rows is not None and count > max_rows,
            )
        )
        self._answered(slot, run, d, answer, status)
        return True

    def _answered(
        self, slot: Slot, run: Run, d: Deferred[Answer], answer: Answer, status: int | None
    ) -> None:
        """The answer is read: give the slot back (reset first if the session changed) and
        fire ``d``."""
        conn = slot.conn
        slot.last_used = self.reactor.seconds()
        run.thread_id = None
        self.reads += 1
        if conn._dbslayer_read_account or (
            status is not None and session_changed(status, False, may_leave_state=False)
        ):
            # The session is not as new: a pool thread resets it before the slot serves anyone
            # else; the answer need not wait. (No status: the statement failed, an ERR packet,
            # and a failed statement changes nothing the status before it did not show.) A
            # read account's session is reset after every request: its SELECT may run stored
            # code through a definer's view, and a user-level lock or user variable taken
            # there is flagged by nothing. (The reset keeps the gateway's own settings, so the
            # next request still runs here.)
            if transaction_open(status):
                answer.extras["ROLLED_BACK"] = True
            self._release(slot, run, reset=True)
        else:
            self._release(slot, run, reset=False)
        if timed_out(run, answer):
            d.errback(run.timeout_error(self.name, answer.error.errno if answer.error else None))
        else:
            d.callback(answer)

    def _release(self, slot: Slot, run: Run, reset: bool) -> None:
        """Give the slot back (after a pool thread reset its session, with ``reset``), once no
        KILL QUERY aimed at ``run`` is in flight: the connection serves nobody else while one
        may still land on it."""
        if run.killing is not None:
            run.killing.addBoth(lambda _: self._release(slot, run, reset))
            return
        if reset:
            self.pool.run_in_thread(slot, self.backend.reset_session, (), check=False).addErrback(
                lambda f: log.failure("resetting a session of {name}", f, name=self.name)
            )
        else:
            self.pool.give_back(slot)

    def abort(self, slot: Slot, run: Run) -> bool:
        """Fail ``run`` as a lost connection if it still waits for its answer on ``slot``
        (the server is frozen: see Executor); False when it does not."""
        lane = slot.lane
        if lane is None or lane.pending is None or lane.pending[1] is not run:
            return False
        run.lane = run.lane_slot = None
        self._fail_lost(slot, lane.pending[2], "no answer from the server, nor to KILL QUERY")
        return True

    # --------------------------------------------------------------- connections

    def attach(self, slot: Slot) -> None:
        """Watch the slot's connection (after a pool thread used or opened it)."""
        conn = slot.conn
        lane = slot.lane
        if lane is not None and lane.conn is not conn:
            self._forget(slot)
            lane = None
        if conn is None:
            return
        if lane is None:
            try:
                sock = socket.socket(fileno=os.dup(conn.fileno()))
            except OSError:
                return  # the lane stays off for this connection
            sock.setblocking(False)
            lane = slot.lane = LaneSocket(self, slot, conn, sock)
        if not lane.watched:
            lane.watched = True
            self.reactor.addReader(lane)

    def detach(self, slot: Slot) -> None:
        """Stop watching the slot's connection (a pool thread is about to use it)."""
        lane = slot.lane
        if lane is not None and lane.watched:
            lane.watched = False
            self.reactor.removeReader(lane)

    def lost(self, slot: Slot) -> None:
        """The reactor gave up on the socket: fail the request waiting on it, if any."""
        lane = slot.lane
        if lane is not None and lane.pending is not None:
            self._fail_lost(slot, lane.pending[2], "the connection's socket failed")
        else:
            self.drop(slot)

    def _fail_lost(self, slot: Slot, d: Deferred[Answer], reason: str) -> None:
        """Drop the slot's connection, give the slot back, and fail ``d`` as a connection lost
        while the statement ran (it may or may not have been applied)."""
        self.drop(slot)
        self.pool.give_back(slot)
        d.errback(self.backend._connection_error(RuntimeError(2013, reason), 2013, not_sent=False))

    def drop(self, slot: Slot) -> None:
        """Close the slot's connection (broken, closed by the server, or overdue)."""
        self._forget(slot)
        self.pool.discard(slot)

    def _forget(self, slot: Slot) -> None:
        lane, slot.lane = slot.lane, None
        if lane is None:
            return
        if lane.watched:
            lane.watched = False
            self.reactor.removeReader(lane)
        if lane.pending is not None:
            self.busy -= 1
            lane.pending = None
        lane.sock.close()

    def close(self) -> None:
        """Stop the overdue check (the pool closes the connections)."""
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _check_overdue(self) -> None:
        """Fail requests whose answer did not come within read_timeout (a hung server or
        network), as the driver's read timeout does in a pool thread."""
        self._watchdog = None
        now = self.reactor.seconds()
        for slot in list(self.pool._slots):
            lane = slot.lane
            if lane is None or lane.pending is None:
                continue
            _, _, d, sent = lane.pending
            if now - sent >= self.read_timeout:
                self._fail_lost(slot, d, f"no answer within {self.read_timeout:g} s")
        if self.busy:
            self._watchdog = self.reactor.callLater(1.0, self._check_overdue)
