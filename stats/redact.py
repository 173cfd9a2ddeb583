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

import re
from collections.abc import Callable

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
