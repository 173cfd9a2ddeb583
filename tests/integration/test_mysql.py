"""The gateway against a real MariaDB, over a real listening port: PROTOCOL.md sections 1-4."""

from __future__ import annotations

import ast
import base64
import json
import time
import urllib.parse
from decimal import Decimal
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, Reply


def exact(reply: Reply) -> Any:
    """Parse an answer keeping every number exact."""
    assert reply.status == 200, reply
    return json.loads(reply.body, parse_float=Decimal)


def sql(gw: Gateway, statement: str, **extra: Any) -> Any:
    return exact(gw.db({"SQL": statement, **extra}))


@pytest.fixture(scope="module")
def types_table(mariadb: MariaDB) -> str:
    mariadb.sql(
        r"""
        SET SESSION sql_mode = '';
        CREATE OR REPLACE TABLE alltypes (
          ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, bu BIGINT UNSIGNED,
          de DECIMAL(30,10), fl FLOAT, do DOUBLE, bt BIT(10), da DATE, tm TIME,
          dt DATETIME(6), ts TIMESTAMP NULL, yr YEAR, ch CHAR(5), vc VARCHAR(200), tx TEXT,
          bl BLOB, vb VARBINARY(16), en ENUM('red','green'), st SET('a','b','c'), js JSON
        );
        INSERT INTO alltypes VALUES (
          -128, -32768, -8388608, -2147483648, 9007199254740993, 18446744073709551615,
          '12345678901234567890.0123456789', 1.5, 0.1, b'1010101010', '0000-00-00',
          '838:59:59', '2024-02-29 23:59:59.123456', '2024-01-01 00:00:00', 2001, 'abc',
          'it''s "q" \\ back\nnew\ttab é 日本 😀', 'long text', x'00ff10', x'01',
          'green', 'a,c', '{"k": [1, 2]}'
        );
        INSERT INTO alltypes VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        """,
        "test",
    )
    return "alltypes"


def test_every_column_type_is_encoded_exactly(gateway: Gateway, types_table: str) -> None:
    """Each MySQL type comes back as PROTOCOL.md section 3 says, numbers exact."""
    answer = sql(gateway, f"SELECT * FROM {types_table}")
    result = answer["RESULT"]
    row = dict(zip(result["HEADER"], result["ROWS"][0]))
    assert row["ti"] == -128 and row["si"] == -32768 and row["mi"] == -8388608
    assert row["i"] == -2147483648
    assert row["bi"] == 9007199254740993
    assert row["bu"] == 18446744073709551615
    assert row["de"] == Decimal("12345678901234567890.0123456789")
    assert b"12345678901234567890.0123456789" in gateway.db({"SQL": "SELECT de FROM alltypes"}).body
    assert row["fl"] == Decimal("1.5") and row["do"] == Decimal("0.1")
    assert row["bt"] == 0b1010101010
    assert row["da"] == "0000-00-00"
    assert row["tm"] == "838:59:59"
    assert row["dt"] == "2024-02-29 23:59:59.123456"
    assert row["ts"] == "2024-01-01 00:00:00"
    assert row["yr"] == "2001"
    assert row["ch"] == "abc"
    assert row["vc"] == 'it\'s "q" \\ back\nnew\ttab é 日本 😀'
    assert row["tx"] == "long text"
    assert base64.b64decode(row["bl"]) == b"\x00\xff\x10"
    assert base64.b64decode(row["vb"]) == b"\x01"
    assert row["en"] == "green" and row["st"] == "a,c"
    assert json.loads(row["js"]) == {"k": [1, 2]}
    header = result["HEADER"]
    assert result["BASE64"] == [header.index("bl"), header.index("vb")]
    types = dict(zip(header, result["TYPES"]))
    assert types["i"] == "MYSQL_TYPE_LONG" and types["bi"] == "MYSQL_TYPE_LONGLONG"
    assert types["de"] == "MYSQL_TYPE_NEWDECIMAL" and types["dt"] == "MYSQL_TYPE_DATETIME"
    assert types["vc"] == "MYSQL_TYPE_VAR_STRING" and types["bl"] == "MYSQL_TYPE_BLOB"
    assert result["ROWS"][1] == [None] * len(header)
    assert answer["SERVER"] == "db1"


def test_answers_carry_content_length(gateway: Gateway) -> None:
    """Answers are sent with Content-Length (not chunked), so any HTTP/1.0 client reads them."""
    reply = gateway.db({"SQL": "SELECT 1"})
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert "Transfer-Encoding" not in reply.headers


def test_control_characters_give_valid_json(gateway: Gateway) -> None:
    """Text with control characters is escaped: the answer is always valid JSON."""
    reply = gateway.db(
        {
            "SQL": "SELECT CONCAT('a', CHAR(1 USING utf8mb4), CHAR(31 USING utf8mb4), CHAR(0 USING utf8mb4), 'b') AS s"
        }
    )
    assert json.loads(reply.body)["RESULT"]["ROWS"] == [["a\x01\x1f\x00b"]]


def test_zero_rows_keep_header_and_types(gateway: Gateway, types_table: str) -> None:
    """A SELECT with no rows still answers HEADER and TYPES, with ROWS empty."""
    result = sql(gateway, "SELECT i, vc FROM alltypes WHERE 1 = 0")["RESULT"]
    assert result == {
        "HEADER": ["i", "vc"],
        "ROWS": [],
        "TYPES": ["MYSQL_TYPE_LONG", "MYSQL_TYPE_VAR_STRING"],
    }


@pytest.fixture
def people(mariadb: MariaDB) -> str:
    mariadb.sql(
        "CREATE OR REPLACE TABLE people (id INT AUTO_INCREMENT PRIMARY KEY, "
        "name VARCHAR(64) NOT NULL UNIQUE) ENGINE=InnoDB",
        "test",
    )
    return "people"


def count(mariadb: MariaDB, table: str, where: str = "1") -> int:
    return int(mariadb.sql(f"SELECT COUNT(*) FROM {table} WHERE {where}", "test").strip())


def test_insert_answers_affected_rows_and_insert_id(gateway: Gateway, people: str) -> None:
    """DML answers AFFECTED_ROWS, INSERT_ID (first id of a multi-row insert) and SUCCESS."""
    one = sql(gateway, "INSERT INTO people (name) VALUES ('ann')")
    assert one == {"RESULT": {"AFFECTED_ROWS": 1, "INSERT_ID": 1, "SUCCESS": True}, "SERVER": "db1"}
    many = sql(gateway, "INSERT INTO people (name) VALUES ('bob'), ('cy')")
    assert many["RESULT"] == {"AFFECTED_ROWS": 2, "INSERT_ID": 2, "SUCCESS": True}
    update = sql(gateway, "UPDATE people SET name = CONCAT(name, '!') WHERE id > 1")
    assert update["RESULT"] == {"AFFECTED_ROWS": 2, "INSERT_ID": 0, "SUCCESS": True}


def test_multi_statement_results_in_order(gateway: Gateway, people: str) -> None:
    """Several statements answer RESULT as an array, one element per statement."""
    answer = sql(
        gateway, "INSERT INTO people (name) VALUES ('x'); SELECT name FROM people; SELECT 2 AS two"
    )
    assert [set(r) for r in answer["RESULT"]] == [
        {"AFFECTED_ROWS", "INSERT_ID", "SUCCESS"},
        {"HEADER", "ROWS", "TYPES"},
        {"HEADER", "ROWS", "TYPES"},
    ]
    assert answer["RESULT"][1]["ROWS"] == [["x"]]
    assert answer["RESULT"][2]["ROWS"] == [[2]]


def test_error_in_second_statement_is_reported(
    gateway: Gateway, mariadb: MariaDB, people: str
) -> None:
    """An error in a later statement is answered (not dropped) with the results before it."""
    answer = sql(
        gateway,
        "INSERT INTO people (name) VALUES ('a'); SELECT * FROM missing; "
        "INSERT INTO people (name) VALUES ('c')",
    )
    assert answer["MYSQL_ERRNO"] == 1146
    assert "missing" in answer["MYSQL_ERROR"]
    assert answer["RESULT"] == [{"AFFECTED_ROWS": 1, "INSERT_ID": 1, "SUCCESS": True}]
    assert answer["SERVER"] == "db1"
    assert count(mariadb, people) == 1  # the statement after the error did not run


def test_syntax_error_in_first_statement(gateway: Gateway) -> None:
    """An SQL error answers 200 with MYSQL_ERRNO/MYSQL_ERROR/SERVER, as the reference (then
    the extension keys ERROR_CLASS and BACKEND_KIND)."""
    answer = sql(gateway, "SELEC 1")
    assert list(answer) == ["MYSQL_ERRNO", "MYSQL_ERROR", "SERVER", "ERROR_CLASS", "BACKEND_KIND"]
    assert answer["MYSQL_ERRNO"] == 1064 and "syntax" in answer["MYSQL_ERROR"]


def test_duplicate_key_is_not_executed_twice(
    gateway: Gateway, mariadb: MariaDB, people: str
) -> None:
    """A failed write is reported once and never re-run (the reference ran it twice)."""
    mariadb.sql(
        "CREATE OR REPLACE TABLE audit (n INT); CREATE TRIGGER people_ai BEFORE INSERT ON people "
        "FOR EACH ROW INSERT INTO audit VALUES (1)",
        "test",
    )
    sql(gateway, "INSERT INTO people (name) VALUES ('dup')")
    answer = sql(gateway, "INSERT INTO people (name) VALUES ('dup')")
    assert answer["MYSQL_ERRNO"] == 1062 and "Duplicate" in answer["MYSQL_ERROR"]
    assert count(mariadb, people, "name = 'dup'") == 1
    assert count(mariadb, "audit") == 1 + 0  # the failed insert's trigger effect was rolled back
    mariadb.sql("DROP TRIGGER people_ai", "test")


def test_info_flags(gateway: Gateway, mariadb: MariaDB) -> None:
    """STAT, CLIENT_INFO, HOST_INFO, SERVER_VERSION, CLIENT_VERSION, SERVER_NAME answer under their key."""
    flags = ["STAT", "CLIENT_INFO", "HOST_INFO", "SERVER_VERSION", "CLIENT_VERSION", "SERVER_NAME"]
    answer = exact(gateway.db({flag: True for flag in flags}))
    assert "Uptime" in answer["STAT"]
    assert "TCP/IP" in answer["HOST_INFO"]
    major, minor, patch = mariadb.sql("SELECT VERSION()").split("-")[0].split(".")
    assert answer["SERVER_VERSION"] == int(major) * 10000 + int(minor) * 100 + int(patch)
    assert isinstance(answer["CLIENT_INFO"], str) and isinstance(answer["CLIENT_VERSION"], int)
    assert answer["SERVER_NAME"] == "db1" and answer["SERVER"] == "db1"
    assert "RESULT" not in answer
    assert "STAT" not in exact(gateway.db({"SQL": "SELECT 1", "STAT": False}))


def test_help_and_debug_return_input(gateway: Gateway) -> None:
    """SLAYER_HELP lists every key; SLAYER_DEBUG_RETURN_INPUT echoes the request."""
    request = {
        "SQL": "SELECT 1",
        "SLAYER_DEBUG_RETURN_INPUT": True,
        "SLAYER_HELP": True,
        "TIMEOUT": 5000,
    }
    answer = exact(gateway.db(request))
    assert answer["SLAYER_DEBUG_RETURN_INPUT"] == request
    assert {"SQL", "SERVER", "FORMAT", "PARAMS", "ROLLBACK_ON_ERROR", "STAT"} <= set(
        answer["SLAYER_HELP"]
    )
    assert answer["RESULT"]["ROWS"] == [[1]]


def test_params_are_bound_by_the_driver(gateway: Gateway, mariadb: MariaDB, people: str) -> None:
    """PARAMS values are escaped by the driver: an injection attempt is stored as data."""
    evil = "x'); DROP TABLE people; --"
    sql(gateway, "INSERT INTO people (name) VALUES (%s)", PARAMS=[evil])
    named = sql(
        gateway,
        "SELECT name, %(n)s AS n FROM people WHERE name = %(v)s",
        PARAMS={"v": evil, "n": 5},
    )
    assert named["RESULT"]["ROWS"] == [[evil, 5]]
    assert count(mariadb, people) == 1


def test_params_mismatch_is_a_400_and_runs_nothing(
    gateway: Gateway, mariadb: MariaDB, people: str
) -> None:
    """PARAMS that do not fit the placeholders answer 400 before anything runs."""
    reply = gateway.db({"SQL": "INSERT INTO people (name) VALUES (%s), (%s)", "PARAMS": ["a"]})
    assert reply.status == 400 and "PARAMS" in reply.json()["ERROR"]
    assert count(mariadb, people) == 0


def test_rollback_on_error(gateway: Gateway, mariadb: MariaDB, people: str) -> None:
    """ROLLBACK_ON_ERROR undoes the request's earlier statements when one fails."""
    sql(gateway, "INSERT INTO people (name) VALUES ('dup')")
    answer = sql(
        gateway,
        "INSERT INTO people (name) VALUES ('new'); INSERT INTO people (name) VALUES ('dup')",
        ROLLBACK_ON_ERROR=True,
    )
    assert answer["MYSQL_ERRNO"] == 1062
    assert answer["ROLLBACK_ON_ERROR"] is True and answer["ROLLBACK_ON_ERROR_SUCCESS"] is True
    assert count(mariadb, people, "name = 'new'") == 0
    ok = sql(gateway, "INSERT INTO people (name) VALUES ('kept')", ROLLBACK_ON_ERROR=True)
    assert "ROLLBACK_ON_ERROR" not in ok and count(mariadb, people, "name = 'kept'") == 1
    # Without the flag each statement commits by itself, as in the reference.
    sql(
        gateway,
        "INSERT INTO people (name) VALUES ('auto'); INSERT INTO people (name) VALUES ('dup')",
    )
    assert count(mariadb, people, "name = 'auto'") == 1


def test_transaction_left_open_does_not_leak(
    gateway: Gateway, mariadb: MariaDB, people: str
) -> None:
    """A request that opens a transaction and never commits leaves nothing open behind it."""
    sql(gateway, "BEGIN; INSERT INTO people (name) VALUES ('pending')")
    for _ in range(10):  # whichever pooled connection answers, nothing is pending
        assert sql(gateway, "SELECT @@in_transaction AS t")["RESULT"]["ROWS"] == [[0]]
    assert count(mariadb, people, "name = 'pending'") == 0


def test_post_body_and_plus_decoding(gateway: Gateway) -> None:
    """POST /db takes the JSON body; in the query string + is a space and %2B a plus."""
    assert exact(gateway.post("/db", b'{"SQL":"SELECT 1+1 AS two"}'))["RESULT"]["ROWS"] == [[2]]
    raw = urllib.parse.quote('{"SQL":"SELECT 3 %2B 4 AS s"}', safe='{}":%')
    reply = gateway.get("/db?" + raw.replace("%20", "+"))
    assert exact(reply)["RESULT"]["ROWS"] == [[7]]
    assert exact(
        gateway.get('/db?{"SQL":"SELECT+\'a+b\'+AS+x"}'.replace('"', "%22").replace("'", "%27"))
    )["RESULT"]["ROWS"] == [["a b"]]


def test_dbform_get_and_post(gateway: Gateway) -> None:
    """/dbform takes form fields; flags accept on/1/true; PARAMS is JSON text."""
    query = urllib.parse.urlencode({"SQL": "SELECT %s AS v", "PARAMS": "[42]", "SERVER_NAME": "on"})
    answer = exact(gateway.get("/dbform?" + query))
    assert answer["RESULT"]["ROWS"] == [[42]] and answer["SERVER_NAME"] == "db1"
    body = urllib.parse.urlencode({"SQL": "SELECT 'é' AS e", "STAT": "1"}).encode()
    posted = exact(gateway.post("/dbform", body, "application/x-www-form-urlencoded"))
    assert posted["RESULT"]["ROWS"] == [["é"]] and "Uptime" in posted["STAT"]
    bad = gateway.get("/dbform?SQL=SELECT+1&STAT=maybe")
    assert bad.status == 400 and "STAT" in bad.json()["ERROR"]


def test_formats(gateway: Gateway) -> None:
    """FORMAT xml, php, python and csv answer the same result in their own syntax."""
    statement = "SELECT 1 AS n, 'a,b' AS s, NULL AS z, CAST(1.50 AS DECIMAL(5,2)) AS d"
    xml = gateway.db({"SQL": statement, "FORMAT": "xml"})
    assert xml.headers["Content-Type"].startswith("text/xml")
    assert b"<key>ROWS</key><value><array><item><array><item>1</item><item>a,b</item>" in xml.body
    py = gateway.db({"SQL": statement, "FORMAT": "python"})
    assert ast.literal_eval(py.body.decode())["RESULT"]["ROWS"] == [[1, "a,b", None, 1.50]]
    php = gateway.db({"SQL": statement, "FORMAT": "php"})
    assert php.body.startswith(b'a:2:{s:6:"RESULT";a:3:{')
    csv = gateway.db({"SQL": statement, "FORMAT": "csv"})
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert csv.body == b'n,s,z,d\r\n1,"a,b",,1.50\r\n'
    error_as_csv = gateway.db({"SQL": "SELEC", "FORMAT": "csv"})
    assert error_as_csv.status == 200 and error_as_csv.json()["MYSQL_ERRNO"] == 1064
    assert gateway.db({"SQL": "SELECT 1", "FORMAT": "yaml"}).status == 400


@pytest.mark.parametrize(
    "raw, status, words",
    [
        ("/db?" + urllib.parse.quote("[1,2]"), 400, "JSON object"),
        ("/db?42", 400, "JSON object"),
        ("/db?{SQL:", 400, "not valid UTF-8 JSON"),
        ("/db?%7B%22SQL%22:%22SELECT%20%FF%22%7D", 400, "not valid UTF-8 JSON"),
        ("/db?", 400, "empty"),
        ("/db", 400, "empty"),
        ("/db?" + urllib.parse.quote('{"SQL":42}'), 400, "SQL must be a string"),
        ("/db?" + urllib.parse.quote('{"SQL":""}'), 400, "SQL is empty"),
        ("/db?" + urllib.parse.quote('{"FOO":1}'), 400, "SLAYER_HELP"),
        ("/db?" + urllib.parse.quote('{"SQL":"SELECT 1","SERVER":"db1"}'), 400, "SERVER"),
        (
            "/db?" + urllib.parse.quote('{"SQL":"SELECT 1","STAT":"yes"}'),
            400,
            "STAT must be true or false",
        ),
        ("/db?" + urllib.parse.quote('{"SQL":"SELECT 1","PARAMS":[[1]]}'), 400, "PARAMS"),
        ("/nowhere", 404, "no such path"),
    ],
)
def test_bad_input_gets_a_clear_error(gateway: Gateway, raw: str, status: int, words: str) -> None:
    """Each bad request answers its status with a JSON ERROR; the gateway keeps serving."""
    reply = gateway.get(raw)
    assert reply.status == status, reply
    assert reply.headers["Content-Type"] == "application/json"
    assert words in reply.json()["ERROR"]
    assert exact(gateway.db({"SQL": "SELECT 1"}))["RESULT"]["ROWS"] == [[1]]


def test_wrong_method_is_405(gateway: Gateway) -> None:
    """A wrong method is a JSON 405 with Allow."""
    reply = gateway.request("DELETE", "/db", None)
    assert reply.status == 405 and "GET" in reply.headers["Allow"] and "ERROR" in reply.json()


def test_oversized_requests_are_refused(gateway: Gateway) -> None:
    """A 2 MB query string is a 414 and a 2 MB body a 413, both JSON; the gateway keeps serving."""
    big = urllib.parse.quote(json.dumps({"SQL": "SELECT '" + "x" * 2_000_000 + "'"}))
    reply = gateway.get("/db?" + big)
    assert reply.status == 414 and "POST" in reply.json()["ERROR"]
    body = json.dumps({"SQL": "SELECT '" + "y" * 2_000_000 + "'"}).encode()
    reply = gateway.post("/db", body)
    assert reply.status == 413 and "limit" in reply.json()["ERROR"]
    assert exact(gateway.db({"SQL": "SELECT 1"}))["RESULT"]["ROWS"] == [[1]]


def test_large_post_under_the_limit_runs(gateway: Gateway) -> None:
    """A body under the limit (here 500 kB) is accepted and answered."""
    value = "z" * 500_000
    answer = exact(
        gateway.post("/db", json.dumps({"SQL": f"SELECT LENGTH('{value}') AS n"}).encode())
    )
    assert answer["RESULT"]["ROWS"] == [[500_000]]


def test_backend_down_is_503_at_once(gateway_factory: Any) -> None:
    """With its only backend unreachable the gateway answers 503 + Retry-After quickly, no hang."""
    from tests.servers import free_port

    gw = gateway_factory(
        "--backend",
        f"mysql://root@127.0.0.1:{free_port()}/test?name=gone",
        "--connect-timeout",
        "2",
    )
    started = time.monotonic()
    reply = gw.db({"SQL": "SELECT 1"})
    assert time.monotonic() - started < 3
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"
    answer = reply.json()
    assert answer["MYSQL_ERRNO"] in (2002, 2003) and answer["SERVER"] == "gone"
    assert "unavailable" in answer["ERROR"]


def test_restarted_server_is_used_again(
    tmp_path_factory: pytest.TempPathFactory, gateway_factory: Any
) -> None:
    """After a backend restart, pooled connections are pinged and replaced: no request fails."""
    server = MariaDB(tmp_path_factory.mktemp("restart")).start()
    try:
        gw = gateway_factory("--backend", server.dsn(database="mysql", name="r"), "--pool-max", "2")
        for _ in range(4):
            assert exact(gw.db({"SQL": "SELECT 1"}))["RESULT"]["ROWS"] == [[1]]
        server.stop()
        server.start()
        for _ in range(4):
            assert exact(gw.db({"SQL": "SELECT 1"}))["RESULT"]["ROWS"] == [[1]]
    finally:
        server.stop()


def test_named_backends_from_option_file(
    mariadb: MariaDB, gateway_factory: Any, tmp_path: Any
) -> None:
    """--mysql-config with --named: SERVER picks the group; unknown or missing SERVER is a 400."""
    mariadb.sql("CREATE DATABASE IF NOT EXISTS other")
    cnf = tmp_path / "my.cnf"
    cnf.write_text(
        f"[client]\nuser=root\nhost=127.0.0.1\nport={mariadb.port}\n\n"
        "[alpha]\ndatabase=test\n\n[beta]\ndatabase=other\n"
    )
    gw = gateway_factory("--mysql-config", str(cnf), "--named", "alpha:beta")
    assert sql(gw, "SELECT DATABASE()", SERVER="beta") == {
        "RESULT": {
            "HEADER": ["DATABASE()"],
            "ROWS": [["other"]],
            "TYPES": ["MYSQL_TYPE_VAR_STRING"],
        },
        "SERVER": "beta",
    }
    assert sql(gw, "SELECT DATABASE()", SERVER="alpha")["RESULT"]["ROWS"] == [["test"]]
    unknown = gw.db({"SQL": "SELECT 1", "SERVER": "gamma"})
    assert unknown.status == 400 and "alpha, beta" in unknown.json()["ERROR"]
    assert gw.db({"SQL": "SELECT 1"}).status == 400
    pool = gateway_factory("--mysql-config", str(cnf), "--servers", "alpha:beta")
    names = {sql(pool, "SELECT DATABASE()")["SERVER"] for _ in range(4)}
    assert names == {"alpha", "beta"}


def test_connection_killed_mid_statement_is_502_then_recovers(
    gateway: Gateway, mariadb: MariaDB
) -> None:
    """A connection killed while a statement runs answers 502 (may have been applied, errno 2013,
    SERVER); the broken connection is dropped and the next request succeeds."""
    import threading

    replies: list[Reply] = []
    worker = threading.Thread(
        target=lambda: replies.append(gateway.db({"SQL": "SELECT SLEEP(20) AS s"}))
    )
    worker.start()
    victim = ""
    deadline = time.monotonic() + 10
    while not victim and time.monotonic() < deadline:
        victim = mariadb.sql(
            "SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(20)%'"
        ).strip()
        time.sleep(0.05)
    assert victim, "the statement never reached the server"
    mariadb.sql(f"KILL CONNECTION {victim}")
    worker.join(15)
    reply = replies[0]
    assert reply.status == 502, reply
    answer = reply.json()
    assert answer["MYSQL_ERRNO"] in (2013, 2006) and answer["SERVER"] == "db1"
    assert "may or may not have been applied" in answer["ERROR"]
    for _ in range(5):
        assert exact(gateway.db({"SQL": "SELECT 1"}))["RESULT"]["ROWS"] == [[1]]
