"""The exceptions of the client: one class per kind of answer, all `GatewayError`s."""

from __future__ import annotations

from dbslayer_client.results import Results

__all__ = [
    "AuthError",
    "ClientTimeout",
    "ConnectionLost",
    "GatewayError",
    "GatewayUnreachable",
    "RequestRefused",
    "SQLError",
    "TimeLimit",
    "Unavailable",
    "error_class",
]


class GatewayError(Exception):
    """The gateway answered with an error, or could not be reached.

    ``status`` is the HTTP status (0 when no answer came at all), ``message`` the gateway's
    ``ERROR`` (or ``MYSQL_ERROR``) text, ``mysql_errno`` its ``MYSQL_ERRNO``, ``server`` the
    backend concerned, ``retry_after`` the ``Retry-After`` header in seconds."""

    def __init__(
        self,
        message: str,
        status: int = 0,
        *,
        mysql_errno: int | None = None,
        server: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.mysql_errno = mysql_errno
        self.server = server
        self.retry_after = retry_after

    def __str__(self) -> str:
        details = []
        if self.status:
            details.append(f"HTTP {self.status}")
        if self.mysql_errno is not None:
            details.append(f"MYSQL_ERRNO {self.mysql_errno}")
        if self.server is not None:
            details.append(f"server {self.server}")
        if self.retry_after is not None:
            details.append(f"retry after {self.retry_after:g} s")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class SQLError(GatewayError):
    """The database refused a statement (``MYSQL_ERRNO``/``MYSQL_ERROR``, answered with 200).

    ``results`` holds the outcome of the statements before the failing one. With
    ``rollback_on_error`` they were rolled back when ``rolled_back`` is True.
    ``error_class`` is the PEP 249 class of the exception the gateway's driver raised
    (``"IntegrityError"``, ``"ProgrammingError"``, ...; the answer's ``ERROR_CLASS``) and
    ``backend_kind`` the kind of database (``"mariadb"``, ``"mysql"`` or ``"sqlite"``;
    ``BACKEND_KIND``); both are None from a gateway that does not send them."""

    def __init__(
        self,
        message: str,
        status: int = 200,
        *,
        mysql_errno: int | None = None,
        server: str | None = None,
        retry_after: float | None = None,
        results: Results | None = None,
        rolled_back: bool | None = None,
        error_class: str | None = None,
        backend_kind: str | None = None,
    ) -> None:
        super().__init__(
            message, status, mysql_errno=mysql_errno, server=server, retry_after=retry_after
        )
        self.results = results if results is not None else Results(server=server)
        self.rolled_back = rolled_back
        self.error_class = error_class
        self.backend_kind = backend_kind


class AuthError(GatewayError):
    """Missing or bad credentials (401), or not allowed (403)."""


class Unavailable(GatewayError):
    """Nothing was run, for now: no backend could take the request (503), this user has too
    many requests in flight (429), or the request arrived too slowly (408); see
    ``retry_after``."""


class GatewayUnreachable(Unavailable):
    """The gateway itself could not be reached (status 0); nothing was sent."""


class ConnectionLost(GatewayError):
    """The connection broke while the statements ran (502, ``MYSQL_ERRNO`` 2013), or the
    connection to the gateway broke after the request was sent (status 0): the statements may or
    may not have been applied. Nothing was sent again."""


class ClientTimeout(ConnectionLost):
    """No answer from the gateway within the client's timeout (status 0). The request may still
    be running or have been applied."""


class TimeLimit(GatewayError):
    """The statement time limit was reached and the statement was stopped on the server (504)."""


class RequestRefused(GatewayError):
    """The gateway refused the request itself (400, 404, 405, 413, 414 and other 4xx but 401,
    403, 408 and 429)."""


def error_class(status: int) -> type[GatewayError]:
    """The exception class for a gateway answer with this HTTP status (other than 200)."""
    if status in (401, 403):
        return AuthError
    if status in (503, 429, 408):  # (transient: retry after Retry-After, or resend faster)
        return Unavailable
    if status == 502:
        return ConnectionLost
    if status == 504:
        return TimeLimit
    if 400 <= status < 500:
        return RequestRefused
    return GatewayError
