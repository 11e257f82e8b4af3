"""Tier 5: the Notifications page in headless Chromium: channels, rules, silences and the
latest deliveries (sent and failed, with the reason); an operator adds a silence through
the form and ends it; a refusal by the broker is shown. Screenshot: notifications.png."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from selenium.webdriver.common.by import By

from tests.browser import test_ui_roles
from tests.browser.conftest import chrome, save_shot, severe, text_of, wait_text, wait_ticks
from tests.browser.test_queues_page import fill
from tests.browser.test_ui_roles import VIEWER, as_user, shown
from tests.helpers import free_port_block, wait_for

pytestmark = pytest.mark.slow
auth_cluster = test_ui_roles.auth_cluster   # its server with a login, an admin and a viewer


@pytest.fixture(scope="module")
def receiver():
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.got = got
    yield server
    server.shutdown()
    server.server_close()


def table_rows(driver, table_id: str) -> list[list[str]]:
    return [cells for tr in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tr")
            if (cells := [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")])]


def test_the_page_and_a_silence_through_the_form(ui_cluster, browser, receiver):
    c = ui_cluster
    port = receiver.server_address[1]
    c.rpc("notify.channel.add", {"name": "ops-hook", "kind": "webhook",
                                 "url": f"http://127.0.0.1:{port}/am?token=abc"})
    c.rpc("notify.channel.add", {"name": "ops-mail", "kind": "email", "host": "127.0.0.1",
                                 "port": free_port_block(1), "from": "architect@example.org",
                                 "to": ["oncall@example.org"]})
    c.rpc("notify.rule.add", {"name": "oncall", "channels": ["ops-hook", "ops-mail"],
                              "min_level": "critical", "repeat_interval": "4h"})
    c.rpc("notify.channel.test", {"name": "ops-hook"})
    c.rpc("notify.channel.test", {"name": "ops-mail"})     # nobody listens: failed, retried
    wait_for(lambda: receiver.got, 10, what="the test message received")

    browser.get(c.web + "/notifications")
    wait_for(lambda: browser.find_elements(By.ID, "silences-table"), 15, what="the page")
    wait_ticks(browser, 1)
    assert "Notifications" in text_of(browser, "#nav")
    wait_for(lambda: {r[0] for r in table_rows(browser, "channels-table")} ==
             {"ops-hook", "ops-mail"}, 15, what="both channels listed")
    assert table_rows(browser, "rules-table")[0][:3] == ["oncall", "ops-hook, ops-mail",
                                                         "critical"]
    outcomes = wait_for(lambda: (o := {(r[1], r[6]) for r in table_rows(
        browser, "deliveries-table")}) >= {("ops-hook", "sent"), ("ops-mail", "failed")} and o,
        15, what="a sent and a failed delivery")
    failed = next(r for r in table_rows(browser, "deliveries-table") if r[6] == "failed")
    assert "refused" in failed[7].lower() and failed[8], failed      # why, and when it retries

    fill(browser, "silence-node", "db-1")
    fill(browser, "silence-for", "2h")
    fill(browser, "silence-comment", "")
    browser.find_element(By.ID, "silence-add").click()
    wait_text(browser, "#silence-msg .error", "comment")           # the broker's refusal
    assert c.rpc("silence.list") == []
    fill(browser, "silence-comment", "replacing the disk")
    browser.find_element(By.ID, "silence-add").click()
    wait_text(browser, "#silence-msg", "node db-1 until")
    (s,) = c.rpc("silence.list")
    assert (s["node"], s["comment"], s["active"]) == ("db-1", "replacing the disk", True)
    assert 7190 < s["ends_at"] - s["created_at"] <= 7200
    row = wait_for(lambda: next((r for r in table_rows(browser, "silences-table")
                                 if r[0] == str(s["id"])), None), 15, what="the silence row")
    assert row[2:4] == ["node db-1", "active"] and row[6] == "replacing the disk"
    wait_text(browser, "#notify-status", "1 active silence ·")
    assert outcomes
    save_shot(browser, "notifications")

    fill(browser, "silence-id", str(s["id"]))
    browser.find_element(By.ID, "silence-end").click()
    wait_text(browser, "#silence-msg", f"silence {s['id']} ended")
    assert c.rpc("silence.list") == []
    wait_for(lambda: any(r[0] == str(s["id"]) and r[3] == "expired"
                         for r in table_rows(browser, "silences-table")), 15,
             what="the silence shown expired")
    assert severe(browser) == []


def test_a_viewer_sees_the_lists_but_no_form_and_no_secret(auth_cluster):
    c = auth_cluster
    c.rpc("notify.channel.add", {"name": "ops-hook", "kind": "webhook",
                                 "url": "http://127.0.0.1:9/am?token=s3cret"})
    c.rpc("silence.add", {"node": "db-*", "comment": "migration", "duration": "1h"})
    driver = chrome()
    try:
        as_user(driver, VIEWER)
        driver.get(c.web + "/notifications")
        wait_for(lambda: "vic · viewer" in text_of(driver, "#whoami"), 15, what="the viewer")
        wait_for(lambda: table_rows(driver, "channels-table"), 15, what="the channel row")
        (row,) = table_rows(driver, "channels-table")
        assert row[0] == "ops-hook" and "s3cret" not in row[2] and row[2].endswith("/***")
        wait_for(lambda: any("migration" in r for r in table_rows(driver, "silences-table")),
                 15, what="the silence row")
        for control in ("#notify-ops", "#notify-admin", "#silence-add", "#maint-on",
                        "#chan-add", "#rule-add"):
            assert not shown(driver, control), control
        assert severe(driver) == []
    finally:
        driver.quit()
