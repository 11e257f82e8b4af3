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

Here: the contract (BaseStore's abstract methods). The methods written once for both backends
over _fetch / _execmany / _exec / MARK are in shared_queries.py (SharedQueries, which
BaseStore inherits); the column lists and the module-level SQL builders in shared_sql.py,
re-exported here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Iterable

from architect.broker.store.shared_queries import SharedQueries
from architect.broker.store.shared_sql import (
    ALERT_COLUMNS, ALERT_KINDS, AUDIT_COLUMNS, AUDIT_LOG_COLUMNS, JSON_NODE_COLUMNS,
    METRIC_COLUMNS, NODE_COLUMNS, SCHEDULE_RUN_COLUMNS, TABLES, TOKEN_COLUMNS, _counted, _like,
    _schedule_upsert, alert_filters, task_filters, write_sql)
from architect.broker.tasks import JSON_TASK_COLUMNS, TASK_COLUMNS

__all__ = ["BaseStore", "Fenced", "TASK_COLUMNS", "JSON_TASK_COLUMNS", "NODE_COLUMNS", "JSON_NODE_COLUMNS",
           "METRIC_COLUMNS", "ALERT_COLUMNS", "AUDIT_COLUMNS", "AUDIT_LOG_COLUMNS",
           "TOKEN_COLUMNS", "TABLES"]
# defined in shared_sql.py, still importable from here
__all__ += ["ALERT_KINDS", "SCHEDULE_RUN_COLUMNS", "alert_filters", "task_filters", "write_sql",
            "_counted", "_like", "_schedule_upsert"]


class Fenced(RuntimeError):
    """The database refused a write: this broker's leader epoch is no longer the current
    one (another master took over). The broker must stop at once (lease.py)."""


class BaseStore(SharedQueries, ABC):
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

    # --- schedules (load_schedules, delete_schedule, schedule_runs, load_queues and
    # save_queues: shared_queries.SharedQueries) --------------------------------------------
    @abstractmethod
    def save_schedules(self, rows: list[tuple]) -> None:
        """Upsert schedules by name: rows in schedules.COLUMNS order, spec JSON-encoded.
        Inside transaction()."""

    @abstractmethod
    def insert_schedule_runs(self, rows: list[tuple]) -> None:
        """Append runs: SCHEDULE_RUN_COLUMNS. Inside transaction()."""

    @abstractmethod
    def purge_tasks(self, before: float, limit: int = 1000) -> list[tuple[str, str, int]]:
        """Delete up to `limit` final tasks that finished before `before`, oldest first,
        with their events, output and workflow edges, and the roll-up hours a day older
        than `before`. → (node or '', state, how many) deleted. Inside transaction()."""

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

    # --- retention: inside a transaction, in chunks (purge_metrics, purge_task_output:
    # SharedQueries) ------------------------------------------------------------------------
    @abstractmethod
    def purge_audit(self, before: float, limit: int = 50_000) -> int:
        """Delete at most `limit` control-audit rows older than `before`; returns how many.
        Inside transaction()."""

    # --- task reads (task_counts, distribution, task_flow over _flow_rows and _rollup_rows,
    # timeline, ended_task_ids, open_unique_windows, task_deps: SharedQueries) --------------
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
    def _rollup_rows(self, hour: int) -> list[tuple[str, str, int]]:
        """(node, state, count) summed over the roll-up from `hour` on."""

    @abstractmethod
    def finished_per_minute(self, now: float, since: float) -> list[tuple[int, int]]:
        """(minutes before `now`, count) of the tasks finished at or after `since`, the minute
        being int((now - finished_at) / 60). A read: any time."""

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

    # --- the CURVE key store of several masters (keymirror.py; bus_keys: SharedQueries) ---
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

    # notifications (load_notify, save_notify, notifications, silence_history), per-node
    # thresholds and alert rules (load_alert_config, save_alert_config): SharedQueries
