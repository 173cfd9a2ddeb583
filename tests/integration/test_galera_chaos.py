"""``--mode galera`` under faults, against a real 3-node Galera cluster in network namespaces
(tests/galera.py): a mixed load of reads and unique-key writes while the writer is killed with
-9, the next writer is cut off from its peers (its client link stays up: it still answers
``SELECT 1``), and both come back.

What is asserted, and how it is known:

- Every read is answered (200, no error). Each read proves, from the server itself, that the
  node that ran it was in the primary component at that moment: the statement reads a real
  table (a node outside the primary component refuses it with 1047 before running anything)
  and, in the same statement, the node's own ``wsrep_cluster_status``, ``wsrep_ready``,
  ``wsrep_local_state`` and ``wsrep_node_name`` (information_schema, evaluated while the
  statement runs). The answer must say Primary, ready, synced (or donor, which the gateway is
  configured to read from) and name the node the answer's ``SERVER`` names. A second check
  from outside: a thread samples every node's status over its socket, and no read may have run
  entirely inside a stretch where the samples showed its node outside the primary component.
- Writes insert their own key into a table WITHOUT a unique index on it, so a write applied
  twice shows as a duplicate. After the cluster is whole again, every node is read (causal
  read, ``wsrep_sync_wait``): all nodes hold the same rows, every acknowledged write is there
  once, a write refused with 503 (nothing sent) is absent, and no key is there twice. A 502 ("may
  have been applied") or an SQL error may be present or absent, never twice.
- A new writer (``/stats`` top-level ``writer``) within two health intervals of the writer's
  failure: of the kill, and of the moment the cut-off writer left the primary component.

Quorum: after the kill the two survivors form the primary component; cutting one of them off
leaves one against one, and neither half would have the quorum. The survivor that stays is
given ``pc.weight=2`` first (a real operator's knob), so it keeps the quorum alone, as a
weighted node of a real cluster does. While that node is the only one left it is also the donor
of the state transfers of the two coming back: the gateway runs with ``galera_donor_reads``,
so reads continue on it (writes wait for a synced node: 503, nothing sent).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from conf.settings import MODES
from tests.galera import GaleraCluster, galera_cluster, unavailable
from tests.servers import Gateway, Reply

INTERVAL = 1.0  # health interval of the gateway under test (the default is 2 s)
HEALTH = ["--health-interval", str(INTERVAL), "--health-max-backoff", str(1.5 * INTERVAL)]
READ = (
    "SELECT COUNT(*) AS n, @@wsrep_node_name AS node, "
    + ", ".join(
        f"(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
        f"WHERE VARIABLE_NAME = 'WSREP_{name.upper()}') AS {name}"
        for name in ("cluster_status", "ready", "local_state")
    )
    + " FROM chaos"
)
WRITE = "INSERT INTO chaos (k, node) VALUES (%s, @@wsrep_node_name)"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
    """Three synced nodes with the ``chaos`` table (key NOT unique: duplicates stay visible)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with galera_cluster(tmp_path_factory.mktemp("galera")) as nodes:
        nodes.sql(
            0,
            "CREATE TABLE test.chaos (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "k VARCHAR(64) NOT NULL, node VARCHAR(16) NOT NULL, KEY (k)) ENGINE=InnoDB",
        )
        yield nodes


def test_cluster_partition_and_heal(cluster: GaleraCluster) -> None:
    """The fixture itself: three synced nodes; a node whose cluster link is down leaves the
    primary component (the other two go on as a cluster of two) while it still answers on its
    client link, and refuses a table read (1047); healed, it is back in a cluster of three."""
    assert sorted(cluster.wait_synced(3, timeout=10)) == [0, 1, 2]
    cluster.partition(2)
    deadline = time.monotonic() + 15
    while True:
        cut, others = cluster.status(2), [cluster.status(0), cluster.status(1)]
        if cut.get("wsrep_cluster_status") == "non-Primary" and all(
            s.get("wsrep_cluster_status") == "Primary" and s.get("wsrep_cluster_size") == "2"
            for s in others
        ):
            break
        assert time.monotonic() < deadline, (cut, others, cluster.logs())
        time.sleep(0.1)
    assert cut["wsrep_ready"] == "OFF"
    assert cluster.sql(2, "SELECT 1").strip() == "1"  # (still answers SELECT 1)
    with pytest.raises(RuntimeError, match="1047"):
        cluster.sql(2, "SELECT COUNT(*) FROM test.chaos")
    cluster.heal(2)
    assert sorted(cluster.wait_synced(3, timeout=30)) == [0, 1, 2]


@attrs.define
class Outcome:
    kind: str  # "read" or "write"
    key: str  # the write's key ("" for reads)
    started: float
    ended: float
    status: int
    body: Any  # the parsed JSON answer (None if it was not JSON)


@attrs.define
class Load:
    """Reader and writer threads against the gateway, each request on its own connection."""

    gateway: Gateway
    readers: int = 2
    writers: int = 2
    pause: float = 0.01
    outcomes: list[Outcome] = attrs.field(factory=list)
    stop: threading.Event = attrs.field(factory=threading.Event)
    threads: list[threading.Thread] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def start(self) -> None:
        for i in range(self.readers + self.writers):
            kind = "read" if i < self.readers else "write"
            thread = threading.Thread(target=self._run, args=(kind, i), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self.threads), "a load thread hangs"

    def _run(self, kind: str, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            key = f"w{worker}-{n}-{uuid.uuid4().hex[:8]}" if kind == "write" else ""
            request = {"SQL": READ} if kind == "read" else {"SQL": WRITE, "PARAMS": [key]}
            started = time.monotonic()
            try:
                reply = self.gateway.post("/db", json.dumps(request).encode(), timeout=60)
            except OSError as e:  # (no answer at all: a failure for a read, unknown for a write)
                reply = Reply(0, {}, repr(e).encode())
            try:
                body = reply.json()
            except ValueError:
                body = None
            with self.lock:
                self.outcomes.append(
                    Outcome(kind, key, started, time.monotonic(), reply.status, body)
                )
            n += 1
            time.sleep(self.pause)


@attrs.define
class Watch:
    """Samples every node's wsrep state (over its socket) and the gateway's writer (/stats)."""

    cluster: GaleraCluster
    gateway: Gateway
    nodes: list[tuple[float, int, str]] = attrs.field(factory=list)  # (t, node, cluster_status)
    writers: list[tuple[float, Any]] = attrs.field(factory=list)  # (t, /stats writer)
    stop: threading.Event = attrs.field(factory=threading.Event)
    threads: list[threading.Thread] = attrs.field(factory=list)

    def start(self) -> None:
        for target in (self._nodes, self._writer):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _nodes(self) -> None:
        while not self.stop.is_set():
            for i in range(self.cluster.size):
                state = self.cluster.status(i).get("wsrep_cluster_status", "down")
                self.nodes.append((time.monotonic(), i, state))
            time.sleep(0.05)

    def _writer(self) -> None:
        while not self.stop.is_set():
            self.writers.append((time.monotonic(), writer(self.gateway)))
            time.sleep(0.05)

    def outside_primary(self, node: int) -> list[tuple[float, float]]:
        """Stretches (first, last sample) in which every sample of ``node`` showed it running
        but outside the primary component."""
        stretches: list[tuple[float, float]] = []
        current: list[float] = []
        for t, i, state in self.nodes:
            if i != node:
                continue
            if state not in ("Primary", "down"):
                current.append(t)
                continue
            if current:
                stretches.append((current[0], current[-1]))
            current = []
        if current:
            stretches.append((current[0], current[-1]))
        return stretches

    def first_seen(self, node: int, state: str, after: float) -> float | None:
        for t, i, seen in self.nodes:
            if i == node and seen == state and t >= after:
                return t
        return None

    def writer_since(self, after: float, exclude: set[Any]) -> tuple[float, str] | None:
        """The first writer /stats named at or after ``after`` that is not in ``exclude``."""
        for t, name in self.writers:
            if t >= after and isinstance(name, str) and name not in exclude:
                return t, name
        return None


def writer(gateway: Gateway) -> Any:
    try:
        return gateway.get("/stats", timeout=5).json().get("writer")
    except (OSError, ValueError):
        return "?"


def wait_for(what: str, predicate: Any, timeout: float, detail: Any = None) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; {detail() if detail else ''}")
        time.sleep(0.05)
    return time.monotonic()


def rows_on(cluster: GaleraCluster, i: int) -> Counter[tuple[str, str]]:
    """Every (key, node that ran the insert) on node i, as a causal read (the node has applied
    everything the cluster committed before it)."""
    out = cluster.sql(i, "SET SESSION wsrep_sync_wait = 1; SELECT k, node FROM test.chaos")
    return Counter((k, node) for k, node in (line.split("\t") for line in out.splitlines()))


def backends_up(gateway: Gateway) -> set[str]:
    backends = gateway.get("/stats", timeout=5).json().get("backends", {})
    return {name for name, info in backends.items() if info.get("state") == "up"}


def test_kill_partition_restart_under_load(cluster: GaleraCluster, tmp_path: Path) -> None:
    """kill -9 of the writer, then the next writer cut off from its peers, then both back,
    under reads and unique-key writes: 0 failed reads, each read proven by its own node to have
    run in the primary component, 0 acknowledged writes missing, 0 writes applied twice, a new
    writer within two health intervals of each writer's failure."""
    if "galera" not in MODES:
        pytest.skip("--mode galera is not built yet")
    backends = [arg for i in range(3) for arg in ("--backend", cluster.dsn(i))]
    gw = Gateway(
        tmp_path,
        "--mode",
        "galera",
        *backends,
        *HEALTH,
        "--galera-donor-reads",
        "true",
        "--connect-timeout",
        "2",
    ).start()
    names = [node.name for node in cluster.nodes]
    index = {name: i for i, name in enumerate(names)}
    load = Load(gw)
    watch = Watch(cluster, gw)
    try:
        wait_for("all nodes up", lambda: backends_up(gw) == set(names), 15, gw.output)
        wait_for("a writer", lambda: writer(gw) in names, 10)
        watch.start()
        load.start()
        time.sleep(2)

        # 1. kill -9 of the writer
        first = writer(gw)
        cluster.kill(index[first])
        killed_at = time.monotonic()
        wait_for("a new writer", lambda: writer(gw) in set(names) - {first}, 15, gw.output)
        second = writer(gw)
        survivor = ({0, 1, 2} - {index[first], index[second]}).pop()
        cluster.wait_synced(2, timeout=15)  # (the killed node is out of the cluster view)
        cluster.set_weight(survivor, 2)  # (it keeps the quorum alone: see the docstring)
        time.sleep(1)

        # 2. the new writer cut off from its peers (its client link stays up)
        cluster.partition(index[second])
        cut_at = time.monotonic()
        wait_for("the survivor as writer", lambda: writer(gw) == names[survivor], 20, gw.output)
        time.sleep(1)

        # 3. both back: the cut-off node first, then the killed one
        cluster.heal(index[second])
        wait_for(
            "the healed node synced",
            lambda: cluster.status(index[second]).get("wsrep_local_state") == "4",
            30,
            cluster.logs,
        )
        cluster.restart(index[first])
        cluster.wait_synced(3, timeout=40)
        wait_for("all nodes up again", lambda: backends_up(gw) == set(names), 15, gw.output)
        time.sleep(1.5)
    finally:
        load.finish()
        watch.finish()
        gw.stop()

    reads = [o for o in load.outcomes if o.kind == "read"]
    writes = [o for o in load.outcomes if o.kind == "write"]
    assert len(reads) > 50 and len(writes) > 50, (len(reads), len(writes))

    # reads: all answered, each by a node that says it was in the primary component
    outside = {i: watch.outside_primary(i) for i in range(3)}
    answered_by: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for o in reads:
        assert o.status == 200 and isinstance(o.body, dict), (o, gw.output()[-3000:])
        assert "ERROR" not in o.body and "MYSQL_ERRNO" not in o.body, o
        [[_, node, cluster_status, ready, local_state]] = o.body["RESULT"]["ROWS"]
        assert o.body["SERVER"] == node, o  # (SERVER names the node that ran it)
        assert (cluster_status, ready) == ("Primary", "ON"), o
        states[local_state] += 1  # (4 synced; 2 donor and 3 joined: a donor catching up)
        for first_sample, last_sample in outside[index[node]]:
            assert not (first_sample <= o.started and o.ended <= last_sample), (o, outside)
        answered_by[node] += 1

    # writes: compare the answers with what every node holds once the cluster is whole
    held = [rows_on(cluster, i) for i in range(3)]
    assert held[0] == held[1] == held[2], "the nodes disagree after the cluster is whole"
    rows: Counter[str] = Counter()
    ran_on = {}
    for (k, node), n in held[0].items():
        rows[k] += n
        ran_on[k] = node
    twice = {k: n for k, n in rows.items() if n > 1}
    assert not twice, f"writes applied twice: {twice}"
    kinds: Counter[str] = Counter()
    unacknowledged_present = 0  # (502 or SQL error, yet applied: allowed, never twice)
    for o in writes:
        body = o.body if isinstance(o.body, dict) else {}
        if o.status == 200 and "RESULT" in body and "MYSQL_ERRNO" not in body:
            kinds["acknowledged"] += 1
            assert body["RESULT"]["AFFECTED_ROWS"] == 1, o
            assert rows[o.key] == 1, f"acknowledged write missing: {o}"
            assert ran_on[o.key] == body["SERVER"], (o, ran_on[o.key])
        elif o.status == 200 and "MYSQL_ERRNO" in body:
            kinds[f"sql error {body['MYSQL_ERRNO']}"] += 1  # (refused by the server)
            unacknowledged_present += rows[o.key]
        elif o.status == 503:
            kinds["503 nothing sent"] += 1
            assert rows[o.key] == 0, f"a write answered 503 (nothing sent) was applied: {o}"
        elif o.status == 502:
            kinds["502 unknown"] += 1
            unacknowledged_present += rows[o.key]
        else:
            raise AssertionError(f"unexpected answer to a write: {o}")
    # a new writer within two health intervals of each writer's failure
    new_after_kill = watch.writer_since(killed_at, {first, None})
    left_primary = watch.first_seen(index[second], "non-Primary", cut_at)
    assert new_after_kill is not None and left_primary is not None
    new_after_cut = watch.writer_since(cut_at, {first, second, None})
    assert new_after_cut is not None
    kill_to_writer = new_after_kill[0] - killed_at
    # (negative: the gateway moved the writes before the node itself said it left)
    cut_to_writer = new_after_cut[0] - left_primary
    print(
        f"\ngalera chaos: {len(reads)} reads (all answered; by node {dict(answered_by)}, "
        f"by local state {dict(states)}), "
        f"{len(writes)} writes {dict(kinds)} ({unacknowledged_present} unacknowledged present), "
        f"{len(rows)} rows, 0 twice; writer {first} killed -> {new_after_kill[1]} after "
        f"{kill_to_writer:.2f} s; writer {second} cut off, out of the primary component "
        f"{left_primary - cut_at:.2f} s later -> {new_after_cut[1]} {cut_to_writer:+.2f} s from then"
    )
    assert kill_to_writer <= 2 * INTERVAL, kill_to_writer
    assert cut_to_writer <= 2 * INTERVAL, cut_to_writer


def test_read_your_writes_on_galera(cluster: GaleraCluster, tmp_path: Path) -> None:
    """A read sent with AFTER runs with causal reads (wsrep_sync_wait) on whichever node takes
    it, and sees the write just acknowledged by the writer; the setting does not stay on the
    pooled connection for the next request without AFTER."""
    if "galera" not in MODES:
        pytest.skip("--mode galera is not built yet")
    cluster.wait_synced(3, timeout=30)
    backends = [arg for i in range(3) for arg in ("--backend", cluster.dsn(i))]
    gw = Gateway(tmp_path, "--mode", "galera", *backends, *HEALTH).start()
    names = {node.name for node in cluster.nodes}
    try:
        wait_for("all nodes up", lambda: backends_up(gw) == names, 15, gw.output)
        gw.db({"SQL": "CREATE TABLE IF NOT EXISTS ryw (k VARCHAR(40))"})
        servers: Counter[str] = Counter()
        for _ in range(30):
            key = f"ryw-{uuid.uuid4()}"
            wrote = gw.db({"SQL": "INSERT INTO ryw (k) VALUES (%s)", "PARAMS": [key]}).json()
            assert wrote["RESULT"]["AFFECTED_ROWS"] == 1, wrote
            after = wrote.get("GTID") or "0-1-1"
            read = gw.db(
                {
                    "SQL": "SELECT COUNT(*), @@session.wsrep_sync_wait FROM ryw WHERE k = %s",
                    "PARAMS": [key],
                    "AFTER": after,
                }
            ).json()
            assert read["RESULT"]["ROWS"] == [[1, 1]], read
            servers[read["SERVER"]] += 1
        assert len(servers) >= 2, f"the reads all ran on one node: {servers}"
        for _ in range(30):
            plain = gw.db({"SQL": "SELECT @@session.wsrep_sync_wait"}).json()
            assert plain["RESULT"]["ROWS"] == [[0]], plain
    finally:
        gw.stop()
