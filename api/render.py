"""Render one wire answer (the gateway's JSON-shaped reply) as bytes in a FORMAT.

Formats:

* ``json``   -- orjson; ``Decimal`` and ints beyond 64 bits come out as exact
  JSON numbers (never a float round trip, never a string).
* ``xml``    -- the reference DBSlayer shape: ``<object><key>K</key><value>V
  </value>...</object>``, ``<array><item>V</item>...</array>``, an empty array
  as the text ``[]``; no XML declaration.
* ``php``    -- PHP ``serialize()`` text for ``unserialize()``; ints outside
  PHP's int64 range and Decimals become strings (as mysqli returns them).
* ``python`` -- a literal for ``ast.literal_eval``; Decimals as number literals.
* ``csv``    -- RFC 4180 result sets only (header line, then rows; several
  results separated by one empty line).  Answers without ``RESULT``, or with
  an error next to it, raise :class:`CsvNotApplicable`.

Everywhere NaN/Infinity (float or Decimal) is written as null, since no
format (or JSON) has an exact literal for them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

__all__ = [
    "FORMATS",
    "CsvNotApplicable",
    "render",
    "render_csv",
    "render_json",
    "render_php",
    "render_python",
    "render_xml",
]

FORMATS: tuple[str, ...] = ("json", "xml", "php", "python", "csv")


class CsvNotApplicable(ValueError):
    """The answer carries no result set (or carries an error) and cannot be CSV."""


# --------------------------------------------------------------------- json

_ORJSON_MIN = -(2**63)
_ORJSON_MAX = 2**64 - 1


def _json_default(obj: Any) -> Any:
    """orjson hook: Decimal as an exact number fragment, in positional notation (the
    server's digits: ``0.000001``, never ``str()``'s ``1E-6``); non-finite as null."""
    if isinstance(obj, Decimal):
        return orjson.Fragment(format(obj, "f").encode()) if obj.is_finite() else None
    raise TypeError(f"cannot render {type(obj).__name__} as JSON")


def _fragment_big_ints(obj: Any) -> Any:
    """Copy of `obj` with ints outside orjson's range replaced by Fragments."""
    if isinstance(obj, dict):
        return {k: _fragment_big_ints(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_fragment_big_ints(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and not _ORJSON_MIN <= obj <= _ORJSON_MAX:
        return orjson.Fragment(str(obj).encode())
    return obj


def render_json(answer: dict[str, Any]) -> bytes:
    """JSON via one orjson call; ints beyond 64 bits take a slower exact path."""
    try:
        return orjson.dumps(answer, default=_json_default)
    except orjson.JSONEncodeError:
        # Most likely an int beyond 64 bits; any other cause fails again here.
        return orjson.dumps(_fragment_big_ints(answer), default=_json_default)


# ---------------------------------------------------------------------- xml

_XML_SPECIAL = re.compile("[&<>\x00-\x1f\ufffe\uffff]")
_XML_TABLE: dict[int, str | None] = {c: None for c in range(0x20)}
_XML_TABLE.update(
    {
        ord("&"): "&amp;",
        ord("<"): "&lt;",
        ord(">"): "&gt;",
        ord("\t"): "&#x09;",
        ord("\n"): "&#x0A;",
        ord("\r"): "&#x0D;",
        0xFFFE: None,
        0xFFFF: None,
    }
)


def _xml_text(s: str) -> str:
    """Escape `s` for XML 1.0 text, dropping characters XML cannot carry."""
    return s.translate(_XML_TABLE) if _XML_SPECIAL.search(s) else s


def _xml(v: Any, out: list[str]) -> None:
    """Append the XML for `v` to `out`."""
    if isinstance(v, str):
        out.append(_xml_text(v))
    elif v is None:
        out.append("null")
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(repr(v) if math.isfinite(v) else "null")
    elif isinstance(v, Decimal):
        out.append(str(v) if v.is_finite() else "null")
    elif isinstance(v, dict):
        out.append("<object>")
        for k, item in v.items():
            out.append(f"<key>{_xml_text(str(k))}</key><value>")
            _xml(item, out)
            out.append("</value>")
        out.append("</object>")
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        out.append("<array>")
        for item in v:
            out.append("<item>")
            _xml(item, out)
            out.append("</item>")
        out.append("</array>")
    else:
        raise TypeError(f"cannot render {type(v).__name__} as XML")


def render_xml(answer: dict[str, Any]) -> bytes:
    """XML in the reference DBSlayer shape, UTF-8, no declaration."""
    out: list[str] = []
    _xml(answer, out)
    return "".join(out).encode()


# ---------------------------------------------------------------------- php

_PHP_MIN = -(2**63)
_PHP_MAX = 2**63 - 1


def _php_str(s: str) -> bytes:
    """PHP string: length in UTF-8 bytes, content raw."""
    b = s.encode()
    return b's:%d:"%s";' % (len(b), b)


def _php(v: Any, out: list[bytes]) -> None:
    """Append the PHP serialize() text for `v` to `out`."""
    if isinstance(v, str):
        out.append(_php_str(v))
    elif v is None:
        out.append(b"N;")
    elif isinstance(v, bool):
        out.append(b"b:1;" if v else b"b:0;")
    elif isinstance(v, int):
        if _PHP_MIN <= v <= _PHP_MAX:
            out.append(b"i:%d;" % v)
        else:
            out.append(_php_str(str(v)))
    elif isinstance(v, float):
        out.append(b"d:%s;" % repr(v).encode() if math.isfinite(v) else b"N;")
    elif isinstance(v, Decimal):
        out.append(_php_str(str(v)) if v.is_finite() else b"N;")
    elif isinstance(v, dict):
        out.append(b"a:%d:{" % len(v))
        for k, item in v.items():
            out.append(b"i:%d;" % k if type(k) is int else _php_str(str(k)))
            _php(item, out)
        out.append(b"}")
    elif isinstance(v, (list, tuple)):
        out.append(b"a:%d:{" % len(v))
        for i, item in enumerate(v):
            out.append(b"i:%d;" % i)
            _php(item, out)
        out.append(b"}")
    else:
        raise TypeError(f"cannot render {type(v).__name__} as PHP")


def render_php(answer: dict[str, Any]) -> bytes:
    """PHP serialize() text (arrays for lists and dicts)."""
    out: list[bytes] = []
    _php(answer, out)
    return b"".join(out)


# ------------------------------------------------------------------- python


def _py(v: Any, out: list[str]) -> None:
    """Append the Python literal for `v` to `out`."""
    if v is None or isinstance(v, (str, bool)):
        out.append(repr(v))
    elif isinstance(v, int):
        out.append(str(int(v)))
    elif isinstance(v, float):
        out.append(repr(v) if math.isfinite(v) else "None")
    elif isinstance(v, Decimal):
        out.append(str(v) if v.is_finite() else "None")
    elif isinstance(v, dict):
        out.append("{")
        for n, (k, item) in enumerate(v.items()):
            out.append(f"{', ' if n else ''}{k!r}: ")
            _py(item, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for n, item in enumerate(v):
            if n:
                out.append(", ")
            _py(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot render {type(v).__name__} as Python")


def render_python(answer: dict[str, Any]) -> bytes:
    """A Python literal for ast.literal_eval, UTF-8, newline-terminated."""
    out: list[str] = []
    _py(answer, out)
    out.append("\n")
    return "".join(out).encode()


# ---------------------------------------------------------------------- csv

_CSV_QUOTE = re.compile(r'[,"\r\n]|^[ \t]|[ \t]$')


def _csv_field(v: Any) -> str:
    """One CSV field: NULL empty and unquoted, strings quoted when needed."""
    if isinstance(v, str):
        if not v or _CSV_QUOTE.search(v):
            return '"' + v.replace('"', '""') + '"'
        return v
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    if isinstance(v, Decimal):
        return str(v) if v.is_finite() else ""
    # Nested values never come from a row; carry them as JSON text.
    return _csv_field(render_json(v).decode())


def _csv_line(values: Any) -> str:
    """One CSV record with its CRLF."""
    return ",".join(_csv_field(v) for v in values) + "\r\n"


def _csv_result(result: Any) -> str:
    """One result: a result set as header + rows, else its keys + one row."""
    if not isinstance(result, dict):
        raise CsvNotApplicable("FORMAT csv: a RESULT entry is not an object")
    if "HEADER" in result:
        lines = [_csv_line(result["HEADER"])]
        lines.extend(_csv_line(row) for row in result.get("ROWS") or ())
        return "".join(lines)
    return _csv_line(result.keys()) + _csv_line(result.values())


def render_csv(answer: dict[str, Any]) -> bytes:
    """CSV of the answer's result sets; raises CsvNotApplicable otherwise."""
    if "MYSQL_ERRNO" in answer:
        raise CsvNotApplicable(
            "FORMAT csv cannot carry the SQL error of this answer "
            f"(MYSQL_ERRNO {answer['MYSQL_ERRNO']}: {answer.get('MYSQL_ERROR', '')})"
        )
    if "ERROR" in answer:
        raise CsvNotApplicable(
            f"FORMAT csv cannot carry the gateway error of this answer: {answer['ERROR']}"
        )
    if "RESULT" not in answer:
        raise CsvNotApplicable("FORMAT csv carries result sets only; this answer has none")
    results = answer["RESULT"]
    if isinstance(results, dict):
        results = [results]
    elif not isinstance(results, list):
        raise CsvNotApplicable("FORMAT csv: RESULT is neither an object nor a list")
    return "\r\n".join(_csv_result(r) for r in results).encode()


# ------------------------------------------------------------------ dispatch

_RENDERERS: dict[str, tuple[Callable[[dict[str, Any]], bytes], bytes]] = {
    "json": (render_json, b"application/json"),
    "xml": (render_xml, b"text/xml; charset=utf-8"),
    "php": (render_php, b"text/plain; charset=utf-8"),
    "python": (render_python, b"text/x-python; charset=utf-8"),
    "csv": (render_csv, b"text/csv; charset=utf-8"),
}
#: The content type of each FORMAT's answers (the OpenAPI document names them).
CONTENT_TYPES = {fmt: content_type for fmt, (_, content_type) in _RENDERERS.items()}


def render(answer: dict[str, Any], fmt: str) -> tuple[bytes, bytes]:
    """Return (body, content_type) for `answer` in format `fmt` (one of FORMATS).

    Raises ValueError for an unknown format (and CsvNotApplicable, a
    ValueError, when csv cannot carry the answer).
    """
    try:
        func, content_type = _RENDERERS[fmt]
    except (KeyError, TypeError):
        raise ValueError(f"unknown FORMAT {fmt!r}; expected one of {', '.join(FORMATS)}") from None
    return func(answer), content_type
