"""Tier 1: the Broker driven with a fake clock and no sockets.

Only its public entry points: heartbeats, requests (`on_request`), the work socket's
handlers (`WORK_HANDLERS`), `tick`, `persist`, `take_deferred`, `take_events`, `work_out`.
The store is a real SQLite file in tmp_path; time is whatever the test says it is.
"""

from __future__ import annotations

import random

import pytest

from architect import config as config_mod
from architect.broker.core import Broker
from architect.broker.store import Store
from architect.broker.work import WORK_HANDLERS
from architect.bus.messages import (BrokerPing, Heartbeat, Request, TaskAck, TaskAssign,
                                    TaskCancel, TaskResult, TaskStarted, WorkerBye, WorkerPing,
                                    WorkerReady)

T0 = 1_000_000.0
INTERVAL, LIVENESS = 1.0, 3           # the worker is lost after 3 s of silence
HB_TIMEOUT = 30.0
CALM = {"cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0, "load_1": 0.1}
CLIENT = b"client-1"


def make_config(tmp_path):
    env = {"ARCHITECT_DATA_DIR": str(tmp_path / "data"),
           "ARCHITECT_WORKER_HEARTBEAT_INTERVAL": str(INTERVAL),
           "ARCHITECT_WORKER_LIVENESS": str(LIVENESS),
           "ARCHITECT_HEARTBEAT_TIMEOUT": str(HB_TIMEOUT),
           "ARCHITECT_HEARTBEAT_INTERVAL": "5"}
    return config_mod.load(env=env, config_file=tmp_path / "none.json")


class Harness:
    """A broker and the loop's duties (tick, persist, collect what would be sent)."""

    def __init__(self, tmp_path, now=T0):
        self.tmp_path = tmp_path
        self.config = make_config(tmp_path)
        self.now = now
        self.store = Store(self.config.db_path)
        self.b = Broker(self.config, now=now, store=self.store)
        self.b.tasks.rnd = random.Random(0)     # the retry jitter, made deterministic
        self._req = 0
        self._reader = None                     # a second connection: what is on disk
        self.sent: list = []                    # (identity, message) that went to workers

    def close(self):
        self.b.close()
        if self._reader is not None:
            self._reader.close()

    # inputs
    def heartbeat(self, name="n1", metrics=CALM, caps=()):
        self.b.on_heartbeat(Heartbeat(name=name, ts=self.now, metrics=dict(metrics),
                                      capabilities=list(caps)), self.now)

    def work(self, ident: bytes, msg):
        WORK_HANDLERS[type(msg)](self.b, ident, msg, self.now)

    def ready(self, wid="w1", node="n1", slots=2, running=(), cls=WorkerReady,
              types=("shell",)):
        self.work(wid.encode(), cls(worker_id=wid, node=node, slots=slots, capabilities=[],
                                    task_types=list(types), running=[list(r) for r in running],
                                    hostname=node, pid=1, metrics={}))

    def request(self, method, params=None, token=CLIENT):
        self._req += 1
        return self.b.on_request(Request(id=self._req, method=method, params=params or {}),
                                 self.now, token=token)

    def call(self, method, params=None):
        reply = self.request(method, params)
        assert reply is not None and reply.ok, reply
        return reply.result

    def submit(self, **spec):
        spec.setdefault("task_type", "shell")
        spec.setdefault("payload", {"command": "true"})
        return self.call("task.submit", spec)["id"]

    # the loop's iteration
    def step(self, dt: float = 0.0):
        self.now += dt
        self.b.tick(self.now)
        assert self.b.persist(self.now)
        out, self.b.work_out = self.b.work_out, []
        self.sent.extend(out)
        return [(i, m) for i, m in out if not isinstance(m, BrokerPing)]

    def assigns(self, out):
        return [m for _, m in out if isinstance(m, TaskAssign)]

    def row(self, task_id):
        """The task as committed, read through a second connection (not the broker's)."""
        if self._reader is None:
            self._reader = Store(self.config.db_path)
        return self._reader.task(task_id)


def kill9(harness):
    """The broker dies: no close(), no last persist; only its files are left. (Its SSH
    service's inproc wake socket and threads are released, as the process exit would.)"""
    harness.b.ssh.close()
    harness.store.close()
    if harness._reader is not None:
        harness._reader.close()


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def result(task_id, attempt, state="succeeded", **kw):
    kw.setdefault("exit_code", 0 if state == "succeeded" else 1)
    return TaskResult(task_id=task_id, attempt=attempt, state=state, **kw)


# ---------------------------------------------------------------------------------------------

def test_submit_assign_start_result_ack_and_final_on_disk(h):
    h.heartbeat("n1")
    h.ready("w1", "n1", slots=2)
    events = dict(h.b.take_events())
    assert "node.n1.registered" in events and "node.n1.worker_joined" in events
    task_id = h.submit(payload={"command": "echo hi"})
    out = h.step()
    assert out == [(b"w1", TaskAssign(task_id=task_id, attempt=1, task_type="shell",
                                      payload={"command": "echo hi"}, timeout=None))]
    row = h.row(task_id)
    assert row["status"] == "assigned" and row["assigned_node"] == "n1"
    assert row["worker_id"] == "w1" and row["attempt"] == 1
    assert row["placement"]["total"] == pytest.approx(0.36 + 0.24 + 0.2 + 0.1)  # calm, empty

    h.now += 0.2
    h.work(b"w1", TaskStarted(task_id=task_id, attempt=1, ts=h.now))
    assert h.step(0.0) == []
    assert h.row(task_id)["status"] == "running"
    h.now += 0.3
    h.work(b"w1", result(task_id, 1, stdout="hi\n", started_at=T0 + 0.2, finished_at=h.now))
    out = h.step()
    assert out == [(b"w1", TaskAck(task_id=task_id, attempt=1))]
    row = h.row(task_id)
    assert row["status"] == "succeeded" and row["finished_at"] == h.now
    assert row["result"]["stdout"] == "hi\n"
    assert [e["event"] for e in h.store.task_events(task_id)] == \
        ["queued", "assigned", "running", "succeeded"]
    assert h.call("worker.list")[0]["active"] == 0


def test_the_ack_is_queued_after_the_result_is_on_disk(h):
    """The ack goes out with the loop's send after persist: at the moment it is in
    work_out the result is already committed (a fresh reader sees it)."""
    h.heartbeat()
    h.ready()
    task_id = h.submit()
    h.step()
    h.work(b"w1", result(task_id, 1))
    h.b.persist(h.now)
    acks = [m for _, m in h.b.work_out if isinstance(m, TaskAck)]
    assert acks == [TaskAck(task_id=task_id, attempt=1)]
    assert h.row(task_id)["status"] == "succeeded"


def test_credit_flow_through_the_broker(h):
    h.heartbeat()
    h.ready("w1", slots=2)
    ids = [h.submit() for _ in range(5)]
    out = h.assigns(h.step())
    assert [m.task_id for m in out] == ids[:2]
    assert h.assigns(h.step(0.1)) == []                             # no credit
    h.work(b"w1", result(ids[0], 1))
    out = h.assigns(h.step())
    assert [m.task_id for m in out] == [ids[2]]


def test_silent_worker_is_lost_and_its_task_requeued_with_attempt_plus_one(h):
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit(max_attempts=3)
    h.step()
    h.work(b"w1", TaskStarted(task_id=task_id, attempt=1, ts=h.now))
    h.step()
    h.heartbeat()                                   # the node's agent is still fine
    h.step(INTERVAL * LIVENESS)                     # exactly at the window: not yet
    assert h.row(task_id)["status"] == "running"
    h.step(0.01)                                    # past it: lost, requeued
    row = h.row(task_id)
    assert row["status"] == "queued" and row["attempt"] == 1 and row["worker_id"] is None
    assert h.call("worker.list") == []
    assert any(t == "node.n1.worker_lost" for t, _ in h.b.take_events())
    lost = [e for e in h.store.task_events(task_id) if e["event"] == "queued"][-1]
    assert lost["detail"]["reason"] == "worker w1 missed its heartbeats"
    # another worker takes it: attempt 2
    h.ready("w2")
    out = h.assigns(h.step())
    assert out == [TaskAssign(task_id=task_id, attempt=2, task_type="shell",
                              payload={"command": "true"}, timeout=None)]
    # a late result of attempt 1 from the lost worker is acked but not counted
    h.work(b"w1", result(task_id, 1, stdout="stale"))
    out = h.step()
    assert (b"w1", TaskAck(task_id=task_id, attempt=1)) not in out   # unknown worker: no ack
    assert h.row(task_id)["status"] == "assigned"


def test_pings_keep_a_worker_alive(h):
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit()
    h.step()
    for _ in range(10):
        h.ready("w1", running=[(task_id, 1)], cls=WorkerPing)
        h.step(INTERVAL)
    assert h.row(task_id)["status"] == "assigned"
    assert [w["id"] for w in h.call("worker.list")] == ["w1"]


def test_lost_past_max_attempts_ends_failed_lost(h):
    h.heartbeat()
    task_id = h.submit(max_attempts=2)
    for n in (1, 2):
        h.ready(f"w{n}")
        out = h.assigns(h.step())
        assert [(m.task_id, m.attempt) for m in out] == [(task_id, n)]
        h.step(INTERVAL * LIVENESS + 0.5)
        h.heartbeat()
    row = h.row(task_id)
    assert row["status"] == "failed" and row["attempt"] == 2
    assert row["error"] == "lost: worker w2 missed its heartbeats (after 2 attempts)"


def test_a_ready_that_crossed_an_assignment_gets_the_same_attempt_again(h):
    """The worker wrote `ready` before the assignment reached it (a reconnect): the broker
    sends the same attempt again (the worker drops a duplicate) and requeues nothing, so
    the task cannot run twice."""
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit()
    first = h.assigns(h.step())
    assert [(m.task_id, m.attempt) for m in first] == [(task_id, 1)]
    h.b.work_out.clear()
    h.ready("w1", running=[])                     # a `ready` that does not list it
    out = h.step()
    assert [(m.task_id, m.attempt) for m in h.assigns(out)] == [(task_id, 1)]
    assert not [m for _i, m in out if isinstance(m, TaskCancel)]
    assert h.row(task_id)["attempt"] == 1 and h.row(task_id)["status"] == "assigned"


def test_worker_restart_without_a_started_task_loses_it_at_once(h):
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit()
    h.step()
    h.work(b"w1", TaskStarted(task_id=task_id, attempt=1, ts=h.now))
    h.step()
    h.ready("w1", running=[])                     # a fresh `ready` that does not list it
    assert (b"w1", TaskCancel(task_id=task_id, attempt=1,
                              reason="requeued after worker restart")) in h.b.work_out
    out = h.assigns(h.step())
    assert [(m.task_id, m.attempt) for m in out] == [(task_id, 2)]


def test_retry_with_backoff_on_the_fake_clock(h):
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit(retries=1, retry_backoff=10.0)
    h.step()
    h.work(b"w1", result(task_id, 1, state="failed", error="exit 1"))
    h.step()
    row = h.row(task_id)
    assert row["status"] == "queued" and row["retry_count"] == 1
    delay = row["not_before"] - h.now
    assert 5.0 <= delay <= 10.0
    h.heartbeat()
    assert h.assigns(h.step(delay - 0.5)) == []                     # still waiting
    h.ready("w1", cls=WorkerPing)
    h.heartbeat()
    out = h.assigns(h.step(0.6))
    assert [(m.task_id, m.attempt) for m in out] == [(task_id, 2)]
    h.work(b"w1", result(task_id, 2))
    h.step()
    assert h.row(task_id)["status"] == "succeeded"


def test_node_offline_after_the_heartbeat_timeout_opens_an_alert(h):
    h.heartbeat("n1")
    h.step()
    h.b.take_events()
    h.step(HB_TIMEOUT)                                             # exactly: not yet
    assert h.call("node.get", {"node": "n1"})["status"] == "healthy"
    assert h.store.load_alerts() == []
    h.step(1.5)
    topics = dict(h.b.take_events())
    assert topics["node.n1.offline"]["new"] == "offline"
    opened = [d for t, d in topics.items() if t.startswith("alert.")]
    assert opened and opened[0]["action"] == "opened" and opened[0]["level"] == "offline"
    alerts = h.store.load_alerts()
    assert len(alerts) == 1 and alerts[0]["node_name"] == "n1"
    assert alerts[0]["status"] == "active" and alerts[0]["level"] == "offline"
    # it comes back: healthy again and the alert resolved
    h.heartbeat("n1")
    h.step()
    assert h.store.load_alerts() == []
    assert h.call("node.get", {"node": "n1"})["status"] == "healthy"
    topics = dict(h.b.take_events())
    assert topics["node.n1.healthy"]["old"] == "offline"


def test_task_wait_is_deferred_and_answered_after_the_result(h):
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit()
    h.step()
    assert h.request("task.wait", {"id": task_id, "timeout": 30}, token=b"waiter") is None
    h.step(1.0)
    assert h.b.take_deferred() == []
    h.work(b"w1", result(task_id, 1, stdout="done"))
    h.step()
    ready = h.b.take_deferred()
    assert len(ready) == 1
    token, reply = ready[0]
    assert token == b"waiter" and reply.ok
    assert reply.result["id"] == task_id and reply.result["final"] is True
    assert reply.result["status"] == "succeeded" and reply.result["result"]["stdout"] == "done"
    assert h.b.take_deferred() == []


def test_task_wait_many_and_its_timeout(h):
    h.heartbeat()
    h.ready("w1", slots=1)
    a, b = h.submit(), h.submit()
    h.step()
    assert h.request("task.wait", {"ids": [a, b], "timeout": 5}, token=b"t") is None
    h.work(b"w1", result(a, 1))
    h.step()
    assert h.b.take_deferred() == []                                # b still pending
    h.step(5.1)                                                     # the wait's deadline
    (token, reply), = h.b.take_deferred()
    assert token == b"t"
    by_id = {t["id"]: t for t in reply.result}
    assert by_id[a]["final"] and not by_id[b]["final"]


def test_task_wait_on_a_final_task_answers_at_once(h):
    task_id = h.submit()
    h.call("task.cancel", {"id": task_id})
    h.step()
    reply = h.request("task.wait", {"id": task_id})
    assert reply is not None and reply.result["status"] == "cancelled"


def test_cancel_running_sends_cancel_and_ends_cancelled(h):
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit()
    h.step()
    h.work(b"w1", TaskStarted(task_id=task_id, attempt=1, ts=h.now))
    h.step()
    assert h.call("task.cancel", {"id": task_id})["cancel_requested"] is True
    assert h.step() == [(b"w1", TaskCancel(task_id=task_id, attempt=1, reason="cancelled"))]
    h.work(b"w1", result(task_id, 1, state="cancelled", error="cancelled", exit_code=-15))
    h.step()
    assert h.row(task_id)["status"] == "cancelled"


def test_idempotency_key_through_the_broker(h):
    first = h.call("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                   "idempotency_key": "deploy-1"})
    assert first["created"]
    again = h.call("task.submit", {"task_type": "shell", "payload": {"command": "other"},
                                   "idempotency_key": "deploy-1"})
    assert again == {"id": first["id"], "status": "queued", "created": False}
    h.call("task.cancel", {"id": first["id"]})
    h.step()
    after = h.call("task.submit", {"task_type": "shell", "payload": {"command": "x"}, "idempotency_key":
                                   "deploy-1"})
    assert after == {"id": first["id"], "status": "cancelled", "created": False}


def test_idempotency_key_does_not_excuse_an_invalid_request(h):
    """The request is validated first (docs/TASKS.md): a known key with an invalid payload
    is still a bad_request, and no second task appears."""
    first = h.call("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                   "idempotency_key": "k"})
    h.step()
    reply = h.request("task.submit", {"task_type": "shell", "payload": {},
                                      "idempotency_key": "k"})
    assert not reply.ok and reply.error["code"] == "bad_request"
    again = h.call("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                   "idempotency_key": "k"})
    assert again == {"id": first["id"], "status": "queued", "created": False}


def test_idempotency_key_of_a_task_final_but_not_yet_persisted(h):
    """Final in this loop iteration (out of TaskBook.keys) but not committed yet: the store
    still has its earlier row, so the same key finds the same task, no duplicate."""
    h.heartbeat()
    h.ready("w1")
    first = h.call("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                   "idempotency_key": "once"})
    h.step()
    h.work(b"w1", result(first["id"], 1))          # final now, committed at the next persist
    again = h.call("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                   "idempotency_key": "once"})
    assert again["id"] == first["id"] and again["created"] is False


def test_idempotency_key_reports_the_current_status_before_the_commit(h):
    h.heartbeat()
    h.ready("w1")
    first = h.call("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                   "idempotency_key": "once"})
    h.step()
    h.work(b"w1", result(first["id"], 1))
    again = h.call("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                   "idempotency_key": "once"})
    assert again["status"] == "succeeded"           # what task.get says at this moment
    assert h.call("task.get", {"id": first["id"]})["status"] == "succeeded"


def test_priority_order_through_the_broker(h):
    h.heartbeat()
    ids = {p: h.submit(priority=p) for p in (0, 7, -1, 3)}
    h.ready("w1", slots=1)
    order = []
    for _ in range(4):
        (m,) = h.assigns(h.step())
        order.append(m.task_id)
        h.work(b"w1", result(m.task_id, m.attempt))
    assert order == [ids[7], ids[3], ids[0], ids[-1]]


def test_waiting_reasons_for_an_unplaceable_task(h):
    h.heartbeat("n1")
    h.ready("w1")
    task_id = h.submit(requirements=["gpu"])
    other = h.submit()
    out = h.assigns(h.step())
    assert [m.task_id for m in out] == [other]
    task = h.call("task.get", {"id": task_id})
    assert task["status"] == "queued"
    assert task["waiting_reasons"] == {"n1": "missing capabilities: gpu"}


def test_graceful_bye_requeues_at_once(h):
    h.heartbeat()
    h.ready("w1")
    task_id = h.submit()
    h.step()
    h.work(b"w1", WorkerBye(worker_id="w1", final=False))
    extra = h.submit()
    assert h.assigns(h.step()) == []                                # draining: nothing new
    h.work(b"w1", WorkerBye(worker_id="w1", final=True))
    h.ready("w2")
    out = h.assigns(h.step())
    assert sorted((m.task_id, m.attempt) for m in out) == [(task_id, 2), (extra, 1)]


def test_restart_orphan_claimed_by_its_worker_and_result_accepted(tmp_path):
    """The broker restarts with a task running; the worker's `ready` claims it, its
    result is accepted and the task did not run again (attempt stays 1)."""
    h1 = Harness(tmp_path)
    h1.heartbeat()
    h1.ready("w1")
    task_id = h1.submit()
    h1.step()
    h1.work(b"w1", TaskStarted(task_id=task_id, attempt=1, ts=h1.now))
    h1.step()
    kill9(h1)
    h2 = Harness(tmp_path, now=h1.now + 2.0)
    try:
        h2.ready("w1", running=[(task_id, 1)])
        assert h2.assigns(h2.step()) == []
        h2.work(b"w1", result(task_id, 1, stdout="kept"))
        out = h2.step()
        assert (b"w1", TaskAck(task_id=task_id, attempt=1)) in out
        row = h2.row(task_id)
        assert row["status"] == "succeeded" and row["attempt"] == 1
        assert row["result"]["stdout"] == "kept"
    finally:
        h2.close()


def test_restart_orphan_nobody_claims_is_lost_after_the_window(tmp_path):
    h1 = Harness(tmp_path)
    h1.heartbeat()
    h1.ready("w1")
    task_id = h1.submit()
    h1.step()
    kill9(h1)
    h2 = Harness(tmp_path, now=h1.now + 1.0)
    try:
        window = 2 * INTERVAL * LIVENESS + 5.0
        h2.heartbeat()
        h2.step(window - 1.0)
        assert h2.row(task_id)["status"] == "assigned"
        h2.heartbeat()
        h2.step(1.5)
        row = h2.row(task_id)
        assert row["status"] == "queued"
        assert "no worker claimed it" in h2.store.task_events(task_id)[-1]["detail"]["reason"]
    finally:
        h2.close()


def test_totals_and_the_rollup_agree_with_the_tasks_across_a_kill_9(tmp_path):
    """The overview's totals and placement.distribution are tallies kept in memory (no scan
    of a long history), and the flow of a long window reads the hourly roll-up: after a
    kill -9 and a restart, both agree with counting the tasks themselves."""
    h1 = Harness(tmp_path)
    h1.heartbeat()
    h1.ready("w1", slots=4)
    for _ in range(6):
        h1.submit()
    h1.submit(requirements=["gpu"])                  # nobody can take it: stays queued
    for a in h1.assigns(h1.step()):
        state = "succeeded" if a.task_id % 2 else "failed"
        h1.work(b"w1", result(a.task_id, a.attempt, state, started_at=h1.now))
    h1.step()
    summary = h1.call("cluster.summary")["tasks"]
    assert summary == {"succeeded": 2, "failed": 2, "assigned": 2, "queued": 1}
    kill9(h1)
    h2 = Harness(tmp_path, now=h1.now + 2 * 86400)   # two days later: the roll-up is read
    try:
        assert h2.call("cluster.summary")["tasks"] == h2.store.task_counts() == summary
        dist = h2.call("placement.distribution")["nodes"]["n1"]
        assert (dist["succeeded"], dist["failed"], dist["assigned"]) == (2, 2, 2)
        flow = h2.call("cluster.flow", {"window": 3 * 86400})
        assert flow["states"] == summary
    finally:
        h2.close()


def test_a_refused_schedule_changes_nothing_and_a_refused_run_says_why(h):
    bad = h.request("schedule.add", {"name": "pz", "every": 5, "task_type": "shell",
                                     "payload": {"command": "true"}, "paused": "yes"})
    assert not bad.ok and "paused" in bad.error["message"]
    assert h.call("schedule.list") == []
    h.heartbeat("n9")
    h.call("schedule.add", {"name": "pinned", "every": 60, "task_type": "shell",
                            "payload": {"command": "true"}, "node": "n9"})
    h.call("node.remove", {"node": "n9"})
    refused = h.request("schedule.run", {"name": "pinned"})
    assert not refused.ok and "n9" in refused.error["message"]
    h.step()
    runs = h.call("schedule.get", {"name": "pinned"})["runs"]
    assert [(r["outcome"], r["task_id"]) for r in runs] == [("error", None)]
    assert "n9" in runs[0]["detail"]
    assert h.call("schedule.get", {"name": "pinned"})["last_outcome"] == "error"


def test_the_broker_fires_a_schedule_once_per_due_time_in_the_same_commit_as_its_task(tmp_path):
    h1 = Harness(tmp_path)
    h1.call("schedule.add", {"name": "beat", "every": 2, "task_type": "shell",
                             "payload": {"command": "true"}})
    h1.step()
    h1.step(2.0)                                     # due: fired, its task submitted
    (fired,) = h1.call("schedule.get", {"name": "beat"})["runs"]
    assert fired["outcome"] == "fired" and h1.row(fired["task_id"])["submitted_by"] == \
        "schedule:beat"
    h1.step(0.5)
    kill9(h1)
    h2 = Harness(tmp_path, now=h1.now + 0.3)         # restarted before the next due time
    try:
        h2.step()
        assert len(h2.call("schedule.get", {"name": "beat"})["runs"]) == 1   # not again
        h2.step(1.3)
        runs = h2.call("schedule.get", {"name": "beat"})["runs"]
        assert [r["due"] for r in runs] == [fired["due"] + 2, fired["due"]]
    finally:
        h2.close()


def test_retry_by_hand_runs_the_same_task_again_with_its_history(h):
    """Dead letter: a failed task retried by hand is the same task, queued again; the totals
    and the roll-up move with it; a succeeded task cannot be retried."""
    h.heartbeat()
    h.ready("w1", slots=4)
    bad, good = h.submit(), h.submit()
    for a in h.assigns(h.step()):
        state = "failed" if a.task_id == bad else "succeeded"
        h.work(b"w1", result(a.task_id, a.attempt, state, started_at=h.now,
                             error="exit code 1" if state == "failed" else None))
    h.step()
    assert h.call("cluster.summary")["tasks"] == {"failed": 1, "succeeded": 1}
    refused = h.request("task.retry", {"id": good})
    assert not refused.ok and refused.error["code"] == "conflict"
    assert "succeeded" in refused.error["message"]
    dry = h.call("task.retry_many", {"since": 3600, "dry_run": True})
    assert dry == {"count": 1, "ids": [bad], "dry_run": True}
    assert h.call("task.get", {"id": bad})["status"] == "failed"       # a dry run changes nothing
    again = h.call("task.retry", {"id": bad})
    assert again["status"] == "queued" and again["error"] is None
    assert h.call("cluster.summary")["tasks"] == {"succeeded": 1, "queued": 1}
    (assign,) = h.assigns(h.step())
    assert assign.task_id == bad and assign.attempt == 2
    h.work(b"w1", result(bad, 2, "succeeded", started_at=h.now))
    h.step()
    task = h.call("task.get", {"id": bad, "events": True})
    assert task["status"] == "succeeded" and task["attempt"] == 2
    events = [e["event"] for e in task["events"]]
    assert events == ["queued", "assigned", "running", "failed", "retried", "assigned",
                      "running", "succeeded"]
    retried = next(e for e in task["events"] if e["event"] == "retried")
    assert retried["detail"] == {"by": "local", "was": "failed", "error": "exit code 1"}
    assert h.call("cluster.summary")["tasks"] == {"succeeded": 2} == h.store.task_counts()
    flow = h.call("cluster.flow", {"window": 30 * 86400})                # the roll-up path
    assert flow["states"] == {"succeeded": 2}
    assert h.call("task.retry_many", {"since": 3600}) == {"count": 0, "ids": [],
                                                          "dry_run": False}
    bad_input = h.request("task.retry_many", {"status": "succeeded"})
    assert not bad_input.ok and "status must be" in bad_input.error["message"]


def test_task_retention_removes_old_finished_tasks_in_chunks_and_keeps_the_totals_true(tmp_path,
                                                                                      monkeypatch):
    from architect.broker import core
    monkeypatch.setattr(core, "TASK_PURGE_CHUNK", 2)
    h = Harness(tmp_path)
    try:
        h.heartbeat()
        h.ready("w1", slots=8)
        ids = [h.submit() for _ in range(5)]
        h.submit(requirements=["gpu"])                       # queued: never removed
        for a in h.assigns(h.step()):
            h.work(b"w1", result(a.task_id, a.attempt, started_at=h.now))
        h.step()
        h.b.output_rows.append((ids[0], 1, 1, "stdout", "old", h.now))
        h.step()
        h.heartbeat()
        h.b._next_retention = 0
        h.now += 31 * 86400                                  # past the 30-day retention
        h.heartbeat()
        h.ready("w1", slots=8)
        h.step()                                              # first chunk: 2 tasks
        assert h.b.counters["tasks_purged"] == 2 and h.b._next_retention <= h.now + 1.0
        for _ in range(3):
            h.step(1.0)
        assert h.b.counters["tasks_purged"] == 5
        assert h.store.task_counts() == {"queued": 1} == h.call("cluster.summary")["tasks"]
        missing = h.request("task.get", {"id": ids[1]})
        assert not missing.ok and missing.error["code"] == "not_found"
        assert h.store.task_output(ids[0]) == [] and h.store.task_events(ids[0]) == []
        assert h.call("placement.distribution")["totals"] == {"queued": 1}
    finally:
        h.close()


def test_alert_list_filters_and_names_bad_ones(h):
    for _ in range(4):                                   # hysteresis: 3 samples in a row
        h.heartbeat(metrics={**CALM, "cpu_percent": 99.0})
        h.step(0.5)
    assert [a["level"] for a in h.call("alert.list", {"all": True, "kind": "level"})] \
        == ["critical"]
    assert h.call("alert.list", {"all": True, "level": "warning"}) == []
    assert h.call("alert.list", {"all": True, "since": 3600, "node": "n1"})
    for params, why in (({"level": "bad"}, "level"), ({"kind": "x"}, "kind"),
                        ({"since": -1}, "since"), ({"since": True}, "since")):
        reply = h.request("alert.list", params)
        assert not reply.ok and why in reply.error["message"], params
