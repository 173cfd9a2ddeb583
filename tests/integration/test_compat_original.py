"""``dbslayer serve --compat original`` for clients written against the C original, tried as
the simplest of them reads: a raw socket, the request, then everything until the server
closes, with no parser for chunked answers. Every answer (a big streamed one included) must
come whole and end with the connection, long before the idle timeout; refused requests get
200 with their ERROR body. Without the setting, nothing changes (keep-alive, chunked, honest
statuses)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.servers import Gateway, MariaDB

#: Over 1,000 rows and over the reactor lane's 64 KiB: streamed (X-Streamed).
BIG_SQL = "SELECT seq, REPEAT('x', 30) AS pad FROM seq_1_to_5000"
#: The idle timeout of the gateways here; a client that waited for it would take this long.
IDLE = 20.0
#: A whole answer, read until the close, comes within this (far under IDLE).
PROMPT = 5.0


@pytest.fixture(scope="module")
def compat(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(
        tmp_path_factory.mktemp("compat"),
        "--backend",
        mariadb.dsn(),
        "--compat",
        "original",
        "--idle-timeout",
        str(IDLE),
        "--max-request-bytes",
        "4096",
    ).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def plain(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(
        tmp_path_factory.mktemp("plain"),
        "--backend",
        mariadb.dsn(),
        "--idle-timeout",
        str(IDLE),
        "--max-request-bytes",
        "4096",
    ).start()
    yield gw
    gw.stop()


class Answer:
    """An answer read the legacy way: the bytes up to the close, split at the blank line."""

    def __init__(self, raw: bytes, elapsed: float) -> None:
        self.raw = raw
        self.elapsed = elapsed
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self) -> Any:
        return json.loads(self.body)


def until_close(port: int, request: bytes, half_close: bool = False) -> Answer:
    """Send ``request``, then read until the server closes (as a client that reads an answer
    to the end of the connection does); ``half_close``: shut our side down after sending."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=IDLE + 10) as s:
        s.sendall(request)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    return Answer(data, time.monotonic() - started)


def get(target: str, version: str = "HTTP/1.1", extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {target} {version}\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def db(obj: Any) -> str:
    return "/db?" + quote(json.dumps(obj))


def assert_whole_and_closed(answer: Answer) -> None:
    assert answer.elapsed < PROMPT, f"the answer took {answer.elapsed:.1f} s: the idle timeout?"
    assert answer.headers.get("connection") == "close"
    assert "transfer-encoding" not in answer.headers
    length = answer.headers.get("content-length")
    if length is not None:
        assert int(length) == len(answer.body)


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_every_answer_comes_whole_and_closes(compat: Gateway, version: str) -> None:
    small = until_close(compat.port, get(db({"SQL": "SELECT 1 AS one"}), version))
    assert_whole_and_closed(small)
    assert small.status == 200 and small.json()["RESULT"]["ROWS"] == [[1]]
    assert small.headers["content-type"] == "text/plain; charset=utf-8"  # (as the original)
    big = until_close(compat.port, get(db({"SQL": BIG_SQL}), version))
    assert_whole_and_closed(big)
    assert big.headers.get("x-streamed") == "true" and "content-length" not in big.headers
    rows = big.json()["RESULT"]["ROWS"]
    assert len(rows) == 5000 and rows[-1] == [5000, "x" * 30]


def test_keep_alive_asked_for_is_not_given(compat: Gateway) -> None:
    answer = until_close(
        compat.port, get(db({"SQL": "SELECT 2"}), extra="Connection: keep-alive\r\n")
    )
    assert_whole_and_closed(answer)
    assert answer.json()["RESULT"]["ROWS"] == [[2]]


def test_a_client_that_half_closes_gets_its_answer_and_no_probe(compat: Gateway) -> None:
    """Shutting the sending side down after the request (a common way to say "that is all"):
    no 100-continue ahead of the answer, which such a client would take for the answer."""
    answer = until_close(compat.port, get(db({"SQL": "SELECT SLEEP(0.3) AS z"})), half_close=True)
    assert_whole_and_closed(answer)
    assert answer.status == 200 and answer.json()["RESULT"]["ROWS"] == [[0]]
    assert b"100 Continue" not in answer.raw


@pytest.mark.parametrize(
    "request_bytes, what",
    [
        (get("/db?" + quote("[1,2]")), "JSON object"),
        (get("/db?" + quote("{not json")), ""),
        (get(db({"SQL": "SELECT 1", "SERVER": "nope"})), "SERVER"),
        (get(db({"SQL": "SELECT 1"}), method="PUT"), "not allowed"),
        (
            b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999\r\n\r\n",
            "over the limit",
        ),
        (get("/db?" + "x" * 9000), "limit"),
        (b"GET /db HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n", "malformed"),
    ],
)
def test_refused_requests_get_200_and_their_error(
    compat: Gateway, plain: Gateway, request_bytes: bytes, what: str
) -> None:
    answer = until_close(compat.port, request_bytes)
    assert_whole_and_closed(answer)
    assert answer.status == 200, answer.raw[:300]
    error = answer.json()["ERROR"]
    assert what in error
    honest = until_close(plain.port, request_bytes.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    assert 400 <= honest.status < 500 and honest.json()["ERROR"] == error


def test_an_sql_error_is_200_as_always(compat: Gateway) -> None:
    answer = until_close(compat.port, get(db({"SQL": "SELEC 1"})))
    assert_whole_and_closed(answer)
    assert answer.status == 200 and answer.json()["MYSQL_ERRNO"] == 1064


def test_unknown_paths_keep_404_as_the_original_answered(compat: Gateway) -> None:
    answer = until_close(compat.port, get("/nowhere"))
    assert_whole_and_closed(answer)
    assert answer.status == 404 and "ERROR" in answer.json()


def test_stats_is_json_as_text_plain(compat: Gateway) -> None:
    answer = until_close(
        compat.port,
        get(
            "/stats",
            extra="X-Requested-With: XMLHttpRequest\r\n"
            "Accept: text/javascript, text/html, application/xml, text/xml, */*\r\n",
        ),
    )
    assert_whole_and_closed(answer)
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert {"hits", "slices", "start_time", "total_requests"} <= set(answer.json())


# ------------------------------------------------------------------- without the setting


def read_answer(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """One answer from a kept-alive connection: by Content-Length or by chunks."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            rest += sock.recv(65536)
        return lines[0], headers, rest[:n]
    assert headers.get("transfer-encoding") == "chunked"
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += sock.recv(65536)
        if size == 0:
            return lines[0], headers, body
        body, rest = body + rest[:size], rest[size + 2 :]


def test_without_compat_nothing_changes(plain: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", plain.port), timeout=30) as s:
        s.sendall(get("/db?" + quote("[1]")))
        status, headers, body = read_answer(s)
        assert status.endswith("400 Bad Request") and "ERROR" in json.loads(body)
        assert headers["content-type"] == "application/json" and "connection" not in headers
        s.sendall(get(db({"SQL": BIG_SQL})))  # the same connection: it was kept
        status, headers, body = read_answer(s)
        assert headers["transfer-encoding"] == "chunked" and "connection" not in headers
        assert len(json.loads(body)["RESULT"]["ROWS"]) == 5000
