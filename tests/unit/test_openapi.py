"""The OpenAPI 3.1 document (api/openapi.json): valid OpenAPI 3.1, the file the code builds,
built from the parser's one list of keys, describing the answers the result model produces,
and served at /openapi.json without credentials. (tests/integration/test_openapi_schemathesis.py
holds a live gateway to it.)"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from treq.testing import StubTreq
from twisted.internet.defer import fail

from api.app import GatewayApp
from api.openapi import DOCUMENT_PATH, document, document_bytes
from api.render import CONTENT_TYPES
from gateway.auth import AuthFailed
from gateway.backends import BackendUnavailable, ConnectionLost
from gateway.executor import _decorate
from gateway.request import FORMATS, HELP, KEYS, parse_request
from gateway.results import Answer, ResultSet, SQLError, Update
from tests.unit.test_routes import ScriptedExecutor

DOC = json.loads(DOCUMENT_PATH.read_bytes())


def schema_of(name: str) -> jsonschema.Draft202012Validator:
    """A validator for components.schemas[name] (references resolved within the document)."""
    root = {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}
    return jsonschema.Draft202012Validator(root)


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(DOC).validate()  # (raises on the first error)
    assert list(OpenAPIV31SpecValidator(DOC).iter_errors()) == []


def test_the_file_is_what_the_code_builds() -> None:
    """api/openapi.json is written by ``python -m api.openapi --write``; run it after a change."""
    assert DOCUMENT_PATH.read_bytes() == document_bytes(), "run: python -m api.openapi --write"


def test_the_document_lists_the_parsers_keys() -> None:
    """The request object, the form fields (body and query) and the SLAYER_HELP answer all
    list exactly KEYS, the parser's (and SLAYER_HELP's) one list, with its descriptions."""
    schemas = DOC["components"]["schemas"]
    request = schemas["RequestObject"]
    assert list(request["properties"]) == list(KEYS)
    assert request["additionalProperties"] is False
    assert {k: v["description"] for k, v in request["properties"].items()} == HELP
    assert list(schemas["FormFields"]["properties"]) == list(KEYS)
    assert schemas["FormFields"]["additionalProperties"] is False
    fields = DOC["paths"]["/dbform"]["get"]["parameters"]
    assert [p["name"] for p in fields] == list(KEYS)
    help_answer = schemas["Answer"]["properties"]["SLAYER_HELP"]
    assert help_answer["required"] == list(KEYS) and list(help_answer["properties"]) == list(KEYS)
    assert request["properties"]["FORMAT"]["enum"] == [*FORMATS, None]


def test_format_content_types_are_documented() -> None:
    """Each FORMAT's content type is among the 200 answers of /db."""
    ok = DOC["components"]["responses"]["Db200"]["content"]
    for fmt in FORMATS:
        assert CONTENT_TYPES[fmt].decode().split(";")[0] in ok


REQUESTS_IN_THE_DOCUMENT = [
    {"SQL": "SELECT 1"},
    {"SQL": "SELECT %s", "PARAMS": [1, "a", None, True, 1.5], "FORMAT": "xml"},
    {"SQL": "SELECT %(a)s", "PARAMS": {"a": 1}, "TIMEOUT": 0.5, "CACHE": 0},
    {"STAT": True, "SERVER": "db1"},
    {"SLAYER_HELP": True},
    {"SQL": "SELECT 1", "ROLLBACK_ON_ERROR": True, "SLAYER_DEBUG_RETURN_INPUT": False},
]
REQUESTS_OUTSIDE = [
    {},
    {"FOO": 1},
    {"SQL": "SELECT 1", "ROLLBACK_ON_ERRORS": True},
    {"SQL": 5},
    {"SQL": "SELECT 1", "FORMAT": "yaml"},
    {"SQL": "SELECT 1", "TIMEOUT": 0},
    {"SQL": "SELECT 1", "PARAMS": [[1]]},
    {"SLAYER_HELP": False},
    {"PARAMS": [1], "STAT": True},
]


@pytest.mark.parametrize("obj", REQUESTS_IN_THE_DOCUMENT)
def test_requests_the_document_allows_are_parsed(obj: dict[str, Any]) -> None:
    schema_of("RequestObject").validate(obj)
    parse_request(obj)


@pytest.mark.parametrize("obj", REQUESTS_OUTSIDE)
def test_requests_the_document_refuses_are_refused(obj: dict[str, Any]) -> None:
    from gateway.request import RequestError

    assert not schema_of("RequestObject").is_valid(obj)
    with pytest.raises(RequestError):
        parse_request(obj)


ROWS = ResultSet(["id", "b"], ["MYSQL_TYPE_LONG", "MYSQL_TYPE_BLOB"], [[1, "AA=="]], base64=[1])
ANSWERS = {
    "one result set": Answer(results=[ROWS], server="db1"),
    "truncated": Answer(results=[ResultSet(["a"], ["T"], [[1]], truncated=True)], server="db1"),
    "no result set": Answer(results=[Update(1, 7)], server="db1"),
    "several": Answer(results=[ROWS, Update(0, 0)], server="db1"),
    "sql error": Answer(
        error=SQLError(1064, "syntax", error_class="ProgrammingError", backend_kind="mariadb"),
        server="db1",
    ),
    "error after results": Answer(
        results=[Update(1, 0)],
        error=SQLError(1062, "dup", error_class="IntegrityError", backend_kind="sqlite"),
        server="db1",
        extras={"ROLLBACK_ON_ERROR": True, "ROLLBACK_ON_ERROR_SUCCESS": True},
    ),
    "info flags": Answer(
        server="db1",
        extras={
            "STAT": "Uptime: 1",
            "CLIENT_INFO": "3.3.8",
            "HOST_INFO": "127.0.0.1 via TCP/IP",
            "SERVER_VERSION": 101119,
            "CLIENT_VERSION": 30308,
            "SERVER_NAME": "db1",
        },
    ),
    "rolled back": Answer(results=[Update(0, 0)], server="db1", extras={"ROLLED_BACK": True}),
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_the_result_models_answers_are_in_the_document(answer: Answer) -> None:
    schema_of("Answer").validate(answer.to_wire())


def test_help_and_debug_answers_are_in_the_document() -> None:
    request = parse_request({"SLAYER_HELP": True, "SLAYER_DEBUG_RETURN_INPUT": True})
    schema_of("Answer").validate(_decorate(Answer(), request).to_wire())


@pytest.mark.parametrize(
    "error",
    [
        BackendUnavailable("no backend", errno=2003, server="db1", retry_after=1),
        ConnectionLost("lost", errno=2013, server="db1"),
    ],
)
def test_gateway_errors_are_in_the_document(error: Exception) -> None:
    schema_of("GatewayError").validate(error.to_wire())  # type: ignore[attr-defined]


def test_answers_outside_the_document_are_refused_by_it() -> None:
    """The answer schemas are closed: a key nobody documented is outside them."""
    assert not schema_of("Answer").is_valid({"RESULT": [], "SERVER": "db1", "EXTRA": 1})
    assert not schema_of("Answer").is_valid({"MYSQL_ERRNO": 1})  # (without MYSQL_ERROR)
    assert not schema_of("GatewayError").is_valid({"ERROR": "x", "HINT": "y"})
    assert not schema_of("ResultSet").is_valid({"HEADER": [], "ROWS": []})


def test_the_document_is_served_without_credentials() -> None:
    """GET /openapi.json answers the file as JSON even when every credential is refused."""

    class Refusing:
        def authenticate(self, header: str | None) -> Any:
            return fail(AuthFailed(401, "authentication required"))

    app = GatewayApp(ScriptedExecutor(), max_request_bytes=4096, authenticator=Refusing())
    stub: Any = StubTreq(app.resource())
    outcome: list[Any] = []
    d = stub.get("http://gateway.test/openapi.json")
    d.addCallback(lambda r: stub.content(r).addCallback(lambda b: outcome.append((r, b))))
    stub.flush()
    response, body = outcome[0]
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert body == DOCUMENT_PATH.read_bytes() and json.loads(body) == document()
