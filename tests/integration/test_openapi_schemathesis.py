"""schemathesis against a live gateway: requests generated from the OpenAPI document it serves
(valid ones and invalid ones) never get a 5xx, nor an answer the document does not describe
(status code, content type, headers, body schema).

The gateway serves the demo SQLite database (the README's `make run`), in a directory of its own.
The number of generated cases is bounded (EXAMPLES per operation and mode) so that the whole
run stays well under a minute; a failure prints the request that caused it (as a curl line)
and Hypothesis's seed to run the same cases again.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err
from schemathesis.generation.modes import GenerationMode

from api.openapi import DOCUMENT_PATH
from tests.servers import Gateway

#: Generated cases per operation and generation mode (valid, invalid).
EXAMPLES = 60
#: No 5xx, and nothing outside the document.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Every operation the document must describe (and this test runs).
OPERATIONS = {
    ("GET", "/db"),
    ("POST", "/db"),
    ("GET", "/dbform"),
    ("POST", "/dbform"),
    ("GET", "/stats"),
    ("GET", "/stats/log"),
    ("GET", "/stats/error"),
    ("GET", "/stats/errors"),
    ("GET", "/metrics"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/shutdown"),
    ("POST", "/shutdown"),
    ("GET", "/"),
    ("GET", "/static/{name}"),
    ("GET", "/openapi.json"),
}
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """``dbslayer serve`` on the demo database, one worker."""
    gw = Gateway(tmp_path_factory.mktemp("openapi")).start()
    yield gw
    gw.stop()


def test_the_served_document_is_the_repository_file(demo: Gateway) -> None:
    """GET /openapi.json answers api/openapi.json as JSON, and it names every operation."""
    reply = demo.get("/openapi.json")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    assert reply.body == DOCUMENT_PATH.read_bytes()
    document = reply.json()
    named = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert named == OPERATIONS


def test_generated_requests_stay_inside_the_document(demo: Gateway) -> None:
    """Every operation (but /shutdown) with valid and invalid generated requests, the
    DBSlayer routes first, GET /db also with generated request objects as the whole query
    string (which the document can only say in words); then /shutdown once, which answers
    and stops the gateway."""
    started = time.monotonic()
    # (from_dict: from_url would leave out the operation of the document's own URL)
    schema = schemathesis.openapi.from_dict(demo.get("/openapi.json").json())
    operations = {(op.method.upper(), op.path): op for op in _operations(schema)}
    assert set(operations) == OPERATIONS
    statuses: Counter[tuple[str, str, int]] = Counter()
    session = requests.Session()

    # The DBSlayer routes first, so that the journals read by /stats/log and /stats/errors hold
    # their requests (errors of POSTs carry their SQL).
    order = sorted(operations, key=lambda key: (not key[1].startswith("/db"), key))
    for method, path in order:
        if path != "/shutdown":
            _generate(operations[(method, path)], demo.url, session, statuses)
        if (method, path) == ("POST", "/dbform"):
            _as_query_string(operations, demo.url, session, statuses)

    shutdown = operations[("GET", "/shutdown")].Case()
    response = shutdown.call_and_validate(base_url=demo.url, session=session, checks=CHECKS)
    assert response.status_code == 200 and response.json()["shutting_down"] is True
    assert demo.proc is not None and demo.proc.wait(20) == 0

    # The generated requests reached the database, not only the request parser.
    for route in (("POST", "/db"), ("GET", "/db?{json}"), ("GET", "/dbform"), ("POST", "/dbform")):
        assert statuses[(*route, 200)] > 0 and statuses[(*route, 400)] > 0, statuses
    assert time.monotonic() - started < 120, statuses
    assert "Traceback" not in demo.output()


def _generate(operation: Any, base_url: str, session: requests.Session, statuses: Counter) -> None:
    """Run the bounded cases of one operation, counting the statuses."""

    @BOUNDED
    @given(case=operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE))
    def run(case: Any) -> None:
        response = case.call_and_validate(
            base_url=base_url, session=session, checks=CHECKS, timeout=15
        )
        statuses[(operation.method.upper(), operation.path, response.status_code)] += 1

    run()


def _as_query_string(
    operations: dict[tuple[str, str], Any],
    base_url: str,
    session: requests.Session,
    statuses: Counter,
) -> None:
    """GET /db with the request objects generated for POST /db as the whole query string,
    each answer checked against what the document says of GET /db."""
    post_db, get_db = operations[("POST", "/db")], operations[("GET", "/db")]

    @BOUNDED
    @given(case=post_db.as_strategy() | post_db.as_strategy(GenerationMode.NEGATIVE))
    def run(case: Any) -> None:
        body = case.body  # (an invalid one may be bytes that are no JSON at all)
        query = quote(body if isinstance(body, bytes) else json.dumps(body), safe="")
        response = session.get(f"{base_url}/db?{query}", timeout=15)
        get_db.Case().validate_response(response, checks=CHECKS)
        statuses[("GET", "/db?{json}", response.status_code)] += 1

    run()


def _operations(schema: Any) -> list[Any]:
    """The document's operations (an operation schemathesis cannot read fails the test)."""
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found
