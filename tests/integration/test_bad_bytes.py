"""Bad bytes: a path, query, Host or other header that is not UTF-8 (raw or percent-encoded), on
both HTTP channels and the admin port, gets a JSON 400 (or its normal answer where the bytes do
not matter) and one access-log line, never a traceback; control characters never reach the
access log raw. A stray ``%`` in SQL with PARAMS is a 400 saying how to write a literal ``%``,
on every path: MySQL through the reactor lane and through a pool thread, and the SQLite demo."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.servers import Gateway, MariaDB, Redis, add_user, free_port

SELECT_1 = b"/db?" + quote(json.dumps({"SQL": "SELECT 1"})).encode()


def exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes: status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return int(lines[0].split()[1]), headers, body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def request(method: bytes, target: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """A request that closes its connection; headers given as whole lines."""
    lines = [method + b" " + target + b" HTTP/1.1", *headers, b"Connection: close"]
    if not any(h.lower().startswith((b"host:", b"host :")) for h in headers):
        lines.insert(1, b"Host: 127.0.0.1")
    if body and not any(h.lower().startswith(b"transfer-encoding") for h in headers):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class Logs:
    """The gateway's own log (stdout) and its access log, read as they grow."""

    def __init__(self, gw: Gateway, access: Path) -> None:
        self.gw = gw
        self.access = access

    def lines(self) -> tuple[list[str], list[str]]:
        access = self.access.read_text(errors="replace") if self.access.exists() else ""
        return self.gw.output().splitlines(), access.splitlines()

    def after(self, send: Any) -> tuple[Any, list[str], list[str]]:
        """Run ``send()``; the log lines and access-log lines it added."""
        out_before, access_before = self.lines()
        result = send()
        deadline = time.monotonic() + 5
        while True:  # the access-log line is written as the answer finishes
            out, access = self.lines()
            if len(access) > len(access_before) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(0.05)
        out, access = self.lines()
        return result, out[len(out_before) :], access[len(access_before) :]


@pytest.fixture(scope="module")
def edge(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("bad-bytes")
    access = directory / "access.log"
    admin = free_port()
    gw = Gateway(
        directory,
        "--backend",
        mariadb.dsn(),
        "--access-log",
        str(access),
        "--admin-port",
        str(admin),
    ).start()
    gw.admin_port = admin  # type: ignore[attr-defined]
    yield gw, Logs(gw, access)
    gw.stop()


CHUNKED_SELECT = b'12\r\n{"SQL":"SELECT 1"}\r\n0\r\n\r\n'

#: (what, admin port?, request bytes, the statuses it may get)
CASES: list[tuple[str, bool, bytes, set[int]]] = [
    # The fast channel (/db, /dbform).
    ("percent-encoded query", False, request(b"GET", b"/db?%FF%FE"), {400}),
    ("raw query bytes", False, request(b"GET", b"/db?\xff\xfe"), {400}),
    ("form field", False, request(b"GET", b"/dbform?SQL=%FF"), {400}),
    ("other header", False, request(b"GET", SELECT_1, b"X-Note: \xff\xfe"), {200}),
    ("user agent", False, request(b"GET", SELECT_1, b"User-Agent: \xff"), {200}),
    ("cookie", False, request(b"GET", SELECT_1, b"Cookie: a=\xff"), {200}),
    ("authorization, auth off", False, request(b"GET", SELECT_1, b"Authorization: \xff"), {200}),
    ("host", False, request(b"GET", SELECT_1, b"Host: \xff\xfe"), {200, 400}),
    ("host with a port", False, request(b"GET", SELECT_1, b"Host: 127.0.0.1\xff:80"), {200, 400}),
    ("header name", False, request(b"GET", SELECT_1, b"X-\xff: 1"), {200, 400}),
    (
        "content type",
        False,
        request(b"POST", b"/db", b"Content-Type: application/json\xff", body=b'{"SQL":"SELECT 1"}'),
        {200, 400, 415},
    ),
    # twisted.web (every other path, and what the fast channel hands over).
    ("percent-encoded path", False, request(b"GET", b"/stats/%FF"), {400}),
    ("percent-encoded root path", False, request(b"GET", b"/%FF%FE"), {400}),
    ("raw path bytes", False, request(b"GET", b"/st\xffats"), {400}),
    ("host, web channel", False, request(b"GET", b"/stats", b"Host: \xff\xfe"), {400}),
    ("header, web channel", False, request(b"GET", b"/health", b"X-Note: \xff"), {200}),
    ("host, HEAD", False, request(b"HEAD", SELECT_1, b"Host: \xff"), {200, 400, 405}),
    (
        "user agent, chunked body",
        False,
        request(
            b"POST",
            b"/db",
            b"User-Agent: \xff",
            b"Transfer-Encoding: chunked",
            body=CHUNKED_SELECT,
        ),
        {200},
    ),
    # The admin port.
    ("admin: percent-encoded path", True, request(b"GET", b"/stats/%FF"), {400}),
    ("admin: host", True, request(b"GET", b"/stats", b"Host: \xff"), {400}),
    ("admin: header", True, request(b"GET", b"/health", b"X-Note: \xff"), {200}),
    ("admin: user agent", True, request(b"GET", b"/metrics", b"User-Agent: \xff"), {200}),
]


@pytest.mark.parametrize(("what", "admin", "data", "allowed"), CASES, ids=[c[0] for c in CASES])
def test_bad_bytes_get_a_400_and_one_log_line(
    edge: Any, what: str, admin: bool, data: bytes, allowed: set[int]
) -> None:
    """Non-UTF-8 bytes in a path, query, Host or header: a JSON 400 (or the normal answer
    where they do not matter), exactly one access-log line, no traceback, at most one line
    in the gateway's log."""
    gw, logs = edge
    port = gw.admin_port if admin else gw.port
    (status, headers, body), out, access = logs.after(lambda: exchange(port, data))
    assert status in allowed, (status, body)
    if status >= 400 and not data.startswith(b"HEAD"):
        assert headers.get("content-type") == "application/json", (headers, body)
        assert json.loads(body)["ERROR"], body
    assert not any("Traceback" in line for line in out), "\n".join(out)
    assert len(out) <= 1, "\n".join(out)
    assert len(access) == 1, access


def test_the_access_log_gets_no_control_characters(edge: Any) -> None:
    """Percent-encoded line breaks, escapes and NULs in a path or query are shown escaped:
    one request is one access-log line, however it is written; the journal keeps the text."""
    gw, logs = edge
    forged = '\n127.0.0.1 - - [01/Jan/2030:00:00:00 +0000] "GET /forged HTTP/1.1" 200 0 1'
    targets = [
        b"/db?" + quote(json.dumps({"SQL": "SELECT 1" + forged})).encode(),
        b"/stats/" + quote("\r\x1b[31mred\x00").encode(),
        b"/db?%0A%0D%1B%00%7F%C2%85",
        b"/db?" + quote(json.dumps({"SQL": "SELECT 'é ✓'"}, ensure_ascii=False)).encode(),
    ]
    for target in targets:
        _, _, access = logs.after(lambda t=target: exchange(gw.port, request(b"GET", t)))
        assert len(access) == 1, access
        line = access[0]
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line), repr(line)
    assert "\\n127.0.0.1 - - [01/Jan/2030" in logs.lines()[1][-4]  # shown, escaped
    assert "\\x1b[31mred\\x00" in logs.lines()[1][-3]
    assert "SELECT 'é ✓'" in logs.lines()[1][-1]  # UTF-8 text stays readable
    journal = gw.get("/stats/log").json()
    assert any("/forged HTTP/1.1" in entry["request"] for entry in journal)


def test_bad_bytes_in_credentials_are_a_401(mariadb: MariaDB, redis: Redis, tmp_path: Path) -> None:
    """With --auth, an Authorization header that is not UTF-8 or not base64 is a JSON 401,
    never a traceback; a good token still works."""
    token = add_user(redis, "alice", "read")
    gw = Gateway(
        tmp_path,
        "--backend",
        mariadb.dsn(),
        "--redis",
        redis.url,
        "--auth",
        "--read-on-shared-account",
    ).start()
    try:
        bad = [
            b"Authorization: Bearer \xff\xfe",
            b"Authorization: Basic " + base64.b64encode(b"\xff:\xfe"),
            b"Authorization: Basic " + base64.b64encode(b"alice:\xff"),
            b"Authorization: \xff",
            b"Authorization: Basic \xff\xfe",  # (b64decode of non-ASCII text: ValueError)
        ]
        for header in bad:
            status, headers, body = exchange(gw.port, request(b"GET", SELECT_1, header))
            assert status == 401, (header, status, body)
            assert json.loads(body)["ERROR"]
        good = request(b"GET", SELECT_1, b"Authorization: Bearer " + token.encode())
        assert exchange(gw.port, good)[0] == 200
    finally:
        gw.stop()
    assert "Traceback" not in gw.output(), gw.output()[-3000:]


# ------------------------------------------------------------------ a stray % with PARAMS

#: Requests whose PARAMS the driver cannot put into the SQL: MySQL %-formats the whole text,
#: literals included, so every % there is a placeholder or is written %%.
STRAY = [
    {"SQL": "SELECT '5%' , %s", "PARAMS": [1]},
    {"SQL": "SELECT 5 % %s", "PARAMS": [1]},
    {"SQL": "SELECT %s AS a -- 100% sure", "PARAMS": [1]},
    {"SQL": "SELECT %(a)s %", "PARAMS": {"a": 1}},
    {"SQL": "SELECT %(a)s, %(b)s", "PARAMS": {"a": 1}},
    {"SQL": "SELECT %s, %s", "PARAMS": [1]},
    {"SQL": "SELECT %s", "PARAMS": {"a": 1}},
    {"SQL": "SELECT %(a)s", "PARAMS": [1]},
    {"SQL": "SELECT %d", "PARAMS": [1]},
]


@pytest.fixture(scope="module")
def three_paths(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """MySQL through the reactor lane, MySQL through pool threads only, the SQLite demo."""
    directory = tmp_path_factory.mktemp("percent")
    gateways = {
        "lane": Gateway(directory, "--backend", mariadb.dsn()).start(),
        "thread": Gateway(directory, "--backend", mariadb.dsn(), "--reactor-lane", "false").start(),
        "demo": Gateway(directory, env={"XDG_DATA_HOME": str(directory / "demo")}).start(),
    }
    for gw in gateways.values():
        for _ in range(3):  # (opens the pooled connection; later requests take the lane)
            assert gw.db({"SQL": "SELECT 1"}).status == 200
    yield gateways
    for gw in gateways.values():
        gw.stop()


@pytest.mark.parametrize("path", ["lane", "thread", "demo"])
def test_a_stray_percent_with_params_is_a_400_on_every_path(three_paths: Any, path: str) -> None:
    """Each stray-% request is a 400 whose message says how to write a literal %, through
    GET and POST; a doubled %% is a literal; no traceback in the log."""
    gw = three_paths[path]
    for obj in STRAY:
        for reply in (gw.db(obj), gw.post("/db", json.dumps(obj).encode())):
            assert reply.status == 400, (obj, reply)
            message = reply.json()["ERROR"]
            assert "PARAMS" in message and "a literal % is written %%" in message, message
    ok = gw.db({"SQL": "SELECT 5 %% %s AS r", "PARAMS": [2]})
    assert ok.status == 200 and ok.json()["RESULT"]["ROWS"] == [[1]], ok
    named = gw.db({"SQL": "SELECT %(a)s * 10 %% 7 AS r", "PARAMS": {"a": 3}})
    assert named.status == 200 and named.json()["RESULT"]["ROWS"] == [[2]], named
    quoted = gw.db({"SQL": "SELECT '5%%' AS p, %s AS v", "PARAMS": [1]}).json()
    assert quoted["RESULT"]["ROWS"] == [["5%", 1]], quoted  # (%% inside quotes too, as MySQL)
    odd = gw.db({"SQL": "SELECT %(a b)s AS v", "PARAMS": {"a b": "x"}}).json()
    assert odd["RESULT"]["ROWS"] == [["x"]], odd
    assert gw.db({"SQL": "SELECT '5%' AS p"}).json()["RESULT"]["ROWS"] == [["5%"]]  # no PARAMS
    assert "Traceback" not in gw.output(), gw.output()[-3000:]


def test_the_lane_and_the_thread_path_refuse_the_same_way(mariadb: MariaDB) -> None:
    """At the backend: every stray-% request is the same ParamsMismatch (400) through the
    reactor lane as through a pool thread, and the lane decides it without a thread."""
    from tests.integration.test_lane import run_scenario

    result = run_scenario(
        """
        async def scenario(reactor, dsn, requests):
            out = {}
            for lane in (True, False):
                b = backend(reactor, dsn, lane=lane)
                for _ in range(2):
                    await ask(b, {"SQL": "SELECT 1"})
                threads = b.counts["thread"]
                answers = []
                for obj in json.loads(requests):
                    answers.append(await ask(b, obj))
                    await sleep(reactor, 0.01)  # (the lane gives its slot back a turn later)
                out["lane" if lane else "thread"] = {
                    "answers": answers, "threads": b.counts["thread"] - threads
                }
                b.close()
            return out
        """,
        mariadb.dsn(),
        json.dumps(STRAY),
    )
    lane, thread = result["lane"], result["thread"]
    assert lane["answers"] == thread["answers"]
    for a in lane["answers"]:
        assert (a["error"], a["status"], a["errno"]) == ("ParamsMismatch", 400, None), a
        assert a["message"].endswith("placeholders are %s or %(name)s, a literal % is written %%")
    assert "(no value in PARAMS for %(b)s)" in lane["answers"][4]["message"]
    assert "unsupported format character" in lane["answers"][0]["message"]
    assert lane["threads"] == 0 and thread["threads"] == len(STRAY)
