"""The store methods written once for both backends, over the backend's primitives: _fetch
(rows of a read as tuples), _execmany, _exec (one write; how many rows it changed) and MARK
(its placeholder, "?" or "%s"). base.BaseStore inherits them (SharedQueries); their
contracts are the docstrings here, the rest of the interface is in base.py. Only SQL that
is the same on SQLite and PostgreSQL but for the placeholder belongs here; the module-level
builders are in shared_sql.py.
"""

from __future__ import annotations


class SharedQueries:
    """Mixed into base.BaseStore: the methods whose SQL is the same on both backends."""

    # --- the backend's primitives (each backend says how) --------------------------------
    MARK = "?"

    def _fetch(self, sql: str, params=()) -> list[tuple]:
        """Rows of one read as tuples (each backend says how)."""
        raise NotImplementedError

    def _execmany(self, sql: str, rows: list) -> None:
        raise NotImplementedError

    def _exec(self, sql: str, params=()) -> int:
        """One write statement; how many rows it changed (metrics roll-ups, rollup.py)."""
        raise NotImplementedError

    # --- schedules and queues ------------------------------------------------------------
    def load_schedules(self) -> list[dict]:
        """Every schedule (schedules.COLUMNS; spec decoded, paused a bool), by name."""
        import json

        from architect.broker.schedules import COLUMNS
        out = []
        for row in self._fetch("SELECT " + ", ".join(COLUMNS) + " FROM schedules ORDER BY name"):
            d = dict(zip(COLUMNS, row))
            d["spec"] = json.loads(d["spec"]) if d["spec"] else {}
            d["paused"] = bool(d["paused"])
            out.append(d)
        return out

    def delete_schedule(self, name: str) -> None:
        """Remove a schedule and its runs. Inside transaction()."""
        m = self.MARK
        self._exec(f"DELETE FROM schedules WHERE name = {m}", (name,))
        self._exec(f"DELETE FROM schedule_runs WHERE schedule = {m}", (name,))

    def schedule_runs(self, name: str, limit: int = 50) -> list[dict]:
        """A schedule's runs, newest first, each with the task's status (or None) as
        `task_status`. A read: any time."""
        m = self.MARK
        cols = ("id", "schedule", "due", "at", "outcome", "task_id", "detail", "task_status")
        rows = self._fetch(
            "SELECT r.id, r.schedule, r.due, r.at, r.outcome, r.task_id, r.detail, t.status "
            "FROM schedule_runs r LEFT JOIN tasks t ON t.id = r.task_id "
            f"WHERE r.schedule = {m} ORDER BY r.id DESC LIMIT {m}", (name, limit))
        return [dict(zip(cols, r)) for r in rows]

    def load_queues(self) -> list[dict]:
        """The queues with limits: {name, concurrency, rate, rate_text}."""
        sql = "SELECT name, concurrency, rate, rate_text FROM queues ORDER BY name"
        return [dict(zip(("name", "concurrency", "rate", "rate_text"), r))
                for r in self._fetch(sql)]

    def save_queues(self, changes: dict) -> None:
        """name → Queue (upsert its limits) or None (remove). Inside transaction()."""
        m = self.MARK
        for name, q in changes.items():
            self._exec(f"DELETE FROM queues WHERE name = {m}", (name,))
            if q is not None:
                self._exec("INSERT INTO queues (name, concurrency, rate, rate_text) VALUES "
                           f"({m}, {m}, {m}, {m})", (q.name, q.concurrency, q.rate, q.rate_text))

    # --- retention: inside a transaction, in chunks --------------------------------------
    def purge_task_output(self, before: float, limit: int = 50_000) -> int:
        """Delete up to `limit` streamed output chunks older than `before`. Inside
        transaction()."""
        m = self.MARK
        return self._exec(
            f"DELETE FROM task_output WHERE id IN (SELECT id FROM task_output WHERE ts < {m} "
            f"LIMIT {m})", (before, limit))

    def purge_metrics(self, before: float, limit: int = 50_000) -> int:
        """Delete at most `limit` samples older than `before`; returns how many (call again
        while it returns > 0). Inside transaction()."""
        m = self.MARK
        return self._exec(
            f"DELETE FROM metrics WHERE id IN (SELECT id FROM metrics WHERE ts < {m} LIMIT {m})",
            (before, limit))

    # --- task reads ----------------------------------------------------------------------
    def task_counts(self) -> dict[str, int]:
        """{status: number of tasks} over every task. A read: any time."""
        return dict(self._fetch("SELECT status, COUNT(*) FROM tasks GROUP BY status"))

    def distribution(self) -> list[tuple[str, str, int]]:
        """(assigned_node, status, count) for the tasks that were ever assigned.
        A read: any time."""
        return self._fetch(
            "SELECT assigned_node, status, COUNT(*) FROM tasks WHERE assigned_node IS NOT NULL "
            "GROUP BY assigned_node, status")

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

    def _flow_rows(self, since: float, before: float | None,
                   unfinished: bool) -> list[tuple[str, str, int]]:
        """(node or '', status, count) of the tasks created in [since, before), only the
        queued / assigned / running ones when `unfinished`."""
        m = self.MARK
        sql = f"SELECT COALESCE(assigned_node, ''), status, COUNT(*) FROM tasks WHERE created_at >= {m}"
        params: list = [since]
        if before is not None:
            sql += f" AND created_at < {m}"
            params.append(before)
        if unfinished:
            sql += " AND status IN ('waiting', 'scheduled', 'queued', 'assigned', 'running')"
        return self._fetch(sql + " GROUP BY 1, 2", params)

    def timeline(self, since: float, limit: int) -> list[dict]:
        """Spans of tasks that started and were running at or after `since` (not finished or
        finished since then), latest start first: id, task_type, status, assigned_node,
        started_at, finished_at, attempt. A read: any time."""
        m = self.MARK
        cols = ("id", "task_type", "status", "assigned_node", "started_at", "finished_at",
                "attempt")
        rows = self._fetch(
            "SELECT id, task_type, status, assigned_node, started_at, finished_at, attempt "
            f"FROM tasks WHERE started_at IS NOT NULL AND (finished_at IS NULL OR finished_at >= {m})"
            f" ORDER BY started_at DESC LIMIT {m}", (since, limit))
        return [dict(zip(cols, row)) for row in rows]

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

    def open_unique_windows(self, now: float) -> list[tuple[str, int, float]]:
        sql = ("SELECT unique_key, id, unique_until FROM tasks WHERE unique_until > "
               f"{self.MARK} AND unique_key IS NOT NULL ORDER BY id")
        return [(k, int(i), float(u)) for k, i, u in self._fetch(sql, (now,))]

    # --- workflow edges ------------------------------------------------------------------
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

    # --- the CURVE key store of several masters (keymirror.py) ---------------------------
    def bus_keys(self) -> list[tuple]:
        """Every `bus_keys` row as (folder, name, public, secret, role), by folder and
        name. A read: any time."""
        return [tuple(r) for r in self._fetch(
            "SELECT folder, name, public, secret, role FROM bus_keys ORDER BY folder, name")]

    # --- notifications (m015; the SQL is in notify_sql.py, shared by both backends) ------
    def load_notify(self, now: float) -> dict:
        """{channels, rules, silences (not expired at `now`), retries (attempt rows whose
        retry is still to come), max_silence, max_row, max_delivery}: what the broker's
        NotifyBook starts from. A read: any time."""
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
