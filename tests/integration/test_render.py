"""Tests for api.render: one wire answer rendered in each FORMAT."""

from __future__ import annotations

import ast
import csv
import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

import orjson
import pytest

from api import render as r

PHP = shutil.which("php")
needs_php = pytest.mark.skipif(
    PHP is None, reason="php binary not installed; cannot check unserialize()"
)

NASTY = "quote\" apos' back\\slash\nnew\rcr\ttab é 日本 🙂 <&>"

SELECT = {
    "RESULT": {
        "HEADER": ["id", "name", "price"],
        "ROWS": [[1, "a", Decimal("1.50")], [2, None, Decimal("-0.001")]],
        "TYPES": ["MYSQL_TYPE_LONG", "MYSQL_TYPE_VAR_STRING", "MYSQL_TYPE_NEWDECIMAL"],
    },
    "SERVER": "db1",
}
AFFECTED = {"AFFECTED_ROWS": 1, "INSERT_ID": 0, "SUCCESS": True}


# --------------------------------------------------------------------- json


def test_json_exact_big_ints_and_decimals() -> None:
    """JSON carries Decimals and ints of any size as exact numbers."""
    answer = {
        "RESULT": {
            "HEADER": ["d"],
            "ROWS": [
                [Decimal("1.50")],
                [Decimal("-0.001")],
                [Decimal("12345678901234567890.123456789")],
                [2**64 - 1],
                [-(2**63)],
                [2**70],
                [-(2**70)],
            ],
        }
    }
    body = r.render_json(answer)
    back = json.loads(body, parse_float=Decimal)
    rows = back["RESULT"]["ROWS"]
    assert rows[0][0] == Decimal("1.50") and str(rows[0][0]) == "1.50"
    assert str(rows[1][0]) == "-0.001"
    assert str(rows[2][0]) == "12345678901234567890.123456789"
    assert rows[3:] == [[2**64 - 1], [-(2**63)], [2**70], [-(2**70)]]
    assert b"[1.50]" in body and b'"1.50"' not in body
    assert b"1180591620717411303424" in body


def test_json_common_path_is_one_dumps_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON uses a single orjson.dumps call unless an int exceeds 64 bits."""
    calls: list[int] = []
    real = orjson.dumps

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(r.orjson, "dumps", counting)
    r.render_json(SELECT)
    assert len(calls) == 1
    calls.clear()
    assert r.render_json({"X": [2**64]}) == b'{"X":[18446744073709551616]}'
    assert len(calls) == 2


def test_json_nan_inf_become_null() -> None:
    """JSON writes float and Decimal NaN/Infinity as null."""
    body = r.render_json(
        {"X": [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity"), 1.5]}
    )
    assert body == b'{"X":[null,null,null,null,1.5]}'


def test_json_control_chars_and_non_ascii() -> None:
    """JSON stays valid and exact for control characters, U+2028 and non-ASCII."""
    s = "".join(chr(c) for c in range(0x20)) + "\x7f\u2028\u2029" + NASTY
    body = r.render_json({"S": s, "K\x00": "v"})
    assert json.loads(body) == {"S": s, "K\x00": "v"}
    assert "日本".encode() in body


def test_json_unsupported_type_raises() -> None:
    """JSON refuses values that are not part of a wire answer."""
    with pytest.raises(TypeError):
        r.render_json({"X": object()})


# ---------------------------------------------------------------------- xml


def _from_xml(el: ET.Element) -> Any:
    """Decode the DBSlayer XML shape back into dicts/lists of text."""
    if el.tag == "object":
        kids = list(el)
        return {k.text or "": _xml_value(v) for k, v in zip(kids[::2], kids[1::2])}
    assert el.tag == "array"
    return [_xml_value(item) for item in el]


def _xml_value(el: ET.Element) -> Any:
    """Decode a <value>/<item>: a nested container or its text."""
    kids = list(el)
    return _from_xml(kids[0]) if kids else (el.text or "")


def test_xml_exact_bytes_small_answer() -> None:
    """XML has the reference DBSlayer shape, byte for byte."""
    body = r.render_xml({"RESULT": {"HEADER": ["a"], "ROWS": [], "TYPES": ["MYSQL_TYPE_LONG"]}})
    assert body == (
        b"<object><key>RESULT</key><value><object>"
        b"<key>HEADER</key><value><array><item>a</item></array></value>"
        b"<key>ROWS</key><value>[]</value>"
        b"<key>TYPES</key><value><array><item>MYSQL_TYPE_LONG</item></array></value>"
        b"</object></value></object>"
    )
    ET.fromstring(body)


def test_xml_parses_and_keeps_values() -> None:
    """XML parses with ElementTree and carries every scalar kind as text."""
    answer = {
        "RESULT": [
            {
                "HEADER": ["i", "s", "d", "f", "b"],
                "ROWS": [
                    [2**70, NASTY, Decimal("1.50"), 0.1, True],
                    [-1, None, Decimal("-0.001"), 1e16, False],
                ],
            },
            AFFECTED,
        ],
        "SERVER": "db1",
        "EMPTY": {},
        "NAN": float("nan"),
    }
    body = r.render_xml(answer)
    assert not body.startswith(b"<?xml")
    back = _from_xml(ET.fromstring(body))
    assert back["RESULT"][0]["ROWS"] == [
        [str(2**70), NASTY, "1.50", "0.1", "true"],
        ["-1", "null", "-0.001", "1e+16", "false"],
    ]
    assert back["RESULT"][1] == {
        "AFFECTED_ROWS": "1",
        "INSERT_ID": "0",
        "SUCCESS": "true",
    }
    assert back["SERVER"] == "db1" and back["NAN"] == "null"
    assert b"<key>EMPTY</key><value><object></object></value>" in body


def test_xml_escapes_and_drops_illegal_chars() -> None:
    """XML escapes &<> and tab/LF/CR, and drops chars XML 1.0 cannot carry."""
    s = "a&b<c>d]]>e\tf\ng\rh\x00\x01\x1f\ufffe\uffffi"
    body = r.render_xml({"K<&>": s})
    assert b"a&amp;b&lt;c&gt;d]]&gt;e&#x09;f&#x0A;g&#x0D;hi" in body
    assert b"<key>K&lt;&amp;&gt;</key>" in body
    back = _from_xml(ET.fromstring(body))
    assert back == {"K<&>": "a&b<c>d]]>e\tf\ng\rhi"}


# ---------------------------------------------------------------------- php


def _php_roundtrip(body: bytes) -> Any:
    """unserialize() `body` in real PHP and return its json_encode, decoded."""
    assert PHP is not None
    proc = subprocess.run(
        [
            PHP,
            "-r",
            "$x = unserialize(stream_get_contents(STDIN)); echo json_encode($x, JSON_PRESERVE_ZERO_FRACTION);",
        ],
        input=body,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return json.loads(proc.stdout)


@needs_php
def test_php_roundtrip_structures_and_strings() -> None:
    """PHP unserialize() reads back strings, nesting, null, bools, ints and floats."""
    answer = {
        "RESULT": {
            "HEADER": ["s", "n"],
            "ROWS": [[NASTY, None], ["", 0], ['"";}s:1:"x";', -5]],
        },
        "NESTED": [[1, [2, [3, []]]], {"a": True, "b": False}],
        "FLOATS": [0.1, 1.0, -2.5e-07, 1e16],
        "SERVER": "db1",
    }
    back = _php_roundtrip(r.render_php(answer))
    assert back["RESULT"] == answer["RESULT"]
    assert back["NESTED"] == [[1, [2, [3, []]]], {"a": True, "b": False}]
    assert back["FLOATS"] == [0.1, 1.0, -2.5e-07, 1e16]
    assert back["SERVER"] == "db1"


@needs_php
def test_php_big_ints_and_decimals_are_strings() -> None:
    """PHP gets ints beyond int64 and Decimals as exact strings, NaN as null."""
    answer = {
        "X": [
            2**63 - 1,
            -(2**63),
            2**63,
            -(2**63) - 1,
            2**70,
            Decimal("1.50"),
            Decimal("-0.001"),
            float("nan"),
        ]
    }
    back = _php_roundtrip(r.render_php(answer))
    assert back["X"] == [
        2**63 - 1,
        -(2**63),
        str(2**63),
        str(-(2**63) - 1),
        str(2**70),
        "1.50",
        "-0.001",
        None,
    ]


def test_php_string_length_is_utf8_bytes() -> None:
    """PHP string lengths count UTF-8 bytes, and list keys are i:0.. ."""
    assert r.render_php({"a": "é"}) == b'a:1:{s:1:"a";s:2:"\xc3\xa9";}'
    assert r.render_php({"L": [True, None]}) == b'a:1:{s:1:"L";a:2:{i:0;b:1;i:1;N;}}'


# ------------------------------------------------------------------- python


def test_python_literal_roundtrip() -> None:
    """Python output is a literal that ast.literal_eval reads back exactly."""
    answer = {
        "RESULT": {
            "HEADER": ["x"],
            "ROWS": [
                [NASTY],
                [None],
                [True],
                [2**70],
                [Decimal("1.50")],
                [Decimal("-0.001")],
                [Decimal(7)],
            ],
        },
        "F": [0.1, float("inf"), float("nan"), Decimal("NaN")],
        "D": {"nested": {"deep": []}, "empty": {}},
    }
    body = r.render_python(answer)
    assert body.endswith(b"\n") and "日本".encode() in body
    back = ast.literal_eval(body.decode())
    assert back == {
        "RESULT": {
            "HEADER": ["x"],
            "ROWS": [[NASTY], [None], [True], [2**70], [1.5], [-0.001], [7]],
        },
        "F": [0.1, None, None, None],
        "D": {"nested": {"deep": []}, "empty": {}},
    }


# ---------------------------------------------------------------------- csv


def _csv_rows(body: bytes) -> list[list[str]]:
    """Parse CSV bytes with the csv module."""
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


def test_csv_single_result() -> None:
    """CSV of one result set is a header line then one CRLF line per row."""
    body = r.render_csv(SELECT)
    assert body == b"id,name,price\r\n1,a,1.50\r\n2,,-0.001\r\n"
    assert _csv_rows(body) == [
        ["id", "name", "price"],
        ["1", "a", "1.50"],
        ["2", "", "-0.001"],
    ]


def test_csv_null_vs_empty_string() -> None:
    """CSV writes NULL as an empty field and an empty string as \"\"."""
    body = r.render_csv({"RESULT": {"HEADER": ["a", "b", "c"], "ROWS": [[1, None, ""]]}})
    assert body == b'a,b,c\r\n1,,""\r\n'


def test_csv_quoting_roundtrip() -> None:
    """CSV quotes commas, quotes, CR/LF, edge spaces; values read back exactly."""
    values = [
        "a,b",
        'say "hi"',
        "l1\nl2",
        "cr\rx",
        " lead",
        "trail ",
        "plain",
        "é 日本",
        True,
        False,
        0.1,
        2**70,
    ]
    body = r.render_csv(
        {"RESULT": {"HEADER": [f"c{i}" for i in range(len(values))], "ROWS": [values]}}
    )
    assert b'"say ""hi"""' in body and b'" lead"' in body and b'"trail "' in body
    assert b",plain," in body
    assert _csv_rows(body)[1] == [
        "a,b",
        'say "hi"',
        "l1\nl2",
        "cr\rx",
        " lead",
        "trail ",
        "plain",
        "é 日本",
        "true",
        "false",
        "0.1",
        str(2**70),
    ]


def test_csv_multi_results_separated_by_empty_line() -> None:
    """CSV renders several results in order, one empty line between them."""
    answer = {
        "RESULT": [
            {"HEADER": ["a"], "ROWS": [[1], [2]], "TYPES": ["MYSQL_TYPE_LONG"]},
            AFFECTED,
            {"HEADER": ["b"], "ROWS": [], "TYPES": ["MYSQL_TYPE_LONG"]},
        ],
        "SERVER": "db1",
    }
    body = r.render_csv(answer)
    assert body == b"a\r\n1\r\n2\r\n\r\nAFFECTED_ROWS,INSERT_ID,SUCCESS\r\n1,0,true\r\n\r\nb\r\n"


def test_csv_statement_without_rows() -> None:
    """CSV of an AFFECTED_ROWS result is its header and one line of values."""
    assert r.render_csv({"RESULT": AFFECTED}) == b"AFFECTED_ROWS,INSERT_ID,SUCCESS\r\n1,0,true\r\n"


@pytest.mark.parametrize(
    "answer",
    [
        {"MYSQL_ERRNO": 1064, "MYSQL_ERROR": "You have an error", "SERVER": "db1"},
        {"ERROR": "what is wrong"},
        {"STAT": "Uptime: 5", "SERVER": "db1"},
        {
            "RESULT": [AFFECTED],
            "MYSQL_ERRNO": 1146,
            "MYSQL_ERROR": "Table doesn't exist",
            "SERVER": "db1",
        },
    ],
)
def test_csv_not_applicable(answer: dict[str, Any]) -> None:
    """CSV refuses answers without results, or with an error, via CsvNotApplicable."""
    with pytest.raises(r.CsvNotApplicable) as info:
        r.render(answer, "csv")
    assert isinstance(info.value, ValueError)
    if "MYSQL_ERRNO" in answer:
        assert str(answer["MYSQL_ERRNO"]) in str(info.value)


# ------------------------------------------------------------------ dispatch


def test_render_content_types() -> None:
    """render() returns each format's body and content type."""
    expected = {
        "json": b"application/json",
        "xml": b"text/xml; charset=utf-8",
        "php": b"text/plain; charset=utf-8",
        "python": b"text/x-python; charset=utf-8",
        "csv": b"text/csv; charset=utf-8",
    }
    assert r.FORMATS == ("json", "xml", "php", "python", "csv")
    for fmt in r.FORMATS:
        body, ctype = r.render(SELECT, fmt)
        assert ctype == expected[fmt]
        assert body == getattr(r, f"render_{fmt}")(SELECT)


def test_unknown_format_raises_value_error() -> None:
    """render() raises ValueError for a format not in FORMATS."""
    for fmt in ("yaml", "JSON", ""):
        with pytest.raises(ValueError, match="unknown FORMAT"):
            r.render(SELECT, fmt)
