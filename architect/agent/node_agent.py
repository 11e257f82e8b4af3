"""The node agent: registers its node over the control socket, then publishes a heartbeat
with psutil metrics every interval. ZeroMQ reconnects the PUB socket by itself when the
broker restarts; registration is retried until it succeeds (heartbeats from an unknown
node also register it, so a broker that lost its state recovers)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse

import zmq

from architect.agent import metrics as node_metrics
from architect.bus.codec import encode
from architect.bus.errors import BusError
from architect.bus.messages import Heartbeat
from architect.bus.rpc import RpcClient
from architect.bus.localbus import why_unreachable
from architect.bus.transport import LOOPBACK_HOSTS, local_bus_dir, make_socket
from architect.config import Config
from architect.discovery import DiscoveryError, connect_info, dashboard_urls, from_dashboards

log = logging.getLogger("architect.agent")

REGISTER_RETRY = 5.0  # seconds between registration attempts until one succeeds


def resolve_endpoints(config: Config, stop: threading.Event) -> tuple[dict, dict | None]:
    """(bus endpoints, CURVE options or None) from the dashboard URL (retrying until it
    answers; on a secured bus this also joins it) or straight from the broker host.
    What will not change by itself (a refused dashboard, another user's loopback bus,
    another machine's endpoints) is logged once as an error; it is asked again anyway."""
    delays = {"retry": 1.0, "waiting": 0.2}
    said = None
    while not stop.is_set():
        try:
            endpoints, curve, status = connect_info(config, config.node_name)
            problem = _unusable(config, endpoints)
        except DiscoveryError as exc:
            problem = ("denied" if exc.status in (401, 403) else "retry", str(exc))
        if problem is None:
            break
        kind, text = problem
        pace = "waiting" if kind == "waiting" else "retry"  # a starting local broker: soon
        if kind == "retry":
            log.warning("%s; retrying in %.0fs", text, delays[pace])
        elif text != said:
            (log.warning if kind == "waiting" else log.error)("%s (retrying)", text)
        said = text
        stop.wait(delays[pace])
        delays[pace] = min(delays[pace] * 2, 2.0 if pace == "waiting" else 30.0)
    else:
        raise SystemExit(0)
    if said is not None:
        log.info("bus reachable at %s", endpoints["control"])
    if status == "pending":
        log.warning("the bus is secured and this node's key is pending: on the master run "
                    "`architect keys accept %s` (or start the node with ARCHITECT_USER/"
                    "ARCHITECT_PASSWORD or ARCHITECT_JOIN_TOKEN to join at once); "
                    "connecting meanwhile", config.node_name)
    return endpoints, curve


def rediscover(config: Config, endpoints: dict, curve: dict | None):
    """The bus went quiet: ask the dashboard(s) again once (several masters: a standby or
    the load balancer names the active broker). New (endpoints, curve) when they changed,
    else None. This node keeps its key: it does not join again (a revoked key stays out
    until an operator lets it back), unless the bus became secured meanwhile."""
    if not config.dashboard_url:
        return None
    try:
        found, _url = from_dashboards(dashboard_urls(config), timeout=1.0,
                                      auth=_login(config))
        server = found.get("server_key")
        if server and curve is None:   # the bus was open and is secured now: join it
            found, new_curve, _status = connect_info(config, config.node_name, timeout=1.0)
        else:
            new_curve = {**curve, "server": server.encode()} if curve and server else curve
    except DiscoveryError as exc:
        log.debug("rediscovery failed: %s", exc)
        return None
    if found.get("control") == endpoints.get("control") and new_curve == curve:
        return None
    log.warning("the active broker is now at %s (was %s)", found["control"],
                endpoints.get("control"))
    return found, new_curve


def _login(config: Config):
    return (config.user, config.password) if config.user and config.password else None


def _unusable(config: Config, endpoints: dict) -> tuple[str, str] | None:
    """Why `endpoints` cannot work from this process, or None (see localbus.why_unreachable).
    Without a dashboard, on loopback, the tcp ports were picked because no ipc socket was
    there: then wait until one of the two answers."""
    local = not config.dashboard_url and config.broker_host in LOOPBACK_HOSTS and \
        config.bus_local == "ipc" and endpoints["control"].startswith("tcp://")
    if not local:
        return why_unreachable(endpoints)
    return why_unreachable(endpoints, local_bus_dir(config.data_dir),
                           (config.broker_host, config.bus_port + 2))


def broker_host_of(endpoint: str) -> str:
    return urllib.parse.urlparse(endpoint.replace("tcp://", "http://", 1)).hostname or "127.0.0.1"


class NodeAgent:
    def __init__(self, config: Config, metrics_file: str | None = None):
        self.config = config
        self.metrics_file = metrics_file
        self.stop_event = threading.Event()
        self.endpoints: dict = {}
        self.capabilities = sorted(set(config.capabilities) | set(node_metrics.detect_capabilities()))
        self.hostname = socket.gethostname()
        self.ip_address = "127.0.0.1"
        self.seq = 0
        self.registered = False
        self._next_register = 0.0
        self._pub: zmq.Socket | None = None
        self._curve: dict | None = None
        self._rpc: RpcClient | None = None

    def start(self) -> None:
        self.endpoints, self._curve = resolve_endpoints(self.config, self.stop_event)
        self.ip_address = node_metrics.local_ip(broker_host_of(self.endpoints["heartbeat"]))
        self._connect_pub()
        self._rpc = RpcClient(self.endpoints["control"], timeout=self.config.request_timeout,
                              curve=self._curve)

    def check_broker(self, now: float) -> bool:
        """With dashboard URLs: a ping per beat (a short timeout); an unanswered one means
        the bus is quiet: ask the dashboards which broker is active (a failover) and move
        there. The same broker still named: nothing changes. True when it moved."""
        if not self.config.dashboard_url:
            return False
        try:
            self._rpc.call("ping", timeout=min(1.0, self.config.heartbeat_interval / 2))
            return False
        except BusError:
            pass
        moved = rediscover(self.config, self.endpoints, self._curve)
        if moved is None:
            return False
        self.endpoints, self._curve = moved
        self._rpc.close()
        self._rpc = RpcClient(self.endpoints["control"], timeout=self.config.request_timeout,
                              curve=self._curve)
        self._connect_pub()
        self.registered, self._next_register = False, 0.0
        return True

    def _connect_pub(self) -> None:
        """(Re)open the heartbeat socket. A CURVE handshake refused while this node's key was
        pending is not retried by libzmq, so a failed registration reopens it."""
        if self._pub is not None:
            self._pub.close(0)
        self._pub = make_socket(zmq.PUB, hwm=100, curve=self._curve)
        self._pub.connect(self.endpoints["heartbeat"])

    def identity(self) -> dict:
        return {"name": self.config.node_name, "hostname": self.hostname,
                "ip_address": self.ip_address, "capabilities": self.capabilities}

    def register(self, now: float) -> None:
        try:
            self._rpc.call("node.register", self.identity())
        except BusError as exc:
            self._next_register = now + REGISTER_RETRY
            if self._curve is not None:
                self._connect_pub()
            log.warning("registration failed (%s); heartbeating anyway, retry in %.0fs",
                        exc, REGISTER_RETRY)
            return
        self.registered = True
        log.info("registered as %s with %s", self.config.node_name, self.endpoints["control"])

    def beat(self, now: float) -> Heartbeat:
        sample = node_metrics.collect(self.config.disk_path, now,
                                      cpu_window=0.25 if self.seq == 0 else None)
        sample.update(node_metrics.overrides(self.metrics_file))
        self.seq += 1
        hb = Heartbeat(name=self.config.node_name, ts=now, metrics=sample, seq=self.seq,
                       **{k: v for k, v in self.identity().items() if k != "name"})
        try:
            self._pub.send(encode(hb), zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected yet: PUB drops, the next beat goes through
        return hb

    def run(self) -> None:
        self.start()
        log.info("agent %s heartbeating to %s every %gs", self.config.node_name,
                 self.endpoints["heartbeat"], self.config.heartbeat_interval)
        next_beat = time.monotonic()
        try:
            while not self.stop_event.is_set():
                now = time.time()
                if not self.registered and now >= self._next_register:
                    self.register(now)
                self.beat(now)
                if self.check_broker(now):
                    continue   # moved to the new broker: register and beat there now
                next_beat += self.config.heartbeat_interval
                self.stop_event.wait(max(0.0, next_beat - time.monotonic()))
        finally:
            self.close()

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        if self._rpc:
            self._rpc.close()
        if self._pub:
            self._pub.close(0)
