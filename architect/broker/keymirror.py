"""The CURVE key store of several masters, kept in the database (`bus_keys`), so every
master admits the same nodes and nodes see the same server key whichever master leads.

The files in DATA_DIR/keys stay what the broker's ZAP authenticator and the web server read
(security.py); this module copies them to and from the database:
- folder 'self': the master's own pairs, `server` and `local`, secret included (the
  database is the trust root of a cluster of masters: whoever can write it can run tasks
  anyway; keep its access tight, see docs/HA.md);
- folders 'authorized' and 'pending': client public keys with their role.

pull() makes the files match the database (every master when it starts, so its web
server holds the shared `local` key; a new leader again before it opens the bus); push() writes the files to the database, replacing what
was there, inside the active broker's fenced transaction (after every join, accept, revoke
or role change). The first master to start on an empty database seeds it with its keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq.auth

from architect.bus.security import LOCAL, KeyStore, ensure_keypair

SELF = ("server", LOCAL)
FOLDERS = ("authorized", "pending")


def _write_pair(keys_dir: Path, name: str, public: str, secret: str) -> None:
    for path, body, mode in (
            (keys_dir / f"{name}.key", f'metadata\ncurve\n    public-key = "{public}"\n', 0o644),
            (keys_dir / f"{name}.key_secret", f'metadata\ncurve\n    public-key = "{public}"\n'
             f'    secret-key = "{secret}"\n', 0o600)):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)


def rows_of(keys_dir: str | Path) -> list[tuple]:
    """(folder, name, public, secret, role) for every key in the data dir's key store."""
    keys_dir = Path(keys_dir)
    rows = []
    for name in SELF:
        pub, sec = ensure_keypair(keys_dir, name)
        rows.append(("self", name, pub.decode(), sec.decode(), None))
    keys = KeyStore(keys_dir)
    for folder in FOLDERS:
        for path in sorted((keys_dir / folder).glob("*.key")):
            try:
                pub = zmq.auth.load_certificate(path)[0].decode()
            except (OSError, ValueError):
                continue
            rows.append((folder, path.stem, pub, None, keys.role_in(path)))
    return rows


def write_files(keys_dir: str | Path, rows: list[tuple]) -> bool:
    """Make the key files match `rows`; True if anything changed."""
    keys_dir = Path(keys_dir)
    keys = KeyStore(keys_dir)   # makes the folders (0700)
    changed = False
    wanted = {(f, n): (p, s, r) for f, n, p, s, r in rows}
    for name in SELF:
        row = wanted.get(("self", name))
        if row is None or not row[1]:
            continue
        try:
            current = zmq.auth.load_certificate(keys_dir / f"{name}.key_secret")
        except (OSError, ValueError):
            current = None
        if current != (row[0].encode(), row[1].encode()):
            _write_pair(keys_dir, name, row[0], row[1])
            changed = True
    for folder in FOLDERS:
        have = {p.stem: p for p in (keys_dir / folder).glob("*.key")}
        for name, path in have.items():
            if (folder, name) not in wanted:
                path.unlink(missing_ok=True)
                changed = True
        for (f, name), (public, _secret, role) in wanted.items():
            if f != folder:
                continue
            path = have.get(name)
            try:
                same = path is not None and zmq.auth.load_certificate(path)[0] == \
                    public.encode() and keys.role_in(path) == (role or "node")
            except (OSError, ValueError):
                same = False
            if not same:
                keys.write_key(keys_dir / folder, name, public.encode(), role or "node")
                changed = True
    return changed


def pull(conn, keys_dir: str | Path) -> bool:
    """Seed the database from the files when it has no keys yet; then make the files match
    the database. conn: psycopg, autocommit. True if a file changed."""
    rows = conn.execute("SELECT folder, name, public, secret, role FROM bus_keys").fetchall()
    if not any(r[0] == "self" for r in rows):
        for row in rows_of(keys_dir):   # whoever inserts first wins; then everyone reads
            conn.execute("INSERT INTO bus_keys (folder, name, public, secret, role) "
                         "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", row)
        rows = conn.execute("SELECT folder, name, public, secret, role FROM bus_keys").fetchall()
    return write_files(keys_dir, [tuple(r) for r in rows])


def sync(store, security) -> None:
    """After a key change on the leader (security.reload): the database first; if it
    cannot take the change (fenced, or gone), the files go back to what the database says,
    so a refused revoke or join can simply be tried again."""
    try:
        push(store, security.keys_dir)
    except Exception:
        try:
            write_files(security.keys_dir, store.bus_keys())
            security.load()
        except Exception:
            pass
        raise


def push(store, keys_dir: str | Path) -> None:
    """Replace the database's keys with the files' (PostgreSQL store; in a fenced
    transaction, so an old leader cannot change them)."""
    store.replace_bus_keys(rows_of(keys_dir))
