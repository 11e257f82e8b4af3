"""Tier 3: backups through the CLI and REST on real processes (docs/BACKUP.md).

- `architect restore` refuses while a broker runs on the data dir, and a corrupt copy,
  and in both cases the data dir is exactly as it was;
- `architect backup --keep-days` prunes only this tool's old copies;
- POST /api/backup: a viewer or an operator gets 403 and nothing is written; an admin gets
  the copy (where, how big), taken by the master's broker.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import requests

from tests.helpers import Cluster, wait_for

ADMIN = ("admin", "s3cret-admin")
VIEWER = ("vera", "viewer-password-1")
OPERATOR = ("otto", "operator-password-1")


def data_state(folder) -> dict:
    """Every file under the data dir but the bus sockets and the live WAL: name → (inode,
    sha256). The database file itself must keep its inode (never replaced)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if "/bus/" in path + "/" or name.endswith(("-wal", "-shm")):
                continue
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = os.stat(path).st_ino, \
                    hashlib.sha256(f.read()).hexdigest() if name != "architect.db" else None
    return out


def test_restore_refuses_a_running_broker_and_a_corrupt_copy(cluster, tmp_path):
    cluster.start_broker()
    cluster.submit(payload={"command": "true"})
    data = tmp_path / "data"
    copy = tmp_path / "copy.db"
    cluster.cli("backup", str(copy))
    before = data_state(data)
    refused = cluster.cli("restore", str(copy), check=False)
    assert refused.returncode == 1 and "stop it first" in refused.stderr, refused.stderr
    assert data_state(data) == before
    assert not list(data.glob("*before-restore*")) and not list(data.glob("*.restoring"))

    cluster.stop_all()
    corrupt = tmp_path / "corrupt.db"
    raw = bytearray(copy.read_bytes())
    for i in range(8192, len(raw) - 8, 61):
        raw[i:i + 4] = b"\xff\x00\xff\x00"
    corrupt.write_bytes(bytes(raw))
    before = data_state(data)
    db_bytes = (data / "architect.db").read_bytes()
    bad = cluster.cli("restore", str(corrupt), check=False)
    assert bad.returncode == 1 and "nothing was changed" in bad.stderr, bad.stderr
    assert data_state(data) == before and (data / "architect.db").read_bytes() == db_bytes

    done = cluster.cli("restore", str(copy), "--json")
    result = json.loads(done.stdout)
    assert result["previous"] and os.path.exists(result["previous"])
    cluster.start_broker()
    assert len(cluster.rpc("task.list", {"limit": 10})) == 1


def test_keep_days_prunes_only_its_own_old_copies(cluster, tmp_path):
    cluster.start_broker()
    folder = tmp_path / "data" / "backups"
    folder.mkdir(parents=True)
    old = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() - 9 * 86400))
    ours = folder / f"architect-{old}.db"
    theirs = [folder / "important.db", folder / f"architect-{old}.db.keep", folder / "notes"]
    for path in [ours, *theirs]:
        path.write_text("x")
        os.utime(path, (time.time() - 90 * 86400,) * 2)
    out = cluster.cli_json("backup", "--keep-days", "7")
    assert out["pruned"] == [str(ours)]
    assert not ours.exists() and all(p.exists() for p in theirs)
    assert os.path.getsize(out["backup"]) == out["bytes"]


@pytest.mark.slow
def test_post_backup_is_for_admins_only(tmp_path):
    cluster = Cluster(tmp_path, extra_env={"ARCHITECT_USER": ADMIN[0],
                                           "ARCHITECT_PASSWORD": ADMIN[1]})
    try:
        url = cluster.start_server(env={"ARCHITECT_USER": ADMIN[0],
                                        "ARCHITECT_PASSWORD": ADMIN[1]})
        for (name, password), role in ((VIEWER, "viewer"), (OPERATOR, "operator")):
            cluster.rpc("users.add", {"name": name, "password": password, "role": role})
        folder = tmp_path / "data" / "backups"
        policy = tmp_path / "data" / "backup-policy.json"
        for who in (VIEWER, OPERATOR):
            r = requests.post(f"{url}/api/backup", auth=who, timeout=30)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
            r = requests.put(f"{url}/api/backup/schedule", json={"every": 86400}, auth=who,
                             timeout=10)
            assert r.status_code == 403, r.text
            assert requests.get(f"{url}/api/backup", auth=who, timeout=10).status_code == 403
        assert not folder.exists() or not list(folder.iterdir())
        assert not policy.exists()

        r = requests.post(f"{url}/api/backup", auth=ADMIN, timeout=60)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["integrity"] == "ok" and os.path.dirname(out["backup"]) == str(folder)
        assert os.path.getsize(out["backup"]) == out["bytes"] > 0
        r = requests.put(f"{url}/api/backup/schedule", json={"every": 86400, "keep_days": 7},
                         auth=ADMIN, timeout=10)
        assert r.status_code == 200 and r.json()["every"] == 86400, r.text
        for bad in (5, "1d", "", True, None):          # REST: seconds (0, 60-366 days) or "off"
            assert requests.put(f"{url}/api/backup/schedule", json={"every": bad}, auth=ADMIN,
                                timeout=10).status_code == 400, bad
        status = requests.get(f"{url}/api/backup", auth=ADMIN, timeout=10).json()
        assert status["last"]["backup"] == out["backup"] and status["keep_days"] == 7
        # the CLI sees the same schedule (the master's local admin key)
        shown = cluster.cli("backup", "--status")
        assert "every 1d, keep 7 days" in shown.stdout, shown.stdout
        wait_for(lambda: any(a["method"] == "backup.run" and a["outcome"] == "forbidden"
                             for a in cluster.rpc("audit.list", {"limit": 100})), 5,
                 what="the refusals in the audit")
    finally:
        cluster.stop_all()
