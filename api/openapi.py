"""The OpenAPI 3.1 document of the gateway's HTTP API, served at ``GET /openapi.json``.

The document is built here from the request model (``gateway.request.KEYS``, ``HELP``,
``FORMATS``: the same lists the parser and ``SLAYER_HELP`` use) and the renderers' content
types, and kept in the repository as ``api/openapi.json`` (package data), which is what the
gateway serves. After changing the protocol, write the file again::

    .venv/bin/python -m api.openapi --write

(tests/unit/test_openapi.py fails while the file and this module disagree, and validates the
document as OpenAPI 3.1; tests/integration/test_openapi_schemathesis.py holds a live gateway to
it.)
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from api.render import CONTENT_TYPES
from gateway.position import GTID_LIST_PATTERN
from gateway.request import BOOL_KEYS, FORMATS, HELP, INFO_FLAGS, KEYS
from gateway.results import ERROR_CLASSES
from stats.core import ERROR_FIELDS, LOG_FIELDS

#: The document as kept in the repository and served.
DOCUMENT_PATH = Path(__file__).resolve().with_name("openapi.json")

_REF = "#/components/schemas/"
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _media(content_type: bytes) -> str:
    """``text/xml; charset=utf-8`` -> ``text/xml`` (the document's media type keys)."""
    return content_type.decode().split(";", 1)[0]


#: The answer formats other than json, by media type (their bodies are text).
_OTHER_FORMATS = {
    _media(CONTENT_TYPES[fmt]): fmt for fmt in FORMATS if fmt != "json" and fmt != "csv"
}

_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_BOOLEAN = {"type": ["boolean", "null"]}
_SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}

#: The JSON Schema of each request key's value (null always means absent).
_KEY_SCHEMAS: dict[str, dict[str, Any]] = {
    "SQL": {**_NULLABLE_STRING, "pattern": r"\S"},
    "SERVER": _NULLABLE_STRING,
    "FORMAT": {"enum": [*FORMATS, None]},
    "PARAMS": {
        "oneOf": [
            {"type": "array", "items": _SCALAR},
            {"type": "object", "additionalProperties": _SCALAR},
            {"type": "null"},
        ]
    },
    "TIMEOUT": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "CACHE": {"type": ["number", "null"], "minimum": 0},
    "AFTER": {"type": ["string", "null"], "pattern": GTID_LIST_PATTERN},
    **{key: _NULLABLE_BOOLEAN for key in BOOL_KEYS},
}

#: What a form field of each key holds (every field is text).
_FORM_NOTES = {
    "PARAMS": "JSON text of an array or an object",
    "TIMEOUT": "a number (milliseconds)",
    "CACHE": "a number (seconds)",
    "AFTER": "a GTID position; empty: none",
    **{key: "true/1/on/yes or false/0/off/no/empty" for key in BOOL_KEYS},
}

#: The value each info flag is answered with.
_INFO_ANSWERS = {
    "STAT": {"type": "string"},
    "CLIENT_INFO": {"type": "string"},
    "HOST_INFO": {"type": "string"},
    "SERVER_VERSION": {"type": "integer"},
    "CLIENT_VERSION": {"type": "integer"},
    "SERVER_NAME": {"type": "string"},
}

_DESCRIPTION = """\
A DBSlayer-compatible gateway: SQL in a JSON request object over HTTP, results back as JSON
(or XML, PHP serialize(), a Python literal, CSV). The wire protocol is the C original's
(DBSlayer beta-18) with documented extensions.

Request keys are exactly those of `RequestObject`: a key the gateway does not know is a 400
that names the closest known key (a typo such as ROLLBACK_ON_ERRORS would otherwise run
without the transaction asked for). Under `--compat original` unknown keys are ignored, as the
original did, and refused requests are answered 200 with an `ERROR` body.

Every error is a JSON object (`GatewayError`, or an SQL error inside an `Answer`) with an
honest status; no input produces a 500. Statuses any route may answer besides those listed:
400 (a malformed request line or header, a Host the gateway does not answer to), 403 (a
browser request from another site), 404 (no such path; `GatewayError`), 405 (another method;
`Allow` names those allowed; HEAD is refused on the routes that act), 408 (the request head or
body took too long to arrive), 413 (a body over the limit), 414 (a request line over the
limit) and 503 with `Retry-After` (the gateway is draining, or holds too many requests or
request bytes in flight).

Authentication is off by default. When on (`--auth`), /db and /dbform need a user's token
(`Authorization: Bearer TOKEN`, or Basic with user name and token), the monitoring routes an
admin user's (unless `--protect-admin false`) and /shutdown always an admin user's. With
`--admin-port` the admin routes are served on a listener of their own as well (and, with
`--admin-on-main-port false`, only there)."""


def _error_body(description: str, *, formats: bool = False) -> dict[str, Any]:
    """A response whose body is a GatewayError (also in the asked FORMAT when ``formats``)."""
    content: dict[str, Any] = {_JSON: {"schema": _ref("GatewayError")}}
    if formats:
        content.update(_text_formats())
    return {"description": description, "content": content}


def _text_formats() -> dict[str, Any]:
    return {
        media: {"schema": {"type": "string", "description": f"the answer as FORMAT {fmt}"}}
        for media, fmt in _OTHER_FORMATS.items()
    }


def _retry_after() -> dict[str, Any]:
    return {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}


def _with_headers(response: dict[str, Any], headers: dict[str, Any]) -> dict[str, Any]:
    return {**response, "headers": headers}


def _auth_refusals(formats: bool = False) -> dict[str, Any]:
    return {
        "401": _with_headers(
            _error_body(
                "Authentication is on and the request has no valid credentials.", formats=formats
            ),
            {"WWW-Authenticate": {"schema": {"type": "string"}}},
        ),
        "403": _error_body(
            "The user's role may not do this (a write for a read user, a backend not "
            "allowed), or a browser request from another site.",
            formats=formats,
        ),
    }


def _db_responses() -> dict[str, Any]:
    """Every answer of /db and /dbform (414 for GET only), by component name."""
    ok_content: dict[str, Any] = {
        _JSON: {
            "schema": {
                "anyOf": [
                    _ref("Answer"),
                    {
                        **_ref("GatewayError"),
                        "description": "under --compat original: a refused request",
                    },
                ]
            }
        },
        **_text_formats(),
        _media(CONTENT_TYPES["csv"]): {
            "schema": {
                "type": "string",
                "description": "FORMAT csv: the result sets, as CSV with a header line each "
                "(an answer without a result set, or with an error, is answered as JSON)",
            }
        },
    }
    responses: dict[str, Any] = {
        "200": {
            "description": "The statements ran (an SQL error is part of the answer: "
            "MYSQL_ERRNO, MYSQL_ERROR), or the info flags were answered. Large JSON answers "
            "are streamed (chunked) as their rows are read.",
            "headers": {
                "X-Cache": {
                    "description": "where the answer came from when CACHE was asked",
                    "schema": {"enum": ["hit", "miss", "bypass"]},
                },
                "X-Truncated": {
                    "description": "the row limit cut a result set short (TRUNCATED: true)",
                    "schema": {"const": "true"},
                },
            },
            "content": ok_content,
        },
        "400": _error_body(
            "Not a valid request: not a JSON object, a key the gateway does not know, a value "
            "of the wrong type, nothing to do, SERVER misused, PARAMS that do not fit the "
            "placeholders.",
            formats=True,
        ),
        **_auth_refusals(formats=True),
        "408": _error_body("The request head or body took too long to arrive."),
        "413": _error_body("The request body is over the limit (max_request_bytes)."),
        "429": _with_headers(
            _error_body("The user has as many requests in flight as it may.", formats=True),
            _retry_after(),
        ),
        "502": _error_body(
            "The connection to the backend broke while the statements ran: a write may have "
            "been applied (MYSQL_ERRNO 2013, SERVER).",
            formats=True,
        ),
        "503": _with_headers(
            _error_body(
                "No backend could take the request and nothing was sent (MYSQL_ERRNO of the "
                "last connect error), too many requests in flight, the gateway is draining, or "
                "the users' store is unreachable.",
                formats=True,
            ),
            _retry_after(),
        ),
        "504": _error_body(
            "The statement time limit (TIMEOUT, max_statement_time) was reached; the "
            "statement was stopped on the server.",
            formats=True,
        ),
    }
    responses["414"] = _error_body(
        "The request line is over the limit: send large SQL in the body of POST /db."
    )
    return {f"Db{status}": response for status, response in sorted(responses.items())}


def _db_refs(method: str) -> dict[str, Any]:
    """The answers of a /db or /dbform operation, as references to components.responses."""
    statuses = sorted(name[2:] for name in _db_responses())
    return {
        status: {"$ref": f"#/components/responses/Db{status}"}
        for status in statuses
        if method == "get" or status != "414"
    }


def _guarded_responses(ok: dict[str, Any]) -> dict[str, Any]:
    """The answers of a monitoring route: ``ok``, or a refusal when authentication is on."""
    refusals = {
        status: {"$ref": f"#/components/responses/{name}"} for name, status in _REFUSALS.items()
    }
    return {"200": ok, **refusals}


#: The refusals of the admin routes when authentication is on (components.responses).
_REFUSALS = {"Unauthorized": "401", "Forbidden": "403", "AuthUnavailable": "503"}


def _refusal_responses() -> dict[str, Any]:
    auth = _auth_refusals()
    return {
        "Unauthorized": auth["401"],
        "Forbidden": auth["403"],
        "AuthUnavailable": _with_headers(
            _error_body("Authentication is on and the users' store is unreachable."),
            _retry_after(),
        ),
    }


def _json_ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _form_note(key: str) -> str:
    note = _FORM_NOTES.get(key)
    return f"{HELP[key]}; as a field: {note}" if note else HELP[key]


#: The form text of a flag (the gateway also takes them in any case, with spaces around).
_FORM_FLAGS = ["true", "1", "on", "yes", "false", "0", "off", "no", ""]

#: The JSON Schema of each form field (text).
_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "SQL": {"type": "string"},
    "SERVER": {"type": "string"},
    "FORMAT": {"enum": list(FORMATS)},
    "PARAMS": {"type": "string"},
    "TIMEOUT": {"type": "string", "pattern": r"^(0*[1-9][0-9]{0,8}(\.[0-9]{1,3})?)?$"},
    "CACHE": {"type": "string", "pattern": r"^([0-9]{1,9}(\.[0-9]{1,3})?)?$"},
    "AFTER": {"type": "string", "pattern": rf"^[ \t]*({GTID_LIST_PATTERN[1:-1]})?[ \t]*$"},
    **{key: {"enum": _FORM_FLAGS} for key in BOOL_KEYS},
}


def _form_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Every field is a member of the request object (see RequestObject); "
        "fields the gateway does not know are refused (400), except under --compat original.",
        "properties": {
            key: {**_FIELD_SCHEMAS[key], "description": _form_note(key)} for key in KEYS
        },
        "additionalProperties": False,
    }


def _paths() -> dict[str, Any]:
    request_body = {
        "required": True,
        "description": "The request object as JSON (the Content-Type is not checked, but "
        "browsers may only send application/json from the gateway's own pages).",
        "content": {_JSON: {"schema": _ref("RequestObject")}},
    }
    form_fields = [
        {
            "name": key,
            "in": "query",
            "required": False,
            "description": _form_note(key),
            "schema": _FIELD_SCHEMAS[key],
        }
        for key in KEYS
    ]
    monitoring = "Monitoring (an admin user's credentials when authentication is on)."
    return {
        "/db": {
            "get": {
                "operationId": "dbGet",
                "summary": "Run a request given as the whole query string",
                "description": "The reference form: the *whole* query string is the "
                "percent-encoded JSON request object (there is no `name=`), e.g. "
                '`/db?%7B%22SQL%22%3A%22SELECT%201%22%7D` for `{"SQL":"SELECT 1"}`. `+` '
                "decodes to a space, as in the reference, so send a literal plus as `%2B`. "
                "OpenAPI 3.1 cannot describe a query string that is one JSON document, so no "
                "parameter is listed: the object is the RequestObject schema. An empty query "
                "string is a 400.",
                "tags": ["DBSlayer"],
                "security": _security(),
                "responses": _db_refs("get"),
            },
            "post": {
                "operationId": "dbPost",
                "summary": "Run a request given as a JSON body",
                "tags": ["DBSlayer"],
                "security": _security(),
                "requestBody": request_body,
                "responses": _db_refs("post"),
            },
        },
        "/dbform": {
            "get": {
                "operationId": "dbformGet",
                "summary": "Run a request given as HTML form fields in the query string",
                "description": "Every field is a member of the request object. Flags accept "
                "true/1/on/yes (the reference only JSON true); PARAMS is JSON text.",
                "tags": ["DBSlayer"],
                "security": _security(),
                "parameters": form_fields,
                "responses": _db_refs("get"),
            },
            "post": {
                "operationId": "dbformPost",
                "summary": "Run a request given as a posted HTML form",
                "tags": ["DBSlayer"],
                "security": _security(),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": _ref("FormFields")},
                        "multipart/form-data": {"schema": _ref("FormFields")},
                    },
                },
                "responses": _db_refs("post"),
            },
        },
        "/stats": {
            "get": {
                "operationId": "stats",
                "summary": "Figures of the whole server (the reference keys and ours)",
                "description": f"{monitoring} A browser navigating here gets the HTML "
                "dashboard, which reads this same JSON; every other client gets JSON.",
                "tags": ["Admin"],
                "security": _security(),
                "responses": _guarded_responses(
                    {
                        "description": "The figures (JSON), or the dashboard page (HTML).",
                        "content": {
                            _JSON: {"schema": _ref("Stats")},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    }
                ),
            }
        },
        "/stats/log": {
            "get": {
                "operationId": "statsLog",
                "summary": "The last requests to /db and /dbform, oldest first",
                "description": monitoring,
                "tags": ["Admin"],
                "security": _security(),
                "responses": _guarded_responses(
                    _json_ok(
                        "The request journal.",
                        {"type": "array", "items": _ref("LogEntry")},
                    )
                ),
            }
        },
        **{
            path: {
                "get": {
                    "operationId": operation,
                    "summary": "The last errors, oldest first",
                    "description": f"{monitoring} /stats/error and /stats/errors are the same.",
                    "tags": ["Admin"],
                    "security": _security(),
                    "responses": _guarded_responses(
                        _json_ok(
                            "The error journal.",
                            {"type": "array", "items": _ref("ErrorEntry")},
                        )
                    ),
                }
            }
            for path, operation in (
                ("/stats/error", "statsError"),
                ("/stats/errors", "statsErrors"),
            )
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition of the same figures",
                "description": monitoring,
                "tags": ["Admin"],
                "security": _security(),
                "responses": _guarded_responses(
                    {
                        "description": "Prometheus text format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                ),
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process answers",
                "tags": ["Admin"],
                "security": [{}],
                "responses": {"200": _json_ok("Alive.", _ref("Health"))},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: at least one backend answers",
                "tags": ["Admin"],
                "security": [{}],
                "responses": {
                    "200": _json_ok("Ready.", _ref("Ready")),
                    "503": _with_headers(
                        _json_ok("No backend answers.", _ref("Ready")), _retry_after()
                    ),
                },
            }
        },
        "/shutdown": {
            method: {
                "operationId": f"shutdown{method.capitalize()}",
                "summary": "Stop the gateway: answer, drain the requests in flight, exit",
                "description": "Only from a loopback peer, never through a proxy (a request "
                "carrying a proxy's headers is refused), and with authentication on only for "
                "an admin user. HEAD is refused (405).",
                "tags": ["Admin"],
                "security": _security(),
                "responses": _guarded_responses(_json_ok("Shutting down.", _ref("ShuttingDown"))),
            }
            for method in ("get", "post")
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["Meta"],
                "security": [{}],
                "responses": {
                    "200": _json_ok(
                        "The OpenAPI 3.1 document.",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    )
                },
            }
        },
        "/": {
            "get": {
                "operationId": "console",
                "summary": "The query console (a page that talks to /db like any client)",
                "tags": ["Meta"],
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "The console page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/static/{name}": {
            "get": {
                "operationId": "static",
                "summary": "The console's and dashboard's static files",
                "tags": ["Meta"],
                "security": [{}],
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            media: {"schema": {"type": "string"}}
                            for media in (
                                "text/html",
                                "text/css",
                                "text/javascript",
                                "image/png",
                                "image/svg+xml",
                                "application/octet-stream",
                            )
                        },
                    },
                    "404": _error_body("No such file."),
                },
            }
        },
    }


def _security() -> list[dict[str, list[str]]]:
    """No credentials (authentication off, the default), a Bearer token or Basic."""
    return [{}, {"bearerToken": []}, {"basicToken": []}]


def _schemas() -> dict[str, Any]:
    result_set = {
        "type": "object",
        "description": "One result set. Values: integers exact (BIGINT and DECIMAL "
        "included), dates and times as MySQL's text, BIT as an integer, binary data as base64 "
        "(its column indexes under BASE64), NULL as null.",
        "properties": {
            "BASE64": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "HEADER": {"type": "array", "items": {"type": "string"}},
            "ROWS": {"type": "array", "items": {"type": "array"}},
            "TRUNCATED": {
                "const": True,
                "description": "the row limit (max_rows) cut the rows short",
            },
            "TYPES": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["HEADER", "ROWS", "TYPES"],
        "additionalProperties": False,
    }
    update = {
        "type": "object",
        "description": "A statement without a result set (INSERT, UPDATE, DDL...).",
        "properties": {
            "AFFECTED_ROWS": {"type": "integer"},
            "INSERT_ID": {"type": "integer", "description": "the driver's last insert id, else 0"},
            "SUCCESS": {"const": True},
        },
        "required": ["AFFECTED_ROWS", "INSERT_ID", "SUCCESS"],
        "additionalProperties": False,
    }
    answer_properties: dict[str, Any] = {
        "RESULT": {
            "description": "One statement: its result; several (or an SQL error after some): "
            "an array, one element per statement that ran, in order.",
            "anyOf": [_ref("Result"), {"type": "array", "items": _ref("Result")}],
        },
        "MYSQL_ERRNO": {"type": "integer", "description": "the SQL error's number"},
        "MYSQL_ERROR": {"type": "string", "description": "the SQL error's message"},
        "SERVER": {"type": "string", "description": "the backend that ran the statements"},
        "ERROR_CLASS": {
            "enum": sorted(ERROR_CLASSES),
            "description": "the PEP 249 class of the SQL error (extension)",
        },
        "BACKEND_KIND": {
            "enum": ["mariadb", "mysql", "sqlite"],
            "description": "the kind of server that reported the SQL error (extension)",
        },
        "ROLLBACK_ON_ERROR": {"const": True, "description": "ROLLBACK_ON_ERROR was asked"},
        "ROLLBACK_ON_ERROR_SUCCESS": {
            "type": "boolean",
            "description": "with ROLLBACK_ON_ERROR: whether the transaction was rolled back",
        },
        "ROLLED_BACK": {
            "const": True,
            "description": "the statements left a transaction open: it was rolled back",
        },
        "GTID": {
            "type": "string",
            "pattern": GTID_LIST_PATTERN,
            "description": "the statements wrote: the server's position after them (MariaDB "
            "last_gtid); send it back as AFTER to read your writes",
        },
        **{
            key: {**_INFO_ANSWERS[key], "description": HELP[key].split(": out", 1)[-1].strip()}
            for key in INFO_FLAGS
        },
        "SLAYER_HELP": {
            "type": "object",
            "description": "every request key with a one-line description",
            "properties": {key: {"type": "string"} for key in KEYS},
            "required": list(KEYS),
            "additionalProperties": False,
        },
        "SLAYER_DEBUG_RETURN_INPUT": {
            "type": "object",
            "description": "the request object as the gateway received it",
        },
    }
    return {
        "RequestObject": {
            "type": "object",
            "description": "A DBSlayer request. At least one of SQL, an info flag, SLAYER_HELP "
            "or SLAYER_DEBUG_RETURN_INPUT (the reference's hint: "
            '`TRY {"SLAYER_HELP":true }`). A key set to null is absent.',
            "properties": {key: {**_KEY_SCHEMAS[key], "description": HELP[key]} for key in KEYS},
            "additionalProperties": False,
            "anyOf": [
                {"required": ["SQL"], "properties": {"SQL": {"type": "string"}}},
                *(
                    {"required": [key], "properties": {key: {"const": True}}}
                    for key in (*INFO_FLAGS, "SLAYER_HELP", "SLAYER_DEBUG_RETURN_INPUT")
                ),
            ],
            "dependentRequired": {"PARAMS": ["SQL"]},
        },
        "FormFields": _form_schema(),
        "ResultSet": result_set,
        "Update": update,
        "Result": {"oneOf": [_ref("ResultSet"), _ref("Update")]},
        "Answer": {
            "type": "object",
            "description": "The answer to a request: results, or an SQL error (after the "
            "results of the statements before it), plus what the flags asked for. HTTP 200 "
            "either way, as in the reference.",
            "properties": answer_properties,
            "additionalProperties": False,
            "minProperties": 1,
            "dependentRequired": {
                "MYSQL_ERRNO": ["MYSQL_ERROR"],
                "MYSQL_ERROR": ["MYSQL_ERRNO"],
                "ROLLBACK_ON_ERROR_SUCCESS": ["ROLLBACK_ON_ERROR"],
            },
        },
        "GatewayError": {
            "type": "object",
            "description": "The gateway refused or could not answer the request: what is "
            "wrong and what to do.",
            "properties": {
                "ERROR": {"type": "string"},
                "MYSQL_ERRNO": {
                    "type": "integer",
                    "description": "502/503: the client library's error number",
                },
                "SERVER": {"type": "string", "description": "the backend concerned"},
            },
            "required": ["ERROR"],
            "additionalProperties": False,
        },
        "Stats": {
            "type": "object",
            "description": "The reference's keys (a ring of 1,440 one-minute buckets: hits per "
            "bucket, slices = bucket starts in epoch seconds; the open bucket left out), then "
            "extension figures.",
            "properties": {
                "current_time": {"type": "integer"},
                "hits": {"type": "array", "items": {"type": "integer"}},
                "slices": {"type": "array", "items": {"type": "integer"}},
                "start_time": {"type": "integer"},
                "total_requests": {"type": "integer"},
                "uptime_seconds": {"type": "integer"},
                "instance": {
                    "type": "string",
                    "description": "this host's name in a fleet (--instance, default "
                    "<hostname>:<port>); the figures are this host's (every worker)",
                },
                "qps": {"type": "object", "additionalProperties": {"type": "number"}},
                "latency_ms": {"type": "object"},
                "requests_by_status": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                },
                "sql_errors": {"type": "integer"},
                "gateway_errors": {"type": "object", "additionalProperties": {"type": "integer"}},
                "statements": {"type": "object", "additionalProperties": {"type": "integer"}},
                "backends": {"type": "object", "additionalProperties": {"type": "object"}},
                "in_flight": {"type": "integer"},
            },
            "required": ["current_time", "hits", "slices", "start_time", "total_requests"],
            "additionalProperties": True,
        },
        "LogEntry": {
            "type": "object",
            "properties": {
                "bytes_sent": {"type": "integer"},
                "client_ip": {"type": "string"},
                "request": {"type": "string", "description": "the request line, redacted"},
                "request_time": {"type": "integer", "description": "epoch seconds"},
                "response_code": {"type": "integer"},
                "time_toservice": {"type": "integer", "description": "microseconds"},
            },
            "required": list(LOG_FIELDS),
            "additionalProperties": False,
        },
        "ErrorEntry": {
            "type": "object",
            "properties": {
                "client_ip": {"type": "string"},
                "error": {"type": "string"},
                "request": {"type": "string", "description": "the request line, redacted"},
                "request_time": {"type": "integer", "description": "epoch seconds"},
                "sql": {
                    "type": "string",
                    "description": "the (redacted) SQL of a request that carried it in its "
                    "body (POST), where the request line shows none",
                },
            },
            "required": list(ERROR_FIELDS),
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"const": "ok"}, "uptime_seconds": {"type": "integer"}},
            "required": ["status", "uptime_seconds"],
            "additionalProperties": False,
        },
        "Ready": {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "backends": {
                    "type": "object",
                    "description": "each backend's state",
                    "additionalProperties": {"type": "string"},
                },
                "draining": {
                    "type": "boolean",
                    "description": "present (true) from the moment the gateway stops (SIGTERM, "
                    "/shutdown): 503 while it still serves for --drain-delay, so a load "
                    "balancer takes it out first; backends then shows the last known states",
                },
                "phase": {
                    "type": "string",
                    "enum": ["leaving", "draining", "stopped"],
                    "description": "with draining: leaving (still serving), draining "
                    "(listeners closed, requests in flight finishing)",
                },
                "galera": {
                    "type": "object",
                    "description": "galera mode only: the node taking the writes (null: none "
                    "may now) and each node's wsrep state (null: unknown)",
                    "properties": {
                        "writer": {"type": ["string", "null"]},
                        "nodes": {
                            "type": "object",
                            "additionalProperties": {"type": ["object", "null"]},
                        },
                    },
                    "required": ["writer", "nodes"],
                },
            },
            "required": ["ready", "backends"],
            "additionalProperties": False,
        },
        "ShuttingDown": {
            "type": "object",
            "properties": {
                "shutting_down": {"const": True},
                "in_flight": {"type": "integer", "minimum": 0},
                "drain_timeout": {"type": "number"},
            },
            "required": ["shutting_down", "in_flight", "drain_timeout"],
            "additionalProperties": False,
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document, built from the request model."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dbslayer gateway",
            "version": "1",
            "summary": "SQL over HTTP as JSON, DBSlayer's protocol",
            "description": _DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "http://127.0.0.1:9090", "description": "the default listener"}],
        "tags": [
            {"name": "DBSlayer", "description": "the DBSlayer routes"},
            {"name": "Admin", "description": "monitoring, probes and shutdown"},
            {"name": "Meta", "description": "this document and the console"},
        ],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {**_db_responses(), **_refusal_responses()},
            "headers": {
                "RetryAfter": {
                    "description": "seconds after which to try again",
                    "schema": {"type": "string", "pattern": r"^\d+$"},
                }
            },
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a user's token (dbslayer users add)",
                },
                "basicToken": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the user's name and token",
                },
            },
        },
    }


def document_bytes() -> bytes:
    """The document as written to api/openapi.json."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2) + b"\n"


@lru_cache(maxsize=1)
def served() -> bytes:
    """The document the gateway serves: api/openapi.json as installed."""
    return DOCUMENT_PATH.read_bytes()


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        DOCUMENT_PATH.write_bytes(document_bytes())
        return 0
    if argv:
        print("usage: python -m api.openapi [--write]", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(document_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
