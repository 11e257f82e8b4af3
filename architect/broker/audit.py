"""The audit of control requests: who asked for what, from where, and what came of it.

Every method that writes (methods.Method.writes) and every refused call leaves one row. Rows
are buffered here and go into the loop's next commit, which is durable because it holds a
write; replies are sent only after that commit, so a row is on disk before its reply.
Secrets never reach the row: passwords and tokens are replaced, big values cut short.
"""

from __future__ import annotations

from architect.broker.methods import Caller

SECRET_FIELDS = frozenset({"password", "token", "secret", "password_hash"})
MAX_VALUE = 500          # characters kept of one string value
MAX_ITEMS = 50           # items kept of one list or map
TARGET_FIELDS = ("node", "name", "id", "ids", "node_id", "nodes")


def redact(value, depth: int = 0):
    """A JSON-safe, bounded copy of request params without secrets."""
    if depth > 4:
        return "…"
    if isinstance(value, dict):
        out = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more"
                break
            key = str(k)[:64]
            out[key] = "[redacted]" if key.lower() in SECRET_FIELDS and v else redact(v, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        items = [redact(v, depth + 1) for v in value[:MAX_ITEMS]]
        return items + ([f"… {len(value) - MAX_ITEMS} more"] if len(value) > MAX_ITEMS else [])
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + f"… ({len(value)} chars)"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return repr(value)[:MAX_VALUE]


def target_of(params: dict) -> str | None:
    for name in TARGET_FIELDS:
        value = params.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)[:128]
        if isinstance(value, list) and value:
            return ",".join(str(v)[:32] for v in value[:10]) + ("…" if len(value) > 10 else "")
    return None


class AuditBook:
    def __init__(self):
        self.dirty: list[dict] = []

    def record(self, now: float, caller: Caller, method: str, params: dict, outcome: str,
               error: str | None = None) -> None:
        self.dirty.append({"ts": now, "who": caller.name, "role": caller.role,
                           "via": caller.via or None, "addr": caller.addr or None,
                           "method": method, "target": target_of(params),
                           "params": redact(params), "outcome": outcome,
                           "error": (error or "")[:500] or None})

    def take_dirty(self) -> list[dict]:
        rows, self.dirty = self.dirty, []
        return rows

    def put_back(self, rows: list[dict]) -> None:
        self.dirty = rows + self.dirty
