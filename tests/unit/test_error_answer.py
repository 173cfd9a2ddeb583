"""One constructor of gateway error bodies (gateway.results.error_answer / error_body), and no
other place in the server's source that builds an ``{"ERROR": ...}`` object or body."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from gateway.backends import BackendUnavailable, ConnectionLost, GatewayError
from gateway.results import error_answer, error_body

ROOT = Path(__file__).resolve().parents[2]
#: The server's packages (the client distribution only reads these bodies).
PACKAGES = ("api", "gateway", "stats", "conf", "twisted")
#: The one place allowed to build them.
CONSTRUCTOR = ROOT / "gateway" / "results.py"


def test_error_answer_puts_error_first_and_leaves_out_none() -> None:
    assert error_answer("bad") == {"ERROR": "bad"}
    wire = error_answer("gone", MYSQL_ERRNO=2013, SERVER=None, RETRY=1)
    assert list(wire) == ["ERROR", "MYSQL_ERRNO", "RETRY"] and wire["MYSQL_ERRNO"] == 2013


def test_error_body_is_the_json_of_error_answer() -> None:
    body = error_body('say "no"\n', SERVER="db1")
    assert json.loads(body) == {"ERROR": 'say "no"\n', "SERVER": "db1"}
    assert body.startswith(b'{"ERROR":')


@pytest.mark.parametrize(
    "error, expected",
    [
        (GatewayError("x"), {"ERROR": "x"}),
        (BackendUnavailable("down", errno=2003), {"ERROR": "down", "MYSQL_ERRNO": 2003}),
        (
            ConnectionLost("lost", errno=2013, server="db1"),
            {"ERROR": "lost", "MYSQL_ERRNO": 2013, "SERVER": "db1"},
        ),
    ],
)
def test_gateway_errors_use_the_constructor(error: GatewayError, expected: dict) -> None:
    wire = error.to_wire()
    assert wire == expected and list(wire) == list(expected)


def builders(tree: ast.AST) -> list[tuple[int, str]]:
    """Where a module builds an ERROR object or body: a dict display with the key "ERROR"
    (one whose value is itself a dict display is a schema describing the key, not an
    answer), ``x["ERROR"] = ...``, ``dict(ERROR=...)``, or a str/bytes literal that starts
    as a JSON object with the key (``b'{"ERROR":...'``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "ERROR"
                    and not isinstance(value, ast.Dict)
                ):
                    found.append((node.lineno, "dict display"))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            index = node.slice
            if isinstance(index, ast.Constant) and index.value == "ERROR":
                found.append((node.lineno, 'assignment to ["ERROR"]'))
        elif isinstance(node, ast.Call):
            if any(k.arg == "ERROR" for k in node.keywords):
                found.append((node.lineno, "ERROR= keyword"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            compact = text.lstrip().replace(" ", "")
            if compact.startswith(('{"ERROR":', "{'ERROR':", '{\\"ERROR\\":')):
                found.append((node.lineno, "literal body"))
    return found


def test_no_other_place_builds_an_error_body() -> None:
    """Fails as soon as a module other than gateway/results.py builds one by hand."""
    offenders = []
    scanned = 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == CONSTRUCTOR or "__pycache__" in path.parts:
                continue
            scanned += 1
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            offenders += [
                f"{path.relative_to(ROOT)}:{line} ({what})" for line, what in builders(tree)
            ]
    assert scanned > 30  # (the tree was found)
    assert not offenders, "build it with gateway.results.error_answer: " + ", ".join(offenders)


@pytest.mark.parametrize(
    "source",
    [
        'x = {"ERROR": message}',
        'x = {"SERVER": s, "ERROR": m}',
        'out["ERROR"] = m',
        "x = dict(ERROR=m)",
        'BODY = b\'{"ERROR":"internal"}\'',
        "x = orjson.dumps({'ERROR': m, **extra})",
        'x = f\'{{"ERROR": "{m}"}}\'',
    ],
)
def test_the_scan_finds_each_way_of_building_one(source: str) -> None:
    assert builders(ast.parse(source))


@pytest.mark.parametrize(
    "source",
    [
        'if "ERROR" in answer: pass',
        'message = answer.get("ERROR")',
        'schema = {"properties": {"ERROR": {"type": "string"}}}',
        'doc = """Errors are {"ERROR": ...} objects."""',
        "x = error_answer(m)",
    ],
)
def test_the_scan_leaves_reading_and_describing_alone(source: str) -> None:
    assert not builders(ast.parse(source))
