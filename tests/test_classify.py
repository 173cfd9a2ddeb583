"""Unit tests for gateway.classify: read/write classification and determinism of SQL text."""

from __future__ import annotations

import pytest

from gateway.classify import (
    NONDETERMINISTIC,
    READ,
    WRITE,
    WRITE_FUNCTIONS,
    classify,
    classify_statement,
    count_kinds,
    is_deterministic,
    is_read_only,
)

R, W = READ, WRITE

CASES = [
    # plain reads, case, comments
    ("SELECT 1", R),
    ("select * from t where a = 1", R),
    ("SeLeCt a, b FROM t ORDER BY a LIMIT 10", R),
    ("  \n\tSELECT 1  ", R),
    ("-- a comment\nSELECT 1", R),
    ("# hash comment\nSELECT 1", R),
    ("/* block */ SELECT /* inner */ 1", R),
    ("/*+ MAX_EXECUTION_TIME(1000) */ SELECT 1", R),
    ("SELECT /*+ BKA(t) */ * FROM t", R),
    ("SELECT 1 -- FOR UPDATE", R),
    ("SELECT 1 # INTO OUTFILE '/tmp/x'", R),
    ("SELECT 1 /* FOR UPDATE */", R),
    ("SELECT 1--1", R),
    # quotes never count
    ("SELECT 'FOR UPDATE'", R),
    ('SELECT "LOCK IN SHARE MODE"', R),
    ("SELECT 'it''s INTO @x'", R),
    ("SELECT 'a\\' INTO @x'", R),
    ("SELECT `into` FROM t", R),
    ("SELECT `for` `update` FROM t", R),
    ("SELECT 'SLEEP(1)', 'GET_LOCK(1)'", R),
    ("SELECT t.into FROM t", R),
    ("SELECT sleep FROM t", R),
    ("SELECT a FROM t WHERE name = 'DELETE FROM t'", R),
    # other read heads
    ("SHOW TABLES", R),
    ("show full processlist", R),
    ("SHOW CREATE TABLE t", R),
    ("SHOW GRANTS FOR CURRENT_USER", R),
    ("SHOW VARIABLES WHERE SLEEP(1)", W),
    ("DESC t", R),
    ("describe t a", R),
    ("DESCRIBE SELECT * FROM t", R),
    ("EXPLAIN SELECT * FROM t", R),
    ("explain format=json select * from t", R),
    ("EXPLAIN EXTENDED SELECT 1", R),
    ("EXPLAIN DELETE FROM t WHERE a = 1", R),
    ("EXPLAIN UPDATE t SET a = 1", R),
    ("EXPLAIN SELECT * FROM t FOR UPDATE", R),
    ("EXPLAIN FOR CONNECTION 12", R),
    ("EXPLAIN SELECT * FROM t WHERE a = (SELECT GET_LOCK('x', 0))", W),
    ("EXPLAIN FORMAT=JSON INTO @plan SELECT 1", W),
    ("EXPLAIN", W),
    ("EXPLAIN ANALYZE SELECT * FROM t", R),
    ("EXPLAIN ANALYZE FORMAT=TREE SELECT * FROM t", R),
    ("EXPLAIN ANALYZE DELETE FROM t", W),
    ("explain analyze update t set a = 1", W),
    ("EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", W),
    ("DESC ANALYZE DELETE FROM t", W),
    ("ANALYZE SELECT * FROM t", W),
    ("ANALYZE TABLE t", W),
    ("VALUES ROW(1, 2), ROW(3, 4)", R),
    ("VALUES (1, 2)", R),
    ("TABLE t", R),
    ("TABLE t ORDER BY a LIMIT 1", R),
    # CTEs, unions, subqueries
    ("WITH x AS (SELECT 1) SELECT * FROM x", R),
    (
        "with recursive x (n) as (select 1 union all select n + 1 from x where n < 5) select * from x",
        R,
    ),
    ("WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b", R),
    ("WITH `a b` AS (SELECT 1) (SELECT * FROM `a b`)", R),
    ("WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)", W),
    ("WITH x AS (SELECT 1) UPDATE t SET a = 1", W),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", W),
    ("WITH x AS (SELECT a FROM t FOR UPDATE) SELECT * FROM x", W),
    ("WITH x SELECT 1", W),
    ("WITH RECURSIVE x AS (SELECT 1) CYCLE a RESTRICT SELECT * FROM x", R),
    ("SELECT 1 UNION SELECT 2", R),
    ("(SELECT 1) UNION (SELECT 2)", R),
    ("((SELECT a FROM t)) UNION ALL (SELECT b FROM u) ORDER BY 1", R),
    ("(SELECT 1) UNION (SELECT a FROM t FOR UPDATE)", W),
    ("SELECT * FROM t WHERE a IN (SELECT b FROM u)", R),
    ("SELECT * FROM (SELECT a FROM t) AS d", R),
    ("SELECT * FROM t WHERE a IN (SELECT b FROM u FOR SHARE)", W),
    ("(DELETE FROM t)", W),
    # locking reads and INTO
    ("SELECT * FROM t FOR UPDATE", W),
    ("select * from t for update", W),
    ("SELECT *\nFROM t\nWHERE a = 1\nFOR\n  UPDATE", W),
    ("SELECT * FROM t FOR /* c */ UPDATE SKIP LOCKED", W),
    ("SELECT * FROM t FOR UPDATE OF t NOWAIT", W),
    ("SELECT * FROM t FOR SHARE", W),
    ("SELECT * FROM t LOCK IN SHARE MODE", W),
    ("select * from t lock\nin share mode", W),
    ("SELECT a INTO @v FROM t", W),
    ("SELECT a FROM t INTO @v", W),
    ("SELECT * INTO OUTFILE '/tmp/t.csv' FROM t", W),
    ("SELECT a FROM t INTO DUMPFILE '/tmp/x'", W),
    ("SELECT @x := 1", W),
    ("SELECT SUBSTRING(a FROM 1 FOR 2) FROM t", R),
    ("SELECT * FROM t FOR SYSTEM_TIME AS OF '2020-01-01'", R),
    # executable comments
    ("SELECT 1 /*! FOR UPDATE */", W),
    ("SELECT * FROM t /*!50000 FOR UPDATE */", W),
    ("SELECT * FROM t /*M!100000 LOCK IN SHARE MODE */", W),
    ("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", R),
    ("/*!40000 SELECT 1 */", R),
    ("/*!99999 SELECT 1 */ DELETE FROM t", W),
    ("/*!40101 SET NAMES utf8 */", W),
    # functions
    ("SELECT GET_LOCK('x', 10)", W),
    ("select release_lock('x')", W),
    ("SELECT RELEASE_ALL_LOCKS()", W),
    ("SELECT IS_FREE_LOCK('x')", W),
    ("SELECT IS_USED_LOCK('x')", W),
    ("SELECT SLEEP(1)", W),
    ("SELECT sleep (1)", W),
    ("SELECT BENCHMARK(1000, MD5('a'))", W),
    ("SELECT * FROM t WHERE a = (SELECT SLEEP(1))", W),
    ("SELECT NEXTVAL(s)", W),
    ("SELECT NEXT VALUE FOR s", W),
    ("SELECT s.nextval FROM dual", W),
    ("SELECT SETVAL(s, 10)", W),
    ("SELECT LASTVAL(s)", R),
    ("SELECT PREVIOUS VALUE FOR s", R),
    ("SELECT LAST_INSERT_ID()", R),
    ("SELECT last_insert_id( )", R),
    ("SELECT LAST_INSERT_ID(5)", W),
    ("SELECT LAST_INSERT_ID(a + 1) FROM t", W),
    ("SELECT MASTER_POS_WAIT('log.000001', 4)", W),
    ("SELECT MASTER_GTID_WAIT('0-1-1')", W),
    ("SELECT LOAD_FILE('/etc/passwd')", W),
    ("SELECT my_function(a) FROM t", R),
    ("SELECT db.sleep(1)", R),
    ("SELECT NOW(), RAND(), UUID()", R),
    # writes and everything else
    ("INSERT INTO t VALUES (1)", W),
    ("REPLACE INTO t VALUES (1)", W),
    ("UPDATE t SET a = 1", W),
    ("DELETE FROM t", W),
    ("LOAD DATA INFILE 'x' INTO TABLE t", W),
    ("CREATE TABLE t (a INT)", W),
    ("CREATE TABLE t AS SELECT 1", W),
    ("INSERT INTO t SELECT * FROM u", W),
    ("DROP TABLE t", W),
    ("ALTER TABLE t ADD b INT", W),
    ("TRUNCATE t", W),
    ("GRANT SELECT ON *.* TO 'u'@'h'", W),
    ("FLUSH TABLES", W),
    ("KILL 12", W),
    ("SET @x = 1", W),
    ("SET NAMES utf8mb4", W),
    ("set autocommit = 0", W),
    ("CALL p()", W),
    ("DO 1", W),
    ("DO RELEASE_LOCK('x')", W),
    ("USE db", W),
    ("BEGIN", W),
    ("START TRANSACTION READ ONLY", W),
    ("COMMIT", W),
    ("ROLLBACK", W),
    ("LOCK TABLES t READ", W),
    ("UNLOCK TABLES", W),
    ("HANDLER t OPEN", W),
    ("HELP 'select'", W),
    ("SET STATEMENT max_statement_time=1 FOR SELECT * FROM t", R),
    ("SET STATEMENT max_statement_time=1, sql_mode='' FOR DELETE FROM t", W),
    ("SET STATEMENT max_statement_time=1 FOR SELECT * FROM t FOR UPDATE", W),
    ("SET STATEMENT x=1", W),
    # empty and garbage
    ("", W),
    ("   ", W),
    ("-- only a comment", W),
    ("/* only */", W),
    ("garbage here", W),
    ("`SELECT` 1", W),
    ("'SELECT 1'", W),
    ("(", W),
    (")SELECT 1", W),
    ("SELECT 'unterminated", R),
    ("SELECT 1; DELETE FROM t", W),
    ("SELECT 1; SELECT 2", R),
]


@pytest.mark.parametrize(("statement", "kind"), CASES)
def test_classify_statement(statement: str, kind: str) -> None:
    """Each statement of the table gets its kind."""
    assert classify_statement(statement) == kind


def test_case_table_is_large() -> None:
    """The table has at least 80 distinct cases."""
    assert len({statement for statement, _ in CASES}) == len(CASES) >= 80


@pytest.mark.parametrize(
    ("sql", "kinds"),
    [
        ("", ()),
        (" ; ;", ()),
        ("SELECT 1", (R,)),
        ("SELECT 1; SELECT 2;", (R, R)),
        ("SELECT 1; INSERT INTO t VALUES (1); SHOW TABLES", (R, W, R)),
        ("SELECT 'a;b'; DELETE FROM t", (R, W)),
        ("BEGIN; SELECT * FROM t FOR UPDATE; COMMIT", (W, W, W)),
        ("SELECT 1 -- ; DELETE FROM t\n; SELECT 2", (R, R)),
        ("SELECT 1--1; DELETE FROM t", (W,)),
    ],
)
def test_classify_many(sql: str, kinds: tuple[str, ...]) -> None:
    """classify gives one kind per statement, in order."""
    assert classify(sql) == kinds


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", True),
        ("SELECT 1; SHOW TABLES; DESC t", True),
        ("SELECT 1; UPDATE t SET a = 1", False),
        ("SELECT * FROM t FOR UPDATE", False),
        ("", False),
        ("-- nothing", False),
    ],
)
def test_is_read_only(sql: str, expected: bool) -> None:
    """Read-only only when there is a statement and all statements are reads."""
    assert is_read_only(sql) is expected


@pytest.mark.parametrize(
    ("sql", "counts"),
    [
        ("", {"read": 0, "write": 0}),
        ("SELECT 1", {"read": 1, "write": 0}),
        ("DELETE FROM t", {"read": 0, "write": 1}),
        ("SELECT 1; INSERT INTO t VALUES (1); SELECT 2; SET @x = 1", {"read": 2, "write": 2}),
    ],
)
def test_count_kinds(sql: str, counts: dict[str, int]) -> None:
    """count_kinds counts both kinds and always has both keys."""
    assert count_kinds(sql) == counts


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t WHERE b = 1", True),
        ("SELECT NOW()", False),
        ("select now()", False),
        ("SELECT CURRENT_TIMESTAMP", False),
        ("SELECT current_date", False),
        ("SELECT * FROM t WHERE d > CURDATE() - INTERVAL 1 DAY", False),
        ("SELECT UTC_TIMESTAMP", False),
        ("SELECT * FROM t WHERE a IN (SELECT b FROM u ORDER BY RAND())", False),
        ("SELECT @x", False),
        ("SELECT @@version", False),
        ("SELECT @@session.time_zone", False),
        ("SELECT @`x`", False),
        ("SELECT now_col FROM t", True),
        ("SELECT 'NOW()'", True),
        ("SELECT `now`() FROM t", True),
        ("SELECT user FROM mysql.user", True),
        ("SELECT USER()", False),
        ("SELECT UNIX_TIMESTAMP()", False),
        ("SELECT UNIX_TIMESTAMP('2020-01-01')", True),
        ("SELECT LAST_INSERT_ID()", False),
        ("SELECT UUID()", False),
        ("SELECT NEXT VALUE FOR s", False),
        ("SELECT PREVIOUS VALUE FOR s", False),
        ("SELECT 1 /*! + RAND() */", False),
        ("SELECT 1 /* RAND() */", True),
        ("SELECT 1; SELECT NOW()", False),
        ("SELECT 'a@b.c'", True),
        ("SELECT CONCAT('u', '@', 'h')", True),
        ("", True),
    ],
)
def test_is_deterministic(sql: str, expected: bool) -> None:
    """Nondeterministic functions, their keyword forms and variables make a text uncacheable."""
    assert is_deterministic(sql) is expected


def test_user_at_host_is_not_a_variable() -> None:
    """'user'@'host' in account names is not a user variable."""
    assert is_deterministic("SHOW GRANTS FOR 'u'@'localhost'")
    assert classify_statement("SHOW GRANTS FOR 'u'@'localhost'") == READ


def test_name_sets() -> None:
    """The published name sets hold upper-case names; write functions are nondeterministic."""
    assert {"NOW", "RAND", "GET_LOCK", "CURRENT_TIMESTAMP"} <= NONDETERMINISTIC
    assert WRITE_FUNCTIONS <= NONDETERMINISTIC
    assert all(name == name.upper() for name in NONDETERMINISTIC)
