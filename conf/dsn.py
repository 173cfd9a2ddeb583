"""Backend DSN parsing: ``mysql://``, ``mariadb://`` and ``sqlite:///`` URLs.

MySQL form: ``mysql://user:password@host:port/database?name=N&role=R&weight=W``
``&unix_socket=/path&charset=utf8mb4&read_user=U&read_password=P``; every part
is optional.  ``read_user`` and ``read_password`` name the backend's read account,
the one read-role requests run on (``dbslayer grants`` prints the SQL creating it).  Everything up
to the *last* ``@`` is the user and password, so a ``@`` after the host (e.g.
in a query value) must be written ``%40``; user, password, database and query
values are percent-decoded.  A backend without ``?name=`` is named
``db{index}`` (its position in the ``backends`` list, from 0).

SQLite form (SQLAlchemy convention): ``sqlite:///relative/path.db`` or
``sqlite:////absolute/path.db``, with an optional ``?name=``.

In TOML a ``backends`` entry may also be a table, ``{dsn = "mysql://...",
read_user = "U", read_password = "P"}``, so the read password need not be
percent-encoded; :func:`dsn_from_table` turns it into the DSN form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from conf.settings import BackendSpec, SettingError, mask_password

SCHEMES = {"mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
MYSQL_KEYS = ("name", "role", "weight", "unix_socket", "charset", "read_user", "read_password")
TABLE_KEYS = ("dsn", "read_user", "read_password")
SQLITE_KEYS = ("name",)


class _DsnError(Exception):
    """A problem with one DSN; turned into a SettingError that shows the masked DSN."""


def parse_dsn(text: str, index: int = 0) -> BackendSpec:
    """Parse one backend DSN; raise SettingError (password masked) if it is bad."""
    try:
        return _parse(text, index)
    except _DsnError as err:
        raise SettingError("backends", f"{err} in DSN {mask_password(text)!r}") from None


def _parse(text: str, index: int) -> BackendSpec:
    scheme, sep, rest = text.strip().partition("://")
    if not sep:
        raise _DsnError("expected scheme://..., e.g. mysql://user@host/db")
    driver = SCHEMES.get(scheme.lower())
    if driver is None:
        raise _DsnError(f"unknown scheme {scheme!r} (expected mysql, mariadb or sqlite)")
    if driver == "sqlite":
        return _parse_sqlite(rest, index)
    userinfo, _, rest = rest.rpartition("@")
    if "#" in rest:
        raise _DsnError("'#' must be percent-encoded as %23")
    rest, _, query = rest.partition("?")
    hostport, _, database = rest.partition("/")
    params = _parse_query(query, MYSQL_KEYS)
    user, _, password = userinfo.partition(":")
    host, port = _parse_hostport(hostport)
    database = unquote(database)
    if "/" in database:
        raise _DsnError("the database name cannot contain '/'")
    role = params.get("role", "")
    if role not in ("primary", "replica") and "role" in params:
        raise _DsnError("role must be primary or replica")
    weight = params.get("weight", "1")
    if not re.fullmatch(r"\d+", weight) or int(weight) < 1:
        raise _DsnError("weight must be an integer >= 1")
    charset = params.get("charset", "utf8mb4")
    if not re.fullmatch(r"\w+", charset, re.ASCII):
        raise _DsnError("charset must be a character set name like utf8mb4")
    socket = params.get("unix_socket")
    if socket == "":
        raise _DsnError("unix_socket must be a path")
    user = unquote(user)
    read_user, read_password = _read_account(params, user)
    return BackendSpec(
        name=_name(params, index),
        driver="mysql",
        host=host,
        port=port,
        user=user,
        password=unquote(password),
        database=database,
        unix_socket=socket or "",
        role=role,
        weight=int(weight),
        charset=charset,
        read_user=read_user,
        read_password=read_password,
    )


def _read_account(params: dict[str, str], user: str) -> tuple[str, str]:
    read_user = params.get("read_user")
    if read_user is None:
        if "read_password" in params:
            raise _DsnError("read_password needs read_user, the read account it belongs to")
        return "", ""
    if not read_user:
        raise _DsnError("read_user must not be empty")
    if read_user == user:
        raise _DsnError("read_user must be another account than the DSN's user")
    return read_user, params.get("read_password", "")


def _parse_sqlite(rest: str, index: int) -> BackendSpec:
    rest, _, query = rest.partition("?")
    if not rest.startswith("/"):
        raise _DsnError("sqlite takes no host: write sqlite:///relative.db or sqlite:////abs.db")
    path = unquote(rest[1:])
    if not path:
        raise _DsnError("sqlite needs a file path")
    params = _parse_query(query, SQLITE_KEYS)
    return BackendSpec(name=_name(params, index), driver="sqlite", path=path)


def _parse_hostport(hostport: str) -> tuple[str, int]:
    port = ""
    if hostport.startswith("["):
        host, close, after = hostport[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise _DsnError("bad IPv6 address: write [addr] or [addr]:port")
        port = after[1:]
        if not host:
            raise _DsnError("empty IPv6 address")
    else:
        host, colon, port = hostport.partition(":")
        if colon and ":" in port:
            raise _DsnError("an IPv6 address must be in brackets, e.g. [::1]:3306")
        if colon and not port:
            raise _DsnError("port is empty")
    if port and (not re.fullmatch(r"\d+", port) or not 1 <= int(port) <= 65535):
        raise _DsnError("port must be an integer from 1 to 65535")
    return host or "127.0.0.1", int(port) if port else 3306


def _parse_query(query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in query.split("&") if query else ():
        raw_key, eq, value = item.partition("=")
        key = unquote(raw_key)
        if key not in allowed:
            raise _DsnError(f"unknown query key {key!r} (allowed: {', '.join(allowed)})")
        if not eq:
            raise _DsnError(f"query key {key!r} needs a value")
        if key in params:
            raise _DsnError(f"query key {key!r} given twice")
        params[key] = unquote(value)
    return params


def dsn_from_table(table: Mapping[str, object], index: int) -> str:
    """The DSN of a TOML backend table ``{dsn = "...", read_user = "...", read_password = "..."}``.

    ``read_user`` and ``read_password`` are added to the DSN's query, percent-encoded;
    ``parse_dsn`` checks the result like any other DSN.  Raise SettingError (no value
    echoed) when the table is not of that form.
    """
    where = f"backends entry {index} (a table)"
    unknown = [key for key in table if key not in TABLE_KEYS]
    if unknown:
        raise SettingError(
            "backends", f"{where} has unknown key {unknown[0]!r} (known: {', '.join(TABLE_KEYS)})"
        )
    dsn = table.get("dsn")
    if not isinstance(dsn, str) or not dsn.strip():
        raise SettingError("backends", f'{where} needs dsn = "mysql://user:password@host/db"')
    extra = []
    for key in ("read_user", "read_password"):
        value = table.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SettingError("backends", f"{where}: {key} must be a string")
        extra.append(f"{key}={quote(value, safe='')}")
    if not extra:
        return dsn
    _, has_query, query = dsn.rpartition("@")[2].partition("?")
    if not has_query:
        separator = "?"
    else:
        separator = "" if not query or query.endswith("&") else "&"
    return dsn + separator + "&".join(extra)


def _name(params: dict[str, str], index: int) -> str:
    name = params.get("name", f"db{index}")
    if not name or any(ch.isspace() for ch in name):
        raise _DsnError("name must be non-empty and contain no spaces")
    return name
