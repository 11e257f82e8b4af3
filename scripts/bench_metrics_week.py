#!/usr/bin/env python3
"""A week of metrics: 100 nodes beating every 5 s for 7 days (12.1M samples) written
through the store's real paths, then what it costs to keep and to chart.

How: simulated time, one hour at a time. Each hour's samples of every node are written with
`store.insert_metrics` in one transaction (as Broker.persist does, in bigger batches), then
the broker's own roll-up and retention run as its tick would run them at the end of that
hour: `MetricsRollup.step` until caught up (1-minute, then 1-hour roll-ups), the raw
retention (`store.purge_metrics` with `raw_cutoff`, in chunks) and the roll-up levels'
retention (`MetricsRollup.purge`). Every one of the 12.1M samples goes through the insert
and the roll-up; only the last 24 h of raw rows stay (the default raw retention).

Prints: the time taken, rows and live bytes per table (indexes included), the file size,
what keeping the raw samples alone would take (measured bytes per raw row × all the
samples, for a week and for a year), the steady-state cost of rolling one minute, and the
chart read (rollup.series, one node, 300 points) for 1 h / 24 h / 7 d windows, p50 / p99,
with 24 h also forced onto the raw samples for comparison. Writes JSON.

    .venv/bin/python scripts/bench_metrics_week.py [--nodes 100] [--days 7] [--interval 5]
        [--database-url postgresql://...] [--reps 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from architect.broker import rollup  # noqa: E402
from architect.broker.rollup import GRACE, MetricsRollup  # noqa: E402
from scripts.benchlib.common import commit, pct, report  # noqa: E402

DAY = 86400.0
RETENTION = {"raw": 1 * DAY, "1m": 14 * DAY, "1h": 365 * DAY}   # the defaults
TABLES = ("metrics", "metrics_1m", "metrics_1h")


def open_store(url: str | None, folder: str):
    if url:
        from architect.broker.store.postgres import Store as PgStore
        return PgStore(url)
    from architect.broker.store.sqlite import Store
    return Store(os.path.join(folder, "architect.db"))


def hour_of_samples(nodes: int, start: float, interval: float, rnd: random.Random) -> list:
    """Every node's samples in [start, start + 3600): a daily wave, noise, and a spike now
    and then (what min / max bands are for)."""
    rows = []
    per_hour = int(3600 / interval)
    for n in range(1, nodes + 1):
        phase = n * 0.37
        offset = (n * 0.731) % interval
        for i in range(per_hour):
            ts = start + offset + i * interval
            day = math.sin(2 * math.pi * (ts / DAY) + phase)
            cpu = max(0.0, min(100.0, 35 + 20 * day + rnd.gauss(0, 6)
                               + (45 if rnd.random() < 0.002 else 0)))
            mem = 50 + 10 * day + rnd.random() * 4
            rows.append((n, ts, round(cpu, 2), round(mem, 2), 61.5, round(cpu / 25, 2),
                         1.0, 1.0, 1_000 * i, 2_000 * i, 180))
    return rows


def purge_raw(store, r: MetricsRollup, now: float) -> int:
    """What Broker.tick does for raw retention: chunks until none is left."""
    total = 0
    cutoff = r.raw_cutoff(now - RETENTION["raw"])
    while True:
        with store.transaction(durable=False):
            n = store.purge_metrics(cutoff)
        total += n
        if not n:
            return total


def sizes(store, url: str | None, folder: str) -> dict:
    """Live bytes per table with its indexes, and the file (SQLite) or database size."""
    out = {}
    if url:
        for t in TABLES:
            out[t] = store._fetch("SELECT pg_total_relation_size(%s)", (t,))[0][0]
        out["file"] = store._fetch("SELECT pg_database_size(current_database())")[0][0]
        return out
    names = {t: [t] + [r[0] for r in store._fetch(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (t,))]
        for t in TABLES}
    for t, objs in names.items():
        marks = ", ".join("?" for _ in objs)
        out[t] = store._fetch(f"SELECT COALESCE(SUM(pgsize - unused), 0) FROM dbstat "
                              f"WHERE name IN ({marks})", objs)[0][0]
        out[t + "_pages"] = store._fetch(f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat "
                                         f"WHERE name IN ({marks})", objs)[0][0]
    path = os.path.join(folder, "architect.db")
    out["file"] = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    return out


def chart_times(store, node: int, now: float, reps: int, retention: dict) -> dict:
    out = {}
    for label, window, forced in (("1h", 3600, None), ("24h", DAY, None), ("7d", 7 * DAY, None),
                                  ("24h_raw", DAY, "raw")):
        times, res, points = [], None, 0
        for _ in range(reps):
            t0 = time.perf_counter()
            got = rollup.series(store, node, now - window, now, 300, forced, retention)
            times.append((time.perf_counter() - t0) * 1000)
            res, points = got["resolution"], len(got["series"])
        out[label] = {"resolution": res, "points": points, "p50_ms": round(pct(times, 0.5), 2),
                      "p99_ms": round(pct(times, 0.99), 2)}
    return out


def mib(n) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--out", default=str(ROOT / "test-output" / "bench-metrics-week.json"))
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="architect-metrics-week-")
    store = open_store(args.database_url, folder)
    r = MetricsRollup(RETENTION, interval=args.interval)
    rnd = random.Random(14)
    now0 = time.time() // 3600 * 3600
    start = now0 - args.days * DAY
    hours = int(args.days * 24)
    written = purged = 0
    t_insert = t_roll = t_purge = 0.0
    steps = 0
    t_all = time.perf_counter()
    for h in range(hours):
        t = start + h * 3600
        rows = hour_of_samples(args.nodes, t, args.interval, rnd)
        t0 = time.perf_counter()
        with store.transaction(durable=False):
            for i in range(0, len(rows), 50_000):
                store.insert_metrics(rows[i:i + 50_000])
        t1 = time.perf_counter()
        now = t + 3600 + GRACE
        while True:
            steps += 1
            if not r.step(store, now, args.nodes)["more"]:
                break
        t2 = time.perf_counter()
        purged += purge_raw(store, r, now)
        r.purge(store, now)
        t3 = time.perf_counter()
        written += len(rows)
        t_insert, t_roll, t_purge = t_insert + t1 - t0, t_roll + t2 - t1, t_purge + t3 - t2
        if h % 24 == 23:
            print(f"day {(h + 1) // 24}: {written:,} samples written, "
                  f"{time.perf_counter() - t_all:.0f} s", flush=True)
    elapsed = time.perf_counter() - t_all
    now = start + hours * 3600 + GRACE
    # steady state: one more minute of samples, rolled as the broker's tick rolls it
    minute = [row for row in hour_of_samples(args.nodes, now - GRACE, args.interval, rnd)
              if row[1] < now - GRACE + 60]
    with store.transaction(durable=False):
        store.insert_metrics(minute)
    t0 = time.perf_counter()
    r.step(store, now + 60, args.nodes)
    one_minute_ms = (time.perf_counter() - t0) * 1000
    if not args.database_url:
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        store.conn.commit()
        store.conn.autocommit = True
        store.conn.execute("VACUUM ANALYZE")
        store.conn.autocommit = False
    counts = {t: store.count(t) for t in TABLES}
    size = sizes(store, args.database_url, folder)
    raw_row = size["metrics"] / max(counts["metrics"], 1)
    week_samples = written + len(minute)
    year_samples = int(args.nodes * 365 * DAY / args.interval)
    rolled_bytes = size["metrics_1m"] + size["metrics_1h"]
    year_1m = size["metrics_1m"] / max(counts["metrics_1m"], 1) * args.nodes * 14 * 1440
    year_1h = size["metrics_1h"] / max(counts["metrics_1h"], 1) * args.nodes * 365 * 24
    charts = chart_times(store, 1, now + 60, args.reps, RETENTION)
    result = {
        "backend": "postgresql" if args.database_url else "sqlite",
        "commit": commit(), "nodes": args.nodes, "interval_s": args.interval, "days": args.days,
        "samples_written": week_samples, "elapsed_s": round(elapsed, 1),
        "insert_s": round(t_insert, 1), "rollup_s": round(t_roll, 1),
        "retention_s": round(t_purge, 1), "rollup_steps": steps,
        "raw_purged": purged,
        "rows": counts,
        "bytes": {t: size[t] for t in TABLES},
        "file_bytes": size["file"],
        "raw_bytes_per_row": round(raw_row, 1),
        "raw_only_week_bytes": int(raw_row * week_samples),
        "with_rollups_week_bytes": size["metrics"] + rolled_bytes,
        "raw_only_year_bytes": int(raw_row * year_samples),
        "with_rollups_year_bytes": int(size["metrics"] + year_1m + year_1h),
        "roll_one_minute_ms": round(one_minute_ms, 2),
        "chart": charts,
    }
    print(f"\n{week_samples:,} samples of {args.nodes} nodes every {args.interval:g} s over "
          f"{args.days:g} days ({result['backend']}), in {elapsed:.0f} s: insert "
          f"{t_insert:.0f} s, roll-up {t_roll:.0f} s, retention {t_purge:.0f} s\n")
    print("| table | rows | live size (with indexes) |")
    print("|---|---:|---:|")
    for t in TABLES:
        print(f"| `{t}` | {counts[t]:,} | {mib(size[t])} |")
    print(f"| database file | | {mib(size['file'])} |")
    print()
    print("| storage | a week | a year |")
    print("|---|---:|---:|")
    print(f"| raw samples only (all kept; {raw_row:.0f} B per row, measured) | "
          f"{mib(result['raw_only_week_bytes'])} | {mib(result['raw_only_year_bytes'])} |")
    print(f"| raw 24 h + 1-minute 14 d + 1-hour 1 y (the defaults) | "
          f"{mib(result['with_rollups_week_bytes'])} | {mib(result['with_rollups_year_bytes'])} |")
    print()
    print(f"rolling one minute of {args.nodes} nodes: {one_minute_ms:.1f} ms")
    print()
    print("| chart window (one node, 300 points) | resolution | points | p50 | p99 |")
    print("|---|---|---:|---:|---:|")
    for label, c in charts.items():
        print(f"| {label.replace('_raw', ' (forced raw)')} | {c['resolution']} | {c['points']} "
              f"| {c['p50_ms']:.2f} ms | {c['p99_ms']:.2f} ms |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    report(result, args.out)
    store.close()
    if not args.database_url:
        for s in ("", "-wal", "-shm"):
            try:
                os.remove(os.path.join(folder, "architect.db" + s))
            except OSError:
                pass
        os.rmdir(folder)


if __name__ == "__main__":
    main()
