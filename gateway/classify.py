"""Statement classification (pure): read or write, deterministic or not.

The kind decides whether a request may go to a replica, may be sent again after a lost
connection (2013), and is counted in the statistics; determinism decides whether an answer may
be cached.

**The rule.** A statement is a *read* when its main statement is ``SELECT``, ``VALUES``,
``TABLE t``, a parenthesised query (``(SELECT 1) UNION (SELECT 2)``), ``WITH ... SELECT``,
``SHOW``, or ``EXPLAIN``/``DESCRIBE``/``DESC`` of anything -- and nothing in it takes a lock,
writes a variable or a file, or has a side effect:

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

MariaDB's ``SET STATEMENT var=value[, ...] FOR <stmt>`` has the kind of ``<stmt>`` (the
settings last for that statement only). Everything else, and any doubt, is a *write*:
``INSERT``, ``UPDATE``, ``CALL``, ``DO``, ``SET``, ``USE``, ``BEGIN``, ``LOCK TABLES``,
``HANDLER``, DDL, ``HELP``, an unknown first word, an empty or unreadable statement.

A ``SELECT`` calling a stored (user-defined) function stays a read although the function could
write: the classifier cannot see into it. That is acceptable because a write must not pass
where it matters anyway: replicas run read-only and retried reads run in a read-only
transaction, so the database refuses it.

**Text.** Case and comments (``-- ``, ``#``, ``/* */``, optimizer hints ``/*+ */``) do not
count; text in string literals and quoted identifiers never counts (``SELECT 'FOR UPDATE'``
is a read). Executable comments ``/*! ... */`` and ``/*M! ... */`` are code for one server and
comments for another (MySQL ignores ``/*M!``, versions gate both), so a statement is a read
only when it is one under both readings: ``SELECT 1 /*! FOR UPDATE */`` is a write. A word
after ``.`` is a qualified name, never a keyword (``SELECT t.into FROM t``).

The module tokenizes with its own small lexer, so string contents never match a keyword.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from gateway.statements import split_statements

READ = "read"
WRITE = "write"

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

# Token kinds: a keyword or bare identifier (value upper-cased), a word after "." (a
# qualified name, never a keyword), a quoted identifier, a string, a number, a user or system
# variable, an operator or punctuation (value is the text).
WORD, QUALIFIED, QUOTED, STRING, NUMBER, VAR, OP = (
    "word",
    "qualified",
    "quoted",
    "string",
    "number",
    "var",
    "op",
)

_SQ = r"'(?:[^'\\]|\\.|'')*'?"
_DQ = r'"(?:[^"\\]|\\.|"")*"?'
_BQ = r"`(?:[^`]|``)*`?"
_LEXER = re.compile(
    rf"""
      (?P<space> \s+ )
    | (?P<exec> /\*M?!\d* )
    | (?P<close> \*/ )
    | (?P<comment> /\*.*?(?:\*/|\Z) | --(?=\s|\Z)[^\n]* | \#[^\n]* )
    | (?P<string> {_SQ} | {_DQ} )
    | (?P<quoted> {_BQ} )
    | (?P<var> @@?(?:{_SQ}|{_DQ}|{_BQ}|[\w$.]*) )
    | (?P<number> (?:0x[0-9a-f]+|0b[01]+|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(?![\w$]) )
    | (?P<word> [\w$]+ )
    | (?P<op> :=|<=>|<>|[<>!]=|<<|>>|&&|\|\||->>?|. )
    """,
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)


class Token(NamedTuple):
    """One lexical token: its kind (see above) and its value."""

    kind: str
    value: str


def _tokenize(sql: str, executable: bool) -> list[Token]:
    """Tokens of ``sql`` without spaces and comments; executable comments are code when
    ``executable`` is true, comments otherwise."""
    tokens: list[Token] = []
    pos, in_exec, last_end = 0, False, -1
    while pos < len(sql):
        match = _LEXER.match(sql, pos)
        assert match is not None  # the "op" branch matches any character
        kind, text = match.lastgroup, match.group()
        if kind == "exec":
            if executable:
                in_exec = True
            else:  # the whole executable comment, as a comment
                end = sql.find("*/", match.end())
                pos = len(sql) if end < 0 else end + 2
                continue
        elif kind == "close" and in_exec:
            in_exec = False
        elif kind == "close":  # "*/" outside an executable comment: "*" then "/"
            tokens.append(Token(OP, "*"))
            pos += 1
            last_end = pos
            continue
        elif kind == "var" and last_end == pos and tokens and tokens[-1].kind in (STRING, QUOTED):
            tokens.append(Token(OP, "@"))  # 'user'@'host', not a variable
            pos += 1
            last_end = pos
            continue
        elif kind == "word":
            after_dot = bool(tokens) and tokens[-1] == Token(OP, ".")
            tokens.append(Token(QUALIFIED if after_dot else WORD, text.upper()))
        elif kind in ("string", "quoted", "var", "number", "op"):
            tokens.append(Token(kind, text))
        pos = match.end()
        if kind not in ("space", "comment"):
            last_end = pos
    return tokens


def _statements(tokens: list[Token]) -> list[list[Token]]:
    """Split a token list at ``;`` (a caller may pass several statements); drop empty ones."""
    groups: list[list[Token]] = [[]]
    for token in tokens:
        if token == Token(OP, ";"):
            groups.append([])
        else:
            groups[-1].append(token)
    return [group for group in groups if group]


def _word(tokens: list[Token], i: int) -> str:
    """The keyword at ``i``, or "" when there is none."""
    return tokens[i].value if i < len(tokens) and tokens[i].kind == WORD else ""


def _is(tokens: list[Token], i: int, op: str) -> bool:
    """True when the token at ``i`` is the operator ``op``."""
    return i < len(tokens) and tokens[i] == Token(OP, op)


def _skip_open(tokens: list[Token], i: int) -> int:
    """The index after any opening parentheses at ``i``."""
    while _is(tokens, i, "("):
        i += 1
    return i


def _after_group(tokens: list[Token], i: int) -> int:
    """The index after the parenthesised group opening at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if _is(tokens, j, "("):
            depth += 1
        elif _is(tokens, j, ")"):
            depth -= 1
            if depth == 0:
                return j + 1
    return len(tokens)


def _after_ctes(tokens: list[Token], i: int) -> int | None:
    """Given ``i`` just after ``WITH``, the index of the main statement; None if unreadable."""
    if _word(tokens, i) == "RECURSIVE":
        i += 1
    while True:
        if i >= len(tokens) or tokens[i].kind not in (WORD, QUOTED):
            return None
        i += 1
        if _is(tokens, i, "("):  # column list
            i = _after_group(tokens, i)
        if _word(tokens, i) != "AS" or not _is(tokens, i + 1, "("):
            return None
        i = _after_group(tokens, i + 1)
        if _word(tokens, i) == "CYCLE":  # MariaDB: CYCLE col, ... RESTRICT
            while i < len(tokens) and _word(tokens, i) != "RESTRICT":
                i += 1
            i += 1
        if not _is(tokens, i, ","):
            return i
        i += 1


def _has_side_effect(tokens: list[Token], locks: bool) -> bool:
    """True when the tokens assign, write to a variable or file, call a write function, or
    (with ``locks``) take row locks."""
    for i, token in enumerate(tokens):
        if token == Token(OP, ":="):
            return True
        if token.kind == QUALIFIED and token.value == "NEXTVAL":  # Oracle mode: seq.nextval
            return True
        if token.kind != WORD:
            continue
        word, following = token.value, _word(tokens, i + 1)
        if word == "INTO":
            return True
        if word == "NEXT" and following == "VALUE" and _word(tokens, i + 2) == "FOR":
            return True
        if locks and (
            (word == "FOR" and following in ("UPDATE", "SHARE"))
            or (word == "LOCK" and following == "IN")
        ):
            return True
        if _is(tokens, i + 1, "("):
            if word in WRITE_FUNCTIONS:
                return True
            if word == "LAST_INSERT_ID" and not _is(tokens, i + 2, ")"):
                return True
    return False


def _kind(tokens: list[Token]) -> str:
    """The kind of one statement's tokens."""
    start = _skip_open(tokens, 0)
    head = _word(tokens, start)
    if head == "WITH":
        main = _after_ctes(tokens, start + 1)
        if main is None:
            return WRITE
        head = _word(tokens, _skip_open(tokens, main))
    if head in _QUERY_HEADS or head == "SHOW":
        return WRITE if _has_side_effect(tokens, locks=True) else READ
    if head in _EXPLAIN_HEADS:
        i, analyze = start + 1, False
        while True:  # EXPLAIN [EXTENDED|PARTITIONS|FORMAT=x|ANALYZE]... statement
            option = _word(tokens, i)
            if option in ("EXTENDED", "PARTITIONS"):
                i += 1
            elif option == "FORMAT":
                i += 3 if _is(tokens, i + 1, "=") else 2
            elif option == "ANALYZE":
                i, analyze = i + 1, True
            else:
                break
        if i >= len(tokens):
            return WRITE
        if analyze:  # runs the statement
            return _kind(tokens[i:])
        # Explaining does not run the statement nor lock, but the optimizer may evaluate
        # constant subqueries while explaining, and EXPLAIN ... INTO @v sets a variable.
        return WRITE if _has_side_effect(tokens, locks=False) else READ
    if head == "SET" and _word(tokens, start + 1) == "STATEMENT":  # MariaDB: ... FOR stmt
        i = start + 2
        while i < len(tokens) and _word(tokens, i) != "FOR":
            i = _after_group(tokens, i) if _is(tokens, i, "(") else i + 1
        if i >= len(tokens) - 1 or _has_side_effect(tokens[:i], locks=False):
            return WRITE
        return _kind(tokens[i + 1 :])
    return WRITE


def classify_statement(statement: str) -> str:
    """`READ` or `WRITE` for one statement (see the module docstring for the rule).

    Text holding several statements is a read only when all are; empty text is a write."""
    code = _statements(_tokenize(statement, executable=True))
    plain = _statements(_tokenize(statement, executable=False))
    if not code:
        return WRITE
    return READ if all(_kind(group) == READ for group in code + plain) else WRITE


#: SQL texts up to this long have their classification remembered (clients repeat the same
#: statements; a bounded LRU keeps the tokenizer off the hot path).
_MEMO_MAX_LEN = 4096


def classify(sql: str) -> tuple[str, ...]:
    """The kind of each statement of a (multi-statement) SQL text; () for an empty one."""
    if len(sql) <= _MEMO_MAX_LEN:
        return _classify_memo(sql)
    return _classify(sql)


def _classify(sql: str) -> tuple[str, ...]:
    return tuple(classify_statement(statement) for statement in split_statements(sql))


_classify_memo = functools.lru_cache(maxsize=4096)(_classify)


def is_read_only(sql: str) -> bool:
    """True when the text holds at least one statement and every statement is a read."""
    kinds = classify(sql)
    return bool(kinds) and all(kind == READ for kind in kinds)


def count_kinds(sql: str) -> dict[str, int]:
    """How many statements of each kind: ``{"read": n, "write": m}``, both keys present."""
    kinds = classify(sql)
    return {READ: kinds.count(READ), WRITE: kinds.count(WRITE)}


def is_deterministic(sql: str) -> bool:
    """False when any statement calls a `NONDETERMINISTIC` function (or uses its keyword form,
    e.g. ``CURRENT_TIMESTAMP``), reads a sequence, or uses a user (``@x``) or system
    (``@@x``) variable; True otherwise (stored functions are not looked into)."""
    if len(sql) <= _MEMO_MAX_LEN:
        return _deterministic_memo(sql)
    return _is_deterministic(sql)


def _is_deterministic(sql: str) -> bool:
    tokens = _tokenize(sql, executable=True)
    for i, token in enumerate(tokens):
        if token.kind == VAR:
            return False
        if token.kind == QUALIFIED and token.value in ("NEXTVAL", "CURRVAL", "LASTVAL"):
            return False
        if token.kind != WORD:
            continue
        word = token.value
        if word in ("NEXT", "PREVIOUS") and (_word(tokens, i + 1), _word(tokens, i + 2)) == (
            "VALUE",
            "FOR",
        ):
            return False
        if word in _BARE_FORMS:
            return False
        if word in NONDETERMINISTIC and _is(tokens, i + 1, "("):
            if word == "UNIX_TIMESTAMP" and not _is(tokens, i + 2, ")"):
                continue
            return False
    return True


_deterministic_memo = functools.lru_cache(maxsize=4096)(_is_deterministic)
