"""Backend DSN parsing: ``mysql://``, ``mariadb://`` and ``sqlite:///`` URLs.

MySQL form: ``mysql://user:password@host:port/database?name=N&role=R&weight=W``
``&unix_socket=/path&charset=utf8mb4&read_user=U&read_password=P``; every part
is optional.  ``read_user`` and ``read_password`` name the backend's read account,
the one read-role requests run on (``dbslayer grants`` prints the SQL creating it).
Instead of being written in the DSN, where ``ps`` shows it when the DSN is on a command
line, each password can be kept in a file (``password_file=PATH``, ``read_password_file=``)
or an environment variable (``password_env=NAME``, ``read_password_env=``): one source per
password.  :func:`parse_dsn` only records where; :func:`load_passwords` reads it (a file
must be a regular file of one line, closed to group and others).  Everything up
to the *last* ``@`` is the user and password, so a ``@`` after the host (e.g.
in a query value) must be written ``%40``; user, password, database and query
values are percent-decoded.  A backend without ``?name=`` is named
``db{index}`` (its position in the ``backends`` list, from 0).

SQLite form (SQLAlchemy convention): ``sqlite:///relative/path.db`` or
``sqlite:////absolute/path.db``, with an optional ``?name=``.

In TOML a ``backends`` entry may also be a table, ``{dsn = "mysql://...",
read_user = "U", read_password = "P"}`` (or ``password_file``, ``password_env``,
``read_password_file``, ``read_password_env``), so the values need not be
percent-encoded; :func:`dsn_from_table` turns it into the DSN form.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from urllib.parse import quote, unquote

import attrs

from conf.settings import BackendSpec, SettingError, mask_password

SCHEMES = {"mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
#: Where a password may be kept instead of the DSN: ``password_file``, ``password_env``...
SOURCE_KEYS = ("password_file", "password_env", "read_password_file", "read_password_env")
MYSQL_KEYS = (
    *("name", "role", "weight", "unix_socket", "charset"),
    *SOURCE_KEYS,
    *("read_user", "read_password"),
)
TABLE_KEYS = ("dsn", *SOURCE_KEYS, "read_user", "read_password")
SQLITE_KEYS = ("name",)
#: A password file holds one line; anything bigger is the wrong file.
MAX_PASSWORD_FILE_BYTES = 4096
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    problem = sources_problem("", "in the DSN" if password else None, params)
    problem = problem or sources_problem(
        "read_", "read_password" if "read_password" in params else None, params
    )
    if problem:
        raise _DsnError(problem)
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
        password_file=params.get("password_file", ""),
        password_env=params.get("password_env", ""),
        read_password_file=params.get("read_password_file", ""),
        read_password_env=params.get("read_password_env", ""),
    )


def sources_problem(
    prefix: str, inline: str | None, values: Mapping[str, str], dashes: bool = False
) -> str | None:
    """Why the sources of one password are wrong, or None (the values are never shown).

    ``prefix`` is ``""`` (the main password) or ``"read_"``; ``inline`` names the password
    written in place (``"in the DSN"``, ``"password"``), None when there is none; ``values``
    holds the ``password_file``-style keys given; ``dashes`` spells keys as option files do.
    """
    file_key, env_key = prefix + "password_file", prefix + "password_env"
    spelt = {key: key.replace("_", "-") if dashes else key for key in (file_key, env_key)}
    if file_key in values and not values[file_key]:
        return f"{spelt[file_key]} must be a file path"
    if env_key in values and not _ENV_NAME.fullmatch(values[env_key]):
        return (
            f"{spelt[env_key]} must be an environment variable name (letters, digits and _, "
            "not starting with a digit)"
        )
    given = [inline] if inline else []
    given += [spelt[key] for key in (file_key, env_key) if key in values]
    if len(given) > 1:
        return f"give the {'read ' if prefix else ''}password once: {' or '.join(given)}"
    return None


def _read_account(params: dict[str, str], user: str) -> tuple[str, str]:
    read_user = params.get("read_user")
    if read_user is None:
        for key in ("read_password", "read_password_file", "read_password_env"):
            if key in params:
                raise _DsnError(f"{key} needs read_user, the read account it belongs to")
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

    ``read_user``, ``read_password`` and the password sources (``password_file``...) are
    added to the DSN's query, percent-encoded;
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
    for key in TABLE_KEYS[1:]:
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


class PasswordError(ValueError):
    """Why a password kept in a file or a variable cannot be used; never shows the password."""


def load_passwords(
    spec: BackendSpec, environ: Mapping[str, str], *, option_file: bool = False
) -> BackendSpec:
    """``spec`` with ``password`` and ``read_password`` read from where it says they are kept.

    Raise PasswordError naming the key and the path or variable, never the contents.
    ``option_file`` spells the keys as option files do (``password-file``).
    """

    def spelt(key: str) -> str:
        return key.replace("_", "-") if option_file else key

    passwords = [spec.password, spec.read_password]
    for index, prefix in enumerate(("", "read_")):
        path, name = getattr(spec, prefix + "password_file"), getattr(spec, prefix + "password_env")
        if path:
            passwords[index] = _password_from_file(spelt(prefix + "password_file"), path)
        elif name:
            passwords[index] = _password_from_env(spelt(prefix + "password_env"), name, environ)
    return attrs.evolve(spec, password=passwords[0], read_password=passwords[1])


def _password_from_file(key: str, path: str) -> str:
    """The one line of a regular file that only its owner may read or write.

    Like ssh with a private key and libpq with ``.pgpass``, a file open to the group or to
    others is refused: the secret may already have leaked, and failing at start-up is the
    moment the operator can fix it. The file is opened non-blocking (a FIFO does not hang
    start-up) and read up to a bound.
    """
    try:
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise PasswordError(f"cannot read {key} {path}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PasswordError(f"{key} {path} is not a regular file")
        if info.st_mode & 0o077:
            raise PasswordError(
                f"{key} {path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): "
                f"chmod 600 {path}"
            )
        data = b""
        while len(data) <= MAX_PASSWORD_FILE_BYTES:
            chunk = os.read(fd, MAX_PASSWORD_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as err:
        raise PasswordError(f"cannot read {key} {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise PasswordError(
            f"{key} {path} is larger than {MAX_PASSWORD_FILE_BYTES} bytes: it must hold the "
            "password alone"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordError(f"{key} {path} is not UTF-8 text") from None
    return _one_line(text, f"{key} {path}")


def _password_from_env(key: str, name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if value is None:
        raise PasswordError(f"{key} names {name}, which is not set")
    if not value:
        raise PasswordError(f"{key} names {name}, which is empty")
    return _one_line(value, f"{key} {name}")


def _one_line(text: str, what: str) -> str:
    """``text`` without one trailing line end; refused if empty or of several lines."""
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text:
        raise PasswordError(f"{what} is empty")
    if any(char in text for char in "\r\n\x00"):
        raise PasswordError(
            f"{what} must hold the password alone on one line (a trailing newline is allowed)"
        )
    return text
