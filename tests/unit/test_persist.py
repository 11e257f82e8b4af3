"""Tier 1: Broker.persist as a unit of work (architect/broker/persist.py). Every stream is
taken, written in one transaction, and put back whole when the write fails; the next
persist writes each change once. Fake clock, a real SQLite file, no sockets."""

from __future__ import annotations

import pytest

from architect import config as config_mod
from architect.broker.core import Broker
from architect.broker.methods import Caller
from architect.broker.persist import RowBuffer
from architect.broker.schedules import Schedule
from architect.broker.store import Store
from architect.bus.messages import Heartbeat, Request

T0 = 1_000_000.0
CALM = {"cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0, "load_1": 0.1}
STREAM_TABLES = ("nodes", "alerts", "metrics", "tasks", "task_events", "task_output",
                 "schedules", "schedule_runs", "ssh_audit", "audit")


class FlakyStore(Store):
    """Fails the last write of the transaction (everything before it is rolled back)."""
    fail = False

    def insert_audit_log(self, rows):
        super().insert_audit_log(rows)
        if self.fail:
            raise OSError("disk I/O error")


@pytest.fixture
def broker(tmp_path):
    env = {"ARCHITECT_DATA_DIR": str(tmp_path / "data")}
    config = config_mod.load(env=env, config_file=tmp_path / "none.json")
    b = Broker(config, now=T0, store=FlakyStore(config.db_path))
    yield b
    b.store.fail = False
    b.close()


def on_disk(b) -> dict[str, int]:
    reader = Store(b.store.path)
    try:
        return {t: reader.count(t) for t in STREAM_TABLES}
    finally:
        reader.close()


def changes_in_every_stream(b, now):
    b.on_heartbeat(Heartbeat(name="n1", ts=now, metrics=dict(CALM)), now)      # node, metrics
    b.identity_mismatch(Caller("key-x", "node"), "n1", "heartbeat", now)        # alert
    reply = b.on_request(Request(id=1, method="task.submit", params={           # task, event,
        "task_type": "shell", "payload": {"command": "true"}}), now)            # audit row
    assert reply.ok, reply
    b.output_rows.append((reply.result["id"], 1, 0, "stdout", "hi", now))       # output
    b.ssh.audit("alice", "exec", None, "root@h", "uptime", now, status="refused")  # ssh_audit
    s = b.schedules.add(Schedule(name="nightly", spec={"task_type": "shell"},    # schedule,
                                 every=60.0), now)
    b.schedules.run_row(s, now, now, "missed", detail="test")                   # and a run


def test_the_stream_list_covers_every_table(broker):
    assert [s.name for s in broker.streams] == ["nodes", "alerts", "alert_config", "metrics", "tasks",
                                                "task_output", "queues", "schedules",
                                                "ssh_audit", "audit", "notify"]
    assert isinstance(broker.metrics_rows, RowBuffer) and isinstance(broker.output_rows, RowBuffer)


def test_a_failed_write_puts_every_stream_back_and_the_next_writes_each_once(broker):
    b = broker
    changes_in_every_stream(b, T0)
    b.subscribed = {b"task.": 1}
    b.take_events()
    b.store.fail = True
    assert b.persist(T0) is False
    assert b.counters["persist_errors"] == 1
    assert set(on_disk(b).values()) == {0}                  # rolled back, all of it
    assert [e for e in b.take_events() if e[0].startswith("task.")] == []   # not published
    assert b.persist(T0 + 0.5) is False                      # backoff: not even tried
    b.store.fail = False
    assert b.persist(T0 + 0.6, force=True) is True           # force ignores the backoff
    assert on_disk(b) == {t: 1 for t in STREAM_TABLES}
    assert [e[0] for e in b.take_events()] == ["task.1.queued"]   # after the commit
    assert b.persist(T0 + 5) is True
    assert on_disk(b) == {t: 1 for t in STREAM_TABLES}      # nothing twice


def test_put_back_keeps_order_ahead_of_newer_changes(broker):
    b = broker
    b.output_rows.extend([(1, 1, 0, "stdout", "a", T0)])
    taken = b.output_rows.take_dirty()
    b.output_rows.append((1, 1, 1, "stdout", "b", T0))
    b.output_rows.put_back(taken)
    assert [r[4] for r in b.output_rows] == ["a", "b"]
    b.ssh.audit("alice", "exec", None, "t", "one", T0, status="refused")
    rows = b.ssh.take_dirty()
    b.ssh.audit("alice", "exec", None, "t", "two", T0, status="refused")
    b.ssh.put_back(rows)
    assert [r["command"] for r in b.ssh.dirty] == ["one", "two"]


def test_durable_only_when_it_holds_what_was_acknowledged(broker, monkeypatch):
    b = broker
    seen = []
    real = b.store.transaction
    monkeypatch.setattr(b.store, "transaction", lambda durable=True: (seen.append(durable),
                                                                     real(durable))[1])
    b.on_heartbeat(Heartbeat(name="n1", ts=T0, metrics=dict(CALM)), T0)
    assert b.persist(T0 + 2) is True                          # heartbeats only: not fsynced
    b.on_request(Request(id=1, method="task.submit", params={
        "task_type": "shell", "payload": {"command": "true"}}), T0 + 3)
    assert b.persist(T0 + 3) is True                          # an accepted task: fsynced
    assert seen == [False, True]
