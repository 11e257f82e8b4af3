#!/usr/bin/env python3
"""Task benchmark: Architect on each kind of loopback bus, against Huey (SQLite storage),
on the same machine, in the same run.

Architect: a real broker process and 2 local worker processes, once per bus kind:
  ipc    the default loopback bus: Unix sockets in DATA_DIR/bus (mode 0700)
  tcp    plain 127.0.0.1 ports, as before ipc (ARCHITECT_BUS_LOCAL=tcp)
  curve  the same ports with CURVE (ARCHITECT_BUS_CURVE=on), as a bus beyond loopback runs
Two calling patterns: batched (task.submit_many in batches of 1,000, then wait on every
id until every result is committed) and one at a time (submit() then wait(id) per task,
what scripts do), with submit-to-start latency p50/p99 from the latter. Huey: SqliteHuey
with a consumer of 2 worker processes; the same two patterns.

Each bus kind runs --repeats times, interleaved (ipc, tcp, curve, ipc, ...), and the table
shows medians, with each figure's ratio to the plain tcp bus. Prints the table, writes JSON.
Targets from issue 3: >= 5,000 tasks/s, >= 2x Huey, p50 submit-to-start <= 2 ms.

    .venv/bin/python scripts/bench_tasks.py [--tasks 20000] [--latency-samples 500]
        [--bus ipc,tcp,curve] [--repeats 3] [--skip-huey]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
BUS_KINDS = {"ipc": {"ARCHITECT_BUS_LOCAL": "ipc", "ARCHITECT_BUS_CURVE": "auto"},
             "tcp": {"ARCHITECT_BUS_LOCAL": "tcp", "ARCHITECT_BUS_CURVE": "auto"},
             "curve": {"ARCHITECT_BUS_LOCAL": "ipc", "ARCHITECT_BUS_CURVE": "on"}}


def spawn(args, env, log):
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def bench_architect(n: int, samples: int, workers: int, slots: int, tmp: Path,
                    bus: str = "ipc") -> dict:
    base = free_port_block(4)
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ARCHITECT_BUS_PORT=str(base), ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_LOG_LEVEL="WARNING", **BUS_KINDS[bus])
    log = open(tmp / "architect.log", "ab")
    procs = [spawn(["-m", "architect", "broker"], env, log)]
    client = None
    try:
        def connect():  # once the broker made its sockets (ipc) or keys (curve)
            nonlocal client
            if client is None:
                if bus == "ipc" and not (tmp / "data" / "bus" / "control").exists():
                    return False
                if bus == "curve" and not (tmp / "data" / "keys" / "local.key_secret").exists():
                    return False
                client = Client(broker="127.0.0.1", bus_port=base, timeout=60,
                                data_dir=str(tmp / "data"))
            return client.call("ping", timeout=0.5)
        wait_for(connect, 20, what="broker")
        endpoint = client._rpc.endpoint
        for i in range(workers):
            procs.append(spawn(["-m", "architect", "worker", "--name", f"bench{i}", "-c",
                                str(slots), "--task-type", "python"], env, log))
        wait_for(lambda: len(client.call("worker.list")) == workers, 20, what="workers")
        client.map(NOOP, [()] * 200)  # warm up

        # one at a time on an idle cluster: submit() then wait(id), as scripts do
        lat, acks = [], []
        t0 = time.perf_counter()
        for _ in range(samples):
            t1 = time.perf_counter()
            t = client.submit("python", {"function": NOOP})
            acks.append((time.perf_counter() - t1) * 1000)   # the durable ack, as a caller sees it
            done = client.wait(t["id"], timeout=30)
            lat.append((done["started_at"] - done["created_at"]) * 1000)
        single_s = time.perf_counter() - t0

        # batched: submit everything (batches of 1,000, each committed before its reply),
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
        if client is not None:
            client.close()
        stop(procs)
    return {"tasks": n, "succeeded": ok, "submit_seconds": round(submit_s, 3),
            "total_seconds": round(total_s, 3), "tasks_per_second": round(n / total_s),
            "one_at_a_time_per_second": round(samples / single_s),
            "submit_to_start_p50_ms": round(pct(lat, 0.5), 3),
            "submit_to_start_p99_ms": round(pct(lat, 0.99), 3),
            "submit_ack_p50_ms": round(pct(acks, 0.5), 3),
            "submit_ack_p99_ms": round(pct(acks, 0.99), 3), "endpoint": endpoint}


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
        t0 = time.perf_counter()
        for _ in range(samples):
            t = time.perf_counter()
            r = huey_app.noop()
            r.get(blocking=True, timeout=30, backoff=1.0, max_delay=0.0005)
            lat.append((time.perf_counter() - t) * 1000)  # Huey records no start time:
            # this is submit-to-result, an upper bound of submit-to-start
        single_s = time.perf_counter() - t0
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
            "one_at_a_time_per_second": round(samples / single_s),
            "submit_to_start_p50_ms": round(pct(lat, 0.5), 3),
            "submit_to_start_p99_ms": round(pct(lat, 0.99), 3)}


def median_of(runs: list[dict]) -> dict:
    """Each numeric figure's median over the runs (other values from the first run)."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)):
            out[key] = type(value)(statistics.median(r[key] for r in runs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20_000, help="tasks of the batched run")
    ap.add_argument("--huey-tasks", type=int, default=5_000)
    ap.add_argument("--latency-samples", type=int, default=500,
                    help="tasks of the one-at-a-time run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--slots", type=int, default=16,
                    help="slots per worker (no-op tasks: deeper pipelines beat round trips)")
    ap.add_argument("--bus", default="ipc,tcp,curve",
                    help="bus kinds to measure, comma-separated: ipc, tcp, curve")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per bus kind, interleaved; the table shows medians")
    ap.add_argument("--skip-huey", action="store_true")
    ap.add_argument("--out", default="bench-tasks.json")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.bus.split(",") if k.strip()]
    if not kinds or any(k not in BUS_KINDS for k in kinds):
        ap.error(f"--bus takes {', '.join(BUS_KINDS)}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for i in range(args.repeats):
        for kind in kinds:
            runs[kind].append(bench_architect(args.tasks, args.latency_samples, args.workers,
                                              args.slots, tmp / f"{kind}-{i}", kind))
            print(f"  {kind} run {i + 1}: {runs[kind][-1]['tasks_per_second']} tasks/s batched, "
                  f"{runs[kind][-1]['one_at_a_time_per_second']}/s one at a time",
                  file=sys.stderr)
    results = {f"architect-{k}": median_of(runs[k]) for k in kinds}
    if not args.skip_huey:
        results["huey"] = bench_huey(args.huey_tasks, args.latency_samples, args.workers, tmp)
    names = list(results)
    keys = [k for k in results[names[0]] if k != "endpoint"]
    print(f"\n{'metric (median of ' + str(args.repeats) + ')':28}"
          + "".join(f"{name:>16}" for name in names))
    for k in keys:
        print(f"{k:28}" + "".join(f"{results[name].get(k, '-'):>16}" for name in names))
    ratios = {}
    if "architect-tcp" in results:  # every figure against the plain tcp bus
        tcp = results["architect-tcp"]
        print(f"\n{'ratio to plain tcp':28}" + "".join(f"{name:>16}" for name in names))
        for k in ("tasks_per_second", "one_at_a_time_per_second", "submit_to_start_p50_ms"):
            row = {name: round(results[name][k] / tcp[k], 2) for name in names if tcp[k]}
            ratios[k] = row
            print(f"{k:28}" + "".join(f"{str(row.get(name, '-')) + 'x':>16}" for name in names))
    results["ratio_to_tcp"] = ratios
    results["runs"] = runs
    results["endpoints"] = {k: runs[k][0]["endpoint"] for k in kinds}
    a = results[f"architect-{kinds[0]}"]
    if "huey" in results:
        ratio = a["tasks_per_second"] / results["huey"]["tasks_per_second"]
        results["ratio_throughput"] = round(ratio, 2)
        print(f"\nthroughput ratio architect-{kinds[0]}/huey: {ratio:.2f}x   (Huey latency is "
              "submit-to-result: it records no start time)")
    print(f"targets ({kinds[0]} bus): >= 5,000 tasks/s: "
          f"{'MET' if a['tasks_per_second'] >= 5000 else 'NOT MET'}; "
          f"p50 submit-to-start <= 2 ms: {'MET' if a['submit_to_start_p50_ms'] <= 2 else 'NOT MET'}"
          + (f"; >= 2x Huey: {'MET' if results['ratio_throughput'] >= 2 else 'NOT MET'}"
             if "huey" in results else ""))
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
