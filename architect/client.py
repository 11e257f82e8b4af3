"""Python client for scripts: submit tasks, wait for them, read nodes.

    from architect.client import Client
    c = Client(broker="127.0.0.1")                  # or Client(dashboard_url="http://master:8080")
    # on the master, 127.0.0.1 means the bus's Unix sockets in DATA_DIR/bus when they exist
    # (data_dir=..., default the Config's: $ARCHITECT_DATA_DIR or ./data), else the tcp ports
    c = Client.from_config(architect.config.load())  # connect exactly as the CLI does
    t = c.submit("shell", {"command": "uptime"}, requirements=["docker"])
    done = c.wait(t["id"], timeout=60)              # the task dict once final
    print(done["status"], done["result"]["stdout"])
    squares = c.map("architect.agent.builtin_tasks:add", [(1, 1), (2, 2)])   # [2, 4]

Errors: ArchitectError and its subclasses (BrokerUnavailable, KeyPending, RequestRejected,
NotFound, WaitTimeout, TaskFailed), importable from here; the tree is in client_errors.py.

Settings the constructor's arguments do not name (data_dir, bus_local, join_token, the web
login user/password, state_dir) come from the Config (architect.config.load: config file
and ARCHITECT_* environment); an invalid one raises architect.config.ConfigError.

One Client per thread (it owns a ZeroMQ socket).
"""

from __future__ import annotations

import dataclasses
import getpass
import time
from typing import Any, Iterable

from architect import config as config_mod
from architect.bus.errors import RemoteError, RequestTimeout
from architect.bus.rpc import RpcClient
# the errors are imported from here (architect.client); they live in client_errors.py
from architect.client_errors import (ArchitectError, BrokerUnavailable,  # noqa: F401
                                     KeyPending, NotFound, RequestRejected, TaskFailed,
                                     WaitTimeout)
from architect.client_schedules import SchedulesMixin  # add_schedule, schedules, ...
from architect.client_workflows import WorkflowsMixin  # chain, group, chord, retry, ...


class Client(WorkflowsMixin, SchedulesMixin):
    def __init__(self, dashboard_url: str | None = None, broker: str | None = None,
                 bus_port: int = 5555, timeout: float = 10.0, control_endpoint: str | None = None,
                 data_dir: str | None = None):
        """dashboard_url (it wins over broker), else broker (default 127.0.0.1) and bus_port;
        or control_endpoint itself (a plain socket). Connects through from_config()."""
        if control_endpoint is not None:
            self._open(control_endpoint, None, timeout)
            return
        host = "127.0.0.1" if dashboard_url else broker or "127.0.0.1"
        cfg = config_mod.load({"dashboard_url": dashboard_url or "", "broker_host": host,
                               "bus_port": bus_port, "data_dir": data_dir})
        self._connect(cfg, default_key_name(), timeout)

    @classmethod
    def from_config(cls, cfg: config_mod.Config, key_name: str | None = None,
                    timeout: float | None = None) -> "Client":
        """A client connected as the CLI connects, from a Config (architect.config.load()):
        a broker_host other than 127.0.0.1 means that broker, else dashboard_url when set
        (GET /api/bus; on a secured bus join it as key_name, default client-<user>, with
        join_token and the web login), else this machine's bus (the ipc sockets of data_dir
        when its broker made them, else the ports; on a secured master its local key from
        DATA_DIR/keys; else bus_server_key with this client's own key). timeout: seconds per
        reply, default cfg.request_timeout. BrokerUnavailable (KeyPending) if that fails."""
        client = cls.__new__(cls)
        client._connect(cfg, key_name or default_key_name(),
                        cfg.request_timeout if timeout is None else timeout)
        return client

    def _connect(self, cfg: config_mod.Config, key_name: str, timeout: float) -> None:
        from architect.discovery import DiscoveryError, connect_info
        if cfg.dashboard_url and cfg.broker_host != "127.0.0.1":
            cfg = dataclasses.replace(cfg, dashboard_url="")  # a broker named: go straight there
        try:
            endpoints, curve, status = connect_info(cfg, key_name)
        except DiscoveryError as exc:
            raise BrokerUnavailable(str(exc)) from None
        if status == "pending":
            raise KeyPending(key_name)
        self._open(endpoints["control"], curve, timeout)
        if cfg.dashboard_url:   # found through the dashboard(s): follow the active master
            self._found = (cfg, key_name)

    def _open(self, endpoint: str, curve: dict | None, timeout: float) -> None:
        self.endpoint = endpoint  # the control socket this client talks to
        self.timeout = timeout
        if not hasattr(self, "_inflight"):   # kept across a reconnect (_follow)
            self._inflight: list[Submission] = []
            self._uncollected: dict[int, None] = {}   # submitted here, not waited for yet
            self._finished: dict[int, dict] = {}      # final, fetched with another's wait
        self._rpc = RpcClient(endpoint, timeout=timeout, curve=curve)

    def _follow(self) -> None:
        """After a timeout: ask the dashboards again which broker is active, so the next
        call goes there (several masters: a failover). The client keeps its key: it does
        not join again (a revoked key stays out)."""
        found = getattr(self, "_found", None)
        if found is None:
            return
        from architect.discovery import DiscoveryError, dashboard_urls, from_dashboards
        cfg = found[0]
        login = (cfg.user, cfg.password) if cfg.user and cfg.password else None
        try:
            endpoints, _url = from_dashboards(dashboard_urls(cfg), timeout=2.0, auth=login)
        except DiscoveryError:
            return
        curve, server = self._rpc.curve, endpoints.get("server_key")
        if curve and server:
            curve = {**curve, "server": server.encode()}
        if endpoints["control"] != self.endpoint or curve != self._rpc.curve:
            self._rpc.close()
            self._open(endpoints["control"], curve, self.timeout)

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> Any:
        """Any control method (see docs/PROTOCOL.md). With dashboard URLs, a call that
        times out makes the client find the active broker again for the next call; the
        timed-out call itself raises BrokerUnavailable (it may or may not have been done:
        give submits an idempotency_key to retry them safely)."""
        try:
            return self._rpc.call(method, params or {}, timeout=timeout)
        except RequestTimeout as exc:
            self._follow()
            raise BrokerUnavailable(str(exc)) from None
        except RemoteError as exc:
            cls = NotFound if exc.code == "not_found" else RequestRejected
            raise cls(exc.code, exc.message) from None

    # --- tasks ------------------------------------------------------------------------
    def submit(self, task_type: str, payload: dict | None = None, **options) -> dict:
        """Submit one task → {id, status, created}. options: requirements, node, timeout,
        max_attempts, retries, retry_backoff, priority, idempotency_key."""
        out = self.call("task.submit", {"task_type": task_type, "payload": payload or {},
                                        **_clean(options)})
        self._submitted(out["id"])
        return out

    def submit_async(self, task_type: str, payload: dict | None = None,
                     **options) -> "Submission":
        """Submit one task without waiting for the broker: returns when the request is
        sent — nothing is durable yet. The Submission's id / status / created (or
        .result()) wait for the broker's answer, which comes once the task is committed
        (durable); flush() waits for every submission in flight. Submits in flight share
        the broker's group commits, so a loop of submit_async() pays about one commit per
        loop iteration of the broker, not one per task. Same options as submit()."""
        rpc = self._rpc
        if rpc.in_flight >= MAX_IN_FLIGHT:   # back-pressure: settle the oldest first
            self._settle(self._inflight[0])
        req_id = rpc.send("task.submit", {"task_type": task_type, "payload": payload or {},
                                          **_clean(options)})
        handle = Submission(self, req_id)
        self._inflight.append(handle)
        return handle

    def flush(self, timeout: float | None = None) -> list["Submission"]:
        """Wait until every submission in flight is answered: on return, every one that
        was accepted is durable. The submissions; the first refused one raises its error
        (RequestRejected) after all are settled (the others' handles stay readable)."""
        done, self._inflight = list(getattr(self, "_inflight", [])), []
        for handle in done:
            self._settle(handle, timeout)
        for handle in done:
            if handle.error is not None:
                raise handle.error
        return done

    def _settle(self, handle: "Submission", timeout: float | None = None) -> None:
        if handle.settled:
            return
        try:
            handle.value = self._rpc.receive(handle.req_id, timeout)
            self._submitted(handle.value["id"])
        except RequestTimeout as exc:
            handle.error = BrokerUnavailable(f"submission not answered: {exc}")
        except RemoteError as exc:
            handle.error = RequestRejected(exc.code, exc.message)
        except KeyError:   # the socket was reset (a timeout): its reply will never come
            handle.error = BrokerUnavailable("submission lost: the connection to the broker "
                                             "was reset before its answer came")
        handle.settled = True
        if handle in self._inflight:
            self._inflight.remove(handle)

    def submit_many(self, specs: Iterable[dict]) -> list[dict]:
        """Submit many task specs (dicts of submit's params) in one request per 5,000."""
        specs = list(specs)
        out = []
        for i in range(0, len(specs), 5000):
            out.extend(self.call("task.submit_many", {"tasks": specs[i:i + 5000]}))
        return out

    def get(self, task_id: int, events: bool = False) -> dict:
        return self.call("task.get", {"id": task_id, "events": events})

    def list(self, **filters) -> list[dict]:
        """filters: status, node, task_type, limit, offset."""
        return self.call("task.list", _clean(filters))

    def cancel(self, task_id: int) -> dict:
        return self.call("task.cancel", {"id": task_id})

    def output(self, task_id: int, after_seq: int = -1) -> list[dict]:
        return self.call("task.output", {"id": task_id, "after_seq": after_seq})

    def wait(self, task_id: int | list[int], timeout: float = 60.0) -> dict | list[dict]:
        """The task (or list of tasks) once final; WaitTimeout if not final in time.

        Waiting for one task that this client submitted asks the broker, in the same
        request, about every other task it submitted and has not collected yet, and keeps
        the final ones: collecting N results one wait() at a time costs about one round
        trip per batch of tasks that finish together, not one per task."""
        if isinstance(task_id, list):
            return self._wait_all(task_id, timeout)
        done = self._finished.pop(task_id, None)
        if done is not None:
            self._uncollected.pop(task_id, None)
            return done
        if task_id not in self._uncollected or len(self._uncollected) == 1:
            self._uncollected.pop(task_id, None)
            return self._wait_all(task_id, timeout)
        deadline = time.monotonic() + timeout
        while True:
            ids = [task_id] + [i for i in self._uncollected if i != task_id][:4999]
            step = min(max(0.0, deadline - time.monotonic()), 300.0)
            try:
                finals = self.call("task.wait", {"ids": ids, "any": True, "timeout": step},
                                   timeout=step + self.timeout)
            except NotFound:   # one of the others is gone (pruned): ask for this one alone
                self._uncollected.clear()
                return self._wait_all(task_id, max(0.0, deadline - time.monotonic()))
            for task in finals:
                self._finished[task["id"]] = task
            done = self._finished.pop(task_id, None)
            if done is not None:
                self._uncollected.pop(task_id, None)
                return done
            if time.monotonic() >= deadline:
                raise WaitTimeout(self.get(task_id))

    def _wait_all(self, task_id, timeout: float):
        if isinstance(task_id, list) and len(task_id) > 5000:
            deadline = time.monotonic() + timeout
            out = []
            for i in range(0, len(task_id), 5000):
                out.extend(self._wait_all(task_id[i:i + 5000],
                                          max(0.0, deadline - time.monotonic())))
            return out
        ids = task_id if isinstance(task_id, list) else None
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            step = min(left, 300.0)
            params = {"ids": ids} if ids is not None else {"id": task_id}
            result = self.call("task.wait", {**params, "timeout": step}, timeout=step + self.timeout)
            tasks = result if ids is not None else [result]
            if all(t["final"] for t in tasks):
                for t in tasks:
                    self._uncollected.pop(t["id"], None)
                    self._finished.pop(t["id"], None)
                return result
            if time.monotonic() >= deadline:
                raise WaitTimeout(result)

    def _submitted(self, task_id: int) -> None:
        """A task this client submitted: wait() may ask about it with others."""
        self._uncollected[task_id] = None
        if len(self._uncollected) > MAX_TRACKED:   # a script that never waits: forget the oldest
            oldest = next(iter(self._uncollected))
            self._uncollected.pop(oldest)
            self._finished.pop(oldest, None)

    def map(self, function: str, items: Iterable, timeout: float = 600.0, **options) -> list:
        """Run a python task "module:function" once per item (a tuple of args, or a dict of
        kwargs, or a single arg) and return the results in order; TaskFailed on a failure."""
        specs = []
        for item in items:
            if isinstance(item, dict):
                payload = {"function": function, "kwargs": item}
            else:
                args = list(item) if isinstance(item, (tuple, list)) else [item]
                payload = {"function": function, "args": args}
            specs.append({"task_type": "python", "payload": payload, **_clean(options)})
        submitted = self.submit_many(specs)
        for s in submitted:
            if "error" in s:
                raise RequestRejected(s["error"]["code"], s["error"]["message"])
        ids = [s["id"] for s in submitted]
        results = []
        deadline = time.monotonic() + timeout
        for i in range(0, len(ids), 5000):
            chunk = self.wait(ids[i:i + 5000], timeout=max(0.0, deadline - time.monotonic()))
            for task in chunk:
                if task["status"] != "succeeded":
                    raise TaskFailed(task)
                results.append((task.get("result") or {}).get("result"))
        return results

    # --- nodes and placement --------------------------------------------------------------
    def nodes(self, status: str | None = None) -> list[dict]:
        return self.call("node.list", {"status": status} if status else {})

    def recommend(self, count: int = 3, requirements: list | None = None) -> list[dict]:
        return self.call("placement.recommend", {"count": count, "requirements": requirements or []})

    def close(self) -> None:
        """Close the connection (after waiting for submissions in flight: see flush())."""
        try:
            for handle in list(self._inflight):
                self._settle(handle)
        finally:
            self._rpc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


MAX_TRACKED = 100_000  # submitted task ids wait() may ask about together
MAX_IN_FLIGHT = 500    # submit_async() requests unanswered at once (below the broker's
#                        reply queue per client, 1,000, which zmq may fill sooner)


class Submission:
    """A task submitted with submit_async(). Reading id, status, created or result() waits
    for the broker's answer (the task is then durable), or raises why it was refused."""

    def __init__(self, client: Client, req_id: str):
        self.client, self.req_id = client, req_id
        self.settled = False
        self.value: dict | None = None
        self.error: Exception | None = None

    def result(self, timeout: float | None = None) -> dict:
        """{id, status, created}, once durable; RequestRejected / BrokerUnavailable."""
        self.client._settle(self, timeout)
        if self.error is not None:
            raise self.error
        return self.value

    @property
    def id(self) -> int:
        return self.result()["id"]

    @property
    def status(self) -> str:
        return self.result()["status"]

    @property
    def created(self) -> bool:
        return self.result()["created"]

    @property
    def done(self) -> bool:
        """Answered already (no waiting)?"""
        if not self.settled:
            self.client._rpc.take_replies()
            if self.client._rpc.has_reply(self.req_id):
                self.client._settle(self)
        return self.settled

    def __repr__(self) -> str:
        state = self.value if self.settled and self.error is None else \
            f"error {self.error}" if self.settled else "in flight"
        return f"<Submission {state}>"


def default_key_name() -> str:
    """The Python client's bus key name: client-<user running the script>."""
    return f"client-{getpass.getuser()}"


def _clean(options: dict) -> dict:
    return {k: v for k, v in options.items() if v is not None}
