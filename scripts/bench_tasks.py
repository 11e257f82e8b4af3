#!/usr/bin/env python3
"""Task benchmark: Architect against Huey (SQLite storage) on the same machine, same run.

Architect: a real broker process and 2 local worker processes; a client submits no-op
python tasks ("architect.agent.builtin_tasks:noop") in batches and waits until every result
is committed. Huey: SqliteHuey with a consumer of 2 worker processes; the client enqueues the
same number of no-op tasks and waits for every result.

Prints a table (throughput, submit-to-start latency p50/p99 on an idle cluster, ratio) and
writes JSON. Targets from issue 3: >= 5,000 tasks/s, >= 2x Huey, p50 submit-to-start <= 2 ms.

    .venv/bin/python scripts/bench_tasks.py [--tasks 20000] [--latency-samples 500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from architect.client import Client  # noqa: E402
from scripts.benchlib.common import pct, stop  # noqa: E402
from tests.helpers import free_port_block, wait_for  # noqa: E402

NOOP = "architect.agent.builtin_tasks:noop"


def spawn(args, env, log):
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def bench_architect(n: int, samples: int, workers: int, slots: int, tmp: Path) -> dict:
    base = free_port_block(4)
    env = dict(os.environ, ARCHITECT_BUS_PORT=str(base), ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_LOG_LEVEL="WARNING")
    log = open(tmp / "architect.log", "ab")
    procs = [spawn(["-m", "architect", "broker"], env, log)]
    client = Client(broker="127.0.0.1", bus_port=base, timeout=60)
    try:
        wait_for(lambda: client.call("ping", timeout=0.5), 20, what="broker")
        for i in range(workers):
            procs.append(spawn(["-m", "architect", "worker", "--name", f"bench{i}", "-c",
                                str(slots), "--task-type", "python"], env, log))
        wait_for(lambda: len(client.call("worker.list")) == workers, 20, what="workers")
        client.map(NOOP, [()] * 200)  # warm up

        # latency on an idle cluster: one task at a time
        lat = []
        for _ in range(samples):
            t = client.submit("python", {"function": NOOP})
            done = client.wait(t["id"], timeout=30)
            lat.append((done["started_at"] - done["created_at"]) * 1000)

        # throughput: submit everything (batches of 1,000, each committed before its reply),
        # then wait until every result is committed
        spec = {"task_type": "python", "payload": {"function": NOOP}}
        t0 = time.perf_counter()
        ids = []
        for i in range(0, n, 1000):
            ids.extend(s["id"] for s in client.call("task.submit_many",
                                                    {"tasks": [spec] * min(1000, n - i)}))
        submit_s = time.perf_counter() - t0
        done = client.wait(ids, timeout=600)
        total_s = time.perf_counter() - t0
        ok = sum(1 for t in done if t["status"] == "succeeded")
    finally:
        client.close()
        stop(procs)
    return {"tasks": n, "succeeded": ok, "submit_seconds": round(submit_s, 3),
            "total_seconds": round(total_s, 3), "tasks_per_second": round(n / total_s),
            "submit_to_start_p50_ms": round(pct(lat, 0.5), 3),
            "submit_to_start_p99_ms": round(pct(lat, 0.99), 3)}


def bench_huey(n: int, samples: int, workers: int, tmp: Path) -> dict:
    db = tmp / "huey.db"
    env = dict(os.environ, HUEY_BENCH_DB=str(db), PYTHONPATH=str(ROOT / "scripts"))
    os.environ["HUEY_BENCH_DB"] = str(db)
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchlib import huey_app  # noqa: E402  (reads HUEY_BENCH_DB at import)
    log = open(tmp / "huey.log", "ab")
    consumer = [sys.executable, "-m", "huey.bin.huey_consumer", "benchlib.huey_app.huey",
                "-k", "process", "-w", str(workers), "-d", "0.001", "-m", "0.001", "-b", "1.0",
                "-q"]
    proc = subprocess.Popen(consumer, env=env, cwd=ROOT / "scripts", stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        r = huey_app.noop()
        r.get(blocking=True, timeout=30)
        lat = []
        for _ in range(samples):
            t = time.perf_counter()
            r = huey_app.noop()
            r.get(blocking=True, timeout=30, backoff=1.0, max_delay=0.0005)
            lat.append((time.perf_counter() - t) * 1000)  # Huey records no start time:
            # this is submit-to-result, an upper bound of submit-to-start
        t0 = time.perf_counter()
        results = [huey_app.noop() for _ in range(n)]
        submit_s = time.perf_counter() - t0
        for r in results:
            r.get(blocking=True, timeout=600, backoff=1.0, max_delay=0.01)
        total_s = time.perf_counter() - t0
    finally:
        stop([proc])
    return {"tasks": n, "succeeded": n, "submit_seconds": round(submit_s, 3),
            "total_seconds": round(total_s, 3), "tasks_per_second": round(n / total_s),
            "submit_to_start_p50_ms": round(pct(lat, 0.5), 3),
            "submit_to_start_p99_ms": round(pct(lat, 0.99), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--huey-tasks", type=int, default=5_000)
    ap.add_argument("--latency-samples", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--slots", type=int, default=16,
                    help="slots per worker (no-op tasks: deeper pipelines beat round trips)")
    ap.add_argument("--skip-huey", action="store_true")
    ap.add_argument("--out", default="bench-tasks.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    results = {"architect": bench_architect(args.tasks, args.latency_samples, args.workers,
                                            args.slots, tmp)}
    if not args.skip_huey:
        results["huey"] = bench_huey(args.huey_tasks, args.latency_samples, args.workers, tmp)
    keys = list(results["architect"])
    print(f"\n{'metric':26}" + "".join(f"{name:>14}" for name in results))
    for k in keys:
        print(f"{k:26}" + "".join(f"{results[name][k]:>14}" for name in results))
    if "huey" in results:
        ratio = results["architect"]["tasks_per_second"] / results["huey"]["tasks_per_second"]
        results["ratio_throughput"] = round(ratio, 2)
        print(f"\nthroughput ratio architect/huey: {ratio:.2f}x   (Huey latency is submit-to-result:"
              " it records no start time)")
    a = results["architect"]
    print(f"targets: >= 5,000 tasks/s: {'MET' if a['tasks_per_second'] >= 5000 else 'NOT MET'}; "
          f"p50 submit-to-start <= 2 ms: {'MET' if a['submit_to_start_p50_ms'] <= 2 else 'NOT MET'}"
          + (f"; >= 2x Huey: {'MET' if results['ratio_throughput'] >= 2 else 'NOT MET'}"
             if "huey" in results else ""))
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
