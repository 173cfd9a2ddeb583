"""Typed, frozen settings of the gateway and the one table that describes them.

Every field of :class:`Settings` carries a :class:`SettingMeta` (TOML section,
one-line help, CLI flag, value kind and limits).  That table drives TOML
loading, environment loading and the command-line parser in ``conf.load``;
the per-field checks run as attrs validators, so validation lives here only.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

SECTIONS = ("server", "admin", "stats", "database", "health", "redis", "auth", "cache", "webhooks")
MODES = ("auto", "pool", "primary-replica", "named", "galera")
ENV_PREFIX = "DBSLAYER_"
_META = "dbslayer"


class SettingError(Exception):
    """A bad setting; ``str()`` is one line naming the setting and its source."""

    def __init__(
        self, setting: str, problem: str, source: str = "", related: tuple[str, ...] = ()
    ) -> None:
        super().__init__(setting, problem, source, related)
        self.setting = setting
        self.problem = problem
        self.source = source
        self.related = related

    def __str__(self) -> str:
        text = f"bad setting {self.setting}: {self.problem}"
        if self.source:
            text += f" (from {self.source})"
        return text.replace("\r", " ").replace("\n", " ")

    def with_source(self, source: str) -> SettingError:
        """Return a copy of this error that says where the value came from."""
        return SettingError(self.setting, self.problem, source, self.related)

    def with_related(self, *names: str) -> SettingError:
        """Return a copy that also names other settings involved."""
        return SettingError(self.setting, self.problem, self.source, self.related + names)


_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^:]*):(.*)@")
# Any query key that looks like a password (password, read_password, passwd, pwd, a misspelt
# pasword...): its value is masked whether or not the key is one the DSN parser accepts. The
# keys naming where a password is kept ((read_)password_file and _env, spelt exactly) hold a
# path or a variable name, left visible.
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?!(?-i:(?:read_)?password_(?:file|env))=)[^=&]*(?:pas|pw|secret)[^=&]*=)[^&]*"
)


def mask_password(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***``.

    Everything up to the *last* ``@`` counts as credentials, so an unencoded
    ``/``, ``?`` or ``@`` in a password is masked too (over-masking is safe).
    """
    masked = _CREDENTIALS.sub(r"\1\2:***@", dsn, count=1) if "@" in dsn else dsn
    return _QUERY_SECRET.sub(r"\1***", masked)


def default_demo_database(environ: Mapping[str, str]) -> str:
    """``$XDG_DATA_HOME/dbslayer/demo.sqlite3``, XDG_DATA_HOME defaulting to ~/.local/share."""
    base = environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore relative values
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "share")
    return os.path.join(base, "dbslayer", "demo.sqlite3")


def _describe(value: object) -> str:
    """Describe a non-list value without echoing it (it may hold a DSN password)."""
    if isinstance(value, str):
        return 'a single string (write a list: ["..."])'
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "a list object (pass a tuple)"
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value if not isinstance(v, str)})
        return f"a list containing {', '.join(kinds)}"
    return f"a {type(value).__name__}"


@attrs.frozen
class SettingMeta:
    """What one setting is: where it lives, how it is parsed, what it accepts."""

    section: str
    flag: str
    help: str
    kind: str = "str"  # str | choice | groups | path | int | float | list | bool | hosts | origins
    # | urls (webhook URLs) | fraction (0 to 1) | events (event names)
    low: int | None = None
    high: int | None = None
    shown_default: str | None = None
    key: str | None = None  # the key in the TOML section, when it differs from the field name
    choices: tuple[str, ...] = ()  # the accepted values of a "choice" setting

    def problem(self, value: object) -> str | None:
        """Return why ``value`` is not acceptable, or None if it is."""
        if self.kind == "list":
            ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
            return None if ok else f"must be a list of DSN strings, got {_describe(value)}"
        if self.kind == "urls":
            return _urls_problem(value)
        if self.kind == "fraction":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and 0 <= value <= 1  # type: ignore[arg-type,operator]
            return None if ok else f"must be a fraction from 0 to 1 (0 = off), got {value!r}"
        if self.kind in _NAME_LISTS:
            return _name_list_problem(self.kind, value)
        if self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            if ok and self.low is not None and value < self.low:  # type: ignore[operator]
                ok = False
            if ok and self.high is not None and value > self.high:  # type: ignore[operator]
                ok = False
            return None if ok else f"must be an integer {self._range()}, got {value!r}"
        if self.kind == "bool":
            ok = isinstance(value, bool)
            return None if ok else f"must be true or false, got {value!r}"
        if self.kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and value > 0  # type: ignore[arg-type,operator]
            return None if ok else f"must be a number of seconds greater than 0, got {value!r}"
        if not isinstance(value, str):
            return f"must be a string, got {value!r}"
        if self.kind == "choice" and value not in self.choices:
            shown = ", ".join(repr(choice) if not choice else choice for choice in self.choices)
            return f"must be one of {shown}, got {value!r}"
        if self.kind == "groups" and value and not all(value.split(":")):
            return f"must be colon-separated option-file group names like 'a:b', got {value!r}"
        if self.kind == "path" and not value:
            return "must not be empty"
        return None

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {self.low} to {self.high}"
        return f">= {self.low}" if self.low is not None else ""

    def from_text(self, text: str) -> object:
        """Convert an environment or command-line string; leave it as is if it does not parse.

        A value left as a string is then rejected by :meth:`problem`, so the
        error message is the same whatever the source.
        """
        if self.kind in ("list", "urls"):
            return tuple(text.split())
        if self.kind in _NAME_LISTS:
            return tuple(part for part in re.split(r"[\s,]+", text) if part)
        if self.kind == "int" and re.fullmatch(r"\s*[+-]?\d+\s*", text):
            return int(text)
        if self.kind == "bool":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            return text
        if self.kind in ("float", "fraction"):
            try:
                return float(text)
            except ValueError:
                return text
        return text

    def from_toml(self, value: object) -> object:
        """Normalise a TOML value (list to tuple, integer to float for seconds)."""
        if self.kind in ("list", "urls") and isinstance(value, list):
            return tuple(value)
        if self.kind in _NAME_LISTS and isinstance(value, (list, str)):
            return self.from_text(value) if isinstance(value, str) else tuple(value)
        if self.kind in ("float", "fraction") and isinstance(value, int):
            return value if isinstance(value, bool) else float(value)
        return value


#: Kinds of the settings that are lists of names (comma- or space-separated as text).
_NAME_LISTS = ("hosts", "origins", "events")
_EVENT_NAME = re.compile(r"\*|[a-z][a-z0-9_]*(\.[a-z0-9_*]+)*")
_HOST_NAME = re.compile(r"\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
_ORIGIN = re.compile(r"(?i)https?://(\[[0-9a-f:.]+\]|[a-z0-9_-]+(\.[a-z0-9_-]+)*)(:\d{1,5})?/?")


def _name_list_problem(kind: str, value: object) -> str | None:
    """Why ``value`` is not a list of host names (``hosts``) or of origins (``origins``)."""
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        return f"must be a list of names, got {_describe(value)}"
    for entry in value:
        if kind == "hosts":
            ok = entry == "*" or _HOST_NAME.fullmatch(entry) is not None
            if not ok:
                try:
                    ipaddress.ip_address(entry.strip("[]"))
                    ok = True
                except ValueError:
                    pass
            if not ok:
                return (
                    "must list host names or IP addresses without a port or scheme (like "
                    f"gw.example.com, .example.com for a domain, 10.0.0.5, or *), got {entry!r}"
                )
        elif kind == "events":
            if _EVENT_NAME.fullmatch(entry) is None:
                return (
                    "must list event names like backend.down or statement.slow (or * for "
                    f"all), got {entry!r}"
                )
        elif _ORIGIN.fullmatch(entry) is None:
            return (
                "must list origins as scheme://host[:port] with the scheme http or https and "
                f"no path (like https://app.example.com), got {entry!r}"
            )
    return None


def _urls_problem(value: object) -> str | None:
    """Why ``value`` is not a list of webhook URLs (the message shows no URL's secret parts)."""
    from conf.webhooks import url_problem  # (conf.webhooks imports this module)

    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        return f"must be a list of http:// or https:// URLs, got {_describe(value)}"
    for index, url in enumerate(value):
        problem = url_problem(url)
        if problem is not None:
            return f"URL {index + 1} {problem}"
    return None


def _repr_urls(value: object) -> str:
    from conf.webhooks import urls_repr

    return urls_repr(value)


def _validate(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    problem = attribute.metadata[_META].problem(value)
    if problem is not None:
        raise SettingError(attribute.name, problem)


def _repr_backends(value: object) -> str:
    if isinstance(value, tuple):
        return repr(tuple(mask_password(v) if isinstance(v, str) else v for v in value))
    return "<invalid>"


def _setting(default: Any, section: str, flag: str, help: str, **meta: Any) -> Any:
    repr_: Any = meta.pop("repr", True)
    info = SettingMeta(section, flag, help, **meta)
    return attrs.field(default=default, validator=_validate, metadata={_META: info}, repr=repr_)


@attrs.frozen
class BackendSpec:
    """One resolved database backend (a MySQL/MariaDB server or an SQLite file)."""

    name: str
    driver: str = attrs.field(validator=attrs.validators.in_(("mysql", "sqlite")))
    host: str = "127.0.0.1"
    port: int = attrs.field(
        default=3306, validator=[attrs.validators.ge(1), attrs.validators.le(65535)]
    )
    user: str = ""
    password: str = attrs.field(default="", repr=False)
    database: str = ""
    unix_socket: str = ""
    role: str = attrs.field(default="", validator=attrs.validators.in_(("", "primary", "replica")))
    weight: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    path: str = ""
    charset: str = "utf8mb4"
    #: The second account that read-role requests run on (SELECT and SHOW VIEW grants only);
    #: empty = none. Its password, like the main one, is never shown.
    read_user: str = ""
    read_password: str = attrs.field(default="", repr=False)
    #: Where a password is kept instead of the DSN or option file itself: a file (its path) or
    #: an environment variable (its name); at most one source per password. ``parse_dsn`` and
    #: ``read_groups`` only record them; ``Settings.resolve_backends`` reads them into
    #: ``password`` and ``read_password`` (``conf.dsn.load_passwords``).
    password_file: str = ""
    password_env: str = ""
    read_password_file: str = ""
    read_password_env: str = ""

    @property
    def has_read_account(self) -> bool:
        """True when a read account (``read_user``) is configured for this backend."""
        return bool(self.read_user)

    def display(self) -> str:
        """A DSN-like string without either password, for logs; ``parse_dsn`` reads it back.

        It shows where a password is kept (``password_file``, ``password_env``...): a path or a
        variable name, not a secret.
        """
        from urllib.parse import quote

        query: list[tuple[str, str]] = []
        if self.driver == "sqlite":
            location = "sqlite:///" + quote(self.path, safe="/:")
        else:
            user = quote(self.user, safe="") + "@" if self.user else ""
            default_place = self.host == "127.0.0.1" and self.port == 3306
            if self.unix_socket and default_place:
                place = ""
            else:
                host = f"[{self.host}]" if ":" in self.host else self.host
                place = f"{host}:{self.port}"
            location = f"mysql://{user}{place}/{quote(self.database, safe='')}"
            if self.unix_socket:
                query.append(("unix_socket", self.unix_socket))
            if self.role:
                query.append(("role", self.role))
            if self.weight != 1:
                query.append(("weight", str(self.weight)))
            if self.charset != "utf8mb4":
                query.append(("charset", self.charset))
            for key in (
                "password_file",
                "password_env",
                "read_user",
                "read_password_file",
                "read_password_env",
            ):
                if getattr(self, key):
                    query.append((key, getattr(self, key)))
        query.insert(0, ("name", self.name))
        return location + "?" + "&".join(f"{k}={quote(v, safe='/:')}" for k, v in query)


@attrs.frozen
class Settings:
    """Every setting of the gateway, validated on construction."""

    host: str = _setting("127.0.0.1", "server", "--host", "address to listen on")
    compat: str = _setting(
        "",
        "server",
        "--compat",
        "original: answer as the C original did, for clients written against it (Connection: "
        "close after every answer, no chunked answers, HTTP 200 with an ERROR body for refused "
        "requests, unknown request keys ignored); empty: this gateway's own protocol",
        kind="choice",
        choices=("", "original"),
        shown_default="none",
    )
    allowed_hosts: tuple[str, ...] = _setting(
        (),
        "server",
        "--allowed-hosts",
        "names (comma-separated) the gateway answers to besides its listen address, localhost "
        "and loopback addresses; .example.com: the domain and its subdomains; *: any. Any "
        "other Host gets 400 (DNS rebinding)",
        kind="hosts",
        shown_default="none",
    )
    allowed_origins: tuple[str, ...] = _setting(
        (),
        "server",
        "--allowed-origins",
        "origins (scheme://host[:port], comma-separated) whose web pages may call the gateway "
        "(CORS); a request a browser sends for any other site gets 403",
        kind="origins",
        shown_default="none",
    )
    port: int = _setting(
        9090,
        "server",
        "--port",
        "TCP port to listen on (0 = any free port)",
        kind="int",
        low=0,
        high=65535,
    )
    max_request_bytes: int = _setting(
        1048576,
        "server",
        "--max-request-bytes",
        "largest accepted query string or request body in bytes (larger gets 413/414)",
        kind="int",
        low=1024,
    )
    workers: int = _setting(
        0,
        "server",
        "--workers",
        "processes serving the port together (the master holds the sockets); 0 = one per core",
        kind="int",
        low=0,
        high=256,
    )
    max_in_flight: int = _setting(
        512,
        "server",
        "--max-in-flight",
        "most /db and /dbform requests served at once; beyond it 503 with Retry-After at once",
        kind="int",
        low=1,
    )
    max_user_in_flight: int = _setting(
        0,
        "server",
        "--max-user-in-flight",
        "with auth on, most /db and /dbform requests one user may have in flight (per worker); "
        "beyond it 429 with Retry-After at once. 0 = pool_max - 1 (at least 1), so one user "
        "never holds every pooled connection",
        kind="int",
        low=0,
        shown_default="0 (pool_max - 1)",
    )
    max_rows: int = _setting(
        100000,
        "server",
        "--max-rows",
        "most rows one answer carries; past it the answer ends with TRUNCATED: true",
        kind="int",
        low=1,
    )
    idle_timeout: float = _setting(
        60.0,
        "server",
        "--idle-timeout",
        "seconds a keep-alive connection may stay idle before the gateway closes it "
        "(a request in flight is never cut)",
        kind="float",
    )
    header_timeout: float = _setting(
        10.0,
        "server",
        "--header-timeout",
        "seconds a request's head (request line and headers) may take to arrive, counted from "
        "its first byte however slowly it trickles; past it 408 and the close",
        kind="float",
    )
    body_timeout: float = _setting(
        60.0,
        "server",
        "--body-timeout",
        "seconds a request's body may take to arrive, counted from the end of its head; past "
        "it 408 and the close",
        kind="float",
    )
    max_body_memory: int = _setting(
        67108864,
        "server",
        "--max-body-memory",
        "bytes of requests still arriving that a worker keeps in memory, past each "
        "connection's first 16 KiB; a request that would pass it gets 503 with Retry-After "
        "(at least --max-request-bytes)",
        kind="int",
        low=1024,
    )
    drain_timeout: float = _setting(
        30.0,
        "server",
        "--drain-timeout",
        "seconds a shutdown waits for requests in flight before closing",
        kind="float",
    )
    drain_delay: int = _setting(
        0,
        "server",
        "--drain-delay",
        "seconds a shutdown (SIGTERM, /shutdown) keeps serving before it stops accepting: "
        "/ready answers 503 at once and every answer closes its connection, so a load "
        "balancer takes this host out first; set it above the balancer's check interval "
        "times fall. 0 = stop accepting at once",
        kind="int",
        low=0,
        high=3600,
    )
    instance: str = _setting(
        "",
        "server",
        "--instance",
        "this gateway's name in /stats and in /metrics (dbslayer_instance_info), telling "
        "the hosts of a fleet apart",
        shown_default="<hostname>:<port>",
    )
    access_log: str = _setting(
        "",
        "server",
        "--access-log",
        "access log in common log format plus microseconds to serve: a file, or - for stdout",
        shown_default="off",
    )
    admin_port: int = _setting(
        0,
        "admin",
        "--admin-port",
        "also serve /stats, /metrics, /health, /ready and /shutdown on this port (0 = off)",
        kind="int",
        low=0,
        high=65535,
    )
    admin_host: str = _setting(
        "127.0.0.1", "admin", "--admin-host", "address of the admin listener"
    )
    admin_on_main_port: bool = _setting(
        True,
        "admin",
        "--admin-on-main-port",
        "serve the admin routes on the main port too (true/false; false needs admin_port)",
        kind="bool",
    )
    stats_buckets: int = _setting(
        1440,
        "stats",
        "--stats-buckets",
        "buckets of the /stats throughput ring (hits, slices)",
        kind="int",
        low=1,
        high=100000,
    )
    stats_bucket_seconds: int = _setting(
        60,
        "stats",
        "--stats-bucket-seconds",
        "seconds per bucket of the /stats throughput ring",
        kind="int",
        low=1,
        high=86400,
    )
    backends: tuple[str, ...] = _setting(
        (),
        "database",
        "--backend",
        "backend DSN like mysql://user:pass@host:3306/db?name=db1; repeat for more",
        kind="list",
        repr=_repr_backends,
        shown_default="none",
    )
    mode: str = _setting(
        "auto",
        "database",
        "--mode",
        "how backends are used: auto, pool, primary-replica, named or galera (the nodes of a "
        "Galera cluster: one writer, reads on synced nodes)",
        kind="choice",
        choices=MODES,
    )
    mysql_config: str = _setting(
        "",
        "database",
        "--mysql-config",
        "MySQL option file to read server groups from (DBSlayer -c)",
    )
    servers: str = _setting(
        "",
        "database",
        "--servers",
        "colon-separated option-file groups, one pooled backend each (DBSlayer -s)",
        kind="groups",
    )
    named: str = _setting(
        "",
        "database",
        "--named",
        "colon-separated option-file groups that clients pick with SERVER (DBSlayer -m)",
        kind="groups",
    )
    connect_timeout: float = _setting(
        5.0,
        "database",
        "--connect-timeout",
        "seconds to wait for a database connection",
        kind="float",
    )
    read_timeout: float = _setting(
        300.0,
        "database",
        "--read-timeout",
        "seconds per network read from the database",
        kind="float",
    )
    write_timeout: float = _setting(
        60.0,
        "database",
        "--write-timeout",
        "seconds per network write to the database",
        kind="float",
    )
    max_statement_time: float = _setting(
        60.0,
        "database",
        "--max-statement-time",
        "seconds a statement may run; enforced on the server and by KILL QUERY (504 past it)",
        kind="float",
    )
    gtid_wait_ms: int = _setting(
        1000,
        "database",
        "--gtid-wait-ms",
        "milliseconds a read with AFTER waits for a replica to apply that position before it "
        "goes to the primary (MASTER_GTID_WAIT); 0 = do not wait",
        kind="int",
        low=0,
        high=600000,
    )
    pool_min: int = _setting(
        1,
        "database",
        "--pool-min",
        "fewest connections kept per backend",
        kind="int",
        low=1,
        high=256,
    )
    pool_max: int = _setting(
        8,
        "database",
        "--pool-max",
        "most connections opened per backend",
        kind="int",
        low=1,
        high=256,
    )
    reactor_lane: bool = _setting(
        True,
        "database",
        "--reactor-lane",
        "read small one-statement answers in the reactor thread, without a thread hand-off "
        "(true/false)",
        kind="bool",
    )
    demo_database: str = _setting(
        attrs.Factory(lambda: default_demo_database(os.environ)),
        "database",
        "--demo-database",
        "SQLite demo database served when no backend is configured",
        kind="path",
        shown_default="$XDG_DATA_HOME/dbslayer/demo.sqlite3",
    )

    health_interval: float = _setting(
        2.0,
        "health",
        "--health-interval",
        "seconds between health checks of a backend (with 10%% jitter)",
        kind="float",
    )
    health_fall: int = _setting(
        3,
        "health",
        "--health-fall",
        "failed checks before a backend is marked down",
        kind="int",
        low=1,
        high=100,
    )
    health_rise: int = _setting(
        2,
        "health",
        "--health-rise",
        "successful checks before a down backend is back",
        kind="int",
        low=1,
        high=100,
    )
    health_max_backoff: float = _setting(
        3.0,
        "health",
        "--health-max-backoff",
        "longest pause between checks of a dead backend (backoff doubles up to it)",
        kind="float",
    )
    galera_donor_reads: bool = _setting(
        False,
        "health",
        "--galera-donor-reads",
        "galera mode: a donor or desynced node (wsrep_local_state 2) still takes reads, never "
        "writes (true/false)",
        kind="bool",
    )
    max_replica_lag: int = _setting(
        0,
        "health",
        "--max-replica-lag",
        "replicas lagging more seconds than this (or not replicating) take no reads; 0 = off",
        kind="int",
        low=0,
    )

    redis_url: str = _setting(
        "",
        "redis",
        "--redis",
        "Redis URL (redis://[:password@]host:6379/0) for users and the answer cache; "
        "empty = no Redis (in-process cache, no auth)",
        key="url",
        repr=False,
        shown_default="none",
    )
    redis_timeout: float = _setting(
        1.0,
        "redis",
        "--redis-timeout",
        "seconds every Redis call may take",
        kind="float",
        key="timeout",
    )
    auth: bool = _setting(
        False,
        "auth",
        "--auth",
        "require a user token (Authorization: Bearer, or Basic user:token) on /db and /dbform",
        kind="bool",
        key="enabled",
    )
    auth_cache_ttl: float = _setting(
        5.0,
        "auth",
        "--auth-cache-ttl",
        "seconds a user lookup is trusted without asking Redis again",
        kind="float",
        key="cache_ttl",
    )
    protect_admin: bool = _setting(
        True,
        "auth",
        "--protect-admin",
        "with auth on, /stats* and /metrics need an admin user too (false: anyone who reaches "
        "the port reads them, other users' SQL included); /shutdown needs one either way",
        kind="bool",
        shown_default="true (matters only with auth on)",
    )
    read_on_shared_account: bool = _setting(
        False,
        "auth",
        "--read-on-shared-account",
        "with auth on, accept MySQL backends without a read account (read_user): their "
        "read-role requests run on the main account, so read-only rests on the gateway alone",
        kind="bool",
    )
    cache_default_ttl: int = _setting(
        0,
        "cache",
        "--cache-default-ttl",
        "seconds a read-only answer may be served from the cache when the request gives no "
        "CACHE (0 = only when asked)",
        kind="int",
        low=0,
        key="default_ttl",
    )
    cache_max_ttl: int = _setting(
        3600,
        "cache",
        "--cache-max-ttl",
        "longest seconds an answer is cached",
        kind="int",
        low=1,
        key="max_ttl",
    )
    cache_memory_entries: int = _setting(
        1000,
        "cache",
        "--cache-memory-entries",
        "answers kept by the in-process cache (used without Redis)",
        kind="int",
        low=1,
        key="memory_entries",
    )
    cache_memory_bytes: int = _setting(
        64 * 1024 * 1024,
        "cache",
        "--cache-memory-bytes",
        "bytes kept by the in-process cache (used without Redis)",
        kind="int",
        low=1024,
        key="memory_bytes",
    )
    cache_max_entry_bytes: int = _setting(
        1024 * 1024,
        "cache",
        "--cache-max-entry-bytes",
        "largest answer the cache stores (its encoded size); a bigger one is served but not stored",
        kind="int",
        low=1024,
        key="max_entry_bytes",
    )
    cache_redis_bytes: int = _setting(
        256 * 1024 * 1024,
        "cache",
        "--cache-redis-bytes",
        "most bytes of answers the cache keeps in Redis (the entries due to expire first make "
        "room); 0 = no bound but Redis's own maxmemory",
        kind="int",
        low=0,
        key="redis_bytes",
    )
    webhooks: tuple[str, ...] = _setting(
        (),
        "webhooks",
        "--webhook",
        "URL (http:// or https://) that gateway events are POSTed to as signed JSON; repeat "
        "for more. Shown as scheme://host:port/path only (a query string may hold a token)",
        kind="urls",
        key="urls",
        repr=_repr_urls,
        shown_default="none",
    )
    webhook_secret: str = _setting(
        "",
        "webhooks",
        "--webhook-secret",
        "secret the webhook bodies are signed with (X-Dbslayer-Signature: sha256=HMAC); "
        "better kept in --webhook-secret-file or --webhook-secret-env",
        key="secret",
        repr=False,
        shown_default="none",
    )
    webhook_secret_file: str = _setting(
        "",
        "webhooks",
        "--webhook-secret-file",
        "file holding the webhook secret on one line (mode 600 or 400)",
        key="secret_file",
        shown_default="none",
    )
    webhook_secret_env: str = _setting(
        "",
        "webhooks",
        "--webhook-secret-env",
        "environment variable holding the webhook secret",
        key="secret_env",
        shown_default="none",
    )
    webhook_events: tuple[str, ...] = _setting(
        ("*",),
        "webhooks",
        "--webhook-events",
        "events sent to the webhooks (comma-separated: backend.down, backend.up, "
        "writer.changed, node.left_primary, node.joined_primary, errors.rate, "
        "statement.slow), or * for all",
        kind="events",
        key="events",
        shown_default="*",
    )
    webhook_queue: int = _setting(
        1000,
        "webhooks",
        "--webhook-queue",
        "events waiting per webhook URL; past it the oldest is dropped (counted)",
        kind="int",
        low=1,
        high=1000000,
        key="queue",
    )
    webhook_attempts: int = _setting(
        5,
        "webhooks",
        "--webhook-attempts",
        "tries of one delivery (connect errors, timeouts, 5xx, 408, 429 are tried again) "
        "before it is dropped (counted)",
        kind="int",
        low=1,
        high=100,
        key="attempts",
    )
    webhook_timeout: float = _setting(
        5.0,
        "webhooks",
        "--webhook-timeout",
        "seconds one delivery attempt may take (connecting included)",
        kind="float",
        key="timeout",
    )
    webhook_backoff: float = _setting(
        0.5,
        "webhooks",
        "--webhook-backoff",
        "seconds before the first retry of a delivery; doubles with each retry (with jitter)",
        kind="float",
        key="backoff",
    )
    webhook_max_backoff: float = _setting(
        30.0,
        "webhooks",
        "--webhook-max-backoff",
        "longest pause between tries of a delivery (a receiver's Retry-After included)",
        kind="float",
        key="max_backoff",
    )
    slow_statement_ms: int = _setting(
        0,
        "webhooks",
        "--slow-statement-ms",
        "a request whose statements run longer than this many milliseconds on a backend "
        "sends the event statement.slow (0 = off)",
        kind="int",
        low=0,
        key="slow_statement_ms",
    )
    error_rate_threshold: float = _setting(
        0.0,
        "webhooks",
        "--error-rate-threshold",
        "fraction of /db requests answered with status 5xx over --error-rate-window that "
        "sends the event errors.rate (again when it falls under half of it); 0 = off",
        kind="fraction",
        key="error_rate_threshold",
    )
    error_rate_window: float = _setting(
        60.0,
        "webhooks",
        "--error-rate-window",
        "seconds over which the error rate is measured",
        kind="float",
        key="error_rate_window",
    )
    error_rate_min_requests: int = _setting(
        20,
        "webhooks",
        "--error-rate-min-requests",
        "fewest requests in the window for the error rate to count",
        kind="int",
        low=1,
        key="error_rate_min_requests",
    )

    def __attrs_post_init__(self) -> None:
        if self.max_body_memory < self.max_request_bytes:
            raise SettingError(
                "max_body_memory",
                f"must be at least max_request_bytes ({self.max_request_bytes}), or a request "
                f"of the largest accepted size could never arrive, got {self.max_body_memory}",
                related=("max_request_bytes",),
            )
        if self.auth and not self.redis_url:
            raise SettingError(
                "auth",
                "needs a Redis URL (--redis URL or [redis] url): users live in Redis",
                related=("redis_url",),
            )
        if self.read_timeout <= self.max_statement_time:
            raise SettingError(
                "read_timeout",
                f"must be longer than max_statement_time ({self.max_statement_time} s), or a "
                f"statement still running would be cut as a lost connection, got "
                f"{self.read_timeout}",
                related=("max_statement_time",),
            )
        if not self.admin_on_main_port and not self.admin_port:
            raise SettingError(
                "admin_on_main_port",
                "can be false only when admin_port is set, or /stats and /shutdown "
                "would be served nowhere",
                related=("admin_port",),
            )
        if self.pool_min > self.pool_max:
            raise SettingError(
                "pool_min",
                f"must not exceed pool_max ({self.pool_max}), got {self.pool_min}",
                related=("pool_max",),
            )
        if self.webhooks and not (
            self.webhook_secret or self.webhook_secret_file or self.webhook_secret_env
        ):
            raise SettingError(
                "webhooks",
                "need a secret to sign the deliveries with: set webhook_secret_file (a file "
                "of mode 600), webhook_secret_env (a variable's name) or webhook_secret",
                related=("webhook_secret_file", "webhook_secret_env", "webhook_secret"),
            )
        if self.webhook_backoff > self.webhook_max_backoff:
            raise SettingError(
                "webhook_backoff",
                f"must not exceed webhook_max_backoff ({self.webhook_max_backoff}), got "
                f"{self.webhook_backoff}",
                related=("webhook_max_backoff",),
            )

    def resolve_backends(
        self, *, require_read_accounts: bool = True, environ: Mapping[str, str] | None = None
    ) -> tuple[str, tuple[BackendSpec, ...]]:
        """Return ``(mode, specs)``: the effective mode and every configured backend.

        Specs come from ``backends`` DSNs, then from the ``servers`` or ``named``
        groups of ``mysql_config``.  Empty specs means no backend is configured.
        With ``auth`` on, every MySQL backend must have a read account unless
        ``read_on_shared_account`` is set (``require_read_accounts=False`` skips
        that check: ``dbslayer grants`` reads the backends to create the accounts).
        Passwords kept in files or in variables of ``environ`` (default ``os.environ``)
        are read last, so each call sees the file as it is now.
        """
        from conf.dsn import PasswordError, load_passwords, parse_dsn  # conf.dsn imports us
        from conf.mycnf import read_groups

        specs = [parse_dsn(text, index) for index, text in enumerate(self.backends)]
        if self.servers and self.named:
            raise SettingError("named", "cannot be combined with servers", related=("servers",))
        group_setting = "servers" if self.servers else "named" if self.named else ""
        if self.mysql_config and not group_setting:
            # (else the file would be read for nothing, and with no backend the demo served)
            raise SettingError(
                "mysql_config",
                f"names the option file {self.mysql_config} but no group of it to serve: set "
                "servers (--servers a:b, pooled) or named (--named a:b, chosen with SERVER)",
                related=("servers", "named"),
            )
        if group_setting:
            if not self.mysql_config:
                raise SettingError(
                    group_setting,
                    "needs mysql_config, the option file holding the groups",
                    related=("mysql_config",),
                )
            try:
                specs += read_groups(self.mysql_config, getattr(self, group_setting).split(":"))
            except SettingError as err:
                raise err.with_related(group_setting) from None
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise SettingError(
                    "backends",
                    f"two backends are named {spec.name!r}; names must be unique",
                    related=(group_setting,) if group_setting else (),
                )
            seen.add(spec.name)
        mode = self._mode_for(specs)
        if require_read_accounts and self.auth and not self.read_on_shared_account:
            self._check_read_accounts(specs, len(self.backends), group_setting)
        environ = os.environ if environ is None else environ
        for index, spec in enumerate(specs):
            from_dsn = index < len(self.backends)
            try:
                specs[index] = load_passwords(spec, environ, option_file=not from_dsn)
            except PasswordError as err:
                if from_dsn:
                    raise SettingError("backends", f"backend {spec.name}: {err}") from None
                raise SettingError(
                    "mysql_config", f"backend {spec.name}: {err}", related=(group_setting,)
                ) from None
        return mode, tuple(self._with_roles(specs))

    def _check_read_accounts(
        self, specs: list[BackendSpec], from_dsns: int, group_setting: str
    ) -> None:
        """With auth on, a MySQL backend without a read account is an explicit choice."""
        lacking = [
            (index < from_dsns, spec.name)
            for index, spec in enumerate(specs)
            if spec.driver == "mysql" and not spec.has_read_account
        ]
        if not lacking:
            return
        dsn_names = [name for is_dsn, name in lacking if is_dsn]
        group_names = [name for is_dsn, name in lacking if not is_dsn]
        names = dsn_names + group_names
        one = len(names) == 1
        head = (
            f"backend {names[0]} has no read account"
            if one
            else f"backends {', '.join(names)} have no read account"
        )
        fixes = []
        if dsn_names:
            where = "its DSN" if one else f"the DSN of {', '.join(dsn_names)}"
            fixes.append(f"read_user and read_password to {where}")
        if group_names:
            groups = ", ".join(f"[{name}]" for name in group_names)
            where = f"its group {groups}" if one else f"group {groups}"
            fixes.append(f"read-user and read-password to {where} of {self.mysql_config}")
        setting = "backends" if dsn_names else group_setting
        related = ["auth", "read_on_shared_account"]
        if group_names:
            related.append("mysql_config")
            if dsn_names:
                related.append(group_setting)
        raise SettingError(
            setting,
            f"{head}: add {' and '.join(fixes)} (run 'dbslayer grants' with the same backend "
            "options to create one), or start with --read-on-shared-account to accept that "
            "read-role limits rest on the gateway alone",
            related=tuple(related),
        )

    def _mode_for(self, specs: list[BackendSpec]) -> str:
        has_roles = any(spec.role for spec in specs)
        mode = self.mode
        # auto never picks galera: it decides from the configuration alone, before any server
        # is reached, and a Galera node's DSN looks like any MariaDB's. Guessing from the
        # first health check instead would change the write rule of a running gateway (from
        # writing everywhere to one writer) on a fact that one check of one node saw.
        if mode == "auto":
            mode = "named" if self.named else "primary-replica" if has_roles else "pool"
        if self.named and mode != "named":
            raise SettingError(
                "mode",
                f"is {mode!r} but named groups are set; use 'named' or 'auto'",
                related=("named",),
            )
        if mode == "named" and not specs:
            raise SettingError(
                "mode",
                "'named' needs backends to name: set named (with mysql_config) or backends",
                related=("named", "backends"),
            )
        if mode == "galera":
            if not specs:
                raise SettingError(
                    "mode",
                    "'galera' needs the cluster's nodes as backends: set backends (or servers "
                    "with mysql_config)",
                    related=("backends", "servers"),
                )
            sqlite = [spec.name for spec in specs if spec.driver != "mysql"]
            if sqlite:
                raise SettingError(
                    "backends",
                    f"galera mode takes MariaDB Galera nodes only, not {', '.join(sqlite)} "
                    "(SQLite)",
                    related=("mode",),
                )
        if has_roles and mode != "primary-replica":
            raise SettingError(
                "backends",
                f"role= is only meaningful in primary-replica mode, not {mode!r}",
                related=("mode",),
            )
        if mode == "primary-replica":
            primaries = sum(1 for spec in specs if spec.role == "primary")
            if primaries != 1:
                raise SettingError(
                    "backends",
                    "primary-replica mode needs exactly one backend with role=primary,"
                    f" got {primaries}",
                    related=("mode",),
                )
        return mode

    @staticmethod
    def _with_roles(specs: list[BackendSpec]) -> list[BackendSpec]:
        """In primary-replica mode a backend without a role is a replica."""
        if not any(spec.role for spec in specs):
            return specs
        return [spec if spec.role else attrs.evolve(spec, role="replica") for spec in specs]


def iter_settings() -> Iterator[tuple[str, SettingMeta, attrs.Attribute[Any]]]:
    """Yield ``(name, meta, attribute)`` for every field of :class:`Settings`."""
    for attribute in attrs.fields(Settings):
        yield attribute.name, attribute.metadata[_META], attribute


def env_var(name: str) -> str:
    """The environment variable of setting ``name``, e.g. ``DBSLAYER_PORT``."""
    return ENV_PREFIX + name.upper()
