"""Backup and restore on PostgreSQL: pg_dump / pg_restore (custom format).

backup: `pg_dump --format=custom` runs while the broker writes (one consistent snapshot,
PostgreSQL's own MVCC), then `pg_restore --list` reads the whole archive back as the check.
restore: only with the broker stopped; a safety dump of the current database is taken first,
then `pg_restore --clean --if-exists --single-transaction` (all or nothing).
The password never goes on a command line (other users could read it with `ps`): it is
passed as PGPASSWORD.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from architect.broker.backup import BackupError

TIMEOUT = 3600.0


def tool(name: str) -> str:
    """pg_dump / pg_restore: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if versions:
        return versions[-1]
    raise BackupError(f"{name} is not installed: apt-get install postgresql-client")


def _split(url: str) -> tuple[str, dict]:
    """(the URL without its password, the environment carrying it)."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = (unquote(parts.username or "") + "@" if parts.username else "") + host + \
            (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts), env


def _run(argv: list[str], env: dict, what: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} did not finish within {TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done


def check(archive: str | Path) -> int:
    """Read the whole archive's table of contents; the number of entries, or BackupError."""
    listing = _run([tool("pg_restore"), "--list", str(archive)], dict(os.environ),
                   f"reading {archive}")
    entries = [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]
    if not any(" TABLE DATA " in line and " tasks " in line for line in entries):
        raise BackupError(f"{archive} holds no Architect database (no tasks table data)")
    return len(entries)


def backup(url: str, out: str | Path, say=None) -> dict:
    """pg_dump to `out` then the archive read back; say(text) before each step."""
    out = Path(out)
    say = say or (lambda text: None)
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    plain, env = _split(url)
    tmp = out.with_name(out.name + ".partial")
    try:
        say(f"pg_dump to {tmp}")
        _run([tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(tmp),
              "--dbname", plain], env, "pg_dump")
        say("reading the archive back (pg_restore --list)")
        entries = check(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    os.chmod(out, 0o600)  # password hashes and tasks: the owner's only
    return {"backup": str(out), "bytes": out.stat().st_size,
            "integrity": f"ok ({entries} entries)", "seconds": round(time.monotonic() - started, 3)}


def masters_connected(url: str) -> list[str]:
    """The brokers and lease holders (any master) connected to this database now."""
    import psycopg
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return sorted(r[0] for r in conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND (application_name LIKE 'architect-broker%%' "
            "OR application_name LIKE 'architect-lease%%')").fetchall())


def restore(archive: str | Path, url: str, keep_dir: str | Path) -> dict:
    archive = Path(archive)
    if not archive.exists():
        raise BackupError(f"no backup at {archive}")
    check(archive)
    connected = masters_connected(url)
    if connected:   # with several masters, another machine's broker may still run
        raise BackupError("masters are connected to this database (" + ", ".join(connected)
                          + "): stop every master first")
    kept = Path(keep_dir) / f"architect-before-restore-{time.strftime('%Y%m%d-%H%M%S')}.dump"
    previous = backup(url, kept)["backup"]
    plain, env = _split(url)
    _run([tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
          "--exit-on-error", "--dbname", plain, str(archive)], env, "pg_restore")
    return {"restored": plain, "from": str(archive), "previous": previous}
