"""Statement text handling (pure): split a multi-statement SQL text, rewrite placeholders.

MySQL backends receive the SQL text whole (the server splits it and returns one result per
statement); the SQLite backend runs one statement at a time, so it splits here. Quotes
(``'``, ``"``, backticks), ``--``/``#`` line comments and ``/* */`` block comments are
respected: a ``;`` inside them does not end a statement. The ``mysql`` dialect also knows
backslash escapes in strings and ``#`` comments; the ``sqlite`` dialect has neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_MYSQL = re.compile(
    r"""
      (?P<quoted> '(?:[^'\\]|\\.|'')*'? | "(?:[^"\\]|\\.|"")*"? | `(?:[^`]|``)*`? )
    | (?P<comment> --[^\n]*\n? | \#[^\n]*\n? | /\*.*?(?:\*/|$) )
    | (?P<placeholder> %\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s | %s | %% )
    | (?P<semicolon> ; )
    | (?P<other> [^'"`\-#/%;]+ | . )
    """,
    re.VERBOSE | re.DOTALL,
)
_SQLITE = re.compile(
    r"""
      (?P<quoted> '(?:[^']|'')*'? | "(?:[^"]|"")*"? | `(?:[^`]|``)*`? | \[[^\]]*\]? )
    | (?P<comment> --[^\n]*\n? | /\*.*?(?:\*/|$) )
    | (?P<placeholder> %\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s | %s | %% )
    | (?P<semicolon> ; )
    | (?P<other> [^'"`\[\-/%;]+ | . )
    """,
    re.VERBOSE | re.DOTALL,
)
_DIALECTS = {"mysql": _MYSQL, "sqlite": _SQLITE}


def _tokens(sql: str, dialect: str = "mysql") -> Iterator[re.Match[str]]:
    return _DIALECTS[dialect].finditer(sql)


def split_statements(sql: str, dialect: str = "mysql") -> list[str]:
    """Split SQL text at top-level semicolons; empty statements are dropped."""
    statements: list[str] = []
    current: list[str] = []
    for token in _tokens(sql, dialect):
        if token.lastgroup == "semicolon":
            statements.append("".join(current))
            current = []
        else:
            current.append(token.group(0))
    statements.append("".join(current))
    return [s.strip() for s in statements if _has_code(s, dialect)]


def _has_code(statement: str, dialect: str) -> bool:
    """True when a statement holds something besides whitespace and comments."""
    return any(t.lastgroup != "comment" and t.group(0).strip() for t in _tokens(statement, dialect))


def to_qmark(statement: str, dialect: str = "mysql") -> str:
    """Rewrite ``%s`` to ``?``, ``%(name)s`` to ``:name`` and ``%%`` to ``%`` outside quotes
    and comments, for drivers whose paramstyle is qmark/named (sqlite3)."""
    out: list[str] = []
    for token in _tokens(statement, dialect):
        if token.lastgroup == "placeholder":
            text = token.group(0)
            if text == "%s":
                out.append("?")
            elif text == "%%":
                out.append("%")
            else:
                out.append(":" + token.group("name"))
        else:
            out.append(token.group(0))
    return "".join(out)
