"""Tests of the settings layer: loading, validation, DSNs, option files, backend resolution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from conf.dsn import parse_dsn
from conf.load import BackendSpec, SettingError, Settings, build_parser, load_settings
from conf.mycnf import read_groups

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "dbslayer.toml"
SECRET = "s3cr3t-pw"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(argv: list[str], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingError) as info:
        load_settings(argv, environ or {})
    return str(info.value)


# --- defaults and precedence ---------------------------------------------------------


def test_defaults() -> None:
    """With no file, env or flags every setting has its documented default."""
    s = load_settings([], {"HOME": "/home/u"})
    assert (s.host, s.port, s.max_request_bytes) == ("127.0.0.1", 9090, 1048576)
    assert (s.backends, s.mode, s.mysql_config, s.servers, s.named) == ((), "auto", "", "", "")
    assert (s.connect_timeout, s.read_timeout, s.write_timeout) == (5.0, 300.0, 60.0)
    assert (s.pool_min, s.pool_max) == (1, 8)
    assert s.demo_database == "/home/u/.local/share/dbslayer/demo.sqlite3"
    assert s.resolve_backends() == ("pool", ())


def test_demo_database_follows_xdg_data_home() -> None:
    """demo_database defaults under $XDG_DATA_HOME of the environment given to the loader."""
    s = load_settings([], {"XDG_DATA_HOME": "/data", "HOME": "/home/u"})
    assert s.demo_database == "/data/dbslayer/demo.sqlite3"


def test_precedence_file_env_cli(tmp_path: Path) -> None:
    """A TOML value is overridden by the environment, which is overridden by a flag."""
    cfg = write(
        tmp_path / "c.toml",
        '[server]\nport = 1111\nhost = "0.0.0.0"\n[database]\npool_max = 20\nread_timeout = 90\n',
    )
    env = {"DBSLAYER_PORT": "2222", "DBSLAYER_POOL_MAX": "30"}
    s = load_settings(["--config", cfg, "--port", "3333"], env)
    assert (s.port, s.host, s.pool_max, s.read_timeout) == (3333, "0.0.0.0", 30, 90.0)
    assert isinstance(s.read_timeout, float)
    assert load_settings(["--config", cfg], env).port == 2222
    assert load_settings(["--config", cfg], {}).port == 1111


def test_config_file_from_environment(tmp_path: Path) -> None:
    """DBSLAYER_CONFIG names the TOML file when --config is absent; --config wins."""
    one = write(tmp_path / "one.toml", "[server]\nport = 1\n")
    two = write(tmp_path / "two.toml", "[server]\nport = 2\n")
    assert load_settings([], {"DBSLAYER_CONFIG": one}).port == 1
    assert load_settings(["--config", two], {"DBSLAYER_CONFIG": one}).port == 2


def test_backends_from_each_source(tmp_path: Path) -> None:
    """Backends: a TOML list, whitespace-separated env, repeated flags that replace the rest."""
    cfg = write(tmp_path / "c.toml", '[database]\nbackends = ["sqlite:///a.db"]\n')
    assert load_settings(["--config", cfg], {}).backends == ("sqlite:///a.db",)
    env = {"DBSLAYER_BACKENDS": "sqlite:///b.db  sqlite:///c.db"}
    assert load_settings(["--config", cfg], env).backends == ("sqlite:///b.db", "sqlite:///c.db")
    argv = ["--config", cfg, "--backend", "sqlite:///d.db", "--backend", "sqlite:///e.db"]
    assert load_settings(argv, env).backends == ("sqlite:///d.db", "sqlite:///e.db")


def test_empty_environment_variable_counts_as_unset() -> None:
    """An empty DBSLAYER_* variable leaves the lower-precedence value alone."""
    assert load_settings([], {"DBSLAYER_PORT": ""}).port == 9090


def test_help_shows_defaults() -> None:
    """Each flag's help comes from the field metadata and shows the default."""
    text = build_parser().format_help()
    assert "--max-request-bytes" in text and "(default: 1048576)" in text
    assert "--backend DSN" in text and "$XDG_DATA_HOME/dbslayer/demo.sqlite3" in text


def test_argparse_errors_exit_2() -> None:
    """An unknown flag is argparse's error: exit status 2."""
    with pytest.raises(SystemExit) as info:
        load_settings(["--prot", "1"], {})
    assert info.value.code == 2


def test_example_config_loads() -> None:
    """The annotated example conf/dbslayer.toml loads cleanly and holds the defaults."""
    s = load_settings(["--config", str(EXAMPLE)], {})
    assert s == load_settings([], {})


# --- bad settings ------------------------------------------------------------------


def test_port_not_a_number_from_cli() -> None:
    """--port abc names the setting, the rule, the value and the flag."""
    assert error_of(["--port", "abc"]) == (
        "bad setting port: must be an integer from 0 to 65535, got 'abc' (from --port)"
    )


def test_port_out_of_range_from_env() -> None:
    """DBSLAYER_PORT=70000 is rejected and the variable is named."""
    msg = error_of([], {"DBSLAYER_PORT": "70000"})
    assert msg.startswith("bad setting port: must be an integer from 0 to 65535, got 70000")
    assert "(from DBSLAYER_PORT)" in msg


def test_unknown_toml_key(tmp_path: Path) -> None:
    """A misspelt key in a TOML section is an error naming the key and the file."""
    cfg = write(tmp_path / "c.toml", "[server]\nprot = 1\n")
    msg = error_of(["--config", cfg])
    assert "bad setting prot: unknown key in [server]" in msg and cfg in msg


def test_key_in_wrong_section(tmp_path: Path) -> None:
    """A known key in the wrong section says where it belongs."""
    cfg = write(tmp_path / "c.toml", "[database]\nport = 1\n")
    assert "belongs in [server]" in error_of(["--config", cfg])


def test_unknown_toml_section(tmp_path: Path) -> None:
    """An unknown TOML section is an error naming the section and the file."""
    cfg = write(tmp_path / "c.toml", "[servr]\nport = 1\n")
    msg = error_of(["--config", cfg])
    assert "bad setting servr: unknown section [servr]" in msg and cfg in msg


def test_wrong_toml_type(tmp_path: Path) -> None:
    """A TOML string where an integer belongs is rejected with the file and key as source."""
    cfg = write(tmp_path / "c.toml", '[server]\nport = "9090"\n')
    msg = error_of(["--config", cfg])
    assert msg.startswith("bad setting port: must be an integer from 0 to 65535, got '9090'")
    assert f"(from {cfg} [server] port)" in msg


def test_wrong_toml_type_for_backends(tmp_path: Path) -> None:
    """backends must be a TOML list of strings, not a single string."""
    cfg = write(tmp_path / "c.toml", f'[database]\nbackends = "mysql://u:{SECRET}@h/db"\n')
    msg = error_of(["--config", cfg])
    assert "bad setting backends: must be a list of DSN strings" in msg and SECRET not in msg


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    """A missing or malformed config file is a SettingError naming config."""
    assert "bad setting config: cannot read" in error_of(["--config", str(tmp_path / "no")])
    cfg = write(tmp_path / "c.toml", "[server\n")
    assert "bad setting config:" in error_of([], {"DBSLAYER_CONFIG": cfg})


def test_pool_min_above_pool_max() -> None:
    """pool_min > pool_max names pool_min and where both values came from."""
    msg = error_of(["--pool-min", "9"], {"DBSLAYER_POOL_MAX": "4"})
    assert msg.startswith("bad setting pool_min: must not exceed pool_max (4), got 9")
    assert "from --pool-min; pool_max from DBSLAYER_POOL_MAX" in msg


def test_pool_bounds_and_request_size() -> None:
    """pool sizes are 1..256 and max_request_bytes is at least 1024."""
    assert "bad setting pool_max: must be an integer from 1 to 256" in error_of(
        ["--pool-max", "257"]
    )
    assert "bad setting max_request_bytes: must be an integer >= 1024" in error_of(
        ["--max-request-bytes", "100"]
    )


def test_bad_timeouts() -> None:
    """Timeouts must be finite numbers greater than zero."""
    assert "bad setting connect_timeout:" in error_of(["--connect-timeout", "0"])
    assert "bad setting read_timeout:" in error_of([], {"DBSLAYER_READ_TIMEOUT": "soon"})
    assert "bad setting write_timeout:" in error_of(["--write-timeout", "inf"])


def test_bad_mode() -> None:
    """An unknown mode lists the accepted ones."""
    msg = error_of(["--mode", "cluster"])
    assert msg == (
        "bad setting mode: must be one of auto, pool, primary-replica, named, galera, got 'cluster'"
        " (from --mode)"
    )


def test_bad_dsn_scheme() -> None:
    """An unknown DSN scheme names backends, masks the password, and names the flag."""
    msg = error_of(["--backend", f"postgres://app:{SECRET}@db/shop"])
    assert msg.startswith("bad setting backends: unknown scheme 'postgres'")
    assert "postgres://app:***@db/shop" in msg and "(from --backend)" in msg
    assert SECRET not in msg


def test_bad_weight() -> None:
    """A non-positive weight is rejected with the masked DSN."""
    msg = error_of([], {"DBSLAYER_BACKENDS": f"mysql://app:{SECRET}@db/shop?weight=0"})
    assert "bad setting backends: weight must be an integer >= 1" in msg
    assert "(from DBSLAYER_BACKENDS)" in msg and SECRET not in msg


@pytest.mark.parametrize(
    "dsn",
    [
        f"mysql://app:{SECRET}@db:99999/shop",
        f"mysql://app:{SECRET}@db:x/shop",
        f"mysql://app:{SECRET}@db/shop?colour=red",
        f"mysql://app:{SECRET}@db/shop?role=leader",
        f"mysql://app:{SECRET}@db/shop?password={SECRET}",
        f"mysql://app:{SECRET}@::1/shop",
        f"mysql://app:{SECRET}@db/shop?name=a&name=b",
        "sqlite://host/x.db",
        "sqlite:///",
        "db.example.com:3306",
    ],
)
def test_bad_dsns_raise_without_password(dsn: str) -> None:
    """Each malformed DSN raises SettingError naming backends, never showing the password."""
    with pytest.raises(SettingError) as info:
        parse_dsn(dsn)
    assert str(info.value).startswith("bad setting backends: ")
    assert SECRET not in str(info.value)


def test_password_never_in_repr() -> None:
    """Neither Settings nor BackendSpec repr shows a password."""
    s = load_settings(["--backend", f"mysql://app:{SECRET}@db/shop"], {})
    assert SECRET not in repr(s) and "app:***@db" in repr(s)
    _, specs = s.resolve_backends()
    assert specs[0].password == SECRET
    assert SECRET not in repr(specs) and SECRET not in specs[0].display()


# --- DSN parsing -------------------------------------------------------------------


def test_dsn_full_mysql() -> None:
    """A full mysql DSN fills every field, with percent-decoded user and password."""
    spec = parse_dsn(
        "mysql://my%20app:p%40ss%3Aw%2Fd@db.local:3307/shop?name=main&role=primary&weight=3"
        "&charset=latin1"
    )
    assert spec == BackendSpec(
        name="main",
        driver="mysql",
        host="db.local",
        port=3307,
        user="my app",
        password="p@ss:w/d",
        database="shop",
        role="primary",
        weight=3,
        charset="latin1",
    )


def test_dsn_unencoded_at_in_password() -> None:
    """Everything up to the last @ is credentials, so a raw @ in the password works."""
    spec = parse_dsn("mysql://app:p@ss@db/shop")
    assert (spec.user, spec.password, spec.host) == ("app", "p@ss", "db")


def test_dsn_minimal_and_default_names() -> None:
    """Omitted parts take defaults; an unnamed backend is db{index}."""
    spec = parse_dsn("mariadb://db", 2)
    assert (spec.name, spec.driver, spec.host, spec.port, spec.user) == (
        "db2",
        "mysql",
        "db",
        3306,
        "",
    )
    assert (spec.database, spec.role, spec.weight, spec.charset) == ("", "", 1, "utf8mb4")
    assert parse_dsn("mysql://").host == "127.0.0.1"


def test_dsn_ipv6() -> None:
    """A bracketed IPv6 host, with or without a port."""
    assert (parse_dsn("mysql://[::1]:3307/x").host, parse_dsn("mysql://[::1]:3307/x").port) == (
        "::1",
        3307,
    )
    assert parse_dsn("mysql://u@[fe80::1]/x").host == "fe80::1"


def test_dsn_unix_socket() -> None:
    """unix_socket is taken from the query, the host may be empty."""
    spec = parse_dsn("mysql://app@/shop?unix_socket=/run/mysqld/mysqld.sock&name=local")
    assert (spec.unix_socket, spec.host, spec.name, spec.database) == (
        "/run/mysqld/mysqld.sock",
        "127.0.0.1",
        "local",
        "shop",
    )


def test_dsn_sqlite_paths() -> None:
    """sqlite:///rel is relative and sqlite:////abs is absolute (SQLAlchemy convention)."""
    rel = parse_dsn("sqlite:///data/demo.db", 1)
    assert (rel.driver, rel.path, rel.name) == ("sqlite", "data/demo.db", "db1")
    absolute = parse_dsn("sqlite:////var/lib/x.db?name=demo")
    assert (absolute.path, absolute.name) == ("/var/lib/x.db", "demo")


def test_display_round_trips() -> None:
    """display() drops the password and parses back to the same spec minus the password."""
    for dsn in [
        "mysql://app:pw@[::1]:3307/shop?name=a&role=replica&weight=2&charset=latin1",
        "mysql://app:pw@/shop?unix_socket=/tmp/m.sock",
        "sqlite:////abs/x.db?name=s",
        "sqlite:///rel.db",
    ]:
        spec = parse_dsn(dsn)
        assert "pw" not in spec.display()
        assert parse_dsn(spec.display()) == attrs.evolve(spec, password="")
    shown = parse_dsn("mysql://app:pw@127.0.0.1:3306/shop?name=db1").display()
    assert shown == "mysql://app@127.0.0.1:3306/shop?name=db1"


# --- option files ------------------------------------------------------------------

MYCNF = """\
# global comment
; another comment
[client]
user = shared
password = "pw # not a comment"
port=3307

[db1]
host = one.example   # trailing comment
database = shop

[DB2]
host=two.example
db = 'logs'
user = other
default-character-set = latin1
skip-column-names
!include extra.cnf
"""


def test_option_file_groups(tmp_path: Path) -> None:
    """Groups read host/port/user/password/database; [client] values are defaults."""
    write(tmp_path / "extra.cnf", "[db2]\nport = 3310\n[db3]\nsocket = /tmp/s.sock\n")
    path = write(tmp_path / "my.cnf", MYCNF)
    one, two, three = read_groups(path, ["db1", "db2", "db3"])
    assert (one.name, one.host, one.port, one.user, one.database) == (
        "db1",
        "one.example",
        3307,
        "shared",
        "shop",
    )
    assert one.password == "pw # not a comment"
    assert (two.name, two.host, two.port, two.user, two.database, two.charset) == (
        "db2",
        "two.example",
        3310,
        "other",
        "logs",
        "latin1",
    )
    assert (three.unix_socket, three.host, three.user) == ("/tmp/s.sock", "127.0.0.1", "shared")


def test_option_file_includedir_quotes_and_dash_keys(tmp_path: Path) -> None:
    """!includedir reads *.cnf files; quoted values keep spaces; - and _ keys are the same."""
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    write(conf_d / "a.cnf", '[app]\nhost = "db one"\n')
    write(conf_d / "b.txt", "[app]\nhost = ignored\n")
    write(conf_d / "c.cnf", "[app]\ndefault_character_set = ascii\nsocket=/a\\sb\n")
    path = write(tmp_path / "my.cnf", "!includedir conf.d\n[other]\n")
    (spec,) = read_groups(path, ["app"])
    assert (spec.host, spec.charset, spec.unix_socket) == ("db one", "ascii", "/a b")


def test_option_file_errors(tmp_path: Path) -> None:
    """A missing file, a missing group, a bad port name mysql_config and never the password."""
    with pytest.raises(SettingError, match="bad setting mysql_config: cannot read option file"):
        read_groups(str(tmp_path / "none.cnf"), ["a"])
    path = write(tmp_path / "my.cnf", f"[a]\npassword={SECRET}\nport=http\n")
    with pytest.raises(SettingError, match=r"has no \[b\] group"):
        read_groups(path, ["b"])
    with pytest.raises(SettingError) as info:
        read_groups(path, ["a"])
    assert "port must be an integer" in str(info.value) and SECRET not in str(info.value)
    bad = write(tmp_path / "bad.cnf", "host = x\n")
    with pytest.raises(SettingError, match="outside any"):
        read_groups(bad, ["a"])


# --- resolve_backends --------------------------------------------------------------


def test_resolve_modes() -> None:
    """auto becomes pool, primary-replica (roles present) or named (named set)."""
    pool = Settings(backends=("mysql://a/x", "mysql://b/x"))
    assert pool.resolve_backends()[0] == "pool"
    pr = Settings(backends=("mysql://a/x?role=primary", "mysql://b/x"))
    mode, specs = pr.resolve_backends()
    assert mode == "primary-replica"
    assert [s.role for s in specs] == ["primary", "replica"]
    named = Settings(backends=("mysql://a/x?name=left", "mysql://b/x?name=right"), mode="named")
    assert named.resolve_backends()[0] == "named"


def test_resolve_option_file_groups(tmp_path: Path) -> None:
    """servers adds one pool backend per group; named makes auto mode named."""
    path = write(tmp_path / "my.cnf", "[client]\nuser=u\n[a]\nhost=h1\n[b]\nhost=h2\n")
    mode, specs = Settings(mysql_config=path, servers="a:b").resolve_backends()
    assert mode == "pool" and [s.name for s in specs] == ["a", "b"]
    mode, specs = Settings(
        mysql_config=path, named="b", backends=("sqlite:///x.db",)
    ).resolve_backends()
    assert mode == "named" and [s.name for s in specs] == ["db0", "b"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"backends": ("mysql://a/x?name=n", "mysql://b/x?name=n")}, "bad setting backends: two"),
        ({"servers": "a"}, "bad setting servers: needs mysql_config"),
        ({"mysql_config": "x", "servers": "a", "named": "b"}, "bad setting named: cannot"),
        ({"mode": "named"}, "bad setting mode: 'named' needs backends"),
        ({"mode": "primary-replica", "backends": ("mysql://a/x",)}, "got 0"),
        (
            {"backends": ("mysql://a/x?role=primary", "mysql://b/x?role=primary")},
            "exactly one backend with role=primary, got 2",
        ),
        ({"mode": "pool", "backends": ("mysql://a/x?role=primary",)}, "only meaningful"),
    ],
)
def test_resolve_errors(kwargs: dict[str, object], expected: str) -> None:
    """Each inconsistent backend configuration raises a SettingError naming the setting."""
    with pytest.raises(SettingError) as info:
        Settings(**kwargs).resolve_backends()  # type: ignore[arg-type]
    assert expected in str(info.value)


def test_resolve_errors_surface_from_load(tmp_path: Path) -> None:
    """load_settings calls resolve_backends, naming where the offending values came from."""
    msg = error_of(["--servers", "a:b"])
    assert msg.startswith("bad setting servers: needs mysql_config")
    assert "(from --servers; mysql_config from the default)" in msg
    path = write(tmp_path / "my.cnf", "[a]\n")
    msg = error_of(["--mysql-config", path], {"DBSLAYER_SERVERS": "a:zz"})
    assert "has no [zz] group" in msg
    assert "(from --mysql-config; servers from DBSLAYER_SERVERS)" in msg


def test_settings_validate_on_construction() -> None:
    """Direct construction runs the same validators as loading."""
    with pytest.raises(SettingError, match="bad setting port"):
        Settings(port=-1)
    with pytest.raises(SettingError, match="bad setting servers"):
        Settings(servers="a::b")


def test_conf_is_the_bottom_layer() -> None:
    """Importing conf pulls in neither Twisted nor any other package of the project."""
    code = (
        "import sys, conf.load, conf.dsn, conf.mycnf, conf.settings\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('twisted', 'api', 'gateway', 'stats', 'klein', 'treq')]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_read_timeout_must_outlast_statement_time() -> None:
    """read_timeout not longer than max_statement_time is refused, naming both settings."""
    message = error_of(["--max-statement-time", "30", "--read-timeout", "20"], {})
    assert "bad setting read_timeout:" in message and "max_statement_time" in message
    assert (
        load_settings(["--max-statement-time", "5", "--read-timeout", "20"], {}).read_timeout == 20
    )


# --- read accounts -----------------------------------------------------------------

READ_SECRET = "r3ad-s3cret"
REDIS = "redis://127.0.0.1:6379/0"


def test_dsn_read_account() -> None:
    """read_user and read_password are DSN query keys, percent-decoded like the password."""
    spec = parse_dsn(
        f"mysql://app:pw@127.0.0.1:3306/shop?name=a&read_user=app_ro&read_password={READ_SECRET}"
    )
    assert (spec.read_user, spec.read_password, spec.has_read_account) == (
        "app_ro",
        READ_SECRET,
        True,
    )
    encoded = parse_dsn("mysql://app@db/shop?read_user=r%20o%40x&read_password=p%40s%26s%3D%25w")
    assert (encoded.read_user, encoded.read_password) == ("r o@x", "p@s&s=%w")
    without = parse_dsn("mysql://app:pw@db/shop")
    assert (without.read_user, without.read_password, without.has_read_account) == ("", "", False)
    no_password = parse_dsn("mysql://app@db/shop?read_user=app_ro")
    assert no_password.has_read_account and no_password.read_password == ""


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        (f"mysql://app@db/shop?read_password={READ_SECRET}", "read_password needs read_user"),
        (f"mysql://app@db/shop?read_user=&read_password={READ_SECRET}", "must not be empty"),
        (f"mysql://app@db/shop?read_user=app&read_password={READ_SECRET}", "another account"),
        (f"sqlite:///x.db?read_user=ro&read_password={READ_SECRET}", "unknown query key"),
        (f"mysql://app@db/shop?read_user=ro&read_pasword={READ_SECRET}", "unknown query key"),
        (f"mysql://app@db/shop?read_user=ro&read_password={READ_SECRET}&read_user=x", "twice"),
    ],
)
def test_dsn_read_account_errors(dsn: str, problem: str) -> None:
    """A bad read account is refused, and the message never shows the read password."""
    with pytest.raises(SettingError) as info:
        parse_dsn(dsn)
    message = str(info.value)
    assert message.startswith("bad setting backends: ") and problem in message
    assert READ_SECRET not in message and "***" in message


def test_unknown_dsn_key_is_named() -> None:
    """An unknown DSN key is rejected naming it and listing the known ones."""
    with pytest.raises(SettingError) as info:
        parse_dsn("mysql://app@db/shop?read_usr=ro")
    assert "unknown query key 'read_usr' (allowed: name, role, weight, unix_socket, charset, " in (
        str(info.value)
    )
    assert "read_user, read_password)" in str(info.value)


def test_read_password_never_shown() -> None:
    """Neither repr, display() nor Settings' repr shows the read password; display shows the user."""
    dsn = f"mysql://app:{SECRET}@db/shop?name=a&read_user=app_ro&read_password={READ_SECRET}"
    settings = load_settings(["--backend", dsn], {})
    (spec,) = settings.resolve_backends()[1]
    assert spec.read_password == READ_SECRET
    for text in (repr(spec), spec.display(), repr(settings)):
        assert READ_SECRET not in text and SECRET not in text
    assert spec.display() == "mysql://app@db:3306/shop?name=a&read_user=app_ro"
    assert parse_dsn(spec.display()) == attrs.evolve(spec, password="", read_password="")


def test_mask_password_masks_every_password_key() -> None:
    """read_password, and keys that only look like a password, are masked in DSN text."""
    from conf.settings import mask_password

    masked = mask_password(
        f"mysql://db/x?read_user=ro&read_password={READ_SECRET}&read_pasword={READ_SECRET}&pwd=1"
    )
    assert masked == "mysql://db/x?read_user=ro&read_password=***&read_pasword=***&pwd=***"


def test_toml_backend_tables(tmp_path: Path) -> None:
    """A backends entry may be a table {dsn, read_user, read_password}, inline or [[...]]."""
    cfg = write(
        tmp_path / "c.toml",
        "[database]\nbackends = [\n"
        '  "mysql://app@one/shop?name=a&read_user=ro1&read_password=x",\n'
        f'  {{dsn = "mysql://app@two/shop?name=b", read_user = "ro2", read_password = "p&w@{READ_SECRET}"}},\n'
        '  {dsn = "mysql://app@three/shop", read_user = "ro3"},\n'
        '  {dsn = "mysql://app@four/shop?"},\n'
        "]\n",
    )
    settings = load_settings(["--config", cfg], {})
    a, b, c, d = settings.resolve_backends()[1]
    assert (a.read_user, a.read_password) == ("ro1", "x")
    assert (b.name, b.read_user, b.read_password) == ("b", "ro2", f"p&w@{READ_SECRET}")
    assert (c.name, c.host, c.read_user, c.read_password) == ("db2", "three", "ro3", "")
    assert (d.host, d.has_read_account) == ("four", False)
    assert READ_SECRET not in repr(settings)
    tables = write(
        tmp_path / "t.toml",
        "[[database.backends]]\n"
        'dsn = "mysql://app:pw@10.0.0.5/shop?name=main"\n'
        'read_user = "app_ro"\n'
        f'read_password = "{READ_SECRET}"\n',
    )
    (spec,) = load_settings(["--config", tables], {}).resolve_backends()[1]
    assert (spec.name, spec.password, spec.read_user, spec.read_password) == (
        "main",
        "pw",
        "app_ro",
        READ_SECRET,
    )


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('{dsn = "mysql://db/x", read_usr = "ro"}', "has unknown key 'read_usr' (known: dsn,"),
        ('{read_user = "ro"}', 'needs dsn = "mysql://'),
        (
            f'{{dsn = "mysql://db/x", read_user = "ro", read_password = {len(READ_SECRET)}}}',
            "string",
        ),
        (f'{{dsn = "mysql://db/x", read_password = "{READ_SECRET}"}}', "needs read_user"),
        (
            f'{{dsn = "sqlite:///x.db", read_user = "ro", read_password = "{READ_SECRET}"}}',
            "unknown",
        ),
    ],
)
def test_toml_backend_table_errors(tmp_path: Path, entry: str, problem: str) -> None:
    """A bad backend table names backends and the file, and never shows the read password."""
    cfg = write(tmp_path / "c.toml", f"[database]\nbackends = [{entry}]\n")
    message = error_of(["--config", cfg])
    assert message.startswith("bad setting backends: ") and problem in message
    assert f"(from {cfg} [database] backends)" in message and READ_SECRET not in message


def test_option_file_read_account(tmp_path: Path) -> None:
    """read-user and read-password (or read_user, read_password) are read from a group."""
    path = write(
        tmp_path / "my.cnf",
        "[client]\nuser = app\n"
        f'[a]\nhost = one\nread-user = app_ro\nread-password = "{READ_SECRET} x"\n'
        "[b]\nread_user = other_ro\n"
        "[c]\nhost = three\n",
    )
    a, b, c = read_groups(path, ["a", "b", "c"])
    assert (a.read_user, a.read_password) == ("app_ro", f"{READ_SECRET} x")
    assert (b.read_user, b.read_password) == ("other_ro", "")
    assert not c.has_read_account
    assert READ_SECRET not in repr(a) and READ_SECRET not in a.display()


def test_option_file_read_account_errors(tmp_path: Path) -> None:
    """read-password without read-user, or read-user = user, is refused without the password."""
    path = write(
        tmp_path / "my.cnf",
        f"[a]\nread-password = {READ_SECRET}\n[b]\nuser = app\nread-user = app\n[c]\nread-user=\n",
    )
    for group, problem in [("a", "needs read-user"), ("b", "another account"), ("c", "empty")]:
        with pytest.raises(SettingError) as info:
            read_groups(path, [group])
        assert problem in str(info.value) and READ_SECRET not in str(info.value)
        assert str(info.value).startswith("bad setting mysql_config: ")


def test_read_on_shared_account_setting(tmp_path: Path) -> None:
    """read_on_shared_account: false by default; [auth], DBSLAYER_..., --read-on-shared-account."""
    assert load_settings([], {}).read_on_shared_account is False
    cfg = write(tmp_path / "c.toml", "[auth]\nread_on_shared_account = true\n")
    assert load_settings(["--config", cfg], {}).read_on_shared_account is True
    env = {"DBSLAYER_READ_ON_SHARED_ACCOUNT": "yes"}
    assert load_settings([], env).read_on_shared_account is True
    assert load_settings(["--read-on-shared-account"], {}).read_on_shared_account is True
    assert "--read-on-shared-account" in build_parser().format_help()
    assert "bad setting read_on_shared_account: must be true or false" in error_of(
        ["--read-on-shared-account", "maybe"]
    )


AUTH = ["--auth", "--redis", REDIS]


def test_auth_needs_read_accounts() -> None:
    """With auth on, a MySQL backend without a read account stops start-up in one line."""
    message = error_of([*AUTH, "--backend", f"mysql://app:{SECRET}@127.0.0.1/shop?name=a"])
    assert message == (
        "bad setting backends: backend a has no read account: add read_user and read_password "
        "to its DSN (run 'dbslayer grants' with the same backend options to create one), or "
        "start with --read-on-shared-account to accept that read-role limits rest on the "
        "gateway alone (from --backend; auth from --auth; read_on_shared_account from the "
        "default)"
    )
    assert "\n" not in message and SECRET not in message
    several = error_of(
        [*AUTH, "--backend", "mysql://app@one/shop?name=a", "--backend", "mysql://app@two/shop"]
    )
    assert several.startswith(
        "bad setting backends: backends a, db1 have no read account: add read_user and "
        "read_password to the DSN of a, db1 ("
    )


def test_auth_read_accounts_satisfied_or_waived(tmp_path: Path) -> None:
    """Read accounts everywhere, SQLite backends, auth off or read_on_shared_account: no error."""
    with_ro = "mysql://app@one/shop?name=a&read_user=ro&read_password=x"
    sqlite = "sqlite:///demo.db?name=demo"
    bare = "mysql://app@two/shop?name=b"
    assert len(load_settings([*AUTH, "--backend", with_ro, "--backend", sqlite], {}).backends) == 2
    assert load_settings(["--backend", bare], {}).backends == (bare,)
    waived = load_settings([*AUTH, "--backend", bare, "--read-on-shared-account"], {})
    assert waived.resolve_backends()[1][0].name == "b"
    env = {"DBSLAYER_READ_ON_SHARED_ACCOUNT": "true"}
    assert load_settings([*AUTH, "--backend", bare], env).read_on_shared_account
    settings = Settings(auth=True, redis_url=REDIS, backends=(bare,))
    with pytest.raises(SettingError, match="backend b has no read account"):
        settings.resolve_backends()
    assert settings.resolve_backends(require_read_accounts=False)[1][0].name == "b"
    assert load_settings([*AUTH, "--backend", bare], {}, require_read_accounts=False).auth


def test_auth_read_accounts_in_option_files(tmp_path: Path) -> None:
    """A group without read-user names the group and file, and where servers came from."""
    path = write(tmp_path / "my.cnf", "[a]\nuser=app\nread-user=app_ro\n[b]\nuser=app\n")
    message = error_of([*AUTH, "--mysql-config", path, "--servers", "a:b"])
    assert message.startswith(
        f"bad setting servers: backend b has no read account: add read-user and read-password "
        f"to its group [b] of {path} (run 'dbslayer grants'"
    )
    assert message.endswith(
        "(from --servers; auth from --auth; read_on_shared_account from the default; "
        "mysql_config from --mysql-config)"
    )
    mixed = error_of([*AUTH, "--mysql-config", path, "--servers", "b", "--backend", "mysql://x"])
    assert mixed.startswith(
        "bad setting backends: backends db0, b have no read account: add read_user and "
        f"read_password to the DSN of db0 and read-user and read-password to group [b] of {path}"
    )
    assert load_settings([*AUTH, "--mysql-config", path, "--servers", "a"], {}).servers == "a"


def test_serve_prints_the_read_account_error_as_one_line(tmp_path: Path) -> None:
    """dbslayer serve stops with exit 2 and the one-line message, before anything starts."""
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", *AUTH, "--backend", "mysql://app@db/x?name=a"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "dbslayer: bad setting backends: backend a has no read account: add read_user"
    )
