"""The broker's store: one interface (base.BaseStore), its SQLite backend (sqlite.Store),
and the schema (migrations). `from architect.broker.store import Store, open_db`.

A backend for PostgreSQL is another BaseStore subclass; tests/contract/test_store.py runs
one test class against every backend.
"""

from architect.broker.store.base import (
    ALERT_COLUMNS, AUDIT_COLUMNS, AUDIT_LOG_COLUMNS, JSON_NODE_COLUMNS, JSON_TASK_COLUMNS,
    METRIC_COLUMNS, NODE_COLUMNS, TABLES, TASK_COLUMNS, TOKEN_COLUMNS, BaseStore)
from architect.broker.store.migrations import migrations
from architect.broker.store.sqlite import Store, open_db, private
from architect.broker.store.sqlite_accounts import AccountStore

SQLiteStore = Store

__all__ = ["BaseStore", "Store", "SQLiteStore", "AccountStore", "open_db", "private",
           "migrations", "TABLES", "TASK_COLUMNS", "JSON_TASK_COLUMNS", "NODE_COLUMNS",
           "JSON_NODE_COLUMNS", "METRIC_COLUMNS", "ALERT_COLUMNS", "AUDIT_COLUMNS",
           "AUDIT_LOG_COLUMNS", "TOKEN_COLUMNS"]
