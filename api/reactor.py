"""The reactor ``dbslayer serve`` runs on: Twisted's epoll reactor, with a leaner dispatch.

Twisted's ``EPollReactor.doPoll`` hands every event to ``log.callWithLogger``, which sets up the
legacy logging context (the ``system`` of old-style log lines: a dict copy and four Python calls
per event) before the selectable's ``doRead``. A ``/db`` request makes two events (its HTTP read
and its answer from MySQL), and the gateway logs with twisted.logger, which does not read that
context. This reactor calls the same ``_doReadOrWrite`` directly; everything else is Twisted's.
Under ``twistd`` the reactor is twistd's choice (``--reactor``), and the gateway runs the same.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.epollreactor import EPollReactor


class GatewayReactor(EPollReactor):  # type: ignore[misc]
    """EPollReactor whose events go straight to ``_doReadOrWrite``."""

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1  # (wait indefinitely)
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:  # (removed by an earlier event of this poll)
                dispatch(selectable, fd, event)

    doIteration = doPoll


def install() -> Any:
    """Install :class:`GatewayReactor` as the global reactor, unless one is installed already
    (then that one is kept); returns the global reactor."""
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor

        installReactor(GatewayReactor())
    from twisted.internet import reactor

    return reactor
