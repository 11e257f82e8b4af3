"""The Grafana dashboard (config/grafana/architect.json) against the real /metrics.

Every PromQL expression in the dashboard is parsed by a real PromQL parser (promql-parser,
the Rust one Prometheus-compatible databases use), and every metric it selects must be a
sample name in the live output of a broker + web server (tests/helpers.py Cluster): a
renamed metric, or a typo in the dashboard, fails here instead of drawing an empty panel.
"""

from __future__ import annotations

import json
from pathlib import Path

import promql_parser
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "architect.json"
PROMETHEUS = DASHBOARD.with_name("prometheus.yml")
# Grafana substitutes these before Prometheus sees a query
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$job": ".*"}


def load():
    return json.loads(DASHBOARD.read_text())


def panels(dash):
    return [p for p in dash["panels"] if p["type"] != "row"]


def expressions(dash):
    """(panel title, PromQL as Prometheus gets it) for every target."""
    out = []
    for p in panels(dash):
        for t in p["targets"]:
            expr = t["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((p["title"], expr))
    return out


def selected_metrics(expr: str) -> set[str]:
    names = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def dashboard_metrics() -> dict[str, set[str]]:
    """metric name -> titles of the panels that use it."""
    used: dict[str, set[str]] = {}
    for title, expr in expressions(load()):
        for name in selected_metrics(expr):
            used.setdefault(name, set()).add(title)
    return used


def test_dashboard_is_importable_grafana_json():
    dash = load()
    assert dash["uid"] and dash["title"] == "Architect" and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in panels(dash):
        assert p["type"] in ("timeseries", "stat"), p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        grid = p["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert "$job" in t["expr"], f"{p['title']}: every query filters on the job variable"


def test_every_expression_parses_as_promql():
    exprs = expressions(load())
    assert len(exprs) >= 20
    for title, expr in exprs:
        try:
            promql_parser.parse(expr)
        except ValueError as exc:
            pytest.fail(f"panel {title!r}: {expr!r} is not PromQL: {exc}")
    # the parser does refuse broken PromQL (a check that cannot fail proves nothing)
    with pytest.raises(ValueError):
        promql_parser.parse("max(rate(architect_tasks_finished_total[1m])")


def test_dashboard_covers_what_operators_watch():
    used = dashboard_metrics()
    for name in ("architect_nodes",                          # nodes by level
                 "architect_heartbeats_received_total",      # heartbeat rate
                 "architect_tasks",                          # tasks by state
                 "architect_queue_waiting",                  # queue depth per queue
                 "architect_tasks_finished_total",           # task throughput
                 "architect_broker_up", "architect_broker_loop_seconds_bucket"):  # loop health
        assert name in used, f"the dashboard has no panel on {name}"


def test_prometheus_example_scrapes_metrics_with_a_token():
    doc = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "architect" and job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"


@pytest.mark.slow
def test_every_dashboard_metric_is_in_live_metrics(cluster):
    """A server with a login (as in a container): /metrics is refused without one, served
    to a viewer token as config/grafana/prometheus.yml scrapes it, and has every metric."""
    base = cluster.start_server(timeout=10, env={"ARCHITECT_USER": "admin",
                                                 "ARCHITECT_PASSWORD": "grafana-test-pw"})
    admin = ("admin", "grafana-test-pw")
    assert requests.get(base + "/metrics", timeout=5).status_code == 401
    made = requests.post(base + "/api/tokens", json={"role": "viewer", "name": "prometheus"},
                         auth=admin, timeout=5)
    assert made.status_code == 201, made.text
    # a queue with a limit, so the per-queue gauges carry a sample
    cluster.rpc("queue.set", {"name": "default", "concurrency": 4})
    resp = requests.get(base + "/metrics", timeout=5,
                        headers={"Authorization": f"Bearer {made.json()['token']}"})
    assert resp.status_code == 200, resp.text
    live = {s.name for family in text_string_to_metric_families(resp.text)
            for s in family.samples}
    assert "architect_broker_up" in live
    missing = {name: sorted(titles) for name, titles in dashboard_metrics().items()
               if name not in live}
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {missing}"
