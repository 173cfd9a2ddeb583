"""Unknown request keys are errors (a typo such as ROLLBACK_ON_ERRORS would otherwise run
without what it asked for), except under ``--compat original``, where they are ignored as the
reference did: the parser's rule, and the routes' (/db GET and POST, /dbform GET and POST) in
memory."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from gateway.request import (
    BOOL_KEYS,
    HELP,
    INFO_FLAGS,
    KEYS,
    RequestError,
    form_to_object,
    parse_request,
)
from tests.unit.test_routes import ScriptedExecutor

KNOWN = "known keys: " + ", ".join(KEYS)


def refused(obj: Any) -> str:
    with pytest.raises(RequestError) as info:
        parse_request(obj)
    assert info.value.status == 400
    return str(info.value)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("ROLLBACK_ON_ERRORS", "ROLLBACK_ON_ERROR"),
        ("sql", "SQL"),
        ("Format", "FORMAT"),
        ("PARAM", "PARAMS"),
        ("TIMEOUT_MS", "TIMEOUT"),
        ("SLAYER_HLEP", "SLAYER_HELP"),
        ("SERVER_VERSON", "SERVER_VERSION"),
    ],
)
def test_a_typo_names_the_closest_key(typo: str, meant: str) -> None:
    """The 400 names the unknown key, the closest known one and every known key."""
    message = refused({"SQL": "SELECT 1", typo: True})
    assert message == f"unknown request key {typo} (did you mean {meant}?); {KNOWN}"


def test_a_key_like_no_other_is_named_alone() -> None:
    assert refused({"SQL": "SELECT 1", "COLOUR": "red"}) == f"unknown request key COLOUR; {KNOWN}"


def test_an_unknown_key_alone_is_refused_as_unknown() -> None:
    """{"FOO":1} is refused for its key (the reference's hint is for requests of known keys)."""
    assert refused({"FOO": 1}) == f"unknown request key FOO; {KNOWN}"


def test_several_unknown_keys_are_named_in_order_and_bounded() -> None:
    """The first five are named (odd ones as JSON strings, long ones cut), the rest counted."""
    long_key = "K" * 500
    obj = {"SQL": "SELECT 1", "a b": 1, "": 2, long_key: 3, "sql": 4, "X": 5, "Y": 6, "Z": 7}
    message = refused(obj)
    assert message.startswith(
        f'unknown request keys "a b", "", {"K" * 64}..., sql (did you mean SQL?), X, and 2 '
        "more; known keys: "
    )
    assert len(message) < 600


def test_every_known_key_is_accepted() -> None:
    """Each of KEYS, alone with SQL and a valid value, is parsed (none is refused as unknown)."""
    values: dict[str, Any] = {"SERVER": "db1", "FORMAT": "xml", "PARAMS": [], "TIMEOUT": 5}
    values |= {"CACHE": 1, "SQL": "SELECT 1", "AFTER": "0-1-1"} | {key: True for key in BOOL_KEYS}
    assert set(values) == set(KEYS)
    for key in KEYS:
        parse_request({"SQL": "SELECT 1", key: values[key]})


def test_one_list_of_keys() -> None:
    """KEYS is SLAYER_HELP's list, and holds the info flags and every boolean key."""
    assert KEYS == tuple(HELP) and len(set(KEYS)) == len(KEYS)
    assert set(INFO_FLAGS) <= set(BOOL_KEYS) <= set(KEYS)


def test_under_compat_original_unknown_keys_are_ignored() -> None:
    obj = {"SQL": "SELECT 1", "ROLLBACK_ON_ERRORS": True}
    request = parse_request(obj, ignore_unknown_keys=True)
    assert request.sql == "SELECT 1" and request.rollback_on_error is False
    assert request.raw == obj


def test_unknown_form_fields_are_refused() -> None:
    """A /dbform field the gateway does not know (a submit button's name too) is refused."""
    obj = form_to_object({"SQL": "SELECT 1", "submit": "Run"})
    assert refused(obj) == f"unknown request key submit; {KNOWN}"


# ------------------------------------------------------------------ the routes, in memory


def call(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    ignore: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, ScriptedExecutor]:
    from treq.testing import StubTreq

    from api.app import GatewayApp

    executor = ScriptedExecutor()
    app = GatewayApp(executor, max_request_bytes=4096)
    app.ignore_unknown_keys = ignore
    stub: Any = StubTreq(app.resource())
    outcome: list[Any] = []
    d = stub.request(method, "http://gateway.test" + path, data=body, headers=headers or None)
    d.addCallback(lambda r: stub.content(r).addCallback(lambda b: outcome.append((r, b))))
    d.addErrback(outcome.append)
    stub.flush()
    response, content = outcome[0]
    return response.code, json.loads(content), executor


TYPO = {"SQL": "SELECT 1", "ROLLBACK_ON_ERRORS": True}
EXPECTED = f"unknown request key ROLLBACK_ON_ERRORS (did you mean ROLLBACK_ON_ERROR?); {KNOWN}"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REQUESTS = [
    pytest.param("GET", "/db?" + quote(json.dumps(TYPO)), None, {}, id="db-get"),
    pytest.param("POST", "/db", json.dumps(TYPO).encode(), {}, id="db-post"),
    pytest.param("GET", "/dbform?" + urlencode(TYPO), None, {}, id="dbform-get"),
    pytest.param("POST", "/dbform", urlencode(TYPO).encode(), FORM, id="dbform-post"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), REQUESTS)
def test_routes_refuse_unknown_keys(
    method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> None:
    """/db and /dbform, GET and POST: 400 with the message, and nothing is run."""
    status, answer, executor = call(method, path, body, headers=headers)
    assert (status, answer) == (400, {"ERROR": EXPECTED})
    assert executor.requests == []


@pytest.mark.parametrize(("method", "path", "body", "headers"), REQUESTS)
def test_routes_ignore_unknown_keys_under_compat_original(
    method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> None:
    status, answer, executor = call(method, path, body, ignore=True, headers=headers)
    assert status == 200 and answer == {"SERVER": "db1"}
    (request,) = executor.requests
    assert request.sql == "SELECT 1" and request.rollback_on_error is False


def test_unknown_keys_are_shown_printable() -> None:
    """Control characters, bidirectional overrides and line separators in an unknown key are
    escaped in the message (it reaches journals and logs), never written raw."""
    from gateway.request import unknown_keys_message

    message = unknown_keys_message(["\x1b[31mX\nY\u202eZ\u2028"])
    assert message.isprintable(), message
    assert "\\u001b" in message and "\\u202e" in message and "\\u2028" in message
