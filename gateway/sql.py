"""Reading SQL (pure): one scanner per dialect, run once per request text, and the facts the
rest of the gateway needs, as one immutable :class:`SQLFacts`.

``read_sql(sql, dialect)`` is the only entry point (memoized for texts up to 4096 characters);
``to_qmark`` rewrites placeholders for the SQLite demo backend. The scanners are hand-written
character state machines that follow the servers' own lexers -- MariaDB's ``sql/sql_lex.cc``
(``lex_one_token``, ``get_text``, ``consume_comment``) and SQLite's ``tokenize.c`` and
``complete.c`` -- not regular expressions over the text. A differential test holds the MariaDB
scanner to a real server (``tests/test_sql_differential.py``).

**The facts** (see :class:`SQLFacts`):

- ``statements``: the text of each statement, split where the server splits, each stripped of
  the server's whitespace at both ends. Pieces holding only whitespace are dropped (a trailing
  ``;`` is fine). In the ``mysql`` dialect a piece holding only comments *is* a statement: the
  server answers it with an empty OK, one result more (``SELECT 1; -- done`` gives two results);
  in the ``sqlite`` dialect it is dropped (SQLite runs nothing for it). A compound statement
  (``BEGIN NOT ATOMIC ... END``, ``IF ... END IF``, a ``CREATE PROCEDURE`` body) is one
  statement to MariaDB but is split at each ``;`` here: more pieces than the server's, never
  fewer, and its first piece is a write.
- ``kinds``: ``READ`` or ``WRITE`` per statement (the rule below); ``read``: there is at least
  one statement and all are reads.
- ``deterministic``: no call of a `NONDETERMINISTIC` function (or its keyword form such as
  ``CURRENT_TIMESTAMP``; ``UNIX_TIMESTAMP`` only without argument), no sequence read
  (``NEXT``/``PREVIOUS VALUE FOR``, ``seq.nextval``), no user (``@x``) or system (``@@x``)
  variable. Stored functions are not looked into. Only a deterministic read may be cached.
- ``session``: some statement may leave state on the connection that outlives the request:
  ``BEGIN``/``START TRANSACTION``, any ``SET`` (``SET STATEMENT ... FOR s`` lasts one statement:
  it counts as ``s`` does), ``XA``, ``SAVEPOINT``/``RELEASE SAVEPOINT``, ``COMMIT``/``ROLLBACK``
  with ``AND CHAIN``, ``RELEASE`` or ``TO`` (a savepoint), ``LOCK``/``UNLOCK`` (tables,
  backup), ``BACKUP``, ``FLUSH ... WITH READ LOCK``/``FOR EXPORT``, ``USE``,
  ``PREPARE``/``EXECUTE``/``DEALLOCATE``/``DROP PREPARE``, ``HANDLER``, ``CALL``, ``DO``,
  ``CREATE``/``DROP``/``ALTER`` with ``TEMPORARY``; anywhere in a statement: ``:=``, ``INTO @v``,
  ``GET_LOCK``/``RELEASE_LOCK``/``RELEASE_ALL_LOCKS``, sequences that advance
  (``NEXTVAL``/``SETVAL``/``NEXT VALUE FOR``, which also set the session's last value),
  ``LAST_INSERT_ID(expr)``. Every first word outside a list of statements known to leave
  nothing behind (``SELECT``, ``INSERT``, ``CREATE TABLE`` ...) counts, so does an unknown word
  (``DELIMITER``, a client command), a statement the server will refuse to lex, and any text
  whose statement boundaries depend on how it is read. A ``SELECT`` of a stored function is not
  looked into. This is a first line only: connection hygiene never rests on the SQL text.
- ``account``: a statement manages accounts or privileges: ``GRANT``, ``REVOKE``,
  ``CREATE``/``ALTER``/``RENAME``/``DROP USER``, ``CREATE``/``DROP ROLE``, ``SET PASSWORD``,
  ``SET ROLE``, ``SET DEFAULT ROLE``, a write naming a table of the ``mysql`` schema, and
  dynamic SQL that could be any of them (``PREPARE``, ``EXECUTE IMMEDIATE``); in any reading,
  executable comments included.
- ``placeholders``: how many ``%s`` (positional) placeholders the code holds, -1 when ``%s``
  and ``%(name)s`` are mixed; ``names``: the ``%(name)s`` names in order of first appearance.
  ``%%`` is a literal ``%``. Only code counts, not text in quotes or comments (that is what
  `to_qmark` rewrites; note that mysqlclient %-formats the *whole* text, literals included).

**The read/write rule.** A statement is a *read* when its main statement is ``SELECT``,
``VALUES``, ``TABLE t``, a parenthesised query (``(SELECT 1) UNION (SELECT 2)``),
``WITH ... SELECT``, ``SHOW``, or ``EXPLAIN``/``DESCRIBE``/``DESC`` of anything, and nothing in
it takes a lock, writes a variable or a file, or has a side effect:

- no ``FOR UPDATE``, ``FOR SHARE``, ``LOCK IN SHARE MODE`` (not checked under a plain
  ``EXPLAIN``, which locks nothing), no ``INTO`` (``INTO @v``, ``INTO OUTFILE``,
  ``INTO DUMPFILE``), no ``:=`` assignment;
- no call of a function in `WRITE_FUNCTIONS`: named locks (``GET_LOCK``, ``RELEASE_LOCK``,
  ``RELEASE_ALL_LOCKS``, and also ``IS_FREE_LOCK``/``IS_USED_LOCK``: harmless themselves, but
  named locks live on one server, the primary where ``GET_LOCK`` goes, so a replica's answer
  would be wrong), ``SLEEP``, ``BENCHMARK``, replication waits (``MASTER_POS_WAIT``, ...),
  ``LOAD_FILE`` (reads the server's own file system: doubtful), sequences that advance
  (``NEXTVAL``, ``SETVAL``, ``NEXT VALUE FOR``, Oracle-mode ``seq.nextval``);
  ``LAST_INSERT_ID(expr)`` with an argument sets the value: a write; ``LAST_INSERT_ID()``,
  ``LASTVAL``, ``PREVIOUS VALUE FOR`` only look: reads (but not deterministic);
- ``EXPLAIN ANALYZE <stmt>`` runs the statement, so it has the kind of ``<stmt>``; MariaDB's
  ``ANALYZE <stmt>`` and ``ANALYZE TABLE`` are writes.

MariaDB's ``SET STATEMENT var=value[, ...] FOR <stmt>`` has the kind of ``<stmt>`` when every
variable is one that only tunes a query (`SET_STATEMENT_READ_VARIABLES`: time limits, buffer
sizes, ``optimizer_*``...); any other (``tx_read_only``, ``transaction_read_only``,
``autocommit``...) makes it a write: a read-only guard must not be lowered by the client's own
SQL. A statement that is ``session`` or ``account`` is a write. Everything else, and any doubt,
is a *write*: ``INSERT``, ``UPDATE``, ``CALL``, ``DO``, ``SET``, ``USE``, ``BEGIN``,
``LOCK TABLES``, ``HANDLER``, DDL, ``HELP``, an unknown first word, a statement the server will
refuse to lex (an unterminated string, comment or quoted name, ``x'4'``, a NUL byte in code, a
``;`` inside an executable comment). A statement of comments only does nothing: a read (the
empty text has no statement and is not a read).

A ``SELECT`` calling a stored function stays a read although the function could write: the
scanner cannot see into it. That is acceptable because a write must not pass where it matters
anyway: replicas run read-only and retried reads run in a read-only transaction.

**Text, as MariaDB reads it** (``mysql`` dialect). Whitespace is ASCII only (space, tab, LF,
CR, VT, FF); every character from U+0080 up is an identifier character, so U+00A0, U+2003,
U+3000, U+0085 or U+FEFF next to a word are part of it, never a separator. ``--`` starts a
comment only when an ASCII space or control character (or the end of the text) follows: after
``--`` and a Unicode space the rest of the line is code. ``#`` comments to the end of the line;
both line comments also end at a NUL. ``/* */`` and hints ``/*+ */`` are comments and
separate words (``START/**/TRANSACTION``). Strings ``'...'`` and ``"..."`` (and ``N'...'``,
``_utf8mb4'...'``) end at an undoubled quote, a backslash escapes the next character;
backticks quote names (doubled backticks, no escapes); ``X'..'`` holds an even number of hex
digits and ``B'..'`` binary digits. ``@x``, ``@'x'``, ``@@session.x`` are variables, but
``'user'@'host'`` is not. A word after ``.`` is a qualified name, never a keyword
(``SELECT t.into FROM t``). Keywords match ASCII letters only, without case.

**Readings.** Some text means different things to different servers, so it is read every way
a server could read it, and a statement is a read only when it is one under every reading;
``session``, ``account`` are true when true under any reading, ``deterministic`` only when
true under all:

- executable comments ``/*! */``, ``/*!NNNNN */`` (5 or 6 digits), ``/*M! */``,
  ``/*M!NNNNN */`` are code or comment depending on the server: MariaDB runs ``/*!NNNNN`` when
  its version is at least NNNNN except MySQL 5.7+ versions (50700..99999), and ``/*M!`` up to
  its version; MySQL runs ``/*!NNNNN`` up to its version and ignores ``/*M!``. The readings are
  MariaDB and MySQL at every version threshold the text names. A skipped versioned comment may
  hold one nested ``/* */``; a ``/*`` inside code of an executable comment is a plain comment.
- ``sql_mode``: ``NO_BACKSLASH_ESCAPES`` (a backslash is an ordinary character) and
  ``ANSI_QUOTES`` (``"..."`` quotes a name). When a string would end elsewhere under another
  mode, the text is read under those modes too.

Statement boundaries (``statements``) are those of MariaDB `MARIADB_VERSION` in its default
``sql_mode``; when the readings disagree on where statements begin and end, or the text names
more than `MAX_VERSION_GATES` version gates, every statement is a write, ``session`` is true
and the text is not deterministic. (A text that changes ``sql_mode`` itself, ``SET sql_mode=``
then more statements, is split as the default mode would split it; the ``SET`` makes it a
write and ``session`` anyway.)

**SQLite** (``sqlite`` dialect, the embedded demo backend): whitespace is space, tab, LF, FF,
CR; ``--`` always comments to the end of the line; ``/* */`` (an unterminated one runs to the
end); no ``#`` comments and no backslash escapes; ``"x"``, backticks and ``[x]`` quote names;
``?``, ``:x``, ``@x``, ``$x`` are bound parameters. The ``;`` inside ``CREATE TRIGGER ... BEGIN
... END`` does not end the statement (the state machine of SQLite's ``sqlite3_complete``).
"""

from __future__ import annotations

import functools
import re

import attrs

__all__ = [
    "MARIADB_VERSION",
    "MAX_VERSION_GATES",
    "MYSQL",
    "NONDETERMINISTIC",
    "READ",
    "SET_STATEMENT_READ_VARIABLES",
    "SQLITE",
    "WRITE",
    "WRITE_FUNCTIONS",
    "SQLFacts",
    "read_sql",
    "to_qmark",
]

READ = "read"
WRITE = "write"

#: Dialects.
MYSQL = "mysql"
SQLITE = "sqlite"

#: The server version whose reading of executable comments decides statement boundaries
#: (MariaDB 10.11.0). Comments gated just above it are read both ways anyway.
MARIADB_VERSION = 101100

#: A text naming more distinct ``/*!NNNNN`` versions than this is not read every way (each
#: version doubles the work): it is treated as unreadable.
MAX_VERSION_GATES = 8

#: Texts up to this long have their facts remembered (a bounded LRU).
_MEMO_MAX_LEN = 4096

#: Functions whose call makes a statement a write (see the module docstring).
WRITE_FUNCTIONS: frozenset[str] = frozenset(
    {
        "GET_LOCK",
        "RELEASE_LOCK",
        "RELEASE_ALL_LOCKS",
        "IS_FREE_LOCK",
        "IS_USED_LOCK",
        "SLEEP",
        "BENCHMARK",
        "NEXTVAL",
        "SETVAL",
        "MASTER_POS_WAIT",
        "MASTER_GTID_WAIT",
        "SOURCE_POS_WAIT",
        "WAIT_FOR_EXECUTED_GTID_SET",
        "WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
        "LOAD_FILE",
    }
)

#: Functions whose result may change between calls, or between backends: a statement calling
#: one is not cached. ``UNIX_TIMESTAMP`` counts only without an argument; the names in
#: `_BARE_FORMS` count without parentheses too.
NONDETERMINISTIC: frozenset[str] = frozenset(
    {
        "NOW",
        "CURRENT_TIMESTAMP",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "CURDATE",
        "CURTIME",
        "SYSDATE",
        "UTC_TIMESTAMP",
        "UTC_DATE",
        "UTC_TIME",
        "LOCALTIME",
        "LOCALTIMESTAMP",
        "UNIX_TIMESTAMP",
        "RAND",
        "RANDOM_BYTES",
        "UUID",
        "UUID_SHORT",
        "SYS_GUID",
        "CONNECTION_ID",
        "PS_CURRENT_THREAD_ID",
        "LAST_INSERT_ID",
        "ROW_COUNT",
        "FOUND_ROWS",
        "USER",
        "CURRENT_USER",
        "SESSION_USER",
        "SYSTEM_USER",
        "CURRENT_ROLE",
        "DATABASE",
        "SCHEMA",
        "VERSION",
        "LASTVAL",
        *WRITE_FUNCTIONS,
    }
)

#: Variables a ``SET STATEMENT ... FOR <read>`` may set and stay a read: they tune how a query
#: runs (limits, buffers, the optimizer, how values are shown), never what it may write. Names
#: starting with ``OPTIMIZER_`` count too.
SET_STATEMENT_READ_VARIABLES: frozenset[str] = frozenset(
    {
        "MAX_STATEMENT_TIME",
        "MAX_EXECUTION_TIME",
        "SQL_SELECT_LIMIT",
        "MAX_JOIN_SIZE",
        "SQL_BIG_SELECTS",
        "SQL_BUFFER_RESULT",
        "JOIN_BUFFER_SIZE",
        "JOIN_CACHE_LEVEL",
        "SORT_BUFFER_SIZE",
        "TMP_TABLE_SIZE",
        "TMP_MEMORY_TABLE_SIZE",
        "MAX_HEAP_TABLE_SIZE",
        "MAX_SORT_LENGTH",
        "MAX_LENGTH_FOR_SORT_DATA",
        "MAX_SEEKS_FOR_KEY",
        "GROUP_CONCAT_MAX_LEN",
        "DIV_PRECISION_INCREMENT",
        "LONG_QUERY_TIME",
        "IN_PREDICATE_CONVERSION_THRESHOLD",
        "MAX_RECURSIVE_ITERATIONS",
        "SQL_MODE",
        "TIME_ZONE",
        "LC_TIME_NAMES",
    }
)

#: Niladic keyword forms that call a function without parentheses (``SELECT CURRENT_DATE``).
_BARE_FORMS = frozenset(
    {
        "CURRENT_TIMESTAMP",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "LOCALTIME",
        "LOCALTIMESTAMP",
        "UTC_TIMESTAMP",
        "UTC_DATE",
        "UTC_TIME",
        "CURRENT_USER",
        "CURRENT_ROLE",
    }
)
_QUERY_HEADS = frozenset({"SELECT", "VALUES", "TABLE"})
_EXPLAIN_HEADS = frozenset({"EXPLAIN", "DESCRIBE", "DESC"})

#: First words of statements that leave nothing on the connection by themselves (the words
#: inside are still looked at: ``INSERT ... VALUES (GET_LOCK('x', 0))``, ``CREATE TEMPORARY``).
_SESSION_FREE_HEADS = frozenset(
    {
        "SELECT",
        "VALUES",
        "TABLE",
        "SHOW",
        "EXPLAIN",
        "DESCRIBE",
        "DESC",
        "INSERT",
        "REPLACE",
        "UPDATE",
        "DELETE",
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "RENAME",
        "ANALYZE",
        "OPTIMIZE",
        "CHECK",
        "CHECKSUM",
        "REPAIR",
        "GRANT",
        "REVOKE",
        "KILL",
        "FLUSH",
        "LOAD",
        "HELP",
        "COMMIT",
        "ROLLBACK",
        "RESET",
        "PURGE",
        "INSTALL",
        "UNINSTALL",
        "CACHE",
        "SIGNAL",
        "RESIGNAL",
    }
)
_SESSION_FUNCTIONS = frozenset(
    {"GET_LOCK", "RELEASE_LOCK", "RELEASE_ALL_LOCKS", "NEXTVAL", "SETVAL"}
)
_ACCOUNT_WORDS = frozenset({"GRANT", "REVOKE", "USER", "ROLE", "PASSWORD"})

# Token kinds: a keyword or bare identifier (value upper-cased when ASCII), a word after "." (a
# qualified name, never a keyword), a quoted identifier, a string, a number, a user or system
# variable, a placeholder or bound parameter, an operator or punctuation (value is the text).
WORD, QUALIFIED, QUOTED, STRING, NUMBER, VAR, PARAM, OP = (
    "word",
    "qualified",
    "quoted",
    "string",
    "number",
    "var",
    "param",
    "op",
)

Token = tuple[str, str]
_LPAREN: Token = (OP, "(")
_RPAREN: Token = (OP, ")")
_COMMA: Token = (OP, ",")
_DOT: Token = (OP, ".")
_EQUALS: Token = (OP, "=")
_ASSIGN: Token = (OP, ":=")
_STRING: Token = (STRING, "")
_NUMBER: Token = (NUMBER, "")
_VAR: Token = (VAR, "@")
_PARAM: Token = (PARAM, "%s")
_MINUS: Token = (OP, "-")
_SLASH: Token = (OP, "/")
_STAR: Token = (OP, "*")
_AT: Token = (OP, "@")
_COLON: Token = (OP, ":")
#: Characters that are always a token of their own (the rest need a look at what follows).
_PLAIN_OPS: dict[str, Token] = {c: (OP, c) for c in "(),=<>!+&|^~?{}[]"}
_PLAIN_OPS["("], _PLAIN_OPS[")"], _PLAIN_OPS[","], _PLAIN_OPS["="] = (
    _LPAREN,
    _RPAREN,
    _COMMA,
    _EQUALS,
)


@attrs.frozen
class SQLFacts:
    """What one SQL text is, read once (see the module docstring for each fact)."""

    #: The text of each statement, split where the server splits.
    statements: tuple[str, ...]
    #: ``READ`` or ``WRITE`` for each statement.
    kinds: tuple[str, ...]
    #: At least one statement and every statement is a read.
    read: bool
    #: No non-deterministic function, sequence or variable: a read that may be cached.
    deterministic: bool
    #: Some statement may leave state on the connection that outlives the request.
    session: bool
    #: Some statement manages accounts, roles or privileges.
    account: bool
    #: How many ``%s`` placeholders; -1 when ``%s`` and ``%(name)s`` are mixed.
    placeholders: int
    #: The ``%(name)s`` placeholder names, in order of first appearance.
    names: tuple[str, ...]
    #: Every statement is a read or a plain ``USE db`` (in every reading): what a read-role
    #: user may send (DBSlayer clients send ``use <database>`` before their requests; the
    #: session is reset after it, and the account's grants decide what it may see).
    reads_or_use: bool = False
    #: Some statement (in some reading) is ``XA PREPARE``: it detaches its transaction from
    #: the session, so it outlives the request, the reset and even the connection.
    xa_prepare: bool = False

    @property
    def kind_counts(self) -> dict[str, int]:
        """How many statements of each kind: ``{"read": n, "write": m}``, both keys present."""
        return {READ: self.kinds.count(READ), WRITE: self.kinds.count(WRITE)}


def read_sql(sql: str, dialect: str = MYSQL) -> SQLFacts:
    """The facts of ``sql`` in ``dialect`` (``"mysql"`` or ``"sqlite"``); see the module
    docstring. Remembered for texts up to 4096 characters (a bounded LRU)."""
    if len(sql) <= _MEMO_MAX_LEN:
        return _read_memo(sql, dialect)
    return _read(sql, dialect)


def to_qmark(statement: str, dialect: str = MYSQL) -> str:
    """Rewrite ``%s`` to ``?``, ``%(name)s`` to ``:name`` and ``%%`` to ``%`` outside quotes
    and comments, for drivers whose paramstyle is qmark/named (sqlite3)."""
    if len(statement) <= _MEMO_MAX_LEN:
        return _qmark_memo(statement, dialect)
    return _to_qmark(statement, dialect)


# ------------------------------------------------------------------ scanners

# A piece of text between statement boundaries: (start, end, tokens, has a comment, broken).
# "Broken" means the server refuses to lex it: the piece then runs to the end of the text.
_Piece = tuple[int, int, list[Token], bool, bool]
# A placeholder: (start, end, name), name None for %s and "%" for %%.
_Placeholder = tuple[int, int, "str | None"]

_MYSQL_SPACE = " \t\n\r\x0b\x0c"
_SQLITE_SPACE = " \t\n\x0c\r"
_ASCII_IDENT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$")
_DIGITS = frozenset("0123456789")
# Runs inside the scanner (never over a whole text): an identifier, digits, hex or binary digits,
# a host name after '@', a placeholder name.
_IDENT_RUN = re.compile(r"[0-9A-Za-z_$\x80-\U0010ffff]*")
_DIGIT_RUN = re.compile(r"[0-9]*")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]*")
_BIN_RUN = re.compile(r"[01]*")
_HOST_RUN = re.compile(r"[0-9A-Za-z_$.\x80-\U0010ffff]*")
_SQLITE_IDENT_RUN = re.compile(r"[0-9A-Za-z_$\x80-\U0010ffff]*")
_PLACEHOLDER_NAME = re.compile(r"\(([A-Za-z_][A-Za-z0-9_]*)\)s")


def _is_ident(ch: str) -> bool:
    return ch in _ASCII_IDENT or ch >= "\x80"


def _keyword(text: str) -> str:
    """A word as keywords compare: ASCII letters upper-cased; a word with any other letter can
    never be a keyword (``ſelect`` is not ``SELECT`` to the server), so it is kept as it is."""
    return text.upper() if text.isascii() else text


def _quoted_end(sql: str, i: int, quote: str, escapes: bool) -> int:
    """The end (exclusive) of the quoted text opening at ``i``: at an undoubled ``quote``; a
    backslash escapes the next character when ``escapes``. -1 when it never ends."""
    n = len(sql)
    j = i + 1
    q = sql.find(quote, j)
    while q >= 0:
        if escapes:
            b = sql.find("\\", j, q)
            if b >= 0:
                j = b + 2
                if j > q:
                    q = sql.find(quote, j)
                continue
        if q + 1 < n and sql[q + 1] == quote:
            j = q + 2
            q = sql.find(quote, j)
            continue
        return q + 1
    return -1


def _comment_end(sql: str, i: int, nested: bool) -> int:
    """The end (exclusive) of a ``/* */`` comment whose text starts at ``i`` (just after the
    opener); with ``nested`` one inner ``/* */`` is allowed (a skipped versioned comment).
    -1 when it never ends."""
    close = sql.find("*/", i)
    if nested:
        while close >= 0:
            inner = sql.find("/*", i, close + 1)  # "/*/": the opener comes first
            if inner < 0:
                break
            inner_close = sql.find("*/", inner + 2)
            if inner_close < 0:
                return -1
            i = inner_close + 2
            close = sql.find("*/", i)
    return -1 if close < 0 else close + 2


def _line_end(sql: str, i: int, has_nul: bool) -> int:
    """Where a line comment whose text starts at ``i`` ends: at LF or NUL (kept), or the end."""
    end = sql.find("\n", i)
    if end < 0:
        end = len(sql)
    if has_nul:
        nul = sql.find("\x00", i, end)
        if nul >= 0:
            end = nul
    return end


def _lex_mysql(
    sql: str, version: int, mysql_server: bool, ansi_quotes: bool, no_backslash: bool
) -> tuple[list[_Piece], list[_Placeholder], bool]:
    """Scan ``sql`` as a MariaDB (or, with ``mysql_server``, MySQL) server of ``version`` in
    the given ``sql_mode`` would, following ``lex_one_token``.

    Returns the pieces (whitespace-only ones dropped), the placeholders, and whether some
    string or ``"name"`` would end elsewhere under another ``sql_mode`` (checked only when
    scanning in the default mode)."""
    n = len(sql)
    has_nul = "\x00" in sql
    check_modes = not ansi_quotes and not no_backslash and (has_nul or "\\" in sql)
    escapes = not no_backslash
    space, ident, digits, plain_ops = _MYSQL_SPACE, _ASCII_IDENT, _DIGITS, _PLAIN_OPS
    ident_run, digit_run = _IDENT_RUN.match, _DIGIT_RUN.match
    pieces: list[_Piece] = []
    placeholders: list[_Placeholder] = []
    tokens: list[Token] = []
    add = tokens.append
    start = 0  # where the current piece starts
    comment = False  # the current piece holds a comment
    broken = False  # the server refuses the current piece; it runs to the end of the text
    in_exec = False  # inside the code of an executable comment
    mode_dependent = False
    i = 0
    while i < n:
        c = sql[i]
        if c in space:
            i += 1
        elif c in ident or c >= "\x80":
            if c in digits:  # a number, or a name that starts with digits
                j = digit_run(sql, i).end()  # type: ignore[union-attr]
                nxt = sql[j] if j < n else ""
                if nxt == "x" or nxt == "b":
                    if j == i + 1 and c == "0":  # 0x1F, 0b101
                        run = (_HEX_RUN if nxt == "x" else _BIN_RUN).match(sql, j + 1).end()  # type: ignore[union-attr]
                        if run > j + 1 and (run >= n or not _is_ident(sql[run])):
                            add(_NUMBER)
                            i = run
                            continue
                    nxt = "a"  # 0x1g, 12b: a name
                if nxt and (nxt in ident or nxt >= "\x80"):
                    if nxt == "e" or nxt == "E":  # 1e5, 1e+5; else a name such as 1e or 1ex
                        k = j + 1
                        if k < n and (sql[k] == "+" or sql[k] == "-"):
                            k += 1
                        if k < n and sql[k] in digits:
                            add(_NUMBER)
                            i = digit_run(sql, k).end()  # type: ignore[union-attr]
                            continue
                    end = ident_run(sql, i).end()  # type: ignore[union-attr]
                    add((WORD, _keyword(sql[i:end])))
                    i = end
                    continue
                if nxt == "." and sql[j + 1 : j + 2] != ".":
                    j = _exponent_end(sql, digit_run(sql, j + 1).end())  # type: ignore[union-attr]
                add(_NUMBER)
                i = j
            elif c in "xXbBnN" and sql[i + 1 : i + 2] == "'":
                if c == "n" or c == "N":  # N'national string'
                    end = _quoted_end(sql, i + 1, "'", escapes)
                    if check_modes and end != _quoted_end(sql, i + 1, "'", False):
                        mode_dependent = True
                    if end < 0:
                        broken, i = True, n
                        continue
                    add(_STRING)
                    i = end
                    continue
                hex_digits = c == "x" or c == "X"
                run = (_HEX_RUN if hex_digits else _BIN_RUN).match(sql, i + 2).end()  # type: ignore[union-attr]
                if run < n and sql[run] == "'" and (not hex_digits or (run - i) % 2 == 0):
                    add(_STRING)
                    i = run + 1
                    continue
                broken = True  # x'4', x'4g': the server aborts here
                i = run
            else:
                end = ident_run(sql, i).end()  # type: ignore[union-attr]
                word = sql[i:end]
                add((WORD, word.upper() if word.isascii() else word))  # see _keyword
                i = end
        elif c in plain_ops:
            add(plain_ops[c])
            i += 1
        elif c == "'" or (c == '"' and not ansi_quotes):
            end = _quoted_end(sql, i, c, escapes)
            if check_modes:
                if end != _quoted_end(sql, i, c, False):
                    mode_dependent = True
                elif c == '"' and has_nul and "\x00" in sql[i : end if end > 0 else n]:
                    mode_dependent = True  # as a name (ANSI_QUOTES) it may not hold a NUL
            if end < 0:
                broken, i = True, n
                continue
            add(_STRING)
            i = end
        elif c == "`" or c == '"':  # a quoted name
            end = _quoted_end(sql, i, c, False)
            if end < 0 or (has_nul and "\x00" in sql[i:end]):
                broken, i = True, n  # the server aborts on an unterminated name or a NUL in it
                continue
            add((QUOTED, sql[i + 1 : end - 1]))
            i = end
        elif c == "-":
            nxt = sql[i + 2 : i + 3]
            if sql[i + 1 : i + 2] == "-" and (not nxt or nxt <= " " or nxt == "\x7f"):
                comment = True  # "--" then an ASCII space or control character, or the end
                i = _line_end(sql, i + 2, has_nul)
                continue
            add(_MINUS)
            i += 1
        elif c == "#":
            comment = True
            i = _line_end(sql, i + 1, has_nul)
        elif c == "/":
            if sql[i + 1 : i + 2] != "*":
                add(_SLASH)
                i += 1
                continue
            comment = True
            after = sql[i + 2 : i + 4]
            if after[:1] == "!" or after == "M!":
                maria = after == "M!"
                k = i + (4 if maria else 3)
                if maria and mysql_server:  # MySQL: an ordinary comment
                    i = _comment_end(sql, i + 2, nested=False)
                elif len(gate_digits := sql[k : digit_run(sql, k, k + 6).end()]) >= 5:  # type: ignore[union-attr]
                    gate = int(gate_digits)
                    if gate <= version and (mysql_server or maria or gate < 50700 or gate > 99999):
                        in_exec = True  # run as code
                        i = k + len(gate_digits)
                        continue
                    i = _comment_end(sql, k, nested=True)
                else:
                    in_exec = True
                    i = k
                    continue
            else:
                i = _comment_end(sql, i + 2, nested=False)
            if i < 0:
                broken, i = True, n  # a comment that never ends
        elif c == "*":
            if in_exec and sql[i + 1 : i + 2] == "/":
                in_exec = False
                i += 2
                continue
            add(_STAR)
            i += 1
        elif c == ";":
            if in_exec:
                broken = True  # the server refuses a ';' inside an executable comment
            if not broken:
                pieces.append((start, i, tokens, comment, False))
                tokens = []
                add = tokens.append
                start = i + 1
                comment = False
            i += 1
        elif c == ".":
            # After a bare name, "." then a name character separates a qualified name (t.1x);
            # elsewhere ".5" is a number. A name right after "." is never a keyword (t.into).
            nxt = sql[i + 1 : i + 2]
            if nxt in digits and nxt:
                before = sql[i - 1] if i else " "
                if not (
                    (before in ident or before >= "\x80")
                    and tokens
                    and tokens[-1][0] in (WORD, QUALIFIED)
                ):
                    add(_NUMBER)
                    i = _exponent_end(sql, digit_run(sql, i + 1).end())  # type: ignore[union-attr]
                    continue
            add(_DOT)
            i += 1
            if nxt and (nxt in ident or nxt >= "\x80"):
                end = ident_run(sql, i).end()  # type: ignore[union-attr]
                word = sql[i:end]
                add((QUALIFIED, word.upper() if word.isascii() else word))
                i = end
        elif c == "@":
            nxt = sql[i + 1 : i + 2]
            if i > 0 and sql[i - 1] in "'\"`" and tokens and tokens[-1][0] in (STRING, QUOTED):
                add(_AT)  # 'user'@'host' (a comment never ends with a quote)
                i += 1
            elif nxt == "@":  # @@x, @@session.x, @@`x`
                j = i + 2
                if sql[j : j + 1] == "`":
                    j = _quoted_end(sql, j, "`", False)
                    if j < 0:
                        broken, i = True, n
                        continue
                else:
                    j = _HOST_RUN.match(sql, j).end()  # type: ignore[union-attr]
                add(_VAR)
                i = j
            elif nxt == "'" or nxt == '"' or nxt == "`":  # @'x', @"x", @`x`
                quote_escapes = escapes and nxt != "`" and not (nxt == '"' and ansi_quotes)
                end = _quoted_end(sql, i + 1, nxt, quote_escapes)
                if check_modes and nxt != "`" and end != _quoted_end(sql, i + 1, nxt, False):
                    mode_dependent = True
                if end < 0:
                    broken, i = True, n
                    continue
                add(_VAR)
                i = end
            else:
                add(_VAR)
                i = _HOST_RUN.match(sql, i + 1).end()  # type: ignore[union-attr]
        elif c == "%":
            i = _placeholder(sql, i, tokens, placeholders)
        elif c == ":":
            if sql[i + 1 : i + 2] == "=":
                add(_ASSIGN)
                i += 2
                continue
            add(_COLON)
            i += 1
        elif c == "\\" and sql[i + 1 : i + 2] == "N":  # \N is NULL
            add(_NUMBER)
            i += 2
        else:
            if c == "\x00":
                broken = True  # the server reads a NUL in code as the end of the query
            add((OP, c))
            i += 1
    if in_exec:
        broken = True  # an executable comment that never ends
    pieces.append((start, n, tokens, comment, broken))
    return [p for p in pieces if p[2] or p[3] or p[4]], placeholders, mode_dependent


def _exponent_end(sql: str, j: int) -> int:
    """After the digits of a decimal number ending at ``j``: the end of an exponent there."""
    if sql[j : j + 1] in ("e", "E"):
        k = j + 1
        if sql[k : k + 1] in ("+", "-"):
            k += 1
        if sql[k : k + 1] in _DIGITS and k < len(sql):
            return _DIGIT_RUN.match(sql, k).end()  # type: ignore[union-attr]
    return j


def _placeholder(sql: str, i: int, tokens: list[Token], placeholders: list[_Placeholder]) -> int:
    """Read ``%s``, ``%(name)s`` or ``%%`` (else a ``%`` operator) at ``i``; return the end."""
    nxt = sql[i + 1 : i + 2]
    if nxt == "s":
        placeholders.append((i, i + 2, None))
        tokens.append(_PARAM)
        return i + 2
    if nxt == "%":
        placeholders.append((i, i + 2, "%"))
        tokens.append((OP, "%"))
        return i + 2
    if nxt == "(":
        match = _PLACEHOLDER_NAME.match(sql, i + 1)
        if match is not None:
            placeholders.append((i, match.end(), match.group(1)))
            tokens.append(_PARAM)
            return match.end()
    tokens.append((OP, "%"))
    return i + 1


# SQLite's sqlite3_complete(): token classes and the state machine that knows that the ';'
# inside CREATE TRIGGER ... BEGIN ... END does not end the statement.
_TK_SEMI, _TK_OTHER, _TK_EXPLAIN, _TK_CREATE, _TK_TEMP, _TK_TRIGGER, _TK_END = 0, 2, 3, 4, 5, 6, 7
_COMPLETE_WORDS = {
    "EXPLAIN": _TK_EXPLAIN,
    "CREATE": _TK_CREATE,
    "TEMP": _TK_TEMP,
    "TEMPORARY": _TK_TEMP,
    "TRIGGER": _TK_TRIGGER,
    "END": _TK_END,
}
# trans[state][token class]; state 1 is "at the start of a statement" (whitespace, class 1,
# never changes the state and is not fed in).
_COMPLETE_TRANS = (
    (1, 0, 2, 3, 4, 2, 2, 2),
    (1, 1, 2, 3, 4, 2, 2, 2),
    (1, 2, 2, 2, 2, 2, 2, 2),
    (1, 3, 3, 2, 4, 2, 2, 2),
    (1, 4, 2, 2, 2, 4, 5, 2),
    (6, 5, 5, 5, 5, 5, 5, 5),
    (6, 6, 5, 5, 5, 5, 5, 7),
    (1, 7, 5, 5, 5, 5, 5, 5),
)


def _lex_sqlite(sql: str) -> tuple[list[_Piece], list[_Placeholder]]:
    """Scan ``sql`` as SQLite's tokenizer would; comment-only pieces are dropped."""
    n = len(sql)
    pieces: list[_Piece] = []
    placeholders: list[_Placeholder] = []
    tokens: list[Token] = []
    start, broken, state = 0, False, 0
    i = 0
    while i < n:
        c = sql[i]
        if c in _SQLITE_SPACE:
            i += 1
            continue
        token_class = _TK_OTHER
        if c in "?:@$#" and (c == "?" or _is_ident(sql[i + 1 : i + 2] or " ")):
            tokens.append(_PARAM)  # a bound parameter: ?, ?1, :x, @x, $x, #x
            i = _SQLITE_IDENT_RUN.match(sql, i + 1).end()  # type: ignore[union-attr]
        elif c in _DIGITS or (c == "." and sql[i + 1 : i + 2] in _DIGITS and i + 1 < n):
            end = _DIGIT_RUN.match(sql, i).end()  # type: ignore[union-attr]
            if sql[end : end + 1] == ".":
                end = _DIGIT_RUN.match(sql, end + 1).end()  # type: ignore[union-attr]
            # 0x1F; and 12abc, which SQLite refuses
            end = _SQLITE_IDENT_RUN.match(sql, _exponent_end(sql, end)).end()  # type: ignore[union-attr]
            tokens.append(_NUMBER)
            i = end
        elif c in _ASCII_IDENT or c >= "\x80":
            if sql[i + 1 : i + 2] == "'" and c in "xX":  # a blob literal
                run = _HEX_RUN.match(sql, i + 2).end()  # type: ignore[union-attr]
                if run < n and sql[run] == "'" and (run - i - 2) % 2 == 0:
                    tokens.append(_STRING)
                    i = run + 1
                else:
                    broken, i = True, n
            else:
                end = _SQLITE_IDENT_RUN.match(sql, i).end()  # type: ignore[union-attr]
                word = _keyword(sql[i:end])
                tokens.append((QUALIFIED if tokens and tokens[-1] == _DOT else WORD, word))
                token_class = _COMPLETE_WORDS.get(word, _TK_OTHER)
                i = end
        elif c in ("'", '"', "`", "["):
            end = sql.find("]", i + 1) + 1 if c == "[" else _quoted_end(sql, i, c, False)
            if end <= 0:
                broken, i = True, n
                continue
            tokens.append(_STRING if c == "'" else (QUOTED, sql[i + 1 : end - 1]))
            i = end
        elif c == "-" and sql[i + 1 : i + 2] == "-":
            i = _line_end(sql, i + 2, False)
            continue
        elif c == "/" and sql[i + 1 : i + 2] == "*":
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        elif c == ";":
            state = _COMPLETE_TRANS[state][_TK_SEMI]
            if state == 1 and not broken:
                pieces.append((start, i, tokens, False, False))
                tokens = []
                start = i + 1
            i += 1
            continue
        elif c == "%":
            i = _placeholder(sql, i, tokens, placeholders)
        else:
            tokens.append((OP, c))
            i += 1
        state = _COMPLETE_TRANS[state][token_class]
    pieces.append((start, n, tokens, False, broken))
    return [p for p in pieces if p[2] or p[4]], placeholders


# ------------------------------------------------------------------ readings


def _version_gates(sql: str) -> set[int] | None:
    """The versions of the ``/*!NNNNN`` and ``/*M!NNNNN`` gates in ``sql`` (a superset: also
    those inside strings); None when the text has no executable comment at all."""
    gates: set[int] = set()
    found = False
    for marker in ("/*!", "/*M!"):
        at = sql.find(marker)
        while at >= 0:
            found = True
            k = at + len(marker)
            end = _DIGIT_RUN.match(sql, k, k + 6).end()  # type: ignore[union-attr]
            if end - k >= 5:
                gates.add(int(sql[k:end]))
            at = sql.find(marker, k)
    return gates if found else None


def _readings(sql: str) -> tuple[list[list[_Piece]], list[_Placeholder], bool]:
    """Every reading of a ``mysql`` text (the primary one first), its placeholders, and
    whether it names too many version gates to be read every way."""
    primary, placeholders, mode_dependent = _lex_mysql(sql, MARIADB_VERSION, False, False, False)
    servers: list[tuple[int, bool]] = [(MARIADB_VERSION, False)]
    too_many = False
    gates = _version_gates(sql)
    if gates is not None:
        too_many = len(gates) > MAX_VERSION_GATES
        thresholds = {0, max(gates, default=0)} if too_many else {0, *gates}
        with_mysql = "/*M!" in sql or any(50700 <= gate <= 99999 for gate in gates)
        below_primary = max(t for t in thresholds if t <= MARIADB_VERSION)
        for threshold in sorted(thresholds):
            if threshold != below_primary:
                servers.append((threshold, False))
            if with_mysql:
                servers.append((threshold, True))
    readings = [primary]
    for version, mysql_server in servers[1:]:
        pieces, _, dependent = _lex_mysql(sql, version, mysql_server, False, False)
        readings.append(pieces)
        mode_dependent = mode_dependent or dependent
    if mode_dependent:
        for version, mysql_server in servers:
            for ansi_quotes, no_backslash in ((False, True), (True, False), (True, True)):
                readings.append(
                    _lex_mysql(sql, version, mysql_server, ansi_quotes, no_backslash)[0]
                )
    return readings, placeholders, too_many


def _read(sql: str, dialect: str) -> SQLFacts:
    if dialect == MYSQL:
        readings, placeholders, unreadable = _readings(sql)
        space = _MYSQL_SPACE
    elif dialect == SQLITE:
        pieces, placeholders = _lex_sqlite(sql)
        readings, unreadable, space = [pieces], False, _SQLITE_SPACE
    else:
        raise ValueError(f"unknown SQL dialect {dialect!r}: use 'mysql' or 'sqlite'")
    primary = readings[0]
    bounds = [(piece[0], piece[1]) for piece in primary]
    verdicts = [_judge(piece[2], piece[4]) for piece in primary]
    kinds = [verdict[0] for verdict in verdicts]
    session = account = False
    deterministic = True
    for verdict in verdicts:
        session = session or verdict[1]
        account = account or verdict[2]
        deterministic = deterministic and verdict[3]
    for pieces in readings[1:]:  # a statement is a read only when it is one in every reading
        aligned = len(pieces) == len(bounds)
        for k, piece in enumerate(pieces):
            kind, leaves_state, manages_accounts, same_answer = _judge(piece[2], piece[4])
            account = account or manages_accounts
            session = session or leaves_state
            deterministic = deterministic and same_answer
            if aligned and (piece[0], piece[1]) == bounds[k]:
                if kind == WRITE:
                    kinds[k] = WRITE
            else:
                aligned = False
        unreadable = unreadable or not aligned
    if unreadable:  # the readings disagree on the statements themselves
        kinds, session, deterministic = [WRITE] * len(bounds), True, False
    reads_or_use, xa_prepare = not unreadable and bool(kinds), False
    for pieces in readings:
        for k, piece in enumerate(pieces):
            tokens = piece[2]
            start, head = _head(tokens) if tokens else (-1, "")
            if head == "XA" and _word(tokens, start + 1) == "PREPARE":
                xa_prepare = True
            plain_use = head == "USE" and start == 0 and len(tokens) == 2
            plain_use = plain_use and tokens[1][0] in (WORD, QUOTED)
            if not plain_use and (k >= len(kinds) or kinds[k] != READ or piece[4]):
                reads_or_use = False
    positional = 0
    names: dict[str, None] = {}
    for _, _, name in placeholders:
        if name is None:
            positional += 1
        elif name != "%":
            names[name] = None
    return SQLFacts(
        statements=tuple([sql[s:e].strip(space) for s, e in bounds]),
        kinds=tuple(kinds),
        read=bool(kinds) and WRITE not in kinds,
        deterministic=deterministic,
        session=session,
        account=account,
        placeholders=-1 if positional and names else positional,
        names=tuple(names),
        reads_or_use=reads_or_use,
        xa_prepare=xa_prepare,
    )


_read_memo = functools.lru_cache(maxsize=4096)(_read)


def _to_qmark(statement: str, dialect: str) -> str:
    if dialect == MYSQL:
        placeholders = _lex_mysql(statement, MARIADB_VERSION, False, False, False)[1]
    elif dialect == SQLITE:
        placeholders = _lex_sqlite(statement)[1]
    else:
        raise ValueError(f"unknown SQL dialect {dialect!r}: use 'mysql' or 'sqlite'")
    if not placeholders:
        return statement
    out: list[str] = []
    at = 0
    for start, end, name in placeholders:
        out.append(statement[at:start])
        out.append("?" if name is None else "%" if name == "%" else ":" + name)
        at = end
    out.append(statement[at:])
    return "".join(out)


_qmark_memo = functools.lru_cache(maxsize=1024)(_to_qmark)


# ------------------------------------------------------------------ judging one statement

# A verdict on one statement in one reading: (kind, session, account, deterministic).
_Verdict = tuple[str, bool, bool, bool]
_COMMENTS_ONLY: _Verdict = (READ, False, False, True)

#: The words the one pass over a statement's tokens (`_scan`) stops at; the rest are skipped.
_SCANNED_WORDS = frozenset(
    {"INTO", "NEXT", "PREVIOUS", "FOR", "LOCK", "LAST_INSERT_ID"}
    | WRITE_FUNCTIONS
    | NONDETERMINISTIC
    | _BARE_FORMS
    | _SESSION_FUNCTIONS
)


def _judge(tokens: list[Token], broken: bool) -> _Verdict:
    """The verdict on one statement's tokens (see the module docstring)."""
    if broken:
        account = any(t[0] == WORD and t[1] in _ACCOUNT_WORDS for t in tokens)
        return WRITE, True, account, False
    if not tokens:
        return _COMMENTS_ONLY
    effect, locks, state, deterministic = _scan(tokens)
    start, head = _head(tokens)
    kind = _kind_of(tokens, start, head, effect, locks)
    session = state or _session_statement(tokens, start, head)
    account = _manages_accounts(tokens, start, head, kind)
    if session or account:
        kind = WRITE
    return kind, session, account, deterministic


def _scan(tokens: list[Token]) -> tuple[bool, bool, bool, bool]:
    """One pass over a statement's tokens, wherever they are in it: ``(effect, locks, state,
    deterministic)``.

    ``effect``: it assigns (``:=``), writes a variable or file (``INTO``), advances a sequence
    or calls a `WRITE_FUNCTIONS` function or ``LAST_INSERT_ID(expr)``; ``locks``: it takes row
    locks (``FOR UPDATE``, ``FOR SHARE``, ``LOCK IN SHARE MODE``); ``state``: it leaves state
    on the connection (``:=``, ``INTO @v``, named locks, sequences, ``LAST_INSERT_ID(expr)``);
    ``deterministic``: no `NONDETERMINISTIC` call or keyword form, no sequence read, no
    variable."""
    effect = locks = state = False
    deterministic = True
    count = len(tokens)
    scanned = _SCANNED_WORDS
    for i, (kind, value) in enumerate(tokens):
        if kind == WORD:
            if value not in scanned:
                continue
            call = i + 1 < count and tokens[i + 1] == _LPAREN
            if value == "INTO":
                effect = True
                if i + 1 < count and tokens[i + 1][0] == VAR:
                    state = True
            elif value == "NEXT" or value == "PREVIOUS":
                if _word(tokens, i + 1) == "VALUE" and _word(tokens, i + 2) == "FOR":
                    deterministic = False
                    if value == "NEXT":
                        effect = state = True
            elif value == "FOR":
                if _word(tokens, i + 1) in ("UPDATE", "SHARE"):
                    locks = True
            elif value == "LOCK":
                if _word(tokens, i + 1) == "IN":
                    locks = True
            if value in _BARE_FORMS:
                deterministic = False
            if call:
                if value in NONDETERMINISTIC and not (
                    value == "UNIX_TIMESTAMP" and i + 2 < count and tokens[i + 2] != _RPAREN
                ):
                    deterministic = False
                if value in WRITE_FUNCTIONS:
                    effect = True
                if value in _SESSION_FUNCTIONS:
                    state = True
                if value == "LAST_INSERT_ID" and (i + 2 >= count or tokens[i + 2] != _RPAREN):
                    effect = state = True
        elif kind == VAR:
            deterministic = False
        elif kind == QUALIFIED:
            if value == "NEXTVAL":  # Oracle mode: seq.nextval
                effect = state = True
                deterministic = False
            elif value in ("CURRVAL", "LASTVAL"):
                deterministic = False
        elif kind == OP and value == ":=":
            effect = state = True
    return effect, locks, state, deterministic


def _word(tokens: list[Token], i: int) -> str:
    """The keyword at ``i``, or "" when there is none."""
    if i < len(tokens):
        token = tokens[i]
        if token[0] == WORD:
            return token[1]
    return ""


def _skip_open(tokens: list[Token], i: int) -> int:
    """The index after any opening parentheses at ``i``."""
    while i < len(tokens) and tokens[i] == _LPAREN:
        i += 1
    return i


def _after_group(tokens: list[Token], i: int) -> int:
    """The index after the parenthesised group opening at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        token = tokens[j]
        if token == _LPAREN:
            depth += 1
        elif token == _RPAREN:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(tokens)


def _after_ctes(tokens: list[Token], i: int) -> int | None:
    """Given ``i`` just after ``WITH``, the index of the main statement; None if unreadable."""
    if _word(tokens, i) == "RECURSIVE":
        i += 1
    while True:
        if i >= len(tokens) or tokens[i][0] not in (WORD, QUOTED):
            return None
        i += 1
        if i < len(tokens) and tokens[i] == _LPAREN:  # column list
            i = _after_group(tokens, i)
        if _word(tokens, i) != "AS" or i + 1 >= len(tokens) or tokens[i + 1] != _LPAREN:
            return None
        i = _after_group(tokens, i + 1)
        if _word(tokens, i) == "CYCLE":  # MariaDB: CYCLE col, ... RESTRICT
            while i < len(tokens) and _word(tokens, i) != "RESTRICT":
                i += 1
            i += 1
        if i >= len(tokens) or tokens[i] != _COMMA:
            return i
        i += 1


def _head(tokens: list[Token]) -> tuple[int, str]:
    """The index and keyword of the main statement (past parentheses and ``WITH`` clauses);
    index -1 when the ``WITH`` clauses cannot be read."""
    start = 0
    while start < len(tokens) and tokens[start] == _LPAREN:
        start += 1
    head = _word(tokens, start)
    if head == "WITH":
        main = _after_ctes(tokens, start + 1)
        if main is None:
            return -1, ""
        start = _skip_open(tokens, main)
        head = _word(tokens, start)
    return start, head


def _set_statement(tokens: list[Token], i: int) -> tuple[bool, int]:
    """For ``SET STATEMENT`` whose variables start at ``i``: whether every variable is in
    `SET_STATEMENT_READ_VARIABLES`, and the index of the statement after ``FOR`` (-1 if none)."""
    harmless, expect_name, depth = True, True, 0
    while i < len(tokens):
        token = tokens[i]
        if depth == 0 and token == (WORD, "FOR"):
            return harmless, i + 1 if i + 1 < len(tokens) else -1
        if expect_name:
            name = token[1] if token[0] == WORD else ""
            if name not in SET_STATEMENT_READ_VARIABLES and not name.startswith("OPTIMIZER_"):
                harmless = False
            expect_name = False
        elif token == _LPAREN:
            depth += 1
        elif token == _RPAREN:
            depth -= 1
        elif depth == 0 and token == _COMMA:
            expect_name = True
        i += 1
    return harmless, -1


def _explained(tokens: list[Token], i: int) -> tuple[int, bool]:
    """Given ``i`` just after ``EXPLAIN``: the index of the explained statement (past
    ``EXTENDED``, ``PARTITIONS``, ``FORMAT=x``, ``ANALYZE``) and whether it is analyzed (run)."""
    analyze = False
    while True:
        option = _word(tokens, i)
        if option in ("EXTENDED", "PARTITIONS"):
            i += 1
        elif option == "FORMAT":
            i += 3 if i + 1 < len(tokens) and tokens[i + 1] == _EQUALS else 2
        elif option == "ANALYZE":
            i, analyze = i + 1, True
        else:
            return i, analyze


def _kind(tokens: list[Token]) -> str:
    """The kind of a statement's tokens by the read/write rule alone."""
    effect, locks, _, _ = _scan(tokens)
    return _kind_of(tokens, *_head(tokens), effect, locks)


def _kind_of(tokens: list[Token], start: int, head: str, effect: bool, locks: bool) -> str:
    """`_kind`, given the statement's `_head` and what `_scan` found in it."""
    if head in _QUERY_HEADS or head == "SHOW":
        return WRITE if effect or locks else READ
    if head in _EXPLAIN_HEADS:
        i, analyze = _explained(tokens, start + 1)
        if i >= len(tokens):
            return WRITE
        if analyze:  # runs the statement
            return _kind(tokens[i:])
        # Explaining does not run the statement nor lock, but the optimizer may evaluate
        # constant subqueries while explaining, and EXPLAIN ... INTO @v sets a variable.
        return WRITE if effect else READ
    if head == "SET" and _word(tokens, start + 1) == "STATEMENT":  # MariaDB: ... FOR stmt
        harmless, inner = _set_statement(tokens, start + 2)
        if not harmless or inner < 0 or _scan(tokens[:inner])[0]:
            return WRITE
        return _kind(tokens[inner:])
    return WRITE


def _session_statement(tokens: list[Token], start: int, head: str) -> bool:
    """True when the statement itself, by what it is, may leave state on the connection."""
    if head in _QUERY_HEADS or head == "SHOW":
        return False
    if start < 0:
        return True
    if head == "SET":
        if _word(tokens, start + 1) != "STATEMENT":
            return True
        inner = _set_statement(tokens, start + 2)[1]
        return inner < 0 or _session_statement(tokens[inner:], *_head(tokens[inner:]))
    if head in ("COMMIT", "ROLLBACK"):
        for i in range(start + 1, len(tokens)):
            word = _word(tokens, i)
            if word == "TO" or (word in ("CHAIN", "RELEASE") and _word(tokens, i - 1) != "NO"):
                return True
        return False
    if head in ("CREATE", "DROP", "ALTER"):
        if head == "DROP" and _word(tokens, start + 1) == "PREPARE":
            return True
        return (WORD, "TEMPORARY") in tokens
    if head == "FLUSH":
        return any(token[0] == WORD and token[1] in ("LOCK", "EXPORT") for token in tokens)
    if head in _EXPLAIN_HEADS:
        i, analyze = _explained(tokens, start + 1)
        return analyze and i < len(tokens) and _session_statement(tokens[i:], *_head(tokens[i:]))
    return head not in _SESSION_FREE_HEADS


_PROGRAM_WORDS = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"})
_ACCOUNT_HEADS = frozenset(
    {"GRANT", "REVOKE", "SET", "CREATE", "ALTER", "DROP", "RENAME", "PREPARE", "EXECUTE"}
)


def _defines_program(tokens: list[Token], start: int) -> bool:
    """True when a CREATE/ALTER statement defines a stored program (the words before its body:
    ``CREATE [OR REPLACE] [DEFINER = x] [AGGREGATE] FUNCTION``, ``... EVENT``...)."""
    for i in range(start + 1, min(len(tokens), start + 12)):
        if _word(tokens, i) in _PROGRAM_WORDS:
            return True
    return False


def _manages_accounts(tokens: list[Token], start: int, head: str, kind: str) -> bool:
    """True when the statement manages accounts, roles or privileges (module docstring)."""
    if head in ("GRANT", "REVOKE"):
        return True
    following = _word(tokens, start + 1)
    if head == "SET":
        if following in ("PASSWORD", "ROLE"):
            return True
        if following == "DEFAULT" and _word(tokens, start + 2) == "ROLE":
            return True
        if following == "STATEMENT":
            inner = _set_statement(tokens, start + 2)[1]
            if inner >= 0:
                rest = tokens[inner:]
                return _manages_accounts(rest, *_head(rest), _kind(rest))
    elif head in ("CREATE", "ALTER", "DROP", "RENAME"):
        if following == "OR" and _word(tokens, start + 2) == "REPLACE":
            following = _word(tokens, start + 3)
        if following in ("USER", "ROLE"):
            return True
        if head in ("CREATE", "ALTER") and _defines_program(tokens, start):
            # A procedure, function, trigger or event whose body (a single statement here: a
            # BEGIN ... END body is split at its ';' and each piece judged) does it later.
            for i in range(start + 1, len(tokens)):
                word = _word(tokens, i)
                if word in _ACCOUNT_HEADS and _manages_accounts(tokens[i:], 0, word, WRITE):
                    return True
    elif head == "PREPARE" or (head == "EXECUTE" and following == "IMMEDIATE"):
        return True  # dynamic SQL: its text is not seen here
    elif head in _EXPLAIN_HEADS:
        i, analyze = _explained(tokens, start + 1)
        if analyze and i < len(tokens):
            rest = tokens[i:]
            return _manages_accounts(rest, *_head(rest), _kind(rest))
    if kind == WRITE:  # a write to the grant tables
        for i in range(len(tokens) - 1):
            kind_i, value = tokens[i]
            if tokens[i + 1] == _DOT and (
                (kind_i == WORD and value == "MYSQL")
                or (kind_i == QUOTED and value.lower() == "mysql")
            ):
                return True
    return False
