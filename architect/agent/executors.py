"""Task executors: check a task's payload, and run one task to the end.

    validate(task_type, payload) -> None          raises PayloadError naming the bad field
                                                  (defined in architect.tasktypes)
    execute(task_type, payload, *, timeout, cancel, on_output=None,
            max_output=1_048_576, kill_grace=5.0) -> result dict

The task worker calls `execute` from a worker thread, one call per task. It never raises for a
task failure: a bad payload, a command that cannot start, a non-zero exit, an exception in a
python function all come back as `state="failed"` with a one-line `error`. The result dict
always has every key of RESULT_KEYS:

    state      "succeeded" | "failed" | "timed_out" | "cancelled"
    exit_code  int (negative: killed by that signal) or None (python tasks; never started)
    stdout     str      stderr  str (python: the traceback when the function raised)
    truncated  bool     True when stdout or stderr was cut at max_output
    result     the python function's return value, else None
    error      one line ("exit code 3", "timed out after 2s", "cancelled", "RuntimeError: boom")
               or None when the task succeeded
    duration   float seconds spent in execute

Payloads (keys set to None count as absent; unknown keys are ignored — a task's timeout belongs
to the task and comes in as the `timeout` argument):

    shell   command: str, run by /bin/sh -c   XOR   argv: non-empty list of str
            cwd: str   env: {str: str}, merged over os.environ          (see exec_shell)
    python  function: "package.module:function"   args: list   kwargs: {str: any}
                                                                         (see exec_python)

A task whose `cancel` event is already set when `execute` is called does not start at all.
"""

from __future__ import annotations

import logging
import threading
import time

from architect.agent import exec_python, exec_shell
from architect.bus.protocol import FINAL_STATES as STATES  # noqa: F401  (a result's state)
from architect.tasktypes import TASK_TYPES, PayloadError, validate  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

RESULT_KEYS = ("state", "exit_code", "stdout", "stderr", "truncated", "result", "error",
               "duration")
_RUNNERS = {"shell": exec_shell.run, "python": exec_python.run}


def execute(task_type: str, payload: dict, *, timeout: float | None, cancel: threading.Event,
            on_output=None, max_output: int = 1_048_576, kill_grace: float = 5.0,
            soft_timeout: float | None = None) -> dict:
    """Run one task to the end and return its result dict. Never raises for task failures.

    `on_output(stream_name, text)` is called from this thread with batches of shell output
    ("stdout" / "stderr"), at most ~20 times a second per stream. `max_output` bytes of each
    stream are kept (and streamed); the rest is read and dropped. `kill_grace` is the time
    between SIGTERM and SIGKILL for a shell task's process group on timeout or cancel.
    """
    started = time.perf_counter()
    try:
        validate(task_type, payload)
        if cancel.is_set():
            out = {"state": "cancelled", "error": "cancelled"}
        else:
            out = _RUNNERS[task_type](payload, timeout=timeout, cancel=cancel,
                                      on_output=on_output, max_output=max_output,
                                      kill_grace=kill_grace, soft_timeout=soft_timeout)
    except PayloadError as exc:
        out = {"state": "failed", "error": f"invalid payload: {exc}"}
    except Exception as exc:  # a bug here must not kill the worker thread
        log.exception("executor error in %s task", task_type)
        out = {"state": "failed", "error": f"executor error: {type(exc).__name__}: {exc}"}
    result = {"state": "failed", "exit_code": None, "stdout": "", "stderr": "",
              "truncated": False, "result": None, "error": None}
    result.update(out)
    result["duration"] = time.perf_counter() - started
    return result
