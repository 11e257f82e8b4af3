"""Tier 1: the worker's Paranoid Pirate timers (architect.agent.worker.PirateClock) and its
unacknowledged-result resend logic, on a fake clock. No sockets, no sleeping.

The last test is the twin of tests/integration/test_tasks.py::
test_result_lost_with_a_crashed_broker_is_sent_again: a real TaskWorker's bookkeeping and a
real Broker, both on one fake clock, the frames between them carried by the test.
"""

from __future__ import annotations

import types

import pytest

from architect import config as config_mod
from architect.agent.worker import RECONNECT_MAX, PirateClock, TaskWorker
from architect.broker.core import Broker
from architect.broker.store import Store
from architect.broker.work import WORK_HANDLERS
from architect.bus.messages import (Request, TaskAck, TaskAssign, TaskResult,
                                    TaskStarted, WorkerPing, WorkerReady)

# ---------------------------------------------------------------------------------------------
# PirateClock


def test_ping_schedule():
    c = PirateClock(interval=1.0, liveness=3, now=100.0)
    assert not c.due_ping(100.0) and not c.due_ping(100.999)
    assert c.due_ping(101.0)
    assert not c.due_ping(101.5)           # the next one is an interval after that ping
    assert c.due_ping(102.3)               # late: sent at once ...
    assert not c.due_ping(103.0)           # ... and the next counts from when it went out
    assert c.due_ping(103.3)


def test_poll_timeout_waits_for_the_next_ping():
    c = PirateClock(1.0, 3, 100.0)
    assert c.poll_ms(100.0) == 1001
    assert c.poll_ms(100.75) == 251
    assert c.poll_ms(101.0) == 1 and c.poll_ms(150.0) == 1     # overdue: poll, don't block


def test_broker_dead_after_liveness_intervals_of_silence():
    c = PirateClock(0.5, 4, 10.0)          # 2 s window
    assert not c.broker_dead(12.0)         # exactly the window: still alive
    assert c.broker_dead(12.001)
    assert c.silence(12.5) == pytest.approx(2.5)
    c.heard(12.5)
    assert not c.broker_dead(14.5) and c.broker_dead(14.51)


def test_backoff_doubles_caps_and_resets_only_when_heard():
    c = PirateClock(1.0, 3, 0.0, reconnect_max=10.0)
    assert [c.next_backoff() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    c.reconnected(50.0)                    # a new socket is not proof of life: same backoff
    assert c.heard_at == 50.0 and c.next_backoff() == 10.0
    c.heard(51.0)
    assert c.next_backoff() == 1.0
    assert PirateClock(1.0, 3, 0.0).reconnect_max == RECONNECT_MAX


def test_reconnect_cycle_against_a_silent_broker():
    """What run() does while the broker is gone: wait backoff, reconnect, a full window,
    again; the waits grow 1, 2, 4, …; the first frame heard ends it."""
    c = PirateClock(1.0, 3, 0.0, reconnect_max=8.0)
    now, waits = 0.0, []
    while now < 60.0:
        now += 0.25
        if c.broker_dead(now):
            wait = c.next_backoff()
            waits.append(wait)
            now += wait
            c.reconnected(now)
    assert waits[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]
    c.heard(now)
    assert not c.broker_dead(now + 3.0) and c.next_backoff() == 1.0


def test_due_resend():
    c = PirateClock(0.25, 4, 0.0)
    assert c.resend_after == 0.5
    assert not c.due_resend(sent_at=10.0, now=10.25)
    assert c.due_resend(sent_at=10.0, now=10.5)
    assert c.due_resend(sent_at=10.0, now=10.0, older_than=0.0)    # on reconnect: all


# ---------------------------------------------------------------------------------------------
# the worker's bookkeeping of results (a real TaskWorker; its socket replaced by a list)


@pytest.fixture
def worker(tmp_path):
    cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(tmp_path / "data"),
                               "ARCHITECT_NODE_NAME": "w1",
                               "ARCHITECT_WORKER_HEARTBEAT_INTERVAL": "0.25",
                               "ARCHITECT_WORKER_LIVENESS": "20"},
                          config_file=tmp_path / "none.json")
    w = TaskWorker(cfg, slots=1, task_types=["shell"])
    w.pool.shutdown(wait=False)
    w.launched = []
    w.pool = types.SimpleNamespace(submit=lambda fn, run: w.launched.append(run))  # no threads
    w.outbox = []
    w._send = w.outbox.append                       # what would go on the DEALER
    yield w


def done(task_id=1, attempt=1, state="succeeded", stdout="finished\n"):
    return TaskResult(task_id=task_id, attempt=attempt, state=state, exit_code=0,
                      stdout=stdout, started_at=1.0, finished_at=2.0)


def test_held_result_resent_every_resend_after_until_acked(worker):
    w = worker
    w.clock = PirateClock(w.interval, w.liveness, 0.0)
    w._on_task(TaskAssign(task_id=1, attempt=1, task_type="shell", payload={"command": "true"}))
    assert list(w.running) == [(1, 1)] and len(w.launched) == 1
    result = done()
    w._hold_result(result, now=5.0)
    assert w.running == {} and w.unacked == {(1, 1): result}
    assert w._status(WorkerPing).running == [[1, 1]]      # the ping still claims the run
    assert w.clock.resend_after == 0.5
    assert w._due_results(5.25, w.clock.resend_after) == []
    assert w._due_results(5.5, w.clock.resend_after) == [result]
    assert w._due_results(5.75, w.clock.resend_after) == []         # just sent again
    assert w._due_results(6.0, w.clock.resend_after) == [result]
    w._resend_unacked(7.0, 0.0)                                      # reconnect: all at once
    assert w.outbox == [result]
    w._on_ack(TaskAck(task_id=1, attempt=1))
    assert w.unacked == {} and w._sent_at == {}
    assert w._due_results(100.0, 0.0) == []
    assert w._status(WorkerPing).running == []
    # a duplicate delivery of a run it holds unacked is not run again
    w._hold_result(done(2), 8.0)
    w._on_task(TaskAssign(task_id=2, attempt=1, task_type="shell", payload={"command": "x"}))
    assert len(w.launched) == 1


# ---------------------------------------------------------------------------------------------
# the twin of the integration test: result lost with a crashed broker, sent again


class Bus:
    """Carries frames between one TaskWorker (routing id) and a Broker, on a fake clock.
    `broker_stopped`: frames to the broker are lost (SIGSTOP, then kill -9)."""

    def __init__(self, tmp_path, worker, now):
        self.tmp_path = tmp_path
        self.w = worker
        self.ident = worker._routing_id
        self.now = now
        self.broker_stopped = False
        self.reconnects = 0
        self.resent: list[float] = []          # when a result went out again
        self.start_broker()

    def start_broker(self):
        cfg = config_mod.load(env={"ARCHITECT_DATA_DIR": str(self.tmp_path / "data"),
                                   "ARCHITECT_WORKER_HEARTBEAT_INTERVAL": "0.25",
                                   "ARCHITECT_WORKER_LIVENESS": "20"},
                              config_file=self.tmp_path / "none.json")
        self.db_path = cfg.db_path
        self.store = Store(cfg.db_path)
        self.b = Broker(cfg, now=self.now, store=self.store)
        self.broker_stopped = False

    def kill_broker(self):
        """kill -9: nothing more is persisted, nothing it has not read is ever read. (Its
        SSH service's inproc wake socket is released, as the process exit would.)"""
        self.b.ssh.close()
        self.store.close()
        self.b = None

    def to_broker(self):
        out, self.w.outbox[:] = list(self.w.outbox), []
        if self.broker_stopped or self.b is None:
            return
        for msg in out:
            WORK_HANDLERS[type(msg)](self.b, self.ident, msg, self.now)

    def broker_iteration(self):
        if self.broker_stopped or self.b is None:
            return
        self.b.tick(self.now)
        assert self.b.persist(self.now)
        out, self.b.work_out = self.b.work_out, []
        for ident, msg in out:
            assert ident == self.ident
            self.w.clock.heard(self.now)                     # the worker hears the broker
            handler = self.w.BROKER_HANDLERS.get(type(msg))
            if handler is not None:
                handler(self.w, msg)

    def worker_timers(self):
        """TaskWorker.run's timer section, on the fake clock."""
        clock = self.w.clock
        if clock.broker_dead(self.now):
            self.reconnects += 1                           # (run() would reconnect here)
            clock.next_backoff()
            clock.reconnected(self.now)
            self.w._send(self.w._status(WorkerReady))
            self.w._resend_unacked(self.now, 0.0)
            return
        if clock.due_ping(self.now):
            self.w._send(self.w._status(WorkerPing))
            before = len(self.w.outbox)
            self.w._resend_unacked(self.now, clock.resend_after)
            if len(self.w.outbox) > before:
                self.resent.append(self.now)

    def run_for(self, seconds, dt=0.05):
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += dt
            self.broker_iteration()
            self.worker_timers()
            self.to_broker()

    def submit(self, params):
        reply = self.b.on_request(Request(id=1, method="task.submit", params=params), self.now)
        assert reply.ok, reply
        return reply.result["id"]

    def task(self, task_id):
        """The task as committed, through a connection of its own."""
        reader = Store(self.db_path)
        try:
            return reader.task(task_id)
        finally:
            reader.close()


def result_resent_after_broker_restart(tmp_path, worker, resend=True):
    w = worker
    bus = Bus(tmp_path, w, now=1000.0)
    w.clock = PirateClock(w.interval, w.liveness, bus.now)   # run() starts its clock
    w._send(w._status(WorkerReady))                          # _connect()
    bus.to_broker()
    task_id = bus.submit({"task_type": "shell",
                          "payload": {"command": "sleep 0.3; echo finished"}})
    bus.run_for(0.1)
    assert len(w.launched) == 1                              # assigned, "running" on w
    w._send(TaskStarted(task_id=task_id, attempt=1, ts=bus.now))
    bus.run_for(0.1)
    assert bus.task(task_id)["status"] == "running"
    bus.broker_stopped = True                                # SIGSTOP
    bus.run_for(0.3)
    # the run ends; the result goes to a broker that never reads it (what _drain_pipe does)
    result = TaskResult(task_id=task_id, attempt=1, state="succeeded", exit_code=0,
                        stdout="finished\n", started_at=bus.now - 0.3, finished_at=bus.now)
    w._hold_result(result, bus.now)
    w._send(result)
    bus.to_broker()                                          # lost
    sent_at = bus.now
    bus.run_for(0.8)
    bus.kill_broker()                                        # kill -9
    bus.run_for(0.5)
    bus.start_broker()                                       # back, within the liveness window
    if not resend:
        w._resend_unacked = lambda now, older_than: None     # break the resend (the checker)
    bus.run_for(15.0)
    return bus, task_id, sent_at


def test_result_lost_with_a_crashed_broker_is_sent_again(tmp_path, worker):
    bus, task_id, sent_at = result_resent_after_broker_restart(tmp_path, worker)
    row = bus.task(task_id)
    assert row["status"] == "succeeded" and row["result"]["stdout"] == "finished\n"
    assert row["attempt"] == 1, "the result was kept, the task did not run again"
    assert bus.reconnects == 0, "the worker never reconnected: the ping-time resend did it"
    assert worker.unacked == {}, "the new broker acknowledged it and the worker forgot it"
    # resent at pings, at least resend_after apart, and no more once acknowledged
    assert bus.resent and bus.resent[0] - sent_at >= worker.clock.resend_after - 1e-9
    assert all(b - a >= worker.clock.resend_after - 1e-9
               for a, b in zip(bus.resent, bus.resent[1:]))
    assert bus.resent[-1] < bus.now - 10.0
    bus.kill_broker()


def test_without_the_resend_the_run_is_lost(tmp_path, worker):
    """The same story with the resend switched off: the result never reaches the new
    broker, so the twin above can fail (the worker still claims the run in its pings, so
    the task is stuck; it never succeeds at attempt 1)."""
    bus, task_id, _ = result_resent_after_broker_restart(tmp_path, worker, resend=False)
    row = bus.task(task_id)
    assert row["status"] != "succeeded"
    assert worker.unacked != {}
    bus.kill_broker()
