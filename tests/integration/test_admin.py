"""Monitoring and admin against a real MariaDB over real ports: /stats and friends, /metrics,
/health, /ready, the admin listener, the access log, and a /shutdown that drains."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Gateway, MariaDB, Reply, free_port


@pytest.fixture
def fresh(mariadb: MariaDB, gateway_factory: Any) -> Gateway:
    """A gateway of its own, so its counters start from zero."""
    mariadb.sql("CREATE TABLE IF NOT EXISTS test.hits (n INT)")
    return gateway_factory("--backend", mariadb.dsn(), "--stats-bucket-seconds", "1")  # type: ignore[no-any-return]


def stats(gw: Gateway, path: str = "/stats") -> Any:
    reply = gw.get(path)
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"] == "application/json"
    return reply.json()


def test_fields_follow_known_traffic(fresh: Gateway) -> None:
    """After 50 requests, 3 failing: totals, the log of 50 with statuses, the 3 newest errors."""
    before = stats(fresh)
    statuses = []
    for i in range(50):
        if i in (10, 30):
            reply = fresh.db({"SQL": f"SELECT * FROM missing_{i}"})
        elif i == 45:
            reply = fresh.get("/db?" + "[1,2]")
        elif i % 2:
            reply = fresh.db({"SQL": "INSERT INTO hits VALUES (1)"})
        else:
            reply = fresh.db({"SQL": "SELECT COUNT(*) FROM hits; SELECT 1"})
        statuses.append(reply.status)
    after = stats(fresh)
    assert after["total_requests"] - before["total_requests"] == 50
    assert after["sql_errors"] - before["sql_errors"] == 2
    assert after["gateway_errors"] == {"400": 1}
    assert after["statements"]["write"] == 24 and after["statements"]["read"] == 2 * 23 + 2
    db1 = after["backends"]["db1"]
    assert db1["queries"] == 49 and db1["sql_errors"] == 2 and db1["state"] == "up"
    assert db1["pool"]["max"] == 8 and db1["latency_ms"]["count"] == 49
    assert after["latency_ms"]["db"]["count"] == 50
    assert 0 < after["latency_ms"]["db"]["p50"] <= after["latency_ms"]["db"]["max"]
    assert set(after) >= {"current_time", "hits", "slices", "start_time", "total_requests", "qps"}
    assert list(after)[:5] == ["current_time", "hits", "slices", "start_time", "total_requests"]

    log = stats(fresh, "/stats/log")
    assert [entry["response_code"] for entry in log[-50:]] == statuses
    assert statuses.count(200) == 49 and statuses[45] == 400
    entry = log[-1]
    assert list(entry) == [
        "bytes_sent",
        "client_ip",
        "request",
        "request_time",
        "response_code",
        "time_toservice",
    ]
    assert entry["client_ip"] == "127.0.0.1" and entry["bytes_sent"] > 0
    assert entry["request"].startswith('GET /db?{"SQL": ') and entry["request"].endswith("HTTP/1.1")
    assert 0 < entry["time_toservice"] < 10_000_000
    assert abs(entry["request_time"] - time.time()) < 60

    errors = stats(fresh, "/stats/errors")
    assert stats(fresh, "/stats/error") == errors
    newest = errors[-3:]
    assert list(newest[0]) == ["client_ip", "error", "request", "request_time"]
    assert "missing_10" in newest[0]["error"] and "1146" in newest[0]["error"]
    assert "missing_30" in newest[1]["error"]
    assert "JSON object" in newest[2]["error"] and "[1,2]" in newest[2]["request"]


def test_ring_buckets_and_rates(fresh: Gateway) -> None:
    """hits/slices fill closed buckets (open one left out); qps reflects recent traffic."""
    for _ in range(20):
        fresh.db({"SQL": "SELECT 1"})
    time.sleep(2.2)
    snapshot = stats(fresh)
    assert sum(snapshot["hits"]) == 20 == snapshot["total_requests"]
    assert snapshot["slices"] == sorted(snapshot["slices"])
    assert all(b - a == 1 for a, b in zip(snapshot["slices"], snapshot["slices"][1:]))
    assert snapshot["slices"][-1] <= snapshot["current_time"] - 1
    assert snapshot["qps"]["60s"] == pytest.approx(20 / 60, abs=0.01)
    assert snapshot["start_time"] <= snapshot["slices"][0]


def test_metrics_parse_and_match_stats(fresh: Gateway) -> None:
    """/metrics is Prometheus text that prometheus_client parses, with the /stats figures."""
    for _ in range(5):
        fresh.db({"SQL": "SELECT 1"})
    fresh.db({"SQL": "SELEC"})
    reply = fresh.get("/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("dbslayer_db_requests_total", ())] == 6
    assert samples[("dbslayer_sql_errors_total", ())] == 1
    assert samples[("dbslayer_backend_up", (("backend", "db1"),))] == 1
    assert samples[("dbslayer_backend_queries_total", (("backend", "db1"),))] == 6
    count = samples[("dbslayer_request_duration_seconds_count", (("endpoint", "db"),))]
    inf = samples[
        ("dbslayer_request_duration_seconds_bucket", (("endpoint", "db"), ("le", "+Inf")))
    ]
    assert count == inf == 6


def test_health_and_ready(fresh: Gateway, gateway_factory: Any) -> None:
    """/health answers while the process lives; /ready is 503 with Retry-After without a backend."""
    assert fresh.get("/health").json()["status"] == "ok"
    ready = fresh.get("/ready")
    assert ready.status == 200 and ready.json() == {"ready": True, "backends": {"db1": "up"}}
    dead = gateway_factory(
        "--backend", f"mysql://root@127.0.0.1:{free_port()}/x?name=gone", "--connect-timeout", "1"
    )
    assert dead.db({"SQL": "SELECT 1"}).status == 503  # a failed connect marks it down at once
    started = time.monotonic()
    not_ready = dead.get("/ready")
    assert time.monotonic() - started < 5
    assert not_ready.status == 503 and not_ready.headers["Retry-After"] == "1"
    assert not_ready.json() == {"ready": False, "backends": {"gone": "down"}}
    assert dead.get("/health").status == 200
    assert stats(dead)["backends"]["gone"]["state"] == "down"


def test_secrets_never_shown(mariadb: MariaDB, gateway_factory: Any, tmp_path: Path) -> None:
    """A password in SQL or a token in the URL never appears in stats, journals, metrics or logs."""
    access = tmp_path / "access.log"
    gw = gateway_factory("--backend", mariadb.dsn(), "--access-log", str(access))
    gw.db({"SQL": "CREATE USER IF NOT EXISTS 'u1'@'localhost' IDENTIFIED BY 'hunter2'"})
    gw.db({"SQL": "ALTER USER 'nobody'@'nowhere' IDENTIFIED BY 'hunter2'"})  # fails: an error entry
    gw.get("/db?token=hunter2")
    seen = [gw.get(path).body for path in ("/stats", "/stats/log", "/stats/errors", "/metrics")]
    assert all(b"hunter2" not in body for body in seen)
    log = stats(gw, "/stats/log")
    assert any("CREATE USER … [redacted]" in entry["request"] for entry in log), log
    gw.stop()
    text = access.read_text()
    assert "hunter2" not in text and "hunter2" not in gw.output()
    assert "CREATE USER … [redacted]" in text and "ALTER USER … [redacted]" in text


def test_access_log_lines(mariadb: MariaDB, gateway_factory: Any, tmp_path: Path) -> None:
    """--access-log writes one common-log-format line per request with microseconds to serve."""
    access = tmp_path / "access.log"
    gw = gateway_factory("--backend", mariadb.dsn(), "--access-log", str(access))
    gw.db({"SQL": "SELECT 1"})
    gw.get("/nowhere")
    lines = access.read_text().splitlines()
    assert len(lines) == 2
    pattern = (
        r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(.+)" (\d{3}) (\d+) (\d+)'
    )
    first, second = (re.fullmatch(pattern, line) for line in lines)
    assert first and first.group(1).startswith("GET /db?") and first.group(2) == "200"
    assert second and second.group(1) == "GET /nowhere HTTP/1.1" and second.group(2) == "404"


def test_admin_listener(mariadb: MariaDB, gateway_factory: Any) -> None:
    """--admin-port serves the admin routes; with admin_on_main_port false the main port has none."""
    admin_port = free_port()
    gw = gateway_factory(
        "--backend", mariadb.dsn(), "--admin-port", str(admin_port), "--admin-on-main-port", "false"
    )
    admin = Gateway(gw.dir)
    admin.port, admin.url = admin_port, f"http://127.0.0.1:{admin_port}"
    gw.db({"SQL": "SELECT 1"})
    assert admin.get("/stats").json()["total_requests"] == 1
    assert admin.get("/metrics").status == 200
    assert gw.get("/stats").status == 404 and gw.get("/metrics").status == 404
    assert admin.db({"SQL": "SELECT 1"}).status == 404
    both = gateway_factory("--backend", mariadb.dsn(), "--admin-port", str(free_port()))
    assert both.get("/stats").status == 200


def test_shutdown_refuses_forwarded_headers(mariadb: MariaDB, gateway_factory: Any) -> None:
    """From loopback /shutdown carrying a proxy's X-Forwarded-For (whatever it says) is a 403:
    a proxy on this host forwards other hosts' requests; without it the process exits 0."""
    gw = gateway_factory("--backend", mariadb.dsn())
    for forwarded in ("203.0.113.9", "127.0.0.1"):
        reply = gw.get("/shutdown", headers={"X-Forwarded-For": forwarded})
        assert reply.status == 403 and "proxy" in reply.json()["ERROR"]
    reply = gw.get("/shutdown")
    assert reply.status == 200 and reply.json()["shutting_down"] is True
    assert gw.proc is not None and gw.proc.wait(20) == 0


def test_shutdown_drains_a_slow_query(mariadb: MariaDB, gateway_factory: Any) -> None:
    """A shutdown during SELECT SLEEP(2): that client gets its full answer, new requests on an
    open connection get 503, and the process exits 0."""
    gw = gateway_factory("--backend", mariadb.dsn())
    keep = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    keep.request("GET", "/db?%7B%22SQL%22:%22SELECT%201%22%7D")
    assert keep.getresponse().read()
    slow: list[Reply] = []
    worker = threading.Thread(target=lambda: slow.append(gw.db({"SQL": "SELECT SLEEP(2) AS s"})))
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    answer = gw.get("/shutdown")
    assert answer.status == 200 and answer.json()["in_flight"] == 1
    assert time.monotonic() - started < 1
    keep.request("GET", "/db?%7B%22SQL%22:%22SELECT%201%22%7D")
    refused = keep.getresponse()
    assert refused.status == 503 and "shutting down" in json.loads(refused.read())["ERROR"]
    worker.join(10)
    assert slow[0].status == 200 and slow[0].json()["RESULT"]["ROWS"] == [[0]]
    assert gw.proc is not None and gw.proc.wait(20) == 0


def test_sigterm_drains_a_slow_query(mariadb: MariaDB, gateway_factory: Any) -> None:
    """SIGTERM drains like /shutdown: the slow query's client gets its answer, exit status 0."""
    gw = gateway_factory("--backend", mariadb.dsn())
    slow: list[Reply] = []
    worker = threading.Thread(target=lambda: slow.append(gw.db({"SQL": "SELECT SLEEP(1.5) AS s"})))
    worker.start()
    time.sleep(0.5)
    assert gw.proc is not None
    gw.proc.terminate()
    worker.join(10)
    assert slow[0].status == 200 and slow[0].json()["RESULT"]["ROWS"] == [[0]]
    assert gw.proc.wait(20) == 0


def _netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if not shutil.which("ip"):
        return "needs the ip command (apt-get install iproute2)"
    return None


@pytest.fixture
def netns() -> Any:
    """A network namespace joined to this one by a veth pair: (namespace, our address)."""
    reason = _netns_reason()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    ns, here, there = f"dbs{tag}", f"dbsa{tag}", f"dbsb{tag}"
    subnet = 100 + int(tag[:2], 16) % 100
    ours, theirs = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    commands = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
        ["ip", "link", "set", there, "netns", ns],
        ["ip", "addr", "add", f"{ours}/24", "dev", here],
        ["ip", "link", "set", here, "up"],
        ["ip", "-n", ns, "addr", "add", f"{theirs}/24", "dev", there],
        ["ip", "-n", ns, "link", "set", there, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]
    try:
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                pytest.skip(
                    f"cannot build the namespace ({' '.join(command)}: {result.stderr.strip()})"
                )
        yield ns, ours
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_shutdown_refused_from_another_host(
    mariadb: MariaDB, gateway_factory: Any, netns: Any
) -> None:
    """/shutdown from a non-loopback peer (a real one, in a network namespace) is a 403, even
    with X-Forwarded-For: 127.0.0.1; the gateway keeps serving."""
    ns, ours = netns
    gw = gateway_factory("--backend", mariadb.dsn(), host=ours)
    script = (
        "import urllib.request, urllib.error, sys\n"
        f"req = urllib.request.Request('http://{ours}:{gw.port}/shutdown', "
        "headers={'X-Forwarded-For': '127.0.0.1', 'X-Real-IP': '127.0.0.1'})\n"
        "try:\n    r = urllib.request.urlopen(req, timeout=10); print(r.status, r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    status, _, body = result.stdout.strip().partition(" ")
    assert status == "403", result
    assert "loopback" in json.loads(body)["ERROR"]
    time.sleep(0.5)
    assert gw.proc is not None and gw.proc.poll() is None
    assert gw.db({"SQL": "SELECT 1"}).status == 200
    assert "not a loopback address" in gw.output()
