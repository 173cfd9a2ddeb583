"""``dbslayer webhook test URL``: send one signed ``test`` event, to check a receiver.

    dbslayer webhook test URL [--secret-file FILE | --secret-env NAME | --secret SECRET]
                              [--timeout SECONDS] [--config FILE]

The event is signed and sent exactly as the gateway sends its events (api.webhooks), once,
without retries. Without a secret option the gateway's own settings give it (``--config``
or ``$DBSLAYER_CONFIG``, ``DBSLAYER_WEBHOOK_SECRET_FILE``...). It prints the answer's status
and the delivery id; the URL shows as ``scheme://host:port/path`` only.

Exit status: 0 when the receiver answered 2xx, 1 otherwise (another status, no answer, a
timeout), 2 on bad usage (arguments, a URL that is not http/https, no secret).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

PROG = "dbslayer webhook"


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Run ``dbslayer webhook <argv>``; returns the exit status."""
    environ = os.environ if environ is None else environ
    args = list(argv)
    if args[:1] == ["webhook"]:
        args = args[1:]
    try:
        options = _parser().parse_args(args)
    except SystemExit as e:  # argparse: usage error (2) or --help (0)
        return e.code if isinstance(e.code, int) else 2
    from conf.settings import SettingError
    from conf.webhooks import shown_url, url_problem

    if not options.timeout > 0:
        return _fail(
            f"--timeout must be a number of seconds greater than 0, got {options.timeout}", 2
        )
    problem = url_problem(options.url)
    if problem is not None:
        return _fail(f"URL {problem}", 2)
    if options.secret is not None:
        print(
            f"{PROG}: warning: a secret on the command line can be read by other local users "
            "(ps, /proc/PID/cmdline) and stays in shell history: use --secret-file or "
            "--secret-env",
            file=sys.stderr,
        )
    try:
        secret = _secret(options, environ)
    except SettingError as e:
        return _fail(str(e), 2)
    if not secret:
        return _fail(
            "no secret to sign with: give --secret-file FILE, --secret-env NAME or --secret, "
            "or configure webhook_secret_file in the gateway's settings",
            2,
        )
    from twisted.internet.task import react

    status: list[int] = []

    async def run(reactor: Any) -> None:
        status.append(await _send(reactor, options.url, secret.encode(), options.timeout))

    print(f"sending a test event to {shown_url(options.url)}")
    try:
        react(run)
    except SystemExit as e:
        if not status:
            return e.code if isinstance(e.code, int) and e.code else 1
    return status[0]


def _secret(options: argparse.Namespace, environ: Mapping[str, str]) -> str:
    from conf.dsn import PasswordError, _password_from_env, _password_from_file
    from conf.settings import SettingError

    try:
        if options.secret_file is not None:
            return _password_from_file("--secret-file", options.secret_file)
        if options.secret_env is not None:
            return _password_from_env("--secret-env", options.secret_env, environ)
    except PasswordError as e:
        raise SettingError("secret", str(e)) from None
    if options.secret is not None:
        return str(options.secret)
    from conf.load import load_settings
    from conf.webhooks import webhook_secret

    argv = ["--config", options.config] if options.config else []
    settings = load_settings(argv, environ, prog=PROG, require_read_accounts=False)
    return webhook_secret(settings, environ)


async def _send(reactor: Any, url: str, secret: bytes, timeout: float) -> int:
    from twisted.internet.defer import Deferred

    from api.webhooks import RetryPolicy, WebhookSender, make_agent
    from gateway.events import Events

    sender = WebhookSender(
        url,
        secret,
        reactor,
        make_agent(reactor, timeout),
        RetryPolicy(attempts=1),
        queue_size=1,
        timeout=timeout,
    )
    events = Events(reactor, f"{_hostname()} (dbslayer webhook test)")
    events.on("test")(sender.offer)
    event = events.emit("test", message="a test event sent by `dbslayer webhook test`")
    assert event is not None
    while sender.queued:
        pause: Deferred[None] = Deferred()
        reactor.callLater(0.02, pause.callback, None)
        await pause
    counters = sender.counters
    answer = f"HTTP {counters.last_status}" if counters.last_status else counters.last_error
    print(f"delivery {event.id}: {answer}")
    return 0 if counters.delivered else 1


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Check a webhook receiver.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    test = commands.add_parser("test", help="send one signed test event to URL")
    test.add_argument("url", metavar="URL", help="the receiver (http:// or https://)")
    secret = test.add_mutually_exclusive_group()
    secret.add_argument("--secret-file", metavar="FILE", help="file holding the secret (mode 600)")
    secret.add_argument("--secret-env", metavar="NAME", help="variable holding the secret")
    secret.add_argument("--secret", metavar="SECRET", help="the secret itself (seen by ps)")
    test.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="seconds to wait (5)"
    )
    test.add_argument(
        "--config", metavar="FILE", help="the gateway's TOML settings, for its webhook secret"
    )
    return parser


def _fail(message: str, status: int = 1) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
