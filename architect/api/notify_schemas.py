"""OpenAPI schemas of the notification routes (issue 14); openapi.py merges them."""

from __future__ import annotations

STR, INT, NUM, BOOL, OBJ = ({"type": "string"}, {"type": "integer"}, {"type": "number"},
                            {"type": "boolean"}, {"type": "object"})
NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"}
DURATION = {"oneOf": [{"type": "number", "minimum": 0, "maximum": 366 * 86400},
                      {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[smhd]?$"}]}
GLOB = {"type": "string", "minLength": 1, "maxLength": 200}
MATCH = {"type": "object", "maxProperties": 20,
         "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 200}}


def nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def obj(props: dict, required=(), extra: bool = True) -> dict:
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if not extra:
        out["additionalProperties"] = False
    return out


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def listing(key: str, item: str) -> dict:
    return obj({key: {"type": "array", "items": ref(item)}, "count": INT}, (key, "count"))


SCHEMAS = {
    "NotifyChannel": obj({"name": STR, "kind": {"type": "string",
                                                "enum": ["webhook", "email", "apprise"]},
                          "config": OBJ, "redacted": BOOL, "created_at": NUM,
                          "created_by": nullable(STR)}, ("name", "kind", "config")),
    "NotifyChannelList": listing("channels", "NotifyChannel"),
    "NotifyChannelRequest": obj({
        "name": NAME, "kind": {"type": "string", "enum": ["webhook", "email", "apprise"]},
        "replace": nullable(BOOL),
        "url": {"type": "string", "minLength": 1, "maxLength": 2000},
        "headers": nullable({"type": "object", "maxProperties": 20,
                             "additionalProperties": {"type": "string", "maxLength": 2000}}),
        "host": {"type": "string", "minLength": 1, "maxLength": 255},
        "port": nullable({"type": "integer", "minimum": 1, "maximum": 65535}),
        "from": {"type": "string", "minLength": 1, "maxLength": 400},
        "to": {"type": "array", "minItems": 1, "maxItems": 50, "items": STR},
        "starttls": nullable(BOOL), "ssl": nullable(BOOL),
        "username": nullable({"type": "string", "maxLength": 400}),
        "password": nullable({"type": "string", "maxLength": 400}),
        "timeout": nullable({"type": "number", "minimum": 0.1, "maximum": 120})},
        ("name", "kind"), extra=False),
    "NotifyRule": obj({"name": STR, "channels": {"type": "array", "items": STR},
                       "min_level": STR, "node": STR, "match": OBJ, "repeat_interval": NUM,
                       "send_resolved": BOOL, "created_at": NUM, "created_by": nullable(STR)},
                      ("name", "channels", "min_level")),
    "NotifyRuleList": listing("rules", "NotifyRule"),
    "NotifyRuleRequest": obj({
        "name": NAME, "channels": {"type": "array", "minItems": 1, "maxItems": 20,
                                   "items": STR},
        "min_level": nullable({"type": "string", "enum": ["warning", "critical", None]}),
        "node": nullable(GLOB), "match": nullable(MATCH), "repeat_interval": nullable(DURATION),
        "send_resolved": nullable(BOOL), "replace": nullable(BOOL)},
        ("name", "channels"), extra=False),
    "NotifyDelivery": obj({"id": INT, "delivery": INT, "attempt": INT, "channel": STR,
                           "kind": nullable(STR), "event": STR, "rule": nullable(STR),
                           "alert_id": nullable(INT), "node": nullable(STR),
                           "outcome": {"type": "string", "enum": ["sent", "failed", "silenced"]},
                           "error": nullable(STR), "detail": nullable(STR), "at": NUM,
                           "duration": nullable(NUM), "retry_at": nullable(NUM)},
                          ("id", "delivery", "attempt", "channel", "outcome", "at")),
    "NotifyDeliveryList": listing("deliveries", "NotifyDelivery"),
    "NotifyStatus": obj({"queued": INT, "in_flight": INT, "retrying": INT, "firing": INT,
                         "channels": INT, "rules": INT, "silences": INT, "counters": OBJ},
                        ("queued", "in_flight", "retrying")),
    "NotifyRemoved": obj({"name": STR, "removed": BOOL}, ("name", "removed")),
    "NotifyTest": obj({"name": STR, "delivery": INT}, ("name", "delivery")),
    "Silence": obj({"id": INT, "node": nullable(STR), "match": OBJ, "kind": STR,
                    "starts_at": NUM, "ends_at": nullable(NUM), "comment": STR,
                    "created_by": STR, "created_at": NUM, "active": BOOL,
                    "state": {"type": "string", "enum": ["active", "pending", "expired"]}},
                   ("id", "starts_at", "comment", "created_by", "active")),
    "SilenceList": listing("silences", "Silence"),
    "SilenceRequest": obj({"node": nullable(GLOB), "match": nullable(MATCH),
                           "duration": nullable(DURATION), "ends_at": nullable(NUM),
                           "starts_at": nullable(NUM),
                           "comment": {"type": "string", "minLength": 1, "maxLength": 500}},
                          ("comment",), extra=False),
    "MaintenanceRequest": obj({"on": BOOL, "duration": nullable(DURATION),
                               "comment": nullable({"type": "string", "maxLength": 500})},
                              ("on",), extra=False),
    "Maintenance": obj({"node": STR, "maintenance": BOOL, "drained": BOOL,
                        "silences": {"type": "array", "items": ref("Silence")}},
                       ("node", "maintenance", "drained", "silences")),
}
