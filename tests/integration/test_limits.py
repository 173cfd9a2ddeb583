"""Limits that keep the gateway's memory and queue bounded: rows per answer (a visible
truncation marker, never silent) and requests in flight (503 at once past it)."""

from __future__ import annotations

import json
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


def _rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_million_rows_stream_with_flat_memory(mariadb: MariaDB, gateway_factory: Any) -> None:
    """With a high row limit, 1,000,000 rows stream out as they are read: complete valid JSON,
    every row in order, and the gateway's peak memory grows by far less than 100 MB."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-rows", "2000000")
    assert gw.proc is not None
    gw.db({"SQL": "SELECT 1"})
    before = _rss_kb(gw.proc.pid)
    reply = gw.db({"SQL": "SELECT seq, CONCAT('row', seq) AS t FROM seq_1_to_1000000"}, timeout=120)
    growth_mb = (_rss_kb(gw.proc.pid) - before) / 1024
    assert reply.headers.get("X-Streamed") == "true"
    answer = reply.json()
    rows = answer["RESULT"]["ROWS"]
    assert (
        len(rows) == 1_000_000 and rows[0] == [1, "row1"] and rows[-1] == [1_000_000, "row1000000"]
    )
    assert "TRUNCATED" not in answer["RESULT"] and answer["SERVER"] == "db1"
    assert answer["RESULT"]["TYPES"] == ["MYSQL_TYPE_LONGLONG", "MYSQL_TYPE_VAR_STRING"]
    assert growth_mb < 100, growth_mb
    print(
        f"\n1,000,000 rows streamed: {len(reply.body) / 1e6:.1f} MB of JSON, peak RSS growth {growth_mb:.1f} MB"
    )
    cut = gw.db({"SQL": "SELECT seq FROM seq_1_to_100000", "FORMAT": "json"})
    assert len(cut.json()["RESULT"]["ROWS"]) == 100_000


def test_streamed_answer_ends_with_the_marker(mariadb: MariaDB, gateway_factory: Any) -> None:
    """A streamed answer cut by the row limit ends with TRUNCATED: true, still valid JSON."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-rows", "5000")
    reply = gw.db({"SQL": "SELECT seq FROM seq_1_to_20000"})
    assert reply.headers.get("X-Streamed") == "true"
    result = reply.json()["RESULT"]
    assert len(result["ROWS"]) == 5000 and result["TRUNCATED"] is True
    assert gw.db({"SQL": "SELECT 2"}).json()["RESULT"]["ROWS"] == [[2]]


def test_client_going_away_stops_the_query(mariadb: MariaDB, gateway_factory: Any) -> None:
    """A client that disconnects in the middle of a streamed answer stops the query."""
    import socket
    import urllib.parse

    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-rows", "2000000")
    sql = "SELECT seq, SLEEP(0.0005) AS z FROM seq_1_to_200000"
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(
            f"GET /db?{urllib.parse.quote(json.dumps({'SQL': sql}))} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        received = b""
        while len(received) < 50_000:
            received += s.recv(65536)
        assert b"X-Streamed: true" in received
    deadline = time.monotonic() + 10
    while "SLEEP(0.0005)" in mariadb.sql("SHOW FULL PROCESSLIST"):
        assert time.monotonic() < deadline, "the query kept running after the client left"
        time.sleep(0.1)
    assert gw.db({"SQL": "SELECT 9"}).json()["RESULT"]["ROWS"] == [[9]]


def test_time_limit_in_the_middle_of_a_stream(mariadb: MariaDB, gateway_factory: Any) -> None:
    """A statement stopped by the time limit after its first rows were streamed ends the JSON
    with MYSQL_ERRNO/MYSQL_ERROR: still valid, never silently short."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-rows", "2000000")
    started = time.monotonic()
    reply = gw.db({"SQL": "SELECT seq, SLEEP(0.0005) AS z FROM seq_1_to_20000", "TIMEOUT": 1500})
    assert time.monotonic() - started < 5
    assert reply.status == 200 and reply.headers.get("X-Streamed") == "true"
    answer = reply.json()
    assert 1000 < len(answer["RESULT"]["ROWS"]) < 20000
    assert answer["MYSQL_ERRNO"] in (1969, 1317, 3024) and answer["SERVER"] == "db1"
    assert gw.db({"SQL": "SELECT 4"}).json()["RESULT"]["ROWS"] == [[4]]
