"""Unit tests for the facts of gateway.sql.read_sql (read/write, determinism, session and
account effects, placeholders) and the thin gateway.classify wrappers over it."""

from __future__ import annotations

import attrs
import pytest

from gateway import classify as wrappers
from gateway.sql import (
    MAX_VERSION_GATES,
    NONDETERMINISTIC,
    READ,
    WRITE,
    WRITE_FUNCTIONS,
    SQLFacts,
    read_sql,
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
    # under NO_BACKSLASH_ESCAPES the string ends at \' and INTO @x is code
    ("SELECT 'a\\' INTO @x'", W),
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
    # comments only: the server answers with an empty OK and does nothing
    ("-- only a comment", R),
    ("/* only */", R),
    ("garbage here", W),
    ("`SELECT` 1", W),
    ("'SELECT 1'", W),
    ("(", W),
    (")SELECT 1", W),
    # the server refuses to lex it; what cannot be read is a write
    ("SELECT 'unterminated", W),
    ("SELECT 1; DELETE FROM t", W),
    ("SELECT 1; SELECT 2", R),
    # what attackers sent: text the server reads differently from Python's idea of spaces
    ("SELECT 1 --\u00a0x\n;INSERT INTO t VALUES(1)", W),
    ("SELECT 1 --\u3000x\n;DELETE FROM t", W),
    ("SELECT 1 --x; DELETE FROM t", W),
    ("SELECT 1 --\tx ; DELETE FROM t", R),
    ("SELECT 1 --\x01; DELETE FROM t", R),
    ("SELECT 1 --\x7f; DELETE FROM t", R),
    ("SELECT 1 # x\u2028; DELETE FROM t", R),
    ("SELECT 1 -- x\u0085; DELETE FROM t", R),
    ("SELECT 1 # x\r; DELETE FROM t", R),
    ("SELECT 1 # x\n; DELETE FROM t", W),
    ("SELECT * FROM t FOR\u00a0UPDATE", R),
    ("SELECT\u00a01", W),
    ("\u017felect 1", W),
    ("START/**/TRANSACTION", W),
    ("LOCK/**/TABLES t READ", W),
    ("/*!SET SESSION sql_select_limit=1*/", W),
    ("SET STATEMENT tx_read_only=0 FOR SELECT f()", W),
    ("SET STATEMENT transaction_read_only=0 FOR SELECT 1", W),
    ("SET STATEMENT autocommit=0 FOR SELECT 1", W),
    ("SET STATEMENT max_statement_time=1, optimizer_switch='x=on' FOR SELECT 1", R),
    ("SELECT 1; SET SESSION TRANSACTION READ WRITE; INSERT INTO t VALUES (1)", W),
    ("SELECT 1; COMMIT; SELECT 2", W),
    ("SELECT 'a\\'; DELETE FROM t -- '", W),
    ('SELECT "a\\"; DELETE FROM t -- "', W),
    ("SELECT 'a\\\\'; SELECT 2", R),
    ("SELECT `a\\`; DELETE FROM t", W),
    ("SELECT `a\\`", R),
    ("SELECT 1 /*!99999 ; DELETE FROM t */", W),
    ("SELECT 1 /*!50700 INTO @x */", W),
    ("SELECT 1 /*M! FOR UPDATE */", W),
    ("/*M!100000 SELECT 1 */", R),
    ("SELECT /*! 'a */ b' */", R),
    ("SELECT 1 /*! -- x */\n */", R),
    ("SELECT 1 /*!99999 ' */ ; DELETE FROM t; -- ' */", W),
    ("SELECT x'4142', X'41', b'01', B'1', N'n', _utf8mb4'u', 0x41, 0b1", R),
    ("SELECT x'414'", W),
    ("SELECT x'4;1'; SELECT 2", W),
    ("SELECT 1\x00", W),
    ("SELECT `a", W),
    ("SELECT 1 /* open", W),
    ("SELECT 1 /*! ; */", W),
    ("SELECT @'a;b', @`c;d`, @@session.sql_mode", R),
    ("SELECT t.for, t.update FROM t", R),
    ("SELECT 1 INTO @x", W),
    ("(SELECT @x := 1)", W),
    ("DELIMITER //", W),
    ("GRANT SELECT ON db.* TO reader", W),
    ("SELECT * FROM mysql.user", R),
    ("SELECT 1 /*!40000 /*!50000 , 2 */ , 3 */", R),
]


@pytest.mark.parametrize(("sql", "kind"), CASES)
def test_kind(sql: str, kind: str) -> None:
    """Each text of the table is a read only when the table says so."""
    assert (READ if read_sql(sql).read else WRITE) == kind


def test_case_table_is_large() -> None:
    """The table has at least 80 distinct cases."""
    assert len({sql for sql, _ in CASES}) == len(CASES) >= 80


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
        ("SELECT 1--1; DELETE FROM t", (R, W)),
        ("SELECT 1 --\u00a0x\n;INSERT INTO t VALUES(1)", (R, W)),
        ("SELECT 1; -- done", (R, R)),
        ("SELECT 1; /*!99999 DELETE FROM t */", (R, W)),
        ("SELECT 1; /*!40000 */", (R, R)),
    ],
)
def test_kinds_per_statement(sql: str, kinds: tuple[str, ...]) -> None:
    """One kind per statement, in order (a comment-only statement does nothing: a read)."""
    assert read_sql(sql).kinds == kinds


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", True),
        ("SELECT 1; SHOW TABLES; DESC t", True),
        ("SELECT 1; UPDATE t SET a = 1", False),
        ("SELECT * FROM t FOR UPDATE", False),
        ("", False),
        ("  \n", False),
        ("-- nothing", True),
    ],
)
def test_read(sql: str, expected: bool) -> None:
    """A read only when there is a statement and all statements are reads."""
    assert read_sql(sql).read is expected


@pytest.mark.parametrize(
    ("sql", "counts"),
    [
        ("", {"read": 0, "write": 0}),
        ("SELECT 1", {"read": 1, "write": 0}),
        ("DELETE FROM t", {"read": 0, "write": 1}),
        ("SELECT 1; INSERT INTO t VALUES (1); SELECT 2; SET @x = 1", {"read": 2, "write": 2}),
    ],
)
def test_kind_counts(sql: str, counts: dict[str, int]) -> None:
    """kind_counts counts both kinds and always has both keys."""
    assert read_sql(sql).kind_counts == counts


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
        ("SELECT @'x'", False),
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
        ("SELECT s.currval FROM dual", False),
        ("SELECT 1 /*! + RAND() */", False),
        ("SELECT 1 /*M!100000 + RAND() */", False),
        ("SELECT 1 /*!99999 + RAND() */", False),
        ("SELECT 1 /* RAND() */", True),
        ("SELECT 1 -- RAND()", True),
        ("SELECT 1 --\u00a0x, RAND()", False),
        ("SELECT 1 --\u00a0RAND()", True),  # \u00a0RAND is one name: a stored function
        ("SELECT 1; SELECT NOW()", False),
        ("SELECT 'a@b.c'", True),
        ("SELECT CONCAT('u', '@', 'h')", True),
        ("SELECT a FROM t WHERE b = %s AND c = %(c)s", True),
        ("", True),
    ],
)
def test_deterministic(sql: str, expected: bool) -> None:
    """Nondeterministic functions, their keyword forms and variables make a text uncacheable."""
    assert read_sql(sql).deterministic is expected


def test_user_at_host_is_not_a_variable() -> None:
    """'user'@'host' in account names is not a user variable."""
    facts = read_sql("SHOW GRANTS FOR 'u'@'localhost'")
    assert facts.deterministic and facts.read


@pytest.mark.parametrize(
    ("sql", "session"),
    [
        ("SELECT 1", False),
        ("SELECT * FROM t FOR UPDATE", False),
        ("INSERT INTO t VALUES (1)", False),
        ("UPDATE t SET a = 1", False),
        ("CREATE TABLE x (a INT)", False),
        ("ALTER TABLE x ADD b INT", False),
        ("DROP TABLE x", False),
        ("SELECT a INTO OUTFILE '/tmp/x' FROM t", False),
        ("SELECT f(1)", False),
        ("SELECT IS_USED_LOCK('a')", False),
        ("SELECT LAST_INSERT_ID()", False),
        ("COMMIT", False),
        ("ROLLBACK", False),
        ("COMMIT AND NO CHAIN", False),
        ("COMMIT NO RELEASE", False),
        ("FLUSH TABLES", False),
        ("SET STATEMENT max_statement_time=1 FOR SELECT 1", False),
        ("SET STATEMENT tx_read_only=0 FOR SELECT 1", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", False),
        ("EXPLAIN SELECT 1", False),
        ("", False),
        ("-- only a comment", False),
        ("BEGIN", True),
        ("BEGIN WORK", True),
        ("START TRANSACTION READ ONLY", True),
        ("START/**/TRANSACTION", True),
        ("SET autocommit=0", True),
        ("SET @x = 1", True),
        ("SET NAMES utf8mb4", True),
        ("SET SESSION TRANSACTION READ WRITE", True),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", True),
        ("XA START 'x'", True),
        ("COMMIT AND CHAIN", True),
        ("ROLLBACK AND CHAIN", True),
        ("COMMIT RELEASE", True),
        ("ROLLBACK TO SAVEPOINT s", True),
        ("SAVEPOINT s", True),
        ("RELEASE SAVEPOINT s", True),
        ("LOCK TABLES t READ", True),
        ("lock table t write", True),
        ("LOCK/**/TABLES t READ", True),
        ("UNLOCK TABLES", True),
        ("BACKUP LOCK t", True),
        ("BACKUP UNLOCK", True),
        ("LOCK INSTANCE FOR BACKUP", True),
        ("UNLOCK INSTANCE", True),
        ("FLUSH TABLES WITH READ LOCK", True),
        ("FLUSH TABLES t FOR EXPORT", True),
        ("SELECT GET_LOCK('a', 1)", True),
        ("DO RELEASE_LOCK('a')", True),
        ("SELECT RELEASE_ALL_LOCKS()", True),
        ("SELECT NEXTVAL(s)", True),
        ("SELECT NEXT VALUE FOR s", True),
        ("SELECT LAST_INSERT_ID(5)", True),
        ("USE db", True),
        ("PREPARE s FROM 'SELECT 1'", True),
        ("EXECUTE s", True),
        ("DEALLOCATE PREPARE s", True),
        ("DROP PREPARE s", True),
        ("HANDLER t OPEN", True),
        ("CREATE TEMPORARY TABLE x (a INT)", True),
        ("DROP TEMPORARY TABLE x", True),
        ("ALTER TEMPORARY TABLE x ADD b INT", True),
        ("INSERT INTO t VALUES (@x := 1)", True),
        ("SELECT a INTO @v FROM t", True),
        ("CALL p()", True),
        ("DO 1", True),
        ("SET STATEMENT max_statement_time=1 FOR SET @x = 1", True),
        ("EXPLAIN ANALYZE SELECT GET_LOCK('x', 0)", True),
        ("/*!SET SESSION sql_select_limit=1*/", True),
        ("SELECT 1 /*!99999 , GET_LOCK('x', 0) */", True),
        ("SELECT 1; SET SESSION TRANSACTION READ WRITE; INSERT INTO t VALUES (1)", True),
        ("WITH x SELECT 1", True),
        ("garbage here", True),
        ("DELIMITER //", True),
        ("SELECT 'unterminated", True),
        ("SELECT 'a\\'; SET @x = 1; -- '", True),
    ],
)
def test_session(sql: str, session: bool) -> None:
    """What may leave state on the connection, wherever and however it is written."""
    assert read_sql(sql).session is session


@pytest.mark.parametrize(
    ("sql", "account"),
    [
        ("SELECT 1", False),
        ("SHOW GRANTS", False),
        ("SELECT 'GRANT ALL'", False),
        ("SELECT * FROM mysql.user", False),
        ("CREATE TABLE user (a INT)", False),
        ("DROP TABLE role", False),
        ("EXECUTE s", False),
        ("GRANT ALL ON *.* TO u", True),
        ("grant select on db.* to 'u'@'%'", True),
        ("REVOKE ALL ON *.* FROM u", True),
        ("CREATE USER u", True),
        ("CREATE OR REPLACE USER u", True),
        ("ALTER USER u IDENTIFIED BY 'p'", True),
        ("RENAME USER a TO b", True),
        ("DROP USER IF EXISTS u", True),
        ("CREATE ROLE r", True),
        ("DROP ROLE r", True),
        ("SET PASSWORD FOR u = PASSWORD('x')", True),
        ("SET ROLE r", True),
        ("SET DEFAULT ROLE r FOR u", True),
        ("SET STATEMENT max_statement_time=1 FOR GRANT ALL ON *.* TO u", True),
        ("/*!GRANT ALL ON *.* TO u*/", True),
        ("SELECT 1; /*!80000 GRANT ALL ON *.* TO u */", True),
        ("SELECT 1; /*M!999999 DROP USER u */", True),
        ("SELECT 1 /*! ; GRANT ALL ON *.* TO u */", True),
        ("SELECT 'a\\'; GRANT ALL ON *.* TO u; -- '", True),
        ("INSERT INTO mysql.user VALUES ()", True),
        ("UPDATE `mysql`.global_priv SET priv = '{}'", True),
        ("PREPARE s FROM 'GRANT ALL ON *.* TO u'", True),
        ("EXECUTE IMMEDIATE 'GRANT ALL ON *.* TO u'", True),
    ],
)
def test_account(sql: str, account: bool) -> None:
    """Account and privilege management, in any reading of the text."""
    assert read_sql(sql).account is account


@pytest.mark.parametrize(
    ("sql", "placeholders", "names"),
    [
        ("SELECT 1", 0, ()),
        ("SELECT %s, %s", 2, ()),
        ("SELECT %s+%s FROM t WHERE a = %s", 3, ()),
        ("SELECT %(a)s, %(b)s, %(a)s", 0, ("a", "b")),
        ("SELECT %s, %(a)s", -1, ("a",)),
        ("SELECT '%s', \"%s\", `%s` /* %s */ -- %s\n", 0, ()),
        ("SELECT 5 %% 2, %s", 1, ()),
        ("SELECT %%s", 0, ()),
        ("SELECT %d, %(1x)s", 0, ()),
        ("SELECT %s; SELECT %s", 2, ()),
    ],
)
def test_placeholders(sql: str, placeholders: int, names: tuple[str, ...]) -> None:
    """Placeholders in code are counted; quotes and comments hold none; %% is a literal %."""
    facts = read_sql(sql)
    assert (facts.placeholders, facts.names) == (placeholders, names)


def test_boundaries_that_depend_on_the_reading_make_everything_a_write() -> None:
    """Where another server or sql_mode would split the text elsewhere, nothing is a read."""
    for sql in (
        "SELECT 1 /*!99999 ' */ ; SELECT 2; -- ' */",  # MySQL >= 9.99.99 runs the comment
        "SELECT 'a\\'; SELECT 2; -- '",  # NO_BACKSLASH_ESCAPES ends the string at \\'
    ):
        facts = read_sql(sql)
        assert facts.kinds and set(facts.kinds) == {WRITE}, sql
        assert facts.session and not facts.deterministic and not facts.read, sql


def test_too_many_version_gates_is_unreadable() -> None:
    """A text naming more version gates than are read every way is not a read."""
    gates = " ".join(f"/*!{40000 + k} , {k} */" for k in range(MAX_VERSION_GATES + 1))
    assert read_sql("SELECT 1 /*!40000 , 0 */").read
    facts = read_sql(f"SELECT 1 {gates}")
    assert not facts.read and facts.session


def test_facts_are_frozen_and_remembered() -> None:
    """The facts are an immutable value, and one text is read once."""
    facts = read_sql("SELECT 1 /* remembered */")
    assert isinstance(facts, SQLFacts)
    assert read_sql("SELECT 1 /* remembered */") is facts
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        facts.read = False  # type: ignore[misc]
    long = "SELECT 1" + " " * 5000
    assert read_sql(long) == read_sql(long) and read_sql(long) is not read_sql(long)


def test_unknown_dialect() -> None:
    """An unknown dialect is an error, not a guess."""
    with pytest.raises(ValueError, match="dialect"):
        read_sql("SELECT 1", "oracle")


def test_sqlite_dialect_kinds() -> None:
    """The SQLite scanner feeds the same rule."""
    facts = read_sql("SELECT 1 # not a comment; SELECT 2 -- x; DELETE FROM t", "sqlite")
    assert facts.kinds == (R, R) and facts.read
    assert read_sql("SELECT :a, ?, @b, $c", "sqlite").deterministic
    assert read_sql("PRAGMA foreign_keys = ON", "sqlite").session


def test_name_sets() -> None:
    """The published name sets hold upper-case names; write functions are nondeterministic."""
    assert {"NOW", "RAND", "GET_LOCK", "CURRENT_TIMESTAMP"} <= NONDETERMINISTIC
    assert WRITE_FUNCTIONS <= NONDETERMINISTIC
    assert all(name == name.upper() for name in NONDETERMINISTIC)


def test_classify_wrappers_read_the_same_facts() -> None:
    """gateway.classify still offers its names, each wrapping read_sql."""
    sql = "SELECT NOW(); DELETE FROM t"
    assert wrappers.classify(sql) == (R, W) == read_sql(sql).kinds
    assert wrappers.classify_statement(sql) == W
    assert wrappers.classify_statement("SELECT 1") == R
    assert wrappers.classify_statement("") == W
    assert wrappers.is_read_only(sql) is False and wrappers.is_read_only("SELECT 1") is True
    assert wrappers.count_kinds(sql) == {"read": 1, "write": 1}
    assert wrappers.is_deterministic(sql) is False
    assert (wrappers.READ, wrappers.WRITE, wrappers.NONDETERMINISTIC) == (
        READ,
        WRITE,
        NONDETERMINISTIC,
    )
