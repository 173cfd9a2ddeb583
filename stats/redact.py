"""Keep secrets out of ``/stats``, logs and error messages.

:func:`redact` replaces passwords and tokens with ``***`` and leaves the rest of the text as it
was. It works on decoded text (percent- and plus-decoding done by the caller) and errs on the
side of hiding: a quoted secret whose closing quote is missing (a truncated request) is hidden to
the end of the text, and a query-string value runs to the next ``&``, ``#``, quote or line end
(a decoded value may hold spaces), stopping only before a trailing `` HTTP/x.y``.

Every rule runs in linear time and only when a cheap substring test says it may apply, so plain
SQL costs one ``lower()``. :func:`excerpt` (redact, then truncate) also bounds the work on huge
texts: it never scans far beyond what it keeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

MASK = "***"

# Names whose values are secret, also with a prefix such as ``db_``, ``client_`` or ``x-``.
_NAMES = r"(?:pass(?:word|wd)?|pwd|(?:access_)?token|api[_-]?key|secret|auth(?:orization)?)"
_NAME_HINTS = ("pass", "pwd", "token", "key", "secret", "auth")
_KEY = rf"(?:[\w.-]{{0,64}}[_.-])?{_NAMES}"

# A quoted SQL/JSON string: '...', "..." or JSON-escaped \"...\"; an unclosed one runs to the end.
_QUOTED = (
    r"(?:'(?:[^'\\]|\\.|'')*(?:'|\Z)"
    r'|"(?:[^"\\]|\\.|"")*(?:"|\Z)'
    r'|\\"(?:.)*?(?:\\"|\Z))'
)
# An unquoted SQL password (invalid SQL, but it shows up in syntax errors).
_BARE = r"(?!RANDOM\b)[^\s;,'\"()]+"
_PLUGIN = r"(?:\w{1,64}|'[^']{0,64}'|\"[^\"]{0,64}\"|`[^`]{0,64}`)"
_FLAGS = re.IGNORECASE | re.DOTALL

_Replace = Callable[[re.Match[str]], str]


def _masked(value: str, bare: str = MASK) -> str:
    """``***`` in the quoting of ``value``: ``'x'`` -> ``'***'``, ``\\"x\\"`` -> ``\\"***\\"``;
    an unquoted value becomes ``bare``."""
    if value.startswith('\\"'):
        return f'\\"{MASK}\\"'
    if value[:1] in ("'", '"'):
        return f"{value[0]}{MASK}{value[0]}"
    return bare


def _mask(match: re.Match[str]) -> str:
    return match.group("head") + _masked(match.group("secret"))


def _mask_json(match: re.Match[str]) -> str:
    return match.group("head") + _masked(match.group("secret"), bare=f'"{MASK}"')


class _Rule:
    """One pattern with a ``head`` to keep and a ``secret`` to mask, tried only when one of
    ``hints`` (lower case) occurs in the text."""

    def __init__(self, hints: tuple[str, ...], pattern: str, replace: _Replace = _mask) -> None:
        self.hints = hints
        self.pattern = re.compile(pattern, _FLAGS)
        self.replace = replace

    def apply(self, text: str, lowered: str) -> str:
        if not any(hint in lowered for hint in self.hints):
            return text
        return self.pattern.sub(self.replace, text)


# Order matters: structured forms first, so later rules see ``***`` instead of the secret.
_RULES = (
    # JSON or Python-repr keys: "password": "x", 'token': 'x', \"secret\":\"x\", "pwd": 1234
    _Rule(
        _NAME_HINTS,
        rf"(?P<head>(?P<q>\\?[\"']){_KEY}(?P=q)\s*:\s*)(?P<secret>{_QUOTED}|[^\s,{{}}\[\]]+)",
        _mask_json,
    ),
    # Query strings and form bodies: ?password=x&..., &token=x
    _Rule(
        _NAME_HINTS,
        rf"(?P<head>(?:^|(?<=[?&])){_KEY}=)"
        r"(?P<secret>[^&#\"'\r\n]*?)(?=[&#\"'\r\n]|\s+HTTP/\d|\Z)",
    ),
    # Command-line options: --password=x, --api-token=x
    _Rule(("--",), rf"(?P<head>(?<![\w.-])--{_KEY}=)(?P<secret>\S+)"),
    # URLs with userinfo: mysql://user:pw@host -> mysql://user:***@host
    _Rule(("://",), r"(?P<head>\b[a-z][a-z0-9+.-]{0,31}://[^/\s:@]*:)(?P<secret>[^\s/?#]*)(?=@)"),
    # SQL: IDENTIFIED BY 'x', IDENTIFIED BY PASSWORD 'hash'
    _Rule(
        ("identified",),
        rf"(?P<head>\bIDENTIFIED\s+BY(?:\s+PASSWORD\b)?\s*)(?P<secret>{_QUOTED}|{_BARE})",
    ),
    # SQL: IDENTIFIED VIA|WITH plugin USING|BY|AS 'x', and MariaDB's ... OR plugin USING 'x'
    _Rule(
        ("identified", "using"),
        rf"(?P<head>(?:\bIDENTIFIED\s+(?:VIA|WITH)\s+{_PLUGIN}\s+(?:USING|BY|AS)"
        rf"|\bOR\s+{_PLUGIN}\s+(?:USING|BY))\s*)(?P<secret>{_QUOTED})",
    ),
    # SQL: PASSWORD('x'), OLD_PASSWORD('x'), USING PASSWORD('x')
    _Rule(("password",), rf"(?P<head>PASSWORD\s*\(\s*)(?P<secret>{_QUOTED})"),
    # SQL: SET PASSWORD [FOR user] = 'x'
    _Rule(("password",), rf"(?P<head>\bSET\s+PASSWORD\b[^=;]{{0,400}}=\s*)(?P<secret>{_QUOTED})"),
    # SQL: MASTER_PASSWORD = 'x', SOURCE_PASSWORD='x', PASSWORD 'x' (server options), and
    # comparisons such as WHERE password = 'x'
    _Rule(
        ("password",),
        rf"(?P<head>\b(?:MASTER_|SOURCE_)?PASSWORD(?:\s*=\s*|\s+))(?P<secret>{_QUOTED})",
    ),
    # SQL (MySQL 8): ... REPLACE 'current password'
    _Rule(("replace",), rf"(?P<head>\bREPLACE\s+)(?P<secret>{_QUOTED})"),
    # HTTP: Authorization: Bearer x / Basic x (the scheme stays)
    _Rule(
        ("authorization",),
        r"(?P<head>\b(?:Proxy-)?Authorization\s*[:=]\s*"
        r"(?:(?:Bearer|Basic|Digest|Token|Negotiate)\s+)?)(?P<secret>[^\s\"',;]+)",
    ),
    # A bearer token on its own
    _Rule(("bearer",), r"(?P<head>\bBearer\s+)(?P<secret>[A-Za-z0-9\-._~+/]+=*)"),
)


def redact(text: str) -> str:
    """``text`` with every password and token it recognises replaced by ``***``."""
    lowered = text.lower()
    for rule in _RULES:
        text = rule.apply(text, lowered)
    return text


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def _cut(text: str, limit: int) -> tuple[str, int]:
    """``text`` cut to at most ``limit`` UTF-8 bytes (never inside a character), and the
    number of bytes left out."""
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:
        return text, 0
    kept = data[:limit].decode("utf-8", errors="ignore")
    return kept, len(data) - _utf8_len(kept)


def _marked(kept: str, dropped: int) -> str:
    return f"{kept}…[{dropped} more bytes]" if dropped else kept


def truncate(text: str, limit: int = 2048) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, with ``…[N more bytes]`` appended if cut.

    The cut never splits a character; N counts every byte left out.
    """
    return _marked(*_cut(text, limit))


def excerpt(text: str, limit: int = 2048) -> str:
    """``truncate(redact(text), limit)``, but scanning at most ``4 * limit`` characters.

    What lies past the scanned head is cut anyway, and the head reaches far enough past the cut
    for every secret that starts in the kept part to be recognised (a quoted secret that the
    head's end cuts is hidden to the end). N counts the redacted head's bytes past the cut plus
    every byte of the unscanned rest.
    """
    scan = 4 * limit
    kept, dropped = _cut(redact(text[:scan]), limit)
    return _marked(kept, dropped + _utf8_len(text[scan:]))


# ------------------------------------------------------------------ SQL and fields, by meaning

#: A word that names a secret, anywhere in a statement (code, quotes or comments: when unsure,
#: hide). Statements holding one are shown as their kind only (`shown_sql`).
SECRET_WORDS = re.compile(
    r"pass|pwd|(?<![a-z])pw(?![a-z])|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credential|identified|crypt|encode|decode|authentication",
    re.IGNORECASE,
)
#: A query-string or form field whose name means a secret (after decoding, in any case).
SECRET_FIELDS = re.compile(
    r"pass|pwd|(?<![a-z])pw(?![a-z])|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credential|auth|session|cookie|signature",
    re.IGNORECASE,
)
#: What replaces a secret statement's text (after its kind) and a hidden value.
REDACTED = "[redacted]"
#: Of a statement, this many characters are looked at for `SECRET_WORDS` (a statement shown
#: is cut far shorter); of SQL whose facts were never read, this many are read.
SCAN_LIMIT = 16 * 1024

_KIND_WORDS = re.compile(
    r"(?:[ \t\n\r\x0b\x0c(]+|/\*(?![!+])[^*]*\*+(?:[^/*][^*]*\*+)*/|(?:--[ \t]|#)[^\n]*(?:\n|\Z))*"
    r"([A-Za-z]+)(?:[ \t\n\r\x0b\x0c]+([A-Za-z]+)(?![A-Za-z0-9_$]))?"
)
_KIND_FIRST = frozenset(
    {"CREATE", "ALTER", "DROP", "RENAME", "SET", "CHANGE", "START", "STOP", "SHOW", "FLUSH"}
)
_KIND_SECOND = frozenset(
    {
        "USER",
        "ROLE",
        "SERVER",
        "PASSWORD",
        "TABLE",
        "DATABASE",
        "SCHEMA",
        "VIEW",
        "INDEX",
        "PROCEDURE",
        "FUNCTION",
        "TRIGGER",
        "EVENT",
        "PACKAGE",
        "SEQUENCE",
        "MASTER",
        "REPLICATION",
        "REPLICA",
        "SLAVE",
        "DEFAULT",
        "GLOBAL",
        "SESSION",
        "STATEMENT",
        "INTO",
        "TEMPORARY",
        "OR",
        "TRANSACTION",
        "NAMES",
    }
)


def statement_kind(statement: str) -> str:
    """What a statement is, from its first words: ``CREATE USER``, ``SET PASSWORD``,
    ``SELECT``; ``(statement)`` when it does not start with a word (a comment that runs as
    code, say)."""
    match = _KIND_WORDS.match(statement)
    if match is None:
        return "(statement)"
    first, second = match.group(1).upper(), (match.group(2) or "").upper()
    return f"{first} {second}" if first in _KIND_FIRST and second in _KIND_SECOND else first


def secret_statements(facts: Any) -> list[bool]:
    """For each statement of ``facts`` (`gateway.sql.SQLFacts`): it may hold a secret, as the
    tokenizer saw it (``facts.secrets``: account statements, unreadable text) or because a
    word in it names one (`SECRET_WORDS`)."""
    flags = tuple(getattr(facts, "secrets", ()))
    statements = facts.statements
    return [
        (k < len(flags) and flags[k]) or SECRET_WORDS.search(text, 0, SCAN_LIMIT) is not None
        for k, text in enumerate(statements)
    ]


#: Reads SQL text into its facts (`gateway.sql.read_sql`, given by the caller: this layer
#: imports no gateway code).
Reader = Callable[[str], Any]


def shown_sql(sql: str, facts: Any = None, read: Reader | None = None) -> str:
    """``sql`` as a journal may show it: each statement that may hold a secret replaced by
    its kind, ``CREATE USER … [redacted]``; unchanged when none does. ``facts`` are the
    request's (read by the executor); without them the first `SCAN_LIMIT` characters are
    read here with ``read`` (a text cut there may look unreadable: then it is hidden), and
    without a reader the text is hidden."""
    if facts is None:
        if read is None:
            return REDACTED
        try:
            facts = read(sql[:SCAN_LIMIT])
        except Exception:  # never a reason to show the text
            return REDACTED
        cut = len(sql) > SCAN_LIMIT
    else:
        cut = False
    secret = secret_statements(facts)
    if not any(secret):
        return sql
    shown = [
        f"{statement_kind(text)} … {REDACTED}" if hidden else text
        for text, hidden in zip(facts.statements, secret)
    ]
    return "; ".join(shown) + (" …" if cut else "")


def field_name(raw: bytes) -> str:
    """A field name as a server may finally read it: ``+`` and ``%XX`` decoded, again while
    that changes it (``pass%2577ord`` is ``password`` to a client that decodes twice)."""
    text = raw.replace(b"+", b" ")
    for _ in range(4):
        decoded = unquote_to_bytes(text)
        if decoded == text:
            break
        text = decoded
    return text.decode("utf-8", "replace")


def _decoded(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")


def shown_target(uri: bytes, facts: Any = None, read: Reader | None = None) -> str:
    """A request target (path and query, as received) decoded for a journal: fields whose
    name means a secret (`SECRET_FIELDS`, however encoded) show ``***``; the SQL of ``/db``
    (a JSON query) and of ``/dbform`` (its ``SQL`` field) shows as `shown_sql`, and its
    ``PARAMS`` hidden when a statement is. A ``/db`` query that is not JSON is hidden when
    it holds a `SECRET_WORDS` word."""
    path, sep, query = uri.partition(b"?")
    if not sep:
        return _decoded(path)
    endpoint = path.lstrip(b"/").split(b"/", 1)[0]
    if endpoint == b"db":
        return _decoded(path) + "?" + _shown_json_query(_decoded(query), facts, read)
    fields = []
    hide_params = False
    form = endpoint == b"dbform"
    for part in query.split(b"&"):
        raw_name, eq, raw_value = part.partition(b"=")
        name = field_name(raw_name)
        if eq and SECRET_FIELDS.search(name):
            fields.append(f"{_decoded(raw_name)}={MASK}")
        elif form and eq and name.strip().upper() == "SQL":
            sql = _decoded(raw_value)
            shown = shown_sql(sql, facts, read)
            hide_params = hide_params or shown is not sql
            fields.append(f"{_decoded(raw_name)}={shown}")
        else:
            fields.append(_decoded(part))
    if hide_params:
        fields = [
            f"{text.partition('=')[0]}={REDACTED}"
            if text.partition("=")[0].strip().upper() == "PARAMS"
            else text
            for text in fields
        ]
    return _decoded(path) + "?" + "&".join(fields)


def _shown_json_query(text: str, facts: Any, read: Reader | None) -> str:
    try:
        obj = json.loads(text)
    except ValueError:
        return REDACTED if SECRET_WORDS.search(text) else text
    if not isinstance(obj, dict):
        return text
    sql = obj.get("SQL")
    shown = shown_sql(sql, facts, read) if isinstance(sql, str) else sql
    secret_keys = [key for key in obj if isinstance(key, str) and SECRET_FIELDS.search(key)]
    if shown is sql and not secret_keys:
        return text
    out = dict(obj)
    if shown is not sql:
        out["SQL"] = shown
        if "PARAMS" in out:
            out["PARAMS"] = REDACTED
    for key in secret_keys:
        out[key] = MASK
    return json.dumps(out, ensure_ascii=False)


def shown_error(error: str) -> str:
    """An error about a statement that may hold a secret: the server's message quotes the
    text (``... near 'IDENTIFIED BY ...'``), so everything from its first quote is hidden."""
    quote = min(
        (i for i in (error.find("'"), error.find('"'), error.find("`")) if i >= 0), default=-1
    )
    return error if quote < 0 else error[:quote] + REDACTED
