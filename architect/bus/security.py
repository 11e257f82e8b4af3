"""CURVE on the bus: keys, the authorized / pending key store, and socket options.

Server side: the broker's key pair lives in DATA_DIR/keys (server.key, server.key_secret
0600); client public keys in DATA_DIR/keys/authorized (trusted) and .../pending (asked to
join, not yet accepted). A ZAP authenticator (pyzmq ThreadAuthenticator, on the broker
sockets' Context) lets in only authorized keys: anything else gets silence.
Client side: each agent, worker or CLI has its own pair (~/.architect/keys/NAME.key*).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

KEY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
LOCAL = "local"   # the master's own clients (web process, CLI on the master)


class KeyError_(ValueError):
    pass


def ensure_keypair(directory: str | Path, name: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys of `name` in `directory`, made on first use (secret 0600).
    A file lock makes the agent and the worker of one node share one pair."""
    import fcntl
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    secret = directory / f"{name}.key_secret"
    with open(directory / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not secret.exists():
            zmq.auth.create_certificates(directory, name)
            os.chmod(secret, 0o600)
        pub, sec = zmq.auth.load_certificate(secret)
    return pub, sec


def valid_public_key(text: str) -> bytes:
    """A Z85 CURVE public key (40 chars) → bytes; KeyError_ otherwise."""
    if not isinstance(text, str) or len(text) != 40:
        raise KeyError_("public_key must be a 40-character Z85 CURVE key")
    try:
        raw = zmq.utils.z85.decode(text.encode())
    except Exception:
        raise KeyError_("public_key is not valid Z85") from None
    if len(raw) != 32:
        raise KeyError_("public_key must decode to 32 bytes")
    return text.encode()


class KeyStore:
    """Authorized and pending client keys as zmq certificate files, one per node name."""

    def __init__(self, keys_dir: str | Path):
        self.dir = Path(keys_dir)
        self.authorized = self.dir / "authorized"
        self.pending = self.dir / "pending"
        for d in (self.dir, self.authorized, self.pending):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    @staticmethod
    def _check(name: str) -> str:
        if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
            raise KeyError_(f"key name {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
        return name

    def _write(self, folder: Path, name: str, public: bytes) -> None:
        (folder / f"{self._check(name)}.key").write_text(
            "metadata\ncurve\n    public-key = \"" + public.decode() + "\"\n")

    def public_of(self, folder: Path, name: str) -> bytes | None:
        path = folder / f"{self._check(name)}.key"
        return zmq.auth.load_certificate(path)[0] if path.exists() else None

    def authorize(self, name: str, public: bytes) -> None:
        self._write(self.authorized, name, public)
        (self.pending / f"{name}.key").unlink(missing_ok=True)

    def request(self, name: str, public: bytes) -> str:
        """A join request: 'authorized' if this exact key already is, else 'pending'."""
        if self.public_of(self.authorized, name) == public:
            return "authorized"
        self._write(self.pending, name, public)
        return "pending"

    def accept(self, name: str) -> None:
        src = self.pending / f"{self._check(name)}.key"
        if not src.exists():
            raise KeyError_(f"no pending key for {name!r}")
        shutil.move(src, self.authorized / src.name)

    def revoke(self, name: str) -> bool:
        found = False
        for folder in (self.authorized, self.pending):
            path = folder / f"{self._check(name)}.key"
            if path.exists():
                path.unlink()
                found = True
        return found

    def listing(self) -> dict:
        def names(folder):
            return sorted(p.stem for p in folder.glob("*.key"))
        return {"authorized": names(self.authorized), "pending": names(self.pending)}


class ServerSecurity:
    """The broker's CURVE: server keys, key store, and the ZAP authenticator."""

    def __init__(self, data_dir: str | Path, ctx: zmq.Context):
        self.keys_dir = Path(data_dir) / "keys"
        self.public, self.secret = ensure_keypair(self.keys_dir, "server")
        self.store = KeyStore(self.keys_dir)
        local_pub, _ = ensure_keypair(self.keys_dir, LOCAL)
        self.store.authorize(LOCAL, local_pub)
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.reload()

    def reload(self) -> None:
        self.auth.configure_curve(domain="*", location=str(self.store.authorized))

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        self.auth.stop()


def apply_client(sock: zmq.Socket, curve: dict | None) -> None:
    """curve = {"public", "secret", "server"} (bytes) or None for a plain socket."""
    if curve:
        sock.curve_secretkey = curve["secret"]
        sock.curve_publickey = curve["public"]
        sock.curve_serverkey = curve["server"]


def local_client(data_dir: str | Path) -> dict | None:
    """The master's own client keys, when the bus in this data dir is secured."""
    keys = Path(data_dir) / "keys"
    if not (keys / "server.key").exists() or not (keys / f"{LOCAL}.key_secret").exists():
        return None
    try:
        pub, sec = zmq.auth.load_certificate(keys / f"{LOCAL}.key_secret")
        server = zmq.auth.load_certificate(keys / "server.key")[0]
    except (OSError, ValueError):
        return None
    return {"public": pub, "secret": sec, "server": server}
