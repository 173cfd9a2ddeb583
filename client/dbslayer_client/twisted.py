"""`TwistedClient`: the same client on Twisted and treq (``pip install 'dbslayer-client[twisted]'``).

Every method returns a Deferred firing with what `dbslayer_client.Client` returns, or failing
with the same exceptions, decoded by the same `decode_answer`. The retry rule is the client's:
a request is sent a second time only when it was not sent completely, or when it has no SQL
(``info``, ``stats``) or the caller passed ``idempotent=True``.

Example::

    from twisted.internet import defer, task
    from dbslayer_client.twisted import TwistedClient

    async def main(reactor):
        db = TwistedClient("http://127.0.0.1:9090", reactor=reactor)
        print((await db.query("SELECT COUNT(*) FROM users")).rows)
        await db.close()

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar, cast

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestNotSent,
    RequestTransmissionFailed,
)
from twisted.web.iweb import IAgent

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

__all__ = ["TwistedClient"]

T = TypeVar("T")
_Answer = tuple[int, dict[str, str], bytes]


class TwistedClient:
    """The client on Twisted and treq. Connections are kept alive in ``pool`` (a persistent
    ``HTTPConnectionPool`` of its own unless given); ``reactor`` defaults to the global one."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        user: str | None = None,
        timeout: float = 30.0,
        *,
        reactor: Any = None,
        pool: Any = None,
        read_your_writes: bool = False,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._endpoint = Endpoint(url, token, user, timeout)
        self.url = self._endpoint.url
        self.timeout = self._endpoint.timeout
        #: As `Client.position` (``read_your_writes=True``), None otherwise.
        self.position: Position | None = Position() if read_your_writes else None
        self._reactor = reactor
        self._own_pool = pool is None
        self.pool = pool if pool is not None else HTTPConnectionPool(reactor, persistent=True)
        agent = cast(IAgent, Agent(reactor, pool=self.pool))  # Agent implements IAgent
        self._http = HTTPClient(agent)

    def __repr__(self) -> str:
        return f"TwistedClient({self.url!r})"

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
    ) -> Deferred[Results]:
        """As `Client.query`, as a Deferred."""
        position = self.position
        try:
            body = build_query(
                sql,
                params,
                server=server,
                timeout=timeout,
                cache=cache,
                rollback_on_error=rollback_on_error,
                after=after if after is not None or position is None else position.value,
            )
        except Exception:
            return fail()
        exchange = self._exchange(
            "POST", "/db", body, idempotent, answer_timeout(self.timeout, timeout)
        )
        return Deferred.fromCoroutine(_then(exchange, lambda a: remembered(position, a)))

    def info(self, *, server: str | None = None) -> Deferred[dict[str, Any]]:
        """As `Client.info`, as a Deferred."""
        exchange = self._exchange(
            "POST", "/db", self._endpoint.info_body(server), True, self.timeout
        )
        return Deferred.fromCoroutine(_then(exchange, lambda a: info_of(decode_answer(*a))))

    def stats(self) -> Deferred[dict[str, Any]]:
        """As `Client.stats`, as a Deferred."""
        exchange = self._exchange("GET", "/stats", None, True, self.timeout)
        return Deferred.fromCoroutine(_then(exchange, lambda a: decode_json(*a)))

    def close(self) -> Deferred[None]:
        """Close the kept-alive connections (of the pool this client made)."""
        if self._own_pool:
            closed: Deferred[None] = self.pool.closeCachedConnections()
            return closed
        return succeed(None)

    async def _exchange(
        self, method: str, path: str, body: bytes | None, idempotent: bool, read_timeout: float
    ) -> _Answer:
        headers: dict[bytes | str, bytes | str] = {k: v for k, v in self._endpoint.headers.items()}
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self.url + path
        for attempt in (1, 2):
            d = self._http.request(method, url, data=body, headers=headers, allow_redirects=False)
            d.addCallback(_with_content)
            d.addTimeout(read_timeout, self._reactor)
            try:
                response, data = await d
            except DeferredTimeout as e:
                raise timed_out(self.url, read_timeout) from e
            except ConnectError as e:
                raise unreachable(self.url, e) from e
            except (RequestNotSent, RequestTransmissionFailed) as e:
                if attempt == 1:
                    continue  # not written completely: the gateway has no whole request to run
                raise unreachable(self.url, e) from e
            except Exception as e:
                # ResponseNeverReceived, ResponseFailed...: sent, then the connection broke.
                if attempt == 1 and idempotent:
                    continue
                raise lost(self.url, e) from e
            return response.code, _twisted_headers(response.headers), data
        raise AssertionError("unreachable")  # pragma: no cover


async def _then(exchange: Coroutine[Any, Any, _Answer], decode: Callable[[_Answer], T]) -> T:
    return decode(await exchange)


def _with_content(response: Any) -> Any:
    d = treq.content(response)
    d.addCallback(lambda data: (response, data))
    return d


def _twisted_headers(headers: Any) -> dict[str, str]:
    return {
        name.decode("latin-1"): values[-1].decode("latin-1")
        for name, values in headers.getAllRawHeaders()
        if values
    }
