"""Several masters on one PostgreSQL (ARCHITECTURE.md §11; TESTING.md H1): real
`architect server` processes (tests/ha.py Masters), agents and workers that know every
master's URL, judged by the checker every fault test uses (tests/checker.py).

- H1: kill -9 of the active master while a client submits: a standby is active within
  10 s, every acknowledged task succeeds exactly once, the database is consistent, and the
  killed master comes back as a standby.
- A standby's web server gives the active broker's answers and carries out writes.
- /api/bus and /healthz on both masters.
- A graceful stop (SIGTERM) hands over within ~2 s.
- A worker's result sent while no broker was there reaches the new leader.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from architect import config as config_mod
from architect.client import BrokerUnavailable, Client, RequestRejected
from tests.checker import check, integrity, read_runs, run_command
from tests.ha import Masters
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
RETRY_CODES = {"store_unavailable", "no_leader", "fenced", "broker_unavailable", "unavailable"}


@pytest.fixture
def ha_factory(tmp_path, pg_server):
    """Masters on a fresh database; every one made is stopped at the end, whatever happens."""
    made: list[Masters] = []

    def make(count: int = 2, **kw) -> Masters:
        ha = Masters(tmp_path, pg_server.create_database(), count=count, **kw)
        made.append(ha)
        return ha
    try:
        yield make
    finally:
        for ha in made:
            ha.stop_all()


def up(ha: Masters, nodes=("n1", "n2"), slots: int = 2) -> int:
    """Every master started, one active; agents + workers on every node, all connected."""
    active = ha.start()
    for name in nodes:
        ha.start_node(name, slots=slots)
    wait_workers(ha, active, nodes)
    return active


def wait_workers(ha: Masters, i: int, nodes, timeout: float = 20.0) -> list:
    """A worker of every node in `nodes` connected to master i's broker. (Not
    Masters.wait_workers: it takes len() of the {"workers", "count"} body, which is 2 at
    once, so it never waits.)"""
    def connected():
        body = ha.api("/api/workers", i=i).json()
        return {w["node"] for w in body["workers"]} >= set(nodes) and body["workers"]
    return wait_for(connected, timeout, interval=0.1, what=f"workers of {sorted(nodes)}")


def client_for(ha: Masters, tmp_path, request_timeout: float = 2.0) -> Client:
    """A Python client that knows every master's URL (comma-separated), with its own state
    dir and no config file, so nothing of this machine's ~/.architect leaks in."""
    env = {"ARCHITECT_CONFIG": str(tmp_path / "client-config.json"),
           "ARCHITECT_STATE_DIR": str(tmp_path / "client-state"),
           "ARCHITECT_DATA_DIR": str(tmp_path / "client-data")}
    cfg = config_mod.load({"dashboard_url": ",".join(ha.urls),
                           "request_timeout": request_timeout}, env=env)
    return wait_for(lambda: Client.from_config(cfg), 15, interval=0.2,
                    what="a client connected through the dashboards")


def rest(ha: Masters, path: str, method: str = "GET", timeout: float = 5.0, **kw):
    """The JSON answer of the first master that answers `path` with 2xx, else None."""
    for url in ha.urls:
        try:
            r = requests.request(method, url + path, timeout=timeout, **kw)
        except requests.RequestException:
            continue
        if 200 <= r.status_code < 300:
            return r.json()
    return None


def wait_final(ha: Masters, ids, timeout: float = 30.0) -> dict[int, dict]:
    """task id → the task with events, once every one is final (asked of any master)."""
    ids = list(ids)

    def all_final():
        out = {}
        for task_id in ids:
            task = rest(ha, f"/api/tasks/{task_id}?events=1")
            if task is None or task["status"] not in FINAL:
                return None
            out[task_id] = task
        return out
    return wait_for(all_final, timeout, interval=0.2, what=f"{len(ids)} tasks final")


def no_tracebacks(ha: Masters) -> None:
    """No process of the test (masters, agents, workers) logged a crash."""
    for path in sorted(ha.tmp.rglob("*.log")):
        text = path.read_text(errors="replace")
        assert "Traceback" not in text, f"{path}:\n{text[-3000:]}"


def running_task(ha: Masters, task_id: int) -> dict | None:
    task = rest(ha, f"/api/tasks/{task_id}")
    return task if task and task["status"] == "running" else None


def epoch_of(ha: Masters, i: int):
    return (ha.health(i) or {}).get("epoch")


def wait_standby(ha: Masters, i: int, timeout: float = 20.0) -> dict:
    """Master i says standby and can serve (it reaches the active broker)."""
    return wait_for(lambda: (h := ha.health(i)) and h.get("role") == "standby"
                    and h.get("status") == "ok" and h, timeout, interval=0.1,
                    what=f"master {i} as a healthy standby")


class Submitter(threading.Thread):
    """Submits tasks one by one with the Python client, each with an idempotency key; a
    submit that fails (no broker, a failover) is retried with the same key until it is
    acknowledged. Stops after `stop` is set (the submit under way is finished first)."""

    def __init__(self, client: Client, log, prefix: str = "t", pause: float = 0.05):
        super().__init__(daemon=True, name="submitter")
        self.client, self.log, self.prefix, self.pause = client, log, prefix, pause
        self.acked: dict[str, int] = {}          # label → task id
        self.acked_at: dict[str, float] = {}     # label → monotonic time of the ack
        self.retries = 0
        self.failures: list[str] = []            # errors that were retried
        self.fatal: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set():
                label = f"{self.prefix}{i}"
                self.submit(label, f"{self.prefix}-key-{i}")
                i += 1
                time.sleep(self.pause)
        except BaseException as exc:  # seen by the test
            self.fatal = exc

    def submit(self, label: str, key: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                out = self.client.submit("shell", {"command": run_command(self.log, label)},
                                         idempotency_key=key)
                self.acked[label] = out["id"]
                self.acked_at[label] = time.monotonic()
                return
            except BrokerUnavailable as exc:
                self.failures.append(f"{label}: unavailable: {exc}")
            except RequestRejected as exc:
                if exc.code not in RETRY_CODES:
                    raise
                self.failures.append(f"{label}: {exc.code}: {exc.message}")
            self.retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"submit {label} not acknowledged within 60 s: "
                                     f"{self.failures[-3:]}")
            time.sleep(0.1)


# --- H1 --------------------------------------------------------------------------------
def test_h1_kill_active_master_while_submitting(ha_factory, tmp_path):
    ha = ha_factory(2)
    first = up(ha)
    other = 1 - first
    epoch_before = epoch_of(ha, first)
    log = tmp_path / "runs.log"
    sub = Submitter(client_for(ha, tmp_path), log)
    sub.start()
    try:
        wait_for(lambda: len(sub.acked) >= 15 or sub.fatal, 20, what="15 tasks acknowledged")
        assert sub.fatal is None, sub.fatal
        before_kill = len(sub.acked)
        killed_at, killed_wall = time.monotonic(), time.time()
        ha.kill(first)
        new = ha.wait_active(timeout=10, other_than=first)
        failover = time.monotonic() - killed_at
        print(f"\nH1: master {other} active {failover:.2f}s after kill -9 of master {first}")
        assert new == other
        assert failover <= 10, f"failover took {failover:.2f}s"
        assert epoch_of(ha, new) > epoch_before
        wait_workers(ha, new, ("n1", "n2"))
        print(f"H1: both workers on the new leader {time.monotonic() - killed_at:.2f}s after "
              "the kill")
        # keep submitting through the failover until enough went in on the new leader
        wait_for(lambda: sub.fatal or len(sub.acked) >= before_kill + 15, 30,
                 what="15 tasks acknowledged after the failover")
        assert sub.fatal is None, sub.fatal
    finally:
        sub.stop.set()
        sub.join(70)
    assert not sub.is_alive()
    assert sub.fatal is None, sub.fatal
    first_after = min(t for t in sub.acked_at.values() if t > killed_at)
    print(f"H1: first submit acknowledged {first_after - killed_at:.2f}s after the kill; "
          f"{sub.retries} retried submits: {sub.failures}")
    sub.client.close()
    tasks = wait_final(ha, sub.acked.values(), timeout=40)
    summary = check(log, sub.acked, tasks, killed=set())
    in_flight = sorted(label for label, runs in read_runs(log).items()
                       if any(s < killed_wall and (e is None or e > killed_wall)
                              for s, e in runs))
    print(f"H1: checker {summary}; running at the kill: {in_flight}")
    assert in_flight, "no task was running when the master was killed: nothing was tested"
    assert summary["reruns"] == []
    assert all(t["attempt"] == 1 for t in tasks.values()), \
        {t["id"]: t["attempt"] for t in tasks.values() if t["attempt"] != 1}
    integrity(ha.database_url)
    no_tracebacks(ha)
    # the killed master comes back as a standby; the new leader keeps its epoch
    epoch_after = epoch_of(ha, new)
    ha.start_master(first)
    health = wait_standby(ha, first)
    assert health["epoch"] is None
    assert health["master"]["leader"]["holder"] == ha.health(new)["master"]["holder"]
    assert ha.roles()[new] == "active" and epoch_of(ha, new) == epoch_after


# --- a standby answers as the active one does -------------------------------------------
def _nodes(body: dict) -> list:
    return sorted((n["name"], n["status"]) for n in body["nodes"])


def _tasks(body: dict) -> list:
    return [(t["id"], t["status"], t.get("assigned_node"), t.get("attempt"))
            for t in body["tasks"]]


def _summary(body: dict) -> dict:
    return {k: body[k] for k in ("nodes", "tasks", "queue_depth", "workers", "alerts",
                                 "final_states")}


def test_standby_gives_the_active_masters_answers(ha_factory, tmp_path):
    ha = ha_factory(2)
    active = up(ha)
    standby = 1 - active
    wait_standby(ha, standby)
    log = tmp_path / "runs.log"
    ids = []
    for i in range(6):
        r = ha.api("/api/tasks", "POST", i=active, json={
            "task_type": "shell", "payload": {"command": run_command(log, f"a{i}")}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    wait_final(ha, ids)
    # the nodes settle (healthy), then every read gives the same from both masters
    wait_for(lambda: all(s == "healthy" for _n, s in
                         _nodes(ha.api("/api/nodes", i=active).json())), 15,
             what="both nodes healthy")

    def same(path, pick):
        def both():
            a = ha.api(path, i=active)
            s = ha.api(path, i=standby)
            assert a.status_code == 200 and s.status_code == 200, (path, a.text, s.text)
            return pick(a.json()) == pick(s.json()) and pick(a.json())
        return wait_for(both, 10, interval=0.2, what=f"{path} the same on both masters")

    nodes = same("/api/nodes", _nodes)
    assert [n for n, _s in nodes] == ["n1", "n2"]
    listed = same("/api/tasks?limit=20", _tasks)
    assert sorted(t[0] for t in listed) == sorted(ids)
    for task_id in ids[:3]:
        task = same(f"/api/tasks/{task_id}", lambda t: t)
        assert task["status"] == "succeeded"
    summary = same("/api/stats", _summary)
    assert summary["tasks"].get("succeeded") == 6 and summary["nodes"]["total"] == 2
    stats = same("/api/cluster/stats", lambda s: (s["pid"], s["started_at"]))
    active_pid = ha.masters[active].procs["server"].pid
    assert stats[0] in {active_pid, *_children(active_pid)}, \
        f"/api/cluster/stats answered by pid {stats[0]}, not the active master {active_pid}"
    # a write sent to the standby is carried out by the active broker
    r = ha.api("/api/tasks", "POST", i=standby, json={
        "task_type": "shell", "payload": {"command": run_command(log, "via-standby")},
        "idempotency_key": "via-standby"}, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    done = wait_final(ha, [task_id])[task_id]
    assert done["status"] == "succeeded", done
    assert len(read_runs(log)["via-standby"]) == 1
    assert task_id in [t["id"] for t in ha.api("/api/tasks?limit=20", i=active).json()["tasks"]]
    audit = ha.api("/api/audit?method=task.submit&limit=50", i=active)
    assert audit.status_code == 200, audit.text
    rows = [row for row in audit.json()["audit"]
            if (row.get("params") or {}).get("idempotency_key") == "via-standby"]
    assert len(rows) == 1 and rows[0]["outcome"] == "ok", audit.json()["audit"][:3]
    # the same key again, through the standby: the existing task, not a new one
    again = ha.api("/api/tasks", "POST", i=standby, json={
        "task_type": "shell", "payload": {"command": "true"}, "idempotency_key": "via-standby"})
    assert again.status_code == 200 and again.json()["id"] == task_id, again.text
    no_tracebacks(ha)


def _children(pid: int) -> set[int]:
    import psutil
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


# --- /api/bus and /healthz ---------------------------------------------------------------
def test_bus_and_healthz_on_both_masters(ha_factory):
    ha = ha_factory(2)
    active = up(ha, nodes=("n1",))
    standby = 1 - active
    wait_standby(ha, standby)
    from_active = ha.api("/api/bus", i=active)
    from_standby = ha.api("/api/bus", i=standby)
    assert from_active.status_code == 200 and from_standby.status_code == 200, \
        (from_active.text, from_standby.text)
    bus = from_standby.json()
    assert bus == from_active.json()
    bus_dir = os.path.realpath(ha.masters[active].tmp / "data")
    for name in ("heartbeat", "work", "control", "events"):
        assert bus[name].startswith("ipc://"), bus
        path = os.path.realpath(bus[name][len("ipc://"):])
        assert path.startswith(bus_dir + os.sep), (name, path, bus_dir)
        assert os.path.exists(path), path
    assert ha.masters[active].endpoints.control == bus["control"] or \
        os.path.realpath(ha.masters[active].endpoints.control[6:]) == \
        os.path.realpath(bus["control"][6:])
    h_active, h_standby = ha.health(active), ha.health(standby)
    assert h_active["role"] == "active" and h_standby["role"] == "standby"
    assert h_active["status"] == "ok" and h_standby["status"] == "ok"
    assert isinstance(h_active["epoch"], int) and not isinstance(h_active["epoch"], bool)
    assert h_active["epoch"] >= 1
    assert h_standby["epoch"] is None
    holder = h_active["master"]["holder"]
    assert h_active["master"]["leader"]["holder"] == holder
    assert h_standby["master"]["leader"]["holder"] == holder
    assert h_standby["master"]["holder"] != holder
    assert h_active["master"]["leader"]["epoch"] == h_active["epoch"]
    assert h_standby["master"]["leader"]["epoch"] == h_active["epoch"]
    assert isinstance(h_active["since"], (int, float)) and h_active["since"] <= time.time()
    no_tracebacks(ha)


# --- graceful handover ---------------------------------------------------------------------
def test_sigterm_hands_over_at_once(ha_factory, tmp_path):
    ha = ha_factory(2)
    first = up(ha)
    other = 1 - first
    epoch_before = epoch_of(ha, first)
    proc = ha.masters[first].procs.pop("server")
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    new = ha.wait_active(timeout=10, other_than=first)
    handover = time.monotonic() - sent
    print(f"\nSIGTERM: master {new} active {handover:.2f}s after SIGTERM to master {first}")
    code = proc.wait(15)
    assert new == other
    print(f"SIGTERM: master {first} exited with {code}")
    assert code == 0, ha.log(first)[-3000:]
    # it gave the lease up on its way out (expired the row), not merely lost its session
    assert f"lost epoch {epoch_before}: stopped" in ha.log(first), ha.log(first)[-3000:]
    assert handover <= 2.5, f"graceful handover took {handover:.2f}s (lease not expired " \
                            "by the leaving master?)"
    assert epoch_of(ha, new) > epoch_before
    wait_workers(ha, new, ("n1", "n2"))
    print(f"SIGTERM: both workers on the new leader {time.monotonic() - sent:.2f}s after "
          "SIGTERM")
    log = tmp_path / "runs.log"
    client = client_for(ha, tmp_path)
    try:
        acked = {}
        for i in range(8):
            label = f"g{i}"
            acked[label] = client.submit("shell", {"command": run_command(log, label)},
                                         idempotency_key=f"g-{i}")["id"]
        tasks = wait_final(ha, acked.values(), timeout=30)
    finally:
        client.close()
    check(log, acked, tasks, killed=set())
    assert {t.get("assigned_node") for t in tasks.values()} <= {"n1", "n2"}
    integrity(ha.database_url)
    no_tracebacks(ha)


# --- a result sent while no broker was there ------------------------------------------------
def test_result_sent_during_failover_is_not_lost(ha_factory, tmp_path):
    ha = ha_factory(2)
    first = up(ha, nodes=("n1",))
    log = tmp_path / "runs.log"
    r = ha.api("/api/tasks", "POST", i=first, json={
        "task_type": "shell", "payload": {"command": run_command(log, "slow", seconds=3)},
        "idempotency_key": "slow"})
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    wait_for(lambda: running_task(ha, task_id) and read_runs(log).get("slow"), 15,
             interval=0.05, what="the task running")
    started = read_runs(log)["slow"][0][0]
    # kill the leader shortly before the task ends: the worker then sends its result while
    # no broker is there (it notices the silence only after its liveness window)
    time.sleep(max(0.0, started + 2.6 - time.time()))
    killed_at, killed_wall = time.monotonic(), time.time()
    ha.kill(first)
    new = ha.wait_active(timeout=10, other_than=first)
    print(f"\nresult: master {new} active {time.monotonic() - killed_at:.2f}s after the kill")
    ended = wait_for(lambda: read_runs(log)["slow"][0][1], 10, what="the task's end line")
    assert ended > killed_wall, "the task ended before the kill: nothing was tested"
    print(f"result: the task ended {ended - killed_wall:.2f}s after the kill")
    task = wait_final(ha, [task_id], timeout=30)[task_id]
    print(f"result: task final {time.monotonic() - killed_at:.2f}s after the kill")
    assert task["status"] == "succeeded", task
    assert task["attempt"] == 1, task
    assert task.get("assigned_node") == "n1"
    check(log, {"slow": task_id}, {task_id: task}, killed=set())
    assert len(read_runs(log)["slow"]) == 1
    integrity(ha.database_url)
    no_tracebacks(ha)
