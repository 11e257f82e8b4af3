"""Built-in task types and their payload check, shared by both sides: the broker refuses a
bad payload at submit, the worker checks it again before it runs (agent/executors.py).

    validate(task_type, payload) -> None          raises PayloadError naming the bad field

Payloads (keys set to None count as absent; unknown keys are ignored):

    shell   command: str, run by /bin/sh -c   XOR   argv: non-empty list of str
            cwd: str   env: {str: str}, merged over os.environ
    python  function: "package.module:function"   args: list   kwargs: {str: any}

Pure: no I/O, no imports from the broker or the agent.
"""

from __future__ import annotations

import keyword

TASK_TYPES = ("shell", "python")


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


def validate(task_type: str, payload: dict) -> None:
    """Raise PayloadError if the payload is not valid for the type (unknown type too)."""
    validator = _VALIDATORS.get(task_type) if isinstance(task_type, str) else None
    if validator is None:
        raise PayloadError(f"unknown task_type {task_type!r}; expected one of "
                           f"{', '.join(TASK_TYPES)}")
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a mapping, got {type(payload).__name__}")
    validator(payload)
