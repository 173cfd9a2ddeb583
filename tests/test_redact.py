"""Unit tests for stats.redact: secrets never reach /stats, logs or errors; the rest stays."""

from __future__ import annotations

import time

import pytest

from stats.redact import excerpt, redact, truncate

# (text, secret that must disappear, fragments that must stay)
CASES = [
    # ---- query strings and form bodies
    pytest.param(
        "GET /stats?password=hunter2&x=1 HTTP/1.1",
        "hunter2",
        ["GET /stats?password=***&x=1 HTTP/1.1"],
        id="query-password",
    ),
    pytest.param("/db?a=1&token=s3cr3t", "s3cr3t", ["/db?a=1&token=***"], id="query-token-last"),
    pytest.param("/x?passwd=pw1&y=2", "pw1", ["/x?passwd=***&y=2"], id="query-passwd"),
    pytest.param("/x?pwd=pw1#frag", "pw1", ["/x?pwd=***#frag"], id="query-pwd-fragment"),
    pytest.param("/x?pass=pw1&user=bob", "pw1", ["pass=***", "&user=bob"], id="query-pass"),
    pytest.param("/x?access_token=abc.def", "abc.def", ["/x?access_token=***"], id="query-access"),
    pytest.param("/x?api_key=K123&q=1", "K123", ["api_key=***&q=1"], id="query-api-key"),
    pytest.param("/x?APIKEY=K123", "K123", ["/x?APIKEY=***"], id="query-apikey-upper"),
    pytest.param("/x?secret=zz9&y", "zz9", ["/x?secret=***&y"], id="query-secret"),
    pytest.param("/x?auth=zz9 HTTP/1.0", "zz9", ["/x?auth=*** HTTP/1.0"], id="query-auth"),
    pytest.param(
        "/x?client_secret=zz9&db_password=pw2",
        "zz9",
        ["client_secret=***", "db_password=***"],
        id="query-prefixed-names",
    ),
    pytest.param(
        "GET /stats?password=two words&x=1 HTTP/1.1",
        "words",
        ["password=***&x=1 HTTP/1.1"],
        id="query-decoded-space",
    ),
    pytest.param("user=bob&password=pw9", "pw9", ["user=bob&password=***"], id="form-body"),
    pytest.param("password=pw9&user=bob", "pw9", ["password=***&user=bob"], id="form-body-first"),
    # ---- JSON and Python reprs
    pytest.param(
        '{"SQL":"SELECT 1","password":"hunter2"}',
        "hunter2",
        ['{"SQL":"SELECT 1","password":"***"}'],
        id="json-password",
    ),
    pytest.param('{"TOKEN": "abc123"}', "abc123", ['{"TOKEN": "***"}'], id="json-upper-key"),
    pytest.param('{"Api_Key" :  "abc123", "n": 1}', "abc123", ['"***", "n": 1}'], id="json-spaces"),
    pytest.param('{"pwd": 987654}', "987654", ['{"pwd": "***"}'], id="json-number"),
    pytest.param(
        '{"secret": "a\\"b\\"c", "x": 2}', 'a\\"b', ['{"secret": "***", "x": 2}'], id="json-escaped"
    ),
    pytest.param(
        "{'password': 'hunter2', 'user': 'bob'}",
        "hunter2",
        ["{'password': '***', 'user': 'bob'}"],
        id="python-repr",
    ),
    pytest.param(
        '{\\"auth\\":\\"abc123\\"}', "abc123", ['{\\"auth\\":\\"***\\"}'], id="json-in-json"
    ),
    pytest.param(
        '{"Authorization": "Bearer abc.def"}',
        "abc.def",
        ['{"Authorization": "***"}'],
        id="json-authorization",
    ),
    # ---- SQL credential clauses
    pytest.param(
        "CREATE USER u IDENTIFIED BY 'hunter2'",
        "hunter2",
        ["CREATE USER u IDENTIFIED BY '***'"],
        id="identified-by",
    ),
    pytest.param(
        'create user u identified by "hunter2" REQUIRE SSL',
        "hunter2",
        ['create user u identified by "***" REQUIRE SSL'],
        id="identified-by-double-lower",
    ),
    pytest.param(
        "ALTER USER u IDENTIFIED BY 'it''s \\'x' ACCOUNT LOCK",
        "it''s",
        ["ALTER USER u IDENTIFIED BY '***' ACCOUNT LOCK"],
        id="identified-by-escaped-quotes",
    ),
    pytest.param(
        "GRANT ALL ON *.* TO u IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'",
        "94BDCEBE",
        ["TO u IDENTIFIED BY PASSWORD '***'"],
        id="identified-by-password-hash",
    ),
    pytest.param(
        "CREATE USER u IDENTIFIED VIA ed25519 USING PASSWORD('hunter2')",
        "hunter2",
        ["IDENTIFIED VIA ed25519 USING PASSWORD('***')"],
        id="via-using-password",
    ),
    pytest.param(
        "CREATE USER u IDENTIFIED VIA mysql_native_password USING '*AB12' OR unix_socket",
        "AB12",
        ["USING '***' OR unix_socket"],
        id="via-using-hash",
    ),
    pytest.param(
        "CREATE USER u IDENTIFIED VIA ed25519 USING PASSWORD('a1') OR gssapi USING 'b2'",
        "b2",
        ["PASSWORD('***') OR gssapi USING '***'"],
        id="via-or-using",
    ),
    pytest.param(
        "CREATE USER u IDENTIFIED WITH caching_sha2_password BY 'hunter2'",
        "hunter2",
        ["IDENTIFIED WITH caching_sha2_password BY '***'"],
        id="with-plugin-by",
    ),
    pytest.param(
        "SET PASSWORD FOR 'bob'@'%' = 'hunter2'",
        "hunter2",
        ["SET PASSWORD FOR 'bob'@'%' = '***'"],
        id="set-password-for",
    ),
    pytest.param(
        "SET PASSWORD = PASSWORD('hunter2')",
        "hunter2",
        ["SET PASSWORD = PASSWORD('***')"],
        id="set-password-function",
    ),
    pytest.param("SET PASSWORD='hunter2'", "hunter2", ["SET PASSWORD='***'"], id="set-password-eq"),
    pytest.param("SELECT OLD_PASSWORD('hunter2')", "hunter2", ["OLD_PASSWORD('***')"], id="old-pw"),
    pytest.param(
        "CHANGE MASTER TO MASTER_HOST='h', MASTER_PASSWORD = 'hunter2', MASTER_PORT=3306",
        "hunter2",
        ["MASTER_HOST='h', MASTER_PASSWORD = '***', MASTER_PORT=3306"],
        id="master-password",
    ),
    pytest.param(
        "CHANGE REPLICATION SOURCE TO SOURCE_PASSWORD='hunter2'",
        "hunter2",
        ["SOURCE_PASSWORD='***'"],
        id="source-password",
    ),
    pytest.param(
        "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'r', PASSWORD 'hunter2')",
        "hunter2",
        ["OPTIONS (USER 'r', PASSWORD '***')"],
        id="server-options",
    ),
    pytest.param(
        "ALTER USER u IDENTIFIED BY 'new1' REPLACE 'old1'",
        "old1",
        ["IDENTIFIED BY '***' REPLACE '***'"],
        id="replace-current",
    ),
    pytest.param(
        '{"SQL":"CREATE USER u IDENTIFIED BY \\"hunter2\\""}',
        "hunter2",
        ['{"SQL":"CREATE USER u IDENTIFIED BY \\"***\\""}'],
        id="sql-in-json-escaped-quotes",
    ),
    pytest.param(
        "CREATE USER u IDENTIFIED BY 'hunter2",
        "hunter2",
        ["CREATE USER u IDENTIFIED BY '***'"],
        id="unclosed-quote",
    ),
    pytest.param(
        "syntax error near 'IDENTIFIED BY hunter2' at line 1",
        "hunter2",
        ["near 'IDENTIFIED BY ***' at line 1"],
        id="identified-by-bare",
    ),
    # ---- HTTP credentials
    pytest.param(
        "Authorization: Bearer eyJhbGci.payload.sig\r\nHost: x",
        "eyJhbGci",
        ["Authorization: Bearer ***\r\nHost: x"],
        id="authorization-bearer",
    ),
    pytest.param(
        "authorization: Basic dXNlcjpwYXNz",
        "dXNlcjpwYXNz",
        ["authorization: Basic ***"],
        id="authorization-basic",
    ),
    pytest.param(
        "token refused: Bearer abc123", "abc123", ["token refused: Bearer ***"], id="bearer"
    ),
    # ---- URLs with userinfo and command lines
    pytest.param(
        "mysql://app:hunter2@db1:3306/test?name=db1",
        "hunter2",
        ["mysql://app:***@db1:3306/test?name=db1"],
        id="dsn",
    ),
    pytest.param(
        "cannot reach redis://:hunter2@127.0.0.1:6379/0 (refused)",
        "hunter2",
        ["redis://:***@127.0.0.1:6379/0 (refused)"],
        id="dsn-no-user",
    ),
    pytest.param(
        "bad --backend mysql://app:p@ss@db1/test",
        "p@ss",
        ["mysql://app:***@db1/test"],
        id="dsn-at-in-password",
    ),
    pytest.param(
        "dbslayer serve --password=hunter2 --port 9",
        "hunter2",
        ["--password=*** --port 9"],
        id="cli",
    ),
]


@pytest.mark.parametrize(("text", "secret", "kept"), CASES)
def test_redact_hides_secret_keeps_text(text: str, secret: str, kept: list[str]) -> None:
    """Each recognised secret is replaced by *** and the text around it is left as it was."""
    out = redact(text)
    assert secret not in out
    for fragment in kept:
        assert fragment in out


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('GET /db?{"SQL":"SELECT * FROM t WHERE id=1"} HTTP/1.1', id="plain-db"),
        pytest.param("SELECT password_hash, token_count FROM users", id="column-names"),
        pytest.param("SELECT a OR b AS 'alias' FROM t", id="or-as-alias"),
        pytest.param("Access denied for user 'u'@'h' (using password: YES)", id="mysql-denied"),
        pytest.param("REPLACE INTO t VALUES ('a')", id="replace-into"),
        pytest.param("SELECT REPLACE('a', 'b', 'c')", id="replace-function"),
        pytest.param("http://db1:3306/x?bypass=1&user=bob", id="url-no-userinfo"),
        pytest.param("CREATE USER u IDENTIFIED BY RANDOM PASSWORD", id="random-password"),
        pytest.param("", id="empty"),
        pytest.param("naïve ünïcode ✓", id="unicode"),
    ],
)
def test_redact_leaves_harmless_text(text: str) -> None:
    """Text without secrets comes back unchanged."""
    assert redact(text) == text


def test_redact_is_idempotent() -> None:
    """Redacting twice changes nothing more than redacting once."""
    text = 'CREATE USER u IDENTIFIED BY \'x\' /x?token=y {"password": "z"} mysql://a:b@c'
    assert redact(redact(text)) == redact(text)


def test_truncate_short_text_unchanged() -> None:
    """Text within the limit comes back as it was."""
    assert truncate("abc", limit=3) == "abc"
    assert truncate("x" * 2048) == "x" * 2048


def test_truncate_long_text_counts_dropped_bytes() -> None:
    """Long text is cut at the limit and says how many bytes were left out."""
    assert truncate("a" * 2050) == "a" * 2048 + "…[2 more bytes]"
    assert truncate("abcdef", limit=4) == "abcd…[2 more bytes]"


def test_truncate_never_splits_a_character() -> None:
    """A multi-byte character at the cut is dropped whole and counted as dropped bytes."""
    assert truncate("ab✓cd", limit=3) == "ab…[5 more bytes]"


def test_excerpt_equals_truncate_of_redact() -> None:
    """excerpt() is redact() then truncate() for texts within its scan window."""
    text = "CREATE USER u IDENTIFIED BY 'hunter2' " + "x" * 3000
    assert excerpt(text) == truncate(redact(text))
    assert excerpt("short ?token=abc") == "short ?token=***"


def test_excerpt_of_huge_text_scans_a_bounded_head() -> None:
    """A megabyte of text is cut to the limit, secrets in the kept part hidden, bytes counted."""
    text = "/db?token=hunter2&" + "y" * 1_000_000
    out = excerpt(text, limit=100)
    assert "hunter2" not in out
    kept = "/db?token=***&" + "y" * 86
    assert out == f"{kept}…[{len(text) - len('/db?token=hunter2&') - 86} more bytes]"


def test_excerpt_hides_a_quoted_secret_cut_by_the_scan() -> None:
    """A quoted secret that the scanned head cuts in two is still hidden, not half shown."""
    text = "x" * 90 + " IDENTIFIED BY '" + "s" * 1000 + "'"
    assert "sss" not in excerpt(text, limit=100)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("-" * 200_000, id="dashes"),
        pytest.param("a." * 100_000, id="dotted-words"),
        pytest.param("'" * 200_000, id="quotes"),
        pytest.param('\\"' * 100_000, id="escaped-quotes"),
        pytest.param("SET PASSWORD " * 15_000, id="set-password"),
        pytest.param("IDENTIFIED VIA '" * 12_000, id="identified-via"),
        pytest.param('"password" ' * 18_000, id="json-keys"),
        pytest.param("a://b:" * 30_000, id="urls"),
        pytest.param("&a_" * 60_000, id="query-keys"),
        pytest.param("PASSWORD" + " " * 200_000, id="spaces"),
    ],
)
def test_redact_runs_in_linear_time(text: str) -> None:
    """Hostile input of 200 KB is redacted in well under a second (no quadratic backtracking)."""
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 2.0
