"""Webhook URLs and their secret: validation, the redacted form every log and page shows, and
where the signing secret is read from.

A webhook URL is a secret of its own: receivers (Slack, chat bots, serverless functions) often
authenticate the sender by a token in the query string or in the user part of the URL. So
nothing the gateway shows (``/stats``, ``/metrics``, logs, settings dumps, error messages)
carries more than :func:`shown_url`: ``scheme://host:port/path``, without userinfo, query or
fragment. The signing secret follows the rules of backend passwords (``conf.dsn``): it comes
from the config file, the environment, a variable it names or a file only its owner may read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: The signing secret's sources, in the order they are tried; at most one may be set.
SECRET_SETTINGS = ("webhook_secret", "webhook_secret_file", "webhook_secret_env")


def shown_url(url: str) -> str:
    """``url`` as logs and ``/stats`` may show it: ``scheme://host:port/path`` (no userinfo,
    query string or fragment; the port always written). A text that does not parse as a URL
    shows as ``<invalid URL>``: its parts cannot be told apart, so none is shown."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if not parts.scheme or not host:
        return "<invalid URL>"
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    shown_host = f"[{host}]" if ":" in host else host
    path = parts.path or "/"
    return f"{parts.scheme.lower()}://{shown_host}:{port}{path}"


def has_secret_parts(url: str) -> bool:
    """True when ``url`` has parts :func:`shown_url` hides (userinfo, query, fragment), or
    does not parse (then nothing of it may be shown)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return True
    return bool(parts.username or parts.password or parts.query or parts.fragment or "@" in url)


def url_problem(url: object) -> str | None:
    """Why ``url`` cannot be a webhook URL (the message never quotes the URL, only its shown
    form), or None when it can."""
    if not isinstance(url, str):
        return f"must be a URL string, got a {type(url).__name__}"
    shown = shown_url(url)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"must be an http:// or https:// URL with a valid host and port, got {shown}"
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme.lower() or "none"
        return f"must be an http:// or https:// URL, got the scheme {scheme!r} ({shown})"
    if not parts.hostname:
        return f"must name a host (http://host:port/path), got {shown}"
    if any(ch in url for ch in " \t\r\n\x00"):
        return f"must not contain spaces or control characters ({shown})"
    return None


def urls_repr(value: object) -> str:
    """The ``repr`` of the webhook setting in a settings dump: shown URLs only."""
    if isinstance(value, tuple):
        return repr(tuple(shown_url(v) if isinstance(v, str) else "<invalid>" for v in value))
    return "<invalid>"


def webhook_secret(settings: Any, environ: Mapping[str, str]) -> str:
    """The signing secret of ``settings`` (``webhook_secret``, else the file of
    ``webhook_secret_file``, else the variable ``webhook_secret_env`` names); empty when none
    is set. Raise SettingError naming the setting and the path or variable, never the secret."""
    from conf.dsn import PasswordError, _password_from_env, _password_from_file
    from conf.settings import SettingError

    given = [name for name in SECRET_SETTINGS if getattr(settings, name)]
    if len(given) > 1:
        raise SettingError(
            given[0],
            f"give the webhook secret one way only, not also {', '.join(given[1:])}",
            related=tuple(given[1:]),
        )
    if not given:
        return ""
    name = given[0]
    value: str = getattr(settings, name)
    try:
        if name == "webhook_secret_file":
            return _password_from_file("webhook_secret_file", value)
        if name == "webhook_secret_env":
            return _password_from_env("webhook_secret_env", value, environ)
    except PasswordError as err:
        raise SettingError(name, str(err)) from None
    return value
