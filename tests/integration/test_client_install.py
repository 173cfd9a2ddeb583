"""`pip install ./client` into an empty virtualenv installs one distribution, dbslayer-client,
with only the package `dbslayer_client` in it, and its Client and DB-API adapter work there
against a running (demo) gateway, with no server code importable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.servers import ROOT, Gateway

PIP = ["-m", "pip", "--no-input", "--disable-pip-version-check"]

#: Run inside the new virtualenv (cwd: an empty directory, so nothing of the checkout is
#: importable): the client and the DB-API adapter against the gateway at argv[1].
SCRIPT = r"""
import importlib.util, json, sys
import dbslayer_client
from dbslayer_client import Client, SQLError, dbapi

url = sys.argv[1]
out = {"version": dbslayer_client.__version__, "file": dbslayer_client.__file__}
with Client(url) as db:
    results = db.query("SELECT id, name FROM users WHERE id < %s ORDER BY id", [3])
    out["rows"] = [list(row) for row in results.rows]
    out["server"] = results.server
    try:
        db.query("INSERT INTO users (id, name, created) VALUES (1, 'again', '2024-01-01')")
    except SQLError as e:
        out["sql_error"] = [e.error_class, e.backend_kind]
conn = dbapi.connect(url)
cur = conn.cursor()
cur.execute("SELECT COUNT(*) FROM users WHERE id > %(n)s", {"n": 90})
out["count"] = cur.fetchone()[0]
try:
    cur.execute("INSERT INTO users (id, name, created) VALUES (2, 'again', '2024-01-01')")
except dbapi.IntegrityError as e:
    out["integrity"] = e.args[1]
conn.close()
try:
    dbslayer_client.TwistedClient
except ImportError as e:
    out["twisted"] = str(e)
out["importable"] = [
    name for name in ("api", "gateway", "conf", "stats", "twisted", "treq", "MySQLdb")
    if importlib.util.find_spec(name) is not None
]
print(json.dumps(out))
"""


def _run(*args: str | Path, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _distributions(python: Path, cwd: Path) -> dict[str, str]:
    listed = json.loads(_run(python, *PIP, "list", "--format", "json", cwd=cwd))
    return {d["name"].lower(): d["version"] for d in listed}


def test_pip_install_client_into_an_empty_venv(tmp_path: Path, gateway_factory: Any) -> None:
    source = tmp_path / "client"
    shutil.copytree(
        ROOT / "client",
        source,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
    )
    work = tmp_path / "work"
    work.mkdir()
    started = time.monotonic()
    _run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=work)
    python = tmp_path / "venv" / "bin" / "python"
    bare = _distributions(python, work)
    venv_seconds = time.monotonic() - started

    started = time.monotonic()
    _run(python, *PIP, "install", source, cwd=work)
    install_seconds = time.monotonic() - started
    after = _distributions(python, work)
    assert set(after) - set(bare) == {"dbslayer-client"}, after
    assert {k: v for k, v in after.items() if k in bare} == bare  # nothing else changed

    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(_run(python, "-c", purelib, cwd=work).strip()).resolve()
    infos = list(site.glob("dbslayer_client-*.dist-info"))
    assert len(infos) == 1
    (info,) = infos
    record = [line.split(",")[0] for line in (info / "RECORD").read_text().splitlines()]
    tops = {path.split("/")[0] for path in record}
    assert tops == {"dbslayer_client", info.name}, tops  # one package, no api/ or gateway/
    assert "dbslayer_client/py.typed" in record and "dbslayer_client/dbapi.py" in record
    assert (info / "top_level.txt").read_text().split() == ["dbslayer_client"]
    metadata = (info / "METADATA").read_text()
    assert "Requires-Dist: treq" in metadata and 'extra == "twisted"' in metadata
    assert [line for line in metadata.splitlines() if line.startswith("Requires-Dist")] == [
        line
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist") and "extra ==" in line
    ]  # every requirement belongs to the extra: the core needs nothing

    gw: Gateway = gateway_factory()  # the embedded demo
    out = json.loads(_run(python, "-c", SCRIPT, gw.url, cwd=work, timeout=60).splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(site)
    assert (
        f'__version__ = "{out["version"]}"' in (source / "dbslayer_client/_version.py").read_text()
    )
    assert info.name == f"dbslayer_client-{out['version']}.dist-info"
    assert out["rows"] == [[1, "user1"], [2, "user2"]] and out["server"] == "demo"
    assert out["sql_error"] == ["IntegrityError", "sqlite"]
    assert out["count"] == 10 and "UNIQUE" in out["integrity"]
    assert "pip install 'dbslayer-client[twisted]'" in out["twisted"]
    assert out["importable"] == []
    print(f"\nempty venv {venv_seconds:.1f} s, pip install ./client {install_seconds:.1f} s")
