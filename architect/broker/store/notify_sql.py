"""The notification tables' SQL (migration m015), the same on SQLite and PostgreSQL, written
over BaseStore._fetch / _execmany in the backend's placeholder style (BaseStore.MARK).

Tables: notify_channels (by name; `config` JSON, secrets included: the database is the
master's), notify_rules (by name), silences (by id; an expired one keeps its row) and
notifications (one row per delivery attempt: sent, failed or silenced, why, when).
"""

from __future__ import annotations

import json

CHANNEL_COLUMNS = ("name", "kind", "config", "created_at", "created_by")
RULE_COLUMNS = ("name", "channels", "min_level", "node", "matchers", "repeat_interval",
                "send_resolved", "created_at", "created_by")
SILENCE_COLUMNS = ("id", "node", "matchers", "starts_at", "ends_at", "comment", "created_by",
                   "created_at", "kind")
ROW_COLUMNS = ("id", "delivery", "attempt", "channel", "kind", "event", "rule", "alert_id",
               "node", "outcome", "error", "detail", "at", "duration", "retry_at")
JSON_COLUMNS = {"config", "channels", "matchers"}
ATTR = {"matchers": "match"}      # column -> the attribute / key the broker uses


def _upsert(m: str, table: str, columns: tuple, key: str) -> str:
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join(m for _ in columns)}) ON CONFLICT ({key}) DO UPDATE SET {sets}")


def _encode(obj, columns: tuple) -> tuple:
    out = []
    for c in columns:
        a = ATTR.get(c, c)
        v = getattr(obj, a) if not isinstance(obj, dict) else obj.get(a)
        if c in JSON_COLUMNS:
            v = json.dumps(v)
        elif isinstance(v, bool):
            v = int(v)
        out.append(v)
    return tuple(out)


def _decode(row: tuple, columns: tuple) -> dict:
    out = dict(zip(columns, row))
    for c in JSON_COLUMNS & set(columns):
        out[c] = json.loads(out[c]) if out[c] else ({} if c != "channels" else [])
    return {ATTR.get(k, k): v for k, v in out.items()}


def load(st, now: float) -> dict:
    """Channels, rules, the silences not yet expired, and the highest ids so far."""
    m = st.MARK
    channels = [_decode(r, CHANNEL_COLUMNS) for r in st._fetch(
        f"SELECT {', '.join(CHANNEL_COLUMNS)} FROM notify_channels ORDER BY name")]
    rules = [_decode(r, RULE_COLUMNS) for r in st._fetch(
        f"SELECT {', '.join(RULE_COLUMNS)} FROM notify_rules ORDER BY name")]
    for r in rules:
        r["send_resolved"] = bool(r["send_resolved"])
    silences = [_decode(r, SILENCE_COLUMNS) for r in st._fetch(
        f"SELECT {', '.join(SILENCE_COLUMNS)} FROM silences WHERE ends_at IS NULL OR "
        f"ends_at > {m} ORDER BY id", (now,))]
    top = st._fetch("SELECT (SELECT COALESCE(MAX(id), 0) FROM silences), "
                    "(SELECT COALESCE(MAX(id), 0) FROM notifications), "
                    "(SELECT COALESCE(MAX(delivery), 0) FROM notifications)")[0]
    # deliveries whose last attempt failed with a retry to come (retries wait in memory:
    # a restarted broker takes them up again), at most a day old
    retries = [dict(zip(ROW_COLUMNS, r)) for r in st._fetch(
        f"SELECT {', '.join('n.' + c for c in ROW_COLUMNS)} FROM notifications n "
        f"WHERE n.retry_at IS NOT NULL AND n.retry_at > {m} AND n.attempt = "
        "(SELECT MAX(attempt) FROM notifications l WHERE l.delivery = n.delivery) "
        "ORDER BY n.retry_at LIMIT 10000", (now - 86400,))]
    return {"channels": channels, "rules": rules, "silences": silences, "retries": retries,
            "max_silence": int(top[0]), "max_row": int(top[1]), "max_delivery": int(top[2])}


def save(st, changes: dict) -> None:
    """Inside the caller's transaction: channels, rules (None: deleted), silences, rows."""
    m = st.MARK
    for table, key, columns, items in (
            ("notify_channels", "name", CHANNEL_COLUMNS, changes.get("channels", {})),
            ("notify_rules", "name", RULE_COLUMNS, changes.get("rules", {}))):
        gone = [(k,) for k, v in items.items() if v is None]
        if gone:
            st._execmany(f"DELETE FROM {table} WHERE {key} = {m}", gone)
        rows = [_encode(v, columns) for v in items.values() if v is not None]
        if rows:
            st._execmany(_upsert(m, table, columns, key), rows)
    silences = [_encode(s, SILENCE_COLUMNS) for s in changes.get("silences", {}).values()]
    if silences:
        st._execmany(_upsert(m, "silences", SILENCE_COLUMNS, "id"), silences)
    rows = [_encode(r, ROW_COLUMNS) for r in changes.get("rows", [])]
    if rows:
        st._execmany(f"INSERT INTO notifications ({', '.join(ROW_COLUMNS)}) VALUES "
                     f"({', '.join(m for _ in ROW_COLUMNS)})", rows)


def deliveries(st, channel=None, outcome=None, alert_id=None, delivery=None,
               limit: int = 100) -> list[dict]:
    """Attempt rows newest first, filtered."""
    m = st.MARK
    clauses, params = [], []
    for col, value in (("channel", channel), ("outcome", outcome), ("alert_id", alert_id),
                       ("delivery", delivery)):
        if value is not None:
            clauses.append(f"{col} = {m}")
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return [dict(zip(ROW_COLUMNS, r)) for r in st._fetch(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM notifications{where} ORDER BY id DESC "
        f"LIMIT {int(limit)}", params)]


def silences(st, limit: int = 200) -> list[dict]:
    """Every silence, expired ones too, newest first."""
    return [_decode(r, SILENCE_COLUMNS) for r in st._fetch(
        f"SELECT {', '.join(SILENCE_COLUMNS)} FROM silences ORDER BY id DESC "
        f"LIMIT {int(limit)}")]
