"""Online backup, verification, pruning and restore of architect.db (SQLite).

backup: SQLite's online backup API from a read-only connection that holds one read
transaction for the whole copy, so the copy is one consistent snapshot while the broker
keeps writing (WAL: the writer is never blocked, and the copy never restarts), copied in
steps (a progress callback sees them), then PRAGMA integrity_check on the copy.
verify: integrity_check, and that the file is an Architect database whose schema this
version knows (every migration it records is one of ours).
restore: only with the broker stopped (the CLI checks); the copy is verified, written
beside the database, fsynced, then swapped in with os.replace; the current database is
kept as architect.db.before-restore.<time>.
prune: removes the copies this tool named (architect-YYYYmmdd-HHMMSS[-N].db / .dump) that
are older than keep_days, never anything else, and always keeps the newest.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

STEP_PAGES = 1024           # pages copied per step (4 MiB at the default page size)
NAME_RE = re.compile(r"^architect-(\d{8}-\d{6})(?:-\d{1,4})?\.(db|dump)$")
STAMP = "%Y%m%d-%H%M%S"


class BackupError(RuntimeError):
    pass


def integrity(path: str | Path) -> str:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def known_migrations() -> list[str]:
    from architect.broker.store.migrations import migrations
    return [m.name for m in migrations._migrations]


def verify(path: str | Path) -> dict:
    """{integrity: "ok", schema: the latest migration} or BackupError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise BackupError(f"{path} is not an SQLite database")
    check = integrity(path)
    if check != "ok":
        raise BackupError(f"{path} failed its integrity check: {check}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "_sqlite_migrations" not in tables or "tasks" not in tables:
            raise BackupError(f"{path} is an SQLite database but not an Architect one "
                              "(no _sqlite_migrations or tasks table)")
        names = [r[0] for r in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'architect' "
            "ORDER BY rowid")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} cannot be read: {exc}") from None
    finally:
        conn.close()
    known = known_migrations()
    unknown = [n for n in names if n not in known]
    if not names:
        raise BackupError(f"{path} records no Architect schema version")
    if unknown:
        raise BackupError(f"{path} has a newer schema than this version of Architect knows "
                          f"({', '.join(unknown)}): upgrade Architect first")
    return {"integrity": "ok", "schema": names[-1], "schema_known": known[-1]}


def default_path(directory: str | Path, ext: str = "db", now: float | None = None) -> Path:
    """DIR/architect-YYYYmmdd-HHMMSS.EXT, with -2, -3… when that name is taken."""
    directory = Path(directory)
    stamp = time.strftime(STAMP, time.localtime(time.time() if now is None else now))
    out = directory / f"architect-{stamp}.{ext}"
    n = 2
    while out.exists():
        out = directory / f"architect-{stamp}-{n}.{ext}"
        n += 1
    return out


def backup(db_path: str | Path, out: str | Path, progress=None) -> dict:
    """Copy db_path to out (a new file). progress(copied_pages, total_pages) after each step."""
    db_path, out = Path(db_path), Path(out)
    if not db_path.exists():
        raise BackupError(f"no database at {db_path}")
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10, isolation_level=None)
    dst = sqlite3.connect(tmp)
    try:
        src.execute("BEGIN")        # one read transaction: one snapshot for every step
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()

        def step(status, remaining, total):
            if progress is not None:
                progress(total - remaining, total)
        src.backup(dst, pages=STEP_PAGES, progress=step, sleep=0.005)
        src.execute("COMMIT")
        _single_file(dst)
    except sqlite3.Error as exc:
        dst.close()
        tmp.unlink(missing_ok=True)
        raise BackupError(f"the backup failed: {exc}") from None
    finally:
        dst.close()
        src.close()
    check = integrity(tmp)
    if check != "ok":
        tmp.unlink(missing_ok=True)
        raise BackupError(f"the copy failed its integrity check: {check}")
    _fsync(tmp)
    os.chmod(tmp, 0o600)         # password hashes and tasks: the owner's only
    os.replace(tmp, out)
    _fsync_dir(out.parent)
    return {"backup": str(out), "bytes": out.stat().st_size, "integrity": check,
            "seconds": round(time.monotonic() - started, 3)}


def prune(directory: str | Path, keep_days: float, now: float | None = None,
          keep: str | Path | None = None) -> list[str]:
    """Remove this tool's copies in `directory` older than keep_days (by the time in their
    name); the newest copy, and `keep`, always stay. Returns the removed paths."""
    if keep_days is None or keep_days <= 0:
        return []
    directory = Path(directory)
    now = time.time() if now is None else now
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        m = NAME_RE.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stamp = time.mktime(time.strptime(m.group(1), STAMP))
        except ValueError:
            continue
        found.append((stamp, entry.name, Path(entry.path)))
    found.sort()
    removed = []
    keep = Path(keep).resolve() if keep else None
    for stamp, _, path in found[:-1]:          # the newest stays whatever its age
        if now - stamp > keep_days * 86400 and path.resolve() != keep:
            path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


def restore(backup_path: str | Path, db_path: str | Path) -> dict:
    """Verify the copy, write it beside the database, fsync, swap it in (os.replace); the
    current database (its WAL checkpointed into it first) is kept beside as
    architect.db.before-restore.<time>. The broker must be stopped."""
    backup_path, db_path = Path(backup_path), Path(db_path)
    checked = verify(backup_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(db_path.name + ".restoring")
    try:
        shutil.copyfile(backup_path, tmp)
        conn = sqlite3.connect(tmp)
        try:
            _single_file(conn)
        except sqlite3.Error as exc:
            raise BackupError(f"{backup_path} cannot be restored: {exc}") from None
        finally:
            conn.close()
        _fsync(tmp)
        os.chmod(tmp, 0o600)
        if verify(tmp)["integrity"] != "ok":     # what landed on disk, not only the source
            raise BackupError("the copy written beside the database is not sound")
    except BaseException:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
        raise
    kept = None
    if db_path.exists():
        _checkpoint(db_path)
        kept = db_path.with_name(f"{db_path.name}.before-restore.{time.strftime(STAMP)}")
        n = 2
        while kept.exists():
            kept = kept.with_name(f"{db_path.name}.before-restore.{time.strftime(STAMP)}-{n}")
            n += 1
        try:
            os.link(db_path, kept)             # the old file stays whole under its new name
        except OSError:
            shutil.copy2(db_path, kept)
        for suffix in ("-wal", "-shm"):        # a WAL left (checkpoint refused) goes with it;
            side = Path(str(db_path) + suffix)  # never onto the restored file
            if side.exists():
                os.replace(side, str(kept) + suffix)
    os.replace(tmp, db_path)
    _fsync_dir(db_path.parent)
    return {"restored": str(db_path), "from": str(backup_path),
            "previous": str(kept) if kept else None, "schema": checked["schema"]}


def _single_file(conn: sqlite3.Connection) -> None:
    """A copy is one file (rollback journal mode): reading it leaves no -wal beside it; the
    broker turns WAL on again when it opens the restored database."""
    conn.execute("PRAGMA journal_mode=DELETE").fetchone()


def _checkpoint(db_path: Path) -> None:
    """Fold the WAL into the database file, so the kept copy is one file."""
    try:
        conn = sqlite3.connect(db_path, timeout=2)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        pass  # a damaged database: it is kept with its WAL beside it


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
