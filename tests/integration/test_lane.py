"""The reactor lane (gateway/lane.py) against a real MariaDB: a backend with the lane answers
exactly what the thread path answers, uses the thread path where it must, keeps the pool's
maximum, notices a connection the server closed, and fails an overdue answer.

Each scenario runs on a real reactor in a fresh interpreter (as in test_redis_client.py) and
reports JSON; the reactor must end clean (no timer pending)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.servers import ROOT, MariaDB

HARNESS = """
import json, sys, time
from twisted.internet import task, defer
from conf.dsn import parse_dsn
from gateway.backends import MySQLBackend, Run, GatewayError
from gateway.request import parse_request

def backend(reactor, dsn, lane=True, pool_max=4, read_timeout=30.0):
    b = MySQLBackend(
        parse_dsn(dsn), reactor, connect_timeout=2, read_timeout=read_timeout,
        write_timeout=10, pool_min=1, pool_max=pool_max, reactor_lane=lane,
    )
    b.counts = {"thread": 0, "lane_read": 0}
    run_in_thread = b.pool.run_in_thread
    def counted(*args, **kwargs):
        b.counts["thread"] += 1
        return run_in_thread(*args, **kwargs)
    b.pool.run_in_thread = counted
    if b.lane is not None:
        read = b.lane._read
        def counted_read(*args):
            b.counts["lane_read"] += 1
            return read(*args)
        b.lane._read = counted_read
    return b

async def ask(b, obj, limit=None, max_rows=None):
    try:
        answer = await b.execute(parse_request(obj), Run(limit, max_rows=max_rows))
    except GatewayError as e:
        return {"error": type(e).__name__, "status": e.status, "errno": e.errno, "message": e.message}
    return {"wire": json.loads(json.dumps(answer.to_wire(), default=str))}

def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)

async def until(reactor, predicate, bound=5.0):
    # Poll (every 10 ms) until predicate() is true; fails past ``bound`` seconds.
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound} s")
        await sleep(reactor, 0.01)

%s

def pending(reactor):
    return [repr(c) for c in reactor.getDelayedCalls() if c.active()]

async def harness(reactor):
    result = await scenario(reactor, *sys.argv[1:])
    try:  # (what the pool threads hand back lands within a few reactor turns)
        await until(reactor, lambda: not pending(reactor), 2.0)
    except AssertionError:
        pass
    result["pending_timers"] = pending(reactor)
    print(json.dumps(result))

task.react(lambda reactor: defer.Deferred.fromCoroutine(harness(reactor)))
"""


def run_scenario(body: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    script = HARNESS % textwrap.dedent(body)
    out = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.decode().splitlines()[-1])
    assert result.pop("pending_timers") == [], "timers left on the reactor"
    return result


@pytest.fixture(scope="module")
def lane_db(mariadb: MariaDB) -> MariaDB:
    mariadb.sql(
        "CREATE DATABASE IF NOT EXISTS lane; USE lane; "
        "CREATE TABLE IF NOT EXISTS kinds (id INT PRIMARY KEY AUTO_INCREMENT, d DECIMAL(30,10), "
        "t DATETIME(3), b VARBINARY(8), u BIGINT UNSIGNED, s VARCHAR(20), n INT NULL); "
        "DELETE FROM kinds; INSERT INTO kinds (d, t, b, u, s, n) VALUES "
        "(12345678901234567890.0123456789, '0000-00-00 00:00:00.000', x'00ff10', "
        "18446744073709551615, 'é', NULL), (1.5, '2024-02-29 12:00:00.123', '', 0, '', 7);"
    )
    return mariadb


#: Requests answered the same way by both paths: values, updates, errors, PARAMS.
SAME_ANSWERS = [
    {"SQL": "SELECT * FROM kinds ORDER BY id"},
    {"SQL": "SELECT * FROM kinds WHERE id < 0"},
    {"SQL": "SELECT NULL AS a, '' AS b, 1.0E300 AS c, -0 AS d, x'fe' AS e"},
    {"SQL": "SELECT s FROM kinds WHERE s = %s", "PARAMS": ["é"]},
    {"SQL": "SELECT %(a)s + %(b)s AS total", "PARAMS": {"a": 2, "b": 40}},
    {"SQL": "SELECT %s AS v", "PARAMS": [1, 2]},
    {"SQL": "SELECT nope FROM kinds"},
    {"SQL": "INSERT INTO kinds (d, s) VALUES (2, 'new')"},
    {"SQL": "UPDATE kinds SET n = n + 1 WHERE n IS NOT NULL"},
    {"SQL": "UPDATE kinds SET n = n - 1 WHERE n IS NOT NULL"},
    {"SQL": "DELETE FROM kinds WHERE s = 'new'"},
    {"SQL": "DO 1"},
    {"SQL": "SELECT 1; SELECT 2"},
]


def test_lane_answers_what_the_thread_path_answers(lane_db: MariaDB) -> None:
    """Every kind of answer (exact values, binary, NULL, an empty result, updates with their
    counts, SQL errors, PARAMS and a PARAMS mismatch) is the same through the reactor lane
    as through a pool thread; after the first request, the lane reads the answers."""
    result = run_scenario(
        """
        async def scenario(reactor, dsn, requests):
            out = {}
            for lane in (True, False):
                b = backend(reactor, dsn, lane=lane)
                answers = []
                for obj in json.loads(requests):
                    answers.append(await ask(b, obj))
                    if obj["SQL"].startswith("INSERT"):  # (its INSERT_ID differs per run)
                        answers[-1]["wire"]["RESULT"].pop("INSERT_ID")
                out["lane" if lane else "thread"] = {"answers": answers, "counts": b.counts}
                b.close()
            return out
        """,
        lane_db.dsn(database="lane"),
        json.dumps(SAME_ANSWERS),
    )
    lane, thread = result["lane"], result["thread"]
    assert lane["answers"] == thread["answers"]
    rows = lane["answers"][0]["wire"]["RESULT"]
    assert rows["ROWS"][0][1] == "12345678901234567890.0123456789"
    assert rows["ROWS"][0][2] == "0000-00-00 00:00:00.000"
    assert rows["ROWS"][0][4] == 18446744073709551615 and rows["ROWS"][0][5] == "é"
    assert rows["BASE64"] == [3] and rows["ROWS"][0][3] == "AP8Q"
    assert lane["answers"][5]["status"] == 400  # PARAMS mismatch
    assert lane["answers"][6]["wire"]["MYSQL_ERRNO"] == 1054
    assert lane["answers"][8]["wire"]["RESULT"]["AFFECTED_ROWS"] == 1
    # A thread opened the first connection, and a second one for the request after the
    # PARAMS mismatch (its connection is given back on the next reactor turn); the PARAMS
    # mismatch is never sent and the multi-statement request is not the lane's; DO may leave
    # state the server does not flag (DO GET_LOCK(...)), so it runs in a thread. The rest
    # were read in the reactor.
    assert lane["counts"]["lane_read"] == len(SAME_ANSWERS) - 5
    assert thread["counts"]["lane_read"] == 0


def test_big_answer_goes_to_a_thread_whole(lane_db: MariaDB) -> None:
    """An answer bigger than the lane reads itself (here 20,000 rows) is read by a pool
    thread after the lane sent it: complete, and the connection stays usable."""
    result = run_scenario(
        """
        async def scenario(reactor, dsn):
            b = backend(reactor, dsn)
            await ask(b, {"SQL": "SELECT 1"})
            before = dict(b.counts)
            big = await ask(b, {"SQL": "SELECT seq, REPEAT('x', 20) FROM seq_1_to_20000"})
            after = dict(b.counts)
            small = await ask(b, {"SQL": "SELECT 2 AS two"})
            b.close()
            rows = big["wire"]["RESULT"]["ROWS"]
            return {"rows": len(rows), "last": rows[-1][0], "before": before, "after": after,
                    "small": small["wire"]["RESULT"]["ROWS"]}
        """,
        lane_db.dsn(database="lane"),
    )
    assert result["rows"] == 20000 and result["last"] == 20000
    assert result["after"]["thread"] == result["before"]["thread"] + 1
    assert result["after"]["lane_read"] == result["before"]["lane_read"]
    assert result["small"] == [[2]]


def test_pool_maximum_holds_and_waiters_are_served(lane_db: MariaDB) -> None:
    """Forty concurrent requests on a pool of two connections all succeed, in the lane, on
    at most two server connections."""
    result = run_scenario(
        """
        async def scenario(reactor, dsn):
            b = backend(reactor, dsn, pool_max=2)
            await ask(b, {"SQL": "SELECT 1"})
            await ask(b, {"SQL": "SELECT 1"})
            answers = await defer.gatherResults([
                defer.Deferred.fromCoroutine(ask(b, {"SQL": f"SELECT CONNECTION_ID(), {i}"}))
                for i in range(40)
            ])
            info = b.pool.info()
            b.close()
            return {"ids": sorted({a["wire"]["RESULT"]["ROWS"][0][0] for a in answers}),
                    "values": sorted(a["wire"]["RESULT"]["ROWS"][0][1] for a in answers),
                    "info": info, "counts": b.counts}
        """,
        lane_db.dsn(database="lane"),
    )
    assert result["values"] == list(range(40))
    assert len(result["ids"]) <= 2
    assert result["info"]["in_use"] == 0 and result["info"]["max"] == 2
    assert result["counts"]["lane_read"] >= 40


def test_connection_closed_by_the_server_is_noticed_while_idle(lane_db: MariaDB) -> None:
    """When the server closes an idle lane connection (KILL, wait_timeout, restart), the lane
    drops it at once; the next request opens a new one and succeeds."""
    result = run_scenario(
        """
        async def scenario(reactor, dsn):
            b = backend(reactor, dsn, pool_max=1)
            first = await ask(b, {"SQL": "SELECT CONNECTION_ID()"})
            await ask(b, {"SQL": "SELECT 1"})  # in the lane: the connection is watched
            victim = first["wire"]["RESULT"]["ROWS"][0][0]
            killer = backend(reactor, dsn, lane=False, pool_max=1)
            await ask(killer, {"SQL": f"KILL CONNECTION {victim}"})
            killer.close()
            try:  # the server closes the socket; the lane sees it readable
                await until(reactor, lambda: b.pool._slots[0].conn is None)
            except AssertionError:
                pass
            dropped = b.pool._slots[0].conn is None
            after = await ask(b, {"SQL": "SELECT CONNECTION_ID()"})
            b.close()
            return {"dropped": dropped, "victim": victim, "after": after}
        """,
        lane_db.dsn(database="lane"),
    )
    assert result["dropped"] is True
    new_id = result["after"]["wire"]["RESULT"]["ROWS"][0][0]
    assert new_id != result["victim"]


def test_time_limit_in_the_lane_is_504(lane_db: MariaDB) -> None:
    """A statement past its time limit, sent from the lane, ends as the 504 of the thread
    path, and the connection answers the next request."""
    result = run_scenario(
        """
        async def scenario(reactor, dsn):
            b = backend(reactor, dsn, pool_max=1)
            await ask(b, {"SQL": "SELECT 1"}, limit=0.3)  # sets the session's limit
            started = time.monotonic()
            slow = await ask(b, {"SQL": "SELECT SLEEP(3)"}, limit=0.3)
            took = time.monotonic() - started
            after = await ask(b, {"SQL": "SELECT 3"}, limit=0.3)
            counts = dict(b.counts)
            b.close()
            return {"slow": slow, "took": took, "after": after, "counts": counts}
        """,
        lane_db.dsn(database="lane"),
    )
    assert result["slow"]["status"] == 504, result["slow"]
    assert result["took"] < 2.0
    assert result["after"]["wire"]["RESULT"]["ROWS"] == [[3]]
    # SLEEP's answer, a result set that ends in the time limit's error, is sent from the lane
    # and read in a pool thread (which keeps rows read before an error); SELECT 3 in the lane.
    assert result["counts"] == {"thread": 2, "lane_read": 1}


def test_overdue_answer_fails_as_a_lost_connection(lane_db: MariaDB) -> None:
    """An answer that does not come within read_timeout (a hung server) fails like a lost
    connection (502, 2013), and the pool recovers."""
    result = run_scenario(
        """
        async def scenario(reactor, dsn):
            b = backend(reactor, dsn, pool_max=1, read_timeout=1.0)
            await ask(b, {"SQL": "SELECT 1"})
            started = time.monotonic()
            hung = await ask(b, {"SQL": "SELECT SLEEP(4)"})
            took = time.monotonic() - started
            after = await ask(b, {"SQL": "SELECT 4"})
            b.close()
            return {"hung": hung, "took": took, "after": after}
        """,
        lane_db.dsn(database="lane"),
    )
    assert result["hung"]["status"] == 502 and result["hung"]["errno"] == 2013
    assert "may or may not have been applied" in result["hung"]["message"]
    assert 0.9 < result["took"] < 3.0
    assert result["after"]["wire"]["RESULT"]["ROWS"] == [[4]]


def test_lane_can_be_turned_off(mariadb: MariaDB, gateway_factory: Any) -> None:
    """--reactor-lane false: every request goes through a pool thread, with the same answers;
    /stats says where each backend's answers were read."""
    on = gateway_factory("--backend", mariadb.dsn())
    off = gateway_factory("--backend", mariadb.dsn(), "--reactor-lane", "false")
    request = {"SQL": "SELECT 1 AS one, CAST(2.50 AS DECIMAL(4,2)) AS d, NOW() IS NOT NULL AS t"}
    assert on.db(request).body == off.db(request).body
    assert json.loads(off.db(request).body)["RESULT"]["ROWS"] == [[1, 2.50, 1]]
    assert off.get("/stats").json()["backends"]["db1"]["answers"] == {"reactor": 0, "thread": 2}
    assert on.get("/stats").json()["backends"]["db1"]["answers"] == {"reactor": 0, "thread": 1}
    on.db(request)
    assert on.get("/stats").json()["backends"]["db1"]["answers"] == {"reactor": 1, "thread": 1}


def test_read_account_sessions_are_reset_and_keep_the_lane(lane_db: MariaDB) -> None:
    """On a read account every request's session is reset (stored code reached through a
    definer's view could leave a lock or a variable nothing flags), off the answer's path and
    keeping the gateway's own settings: the next request still runs in the lane, with its time
    limit and read-only session, and sees no user variable."""
    lane_db.sql(
        "CREATE USER IF NOT EXISTS 'lane_ro'@'127.0.0.1' IDENTIFIED BY 'ro';"
        "GRANT SELECT, SHOW VIEW ON `lane`.* TO 'lane_ro'@'127.0.0.1';"
    )
    result = run_scenario(
        """
        async def scenario(reactor, dsn):
            b = backend(reactor, dsn, pool_max=1)
            read = b.read_lane._read
            def counted_read(*args):
                b.counts["lane_read"] += 1
                return read(*args)
            b.read_lane._read = counted_read
            asks = []
            for sql in ["SELECT 1", "SELECT @@max_statement_time, @@tx_read_only, @x",
                        "SELECT CONNECTION_ID()", "SELECT CONNECTION_ID()"]:
                answer = await b.execute(parse_request({"SQL": sql}), Run(2.5, read_only=True))
                asks.append(json.loads(json.dumps(answer.to_wire(), default=str)))
                # (the reset runs in a thread, after the answer: its slot comes back after it)
                await until(reactor, lambda: b.read_pool.in_use == 0)
            counts = dict(b.counts)
            b.close()
            return {"asks": asks, "counts": counts}
        """,
        lane_db.dsn(database="lane") + "&read_user=lane_ro&read_password=ro",
    )
    asks = result["asks"]
    assert asks[1]["RESULT"]["ROWS"] == [[2.5, 1, None]]
    assert asks[2]["RESULT"]["ROWS"] == asks[3]["RESULT"]["ROWS"]  # one connection, reset
    assert result["counts"]["lane_read"] == 3  # all but the first, which opened it
