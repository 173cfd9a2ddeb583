"""A real Galera cluster for the tests: three ``mariadbd`` nodes (galera-4), each in a network
namespace of its own, so that a test can cut one node off from the others while the gateway
still reaches it.

Why namespaces: a node that is partitioned from its peers but still answers ``SELECT 1`` is the
hostile case of ``--mode galera`` (the gateway must follow the server's ``wsrep_cluster_status``,
not the reachability of its port). On loopback every node reaches every other one, and a
firewall rule would touch the machine's own tables. Here each node has two links:

- a *client* veth pair to the root namespace: the gateway and the test connect to
  ``10.<slot>.<i>.2:3306`` (the root end is ``.1``);
- a *cluster* veth pair to a bridge that lives in a namespace of its own, so nothing in the root
  namespace sees cluster traffic. :meth:`GaleraCluster.partition` sets the node's cluster link
  down, :meth:`GaleraCluster.heal` sets it up again.

Root only (``ip netns``): :func:`unavailable` says why a cluster cannot be built here, and the
tests skip with that reason. Every name carries the test process's pid and a slot (the second
octet of the client networks, the lowest one free in the root namespace, taken under a file
lock), so parallel pytest workers, and two clusters of one process, never collide; namespaces
left by a run that crashed (its pid is gone) are removed, their servers killed, before a slot is
taken.

Start-up (about 12 s here): one ``mariadb-install-db`` is copied to every node, node 0 bootstraps
the cluster (``--wsrep-new-cluster``) and the others join it by state transfer (rsync SST:
``mariabackup`` is not installed by default, and rsync of a fresh datadir takes a second or two;
see :data:`RSYNC_WRAPPER`). A node restarted after kill -9 first recovers its position from
InnoDB, so it rejoins by IST. Group communication timeouts are short (:data:`PROVIDER_OPTIONS`):
a node that is killed or cut off is out of the primary component within about 2.5 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers import _which, _which_or_none, client_command

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
CLIENT_PORT = 3306
#: Group communication tuned for tests: a silent peer is suspected after 1.5 s and evicted at
#: the latest after 3 s (defaults: 5 s and 15 s), keepalives and checks often enough for those
#: timeouts to be observed, a small gcache (an IST after a restart needs only the writesets of
#: the last seconds). Galera wants keepalive_period <= inactive_check_period <=
#: suspect_timeout < inactive_timeout and install_timeout <= inactive_timeout.
PROVIDER_OPTIONS = ";".join(
    [
        "evs.keepalive_period=PT0.3S",
        "evs.inactive_check_period=PT0.5S",
        "evs.suspect_timeout=PT1.5S",
        "evs.inactive_timeout=PT3S",
        "evs.install_timeout=PT3S",
        "evs.join_retrans_period=PT0.5S",
        "gmcast.peer_timeout=PT2S",
        "pc.wait_prim_timeout=PT10S",
        "gcache.size=32M",
    ]
)
#: rsync SST starts an rsync daemon on the joiner, and an rsync daemon started by root serves its
#: modules as ``nobody``, who may not write into a datadir under the tests' private temporary
#: directory. This wrapper keeps the daemon as root. The server puts ``<basedir>/bin`` first in
#: the SST script's PATH, so the nodes run with ``--basedir`` set to a directory that holds only
#: ``bin/rsync`` (every other path the server needs is compiled in as an absolute path).
RSYNC_WRAPPER = """#!/bin/sh
for arg in "$@"; do
    if [ "$arg" = --daemon ]; then exec {rsync} "$@" --dparam=uid=0 --dparam=gid=0; fi
done
exec {rsync} "$@"
"""
#: The gateway's account (all rights on the test database; PROCESS and REPLICATION CLIENT for
#: status reads) and a read account (SELECT and SHOW VIEW), created on every node.
USER, PASSWORD = "gw", "gw-secret"
READ_USER, READ_PASSWORD = "gwread", "gwread-secret"
DATABASE = "test"
#: Names of this fixture's namespaces: dbg<pid>s<slot>n<i> (nodes) and dbg<pid>s<slot>br.
NAMESPACE = re.compile(r"^dbg(\d+)s(\d+)(?:n\d+|br)$")
SLOTS = range(200, 255)
_LOCK = Path(tempfile.gettempdir()) / "dbslayer-galera-net.lock"
_WSREP_STATUS = (
    "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
    "WHERE VARIABLE_NAME LIKE 'WSREP%'"
)


# -- pure helpers (tests/unit/test_galera_fixture.py) ------------------------------------------


def used_slots(text: str) -> set[int]:
    """Second octets of the 10.x networks named in ``ip -o -4 addr`` / ``ip -4 route`` output."""
    return {int(m) for m in re.findall(r"(?<![\d.])10\.(\d{1,3})\.\d{1,3}\.\d{1,3}", text)}


def pick_slot(taken: set[int]) -> int:
    """The lowest free slot in :data:`SLOTS`."""
    for slot in SLOTS:
        if slot not in taken:
            return slot
    raise RuntimeError(f"no free 10.x address slot in {SLOTS.start}..{SLOTS.stop - 1}")


def stale_namespaces(names: list[str], alive: Any) -> list[str]:
    """This fixture's namespaces among ``names`` whose creating process is gone
    (``alive(pid)`` says whether it runs)."""
    stale = []
    for name in names:
        match = NAMESPACE.match(name)
        if match and not alive(int(match.group(1))):
            stale.append(name)
    return stale


def parse_status(output: str) -> dict[str, str]:
    """``mariadb -N -B`` output of name/value rows as a dict with lower-case names."""
    status = {}
    for line in output.splitlines():
        name, _, value = line.partition("\t")
        if name:
            status[name.lower()] = value
    return status


def is_synced_primary(status: dict[str, str]) -> bool:
    """The node is ready, in the primary component and synced (wsrep_local_state 4)."""
    return (
        status.get("wsrep_ready") == "ON"
        and status.get("wsrep_cluster_status") == "Primary"
        and status.get("wsrep_local_state") == "4"
    )


def recovered_position(log: str) -> str | None:
    """``uuid:seqno`` from the log of ``mariadbd --wsrep-recover`` (None: no usable one)."""
    found = re.findall(r"WSREP: Recovered position: ([0-9a-f-]{36}:-?\d+)", log)
    if not found or found[-1].endswith(":-1"):
        return None
    return str(found[-1])


# -- the shell ---------------------------------------------------------------------------------


def unavailable() -> str | None:
    """None when a cluster can be built here, else a one-line reason to skip."""
    if os.geteuid() != 0:
        return "the Galera cluster fixture needs root (network namespaces)"
    for binary in ("ip", "mariadbd", "mariadb-install-db", "mariadb", "rsync", "wsrep_sst_rsync"):
        if not _which_or_none(binary):
            return f"{binary} not found (apt-get install iproute2 mariadb-server galera-4 rsync)"
    if not Path(PROVIDER).exists():
        return f"{PROVIDER} not found (apt-get install galera-4)"
    probe = f"dbg{os.getpid()}probe"
    made = _ip("netns", "add", probe, check=False)
    _ip("netns", "del", probe, check=False)
    if made.returncode != 0:
        return f"cannot create network namespaces: {made.stderr.strip()}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_which("ip"), *args], capture_output=True, text=True, timeout=20, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Remove the namespaces of clusters whose test process is gone (a crashed run): kill the
    servers left in them (by pid, as ``ip netns pids`` lists them), then delete them."""
    names = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines()]
    stale = stale_namespaces([n for n in names if n], _alive)
    for name in stale:
        _kill_namespace_processes(name)
        _ip("netns", "del", name, check=False)
    # The root ends of their client links can outlive the namespaces (seen here after a
    # kill -9 of the test process): the slot stays taken until they are deleted too.
    slots = {int(m.group(2)) for m in map(NAMESPACE.match, stale) if m}
    links = _ip("-o", "link", "show", check=False).stdout
    for slot in slots:
        for link in set(re.findall(rf"\b(dbgs{slot}c\d+)@", links)):
            _ip("link", "del", link, check=False)
    return stale


def _kill_namespace_processes(namespace: str) -> None:
    for pid in _ip("netns", "pids", namespace, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


class GaleraNode:
    """One node: its namespace, addresses, directory and ``mariadbd`` process."""

    def __init__(self, cluster: GaleraCluster, index: int) -> None:
        self.index = index
        self.name = f"g{index}"  # also its wsrep_node_name and its backend name in dsn()
        self.netns = f"{cluster.prefix}n{index}"
        self.root_link = f"dbgs{cluster.slot}c{index}"  # (interface names: 15 bytes at most)
        self.root_address = f"10.{cluster.slot}.{index}.1"
        self.client_address = f"10.{cluster.slot}.{index}.2"
        self.cluster_address = f"10.{cluster.slot}.100.{index + 1}"  # (inside namespaces only)
        self.dir = cluster.dir / self.name
        self.data = self.dir / "data"
        self.socket = str(self.dir / "sock")
        self.log = self.dir / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.partitioned = False

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log.exists():
            return f"[{self.name}: no log]"
        return f"[{self.name} {self.log}]\n" + self.log.read_text(errors="replace")[-chars:]


class GaleraCluster:
    """A Galera cluster of ``size`` nodes in network namespaces (see the module docstring).

    :meth:`start` returns when every node is synced in one primary component, with the
    :data:`DATABASE` database and the accounts :data:`USER` and :data:`READ_USER` in place."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.dir = directory
        self.size = size
        self.slot = 0
        self.prefix = ""
        self.bridge_netns = ""
        self.nodes: list[GaleraNode] = []

    # -- life cycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> GaleraCluster:
        try:
            self._make_network()
            self._make_datadirs()
            self._launch(0, bootstrap=True)
            self.wait_synced(1, timeout)
            for i in range(1, self.size):
                self._launch(i)  # (they join one after the other: a donor serves one SST)
            self.wait_synced(self.size, timeout)
            self.sql(
                0,
                f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4;"
                f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';"
                f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';"
                f"GRANT PROCESS, REPLICATION CLIENT ON *.* TO '{USER}'@'%';"
                f"CREATE USER '{READ_USER}'@'%' IDENTIFIED BY '{READ_PASSWORD}';"
                f"GRANT SELECT, SHOW VIEW ON {DATABASE}.* TO '{READ_USER}'@'%';",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _make_network(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # (released when the file closes)
            remove_stale_namespaces()
            seen = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show").stdout
            self.slot = pick_slot(used_slots(seen))
            self.prefix = f"dbg{os.getpid()}s{self.slot}"
            self.bridge_netns = f"{self.prefix}br"
            self.nodes = [GaleraNode(self, i) for i in range(self.size)]
            bridge = ["-n", self.bridge_netns]
            _ip("netns", "add", self.bridge_netns)
            _ip(*bridge, "link", "add", "br0", "type", "bridge")
            _ip(*bridge, "link", "set", "br0", "up")
            for node in self.nodes:
                inside = ["-n", node.netns]
                _ip("netns", "add", node.netns)
                _ip(*inside, "link", "set", "lo", "up")
                # the client link: root namespace <-> node
                veth = ["type", "veth", "peer", "name"]
                _ip("link", "add", node.root_link, *veth, "client", "netns", node.netns)
                _ip("link", "set", node.root_link, "up")
                _ip("addr", "add", f"{node.root_address}/24", "dev", node.root_link)
                _ip(*inside, "addr", "add", f"{node.client_address}/24", "dev", "client")
                _ip(*inside, "link", "set", "client", "up")
                # the cluster link: node <-> bridge
                port = f"n{node.index}"
                _ip(*bridge, "link", "add", port, *veth, "cluster", "netns", node.netns)
                _ip(*bridge, "link", "set", port, "master", "br0")
                _ip(*bridge, "link", "set", port, "up")
                _ip(*inside, "addr", "add", f"{node.cluster_address}/24", "dev", "cluster")
                _ip(*inside, "link", "set", "cluster", "up")

    def _make_datadirs(self) -> None:
        template = self.dir / "template"
        subprocess.run(
            [
                _which("mariadb-install-db"),
                "--no-defaults",
                "--user=root",
                f"--datadir={template}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--innodb-log-file-size=16M",  # (the same as the nodes': less to copy by SST)
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        wrapper = self.dir / "base" / "bin" / "rsync"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(RSYNC_WRAPPER.format(rsync=_which("rsync")))
        wrapper.chmod(0o755)
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(template, node.data)

    def _command(self, node: GaleraNode, bootstrap: bool = False) -> list[str]:
        peers = ",".join(n.cluster_address for n in self.nodes)
        return [
            _which("ip"),
            "netns",
            "exec",
            node.netns,
            _which("mariadbd"),
            "--no-defaults",
            "--user=root",
            f"--basedir={self.dir / 'base'}",
            f"--datadir={node.data}",
            f"--socket={node.socket}",
            f"--port={CLIENT_PORT}",
            "--bind-address=0.0.0.0",  # (inside its namespace: the client and cluster links)
            f"--pid-file={node.dir / 'pid'}",
            f"--log-error={node.log}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=300",
            "--character-set-server=utf8mb4",
            # GTIDs that are the same on every node (read-your-writes by GTID in galera mode)
            "--log-bin=binlog",
            "--log-slave-updates=ON",
            f"--server-id={node.index + 1}",
            "--wsrep-gtid-mode=ON",
            "--wsrep-gtid-domain-id=1",
            f"--gtid-domain-id={10 + node.index}",
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-name={self.prefix}",
            f"--wsrep-cluster-address=gcomm://{peers}",
            f"--wsrep-node-address={node.cluster_address}",
            f"--wsrep-node-name={node.name}",
            f"--wsrep-provider-options={PROVIDER_OPTIONS}",
            "--wsrep-sst-method=rsync",
            "--wsrep-slave-threads=2",
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            *(["--wsrep-new-cluster"] if bootstrap else []),
        ]

    def _launch(self, i: int, bootstrap: bool = False, start_position: str | None = None) -> None:
        node = self.nodes[i]
        command = self._command(node, bootstrap)
        if start_position:
            command.append(f"--wsrep-start-position={start_position}")
        with open(node.dir / "stdout.log", "ab") as out:
            node.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Stop every node (politely, then -9) and remove the namespaces and links."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(15)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(10)
                node.proc = None
        for node in self.nodes:
            _kill_namespace_processes(node.netns)  # (an SST script or rsync daemon left over)
            _ip("netns", "del", node.netns, check=False)
            _ip("link", "del", node.root_link, check=False)
        if self.bridge_netns:
            _ip("netns", "del", self.bridge_netns, check=False)

    # -- faults ----------------------------------------------------------------------------------

    def kill(self, i: int) -> None:
        """kill -9 of node i's mariadbd: it leaves without a word to its peers."""
        node = self.nodes[i]
        if node.proc is not None:
            node.proc.kill()
            node.proc.wait(10)
            node.proc = None

    def restart(self, i: int) -> None:
        """Start node i again (after :meth:`kill`); it rejoins by IST (or SST when no donor
        still has the writesets it missed). Does not wait for it to be synced.

        After a kill -9 the node's ``grastate.dat`` says seqno -1, and the server alone would
        ask for a full SST. As ``galera_recovery`` does under systemd, the position is first
        read from InnoDB (``--wsrep-recover``) and passed as ``--wsrep-start-position``."""
        node = self.nodes[i]
        if node.proc is not None and node.proc.poll() is None:
            raise RuntimeError(f"{node.name} is still running")
        log = node.dir / "recover.log"
        log.unlink(missing_ok=True)
        subprocess.run(
            [*self._command(node), "--wsrep-recover", f"--log-error={log}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        text = log.read_text(errors="replace") if log.exists() else ""
        self._launch(i, start_position=recovered_position(text))

    def partition(self, i: int) -> None:
        """Cut node i off from its peers (cluster link down); its client link stays up."""
        _ip("-n", self.nodes[i].netns, "link", "set", "cluster", "down")
        self.nodes[i].partitioned = True

    def heal(self, i: int) -> None:
        """Undo :meth:`partition`."""
        _ip("-n", self.nodes[i].netns, "link", "set", "cluster", "up")
        self.nodes[i].partitioned = False

    def set_weight(self, i: int, weight: int) -> None:
        """Node i's quorum weight (``pc.weight``, 1 by default). A component keeps the quorum
        when it holds more than half the weight of the last primary component: with the
        survivor of a kill weighted 2, it stays primary alone when its last peer is cut off."""
        self.sql(i, f"SET GLOBAL wsrep_provider_options = 'pc.weight={int(weight)}'")

    # -- looking at it ---------------------------------------------------------------------------

    def sql(self, i: int, statements: str, database: str = "", timeout: float = 30) -> str:
        """Run SQL on node i as root over its socket (a socket works while it is cut off);
        return the output (tab-separated, no headers). Raises RuntimeError on an error."""
        node = self.nodes[i]
        args = client_command(node.socket, database)
        out = subprocess.run(
            args, input=statements.encode(), capture_output=True, timeout=timeout, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"{node.name}: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout.decode()

    def status(self, i: int) -> dict[str, str]:
        """Node i's ``wsrep_%`` status variables (lower-case names); {} when it is down."""
        try:
            return parse_status(self.sql(i, _WSREP_STATUS, timeout=5))
        except (RuntimeError, subprocess.TimeoutExpired):
            return {}

    def wait_synced(self, count: int, timeout: float = 60) -> list[int]:
        """Wait until ``count`` nodes are synced in one primary component of ``count`` nodes;
        return their indexes."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = {i: self.status(i) for i in range(self.size)}
            good = [i for i, s in statuses.items() if is_synced_primary(s)]
            if len(good) >= count and {statuses[i].get("wsrep_cluster_size") for i in good} == {
                str(count)
            }:
                return good
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"{node.name} exited\n{self.logs()}")
            if time.monotonic() > deadline:
                state = {
                    self.nodes[i].name: (
                        s.get("wsrep_cluster_status"),
                        s.get("wsrep_local_state_comment"),
                        s.get("wsrep_cluster_size"),
                    )
                    for i, s in statuses.items()
                }
                raise RuntimeError(
                    f"{count} synced nodes not reached within {timeout} s: {state}\n{self.logs()}"
                )
            time.sleep(0.1)

    def dsn(
        self,
        i: int,
        database: str = DATABASE,
        user: str = USER,
        password: str = PASSWORD,
        **query: Any,
    ) -> str:
        """A gateway DSN for node i, named like the node (``g0``...: the answers' SERVER);
        ``query`` adds DSN parameters (``read_user=...``)."""
        node = self.nodes[i]
        params = "&".join(f"{k}={v}" for k, v in {"name": node.name, **query}.items())
        return f"mysql://{user}:{password}@{node.client_address}:{CLIENT_PORT}/{database}?{params}"

    def logs(self, chars: int = 2000) -> str:
        """The end of every node's error log, for failure messages."""
        return "\n".join(node.log_tail(chars) for node in self.nodes)


@contextlib.contextmanager
def galera_cluster(directory: Path, size: int = 3) -> Iterator[GaleraCluster]:
    """A started cluster, stopped and removed afterwards. For a module-scoped fixture::

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        if reason := tests.galera.unavailable():
            pytest.skip(reason)
        with galera_cluster(tmp_path_factory.mktemp("galera")) as cluster:
            yield cluster
    """
    cluster = GaleraCluster(directory, size)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
