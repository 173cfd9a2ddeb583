"""Memory and time bounds of a real ``dbslayer serve`` (one worker) under clients that attack
them: one that never reads its pipelined answers, a thousand slow uploads, trickled requests.
Memory is the worker's resident set, read from /proc/<pid>/status."""

from __future__ import annotations

import json
import resource
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB

MIB = 1 << 20
#: A one-row answer of about 1 MB (not streamed: one row).
BIG_SQL = "SELECT REPEAT('x', 1000000) AS x, {n} AS n"


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def settled_rss_mb(pid: int, poll: Any = None, least: float = 3.0, most: float = 60.0) -> float:
    """The worker's RSS once it has stopped changing (by under 1 MB over 2 s, after at least
    ``least`` seconds); ``poll`` is called between readings."""
    started = time.monotonic()
    readings: list[float] = []
    while True:
        if poll is not None:
            poll()
        readings.append(rss_mb(pid))
        elapsed = time.monotonic() - started
        if elapsed >= least and len(readings) >= 5 and max(readings[-5:]) - min(readings[-5:]) < 1:
            return readings[-1]
        if elapsed > most:
            return readings[-1]
        time.sleep(0.5)


def get_db(sql: str, host: str) -> bytes:
    query = urllib.parse.quote(json.dumps({"SQL": sql}))
    return f"GET /db?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` answers framed by Content-Length: (status, body) each."""
    buf = b""
    answers: list[tuple[int, bytes]] = []
    sock.settimeout(30)
    while len(answers) < count:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").split("\r\n")
            length = next(
                int(line.split(":", 1)[1])
                for line in head
                if line.lower().startswith("content-length:")
            )
            if len(buf) >= end + 4 + length:
                answers.append((int(head[0].split()[1]), buf[end + 4 : end + 4 + length]))
                buf = buf[end + 4 + length :]
                continue
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(answers)} answers"
        buf += chunk
    return answers


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for 1,000 client sockets here and 1,000 in the gateway (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2600
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_client_that_does_not_read_cannot_grow_the_worker(
    mariadb: MariaDB, gateway_factory: Any
) -> None:
    """One connection sends 150 pipelined requests for 1 MB answers and reads none: the worker
    grows by less than 16 MB (it answers one at a time, each once the client has read most of
    the one before) and serves other clients meanwhile; the 150 answers then arrive whole and
    in order as the client reads."""
    gw: Gateway = gateway_factory("--backend", mariadb.dsn())
    assert gw.proc is not None
    pid = gw.proc.pid
    host = f"127.0.0.1:{gw.port}"
    for n in range(3):  # warm up: the answer's path has run, its buffers are allocated
        assert gw.db({"SQL": BIG_SQL.format(n=n)}).status == 200
    before = settled_rss_mb(pid, least=1.0)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(b"".join(get_db(BIG_SQL.format(n=n), host) for n in range(150)))
        held = settled_rss_mb(pid)
        growth = held - before
        assert growth < 16, f"the worker grew by {growth:.0f} MB for a client that reads nothing"
        assert gw.db({"SQL": "SELECT 'other'"}).json()["RESULT"]["ROWS"] == [["other"]]
        answers = read_answers(sock, 150)
    assert [status for status, _ in answers] == [200] * 150
    rows = [json.loads(body)["RESULT"]["ROWS"][0] for _, body in answers]
    assert [n for _, n in rows] == list(range(150)) and all(len(x) == 1_000_000 for x, _ in rows)


def test_a_thousand_slow_uploads_hold_bounded_memory(
    mariadb: MariaDB, gateway_factory: Any, many_files: None
) -> None:
    """1,000 connections each send the head of a 1 MiB POST and 256 KiB of its body, then hold:
    with --max-body-memory 16 MiB the worker grows by less than 48 MB (the budget, 16 KiB a
    connection outside it, and the connections themselves), the uploads past the budget get a
    JSON 503 with Retry-After at once, and once they are gone a large upload is served."""
    budget = 16 * MIB
    gw: Gateway = gateway_factory("--backend", mariadb.dsn(), "--max-body-memory", str(budget))
    assert gw.proc is not None
    pid = gw.proc.pid
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    before = settled_rss_mb(pid, least=1.0)
    head = (
        f"POST /db HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MIB}\r\n\r\n"
    ).encode()
    payload = head + b" " * (256 * 1024)
    socks: list[socket.socket] = []
    left: dict[socket.socket, bytes] = {}
    answers: dict[socket.socket, bytes] = {}

    def poll() -> None:
        """Send what each socket can take, and read what the gateway answered."""
        for sock in socks:
            if sock in answers:
                continue
            data = left.get(sock)
            try:
                if data:
                    sent = sock.send(data)
                    left[sock] = data[sent:]
            except BlockingIOError:
                pass
            except OSError:
                left[sock] = b""
            try:
                got = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                got = b"(reset)"
            if got:
                answers[sock] = got
                sock.close()  # the gateway lingers for the client to read; it has

    try:
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            sock.setblocking(False)
            socks.append(sock)
            left[sock] = payload
            if len(socks) % 50 == 0:
                poll()
        deadline = time.monotonic() + 60
        while any(left[s] for s in socks if s not in answers) and time.monotonic() < deadline:
            poll()
            time.sleep(0.01)
        held = settled_rss_mb(pid, poll)
        growth = held - before
        refused = list(answers.values())
        assert growth < 48, f"the worker grew by {growth:.0f} MB for 1,000 slow uploads"
        assert len(refused) >= 800, f"only {len(refused)} uploads were refused"
        for answer in refused:
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
            assert b"\r\nRetry-After: 1\r\n" in answer and b"--max-body-memory" in answer
        assert gw.db({"SQL": "SELECT 'served'"}).json()["RESULT"]["ROWS"] == [["served"]]
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.5)
    sql = json.dumps({"SQL": "SELECT 'large'"}).encode()
    reply = gw.post("/db", sql + b" " * (900_000 - len(sql)))
    assert reply.status == 200 and reply.json()["RESULT"]["ROWS"] == [["large"]]


def test_trickled_requests_are_cut_on_a_real_server(mariadb: MariaDB, gateway_factory: Any) -> None:
    """With --header-timeout 1 and --body-timeout 2, a head trickled a byte every 0.2 s (on the
    fast channel) and a chunked body trickled a chunk every 0.3 s (on twisted.web's) get a
    JSON 408 and the close about when their time is up."""
    gw: Gateway = gateway_factory(
        "--backend", mariadb.dsn(), "--header-timeout", "1", "--body-timeout", "2"
    )
    host = f"127.0.0.1:{gw.port}"
    cases = [
        (b"", get_db("SELECT 1", host), 1.0),
        (
            f"POST /db HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
            b"1\r\nx\r\n" * 100,
            2.0,
        ),
    ]
    for start, trickle, limit in cases:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(start)
            started = time.monotonic()
            answer = b""
            step = 1 if not start else 6
            every = 0.2 if not start else 0.3
            for i in range(0, len(trickle), step):
                try:
                    sock.sendall(trickle[i : i + step])
                except OSError:
                    break
                sock.settimeout(every)
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
                break
            took = time.monotonic() - started
            sock.settimeout(10)
            while answer.count(b"}") == 0:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
            assert b"Connection: close" in answer and b'"ERROR"' in answer
            assert limit - 0.1 <= took <= limit + 3.0, took
