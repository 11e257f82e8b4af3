"""`architect cluster status`: each master's role, epoch and since, from its /healthz."""

from __future__ import annotations

import json

import pytest

from tests.ha import Masters
from tests.helpers import free_port_block

pytestmark = pytest.mark.slow


def status(cluster, *urls: str):
    args = [a for url in urls for a in ("--url", url)]
    result = cluster.cli("cluster", "status", *args, "--json", check=False)
    return result.returncode, json.loads(result.stdout)


def test_two_masters_one_active_one_standby(pg_server, tmp_path):
    ha = Masters(tmp_path, pg_server.create_database())
    try:
        active = ha.start()
        code, rows = status(ha.nodes, *ha.urls)
        assert code == 0
        assert [r["role"] for r in rows] == ["active" if i == active else "standby"
                                             for i in range(2)]
        lead = rows[active]
        assert isinstance(lead["epoch"], int) and lead["since"] and lead["status"] == "ok"
        assert rows[1 - active]["epoch"] is None and rows[1 - active]["leader"] == lead["holder"]
        assert rows[1 - active]["leader_epoch"] == lead["epoch"]
        # the table, from ARCHITECT_DASHBOARD_URL (the nodes' setting)
        table = ha.nodes.cli("cluster", "status").stdout
        assert "active" in table and "standby" in table and ha.urls[0] in table
        # the active one gone, the other not yet taken over, or taken over: never two
        ha.kill(active)
        new = ha.wait_active(10, other_than=active)
        code, rows = status(ha.nodes, *ha.urls)
        assert code == 0 and rows[new]["role"] == "active"
        assert rows[active]["status"] == "unreachable" and rows[new]["epoch"] > lead["epoch"]
    finally:
        ha.stop_all()


def test_one_master_on_sqlite_and_an_unreachable_url(cluster):
    url = cluster.start_server()
    code, rows = status(cluster, url)
    assert code == 0 and rows[0]["role"] == "active" and rows[0]["epoch"] is None
    nowhere = f"http://127.0.0.1:{free_port_block(1)}"
    code, rows = status(cluster, nowhere)
    assert code == 1 and rows[0]["status"] == "unreachable" and rows[0]["role"] is None
