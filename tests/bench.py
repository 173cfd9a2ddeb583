"""``make bench``: the gateway against the database it fronts, measured in one run.

It starts its own MariaDB (as the tests do), loads the reference table (``users``: 10,000 rows,
every 1,000th email NULL), starts the gateway as a user would (``dbslayer serve``, default
workers), then for each case measures:

- the gateway with ``wrk`` (requests/s and latency percentiles), keep-alive connections;
- the database directly with ``mysqlslap`` at the same concurrency (queries/s, as the
  reference figures were taken), and ``sysbench`` for the direct latency percentiles.

Both reach MariaDB the same way, through its UNIX socket (as the reference's ``localhost``
did): a co-located gateway configured for its best case against the database's best case.

It prints a table with the gateway/direct ratios and writes the figures as JSON to
``bench-results.json`` (or the path in ``BENCH_OUT``). ``BENCH_SECONDS`` sets each run's length
(default 10). Everything shares this machine's cores: load generator, gateway and database.
"""

from __future__ import annotations

import json
import os
import platform
import re
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
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench-results.json"))

CASES = [
    # name, SQL, connections, the C original's ratio (for the table)
    ("point query", "SELECT * FROM users WHERE id=42", 32, 0.28),
    ("100 rows", "SELECT * FROM users WHERE id BETWEEN 1 AND 100", 32, 0.36),
    ("point query -c1", "SELECT * FROM users WHERE id=42", 1, None),
]


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


def wrk(url: str, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "--latency", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rate": rate,
        "p50_ms": _wrk_latency(out, "50%"),
        "p99_ms": _wrk_latency(out, "99%"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


def _wrk_latency(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    assert match, out
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def mysqlslap(db: MariaDB, sql: str, connections: int, rate_guess: float) -> float:
    queries = max(connections * 100, int(rate_guess * SECONDS))
    out = subprocess.run(
        [
            "mysqlslap",
            "--no-defaults",
            "-uroot",
            f"--socket={db.socket}",
            "--create-schema=bench",
            f"--concurrency={connections}",
            "--iterations=1",
            f"--number-of-queries={queries}",
            f"--query={sql}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = float(
        re.search(r"Average number of seconds to run all queries: ([\d.]+)", out).group(1)  # type: ignore[union-attr]
    )
    return queries / seconds


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


def sysbench(db: MariaDB, sql: str, connections: int, workdir: Path) -> dict[str, float] | None:
    if not shutil.which("sysbench"):
        return None
    script = workdir / "query.lua"
    script.write_text(SYSBENCH_SCRIPT)
    out = subprocess.run(
        [
            "sysbench",
            "--db-driver=mysql",
            "--mysql-user=root",
            f"--mysql-socket={db.socket}",
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
    rate = re.search(r"queries:\s+\d+\s+\(([\d.]+) per sec", out)
    return {
        "rate": float(rate.group(1)) if rate else 0.0,
        "p50_ms": _percentile(histogram, 0.50),
        "p99_ms": _percentile(histogram, 0.99),
    }


def _percentile(histogram: list[tuple[float, int]], q: float) -> float:
    total = sum(c for _, c in histogram)
    seen = 0
    for value, count in sorted(histogram):
        seen += count
        if seen >= q * total:
            return value
    return histogram[-1][0]


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
    gateway: Gateway | None = None
    try:
        load(db)
        gateway = Gateway(
            workdir,
            "--backend",
            # The same transport as the direct figures: the database's UNIX socket.
            f"mysql://root@localhost/bench?name=bench&unix_socket={db.socket}",
            command=[str(Path(sys.executable).parent / "dbslayer"), "serve", "--port", "{port}"],
            workers=None,
        ).start()
        time.sleep(1.0)
        results: list[dict[str, Any]] = []
        for name, sql, connections, reference in CASES:
            url = gateway.url + "/db?" + urllib.parse.quote(json.dumps({"SQL": sql}))
            through = wrk(url, connections)
            direct_rate = mysqlslap(db, sql, connections, through["rate"] * 3)
            direct_latency = sysbench(db, sql, connections, workdir)
            results.append(
                {
                    "case": name,
                    "sql": sql,
                    "connections": connections,
                    "gateway": through,
                    "direct": {
                        "rate": direct_rate,
                        **(
                            {k: v for k, v in direct_latency.items() if k != "rate"}
                            if direct_latency
                            else {}
                        ),
                    },
                    "ratio": through["rate"] / direct_rate,
                    "reference_ratio": reference,
                }
            )
        report = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cores": os.cpu_count(),
            "machine": platform.platform(),
            "seconds_per_run": SECONDS,
            "results": results,
        }
        OUT.write_text(json.dumps(report, indent=2) + "\n")
        print_table(report)
        return 0
    finally:
        if gateway is not None:
            gateway.stop()
        db.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{report['date']}, {report['cores']} cores, {report['seconds_per_run']} s per run "
        "(load generator, gateway and MariaDB on the same cores)\n"
    )
    header = f"{'case':<17} {'gateway req/s':>13} {'p50 ms':>7} {'p99 ms':>7} | {'direct q/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>6} {'C orig':>6}"
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        g, d = r["gateway"], r["direct"]
        ref = f"{r['reference_ratio']:.2f}" if r["reference_ratio"] else "-"
        print(
            f"{r['case']:<17} {g['rate']:>13.0f} {g['p50_ms']:>7.2f} {g['p99_ms']:>7.2f} | "
            f"{d['rate']:>10.0f} {d.get('p50_ms', float('nan')):>7.2f} {d.get('p99_ms', float('nan')):>7.2f} | "
            f"{r['ratio']:>6.2f} {ref:>6}"
        )
        if g["errors"] or g["socket_errors"]:
            print(
                f"  gateway errors: {g['errors']} non-2xx, socket errors: {g['socket_errors'] or 'none'}"
            )
    print(f"\nfigures written to {OUT}")


if __name__ == "__main__":
    sys.exit(main())
