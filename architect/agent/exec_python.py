"""Run a `python` task: import "package.module:function", call it with args / kwargs, and check
that its return value survives the wire (msgpack, decoded with string-or-bytes map keys as the
bus codec does).

Limitation — Python threads cannot be killed:
- With a timeout, the function runs in a daemon helper thread while the caller watches the
  deadline and `cancel` (every POLL seconds). On either, the task is reported timed_out /
  cancelled at once and the helper thread is abandoned: it runs on, holding whatever it holds,
  until the function returns by itself; its result is dropped.
- With no timeout, the function runs in the caller's thread (near-zero overhead). Nothing can
  interrupt it then: a cancel takes effect when it returns, and the task is reported cancelled
  (its result dropped). Give python tasks a timeout if they may need stopping.

Soft time limit: with `soft_timeout` the function runs in the helper thread too, and at the
soft limit SoftTimeLimitExceeded is raised inside it (PyThreadState_SetAsyncExc, between two
bytecodes: a thread blocked in one long C call, such as a single socket read, sees it only
when that call returns). The function may catch it, clean up and return; the task then ends
timed_out, "soft time limit (Ns) reached", as a shell task that exits on its SIGTERM does. The
function can read its own soft deadline with soft_time_left().

Whatever the function prints is not captured (sys.stdout is process-wide); `stderr` carries the
traceback when it raises. `exit_code` is None for python tasks.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
import time
import traceback

import msgpack

POLL = 0.02  # seconds between checks of cancel and the deadline

CANCELLED = {"state": "cancelled", "error": "cancelled"}

_deadlines = threading.local()


class SoftTimeLimitExceeded(Exception):
    """Raised inside a python task at its soft time limit: clean up and return (or re-raise)."""


def soft_time_left() -> float | None:
    """Seconds until this python task's soft time limit (None: it has none). Call it from the
    task's function."""
    at = getattr(_deadlines, "soft_at", None)
    return None if at is None else max(0.0, at - time.monotonic())


def _raise_in(thread: threading.Thread, exc_type) -> bool:
    """Raise exc_type in `thread` at its next bytecode; False when it has already ended."""
    if thread.ident is None or not thread.is_alive():
        return False
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                      ctypes.py_object(exc_type))
    return done == 1


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0]}" if lines else name


def call(payload: dict, max_output: int) -> dict:
    """Import and call the function in this thread; a partial result dict."""
    module_name, _, name = payload["function"].partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
        if not callable(function):
            return {"state": "failed", "error": f"{payload['function']} is not callable"}
        # inputs: the results of the tasks it depends on, after its own args (workflows)
        value = function(*(payload.get("args") or ()), *(payload.get("inputs") or ()),
                         **(payload.get("kwargs") or {}))
    except (Exception, SystemExit) as exc:  # SystemExit too: sys.exit() must not end a worker
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
        cut = len(text) > max_output
        return {"state": "failed", "error": _one_line(exc),
                "stderr": text[-max_output:] if cut else text, "truncated": cut}
    try:
        msgpack.unpackb(msgpack.packb(value, use_bin_type=True), strict_map_key=True)
    except Exception as exc:  # TypeError, OverflowError, ValueError from strict_map_key
        return {"state": "failed",
                "error": f"result is not msgpack-serialisable: {_one_line(exc)}"}
    return {"state": "succeeded", "result": value}


def run(payload: dict, *, timeout: float | None, cancel: threading.Event, max_output: int,
        soft_timeout: float | None = None, **_ignored) -> dict:
    """Run one python task (payload already validated); a partial result dict."""
    if timeout is None and soft_timeout is None:
        out = call(payload, max_output)
        return CANCELLED if cancel.is_set() else out
    box: list[dict] = []
    done = threading.Event()
    started = time.monotonic()
    soft_at = None if soft_timeout is None else started + soft_timeout

    def target():
        _deadlines.soft_at = soft_at
        try:
            box.append(call(payload, max_output))
        except SoftTimeLimitExceeded:   # raised between call()'s own lines: still soft
            box.append({"state": "failed", "error": "SoftTimeLimitExceeded"})
        finally:
            _deadlines.soft_at = None
            done.set()

    deadline = None if timeout is None else started + timeout
    thread = threading.Thread(target=target, daemon=True,
                              name=f"python-task {payload['function']}")
    thread.start()
    soft_sent = False
    while True:
        now = time.monotonic()
        wake = [t for t in (deadline, None if soft_sent else soft_at) if t is not None]
        if done.wait(max(0.0, min([POLL] + [t - now for t in wake]))):
            break
        now = time.monotonic()
        if cancel.is_set():
            return CANCELLED
        if deadline is not None and now >= deadline:
            return {"state": "timed_out", "error": f"timed out after {timeout:g}s"}
        if soft_at is not None and not soft_sent and now >= soft_at:
            soft_sent = _raise_in(thread, SoftTimeLimitExceeded) or True
    out = box[0] if box else {"state": "failed", "error": "python task thread died"}
    if soft_sent:   # it stopped (or finished) after its soft limit: as a shell task does
        return {**out, "state": "timed_out",
                "error": f"soft time limit ({soft_timeout:g}s) reached"}
    return out
