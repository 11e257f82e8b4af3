"""The web server's read-only account lookups (architect/api/accounts.py) against what the
broker's store wrote, on each backend: a web user logs in, an API token works until it is
revoked, a wrong password or an unknown token is nobody."""

from __future__ import annotations

import pytest

from architect.api.accounts import Accounts
from architect.broker.accounts import HASHER, token_digest
from architect.broker.store import Store

T0 = 1_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
def written(request, tmp_path):
    """(store, Accounts reading the same database)."""
    if request.param == "postgres":
        from architect.broker.store.postgres import Store as PostgresStore
        url = request.getfixturevalue("pg_server").create_database()
        store, accounts = PostgresStore(url), Accounts("/nonexistent/architect.db", None, url)
    else:
        path = str(tmp_path / "data" / "architect.db")
        store, accounts = Store(path), Accounts(path, None)
    yield store, accounts
    store.close()


def test_users_and_tokens_written_by_the_broker_log_in_on_the_web(written):
    store, accounts = written
    store.save_user({"name": "carol", "role": "operator",
                     "password_hash": HASHER.hash("pw-12345678"), "created_at": T0, "updated_at": T0, "created_by": "admin"})
    token_id = store.add_token({"kind": "api", "name": "ci", "role": "viewer",
                                "token_hash": token_digest("arch_secret"), "created_at": T0,
                                "created_by": "admin", "used_count": 0})
    who = accounts.password("carol", "pw-12345678", "127.0.0.1")
    assert (who.user, who.role, who.how) == ("carol", "operator", "password")
    assert accounts.password("carol", "wrong-password", "127.0.0.1") is None
    assert accounts.password("nobody", "pw-12345678", "127.0.0.1") is None
    tok = accounts.token("arch_secret", "127.0.0.1")
    assert (tok.user, tok.role, tok.how) == ("token:ci", "viewer", "token")
    assert accounts.token("arch_other", "127.0.0.1") is None
    store.revoke_token(token_id, T0 + 1)
    assert accounts.token("arch_secret", "127.0.0.1") is None     # at once, not cached
