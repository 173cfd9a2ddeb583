"""The executor: from a parsed Request to an Answer, on the backend the mode picks.

Backend choice is a pure decision (:func:`choose_backend`); running it is the backend's job.
Modes: ``pool`` (every backend equal, taken in turn), ``primary-replica`` (the primary; the
read/write split arrives with the failover work) and ``named`` (the client's ``SERVER``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed

from gateway.backends import Backend
from gateway.request import HELP, Request, RequestError
from gateway.results import Answer


class Executor:
    """Runs requests on a fixed set of backends."""

    def __init__(self, backends: Sequence[Backend], mode: str) -> None:
        if not backends:
            raise ValueError("an executor needs at least one backend")
        self.backends = list(backends)
        self.by_name = {b.name: b for b in self.backends}
        self.mode = mode
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
        d = backend.execute(request)
        d.addCallback(_decorate, request)
        return d

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
    return next(turns)


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
