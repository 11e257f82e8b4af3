#!/usr/bin/env python3
"""Submit benchmark: how fast a script gets N tasks durably accepted, by calling pattern,
in one run on one broker (a real `architect broker` process, the default ipc bus, SQLite,
no workers: only the submit path is measured).

  sync     a loop of Client.submit(): each call waits for its durable ack (one round trip
           and, with nothing else in flight, one fsync per task)
  async    a loop of Client.submit_async(), then flush(): the requests are in flight
           together and share the broker's group commits (at most 1,000 in flight)
  batch    Client.submit_many() (one request and one commit per 1,000 tasks)
  rest     POST /api/tasks with a JSON array of 1,000 per request (an `architect server`)

Then end to end, on a second server with 2 worker processes x 4 slots running the built-in
no-op python task, the pattern scripts use — one submit and one wait per task:

  e2e-sync       for each task: submit(), then wait(id)
  e2e-pipelined  submit_async() for every task, then wait(handle.id) for each: the submits
                 share commits, and each wait also asks about the others still out

and, in the same run, the peer: Huey (SqliteHuey, a consumer of 2 worker processes, from
scripts/bench_tasks.py) in the same two patterns — `noop()` + `r.get()` per task, and
`noop()` for every task then `r.get()` for each (`--skip-huey` without the bench extra).

Each pattern runs --repeats times, interleaved; the tables show medians and the ratios.
Prints the tables, writes JSON.

    .venv/bin/python scripts/bench_submit.py [--tasks 5000] [--repeats 3] [--out bench-submit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import requests  # noqa: E402

from architect.client import Client  # noqa: E402
from bench_tasks import bench_huey, spawn, stop  # noqa: E402
from tests.helpers import free_port_block, wait_for  # noqa: E402

SPEC = {"task_type": "shell", "payload": {"command": "true"}}
PATTERNS = ("sync", "async", "batch", "rest")


def run(pattern: str, client: Client, n: int, web: str) -> float:
    t0 = time.perf_counter()
    if pattern == "sync":
        for _ in range(n):
            client.submit("shell", SPEC["payload"])
    elif pattern == "async":
        for _ in range(n):
            client.submit_async("shell", SPEC["payload"])
        client.flush()
    elif pattern == "batch":
        client.submit_many([SPEC] * n)
    else:
        with requests.Session() as http:
            for i in range(0, n, 1000):
                r = http.post(web + "/api/tasks", json=[SPEC] * min(1000, n - i), timeout=60)
                assert r.status_code == 201, r.text
    return n / (time.perf_counter() - t0)


NOOP = {"function": "architect.agent.builtin_tasks:noop"}
E2E = ("e2e-sync", "e2e-pipelined")
HUEY = ("huey-sync", "huey-pipelined")


def run_e2e(pattern: str, client: Client, n: int) -> float:
    t0 = time.perf_counter()
    if pattern == "e2e-sync":
        for _ in range(n):
            t = client.submit("python", NOOP)
            assert client.wait(t["id"], timeout=60)["status"] == "succeeded"
    else:
        handles = [client.submit_async("python", NOOP) for _ in range(n)]
        for h in handles:
            assert client.wait(h.id, timeout=60)["status"] == "succeeded"
    return n / (time.perf_counter() - t0)


def e2e(args, rates) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-submit-e2e-"))
    env = dict(os.environ, ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_LOG_LEVEL="WARNING")
    env.pop("ARCHITECT_DATABASE_URL", None)
    log = open(tmp / "architect.log", "ab")
    procs = [spawn(["-m", "architect", "broker"], env, log)]
    client = None
    try:
        wait_for(lambda: (tmp / "data" / "bus" / "control").exists(), 20, what="broker")
        client = Client(control_endpoint=f"ipc://{tmp / 'data' / 'bus' / 'control'}",
                        timeout=60)
        for i in range(2):
            procs.append(spawn(["-m", "architect", "worker", "--name", f"e2e{i}", "-c", "4",
                                "--task-type", "python"], env, log))
        wait_for(lambda: len(client.call("worker.list")) == 2, 20, what="workers")
        run_e2e("e2e-pipelined", client, 200)   # warm up
        for r in range(args.repeats):
            for pattern in E2E:
                rates[pattern].append(run_e2e(pattern, client, args.e2e_tasks))
                print(f"  {pattern} run {r + 1}: {rates[pattern][-1]:,.0f} tasks/s", flush=True)
            if not args.skip_huey:
                # one folder for every repeat: bench_huey's app reads its database path once
                (tmp / "huey").mkdir(exist_ok=True)
                peer = bench_huey(args.e2e_tasks, args.e2e_tasks, 2, tmp / "huey")
                rates["huey-sync"].append(peer["one_at_a_time_per_second"])
                rates["huey-pipelined"].append(peer["tasks_per_second"])
                print(f"  huey run {r + 1}: {peer['one_at_a_time_per_second']:,} / "
                      f"{peer['tasks_per_second']:,} tasks/s", flush=True)
    finally:
        if client is not None:
            client.close()
        stop(procs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--e2e-tasks", type=int, default=2000)
    ap.add_argument("--skip-huey", action="store_true")
    ap.add_argument("--out", default="bench-submit.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    port = free_port_block(1)
    env = dict(os.environ, ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_LOG_LEVEL="WARNING", ARCHITECT_USER="", ARCHITECT_PASSWORD="")
    env.pop("ARCHITECT_DATABASE_URL", None)
    log = open(tmp / "architect.log", "ab")
    procs = [spawn(["-m", "architect", "server", "--port", str(port)], env, log)]
    web = f"http://127.0.0.1:{port}"
    client = None
    rates: dict[str, list[float]] = {p: [] for p in PATTERNS + E2E + HUEY}
    try:
        wait_for(lambda: requests.get(web + "/healthz", timeout=1).status_code == 200, 30,
                 what="server")
        client = Client(control_endpoint=f"ipc://{tmp / 'data' / 'bus' / 'control'}",
                        timeout=60)
        run("async", client, 500, web)   # warm up
        for r in range(args.repeats):
            for pattern in PATTERNS:
                rates[pattern].append(run(pattern, client, args.tasks, web))
                print(f"  {pattern} run {r + 1}: {rates[pattern][-1]:,.0f} tasks/s", flush=True)
    finally:
        if client is not None:
            client.close()
        stop(procs)
    e2e(args, rates)
    med = {p: statistics.median(v) for p, v in rates.items() if v}
    print(f"\n{args.tasks} durable submits, median of {args.repeats}   tasks/s   ratio to sync")
    for p in PATTERNS:
        print(f"  {p:8}                                 {med[p]:>8,.0f}   {med[p] / med['sync']:.1f}x")
    print(f"\n{args.e2e_tasks} tasks, submit + wait each    tasks/s   vs e2e-sync   vs Huey's same")
    for p, peer in zip(E2E + HUEY, HUEY + HUEY):
        if p in med:
            vs_peer = f"{med[p] / med[peer]:.1f}x" if peer in med else "-"
            print(f"  {p:16} {med[p]:>10,.0f}   {med[p] / med['e2e-sync']:>9.1f}x   {vs_peer:>8}")
    Path(args.out).write_text(json.dumps({"tasks": args.tasks, "e2e_tasks": args.e2e_tasks,
                                          "repeats": args.repeats,
                                          "runs": rates, "median": med,
                                          "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
