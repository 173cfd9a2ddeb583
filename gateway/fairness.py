"""Fairness between users: how many requests one user may have in flight (no I/O here).

One user's slow queries must not take every pooled connection while another user's
``SELECT 1`` waits for one. So each authenticated user may have at most ``limit`` requests in
flight in this process; past it a request is refused at once with 429 and ``Retry-After``,
before its SQL is read or sent. The default limit is the pool size less one (at least 1), so
one user always leaves a connection of every pool (each backend's main and read pools) to the
others; the limit counts all of a user's requests, over every backend, so it bounds the
connections a user holds on any one backend too. Like the pools, the count is per worker
process.

A request counts from the moment its user is known until the executor's work for it is done:
its answer written (a streamed one included), or its failure. A client that goes away does not
end the count early: its statement still holds a connection until it ends (a streamed answer
stops at once; any other stops at its time limit at the latest). Each count is given back
exactly once, whatever the work does (fails, raises, is cancelled): see :meth:`InFlightPerUser.run`.
Without authentication there is no user to tell apart, and ``--max-in-flight`` is the only
limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred, fail

from gateway.backends import GatewayError

__all__ = ["InFlightPerUser", "UserLimitExceeded", "user_limit"]

T = TypeVar("T")


class UserLimitExceeded(GatewayError):
    """A user has as many requests in flight as it may (HTTP 429, with Retry-After)."""

    status = 429


def user_limit(configured: int, pool_max: int) -> int:
    """The limit in effect: ``configured``, or when it is 0 the pool size less one (at least
    1: with one connection per pool nothing can be left to the others)."""
    if configured > 0:
        return configured
    return max(1, pool_max - 1)


class InFlightPerUser:
    """The count of requests in flight per user name, against one limit.

    Only users with requests in flight are kept, so the table is never bigger than the
    requests in flight."""

    def __init__(self, limit: int, *, on_refused: Callable[[str], None] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"the per-user limit must be at least 1, got {limit}")
        self.limit = limit
        #: Called with the user's name when a request is refused (statistics).
        self.on_refused = on_refused
        self._counts: dict[str, int] = {}

    def count(self, name: str) -> int:
        """How many requests ``name`` has in flight."""
        return self._counts.get(name, 0)

    @property
    def total(self) -> int:
        """Requests in flight, all users together."""
        return sum(self._counts.values())

    @property
    def users(self) -> int:
        """How many users have requests in flight."""
        return len(self._counts)

    def run(self, name: str, work: Callable[[], Deferred[T]]) -> Deferred[T]:
        """``work()``, counted for ``name`` until its Deferred fires; a failed
        :class:`UserLimitExceeded` without calling it when ``name`` is at the limit.

        The count is given back by the Deferred's first callback, before the caller's, however
        it ends: a result, a failure, an exception raised by ``work`` itself, a cancellation."""
        held = self._counts.get(name, 0)
        if held >= self.limit:
            if self.on_refused is not None:
                self.on_refused(name)
            return fail(
                UserLimitExceeded(
                    f"user {name} has {held} requests in flight, the most one user may have "
                    f"(max_user_in_flight = {self.limit}); retry when one has finished",
                    retry_after=1,
                )
            )
        self._counts[name] = held + 1
        d: Deferred[T] = defer.maybeDeferred(work)
        return d.addBoth(self._release, name)

    def _release(self, result: Any, name: str) -> Any:
        left = self._counts.get(name, 0) - 1
        if left > 0:
            self._counts[name] = left
        else:
            self._counts.pop(name, None)
        return result
