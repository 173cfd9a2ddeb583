"""MySQL client/server framing, just enough to tell whether a whole answer has arrived (pure).

The reactor reads a small answer itself only when every byte of it is already in the socket
buffer, so the driver's blocking read returns at once (see :mod:`gateway.lane`). This module
walks the packets of the answer to one ``COM_QUERY`` in the text protocol, as peeked from the
socket, without decoding any value:

- an OK or ERR packet alone;
- or a result set: a column count, the column definitions, an EOF packet, the rows, and a
  final EOF (or an ERR, when the statement failed while sending rows).

It answers :data:`COMPLETE` only for a single answer with no further result pending, and
:data:`UNSUPPORTED` for what it does not follow (more results, ``LOCAL INFILE``, packets of
16 MiB and more, a connection without classic EOF packets); those are read by a pool thread.
"""

from __future__ import annotations

import struct

COMPLETE = "complete"
INCOMPLETE = "incomplete"
UNSUPPORTED = "unsupported"

#: Status flag: another result set follows this one (multi-statements, CALL).
SERVER_MORE_RESULTS_EXISTS = 0x0008
#: Capability: OK packets replace EOF packets (the walk below expects classic EOF packets).
CLIENT_DEPRECATE_EOF = 1 << 24

_MAX_PACKET = 0xFFFFFF
_UNPACK = struct.Struct("<I").unpack_from


def _lenenc(buf: bytes, pos: int) -> tuple[int, int] | None:
    """A length-encoded integer at ``pos``: (value, position after it), or None if cut."""
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if size is None or pos + 1 + size > len(buf):
        return None
    return int.from_bytes(buf[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def _ok_status(buf: bytes, start: int, end: int) -> int | None:
    """Status flags of the OK packet whose payload is ``buf[start:end]``."""
    affected = _lenenc(buf, start + 1)
    if affected is None:
        return None
    insert_id = _lenenc(buf, affected[1])
    if insert_id is None or insert_id[1] + 2 > end:
        return None
    pos = insert_id[1]
    return buf[pos] | buf[pos + 1] << 8


def response_state(buf: bytes) -> str:
    """Whether ``buf`` (the bytes received so far) holds the whole answer to one query."""
    return answer_state(buf)[0]


def answer_state(buf: bytes) -> tuple[str, int | None]:
    """Like :func:`response_state`, with the server status flags of a complete answer: those
    of its OK packet or final EOF packet, None for an ERR packet (which carries none) and for
    an answer that is not complete."""
    n = len(buf)
    if n < 5:
        return INCOMPLETE, None
    length = buf[0] | buf[1] << 8 | buf[2] << 16
    if length == _MAX_PACKET:
        return UNSUPPORTED, None
    end = 4 + length
    if end > n:
        return INCOMPLETE, None
    first = buf[4]
    if first == 0xFF:
        return COMPLETE, None  # ERR
    if first == 0x00:
        status = _ok_status(buf, 4, end)
        if status is None or status & SERVER_MORE_RESULTS_EXISTS:
            return UNSUPPORTED, None
        return COMPLETE, status
    if first == 0xFB:
        return UNSUPPORTED, None  # LOCAL INFILE request
    count = _lenenc(buf, 4)
    if count is None:
        return UNSUPPORTED, None
    columns, after = count
    # MariaDB's extended metadata adds one byte: 1 when column definitions follow.
    if after < end and buf[after] == 0:
        return UNSUPPORTED, None
    pos = end
    for _ in range(columns):  # column definitions
        if pos + 4 > n:
            return INCOMPLETE, None
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if length == _MAX_PACKET:
            return UNSUPPORTED, None
        pos += 4 + length
    if pos + 4 > n:
        return INCOMPLETE, None
    length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
    if pos + 4 + length > n:
        return INCOMPLETE, None
    if buf[pos + 4] != 0xFE or length >= 9:
        return UNSUPPORTED, None  # no EOF after the definitions: not the classic protocol
    pos += 4 + length
    # Rows, then EOF or ERR. A row never starts with 0xFE below 9 bytes (that prefix means
    # an 8-byte length), nor with 0xFF (not a length prefix): those mark the end.
    unpack = _UNPACK
    last = pos
    while pos + 4 < n:  # (a header with no payload byte after it yet: INCOMPLETE below)
        length = unpack(buf, pos)[0] & 0xFFFFFF
        last = pos + 4
        if length < 9:
            if buf[last] == 0xFE:
                if length < 5 or last + length > n:
                    return (INCOMPLETE if last + length > n else UNSUPPORTED), None
                status = buf[last + 3] | buf[last + 4] << 8
                if status & SERVER_MORE_RESULTS_EXISTS:
                    return UNSUPPORTED, None
                return COMPLETE, status
        elif length == 0xFFFFFF:
            return UNSUPPORTED, None  # a row of 16 MiB or more continues in the next packet
        pos = last + length
    if pos == n and last < n and buf[last] == 0xFF:
        return COMPLETE, None  # the statement failed while sending rows
    return INCOMPLETE, None
