"""Tier 3: `architect schedules` and the Client's schedule methods against a real broker."""

import json
import subprocess
import time

import pytest

from architect.client import Client, NotFound, RequestRejected
from tests.helpers import PYTHON, wait_for

pytestmark = pytest.mark.slow


def fired(cluster, name: str) -> list[dict]:
    """The schedule's fired runs, newest first."""
    runs = cluster.cli_json("schedules", "show", name, "--runs", "500")["runs"]
    return [r for r in runs if r["outcome"] == "fired"]


def refused(cluster, *args: str) -> str:
    """Run the CLI expecting a failure; its stderr."""
    result = cluster.cli(*args, check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_schedules_cli(cluster):
    cluster.start_broker()
    cluster.start_worker("w1")
    cluster.wait_workers(1)

    out = cluster.cli("schedules", "add", "tick", "--every", "1s", "--command", "echo tock").stdout
    assert "schedule tick: every 1s, next run" in out and "(in " in out
    listed = cluster.cli("schedules", "list").stdout
    assert listed.splitlines()[0].split()[:3] == ["NAME", "WHEN", "PAUSED"]
    assert "tick" in listed and "every 1s" in listed
    [s] = cluster.cli_json("schedules", "list")
    assert s["name"] == "tick" and s["every"] == 1.0 and s["paused"] is False
    assert s["spec"] == {"task_type": "shell", "payload": {"command": "echo tock"}}

    # it fires every second, and the worker runs the tasks
    runs = wait_for(lambda: len(r := fired(cluster, "tick")) >= 2 and r, 10, what="two fired runs")
    done = cluster.wait_task(runs[-1]["task_id"])
    assert done["status"] == "succeeded" and done["result"]["stdout"] == "tock\n"
    shown = cluster.cli("schedules", "show", "tick").stdout
    assert "every 1s" in shown and "fired" in shown and "OUTCOME" in shown
    wait_for(lambda: "succeeded" in cluster.cli("schedules", "list").stdout, 10,
             what="the last task's status in the list")

    # paused: no new fired runs
    assert cluster.cli_json("schedules", "pause", "tick")["paused"] is True
    before = [r["id"] for r in fired(cluster, "tick")]
    time.sleep(3)            # nothing may happen in this window
    assert [r["id"] for r in fired(cluster, "tick")] == before
    assert "paused" in cluster.cli("schedules", "show", "tick").stdout
    # resumed: it fires again
    assert "resumed: next run" in cluster.cli("schedules", "resume", "tick").stdout
    wait_for(lambda: fired(cluster, "tick")[0]["id"] > before[0], 10, what="a run after resume")

    # run now: a task id that succeeds, recorded as a manual run
    cluster.cli("schedules", "pause", "tick")
    task_id = cluster.cli_json("schedules", "run", "tick")["task_id"]
    assert cluster.wait_task(task_id)["status"] == "succeeded"
    manual = [r for r in cluster.cli_json("schedules", "show", "tick")["runs"]
              if r["outcome"] == "manual"]
    assert [r["task_id"] for r in manual] == [task_id] and manual[0]["task_status"] == "succeeded"
    waited = cluster.cli("schedules", "run", "tick", "--wait")
    assert waited.stdout == "tock\n"
    assert cluster.cli("schedules", "run", "tick").stdout.startswith("task ")

    # bad input: a clear message and a failing exit code
    assert "61 * * * *" in refused(cluster, "schedules", "add", "b", "--cron", "61 * * * *",
                                   "--command", "true")
    assert "unknown time zone 'Mars/Base'" in refused(
        cluster, "schedules", "add", "b", "--cron", "0 3 * * *", "--tz", "Mars/Base",
        "--command", "true")
    assert "exactly one of --cron and --every" in refused(
        cluster, "schedules", "add", "b", "--cron", "0 3 * * *", "--every", "5s",
        "--command", "true")
    assert "'tick' exists" in refused(cluster, "schedules", "add", "tick", "--every", "5s",
                                      "--command", "true")
    assert "give --command" in refused(cluster, "schedules", "add", "b", "--every", "5s")
    assert "no schedule 'nope'" in refused(cluster, "schedules", "show", "nope")
    assert "no schedule 'nope'" in refused(cluster, "schedules", "run", "nope")

    # a cron schedule in a time zone, added paused
    cron = cluster.cli_json("schedules", "add", "nightly", "--cron", "0 3 * * *", "--tz",
                            "Europe/Berlin", "--paused", "--argv", "echo 'a b'", "--require",
                            "ssd", "--timeout", "30", "--retries", "2")
    assert cron["paused"] is True and cron["when"] == "cron 0 3 * * * (Europe/Berlin)"
    assert cron["spec"] == {"task_type": "shell", "payload": {"argv": ["echo", "a b"]},
                            "requirements": ["ssd"], "timeout": 30.0, "retries": 2}
    assert [s["name"] for s in cluster.cli_json("schedules", "list")] == ["nightly", "tick"]

    # remove: asks first (no: kept), --yes removes
    no = subprocess.run([PYTHON, "-m", "architect", "schedules", "remove", "tick"],
                        env=cluster.env, input="n\n", capture_output=True, text=True, timeout=60)
    assert no.returncode != 0 and "Aborted" in no.stderr
    assert cluster.cli_json("schedules", "remove", "tick", "--yes") == \
        {"name": "tick", "removed": True}
    assert "removed" in cluster.cli("schedules", "remove", "nightly", "--yes").stdout
    assert cluster.cli("schedules", "list").stdout.strip() == "no schedules"
    assert "no schedule 'tick'" in refused(cluster, "schedules", "show", "tick")


def test_client_schedule_methods(cluster):
    cluster.start_broker()
    cluster.start_worker("w1")
    cluster.wait_workers(1)
    with Client(broker="127.0.0.1", bus_port=cluster.base_port, timeout=5,
                data_dir=str(cluster.tmp / "data")) as c:
        s = c.add_schedule("beat", "python", {"function": "architect.agent.builtin_tasks:add",
                                              "args": [2, 3]}, every="1s", priority=5)
        assert s["name"] == "beat" and s["every"] == 1.0 and s["spec"]["priority"] == 5
        c.add_schedule("weekly", "shell", {"command": "true"}, cron="0 9 * * 1",
                       tz="America/New_York", missed="once", overlap="skip", paused=True)
        assert [x["name"] for x in c.schedules()] == ["beat", "weekly"]
        weekly = c.schedule("weekly", runs=0)
        assert weekly["paused"] and weekly["missed"] == "once" and weekly["overlap"] == "skip"
        assert weekly["runs"] == []

        got = wait_for(lambda: (g := c.schedule("beat"))["runs"] and g, 10, what="a run")
        run = got["runs"][0]
        assert run["outcome"] == "fired" and run["schedule"] == "beat"
        assert c.wait(run["task_id"], timeout=20)["result"]["result"] == 5

        assert c.pause_schedule("beat")["paused"] is True
        assert c.resume_schedule("beat")["paused"] is False
        now = c.run_schedule("weekly")
        assert now["name"] == "weekly" and c.wait(now["task_id"], 20)["status"] == "succeeded"
        assert c.schedule("weekly")["runs"][0]["outcome"] == "manual"

        with pytest.raises(RequestRejected) as exc:
            c.add_schedule("beat", "shell", {"command": "true"}, every=5)
        assert exc.value.code == "conflict"
        with pytest.raises(RequestRejected) as exc:
            c.add_schedule("b", "shell", {"command": "true"}, cron="61 * * * *")
        assert exc.value.code == "bad_request" and "cron" in exc.value.message

        assert c.remove_schedule("beat") == {"name": "beat", "removed": True}
        assert c.remove_schedule("weekly")["removed"] is True
        assert c.schedules() == []
        with pytest.raises(NotFound):
            c.schedule("beat")
        with pytest.raises(NotFound):
            c.run_schedule("beat")
    assert json.dumps(cluster.rpc("schedule.list")) == "[]"
