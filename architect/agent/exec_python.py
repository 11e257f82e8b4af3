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

Whatever the function prints is not captured (sys.stdout is process-wide); `stderr` carries the
traceback when it raises. `exit_code` is None for python tasks.
"""

from __future__ import annotations

import importlib
import threading
import time
import traceback

import msgpack

POLL = 0.02  # seconds between checks of cancel and the deadline

CANCELLED = {"state": "cancelled", "error": "cancelled"}


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
        **_ignored) -> dict:
    """Run one python task (payload already validated); a partial result dict."""
    if timeout is None:
        out = call(payload, max_output)
        return CANCELLED if cancel.is_set() else out
    box: list[dict] = []
    done = threading.Event()

    def target():
        try:
            box.append(call(payload, max_output))
        finally:
            done.set()

    deadline = time.monotonic() + timeout
    threading.Thread(target=target, daemon=True,
                     name=f"python-task {payload['function']}").start()
    while not done.wait(max(0.0, min(POLL, deadline - time.monotonic()))):
        if cancel.is_set():
            return CANCELLED
        if time.monotonic() >= deadline:
            return {"state": "timed_out", "error": f"timed out after {timeout:g}s"}
    return box[0] if box else {"state": "failed", "error": "python task thread died"}
