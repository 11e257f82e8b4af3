"""Task executors: validate() for every payload shape, shell tasks on real subprocesses
(timeouts, cancel, process-group kills, output caps, streaming), python tasks."""

from __future__ import annotations

import os
import sys
import threading
import time

import psutil
import pytest

from architect.agent import exec_shell
from architect.agent.executors import RESULT_KEYS, TASK_TYPES, PayloadError, execute, validate

BUILTIN = "architect.agent.builtin_tasks"


def run(task_type, payload, *, timeout=10.0, cancel=None, **kw):
    return execute(task_type, payload, timeout=timeout, cancel=cancel or threading.Event(), **kw)


def sh(command, **kw):
    return run("shell", {"command": command}, **kw)


def py(name, *args, timeout=None, **kwargs):
    return run("python", {"function": f"{BUILTIN}:{name}", "args": list(args), "kwargs": kwargs},
               timeout=timeout)


def cancel_after(seconds):
    event = threading.Event()
    timer = threading.Timer(seconds, event.set)
    timer.daemon = True
    timer.start()
    return event


def live_in_group(pgid):
    """Non-zombie processes whose process group is pgid."""
    out = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---------------------------------------------------------------------------- validate

VALID = [
    ("shell", {"command": "echo hi"}),
    ("shell", {"argv": ["echo", "hi"], "cwd": "/tmp", "env": {"A": "1"}}),
    ("shell", {"command": "true", "argv": None, "cwd": None, "env": None, "timeout": 3}),
    ("python", {"function": f"{BUILTIN}:noop"}),
    ("python", {"function": "os:getcwd", "args": [], "kwargs": {}}),
    ("python", {"function": "a.b_c.d1:_f", "args": (1, 2), "kwargs": {"x": {1: 2}}}),
]

INVALID = [
    ("docker", {"command": "ls"}, "unknown task_type 'docker'"),
    (None, {"command": "ls"}, "unknown task_type"),
    ("shell", ["ls"], "payload must be a mapping"),
    ("python", "os:getcwd", "payload must be a mapping"),
    ("shell", {}, "exactly one of 'command' or 'argv'"),
    ("shell", {"command": "ls", "argv": ["ls"]}, "exactly one of 'command' or 'argv'"),
    ("shell", {"command": 123}, "command must be a string"),
    ("shell", {"command": "   "}, "command must not be empty"),
    ("shell", {"command": "echo \0"}, "command must not contain NUL"),
    ("shell", {"argv": []}, "argv must be a non-empty list"),
    ("shell", {"argv": "ls -l"}, "argv must be a non-empty list"),
    ("shell", {"argv": ["ls", 1]}, r"argv\[1\] must be a string"),
    ("shell", {"argv": [""]}, r"argv\[0\] must not be empty"),
    ("shell", {"argv": ["ls", "a\0b"]}, r"argv\[1\] must not contain NUL"),
    ("shell", {"command": "ls", "cwd": 5}, "cwd must be a string"),
    ("shell", {"command": "ls", "cwd": ""}, "cwd must not be empty"),
    ("shell", {"command": "ls", "env": ["A=1"]}, "env must be a mapping"),
    ("shell", {"command": "ls", "env": {"A": 1}}, r"env\['A'\] must be a string"),
    ("shell", {"command": "ls", "env": {"A": None}}, r"env\['A'\] must be a string"),
    ("shell", {"command": "ls", "env": {1: "x"}}, "env key 1"),
    ("shell", {"command": "ls", "env": {"A=B": "x"}}, "env key 'A=B'"),
    ("python", {}, "function must be a string"),
    ("python", {"function": 7}, "function must be a string"),
    ("python", {"function": "os.path"}, "function must look like"),
    ("python", {"function": "os:"}, "function must look like"),
    ("python", {"function": ":getcwd"}, "function must look like"),
    ("python", {"function": "os:path:join"}, "function must look like"),
    ("python", {"function": "os..path:join"}, "function must look like"),
    ("python", {"function": "1os:getcwd"}, "function must look like"),
    ("python", {"function": "os:get-cwd"}, "function must look like"),
    ("python", {"function": "os: getcwd"}, "function must look like"),
    ("python", {"function": "os:class"}, "function must look like"),
    ("python", {"function": "os:getcwd", "args": "abc"}, "args must be a list"),
    ("python", {"function": "os:getcwd", "args": {"a": 1}}, "args must be a list"),
    ("python", {"function": "os:getcwd", "kwargs": [1]}, "kwargs must be a mapping"),
    ("python", {"function": "os:getcwd", "kwargs": {1: "a"}}, "kwargs key 1"),
]


@pytest.mark.parametrize("task_type,payload", VALID)
def test_validate_accepts(task_type, payload):
    validate(task_type, payload)


@pytest.mark.parametrize("task_type,payload,message", INVALID)
def test_validate_rejects_naming_the_field(task_type, payload, message):
    with pytest.raises(PayloadError, match=message):
        validate(task_type, payload)


def test_payload_error_is_a_value_error_and_execute_does_not_raise():
    assert issubclass(PayloadError, ValueError)
    assert TASK_TYPES == ("shell", "python")
    r = run("shell", {"argv": []})
    assert r["state"] == "failed" and r["error"].startswith("invalid payload: argv")
    assert set(r) == set(RESULT_KEYS)


# ---------------------------------------------------------------------------- shell

def test_shell_command_succeeds_with_every_key():
    r = sh("echo hello")
    assert set(r) == set(RESULT_KEYS)
    assert r["state"] == "succeeded" and r["exit_code"] == 0 and r["error"] is None
    assert r["stdout"] == "hello\n" and r["stderr"] == "" and r["truncated"] is False
    assert r["result"] is None and isinstance(r["duration"], float) and r["duration"] < 5


def test_shell_argv_is_not_split_by_a_shell():
    r = run("shell", {"argv": ["printf", "%s|", "a b", "$HOME"]})
    assert r["state"] == "succeeded" and r["stdout"] == "a b|$HOME|"


def test_stdout_and_stderr_are_captured_separately_and_nonzero_exit_fails():
    r = sh("echo out; echo err >&2; exit 3")
    assert r["stdout"] == "out\n" and r["stderr"] == "err\n"
    assert r["state"] == "failed" and r["exit_code"] == 3 and r["error"] == "exit code 3"


def test_killed_by_signal_has_negative_exit_code():
    r = sh("kill -9 $$")
    assert r["state"] == "failed" and r["exit_code"] == -9
    assert r["error"] == "killed by signal SIGKILL"


def test_invalid_utf8_is_replaced():
    r = sh(r"printf '\377ok'")
    assert r["stdout"] == "\ufffdok"


def test_env_is_merged_over_os_environ_and_cwd_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCH_TEST_INHERITED", "inherited")
    r = run("shell", {"command": 'echo "$ARCH_TEST_SET $ARCH_TEST_INHERITED"; pwd',
                      "env": {"ARCH_TEST_SET": "set"}, "cwd": str(tmp_path)})
    assert r["state"] == "succeeded"
    assert r["stdout"].splitlines() == ["set inherited", os.path.realpath(tmp_path)]


def test_missing_cwd_fails_with_a_clear_error(tmp_path):
    missing = str(tmp_path / "nope")
    r = run("shell", {"command": "true", "cwd": missing})
    assert r["state"] == "failed" and r["exit_code"] is None
    assert "cwd" in r["error"] and missing in r["error"]


def test_missing_executable_fails_with_a_clear_error():
    r = run("shell", {"argv": ["architect-no-such-program", "x"]})
    assert r["state"] == "failed" and r["exit_code"] is None
    assert r["error"] == "executable not found: 'architect-no-such-program'"
    r = sh("architect-no-such-program")  # through the shell: its usual 127
    assert r["state"] == "failed" and r["exit_code"] == 127 and r["stderr"]


def test_timeout_kills_the_whole_process_group():
    r = sh("echo $$; sleep 30 & echo $!; sleep 30; wait", timeout=0.5)  # default kill_grace
    assert r["state"] == "timed_out" and r["error"] == "timed out after 0.5s"
    assert r["exit_code"] == -15
    assert 0.5 <= r["duration"] < 3
    pgid, child = map(int, r["stdout"].split())
    assert wait_until(lambda: not live_in_group(pgid)), live_in_group(pgid)
    assert not alive(child)


def test_cancel_from_another_thread_stops_the_task():
    r = sh("sleep 30", timeout=None, cancel=cancel_after(0.3))
    assert r["state"] == "cancelled" and r["error"] == "cancelled"
    assert 0.3 <= r["duration"] < 2


def test_already_cancelled_task_does_not_start(tmp_path):
    event = threading.Event()
    event.set()
    r = run("shell", {"command": "touch started", "cwd": str(tmp_path)}, cancel=event)
    assert r["state"] == "cancelled" and r["exit_code"] is None
    assert not (tmp_path / "started").exists()


def test_sigterm_ignoring_process_is_sigkilled_after_kill_grace():
    r = sh("trap '' TERM; sleep 30", timeout=0.3, kill_grace=0.3)
    assert r["state"] == "timed_out" and r["exit_code"] == -9
    assert 0.55 <= r["duration"] < 3


def test_group_member_ignoring_sigterm_is_killed_after_the_leader_exits():
    # the shell dies on SIGTERM; its child ignores it and does not hold the pipes
    r = sh("(trap '' TERM; exec sleep 30) >/dev/null 2>&1 & echo $!; sleep 30",
           timeout=0.3, kill_grace=0.3)
    assert r["state"] == "timed_out" and r["exit_code"] == -15
    assert 0.55 <= r["duration"] < 3
    assert wait_until(lambda: not alive(int(r["stdout"])), timeout=0.5)


def test_process_that_closed_its_pipes_still_times_out():
    r = sh("exec >&- 2>&-; sleep 30", timeout=0.3)
    assert r["state"] == "timed_out" and r["duration"] < 3


def test_background_child_holding_the_pipes_does_not_hang():
    r = sh("sleep 30 & echo $!", timeout=20)
    assert r["state"] == "succeeded" and r["duration"] < 3
    child = int(r["stdout"])
    assert wait_until(lambda: not alive(child))


def test_50mb_of_output_is_capped_and_fast():
    r = sh("head -c 50000000 /dev/zero | tr '\\0' 'x'")
    assert r["state"] == "succeeded" and r["truncated"] is True
    assert r["stdout"] == "x" * 1_048_576
    assert r["duration"] < 10


def test_each_stream_is_capped_and_streaming_stops_at_the_cap():
    chunks = []
    r = sh("printf '%050d' 0 >&2; echo short", max_output=10,
           on_output=lambda name, text: chunks.append((name, text)))
    assert r["stderr"] == "0" * 10 and r["stdout"] == "short\n" and r["truncated"] is True
    assert "".join(t for n, t in chunks if n == "stderr") == "0" * 10
    assert "".join(t for n, t in chunks if n == "stdout") == "short\n"


def test_on_output_streams_chunks_in_order_while_running():
    calls = []
    r = sh("for i in 1 2 3 4 5; do echo line$i; sleep 0.1; done",
           on_output=lambda name, text: calls.append((time.monotonic(), name, text)))
    end = time.monotonic()
    assert r["state"] == "succeeded"
    assert "".join(text for _, _, text in calls) == r["stdout"] == "".join(
        f"line{i}\n" for i in range(1, 6))
    assert {name for _, name, _ in calls} == {"stdout"}
    assert len(calls) >= 3 and calls[0][0] < end - 0.3  # streamed, not all at the end


def test_on_output_is_batched_to_about_20_calls_a_second():
    counts = {"stdout": 0}
    code = "import time\nfor i in range(300):\n print(i, flush=True)\n time.sleep(0.002)"
    r = run("shell", {"argv": [sys.executable, "-c", code]},
            on_output=lambda name, text: counts.__setitem__(name, counts[name] + 1))
    assert r["state"] == "succeeded" and len(r["stdout"].split()) == 300
    assert 2 <= counts["stdout"] <= r["duration"] * 20 + 3


def test_failing_on_output_does_not_break_the_task():
    def boom(name, text):
        raise RuntimeError("callback bug")
    r = sh("echo a; sleep 0.1; echo b", on_output=boom)
    assert r["state"] == "succeeded" and r["stdout"] == "a\nb\n"


def test_group_alive_ignores_zombies_and_sees_live_members():
    import subprocess
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert exec_shell.group_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not exec_shell.group_alive(proc.pid)


# ---------------------------------------------------------------------------- python

def test_python_echo_and_add():
    r = py("echo", 1, "a", k=[1, 2])
    assert set(r) == set(RESULT_KEYS)
    assert r["state"] == "succeeded" and r["error"] is None and r["exit_code"] is None
    assert r["result"] == {"args": [1, "a"], "kwargs": {"k": [1, 2]}}
    assert py("add", 2, 3)["result"] == 5
    noop = py("noop")
    assert (noop["state"], noop["result"], noop["stdout"], noop["stderr"]) == (
        "succeeded", None, "", "")


def test_python_exception_fails_with_traceback_in_stderr():
    r = py("fail", message="bad thing")
    assert r["state"] == "failed" and r["error"] == "RuntimeError: bad thing"
    assert r["stderr"].startswith("Traceback") and "builtin_tasks.py" in r["stderr"]
    assert r["stderr"].rstrip().endswith("RuntimeError: bad thing") and r["result"] is None


def test_python_sys_exit_is_a_failure_not_an_exit():
    r = run("python", {"function": "sys:exit", "args": [3]}, timeout=None)
    assert r["state"] == "failed" and r["error"] == "SystemExit: 3"


def test_python_unknown_module_or_attribute_fails():
    r = run("python", {"function": "architect_no_such_module:f"}, timeout=None)
    assert r["state"] == "failed"
    assert r["error"] == "ModuleNotFoundError: No module named 'architect_no_such_module'"
    r = run("python", {"function": f"{BUILTIN}:no_such_function"}, timeout=None)
    assert r["state"] == "failed" and r["error"].startswith("AttributeError:")
    r = run("python", {"function": "os:sep"}, timeout=None)
    assert r["state"] == "failed" and "not callable" in r["error"]


@pytest.mark.parametrize("function,args", [("builtins:set", [[1, 2]]), ("builtins:object", []),
                                           ("builtins:dict", [[[1, "int key"]]])])
def test_python_result_must_be_msgpack_serialisable(function, args):
    r = run("python", {"function": function, "args": args}, timeout=None)
    assert r["state"] == "failed" and r["result"] is None
    assert r["error"].startswith("result is not msgpack-serialisable")


def test_python_with_timeout_runs_to_completion():
    r = py("add", 1, 2, timeout=5)
    assert r["state"] == "succeeded" and r["result"] == 3


def test_python_timeout_returns_at_once():
    r = py("sleep", 2, timeout=0.2)
    assert r["state"] == "timed_out" and r["error"] == "timed out after 0.2s"
    assert r["result"] is None and 0.2 <= r["duration"] < 1


def test_python_cancel_returns_at_once_with_a_timeout():
    r = run("python", {"function": f"{BUILTIN}:sleep", "args": [2]}, timeout=30,
            cancel=cancel_after(0.2))
    assert r["state"] == "cancelled" and r["error"] == "cancelled"
    assert 0.2 <= r["duration"] < 1


def test_python_without_timeout_reports_cancel_when_it_returns():
    r = run("python", {"function": f"{BUILTIN}:sleep", "args": [0.3]}, timeout=None,
            cancel=cancel_after(0.1))
    assert r["state"] == "cancelled" and r["result"] is None and r["duration"] >= 0.3


def test_python_noop_overhead_is_small():
    payload = {"function": f"{BUILTIN}:noop"}
    cancel = threading.Event()
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        execute("python", payload, timeout=None, cancel=cancel)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 200e-6, f"{per_call * 1e6:.1f} µs per call"


# --- the soft time limit of python tasks (functions this module's tasks call) ----------------
def busy_until_told():
    """Spins until its soft limit; then cleans up and says how much time it had."""
    from architect.agent.exec_python import SoftTimeLimitExceeded, soft_time_left
    had = soft_time_left()
    try:
        while True:
            sum(range(100))
    except SoftTimeLimitExceeded:
        return {"cleaned": True, "had": had}


def ignores_it():
    while True:
        sum(range(100))


def test_python_soft_limit_raises_in_the_task_which_cleans_up_and_ends_timed_out():
    r = run("python", {"function": f"{__name__}:busy_until_told"}, timeout=None,
            soft_timeout=0.3)
    assert r["state"] == "timed_out" and r["error"] == "soft time limit (0.3s) reached"
    assert r["result"]["cleaned"] is True and 0.2 < r["result"]["had"] <= 0.3
    assert 0.3 <= r["duration"] < 2


def test_python_soft_limit_unhandled_still_ends_timed_out_and_the_hard_one_still_holds():
    r = run("python", {"function": f"{BUILTIN}:sleep", "args": [2]}, timeout=None,
            soft_timeout=0.2)
    assert r["state"] == "timed_out" and "soft time limit (0.2s)" in r["error"]
    # one blocking C call (time.sleep(2)) sees the exception only when it returns
    assert "SoftTimeLimitExceeded" in r["stderr"] and 1.9 <= r["duration"] < 3
    r = run("python", {"function": f"{__name__}:ignores_it"}, timeout=0.6, soft_timeout=0.2)
    assert r["state"] == "timed_out" and r["duration"] < 1.5
    r = run("python", {"function": f"{BUILTIN}:add", "args": [1, 2]}, timeout=None,
            soft_timeout=5)
    assert r["state"] == "succeeded" and r["result"] == 3
