"""Validation of control-request params. Errors carry a code the client can act on."""

from __future__ import annotations


class RequestError(Exception):
    """A request the broker refuses; `code` goes on the wire."""
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class NotFound(RequestError):
    code = "not_found"


class Unavailable(RequestError):
    code = "unavailable"


_MISSING = object()
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def get(params: dict, name: str, kind, default=_MISSING, *, allow_none: bool = False):
    """params[name] checked against `kind` (a type or tuple); default when absent."""
    if name not in params or (params[name] is None and default is not _MISSING):
        if default is _MISSING:
            raise RequestError(f"missing parameter '{name}'")
        return default
    value = params[name]
    if value is None and allow_none:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise RequestError(f"parameter '{name}' must be {_names(kinds)}, got a boolean")
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise RequestError(f"parameter '{name}' is out of range")
    if float in kinds and isinstance(value, int):
        return value
    if not isinstance(value, kinds):
        raise RequestError(f"parameter '{name}' must be {_names(kinds)}, "
                           f"got {type(value).__name__}")
    return value


def _names(kinds: tuple) -> str:
    words = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "an object"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


class Deferred:
    """A handler's answer when the reply comes later (task.wait, SSH): the broker keeps the
    request's reply token (ctx.token, ctx.req_id) and answers through take_deferred()."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = Deferred()
