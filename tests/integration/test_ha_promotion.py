"""A promotion that fails half-way (the database fails while the new leader loads its
state) leaves nothing behind in the process — no ZAP authenticator, no bound socket, no
connection — so the same master can lead once the database is back."""

from __future__ import annotations

import threading

import click
import psycopg
import pytest

from architect import config as config_mod
from architect.broker.store.postgres import Store
from architect.cli.daemons import _broker_loop
from tests.helpers import free_port_block


def test_a_failed_promotion_can_be_tried_again(pg_server, tmp_path):
    url = pg_server.create_database()
    Store(url).close()
    env = {"ARCHITECT_DATA_DIR": str(tmp_path / "data"), "ARCHITECT_DATABASE_URL": url,
           "ARCHITECT_BUS_CURVE": "on", "ARCHITECT_BUS_PORT": str(free_port_block(4)),
           "ARCHITECT_STATE_DIR": str(tmp_path / "state")}
    cfg = config_mod.load(env=env, config_file=tmp_path / "none.json")
    threads = threading.active_count()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE tasks RENAME TO tasks_away")
        with pytest.raises(click.ClickException, match="broker cannot start"):
            _broker_loop(cfg)
        assert threading.active_count() == threads          # no authenticator left running
        conn.execute("ALTER TABLE tasks_away RENAME TO tasks")
    loop = _broker_loop(cfg)          # the ZAP address and the ports are free again
    try:
        assert loop.security is not None and loop.broker.store.count("tasks") == 0
    finally:
        loop.close()
