"""``dbslayer grants``: the SQL that creates read accounts, and what the database then refuses."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.grants import (
    GrantsError,
    default_host,
    grants_script,
    main,
    plan_accounts,
    quote_account,
    quote_database,
    quote_string,
)
from conf.dsn import parse_dsn
from conf.load import Settings
from tests.servers import MariaDB

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), environ or {}, out, err)
    return status, out.getvalue(), err.getvalue()


def fixed_tokens() -> Iterator[str]:
    number = 0
    while True:
        number += 1
        yield f"PW{number}"


def script(*backends: str, **kwargs: object) -> str:
    tokens = fixed_tokens()
    settings = Settings(backends=backends)
    return grants_script(settings, token=lambda: next(tokens), **kwargs)  # type: ignore[arg-type]


def statements(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("--")]


# --- quoting and defaults --------------------------------------------------------------------


def test_quote_string_and_account() -> None:
    """String literals double their quotes (the same in every sql_mode)."""
    assert quote_string("app_ro") == "'app_ro'"
    assert quote_string("o'brien") == "'o''brien'"
    assert quote_account("a'b", "10.0.0.%") == "'a''b'@'10.0.0.%'"


def test_quote_database() -> None:
    """Backticks are doubled; _ and % are escaped, or GRANT would read them as wildcards."""
    assert quote_database("shop") == "`shop`"
    assert quote_database("my_shop") == "`my\\_shop`"
    assert quote_database("a`b%c") == "`a``b\\%c`"
    assert quote_database("données") == "`données`"


@pytest.mark.parametrize(
    "name", ["a\\b", "a\nb", "a\x00b", "a\x7fb", "", "trailing ", "x" * 65, "emoji\U0001f600"]
)
def test_quote_database_refuses_unsafe_names(name: str) -> None:
    """Names that cannot be quoted safely (or stored) are refused, not printed."""
    with pytest.raises(GrantsError):
        quote_database(name)


@pytest.mark.parametrize("text", ["a\\b", "a\nb", "a\rb", "a\tb", ""])
def test_quote_string_refuses_unsafe_text(text: str) -> None:
    """A backslash means different things under NO_BACKSLASH_ESCAPES; it is refused."""
    with pytest.raises(GrantsError):
        quote_string(text)


@pytest.mark.parametrize(
    ("dsn", "host"),
    [
        ("mysql://app@127.0.0.1/x", "127.0.0.1"),
        ("mysql://app@127.0.1.1:3307/x", "127.0.0.1"),
        ("mysql://app@/x", "127.0.0.1"),
        ("mysql://app@[::1]/x", "::1"),
        ("mysql://app@localhost/x", "localhost"),
        ("mysql://app@/x?unix_socket=/run/mysqld/mysqld.sock", "localhost"),
        ("mysql://app@10.0.0.5/x", "%"),
        ("mysql://app@db.example.com/x", "%"),
    ],
)
def test_default_host(dsn: str, host: str) -> None:
    """The account's host part is where the server sees the gateway connect from."""
    assert default_host(parse_dsn(dsn)) == host


# --- the script -----------------------------------------------------------------------------


def test_script_for_one_backend() -> None:
    """One backend: create, reset, grant SELECT and SHOW VIEW on its database, then the keys."""
    text = script("mysql://app:pw@127.0.0.1:3306/shop?name=a")
    assert statements(text) == [
        "CREATE USER IF NOT EXISTS 'app_ro'@'127.0.0.1' IDENTIFIED BY 'PW1';",
        "ALTER USER 'app_ro'@'127.0.0.1' IDENTIFIED BY 'PW1';",
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app_ro'@'127.0.0.1';",
        "GRANT SELECT, SHOW VIEW ON `shop`.* TO 'app_ro'@'127.0.0.1';",
    ]
    assert "-- EXECUTE would let the read account write." in text
    assert "SQL SECURITY DEFINER" in text
    assert "--     &read_user=app_ro&read_password=PW1\n" in text
    assert '--     {dsn = "<its DSN>", read_user = "app_ro", read_password = "PW1"}\n' in text
    assert "mysql://app@127.0.0.1:3306/shop?name=a" in text and ":pw@" not in text
    assert "mariadb -uroot -h 127.0.0.1 -P 3306" in text


def test_script_options_and_configured_read_user() -> None:
    """--read-user and --host win; else a configured read_user is kept (with a new password)."""
    text = script("mysql://app@10.0.0.5/shop", read_user="shop_reader", host="10.0.0.%")
    assert "GRANT SELECT, SHOW VIEW ON `shop`.* TO 'shop_reader'@'10.0.0.%';" in text
    text = script("mysql://app@10.0.0.5/shop?read_user=old_ro&read_password=old")
    assert "CREATE USER IF NOT EXISTS 'old_ro'@'%' IDENTIFIED BY 'PW1';" in text
    assert "read_password=PW1" in text and "read_password=old" not in text
    assert "'dbslayer_ro'@'%'" in script("mysql://10.0.0.5/shop")


def test_script_without_database_grants_everything_with_a_warning() -> None:
    """A DSN naming no database grants on *.*, with a comment to narrow it."""
    text = script("mysql://app@/?unix_socket=/run/mysqld/mysqld.sock")
    assert "GRANT SELECT, SHOW VIEW ON *.* TO 'app_ro'@'localhost';" in text
    assert "narrow *.* to `yourdb`.*" in text
    assert "mariadb -uroot -S /run/mysqld/mysqld.sock" in text


def test_script_shares_one_account_between_backends() -> None:
    """Backends with the same account get one block: one password, grants on every database."""
    text = script(
        "mysql://app@10.0.0.5/shop?name=primary&role=primary",
        "mysql://app@10.0.0.6/shop?name=replica",
        "mysql://app@10.0.0.6/logs_2024?name=logs&role=replica",
        "mysql://other@10.0.0.7/shop?name=other&role=replica",
        "sqlite:///demo.db?name=demo",
    )
    assert statements(text) == [
        "CREATE USER IF NOT EXISTS 'app_ro'@'%' IDENTIFIED BY 'PW1';",
        "ALTER USER 'app_ro'@'%' IDENTIFIED BY 'PW1';",
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app_ro'@'%';",
        "GRANT SELECT, SHOW VIEW ON `shop`.* TO 'app_ro'@'%';",
        "GRANT SELECT, SHOW VIEW ON `logs\\_2024`.* TO 'app_ro'@'%';",
        "CREATE USER IF NOT EXISTS 'other_ro'@'%' IDENTIFIED BY 'PW2';",
        "ALTER USER 'other_ro'@'%' IDENTIFIED BY 'PW2';",
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'other_ro'@'%';",
        "GRANT SELECT, SHOW VIEW ON `shop`.* TO 'other_ro'@'%';",
    ]
    assert "-- Account 'app_ro'@'%' for backends primary, replica, logs\n" in text
    assert "demo" not in text


def test_script_quotes_odd_names() -> None:
    """Quotes and backticks in names are quoted; comments cannot be broken out of."""
    text = script("mysql://o'neil@10.0.0.5/sh%60op?name=x")
    assert "GRANT SELECT, SHOW VIEW ON `sh``op`.* TO 'o''neil_ro'@'%';" in text
    assert "read_user=o%27neil_ro" in text
    assert all(line.startswith("--") or line.endswith(";") or not line for line in text.split("\n"))


def test_script_refuses_unsafe_or_same_accounts() -> None:
    """A backslash in a name, or a read account equal to the main one, is refused."""
    with pytest.raises(GrantsError, match="backslash"):
        script("mysql://app@db/x", read_user="a\\b")
    with pytest.raises(GrantsError, match="backslash"):
        script("mysql://app@db/x", host="10.0.0.\\%")
    with pytest.raises(GrantsError, match="another account than its user 'app'"):
        script("mysql://app@db/x", read_user="app")
    with pytest.raises(GrantsError, match="database name"):
        plan_accounts([parse_dsn("mysql://app@db/a%5Cb")])


def test_script_for_option_file_groups(tmp_path: Path) -> None:
    """Backends from option-file groups are told to add read-user and read-password there."""
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[client]\nuser = app\n[a]\nhost = 10.0.0.5\ndatabase = shop\n")
    status, out, err = run("--mysql-config", str(cnf), "--servers", "a")
    assert (status, err) == (0, "")
    assert "GRANT SELECT, SHOW VIEW ON `shop`.* TO 'app_ro'@'%';" in out
    assert f"--   backend a: add to group [a] of {cnf}\n" in out
    assert "--     read-user = app_ro\n" in out
    password = re.search(r"--     read-password = (\S+)\n", out)
    assert password and f"IDENTIFIED BY '{password.group(1)}';" in out
    assert len(password.group(1)) >= 32


# --- the command ----------------------------------------------------------------------------


def test_command_needs_a_mysql_backend(tmp_path: Path) -> None:
    """No backend, or only SQLite ones: exit 2 with a clear message and no SQL."""
    for argv in ([], ["--backend", "sqlite:///demo.db"]):
        status, out, err = run(*argv)
        assert status == 2 and out == ""
        assert err.startswith("dbslayer grants: no MySQL/MariaDB backend is configured")


def test_command_reports_bad_settings_and_usage() -> None:
    """A bad DSN is one line (password masked); --help exits 0; a bad flag exits 2."""
    status, out, err = run("--backend", "mysql://app:s3cret@db/x?colour=red")
    assert status == 2 and out == "" and "s3cret" not in err
    assert err.startswith("dbslayer grants: bad setting backends: unknown query key 'colour'")
    assert run("--help")[0] == 0
    assert run("--read-user")[0] == 2


def test_command_ignores_the_read_account_check() -> None:
    """With auth on and no read account, grants still prints: it is how the accounts are made."""
    argv = ["--auth", "--redis", "redis://127.0.0.1:6379/0", "--backend", "mysql://app@db/x"]
    status, out, _ = run(*argv)
    assert status == 0 and "GRANT SELECT, SHOW VIEW ON `x`.* TO 'app_ro'@'%';" in out


def test_command_fresh_password_each_time() -> None:
    """Every run prints a new random password."""
    first = run("--backend", "mysql://app@db/x")[1]
    second = run("--backend", "mysql://app@db/x")[1]
    pattern = r"IDENTIFIED BY '([A-Za-z0-9_-]{32,})'"
    assert re.findall(pattern, first)[0] != re.findall(pattern, second)[0]


def test_cli_dispatches_grants(tmp_path: Path) -> None:
    """``dbslayer grants`` runs from the command line and is listed in the usage."""
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "grants", "--backend", "mysql://app@db/shop"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "GRANT SELECT, SHOW VIEW ON `shop`.* TO 'app_ro'@'%';" in done.stdout
    usage = subprocess.run(
        [sys.executable, "-m", "api.cli", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert "grants" in usage.stdout


# --- against a real MariaDB -----------------------------------------------------------------

SETUP = """
DROP DATABASE IF EXISTS grants_shop;
DROP DATABASE IF EXISTS grantsXshop;
CREATE DATABASE grants_shop;
CREATE DATABASE grantsXshop;
CREATE TABLE grants_shop.t (id INT PRIMARY KEY);
INSERT INTO grants_shop.t VALUES (1), (2);
CREATE TABLE grantsXshop.secret (id INT);
CREATE VIEW grants_shop.v AS SELECT id FROM grants_shop.t;
CREATE PROCEDURE grants_shop.add_row() SQL SECURITY DEFINER INSERT INTO grants_shop.t VALUES (100);
DELIMITER //
CREATE FUNCTION grants_shop.bump() RETURNS INT MODIFIES SQL DATA SQL SECURITY DEFINER
BEGIN
  INSERT INTO grants_shop.t SELECT MAX(id) + 1 FROM grants_shop.t;
  RETURN 1;
END//
DELIMITER ;
"""


@pytest.fixture
def shop(mariadb: MariaDB) -> Iterator[MariaDB]:
    """Databases grants_shop (a table, a view, a writing procedure and function) and grantsXshop."""
    mariadb.sql(SETUP)
    yield mariadb
    import MySQLdb

    while OPEN:  # closed even when the test failed, or DROP DATABASE could wait on them
        with contextlib.suppress(MySQLdb.Error):  # closed by the test already
            OPEN.pop().close()  # type: ignore[attr-defined]
    mariadb.sql(
        "DROP DATABASE IF EXISTS grants_shop; DROP DATABASE IF EXISTS grantsXshop;"
        "DROP USER IF EXISTS 'shop_ro'@'127.0.0.1', 'root_ro'@'localhost';"
    )


OPEN: list[object] = []


def connect(mariadb: MariaDB, user: str, password: str, socket: bool = False) -> object:
    """A connection as ``user``, autocommit (no metadata lock outlives a statement)."""
    import MySQLdb

    where = (
        {"unix_socket": mariadb.socket} if socket else {"host": "127.0.0.1", "port": mariadb.port}
    )
    conn = MySQLdb.connect(
        user=user, passwd=password, db="grants_shop", autocommit=True, connect_timeout=10, **where
    )
    OPEN.append(conn)
    return conn


def refused(conn: object, sql: str) -> int:
    """The server's error number for ``sql``; fails the test if the server ran it."""
    import MySQLdb

    cursor = conn.cursor()  # type: ignore[attr-defined]
    with pytest.raises(MySQLdb.OperationalError) as info:
        cursor.execute(sql)
        cursor.fetchall()
    return int(info.value.args[0])


def password_of(text: str) -> str:
    found = re.search(r"&read_password=([A-Za-z0-9_-]+)\n", text)
    assert found, text
    return found.group(1)


def rows(mariadb: MariaDB) -> str:
    return mariadb.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM grants_shop.t").strip()


def test_read_account_on_real_mariadb(shop: MariaDB) -> None:
    """The printed SQL runs as is; the account reads, and the server refuses every write."""
    # An account of that name with far too much already: the script must take it all away.
    shop.sql(
        "CREATE USER 'shop_ro'@'127.0.0.1' IDENTIFIED BY 'old';"
        "GRANT ALL PRIVILEGES ON *.* TO 'shop_ro'@'127.0.0.1' WITH GRANT OPTION;"
    )
    dsn = shop.dsn(database="grants_shop", name="odd'name\\x")
    status, out, err = run("--backend", dsn, "--read-user", "shop_ro")
    assert (status, err) == (0, "")
    assert "'shop_ro'@'127.0.0.1'" in out and "`grants\\_shop`.*" in out
    shop.sql(out)
    shop.sql(out)  # running it again changes nothing
    password = password_of(out)

    # (the client's batch output writes the one backslash of `grants\_shop` as two)
    grants = shop.sql("SHOW GRANTS FOR 'shop_ro'@'127.0.0.1'").splitlines()
    assert len(grants) == 2 and grants[0].startswith("GRANT USAGE ON *.* TO `shop_ro`@`127.0.0.1`")
    assert grants[1] == "GRANT SELECT, SHOW VIEW ON `grants\\\\_shop`.* TO `shop_ro`@`127.0.0.1`"

    import MySQLdb

    with pytest.raises(MySQLdb.OperationalError):
        connect(shop, "shop_ro", "old")
    conn = connect(shop, "shop_ro", password)
    cursor = conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("SELECT id FROM t ORDER BY id")
    assert cursor.fetchall() == ((1,), (2,))
    cursor.execute("SELECT COUNT(*) FROM v")
    assert cursor.fetchall() == ((2,),)
    cursor.execute("SHOW CREATE VIEW v")
    assert cursor.fetchall()

    assert refused(conn, "INSERT INTO t VALUES (3)") == 1142
    assert refused(conn, "UPDATE t SET id = id + 10") == 1142
    assert refused(conn, "DELETE FROM t") == 1142
    assert refused(conn, "CREATE TEMPORARY TABLE tmp (x INT)") == 1044
    assert refused(conn, "CREATE TABLE t2 (x INT)") == 1142
    assert refused(conn, "LOCK TABLES t READ") == 1044
    assert refused(conn, "CALL add_row()") == 1370
    assert refused(conn, "SELECT bump()") == 1370
    assert refused(conn, "SELECT * FROM grantsXshop.secret") == 1142  # _ is not a wildcard
    assert refused(conn, "SELECT id FROM t INTO OUTFILE '/tmp/grants-test.out'") in (1045, 1227)
    conn.close()  # type: ignore[attr-defined]
    assert rows(shop) == "1,2"

    # The premise: the definer routines do write when their caller may EXECUTE them.
    shop.sql("CALL grants_shop.add_row(); SELECT grants_shop.bump();")
    assert rows(shop) == "1,2,100,101"


def test_read_account_over_unix_socket(shop: MariaDB) -> None:
    """A socket backend gets a 'localhost' account; the default name is the user plus _ro."""
    dsn = f"mysql://root@/grants_shop?name=local&unix_socket={shop.socket}"
    status, out, _ = run("--backend", dsn)
    assert status == 0 and "'root_ro'@'localhost'" in out
    shop.sql(out)
    conn = connect(shop, "root_ro", password_of(out), socket=True)
    cursor = conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("SELECT COUNT(*) FROM t")
    assert cursor.fetchall() == ((2,),)
    assert refused(conn, "INSERT INTO t VALUES (3)") == 1142
    assert refused(conn, "SELECT bump()") == 1370
    conn.close()  # type: ignore[attr-defined]
    assert rows(shop) == "1,2"

    # And the gateway's DSN with the printed keys parses into the read account.
    spec = parse_dsn(dsn + f"&read_user=root_ro&read_password={password_of(out)}")
    assert spec.has_read_account and spec.read_password == password_of(out)
