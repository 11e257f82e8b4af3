"""Tier 3: the documented examples and client/CLI behaviour (docs/CLIENT.md, docs/TASKS.md,
docs/PROTOCOL.md) against a real broker and real task workers on loopback.

Tests marked xfail(strict=True) show bugs found while writing the docs; each reason starts
with "BUG:". They turn into failures ("XPASS(strict)") once the bug is fixed, as a reminder
to drop the marker.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from architect.client import (BrokerUnavailable, Client, NotFound, RequestRejected,
                              TaskFailed, WaitTimeout)
from tests.helpers import PYTHON, free_port_block, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
ADD = "architect.agent.builtin_tasks:add"


# --- helpers ------------------------------------------------------------------------------

def client_for(cluster, timeout: float = 5.0) -> Client:
    return Client(broker="127.0.0.1", bus_port=cluster.base_port, timeout=timeout,
                  data_dir=str(cluster.tmp / "data"))  # the ipc bus there, when it is up


def run_example(cluster, name: str, env=None) -> subprocess.CompletedProcess:
    env = {**cluster.env, "ARCHITECT_BROKER_HOST": "127.0.0.1", **(env or {})}
    return subprocess.run([PYTHON, str(EXAMPLES / name)], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60)


class LineReader:
    """Lines of a running process's stdout, read on a thread, with a timeout per line."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"process ended before printing {text!r}: {self.seen}")
            self.seen.append(line)

    def rest(self, timeout: float = 20.0) -> list[str]:
        self.proc.wait(timeout)
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                return self.seen
            self.seen.append(line)


def follow_logs(cluster, task_id: int) -> LineReader:
    proc = subprocess.Popen([PYTHON, "-m", "architect", "tasks", "logs", "-f", str(task_id)],
                            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    cluster.procs[f"logs-{task_id}"] = proc      # stopped by the fixture if the test fails
    return LineReader(proc)


class FakeWorker:
    """A task worker speaking the work protocol (docs/PROTOCOL.md §4.5) by hand."""

    def __init__(self, cluster, node: str, slots: int = 1):
        self.id = f"{node}-fake-{os.getpid()}"
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, self.id.encode())
        self.sock.connect(cluster.endpoints.work)
        self.hello = {"worker_id": self.id, "node": node, "slots": slots,
                      "task_types": ["shell"], "running": []}

    def send(self, mtype: str, **fields) -> None:
        self.sock.send(msgpack.packb({"v": 1, "type": mtype, **fields}, use_bin_type=True))

    def ready(self, running=()) -> None:
        self.send("ready", **{**self.hello, "running": [list(r) for r in running]})

    def ping(self, running=()) -> None:
        self.send("wping", **{**self.hello, "running": [list(r) for r in running]})

    def recv(self, mtype: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                msg = msgpack.unpackb(self.sock.recv(), raw=False)
                if msg["type"] == mtype:
                    return msg
        raise AssertionError(f"no {mtype!r} message from the broker in {timeout}s")

    def close(self) -> None:
        self.sock.close(0)


class Events:
    """A SUB socket on the events socket; `wait_ready` proves the subscription is live."""

    def __init__(self, cluster, prefix: bytes = b"task."):
        self.cluster = cluster
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self.sock.connect(cluster.endpoints.events)
        self.topics: list[str] = []

    def wait_ready(self) -> None:
        """Submit probe tasks until their `queued` event arrives (slow joiner)."""
        def probe():
            task_id = self.cluster.submit(payload={"command": "true"}, requirements=["probe"])
            return self.collect(0.3) and any(t.startswith(f"task.{task_id}.") for t in self.topics)
        wait_for(probe, 10, what="event subscription active")

    def collect(self, seconds: float) -> list[str]:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000) + 1):
                topic, _payload = self.sock.recv_multipart()
                self.topics.append(topic.decode())
        return self.topics

    def close(self) -> None:
        self.sock.close(0)


# --- the example scripts ---------------------------------------------------------------------

def test_example_scripts_run_against_a_real_cluster(cluster):
    cluster.start_broker()
    cluster.start_worker("ex1", "-c", "4")
    cluster.wait_workers(1)

    out = run_example(cluster, "client_example.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stdout 'hello from" in out.stdout
    assert "result 5" in out.stdout
    assert "map add -> [2, 4, 6]" in out.stdout

    out = run_example(cluster, "raw_zmq_tasks.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "hello from" in out.stdout and "Linux" in out.stdout
    assert "succeeded on ex1 (exit code 0)" in out.stdout

    # a task that fails: the raw script exits with the task's exit code
    out = run_example(cluster, "raw_zmq_tasks.py", {"TASK_COMMAND": "echo oops; exit 3"})
    assert out.returncode == 3, out.stdout + out.stderr
    assert "oops" in out.stdout and "failed on ex1 (exit code 3)" in out.stdout


def test_example_scripts_fail_when_no_broker(cluster):
    env = {"ARCHITECT_BUS_PORT": str(free_port_block(4)), "ARCHITECT_REQUEST_TIMEOUT": "0.5"}
    out = run_example(cluster, "raw_zmq_tasks.py", env)
    assert out.returncode != 0 and "no reply" in out.stderr
    out = run_example(cluster, "client_example.py", env)
    assert out.returncode != 0 and "broker not reachable" in out.stderr


# --- the Python client -------------------------------------------------------------------------

def test_client_error_classes(cluster):
    # nothing listens: BrokerUnavailable after the timeout
    with Client(broker="127.0.0.1", bus_port=free_port_block(4), timeout=0.5,
                data_dir=str(cluster.tmp / "data")) as nobody:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            nobody.get(1)
        assert time.monotonic() - started < 3

    cluster.start_broker()
    cluster.start_worker("err1", "-c", "2")
    cluster.wait_workers(1)
    with client_for(cluster) as c:
        with pytest.raises(NotFound) as info:
            c.get(424242)
        assert info.value.code == "not_found" and "424242" in info.value.message
        assert isinstance(info.value, RequestRejected)

        with pytest.raises(RequestRejected) as info:
            c.submit("shell", {})                    # neither command nor argv
        assert info.value.code == "bad_request" and "command" in info.value.message
        assert not isinstance(info.value, NotFound)
        with pytest.raises(RequestRejected):
            c.submit("python", {"function": "no colon here"})
        with pytest.raises(RequestRejected):
            c.submit("shell", {"command": "true"}, timeout=-1)

        slow = c.submit("shell", {"command": "sleep 30"})
        with pytest.raises(WaitTimeout) as info:
            c.wait(slow["id"], timeout=0.5)
        assert info.value.task["id"] == slow["id"] and not info.value.task["final"]
        assert c.cancel(slow["id"])["id"] == slow["id"]
        assert c.wait(slow["id"], timeout=15)["status"] == "cancelled"


def test_client_map_order_submit_many_and_task_failed(cluster):
    cluster.start_broker()
    cluster.start_worker("map1", "-c", "4")
    cluster.wait_workers(1)
    with client_for(cluster) as c:
        # the first item finishes last: results still come back in item order
        sleeps = c.map("architect.agent.builtin_tasks:sleep", [0.6, 0.3, 0.0, 0.1], timeout=30)
        assert sleeps == [0.6, 0.3, 0.0, 0.1]
        assert c.map(ADD, [(1, 2), [3, 4], {"a": 5, "b": 6}]) == [3, 7, 11]
        assert c.map("architect.agent.builtin_tasks:echo", ["x"]) == [{"args": ["x"], "kwargs": {}}]

        with pytest.raises(TaskFailed) as info:
            c.map("architect.agent.builtin_tasks:fail", ["first", "second"], timeout=30)
        task = info.value.task
        assert task["status"] == "failed" and task["error"] == "RuntimeError: first"
        assert "RuntimeError: first" in task["result"]["stderr"]

        out = c.submit_many([{"task_type": "shell", "payload": {"command": "echo a"}},
                             {"task_type": "shell", "payload": {}},
                             {"task_type": "python", "payload": {"function": ADD, "args": [1, 1]}}])
        assert out[0]["created"] and out[2]["created"]
        assert out[1]["error"]["code"] == "bad_request"
        done = c.wait([out[0]["id"], out[2]["id"]], timeout=15)
        assert [t["status"] for t in done] == ["succeeded", "succeeded"]
        assert done[0]["result"]["stdout"] == "a\n" and done[1]["result"]["result"] == 2

        assert [n["name"] for n in c.nodes()] == ["map1"]
        rec = c.recommend(count=1)
        assert rec[0]["node"] == "map1" and rec[0]["can_run_now"]
        assert set(rec[0]["breakdown"]) >= {"cpu", "memory", "tasks", "health", "total"}


# --- the CLI ---------------------------------------------------------------------------------

def test_cli_logs_follow_streams_output_while_running(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("log1", "-c", "1")
    cluster.wait_workers(1)
    gate = tmp_path / "go"
    task_id = cluster.submit(payload={"command": (
        f"echo line 1; while [ ! -e {gate} ]; do sleep 0.05; done; "
        "for i in 2 3 4 5; do echo line $i; sleep 0.25; done")})
    logs = follow_logs(cluster, task_id)
    logs.until("line 1")                     # streamed while the task is still running
    assert cluster.rpc("task.get", {"id": task_id})["status"] == "running"
    gate.touch()                             # lines 2-5 come over ~1 s
    lines = logs.rest()
    assert logs.proc.returncode == 0
    assert lines == ["line 1", "line 2", "line 3", "line 4", "line 5"]
    # without -f, after the end: the whole output again
    again = cluster.cli("tasks", "logs", str(task_id))
    assert again.stdout.split("\n")[:5] == lines


def test_cli_submit_wait_exit_codes(cluster):
    cluster.start_broker()
    cluster.start_worker("cli1", "-c", "2", "--kill-grace", "0.5")
    cluster.wait_workers(1)
    ok = cluster.cli("tasks", "submit", "--command", "echo fine", "--wait", check=False)
    assert ok.returncode == 0 and ok.stdout == "fine\n"
    failed = cluster.cli("tasks", "submit", "--command", "echo bad >&2; exit 7", "--wait",
                         check=False)
    assert failed.returncode == 7
    assert "bad" in failed.stderr and "failed: exit code 7" in failed.stderr
    py = cluster.cli("tasks", "submit", "--function", ADD, "--arg", "2", "--arg", "3", "--wait",
                     check=False)
    assert py.returncode == 0 and py.stdout == "5\n"
    pyfail = cluster.cli("tasks", "submit", "--function", "architect.agent.builtin_tasks:fail",
                         "--wait", check=False)
    assert pyfail.returncode == 1 and "RuntimeError: boom" in pyfail.stderr
    slow = cluster.cli("tasks", "submit", "--command", "sleep 30", "--timeout", "0.5", "--wait",
                       check=False)
    assert slow.returncode == 1 and "timed_out" in slow.stderr


def test_worker_daemon_status_stop(cluster):
    cluster.start_broker()
    try:
        started = cluster.cli("worker", "--name", "wd1", "-c", "2", "--daemon")
        assert "background" in started.stdout
        workers = cluster.wait_workers(1)
        assert workers[0]["node"] == "wd1" and workers[0]["slots"] == 2
        status = cluster.cli("worker", "--status")
        assert "running" in status.stdout
        assert cluster.wait_task(cluster.submit(payload={"command": "true"}))["status"] == "succeeded"
    finally:
        stopped = cluster.cli("worker", "--stop", check=False)
    assert "stopped" in stopped.stdout
    assert cluster.cli("worker", "--status", check=False).returncode == 1
    wait_for(lambda: cluster.rpc("worker.list") == [], 10, what="the stopped worker gone")


# --- workers: task types and output caps ----------------------------------------------------------

def test_shell_only_worker_leaves_python_tasks_queued(cluster):
    cluster.start_broker()
    cluster.start_worker("sh1", "-c", "2", "--task-type", "shell")
    workers = cluster.wait_workers(1)
    assert workers[0]["task_types"] == ["shell"]
    py = cluster.submit(task_type="python", payload={"function": ADD, "args": [1, 2]})
    assert cluster.wait_task(cluster.submit(payload={"command": "true"}))["status"] == "succeeded"
    time.sleep(0.5)
    task = cluster.rpc("task.get", {"id": py})
    assert task["status"] == "queued" and task["attempt"] == 0
    assert task["waiting_reasons"] == {"sh1": "its workers do not run task type 'python'"}
    # a worker that runs python tasks picks it up
    cluster.start_worker("py1", "-c", "1", "--task-type", "python")
    task = cluster.wait_task(py)
    assert task["status"] == "succeeded" and task["assigned_node"] == "py1"
    assert task["result"]["result"] == 3


def test_output_is_capped_at_max_output(cluster):
    cluster.start_broker()
    cluster.start_worker("cap1", "-c", "1", "--max-output", "100000")
    cluster.wait_workers(1)
    task = cluster.wait_task(cluster.submit(payload={
        "command": "head -c 5000000 /dev/zero | tr '\\0' x; echo done >&2"}))
    result = task["result"]
    assert task["status"] == "succeeded" and result["exit_code"] == 0
    assert result["truncated"] is True
    assert 0 < len(result["stdout"]) <= 100000 and set(result["stdout"]) == {"x"}
    assert result["stderr"] == "done\n"
    streamed = cluster.rpc("task.output", {"id": task["id"]})
    assert sum(len(c["data"]) for c in streamed if c["stream"] == "stdout") <= 100000


# --- bugs found while documenting ----------------------------------------------------------------

def test_task_printing_2mb_with_default_max_output_does_not_kill_the_worker(cluster):
    cluster.start_broker()
    cluster.start_worker("big1", "-c", "1")          # default --max-output 1048576
    cluster.wait_workers(1)
    task = cluster.wait_task(cluster.submit(
        payload={"command": "head -c 2000000 /dev/zero | tr '\\0' x"}, max_attempts=1))
    assert cluster.procs["worker-big1"].poll() is None, "the worker process died"
    assert task["status"] == "succeeded", task["error"]
    assert task["result"]["truncated"] and len(task["result"]["stdout"]) == 1 << 20


def test_result_resent_after_reconnect_is_kept(cluster):
    cluster.start_broker()
    worker = FakeWorker(cluster, "fake1")
    try:
        worker.ready()
        cluster.wait_workers(1)
        worker.ping()                        # fresh: far from the liveness limit
        task_id = cluster.submit(payload={"command": "echo hi"}, node="fake1", max_attempts=1)
        assign = worker.recv("task")
        assert assign["task_id"] == task_id and assign["attempt"] == 1
        worker.send("started", task_id=task_id, attempt=1, ts=time.time())
        worker.ping(running=[(task_id, 1)])
        wait_for(lambda: cluster.rpc("task.get", {"id": task_id})["status"] == "running", 5,
                 what="running")
        # what TaskWorker._connect() sends after a reconnect: `ready` listing what it holds
        # (running tasks and results not yet acknowledged), then every unacked result
        worker.ready(running=[(task_id, 1)])
        worker.send("result", task_id=task_id, attempt=1, state="succeeded", exit_code=0,
                    stdout="hi\n", started_at=time.time() - 0.1, finished_at=time.time())
        assert worker.recv("ack")["task_id"] == task_id
        task = cluster.wait_task(task_id, 5)
        assert task["status"] == "succeeded", task["error"]
        assert task["result"]["stdout"] == "hi\n"
    finally:
        worker.close()


def test_cancelling_a_queued_task_publishes_its_final_state(cluster):
    cluster.start_broker()
    events = Events(cluster)
    try:
        events.wait_ready()
        task_id = cluster.submit(payload={"command": "true"}, requirements=["nowhere"])
        assert cluster.rpc("task.cancel", {"id": task_id})["status"] == "cancelled"
        topics = [t for t in events.collect(1.0) if t.startswith(f"task.{task_id}.")]
        assert f"task.{task_id}.cancelled" in topics, topics
    finally:
        events.close()


def test_task_failed_by_a_lost_worker_publishes_its_final_state(cluster):
    cluster.start_broker()
    events = Events(cluster)
    worker = FakeWorker(cluster, "gone1")
    try:
        events.wait_ready()
        worker.ready()
        cluster.wait_workers(1)
        worker.ping()
        task_id = cluster.submit(payload={"command": "sleep 30"}, node="gone1", max_attempts=1)
        worker.recv("task")
        worker.close()                       # silent from now on: lost after the liveness time
        task = cluster.wait_task(task_id, 15)
        assert task["status"] == "failed" and task["error"].startswith("lost")
        topics = [t for t in events.collect(1.0) if t.startswith(f"task.{task_id}.")]
        assert f"task.{task_id}.failed" in topics, topics
    finally:
        events.close()
        worker.close()


def test_cli_logs_follow_shows_every_attempt(cluster, tmp_path):
    cluster.start_broker()
    cluster.start_worker("retry1", "-c", "1")
    cluster.wait_workers(1)
    count, gate = tmp_path / "count", tmp_path / "go"
    task_id = cluster.submit(payload={"command": (
        f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; "
        "echo a$n-1; sleep 0.1; echo a$n-2; sleep 0.1; echo a$n-3; "
        f"if [ $n -eq 1 ]; then while [ ! -e {gate} ]; do sleep 0.05; done; exit 1; fi")},
        retries=1, retry_backoff=0.1)
    logs = follow_logs(cluster, task_id)
    logs.until("a1-3")
    gate.touch()                            # attempt 1 fails; attempt 2 prints a2-1..a2-3
    lines = logs.rest()
    task = cluster.wait_task(task_id)
    assert task["status"] == "succeeded" and task["attempt"] == 2
    assert [c["data"] for c in cluster.rpc("task.output", {"id": task_id, "attempt": 2})]
    assert lines == ["a1-1", "a1-2", "a1-3", "a2-1", "a2-2", "a2-3"]


def test_cli_logs_follow_prints_output_that_arrives_with_the_end(cluster, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import architect.cli.tasks as cli_tasks
    from architect.cli import main

    cluster.start_broker()
    cluster.start_worker("tail1", "-c", "1")
    cluster.wait_workers(1)
    gate = tmp_path / "go"
    task_id = cluster.submit(payload={"command": (
        f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo last")})
    wait_for(lambda: cluster.rpc("task.output", {"id": task_id}), 10, what="first output")
    real_call = cli_tasks.call
    state = {"streamed": False, "fired": False}

    def call(ctx, method, params=None):
        if method == "task.get" and state["streamed"] and not state["fired"]:
            # the task finishes between the CLI's task.output and task.get requests
            state["fired"] = True
            gate.touch()
            cluster.wait_task(task_id)
        result = real_call(ctx, method, params)
        if method == "task.output" and result:
            state["streamed"] = True
        return result

    monkeypatch.setattr(cli_tasks, "call", call)
    out = CliRunner().invoke(main, ["tasks", "logs", "-f", str(task_id)], env=cluster.env)
    assert state["fired"] and out.exit_code == 0, out.output
    assert out.output.split() == ["first", "last"]


def test_stopping_a_worker_requeues_its_running_tasks(cluster):
    """A graceful stop (SIGTERM): short tasks finish within the shutdown grace; longer ones
    are handed back and run elsewhere (attempt 2), not ended as cancelled."""
    cluster.start_broker()
    cluster.start_worker("stop1", "-c", "2", "--kill-grace", "0.5", "--shutdown-grace", "1.5")
    cluster.wait_workers(1)
    short = cluster.submit(payload={"command": "sleep 0.5; echo short"})
    long_ = cluster.submit(payload={"command": "sleep 4; echo done"})
    wait_for(lambda: all(cluster.rpc("task.get", {"id": t})["status"] == "running"
                         for t in (short, long_)), 10, what="both running on stop1")
    cluster.kill("worker-stop1", signal.SIGTERM)        # a graceful stop
    assert cluster.wait_task(short, 10)["assigned_node"] == "stop1"
    cluster.start_worker("stop2", "-c", "1")
    task = cluster.wait_task(long_, 30)
    assert task["status"] == "succeeded", (task["status"], task["error"])
    assert task["assigned_node"] == "stop2" and task["result"]["stdout"] == "done\n"
    assert task["attempt"] == 2
    events = cluster.rpc("task.get", {"id": long_, "events": True})["events"]
    handed_back = [e for e in events if e["event"] == "queued" and e["attempt"] == 1]
    assert handed_back and "stopped" in handed_back[0]["detail"]["reason"], events
