"""Tier 5: the Queues page in headless Chromium: each queue's waiting and running tasks, its
limits and why it is held; an operator sets and removes limits; a viewer sees no form."""

import re

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser import test_ui_roles
from tests.browser.conftest import chrome, save_shot, severe, text_of, wait_text, wait_ticks
from tests.browser.test_ui_roles import VIEWER, as_user, shown
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
auth_cluster = test_ui_roles.auth_cluster   # its server with a login, an admin and a viewer


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.find_elements(By.ID, "queues-table"), 15, what="the queues page")
    wait_ticks(driver, 1)


def table_rows(driver) -> dict[str, list[str]]:
    """Queue name → its row's cells (name, waiting, running, concurrency, rate, oldest, held)."""
    out = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#queues-table tr"):
        cells = [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
        if cells:
            out[cells[0]] = cells
    return out


def wait_row(driver, name: str, check, what: str) -> list[str]:
    return wait_for(lambda: (r := table_rows(driver).get(name)) and check(r) and r, 20,
                    what=what)


def fill(driver, element_id: str, text: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if text:
        box.send_keys(text)


def queue_row(cluster, name: str) -> dict:
    return next(q for q in cluster.rpc("queue.list") if q["name"] == name)


def test_queues_table_and_setting_limits(ui_cluster, browser):
    open_page(browser, ui_cluster.web + "/queues")
    wait_text(browser, "#queues-empty", "No queues with waiting tasks or limits yet.")
    assert not browser.find_element(By.ID, "queues-list").is_displayed()
    assert "Queues" in text_of(browser, "#nav")

    ui_cluster.rpc("queue.set", {"name": "reports", "concurrency": 2})
    for _ in range(3):
        ui_cluster.submit(queue="nobody", payload={"command": "true"})
    # one worker serves "default": at most one at a time, so the second waits, held
    ui_cluster.rpc("queue.set", {"name": "default", "concurrency": 1})
    for _ in range(2):
        ui_cluster.submit(payload={"command": "sleep 30"})

    nobody = wait_row(browser, "nobody", lambda r: r[1] == "3", "nobody: 3 waiting")
    assert nobody[2:5] == ["0", "—", "—"] and nobody[6] == ""
    assert re.fullmatch(r"\d+\.\d s", nobody[5]), nobody
    reports = wait_row(browser, "reports", lambda r: r[3] == "2", "reports: concurrency 2")
    assert reports[1:3] == ["0", "0"] and reports[4] == "—" and reports[5:] == ["", ""]
    held = wait_row(browser, "default", lambda r: r[2] == "1" and r[6], "default held")
    assert held[1] == "1" and held[3] == "1" and held[6] == "queue at its concurrency limit"
    assert not browser.find_element(By.ID, "queues-empty").is_displayed()
    save_shot(browser, "queues")

    # a known queue's name fills in its limits; Set with a rate keeps the concurrency
    fill(browser, "queue-name", "reports")
    wait_for(lambda: browser.find_element(By.ID, "queue-concurrency").get_attribute("value")
             == "2", 10, what="reports' concurrency filled in")
    fill(browser, "queue-rate", "5/s")
    browser.find_element(By.ID, "queue-set").click()
    wait_text(browser, "#queue-msg", "reports: concurrency 2, rate 5/s")
    q = queue_row(ui_cluster, "reports")
    assert (q["concurrency"], q["rate"]) == (2, "5/s")
    wait_row(browser, "reports", lambda r: r[4] == "5/s", "reports: rate 5/s in the table")

    # the broker's refusal is shown, naming the field; nothing changed
    fill(browser, "queue-rate", "fast")
    browser.find_element(By.ID, "queue-set").click()
    wait_text(browser, "#queue-msg .error", "rate 'fast'")
    assert queue_row(ui_cluster, "reports")["rate"] == "5/s"

    # a new queue's name is taken too; Remove limits drops its row again
    fill(browser, "queue-name", "fresh")
    fill(browser, "queue-concurrency", "4")
    fill(browser, "queue-rate", "")
    browser.find_element(By.ID, "queue-set").click()
    wait_text(browser, "#queue-msg", "fresh: concurrency 4")
    wait_row(browser, "fresh", lambda r: r[3] == "4", "fresh: concurrency 4")
    browser.find_element(By.ID, "queue-clear").click()
    wait_text(browser, "#queue-msg", "fresh: no limits")
    assert all(q["name"] != "fresh" for q in ui_cluster.rpc("queue.list"))
    wait_for(lambda: "fresh" not in table_rows(browser), 10, what="fresh gone from the table")
    assert severe(browser) == []


def test_a_viewer_sees_the_queues_but_no_form(auth_cluster):
    auth_cluster.rpc("queue.set", {"name": "reports", "concurrency": 2})
    driver = chrome()
    try:
        as_user(driver, VIEWER)
        open_page(driver, auth_cluster.web + "/queues")
        wait_for(lambda: "vic · viewer" in text_of(driver, "#whoami"), 10, what="the viewer")
        assert "Queues" in text_of(driver, "#nav")
        wait_row(driver, "reports", lambda r: r[3] == "2", "reports for the viewer")
        for control in ("#queue-form", "#queue-set", "#queue-clear"):
            assert not shown(driver, control), control
        assert severe(driver) == []
    finally:
        driver.quit()
