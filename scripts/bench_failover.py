#!/usr/bin/env python3
"""Failover benchmark: several masters on a real PostgreSQL (tests/pg.py, on loopback), how
long the cluster is without a master when the active one dies, and how long until a task
submitted after that has run.

2 masters (`architect server`, tests/ha.py Masters: each its own data dir and web port on
127.0.0.1, the same database) and --nodes nodes (agent + worker with --slots slots, both
dashboard URLs in ARCHITECT_DASHBOARD_URL). Each round ends the active master, alternately
with SIGKILL (kill -9 of its process group: PostgreSQL ends its session, which frees the
lease's advisory lock at once) and with SIGTERM (a graceful stop: it hands the lease over
as it goes), and measures from the signal:
  active      the survivor turned active (the `since` of its /healthz: its own clock, the
              same machine's)
  healthz ok  pollers (5 threads, staggered) saw the survivor's /healthz say active + ok
  workers     the survivor, active, lists every worker in /api/workers (they reconnected)
  accepted    POST /api/tasks to the survivor (shell `true`, retried every <= 0.5 s with one
              idempotency key: a retry never makes a second task) was accepted
  task done   that task has succeeded (what a user submitting during the failover sees;
              after a SIGTERM the old master may still run it as it stops)
  new task    a task submitted once the survivor said active + ok has succeeded: dispatch
              on the new master (its workers reconnected)
  agents      every node agent registered with the survivor (from the agents' logs; an
              agent moves after two unanswered pings, one per heartbeat interval)
  old exit    the old master's process exited (SIGTERM only: its graceful stop)
Before the signal --inflight `sleep 1` tasks are running; every one must end succeeded
(a lost task is reported). Then the old master is restarted as standby, and the next round
starts once every worker and agent is with the active master and a task runs there.

Node settings: `default` is the product's (worker ping every 1 s, silent for 3 = the broker
is lost; agent heartbeat every 5 s; request timeout 5 s); `fast` is the tests' (worker 0.3 s
x 4, agent 0.3 s, 3 s). Lease TTL 5 s (it only matters for a master cut off from the
database, not a dead one). Each signal comes after a random wait of up to one agent
heartbeat interval (--jitter), so it falls at any phase of the nodes' timers.

    .venv/bin/python scripts/bench_failover.py [--repeats 10] [--nodes 2] [--slots 4]
        [--settings default[,fast]] [--out bench-failover.json]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.benchlib.common import commit, interrupted, pct, write_results  # noqa: E402
from tests.ha import Masters  # noqa: E402
from tests.helpers import wait_for  # noqa: E402
from tests.pg import PgServer, pg_bin  # noqa: E402

FAST_KEYS = ("ARCHITECT_HEARTBEAT_INTERVAL", "ARCHITECT_HEARTBEAT_TIMEOUT",
             "ARCHITECT_REQUEST_TIMEOUT", "ARCHITECT_WORKER_HEARTBEAT_INTERVAL",
             "ARCHITECT_WORKER_LIVENESS")   # what tests.helpers.Cluster sets for tests
SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}
DEADLINE = 60.0   # seconds a round may take before it counts as failed


def health(url: str, timeout: float = 2.0) -> dict | None:
    try:
        return requests.get(url + "/healthz", timeout=timeout).json()
    except (requests.RequestException, ValueError):
        return None


def run_task(url: str, command: str, timeout: float = 30.0) -> dict:
    """Submit a shell task to `url` and wait until it is final (steady state only)."""
    r = requests.post(url + "/api/tasks", json={"task_type": "shell",
                                               "payload": {"command": command}}, timeout=5)
    r.raise_for_status()
    tid = r.json()["id"]
    return wait_for(lambda: (t := requests.get(f"{url}/api/tasks/{tid}", timeout=5).json())
                    .get("status") in ("succeeded", "failed", "lost", "cancelled") and t,
                    timeout, interval=0.02, what=f"task {tid}")


def workers_on(url: str, timeout: float = 1.0) -> int:
    return requests.get(url + "/api/workers", timeout=timeout).json()["count"]


REGISTERED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO architect\.agent: "
                        r"registered as \S+ with (\S+)", re.M)


def registrations(ha: Masters, name: str) -> list[tuple[float, int | None]]:
    """(wall time, master index) of each registration in the agent's log."""
    out = []
    for stamp, ms, endpoint in REGISTERED.findall(ha.nodes.log(f"agent-{name}")):
        at = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
        which = [i for i, m in enumerate(ha.masters) if f"{m.tmp}/data/" in endpoint]
        out.append((at, which[0] if which else None))
    return out


def steady(ha: Masters, active: int, nodes: int, timeout: float = 60.0) -> None:
    """Wait until `active` is active and ok, the other standby and ok, every worker and
    agent is with `active`, and a task runs there."""
    url = ha.urls[active]
    names = [f"n{i}" for i in range(nodes)]

    def ready():
        h, o = health(url), health(ha.urls[1 - active])
        return (h or {}).get("role") == "active" and h.get("status") == "ok" and \
            (o or {}).get("role") == "standby" and o.get("status") == "ok" and \
            workers_on(url) >= nodes and \
            all((registrations(ha, n) or [(0, None)])[-1][1] == active for n in names)
    wait_for(ready, timeout, interval=0.1, what=f"master {active} with every node")
    run_task(url, "true")


class Stopwatch:
    """Seconds from `t0` (monotonic) until each named event, set once, from any thread."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.times: dict[str, float] = {}
        self.lock = threading.Lock()

    def mark(self, name: str, at: float | None = None) -> None:
        with self.lock:
            self.times.setdefault(name, round((at or time.monotonic()) - self.t0, 3))

    def has(self, name: str) -> bool:
        return name in self.times


def poll(watch: Stopwatch, name: str, check, stop: threading.Event, delay: float = 0.0):
    """Run check() until it is truthy (then mark `name`) or `stop`."""
    stop.wait(delay)
    while not stop.is_set() and not watch.has(name):
        try:
            if check():
                watch.mark(name)
                return
        except (requests.RequestException, ValueError, KeyError, TypeError):
            pass
        stop.wait(0.01)


def submit_after_kill(url: str, key: str, watch: Stopwatch, stop: threading.Event,
                      out: dict) -> None:
    """POST a task (retried with one idempotency key), then wait until it is final."""
    tid = None
    while not stop.is_set():
        try:
            if tid is None:
                r = requests.post(url + "/api/tasks", timeout=0.5, json={
                    "task_type": "shell", "payload": {"command": "true"},
                    "idempotency_key": key})
                if r.status_code in (200, 201):
                    tid = out["task_id"] = r.json()["id"]
                    watch.mark("accepted")
                    continue
            else:
                t = requests.get(f"{url}/api/tasks/{tid}", timeout=2).json()
                if t.get("status") in ("succeeded", "failed", "lost", "cancelled"):
                    out["task_status"] = t["status"]
                    out["task_attempt"] = t.get("attempt")
                    watch.mark("task_done")
                    return
        except (requests.RequestException, ValueError):
            pass
        stop.wait(0.01)


def new_task(url: str, watch: Stopwatch, stop: threading.Event, out: dict) -> None:
    """Once the survivor said active + ok: submit a task there, wait until it is final."""
    while not stop.is_set() and not watch.has("healthz_ok"):
        stop.wait(0.01)
    tid = None
    while not stop.is_set():
        try:
            if tid is None:
                r = requests.post(url + "/api/tasks", timeout=2, json={
                    "task_type": "shell", "payload": {"command": "true"}})
                if r.status_code in (200, 201):
                    tid = r.json()["id"]
                    continue
            else:
                t = requests.get(f"{url}/api/tasks/{tid}", timeout=2).json()
                if t.get("status") in ("succeeded", "failed", "lost", "cancelled"):
                    out["new_task_status"] = t["status"]
                    watch.mark("new_task_done")
                    return
        except (requests.RequestException, ValueError):
            pass
        stop.wait(0.01)


def one_round(ha: Masters, how: str, n: int, nodes: int, inflight: int, spent: list,
              jitter: float) -> dict:
    """End the active master with SIGKILL or SIGTERM; measure; restart it as standby."""
    old = ha.active()
    if old is None:
        old = ha.wait_active(30)
    new = 1 - old
    url = ha.urls[new]
    steady(ha, old, nodes)    # every node with the active master, dispatch works
    before = health(ha.urls[old])
    time.sleep(random.uniform(0, jitter))   # else the signal comes at one phase of the
    # agents' heartbeats (steady() ends just after one): their follow time would be biased
    running = [requests.post(ha.urls[old] + "/api/tasks", timeout=5, json={
        "task_type": "shell", "payload": {"command": "sleep 1"}}).json()["id"]
        for _ in range(inflight)]
    wait_for(lambda: all(requests.get(f"{ha.urls[old]}/api/tasks/{t}", timeout=5).json()
                         ["status"] == "running" for t in running), 20, what="in-flight tasks")

    proc = ha.masters[old].procs.pop("server")
    spent.append(proc)
    stop = threading.Event()
    t0_wall, t0 = time.time(), time.monotonic()
    watch = Stopwatch(t0)
    os.killpg(proc.pid, SIGNALS[how])
    out: dict = {}

    def healthy():
        h = health(url)
        if h and h.get("role") == "active" and h.get("status") == "ok":
            out["since"], out["epoch"] = h.get("since"), h.get("epoch")
            return True
        return False

    # a /healthz on a standby whose leader died waits up to 1 s for its ping: staggered
    # pollers keep the resolution near 0.2 s
    threads = [threading.Thread(target=poll, args=(watch, "healthz_ok", healthy, stop, d),
                                daemon=True) for d in (0.0, 0.2, 0.4, 0.6, 0.8)]
    threads.append(threading.Thread(target=poll, daemon=True, args=(
        watch, "workers", lambda: "since" in out and workers_on(url) >= nodes, stop)))
    threads.append(threading.Thread(target=submit_after_kill, daemon=True, args=(
        url, f"bench-{how}-{n}-{t0_wall}", watch, stop, out)))
    threads.append(threading.Thread(target=new_task, daemon=True, args=(
        url, watch, stop, out)))
    names = [f"n{i}" for i in range(nodes)]
    threads.append(threading.Thread(target=poll, daemon=True, args=(
        watch, "agents", lambda: all(any(at > t0_wall and m == new for at, m in
                                         registrations(ha, name)) for name in names), stop)))
    for t in threads:
        t.start()
    try:
        proc.wait(DEADLINE)
        watch.mark("old_exit")
    except Exception:   # a graceful stop that hangs: end it, and say so
        times_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    else:
        times_out = False
    deadline = t0 + DEADLINE
    while time.monotonic() < deadline and not all(
            watch.has(k) for k in ("healthz_ok", "workers", "task_done", "new_task_done",
                                   "agents")):
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join(5)
    times = dict(watch.times)
    if out.get("since"):
        times["active"] = round(out["since"] - t0_wall, 3)
    if how == "kill":
        times.pop("old_exit", None)   # a kill -9 exits at once
    lost, rerun = [], []
    for tid in running:   # every task that was running at the signal must succeed
        try:
            t = wait_for(lambda: (t := requests.get(f"{url}/api/tasks/{tid}", timeout=5).json())
                         .get("status") in ("succeeded", "failed", "lost", "cancelled") and t,
                         30, interval=0.05, what=f"in-flight task {tid}")
            if t["status"] != "succeeded":
                lost.append({"id": tid, "status": t["status"], "attempt": t.get("attempt")})
            elif (t.get("attempt") or 1) > 1:   # not lost, but run again
                rerun.append({"id": tid, "attempt": t["attempt"]})
        except AssertionError as exc:
            lost.append({"id": tid, "status": f"not final: {exc}"})
    result = {"round": n, "signal": how, "from": old, "to": new,
              "epoch_before": (before or {}).get("epoch"), "epoch_after": out.get("epoch"),
              **times, "task_status": out.get("task_status"),
              "task_attempt": out.get("task_attempt"), "inflight": len(running),
              "inflight_not_succeeded": lost, "inflight_run_again": rerun,
              "old_master_hung": times_out,
              "new_task_status": out.get("new_task_status"),
              "ok": all(k in times for k in ("active", "healthz_ok", "workers", "task_done",
                                             "new_task_done", "agents"))
              and out.get("task_status") == "succeeded"
              and out.get("new_task_status") == "succeeded" and not lost}
    ha.start_master(old)   # back as standby for the next round
    return result


METRICS = ("active", "healthz_ok", "workers", "accepted", "task_done", "new_task_done",
           "agents", "old_exit")


def summarize(rounds: list[dict]) -> dict:
    out = {"rounds": len(rounds), "ok": sum(r["ok"] for r in rounds)}
    for k in METRICS:
        values = [r[k] for r in rounds if k in r]
        if values:
            out[f"{k}_p50_s"] = round(pct(values, 0.5), 3)
            out[f"{k}_max_s"] = round(max(values), 3)
    out["inflight_not_succeeded"] = sum(len(r["inflight_not_succeeded"]) for r in rounds)
    out["inflight_run_again"] = sum(len(r["inflight_run_again"]) for r in rounds)
    return out


def bench(pg: PgServer, settings: str, args, tmp: Path, spent: list) -> list[dict]:
    url = pg.create_database(f"failover_{settings}")
    ha = Masters(tmp / settings, url, count=2, lease_ttl=args.lease_ttl)
    if settings == "default":   # the product's defaults, not the tests' fast ones
        for c in (*ha.masters, ha.nodes):
            for k in FAST_KEYS:
                c.env.pop(k, None)
    jitter = args.jitter if args.jitter is not None else \
        float(ha.nodes.env.get("ARCHITECT_HEARTBEAT_INTERVAL", 5.0))
    rounds: list[dict] = []
    try:
        ha.start()
        for i in range(args.nodes):
            ha.start_node(f"n{i}", slots=args.slots)
        for n in range(args.repeats):
            for how in ("kill", "term"):
                try:
                    r = one_round(ha, how, n, args.nodes, args.inflight, spent, jitter)
                except (AssertionError, requests.RequestException, KeyError) as exc:
                    # the cluster did not come back: report what was measured so far
                    print(f"  {settings} {how} {n + 1}: FAILED: {exc}", file=sys.stderr)
                    rounds.append({"round": n, "signal": how, "settings": settings,
                                   "ok": False, "error": str(exc)[:2000],
                                   "inflight_not_succeeded": [], "inflight_run_again": []})
                    return rounds
                r["settings"] = settings
                rounds.append(r)
                print(f"  {settings} {how} {n + 1}: active {r.get('active')} s, healthz ok "
                      f"{r.get('healthz_ok')} s, workers {r.get('workers')} s, task done "
                      f"{r.get('task_done')} s, new task {r.get('new_task_done')} s, agents "
                      f"{r.get('agents')} s{' FAILED ' + str(r) if not r['ok'] else ''}",
                      file=sys.stderr)
    finally:
        ha.stop_all()
    return rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10, help="rounds of each signal")
    ap.add_argument("--nodes", type=int, default=2, help="nodes (agent + worker)")
    ap.add_argument("--slots", type=int, default=4, help="slots per worker")
    ap.add_argument("--inflight", type=int, default=2,
                    help="`sleep 1` tasks running when the master ends")
    ap.add_argument("--settings", default="default",
                    help="node settings, comma-separated: default (the product's), fast "
                         "(the tests')")
    ap.add_argument("--lease-ttl", type=float, default=5.0)
    ap.add_argument("--jitter", type=float, default=None,
                    help="a random wait of 0..JITTER s before each signal [the agents' "
                         "heartbeat interval: 5 s, fast 0.3 s]")
    ap.add_argument("--out", "--json", dest="out", default="bench-failover.json")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.settings.split(",") if k.strip()]
    if not kinds or any(k not in ("default", "fast") for k in kinds):
        ap.error("--settings takes default, fast")
    signal.signal(signal.SIGTERM, interrupted)   # clean up as on Ctrl-C
    measured = commit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    spent: list = []          # the old masters' processes, reaped (or killed) at the end
    rounds: list[dict] = []
    pg = PgServer()           # its own temp dir (the postgres user's when root)
    try:
        pg.start()
        for settings in kinds:
            rounds += bench(pg, settings, args, tmp, spent)
    finally:
        for p in spent:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)
        pg.cleanup()
    print(f"  logs in {tmp}", file=sys.stderr)
    results = {f"{s}-{how}": summarize([r for r in rounds if r["settings"] == s and
                                        r["signal"] == how])
               for s in kinds for how in ("kill", "term")}
    names = list(results)
    print(f"\n{'seconds from the signal':28}" + "".join(f"{n:>16}" for n in names))
    for k in ("rounds", "ok", *(f"{m}_{q}_s" for m in METRICS for q in ("p50", "max")),
              "inflight_not_succeeded", "inflight_run_again"):
        print(f"{k:28}" + "".join(f"{results[n].get(k, '-'):>16}" for n in names))
    for s in kinds:
        k, t = results[f"{s}-kill"], results[f"{s}-term"]
        row = {m: round(k[f"{m}_p50_s"] / t[f"{m}_p50_s"], 2) for m in METRICS
               if k.get(f"{m}_p50_s") and t.get(f"{m}_p50_s")}
        results[f"{s}-kill/term"] = row
        print(f"{s}: kill -9 / SIGTERM (p50): "
              + ", ".join(f"{m} {v}x" for m, v in row.items()))
    worst = max((max(r.get("task_done", DEADLINE), r.get("new_task_done", DEADLINE))
                 for r in rounds), default=0)
    bad = [r for r in rounds if not r["ok"]]
    print(f"target: a task runs within 10 s of losing the active master (max): {worst} s "
          f"{'MET' if worst <= 10 and not bad else 'NOT MET'}; rounds failed: {len(bad)}; "
          f"in-flight tasks not succeeded: {sum(len(r['inflight_not_succeeded']) for r in rounds)}")
    results["rounds"] = rounds
    results["settings"] = {"repeats": args.repeats, "nodes": args.nodes, "slots": args.slots,
                           "inflight": args.inflight, "lease_ttl": args.lease_ttl,
                           "jitter": args.jitter, "settings": kinds,
                           "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                           "postgresql": pg_bin().parts[-2], "commit": measured}
    write_results(results, args.out, measured)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:   # everything started is stopped by then
        sys.exit("interrupted")
