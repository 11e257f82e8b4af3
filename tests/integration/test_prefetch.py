"""Tier 3: worker prefetch with real workers. A worker turning over short tasks holds some
beyond its slots; when it is killed (-9), what it held runs elsewhere and no task runs on
two workers at once (the checker judges from what the tasks wrote). A prefetched task that
is cancelled before its turn never starts."""

from __future__ import annotations

import time

from tests.checker import check, run_command
from tests.helpers import wait_for


def _tasks_with_events(cluster, ids):
    return {i: cluster.rpc("task.get", {"id": i, "events": True}) for i in ids}


def test_kill_9_of_a_worker_holding_prefetched_tasks_loses_and_doubles_nothing(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("pa", "-c", "1", "--prefetch", "4")
    cluster.start_worker("pb", "-c", "1", "--prefetch", "4")
    cluster.wait_workers(2)
    log = tmp_path / "runs.log"
    labels = [f"t{i}" for i in range(300)]
    specs = [{"task_type": "shell", "payload": {"command": run_command(log, label, 0.02)}}
             for label in labels]
    ids = [t["id"] for t in cluster.rpc("task.submit_many", {"tasks": specs})]
    acked = dict(zip(labels, ids))

    # prefetch really happens: a worker holds more than its one slot
    def holding_more():
        return any(w["active"] > 1 and w["node"] == "pa" for w in cluster.rpc("worker.list"))
    wait_for(holding_more, 20, interval=0.01, what="worker pa holding prefetched tasks")
    cluster.kill("worker-pa")
    done = cluster.rpc("task.wait", {"ids": ids, "timeout": 60}, timeout=70)
    assert all(t["final"] for t in done)
    summary = check(log, acked, _tasks_with_events(cluster, ids), killed={"pa"})
    assert summary["acked"] == 300


def test_a_prefetched_task_cancelled_before_its_turn_never_starts(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("solo", "-c", "1", "--prefetch", "2")
    cluster.wait_workers(1)
    marker = tmp_path / "ran"
    for attempt in range(5):
        warm = [t["id"] for t in cluster.rpc("task.submit_many", {"tasks": [
            {"task_type": "shell", "payload": {"command": "true"}}] * 30})]
        cluster.rpc("task.wait", {"ids": warm, "timeout": 20}, timeout=30)
        slow, late = (t["id"] for t in cluster.rpc("task.submit_many", {"tasks": [
            {"task_type": "shell", "payload": {"command": "sleep 1"}},
            {"task_type": "shell", "payload": {"command": f"touch {marker}"}}]}))
        time.sleep(0.2)
        if cluster.rpc("task.get", {"id": late})["status"] == "assigned":
            break          # queued on the worker behind `slow`: the case under test
        cluster.rpc("task.wait", {"ids": [slow, late], "timeout": 20}, timeout=30)
        marker.unlink(missing_ok=True)
    else:
        raise AssertionError("the worker never prefetched the second task in 5 tries")
    cluster.rpc("task.cancel", {"id": late})
    task = cluster.wait_task(late)
    assert task["status"] == "cancelled", task
    assert "before it started" in (task["error"] or "")
    assert cluster.wait_task(slow)["status"] == "succeeded"
    assert not marker.exists()
    events = [e["event"] for e in cluster.rpc("task.get", {"id": late, "events": True})["events"]]
    assert "running" not in events and events[-1] == "cancelled"
