"""Measurement for the gateway, with no HTTP and no database code.

Counters, rolling windows, latency histograms, request/error journals, secret redaction and the
Prometheus exposition. The clock is injected everywhere (anything with ``seconds()``, such as
Twisted's reactor or ``twisted.internet.task.Clock``); nothing here starts a timer: every window
is brought up to date lazily from the clock when it is written or read.
"""

from __future__ import annotations

from typing import Protocol


class SecondsClock(Protocol):
    """The one thing ``stats`` needs from a clock (Twisted's ``IReactorTime.seconds``)."""

    def seconds(self) -> float:
        """The current time as epoch seconds."""
        ...
