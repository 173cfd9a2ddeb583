"""Browser safety: what a web page open in a browser on the gateway's host can make it do.

The decisions of api.browser (Host names, Origin and Fetch Metadata, CORS) as plain asserts,
then end to end against a real gateway and MariaDB with the headers real browsers send: a
cross-site form POST to /dbform and a text/plain POST to /db are refused with 403 and their
write is not applied, HEAD runs nothing, a DNS-rebinding Host gets 400, and the gateway's own
pages still work; last, the same attacks from a real headless Chromium when one is installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from twisted.web.http_headers import Headers

from api.browser import BrowserGuard, EarlyReply, web_header
from tests.servers import Gateway, MariaDB, Reply, free_port, raw_request

TABLE = "test.browser_safety"

# ------------------------------------------------------------------ the decisions, unit


def decide(
    guard: BrowserGuard, headers: dict[str, str], method: bytes = b"GET", path: bytes = b"/db"
) -> EarlyReply | tuple[tuple[bytes, bytes], ...] | None:
    lowered = {k.lower().encode(): v.encode("latin-1") for k, v in headers.items()}
    return guard.check(method, path, lowered.get)


def status(verdict: Any) -> int:
    """The status admission gives: 0 when the request goes on (with or without headers)."""
    return verdict.status if isinstance(verdict, EarlyReply) else 0


LOCAL = BrowserGuard("127.0.0.1")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:9090",
        "127.0.0.1",
        "127.0.0.1:1",  # the port is not compared (ssh -L, container port maps)
        "localhost:9090",
        "LocalHost",
        "localhost.",
        "127.0.0.2:9090",
        "[::1]:9090",
        "[::ffff:127.0.0.1]",
        "",
    ],
)
def test_host_of_this_gateway_accepted(host: str) -> None:
    """The listen address, localhost and loopback addresses (any port) name this gateway."""
    assert decide(LOCAL, {"Host": host}) is None


@pytest.mark.parametrize(
    "host",
    ["evil.example:9090", "evil.example", "127.0.0.1.evil.example", "10.0.0.5:9090", "x"],
)
def test_other_host_refused_with_400(host: str) -> None:
    """A name a page may have pointed at 127.0.0.1 (DNS rebinding) gets 400 naming the fix."""
    verdict = decide(LOCAL, {"Host": host})
    assert isinstance(verdict, EarlyReply) and verdict.status == 400
    assert verdict.message and "--allowed-hosts" in verdict.message


@pytest.mark.parametrize("host", ["a b", "[::1", "::1", "localhost:port", "evil\x00.x", "é.x"])
def test_malformed_host_refused_with_400(host: str) -> None:
    """A Host that is not a host with an optional port is a 400 "malformed"."""
    verdict = decide(LOCAL, {"Host": host})
    assert isinstance(verdict, EarlyReply) and verdict.status == 400
    assert verdict.message and "malformed Host" in verdict.message


def test_missing_host_accepted() -> None:
    """HTTP/1.0 clients send no Host; no browser omits it, so no page can use that."""
    assert decide(LOCAL, {}) is None


@pytest.mark.parametrize("listen", ["0.0.0.0", "::", ""])
def test_wildcard_listen_accepts_ip_literals_not_names(listen: str) -> None:
    """On every address any IP literal names the gateway (no page can rebind one); a name
    must be localhost or allowed."""
    guard = BrowserGuard(listen, ["gw.example"])
    for host in ("192.0.2.7:9090", "[2001:db8::1]:9090", "127.0.0.1", "gw.example:80"):
        assert decide(guard, {"Host": host}) is None, host
    assert status(decide(guard, {"Host": "evil.example:9090"})) == 400


def test_specific_listen_address_and_names() -> None:
    """On one address that address (not another) and the listener's own name are accepted."""
    guard = BrowserGuard("10.0.0.5")
    assert decide(guard, {"Host": "10.0.0.5:9090"}) is None
    assert status(decide(guard, {"Host": "10.0.0.6:9090"})) == 400
    named = BrowserGuard("gw.internal")
    assert decide(named, {"Host": "gw.internal:9090"}) is None
    assert decide(named, {"Host": "GW.internal."}) is None


def test_allowed_hosts_names_domains_and_star() -> None:
    """--allowed-hosts: exact names, .domain for it and its subdomains, * for any."""
    guard = BrowserGuard("127.0.0.1", ["gw.example", ".corp.example", "192.0.2.9"])
    for host in ("gw.example", "corp.example:1", "a.b.corp.example", "192.0.2.9:9090"):
        assert decide(guard, {"Host": host}) is None, host
    for host in ("xcorp.example", "gw.example.evil", "sub.gw.example", "192.0.2.10"):
        assert status(decide(guard, {"Host": host})) == 400, host
    anything = BrowserGuard("127.0.0.1", ["*"])
    assert decide(anything, {"Host": "whatever.example"}) is None
    assert status(decide(anything, {"Host": "a b"})) == 400


def test_host_memory_is_bounded() -> None:
    """Judged Hosts are remembered up to a bound: junk Hosts cannot grow the process."""
    guard = BrowserGuard("127.0.0.1")
    for i in range(2000):
        decide(guard, {"Host": f"evil{i}.example"})
        decide(guard, {"Host": f"127.0.{i // 250}.{i % 250}"})
    assert len(guard._hosts_refused) <= 256 and len(guard._hosts_ok) <= 256
    assert status(decide(guard, {"Host": "evil1999.example"})) == 400


OWN = {"Host": "127.0.0.1:9090"}
FORM_POST = {  # what Chrome sends for a form on https://evil.example posted to the gateway
    **OWN,
    "Origin": "https://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-User": "?1",
}
NO_CORS_FETCH = {  # fetch(url, {method: "POST", mode: "no-cors", body: "text"})
    **OWN,
    "Origin": "https://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "empty",
}
IMAGE = {
    **OWN,
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "image",
}
CONSOLE_FETCH = {  # the console's own POST /db
    **OWN,
    "Origin": "http://127.0.0.1:9090",
    "Sec-Fetch-Site": "same-origin",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty",
}
NAVIGATION = {
    **OWN,
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
}


@pytest.mark.parametrize(
    ("headers", "method", "path", "expected"),
    [
        pytest.param(OWN, b"POST", b"/db", 0, id="no-browser-headers"),
        pytest.param({**OWN, "Sec-Fetch-Site": "none"}, b"GET", b"/db", 0, id="typed-url"),
        pytest.param(CONSOLE_FETCH, b"POST", b"/db", 0, id="console-fetch"),
        pytest.param({**OWN, "Origin": "http://127.0.0.1:9090"}, b"POST", b"/db", 0, id="origin"),
        pytest.param(
            {"Host": "127.0.0.1", "Origin": "http://127.0.0.1:80"}, b"POST", b"/db", 0, id="port80"
        ),
        pytest.param(FORM_POST, b"POST", b"/dbform", 403, id="form-post"),
        pytest.param(NO_CORS_FETCH, b"POST", b"/db", 403, id="text-plain-fetch"),
        pytest.param(
            {**NO_CORS_FETCH, "Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
            b"POST",
            b"/db",
            403,
            id="same-site",
        ),
        pytest.param(
            {**OWN, "Origin": "http://127.0.0.1:9091"}, b"POST", b"/db", 403, id="other-port"
        ),
        pytest.param({**OWN, "Origin": "null"}, b"POST", b"/db", 403, id="null-origin"),
        pytest.param(
            {**OWN, "Sec-Fetch-Site": "none", "Origin": "https://evil.example"},
            b"POST",
            b"/db",
            403,
            id="typed-but-foreign-origin",
        ),
        pytest.param({**OWN, "Sec-Fetch-Site": "sideways"}, b"GET", b"/db", 403, id="unknown"),
        pytest.param(IMAGE, b"GET", b"/shutdown", 403, id="img-shutdown"),
        pytest.param(IMAGE, b"GET", b"/stats/log", 403, id="img-stats-log"),
        pytest.param(IMAGE, b"GET", b"/metrics", 403, id="img-metrics"),
        pytest.param(IMAGE, b"GET", b"/health", 403, id="img-health"),
        pytest.param(NAVIGATION, b"GET", b"/", 0, id="link-to-console"),
        pytest.param(NAVIGATION, b"GET", b"/stats", 0, id="link-to-dashboard"),
        pytest.param(NAVIGATION, b"GET", b"/db", 403, id="link-to-db"),
        pytest.param(NAVIGATION, b"GET", b"/%64b", 403, id="link-to-encoded-db"),
        pytest.param(NAVIGATION, b"GET", b"/shutdown", 403, id="link-to-shutdown"),
        pytest.param(NAVIGATION, b"POST", b"/", 403, id="form-post-to-console"),
        pytest.param({**NAVIGATION, "Sec-Fetch-Dest": "iframe"}, b"GET", b"/", 403, id="framed"),
    ],
)
def test_cross_site_decisions(
    headers: dict[str, str], method: bytes, path: bytes, expected: int
) -> None:
    """403 for what a browser sends for another site; the gateway's own pages, typed URLs and
    clients without browser headers go on."""
    verdict = decide(LOCAL, headers, method, path)
    assert status(verdict) == expected, verdict
    if expected == 403:
        assert isinstance(verdict, EarlyReply) and verdict.message
        assert "refused" in verdict.message and "--allowed-origins" in verdict.message


def test_cors_for_allowed_origins() -> None:
    """An allowed origin's request goes on with Access-Control-Allow-Origin (its Origin as
    sent) and Vary; its preflight is a 204; other origins are refused; with CORS on every
    answer varies by Origin."""
    guard = BrowserGuard("127.0.0.1", (), ["https://app.example", "http://localhost:3000/"])
    actual = {**NO_CORS_FETCH, "Origin": "https://app.example", "Sec-Fetch-Mode": "cors"}
    headers = decide(guard, actual, b"POST", b"/db")
    assert isinstance(headers, tuple)
    assert dict(headers)[b"Access-Control-Allow-Origin"] == b"https://app.example"
    assert dict(headers)[b"Vary"] == b"Origin"
    assert b"X-Cache" in dict(headers)[b"Access-Control-Expose-Headers"]
    odd = decide(guard, {**actual, "Origin": "HTTPS://App.Example:443"}, b"POST", b"/db")
    assert isinstance(odd, tuple) and dict(odd)[b"Access-Control-Allow-Origin"] == (
        b"HTTPS://App.Example:443"
    )
    same_site = {**actual, "Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    assert isinstance(decide(guard, same_site, b"POST", b"/db"), tuple)

    preflight = {**actual, "Access-Control-Request-Method": "POST"}
    reply = decide(guard, preflight, b"OPTIONS", b"/db")
    assert isinstance(reply, EarlyReply) and reply.status == 204 and reply.message is None
    assert dict(reply.headers) == {
        b"Access-Control-Allow-Origin": b"https://app.example",
        b"Access-Control-Allow-Methods": b"GET, POST",
        b"Access-Control-Allow-Headers": b"Content-Type, Authorization",
        b"Access-Control-Max-Age": b"600",
        b"Vary": b"Origin",
    }
    other = {**preflight, "Origin": "https://other.example"}
    assert status(decide(guard, other, b"OPTIONS", b"/db")) == 403
    assert status(decide(guard, {**actual, "Origin": "https://other.example"})) == 403
    assert decide(guard, OWN) == ((b"Vary", b"Origin"),)
    assert status(decide(LOCAL, actual, b"POST", b"/db")) == 403  # CORS off: refused


def test_repeated_headers_never_pass_for_one() -> None:
    """On the twisted.web channel a second Host or Origin makes the value fail its check."""
    request = type("R", (), {})()
    request.requestHeaders = Headers({b"host": [b"127.0.0.1:9090", b"evil.example"]})
    assert status(LOCAL.check(b"GET", b"/db", web_header(request))) == 400
    request.requestHeaders = Headers(
        {b"host": [b"127.0.0.1:9090"], b"origin": [b"http://127.0.0.1:9090", b"https://evil"]}
    )
    assert status(LOCAL.check(b"POST", b"/db", web_header(request))) == 403


def test_common_request_costs_microseconds() -> None:
    """The check of a request without browser headers (every API request) is a few dict
    look-ups: 100,000 of them take well under a second of CPU (about 0.05 s here)."""
    headers = {b"host": b"127.0.0.1:9090", b"content-type": b"application/json"}
    get = headers.get
    check = BrowserGuard("127.0.0.1").check
    started = time.process_time()
    for _ in range(100_000):
        check(b"POST", b"/db", get)
    assert time.process_time() - started < 1.0


# ------------------------------------------------------------- end to end, real gateway


@pytest.fixture(scope="module")
def target(mariadb: MariaDB) -> str:
    mariadb.sql(f"CREATE OR REPLACE TABLE {TABLE} (v VARCHAR(60))")
    return TABLE


@pytest.fixture
def empty(mariadb: MariaDB, target: str) -> str:
    mariadb.sql(f"TRUNCATE {target}")
    return target


def rows(mariadb: MariaDB) -> list[str]:
    return mariadb.sql(f"SELECT v FROM {TABLE} ORDER BY v").split()


def insert(value: str) -> str:
    return f"INSERT INTO {TABLE} (v) VALUES ('{value}')"


def db_target(sql: str) -> str:
    return "/db?" + urllib.parse.quote(json.dumps({"SQL": sql}))


def own(gw: Gateway) -> dict[str, str]:
    return {"Host": f"127.0.0.1:{gw.port}"}


def refused_403(reply: Reply) -> None:
    assert reply.status == 403, reply
    assert reply.headers["Content-Type"] == "application/json"
    assert "refused" in reply.json()["ERROR"]


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "----WebKitFormBoundaryx7b3Zk9"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def test_cross_site_form_post_to_dbform_refused(
    gateway: Gateway, mariadb: MariaDB, empty: str
) -> None:
    """A form on another site posted to /dbform (URL-encoded: the fast channel; multipart:
    twisted.web) gets 403 JSON, and its INSERT is not applied."""
    headers = {**FORM_POST, **own(gateway), "Content-Type": "application/x-www-form-urlencoded"}
    body = urllib.parse.urlencode({"SQL": insert("form")}).encode()
    refused_403(raw_request(gateway.port, "POST", "/dbform", headers, body))
    data, ctype = multipart({"SQL": insert("multipart")})
    refused_403(
        raw_request(gateway.port, "POST", "/dbform", {**headers, "Content-Type": ctype}, data)
    )
    assert rows(mariadb) == []
    assert gateway.post("/dbform", body, "application/x-www-form-urlencoded").status == 200
    assert rows(mariadb) == ["form"]  # the same request from a client that is not a browser


def test_cross_site_text_plain_post_to_db_refused(
    gateway: Gateway, mariadb: MariaDB, empty: str
) -> None:
    """fetch() from another site (or another port: same-site) with a text/plain body to /db
    gets 403 JSON, and its INSERT is not applied."""
    body = json.dumps({"SQL": insert("fetch")}).encode()
    headers = {**NO_CORS_FETCH, **own(gateway), "Content-Type": "text/plain;charset=UTF-8"}
    refused_403(raw_request(gateway.port, "POST", "/db", headers, body))
    same_site = {**headers, "Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    refused_403(raw_request(gateway.port, "POST", "/db", same_site, body))
    chunked = {**headers, "Transfer-Encoding": "chunked"}  # (handed to twisted.web)
    refused_403(raw_request(gateway.port, "POST", "/db", chunked, iter([body])))  # type: ignore[arg-type]
    assert rows(mariadb) == []


def test_cross_site_subresources_refused(gateway: Gateway, mariadb: MariaDB, empty: str) -> None:
    """<img>/<script> GETs from another site: /db (also spelt /%64b), /stats/log, /metrics
    and /shutdown are 403; the gateway keeps running."""
    headers = {**IMAGE, **own(gateway)}
    refused_403(raw_request(gateway.port, "GET", db_target(insert("img")), headers))
    encoded = db_target(insert("img2")).replace("/db?", "/%64b?")
    refused_403(raw_request(gateway.port, "GET", encoded, headers))
    for path in ("/stats/log", "/stats", "/metrics", "/shutdown"):
        refused_403(raw_request(gateway.port, "GET", path, headers))
    assert rows(mariadb) == []
    assert gateway.proc is not None and gateway.proc.poll() is None
    assert gateway.db({"SQL": "SELECT 1"}).status == 200


def test_own_pages_and_other_clients_still_work(
    gateway: Gateway, mariadb: MariaDB, empty: str
) -> None:
    """The console's same-origin POST runs, so do a typed URL and a client without browser
    headers; a link from another site opens the console and the dashboard, a frame does not."""
    body = json.dumps({"SQL": insert("console")}).encode()
    console = {
        **CONSOLE_FETCH,
        **own(gateway),
        "Origin": f"http://127.0.0.1:{gateway.port}",
        "Content-Type": "application/json",
    }
    assert raw_request(gateway.port, "POST", "/db", console, body).status == 200
    typed = {**own(gateway), "Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}
    assert raw_request(gateway.port, "GET", db_target(insert("typed")), typed).status == 200
    assert gateway.db({"SQL": insert("curl")}).status == 200
    assert rows(mariadb) == ["console", "curl", "typed"]
    dashboard_fetch = {**console, "Accept": "application/json"}
    del dashboard_fetch["Origin"]  # (a same-origin GET carries none)
    assert raw_request(gateway.port, "GET", "/stats", dashboard_fetch).status == 200

    link = {**NAVIGATION, **own(gateway), "Accept": "text/html,application/xhtml+xml"}
    page = raw_request(gateway.port, "GET", "/", link)
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    dashboard = raw_request(gateway.port, "GET", "/stats", link)
    assert dashboard.status == 200 and b"<html" in dashboard.body.lower()
    refused_403(raw_request(gateway.port, "GET", "/", {**link, "Sec-Fetch-Dest": "iframe"}))


def test_head_never_runs_sql(gateway: Gateway, mariadb: MariaDB, empty: str) -> None:
    """HEAD on /db, /dbform (however spelt) and /shutdown is 405 with Allow: GET, POST: no
    statement runs and the gateway stays up; HEAD on a page is answered."""
    for target in (
        db_target(insert("head")),
        db_target(insert("head2")).replace("/db?", "/%64b?"),
        "/dbform?" + urllib.parse.urlencode({"SQL": insert("head3")}),
        "/shutdown",
    ):
        reply = raw_request(gateway.port, "HEAD", target, own(gateway))
        assert reply.status == 405 and reply.headers["Allow"] == "GET, POST", (target, reply)
    assert rows(mariadb) == []
    assert gateway.proc is not None and gateway.proc.poll() is None
    assert raw_request(gateway.port, "HEAD", "/", own(gateway)).status == 200
    options = raw_request(gateway.port, "OPTIONS", "/db", own(gateway))
    assert options.status == 405 and options.headers["Allow"] == "GET, POST"


def test_dns_rebinding_host_refused(gateway: Gateway, mariadb: MariaDB, empty: str) -> None:
    """A Host that names another site gets 400 on every path (the write not applied), on both
    channels; this gateway's names, any port, and no Host at all (HTTP/1.0) are served."""
    evil = {"Host": f"rebind.evil.example:{gateway.port}"}
    for target in (db_target(insert("rebound")), "/", "/stats", "/stats/log", "/health"):
        reply = raw_request(gateway.port, "GET", target, evil)
        assert reply.status == 400 and "DNS rebinding" in reply.json()["ERROR"], (target, reply)
    chunked = {**evil, "Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    body = json.dumps({"SQL": insert("rebound2")}).encode()
    assert raw_request(gateway.port, "POST", "/db", chunked, iter([body])).status == 400  # type: ignore[arg-type]
    assert rows(mariadb) == []
    for host in (f"localhost:{gateway.port}", "127.0.0.2", f"[::1]:{gateway.port}", "127.0.0.1:1"):
        assert raw_request(gateway.port, "GET", "/health", {"Host": host}).status == 200, host
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(f"GET {db_target('SELECT 7')} HTTP/1.0\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and b"[[7]]" in answer


def test_allowed_hosts(mariadb: MariaDB, gateway_factory: Any) -> None:
    """--allowed-hosts names and .domains are served; any other name is still 400."""
    gw: Gateway = gateway_factory(
        "--backend", mariadb.dsn(), "--allowed-hosts", "gw.example, .corp.example"
    )
    for host, expected in (
        (f"gw.example:{gw.port}", 200),
        ("db.eu.corp.example", 200),
        ("corp.example", 200),
        ("gw.example.evil", 400),
        (f"127.0.0.1:{gw.port}", 200),
    ):
        assert raw_request(gw.port, "GET", db_target("SELECT 1"), {"Host": host}).status == (
            expected
        ), host


def test_allowed_origins_cors(mariadb: MariaDB, empty: str, gateway_factory: Any) -> None:
    """--allowed-origins: the preflight is a 204 with the allowed methods and headers, the
    request runs with Access-Control-Allow-Origin and Vary: Origin; another origin's request
    and preflight are 403 and its write is not applied."""
    gw: Gateway = gateway_factory(
        "--backend", mariadb.dsn(), "--allowed-origins", "https://app.example"
    )
    cors = {
        **own(gw),
        "Origin": "https://app.example",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Dest": "empty",
    }
    preflight = {
        **cors,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    answer = raw_request(gw.port, "OPTIONS", "/db", preflight)
    assert answer.status == 204, answer
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert answer.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert answer.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    body = json.dumps({"SQL": insert("cors")}).encode()
    actual = raw_request(gw.port, "POST", "/db", {**cors, "Content-Type": "application/json"}, body)
    assert actual.status == 200, actual
    assert actual.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert actual.headers["Vary"] == "Origin"
    other = {**cors, "Origin": "https://other.example", "Content-Type": "application/json"}
    refused_403(
        raw_request(gw.port, "POST", "/db", other, json.dumps({"SQL": insert("x")}).encode())
    )
    refused_403(
        raw_request(gw.port, "OPTIONS", "/db", {**preflight, "Origin": "https://other.example"})
    )
    assert rows(mariadb) == ["cors"]
    plain = raw_request(gw.port, "GET", db_target("SELECT 1"), own(gw))
    assert plain.status == 200 and plain.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Origin" not in plain.headers


# ------------------------------------------------------------- a real browser, if any


def _binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/lib/chromium")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    binary, driver_binary = _binary("chromium"), _binary("chromedriver")
    if not binary or not driver_binary:
        pytest.skip("chromium and chromedriver not found (./.ci/system-packages browser)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium_safety')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_binary))
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def evil_site() -> Iterator[tuple[int, dict[str, str]]]:
    """A web server on localhost (another site than 127.0.0.1) serving the pages given."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], pages
    server.shutdown()
    server.server_close()


def test_real_browser_cross_site_attacks_fail(
    chromium: Any,
    gateway: Gateway,
    mariadb: MariaDB,
    empty: str,
    evil_site: tuple[int, dict[str, str]],
) -> None:
    """Chromium on a page of http://localhost:N: its text/plain fetch to /db, its <img> of
    /shutdown and its form posted to /dbform change nothing (the form lands on the 403); the
    gateway's own page at 127.0.0.1 runs SQL with a same-origin fetch."""
    port, pages = evil_site
    gw = f"http://127.0.0.1:{gateway.port}"
    pages["/"] = f"""<!doctype html><title>evil</title>
<form id="f" method="POST" action="{gw}/dbform">
<input name="SQL" value="{insert("browser-form")}"></form>
<img src="{gw}/shutdown">
<script>
fetch("{gw}/db", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{SQL: "{insert("browser-fetch")}"}})}})
  .catch(() => null).finally(() => setTimeout(() => document.getElementById("f").submit(), 300));
</script>"""
    chromium.get(f"http://localhost:{port}/")
    deadline = time.monotonic() + 15
    while not chromium.current_url.startswith(f"{gw}/dbform"):
        assert time.monotonic() < deadline, chromium.current_url
        time.sleep(0.1)
    assert "refused" in chromium.find_element("tag name", "body").text
    assert rows(mariadb) == []
    assert gateway.proc is not None and gateway.proc.poll() is None

    chromium.get(f"{gw}/")
    status_and_body = chromium.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch("/db", {method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({SQL: arguments[0]})})
          .then(r => r.text().then(t => done([r.status, t]))).catch(e => done([0, String(e)]));""",
        insert("browser-console"),
    )
    assert status_and_body[0] == 200, status_and_body
    assert rows(mariadb) == ["browser-console"]
