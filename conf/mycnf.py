"""MySQL option files (``my.cnf`` syntax), as the reference DBSlayer's ``-c`` reads them.

Supported: ``[group]`` sections (names case-insensitive, as in libmysql),
``key=value`` / ``key = value`` / bare ``key`` lines, ``#`` and ``;`` comment
lines, ``#`` comments after a value, single- or double-quoted values, the
escapes ``\\b \\t \\n \\r \\s \\\\ \\" \\'``, and ``!include FILE`` /
``!includedir DIR`` (``*.cnf`` files, sorted) relative to the including file.
Option names may use ``-`` or ``_``.  For each group the options ``host``,
``port``, ``user``, ``password``, ``database`` (or ``db``), ``socket``,
``default-character-set`` and the gateway's own ``read-user`` and ``read-password``
(the backend's read account) are read; ``[client]`` values are defaults for every
group; other options are ignored (option files carry many client options).  Put
``read-user`` and ``read-password`` in the backend's group, not in ``[client]``:
the ``mariadb``/``mysql`` client programs refuse options they do not know there.

Either password may also be kept elsewhere, as in a DSN: ``password-file`` (a path,
relative to the option file that names it, like ``!include``), ``password-env`` (a
variable name), ``read-password-file`` and ``read-password-env``.  A group that gives any
source of a password replaces the ``[client]`` group's; two sources in one group are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from conf.dsn import sources_problem
from conf.settings import BackendSpec, SettingError

MAX_INCLUDE_DEPTH = 10
_ALIASES = {"db": "database", "default_character_set": "charset"}
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "r": "\r", "s": " ", "\\": "\\", '"': '"', "'": "'"}
#: The keys that give the main password, then the read account's: a group that gives any of
#: one set replaces [client]'s whole set.
_PASSWORD_KEYS = (
    ("password", "password_file", "password_env"),
    ("read_password", "read_password_file", "read_password_env"),
)

Options = dict[str, dict[str, str]]


def _error(problem: str) -> SettingError:
    return SettingError("mysql_config", problem)


def read_groups(path: str, groups: Sequence[str]) -> list[BackendSpec]:
    """Return one mysql BackendSpec per group of option file ``path``, named after the group."""
    options: Options = {}
    _read_file(os.path.expanduser(path), options, 0)
    client = options.get("client", {})
    specs = []
    for group in groups:
        found = options.get(group.lower())
        if found is None:
            present = ", ".join(f"[{name}]" for name in options if name != "client")
            raise _error(
                f"option file {path} has no [{group}] group"
                + (f" (its groups: {present})" if present else " (it has no group to serve)")
            )
        specs.append(_spec(group, _merge(client, found), path))
    return specs


def _merge(client: dict[str, str], group: dict[str, str]) -> dict[str, str]:
    """``[client]`` values overridden by the group's; a password source replaces all of them."""
    merged = {**client, **group}
    for keys in _PASSWORD_KEYS:
        if any(key in group for key in keys):
            for key in keys:
                if key not in group:
                    merged.pop(key, None)
    return merged


def _spec(group: str, values: dict[str, str], path: str) -> BackendSpec:
    port = values.get("port", "3306")
    if not re.fullmatch(r"\d+", port) or not 1 <= int(port) <= 65535:
        raise _error(f"[{group}] port must be an integer from 1 to 65535, got {port!r} in {path}")
    user, read_user = values.get("user", ""), values.get("read_user")
    for key in _PASSWORD_KEYS[1]:
        if read_user is None and key in values:
            spelt = key.replace("_", "-")
            raise _error(f"[{group}] {spelt} needs read-user, the read account, in {path}")
    for prefix, keys in zip(("", "read_"), _PASSWORD_KEYS):
        inline = keys[0].replace("_", "-") if keys[0] in values else None
        problem = sources_problem(prefix, inline, values, dashes=True)
        if problem:
            raise _error(f"[{group}] {problem} in {path}")
    if read_user == "":
        raise _error(f"[{group}] read-user must not be empty in {path}")
    if read_user is not None and read_user == user:
        raise _error(f"[{group}] read-user must be another account than user in {path}")
    return BackendSpec(
        name=group,
        driver="mysql",
        host=values.get("host") or "127.0.0.1",
        port=int(port),
        user=values.get("user", ""),
        password=values.get("password", ""),
        database=values.get("database", ""),
        unix_socket=values.get("socket", ""),
        charset=values.get("charset") or "utf8mb4",
        read_user=read_user or "",
        read_password=values.get("read_password", "") if read_user else "",
        password_file=values.get("password_file", ""),
        password_env=values.get("password_env", ""),
        read_password_file=values.get("read_password_file", "") if read_user else "",
        read_password_env=values.get("read_password_env", "") if read_user else "",
    )


def _read_file(path: str, options: Options, depth: int) -> None:
    if depth > MAX_INCLUDE_DEPTH:
        raise _error(f"!include nested more than {MAX_INCLUDE_DEPTH} deep at {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as err:
        raise _error(f"cannot read option file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise _error(f"option file {path} is not UTF-8 text") from None
    group: str | None = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        where = f"{path}:{number}"
        if not line or line[0] in "#;":
            continue
        if line.startswith("!"):
            _directive(line, path, options, depth, where)
        elif line.startswith("["):
            name, close, after = line[1:].partition("]")
            if not close or not name.strip() or after.strip()[:1] not in ("", "#"):
                raise _error(f"bad group header at {where}")
            group = name.strip().lower()
            options.setdefault(group, {})
        elif group is None:
            raise _error(f"option outside any [group] at {where}")
        else:
            key, value = _option(line, where)
            if key in ("password_file", "read_password_file") and value:
                value = os.path.join(os.path.dirname(path), os.path.expanduser(value))
            options[group][key] = value


def _directive(line: str, path: str, options: Options, depth: int, where: str) -> None:
    parts = line.split(None, 1)
    target = parts[1].strip() if len(parts) == 2 else ""
    if parts[0] not in ("!include", "!includedir") or not target:
        raise _error(f"unknown directive at {where} (expected !include FILE or !includedir DIR)")
    target = os.path.join(os.path.dirname(path), os.path.expanduser(target))
    if parts[0] == "!include":
        _read_file(target, options, depth + 1)
        return
    try:
        names = sorted(name for name in os.listdir(target) if name.endswith(".cnf"))
    except OSError as err:
        raise _error(f"cannot read !includedir {target} at {where}: {err.strerror}") from None
    for name in names:
        _read_file(os.path.join(target, name), options, depth + 1)


def _option(line: str, where: str) -> tuple[str, str]:
    equals, hash_ = line.find("="), line.find("#")
    if equals < 0 or 0 <= hash_ < equals:
        key, value = line[: hash_ if hash_ >= 0 else len(line)], ""
    else:
        key, value = line[:equals], _value(line[equals + 1 :], where)
    key = key.strip().lower().replace("-", "_")
    if not key:
        raise _error(f"option without a name at {where}")
    return _ALIASES.get(key, key), value


def _value(raw: str, where: str) -> str:
    text = raw.strip()
    if text[:1] in ("'", '"'):
        quote, out, i = text[0], [], 1
        while i < len(text) and text[i] != quote:
            if text[i] == "\\" and i + 1 < len(text):
                out.append(_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
                i += 2
            else:
                out.append(text[i])
                i += 1
        if i >= len(text):
            raise _error(f"unterminated quoted value at {where}")
        if text[i + 1 :].strip()[:1] not in ("", "#"):
            raise _error(f"unexpected text after a quoted value at {where}")
        return "".join(out)
    text = text.split("#", 1)[0].strip()
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)
