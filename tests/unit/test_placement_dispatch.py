"""Tier 1: placement scores and eligibility (ARCHITECTURE.md §5), dispatch (which task goes
to which worker, credit flow, head-of-line per queue) and the WorkerPool. Pure; time is
passed in."""

from __future__ import annotations

import itertools
import random

import pytest

from architect.broker import dispatch, placement
from architect.broker import tasks as T
from architect.broker.health import CRITICAL, HEALTHY, OFFLINE, WARNING, Thresholds
from architect.broker.placement import Candidate, rank, score, total, why_not
from architect.broker.registry import Registry
from architect.broker.tasks import Task, TaskBook
from architect.broker.workers import WorkerPool

HEALTH = {HEALTHY: 1.0, WARNING: 0.5, CRITICAL: 0.0, OFFLINE: 0.0}


def cand(name="n1", status=HEALTHY, drained=False, caps=(), types=("shell",), cpu=10.0,
         mem=20.0, active=0, slots=4, workers=1) -> Candidate:
    return Candidate(name=name, status=status, drained=drained, capabilities=set(caps),
                     task_types=set(types), cpu=cpu, memory=mem, active=active, slots=slots,
                     workers=workers)


def formula(cpu, mem, active, slots, status) -> float:
    """ARCHITECTURE.md §5, written out independently of the module."""
    cpu, mem = min(max(cpu, 0), 100), min(max(mem, 0), 100)
    load = 1 - min(active / slots, 1) if slots else 0.0
    return 0.40 * (1 - cpu / 100) + 0.30 * (1 - mem / 100) + 0.20 * load + 0.10 * HEALTH[status]


# ---------------------------------------------------------------------------------------------
# scores

def test_weights_are_the_documented_ones():
    assert placement.WEIGHTS == {"cpu": 0.40, "memory": 0.30, "tasks": 0.20, "health": 0.10}
    assert sum(placement.WEIGHTS.values()) == pytest.approx(1.0)


def test_documented_example_breakdown():
    s = score(cand(cpu=79.5, mem=2.5, active=0, slots=4))
    assert s == {"cpu": 0.082, "memory": 0.2925, "tasks": 0.2, "health": 0.1, "total": 0.6745,
                 "inputs": {"cpu_percent": 79.5, "memory_percent": 2.5, "active": 0,
                            "slots": 4, "status": "healthy"}}


def test_extremes():
    assert total(cand(cpu=0, mem=0, active=0)) == pytest.approx(1.0)
    assert total(cand(cpu=100, mem=100, active=4, slots=4, status=CRITICAL)) == 0.0
    assert total(cand(cpu=250, mem=-5)) == pytest.approx(0.0 + 0.30 + 0.20 + 0.10)  # clamped
    assert score(cand(active=9, slots=4))["tasks"] == 0.0            # over-full counts as full
    assert score(cand(slots=0))["tasks"] == 0.0                     # no slots: no load credit


def test_score_total_equals_total_for_many_candidates():
    rnd = random.Random(42)
    statuses = [HEALTHY, WARNING, CRITICAL, OFFLINE]
    for _ in range(2000):
        slots = rnd.randint(0, 64)
        c = cand(cpu=rnd.uniform(-10, 120), mem=rnd.uniform(-10, 120),
                 active=rnd.randint(0, 70), slots=slots, status=rnd.choice(statuses))
        s = score(c)
        assert s["total"] == round(total(c), 4), c
        assert total(c) == pytest.approx(formula(c.cpu, c.memory, c.active, c.slots, c.status))
        parts = s["cpu"] + s["memory"] + s["tasks"] + s["health"]
        assert s["total"] == pytest.approx(parts, abs=3e-4)           # rounding only
        assert 0.0 <= total(c) <= 1.0 + 1e-12


@pytest.mark.parametrize("status,factor", sorted(HEALTH.items()))
def test_health_term(status, factor):
    assert score(cand(status=status))["health"] == pytest.approx(0.10 * factor)


def test_each_term_moves_the_score_the_right_way():
    base = total(cand())
    assert total(cand(cpu=50)) < base and total(cand(mem=60)) < base
    assert total(cand(active=2)) < base and total(cand(status=WARNING)) < base
    assert base - total(cand(cpu=60)) == pytest.approx(0.40 * 0.5)
    assert base - total(cand(mem=70)) == pytest.approx(0.30 * 0.5)
    assert base - total(cand(active=2, slots=4)) == pytest.approx(0.20 * 0.5)


# ---------------------------------------------------------------------------------------------
# eligibility: every rule gives its reason

@pytest.mark.parametrize("kw,task_type,reqs,pinned,reason", [
    ({}, "shell", [], None, None),
    ({"status": OFFLINE}, "shell", [], None, "node is offline"),
    ({"drained": True}, "shell", [], None, "node is drained"),
    ({"active": 4, "slots": 4}, "shell", [], None, "all 4 slots busy"),
    ({"active": 0, "slots": 0}, "shell", [], None, "all 0 slots busy"),
    ({"caps": ["ssd"]}, "shell", ["gpu", "ssd", "fpga"], None, "missing capabilities: fpga, gpu"),
    ({"workers": 0, "types": ()}, "shell", [], None, "no task worker connected"),
    ({"types": ("python",)}, "shell", [], None, "its workers do not run task type 'shell'"),
    ({}, "shell", [], "n2", "task is pinned to node n2"),
    ({}, "shell", [], "n1", None),
    ({"status": WARNING}, "shell", [], None, None),
    ({"status": CRITICAL}, "shell", [], None, None),             # critical: low score, eligible
    ({"caps": ["gpu"]}, "shell", ["gpu"], None, None),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_why_not(kw, task_type, reqs, pinned, reason):
    assert why_not(cand(**kw), task_type, reqs, pinned) == reason


def test_reasons_come_in_the_documented_order():
    worst = cand(status=OFFLINE, drained=True, caps=(), workers=0, types=(), active=4, slots=4)
    assert why_not(worst, "shell", ["gpu"], "other") == "task is pinned to node other"
    assert why_not(worst, "shell", ["gpu"], None) == "node is offline"
    worst.status = HEALTHY
    assert why_not(worst, "shell", ["gpu"], None) == "node is drained"
    worst.drained = False
    assert why_not(worst, "shell", ["gpu"], None) == "missing capabilities: gpu"
    assert why_not(worst, "shell", [], None) == "no task worker connected"
    worst.workers = 1
    assert why_not(worst, "shell", [], None) == "its workers do not run task type 'shell'"
    worst.task_types = {"shell"}
    assert why_not(worst, "shell", [], None) == "all 4 slots busy"
    assert why_not(worst, "shell", [], None, need_free_slot=False) is None
    assert why_not(worst, None, [], None, need_free_slot=False) is None


def test_rank_orders_eligible_and_explains_the_rest():
    cs = [cand("busy", active=4, slots=4), cand("hot", cpu=90), cand("cool", cpu=5),
          cand("off", status=OFFLINE), cand("drained", drained=True), cand("plain", caps=()),
          cand("mid", cpu=50)]
    eligible, reasons = rank(cs, "shell", [], None)
    assert [c.name for c, _ in eligible] == ["cool", "plain", "mid", "hot"]
    assert all(s["total"] == round(total(c), 4) for c, s in eligible)
    assert reasons == {"busy": "all 4 slots busy", "off": "node is offline",
                       "drained": "node is drained"}
    eligible, reasons = rank(cs, "shell", ["gpu"], None)
    assert eligible == [] and len(reasons) == len(cs)
    assert reasons["cool"] == "missing capabilities: gpu"


def test_best_picks_the_top_total_ties_to_fewer_active():
    a, b = cand("a", cpu=10, active=1, slots=2), cand("b", cpu=10, active=2, slots=4)
    assert total(a) == total(b)                                     # same load ratio
    assert placement.best([a, b], "shell", [], None) is a           # fewer runs in progress
    assert placement.best([cand("x", cpu=90), cand("y", cpu=30)], "shell", [], None).name == "y"
    assert placement.best([cand("x", status=OFFLINE)], "shell", [], None) is None
    assert placement.best([cand("x"), cand("y", cpu=0)], "shell", [], "x").name == "x"


def test_best_agrees_with_rank():
    rnd = random.Random(9)
    for _ in range(300):
        cs = [cand(f"n{i}", cpu=rnd.choice([0, 10, 50, 90]), mem=rnd.choice([0, 50]),
                   active=rnd.randint(0, 4), slots=4, status=rnd.choice([HEALTHY, WARNING,
                                                                          OFFLINE]))
              for i in range(5)]
        eligible, _ = rank(cs, "shell", [], None)
        top = placement.best(cs, "shell", [], None)
        if not eligible:
            assert top is None
        else:
            assert total(top) == pytest.approx(max(total(c) for c, _ in eligible))


# ---------------------------------------------------------------------------------------------
# WorkerPool

def test_upsert_new_and_refresh():
    pool = WorkerPool(liveness=3.0)
    w, new = pool.upsert("w1", b"id1", "n1", 2, ["gpu"], ["shell"], 10.0, "h1", 11)
    assert new and w.connected_at == 10.0 and w.last_seen == 10.0
    assert pool.by_id == {"w1": w} and pool.by_identity == {b"id1": w}
    assert pool.by_node == {"n1": [w]}
    assert (w.slots, w.capabilities, w.task_types, w.hostname, w.pid) == \
        (2, {"gpu"}, {"shell"}, "h1", 11)
    again, new = pool.upsert("w1", b"id1", "n1", 4, [], ["shell", "python"], 12.0)
    assert again is w and not new
    assert w.slots == 4 and w.capabilities == set() and w.task_types == {"shell", "python"}
    assert w.last_seen == 12.0 and w.connected_at == 10.0
    assert pool.by_node == {"n1": [w]}


def test_upsert_new_identity_reindexes():
    pool = WorkerPool(3.0)
    w, _ = pool.upsert("w1", b"old", "n1", 1, [], ["shell"], 0.0)
    pool.upsert("w1", b"new", "n1", 1, [], ["shell"], 1.0)
    assert pool.by_identity == {b"new": w} and w.identity == b"new"


def test_upsert_moved_node_reindexes():
    pool = WorkerPool(3.0)
    w, _ = pool.upsert("w1", b"i", "n1", 1, [], ["shell"], 0.0)
    pool.upsert("w1", b"i", "n2", 1, [], ["shell"], 1.0)
    assert pool.by_node == {"n2": [w]} and w.node == "n2"


def test_expiry_by_liveness():
    pool = WorkerPool(liveness=3.0)
    a, _ = pool.upsert("a", b"a", "n1", 1, [], ["shell"], 10.0)
    b, _ = pool.upsert("b", b"b", "n1", 1, [], ["shell"], 12.0)
    assert pool.expired(13.0) == []
    assert pool.expired(13.0001) == [a]                  # silent > liveness
    assert set(pool.expired(15.5)) == {a, b}
    pool.upsert("a", b"a", "n1", 1, [], ["shell"], 15.0)   # heard again
    assert pool.expired(15.5) == [b]


def test_remove_unindexes_everything():
    pool = WorkerPool(3.0)
    a, _ = pool.upsert("a", b"a", "n1", 1, [], ["shell"], 0.0)
    b, _ = pool.upsert("b", b"b", "n1", 1, [], ["shell"], 0.0)
    pool.remove(a)
    assert pool.by_id == {"b": b} and pool.by_identity == {b"b": b}
    assert pool.by_node == {"n1": [b]}
    pool.remove(b)
    assert pool.by_node == {} and pool.by_identity == {}
    pool.remove(b)                                       # twice is harmless


def test_remove_keeps_an_identity_taken_over_by_another_worker():
    pool = WorkerPool(3.0)
    a, _ = pool.upsert("a", b"same", "n1", 1, [], ["shell"], 0.0)
    b, _ = pool.upsert("b", b"same", "n1", 1, [], ["shell"], 1.0)
    assert pool.by_identity[b"same"] is b
    pool.remove(a)
    assert pool.by_identity[b"same"] is b


def test_best_worker_most_free_slots_of_the_type():
    pool = WorkerPool(3.0)
    small, _ = pool.upsert("small", b"s", "n1", 2, [], ["shell"], 0.0)
    big, _ = pool.upsert("big", b"b", "n1", 4, [], ["shell"], 0.0)
    py, _ = pool.upsert("py", b"p", "n1", 8, [], ["python"], 0.0)
    assert pool.best_worker("n1", "shell") is big
    assert pool.best_worker("n1", "python") is py
    big.active |= {(1, 1), (2, 1), (3, 1)}
    assert pool.best_worker("n1", "shell") is small
    small.draining = True
    assert small.free() == 0
    assert pool.best_worker("n1", "shell") is big
    big.active.add((4, 1))
    assert pool.best_worker("n1", "shell") is None
    assert pool.best_worker("nowhere", "shell") is None
    assert pool.best_worker("n1", "other") is None


def test_node_capacity_and_total_free():
    pool = WorkerPool(3.0)
    a, _ = pool.upsert("a", b"a", "n1", 2, ["gpu"], ["shell"], 0.0)
    b, _ = pool.upsert("b", b"b", "n1", 3, ["ssd"], ["python"], 0.0)
    a.active.add((1, 1))
    assert pool.node_capacity("n1") == (1, 5, {"gpu", "ssd"}, {"shell", "python"}, 2)
    assert pool.total_free() == 4
    b.draining = True                                    # a draining worker offers no slot
    assert pool.node_capacity("n1")[:2] == (1, 2)
    assert pool.total_free() == 1
    assert pool.node_capacity("none") == (0, 0, set(), set(), 0)


def test_public_view():
    pool = WorkerPool(3.0)
    w, _ = pool.upsert("w", b"w", "n1", 2, ["b", "a"], ["shell"], 10.0, "host", 5)
    w.active.add((1, 1))
    assert w.public(12.5) == {"id": "w", "node": "n1", "slots": 2, "active": 1, "prefetch": 0, "queues": ["default"],
                              "capabilities": ["a", "b"], "task_types": ["shell"],
                              "hostname": "host", "pid": 5, "connected_at": 10.0,
                              "last_seen_age": 2.5}


# ---------------------------------------------------------------------------------------------
# dispatch

class Cluster:
    """A registry with nodes (metrics from heartbeats), a pool of workers, a task book."""

    def __init__(self):
        self.reg = Registry(Thresholds(), timeout=120.0)
        self.pool = WorkerPool(liveness=3.0)
        self.book = TaskBook(random.Random(0))
        self.now = 1000.0
        self._ids = itertools.count(1)

    def node(self, name, cpu=10.0, mem=10.0, caps=()):
        self.reg.heartbeat(name, {"cpu_percent": cpu, "memory_percent": mem}, self.now,
                           capabilities=list(caps))
        return self

    def worker(self, node, slots, types=("shell",), caps=(), wid=None):
        wid = wid or f"{node}-w{next(self._ids)}"
        return self.pool.upsert(wid, wid.encode(), node, slots, caps, types, self.now)[0]

    def submit(self, **kw):
        kw.setdefault("task_type", "shell")
        kw.setdefault("payload", {})
        return self.book.submit(Task(id=0, **kw), self.now)

    def dispatch(self, **kw):
        return dispatch.dispatch(self.book, self.pool, self.reg, self.now, **kw)


def test_dispatch_goes_to_the_best_node_with_the_breakdown():
    c = Cluster().node("hot", cpu=80).node("cool", cpu=5)
    c.worker("hot", 2)
    cool = c.worker("cool", 2)
    t = c.submit()
    assert c.dispatch() == [(cool, t)]
    assert t.status == T.ASSIGNED and t.assigned_node == "cool" and t.worker_id == cool.id
    assert t.attempt == 1 and cool.active == {(t.id, 1)}
    assert t.placement["cpu"] == pytest.approx(0.40 * 0.95)
    assert t.placement["tasks"] == pytest.approx(0.20)              # scored before it was added
    assert t.placement["inputs"]["slots"] == 2


def test_dispatch_spreads_as_load_changes_the_score():
    c = Cluster().node("a").node("b")
    c.worker("a", 2)
    c.worker("b", 2)
    for _ in range(4):
        c.submit()
    out = c.dispatch()
    assert sorted(t.assigned_node for _, t in out) == ["a", "a", "b", "b"]


def test_credit_flow_never_more_than_free_slots():
    c = Cluster().node("n1").node("n2")
    w1, w2 = c.worker("n1", 2), c.worker("n2", 3)
    tasks = [c.submit() for _ in range(10)]
    out = c.dispatch()
    assert len(out) == 5
    assert len(w1.active) == 2 and len(w2.active) == 3
    assert c.dispatch() == []                                        # no credit left
    assert sum(t.status == T.QUEUED for t in tasks) == 5
    # a result frees one slot: exactly one more goes out
    done = next(iter(w1.active))
    w1.active.discard(done)
    c.book.finish(c.book.get(done[0]), T.SUCCEEDED, {}, c.now)
    out = c.dispatch()
    assert len(out) == 1 and out[0][0] is w1 and len(w1.active) == 2


def test_credit_flow_over_many_random_rounds():
    rnd = random.Random(3)
    c = Cluster()
    workers = []
    for i in range(4):
        c.node(f"n{i}", cpu=rnd.uniform(0, 90))
        workers.append(c.worker(f"n{i}", rnd.randint(1, 4)))
    for _ in range(60):
        c.submit(priority=rnd.randint(-2, 2))
    while True:
        out = c.dispatch(limit=rnd.randint(1, 5))
        for w in workers:
            assert len(w.active) <= w.slots
        if not out:
            if not any(w.active for w in workers):
                break
        for w in workers:                                # finish a random part
            for key in list(w.active):
                if rnd.random() < 0.5:
                    w.active.discard(key)
                    c.book.finish(c.book.get(key[0]), T.SUCCEEDED, {}, c.now)
    assert c.book.active == {}


def test_draining_worker_gets_nothing():
    c = Cluster().node("n1")
    w = c.worker("n1", 4)
    w.draining = True
    c.submit()
    assert c.dispatch() == []


def test_priority_then_fifo_across_queues():
    c = Cluster().node("n1", caps=["gpu"])
    w = c.worker("n1", 1, types=("shell", "python"))
    low = c.submit(priority=0)
    gpu = c.submit(priority=0, requirements=["gpu"])
    py = c.submit(task_type="python", priority=5)
    older_high = c.submit(priority=5)
    order = []
    for _ in range(4):
        out = c.dispatch()
        assert len(out) == 1
        t = out[0][1]
        order.append(t)
        w.active.clear()
        c.book.finish(t, T.SUCCEEDED, {}, c.now)
    assert order == [py, older_high, low, gpu]


def test_head_of_line_blocked_queue_does_not_block_others():
    c = Cluster().node("n1")
    w = c.worker("n1", 4)
    gpu = c.submit(requirements=["gpu"], priority=100)
    py = c.submit(task_type="python", priority=50)                   # no worker runs it
    pinned = c.submit(node="n2", priority=10)                        # pinned elsewhere
    plain = [c.submit() for _ in range(3)]
    out = c.dispatch()
    assert [t for _, t in out] == plain
    assert gpu.status == py.status == pinned.status == T.QUEUED
    assert len(w.active) == 3
    # the reasons the blocked ones wait
    assert dispatch.explain(gpu, c.reg, c.pool) == {"n1": "missing capabilities: gpu"}
    assert dispatch.explain(py, c.reg, c.pool) == {
        "n1": "its workers do not run task type 'python'"}
    assert dispatch.explain(pinned, c.reg, c.pool) == {"n1": "task is pinned to node n2"}


def test_blocked_head_blocks_its_own_queue_only():
    """Within one queue order is kept: the head that cannot go holds the rest of that queue."""
    c = Cluster().node("n1", caps=["gpu"]).node("n2")
    c.worker("n2", 2)
    gpu_tasks = [c.submit(requirements=["gpu"]) for _ in range(2)]
    assert c.dispatch() == []                                        # n1 has no worker
    c.worker("n1", 1)
    out = c.dispatch()
    assert [t for _, t in out] == [gpu_tasks[0]]                     # one slot on n1


def test_requirements_met_by_the_workers_capabilities():
    c = Cluster().node("n1")
    c.worker("n1", 1, caps=["ssd"])
    t = c.submit(requirements=["ssd"])
    assert [x for _, x in c.dispatch()] == [t]


def test_pinned_task_goes_to_its_node_even_if_worse():
    c = Cluster().node("good", cpu=0).node("bad", cpu=95)
    c.worker("good", 2)
    bad = c.worker("bad", 2)
    t = c.submit(node="bad")
    assert c.dispatch() == [(bad, t)]


def test_offline_and_drained_nodes_get_nothing():
    c = Cluster().node("n1").node("n2")
    c.worker("n1", 2)
    c.worker("n2", 2)
    c.reg.by_name["n1"].drained = True
    changes = c.reg.check_offline(c.now + 121.0)                     # both offline
    assert {ch.node.name for ch in changes} == {"n1", "n2"}
    c.submit()
    assert c.dispatch() == []
    c.reg.heartbeat("n2", {"cpu_percent": 1.0}, c.now + 122.0)
    out = c.dispatch()
    assert len(out) == 1 and out[0][1].assigned_node == "n2"


def test_node_capacity_of_two_types_but_no_worker_fits():
    """Slots are summed per node, but the chosen node's free slot is on a worker of
    another type: the queue is blocked for this round, not assigned to a wrong worker."""
    c = Cluster().node("n1")
    shell = c.worker("n1", 1, types=("shell",))
    py = c.worker("n1", 1, types=("python",))
    py.active.add((99, 1))                                           # python worker full
    t = c.submit(task_type="python")
    s = c.submit()
    out = c.dispatch()
    assert out == [(shell, s)] and t.status == T.QUEUED


def test_limit_caps_one_round():
    c = Cluster().node("n1")
    c.worker("n1", 10)
    for _ in range(5):
        c.submit()
    assert len(c.dispatch(limit=2)) == 2
    assert len(c.dispatch()) == 3


def test_no_free_slots_or_no_tasks_is_cheap():
    c = Cluster().node("n1")
    assert c.dispatch() == []                                        # no workers
    c.worker("n1", 1)
    assert c.dispatch() == []                                        # no tasks


def test_candidates_skip_workers_of_unregistered_nodes_and_merge_caps():
    c = Cluster().node("n1", cpu=33, caps=["agent-cap"])
    c.worker("n1", 2, caps=["worker-cap"])
    c.worker("ghost", 2)                                             # no registry entry
    cs = dispatch.candidates(c.reg, c.pool)
    assert [x.name for x in cs] == ["n1"]
    assert cs[0].capabilities == {"agent-cap", "worker-cap"} and cs[0].cpu == 33.0
    assert (cs[0].active, cs[0].slots, cs[0].workers) == (0, 2, 1)


def test_a_free_slot_of_the_wrong_type_does_not_starve_a_task_another_node_can_run():
    c = Cluster().node("n1", cpu=5).node("n2", cpu=60)                 # n1 scores higher
    c.worker("n1", 1, types=("shell",))                              # free, wrong type
    busy_py = c.worker("n1", 1, types=("python",))
    busy_py.active.add((99, 1))                                      # full
    idle_py = c.worker("n2", 1, types=("python",))                   # free, right type
    t = c.submit(task_type="python")
    for _ in range(3):                                               # several loop rounds
        out = c.dispatch()
        if out:
            break
    assert out == [(idle_py, t)]


def test_a_worker_serves_its_queues_in_order_at_equal_priority():
    """`--queue high --queue default`: an older default task waits while high has one;
    priority still comes first; a worker listing default first takes default first."""
    c = Cluster().node("n1")
    w = c.pool.upsert("w", b"w", "n1", 1, (), ("shell",), c.now, queues=["high", "default"])[0]
    old_default = c.submit()
    high = c.submit(queue="high")
    assert c.dispatch() == [(w, high)]
    w.active.clear()
    urgent = c.submit(priority=5)
    assert c.dispatch() == [(w, urgent)]                       # priority before queue order
    w.active.clear()
    assert c.dispatch() == [(w, old_default)]
    # on the same node, the worker that lists the queue first gets its task
    c2 = Cluster().node("n1")
    c2.pool.upsert("a", b"a", "n1", 1, (), ("shell",), c2.now, queues=["high", "default"])
    b = c2.pool.upsert("b", b"b", "n1", 1, (), ("shell",), c2.now, queues=["default", "high"])[0]
    assert c2.pool.best_worker("n1", "shell", None, "default") is b
    assert c2.pool.queue_ranks() == {"high": 0, "default": 0}
