"""The checker every fault test uses (TESTING.md), judged from the database and from what
the tasks themselves wrote.

A task made with run_command(log, label) appends one "label start T PID" and one
"label end T PID" line to `log` (a file every worker can write: all on this machine or in
its namespaces) around its sleep. check() then asserts:
- every acknowledged task is final and succeeded (or, with allow_queued, still queued);
- no label has two runs that overlap in time (a run that never wrote its end overlaps
  everything after its start);
- a label ran more than once only when one of its attempts was on a worker the test killed
  (`killed`: node names), or the test says so (`rerun_ok`);
- the database is consistent (integrity()).
"""

from __future__ import annotations

import shlex
from pathlib import Path


def run_command(log: str | Path, label: str, seconds: float = 0.2) -> str:
    log = shlex.quote(str(log))
    return (f'echo "{label} start $(date +%s.%N) $$" >> {log}; sleep {seconds}; '
            f'echo "{label} end $(date +%s.%N) $$" >> {log}')


def read_runs(log: str | Path) -> dict[str, list[tuple[float, float | None]]]:
    """label → [(start, end or None)] in start order, paired by the shell's pid."""
    runs: dict[str, dict[str, list]] = {}
    path = Path(log)
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        label, what, ts, pid = parts
        by_pid = runs.setdefault(label, {})
        if what == "start":
            by_pid.setdefault(pid, [float(ts), None])
        elif what == "end" and pid in by_pid:
            by_pid[pid][1] = float(ts)
    return {label: sorted((s, e) for s, e in by_pid.values()) for label, by_pid in runs.items()}


def overlapping(runs: list[tuple[float, float | None]]) -> bool:
    for (s1, e1), (s2, _e2) in zip(runs, runs[1:]):
        if e1 is None or s2 < e1:
            return True
    return False


def check(log: str | Path, acked: dict[str, int], tasks: dict[int, dict],
          killed: set[str] = frozenset(), rerun_ok: set[str] = frozenset(),
          allow_queued: bool = False) -> dict:
    """acked: label → task id of every acknowledged submit; tasks: task id → the task as the
    API gives it, with events (task.get events=true). Returns a summary; fails with what is
    wrong."""
    runs = read_runs(log)
    problems = []
    reruns = []
    for label, task_id in acked.items():
        task = tasks.get(task_id)
        if task is None:
            problems.append(f"{label}: task {task_id} is not in the database")
            continue
        if task["status"] != "succeeded" and not (allow_queued and task["status"] == "queued"):
            problems.append(f"{label}: task {task_id} ended {task['status']}: "
                            f"{task.get('error')}")
        mine = runs.get(label, [])
        if task["status"] == "succeeded" and not mine:
            problems.append(f"{label}: task {task_id} succeeded but never ran")
        if overlapping(mine):
            problems.append(f"{label}: task {task_id} had overlapping runs {mine}")
        if len(mine) > 1:
            nodes = {e.get("node") for e in task.get("events") or [] if e.get("node")}
            if label not in rerun_ok and not (nodes & set(killed)):
                problems.append(f"{label}: task {task_id} ran {len(mine)} times on "
                                f"{sorted(nodes)}, and no worker there was killed")
            reruns.append(label)
    assert not problems, "checker: " + "; ".join(problems[:20]) + \
        (f" (+{len(problems) - 20} more)" if len(problems) > 20 else "")
    return {"acked": len(acked), "reruns": reruns, "runs": sum(len(r) for r in runs.values())}


def integrity(database_url: str) -> None:
    """PostgreSQL's side of the checker (its PRAGMA integrity_check): amcheck's
    bt_index_check on every B-tree index of the schema (the test server's user is a
    superuser), every table reads in full, ids and idempotency keys are unique, and every
    final task has its finish time."""
    import psycopg
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.amname = 'btree' AND n.nspname = 'public'").fetchall()
        for (index,) in indexes:
            conn.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
        assert indexes, "no index checked"
        for table in ("nodes", "tasks", "task_events", "task_output", "alerts", "leader"):
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        dup = conn.execute("SELECT count(*) - count(DISTINCT id) FROM tasks").fetchone()[0]
        assert dup == 0, f"{dup} duplicate task ids"
        keys = conn.execute("SELECT count(idempotency_key) - count(DISTINCT idempotency_key) "
                            "FROM tasks").fetchone()[0]
        assert keys == 0, f"{keys} duplicate idempotency keys"
        unfinished = conn.execute(
            "SELECT count(*) FROM tasks WHERE status IN ('succeeded', 'failed', 'timed_out', "
            "'cancelled') AND finished_at IS NULL").fetchone()[0]
        assert unfinished == 0, f"{unfinished} final tasks without finished_at"
