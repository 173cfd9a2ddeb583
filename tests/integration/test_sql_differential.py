"""Differential test of gateway.sql against a real MariaDB: the scanner must split statements
where the server does, and what it calls a read (or free of session effects) must change
nothing on the server.

Texts are generated from a seeded ``random.Random``: small valid statements (reads, writes,
statements that change the session) joined with ``;`` and decorated between their words with
every kind of separator the server knows (ASCII whitespace, ``/* */``, hints, line comments
ended by each ASCII space or control character, executable comments with and without version
gates), plus whole statements built to catch a scanner that reads text differently from the
server: ``--`` followed by a Unicode space (code, not a comment), ``#`` and ``--`` comments
with Unicode line breaks inside (they end only at LF), fullwidth semicolons and minus signs,
strings whose end depends on ``NO_BACKSLASH_ESCAPES``, backticks with backslashes, ``;`` inside
skipped executable comments. A few texts are invalid on purpose (empty statements, Unicode
spaces between keywords).

Properties, checked on one connection:

1. *Count*: when the server runs the whole text, it returns exactly as many results as the
   scanner counts statements; when it stops with an error at statement k (k-1 results), the
   scanner counts at least k statements.
2. *Reads change nothing*: after a text the scanner calls a read, the table data and the
   session (transaction, locks, user variables, temporary tables, prepared statements,
   session variables) are as before.
3. *No session effect*: after a text the scanner does not call ``session``, the session is as
   before (data may change).

After any text that changed the session, ``COM_CHANGE_USER`` resets it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.sql import read_sql
from tests.servers import MariaDB

MySQLdb = pytest.importorskip("MySQLdb")
CLIENT = pytest.importorskip("MySQLdb.constants.CLIENT")

SEED = 20261201
TEXTS = 5000
DATABASE = "sqldiff"

# Characters Python calls whitespace (str.isspace, regex \s) and MariaDB does not, and
# lookalikes of '-' and ';'. U+180E is no longer a space to Python but was once.
UNICODE_SPACES = [
    "\u00a0",
    *[chr(c) for c in range(0x2000, 0x200B)],
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
    "\u0085",
    "\u1680",
    "\ufeff",
    "\u180e",
]
LOOKALIKES = ["\u2212", "\uff0d", "\ufe63", "\uff1b", "\u037e", "\u2010"]
UNICODE_LINE_BREAKS = ["\u2028", "\u2029", "\u0085", "\r", "\x0b", "\x0c", "\x1c", "\x1e"]
ASCII_CONTROLS = ["\t", "\x01", "\x0b", "\x0c", "\r", "\x1f", "\x7f", "\x1b"]

# Separators between the words of a statement: neutral to the server.
SEPARATORS = [
    " ",
    " ",
    " ",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "/**/",
    " /* ; */ ",
    "/* -- ' \" ` ; */",
    " /*+ hint ; */ ",
    "/*/ x */",
    " -- c ; '\n",
    " --\tc;\n",
    *[f" --{ctl}c ; \n" for ctl in ASCII_CONTROLS],
    " --\n",
    " # c ; ' \n",
    "#\n",
    " /*!*/ ",
    " /*!50000 */ ",
    " /*!999999 ; ' \" */ ",
    " /*!80000 ; x */ ",
    " /*!99999 /* nested ; */ ; */ ",
    " /*M!*/ ",
    " /*M!100000 */ ",
    " /*M!999999 ; */ ",
]

# Statements as words joined by "|"; each "|" becomes a separator. Those marked "plain" get
# whitespace only (their own comments must not hold another comment).
READS = [
    "SELECT|1",
    "SELECT|'a;b'",
    'SELECT|"x;y"',
    "SELECT|`c`|FROM|(SELECT|1|AS|`c`)|AS|q",
    "SELECT|v|FROM|t|WHERE|id|=|1",
    "SELECT|COUNT(*)|FROM|t",
    "SHOW|TABLES",
    "SELECT|'it''s'",
    "SELECT|'a\\\\b'",
    'SELECT|"a""b"',
    "SELECT|'--',|'#',|'/*',|'*/',|'/*!'",
    "VALUES|(1)",
    "(SELECT|1)|UNION|(SELECT|2)",
    "WITH|x|AS|(SELECT|1|AS|a)|SELECT|a|FROM|x",
    "SELECT|N'n',|_utf8mb4'u',|X'41',|B'01',|0x41,|0b1",
    "SELECT|@x",
    "SELECT|@@session.sql_mode",
    "SELECT|@'a;b',|@`c;d`",
    "DESCRIBE|t",
    "EXPLAIN|SELECT|*|FROM|t",
    "SELECT|5-1,|6/2,|7--1,|1--1",
    "SELECT|t.v|FROM|t",
    "SELECT|'a'|'b'",
    "SELECT|1e5,|.5,|1.5e3,|1.",
    "SET|STATEMENT|max_statement_time=10|FOR|SELECT|1",
    "SELECT|1|AS|`a``b`",
    "SELECT|IS_FREE_LOCK('k')",
    "SELECT|NOW()",
]
WRITES = [
    "DO|1",
    "SET|@x|=|1",
    "SET|@x|=|'a;b'",
    "INSERT|INTO|t|(v)|VALUES|(1)",
    "UPDATE|t|SET|v|=|v|+|1|WHERE|id|=|1",
    "DELETE|FROM|t|WHERE|id|<|0",
    "SELECT|@y|:=|2",
    "SELECT|1|INTO|@z",
    "DO|GET_LOCK('k',|0)",
    "SELECT|RELEASE_LOCK('k')",
    "CREATE|TEMPORARY|TABLE|IF|NOT|EXISTS|probe|(a|INT)",
    "SET|SESSION|sql_select_limit|=|5",
    "START|TRANSACTION",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "LOCK|TABLES|t|READ",
    "UNLOCK|TABLES",
    "USE|sqldiff",
    "SET|STATEMENT|tx_read_only=0|FOR|SELECT|1",
    "SET|NAMES|utf8mb4",
    "PREPARE|s|FROM|'SELECT 1'",
    "SELECT|*|FROM|t|FOR|UPDATE",
    "SELECT|*|FROM|t|LOCK|IN|SHARE|MODE",
    "SET|SESSION|TRANSACTION|READ|WRITE",
    "SET|autocommit|=|1",
]
PLAIN = [
    "SELECT v FROM t /*! FOR UPDATE */",
    "/*!SET SESSION sql_select_limit=3*/",
    "/*!40101 SELECT 1 */",
    "SELECT 1 /*!50000 , 2 */",
    "SELECT 1 /*M!100000 , 2 */",
    "SELECT 1 /*!99999 /* x */ , 2 */",
    "SELECT 1 /*!99999 /*/ x ; */ , 2 */ , 3",
    "SELECT 1 /*!100000 /* c */ , 2 */",
    "SELECT 1 /*!*/",
    "SELECT 1 /*!999999 ' */",
    "SELECT 1 /*!99999 -- x */",
    "SELECT 1 /*! -- x */\n , 2 */",
    "SELECT 1 /*!99999 ; SELECT 2 */",
    "SELECT 1 /*M!999999 ; SELECT 2 */",
    "SELECT 1 /*!50700 ; DO 2 */",
    "SELECT 1 /*!80000 ; SET @x = 1 */",
    "SELECT 'a\\'; SELECT 2 -- '",
    'SELECT "a\\"; SELECT 2 -- "',
    "SELECT 'a\\\\'; SELECT 2",
    "SELECT 1 AS `a\\`",
    "SELECT 1 AS `;`",
    "SELECT 1 AS `a``;b`",
    'SELECT "a\\";b"',
    "SELECT \\N",
    "SELECT /*!1234*/",
    "SELECT /*!0000001 */",
    "SELECT /*! 'a */ b' */",
    "SELECT 1 /*!99999 'x */ ; SELECT 2 -- '",
    'SELECT 1 /*M!999999 " */ ; SELECT 2 -- "',
    "START/**/TRANSACTION",
    "LOCK/**/TABLES t READ",
    "SELECT 1 --\tc ; DO 2\n",
    "SELECT 1 -- \r; DO 2\n",
    "SELECT 1 #\r; DO 2\n",
    *[f"SELECT 1 --{space}c FROM u" for space in UNICODE_SPACES + LOOKALIKES],
    *[f"SELECT 1 # c{brk}; DO 2\n" for brk in UNICODE_LINE_BREAKS],
    *[f"SELECT 1 -- c{brk}; DO 2\n" for brk in UNICODE_LINE_BREAKS],
    *[f"SELECT 1 AS a{char}b" for char in UNICODE_SPACES + LOOKALIKES],
    *[f"SELECT 1 AS a{char}SELECT" for char in LOOKALIKES],
]
# Invalid on purpose: the server refuses them; only the count property applies.
INVALID = [
    *[f"SELECT{space}1" for space in UNICODE_SPACES[:4]],
    "SELECT 1 --\u00a0x",
    "SELECT 'unterminated",
    "SELECT 1 /* open",
    "SELECT x'414'",
    "SELECT `a",
    "SELECT 1 /*! ; */",
    "SELECT 1 /*!40000 /*!50000 , 2 */ , 3 */",
    "SELECT 1 */",
    "SELECT x'4;1'; SELECT 2",
    "DELIMITER //",
    "SELECT 1;\x00SELECT 2",
]


def _statement(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.42:
        template = rng.choice(READS)
    elif roll < 0.72:
        template = rng.choice(WRITES)
    elif roll < 0.97:
        return rng.choice(PLAIN)
    else:
        return rng.choice(INVALID)
    words = template.split("|")
    out = [words[0]]
    for word in words[1:]:
        out.append(rng.choice(SEPARATORS) if rng.random() < 0.3 else " ")
        out.append(word)
    return "".join(out)


def _text(rng: random.Random) -> str:
    parts = []
    if rng.random() < 0.1:
        parts.append(rng.choice(SEPARATORS))
    for k in range(rng.choice((1, 1, 2, 2, 3, 4))):
        if k:
            parts.append(rng.choice((";", ";", "; ", " ;\n", ";/* x */", "; -- c\n", ";;")))
        parts.append(_statement(rng))
    tail = rng.random()
    if tail < 0.15:
        parts.append(";")
    elif tail < 0.2:
        parts.append("; -- done")
    elif tail < 0.25:
        parts.append(";\n\t ")
    elif tail < 0.27:
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts)


def texts(seed: int = SEED, count: int = TEXTS) -> Iterator[str]:
    """The generated texts, the same for a seed every time."""
    rng = random.Random(seed)
    for _ in range(count):
        yield _text(rng)


# The state a text may change. One query; an error (e.g. under LOCK TABLES) counts as changed.
SESSION_PROBE = (
    "@@in_transaction",
    "@@autocommit",
    "DATABASE()",
    "@@session.sql_mode",
    "@@session.sql_select_limit",
    "@@session.tx_read_only",
    "@@session.tx_isolation",
    "@@session.character_set_client",
    "@@session.time_zone",
    "IS_USED_LOCK('k')",
    "(SELECT COUNT(*) FROM information_schema.USER_VARIABLES)",
    "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
    " WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT')",
    f"(SELECT COUNT(*) FROM {DATABASE}.probe)",
)
DATA_PROBE = (
    f"(SELECT COUNT(*) FROM {DATABASE}.t)",
    f"(SELECT COALESCE(SUM(v), 0) FROM {DATABASE}.t)",
    f"(SELECT COUNT(*) FROM {DATABASE}.u)",
)
PROBE = "SELECT " + ", ".join(SESSION_PROBE + DATA_PROBE)


def _state(conn: Any) -> tuple[Any, Any]:
    """(session state, data state) now; an error is a state of its own."""
    try:
        conn.query(PROBE)
        row = conn.store_result().fetch_row()[0]
    except MySQLdb.Error as e:
        return ("error", e.args[0]), ("error", e.args[0])
    return row[: len(SESSION_PROBE)], row[len(SESSION_PROBE) :]


def _run(conn: Any, text: str) -> tuple[int, int | None]:
    """Run a text; (results before the first error, the error number or None)."""
    results = 0
    try:
        conn.query(text)
        while True:
            conn.store_result()
            results += 1
            if conn.next_result() != 0:
                return results, None
    except MySQLdb.Error as e:
        return results, e.args[0]


@pytest.fixture(scope="module")
def conn(mariadb: MariaDB) -> Iterator[Any]:
    """One root connection with multi statements, on a database of its own."""
    columns = ", ".join(f"`{c}c` INT" for c in UNICODE_SPACES + LOOKALIKES)
    mariadb.sql(
        f"DROP DATABASE IF EXISTS {DATABASE}; CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4;"
        f"CREATE TABLE {DATABASE}.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB;"
        f"INSERT INTO {DATABASE}.t (v) VALUES (1), (2), (3);"
        f"CREATE TABLE {DATABASE}.probe (a INT); INSERT INTO {DATABASE}.probe VALUES (1);"
        f"CREATE TABLE {DATABASE}.u ({columns});"
        f"INSERT INTO {DATABASE}.u VALUES ({', '.join('1' for _ in UNICODE_SPACES + LOOKALIKES)});"
    )
    connection = MySQLdb.connect(
        unix_socket=mariadb.socket,
        user="root",
        db=DATABASE,
        charset="utf8mb4",
        client_flag=CLIENT.MULTI_STATEMENTS,
        autocommit=True,  # as a new session has it (mysqlclient turns it off otherwise)
    )
    yield connection
    connection.close()
    mariadb.sql(f"DROP DATABASE IF EXISTS {DATABASE}")


def test_generation_is_deterministic() -> None:
    """The same seed gives the same texts."""
    assert list(texts(7, 50)) == list(texts(7, 50))


def test_scanner_agrees_with_mariadb(conn: Any) -> None:
    """Statement counts match the server; reads and session-free texts change nothing."""
    began = time.monotonic()
    baseline, data = _state(conn)
    assert baseline[0] != "error", baseline
    failures: list[str] = []
    valid = reads = quiet = resets = 0
    for text in texts():
        facts = read_sql(text)
        results, error = _run(conn, text)
        counted = len(facts.statements)
        if error is None:
            valid += 1
            if results != counted:
                failures.append(f"count: server {results}, scanner {counted}: {text!r}")
        elif results + 1 > counted:
            failures.append(
                f"count: server ran {results} then error {error}, scanner {counted}: {text!r}"
            )
        session, after = _state(conn)
        if facts.read:
            reads += 1
            if (session, after) != (baseline, data):
                failures.append(f"read changed {session} {after} (was {baseline} {data}): {text!r}")
        if not facts.session:
            quiet += 1
            if session != baseline:
                failures.append(f"session changed to {session} (was {baseline}): {text!r}")
        if session != baseline:
            conn.change_user("root", "", DATABASE)
            resets += 1
            session, after = _state(conn)
            assert session == baseline, (text, session, baseline)
        data = after
        if len(failures) >= 20:
            break
    elapsed = time.monotonic() - began
    summary = (
        f"{TEXTS} texts in {elapsed:.1f} s: {valid / TEXTS:.0%} valid, {reads} reads, "
        f"{quiet} without session effects, {resets} session resets"
    )
    print(summary)
    assert not failures, summary + "\n" + "\n".join(failures)
    assert valid / TEXTS > 0.6, summary
