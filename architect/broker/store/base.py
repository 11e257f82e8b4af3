"""The store's interface: everything the broker, its handlers and views ask of the database.

One writer, the broker loop thread, calls every method. Writes are grouped by the caller:
Broker.persist() opens one transaction per loop iteration and hands every pending change
(persist.py streams) to the `save_*` / `insert_*` methods inside it (group commit). Methods
marked "own transaction" open a durable one themselves (they commit before the handler
answers); reads run at any time. Rows go in and come out as the broker holds them: JSON
columns are encoded / decoded here, never by the caller (except Task.row(), pre-encoded).

Backends: sqlite.Store (the embedded default), postgres.Store. tests/contract/test_store.py pins every
method's behaviour against each backend; a new backend (PostgreSQL) passes that test.
Table names are a contract: nodes, metrics, tasks, task_events, task_output, alerts,
ssh_audit, users, tokens, audit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Iterable

from architect.broker.tasks import JSON_TASK_COLUMNS, TASK_COLUMNS

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
__all__ = ["BaseStore", "Fenced", "TASK_COLUMNS", "JSON_TASK_COLUMNS", "NODE_COLUMNS", "JSON_NODE_COLUMNS",
           "METRIC_COLUMNS", "ALERT_COLUMNS", "AUDIT_COLUMNS", "AUDIT_LOG_COLUMNS",
           "TOKEN_COLUMNS", "TABLES"]


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


class Fenced(RuntimeError):
    """The database refused a write: this broker's leader epoch is no longer the current
    one (another master took over). The broker must stop at once (lease.py)."""


class BaseStore(ABC):
    path: str  # where the database is (shown in stats; for SQLite the file)
    errors: tuple = ()  # the exception classes of a failing database (locked, gone, ...)
    # the leader epoch every transaction carries (PostgreSQL with several masters); the
    # database refuses a transaction from an old epoch (Fenced). None: not fenced
    epoch: int | None = None

    # --- transactions -------------------------------------------------------------------
    @abstractmethod
    def transaction(self, durable: bool = True) -> AbstractContextManager["BaseStore"]:
        """`with store.transaction(durable): ...` — one write transaction: everything written
        inside commits together, an exception inside rolls all of it back (and propagates).
        durable=True commits so that it survives power loss (fsync; SQLite synchronous=FULL);
        False so that it survives a crash of the process, not of the machine. Nested blocks
        join the outer transaction (a failing inner block rolls back only itself)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection. Nothing may be called after."""

    @abstractmethod
    def interrupt(self) -> None:
        """From another thread: make the statement running now fail at once (a broker whose
        lease went into doubt while it waits on the database, ha.py). Harmless when idle."""

    # --- loading at start ---------------------------------------------------------------
    @abstractmethod
    def load_nodes(self) -> list[dict]:
        """Every `nodes` row as a dict, JSON columns (capabilities, ssh, reasons,
        last_metrics) decoded (None when empty). A read: any time."""

    @abstractmethod
    def load_alerts(self, open_only: bool = True) -> list[dict]:
        """Alert rows in id order: the active ones (status 'active'), or all. `reasons` is
        a list. A read: any time."""

    @abstractmethod
    def load_unfinished_tasks(self) -> list[dict]:
        """Tasks queued, assigned or running, in id order, as task_out rows (see task()).
        A read: any time."""

    @abstractmethod
    def max_id(self, table: str) -> int:
        """The highest id in `table` (0 when empty): the broker numbers new rows itself.
        A read: any time."""

    # --- group-commit writes: call inside transaction() -----------------------------------
    @abstractmethod
    def save_nodes(self, records: Iterable[dict]) -> None:
        """Upsert nodes by id (Node.record() dicts; JSON columns encoded here).
        Inside transaction()."""

    @abstractmethod
    def delete_node(self, node_id: int) -> None:
        """Delete a node and its metrics samples (in the caller's transaction, or each
        statement on its own outside one)."""

    @abstractmethod
    def insert_metrics(self, rows: list[tuple]) -> None:
        """Append metrics samples, batched: tuples in METRIC_COLUMNS order (node_id, ts,
        cpu_percent, ...). Inside transaction()."""

    @abstractmethod
    def save_alerts(self, records: Iterable[dict]) -> None:
        """Upsert alerts by id (the AlertBook's dicts; `reasons` encoded here).
        Inside transaction()."""

    @abstractmethod
    def save_tasks(self, rows: list[tuple]) -> None:
        """Upsert tasks by id: Task.row() tuples (TASK_COLUMNS order, JSON encoded).
        Inside transaction()."""

    @abstractmethod
    def insert_task_events(self, rows: list[tuple]) -> None:
        """Append task transitions: (task_id, ts, event, attempt, node, detail dict|None).
        Inside transaction()."""

    # --- schedules ------------------------------------------------------------------------
    @abstractmethod
    def load_schedules(self) -> list[dict]:
        """Every schedule (schedules.COLUMNS; spec decoded, paused a bool), by name."""

    @abstractmethod
    def save_schedules(self, rows: list[tuple]) -> None:
        """Upsert schedules by name: rows in schedules.COLUMNS order, spec JSON-encoded.
        Inside transaction()."""

    @abstractmethod
    def delete_schedule(self, name: str) -> None:
        """Remove a schedule and its runs. Inside transaction()."""

    @abstractmethod
    def insert_schedule_runs(self, rows: list[tuple]) -> None:
        """Append runs: SCHEDULE_RUN_COLUMNS. Inside transaction()."""

    @abstractmethod
    def schedule_runs(self, name: str, limit: int = 50) -> list[dict]:
        """A schedule's runs, newest first, each with the task's status (or None) as
        `task_status`. A read: any time."""

    @abstractmethod
    def load_queues(self) -> list[dict]:
        """The queues with limits: {name, concurrency, rate, rate_text}."""

    @abstractmethod
    def save_queues(self, changes: dict) -> None:
        """name → Queue (upsert its limits) or None (remove). Inside transaction()."""

    @abstractmethod
    def purge_tasks(self, before: float, limit: int = 1000) -> list[tuple[str, str, int]]:
        """Delete up to `limit` final tasks that finished before `before`, oldest first,
        with their events, output and workflow edges, and the roll-up hours a day older
        than `before`. → (node or '', state, how many) deleted. Inside transaction()."""

    @abstractmethod
    def purge_task_output(self, before: float, limit: int = 50_000) -> int:
        """Delete up to `limit` streamed output chunks older than `before`. Inside
        transaction()."""




    @abstractmethod
    def add_task_rollup(self, rows: list[tuple]) -> None:
        """Count tasks that ended into the hourly roll-up: (hour the task was created,
        assigned node or '', final state, how many). Inside transaction(), with the rows of
        the tasks themselves, so the roll-up and the tasks agree."""

    @abstractmethod
    def insert_output(self, rows: list[tuple]) -> None:
        """Append output chunks: (task_id, attempt, seq, stream, data, ts).
        Inside transaction()."""

    @abstractmethod
    def save_audit(self, records: list[dict]) -> None:
        """Upsert `ssh_audit` rows by id (a row is written when the command is queued and
        again with its outcome). Inside transaction()."""

    @abstractmethod
    def insert_audit_log(self, rows: Iterable[dict]) -> None:
        """Append control-request audit rows (AuditBook dicts; `params` encoded here).
        Inside transaction()."""

    # --- retention: inside a transaction, in chunks --------------------------------------
    @abstractmethod
    def purge_metrics(self, before: float, limit: int = 50_000) -> int:
        """Delete at most `limit` samples older than `before`; returns how many (call again
        while it returns > 0). Inside transaction()."""

    @abstractmethod
    def purge_audit(self, before: float, limit: int = 50_000) -> int:
        """Delete at most `limit` control-audit rows older than `before`; returns how many.
        Inside transaction()."""

    # --- task reads ------------------------------------------------------------------------
    @abstractmethod
    def task(self, task_id: int) -> dict | None:
        """One task as a dict (JSON columns decoded, requirements a list, cancel_requested a
        bool; the keys are TASK_COLUMNS, so Task(**row) rebuilds it), or None.
        A read: any time."""

    @abstractmethod
    def task_by_key(self, key: str) -> dict | None:
        """The task with this idempotency key, or None. A read: any time."""

    @abstractmethod
    def list_tasks(self, status=None, node=None, task_type=None, limit=100,
                   offset=0, label=None, search=None) -> list[dict]:
        """One page of tasks, newest (highest id) first, filtered by status, assigned node,
        type, a label ("key=value") and a search string when given (task_filters). A read:
        any time."""

    @abstractmethod
    def count_tasks(self, status=None, node=None, task_type=None, label=None,
                    search=None) -> int:
        """How many tasks match the same filters as list_tasks. A read: any time."""

    @abstractmethod
    def task_counts(self) -> dict[str, int]:
        """{status: number of tasks} over every task. A read: any time."""

    @abstractmethod
    def distribution(self) -> list[tuple[str, str, int]]:
        """(assigned_node, status, count) for the tasks that were ever assigned.
        A read: any time."""

    FLOW_EXACT = 86400   # windows up to a day are counted from the tasks themselves

    def task_flow(self, since: float, now: float | None = None) -> list[tuple[str, str, int]]:
        """(assigned_node or '', status, count) of the tasks created at or after `since`.
        Past a day, the whole hours come from the roll-up (the tasks that ended) plus the
        tasks of those hours that have not ended, and only the first, partial hour from the
        tasks: a month of history costs a few thousand roll-up rows, not a million tasks.
        A read: any time."""
        import time
        now = time.time() if now is None else now
        if now - since <= self.FLOW_EXACT:
            return self._flow_rows(since, None, False)
        hour = -(-int(since) // 3600) * 3600          # the first whole hour after `since`
        out: dict[tuple[str, str], int] = {}
        for rows in (self._flow_rows(since, hour, False), self._flow_rows(hour, None, True),
                     self._rollup_rows(hour)):
            for node, status, n in rows:
                out[(node, status)] = out.get((node, status), 0) + n
        return [(node, status, n) for (node, status), n in sorted(out.items()) if n]

    @abstractmethod
    def _flow_rows(self, since: float, before: float | None,
                   unfinished: bool) -> list[tuple[str, str, int]]:
        """(node or '', status, count) of the tasks created in [since, before), only the
        queued / assigned / running ones when `unfinished`."""

    @abstractmethod
    def _rollup_rows(self, hour: int) -> list[tuple[str, str, int]]:
        """(node, state, count) summed over the roll-up from `hour` on."""

    @abstractmethod
    def finished_per_minute(self, now: float, since: float) -> list[tuple[int, int]]:
        """(minutes before `now`, count) of the tasks finished at or after `since`, the minute
        being int((now - finished_at) / 60). A read: any time."""

    @abstractmethod
    def timeline(self, since: float, limit: int) -> list[dict]:
        """Spans of tasks that started and were running at or after `since` (not finished or
        finished since then), latest start first: id, task_type, status, assigned_node,
        started_at, finished_at, attempt. A read: any time."""

    @abstractmethod
    def task_events(self, task_id: int) -> list[dict]:
        """One task's events in order (id, task_id, ts, event, attempt, node, detail).
        A read: any time."""

    @abstractmethod
    def task_output(self, task_id: int, attempt: int | None = None, after_seq: int = -1,
                    after_id: int = 0) -> list[dict]:
        """Output chunks in arrival order (row `id` grows across attempts: follow a running
        task with after_id; after_seq is within one attempt; attempt filters).
        A read: any time."""

    # --- other reads -------------------------------------------------------------------------
    @abstractmethod
    def alerts(self, all_: bool = False, node_id: int | None = None,
               limit: int = 500, level=None, kind=None, since=None) -> list[dict]:
        """Alerts newest first: the active ones, or all; of one node, of one level, of one
        kind ("level" for the level alerts, else flapping, rule, security) and opened at or
        after `since` when given (alert_filters). A read: any time."""

    @abstractmethod
    def alert(self, alert_id: int) -> dict | None:
        """One alert (reasons a list) or None. A read: any time."""

    @abstractmethod
    def metrics(self, node_id: int, since: float, limit: int = 5000) -> list[dict]:
        """Raw samples of one node at or after `since`, oldest first. A read: any time."""

    @abstractmethod
    def metrics_series(self, node_id: int, since: float, until: float,
                       points: int) -> list[dict]:
        """Samples of one node in [since, until] averaged into at most `points` equal time
        buckets: ts (the bucket's first), cpu/memory/disk percent, load_1, samples.
        A read: any time."""

    @abstractmethod
    def audit(self, limit: int = 100, node: str | None = None) -> list[dict]:
        """`ssh_audit` rows newest first, of one node when given. A read: any time."""

    @abstractmethod
    def count(self, table: str) -> int:
        """Rows in `table`. A read: any time."""

    # --- the CURVE key store of several masters (keymirror.py) ----------------------------
    @abstractmethod
    def bus_keys(self) -> list[tuple]:
        """Every `bus_keys` row as (folder, name, public, secret, role), by folder and
        name. A read: any time."""

    @abstractmethod
    def replace_bus_keys(self, rows: list[tuple]) -> None:
        """Replace every `bus_keys` row with `rows` (folder, name, public, secret, role),
        in one durable transaction (joining the caller's)."""

    # --- users, tokens, control audit -----------------------------------------------------
    @abstractmethod
    def user(self, name: str) -> dict | None:
        """The `users` row (with password_hash) or None. A read: any time."""

    @abstractmethod
    def users(self) -> list[dict]:
        """Every user by name, without password_hash. A read: any time."""

    @abstractmethod
    def save_user(self, row: dict) -> None:
        """Insert or replace a user by name. Own durable transaction."""

    @abstractmethod
    def delete_user(self, name: str) -> bool:
        """Delete a user; whether one existed. Own durable transaction."""

    @abstractmethod
    def add_token(self, row: dict) -> int:
        """Insert a token (its id is assigned here); returns the id. Own durable
        transaction."""

    @abstractmethod
    def token_by_hash(self, token_hash: str) -> dict | None:
        """The token row with this hash (revoked or not) or None. A read: any time."""

    @abstractmethod
    def tokens(self, kind: str | None = None) -> list[dict]:
        """Tokens by id, of one kind when given, without token_hash. A read: any time."""

    @abstractmethod
    def use_token(self, token_id: int, now: float) -> None:
        """Count one use (used_count + 1, last_used_at = now); a limited token (uses_left not
        None) loses one. Own durable transaction."""

    @abstractmethod
    def revoke_token(self, token_id: int, now: float) -> bool:
        """Set revoked_at once; True if it was not revoked yet. Own durable transaction."""

    @abstractmethod
    def audit_log(self, since: float | None = None, who: str | None = None,
                  method: str | None = None, limit: int = 100) -> list[dict]:
        """Control-audit rows newest first, filtered (ts >= since, who, method); `params`
        decoded. A read: any time."""

    # --- shared SQL (the same on both backends, in the backend's placeholder style) ------
    MARK = "?"

    def ended_task_ids(self, statuses, since: float, node=None, task_type=None,
                       limit: int = 1000, queue=None) -> list[int]:
        """Ids of the tasks in one of `statuses` that finished at or after `since`, on that
        node, of that type and in that queue when given, newest first. A read: any time."""
        m, statuses = self.MARK, list(statuses)
        sql = (f"SELECT id FROM tasks WHERE status IN ({', '.join(m for _ in statuses)}) "
               f"AND finished_at >= {m}")
        params = [*statuses, since]
        for col, value in (("assigned_node", node), ("task_type", task_type)):
            if value is not None:
                sql += f" AND {col} = {m}"
                params.append(value)
        if queue is not None:   # a task without a queue is in "default"
            sql += f" AND COALESCE(queue, 'default') = {m}"
            params.append(queue)
        sql += f" ORDER BY id DESC LIMIT {m}"
        params.append(limit)
        return [r[0] for r in self._fetch(sql, params)]

    def _fetch(self, sql: str, params=()) -> list[tuple]:
        """Rows of one read as tuples (each backend says how)."""
        raise NotImplementedError

    def _execmany(self, sql: str, rows: list) -> None:
        raise NotImplementedError

    def _exec(self, sql: str, params=()) -> int:
        """One write statement; how many rows it changed (metrics roll-ups, rollup.py)."""
        raise NotImplementedError

    def open_unique_windows(self, now: float) -> list[tuple[str, int, float]]:
        sql = ("SELECT unique_key, id, unique_until FROM tasks WHERE unique_until > "
               f"{self.MARK} AND unique_key IS NOT NULL ORDER BY id")
        return [(k, int(i), float(u)) for k, i, u in self._fetch(sql, (now,))]

    def add_task_deps(self, rows: list[tuple]) -> None:
        m = self.MARK
        self._execmany(f"INSERT INTO task_deps (task_id, dep_id) VALUES ({m}, {m})",
                       [tuple(r) for r in rows])

    def task_deps(self, task_ids, downstream: bool) -> list[tuple[int, int]]:
        ids = list(task_ids)
        if not ids:
            return []
        col = "dep_id" if downstream else "task_id"
        sql = (f"SELECT task_id, dep_id FROM task_deps WHERE {col} IN "
               f"({', '.join(self.MARK for _ in ids)}) ORDER BY task_id, dep_id")
        return [(int(a), int(b)) for a, b in self._fetch(sql, ids)]

    # --- notifications (m015; the SQL is in notify_sql.py, shared by both backends) ------
    def load_notify(self, now: float) -> dict:
        """{channels, rules, silences (not expired at `now`), max_silence, max_row,
        max_delivery}: what the broker's NotifyBook starts from. A read: any time."""
        from architect.broker.store import notify_sql
        return notify_sql.load(self, now)

    def save_notify(self, changes: dict) -> None:
        """Channels and rules upserted (None: deleted), silences upserted, delivery-attempt
        rows inserted; inside the caller's transaction."""
        from architect.broker.store import notify_sql
        notify_sql.save(self, changes)

    def notifications(self, channel=None, outcome=None, alert_id=None, delivery=None,
                      limit: int = 100) -> list[dict]:
        """Delivery-attempt rows newest first, filtered. A read: any time."""
        from architect.broker.store import notify_sql
        return notify_sql.deliveries(self, channel, outcome, alert_id, delivery, limit)

    def silence_history(self, limit: int = 200) -> list[dict]:
        """Every silence, expired ones too, newest first. A read: any time."""
        from architect.broker.store import notify_sql
        return notify_sql.silences(self, limit)

    # --- per-node thresholds and custom alert rules (m014; broker/alert_rules.py) --------
    THRESHOLD_COLUMNS = ("node", "cpu_warning", "cpu_critical", "memory_warning",
                         "memory_critical", "disk_warning", "disk_critical", "load_warning",
                         "load_critical", "updated_at", "updated_by")
    RULE_COLUMNS = ("name", "expr", "level", "node", "capability", "created_at", "created_by")

    def load_alert_config(self) -> tuple[list[dict], list[dict]]:
        """(alert_rules rows by name, node_thresholds rows by node). A read: any time."""
        out = []
        for table, cols, key in (("alert_rules", self.RULE_COLUMNS, "name"),
                                 ("node_thresholds", self.THRESHOLD_COLUMNS, "node")):
            rows = self._fetch(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {key}")
            out.append([dict(zip(cols, r)) for r in rows])
        return out[0], out[1]

    def save_alert_config(self, taken: list) -> None:
        """[rule changes, threshold changes]: name → row (upsert) or None (delete). Inside
        transaction()."""
        if not taken:
            return
        m = self.MARK
        for table, cols, changes in (("alert_rules", self.RULE_COLUMNS, taken[0]),
                                     ("node_thresholds", self.THRESHOLD_COLUMNS, taken[1])):
            gone = [(k,) for k, row in changes.items() if row is None]
            if gone:
                self._execmany(f"DELETE FROM {table} WHERE {cols[0]} = {m}", gone)
            rows = [tuple(row[c] for c in cols) for row in changes.values() if row is not None]
            if rows:
                sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
                self._execmany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                               f"({', '.join(m for _ in cols)}) ON CONFLICT ({cols[0]}) "
                               f"DO UPDATE SET {sets}", rows)
