"""``dbslayer users``: add, list, disable, enable, remove and rotate the gateway's users.

    dbslayer users add NAME --role read|write|admin [--servers a,b] [--redis URL]
    dbslayer users list | disable NAME | enable NAME | remove NAME | rotate NAME

``add`` and ``rotate`` print the new token alone on their last line: it is shown this once
(Redis holds only its SHA-256). Nothing else ever prints a token or its hash.

Redis: ``--redis URL``, else ``$DBSLAYER_REDIS_URL``, else ``[redis] url`` in the TOML file of
``--config FILE`` or ``$DBSLAYER_CONFIG``, else redis://127.0.0.1:6379/0. Every Redis call is
bounded (1 s), so an unreachable Redis is reported, not waited for.

Exit status: 0 done, 1 refused or failed (one line on stderr: ``dbslayer users: ...``),
2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

PROG = "dbslayer users"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TIMEOUT = 1.0  # seconds per Redis call


class CommandError(Exception):
    """Printed as one line on stderr; exit status 1."""


def main(argv: Sequence[str]) -> int:
    """Run ``dbslayer users <argv>``; returns the exit status."""
    args = list(argv)
    if args[:1] == ["users"]:  # also accept the whole command line after ``dbslayer``
        args = args[1:]
    try:
        options = _parser().parse_args(args)
    except SystemExit as e:  # argparse: usage error (2, message printed) or --help (0)
        return e.code if isinstance(e.code, int) else 2
    try:
        url = redis_url(options.redis, options.config, os.environ)
        from gateway.redis import parse_redis_url

        parse_redis_url(url)
    except (CommandError, ValueError) as e:
        return _fail(str(e))

    from twisted.internet.task import react

    status: list[int] = []

    async def run(reactor: Any) -> None:
        status.append(await _command(reactor, options, url))

    try:
        react(run)
    except SystemExit as e:
        if not status:  # the command itself crashed (react logged why)
            return e.code if isinstance(e.code, int) and e.code else 1
    return status[0]


def redis_url(flag: str | None, config: str | None, environ: Mapping[str, str]) -> str:
    """The Redis URL: flag, environment, config file, default (first one given wins)."""
    if flag:
        return flag
    if environ.get("DBSLAYER_REDIS_URL"):
        return environ["DBSLAYER_REDIS_URL"]
    path = config or environ.get("DBSLAYER_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except OSError as e:
            raise CommandError(f"cannot read config file {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise CommandError(f"config file {path} is not valid TOML: {e}") from None
        section = document.get("redis", {})
        url = section.get("url") if isinstance(section, dict) else None
        if url is not None and not isinstance(url, str):
            raise CommandError(f"config file {path}: [redis] url must be a string")
        if url:
            return url
    return DEFAULT_REDIS_URL


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis", metavar="URL", default=argparse.SUPPRESS, help="Redis URL (redis://...)"
    )
    common.add_argument(
        "--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML file with [redis] url"
    )
    parser = argparse.ArgumentParser(
        prog=PROG, description="Manage the gateway's users (kept in Redis).", parents=[common]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", parents=[common], help="add a user; prints its token")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, metavar="read|write|admin", help="its role")
    add.add_argument(
        "--servers", default="", metavar="a,b", help="backends it may use (default: all)"
    )
    commands.add_parser("list", parents=[common], help="list users (never their tokens)")
    for name, text in (
        ("disable", "stop a user's token from working"),
        ("enable", "let a disabled user in again"),
        ("remove", "delete a user"),
        ("rotate", "give a user a new token (the old one stops working); prints it"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("name", metavar="NAME")
    parser.set_defaults(redis=None, config=None)
    return parser


async def _command(reactor: Any, options: argparse.Namespace, url: str) -> int:
    from gateway.redis import RedisClient, RedisUnavailable
    from gateway.users import UserError, UserStore, clean_servers

    client = RedisClient(url, reactor, timeout=TIMEOUT, reactor=reactor)
    client.start()
    store = UserStore(client)
    try:
        if options.command == "add":
            servers = clean_servers(options.servers.split(","))
            token = await store.add(options.name, options.role, servers)
            allowed = ",".join(servers) or "all"
            print(f"added user {options.name}: role {options.role}, servers {allowed}")
            print("its token, shown only this once (keep it secret):")
            print(token)
        elif options.command == "list":
            print(_table(await store.list()))
        elif options.command == "disable":
            await store.disable(options.name)
            print(f"disabled user {options.name}")
        elif options.command == "enable":
            await store.enable(options.name)
            print(f"enabled user {options.name}")
        elif options.command == "remove":
            await store.remove(options.name)
            print(f"removed user {options.name}")
        elif options.command == "rotate":
            token = await store.rotate(options.name)
            print(f"new token for user {options.name} (the old one no longer works)")
            print("shown only this once (keep it secret):")
            print(token)
        return 0
    except (UserError, RedisUnavailable) as e:
        return _fail(str(e))
    finally:
        await client.stop()


def _table(users: Sequence[Any]) -> str:
    if not users:
        return "no users"
    rows = [("NAME", "ROLE", "SERVERS", "ENABLED", "CREATED")]
    for user in users:
        created = datetime.fromtimestamp(user.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        servers = ",".join(user.servers) or "all"
        rows.append((user.name, user.role, servers, "yes" if user.enabled else "no", created))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
