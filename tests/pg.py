"""A real PostgreSQL server for tests (Debian `postgresql`), on a free loopback port, in a
temp dir of its own (never the system cluster on 5432). PostgreSQL refuses to run as root:
as root the cluster belongs to the `postgres` user (initdb / pg_ctl through `su`).

    server = PgServer(tmp); server.start()
    url = server.create_database()     # a fresh, empty database; its postgresql:// URL
    server.stop()

The session fixture `pg_server` (tests/conftest.py) starts one server for the whole run.
"""

from __future__ import annotations

import glob
import itertools
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.sshd import free_port

USER = "architect"   # the cluster's superuser (initdb -U), trusted on loopback only


def pg_bin() -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb, or a clear error."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise RuntimeError("these tests need a PostgreSQL server: apt-get install postgresql "
                           "(./scripts/test installs it when run as root)")
    return Path(found[-1]).parent


class PgServer:
    """initdb + pg_ctl on 127.0.0.1:`port`; `url(db)`, `create_database()`, `stop()`."""

    def __init__(self, tmp: Path | None = None, port: int | None = None,
                 listen: tuple[str, ...] = (), hba: tuple[str, ...] = ()):
        """listen: addresses to listen on besides 127.0.0.1 (a test's bridge); hba: lines
        appended to pg_hba.conf at initdb (who may connect from there, and how)."""
        self.listen, self.hba = tuple(listen), tuple(hba)
        self.bin = pg_bin()
        self.dir = Path(tmp or tempfile.mkdtemp(prefix="architect-pg-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.log = self.dir / "log"
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0
        self._names = itertools.count(1)
        if self.as_root:   # the folder (and the socket dir -k) must be the postgres user's
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir, 0o700)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in argv]
        if self.as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> "PgServer":
        if not (self.data / "PG_VERSION").exists():
            self._run(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", USER,
                      "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8")
            if self.hba:
                with open(self.data / "pg_hba.conf", "a") as conf:
                    conf.write("".join(f"{line}\n" for line in self.hba))
        listen = ",".join(("127.0.0.1", *self.listen))
        opts = (f"-k {self.dir} -p {self.port} -c listen_addresses={listen} "
                "-c fsync=on -c max_connections=200")
        done = self._run(self.bin / "pg_ctl", "-D", self.data, "-o", opts, "-l", self.log,
                         "-w", "-t", "60", "start", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}\n"
                               f"{self.log.read_text() if self.log.exists() else ''}")
        self.wait()
        return self

    def wait(self, timeout: float = 30.0) -> None:
        import psycopg
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str | None = None) -> str:
        import psycopg
        name = name or f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')  # faster here
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop",
                      check=False)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
