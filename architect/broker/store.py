"""SQLite state through sqlite-utils. Only the broker loop thread writes (one connection).

Tables (names are a contract): nodes, metrics, alerts, and later tasks, task_events,
ssh_audit. Schema changes are sqlite-utils Migrations, applied on open. WAL mode,
``synchronous=FULL``: whatever the broker acknowledged is on disk.

Writes are batched by the caller: the loop collects dirty nodes, alerts and metric
samples and hands them over in one transaction (``with store.transaction(): ...``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import sqlite_utils
from sqlite_utils.migrations import Migrations

from architect.broker.store_accounts import AccountStore

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


AUDIT_COLUMNS = ("id", "ts", "who", "action", "node", "node_id", "target", "command", "status",
                 "exit_code", "duration", "error", "finished_at", "batch")


NODE_COLUMNS = ("id", "name", "hostname", "ip_address", "capabilities", "ssh", "status",
                "reasons", "drained", "registered_at", "last_seen", "last_metrics", "source")
JSON_NODE_COLUMNS = ("capabilities", "ssh", "reasons", "last_metrics")
METRIC_COLUMNS = ("node_id", "ts", "cpu_percent", "memory_percent", "disk_percent", "load_1",
                  "load_5", "load_15", "net_bytes_sent", "net_bytes_recv", "process_count")
ALERT_COLUMNS = ("id", "node_id", "node_name", "level", "previous_level", "reasons", "message",
                 "status", "created_at", "resolved_at", "acknowledged_at", "acknowledged_by",
                 "kind", "source")


def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    cols = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    sets = ", ".join(f"{c}=excluded.{c}" for c in columns if c != "id")
    return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {sets}"


TASK_COLUMNS = ("id", "task_type", "payload", "requirements", "node", "priority", "status",
                "attempt", "max_attempts", "retries", "retry_count", "retry_backoff", "timeout",
                "idempotency_key", "created_at", "updated_at", "assigned_at", "started_at",
                "finished_at", "assigned_node", "worker_id", "placement", "result", "error",
                "not_before", "cancel_requested", "submitted_by")
JSON_TASK_COLUMNS = ("payload", "requirements", "placement", "result")

_NODE_UPSERT = _upsert_sql("nodes", NODE_COLUMNS)
_AUDIT_UPSERT = _upsert_sql("ssh_audit", AUDIT_COLUMNS)
_TASK_UPSERT = _upsert_sql("tasks", TASK_COLUMNS)
_ALERT_UPSERT = _upsert_sql("alerts", ALERT_COLUMNS)
_METRIC_INSERT = (f"INSERT INTO metrics ({', '.join(METRIC_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in METRIC_COLUMNS)})")


def open_db(path: str, readonly: bool = False, busy_timeout_ms: int = 5000) -> sqlite_utils.Database:
    """Open the database. The writer gets WAL, synchronous=FULL and the migrations."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000)
        return sqlite_utils.Database(conn)
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    private(folder)
    # created by the thread that starts the broker, then used only by the loop thread
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None,
                           check_same_thread=False)
    db = sqlite_utils.Database(conn)
    db.enable_wal()
    conn.execute("PRAGMA synchronous=FULL")
    migrations.apply(db)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.chmod(path + suffix, 0o600)
    return db


def private(folder: Path) -> None:
    """The data dir holds tasks, password hashes and keys: its owner (and root) only."""
    try:
        if folder.stat().st_uid == os.getuid() and folder.stat().st_mode & 0o077:
            os.chmod(folder, 0o700)
    except OSError:
        pass


class Store(AccountStore):
    """The broker's writer. Call only from the broker loop thread."""

    def __init__(self, path: str):
        self.path = path
        self.db = open_db(path)  # waits up to 5 s for a lock at start (migrations)
        self.conn = self.db.conn
        # then at most 1 s: the loop must not stall long when another process holds the lock
        self.conn.execute("PRAGMA busy_timeout = 1000")
        self._durable = True

    @contextmanager
    def transaction(self, durable: bool = True):
        """One write transaction. durable=True commits with synchronous=FULL (fsync: survives
        power loss); False with NORMAL (survives a crash of the process, not of the machine)."""
        if durable != self._durable:
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        with self.db.atomic():
            yield self

    # --- loading at start ---------------------------------------------------------
    def load_nodes(self) -> list[dict]:
        rows = []
        for row in self.db["nodes"].rows:
            for col in JSON_NODE_COLUMNS:
                row[col] = json.loads(row[col]) if row[col] else None
            rows.append(row)
        return rows

    def load_alerts(self, open_only: bool = True) -> list[dict]:
        where = "status = 'active'" if open_only else None
        return [self._alert_out(r) for r in self.db["alerts"].rows_where(where, order_by="id")]

    def max_id(self, table: str) -> int:
        return self.conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]

    # --- writes (inside transaction()) ----------------------------------------------
    def save_nodes(self, records: Iterable[dict]) -> None:
        self.conn.executemany(_NODE_UPSERT, [
            tuple(json.dumps(r.get(c)) if c in JSON_NODE_COLUMNS else r.get(c)
                  for c in NODE_COLUMNS) for r in records])

    def delete_node(self, node_id: int) -> None:
        self.conn.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
        self.conn.execute("DELETE FROM metrics WHERE node_id = ?", (node_id,))

    def insert_metrics(self, rows: list[tuple]) -> None:
        self.conn.executemany(_METRIC_INSERT, rows)

    def save_alerts(self, records: Iterable[dict]) -> None:
        self.conn.executemany(_ALERT_UPSERT, [
            tuple(json.dumps(r.get(c)) if c == "reasons" else r.get(c) for c in ALERT_COLUMNS)
            for r in records])

    def save_tasks(self, rows: list[tuple]) -> None:
        """Upsert task rows (Task.row(): TASK_COLUMNS order, JSON already encoded)."""
        self.conn.executemany(_TASK_UPSERT, rows)

    def insert_task_events(self, rows: list[tuple]) -> None:
        self.conn.executemany(
            "INSERT INTO task_events (task_id, ts, event, attempt, node, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(t, ts, e, a, n, json.dumps(d) if d else None) for t, ts, e, a, n, d in rows])

    def insert_output(self, rows: list[tuple]) -> None:
        self.conn.executemany("INSERT INTO task_output (task_id, attempt, seq, stream, data, ts) "
                              "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def load_tasks(self, where: str, params=()) -> list[dict]:
        return [self._task_out(r) for r in self.db["tasks"].rows_where(where, params, order_by="id")]

    def task(self, task_id: int) -> dict | None:
        rows = self.load_tasks("id = ?", [task_id])
        return rows[0] if rows else None

    def task_by_key(self, key: str) -> dict | None:
        rows = self.load_tasks("idempotency_key = ?", [key])
        return rows[0] if rows else None

    def list_tasks(self, status=None, node=None, task_type=None, limit=100, offset=0) -> list[dict]:
        clauses, params = [], []
        for col, value in (("status", status), ("assigned_node", node), ("task_type", task_type)):
            if value is not None:
                clauses.append(f"{col} = ?")
                params.append(value)
        where = " AND ".join(clauses) or None
        return [self._task_out(r) for r in self.db["tasks"].rows_where(
            where, params, order_by="id DESC", limit=limit, offset=offset)]

    def task_events(self, task_id: int) -> list[dict]:
        out = []
        for row in self.db["task_events"].rows_where("task_id = ?", [task_id], order_by="id"):
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
            out.append(row)
        return out

    def task_output(self, task_id: int, attempt: int | None = None, after_seq: int = -1,
                    after_id: int = 0) -> list[dict]:
        """Chunks in arrival order; each has a row `id` that grows across attempts (follow a
        running task with after_id; after_seq is within one attempt)."""
        where, params = "task_id = ? AND seq > ? AND id > ?", [task_id, after_seq, after_id]
        if attempt is not None:
            where += " AND attempt = ?"
            params.append(attempt)
        return list(self.db["task_output"].rows_where(where, params, order_by="id"))

    def distribution(self) -> list[tuple[str, str, int]]:
        return self.conn.execute(
            "SELECT assigned_node, status, COUNT(*) FROM tasks WHERE assigned_node IS NOT NULL "
            "GROUP BY assigned_node, status").fetchall()

    def task_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall())

    @staticmethod
    def _task_out(row: dict) -> dict:
        row = dict(row)
        for col in JSON_TASK_COLUMNS:
            row[col] = json.loads(row[col]) if row.get(col) else None
        row["requirements"] = row["requirements"] or []
        row["cancel_requested"] = bool(row["cancel_requested"])
        return row

    def save_audit(self, records: list[dict]) -> None:
        self.conn.executemany(_AUDIT_UPSERT, [tuple(r.get(c) for c in AUDIT_COLUMNS)
                                              for r in records])

    def audit(self, limit: int = 100, node: str | None = None) -> list[dict]:
        where, params = (("node = ?", [node]) if node else (None, []))
        return list(self.db["ssh_audit"].rows_where(where, params, order_by="id DESC",
                                                    limit=limit))

    def purge_metrics(self, before: float, limit: int = 50_000) -> int:
        cur = self.conn.execute(
            "DELETE FROM metrics WHERE id IN (SELECT id FROM metrics WHERE ts < ? LIMIT ?)",
            (before, limit))
        return cur.rowcount

    # --- reads ------------------------------------------------------------------
    def alerts(self, all_: bool = False, node_id: int | None = None, limit: int = 500) -> list[dict]:
        clauses, params = [], []
        if not all_:
            clauses.append("status = 'active'")
        if node_id is not None:
            clauses.append("node_id = ?")
            params.append(node_id)
        where = " AND ".join(clauses) or None
        return [self._alert_out(r) for r in self.db["alerts"].rows_where(
            where, params, order_by="id DESC", limit=limit)]

    def alert(self, alert_id: int) -> dict | None:
        rows = list(self.db["alerts"].rows_where("id = ?", [alert_id]))
        return self._alert_out(rows[0]) if rows else None

    def metrics(self, node_id: int, since: float, limit: int = 5000) -> list[dict]:
        return list(self.db["metrics"].rows_where(
            "node_id = ? AND ts >= ?", [node_id, since], order_by="ts", limit=limit))

    def metrics_series(self, node_id: int, since: float, until: float, points: int) -> list[dict]:
        """Samples of one node averaged into at most `points` time buckets (downsampled)."""
        width = max((until - since) / max(points, 1), 1e-3)
        sql = ("SELECT MIN(ts) AS ts, AVG(cpu_percent) AS cpu_percent, "
               "AVG(memory_percent) AS memory_percent, AVG(disk_percent) AS disk_percent, "
               "AVG(load_1) AS load_1, COUNT(*) AS samples FROM metrics "
               "WHERE node_id = ? AND ts >= ? AND ts <= ? "
               "GROUP BY CAST((ts - ?) / ? AS INTEGER) ORDER BY ts")
        cur = self.conn.execute(sql, (node_id, since, until, since, width))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def count_tasks(self, status=None, node=None, task_type=None) -> int:
        clauses, params = [], []
        for col, value in (("status", status), ("assigned_node", node), ("task_type", task_type)):
            if value is not None:
                clauses.append(f"{col} = ?")
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return self.conn.execute(f"SELECT COUNT(*) FROM tasks{where}", params).fetchone()[0]

    def timeline(self, since: float, limit: int) -> list[dict]:
        cur = self.conn.execute(
            "SELECT id, task_type, status, assigned_node, started_at, finished_at, attempt "
            "FROM tasks WHERE started_at IS NOT NULL AND (finished_at IS NULL OR finished_at >= ?)"
            " ORDER BY started_at DESC LIMIT ?", (since, limit))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def count(self, table: str) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    @staticmethod
    def _alert_out(row: dict) -> dict:
        row = dict(row)
        row["reasons"] = json.loads(row["reasons"]) if row.get("reasons") else []
        return row

    def close(self) -> None:
        self.conn.close()
