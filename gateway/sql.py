"""Reading SQL (pure): one scanner per dialect, run once per request text, and the facts the
rest of the gateway needs, as one immutable :class:`SQLFacts`.

``read_sql(sql, dialect)`` is the only entry point (memoized for texts up to 4096 characters);
``to_qmark`` rewrites placeholders for the SQLite demo backend. The scanners are hand-written
state machines that follow the servers' own lexers -- MariaDB's ``sql/sql_lex.cc``
(``lex_one_token``, ``get_text``, ``consume_comment``) and SQLite's ``tokenize.c`` and
``complete.c`` -- not regular expressions over the text. A differential test holds the MariaDB
scanner to a real server (``tests/integration/test_sql_differential.py``).

**Speed.** Each statement's head is read token by token; past it, runs of tokens that cannot
change any fact (given what the statement is already known to do: a statement known to be
non-deterministic no longer cares for ``NOW()``) are skipped by compiled regular expressions
(`_Runs`), one alternative per token kind read exactly as the state machine reads it, so a run
ends on a token boundary; what may matter is read one by one. Executable comments are
rewritten, at the same length, to the form each server reads (`_rewrite_gates`), so one
scanner reads every server's text. Statements whose text repeats are read once. A statement
whose judging needs tokens far past its head (a ``WITH`` list, ``SET STATEMENT`` variables,
``EXPLAIN ANALYZE``, a stored program's body) is read again token by token, up to
`_FAR_TOKENS` tokens: past that it is judged unreadable (a write with session effects, and
managing accounts when an account word appears in it), fail closed. Reading is linear in the
text's length (``tests/integration/test_sql_speed.py`` gives the figures).

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
- ``secrets``: per statement, it may hold a secret by what it is: it manages accounts
  (``account`` above, ``IDENTIFIED BY`` included), or the server cannot read it, or the
  readings disagree on the statement boundaries; in any reading. Journals show such a
  statement (and any naming a secret, `stats.redact.SECRET_WORDS`) as its kind only.
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
from collections.abc import Callable

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
    #: For each statement: it may hold a secret by what it is (it manages accounts, or it
    #: cannot be read: unterminated, or boundaries that depend on the reading); in any
    #: reading. Journals show it as its kind only (`stats.redact.shown_sql`).
    secrets: tuple[bool, ...] = ()

    @property
    def secret(self) -> bool:
        """Some statement may hold a secret (see ``secrets``)."""
        return any(self.secrets)

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

# A piece of text between statement boundaries: (start, end, tokens, has a comment, broken,
# gapped). "Broken" means the server refuses to lex it: the piece then runs to the end of the
# text. "Gapped" means runs of tokens that cannot change a fact were skipped (see `_GAP`).
_Piece = tuple[int, int, list[Token], bool, bool, bool]
# A placeholder: (start, end, name), name None for %s and "%" for %%; or (start, end, _GAPPED):
# a stretch of code whose placeholders are counted from its text (`_gap_placeholders`).
_Placeholder = tuple[int, int, "str | None"]
_GAPPED = "\x00gap"

_MYSQL_SPACE = " \t\n\r\x0b\x0c"
_SQLITE_SPACE = " \t\n\x0c\r"
_ASCII_IDENT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$")
_DIGITS = frozenset("0123456789")
# Runs inside the scanner: an identifier, digits, hex or binary digits, a host name after '@',
# a placeholder name, whitespace, leading parentheses.
_IDENT_RUN = re.compile(r"[0-9A-Za-z_$\x80-\U0010ffff]*")
_DIGIT_RUN = re.compile(r"[0-9]*")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]*")
_BIN_RUN = re.compile(r"[01]*")
_HOST_RUN = re.compile(r"[0-9A-Za-z_$.\x80-\U0010ffff]*")
_SQLITE_IDENT_RUN = re.compile(r"[0-9A-Za-z_$\x80-\U0010ffff]*")
_PLACEHOLDER_NAME = re.compile(r"\(([A-Za-z_][A-Za-z0-9_]*)\)s")
_NAMED_PLACEHOLDER = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)s")
_SPACE_RUN = re.compile(r"[ \t\n\r\x0b\x0c]+")
_SQLITE_SPACE_RUN = re.compile(r"[ \t\n\x0c\r]+")
_OPEN_RUN = re.compile(r"\((?:[ \t\n\r\x0b\x0c]*\()*")
_EMPTY_STATEMENTS = re.compile(r"[ \t\n\r\x0b\x0c;]*")
_LEADING = re.compile(
    r"(?:[ \t\n\r\x0b\x0c]++|/\*(?!!)[^*]*+\*++(?:[^/*][^*]*+\*++)*+/"
    r"|--(?=[\x00-\x20\x7f]|\Z)[^\n\x00]*+|#[^\n\x00]*+)*+"
)
_SQLITE_LEADING = re.compile(r"(?:[ \t\n\x0c\r]++|--[^\n]*+|/\*[^*]*+\*++(?:[^/*][^*]*+\*++)*+/)*+")

#: A token standing for a run of tokens the scanner skipped at C speed (`_Runs`): tokens that,
#: given what the statement is already known to hold, change no fact. It equals no other token
#: and is no keyword, so the judging code below reads a statement with gaps as it would read
#: the whole token list.
_GAP: Token = ("gap", "")

#: Tokens read one by one at the start of each statement (after its opening parentheses)
#: before runs may be skipped; a statement whose first word is not in `_WINDOWED_HEADS` needs
#: only its first token.
_HEAD_WINDOW = 16
#: Tokens read one by one after a token that may change a fact (what the judging code looks at
#: after it: ``FOR UPDATE``, ``NEXT VALUE FOR``, ``LAST_INSERT_ID(x``, ``INTO @v``...).
_LOOKAHEAD = 3
#: A statement whose head must be read far (``WITH`` lists, ``SET STATEMENT`` lists, stored
#: program bodies, ``EXPLAIN ANALYZE``) is read again token by token, up to this many tokens;
#: past it, it is judged as unreadable (fail closed: a write with session effects).
_FAR_TOKENS = 16384
#: First words whose statements need more than their first token to be judged.
_WINDOWED_HEADS = frozenset(
    {"WITH", "SET", "CREATE", "ALTER", "DROP", "RENAME", "EXECUTE", "USE", "XA"} | _EXPLAIN_HEADS
)
_PROGRAM_WORDS = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"})
_HEAD_CLASSES = {"COMMIT": 1, "ROLLBACK": 1, "CREATE": 2, "DROP": 2, "ALTER": 2, "FLUSH": 3}
_MARK = "\x01"  # stands for the digits of a version gate whose comment is skipped


def _is_ident(ch: str) -> bool:
    return ch in _ASCII_IDENT or ch >= "\x80"


def _keyword(text: str) -> str:
    """A word as keywords compare: ASCII letters upper-cased; a word with any other letter can
    never be a keyword (``ſelect`` is not ``SELECT`` to the server), so it is kept as it is."""
    return text.upper() if text.isascii() else text


# Quoted text ends at an undoubled quote; a backslash escapes the next character (when
# escapes apply). Compiled per quote and escaping; one match reads the whole text.
_QUOTED_BODY = {
    (quote, escapes): re.compile(
        rf"(?:[^{q}\\]++|\\[\s\S]|{q}{q})*+{q}" if escapes else rf"(?:[^{q}]++|{q}{q})*+{q}"
    )
    for quote, q in (("'", "'"), ('"', '"'), ("`", "`"))
    for escapes in (False, True)
}


def _quoted_end(sql: str, i: int, quote: str, escapes: bool) -> int:
    """The end (exclusive) of the quoted text opening at ``i``: at an undoubled ``quote``; a
    backslash escapes the next character when ``escapes``. -1 when it never ends."""
    match = _QUOTED_BODY[quote, escapes].match(sql, i + 1)
    return -1 if match is None else match.end()


def _comment_end(sql: str, i: int, nested: bool) -> int:
    """The end (exclusive) of a ``/* */`` comment whose text starts at ``i`` (just after the
    opener); with ``nested`` inner ``/* */`` comments are allowed (a skipped versioned
    comment). -1 when it never ends."""
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


# ------------------------------------------------------------------ skipping runs at C speed


def _alternation(words: frozenset[str] | set[str]) -> str:
    """A regular expression matching any of ``words``, as a trie (one character test per
    letter, not one attempt per word)."""
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:  # type: ignore[type-arg]
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            body = f"(?:{body})?"
        return body

    return build(trie)


# Character classes written over ASCII only (a class with a range up to U+10FFFF costs
# milliseconds to compile): every character from U+0080 up is a name character.
_IDC = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # a name character
_IDSTART = r"[^\x00-\x23\x25-\x40\x5b-\x5e\x60\x7b-\x7f]"  # ... that is no digit


def _other_chars(taken: str) -> str:
    """A class of the ASCII characters that are no name character and not in ``taken``."""
    name = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$"
    chars = [c for c in range(128) if chr(c) not in name and chr(c) not in taken]
    return "[" + "".join(f"\\x{c:02x}" for c in chars) + "]" if chars else "(?!)"


_HOSTC = r"[^\x00-\x23\x25-\x2d\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # ... or '.'
_SP = r" \t\n\r\x0b\x0c"
_PLAIN_OP_CLASS = r"(),=<>!+&|^~?{}\[\]"
#: Single characters that are a token of their own and nothing else.
_MYSQL_OTHER = _other_chars(" \t\n\r\x0b\x0c(),=<>!+&|^~?{}[]'\"`-#/*;.@%:\\\x00")
_SQLITE_OTHER = _other_chars(" \t\n\x0c\r!&()*+,<=>]^{|}~\\'\"`[-/.%;?:@#")

#: Word groups by the fact they can change (see `_scan` and `_session_statement`).
_CALLS_NONDETERMINISTIC = NONDETERMINISTIC
_CALLS_EFFECT = WRITE_FUNCTIONS | {"LAST_INSERT_ID"}
_CALLS_STATE = _SESSION_FUNCTIONS | {"LAST_INSERT_ID"}
#: Every word the scanner must see wherever it is (reading the statement head aside).
_RELEVANT_WORDS = (
    NONDETERMINISTIC
    | _BARE_FORMS
    | WRITE_FUNCTIONS
    | {"INTO", "NEXT", "PREVIOUS", "FOR", "LOCK", "LAST_INSERT_ID", "MYSQL"}
    | {"TO", "CHAIN", "RELEASE", "NO", "TEMPORARY", "EXPORT"}
)
_RELEVANT_QUALIFIED = frozenset({"NEXTVAL", "CURRVAL", "LASTVAL"})


class _Runs:
    """Compiled regular expressions that skip runs of tokens which cannot change any fact,
    one per scanner state (sql_mode, inside an executable comment, which facts are already
    settled for the statement, its first word). Each alternative reads exactly one token or
    comment the way `_lex_mysql` does, so a run ends on a token boundary; a token that might
    matter ends the run and is read one by one. Each is compiled when first needed."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[object, ...], re.Pattern[str]] = {}

    def get(self, key: tuple[object, ...]) -> re.Pattern[str]:
        pattern = self._compiled.get(key)
        if pattern is None:
            pattern = self._compiled[key] = re.compile(self.source(*key))  # type: ignore[arg-type]
        return pattern

    @staticmethod
    def source(
        ansi: bool,
        nbe: bool,
        pct: bool,
        skip_mark: bool,
        in_exec: bool,
        broken: bool,
        det_done: bool,
        effect: int,
        locks_done: bool,
        account_seen: bool,
        head_class: int,
    ) -> str:
        pc = "%" if pct else ""  # quoted text holding a '%' is read one by one then
        sep_items = [
            rf"[{_SP}]++",
            r"/\*(?!!)[^*]*+\*++(?:[^/*][^*]*+\*++)*+/",
            r"--(?=[\x00-\x20\x7f]|\Z)[^\n\x00]*+",
            r"#[^\n\x00]*+",
        ]
        if in_exec:
            sep_items.append(r"\*/")
        sep = "(?:" + "|".join(sep_items) + ")*+"

        def then(what: str) -> str:  # the next token is `what` (or cannot be told here)
            return rf"(?=(?:{sep})(?:{what}|/\*!))"

        def end(word: str) -> str:
            return rf"{word}(?!{_IDC})"

        words: list[str] = []
        qualified: set[str] = set()
        if not broken:
            qualified = _fact_words(
                words, end, then, det_done, effect, locks_done, head_class, into_variable=True
            )
        if not account_seen:  # they matter to a statement the server refuses (`_judge`)
            words.append(end(_alternation(_ACCOUNT_WORDS)))
        not_relevant = "(?!(?ai:" + "|".join(words) + "))" if words else ""

        # Quoted text as `_lex_mysql` reads it in this sql_mode; in the default mode a string
        # whose end would move without backslash escapes, or a "..." string holding a NUL, is
        # read one by one (the text then depends on the mode).
        # A quoted token right before '@': 'user'@'host' is read with it ('@' then a quote),
        # else one by one (what follows the '@' depends on the token before it).
        at = r"""(?:@(?=['"`])|(?!@))"""
        if nbe:
            single = rf"'(?:[^'{pc}]++|'')*+'"
            double = rf'"(?:[^"{pc}]++|"")*+"'
        elif ansi:
            escaped = r"\\[^%]" if pct else r"\\[\s\S]"
            single = rf"'(?:[^'\\{pc}]++|{escaped}|'')*+'"
            double = rf'"(?:[^"{pc}]++|"")*+"'  # a name: no escapes (the NUL test is below)
        else:
            single = rf"'(?:[^'\\{pc}]++|\\[^'{pc}]|'')*+'"
            double = rf'"(?:[^"\\{pc}\x00]++|\\[^"{pc}\x00]|"")*+"'
        mysql_name = "" if broken else '(?!(?ai:mysql)[`"])'
        backtick = rf"`{mysql_name}(?:[^`{pc}\x00]++|``)*+`"
        quoted = [single + at, backtick + at]
        if ansi:
            quoted.append(rf'"{mysql_name}(?:[^"{pc}\x00]++|"")*+"' + at)
        else:
            quoted.append(double + at)
        comments = [
            rf"/\*(?!!)[^*{pc}]*+\*++(?:[^/*{pc}][^*{pc}]*+\*++)*+/",
            rf"--(?=[\x00-\x20\x7f]|\Z)[^\n\x00{pc}]*+(?=[\n\x00]|\Z)",
            rf"#[^\n\x00{pc}]*+(?=[\n\x00]|\Z)",
        ]
        if skip_mark:  # a skipped versioned comment: inner /* */ comments are allowed
            comments.append(
                rf"/\*!{_MARK}[^/*{pc}]*+(?:(?:/(?!\*)|\*(?!/))[^/*{pc}]*+"
                rf"|/\*[^*{pc}]*+\*++(?:[^/*{pc}][^*{pc}]*+\*++)*+/[^/*{pc}]*+)*+\*/"
            )
        if qualified:
            dot = rf"\.(?![0-9])(?!(?ai:{end(_alternation(qualified))})){_IDC}*+(?!\.[0-9])"
        else:
            dot = rf"\.(?![0-9]){_IDC}*+(?!\.[0-9])"
        host = rf"{_HOSTC}*+"

        def alternatives(star: str) -> list[str]:
            found = [
                # whitespace, operators and the numbers between them, at once
                rf"[{_SP}{_PLAIN_OP_CLASS}0-9]*[{_SP}{_PLAIN_OP_CLASS}]",
                # a word (not x'..' nor b'..', read below), not one that may matter
                # (a name right before ".5" is read one by one: "t.5" is "t", ".", "5")
                rf"(?={_IDSTART})(?![xXbB]'){not_relevant}{_IDSTART}{_IDC}*+(?!\.[0-9])",
                # numbers, and names that start with digits
                rf"0x[0-9A-Fa-f]++(?!{_IDC})|0b[01]++(?!{_IDC})|[0-9]++[eE][+-]?[0-9]++"
                rf"|[0-9]++{_IDSTART}{_IDC}*+(?!\.[0-9])"
                r"|[0-9]++(?!{_IDSTART})(?:\.(?!\.)[0-9]*+(?:[eE][+-]?[0-9]++)?)?",
                r"(?:[xX]'(?:[0-9A-Fa-f][0-9A-Fa-f])*+'|[bB]'[01]*+')" + at,
                *quoted,
                *comments,
                r"-(?!-(?:[\x00-\x20\x7f]|\Z))",
                star,
                r"/(?!\*)",
                r"%%|%s|%\([A-Za-z_][A-Za-z0-9_]*\)s|%",
                r":(?!=)",
                r"\\N?",
                _MYSQL_OTHER,
                dot,
            ]
            if det_done or broken:  # variables; after a quote ('user'@'host') one by one
                var_double = rf'"(?:[^"{pc}]++|"")*+"' if (ansi or nbe) else double
                found.append(
                    rf"(?<!['\"`])@(?:@(?:`(?:[^`{pc}]++|``)*+`(?!@)|{host})"
                    rf"|{single}(?!@)|{var_double}(?!@)|`(?:[^`{pc}]++|``)*+`(?!@)|{host})"
                )
            if effect == 2 or broken:
                found.append(":=")
            if broken:  # nothing more can change: statements no longer end
                found += [";", r"\*/", r"/\*!(?![\x00-\x08])", r"\x00"]
            return found

        opener = r"/\*!(?![\x00-\x08])"
        if broken:
            return "(?:" + "|".join(alternatives(r"\*")) + ")*+"
        if in_exec:
            return "(?:" + "|".join(alternatives(r"\*(?!/)") + [opener]) + ")*+"
        # A whole executable comment whose code changes nothing.
        inner = "|".join(alternatives(r"\*(?!/)") + [opener])
        return "(?:" + "|".join(alternatives(r"\*") + [rf"{opener}(?:{inner})*+\*/"]) + ")*+"


_RUNS = _Runs()


def _gap_placeholders(text: str) -> tuple[int, list[str]]:
    """The ``%s`` count and ``%(name)s`` names of a skipped run (code only: quoted text or
    comments holding a ``%`` are never skipped), read as `_placeholder` reads them."""
    if "%" not in text:
        return 0, []
    text = text.replace("%%", "\x00\x00")  # %% first, left to right, as the scanner does
    return text.count("%s"), _NAMED_PLACEHOLDER.findall(text)


def _lex_mysql(
    sql: str, ansi_quotes: bool, no_backslash: bool, exact: bool = False
) -> tuple[list[_Piece], list[_Placeholder], bool] | None:
    """Scan ``sql`` (its executable comments rewritten for one server by `_rewrite_gates`)
    in the given ``sql_mode`` as MariaDB's ``lex_one_token`` would.

    Returns the pieces (whitespace-only ones dropped), the placeholders, and whether some
    string or ``"name"`` would end elsewhere under another ``sql_mode`` (checked only when
    scanning in the default mode). Past a statement's head, runs of tokens that can change
    no fact are skipped at C speed (`_Runs`) unless ``exact``; an ``exact`` scan gives up
    (None) past `_FAR_TOKENS` tokens."""
    n = len(sql)
    has_nul = "\x00" in sql
    check_modes = not ansi_quotes and not no_backslash and (has_nul or "\\" in sql)
    escapes = not no_backslash
    pct = "%" in sql and ("%s" in sql or "%(" in sql or "%%" in sql)
    skip_mark = _MARK in sql
    space, ident, digits, plain_ops = _MYSQL_SPACE, _ASCII_IDENT, _DIGITS, _PLAIN_OPS
    ident_run, digit_run = _IDENT_RUN.match, _DIGIT_RUN.match
    relevant_words, relevant_qualified, account_words = (
        _RELEVANT_WORDS,
        _RELEVANT_QUALIFIED,
        _ACCOUNT_WORDS,
    )
    pieces: list[_Piece] = []
    placeholders: list[_Placeholder] = []
    tokens: list[Token] = []
    add = tokens.append
    start = 0  # where the current piece starts
    comment = False  # the current piece holds a comment
    broken = False  # the server refuses the current piece; it runs to the end of the text
    in_exec = False  # inside the code of an executable comment
    mode_dependent = False
    # Per piece: its leading '(' tokens; tokens still to read one by one after one that may
    # matter; how far the settled facts were brought up to date (-1: the head is being read);
    # what is settled; whether runs were skipped; whether a word names a secret.
    lead = ahead = effect = head_class = 0
    scanned = -1
    det_done = locks_done = gapped = account_seen = False
    live_words, live_qualified = relevant_words, relevant_qualified
    dirty = False  # a token that `_scan` looks at was read since the facts were settled
    # Statements already read (without placeholders), by text: a text of many equal
    # statements is read once per distinct one. ``marks``: placeholders before this one.
    memo: dict[str, tuple[list[Token], bool, bool]] = {}
    marks = 0
    run = None
    budget = _FAR_TOKENS
    i = 0
    while i < n:
        if exact:
            budget -= 1
            if budget < 0:
                return None
        elif not tokens and not in_exec and not broken:  # whitespace and comments first
            if memo and i == start and not comment:  # a statement read before, again?
                j = sql.find(";", i, i + _MEMO_MAX_LEN + 1)
                seen = memo.get(sql[i:j]) if j >= 0 else None
                if seen is not None:  # the same text reads the same from a statement start
                    pieces.append((start, j, seen[0], seen[1], False, seen[2]))
                    start = i = j + 1
                    continue
            if not comment:  # empty statements are dropped
                end = _EMPTY_STATEMENTS.match(sql, i).end()  # type: ignore[union-attr]
                if end > i:
                    start = sql.rfind(";", i, end) + 1 or start
                    i = end
                    if i >= n:
                        break
            end = _LEADING.match(sql, i).end()  # type: ignore[union-attr]
            if end > i:
                comment = comment or bool(sql[i:end].strip(space))
                i = end
                if i >= n:
                    break
        elif not ahead and len(tokens) > lead:
            if scanned < 0:
                first = tokens[lead]
                if (
                    first[0] != WORD
                    or first[1] not in _WINDOWED_HEADS
                    or len(tokens) - lead >= _HEAD_WINDOW
                ):
                    head_class = _HEAD_CLASSES.get(first[1], 0) if first[0] == WORD else 0
                    scanned = 0
            if scanned >= 0:
                if dirty and not broken:
                    settled = _settle(tokens, scanned, len(tokens), det_done, effect, locks_done)
                    scanned, dirty = len(tokens), False
                    if settled is not None:
                        det_done, effect, locks_done = settled
                        live_words, live_qualified = _live(settled)
                        run = None
                if run is None:
                    key: tuple[object, ...] = (ansi_quotes, no_backslash, pct, skip_mark)
                    key += (in_exec, broken, det_done, effect, locks_done, account_seen, head_class)
                    run = _RUNS.get(key).match
                end = run(sql, i).end()  # type: ignore[union-attr]
                if end > i:
                    if tokens[-1] is not _GAP:
                        add(_GAP)
                    gapped = True
                    if pct and sql.find("%", i, end) >= 0:
                        placeholders.append((i, end, _GAPPED))
                    i = end
                    if i >= n:
                        break
        before = len(tokens)
        c = sql[i]
        if c in space:
            nxt = sql[i + 1 : i + 2]
            i = _SPACE_RUN.match(sql, i).end() if nxt and nxt in space else i + 1  # type: ignore[union-attr]
            continue
        elif c in ident or c >= "\x80":
            if c in digits:  # a number, or a name that starts with digits
                j = digit_run(sql, i).end()  # type: ignore[union-attr]
                nxt = sql[j] if j < n else ""
                end = -1
                if nxt == "x" or nxt == "b":
                    if j == i + 1 and c == "0":  # 0x1F, 0b101
                        hex_end = (_HEX_RUN if nxt == "x" else _BIN_RUN).match(sql, j + 1).end()  # type: ignore[union-attr]
                        if hex_end > j + 1 and (hex_end >= n or not _is_ident(sql[hex_end])):
                            add(_NUMBER)
                            end = hex_end
                    nxt = "a"  # 0x1g, 12b: a name
                if end >= 0:
                    pass
                elif nxt and (nxt in ident or nxt >= "\x80"):
                    if nxt == "e" or nxt == "E":  # 1e5, 1e+5; else a name such as 1e or 1ex
                        k = j + 1
                        if k < n and (sql[k] == "+" or sql[k] == "-"):
                            k += 1
                        if k < n and sql[k] in digits:
                            add(_NUMBER)
                            end = digit_run(sql, k).end()  # type: ignore[union-attr]
                    if end < 0:
                        end = ident_run(sql, i).end()  # type: ignore[union-attr]
                        add((WORD, _keyword(sql[i:end])))
                else:
                    if nxt == "." and sql[j + 1 : j + 2] != ".":
                        j = _exponent_end(sql, digit_run(sql, j + 1).end())  # type: ignore[union-attr]
                    add(_NUMBER)
                    end = j
                i = end
            elif c in "xXbBnN" and sql[i + 1 : i + 2] == "'":
                if c == "n" or c == "N":  # N'national string'
                    end = _quoted_end(sql, i + 1, "'", escapes)
                    if check_modes and end != _quoted_end(sql, i + 1, "'", False):
                        mode_dependent = True
                    if end < 0:
                        broken, i, run = True, n, None
                        continue
                    add(_STRING)
                    i = end
                else:
                    hex_digits = c == "x" or c == "X"
                    hex_end = (_HEX_RUN if hex_digits else _BIN_RUN).match(sql, i + 2).end()  # type: ignore[union-attr]
                    if (
                        hex_end < n
                        and sql[hex_end] == "'"
                        and (not hex_digits or (hex_end - i) % 2 == 0)
                    ):
                        add(_STRING)
                        i = hex_end + 1
                    else:
                        broken, run = True, None  # x'4', x'4g': the server aborts here
                        i = hex_end
                        continue
            else:
                end = ident_run(sql, i).end()  # type: ignore[union-attr]
                word = sql[i:end]
                add((WORD, word.upper() if word.isascii() else word))  # see _keyword
                i = end
        elif c in plain_ops:
            if c == "(" and len(tokens) == lead:  # opening parentheses before the first word
                end = _OPEN_RUN.match(sql, i).end()  # type: ignore[union-attr]
                count = sql.count("(", i, end)
                tokens.extend([_LPAREN] * count)
                lead += count
                i = end
                continue
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
                broken, i, run = True, n, None
                continue
            add(_STRING)
            i = end
        elif c == "`" or c == '"':  # a quoted name
            end = _quoted_end(sql, i, c, False)
            if end < 0 or (has_nul and "\x00" in sql[i:end]):
                broken, i, run = True, n, None  # an unterminated name, or a NUL in it
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
            continue
        elif c == "/":
            if sql[i + 1 : i + 2] != "*":
                add(_SLASH)
                i += 1
            else:
                comment = True
                if sql[i + 2 : i + 3] != "!":
                    i = _comment_end(sql, i + 2, nested=False)
                elif sql[i + 3 : i + 4] == _MARK:  # skipped (see _rewrite_gates)
                    i = _comment_end(sql, i + 3, nested=True)
                else:
                    in_exec, run = True, None  # run as code
                    i += 3
                    continue
                if i < 0:
                    broken, i, run = True, n, None  # a comment that never ends
                continue
        elif c == "*":
            if in_exec and sql[i + 1 : i + 2] == "/":
                in_exec, run = False, None
                i += 2
                continue
            add(_STAR)
            i += 1
        elif c == ";":
            if in_exec:
                broken, run = True, None  # the server refuses a ';' in an executable comment
            if not broken:
                pieces.append((start, i, tokens, comment, False, gapped))
                if i - start <= _MEMO_MAX_LEN and len(placeholders) == marks:
                    memo[sql[start:i]] = (tokens, comment, gapped)
                marks = len(placeholders)
                tokens = []
                add = tokens.append
                start = i + 1
                comment = gapped = det_done = locks_done = account_seen = False
                lead = ahead = effect = head_class = 0
                scanned = -1
                run = None
                live_words, live_qualified = relevant_words, relevant_qualified
                dirty = False
            i += 1
            continue
        elif c == ".":
            # After a bare name, "." then a name character separates a qualified name (t.1x);
            # elsewhere ".5" is a number. A name right after "." is never a keyword (t.into).
            nxt = sql[i + 1 : i + 2]
            if nxt in digits and nxt:
                before_char = sql[i - 1] if i else " "
                if not (
                    (before_char in ident or before_char >= "\x80")
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
                        broken, i, run = True, n, None
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
                    broken, i, run = True, n, None
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
            else:
                add(_COLON)
                i += 1
        elif c == "\\" and sql[i + 1 : i + 2] == "N":  # \N is NULL
            add(_NUMBER)
            i += 2
        else:
            if c == "\x00":
                broken, run = True, None  # the server reads a NUL in code as the end
            add((OP, c))
            i += 1
        # A token that may matter is followed by `_LOOKAHEAD` tokens read one by one.
        if len(tokens) > before:
            token = tokens[-1]
            kind = token[0]
            if kind == WORD or kind == QUALIFIED or kind == QUOTED:
                value = token[1]
                if not account_seen and kind == WORD and value in account_words:
                    account_seen, run = True, None
                if (kind == WORD and value in live_words) or (
                    kind == QUALIFIED and value in live_qualified
                ):
                    dirty = True
                    context = _CONTEXT.get(value) if kind == WORD else None
                    if value == "INTO" and effect == 1:  # only INTO @v can add to it
                        context = _INTO_VARIABLE
                    if context is None or context(sql, i):  # else it changes nothing here
                        ahead = _LOOKAHEAD
                    elif ahead:
                        ahead -= 1
                elif kind == QUOTED and value.lower() == "mysql":
                    ahead = _LOOKAHEAD
                elif ahead:
                    ahead -= 1
            else:
                if kind == VAR or token is _ASSIGN:
                    dirty = True
                if ahead:
                    ahead -= 1
            # Bring the settled facts up to date now and then (up to the tokens whose
            # following tokens are all read), so that a word repeated once its effect is
            # known stops being read one by one.
            if (
                dirty
                and scanned >= 0
                and len(tokens) - scanned >= 8
                and not broken
                and tokens[-1] not in _UNSETTLED
                and tokens[-2] not in _UNSETTLED
            ):
                settled = _settle(tokens, scanned, len(tokens), det_done, effect, locks_done)
                scanned = len(tokens)
                if settled is not None:
                    det_done, effect, locks_done = settled
                    live_words, live_qualified = _live(settled)
                    run = None
    if in_exec:
        broken = True  # an executable comment that never ends
    pieces.append((start, n, tokens, comment, broken, gapped))
    return [p for p in pieces if p[2] or p[3] or p[4]], placeholders, mode_dependent


# What must follow a word for it to matter (`_scan`): after the word, past whitespace and
# comments, these tokens (or an executable comment: then it cannot be told here).
_CONTEXT_SEP = (
    r"(?:[ \t\n\r\x0b\x0c]++|/\*(?!!)[^*]*+\*++(?:[^/*][^*]*+\*++)*+/"
    r"|--(?=[\x00-\x20\x7f]|\Z)[^\n\x00]*+|#[^\n\x00]*+|\*/)*+"
)


def _context(what: str) -> Callable[[str, int], object]:
    return re.compile(rf"{_CONTEXT_SEP}(?:{what}|/\*!)", re.IGNORECASE | re.ASCII).match


_INTO_VARIABLE = _context("@")
_CONTEXT: dict[str, Callable[[str, int], object]] = {
    "FOR": _context(r"(?:UPDATE|SHARE)(?![0-9A-Za-z_$\x80-\uffff])"),
    "LOCK": _context(r"IN(?![0-9A-Za-z_$\x80-\uffff])"),
    "NEXT": _context(r"VALUE(?![0-9A-Za-z_$\x80-\uffff])"),
    "PREVIOUS": _context(r"VALUE(?![0-9A-Za-z_$\x80-\uffff])"),
    "MYSQL": _context(r"\."),
    **dict.fromkeys(_CALLS_NONDETERMINISTIC | _CALLS_EFFECT | _CALLS_STATE, _context(r"\(")),
}


#: Tokens that `_scan` may over-read while the two tokens after them are not read yet
#: (``LAST_INSERT_ID(`` then nothing looks like an argument); everything else can only be
#: under-read, which settles less, never wrongly.
_UNSETTLED = frozenset({(WORD, "LAST_INSERT_ID"), (WORD, "UNIX_TIMESTAMP")})


def _settle(
    tokens: list[Token], a: int, b: int, det_done: bool, effect: int, locks_done: bool
) -> tuple[bool, int, bool] | None:
    """What `_scan` finds in ``tokens[a:b]`` added to what a statement is known to do
    (None when nothing changes): deterministic no more, its effect level (1: a side effect,
    2: one that leaves state too), row locks."""
    fx, lk, st, det = _scan(tokens[a:b])
    level = 2 if st else 1 if fx else 0
    if level > effect or (lk and not locks_done) or (not det and not det_done):
        return det_done or not det, max(effect, level), locks_done or lk
    return None


@functools.cache
def _live(settled: tuple[bool, int, bool]) -> tuple[frozenset[str], frozenset[str]]:
    """The words (and qualified names) that may still change a fact, given `_settle`'s."""
    det_done, effect, locks_done = settled
    words = {"MYSQL", "TO", "CHAIN", "RELEASE", "NO", "TEMPORARY", "EXPORT", "LOCK"}
    qualified: set[str] = set()
    if not det_done:
        words |= _CALLS_NONDETERMINISTIC | _BARE_FORMS | {"PREVIOUS", "NEXT"}
        qualified |= _RELEVANT_QUALIFIED
    if effect == 0:
        words |= _CALLS_EFFECT | {"INTO", "NEXT"}
    if effect < 2:
        words |= _CALLS_STATE | {"INTO", "NEXT"}
        qualified.add("NEXTVAL")
    if not locks_done:
        words.add("FOR")
    return frozenset(words), frozenset(qualified)


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
# never changes the state and is not fed in). Any run of other tokens moves a state as one
# such token does, so skipped runs count as one.
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


def _fact_words(
    words: list[str],
    end: Callable[[str], str],
    then: Callable[[str], str],
    det_done: bool,
    effect: int,
    locks_done: bool,
    head_class: int,
    *,
    into_variable: bool,
) -> set[str]:
    """Append to ``words`` the patterns of the words a run may not skip while a fact is still
    open (both dialects: ``end`` and ``then`` spell a word's end and the next token in
    each); return the qualified names that matter (``NEXTVAL``...). ``into_variable``: once
    ``INTO`` itself no longer matters, ``INTO @v`` still does (MariaDB's user variables)."""
    plain: set[str] = set()
    calls: set[str] = set()
    qualified: set[str] = set()
    if not det_done:
        calls |= _CALLS_NONDETERMINISTIC
        plain |= _BARE_FORMS
        qualified |= _RELEVANT_QUALIFIED
        words.append(end("(?:PREVIOUS|NEXT)") + then(end("VALUE")))
    if effect < 2:
        calls |= _CALLS_STATE
        qualified.add("NEXTVAL")
        words.append(end("NEXT") + then(end("VALUE")))
        if effect == 0:
            calls |= _CALLS_EFFECT
            plain.add("INTO")
        elif into_variable:
            words.append(end("INTO") + then("@"))
    if not locks_done:
        words.append(end("FOR") + then(end("(?:UPDATE|SHARE)")))
        words.append(end("LOCK") + then(end("IN")))
    if head_class == 1:
        plain |= {"TO", "CHAIN", "RELEASE", "NO"}
    elif head_class == 2:
        plain.add("TEMPORARY")
    elif head_class == 3:
        plain |= {"LOCK", "EXPORT"}
    words.append(end("MYSQL") + then(r"\."))
    if plain:
        words.append(end(_alternation(plain)))
    if calls:
        words.append(end(_alternation(calls)) + then(r"\("))
    return qualified


def _sqlite_runs(
    pct: bool, det_done: bool, effect: int, locks_done: bool, account_seen: bool, head_class: int
) -> str:
    """`_Runs` for SQLite's tokenizer: whitespace, numbers, words that matter to nothing,
    quoted text and comments, operators; never ';', a parameter or a word of
    `_COMPLETE_WORDS`."""
    pc = "%" if pct else ""
    sep = r"(?:[ \t\n\x0c\r]++|--[^\n]*+|/\*[^*]*+\*++(?:[^/*][^*]*+\*++)*+/)*+"

    def then(what: str) -> str:
        return rf"(?={sep}{what})"

    def end(word: str) -> str:
        return rf"{word}(?!{_IDC})"

    words = [end(_alternation(set(_COMPLETE_WORDS)))]
    _fact_words(words, end, then, det_done, effect, locks_done, head_class, into_variable=False)
    if not account_seen:
        words.append(end(_alternation(_ACCOUNT_WORDS)))
    not_relevant = "(?!(?ai:" + "|".join(words) + "))"
    ops = r"!&()*+,<=>\]^{|}~\\"
    alternatives = [
        rf"[ \t\n\x0c\r{ops}]++",
        # numbers: digits, a fraction, an exponent, then any name characters
        rf"(?:[0-9]++(?:\.[0-9]*+)?|\.[0-9]++)(?:[eE][+-]?[0-9]++)?{_IDC}*+",
        # a word ('.' is read one by one: the word after it is a qualified name)
        rf"(?={_IDSTART})(?![xX]'){not_relevant}{_IDSTART}{_IDC}*+",
        r"[xX]'(?:[0-9A-Fa-f][0-9A-Fa-f])*+'",
        rf"'(?:[^'{pc}]++|'')*+'",
        rf'"(?!(?ai:mysql)")(?:[^"{pc}]++|"")*+"',
        rf"`(?!(?ai:mysql)`)(?:[^`{pc}]++|``)*+`",
        rf"\[(?!(?ai:mysql)\])[^\]{pc}]*+\]",
        rf"--[^\n{pc}]*+(?=\n|\Z)",
        rf"/\*[^*{pc}]*+\*++(?:[^/*{pc}][^*{pc}]*+\*++)*+/",
        r"/(?!\*)",
        r"-(?!-)",
        r"%%|%s|%\([A-Za-z_][A-Za-z0-9_]*\)s|%",
        _SQLITE_OTHER,
    ]
    return "(?:" + "|".join(alternatives) + ")*+"


_SQLITE_RUNS: dict[tuple[object, ...], re.Pattern[str]] = {}


def _lex_sqlite(sql: str, exact: bool = False) -> tuple[list[_Piece], list[_Placeholder]] | None:
    """Scan ``sql`` as SQLite's tokenizer would; comment-only pieces are dropped. Runs that
    change no fact are skipped as in `_lex_mysql` (unless ``exact``, which gives up past
    `_FAR_TOKENS` tokens)."""
    n = len(sql)
    pct = "%" in sql and ("%s" in sql or "%(" in sql or "%%" in sql)
    pieces: list[_Piece] = []
    placeholders: list[_Placeholder] = []
    tokens: list[Token] = []
    start, broken, state = 0, False, 0
    lead = ahead = effect = head_class = 0
    scanned = -1
    det_done = locks_done = gapped = account_seen = False
    run = None
    budget = _FAR_TOKENS
    relevant_words, relevant_qualified, account_words = (
        _RELEVANT_WORDS,
        _RELEVANT_QUALIFIED,
        _ACCOUNT_WORDS,
    )
    i = 0
    while i < n:
        if exact:
            budget -= 1
            if budget < 0:
                return None
        elif not tokens:  # whitespace and comments first
            end = _SQLITE_LEADING.match(sql, i).end()  # type: ignore[union-attr]
            if end > i:
                i = end
                if i >= n:
                    break
        elif not ahead and not broken and len(tokens) > lead:
            if scanned < 0:
                first = tokens[lead]
                if (
                    first[0] != WORD
                    or first[1] not in _WINDOWED_HEADS
                    or len(tokens) - lead >= _HEAD_WINDOW
                ):
                    head_class = _HEAD_CLASSES.get(first[1], 0) if first[0] == WORD else 0
                    scanned = 0
            if scanned >= 0:
                if scanned < len(tokens):
                    fx, lk, st, det = _scan(tokens[scanned:])
                    scanned = len(tokens)
                    level = 2 if st else 1 if fx else 0
                    if level > effect or (lk and not locks_done) or (not det and not det_done):
                        effect = max(effect, level)
                        locks_done = locks_done or lk
                        det_done = det_done or not det
                        run = None
                if run is None:
                    key = (pct, det_done, effect, locks_done, account_seen, head_class)
                    pattern = _SQLITE_RUNS.get(key)
                    if pattern is None:
                        pattern = _SQLITE_RUNS[key] = re.compile(_sqlite_runs(*key))  # type: ignore[arg-type]
                    run = pattern.match
                end = run(sql, i).end()  # type: ignore[union-attr]
                if end > i:
                    if tokens[-1] is not _GAP:
                        tokens.append(_GAP)
                        state = _COMPLETE_TRANS[state][_TK_OTHER]
                    gapped = True
                    if pct and sql.find("%", i, end) >= 0:
                        placeholders.append((i, end, _GAPPED))
                    i = end
                    if i >= n:
                        break
        before = len(tokens)
        c = sql[i]
        if c in _SQLITE_SPACE:
            nxt = sql[i + 1 : i + 2]
            i = _SQLITE_SPACE_RUN.match(sql, i).end() if nxt and nxt in _SQLITE_SPACE else i + 1  # type: ignore[union-attr]
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
                run_end = _HEX_RUN.match(sql, i + 2).end()  # type: ignore[union-attr]
                if run_end < n and sql[run_end] == "'" and (run_end - i - 2) % 2 == 0:
                    tokens.append(_STRING)
                    i = run_end + 1
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
                pieces.append((start, i, tokens, False, False, gapped))
                tokens = []
                start = i + 1
                lead = ahead = effect = head_class = 0
                scanned = -1
                det_done = locks_done = gapped = account_seen = False
                run = None
            i += 1
            continue
        elif c == "%":
            i = _placeholder(sql, i, tokens, placeholders)
        else:
            if c == "(" and len(tokens) == lead:
                lead += 1
            tokens.append((OP, c) if c != "(" else _LPAREN)
            i += 1
        state = _COMPLETE_TRANS[state][token_class]
        if len(tokens) > before:
            token = tokens[-1]
            kind = token[0]
            if kind == WORD or kind == QUALIFIED or kind == QUOTED:
                value = token[1]
                if not account_seen and kind == WORD and value in account_words:
                    account_seen, run = True, None
                if (
                    (kind == WORD and value in relevant_words)
                    or (kind == QUALIFIED and value in relevant_qualified)
                    or (kind == QUOTED and value.lower() == "mysql")
                    or token_class != _TK_OTHER
                    or token == _DOT
                ):
                    ahead = _LOOKAHEAD
                elif ahead:
                    ahead -= 1
            elif token == _DOT:
                ahead = max(ahead - 1, 1)  # the word after it is a qualified name
            elif ahead:
                ahead -= 1
    pieces.append((start, n, tokens, False, broken, gapped))
    return [p for p in pieces if p[2] or p[4]], placeholders


# ------------------------------------------------------------------ readings

_GATE6 = re.compile(r"/\*(M?)!([0-9]{6})")
_GATE5 = re.compile(r"/\*(M?)!([0-9]{5})(?![0-9])")
_GATE = re.compile(r"/\*(M?)!([0-9]{5,6})")
#: Distinct gate openers looked for one at a time (each a search and a replace); past this
#: many, the rest are found in one pass.
_GATES_ONE_BY_ONE = 16


def _gate_openers(sql: str) -> list[tuple[str, str]] | None:
    """The distinct version-gated openers (``("M" or "", digits)``) in ``sql``, six digits
    first (also those inside strings: a superset); None when the text has no executable
    comment at all."""
    if "!" not in sql or ("/*!" not in sql and "/*M!" not in sql):  # (one character first:
        # a one-character search is many times faster than a longer one)
        return None
    found: list[tuple[str, str]] = []
    work = sql
    for gate in (_GATE6, _GATE5):  # six digits first: "/*!50000" is a prefix of "/*!500001"
        while len(found) < _GATES_ONE_BY_ONE:
            match = gate.search(work)
            if match is None:
                break
            found.append((match.group(1), match.group(2)))
            work = work.replace(match.group(0), " " * len(match.group(0)))
    if len(found) >= _GATES_ONE_BY_ONE and _GATE.search(work):
        found = sorted(set(_GATE.findall(sql)), key=lambda gate: -len(gate[1]))
    return found


def _runs_gate(maria: str, gate: int, version: int, mysql_server: bool) -> bool:
    """Whether ``/*!NNNNN`` (``maria`` "") or ``/*M!NNNNN`` (``maria`` "M") is run as code."""
    if maria:
        return not mysql_server and gate <= version
    return gate <= version and (mysql_server or gate < 50700 or gate > 99999)


def _rewrite_gates(
    sql: str, openers: list[tuple[str, str]], version: int, mysql_server: bool
) -> str:
    """``sql`` with every executable comment opener replaced, at the same length, by the
    form the scanner reads for this server: ``/*!`` and spaces (run as code), ``/*!`` and
    `_MARK` (skipped, inner comments allowed) or ``/*`` and spaces (an ordinary comment:
    ``/*M!`` to MySQL)."""

    def form(maria: str, digits: str) -> str:
        if maria and mysql_server:
            return "/*" + " " * (len(digits) + 2)
        if _runs_gate(maria, int(digits), version, mysql_server):
            return "/*!" + " " * (len(digits) + len(maria))
        return "/*!" + _MARK * (len(digits) + len(maria))

    if len(openers) > _GATES_ONE_BY_ONE:
        sql = _GATE.sub(lambda m: form(m.group(1), m.group(2)), sql)
    else:
        for maria, digits in openers:
            sql = sql.replace(f"/*{maria}!{digits}", form(maria, digits))
    if "/*M!" in sql:  # ungated: MariaDB runs it, MySQL skips it
        sql = sql.replace("/*M!", "/*  " if mysql_server else "/*! ")
    return sql


def _readings(
    sql: str,
) -> tuple[list[list[_Piece]], list[str], list[tuple[bool, bool]], list[_Placeholder], bool]:
    """Every reading of a ``mysql`` text (the primary one first): its pieces, the rewritten
    text and sql_mode it was read in, the primary reading's placeholders, and whether the
    text names too many version gates to be read every way."""
    base = sql
    if _MARK in sql and "/*!" + _MARK in sql:  # (taken for a skipped comment's mark)
        base = sql.replace("/*!" + _MARK, "/*!\x02")
    openers = _gate_openers(base)
    servers: list[tuple[int, bool]] = [(MARIADB_VERSION, False)]
    too_many = False
    if openers is not None:
        gates = {int(digits) for _, digits in openers}
        too_many = len(gates) > MAX_VERSION_GATES
        thresholds = {0, max(gates, default=0)} if too_many else {0, *gates}
        with_mysql = "/*M!" in sql or any(50700 <= gate <= 99999 for gate in gates)
        below_primary = max(t for t in thresholds if t <= MARIADB_VERSION)
        for threshold in sorted(thresholds):
            if threshold != below_primary:
                servers.append((threshold, False))
            if with_mysql:
                servers.append((threshold, True))
    texts = [
        base if openers is None else _rewrite_gates(base, openers, version, mysql_server)
        for version, mysql_server in servers
    ]
    readings: list[list[_Piece]] = []
    read_texts: list[str] = []
    modes: list[tuple[bool, bool]] = []
    placeholders: list[_Placeholder] = []
    mode_dependent = False
    for k, text in enumerate(texts):
        pieces, found, dependent = _lex_mysql(text, False, False)  # type: ignore[misc]
        if k == 0:
            placeholders = found
        readings.append(pieces)
        read_texts.append(text)
        modes.append((False, False))
        mode_dependent = mode_dependent or dependent
    if mode_dependent:
        for text in texts:
            for ansi_quotes, no_backslash in ((False, True), (True, False), (True, True)):
                readings.append(_lex_mysql(text, ansi_quotes, no_backslash)[0])  # type: ignore[index]
                read_texts.append(text)
                modes.append((ansi_quotes, no_backslash))
    return readings, read_texts, modes, placeholders, too_many


_ACCOUNT_TEXT = re.compile(
    rf"(?ai)(?<!{_IDC})(?:GRANT|REVOKE|USER|ROLE|PASSWORD|PREPARE|EXECUTE|MYSQL)(?!{_IDC})"
)


def _far(tokens: list[Token]) -> bool:
    """True when judging a statement read with gaps needs its tokens far past its head:
    ``WITH`` lists, ``SET STATEMENT`` variables, ``EXPLAIN ANALYZE``, stored programs."""
    start = 0
    while start < len(tokens) and tokens[start] == _LPAREN:
        start += 1
    head = _word(tokens, start)
    if head == "WITH":
        return True
    if head in _EXPLAIN_HEADS:
        i, analyze = _explained(tokens, start + 1)
        return analyze or i >= len(tokens) or tokens[i] is _GAP
    if head == "SET":
        return _word(tokens, start + 1) == "STATEMENT"
    if head in ("CREATE", "ALTER"):
        return _defines_program(tokens, start)
    return False


def _verdict_of(piece: _Piece, text: str, mode: tuple[bool, bool] | None) -> _Verdict:
    """The verdict on one piece of ``text`` (read in ``mode``; None: SQLite)."""
    start, end, tokens, _, broken, gapped = piece
    if gapped and not broken and _far(tokens):
        if mode is None:
            exact = _lex_sqlite(text[start:end], exact=True)
        else:
            exact = _lex_mysql(text[start:end], mode[0], mode[1], exact=True)  # type: ignore[assignment]
        if exact is None or len(exact[0]) != 1:  # too long to read every token: fail closed
            return WRITE, True, bool(_ACCOUNT_TEXT.search(text, start, end)), False
        tokens = exact[0][0][2]
    return _judge(tokens, broken)


# What `_read` needs of one piece: its verdict, whether it is ``XA PREPARE``, whether it is
# a plain ``USE db``.
_PieceFacts = tuple[tuple[str, bool, bool, bool], bool, bool]


def _piece_facts(
    piece: _Piece,
    text: str,
    mode: tuple[bool, bool] | None,
    seen: dict[tuple[object, ...], _PieceFacts],
) -> _PieceFacts:
    """`_verdict_of` and the head's facts of one piece; pieces with the same (few) tokens
    are judged once (``SELECT 1`` and ``SELECT 2`` read alike: values are not kept)."""
    tokens, broken = piece[2], piece[4]
    key: tuple[object, ...] | None = None
    if len(tokens) <= 32:
        key = (broken, *tokens)
        found = seen.get(key)
        if found is not None:
            return found
        if piece[5] and not broken and _far(tokens):  # judged on its text: not by tokens
            key = None
    verdict = _verdict_of(piece, text, mode)
    start, head = _head(tokens) if tokens else (-1, "")
    xa_prepare = head == "XA" and _word(tokens, start + 1) == "PREPARE"
    plain_use = head == "USE" and start == 0 and len(tokens) == 2
    plain_use = plain_use and tokens[1][0] in (WORD, QUOTED)
    facts = (verdict, xa_prepare, plain_use)
    if key is not None:
        seen[key] = facts
    return facts


def _read(sql: str, dialect: str) -> SQLFacts:
    modes: list[tuple[bool, bool] | None]
    if dialect == MYSQL:
        readings, texts, mysql_modes, placeholders, unreadable = _readings(sql)
        modes = list(mysql_modes)
        space = _MYSQL_SPACE
    elif dialect == SQLITE:
        pieces, placeholders = _lex_sqlite(sql)  # type: ignore[misc]
        readings, texts, modes = [pieces], [sql], [None]
        unreadable, space = False, _SQLITE_SPACE
    else:
        raise ValueError(f"unknown SQL dialect {dialect!r}: use 'mysql' or 'sqlite'")
    seen: dict[tuple[object, ...], _PieceFacts] = {}
    primary = readings[0]
    bounds = [(piece[0], piece[1]) for piece in primary]
    judged = [_piece_facts(piece, texts[0], modes[0], seen) for piece in primary]  # type: ignore[arg-type]
    kinds = [facts[0][0] for facts in judged]
    secrets = [piece[4] or facts[0][2] for piece, facts in zip(primary, judged)]
    session = account = xa_prepare = False
    deterministic = True
    uses = [facts[2] for facts in judged]
    for (_, leaves_state, manages_accounts, same_answer), xa, _ in judged:
        session = session or leaves_state
        account = account or manages_accounts
        deterministic = deterministic and same_answer
        xa_prepare = xa_prepare or xa
    any_secret = any(secrets)
    for r in range(1, len(readings)):  # a statement is a read only when it is one every way
        pieces = readings[r]
        aligned = len(pieces) == len(bounds)
        for k, piece in enumerate(pieces):
            verdict, xa, plain_use = _piece_facts(piece, texts[r], modes[r], seen)  # type: ignore[arg-type]
            kind, leaves_state, manages_accounts, same_answer = verdict
            account = account or manages_accounts
            session = session or leaves_state
            deterministic = deterministic and same_answer
            xa_prepare = xa_prepare or xa
            secret = piece[4] or manages_accounts
            any_secret = any_secret or secret
            if aligned and (piece[0], piece[1]) == bounds[k]:
                if kind == WRITE:
                    kinds[k] = WRITE
                if secret:
                    secrets[k] = True
                if not plain_use:
                    uses[k] = False
            else:
                aligned = False
        unreadable = unreadable or not aligned
    if unreadable:  # the readings disagree on the statements themselves
        kinds, session, deterministic = [WRITE] * len(bounds), True, False
        if any_secret:
            secrets = [True] * len(bounds)
    # Every statement a read or a plain USE, in every reading (pieces align when readable).
    reads_or_use = not unreadable and bool(kinds)
    if reads_or_use:
        reads_or_use = all(
            (kind == READ and not piece[4]) or use for kind, use, piece in zip(kinds, uses, primary)
        )
    positional = 0
    names: dict[str, None] = {}
    for start, end, name in placeholders:
        if name is _GAPPED:
            count, found = _gap_placeholders(sql[start:end])
            positional += count
            names.update(dict.fromkeys(found))
        elif name is None:
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
        secrets=tuple(secrets),
    )


_read_memo = functools.lru_cache(maxsize=4096)(_read)

_QMARK_REPLACE = re.compile(r"%%|%s|%\(([A-Za-z_][A-Za-z0-9_]*)\)s")


def _to_qmark(statement: str, dialect: str) -> str:
    if dialect == MYSQL:
        base = (
            statement.replace("/*!" + _MARK, "/*!\x02") if "/*!" + _MARK in statement else statement
        )
        openers = _gate_openers(base)
        text = base if openers is None else _rewrite_gates(base, openers, MARIADB_VERSION, False)
        placeholders = _lex_mysql(text, False, False)[1]  # type: ignore[index]
    elif dialect == SQLITE:
        placeholders = _lex_sqlite(statement)[1]  # type: ignore[index]
    else:
        raise ValueError(f"unknown SQL dialect {dialect!r}: use 'mysql' or 'sqlite'")
    if not placeholders:
        return statement
    out: list[str] = []
    at = 0
    for start, end, name in placeholders:
        out.append(statement[at:start])
        if name is _GAPPED:  # code only: every %% , %s and %(name)s in it is a placeholder
            out.append(
                _QMARK_REPLACE.sub(
                    lambda m: (
                        "%" if m.group(0) == "%%" else ":" + m.group(1) if m.group(1) else "?"
                    ),
                    statement[start:end],
                )
            )
        else:
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
