"""The ``dbslayer`` command: ``dbslayer serve [options]`` (see ``dbslayer serve --help``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

USAGE = """usage: dbslayer COMMAND [options]

commands:
  serve     run the gateway (dbslayer serve --help lists its options)
  users     manage users in Redis: add, list, disable, enable, remove, rotate
            (dbslayer users add NAME --role read|write|admin [--servers a,b] [--redis URL])
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        return serve(rest)
    if command == "users":
        from api.users_cli import main as users_main

        return users_main(rest)
    print(f"dbslayer: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


def serve(argv: Sequence[str]) -> int:
    """Load the settings, start the services, run the reactor until stopped."""
    from conf.load import SettingError, load_settings

    try:
        settings = load_settings(argv, os.environ)
    except SettingError as e:
        print(f"dbslayer: {e}", file=sys.stderr)
        return 2

    from twisted.internet import reactor as global_reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from api.service import make_service

    reactor: Any = global_reactor
    observer: Any = textFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    try:
        service = make_service(settings, reactor)
        service.startService()
    except CannotListenError as e:
        print(
            f"dbslayer: cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}",
            file=sys.stderr,
        )
        return 1
    except SettingError as e:
        print(f"dbslayer: {e}", file=sys.stderr)
        return 2
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
