import os

import pytest

from tests.helpers import Cluster


@pytest.fixture
def cluster(request, tmp_path):
    """Real processes on loopback (tests/helpers.py). TEST_STORE=postgres runs their broker
    on PostgreSQL (a fresh database on the session's pg_server) instead of SQLite."""
    extra = {}
    if os.environ.get("TEST_STORE", "sqlite") == "postgres":
        extra["ARCHITECT_DATABASE_URL"] = request.getfixturevalue("pg_server").create_database()
    c = Cluster(tmp_path, extra_env=extra)
    yield c
    c.stop_all()


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL server for the run (tests/pg.py); tests make their own databases
    with pg_server.create_database(). Fails, with what to install, when it is missing."""
    from tests.pg import PgServer
    server = PgServer().start()
    yield server
    server.cleanup()
