"""Tier 3: queues and limits (issue 13) with real processes. A queue limited to 5 starts a
second runs 50 tasks in about 10 s, not faster; a concurrency limit of 2 never has 3
running at once, judged from the tasks' start and end times; workers serve only the queues
they name; the limits show in `architect queues`, REST and /metrics, and bad input is named."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import wait_for

# measures time windows (a start within 100 ms, N fires in N s, a rate): run alone, not
# beside another test on this machine's two cores (scripts/test runs `serial` after the rest)
pytestmark = pytest.mark.serial


def test_rate_and_concurrency_limits(cluster):
    base = cluster.start_server()
    cluster.start_worker("w1", "-c", "8", "--queue", "limited", "--queue", "pair",
                         "--queue", "default")
    cluster.wait_workers(1)
    # rate: 5 a second, 50 tasks: about 10 s between the first start and the last
    answer = requests.put(base + "/api/queues/limited", json={"rate": "5/s"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"name": "limited",
                                                          "concurrency": None, "rate": "5/s"}
    ids = [t["id"] for t in cluster.rpc("task.submit_many", {"tasks": [
        {"task_type": "shell", "payload": {"command": "true"}, "queue": "limited"}] * 50})]
    held = cluster.rpc("task.get", {"id": ids[-1]})
    assert held.get("waiting_reason") == "rate limited", held
    done = cluster.rpc("task.wait", {"ids": ids, "timeout": 40}, timeout=45)
    starts = sorted(t["started_at"] for t in done)
    assert all(t["status"] == "succeeded" for t in done)
    span = starts[-1] - starts[0]
    assert 8.5 <= span <= 12.0, span            # 5 at once (the bucket), then 5 a second
    # no second has more than the bucket's 5 plus 5 refilled
    assert max(sum(1 for s in starts if a <= s < a + 1.0) for a in starts) <= 10
    # concurrency: never more than 2 at once
    cluster.cli("queues", "set", "pair", "--concurrency", "2")
    ids = [t["id"] for t in cluster.rpc("task.submit_many", {"tasks": [
        {"task_type": "shell", "payload": {"command": "sleep 0.3"}, "queue": "pair"}] * 8})]
    wait_for(lambda: cluster.rpc("task.get", {"id": ids[-1]}).get("waiting_reason") ==
             "queue at its concurrency limit" or cluster.rpc("task.get", {"id": ids[-1]})[
                 "status"] != "queued", 10, what="the last one held or started")
    table = cluster.cli_json("queues")
    pair = next(q for q in table if q["name"] == "pair")
    assert pair["concurrency"] == 2 and pair["running"] <= 2
    done = cluster.rpc("task.wait", {"ids": ids, "timeout": 30}, timeout=35)
    spans = [(t["started_at"], t["finished_at"]) for t in done]
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                   key=lambda x: (x[0], x[1]))
    most, now = 0, 0
    for _, step in edges:
        now += step
        most = max(most, now)
    assert most == 2, spans
    # a task in a queue no worker serves waits, and says so
    lonely = cluster.rpc("task.submit", {"task_type": "shell", "payload": {"command": "true"},
                                         "queue": "nobody"})["id"]
    assert cluster.rpc("task.get", {"id": lonely})["status"] == "queued"
    metrics = requests.get(base + "/metrics", timeout=10).text
    assert 'architect_queue_waiting{queue="nobody"} 1.0' in metrics
    listed = requests.get(base + "/api/queues", timeout=10).json()
    assert {q["name"] for q in listed["queues"]} >= {"limited", "pair", "nobody"}
    # removing the limits; bad input
    assert cluster.cli_json("queues", "set", "pair", "--no-limits") == {
        "name": "pair", "concurrency": None, "rate": None}
    for body, words in (({"rate": "fast"}, "rate"), ({"concurrency": 0}, "concurrency"),
                        ({"rate": "5 / s"}, "rate")):
        answer = requests.put(base + "/api/queues/limited", json=body, timeout=10)
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], body
    bad = requests.post(base + "/api/tasks", json={"task_type": "shell", "payload": {
        "command": "true"}, "queue": "bad queue!"}, timeout=10)
    assert bad.status_code == 400 and "queue" in bad.json()["error"]["message"]
