"""A thread-safe paramiko connection pool.

Per host (host, port, user): at most `max_per_host` connections; an idle open one is reused,
a dead one is replaced; when all are busy a caller waits up to its timeout. One channel user
at a time per connection. Host keys are checked against a known_hosts file with
RejectPolicy: an unknown or changed key refuses the connection before any command is sent,
unless the operator trusts it (`trust()`), or accept_new is set (trust on first use; a
changed key is still refused).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko


class SSHError(Exception):
    """A connection could not be made or used (`kind`: connect, auth, hostkey, timeout, pool)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Target:
    host: str
    port: int = 22
    user: str = "root"
    key_file: str = "~/.ssh/architect_key"

    @property
    def key(self) -> tuple:
        return (self.host, self.port, self.user)

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(eq=False)
class Conn:
    target: Target
    client: paramiko.SSHClient
    created: float
    last_used: float
    in_use: bool = False
    uses: int = 0

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


@dataclass
class HostStats:
    created: int = 0
    reused: int = 0
    failures: int = 0
    conns: list = field(default_factory=list)


class _AddAndSave(paramiko.MissingHostKeyPolicy):
    """Trust on first use: record an unknown host's key (a *changed* key never gets here:
    paramiko raises BadHostKeyException first)."""

    def __init__(self, pool: "SSHPool"):
        self.pool = pool

    def missing_host_key(self, client, hostname, key):
        self.pool._remember(hostname, key)


class SSHPool:
    def __init__(self, known_hosts: str, max_per_host: int = 3, connect_timeout: float = 30.0,
                 idle_timeout: float = 300.0, keepalive: float = 30.0, accept_new: bool = False):
        self.known_hosts = known_hosts
        self.max_per_host = max_per_host
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.keepalive = keepalive
        self.accept_new = accept_new
        self._hosts: dict[tuple, HostStats] = {}
        self._cond = threading.Condition()
        self._kh_lock = threading.Lock()
        Path(known_hosts).parent.mkdir(parents=True, exist_ok=True)
        Path(known_hosts).touch(exist_ok=True)

    # --- connections ---------------------------------------------------------------------
    def acquire(self, target: Target, timeout: float) -> Conn:
        deadline = time.monotonic() + timeout
        with self._cond:
            stats = self._hosts.setdefault(target.key, HostStats())
            while True:
                for conn in list(stats.conns):
                    if not conn.in_use:
                        if conn.alive():
                            conn.in_use = True
                            conn.uses += 1
                            stats.reused += 1
                            return conn
                        stats.conns.remove(conn)  # dead: replace it
                        conn.close()
                if len(stats.conns) < self.max_per_host:
                    placeholder = Conn(target, None, time.time(), time.time(), in_use=True)
                    stats.conns.append(placeholder)
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SSHError("pool", f"all {self.max_per_host} connections to "
                                           f"{target.label} stayed busy for {timeout:g}s")
                self._cond.wait(left)
        try:  # connect outside the lock: one slow host must not hold up the others
            placeholder.client = self._connect(target, min(self.connect_timeout,
                                                           max(0.1, deadline - time.monotonic())))
        except BaseException:
            with self._cond:
                stats.conns.remove(placeholder)
                stats.failures += 1
                self._cond.notify_all()
            raise
        with self._cond:
            stats.created += 1
            placeholder.uses = 1
        return placeholder

    def release(self, conn: Conn, broken: bool = False) -> None:
        with self._cond:
            conn.in_use = False
            conn.last_used = time.time()
            stats = self._hosts.get(conn.target.key)
            if broken and stats and conn in stats.conns:
                stats.conns.remove(conn)
                conn.close()
            self._cond.notify_all()

    def _connect(self, target: Target, timeout: float) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        with self._kh_lock:
            client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(_AddAndSave(self) if self.accept_new
                                           else paramiko.RejectPolicy())
        key_file = os.path.expanduser(target.key_file) if target.key_file else None
        started = time.monotonic()
        try:
            client.connect(target.host, port=target.port, username=target.user,
                           key_filename=key_file if key_file and os.path.exists(key_file) else None,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           look_for_keys=False, allow_agent=False)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise SSHError("hostkey", f"host key of {target.label} CHANGED (expected "
                                      f"{exc.expected_key.get_base64()[:16]}…): refused; if "
                                      "the host was reinstalled, remove the old key and trust "
                                      "it again") from None
        except paramiko.SSHException as exc:
            client.close()
            text = str(exc)
            if "not found in known_hosts" in text:
                raise SSHError("hostkey", f"{target.label} has an unknown host key: refused "
                                          "(trust it with `architect ssh trust NODE`)") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise SSHError("auth", f"authentication to {target.label} failed "
                                       f"(key {target.key_file}): {text}") from None
            if time.monotonic() - started >= timeout * 0.9:  # e.g. no banner: a hung host
                raise SSHError("timeout", f"connecting to {target.label} timed out after "
                                          f"{timeout:g}s ({text})") from None
            raise SSHError("connect", f"SSH to {target.label} failed: {text}") from None
        except (socket.timeout, TimeoutError):
            client.close()
            raise SSHError("timeout", f"connecting to {target.label} timed out after "
                                      f"{timeout:g}s") from None
        except OSError as exc:
            client.close()
            raise SSHError("connect", f"cannot connect to {target.label}: "
                                      f"{exc.strerror or exc}") from None
        transport = client.get_transport()
        if transport is not None and self.keepalive:
            transport.set_keepalive(int(self.keepalive))
        return client

    # --- host keys -----------------------------------------------------------------------
    def _remember(self, hostname: str, key) -> None:
        with self._kh_lock:
            keys = paramiko.HostKeys()
            keys.load(self.known_hosts)
            keys.add(hostname, key.get_name(), key)
            keys.save(self.known_hosts)

    def trust(self, target: Target, timeout: float = 10.0) -> dict:
        """Fetch the host's current key and record it as trusted (the operator's decision)."""
        try:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
        except OSError as exc:
            raise SSHError("connect", f"cannot connect to {target.label}: {exc}") from None
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
        except paramiko.SSHException as exc:
            raise SSHError("connect", f"no SSH handshake with {target.label}: {exc}") from None
        finally:
            transport.close()
        name = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
        with self._kh_lock:
            keys = paramiko.HostKeys()
            keys.load(self.known_hosts)
            keys.pop(name, None)
            keys.add(name, key.get_name(), key)
            keys.save(self.known_hosts)
        self.close_host(target)
        return {"host": name, "key_type": key.get_name(),
                "fingerprint": key.fingerprint if hasattr(key, "fingerprint") else None}

    # --- figures and cleanup ------------------------------------------------------------
    def stats(self) -> dict:
        with self._cond:
            hosts, totals = {}, {"open": 0, "in_use": 0, "idle": 0, "created": 0, "reused": 0,
                                 "failures": 0}
            for (host, port, user), s in self._hosts.items():
                open_ = sum(1 for c in s.conns if c.client is not None)
                busy = sum(1 for c in s.conns if c.in_use)
                entry = {"open": open_, "in_use": busy, "idle": open_ - min(busy, open_),
                         "created": s.created, "reused": s.reused, "failures": s.failures}
                hosts[f"{user}@{host}:{port}"] = entry
                for k in totals:
                    totals[k] += entry[k]
        return {"hosts": hosts, "totals": totals, "max_connections_per_host": self.max_per_host,
                "connection_timeout": self.connect_timeout, "idle_timeout": self.idle_timeout}

    def cleanup(self, idle_for: float = 0.0) -> int:
        """Close connections idle for at least `idle_for` seconds (0: every idle one)."""
        closed = []
        now = time.time()
        with self._cond:
            for stats in self._hosts.values():
                for conn in list(stats.conns):
                    if not conn.in_use and conn.client is not None and \
                            (now - conn.last_used >= idle_for or not conn.alive()):
                        stats.conns.remove(conn)
                        closed.append(conn)
        for conn in closed:
            conn.close()
        return len(closed)

    def close_host(self, target: Target) -> None:
        with self._cond:
            stats = self._hosts.get(target.key)
            idle = [c for c in (stats.conns if stats else []) if not c.in_use]
            for c in idle:
                stats.conns.remove(c)
        for c in idle:
            c.close()

    def close(self) -> None:
        self.cleanup(0.0)
