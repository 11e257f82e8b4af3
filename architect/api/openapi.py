"""OpenAPI 3 document built from the route table (routes.py) and the schemas here."""

from __future__ import annotations

import re

from architect import __version__

S, I, N, B = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
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
    return obj({key: {"type": "array", "items": ref(item)}, "count": I}, (key, "count"))


SSH_STR = {"type": "string", "minLength": 1, "maxLength": 512, "nullable": True}
CAPS = {"type": "array", "maxItems": 64,
        "items": {"type": "string", "minLength": 1, "maxLength": 64}}
LEVEL = {"type": "string", "enum": ["healthy", "warning", "critical", "offline"]}
STATE = {"type": "string", "enum": ["queued", "assigned", "running", "succeeded", "failed",
                                    "timed_out", "cancelled"]}

WEB_ROLE = {"type": "string", "enum": ["viewer", "operator", "admin"]}
TTL = {"type": "number", "minimum": 1, "maximum": 366 * 86400}

SCHEMAS = {
    "Error": obj({"error": obj({"code": S, "message": S}, ("code", "message"))}, ("error",)),
    "Object": OBJ,
    "Node": obj({"id": I, "name": S, "hostname": S, "ip_address": S,
                 "capabilities": {"type": "array", "items": S}, "status": LEVEL,
                 "reasons": {"type": "array", "items": S}, "drained": B,
                 "metrics": OBJ, "heartbeat_age": nullable(N), "registered_at": N,
                 "last_seen": N, "ssh": nullable(OBJ)},
                ("id", "name", "status", "capabilities", "drained")),
    "NodeList": listing("nodes", "Node"),
    "NodeRegistration": obj({"name": {"type": "string",
                                      "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$",
                                      "not": {"enum": ["health", "alerts", "recommend",
                                                       "distribution"]}},
                             "hostname": nullable(S), "ip_address": nullable(S),
                             "capabilities": nullable(CAPS),
                             "ssh": nullable({**obj({"user": SSH_STR, "port": {
                                 "type": "integer", "minimum": 1, "maximum": 65535,
                                 "nullable": True},
                                 "key_file": SSH_STR, "host": SSH_STR}),
                                 "additionalProperties": False})}, ("name",)),
    "Removed": obj({"removed": S, "id": I}, ("removed",)),
    "Health": obj({"counts": OBJ, "total": I, "nodes": ARR | {"items": OBJ}, "thresholds": OBJ},
                  ("counts", "nodes")),
    "Alert": obj({"id": I, "node_id": I, "node_name": S, "level": S, "previous_level": nullable(S),
                  "reasons": {"type": "array", "items": S}, "message": S, "status": S,
                  "created_at": N, "resolved_at": nullable(N), "acknowledged_at": nullable(N),
                  "acknowledged_by": nullable(S)}, ("id", "level", "status")),
    "AlertList": listing("alerts", "Alert"),
    "Recommendations": obj({"recommendations": {"type": "array", "items": obj(
        {"node": S, "score": N, "breakdown": OBJ, "can_run_now": B, "reason": nullable(S)})},
        "count": I}, ("recommendations",)),
    "Distribution": obj({"nodes": OBJ, "totals": OBJ, "queued": I}, ("nodes", "totals")),
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
                           "node": nullable({"type": "string", "minLength": 1})},
                          ("task_type",)),
    "AssignRequest": obj({"task_type": {"type": "string", "minLength": 1, "maxLength": 64},
                          "requirements": nullable(CAPS), "payload": nullable(OBJ)},
                         ("task_type",)),
    "Submitted": obj({"id": I, "status": STATE, "created": B}, ("id", "status")),
    "Task": obj({"id": I, "task_type": S, "status": STATE, "payload": OBJ, "attempt": I,
                 "assigned_node": nullable(S), "result": nullable(OBJ), "error": nullable(S),
                 "placement": nullable(OBJ), "final": B}, ("id", "status", "task_type")),
    "TaskList": listing("tasks", "Task"),
    "OutputList": obj({"output": ARR | {"items": OBJ}, "count": I}, ("output",)),
    "Assignment": obj({"node": nullable(S), "score": nullable(N), "breakdown": nullable(OBJ)},
                      ("node",)),
    "WorkerList": obj({"workers": ARR | {"items": OBJ}, "count": I}, ("workers",)),
    "Topology": obj({"nodes": ARR | {"items": OBJ}, "edges": ARR | {"items": OBJ}},
                    ("nodes", "edges")),
    "Flow": obj({"links": ARR | {"items": obj({"source": S, "target": S, "value": I})},
                 "states": OBJ, "nodes": {"type": "array", "items": S}}, ("links", "states")),
    "Bus": obj({"heartbeat": S, "work": S, "control": S, "events": S,
                "server_key": nullable(S)}, ("heartbeat", "work", "control", "events")),
    "SSHExecute": obj({"node_id": {"oneOf": [I, S]}, "command": {"type": "string", "minLength": 1},
                       "timeout": N}, ("node_id", "command")),
    "SSHBroadcastRequest": obj({"command": {"type": "string", "minLength": 1},
                                "nodes": {"type": "array", "items": {"oneOf": [I, S]}},
                                "requirements": {"type": "array", "items": S}, "timeout": N},
                               ("command",)),
    "SSHTrust": obj({"node_id": {"oneOf": [I, S]}}, ("node_id",)),
    "SSHResult": obj({"node": nullable(S), "target": nullable(S), "exit_code": nullable(I),
                      "stdout": S, "stderr": S, "truncated": B, "duration": N,
                      "error": nullable(S)}, ("exit_code", "stdout", "stderr", "error")),
    "SSHBroadcast": obj({"results": {"type": "array", "items": ref("SSHResult")}, "count": I,
                         "ok": I, "failed": I, "duration": N}, ("results", "count")),
    "SSHPool": obj({"hosts": OBJ, "totals": OBJ, "max_connections_per_host": I},
                   ("hosts", "totals")),
    "Cleanup": obj({"closed": I}, ("closed",)),
    "AuditList": obj({"audit": ARR | {"items": OBJ}, "count": I}, ("audit", "count")),
    "JoinRequest": obj({"name": {"type": "string", "minLength": 1, "maxLength": 128},
                        "public_key": {"type": "string", "minLength": 40, "maxLength": 40},
                        "token": nullable(S)}, ("name", "public_key")),
    "JoinStatus": obj({"name": S, "status": {"type": "string", "enum": ["authorized", "pending"]},
                       "role": nullable(S), "token": S}, ("name", "status")),
    "Keys": obj({"secured": B, "authorized": {"type": "array", "items": S},
                 "pending": {"type": "array", "items": S}, "roles": OBJ}, ("secured",)),
    "KeyRoleRequest": obj({"role": {"type": "string",
                                    "enum": ["node", "viewer", "operator", "admin"]}}, ("role",)),
    "KeyRole": obj({"name": S, "role": S}, ("name", "role")),
    "JoinTokenRequest": obj({"ttl": nullable(TTL),
                             "uses": nullable({"type": "integer", "minimum": 1,
                                               "maximum": 100_000})}),
    "TokenCreate": obj({"role": WEB_ROLE,
                        "name": nullable({"type": "string", "maxLength": 64}),
                        "ttl": nullable(TTL)}),
    "Token": obj({"id": I, "token": S, "kind": S, "role": S, "name": nullable(S),
                  "expires_at": nullable(N), "uses_left": nullable(I)}, ("id", "token", "kind")),
    "TokenList": obj({"tokens": ARR | {"items": OBJ}, "count": I}, ("tokens", "count")),
    "Me": obj({"user": S, "role": S, "how": S}, ("user", "role")),
    "ControlAuditList": obj({"audit": ARR | {"items": OBJ}, "count": I}, ("audit", "count")),
    "UserAdd": obj({"name": {"type": "string", "minLength": 1, "maxLength": 64,
                             "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.@-]*$"},
                    "role": WEB_ROLE, "password": {"type": "string", "minLength": 8,
                                                   "maxLength": 1024}},
                   ("name", "role", "password")),
    "UserChange": {**obj({"role": WEB_ROLE, "password": {"type": "string", "minLength": 8,
                                                         "maxLength": 1024}}),
                   "minProperties": 1},
    "User": obj({"name": S, "role": S}, ("name", "role")),
    "UserList": obj({"users": ARR | {"items": OBJ}, "count": I}, ("users", "count")),
    "Healthz": obj({"status": S, "broker": S, "store": OBJ}, ("status", "broker")),
}
_DESCRIPTIONS = {200: "OK", 201: "Created", 202: "Accepted (pending)", 400: "Bad request",
                 409: "Conflict (e.g. the bus is not secured)", 401: "Authentication required",
                 403: "Forbidden: the role may not, or a cross-site request",
                 415: "The body must be application/json",
                 404: "Not found", 413: "Body too large", 429: "Too many failed logins",
                 502: "The broker refused the request", 503: "Broker or store unavailable"}


def _path(rule: str) -> tuple[str, list]:
    params = []

    def sub(m):
        conv, name = m.group(1), m.group(2)
        schema = {"type": "integer", "minimum": 0} if conv == "int" else \
            {"type": "string", "minLength": 1}
        if conv == "nodekey":  # /api/nodes/<key>: these names are other routes (and refused)
            schema["not"] = {"enum": ["health", "alerts", "recommend", "distribution"]}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"
    return re.sub(r"<(?:(\w+):)?(\w+)>", sub, rule), params


def _response(schema_name: str, status: int) -> dict:
    if schema_name == "Text":
        return {"description": _DESCRIPTIONS.get(status, "OK"),
                "content": {"text/plain": {"schema": S}}}
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
