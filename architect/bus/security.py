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
RESERVED = frozenset({LOCAL, "server"})
ROLES = ("node", "viewer", "operator", "admin")  # as in architect.broker.methods
DEFAULT_ROLE = "node"                           # what joining grants
# which roles may connect to which socket (ZAP domain = socket name); methods on the
# control socket are checked one by one by the broker
SOCKET_ROLES = {"heartbeat": {"node", "admin"}, "work": {"node", "admin"},
                "control": set(ROLES), "events": {"viewer", "operator", "admin"}}


class KeyStoreError(ValueError):
    pass


class KeyConflict(KeyStoreError):
    """The name or the key is already someone else's."""


def fingerprint(public: bytes) -> str:
    """A short, stable name for a public key, to compare by eye (first 12 Z85 chars)."""
    return public.decode()[:12]


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
    """A Z85 CURVE public key (40 chars) → bytes; KeyStoreError otherwise."""
    if not isinstance(text, str) or len(text) != 40:
        raise KeyStoreError("public_key must be a 40-character Z85 CURVE key")
    try:
        raw = zmq.utils.z85.decode(text.encode())
    except Exception:
        raise KeyStoreError("public_key is not valid Z85") from None
    if len(raw) != 32:
        raise KeyStoreError("public_key must decode to 32 bytes")
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
            raise KeyStoreError(f"key name {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
        return name

    def write_key(self, folder: Path, name: str, public: bytes, role: str = DEFAULT_ROLE) -> None:
        if role not in ROLES:
            raise KeyStoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        path = folder / f"{self._check(name)}.key"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"metadata\n    role = \"{role}\"\ncurve\n    public-key = \""
                       + public.decode() + "\"\n")
        os.replace(tmp, path)  # the authenticator never reads half a file

    def public_of(self, folder: Path, name: str) -> bytes | None:
        path = folder / f"{self._check(name)}.key"
        return zmq.auth.load_certificate(path)[0] if path.exists() else None

    @staticmethod
    def role_in(path: Path) -> str:
        """The role written in a key file's metadata; keys from before roles: local is
        admin, every other key a node."""
        try:
            for line in path.read_text().splitlines():
                key, sep, value = line.strip().partition("=")
                if sep and key.strip() == "role":
                    role = value.strip().strip("\"'")
                    return role if role in ROLES else DEFAULT_ROLE
        except OSError:
            pass
        return "admin" if path.stem == LOCAL else DEFAULT_ROLE

    def role_of(self, name: str) -> str | None:
        path = self.authorized / f"{self._check(name)}.key"
        return self.role_in(path) if path.exists() else None

    def set_role(self, name: str, role: str) -> None:
        public = self.public_of(self.authorized, name)
        if public is None:
            raise KeyStoreError(f"no authorized key {name!r}")
        if name == LOCAL and role != "admin":
            raise KeyStoreError("the master's own key stays admin")
        self.write_key(self.authorized, name, public, role)

    def entries(self) -> dict[bytes, tuple[str, str]]:
        """Z85 public key → (name, role) of every authorized key."""
        out = {}
        for path in self.authorized.glob("*.key"):
            try:
                public = zmq.auth.load_certificate(path)[0]
            except (OSError, ValueError):
                continue
            out[public] = (path.stem, self.role_in(path))
        return out

    def authorize(self, name: str, public: bytes, role: str | None = None) -> None:
        """Authorize a key; the same key keeps its role, a new one gets `role` (node)."""
        if role is None:
            same = self.public_of(self.authorized, name) == public
            role = (self.role_of(name) if same else None) or DEFAULT_ROLE
        self.write_key(self.authorized, name, public, role)
        (self.pending / f"{name}.key").unlink(missing_ok=True)

    def taken(self, name: str, public: bytes) -> bool:
        """Is `name` authorized with another key (then joining must not replace it)?"""
        current = self.public_of(self.authorized, name)
        return current is not None and current != public

    def request(self, name: str, public: bytes) -> str:
        """A join request: 'authorized' if this exact key already is, else 'pending'. A
        pending request is never replaced by another key (someone could swap in theirs
        before the operator accepts): revoke the name first."""
        if self.public_of(self.authorized, name) == public:
            return "authorized"
        pending = self.public_of(self.pending, name)
        if pending is not None and pending != public:
            raise KeyConflict(f"another key is already waiting under the name {name!r} "
                              f"({fingerprint(pending)}); if that is not this node, "
                              f"`architect keys revoke {name}` and join again")
        self.write_key(self.pending, name, public)
        return "pending"

    def accept(self, name: str) -> None:
        src = self.pending / f"{self._check(name)}.key"
        if not src.exists():
            raise KeyStoreError(f"no pending key for {name!r}")
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
        def prints(folder):
            out = {}
            for path in folder.glob("*.key"):
                try:
                    out[path.stem] = fingerprint(zmq.auth.load_certificate(path)[0])
                except (OSError, ValueError):
                    continue
            return out
        return {"authorized": names(self.authorized), "pending": names(self.pending),
                "roles": {p.stem: self.role_in(p) for p in self.authorized.glob("*.key")},
                "fingerprints": {**prints(self.pending), **prints(self.authorized)}}


class _KeyAuthenticator(ThreadAuthenticator):
    """ZAP: a key gets in when it is authorized and its role may use that socket (the
    socket's ZAP domain is its name). Its User-Id on every message is the Z85 public key
    (pyzmq's default): the broker looks the key up on every message, so a revoked key stays
    out even when its name is authorized again with another key."""

    def __init__(self, ctx: zmq.Context, security: "ServerSecurity"):
        super().__init__(ctx)
        self.security = security

    def callback(self, domain: str, z85_key: bytes) -> bool:
        entry = self.security.by_public.get(z85_key)
        return entry is not None and entry[1] in SOCKET_ROLES.get(domain, ())


class ServerSecurity:
    """The broker's CURVE: server keys, key store, and the ZAP authenticator."""

    def __init__(self, data_dir: str | Path, ctx: zmq.Context):
        self.keys_dir = Path(data_dir) / "keys"
        self.public, self.secret = ensure_keypair(self.keys_dir, "server")
        self.store = KeyStore(self.keys_dir)
        local_pub, _ = ensure_keypair(self.keys_dir, LOCAL)
        self.store.authorize(LOCAL, local_pub, "admin")
        self.by_public: dict[bytes, tuple[str, str]] = {}  # Z85 key → (name, role)
        self.roles: dict[str, str] = {}   # key name → role
        self.on_change = None  # called after a change (several masters: to the database)
        self.load()
        self.auth = _KeyAuthenticator(ctx, self)
        self.auth.start()
        for domain in SOCKET_ROLES:
            self.auth.configure_curve_callback(domain, self.auth)

    def reload(self) -> None:
        """Re-read the authorized keys (after a join, accept, revoke or role change)."""
        self.load()
        if self.on_change is not None:
            self.on_change()

    def load(self) -> None:
        """Re-read the authorized keys from the files (no on_change)."""
        entries = self.store.entries()
        self.by_public = entries                      # swapped whole: the ZAP thread reads it
        self.roles = {name: role for name, role in entries.values()}

    def apply(self, sock: zmq.Socket, domain: str) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        sock.zap_domain = domain.encode()

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
    try:  # (another user's data dir is 0700: PermissionError, as good as absent)
        if not (keys / "server.key").exists() or not (keys / f"{LOCAL}.key_secret").exists():
            return None
        pub, sec = zmq.auth.load_certificate(keys / f"{LOCAL}.key_secret")
        server = zmq.auth.load_certificate(keys / "server.key")[0]
    except (OSError, ValueError):
        return None
    return {"public": pub, "secret": sec, "server": server}
