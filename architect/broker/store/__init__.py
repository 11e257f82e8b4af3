"""The broker's store: one interface (base.BaseStore), its SQLite backend (sqlite.Store),
and the schema (migrations). `from architect.broker.store import Store, open_db`.

The PostgreSQL backend (postgres.Store, its schema in postgres_migrations) is imported only
when ARCHITECT_DATABASE_URL selects it: open_store(config) picks the backend.
tests/contract/test_store.py runs one test class against every backend.
"""

from architect.broker.store.base import (
    ALERT_COLUMNS, AUDIT_COLUMNS, AUDIT_LOG_COLUMNS, JSON_NODE_COLUMNS, JSON_TASK_COLUMNS,
    METRIC_COLUMNS, NODE_COLUMNS, TABLES, TASK_COLUMNS, TOKEN_COLUMNS, BaseStore, Fenced)
from architect.broker.store.migrations import migrations
from architect.broker.store.sqlite import Store, open_db, private
from architect.broker.store.sqlite_accounts import AccountStore

SQLiteStore = Store


def open_store(config, epoch: int | None = None, holder: str = "", guard=None) -> BaseStore:
    """The broker's store for this Config: PostgreSQL when database_url is set, else SQLite
    in the data dir (config.db_path). `epoch`: the leader epoch that fences every
    transaction (PostgreSQL with several masters, lease.py); `holder` names the lease and
    guard() says whether it is still held (no write begins when it is not)."""
    if config.database_url:
        from architect.broker.store.postgres import Store as PostgresStore
        return PostgresStore(config.database_url, epoch=epoch, holder=holder, guard=guard,
                             io_timeout=config.lease_ttl / 5 if epoch is not None else None)
    return Store(config.db_path)


__all__ = ["BaseStore", "Fenced", "Store", "SQLiteStore", "open_store", "AccountStore", "open_db", "private",
           "migrations", "TABLES", "TASK_COLUMNS", "JSON_TASK_COLUMNS", "NODE_COLUMNS",
           "JSON_NODE_COLUMNS", "METRIC_COLUMNS", "ALERT_COLUMNS", "AUDIT_COLUMNS",
           "AUDIT_LOG_COLUMNS", "TOKEN_COLUMNS"]
