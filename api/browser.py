"""Browser safety: what a web page open in a browser on the gateway's host may make it do.

Without authentication the gateway trusts whoever reaches its port, and a browser reaches it on
behalf of every site it has open. A cross-site form POST to ``/dbform`` and a ``text/plain``
POST to ``/db`` are "simple" requests a page sends without asking (no CORS preflight): they ran
writes; an ``<img>`` pointing at ``/shutdown`` stopped the gateway; and a DNS-rebinding page
(its own name, re-resolved to 127.0.0.1) is same-origin to the browser, so it could read the
answers too. Two checks run at admission, before anything else (authentication included):

- **Host.** A request must name this gateway: its listen address, ``localhost``, a loopback
  address or an ``--allowed-hosts`` entry; else 400. A rebinding page sends its own name. On a
  wildcard listen address (``0.0.0.0``, ``::``) any IP literal is accepted, since no page can
  rebind an address, while names must be allowed. The port is not compared: port forwarding
  (``ssh -L``, container port maps) changes it, and rebinding needs a name, not a port. A missing
  or empty Host (HTTP/1.0 clients) is accepted.
- **Cross-site.** A request a browser sends for another site gets 403: ``Sec-Fetch-Site`` other
  than ``same-origin`` or ``none`` (the user typed the URL), or an ``Origin`` that is neither
  this server's (its host and port are the request's Host) nor one of ``--allowed-origins``.
  The one exception is a top-level navigation (a followed link) to the console (``/``) or the
  dashboard page (``/stats`` asked for as HTML): static pages that then talk to the gateway as
  same-origin pages. Frames are not an exception, so neither page can be framed by another site
  (clickjacking). The check covers every path, not only ``/db``: Klein decodes ``/%64b`` to
  ``/db``, so a list of guarded paths would be a list of ways around it.

Clients other than browsers (curl, the DBSlayer client libraries) send neither ``Origin`` nor
``Sec-Fetch-*``, so only the Host check concerns them, and it accepts what they send.

``--allowed-origins`` names origins whose pages may call the gateway: their requests are
answered with ``Access-Control-Allow-Origin`` (CORS) and their preflights (``OPTIONS`` with
``Access-Control-Request-Method``) with a 204 allowing GET and POST with ``Content-Type`` and
``Authorization``.

The decisions are plain functions of a request's method, path and headers (``check``), so they
are tested without a server; the common request (no browser headers) costs three dictionary
look-ups and one set look-up, since the fast channel calls this for every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

import attrs

#: Header value of a response, as (name, value) pairs.
HeaderPairs = tuple[tuple[bytes, bytes], ...]
#: Reads one request header (lower-case name) or None.
HeaderGetter = Callable[[bytes], "bytes | None"]


@attrs.frozen
class EarlyReply:
    """An answer given at admission, before anything runs: a refusal (``message`` set: its
    JSON error) or a CORS preflight's 204 (``message`` None: no body)."""

    status: int
    message: str | None
    headers: HeaderPairs = ()
    #: Close the connection after it (a draining gateway).
    close: bool = False


#: Sec-Fetch-Site values of requests a browser sends for this site itself (or the user typed).
SAME_SITE_VALUES = frozenset({b"same-origin", b"none"})
#: Pages a followed link from another site may open (they hold no data; see the docstring).
PAGES = frozenset({b"/", b"/stats"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})
PREFLIGHT_METHODS = b"GET, POST"
PREFLIGHT_HEADERS = b"Content-Type, Authorization"
#: Headers of an answer a page of an allowed origin may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = b"Retry-After, WWW-Authenticate, X-Cache, X-Truncated, X-Streamed"
PREFLIGHT_MAX_AGE = b"600"
#: Host values judged once and remembered (a client sending junk Hosts is judged every time).
_HOST_MEMO_SIZE = 256
_DEFAULT_PORTS = {b"http": b":80", b"https": b":443"}
_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-._")
_VARY = ((b"Vary", b"Origin"),)


def shown(value: bytes, limit: int = 100) -> str:
    """A header value for a message: printable ASCII only, shortened."""
    text = "".join(chr(c) if 32 <= c < 127 else "?" for c in value[:limit])
    return text + ("..." if len(value) > limit else "")


def split_host(value: bytes) -> tuple[str, bool] | None:
    """``(host, is_ip_literal)`` of a Host header value, lower case, port and a final dot
    dropped; None when the value is not a host with an optional port."""
    value = value.lower()
    if value.startswith(b"["):
        end = value.find(b"]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest[:1] == b":" and rest[1:].isdigit() and len(rest) <= 6):
            return None
        try:
            return str(ipaddress.IPv6Address(name.decode("ascii"))), True
        except (ValueError, UnicodeDecodeError):
            return None
    name, colon, port = value.partition(b":")
    if colon and port and not (port.isdigit() and len(port) <= 5):
        return None
    if name.endswith(b"."):
        name = name[:-1]
    if not name or not _NAME_CHARS.issuperset(name):
        return None
    text = name.decode("ascii")
    try:
        return str(ipaddress.IPv4Address(text)), True
    except ValueError:
        return text, False


def origin_key(origin: bytes) -> bytes | None:
    """An origin (``scheme://host[:port]``) in the form it is compared in: lower case, the
    scheme's default port dropped, no trailing slash; None when it is not one (``null``...)."""
    origin = origin.strip().lower().rstrip(b"/")
    scheme, sep, authority = origin.partition(b"://")
    if not sep or scheme not in _DEFAULT_PORTS or not authority or b"/" in authority:
        return None
    default = _DEFAULT_PORTS[scheme]
    if authority.endswith(default):
        authority = authority[: -len(default)]
    return scheme + b"://" + authority


def _authority(origin_key: bytes) -> bytes:
    return origin_key.partition(b"://")[2]


def _host_authority(host: bytes) -> bytes:
    """A Host value as an origin's authority: lower case, a default port (80, or 443 as a TLS
    proxy may forward it) dropped."""
    host = host.lower()
    if host.endswith(b":80"):
        return host[:-3]
    return host[:-4] if host.endswith(b":443") else host


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class BrowserGuard:
    """The Host and cross-site checks of one listener (see the module's docstring)."""

    def __init__(
        self,
        listen_host: str,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        listen = listen_host.strip().lower()
        #: Listening on every address: any IP literal names this gateway.
        self.wildcard = listen in WILDCARD_ADDRESSES
        #: ``--allowed-hosts *``: the Host check is off.
        self.any_host = False
        self.names: set[str] = {"localhost"}
        self.suffixes: list[str] = []
        self.addresses: set[str] = set()
        for entry in (listen, *(h.strip().lower() for h in allowed_hosts)):
            if entry == "*":
                self.any_host = True
                continue
            if entry in WILDCARD_ADDRESSES:
                continue
            try:
                self.addresses.add(str(ipaddress.ip_address(entry.strip("[]"))))
            except ValueError:
                name = entry.rstrip(".")
                if name.startswith("."):
                    self.suffixes.append(name)
                    self.names.add(name[1:])
                else:
                    self.names.add(name)
        #: Normalised allowed origins (origin_key); empty: CORS off.
        self.origins = frozenset(
            key
            for key in (origin_key(o.encode("ascii", "replace")) for o in allowed_origins)
            if key
        )
        self._hosts_ok: set[bytes] = set()
        self._hosts_refused: dict[bytes, EarlyReply] = {}

    # --------------------------------------------------------------------- the checks

    def check(
        self, method: bytes, path: bytes, header: HeaderGetter
    ) -> EarlyReply | HeaderPairs | None:
        """What admission does with a request: None (go on), headers to add to its answer
        (go on: CORS), or an answer to give now (a refusal or a preflight's 204)."""
        host = header(b"host")
        if host and host not in self._hosts_ok:
            refused = self.host_refusal(host)
            if refused is not None:
                return refused
        origin = header(b"origin")
        site = header(b"sec-fetch-site")
        if origin is None and site is None:
            return _VARY if self.origins else None
        return self.cross_site(method, path, header, host or b"", origin, site)

    def host_refusal(self, host: bytes) -> EarlyReply | None:
        """None when ``host`` names this gateway, else its 400."""
        known = self._hosts_refused.get(host)
        if known is not None:
            return known
        refusal = self._judge_host(host)
        if refusal is None:
            if len(self._hosts_ok) < _HOST_MEMO_SIZE:
                self._hosts_ok.add(host)
        elif len(self._hosts_refused) < _HOST_MEMO_SIZE:
            self._hosts_refused[host] = refusal
        return refusal

    def _judge_host(self, value: bytes) -> EarlyReply | None:
        parts = split_host(value)
        if parts is None:
            return EarlyReply(400, f"malformed Host header {shown(value)!r}")
        host, is_ip = parts
        if self.any_host:
            return None
        if is_ip:
            if self.wildcard or host in self.addresses or _is_loopback(host):
                return None
        elif host in self.names or any(host.endswith(s) for s in self.suffixes):
            return None
        shown_host = f"[{host}]" if ":" in host else host
        return EarlyReply(
            400,
            f"Host {shown_host!r} is not a name of this gateway; a web page may have pointed "
            "its own name at this address (DNS rebinding), so it is refused. To serve this "
            f"name, start the gateway with --allowed-hosts {shown_host}",
        )

    def cross_site(
        self,
        method: bytes,
        path: bytes,
        header: HeaderGetter,
        host: bytes,
        origin: bytes | None,
        site: bytes | None,
    ) -> EarlyReply | HeaderPairs | None:
        """The decision for a request with ``Origin`` or ``Sec-Fetch-Site``."""
        cors: bytes | None = None  # the Origin to allow (CORS), when it is an allowed one
        if origin is not None:
            key = origin_key(origin)
            if key is not None and key in self.origins:
                cors = origin
            elif key is None or _authority(key) != _host_authority(host):
                return self._refused(f"a request from a page of {shown(origin)} (its Origin)")
        if cors is None and site is not None and site not in SAME_SITE_VALUES:
            if not self._page_navigation(method, path, header):
                return self._refused(
                    f"a request a browser sent for another site (Sec-Fetch-Site: {shown(site)})"
                )
        if cors is None:
            return _VARY if self.origins else None
        if method == b"OPTIONS" and header(b"access-control-request-method") is not None:
            return EarlyReply(
                204,
                None,
                (
                    (b"Access-Control-Allow-Origin", cors),
                    (b"Access-Control-Allow-Methods", PREFLIGHT_METHODS),
                    (b"Access-Control-Allow-Headers", PREFLIGHT_HEADERS),
                    (b"Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
                    (b"Vary", b"Origin"),
                ),
            )
        return (
            (b"Access-Control-Allow-Origin", cors),
            (b"Access-Control-Expose-Headers", EXPOSED_HEADERS),
            (b"Vary", b"Origin"),
        )

    @staticmethod
    def _page_navigation(method: bytes, path: bytes, header: HeaderGetter) -> bool:
        """A followed link to the console or the dashboard page (not a frame, not a fetch)."""
        return (
            method == b"GET"
            and path in PAGES
            and header(b"sec-fetch-mode") == b"navigate"
            and header(b"sec-fetch-dest") == b"document"
        )

    @staticmethod
    def _refused(what: str) -> EarlyReply:
        return EarlyReply(
            403,
            f"{what} is refused: the gateway answers browsers only on its own pages (the "
            "console at / and the dashboard at /stats), or pages of origins named in "
            "--allowed-origins",
        )


def web_header(request: object) -> HeaderGetter:
    """A header getter for a twisted.web request: a repeated header reads as its values
    joined with ", " (so a second Host or Origin never passes for the first)."""
    raw = request.requestHeaders.getRawHeaders  # type: ignore[attr-defined]

    def get(name: bytes) -> bytes | None:
        values = raw(name)
        if not values:
            return None
        return values[0] if len(values) == 1 else b", ".join(values)

    return get
