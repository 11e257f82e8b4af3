"""Reading request input: JSON bodies and query parameters, with errors naming the field."""

from __future__ import annotations

import json

from flask import current_app, g, request

from architect.api.errors import BadRequest, TooLarge

_MISSING = object()
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
          list: "a list", dict: "an object"}


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def raw_body() -> bytes:
    """The body, read at most up to the size limit: 413 beyond it, with or without a
    Content-Length (a chunked body is counted as it is read)."""
    if "raw_body" not in g:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is None:
            # chunked: werkzeug's stream would stop quietly at the limit; count it ourselves
            data = request.environ["wsgi.input"].read(limit + 1)
        else:
            data = request.get_data(cache=False)
        if len(data) > limit:
            raise TooLarge(f"request body is over the {limit} byte limit")
        g.raw_body = data
    return g.raw_body


def json_body(arrays: bool = False) -> dict | list:
    """The request's JSON object (or, with `arrays`, a JSON array too); 400 when it is
    missing, not JSON, or neither."""
    raw = raw_body()
    wanted = "a JSON object or array" if arrays else "a JSON object"
    if not raw.strip():
        raise BadRequest(f"request body must be {wanted}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) and not (arrays and isinstance(data, list)):
        raise BadRequest(f"request body must be {wanted}")
    return data  # integers beyond 64 bits in what is forwarded: the gateway answers 400


def field(data: dict, name: str, kind, default=_MISSING):
    """data[name] checked against `kind` (type or tuple); None counts as absent."""
    value = data.get(name)
    if value is None:
        if default is _MISSING:
            raise BadRequest(f"field '{name}' is required")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise BadRequest(f"field '{name}' must be {' or '.join(_NAMES.get(k, k.__name__) for k in kinds)}")
    return value


def query_int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter '{name}' must be between {low} and {high}")
    return value


def query_flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes", "on")


def query_str(name: str, choices=None) -> str | None:
    value = request.args.get(name)
    if value == "" and choices is None:
        value = None
    if value is not None and choices is not None and value not in choices:
        raise BadRequest(f"query parameter '{name}' must be one of {', '.join(choices)}")
    return value


def query_list(name: str) -> list[str]:
    out = []
    for raw in request.args.getlist(name):
        out.extend(part.strip() for part in raw.split(",") if part.strip())
    return out


def path_id(value: int, what: str) -> int:
    """An <int:> path id; beyond 64 bits nothing can have it: 404."""
    if value > INT64_MAX:
        from architect.api.errors import NotFound
        raise NotFound(f"no {what} {value}")
    return value
