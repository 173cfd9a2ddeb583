"""Typos in the configuration are said, never passed over: a ``DBSLAYER_*`` variable that names
no setting is a start-up warning naming the closest one; an option file without groups to serve
(or naming groups it does not have) stops start-up instead of serving the demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from conf.load import INTERNAL_ENV, SettingError, environment_warnings, load_settings
from conf.settings import Settings, env_var, iter_settings


def warning(var: str, meant: str | None) -> str:
    hint = f" (did you mean {meant}?)" if meant else ""
    return f"unknown environment variable {var}{hint}; it is ignored"


@pytest.mark.parametrize(
    ("var", "meant"),
    [
        ("DBSLAYER_PROT", "DBSLAYER_PORT"),
        ("DBSLAYER_BACKEND", "DBSLAYER_BACKENDS"),
        ("DBSLAYER_MAX_INFLIGHT", "DBSLAYER_MAX_IN_FLIGHT"),
        ("DBSLAYER_REDIS", "DBSLAYER_REDIS_URL"),
        ("DBSLAYER_CONFIG_FILE", "DBSLAYER_CONFIG"),
        ("DBSLAYER_ZZZ", None),
    ],
)
def test_an_unknown_variable_is_a_warning_naming_the_closest(var: str, meant: str | None) -> None:
    environ = {var: "9191", "DBSLAYER_PORT": "9090", "HOME": "/root"}
    assert environment_warnings(environ) == [warning(var, meant)]
    assert load_settings([], environ).port == 9090  # (ignored, as the warning says)


def test_known_variables_are_not_warned_about() -> None:
    """Every setting's variable, DBSLAYER_CONFIG, the gateway's internal ones, other
    programs' variables and empty ones (empty counts as unset) pass without a word."""
    environ = {env_var(name): "x" for name, _, _ in iter_settings()}
    environ |= {"DBSLAYER_CONFIG": "x", "PATH": "/bin", "DBSLAYER_TYPO": ""}
    environ |= {name: "1" for name in INTERNAL_ENV}
    assert environment_warnings(environ) == []


def test_several_are_warned_about_in_order() -> None:
    environ = {"DBSLAYER_WORKRS": "2", "DBSLAYER_AUTH_": "1", "DBSLAYER_PORT": "1"}
    assert environment_warnings(environ) == [
        warning("DBSLAYER_AUTH_", "DBSLAYER_AUTH"),
        warning("DBSLAYER_WORKRS", "DBSLAYER_WORKERS"),
    ]


def test_internal_variables_are_the_workers() -> None:
    """INTERNAL_ENV holds exactly the variables a master passes to its workers."""
    from api import workers

    passed = {value for name, value in vars(workers).items() if name.endswith("_ENV")}
    assert passed == set(INTERNAL_ENV)


def test_variables_backends_read_passwords_from_are_known(tmp_path: Path) -> None:
    """password_env (DSN) and password-env / read-password-env (option file) name variables
    of the user's choosing, DBSLAYER_ ones included: those are not warned about."""
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[a]\nuser = app\npassword-env = DBSLAYER_A_PW\n")
    environ = {"DBSLAYER_DB_PW": "s1", "DBSLAYER_A_PW": "s2", "DBSLAYER_RO_PW": "s3"}
    dsn = (
        "mysql://app@h/x?password_env=DBSLAYER_DB_PW&read_user=ro&read_password_env=DBSLAYER_RO_PW"
    )
    argv = ["--backend", dsn, "--mysql-config", str(cnf), "--servers", "a"]
    settings = load_settings(argv, environ)
    assert environment_warnings(environ, settings) == []
    assert environment_warnings(environ) == [
        warning("DBSLAYER_A_PW", None),
        warning("DBSLAYER_DB_PW", None),
        warning("DBSLAYER_RO_PW", None),
    ]


def test_the_serve_command_prints_them_once(capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import warn_unknown_environment

    warn_unknown_environment({"DBSLAYER_PROT": "1"}, Settings())
    assert (
        capsys.readouterr().err
        == f"dbslayer: warning: {warning('DBSLAYER_PROT', 'DBSLAYER_PORT')}\n"
    )


def test_the_twistd_plugin_prints_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib

    monkeypatch.setenv("DBSLAYER_PROT", "9191")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    plugin = importlib.import_module("twisted.plugins.dbslayer_plugin")
    options = plugin.Options()
    options.parseOptions([])
    assert capsys.readouterr().err == (
        f"twistd dbslayer: warning: {warning('DBSLAYER_PROT', 'DBSLAYER_PORT')}\n"
    )


# ------------------------------------------------------------------ option files


NO_GROUPS = (
    "bad setting mysql_config: names the option file {path} but no group of it to serve: set "
    "servers (--servers a:b, pooled) or named (--named a:b, chosen with SERVER) (from {source}; "
    "servers from the default; named from the default)"
)


def option_file(tmp_path: Path) -> str:
    path = tmp_path / "my.cnf"
    path.write_text("[client]\nuser = app\n[a]\nhost = h1\n[b]\nhost = h2\n")
    return str(path)


def error_of(argv: list[str], environ: dict[str, str]) -> str:
    with pytest.raises(SettingError) as info:
        load_settings(argv, environ)
    return str(info.value)


def test_an_option_file_without_groups_is_an_error(tmp_path: Path) -> None:
    """--mysql-config alone, DBSLAYER_MYSQL_CONFIG alone, [database] mysql_config alone: an
    error naming the settings, never the demo."""
    path = option_file(tmp_path)
    assert error_of(["--mysql-config", path], {}) == NO_GROUPS.format(
        path=path, source="--mysql-config"
    )
    assert error_of([], {"DBSLAYER_MYSQL_CONFIG": path}) == NO_GROUPS.format(
        path=path, source="DBSLAYER_MYSQL_CONFIG"
    )
    toml = tmp_path / "c.toml"
    toml.write_text(f'[database]\nmysql_config = "{path}"\n')
    assert error_of(["--config", str(toml)], {}) == NO_GROUPS.format(
        path=path, source=f"{toml} [database] mysql_config"
    )
    # Backends from DSNs do not make the groups less missing.
    message = error_of(["--mysql-config", path, "--backend", "sqlite:///x.db"], {})
    assert message.startswith("bad setting mysql_config: names the option file")


def test_an_option_file_with_groups_serves_them(tmp_path: Path) -> None:
    path = option_file(tmp_path)
    mode, specs = load_settings(["--mysql-config", path, "--servers", "a:b"], {}).resolve_backends()
    assert mode == "pool" and [s.name for s in specs] == ["a", "b"]
    mode, specs = load_settings(["--mysql-config", path, "--named", "b"], {}).resolve_backends()
    assert mode == "named" and [s.name for s in specs] == ["b"]


def test_a_group_the_file_lacks_is_an_error_naming_its_groups(tmp_path: Path) -> None:
    path = option_file(tmp_path)
    message = error_of(["--mysql-config", path, "--servers", "a:c"], {})
    assert message == (
        f"bad setting mysql_config: option file {path} has no [c] group (its groups: [a], [b]) "
        "(from --mysql-config; servers from --servers)"
    )
    empty = tmp_path / "empty.cnf"
    empty.write_text("[client]\nuser = app\n")
    assert "has no [a] group (it has no group to serve)" in error_of(
        ["--mysql-config", str(empty), "--named", "a"], {}
    )
