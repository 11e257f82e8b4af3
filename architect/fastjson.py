"""JSON text for the database's JSON columns: orjson (several times faster than json, which
matters at thousands of task rows a second), falling back to json for what orjson refuses
(integers beyond 64 bits). Either way json.loads reads it back; NaN and infinities become
null, as in every JSON the REST API sends."""

from __future__ import annotations

import json

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value) -> str:
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)
