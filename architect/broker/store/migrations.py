"""The schema of architect.db as sqlite-utils Migrations, applied in order when the writer
opens the database (open_db). Each runs once; the `_sqlite_migrations` table records them.
Table names are a contract (ARCHITECTURE.md §3); a change is a new migration, never an edit.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("architect")


@migrations()
def m001_nodes_metrics_alerts(db: sqlite_utils.Database) -> None:
    db["nodes"].create({
        "id": int, "name": str, "hostname": str, "ip_address": str, "capabilities": str,
        "ssh": str, "status": str, "reasons": str, "drained": int, "registered_at": float,
        "last_seen": float, "last_metrics": str, "source": str,
    }, pk="id", not_null={"name"})
    db["nodes"].create_index(["name"], unique=True)
    db["metrics"].create({
        "id": int, "node_id": int, "ts": float, "cpu_percent": float, "memory_percent": float,
        "disk_percent": float, "load_1": float, "load_5": float, "load_15": float,
        "net_bytes_sent": int, "net_bytes_recv": int, "process_count": int,
    }, pk="id")
    db["metrics"].create_index(["node_id", "ts"])
    db["metrics"].create_index(["ts"])
    db["alerts"].create({
        "id": int, "node_id": int, "node_name": str, "level": str, "previous_level": str,
        "reasons": str, "message": str, "status": str, "created_at": float,
        "resolved_at": float, "acknowledged_at": float, "acknowledged_by": str,
    }, pk="id")
    db["alerts"].create_index(["status"])
    db["alerts"].create_index(["node_id", "created_at"])


@migrations()
def m002_tasks(db: sqlite_utils.Database) -> None:
    db["tasks"].create({
        "id": int, "task_type": str, "payload": str, "requirements": str, "node": str,
        "priority": int, "status": str, "attempt": int, "max_attempts": int, "retries": int,
        "retry_count": int, "retry_backoff": float, "timeout": float, "idempotency_key": str,
        "created_at": float, "updated_at": float, "assigned_at": float, "started_at": float,
        "finished_at": float, "assigned_node": str, "worker_id": str, "placement": str,
        "result": str, "error": str, "not_before": float, "cancel_requested": int,
        "submitted_by": str,
    }, pk="id")
    db["tasks"].create_index(["status"])
    db["tasks"].create_index(["assigned_node", "status"])
    db["tasks"].create_index(["idempotency_key"], unique=True)
    db["tasks"].create_index(["created_at"])
    db["task_events"].create({"id": int, "task_id": int, "ts": float, "event": str,
                              "attempt": int, "node": str, "detail": str}, pk="id")
    db["task_events"].create_index(["task_id"])
    db["task_output"].create({"id": int, "task_id": int, "attempt": int, "seq": int,
                              "stream": str, "data": str, "ts": float}, pk="id")
    db["task_output"].create_index(["task_id", "attempt", "seq"])


@migrations()
def m003_ssh_audit(db: sqlite_utils.Database) -> None:
    db["ssh_audit"].create({
        "id": int, "ts": float, "who": str, "action": str, "node": str, "node_id": int,
        "target": str, "command": str, "status": str, "exit_code": int, "duration": float,
        "error": str, "finished_at": float, "batch": str,
    }, pk="id")
    db["ssh_audit"].create_index(["ts"])
    db["ssh_audit"].create_index(["node"])


@migrations()
def m004_roles_audit(db: sqlite_utils.Database) -> None:
    """Web users and API / join tokens (issue: roles), the audit of control requests, and
    security alerts (a bus key claiming another node's name) beside health alerts."""
    db["alerts"].add_column("kind", str)
    db["alerts"].add_column("source", str)
    db["users"].create({"name": str, "role": str, "password_hash": str, "created_at": float,
                        "updated_at": float, "created_by": str}, pk="name")
    db["tokens"].create({"id": int, "kind": str, "name": str, "role": str, "token_hash": str,
                         "created_at": float, "created_by": str, "expires_at": float,
                         "uses_left": int, "used_count": int, "last_used_at": float,
                         "revoked_at": float}, pk="id")
    db["tokens"].create_index(["token_hash"], unique=True)
    db["audit"].create({"id": int, "ts": float, "who": str, "role": str, "via": str,
                        "addr": str, "method": str, "target": str, "params": str,
                        "outcome": str, "error": str}, pk="id")
    db["audit"].create_index(["ts"])
    db["audit"].create_index(["who", "ts"])


@migrations()
def m005_leader(db: sqlite_utils.Database) -> None:
    """The CURVE key store of several masters (keymirror.py). The lease row and fencing of
    PostgreSQL's m005_leader have no SQLite twin: on SQLite there is one master."""
    db["bus_keys"].create({"folder": str, "name": str, "public": str, "secret": str,
                           "role": str}, pk=("folder", "name"), not_null={"public"})


@migrations()
def m006_history_scale(db: sqlite_utils.Database) -> None:
    """A long history stays cheap (issue 12): finished_at is indexed (the overview's tasks
    per minute), and an hourly roll-up counts the tasks that ended by the hour they were
    created, node and state (the flow of long windows), filled here from the tasks so far."""
    db["tasks"].create_index(["finished_at"])
    db["task_rollup"].create({"hour": int, "node": str, "status": str, "count": int},
                             pk=("hour", "node", "status"), not_null={"node", "count"})
    db.execute("INSERT INTO task_rollup (hour, node, status, count) "
               "SELECT CAST(created_at / 3600 AS INTEGER) * 3600, COALESCE(assigned_node, ''), "
               "status, COUNT(*) FROM tasks "
               "WHERE status IN ('succeeded', 'failed', 'timed_out', 'cancelled') GROUP BY 1, 2, 3")


@migrations()
def m007_schedules(db: sqlite_utils.Database) -> None:
    """Schedules (cron or interval) and each due time's run (issue 13)."""
    db["schedules"].create({
        "name": str, "spec": str, "cron": str, "every": float, "tz": str, "missed": str,
        "overlap": str, "paused": int, "next_due": float, "last_due": float, "last_task": int,
        "last_outcome": str, "created_at": float, "updated_at": float, "created_by": str,
    }, pk="name")
    db["schedule_runs"].create({"id": int, "schedule": str, "due": float, "at": float,
                                "outcome": str, "task_id": int, "detail": str}, pk="id")
    db["schedule_runs"].create_index(["schedule", "id"])
    db["schedule_runs"].create_index(["task_id"])


@migrations()
def m008_task_time_and_retry_rules(db: sqlite_utils.Database) -> None:
    """A task's expiry, and which failures its automatic retries apply to (issue 13)."""
    db["tasks"].add_column("expires_at", float)
    db["tasks"].add_column("retry_on", str)
    db["tasks"].add_column("no_retry_on", str)


@migrations()
def m009_workflows(db: sqlite_utils.Database) -> None:
    """depends_on (task ids, JSON) and whether their results are handed on (issue 13)."""
    db["tasks"].add_column("depends_on", str)
    db["tasks"].add_column("pass_results", int)
    db["task_deps"].create({"task_id": int, "dep_id": int}, pk=("task_id", "dep_id"))
    db["task_deps"].create_index(["dep_id"])


@migrations()
def m010_unique_tasks(db: sqlite_utils.Database) -> None:
    """unique_key / unique_until: a second submit in the window gets the first task."""
    db["tasks"].add_column("unique_key", str)
    db["tasks"].add_column("unique_until", float)
    db["tasks"].create_index(["unique_until"])


@migrations()
def m011_task_labels(db: sqlite_utils.Database) -> None:
    """labels: {key: value} to filter and search tasks by (issue 13)."""
    db["tasks"].add_column("labels", str)


@migrations()
def m012_soft_timeout(db: sqlite_utils.Database) -> None:
    """soft_timeout: a shell task's SIGTERM before its hard timeout (issue 13)."""
    db["tasks"].add_column("soft_timeout", float)


@migrations()
def m013_queues(db: sqlite_utils.Database) -> None:
    """A task's queue, and the queues' limits set at runtime (issue 13)."""
    db["tasks"].add_column("queue", str)
    db["queues"].create({"name": str, "concurrency": int, "rate": float, "rate_text": str},
                        pk="name")


@migrations()
def m014_alert_rules(db: sqlite_utils.Database) -> None:
    """Per-node health thresholds (NULL: the default) and custom alert rules (issue 14)."""
    db["node_thresholds"].create({
        "node": str, "cpu_warning": float, "cpu_critical": float, "memory_warning": float,
        "memory_critical": float, "disk_warning": float, "disk_critical": float,
        "load_warning": float, "load_critical": float, "updated_at": float, "updated_by": str,
    }, pk="node")
    db["alert_rules"].create({"name": str, "expr": str, "level": str, "node": str,
                              "capability": str, "created_at": float, "created_by": str},
                             pk="name", not_null={"expr"})


@migrations()
def m015_notifications(db: sqlite_utils.Database) -> None:
    """Notifications (issue 14): channels, routing rules, silences, and one row per delivery
    attempt (architect/broker/store/notify_sql.py)."""
    db["notify_channels"].create({"name": str, "kind": str, "config": str,
                                  "created_at": float, "created_by": str}, pk="name")
    db["notify_rules"].create({"name": str, "channels": str, "min_level": str, "node": str,
                               "matchers": str, "repeat_interval": float, "send_resolved": int,
                               "created_at": float, "created_by": str}, pk="name")
    db["silences"].create({"id": int, "node": str, "matchers": str, "starts_at": float,
                           "ends_at": float, "comment": str, "created_by": str,
                           "created_at": float, "kind": str}, pk="id")
    db["silences"].create_index(["ends_at"])
    db["notifications"].create({"id": int, "delivery": int, "attempt": int, "channel": str,
                                "kind": str, "event": str, "rule": str, "alert_id": int,
                                "node": str, "outcome": str, "error": str, "detail": str,
                                "at": float, "duration": float, "retry_at": float}, pk="id")
    db["notifications"].create_index(["delivery"])
    db["notifications"].create_index(["channel", "id"])
    db["notifications"].create_index(["at"])


@migrations()
def m016_metrics_rollups(db: sqlite_utils.Database) -> None:
    """Metrics roll-ups (issue 14): per node and minute (metrics_1m) and hour (metrics_1h),
    the samples counted and min / avg / max of the charted metrics, each level with its own
    retention (rollup.py), and how far each level is rolled (metrics_rollup_state). Created
    empty: the broker's tick fills them from the raw samples there are, in chunks."""
    values = ", ".join(f"{m} REAL, {m}_min REAL, {m}_max REAL" for m in
                       ("cpu_percent", "memory_percent", "disk_percent", "load_1"))
    for table in ("metrics_1m", "metrics_1h"):   # clustered by node and time: a chart's read
        db.execute(f"CREATE TABLE {table} (node_id INTEGER NOT NULL, ts INTEGER NOT NULL, "
                   f"samples INTEGER NOT NULL, {values}, PRIMARY KEY (node_id, ts)) "
                   "WITHOUT ROWID")
        db.execute(f"CREATE INDEX idx_{table}_ts ON {table} (ts)")   # retention
    db.execute("CREATE TABLE metrics_rollup_state (level TEXT PRIMARY KEY, "
               "done_until REAL NOT NULL)")
