"""Load :class:`Settings` from a TOML file, the environment and the command line.

Precedence: defaults < TOML file (``--config`` or ``DBSLAYER_CONFIG``) <
``DBSLAYER_<NAME>`` environment variables < command-line flags.  Everything is
driven by the field table in ``conf.settings``; values are validated once,
after merging, and a failure names the setting and where its value came from.
An empty environment variable counts as unset.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from conf.dsn import dsn_from_table, parse_dsn
from conf.mycnf import read_groups
from conf.settings import (
    ENV_PREFIX,
    SECTIONS,
    BackendSpec,
    SettingError,
    Settings,
    default_demo_database,
    env_var,
    iter_settings,
)
from conf.webhooks import webhook_secret

__all__ = [
    "BackendSpec",
    "SettingError",
    "Settings",
    "build_parser",
    "environment_warnings",
    "load_settings",
]

CONFIG_ENV = "DBSLAYER_CONFIG"
DEFAULT_SOURCE = "the default"
#: ``DBSLAYER_*`` variables of the gateway's own that name no setting: those a master passes to
#: its workers (api/workers.py; a test holds the two lists together).
INTERNAL_ENV = (
    "DBSLAYER_WORKER_DIR",
    "DBSLAYER_WORKER_START",
    "DBSLAYER_WORKER_ARGV",
    "DBSLAYER_WORKER_FDS",
    "DBSLAYER_WORKER_SLOT",
)


def build_parser(prog: str = "dbslayer serve") -> argparse.ArgumentParser:
    """Return the command-line parser; unset flags are absent from the namespace."""
    parser = argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
        description="DBSlayer-compatible JSON-over-HTTP database gateway.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML settings file (default: ${CONFIG_ENV}, else none)",
    )
    for name, meta, attribute in iter_settings():
        shown = meta.shown_default
        if shown is None:
            shown = str(attribute.default) if attribute.default != "" else "none"
        help_text = f"{meta.help} (default: {shown})".replace("%", "%%")
        metavar = {"list": "DSN", "urls": "URL", "float": "SECONDS", "int": "N"}.get(
            meta.kind, name.upper()
        )
        action = "append" if meta.kind in ("list", "urls") else "store"
        if meta.kind == "bool":  # "--auth" alone means true; "--auth false" works too
            parser.add_argument(
                meta.flag, dest=name, nargs="?", const="true", metavar="true|false", help=help_text
            )
            continue
        parser.add_argument(meta.flag, dest=name, action=action, metavar=metavar, help=help_text)
    return parser


def load_settings(
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    prog: str = "dbslayer serve",
    require_read_accounts: bool = True,
) -> Settings:
    """Parse ``argv`` and ``environ`` into validated Settings (exits 2 on argparse errors).

    ``prog`` names the command in argparse's messages; ``require_read_accounts=False``
    skips the check that, with auth on, every MySQL backend has a read account
    (``dbslayer grants`` loads the backends to create those accounts).
    """
    args = vars(build_parser(prog).parse_args(list(argv)))
    metas = {name: meta for name, meta, _ in iter_settings()}
    values: dict[str, Any] = {"demo_database": default_demo_database(environ)}
    sources: dict[str, str] = {name: DEFAULT_SOURCE for name in metas}

    config, config_source = args.pop("config", None), "--config"
    if config is None:
        config, config_source = environ.get(CONFIG_ENV) or None, CONFIG_ENV
    if config is not None:
        for name, value in _read_toml(config, config_source, metas).items():
            sources[name] = f"{config} [{metas[name].section}] {metas[name].key or name}"
            if name == "backends" and isinstance(value, list):
                try:
                    value = [
                        dsn_from_table(item, index) if isinstance(item, dict) else item
                        for index, item in enumerate(value)
                    ]
                except SettingError as err:
                    raise err.with_source(sources[name]) from None
            values[name] = metas[name].from_toml(value)
    for name, meta in metas.items():
        text = environ.get(env_var(name), "")
        if text:
            values[name], sources[name] = meta.from_text(text), env_var(name)
    for name, given in args.items():
        meta = metas[name]
        values[name] = tuple(given) if meta.kind in ("list", "urls") else meta.from_text(given)
        sources[name] = meta.flag

    try:
        settings = Settings(**values)
        settings.resolve_backends(require_read_accounts=require_read_accounts, environ=environ)
        webhook_secret(settings, environ)  # (read now: a bad file stops start-up)
    except SettingError as err:
        raise err.with_source(_describe_source(err, sources)) from None
    return settings


def _describe_source(err: SettingError, sources: Mapping[str, str]) -> str:
    text = sources.get(err.setting, DEFAULT_SOURCE)
    for name in err.related:
        text += f"; {name} from {sources.get(name, DEFAULT_SOURCE)}"
    return text


def _read_toml(path: str, source: str, metas: Mapping[str, Any]) -> dict[str, object]:
    """Return ``{field: raw value}`` from a TOML file, rejecting unknown sections and keys."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise SettingError("config", f"cannot read {path}: {err.strerror}", source) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingError("config", f"{path} is not valid TOML: {err}", source) from None
    found: dict[str, object] = {}
    fields = {(m.section, m.key or n): n for n, m in metas.items()}
    for section, table in data.items():
        if section not in SECTIONS:
            hint = f"; {section} belongs in [{metas[section].section}]" if section in metas else ""
            expected = ", ".join(f"[{s}]" for s in SECTIONS)
            raise SettingError(
                section, f"unknown section [{section}], expected one of {expected}{hint}", path
            )
        if not isinstance(table, dict):
            raise SettingError(section, f"[{section}] must be a table", path)
        for key, value in table.items():
            name = fields.get((section, key))
            if name is None:
                meta = metas.get(key)
                known = ", ".join(m.key or n for n, m in metas.items() if m.section == section)
                hint = f"; it belongs in [{meta.section}]" if meta is not None else ""
                raise SettingError(key, f"unknown key in [{section}]{hint} (known: {known})", path)
            found[name] = value
    return found


def environment_warnings(environ: Mapping[str, str], settings: Settings | None = None) -> list[str]:
    """One start-up warning per ``DBSLAYER_*`` variable of ``environ`` that names no setting
    (a typo such as ``DBSLAYER_PROT`` would otherwise be ignored without a word), naming the
    closest variable that does. Known besides the settings' own: ``DBSLAYER_CONFIG``, the
    gateway's internal variables and those the backends of ``settings`` read a password from
    (``password_env=``). An empty variable counts as unset, as when settings are loaded."""
    settings_vars = [env_var(name) for name, _, _ in iter_settings()] + [CONFIG_ENV]
    known = {*settings_vars, *INTERNAL_ENV}
    if settings is not None:
        known.update(_password_variables(settings))
        if settings.webhook_secret_env:
            known.add(settings.webhook_secret_env)
    warnings = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in known or not environ[var]:
            continue
        # (compared without the prefix, which every name shares)
        suffixes = [known_var[len(ENV_PREFIX) :] for known_var in settings_vars]
        closest = difflib.get_close_matches(var[len(ENV_PREFIX) :], suffixes, n=1, cutoff=0.6)
        hint = f" (did you mean {ENV_PREFIX}{closest[0]}?)" if closest else ""
        warnings.append(f"unknown environment variable {var}{hint}; it is ignored")
    return warnings


def _password_variables(settings: Settings) -> set[str]:
    """The variables the configured backends read their passwords from."""
    try:
        specs = [parse_dsn(text, index) for index, text in enumerate(settings.backends)]
        groups = settings.servers or settings.named
        if settings.mysql_config and groups:
            specs += read_groups(settings.mysql_config, groups.split(":"))
    except SettingError:  # (reported where the settings are resolved)
        return set()
    return {name for spec in specs for name in (spec.password_env, spec.read_password_env) if name}
