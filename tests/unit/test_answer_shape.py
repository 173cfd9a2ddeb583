"""One answer shape: Answer.to_wire's RESULT rule, the row chunks every reader takes, and a
streamed answer (api.stream.JsonStream) that parses to the JSON of the buffered one."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from api.stream import JsonStream
from gateway.backends import STREAM_CHUNK, row_chunks
from gateway.results import Answer, ResultSet, SQLError, Update

ONE = ResultSet(header=["a"], types=["MYSQL_TYPE_LONG"], rows=[[1]])
TWO = ResultSet(header=["b"], types=["MYSQL_TYPE_LONG"], rows=[[2]])
BAD = SQLError(1242, "Subquery returns more than 1 row", "OperationalError", "mariadb")


@pytest.mark.parametrize(
    "answer, shape",
    [
        (Answer([ONE], server="db1"), dict),
        (Answer([ONE, TWO], server="db1"), list),
        (Answer([ONE, Update(1, 0)], server="db1"), list),  # (a CALL: its rows, its status)
        (Answer([ONE], error=BAD, server="db1"), list),  # a later statement failed
        (Answer([ONE], error=BAD, server="db1", partial=True), dict),  # it failed partway
        (Answer([ONE, TWO], error=BAD, server="db1", partial=True), list),
        (Answer([], error=BAD, server="db1"), None),  # the reference's: no RESULT
    ],
)
def test_result_is_an_object_for_one_result_and_an_array_for_more(
    answer: Answer, shape: type | None
) -> None:
    wire = answer.to_wire()
    if shape is None:
        assert "RESULT" not in wire and wire["MYSQL_ERRNO"] == 1242
    else:
        assert isinstance(wire["RESULT"], shape)


# ------------------------------------------------------------------------------- row chunks


class Rows:
    """A driver's ``fetchmany`` over ``count`` rows; ``fail_at``: the row (1-based) whose
    fetch fails, the rows of that call lost (as mysqlclient's and sqlite3's)."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.taken = 0
        self.calls: list[int] = []

    def __call__(self, n: int) -> list[tuple[int]]:
        self.calls.append(n)
        end = min(self.taken + n, self.count)
        if self.fail_at is not None and self.taken < self.fail_at <= end:
            raise RuntimeError("the statement failed")
        rows = [(i,) for i in range(self.taken + 1, end + 1)]
        self.taken = end
        return rows


def read_all(fetch: Rows, max_rows: int | None) -> tuple[list[Any], bool, bool]:
    rows: list[Any] = []
    cut = failed = False
    try:
        for chunk, last in row_chunks(fetch, max_rows):
            rows.extend(chunk)
            cut = last
    except RuntimeError:
        failed = True
    return rows, cut, failed


@pytest.mark.parametrize(
    "count, max_rows, expect_rows, expect_cut",
    [
        (0, None, 0, False),
        (5, None, 5, False),
        (STREAM_CHUNK + 1, None, STREAM_CHUNK + 1, False),
        (5500, None, 5500, False),
        (5000, 5000, 5000, False),  # exactly the limit: not cut
        (5001, 5000, 5000, True),
        (20000, 2500, 2500, True),
        (10, 3, 3, True),  # a limit under one chunk
    ],
)
def test_chunks_hold_every_row_up_to_the_limit(
    count: int, max_rows: int | None, expect_rows: int, expect_cut: bool
) -> None:
    fetch = Rows(count)
    rows, cut, failed = read_all(fetch, max_rows)
    assert [r[0] for r in rows] == list(range(1, expect_rows + 1))
    assert (cut, failed) == (expect_cut, False)
    assert fetch.taken <= (max_rows + 1 if max_rows is not None else count)


def test_chunks_are_one_more_than_a_chunk_then_a_chunk() -> None:
    fetch = Rows(3500)
    read_all(fetch, None)
    assert fetch.calls[:3] == [STREAM_CHUNK + 1, STREAM_CHUNK, STREAM_CHUNK]


@pytest.mark.parametrize(
    "fail_at, kept", [(1, 0), (STREAM_CHUNK + 1, 0), (STREAM_CHUNK + 2, 1001), (3500, 3001)]
)
def test_a_failure_keeps_the_chunks_before_it(fail_at: int, kept: int) -> None:
    """Whichever reader (buffered or streamed) meets the error, the same rows are kept:
    those of the chunks read before the failing one."""
    rows, _, failed = read_all(Rows(5000, fail_at), None)
    assert failed and len(rows) == kept


# ------------------------------------------------------------------ streamed == buffered


class Request:
    """What JsonStream uses of a request (either channel's)."""

    def __init__(self) -> None:
        self.body = b""
        self.headers: dict[bytes, bytes] = {}
        self.code = 0
        self.finished = False
        self._disconnected = False
        self.sql_error = False
        self.error_message: str | None = None

    def notifyFinish(self) -> Deferred[None]:
        return Deferred()

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        assert not self.finished
        self.body += data

    def finish(self) -> None:
        self.finished = True


def streamed(whole: ResultSet, error: SQLError | None, **answer: Any) -> Request:
    """Stream ``whole`` as the backend does: begin, rows in chunks, end with the answer
    (the streamed result set without its rows)."""
    request = Request()
    sink = JsonStream(request)
    sink.begin(whole.header, whole.types, whole.base64)
    for start in range(0, len(whole.rows), 3):
        sink.rows(whole.rows[start : start + 3])
    head = ResultSet(whole.header, whole.types, [], whole.base64, truncated=whole.truncated)
    sink.end(Answer([head], error=error, partial=error is not None, **answer))
    assert request.finished and request.code == 200
    return request


@pytest.mark.parametrize(
    "whole, error, extras",
    [
        (ResultSet(["id", "name"], ["L", "S"], [[i, f"n{i}"] for i in range(10)]), None, {}),
        (ResultSet(["id"], ["L"], [[i] for i in range(7)], truncated=True), None, {}),
        (ResultSet(["b", "d"], ["BLOB", "DEC"], [["AAE=", Decimal("1.50")]] * 4, [0]), None, {}),
        (ResultSet(["id"], ["L"], [[i] for i in range(8)]), BAD, {}),
        (
            ResultSet(["id"], ["L"], [[i] for i in range(8)]),
            BAD,
            {"ROLLBACK_ON_ERROR": True, "ROLLBACK_ON_ERROR_SUCCESS": True},
        ),
        (ResultSet(["id"], ["L"], [[1]]), SQLError(1969, "time limit reached"), {}),
    ],
)
def test_a_streamed_answer_parses_to_the_buffered_json(
    whole: ResultSet, error: SQLError | None, extras: dict[str, Any]
) -> None:
    request = streamed(whole, error, server="db1", extras=dict(extras))
    buffered = Answer([whole], error=error, server="db1", extras=dict(extras))
    buffered.partial = error is not None
    expected = json.loads(json.dumps(buffered.to_wire(), default=str))
    got = json.loads(request.body, parse_float=Decimal)
    assert json.loads(json.dumps(got, default=str)) == expected
    assert list(got)[0] == "RESULT" and list(got)[-1] == list(buffered.to_wire())[-1]
    assert request.sql_error is (error is not None)


def test_a_streamed_answer_that_cannot_end_as_it_began_is_cut() -> None:
    """(Never by the backend:) an end whose answer is not one result set closes the
    connection without the end, never a whole answer that says something else."""

    class Transport:
        lost = False

        def loseConnection(self) -> None:
            self.lost = True

    request = Request()
    request.channel = type("Channel", (), {"transport": Transport()})()  # type: ignore[attr-defined]
    sink = JsonStream(request)
    sink.begin(["a"], ["L"], [])
    sink.rows([[1]])
    sink.end(Answer([ONE, TWO], server="db1"))
    assert not request.finished and request.channel.transport.lost  # type: ignore[attr-defined]
    assert not request.body.endswith(b"}")


def test_a_cached_answer_keeps_the_row_limit_marker() -> None:
    """A hit, from Redis or the in-process cache, answers as the miss did: TRUNCATED too."""
    from gateway.cache import copy_answer, decode_answer, encode_answer

    cut = ResultSet(["id"], ["L"], [[1], [2]], truncated=True)
    answer = Answer([cut, TWO], server="db1")
    for hit in (decode_answer(encode_answer(answer, 1.0))[0], copy_answer(answer)):
        assert hit.to_wire() == answer.to_wire() and hit.truncated
    assert decode_answer(encode_answer(Answer([TWO]), 1.0))[0].to_wire() == {
        "RESULT": TWO.to_wire()
    }
