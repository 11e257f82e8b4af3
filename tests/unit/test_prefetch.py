"""Tier 1: worker prefetch (workers.py, dispatch.py) and batched results (work.py).

Prefetch queues tasks on a worker beyond its slots, but only once no worker has a free slot
for them, and only on a worker turning over short tasks; a worker busy with a long task
gets nothing queued behind it. Pure; time passed in."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from architect.broker import tasks as T
from architect.broker.work import BadWorkerMessage, on_results
from architect.broker.workers import PREFETCH_SHORT, PREFETCH_WINDOW
from architect.bus.messages import TaskAcks, TaskResults
from tests.unit.test_placement_dispatch import Cluster


def prefetching(c, node, slots, prefetch, short=True):
    w = c.worker(node, slots)
    w.prefetch = prefetch
    if short:
        w.finished_run(0.001, c.now)
    return w


def test_free_slots_everywhere_go_before_any_prefetch():
    c = Cluster().node("a").node("b")
    a = prefetching(c, "a", 1, 3)
    b = c.worker("b", 2)                      # no prefetch, but free slots
    tasks = [c.submit() for _ in range(3)]
    out = c.dispatch()
    assert len(out) == 3
    assert len(b.active) == 2 and len(a.active) == 1   # slots first: b's two, a's one
    more = [c.submit() for _ in range(5)]
    out = c.dispatch()
    assert [w for w, _ in out] == [a, a, a]             # then a's prefetch of 3, no more
    assert len(a.active) == 4 and all(t.status == T.ASSIGNED for t in tasks + more[:3])
    assert [t.status for t in more[3:]] == [T.QUEUED, T.QUEUED]
    assert c.dispatch() == []


def test_no_prefetch_for_a_worker_without_short_runs():
    c = Cluster().node("a")
    w = prefetching(c, "a", 1, 4, short=False)          # nothing finished yet
    c.submit(), c.submit()
    assert len(c.dispatch()) == 1 and len(w.active) == 1
    w.finished_run(5.0, c.now)                           # a long run: still closed
    assert c.dispatch() == []


def test_prefetch_closes_when_the_worker_stops_turning_over():
    c = Cluster().node("a")
    w = prefetching(c, "a", 1, 2)
    for _ in range(6):
        c.submit()
    assert len(c.dispatch()) == 3                        # 1 slot + 2 prefetched
    w.active.clear()
    c.now += PREFETCH_WINDOW + 0.01                      # no result for a while: a long task?
    assert len(c.dispatch()) == 1                        # its slot only
    w.finished_run(0.002, c.now)                         # short runs again: open
    assert len(c.dispatch()) == 2


def test_a_slow_average_closes_prefetch():
    c = Cluster().node("a")
    w = prefetching(c, "a", 1, 2)
    for _ in range(20):
        w.finished_run(PREFETCH_SHORT * 10, c.now + 1)
    assert w.avg_duration > PREFETCH_SHORT
    assert w.short_until == c.now + PREFETCH_WINDOW      # set by the short run, not extended
    c.now += PREFETCH_WINDOW + 2
    assert w.open_prefetch(c.now) == 0
    assert w.free(c.now) == w.free() == 1


def test_a_draining_worker_takes_nothing_even_with_prefetch():
    c = Cluster().node("a")
    w = prefetching(c, "a", 2, 4)
    w.draining = True
    c.submit()
    assert c.dispatch() == [] and w.free(c.now) == 0


# --- batched results ---------------------------------------------------------------------

class FakeBroker:
    """The parts of the broker on_results touches, with a real pool and book."""

    def __init__(self, cluster):
        self.c = cluster
        self.pool, self.tasks = cluster.pool, cluster.book
        self.work_out, self.counters = [], Counters()
        self.latency = SimpleNamespace(observe=lambda v: None)

    def worker_by_identity(self, ident):
        return self.pool.by_identity.get(ident)


class Counters(dict):
    def inc(self, key):
        self[key] = self.get(key, 0) + 1


def result(task, state="succeeded", **kw):
    return {"task_id": task.id, "attempt": task.attempt, "state": state, "exit_code": 0,
            "duration": 0.001, "started_at": 1.0, "finished_at": 1.001, **kw}


def test_a_batch_of_results_is_taken_with_one_ack_for_all():
    c = Cluster().node("a")
    w = c.worker("a", 4)
    tasks = [c.submit() for _ in range(3)]
    c.dispatch()
    b = FakeBroker(c)
    on_results(b, w.identity, TaskResults(results=[result(t) for t in tasks]), c.now)
    assert [t.status for t in tasks] == [T.SUCCEEDED] * 3
    assert w.active == set()
    # it ended before its `started` went out: the history still has the running event
    assert [e[2] for e in c.book.events if e[0] == tasks[0].id][-2:] == ["running", "succeeded"]
    assert tasks[0].started_at == 1.0
    (ident, acks), = b.work_out
    assert ident == w.identity and type(acks) is TaskAcks
    assert acks.acks == [[t.id, t.attempt] for t in tasks]
    assert w.avg_duration == pytest.approx(0.001)


def test_a_bad_item_is_refused_alone():
    c = Cluster().node("a")
    w = c.worker("a", 4)
    good, bad = c.submit(), c.submit()
    c.dispatch()
    b = FakeBroker(c)
    items = [result(good), result(bad, state="exploded"), {"task_id": "x"}, "not a map"]
    with pytest.raises(BadWorkerMessage, match="results"):
        on_results(b, w.identity, TaskResults(results=items), c.now)
    assert good.status == T.SUCCEEDED and bad.status == T.ASSIGNED
    (_, acks), = b.work_out
    assert acks.acks == [[good.id, good.attempt]]       # only the good one is forgotten


def test_results_from_an_unknown_worker_are_not_acknowledged():
    c = Cluster().node("a")
    c.worker("a", 1)
    t = c.submit()
    c.dispatch()
    b = FakeBroker(c)
    on_results(b, b"stranger", TaskResults(results=[result(t)]), c.now)
    assert t.status == T.ASSIGNED and b.work_out == []


def test_too_big_a_batch_is_refused():
    c = Cluster().node("a")
    w = c.worker("a", 1)
    b = FakeBroker(c)
    with pytest.raises(BadWorkerMessage, match="at most"):
        on_results(b, w.identity, TaskResults(results=[{}] * 10_001), c.now)
