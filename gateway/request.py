"""The DBSlayer request model: parse and validate a request object (pure, no I/O).

A request arrives as a JSON object (the whole query string of ``GET /db?...``, a ``POST /db``
body) or as HTML form fields (``/dbform``). Both end up as one :class:`Request`; anything that
is not a valid request raises :class:`RequestError` with a message that says what to do.
"""

from __future__ import annotations

import binascii
import difflib
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

import attrs
import orjson

from gateway.position import MAX_DOMAINS, BadPosition, format_gtids, parse_gtids
from gateway.sql import SQLFacts, read_sql

#: Formats a client may ask for with ``FORMAT``.
FORMATS = ("json", "xml", "php", "python", "csv")

#: Boolean keys answered from the backend connection (reference info flags).
INFO_FLAGS = ("STAT", "CLIENT_INFO", "HOST_INFO", "SERVER_VERSION", "CLIENT_VERSION", "SERVER_NAME")

#: Every boolean key of the protocol.
BOOL_KEYS = INFO_FLAGS + ("ROLLBACK_ON_ERROR", "SLAYER_DEBUG_RETURN_INPUT", "SLAYER_HELP")

#: ``SLAYER_HELP`` answer: every key with a one-line description.
HELP = {
    "SQL": "in(string) one or more statements separated by ';' : out RESULT (an array when several)",
    "SERVER": "in(string) backend name, where backends are named : out SERVER names the backend that ran it",
    "FORMAT": "in(string) json (default), xml, php (PHP serialize()), python (a Python literal), csv",
    "PARAMS": "in(array|object) bind parameters for %s or %(name)s placeholders, escaped by the driver",
    "ROLLBACK_ON_ERROR": "in(boolean) run the statements in one transaction, rolled back on an SQL error",
    "TIMEOUT": "in(number) milliseconds; lowers (never raises) the statement time limit: 504 past it",
    "CACHE": "in(number) seconds; a cached answer up to this old is fine (read-only statements)",
    "AFTER": "in(string) a GTID position, as a write's answer gives it under GTID: the read runs "
    "where that write has been applied (read your writes; never from the cache)",
    "STAT": "in(boolean) : out(string) result of mysql_stat()",
    "CLIENT_INFO": "in(boolean) : out(string) result of mysql_get_client_info()",
    "HOST_INFO": "in(boolean) : out(string) result of mysql_get_host_info()",
    "SERVER_VERSION": "in(boolean) : out(long) result of mysql_get_server_version()",
    "CLIENT_VERSION": "in(boolean) : out(long) result of mysql_get_client_version()",
    "SERVER_NAME": "in(boolean) : out(string) name of the backend that answered",
    "SLAYER_DEBUG_RETURN_INPUT": "in(boolean) : out(object) the request as the gateway parsed it",
    "SLAYER_HELP": "in(boolean) : out(object) this list",
}

#: Every key of a request object, in the order SLAYER_HELP lists them: the one list the parser,
#: SLAYER_HELP and the OpenAPI document (api/openapi.py) are built from.
KEYS = tuple(HELP)
_KNOWN_KEYS = frozenset(KEYS)
#: Unknown keys named in one error (the rest are counted), and the characters shown of each.
_UNKNOWN_SHOWN = 5
_KEY_SHOWN = 64

_NO_ACTION = (
    'nothing to do: send SQL or an info flag, e.g. {"SQL":"SELECT 1"}; TRY {"SLAYER_HELP":true }'
)
_FORM_TRUE = frozenset({"true", "1", "on", "yes"})
_FORM_FALSE = frozenset({"false", "0", "off", "no", ""})


class RequestError(Exception):
    """The request is not a valid DBSlayer request (HTTP 400)."""

    status = 400


@attrs.frozen(slots=True)
class Request:
    """One parsed DBSlayer request."""

    sql: str | None = None
    server: str | None = None
    format: str = "json"
    params: tuple[Any, ...] | dict[str, Any] | None = None
    rollback_on_error: bool = False
    info: tuple[str, ...] = ()
    debug_return_input: bool = False
    help: bool = False
    timeout_ms: float | None = None
    cache_s: float | None = None
    #: AFTER: the position (a GTID list, normalised) the read must see (gateway.position).
    after: str | None = None
    #: The request object as received, echoed by SLAYER_DEBUG_RETURN_INPUT.
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    #: The facts of the SQL once read (see :meth:`read`).
    _facts: SQLFacts | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @property
    def needs_backend(self) -> bool:
        """True when answering needs a database connection."""
        return self.sql is not None or bool(self.info)

    def read(self, dialect: str = "mysql") -> SQLFacts | None:
        """The facts of the request's SQL (statements, kinds, session effects...), read once
        by the tokenizer the first time they are asked for (after authentication) and carried
        on the request from then on; None without SQL."""
        facts = self._facts
        if facts is None and self.sql is not None:
            facts = read_sql(self.sql, dialect)
            object.__setattr__(self, "_facts", facts)
        return facts

    def adopt(self, facts: SQLFacts) -> None:
        """Carry ``facts`` read elsewhere (a big text is read in a process of its own)."""
        object.__setattr__(self, "_facts", facts)

    @property
    def facts(self) -> SQLFacts | None:
        """The facts if they were read already (None otherwise, or without SQL)."""
        return self._facts


def decode_query(raw: bytes) -> Any:
    """Decode a ``/db`` query string: ``+`` is a space, ``%XX`` a byte, the bytes UTF-8 JSON."""
    if not raw:
        raise RequestError(
            'empty request: put a URL-encoded JSON object after "?", e.g. /db?{"SQL":"SELECT 1"}'
        )
    return loads_json(percent_decode(raw.replace(b"+", b" ")), "query string")


#: A % that does not start a valid escape (two hex digits).
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def percent_decode(raw: bytes) -> bytes:
    """``urllib.parse.unquote_to_bytes(raw)``, three times faster on what clients send.

    When every % starts a valid escape, the escapes are quoted-printable ones with % for =
    (a literal = first written =3D), which ``binascii.a2b_qp`` decodes in C: exactly the same
    bytes, since every = it then sees is followed by two hex digits (no soft line break, no
    lone =). Anything else goes to the standard decoder."""
    if b"%" not in raw:
        return raw
    if _BAD_ESCAPE.search(raw) is not None:
        return unquote_to_bytes(raw)
    return binascii.a2b_qp(raw.replace(b"=", b"=3D").replace(b"%", b"="))


def loads_json(data: bytes, where: str) -> Any:
    """Parse JSON text, turning every failure (bad UTF-8 included) into a RequestError."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        reason = str(e).split(":", 1)[0]
        raise RequestError(f"the {where} is not valid UTF-8 JSON ({reason})") from None


def parse_request(obj: Any, *, ignore_unknown_keys: bool = False) -> Request:
    """Validate a decoded request object and build the Request.

    A key that is not one of :data:`KEYS` is an error naming the closest known key (a typo
    such as ``ROLLBACK_ON_ERRORS`` would otherwise run without what it asked for), unless
    ``ignore_unknown_keys`` (``--compat original``: the reference ignored them)."""
    if not isinstance(obj, dict):
        raise RequestError(
            f'a request is a JSON object, got {_json_kind(obj)}: send {{"SQL":"..."}}'
        )
    if len(obj) == 1:  # the common request, {"SQL": "..."}: the checks below, in short
        sql = obj.get("SQL")
        if type(sql) is str and sql.strip():
            return Request(sql=sql, raw=obj)
    if not ignore_unknown_keys and not _KNOWN_KEYS.issuperset(obj):
        raise RequestError(unknown_keys_message([key for key in obj if key not in _KNOWN_KEYS]))
    sql = _optional(obj, "SQL", str, "a string")
    if sql is not None and not sql.strip():
        raise RequestError("SQL is empty")
    server = _optional(obj, "SERVER", str, "a string")
    fmt = _optional(obj, "FORMAT", str, "a string")
    fmt = "json" if fmt is None else fmt.lower()
    if fmt not in FORMATS:
        raise RequestError(f"FORMAT must be one of {', '.join(FORMATS)}, got {obj['FORMAT']!r}")
    flags = {key: _flag(obj, key) for key in BOOL_KEYS}
    params = _params(obj.get("PARAMS"))
    if params is not None and sql is None:
        raise RequestError("PARAMS needs SQL")
    timeout = _positive_number(obj, "TIMEOUT")
    cache = _positive_number(obj, "CACHE", allow_zero=True)
    after = _position(obj)
    if after is not None and sql is None:
        raise RequestError("AFTER needs SQL")
    info = tuple(key for key in INFO_FLAGS if flags[key])
    request = Request(
        sql=sql,
        server=server,
        format=fmt,
        params=params,
        rollback_on_error=flags["ROLLBACK_ON_ERROR"],
        info=info,
        debug_return_input=flags["SLAYER_DEBUG_RETURN_INPUT"],
        help=flags["SLAYER_HELP"],
        timeout_ms=timeout,
        cache_s=cache,
        after=after,
        raw=obj,
    )
    if not (request.needs_backend or request.help or request.debug_return_input):
        raise RequestError(_NO_ACTION)
    return request


def unknown_keys_message(unknown: list[str]) -> str:
    """The error for request keys the gateway does not know: each (the first few) with the
    closest known key when one is close (compared without regard to case), then every known
    key."""
    named = []
    for key in unknown[:_UNKNOWN_SHOWN]:
        shown = key if _PLAIN_KEY.fullmatch(key) else _escaped(key)
        if len(shown) > _KEY_SHOWN:
            shown = shown[:_KEY_SHOWN] + "..."
        closest = (
            difflib.get_close_matches(key.upper(), KEYS, n=1, cutoff=0.6)
            if len(key) <= _KEY_SHOWN
            else []
        )
        named.append(f"{shown} (did you mean {closest[0]}?)" if closest else shown)
    if len(unknown) > _UNKNOWN_SHOWN:
        named.append(f"and {len(unknown) - _UNKNOWN_SHOWN} more")
    what = "unknown request key" if len(unknown) == 1 else "unknown request keys"
    return f"{what} {', '.join(named)}; known keys: {', '.join(KEYS)}"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+")


def _escaped(key: str) -> str:
    """A key as a JSON string with every character that is not printable escaped (JSON's own
    escapes cover only ASCII controls: U+202E or U+2028 would reach journals and logs raw)."""
    text = orjson.dumps(key).decode()
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def form_to_object(fields: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``/dbform`` fields into a request object.

    Flags accept true/1/on/yes (and false/0/off/no/empty), ``PARAMS`` is JSON text and
    ``TIMEOUT``/``CACHE`` are numbers; every other field stays a string.
    """
    obj: dict[str, Any] = {}
    for key, value in fields.items():
        if key in BOOL_KEYS:
            lowered = value.strip().lower()
            if lowered in _FORM_TRUE:
                obj[key] = True
            elif lowered in _FORM_FALSE:
                obj[key] = False
            else:
                raise RequestError(f"{key} must be true/1/on or false/0/off, got {value!r}")
        elif key == "PARAMS":
            obj[key] = loads_json(value.encode(), "PARAMS field") if value.strip() else None
        elif key == "AFTER":
            if value.strip():  # (an empty field: no position)
                obj[key] = value.strip()
        elif key in ("TIMEOUT", "CACHE"):
            if value.strip():
                try:
                    obj[key] = float(value)
                except ValueError:
                    raise RequestError(f"{key} must be a number, got {value!r}") from None
        else:
            obj[key] = value
    return obj


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _optional(obj: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise RequestError(f"{key} must be {what}, got {_json_kind(value)}")
    return value


def _flag(obj: dict[str, Any], key: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{key} must be true or false, got {_json_kind(value)}")
    return value


def _positive_number(obj: dict[str, Any], key: str, allow_zero: bool = False) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{key} must be a number, got {_json_kind(value)}")
    if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
        raise RequestError(f"{key} must be a positive number, got {value}")
    return float(value)


_SCALARS = (str, int, float, bool, type(None))


def _position(obj: dict[str, Any]) -> str | None:
    """AFTER: a GTID list such as ``0-1-1234`` (several domains comma-separated), normalised
    (domains in order, each once with its highest seq_no)."""
    value = obj.get("AFTER")
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(
            f'AFTER must be a string, a GTID position like "0-1-1234", got {_json_kind(value)}'
        )
    try:
        return format_gtids(parse_gtids(value))
    except BadPosition:
        shown = value if len(value) <= _KEY_SHOWN else value[:_KEY_SHOWN] + "..."
        raise RequestError(
            f"AFTER must be a GTID position as a write's answer gives it under GTID, like "
            f'"0-1-1234" (domain-server-sequence, several domains comma-separated, at most '
            f"{MAX_DOMAINS}), got {_escaped(shown)}"
        ) from None


def _params(value: Any) -> tuple[Any, ...] | dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, list):
        items = value
        result: tuple[Any, ...] | dict[str, Any] = tuple(value)
    elif isinstance(value, dict):
        items = list(value.values())
        result = value
    else:
        raise RequestError(f"PARAMS must be an array or an object, got {_json_kind(value)}")
    for item in items:
        if not isinstance(item, _SCALARS):
            raise RequestError(
                f"PARAMS values must be strings, numbers, booleans or null, got {_json_kind(item)}"
            )
        if isinstance(item, float) and item.is_integer() and abs(item) >= 2**63:
            # The JSON parser keeps integers exact up to 64 bits and turns wider ones into
            # floats: binding one would silently change its digits.
            raise RequestError(
                "a PARAMS number is too large to bind exactly; send it as a string, e.g. "
                '"123456789012345678901234567890"'
            )
    return result
