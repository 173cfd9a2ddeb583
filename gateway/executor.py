"""The executor: from a parsed Request to an Answer, on the backend the mode picks.

Backend choice is a pure decision (:func:`choose_backend`); running it is the backend's job.
Modes: ``pool`` (every backend equal, taken in turn), ``primary-replica`` (the primary; the
read/write split arrives with the failover work) and ``named`` (the client's ``SERVER``).

The executor also keeps each backend's state as seen by its requests and checks (``unknown``
until first used, then ``up`` or ``down``) and reports every backend request to the
statistics.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.backends import Backend, BackendUnavailable, ConnectionLost
from gateway.request import HELP, Request, RequestError
from gateway.results import Answer
from stats.core import GatewayStats

log = Logger()


class Executor:
    """Runs requests on a fixed set of backends."""

    def __init__(
        self,
        backends: Sequence[Backend],
        mode: str,
        stats: GatewayStats | None = None,
        clock: Any = None,
    ) -> None:
        if not backends:
            raise ValueError("an executor needs at least one backend")
        self.backends = list(backends)
        self.by_name = {b.name: b for b in self.backends}
        self.mode = mode
        self.stats = stats
        self.clock = clock
        self.states = {b.name: "unknown" for b in self.backends}
        if mode == "primary-replica":
            primaries = [b for b in self.backends if b.spec.role == "primary"]
            self._turns = itertools.cycle(primaries or self.backends)
        else:
            self._turns = itertools.cycle(self.backends)

    def execute(self, request: Request) -> Deferred[Answer]:
        """Run a request; the Deferred fails with RequestError or a GatewayError."""
        try:
            backend = choose_backend(request, self.mode, self.by_name, self._turns)
        except RequestError as e:
            return _fail(e)
        if backend is None:
            return succeed(_decorate(Answer(), request))
        started = self.clock.seconds() if self.clock is not None else 0.0
        d = backend.execute(request)
        d.addBoth(self._observe, backend.name, started)
        d.addCallback(_decorate, request)
        return d

    def _observe(self, result: Any, name: str, started: float) -> Any:
        failed = isinstance(result, Failure)
        if failed:
            if result.check(BackendUnavailable):
                self._set_state(name, "down")
            elif result.check(ConnectionLost):
                pass  # the server was reached; the next ping decides
        else:
            self._set_state(name, "up")
        if self.stats is not None and self.clock is not None:
            real_failure = failed and result.check(BackendUnavailable, ConnectionLost) is not None
            self.stats.record_backend(
                name,
                duration=self.clock.seconds() - started,
                failed=real_failure,
                sql_error=not failed and result.error is not None,
            )
        return result

    def _set_state(self, name: str, state: str) -> None:
        previous = self.states.get(name)
        if previous == state:
            return
        self.states[name] = state
        if previous != "unknown" or state == "down":
            log.info(
                "backend {name} is {state} (was {previous})",
                name=name,
                state=state,
                previous=previous,
            )
            if self.stats is not None:
                self.stats.record_state_change(name, state)

    def check(self) -> Deferred[dict[str, str]]:
        """Ping every backend now; fires with each one's state."""
        names = [b.name for b in self.backends]
        checks = [b.pool.check() for b in self.backends]

        def states(results: list[tuple[bool, bool]]) -> dict[str, str]:
            for name, (_, ok) in zip(names, results):
                self._set_state(name, "up" if ok else "down")
            return dict(self.states)

        return DeferredList(checks).addCallback(states)

    def backend_info(self) -> dict[str, dict[str, Any]]:
        """Live facts per backend, for /stats and /metrics."""
        info: dict[str, dict[str, Any]] = {}
        for b in self.backends:
            pool = b.pool.info()
            info[b.name] = {
                "state": self.states[b.name],
                "driver": b.spec.driver,
                "role": b.spec.role,
                "weight": b.spec.weight,
                "in_flight": pool["in_use"],
                "pool": pool,
            }
        return info

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def choose_backend(
    request: Request, mode: str, by_name: dict[str, Backend], turns: Any
) -> Backend | None:
    """The backend that runs a request, or None when it needs no database."""
    if request.server is not None and mode != "named":
        raise RequestError(
            "SERVER picks a backend only where backends are named (start the gateway with "
            '--named or mode = "named"); leave it out'
        )
    if not request.needs_backend and request.server is None:
        return None
    if mode == "named":
        names = ", ".join(sorted(by_name))
        if request.server is None:
            raise RequestError(f"SERVER is required where backends are named; one of: {names}")
        backend = by_name.get(request.server)
        if backend is None:
            raise RequestError(f"unknown SERVER {request.server!r}; one of: {names}")
        return backend if request.needs_backend else None
    return next(turns)  # type: ignore[no-any-return]


def _decorate(answer: Answer, request: Request) -> Answer:
    if request.help:
        answer.extras["SLAYER_HELP"] = HELP
    if request.debug_return_input:
        answer.extras["SLAYER_DEBUG_RETURN_INPUT"] = dict(request.raw)
    return answer


def _fail(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d
