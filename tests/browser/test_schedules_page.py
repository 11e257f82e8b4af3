"""Tier 5: the Schedules page in headless Chromium: the list, a schedule's runs, pause,
resume and run now; a viewer sees no controls."""

import pytest
from selenium.webdriver.common.by import By

from tests.browser import test_ui_roles
from tests.browser.conftest import chrome, save_shot, severe, text_of, wait_text, wait_ticks
from tests.browser.test_ui_roles import VIEWER, as_user, shown
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
auth_cluster = test_ui_roles.auth_cluster   # its server with a login, an admin and a viewer
BEAT = {"name": "beat", "every": 1, "task_type": "shell", "payload": {"command": "true"}}
NIGHTLY = {"name": "nightly", "cron": "0 3 * * *", "tz": "Europe/Berlin", "task_type": "shell",
           "payload": {"command": "backup"}}


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.find_elements(By.ID, "sched-table"), 15, what="the schedules page")
    wait_ticks(driver, 1)


def row_cells(driver, table: str) -> list[list[str]]:
    return [[td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, f"#{table} tr")
            if tr.find_elements(By.CSS_SELECTOR, "td")]


def click_name(driver, name: str) -> None:
    for td in driver.find_elements(By.CSS_SELECTOR, "#sched-table td[data-dash-column=name]"):
        if td.text == name:
            td.click()
            return
    raise AssertionError(f"no row {name!r} in the schedules table")


def choose(driver, dropdown: str, option: str) -> None:
    """Open a dcc.Dropdown (Dash 4: its options open in a popover) and click one option."""
    driver.find_element(By.ID, dropdown).click()
    wait_for(lambda: [o for o in driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-option")
                      if o.text == option], 10, what=f"option {option!r}")[0].click()


def message(driver, needle: str) -> str:
    return wait_text(driver, "#sched-msg", needle) and text_of(driver, "#sched-msg")


def test_schedules_list_runs_pause_resume_and_run_now(ui_cluster, browser):
    open_page(browser, ui_cluster.web + "/schedules")
    wait_text(browser, "#sched-empty", "No schedules yet")
    assert "architect schedules add NAME --every 30s" in text_of(browser, "#sched-empty")
    assert "Schedules" in text_of(browser, "#nav")

    ui_cluster.rpc("schedule.add", BEAT)
    ui_cluster.rpc("schedule.add", NIGHTLY)
    wait_text(browser, "#sched-table", "nightly")
    assert not browser.find_element(By.ID, "sched-empty").is_displayed()
    rows = {r[0]: r for r in row_cells(browser, "sched-table")}
    assert set(rows) == {"beat", "nightly"}
    assert rows["beat"][1] == "every 1s" and rows["beat"][7] == "shell: true"
    assert rows["nightly"][1] == "cron 0 3 * * * (Europe/Berlin)"
    assert "UTC · in " in rows["nightly"][3] and rows["nightly"][7] == "shell: backup"

    # a click on the row selects it; its runs appear, fired each second
    click_name(browser, "beat")
    wait_text(browser, "#sched-details", "every 1s")
    wait_for(lambda: any(r[2] == "fired" and r[3] for r in row_cells(browser, "sched-runs")),
             10, what="a fired run of beat with its task")
    wait_for(lambda: any(r[4] == "succeeded" for r in row_cells(browser, "sched-runs")), 20,
             what="a run whose task succeeded")
    wait_text(browser, "#sched-table", "fired")
    save_shot(browser, "schedules")

    browser.find_element(By.ID, "sched-pause").click()
    message(browser, "beat: paused")
    assert ui_cluster.rpc("schedule.get", {"name": "beat", "runs": 0})["paused"] is True
    wait_text(browser, "#sched-details", "paused")
    wait_for(lambda: browser.find_element(By.ID, "sched-resume").is_enabled(), 10,
             what="resume enabled")
    browser.find_element(By.ID, "sched-resume").click()
    message(browser, "beat: resumed")
    assert ui_cluster.rpc("schedule.get", {"name": "beat", "runs": 0})["paused"] is False

    # the dropdown selects too; run now submits the task at once
    choose(browser, "sched-select", "nightly")
    wait_text(browser, "#sched-details", "Europe/Berlin")
    assert "that is" in text_of(browser, "#sched-details")   # next run in its own zone
    browser.find_element(By.ID, "sched-run").click()
    task_id = int(message(browser, "submitted").split()[-2])
    runs = ui_cluster.rpc("schedule.get", {"name": "nightly"})["runs"]
    assert runs[0]["outcome"] == "manual" and runs[0]["task_id"] == task_id
    wait_for(lambda: any(r[2] == "manual" and r[3] == str(task_id)
                         for r in row_cells(browser, "sched-runs")), 10, what="the manual run")

    # a call the broker refuses shows its message
    ui_cluster.rpc("schedule.remove", {"name": "nightly"})
    browser.find_element(By.ID, "sched-pause").click()
    wait_text(browser, "#sched-msg .error", "no schedule 'nightly'")
    assert severe(browser) == []


def test_a_viewer_sees_schedules_but_no_controls(auth_cluster):
    auth_cluster.rpc("schedule.add", NIGHTLY)
    driver = chrome()
    try:
        as_user(driver, VIEWER)
        open_page(driver, auth_cluster.web + "/schedules")
        wait_for(lambda: "vic · viewer" in text_of(driver, "#whoami"), 10, what="the viewer")
        assert "Schedules" in text_of(driver, "#nav")
        wait_text(driver, "#sched-table", "nightly")
        click_name(driver, "nightly")
        wait_text(driver, "#sched-details", "Europe/Berlin")
        for button in ("#sched-pause", "#sched-resume", "#sched-run"):
            assert not shown(driver, button), button
        assert "No runs yet." in text_of(driver, "#sched-runs-note")
        save_shot(driver, "viewer-schedules")
        assert severe(driver) == []
    finally:
        driver.quit()
