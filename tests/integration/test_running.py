"""Ways to run the gateway, as a user would: dbslayer serve (demo and MySQL), the twistd plugin,
the .tac file; start-up errors; a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT, Gateway, MariaDB

BIN = Path(sys.executable).parent


def test_serve_without_backend_serves_the_demo(tmp_path: Path) -> None:
    """With no backend configured, dbslayer serve creates the demo SQLite database and says so."""
    gw = Gateway(
        tmp_path,
        env={"XDG_DATA_HOME": str(tmp_path / "data")},
        command=[str(BIN / "dbslayer"), "serve", "--port", "{port}"],
    ).start()
    try:
        answer = gw.db(
            {"SQL": "SELECT COUNT(*) AS n FROM users; SELECT name FROM users WHERE id = 7"}
        )
        assert answer.status == 200
        assert [r["ROWS"] for r in answer.json()["RESULT"]] == [[[100]], [["user7"]]]
        one = gw.db({"SQL": "SELECT name FROM users WHERE id = %s", "PARAMS": [42]}).json()
        assert one["RESULT"]["ROWS"] == [["user42"]] and one["SERVER"] == "demo"
        assert (tmp_path / "data" / "dbslayer" / "demo.sqlite3").exists()
        assert "serving the demo SQLite database" in gw.output()
    finally:
        gw.stop()
    assert gw.proc is not None and gw.proc.returncode == 0


def test_twistd_plugin_serves(mariadb: MariaDB, tmp_path: Path) -> None:
    """twistd -n dbslayer --backend DSN serves /db."""
    gw = Gateway(
        tmp_path,
        "--backend",
        mariadb.dsn(name="viaplugin"),
        command=[str(BIN / "twistd"), "-n", "--pidfile=", "dbslayer", "--port", "{port}"],
        workers=None,
    )
    gw.cwd = tmp_path
    gw.start()
    try:
        answer = gw.db({"SQL": "SELECT 1 AS one"}).json()
        assert answer == {
            "RESULT": {"HEADER": ["one"], "ROWS": [[1]], "TYPES": ["MYSQL_TYPE_LONG"]},
            "SERVER": "viaplugin",
        }
    finally:
        gw.stop()


def test_tac_file_serves(mariadb: MariaDB, tmp_path: Path) -> None:
    """twistd -ny conf/dbslayer.tac serves /db, configured through the environment."""
    gw = Gateway(
        tmp_path,
        env={"DBSLAYER_BACKENDS": mariadb.dsn(name="viatac")},
        command=[
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "-y",
            str(ROOT / "conf" / "dbslayer.tac"),
        ],
        workers=None,
    )
    gw.env["DBSLAYER_PORT"] = str(gw.port)
    gw.start()
    try:
        assert gw.db({"SQL": "SELECT 2 AS two"}).json()["SERVER"] == "viatac"
    finally:
        gw.stop()


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dbslayer"), "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, **(env or {})),
    )


def test_bad_setting_stops_startup_with_one_line() -> None:
    """A bad setting stops start-up with exit status 2 and one line naming the setting."""
    result = run_serve("--port", "99999")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "port" in lines[0] and "99999" in lines[0]
    env_result = run_serve(env={"DBSLAYER_CONNECT_TIMEOUT": "soon"})
    assert env_result.returncode == 2 and "connect_timeout" in env_result.stderr
    assert "DBSLAYER_CONNECT_TIMEOUT" in env_result.stderr


def test_password_never_printed_on_bad_dsn() -> None:
    """A bad backend DSN is reported without its password."""
    result = run_serve("--backend", "mysql://app:hunter2@db:notaport/x")
    assert result.returncode == 2 and "hunter2" not in result.stderr and "backend" in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """A port already taken stops start-up with a message, not a traceback or a hang."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--port", str(port), env={"XDG_DATA_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_sigterm_stops_cleanly(tmp_path: Path, mariadb: MariaDB) -> None:
    """SIGTERM stops the gateway with exit status 0 and the port is free again."""
    gw = Gateway(tmp_path, "--backend", mariadb.dsn()).start()
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(20) == 0
    import socket

    with socket.socket() as s:  # free for a new listener (SO_REUSEADDR, as servers bind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", gw.port))
        s.listen()


def test_help_lists_the_options() -> None:
    """dbslayer serve --help lists the options of ARCHITECTURE.md."""
    result = run_serve("--help")
    assert result.returncode == 0
    for option in (
        "--config",
        "--host",
        "--port",
        "--backend",
        "--mysql-config",
        "--servers",
        "--named",
    ):
        assert option in result.stdout


def test_demo_timeout_interrupts_sqlite(tmp_path: Path) -> None:
    """On the SQLite demo a runaway statement is interrupted at TIMEOUT: 504, then it serves on."""
    gw = Gateway(tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "data")}).start()
    try:
        endless = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
        )
        reply = gw.db({"SQL": endless, "TIMEOUT": 300})
        assert reply.status == 504 and "300 ms" in reply.json()["ERROR"]
        assert gw.db({"SQL": "SELECT COUNT(*) FROM users"}).json()["RESULT"]["ROWS"] == [[100]]
    finally:
        gw.stop()


def test_tac_file_with_a_bad_setting_says_so_in_one_line(tmp_path: Path) -> None:
    """twistd -ny conf/dbslayer.tac with a bad setting: exit status 2, the one line naming the
    setting, and no traceback (twistd prints one for any other error in a .tac file)."""
    result = subprocess.run(
        [str(BIN / "twistd"), "-ny", str(ROOT / "conf" / "dbslayer.tac")],
        cwd=tmp_path,
        env={**os.environ, "DBSLAYER_PORT": "abc"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "dbslayer.tac: bad setting port: must be an integer from 0 to 65535, got 'abc' "
        "(from DBSLAYER_PORT)"
    ]
