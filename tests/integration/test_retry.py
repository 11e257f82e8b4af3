"""Tier 3: dead letter and retry (issue 13) with real processes. A failed task retried from
REST, the CLI or the client runs again as the same task (attempt 2, a `retried` event, its
history kept); bulk retry counts first and retries only what ended so in the window; a
task that did not fail is refused and left alone; bad input is named."""

from __future__ import annotations

import requests

from architect.client import Client, RequestRejected


def flaky(path) -> str:
    """Fails on its first run, succeeds on the next."""
    return f'n=$(cat {path} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {path}; [ "$n" -ge 2 ]'


def test_retry_from_rest_cli_and_client(cluster, tmp_path):
    base = cluster.start_server()
    cluster.start_worker("w1", "-c", "4", "--queue", "mail", "--queue", "default")
    cluster.wait_workers(1)

    def run(command, **spec):
        task_id = cluster.submit(payload={"command": command}, **spec)
        return cluster.wait_task(task_id)

    # REST: one task
    first = run(flaky(tmp_path / "a"))
    assert first["status"] == "failed" and first["attempt"] == 1
    answer = requests.post(f"{base}/api/tasks/{first['id']}/retry", timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] in ("queued", "assigned",
                                                                      "running", "succeeded")
    done = cluster.wait_task(first["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2
    events = [e["event"] for e in cluster.rpc("task.get", {"id": first["id"],
                                                           "events": True})["events"]]
    assert events.count("failed") == 1 and "retried" in events and events[-1] == "succeeded"
    # a task that succeeded is refused (409), and left as it was
    again = requests.post(f"{base}/api/tasks/{first['id']}/retry", timeout=10)
    assert again.status_code == 409 and "succeeded" in again.json()["error"]["message"]
    assert requests.post(f"{base}/api/tasks/999999/retry", timeout=10).status_code == 404
    assert cluster.rpc("task.get", {"id": first["id"]})["attempt"] == 2

    # CLI: one task, then many with a count (dry run) first
    second = run(flaky(tmp_path / "b"))
    out = cluster.cli("tasks", "retry", str(second["id"])).stdout
    assert f"task {second['id']}" in out
    assert cluster.wait_task(second["id"])["status"] == "succeeded"
    failing = [run(flaky(tmp_path / f"c{i}"))["id"] for i in range(3)]
    counted = cluster.cli_json("tasks", "retry", "--status", "failed", "--since", "1h",
                               "--dry-run")
    assert counted["count"] == 3 and sorted(counted["ids"]) == sorted(failing)
    assert all(cluster.rpc("task.get", {"id": i})["status"] == "failed" for i in failing)
    refused = cluster.cli("tasks", "retry", "--since", "1h", check=False, env={})
    assert refused.returncode != 0                      # asked for confirmation: no tty
    assert all(cluster.rpc("task.get", {"id": i})["attempt"] == 1 for i in failing)
    out = cluster.cli("tasks", "retry", "--since", "1h", "--yes").stdout
    assert "3 tasks queued again" in out, out
    assert [cluster.wait_task(i)["status"] for i in failing] == ["succeeded"] * 3
    # by queue: only that queue's failed tasks are counted and retried
    mail = run(flaky(tmp_path / "m"), queue="mail")["id"]
    assert cluster.cli_json("tasks", "retry", "--since", "1h", "--queue", "default",
                            "--dry-run")["count"] == 0
    assert cluster.cli_json("tasks", "retry", "--since", "1h", "--queue", "mail",
                            "--dry-run")["ids"] == [mail]
    out = cluster.cli("tasks", "retry", "--since", "1h", "--queue", "mail", "--yes").stdout
    assert "1 tasks queued again" in out and cluster.wait_task(mail)["status"] == "succeeded"
    bad = cluster.cli("tasks", "retry", "--since", "soon", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr

    # the client
    third = run(flaky(tmp_path / "d"))
    with Client(control_endpoint=cluster.endpoints.control, timeout=10) as client:
        assert client.retry_many(since=3600, dry_run=True)["ids"] == [third["id"]]
        assert client.retry(third["id"])["status"] in ("queued", "assigned", "running",
                                                       "succeeded")
        assert client.wait(third["id"], timeout=20)["status"] == "succeeded"
        try:
            client.retry(third["id"])
            raise AssertionError("a succeeded task was retried")
        except RequestRejected as exc:
            assert exc.code == "conflict"
    # REST bulk: bad input is named and nothing changes
    wrong = requests.post(f"{base}/api/tasks/retry", json={"status": "succeeded"}, timeout=10)
    assert wrong.status_code == 400 and "status" in wrong.json()["error"]["message"]
    nothing = requests.post(f"{base}/api/tasks/retry", json={"since": 3600}, timeout=10).json()
    assert nothing == {"count": 0, "ids": [], "dry_run": False}
