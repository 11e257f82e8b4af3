"""The CURVE key store shared by several masters through the database (keymirror.py),
against a real PostgreSQL: the first master seeds it, every other master ends up with the
same server and local pairs, and a join, role change or revoke on the leader reaches the
others' files."""

from __future__ import annotations

import psycopg
import pytest
import zmq.auth

from architect.broker import keymirror
from architect.broker.store.postgres import Store
from architect.bus.security import KeyStore, local_client



@pytest.fixture
def url(pg_server):
    url = pg_server.create_database()
    Store(url).close()   # the schema
    return url


def pull(url, keys_dir) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return keymirror.pull(conn, keys_dir)


@pytest.fixture
def old_leader(url):
    """A Store of a leader whose epoch another master has since taken over (fenced)."""
    import time
    from architect.broker.lease import Lease
    a, b = Lease(url, "a", 1.5), Lease(url, "b", 1.5)
    old = Store(url, epoch=a.acquire(), holder="a")
    a.conn.close()
    deadline = time.monotonic() + 5
    while b.acquire() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield old
    old.close()
    a.release()
    b.release()


def client_key(tmp_path) -> bytes:
    pub_file, _ = zmq.auth.create_certificates(tmp_path, "n1")
    return zmq.auth.load_certificate(pub_file)[0]


def test_every_master_gets_the_first_ones_keys(url, tmp_path):
    one, two = tmp_path / "m1" / "keys", tmp_path / "m2" / "keys"
    pull(url, one)                       # seeds the database with m1's new pairs
    pull(url, two)                       # m2 takes them
    for name in ("server.key", "server.key_secret", "local.key_secret"):
        assert (one / name).read_bytes() != b"" and \
            zmq.auth.load_certificate(one / name) == zmq.auth.load_certificate(two / name)
    assert oct((two / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    assert local_client(tmp_path / "m1") == local_client(tmp_path / "m2") is not None
    assert pull(url, two) is False       # nothing changed: no file rewritten


def test_changes_on_the_leader_reach_the_others(url, tmp_path):
    one, two = tmp_path / "m1" / "keys", tmp_path / "m2" / "keys"
    pull(url, one)
    pull(url, two)
    public = client_key(tmp_path)
    leader = KeyStore(one)
    leader.authorize("n1", public, "operator")
    leader.request("n2", public[:-1] + b"A" if public[-1:] != b"A" else public[:-1] + b"B")
    store = Store(url)
    keymirror.push(store, one)
    assert pull(url, two) is True
    follower = KeyStore(two)
    assert follower.public_of(follower.authorized, "n1") == public
    assert follower.role_of("n1") == "operator"
    assert follower.listing()["pending"] == ["n2"]
    leader.revoke("n1")
    keymirror.push(store, one)
    pull(url, two)
    assert follower.role_of("n1") is None
    store.close()


def test_an_old_leader_cannot_change_the_keys(url, tmp_path, old_leader):
    """push() runs in the broker's fenced transaction."""
    from architect.broker.store import Fenced
    one = tmp_path / "m1" / "keys"
    pull(url, one)
    KeyStore(one).authorize("intruder", client_key(tmp_path))
    with pytest.raises(Fenced):
        keymirror.push(old_leader, one)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM bus_keys WHERE name = 'intruder'"
                            ).fetchone()[0] == 0


def test_a_key_change_the_database_refuses_is_undone_in_the_files(url, tmp_path, old_leader):
    """keymirror.sync: the database first; when it refuses (an old leader, fenced), the
    files go back to what the database holds, so the revoke can simply be tried again."""
    from architect.broker.store import Fenced
    keys = tmp_path / "m1" / "keys"
    pull(url, keys)
    public = client_key(tmp_path)
    files = KeyStore(keys)
    files.authorize("n1", public)
    writer = Store(url)
    keymirror.push(writer, keys)
    writer.close()

    class Security:   # what ServerSecurity gives sync(): its folder and a reload of it
        keys_dir = keys
        loads = 0

        def load(self):
            self.loads += 1
    security = Security()
    assert files.revoke("n1")                          # the file is gone ...
    with pytest.raises(Fenced):
        keymirror.sync(old_leader, security)           # ... the database says no ...
    assert files.public_of(files.authorized, "n1") == public   # ... so it is back
    assert security.loads == 1
