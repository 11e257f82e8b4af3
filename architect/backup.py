"""Online backup and restore of architect.db.

backup: SQLite's online backup API from a read-only connection, so it runs while the broker
writes (WAL readers see one consistent snapshot), then PRAGMA integrity_check on the copy.
restore: only with the broker stopped; the current database is kept beside it.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path


class BackupError(RuntimeError):
    pass


def integrity(path: str | Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def backup(db_path: str | Path, out: str | Path) -> dict:
    db_path, out = Path(db_path), Path(out)
    if not db_path.exists():
        raise BackupError(f"no database at {db_path}")
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst, pages=1024, sleep=0.005)  # steps: the broker keeps writing between
    finally:
        dst.close()
        src.close()
    check = integrity(out)
    if check != "ok":
        out.unlink(missing_ok=True)
        raise BackupError(f"the copy failed its integrity check: {check}")
    return {"backup": str(out), "bytes": out.stat().st_size, "integrity": check,
            "seconds": round(time.monotonic() - started, 3)}


def restore(backup_path: str | Path, db_path: str | Path) -> dict:
    backup_path, db_path = Path(backup_path), Path(db_path)
    if not backup_path.exists():
        raise BackupError(f"no backup at {backup_path}")
    check = integrity(backup_path)
    if check != "ok":
        raise BackupError(f"{backup_path} failed its integrity check: {check}")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    kept = None
    if db_path.exists():
        kept = db_path.with_name(f"{db_path.name}.before-restore.{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(db_path), kept)
        for suffix in ("-wal", "-shm"):
            side = Path(str(db_path) + suffix)
            if side.exists():
                shutil.move(str(side), str(kept) + suffix)
    tmp = db_path.with_name(db_path.name + ".restoring")
    shutil.copyfile(backup_path, tmp)
    tmp.replace(db_path)
    return {"restored": str(db_path), "from": str(backup_path), "previous": str(kept) if kept else None}
