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
from architect.agent.discovery import DiscoveryError, from_broker, from_dashboard
from architect.bus.codec import encode
from architect.bus.errors import BusError
from architect.bus.messages import Heartbeat
from architect.bus.rpc import RpcClient
from architect.bus.transport import make_socket
from architect.config import Config

log = logging.getLogger("architect.agent")

REGISTER_RETRY = 30.0  # seconds between registration attempts until one succeeds


def resolve_endpoints(config: Config, stop: threading.Event) -> dict:
    """Bus endpoints from the dashboard URL (retrying until it answers) or the broker host."""
    if not config.dashboard_url:
        return from_broker(config.broker_host, config.bus_port)
    delay = 1.0
    while not stop.is_set():
        try:
            return from_dashboard(config.dashboard_url)
        except DiscoveryError as exc:
            log.warning("%s; retrying in %.0fs", exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 30.0)
    raise SystemExit(0)


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
        self._rpc: RpcClient | None = None

    def start(self) -> None:
        self.endpoints = resolve_endpoints(self.config, self.stop_event)
        self.ip_address = node_metrics.local_ip(broker_host_of(self.endpoints["heartbeat"]))
        self._pub = make_socket(zmq.PUB, hwm=100)
        self._pub.connect(self.endpoints["heartbeat"])
        self._rpc = RpcClient(self.endpoints["control"], timeout=self.config.request_timeout)

    def identity(self) -> dict:
        return {"name": self.config.node_name, "hostname": self.hostname,
                "ip_address": self.ip_address, "capabilities": self.capabilities}

    def register(self, now: float) -> None:
        try:
            self._rpc.call("node.register", self.identity())
        except BusError as exc:
            self._next_register = now + REGISTER_RETRY
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
