"""REST views: a node's own health thresholds and custom alert rules (docs/HEALTH.md), and
their OpenAPI schemas (openapi.py merges SCHEMAS). The broker checks the role: reads for
viewers, writes for admins."""

from __future__ import annotations

from flask import jsonify

from architect.api.errors import BadRequest
from architect.api.inputs import json_body
from architect.api.views_nodes import broker
from architect.broker.alert_rules import NODE_GLOB_RE, RULE_NAME_RE, SPEC_PATTERN

RULE_FIELDS = ("expr", "level", "node", "capability", "replace")


def get_thresholds(key):
    return jsonify(broker().call("node.thresholds", {"node": key}))


def set_thresholds(key):
    return jsonify(broker().call("node.set_thresholds", {"node": key,
                                                         "thresholds": json_body()}))


def list_rules():
    out = broker().call("alert_rule.list", {})
    return jsonify({"rules": out, "count": len(out)})


def add_rule():
    data = json_body()
    name = data.get("name")
    if not isinstance(name, str):
        raise BadRequest("field 'name' must be a string")
    params = {"name": name, **{k: data[k] for k in RULE_FIELDS if data.get(k) is not None}}
    if not isinstance(params.get("expr"), str):
        raise BadRequest("field 'expr' must be a string: METRIC OP NUMBER [for DURATION], "
                         "e.g. 'disk_percent > 70 for 10m'")
    return jsonify(broker().call("alert_rule.add", params)), 201


def remove_rule(name):
    return jsonify(broker().call("alert_rule.remove", {"name": name}))


# --- OpenAPI schemas ---------------------------------------------------------------------------
_STR, _NUM = {"type": "string"}, {"type": "number"}
_NULL_STR, _NULL_NUM = {"type": "string", "nullable": True}, {"type": "number", "nullable": True}
_PCT = {"type": "number", "minimum": 0, "maximum": 100, "nullable": True}
_LOAD = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "nullable": True}


def _pair(value: dict) -> dict:
    return {"type": "object", "nullable": True, "additionalProperties": False,
            "properties": {"warning": value, "critical": value}}


_LEVELS = {"type": "object", "properties": {m: {"type": "object", "properties": {
    "warning": _NUM, "critical": _NUM}} for m in ("cpu", "memory", "disk", "load")}}

SCHEMAS = {
    "NodeThresholds": {"type": "object", "required": ["node", "overrides", "thresholds"],
                       "properties": {"node": _STR, "overrides": {"type": "object"},
                                      "thresholds": _LEVELS, "defaults": _LEVELS,
                                      "updated_at": _NULL_NUM, "updated_by": _NULL_STR}},
    "NodeThresholdsRequest": {
        "type": "object", "additionalProperties": False,
        "description": "The node's overrides, replacing the old ones; a metric left out (or "
                       "null) grades with the default. Effective warning <= critical, "
                       "else 400.",
        "properties": {"cpu": _pair(_PCT), "memory": _pair(_PCT), "disk": _pair(_PCT),
                       "load": _pair(_LOAD)}},
    "AlertRule": {"type": "object", "required": ["name", "expr", "level", "firing"],
                  "properties": {"name": _STR, "expr": _STR, "level": _STR,
                                 "node": _NULL_STR, "capability": _NULL_STR,
                                 "metric": _STR, "op": _STR, "value": _NUM, "duration": _NUM,
                                 "created_at": _NULL_NUM, "created_by": _NULL_STR,
                                 "firing": {"type": "array", "items": _STR}}},
    "AlertRuleList": {"type": "object", "required": ["rules", "count"],
                      "properties": {"rules": {"type": "array",
                                               "items": {"$ref": "#/components/schemas/AlertRule"}},
                                     "count": {"type": "integer"}}},
    "AlertRuleRequest": {
        "type": "object", "required": ["name", "expr"],
        "properties": {
            "name": {"type": "string", "pattern": f"^{RULE_NAME_RE.pattern}$"},
            "expr": {"type": "string", "maxLength": 200, "pattern": SPEC_PATTERN,
                     "description": "METRIC OP NUMBER[UNIT] [for DURATION], e.g. "
                                    "'disk_percent > 70 for 10m' (docs/HEALTH.md)"},
            "level": {"type": "string", "enum": ["warning", "critical", None], "nullable": True},
            "node": {"type": "string", "pattern": f"^{NODE_GLOB_RE.pattern}$",
                     "nullable": True},
            "capability": {"type": "string", "pattern": "^[!-~]{1,64}$", "nullable": True},
            "replace": {"type": "boolean", "nullable": True}}},
    "AlertRuleRemoved": {"type": "object", "required": ["removed", "resolved"],
                         "properties": {"removed": _STR, "resolved": {"type": "integer"}}},
}
