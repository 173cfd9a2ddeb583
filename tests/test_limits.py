"""Limits that keep the gateway's memory and queue bounded: rows per answer (a visible
truncation marker, never silent) and requests in flight (503 at once past it)."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.servers import Gateway, MariaDB, Reply


def test_row_limit_marks_truncation(mariadb: MariaDB, gateway_factory: Any) -> None:
    """Past --max-rows the answer ends with TRUNCATED: true (and X-Truncated); the pool goes on."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-rows", "5", "--pool-max", "1")
    reply = gw.db({"SQL": "SELECT seq FROM seq_1_to_100"})
    result = reply.json()["RESULT"]
    assert result["ROWS"] == [[1], [2], [3], [4], [5]] and result["TRUNCATED"] is True
    assert reply.headers["X-Truncated"] == "true"
    whole = gw.db({"SQL": "SELECT seq FROM seq_1_to_5"})
    assert "TRUNCATED" not in whole.json()["RESULT"] and "X-Truncated" not in whole.headers
    assert (
        b"<key>TRUNCATED</key><value>true</value>"
        in gw.db({"SQL": "SELECT seq FROM seq_1_to_100", "FORMAT": "xml"}).body
    )
    assert gw.db({"SQL": "SELECT 3"}).json()["RESULT"]["ROWS"] == [[3]]


def test_million_rows_end_with_the_marker(mariadb: MariaDB, gateway_factory: Any) -> None:
    """A 1,000,000-row SELECT answers valid JSON with the default limit's marker, quickly."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn())
    started = time.monotonic()
    reply = gw.db({"SQL": "SELECT seq, CONCAT('row', seq) AS t FROM seq_1_to_1000000"}, timeout=60)
    result = reply.json()["RESULT"]
    assert len(result["ROWS"]) == 100_000 and result["TRUNCATED"] is True
    assert result["ROWS"][-1] == [100_000, "row100000"]
    assert time.monotonic() - started < 20


def test_requests_past_the_in_flight_limit_get_503(mariadb: MariaDB, gateway_factory: Any) -> None:
    """Past --max-in-flight a request gets 503 with Retry-After at once, not a queue."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-in-flight", "2")
    replies: list[Reply] = []
    slow = [
        threading.Thread(target=lambda: replies.append(gw.db({"SQL": "SELECT SLEEP(1.5)"})))
        for _ in range(2)
    ]
    for t in slow:
        t.start()
    time.sleep(0.4)
    started = time.monotonic()
    refused = gw.db({"SQL": "SELECT 1"})
    assert time.monotonic() - started < 0.5
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert "too many requests" in refused.json()["ERROR"]
    assert gw.get("/health").status == 200  # monitoring is not limited
    for t in slow:
        t.join(10)
    assert [r.status for r in replies] == [200, 200]
    assert gw.db({"SQL": "SELECT 1"}).status == 200
