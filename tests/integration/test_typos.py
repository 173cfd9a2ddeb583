"""Typos are errors, on a running gateway: an unknown request key is a 400 naming the closest
(ignored under --compat original, as the reference did), an unknown DBSLAYER_* variable a
warning printed once at start-up (by the master, not by each worker), and an option file
without groups to serve stops start-up (exit 2) instead of serving the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

from tests.servers import ROOT, Gateway

TYPO = {"SQL": "SELECT 1 AS one", "ROLLBACK_ON_ERRORS": True}
WARNING = (
    "dbslayer: warning: unknown environment variable DBSLAYER_PROT (did you mean "
    "DBSLAYER_PORT?); it is ignored"
)


def test_unknown_keys_refused_then_ignored_under_compat(tmp_path: Path) -> None:
    """/db GET and POST, /dbform GET and POST: 400 naming ROLLBACK_ON_ERROR; under
    --compat original the same requests run (the key ignored)."""
    (tmp_path / "strict").mkdir()
    (tmp_path / "compat").mkdir()
    strict = Gateway(tmp_path / "strict").start()
    compat = Gateway(tmp_path / "compat", "--compat", "original").start()
    try:
        for gw, expect in ((strict, 400), (compat, 200)):
            replies = [
                gw.get("/db?" + quote(json.dumps(TYPO))),
                gw.post("/db", json.dumps(TYPO).encode()),
                gw.get("/dbform?" + urlencode(TYPO)),
                gw.post("/dbform", urlencode(TYPO).encode(), "application/x-www-form-urlencoded"),
            ]
            for reply in replies:
                assert reply.status == expect, reply
                if expect == 400:
                    message = reply.json()["ERROR"]
                    assert message.startswith(
                        "unknown request key ROLLBACK_ON_ERRORS (did you mean "
                        "ROLLBACK_ON_ERROR?); known keys: SQL, SERVER, FORMAT, PARAMS,"
                    ), message
                else:
                    assert reply.json()["RESULT"]["ROWS"] == [[1]], reply
    finally:
        strict.stop()
        compat.stop()


def test_unknown_variable_warned_once_by_the_master(tmp_path: Path) -> None:
    """DBSLAYER_PROT=9191: one warning naming DBSLAYER_PORT (two workers print none), and the
    gateway serves on its real port."""
    gw = Gateway(tmp_path, env={"DBSLAYER_PROT": "9191"}, workers=2).start()
    try:
        assert gw.db({"SQL": "SELECT 1"}).status == 200
        assert gw.output().count("unknown environment variable") == 1
        assert WARNING in gw.output()
    finally:
        gw.stop()


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env,
    )


def test_option_file_without_groups_stops_startup(tmp_path: Path) -> None:
    """--mysql-config FILE alone: exit 2 and one line naming mysql_config, servers and named;
    a group the file lacks: exit 2 naming the groups it has. No demo is served."""
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[a]\nhost = 127.0.0.1\n")
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    alone = serve("--mysql-config", str(cnf), env=env)
    assert alone.returncode == 2, alone
    assert alone.stderr == (
        f"dbslayer: bad setting mysql_config: names the option file {cnf} but no group of it "
        "to serve: set servers (--servers a:b, pooled) or named (--named a:b, chosen with "
        "SERVER) (from --mysql-config; servers from the default; named from the default)\n"
    )
    missing = serve(env={**env, "DBSLAYER_MYSQL_CONFIG": str(cnf), "DBSLAYER_NAMED": "b"})
    assert missing.returncode == 2, missing
    assert missing.stderr == (
        f"dbslayer: bad setting mysql_config: option file {cnf} has no [b] group (its groups: "
        "[a]) (from DBSLAYER_MYSQL_CONFIG; named from DBSLAYER_NAMED)\n"
    )
    assert not (tmp_path / "xdg").exists()  # (the demo database was never made)


def test_sqlite_transaction_closed_after_params_mismatch(tmp_path: Path) -> None:
    """ROLLBACK_ON_ERROR with PARAMS that do not fit (found by the schemathesis test): a 400,
    and the connection is not left inside the transaction (once, every later
    ROLLBACK_ON_ERROR request got a 500, and later writes ran inside it)."""
    gw = Gateway(tmp_path).start()
    try:
        bad = gw.db({"SQL": "SELECT ?", "ROLLBACK_ON_ERROR": True})
        assert bad.status == 400 and "PARAMS do not match" in bad.json()["ERROR"], bad
        again = gw.db({"SQL": "SELECT 2", "ROLLBACK_ON_ERROR": True})
        assert again.status == 200 and again.json()["RESULT"]["ROWS"] == [[2]], again
        gw.db({"SQL": "CREATE TABLE t (x)"})
        assert gw.db({"SQL": "INSERT INTO t VALUES (?)", "ROLLBACK_ON_ERROR": True}).status == 400
        assert gw.db({"SQL": "INSERT INTO t VALUES (1)"}).status == 200
        count = gw.db({"SQL": "SELECT COUNT(*) FROM t"}).json()["RESULT"]["ROWS"]
        assert count == [[1]]
        assert "Traceback" not in gw.output()
    finally:
        gw.stop()
