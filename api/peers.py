"""Several worker processes, one server: each worker serves its statistics on a UNIX socket in
the server's run directory, and the worker that answers ``/stats`` or ``/metrics`` gathers the
others' there, so the answer covers the whole server, not the worker that happened to answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from stats.core import GatewayStats

log = Logger()


class _Answer(Protocol):
    """Server side: write this worker's exported statistics, then close."""

    def connectionMade(self) -> None:
        stats: GatewayStats = self.factory.stats  # type: ignore[attr-defined]
        transport: Any = self.transport
        transport.write(orjson.dumps(stats.export()))
        transport.loseConnection()


class _Collect(Protocol):
    """Client side: read everything until the peer closes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: Deferred[dict[str, Any]] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        try:
            self.done.callback(orjson.loads(b"".join(self.chunks)))
        except orjson.JSONDecodeError as e:
            self.done.errback(e)


class PeerStats(Service):
    """This worker's statistics socket, and the gathering of the other workers'."""

    def __init__(self, run_dir: str, stats: GatewayStats, reactor: Any, timeout: float = 1.0):
        self.setName("peers")
        self.run_dir = Path(run_dir)
        self.stats = stats
        self.reactor = reactor
        self.timeout = timeout
        self.path = self.run_dir / f"worker-{os.getpid()}.sock"
        self.listening: Any = None

    def startService(self) -> None:
        factory = Factory.forProtocol(_Answer)
        factory.noisy = False
        factory.stats = self.stats  # type: ignore[attr-defined]
        self.path.unlink(missing_ok=True)
        self.listening = self.reactor.listenUNIX(str(self.path), factory, mode=0o600)
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        if self.listening is not None:
            listening, self.listening = self.listening, None
            return listening.stopListening()
        return None

    def gather(self) -> Deferred[list[dict[str, Any]]]:
        """The other live workers' exported statistics (a worker that does not answer within
        the timeout, e.g. one that just died, is left out)."""
        peers = sorted(p for p in self.run_dir.glob("worker-*.sock") if p != self.path)
        asks = [self._ask(path) for path in peers]
        d = DeferredList(asks, consumeErrors=True)
        return d.addCallback(lambda results: [value for ok, value in results if ok])

    def _ask(self, path: Path) -> Deferred[dict[str, Any]]:
        endpoint = UNIXClientEndpoint(self.reactor, str(path), timeout=self.timeout)
        protocol = _Collect()
        factory = Factory.forProtocol(lambda: protocol)
        factory.noisy = False  # one of these per /stats request: keep the log quiet
        connected = endpoint.connect(factory)
        connected.addCallback(lambda _: protocol.done)
        connected.addTimeout(self.timeout, self.reactor)
        return connected
