"""Tier 3: a daemonized worker logs JSON lines to its (rotating) file in the log dir, a task's
line carries its task_id, and `architect logs worker` prints it."""

from __future__ import annotations

import json

from tests.helpers import wait_for


def test_daemon_json_log_file_carries_task_ids(cluster, tmp_path):
    cluster.start_broker()
    log_dir = tmp_path / "logs"
    env = {"ARCHITECT_LOG_DIR": str(log_dir)}
    started = cluster.cli("worker", "--name", "lw", "--daemon", "--log-format", "json", env=env)
    assert str(log_dir / "worker.log") in started.stdout
    try:
        cluster.wait_workers(1)
        task_id = cluster.submit(payload={"command": "sleep 30"})
        wait_for(lambda: cluster.rpc("task.get", {"id": task_id})["status"] == "running", 15,
                 what="the task to run")
        cluster.rpc("task.cancel", {"id": task_id})
        cluster.wait_task(task_id)
        path = log_dir / "worker.log"

        def cancel_line():
            lines = [json.loads(x) for x in path.read_text().splitlines()]   # all JSON
            return [x for x in lines if x["message"].startswith("cancelling task")]
        line, = wait_for(cancel_line, 10, what="the cancel line in the log file")
        assert line["task_id"] == task_id and line["node"] == "lw"
        assert line["level"] == "INFO" and line["logger"] == "architect.worker" and line["ts"]
        shown = cluster.cli("logs", "worker", "-n", "50", env=env)
        assert "cancelling task" in shown.stdout
        status = cluster.cli("worker", "--status", env=env)
        assert str(path) in status.stdout
    finally:
        cluster.cli("worker", "--stop", check=False, env=env)
