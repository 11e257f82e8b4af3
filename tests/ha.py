"""Several masters for tests: `architect server` processes on one PostgreSQL database, each
with its own data dir and web port on loopback, and nodes that know every master's URL.

    ha = Masters(tmp, pg_server.create_database(), count=2)
    ha.start()                        # every master; returns when one is active
    ha.start_node("n1", slots=2)      # agent + worker, ARCHITECT_DASHBOARD_URL=url1,url2
    i = ha.active(); ha.kill(i)       # kill -9 the active master's process group
    ha.wait_active(timeout=10)        # the index of the new active master
    ha.stop_all()

The masters' bus is the default loopback one (ipc sockets in each data dir), which nodes
on this machine reach through the address the active master advertises.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import requests

from tests.helpers import Cluster, free_port_block, wait_for


class Masters:
    def __init__(self, tmp: Path, database_url: str, count: int = 2, lease_ttl: float = 5.0,
                 interval: float = 0.3, extra_env: dict | None = None):
        self.tmp = Path(tmp)
        self.database_url = database_url
        env = {"ARCHITECT_DATABASE_URL": database_url, "ARCHITECT_LEASE_TTL": str(lease_ttl),
               "ARCHITECT_USER": "", "ARCHITECT_PASSWORD": "", **(extra_env or {})}
        self.masters = [Cluster(self.tmp / f"m{i}", interval=interval, extra_env=env)
                        for i in range(count)]
        for m in self.masters:
            m.tmp.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port_block(1) for _ in range(count)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.nodes = Cluster(self.tmp / "nodes", interval=interval, extra_env={
            "ARCHITECT_DASHBOARD_URL": ",".join(self.urls), **(extra_env or {})})
        self.nodes.tmp.mkdir(parents=True, exist_ok=True)

    # --- masters -----------------------------------------------------------------------
    def start_master(self, i: int, *extra: str):
        m = self.masters[i]
        proc = m.spawn("server", "server", "--host", "127.0.0.1", "--port", str(self.ports[i]),
                       *extra)
        m.wait_http(self.urls[i] + "/healthz", proc, "server", timeout=30, want=None)
        return proc

    def start(self, timeout: float = 30.0) -> int:
        for i in range(len(self.masters)):
            self.start_master(i)
        return self.wait_active(timeout)

    def health(self, i: int, timeout: float = 2.0) -> dict | None:
        try:
            return requests.get(self.urls[i] + "/healthz", timeout=timeout).json()
        except (requests.RequestException, ValueError):
            return None

    def roles(self) -> list[str | None]:
        return [(h or {}).get("role") if (h := self.health(i)) else None
                for i in range(len(self.masters))]

    def active(self) -> int | None:
        """The index of the master that says it is active (and whose broker answers)."""
        for i in range(len(self.masters)):
            h = self.health(i)
            if h and h.get("role") == "active" and h.get("status") == "ok":
                return i
        return None

    def wait_active(self, timeout: float = 15.0, other_than: int | None = None) -> int:
        def found():
            i = self.active()
            return None if i is None or i == other_than else i + 1
        return wait_for(found, timeout, interval=0.05, what="an active master") - 1

    def kill(self, i: int, sig=signal.SIGKILL) -> None:
        self.masters[i].kill("server", sig)

    def log(self, i: int) -> str:
        return self.masters[i].log("server")

    # --- nodes and requests --------------------------------------------------------------
    def start_node(self, name: str, slots: int = 2, agent: bool = True, worker: bool = True):
        if agent:
            self.nodes.start_agent(name)
        if worker:
            self.nodes.start_worker(name, "-c", str(slots))

    def api(self, path: str, method: str = "GET", i: int | None = None, timeout: float = 5.0,
            **kw) -> requests.Response:
        """A request to master `i` (default: the active one)."""
        i = self.active() if i is None else i
        return requests.request(method, self.urls[i if i is not None else 0] + path,
                                timeout=timeout, **kw)

    def wait_workers(self, count: int, timeout: float = 20.0) -> list:
        return wait_for(lambda: len(w := self.api("/api/workers").json()["workers"]) >= count and w,
                        timeout, what=f"{count} workers on the active master")

    def stop_all(self) -> None:
        self.nodes.stop_all()
        for m in self.masters:
            m.stop_all()

    def wait_gone(self, i: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.health(i, 0.5) is not None:
            time.sleep(0.05)
