"""Unit tests for statement splitting (gateway.sql.read_sql(...).statements), placeholder
rewriting (gateway.sql.to_qmark) and the thin gateway.statements wrappers."""

from __future__ import annotations

import pytest

from gateway import statements as wrappers
from gateway.sql import read_sql, to_qmark


def split_statements(sql: str, dialect: str = "mysql") -> list[str]:
    """The statements read_sql finds, as a list."""
    return list(read_sql(sql, dialect).statements)


# ------------------------------------------------------------------ split_statements


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("SELECT 1", ["SELECT 1"], id="single"),
        pytest.param("SELECT 1;", ["SELECT 1"], id="trailing-semicolon"),
        pytest.param("SELECT 1 ; \n", ["SELECT 1"], id="trailing-semicolon-space"),
        pytest.param("SELECT 1;SELECT 2", ["SELECT 1", "SELECT 2"], id="two"),
        pytest.param("  SELECT 1 ;\n\tSELECT 2 ;  ", ["SELECT 1", "SELECT 2"], id="stripped"),
        pytest.param("SELECT 1;;;SELECT 2", ["SELECT 1", "SELECT 2"], id="empty-dropped"),
        pytest.param(";SELECT 1", ["SELECT 1"], id="leading-semicolon"),
        pytest.param("", [], id="empty-text"),
        pytest.param(" ; ;\n", [], id="only-semicolons"),
    ],
)
def test_split_basic(sql: str, expected: list[str]) -> None:
    """Top-level semicolons separate statements; empty ones are dropped, the rest stripped."""
    assert split_statements(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"], id="single-quote"),
        pytest.param('SELECT "a;b"; SELECT 2', ['SELECT "a;b"', "SELECT 2"], id="double-quote"),
        pytest.param(
            "SELECT 'it''s; here'; SELECT 2",
            ["SELECT 'it''s; here'", "SELECT 2"],
            id="doubled-single",
        ),
        pytest.param(
            'SELECT "say ""hi;"""; SELECT 2',
            ['SELECT "say ""hi;"""', "SELECT 2"],
            id="doubled-double",
        ),
        pytest.param(
            r"SELECT 'it\'s; here'; SELECT 2",
            [r"SELECT 'it\'s; here'", "SELECT 2"],
            id="backslash-single",
        ),
        pytest.param(
            r'SELECT "a\";b"; SELECT 2',
            [r'SELECT "a\";b"', "SELECT 2"],
            id="backslash-double",
        ),
        pytest.param(
            r"SELECT 'a\\'; SELECT 2",
            [r"SELECT 'a\\'", "SELECT 2"],
            id="escaped-backslash-then-close",
        ),
        pytest.param("SELECT ''; SELECT 2", ["SELECT ''", "SELECT 2"], id="empty-string"),
        pytest.param(
            "SELECT '''' ; SELECT 2", ["SELECT ''''", "SELECT 2"], id="string-of-one-quote"
        ),
        pytest.param(
            "SELECT 'a', ''; SELECT 2", ["SELECT 'a', ''", "SELECT 2"], id="adjacent-strings"
        ),
        pytest.param(
            'SELECT "it\'s;"; SELECT \'say "x;"\'',
            ['SELECT "it\'s;"', "SELECT 'say \"x;\"'"],
            id="other-quote-inside",
        ),
        pytest.param(
            "SELECT `a;b` FROM t; SELECT 2", ["SELECT `a;b` FROM t", "SELECT 2"], id="backtick"
        ),
        pytest.param(
            "SELECT `a``;b`; SELECT 2", ["SELECT `a``;b`", "SELECT 2"], id="doubled-backtick"
        ),
        pytest.param(
            r"SELECT `a\`; SELECT 2", [r"SELECT `a\`", "SELECT 2"], id="backtick-no-escape"
        ),
    ],
)
def test_split_respects_quotes(sql: str, expected: list[str]) -> None:
    """A semicolon inside quotes or backticks does not end a statement."""
    assert split_statements(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'abc; SELECT 2",
        'SELECT "abc; SELECT 2',
        "SELECT `abc; SELECT 2",
        "SELECT `a\x00b`; SELECT 2",
        "SELECT 1 /* open; SELECT 2",
        "SELECT x'4;1'; SELECT 2",
        "/*! SELECT 1; SELECT 2 */",
        "/*! SELECT 1; SELECT 2",
        "SELECT 1 -- \x00; SELECT 2",
    ],
)
def test_split_stops_where_the_server_refuses(sql: str) -> None:
    """Where the server cannot lex on (an unterminated string, name or comment, a bad hex
    literal, a ';' inside an executable comment, a NUL in code), it stops with an error: the
    rest of the text is one statement, a write."""
    facts = read_sql(sql)
    assert facts.statements == (sql,)
    assert facts.kinds == ("write",) and facts.session


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param(
            "SELECT 1 -- a; b\n; SELECT 2",
            ["SELECT 1 -- a; b", "SELECT 2"],
            id="dash-comment",
        ),
        pytest.param(
            "SELECT 1 # a; b\n; SELECT 2", ["SELECT 1 # a; b", "SELECT 2"], id="hash-comment"
        ),
        pytest.param(
            "SELECT 1 /* a; b */; SELECT 2",
            ["SELECT 1 /* a; b */", "SELECT 2"],
            id="block-comment",
        ),
        pytest.param(
            "SELECT /* x;\n y; */ 1; SELECT 2",
            ["SELECT /* x;\n y; */ 1", "SELECT 2"],
            id="multiline-block-comment",
        ),
        pytest.param(
            "SELECT 1 -- end; not a split", ["SELECT 1 -- end; not a split"], id="comment-at-end"
        ),
        pytest.param(
            "SELECT 1 /* open; forever", ["SELECT 1 /* open; forever"], id="unterminated-block"
        ),
        pytest.param(
            "SELECT '--'; SELECT '#'; SELECT '/*'; SELECT 2",
            ["SELECT '--'", "SELECT '#'", "SELECT '/*'", "SELECT 2"],
            id="comment-markers-in-strings",
        ),
        pytest.param("SELECT 5-1; SELECT 6/2", ["SELECT 5-1", "SELECT 6/2"], id="lone-operators"),
    ],
)
def test_split_respects_comments(sql: str, expected: list[str]) -> None:
    """A semicolon inside a --, # or /* */ comment does not end a statement."""
    assert split_statements(sql) == expected


@pytest.mark.parametrize(
    ("sql", "mysql", "sqlite"),
    [
        pytest.param("-- only a comment", ["-- only a comment"], [], id="dash-only"),
        pytest.param("# only; a comment", ["# only; a comment"], None, id="hash-only"),
        pytest.param("/* only; a comment */", ["/* only; a comment */"], [], id="block-only"),
        pytest.param(
            "SELECT 1; -- trailing note",
            ["SELECT 1", "-- trailing note"],
            ["SELECT 1"],
            id="trailing-comment-statement",
        ),
        pytest.param(
            "SELECT 1; /* a */ ; -- b;\n ; SELECT 2;",
            ["SELECT 1", "/* a */", "-- b;", "SELECT 2"],
            ["SELECT 1", "SELECT 2"],
            id="comment-only-between",
        ),
        pytest.param(
            "/* lead */ SELECT 1; SELECT 2 -- tail",
            ["/* lead */ SELECT 1", "SELECT 2 -- tail"],
            ["/* lead */ SELECT 1", "SELECT 2 -- tail"],
            id="comments-kept-with-code",
        ),
        pytest.param(
            "SELECT 1; /*!99999 DELETE FROM t */",
            ["SELECT 1", "/*!99999 DELETE FROM t */"],
            None,
            id="skipped-executable-comment",
        ),
    ],
)
def test_comment_only_statements(sql: str, mysql: list[str], sqlite: list[str] | None) -> None:
    """MariaDB answers a statement of comments only with an empty OK, so in the mysql dialect
    it is a statement; SQLite runs nothing for it, so there it is dropped."""
    assert split_statements(sql) == mysql
    if sqlite is not None:
        assert split_statements(sql, "sqlite") == sqlite


def test_split_keeps_inner_whitespace() -> None:
    """Only the ends of a statement are stripped; its inner text is kept byte for byte."""
    sql = "SELECT\n  a,\t b\nFROM t ;"
    assert split_statements(sql) == ["SELECT\n  a,\t b\nFROM t"]


# ------------------------------------------------------------------ to_qmark


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("SELECT %s", "SELECT ?", id="positional"),
        pytest.param("SELECT %s, %s", "SELECT ?, ?", id="two-positional"),
        pytest.param("SELECT %s+%s", "SELECT ?+?", id="adjacent"),
        pytest.param("SELECT %(id)s", "SELECT :id", id="named"),
        pytest.param("SELECT %(_a1)s, %(B)s", "SELECT :_a1, :B", id="named-chars"),
        pytest.param("SELECT 5 %% 2", "SELECT 5 % 2", id="percent"),
        pytest.param("SELECT %%s", "SELECT %s", id="escaped-percent-s"),
        pytest.param("SELECT %d", "SELECT %d", id="other-percent-kept"),
        pytest.param("SELECT %(1x)s", "SELECT %(1x)s", id="bad-name-kept"),
        pytest.param("SELECT 1", "SELECT 1", id="no-placeholder"),
        pytest.param("", "", id="empty"),
    ],
)
def test_to_qmark_rewrites(sql: str, expected: str) -> None:
    """%s becomes ?, %(name)s becomes :name and %% becomes % outside quotes and comments."""
    assert to_qmark(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT '%s'", id="single-quote"),
        pytest.param('SELECT "%(a)s"', id="double-quote"),
        pytest.param("SELECT `%s`", id="backtick"),
        pytest.param("SELECT '100%%'", id="percent-in-string"),
        pytest.param("SELECT 'it''s %s'", id="doubled-quote"),
        pytest.param(r"SELECT 'a\'%s'", id="backslash-escape"),
        pytest.param("SELECT 1 -- %s\n", id="dash-comment"),
        pytest.param("SELECT 1 # %(a)s", id="hash-comment"),
        pytest.param("SELECT 1 /* %s %% */", id="block-comment"),
    ],
)
def test_to_qmark_leaves_quotes_and_comments(sql: str) -> None:
    """Placeholders inside quotes, backticks and comments are left as they are."""
    assert to_qmark(sql) == sql


def test_to_qmark_mixed() -> None:
    """A statement mixing code, strings and comments rewrites only the code part."""
    sql = "SELECT %s, '%s' /* %s */, x %% 2 FROM t WHERE a = %(a)s -- %s\nAND b LIKE '5%%'"
    expected = "SELECT ?, '%s' /* %s */, x % 2 FROM t WHERE a = :a -- %s\nAND b LIKE '5%%'"
    assert to_qmark(sql) == expected


def test_to_qmark_preserves_everything_else() -> None:
    """Text without placeholders comes back identical, quotes and comments included."""
    sql = "SELECT 'a;b', \"c\", `d` -- e\n/* f */ # g\n"
    assert to_qmark(sql) == sql


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 'a\\'; SELECT 2", ["SELECT 'a\\'", "SELECT 2"]),
        ("SELECT 1 # not a comment; SELECT 2", ["SELECT 1 # not a comment", "SELECT 2"]),
        ("SELECT [odd;name] FROM t; SELECT 2", ["SELECT [odd;name] FROM t", "SELECT 2"]),
        ("SELECT 'it''s;'; SELECT 2 -- c;\n", ["SELECT 'it''s;'", "SELECT 2 -- c;"]),
    ],
)
def test_split_sqlite_dialect(sql: str, expected: list[str]) -> None:
    """In SQLite a backslash does not escape a quote, # is no comment and [x] quotes a name."""
    assert split_statements(sql, "sqlite") == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param(
            "SELECT 1 --\u00a0x\n;INSERT INTO t VALUES(1)",
            ["SELECT 1 --\u00a0x", "INSERT INTO t VALUES(1)"],
            id="dashes-then-nbsp-is-code",
        ),
        pytest.param(
            "SELECT 1 --\u3000; DELETE FROM t",
            ["SELECT 1 --\u3000", "DELETE FROM t"],
            id="ideographic-space",
        ),
        pytest.param(
            "SELECT 1 --x; SELECT 2", ["SELECT 1 --x", "SELECT 2"], id="dashes-then-letter"
        ),
        pytest.param("SELECT 1--1; SELECT 2", ["SELECT 1--1", "SELECT 2"], id="minus-minus-one"),
        pytest.param("SELECT 1 --\t; SELECT 2", ["SELECT 1 --\t; SELECT 2"], id="dashes-then-tab"),
        pytest.param(
            "SELECT 1 --\x01; SELECT 2", ["SELECT 1 --\x01; SELECT 2"], id="dashes-then-control"
        ),
        pytest.param("SELECT 1 --", ["SELECT 1 --"], id="dashes-at-end"),
        pytest.param(
            "SELECT 1 # c\u2028; SELECT 2\n; SELECT 3",
            ["SELECT 1 # c\u2028; SELECT 2", "SELECT 3"],
            id="hash-ends-only-at-lf",
        ),
        pytest.param(
            "SELECT 1 -- c\u0085; SELECT 2\r; SELECT 3",
            ["SELECT 1 -- c\u0085; SELECT 2\r; SELECT 3"],
            id="dash-ends-only-at-lf",
        ),
        pytest.param(
            "SELECT 1 AS a\uff1bSELECT 2", ["SELECT 1 AS a\uff1bSELECT 2"], id="fullwidth-semicolon"
        ),
        pytest.param(
            "\u00a0SELECT 1;\u00a0", ["\u00a0SELECT 1", "\u00a0"], id="nbsp-is-not-stripped"
        ),
        pytest.param("\x0bSELECT 1\x0c;\x0b", ["SELECT 1"], id="vt-ff-are-whitespace"),
        pytest.param(
            "SELECT 1 /*!99999 ; SELECT 2 */",
            ["SELECT 1 /*!99999 ; SELECT 2 */"],
            id="skipped-exec",
        ),
        pytest.param(
            "SELECT 1 /*!99999 /* x; */ ; */; SELECT 2",
            ["SELECT 1 /*!99999 /* x; */ ; */", "SELECT 2"],
            id="skipped-exec-nests-one-comment",
        ),
        pytest.param(
            "SELECT 1 /*!99999 /*/ x; */ , 2 */ , 3; SELECT 4",
            ["SELECT 1 /*!99999 /*/ x; */ , 2 */ , 3", "SELECT 4"],
            id="skipped-exec-nested-opener-first",
        ),
        pytest.param(
            "SELECT /*! 'a */ ;' */; SELECT 2",
            ["SELECT /*! 'a */ ;' */", "SELECT 2"],
            id="string-inside-exec-code",
        ),
        pytest.param(
            "SELECT 'a\\\\'; SELECT 2", ["SELECT 'a\\\\'", "SELECT 2"], id="escaped-backslash"
        ),
        pytest.param(
            "SELECT @'a;b', @`c;d`, @\"e;f\"; SELECT 2",
            ["SELECT @'a;b', @`c;d`, @\"e;f\"", "SELECT 2"],
            id="quoted-variables",
        ),
        pytest.param(
            "SELECT N'a;b', _utf8mb4'c;d', X'41', B'1'; SELECT 2",
            ["SELECT N'a;b', _utf8mb4'c;d', X'41', B'1'", "SELECT 2"],
            id="introducers",
        ),
    ],
)
def test_split_like_mariadb(sql: str, expected: list[str]) -> None:
    """Boundaries as MariaDB's lexer draws them: ASCII whitespace only, '--' a comment only
    before an ASCII space or control character, line comments end at LF, executable comments."""
    assert split_statements(sql) == expected


def test_split_sqlite_trigger_body() -> None:
    """The ';' inside CREATE TRIGGER ... BEGIN ... END does not end the statement."""
    sql = (
        "CREATE TABLE a (x); CREATE TEMP TRIGGER tr AFTER INSERT ON a BEGIN "
        "INSERT INTO b VALUES (1); UPDATE b SET y = 2; END; SELECT 1"
    )
    assert split_statements(sql, "sqlite") == [
        "CREATE TABLE a (x)",
        "CREATE TEMP TRIGGER tr AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); "
        "UPDATE b SET y = 2; END",
        "SELECT 1",
    ]
    assert split_statements("SELECT 1 /* open", "sqlite") == ["SELECT 1 /* open"]
    assert split_statements("SELECT\x0b1; SELECT 2", "sqlite") == ["SELECT\x0b1", "SELECT 2"]


def test_to_qmark_sqlite() -> None:
    """In SQLite text, backslashes do not escape and [names] are quoted."""
    assert to_qmark("SELECT 'a\\', %s, [%s]", "sqlite") == "SELECT 'a\\', ?, [%s]"
    assert to_qmark("SELECT %(a)s # %s", "sqlite") == "SELECT :a # ?"


def test_statement_wrappers() -> None:
    """gateway.statements still offers split_statements and to_qmark, wrapping gateway.sql."""
    assert wrappers.split_statements("SELECT 1; SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert wrappers.split_statements("SELECT '\\'; SELECT 2", "sqlite") == [
        "SELECT '\\'",
        "SELECT 2",
    ]
    assert wrappers.to_qmark("SELECT %s", "sqlite") == "SELECT ?"
