"""``make bench``: the gateway against the database it fronts, measured in one run.

It starts its own MariaDB (as the tests do), loads the reference table (``users``: 10,000 rows,
every 1,000th email NULL), starts the gateway as a user would (``dbslayer serve``, default
workers), then for each transport (TCP to 127.0.0.1, then the UNIX socket) and each case
measures:

- the gateway with ``wrk`` (requests/s and latency percentiles), keep-alive connections;
- the database directly with ``mysqlslap`` at the same concurrency (queries/s, as the
  reference figures were taken), and ``sysbench`` for the direct latency percentiles;
- beside each figure, the CPU time per request of each party: the gateway's processes (master
  and workers), ``mariadbd``, and the load generator (``wrk`` or ``mysqlslap``), read from
  ``/proc`` and from the load generator's rusage over that run alone.

The gateway and the direct client reach MariaDB the same way in each run: over TCP to
127.0.0.1, or through its UNIX socket.

It prints a table with the gateway/direct ratios and writes the figures as JSON to
``bench-results.json`` (or the path in ``BENCH_OUT``). Everything shares this machine's cores:
load generator, gateway and database, so a request's whole CPU time sets the throughput.

Settings (environment):

- ``BENCH_SECONDS``: each run's length (default 10);
- ``BENCH_ROUNDS``: interleaved rounds of every run; the table gives the median (default 1);
- ``BENCH_TRANSPORTS``: ``tcp,unix`` (default), or one of them;
- ``BENCH_CASES``: a comma-separated subset of ``point,rows100,c1``;
- ``BENCH_WORKERS``: the gateway's ``--workers`` (default: its own default, one per core);
- ``BENCH_SOURCE``: another checkout to run the gateway from (for before/after figures in one
  sitting, e.g. a ``git worktree`` of an earlier commit);
- ``BENCH_MARIADB_ARGS``: extra ``mariadbd`` options (e.g. ``--thread-handling=pool-of-threads``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import ROOT, Gateway, MariaDB  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "1")))
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench-results.json"))
TRANSPORTS = [t for t in os.environ.get("BENCH_TRANSPORTS", "tcp,unix").split(",") if t]
TICK = os.sysconf("SC_CLK_TCK")

CASES = [
    # key, name, SQL, connections
    ("point", "point query", "SELECT * FROM users WHERE id=42", 32),
    ("rows100", "100 rows", "SELECT * FROM users WHERE id BETWEEN 1 AND 100", 32),
    ("c1", "point query -c1", "SELECT * FROM users WHERE id=42", 1),
]
WANTED = set(filter(None, os.environ.get("BENCH_CASES", "").split(","))) or {c[0] for c in CASES}


def load(db: MariaDB) -> None:
    rows = ",\n".join(
        f"({i}, 'user{i}', {'NULL' if i % 1000 == 0 else repr(f'user{i}@example.com')}, "
        f"'2024-01-01 00:00:00' + INTERVAL {i} MINUTE)"
        for i in range(1, 10_001)
    )
    db.sql(
        "CREATE DATABASE bench; USE bench; CREATE TABLE users (id INT PRIMARY KEY, "
        "name VARCHAR(64), email VARCHAR(128), created DATETIME);"
        f"INSERT INTO users VALUES {rows};"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and, recursively, of its living children."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def run_measured(argv: list[str], watched: dict[str, int]) -> tuple[str, dict[str, float]]:
    """Run a load generator to its end; return its output and each party's CPU seconds.

    The load generator's own CPU comes from the rusage of reaped children, taken around it.
    """
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    cpu["load"] = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return proc.stdout, cpu


def per_request(cpu: dict[str, float], count: float) -> dict[str, float]:
    return {name: round(seconds / count * 1e6, 1) for name, seconds in cpu.items()}


def wrk(url: str, connections: int, watched: dict[str, int]) -> dict[str, Any]:
    out, cpu = run_measured(
        ["wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "--latency", "--timeout", "10s", url],
        watched,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rate": rate,
        "p50_ms": _wrk_latency(out, "50%"),
        "p99_ms": _wrk_latency(out, "99%"),
        "cpu_us": per_request(cpu, count),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


def _wrk_latency(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    assert match, out
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _client_args(db: MariaDB, transport: str) -> list[str]:
    if transport == "unix":
        return [f"--socket={db.socket}"]
    return ["--protocol=tcp", "--host=127.0.0.1", f"--port={db.port}"]


def mysqlslap(
    db: MariaDB,
    transport: str,
    sql: str,
    connections: int,
    rate_guess: float,
    watched: dict[str, int],
) -> dict[str, Any]:
    queries = max(connections * 100, int(rate_guess * SECONDS))
    out, cpu = run_measured(
        [
            "mysqlslap",
            "--no-defaults",
            "-uroot",
            *_client_args(db, transport),
            "--create-schema=bench",
            f"--concurrency={connections}",
            "--iterations=1",
            f"--number-of-queries={queries}",
            f"--query={sql}",
        ],
        watched,
    )
    seconds = float(
        re.search(r"Average number of seconds to run all queries: ([\d.]+)", out).group(1)  # type: ignore[union-attr]
    )
    return {"rate": queries / seconds, "cpu_us": per_request(cpu, queries)}


SYSBENCH_SCRIPT = """
function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
end
function thread_done()
  con:disconnect()
end
function event()
  con:query(os.getenv("BENCH_SQL"))
end
"""


def sysbench(
    db: MariaDB, transport: str, sql: str, connections: int, workdir: Path
) -> dict[str, float] | None:
    if not shutil.which("sysbench"):
        return None
    script = workdir / "query.lua"
    script.write_text(SYSBENCH_SCRIPT)
    where = (
        [f"--mysql-socket={db.socket}"]
        if transport == "unix"
        else ["--mysql-host=127.0.0.1", f"--mysql-port={db.port}"]
    )
    out = subprocess.run(
        [
            "sysbench",
            "--db-driver=mysql",
            "--mysql-user=root",
            *where,
            "--mysql-db=bench",
            f"--threads={connections}",
            f"--time={SECONDS}",
            "--histogram=on",
            "--percentile=99",
            str(script),
            "run",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, BENCH_SQL=sql),
    ).stdout
    histogram = [
        (float(v), int(c))
        for v, c in re.findall(r"^\s+([\d.]+)\s+\|\**\s+(\d+)$", out, re.MULTILINE)
    ]
    if not histogram:
        return None
    return {"p50_ms": _percentile(histogram, 0.50), "p99_ms": _percentile(histogram, 0.99)}


def _percentile(histogram: list[tuple[float, int]], q: float) -> float:
    total = sum(c for _, c in histogram)
    seen = 0
    for value, count in sorted(histogram):
        seen += count
        if seen >= q * total:
            return value
    return histogram[-1][0]


def start_gateway(workdir: Path, db: MariaDB, transport: str) -> Gateway:
    backend = (
        f"mysql://root@localhost/bench?name=bench&unix_socket={db.socket}"
        if transport == "unix"
        else f"mysql://root@127.0.0.1:{db.port}/bench?name=bench"
    )
    source = os.environ.get("BENCH_SOURCE")
    workers = os.environ.get("BENCH_WORKERS")
    gateway = Gateway(
        workdir,
        "--backend",
        backend,
        command=(
            [sys.executable, "-m", "api.cli", "serve", "--port", "{port}"]
            if source
            else [str(Path(sys.executable).parent / "dbslayer"), "serve", "--port", "{port}"]
        ),
        workers=int(workers) if workers else None,
    )
    if source:
        gateway.cwd = Path(source).resolve()
        gateway.env["PYTHONPATH"] = str(gateway.cwd)
    gateway.start()
    time.sleep(1.0)
    return gateway


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, with every round's rate beside it."""
    ordered = sorted(runs, key=lambda r: r["rate"])
    chosen = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        chosen["rates"] = [round(r["rate"]) for r in runs]
    return chosen


def main() -> int:
    for tool in ("wrk", "mysqlslap"):
        if not shutil.which(tool):
            print(
                f"make bench needs {tool}: apt-get install wrk mariadb-client sysbench",
                file=sys.stderr,
            )
            return 1
    workdir = Path(tempfile.mkdtemp(prefix="dbslayer-bench-"))
    db = MariaDB(
        workdir / "db",
        extra=["--innodb-buffer-pool-size=256M", "--max-connections=1000"]
        + os.environ.get("BENCH_MARIADB_ARGS", "").split(),
    )
    (workdir / "db").mkdir()
    db.start()
    assert db.proc is not None
    results: list[dict[str, Any]] = []
    try:
        load(db)
        for transport in TRANSPORTS:
            gateway = start_gateway(workdir, db, transport)
            try:
                assert gateway.proc is not None
                through_watch = {"gateway": gateway.proc.pid, "mariadbd": db.proc.pid}
                direct_watch = {"mariadbd": db.proc.pid}
                for key, name, sql, connections in CASES:
                    if key not in WANTED:
                        continue
                    url = gateway.url + "/db?" + urllib.parse.quote(json.dumps({"SQL": sql}))
                    wrk(url, connections, through_watch)  # warm-up, not counted
                    throughs, directs = [], []
                    for _ in range(ROUNDS):
                        throughs.append(wrk(url, connections, through_watch))
                        directs.append(
                            mysqlslap(
                                db,
                                transport,
                                sql,
                                connections,
                                throughs[-1]["rate"] * 3,
                                direct_watch,
                            )
                        )
                    through, direct = median_run(throughs), median_run(directs)
                    latency = sysbench(db, transport, sql, connections, workdir) or {}
                    results.append(
                        {
                            "case": name,
                            "transport": transport,
                            "sql": sql,
                            "connections": connections,
                            "gateway": through,
                            "direct": {**direct, **latency},
                            "ratio": through["rate"] / direct["rate"],
                        }
                    )
            finally:
                gateway.stop()
        report = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cores": os.cpu_count(),
            "machine": platform.platform(),
            "seconds_per_run": SECONDS,
            "rounds": ROUNDS,
            "source": os.environ.get("BENCH_SOURCE") or str(ROOT),
            "results": results,
        }
        OUT.write_text(json.dumps(report, indent=2) + "\n")
        print_table(report)
        return 0
    finally:
        db.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{report['date']}, {report['cores']} cores, {report['seconds_per_run']} s per run, "
        f"{report['rounds']} round(s) (load generator, gateway and MariaDB on the same cores)\n"
        "CPU is µs per request: gw = the gateway's processes, db = mariadbd, ld = the load "
        "generator (wrk, or mysqlslap for direct)\n"
    )
    header = (
        f"{'case':<16} {'via':<4} {'req/s':>7} {'p50 ms':>6} {'p99 ms':>6} {'gw':>5} {'db':>5} "
        f"{'ld':>4} | {'direct/s':>8} {'p50 ms':>6} {'p99 ms':>6} {'db':>5} {'ld':>4} | {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for r in report["results"]:
        g, d = r["gateway"], r["direct"]
        gc, dc = g["cpu_us"], d["cpu_us"]
        print(
            f"{r['case']:<16} {r['transport']:<4} {g['rate']:>7.0f} {g['p50_ms']:>6.2f} "
            f"{g['p99_ms']:>6.2f} {gc['gateway']:>5.0f} {gc['mariadbd']:>5.0f} {gc['load']:>4.0f} | "
            f"{d['rate']:>8.0f} {d.get('p50_ms', nan):>6.2f} {d.get('p99_ms', nan):>6.2f} "
            f"{dc['mariadbd']:>5.0f} {dc['load']:>4.0f} | {r['ratio']:>5.2f}"
        )
        if g["errors"] or g["socket_errors"]:
            print(
                f"  gateway errors: {g['errors']} non-2xx, socket errors: {g['socket_errors'] or 'none'}"
            )
    print(f"\nfigures written to {OUT}")


if __name__ == "__main__":
    sys.exit(main())
