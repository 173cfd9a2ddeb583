"""``dbslayer grants``: print the SQL that creates each MySQL/MariaDB backend's read account.

    dbslayer grants [--read-user NAME] [--host HOST] [--backend DSN]... [--config FILE]
                    [--mysql-config FILE --servers a:b | --named a:b] | mariadb -uroot

The backend options are those of ``dbslayer serve`` (and ``DBSLAYER_*`` / ``DBSLAYER_CONFIG``
as there); other serve options are accepted and ignored.  For each MySQL/MariaDB backend the
output creates an account granted SELECT and SHOW VIEW on the backend's database and nothing
else, with a fresh random password, then says (as SQL comments) which DSN parameters, TOML
keys or option-file keys give the account to the gateway.  It is plain SQL with ``--``
comments, to be piped into the ``mariadb``/``mysql`` client as an administrator.

The account name is ``--read-user``, else the backend's configured ``read_user``, else its
main user plus ``_ro``.  Its host part is ``--host``, else ``localhost`` for a backend reached
over a unix socket, ``127.0.0.1`` (or ``::1``) for one on loopback, else ``%``.  Backends that
share an account (same name and host part) get one block: one password, grants on all of
their databases, so running the whole output on one server never undoes another block.

Names are quoted for the server (backticks doubled, quotes doubled, ``_`` and ``%`` of a
database name escaped because GRANT reads them as wildcards); a name holding a backslash or a
control character is refused, as its meaning would depend on the server's SQL mode.

Exit status: 0 printed, 2 bad usage, bad settings or no MySQL/MariaDB backend configured.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import quote

from conf.settings import BackendSpec, SettingError, Settings

PROG = "dbslayer grants"
PRIVILEGES = "SELECT, SHOW VIEW"
MAX_USER = 80  # MariaDB's limit (MySQL's is 32: its server refuses longer names itself)
MAX_HOST = 255
MAX_DATABASE = 64


class GrantsError(Exception):
    """A problem reported as one line on stderr (exit status 2)."""


def main(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``dbslayer grants <argv>``; returns the exit status."""
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    from conf.load import load_settings

    try:
        options, rest = _parser().parse_known_args(list(argv))
        settings = load_settings(rest, environ, prog=PROG, require_read_accounts=False)
    except SystemExit as e:  # argparse: bad usage (2, message printed) or --help (0)
        return e.code if isinstance(e.code, int) else 2
    except SettingError as e:
        print(f"{PROG}: {e}", file=err)
        return 2
    try:
        script = grants_script(settings, read_user=options.read_user, host=options.host)
    except (GrantsError, SettingError) as e:
        print(f"{PROG}: {e}", file=err)
        return 2
    out.write(script)
    out.flush()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        usage=f"{PROG} [--read-user NAME] [--host HOST] [backend options of dbslayer serve]",
        description="Print the SQL that creates a read-only account (SELECT and SHOW VIEW) "
        "for each MySQL/MariaDB backend, for the gateway's read role. Pipe it into "
        "`mariadb -uroot` (or mysql) as an administrator.",
        epilog="Backends are given as for dbslayer serve: --backend DSN (repeat it), "
        "--config FILE, --mysql-config FILE with --servers a:b or --named a:b, or the "
        "DBSLAYER_* environment variables.",
    )
    parser.add_argument(
        "--read-user",
        metavar="NAME",
        help="name of the read account (default: the backend's read_user, else its user + _ro)",
    )
    parser.add_argument(
        "--host",
        metavar="HOST",
        help="host part of the account, e.g. 10.0.0.%% (default: localhost for a unix socket, "
        "127.0.0.1 for a backend on loopback, else %%)",
    )
    return parser


# --- what to create ----------------------------------------------------------------------


@dataclass
class Account:
    """One read account and the backends that will use it."""

    user: str
    host: str
    password: str
    backends: list[BackendSpec] = field(default_factory=list)

    @property
    def databases(self) -> list[str]:
        """The databases to grant on, in order; ``[""]`` means every database (``*.*``)."""
        names = [spec.database for spec in self.backends]
        if "" in names:
            return [""]
        return list(dict.fromkeys(names))


def default_host(spec: BackendSpec) -> str:
    """The host part the server sees the gateway's connections to ``spec`` come from."""
    if spec.unix_socket or spec.host == "localhost":  # libmysqlclient: localhost = the socket
        return "localhost"
    if spec.host == "::1":
        return "::1"
    if spec.host.startswith("127."):  # the loopback source address is 127.0.0.1
        return "127.0.0.1"
    return "%"


def default_read_user(spec: BackendSpec) -> str:
    """The backend's configured read account, else its main user plus ``_ro``."""
    return spec.read_user or f"{spec.user or 'dbslayer'}_ro"


def plan_accounts(
    specs: Sequence[BackendSpec],
    *,
    read_user: str | None = None,
    host: str | None = None,
    token: Callable[[], str] = lambda: secrets.token_urlsafe(24),
) -> list[Account]:
    """One :class:`Account` per distinct (name, host part) of the MySQL backends."""
    accounts: dict[tuple[str, str], Account] = {}
    for spec in specs:
        if spec.driver != "mysql":
            continue
        user = read_user or default_read_user(spec)
        if user == spec.user:
            raise GrantsError(
                f"the read account of backend {spec.name} must be another account than its "
                f"user {spec.user!r}: give another --read-user"
            )
        part = host or default_host(spec)
        _check_name(user, "--read-user", MAX_USER)
        _check_name(part, "--host", MAX_HOST)
        if spec.database:
            quote_database(spec.database)  # refuse it before anything is printed
        key = (user, part)
        if key not in accounts:
            accounts[key] = Account(user, part, token())
        accounts[key].backends.append(spec)
    return list(accounts.values())


# --- quoting --------------------------------------------------------------------------------


def _check_name(text: str, what: str, longest: int) -> None:
    if not text:
        raise GrantsError(f"{what} must not be empty")
    if "\\" in text:
        raise GrantsError(
            f"{what} {_shown(text)} holds a backslash, whose meaning in SQL depends on the "
            "server's sql_mode (NO_BACKSLASH_ESCAPES): choose another name"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise GrantsError(f"{what} {_shown(text)} holds a control character: choose another")
    if any(ord(ch) > 0xFFFF for ch in text):
        raise GrantsError(f"{what} {_shown(text)} holds a character the server cannot store")
    if len(text) > longest:
        raise GrantsError(f"{what} {_shown(text)} is longer than {longest} characters")


def _shown(text: str) -> str:
    return ascii(text)  # never a raw control character on the terminal


def quote_string(text: str) -> str:
    """A single-quoted SQL string literal: quotes doubled, the same in every sql_mode.

    Backslashes and control characters are refused (see :func:`_check_name`).
    """
    _check_name(text, "a quoted name", 1 << 20)
    return "'" + text.replace("'", "''") + "'"


def quote_account(user: str, host: str) -> str:
    """``'user'@'host'``."""
    return f"{quote_string(user)}@{quote_string(host)}"


def quote_database(name: str) -> str:
    """The database of ``GRANT ... ON `db`.*``: backticks doubled, ``_`` and ``%`` escaped.

    In a database-level GRANT, ``_`` and ``%`` are wildcards (``my_db`` also matches
    ``myXdb``); ``\\_`` and ``\\%`` are the characters themselves.
    """
    _check_name(name, "database name", MAX_DATABASE)
    if name.endswith(" "):
        raise GrantsError(f"database name {_shown(name)} ends with a space")
    escaped = name.replace("`", "``").replace("_", "\\_").replace("%", "\\%")
    return f"`{escaped}`"


def _comment(text: str = "") -> str:
    """A ``--`` comment line; a line break in ``text`` could never end it early."""
    safe = "".join("?" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)
    return f"-- {safe}".rstrip() + "\n"


def _option_value(text: str) -> str:
    """A value for a my.cnf line: bare when plain, else double-quoted."""
    if text.strip() == text and all(ch.isalnum() or ch in "_-.@%" for ch in text):
        return text
    return '"' + text.replace('"', '\\"') + '"'


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a TOML basic string for these names


# --- the script -------------------------------------------------------------------------


def grants_script(
    settings: Settings,
    *,
    read_user: str | None = None,
    host: str | None = None,
    token: Callable[[], str] = lambda: secrets.token_urlsafe(24),
) -> str:
    """The SQL (with comments) that creates the read accounts of ``settings``' MySQL backends."""
    _, specs = settings.resolve_backends(require_read_accounts=False)
    accounts = plan_accounts(specs, read_user=read_user, host=host, token=token)
    if not accounts:
        raise GrantsError(
            "no MySQL/MariaDB backend is configured (SQLite backends have no accounts): give "
            "--backend mysql://user@host/db, --config FILE or --mysql-config FILE --servers a:b"
        )
    # Option-file backends follow the DSN ones; their names are unique.
    groups = {spec.name for spec in specs[len(settings.backends) :]}
    lines = [
        _comment("dbslayer grants: read-only accounts for the gateway's read role."),
        _comment("Run as an administrator on the server(s) named below, e.g."),
        _comment("  dbslayer grants ... | mariadb -uroot"),
        _comment("The passwords are new and shown only here; nothing else prints them."),
    ]
    for account in accounts:
        lines += ["\n", *_account_block(account, groups, settings.mysql_config)]
    return "".join(lines)


def _account_block(account: Account, groups: set[str], mysql_config: str) -> list[str]:
    who = quote_account(account.user, account.host)
    names = ", ".join(spec.name for spec in account.backends)
    plural = "s" if len(account.backends) > 1 else ""
    lines = [_comment(f"Account {who} for backend{plural} {names}")]
    for spec in account.backends:
        lines.append(_comment(f"  {spec.name}: {spec.display()}  (run on: {_client(spec)})"))
    password = quote_string(account.password)
    lines += [
        f"CREATE USER IF NOT EXISTS {who} IDENTIFIED BY {password};\n",
        _comment("If it existed already: the new password, and none of its old privileges."),
        f"ALTER USER {who} IDENTIFIED BY {password};\n",
        f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};\n",
        _comment("SELECT and SHOW VIEW only. Not EXECUTE: a stored procedure or function with"),
        _comment("SQL SECURITY DEFINER (the default) runs with its definer's rights, so"),
        _comment("EXECUTE would let the read account write. No other privilege either."),
    ]
    for database in account.databases:
        if database:
            lines.append(f"GRANT {PRIVILEGES} ON {quote_database(database)}.* TO {who};\n")
            continue
        lines += [
            _comment("The DSN names no database, so this grants on every database, the mysql"),
            _comment("system schema (password hashes) included: narrow *.* to `yourdb`.*"),
            f"GRANT {PRIVILEGES} ON *.* TO {who};\n",
        ]
    lines += _how_to_configure(account, groups, mysql_config)
    return lines


def _client(spec: BackendSpec) -> str:
    if spec.unix_socket:
        return f"mariadb -uroot -S {shlex.quote(spec.unix_socket)}"
    return f"mariadb -uroot -h {shlex.quote(spec.host)} -P {spec.port}"


def _how_to_configure(account: Account, groups: set[str], mysql_config: str) -> list[str]:
    user, password = account.user, account.password
    query = f"&read_user={quote(user, safe='')}&read_password={quote(password, safe='')}"
    table = (
        f'{{dsn = "<its DSN>", read_user = {_toml_string(user)}, '
        f"read_password = {_toml_string(password)}}}"
    )
    lines = [_comment("Then give the account to the gateway, and restart it:")]
    for spec in account.backends:
        if spec.name in groups:
            lines += [
                _comment(f"  backend {spec.name}: add to group [{spec.name}] of {mysql_config}"),
                _comment(f"    read-user = {_option_value(user)}"),
                _comment(f"    read-password = {_option_value(password)}"),
            ]
            continue
        lines += [
            _comment(f"  backend {spec.name}: add to its DSN (? instead of the first & if it"),
            _comment("  has no query yet)"),
            _comment(f"    {query}"),
            _comment("  or, in a TOML file, make its backends entry a table:"),
            _comment(f"    {table}"),
        ]
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
