"""Unit tests for gateway.statements: splitting multi-statement SQL, placeholder rewriting."""

from __future__ import annotations

import pytest

from gateway.statements import split_statements, to_qmark

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


def test_split_unterminated_quote_swallows_rest() -> None:
    """An unterminated string runs to the end of the text (the server reports the error)."""
    assert split_statements("SELECT 'abc; SELECT 2") == ["SELECT 'abc; SELECT 2"]


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
    ("sql", "expected"),
    [
        pytest.param("-- only a comment", [], id="dash-only"),
        pytest.param("# only; a comment", [], id="hash-only"),
        pytest.param("/* only; a comment */", [], id="block-only"),
        pytest.param("SELECT 1; -- trailing note", ["SELECT 1"], id="trailing-comment-statement"),
        pytest.param(
            "SELECT 1; /* a */ ; -- b;\n ; SELECT 2;",
            ["SELECT 1", "SELECT 2"],
            id="comment-only-between",
        ),
        pytest.param(
            "/* lead */ SELECT 1; SELECT 2 -- tail",
            ["/* lead */ SELECT 1", "SELECT 2 -- tail"],
            id="comments-kept-with-code",
        ),
    ],
)
def test_split_drops_comment_only_statements(sql: str, expected: list[str]) -> None:
    """Pieces holding only comments and whitespace are dropped; comments next to code stay."""
    assert split_statements(sql) == expected


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
