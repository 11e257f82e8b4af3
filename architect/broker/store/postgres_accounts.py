"""PostgreSQL store methods for web users, API and join tokens, and the control-request
audit (the SQLite twin: sqlite_accounts.py). Users and tokens are written at once, each in
its own durable transaction (joining the caller's when there is one); audit rows go into
the loop's group commit.
"""

from __future__ import annotations

import json
from typing import Iterable

from psycopg.rows import tuple_row

from architect.broker.store.base import AUDIT_LOG_COLUMNS, TOKEN_COLUMNS

USER_COLUMNS = ("name", "role", "password_hash", "created_at", "updated_at", "created_by")
_TOKEN_INSERT = (f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS[1:])}) "
                 f"VALUES ({', '.join('%s' for _ in TOKEN_COLUMNS[1:])}) RETURNING id")
_AUDIT_COLUMNS = tuple(c for c in AUDIT_LOG_COLUMNS if c != "id")   # id: BIGSERIAL
_AUDIT_INSERT = (f"INSERT INTO audit ({', '.join(_AUDIT_COLUMNS)}) "
                 f"VALUES ({', '.join('%s' for _ in _AUDIT_COLUMNS)})")


class AccountStore:
    """Mixed into postgres.Store (contracts: base.BaseStore)."""

    # --- users ----------------------------------------------------------------------
    def user(self, name: str) -> dict | None:
        rows = self._query("SELECT * FROM users WHERE name = %s", (name,))
        return rows[0] if rows else None

    def users(self) -> list[dict]:
        return self._query(f"SELECT {', '.join(c for c in USER_COLUMNS if c != 'password_hash')}"
                           " FROM users ORDER BY name")

    def save_user(self, row: dict) -> None:
        """Insert, or update the columns given (like sqlite-utils' upsert)."""
        from architect.broker.store.postgres import _row
        cols = [c for c in USER_COLUMNS if c in row]
        unknown = set(row) - set(USER_COLUMNS)
        if "name" not in row or unknown:
            raise ValueError(f"a users row needs a name and only {USER_COLUMNS}: {sorted(unknown)}")
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "name")
        sql = (f"INSERT INTO users ({', '.join(cols)}) VALUES ({', '.join('%s' for _ in cols)}) "
               f"ON CONFLICT (name) DO {'UPDATE SET ' + sets if sets else 'NOTHING'}")
        with self.transaction(durable=True):
            self._query(sql, _row(row[c] for c in cols))

    def delete_user(self, name: str) -> bool:
        with self.transaction(durable=True):
            return self._query("DELETE FROM users WHERE name = %s", (name,)) > 0

    # --- tokens ----------------------------------------------------------------------
    def add_token(self, row: dict) -> int:
        from architect.broker.store.postgres import _row
        with self.transaction(durable=True):
            return self._query(_TOKEN_INSERT, _row(row.get(c) for c in TOKEN_COLUMNS[1:]),
                               rows=tuple_row)[0][0]

    def token_by_hash(self, token_hash: str) -> dict | None:
        rows = self._query("SELECT * FROM tokens WHERE token_hash = %s", (token_hash,))
        return rows[0] if rows else None

    def tokens(self, kind: str | None = None) -> list[dict]:
        where, params = (" WHERE kind = %s", (kind,)) if kind else ("", ())
        cols = ", ".join(c for c in TOKEN_COLUMNS if c != "token_hash")
        return self._query(f"SELECT {cols} FROM tokens{where} ORDER BY id", params)

    def use_token(self, token_id: int, now: float) -> None:
        with self.transaction(durable=True):
            self._query(
                "UPDATE tokens SET used_count = COALESCE(used_count, 0) + 1, last_used_at = %s, "
                "uses_left = CASE WHEN uses_left IS NULL THEN NULL ELSE uses_left - 1 END "
                "WHERE id = %s", (now, token_id))

    def revoke_token(self, token_id: int, now: float) -> bool:
        with self.transaction(durable=True):
            return self._query("UPDATE tokens SET revoked_at = %s WHERE id = %s AND "
                               "revoked_at IS NULL", (now, token_id)) > 0

    # --- audit -------------------------------------------------------------------------
    def insert_audit_log(self, rows: Iterable[dict]) -> None:
        from architect.broker.store.postgres import _row
        self._many(_AUDIT_INSERT, [
            _row(json.dumps(r[c]) if c == "params" and r.get(c) is not None else r.get(c)
                 for c in _AUDIT_COLUMNS) for r in rows])

    def audit_log(self, since: float | None = None, who: str | None = None,
                  method: str | None = None, limit: int = 100) -> list[dict]:
        clauses, params = [], []
        for clause, value in (("ts >= %s", since), ("who = %s", who), ("method = %s", method)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._query(f"SELECT * FROM audit{where} ORDER BY id DESC LIMIT %s",
                           (*params, limit))
        for row in rows:
            row["params"] = json.loads(row["params"]) if row.get("params") else None
        return rows

    def purge_audit(self, before: float, limit: int = 50_000) -> int:
        return self._query("DELETE FROM audit WHERE id IN "
                           "(SELECT id FROM audit WHERE ts < %s LIMIT %s)", (before, limit))
