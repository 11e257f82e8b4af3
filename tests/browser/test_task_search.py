"""Tier 5: the Tasks page's search box in headless Chromium: "key=value" keeps the tasks
with that label; other text searches the command or function, node, labels and error."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.conftest import save_shot, severe, wait_ticks
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def shown_ids(driver) -> set[int]:
    out = set()
    for tr in driver.find_elements(By.CSS_SELECTOR, "#tasks-table tr"):
        cells = [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
        if len(cells) > 1 and cells[1].isdigit():
            out.add(int(cells[1]))
    return out


def search(driver, text: str) -> None:
    """Replace the box's text the way a user does (select all, type over it): clear()
    alone does not reach React's state, and the old text would stay in front."""
    box = driver.find_element(By.ID, "task-search")
    box.send_keys(Keys.CONTROL + "a", Keys.BACKSPACE)
    wait_for(lambda: driver.find_element(By.ID, "task-search").get_attribute("value") == "",
             5, what="the search box emptied")
    box.send_keys(text + Keys.ENTER)


def test_search_and_label_filter(ui_cluster, browser):
    c = ui_cluster
    web = c.rpc("task.submit", {"task_type": "shell", "payload": {"command": "echo deploy-web"},
                                "labels": {"team": "web"}})["id"]
    db = c.rpc("task.submit", {"task_type": "shell", "payload": {"command": "echo backup-db"},
                               "labels": {"team": "db"}})["id"]
    for t in (web, db):
        c.wait_task(t)
    browser.get(c.web + "/tasks")
    wait_for(lambda: browser.find_elements(By.ID, "task-search"), 15, what="the search box")
    wait_ticks(browser, 1)
    search(browser, "team=web")
    wait_for(lambda: shown_ids(browser) == {web}, 15, what="only the team=web task")
    search(browser, "backup-db")
    wait_for(lambda: shown_ids(browser) == {db}, 15, what="only the backup task")
    save_shot(browser, "task-search")
    search(browser, "no-such-thing-anywhere")
    wait_for(lambda: shown_ids(browser) == set(), 15, what="nothing found")
    search(browser, "")
    wait_for(lambda: {web, db} <= shown_ids(browser), 15, what="every task again")
    assert not severe(browser)
