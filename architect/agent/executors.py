"""Task executors: check a task's payload, and run one task to the end.

    validate(task_type, payload) -> None          raises PayloadError naming the bad field
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

import keyword
import logging
import threading
import time

from architect.agent import exec_python, exec_shell

log = logging.getLogger(__name__)

TASK_TYPES = ("shell", "python")
STATES = ("succeeded", "failed", "timed_out", "cancelled")
RESULT_KEYS = ("state", "exit_code", "stdout", "stderr", "truncated", "result", "error",
               "duration")


class PayloadError(ValueError):
    """payload invalid for its task type; message names the field"""


def _string(payload: dict, field: str) -> None:
    value = payload[field]
    if not isinstance(value, str):
        raise PayloadError(f"{field} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise PayloadError(f"{field} must not be empty")
    if "\0" in value:
        raise PayloadError(f"{field} must not contain NUL characters")


def _validate_shell(payload: dict) -> None:
    has_command = payload.get("command") is not None
    has_argv = payload.get("argv") is not None
    if has_command == has_argv:
        raise PayloadError("shell payload needs exactly one of 'command' or 'argv'")
    if has_command:
        _string(payload, "command")
    else:
        argv = payload["argv"]
        if not isinstance(argv, (list, tuple)) or not argv:
            raise PayloadError("argv must be a non-empty list of strings")
        for i in range(len(argv)):
            if not isinstance(argv[i], str):
                raise PayloadError(f"argv[{i}] must be a string, got {type(argv[i]).__name__}")
            if "\0" in argv[i]:
                raise PayloadError(f"argv[{i}] must not contain NUL characters")
        if not argv[0]:
            raise PayloadError("argv[0] must not be empty")
    if payload.get("cwd") is not None:
        _string(payload, "cwd")
    env = payload.get("env")
    if env is not None:
        if not isinstance(env, dict):
            raise PayloadError(f"env must be a mapping of str to str, got {type(env).__name__}")
        for key, value in env.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                raise PayloadError(f"env key {key!r} must be a non-empty string without '='")
            if not isinstance(value, str):
                raise PayloadError(f"env[{key!r}] must be a string, got {type(value).__name__}")
            if "\0" in value:
                raise PayloadError(f"env[{key!r}] must not contain NUL characters")


def _identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _validate_python(payload: dict) -> None:
    function = payload.get("function")
    if not isinstance(function, str):
        raise PayloadError("function must be a string 'package.module:function'")
    module, colon, name = function.partition(":")
    if not (colon and _identifier(name) and all(map(_identifier, module.split(".")))):
        raise PayloadError(f"function must look like 'package.module:function', got {function!r}")
    args = payload.get("args")
    if args is not None and not isinstance(args, (list, tuple)):
        raise PayloadError(f"args must be a list, got {type(args).__name__}")
    kwargs = payload.get("kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise PayloadError(f"kwargs must be a mapping, got {type(kwargs).__name__}")
        for key in kwargs:
            if not isinstance(key, str):
                raise PayloadError(f"kwargs key {key!r} must be a string")


_VALIDATORS = {"shell": _validate_shell, "python": _validate_python}
_RUNNERS = {"shell": exec_shell.run, "python": exec_python.run}


def validate(task_type: str, payload: dict) -> None:
    """Raise PayloadError if the payload is not valid for the type (unknown type too)."""
    validator = _VALIDATORS.get(task_type) if isinstance(task_type, str) else None
    if validator is None:
        raise PayloadError(f"unknown task_type {task_type!r}; expected one of "
                           f"{', '.join(TASK_TYPES)}")
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a mapping, got {type(payload).__name__}")
    validator(payload)


def execute(task_type: str, payload: dict, *, timeout: float | None, cancel: threading.Event,
            on_output=None, max_output: int = 1_048_576, kill_grace: float = 5.0) -> dict:
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
                                      kill_grace=kill_grace)
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
