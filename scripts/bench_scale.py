#!/usr/bin/env python3
"""Scaling curves, each printed as a table (issue 12):

  workers     batched throughput (submit_many + wait, the no-op python task) with 1, 2, 4
              and 8 real worker processes of 4 slots each, one broker
  nodes       heartbeat ingest rate and broker RSS with 1k, 10k and 50k simulated nodes
              (bench_heartbeats.py, run once per size)
  dispatch    the broker's CPU time per task with 10, 100 and 1,000 connected workers: one
              simulator process holds that many DEALER sockets, each a worker of one slot
              speaking the work protocol (ready, wping, result on assign), so the cost of
              placement over many workers is measured apart from running tasks

Writes JSON (--out) with every row.

    .venv/bin/python scripts/bench_scale.py [--only workers,nodes,dispatch] [--tasks 20000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from architect.client import Client  # noqa: E402
from scripts.benchlib.common import commit, stop  # noqa: E402
from tests.helpers import free_port_block, wait_for  # noqa: E402

NOOP = {"task_type": "python", "payload": {"function": "architect.agent.builtin_tasks:noop"}}


def curve_workers(counts, n: int, tmp: Path) -> list[dict]:
    from bench_tasks import bench_architect
    rows = []
    for workers in counts:
        r = bench_architect(n, 100, workers, 4, tmp / f"workers-{workers}", "ipc")
        rows.append({"workers": workers, "slots": 4 * workers,
                     "tasks_per_second": r["tasks_per_second"]})
        print(f"  {workers} workers: {r['tasks_per_second']} tasks/s", file=sys.stderr)
    return rows


def curve_nodes(counts, tmp: Path) -> list[dict]:
    rows = []
    for nodes in counts:
        out = tmp / f"hb-{nodes}.json"
        count = max(500_000, 20 * nodes)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_heartbeats.py"),
                        "--nodes", str(nodes), "--count", str(count), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        r = json.loads(out.read_text())
        rows.append({"nodes": nodes, "heartbeats_per_second": r["heartbeats_per_second"],
                     "dropped": r["heartbeats_dropped"],
                     "rss_mib_registered": r["broker_rss_nodes_mib"],
                     "rss_mib_after": r["broker_rss_end_mib"],
                     "rss_mib_per_1000_nodes": r["rss_per_1000_nodes_mib"]})
        print(f"  {nodes} nodes: {r['heartbeats_per_second']} heartbeats/s, "
              f"{r['broker_rss_end_mib']} MiB", file=sys.stderr)
    return rows


# --- many workers in one process -----------------------------------------------------------

def simulate_workers(endpoint: str, count: int, ready, stop_flag) -> None:
    """`count` one-slot workers on DEALER sockets: answer every assignment at once."""
    import zmq
    from architect.bus.codec import decode, encode
    from architect.bus.messages import TaskAssign, TaskResult, WorkerPing, WorkerReady
    ctx = zmq.Context()
    socks = []
    hello = {}
    for i in range(count):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTING_ID, f"sim-worker-{i}".encode())
        s.connect(endpoint)
        hello[s] = dict(worker_id=f"sim-{i}", node=f"sim-node-{i:04d}", slots=1,
                        task_types=["python"], hostname="sim", pid=os.getpid())
        s.send(encode(WorkerReady(**hello[s])))
        socks.append(s)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    ready.set()
    next_ping = time.monotonic() + 1.0
    while not stop_flag.is_set():
        for s, _ in poller.poll(100):
            while True:
                try:
                    msg = decode(s.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if type(msg) is TaskAssign:
                    now = time.time()
                    s.send(encode(TaskResult(task_id=msg.task_id, attempt=msg.attempt,
                                             state="succeeded", result=1, duration=0.0,
                                             started_at=now, finished_at=now)))
        if time.monotonic() >= next_ping:
            next_ping = time.monotonic() + 1.0
            for s in socks:
                s.send(encode(WorkerPing(**hello[s])))
    for s in socks:
        s.close(0)
    ctx.term()


def curve_dispatch(counts, n: int, tmp: Path) -> list[dict]:
    rows = []
    for workers in counts:
        d = tmp / f"dispatch-{workers}"
        d.mkdir(parents=True, exist_ok=True)
        base = free_port_block(4)
        env = dict(os.environ, ARCHITECT_BUS_PORT=str(base), ARCHITECT_DATA_DIR=str(d / "data"),
                   ARCHITECT_STATE_DIR=str(d / "state"), ARCHITECT_CONFIG=str(d / "none.json"),
                   ARCHITECT_LOG_LEVEL="WARNING", ARCHITECT_HEARTBEAT_TIMEOUT="600")
        log = open(d / "broker.log", "ab")
        broker = subprocess.Popen([sys.executable, "-m", "architect", "broker"], env=env,
                                  cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        client = None
        sim = None
        stop_flag = multiprocessing.Event()
        try:
            def connect():
                nonlocal client
                if client is None:
                    if not (d / "data" / "bus" / "control").exists():
                        return False
                    client = Client(broker="127.0.0.1", bus_port=base, timeout=120,
                                    data_dir=str(d / "data"))
                return client.call("ping", timeout=0.5)
            wait_for(connect, 20, what="broker")
            work = "ipc://" + str(d / "data" / "bus" / "work")
            ready = multiprocessing.Event()
            sim = multiprocessing.Process(target=simulate_workers,
                                          args=(work, workers, ready, stop_flag))
            sim.start()
            ready.wait(60)
            wait_for(lambda: len(client.call("worker.list")) >= workers, 60,
                     what=f"{workers} simulated workers")
            proc = psutil.Process(broker.pid)
            client.wait([s["id"] for s in client.call("task.submit_many",
                                                      {"tasks": [NOOP] * 500})], timeout=120)
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.perf_counter()
            ids = []
            for i in range(0, n, 1000):
                ids += [s["id"] for s in client.call("task.submit_many",
                                                     {"tasks": [NOOP] * min(1000, n - i)})]
            done = client.wait(ids, timeout=600)
            wall = time.perf_counter() - t0
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            ok = sum(1 for t in done if t["status"] == "succeeded")
            rows.append({"workers": workers, "tasks": n, "succeeded": ok,
                         "tasks_per_second": round(n / wall),
                         "broker_cpu_us_per_task": round(cpu / n * 1e6, 1),
                         "broker_rss_mib": round(proc.memory_info().rss / 2**20, 1)})
            print(f"  {workers} workers: {rows[-1]['broker_cpu_us_per_task']} us of broker CPU "
                  f"per task", file=sys.stderr)
        finally:
            stop_flag.set()
            if sim is not None:
                sim.join(10)
                if sim.is_alive():
                    sim.kill()
            if client is not None:
                client.close()
            stop([broker])
    return rows


def table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    print(f"\n{title}")
    print("".join(f"{k:>24}" for k in keys))
    for r in rows:
        print("".join(f"{r[k]:>24}" for k in keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="workers,nodes,dispatch")
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--nodes", default="1000,10000,50000")
    ap.add_argument("--connected", default="10,100,1000")
    ap.add_argument("--out", default="bench-scale.json")
    args = ap.parse_args()
    parts = {p.strip() for p in args.only.split(",")}
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    out = {"commit": commit()}
    if "workers" in parts:
        out["workers"] = curve_workers(ints(args.workers), args.tasks, tmp)
    if "nodes" in parts:
        out["nodes"] = curve_nodes(ints(args.nodes), tmp)
    if "dispatch" in parts:
        out["dispatch"] = curve_dispatch(ints(args.connected), args.tasks, tmp)
    table("throughput by worker processes (4 slots each, batched)", out.get("workers", []))
    table("heartbeat ingest and broker memory by node count", out.get("nodes", []))
    table("dispatch cost by connected workers (1 slot each, simulated)", out.get("dispatch", []))
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
