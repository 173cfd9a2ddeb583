"""Unit tests for rows rendered from the wire (gateway.wirejson and gateway/_wirejson.c).

Answers are built here packet by packet as MariaDB sends them (the classic protocol: column
count, column definitions, EOF, rows of length-encoded strings, EOF). The pure-Python
reference must render what it takes exactly as the exact-value path would (the values parsed
to Python, then orjson), and refuse every other shape; the compiled twin must give the same
verdict as the reference on every input, valid or mangled (thousands of them, fixed seeds).
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
import pytest

from gateway import wirejson
from gateway.wirejson import header_and_types, json_rows_py

try:
    from gateway._wirejson import json_rows as compiled
except ImportError:  # (built by pip install when a C compiler is there)
    compiled = None

needs_compiled = pytest.mark.skipif(compiled is None, reason="gateway._wirejson is not built")

LONG, LONGLONG, NEWDECIMAL, DOUBLE, DATETIME, VAR_STRING, BLOB, BIT, NULL_TYPE, JSON_TYPE = (
    3,
    8,
    246,
    5,
    12,
    253,
    252,
    16,
    6,
    245,
)
UTF8MB4, BINARY = 45, 63
ZEROFILL = 0x40


def lenenc(n: int) -> bytes:
    if n < 0xFB:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def lenstr(b: bytes) -> bytes:
    return lenenc(len(b)) + b


def packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload


def column(
    name: str,
    type_code: int,
    charset: int = UTF8MB4,
    flags: int = 0,
    extended: bool = True,
) -> bytes:
    payload = b"".join(lenstr(x) for x in (b"def", b"db", b"t", b"t", name.encode(), name.encode()))
    if extended:
        payload += b"\x00"  # MariaDB's empty extended metadata
    payload += b"\x0c" + struct.pack("<HIBHB", charset, 255, type_code, flags, 0) + b"\x00\x00"
    return payload


def answer(
    columns: list[bytes],
    rows: Sequence[Sequence[bytes | None]],
    status: int = 0x0002,
    cache_byte: bool = True,
) -> bytes:
    seq = 1
    out = [packet(seq, lenenc(len(columns)) + (b"\x01" if cache_byte else b""))]
    for c in columns:
        seq += 1
        out.append(packet(seq, c))
    seq += 1
    out.append(packet(seq, b"\xfe\x00\x00" + struct.pack("<H", status)))
    for row in rows:
        seq += 1
        out.append(packet(seq, b"".join(b"\xfb" if v is None else lenstr(v) for v in row)))
    seq += 1
    out.append(packet(seq, b"\xfe\x00\x00" + struct.pack("<H", status)))
    return b"".join(out)


def expected(rows: list[list[Any]]) -> bytes:
    """What the exact-value path renders (api.render.render_json's rules)."""
    from api.render import _json_default

    return orjson.dumps(rows, default=_json_default)


def both(data: bytes, max_rows: int = -1) -> Any:
    reference = json_rows_py(data, max_rows)
    if compiled is not None:
        assert compiled(data, max_rows) == reference
    return reference


def test_common_row() -> None:
    cols = [column("id", LONG), column("name", VAR_STRING), column("at", DATETIME)]
    data = answer(cols, [[b"42", b"user42", b"2024-01-01 00:42:00"], [b"-7", None, None]])
    end, status, defs_start, defs_end, rows, count = both(data)
    assert (end, status, count) == (len(data), 2, 2)
    assert rows == expected([[42, "user42", "2024-01-01 00:42:00"], [-7, None, None]])
    assert header_and_types(data[defs_start:defs_end]) == (
        ("id", "name", "at"),
        ("MYSQL_TYPE_LONG", "MYSQL_TYPE_VAR_STRING", "MYSQL_TYPE_DATETIME"),
    )


@pytest.mark.parametrize("extended", [True, False])
@pytest.mark.parametrize("cache_byte", [True, False])
def test_with_and_without_mariadb_metadata(extended: bool, cache_byte: bool) -> None:
    data = answer([column("n", LONG, extended=extended)], [[b"1"]], cache_byte=cache_byte)
    assert both(data)[4] == b"[[1]]"


def test_numbers_copied_as_they_came() -> None:
    values = [b"0", b"-1", b"18446744073709551615", b"-9223372036854775808", b"1.50", b"-0.00"]
    cols = [column("a", LONGLONG), column("d", NEWDECIMAL)]
    rows = [[values[i], values[(i + 3) % len(values)]] for i in range(len(values))]
    rendered = both(answer(cols, rows))[4]
    assert rendered == b"[" + b",".join(b"[%s,%s]" % tuple(r) for r in rows) + b"]"
    # and as exact as the exact-value path: the same numbers, Decimal for Decimal
    assert json.loads(rendered, parse_float=Decimal) == [
        [json.loads(a, parse_float=Decimal), json.loads(b, parse_float=Decimal)] for a, b in rows
    ]


TEXTS = [
    'say "hi"',
    "back\\slash",
    "\x00\x01\x08\t\n\x0b\x0c\r\x1f",
    "\x7f del",
    "é € 😀 \u2028 \u202e",
    "",
    "/ </script>",
]


@pytest.mark.parametrize("text", TEXTS)
def test_text_escaped_as_orjson_escapes_it(text: str) -> None:
    data = answer([column("s", VAR_STRING)], [[text.encode()]])
    assert both(data)[4] == expected([[text]])


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc0\x80",  # overlong
        b"\xed\xa0\x80",  # a surrogate
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xe2\x82",  # cut short
        b"\xff",
        b"ok\x80",
    ],
)
def test_invalid_utf8_is_refused(raw: bytes) -> None:
    assert both(answer([column("s", VAR_STRING)], [[raw]])) is None


@pytest.mark.parametrize(
    "number", [b"012", b"1.", b".5", b"1e3", b"+1", b"", b"-", b"1.2.3", b" 1"]
)
def test_numbers_outside_json_are_refused(number: bytes) -> None:
    assert both(answer([column("n", NEWDECIMAL)], [[number]])) is None


@pytest.mark.parametrize(
    "col",
    [
        column("z", LONG, flags=ZEROFILL),
        column("b", VAR_STRING, charset=BINARY),
        column("b", BLOB, charset=BINARY),
        column("f", DOUBLE),
        column("f", 4),
        column("bit", BIT),
        column("j", JSON_TYPE),
        column("g", 255),
        column("n", NULL_TYPE),
    ],
)
def test_other_columns_keep_the_exact_value_path(col: bytes) -> None:
    assert both(answer([col], [[b"1"]])) is None


def test_row_limit() -> None:
    rows = [[b"%d" % i] for i in range(10)]
    end, status, _, _, rendered, count = both(answer([column("n", LONG)], rows), 3)
    assert rendered == b"[[0],[1],[2]]" and count == 10
    assert both(answer([column("n", LONG)], rows), 0)[4] == b"[]"
    # a row past the limit is still checked: the verdict does not depend on the limit
    bad = rows + [[b"x"]]
    assert both(answer([column("n", LONG)], bad), 3) is None


def test_zero_rows() -> None:
    assert both(answer([column("n", LONG)], []))[4:] == (b"[]", 0)


def test_long_values_use_longer_length_prefixes() -> None:
    for size in (250, 251, 65535, 65536, 70000):
        text = "x" * size
        assert both(answer([column("s", VAR_STRING)], [[text.encode()]]))[4] == expected([[text]])


def test_refused_shapes() -> None:
    ok_packet = packet(1, b"\x00\x00\x00\x02\x00\x00\x00")
    err_packet = packet(1, b"\xff\x28\x04#42000boom")
    infile = packet(1, b"\xfbfile.csv")
    assert both(ok_packet) is None
    assert both(err_packet) is None
    assert both(infile) is None
    cols = [column("n", LONG)]
    assert both(answer(cols, [[b"1"]], status=0x0008 | 0x0002)) is None  # more results
    good = answer(cols, [[b"1"]])
    assert both(good + b"\x00") is None  # bytes after the answer
    # an error after the rows: the final EOF replaced by an ERR packet
    cut = good[: good.rfind(b"\xfe") - 4]
    assert both(cut + packet(9, b"\xff\x28\x04#42000boom")) is None


def test_every_truncation_is_refused() -> None:
    data = answer(
        [column("id", LONG), column("s", VAR_STRING), column("d", NEWDECIMAL)],
        [[b"1", "é😀".encode(), b"1.5"], [b"2", None, b"-0.10"], [b"3", b"x" * 300, None]],
    )
    assert both(data) is not None
    for n in range(len(data)):
        assert both(data[:n]) is None, n


def _valid(rng: random.Random) -> bytes:
    kinds = [LONG, LONGLONG, NEWDECIMAL, DATETIME, VAR_STRING, BLOB]
    cols = [rng.choice(kinds) for _ in range(rng.randrange(1, 6))]
    rows = []
    for _ in range(rng.randrange(0, 6)):
        row: list[bytes | None] = []
        for kind in cols:
            if rng.random() < 0.15:
                row.append(None)
            elif kind in (LONG, LONGLONG):
                row.append(str(rng.randrange(-(10**12), 10**12)).encode())
            elif kind == NEWDECIMAL:
                row.append(f"{rng.randrange(-999, 999)}.{rng.randrange(0, 99):02d}".encode())
            else:
                chars = "".join(
                    chr(rng.choice([rng.randrange(0, 128), rng.randrange(128, 0x2FFF), 0x1F600]))
                    for _ in range(rng.randrange(0, 12))
                )
                row.append(chars.encode("utf-8", "surrogatepass"))
        rows.append(row)
    return answer([column(f"c{i}", k) for i, k in enumerate(cols)], rows)


def _mangled(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.random()
        pos = rng.randrange(len(b)) if b else 0
        if choice < 0.1:  # a length prefix claiming far more than there is
            b[pos:pos] = b"\xfe" + rng.randrange(2**64).to_bytes(8, "little")
        elif choice < 0.4 and b:
            b[pos] = rng.randrange(256)
        elif choice < 0.7:
            b.insert(pos, rng.randrange(256))
        elif b:
            del b[pos]
    return bytes(b)


@needs_compiled
@pytest.mark.parametrize("seed", range(4))
def test_compiled_twin_gives_the_references_verdict(seed: int) -> None:
    """Valid answers, mangled ones and random bytes: the same answer or the same None,
    never a crash, whatever the row limit."""
    rng = random.Random(seed)
    rendered = 0
    for _ in range(1500):
        data = _valid(rng)
        if rng.random() < 0.6:
            data = _mangled(rng, data)
        if rng.random() < 0.05:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        limit = rng.choice([-1, -1, 0, 1, 3])
        reference = json_rows_py(data, limit)
        assert compiled is not None
        assert compiled(data, limit) == reference, data
        rendered += reference is not None
    assert rendered > 300  # (the valid shapes were rendered: the comparison is not vacuous)


def test_valid_answers_render_as_the_values_would() -> None:
    """Random valid answers: the rendering is the JSON of the values the driver would give
    (ints, Decimals, text; NULL as None)."""
    rng = random.Random(7)
    for _ in range(300):
        data = _valid(rng)
        result = both(data)
        assert result is not None
        rows = json.loads(result[4], parse_float=Decimal)
        assert isinstance(rows, list) and len(rows) == result[5]


def test_the_lane_uses_the_compiled_twin_when_built() -> None:
    assert wirejson.COMPILED == (compiled is not None)
    assert wirejson.json_rows is (compiled if compiled is not None else json_rows_py)


HUGE = [2**63 - 1, 2**64 - 1, 2**62, 2**32, 70_000]


def _huge_lengths() -> list[bytes]:
    """Answers with an 8-byte length far past the packet, in a column definition and in a
    row value (found by review: the compiled twin once added such a length to a position)."""
    out = []
    for n in HUGE:
        big = b"\xfe" + n.to_bytes(8, "little")
        definition = big + b"".join(lenstr(x) for x in (b"db", b"t", b"t", b"a", b"a"))
        definition += b"\x0c" + struct.pack("<HIBHB", UTF8MB4, 10, VAR_STRING, 0, 0) + b"\0\0"
        eof = b"\xfe\x00\x00\x02\x00"
        out.append(
            packet(1, b"\x01")
            + packet(2, definition)
            + packet(3, eof)
            + packet(4, b"\x01a")
            + packet(5, eof)
        )
        out.append(
            packet(1, b"\x01")
            + packet(2, column("s", VAR_STRING, extended=False))
            + packet(3, eof)
            + packet(4, big + b"abc")
            + packet(5, eof)
        )
    return out


def test_lengths_past_the_packet_are_refused() -> None:
    for data in _huge_lengths():
        assert json_rows_py(data, -1) is None


@needs_compiled
def test_compiled_twin_refuses_lengths_past_the_packet() -> None:
    """In a process of its own, with a time limit: a crash or a hang fails the test, not the
    test run."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gateway._wirejson import json_rows\n"
        f"for data in {_huge_lengths()!r}:\n"
        "    for limit in (-1, 0, 1):\n"
        "        assert json_rows(data, limit) is None\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr)


def test_many_columns() -> None:
    """A column count of 251 and more has a longer length prefix (not a byte count)."""
    cols = [column(f"c{i}", LONG) for i in range(300)]
    data = answer(cols, [[b"%d" % i for i in range(300)]])
    assert both(data)[4] == b"[[" + b",".join(b"%d" % i for i in range(300)) + b"]]"
