"""The SQLite backend of the store (base.BaseStore), through sqlite-utils. Only the broker
loop thread writes (one connection).

Schema changes are sqlite-utils Migrations (migrations.py), applied on open. WAL mode,
``synchronous=FULL``: whatever the broker acknowledged is on disk. Writes are batched by the
caller: the loop collects dirty nodes, alerts and metric samples and hands them over in one
transaction (``with store.transaction(): ...``). Readers in other processes (the web server,
tests) use ``open_db(path, readonly=True)``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import sqlite_utils

from architect.fastjson import dumps
from architect.broker.store.base import JSON_TASK_COLUMNS, BaseStore
from architect.broker.store.shared_sql import (
    ALERT_COLUMNS, AUDIT_COLUMNS, JSON_NODE_COLUMNS, NODE_COLUMNS, _counted, _schedule_upsert,
    alert_filters, task_filters, write_sql)
from architect.broker.store.migrations import migrations
from architect.broker.store.sqlite_accounts import AccountStore


_NODE_UPSERT, _AUDIT_UPSERT, _TASK_UPSERT, _ALERT_UPSERT, _METRIC_INSERT = write_sql("?")
_SCHEDULE_UPSERT = _schedule_upsert("?")


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


class Store(AccountStore, BaseStore):
    """The SQLite backend: the broker's writer, one connection. Call only from the broker
    loop thread. Method contracts: base.BaseStore."""
    errors = (sqlite3.Error,)

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

    def load_unfinished_tasks(self) -> list[dict]:
        return self.load_tasks("status IN ('waiting', 'scheduled', 'queued', 'assigned', 'running')")

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
        for table in ("metrics_1m", "metrics_1h"):   # its roll-ups too (m016)
            self.conn.execute(f"DELETE FROM {table} WHERE node_id = ?", (node_id,))

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
            [(t, ts, e, a, n, dumps(d) if d else None) for t, ts, e, a, n, d in rows])

    # --- schedules ----------------------------------------------------------------------
    def save_schedules(self, rows: list[tuple]) -> None:
        self.conn.executemany(_SCHEDULE_UPSERT, rows)

    def insert_schedule_runs(self, rows: list[tuple]) -> None:
        self.conn.executemany("INSERT INTO schedule_runs (schedule, due, at, outcome, task_id, detail) "
                   "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def purge_tasks(self, before: float, limit: int = 1000) -> list[tuple[str, str, int]]:
        rows = self.conn.execute(
            "SELECT id, COALESCE(assigned_node, ''), status FROM tasks WHERE status IN "
            "('succeeded', 'failed', 'timed_out', 'cancelled', 'expired') AND finished_at < ? ORDER BY finished_at LIMIT ?", (before, limit)).fetchall()
        if rows:
            ids = [r[0] for r in rows]
            marks = ", ".join("?" for _ in ids)
            for table, col in (("task_events", "task_id"), ("task_output", "task_id"),
                               ("task_deps", "task_id"), ("task_deps", "dep_id"), ("tasks", "id")):
                self.conn.execute(f"DELETE FROM {table} WHERE {col} IN ({marks})", ids)
        self.conn.execute("DELETE FROM task_rollup WHERE hour < ?", (before - 86400,))
        return _counted(rows)

    def _fetch(self, sql: str, params=()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def _execmany(self, sql: str, rows: list) -> None:
        self.conn.executemany(sql, rows)

    def _exec(self, sql: str, params=()) -> int:
        return self.conn.execute(sql, params).rowcount

    def add_task_rollup(self, rows: list[tuple]) -> None:
        self.conn.executemany(
            "INSERT INTO task_rollup (hour, node, status, count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (hour, node, status) DO UPDATE SET count = count + excluded.count", rows)

    def insert_output(self, rows: list[tuple]) -> None:
        self.conn.executemany("INSERT INTO task_output (task_id, attempt, seq, stream, data, ts) "
                              "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def load_tasks(self, where: str, params=()) -> list[dict]:
        """Tasks matching an SQL WHERE clause, in id order (SQLite only, not the interface)."""
        cur = self.conn.execute(f"SELECT * FROM tasks WHERE {where} ORDER BY id", params)
        cols = [d[0] for d in cur.description]
        return [self._task_out(dict(zip(cols, r))) for r in cur.fetchall()]

    def task(self, task_id: int) -> dict | None:
        rows = self.load_tasks("id = ?", [task_id])
        return rows[0] if rows else None

    def task_by_key(self, key: str) -> dict | None:
        rows = self.load_tasks("idempotency_key = ?", [key])
        return rows[0] if rows else None

    def list_tasks(self, status=None, node=None, task_type=None, limit=100, offset=0,
                   label=None, search=None) -> list[dict]:
        where, params = task_filters("?", status, node, task_type, label, search)
        cur = self.conn.execute(f"SELECT * FROM tasks {'WHERE ' + where if where else ''} "
                                "ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
        cols = [d[0] for d in cur.description]
        return [self._task_out(dict(zip(cols, r))) for r in cur.fetchall()]

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

    def _rollup_rows(self, hour):
        return self.conn.execute("SELECT node, status, SUM(count) FROM task_rollup "
                                 "WHERE hour >= ? GROUP BY 1, 2", (hour,)).fetchall()

    def finished_per_minute(self, now: float, since: float) -> list[tuple[int, int]]:
        return self.conn.execute(
            "SELECT CAST((? - finished_at) / 60 AS INTEGER) AS m, COUNT(*) FROM tasks "
            "WHERE finished_at >= ? GROUP BY m", (now, since)).fetchall()

    @staticmethod
    def _task_out(row: dict) -> dict:
        row = dict(row)
        for col in JSON_TASK_COLUMNS:
            row[col] = json.loads(row[col]) if row.get(col) else None
        row["requirements"] = row["requirements"] or []
        row["cancel_requested"] = bool(row["cancel_requested"])
        row["pass_results"] = bool(row.get("pass_results"))
        return row

    def save_audit(self, records: list[dict]) -> None:
        self.conn.executemany(_AUDIT_UPSERT, [tuple(r.get(c) for c in AUDIT_COLUMNS)
                                              for r in records])

    def audit(self, limit: int = 100, node: str | None = None) -> list[dict]:
        where, params = (("node = ?", [node]) if node else (None, []))
        return list(self.db["ssh_audit"].rows_where(where, params, order_by="id DESC",
                                                    limit=limit))

    # --- reads ------------------------------------------------------------------
    def alerts(self, all_: bool = False, node_id: int | None = None, limit: int = 500,
               level=None, kind=None, since=None) -> list[dict]:
        clauses, params = alert_filters("?", all_, node_id, level, kind, since)
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

    def count_tasks(self, status=None, node=None, task_type=None, label=None,
                    search=None) -> int:
        where, params = task_filters("?", status, node, task_type, label, search)
        return self.conn.execute(f"SELECT COUNT(*) FROM tasks {'WHERE ' + where if where else ''}",
                                 params).fetchone()[0]

    def count(self, table: str) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def interrupt(self) -> None:
        self.conn.interrupt()

    def replace_bus_keys(self, rows: list[tuple]) -> None:
        with self.transaction(durable=True):
            self.conn.execute("DELETE FROM bus_keys")
            self.conn.executemany("INSERT INTO bus_keys (folder, name, public, secret, role) "
                                  "VALUES (?, ?, ?, ?, ?)", rows)

    @staticmethod
    def _alert_out(row: dict) -> dict:
        row = dict(row)
        row["reasons"] = json.loads(row["reasons"]) if row.get("reasons") else []
        return row

    def close(self) -> None:
        self.conn.close()
