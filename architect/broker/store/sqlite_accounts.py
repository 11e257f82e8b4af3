"""SQLite store methods for web users, API and join tokens, and the control-request audit.

Users and tokens change rarely and are written at once, each in its own durable
transaction, by the broker loop thread (the handler commits before it answers). Audit rows
are batched into the loop's group commit, which is durable whenever it holds one.
Readers (the web server) use read-only connections: see architect/api/accounts.py.
"""

from __future__ import annotations

import json
from typing import Iterable

from architect.broker.store.base import AUDIT_LOG_COLUMNS, TOKEN_COLUMNS


class AccountStore:
    """Mixed into sqlite.Store (contracts: base.BaseStore)."""
    conn: object
    db: object

    # --- users ----------------------------------------------------------------------
    def user(self, name: str) -> dict | None:
        rows = list(self.db["users"].rows_where("name = ?", [name]))
        return rows[0] if rows else None

    def users(self) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "password_hash"}
                for r in self.db["users"].rows_where(order_by="name")]

    def save_user(self, row: dict) -> None:
        with self.transaction(durable=True):
            self.db["users"].upsert(row, pk="name")

    def delete_user(self, name: str) -> bool:
        with self.transaction(durable=True):
            return self.conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    # --- tokens ----------------------------------------------------------------------
    def add_token(self, row: dict) -> int:
        with self.transaction(durable=True):
            cur = self.conn.execute(
                f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS[1:])}) "
                f"VALUES ({', '.join('?' for _ in TOKEN_COLUMNS[1:])})",
                tuple(row.get(c) for c in TOKEN_COLUMNS[1:]))
            return cur.lastrowid

    def token_by_hash(self, token_hash: str) -> dict | None:
        rows = list(self.db["tokens"].rows_where("token_hash = ?", [token_hash]))
        return rows[0] if rows else None

    def tokens(self, kind: str | None = None) -> list[dict]:
        where, params = ("kind = ?", [kind]) if kind else (None, [])
        return [{k: v for k, v in r.items() if k != "token_hash"}
                for r in self.db["tokens"].rows_where(where, params, order_by="id")]

    def use_token(self, token_id: int, now: float) -> None:
        """One use of a token: counted; a limited one loses a use."""
        with self.transaction(durable=True):
            self.conn.execute(
                "UPDATE tokens SET used_count = COALESCE(used_count, 0) + 1, last_used_at = ?, "
                "uses_left = CASE WHEN uses_left IS NULL THEN NULL ELSE uses_left - 1 END "
                "WHERE id = ?", (now, token_id))

    def revoke_token(self, token_id: int, now: float) -> bool:
        with self.transaction(durable=True):
            return self.conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id)).rowcount > 0

    # --- audit -------------------------------------------------------------------------
    def insert_audit_log(self, rows: Iterable[dict]) -> None:
        self.conn.executemany(
            f"INSERT INTO audit ({', '.join(AUDIT_LOG_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in AUDIT_LOG_COLUMNS)})",
            [tuple(json.dumps(r[c]) if c == "params" and r.get(c) is not None else r.get(c)
                   for c in AUDIT_LOG_COLUMNS) for r in rows])

    def audit_log(self, since: float | None = None, who: str | None = None,
                  method: str | None = None, limit: int = 100) -> list[dict]:
        clauses, params = [], []
        for clause, value in (("ts >= ?", since), ("who = ?", who), ("method = ?", method)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = self.db["audit"].rows_where(" AND ".join(clauses) or None, params,
                                           order_by="id DESC", limit=limit)
        out = []
        for row in rows:
            row["params"] = json.loads(row["params"]) if row.get("params") else None
            out.append(row)
        return out

    def purge_audit(self, before: float, limit: int = 50_000) -> int:
        return self.conn.execute(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE ts < ? LIMIT ?)",
            (before, limit)).rowcount
