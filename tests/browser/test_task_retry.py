"""Tier 5: retrying failed tasks from the Tasks page in headless Chromium: Retry for the
selected task, Retry failed… for every failed one in a window (a dry-run count, a confirm);
a viewer sees neither."""

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from tests.browser import test_ui_roles
from tests.browser.conftest import chrome, save_shot, severe, text_of, wait_text, wait_ticks
from tests.browser.test_ui_roles import VIEWER, as_user, shown
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
auth_cluster = test_ui_roles.auth_cluster   # its server with a login, an admin and a viewer
FAIL = {"task_type": "shell", "payload": {"command": "exit 3"}}
OK = {"task_type": "shell", "payload": {"command": "echo fine"}}


def open_tasks(driver, url: str) -> None:
    driver.get(url + "/tasks")
    wait_for(lambda: driver.find_elements(By.ID, "tasks-table"), 15, what="the tasks page")
    wait_ticks(driver, 1)


def select_task(driver, task_id: int) -> None:
    """Tick the radio of the task's row (it must be on the first page of the table)."""
    def row():
        for tr in driver.find_elements(By.CSS_SELECTOR, "#tasks-table tr"):
            if tr.text.split()[:1] == [str(task_id)]:
                return tr
        return None
    wait_for(row, 15, what=f"task {task_id} in the table").find_element(
        By.CSS_SELECTOR, "input[type=radio]").click()
    wait_text(driver, "#task-details", f"#{task_id} ")


def row_cells(driver, task_id: int) -> list[str]:
    """The cells of the task's row in the table (ID, type, status, node, try, ...)."""
    for tr in driver.find_elements(By.CSS_SELECTOR, "#tasks-table tr"):
        cells = [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
        if cells[1:2] == [str(task_id)]:      # after the radio's cell
            return cells[1:]
    return [""] * 8


def choose(driver, dropdown: str, option: str) -> None:
    """Open a dcc.Dropdown (Dash 4: its options open in a popover) and click one option."""
    driver.find_element(By.ID, dropdown).click()
    wait_for(lambda: [o for o in driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-option")
                      if o.text == option], 10, what=f"option {option!r}")[0].click()


def alert_open(driver):
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


def finished(cluster, task_id: int, attempt: int) -> dict:
    """The task once it ended again on that attempt (after a retry it is queued first)."""
    def ended():
        t = cluster.rpc("task.get", {"id": task_id, "events": True})
        return t["final"] and t["attempt"] == attempt and t
    return wait_for(ended, 30, what=f"task {task_id} ended on attempt {attempt}")


def test_retry_the_selected_task_and_every_failed_one(ui_cluster, browser):
    c = ui_cluster
    failed, ok = c.submit(**FAIL), c.submit(**OK)
    assert c.wait_task(failed)["status"] == "failed" and c.wait_task(ok)["status"] == "succeeded"
    open_tasks(browser, c.web)
    retry = browser.find_element(By.ID, "task-retry")
    assert retry.is_displayed() and not retry.is_enabled()    # nothing selected yet

    # a succeeded task cannot be retried: the button stays disabled
    select_task(browser, ok)
    wait_text(browser, "#task-details", "succeeded")
    wait_ticks(browser, 1)
    assert not browser.find_element(By.ID, "task-retry").is_enabled()

    # the failed one can: it is queued again and runs a second time, its history kept
    select_task(browser, failed)
    wait_for(lambda: browser.find_element(By.ID, "task-retry").is_enabled(), 10,
             what="Retry enabled for the failed task")
    browser.find_element(By.ID, "task-retry").click()
    wait_text(browser, "#task-retry-msg", f"task {failed} queued again")
    again = finished(c, failed, 2)
    assert again["status"] == "failed"        # exit 3 once more
    retried = [e for e in again["events"] if e["event"] == "retried"]
    assert len(retried) == 1 and retried[0]["detail"]["was"] == "failed", again["events"]
    assert [e["event"] for e in again["events"]].count("running") == 2, again["events"]
    assert c.rpc("task.get", {"id": ok})["attempt"] == 1

    # Retry failed… with a node filter nobody ran on: nothing to retry, and no dialog
    choose(browser, "task-filter-node", "db-1")
    browser.find_element(By.ID, "tasks-retry-many").click()
    wait_text(browser, "#tasks-retry-msg",
              "no tasks ended failed/timed_out/expired in the last day on db-1")
    assert alert_open(browser) is None

    # three more failures: the dry run counts them (and the first, failed again), the
    # confirm retries them all
    more = [c.submit(**FAIL) for _ in range(3)]
    for task_id in more:
        assert c.wait_task(task_id)["status"] == "failed"
    count = c.rpc("task.retry_many", {"dry_run": True})["count"]
    assert count == 4, count
    # the status filter narrows it; cancelling the dialog retries nothing
    open_tasks(browser, c.web)
    choose(browser, "task-filter-status", "failed")
    browser.find_element(By.ID, "tasks-retry-many").click()
    dialog = wait_for(lambda: alert_open(browser), 15, what="the confirm dialog")
    assert dialog.text == f"Retry {count} tasks that ended failed in the last day?"
    dialog.dismiss()
    wait_text(browser, "#tasks-retry-msg", "nothing retried")
    assert all(c.rpc("task.get", {"id": i})["attempt"] == 1 for i in more)
    open_tasks(browser, c.web)                 # no filters: failed and timed_out
    browser.find_element(By.ID, "tasks-retry-many").click()
    dialog = wait_for(lambda: alert_open(browser), 15, what="the confirm dialog again")
    assert dialog.text == f"Retry {count} tasks that ended failed/timed_out/expired in the last day?"
    dialog.accept()
    wait_text(browser, "#tasks-retry-msg", f"{count} tasks queued again")
    for task_id in more:
        t = finished(c, task_id, 2)
        assert t["status"] == "failed" and any(e["event"] == "retried" for e in t["events"])
    assert finished(c, failed, 3)["status"] == "failed"

    select_task(browser, more[0])
    wait_text(browser, "#task-details", "attempt 2")
    wait_for(lambda: all(row_cells(browser, i)[4] == str(2 if i in more else 3)
                         for i in [*more, failed]), 15, what="the table shows the new attempts")
    save_shot(browser, "task-retry")
    assert severe(browser) == []


def test_a_viewer_sees_no_retry_controls(auth_cluster):
    driver = chrome()
    try:
        as_user(driver, VIEWER)
        open_tasks(driver, auth_cluster.web)
        wait_for(lambda: "vic · viewer" in text_of(driver, "#whoami"), 10, what="the viewer")
        for control in ("#task-retry", "#tasks-retry-many", "#tasks-retry-window"):
            assert not shown(driver, control), control
        assert severe(driver) == []
    finally:
        driver.quit()
