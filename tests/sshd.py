"""A real OpenSSH server for tests, on a free loopback port, with generated keys."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def require_sshd() -> None:
    if not os.path.exists(SSHD):
        raise RuntimeError("these tests need OpenSSH's sshd: apt-get install openssh-server "
                           "(./scripts/test installs it when run as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class Sshd:
    """start() / stop() / restart(); `port`, `client_key`, `user`, `host_pub`."""

    def __init__(self, tmp: Path, port: int | None = None, host: str = "127.0.0.1",
                 netns: str | None = None):
        require_sshd()
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port()
        self.netns = netns
        self.user = getpass.getuser()
        self.host_key = keygen(self.dir / "host_ed25519")
        self.client_key = self.dir / "client_ed25519"
        if not self.client_key.exists():
            keygen(self.client_key)
        shutil.copy(f"{self.client_key}.pub", self.dir / "authorized_keys")
        self.host_pub = (self.dir / "host_ed25519.pub").read_text().split()[:2]
        self.config = self.dir / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", f"ListenAddress {host}", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}", f"PidFile {self.dir / 'sshd.pid'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
            "MaxSessions 20", "MaxStartups 50:30:100", "LogLevel ERROR", ""]))
        self.proc: subprocess.Popen | None = None

    def known_hosts_line(self) -> str:
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {self.host_pub[0]} {self.host_pub[1]}\n"

    def start(self) -> "Sshd":
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        cmd = [SSHD, "-D", "-e", "-f", str(self.config)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "ab"),
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'log').read_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        """Kill the listener and every session it forked (the host is gone)."""
        import psutil
        if self.proc and self.proc.poll() is None:
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            os.killpg(self.proc.pid, signal.SIGKILL)
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.wait(5)
        self.proc = None
