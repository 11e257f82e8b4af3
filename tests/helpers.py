"""Test helpers: free ports, waiting on a condition, and real processes (broker, agents)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from architect.bus.rpc import RpcClient
from architect.bus.transport import Endpoints, bus_endpoints

PYTHON = sys.executable


def free_port_block(count: int = 4) -> int:
    """A base port with `count` consecutive free loopback ports."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65000:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free block of ports")


def wait_for(condition, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll `condition()` until it returns a truthy value; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


class Cluster:
    """Real processes on loopback, with one data dir, one state dir and one port block."""

    def __init__(self, tmp: Path, interval: float = 0.3, timeout: float = 2.0, extra_env=None):
        self.tmp = Path(tmp)
        self.base_port = free_port_block(4)
        self._endpoints = None  # set to pin them (a broker bound elsewhere by a flag)
        self._endpoints_for = (None, None)
        self.interval = interval
        self.timeout = timeout
        self.env = dict(os.environ)
        self.env.update({
            "ARCHITECT_BUS_PORT": str(self.base_port),
            "ARCHITECT_DATA_DIR": str(self.tmp / "data"),
            "ARCHITECT_STATE_DIR": str(self.tmp / "state"),
            "ARCHITECT_CONFIG": str(self.tmp / "config.json"),
            "ARCHITECT_HEARTBEAT_INTERVAL": str(interval),
            "ARCHITECT_HEARTBEAT_TIMEOUT": str(timeout),
            "ARCHITECT_REQUEST_TIMEOUT": "3",
            "ARCHITECT_WORKER_HEARTBEAT_INTERVAL": "0.3",
            "ARCHITECT_WORKER_LIVENESS": "4",
            "PYTHONUNBUFFERED": "1",
        })
        self.env.pop("ARCHITECT_DASHBOARD_URL", None)
        self.env.update(extra_env or {})
        self.procs: dict[str, subprocess.Popen] = {}
        self._rpc = None
        self._rpc_endpoint = None

    @property
    def endpoints(self) -> Endpoints:
        """Where this cluster's broker binds, from its environment as the broker reads it:
        ipc in DATA_DIR's bus folder on loopback, tcp with ARCHITECT_BUS_LOCAL=tcp or CURVE."""
        if self._endpoints is not None:
            return self._endpoints
        key = tuple(sorted((k, v) for k, v in self.env.items() if k.startswith("ARCHITECT_")))
        if self._endpoints_for[0] != key:
            from architect import config
            self._endpoints_for = (key, bus_endpoints(config.load(env=self.env)))
        return self._endpoints_for[1]

    @endpoints.setter
    def endpoints(self, value: Endpoints) -> None:
        self._endpoints = value

    # --- processes ----------------------------------------------------------------
    def spawn(self, key: str, *args: str, env=None) -> subprocess.Popen:
        log = open(self.tmp / f"{key}.log", "ab")
        proc = subprocess.Popen([PYTHON, "-m", "architect", *args], env={**self.env, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[key] = proc
        return proc

    def start_broker(self) -> subprocess.Popen:
        proc = self.spawn("broker", "broker")
        wait_for(lambda: self.rpc("ping", timeout=0.5), 15, what="broker to answer ping")
        return proc

    def start_agent(self, name: str, *extra: str, real_metrics: bool = False) -> subprocess.Popen:
        """An agent process. Unless real_metrics, CPU, memory, disk and load come from a file
        of calm values, so this machine's own load (other tests) cannot flip health levels."""
        if not real_metrics and "--metrics-file" not in extra:
            calm = self.tmp / "calm-metrics.json"
            if not calm.exists():
                calm.write_text('{"cpu_percent": 10.0, "memory_percent": 20.0, '
                                '"disk_percent": 30.0, "load_1": 0.2}')
            extra = (*extra, "--metrics-file", str(calm))
        return self.spawn(f"agent-{name}", "agent", "--name", name, *extra)

    def start_worker(self, name: str, *extra: str, key: str | None = None) -> subprocess.Popen:
        return self.spawn(key or f"worker-{name}", "worker", "--name", name, *extra)

    def wait_workers(self, count: int, timeout: float = 15.0) -> list:
        return wait_for(lambda: len(w := self.rpc("worker.list")) >= count and w, timeout,
                        what=f"{count} workers connected")

    def submit(self, **spec) -> int:
        spec.setdefault("task_type", "shell")
        return self.rpc("task.submit", spec)["id"]

    def wait_task(self, task_id: int, timeout: float = 20.0) -> dict:
        task = self.rpc("task.wait", {"id": task_id, "timeout": timeout}, timeout=timeout + 5)
        assert task["final"], f"task {task_id} not final after {timeout}s: {task}"
        return task

    def kill(self, key: str, sig=signal.SIGKILL) -> None:
        proc = self.procs.pop(key)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def stop_all(self) -> None:
        for key in list(self.procs):
            proc = self.procs[key]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for key in list(self.procs):
            proc = self.procs.pop(key)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._rpc:
            self._rpc.close()

    def log(self, key: str) -> str:
        path = self.tmp / f"{key}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- talking to it ------------------------------------------------------------
    def rpc(self, method: str, params: dict | None = None, timeout: float = 3.0):
        if self._rpc is not None and self._rpc_endpoint != self.endpoints.control:
            self._rpc.close()  # the test moved the bus (cluster.env or cluster.endpoints)
            self._rpc = None
        if self._rpc is None:
            from architect.bus.security import local_client
            self._rpc_endpoint = self.endpoints.control
            curve = local_client(self.tmp / "data") if self._rpc_endpoint.startswith("tcp") \
                else None  # a secured bus: the master's own key
            self._rpc = RpcClient(self._rpc_endpoint, timeout=timeout, curve=curve)
        return self._rpc.call(method, params, timeout=timeout)

    def cli(self, *args: str, check: bool = True, env=None) -> subprocess.CompletedProcess:
        result = subprocess.run([PYTHON, "-m", "architect", *args], env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"architect {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def node(self, name: str) -> dict | None:
        for node in self.rpc("node.list"):
            if node["name"] == name:
                return node
        return None

    # --- web server (REST tests) ----------------------------------------------------
    def start_server(self, *extra: str, key: str = "server", env=None, scheme: str = "http",
                     command: str = "server", timeout: float = 30.0, healthy: bool = True) -> str:
        """`architect server` (broker + web; or `command`, e.g. "web") bound to 127.0.0.1 on a
        free port, with no web credentials unless `env` sets them. Waits until /healthz
        answers (200 when `healthy`, any status otherwise) and returns the base URL."""
        port = free_port_block(1)
        env = {"ARCHITECT_USER": "", "ARCHITECT_PASSWORD": "", **(env or {})}
        proc = self.spawn(key, command, "--host", "127.0.0.1", "--port", str(port), *extra, env=env)
        base = f"{scheme}://127.0.0.1:{port}"
        self.wait_http(base + "/healthz", proc, key, timeout, want=200 if healthy else None)
        return base

    def wait_http(self, url: str, proc, key: str, timeout: float = 30.0, want: int | None = 200):
        """Poll `url` (TLS unverified) until it answers (with `want` if given); fail at once,
        with the process log, if the process exits first."""
        import requests
        import urllib3
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

        def answered():
            if proc.poll() is not None:
                raise AssertionError(f"{key} exited with {proc.returncode}:\n{self.log(key)}")
            try:
                status = requests.get(url, timeout=2, verify=False).status_code
            except requests.RequestException:
                return False
            return want is None or status == want

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answered():
                return
            time.sleep(0.1)
        raise AssertionError(f"{url} did not answer{f' {want}' if want else ''} within "
                             f"{timeout}s:\n{self.log(key)}")


def store_rows(env: dict, db_path, sql: str, params=()) -> list[dict]:
    """db_rows from the broker's store whichever it is: PostgreSQL when the processes' env
    has ARCHITECT_DATABASE_URL (a read-only connection for this query; `?` placeholders
    become `%s`), else the SQLite file at db_path."""
    url = env.get("ARCHITECT_DATABASE_URL")
    if not url:
        return db_rows(db_path, sql, params)
    from psycopg.rows import dict_row

    from architect.broker.store.postgres import open_reader
    with open_reader(url, timeout=5) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.replace("?", "%s"), params).fetchall()


def db_rows(db_path, sql: str, params=()) -> list[dict]:
    """Rows as dicts, through a read-only connection opened for this query only (so what it
    sees is what is on disk, not what some open connection holds)."""
    import sqlite3
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()
