"""Unit tests for gateway.request: query decoding, request validation, /dbform fields."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.request import (
    BOOL_KEYS,
    INFO_FLAGS,
    Request,
    RequestError,
    decode_query,
    form_to_object,
    loads_json,
    parse_request,
)

HINT = 'TRY {"SLAYER_HELP":true }'


def refused(obj: Any, ignore_unknown_keys: bool = False) -> str:
    """Parse obj expecting a RequestError; return its message."""
    with pytest.raises(RequestError) as info:
        parse_request(obj, ignore_unknown_keys=ignore_unknown_keys)
    return str(info.value)


# ------------------------------------------------------------------ decode_query


def test_decode_query_plain_object() -> None:
    """A percent-encoded JSON object decodes to the dict it spells."""
    raw = b"%7B%22SQL%22%3A%22SELECT%201%22%7D"
    assert decode_query(raw) == {"SQL": "SELECT 1"}


def test_decode_query_unencoded_object() -> None:
    """Characters a client left unencoded still decode (the whole query string is JSON)."""
    assert decode_query(b'{"SQL":"SELECT 1"}') == {"SQL": "SELECT 1"}


def test_decode_query_plus_is_space() -> None:
    """A literal `+` in the query string decodes to a space, as in the reference."""
    assert decode_query(b'{"SQL":"SELECT+1+2"}') == {"SQL": "SELECT 1 2"}


def test_decode_query_percent_2b_is_plus() -> None:
    """`%2B` (either case) decodes to a literal plus, not a space."""
    assert decode_query(b'{"SQL":"SELECT 1%2B2%2b3"}') == {"SQL": "SELECT 1+2+3"}


def test_decode_query_percent_bytes_are_utf8() -> None:
    """`%XX` escapes are bytes, joined and decoded as UTF-8."""
    raw = b'{"SQL":"SELECT %27%C3%A9%E6%97%A5%F0%9F%99%82%27"}'
    assert decode_query(raw) == {"SQL": "SELECT '\u00e9\u65e5\U0001f642'"}


def test_decode_query_percent_encoded_quote_and_backslash() -> None:
    """Encoded JSON escapes (`\\"`, `\\n`) survive percent-decoding."""
    raw = b"%7B%22SQL%22%3A%22a%5C%22b%5Cn%22%7D"
    assert decode_query(raw) == {"SQL": 'a"b\n'}


def test_decode_query_empty_raises() -> None:
    """An empty query string is a RequestError that shows the expected shape."""
    with pytest.raises(RequestError, match="empty request"):
        decode_query(b"")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"SQL":"%FF"}', id="lone-ff"),
        pytest.param(b'{"SQL":"%C3"}', id="truncated-sequence"),
        pytest.param(b'{"SQL":"%ED%A0%80"}', id="surrogate"),
        pytest.param(b"%FE%FF", id="bom-like-garbage"),
    ],
)
def test_decode_query_invalid_utf8(raw: bytes) -> None:
    """Percent-escapes that are not UTF-8 raise a RequestError saying so."""
    with pytest.raises(RequestError, match=r"query string is not valid UTF-8 JSON"):
        decode_query(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{bad", id="broken-object"),
        pytest.param(b"SELECT+1", id="bare-sql"),
        pytest.param(b"%7B%22SQL%22%3A1%2C%7D", id="trailing-comma"),
        pytest.param(b'{"SQL":"x"}junk', id="trailing-junk"),
        pytest.param(b"SQL=SELECT+1", id="form-style"),
    ],
)
def test_decode_query_invalid_json(raw: bytes) -> None:
    """Text that is not JSON raises a RequestError naming the query string and the reason."""
    with pytest.raises(RequestError) as info:
        decode_query(raw)
    message = str(info.value)
    assert message.startswith("the query string is not valid UTF-8 JSON (")
    assert message.endswith(")")
    assert len(message) > len("the query string is not valid UTF-8 JSON ()")


def test_decode_query_returns_non_objects_unchanged() -> None:
    """decode_query only decodes; rejecting non-objects is parse_request's job."""
    assert decode_query(b"%5B1%2C2%5D") == [1, 2]


def test_loads_json_names_where() -> None:
    """loads_json puts the caller's `where` into the message."""
    with pytest.raises(RequestError, match="the request body is not valid UTF-8 JSON"):
        loads_json(b"{", "request body")


def test_loads_json_valid() -> None:
    """loads_json returns the decoded value for valid JSON."""
    assert loads_json(b'{"a":[1,null,true]}', "body") == {"a": [1, None, True]}


def test_request_error_is_http_400() -> None:
    """RequestError carries the HTTP status 400."""
    assert RequestError.status == 400
    assert RequestError("x").status == 400


# ------------------------------------------------------------------ parse_request: shape


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        pytest.param([{"SQL": "SELECT 1"}], "an array", id="array"),
        pytest.param([], "an array", id="empty-array"),
        pytest.param(42, "a number", id="int"),
        pytest.param(1.5, "a number", id="float"),
        pytest.param("SELECT 1", "a string", id="string"),
        pytest.param(None, "null", id="null"),
        pytest.param(True, "a boolean", id="bool"),
    ],
)
def test_parse_request_non_object(obj: Any, kind: str) -> None:
    """A request that is not a JSON object is refused, naming what was received."""
    message = refused(obj)
    assert f"a request is a JSON object, got {kind}" in message


def test_parse_request_minimal_sql() -> None:
    """A request with only SQL gets the defaults for every other field."""
    request = parse_request({"SQL": "SELECT 1"})
    assert request == Request(sql="SELECT 1")
    assert request.format == "json"
    assert request.server is None
    assert request.params is None
    assert request.info == ()
    assert request.rollback_on_error is False
    assert request.help is False
    assert request.debug_return_input is False
    assert request.timeout_ms is None
    assert request.cache_s is None


def test_parse_request_keeps_raw() -> None:
    """The received object is kept as `raw` for SLAYER_DEBUG_RETURN_INPUT (keys ignored under
    --compat original included)."""
    obj = {"SQL": "SELECT 1", "whatever": [1]}
    assert parse_request(obj, ignore_unknown_keys=True).raw == obj
    known = {"SQL": "SELECT 1", "SLAYER_DEBUG_RETURN_INPUT": True, "PARAMS": None}
    assert parse_request(known).raw == known


def test_parse_request_full() -> None:
    """Every known key lands in its Request field."""
    request = parse_request(
        {
            "SQL": "SELECT %s",
            "SERVER": "db1",
            "FORMAT": "xml",
            "PARAMS": [1],
            "ROLLBACK_ON_ERROR": True,
            "STAT": True,
            "SLAYER_DEBUG_RETURN_INPUT": True,
            "SLAYER_HELP": True,
            "TIMEOUT": 250,
            "CACHE": 5,
        }
    )
    assert request.sql == "SELECT %s"
    assert request.server == "db1"
    assert request.format == "xml"
    assert request.params == (1,)
    assert request.rollback_on_error is True
    assert request.info == ("STAT",)
    assert request.debug_return_input is True
    assert request.help is True
    assert request.timeout_ms == 250.0
    assert request.cache_s == 5.0


def test_parse_request_unknown_keys_ignored_under_compat() -> None:
    """Under --compat original, unknown keys (any case, any value) are ignored, as in the
    reference (tests/unit/test_request_keys.py: refused otherwise)."""
    obj = {"SQL": "SELECT 1", "sql": 5, "FOO": {"x": []}, "": None}
    request = parse_request(obj, ignore_unknown_keys=True)
    assert request.sql == "SELECT 1"
    with pytest.raises(RequestError, match='unknown request keys sql .*, FOO, ""; known keys'):
        parse_request(obj)


def test_parse_request_null_means_absent() -> None:
    """A key whose value is JSON null is treated as absent."""
    request = parse_request(
        {
            "SQL": "SELECT 1",
            "SERVER": None,
            "FORMAT": None,
            "PARAMS": None,
            "STAT": None,
            "TIMEOUT": None,
            "CACHE": None,
        }
    )
    assert request == Request(sql="SELECT 1")


# ------------------------------------------------------------------ parse_request: SQL


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        pytest.param(1, "a number", id="number"),
        pytest.param(True, "a boolean", id="bool"),
        pytest.param(["SELECT 1"], "an array", id="array"),
    ],
)
def test_parse_request_sql_wrong_type(value: Any, kind: str) -> None:
    """SQL that is not a string is refused, naming the JSON kind received."""
    assert refused({"SQL": value}) == f"SQL must be a string, got {kind}"


def test_parse_request_sql_object_named_in_json_terms() -> None:
    """SQL given as a JSON object is refused with 'an object', not a Python type name."""
    assert refused({"SQL": {"q": "SELECT 1"}}) == "SQL must be a string, got an object"


@pytest.mark.parametrize("sql", ["", " ", "\n\t  "])
def test_parse_request_empty_sql(sql: str) -> None:
    """An empty or whitespace-only SQL string is refused."""
    assert refused({"SQL": sql}) == "SQL is empty"


# ------------------------------------------------------------------ parse_request: SERVER


@pytest.mark.parametrize(
    ("value", "kind"),
    [(1, "a number"), (False, "a boolean"), (["db1"], "an array")],
)
def test_parse_request_server_wrong_type(value: Any, kind: str) -> None:
    """SERVER that is not a string is refused."""
    assert refused({"SQL": "SELECT 1", "SERVER": value}) == f"SERVER must be a string, got {kind}"


# ------------------------------------------------------------------ parse_request: FORMAT


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("json", "json"),
        ("JSON", "json"),
        ("Xml", "xml"),
        ("PHP", "php"),
        ("python", "python"),
        ("CsV", "csv"),
    ],
)
def test_parse_request_format_case_insensitive(given: str, expected: str) -> None:
    """FORMAT is matched case-insensitively and stored lower-case."""
    assert parse_request({"SQL": "SELECT 1", "FORMAT": given}).format == expected


@pytest.mark.parametrize("fmt", ["yaml", "", " json", "html"])
def test_parse_request_unknown_format(fmt: str) -> None:
    """An unknown FORMAT is refused, listing the formats and echoing what was sent."""
    message = refused({"SQL": "SELECT 1", "FORMAT": fmt})
    assert message == f"FORMAT must be one of json, xml, php, python, csv, got {fmt!r}"


def test_parse_request_format_wrong_type() -> None:
    """A FORMAT that is not a string is refused."""
    assert refused({"SQL": "SELECT 1", "FORMAT": 1}) == "FORMAT must be a string, got a number"


# ------------------------------------------------------------------ parse_request: flags


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        pytest.param(1, "a number", id="one"),
        pytest.param(0, "a number", id="zero"),
        pytest.param("true", "a string", id="string-true"),
        pytest.param([True], "an array", id="array"),
    ],
)
def test_parse_request_flag_must_be_boolean(key: str, value: Any, kind: str) -> None:
    """Every boolean key refuses anything but a JSON boolean."""
    message = refused({"SQL": "SELECT 1", key: value})
    assert message == f"{key} must be true or false, got {kind}"


def test_parse_request_flags_true() -> None:
    """The non-info flags set their own Request fields."""
    request = parse_request(
        {
            "SQL": "SELECT 1",
            "ROLLBACK_ON_ERROR": True,
            "SLAYER_HELP": True,
            "SLAYER_DEBUG_RETURN_INPUT": True,
        }
    )
    assert (request.rollback_on_error, request.help, request.debug_return_input) == (
        True,
        True,
        True,
    )
    assert request.info == ()


def test_parse_request_info_in_protocol_order() -> None:
    """Info flags are collected in `info` in protocol order, whatever the request's order."""
    obj = {key: True for key in reversed(INFO_FLAGS)}
    assert parse_request(obj).info == INFO_FLAGS
    assert INFO_FLAGS == (
        "STAT",
        "CLIENT_INFO",
        "HOST_INFO",
        "SERVER_VERSION",
        "CLIENT_VERSION",
        "SERVER_NAME",
    )


def test_parse_request_info_skips_false_flags() -> None:
    """Info flags set to false are left out of `info`."""
    request = parse_request(
        {"SERVER_NAME": True, "STAT": False, "HOST_INFO": True, "CLIENT_INFO": False}
    )
    assert request.info == ("HOST_INFO", "SERVER_NAME")


@pytest.mark.parametrize("flag", INFO_FLAGS)
def test_parse_request_single_info_flag_is_enough(flag: str) -> None:
    """One info flag alone is a valid request that needs a backend."""
    request = parse_request({flag: True})
    assert request.info == (flag,)
    assert request.sql is None
    assert request.needs_backend is True


# ------------------------------------------------------------------ parse_request: PARAMS


def test_parse_request_params_array() -> None:
    """PARAMS as an array of scalars becomes a tuple, in order."""
    request = parse_request({"SQL": "SELECT %s", "PARAMS": [1, "a", None, True, 1.5]})
    assert request.params == (1, "a", None, True, 1.5)
    assert isinstance(request.params, tuple)


def test_parse_request_params_empty_array() -> None:
    """An empty PARAMS array is kept (an empty tuple, not None)."""
    assert parse_request({"SQL": "SELECT 1", "PARAMS": []}).params == ()


def test_parse_request_params_object() -> None:
    """PARAMS as an object of scalars becomes a dict."""
    params = {"id": 42, "name": "x", "n": None, "f": False}
    request = parse_request({"SQL": "SELECT %(id)s", "PARAMS": params})
    assert request.params == params
    assert isinstance(request.params, dict)


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        pytest.param("1", "a string", id="string"),
        pytest.param(1, "a number", id="number"),
        pytest.param(True, "a boolean", id="bool"),
    ],
)
def test_parse_request_params_wrong_type(params: Any, kind: str) -> None:
    """PARAMS that is neither an array nor an object is refused."""
    message = refused({"SQL": "SELECT %s", "PARAMS": params})
    assert message == f"PARAMS must be an array or an object, got {kind}"


@pytest.mark.parametrize(
    "params",
    [
        pytest.param([[1]], id="array-in-array"),
        pytest.param([{"a": 1}], id="object-in-array"),
        pytest.param({"a": [1]}, id="array-in-object"),
        pytest.param({"a": {"b": 1}}, id="object-in-object"),
        pytest.param([1, [2, 3]], id="late-array"),
    ],
)
def test_parse_request_params_nested_refused(params: Any) -> None:
    """PARAMS values that are arrays or objects are refused."""
    message = refused({"SQL": "SELECT %s", "PARAMS": params})
    assert message.startswith("PARAMS values must be strings, numbers, booleans or null, got ")


def test_parse_request_params_nested_object_named_in_json_terms() -> None:
    """A nested object in PARAMS is reported as 'an object', not a Python type name."""
    message = refused({"SQL": "SELECT %s", "PARAMS": [{"a": 1}]})
    assert message.endswith("got an object")


def test_parse_request_params_nested_array_named() -> None:
    """A nested array in PARAMS is reported as 'an array'."""
    message = refused({"SQL": "SELECT %s", "PARAMS": [[1]]})
    assert message.endswith("got an array")


@pytest.mark.parametrize("params", [[1], {"a": 1}, []])
def test_parse_request_params_without_sql(params: Any) -> None:
    """PARAMS without SQL is refused, even when something else makes the request valid."""
    assert refused({"PARAMS": params, "SLAYER_HELP": True}) == "PARAMS needs SQL"
    assert refused({"PARAMS": params, "STAT": True}) == "PARAMS needs SQL"


def test_parse_request_params_huge_integer_not_rounded() -> None:
    """A PARAMS integer beyond 64 bits is either kept exact or refused, never rounded."""
    big = 123456789012345678901234567890
    obj = decode_query(b'{"SQL":"SELECT %s","PARAMS":[' + str(big).encode() + b"]}")
    try:
        request = parse_request(obj)
    except RequestError:
        return
    assert isinstance(request.params, list)
    assert type(request.params[0]) is int
    assert request.params[0] == big


def test_parse_request_params_u64_integer_exact() -> None:
    """Integers within 64 bits (BIGINT UNSIGNED max) decode and pass through exactly."""
    obj = decode_query(b'{"SQL":"SELECT %s","PARAMS":[18446744073709551615,9007199254740993]}')
    assert parse_request(obj).params == (18446744073709551615, 9007199254740993)


# ------------------------------------------------------------------ parse_request: TIMEOUT/CACHE


@pytest.mark.parametrize("key", ["TIMEOUT", "CACHE"])
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        pytest.param(True, "a boolean", id="true"),
        pytest.param(False, "a boolean", id="false"),
        pytest.param("5", "a string", id="string"),
        pytest.param([5], "an array", id="array"),
    ],
)
def test_parse_request_number_wrong_type(key: str, value: Any, kind: str) -> None:
    """TIMEOUT and CACHE refuse booleans, strings and other non-numbers."""
    assert refused({"SQL": "SELECT 1", key: value}) == f"{key} must be a number, got {kind}"


@pytest.mark.parametrize("key", ["TIMEOUT", "CACHE"])
@pytest.mark.parametrize("value", [-1, -0.5, float("nan")])
def test_parse_request_number_negative_or_nan(key: str, value: float) -> None:
    """TIMEOUT and CACHE refuse negative numbers and NaN."""
    message = refused({"SQL": "SELECT 1", key: value})
    assert message.startswith(f"{key} must be a positive number, got ")


@pytest.mark.parametrize("value", [0, 0.0])
def test_parse_request_timeout_zero_refused(value: float) -> None:
    """TIMEOUT 0 is refused (a zero time limit makes no sense)."""
    assert refused({"SQL": "SELECT 1", "TIMEOUT": value}) == (
        f"TIMEOUT must be a positive number, got {value}"
    )


def test_parse_request_cache_zero_allowed() -> None:
    """CACHE 0 is allowed (no cached answer wanted)."""
    assert parse_request({"SQL": "SELECT 1", "CACHE": 0}).cache_s == 0.0


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (2.5, 2.5), (30000, 30000.0)])
def test_parse_request_numbers_become_floats(value: float, expected: float) -> None:
    """Valid TIMEOUT and CACHE values are stored as floats."""
    request = parse_request({"SQL": "SELECT 1", "TIMEOUT": value, "CACHE": value})
    assert request.timeout_ms == expected
    assert request.cache_s == expected
    assert type(request.timeout_ms) is float
    assert type(request.cache_s) is float


# ------------------------------------------------------------------ parse_request: no action


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({}, id="empty"),
        pytest.param({"FOO": 1}, id="unknown-only"),  # (under --compat original)
        pytest.param({"SERVER": "db1"}, id="server-only"),
        pytest.param({"FORMAT": "xml"}, id="format-only"),
        pytest.param({"ROLLBACK_ON_ERROR": True}, id="rollback-only"),
        pytest.param({"TIMEOUT": 5, "CACHE": 1}, id="numbers-only"),
        pytest.param({"SLAYER_HELP": False}, id="help-false"),
        pytest.param({key: False for key in BOOL_KEYS}, id="all-flags-false"),
        pytest.param({"SQL": None}, id="sql-null"),
    ],
)
def test_parse_request_nothing_to_do(obj: dict[str, Any]) -> None:
    """A request with no SQL, info flag, SLAYER_HELP or debug echo is refused with the hint."""
    message = refused(obj, ignore_unknown_keys=True)
    assert HINT in message
    assert message.endswith(HINT)


@pytest.mark.parametrize(
    "obj",
    [
        {"SQL": "SELECT 1"},
        {"STAT": True},
        {"SLAYER_HELP": True},
        {"SLAYER_DEBUG_RETURN_INPUT": True},
    ],
)
def test_parse_request_each_action_is_enough(obj: dict[str, Any]) -> None:
    """SQL, an info flag, SLAYER_HELP and SLAYER_DEBUG_RETURN_INPUT each make a request valid."""
    assert isinstance(parse_request(obj), Request)


# ------------------------------------------------------------------ needs_backend


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"SQL": "SELECT 1"}, True),
        ({"SERVER_VERSION": True}, True),
        ({"SQL": "SELECT 1", "SLAYER_HELP": True}, True),
        ({"SLAYER_HELP": True}, False),
        ({"SLAYER_DEBUG_RETURN_INPUT": True}, False),
        ({"SLAYER_HELP": True, "ROLLBACK_ON_ERROR": True}, False),
    ],
)
def test_needs_backend(obj: dict[str, Any], expected: bool) -> None:
    """needs_backend is true exactly when there is SQL or an info flag."""
    assert parse_request(obj).needs_backend is expected


def test_needs_backend_on_plain_request() -> None:
    """A bare Request (no SQL, no info) needs no backend."""
    assert Request().needs_backend is False
    assert Request(info=("STAT",)).needs_backend is True


# ------------------------------------------------------------------ form_to_object


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value", ["true", "1", "on", "yes", "TRUE", "On", " yes "])
def test_form_flag_true(key: str, value: str) -> None:
    """Form flags accept true/1/on/yes (any case, surrounding spaces ignored)."""
    assert form_to_object({key: value}) == {key: True}


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value", ["false", "0", "off", "no", "", "  ", "False", "OFF"])
def test_form_flag_false(key: str, value: str) -> None:
    """Form flags accept false/0/off/no and the empty string as false."""
    assert form_to_object({key: value}) == {key: False}


@pytest.mark.parametrize("value", ["2", "y", "truee", "null", "-1"])
def test_form_flag_bad_value(value: str) -> None:
    """A form flag value outside the accepted words is refused, echoing the value."""
    with pytest.raises(RequestError) as info:
        form_to_object({"STAT": value})
    message = str(info.value)
    assert message.startswith("STAT must be true/1/on or false/0/off")
    assert repr(value) in message


def test_form_params_json_array() -> None:
    """The PARAMS form field is JSON text, decoded."""
    assert form_to_object({"PARAMS": '[1,"a",null]'}) == {"PARAMS": [1, "a", None]}


def test_form_params_json_object() -> None:
    """The PARAMS form field may hold a JSON object."""
    assert form_to_object({"PARAMS": '{"id":7}'}) == {"PARAMS": {"id": 7}}


@pytest.mark.parametrize("value", ["", "   "])
def test_form_params_empty_is_none(value: str) -> None:
    """An empty PARAMS field means no parameters."""
    assert form_to_object({"PARAMS": value}) == {"PARAMS": None}


def test_form_params_bad_json() -> None:
    """A PARAMS field that is not JSON is refused, naming the PARAMS field."""
    with pytest.raises(RequestError, match="the PARAMS field is not valid UTF-8 JSON"):
        form_to_object({"PARAMS": "[1,"})


@pytest.mark.parametrize("key", ["TIMEOUT", "CACHE"])
@pytest.mark.parametrize(("value", "expected"), [("250", 250.0), ("1.5", 1.5), (" 3 ", 3.0)])
def test_form_numbers(key: str, value: str, expected: float) -> None:
    """TIMEOUT and CACHE form fields become numbers."""
    assert form_to_object({key: value}) == {key: expected}


@pytest.mark.parametrize("key", ["TIMEOUT", "CACHE"])
def test_form_number_empty_is_absent(key: str) -> None:
    """An empty TIMEOUT or CACHE field is left out."""
    assert form_to_object({key: ""}) == {}


@pytest.mark.parametrize("key", ["TIMEOUT", "CACHE"])
def test_form_number_bad(key: str) -> None:
    """A TIMEOUT or CACHE field that is not a number is refused."""
    with pytest.raises(RequestError, match=f"{key} must be a number, got 'soon'"):
        form_to_object({key: "soon"})


def test_form_other_fields_stay_strings() -> None:
    """SQL, SERVER, FORMAT and unknown fields stay strings, untouched."""
    fields = {"SQL": " SELECT 1 ", "SERVER": "db1", "FORMAT": "XML", "X": "true", "N": "5"}
    assert form_to_object(fields) == fields


def test_form_then_parse() -> None:
    """A typical form round-trips through parse_request into the expected Request."""
    obj = form_to_object(
        {
            "SQL": "SELECT %s",
            "PARAMS": "[1]",
            "FORMAT": "csv",
            "STAT": "on",
            "ROLLBACK_ON_ERROR": "0",
            "TIMEOUT": "100",
        }
    )
    request = parse_request(obj)
    assert request.sql == "SELECT %s"
    assert request.params == (1,)
    assert request.format == "csv"
    assert request.info == ("STAT",)
    assert request.rollback_on_error is False
    assert request.timeout_ms == 100.0


def test_form_nan_timeout_refused_by_parse() -> None:
    """A form TIMEOUT of 'nan' passes form_to_object but parse_request refuses it."""
    obj = form_to_object({"SQL": "SELECT 1", "TIMEOUT": "nan"})
    with pytest.raises(RequestError, match="TIMEOUT must be a positive number"):
        parse_request(obj)


def test_percent_decode_is_unquote_to_bytes() -> None:
    """The fast query-string decoder gives exactly the bytes of the standard one: every
    two-byte escape, and a seeded sample of strings mixing escapes, =, +, bad escapes, CR/LF
    and non-ASCII bytes."""
    import random
    from urllib.parse import unquote_to_bytes

    from gateway.request import percent_decode

    for first in range(256):
        for second in range(256):
            raw = b"%" + bytes([first, second])
            assert percent_decode(raw) == unquote_to_bytes(raw), raw
    alphabet = b'%25AaFf09zZ"{}+= _\r\n\t\\x\xff\x00'
    rng = random.Random(3)
    for _ in range(50_000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert percent_decode(raw) == unquote_to_bytes(raw), raw
