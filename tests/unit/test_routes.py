"""Route tests in memory: the Klein app driven by StubTreq, with a scripted executor standing in
for the database (the HTTP decisions are what is tested here; the database side is tested
against a real MariaDB in test_mysql.py)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed

from api.app import GatewayApp
from gateway.backends import BackendUnavailable, ConnectionLost, ParamsMismatch
from gateway.executor import _decorate
from gateway.request import Request
from gateway.results import Answer, ResultSet, SQLError, Update


class ScriptedExecutor:
    """Answers every request with the next scripted outcome and records the requests."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[Request] = []

    def execute(
        self, request: Request, user: Any = None, sink: Any = None, hangup: Any = None
    ) -> Deferred[Answer]:
        self.requests.append(request)
        outcome = self.outcomes.pop(0) if self.outcomes else Answer(server="db1")
        if isinstance(outcome, Exception):
            return fail(outcome)
        return succeed(_decorate(outcome, request))


def call(
    executor: ScriptedExecutor,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    stub: Any = StubTreq(GatewayApp(executor, max_request_bytes=4096).resource())  # (untyped)
    outcome: list[Any] = []
    d = stub.request(method, "http://gateway.test" + path, data=body, headers=headers)
    d.addCallback(lambda r: stub.content(r).addCallback(lambda b: outcome.append((r, b))))
    d.addErrback(outcome.append)
    stub.flush()
    response, content = outcome[0]
    heads = {k.decode().lower(): v[-1].decode() for k, v in response.headers.getAllRawHeaders()}
    return response.code, heads, content


def db(obj: Any) -> str:
    return "/db?" + quote(json.dumps(obj))


ROWS = Answer(results=[ResultSet(["a"], ["MYSQL_TYPE_LONG"], [[1]])], server="db1")


def test_select_answer_is_json() -> None:
    """A result set answers 200 JSON in the reference shape."""
    status, headers, body = call(ScriptedExecutor(ROWS), "GET", db({"SQL": "SELECT 1"}))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "RESULT": {"HEADER": ["a"], "ROWS": [[1]], "TYPES": ["MYSQL_TYPE_LONG"]},
        "SERVER": "db1",
    }


def test_post_json_body_reaches_the_executor() -> None:
    """POST /db parses the JSON body into the request model."""
    executor = ScriptedExecutor(ROWS)
    status, _, _ = call(executor, "POST", "/db", b'{"SQL":"SELECT 1","PARAMS":[1],"FORMAT":"XML"}')
    assert status == 200
    assert executor.requests[0].sql == "SELECT 1" and executor.requests[0].params == (1,)
    assert executor.requests[0].format == "xml"


@pytest.mark.parametrize(
    "fmt, content_type",
    [
        ("json", "application/json"),
        ("xml", "text/xml; charset=utf-8"),
        ("php", "text/plain; charset=utf-8"),
        ("python", "text/x-python; charset=utf-8"),
        ("csv", "text/csv; charset=utf-8"),
    ],
)
def test_formats_have_their_content_type(fmt: str, content_type: str) -> None:
    """Each FORMAT answers with its content type."""
    status, headers, _ = call(ScriptedExecutor(ROWS), "GET", db({"SQL": "SELECT 1", "FORMAT": fmt}))
    assert status == 200 and headers["content-type"] == content_type


def test_sql_error_is_200_and_csv_falls_back_to_json() -> None:
    """An SQL error keeps the reference's 200; FORMAT csv cannot carry it, so it is JSON."""
    error = Answer(results=[Update(1, 0)], error=SQLError(1146, "no table"), server="db1")
    status, headers, body = call(
        ScriptedExecutor(error), "GET", db({"SQL": "x;y", "FORMAT": "csv"})
    )
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "MYSQL_ERRNO": 1146,
        "MYSQL_ERROR": "no table",
        "RESULT": [{"AFFECTED_ROWS": 1, "INSERT_ID": 0, "SUCCESS": True}],
        "SERVER": "db1",
    }


def test_backend_unavailable_is_503_with_retry_after() -> None:
    """No reachable backend: 503, Retry-After, the connect errno and the backend name."""
    outcome = BackendUnavailable(
        "backend db1 is unavailable (refused)", errno=2002, server="db1", retry_after=1
    )
    status, headers, body = call(ScriptedExecutor(outcome), "GET", db({"SQL": "SELECT 1"}))
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body) == {
        "ERROR": "backend db1 is unavailable (refused)",
        "MYSQL_ERRNO": 2002,
        "SERVER": "db1",
    }


def test_lost_connection_is_502_naming_the_backend() -> None:
    """A connection lost while statements ran: 502 with MYSQL_ERRNO 2013 and SERVER."""
    outcome = ConnectionLost("lost; may have been applied", errno=2013, server="db2")
    status, _, body = call(ScriptedExecutor(outcome), "GET", db({"SQL": "INSERT 1"}))
    assert status == 502 and json.loads(body)["MYSQL_ERRNO"] == 2013
    assert json.loads(body)["SERVER"] == "db2"


def test_gateway_errors_use_the_requested_format() -> None:
    """A gateway error is rendered in the FORMAT the client asked for."""
    outcome = ParamsMismatch("PARAMS do not match")
    status, headers, body = call(
        ScriptedExecutor(outcome), "GET", db({"SQL": "x", "FORMAT": "python"})
    )
    assert status == 400 and headers["content-type"].startswith("text/x-python")
    assert body.startswith(b"{'ERROR': 'PARAMS do not match'}")


def test_unexpected_error_is_a_json_500_without_traceback() -> None:
    """A bug in the gateway answers a JSON 500 that carries no traceback."""
    status, headers, body = call(
        ScriptedExecutor(ZeroDivisionError("boom")), "GET", db({"SQL": "x"})
    )
    assert status == 500 and headers["content-type"] == "application/json"
    assert b"Traceback" not in body and b"boom" not in body and "ERROR" in json.loads(body)


def test_help_needs_no_backend_round_trip() -> None:
    """SLAYER_HELP alone is answered; the executor decides it needs no database."""
    executor = ScriptedExecutor(Answer())
    status, _, body = call(executor, "GET", db({"SLAYER_HELP": True}))
    assert status == 200 and "SQL" in json.loads(body)["SLAYER_HELP"]


def test_dbform_fields_become_the_request() -> None:
    """/dbform turns form fields (flags as on/1) into the request model."""
    executor = ScriptedExecutor(ROWS)
    status, _, _ = call(
        executor, "GET", "/dbform?SQL=SELECT+1&STAT=on&ROLLBACK_ON_ERROR=0&FORMAT=csv"
    )
    assert status == 200
    request = executor.requests[0]
    assert request.sql == "SELECT 1" and request.info == ("STAT",)
    assert request.rollback_on_error is False and request.format == "csv"


def test_query_string_over_the_limit_is_414() -> None:
    """A query string over max_request_bytes is refused with 414 before parsing."""
    status, _, body = call(ScriptedExecutor(), "GET", db({"SQL": "SELECT '" + "x" * 5000 + "'"}))
    assert status == 414 and "POST" in json.loads(body)["ERROR"]


def test_body_over_the_limit_is_413() -> None:
    """A body over max_request_bytes is refused with 413."""
    status, _, body = call(ScriptedExecutor(), "POST", "/db", b'{"SQL":"' + b"x" * 5000 + b'"}')
    assert status == 413 and "limit" in json.loads(body)["ERROR"]


def test_unknown_path_and_wrong_method_are_json() -> None:
    """404 and 405 are JSON errors; 405 says which methods are allowed."""
    status, headers, body = call(ScriptedExecutor(), "GET", "/stats/args")
    assert status == 404 and headers["content-type"] == "application/json"
    assert "no such path /stats/args" in json.loads(body)["ERROR"]
    status, headers, body = call(ScriptedExecutor(), "PUT", "/db", b"{}")
    assert status == 405 and "POST" in headers["allow"] and "ERROR" in json.loads(body)
