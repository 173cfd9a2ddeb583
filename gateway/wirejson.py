"""Rows rendered from the wire: a text-protocol result set straight to JSON (pure, no I/O).

For an answer in the JSON format that is not cached, the reactor lane (:mod:`gateway.lane`)
renders the rows from the bytes the server sent, in one pass, without building a Python value
per field and converting it back: integers and DECIMAL digits are copied as they came, text is
checked as UTF-8 and escaped once, NULL is null. The answer it gives is the one the exact-value
model gives (:func:`gateway.results.result_set` and :func:`api.render.render_json`): byte for
byte, as tests/unit/test_wirejson.py and tests/integration/test_wirejson.py hold it.

It takes only what it can render that way: columns of integer (without ZEROFILL, whose text is
padded), DECIMAL, temporal, YEAR, and non-binary text types; each number in the JSON number
syntax, each text valid UTF-8; one whole result set in the classic protocol (EOF packets) and
nothing after it. For any other answer, :func:`json_rows` says None and the lane reads it as
before, through the driver (FLOAT and DOUBLE keep the driver's conversion, binary values their
base64, BIT its integer).

:func:`json_rows_py` is the reference; ``gateway/_wirejson.c`` is its compiled twin, built by
``pip install`` when a C compiler is there, and used when it was (:data:`COMPILED`).
"""

from __future__ import annotations

import re
from functools import lru_cache

import orjson

from gateway.results import type_name

#: Column kinds.
NUMBER = 1
TEXT = 2
#: Columns over this many are not rendered here.
MAX_COLUMNS = 4096
_ZEROFILL_FLAG = 0x40
_MORE_RESULTS = 0x0008
_BINARY_CHARSET = 63
_NUMBER_TYPES = frozenset({0, 1, 2, 3, 8, 9, 246})
_TEMPORAL_TYPES = frozenset({7, 10, 11, 12, 13, 14})
_TEXT_TYPES = frozenset({15, 247, 248, 249, 250, 251, 252, 253, 254})
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")

#: (end, status, defs_start, defs_end, rows_json, count): the answer's length, the final EOF's
#: status flags, where its column definitions are, the rows (at most ``max_rows``) as a JSON
#: array, and how many rows the answer holds.
Rendered = tuple[int, int, int, int, bytes, int]


def column_kind(type_code: int, charset: int, flags: int) -> int:
    """How a column's values are rendered: NUMBER, TEXT, or 0 (not here)."""
    if type_code in _NUMBER_TYPES:
        return 0 if flags & _ZEROFILL_FLAG else NUMBER
    if type_code in _TEMPORAL_TYPES:
        return TEXT
    if type_code in _TEXT_TYPES:
        return 0 if charset == _BINARY_CHARSET else TEXT
    return 0


def _lenenc(b: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of a length-encoded integer; value -1 when cut or
    malformed, -2 for NULL (0xFB)."""
    if pos >= end:
        return -1, pos
    first = b[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return -2, pos + 1
    size = 2 if first == 0xFC else 3 if first == 0xFD else 8 if first == 0xFE else 0
    if not size or pos + 1 + size > end:
        return -1, pos
    return int.from_bytes(b[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def _column(b: bytes, pos: int) -> tuple[int, bytes, int, int, int] | None:
    """The column definition packet at ``pos``: (its end, the column name, charset, type
    code, flags); None when it is cut or not in the shape MariaDB sends."""
    n = len(b)
    if pos + 4 > n:
        return None
    length = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16
    p, end = pos + 4, pos + 4 + length
    if length == 0xFFFFFF or end > n:
        return None
    name = b""
    for field in range(6):  # catalog, schema, table, org_table, name, org_name
        size, p = _lenenc(b, p, end)
        if size < 0 or p + size > end:
            return None
        if field == 4:
            name = b[p : p + size]
        p += size
    # MariaDB's extended metadata (a data type plugin's name, a format): empty here
    if p + 14 == end and b[p] == 0x00:
        p += 1
    if p + 13 != end or b[p] != 0x0C:
        return None
    return end, name, b[p + 1] | b[p + 2] << 8, b[p + 7], b[p + 8] | b[p + 9] << 8


def _definitions(b: bytes, start: int, columns: int) -> tuple[int, list[int]] | None:
    """The end of ``columns`` column definitions from ``start`` and each column's kind."""
    pos = start
    kinds = []
    for _ in range(columns):
        column = _column(b, pos)
        if column is None:
            return None
        pos, _, charset, type_code, flags = column
        kind = column_kind(type_code, charset, flags)
        if not kind:
            return None
        kinds.append(kind)
    return pos, kinds


def json_rows_py(b: bytes, max_rows: int) -> Rendered | None:
    """The reference: the rows of the answer ``b`` (all of it, as peeked) as a JSON array,
    at most ``max_rows`` of them (-1: all); None for an answer not rendered here."""
    n = len(b)
    if n < 5:
        return None
    end = 4 + (b[0] | b[1] << 8 | b[2] << 16)
    if end > n or b[0:3] == b"\xff\xff\xff" or b[4] in (0x00, 0xFF, 0xFB):
        return None
    columns, p = _lenenc(b, 4, end)
    # (MariaDB's metadata caching adds one byte, 1 when the definitions follow)
    if columns <= 0 or columns > MAX_COLUMNS or not (p == end or (p == end - 1 and b[p] == 1)):
        return None
    found = _definitions(b, end, columns)
    if found is None:
        return None
    defs_end, kinds = found
    pos = defs_end
    if pos + 4 > n:
        return None
    length = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16
    if pos + 4 + length > n or not 1 <= length < 9 or b[pos + 4] != 0xFE:
        return None
    pos += 4 + length
    rows: list[bytes] = []
    count = 0
    while True:
        if pos + 4 >= n:
            return None
        length = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16
        p, end = pos + 4, pos + 4 + length
        if end > n or length == 0xFFFFFF:
            return None
        if length < 9 and b[p] == 0xFE:
            if length < 5:
                return None
            status = b[p + 3] | b[p + 4] << 8
            if status & _MORE_RESULTS or end != n:
                return None
            break
        if b[p] == 0xFF:
            return None  # an error after rows
        values: list[bytes] = []
        for kind in kinds:
            size, p = _lenenc(b, p, end)
            if size == -2:
                values.append(b"null")
                continue
            if size < 0 or p + size > end:
                return None
            value = b[p : p + size]
            p += size
            if kind == NUMBER:
                if not _NUMBER.fullmatch(value):
                    return None
                values.append(value)
            else:
                try:
                    values.append(orjson.dumps(value.decode("utf-8")))
                except UnicodeDecodeError:
                    return None
        if p != end:
            return None
        if max_rows < 0 or count < max_rows:
            rows.append(b"[" + b",".join(values) + b"]")
        count += 1
        pos = end
    defs_start = 4 + (b[0] | b[1] << 8 | b[2] << 16)  # (after the column count's packet)
    return n, status, defs_start, defs_end, b"[" + b",".join(rows) + b"]", count


try:
    from gateway._wirejson import json_rows as _compiled
except ImportError:  # (no C compiler at install time: the reference does the work)
    _compiled = None

#: True when the compiled twin is there.
COMPILED = _compiled is not None
json_rows = _compiled if _compiled is not None else json_rows_py


@lru_cache(maxsize=1024)
def header_and_types(definitions: bytes) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The column names and type names of a result set's column definitions (the packets,
    as sent), as the driver's description gives them; None when a name is not UTF-8. The
    same statements come back again and again: their definitions are read once."""
    names: list[str] = []
    types: list[str] = []
    pos = 0
    while pos < len(definitions):
        column = _column(definitions, pos)
        if column is None:
            return None
        pos, name, _, type_code, _ = column
        try:
            names.append(name.decode("utf-8"))
        except UnicodeDecodeError:
            return None
        types.append(type_name(type_code))
    return tuple(names), tuple(types)
