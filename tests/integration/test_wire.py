"""gateway.wire.response_state: whether the whole answer to one COM_QUERY is in the buffer.

The property that matters: COMPLETE is never answered for a buffer that does not hold the whole
answer (the reactor would then block in the driver's read). INCOMPLETE or UNSUPPORTED for a whole
answer only costs speed. Hand-built packets first, then a seeded random walk, then real answers
from a real MariaDB peeked from the socket.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest

from gateway.wire import (
    COMPLETE,
    INCOMPLETE,
    SERVER_MORE_RESULTS_EXISTS,
    UNSUPPORTED,
    response_state,
)
from tests.servers import MariaDB

STATUS_AUTOCOMMIT = 0x0002
MORE = SERVER_MORE_RESULTS_EXISTS
FAKE_EOF = b"\x05\x00\x00\x07\xfe\x00\x00\x02\x00"

# ------------------------------------------------------------------------------ packet builders


def packet(seq: int, payload: bytes) -> bytes:
    """One packet: 3-byte little-endian payload length, sequence id, payload."""
    return len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload


def lenenc_int(value: int) -> bytes:
    """A length-encoded integer."""
    if value < 0xFB:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + value.to_bytes(8, "little")


def lenenc_str(value: bytes) -> bytes:
    """A length-encoded string."""
    return lenenc_int(len(value)) + value


def ok(status: int = STATUS_AUTOCOMMIT, affected: int = 0, insert_id: int = 0) -> bytes:
    """An OK payload."""
    return (
        b"\x00"
        + lenenc_int(affected)
        + lenenc_int(insert_id)
        + status.to_bytes(2, "little")
        + b"\x00\x00"
    )


def err(errno: int = 1054, msg: bytes = b"Unknown column 'nope' in 'SELECT'") -> bytes:
    """An ERR payload (with the SQL state marker)."""
    return b"\xff" + errno.to_bytes(2, "little") + b"#42S22" + msg


def eof(status: int = STATUS_AUTOCOMMIT, warnings: int = 0) -> bytes:
    """A classic EOF payload (length 5)."""
    return b"\xfe" + warnings.to_bytes(2, "little") + status.to_bytes(2, "little")


def coldef(name: bytes | str, type_code: int = 0xFD) -> bytes:
    """A plausible column definition payload (Protocol::ColumnDefinition41)."""
    raw = name.encode() if isinstance(name, str) else name
    return (
        lenenc_str(b"def")
        + lenenc_str(b"test")
        + lenenc_str(b"t")
        + lenenc_str(b"t")
        + lenenc_str(raw)
        + lenenc_str(raw)
        + b"\x0c"
        + (33).to_bytes(2, "little")  # charset
        + (1024).to_bytes(4, "little")  # column length
        + bytes([type_code])
        + (0).to_bytes(2, "little")  # flags
        + b"\x00"  # decimals
        + b"\x00\x00"  # filler
    )


def row(*values: bytes | None) -> bytes:
    """A text-protocol row payload: each value a length-encoded string, or 0xFB for NULL."""
    return b"".join(b"\xfb" if v is None else lenenc_str(v) for v in values)


def resultset(
    columns: Sequence[bytes | str],
    rows: Iterable[Sequence[bytes | None]],
    final_status: int = STATUS_AUTOCOMMIT,
    extended_metadata: bool = False,
    final: bytes | None = None,
    column_eof: bool = True,
) -> bytes:
    """A whole result set: column count, definitions, EOF, rows, final EOF (or ``final``)."""
    seq = 1
    out = []

    def add(payload: bytes) -> None:
        nonlocal seq
        out.append(packet(seq, payload))
        seq += 1

    add(lenenc_int(len(columns)) + (b"\x01" if extended_metadata else b""))
    for name in columns:
        add(coldef(name))
    if column_eof:
        add(eof())
    for values in rows:
        add(row(*values))
    add(eof(final_status) if final is None else final)
    return b"".join(out)


def single(payload: bytes) -> bytes:
    """An answer of one packet (OK or ERR)."""
    return packet(1, payload)


def packet_starts(buf: bytes) -> Iterator[int]:
    """Where each packet of ``buf`` starts (walks the headers only)."""
    pos = 0
    while pos < len(buf):
        yield pos
        pos += 4 + int.from_bytes(buf[pos : pos + 3], "little")


def outcome(buf: bytes) -> str:
    """response_state, or the name of the exception it raised."""
    try:
        return response_state(buf)
    except Exception as e:  # any exception is a finding
        return f"raised {type(e).__name__}: {e}"


def bad_prefixes(buf: bytes, ks: Iterable[int] | None = None) -> list[tuple[int, str]]:
    """Proper prefixes ``buf[:k]`` that answer COMPLETE or raise (each is a bug)."""
    found = []
    for k in range(len(buf)) if ks is None else ks:
        assert 0 <= k < len(buf)
        state = outcome(buf[:k])
        if state not in (INCOMPLETE, UNSUPPORTED):
            found.append((k, state))
    return found


def describe(found: list[tuple[int, str]], buf: bytes) -> str:
    completes = [k for k, s in found if s == COMPLETE]
    raised = [(k, s) for k, s in found if s != COMPLETE]
    return (
        f"len(buf)={len(buf)}; {len(completes)} prefixes answer COMPLETE (first: {completes[:5]});"
        f" {len(raised)} prefixes raise (first: {raised[:3]})"
    )


# ------------------------------------------------------------------------------ complete answers

ONE_COL = ["a"]

COMPLETE_ANSWERS: dict[str, bytes] = {
    "ok": single(ok()),
    "ok-affected-insert-id": single(ok(affected=300, insert_id=70000)),
    "ok-no-status": single(ok(status=0)),
    "err": single(err()),
    "rs-0-rows": resultset(ONE_COL, []),
    "rs-1-row": resultset(ONE_COL, [[b"1"]]),
    "rs-100-rows": resultset(["id", "name"], [[str(i).encode(), b"x" * i] for i in range(100)]),
    "rs-extended-metadata": resultset(ONE_COL, [[b"1"], [b"2"]], extended_metadata=True),
    "rs-nulls": resultset(
        ["a", "b", "c"], [[None, None, None], [None, b"", None], [b"", None, b"x"]]
    ),
    "rs-null-only-1col": resultset(ONE_COL, [[None]] * 20),
    "rs-empty-strings": resultset(["a", "b"], [[b"", b""]] * 5),
    "rs-300-byte-value": resultset(ONE_COL, [[b"v" * 300]]),
    "rs-70000-byte-value": resultset(["a", "b"], [[b"w" * 70_000, b"1"], [b"2", None]]),
    "rs-err-mid-rows": resultset(ONE_COL, [[b"1"], [b"2"]], final=err(1317, b"interrupted")),
    "rs-err-after-no-rows": resultset(ONE_COL, [], final=err(1317, b"interrupted")),
    "rs-fake-eof-values": resultset(
        ["a", "b"],
        [[FAKE_EOF, FAKE_EOF], [FAKE_EOF, None], [None, FAKE_EOF], [FAKE_EOF + FAKE_EOF, b"x"]],
    ),
    "rs-fe-ff-values": resultset(
        ["a", "b", "c"],
        [
            [b"\xfe", b"\xff", b"\x00"],
            [b"\xff", b"\xfe", None],
            [b"\xfe\x00\x00\x02\x00", b"\xff\xff", b"\xfe"],
            [b"\x00", b"", b"\xff\x00\x00#42S22"],
            [b"\xfe" * 8, b"\xff" * 8, b"\xfb"],
        ],
    ),
    "rs-fe-first-value-long": resultset(ONE_COL, [[b"\xfe" * 300], [b"\xff" * 70_000]]),
    "rs-many-columns": resultset([f"c{i}" for i in range(300)], [[b"1"] * 300, [None] * 300]),
    "rs-256-rows-seq-wraps": resultset(ONE_COL, [[b"%d" % i] for i in range(300)]),
}


@pytest.mark.parametrize("name", sorted(COMPLETE_ANSWERS))
def test_whole_answer_is_complete(name: str) -> None:
    """A whole single answer (OK, ERR, result set of any size) is read in the reactor."""
    assert outcome(COMPLETE_ANSWERS[name]) == COMPLETE


@pytest.mark.parametrize("name", sorted(COMPLETE_ANSWERS))
def test_no_proper_prefix_is_complete(name: str) -> None:
    """Safety: no proper prefix of an answer answers COMPLETE (nor raises in the reactor)."""
    buf = COMPLETE_ANSWERS[name]
    found = bad_prefixes(buf)
    assert not found, describe(found, buf)


def test_answer_ending_at_a_packet_boundary_is_incomplete() -> None:
    """A buffer cut right after the column EOF or after a full row waits for more bytes."""
    buf = resultset(ONE_COL, [[b"1"], [b"2"]])
    starts = list(packet_starts(buf))
    for k in starts[1:]:
        assert outcome(buf[:k]) == INCOMPLETE, k


def test_buffer_cut_right_after_a_row_header_is_incomplete() -> None:
    """A peek that ends just after the 4-byte header of a short row (or of the final EOF).

    The server writes its answer in chunks of its net buffer, so a peek can end anywhere,
    including right after a packet header; the walk must then say INCOMPLETE, not fail.
    """
    buf = resultset(ONE_COL, [[b"1"]])  # ... 02 00 00 04 | 01 31 | 05 00 00 05 | fe 00 00 02 00
    row_header_end = len(buf) - 5 - 4 - 2
    eof_header_end = len(buf) - 5
    assert buf[row_header_end - 4 : row_header_end] == b"\x02\x00\x00\x04"
    assert buf[eof_header_end - 4 : eof_header_end] == b"\x05\x00\x00\x05"
    assert outcome(buf[:row_header_end]) == INCOMPLETE
    assert outcome(buf[:eof_header_end]) == INCOMPLETE


# ------------------------------------------------------------------------------ unsupported shapes


def test_ok_with_more_results_is_unsupported() -> None:
    """An OK with SERVER_MORE_RESULTS_EXISTS: another result follows (multi-statements)."""
    assert response_state(single(ok(STATUS_AUTOCOMMIT | MORE))) == UNSUPPORTED


def test_final_eof_with_more_results_is_unsupported() -> None:
    """A result set whose final EOF says more results follow (CALL, multi-statements)."""
    buf = resultset(ONE_COL, [[b"1"]], final_status=STATUS_AUTOCOMMIT | MORE)
    assert response_state(buf) == UNSUPPORTED
    buf = resultset(ONE_COL, [], final_status=MORE)
    assert response_state(buf) == UNSUPPORTED
    # with the OK that ends a CALL right behind it: still the first answer of several
    assert response_state(buf + packet(len(buf), ok())) == UNSUPPORTED


def test_local_infile_request_is_unsupported() -> None:
    """0xFB as first payload byte: the server asks for a LOCAL INFILE."""
    assert response_state(single(b"\xfb/tmp/data.csv")) == UNSUPPORTED


def test_extended_metadata_without_definitions_is_unsupported() -> None:
    """MariaDB metadata byte 0: no column definitions follow (cached metadata)."""
    buf = packet(1, b"\x01\x00") + packet(2, row(b"1")) + packet(3, eof())
    assert response_state(buf) == UNSUPPORTED


def test_no_eof_after_column_definitions_is_unsupported() -> None:
    """CLIENT_DEPRECATE_EOF: rows follow the definitions directly, an OK (0xFE) ends."""
    final_ok = b"\xfe\x00\x00" + STATUS_AUTOCOMMIT.to_bytes(2, "little") + b"\x00\x00"
    buf = resultset(ONE_COL, [[b"1"], [b"2"]], column_eof=False, final=final_ok)
    assert response_state(buf) == UNSUPPORTED
    assert not bad_prefixes(buf)
    # without rows the OK passes for the column EOF: never COMPLETE, that is enough
    buf = resultset(ONE_COL, [], column_eof=False, final=final_ok)
    assert response_state(buf) != COMPLETE


def test_16mib_first_packet_is_unsupported() -> None:
    """A first packet of 0xFFFFFF bytes continues in another packet: not followed."""
    buf = b"\xff\xff\xff\x01" + b"\x00" * 100
    assert response_state(buf) == UNSUPPORTED


def test_16mib_column_definition_is_unsupported() -> None:
    """A column definition of 0xFFFFFF bytes: not followed."""
    buf = packet(1, b"\x01") + b"\xff\xff\xff\x02" + b"\x03def" + b"\x00" * 100
    assert response_state(buf) == UNSUPPORTED


def test_huge_row_running_past_the_buffer_is_incomplete() -> None:
    """A row whose declared length runs past what was peeked: wait for more."""
    head = resultset(ONE_COL, [])[: -len(packet(0, eof()))]  # count, definition, EOF
    value = b"z" * 1_000_000
    full = head + packet(3, row(value)) + packet(4, eof())
    assert response_state(full) == COMPLETE
    for k in (len(head) + 4, len(head) + 8, len(head) + 65_536, len(full) - 10):
        assert response_state(full[:k]) == INCOMPLETE, k
    big = head + b"\xff\xff\xff\x03" + b"\xfe" + b"\x00" * 65_000  # a 16 MiB row, first 64 KiB
    assert response_state(big) in (INCOMPLETE, UNSUPPORTED)


def test_16mib_row_whose_continuation_looks_like_an_eof_is_not_complete() -> None:
    """A row of 16 MiB and more continues in a next packet, whose bytes are row data.

    When that continuation is short and starts with 0xFE it reads like an EOF; the final EOF
    is still to come, so the buffer must not be COMPLETE. (The reactor lane peeks 64 KiB,
    so this matters only to callers that peek more.)
    """
    head = resultset(["a", "b"], [])[: -len(packet(0, eof()))]  # count, definitions, EOF
    first = 0xFFFFFF
    # row = lenenc(a) a + lenenc(b) b, 0xFFFFFF + 5 bytes: b's last 5 bytes are a packet of
    # their own, reading fe 00 00 02 00 (an EOF, autocommit, no more results)
    tail = b"\xfe\x00\x00\x02\x00"
    payload = row(b"a" * (first - 6), b"\x00" + tail)
    assert len(payload) == first + 5 and payload[first:] == tail
    cut = head + packet(3, payload[:first]) + packet(4, payload[first:])
    assert response_state(cut) != COMPLETE  # the final EOF (packet 5) is still to come


# ------------------------------------------------------------------------------ random answers


def random_value(rng: random.Random) -> bytes | None:
    pick = rng.random()
    if pick < 0.15:
        return None
    if pick < 0.25:
        return b""
    if pick < 0.45:
        return bytes(rng.choice(b"\x00\xfe\xff\xfb\xfc\xfd\x05") for _ in range(rng.randint(1, 9)))
    if pick < 0.5:
        return FAKE_EOF
    if pick < 0.53:
        return rng.randbytes(rng.randint(250, 400))
    if pick < 0.535:
        return rng.randbytes(rng.randint(65_530, 70_000))
    return rng.randbytes(rng.randint(1, 12))


def random_answer(rng: random.Random) -> bytes:
    columns = [f"c{i}" for i in range(rng.randint(1, 6))]
    rows = [[random_value(rng) for _ in columns] for _ in range(rng.randint(0, 50))]
    extended = rng.random() < 0.3
    if rng.random() < 0.1:
        return resultset(columns, rows, extended_metadata=extended, final=err(1317, b"stop"))
    status = rng.choice([0, STATUS_AUTOCOMMIT, 0x0001, 0x0022, 0x4002])
    return resultset(columns, rows, final_status=status, extended_metadata=extended)


def sampled_prefixes(buf: bytes, rng: random.Random) -> list[int]:
    """Every cut near a packet boundary (where the walk decides), and a sample of the rest."""
    n = len(buf)
    if n <= 3000:
        return list(range(n))
    ks = set(rng.sample(range(n), 300))
    for start in packet_starts(buf):
        ks.update(range(max(0, start - 3), min(n, start + 12)))
    return sorted(ks)


def test_random_answers_complete_and_no_prefix_complete() -> None:
    """A few hundred random result sets: whole is COMPLETE, no proper prefix is COMPLETE."""
    rng = random.Random(7)
    failures = []
    for i in range(300):
        buf = random_answer(rng)
        state = outcome(buf)
        if state != COMPLETE:
            failures.append(f"answer {i}: whole answer gives {state}")
        found = bad_prefixes(buf, sampled_prefixes(buf, rng))
        if found:
            failures.append(f"answer {i}: {describe(found, buf)}")
    assert not failures, f"{len(failures)} of 300 answers fail; first: {failures[:5]}"


def test_random_more_results_never_complete() -> None:
    """Random result sets flagged MORE_RESULTS: never COMPLETE, whole or cut."""
    rng = random.Random(11)
    for _ in range(100):
        columns = [f"c{i}" for i in range(rng.randint(1, 4))]
        rows = [[random_value(rng) for _ in columns] for _ in range(rng.randint(0, 20))]
        buf = resultset(columns, rows, final_status=MORE | rng.choice([0, STATUS_AUTOCOMMIT]))
        assert outcome(buf) == UNSUPPORTED
        assert all(outcome(buf[:k]) != COMPLETE for k in sampled_prefixes(buf, rng))


# ------------------------------------------------------------------------------ a real MariaDB


def peek_answer(conn: Any, timeout: float = 5.0) -> bytes:
    """Peek the bytes of the answer waiting on ``conn``'s socket, once they stop arriving."""
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        deadline = time.monotonic() + timeout
        data = b""
        steady_since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                now = sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                now = b""
            if len(now) != len(data):
                data, steady_since = now, time.monotonic()
            elif data and time.monotonic() - steady_since >= 0.05:
                return data
            time.sleep(0.002)
    raise AssertionError(f"no steady answer within {timeout} s ({len(data)} bytes)")


def drain(conn: Any) -> None:
    """Read every result of the answer, so the connection stays usable."""
    import MySQLdb

    try:
        conn.read_query_result()
        conn.store_result()
        while conn.next_result() == 0:
            conn.store_result()
    except MySQLdb.Error:
        pass


@pytest.fixture(scope="module")
def conn(mariadb: MariaDB) -> Iterator[Any]:
    """A raw mysqlclient connection to the session's MariaDB (multi-statements on)."""
    import MySQLdb

    mariadb.sql("CREATE OR REPLACE PROCEDURE wire_rows() SELECT 1 AS a, 'two' AS b;", "test")
    connection = MySQLdb.connect(unix_socket=mariadb.socket, user="root", database="test")
    yield connection
    connection.close()


REAL_CASES = [
    ("SELECT 1", COMPLETE),
    ("SELECT * FROM seq_1_to_100", COMPLETE),
    ("SELECT NULL, '', x'00feff'", COMPLETE),
    ("SELECT REPEAT('x', 300), REPEAT('y', 70000), NULL", COMPLETE),
    ("SELECT x'fe0000020005000007fe00000200' FROM seq_1_to_50", COMPLETE),
    ("DO 1", COMPLETE),
    ("SELECT nope", COMPLETE),
    ("CREATE TEMPORARY TABLE wire_t (a INT)", COMPLETE),
    ("INSERT INTO wire_t VALUES (1),(2)", COMPLETE),
    ("SELECT * FROM wire_t WHERE a > 5", COMPLETE),
    ("SELECT 1; SELECT 2", UNSUPPORTED),
    ("DO 1; DO 2", UNSUPPORTED),
    ("CALL wire_rows()", UNSUPPORTED),
]


def test_real_answers(conn: Any) -> None:
    """Answers of a real MariaDB, as peeked: the expected state, and no prefix COMPLETE."""
    failures = []
    for statement, expected in REAL_CASES:
        conn.send_query(statement.encode())
        try:
            data = peek_answer(conn)
        finally:
            drain(conn)
        state = outcome(data)
        if state != expected:
            failures.append(f"{statement!r}: {state}, expected {expected}; {data[:80]!r}")
        found = bad_prefixes(data)
        if found:
            failures.append(f"{statement!r} prefixes: {describe(found, data)}")
    conn.query(b"SELECT 42")  # still usable after every answer was drained
    assert conn.store_result().fetch_row() == ((42,),)
    assert not failures, "\n".join(failures)
