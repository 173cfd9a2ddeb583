"""One answer shape: the same request answered streamed (a big single read, X-Streamed) and
buffered (the same request with CACHE, which is built whole) parses to equal JSON, whatever
happens: success, an error partway through the rows, ROLLBACK_ON_ERROR, the row limit; and
requests that never stream (several statements, CALL) keep every result. Each request runs
a few times, so that whichever way the gateway reads it (the reactor lane or a pool thread)
is held to the same answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB

#: 5,000 rows, over the 64 KiB the reactor lane reads itself: streamed.
BIG = "SELECT seq, REPEAT('x', 30) AS pad FROM seq_1_to_5000"
#: The correlated subquery returns two rows from row 3,501 on: the statement fails partway,
#: after three whole chunks of rows.
FAILING = (
    "SELECT s.seq, REPEAT('y', 20) AS pad, (SELECT 1 FROM seq_1_to_2 WHERE s.seq > 3500) AS boom "
    "FROM seq_1_to_6000 s"
)
#: Small (under the lane's 64 KiB) and failing after its first chunk.
SMALL_FAILING = (
    "SELECT s.seq, (SELECT 1 FROM seq_1_to_2 WHERE s.seq > 1500) AS boom FROM seq_1_to_3000 s"
)
RUNS = 3


@pytest.fixture(scope="module")
def procedures(mariadb: MariaDB) -> None:
    mariadb.sql(
        "DELIMITER //\n"
        "CREATE OR REPLACE PROCEDURE shape_two() BEGIN "
        "SELECT seq FROM seq_1_to_3; SELECT 'second' AS two; END//\n"
        "CREATE OR REPLACE PROCEDURE shape_big() BEGIN "
        "SELECT seq FROM seq_1_to_3000; SELECT 'after' AS two; END//\n"
        "CREATE OR REPLACE PROCEDURE shape_fails() BEGIN "
        "SELECT seq FROM seq_1_to_3000; SELECT nope FROM seq_1_to_2; END//\n",
        "test",
    )


def ask(gw: Gateway, obj: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    reply = gw.post("/db", json.dumps(obj).encode())
    assert reply.status == 200, reply
    return reply.json(), reply.headers


def both(gw: Gateway, obj: dict[str, Any], streams: bool) -> Any:
    """The answer streamed and buffered, required equal, over a few runs; returns it."""
    first = None
    for _ in range(RUNS):
        streamed, headers = ask(gw, obj)
        assert (headers.get("X-Streamed") == "true") is streams, (obj, headers)
        buffered, headers = ask(gw, {**obj, "CACHE": 60})
        assert headers.get("X-Streamed") is None
        assert streamed == buffered, obj
        assert first is None or streamed == first, "another run answered otherwise"
        first = streamed
    return first


def test_success(gateway: Gateway) -> None:
    answer = both(gateway, {"SQL": BIG}, streams=True)
    assert len(answer["RESULT"]["ROWS"]) == 5000 and answer["SERVER"] == "db1"


def test_an_error_partway_keeps_the_rows_before_it_as_an_object(gateway: Gateway) -> None:
    answer = both(gateway, {"SQL": FAILING}, streams=True)
    assert isinstance(answer["RESULT"], dict) and answer["MYSQL_ERRNO"] == 1242
    rows = answer["RESULT"]["ROWS"]
    assert len(rows) == 3001 and [r[0] for r in rows] == list(range(1, 3002))
    assert (answer["ERROR_CLASS"], answer["BACKEND_KIND"]) == ("OperationalError", "mariadb")


def test_with_rollback_on_error(gateway: Gateway) -> None:
    answer = both(gateway, {"SQL": FAILING, "ROLLBACK_ON_ERROR": True}, streams=True)
    assert answer["ROLLBACK_ON_ERROR"] is True and answer["ROLLBACK_ON_ERROR_SUCCESS"] is True
    assert len(answer["RESULT"]["ROWS"]) == 3001 and answer["MYSQL_ERRNO"] == 1242
    answer = both(gateway, {"SQL": BIG, "ROLLBACK_ON_ERROR": True}, streams=True)
    assert "ROLLBACK_ON_ERROR" not in answer and len(answer["RESULT"]["ROWS"]) == 5000


def test_a_small_answer_failing_partway_is_read_alike_everywhere(gateway: Gateway) -> None:
    """Small enough for the reactor lane, which once dropped the rows a thread kept."""
    answer = both(gateway, {"SQL": SMALL_FAILING}, streams=True)
    assert answer["MYSQL_ERRNO"] == 1242 and len(answer["RESULT"]["ROWS"]) == 1001


def test_an_error_in_the_first_row_has_no_result(gateway: Gateway) -> None:
    answer = both(gateway, {"SQL": "SELECT (SELECT seq FROM seq_1_to_2) AS x"}, streams=False)
    assert "RESULT" not in answer and answer["MYSQL_ERRNO"] == 1242


@pytest.mark.parametrize(
    "sql, shape, errno",
    [
        ("SELECT 1 AS a; SELECT 2 AS b", [1, 1], None),
        (f"{BIG}; SELECT 2 AS b", [5000, 1], None),
        ("SELECT 1 AS a; SELECT nope", [1], 1054),
        (f"{BIG}; SELECT nope", [5000], 1054),
        ("SELECT nope; SELECT 1", None, 1054),
    ],
)
def test_several_statements(
    gateway: Gateway, sql: str, shape: list[int] | None, errno: int | None
) -> None:
    answer = both(gateway, {"SQL": sql}, streams=False)
    if shape is None:
        assert "RESULT" not in answer
    else:
        assert [len(r["ROWS"]) for r in answer["RESULT"]] == shape
    assert answer.get("MYSQL_ERRNO") == errno


@pytest.mark.parametrize(
    "call, rows",
    [
        ("CALL shape_two()", [3, 1]),
        ("CALL shape_big()", [3000, 1]),
        ("BEGIN NOT ATOMIC SELECT seq FROM seq_1_to_3000; SELECT 'after' AS two; END", [3000, 1]),
    ],
)
def test_a_call_keeps_every_result(
    gateway: Gateway, procedures: None, call: str, rows: list[int]
) -> None:
    """Every result set of the procedure (or compound statement) and its final status, as
    an array, never streamed (a CALL once answered its first result set alone, as an
    object: the server's flags now say more results follow, so it is read whole)."""
    answer, headers = ask(gateway, {"SQL": call})
    assert headers.get("X-Streamed") is None
    result = answer["RESULT"]
    assert isinstance(result, list) and [len(r["ROWS"]) for r in result[:-1]] == rows
    assert result[-1] == {"AFFECTED_ROWS": 0, "INSERT_ID": 0, "SUCCESS": True}


def test_a_call_failing_after_its_first_result(gateway: Gateway, procedures: None) -> None:
    answer, _ = ask(gateway, {"SQL": "CALL shape_fails()"})
    assert [len(r["ROWS"]) for r in answer["RESULT"]] == [3000]
    assert answer["MYSQL_ERRNO"] == 1054


def test_the_row_limit(mariadb: MariaDB, gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-rows", "2500")
    answer = both(gw, {"SQL": BIG}, streams=True)
    assert len(answer["RESULT"]["ROWS"]) == 2500 and answer["RESULT"]["TRUNCATED"] is True
