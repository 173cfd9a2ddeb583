"""Load :class:`Settings` from a TOML file, the environment and the command line.

Precedence: defaults < TOML file (``--config`` or ``DBSLAYER_CONFIG``) <
``DBSLAYER_<NAME>`` environment variables < command-line flags.  Everything is
driven by the field table in ``conf.settings``; values are validated once,
after merging, and a failure names the setting and where its value came from.
An empty environment variable counts as unset.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from conf.dsn import dsn_from_table
from conf.settings import (
    SECTIONS,
    BackendSpec,
    SettingError,
    Settings,
    default_demo_database,
    env_var,
    iter_settings,
)

__all__ = ["BackendSpec", "SettingError", "Settings", "build_parser", "load_settings"]

CONFIG_ENV = "DBSLAYER_CONFIG"
DEFAULT_SOURCE = "the default"


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
        metavar = {"list": "DSN", "float": "SECONDS", "int": "N"}.get(meta.kind, name.upper())
        action = "append" if meta.kind == "list" else "store"
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
        values[name] = tuple(given) if meta.kind == "list" else meta.from_text(given)
        sources[name] = meta.flag

    try:
        settings = Settings(**values)
        settings.resolve_backends(require_read_accounts=require_read_accounts, environ=environ)
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
