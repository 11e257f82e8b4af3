"""Tier 4, H2 (TESTING.md): the active master's link cut and restored.

The test's own network: a bridge in the root namespace holding PostgreSQL's address (a
PgServer of tests/pg.py listening on loopback and on the bridge, password login from the
bridge's subnet only), two masters each in a namespace of its own (`architect server`
bound to its namespace's address: CURVE on the bus, login on the web), and two nodes
(agent + worker) in namespaces of their own, which know both masters' URLs and join with
ARCHITECT_JOIN_TOKEN. Only loopback and the namespaces' own addresses are contacted.

While a stream of tasks is submitted (REST, with idempotency keys, retried on the other
master when one does not answer), the active master's cable is pulled (`ip link set DEV
down`). Pass:
- the standby becomes active within 10 s + ttl;
- the old leader goes standby ("standby again" in its log) within ~0.6 × ttl of the cut,
  and before the new leader became active; it never leads again;
- no task ran twice, no two runs of a task overlapped, every attempt was assigned once
  (one `assigned` event per attempt in task_events): nothing was dispatched by two brokers;
- the workers follow the new leader, which claims what they were running (no re-run);
- after the link is back, the old leader answers as standby and forwards to the new one,
  which is still active with the same epoch; every acknowledged task succeeded; the
  database passes tests.checker.integrity; both masters' processes are the ones started.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests import checker
from tests.helpers import PYTHON, wait_for
from tests.pg import USER, PgServer

pytestmark = pytest.mark.slow

TTL = 3.0                       # ARCHITECT_LEASE_TTL of both masters
HOLD = 0.6                      # lease.HOLD_FRACTION: how long a leader trusts a renewal
WEB_PORT = 8080                 # every master in its own namespace: the same port each
TASK_SECONDS = 0.5
LOGIN = ("admin", "h2-" + secrets.token_hex(6))
JOIN_TOKEN = "h2-join-" + secrets.token_hex(6)
PG_PASSWORD = "h2-pg-" + secrets.token_hex(6)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def free_subnet() -> str:
    """A 10.X.0.0/24 no interface of this machine uses (another test's bridge, say)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for x in range(233, 254):
        if f" 10.{x}." not in used:
            return f"10.{x}.0"
    raise RuntimeError("no free 10.X.0.0/24 for the test network")


class Net:
    """A bridge in the root namespace (PostgreSQL's and the test's address, .1) and
    namespaces on it, each through a veth pair whose root end is its cable."""

    def __init__(self):
        self.prefix = free_subnet()
        self.ip = f"{self.prefix}.1"
        self.subnet = f"{self.prefix}.0/24"
        self.bridge = f"ahb{secrets.token_hex(2)}"
        self.hosts: dict[str, dict] = {}
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.ip}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add(self, name: str, last_octet: int) -> dict:
        tag = secrets.token_hex(2)
        host = {"ns": f"ah{name}{tag}", "veth": f"ha{name}{tag}",
                "ip": f"{self.prefix}.{last_octet}"}
        peer = f"hb{name}{tag}"
        self.hosts[name] = host
        sh("ip", "netns", "add", host["ns"])
        sh("ip", "link", "add", host["veth"], "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", host["ns"])
        sh("ip", "link", "set", host["veth"], "master", self.bridge)
        sh("ip", "link", "set", host["veth"], "up")
        inside = ("ip", "netns", "exec", host["ns"])
        sh(*inside, "ip", "addr", "add", f"{host['ip']}/24", "dev", peer)
        sh(*inside, "ip", "link", "set", peer, "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        return host

    def link(self, name: str, up: bool) -> None:
        sh("ip", "link", "set", self.hosts[name]["veth"], "up" if up else "down")

    def remove(self) -> None:
        for host in self.hosts.values():
            subprocess.run(["ip", "link", "del", host["veth"]], capture_output=True)
            subprocess.run(["ip", "netns", "del", host["ns"]], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class BridgePg(PgServer):
    """tests/pg.py's server, listening on the bridge as well as on loopback: what a user
    does for masters on other hosts (listen_addresses, a pg_hba line for their subnet with
    a password). Loopback stays trusted, for the test's own queries."""

    def __init__(self, ip: str, subnet: str):
        super().__init__(listen=(ip,), hba=(f"host all {USER} {subnet} scram-sha-256",))
        self.ip, self.subnet = ip, subnet

    def start(self) -> "BridgePg":
        super().start()
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"ALTER USER {USER} PASSWORD '{PG_PASSWORD}'")
        return self

    def bridge_url(self, local_url: str) -> str:
        """The same database, reached over the bridge with the password."""
        return local_url.replace(f"{USER}@127.0.0.1:", f"{USER}:{PG_PASSWORD}@{self.ip}:", 1)


class Procs:
    """`architect` processes, each in a namespace, each with a log file in `tmp`."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.base = {k: v for k, v in os.environ.items() if not k.startswith("ARCHITECT_")}
        self.base.update({
            "PYTHONUNBUFFERED": "1",
            "ARCHITECT_HEARTBEAT_INTERVAL": "0.3",
            "ARCHITECT_HEARTBEAT_TIMEOUT": "10",   # a failover is no node going offline
            "ARCHITECT_REQUEST_TIMEOUT": "3",
            "ARCHITECT_WORKER_HEARTBEAT_INTERVAL": "0.3",
            "ARCHITECT_WORKER_LIVENESS": "4",
            "ARCHITECT_JOIN_TOKEN": JOIN_TOKEN,
        })

    def spawn(self, key: str, ns: str, args: list[str], env: dict,
              home: str | None = None) -> subprocess.Popen:
        """home: the data and state folder (a node's agent and worker share its bus key)."""
        home = self.tmp / (home or key)
        home.mkdir(exist_ok=True)
        full = {**self.base, "ARCHITECT_DATA_DIR": str(home / "data"),
                "ARCHITECT_STATE_DIR": str(home / "state"),
                "ARCHITECT_CONFIG": str(home / "config.json"), **env}
        log = open(self.tmp / f"{key}.log", "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-m", "architect", *args],
                                env=full, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[key] = proc
        return proc

    def log(self, key: str) -> str:
        path = self.tmp / f"{key}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, key: str) -> bool:
        return self.procs[key].poll() is None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)


def health(url: str, timeout: float = 1.0) -> dict | None:
    try:
        return requests.get(url + "/healthz", timeout=timeout).json()
    except (requests.RequestException, ValueError):
        return None


def api(url: str, path: str, timeout: float = 3.0):
    r = requests.get(url + path, auth=LOGIN, timeout=timeout)
    r.raise_for_status()
    return r.json()


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def log_times(text: str, needle: str) -> list[float]:
    """Wall-clock times (logging's asctime, local time) of the log lines containing needle."""
    out = []
    for line in text.splitlines():
        m = LOG_TIME.match(line)
        if m and needle in line:
            out.append(time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                       + int(m.group(2)) / 1000)
    return out


class Submitter(threading.Thread):
    """One task every `every` seconds through whichever master answers (the one that
    answered last first); a failed submit is retried, on the other master, with the same
    idempotency key until acknowledged."""

    def __init__(self, urls: list[str], runs_log: Path, every: float = 0.2):
        super().__init__(daemon=True, name="submitter")
        self.urls, self.runs_log, self.every = urls, runs_log, every
        self.acked: dict[str, int] = {}
        self.acked_at: dict[str, float] = {}
        self.failures: list[tuple[float, str, str]] = []
        self.unacked: list[str] = []
        self.prefer = 0
        self.stop_new = threading.Event()
        self.give_up = threading.Event()
        self.lock = threading.Lock()

    def submit(self, label: str) -> None:
        body = {"task_type": "shell", "idempotency_key": f"h2-{label}",
                "payload": {"command": checker.run_command(self.runs_log, label, TASK_SECONDS)}}
        while not self.give_up.is_set():
            url = self.urls[self.prefer]
            try:
                r = requests.post(url + "/api/tasks", json=body, auth=LOGIN, timeout=(0.5, 4))
                if r.status_code in (200, 201):
                    with self.lock:
                        self.acked[label] = r.json()["id"]
                        self.acked_at[label] = time.time()
                    return
                why = f"{r.status_code} {r.text[:120]}"
            except requests.RequestException as exc:
                why = type(exc).__name__
            self.failures.append((time.time(), url, why))
            self.prefer = 1 - self.prefer
            time.sleep(0.1)
        self.unacked.append(label)

    def run(self) -> None:
        i = 0
        while not self.stop_new.is_set():
            self.submit(f"t{i:03d}")
            i += 1
            self.stop_new.wait(self.every)

    def finish(self, timeout: float = 20.0) -> None:
        self.stop_new.set()
        self.join(timeout)
        self.give_up.set()
        self.join(5)


def db_tasks(local_url: str, ids: list[int]) -> dict[int, dict]:
    """task id → the task row with its task_events (what checker.check wants)."""
    import psycopg
    from psycopg.rows import dict_row
    with psycopg.connect(local_url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM tasks WHERE id = ANY(%s)", (ids,)).fetchall()
        events = conn.execute("SELECT * FROM task_events WHERE task_id = ANY(%s) ORDER BY id",
                              (ids,)).fetchall()
    tasks = {r["id"]: {**r, "events": []} for r in rows}
    for e in events:
        tasks[e["task_id"]]["events"].append(e)
    return tasks


@pytest.fixture
def net():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("multi-host tests need root and iproute2 (`ip netns`); CI runs as root")
    made = Net()
    try:
        yield made
    finally:
        made.remove()


def test_active_master_link_cut_and_restored(net, tmp_path):
    runs_log = tmp_path / "runs.log"          # every namespace writes it (one filesystem)
    runs_log.touch()
    pg = None
    procs = Procs(tmp_path)
    submitter = None
    report: dict = {}
    try:
        pg = BridgePg(net.ip, net.subnet).start()
        local_url = pg.create_database()
        db_url = pg.bridge_url(local_url)
        masters = {name: net.add(name, octet) for name, octet in (("a", 11), ("b", 12))}
        nodes = {name: net.add(name, octet) for name, octet in (("n1", 21), ("n2", 22))}
        urls = {name: f"http://{h['ip']}:{WEB_PORT}" for name, h in masters.items()}

        # --- two masters: a first (so it leads), then b ----------------------------------
        for name in ("a", "b"):
            ip = masters[name]["ip"]
            procs.spawn(f"master-{name}", masters[name]["ns"],
                        ["server", "--host", ip, "--port", str(WEB_PORT), "--bus-host", ip],
                        {"ARCHITECT_DATABASE_URL": db_url, "ARCHITECT_LEASE_TTL": str(TTL),
                         "ARCHITECT_USER": LOGIN[0], "ARCHITECT_PASSWORD": LOGIN[1],
                         "ARCHITECT_NODE_NAME": f"master-{name}"})
            want = "active" if name == "a" else "standby"

            def up(name=name, want=want):
                if not procs.alive(f"master-{name}"):
                    raise AssertionError(f"master {name} exited:\n{procs.log(f'master-{name}')}")
                h = health(urls[name])
                return h if h and h["role"] == want and h["status"] == "ok" else None
            wait_for(up, 30, interval=0.1, what=f"master {name} {want}")
        roles = {n: health(urls[n])["role"] for n in urls}
        old = next(n for n, r in roles.items() if r == "active")   # a, unless b won
        new = "b" if old == "a" else "a"
        assert roles[new] == "standby", roles
        first_epoch = health(urls[old])["epoch"]
        bus = requests.get(urls[new] + "/api/bus", timeout=3).json()   # standby names the leader
        assert masters[old]["ip"] in bus["control"] and bus["server_key"], bus

        # --- two nodes, joining with the token, knowing both masters -----------------------
        calm = tmp_path / "calm.json"
        calm.write_text('{"cpu_percent": 5, "memory_percent": 20, "disk_percent": 30, '
                        '"load_1": 0.1}')
        dash = ",".join(urls[n] for n in ("a", "b"))
        for name, host in nodes.items():
            env = {"ARCHITECT_DASHBOARD_URL": dash}
            procs.spawn(f"agent-{name}", host["ns"],
                        ["agent", "--name", name, "--metrics-file", str(calm)], env, home=name)
            procs.spawn(f"worker-{name}", host["ns"], ["worker", "--name", name, "-c", "2"], env,
                        home=name)
        wait_for(lambda: {w["node"] for w in api(urls[old], "/api/workers")["workers"]}
                 == set(nodes), 30, interval=0.2, what="both workers on the active master")
        wait_for(lambda: {n["name"]: n["status"] for n in api(urls[old], "/api/nodes")["nodes"]}
                 == {n: "healthy" for n in nodes}, 30, interval=0.2, what="both nodes healthy")

        # --- a stream of tasks; then the leader's cable is pulled ----------------------------
        submitter = Submitter([urls[old], urls[new]], runs_log)
        submitter.start()
        wait_for(lambda: len(submitter.acked) >= 10, 20, what="10 tasks acknowledged")
        wait_for(lambda: len(checker.read_runs(runs_log)) >= 6, 10, what="tasks running")
        before_cut = time.time()
        net.link(old, False)
        cut_at = time.time()
        report["cut_command_s"] = cut_at - before_cut

        took_over = wait_for(lambda: (h := health(urls[new], 0.5)) and h["role"] == "active"
                             and h["status"] == "ok" and h, 10 + TTL + 5, interval=0.05,
                             what="the standby active")
        seen_active = time.time()
        report["takeover_seen_s"] = seen_active - cut_at
        report["takeover_since_s"] = took_over["since"] - cut_at
        new_epoch = took_over["epoch"]
        assert new_epoch > first_epoch
        assert seen_active - cut_at <= 10 + TTL, report

        # the workers follow the new leader; tasks keep flowing through it
        wait_for(lambda: {w["node"] for w in api(urls[new], "/api/workers")["workers"]}
                 == set(nodes), 20, interval=0.1, what="both workers on the new leader")
        report["workers_moved_s"] = time.time() - cut_at
        count = len(submitter.acked)
        wait_for(lambda: len(submitter.acked) >= count + 8, 15, what="8 more tasks acknowledged")
        time.sleep(1.0)
        stopped_in_partition = log_times(procs.log(f"master-{old}"), "standby again")

        # --- the cable is back: the old leader is a standby now -----------------------------
        net.link(old, True)
        restored_at = time.time()
        report["partition_s"] = restored_at - cut_at
        back = wait_for(lambda: (h := health(urls[old], 0.5)) and h["status"] == "ok" and h,
                        20, interval=0.1, what="the old leader answering again")
        report["old_back_s"] = time.time() - restored_at
        assert back["role"] == "standby", back
        assert back["master"]["leader"]["epoch"] == new_epoch, back
        now_new = health(urls[new])
        assert now_new["role"] == "active" and now_new["epoch"] == new_epoch, now_new

        # when the old leader stopped (its own log): on its own, within HOLD x ttl of the cut,
        # before the new one began. Checked last, after the safety checks below.
        standby = wait_for(lambda: log_times(procs.log(f"master-{old}"), "standby again"), 10,
                           what="the old leader's 'standby again'")
        report["old_standby_s"] = standby[0] - cut_at
        late = []
        if not stopped_in_partition:
            late.append(f"the old leader went standby only after the link was restored "
                        f"({standby[0] - cut_at:.2f}s after the cut, the link was down "
                        f"{restored_at - cut_at:.2f}s)")
        if standby[0] - cut_at > HOLD * TTL + 0.5:
            late.append(f"the old leader went standby {standby[0] - cut_at:.2f}s after the cut, "
                        f"not within {HOLD:g} x ttl = {HOLD * TTL:.2f}s (+0.5s)")
        if standby[0] >= took_over["since"]:
            late.append(f"the new leader became active {took_over['since'] - cut_at:.2f}s "
                        f"after the cut, before the old one stopped")

        count = len(submitter.acked)
        wait_for(lambda: len(submitter.acked) >= count + 5, 15, what="5 more tasks acknowledged")
        submitter.finish()
        assert not submitter.unacked, f"never acknowledged: {submitter.unacked}"

        # --- every acknowledged task ends; the checker ---------------------------------------
        acked = dict(submitter.acked)
        ids = sorted(acked.values())
        assert len(set(ids)) == len(ids), "two labels got one task id"

        def all_final():
            tasks = db_tasks(local_url, ids)
            return len(tasks) == len(ids) and all(
                t["status"] in ("succeeded", "failed", "timed_out", "cancelled")
                for t in tasks.values()) and tasks
        try:
            tasks = wait_for(all_final, 40, interval=0.25, what="every acknowledged task final")
        except AssertionError:
            left = {t["id"]: t["status"] for t in db_tasks(local_url, ids).values()
                    if t["status"] not in ("succeeded", "failed", "timed_out", "cancelled")}
            raise AssertionError(f"not final: {left}") from None
        summary = checker.check(runs_log, acked, tasks)   # strict: no re-run allowed at all
        report.update(summary)
        runs = checker.read_runs(runs_log)
        twice = {label: r for label, r in runs.items() if len(r) != 1}
        assert not twice, f"labels not run exactly once: {twice}"
        for task in tasks.values():
            per_attempt = Counter(e["attempt"] for e in task["events"] if e["event"] == "assigned")
            assert per_attempt and max(per_attempt.values()) == 1, \
                f"task {task['id']} assigned twice in one attempt: {task['events']}"
            assert sorted(per_attempt) == list(range(1, task["attempt"] + 1)), task["events"]
        report["reattempted"] = sorted((t["id"], t["attempt"]) for t in tasks.values()
                                       if t["attempt"] > 1)
        report["submit_failures"] = len(submitter.failures)
        last_fail = max((f[0] for f in submitter.failures if f[0] > cut_at), default=cut_at)
        report["submits_failing_for_s"] = last_fail - cut_at
        checker.integrity(local_url)

        # the old leader led once, never again; nobody restarted
        assert len(log_times(procs.log(f"master-{old}"), ": active, epoch")) == 1
        assert len(log_times(procs.log(f"master-{new}"), ": active, epoch")) == 1
        for key in procs.procs:
            assert procs.alive(key), f"{key} exited:\n{procs.log(key)[-2000:]}"
        print(f"\nH2 {old}->{new} ttl {TTL:g}s: " +
              ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in report.items()))
        assert not late, "; ".join(late) + f" ({report})"
    finally:
        for name, host in net.hosts.items():   # a cut master exits cleanly once it is back
            subprocess.run(["ip", "link", "set", host["veth"], "up"], capture_output=True)
        if submitter is not None:
            submitter.give_up.set()
            submitter.stop_new.set()
        procs.stop_all()
        if pg is not None:
            pg.cleanup()
