#!/usr/bin/env python3
"""Retention under way: a database with N finished tasks (default 100,000, with 4 events
each) older than ARCHITECT_TASK_RETENTION, then a real `architect broker` on it. Retention
first runs a minute after the start and removes them in chunks, one chunk a second. A
client pings the broker every 10 ms throughout; the broker reports how long each loop
iteration's work took (broker.stats "loop": the last 4,096 iterations).

Prints, before and during the purge: ping round trip p50 / p99 / max, and the loop's p99 and
max iteration; the purge's duration and rate. Target from issue 13: the loop's p99
iteration under 50 ms while it purges.

    .venv/bin/python scripts/bench_retention.py [--tasks 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from architect.client import Client  # noqa: E402
from scripts.bench_history import fill  # noqa: E402
from scripts.benchlib.common import commit, master_dirs, pct, stop  # noqa: E402
from tests.helpers import wait_for  # noqa: E402

AGE_DAYS = 45      # every task finished at least this long ago (retention: 30 days)


class Pinger(threading.Thread):
    def __init__(self, cfg):
        super().__init__(daemon=True)
        self.client = Client.from_config(cfg)
        self.samples: list[tuple[float, float]] = []   # (when, round trip ms)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            t = time.perf_counter()
            self.client.call("ping", {})
            self.samples.append((time.monotonic(), (time.perf_counter() - t) * 1000))
            self.stop_event.wait(0.01)

    def between(self, start: float, end: float) -> list[float]:
        return [ms for when, ms in self.samples if start <= when < end]


def summary(pings: list[float], loop: dict) -> dict:
    return {"pings": len(pings), "ping_p50_ms": round(pct(pings, 0.5), 2),
            "ping_p99_ms": round(pct(pings, 0.99), 2), "ping_max_ms": round(max(pings), 2),
            "loop_iterations": loop["recent"],
            "loop_p50_ms": round(loop["p50"] * 1000, 2), "loop_p99_ms": round(loop["p99"] * 1000, 2),
            "loop_max_ms": round(loop["max"] * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--out", default="bench-retention.json")
    args = ap.parse_args()
    measured = commit()
    tmp, base, env, cfg = master_dirs("bench-retention-")
    print(f"filling {args.tasks:,} finished tasks, {AGE_DAYS}+ days old ...", flush=True)
    fill(cfg.db_path, args.tasks, time.time() - AGE_DAYS * 86400)
    procs = [subprocess.Popen([sys.executable, "-m", "architect", "broker"], env=env, cwd=ROOT,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    started = time.monotonic()
    try:
        # the broker's local bus (a folder of sockets) exists once it listens: the client
        # looks for it when made
        wait_for(lambda: (Path(cfg.data_dir) / "bus" / "control").exists(), 60, interval=0.2,
                 what="the broker's bus")
        probe = Client.from_config(cfg)
        wait_for(lambda: probe.call("ping", {}) is not None, 60, interval=0.2, what="broker")
        pinger = Pinger(cfg)
        pinger.start()
        # before: the minute until retention's first run
        time.sleep(max(0.0, started + 55 - time.monotonic()))
        before_loop = probe.call("cluster.stats", {})["loop"]
        before_end = time.monotonic()

        def purged() -> int:
            return probe.call("cluster.stats", {})["counters"].get("tasks_purged", 0)
        wait_for(lambda: purged() > 0, 30, interval=0.2, what="retention to start")
        purge_start = time.monotonic()
        wait_for(lambda: purged() >= args.tasks, args.tasks / 200 + 60, interval=0.5,
                 what="every old task removed")
        purge_end = time.monotonic()
        during_loop = probe.call("cluster.stats", {})["loop"]
        pinger.stop_event.set()
        pinger.join(5)
        rows = {"before (idle, with pings)": summary(pinger.between(0, before_end), before_loop),
                "during the purge": summary(pinger.between(purge_start, purge_end), during_loop)}
    finally:
        stop(procs)
    took = purge_end - purge_start
    print(f"\n{args.tasks:,} tasks purged in {took:.1f} s ({args.tasks / took:,.0f}/s, "
          f"chunks of 250, four a second); commit {measured}")
    cols = list(next(iter(rows.values())))
    print(f"{'':28}" + "".join(f"{c:>16}" for c in cols))
    for name, r in rows.items():
        print(f"{name:28}" + "".join(f"{r[c]:>16}" for c in cols))
    p99 = rows["during the purge"]["loop_p99_ms"]
    print(f"target: loop p99 iteration < 50 ms while purging: {'MET' if p99 < 50 else 'NOT MET'}"
          f" ({p99} ms; the worst iteration {rows['during the purge']['loop_max_ms']} ms)")
    Path(args.out).write_text(json.dumps({"commit": measured, "tasks": args.tasks,
                                          "purge_seconds": round(took, 1), "rows": rows},
                                         indent=2))


if __name__ == "__main__":
    main()
