"""The Python client of the dbslayer gateway (DBSlayer's JSON over HTTP), standard library only.

`Client` is synchronous (``http.client``, one kept-alive connection); `TwistedClient`
(``dbslayer_client.twisted``, with the ``twisted`` extra) returns Deferreds. Both answer with
the same `Results` and raise the same `GatewayError` subclasses, through one decoder,
`decode_answer`. `dbslayer_client.dbapi` is a PEP 249 adapter over `Client`.

Example::

    from dbslayer_client import Client, SQLError

    with Client("http://127.0.0.1:9090") as db:
        rows = db.query("SELECT id, name FROM users WHERE id < %s", [3]).rows
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dbslayer_client._version import __version__
from dbslayer_client.client import Client
from dbslayer_client.errors import (
    AuthError,
    ClientTimeout,
    ConnectionLost,
    GatewayError,
    GatewayUnreachable,
    RequestRefused,
    SQLError,
    TimeLimit,
    Unavailable,
)
from dbslayer_client.results import Result, Results
from dbslayer_client.wire import DEFAULT_URL, INFO_FLAGS, build_query, decode_answer, decode_json

if TYPE_CHECKING:
    from dbslayer_client.twisted import TwistedClient

__all__ = [
    "DEFAULT_URL",
    "INFO_FLAGS",
    "AuthError",
    "Client",
    "ClientTimeout",
    "ConnectionLost",
    "GatewayError",
    "GatewayUnreachable",
    "RequestRefused",
    "Result",
    "Results",
    "SQLError",
    "TimeLimit",
    "TwistedClient",
    "Unavailable",
    "__version__",
    "build_query",
    "decode_answer",
    "decode_json",
]


def __getattr__(name: str) -> Any:
    # TwistedClient needs treq and Twisted: imported on first use only, so the core stays
    # standard library only.
    if name == "TwistedClient":
        try:
            from dbslayer_client.twisted import TwistedClient
        except ImportError as e:
            raise ImportError(
                f"TwistedClient needs Twisted and treq ({e}): "
                "pip install 'dbslayer-client[twisted]'"
            ) from e
        return TwistedClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
