"""The ``dbslayer`` command: ``dbslayer serve [options]`` (see ``dbslayer serve --help``),
``dbslayer users ...`` and ``dbslayer grants ...``."""

from __future__ import annotations

import json
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
  webhook   send one signed test event to a webhook receiver
            (dbslayer webhook test URL [--secret-file FILE | --secret-env NAME])
"""


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # this process's own command line, not a test's arguments
        hide_passwords_from_ps()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        try:
            return serve(rest)
        except KeyboardInterrupt:  # Ctrl+C before the server's own signal handlers are set
            return 130
    if command == "users":
        from api.users_cli import main as users_main

        return users_main(rest)
    if command == "grants":
        from api.grants import main as grants_main

        return grants_main(rest)
    if command == "webhook":
        from api.webhook_cli import main as webhook_main

        return webhook_main(rest)
    print(f"dbslayer: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


#: Flags whose value is a secret as a whole (shown as ``***``), and flags whose value is a
#: webhook URL (shown as ``scheme://host:port/path``: its query string may hold a token).
SECRET_FLAGS = ("--webhook-secret", "--secret")
URL_FLAGS = ("--webhook",)


def masked_arguments(args: Sequence[str]) -> list[str]:
    """``args`` with the password in each URL (alone or as ``--flag=URL``) shown as ``***``,
    secret flags' values as ``***`` and webhook URLs in their shown form."""
    from conf.settings import mask_password
    from conf.webhooks import has_secret_parts, shown_url

    masked = []
    previous = ""
    for arg in args:
        flag, equals, value = arg.partition("=")
        if previous in SECRET_FLAGS:
            masked.append("***")
        elif previous in URL_FLAGS:
            masked.append(shown_url(arg) if has_secret_parts(arg) else arg)
        elif arg.startswith("--") and equals and flag in SECRET_FLAGS:
            masked.append(flag + "=***")
        elif arg.startswith("--") and equals and flag in URL_FLAGS:
            masked.append(flag + "=" + (shown_url(value) if has_secret_parts(value) else value))
        elif arg.startswith("--") and equals:
            masked.append(flag + equals + mask_password(value))
        else:
            masked.append(mask_password(arg))
        previous = arg
    return masked


def flags_with_passwords(args: Sequence[str]) -> list[str]:
    """The flags of ``args`` whose values carry a password, each once, in order."""
    flags: list[str] = []
    for previous, arg, shown in zip(["", *args], args, masked_arguments(args)):
        if shown == arg:
            continue
        if arg.startswith("--") and "=" in arg:
            flag = arg.partition("=")[0]
        else:
            flag = previous if previous.startswith("-") else "an argument"
        if flag not in flags:
            flags.append(flag)
    return flags


def hide_passwords_from_ps() -> None:
    """Show this process's command line with its passwords masked.

    ``/proc/PID/cmdline`` (what ``ps`` and ``top`` show) is readable by every local user.
    ``setproctitle`` rewrites it in place; the kernel name (``/proc/PID/comm``) is put back
    as it was. Before this runs, for the moment Python takes to start, the password is
    visible: ``serve`` warns about it. A command line without a password is left as it is.
    """
    shown = list(sys.orig_argv)
    masked = masked_arguments(shown)
    if masked == shown:
        return
    import setproctitle

    name = setproctitle.getthreadtitle()
    setproctitle.setproctitle(" ".join(masked))
    setproctitle.setthreadtitle(name)


def _warn_passwords_on_command_line(argv: Sequence[str]) -> None:
    """One line naming the flags that carry a password and where to keep it instead."""
    from conf.settings import env_var, iter_settings

    flags = flags_with_passwords(argv)
    if not flags:
        return
    advice = []
    if "--backend" in flags:
        advice.append(
            "keep backend passwords in a file (password_file=PATH in the DSN, mode 600) or in "
            "the environment (password_env=NAME)"
        )
    for name, meta, _ in iter_settings():
        if meta.flag in flags and meta.flag != "--backend":
            advice.append(f"give {meta.flag} in {env_var(name)} or the --config file")
    print(
        f"dbslayer: warning: a password on the command line ({', '.join(flags)}) can be read "
        "by other local users (ps, /proc/PID/cmdline) until start-up masks it, and stays in "
        f"shell history: {'; '.join(advice) or 'give it in the --config file'}",
        file=sys.stderr,
        flush=True,
    )


def warn_unknown_environment(environ: Any, settings: Any, prog: str = "dbslayer") -> None:
    """Print a start-up warning for each ``DBSLAYER_*`` variable that names no setting (used by
    ``dbslayer serve``, the twistd plugin and conf/dbslayer.tac)."""
    from conf.load import environment_warnings

    for warning in environment_warnings(environ, settings):
        print(f"{prog}: warning: {warning}", file=sys.stderr, flush=True)


def serve(argv: Sequence[str]) -> int:
    """Load the settings, start the services, run the reactor until stopped."""
    from api.reactor import install as install_reactor
    from api.workers import ARGV_ENV, WorkerContext
    from conf.load import SettingError, load_settings

    passed = os.environ.pop(ARGV_ENV, None)
    if passed is not None:  # a worker: its master passes the arguments out of ps's sight
        argv = json.loads(passed)
    try:
        settings = load_settings(argv, os.environ)
        from api.webhooks import wanted_names

        wanted_names(settings.webhook_events)  # (the names are the event map's: checked here)
    except SettingError as e:
        print(f"dbslayer: {e}", file=sys.stderr)
        return 2

    workers = settings.workers or os.cpu_count() or 1
    worker = WorkerContext.from_environ(os.environ)
    if worker is None:  # (once: the master's, not each worker's)
        _warn_passwords_on_command_line(argv)
        warn_unknown_environment(os.environ, settings)
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
        # (each worker leaves for drain_delay, then drains: the master waits for both)
        drain = settings.drain_delay + settings.drain_timeout
        return run_master(argv, workers, settings.host, settings.port, admin, drain)

    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner, textFileLogObserver

    # (installed before anything imports twisted.internet.reactor: klein does, with api.service)
    reactor: Any = install_reactor()
    from api.service import make_service

    observer: Any = textFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    try:
        service = make_service(settings, reactor, worker)
        service.startService()
    except CannotListenError as e:
        reason = getattr(e.socketError, "strerror", None) or e.socketError
        print(
            f"dbslayer: cannot listen on {e.interface or '*'}:{e.port}: {reason}", file=sys.stderr
        )
        return 1
    except OSError as e:  # the access log file, or a socket inherited from the master
        where = e.filename or f"cannot listen on {settings.host}:{settings.port}"
        print(f"dbslayer: {where}: {e.strerror}", file=sys.stderr)
        return 1
    except SettingError as e:
        print(f"dbslayer: {e}", file=sys.stderr)
        return 2
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    run_until_stopped(reactor)
    return 0


def run_until_stopped(reactor: Any) -> None:
    """Run the reactor until SIGTERM or SIGINT (or ``/shutdown``) stops it, once.

    Twisted's own handlers call ``reactor.stop()`` for every signal, and the second call
    raises ReactorNotRunning inside the reactor, logged as a traceback: Ctrl+C pressed twice,
    or a worker that gets the terminal's SIGINT and its master's SIGTERM. These handlers stop
    it once and log one line per signal. A SIGINT this process was started with ignored (a
    worker: the master decides) stays ignored."""
    import signal

    from twisted.logger import Logger

    from api.workers import stop_reactor

    log = Logger(namespace="dbslayer")

    def on_signal(signum: int, frame: object) -> None:
        log.info("{signal} received: stopping", signal=signal.Signals(signum).name)
        reactor.callFromThread(stop_reactor, reactor)

    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_signal)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    sys.exit(main())
