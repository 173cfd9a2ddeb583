"""The ``dbslayer`` command: ``dbslayer serve [options]`` (see ``dbslayer serve --help``),
``dbslayer users ...`` and ``dbslayer grants ...``."""

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
  grants    print the SQL that creates each MySQL backend's read-only account (SELECT and
            SHOW VIEW), for the read role: takes the backend options of serve
            (dbslayer grants --backend DSN [--read-user NAME] [--host HOST] | mariadb -uroot)
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
    if command == "grants":
        from api.grants import main as grants_main

        return grants_main(rest)
    print(f"dbslayer: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


def serve(argv: Sequence[str]) -> int:
    """Load the settings, start the services, run the reactor until stopped."""
    from api.workers import WorkerContext
    from conf.load import SettingError, load_settings

    try:
        settings = load_settings(argv, os.environ)
    except SettingError as e:
        print(f"dbslayer: {e}", file=sys.stderr)
        return 2

    workers = settings.workers or os.cpu_count() or 1
    worker = WorkerContext.from_environ(os.environ)
    if workers > 1 and worker is None:
        from api.workers import run_master
        from gateway.demo import ensure_demo_database

        try:
            if not settings.resolve_backends()[1]:
                ensure_demo_database(settings.demo_database)  # once, before the workers start
        except SettingError as e:
            print(f"dbslayer: {e}", file=sys.stderr)
            return 2
        admin = (settings.admin_host, settings.admin_port) if settings.admin_port else None
        return run_master(
            argv, workers, settings.host, settings.port, admin, settings.drain_timeout
        )

    from twisted.internet import reactor as global_reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from api.service import make_service

    reactor: Any = global_reactor
    observer: Any = textFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    try:
        service = make_service(settings, reactor, worker)
        service.startService()
    except CannotListenError as e:
        print(
            f"dbslayer: cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}",
            file=sys.stderr,
        )
        return 1
    except OSError as e:  # binding a shared (SO_REUSEPORT) port
        print(
            f"dbslayer: cannot listen on {settings.host}:{settings.port}: {e.strerror}",
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
