"""What happens to a finished request: statistics and the access log.

Every finished request is reported to :class:`stats.core.GatewayStats` (which redacts secrets)
and, when configured, written to the access log in common log format with the time to serve
in microseconds appended, as the reference did. Requests the channel refused before they were
parsed (413/414/400) are reported too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import IO, Any

from gateway.sql import read_sql
from stats.core import GatewayStats
from stats.redact import excerpt, secret_statements, shown_error, shown_sql, shown_target

#: Request URIs up to this length are kept as received and decoded only when the journal is
#: read; a longer one is decoded and cut at once (a journal keeps 100 of them).
LAZY_LINE_MAX = 16 * 1024

_ENDPOINTS = {
    b"db": "db",
    b"dbform": "dbform",
    b"stats": "stats",
    b"metrics": "metrics",
    b"health": "health",
    b"ready": "ready",
    b"shutdown": "shutdown",
}
#: The paths of nearly every request, labelled at once.
_PATHS = {b"/" + name: label for name, label in _ENDPOINTS.items()}


def endpoint_of(path: bytes) -> str:
    """A short label for statistics: db, dbform, an admin route, or other."""
    label = _PATHS.get(path)
    if label is not None:
        return label
    first = path.lstrip(b"/").split(b"/", 1)[0].split(b"?", 1)[0]
    return _ENDPOINTS.get(first, "other")


def request_line(method: bytes, uri: bytes, version: bytes, facts: Any = None) -> str:
    """The request line as a reader wants it: percent- and plus-decoded, with the statements
    that may hold a secret shown as their kind and secret-named fields masked
    (:func:`stats.redact.shown_target`; ``facts``: the request's SQL facts if the executor
    read them); the statistics redact what else looks like a secret. The bytes are decoded
    as UTF-8 once unquoted, raw or %-encoded alike; what is not UTF-8 shows as U+FFFD."""
    text = shown_target(uri, facts, read_sql)
    return f"{method.decode('latin-1')} {text} {version.decode('latin-1')}"


#: Characters an access-log line shows escaped: C0 and C1 controls, DEL, and the Unicode line
#: and paragraph separators. A decoded ``%0A`` would otherwise end the line and let a client
#: write a forged one; an escape sequence would drive the terminal that shows the log.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\x0a``): one log line, inert."""
    return _UNPRINTABLE.sub(_escaped, text)


#: A request of more statements than this has its error message cut without looking at them
#: (the check runs in the reactor thread for every error; fail closed).
_SECRET_CHECK_STATEMENTS = 64


def _may_hold_secret(facts: Any) -> bool:
    """True when a statement of ``facts`` may hold a secret (bounded work: see above)."""
    if len(facts.statements) > _SECRET_CHECK_STATEMENTS:
        return True
    return any(secret_statements(facts))


class RequestRecorder:
    """Reports finished and refused requests to the statistics and the access log."""

    def __init__(self, stats: GatewayStats, clock: Any, access_log: IO[str] | None = None) -> None:
        self.stats = stats
        self.clock = clock
        self.access_log = access_log

    def finished(self, request: Any) -> None:
        now = self.clock.seconds()
        started = getattr(request, "started", 0.0) or now
        uri = request.uri
        facts = _facts_of(request)
        line: str | Callable[[], str]
        if self.access_log is not None or len(uri) > LAZY_LINE_MAX:
            line = request_line(request.method, uri, request.clientproto, facts)
        else:  # decoded (and redacted) only if the journal is read
            line = partial(request_line, request.method, uri, request.clientproto, facts)
        error = getattr(request, "error_message", None)
        if error is not None and facts is not None and _may_hold_secret(facts):
            error = shown_error(error)  # the server's message may quote the statement
        peer = getattr(request.getClientAddress(), "host", "-")
        self.stats.record_request(
            endpoint=endpoint_of(request.path),
            client_ip=peer,
            request_line=line,
            status=request.code,
            bytes_sent=request.sentLength,
            started=started,
            duration=now - started,
            error=error,
            sql_error=getattr(request, "sql_error", False),
            kinds=None if facts is None else facts.kinds,
            sql=_body_sql(request, facts) if error is not None else None,
        )
        if self.access_log is not None:
            assert isinstance(line, str)
            self._access(peer, line, request.code, request.sentLength, now - started)

    def refused(self, channel: Any, status: int, message: str) -> None:
        now = self.clock.seconds()
        peer = getattr(channel.transport.getPeer(), "host", "-")
        line = "(request refused before it was read)"
        self.stats.record_request(
            endpoint="other",
            client_ip=peer,
            request_line=line,
            status=status,
            bytes_sent=0,
            started=now,
            duration=0.0,
            error=message,
        )
        self._access(peer, line, status, 0, 0.0)

    def _access(self, peer: str, line: str, status: int, sent: int, duration: float) -> None:
        if self.access_log is None:
            return
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(self.clock.seconds()))
        safe = printable(excerpt(line)).replace('"', "%22")
        self.access_log.write(
            f'{peer} - - [{stamp}] "{safe}" {status} {sent} {int(duration * 1_000_000)}\n'
        )
        self.access_log.flush()


def _facts_of(request: Any) -> Any:
    """The facts of the request's SQL as the executor read them (None when its SQL was never
    read: refused before authentication, or no SQL)."""
    parsed = getattr(request, "dbslayer_request", None)
    return None if parsed is None else parsed.facts


def _body_sql(request: Any, facts: Any) -> str | Callable[[], str] | None:
    """The SQL of a request that sent it in its body (POST /db, POST /dbform), as the error
    journal shows it: each statement that may hold a secret as its kind only
    (:func:`stats.redact.shown_sql`; made when the journal is read, unless the text is over
    :data:`LAZY_LINE_MAX`: a journal entry never keeps a big text); None when the SQL is in
    the request line (GET) or the request carried none."""
    if request.method != b"POST":
        return None
    parsed = getattr(request, "dbslayer_request", None)
    sql = getattr(parsed, "sql", None)
    if not isinstance(sql, str):
        return None
    if len(sql) > LAZY_LINE_MAX:
        return shown_sql(sql, facts, read_sql)
    return partial(shown_sql, sql, facts, read_sql)
