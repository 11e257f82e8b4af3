"""Tier 3: tasks through real broker, worker and agent processes on loopback."""

import json
import time

import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def write_metrics(path, cpu, mem=10.0):
    path.write_text(json.dumps({"cpu_percent": cpu, "memory_percent": mem, "disk_percent": 10,
                                "load_1": 0.1}))


def test_requirements_scores_and_waiting_reasons(cluster, tmp_path):
    cluster.start_broker()
    hot, cool = tmp_path / "hot.json", tmp_path / "cool.json"
    write_metrics(hot, 70, 70)
    write_metrics(cool, 5, 5)
    cluster.start_agent("alpha", "--metrics-file", str(hot))
    cluster.start_agent("beta", "--metrics-file", str(cool))
    cluster.start_worker("alpha", "--capability", "ssd", "-c", "2")
    cluster.start_worker("beta", "--capability", "ssd", "-c", "2")
    cluster.start_worker("gamma", "--capability", "gpu", "-c", "2")
    cluster.wait_workers(3)
    wait_for(lambda: cluster.node("beta")["metrics"].get("cpu_percent") == 5, 10, what="metrics")

    # requirements: only the capable node runs it
    for _ in range(3):
        task = cluster.wait_task(cluster.submit(payload={"command": "true"}, requirements=["gpu"]))
        assert task["status"] == "succeeded" and task["assigned_node"] == "gamma"
    # score: among ssd nodes the cool one wins, with the breakdown stored
    task = cluster.wait_task(cluster.submit(payload={"command": "true"}, requirements=["ssd"]))
    assert task["assigned_node"] == "beta", task["placement"]
    p = task["placement"]
    assert p["cpu"] == pytest.approx(0.40 * 0.95) and p["memory"] == pytest.approx(0.30 * 0.95)
    assert p["total"] == pytest.approx(p["cpu"] + p["memory"] + p["tasks"] + p["health"], abs=1e-3)
    best = cluster.rpc("placement.assign_optimal", {"task_type": "shell", "requirements": ["ssd"]})
    assert best["node"] == "beta" and best["alternatives"][0]["node"] == "alpha"
    rec = cluster.rpc("placement.recommend", {"count": 3, "requirements": ["ssd"]})
    assert [r["node"] for r in rec] == ["beta", "alpha"] and rec[0]["can_run_now"]
    assert rec[0]["breakdown"]["inputs"]["cpu_percent"] == 5
    # pinned to a node
    task = cluster.wait_task(cluster.submit(payload={"command": "true"}, node="alpha"))
    assert task["assigned_node"] == "alpha"
    # nobody can: stays queued with a reason per node, runs when a capable worker joins
    waiting = cluster.submit(payload={"command": "echo fpga-ran"}, requirements=["fpga"])
    time.sleep(1.0)
    task = cluster.rpc("task.get", {"id": waiting})
    assert task["status"] == "queued"
    assert set(task["waiting_reasons"]) == {"alpha", "beta", "gamma"}
    assert all("missing capabilities: fpga" in r for r in task["waiting_reasons"].values())
    nobody = cluster.rpc("placement.assign_optimal", {"task_type": "shell", "requirements": ["fpga"]})
    assert nobody["node"] is None and "fpga" in nobody["reasons"]["beta"]
    # other tasks are not blocked behind it
    assert cluster.wait_task(cluster.submit(payload={"command": "true"}))["status"] == "succeeded"
    cluster.start_worker("delta", "--capability", "fpga")
    task = cluster.wait_task(waiting)
    assert task["status"] == "succeeded" and task["assigned_node"] == "delta"
    assert task["result"]["stdout"] == "fpga-ran\n"
    dist = cluster.rpc("placement.distribution")
    assert dist["nodes"]["gamma"]["succeeded"] >= 3 and dist["nodes"]["delta"]["succeeded"] == 1
    assert sum(n.get("succeeded", 0) for n in dist["nodes"].values()) == 7


def test_worker_killed_mid_task_is_requeued_and_finishes_elsewhere(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("one", "-c", "1")
    cluster.wait_workers(1)
    marker = tmp_path / "started"
    task_id = cluster.submit(payload={"command": f"touch {marker}; sleep 1; echo done"})
    wait_for(marker.exists, 10, what="task started on the first worker")
    first = cluster.rpc("task.get", {"id": task_id})
    assert first["assigned_node"] == "one" and first["attempt"] == 1
    cluster.kill("worker-one")
    cluster.start_worker("two", "-c", "1")
    task = cluster.wait_task(task_id, 30)
    assert task["status"] == "succeeded" and task["assigned_node"] == "two"
    assert task["attempt"] == 2 and task["result"]["stdout"] == "done\n"
    events = [e["event"] for e in cluster.rpc("task.get", {"id": task_id, "events": True})["events"]]
    assert events == ["queued", "assigned", "running", "queued", "assigned", "running", "succeeded"]


def test_task_that_kills_its_worker_fails_lost_others_survive(cluster):
    cluster.start_broker()
    for name in ("k1", "k2", "k3"):
        cluster.start_worker(name, "-c", "1")
    cluster.wait_workers(3)
    task_id = cluster.submit(payload={"command": "kill -9 $PPID; sleep 5"}, max_attempts=2)
    task = cluster.wait_task(task_id, 30)
    assert task["status"] == "failed" and task["attempt"] == 2
    assert task["error"].startswith("lost")
    survivors = [k for k in ("worker-k1", "worker-k2", "worker-k3")
                 if cluster.procs[k].poll() is None]
    assert len(survivors) == 1
    assert cluster.wait_task(cluster.submit(payload={"command": "true"}))["status"] == "succeeded"


def test_cancel_timeout_retry_idempotency_priority(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("solo", "-c", "1", "--kill-grace", "0.5")
    cluster.wait_workers(1)
    # cancel a running task: its process group is terminated
    pidfile = tmp_path / "pid"
    running = cluster.submit(payload={"command": f"echo $$ > {pidfile}; sleep 60"})
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="running")
    # while it runs, queue more: cancel a queued one; priorities decide the order
    order = tmp_path / "order"
    queued = cluster.submit(payload={"command": "echo never"})
    low = cluster.submit(payload={"command": f"echo low >> {order}"}, priority=1)
    high = cluster.submit(payload={"command": f"echo high >> {order}"}, priority=5)
    normal = cluster.submit(payload={"command": f"echo normal >> {order}"})
    assert cluster.rpc("task.cancel", {"id": queued})["status"] == "cancelled"
    cluster.rpc("task.cancel", {"id": running})
    task = cluster.wait_task(running)
    assert task["status"] == "cancelled"
    pid = int(pidfile.read_text())
    wait_for(lambda: not _alive(pid), 5, what="cancelled process gone")
    for t in (high, low, normal):
        assert cluster.wait_task(t)["status"] == "succeeded"
    assert order.read_text().split() == ["high", "low", "normal"]
    # timeout
    task = cluster.wait_task(cluster.submit(payload={"command": "sleep 30"}, timeout=0.5))
    assert task["status"] == "timed_out" and task["result"]["duration"] < 5
    # retry with exponential backoff: fails twice, then succeeds
    counter = tmp_path / "count"
    cmd = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    task = cluster.wait_task(cluster.submit(payload={"command": cmd}, retries=3,
                                            retry_backoff=0.4), 30)
    assert task["status"] == "succeeded" and task["attempt"] == 3 and task["retry_count"] == 2
    events = cluster.rpc("task.get", {"id": task["id"], "events": True})["events"]
    delays = [e["detail"]["delay"] for e in events if e["event"] == "retry"]
    assert len(delays) == 2 and 0.2 <= delays[0] <= 0.4 and 0.4 <= delays[1] <= 0.8
    retried_at = [e["ts"] for e in events if e["event"] == "retry"]
    assigned_at = [e["ts"] for e in events if e["event"] == "assigned"]
    assert assigned_at[1] - retried_at[0] >= delays[0] - 0.05
    # retries exhausted: failed
    task = cluster.wait_task(cluster.submit(payload={"command": "exit 7"}, retries=1,
                                            retry_backoff=0.1))
    assert task["status"] == "failed" and task["attempt"] == 2 and task["result"]["exit_code"] == 7
    # idempotency key: same task back
    first = cluster.rpc("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                        "idempotency_key": "deploy-42"})
    again = cluster.rpc("task.submit", {"task_type": "shell", "payload": {"command": "false"},
                                        "idempotency_key": "deploy-42"})
    assert first["created"] and not again["created"] and again["id"] == first["id"]
    cluster.wait_task(first["id"])
    later = cluster.rpc("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                        "idempotency_key": "deploy-42"})
    assert later["id"] == first["id"] and later["status"] == "succeeded"


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_broker_kill9_with_200_tasks_none_lost_none_concurrent(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("r1", "-c", "4")
    cluster.start_worker("r2", "-c", "4")
    cluster.wait_workers(2)
    log = tmp_path / "runs.log"
    ids = []
    specs = [{"task_type": "shell", "payload": {
        "command": f"echo S {i} $(date +%s.%N) >> {log}; sleep 0.05; echo E {i} $(date +%s.%N) >> {log}"}}
        for i in range(200)]
    for s in cluster.rpc("task.submit_many", {"tasks": specs}):
        ids.append(s["id"])
    wait_for(lambda: log.exists() and log.read_text().count("E ") >= 20, 20, what="tasks running")
    cluster.kill("broker")
    cluster._rpc.close()
    cluster._rpc = None
    time.sleep(0.5)
    cluster.start_broker()
    tasks = cluster.rpc("task.wait", {"ids": ids, "timeout": 90}, timeout=100)
    states = {}
    for t in tasks:
        states[t["status"]] = states.get(t["status"], 0) + 1
    assert states == {"succeeded": 200}, states
    # none ran twice at the same time
    spans: dict[int, list] = {}
    open_runs: dict[int, float] = {}
    for line in log.read_text().splitlines():
        kind, i, ts = line.split()
        i, ts = int(i), float(ts)
        if kind == "S":
            open_runs.setdefault(i, [])
            spans.setdefault(i, []).append([ts, None])
        else:
            for span in spans[i]:
                if span[1] is None:
                    span[1] = ts
                    break
    for i, runs in spans.items():
        runs.sort()
        for a, b in zip(runs, runs[1:]):
            assert a[1] is not None and a[1] <= b[0], f"task {i} ran twice at once: {runs}"
    assert set(spans) == set(range(200))


def test_result_lost_with_a_crashed_broker_is_sent_again(cluster, tmp_path):
    """The broker dies after the worker sent a result and before it read it, and is back
    before the worker's liveness window ends (so the worker never reconnects): the worker
    sends unacknowledged results again until the broker acknowledges them. (Real processes;
    its fake-clock twin, with no SIGSTOP or sleep, is tests/unit/test_pirate_clock.py::
    test_result_lost_with_a_crashed_broker_is_sent_again.)"""
    import os
    import signal
    cluster.env["ARCHITECT_WORKER_LIVENESS"] = "20"   # 6 s: this worker will not reconnect
    cluster.start_broker()
    cluster.start_worker("w1", "-c", "1")
    cluster.wait_workers(1)
    marker = tmp_path / "started"
    task_id = cluster.submit(payload={"command": f"touch {marker}; sleep 0.3; echo finished"})
    wait_for(marker.exists, 10, what="task started")
    broker = cluster.procs["broker"]
    os.kill(broker.pid, signal.SIGSTOP)      # the result arrives but is never read ...
    time.sleep(0.8)
    cluster.kill("broker")                   # ... and dies with the broker
    cluster._rpc.close()
    cluster._rpc = None
    cluster.start_broker()
    task = cluster.wait_task(task_id, 20)
    assert task["status"] == "succeeded" and task["result"]["stdout"] == "finished\n"
    assert task["attempt"] == 1, "the result was kept, the task did not run again"
