"""OpenAPI 3 document built from the route table (routes.py) and the schemas here."""

from __future__ import annotations

import re

from architect import __version__
from architect.bus import protocol

STR, INT, NUM, BOOL = ({"type": "string"}, {"type": "integer"}, {"type": "number"},
                       {"type": "boolean"})
OBJ = {"type": "object"}
ARR = {"type": "array"}


def nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def obj(props: dict, required=()) -> dict:
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def listing(key: str, item: str) -> dict:
    return obj({key: {"type": "array", "items": ref(item)}, "count": INT}, (key, "count"))


SSH_STR = {"type": "string", "minLength": 1, "maxLength": 512, "nullable": True}
CAPS = {"type": "array", "maxItems": 64,
        "items": {"type": "string", "minLength": 1, "maxLength": 64}}
LEVEL = {"type": "string", "enum": list(protocol.LEVELS)}
STATE = {"type": "string", "enum": list(protocol.STATES)}
NOT_RESERVED = {"enum": list(protocol.RESERVED_NAMES)}  # node names that are API paths

WEB_ROLE = {"type": "string", "enum": ["viewer", "operator", "admin"]}
TTL = {"type": "number", "minimum": 1, "maximum": 366 * 86400}
RATE_PATTERN = "^([1-9][0-9]*(\\.[0-9]+)?|0\\.[0-9]*[1-9][0-9]*)/(s|sec|second|m|min|minute)$"
RULES = {"type": "array", "maxItems": 64, "items": {"oneOf": [
    {"type": "integer", "minimum": -255, "maximum": 255},
    {"type": "string", "minLength": 1, "maxLength": 200}]}}

SCHEMAS = {
    "Error": obj({"error": obj({"code": STR, "message": STR}, ("code", "message"))}, ("error",)),
    "Object": OBJ,
    "Node": obj({"id": INT, "name": STR, "hostname": STR, "ip_address": STR,
                 "capabilities": {"type": "array", "items": STR}, "status": LEVEL,
                 "reasons": {"type": "array", "items": STR}, "drained": BOOL,
                 "metrics": OBJ, "heartbeat_age": nullable(NUM), "registered_at": NUM,
                 "last_seen": NUM, "ssh": nullable(OBJ)},
                ("id", "name", "status", "capabilities", "drained")),
    "NodeList": listing("nodes", "Node"),
    "NodeRegistration": obj({"name": {"type": "string",
                                      "pattern": f"^{protocol.NODE_NAME_PATTERN}$",
                                      "not": NOT_RESERVED},
                             "hostname": nullable(STR), "ip_address": nullable(STR),
                             "capabilities": nullable(CAPS),
                             "ssh": nullable({**obj({"user": SSH_STR, "port": {
                                 "type": "integer", "minimum": 1, "maximum": 65535,
                                 "nullable": True},
                                 "key_file": SSH_STR, "host": SSH_STR}),
                                 "additionalProperties": False})}, ("name",)),
    "Removed": obj({"removed": STR, "id": INT}, ("removed",)),
    "NodeMetrics": obj({"node": STR, "range": STR, "window": NUM, "since": NUM, "until": NUM,
                        "resolution": {"type": "string", "enum": ["raw", "1m", "1h"]},
                        "bucket": NUM, "series": ARR | {"items": obj(
                            {"ts": NUM, "samples": INT,
                             **{f"{m}{s}": nullable(NUM) for m in (
                                 "cpu_percent", "memory_percent", "disk_percent", "load_1")
                                for s in ("", "_min", "_max")}}, ("ts", "samples"))},
                        "thresholds": OBJ, "heartbeat_age": nullable(NUM), "status": LEVEL},
                       ("node", "series", "resolution", "bucket")),
    "Health": obj({"counts": OBJ, "total": INT, "nodes": ARR | {"items": OBJ}, "thresholds": OBJ},
                  ("counts", "nodes")),
    "Alert": obj({"id": INT, "node_id": INT, "node_name": STR, "level": STR,
                  "previous_level": nullable(STR), "reasons": {"type": "array", "items": STR},
                  "message": STR, "status": STR, "created_at": NUM, "resolved_at": nullable(NUM),
                  "acknowledged_at": nullable(NUM), "acknowledged_by": nullable(STR)},
                 ("id", "level", "status")),
    "AlertList": listing("alerts", "Alert"),
    "Recommendations": obj({"recommendations": {"type": "array", "items": obj(
        {"node": STR, "score": NUM, "breakdown": OBJ, "can_run_now": BOOL,
         "reason": nullable(STR)})},
        "count": INT}, ("recommendations",)),
    "Distribution": obj({"nodes": OBJ, "totals": OBJ, "queued": INT}, ("nodes", "totals")),
    "TaskSubmission": obj({"task_type": {"type": "string", "minLength": 1, "maxLength": 64},
                           "payload": nullable(OBJ), "requirements": nullable(CAPS),
                           "timeout": nullable({"type": "number", "exclusiveMinimum": True,
                                                "minimum": 0, "maximum": 604800}),
                           "max_attempts": nullable({"type": "integer", "minimum": 1,
                                                     "maximum": 100}),
                           "retries": nullable({"type": "integer", "minimum": 0, "maximum": 100}),
                           "retry_backoff": nullable({"type": "number", "minimum": 0,
                                                      "maximum": 3600}),
                           "priority": nullable({"type": "integer", "minimum": -1000,
                                                 "maximum": 1000}),
                           "idempotency_key": nullable({"type": "string", "minLength": 1,
                                                        "maxLength": 200}),
                           "node": nullable({"type": "string", "minLength": 1}),
                           "run_at": nullable(NUM), "expires_at": nullable(NUM),
                           "countdown": nullable({"type": "number", "minimum": 0,
                                                  "maximum": 366 * 86400}),
                           "expires_in": nullable({"type": "number", "minimum": 0,
                                                   "maximum": 366 * 86400}),
                           "retry_on": nullable(RULES), "no_retry_on": nullable(RULES),
                           "depends_on": nullable({"type": "array", "maxItems": 1000,
                                                   "items": {"type": "integer", "minimum": 1}}),
                           "pass_results": nullable(BOOL),
                           "queue": nullable({"type": "string",
                                              "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"}),
                           "soft_timeout": nullable({"type": "number", "exclusiveMinimum": True,
                                                     "minimum": 0, "maximum": 604800}),
                           "labels": nullable({"type": "object", "maxProperties": 32,
                                               "additionalProperties": {"type": "string",
                                                                        "maxLength": 200}}),
                           "unique_key": nullable({"type": "string", "minLength": 1,
                                                   "maxLength": 200}),
                           "unique_for": nullable({"oneOf": [
                               {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                                "maximum": 366 * 86400},
                               {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[smhd]?$"}]})},
                          ("task_type",)),
    "AssignRequest": obj({"task_type": {"type": "string", "minLength": 1, "maxLength": 64},
                          "requirements": nullable(CAPS), "payload": nullable(OBJ)},
                         ("task_type",)),
    "Submitted": obj({"id": INT, "status": STATE, "created": BOOL, "unique": BOOL},
                     ("id", "status")),
    # POST /api/tasks takes one task or a JSON array of them (one commit for the batch)
    "TaskSubmissions": {"oneOf": [ref("TaskSubmission"), {
        "type": "array", "minItems": 1, "maxItems": 10000, "items": ref("TaskSubmission")}]},
    "SubmittedOrBatch": {"oneOf": [ref("Submitted"), obj({
        "tasks": {"type": "array", "items": {"oneOf": [ref("Submitted"), obj(
            {"error": obj({"code": STR, "message": STR}, ("code", "message"))},
            ("error",))]}},
        "count": INT, "created": INT, "rejected": INT}, ("tasks", "count"))]},
    "Task": obj({"id": INT, "task_type": STR, "status": STATE, "payload": OBJ, "attempt": INT,
                 "assigned_node": nullable(STR), "result": nullable(OBJ), "error": nullable(STR),
                 "placement": nullable(OBJ), "final": BOOL}, ("id", "status", "task_type")),
    "TaskList": listing("tasks", "Task"),
    "TaskGraph": obj({"nodes": ARR | {"items": obj({"id": INT, "status": nullable(STR),
                                                   "label": STR}, ("id",))},
                      "edges": ARR | {"items": obj({"source": INT, "target": INT},
                                                   ("source", "target"))},
                      "truncated": BOOL}, ("nodes", "edges")),
    "Retried": obj({"count": INT, "ids": {"type": "array", "items": INT}, "dry_run": BOOL},
                   ("count", "ids", "dry_run")),
    "RetryRequest": obj({"status": nullable({"type": "string", "enum": ["failed", "timed_out", "expired", None]}),
                         "since": nullable({"type": "number", "exclusiveMinimum": True,
                                            "minimum": 0, "maximum": 366 * 86400}),
                         "node": nullable(STR), "task_type": nullable(STR),
                         "queue": nullable(STR),
                         "limit": nullable({"type": "integer", "minimum": 1, "maximum": 10000}),
                         "dry_run": nullable(BOOL)}),
    "Schedule": obj({"name": STR, "when": STR, "cron": nullable(STR), "every": nullable(NUM),
                     "tz": STR, "missed": STR, "overlap": STR, "paused": BOOL, "spec": OBJ,
                     "next_due": nullable(NUM), "last_due": nullable(NUM),
                     "last_task": nullable(INT), "last_outcome": nullable(STR),
                     "last_task_status": nullable(STR), "created_by": nullable(STR)},
                    ("name", "when", "paused", "spec")),
    "ScheduleList": listing("schedules", "Schedule"),
    "Queue": obj({"name": STR, "queued": INT, "running": INT, "oldest_age": nullable(NUM),
                  "concurrency": nullable(INT), "rate": nullable(STR), "held": nullable(STR)},
                 ("name", "queued", "running")),
    "QueueList": listing("queues", "Queue"),
    "QueueLimits": obj({"name": STR, "concurrency": nullable(INT), "rate": nullable(STR)},
                       ("name",)),
    "QueueLimitsRequest": obj({"concurrency": nullable({"type": "integer", "minimum": 1,
                                                        "maximum": 1000000}),
                               "rate": nullable({"type": "string", "pattern": RATE_PATTERN})}),
    "ScheduleWithRuns": {"allOf": [ref("Schedule"), obj({"runs": {"type": "array", "items": obj(
        {"id": INT, "due": NUM, "at": NUM, "outcome": STR, "task_id": nullable(INT),
         "detail": nullable(STR), "task_status": nullable(STR)}, ("due", "outcome"))}},
        ("runs",))]},
    "ScheduleRemoved": obj({"name": STR, "removed": BOOL}, ("name", "removed")),
    "Backup": obj({"backup": STR, "bytes": INT, "integrity": STR, "seconds": NUM,
                   "pruned": {"type": "array", "items": STR}}, ("backup", "bytes", "integrity")),
    "BackupStatus": obj({"every": NUM, "keep_days": NUM, "set_at": NUM, "set_by": nullable(STR),
                         "last_at": nullable(NUM), "last": nullable(OBJ),
                         "next_due": nullable(NUM), "directory": STR, "backend": STR,
                         "running": nullable(OBJ)}, ("every", "keep_days", "directory")),
    "BackupScheduleRequest": obj({"every": {"oneOf": [
        {"type": "number", "enum": [0]},
        {"type": "number", "minimum": 60, "maximum": 366 * 86400},
        {"type": "string", "enum": ["off"]}]},
        "keep_days": nullable({"type": "number", "minimum": 0, "maximum": 36500})}, ("every",)),
    "ScheduleRun": obj({"name": STR, "task_id": INT}, ("name", "task_id")),
    "ScheduleRequest": {"allOf": [ref("TaskSubmission"), obj({
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"},
        "cron": nullable(STR), "every": nullable({"oneOf": [
            {"type": "number", "minimum": 1, "maximum": 366 * 86400},
            {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[smhd]?$"}]}),
        "tz": nullable(STR), "missed": nullable({"type": "string", "enum": ["skip", "once", None]}),
        "overlap": nullable({"type": "string", "enum": ["allow", "skip", None]}),
        "paused": nullable(BOOL)}, ("name",))]},
    "OutputList": obj({"output": ARR | {"items": OBJ}, "count": INT}, ("output",)),
    "Assignment": obj({"node": nullable(STR), "score": nullable(NUM), "breakdown": nullable(OBJ)},
                      ("node",)),
    "WorkerList": obj({"workers": ARR | {"items": OBJ}, "count": INT}, ("workers",)),
    "Topology": obj({"nodes": ARR | {"items": OBJ}, "edges": ARR | {"items": OBJ}},
                    ("nodes", "edges")),
    "Flow": obj({"links": ARR | {"items": obj({"source": STR, "target": STR, "value": INT})},
                 "states": OBJ, "nodes": {"type": "array", "items": STR}}, ("links", "states")),
    "Bus": obj({"heartbeat": STR, "work": STR, "control": STR, "events": STR,
                "server_key": nullable(STR)}, ("heartbeat", "work", "control", "events")),
    "SSHExecute": obj({"node_id": {"oneOf": [INT, STR]},
                       "command": {"type": "string", "minLength": 1},
                       "timeout": NUM}, ("node_id", "command")),
    "SSHBroadcastRequest": obj({"command": {"type": "string", "minLength": 1},
                                "nodes": {"type": "array", "items": {"oneOf": [INT, STR]}},
                                "requirements": {"type": "array", "items": STR}, "timeout": NUM},
                               ("command",)),
    "SSHTrust": obj({"node_id": {"oneOf": [INT, STR]}}, ("node_id",)),
    "SSHResult": obj({"node": nullable(STR), "target": nullable(STR), "exit_code": nullable(INT),
                      "stdout": STR, "stderr": STR, "truncated": BOOL, "duration": NUM,
                      "error": nullable(STR)}, ("exit_code", "stdout", "stderr", "error")),
    "SSHBroadcast": obj({"results": {"type": "array", "items": ref("SSHResult")}, "count": INT,
                         "ok": INT, "failed": INT, "duration": NUM}, ("results", "count")),
    "SSHPool": obj({"hosts": OBJ, "totals": OBJ, "max_connections_per_host": INT},
                   ("hosts", "totals")),
    "Cleanup": obj({"closed": INT}, ("closed",)),
    "AuditList": obj({"audit": ARR | {"items": OBJ}, "count": INT}, ("audit", "count")),
    "JoinRequest": obj({"name": {"type": "string", "minLength": 1, "maxLength": 128},
                        "public_key": {"type": "string", "minLength": 40, "maxLength": 40},
                        "token": nullable(STR)}, ("name", "public_key")),
    "JoinStatus": obj({"name": STR, "status": {"type": "string", "enum": ["authorized", "pending"]},
                       "role": nullable(STR), "token": STR}, ("name", "status")),
    "Keys": obj({"secured": BOOL, "authorized": {"type": "array", "items": STR},
                 "pending": {"type": "array", "items": STR}, "roles": OBJ}, ("secured",)),
    "KeyRoleRequest": obj({"role": {"type": "string",
                                    "enum": ["node", "viewer", "operator", "admin"]}}, ("role",)),
    "KeyRole": obj({"name": STR, "role": STR}, ("name", "role")),
    "JoinTokenRequest": obj({"ttl": nullable(TTL),
                             "uses": nullable({"type": "integer", "minimum": 1,
                                               "maximum": 100_000})}),
    "TokenCreate": obj({"role": WEB_ROLE,
                        "name": nullable({"type": "string", "maxLength": 64}),
                        "ttl": nullable(TTL)}),
    "Token": obj({"id": INT, "token": STR, "kind": STR, "role": STR, "name": nullable(STR),
                  "expires_at": nullable(NUM), "uses_left": nullable(INT)},
                 ("id", "token", "kind")),
    "TokenList": obj({"tokens": ARR | {"items": OBJ}, "count": INT}, ("tokens", "count")),
    "Me": obj({"user": STR, "role": STR, "how": STR}, ("user", "role")),
    "ControlAuditList": obj({"audit": ARR | {"items": OBJ}, "count": INT}, ("audit", "count")),
    "UserAdd": obj({"name": {"type": "string", "minLength": 1, "maxLength": 64,
                             "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.@-]*$"},
                    "role": WEB_ROLE, "password": {"type": "string", "minLength": 8,
                                                   "maxLength": 1024}},
                   ("name", "role", "password")),
    "UserChange": {**obj({"role": WEB_ROLE, "password": {"type": "string", "minLength": 8,
                                                         "maxLength": 1024}}),
                   "minProperties": 1},
    "User": obj({"name": STR, "role": STR}, ("name", "role")),
    "UserList": obj({"users": ARR | {"items": OBJ}, "count": INT}, ("users", "count")),
    "Healthz": obj({"status": STR, "broker": STR, "store": OBJ,
                    "role": {"type": "string", "enum": ["active", "standby"]},
                    "epoch": nullable(INT), "since": nullable(NUM), "master": OBJ},
                   ("status", "broker", "role")),
}
from architect.api.notify_schemas import SCHEMAS as _NOTIFY_SCHEMAS  # noqa: E402
SCHEMAS.update(_NOTIFY_SCHEMAS)   # notification channels, rules, deliveries, silences
from architect.api.views_alerts import SCHEMAS as _ALERT_SCHEMAS  # noqa: E402
SCHEMAS.update(_ALERT_SCHEMAS)    # node thresholds, custom alert rules
_DESCRIPTIONS = {200: "OK", 201: "Created", 202: "Accepted (pending)", 400: "Bad request",
                 409: "Conflict (e.g. the bus is not secured)", 401: "Authentication required",
                 403: "Forbidden: the role may not, or a cross-site request",
                 415: "The body must be application/json",
                 404: "Not found", 413: "Body too large", 429: "Too many failed logins",
                 502: "The broker refused the request", 503: "Broker or store unavailable",
                 500: "The master could not carry it out (e.g. a backup failed: disk full)"}


def _path(rule: str) -> tuple[str, list]:
    params = []

    def sub(m):
        conv, name = m.group(1), m.group(2)
        schema = {"type": "integer", "minimum": 0} if conv == "int" else \
            {"type": "string", "minLength": 1}
        if rule.startswith("/api/queues/") and name == "name":   # a queue name, as checked
            schema["pattern"] = "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
        if conv == "nodekey":  # /api/nodes/<key>: these names are other routes (and refused)
            schema["not"] = NOT_RESERVED
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"
    return re.sub(r"<(?:(\w+):)?(\w+)>", sub, rule), params


def _response(schema_name: str, status: int) -> dict:
    if schema_name == "Text":
        return {"description": _DESCRIPTIONS.get(status, "OK"),
                "content": {"text/plain": {"schema": STR}}}
    return {"description": _DESCRIPTIONS.get(status, "OK"),
            "content": {"application/json": {"schema": ref(schema_name)}}}


def spec(routes) -> dict:
    paths: dict = {}
    for route in routes:
        path, params = _path(route.rule)
        for method in route.methods:
            op = {"summary": route.summary, "tags": [route.tag],
                  "operationId": f"{method.lower()}_{route.view.__name__}",
                  "parameters": params + [{"name": n, "in": "query", "required": False,
                                           "schema": t if isinstance(t, dict) else {"type": t},
                                           "description": d}
                                          for n, t, d in route.query],
                  "responses": {str(route.status): _response(route.ok, route.status)}}
            for status in route.extra_ok:
                op["responses"][str(status)] = _response(route.ok, status)
            # 401/429: logins; 403: a role that may not (or a foreign Origin, a local user
            # who is not the owner); 415: a write whose body is not JSON (guard.py)
            errors = set(route.errors) | ({401, 403, 429} if route.auth else set())
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                errors |= {403, 415}
            for status in sorted(errors):
                # /healthz answers 503 with its own body (degraded), not the error shape
                schema = route.ok if (status == 503 and route.ok == "Healthz") else "Error"
                op["responses"][str(status)] = _response(schema, status)
            if route.auth:
                op["security"] = [{"basic": []}, {"bearer": []}, {}]
            if route.body:
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": ref(route.body)}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {"openapi": "3.0.3",
            "info": {"title": "Architect", "version": __version__,
                     "description": "Cluster manager REST API. Errors are "
                                    '{"error": {"code", "message"}}.'},
            "paths": paths,
            "components": {"schemas": SCHEMAS,
                           "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                               "bearer": {"type": "http", "scheme": "bearer"}}}}
