#!/usr/bin/env python3
"""Every benchmark figure in one run, with the peers in the same run, as one table.

  tasks      Architect (a broker, 2 worker processes x 4 slots, the default ipc bus, SQLite),
             Huey (SqliteHuey, a consumer of 2 processes) and Celery 5 (Redis broker and
             result backend, a prefork worker of 2 processes), each in two patterns: one
             at a time (submit, then wait for its result, per task) and batched (submit
             everything, then collect every result); plus Architect's durable-ack latency
             and submit-to-start latency on an idle cluster
  memory     the broker's RSS under 10,000 nodes beating every 5 s (bench_heartbeats.py
             --duration), its slope after warm-up
  history    1,000,000 finished tasks: GET /api/tasks, /api/cluster/flow and the UI tasks
             callback (bench_history.py)
  scale      throughput by workers, heartbeat ingest by nodes, dispatch cost by connected
             workers (bench_scale.py)

Huey and Celery come with the bench extra (pip install -e '.[bench]'); Celery also needs
redis-server (Debian's redis-server: installed here when run as root and missing). A peer
that is not there is reported as such, not hidden. Prints the table, writes JSON (--out).
A full run takes about 20 minutes (--quick: about 6).

    .venv/bin/python scripts/bench.py [--quick] [--only tasks,memory,history,scale]
        [--memory-seconds 600] [--history-tasks 1000000] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from scripts.benchlib.common import commit  # noqa: E402

PY = sys.executable


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def ensure_redis() -> None:
    """Debian's redis-server for the Celery peer, when we may install it."""
    if shutil.which("redis-server") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print("installing redis-server (for the Celery peer) ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], env=env,
                   stdout=subprocess.DEVNULL, check=False)
    # Debian's package may start its own server: ours run on private ports, so stop it
    subprocess.run(["sh", "-c", "command -v service >/dev/null && service redis-server stop"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def bench_tasks(args, tmp: Path) -> dict:
    from bench_tasks import bench_architect, bench_huey, median_of
    from benchlib.celery_peer import available, bench_celery
    out: dict = {"architect": [], "huey": [], "celery": []}
    why_celery = available()
    try:
        import huey  # noqa: F401
        why_huey = None
    except ImportError:
        why_huey = "not installed: pip install -e '.[bench]'"
    for i in range(args.repeats):            # interleaved, so drift hits every system alike
        out["architect"].append(bench_architect(args.tasks, args.single, 2, 4,
                                                tmp / f"architect-{i}", "ipc"))
        print(f"  architect run {i + 1}: {out['architect'][-1]['tasks_per_second']} batched, "
              f"{out['architect'][-1]['one_at_a_time_per_second']} one at a time",
              file=sys.stderr)
        if why_huey is None:
            (tmp / f"huey-{i}").mkdir(parents=True, exist_ok=True)
            out["huey"].append(bench_huey(args.peer_tasks, args.single, 2, tmp / f"huey-{i}"))
            print(f"  huey run {i + 1}: {out['huey'][-1]['tasks_per_second']} batched, "
                  f"{out['huey'][-1]['one_at_a_time_per_second']} one at a time", file=sys.stderr)
        if why_celery is None:
            out["celery"].append(bench_celery(args.peer_tasks, args.single, 2,
                                              tmp / f"celery-{i}"))
            print(f"  celery run {i + 1}: {out['celery'][-1]['tasks_per_second']} batched, "
                  f"{out['celery'][-1]['one_at_a_time_per_second']} one at a time",
                  file=sys.stderr)
    return {"architect": median_of(out["architect"]),
            "huey": median_of(out["huey"]) if out["huey"] else {"missing": why_huey},
            "celery": median_of(out["celery"]) if out["celery"] else {"missing": why_celery},
            "runs": out}


def run_json(cmd: list[str], out: Path) -> dict:
    subprocess.run([PY, *cmd, "--out", str(out)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="tasks,memory,history,scale")
    ap.add_argument("--quick", action="store_true",
                    help="smaller runs: 100,000-task history, 2 minutes of heartbeats, "
                         "no 50,000-node point")
    ap.add_argument("--tasks", type=int, default=20_000, help="Architect's batched run")
    ap.add_argument("--peer-tasks", type=int, default=5_000, help="each peer's batched run")
    ap.add_argument("--single", type=int, default=2_000, help="tasks of the one-at-a-time run")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--memory-seconds", type=float, default=600.0)
    ap.add_argument("--history-tasks", type=int, default=1_000_000)
    ap.add_argument("--out", default="bench.json")
    args = ap.parse_args()
    if args.quick:
        args.memory_seconds, args.history_tasks = 120.0, 100_000
    parts = {p.strip() for p in args.only.split(",")}
    measured = commit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-all-"))
    started = time.time()
    res: dict = {"commit": measured, "machine": machine(),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if "tasks" in parts:
        ensure_redis()
        print("tasks: Architect, Huey, Celery ...", file=sys.stderr)
        res["tasks"] = bench_tasks(args, tmp)
    if "memory" in parts:
        print(f"memory: 10,000 nodes for {args.memory_seconds:.0f} s ...", file=sys.stderr)
        res["memory"] = run_json(["scripts/bench_heartbeats.py", "--nodes", "10000", "--count",
                                  "1000000", "--duration", str(args.memory_seconds), "--warmup",
                                  str(min(300.0, args.memory_seconds / 4))], tmp / "memory.json")
    if "history" in parts:
        print(f"history: {args.history_tasks:,} finished tasks ...", file=sys.stderr)
        res["history"] = run_json(["scripts/bench_history.py", "--tasks",
                                   str(args.history_tasks)], tmp / "history.json")
    if "scale" in parts:
        print("scale: workers, nodes, dispatch ...", file=sys.stderr)
        res["scale"] = run_json(["scripts/bench_scale.py", "--nodes",
                                 "1000,10000" if args.quick else "1000,10000,50000"],
                                tmp / "scale.json")
    res["seconds"] = round(time.time() - started)
    print_table(res)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"\nwritten: {args.out}")


def _ratio(a, b) -> str:
    return f"{a / b:.1f}x" if a and b else "-"


def print_table(res: dict) -> None:
    rows: list[tuple] = []   # (figure, architect, huey, celery, ratio, target, verdict)
    t = res.get("tasks")
    if t:
        a, h, c = t["architect"], t["huey"], t["celery"]

        def peer(d, k):
            return d.get(k, "n/a") if "missing" not in d else "n/a"
        for key, name, target in (("one_at_a_time_per_second", "one at a time, tasks/s", 5.0),
                                  ("tasks_per_second", "batched, tasks/s", 10.0)):
            peers = [v for v in (peer(h, key), peer(c, key)) if isinstance(v, (int, float))]
            best = max(peers) if peers else None
            ok = best is not None and a[key] >= target * best
            extra = (key == "tasks_per_second" and a[key] < 10_000)
            rows.append((name, a[key], peer(h, key), peer(c, key),
                         _ratio(a[key], best) + " best peer", f">= {target:g}x" +
                         (", >= 10,000/s" if key == "tasks_per_second" else ""),
                         "MET" if ok and not extra else "NOT MET"))
        rows.append(("durable submit ack p50, ms", a["submit_ack_p50_ms"], "", "", "", "<= 1",
                     "MET" if a["submit_ack_p50_ms"] <= 1 else "NOT MET"))
        rows.append(("submit-to-start p50, ms", a["submit_to_start_p50_ms"],
                     f"{peer(h, 'submit_to_start_p50_ms')} (to result)",
                     f"{peer(c, 'submit_to_start_p50_ms')} (to result)", "", "<= 0.5",
                     "MET" if a["submit_to_start_p50_ms"] <= 0.5 else "NOT MET"))
    m = res.get("memory")
    if m:
        slope = m["paced_rss_slope_mib_per_hour"]
        rows.append((f"broker RSS, 10k nodes, {m['paced_seconds']} s, MiB",
                     f"{m['paced_rss_after_warmup_mib']} -> {m['paced_rss_end_mib']}", "", "",
                     f"slope {slope} MiB/h", "flat", "MET" if abs(slope) < 5 else "NOT MET"))
    hist = res.get("history")
    if hist:
        s = hist["summary"]
        n = f"{s['tasks'] // 1000}k" if s["tasks"] < 1_000_000 else f"{s['tasks'] // 1_000_000}M"
        for key, name, target in (("api_tasks_worst_p99_ms", "GET /api/tasks worst p99, ms", 50),
                                  ("flow_worst_p99_ms", "/api/cluster/flow worst p99, ms", 200),
                                  ("ui_tasks_p99_ms", "UI tasks callback p99, ms", 200)):
            rows.append((f"{n} history: {name}", s[key], "", "", "", f"<= {target}",
                         "MET" if s[key] <= target else "NOT MET"))
        rows.append((f"{n} history: database size, MiB", s["database_mib"], "", "", 
                     f"{s['database_bytes_per_task']} B/task", "reported", ""))
    widths = (46, 18, 18, 18, 20, 22, 8)
    heads = ("figure", "Architect", "Huey", "Celery", "ratio", "target", "")
    print(f"\n{res['date']}, commit {res['commit']}, {res['machine']}")
    print("".join(h.ljust(w) for h, w in zip(heads, widths)))
    for r in rows:
        print("".join(str(v).ljust(w) for v, w in zip(r, widths)))
    sc = res.get("scale")
    if sc:
        from bench_scale import table
        table("throughput by worker processes (4 slots each, batched)", sc.get("workers", []))
        table("heartbeat ingest and broker memory by node count", sc.get("nodes", []))
        table("dispatch cost by connected workers (1 slot each, simulated)",
              sc.get("dispatch", []))
    if hist:
        print(f"\nhistory, {hist['summary']['tasks']:,} finished tasks")
        for name, r in hist["requests"].items():
            print(f"  {name:38}p50 {r['p50_ms']:>7} ms  p99 {r['p99_ms']:>7} ms")
    if t:
        for name in ("huey", "celery"):
            if "missing" in t[name]:
                print(f"\n{name}: {t[name]['missing']}")


if __name__ == "__main__":
    main()
