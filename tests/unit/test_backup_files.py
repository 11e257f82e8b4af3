"""Tier 1 (files, no sockets): backup copies, their check, pruning and restore (backup.py).

A corrupt copy, a foreign SQLite file or a newer schema is refused and the database is left
exactly as it was; --keep-days removes only this tool's old copies; restore swaps the file
in whole and keeps the old one.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time

import pytest

from architect.broker import backup
from architect.broker.store.sqlite import open_db


def make_db(path, rows: int = 50):
    db = open_db(str(path))
    conn = db.conn
    now = time.time()
    for i in range(rows):
        conn.execute("INSERT INTO nodes (name, registered_at, last_seen) VALUES (?, ?, ?)",
                     (f"n{i}", now, now))
    db.conn.close()


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def folder_state(folder) -> dict:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "data" / "architect.db"
    make_db(path)
    return path


def count(path, table="nodes") -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_backup_copies_with_progress_and_passes_its_checks(db, tmp_path):
    steps = []
    out = tmp_path / "b" / "copy.db"
    result = backup.backup(db, out, progress=lambda done, total: steps.append((done, total)))
    assert result["integrity"] == "ok" and result["bytes"] == out.stat().st_size
    assert steps and steps[-1][0] == steps[-1][1] > 0
    assert backup.verify(out)["schema"] == backup.known_migrations()[-1]
    assert count(out) == 50
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert not list(out.parent.glob("*.partial"))


def test_restore_swaps_the_copy_in_and_keeps_the_old_database(db, tmp_path):
    out = tmp_path / "copy.db"
    backup.backup(db, out)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM nodes WHERE name LIKE 'n1%'")     # the database moves on
    conn.commit()
    conn.close()
    after = count(db)
    assert after < 50
    result = backup.restore(out, db)
    assert count(db) == 50
    kept = result["previous"]
    assert kept and ".before-restore." in kept and count(kept) == after
    leftovers = [p.name for p in db.parent.iterdir()
                 if p.name.endswith((".restoring", "-wal")) and "before" not in p.name]
    assert not leftovers


@pytest.mark.parametrize("damage", ["corrupt", "foreign", "newer", "truncated", "not_sqlite"])
def test_a_bad_copy_is_refused_and_changes_nothing(db, tmp_path, damage):
    bad = tmp_path / "bad.db"
    backup.backup(db, bad)
    if damage == "corrupt":
        data = bytearray(bad.read_bytes())
        page = 4096
        for i in range(page * 2, len(data) - 16, 97):       # scribble over the later pages
            data[i:i + 8] = b"\xde\xad\xbe\xef\xde\xad\xbe\xef"
        bad.write_bytes(bytes(data))
    elif damage == "foreign":
        bad.unlink()
        conn = sqlite3.connect(bad)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    elif damage == "newer":
        conn = sqlite3.connect(bad)
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('architect', 'm999_from_the_future', '2099-01-01')")
        conn.commit()
        conn.close()
    elif damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:6000])
    else:
        bad.write_text("hello, not a database")
    before = folder_state(db.parent)
    with pytest.raises(backup.BackupError) as err:
        backup.restore(bad, db)
    assert {"corrupt": "integrity", "foreign": "not an Architect", "newer": "newer schema",
            "truncated": "", "not_sqlite": "not an SQLite"}[damage] in str(err.value)
    assert folder_state(db.parent) == before        # same files, same bytes: nothing changed
    assert count(db) == 50


def test_keep_days_prunes_only_old_copies_and_only_its_own(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    now = time.time()
    old = time.strftime(backup.STAMP, time.localtime(now - 10 * 86400))
    older = time.strftime(backup.STAMP, time.localtime(now - 30 * 86400))
    fresh = time.strftime(backup.STAMP, time.localtime(now - 3600))
    own_old = [f"architect-{old}.db", f"architect-{older}.dump", f"architect-{old}-2.db"]
    own_new = [f"architect-{fresh}.db"]
    others = ["notes.txt", f"architect-{old}.db.partial", f"mine-{old}.db", "architect.db",
              f"architect-{old}.db.bak", f"Architect-{old}.db"]
    for name in own_old + own_new + others:
        (folder / name).write_text(name)
        os.utime(folder / name, (now - 40 * 86400,) * 2)   # every file's mtime is old
    (folder / f"architect-{older}-3.db").mkdir()                  # a folder: never touched
    os.symlink(folder / "notes.txt", folder / f"architect-{older}-4.db")   # nor a symlink
    removed = backup.prune(folder, 7, now)
    assert sorted(os.path.basename(p) for p in removed) == sorted(own_old)
    left = {p.name for p in folder.iterdir()}
    assert left == set(own_new + others) | {f"architect-{older}-3.db", f"architect-{older}-4.db"}
    assert backup.prune(folder, 0, now) == []          # 0: keep everything


def test_keep_days_always_keeps_the_newest_copy(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    now = time.time()
    names = [f"architect-{time.strftime(backup.STAMP, time.localtime(now - d * 86400))}.db"
             for d in (20, 30, 40)]
    for name in names:
        (folder / name).write_text("x")
    removed = backup.prune(folder, 7, now)
    assert {p.name for p in folder.iterdir()} == {names[0]}   # the newest, though 20 days old
    assert len(removed) == 2


def test_default_names_never_collide(tmp_path):
    now = time.time()
    first = backup.default_path(tmp_path, "db", now)
    first.write_text("x")
    second = backup.default_path(tmp_path, "db", now)
    assert second != first and backup.NAME_RE.match(second.name) and backup.NAME_RE.match(first.name)
