"""Tier 5: the Dash UI in headless Chromium against a running cluster."""

import time

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import save_shot, severe, text_of, wait_text, wait_ticks
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
# pages whose screenshot (docs/screenshots) their own browser test takes, once it has data
OWN_SHOTS = {"health", "schedules", "workflow", "queues", "notifications", "alerts"}
PAGES = ("/", "/topology", "/flow", "/health", "/nodes", "/alerts", "/tasks", "/schedules", "/workflow", "/queues", "/notifications", "/ssh", "/audit")


def test_every_page_renders_without_console_errors(ui_cluster, browser):
    ui_cluster.submit(payload={"command": "echo warm-up"})
    for path in PAGES:
        browser.get(ui_cluster.web + path)
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#page > *"), 15,
                 what=f"{path} rendered")
        wait_ticks(browser)
        assert severe(browser) == [], f"console errors on {path}"
        assert "Not found" not in text_of(browser, "#page")
        name = path.strip("/") or "overview"
        if name in OWN_SHOTS:   # a test of its own takes that page's picture, with data
            name = f"tour-{name}"
        assert save_shot(browser, name).stat().st_size > 10_000


def test_topology_shows_each_node_with_its_health_colour(ui_cluster, browser):
    browser.get(ui_cluster.web + "/topology")

    def graph():
        return browser.execute_script(
            "const el = document.getElementById('topo-graph');"
            "if (!el || !el._cyreg) return null;"
            "return el._cyreg.cy.nodes().map(n => [n.id(), n.data('status'), n.data('color')]);")
    nodes = wait_for(lambda: (g := graph()) and len(g) == 4 and g, 20, what="4 graph nodes")
    by_id = {n[0]: (n[1], n[2]) for n in nodes}
    assert set(by_id) == {"master", "web-1", "db-1", "cache-1"}
    assert by_id["web-1"] == ("healthy", "#2e9d5b") and by_id["cache-1"][0] == "healthy"
    assert by_id["db-1"] == ("warning", "#e0a100")
    # clicking a node shows its details
    browser.execute_script("document.getElementById('topo-graph')._cyreg.cy"
                           ".getElementById('db-1').emit('tap');")
    wait_text(browser, "#topo-details", "db-1")
    assert "CPU" in text_of(browser, "#topo-details") or "cpu" in text_of(browser, "#topo-details")
    assert severe(browser) == []


def test_submitting_a_task_in_the_form_runs_it(ui_cluster, browser):
    browser.get(ui_cluster.web + "/tasks")
    wait_for(lambda: browser.find_elements(By.ID, "task-command"), 15, what="form")
    box = browser.find_element(By.ID, "task-command")
    box.send_keys("echo from-the-browser")
    browser.find_element(By.ID, "task-submit").click()
    msg = wait_for(lambda: "submitted" in text_of(browser, "#task-submit-msg")
                   and text_of(browser, "#task-submit-msg"), 15, what="submit confirmation")
    task_id = msg.split()[1]
    # it appears in the table and finishes there, without a reload
    wait_for(lambda: any(task_id == row.text.split()[0] and "succeeded" in row.text
                         for row in browser.find_elements(By.CSS_SELECTOR, "#tasks-table tr")
                         if row.text), 30, what=f"task {task_id} succeeded in the table")
    task = ui_cluster.rpc("task.get", {"id": int(task_id)})
    assert task["result"]["stdout"] == "from-the-browser\n"
    # its details show the output
    for row in browser.find_elements(By.CSS_SELECTOR, "#tasks-table tr"):
        if row.text.split()[:1] == [task_id]:
            row.find_element(By.CSS_SELECTOR, "input[type=radio]").click()
            break
    wait_text(browser, "#task-details", "from-the-browser")
    save_shot(browser, "tasks-detail")
    assert severe(browser) == []


def test_an_alert_can_be_acknowledged(ui_cluster, browser):
    alert = [a for a in ui_cluster.rpc("alert.list") if a["node_name"] == "db-1"][0]
    browser.get(ui_cluster.web + "/")
    wait_text(browser, "#ov-alerts", "db-1 is warning")
    row = f"#alert-{alert['id']}"
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"{row} button"), 10,
             what="the acknowledge button")[0].click()
    wait_text(browser, row, "ack by ui")
    acked = [a for a in ui_cluster.rpc("alert.list") if a["id"] == alert["id"]][0]
    assert acked["acknowledged_by"] == "ui:local" and acked["acknowledged_at"]  # the user
    assert severe(browser) == []


def test_the_overview_lists_nodes_problems_first_with_sparklines_and_follows_dark_mode(
        ui_cluster, browser):
    browser.get(ui_cluster.web + "/")

    def rows():
        return [r.get_attribute("id") for r in
                browser.find_elements(By.CSS_SELECTOR, "#ov-nodes .node-row")]
    wait_for(lambda: len(rows()) == 3, 20, what="three node rows")
    wait_for(lambda: rows()[0] == "ov-node-db-1", 20, what="the warning node db-1 first")
    first = browser.find_element(By.ID, "ov-node-db-1")
    assert "warning" in first.text and "CPU 88.0% >= warning 80%" in first.text
    assert first.find_element(By.CSS_SELECTOR, "a.name").get_attribute("href").endswith(
        "/health?node=db-1")
    assert "all metrics within thresholds" in browser.find_element(By.ID, "ov-node-web-1").text
    # each row: a CPU and a memory sparkline (inline SVG), titled with the latest value
    wait_for(lambda: first.find_elements(By.CSS_SELECTOR, "img.spark")[0]
             .get_attribute("title") == "CPU: 88%", 20, what="db-1's CPU sparkline")
    sparks = first.find_elements(By.CSS_SELECTOR, "img.spark")
    assert [s.get_attribute("title") for s in sparks] == ["CPU: 88%", "memory: 30%"]
    assert all(s.get_attribute("src").startswith("data:image/svg+xml") and
               s.size["width"] == 120 for s in sparks)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#ov-throughput .main-svg"), 15,
             what="the throughput chart drawn")
    save_shot(browser, "overview")
    # the browser prefers dark: the page follows, without a setting
    light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
        {"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        wait_for(lambda: browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor") == "rgb(15, 19, 26)", 5,
            what="the dark background")
        assert light == "rgb(245, 246, 248)"
        save_shot(browser, "overview-dark")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "light"}]})
    assert severe(browser) == []


def test_killed_agent_goes_offline_on_the_page_without_reload(ui_cluster, browser):
    browser.get(ui_cluster.web + "/nodes")
    wait_text(browser, "#nodes-table", "cache-1")

    def cache_status():
        for row in browser.find_elements(By.CSS_SELECTOR, "#nodes-table tr"):
            cells = row.text.split()
            if cells and cells[0] == "cache-1":
                return cells[1]
        return None
    assert wait_for(lambda: cache_status() == "healthy", 10, what="cache-1 healthy")
    ui_cluster.kill("agent-cache-1")
    wait_for(lambda: cache_status() == "offline", ui_cluster.timeout + 10,
             what="cache-1 offline on the page")
    save_shot(browser, "nodes-offline")
    assert severe(browser) == []


def test_the_alert_history_filters_acknowledges_and_silences(ui_cluster, browser):
    """After the test above: db-1's warning alert (acknowledged earlier in this module) and
    cache-1's offline one. The page filters by level, acknowledges, and silences a node."""
    from tests.browser.test_schedules_page import choose, row_cells
    browser.get(ui_cluster.web + "/alerts")

    def table():
        # node → cells (the first cell is the row's radio button)
        return {r[3]: r for r in row_cells(browser, "al-table")}
    wait_for(lambda: {"db-1", "cache-1"} <= set(table()), 20, what="both nodes' alerts")
    assert table()["cache-1"][4] == "offline" and table()["cache-1"][5] == "level"
    assert table()["db-1"][4] == "warning"
    assert "Alerts" in text_of(browser, "#nav")
    choose(browser, "al-level", "offline")
    wait_for(lambda: set(table()) == {"cache-1"}, 10, what="only the offline alert")
    # select it: its details, then acknowledge
    browser.find_element(By.CSS_SELECTOR, "#al-table td input[type=radio]").click()
    wait_text(browser, "#al-details", "no heartbeat")
    wait_for(lambda: browser.find_element(By.ID, "al-ack").is_enabled(), 10,
             what="the acknowledge button")
    browser.find_element(By.ID, "al-ack").click()
    wait_text(browser, "#al-msg", "acknowledged")
    offline = [a for a in ui_cluster.rpc("alert.list", {"all": True})
               if a["node_name"] == "cache-1" and a["level"] == "offline"][0]
    assert offline["acknowledged_by"] == "ui:local"
    wait_for(lambda: table()["cache-1"][8] == "ui:local", 10, what="ack shown in the table")
    # silence its node for an hour
    browser.find_element(By.ID, "al-silence").click()
    wait_text(browser, "#al-msg", "node cache-1 silenced for 1h")
    silences = ui_cluster.rpc("silence.list", {})
    mine = [s for s in silences if s.get("node") == "cache-1"]
    assert mine and 3500 < mine[0]["ends_at"] - time.time() <= 3600, silences
    save_shot(browser, "alerts")
    assert severe(browser) == []
