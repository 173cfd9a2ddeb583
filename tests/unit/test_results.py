"""Unit tests for gateway.results: result sets, value encoding, the wire answer shape."""

from __future__ import annotations

from base64 import b64encode
from decimal import Decimal
from typing import Any

import pytest

from gateway.results import Answer, ResultSet, SQLError, Update, result_set, type_name


def b64(data: bytes) -> str:
    """Base64 text of data, as the gateway sends it."""
    return b64encode(data).decode("ascii")


def desc(*columns: tuple[Any, Any]) -> list[tuple[Any, ...]]:
    """A DB-API description from (name, type_code) pairs."""
    return [(name, code, None, None, None, None, True) for name, code in columns]


# ------------------------------------------------------------------ type_name


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "MYSQL_TYPE_DECIMAL"),
        (1, "MYSQL_TYPE_TINY"),
        (3, "MYSQL_TYPE_LONG"),
        (8, "MYSQL_TYPE_LONGLONG"),
        (12, "MYSQL_TYPE_DATETIME"),
        (16, "MYSQL_TYPE_BIT"),
        (245, "MYSQL_TYPE_JSON"),
        (246, "MYSQL_TYPE_NEWDECIMAL"),
        (252, "MYSQL_TYPE_BLOB"),
        (253, "MYSQL_TYPE_VAR_STRING"),
        (254, "MYSQL_TYPE_STRING"),
        (255, "MYSQL_TYPE_GEOMETRY"),
    ],
)
def test_type_name_known(code: int, name: str) -> None:
    """Known driver type codes map to the reference's MYSQL_TYPE_* names."""
    assert type_name(code) == name


@pytest.mark.parametrize(("code", "name"), [(17, "MYSQL_TYPE_17"), (200, "MYSQL_TYPE_200")])
def test_type_name_unknown(code: int, name: str) -> None:
    """Unknown codes get a MYSQL_TYPE_<code> name instead of failing."""
    assert type_name(code) == name


def test_type_name_none() -> None:
    """A missing type code (None) still yields a name."""
    assert type_name(None) == "MYSQL_TYPE_None"


def test_type_name_string_passthrough() -> None:
    """A type code that is already a name is returned unchanged."""
    assert type_name("MYSQL_TYPE_LONG") == "MYSQL_TYPE_LONG"


# ------------------------------------------------------------------ result_set


def test_result_set_plain() -> None:
    """Header, types and rows come from the description and rows; no BASE64 for text."""
    rs = result_set(desc(("id", 3), ("name", 253)), [(1, "a"), (2, None)])
    assert rs == ResultSet(
        header=["id", "name"],
        types=["MYSQL_TYPE_LONG", "MYSQL_TYPE_VAR_STRING"],
        rows=[[1, "a"], [2, None]],
        base64=[],
    )


def test_result_set_rows_are_lists() -> None:
    """Driver row tuples become lists."""
    rs = result_set(desc(("a", 3)), ((1,), (2,)))
    assert rs.rows == [[1], [2]]
    assert all(type(row) is list for row in rs.rows)


def test_result_set_accepts_generator_rows() -> None:
    """Rows may be any iterable, consumed once."""
    rs = result_set(desc(("a", 3)), ((i,) for i in range(3)))
    assert rs.rows == [[0], [1], [2]]


def test_result_set_empty() -> None:
    """Zero rows keep header and types, with an empty ROWS list."""
    rs = result_set(desc(("a", 3), ("b", 252)), [])
    assert rs.to_wire() == {
        "HEADER": ["a", "b"],
        "ROWS": [],
        "TYPES": ["MYSQL_TYPE_LONG", "MYSQL_TYPE_BLOB"],
    }


def test_result_set_bytes_header_decoded() -> None:
    """Column names given as bytes are decoded as UTF-8."""
    rs = result_set(desc((b"id", 3), ("caf\u00e9".encode(), 253)), [])
    assert rs.header == ["id", "caf\u00e9"]


def test_result_set_bad_bytes_header_replaced() -> None:
    """Column-name bytes that are not UTF-8 are decoded with replacement, not an error."""
    rs = result_set(desc((b"a\xffb", 3)), [])
    assert rs.header == ["a\ufffdb"]


def test_result_set_non_string_header() -> None:
    """A non-string column name is turned into its text."""
    rs = result_set(desc((1, 3)), [])
    assert rs.header == ["1"]


def test_result_set_binary_column_base64() -> None:
    """A bytes column is base64-encoded and listed in base64."""
    data = b"\x00\xff\x10binary"
    rs = result_set(desc(("id", 3), ("blob", 252)), [(1, data), (2, b"")])
    assert rs.rows == [[1, b64(data)], [2, ""]]
    assert rs.base64 == [1]


def test_result_set_bytearray_is_binary() -> None:
    """bytearray values count as binary too."""
    rs = result_set(desc(("b", 252)), [(bytearray(b"\x01\x02"),)])
    assert rs.rows == [[b64(b"\x01\x02")]]
    assert rs.base64 == [0]


def test_result_set_binary_after_nulls_detected() -> None:
    """A column whose first rows are NULL and later rows bytes is still detected as binary."""
    rows = [(1, None), (2, None), (3, b"\xde\xad")]
    rs = result_set(desc(("id", 3), ("b", 252)), rows)
    assert rs.base64 == [1]
    assert rs.rows == [[1, None], [2, None], [3, b64(b"\xde\xad")]]


def test_result_set_binary_nulls_stay_none() -> None:
    """NULLs inside a binary column stay None, not base64 text."""
    rows = [(b"a",), (None,), (b"b",)]
    rs = result_set(desc(("b", 252)), rows)
    assert rs.rows == [[b64(b"a")], [None], [b64(b"b")]]


def test_result_set_all_null_column_not_binary() -> None:
    """A column that is NULL in every row is not listed as binary."""
    rs = result_set(desc(("b", 252)), [(None,), (None,)])
    assert rs.base64 == []
    assert rs.rows == [[None], [None]]


def test_result_set_text_columns_untouched() -> None:
    """Text, numbers and Decimals in non-binary columns pass through unchanged."""
    rows = [("x", 1, Decimal("1.50"), 2.5, "2024-01-01 00:00:00")]
    rs = result_set(desc(("s", 253), ("i", 3), ("d", 246), ("f", 5), ("t", 12)), rows)
    assert rs.rows == [["x", 1, Decimal("1.50"), 2.5, "2024-01-01 00:00:00"]]
    assert rs.base64 == []


def test_result_set_several_binary_columns_sorted() -> None:
    """Several binary columns, decided at different rows, are listed in index order."""
    rows = [(None, "t", b"2", None), (b"0", "u", b"3", b"4")]
    rs = result_set(desc(("a", 252), ("b", 253), ("c", 252), ("d", 252)), rows)
    assert rs.base64 == [0, 2, 3]
    assert rs.rows == [
        [None, "t", b64(b"2"), None],
        [b64(b"0"), "u", b64(b"3"), b64(b"4")],
    ]


def test_result_set_types_override() -> None:
    """An explicit types list replaces the names read from the description."""
    rs = result_set(desc(("a", 3)), [(1,)], types=["INTEGER"])
    assert rs.types == ["INTEGER"]


def test_result_set_does_not_mutate_input_rows() -> None:
    """Encoding base64 works on copies; the driver's rows are left alone."""
    rows = [[b"x"]]
    result_set(desc(("b", 252)), rows)
    assert rows == [[b"x"]]


# ------------------------------------------------------------------ ResultSet / Update


def test_result_set_wire_key_order() -> None:
    """A result set's wire keys are HEADER, ROWS, TYPES in that order."""
    wire = ResultSet(header=["a"], types=["MYSQL_TYPE_LONG"], rows=[[1]]).to_wire()
    assert list(wire) == ["HEADER", "ROWS", "TYPES"]
    assert wire == {"HEADER": ["a"], "ROWS": [[1]], "TYPES": ["MYSQL_TYPE_LONG"]}


def test_result_set_wire_base64_first() -> None:
    """With binary columns, BASE64 comes first, then HEADER, ROWS, TYPES."""
    rs = result_set(desc(("b", 252)), [(b"x",)])
    wire = rs.to_wire()
    assert list(wire) == ["BASE64", "HEADER", "ROWS", "TYPES"]
    assert wire["BASE64"] == [0]


def test_update_to_wire() -> None:
    """An Update answers AFFECTED_ROWS, INSERT_ID, SUCCESS true, in that order."""
    wire = Update(affected_rows=3, insert_id=17).to_wire()
    assert wire == {"AFFECTED_ROWS": 3, "INSERT_ID": 17, "SUCCESS": True}
    assert list(wire) == ["AFFECTED_ROWS", "INSERT_ID", "SUCCESS"]


def test_update_to_wire_zero() -> None:
    """An Update with nothing affected and no insert id still reports SUCCESS."""
    assert Update(0, 0).to_wire() == {"AFFECTED_ROWS": 0, "INSERT_ID": 0, "SUCCESS": True}


# ------------------------------------------------------------------ Answer.to_wire

SELECT = ResultSet(header=["id"], types=["MYSQL_TYPE_LONG"], rows=[[42]])
SELECT_WIRE = {"HEADER": ["id"], "ROWS": [[42]], "TYPES": ["MYSQL_TYPE_LONG"]}
UPDATE = Update(affected_rows=1, insert_id=0)
UPDATE_WIRE = {"AFFECTED_ROWS": 1, "INSERT_ID": 0, "SUCCESS": True}
SYNTAX = SQLError(errno=1064, message="You have an error in your SQL syntax")


def test_answer_one_result_is_object() -> None:
    """One result without error: RESULT is that result's object, then SERVER."""
    wire = Answer(results=[SELECT], server="bench").to_wire()
    assert wire == {"RESULT": SELECT_WIRE, "SERVER": "bench"}
    assert list(wire) == ["RESULT", "SERVER"]


def test_answer_one_update_is_object() -> None:
    """One statement without a result set: RESULT is the update object."""
    assert Answer(results=[UPDATE], server="bench").to_wire() == {
        "RESULT": UPDATE_WIRE,
        "SERVER": "bench",
    }


def test_answer_several_results_is_list() -> None:
    """Several results: RESULT is a list, one element per statement, in order."""
    wire = Answer(results=[UPDATE, SELECT, UPDATE], server="bench").to_wire()
    assert wire == {"RESULT": [UPDATE_WIRE, SELECT_WIRE, UPDATE_WIRE], "SERVER": "bench"}


def test_answer_error_after_one_result() -> None:
    """An error after one result: RESULT is a list plus MYSQL_ERRNO and MYSQL_ERROR."""
    wire = Answer(results=[SELECT], error=SYNTAX, server="bench").to_wire()
    assert wire == {
        "MYSQL_ERRNO": 1064,
        "MYSQL_ERROR": "You have an error in your SQL syntax",
        "RESULT": [SELECT_WIRE],
        "SERVER": "bench",
    }
    assert list(wire) == sorted(wire)


def test_answer_error_after_several_results() -> None:
    """An error after several results keeps all earlier results in the RESULT list."""
    wire = Answer(results=[UPDATE, SELECT], error=SYNTAX, server="bench").to_wire()
    assert wire["RESULT"] == [UPDATE_WIRE, SELECT_WIRE]
    assert wire["MYSQL_ERRNO"] == 1064


def test_answer_error_alone() -> None:
    """An error in the first statement: no RESULT, just the error and SERVER."""
    wire = Answer(error=SYNTAX, server="bench").to_wire()
    assert wire == {
        "MYSQL_ERRNO": 1064,
        "MYSQL_ERROR": "You have an error in your SQL syntax",
        "SERVER": "bench",
    }
    assert list(wire) == ["MYSQL_ERRNO", "MYSQL_ERROR", "SERVER"]


def test_answer_error_alone_without_server() -> None:
    """An error without a server name answers only MYSQL_ERRNO and MYSQL_ERROR."""
    wire = Answer(error=SYNTAX).to_wire()
    assert list(wire) == ["MYSQL_ERRNO", "MYSQL_ERROR"]


def test_answer_server_absent_when_unset() -> None:
    """SERVER is left out when no backend name is set."""
    assert Answer(results=[SELECT]).to_wire() == {"RESULT": SELECT_WIRE}


def test_answer_empty() -> None:
    """An answer with nothing (e.g. SLAYER_HELP handled elsewhere) is an empty object."""
    assert Answer().to_wire() == {}


def test_answer_extras_merged_sorted() -> None:
    """Extras are merged with RESULT and SERVER and all top-level keys come out sorted."""
    extras = {"SLAYER_HELP": {"SQL": "..."}, "STAT": "Uptime: 1", "CLIENT_VERSION": 101119}
    wire = Answer(results=[SELECT], server="bench", extras=extras).to_wire()
    assert wire == {
        "CLIENT_VERSION": 101119,
        "RESULT": SELECT_WIRE,
        "SERVER": "bench",
        "SLAYER_HELP": {"SQL": "..."},
        "STAT": "Uptime: 1",
    }
    assert list(wire) == ["CLIENT_VERSION", "RESULT", "SERVER", "SLAYER_HELP", "STAT"]


def test_answer_single_extra_only() -> None:
    """A single extra with no results answers just that key."""
    wire = Answer(extras={"SLAYER_HELP": {"SQL": "x"}}).to_wire()
    assert wire == {"SLAYER_HELP": {"SQL": "x"}}


def test_answer_extras_with_error_sorted() -> None:
    """Extras, error and SERVER together come out in sorted key order."""
    wire = Answer(
        results=[UPDATE],
        error=SYNTAX,
        server="s",
        extras={"ROLLBACK_ON_ERROR": True, "ROLLBACK_ON_ERROR_SUCCESS": True},
    ).to_wire()
    assert list(wire) == [
        "MYSQL_ERRNO",
        "MYSQL_ERROR",
        "RESULT",
        "ROLLBACK_ON_ERROR",
        "ROLLBACK_ON_ERROR_SUCCESS",
        "SERVER",
    ]


def test_answer_to_wire_does_not_mutate_extras() -> None:
    """Building the wire object leaves the Answer's extras untouched."""
    answer = Answer(results=[SELECT], server="s", extras={"STAT": "x"})
    answer.to_wire()
    assert answer.extras == {"STAT": "x"}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Answer(results=[SELECT], server="s"), id="one"),
        pytest.param(Answer(results=[SELECT, UPDATE], server="s"), id="many"),
        pytest.param(Answer(results=[SELECT], error=SYNTAX, server="s"), id="error-after"),
        pytest.param(Answer(error=SYNTAX, server="s"), id="error-alone"),
        pytest.param(Answer(results=[UPDATE], extras={"Z": 1, "A": 2}), id="extras"),
        pytest.param(Answer(results=[SELECT]), id="no-server"),
    ],
)
def test_answer_top_level_always_sorted(answer: Answer) -> None:
    """Whatever the combination, top-level keys come out in sorted order."""
    wire = answer.to_wire()
    assert list(wire) == sorted(wire)
