"""Small python-task functions for tests, demos and benchmarks.

Submit them as `{"task_type": "python", "payload": {"function": "architect.agent.builtin_tasks:add",
"args": [2, 3]}}`. Each returns a msgpack-serialisable value.
"""

from __future__ import annotations

import time


def noop() -> None:
    """Do nothing (measures the executor's own overhead)."""
    return None


def echo(*args, **kwargs) -> dict:
    """Return the arguments it was called with."""
    return {"args": list(args), "kwargs": kwargs}


def sleep(seconds: float) -> float:
    """Sleep, then return the seconds slept (for timeout and cancel tests)."""
    time.sleep(seconds)
    return seconds


def fail(message: str = "boom") -> None:
    """Raise RuntimeError(message) (for failure paths)."""
    raise RuntimeError(message)


def add(a, b):
    """Return a + b."""
    return a + b


def total(*values):
    """Return the sum of its arguments (a chord's callback gets every result as one)."""
    return sum(values)
