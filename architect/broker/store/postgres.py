"""The PostgreSQL backend of the store (base.BaseStore), through psycopg 3. Selected by
ARCHITECT_DATABASE_URL=postgresql://… (see open_store in __init__.py).

One connection, autocommit off, used only by the broker loop thread. A transaction() block
is one PostgreSQL transaction (group commit); nested blocks are savepoints inside it.
Durable blocks commit with `synchronous_commit = on` (the session's setting: the WAL is
flushed before COMMIT returns); non-durable ones `SET LOCAL synchronous_commit = off` (the
commit survives a crash of the broker, not of the database server). A read or a write
outside transaction() commits (or rolls back) its own implicit transaction at once, so the
connection never sits idle in a transaction. A lost connection is reopened at the next
statement outside a transaction.

Rows come out as the SQLite backend gives them: the same columns, JSON columns decoded
here (stored as the same encoded TEXT), integers as int, reals as float. Text cannot hold
NUL characters in PostgreSQL: a NUL in a written string becomes U+FFFD. Readers in other
processes use open_reader(url) (read-only, autocommit).
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from typing import Iterable
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row, tuple_row

from architect.fastjson import dumps
from architect.broker.store import postgres_migrations
from architect.broker.store.base import JSON_TASK_COLUMNS, BaseStore, Fenced
from architect.broker.store.shared_sql import (
    ALERT_COLUMNS, AUDIT_COLUMNS, JSON_NODE_COLUMNS, NODE_COLUMNS, _counted, _schedule_upsert,
    alert_filters, task_filters, write_sql)
from architect.broker.store.postgres_accounts import AccountStore

CONNECT_TIMEOUT = 10       # seconds, at start
RECONNECT_TIMEOUT = 2      # seconds, when the loop reopens a lost connection (it must not stall)
LOCK_TIMEOUT = "1s"        # like SQLite's busy_timeout: the loop must not stall on a lock
_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


_NODE_UPSERT, _AUDIT_UPSERT, _TASK_UPSERT, _ALERT_UPSERT, _METRIC_INSERT = write_sql("%s")
_SCHEDULE_UPSERT = _schedule_upsert("%s")


def _clean(value):
    """A value as SQLite would have stored it: bools as 0/1; no NUL in text."""
    if value.__class__ is str:
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if value.__class__ is bool:
        return int(value)
    return value


def _row(values) -> tuple:
    return tuple(_clean(v) for v in values)


def redact(url: str) -> str:
    """The URL without its password (for logs and stats)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc[-1]}"))


def broker_app_name(holder: str) -> str:
    """The application_name of a broker's connections: a new leader ends the old one's
    sessions by it (lease.py)."""
    return f"architect-broker {holder}".strip()


def connect(url: str, readonly: bool = False, timeout: float = CONNECT_TIMEOUT,
            name: str | None = None, io_timeout: float | None = None,
            **kw) -> psycopg.Connection:
    """A connection to `url`; readonly: autocommit, default_transaction_read_only on.
    TCP keepalives are short, so a session whose peer vanished does not linger for hours.
    io_timeout (seconds, TCP connections): a statement whose packets go unacknowledged
    that long fails (tcp_user_timeout) instead of waiting out TCP's retransmissions: a
    master cut off from the database must find out within its lease's hold time."""
    options = "-c default_transaction_read_only=on" if readonly else None
    if io_timeout is not None:
        kw["tcp_user_timeout"] = max(200, int(io_timeout * 1000))
    return psycopg.connect(url, autocommit=readonly, connect_timeout=max(1, int(timeout)),
                           application_name=name or ("architect-reader" if readonly
                                                     else "architect-broker"),
                           options=options, keepalives=1, keepalives_idle=5,
                           keepalives_interval=2, keepalives_count=3, **kw)


def open_reader(url: str, timeout: float = CONNECT_TIMEOUT) -> psycopg.Connection:
    """A read-only connection for other processes (the web server, tests)."""
    return connect(url, readonly=True, timeout=timeout)


def ping(url: str, timeout: float = 2.0) -> dict:
    """A cheap check for /healthz: can we connect and read `nodes`?"""
    try:
        with open_reader(url, timeout) as conn:
            conn.execute("SELECT COUNT(*) FROM nodes").fetchone()
        return {"backend": "postgresql", "url": redact(url), "ok": True}
    except psycopg.Error as exc:
        text = str(exc).strip()
        return {"backend": "postgresql", "url": redact(url), "ok": False,
                "error": text.splitlines()[0] if text else type(exc).__name__}


class Store(AccountStore, BaseStore):
    """The PostgreSQL backend: the broker's writer, one connection. Call only from the
    broker loop thread. Method contracts: base.BaseStore."""
    errors = (psycopg.Error,)

    def __init__(self, url: str, epoch: int | None = None, holder: str = "",
                 guard=None, io_timeout: float | None = None):
        self.url = url
        self.epoch = epoch      # set: every transaction is fenced by it (lease.py)
        self.holder = holder    # in application_name, so a new leader can cut this one off
        # several masters: guard() is the lease (held?); without it no transaction begins
        # and no lost connection is reopened, so a demoted leader never waits on the network
        self.guard = guard
        self.io_timeout = io_timeout
        self._conn_lock = threading.Lock()   # interrupt() vs. replacing the connection
        self.path = redact(url)   # shown in stats; not a file
        self._depth = 0
        self._durable = True
        self.conn = self._connect()

    def _connect(self, timeout: float = CONNECT_TIMEOUT) -> psycopg.Connection:
        conn = connect(self.url, timeout=timeout, name=broker_app_name(self.holder),
                       io_timeout=self.io_timeout)
        try:
            postgres_migrations.apply(conn)
            conn.execute("SET synchronous_commit = on")
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def _ready(self) -> None:
        """Before an outer transaction or a statement on its own: a live connection with no
        transaction open."""
        if self.conn.closed or self.conn.broken:
            self._check_guard()
            with self._conn_lock:
                try:
                    self.conn.close()
                finally:
                    self.conn = self._connect(RECONNECT_TIMEOUT)
        elif self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.rollback()

    def _check_guard(self) -> None:
        if self.guard is not None and not self.guard():
            raise Fenced(f"the lease of epoch {self.epoch} is in doubt: not writing")

    def interrupt(self) -> None:
        """From another thread (the master's watchdog): make a statement that waits on a
        dead network fail now, by shutting the connection's socket down."""
        import os
        import socket
        with self._conn_lock:   # the connection cannot be closed or replaced meanwhile
            try:
                fd = self.conn.pgconn.socket
                sock = socket.socket(fileno=os.dup(fd))
            except (OSError, psycopg.Error, ValueError):
                return
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.close()

    # --- transactions ---------------------------------------------------------------
    @contextmanager
    def transaction(self, durable: bool = True):
        outer = self._depth == 0
        if outer:
            self._check_guard()
            self._ready()
        before = self._durable
        with _fencing(), self.conn.transaction():
            self._depth += 1
            try:
                if outer:
                    if self.epoch is not None:  # first, so an old leader writes nothing
                        self.conn.execute("SELECT architect_fence(%s)", (self.epoch,))
                    self._durable = durable
                    if not durable:
                        self.conn.execute("SET LOCAL synchronous_commit = off")
                elif durable and not self._durable:
                    # a durable block inside a non-durable one makes the commit durable
                    # (reverted with the savepoint if this block fails)
                    self.conn.execute("SET LOCAL synchronous_commit = on")
                    self._durable = True
                yield self
            except BaseException:
                self._durable = before if not outer else True
                raise
            finally:
                self._depth -= 1
                if outer:
                    self._durable = True

    def _query(self, sql: str, params=(), rows=dict_row):
        """Run one statement; its rows (or, without a result, the rowcount). Outside a
        transaction the statement commits (or rolls back) on its own."""
        alone = self._depth == 0
        if alone:
            self._ready()
        try:
            with self.conn.cursor(row_factory=rows) as cur:
                cur.execute(sql, params)
                out = cur.fetchall() if cur.description is not None else cur.rowcount
        except BaseException:
            if alone and not self.conn.closed:
                self.conn.rollback()
            raise
        if alone:
            self.conn.commit()
        return out

    def _many(self, sql: str, rows: list) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(sql, rows)

    def _scalar(self, sql: str, params=()):
        return self._query(sql, params, rows=tuple_row)[0][0]

    # --- loading at start ---------------------------------------------------------
    def load_nodes(self) -> list[dict]:
        rows = self._query("SELECT * FROM nodes ORDER BY id")
        for row in rows:
            for col in JSON_NODE_COLUMNS:
                row[col] = json.loads(row[col]) if row[col] else None
        return rows

    def load_alerts(self, open_only: bool = True) -> list[dict]:
        where = " WHERE status = 'active'" if open_only else ""
        return [_alert_out(r) for r in self._query(f"SELECT * FROM alerts{where} ORDER BY id")]

    def load_unfinished_tasks(self) -> list[dict]:
        return self._tasks("status IN ('waiting', 'scheduled', 'queued', 'assigned', 'running')", order="id")

    def max_id(self, table: str) -> int:
        return self._scalar(f"SELECT COALESCE(MAX(id), 0) FROM {_table(table)}")

    # --- writes (inside transaction()) ----------------------------------------------
    def save_nodes(self, records: Iterable[dict]) -> None:
        self._many(_NODE_UPSERT, [
            _row(json.dumps(r.get(c)) if c in JSON_NODE_COLUMNS else r.get(c)
                 for c in NODE_COLUMNS) for r in records])

    def delete_node(self, node_id: int) -> None:
        with self.transaction(durable=True):
            self._query("DELETE FROM nodes WHERE id = %s", (node_id,))
            self._query("DELETE FROM metrics WHERE node_id = %s", (node_id,))
            for table in ("metrics_1m", "metrics_1h"):   # its roll-ups too (m016)
                self._query(f"DELETE FROM {table} WHERE node_id = %s", (node_id,))

    def insert_metrics(self, rows: list[tuple]) -> None:
        self._many(_METRIC_INSERT, [_row(r) for r in rows])

    def save_alerts(self, records: Iterable[dict]) -> None:
        self._many(_ALERT_UPSERT, [
            _row(json.dumps(r.get(c)) if c == "reasons" else r.get(c) for c in ALERT_COLUMNS)
            for r in records])

    def save_tasks(self, rows: list[tuple]) -> None:
        self._many(_TASK_UPSERT, [_row(r) for r in rows])

    def insert_task_events(self, rows: list[tuple]) -> None:
        self._many("INSERT INTO task_events (task_id, ts, event, attempt, node, detail) "
                   "VALUES (%s, %s, %s, %s, %s, %s)",
                   [_row((t, ts, e, a, n, dumps(d) if d else None))
                    for t, ts, e, a, n, d in rows])

    # --- schedules ----------------------------------------------------------------------
    def save_schedules(self, rows: list[tuple]) -> None:
        self._many(_SCHEDULE_UPSERT, [_row(r) for r in rows])

    def insert_schedule_runs(self, rows: list[tuple]) -> None:
        self._many("INSERT INTO schedule_runs (schedule, due, at, outcome, task_id, detail) "
                   "VALUES (%s, %s, %s, %s, %s, %s)", [_row(r) for r in rows])

    def purge_tasks(self, before: float, limit: int = 1000) -> list[tuple[str, str, int]]:
        rows = self._query(
            "SELECT id, COALESCE(assigned_node, ''), status FROM tasks WHERE status IN "
            "('succeeded', 'failed', 'timed_out', 'cancelled', 'expired') AND finished_at < %s ORDER BY finished_at LIMIT %s", (before, limit),
            rows=tuple_row)
        if rows:
            ids = [r[0] for r in rows]
            for table, col in (("task_events", "task_id"), ("task_output", "task_id"),
                               ("task_deps", "task_id"), ("task_deps", "dep_id"), ("tasks", "id")):
                self._query(f"DELETE FROM {table} WHERE {col} = ANY(%s)", (ids,))
        self._query("DELETE FROM task_rollup WHERE hour < %s", (before - 86400,))
        return _counted(rows)

    MARK = "%s"

    def _fetch(self, sql: str, params=()) -> list[tuple]:
        return self._query(sql, params, rows=tuple_row)

    def _execmany(self, sql: str, rows: list) -> None:
        self._many(sql, rows)

    def _exec(self, sql: str, params=()) -> int:
        return self._query(sql, params)

    def add_task_rollup(self, rows: list[tuple]) -> None:
        self._many("INSERT INTO task_rollup (hour, node, status, count) VALUES (%s, %s, %s, %s) "
                   "ON CONFLICT (hour, node, status) DO UPDATE SET "
                   "count = task_rollup.count + excluded.count", [_row(r) for r in rows])

    def insert_output(self, rows: list[tuple]) -> None:
        self._many("INSERT INTO task_output (task_id, attempt, seq, stream, data, ts) "
                   "VALUES (%s, %s, %s, %s, %s, %s)", [_row(r) for r in rows])

    def save_audit(self, records: list[dict]) -> None:
        self._many(_AUDIT_UPSERT, [_row(r.get(c) for c in AUDIT_COLUMNS) for r in records])

    # --- task reads -------------------------------------------------------------------
    def _tasks(self, where: str, params=(), order: str = "id", limit=None, offset=0):
        sql = f"SELECT * FROM tasks{' WHERE ' + where if where else ''} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT %s OFFSET %s"
            params = (*params, limit, offset)
        return [_task_out(r) for r in self._query(sql, params)]

    def task(self, task_id: int) -> dict | None:
        rows = self._tasks("id = %s", (task_id,))
        return rows[0] if rows else None

    def task_by_key(self, key: str) -> dict | None:
        rows = self._tasks("idempotency_key = %s", (key,))
        return rows[0] if rows else None

    def list_tasks(self, status=None, node=None, task_type=None, limit=100, offset=0,
                   label=None, search=None) -> list[dict]:
        where, params = task_filters("%s", status, node, task_type, label, search)
        return self._tasks(where, tuple(params), order="id DESC", limit=limit, offset=offset)

    def count_tasks(self, status=None, node=None, task_type=None, label=None,
                    search=None) -> int:
        where, params = task_filters("%s", status, node, task_type, label, search)
        return self._scalar(f"SELECT COUNT(*) FROM tasks{' WHERE ' + where if where else ''}",
                            params)

    def _rollup_rows(self, hour):
        return [(node, status, int(n)) for node, status, n in self._query(
            "SELECT node, status, SUM(count) FROM task_rollup WHERE hour >= %s GROUP BY 1, 2",
            (hour,), rows=tuple_row)]

    def finished_per_minute(self, now: float, since: float) -> list[tuple[int, int]]:
        # SQLite's CAST(x AS INTEGER) truncates toward zero: trunc(), not a rounding cast
        return self._query(
            "SELECT CAST(trunc((%s::float8 - finished_at) / 60) AS BIGINT) AS m, COUNT(*) "
            "FROM tasks WHERE finished_at >= %s GROUP BY m", (now, since), rows=tuple_row)

    def task_events(self, task_id: int) -> list[dict]:
        rows = self._query("SELECT * FROM task_events WHERE task_id = %s ORDER BY id", (task_id,))
        for row in rows:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        return rows

    def task_output(self, task_id: int, attempt: int | None = None, after_seq: int = -1,
                    after_id: int = 0) -> list[dict]:
        where, params = "task_id = %s AND seq > %s AND id > %s", [task_id, after_seq, after_id]
        if attempt is not None:
            where += " AND attempt = %s"
            params.append(attempt)
        return self._query(f"SELECT * FROM task_output WHERE {where} ORDER BY id", params)

    # --- other reads --------------------------------------------------------------------
    def alerts(self, all_: bool = False, node_id: int | None = None,
               limit: int = 500, level=None, kind=None, since=None) -> list[dict]:
        clauses, params = alert_filters("%s", all_, node_id, level, kind, since)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return [_alert_out(r) for r in self._query(
            f"SELECT * FROM alerts{where} ORDER BY id DESC LIMIT %s", (*params, limit))]

    def alert(self, alert_id: int) -> dict | None:
        rows = self._query("SELECT * FROM alerts WHERE id = %s", (alert_id,))
        return _alert_out(rows[0]) if rows else None

    def metrics(self, node_id: int, since: float, limit: int = 5000) -> list[dict]:
        return self._query("SELECT * FROM metrics WHERE node_id = %s AND ts >= %s "
                           "ORDER BY ts LIMIT %s", (node_id, since, limit))

    def metrics_series(self, node_id: int, since: float, until: float, points: int) -> list[dict]:
        width = max((until - since) / max(points, 1), 1e-3)
        return self._query(
            "SELECT MIN(ts) AS ts, AVG(cpu_percent) AS cpu_percent, "
            "AVG(memory_percent) AS memory_percent, AVG(disk_percent) AS disk_percent, "
            "AVG(load_1) AS load_1, COUNT(*) AS samples FROM metrics "
            "WHERE node_id = %s AND ts >= %s AND ts <= %s "
            "GROUP BY trunc((ts - %s::float8) / %s::float8) ORDER BY 1",
            (node_id, since, until, since, width))

    def audit(self, limit: int = 100, node: str | None = None) -> list[dict]:
        where, params = ((" WHERE node = %s", (node,)) if node else ("", ()))
        return self._query(f"SELECT * FROM ssh_audit{where} ORDER BY id DESC LIMIT %s",
                           (*params, limit))

    def count(self, table: str) -> int:
        return self._scalar(f"SELECT COUNT(*) FROM {_table(table)}")

    def replace_bus_keys(self, rows: list[tuple]) -> None:
        with self.transaction(durable=True):
            self._query("DELETE FROM bus_keys")
            self._many("INSERT INTO bus_keys (folder, name, public, secret, role) "
                       "VALUES (%s, %s, %s, %s, %s)", [_row(r) for r in rows])

    def close(self) -> None:
        with self._conn_lock:
            self.conn.close()


FENCED = "AR001"   # the SQLSTATE architect_fence() raises (postgres_migrations.m005)


@contextmanager
def _fencing():
    """A refusal by architect_fence() comes out as base.Fenced."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate == FENCED:
            raise Fenced(str(exc).strip().splitlines()[0]) from None
        raise


def _table(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a table name: {name!r}")
    return name


def _task_out(row: dict) -> dict:
    for col in JSON_TASK_COLUMNS:
        row[col] = json.loads(row[col]) if row.get(col) else None
    row["requirements"] = row["requirements"] or []
    row["cancel_requested"] = bool(row["cancel_requested"])
    row["pass_results"] = bool(row.get("pass_results"))
    return row


def _alert_out(row: dict) -> dict:
    row["reasons"] = json.loads(row["reasons"]) if row.get("reasons") else []
    return row
