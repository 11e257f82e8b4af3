"""F6 on PostgreSQL: `architect backup` (pg_dump) while the broker runs, and `architect
restore` (pg_restore) with it stopped bring the state back; a real PostgreSQL server."""

import os
import stat

import pytest

from tests.helpers import Cluster, wait_for

pytestmark = pytest.mark.slow


def test_backup_and_restore_on_postgresql(tmp_path, pg_server):
    cluster = Cluster(tmp_path, extra_env={"ARCHITECT_DATABASE_URL": pg_server.create_database()})
    try:
        cluster.start_broker()
        cluster.start_worker("n1")
        cluster.wait_workers(1)
        first = cluster.submit(payload={"command": "echo before-backup"})
        wait_for(lambda: cluster.rpc("task.get", {"id": first})["status"] == "succeeded", 30,
                 what="the first task")
        out = tmp_path / "pg.dump"
        made = cluster.cli_json("backup", str(out))     # online: the broker keeps running
        assert made["backup"] == str(out) and made["integrity"].startswith("ok")
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        assert cluster.cli("backup", str(out), check=False).returncode != 0  # no overwrite
        second = cluster.submit(payload={"command": "echo after-backup"})
        wait_for(lambda: cluster.rpc("task.get", {"id": second})["status"] == "succeeded", 30,
                 what="the second task")

        refused = cluster.cli("restore", str(out), check=False)
        assert refused.returncode != 0 and "stop it first" in refused.stderr
        cluster.stop_all()
        done = cluster.cli("restore", str(out))
        assert "restored" in done.stdout and "previous kept as" in done.stdout
        kept = [p for p in (tmp_path / "data" / "backups").iterdir()
                if p.name.startswith("architect-before-restore-")]
        assert len(kept) == 1 and kept[0].stat().st_size > 0

        cluster.start_broker()
        ids = [t["id"] for t in cluster.rpc("task.list")]
        assert first in ids and second not in ids       # the state of the backup's moment
        # and the safety dump holds the state from just before the restore
        assert cluster.cli("restore", str(kept[0]), check=False).returncode != 0  # running
        cluster.stop_all()
        cluster.cli("restore", str(kept[0]))
        cluster.start_broker()
        assert second in [t["id"] for t in cluster.rpc("task.list")]
    finally:
        cluster.stop_all()


def test_a_broken_archive_is_refused_and_changes_nothing(tmp_path, pg_server):
    cluster = Cluster(tmp_path, extra_env={"ARCHITECT_DATABASE_URL": pg_server.create_database()})
    try:
        cluster.start_broker()
        task = cluster.rpc("task.submit", {"task_type": "shell", "payload": {"command": "true"}})
        cluster.stop_all()
        junk = tmp_path / "junk.dump"
        junk.write_bytes(b"PGDMP not really" * 10)
        result = cluster.cli("restore", str(junk), check=False)
        assert result.returncode != 0 and "failed" in result.stderr
        cluster.start_broker()
        assert cluster.rpc("task.get", {"id": task["id"]})["id"] == task["id"]
    finally:
        cluster.stop_all()


def test_restore_is_refused_while_another_master_is_connected(tmp_path, pg_server):
    """With several masters, the broker that still runs may be on another machine (the
    local pid file knows nothing of it): the database's own session list does."""
    from architect.broker.lease import Lease
    url = pg_server.create_database()
    cluster = Cluster(tmp_path, extra_env={"ARCHITECT_DATABASE_URL": url})
    out = tmp_path / "backup.dump"
    other = Lease(url, "master2:99")
    try:
        cluster.start_broker()
        assert cluster.cli("backup", str(out)).returncode == 0
        cluster.stop_all()
        other.acquire()          # a master elsewhere, holding the lease
        refused = cluster.cli("restore", str(out), check=False)
        assert refused.returncode != 0 and "architect-lease master2:99" in refused.stderr + \
            refused.stdout and "stop every master" in refused.stderr + refused.stdout
        other.release()
        assert cluster.cli("restore", str(out)).returncode == 0
    finally:
        other.release()
        cluster.stop_all()
