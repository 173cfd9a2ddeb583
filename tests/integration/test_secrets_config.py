"""Backend passwords from a file or the environment, never on the command line.

Conf level: ``password_file=``/``password_env=`` (and their ``read_`` forms) in a DSN, in a TOML
backend table and in an option-file group resolve to the password; a bad file or variable stops
start-up with one line naming the setting and the path (or variable), never the contents.
End to end: ``dbslayer serve`` with the password in a file, and with it on the command line
(which still works, with one warning line): ``/proc/<pid>/cmdline`` of the server, and of each
worker with ``--workers 2``, never holds the password, nor do ``/stats`` and the log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conf.dsn import parse_dsn
from conf.load import BackendSpec, SettingError, Settings, load_settings
from conf.mycnf import read_groups
from tests.servers import ROOT, Gateway, MariaDB

SECRET = "Fz9-h8-main-pw"
READ_SECRET = "Qk4-h8-read-pw"


def secret_file(path: Path, text: str = SECRET + "\n", mode: int = 0o600) -> str:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


def error_of(argv: list[str], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingError) as info:
        load_settings(argv, environ or {})
    return str(info.value)


def one_spec(argv: list[str], environ: dict[str, str] | None = None) -> BackendSpec:
    environ = environ or {}
    (spec,) = load_settings(argv, environ).resolve_backends(environ=environ)[1]
    return spec


# --- DSN ---------------------------------------------------------------------------


def test_dsn_password_file_and_read_password_file(tmp_path: Path) -> None:
    """password_file and read_password_file give both passwords, one trailing newline removed;
    display() shows where they come from, and neither repr nor display shows them."""
    main = secret_file(tmp_path / "main.pw")
    read = secret_file(tmp_path / "read.pw", READ_SECRET + "\r\n")
    dsn = (
        f"mysql://app@db/shop?name=a&password_file={main}&read_user=app_ro"
        f"&read_password_file={read}"
    )
    settings = load_settings(["--backend", dsn], {})
    (spec,) = settings.resolve_backends()[1]
    assert (spec.password, spec.read_user, spec.read_password) == (SECRET, "app_ro", READ_SECRET)
    assert spec.display() == (
        f"mysql://app@db:3306/shop?name=a&password_file={main}&read_user=app_ro"
        f"&read_password_file={read}"
    )
    for text in (repr(spec), spec.display(), repr(settings)):
        assert SECRET not in text and READ_SECRET not in text
    assert parse_dsn(spec.display()).password_file == main  # display() reads back


def test_dsn_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """password_env and read_password_env name variables of the environment given to the loader
    (os.environ by default); spaces in the value are kept."""
    environ = {"H8_DB_PW": SECRET, "H8_RO_PW": f" {READ_SECRET} "}
    dsn = "mysql://app@db/shop?password_env=H8_DB_PW&read_user=ro&read_password_env=H8_RO_PW"
    spec = one_spec(["--backend", dsn], environ)
    assert (spec.password, spec.read_password) == (SECRET, f" {READ_SECRET} ")
    assert "password_env=H8_DB_PW" in spec.display()
    monkeypatch.setenv("H8_DB_PW", SECRET)
    assert (
        Settings(backends=("mysql://db/x?password_env=H8_DB_PW",)).resolve_backends()[1][0].password
        == SECRET
    )
    from_env = {"DBSLAYER_BACKENDS": "mysql://db/x?password_env=H8_DB_PW", "H8_DB_PW": SECRET}
    assert one_spec([], from_env).password == SECRET


def test_inline_password_still_works() -> None:
    """The password in the DSN itself is unchanged: no file, no variable needed."""
    spec = one_spec(["--backend", f"mysql://app:{SECRET}@db/shop?read_user=r&read_password=x"])
    assert (spec.password, spec.read_password) == (SECRET, "x")


def test_toml_backend_table_password_sources(tmp_path: Path) -> None:
    """A TOML backends table takes password_file, password_env and their read_ forms."""
    main = secret_file(tmp_path / "main.pw")
    read = secret_file(tmp_path / "read.pw", READ_SECRET)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[database]\nbackends = [\n"
        f'  {{dsn = "mysql://app@one/shop?name=a", password_file = "{main}", '
        f'read_user = "ro", read_password_file = "{read}"}},\n'
        '  {dsn = "mysql://app@two/shop?name=b", password_env = "H8_B", '
        'read_user = "ro", read_password_env = "H8_B_RO"},\n'
        "]\n",
        encoding="utf-8",
    )
    environ = {"H8_B": "b-" + SECRET, "H8_B_RO": "b-" + READ_SECRET}
    a, b = load_settings(["--config", str(cfg)], environ).resolve_backends(environ=environ)[1]
    assert (a.password, a.read_password) == (SECRET, READ_SECRET)
    assert (b.password, b.read_password) == ("b-" + SECRET, "b-" + READ_SECRET)


def test_option_file_password_sources(tmp_path: Path) -> None:
    """Option-file groups take password-file (relative to the option file, like !include),
    password-env and the read_ forms; a group's own source replaces [client]'s password, and
    password = ... keeps working."""
    (tmp_path / "secrets").mkdir()
    secret_file(tmp_path / "secrets" / "a.pw")
    read = secret_file(tmp_path / "ro.pw", READ_SECRET + "\n")
    path = tmp_path / "my.cnf"
    path.write_text(
        "[client]\nuser = app\npassword = from-client\n"
        f"[a]\npassword-file = secrets/a.pw\nread-user = ro\nread_password_file = {read}\n"
        "[b]\npassword_env = H8_B\nread-user = ro\nread-password-env = H8_B_RO\n"
        "[c]\nhost = three\n",
        encoding="utf-8",
    )
    environ = {"H8_B": "b-pw", "H8_B_RO": "b-ro"}
    a, b, c = read_groups(str(path), ["a", "b", "c"])
    assert a.password_file == str(tmp_path / "secrets" / "a.pw")
    settings = Settings(mysql_config=str(path), servers="a:b:c")
    a, b, c = settings.resolve_backends(environ=environ)[1]
    assert (a.password, a.read_password) == (SECRET, READ_SECRET)
    assert (b.password, b.read_password) == ("b-pw", "b-ro")
    assert c.password == "from-client"


# --- bad files, variables and combinations -------------------------------------------


def _bad_files(tmp_path: Path) -> list[tuple[str, str]]:
    """(path, expected problem) for every kind of bad password file."""
    cases = [
        (str(tmp_path / "missing.pw"), "cannot read password_file {path}: No such file"),
        (str(tmp_path), "password_file {path} is not a regular file"),
        (
            secret_file(tmp_path / "world.pw", mode=0o644),
            "password_file {path} is open to other users (mode 0644): chmod 600 {path}",
        ),
        (
            secret_file(tmp_path / "group.pw", mode=0o640),
            "password_file {path} is open to other users (mode 0640)",
        ),
        (secret_file(tmp_path / "empty.pw", ""), "password_file {path} is empty"),
        (secret_file(tmp_path / "newline.pw", "\n"), "password_file {path} is empty"),
        (
            secret_file(tmp_path / "lines.pw", f"{SECRET}\n{SECRET}\n"),
            "password_file {path} must hold the password alone on one line",
        ),
        (
            secret_file(tmp_path / "huge.pw", SECRET * 1000),
            "password_file {path} is larger than 4096 bytes",
        ),
    ]
    latin = tmp_path / "latin.pw"
    latin.write_bytes(b"caf\xe9-" + SECRET.encode())
    latin.chmod(0o600)
    cases.append((str(latin), "password_file {path} is not UTF-8 text"))
    if os.geteuid() != 0:  # root reads a mode-000 file anyway
        cases.append(
            (secret_file(tmp_path / "locked.pw", mode=0o000), "cannot read password_file {path}:")
        )
    return cases


def test_bad_password_files_are_one_line_errors(tmp_path: Path) -> None:
    """A missing, unreadable, non-regular, open, empty, multi-line, huge or non-UTF-8 file
    stops loading with one line naming the setting, the backend and the path, never the
    contents."""
    for path, problem in _bad_files(tmp_path):
        dsn = f"mysql://app@db/shop?name=a&password_file={path}"
        message = error_of(["--backend", dsn])
        expected = "bad setting backends: backend a: " + problem.format(path=path)
        assert message.startswith(expected), (message, expected)
        assert message.endswith("(from --backend)") and "\n" not in message
        assert SECRET not in message and "caf" not in message


def test_bad_read_password_file_and_option_file(tmp_path: Path) -> None:
    """The same checks for read_password_file, and in an option file (naming mysql_config)."""
    open_file = secret_file(tmp_path / "open.pw", mode=0o604)
    dsn = f"mysql://app@db/shop?name=a&read_user=ro&read_password_file={open_file}"
    message = error_of(["--backend", dsn])
    assert message.startswith(
        f"bad setting backends: backend a: read_password_file {open_file} is open to other "
        "users (mode 0604)"
    )
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[a]\nuser = app\npassword-file = missing.pw\n", encoding="utf-8")
    message = error_of(["--mysql-config", str(cnf), "--servers", "a"])
    assert message.startswith(
        f"bad setting mysql_config: backend a: cannot read password-file {tmp_path}/missing.pw: "
        "No such file or directory"
    )
    assert message.endswith("(from --mysql-config; servers from --servers)")


@pytest.mark.parametrize(
    ("query", "environ", "problem"),
    [
        ("password_env=H8_UNSET", {}, "password_env names H8_UNSET, which is not set"),
        ("password_env=H8_EMPTY", {"H8_EMPTY": ""}, "password_env names H8_EMPTY, which is empty"),
        (
            "read_user=ro&read_password_env=H8_LINES",
            {"H8_LINES": f"{SECRET}\nx"},
            "read_password_env H8_LINES must hold the password alone on one line",
        ),
        ("password_env=1BAD", {}, "password_env must be an environment variable name"),
        ("password_file=", {}, "password_file must be a file path"),
        (
            "password_file=/x&password_env=H8_B",
            {"H8_B": SECRET},
            "give the password once: password_file or password_env",
        ),
        (
            "read_user=ro&read_password=x&read_password_file=/x",
            {},
            "give the read password once: read_password or read_password_file",
        ),
        (
            "read_password_file=/x",
            {},
            "read_password_file needs read_user, the read account it belongs to",
        ),
    ],
)
def test_bad_password_sources(query: str, environ: dict[str, str], problem: str) -> None:
    """Unset or empty variables, bad names, empty paths and two sources for one password are
    refused in one line that never shows a password."""
    message = error_of(["--backend", f"mysql://app@db/shop?name=a&{query}"], environ)
    assert message.startswith("bad setting backends: ") and problem in message, message
    assert SECRET not in message and "\n" not in message


def test_password_in_dsn_and_in_a_file_is_refused(tmp_path: Path) -> None:
    """user:password@ together with password_file is a mistake: refused, neither shown."""
    path = secret_file(tmp_path / "main.pw")
    message = error_of(["--backend", f"mysql://app:{SECRET}@db/shop?password_file={path}"])
    assert "give the password once: in the DSN or password_file" in message
    assert SECRET not in message


def test_mask_password_leaves_file_and_variable_names() -> None:
    """password_file and password_env values are paths and names, not secrets: left visible."""
    from conf.settings import mask_password

    assert (
        mask_password(
            f"mysql://app:{SECRET}@h/db?password_file=/etc/p&read_password_env=RO&read_password=x"
        )
        == "mysql://app:***@h/db?password_file=/etc/p&read_password_env=RO&read_password=***"
    )


# --- the command line ----------------------------------------------------------------


def test_masked_arguments_and_flags_with_passwords() -> None:
    """Each argument is masked on its own, --flag=value included; the flags are named."""
    from api.cli import flags_with_passwords, masked_arguments

    args = [
        "serve",
        "--backend",
        f"mysql://app:{SECRET}@h/db",
        f"--backend=mysql://app@h/db?read_user=r&read_password={READ_SECRET}",
        "--redis",
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        "--backend",
        "mysql://app@h/db?password_file=/etc/p",
    ]
    assert masked_arguments(args) == [
        "serve",
        "--backend",
        "mysql://app:***@h/db",
        "--backend=mysql://app@h/db?read_user=r&read_password=***",
        "--redis",
        "redis://:***@127.0.0.1:6379/0",
        "--backend",
        "mysql://app@h/db?password_file=/etc/p",
    ]
    assert flags_with_passwords(args) == ["--backend", "--redis"]
    assert flags_with_passwords(["--backend", "mysql://app@h/db?password_env=X"]) == []


# --- end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def accounts(mariadb: MariaDB) -> Iterator[MariaDB]:
    """Two password-protected accounts on the session MariaDB: h8_app (all on test) and
    h8_ro (SELECT on test)."""
    mariadb.sql(
        f"CREATE USER IF NOT EXISTS 'h8_app'@'127.0.0.1' IDENTIFIED BY '{SECRET}';"
        "GRANT ALL ON test.* TO 'h8_app'@'127.0.0.1';"
        f"CREATE USER IF NOT EXISTS 'h8_ro'@'127.0.0.1' IDENTIFIED BY '{READ_SECRET}';"
        "GRANT SELECT ON test.* TO 'h8_ro'@'127.0.0.1';"
    )
    yield mariadb
    mariadb.sql("DROP USER IF EXISTS 'h8_app'@'127.0.0.1', 'h8_ro'@'127.0.0.1';")


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(child) for child in out.split())


def assert_no_secret(gw: Gateway, *pids: int) -> None:
    """Neither password in any process's command line, in /stats or in the log."""
    for pid in pids:
        shown = cmdline(pid)
        assert SECRET.encode() not in shown and READ_SECRET.encode() not in shown, shown
    for path in ("/stats", "/stats/log", "/metrics"):
        body = gw.get(path).body
        assert SECRET.encode() not in body and READ_SECRET.encode() not in body, path
    output = gw.output()
    assert SECRET not in output and READ_SECRET not in output, output


def current_user(gw: Gateway) -> str:
    reply = gw.db({"SQL": "SELECT CURRENT_USER()"})
    assert reply.status == 200, reply
    return str(reply.json()["RESULT"]["ROWS"][0][0])


def warnings(gw: Gateway) -> list[str]:
    return [line for line in gw.output().splitlines() if "password on the command line" in line]


def test_serve_with_password_files(accounts: MariaDB, tmp_path: Path) -> None:
    """The server connects with the passwords from files; no warning; the title is untouched
    and holds no password; /stats and the log neither."""
    main = secret_file(tmp_path / "db1.pw")
    read = secret_file(tmp_path / "db1-ro.pw", READ_SECRET + "\n")
    dsn = (
        f"mysql://h8_app@127.0.0.1:{accounts.port}/test?name=db1&password_file={main}"
        f"&read_user=h8_ro&read_password_file={read}"
    )
    gw = Gateway(tmp_path, "--backend", dsn).start()
    try:
        assert gw.proc is not None
        assert current_user(gw) == "h8_app@127.0.0.1"
        assert f"password_file={main}".encode() in cmdline(gw.proc.pid)
        assert_no_secret(gw, gw.proc.pid)
        assert f"backend db1: mysql://h8_app@127.0.0.1:{accounts.port}/test" in gw.output()
        assert warnings(gw) == []
    finally:
        gw.stop()


def test_serve_with_password_on_the_command_line(accounts: MariaDB, tmp_path: Path) -> None:
    """A password on the command line still works, warns once, and the process's command line
    shows it masked."""
    dsn = (
        f"mysql://h8_app:{SECRET}@127.0.0.1:{accounts.port}/test?name=db1"
        f"&read_user=h8_ro&read_password={READ_SECRET}"
    )
    gw = Gateway(tmp_path, "--backend", dsn).start()
    try:
        assert gw.proc is not None
        assert current_user(gw) == "h8_app@127.0.0.1"
        shown = cmdline(gw.proc.pid)
        assert b"mysql://h8_app:***@127.0.0.1" in shown and b"read_password=***" in shown
        assert_no_secret(gw, gw.proc.pid)
        (line,) = warnings(gw)
        assert "--backend" in line and "password_file=" in line and "password_env=" in line
    finally:
        gw.stop()


def test_workers_never_get_the_password_on_their_command_line(
    accounts: MariaDB, tmp_path: Path
) -> None:
    """With --workers 2 neither the master's nor any worker's command line holds the password
    (the workers get their arguments through the environment); one warning, from the master."""
    dsn = f"mysql://h8_app:{SECRET}@127.0.0.1:{accounts.port}/test?name=db1"
    gw = Gateway(tmp_path, "--backend", dsn, workers=2).start()
    try:
        assert gw.proc is not None
        deadline = time.monotonic() + 30  # both workers started (exec'd) and serving
        while gw.output().count(f"listening on http://127.0.0.1:{gw.port}/") < 2:
            assert time.monotonic() < deadline, gw.output()
            time.sleep(0.1)
        workers = children(gw.proc.pid)
        assert len(workers) == 2
        for _ in range(6):
            assert current_user(gw) == "h8_app@127.0.0.1"
        assert_no_secret(gw, gw.proc.pid, *workers)
        # NUL-separated: the arguments the worker was started with, not a title set later
        # (setproctitle joins with spaces), so the password never was on its command line.
        for pid in workers:
            assert b"\0--backend\0mysql://h8_app:***@127.0.0.1" in cmdline(pid)
        assert b" --backend mysql://h8_app:***@127.0.0.1" in cmdline(gw.proc.pid)
        assert len(warnings(gw)) == 1
    finally:
        gw.stop()
    assert gw.proc.returncode == 0


def test_serve_stops_on_a_bad_password_file(tmp_path: Path) -> None:
    """dbslayer serve with a world-readable password file exits 2 with the one-line error."""
    path = secret_file(tmp_path / "db1.pw", mode=0o644)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--backend",
            f"mysql://app@127.0.0.1/x?name=a&password_file={path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [
        f"dbslayer: bad setting backends: backend a: password_file {path} is open to other "
        f"users (mode 0644): chmod 600 {path} (from --backend)"
    ]
