"""Tier 1: the task state machine in architect/broker/tasks.py (TaskBook). Pure; time is
passed in, the backoff's jitter comes from a seeded random.Random.

    queued → assigned → running → succeeded | failed | timed_out | cancelled
"""

from __future__ import annotations

import random

import pytest

from architect.broker import tasks as T
from architect.broker.tasks import RETRY_BACKOFF_MAX, Task, TaskBook, backoff_delay

BREAKDOWN = {"cpu": 0.4, "memory": 0.3, "tasks": 0.2, "health": 0.1, "total": 1.0}


@pytest.fixture
def book() -> TaskBook:
    return TaskBook(random.Random(1234))


def new(book: TaskBook, now: float = 100.0, _deps=None, **kw) -> Task:
    kw.setdefault("task_type", "shell")
    kw.setdefault("payload", {"command": "true"})
    return book.submit(Task(id=0, **kw), now, _deps)


def run(book: TaskBook, task: Task, now: float, node="n1", worker="w1") -> None:
    """queued → (popped from its queue) → assigned → running."""
    assert book.head(task.queue_key) is task
    book.pop(task.queue_key)
    book.assign(task, node, worker, BREAKDOWN, now)
    book.started(task, now + 0.5, now + 0.5)


def events(book: TaskBook, task_id: int) -> list[str]:
    return [e[2] for e in book.events if e[0] == task_id]


# ---------------------------------------------------------------------------------------------
# submit and the happy path

def test_submit_queues_with_sequential_ids_and_an_event(book):
    a, b = new(book, 10.0, submitted_by="alice"), new(book, 11.0)
    assert (a.id, b.id) == (1, 2)
    assert a.status == T.QUEUED and a.attempt == 0 and a.created_at == 10.0
    assert a.updated_at == 10.0
    assert book.get(1) is a and book.active == {1: a, 2: b}
    assert book.queued_count() == 2
    assert book.events[0] == (1, 10.0, "queued", 0, None, {"submitted_by": "alice"})
    dirty, evs, accepted, ended, deps = book.take_dirty()
    assert set(dirty) == {a, b} and len(evs) == 2 and accepted == 2 and ended == deps == []
    assert book.take_dirty() == ([], [], 0, [], [])


def test_queued_assigned_running_succeeded(book):
    t = new(book, 100.0)
    book.pop(t.queue_key)
    book.assign(t, "n1", "w1", BREAKDOWN, 101.0)
    assert t.status == T.ASSIGNED and t.attempt == 1
    assert (t.assigned_node, t.worker_id, t.assigned_at) == ("n1", "w1", 101.0)
    assert t.placement == BREAKDOWN and t.started_at is None
    book.started(t, ts=101.2, now=101.3)
    assert t.status == T.RUNNING and t.started_at == 101.2 and t.updated_at == 101.3
    book.finish(t, T.SUCCEEDED, {"exit_code": 0, "stdout": "ok\n", "error": None}, 102.0)
    assert t.status == T.SUCCEEDED and t.finished_at == 102.0 and t.error is None
    assert t.result["stdout"] == "ok\n"
    assert t.id not in book.active and book.get(t.id) is t      # kept in `recent`
    assert book.take_finished() == [t] and book.take_finished() == []
    assert events(book, t.id) == ["queued", "assigned", "running", "succeeded"]
    assigned = [e for e in book.events if e[2] == "assigned"][0]
    assert assigned[3:] == (1, "n1", {"worker": "w1", "score": 1.0})
    assert t.public()["final"] is True


def test_started_twice_or_after_the_end_changes_nothing(book):
    t = new(book)
    run(book, t, 100.0)
    book.started(t, 200.0, 200.0)
    assert t.started_at == 100.5
    book.finish(t, T.SUCCEEDED, {}, 101.0)
    book.started(t, 300.0, 300.0)
    assert t.status == T.SUCCEEDED and t.started_at == 100.5


def test_result_without_started_takes_the_workers_start_time(book):
    t = new(book)
    book.pop(t.queue_key)
    book.assign(t, "n1", "w1", BREAKDOWN, 100.0)
    book.finish(t, T.SUCCEEDED, {"started_at": 100.25}, 101.0)
    assert t.started_at == 100.25
    u = new(book)
    book.pop(u.queue_key)
    book.assign(u, "n1", "w1", BREAKDOWN, 100.0)
    book.finish(u, T.SUCCEEDED, {}, 101.0)
    assert u.started_at == 101.0                # nothing better known: now


@pytest.mark.parametrize("state", [T.FAILED, T.TIMED_OUT, T.CANCELLED])
def test_other_final_states_without_retries(book, state):
    t = new(book)
    run(book, t, 100.0)
    book.finish(t, state, {"error": f"it {state}", "exit_code": 1}, 105.0)
    assert t.status == state and t.error == f"it {state}" and t.finished_at == 105.0
    assert t.id not in book.active
    assert events(book, t.id)[-1] == state
    assert book.events[-1][5] == {"error": f"it {state}"}


def test_unassign_puts_it_back_and_gives_the_attempt_back(book):
    t = new(book)
    book.pop(t.queue_key)
    book.assign(t, "n1", "w1", BREAKDOWN, 100.0)
    book.unassign(t, 100.1, "worker unreachable")
    assert t.status == T.QUEUED and t.attempt == 0 and t.worker_id is None
    assert book.head(t.queue_key) is t
    assert book.events[-1][5] == {"reason": "worker unreachable"}


def test_force_final(book):
    t = new(book)
    run(book, t, 100.0)
    book.force_final(t, T.TIMED_OUT, 200.0, "timed out after 5s (the worker did not report it)")
    assert t.status == T.TIMED_OUT and t.error.startswith("timed out") and t.finished_at == 200.0
    assert t.id not in book.active


def test_final_tasks_kept_in_recent_are_bounded(book, monkeypatch):
    monkeypatch.setattr(T, "RECENT_FINAL", 3)
    made = [new(book) for _ in range(5)]
    for t in made:
        book.cancel(t, 101.0)
    assert list(book.recent) == [3, 4, 5]
    assert book.get(1) is None and book.get(5) is made[4]


# ---------------------------------------------------------------------------------------------
# lost workers: attempt + 1 up to max_attempts, then failed "lost"

def test_lost_requeues_until_max_attempts_then_fails_lost(book):
    t = new(book, max_attempts=3)
    for attempt in (1, 2):
        run(book, t, 100.0 + attempt, worker=f"w{attempt}")
        assert t.attempt == attempt
        book.lost(t, 110.0 + attempt, f"worker w{attempt} missed its heartbeats")
        assert t.status == T.QUEUED and t.worker_id is None
        assert book.events[-1][5] == {"reason": f"worker w{attempt} missed its heartbeats",
                                      "lost_attempt": attempt}
    run(book, t, 120.0, worker="w3")
    assert t.attempt == 3
    book.lost(t, 130.0, "worker w3 restarted")
    assert t.status == T.FAILED and t.finished_at == 130.0
    assert t.error == "lost: worker w3 restarted (after 3 attempts)"
    assert book.events[-1][5] == {"reason": "lost", "detail": "worker w3 restarted"}
    assert t.id not in book.active
    assert events(book, t.id) == ["queued"] + ["assigned", "running", "queued"] * 2 + \
        ["assigned", "running", "failed"]


def test_lost_with_max_attempts_one_fails_at_once(book):
    t = new(book, max_attempts=1)
    run(book, t, 100.0)
    book.lost(t, 101.0, "gone")
    assert t.status == T.FAILED and t.error.startswith("lost: gone")


def test_lost_keeps_its_place_ahead_of_newer_tasks(book):
    old = new(book)
    run(book, old, 100.0)
    newer = new(book, 101.0)
    book.lost(old, 102.0, "gone")
    assert book.head(old.queue_key) is old
    book.pop(old.queue_key)
    assert book.head(old.queue_key) is newer


def test_lost_while_cancel_requested_ends_cancelled(book):
    t = new(book)
    run(book, t, 100.0)
    assert book.cancel(t, 101.0) is False
    book.lost(t, 102.0, "gone")
    assert t.status == T.CANCELLED and t.error == "cancelled (worker lost)"


# ---------------------------------------------------------------------------------------------
# retries with exponential backoff (jitter from the book's seeded RNG)

def test_backoff_delay_is_exponential_jittered_and_capped():
    rnd = random.Random(7)
    for n in range(1, 12):
        d = backoff_delay(2.0, n, rnd)
        base = min(2.0 * 2 ** (n - 1), RETRY_BACKOFF_MAX)
        assert 0.5 * base <= d <= base, (n, d)
    assert backoff_delay(1000.0, 1, random.Random(7)) <= RETRY_BACKOFF_MAX
    # the jitter is exactly the RNG's uniform(0.5, 1.0)
    expect = random.Random(3).uniform(0.5, 1.0) * 8.0
    assert backoff_delay(1.0, 4, random.Random(3)) == pytest.approx(expect)


def test_failed_task_is_retried_after_backoff_then_final(book):
    t = new(book, retries=2, retry_backoff=10.0)
    twin = random.Random(1234)                        # the same seed: the same jitter
    now = 100.0
    for n in (1, 2):
        run(book, t, now)
        book.finish(t, T.FAILED, {"error": f"exit {n}", "exit_code": n}, now + 1)
        delay = min(10.0 * 2 ** (n - 1), 300.0) * twin.uniform(0.5, 1.0)
        assert t.status == T.QUEUED and t.retry_count == n and t.worker_id is None
        assert t.not_before == pytest.approx(now + 1 + delay)
        assert t.error == f"exit {n}" and t.result["exit_code"] == n   # the failed run shows
        ev = book.events[-1]
        assert ev[2] == "retry" and ev[5] == {"after": T.FAILED, "error": f"exit {n}",
                                               "delay": round(delay, 3), "retry": n}
        # waiting: not at the head of its queue before not_before, then promoted
        assert book.head(t.queue_key) is None
        book.promote_delayed(t.not_before - 0.001)
        assert book.head(t.queue_key) is None
        now = t.not_before
        book.promote_delayed(now)
        assert book.head(t.queue_key) is t and t.not_before is None
    run(book, t, now)
    assert t.attempt == 3
    book.finish(t, T.FAILED, {"error": "exit 3"}, now + 1)
    assert t.status == T.FAILED and t.retry_count == 2 and t.not_before is None
    assert t.id not in book.active


def test_timed_out_is_retried_too_and_success_ends_it(book):
    t = new(book, retries=1, retry_backoff=0.0)
    run(book, t, 100.0)
    book.finish(t, T.TIMED_OUT, {"error": "timed out after 1s"}, 101.0)
    assert t.status == T.QUEUED and t.not_before == 101.0    # backoff 0: due at once
    book.promote_delayed(101.0)                               # (the next tick)
    assert book.head(t.queue_key) is t
    run(book, t, 102.0)
    book.finish(t, T.SUCCEEDED, {"error": None}, 103.0)
    assert t.status == T.SUCCEEDED and t.error is None and t.attempt == 2


@pytest.mark.parametrize("state", [T.SUCCEEDED, T.CANCELLED])
def test_success_and_cancel_are_never_retried(book, state):
    t = new(book, retries=5)
    run(book, t, 100.0)
    book.finish(t, state, {}, 101.0)
    assert t.status == state and t.retry_count == 0


def test_lost_is_not_a_retry(book):
    t = new(book, retries=5, max_attempts=1)
    run(book, t, 100.0)
    book.lost(t, 101.0, "gone")
    assert t.status == T.FAILED and t.retry_count == 0


def test_backoff_is_deterministic_with_a_seed():
    def delays(seed):
        b = TaskBook(random.Random(seed))
        t = new(b, retries=3, retry_backoff=4.0)
        out = []
        for _ in range(3):
            run(b, t, 100.0)
            b.finish(t, T.FAILED, {}, 100.0)
            out.append(t.not_before - 100.0)
            b.promote_delayed(t.not_before)
        return out
    assert delays(5) == delays(5)
    first = delays(5)
    assert 2.0 <= first[0] <= 4.0 and 4.0 <= first[1] <= 8.0 and 8.0 <= first[2] <= 16.0


# ---------------------------------------------------------------------------------------------
# cancel

def test_cancel_queued_ends_at_once(book):
    t = new(book)
    assert book.cancel(t, 101.0) is True
    assert t.status == T.CANCELLED and t.error == "cancelled" and t.finished_at == 101.0
    assert book.head(t.queue_key) is None          # the stale heap entry is skipped
    assert t.queue_key not in book.queues


def test_cancel_while_waiting_for_a_retry(book):
    t = new(book, retries=1, retry_backoff=60.0)
    run(book, t, 100.0)
    book.finish(t, T.FAILED, {}, 101.0)
    assert t.not_before is not None
    assert book.cancel(t, 102.0) is True
    assert t.status == T.CANCELLED and t.not_before is None
    book.promote_delayed(10_000.0)
    assert book.head(t.queue_key) is None


@pytest.mark.parametrize("started", [False, True], ids=["assigned", "running"])
def test_cancel_running_needs_the_worker(book, started):
    t = new(book)
    book.pop(t.queue_key)
    book.assign(t, "n1", "w1", BREAKDOWN, 100.0)
    if started:
        book.started(t, 100.5, 100.5)
    status = t.status
    assert book.cancel(t, 101.0) is False
    assert t.status == status and t.cancel_requested
    assert events(book, t.id)[-1] == "cancel_requested"
    n = len(book.events)
    assert book.cancel(t, 101.5) is False and len(book.events) == n   # asked once
    # the worker reports: a failure (SIGTERM) becomes cancelled, a success stays
    book.finish(t, T.FAILED, {"error": "killed", "exit_code": -15}, 102.0)
    assert t.status == T.CANCELLED


def test_cancel_requested_but_it_succeeded_first(book):
    t = new(book, retries=3)
    run(book, t, 100.0)
    book.cancel(t, 101.0)
    book.finish(t, T.SUCCEEDED, {}, 102.0)
    assert t.status == T.SUCCEEDED


def test_cancel_requested_failure_is_not_retried(book):
    t = new(book, retries=3)
    run(book, t, 100.0)
    book.cancel(t, 101.0)
    book.finish(t, T.FAILED, {"error": "boom"}, 102.0)
    assert t.status == T.CANCELLED and t.retry_count == 0


# ---------------------------------------------------------------------------------------------
# idempotency keys and priority

def test_idempotency_key_indexed_while_active_and_dropped_when_final(book):
    t = new(book, idempotency_key="deploy-1")
    assert book.keys == {"deploy-1": t.id}
    run(book, t, 100.0)
    book.lost(t, 101.0, "gone")                      # requeued: still the same task
    assert book.keys == {"deploy-1": t.id}
    run(book, t, 102.0)
    book.finish(t, T.SUCCEEDED, {}, 103.0)
    assert book.keys == {}                           # final: the store answers from now on


def test_load_reindexes_keys_and_queues(book):
    q = Task(id=7, task_type="shell", payload={}, status=T.QUEUED, idempotency_key="k7")
    r = Task(id=8, task_type="shell", payload={}, status=T.RUNNING, attempt=1)
    book.load(q)
    book.load(r)
    assert book.keys == {"k7": 7} and book.head(q.queue_key) is q
    book.pop(q.queue_key)
    assert book.head(q.queue_key) is None             # the running one is not queued


def test_priority_higher_first_then_fifo(book):
    made = {name: new(book, priority=p) for name, p in
            [("a", 0), ("b", 5), ("c", 0), ("d", -3), ("e", 5), ("f", 1000)]}
    order = []
    key = made["a"].queue_key
    while (head := book.head(key)) is not None:
        order.append(next(n for n, t in made.items() if t is head))
        book.pop(key)
    assert order == ["f", "b", "e", "a", "c", "d"]


def test_queues_are_per_queue_type_requirements_and_pin(book):
    a = new(book, task_type="shell")
    b = new(book, task_type="python", payload={})
    c = new(book, requirements=["gpu"])
    d = new(book, node="n2")
    e = new(book, queue="high")
    keys = {t.queue_key for t in (a, b, c, d, e)}
    assert len(keys) == 5 and set(book.queues) == keys
    assert a.queue_key == ("default", "shell", (), None)
    assert c.queue_key == ("default", "shell", ("gpu",), None)
    assert e.queue_key == ("high", "shell", (), None)


def test_row_matches_columns(book):
    t = new(book, requirements=["gpu"], idempotency_key="k")
    row = t.row()
    assert len(row) == len(T.COLUMNS)
    assert dict(zip(T.COLUMNS, row))["requirements"] == '["gpu"]'


def test_tallies_and_the_rollup_of_ended_tasks(book):
    """Totals by state and by (node, state) are kept, not counted from the database; each
    ended task gives one (hour created, node, state) for the hourly roll-up."""
    book.load_tallies({"succeeded": 5, "queued": 9}, [("n1", "succeeded", 5), ("n1", "running", 2)])
    assert book.counts() == {"succeeded": 5}             # the unfinished come from memory
    a, b = new(book, 7200.5), new(book, 7300.0)
    book.pop(a.queue_key)
    book.assign(a, "n2", "w", {"total": 1.0}, 7201.0)
    book.finish(a, T.FAILED, {"error": "x"}, 7202.0)
    assert book.counts() == {"succeeded": 5, "failed": 1, "queued": 1}
    assert book.distribution() == [("n1", "succeeded", 5), ("n2", "failed", 1)]
    book.cancel(b, 7400.0)                                # never assigned: no node
    assert book.counts()["cancelled"] == 1
    ended = book.take_dirty().ended
    assert ended == [(7200, "n2", "failed", 1), (7200, "", "cancelled", 1)]


def test_a_task_with_a_start_time_waits_as_scheduled_then_queues(book):
    t = new(book, 100.0, not_before=105.0)
    assert t.status == T.SCHEDULED and book.head(t.queue_key) is None
    book.promote_delayed(104.9)
    assert t.status == T.SCHEDULED
    book.promote_delayed(105.0)
    assert t.status == T.QUEUED and book.head(t.queue_key) is t
    assert events(book, t.id) == ["scheduled", "queued"]
    past = new(book, 100.0, not_before=99.0)                # a start time already past
    assert past.status == T.QUEUED and past.not_before is None
    assert book.cancel(new(book, 100.0, not_before=500.0), 101.0)   # cancelled at once


def test_a_waiting_task_past_its_expiry_ends_expired_and_never_runs(book):
    waits = new(book, 100.0, expires_at=110.0)
    later = new(book, 100.0, not_before=120.0, expires_at=130.0)
    book.expire_due(109.9)
    assert waits.status == T.QUEUED
    book.expire_due(110.0)
    assert waits.status == T.EXPIRED and waits.id not in book.active
    assert book.head(waits.queue_key) is None and "expired" in waits.error
    book.promote_delayed(125.0)
    book.expire_due(130.0)
    assert later.status == T.EXPIRED
    running = new(book, 100.0, expires_at=140.0)            # already running: not expired
    book.pop(running.queue_key)
    book.assign(running, "n1", "w1", {"total": 1.0}, 101.0)
    book.expire_due(150.0)
    assert running.status == T.ASSIGNED
    assert book.counts()["expired"] == 2


@pytest.mark.parametrize("rules,result,state,retried", [
    ({}, {"exit_code": 3}, T.FAILED, True),
    ({"no_retry_on": [3]}, {"exit_code": 3}, T.FAILED, False),
    ({"no_retry_on": [3]}, {"exit_code": 4}, T.FAILED, True),
    ({"retry_on": [75]}, {"exit_code": 3}, T.FAILED, False),
    ({"retry_on": [75]}, {"exit_code": 75}, T.FAILED, True),
    ({"no_retry_on": ["ValueError"]}, {"error": "ValueError: bad input"}, T.FAILED, False),
    ({"retry_on": ["ConnectionError"]}, {"error": "ConnectionError: reset"}, T.FAILED, True),
    ({"retry_on": ["ConnectionError"]}, {"error": "KeyError: 'x'"}, T.FAILED, False),
    ({"no_retry_on": ["timeout"]}, {"error": "timed out after 2s"}, T.TIMED_OUT, False),
    ({"retry_on": ["timeout"]}, {"error": "timed out after 2s"}, T.TIMED_OUT, True),
])
def test_retry_rules(book, rules, result, state, retried):
    t = new(book, 100.0, retries=2, **rules)
    book.pop(t.queue_key)
    book.assign(t, "n1", "w1", {"total": 1.0}, 101.0)
    book.finish(t, state, result, 102.0)
    assert (t.status == T.QUEUED) is retried
    assert (t.status == state) is not retried


def test_a_task_waits_for_its_dependencies_then_queues(book):
    a, b = new(book), new(book)
    c = new(book, depends_on=[a.id, b.id], _deps={a.id: T.QUEUED, b.id: T.QUEUED})
    assert c.status == T.WAITING
    for t in (a, b):
        book.pop(t.queue_key)
        book.assign(t, "n1", "w1", {"total": 1.0}, 101.0)
    book.finish(a, T.SUCCEEDED, {"result": 1}, 102.0)
    assert c.status == T.WAITING
    book.finish(b, T.SUCCEEDED, {"result": 2}, 103.0)
    assert c.status == T.QUEUED and book.head(c.queue_key) is c
    assert events(book, c.id) == ["waiting", "queued"]


def test_a_failed_dependency_cancels_the_task_naming_it(book):
    a = new(book)
    c = new(book, depends_on=[a.id], _deps={a.id: T.QUEUED})
    d = new(book, depends_on=[c.id], _deps={c.id: T.WAITING})    # and what waits on it
    book.pop(a.queue_key)
    book.assign(a, "n1", "w1", {"total": 1.0}, 101.0)
    book.finish(a, T.FAILED, {"error": "exit code 1"}, 102.0)
    assert (c.status, c.error) == (T.CANCELLED, f"dependency {a.id} failed")
    assert (d.status, d.error) == (T.CANCELLED, f"dependency {c.id} cancelled")
    done = new(book, depends_on=[a.id], _deps={a.id: T.FAILED})  # already failed: at once
    assert done.status == T.CANCELLED and book.dependents == {} and book.unmet == {}
    ok = new(book, depends_on=[a.id], _deps={a.id: T.SUCCEEDED})  # already succeeded
    assert ok.status == T.QUEUED
