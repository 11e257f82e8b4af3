"""Tier 5: the health page's charts read right, in headless Chromium against a real server.

Three nodes: `history-1` with two days of rolled-up history (seeded before the server
starts), `few-1` beating for a few seconds (a handful of samples), `quiet-1` registered
but never beating. Each chart's x-axis is the chosen window whatever the samples; few
samples are drawn with markers; none says "no data yet"; the 24 h chart reads the 1-minute
roll-up and draws its min-max band. Saves docs/screenshots/health.png (with
ARCHITECT_UPDATE_SCREENSHOTS set, as every browser test's shots)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.browser.conftest import chrome, save_shot, severe, text_of, wait_text
from tests.helpers import Cluster, free_port_block, wait_for
from tests.integration.test_rollup_api import HISTORY, seed_history

pytestmark = pytest.mark.slow

FIGURE = """
const el = document.querySelector('#health-chart .js-plotly-plot');
if (!el || !el.data || !el.layout) return null;
const ax = el.layout.xaxis || {};
return {modes: el.data.map(t => t.mode || ''), fills: el.data.map(t => t.fill || ''),
        points: el.data.map(t => (t.x || []).filter((x, i) => t.y[i] !== null).length),
        width: ax.range ? (new Date(ax.range[1]) - new Date(ax.range[0])) / 1000 : null,
        notes: (el.layout.annotations || []).map(a => a.text)};
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("health-charts")
    (tmp / "data").mkdir()
    seed_history(tmp / "data")
    c = Cluster(tmp, interval=0.5, timeout=3.0)
    port = free_port_block(1)
    c.web = f"http://127.0.0.1:{port}"
    try:
        c.spawn("server", "server", "--port", str(port))
        wait_for(lambda: requests.get(f"{c.web}/healthz", timeout=1).status_code == 200, 30,
                 what="server up")
        calm = tmp / "calm.json"
        calm.write_text(json.dumps({"cpu_percent": 22.0, "memory_percent": 41.0,
                                    "disk_percent": 57.0, "load_1": 0.7}))
        c.start_agent("few-1", "--metrics-file", str(calm))
        r = requests.post(f"{c.web}/api/nodes", json={"name": "quiet-1", "hostname": "quiet"},
                          timeout=5)
        assert r.status_code in (200, 201), r.text
        wait_for(lambda: c.rpc("node.metrics", {"node": "few-1"})["series"], 15,
                 what="a few samples of few-1")
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def browser():
    driver = chrome()
    yield driver
    driver.quit()


def figure(browser, node: str, want):
    return wait_for(lambda: (f := browser.execute_script(FIGURE)) and want(f) and f, 15,
                    what=f"the chart of {node}")


def open_health(browser, cluster, node: str, span: str):
    browser.get(f"{cluster.web}/health?node={node}&range={span}")
    wait_for(lambda: node in text_of(browser, "#health-node"), 15, what=f"{node} selected")


def test_no_samples_says_no_data_yet_over_the_whole_window(cluster, browser):
    open_health(browser, cluster, "quiet-1", "1h")
    f = figure(browser, "quiet-1", lambda f: "no data yet" in f["notes"])
    assert f["notes"].count("no data yet") == 4          # one per panel
    assert f["width"] == pytest.approx(3600, abs=5)
    save_shot(browser, "health-empty")
    assert severe(browser) == []


def test_few_samples_are_markers_on_the_chosen_window(cluster, browser):
    open_health(browser, cluster, "few-1", "1h")
    f = figure(browser, "few-1", lambda f: any(p for p in f["points"]))
    shown = max(f["points"])
    assert 1 <= shown < 30
    assert "lines+markers" in f["modes"]
    assert f["width"] == pytest.approx(3600, abs=5)       # not a few milliseconds wide
    assert "no data yet" not in f["notes"]
    wait_text(browser, "#health-resolution", "raw samples")
    save_shot(browser, "health-sparse")
    assert severe(browser) == []


def test_a_day_of_history_reads_the_minute_rollup_with_bands(cluster, browser):
    open_health(browser, cluster, HISTORY, "24h")
    f = figure(browser, HISTORY, lambda f: "tonexty" in f["fills"])
    assert f["width"] == pytest.approx(86400, abs=30)
    assert f["fills"].count("tonexty") == 4               # a min-max band per panel
    assert max(f["points"]) > 30 and "lines" in f["modes"]
    wait_text(browser, "#health-resolution", "1-minute roll-up")
    save_shot(browser, "health")
    assert severe(browser) == []
