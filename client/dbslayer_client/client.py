"""`Client`: the synchronous client, standard library only, over one kept-alive connection.

Keep-alive. `Client` keeps one `http.client.HTTPConnection` open. Before reusing it, it checks
that the gateway has not closed it while idle (a restart, an idle timeout) and reconnects if so.
A request is sent a second time only when that cannot run anything twice: it could not be
written completely (the gateway never had a whole request to run), or the kept-alive
connection broke after it was sent and the request has no SQL (``info``, ``stats``) or the
caller passed ``idempotent=True``. Otherwise `ConnectionLost` says it may have been applied.
"""

from __future__ import annotations

import http.client
import select
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from dbslayer_client.results import Results
from dbslayer_client.wire import (
    DEFAULT_URL,
    Endpoint,
    Position,
    answer_timeout,
    build_query,
    decode_answer,
    decode_json,
    info_of,
    lost,
    remembered,
    timed_out,
    unreachable,
)

__all__ = ["Client"]


class Client:
    """Synchronous client over one kept-alive HTTP connection (standard library only).

    ``token`` alone is sent as ``Authorization: Bearer``; ``user`` and ``token`` as HTTP Basic.
    ``timeout`` bounds the connect and each wait for the gateway, in seconds. A Client may be
    shared between threads; its requests then take turns on the one connection.

    ``read_your_writes=True``: every query after a write is sent with that write's position
    (``AFTER``), so it sees the write whichever backend answers it (a replica that has applied
    it, else the primary; causal reads on Galera). Such reads never come from the cache."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        user: str | None = None,
        timeout: float = 30.0,
        read_your_writes: bool = False,
    ) -> None:
        self._endpoint = Endpoint(url, token, user, timeout)
        self.url = self._endpoint.url
        self.timeout = self._endpoint.timeout
        #: ``read_your_writes=True``: the position of this client's writes, sent as AFTER
        #: with every later query (see `Position`); None otherwise.
        self.position: Position | None = Position() if read_your_writes else None
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        #: TCP connections opened to the gateway so far (1 while keep-alive holds).
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; a later request opens a new one."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        server: str | None = None,
        timeout: float | None = None,
        cache: float | None = None,
        rollback_on_error: bool = False,
        idempotent: bool = False,
        after: str | None = None,
    ) -> Results:
        """Run one or more statements (``;``-separated); ``params`` fill ``%s`` or
        ``%(name)s``. ``timeout`` lowers the statement time limit (seconds), ``cache``
        accepts a cached answer up to that many seconds old, ``after`` runs it where that
        position (a write's ``results.info["GTID"]``) has been applied (with
        ``read_your_writes``, the client's own position is sent unless ``after`` is given).
        Raises SQLError when a statement fails, with the results of those before it.

        ``idempotent=True`` is the caller's word that running the statements twice does no
        harm (a SELECT): then, if a kept-alive connection breaks after the request was sent,
        it is sent once more on a new connection. Without it the client never sends SQL twice
        and raises ConnectionLost instead (it reads no SQL to guess)."""
        body = build_query(
            sql,
            params,
            server=server,
            timeout=timeout,
            cache=cache,
            rollback_on_error=rollback_on_error,
            after=after if after is not None or self.position is None else self.position.value,
        )
        answer = self._exchange(
            "POST", "/db", body, idempotent, answer_timeout(self.timeout, timeout)
        )
        return remembered(self.position, answer)

    def info(self, *, server: str | None = None) -> dict[str, Any]:
        """The backend's info flags: STAT, SERVER_VERSION, CLIENT_INFO, HOST_INFO,
        CLIENT_VERSION and SERVER_NAME."""
        body = self._endpoint.info_body(server)
        return info_of(decode_answer(*self._exchange("POST", "/db", body, True, self.timeout)))

    def stats(self) -> dict[str, Any]:
        """The gateway's ``/stats``."""
        stats: dict[str, Any] = decode_json(
            *self._exchange("GET", "/stats", None, True, self.timeout)
        )
        return stats

    def _exchange(
        self, method: str, path: str, body: bytes | None, idempotent: bool, read_timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One request and its answer. It is sent a second time only when it provably never
        reached the gateway (it could not be written completely), or when the kept-alive
        connection broke after sending and the request is ``idempotent`` (no SQL, or the
        caller said so)."""
        headers = dict(self._endpoint.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        target = self._endpoint.prefix + path
        with self._lock:
            for attempt in (1, 2):
                conn, reused = self._connect()
                assert conn.sock is not None
                conn.sock.settimeout(read_timeout)
                try:
                    conn.request(method, target, body=body, headers=headers)
                except OSError as e:
                    # Not written completely: the gateway has no whole request to run.
                    self._drop()
                    if attempt == 1:
                        continue
                    raise unreachable(self.url, e) from e
                try:
                    response = conn.getresponse()
                    data = response.read()
                except TimeoutError as e:
                    self._drop()
                    raise timed_out(self.url, read_timeout) from e
                except (OSError, http.client.HTTPException) as e:
                    self._drop()
                    if attempt == 1 and reused and idempotent:
                        continue  # a kept-alive connection the gateway dropped: harmless again
                    raise lost(self.url, e) from e
                if response.will_close:
                    self._drop()
                return response.status, dict(response.getheaders()), data
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> tuple[http.client.HTTPConnection, bool]:
        """The open connection and whether it served a request before; a new one when the
        gateway closed it while it was idle."""
        conn = self._connection
        if conn is not None and conn.sock is not None and not _closed_by_peer(conn.sock):
            return conn, True
        self._drop()
        endpoint = self._endpoint
        factory = (
            http.client.HTTPSConnection
            if endpoint.scheme == "https"
            else http.client.HTTPConnection
        )
        conn = factory(endpoint.host, endpoint.port, timeout=endpoint.timeout)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise unreachable(self.url, e) from e
        self._connection = conn
        self.connections_opened += 1
        return conn, False

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _closed_by_peer(sock: Any) -> bool:
    """True when an idle connection is readable: the gateway closed it (or sent something
    unasked), so it cannot carry another request."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
