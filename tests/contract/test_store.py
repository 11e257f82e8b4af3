"""The store contract (architect/broker/store/base.py): one test class, run against every
backend (huey's tests/test_storage.py is the model). A new backend — PostgreSQL — is one
more entry in BACKENDS: a class that opens a store and answers the few questions the
interface does not (which tables exist, how durable the commit is, a read-only reader).

Time is passed in as values; nothing sleeps. The PostgreSQL backend runs on a real server
(tests/pg.py: one per session, a fresh database per test).
"""

from __future__ import annotations

import random
import re
import sqlite3
from pathlib import Path

import pytest
from psycopg.rows import tuple_row

import architect
from architect.broker import tasks as T
from architect.broker.task_core import _encode_task_changes, _write_task_changes
from architect.broker.store import (ALERT_COLUMNS, AUDIT_COLUMNS, METRIC_COLUMNS, TABLES,
                                    TASK_COLUMNS, BaseStore, Store, open_db)

T0 = 1_000_000.0


class SQLiteBackend:
    """The embedded default: a file in the data dir, WAL, synchronous FULL / NORMAL."""
    readonly_error = sqlite3.OperationalError

    def open(self, tmp_path) -> BaseStore:
        return Store(str(tmp_path / "data" / "architect.db"))

    def reopen(self, store: BaseStore) -> BaseStore:
        return Store(store.path)

    def tables(self, store) -> set[str]:
        return set(store.db.table_names())

    def columns(self, store, table: str) -> set[str]:
        return set(store.db[table].columns_dict)

    def migrations(self, store) -> list[str]:
        return [r["name"] for r in store.db["_sqlite_migrations"].rows_where(order_by="name")]

    def commit_level(self, store) -> str:
        """How durable the current transaction's commit is."""
        level = store.conn.execute("PRAGMA synchronous").fetchone()[0]
        return {2: "full", 1: "normal"}.get(level, str(level))

    def reader(self, store):
        return open_db(store.path, readonly=True)

    def reader_count(self, reader, table: str) -> int:
        return reader.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def reader_write(self, reader) -> None:
        reader.execute("INSERT INTO users (name, role) VALUES ('mallory', 'admin')")

    def close_reader(self, reader) -> None:
        reader.conn.close()


class PostgresBackend:
    """PostgreSQL (psycopg 3): synchronous_commit on / off, a read-only reader connection."""

    def __init__(self, server):
        self.server = server
        import psycopg
        self.readonly_error = psycopg.errors.ReadOnlySqlTransaction

    def open(self, tmp_path) -> BaseStore:
        from architect.broker.store.postgres import Store as PostgresStore
        return PostgresStore(self.server.create_database())

    def reopen(self, store: BaseStore) -> BaseStore:
        return type(store)(store.url)

    def _names(self, store, sql: str, params=()) -> set[str]:
        return {r[0] for r in store._query(sql, params, rows=tuple_row)}

    def tables(self, store) -> set[str]:
        return self._names(store, "SELECT table_name FROM information_schema.tables "
                                  "WHERE table_schema = 'public'")

    def columns(self, store, table: str) -> set[str]:
        return self._names(store, "SELECT column_name FROM information_schema.columns "
                                  "WHERE table_schema = 'public' AND table_name = %s", (table,))

    def migrations(self, store) -> list[str]:
        return [r[0] for r in store._query("SELECT name FROM migrations ORDER BY name",
                                           rows=tuple_row)]

    def commit_level(self, store) -> str:
        """How durable the current transaction's commit is."""
        level = store._scalar("SHOW synchronous_commit")
        return {"on": "full", "off": "normal"}.get(level, level)

    def reader(self, store):
        from architect.broker.store.postgres import open_reader
        return open_reader(store.url)

    def reader_count(self, reader, table: str) -> int:
        return reader.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def reader_write(self, reader) -> None:
        reader.execute("INSERT INTO users (name, role) VALUES ('mallory', 'admin')")

    def close_reader(self, reader) -> None:
        reader.close()


BACKENDS = {"sqlite": SQLiteBackend, "postgres": PostgresBackend}


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    if request.param == "postgres":
        return PostgresBackend(request.getfixturevalue("pg_server"))
    return BACKENDS[request.param]()


@pytest.fixture
def store(backend, tmp_path):
    s = backend.open(tmp_path)
    yield s
    s.close()


@pytest.fixture
def reader(backend, store):
    r = backend.reader(store)
    yield r
    backend.close_reader(r)


# --- rows as the broker builds them -------------------------------------------------------
def node(id_, name, **kw) -> dict:
    row = {"id": id_, "name": name, "hostname": f"{name}.lan", "ip_address": "10.0.0.1",
           "capabilities": ["ssd"], "ssh": None, "status": "healthy", "reasons": [],
           "drained": 0, "registered_at": T0, "last_seen": T0, "last_metrics": {"cpu_percent": 1.0},
           "source": "register"}
    row.update(kw)
    return row


def sample(node_id, ts, cpu=10.0) -> tuple:
    values = {"node_id": node_id, "ts": ts, "cpu_percent": cpu, "memory_percent": 20.0,
              "disk_percent": 30.0, "load_1": 0.5, "load_5": 0.4, "load_15": 0.3,
              "net_bytes_sent": 1, "net_bytes_recv": 2, "process_count": 3}
    return tuple(values[c] for c in METRIC_COLUMNS)


def alert(id_, node_id, status="active", **kw) -> dict:
    row = dict.fromkeys(ALERT_COLUMNS)
    row.update({"id": id_, "node_id": node_id, "node_name": f"n{node_id}", "level": "warning",
                "previous_level": "healthy", "reasons": ["cpu 95% > 90%"], "message": "hot",
                "status": status, "created_at": T0 + id_}, **kw)
    return row


def ssh_row(id_, node_name="n1", status="started", **kw) -> dict:
    row = dict.fromkeys(AUDIT_COLUMNS)
    row.update({"id": id_, "ts": T0 + id_, "who": "alice", "action": "exec", "node": node_name,
                "node_id": 1, "target": "root@10.0.0.1", "command": "uptime", "status": status},
               **kw)
    return row


def audit_row(ts, who="alice", method="task.submit", **kw) -> dict:
    row = {"ts": ts, "who": who, "role": "operator", "via": None, "addr": None, "method": method,
           "target": "1", "params": {"task_type": "shell"}, "outcome": "ok", "error": None}
    row.update(kw)
    return row


def persist_book(store, book: T.TaskBook) -> T.TaskChanges:
    """What Broker.persist does with the task stream: rows and events in one transaction."""
    changes = book.take_dirty()
    with store.transaction(durable=changes.accepted > 0):
        _write_task_changes(store, _encode_task_changes(changes))
    return changes


def submit(book, now, **kw) -> T.Task:
    kw.setdefault("task_type", "shell")
    kw.setdefault("payload", {"command": "true"})
    return book.submit(T.Task(id=0, **kw), now)


BREAKDOWN = {"cpu": 0.4, "total": 0.9}


class TestStore:
    # --- schema and migrations ----------------------------------------------------------
    def test_contract_tables_and_task_columns_exist(self, backend, store):
        assert set(TABLES) <= backend.tables(store)
        assert set(TASK_COLUMNS) <= backend.columns(store, "tasks")
        assert {"orphan_deadline", "_json"}.isdisjoint(TASK_COLUMNS)   # memory only

    def test_migrations_apply_once_and_reopening_is_idempotent(self, backend, store):
        applied = backend.migrations(store)
        assert applied == sorted(applied) and len(applied) >= 4
        with store.transaction():
            store.save_nodes([node(1, "n1")])
        again = backend.reopen(store)
        try:
            assert backend.migrations(again) == applied
            assert [n["name"] for n in again.load_nodes()] == ["n1"]   # data kept
        finally:
            again.close()
        third = backend.reopen(store)
        third.close()

    def test_bus_keys_are_replaced_whole(self, store):
        rows = [("authorized", "n1", "P" * 40, None, "node"),
                ("self", "server", "S" * 40, "s" * 40, None)]
        store.replace_bus_keys(rows)
        assert store.bus_keys() == sorted(rows)
        store.replace_bus_keys(rows[1:])          # n1 revoked: gone
        assert store.bus_keys() == rows[1:]
        with pytest.raises(Exception):
            with store.transaction():
                store.replace_bus_keys([])
                raise RuntimeError("rolled back")
        assert store.bus_keys() == rows[1:]

    def test_the_backend_implements_the_interface_the_broker_uses(self, store):
        assert isinstance(store, BaseStore) and not BaseStore.__abstractmethods__ - set(
            name for name in dir(type(store)) if not getattr(getattr(type(store), name),
                                                             "__isabstractmethod__", False))
        root = Path(architect.__file__).parent
        called = set()
        for path in root.rglob("*.py"):
            if "store" not in path.relative_to(root).parts[:2]:
                called |= set(re.findall(r"\bstore\.([a-z_]+)\(", path.read_text()))
        called -= {"listing", "taken", "public_of", "authorize", "request", "accept",
                   "revoke", "set_role", "entries"}   # the CURVE KeyStore (bus/security.py)
        # abstract, or written once on top of abstract ones (task_flow; BaseStore inherits
        # them from shared_queries.SharedQueries)
        shared = {n for n in dir(BaseStore)
                  if callable(getattr(BaseStore, n)) and not n.startswith("_")}
        allowed = BaseStore.__abstractmethods__ | shared
        assert called <= allowed, called - allowed
        assert "conn" not in called and "db" not in called

    def test_an_empty_store(self, store):
        assert store.load_nodes() == [] and store.load_alerts() == []
        assert store.load_unfinished_tasks() == [] and store.task(1) is None
        for table in TABLES:
            assert store.count(table) == 0
        for table in ("nodes", "alerts", "tasks", "ssh_audit"):
            assert store.max_id(table) == 0
        assert store.task_counts() == {} and store.distribution() == []

    # --- transactions: group commit, rollback, durability --------------------------------
    def test_writes_in_one_transaction_land_together(self, backend, store, reader):
        book = T.TaskBook(random.Random(0))
        task = submit(book, T0)
        changes = book.take_dirty()
        with store.transaction():
            store.save_nodes([node(1, "n1")])
            store.save_alerts([alert(1, 1)])
            store.insert_metrics([sample(1, T0)])
            store.save_tasks([t.row() for t in changes.tasks])
            store.insert_task_events(changes.events)
            store.insert_output([(task.id, 1, 0, "stdout", "hi\n", T0)])
            store.save_audit([ssh_row(1)])
            store.insert_audit_log([audit_row(T0)])
            for table in TABLES[:8]:   # nothing is visible to others before the commit
                assert backend.reader_count(reader, table) == 0
        for table in ("nodes", "alerts", "metrics", "tasks", "task_events", "task_output",
                      "ssh_audit", "audit"):
            assert backend.reader_count(reader, table) == 1, table

    def test_an_exception_inside_rolls_everything_back(self, store):
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.save_nodes([node(1, "n1")])
                store.insert_metrics([sample(1, T0)] * 3)
                store.save_alerts([alert(1, 1)])
                raise RuntimeError("disk full")
        assert store.load_nodes() == [] and store.count("metrics") == 0
        assert store.load_alerts() == []
        with store.transaction():      # still usable
            store.save_nodes([node(1, "n1")])
        assert len(store.load_nodes()) == 1

    def test_a_nested_block_joins_the_outer_transaction(self, store):
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.save_nodes([node(1, "n1")])
                store.save_user({"name": "bob", "role": "viewer", "created_at": T0})
                raise RuntimeError
        assert store.user("bob") is None and store.load_nodes() == []

    def test_durable_and_non_durable_commits(self, backend, store, reader):
        with store.transaction(durable=False):
            assert backend.commit_level(store) == "normal"
            store.insert_metrics([sample(1, T0)])
        with store.transaction(durable=True):
            assert backend.commit_level(store) == "full"
            store.insert_metrics([sample(1, T0 + 1)])
        with store.transaction(durable=False):
            store.insert_metrics([sample(1, T0 + 2)])
        assert backend.reader_count(reader, "metrics") == 3   # both kinds are committed
        store.save_user({"name": "bob", "role": "viewer", "created_at": T0})
        assert backend.commit_level(store) == "full"          # account writes are durable
        with store.transaction():                             # the default is durable
            assert backend.commit_level(store) == "full"

    # --- nodes and metrics --------------------------------------------------------------
    def test_nodes_upsert_load_and_delete_with_their_metrics(self, store):
        with store.transaction():
            store.save_nodes([node(1, "n1"), node(2, "n2", ssh={"user": "root"})])
            store.insert_metrics([sample(1, T0), sample(2, T0)])
        with store.transaction():
            store.save_nodes([node(1, "n1", status="critical", reasons=["disk"], drained=1)])
        rows = {n["name"]: n for n in store.load_nodes()}
        assert rows["n1"]["status"] == "critical" and rows["n1"]["reasons"] == ["disk"]
        assert rows["n1"]["capabilities"] == ["ssd"] and rows["n1"]["drained"] == 1
        assert rows["n1"]["last_metrics"] == {"cpu_percent": 1.0}
        assert rows["n2"]["ssh"] == {"user": "root"} and rows["n2"]["reasons"] == []
        assert rows["n1"]["ssh"] is None
        assert store.max_id("nodes") == 2
        store.delete_node(2)
        assert [n["name"] for n in store.load_nodes()] == ["n1"]
        assert store.metrics(2, 0) == [] and len(store.metrics(1, 0)) == 1

    def test_metrics_are_inserted_in_batches_and_read_back(self, store):
        with store.transaction(durable=False):
            store.insert_metrics([sample(1, T0 + i, cpu=float(i)) for i in range(1000)])
            store.insert_metrics([sample(2, T0, cpu=99.0)])
        assert store.count("metrics") == 1001
        got = store.metrics(1, T0 + 990)
        assert [r["ts"] for r in got] == [T0 + i for i in range(990, 1000)]   # oldest first
        assert got[0]["cpu_percent"] == 990.0 and got[0]["process_count"] == 3
        assert len(store.metrics(1, 0, limit=5)) == 5

    def test_metrics_series_averages_into_buckets(self, store):
        with store.transaction():
            store.insert_metrics([sample(1, T0 + i, cpu=float(i)) for i in range(100)])
            store.insert_metrics([sample(2, T0, cpu=50.0)])
        series = store.metrics_series(1, T0, T0 + 100, points=10)
        assert len(series) == 10 and sum(s["samples"] for s in series) == 100
        assert series[0]["ts"] == T0 and series[0]["cpu_percent"] == pytest.approx(4.5)
        assert series[-1]["cpu_percent"] == pytest.approx(94.5)
        assert set(series[0]) == {"ts", "cpu_percent", "memory_percent", "disk_percent",
                                  "load_1", "samples"}
        assert store.metrics_series(1, T0 + 200, T0 + 300, 10) == []

    def test_purge_metrics_in_chunks(self, store):
        with store.transaction():
            store.insert_metrics([sample(1, T0 + i) for i in range(10)])
            store.insert_metrics([sample(1, T0 + 100 + i) for i in range(3)])
        purged = []
        while True:
            with store.transaction():
                n = store.purge_metrics(T0 + 100, limit=4)
            purged.append(n)
            if not n:
                break
        assert purged == [4, 4, 2, 0]
        assert [r["ts"] for r in store.metrics(1, 0)] == [T0 + 100, T0 + 101, T0 + 102]

    # --- alerts -------------------------------------------------------------------------
    def test_alerts_upsert_and_queries(self, store):
        with store.transaction():
            store.save_alerts([alert(1, 1), alert(2, 2), alert(3, 1, status="resolved",
                                                                resolved_at=T0 + 9)])
        with store.transaction():    # resolved, then acknowledged: the same row, updated
            store.save_alerts([alert(1, 1, status="resolved", resolved_at=T0 + 10,
                                     acknowledged_at=T0 + 11, acknowledged_by="alice")])
        assert [a["id"] for a in store.load_alerts()] == [2]
        assert [a["id"] for a in store.load_alerts(open_only=False)] == [1, 2, 3]
        assert [a["id"] for a in store.alerts()] == [2]
        assert [a["id"] for a in store.alerts(all_=True)] == [3, 2, 1]      # newest first
        assert [a["id"] for a in store.alerts(all_=True, node_id=1)] == [3, 1]
        assert [a["id"] for a in store.alerts(all_=True, limit=1)] == [3]
        one = store.alert(1)
        assert one["status"] == "resolved" and one["acknowledged_by"] == "alice"
        assert one["reasons"] == ["cpu 95% > 90%"] and one["kind"] is None
        assert store.alert(99) is None and store.max_id("alerts") == 3
        with store.transaction():
            store.save_alerts([alert(4, None, kind="security", source="key-x", reasons=[])])
        assert store.alert(4)["kind"] == "security" and store.alert(4)["reasons"] == []
        # the history's filters: level, kind ("level" = the level alerts), opened since
        with store.transaction():
            store.save_alerts([alert(5, 2, level="critical", kind="rule", created_at=T0 + 50)])
        ids = lambda **kw: [a["id"] for a in store.alerts(all_=True, **kw)]  # noqa: E731
        assert ids(level="critical") == [5] and ids(level="warning") == [4, 3, 2, 1]
        assert ids(kind="level") == [3, 2, 1] and ids(kind="rule") == [5]
        assert ids(kind="security") == [4] and ids(since=T0 + 40) == [5]
        assert ids(level="critical", kind="rule", node_id=2) == [5]
        assert ids(kind="flapping") == [] and [a["id"] for a in store.alerts(kind="rule")] == [5]
        assert [a["id"] for a in store.alerts(kind="level")] == [2]            # active only

    # --- tasks ----------------------------------------------------------------------------
    def test_task_rows_follow_the_state_machine_as_the_broker_writes_them(self, store):
        book = T.TaskBook(random.Random(0))
        task = submit(book, T0, idempotency_key="deploy-1", submitted_by="alice",
                      requirements=["gpu"], priority=5)
        changes = persist_book(store, book)
        assert changes.accepted == 1
        row = store.task(task.id)
        assert row == {c: getattr(task, c) for c in TASK_COLUMNS}   # decoded as it was
        assert T.Task(**row).row() == task.row()                      # and rebuilds the Task
        assert store.task_by_key("deploy-1")["id"] == task.id and store.task_by_key("x") is None
        book.pop(task.queue_key)
        book.assign(task, "n1", "w1", BREAKDOWN, T0 + 1)
        book.started(task, T0 + 1.5, T0 + 2)
        persist_book(store, book)
        row = store.task(task.id)
        assert (row["status"], row["attempt"], row["assigned_node"]) == ("running", 1, "n1")
        assert row["placement"] == BREAKDOWN and row["started_at"] == T0 + 1.5
        assert [t["id"] for t in store.load_unfinished_tasks()] == [task.id]
        book.cancel(task, T0 + 3)
        persist_book(store, book)
        assert store.task(task.id)["cancel_requested"] is True
        book.finish(task, T.SUCCEEDED, {"exit_code": 0, "stdout": "ok"}, T0 + 4)
        persist_book(store, book)
        row = store.task(task.id)
        assert row["status"] == "succeeded" and row["finished_at"] == T0 + 4
        assert row["result"] == {"exit_code": 0, "stdout": "ok"} and row["error"] is None
        assert store.load_unfinished_tasks() == [] and store.count("tasks") == 1
        events = store.task_events(task.id)
        assert [e["event"] for e in events] == ["queued", "assigned", "running",
                                                "cancel_requested", "succeeded"]
        assert events[0]["detail"] == {"submitted_by": "alice"} and events[2]["detail"] is None
        assert events[1]["detail"] == {"worker": "w1", "score": 0.9}
        assert (events[1]["ts"], events[1]["attempt"], events[1]["node"]) == (T0 + 1, 1, "n1")
        assert store.max_id("tasks") == task.id

    def test_task_defaults_decode(self, store):
        book = T.TaskBook(random.Random(0))
        task = submit(book, T0)
        persist_book(store, book)
        row = store.task(task.id)
        assert row["requirements"] == [] and row["placement"] is None and row["result"] is None
        assert row["cancel_requested"] is False and row["idempotency_key"] is None

    def test_listing_paging_and_counts(self, store):
        book = T.TaskBook(random.Random(0))
        tasks = [submit(book, T0 + i, task_type="shell" if i % 2 else "http") for i in range(7)]
        for t in tasks[:4]:
            book.pop(t.queue_key)
            book.assign(t, "n1" if t.id % 2 else "n2", "w1", BREAKDOWN, T0 + 10)
        book.finish(tasks[0], T.FAILED, {"error": "boom"}, T0 + 20)
        persist_book(store, book)
        ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
        assert ids(store.list_tasks()) == [7, 6, 5, 4, 3, 2, 1]           # newest first
        assert ids(store.list_tasks(limit=3)) == [7, 6, 5]
        assert ids(store.list_tasks(limit=3, offset=3)) == [4, 3, 2]
        assert ids(store.list_tasks(limit=3, offset=6)) == [1]
        assert ids(store.list_tasks(status="queued")) == [7, 6, 5]
        assert ids(store.list_tasks(node="n1")) == [3, 1]
        assert ids(store.list_tasks(task_type="shell")) == [6, 4, 2]
        assert ids(store.list_tasks(status="assigned", node="n2", task_type="shell")) == [4, 2]
        assert store.count_tasks() == 7 and store.count_tasks(status="queued") == 3
        assert store.count_tasks(node="n2", task_type="shell") == 2
        assert store.count_tasks(status="running") == 0
        assert store.task_counts() == {"queued": 3, "assigned": 3, "failed": 1}
        assert sorted(store.distribution()) == [("n1", "assigned", 1), ("n1", "failed", 1),
                                                ("n2", "assigned", 2)]

    def test_flow_of_a_long_window_from_the_rollup_equals_counting_the_tasks(self, store):
        """Past a day, task_flow sums the hourly roll-up of ended tasks, the unfinished
        tasks of those hours and the first partial hour: the same counts as a scan."""
        rnd = random.Random(5)
        book = T.TaskBook(random.Random(0))
        now = T0 + 5 * 86400
        tasks = [submit(book, T0 + rnd.uniform(0, 5 * 86400)) for _ in range(400)]
        for t in tasks:
            fate = rnd.random()
            if fate < 0.15:
                continue                                          # still queued
            book.queues.clear()
            book.assign(t, rnd.choice(["n1", "n2", "n3"]), "w", BREAKDOWN, t.created_at + 1)
            if fate < 0.25:
                continue                                          # assigned
            book.started(t, t.created_at + 2, t.created_at + 2)
            if fate < 0.35:
                continue                                          # running
            book.finish(t, rnd.choice([T.SUCCEEDED, T.FAILED]), {}, t.created_at + 3)
            if rnd.random() < 0.5:
                persist_book(store, book)                         # several commits
        persist_book(store, book)
        for since in (T0 - 10, T0 + 3 * 3600 + 1234.5, T0 + 2 * 86400 + 17, now - 86400 - 1):
            expected: dict = {}
            for t in tasks:
                if t.created_at >= since:
                    key = (t.assigned_node or "", t.status)
                    expected[key] = expected.get(key, 0) + 1
            got = {(node, status): n for node, status, n in store.task_flow(since, now)}
            assert got == expected, since

    def test_purge_tasks_in_chunks_with_what_belongs_to_them(self, store):
        book = T.TaskBook(random.Random(0))
        done = [submit(book, T0 + i) for i in range(3)]
        waiting = submit(book, T0 + 5)
        follower = book.submit(T.Task(id=0, task_type="shell", payload={"command": "x"},
                                      depends_on=[done[0].id]), T0 + 6, {done[0].id: T.QUEUED})
        for i, t in enumerate(done):
            book.pop(t.queue_key)
            book.assign(t, "n1", "w1", BREAKDOWN, T0 + 10)
            book.finish(t, T.SUCCEEDED if i else T.FAILED, {}, T0 + 20 + i)
        persist_book(store, book)
        with store.transaction():
            store.insert_output([(done[0].id, 1, 1, "stdout", "a", T0 + 15),
                                 (waiting.id, 1, 1, "stdout", "b", T0 + 100)])
        with store.transaction():
            gone = store.purge_tasks(T0 + 21.5, limit=10)      # the first two ended before
        # the first two, and the follower cancelled when its dependency failed
        assert sorted(gone) == [("", "cancelled", 1), ("n1", "failed", 1), ("n1", "succeeded", 1)]
        assert store.task(done[0].id) is None and store.task(done[1].id) is None
        assert store.task(done[2].id)["status"] == "succeeded"
        assert store.task_events(done[0].id) == [] and store.task_output(done[0].id) == []
        assert store.task_deps([done[0].id], True) == []
        assert store.task(follower.id) is None
        with store.transaction():
            assert store.purge_tasks(T0 + 1000, limit=1) == [("n1", "succeeded", 1)]
        with store.transaction():
            assert store.purge_task_output(T0 + 200) == 1
        assert store.task(waiting.id)["status"] == "queued"       # unfinished: kept

    def test_schedules_and_their_runs(self, store):
        from architect.broker import schedules as S
        book = T.TaskBook(random.Random(0))
        task = submit(book, T0)
        persist_book(store, book)
        a = S.Schedule(name="nightly", spec={"task_type": "shell", "payload": {"command": "x"}},
                       cron="0 3 * * *", tz="Europe/Berlin", missed="once", overlap="skip",
                       next_due=T0 + 100, last_task=task.id, created_by="alice")
        b = S.Schedule(name="beat", spec={"task_type": "python"}, every=1.0, paused=True)
        with store.transaction():
            store.save_schedules([S.row(a), S.row(b)])
            store.insert_schedule_runs([("nightly", T0, T0 + 0.1, "fired", task.id, None),
                                        ("nightly", T0 + 1, T0 + 1.1, "missed", None, "late")])
        loaded = store.load_schedules()
        assert [r["name"] for r in loaded] == ["beat", "nightly"]
        assert loaded[0]["paused"] is True and loaded[0]["every"] == 1.0
        assert S.Schedule(**loaded[1]).public() == a.public()
        runs = store.schedule_runs("nightly")
        assert [(r["outcome"], r["task_status"]) for r in runs] == [("missed", None),
                                                                   ("fired", "queued")]
        assert runs[0]["detail"] == "late" and store.schedule_runs("nightly", 1) == runs[:1]
        a.paused = True
        with store.transaction():
            store.save_schedules([S.row(a)])                  # an upsert by name
            store.delete_schedule("beat")
        assert [(r["name"], r["paused"]) for r in store.load_schedules()] == [("nightly", True)]
        with store.transaction():
            store.delete_schedule("nightly")
        assert store.load_schedules() == [] and store.schedule_runs("nightly") == []

    def test_flow_throughput_and_timeline(self, store):
        book = T.TaskBook(random.Random(0))
        old = submit(book, T0 - 5000)
        a, b, c = (submit(book, T0 + i) for i in range(3))
        for t, start in ((old, T0 - 4000), (a, T0 + 10), (b, T0 + 20)):
            book.pop(t.queue_key)
            book.assign(t, "n1", "w1", BREAKDOWN, start)
            book.started(t, start, start)
        book.finish(old, T.SUCCEEDED, {}, T0 - 3000)
        book.finish(a, T.SUCCEEDED, {}, T0 + 100)          # 800 s before T0 + 900: minute 13
        persist_book(store, book)
        assert sorted(store.task_flow(T0)) == [("", "queued", 1), ("n1", "running", 1),
                                               ("n1", "succeeded", 1)]
        assert len(store.task_flow(T0 - 6000)) == 3 and store.task_flow(T0 + 10) == []
        assert store.finished_per_minute(T0 + 900, T0) == [(13, 1)]
        assert store.finished_per_minute(T0 + 900, T0 + 200) == []
        spans = store.timeline(T0, 10)
        assert [s["id"] for s in spans] == [b.id, a.id]             # latest start first
        assert spans[0] == {"id": b.id, "task_type": "shell", "status": "running",
                            "assigned_node": "n1", "started_at": T0 + 20, "finished_at": None,
                            "attempt": 1}
        assert [s["id"] for s in store.timeline(T0 + 200, 10)] == [b.id]
        assert len(store.timeline(T0 - 10_000, 1)) == 1 and c.id not in \
            [s["id"] for s in store.timeline(T0 - 10_000, 10)]

    def test_task_output_by_attempt_and_cursor(self, store):
        with store.transaction(durable=False):
            store.insert_output([(1, 1, 0, "stdout", "a", T0), (1, 1, 1, "stderr", "b", T0),
                                 (2, 1, 0, "stdout", "other", T0)])
            store.insert_output([(1, 2, 0, "stdout", "c", T0 + 5)])
        out = store.task_output(1)
        assert [(o["attempt"], o["seq"], o["stream"], o["data"]) for o in out] == [
            (1, 0, "stdout", "a"), (1, 1, "stderr", "b"), (2, 0, "stdout", "c")]
        assert [o["data"] for o in store.task_output(1, attempt=2)] == ["c"]
        assert [o["data"] for o in store.task_output(1, attempt=1, after_seq=0)] == ["b"]
        assert [o["data"] for o in store.task_output(1, after_id=out[1]["id"])] == ["c"]
        assert store.task_output(3) == []

    # --- SSH audit --------------------------------------------------------------------------
    def test_ssh_audit_is_written_twice_and_listed_newest_first(self, store):
        with store.transaction():
            store.save_audit([ssh_row(1), ssh_row(2, node_name="n2")])
        with store.transaction():
            store.save_audit([ssh_row(1, status="ok", exit_code=0, duration=0.5,
                                      finished_at=T0 + 2)])
        rows = store.audit()
        assert [r["id"] for r in rows] == [2, 1]
        assert (rows[1]["status"], rows[1]["exit_code"], rows[1]["finished_at"]) == \
            ("ok", 0, T0 + 2)
        assert [r["id"] for r in store.audit(node="n2")] == [2]
        assert [r["id"] for r in store.audit(limit=1)] == [2]
        assert store.max_id("ssh_audit") == 2 and store.count("ssh_audit") == 2

    # --- users, tokens, the control audit ---------------------------------------------------
    def test_users(self, store):
        store.save_user({"name": "bob", "role": "viewer", "password_hash": "$argon2id$x",
                         "created_at": T0, "updated_at": T0, "created_by": "admin"})
        store.save_user({"name": "amy", "role": "admin", "password_hash": "h2",
                         "created_at": T0, "updated_at": T0, "created_by": "admin"})
        store.save_user({"name": "bob", "role": "operator", "password_hash": "h3",
                         "created_at": T0, "updated_at": T0 + 1, "created_by": "admin"})
        bob = store.user("bob")
        assert bob["role"] == "operator" and bob["password_hash"] == "h3"
        assert bob["updated_at"] == T0 + 1
        listed = store.users()
        assert [u["name"] for u in listed] == ["amy", "bob"]
        assert all("password_hash" not in u for u in listed)
        assert store.delete_user("bob") is True and store.delete_user("bob") is False
        assert store.user("bob") is None

    def test_tokens(self, store):
        base = {"kind": "api", "role": "operator", "created_at": T0, "created_by": "admin",
                "expires_at": None, "uses_left": None, "used_count": 0}
        api = store.add_token({**base, "name": "ci", "token_hash": "h-api"})
        join = store.add_token({**base, "kind": "join", "name": "rack", "token_hash": "h-join",
                                "uses_left": 2})
        assert join > api >= 1
        assert store.token_by_hash("h-api")["id"] == api and store.token_by_hash("x") is None
        assert [t["id"] for t in store.tokens()] == [api, join]
        assert [t["id"] for t in store.tokens("join")] == [join]
        assert all("token_hash" not in t for t in store.tokens())
        store.use_token(join, T0 + 5)
        store.use_token(api, T0 + 6)
        got = store.token_by_hash("h-join")
        assert (got["used_count"], got["uses_left"], got["last_used_at"]) == (1, 1, T0 + 5)
        got = store.token_by_hash("h-api")
        assert (got["used_count"], got["uses_left"]) == (1, None)     # unlimited stays so
        assert store.revoke_token(api, T0 + 7) is True
        assert store.revoke_token(api, T0 + 8) is False                # once
        assert store.token_by_hash("h-api")["revoked_at"] == T0 + 7
        assert store.revoke_token(999, T0) is False

    def test_control_audit_log_filters_and_purge_in_chunks(self, store):
        with store.transaction():
            store.insert_audit_log([audit_row(T0 + i, who="alice" if i % 2 else "bob",
                                              method="node.drain" if i < 3 else "task.submit")
                                    for i in range(10)])
            store.insert_audit_log([audit_row(T0 + 20, params=None, outcome="forbidden",
                                              error="needs admin")])
        rows = store.audit_log()
        assert len(rows) == 11 and rows[0]["ts"] == T0 + 20 and rows[0]["params"] is None
        assert rows[1]["params"] == {"task_type": "shell"}               # decoded
        assert [r["ts"] for r in store.audit_log(since=T0 + 8)] == [T0 + 20, T0 + 9, T0 + 8]
        assert len(store.audit_log(who="bob")) == 5
        assert [r["ts"] for r in store.audit_log(method="node.drain")] == [T0 + 2, T0 + 1, T0]
        assert len(store.audit_log(limit=2)) == 2
        purged = []
        while True:
            with store.transaction():
                n = store.purge_audit(T0 + 10, limit=4)
            purged.append(n)
            if not n:
                break
        assert purged == [4, 4, 2, 0] and [r["ts"] for r in store.audit_log()] == [T0 + 20]

    # --- the read-only reader ---------------------------------------------------------------
    def test_the_reader_reads_what_is_committed_and_cannot_write(self, backend, store, reader):
        store.save_user({"name": "bob", "role": "viewer", "created_at": T0})
        assert backend.reader_count(reader, "users") == 1
        with pytest.raises(backend.readonly_error):
            backend.reader_write(reader)
        assert store.users() == [{"name": "bob", "role": "viewer", "created_at": T0,
                                  "updated_at": None, "created_by": None}]


def test_open_store_picks_the_backend_from_the_config(tmp_path, pg_server):
    from architect.broker.store import open_store
    from architect.broker.store.postgres import Store as PostgresStore
    from architect.config import Config
    sqlite_store = open_store(Config(node_name="x", data_dir=str(tmp_path / "data")))
    try:
        assert isinstance(sqlite_store, Store)
        assert sqlite_store.path == str(tmp_path / "data" / "architect.db")
    finally:
        sqlite_store.close()
    url = pg_server.create_database()
    pg_store = open_store(Config(node_name="x", data_dir=str(tmp_path / "d2"),
                                 database_url=url.replace("postgresql://", "postgres://")))
    try:
        assert isinstance(pg_store, PostgresStore) and pg_store.load_nodes() == []
        assert not (tmp_path / "d2" / "architect.db").exists()
    finally:
        pg_store.close()
