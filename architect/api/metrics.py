"""/metrics in Prometheus text format (prometheus-client), read from the broker per scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from architect.bus.protocol import LEVELS, STATES


class BrokerCollector:
    def __init__(self, gateway):
        self.gateway = gateway

    def collect(self):
        up = GaugeMetricFamily("architect_broker_up", "1 if the broker answered this scrape")
        try:
            stats = self.gateway.call("cluster.stats", timeout=2.0)
            summary = self.gateway.call("cluster.summary", timeout=2.0)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        nodes = GaugeMetricFamily("architect_nodes", "Nodes per health level", labels=["level"])
        for level in LEVELS:
            nodes.add_metric([level], stats["nodes"].get(level, 0))
        yield nodes
        drained = GaugeMetricFamily("architect_nodes_drained", "Drained nodes")
        drained.add_metric([], stats["nodes"].get("drained", 0))
        yield drained
        tasks = GaugeMetricFamily("architect_tasks", "Tasks per state (all kept)", labels=["state"])
        for state in STATES:
            tasks.add_metric([state], summary["tasks"].get(state, 0))
        yield tasks
        depth = GaugeMetricFamily("architect_queue_depth", "Tasks waiting to be placed")
        depth.add_metric([], stats["tasks"]["queued"])
        yield depth
        try:
            queues = self.gateway.call("queue.list", timeout=2.0)
        except Exception:
            queues = []
        for key, name, help_text in (
                ("queued", "architect_queue_waiting", "Tasks waiting, per named queue"),
                ("running", "architect_queue_running", "Tasks assigned or running, per queue"),
                ("oldest_age", "architect_queue_oldest_age_seconds",
                 "Age of the oldest waiting task, per queue")):
            g = GaugeMetricFamily(name, help_text, labels=["queue"])
            for q in queues:
                g.add_metric([q["name"]], q[key] or 0)
            yield g
        for key, help_text in (("connected", "Connected task workers"),
                               ("slots", "Task slots over all workers"),
                               ("busy", "Slots running a task")):
            g = GaugeMetricFamily(f"architect_workers_{key}", help_text)
            g.add_metric([], stats["workers"][key])
            yield g
        alerts = GaugeMetricFamily("architect_alerts_active", "Active alerts")
        alerts.add_metric([], stats["alerts"]["active"])
        yield alerts
        counters = stats["counters"]
        for key, name, help_text in (
                ("heartbeats", "architect_heartbeats_received", "Heartbeats accepted"),
                ("heartbeats_rejected", "architect_heartbeats_rejected", "Heartbeats refused"),
                ("protocol_errors", "architect_protocol_errors", "Frames that were not messages"),
                ("requests", "architect_control_requests", "Control requests handled"),
                ("tasks_submitted", "architect_tasks_submitted", "Tasks accepted"),
                ("tasks_finished", "architect_tasks_finished", "Task results received")):
            c = CounterMetricFamily(name, help_text)
            c.add_metric([], counters.get(key, 0))
            yield c
        yield _histogram("architect_dispatch_latency_seconds", "Submit-to-start latency of tasks",
                         stats["dispatch_latency"])
        loop = stats.get("loop")
        if loop:
            yield _histogram("architect_broker_loop_seconds",
                             "Work per broker loop iteration (the poll's wait excluded)", loop)
            p99 = GaugeMetricFamily("architect_broker_loop_p99_seconds",
                                    "p99 of the last 4,096 loop iterations' work")
            p99.add_metric([], loop["p99"] or 0.0)
            yield p99
        uptime = GaugeMetricFamily("architect_broker_uptime_seconds", "Broker uptime")
        uptime.add_metric([], stats["uptime"])
        yield uptime
        ssh = stats.get("ssh")
        if ssh:
            for key in ("open", "in_use", "idle", "created", "reused", "failures"):
                g = GaugeMetricFamily(f"architect_ssh_pool_{key}", f"SSH pool: {key} connections")
                g.add_metric([], ssh.get("totals", {}).get(key, 0))
                yield g


def _histogram(name: str, help_text: str, snap: dict) -> HistogramMetricFamily:
    """A broker histogram snapshot ({bounds, counts per bucket, count, sum}) as Prometheus'
    cumulative buckets."""
    buckets, running = [], 0
    for bound, count in zip(snap["bounds"], snap["counts"]):
        running += count
        buckets.append((repr(float(bound)), running))
    buckets.append(("+Inf", snap["count"]))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=snap["sum"])

class Metrics:
    def __init__(self, gateway):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BrokerCollector(gateway))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
