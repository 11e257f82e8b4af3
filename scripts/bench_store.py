#!/usr/bin/env python3
"""Store benchmark: task throughput with the broker on PostgreSQL beside SQLite, on the same
machine, in the same run, with the same settings.

The workload is scripts/bench_tasks.py's, called from here (bench_tasks.bench_architect):
a real broker process (`architect broker`, the default ipc loopback bus) and 2 local worker
processes x 16 slots running the built-in no-op python task; two calling patterns, batched
(task.submit_many in batches of 1,000, then wait on every id) and one at a time (submit()
then wait(id) per task), with submit-to-start p50/p99 from the latter. Only the store
differs:
  sqlite       DATA_DIR/architect.db (synchronous=FULL for accepted submissions)
  pg           ARCHITECT_DATABASE_URL: a real PostgreSQL on loopback (tests/pg.py: initdb
               into a temp dir, fsync=on), a fresh database per run; the broker is then a
               master holding the lease, every transaction fenced by its epoch
  pg+standby   the same, with a second master (`architect broker`, its own data dir, the
               same database) started once the first is active: it stays standby
               (polls the lease every 0.5 s) and is stopped first, so it never takes over
The PostgreSQL server runs on the same 2 cores, as it would beside a small master.

Each kind runs --repeats times, interleaved (sqlite, pg, pg+standby, sqlite, ...); the table
shows medians, with each figure's ratio to SQLite. Target: PostgreSQL >= 0.5x SQLite
(batched). Prints the table, writes JSON.

    .venv/bin/python scripts/bench_store.py [--tasks 10000] [--latency-samples 300]
        [--repeats 3] [--kinds sqlite,pg,pg+standby] [--out bench-store.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts import bench_tasks  # noqa: E402
from scripts.benchlib.common import commit, interrupted, write_results  # noqa: E402
from tests.helpers import wait_for  # noqa: E402
from tests.pg import PgServer, pg_bin  # noqa: E402

KINDS = ("sqlite", "pg", "pg+standby")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lease_sessions(url: str) -> list[str]:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'architect-lease %' ORDER BY 1").fetchall()]


def leader_holder(url: str) -> str:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT holder FROM leader WHERE id = 1").fetchone()[0] or ""


def db_stats(pg: PgServer, name: str) -> dict:
    """Commits and rows written in database `name` so far (pg_stat_database)."""
    import psycopg
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, "
                           "tup_deleted FROM pg_stat_database WHERE datname = %s",
                           (name,)).fetchone()
    return dict(zip(("commits", "rollbacks", "inserted", "updated", "deleted"), row or ()))


@contextmanager
def standby_beside(url: str, tmp: Path, info: dict):
    """While inside, bench_tasks.bench_architect's cluster gets a second master on `url`.
    It is spawned just before the first worker (the bench's broker answered ping by then:
    it holds the lease), and stopped just before the cluster is (so it never takes over).
    `info` gets the standby's CPU seconds over the measured part, and whether it stayed
    standby."""
    spawn, stop_cluster = bench_tasks.spawn, bench_tasks.stop
    standby: list = []

    def spawn_hook(args, env, log):
        if not standby and list(args[:3]) == ["-m", "architect", "worker"]:
            senv = dict(env, ARCHITECT_DATA_DIR=str(tmp / "standby" / "data"),
                        ARCHITECT_STATE_DIR=str(tmp / "standby" / "state"))
            standby.append(spawn(["-m", "architect", "broker"], senv, log))
            wait_for(lambda: len(lease_sessions(url)) >= 2, 30,
                     what="the standby's lease session")
            info["leader_at_start"] = leader_holder(url)
            info["cpu_at_start"] = cpu_seconds(standby[0].pid)
            info["t_start"] = time.monotonic()
        return spawn(args, env, log)

    def stop_hook(procs):
        if standby:
            p = standby[0]
            info["standby_alive"] = p.poll() is None
            if info["standby_alive"]:
                info["standby_cpu_seconds"] = round(cpu_seconds(p.pid) - info.pop("cpu_at_start"),
                                                    3)
                info["standby_wall_seconds"] = round(time.monotonic() - info.pop("t_start"), 3)
            info["leader_at_end"] = leader_holder(url)
            info["stayed_standby"] = info["leader_at_end"] == info["leader_at_start"]
            stop_cluster(standby)
        stop_cluster(procs)

    bench_tasks.spawn, bench_tasks.stop = spawn_hook, stop_hook
    try:
        yield
    finally:
        bench_tasks.spawn, bench_tasks.stop = spawn, stop_cluster
        stop_cluster(standby)


def run_one(kind: str, pg: PgServer | None, args, tmp: Path) -> dict:
    """One bench_tasks.bench_architect run with the store `kind`."""
    saved = os.environ.pop("ARCHITECT_DATABASE_URL", None)
    info: dict = {}
    name = tmp.name.replace("+", "_").replace("-", "_")
    try:
        if kind == "sqlite":
            return bench_tasks.bench_architect(args.tasks, args.latency_samples, args.workers,
                                               args.slots, tmp, "ipc")
        url = pg.create_database(name)
        os.environ["ARCHITECT_DATABASE_URL"] = url
        if kind == "pg":
            result = bench_tasks.bench_architect(args.tasks, args.latency_samples,
                                                 args.workers, args.slots, tmp, "ipc")
        else:
            with standby_beside(url, tmp, info):
                result = bench_tasks.bench_architect(args.tasks, args.latency_samples,
                                                     args.workers, args.slots, tmp, "ipc")
            if not info.get("stayed_standby"):
                print(f"  WARNING: the standby did not stay standby: {info}", file=sys.stderr)
            result.update({k: v for k, v in info.items() if k.startswith(("standby_",
                                                                          "stayed"))})
        # the whole run, start and warm-up included (the broker has exited: its stats are in)
        time.sleep(0.6)
        stats = db_stats(pg, name)
        done = args.tasks + args.latency_samples + 200
        result["db_commits_per_task"] = round(stats.get("commits", 0) / done, 2)
        result["db_rows_written_per_task"] = round(sum(stats.get(k, 0) for k in (
            "inserted", "updated", "deleted")) / done, 2)
        return result
    finally:
        for data in (tmp / "data", tmp / "standby" / "data"):   # keep the logs only
            shutil.rmtree(data, ignore_errors=True)
        os.environ.pop("ARCHITECT_DATABASE_URL", None)
        if saved is not None:
            os.environ["ARCHITECT_DATABASE_URL"] = saved
        if kind != "sqlite" and pg is not None:
            try:
                pg.drop_database(pg.url(name))
            except Exception:
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000, help="tasks of the batched run")
    ap.add_argument("--latency-samples", type=int, default=300,
                    help="tasks of the one-at-a-time run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"stores to measure, comma-separated: {', '.join(KINDS)}")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per kind, interleaved; the table shows medians")
    ap.add_argument("--out", "--json", dest="out", default="bench-store.json")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        ap.error(f"--kinds takes {', '.join(KINDS)}")
    signal.signal(signal.SIGTERM, interrupted)   # clean up as on Ctrl-C
    measured = commit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    pg = None
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    try:
        if any(k != "sqlite" for k in kinds):
            pg = PgServer().start()   # its own temp dir, the postgres user's when root
        for i in range(args.repeats):
            for kind in kinds:
                r = run_one(kind, pg, args, tmp / f"{kind.replace('+', '_')}-{i}")
                runs[kind].append(r)
                extra = (f", standby used {r['standby_cpu_seconds']} s CPU in "
                         f"{r['standby_wall_seconds']} s" if "standby_cpu_seconds" in r else "")
                print(f"  {kind} run {i + 1}: {r['tasks_per_second']} tasks/s batched, "
                      f"{r['one_at_a_time_per_second']}/s one at a time, "
                      f"{r['succeeded']}/{r['tasks']} succeeded{extra}", file=sys.stderr)
    finally:
        if pg is not None:
            pg.cleanup()
    print(f"  logs in {tmp}", file=sys.stderr)
    results = {k: bench_tasks.median_of(runs[k]) for k in kinds}
    names = list(results)
    keys = [k for k in dict.fromkeys(k for r in results.values() for k in r)
            if k not in ("endpoint", "stayed_standby", "standby_alive")]
    print(f"\n{'metric (median of ' + str(args.repeats) + ')':30}"
          + "".join(f"{name:>14}" for name in names))
    for k in keys:
        print(f"{k:30}" + "".join(f"{results[name].get(k, '-'):>14}" for name in names))
    ratios = {}
    if "sqlite" in results:
        base = results["sqlite"]
        print(f"\n{'ratio to sqlite':30}" + "".join(f"{name:>14}" for name in names))
        for k in ("tasks_per_second", "one_at_a_time_per_second", "submit_to_start_p50_ms",
                  "submit_to_start_p99_ms"):
            row = {name: round(results[name][k] / base[k], 2) for name in names if base[k]}
            ratios[k] = row
            print(f"{k:30}" + "".join(f"{str(row.get(name, '-')) + 'x':>14}" for name in names))
    if "pg" in results and "pg+standby" in results:
        pg_r, sb = results["pg"], results["pg+standby"]
        ratios["standby_cost"] = {k: round(sb[k] / pg_r[k], 2) for k in
                                  ("tasks_per_second", "one_at_a_time_per_second")}
        print(f"\npg+standby / pg: batched {ratios['standby_cost']['tasks_per_second']}x, "
              f"one at a time {ratios['standby_cost']['one_at_a_time_per_second']}x; the "
              f"standby used {sb.get('standby_cpu_seconds', '-')} s CPU in "
              f"{sb.get('standby_wall_seconds', '-')} s (median), stayed standby in "
              f"{sum(bool(r.get('stayed_standby')) for r in runs['pg+standby'])}"
              f"/{len(runs['pg+standby'])} runs")
    if "pg" in ratios.get("tasks_per_second", {}):
        ratio = ratios["tasks_per_second"]["pg"]
        print(f"target: PostgreSQL >= 0.5x SQLite (batched): {ratio}x "
              f"{'MET' if ratio >= 0.5 else 'NOT MET'}")
    lost = {k: sum(r["tasks"] - r["succeeded"] for r in runs[k]) for k in kinds}
    if any(lost.values()):
        print(f"WARNING: tasks not succeeded: {lost}")
    results["ratio_to_sqlite"] = ratios
    results["runs"] = runs
    results["machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                          "postgresql": pg_bin().parts[-2], "commit": measured}
    write_results(results, args.out, measured)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:   # everything started is stopped by then
        sys.exit("interrupted")
