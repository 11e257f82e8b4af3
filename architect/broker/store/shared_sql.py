"""The SQL that is the same on both backends, built in a backend's placeholder style ("?" for
SQLite, "%s" for PostgreSQL): the row formats of the store's interface (the column lists),
the group commit's upserts, the filters of the task and alert lists. Module-level helpers
for sqlite.Store and postgres.Store; the methods written once over a backend's _fetch /
_execmany / MARK are in shared_queries.py, the contract in base.py.
"""

from __future__ import annotations

from architect.broker.tasks import TASK_COLUMNS

# Row formats of the interface (tuples are in these orders; dicts have these keys).
NODE_COLUMNS = ("id", "name", "hostname", "ip_address", "capabilities", "ssh", "status",
                "reasons", "drained", "registered_at", "last_seen", "last_metrics", "source")
JSON_NODE_COLUMNS = ("capabilities", "ssh", "reasons", "last_metrics")
METRIC_COLUMNS = ("node_id", "ts", "cpu_percent", "memory_percent", "disk_percent", "load_1",
                  "load_5", "load_15", "net_bytes_sent", "net_bytes_recv", "process_count")
ALERT_COLUMNS = ("id", "node_id", "node_name", "level", "previous_level", "reasons", "message",
                 "status", "created_at", "resolved_at", "acknowledged_at", "acknowledged_by",
                 "kind", "source")
AUDIT_COLUMNS = ("id", "ts", "who", "action", "node", "node_id", "target", "command", "status",
                 "exit_code", "duration", "error", "finished_at", "batch")  # ssh_audit
AUDIT_LOG_COLUMNS = ("id", "ts", "who", "role", "via", "addr", "method", "target", "params",
                     "outcome", "error")  # audit (control requests)
TOKEN_COLUMNS = ("id", "kind", "name", "role", "token_hash", "created_at", "created_by",
                 "expires_at", "uses_left", "used_count", "last_used_at", "revoked_at")
TABLES = ("nodes", "metrics", "tasks", "task_events", "task_output", "alerts", "ssh_audit",
          "users", "tokens", "audit", "bus_keys", "task_rollup", "schedules", "schedule_runs",
          "task_deps", "queues", "metrics_1m", "metrics_1h",
          "notify_channels", "notify_rules", "silences", "notifications",
          "node_thresholds", "alert_rules")
# the schedules row: architect.broker.schedules.COLUMNS, `spec` JSON-encoded, paused 0 / 1
SCHEDULE_RUN_COLUMNS = ("schedule", "due", "at", "outcome", "task_id", "detail")


def write_sql(mark: str) -> tuple[str, str, str, str, str]:
    """The group commit's statements in a backend's placeholder style ("?" or "%s"):
    upserts of nodes, ssh_audit, tasks and alerts by id, and the metrics insert (the SQL is
    the same on SQLite and PostgreSQL)."""
    def upsert(table: str, columns: tuple[str, ...]) -> str:
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "id")
        return (f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(mark for _ in columns)}) "
                f"ON CONFLICT (id) DO UPDATE SET {sets}")
    metrics = (f"INSERT INTO metrics ({', '.join(METRIC_COLUMNS)}) "
               f"VALUES ({', '.join(mark for _ in METRIC_COLUMNS)})")
    return (upsert("nodes", NODE_COLUMNS), upsert("ssh_audit", AUDIT_COLUMNS),
            upsert("tasks", TASK_COLUMNS), upsert("alerts", ALERT_COLUMNS), metrics)


def _schedule_upsert(mark: str) -> str:
    from architect.broker.schedules import COLUMNS
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "name")
    return (f"INSERT INTO schedules ({', '.join(COLUMNS)}) VALUES "
            f"({', '.join(mark for _ in COLUMNS)}) ON CONFLICT (name) DO UPDATE SET {sets}")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


ALERT_KINDS = ("level", "flapping", "rule", "security")   # "level": kind is NULL


def alert_filters(mark: str, all_=False, node_id=None, level=None, kind=None,
                  since=None) -> tuple[list[str], list]:
    """WHERE clauses and parameters for store.alerts (the same on both backends)."""
    clauses, params = [], []
    if not all_:
        clauses.append("status = 'active'")
    for col, value in (("node_id", node_id), ("level", level)):
        if value is not None:
            clauses.append(f"{col} = {mark}")
            params.append(value)
    if kind == "level":
        clauses.append("kind IS NULL")
    elif kind is not None:
        clauses.append(f"kind = {mark}")
        params.append(kind)
    if since is not None:
        clauses.append(f"created_at >= {mark}")
        params.append(since)
    return clauses, params


def task_filters(mark: str, status=None, node=None, task_type=None, label=None,
                 search=None) -> tuple[str, list]:
    """The WHERE clause (without WHERE; '' for none) and its parameters of the task list's
    filters, in a backend's placeholder style. label: "key=value" (the labels column is
    compact JSON, as fastjson writes it); search: a substring of the payload (command or
    function), the node, the labels or the error."""
    clauses, params = [], []
    for col, value in (("status", status), ("assigned_node", node), ("task_type", task_type)):
        if value is not None:
            clauses.append(f"{col} = {mark}")
            params.append(value)
    if label is not None:
        key, _, value = label.partition("=")
        from architect.fastjson import dumps
        clauses.append(f"labels LIKE {mark} ESCAPE '\\'")
        params.append(_like(dumps({key: value})[1:-1]))
    if search is not None:
        clauses.append("(" + " OR ".join(f"{c} LIKE {mark} ESCAPE '\\'" for c in
                                         ("payload", "assigned_node", "labels", "error")) + ")")
        params.extend([_like(search)] * 4)
    return " AND ".join(clauses), params


def _counted(rows) -> list[tuple[str, str, int]]:
    """(node, state, n) of (id, node, state) rows."""
    out: dict = {}
    for _, node, status in rows:
        out[(node, status)] = out.get((node, status), 0) + 1
    return [(node, status, n) for (node, status), n in out.items()]
